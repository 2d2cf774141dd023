"""``bash benchmarks/gpu_check.sh --dry-run OUT`` runs every step of the GPU check on the
CPU at tiny sizes, so a mistake in the script shows here, not in a session with a GPU.

One run (about a minute on 2 idle cores): every step the script declares is in
``steps.txt`` with exit status 0, and the files the GPU run brings back are there with
the numbers the lead reads from them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu-check")
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # python3, torchrun
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    completed = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(out)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return out


def declared_steps() -> list[str]:
    """The step names in the script, in order (``step NAME COMMAND...`` lines)."""
    return re.findall(r"^step ([a-z0-9-]+) ", SCRIPT.read_text(), flags=re.MULTILINE)


def test_every_declared_step_runs_and_passes(dry_run):
    steps = declared_steps()
    assert len(steps) == 10 and {"class-distance-pipeline", "precision-receipts", "seeded-drawing"} <= set(steps)
    lines = (dry_run / "steps.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == steps
    failed = [line for line in lines if ": exit 0," not in line]
    assert not failed, (dry_run / "log.txt").read_text()[-4000:]


def test_the_files_the_gpu_run_brings_back_hold_their_numbers(dry_run):
    pipeline = json.loads((dry_run / "class_distance.json").read_text())
    assert pipeline["engine"]["images_per_second"] > 0 and pipeline["ratio"] > 0
    first, resumed = pipeline["command"]
    assert first["images"] + resumed["images"] == pipeline["settings"]["images"]  # the resume did the rest
    receipts = json.loads((dry_run / "precision_receipts.json").read_text())["rows"]
    assert {(row["precision"], row["method"]) for row in receipts} == {
        (precision, method) for precision in ("tf32", "bfloat16") for method in ("saliency", "deconvnet", "gbp")
    }
    assert all(-1.0 <= row["min_cosine"] <= row["median_cosine"] <= 1.0 + 1e-9 for row in receipts)
    assert json.loads((dry_run / "bench_cpu.json").read_text())["cases"]
    drawing = json.loads((dry_run / "seeded_drawing.json").read_text())
    assert drawing["blocks"] == 1 and all(row["ahead"]["equal"] for row in drawing["rows"])
    assert (dry_run / "reproduce-index.html").is_file()
    assert "summarize: exit 0" in (dry_run / "steps.txt").read_text()
