"""Reading and decoding images in DataLoader workers, bad files turned into reasons.

Each item is read by key from its source (:func:`backpropvis.images.sets.read_image`:
a file's bytes with their SHA-256 content hash, or a bundled sample or crop) and put
through the model's own ``preprocessing``. An image that cannot be read or decoded
becomes a failure carrying one line of reason instead of an exception, so one bad
file never stops a run.

With a :class:`~backpropvis.models.Preprocessing` the workers stop at the resized,
cropped uint8 pixels (:meth:`~backpropvis.models.Preprocessing.pixels`): a quarter of
the bytes to hand over, pin and copy to a GPU, where
:meth:`~backpropvis.models.Preprocessing.from_pixels` scales them bit for bit as the
CPU would. Batches come padded to the full batch size (a fixed shape), in pinned
memory when they are bound for CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..core.errors import BackpropvisError
from ..images.sets import ImageSource, read_image
from ..models import Preprocessing

__all__ = ["Decoded", "Batch", "ImageSet", "Collate", "batch_loader"]


@dataclass
class Decoded:
    """One image after its worker is done with it.

    Attributes:
        key: its path relative to the images folder, or a sample's or crop's key.
        content_hash: SHA-256 of the file's bytes (of a sample's pixels; "" when they could not be read).
        pixels: [3, S, S] uint8 pixels (a :class:`Preprocessing`) or the model's input
            (any other preprocessing), or None when it failed.
        reason: why it failed, or None.
    """

    key: str
    content_hash: str
    pixels: Optional[torch.Tensor]
    reason: Optional[str]


@dataclass
class Batch:
    """A batch of decoded images: the good ones stacked, the failures listed.

    Attributes:
        keys, hashes: of the good images, in order.
        pixels: [N, 3, S, S], the good images first, then zeros up to the batch size
            N (an empty tensor when no image of the batch is good).
        failures: ``(key, content_hash, reason)`` of the images that failed.
    """

    keys: list[str]
    hashes: list[str]
    pixels: torch.Tensor
    failures: list[tuple[str, str, str]]

    @property
    def images(self) -> int:
        """Images of the batch, good or failed."""
        return len(self.keys) + len(self.failures)

    def inputs(self, preprocess: Callable[[Image.Image], torch.Tensor], device: torch.device) -> torch.Tensor:
        """The batch as the model's input on ``device`` [N, 3, S, S], padding included: copied
        without waiting (from pinned memory on CUDA) and, when the workers handed over uint8
        pixels (a :class:`Preprocessing`), scaled there, the padding rows zero (as before scaling)."""
        inputs = self.pixels.to(device, non_blocking=True)
        if isinstance(preprocess, Preprocessing) and inputs.dtype == torch.uint8:
            inputs = preprocess.from_pixels(inputs)
            inputs[len(self.keys) :] = 0
        return inputs

    def pin_memory(self) -> Batch:
        """The batch with its pixels in page-locked memory (DataLoader's ``pin_memory``)."""
        return replace(self, pixels=self.pixels.pin_memory())


class ImageSet(Dataset):
    """Images by key from ``source`` (a folder, :class:`~backpropvis.images.sets.Samples`,
    or None for the bundled samples).

    ``preprocess`` maps a PIL image to Tensor[3, S, S] (a model's ``preprocessing``);
    a :class:`Preprocessing` is stopped at its uint8 :meth:`~Preprocessing.pixels`.
    """

    def __init__(
        self, source: ImageSource, keys: Sequence[str], preprocess: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.source = source
        self.keys = list(keys)
        self.preprocess = preprocess.pixels if isinstance(preprocess, Preprocessing) else preprocess

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> Decoded:
        read = read_image(self.source, self.keys[index])
        if read.picture is None:
            return Decoded(read.key, read.content_hash, None, read.reason)
        try:
            pixels = self.preprocess(read.picture)
        except BackpropvisError as error:
            return Decoded(read.key, read.content_hash, None, str(error))
        except (OSError, ValueError, MemoryError) as error:  # a decoder failing past load_image's checks
            return Decoded(read.key, read.content_hash, None, f"could not be decoded: {error}")
        return Decoded(read.key, read.content_hash, pixels, None)


class Collate:
    """DataLoader ``collate_fn``: stack the good images, padded with zeros to ``batch_size``
    (one shape for every batch), and list the failures."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def __call__(self, items: list[Decoded]) -> Batch:
        good = [item for item in items if item.pixels is not None]
        failures = [(item.key, item.content_hash, item.reason or "") for item in items if item.pixels is None]
        pixels = torch.empty(0)
        if good:
            first = good[0].pixels
            assert first is not None
            pixels = torch.zeros((max(self.batch_size, len(good)), *first.shape), dtype=first.dtype)
            torch.stack([item.pixels for item in good if item.pixels is not None], out=pixels[: len(good)])
        return Batch([item.key for item in good], [item.content_hash for item in good], pixels, failures)


ACCELERATOR_WORKERS = 2
"""Decoding processes when none are named and the model runs on an accelerator."""


def decoding_workers(workers: Optional[int], device: torch.device) -> int:
    """``workers`` as given; when None, 0 on the CPU and :data:`ACCELERATOR_WORKERS` elsewhere.

    On the CPU a decoding process shares the cores with the model's threads: on 2 cores one
    worker brought the class-distance command to 0.72 of the engine's speed, where decoding in
    the main process (3-4 ms per 500 x 375 JPEG, a few per cent of the model's time) gave
    0.93 (``benchmarks/bench_class_distance.py --rounds 4``, docs/class-distance-pipeline.md).
    On a GPU the workers decode while the device computes.

    Raises:
        BackpropvisError: a negative count.
    """
    if workers is None:
        return 0 if device.type == "cpu" else ACCELERATOR_WORKERS
    if workers < 0:
        raise BackpropvisError(f"`workers` must be 0 or more, not {workers}")
    return workers


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode; the main process owns the cores for the model


def batch_loader(
    dataset: ImageSet, batches: Sequence[Sequence[int]], workers: int, batch_size: int, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader yielding one :class:`Batch` per entry of ``batches`` (dataset indices),
    padded to ``batch_size``, decoded by ``workers`` processes (0: in this process), at
    most two batches per worker ahead; ``pin_memory`` for batches bound for CUDA."""
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"prefetch_factor": 2, "persistent_workers": False, "worker_init_fn": _one_thread}
    return DataLoader(
        dataset,
        batch_sampler=[list(batch) for batch in batches],
        num_workers=workers,
        collate_fn=Collate(batch_size),
        pin_memory=pin_memory,
        **extra,
    )
