"""Models whose output is not a tensor of logits: pick the logits out of it.

Many classifiers return a tuple (``(logits, aux)``), a dict (``{"logits": ...}``) or an
object with a ``.logits`` attribute (Hugging Face's ``ModelOutput``, which is also a
dict). The engine needs Tensor[B, K]; :func:`select_output` wraps such a model in a
thin module that returns the part the key names. On the command line it is
``--output KEY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from ..core.errors import ModelError

__all__ = ["SelectOutput", "select_output", "pick_output"]

OutputKey = Union[str, int]


class SelectOutput(nn.Module):
    """``model`` whose forward pass returns only the logits inside its output.

    The wrapped model is the submodule ``model`` (so its state-dict keys gain the
    prefix ``model.``); ``preprocessing`` and ``weights_description`` are carried over,
    and the wrapper's train/eval flag is the model's own.

    Attributes:
        model: the wrapped model.
        key: a dict key, a tuple index or an attribute name (see :func:`pick_output`).
    """

    layer_prefix = "model."
    """What the wrapped model's layer names gain in ``named_modules()``; unit targets
    (:class:`~backpropvis.core.targets.Unit`) may name a layer without it."""

    def __init__(self, model: nn.Module, key: OutputKey) -> None:
        super().__init__()
        self.model = model
        self.key = key
        for attribute in ("preprocessing", "weights_description"):
            if hasattr(model, attribute):
                setattr(self, attribute, getattr(model, attribute))
        self.training = model.training  # the flag only: the model's own submodules keep theirs

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return pick_output(self.model(*args, **kwargs), self.key, type(self.model).__name__)

    def extra_repr(self) -> str:
        return f"key={self.key!r}"


def select_output(model: nn.Module, key: OutputKey) -> SelectOutput:
    """Wrap ``model`` so that it returns the logits its output holds under ``key``.

    ``key`` is a dict key (``"logits"``, also for a Hugging Face ``ModelOutput``), an
    index into a tuple or list (``0``, or ``"0"`` as typed on the command line), or an
    attribute name of any other output object.

    >>> maps = backpropvis.attribute_many(select_output(model, "logits"), x, ["max"])
    """
    if not isinstance(model, nn.Module):
        raise ModelError(f"select_output wraps a torch.nn.Module, not a {type(model).__name__}")
    return SelectOutput(model, key)


def pick_output(output: Any, key: OutputKey, model_name: str = "the model") -> torch.Tensor:
    """The tensor ``output`` holds under ``key`` (see :func:`select_output`).

    Raises:
        ModelError: a key, index or attribute the output does not have, an output that
            is already a tensor, or a selected part that is not a tensor.
    """
    described = f"{model_name}'s output"
    if isinstance(output, torch.Tensor):
        raise ModelError(f"{model_name} already returns a tensor, so there is nothing to select with output {key!r}")
    if isinstance(output, Mapping):
        if key not in output:
            keys = ", ".join(map(str, output))
            raise ModelError(f"{described} (a {type(output).__name__}) has no key {key!r}; its keys are: {keys}")
        chosen = output[key]
        where = f"{described}[{key!r}]"
    elif isinstance(output, (tuple, list)):
        index = _index(key)
        if index is None or not -len(output) <= index < len(output):
            raise ModelError(
                f"{described} is a {type(output).__name__} of {len(output)}; select the logits by an index "
                f"from 0 to {len(output) - 1}, not {key!r}"
            )
        chosen = output[index]
        where = f"{described}[{index}]"
    else:
        if not isinstance(key, str) or not hasattr(output, key):
            raise ModelError(f"{described} (a {type(output).__name__}) has no attribute {key!r}")
        chosen = getattr(output, key)
        where = f"{described}.{key}"
    if not isinstance(chosen, torch.Tensor):
        raise ModelError(f"{where} is a {type(chosen).__name__}, not a tensor of logits")
    return chosen


def _index(key: OutputKey) -> Union[int, None]:
    if isinstance(key, int):
        return key
    text = key.strip()
    return int(text) if text.lstrip("-").isdigit() else None
