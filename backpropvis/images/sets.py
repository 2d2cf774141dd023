"""Which images a run looks at: a folder of image files, the bundled samples with
seeded random crops of them, or the digits VGG's held-out digits, each image named by
a stable key.

- A folder (``--images DIR``): every file whose name ends like an image, searched
  recursively; its key is the path relative to the folder, with "/" separators, so a
  run's rows name the same image on every machine and after the folder moves.
- :class:`Samples`: the bundled sample photos (keys "tabby", "astronaut", ...) and
  ``crops`` seeded random crops of them, keyed ``"<photo>#crop<NN>"`` ("tabby#crop07"):
  a crop's key names the photo it was cut from, since crops of one photo are not
  independent images (:func:`source_photo`).
- :class:`Digits`: the digits VGG's held-out digits (scikit-learn's digits upsampled to
  32 x 32, :func:`backpropvis.models.load_digits_split`), keyed ``"digit<NNNN>"`` by
  their position in ``sklearn.datasets.load_digits()``; each is its own photo.

:func:`list_images` lists a source's keys; :func:`read_image` reads one image by key.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from ..core.errors import ImageError
from ..models.digits_data import load_digits_split
from .samples import load_image, sample_names

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLES_SOURCE",
    "Crop",
    "Digits",
    "Samples",
    "ImageSource",
    "list_images",
    "read_image",
    "source_photo",
    "source_setting",
]

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
"""File name endings taken as images (case-insensitive); other files are ignored."""

SAMPLES_SOURCE = "samples"
"""How a run over the bundled samples alone names its images (the ``images`` setting)."""

_CROP_MARK = "#crop"


@dataclass(frozen=True)
class Crop:
    """A square crop of a sample photo, as fractions of the photo.

    Attributes:
        photo: the sample's name.
        fraction: the square's side over the photo's shorter side.
        left, top: where the square starts, as fractions of the room left around it.
        mirror: whether the crop is flipped left to right.
    """

    photo: str
    fraction: float
    left: float
    top: float
    mirror: bool

    def apply(self, picture: Image.Image) -> Image.Image:
        """The crop of ``picture`` (the photo itself, as RGB)."""
        side = int(min(picture.size) * self.fraction)
        x, y = int(self.left * (picture.size[0] - side)), int(self.top * (picture.size[1] - side))
        cropped = picture.crop((x, y, x + side, y + side))
        return cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if self.mirror else cropped


@functools.lru_cache(maxsize=8)
def _drawn_crops(count: int, seed: int) -> tuple[Crop, ...]:
    """:meth:`Samples.drawn`, drawn once per process (DataLoader workers load one crop at a time)."""
    generator = np.random.default_rng([seed, 7])
    names = sample_names()
    crops = []
    for _ in range(count):
        photo = names[int(generator.integers(len(names)))]
        fraction, left, top = generator.uniform(0.35, 0.9), generator.random(), generator.random()
        crops.append(Crop(photo, float(fraction), float(left), float(top), bool(generator.random() < 0.5)))
    return tuple(crops)


@functools.cache
def _sample_photo(name: str) -> Image.Image:
    """A bundled photo, decoded once per process; callers get copies or crops of it."""
    return load_image(name)


@dataclass(frozen=True)
class Samples:
    """The bundled sample photos and ``crops`` seeded random crops of them.

    Each crop is a square of 35-90 % of a random photo's shorter side at a random place,
    mirrored half of the time, drawn from numpy's generator seeded with ``(seed, 7)``:
    the same ``(crops, seed)`` gives the same crops, and the first crops of a longer
    list are those of a shorter one.
    """

    crops: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crops < 0:
            raise ImageError(f"the number of crops must be 0 or more, not {self.crops}")

    def drawn(self) -> list[Crop]:
        """Every crop, in key order."""
        return list(_drawn_crops(self.crops, self.seed))

    def keys(self) -> list[str]:
        """The photos' names, then ``"<photo>#crop<NN>"`` for each crop."""
        width = max(2, len(str(self.crops - 1)))
        return sample_names() + [
            f"{crop.photo}{_CROP_MARK}{number:0{width}d}" for number, crop in enumerate(self.drawn())
        ]

    def load(self, key: str) -> Image.Image:
        """The RGB picture of ``key``.

        Raises:
            ImageError: for a key that is neither a sample nor one of this set's crops.
        """
        photo, mark, number = key.partition(_CROP_MARK)
        if not mark and photo in sample_names():
            return _sample_photo(photo).copy()
        crops = _drawn_crops(self.crops, self.seed)
        if not (number.isdigit() and int(number) < len(crops) and crops[int(number)].photo == photo):
            raise ImageError(f"{key!r} is not an image of {self.describe()}")
        return crops[int(number)].apply(_sample_photo(photo))  # a new picture: the cached photo stays as it is

    @property
    def setting(self) -> str:
        """How a run's settings name this set: "samples", or "samples+26crops-seed0"."""
        return SAMPLES_SOURCE if self.crops == 0 else f"{SAMPLES_SOURCE}+{self.crops}crops-seed{self.seed}"

    def describe(self) -> str:
        """The set in words, for a report."""
        described = f"the {len(sample_names())} bundled sample images"
        return described + (f" and {self.crops} seeded random crops of them" if self.crops else "")


