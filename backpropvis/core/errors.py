"""Errors a user can cause, each carrying one line that says what to change.

The CLI prints ``str(error)`` on stderr and exits with status 2 for every
:class:`BackpropvisError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "BackpropvisError",
    "TargetError",
    "UnsupportedActivationError",
    "NoActivationError",
    "WeightsError",
    "ImageError",
    "ModelError",
    "InputError",
    "MethodError",
    "StoreError",
    "OutputError",
    "Interrupted",
    "first_few",
]


def first_few(names: list[str], count: int) -> str:
    """The first ``count`` of ``names`` for a one-line message: "a, b, c and 2 more"."""
    shown = ", ".join(names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


class BackpropvisError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class TargetError(BackpropvisError, ValueError):
    """A target that names no logit, or is shaped unlike the batch."""


class UnsupportedActivationError(BackpropvisError, TypeError):
    """A non-piecewise-linear activation met in strict mode."""


class NoActivationError(BackpropvisError, ValueError):
    """The forward pass met no activation for a rule to modify."""


class WeightsError(BackpropvisError, ValueError):
    """A weights file that is missing, unreadable, or does not fit the model."""


class ImageError(BackpropvisError, ValueError):
    """An image that is missing, unreadable, or not an image."""


class ModelError(BackpropvisError, ValueError):
    """An unknown model name or a model whose output is not a batch of logits."""


class InputError(BackpropvisError, ValueError):
    """Inputs that are not a floating-point batch the model can take."""


class MethodError(BackpropvisError, ValueError):
    """An unknown method (rule) name."""


class StoreError(BackpropvisError, ValueError):
    """A results database that cannot be opened or written, or that holds another run's settings."""


class OutputError(BackpropvisError, OSError):
    """An output folder that cannot be created or written (a file in its way, no permission)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a long job, carrying one line on what was saved and how to go on.

    A :class:`KeyboardInterrupt`, so that code which stops on Ctrl-C still stops; the
    CLI prints ``interrupted: <message>`` and exits with status 130.
    """
