"""The engine's public API: one forward pass, then one backward pass per (rule, target chunk).

:func:`attribute_many` runs the model once under :class:`~.recording.RecordedForward`,
plans the backward passes (:func:`~.planning.plan_backward`) and runs them, setting the
:class:`~.ruled.RuleSlot` before each. Everything of the call (the record, the graph,
the plan) lives in this module's frames only and is freed by reference counting when
the call returns or raises; the returned :class:`Attributions` holds maps, detached
logits and target indices, nothing with a graph.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from ..core.errors import ModelError, NoActivationError, first_few
from ..core.module_checks import refuse_compiled, training_dependent_modules
from ..core.rules import PAPER_METHODS, Rule, resolve_rule, resolve_rules
from ..core.smooth_activations import resolve_smooth
from ..core.targets import Generators, Target, Unit
from .attributions import Attributions
from .inputs import CallInputs, Inputs, UnbatchedImage, prepare_inputs, shaped_maps
from .observers import EngineCall, tell
from .planning import DEFAULT_MAX_BATCH, BackwardPlan, plan_backward
from .precision import Arithmetic, Precision, PrecisionLike
from .recording import ForwardRecord, RecordedForward
from .ruled import RuleSlot
from .unit_targets import SplitTargets, UnitGroup, layer_modules, resolve_all, split_targets, target_table, unit_seeds

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
Model = Callable[..., torch.Tensor]


class TrainingModeWarning(UserWarning):
    """A model in training mode: its maps change between calls and its BatchNorm statistics move."""


def attribute_many(
    model: Model,
    inputs: Inputs,
    targets: Union[Target, Sequence[Target]],
    methods: Union[Method, Sequence[Method]] = PAPER_METHODS,
    *,
    additional_forward_args: Any = None,
    generator: Optional[Generators] = None,
    smooth: Optional[str] = None,
    strict: Optional[bool] = None,
    max_batch: Optional[int] = None,
    precision: PrecisionLike = Precision.DEFAULT,
) -> Attributions:
    """Every method's map for every target, from ONE forward pass.

    Args:
        model: any callable taking [B, *shape] (then ``additional_forward_args``) and
            returning logits [B, K]; an
            ``nn.Module`` is used as it is (train/eval mode, hooks and parameters are
            left untouched; a module in training mode gets a :class:`TrainingModeWarning`).
        inputs: [B, *shape] floating point, on the model's device; or a tuple of such
            tensors (the model's several inputs, one batch size); or one image [C, H, W]
            without its batch dimension (taken as a batch of one: :mod:`.inputs`).
        additional_forward_args: passed to the model after the inputs, not
            differentiated (a tuple is spread, anything else passed as one argument).
        targets: T entries (see :func:`backpropvis.core.targets.resolve_targets`), or a single one; a
            :class:`~backpropvis.core.targets.Unit` (a channel or neuron of a named layer) is served by the
            same forward pass, batched per layer (:mod:`~backpropvis.engine.unit_targets`).
        methods: rule names ("saliency", "deconvnet", "gbp", "linear") or
            :class:`~backpropvis.core.rules.Rule` values, or a single one.
        generator: CPU generator for ``"random"`` targets, or one per sample (default:
            seeded with 0); logit targets draw first, then units, in their order.
        smooth: what to do at elementwise smooth activations (GELU, SiLU, Mish, ...;
            :mod:`~backpropvis.core.smooth_activations`): ``"refuse"`` (the default: an error
            naming the function and module), ``"gradient"`` (their true gradient, listed
            in ``passed_through``) or ``"rule"`` (the method's rule with g' = f',
            ``T = h(R) * f'(x)``, Eq. 1). Gates (sigmoid, softmax, tanh, ...) keep their
            true gradient in every mode and are listed in ``smooth.gates``. Not given:
            the model's own ``model.smooth_activations`` if it declares one (the
            commands' ``--smooth-activations`` sets it), else "refuse".
        strict: the older spelling: ``True`` is ``smooth="refuse"``, ``False`` is
            ``smooth="gradient"``; one that contradicts ``smooth`` is an error.
        max_batch: at most this many maps (targets x batch) per backward pass below the
            graph cut (:mod:`~backpropvis.engine.planning`). Default: 1 target per pass.
        precision: a :class:`~backpropvis.engine.precision.Precision` or its name: "default"
            (PyTorch's global flags), "float32" (exact IEEE float32 whatever the flags), "tf32"
            (CUDA TF32) or "bfloat16" (autocast); maps are returned in the inputs' dtype.

    Returns:
        :class:`Attributions`: method name -> Tensor[T, B, *inputs.shape[1:]]; for a
        tuple of inputs a tuple of such tensors, one per input; for one unbatched image
        Tensor[T, *inputs.shape] (``logits`` and ``targets`` keep the batch of one).
    """
    rules = resolve_rules(_as_list(methods, (str, Rule)))
    split = split_targets(_as_list(targets, (numbers.Integral, str, torch.Tensor, Unit)))
    given = prepare_inputs(inputs, additional_forward_args)
    mode = resolve_smooth(smooth, strict, getattr(model, "smooth_activations", None))
    _check_model(model)
    result: Optional[Attributions] = None
    try:
        result = _attribute_given(model, given, split, rules, mode, generator, max_batch, precision)
    except UnbatchedImage:
        given = given.as_batch_of_one()  # one image [C, H, W] (inputs.py): its partial forward pass is freed
    if result is None:  # with the exception, before the second pass
        result = _attribute_given(model, given, split, rules, mode, generator, max_batch, precision)
    done = result  # the call's own frames are gone: an observer's work does not hold its graph
    tell(lambda: EngineCall(model, given, tuple(rules), mode, max_batch, Precision.parse(precision), done))
    return result


def _attribute_given(
    model: Model,
    given: CallInputs,
    split: SplitTargets,
    rules: list[Rule],
    smooth: str,
    generator: Optional[Generators],
    max_batch: Optional[int],
    precision: PrecisionLike,
) -> Attributions:
    """:func:`attribute_many` on checked inputs: one forward pass, then the backward passes."""
    record = ForwardRecord(smooth, type(model).__name__, layer_modules(model, [unit.layer for unit in split.units]))
    if given.may_be_unbatched:
        record.unbatched_shape = given.tensors[0].shape
    slot = RuleSlot(rules[0])
    # Autograd is needed even when the caller runs under torch.inference_mode().
    with torch.inference_mode(False), Arithmetic(precision, given.tensors[0].device.type):
        leaves = given.leaves()
        with torch.enable_grad(), RecordedForward(model, record, slot):
            logits = model(*leaves, *given.extra)
        _check_forward(logits, given.batch, record, rules)
        logit_index, groups = resolve_all(split, logits, record.layer_outputs, generator)
        plan = plan_backward(
            record,
            logits,
            leaves,
            len(logit_index) or 1,
            max_batch=max_batch or DEFAULT_MAX_BATCH,
            batchable=_batchable(model),
        )
        maps = {
            rule.name: shaped_maps(_maps_of(rule, slot, plan, logits, leaves, logit_index, groups), given)
            for rule in rules
        }
        target_index, units = target_table(split, logit_index, groups)
        return Attributions(maps, logits.detach(), target_index, record.report(), units)


def _maps_of(
    rule: Rule,
    slot: RuleSlot,
    plan: BackwardPlan,
    logits: torch.Tensor,
    leaves: tuple[torch.Tensor, ...],
    logit_index: torch.Tensor,
    groups: Sequence[UnitGroup],
) -> tuple[torch.Tensor, ...]:
    """One rule's maps, [T, *x.shape] for each leaf x: the backward passes of ``plan`` for
    the logit targets (``logit_index`` [T_logits, B]) and of each layer's units, with
    ``rule`` in the slot. Each pass writes its maps straight into the result, so no chunk
    of maps is held twice."""
    slot.rule = rule
    num_maps = len(logit_index) + sum(len(group.rows) for group in groups)
    maps = tuple(torch.empty((num_maps, *x.shape), dtype=x.dtype, device=x.device) for x in leaves)
    unit_rows = {row for group in groups for row in group.rows}
    rows = [row for row in range(num_maps) if row not in unit_rows]
    chunk = plan.targets_above_cut  # without a cut, plan_backward makes it targets_per_pass
    for start in range(0, len(logit_index), chunk):
        seeds = _one_hot(logit_index[start : start + chunk], logits)
        with _rows_of(maps, rows[start : start + len(seeds)]) as out:
            if plan.cut is None:
                _vector_jacobian(logits, leaves, seeds, plan.targets_per_pass, slot, out)
            else:
                at_cut = torch.empty((len(seeds), *plan.cut.shape), dtype=plan.cut.dtype, device=plan.cut.device)
                _vector_jacobian(logits, (plan.cut,), seeds, len(seeds), slot, (at_cut,))
                _vector_jacobian(plan.cut, leaves, at_cut, plan.targets_per_pass, slot, out)
                del at_cut
    for group in groups:  # a unit's pass starts at its layer, below any cut: one stage down to the input
        for start in range(0, len(group.rows), plan.targets_per_pass):
            seeds = unit_seeds(group.units[start : start + plan.targets_per_pass], group.output)
            with _rows_of(maps, group.rows[start : start + len(seeds)]) as out:
                _vector_jacobian(group.output, leaves, seeds, plan.targets_per_pass, slot, out)
    return maps


@contextlib.contextmanager
def _rows_of(maps: tuple[torch.Tensor, ...], rows: Sequence[int]) -> Iterator[tuple[torch.Tensor, ...]]:
    """Where a pass writes its maps: views of each leaf's ``maps`` at ``rows`` when they are
    consecutive (written in place), else buffers copied into those rows afterwards."""
    first = rows[0]
    if list(rows) == list(range(first, first + len(rows))):
        yield tuple(whole[first : first + len(rows)] for whole in maps)
        return
    buffers = tuple(
        torch.empty((len(rows), *whole.shape[1:]), dtype=whole.dtype, device=whole.device) for whole in maps
    )
    yield buffers
    for whole, buffer in zip(maps, buffers):
        whole[list(rows)] = buffer


def _one_hot(target_index: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """[T, B] logit indices -> [T, B, K] one-hot seeds for the backward passes."""
    seeds = torch.zeros((len(target_index), *logits.shape), dtype=logits.dtype, device=logits.device)
    return seeds.scatter_(2, target_index.unsqueeze(-1), 1.0)


def _vector_jacobian(
    output: torch.Tensor,
    inputs: tuple[torch.Tensor, ...],
    grads: torch.Tensor,
    per_pass: int,
    slot: RuleSlot,
    out: tuple[torch.Tensor, ...],
) -> None:
    """grads [T, *output.shape] -> out[i] [T, *x.shape] for each x of ``inputs``, ``per_pass``
    targets per backward pass (batched with ``is_grads_batched`` when more than one); the
    graph is retained."""
    for start in range(0, len(grads), per_pass):
        chunk = grads[start : start + per_pass]
        slot.batched = len(chunk) > 1
        if slot.batched:
            grad = torch.autograd.grad(
                output, inputs, chunk, retain_graph=True, is_grads_batched=True, materialize_grads=True
            )
        else:
            grad = torch.autograd.grad(output, inputs, chunk[0], retain_graph=True, materialize_grads=True)
            grad = tuple(part.unsqueeze(0) for part in grad)
        for whole, part in zip(out, grad):
            whole[start : start + len(chunk)] = part
        del grad


def attribute(
    model: Model,
    inputs: Inputs,
    target: Target = "max",
    method: Method = "gbp",
    **options: Any,
) -> Union[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One method's map for one target: Tensor shaped like ``inputs`` (a tuple of them for
    a tuple of inputs), raw and signed.

    ``target`` is an int, a LongTensor[B], ``"max"`` (also ``"random"``) or a
    :class:`~backpropvis.core.targets.Unit`; ``method`` is "saliency", "deconvnet", "gbp" or a
    :class:`~backpropvis.core.rules.Rule`; ``options``
    are :func:`attribute_many`'s keywords (``smooth``, ``strict``, ``precision``,
    ``generator``, ...).
    """
    result = next(iter(attribute_many(model, inputs, [target], [method], **options).values()))
    return tuple(maps[0] for maps in result) if isinstance(result, tuple) else result[0]


class Explainer:
    """Captum's call shape: ``Explainer(model, "gbp", smooth="rule").attribute(x, target=281)``;
    ``options`` are :func:`attribute_many`'s keywords, used for every call."""

    def __init__(self, model: Model, method: Method, **options: Any):
        self.model = model
        self.rule = resolve_rule(method)
        resolve_smooth(options.get("smooth"), options.get("strict"))  # a bad setting fails here, not later
        self.options = options

    def attribute(
        self, inputs: Inputs, target: Target = "max", additional_forward_args: Any = None
    ) -> Union[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The map of ``target`` for ``inputs``: shaped like ``inputs`` (a tuple for a tuple)."""
        options = dict(self.options, additional_forward_args=additional_forward_args)
        return attribute(self.model, inputs, target, self.rule, **options)


class Saliency(Explainer):
    """The true gradient of the target logit (Simonyan et al. 2013)."""

    def __init__(self, model: Model, **options: Any):
        super().__init__(model, "saliency", **options)


class DeconvNet(Explainer):
    """DeconvNet (Zeiler & Fergus 2014): h = max(., 0), g' = 1 at every activation."""

    def __init__(self, model: Model, **options: Any):
        super().__init__(model, "deconvnet", **options)


class GuidedBackprop(Explainer):
    """Guided Backprop (Springenberg et al. 2014): h = max(., 0), g' = forward mask."""

    def __init__(self, model: Model, **options: Any):
        super().__init__(model, "gbp", **options)


def _batchable(model: Model) -> bool:
    if not isinstance(model, nn.Module):
        return True
    return all(getattr(module, "supports_batched_backward", True) for module in model.modules())


def _as_list(value: Any, single_types: tuple) -> list:
    if isinstance(value, single_types) and not (isinstance(value, torch.Tensor) and value.dim() > 1):
        return [value]
    return list(value)


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
        hint = "; `smooth` rule applies the methods' rules at its smooth activations" if record.passed_through else ""
        raise NoActivationError(
            f"the forward pass of {model_name} met no ReLU-like activation, so "
            f"{', '.join(rule.name for rule in rules if not rule.is_true_gradient)} would equal the plain gradient"
            + hint
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
