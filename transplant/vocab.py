"""Canonical byte form of every token, for every tokenizer family, and special-token roles.

Two vocabularies share a token when the bytes it contributes to decoded text agree, whatever the
spelling: `Ġthe` (GPT-2 byte alphabet), `▁the` (SentencePiece) and b" the" (tiktoken) are one token.
Word-start markers become the leading space they decode to. Special tokens carry no bytes; they
match by role (bos, eos, chat markers, ...) instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from transplant.errors import UserError

BYTE_LEVEL = "byte_level"
SENTENCEPIECE = "sentencepiece"
WORDPIECE = "wordpiece"

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")

# Roles implied by a special token's spelling, across families. Declared roles from
# tokenizer_config.json (bos/eos/pad/unk) come first; these fill in chat and FIM markers.
_CONTENT_ROLES = {
    "bos": {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "[CLS]"},
    "eos": {"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "[SEP]"},
    "pad": {"<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>"},
    "unk": {"<unk>", "[UNK]"},
    "turn_start": {"<|im_start|>", "<start_of_turn>", "<|start_header_id|>", "[INST]"},
    "turn_end": {"<|im_end|>", "<end_of_turn>", "<|eot_id|>", "[/INST]"},
    "fim_prefix": {"<|fim_prefix|>", "<fim_prefix>", "[PREFIX]"},
    "fim_middle": {"<|fim_middle|>", "<fim_middle>", "[MIDDLE]"},
    "fim_suffix": {"<|fim_suffix|>", "<fim_suffix>", "[SUFFIX]"},
    "fim_pad": {"<|fim_pad|>", "<fim_pad>"},
    "repo_name": {"<|repo_name|>", "<repo_name>", "<reponame>"},
    "file_sep": {"<|file_sep|>", "<file_sep>"},
}


@lru_cache(maxsize=1)
def gpt2_byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


@lru_cache(maxsize=1)
def _gpt2_char_to_byte() -> dict[str, int]:
    return {c: b for b, c in gpt2_byte_alphabet().items()}


@dataclass
class SpecialToken:
    id: int
    content: str
    roles: tuple[str, ...]


@dataclass
class Vocab:
    """A tokenizer's vocabulary in canonical form; ids index every list."""

    family: str
    tokens: list[bytes | None]  # None: special token or unused id
    specials: dict[int, SpecialToken]
    byte_fallback: np.ndarray  # bool per id: SentencePiece <0xNN> pieces
    tokenizer: Tokenizer = field(repr=False)
    config: dict = field(repr=False, default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.tokens)

    def role_id(self, role: str) -> int | None:
        """The first special token holding a role, declared roles first."""
        for sp in sorted(self.specials.values(), key=lambda s: (s.roles.index(role) if role in s.roles else 99, s.id)):
            if role in sp.roles:
                return sp.id
        return None

    @cached_property
    def byte_index(self) -> dict[bytes, int]:
        """Canonical bytes -> id, preferring ordinary pieces over byte-fallback pieces and lower ids."""
        index: dict[bytes, int] = {}
        for i, tok in enumerate(self.tokens):
            if tok is None:
                continue
            prev = index.get(tok)
            if prev is None or (self.byte_fallback[prev] and not self.byte_fallback[i]):
                index[tok] = i
        return index

    def decompose(self, data: bytes) -> list[int]:
        """Split bytes into pieces of this vocabulary with the tokenizer's model alone (no
        normalizer, no pre-tokenizer), as ZeTT and FVT do. Lossless when the vocabulary covers all
        256 bytes; a byte it lacks (SmolLM2 has no piece for 0xC0, never seen in UTF-8) is skipped."""
        if not data:
            return []
        model = self.tokenizer.model
        if self.family == BYTE_LEVEL:
            alphabet = gpt2_byte_alphabet()
            pieces = [t.value for t in model.tokenize("".join(alphabet[b] for b in data))]
            return [self._piece_id(p) for p in pieces]
        if self.family == SENTENCEPIECE:
            return self._decompose_sentencepiece(data)
        raise UserError(f"decomposing text with a {self.family} vocabulary is not supported")

    def _decompose_sentencepiece(self, data: bytes) -> list[int]:
        ids: list[int] = []
        text = data.decode("utf-8", errors="surrogateescape")
        # Undecodable bytes (pieces of a multi-byte character) become byte-fallback pieces.
        for run in re.split(r"([\udc80-\udcff]+)", text):
            if not run:
                continue
            if "\udc80" <= run[0] <= "\udcff":
                ids.extend(self._byte_piece(ord(ch) - 0xDC00) for ch in run)
                continue
            for tok in self.tokenizer.model.tokenize(run.replace(" ", "▁")):
                ids.append(tok.id)
        return ids

    def _byte_piece(self, byte: int) -> int:
        tid = self.tokenizer.token_to_id(f"<0x{byte:02X}>")
        if tid is None:
            tid = self.byte_index.get(bytes([byte]))
        if tid is None:
            raise UserError(f"byte 0x{byte:02X} has no piece in this vocabulary")
        return tid

    def _piece_id(self, piece: str) -> int:
        tid = self.tokenizer.token_to_id(piece)
        if tid is None:
            raise UserError(f"tokenizer model produced piece {piece!r} that is not in its vocabulary")
        return tid


