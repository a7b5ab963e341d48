"""The training loop: Adam (transplant.heal.optim) after a linear warm-up, a stop at N steps or M minutes, checkpoints that
`--resume` continues from exactly, data-parallel under torchrun (transplant.heal.distributed).

The windows of step s on rank r come from a generator seeded by (seed, r, s), so a resumed run draws
what the uninterrupted run would have drawn without any saved random state, and ranks differ.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from transplant.errors import UserError
from transplant.heal.distributed import Ranks, any_rank, average_gradients, rank0_decides, summed
from transplant.heal.optim import HealOptimizer
from transplant.heal.trainable import Trainable
from transplant.train_text import sample_windows

STATE_FILE = "state.pt"


@dataclass
class LoopConfig:
    steps: int | None = None
    minutes: float | None = None
    lr: float = 1e-2
    warmup: int = 10
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    window_bytes: int = 2048
    checkpoint_dir: Path | None = None
    checkpoint_steps: int | None = None
    checkpoint_minutes: float | None = None
    resume: bool = False
    progress: bool = True
    fingerprint: dict = field(default_factory=dict)  # settings a checkpoint must share to be resumed


@dataclass
class LoopState:
    step: int = 0
    seconds: float = 0.0  # training wall time since the first step; on_step callbacks excluded
    tokens: int = 0
    bytes: int = 0
    losses: list[float] = field(default_factory=list)  # mean over ranks, one per step


def learning_rate(config: LoopConfig, step: int) -> float:
    """Linear warm-up, then constant: a run stopped by the clock does not know its length, and with a
    constant rate a snapshot along a long run is the run that would have stopped there. (Rows still
    slow down: transplant.heal.optim divides each row's step by the root of its update count.)"""
    return config.lr * min(1.0, (step + 1) / max(1, config.warmup))


def finished(config: LoopConfig, state: LoopState) -> bool:
    if config.steps is not None:
        return state.step >= config.steps
    return state.seconds >= config.minutes * 60


def save_checkpoint(folder: Path, trainable: Trainable, optimizer: HealOptimizer, state: LoopState, fingerprint: dict) -> None:
    """Trainable tensors, optimizer, counters; the file is replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"trainable": trainable.state(), "optimizer": optimizer.state_dict(), "fingerprint": fingerprint,
               "step": state.step, "seconds": state.seconds, "tokens": state.tokens, "bytes": state.bytes,
               "losses": state.losses}
    tmp = folder / f".{STATE_FILE}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, folder / STATE_FILE)


def load_checkpoint(folder: Path, trainable: Trainable, optimizer: HealOptimizer, fingerprint: dict) -> LoopState:
    path = folder / STATE_FILE
    if not path.is_file():
        raise UserError(f"nothing to resume: {path} not found; run without --resume")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    differ = sorted(k for k in set(fingerprint) | set(payload["fingerprint"])
                    if fingerprint.get(k) != payload["fingerprint"].get(k))
    if differ:
        raise UserError(f"{folder} was made with other settings ({', '.join(differ)} differ); "
                        "resume with the same ones, or start over with --overwrite")
    trainable.load_state(payload["trainable"])
    optimizer.load_state_dict(payload["optimizer"])
    return LoopState(payload["step"], payload["seconds"], payload["tokens"], payload["bytes"], list(payload["losses"]))


def train(trainable: Trainable, task, texts: dict[str, str], config: LoopConfig, ranks: Ranks, device: torch.device,
          on_step: Callable[[LoopState], None] | None = None) -> LoopState:
    """Run until `config` says stop; returns the counters. `on_step(state)` runs after every step,
    outside the clock (the benchmark evaluates there)."""
    if (config.steps is None) == (config.minutes is None):
        raise UserError("give the training length as steps or as minutes, one of the two")
    params = list(trainable.named_parameters().values())
    optimizer = HealOptimizer(trainable.row_params(), trainable.dense_groups(config.weight_decay))
    state = LoopState()
    if config.resume:
        state = load_checkpoint(config.checkpoint_dir, trainable, optimizer, config.fingerprint)
    last_saved = (state.step, state.seconds)
    total, unit = (config.steps, "step") if config.steps is not None else (math.ceil(config.minutes * 60), "s")
    with tqdm(total=total, unit=unit, desc="healing", file=sys.stderr, disable=not (config.progress and ranks.main),
              dynamic_ncols=True) as bar:
        bar.update(state.step if unit == "step" else min(total, int(state.seconds)))
        stop = finished(config, state)
        while not stop:
            clock = time.perf_counter()
            rng = np.random.default_rng([config.seed, ranks.rank, state.step])
            batch = task.batch(lambda: sample_windows(texts, 1, config.window_bytes, rng)[0])
            loss = task.loss(trainable, batch, device)
            for param in params:
                param.grad = None
            loss.backward()
            average_gradients(params, ranks)
            # ranks move the rows any of them saw, so the rows stay identical everywhere
            active = any_rank(trainable.active_rows(batch.tokens()), ranks)
            trainable.keep_row_gradients(active)
            if config.clip:
                torch.nn.utils.clip_grad_norm_(params, config.clip)
            optimizer.step(learning_rate(config, state.step), active)
            loss_sum, tokens, n_bytes = summed([loss.item(), batch.n_tokens, batch.n_bytes], ranks, device)
            state.step += 1
            state.tokens += int(tokens)
            state.bytes += int(n_bytes)
            state.losses.append(loss_sum / ranks.world)
            state.seconds += time.perf_counter() - clock
            if ranks.main and _checkpoint_due(config, state, last_saved):
                clock = time.perf_counter()
                save_checkpoint(config.checkpoint_dir, trainable, optimizer, state, config.fingerprint)
                state.seconds += time.perf_counter() - clock
                last_saved = (state.step, state.seconds)
            # rank 0's clock decides, so a clock-based stop falls on the same step on every rank
            stop = rank0_decides(finished(config, state), ranks, device)
            bar.update(1 if unit == "step" else min(total, int(state.seconds)) - bar.n)
            bar.set_postfix(loss=f"{state.losses[-1]:.3f}", tok_s=f"{state.tokens / max(state.seconds, 1e-9):.0f}")
            if on_step is not None:
                on_step(state)
    return state


def _checkpoint_due(config: LoopConfig, state: LoopState, last_saved: tuple[int, float]) -> bool:
    if config.checkpoint_dir is None:
        return False
    by_steps = config.checkpoint_steps and state.step - last_saved[0] >= config.checkpoint_steps
    by_time = config.checkpoint_minutes and state.seconds - last_saved[1] >= config.checkpoint_minutes * 60
    return bool(by_steps or by_time)
