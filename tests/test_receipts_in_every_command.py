"""Every command that takes ``--precision`` prints and stores its precision receipt at bfloat16.

The drifting model is :class:`tiny_nets.CancellingNet`: its logit 0 (the unit ``out:0``) is the
difference of two nearly equal weights, so its bfloat16 saliency has a known cosine to float32
(computed here with numpy, not with our code); GBP and DeconvNet keep their maps. ``reproduce``
and ``theory`` run on their own bundled networks: there the receipt must be stored, printed,
shown on the page, and judged again at a new threshold when a result is kept.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from tiny_nets import cancelling_net

from backpropvis.engine.receipt import PrecisionReceipt

TINY = str(Path(__file__).parent / "tiny_nets.py") + ":cancelling_net"
BFLOAT16 = ["--model", TINY, "--input-size", "8", "--precision", "bfloat16"]


def _closed_form_saliency_cosine() -> float:
    """Unit out:0's saliency is W0 - W1; in bfloat16 each weight keeps 8 bits, the difference rounded again."""
    weight = cancelling_net().hidden.weight.detach()
    low = (weight[0].bfloat16() - weight[1].bfloat16()).bfloat16().double().numpy()
    high = (weight[0].double() - weight[1].double()).numpy()
    return float(np.dot(low, high) / (np.linalg.norm(low) * np.linalg.norm(high)))


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("backpropvis: warning:")]


def _saliency(receipt: PrecisionReceipt) -> float:
    return next(entry.minimum for entry in receipt.methods if entry.method == "saliency")


def test_units_at_bfloat16_store_print_and_show_the_receipt_of_a_unit_target(tmp_path, capsys):
    out = tmp_path / "units"
    argv = ["units", "--samples", *BFLOAT16, "--layer", "out", "--channels", "0", "--top", "2", "--workers", "0"]
    status, stdout, err = run_cli([*argv, "--out", str(out)], capsys)
    assert status == 0, err
    receipt = PrecisionReceipt.from_dict(json.loads((out / "units.json").read_text())["precision_receipt"])
    assert _saliency(receipt) == pytest.approx(_closed_form_saliency_cosine(), abs=1e-6)
    assert receipt.below() == ("saliency",) and receipt.maps == 1
    (warning,) = _warnings(err)
    assert "saliency" in warning and receipt.summary_line() in stdout
    page = (out / "index.html").read_text()
    assert "precision receipt (bfloat16" in page and "note warning" in page


def test_unit_distance_at_bfloat16_stores_and_summarises_the_receipt(tmp_path, capsys):
    db = tmp_path / "units.sqlite"
    argv = ["unit-distance", "--samples", *BFLOAT16, "--layers", "out", "--db", str(db), "--workers", "0"]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    with sqlite3.connect(db) as connection:  # the unit pairs of the first batch: channel 0 is among them
        pairs = connection.execute("SELECT first_logit, second_logit FROM results").fetchall()
    assert any(0 in pair for pair in pairs)
    summary = json.loads(db.with_suffix(".json").read_text())
    (stored,) = summary["precision_receipts"]
    receipt = PrecisionReceipt.from_dict(stored)
    assert _saliency(receipt) == pytest.approx(_closed_form_saliency_cosine(), abs=1e-6)
    assert receipt.summary_line() in summary["notes"] and "note: " + receipt.summary_line() in stdout
    assert len(_warnings(err)) == 1 and "saliency" in _warnings(err)[0]


def test_audit_at_bfloat16_keeps_the_receipt_of_its_class_distance_step(tmp_path, capsys):
    out = tmp_path / "audit"
    argv = ["audit", "--samples", *BFLOAT16, "--out", str(out), "--few-images", "1", "--workers", "0", "--crops", "0"]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    (stored,) = json.loads((out / "audit.json").read_text())["class_distance"]["precision_receipts"]
    receipt = PrecisionReceipt.from_dict(stored)
    assert _saliency(receipt) == pytest.approx(_closed_form_saliency_cosine(), abs=1e-6)
    assert "at bfloat16 the saliency maps differ from float32" in stdout
    assert "precision receipt (bfloat16" in (out / "index.html").read_text()


def test_sanity_at_bfloat16_stores_its_receipt_and_keeps_it_when_resumed(tmp_path, capsys):
    out = tmp_path / "sanity"
    argv = ["sanity", "--protocol", "adebayo2018", "--quick", "--samples", "--count", "2", "--model", TINY]
    argv += ["--model-args", '{"size": 12}', "--input-size", "12", "--precision", "bfloat16", "--out", str(out)]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    first = json.loads((out / "sanity.json").read_text())["precision_receipt"]
    receipt = PrecisionReceipt.from_dict(first)
    assert receipt.precision == "bfloat16" and receipt.summary_line() in stdout
    assert "precision receipt (bfloat16" in (out / "index.html").read_text()

    status, stdout, err = run_cli([*argv, "--receipt-threshold", "0.1"], capsys)  # every step kept
    assert status == 0, err
    assert "steps kept from an earlier run" in stdout
    again = PrecisionReceipt.from_dict(json.loads((out / "sanity.json").read_text())["precision_receipt"])
    assert again.methods == receipt.methods and again.threshold == 0.1 and again.below() == ()


def test_reproduce_at_bfloat16_stores_the_receipt_per_experiment_and_judges_a_kept_one_again(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["reproduce", "fig2", "--quick", "--precision", "bfloat16", "--out", str(out)]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    receipt = PrecisionReceipt.from_dict(json.loads((out / "fig2" / "metrics.json").read_text())["precision_receipt"])
    assert {entry.method for entry in receipt.methods} == {"saliency", "deconvnet", "gbp"}
    assert all(-1.0 <= entry.minimum <= entry.median <= 1.0 + 1e-9 for entry in receipt.methods)
    assert "fig2: " + receipt.summary_line() in stdout
    assert len(_warnings(err)) == len(receipt.below())
    assert "precision receipt (bfloat16" in (out / "index.html").read_text()

    status, stdout, err = run_cli([*argv, "--receipt-threshold", "0.01"], capsys)
    assert status == 0, err
    assert "kept from" in stdout and _warnings(err) == []
    kept = PrecisionReceipt.from_dict(json.loads((out / "fig2" / "metrics.json").read_text())["precision_receipt"])
    assert kept.methods == receipt.methods and kept.threshold == 0.01

    status, _, err = run_cli(["reproduce", "fig2", "--quick", "--out", str(tmp_path / "exact")], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "exact" / "fig2" / "metrics.json").read_text())["precision_receipt"] is None


def test_theory_at_bfloat16_warns_naming_the_study_and_the_method(tmp_path, capsys):
    out = tmp_path / "theory"
    status, stdout, err = run_cli(
        ["theory", "dead-zones", "--quick", "--precision", "bfloat16", "--out", str(out)], capsys
    )
    assert status == 0, err
    receipt = PrecisionReceipt.from_dict(
        json.loads((out / "dead-zones" / "metrics.json").read_text())["precision_receipt"]
    )
    assert "dead-zones: " + receipt.summary_line() in stdout
    assert [line.split("warning: ")[1].split(":")[0] for line in _warnings(err)] == ["dead-zones"] * len(
        receipt.below()
    )
    status, _, err = run_cli(["theory", "dead-zones", "--quick", "--receipt-threshold", "0", "--out", str(out)], capsys)
    assert status == 2 and "--receipt-threshold" in err and "Traceback" not in err
