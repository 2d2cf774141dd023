"""What each map is computed for: target specifications, parsed and resolved.

One home for what every caller of the engine needs: reading targets from text
(``"max,random,281,features.28:12@5,7"``), drawing "a random index other than a given
one" uniformly (a logit, or a channel of a layer), turning target specifications into a
LongTensor of logit indices, and resolving a :class:`Unit` (a channel or a neuron of a
named layer) against that layer's output.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch

from .errors import TargetError

__all__ = [
    "Target",
    "TARGET_NAMES",
    "Unit",
    "ResolvedUnit",
    "Generators",
    "parse_targets",
    "random_other_indices",
    "other_logit",
    "resolve_targets",
    "resolve_unit",
]

Generators = Union[torch.Generator, Sequence[torch.Generator]]
"""One CPU generator for the whole batch, or one per sample (draws then independent of
the batch an image is in)."""

TARGET_NAMES: dict[str, str] = {
    "max": "each sample's arg-max logit (the predicted class)",
    "random": "a logit drawn uniformly from the K - 1 that are not the sample's max",
}
"""Target names, with what they mean (for a :class:`Unit`'s channel: the same, over channels)."""

_INDEX = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Unit:
    """A unit inside the network as a target: a channel, or one neuron of it, of a named layer.

    The map of a unit is the backward pass seeded at the layer's output with a one-hot
    at the unit (Zeiler & Fergus 2014; Captum's ``Neuron*`` attributions), every
    activation below it under the method's rule (Eq. 1).

    Attributes:
        layer: a module name as in ``model.named_modules()`` (e.g. ``"features.28"``);
            the module must run once per forward pass and return a Tensor [B, C, *spatial].
        channel: an index into dim 1 of the layer's output; an int (every sample), a
            LongTensor[B] (one per sample), ``"max"`` (each sample's most active channel:
            the largest spatial maximum) or ``"random"`` (uniform over the C - 1 channels
            that are not the sample's ``"max"``).
        position: the neuron's spatial indices, a tuple of ``len(spatial)`` ints; None
            (the default) means the channel's spatial maximum in each sample (the first
            in row-major order on ties); ``"peak"`` the position of the layer's largest
            value in each sample (where the ``"max"`` channel peaks), so that a
            ``"random"`` channel there differs from the most active unit by its channel
            only. A layer without spatial dims takes None or (). A LongTensor[B, len(spatial)]
            gives each sample its own neuron (what a resolved unit holds: :class:`ResolvedUnit`).
    """

    layer: str
    channel: Union[int, str, torch.Tensor]
    position: Union[None, str, tuple[int, ...], torch.Tensor] = None

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer:
            raise TargetError(f"a unit's layer must be a module name such as 'features.28', not {self.layer!r}")
        channel = self.channel
        if isinstance(channel, str):
            if channel.lower() not in TARGET_NAMES:
                raise TargetError(
                    f"a unit's channel must be an index or one of {', '.join(TARGET_NAMES)}, not {channel!r}"
                )
            object.__setattr__(self, "channel", channel.lower())
        elif isinstance(channel, numbers.Integral) and not isinstance(channel, bool):
            if channel < 0:
                raise TargetError(f"a unit's channel must be 0 or more, not {channel}")
            object.__setattr__(self, "channel", int(channel))
        elif not (isinstance(channel, torch.Tensor) and not channel.is_floating_point() and channel.dim() == 1):
            raise TargetError(f"a unit's channel must be an int, a LongTensor[B], 'max' or 'random', not {channel!r}")
        if isinstance(self.position, torch.Tensor):
            if self.position.is_floating_point() or self.position.dim() != 2:
                raise TargetError(
                    f"a unit's per-sample position must be a LongTensor[B, dims], not {list(self.position.shape)} "
                    f"{self.position.dtype}"
                )
            return
        if self.position == "peak":
            return
        if self.position is not None:
            if isinstance(self.position, str):
                raise TargetError(
                    f"a unit's position must be a tuple of indices, None or 'peak', not {self.position!r}"
                )
            position = tuple(self.position)
            if not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= 0 for i in position):
                raise TargetError(f"a unit's position must be a tuple of indices >= 0, not {self.position!r}")
            object.__setattr__(self, "position", tuple(int(i) for i in position))

    def __str__(self) -> str:
        channel = self.channel if not isinstance(self.channel, torch.Tensor) else "per-sample"
        if self.position is None:
            where = ""
        elif isinstance(self.position, torch.Tensor):
            where = "@per-sample"
        else:
            where = "@" + (self.position if isinstance(self.position, str) else ",".join(map(str, self.position)))
        return f"{self.layer}:{channel}{where}"


