"""The engine's public API: one forward pass, then one backward pass per (rule, target chunk).

:func:`attribute_many` runs the model once under :class:`~.recording.RecordedForward`,
plans the backward passes (:func:`~.planning.plan_backward`) and runs them, setting the
:class:`~.ruled.RuleSlot` before each. Everything of the call (the record, the graph,
the plan) lives in this module's frames only and is freed by reference counting when
the call returns or raises; the returned :class:`Attributions` holds maps, detached
logits and target indices, nothing with a graph.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from ..errors import InputError, ModelError, NoActivationError, first_few
from ..module_checks import refuse_compiled, training_dependent_modules
from ..rules import PAPER_METHODS, Rule, resolve_rule, resolve_rules
from ..targets import Target, resolve_targets
from .planning import DEFAULT_MAX_BATCH, BackwardPlan, plan_backward
from .precision import Arithmetic, Precision, PrecisionLike
from .recording import ForwardRecord, RecordedForward
from .ruled import RuleSlot

__all__ = [
    "Attributions",
    "Explainer",
    "Saliency",
    "DeconvNet",
    "GuidedBackprop",
    "TrainingModeWarning",
    "attribute",
    "attribute_many",
]

Method = Union[str, Rule]
Model = Callable[[torch.Tensor], torch.Tensor]


class TrainingModeWarning(UserWarning):
    """A model in training mode: its maps change between calls and its BatchNorm statistics move."""


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
    model: Model,
    inputs: torch.Tensor,
    targets: Union[Target, Sequence[Target]],
    methods: Union[Method, Sequence[Method]] = PAPER_METHODS,
    *,
    generator: Optional[torch.Generator] = None,
    strict: bool = True,
    max_batch: Optional[int] = None,
    precision: PrecisionLike = Precision.DEFAULT,
) -> Attributions:
    """Every method's map for every target, from ONE forward pass.

    Args:
        model: any callable taking [B, *shape] and returning logits [B, K]; an
            ``nn.Module`` is used as it is (train/eval mode, hooks and parameters are
            left untouched; a module in training mode gets a :class:`TrainingModeWarning`).
        inputs: [B, *shape] floating point, on the model's device.
        targets: T entries (see :func:`backpropvis.targets.resolve_targets`), or a single one.
        methods: rule names ("saliency", "deconvnet", "gbp", "linear") or
            :class:`~backpropvis.rules.Rule` values, or a single one.
        generator: CPU generator for ``"random"`` targets (default: seeded with 0).
        strict: refuse non-piecewise-linear activations (GELU, SiLU, sigmoid, ...)
            with an error naming the function and module; with ``False`` they keep
            their true gradient and are listed in ``passed_through``.
        max_batch: at most this many maps (targets x batch) per backward pass below the
            graph cut (:mod:`~backpropvis.engine.planning`). Default: 1 target per pass.
        precision: a :class:`~backpropvis.engine.precision.Precision` or its name: "default"
            (PyTorch's global flags), "float32" (exact IEEE float32 whatever the flags), "tf32"
            (CUDA TF32) or "bfloat16" (autocast); maps are returned in the inputs' dtype.

    Returns:
        :class:`Attributions`: method name -> Tensor[T, B, *inputs.shape[1:]].
    """
    rules = resolve_rules(_as_list(methods, (str, Rule)))
    target_list = _as_list(targets, (numbers.Integral, str, torch.Tensor))
    _check_inputs(inputs)
    _check_model(model)
    record = ForwardRecord(strict, type(model).__name__)
    slot = RuleSlot(rules[0])
    # Autograd is needed even when the caller runs under torch.inference_mode().
    with torch.inference_mode(False), Arithmetic(precision, inputs.device.type):
        x = (inputs.clone() if inputs.is_inference() else inputs.detach()).requires_grad_(True)
        with torch.enable_grad(), RecordedForward(model, record, slot):
            logits = model(x)
        _check_forward(logits, len(x), record, rules)
        target_index = resolve_targets(target_list, logits, generator)
        plan = plan_backward(
            record, logits, x, len(target_index), max_batch=max_batch or DEFAULT_MAX_BATCH, batchable=_batchable(model)
        )
        maps = {rule.name: _maps_of(rule, slot, plan, logits, x, target_index) for rule in rules}
        return Attributions(maps, logits.detach(), target_index, record.passed_through)


def _maps_of(
    rule: Rule, slot: RuleSlot, plan: BackwardPlan, logits: torch.Tensor, x: torch.Tensor, target_index: torch.Tensor
) -> torch.Tensor:
    """One rule's maps [T, *x.shape]: the backward passes of ``plan`` with ``rule`` in the slot.

    Each pass writes its maps straight into the result, so no chunk of maps is held twice."""
    slot.rule = rule
    num_targets = len(target_index)
    maps = torch.empty((num_targets, *x.shape), dtype=x.dtype, device=x.device)
    chunk = plan.targets_above_cut  # without a cut, plan_backward makes it targets_per_pass
    for start in range(0, num_targets, chunk):
        seeds = _one_hot(target_index[start : start + chunk], logits)
        out = maps[start : start + len(seeds)]
        if plan.cut is None:
            _vector_jacobian(logits, x, seeds, plan.targets_per_pass, slot, out)
        else:
            at_cut = torch.empty((len(seeds), *plan.cut.shape), dtype=plan.cut.dtype, device=x.device)
            _vector_jacobian(logits, plan.cut, seeds, len(seeds), slot, at_cut)
            _vector_jacobian(plan.cut, x, at_cut, plan.targets_per_pass, slot, out)
            del at_cut
    return maps


def _one_hot(target_index: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """[T, B] logit indices -> [T, B, K] one-hot seeds for the backward passes."""
    seeds = torch.zeros((len(target_index), *logits.shape), dtype=logits.dtype, device=logits.device)
    return seeds.scatter_(2, target_index.unsqueeze(-1), 1.0)


def _vector_jacobian(
    output: torch.Tensor, inputs: torch.Tensor, grads: torch.Tensor, per_pass: int, slot: RuleSlot, out: torch.Tensor
) -> None:
    """grads [T, *output.shape] -> out [T, *inputs.shape], ``per_pass`` targets per backward
    pass (batched with ``is_grads_batched`` when more than one); the graph is retained."""
    for start in range(0, len(grads), per_pass):
        chunk = grads[start : start + per_pass]
        slot.batched = len(chunk) > 1
        if slot.batched:
            (grad,) = torch.autograd.grad(
                output, inputs, chunk, retain_graph=True, is_grads_batched=True, materialize_grads=True
            )
        else:
            (grad,) = torch.autograd.grad(output, inputs, chunk[0], retain_graph=True, materialize_grads=True)
            grad = grad.unsqueeze(0)
        out[start : start + len(chunk)] = grad
        del grad


def attribute(
    model: Model,
    inputs: torch.Tensor,
    target: Target = "max",
    method: Method = "gbp",
    *,
    generator: Optional[torch.Generator] = None,
    strict: bool = True,
    precision: PrecisionLike = Precision.DEFAULT,
) -> torch.Tensor:
    """One method's map for one target: Tensor shaped like ``inputs``, raw and signed.

    ``target`` is an int, a LongTensor[B] or ``"max"`` (also ``"random"``); ``method``
    is "saliency", "deconvnet", "gbp" or a :class:`~backpropvis.rules.Rule`.
    """
    result = attribute_many(model, inputs, [target], [method], generator=generator, strict=strict, precision=precision)
    return next(iter(result.values()))[0]


class Explainer:
    """Captum's call shape: ``Explainer(model, "gbp").attribute(x, target=281)``."""

    def __init__(
        self, model: Model, method: Method, *, strict: bool = True, precision: PrecisionLike = Precision.DEFAULT
    ):
        self.model = model
        self.rule = resolve_rule(method)
        self.strict = strict
        self.precision = precision

    def attribute(self, inputs: torch.Tensor, target: Target = "max") -> torch.Tensor:
        """The map of ``target`` for ``inputs``: Tensor shaped like ``inputs``."""
        return attribute(self.model, inputs, target, self.rule, strict=self.strict, precision=self.precision)


class Saliency(Explainer):
    """The true gradient of the target logit (Simonyan et al. 2013)."""

    def __init__(self, model: Model, *, strict: bool = True, precision: PrecisionLike = Precision.DEFAULT):
        super().__init__(model, "saliency", strict=strict, precision=precision)


class DeconvNet(Explainer):
    """DeconvNet (Zeiler & Fergus 2014): h = max(., 0), g' = 1 at every activation."""

    def __init__(self, model: Model, *, strict: bool = True, precision: PrecisionLike = Precision.DEFAULT):
        super().__init__(model, "deconvnet", strict=strict, precision=precision)


class GuidedBackprop(Explainer):
    """Guided Backpropagation (Springenberg et al. 2014): h = max(., 0), g' = forward mask."""

    def __init__(self, model: Model, *, strict: bool = True, precision: PrecisionLike = Precision.DEFAULT):
        super().__init__(model, "gbp", strict=strict, precision=precision)


def _batchable(model: Model) -> bool:
    if not isinstance(model, nn.Module):
        return True
    return all(getattr(module, "supports_batched_backward", True) for module in model.modules())


def _as_list(value: Any, single_types: tuple) -> list:
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


def _check_model(model: Model) -> None:
    """Refuse a compiled model; warn about one in training mode."""
    refuse_compiled(model)
    if isinstance(model, nn.Module):
        training = training_dependent_modules(model)
        if training:
            warnings.warn(
                f"{type(model).__name__} is in training mode, where {first_few(training, 4)} compute differently: "
                "maps change between calls and BatchNorm running statistics are updated; call model.eval() first",
                TrainingModeWarning,
                stacklevel=3,
            )


def _check_forward(logits: Any, batch: int, record: ForwardRecord, rules: Sequence[Rule]) -> None:
    """Check the forward pass's output and what it met; warn about what was let through."""
    model_name = record.model_name
    if not isinstance(logits, torch.Tensor):
        raise ModelError(
            f"{model_name} returned {_describe_output(logits)}, not a Tensor of logits; select the logits with "
            "backpropvis.models.select_output(model, KEY) (the model option `output`)"
        )
    if logits.dim() != 2 or logits.shape[0] != batch:
        raise ModelError(
            f"{model_name} must return logits shaped [batch, classes] = [{batch}, K], got {list(logits.shape)}"
        )
    if record.activation_count == 0 and not all(rule.is_true_gradient for rule in rules):
        raise NoActivationError(
            f"the forward pass of {model_name} met no ReLU-like activation, so "
            f"{', '.join(rule.name for rule in rules if not rule.is_true_gradient)} would equal the plain gradient"
        )
    if record.passed_through:
        warnings.warn("let through with their true gradient: " + "; ".join(record.passed_through), stacklevel=3)


def _describe_output(output: Any) -> str:
    """A model output that is not a Tensor, in words: "a tuple of 2", "a dict with keys 'logits', 'aux'"."""
    if isinstance(output, dict):
        return "a dict with keys " + ", ".join(repr(key) for key in list(output)[:6])
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {len(output)}"
    if hasattr(output, "logits"):
        return f"a {type(output).__name__} with .logits"
    return f"a {type(output).__name__}"
