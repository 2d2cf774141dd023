"""The rule engine: one forward pass, then one backward pass per (rule, target chunk).

During the forward pass a :class:`torch.overrides.TorchFunctionMode` sees every
torch function the model calls, whatever its spelling (an ``nn.ReLU`` module, inplace
or not, reused or not; ``F.relu``; ``torch.relu_``; ``x.relu()``), and replaces each
piecewise-linear activation by an autograd function whose backward applies the
current :class:`~backpropvis.rules.Rule` (Eq. 1). Every other layer (convolutions,
dense layers, max-pooling with its switches, batch norm, ...) keeps its true gradient.

The rule is read when the backward pass runs, not when the forward pass runs, so one
forward pass serves every method and every target. Nothing is registered on the
model: the only hooks are process-global ones that track which module is running
(for error messages), and they are removed when the call returns.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from .activations import OTHER_NONLINEARITIES, PIECEWISE_LINEAR, PiecewiseLinear, function_name
from .errors import InputError, ModelError, NoActivationError, UnsupportedActivationError
from .rules import PAPER_METHODS, SALIENCY, Rule, resolve_rule, resolve_rules
from .targets import Target, resolve_targets

__all__ = [
    "Attributions",
    "Explainer",
    "Saliency",
    "DeconvNet",
    "GuidedBackprop",
    "attribute",
    "attribute_many",
    "resolve_targets",
]

Method = Union[str, Rule]
PRECISIONS = ("float32", "tf32", "bfloat16")

DEFAULT_MAX_BATCH = 1
"""Maps (targets x batch) per backward pass through the bulk of the network, unless
``max_batch`` says otherwise.

