"""Build `tokenizers` fast tokenizers from the formats reference tokenizers ship in.

Each builder reproduces its reference's ids exactly (checked in tests/test_tokenizer_builders.py):

- SentencePiece `.model` (BPE or unigram), against the `sentencepiece` package,
- tiktoken rank files (Qwen, cl100k, o200k, Tekken), against the `tiktoken` package,
- GPT-2's `encoder.json` + `vocab.bpe`, against tiktoken's r50k ranks.

transformers can convert these formats itself, but on SentencePiece models it gets runs of spaces
and unigram normalisation wrong, and it builds empty tokenizers from GPT-2 vocab files passed
by name; building the pipeline here keeps every step visible and tested.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers.models import BPE, Unigram

from transplant.vocab import gpt2_byte_alphabet

SPACE = "\u2581"  # SentencePiece's visible space

# SentencePiece piece types (sentencepiece_model.proto)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes):
    """(field number, value) pairs of one protobuf message; nested messages stay bytes.

    A hand-rolled reader keeps `protobuf` out of the dependencies for the handful of fields
    SentencePiece needs.
    """
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _int32(value: int) -> int:
    # negative int32 values (pad_id = -1) arrive as 64-bit two's complement varints
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class SentencePieceModel:
    """The parts of a SentencePiece ModelProto that decide how text becomes ids."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type)
    model_type: int = 1  # 1 unigram, 2 BPE
    byte_fallback: bool = False
    special_ids: dict[str, int] = field(default_factory=lambda: {"unk": 0, "bos": 1, "eos": 2, "pad": -1})
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    treat_whitespace_as_suffix: bool = False
    charsmap: bytes = b""


def read_sentencepiece(path: str | Path) -> SentencePieceModel:
    data = Path(path).read_bytes()
    model = SentencePieceModel(pieces=[])
    for number, value in _proto_fields(data):
        if number == 1:
            piece, score, kind = "", 0.0, _NORMAL
            for sub, sub_value in _proto_fields(value):
                if sub == 1:
                    piece = sub_value.decode("utf-8")
                elif sub == 2:
                    score = struct.unpack("<f", sub_value)[0]
                elif sub == 3:
                    kind = sub_value
            model.pieces.append((piece, score, kind))
        elif number == 2:
            special_fields = {40: "unk", 41: "bos", 42: "eos", 43: "pad"}
            for sub, sub_value in _proto_fields(value):
                if sub == 3:
                    model.model_type = sub_value
                elif sub == 35:
                    model.byte_fallback = bool(sub_value)
                elif sub == 24:
                    model.treat_whitespace_as_suffix = bool(sub_value)
                elif sub in special_fields:
                    model.special_ids[special_fields[sub]] = _int32(sub_value)
        elif number == 3:
            for sub, sub_value in _proto_fields(value):
                if sub == 2:
                    model.charsmap = sub_value
                elif sub == 3:
                    model.add_dummy_prefix = bool(sub_value)
                elif sub == 4:
                    model.remove_extra_whitespaces = bool(sub_value)
                elif sub == 5:
                    model.escape_whitespaces = bool(sub_value)
    if not model.pieces:
        raise ValueError(f"{path} holds no SentencePiece vocabulary")
    if model.model_type not in (1, 2):
        raise ValueError(f"{path}: only BPE and unigram SentencePiece models are supported")
    if model.treat_whitespace_as_suffix or not model.escape_whitespaces:
        raise ValueError(f"{path}: SentencePiece models that do not prefix words with {SPACE} are not supported")
    return model


