"""A finished audit step kept on disk, so that rerunning the same audit does not redo it.

A step's numbers go to ``DIR/steps/<step>.json`` with the identity of what it measured
(model and weights fingerprint, images and their content hashes, settings), and the
arrays its figures are drawn from to ``DIR/steps/<step>.npz``. Both are written
atomically, the arrays first: a step whose ``.json`` exists is whole. A later run with
the same identity reads the step back instead of computing it; any difference
(another model, other images, other settings) computes it again.

An audit step's result is typed (:class:`~backpropvis.audit.results.StepResult`):
:func:`save_result` writes it into those two files and :func:`load_result` reads it back
into the same type. :class:`StepData` (numbers and arrays, untyped) is the same files for
the sanity protocols' units of work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, TypeVar

import numpy as np
import torch

from ..core.files import read_arrays, write_arrays, write_json
from .results import ResultFormatError, StepResult

__all__ = ["STEPS_FOLDER", "Kept", "StepData", "load_result", "load_step", "save_result", "save_step"]

R = TypeVar("R", bound=StepResult)

STEPS_FOLDER = "steps"
"""Where finished steps are kept, in the audit's folder."""


@dataclass(frozen=True)
class StepData:
    """A step's results.

    Attributes:
        numbers: JSON-ready numbers and texts (what ``audit.json`` reports).
        arrays: name -> numpy array, what the step's figures are drawn from.
        reused: read back from an earlier run rather than computed now.
    """

    numbers: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]
    reused: bool = False

    def tensor(self, name: str) -> torch.Tensor:
        """The array ``name`` as a CPU tensor."""
        return torch.from_numpy(np.array(self.arrays[name]))


def _paths(folder: Path, step: str) -> tuple[Path, Path]:
    return folder / STEPS_FOLDER / f"{step}.json", folder / STEPS_FOLDER / f"{step}.npz"


def load_step(folder: Path, step: str, identity: Mapping[str, Any]) -> Optional[StepData]:
    """The step kept in ``folder`` when it was measured with the same ``identity``, else None
    (also for unreadable or partial files, which are then computed again)."""
    numbers_path, arrays_path = _paths(folder, step)
    try:
        kept = json.loads(numbers_path.read_text(encoding="utf-8"))
        if kept.get("identity") != json.loads(json.dumps(identity)):
            return None
        arrays = read_arrays(arrays_path)
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return StepData(kept["numbers"], arrays, reused=True)


def save_step(
    folder: Path, step: str, identity: Mapping[str, Any], numbers: Mapping[str, Any], arrays: Mapping[str, Any]
) -> StepData:
    """Keep a finished step (arrays: tensors or numpy arrays); returns it as :class:`StepData`."""
    numbers_path, arrays_path = _paths(folder, step)
    plain = {
        name: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        for name, value in arrays.items()
    }
    write_arrays(plain, arrays_path)
    write_json({"identity": dict(identity), "numbers": dict(numbers)}, numbers_path)
    return StepData(json.loads(json.dumps(dict(numbers))), plain)


@dataclass(frozen=True)
class Kept:
    """What :func:`load_result` found.

    Attributes:
        result: the kept result, of the type asked for (None: compute the step again).
        unusable: why a kept step of the same identity cannot be read back (None: there was
            none, or it was measured with something else), for the audit's notes.
    """

    result: Optional[StepResult] = None
    unusable: Optional[str] = None


def load_result(folder: Path, step: str, identity: Mapping[str, Any], result_type: type[StepResult]) -> Kept:
    """The step kept in ``folder`` with the same ``identity``, read back as ``result_type``."""
    data = load_step(folder, step, identity)
    if data is None:
        return Kept()
    try:
        return Kept(result_type.from_json(data.numbers, data.arrays))
    except (ResultFormatError, KeyError, TypeError, ValueError) as error:
        return Kept(unusable=f"{STEPS_FOLDER}/{step}.json was written by another version ({error}): measured again")


def save_result(folder: Path, step: str, identity: Mapping[str, Any], result: R) -> R:
    """Keep a finished step's typed result (:meth:`~backpropvis.audit.results.StepResult.to_json`); returns it."""
    save_step(folder, step, identity, *result.to_json())
    return result
