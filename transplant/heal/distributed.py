"""Data-parallel healing: the same command under `torchrun --nproc_per_node N` or `accelerate launch`.

Both launchers set WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Every rank holds the
whole model and the same trainable tensors, draws its own windows, and averages gradients with the
others before each optimizer step, so the tensors stay identical on every rank; only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup(requested_device: str | None) -> tuple[Ranks, torch.device]:
    """This process's rank and device; joins the process group when launched with WORLD_SIZE > 1."""
    device = pick_device(requested_device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def average_gradients(params: list[torch.nn.Parameter], ranks: Ranks) -> None:
    if ranks.world == 1:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= ranks.world


def any_rank(mask: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Element-wise OR of a bool tensor over ranks."""
    if ranks.world == 1:
        return mask
    counts = mask.to(torch.int32)
    dist.all_reduce(counts)
    return counts > 0


def summed(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """Each value summed over ranks (float64, so token counts stay exact)."""
    if ranks.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def rank0_decides(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Rank 0's flag on every rank: a clock-based stop must happen at the same step everywhere."""
    if ranks.world == 1:
        return flag
    tensor = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(tensor, 0)
    return bool(tensor.item())
