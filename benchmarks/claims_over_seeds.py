"""Every claim of several ``backpropvis reproduce`` runs side by side: per claim the mean and
spread of its measured value over the runs and in how many it holds, as a Markdown table.

    backpropvis reproduce --out runs/full-seed0 --seed 0      # and 1, 2
    python benchmarks/claims_over_seeds.py runs/full-seed0 runs/full-seed1 runs/full-seed2

It computes nothing: it reads each run's ``<fig>/metrics.json``. The spread is the sample
standard deviation over runs (``n - 1``); "holds" counts the runs whose verdict is true.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClaimSpread:
    """One claim over runs: ``values`` in run order (NaN where a run measured none)."""

    experiment: str
    claim: str
    text: str
    comparison: str
    threshold: float
    values: tuple[float, ...]
    holds: tuple[bool, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def spread(self) -> float:
        """Sample standard deviation over runs; 0 for one run."""
        if len(self.values) < 2:
            return 0.0
        mean = self.mean
        return math.sqrt(sum((value - mean) ** 2 for value in self.values) / (len(self.values) - 1))


def read_runs(folders: list[Path]) -> tuple[list[ClaimSpread], dict[str, list[float]]]:
    """The claims that every one of ``folders`` measured, in the first run's order, and each
    experiment's seconds per run.

    Raises:
        FileNotFoundError: a folder without any ``*/metrics.json``.
    """
    runs = []
    for folder in folders:
        metrics = {path.parent.name: json.loads(path.read_text()) for path in sorted(folder.glob("*/metrics.json"))}
        if not metrics:
            raise FileNotFoundError(f"{folder}: no <experiment>/metrics.json in it")
        runs.append(metrics)
    spreads, seconds = [], {}
    for name, first in runs[0].items():
        if not all(name in run for run in runs):
            continue
        seconds[name] = [float(run[name]["seconds"]) for run in runs]
        for claim in first["claims"]:
            found = [next((c for c in run[name]["claims"] if c["id"] == claim["id"]), None) for run in runs]
            if None in found:
                continue  # a claim that not every run declares (runs of different versions)
            spreads.append(
                ClaimSpread(
                    experiment=name,
                    claim=claim["id"],
                    text=claim["text"],
                    comparison=claim["comparison"],
                    threshold=float(claim["threshold"]),
                    values=tuple(float("nan") if c["value"] is None else float(c["value"]) for c in found if c),
                    holds=tuple(bool(c["holds"]) for c in found if c),
                )
            )
    return spreads, seconds


def _number(value: float) -> str:
    return f"{value:.3g}"


def markdown(spreads: list[ClaimSpread], seconds: dict[str, list[float]]) -> str:
    """The table: experiment, claim, mean, spread, threshold, runs in which it holds."""
    runs = len(next(iter(seconds.values()))) if seconds else 0
    lines = [
        "| experiment | claim | mean | sd | threshold | holds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for spread in spreads:
        held = sum(spread.holds)
        verdict = f"{held} of {runs}" if held == runs else f"**{held} of {runs}**"
        lines.append(
            f"| {spread.experiment} | {spread.claim} | {_number(spread.mean)} | {_number(spread.spread)} "
            f"| {spread.comparison} {_number(spread.threshold)} | {verdict} |"
        )
    lines.append("")
    lines.append("| experiment | seconds per run |")
    lines.append("| --- | --- |")
    for name, times in seconds.items():
        lines.append(f"| {name} | {', '.join(f'{t:.0f}' for t in times)} |")
    totals = [sum(times[i] for times in seconds.values()) for i in range(runs)]
    lines.append(f"| all | {', '.join(f'{t:.0f}' for t in totals)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders written by backpropvis reproduce")
    args = parser.parse_args()
    try:
        spreads, seconds = read_runs(args.runs)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as error:
        print(f"error: cannot read the runs' metrics: {error!r}", file=sys.stderr)
        return 2
    print(markdown(spreads, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
