"""A step's result as a typed value: :class:`StepResult`, the base of every step's frozen
dataclass, written to JSON and read back by one generic implementation.

A step declares its result beside itself (``audit/<name>_step.py``): a frozen dataclass
deriving from :class:`StepResult` whose fields are what ``audit.json`` reports of the step,
by the same names, and the arrays its figures are drawn from. A field typed ``np.ndarray``
is an array (kept in ``steps/<name>.npz``); every other field is a JSON value (kept in
``steps/<name>.json`` and written into ``audit.json``): numbers, texts, lists, dicts, None,
or a nested dataclass (:class:`~dataclasses.dataclass`, as an object with its fields).
:meth:`StepResult.from_json` reads both back into the same type, nested dataclasses
included (also inside ``list``, ``tuple``, ``dict`` and ``Optional``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, TypeVar, Union

import numpy as np

__all__ = ["StepResult", "ResultFormatError", "plain"]

R = TypeVar("R", bound="StepResult")


class ResultFormatError(ValueError):
    """Kept numbers that do not fit a result type (another version of the step wrote them)."""


@dataclasses.dataclass(frozen=True)
class StepResult:
    """The base of a step's result type (see the module's docstring); it has no fields of its own."""

    def to_json(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The result as JSON-ready numbers (field name -> value; what ``audit.json`` reports)
        and arrays (field name -> numpy array, the fields typed ``np.ndarray``)."""
        arrays_named = _array_fields(type(self))
        numbers: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in arrays_named:
                arrays[field.name] = np.asarray(value)
            else:
                numbers[field.name] = plain(value)
        return numbers, arrays

    @classmethod
    def from_json(cls: type[R], numbers: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> R:
        """The result :meth:`to_json` gave ``numbers`` and ``arrays`` for.

        Raises:
            ResultFormatError: a field missing, or one this type does not have (the files
                were written by another version of the step).
        """
        hints, arrays_named = _hints(cls), _array_fields(cls)
        expected_numbers = {field.name for field in dataclasses.fields(cls)} - arrays_named
        for kind, expected, present in (
            ("numbers", expected_numbers, set(numbers)),
            ("arrays", arrays_named, set(arrays)),
        ):
            if expected != present:
                differ = sorted(expected ^ present)
                raise ResultFormatError(f"its {kind} are not those of {cls.__name__} ({', '.join(differ)} differ)")
        values = {name: np.asarray(arrays[name]) for name in arrays_named}
        values.update({name: _typed(hints[name], numbers[name]) for name in expected_numbers})
        return cls(**values)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _array_fields(cls: type) -> frozenset[str]:
    hints = _hints(cls)
    return frozenset(field.name for field in dataclasses.fields(cls) if hints[field.name] is np.ndarray)


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: dataclasses as dicts of their fields, tuples as lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def _typed(hint: Any, value: Any) -> Any:
    """``value`` read from JSON as the type ``hint`` says: dataclasses rebuilt, lists made tuples where declared."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if origin in (Union, types.UnionType):
        present = [argument for argument in arguments if argument is not type(None)]
        return _typed(present[0], value) if len(present) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        inner = _hints(hint)
        return hint(**{field.name: _typed(inner[field.name], value[field.name]) for field in dataclasses.fields(hint)})
    if origin in (list, tuple) and arguments:
        return origin(_typed(arguments[0], item) for item in value)
    if origin is dict and len(arguments) == 2:
        return {key: _typed(arguments[1], item) for key, item in value.items()}
    return value
