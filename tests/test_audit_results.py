"""The audit's typed results: each step's own frozen dataclass, kept on disk and read back.

- A step's result goes to ``steps/<name>.json`` (its JSON fields, by name) and
  ``steps/<name>.npz`` (its ``np.ndarray`` fields), and comes back as the same type, nested
  dataclasses (the adversarial step's ``Shown``, the unit step's ``TheoryClaim``) included.
- A file laid out as the audit wrote it before the typed results (written here by hand, with
  ``json`` and ``np.savez``) reads back; one of another shape (a field missing or unknown) is
  refused with a reason, never half-read; another identity is not read at all.
- The verdicts are typed (:class:`MethodVerdicts`) and written as ``audit.json`` gives them:
  a hand-computed case against the thresholds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from backpropvis.audit.adversarial_step import AdversarialResult, AdversarialStep, Shown
from backpropvis.audit.maps_step import MapsResult
from backpropvis.audit.randomization_step import RandomizationResult, RandomizationStep
from backpropvis.audit.results import ResultFormatError, StepResult
from backpropvis.audit.saved import STEPS_FOLDER, load_result, save_result
from backpropvis.audit.steps import STEPS
from backpropvis.audit.unit_distance_step import TheoryClaim, UnitDistanceResult
from backpropvis.audit.verdicts import VERDICTS, judge_method

IDENTITY = {"model": "tiny", "images": [["a.png", "0" * 64]], "seed": 0}


def _adversarial() -> AdversarialResult:
    return AdversarialResult(
        steps=[1.0, 8.0],
        original=[3, 5],
        original_names=["class 3", "class 5"],
        predicted=[[3, 5], [4, 5]],
        predicted_names=[["class 3", "class 5"], ["class 4", "class 5"]],
        flipping_step=[1, None],
        distance={"saliency": [[0.1, 0.2], [0.9, 0.3]], "gbp": [[0.01, 0.02], [0.05, 0.03]]},
        at_flip={"saliency": [0.9, None], "gbp": [0.05, None]},
        mean_at_flip={"saliency": 0.9, "gbp": 0.05},
        shown=Shown(image=0, step=1),
        pictures=np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4),
        maps=np.ones((2, 2, 3, 4, 4), dtype=np.float32),
    )


def _randomization(distance: dict[str, list[list[float]]]) -> RandomizationResult:
    return RandomizationResult(
        stages=["fc", "conv"],
        descriptions=["fc redrawn", "all redrawn"],
        predicted=[7],
        predicted_names=["class 7"],
        redraw_seed=12,
        batch_norm="reestimate",
        distance=distance,
        input_similarity={method: [[0.0], [0.1]] for method in distance},
        trained_input_similarity={method: [0.02] for method in distance},
        maps=np.full((3, len(distance), 3, 4, 4), 0.5, dtype=np.float32),
    )


def _results() -> list[StepResult]:
    return [
        MapsResult([[1, 2]], [["one", "two"]], np.zeros((1, 2, 1, 3, 4, 4), dtype=np.float32)),
        _randomization({"saliency": [[1.2], [1.4]]}),
        _adversarial(),
        UnitDistanceResult(
            layers=["conv1", "conv2"],
            images=1,
            methods={"gbp": {"mean": [0.1, 0.0]}},
            claims=[TheoryClaim("gbp_flat", "GBP stops depending on the unit", 0.01, True)],
            note=None,
            distance=np.array([[0.1, 0.0]]),
        ),
    ]


def _same(first: StepResult, second: StepResult) -> bool:
    """Field by field (arrays by value: a dataclass's == cannot compare them)."""
    return type(first) is type(second) and all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for a, b in zip(dataclasses.astuple(first), dataclasses.astuple(second))
    )


@pytest.mark.parametrize("result", _results(), ids=lambda result: type(result).__name__)
def test_each_result_type_comes_back_as_itself(result, tmp_path) -> None:
    save_result(tmp_path, "step", IDENTITY, result)
    numbers = json.loads((tmp_path / STEPS_FOLDER / "step.json").read_text())["numbers"]
    arrays = np.load(tmp_path / STEPS_FOLDER / "step.npz")
    fields = {field.name for field in dataclasses.fields(result)}
    assert set(numbers) | set(arrays.files) == fields and not set(numbers) & set(arrays.files)
    assert all(isinstance(getattr(result, name), np.ndarray) for name in arrays.files)
    kept = load_result(tmp_path, "step", IDENTITY, type(result))
    assert kept.unusable is None and kept.result is not None and _same(kept.result, result)


def test_nested_dataclasses_are_rebuilt(tmp_path) -> None:
    save_result(tmp_path, "adversarial", IDENTITY, _adversarial())
    back = load_result(tmp_path, "adversarial", IDENTITY, AdversarialResult).result
    assert isinstance(back, AdversarialResult) and back.shown == Shown(0, 1) and isinstance(back.shown, Shown)
    numbers = json.loads((tmp_path / STEPS_FOLDER / "adversarial.json").read_text())["numbers"]
    assert numbers["shown"] == {"image": 0, "step": 1} and numbers["flipping_step"] == [1, None]
    unit = _results()[3]
    save_result(tmp_path, "units", IDENTITY, unit)
    claims = load_result(tmp_path, "units", IDENTITY, UnitDistanceResult).result.claims  # type: ignore[union-attr]
    assert claims == [TheoryClaim("gbp_flat", "GBP stops depending on the unit", 0.01, True)]


