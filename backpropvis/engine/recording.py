"""Part 2 of the engine: what one forward pass records, alive only for the call.

During the forward pass a :class:`torch.overrides.TorchFunctionMode` sees every torch
function the model calls, whatever its spelling (an ``nn.ReLU`` module, inplace or not,
reused or not; ``F.relu``; ``torch.relu_``; ``x.relu()``), and replaces each
piecewise-linear activation by a :class:`~backpropvis.engine.ruled.RuledActivation`
(and, in the smooth mode "rule", each elementwise smooth activation by a
:class:`~backpropvis.engine.ruled.RuledSmoothActivation`; see :mod:`..smooth_activations`).
What the backward passes need to be planned is kept in a :class:`ForwardRecord`:

- the activations' outputs, by weak reference (an output nothing else keeps, e.g. one
  only read by a padding copy, is not kept alive by the record);
- the autograd nodes of convolutions, by identity (the planner keeps them out of the
  part of the graph it batches over targets);
- the smooth activations and gates met (and what was done there), and which module is running;
- the outputs of the layers that unit targets name (:class:`~backpropvis.core.targets.Unit`),
  kept strongly (their graph seeds the units' backward passes). The model goes on with a
  copy of such an output, so an in-place operation after the layer (VGG's
  ``ReLU(inplace=True)`` after a convolution) cannot change what the unit's map is taken of.

Max-pooling is replaced too (:mod:`.pooling`): the same gradient, with its switches
recomputed in each backward pass instead of kept as int64 indices for all of them.
A convolution of a channels_last input gets its weight in that layout once
(:mod:`.layout`), instead of a copy in every backward pass.

Nothing in the graph refers to the record, and the record lives in the frame of the
call, so it and everything it holds are freed by reference counting when the call ends.
Nothing is registered on the model. The running module (for messages) is tracked by two
process-global module hooks installed for the call; they act only in the context that
installed them (a :class:`contextvars.ContextVar` names the forward pass running in this
thread or task), so two threads calling the engine at once each see their own modules
only. The hooks are removed when the forward pass ends.
"""

from __future__ import annotations

import weakref
from contextvars import ContextVar, Token
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from ..core.activations import PIECEWISE_LINEAR, function_name
from ..core.errors import UnsupportedActivationError
from ..core.module_checks import hidden_kind
from ..core.smooth_activations import GATES, SMOOTH_ACTIVATIONS, SmoothReport
from .inputs import UnbatchedImage
from .layout import weight_in_input_layout
from .pooling import MAX_POOLS, RecomputedMaxPool2d
from .ruled import RuledActivation, RuledSmoothActivation, RuleSlot

__all__ = ["ForwardRecord", "RecordedForward", "CONVOLUTIONS"]

_RUNNING: ContextVar[Optional[RecordedForward]] = ContextVar("backpropvis_recorded_forward", default=None)
"""The forward pass under the engine in this context (thread or task), if any."""

CONVOLUTIONS: frozenset = frozenset(
    function
    for function in (
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose1d,
        F.conv_transpose2d,
        F.conv_transpose3d,
        getattr(torch, "convolution", None),
    )
    if function is not None
)
"""Torch functions whose backward pass does not batch over targets (it loops over them)."""


