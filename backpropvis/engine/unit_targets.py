"""Unit targets in the engine: which layers to record, and the units' backward passes.

A :class:`~backpropvis.core.targets.Unit` is a target like a logit: the call's ONE forward pass
records the output of every layer a unit names (:mod:`.recording`), the unit is resolved
against it (:func:`~backpropvis.core.targets.resolve_unit`), and its map is the backward pass
seeded with a one-hot at the unit, from the layer's output down to the input, under the
method's rule (Eq. 1). The units of one layer are batched like logits, ``per_pass`` per
backward pass (``is_grads_batched``); each layer is one group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ..core.errors import TargetError, first_few
from ..core.targets import Generators, ResolvedUnit, Target, Unit, resolve_targets, resolve_unit

__all__ = [
    "SplitTargets",
    "split_targets",
    "layer_modules",
    "layer_output",
    "full_layer_name",
    "UnitGroup",
    "resolve_unit_groups",
    "resolve_all",
    "target_table",
    "unit_seeds",
]


@dataclass(frozen=True)
class SplitTargets:
    """A call's targets split by kind, each with its row in the maps [T, ...].

    Attributes:
        logit_rows, logits: the rows and specifications of the logit targets.
        unit_rows, units: the rows and specifications of the unit targets.
    """

    logit_rows: list[int]
    logits: list[Target]
    unit_rows: list[int]
    units: list[Unit]

    @property
    def count(self) -> int:
        return len(self.logit_rows) + len(self.unit_rows)


def split_targets(targets: Sequence[Target]) -> SplitTargets:
    """Split the targets into logit targets and :class:`Unit` targets, keeping their rows."""
    if not targets:
        raise TargetError("no targets given")
    logit_rows = [row for row, target in enumerate(targets) if not isinstance(target, Unit)]
    unit_rows = [row for row, target in enumerate(targets) if isinstance(target, Unit)]
    return SplitTargets(
        logit_rows,
        [targets[row] for row in logit_rows],
        unit_rows,
        [targets[row] for row in unit_rows],  # type: ignore[misc]
    )


def layer_modules(model: Callable, layers: Sequence[str]) -> dict[Any, str]:
    """Module -> name for every layer named in ``layers``.

    Raises:
        TargetError: a model that is not an ``nn.Module``, or a name it has no module of
            (the message lists a few valid ones, those nearest the name first).
    """
    if not layers:
        return {}
    if not isinstance(model, nn.Module):
        raise TargetError(f"unit targets need an nn.Module (its layers are named), not {type(model).__name__}")
    modules = dict(model.named_modules(remove_duplicate=False))
    chosen: dict[Any, str] = {}
    for layer in layers:
        module = modules.get(full_layer_name(model, layer)) if layer else None
        if module is None:
            names = [name for name in modules if name]
            raise TargetError(
                f"{type(model).__name__} has no layer named '{layer}'; "
                f"its layers include {first_few(_near(names, layer), 6)}"
            )
        chosen[module] = layer
    return chosen


def full_layer_name(model: nn.Module, layer: str) -> str:
    """``layer`` as ``model.named_modules()`` spells it: given as it is, or without the prefix
    of a wrapper that selects the logits (``layer_prefix``, e.g. ``"model."``)."""
    names = {name for name, _ in model.named_modules(remove_duplicate=False)}
    prefixed = getattr(model, "layer_prefix", "") + layer
    return layer if layer in names or prefixed not in names else prefixed


def layer_output(model: nn.Module, inputs: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of the module named ``layer`` [B, C, *spatial] for ``inputs``, from a
    no-grad forward pass (a copy: later in-place operations do not reach it). The hook
    that reads it lives for this call only.

    Raises:
        TargetError: an unknown layer, one that did not run, ran twice or returned no Tensor.
    """
    (module,) = layer_modules(model, [layer])
    outputs: list[Any] = []
    handle = module.register_forward_hook(lambda _module, _args, output: outputs.append(_copy(output)))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    return _the_output(Unit(layer, 0), outputs, need_graph=False)


def _copy(output: Any) -> Any:
    return output.detach().clone() if isinstance(output, torch.Tensor) else output


