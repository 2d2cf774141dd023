"""The sanity protocols' claims fail under a broken method: every protocol, run on the
digits VGG at its tiny settings with the engine broken in each way it declares
(``Protocol.catches``), has a claim that held honestly and no longer holds."""

from __future__ import annotations

import dataclasses

import pytest
from sabotage import sabotaged

from backpropvis.experiments import RunContext, run_experiment
from backpropvis.sanity.experiments import SANITY

DIGITS = {name: experiment for name, experiment in SANITY.items() if name.endswith("-digits")}
CASES = [(name, kind) for name, experiment in DIGITS.items() for kind in experiment.catches]


def run_tiny(name: str, out):
    experiment = dataclasses.replace(DIGITS[name], quick=DIGITS[name].tiny)
    return run_experiment(experiment, RunContext(out=out / name, quick=True, seed=0, progress=False))


BLIND_TO_THE_PLAIN_GRADIENT = {
    "kindermans2017": "the plain gradient is input-invariant like GBP and DeconvNet, so no input-invariance claim "
    "tells them apart (its other sabotages, zero maps and an input-reading GBP: tests/test_sanity_kindermans.py)",
}
"""Protocols that cannot catch the plain gradient in a method's place, and why."""


def test_every_protocol_declares_what_it_catches() -> None:
    assert DIGITS
    for name, experiment in SANITY.items():
        assert experiment.group == "sanity" and experiment.tiny, name
        protocol = name.rsplit("-", 1)[0]
        if protocol not in BLIND_TO_THE_PLAIN_GRADIENT:
            assert "plain-gradient" in experiment.catches, f"{name} does not catch the plain gradient"
        assert "zero-gbp" in experiment.catches, f"{name} does not catch a zero GBP map"


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    cache = {}

    def run(name: str):
        if name not in cache:
            cache[name] = run_tiny(name, tmp_path_factory.mktemp(f"{name}-honest"))
        return cache[name]

    return run


@pytest.mark.parametrize("name, kind", CASES, ids=[f"{name}-{kind}" for name, kind in CASES])
def test_a_broken_method_fails_a_claim(name: str, kind: str, tmp_path, honest) -> None:
    held = {claim.id for claim in honest(name).claims if claim.holds}
    with sabotaged(kind):
        broken = run_tiny(name, tmp_path)
    failing = {claim.id for claim in broken.claims if not claim.holds}
    assert held & failing, f"{name}: under {kind} no claim that held honestly fails ({sorted(failing)})"