class ForwardRecord:
    """What one forward pass under the engine saw.

    Attributes:
        smooth: the smooth mode (:data:`~backpropvis.core.smooth_activations.SMOOTH_MODES`):
            what to do at elementwise smooth activations.
        model_name: how messages name the model when no module is running.
        activation_count: how many activations were replaced by ruled ones.
        rule_applied, passed_through, gates: "function in module 'path'" for each smooth
            activation crossed with the rule, each function or module let through with
            its true gradient, and each gate (see :class:`SmoothReport`).
    """

    def __init__(self, smooth: str, model_name: str, layers: Optional[dict[Any, str]] = None) -> None:
        self.smooth = smooth
        self.model_name = model_name
        self.activation_count = 0
        self.rule_applied: list[str] = []
        self.passed_through: list[str] = []
        self.gates: list[str] = []
        self.unbatched_shape: Optional[torch.Size] = None  # the shape of a call's input that may be one image
        self.layers: dict[Any, str] = layers or {}  # module -> name, for unit targets
        self.layer_outputs: dict[str, list[Any]] = {}
        self._outputs: list[weakref.ref] = []
        self._convolution_nodes: set[Any] = set()  # autograd nodes hash by identity
        self._module_stack: list[str] = []

    def add_activation_output(self, output: torch.Tensor) -> None:
        self.activation_count += 1
        self._outputs.append(weakref.ref(output))

    def add_convolution_output(self, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            self._convolution_nodes.add(output.grad_fn)

    def activation_outputs(self) -> list[torch.Tensor]:
        """The ruled activations' outputs still alive, in the order they ran."""
        alive = (reference() for reference in self._outputs)
        return [output for output in alive if output is not None]

    def add_layer_output(self, module: Any, output: Any) -> Any:
        """Keep a unit target's layer output; returns what the model goes on with (a copy)."""
        name = self.layers.get(module)
        if name is None:
            return None
        self.layer_outputs.setdefault(name, []).append(output)
        return output.clone() if isinstance(output, torch.Tensor) else None

    def is_convolution(self, node: Any) -> bool:
        """Whether an autograd node is one of the forward pass's convolutions (by identity)."""
        return node in self._convolution_nodes

    def where(self) -> str:
        """The path of the module running now (the model's name at the top level)."""
        return self._module_stack[-1] if self._module_stack else self.model_name

    def report(self) -> SmoothReport:
        """The mode and what it touched, for the call's result."""
        return SmoothReport(self.smooth, tuple(self.rule_applied), tuple(self.passed_through), tuple(self.gates))

    def met_smooth_activation(self, function: Callable) -> bool:
        """An elementwise smooth activation (GELU, SiLU, ...) is about to run: whether to
        apply the rule there (mode "rule"); with "gradient" it is recorded as let
        through, with "refuse" refused."""
        described = f"{function_name(function)} in module '{self.where()}'"
        if self.smooth == "rule":
            _add_once(self.rule_applied, described)
            return True
        if self.smooth == "refuse":
            raise UnsupportedActivationError(
                f"{described} is a smooth activation, not piecewise-linear, so the rules of Eq. 1-2 do not define "
                "its backward pass; set `smooth` to rule (the method's rule with g' = f') or to gradient (its true "
                "gradient)"
            )
        _add_once(self.passed_through, described)
        return False

    def met_gate(self, function: Callable) -> None:
        """A gate (sigmoid, softmax, ...) ran: it keeps its true gradient in every mode."""
        _add_once(self.gates, f"{function_name(function)} in module '{self.where()}'")

    def met_hidden_module(self, what: str, path: str) -> None:
        """A module whose activations the interceptor cannot see (TorchScript, compiled)."""
        described = f"{what} '{path}'"
        if self.smooth != "gradient":
            raise UnsupportedActivationError(
                f"{described} hides its activations from the engine, so no rule can be applied inside it; pass the "
                "Python module, or set `smooth` to gradient to let it through with its true gradient"
            )
        _add_once(self.passed_through, described)

    def enter_module(self, path: str) -> None:
        self._module_stack.append(path)

    def leave_module(self) -> None:
        if self._module_stack:
            self._module_stack.pop()


class _Interceptor(TorchFunctionMode):
    """Routes every activation call through :class:`RuledActivation` and records it,
    every max-pooling through :class:`RecomputedMaxPool2d`, and records convolutions."""

    def __init__(self, record: ForwardRecord, slot: RuleSlot) -> None:
        super().__init__()
        self.record, self.slot = record, slot

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        entry = PIECEWISE_LINEAR.get(func)
        if entry is not None:
            kind, parse = entry
            y, params, inplace = parse(*args, **kwargs)
            out = RuledActivation.apply(y, kind, params, inplace, self.slot)
            self.record.add_activation_output(out)
            return out
        parse_smooth = SMOOTH_ACTIVATIONS.get(func)
        if parse_smooth is not None and self.record.met_smooth_activation(func):
            call = parse_smooth(*args, **kwargs)
            out = RuledSmoothActivation.apply(call.input, call, self.slot)
            self.record.add_activation_output(out)
            return out
        if func in GATES:
            self.record.met_gate(func)
        unbatched = self.record.unbatched_shape
        if unbatched is not None and func is F.conv2d and args and getattr(args[0], "shape", None) == unbatched:
            raise UnbatchedImage(f"{self.record.where()} reads the 3-D input as one unbatched image")
        pool = MAX_POOLS.get(func)
        if pool is not None and (pool_args := pool(*args, **kwargs)) is not None:
            return RecomputedMaxPool2d.apply(*pool_args)
        if func in CONVOLUTIONS:
            args, kwargs = weight_in_input_layout(args, kwargs)
            out = func(*args, **kwargs)
            self.record.add_convolution_output(out)
            return out
        return func(*args, **kwargs)


def _add_once(entries: list[str], entry: str) -> None:
    if entry not in entries:
        entries.append(entry)


class RecordedForward:
    """``with RecordedForward(model, record, slot): logits = model(x)``: intercept the
    activations of one forward pass and track the running module's path.

    A class rather than a generator context manager, so that an exception passing
    through it leaves no frame of ours holding the forward pass's tensors.
    """

    def __init__(self, model: Callable, record: ForwardRecord, slot: RuleSlot) -> None:
        self.names: dict[torch.nn.Module, str] = {}
        if isinstance(model, torch.nn.Module):
            for name, module in model.named_modules(remove_duplicate=False):
                self.names.setdefault(module, name or record.model_name)
        self.record, self.slot = record, slot
        self.hooks: list[Any] = []
        self.interceptor: Optional[_Interceptor] = None
        self.token: Optional[Token] = None

    def _enter(self, module: torch.nn.Module, args: Any) -> None:
        if _RUNNING.get() is not self:  # another thread's (or task's) forward pass
            return
        path = self.names.get(module, type(module).__name__)
        hidden = hidden_kind(module)
        if hidden is not None:
            self.record.met_hidden_module(hidden, path)
        self.record.enter_module(path)

    def _leave(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        if _RUNNING.get() is not self:
            return None
        self.record.leave_module()
        return self.record.add_layer_output(module, output)

    def __enter__(self) -> RecordedForward:
        self.token = _RUNNING.set(self)
        self.hooks = [
            register_module_forward_pre_hook(self._enter),
            register_module_forward_hook(self._leave, always_call=True),
        ]
        self.interceptor = _Interceptor(self.record, self.slot)
        self.interceptor.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.interceptor is not None:
                self.interceptor.__exit__(None, None, None)
        finally:
            for hook in self.hooks:
                hook.remove()
            if self.token is not None:
                _RUNNING.reset(self.token)
            self.hooks, self.interceptor, self.names, self.token = [], None, {}, None
