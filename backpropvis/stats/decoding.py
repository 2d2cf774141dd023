"""Reading and decoding images in DataLoader workers, bad files turned into reasons.

Each item is read once as bytes (for its SHA-256 content hash), decoded with
:func:`backpropvis.images.load_image` and put through the model's own
``preprocessing``. A file that cannot be read or decoded becomes a failure carrying
one line of reason instead of an exception, so one bad file never stops a run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import BackpropvisError
from ..images import SAMPLES, load_image

__all__ = ["Decoded", "Batch", "ImageSet", "collate", "batch_loader"]


@dataclass
class Decoded:
    """One image after its worker is done with it.

    Attributes:
        key: its path relative to the images folder (or the sample name).
        content_hash: SHA-256 of the file's bytes ("" when they could not be read).
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
    """Images by key under ``root`` (or bundled samples when ``root`` is None).

    ``preprocess`` maps a PIL image to Tensor[3, S, S] (a model's ``preprocessing``).
    """

    def __init__(self, root: Optional[Path], keys: Sequence[str], preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.root = Path(root) if root is not None else None
        self.keys = list(keys)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> Decoded:
        key = self.keys[index]
        if self.root is None:
            return self._decode(key, key, hashlib.sha256(np.ascontiguousarray(SAMPLES[key]()).tobytes()).hexdigest())
        path = self.root / key
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            return Decoded(key, "", None, "cannot be read: it is a folder, not a file")
        except FileNotFoundError:
            return Decoded(key, "", None, "cannot be opened: no such file (a dangling link, or removed during the run)")
        except PermissionError:
            return Decoded(key, "", None, "cannot be read: permission denied")
        except OSError as error:
            return Decoded(key, "", None, f"cannot be read: {error.strerror or error}")
        content_hash = hashlib.sha256(data).hexdigest()
        if not data:
            return Decoded(key, content_hash, None, "empty file (0 bytes)")
        return self._decode(key, str(path), content_hash)

    def _decode(self, key: str, source: str, content_hash: str) -> Decoded:
        try:
            pixels = self.preprocess(load_image(source))
        except BackpropvisError as error:
            return Decoded(key, content_hash, None, _strip_name(str(error), source))
        except (OSError, ValueError, MemoryError) as error:  # a decoder failing past load_image's checks
            return Decoded(key, content_hash, None, f"could not be decoded: {error}")
        return Decoded(key, content_hash, pixels, None)


def _strip_name(message: str, source: str) -> str:
    """load_image's messages start with the file name, which the failures table already has."""
    return message[len(source):].strip() if message.startswith(source) else message


def collate(items: list[Decoded]) -> Batch:
    """DataLoader ``collate_fn``: stack the good images, list the failures."""
    good = [item for item in items if item.pixels is not None]
    failures = [(item.key, item.content_hash, item.reason or "") for item in items if item.pixels is None]
    pixels = torch.stack([item.pixels for item in good]) if good else torch.empty(0)
    return Batch([item.key for item in good], [item.content_hash for item in good], pixels, failures)


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode; the main process owns the cores for the model


def batch_loader(dataset: ImageSet, batches: Sequence[Sequence[int]], workers: int) -> DataLoader:
    """A DataLoader yielding one :class:`Batch` per entry of ``batches`` (dataset indices),
    decoded by ``workers`` processes (0: in this process), at most two batches ahead."""
    extra = {"prefetch_factor": 2, "persistent_workers": False, "worker_init_fn": _one_thread} if workers > 0 else {}
    return DataLoader(dataset, batch_sampler=[list(batch) for batch in batches], num_workers=workers, collate_fn=collate, **extra)
