"""bench_engine.py's verdicts on issue 19's goals: the right goals for each case, and
'met' only when the measured value is on the right side of the goal."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_engine import goals_of  # noqa: E402


def measured(speedup: float = 2.6, memory: float = 1.2, cosines=(1.0, 1.0, 1.0), floor: float = 0.95) -> dict:
    return {
        "speedup_over_captum": speedup,
        "memory_ratio_to_plain": memory,
        "min_cosine_to_exact_float32": dict(zip(("saliency", "deconvnet", "gbp"), cosines)),
        "fraction_of_floor": floor,
    }


def case(label: str, targets: int) -> dict:
    return {"case": label, "targets": targets}


def test_cpu_speed_goal_per_target_count() -> None:
    t8 = case("vgg16-random 112px b2 T8", 8)
    assert goals_of(t8, "float32", measured(speedup=2.6), "cpu")["speedup_over_captum"]["met"]
    assert not goals_of(t8, "float32", measured(speedup=2.4), "cpu")["speedup_over_captum"]["met"]
    t2 = case("vgg16-random 112px b2 T2", 2)
    assert goals_of(t2, "float32", measured(speedup=2.1), "cpu")["speedup_over_captum"]["goal"] == 2.0
    assert "speedup_over_captum" not in goals_of(t2, "bfloat16", measured(), "cpu")


def test_gpu_memory_goal_at_eight_targets_lower_is_better() -> None:
    t8 = case("vgg16-random 224px b32 T8", 8)
    assert goals_of(t8, "tf32", measured(memory=1.29), "cuda")["memory_ratio_to_plain"]["met"]
    assert not goals_of(t8, "tf32", measured(memory=1.44), "cuda")["memory_ratio_to_plain"]["met"]
    assert "memory_ratio_to_plain" not in goals_of(case("vgg16-random 224px b32 T2", 2), "tf32", measured(), "cuda")


def test_cosine_goal_takes_the_worst_method() -> None:
    goal = goals_of(
        case("efficientnet-lite0 224px b32 T2", 2), "bfloat16", measured(cosines=(0.53, 0.999, 0.977)), "cuda"
    )
    assert goal["min_cosine_to_exact_float32"]["value"] == 0.53
    assert not goal["min_cosine_to_exact_float32"]["met"]
    assert "min_cosine_to_exact_float32" not in goals_of(case("x", 2), "float32", measured(), "cuda")
    assert goal["fraction_of_floor"]["met"]  # 0.95 of the floor
    slow = goals_of(case("efficientnet-lite0 224px b32 T2", 2), "tf32", measured(floor=0.79), "cuda")
    assert not slow["fraction_of_floor"]["met"]