The backward passes run in two stages, split at an activation output that every
path from the input to the logits crosses (a graph cut). From the logits down to the
cut, targets are batched through ``torch.autograd.grad(..., is_grads_batched=True)``:
that top of the network holds the big dense layers (VGG-16's 25088 x 4096 fc1), whose
weights are then read once for all targets, and only small activations, so the
batch costs little memory. From the cut down to the input, ``max_batch`` maps go per
pass: with one target per pass the peak memory stays that of one plain forward plus
one backward, whatever the number of targets. The cut is the earliest of the last
activations whose outputs, over all batched targets, fit in :data:`_TOP_STAGE_BYTES`. A module with ``supports_batched_backward = False`` (a layer drawing its
weights on the fly) makes every pass one target.
"""

_TOP_STAGE_BYTES = 64 << 20
"""Bytes of gradient at the last activation's output held per batch of targets."""


class _Session:
    """What one forward pass shares with the backward passes that follow it."""

    def __init__(self, strict: bool, model_name: str) -> None:
        self.strict = strict
        self.model_name = model_name
        self.rule: Rule = SALIENCY
        self.activations_seen = 0
        self.passed_through: list[str] = []
        self.module_stack: list[str] = []
        self.activation_outputs: list[torch.Tensor] = []

    def where(self) -> str:
        return self.module_stack[-1] if self.module_stack else self.model_name

    def met_nonlinearity(self, function: Callable) -> None:
        """A non-piecewise-linear function (GELU, sigmoid, ...) ran in the forward pass."""
        self._refuse_or_record(
            f"{function_name(function)} in module '{self.where()}'",
            "is not piecewise-linear, so the rules of Eq. 1-2 do not define its backward pass",
        )

    def met_script(self, where: str) -> None:
        """A TorchScript module: its activations run in TorchScript, unseen by the interceptor."""
        self._refuse_or_record(
            f"TorchScript module '{where}'",
            "hides its activations from the engine, so no rule can be applied inside it; pass the Python module",
        )

    def _refuse_or_record(self, described: str, why: str) -> None:
        if self.strict:
            raise UnsupportedActivationError(
                f"{described} {why}; pass strict=False to let it through with its true gradient"
            )
        if described not in self.passed_through:
            self.passed_through.append(described)


class _RuledActivation(torch.autograd.Function):
    """A piecewise-linear activation whose backward pass applies the session's rule."""

    @staticmethod
    def forward(ctx, y, kind: PiecewiseLinear, params: tuple, inplace: bool, session: _Session):
        out, saved = kind.forward(y, params, inplace)
        if inplace:
            ctx.mark_dirty(y)
        ctx.save_for_backward(saved)
        ctx.kind, ctx.params, ctx.session = kind, params, session
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (saved,) = ctx.saved_tensors
        kind, params = ctx.kind, ctx.params
        grad_input = ctx.session.rule.backward(grad_output, lambda grad: kind.times_derivative(grad, saved, params))
        return grad_input, None, None, None, None


class _Interceptor(TorchFunctionMode):
    """Routes every activation call of the forward pass through :class:`_RuledActivation`."""

    def __init__(self, session: _Session) -> None:
        super().__init__()
        self.session = session

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        entry = PIECEWISE_LINEAR.get(func)
        if entry is not None:
            kind, parse = entry
            y, params, inplace = parse(*args, **kwargs)
            self.session.activations_seen += 1
            out = _RuledActivation.apply(y, kind, params, inplace, self.session)
            self.session.activation_outputs.append(out)
            return out
        if func in OTHER_NONLINEARITIES:
            self.session.met_nonlinearity(func)
        return func(*args, **kwargs)


@contextlib.contextmanager
def _intercepted(model: Callable, session: _Session) -> Iterator[None]:
    """Intercept activations and track the running module's path, for one forward pass."""
    names: dict[torch.nn.Module, str] = {}
    if isinstance(model, torch.nn.Module):
        for name, module in model.named_modules(remove_duplicate=False):
            names.setdefault(module, name or session.model_name)

    def enter(module, args):
        path = names.get(module, type(module).__name__)
        if isinstance(module, torch.jit.ScriptModule):
            session.met_script(path)
        session.module_stack.append(path)

    def leave(module, args, output):
        if session.module_stack:
            session.module_stack.pop()

    pre_hook = register_module_forward_pre_hook(enter)
    post_hook = register_module_forward_hook(leave, always_call=True)
    try:
        with _Interceptor(session):
            yield
    finally:
        pre_hook.remove()
        post_hook.remove()


@contextlib.contextmanager
def _precision(precision: str, device_type: str) -> Iterator[None]:
    """Arithmetic for the forward and backward passes.

    "float32": exact IEEE float32 (TF32 explicitly off on CUDA, whatever the global
    flags say); "tf32": CUDA matrix products and convolutions in TF32; "bfloat16":
    autocast to bfloat16 (maps are still returned in the inputs' dtype).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32
    try:
        if precision == "bfloat16":
            with torch.autocast(device_type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class Attributions(dict):
    """Maps by method name, each Tensor[T, B, *input.shape[1:]], raw and signed.

    Besides the maps it carries what the shared forward pass computed:

    Attributes:
        logits: [B, K] the model's output (detached).
        targets: LongTensor[T, B] the logit index behind every map.
        passed_through: non-piecewise-linear functions let through with their true
            gradient (only when ``strict=False``), as "function in module 'path'".
    """

    def __init__(self, maps: dict, logits: torch.Tensor, targets: torch.Tensor, passed_through: Sequence[str]):
        super().__init__(maps)
        self.logits = logits
        self.targets = targets
        self.passed_through = tuple(passed_through)


def attribute_many(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: Union[Target, Sequence[Target]],
    methods: Union[Method, Sequence[Method]] = PAPER_METHODS,
    *,
    generator: Optional[torch.Generator] = None,
    strict: bool = True,
    max_batch: Optional[int] = None,
    precision: str = "float32",
) -> Attributions:
    """Every method's map for every target, from ONE forward pass.

    Args:
        model: any callable taking [B, *shape] and returning logits [B, K]; an
            ``nn.Module`` is used as it is (train/eval mode, hooks and parameters are
            left untouched).
        inputs: [B, *shape] floating point, on the model's device.
        targets: T entries (see :func:`resolve_targets`), or a single one.
        methods: rule names ("saliency", "deconvnet", "gbp", "linear") or
            :class:`~backpropvis.rules.Rule` values, or a single one.
        generator: CPU generator for ``"random"`` targets (default: seeded with 0).
        strict: refuse non-piecewise-linear activations (GELU, SiLU, sigmoid, ...)
            with an error naming the function and module; with ``False`` they keep
            their true gradient and are listed in ``passed_through``.
        max_batch: at most this many maps (targets x batch) per backward pass; more
            than the batch size batches targets with ``is_grads_batched``. Default:
            :data:`DEFAULT_MAX_BATCH`.
        precision: "float32" (default, exact), "tf32" (CUDA TF32 matrix products) or
            "bfloat16" (autocast); maps are returned in the inputs' dtype.

    Returns:
        :class:`Attributions`: method name -> Tensor[T, B, *inputs.shape[1:]].
    """
    rules = resolve_rules(_as_list(methods, (str, Rule)))
    target_list = _as_list(targets, (numbers.Integral, str, torch.Tensor))
    _check_inputs(inputs)

    model_name = type(model).__name__
    session = _Session(strict, model_name)
    # Autograd is needed even when the caller runs under torch.inference_mode().
    with torch.inference_mode(False), _precision(precision, inputs.device.type):
        x = (inputs.clone() if inputs.is_inference() else inputs.detach()).requires_grad_(True)
        with torch.enable_grad(), _intercepted(model, session):
            logits = model(x)
        return _backward_all(model, x, logits, target_list, rules, session, generator, max_batch)


def _backward_all(model, x, logits, target_list, rules, session, generator, max_batch) -> Attributions:
    """Check the forward pass, resolve targets, and run the chunked backward passes."""
    model_name = session.model_name
    _check_logits(logits, len(x), model_name)
    if session.activations_seen == 0 and not all(rule.is_true_gradient for rule in rules):
        raise NoActivationError(
            f"the forward pass of {model_name} met no ReLU-like activation, so "
            f"{', '.join(rule.name for rule in rules if not rule.is_true_gradient)} would equal the plain gradient"
        )
    if session.passed_through:
        warnings.warn("let through with their true gradient: " + "; ".join(session.passed_through), stacklevel=3)

    target_index = resolve_targets(target_list, logits, generator)
    num_targets, batch = target_index.shape
    batchable = _batchable(model)
    targets_per_pass = max(1, (max_batch or DEFAULT_MAX_BATCH) // batch) if batchable else 1
    seeds = torch.zeros((num_targets, *logits.shape), dtype=logits.dtype, device=logits.device)
    seeds.scatter_(2, target_index.unsqueeze(-1), 1.0)
    cut, top_chunk = (None, targets_per_pass)
    if batchable:
        cut, top_chunk = _choose_cut(session.activation_outputs, logits, x, num_targets, targets_per_pass)

    # Every pass retains the graph: the peak is reached by the first pass anyway, and the
    # graph is freed with ``logits`` when this returns.
    maps = {}
    for rule in rules:
        session.rule = rule
        rule_maps = torch.empty((num_targets, *x.shape), dtype=x.dtype, device=x.device)
        for start in range(0, num_targets, top_chunk):
            stop = min(start + top_chunk, num_targets)
            if cut is None:
                rule_maps[start:stop] = _vector_jacobian(logits, x, seeds[start:stop], targets_per_pass)
            else:
                at_cut = _vector_jacobian(logits, cut, seeds[start:stop], stop - start)
                rule_maps[start:stop] = _vector_jacobian(cut, x, at_cut, targets_per_pass)
        maps[rule.name] = rule_maps
    return Attributions(maps, logits.detach(), target_index, session.passed_through)


def attribute(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    target: Target = "max",
    method: Method = "gbp",
    *,
    generator: Optional[torch.Generator] = None,
    strict: bool = True,
) -> torch.Tensor:
    """One method's map for one target: Tensor shaped like ``inputs``, raw and signed.

    ``target`` is an int, a LongTensor[B] or ``"max"`` (also ``"random"``); ``method``
    is "saliency", "deconvnet", "gbp" or a :class:`~backpropvis.rules.Rule`.
    """
    result = attribute_many(model, inputs, [target], [method], generator=generator, strict=strict)
    return next(iter(result.values()))[0]


class Explainer:
    """Captum's call shape: ``Explainer(model, "gbp").attribute(x, target=281)``."""

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor], method: Method, *, strict: bool = True):
        self.model = model
        self.rule = resolve_rule(method)
        self.strict = strict

    def attribute(self, inputs: torch.Tensor, target: Target = "max") -> torch.Tensor:
        """The map of ``target`` for ``inputs``: Tensor shaped like ``inputs``."""
        return attribute(self.model, inputs, target, self.rule, strict=self.strict)


