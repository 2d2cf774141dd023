"""The protocol interface: a protocol is a declared value (settings dataclasses, claims),
a result survives its JSON round trip, and the registry refuses what it cannot use."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest

from backpropvis.sanity import PROTOCOLS, _collect
from backpropvis.sanity.protocol import Protocol, SanityResult, StepResult, Summary


def summary(mean: float, count: int = 3) -> Summary:
    return Summary(tuple([mean] * count), mean, mean - 0.1, mean + 0.1, count)


def result() -> SanityResult:
    step = StepResult(
        "cascading",
        "down to fc",
        ("fc",),
        methods={"gbp": {"ssim": summary(0.9)}},
        controls={"gbp": {"random map": {"ssim": Summary((math.nan,), math.nan, math.nan, math.nan, 0)}}},
    )
    return SanityResult(
        "p", {"seeds": (1, 2)}, "m", "w", None, "execution", ("ssim",), ("gbp",), [step], {"x": math.nan}
    )


def test_a_result_survives_its_json_round_trip() -> None:
    original = result()
    data = original.to_json()
    assert data["settings"] == {"seeds": [1, 2]} and data["claim_values"] == {"x": None}
    again = SanityResult.from_json(data)
    assert again.steps[0].methods == original.steps[0].methods
    assert math.isnan(again.steps[0].controls["gbp"]["random map"]["ssim"].mean)
    assert again.series_names() == ["cascading"] and again.smallest_count() == 3
    assert "from 3 images only" in (again.steps[0].methods["gbp"]["ssim"].small_sample or "")


@dataclasses.dataclass(frozen=True)
class Settings:
    seeds: int = 1


def declared(name: str = "p", settings=Settings()) -> Protocol:
    return Protocol(name, "t", "r", settings, settings, settings, (), lambda run, s: result(), lambda r: "", print)


def test_protocols_take_settings_values_and_sizes_by_name() -> None:
    protocol = declared()
    assert protocol.settings("quick") == Settings()
    with pytest.raises(ValueError, match="full, quick or tiny"):
        protocol.settings("huge")
    with pytest.raises(TypeError, match="dataclass instances"):
        declared(settings=Settings)  # the class, not a value
    with pytest.raises(TypeError, match="dataclass instances"):
        declared(settings={"seeds": 1})


def test_the_registry_refuses_modules_without_a_protocol_and_twins() -> None:
    assert all(isinstance(protocol, Protocol) for protocol in PROTOCOLS.values())
    with pytest.raises(TypeError, match="must declare PROTOCOL"):
        _collect((SimpleNamespace(__name__="empty"),))  # type: ignore[arg-type]
    twin = SimpleNamespace(__name__="twin", PROTOCOL=declared())
    with pytest.raises(ValueError, match="two protocols are named 'p'"):
        _collect((twin, twin))  # type: ignore[arg-type]