@dataclass(frozen=True)
class ResolvedUnit:
    """A :class:`Unit` resolved against its layer's output [B, C, *spatial].

    Attributes:
        unit: the specification.
        channel: LongTensor[B] the channel in each sample.
        position: LongTensor[B, len(spatial)] the neuron's spatial indices in each sample.
        activation: Tensor[B] the layer's output at the neuron (detached).
    """

    unit: Unit
    channel: torch.Tensor
    position: torch.Tensor
    activation: torch.Tensor

    def name(self, sample: int) -> str:
        """The unit of one sample in the text form: ``"features.28:12@5,7"``."""
        where = ",".join(str(int(i)) for i in self.position[sample])
        return f"{self.unit.layer}:{int(self.channel[sample])}" + (f"@{where}" if where else "")


Target = Union[int, str, torch.Tensor, Unit, Callable[[torch.Tensor], torch.Tensor]]
"""An int (the same logit for every sample), a LongTensor[B] (one per sample), a name, a :class:`Unit`,
or a function of the logits [B, K] returning a LongTensor[B] (decided after the forward pass)."""


def parse_targets(text: str) -> list[Target]:
    """``"max,random,281,features.28:12,features.28:12@5,7"`` -> ``["max", "random", 281,
    Unit("features.28", 12), Unit("features.28", 12, (5, 7))]``.

    A unit is ``LAYER:CHANNEL`` (CHANNEL an index, ``max`` or ``random``), or
    ``LAYER:CHANNEL@Y,X`` for one neuron: the two integers after ``@`` are its position
    (a position of another length needs the Python API's :class:`Unit`); ``@peak``: where
    the layer's most active channel peaks.

    Raises:
        TargetError: for an entry that is neither an integer, a target name nor a unit,
            or no entry.
    """
    targets: list[Target] = []
    entries = [part.strip() for part in text.split(",")]
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if not entry:
            continue
        if ":" in entry:
            if "@" in entry and index < len(entries) and _INDEX.fullmatch(entries[index]):
                entry, index = f"{entry},{entries[index]}", index + 1  # "@Y" and "X" were split at the comma
            targets.append(_parse_unit(entry))
        elif _INDEX.fullmatch(entry):
            targets.append(int(entry))
        elif entry.lower() in TARGET_NAMES:
            targets.append(entry.lower())
        else:
            raise TargetError(
                f"unknown target {entry!r}; use an index, one of {', '.join(TARGET_NAMES)}, "
                "or a unit LAYER:CHANNEL or LAYER:CHANNEL@Y,X"
            )
    if not targets:
        raise TargetError("no targets given")
    return targets


def _parse_unit(entry: str) -> Unit:
    """``"features.28:12@5,7"`` -> ``Unit("features.28", 12, (5, 7))``."""
    layer, _, rest = entry.rpartition(":")
    channel, _, where = rest.partition("@")
    channel = channel.strip()
    if not _INDEX.fullmatch(channel) and channel.lower() not in TARGET_NAMES:
        raise TargetError(f"unit {entry!r}: the channel after ':' must be an index, 'max' or 'random'")
    position: Union[None, str, tuple[int, int]] = None
    if where.strip().lower() == "peak":
        position = "peak"
    elif where:
        parts = [part.strip() for part in where.split(",")]
        if len(parts) != 2 or not all(_INDEX.fullmatch(part) for part in parts):
            raise TargetError(f"unit {entry!r}: the position after '@' must be two integers Y,X")
        position = (int(parts[0]), int(parts[1]))
    return Unit(layer.strip(), int(channel) if _INDEX.fullmatch(channel) else channel, position)