def _sentencepiece_merges(model: SentencePieceModel) -> list[tuple[str, str]]:
    """SentencePiece BPE merges the adjacent pair whose union scores highest; any split of a
    piece into two known pieces can produce it, so every such split becomes a merge, ranked by
    the piece's score (ties by id, as the reference breaks them by position)."""
    known = {piece for piece, _, kind in model.pieces if kind != _UNUSED}
    ranked = []
    for index, (piece, score, kind) in enumerate(model.pieces):
        if kind not in (_NORMAL, _USER_DEFINED) or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in known and right in known:
                ranked.append((-score, index, cut, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def from_sentencepiece(path: str | Path) -> tuple[Tokenizer, dict[str, str]]:
    """A fast tokenizer equal to `sentencepiece` on `path`, and its bos/eos/unk/pad tokens."""
    model = read_sentencepiece(path)
    vocab = {piece: index for index, (piece, _, _) in enumerate(model.pieces)}
    unk_ids = [index for index, (_, _, kind) in enumerate(model.pieces) if kind == _UNKNOWN]
    unk_id = unk_ids[0] if unk_ids else model.special_ids["unk"]
    if model.model_type == 2:
        tokenizer = Tokenizer(
            BPE(
                vocab=vocab,
                merges=_sentencepiece_merges(model),
                unk_token=model.pieces[unk_id][0],
                byte_fallback=model.byte_fallback,
                fuse_unk=True,
                dropout=None,
            )
        )
    else:
        scored = [(piece, score) for piece, score, _ in model.pieces]
        tokenizer = Tokenizer(Unigram(scored, unk_id=unk_id, byte_fallback=model.byte_fallback))

    # SentencePiece normalises in this order: character map, whitespace clean-up, dummy prefix,
    # spaces made visible; the prefix goes in even before a leading space.
    steps = []
    if model.charsmap:
        steps.append(normalizers.Precompiled(model.charsmap))
    if model.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(r" {2,}"), " ")]
    if model.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))
    steps.append(normalizers.Replace(" ", SPACE))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = None

    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if model.add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(steps)

    # control pieces can never come out of text in SentencePiece; as special tokens they stay
    # whole when a chat template writes them
    tokenizer.add_special_tokens(
        [AddedToken(piece, special=True, normalized=False) for piece, _, kind in model.pieces if kind == _CONTROL]
    )
    tokenizer.add_tokens(
        [AddedToken(piece, special=False, normalized=True) for piece, _, kind in model.pieces if kind == _USER_DEFINED]
    )

    specials = {"unk_token": model.pieces[unk_id][0]}
    for role in ("bos", "eos", "pad"):
        index = model.special_ids[role]
        if 0 <= index < len(model.pieces):
            specials[f"{role}_token"] = model.pieces[index][0]
    bos = specials.get("bos_token")
    if bos is not None:
        # Llama/Mistral-style models expect BOS first; SentencePiece itself leaves that to the caller
        tokenizer.post_processor = bos_template(bos, vocab[bos])
    return tokenizer, specials


def bos_template(bos: str, bos_id: int) -> processors.TemplateProcessing:
    """Post-processor that puts BOS before each sequence, as Llama and Mistral tokenizers do."""
    return processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
    )


def read_tiktoken(path: str | Path) -> dict[bytes, int]:
    """A tiktoken rank file: one `base64(token) rank` per line."""
    ranks = {}
    for line in Path(path).read_text(encoding="ascii").splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _tiktoken_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The last merge tiktoken makes to reach `token`: replay its BPE on the token's own bytes,
    allowing only ranks below the token's, until two parts remain."""
    parts = [bytes([byte]) for byte in token]
    limit = ranks[token]
    while len(parts) > 2:
        best_rank, best_at = limit, -1
        for at in range(len(parts) - 1):
            rank = ranks.get(parts[at] + parts[at + 1])
            if rank is not None and rank < best_rank:
                best_rank, best_at = rank, at
        if best_at < 0:
            break
        parts[best_at : best_at + 2] = [parts[best_at] + parts[best_at + 1]]
    if len(parts) != 2:
        raise ValueError(f"rank file cannot build token {token!r} from lower-ranked parts")
    return parts[0], parts[1]


