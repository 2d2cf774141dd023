"""A random dense layer whose weights are drawn from seeds instead of stored.

The paper's three-layer CNN reads 112 x 112 x 256 = 3.2 M features into 1000 logits:
3.2 G weights, 12.8 GB in float32. :class:`SeededDense` never holds that matrix.
Column k of V (the weights into output k) is drawn from its own generator, seeded
by (model seed, layer name, k); the forward pass draws the columns block by block,
and the backward pass draws only the columns whose output gradient is non-zero (for
a one-hot target gradient: one column). Small layers are drawn once and kept, with
the very same values, so the result never depends on the storage choice.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .init import PAPER_STD, generator_for, truncated_normal_rows_

__all__ = ["SeededDense", "DEFAULT_MATERIALIZE_BYTES", "KEEP_DRAWN_BYTES", "drawing_workers"]

DEFAULT_MATERIALIZE_BYTES = 1 << 30
"""Weights up to this size (float32 bytes) are drawn once and kept; larger ones on the fly."""

_BLOCK_BYTES = 64 << 20


KEEP_DRAWN_BYTES = 16 << 30
"""On a GPU, weights drawn on the fly up to this size (and half the device's free memory) are
drawn once, at the first pass, and kept on the device for the layer's life."""


def drawing_workers() -> int:
    """How many blocks are drawn at once: torch's thread count, at most 8 (each block's
    normals are drawn outside the GIL, its seeding and redraws hold it)."""
    return max(1, min(8, torch.get_num_threads()))


@functools.lru_cache(maxsize=4)
def _drawing_pool(workers: int) -> ThreadPoolExecutor:
    """One pool of drawing threads per size for the whole process, rather than new threads
    (and new malloc arenas) for each block of columns."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seeded-dense")


class SeededDense(nn.Module):
    """``y = x V`` with V [in_features, out_features] ~ truncated N(0, std^2), no bias.

    Args:
        in_features: d, the input width.
        out_features: K, the output width.
        seed: the model seed; with ``name`` and the column index it fixes each column.
        name: the layer's name (two layers of one model need different names).
        std: standard deviation before the truncation at +-2 std.
        materialize_bytes: keep V in memory when it takes at most this many bytes.
        keep_drawn_bytes: on a GPU, a V drawn on the fly is drawn once and kept there when it
            takes at most this many bytes (and half the free device memory).

    Attributes: ``keep_drawn_on``, the device types on which a V drawn on the fly is kept once
    drawn (default ``("cuda",)``: on the CPU the memory is why V is drawn on the fly).

    Shapes: input [B, d] -> output [B, K].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        seed: int,
        name: str = "dense",
        std: float = PAPER_STD,
        materialize_bytes: int = DEFAULT_MATERIALIZE_BYTES,
        keep_drawn_bytes: int = KEEP_DRAWN_BYTES,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.seed, self.name, self.std = seed, name, std
        self.register_buffer("weight", None, persistent=False)  # [K, d], row k = V[:, k]
        self.keep_drawn_bytes, self.keep_drawn_on = keep_drawn_bytes, ("cuda",)
        self._kept: torch.Tensor | None = None  # [K, d] on a GPU, see column_blocks
        if in_features * out_features * 4 <= materialize_bytes:
            self.weight = self.columns(range(out_features))

    @property
    def on_the_fly(self) -> bool:
        """Whether the weights are drawn at every pass rather than kept."""
        return self.weight is None

    @property
    def supports_batched_backward(self) -> bool:
        """The engine's protocol: False when the backward pass cannot run under
        ``is_grads_batched`` (drawing only the needed columns depends on the data)."""
        return not self.on_the_fly

    def columns(self, indices: Sequence[int]) -> torch.Tensor:
        """V[:, k] for each k in ``indices``, as rows: Tensor[len(indices), d] (float32, CPU)."""
        if self.weight is not None:
            return self.weight[torch.as_tensor(list(indices), dtype=torch.long, device=self.weight.device)].cpu()
        out = torch.empty((len(indices), self.in_features))
        list(_drawn_ahead(self, self.blocks_of(list(indices)), out.device, out))
        return out

    def drawn_block(
        self, indices: Sequence[int], out: torch.Tensor | None = None, pin_memory: bool = False
    ) -> torch.Tensor:
        """V[:, k] for each k in ``indices``, drawn now in this thread, one column after another,
        into ``out`` (or a new tensor, page-locked when ``pin_memory``): Tensor[len(indices), d]
        (float32, CPU). This is the reference draw; every other path gives its values."""
        generators = [generator_for(self.seed, self.name, index) for index in indices]
        if out is None:
            out = torch.empty((len(generators), self.in_features), pin_memory=pin_memory)
        return truncated_normal_rows_(out, self.std, generators)

    @property
    def columns_per_block(self) -> int:
        """How many columns make one block of about 64 MB."""
        return max(1, _BLOCK_BYTES // (4 * self.in_features))

    def blocks_of(self, indices: list[int]) -> list[list[int]]:
        """``indices`` cut into consecutive blocks of :attr:`columns_per_block` (the last one shorter)."""
        per_block = self.columns_per_block
        return [indices[start : start + per_block] for start in range(0, len(indices), per_block)]

    def column_blocks(self, indices: Sequence[int], device: torch.device | str = "cpu"):
        """Yield (index block, V columns as rows [n, d] on ``device``) in blocks of about 64 MB.

        The blocks are drawn ahead, several at once (:func:`drawing_workers`), while the
        caller uses the current one; on a GPU they are copied from page-locked memory without
        waiting, and the whole matrix is drawn once and kept there when it fits
        (:data:`KEEP_DRAWN_BYTES`). Values: exactly the serial CPU draw's.
        """
        device = torch.device(device)
        chunks = self.blocks_of(list(indices))
        if self.weight is not None:
            yield from ((chunk, self.columns(chunk).to(device)) for chunk in chunks)
        elif self._keeps_drawn(device):
            kept = self._kept_on(device)
            for chunk in chunks:
                yield chunk, kept.index_select(0, torch.as_tensor(chunk, device=device))
        else:
            yield from _drawn_ahead(self, chunks, device)

    def _keeps_drawn(self, device: torch.device) -> bool:
        """Whether V is drawn once and kept on ``device`` (a GPU with room for it)."""
        if device.type not in self.keep_drawn_on:
            return False
        size = self.in_features * self.out_features * 4
        room = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else size
        return size <= min(self.keep_drawn_bytes, room)

    def _kept_on(self, device: torch.device) -> torch.Tensor:
        """V as rows [K, d] on ``device``, drawn at the first call (block by block, ahead)."""
        if self._kept is None or self._kept.device != device:
            self._kept = None  # one copy at a time
            kept = torch.empty((self.out_features, self.in_features), device=device)
            for chunk, rows in _drawn_ahead(self, self.blocks_of(list(range(self.out_features))), device):
                kept[chunk[0] : chunk[-1] + 1] = rows
            self._kept = kept
        return self._kept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return x @ self.weight.to(x.dtype).T
        return _OnTheFlyDense.apply(x, self)

    def extra_repr(self) -> str:
        storage = "drawn on the fly" if self.weight is None else "kept"
        return f"in_features={self.in_features}, out_features={self.out_features}, seed={self.seed}, {storage}"


class _OnTheFlyDense(torch.autograd.Function):
    """``x V`` drawing V block by block; the backward draws only the columns it needs."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: SeededDense) -> torch.Tensor:
        ctx.layer = layer
        out = x.new_empty((x.shape[0], layer.out_features))
        blocks = -(-layer.out_features // layer.columns_per_block)
        progress = tqdm(  # the paper-size readout takes tens of seconds to draw
            layer.column_blocks(range(layer.out_features), x.device),
            total=blocks,
            desc=f"drawing {layer.name} weights",
            unit="block",
            leave=False,
            disable=blocks < 16,
        )
        for chunk, rows in progress:
            out[:, chunk[0] : chunk[-1] + 1] = x @ rows.to(x).T
        return out

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        layer: SeededDense = ctx.layer
        needed = grad_output.ne(0).any(dim=0).nonzero().flatten().tolist()
        grad_input = grad_output.new_zeros((grad_output.shape[0], layer.in_features))
        for chunk, rows in layer.column_blocks(needed, grad_output.device):
            index = torch.as_tensor(chunk, device=grad_output.device)
            grad_input.addmm_(grad_output.index_select(1, index), rows.to(grad_output))
        return grad_input, None


def _drawn_ahead(
    layer: SeededDense, chunks: list[list[int]], device: torch.device, into: torch.Tensor | None = None
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield (chunk, V columns as rows [n, d] on ``device``) for each chunk in order, the next
    :func:`drawing_workers` chunks drawn meanwhile in the drawing threads (into consecutive
    rows of ``into``, a CPU tensor, when given). On a GPU the blocks are page-locked and
    copied without waiting. Nothing outlives the generator: closed early, it cancels the
    draws not started and waits for those running."""
    workers = drawing_workers()
    pool, pin = _drawing_pool(workers), device.type == "cuda" and into is None
    pending: deque[tuple[list[int], Future]] = deque()
    starts = itertools.accumulate((len(chunk) for chunk in chunks), initial=0)
    upcoming = iter(zip(chunks, starts))

    def submit() -> None:
        chunk, start = next(upcoming, (None, 0))
        if chunk is not None:
            out = None if into is None else into[start : start + len(chunk)]
            pending.append((chunk, pool.submit(layer.drawn_block, chunk, out, pin)))

    try:
        for _ in range(workers):
            submit()
        while pending:
            chunk, future = pending.popleft()
            rows = future.result()
            submit()
            yield chunk, rows.to(device, non_blocking=pin)
    finally:
        for _, future in pending:
            future.cancel()
        wait([future for _, future in pending])
