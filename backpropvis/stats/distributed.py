"""Running under torchrun: which rank this process is, and the process group.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them this is a world
of one. The process group (gloo on CPU, NCCL on CUDA) is created only when
``WORLD_SIZE > 1``, and serves one purpose: a barrier at the end, after which rank 0
can summarise every rank's database.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from ..core.errors import BackpropvisError

__all__ = ["World", "world_from_environment", "process_group", "barrier"]


@dataclass(frozen=True)
class World:
    """This process's place among torchrun's: ``rank`` of ``size``, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    def device(self, requested: torch.device) -> torch.device:
        """The device this rank uses: ``cuda:LOCAL_RANK`` when CUDA is asked under torchrun."""
        if requested.type == "cuda" and self.size > 1 and requested.index is None:
            return torch.device("cuda", self.local_rank)
        return requested


def world_from_environment() -> World:
    """The world torchrun describes in the environment (one process without it)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise BackpropvisError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size:
        raise BackpropvisError(f"RANK {rank} does not fit WORLD_SIZE {size}")
    return World(rank, size, local_rank)


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The default process group for the body (nothing when ``world.size == 1``)."""
    if world.size == 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every rank (no-op in a world of one)."""
    if world.size > 1 and dist.is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