_DIGIT_MARK = "digit"


@functools.lru_cache(maxsize=3)
def _digit_pictures(split: str) -> dict[str, Image.Image]:
    """Key -> picture of every digit of ``split`` (built once per process: DataLoader
    workers read one digit at a time)."""
    digits = load_digits_split(split)  # type: ignore[arg-type]
    return {f"{_DIGIT_MARK}{index:04d}": picture for index, picture in zip(digits.indices.tolist(), digits.images)}


@dataclass(frozen=True)
class Digits:
    """Handwritten digits from scikit-learn, as the digits VGG sees them: the held-out
    test split by default (the network was not trained on them), each digit upsampled
    to a 32 x 32 RGB picture (:func:`backpropvis.models.load_digits_split`).

    Keys are ``"digit<NNNN>"``, NNNN the digit's position in ``load_digits()``; every
    digit is its own photo (no two are cut from one picture).
    """

    split: str = "test"

    def __post_init__(self) -> None:
        if self.split not in ("train", "test", "all"):
            raise ImageError(f"unknown digits split {self.split!r}; choose train, test or all")

    def keys(self) -> list[str]:
        """Every digit's key, in the order of ``load_digits()``."""
        return list(_digit_pictures(self.split))

    def load(self, key: str) -> Image.Image:
        """The RGB picture of ``key``.

        Raises:
            ImageError: for a key that is not one of this split's digits.
        """
        pictures = _digit_pictures(self.split)
        if key not in pictures:
            raise ImageError(f"{key!r} is not an image of {self.describe()}")
        return pictures[key]

    @property
    def setting(self) -> str:
        """How a run's settings name this set: "digits-test"."""
        return f"digits-{self.split}"

    def describe(self) -> str:
        """The set in words, for a report."""
        held_out = "held-out " if self.split == "test" else ""
        return f"the {len(_digit_pictures(self.split))} {held_out}digits of scikit-learn's digits ({self.split})"


KeyedImages = Union[Samples, Digits]
"""An image set that names its images by key and reads them without files."""

ImageSource = Union[str, os.PathLike, Samples, Digits, None]
"""Where a run's images come from: a folder, :class:`Samples`, :class:`Digits`, or None (the samples alone)."""


def _as_keyed(source: ImageSource) -> Optional[KeyedImages]:
    if source is None:
        return Samples()
    return source if isinstance(source, (Samples, Digits)) else None


def source_setting(source: ImageSource) -> str:
    """What a run's settings record as its images: the folder's absolute path, or the
    set's ``setting`` (:attr:`Samples.setting`, :attr:`Digits.setting`)."""
    keyed = _as_keyed(source)
    return keyed.setting if keyed is not None else str(Path(source).resolve())  # type: ignore[arg-type]


def source_photo(key: str) -> str:
    """The photo an image key comes from: ``"tabby#crop07"`` -> ``"tabby"``; any other key is its own."""
    return key.partition(_CROP_MARK)[0]