def _write_by_hand(folder: Path, step: str, identity: dict, numbers: dict, arrays: dict) -> None:
    """The layout of the untyped audit: {"identity", "numbers"} beside an npz of named arrays."""
    (folder / STEPS_FOLDER).mkdir(exist_ok=True)
    np.savez(folder / STEPS_FOLDER / f"{step}.npz", **arrays)
    (folder / STEPS_FOLDER / f"{step}.json").write_text(json.dumps({"identity": identity, "numbers": numbers}))


ADVERSARIAL_NUMBERS = {
    "steps": [0.25, 0.5],
    "original": [1],
    "original_names": ["class 1"],
    "predicted": [[1], [2]],
    "predicted_names": [["class 1"], ["class 2"]],
    "flipping_step": [1],
    "distance": {"saliency": [[0.0], [1.1]], "gbp": [[0.0], [0.02]]},
    "at_flip": {"saliency": [1.1], "gbp": [0.02]},
    "mean_at_flip": {"saliency": 1.1, "gbp": 0.02},
    "shown": {"image": 0, "step": 1},
}
ADVERSARIAL_ARRAYS = {"pictures": np.zeros((2, 3, 2, 2)), "maps": np.zeros((2, 2, 3, 2, 2))}


def test_a_file_of_the_untyped_audit_resumes_and_the_verdicts_read_it(tmp_path) -> None:
    _write_by_hand(tmp_path, "adversarial", IDENTITY, ADVERSARIAL_NUMBERS, ADVERSARIAL_ARRAYS)
    kept = load_result(tmp_path, "adversarial", IDENTITY, AdversarialResult)
    assert isinstance(kept.result, AdversarialResult) and kept.result.shown == Shown(0, 1)
    numbers = AdversarialStep().verdict_numbers(kept.result, "gbp", "saliency")
    assert numbers == pytest.approx({"adversarial_distance": 0.02, "adversarial_over_saliency": 0.02 / 1.1})
    assert load_result(tmp_path, "adversarial", {**IDENTITY, "seed": 1}, AdversarialResult).result is None


@pytest.mark.parametrize(
    "change, named",
    [({"shown": None}, "shown"), ({"extra": 1}, "extra")],
    ids=["a field missing", "an unknown field"],
)
def test_a_file_of_another_shape_is_measured_again_saying_why(change, named, tmp_path) -> None:
    numbers = {**ADVERSARIAL_NUMBERS, **change}
    numbers = {key: value for key, value in numbers.items() if value is not None}
    _write_by_hand(tmp_path, "adversarial", IDENTITY, numbers, ADVERSARIAL_ARRAYS)
    kept = load_result(tmp_path, "adversarial", IDENTITY, AdversarialResult)
    assert kept.result is None and kept.unusable is not None
    assert "steps/adversarial.json" in kept.unusable and named in kept.unusable and "measured again" in kept.unusable
    with pytest.raises(ResultFormatError, match="arrays"):
        AdversarialResult.from_json(ADVERSARIAL_NUMBERS, {"pictures": ADVERSARIAL_ARRAYS["pictures"]})


def test_the_randomization_verdicts_read_the_top_stage_mean() -> None:
    """Hand-computed: the top stage's row, averaged over the images, and its ratio to saliency's."""
    result = _randomization({"saliency": [[1.0, 1.4], [1.3, 1.3]], "gbp": [[0.1, 0.3], [1.0, 1.0]]})
    numbers = RandomizationStep().verdict_numbers(result, "gbp", "saliency")
    assert numbers == pytest.approx({"top_redrawn_distance": 0.2, "top_redrawn_over_saliency": 0.2 / 1.2})


def test_every_step_declares_its_own_result_type() -> None:
    types = [step.result_type for step in STEPS]
    assert len(set(types)) == len(types) and all(issubclass(kind, StepResult) for kind in types)
    assert all(dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen for kind in types)  # type: ignore[attr-defined]


def test_the_typed_verdicts_are_written_as_audit_json_gives_them() -> None:
    """Hand-computed: a ratio of 0.5 (>= 1/3) with an interval from 0.2 (> 0.1) is class-sensitive;
    input similarity 0.1 (< 0.2) does not show the image; a NaN top-redrawn change does not hold
    and is written as null; the adversarial step skipped reads "not measured"."""
    numbers = {
        "class_distance": 0.6,
        "class_distance_low": 0.2,
        "class_distance_high": 0.9,
        "class_distance_over_saliency": 0.5,
        "class_distance_over_saliency_low": 0.3,
        "class_distance_over_saliency_high": 0.7,
        "input_similarity": 0.1,
        "top_redrawn_distance": math.nan,
        "top_redrawn_over_saliency": 0.8,
    }
    verdicts = judge_method(numbers, {"adversarial": "no FGSM here"})
    assert [verdicts.holds(verdict.name) for verdict in VERDICTS] == [True, False, False, None]
    assert verdicts.summary == "class-sensitive; does not show the image; ignores the top layers"
    entry = verdicts.as_json()
    assert list(entry) == [verdict.name for verdict in VERDICTS] + ["summary", "criteria", "numbers"]
    assert entry["numbers"]["top_redrawn_distance"] is None and entry["numbers"]["input_similarity"] == 0.1
    follows = entry["criteria"]["follows_model"]
    assert [claim["value"] for claim in follows["claims"]] == [0.8, None]
    assert [claim["holds"] for claim in follows["claims"]] == [True, False]
    assert entry["criteria"]["changes_with_adversarial"] == {
        "holds": None,
        "says": "not measured: no FGSM here",
        "claims": [],
        "skipped": "no FGSM here",
    }
    json.dumps(entry, allow_nan=False)  # strict JSON
