"""Any model from one line of text, as the command line's ``--model`` takes it.

``--model`` is one of:

- a built-in name (:data:`~backpropvis.models.MODEL_NAMES`: ``vgg16``, ``cnn3``, ...);
- ``MODULE:CALLABLE``, an importable module and a callable in it that returns an
  ``nn.Module`` (``torchvision.models:resnet18``, ``timm:create_model``);
- ``PATH.py:CALLABLE``, a Python file of the user's and a callable in it.

:func:`resolve_model` builds it (keyword arguments from ``--model-args``, the global RNG
seeded with ``--seed`` during the call and restored afterwards), loads ``--weights``
("random": as built; or a state-dict file, read with ``weights_only=True`` and checked
key by key), puts it in eval mode (saying so when it was not), selects its logits
with ``--output`` when it returns a tuple, dict or object, and settles its
preprocessing: ``model.preprocessing`` when it has one, else ImageNet's mean and std at
``--input-size`` (default 224). It returns a :class:`LoadedModel`, which also says where
the model came from and fingerprints its weights, so that a results database knows
exactly which model filled it. :func:`backpropvis.models.load_model` is this function
with the package's built-in models.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import torch
from PIL import Image
from torch import nn

from ..core.errors import BackpropvisError, ModelError, WeightsError, first_few
from ..core.module_checks import refuse_compiled, training_dependent_modules
from ..core.smooth_activations import SmoothReport
from .fingerprint import file_fingerprint, weights_fingerprint
from .output import SelectOutput, select_output
from .preprocessing import DEFAULT_INPUT_SIZE, settle_preprocessing
from .weights import load_into

__all__ = [
    "ModelSpec",
    "LoadedModel",
    "resolve_model",
    "describe_module",
    "parse_model_args",
    "DEFAULT_INPUT_SIZE",
    "BUILT_IN",
]


BUILT_IN = "built-in"
"""The ``source`` of a built-in model."""


@dataclass(frozen=True)
class ModelSpec:
    """A model as the command line names it, not built yet: the one value the model options travel as.

    Attributes:
        model: a built-in name, ``MODULE:CALLABLE`` or ``PATH.py:CALLABLE``.
        weights: "random", "imagenet" or a state-dict file.
        model_args: keyword arguments of a callable (JSON text or a mapping).
        output: the key, index or attribute holding the logits (see :func:`select_output`).
        input_size: crop size of the preprocessing (None: the model's own, or 224).
        smooth: how the engine crosses its smooth activations ("refuse", "gradient",
            "rule"; None: the model's own ``smooth_activations``, else "refuse").

    :func:`backpropvis.models.as_loaded` builds it (with the seed of its random weights).
    """

    model: str = "vgg16"
    weights: Union[str, os.PathLike] = "random"
    model_args: Union[str, Mapping[str, Any], None] = None
    output: Union[str, int, None] = None
    input_size: Optional[int] = None
    smooth: Optional[str] = None


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the engine, with everything a report or a database records.

    Attributes:
        module: the model, in eval mode, on the CPU (wrapped by
            :func:`~backpropvis.models.select_output` when ``output`` is set).
        name: the model as given: a built-in name, ``MODULE:CALLABLE`` or
            ``/absolute/path.py:CALLABLE``.
        args: the keyword arguments the callable was called with.
        source: where the code came from: "built-in", ``module NAME`` or
            ``file sha256:...`` (the file's content hash).
        weights: "random", "imagenet" or the weights file's path, as given.
        weights_description: what the weights are, in words.
        fingerprint: ``sha256:...`` of the state dict (see :mod:`.fingerprint`).
        output: the ``--output`` key selecting the logits, or None.
        preprocessing: PIL image -> Tensor[3, S, S].
        preprocessing_description: what ``preprocessing`` does, in words.
        notes: what was done to the model that the user should know (eval mode,
            the default preprocessing), one sentence each.
        input_size: the crop size asked for (None: the model's own, or 224).
        smooth: the smooth mode the engine uses for it and, once
            :func:`~backpropvis.models.as_loaded` has run it, what that touched
            (:class:`~backpropvis.core.smooth_activations.SmoothReport`).
        size_from: where the preprocessing's size came from, in words.
    """

    module: nn.Module
    name: str
    args: Mapping[str, Any]
    source: str
    weights: str
    weights_description: str
    fingerprint: str
    output: Optional[str]
    preprocessing: Callable[[Image.Image], torch.Tensor]
    preprocessing_description: str
    notes: tuple[str, ...] = ()
    input_size: Optional[int] = None
    smooth: SmoothReport = SmoothReport("refuse")
    size_from: str = ""

    @property
    def args_json(self) -> str:
        """``args`` as canonical JSON (sorted keys), as stored in a database."""
        return json.dumps(dict(self.args), sort_keys=True)

    @property
    def smooth_note(self) -> Optional[str]:
        """What the engine does at the model's smooth activations and gates, in one line;
        None for a model with neither under the default mode (the paper's networks)."""
        report = self.smooth
        touched = report.rule_applied or report.passed_through or report.gates
        return report.sentence() if touched or report.mode != "refuse" else None

    @property
    def title(self) -> str:
        """One line naming the model and its weights, for figures and summaries."""
        arguments = f"({self.args_json})" if self.args else ""
        return f"{self.name}{arguments} ({self.weights_description})"


def parse_model_args(text: Union[str, Mapping[str, Any], None]) -> dict[str, Any]:
    """``--model-args``: a JSON object of keyword arguments (a mapping passes as it is).

    Raises:
        ModelError: text that is not a JSON object.
    """
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelError(f"`model_args` is not valid JSON ({error.msg} at character {error.pos}): {text}") from None
    if not isinstance(value, dict):
        raise ModelError(f"`model_args` must be a JSON object such as '{{\"num_classes\": 10}}', not {text}")
    return value


def resolve_model(
    spec: ModelSpec, built_in: Mapping[str, Callable[[str, int], nn.Module]], seed: int = 0
) -> LoadedModel:
    """Build the model ``--model`` names (see the module's docstring).

    Args:
        spec: the model (see :class:`ModelSpec`); built-in models take no ``model_args``;
            ``weights`` "random" is, for built-in models, the paper's seeded init.
        built_in: the built-in models: name -> ``build(weights, seed)``.
        seed: the built-in models' random weights; for a callable, the seed of torch's
            global RNG while it runs (restored afterwards), so that its default
            initialisation is the same in every run.

    Raises:
        ModelError: an unknown name, a module or file that cannot be imported, a
            callable that fails or returns no ``nn.Module`` (or a compiled one), bad
            ``model_args`` or ``input_size``.
        WeightsError: a weights file that is not a state dict or does not fit.
    """
    model, output, input_size = spec.model, spec.output, spec.input_size
    arguments = parse_model_args(spec.model_args)
    weights = os.fspath(spec.weights)
    check_input_size(input_size)
    notes: list[str] = []
    if model in built_in:
        if arguments:
            raise ModelError(f"{model} is a built-in model and takes no `model_args` (given {json.dumps(arguments)})")
        module = built_in[model](weights, seed)
        name, source, weights_description = model, BUILT_IN, str(module.weights_description)
    else:
        name, source, build = _resolve_callable(model, tuple(built_in))
        module = _call(build, name, arguments, seed)
        weights_description = _load_weights(module, name, weights, seed)
        if module.training:
            affected = training_dependent_modules(module)
            module.eval()
            changed = f" (in training mode {first_few(affected, 4)} would change the maps)" if affected else ""
            notes.append("put in eval mode" + changed)
    fingerprint = weights_fingerprint(module)
    preprocessing, described, size_from = settle_preprocessing(module, name, input_size)
    if not callable(getattr(module, "preprocessing", None)):
        notes.append(f"preprocessing: {described}")
    if output is not None:
        module = select_output(module, output)
    return LoadedModel(
        module,
        name,
        arguments,
        source,
        weights,
        weights_description,
        fingerprint,
        None if output is None else str(output),
        preprocessing,
        described,
        tuple(notes),
        input_size,
        SmoothReport(spec.smooth or getattr(module, "smooth_activations", None) or "refuse"),
        size_from,
    )


def _load_weights(module: nn.Module, name: str, weights: str, seed: int) -> str:
    """Load ``weights`` ("random": as built; or a state-dict file) into a callable's model; returns them in words."""
    if weights == "random":
        return f"as built (torch seed {seed})"
    if weights == "imagenet":
        raise WeightsError(
            f"`weights` imagenet is for the built-in models; for {name} pass random (the model as built, "
            "e.g. with `model_args` asking for pretrained weights) or a state-dict file"
        )
    load_into(module, weights)
    return weights


def describe_module(
    module: nn.Module, name: Optional[str] = None, weights: str = "as given", input_size: Optional[int] = None
) -> LoadedModel:
    """A :class:`LoadedModel` for a module built in Python (used as it is: its mode is kept).

    Raises:
        ModelError: ``module`` is not an ``nn.Module``, or is compiled.
    """
    if not isinstance(module, nn.Module):
        raise ModelError(f"a model must be a torch.nn.Module, not {type(module).__name__}")
    check_input_size(input_size)
    refuse_compiled(module, name or type(module).__name__)
    inner = module.model if isinstance(module, SelectOutput) else module
    cls = type(inner)
    preprocessing, described, _ = settle_preprocessing(module, name or cls.__name__, input_size)
    return LoadedModel(
        module,
        name or cls.__name__,
        {},
        f"module {cls.__module__}",
        weights,
        getattr(module, "weights_description", weights),
        weights_fingerprint(inner),
        None if not isinstance(module, SelectOutput) else str(module.key),
        preprocessing,
        described,
        input_size=input_size,
        smooth=SmoothReport(getattr(module, "smooth_activations", None) or "refuse"),
    )


def check_input_size(input_size: Optional[int]) -> None:
    """Refuse a crop size under 8 pixels (None: the model's own)."""
    if input_size is not None and input_size < 8:
        raise ModelError(f"`input_size` must be at least 8 pixels, not {input_size}")


def _resolve_callable(text: str, built_in: tuple[str, ...]) -> tuple[str, str, Callable]:
    """``(name, source, callable)`` for ``MODULE:CALLABLE`` or ``PATH.py:CALLABLE``."""
    location, colon, attribute = text.rpartition(":")
    if not colon or not location or not attribute:
        raise ModelError(
            f"unknown `model` {text!r}: use a built-in name ({', '.join(built_in)}), MODULE:CALLABLE "
            "(e.g. torchvision.models:resnet18) or PATH.py:CALLABLE"
        )
    if location.endswith(".py") or os.sep in location or "/" in location:
        path = Path(location).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"model file {location} " + ("is not a file" if path.exists() else "does not exist"))
        data = path.read_bytes()
        source = f"file {file_fingerprint(data)}"
        with _folder_on_path(path.parent):
            module = _import_file(path, source)
        name = f"{path}:{attribute}"
    else:
        with _folder_on_path(Path.cwd()):  # as `python -m` would: the current folder's modules are importable
            module = _import_module(location)
        name, source = text, f"module {location}"
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelError(f"{location} has no {attribute!r} (for `model` {text})")
        target = getattr(target, part)
    if not callable(target):
        raise ModelError(f"{location}:{attribute} is a {type(target).__name__}, not a callable returning a model")
    return name, source, target


def _where(error: BaseException) -> str:
    """ " (file.py, line N)": the innermost frame of ``error``'s traceback outside backpropvis ("" if none)."""
    ours = str(Path(__file__).resolve().parent.parent)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith(ours)]
    return f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):
            raise ModelError(f"cannot import module {name}: no module named {error.name} (is it installed?)") from None
        raise ModelError(f"importing {name} failed: {_one_line(error)}{_where(error)}") from None
    except Exception as error:  # the user's module raised while importing
        raise ModelError(f"importing {name} failed: {_one_line(error)}{_where(error)}") from None


def _import_file(path: Path, source: str):
    module_name = "backpropvis_user_model_" + source.rsplit(":", 1)[-1][:16]
    if module_name in sys.modules:  # the same file content, already imported in this process
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"{path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ModelError(f"importing {path} failed: {_one_line(error)}{_where(error)}") from None
    return module


@contextlib.contextmanager
def _folder_on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the body (a model file's own imports)."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _call(build: Callable, name: str, arguments: dict[str, Any], seed: int) -> nn.Module:
    """``build(**arguments)`` with torch's global RNG seeded (and restored), checked to be a module."""
    call = f"{name}({', '.join(f'{key}={value!r}' for key, value in arguments.items())})"
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build(**arguments)
    except BackpropvisError:
        raise
    except Exception as error:  # the user's code raised: one line, with where
        raise ModelError(f"{call} raised {_one_line(error)}{_where(error)}") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"{call} returned a {type(module).__name__}, not a torch.nn.Module")
    refuse_compiled(module, call)
    return module.cpu()
