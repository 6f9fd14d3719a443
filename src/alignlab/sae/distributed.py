"""torch.distributed for the trainer: one process by default, data-parallel under ``torchrun``.

Under ``torchrun`` every rank draws its own slice of each batch, gradients are averaged by
``DistributedDataParallel``, and rank 0 alone writes files. On CPU the backend is gloo, which
is how it is tested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def init_from_env() -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (if any, once)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist_info()


def all_reduce_max_(tensor: Tensor) -> Tensor:
    if dist_info().active:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    if dist_info().active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    if dist_info().active:
        dist.broadcast(tensor, src)
    return tensor


def barrier() -> None:
    if dist_info().active:
        dist.barrier()