def _near(names: list[str], wanted: str) -> list[str]:
    """Layer names sharing the longest prefix with ``wanted`` first (typos land nearby)."""

    def shared(name: str) -> int:
        return next((i for i, (a, b) in enumerate(zip(name, wanted)) if a != b), min(len(name), len(wanted)))

    return sorted(names, key=lambda name: -shared(name))


@dataclass(frozen=True)
class UnitGroup:
    """The unit targets of one layer.

    Attributes:
        output: [B, C, *spatial] the layer's output, with its graph.
        rows: the targets' rows in the maps [T, ...].
        units: the resolved units, one per row.
    """

    output: torch.Tensor
    rows: list[int]
    units: list[ResolvedUnit]


def resolve_all(
    split: SplitTargets, logits: torch.Tensor, layer_outputs: dict[str, list[Any]], generator: Optional[Generators]
) -> tuple[torch.Tensor, list[UnitGroup]]:
    """The logit targets' indices LongTensor[T_logits, B] (in the order of ``split.logit_rows``;
    their random draws first) and the unit targets grouped by layer."""
    if split.logits:
        logit_index = resolve_targets(split.logits, logits, generator)
    else:
        logit_index = torch.empty((0, len(logits)), dtype=torch.long, device=logits.device)
    return logit_index, resolve_unit_groups(split, layer_outputs, generator)


def target_table(
    split: SplitTargets, logit_index: torch.Tensor, groups: Sequence[UnitGroup]
) -> tuple[torch.Tensor, dict[int, ResolvedUnit]]:
    """LongTensor[T, B]: the logit behind every map (-1 in a unit's row), and row -> resolved unit."""
    table = torch.full((split.count, logit_index.shape[1]), -1, dtype=torch.long, device=logit_index.device)
    table[split.logit_rows] = logit_index.long()
    return table, {row: unit for group in groups for row, unit in zip(group.rows, group.units)}


def resolve_unit_groups(
    split: SplitTargets, layer_outputs: dict[str, list[Any]], generator: Optional[Generators]
) -> list[UnitGroup]:
    """The unit targets resolved against the recorded layer outputs, grouped by layer.

    Raises:
        TargetError: a layer that did not run, ran more than once, or returned no Tensor;
            a channel or position outside its output.
    """
    groups: dict[str, tuple[torch.Tensor, list[int], list[ResolvedUnit]]] = {}
    for row, unit in zip(split.unit_rows, split.units):
        if unit.layer not in groups:
            groups[unit.layer] = (_the_output(unit, layer_outputs.get(unit.layer, [])), [], [])
        output, rows, resolved = groups[unit.layer]
        rows.append(row)
        resolved.append(resolve_unit(unit, output, generator))
    return [UnitGroup(output, rows, resolved) for output, rows, resolved in groups.values()]


def _the_output(unit: Unit, outputs: list[Any], need_graph: bool = True) -> torch.Tensor:
    if not outputs:
        raise TargetError(f"unit {unit}: layer '{unit.layer}' did not run in the forward pass")
    if len(outputs) > 1:
        raise TargetError(
            f"unit {unit}: layer '{unit.layer}' ran {len(outputs)} times in one forward pass, so its unit is "
            "ambiguous; name a layer that runs once"
        )
    output = outputs[0]
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise TargetError(f"unit {unit}: layer '{unit.layer}' returns {type(output).__name__}, not a float Tensor")
    if need_graph and output.grad_fn is None:
        raise TargetError(f"unit {unit}: layer '{unit.layer}''s output does not depend on the input")
    return output


def unit_seeds(units: Sequence[ResolvedUnit], output: torch.Tensor) -> torch.Tensor:
    """[n, *output.shape] one-hot seeds: a 1 at each unit's neuron, in every sample."""
    seeds = torch.zeros((len(units), *output.shape), dtype=output.dtype, device=output.device)
    samples = torch.arange(output.shape[0], device=output.device)
    for number, unit in enumerate(units):
        seeds[(torch.full_like(samples, number), samples, unit.channel) + tuple(unit.position.t())] = 1.0
    return seeds