def random_other_indices(
    excluded: torch.Tensor, count: int, generator: Generators, what: str = "logits"
) -> torch.Tensor:
    """For each entry of ``excluded``, an index drawn uniformly from the other ``count - 1``
    (a logit other than the predicted one; a channel other than the most active one).

    Args:
        excluded: LongTensor[B] (any device), the index each draw must avoid.
        count: how many indices there are (K logits, C channels), at least 2.
        generator: a CPU generator (B integers are drawn from it), or B of them (one
            integer from each: a sample's draw then does not depend on its batch).
        what: what the indices are, for the error message.

    Returns:
        LongTensor[B] on ``excluded.device``, never equal to ``excluded``.
    """
    if count < 2:
        raise TargetError(f"a random other index needs at least two {what}, there are {count}")
    if isinstance(generator, torch.Generator):
        offset = torch.randint(0, count - 1, excluded.shape, generator=generator)
    else:
        if len(generator) != len(excluded):
            raise TargetError(f"{len(generator)} generators for a batch of {len(excluded)}")
        offset = torch.cat([torch.randint(0, count - 1, (1,), generator=each) for each in generator])
    offset = offset.to(excluded.device)
    return other_logit(offset, excluded)


def other_logit(offset: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """An offset drawn uniformly from [0, K - 1) -> an index of [0, K) other than ``excluded``
    (it skips the excluded index and stays uniform). Shapes: [B] x [B] -> [B]."""
    return offset + (offset >= excluded).long()


def resolve_targets(
    targets: Sequence[Target],
    logits: torch.Tensor,
    generator: Optional[Generators] = None,
) -> torch.Tensor:
    """Turn target specifications into logit indices.

    Args:
        targets: T entries, each an int (the same logit for every sample), a
            LongTensor[B] (one logit per sample), ``"max"`` (each sample's arg-max
            logit) or ``"random"`` (a logit drawn uniformly from the K - 1 logits that
            are not the sample's max, from ``generator``).
        logits: [B, K] the model's output.
        generator: a CPU :class:`torch.Generator` for ``"random"``, or B of them (one per
            sample); when omitted, one seeded with 0 is used, so results stay reproducible.

    Returns:
        LongTensor[T, B] on ``logits.device``.

    Raises:
        TargetError: for an index outside ``[0, K)``, a tensor not shaped [B], or an
            unknown name.
    """
    batch, num_classes = logits.shape
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    predicted = logits.detach().argmax(dim=1)
    resolved = []
    for target in targets:
        if isinstance(target, str):
            name = target.strip().lower()
            if name == "max":
                resolved.append(predicted)
            elif name == "random":
                resolved.append(random_other_indices(predicted, num_classes, generator))
            else:
                raise TargetError(f"unknown target {target!r}; use an index or one of {', '.join(TARGET_NAMES)}")
        elif isinstance(target, torch.Tensor):
            if target.dtype in (torch.bool,) or target.is_floating_point() or target.is_complex():
                raise TargetError(f"a target tensor must hold integer indices, not {target.dtype}")
            if target.dim() == 0:
                target = target.expand(batch)
            if target.shape != (batch,):
                raise TargetError(f"a target tensor must be shaped [{batch}], not {list(target.shape)}")
            _check_range(target, num_classes)
            resolved.append(target.to(logits.device, torch.long))
        elif isinstance(target, numbers.Integral) and not isinstance(target, bool):  # int, numpy integers
            _check_range(torch.tensor([int(target)]), num_classes)
            resolved.append(torch.full((batch,), int(target), dtype=torch.long, device=logits.device))
        elif callable(target):
            resolved.append(_called(target, logits.detach()))
        else:
            raise TargetError(f"a target must be an int, a LongTensor, 'max' or 'random', not {target!r}")
    if not resolved:
        raise TargetError("no targets given")
    return torch.stack(resolved)


def _called(target: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """A function target's indices [B], checked for shape and dtype here and for range on the device."""
    batch, num_classes = logits.shape
    indices = target(logits)
    if not isinstance(indices, torch.Tensor) or indices.shape != (batch,) or indices.is_floating_point():
        raise TargetError(f"a target function must return integer indices shaped [{batch}], not {indices!r}")
    indices = indices.to(logits.device, torch.long)
    if indices.device.type == "cpu":
        _check_range(indices, num_classes)
    else:  # on an accelerator the check is queued with the work: no wait per batch
        inside = ((indices >= 0) & (indices < num_classes)).all()
        torch._assert_async(inside, f"a target function's index is outside the {num_classes} logits")
    return indices


def _check_range(indices: torch.Tensor, num_classes: int) -> None:
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise TargetError(f"target {bad} is outside the model's {num_classes} logits (0 to {num_classes - 1})")


def resolve_unit(unit: Unit, output: torch.Tensor, generator: Optional[Generators] = None) -> ResolvedUnit:
    """The channel and neuron of ``unit`` in every sample, from its layer's output.

    Args:
        unit: the specification.
        output: [B, C, *spatial] the layer's output (its graph is not used).
        generator: for a ``"random"`` channel (default: one seeded with 0).

    Raises:
        TargetError: a channel or position outside the layer's output, or an output
            without a channel dimension.
    """
    values = output.detach()
    if values.dim() < 2:
        raise TargetError(
            f"unit {unit}: layer '{unit.layer}' returns {list(values.shape)}, without a channel dimension"
        )
    batch, channels, spatial = values.shape[0], values.shape[1], tuple(values.shape[2:])
    peaks = values.reshape(batch, channels, -1).max(dim=2)  # each channel's spatial maximum [B, C]
    channel = _unit_channel(unit, peaks.values, generator)
    rows = torch.arange(batch, device=values.device)
    if isinstance(unit.position, tuple):
        if len(unit.position) != len(spatial) or any(i >= n for i, n in zip(unit.position, spatial)):
            raise TargetError(
                f"unit {unit}: position {unit.position} is outside layer '{unit.layer}''s spatial shape {list(spatial)}"
            )
        position = torch.tensor(unit.position, dtype=torch.long, device=values.device).expand(batch, len(spatial))
    elif isinstance(unit.position, torch.Tensor):
        position = _per_sample_position(unit, unit.position.to(values.device), batch, spatial)
    else:  # None: the channel's own maximum; "peak": where the most active channel peaks
        peak_channel = channel if unit.position is None else peaks.values.argmax(dim=1)
        flat = peaks.indices[rows, peak_channel]
        position = torch.stack(torch.unravel_index(flat, spatial), dim=1) if spatial else flat[:, None][:, :0]
    activation = values[(rows, channel) + tuple(position.t())]
    return ResolvedUnit(unit, channel, position, activation)


def _per_sample_position(unit: Unit, position: torch.Tensor, batch: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """A per-sample position LongTensor[B, len(spatial)], checked against the layer's output."""
    if position.shape != (batch, len(spatial)):
        raise TargetError(
            f"unit {unit}: a per-sample position must be shaped [{batch}, {len(spatial)}] for layer "
            f"'{unit.layer}', not {list(position.shape)}"
        )
    limits = torch.tensor(spatial, dtype=torch.long, device=position.device)
    if bool((position < 0).any()) or bool((position >= limits).any()):
        raise TargetError(f"unit {unit}: a position is outside layer '{unit.layer}''s spatial shape {list(spatial)}")
    return position.long()


def _unit_channel(unit: Unit, peaks: torch.Tensor, generator: Optional[Generators]) -> torch.Tensor:
    """LongTensor[B] the unit's channel per sample; ``peaks`` [B, C] each channel's spatial maximum."""
    batch, channels = peaks.shape
    where = f"unit {unit}: "
    if isinstance(unit.channel, str):
        most_active = peaks.argmax(dim=1)
        if unit.channel == "max":
            return most_active
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        return random_other_indices(most_active, channels, generator, f"channels in layer '{unit.layer}'")
    channel = torch.as_tensor(unit.channel, dtype=torch.long, device=peaks.device)
    if channel.dim() == 1 and channel.shape != (batch,):
        raise TargetError(where + f"a per-sample channel tensor must be shaped [{batch}], not {list(channel.shape)}")
    if int(channel.min()) < 0 or int(channel.max()) >= channels:
        bad = int(channel.max())
        raise TargetError(
            where + f"channel {bad} is outside layer '{unit.layer}''s {channels} channels (0 to {channels - 1})"
        )
    return channel.expand(batch)
