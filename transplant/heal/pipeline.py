"""A heal, end to end: check everything a user can get wrong, load, train, write the healed folder."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from transplant.errors import UserError
from transplant.heal.distributed import Ranks, setup
from transplant.heal.inputs import HealInput, new_token_ids, read_input
from transplant.heal.loop import LoopConfig, LoopState, train
from transplant.heal.output import write_healed
from transplant.heal.tasks import BYTES_PER_TOKEN, DistillTask, LMTask, Reader
from transplant.heal.trainable import TRAIN_SETS, Trainable
from transplant.train_text import check_no_overlap, read_texts, text_fingerprint

OBJECTIVES = ("lm", "distill")
DEFAULT_MINUTES = 10.0


@dataclass
class HealOptions:
    folder: str
    texts: list[str]
    output: str
    steps: int | None = None
    minutes: float | None = None  # neither steps nor minutes: DEFAULT_MINUTES
    objective: str = "lm"
    train: str = "embeddings"
    # the size of a row's first step; later ones shrink as 1 / sqrt(updates) (transplant.heal.optim).
    # SmolLM2-135M <- Qwen2.5 (omp k=8), 10 lm steps of 4 x 256 tokens: English bpb ratio 1.283 ->
    # 1.267 at lr 1e-3, 1.187 at 1e-2, 1.228 at 3e-2
    lr: float = 1e-2
    warmup: int = 10
    batch_size: int = 4
    seq_len: int = 256
    seed: int = 0
    weight_decay: float = 0.0  # LoRA matrices only
    lora_rank: int = 8
    teacher: str | None = None  # the base model, when the path in transplant.json is gone
    device: str | None = None
    resume: bool = False
    overwrite: bool = False
    allow_eval_overlap: bool = False
    checkpoint_steps: int | None = None
    checkpoint_minutes: float | None = 5.0
    progress: bool = True
    eval_domains: list[str] | None = field(default=None)  # the texts training must not overlap (None: all)


def partial_dir(output: Path) -> Path:
    return output.parent / f"{output.name}.partial"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_options(options: HealOptions) -> None:
    if options.objective not in OBJECTIVES:
        raise UserError(f"unknown --objective {options.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    if options.train not in TRAIN_SETS:
        raise UserError(f"unknown --train {options.train!r}; choose one of: {', '.join(TRAIN_SETS)}")
    if options.steps is not None and options.minutes is not None:
        raise UserError("give --steps or --minutes, not both")
    if options.steps is not None and options.steps < 1:
        raise UserError("--steps must be 1 or more")
    if options.minutes is not None and options.minutes <= 0:
        raise UserError("--minutes must be more than 0")
    for name in ("batch_size", "seq_len", "lora_rank"):
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be 1 or more")
    if options.lr <= 0:
        raise UserError("--lr must be more than 0")
    if options.seed < 0:
        raise UserError("--seed must be 0 or more")


@dataclass
class Session:
    options: HealOptions
    source: HealInput
    texts: dict[str, str]
    trainable: Trainable
    task: LMTask | DistillTask
    config: LoopConfig
    ranks: Ranks
    device: torch.device

    def train(self, on_step=None) -> LoopState:
        return train(self.trainable, self.task, self.texts, self.config, self.ranks, self.device, on_step)

    def record(self, state: LoopState) -> dict:
        o = self.options
        healing = {
            "objective": o.objective, "train": o.train, "steps": state.step, "minutes": round(state.seconds / 60, 2),
            "tokens": state.tokens, "bytes": state.bytes, "lr": o.lr, "warmup": o.warmup, "batch_size": o.batch_size,
            "world_size": self.ranks.world, "seq_len": o.seq_len, "seed": o.seed,
            "text": {"files": sorted(Path(name).name for name in self.texts), "sha256": text_fingerprint(self.texts)},
            "loss": loss_summary(state.losses), "device": self.device.type,
        }
        if o.objective == "distill":
            healing["teacher"] = str(self.source.base)
        if o.train == "lora":
            healing.update(lora_rank=o.lora_rank, weight_decay=o.weight_decay)
        if "healing" in self.source.record:
            healing["previous"] = self.source.record["healing"]
        return {**self.source.record, "healing": healing}

    def write(self, state: LoopState) -> Path | None:
        """The healed folder (rank 0 only; other ranks return None); the checkpoints go afterwards."""
        if not self.ranks.main:
            return None
        output = Path(self.options.output)
        write_healed(self.source.folder, output, self.trainable.final_tensors(), self.record(state),
                     self.options.overwrite, self.options.progress)
        shutil.rmtree(partial_dir(output), ignore_errors=True)
        return output


def loss_summary(losses: list[float], points: int = 10) -> dict:
    """First and last step, and the mean of up to `points` equal consecutive stretches of steps."""
    if not losses:
        return {}
    size = -(-len(losses) // points)
    curve = [sum(part) / len(part) for part in (losses[i : i + size] for i in range(0, len(losses), size))]
    return {"first": round(losses[0], 4), "last": round(losses[-1], 4), "curve": [round(v, 4) for v in curve]}


def prepare(options: HealOptions) -> Session:
    """Every check a user can fail comes before any model loads."""
    check_options(options)
    if options.steps is None and options.minutes is None:
        options = replace(options, minutes=DEFAULT_MINUTES)
    source = read_input(options.folder, options.teacher)
    output = Path(options.output)
    if output.resolve() == source.folder.resolve():
        raise UserError("--output must be a new folder, not the transplant folder itself")
    if output.exists() and not options.overwrite:
        raise UserError(f"output folder {output} exists; pass --overwrite to replace it")
    partial = partial_dir(output)
    if options.resume and not (partial / "state.pt").is_file():
        raise UserError(f"nothing to resume: {partial} holds no checkpoint; run without --resume")
    if partial.exists() and not options.resume and not options.overwrite:
        raise UserError(f"{partial} holds an interrupted heal: pass --resume to continue it, or --overwrite to start over")
    texts = read_texts(options.texts)
    if not options.allow_eval_overlap:
        from transplant.eval.domains import load_domains

        check_no_overlap(texts, load_domains(options.eval_domains))

    ranks, device = setup(options.device)
    if partial.exists() and not options.resume and ranks.main:
        shutil.rmtree(partial)
    new_ids = new_token_ids(source)
    model = _load_model(source.folder, device, options.progress)
    trainable = Trainable(model, new_ids, options.train, lora_rank=options.lora_rank, seed=options.seed)
    student = Reader.from_folder(source.folder)
    if options.objective == "lm":
        task = LMTask(student, options.batch_size, options.seq_len)
    else:
        task = DistillTask(student, Reader.from_folder(source.base), _load_model(source.base, device, options.progress),
                           options.batch_size, options.seq_len)
    fingerprint = {"folder": str(source.folder.resolve()), "objective": options.objective, "train": options.train,
                   "lr": options.lr, "warmup": options.warmup, "batch_size": options.batch_size,
                   "seq_len": options.seq_len, "seed": options.seed, "weight_decay": options.weight_decay,
                   "lora_rank": options.lora_rank, "world_size": ranks.world, "text_sha256": text_fingerprint(texts)}
    config = LoopConfig(
        steps=options.steps, minutes=options.minutes, lr=options.lr, warmup=options.warmup,
        weight_decay=options.weight_decay, seed=options.seed, window_bytes=options.seq_len * BYTES_PER_TOKEN,
        checkpoint_dir=partial, checkpoint_steps=options.checkpoint_steps, checkpoint_minutes=options.checkpoint_minutes,
        resume=options.resume, progress=options.progress, fingerprint=fingerprint,
    )
    if ranks.main:
        length = f"{options.steps} steps" if options.steps is not None else f"{options.minutes:g} minutes"
        log(f"healing {len(new_ids)} new token rows ({'tied' if trainable.tied else 'input and output'}) "
            f"of {source.folder}, train set {options.train}, objective {options.objective}, for {length} on "
            f"{device.type}" + (f" x {ranks.world} processes" if ranks.world > 1 else ""))
    return Session(options, source, texts, trainable, task, config, ranks, device)


def _load_model(folder: Path, device: torch.device, progress: bool) -> torch.nn.Module:
    """float32 whatever the stored dtype: Adam updates of small rows vanish in bf16; the output is cast back."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    if not progress:
        logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True,
                                                 trust_remote_code=False)
    return model.to(device).eval()


def heal(options: HealOptions) -> Path | None:
    """Train and write; returns the healed folder (None on ranks other than 0)."""
    import torch.distributed as dist

    try:
        session = prepare(options)
        return session.write(session.train())
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