def list_images(source: ImageSource, limit: Optional[int] = None) -> list[str]:
    """The image keys of ``source``: a folder's sorted by relative path, or the keys of a
    :class:`Samples` or :class:`Digits`.

    Every entry of a folder whose name ends like an image is listed, whatever it is (a
    dangling link or a folder named ``x.jpg`` is listed too, and fails when read, so
    that it is recorded rather than silently left out). Linked folders are followed,
    each real folder once; hidden folders (".name") are skipped.

    Args:
        source: a folder (searched recursively, e.g. an ImageFolder tree), a
            :class:`Samples` or :class:`Digits`, or None for the bundled sample images.
        limit: keep only the first ``limit`` keys.

    Raises:
        ImageError: when the folder is missing, is not a folder, or holds no image.
    """
    keyed = _as_keyed(source)
    keys = keyed.keys() if keyed is not None else _list_folder(Path(source))  # type: ignore[arg-type]
    if limit is not None:
        if limit < 1:
            raise ImageError(f"`limit` must be at least 1, not {limit}")
        keys = keys[:limit]
    return keys


def _list_folder(root: Path) -> list[str]:
    if not root.exists():
        raise ImageError(f"images folder {root} does not exist")
    if not root.is_dir():
        raise ImageError(f"`images` must be a folder, and {root} is not one")
    keys: list[str] = []
    visited: set[str] = set()
    for folder, subfolders, files in os.walk(root, onerror=_raise_unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a link back up the tree: list each folder once
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))  # a stable walk
        relative = Path(folder).relative_to(root)
        names = files + [name for name in subfolders if _is_image_name(name)]
        keys += [(relative / name).as_posix() for name in names if _is_image_name(name)]
    keys.sort()
    if not keys:
        raise ImageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return keys


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _raise_unreadable(error: OSError) -> None:
    raise ImageError(f"cannot list images folder {error.filename}: {error.strerror}")


@dataclass
class ReadImage:
    """One image read by key: its picture and the SHA-256 of its content, or why it failed.

    Attributes:
        key: the image's key.
        content_hash: SHA-256 of the file's bytes (of the RGB pixels for a sample or a
            crop); "" when they could not be read.
        picture: the RGB picture, or None when it failed.
        reason: why it failed (one line, without the key), or None.
    """

    key: str
    content_hash: str
    picture: Optional[Image.Image]
    reason: Optional[str]


def read_image(source: ImageSource, key: str) -> ReadImage:
    """Read image ``key`` of ``source``; a file that cannot be read or decoded gives a
    :class:`ReadImage` with its reason instead of an exception."""
    keyed = _as_keyed(source)
    if keyed is not None:
        try:
            picture = keyed.load(key)
        except ImageError as error:
            return ReadImage(key, "", None, str(error))
        return ReadImage(key, hashlib.sha256(np.asarray(picture).tobytes()).hexdigest(), picture, None)
    path = Path(source) / key  # type: ignore[arg-type]
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        return ReadImage(key, "", None, "cannot be read: it is a folder, not a file")
    except FileNotFoundError:
        return ReadImage(key, "", None, "cannot be opened: no such file (a dangling link, or removed during the run)")
    except PermissionError:
        return ReadImage(key, "", None, "cannot be read: permission denied")
    except OSError as error:
        return ReadImage(key, "", None, f"cannot be read: {error.strerror or error}")
    content_hash = hashlib.sha256(data).hexdigest()
    if not data:
        return ReadImage(key, content_hash, None, "empty file (0 bytes)")
    try:
        picture = load_image(path)
    except ImageError as error:
        return ReadImage(key, content_hash, None, _strip_name(str(error), str(path)))
    except (OSError, ValueError, MemoryError) as error:  # a decoder failing past load_image's checks
        return ReadImage(key, content_hash, None, f"could not be decoded: {error}")
    return ReadImage(key, content_hash, picture, None)


def _strip_name(message: str, source: str) -> str:
    """load_image's messages start with the file name, which the failures table already has."""
    return message[len(source) :].strip() if message.startswith(source) else message
