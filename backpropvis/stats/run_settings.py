"""The settings that decide a class-distance run's results (its identity in the database).

A database refuses a run with other settings, naming each difference
(:meth:`RunSettings.differences`) by the parameter's name in backquotes, which the
command line says as its flag.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Optional, Sequence

__all__ = ["RunSettings", "show_setting"]


@dataclass(frozen=True)
class RunSettings:
    """The settings that decide a run's results; a database refuses any other ones.

    ``images`` is the images folder's absolute path (or "samples"); ``methods`` keeps
    the user's order; ``model_args`` is canonical JSON; ``model_source`` says where the
    model's code came from ("built-in", ``module NAME``, ``file sha256:...``);
    ``weights_fingerprint`` is the SHA-256 of its state dict; ``precision`` is the
    engine's arithmetic, the name of a :class:`~backpropvis.engine.Precision` ("default": PyTorch's global flags);
    ``smooth`` the engine's mode at smooth activations (stored in the run's settings JSON,
    with what it touched, as ``smooth_activations``).
    """

    model: str
    weights: str
    methods: tuple[str, ...]
    pairs: str
    seed: int
    input_size: Optional[int]
    images: str
    rank: int = 0
    world_size: int = 1
    model_args: str = "{}"
    model_source: str = "built-in"
    weights_fingerprint: str = ""
    output: Optional[str] = None
    precision: str = "default"
    smooth: str = "refuse"

    IN_WORDS: ClassVar[dict[str, str]] = {
        "model_source": "the model's code (its source)",
        "weights_fingerprint": "the weights (SHA-256 of the state dict)",
        "rank": "rank",
        "world_size": "world size (torchrun processes)",
    }
    """How a difference names the settings that are no parameter of a run; the others are
    named as the parameter, in backquotes (``cli.py`` turns those into flags)."""

    @classmethod
    def label(cls, name: str) -> str:
        """How a message names the setting ``name``: in words, or as the parameter in backquotes."""
        return cls.IN_WORDS.get(name, f"`{name}`")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every setting's name, as messages list them: the model's first, then the run's."""
        first = ("model", "model_args", "model_source", "weights", "weights_fingerprint", "output")
        return first + tuple(setting.name for setting in fields(cls) if setting.name not in first)

    def differences(self, other: RunSettings, ignore: Sequence[str] = ()) -> list[str]:
        """'`model` cnn3 there, vgg16 here' for each setting that differs."""
        found = []
        for name in self.names():
            mine, theirs = getattr(self, name), getattr(other, name)
            if name not in ignore and mine != theirs:
                found.append(f"{self.label(name)} {show_setting(theirs)} there, {show_setting(mine)} here")
        return found


def show_setting(value) -> str:
    """A setting's value as a user reads it: methods joined by commas, hashes cut to 12 hex digits."""
    if isinstance(value, tuple):
        return ",".join(value)
    text = str(value)
    return text if "sha256:" not in text else text[: text.index("sha256:") + 7 + 12] + "..."
