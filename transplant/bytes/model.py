"""A causal LM with what byte-level inference needs: canonical token bytes, their trie, pair checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from transplant.bytes.canonical import PairCheck
from transplant.bytes.trie import TokenTrie
from transplant.vocab import Vocab, load_vocab


@dataclass
class ByteLM:
    name: str
    model: object = field(repr=False)
    tokenizer: object = field(repr=False)  # the HF fast tokenizer, for canonical ids
    vocab: Vocab = field(repr=False)

    @cached_property
    def trie(self) -> TokenTrie:
        return TokenTrie.from_vocab(self.vocab, self.model.config.vocab_size)

    @cached_property
    def pairs(self) -> PairCheck:
        return PairCheck(self.vocab)

    @cached_property
    def start_id(self) -> int:
        """The token every text is scored after: bos, else eos (as the token-level scorer does)."""
        from transplant.eval.score import start_token

        return start_token(self.tokenizer)[1]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def wrap(name: str, model, tokenizer, folder) -> ByteLM:
    """A ByteLM around an already loaded model and tokenizer from `folder`."""
    return ByteLM(name, model.eval(), tokenizer, load_vocab(folder))


def load_byte_lm(spec: str, allow_pickle: bool = False) -> ByteLM:
    """Resolve a model spec (folder, alias, offline pack) and load it in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transplant.sources import resolve

    source = resolve(spec, need_weights=True, allow_pickle=allow_pickle)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    return wrap(source.name, model, tokenizer, source.path)
