"""Resuming a protocol: every finished unit of work (a step, a seed of a redraw) is kept
on disk as soon as it is done, and a rerun with the same identity reads it back.

The files are the audit's (:mod:`backpropvis.audit.saved`): ``DIR/steps/<key>.json``
(numbers and the identity of what was measured) and ``DIR/steps/<key>.npz`` (arrays).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from ..audit.saved import StepData, load_step, save_step

__all__ = ["StepStore", "Unit"]

Unit = Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]]
"""Computes one unit of work: ``() -> (numbers, arrays)`` (JSON-ready numbers; arrays as
tensors or numpy arrays)."""


class StepStore:
    """Keeps finished units of work of one run in ``folder`` (None: keeps nothing).

    Args:
        folder: the run's output folder (units go to ``folder/steps``), or None.
        identity: what makes two runs the same (model fingerprint, images, settings,
            seed...): a unit kept with another identity is computed again.
    """

    def __init__(self, folder: Optional[Path], identity: Mapping[str, Any]):
        self.folder = folder
        self.identity = dict(identity)
        self.reused: list[str] = []

    def run(self, key: str, compute: Unit) -> StepData:
        """The unit ``key``: read back when kept with this identity, else computed and kept.

        ``key`` is a file name stem (letters, digits, ``-_.``)."""
        if self.folder is not None:
            kept = load_step(self.folder, key, self.identity)
            if kept is not None:
                self.reused.append(key)
                return kept
        numbers, arrays = compute()
        if self.folder is None:
            return StepData(dict(numbers), {name: _numpy(value) for name, value in arrays.items()})
        return save_step(self.folder, key, self.identity, numbers, arrays)


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