def from_tiktoken(
    ranks: dict[bytes, int],
    pattern: str,
    added: list[tuple[str, int, bool]],
    *,
    nfc: bool = False,
    id_offset: int = 0,
) -> Tokenizer:
    """Byte-level BPE equal to `tiktoken.Encoding(pat_str=pattern, mergeable_ranks=ranks)`.

    `pattern` must be the non-possessive form (`\\p{N}{1,3}`, not `\\p{N}{1,3}+`): the `tokenizers`
    regex engine reads possessive quantifiers differently. `added` holds (content, id, special) for the
    tokens matched whole before BPE. `id_offset` shifts every rank, for vocabularies (Tekken) that put
    their special tokens first.
    """
    alphabet = gpt2_byte_alphabet()

    def spell(token: bytes) -> str:
        return "".join(alphabet[byte] for byte in token)

    vocab = {spell(token): rank + id_offset for token, rank in ranks.items()}
    for content, token_id, _ in added:
        if vocab.setdefault(content, token_id) != token_id:
            raise ValueError(f"added token {content} clashes with an ordinary token")
    merges = []
    for token in sorted(ranks, key=ranks.__getitem__):
        if len(token) > 1:
            left, right = _tiktoken_merge(token, ranks)
            merges.append((spell(left), spell(right)))
    # tiktoken takes a whole pre-token when it is in the vocabulary before merging anything
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, ignore_merges=True, fuse_unk=False, dropout=None))
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    # already in the model's vocabulary, so each keeps its fixed id; non-special ones (Qwen's
    # <tool_call>) still match whole but survive skip_special_tokens when decoding
    tokenizer.add_tokens([AddedToken(content, special=special, normalized=False) for content, _, special in added])
    return tokenizer


def from_gpt2_files(encoder_json: str | Path, vocab_bpe: str | Path) -> Tokenizer:
    """GPT-2's byte-level BPE from OpenAI's `encoder.json` (token -> id) and `vocab.bpe` (merges)."""
    vocab = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    lines = Path(vocab_bpe).read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, dropout=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    tokenizer.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return tokenizer


_SPECIAL_GUESSES = {
    "bos_token": ["<s>", "<|begin_of_text|>", "<bos>", "[CLS]", "<|startoftext|>"],
    "eos_token": ["</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "[SEP]", "<|im_end|>"],
    "unk_token": ["<unk>", "[UNK]", "<|unk|>"],
    "pad_token": ["<pad>", "[PAD]", "<|pad|>", "<|finetune_right_pad_id|>"],
}


def guess_special_tokens(tokenizer: Tokenizer) -> dict[str, str]:
    """bos/eos/unk/pad for a bare tokenizer.json, from the usual spellings among its special tokens."""
    present = {token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special}
    unk = getattr(tokenizer.model, "unk_token", None)
    if unk:
        present.add(unk)
    found = {}
    for role, candidates in _SPECIAL_GUESSES.items():
        for candidate in candidates:
            if candidate in present:
                found[role] = candidate
                break
    return found


BACKEND_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def as_backend_config(config: dict) -> dict:
    """A tokenizer_config.json that loads tokenizer.json unchanged: the class becomes
    `TokenizersBackend`, and remote code and pointers to slow-tokenizer files go."""
    config = {key: value for key, value in config.items() if key not in _DROPPED_CONFIG_KEYS}
    config["tokenizer_class"] = "TokenizersBackend"
    return config


# auto_map would run a repo's own code; the rest are traces of a save, not settings
_DROPPED_CONFIG_KEYS = ("auto_map", "tokenizer_file", "vocab_file", "merges_file", "is_local", "local_files_only")


def write_tokenizer_folder(
    folder: str | Path,
    tokenizer: Tokenizer,
    specials: dict[str, str],
    *,
    chat_template: str | None = None,
    model_max_length: int | None = None,
) -> None:
    """`tokenizer.json` + a `tokenizer_config.json` that makes AutoTokenizer load exactly that file.

    `TokenizersBackend` is the transformers 5 class that takes tokenizer.json as it is; a
    model-specific class (LlamaTokenizer, Qwen2Tokenizer...) would rebuild the pipeline from the
    vocabulary and merges with its own normaliser and pre-tokeniser.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    config: dict = {"tokenizer_class": "TokenizersBackend", "clean_up_tokenization_spaces": False}
    for role, token in sorted(specials.items()):
        if token is not None:
            if token not in vocab:
                raise ValueError(f"{role} {token!r} is not in the vocabulary")
            config[role] = token
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    if chat_template is not None:
        (folder / "chat_template.jinja").write_text(chat_template)
