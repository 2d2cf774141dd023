"""Watching the engine's calls: who wants to see each :func:`~.attribution.attribute_many` call.

A command that stores a precision receipt (:mod:`.receipt`) does not own every engine
call its work makes: ``reproduce``'s experiments, the sanity protocols and the units view
call the engine in many places with their own inputs. Instead of threading a receipt
through each, the command runs its work under :func:`watching`, and every engine call
made in that context (this thread or task only: a :class:`contextvars.ContextVar`, like
the engine's recording) is shown to the observer as an :class:`EngineCall` once its maps
are computed. An observer that calls the engine itself (the receipt's float32 pass) is
not shown its own calls.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

from ..core.rules import Rule
from .attributions import Attributions
from .inputs import CallInputs
from .precision import Precision

__all__ = ["EngineCall", "Observer", "watching", "tell"]


@dataclass(frozen=True)
class EngineCall:
    """One finished call of the engine, as an observer sees it.

    Attributes:
        model: the model called.
        inputs: the call's inputs (tensors [B, ...] and extra forward arguments).
        rules: the methods, in the call's order.
        smooth: the smooth mode the call used.
        max_batch: the call's ``max_batch`` (None: the default).
        precision: the call's arithmetic.
        result: the call's :class:`~.attribution.Attributions` (maps, targets, units).
        memo: what observers computed from this call, for the others watching it (the
            receipt's float32 maps); gone with the call.
    """

    model: Any
    inputs: CallInputs
    rules: Sequence[Rule]
    smooth: str
    max_batch: Optional[int]
    precision: Precision
    result: Attributions
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


Observer = Callable[[EngineCall], None]

_OBSERVERS: contextvars.ContextVar[tuple[Observer, ...]] = contextvars.ContextVar(
    "backpropvis_engine_observers", default=()
)


@contextlib.contextmanager
def watching(observer: Observer) -> Iterator[Observer]:
    """Show ``observer`` every engine call made inside the ``with`` block (this context only)."""
    token = _OBSERVERS.set(_OBSERVERS.get() + (observer,))
    try:
        yield observer
    finally:
        _OBSERVERS.reset(token)


def tell(make_call: Callable[[], EngineCall]) -> None:
    """Show the call ``make_call()`` builds to every observer of this context (built only if any
    is watching); the observers' own engine calls are not shown to them."""
    observers = _OBSERVERS.get()
    if not observers:
        return
    call = make_call()
    token = _OBSERVERS.set(())
    try:
        for observer in observers:
            observer(call)
    finally:
        _OBSERVERS.reset(token)
