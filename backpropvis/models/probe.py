"""One pass through the engine before a command writes anything.

A user's model built for 64 px and run at the default 224 px fails deep inside its
forward pass ("mat1 and mat2 shapes cannot be multiplied"); a model with SiLUs is
refused by the engine unless a smooth mode is chosen. :func:`checked_model` runs the
model once through the engine on a grey picture through its preprocessing, before any
database, folder or page is written, so that either failure is one line at once (the
first naming the input shape tried, where its size came from, and ``input_size``), and
so that a command knows which smooth activations and gates the model has
(:class:`~backpropvis.core.smooth_activations.SmoothReport`) to store with its results.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Callable, Optional

import torch
from PIL import Image
from torch import nn

from ..core.errors import BackpropvisError, ModelError
from ..core.smooth_activations import SmoothReport, resolve_smooth
from ..engine import attribute_many
from .spec import BUILT_IN, LoadedModel

__all__ = ["checked_model", "probe_input_size", "PROBE_PICTURE_SIDE"]

PROBE_PICTURE_SIDE = 300
"""Side of the grey picture given to the preprocessing (resized and cropped to the model's size)."""


def checked_model(loaded: LoadedModel, smooth: Optional[str]) -> LoadedModel:
    """``loaded`` with ``smooth`` declared on its module (``module.smooth_activations``,
    which the engine reads when a call gives no mode) and, for a model that is not
    built in, one saliency map of one grey picture run through the engine (CPU), so that
    a wrong input size or a refused smooth activation fails here, in one line.

    Returns:
        ``loaded`` with its ``smooth`` report: the mode and what the engine met.

    Raises:
        ModelError: the forward pass failed (see :func:`probe_input_size`).
        UnsupportedActivationError: a smooth activation met with the mode "refuse".
    """
    module = loaded.module
    if smooth is not None:
        setattr(module, "smooth_activations", smooth)  # noqa: B010 - a str on an nn.Module
    mode = resolve_smooth(None, None, getattr(module, "smooth_activations", None))
    if loaded.source == BUILT_IN:  # the paper's networks: ReLU-like activations only
        report = SmoothReport(mode)
    else:
        report = probe_input_size(module, loaded.preprocessing, name=loaded.name, size_from=loaded.size_from)
    checked = replace(loaded, smooth=report)
    note = checked.smooth_note  # said wherever the model's notes are: the terminal, summaries, pages
    return checked if note is None else replace(checked, notes=(*checked.notes, note))


def probe_input_size(
    module: nn.Module, preprocessing: Callable[[Image.Image], torch.Tensor], *, name: str, size_from: str
) -> SmoothReport:
    """One saliency map through the engine of one preprocessed grey picture (CPU).

    Args:
        module: the model (eval mode), on the CPU.
        preprocessing: PIL image -> Tensor[3, S, S].
        name: how the message names the model.
        size_from: where S came from, in words ("the default 224 px", "`input_size` 64").

    Returns:
        what the engine met (:class:`~backpropvis.core.smooth_activations.SmoothReport`).

    Raises:
        ModelError: the forward pass failed, in one line naming the input shape tried,
            ``size_from`` and the ``input_size`` parameter.
    """
    picture = Image.new("RGB", (PROBE_PICTURE_SIDE, PROBE_PICTURE_SIDE), (128, 128, 128))
    x = preprocessing(picture).unsqueeze(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what it lets through is said with the results
            return attribute_many(module, x, ["max"], ["saliency"]).smooth
    except BackpropvisError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of the user's code becomes one line
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise ModelError(
            f"{name} failed on an input of shape {list(x.shape)} ({size_from}): {type(error).__name__}: {detail}; "
            "if it expects another size, give it with `input_size`"
        ) from None
