"""The transplant, end to end: resolve, align, initialise, write. One straight road."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transplant import __version__
from transplant.align import SPECIAL, Alignment, align
from transplant.calibrate import bias_direction, shift_new_rows
from transplant.checkpoint import (
    atomic_folder,
    copy_model_files,
    read_embeddings,
    update_configs,
    write_tokenizer,
    write_weights,
)
from transplant.errors import UserError
from transplant.methods import METHODS, MethodInputs, as_output, build_matrices
from transplant.sources import Source, resolve
from transplant.vocab import Vocab, load_vocab


@dataclass
class TransplantOptions:
    base: str
    donor: str
    method: str = "omp"
    output: str | None = None
    overwrite: bool = False
    allow_pickle: bool = False
    params: dict = field(default_factory=dict)  # method parameters, e.g. {"k": 64}
    output_bias: float = 0.0  # nats added to new tokens' logits (transplant.calibrate); 0 = off
    progress: bool = True


def default_output(base: Source, donor: Source, method: str) -> Path:
    return Path(f"{base.name}--{donor.name}--{method}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(options: TransplantOptions) -> Path:
    spec = METHODS.get(options.method)
    if spec is None:
        raise UserError(f"unknown method {options.method!r}; choose one of: {', '.join(sorted(METHODS))}")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    base = resolve(options.base, need_weights=True, allow_pickle=options.allow_pickle)
    donor = resolve(options.donor, need_weights=False, allow_pickle=options.allow_pickle)
    if spec.needs_donor_embeddings and not donor.has_weights:
        usable = ", ".join(sorted(n for n, s in METHODS.items() if not s.needs_donor_embeddings))
        raise UserError(
            f"method {options.method} needs the donor's embeddings, but {options.donor} is a tokenizer only; "
            f"methods that work from a tokenizer alone: {usable}"
        )
    output = Path(options.output) if options.output else default_output(base, donor, options.method)
    if output.exists() and not options.overwrite:
        raise UserError(f"output folder {output} exists; pass --overwrite to replace it")
    timings["resolve_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    base_vocab, donor_vocab = load_vocab(base.path), load_vocab(donor.path)
    alignment = align(base_vocab, donor_vocab)
    timings["align_s"] = time.perf_counter() - clock
    _report_alignment(alignment, donor_vocab)

    clock = time.perf_counter()
    base_emb = read_embeddings(base.path)
    donor_mats = None
    if spec.needs_donor_embeddings:
        donor_mats = read_embeddings(donor.path).matrices
        if donor_mats.shape[0] < donor_vocab.size:
            raise UserError(
                f"donor tokenizer has {donor_vocab.size} ids but its embeddings only {donor_mats.shape[0]} rows"
            )
    if base_emb.vocab_size < base_vocab.size:
        raise UserError(f"base tokenizer has {base_vocab.size} ids but its embeddings only {base_emb.vocab_size} rows")
    timings["read_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    inputs = MethodInputs(base_emb.matrices, donor_mats, base_vocab, donor_vocab, alignment)
    result = as_output(spec.fn(inputs, progress=options.progress, **options.params))
    new_rows = result.new_rows
    calibration = None
    if options.output_bias:
        direction = bias_direction(base.path)
        shift_new_rows(new_rows, direction, options.output_bias)
        calibration = {"output_bias": options.output_bias, "fit_mean": round(direction.fit_mean, 4),
                       "fit_std": round(direction.fit_std, 4), "positions": direction.positions}
        log(f"output bias {options.output_bias:+g} nats via a hidden-state direction (h·u = {direction.fit_mean:.3f} ± {direction.fit_std:.3f})")
    heads = build_matrices(inputs, new_rows, base_emb.dtype, result.shared_rows)
    # Only the finished matrices are needed from here on; free the rest before writing.
    names, tied = base_emb.names, base_emb.tied
    del new_rows, result, inputs, donor_mats, base_emb
    timings["method_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    new_tensors = dict(zip(names, heads))
    with atomic_folder(output, options.overwrite) as tmp:
        write_weights(base.path, tmp, new_tensors, progress=options.progress)
        copy_model_files(base.path, tmp)
        write_tokenizer(donor.path, tmp)
        update_configs(tmp, donor_vocab, special_ids(base, base_vocab, donor_vocab, alignment))
        timings["write_s"] = time.perf_counter() - clock
        record = {
            "base": {"spec": options.base, "name": base.name, "path": str(base.path)},
            "donor": {"spec": options.donor, "name": donor.name, "path": str(donor.path), "has_weights": donor.has_weights},
            "method": options.method,
            "parameters": options.params,
            "calibration": calibration,
            "alignment": {**alignment.counts(), "base_vocab": base_vocab.size, "special_map": alignment.special_map},
            "tied": tied,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "versions": _versions(),
        }
        # Written last: its presence marks a finished folder.
        (tmp / "transplant.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {output} in {sum(timings.values()):.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in timings.items())})")
    return output


def special_ids(base: Source, base_vocab: Vocab, donor_vocab: Vocab, alignment: Alignment) -> dict:
    """bos/eos/pad/unk ids in donor space. eos: the donor's own plus every donor token that took the
    place of a base eos, so generation stops where the base model learned to stop. bos: the donor
    token that took the place of the base's bos, else the donor's own; the base model learned what
    the start of a text looks like from its own bos row, and starting from another row costs (SmolLM2
    <- Qwen, Japanese: 4.659 bits per byte from <|endoftext|>'s row, 4.621 from <|im_start|>'s).
    pad/unk: the donor's own, else the one that took the place of the base's."""
    base_config = json.loads((base.path / "config.json").read_text())
    base_config = base_config.get("text_config", base_config)
    back = {int(b): d for d, b in enumerate(alignment.donor_to_base) if alignment.kind[d] == SPECIAL}
    result: dict[str, int | list[int] | None] = {}
    for role in ("bos", "eos", "pad", "unk"):
        declared = base_config.get(f"{role}_token_id")
        replaced = [back[int(b)] for b in (declared if isinstance(declared, list) else [declared])
                    if b is not None and int(b) in back]
        own = donor_vocab.role_id(role)
        ids = ([own] if own is not None else []) + replaced
        if role == "bos":
            ids = replaced + ids
        ids = list(dict.fromkeys(ids))
        if role != "eos":
            ids = ids[:1]
        result[f"{role}_token_id"] = (ids[0] if len(ids) == 1 else ids) if ids else None
    return result


def _report_alignment(alignment: Alignment, donor_vocab: Vocab) -> None:
    c = alignment.counts()
    log(
        f"donor vocabulary {c['donor_vocab']}: {c['shared']} shared by bytes, "
        f"{c['special_matched']} special tokens matched, {c['new']} new"
    )
    matched = {k: v for k, v in alignment.special_map.items() if v is not None}
    if matched:
        log("special tokens: " + ", ".join(f"{k} <- {v}" for k, v in matched.items()))
    unmatched = [k for k, v in alignment.special_map.items() if v is None]
    if unmatched:
        log(f"special tokens initialised by the method (no base counterpart): {len(unmatched)}")


def _versions() -> dict[str, str]:
    import tokenizers
    import transformers

    return {
        "transplant": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
    }

