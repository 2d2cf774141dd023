"""Reading and decoding images in DataLoader workers, bad files turned into reasons.

Each item is read by key from its source (:func:`backpropvis.image_sets.read_image`:
a file's bytes with their SHA-256 content hash, or a bundled sample or crop) and put
through the model's own ``preprocessing``. An image that cannot be read or decoded
becomes a failure carrying one line of reason instead of an exception, so one bad
file never stops a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import BackpropvisError
from ..image_sets import ImageSource, read_image

__all__ = ["Decoded", "Batch", "ImageSet", "collate", "batch_loader"]


@dataclass
class Decoded:
    """One image after its worker is done with it.

    Attributes:
        key: its path relative to the images folder, or a sample's or crop's key.
        content_hash: SHA-256 of the file's bytes (of a sample's pixels; "" when they could not be read).
        pixels: [3, S, S] model input, or None when it failed.
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
        pixels: [B, 3, S, S] (B may be 0).
        failures: ``(key, content_hash, reason)`` of the images that failed.
    """

    keys: list[str]
    hashes: list[str]
    pixels: torch.Tensor
    failures: list[tuple[str, str, str]]


class ImageSet(Dataset):
    """Images by key from ``source`` (a folder, :class:`~backpropvis.image_sets.Samples`,
    or None for the bundled samples).

    ``preprocess`` maps a PIL image to Tensor[3, S, S] (a model's ``preprocessing``).
    """

    def __init__(
        self, source: ImageSource, keys: Sequence[str], preprocess: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.source = source
        self.keys = list(keys)
        self.preprocess = preprocess

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


def collate(items: list[Decoded]) -> Batch:
    """DataLoader ``collate_fn``: stack the good images, list the failures."""
    good = [item for item in items if item.pixels is not None]
    failures = [(item.key, item.content_hash, item.reason or "") for item in items if item.pixels is None]
    pixels = torch.stack([item.pixels for item in items if item.pixels is not None]) if good else torch.empty(0)
    return Batch([item.key for item in good], [item.content_hash for item in good], pixels, failures)


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode; the main process owns the cores for the model


def batch_loader(dataset: ImageSet, batches: Sequence[Sequence[int]], workers: int) -> DataLoader:
    """A DataLoader yielding one :class:`Batch` per entry of ``batches`` (dataset indices),
    decoded by ``workers`` processes (0: in this process), at most two batches ahead."""
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"prefetch_factor": 2, "persistent_workers": False, "worker_init_fn": _one_thread}
    return DataLoader(
        dataset, batch_sampler=[list(batch) for batch in batches], num_workers=workers, collate_fn=collate, **extra
    )
