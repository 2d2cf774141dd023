"""The field's sanity protocols (Adebayo et al. 2018, Kindermans et al. 2017, Sixt et al.
2020), each a declared :class:`~.protocol.Protocol` (how to add one: see
:mod:`backpropvis.sanity.protocol`).

``PROTOCOLS`` maps names to protocols, in order; :func:`find_protocol` picks one by name.
"""

from __future__ import annotations

from types import ModuleType

from ..core.errors import BackpropvisError
from . import adebayo, kindermans, sixt
from .protocol import Protocol, SanityResult, SanityRun, StepResult, Summary

__all__ = ["PROTOCOLS", "Protocol", "SanityResult", "SanityRun", "StepResult", "Summary", "find_protocol"]

_MODULES: tuple[ModuleType, ...] = (adebayo, kindermans, sixt)
"""The registry: one module per protocol, each declaring ``PROTOCOL``. Add a line here."""


def _collect(modules: tuple[ModuleType, ...]) -> dict[str, Protocol]:
    found: dict[str, Protocol] = {}
    for module in modules:
        protocol = getattr(module, "PROTOCOL", None)
        if not isinstance(protocol, Protocol):
            raise TypeError(f"{module.__name__} must declare PROTOCOL, a Protocol")
        if protocol.name in found:
            raise ValueError(f"two protocols are named {protocol.name!r} ({module.__name__})")
        found[protocol.name] = protocol
    return found


PROTOCOLS: dict[str, Protocol] = _collect(_MODULES)
"""The protocols by name, in registry order."""


def find_protocol(name: str) -> Protocol:
    """The protocol named ``name``.

    Raises:
        BackpropvisError: for a name the registry does not know.
    """
    if name not in PROTOCOLS:
        raise BackpropvisError(f"unknown `protocol` {name!r}; choose from {', '.join(PROTOCOLS) or 'none'}")
    return PROTOCOLS[name]
