"""The few collective steps a distributed harvest needs, and a one-process stand-in.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised with gloo: a harvest
exchanges only small Python objects (a manifest, shard records, errors), never tensors, so gloo
works on CPU and GPU machines alike and is how this is tested.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import AlignlabError, StoreError

T = TypeVar("T")


@dataclass
class RankGroup:
    """This process's rank among ``world_size`` harvesting processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_process_group: bool = False  # we initialised it, so we destroy it

    @classmethod
    def from_env(cls) -> RankGroup:
        """Rank and world size from torchrun's environment; one process when unset."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if world <= 1:
            return cls(local_rank=local)
        import torch.distributed as dist

        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local, owns)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def on_rank0(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and hand its result (or its error) to every rank."""
        result, error = None, None
        if self.rank == 0:
            try:
                result = fn()
            except AlignlabError as exc:
                error = exc
            except OSError as exc:  # the other ranks must hear of it, not wait forever
                error = StoreError(f"{exc.strerror or exc} ({exc.filename or 'store'})")
        if self.distributed:
            result, error = self._broadcast([result, error])
        if error is not None:
            raise error
        return result

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_process_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_process_group = False

    def _broadcast(self, objs: list[Any]) -> list[Any]:
        import torch.distributed as dist

        dist.broadcast_object_list(objs, src=0)
        return objs


def raise_first(errors: list[BaseException | None], rank: int) -> None:
    """Raise this rank's own error, else the first other rank's, as one line."""
    own = errors[rank]
    if own is not None:
        raise own
    for other, error in enumerate(errors):
        if error is not None:
            raise StoreError(f"rank {other} failed: {error}")