class Saliency(Explainer):
    """The true gradient of the target logit (Simonyan et al. 2013)."""

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor], *, strict: bool = True):
        super().__init__(model, "saliency", strict=strict)


class DeconvNet(Explainer):
    """DeconvNet (Zeiler & Fergus 2014): h = max(., 0), g' = 1 at every activation."""

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor], *, strict: bool = True):
        super().__init__(model, "deconvnet", strict=strict)


class GuidedBackprop(Explainer):
    """Guided Backpropagation (Springenberg et al. 2014): h = max(., 0), g' = forward mask."""

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor], *, strict: bool = True):
        super().__init__(model, "gbp", strict=strict)


def _vector_jacobian(output: torch.Tensor, inputs: torch.Tensor, grads: torch.Tensor, per_pass: int) -> torch.Tensor:
    """grads [T, *output.shape] -> [T, *inputs.shape], ``per_pass`` targets per backward
    pass (batched with ``is_grads_batched`` when more than one); the graph is retained."""
    results = []
    for start in range(0, len(grads), per_pass):
        chunk = grads[start : start + per_pass]
        if len(chunk) == 1:
            (grad,) = torch.autograd.grad(output, inputs, chunk[0], retain_graph=True, materialize_grads=True)
            results.append(grad.unsqueeze(0))
        else:
            (grad,) = torch.autograd.grad(
                output, inputs, chunk, retain_graph=True, is_grads_batched=True, materialize_grads=True
            )
            results.append(grad)
    return results[0] if len(results) == 1 else torch.cat(results)


