"""``benchmarks/claims_over_seeds.py``: the README's full-size table is computed from runs'
metrics files; checked here on runs written by hand, against hand-computed means and spreads."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "claims_over_seeds.py"


def _load():
    spec = importlib.util.spec_from_file_location("claims_over_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _write_run(folder: Path, values: dict, seconds: float) -> None:
    (folder / "figA").mkdir(parents=True)
    claims = [
        {"id": claim, "text": claim, "comparison": ">=", "threshold": 1.0, "value": value, "holds": value >= 1.0}
        for claim, value in values.items()
    ]
    (folder / "figA" / "metrics.json").write_text(json.dumps({"seconds": seconds, "claims": claims}))


def test_mean_spread_and_holds_over_three_runs(tmp_path):
    module = _load()
    for index, (a, b) in enumerate([(1.0, 0.5), (2.0, 1.5), (3.0, 2.5)]):
        _write_run(tmp_path / f"seed{index}", {"a": a, "b": b}, seconds=10.0 * (index + 1))
    spreads, seconds = module.read_runs([tmp_path / f"seed{i}" for i in range(3)])
    by_claim = {spread.claim: spread for spread in spreads}
    assert by_claim["a"].mean == pytest.approx(2.0)
    assert by_claim["a"].spread == pytest.approx(1.0)  # sample sd of 1, 2, 3
    assert by_claim["b"].holds == (False, True, True)
    assert seconds == {"figA": [10.0, 20.0, 30.0]}
    table = module.markdown(spreads, seconds)
    assert "| figA | b | 1.5 | 1 | >= 1 | **2 of 3** |" in table
    assert "| all | 10, 20, 30 |" in table


def test_a_folder_without_metrics_is_one_line_and_status_2(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(tmp_path) in result.stderr
