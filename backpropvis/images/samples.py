"""Images: bundled samples by name, any image file by path, ImageNet class names.

The samples are scikit-image's natural photographs, shipped inside scikit-image, so
they need no network: "tabby" is ``skimage.data.chelsea()``, a tabby cat.
"""

from __future__ import annotations

import functools
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Callable, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core.errors import ImageError

__all__ = ["SAMPLES", "sample_names", "load_image", "imagenet_classes", "class_name", "logit_name"]


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        return image[index] if index is not None else image

    return load


SAMPLES: dict[str, Callable[[], np.ndarray]] = {
    "tabby": _skimage("chelsea"),
    "astronaut": _skimage("astronaut"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle", 0),
    "camera": _skimage("camera"),
}
"""Sample name -> loader of an [H, W, 3] (or [H, W]) uint8 array."""


def sample_names() -> list[str]:
    """The bundled sample names, "tabby" first."""
    return list(SAMPLES)


def load_image(source: Union[str, os.PathLike]) -> Image.Image:
    """An RGB PIL image from a sample name or an image file of any mode or bit depth.

    Grayscale is repeated over three channels, alpha is dropped, 16-bit and float
    images are scaled to 8 bits by their full range.

    Large photos are decoded in full without PIL's DecompressionBombWarning (a 12000 x
    9000 photo, 108 million pixels, is a camera's, not an attack: it takes 324 MB while
    it is read, then the model's preprocessing scales it down); beyond twice PIL's limit
    (:data:`PIL.Image.MAX_IMAGE_PIXELS`, 179 million pixels by default) a file is refused
    with one line.

    Raises:
        ImageError: for a missing file, an unknown sample name, or a file that is not
            a readable image.
    """
    name = os.fspath(source)
    if name in SAMPLES:
        return Image.fromarray(SAMPLES[name]()).convert("RGB")
    path = Path(name)
    if not path.exists():
        raise ImageError(f"{name!r} is neither an image file nor a sample name ({', '.join(SAMPLES)})")
    if not path.is_file():
        raise ImageError(f"{name} is not a file")
    try:
        with warnings.catch_warnings():  # a large photo is decoded: PIL's warning would be printed raw
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return _to_rgb(image)
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageError(
            f"{name} is too large to decode safely (more than {limit:.0f} million pixels): downscale it first"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file") from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read (permission denied)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name} could not be decoded: {error}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = (0.0, 65535.0) if image.mode.startswith("I;16") else (float(pixels.min()), float(pixels.max()))
        scaled = (pixels - low) / max(high - low, 1e-12) * 255.0
        return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, by index (281 is "tabby")."""
    text = resources.files("backpropvis").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def class_name(index: int) -> str:
    """The ImageNet class name of a logit index, or "class N" beyond the 1000 classes."""
    names = imagenet_classes()
    return names[index] if 0 <= index < len(names) else f"class {index}"


def logit_name(index: int, num_logits: int) -> str:
    """The ImageNet class name of a logit when the model has ImageNet's 1000 logits, else
    "class N" (a user's model with other classes)."""
    return class_name(index) if num_logits == len(imagenet_classes()) else f"class {index}"
