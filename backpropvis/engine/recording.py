"""Part 2 of the engine: what one forward pass records, alive only for the call.

During the forward pass a :class:`torch.overrides.TorchFunctionMode` sees every torch
function the model calls, whatever its spelling (an ``nn.ReLU`` module, inplace or not,
reused or not; ``F.relu``; ``torch.relu_``; ``x.relu()``), and replaces each
piecewise-linear activation by a :class:`~backpropvis.engine.ruled.RuledActivation`.
What the backward passes need to be planned is kept in a :class:`ForwardRecord`:

- the activations' outputs, by weak reference (an output nothing else keeps, e.g. one
  only read by a padding copy, is not kept alive by the record);
- the autograd nodes of convolutions, by identity (the planner keeps them out of the
  part of the graph it batches over targets);
- the non-piecewise-linear functions let through, and which module is running.

Max-pooling is replaced too (:mod:`.pooling`): the same gradient, with its switches
recomputed in each backward pass instead of kept as int64 indices for all of them.
A convolution of a channels_last input gets its weight in that layout once
(:mod:`.layout`), instead of a copy in every backward pass.

Nothing in the graph refers to the record, and the record lives in the frame of the
call, so it and everything it holds are freed by reference counting when the call ends.
Nothing is registered on the model: the only hooks are two process-global ones that
track the running module (for error messages), removed when the forward pass ends.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from ..activations import OTHER_NONLINEARITIES, PIECEWISE_LINEAR, function_name
from ..errors import UnsupportedActivationError
from ..module_checks import hidden_kind
from .layout import weight_in_input_layout
from .pooling import MAX_POOLS, RecomputedMaxPool2d
from .ruled import RuledActivation, RuleSlot

__all__ = ["ForwardRecord", "RecordedForward", "CONVOLUTIONS"]

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
        strict: refuse non-piecewise-linear functions (else record them in ``passed_through``).
        model_name: how messages name the model when no module is running.
        activation_count: how many activations were replaced by ruled ones.
        passed_through: "function in module 'path'" for each function let through.
    """

    def __init__(self, strict: bool, model_name: str) -> None:
        self.strict = strict
        self.model_name = model_name
        self.activation_count = 0
        self.passed_through: list[str] = []
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

    def is_convolution(self, node: Any) -> bool:
        """Whether an autograd node is one of the forward pass's convolutions (by identity)."""
        return node in self._convolution_nodes

    def where(self) -> str:
        """The path of the module running now (the model's name at the top level)."""
        return self._module_stack[-1] if self._module_stack else self.model_name

    def met_nonlinearity(self, function: Callable) -> None:
        """A non-piecewise-linear function (GELU, sigmoid, ...) ran in the forward pass."""
        self._refuse_or_record(
            f"{function_name(function)} in module '{self.where()}'",
            "is not piecewise-linear, so the rules of Eq. 1-2 do not define its backward pass",
        )

    def met_hidden_module(self, what: str, path: str) -> None:
        """A module whose activations the interceptor cannot see (TorchScript, compiled)."""
        self._refuse_or_record(
            f"{what} '{path}'",
            "hides its activations from the engine, so no rule can be applied inside it; pass the Python module",
        )

    def _refuse_or_record(self, described: str, why: str) -> None:
        if self.strict:
            raise UnsupportedActivationError(
                f"{described} {why}; pass strict=False to let it through with its true gradient"
            )
        if described not in self.passed_through:
            self.passed_through.append(described)

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
        if func in OTHER_NONLINEARITIES:
            self.record.met_nonlinearity(func)
        pool = MAX_POOLS.get(func)
        if pool is not None and (pool_args := pool(*args, **kwargs)) is not None:
            return RecomputedMaxPool2d.apply(*pool_args)
        if func in CONVOLUTIONS:
            args, kwargs = weight_in_input_layout(args, kwargs)
            out = func(*args, **kwargs)
            self.record.add_convolution_output(out)
            return out
        return func(*args, **kwargs)


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

    def _enter(self, module: torch.nn.Module, args: Any) -> None:
        path = self.names.get(module, type(module).__name__)
        hidden = hidden_kind(module)
        if hidden is not None:
            self.record.met_hidden_module(hidden, path)
        self.record.enter_module(path)

    def _leave(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.record.leave_module()

    def __enter__(self) -> RecordedForward:
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
            self.hooks, self.interceptor, self.names = [], None, {}
