"""What healing trains; everything else stays frozen.

- `embeddings`: the rows of new tokens in the input and output embeddings (one matrix when tied).
  The rows are a parameter of their own, put into a copy of the frozen matrix at every forward
  (torch.func.functional_call), so no other row can change, no optimizer ever holds them, and a
  tied matrix stays one matrix. A step moves only the rows of tokens its batch holds
  (transplant.heal.optim says why).
- `embeddings+norms`: also every RMSNorm / LayerNorm weight (and bias).
- `lora`: also a LoRA (transplant.heal.lora) on the attention and MLP linears, merged on save.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from transplant.errors import UserError
from transplant.heal.head import target_logprobs
from transplant.heal.lora import LoRALinear, inject
from transplant.heal.objectives import token_logprobs

TRAIN_SETS = ("embeddings", "embeddings+norms", "lora")


@dataclass
class _PlainHead:
    """A decoder whose last hidden states times the output matrix are the logits (then softcapped)."""

    decoder: nn.Module
    prefix: str  # the decoder's parameter names, within the model's, start with this
    softcap: float | None


@dataclass
class RowBlock:
    """The new rows of one embedding matrix."""

    name: str  # the model's parameter name of the matrix
    matrix: torch.Tensor  # the full matrix, frozen
    rows: nn.Parameter  # (len(ids), d), trained


class Trainable:
    def __init__(self, model: nn.Module, new_ids, train_set: str = "embeddings", *,
                 lora_rank: int = 8, lora_alpha: float = 16.0, seed: int = 0):
        if train_set not in TRAIN_SETS:
            raise UserError(f"unknown --train {train_set!r}; choose one of: {', '.join(TRAIN_SETS)}")
        for param in model.parameters():
            param.requires_grad_(False)
        self.model = model
        self.train_set = train_set
        device = next(model.parameters()).device
        self.ids = torch.unique(torch.as_tensor(new_ids, dtype=torch.long)).to(device)  # sorted: see active_rows
        names = {id(p): n for n, p in model.named_parameters()}
        inp = model.get_input_embeddings().weight
        out = model.get_output_embeddings()
        matrices = [inp] + ([out.weight] if out is not None and out.weight is not inp else [])
        if len(self.ids) and int(self.ids.max()) >= min(m.shape[0] for m in matrices):
            raise UserError(f"new token id {int(self.ids.max())} is past the embedding matrix ({matrices[0].shape[0]} rows)")
        self.blocks = [RowBlock(names[id(m)], m, nn.Parameter(m.detach()[self.ids].clone())) for m in matrices]
        self.norms: dict[str, nn.Parameter] = {}
        if train_set == "embeddings+norms":
            for module_name, module in model.named_modules():
                if type(module).__name__.endswith("Norm") or isinstance(module, nn.LayerNorm):
                    for param_name, param in module.named_parameters(recurse=False):
                        param.requires_grad_(True)
                        self.norms[f"{module_name}.{param_name}"] = param
        self.lora: dict[str, LoRALinear] = inject(model, lora_rank, lora_alpha, seed) if train_set == "lora" else {}
        self._head = self._plain_head(model)

    @property
    def tied(self) -> bool:
        return len(self.blocks) == 1

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Every trained tensor, in a fixed order (the optimizer's and the checkpoint's)."""
        params = {f"{block.name}:new_rows": block.rows for block in self.blocks}
        params.update(self.norms)
        for name, wrapper in self.lora.items():
            params[f"{name}:lora_a"] = wrapper.lora_a
            params[f"{name}:lora_b"] = wrapper.lora_b
        return params

    def row_params(self) -> list[nn.Parameter]:
        return [block.rows for block in self.blocks]

    def dense_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups for norms and LoRA. Weight decay only on LoRA matrices: norms start from
        meaningful values, and decay would pull them toward zero, not toward the transplant. LoRA
        matrices train at a tenth of --lr (`lr_scale`): new rows heal fastest near 1e-2 (measured:
        HealOptions.lr), ten times the rates LoRA fine-tuning usually takes."""
        groups = [{"params": list(self.norms.values()), "weight_decay": 0.0, "lr_scale": 1.0}] if self.norms else []
        lora = [p for wrapper in self.lora.values() for p in (wrapper.lora_a, wrapper.lora_b)]
        return groups + ([{"params": lora, "weight_decay": weight_decay, "lr_scale": 0.1}] if lora else [])

    def active_rows(self, tokens: torch.Tensor) -> torch.Tensor:
        """bool per new row: its token occurs among `tokens` (negative ids are padding)."""
        present = torch.unique(tokens[tokens >= 0].to(self.ids.device))
        active = torch.zeros(len(self.ids), dtype=torch.bool, device=self.ids.device)
        if not len(self.ids) or not len(present):
            return active
        where = torch.searchsorted(self.ids, present).clamp(max=len(self.ids) - 1)
        active[where[self.ids[where] == present]] = True
        return active

    @torch.no_grad()
    def keep_row_gradients(self, active: torch.Tensor) -> None:
        """Zero the gradient of inactive rows, so clipping measures only the rows that move."""
        for block in self.blocks:
            if block.rows.grad is not None:
                block.rows.grad[~active] = 0

    def _overrides(self) -> dict[str, torch.Tensor]:
        return {block.name: block.matrix.detach().index_put((self.ids,), block.rows) for block in self.blocks}

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The model's logits with the current rows in place (differentiable in every trained tensor)."""
        # tie_weights: a tied output matrix follows the input's override
        out = functional_call(self.model, self._overrides(), args=(),
                              kwargs={"input_ids": input_ids, "use_cache": False}, tie_weights=True)
        return out.logits

    @property
    def chunked_head(self) -> bool:
        """Whether target_logprobs runs the head chunk by chunk (else through the whole logits)."""
        return self._head is not None

    def target_logprobs(self, input_ids: torch.Tensor, targets: torch.Tensor, grad_rows: torch.Tensor) -> torch.Tensor:
        """log p(target) at every position (0 where the target is IGNORE), as from `logits`, but only
        the output rows marked in `grad_rows` (bool per new row) get a gradient: the optimizer moves
        no other (transplant.heal.optim). Computed chunk by chunk (transplant.heal.head) where the
        model's head is a plain product with the output matrix."""
        if self._head is None:
            return token_logprobs(self.logits(input_ids), targets)
        return self._chunked(self._head, input_ids, targets, grad_rows)

    def _chunked(self, head: _PlainHead, input_ids: torch.Tensor, targets: torch.Tensor, grad_rows: torch.Tensor) -> torch.Tensor:
        overrides = self._overrides()
        inner = {name[len(head.prefix):]: tensor for name, tensor in overrides.items() if name.startswith(head.prefix)}
        hidden = functional_call(head.decoder, inner, args=(), kwargs={"input_ids": input_ids, "use_cache": False}).last_hidden_state
        out = self.blocks[-1]
        return target_logprobs(hidden, overrides[out.name], out.rows[grad_rows], self.ids[grad_rows], targets, head.softcap)

    def _plain_head(self, model: nn.Module) -> _PlainHead | None:
        """The decoder, its parameter-name prefix and the softcap when its hidden states times the
        output matrix (softcapped where the config says so) give the model's own logits, checked on a
        few tokens; None for a head that does more (a bias, a logit scale), which keeps the general path."""
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        out = model.get_output_embeddings()
        if decoder is None or out is None or getattr(out, "bias", None) is not None:
            return None
        prefix = next((f"{name}." for name, module in model.named_modules() if module is decoder), None)
        if not prefix or not self.blocks[0].name.startswith(prefix):
            return None
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        head = _PlainHead(decoder, prefix, getattr(config, "final_logit_softcapping", None))
        probe = torch.arange(min(9, self.blocks[0].matrix.shape[0]), device=self.ids.device)[None]
        everything = torch.ones(len(self.ids), dtype=torch.bool, device=self.ids.device)
        with torch.no_grad():
            general = token_logprobs(self.logits(probe[:, :-1]), probe[:, 1:])
            fast = self._chunked(head, probe[:, :-1], probe[:, 1:], everything)
        return head if torch.allclose(fast, general, rtol=1e-4, atol=1e-4) else None

    @torch.no_grad()
    def final_tensors(self) -> dict[str, torch.Tensor]:
        """Model parameter name -> the full tensor to save, for every tensor that training changed."""
        tensors = {block.name: block.matrix.index_put((self.ids,), block.rows) for block in self.blocks}
        tensors.update({name: param.detach().clone() for name, param in self.norms.items()})
        tensors.update({name: wrapper.merged_weight() for name, wrapper in self.lora.items()})
        return {name: tensor.cpu() for name, tensor in tensors.items()}

    def state(self) -> dict[str, torch.Tensor]:
        return {name: param.detach().cpu().clone() for name, param in self.named_parameters().items()}

    @torch.no_grad()
    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        params = self.named_parameters()
        if set(state) != set(params):
            raise UserError("the checkpoint trains other tensors than this run; start over with --overwrite")
        for name, param in params.items():
            param.copy_(state[name])
