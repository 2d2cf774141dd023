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
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .init import PAPER_STD, generator_for, truncated_normal_rows_

__all__ = ["SeededDense", "DEFAULT_MATERIALIZE_BYTES"]

DEFAULT_MATERIALIZE_BYTES = 1 << 30
"""Weights up to this size (float32 bytes) are drawn once and kept; larger ones on the fly."""

_BLOCK_BYTES = 64 << 20


@functools.lru_cache(maxsize=1)
def _drawing_pool() -> ThreadPoolExecutor:
    """One pool of drawing threads for the whole process, rather than new threads (and
    new malloc arenas) for each block of columns; at most 8: only the normals' drawing
    runs outside the GIL, so more threads mostly wait for it."""
    return ThreadPoolExecutor(max_workers=max(1, min(8, torch.get_num_threads())), thread_name_prefix="seeded-dense")


class SeededDense(nn.Module):
    """``y = x V`` with V [in_features, out_features] ~ truncated N(0, std^2), no bias.

    Args:
        in_features: d, the input width.
        out_features: K, the output width.
        seed: the model seed; with ``name`` and the column index it fixes each column.
        name: the layer's name (two layers of one model need different names).
        std: standard deviation before the truncation at +-2 std.
        materialize_bytes: keep V in memory when it takes at most this many bytes.

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
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.seed, self.name, self.std = seed, name, std
        self.register_buffer("weight", None, persistent=False)  # [K, d], row k = V[:, k]
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
        generators = [generator_for(self.seed, self.name, index) for index in indices]
        block = torch.empty((len(generators), self.in_features))
        return truncated_normal_rows_(block, self.std, generators, _drawing_pool().map)

    @property
    def columns_per_block(self) -> int:
        """How many columns make one block of about 64 MB."""
        return max(1, _BLOCK_BYTES // (4 * self.in_features))

    def column_blocks(self, indices: Sequence[int]):
        """Yield (index block, V columns as rows [n, d]) in blocks of about 64 MB."""
        indices = list(indices)
        per_block = self.columns_per_block
        for start in range(0, len(indices), per_block):
            chunk = indices[start : start + per_block]
            yield chunk, self.columns(chunk)

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
            layer.column_blocks(range(layer.out_features)),
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
        for chunk, rows in layer.column_blocks(needed):
            index = torch.as_tensor(chunk, device=grad_output.device)
            grad_input.addmm_(grad_output.index_select(1, index), rows.to(grad_output))
        return grad_input, None
