"""Keeping the device busy: results brought back a few batches behind, written in groups.

A GPU runs the work queued for it while Python goes on. Reading a result on the CPU
(``.item()``, ``.cpu()``, ``float(tensor)``) makes Python wait until the device has
finished everything queued before it, and the device then waits for Python to queue
the next batch. :class:`ResultsBehind` takes each batch's results as one small tensor
still on the device, starts its copy to page-locked host memory without waiting, and
reads it only once ``lag`` newer batches are queued behind it, so the device always has
work; on the CPU a result is ready at once. Ready results go to ``write`` in groups, at
most once per ``every`` seconds (0: every batch), each group whole batches.

:func:`device_layout` sets up what a GPU's convolutions run fastest with on batches of
one fixed shape: cuDNN's benchmark mode and channels-last tensors.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

import torch
from torch import nn

__all__ = ["ResultsBehind", "device_layout"]

Item = TypeVar("Item")


@dataclass
class _Pending(Generic[Item]):
    item: Item
    host: Any  # a tensor on the host, rows, or None
    copied: Optional[torch.cuda.Event]

    def ready(self) -> bool:
        return self.copied is None or self.copied.query()

    def wait(self) -> None:
        if self.copied is not None:
            self.copied.synchronize()


class ResultsBehind(Generic[Item]):
    """Batches' results, read back ``lag`` batches behind the device and written in groups.

    ``write(done)`` receives ``(item, host_tensor or None)`` pairs in the order they were
    added, the tensors on the CPU.
    """

    def __init__(
        self,
        write: Callable[[list[tuple[Item, Any]]], None],
        lag: int = 2,
        every: float = 0.0,
    ) -> None:
        self.write, self.lag, self.every = write, lag, every
        self.pending: deque[_Pending[Item]] = deque()
        self.done: list[tuple[Item, Optional[torch.Tensor]]] = []
        self.last_write = time.perf_counter()

    def add(self, item: Item, results: Any) -> None:
        """Queue one batch's ``results`` (a tensor on any device, copied back without waiting; anything
        else, e.g. rows already on the host, passed on as it is; None for a batch without any)."""
        host, copied = results, None
        if not isinstance(results, torch.Tensor):
            pass
        elif results.device.type == "cuda":
            host = torch.empty(results.shape, dtype=results.dtype, pin_memory=True)
            host.copy_(results, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        else:
            host = results.cpu()  # other devices: an ordinary copy
        self.pending.append(_Pending(item, host, copied))
        while len(self.pending) > self.lag:
            self.pending[0].wait()
            self._collect()
        self._collect()
        if self.done and time.perf_counter() - self.last_write >= self.every:
            self._write()

    def flush(self) -> None:
        """Wait for every queued batch and write all that is not written."""
        for pending in self.pending:
            pending.wait()
        self._collect()
        if self.done:
            self._write()

    def _collect(self) -> None:
        while self.pending and self.pending[0].ready():
            pending = self.pending.popleft()
            self.done.append((pending.item, pending.host))

    def _write(self) -> None:
        done, self.done = self.done, []
        self.write(done)
        self.last_write = time.perf_counter()


@contextlib.contextmanager
def device_layout(network: nn.Module, device: torch.device) -> Iterator[torch.memory_format]:
    """On CUDA: cuDNN benchmark mode for the body (restored after) and ``network`` in
    channels-last layout (moved in place, like ``.to(device)``); yields the layout the
    inputs should have. Elsewhere nothing changes (``torch.contiguous_format``): CPU
    runs stay bit for bit what they were. On a GPU both change which kernels run, so
    the last float bits, as any other cuDNN algorithm choice does.
    """
    if device.type != "cuda":
        yield torch.contiguous_format
        return
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    try:
        yield torch.channels_last
    finally:
        torch.backends.cudnn.benchmark = saved
