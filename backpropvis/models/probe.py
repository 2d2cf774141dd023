"""One forward pass before a command writes anything: does the model take this input size?

A user's model built for 64 px and run at the default 224 px fails deep inside its
forward pass ("mat1 and mat2 shapes cannot be multiplied"). :func:`probe_input_size`
runs the model once on a grey picture through its preprocessing, before any database,
folder or page is written, and turns such a failure into one line that says which size
was tried, where that size came from, and the parameter that sets it.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from PIL import Image
from torch import nn

from ..errors import BackpropvisError, ModelError

__all__ = ["probe_input_size", "PROBE_PICTURE_SIDE"]

PROBE_PICTURE_SIDE = 300
"""Side of the grey picture given to the preprocessing (resized and cropped to the model's size)."""


def probe_input_size(
    module: nn.Module,
    preprocessing: Callable[[Image.Image], torch.Tensor],
    *,
    name: str,
    size_from: str,
    device: Union[str, torch.device] = "cpu",
) -> None:
    """Run ``module`` once (no gradient) on one preprocessed grey picture.

    Args:
        module: the model (eval mode), on ``device``.
        preprocessing: PIL image -> Tensor[3, S, S].
        name: how the message names the model.
        size_from: where S came from, in words ("the default 224 px", "the model's
            pretrained_cfg", "input_size=64").
        device: where the model lives.

    Raises:
        ModelError: the forward pass failed, in one line naming the input shape tried,
            ``size_from`` and the ``input_size`` parameter.
    """
    picture = Image.new("RGB", (PROBE_PICTURE_SIDE, PROBE_PICTURE_SIDE), (128, 128, 128))
    x = preprocessing(picture).unsqueeze(0).to(device)
    try:
        with torch.no_grad():
            module(x)
    except BackpropvisError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the user's code becomes one line
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise ModelError(
            f"{name} failed on an input of shape {list(x.shape)} ({size_from}): {type(error).__name__}: {detail}; "
            "if it expects another size, give it with `input_size`"
        ) from None
