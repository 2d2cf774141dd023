"""Each model's input pipeline: resize, centre crop, scale, normalise per channel.

A model carries its own :class:`Preprocessing` as ``model.preprocessing``, so scripts
never scatter mean/std constants around.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..core.errors import ModelError

__all__ = [
    "Preprocessing",
    "IMAGENET",
    "TF_LITE",
    "MAX_RESIZED_AREA",
    "DEFAULT_INPUT_SIZE",
    "preprocessing_of",
    "declared_preprocessing",
    "settle_preprocessing",
]

DEFAULT_INPUT_SIZE = 224
"""Crop size of the ImageNet preprocessing given to a model that declares none."""

MAX_RESIZED_AREA = 4
"""Largest resized image, in squares of the resize size. An image more elongated than
that (over 4:1) is not resized whole: only the region under the centre crop is, with
the same sampling positions, so memory stays bounded (a 100000 x 3 px strip would
otherwise become 8.5 M x 256 px); the result differs from resize-then-crop by at most
one level of 255 in a few pixels (PIL's fixed-point filter weights)."""


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``, then
    ``(pixel / 255 - mean) / std`` per channel (bilinear; see :data:`MAX_RESIZED_AREA`
    for very elongated images).

    Calling it on a PIL image gives Tensor[3, crop, crop] (float32).
    """

    crop: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def resized(self, crop: int) -> Preprocessing:
        """The same pipeline for another crop size (keeping the crop / resize ratio)."""
        return replace(self, crop=crop, resize=round(crop * self.resize / self.crop))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.from_pixels(self.pixels(image))

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The resized, centre-cropped picture before scaling: uint8 Tensor[3, crop, crop].

        A quarter of the float input's bytes: what DataLoader workers hand over and what
        crosses to a GPU; :meth:`from_pixels` finishes the job there.
        """
        image = image.convert("RGB")
        width, height = image.size
        scale = self.resize / min(width, height)
        size = (max(self.crop, round(width * scale)), max(self.crop, round(height * scale)))
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        if size[0] * size[1] <= MAX_RESIZED_AREA * self.resize**2:
            image = image.resize(size, Image.Resampling.BILINEAR).crop((left, top, left + self.crop, top + self.crop))
        else:  # a long strip: resize only the part the crop keeps, never the whole strip (100000 x 3 px)
            x_scale, y_scale = size[0] / width, size[1] / height
            box = (left / x_scale, top / y_scale, (left + self.crop) / x_scale, (top + self.crop) / y_scale)
            image = image.resize((self.crop, self.crop), Image.Resampling.BILINEAR, box=box)
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [..., 3, H, W] (:meth:`pixels`) -> the model's float32 input, on ``pixels``' device.

        A lookup in a 3 x 256 table computed on the CPU as ``(value / 255 - mean) / std``
        in float32, so the result is bit for bit the same on every device (no division
        is done on the device, where a scalar divisor may become a reciprocal).
        """
        table, channels = _lookup(self, pixels.device)
        return table[pixels.long() + channels]

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[B, 3, crop, crop] for a list of PIL images."""
        return torch.stack([self(image) for image in images])

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """[..., 3, H, W] in [0, 1] -> the model's input scale."""
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def unnormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's input [..., 3, H, W] -> pixels in [0, 1] (for display)."""
        mean, std = self._stats(inputs)
        return (inputs * std + mean).clamp(0, 1)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(3, 1, 1)
        return mean, std


@functools.lru_cache(maxsize=16)
def _lookup(preprocessing: Preprocessing, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`Preprocessing.from_pixels`'s table on ``device``, made once per device: [3 * 256]
    float32, every channel's input value of every pixel value, and each channel's offset
    in it, [3, 1, 1]."""
    levels = torch.from_numpy(np.arange(256, dtype=np.float32) / 255.0).expand(3, 1, 256)
    table = preprocessing.normalize(levels).reshape(-1).to(device)
    return table, torch.arange(3, device=device).view(3, 1, 1) * 256


IMAGENET = Preprocessing()
"""torchvision's ImageNet pipeline: resize 256, crop 224, ImageNet mean and std."""

TF_LITE = Preprocessing(mean=(127.0 / 255,) * 3, std=(128.0 / 255,) * 3)
"""TensorFlow's EfficientNet-Lite pipeline: (pixel - 127) / 128 on the 0-255 scale."""


def preprocessing_of(model: nn.Module) -> Preprocessing:
    """``model.preprocessing``, the input pipeline a model carries.

    Raises:
        ModelError: for a model without one.
    """
    preprocessing = getattr(model, "preprocessing", None)
    if not isinstance(preprocessing, Preprocessing):
        raise ModelError(f"{type(model).__name__} has no .preprocessing (a backpropvis.models.Preprocessing)")
    return preprocessing


def declared_preprocessing(model: nn.Module) -> Optional[Preprocessing]:
    """The pipeline a model declares without carrying a :class:`Preprocessing`: timm's
    ``pretrained_cfg`` (or the older ``default_cfg``), a dict with ``input_size``
    (C, H, W) and optionally ``crop_pct``, ``mean`` and ``std``. None when it declares
    none (or a non-square or non-RGB size, which a square centre crop cannot give).

    The resize keeps timm's ratio: shorter side ``round(H / crop_pct)``, then crop H.
    """
    for attribute in ("pretrained_cfg", "default_cfg"):
        config = getattr(model, attribute, None)
        if isinstance(config, dict) and config.get("input_size") is not None:
            return _from_config(config)
    return None


def _from_config(config: dict[str, Any]) -> Optional[Preprocessing]:
    try:
        channels, height, width = (int(value) for value in config["input_size"])
    except (TypeError, ValueError):
        return None
    if channels != 3 or height != width or height < 1:
        return None
    crop_pct = float(config.get("crop_pct") or IMAGENET.crop / IMAGENET.resize)
    mean = tuple(float(value) for value in config.get("mean", IMAGENET.mean))
    std = tuple(float(value) for value in config.get("std", IMAGENET.std))
    if len(mean) != 3 or len(std) != 3:
        return None
    return Preprocessing(crop=height, resize=max(height, round(height / crop_pct)), mean=mean, std=std)


def settle_preprocessing(module: nn.Module, name: str, input_size: Optional[int]) -> tuple[Callable, str, str]:
    """The preprocessing a command uses for ``module``: its own ``.preprocessing`` (resized
    to ``input_size`` if asked), else the one its timm config declares
    (:func:`declared_preprocessing`), else ImageNet's at ``input_size`` (default 224).

    Returns:
        (preprocessing, what it does in words, where its size came from in words).

    Raises:
        ModelError: ``input_size`` asked of a preprocessing that is not a :class:`Preprocessing`.
    """
    asked = f"`input_size` {input_size}"
    own = getattr(module, "preprocessing", None)
    if not callable(own):
        declared = declared_preprocessing(module)
        if declared is not None:
            chosen = declared if input_size is None else declared.resized(input_size)
            said = (
                f"its pretrained_cfg, {_describe(chosen)}, mean ({_numbers(chosen.mean)}), std ({_numbers(chosen.std)})"
            )
            return (
                chosen,
                said,
                asked if input_size is not None else f"{chosen.crop} px from the model's pretrained_cfg",
            )
        default = IMAGENET.resized(input_size or DEFAULT_INPUT_SIZE)
        said = f"ImageNet mean/std, {_describe(default)} (the model has no .preprocessing)"
        return default, said, asked if input_size is not None else f"the default {DEFAULT_INPUT_SIZE} px"
    if input_size is not None:
        if not isinstance(own, Preprocessing):
            raise ModelError(
                f"`input_size` cannot resize the preprocessing of {name} (a {type(own).__name__}, not a "
                "backpropvis Preprocessing); leave `input_size` out"
            )
        own = own.resized(input_size)
    if isinstance(own, Preprocessing):
        said = f"the model's own, {_describe(own)}, mean ({_numbers(own.mean)}), std ({_numbers(own.std)})"
        return own, said, asked if input_size is not None else f"{own.crop} px from the model's own preprocessing"
    return own, f"the model's own ({type(own).__name__})", "the model's own preprocessing"


def _describe(preprocessing: Preprocessing) -> str:
    return f"shorter side resized to {preprocessing.resize}, centre crop {preprocessing.crop} px"


def _numbers(values: Sequence[float]) -> str:
    return ", ".join(f"{value:.3f}" for value in values)