def detect_family(spec: dict) -> str:
    """Family from tokenizer.json: the decoder says how pieces become bytes."""
    model_type = spec.get("model", {}).get("type")
    decoders = _flatten(spec.get("decoder"), "decoders")
    kinds = {d.get("type") for d in decoders}
    if "ByteLevel" in kinds:
        return BYTE_LEVEL
    if model_type == "WordPiece" or "WordPiece" in kinds:
        return WORDPIECE
    if "Metaspace" in kinds or "ByteFallback" in kinds or any(
        d.get("type") == "Replace" and "▁" in json.dumps(d, ensure_ascii=False) for d in decoders
    ):
        return SENTENCEPIECE
    pre = _flatten(spec.get("pre_tokenizer"), "pretokenizers")
    if any(p.get("type") == "ByteLevel" for p in pre):
        return BYTE_LEVEL
    raise UserError(f"cannot tell how this tokenizer's pieces decode to bytes (model {model_type}, decoder {sorted(kinds)})")


def _flatten(node: dict | None, key: str) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [leaf for child in node.get(key, []) for leaf in _flatten(child, key)]
    return [node]


def piece_bytes(piece: str, family: str, wordpiece_prefix: str = "##") -> tuple[bytes, bool]:
    """(bytes the piece decodes to, is a byte-fallback piece)."""
    if family == BYTE_LEVEL:
        table = _gpt2_char_to_byte()
        if all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece), False
        return piece.encode("utf-8"), False
    if family == SENTENCEPIECE:
        m = _BYTE_FALLBACK.match(piece)
        if m:
            return bytes([int(m.group(1), 16)]), True
        return piece.replace("▁", " ").encode("utf-8"), False
    if piece.startswith(wordpiece_prefix):
        return piece[len(wordpiece_prefix):].encode("utf-8"), False
    return (" " + piece).encode("utf-8"), False


def load_vocab(folder: str | Path) -> Vocab:
    """Canonical vocabulary of the tokenizer in an HF folder (tokenizer.json + tokenizer_config.json)."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{folder} has no tokenizer.json: a fast (Rust) tokenizer is needed to read its vocabulary")
    spec = json.loads(path.read_text(encoding="utf-8"))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    family = detect_family(spec)
    model_vocab = tokenizer.get_vocab(with_added_tokens=False)
    if not model_vocab:
        raise UserError(f"{path} has an empty vocabulary")
    added = spec.get("added_tokens", [])
    size = max(max(model_vocab.values()), max((a["id"] for a in added), default=-1)) + 1
    tokens: list[bytes | None] = [None] * size
    fallback = np.zeros(size, dtype=bool)
    prefix = spec.get("model", {}).get("continuing_subword_prefix") or "##"
    for piece, tid in model_vocab.items():
        tokens[tid], fallback[tid] = piece_bytes(piece, family, prefix)
    specials: dict[int, SpecialToken] = {}
    declared = _declared_roles(config)
    for a in added:
        if a.get("special", False):
            tokens[a["id"]] = None
            specials[a["id"]] = SpecialToken(a["id"], a["content"], _roles(a["content"], declared))
        else:
            # Added tokens are matched against raw text, not the byte alphabet.
            tokens[a["id"]] = a["content"].encode("utf-8")
    for piece, tid in model_vocab.items():
        # SentencePiece control pieces (<s>, </s>, <unk>) live in the model vocab, not added_tokens.
        if tid not in specials and piece in declared:
            tokens[tid] = None
            specials[tid] = SpecialToken(tid, piece, _roles(piece, declared))
    return Vocab(family, tokens, specials, fallback, tokenizer, config)


def _declared_roles(config: dict) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for role in ("bos", "eos", "pad", "unk"):
        value = config.get(f"{role}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if value:
            roles.setdefault(value, []).append(role)
    return roles


def _roles(content: str, declared: dict[str, list[str]]) -> tuple[str, ...]:
    roles = list(declared.get(content, []))
    roles += [role for role, names in _CONTENT_ROLES.items() if content in names and role not in roles]
    return tuple(roles)
