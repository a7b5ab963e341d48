"""The hypernetwork and its folder.

Input: a token's pieces (see `pieces`), looked up in the frozen base embeddings (input and output
concatenated when untied) or in learned fallback vectors; normalised per dimension with the base's
statistics; projected (linear + MLP); a small transformer encoder; the first position read out by one
head per embedding matrix, scaled per dimension. ZeTT's layout, with one change of ours: the heads
predict a correction to the mean of the piece embeddings (what FVT outputs) and start at zero, so an
untrained network is exactly FVT and training can only be judged by how much it adds.

Folder: config.json (`model_type: transplant-hypernet`, the shape and the base it belongs to) and
model.safetensors; the base embeddings are not stored, the base is needed to use it anyway.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from transplant.errors import UserError
from transplant.hub.folder_kind import HYPERNET_MODEL_TYPE
from transplant.hypernet.pieces import PAD

WEIGHTS = "model.safetensors"
N_FALLBACK = 256


@dataclass
class HypernetConfig:
    base_vocab_size: int
    hidden: int  # d of the base
    n_matrices: int  # 1 tied, 2 untied (input, output)
    max_pieces: int = 8
    width: int = 128
    layers: int = 2
    heads: int = 4
    ff: int = 512
    base: dict = field(default_factory=dict)  # spec, name, fingerprint of the base embeddings
    training: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        # base_model: what the Hub model card names as the base
        return {"model_type": HYPERNET_MODEL_TYPE, "base_model": self.base.get("spec"), **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> "HypernetConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def embeddings_fingerprint(table: torch.Tensor) -> list[float]:
    """Cheap summary of a (V, n, d) base table that tells a wrong base from the right one."""
    return [round(float(table.mean()), 6), round(float(table.std()), 6), round(float(table[:, :, 0].sum()), 3)]


class Hypernet(nn.Module):
    def __init__(self, config: HypernetConfig):
        super().__init__()
        self.config = config
        dim = config.n_matrices * config.hidden
        self.fallback = nn.Parameter(torch.zeros(N_FALLBACK, dim))
        self.register_buffer("in_mean", torch.zeros(dim))
        self.register_buffer("in_std", torch.ones(dim))
        self.project = nn.Linear(dim, config.width)
        self.mlp = nn.Sequential(nn.Linear(config.width, 2 * config.width), nn.GELU(), nn.Linear(2 * config.width, config.width))
        self.position = nn.Parameter(torch.randn(config.max_pieces, config.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, config.ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.readout = nn.ModuleList(nn.Linear(config.width, config.hidden) for _ in range(config.n_matrices))
        for head in self.readout:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.out_scale = nn.Parameter(torch.ones(config.n_matrices, config.hidden))

    @torch.no_grad()
    def init_from_base(self, table: torch.Tensor) -> None:
        """Statistics from the base's (V, n, d) table: input normalisation, fallback vectors at the
        mean, output scale at the per-dimension standard deviation."""
        flat = table.reshape(table.shape[0], -1).float()
        self.in_mean.copy_(flat.mean(0))
        self.in_std.copy_(flat.std(0).clamp_min(1e-6))
        self.fallback.copy_(self.in_mean.expand_as(self.fallback))
        self.out_scale.copy_(table.float().std(0))

    def forward(self, table: torch.Tensor, pieces: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """(N, n, d) embeddings for N tokens given as (N, max_pieces) piece ids (PAD-padded) over the
        base's (V, n, d) table."""
        # Most tokens have one to three pieces: running them in groups of similar length, each trimmed
        # to its longest member, does a fraction of the padded work.
        lengths = (pieces != PAD).sum(1)
        order = torch.argsort(lengths, stable=True)
        parts = []
        for group in order.split(chunk):
            longest = max(1, int(lengths[group].max()))
            parts.append(self._predict(table, pieces[group, :longest]))
        return torch.cat(parts)[torch.argsort(order)]

    def _predict(self, table: torch.Tensor, pieces: torch.Tensor) -> torch.Tensor:
        n_base = table.shape[0]
        flat = table.reshape(n_base, -1)
        mask = pieces != PAD
        is_base = mask & (pieces < n_base)
        rows = torch.where(
            is_base.unsqueeze(-1),
            flat[pieces.clamp(0, n_base - 1)],
            self.fallback[(pieces - n_base).clamp(0, N_FALLBACK - 1)],
        ) * mask.unsqueeze(-1)
        mean = rows.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        x = self.project((rows - self.in_mean) / self.in_std)
        x = x + self.mlp(x) + self.position[: pieces.shape[1]]
        h = self.norm(self.encoder(x, src_key_padding_mask=~mask)[:, 0])
        delta = torch.stack([head(h) for head in self.readout], dim=1) * self.out_scale
        return mean.view(-1, self.config.n_matrices, self.config.hidden) + delta


def save_hypernet(model: Hypernet, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(model.config.to_json(), indent=2) + "\n")


def load_hypernet(folder: str | Path) -> Hypernet:
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file() or not (folder / WEIGHTS).is_file():
        raise UserError(f"{folder} is not a hypernetwork folder (needs config.json and {WEIGHTS}); "
                        "train one with `transplant hypernet train`")
    data = json.loads(config_file.read_text())
    if data.get("model_type") != HYPERNET_MODEL_TYPE:
        raise UserError(f"{folder}/config.json is not a hypernetwork's (model_type {data.get('model_type')!r})")
    model = Hypernet(HypernetConfig.from_json(data))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.eval()


def check_base(model: Hypernet, table: torch.Tensor, where: str) -> None:
    """A UserError when `table` is not the base the hypernetwork was trained for."""
    cfg = model.config
    shape = (cfg.base_vocab_size, cfg.n_matrices, cfg.hidden)
    if tuple(table.shape) != shape:
        raise UserError(f"the hypernetwork was trained for a base with embeddings {shape}, {where} has {tuple(table.shape)}")
    expected = cfg.base.get("fingerprint")
    found = embeddings_fingerprint(table)
    if expected and any(abs(a - b) > 1e-3 * max(1.0, abs(a)) for a, b in zip(expected, found)):
        raise UserError(
            f"the hypernetwork was trained for base {cfg.base.get('name')!r}; {where} has other embeddings "
            f"(fingerprint {found} vs {expected})"
        )
