"""Training a hypernetwork against a frozen base model.

Each step: draw text windows, sample a tokenizer from the recent text (see `sampler`), predict
embeddings for its whole vocabulary plus a sample of base tokens from their held-out pieces (one
forward, so DistributedDataParallel sees one graph per step), run the frozen base on the windows
tokenized with the sampled vocabulary, and minimise the LM loss plus `aux_weight` times the
reconstruction loss of the base tokens. The first `recon_steps` steps train on reconstruction alone.

Data parallel: under `torchrun` or `accelerate launch` (WORLD_SIZE > 1) each rank draws its own
windows and tokenizer (seeded with its rank) and DistributedDataParallel averages the gradients.
Only rank 0 writes. Checkpoints go to `OUTPUT.partial/` and `resume` continues from there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from transplant.checkpoint import atomic_folder, read_embeddings
from transplant.errors import UserError
from transplant.hypernet.model import Hypernet, HypernetConfig, embeddings_fingerprint, save_hypernet
from transplant.hypernet.objective import IGNORE, FrozenBase, VocabRows, reconstruction_loss
from transplant.hypernet.pieces import PieceEncoder
from transplant.hypernet.sampler import SamplerConfig, TokenizerSampler
from transplant.sources import resolve
from transplant.train_text import check_no_overlap, read_texts, sample_windows, text_fingerprint
from transplant.vocab import load_vocab

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainOptions:
    base: str
    texts: list[str]
    output: str
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 8
    seq_len: int = 128
    vocab_size: int = 8192
    base_keep: tuple[float, float] = (0.5, 1.0)
    lr: float = 5e-4
    warmup_steps: int = 30
    recon_steps: int = 100
    aux_weight: float = 0.5
    aux_tokens: int = 1024
    max_pieces: int = 8
    width: int = 128
    layers: int = 2
    seed: int = 0
    checkpoint_minutes: float = 10.0
    resume: bool = False
    overwrite: bool = False
    allow_eval_overlap: bool = False
    device: str | None = None
    progress: bool = True


@dataclass
class TrainResult:
    output: Path  # the folder rank 0 wrote
    model: Hypernet  # this process's network (identical on every rank)


@dataclass
class Context:
    rank: int
    world: int
    device: torch.device


def _setup_distributed(requested: str | None) -> Context:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if requested:
        device = torch.device(requested)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Context(rank, world, device)


def _lr_factor(step: int, options: TrainOptions, elapsed: float) -> float:
    """Linear warm-up, then cosine to 10% over whichever budget (steps or minutes) runs out first."""
    if step < options.warmup_steps:
        return (step + 1) / options.warmup_steps
    done = []
    if options.steps:
        done.append(step / options.steps)
    if options.minutes:
        done.append(elapsed / (60 * options.minutes))
    fraction = min(1.0, max(done))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction))


def _batch_ids(token_ids: list[list[int]], seq_len: int) -> torch.Tensor:
    out = torch.full((len(token_ids), seq_len), IGNORE, dtype=torch.long)
    for row, ids in enumerate(token_ids):
        ids = ids[:seq_len]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def _validate(options: TrainOptions) -> None:
    if not options.steps and not options.minutes:
        raise UserError("give a budget: --steps N or --minutes M")
    if options.steps is not None and options.steps <= 0 or options.minutes is not None and options.minutes <= 0:
        raise UserError("--steps and --minutes must be positive")
    if Path(options.output).exists() and not options.overwrite:
        raise UserError(f"output folder {options.output} exists; pass --overwrite to replace it")


def train(options: TrainOptions) -> TrainResult:
    _validate(options)
    ctx = _setup_distributed(options.device)
    texts = read_texts(options.texts)
    if not options.allow_eval_overlap:
        from transplant.eval.domains import load_domains

        check_no_overlap(texts, load_domains())
    torch.manual_seed(options.seed)
    source = resolve(options.base, need_weights=True)
    vocab = load_vocab(source.path)
    table = read_embeddings(source.path).matrices
    from transformers import AutoModelForCausalLM

    frozen = FrozenBase(AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32).to(ctx.device))
    config = HypernetConfig(
        base_vocab_size=table.shape[0], hidden=table.shape[2], n_matrices=table.shape[1],
        max_pieces=options.max_pieces, width=options.width, layers=options.layers,
        base={"spec": options.base, "name": source.name, "fingerprint": embeddings_fingerprint(table)},
    )
    model = Hypernet(config)
    model.init_from_base(table)
    model.to(ctx.device)
    table = table.to(ctx.device)
    scale = table.std(0)
    encoder = PieceEncoder(vocab, options.max_pieces)
    start_id = vocab.role_id("bos") if vocab.role_id("bos") is not None else vocab.role_id("eos")
    start_row = table[start_id] if start_id is not None else table.mean(0)
    ordinary = [i for i, t in enumerate(vocab.tokens) if t is not None and len(t) > 1 and i < table.shape[0]]

    parallel = model
    if ctx.world > 1:
        parallel = torch.nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.01)
    sampler = TokenizerSampler(SamplerConfig(vocab_size=options.vocab_size, base_keep=options.base_keep),
                               seed=options.seed * 1000 + ctx.rank,
                               base_pieces=[t for t in vocab.tokens[: table.shape[0]] if t is not None])

    partial = Path(f"{options.output}.partial")
    state = {"step": 0, "elapsed": 0.0, "log": [], "tokens": 0}
    if options.resume and (partial / CHECKPOINT).is_file():
        saved = torch.load(partial / CHECKPOINT, map_location=ctx.device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        sampler.load_state(saved["sampler"][ctx.rank] if ctx.rank < len(saved["sampler"]) else {})
        state = saved["state"]
    elif options.resume and ctx.rank == 0:
        print(f"no checkpoint in {partial}; starting from scratch", file=sys.stderr)

    window_bytes = options.seq_len * 8
    bar = tqdm(total=options.steps or None, initial=state["step"], disable=not options.progress or ctx.rank > 0,
               desc="hypernet", unit="step", dynamic_ncols=True)
    clock = time.perf_counter() - state["elapsed"]
    last_checkpoint = time.perf_counter()
    while True:
        step, elapsed = state["step"], time.perf_counter() - clock
        if options.steps and step >= options.steps or options.minutes and elapsed >= 60 * options.minutes:
            break
        rng = np.random.default_rng([options.seed, step, ctx.rank])
        aux_ids = rng.choice(ordinary, size=min(options.aux_tokens, len(ordinary)), replace=False)
        aux_pieces = encoder.batch([vocab.tokens[i] for i in aux_ids], held_out=True)
        lm_phase = step >= options.recon_steps
        if lm_phase:
            windows = sample_windows(texts, options.batch_size, window_bytes, rng)
            sampler.observe(windows)
            sampled = sampler.sample(step)
            # As at transplant time (keep_shared), a piece the base has byte for byte keeps its base
            # row; the network learns only the tokens it will be asked for. Ids are renumbered with
            # the base rows first (objective.VocabRows).
            known = torch.tensor([vocab.byte_index.get(p, -1) for p in sampled.pieces])
            unknown = torch.nonzero(known < 0).squeeze(1)
            order = torch.cat([torch.nonzero(known >= 0).squeeze(1), unknown])
            renumber = torch.empty_like(order)
            renumber[order] = torch.arange(len(order))
            ids = _batch_ids([renumber[t].tolist() for t in sampled.encode(windows)], options.seq_len).to(ctx.device)
            fixed = table[known[known >= 0].to(ctx.device)]
            vocab_pieces = encoder.batch([sampled.pieces[i] for i in unknown.tolist()])
        else:
            vocab_pieces = aux_pieces[:0]
        for group in optimizer.param_groups:
            group["lr"] = options.lr * _lr_factor(step, options, elapsed)
        predicted = parallel(table, torch.cat([vocab_pieces, aux_pieces]).to(ctx.device))
        n_vocab = len(vocab_pieces)
        aux = reconstruction_loss(predicted[n_vocab:], table[torch.as_tensor(aux_ids, device=ctx.device)], scale)
        loss = aux
        lm = float("nan")
        if lm_phase:
            lm_loss = frozen.lm_loss(VocabRows(fixed[:, 0], predicted[:n_vocab, 0]),
                                     VocabRows(fixed[:, -1], predicted[:n_vocab, -1]), ids, start_row[0])
            loss = lm_loss + options.aux_weight * aux
            lm = lm_loss.item()
            state["tokens"] += int((ids != IGNORE).sum()) * ctx.world
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["step"] = step + 1
        state["elapsed"] = time.perf_counter() - clock
        if step % 10 == 0:
            state["log"].append({"step": step, "minutes": round(state["elapsed"] / 60, 3), "lm": round(lm, 4), "aux": round(aux.item(), 4)})
        bar.update(1)
        bar.set_postfix(lm=f"{lm:.3f}", aux=f"{aux.item():.3f}", min=f"{state['elapsed'] / 60:.1f}")
        if time.perf_counter() - last_checkpoint > 60 * options.checkpoint_minutes:
            _checkpoint(partial, model, optimizer, sampler, state, ctx)
            last_checkpoint = time.perf_counter()
    bar.close()
    model.config.training = {
        "options": {k: v for k, v in asdict(options).items() if k not in ("progress", "resume", "overwrite", "device")},
        "steps": state["step"], "minutes": round(state["elapsed"] / 60, 2), "tokens": state["tokens"],
        "world_size": ctx.world, "device": ctx.device.type, "text_sha256": text_fingerprint(texts),
        "sampler": asdict(sampler.config),
        "final": state["log"][-1] if state["log"] else None,
    }
    output = Path(options.output)
    if ctx.rank == 0:
        with atomic_folder(output, options.overwrite) as tmp:
            save_hypernet(model, tmp)
            (tmp / "training_log.json").write_text(json.dumps(state["log"]) + "\n")
        shutil.rmtree(partial, ignore_errors=True)
    if ctx.world > 1:
        dist.barrier()
    return TrainResult(output, model)


def _checkpoint(partial: Path, model, optimizer, sampler, state: dict, ctx: Context) -> None:
    """Every rank's sampler memory is gathered so a resumed run samples the same tokenizers."""
    samplers = [sampler.state()]
    if ctx.world > 1:
        samplers = [None] * ctx.world
        dist.all_gather_object(samplers, sampler.state())
    if ctx.rank != 0:
        return
    partial.mkdir(parents=True, exist_ok=True)
    tmp = partial / f".{CHECKPOINT}.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "sampler": samplers, "state": state}, tmp)
    os.replace(tmp, partial / CHECKPOINT)