def _choose_cut(
    outputs: Sequence[torch.Tensor], logits: torch.Tensor, x: torch.Tensor, num_targets: int, targets_per_pass: int
) -> tuple[Optional[torch.Tensor], int]:
    """The activation output to split the backward pass at, and how many targets to
    batch above it; ``(None, targets_per_pass)`` when no split helps.

    The cut is the earliest activation output, scanning back from the logits, above
    which the graph holds no convolution (batching a convolution's backward over
    targets only loops over them, at a cost in memory) and whose activations fit the
    byte budget for a few targets at once.
    """
    batched = max(2, min(num_targets, 8))
    chosen, largest, chosen_largest = None, 0, 0
    for output in reversed(outputs):
        largest = max(largest, output.numel() * output.element_size())
        region = _region_above(logits, output, x)
        if largest * batched > _TOP_STAGE_BYTES or region is None or any("Convolution" in name for name in region):
            break
        chosen, chosen_largest = output, largest
    if chosen is None:
        return None, targets_per_pass
    return chosen, max(1, _TOP_STAGE_BYTES // chosen_largest)


def _region_above(logits: torch.Tensor, cut: torch.Tensor, x: torch.Tensor) -> Optional[set[str]]:
    """The autograd node types between ``logits`` and the activation output ``cut``, or
    None unless every path from ``x`` to ``logits`` crosses ``cut`` (a graph cut, so
    gradients can be taken in two stages through it)."""
    if cut.grad_fn is None or type(cut.grad_fn).__name__ != "_RuledActivationBackward":
        return None
    target, seen, stack, reached, names = cut.grad_fn, set(), [logits.grad_fn], False, set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node is target:
            reached = True
            continue
        if getattr(node, "variable", None) is x:
            return None
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names if reached else None


def _batchable(model: Callable) -> bool:
    if not isinstance(model, torch.nn.Module):
        return True
    return all(getattr(module, "supports_batched_backward", True) for module in model.modules())


def _as_list(value, single_types: tuple) -> list:
    if isinstance(value, single_types) and not (isinstance(value, torch.Tensor) and value.dim() > 1):
        return [value]
    return list(value)


def _check_inputs(inputs: torch.Tensor) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"inputs must be a Tensor, not {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise InputError(f"inputs must be floating point, not {inputs.dtype}")
    if inputs.dim() < 2:
        raise InputError(f"inputs must have a batch dimension, got shape {list(inputs.shape)}")


def _check_logits(logits, batch: int, model_name: str) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch:
        shape = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"{model_name} must return logits shaped [batch, classes] = [{batch}, K], got {shape}")
