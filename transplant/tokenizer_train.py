"""Train a byte-level BPE tokenizer from text files and write it as a Hugging Face tokenizer folder.

Two pre-tokenizations share everything else (trainer, byte alphabet, special tokens, output):

- plain: the Qwen2 / GPT-4-style regex splits text into words, numbers (one digit each), punctuation
  runs and whitespace, so no token crosses a word boundary;
- supertokens (`transplant.supertokens`): random character chunks at training time, none at
  inference, so tokens may span words.

Both are lossless: no normalizer, every byte in the alphabet, and the byte-level decoder inverts the
byte-level pre-tokenizer, so decode(encode(x)) == x for every str that UTF-8 can encode (a lone
surrogate cannot be, and encode refuses it).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    trainers,
)

from transplant import tokenizer_builders as tb
from transplant.checkpoint import atomic_folder
from transplant.errors import UserError
from transplant.offline_packs import QWEN2_PATTERN

DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TRAINING_RECORD = "tokenizer_training.json"


@dataclass(frozen=True)
class TextFile:
    path: Path
    bytes: int
    sha256: str


@dataclass
class TrainingRecord:
    """What went into a trained tokenizer, written beside it as tokenizer_training.json."""

    kind: str  # "plain" or "supertokens"
    vocab_size_requested: int
    vocab_size: int
    min_frequency: int
    special_tokens: list[str]
    files: list[TextFile]
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)  # chunking parameters and seed for supertokens

    def to_json(self) -> str:
        data = asdict(self)
        data["files"] = [{**f, "path": str(f["path"])} for f in data["files"]]
        return json.dumps(data, indent=2) + "\n"


def check_text_files(paths: Iterable[str | Path]) -> list[TextFile]:
    """Every path as a readable, non-empty UTF-8 file, with its size and hash; UserError otherwise."""
    files = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"training text {name}: no such file")
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"training text {name} is not UTF-8 (byte {error.start}); convert it first, e.g. with iconv") from error
        files.append(TextFile(path, len(data), hashlib.sha256(data).hexdigest()))
    if not files:
        raise UserError("no training text given (--text FILE...)")
    if sum(f.bytes for f in files) == 0:
        raise UserError("the training text files are all empty")
    return files


def read_texts(files: Iterable[TextFile], progress: bool = False) -> Iterator[str]:
    """The files' text, one file at a time, so a corpus never has to fit in memory twice."""
    from tqdm import tqdm

    files = list(files)
    for file in tqdm(files, desc="reading text", unit="file", disable=not progress or len(files) < 2):
        yield file.path.read_text(encoding="utf-8")


def byte_level_bpe(pre_tokenizer: pre_tokenizers.PreTokenizer) -> Tokenizer:
    """An untrained byte-level BPE with this pre-tokenizer and no normalizer (normalizers such as NFC
    change characters, and decode(encode(x)) would no longer give x back)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def plain_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Qwen2's split: words with one leading space or mark, single digits, punctuation runs, spaces."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def train_bpe(
    tokenizer: Tokenizer,
    sequences: Iterable[str | list[str]],
    *,
    vocab_size: int,
    special_tokens: list[str],
    min_frequency: int = 2,
    progress: bool = False,
) -> Tokenizer:
    """Train `tokenizer` in place on `sequences` (a pre-token never spans two of them)."""
    check_vocab_size(vocab_size, special_tokens)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[AddedToken(token, special=True, normalized=False) for token in special_tokens],
        # all 256 bytes, seen or not: any text can be encoded
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator(sequences, trainer)
    return tokenizer


def check_vocab_size(vocab_size: int, special_tokens: list[str]) -> None:
    smallest = 256 + len(special_tokens) + 1
    if vocab_size < smallest:
        raise UserError(
            f"--vocab-size {vocab_size} is too small: 256 byte tokens and {len(special_tokens)} special tokens "
            f"leave no room for merges; use at least {smallest}"
        )
    if len(set(special_tokens)) != len(special_tokens) or not all(special_tokens):
        raise UserError(f"special tokens must be distinct and non-empty, got {special_tokens}")


def train_plain(
    files: list[TextFile],
    *,
    vocab_size: int,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    min_frequency: int = 2,
    progress: bool = False,
) -> tuple[Tokenizer, TrainingRecord]:
    """A byte-level BPE with Qwen2-style pre-tokenization (tokens stay inside words)."""
    start = time.perf_counter()
    tokenizer = train_bpe(
        byte_level_bpe(plain_pre_tokenizer()), read_texts(files, progress), vocab_size=vocab_size,
        special_tokens=list(special_tokens), min_frequency=min_frequency, progress=progress,
    )
    record = TrainingRecord(
        "plain", vocab_size, tokenizer.get_vocab_size(), min_frequency, list(special_tokens), files,
        time.perf_counter() - start, {"pattern": QWEN2_PATTERN},
    )
    return tokenizer, record


def save_tokenizer(out: str | Path, tokenizer: Tokenizer, record: TrainingRecord, *, overwrite: bool = False) -> Path:
    """tokenizer.json + tokenizer_config.json (the first special token is eos) + the training record,
    written atomically: an interrupted run leaves no folder that looks finished."""
    out = Path(out)
    with atomic_folder(out, overwrite) as tmp:
        specials = {"eos_token": record.special_tokens[0]} if record.special_tokens else {}
        tb.write_tokenizer_folder(tmp, tokenizer, specials)
        (tmp / TRAINING_RECORD).write_text(record.to_json())
    return out
