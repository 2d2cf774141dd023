"""The precision receipt: a run at TF32 or bfloat16 says, per method, how close its
maps came to float32, and names a method that drifted.

The drifting model is :class:`tiny_nets.CancellingNet`, whose bfloat16 saliency is a
difference of two weights bfloat16 cannot tell apart; its maps are known in closed
form, so the receipt's cosine is checked against numpy, not against our own code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from tiny_nets import cancelling_net

from backpropvis.core.errors import BackpropvisError
from backpropvis.core.rules import resolve_rule
from backpropvis.engine import Attributions, attribute_many
from backpropvis.engine.inputs import prepare_inputs
from backpropvis.engine.observers import EngineCall
from backpropvis.engine.precision import Precision
from backpropvis.engine.receipt import PrecisionReceipt, check_threshold, collect_receipt, needs_receipt, receipt_of
from backpropvis.images.sets import Samples
from backpropvis.models import describe_module
from backpropvis.stats import read_database, run_class_distance, summarize
from backpropvis.stats.summary import format_summary

RULES = [resolve_rule(name) for name in ("saliency", "deconvnet", "gbp")]


def _inputs() -> torch.Tensor:
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _receipt(net, inputs, precision: str, threshold: float = 0.95) -> PrecisionReceipt:
    """The receipt a command would store: the call watched by :func:`collect_receipt`."""
    with collect_receipt(threshold) as receipts:
        attribute_many(net, inputs, [0, 1], RULES, precision=precision)
    assert receipts.receipt is not None
    return receipts.receipt


def _closed_form_bfloat16_saliency_cosine(net) -> float:
    """Logit 0's saliency is W0 - W1 (both units active); in bfloat16 each weight keeps 8
    bits and the difference is rounded to bfloat16 again."""
    weight = net.hidden.weight.detach()
    low = (weight[0].bfloat16() - weight[1].bfloat16()).bfloat16().double().numpy()
    high = (weight[0].double() - weight[1].double()).numpy()
    return float(np.dot(low, high) / (np.linalg.norm(low) * np.linalg.norm(high)))


def test_the_receipt_finds_the_drifting_saliency_and_spares_gbp_and_deconvnet():
    net, inputs = cancelling_net(), _inputs()
    receipt = _receipt(net, inputs, "bfloat16")
    by_method = {entry.method: entry for entry in receipt.methods}
    assert by_method["saliency"].minimum == pytest.approx(_closed_form_bfloat16_saliency_cosine(net), abs=1e-6)
    assert by_method["saliency"].minimum < 0.9
    assert by_method["deconvnet"].minimum > 0.999 and by_method["gbp"].minimum > 0.999
    assert receipt.maps == 8  # 2 targets x 4 images
    assert receipt.below() == ("saliency",)
    (warning,) = receipt.warnings()
    assert "saliency" in warning and "bfloat16" in warning and "\n" not in warning
    # the median over the batch: half the maps are logit 1's (1000 (2w + d), which bfloat16 keeps)
    assert by_method["saliency"].minimum < by_method["saliency"].median < 1.0


def test_a_lower_threshold_names_no_method_and_a_bad_one_is_refused():
    net, inputs = cancelling_net(), _inputs()
    assert _receipt(net, inputs, "bfloat16", threshold=0.5).below() == ()
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(BackpropvisError, match="threshold"):
            check_threshold(bad)


def test_zero_maps_in_place_of_the_low_precision_ones_are_caught():
    """Sabotage: a precision that returned zero maps must not pass as close to float32."""
    net, inputs = cancelling_net(), _inputs()
    maps = attribute_many(net, inputs, [0, 1], RULES, precision="tf32")
    zeroed = Attributions(
        {name: torch.zeros_like(value) for name, value in maps.items()}, maps.logits, maps.targets, ()
    )
    call = EngineCall(net, prepare_inputs(inputs), tuple(RULES), "refuse", None, Precision.TF32, zeroed)
    receipt = receipt_of(call)
    assert set(receipt.below()) == {"saliency", "deconvnet", "gbp"}
    assert all(entry.minimum == 0.0 for entry in receipt.methods)


def test_tf32_on_the_cpu_is_float32_and_the_receipt_round_trips():
    net, inputs = cancelling_net(), _inputs()
    receipt = _receipt(net, inputs, "tf32")
    assert all(entry.minimum > 1 - 1e-6 for entry in receipt.methods) and receipt.warnings() == []
    assert PrecisionReceipt.from_dict(receipt.as_dict()) == receipt
    assert needs_receipt("tf32") and needs_receipt("bfloat16")
    assert not needs_receipt("float32") and not needs_receipt("default")


def test_class_distance_at_bfloat16_stores_and_summarises_its_receipt(tmp_path):
    db = tmp_path / "bf16.sqlite"
    common = dict(batch_size=6, workers=0, progress=False, pairs="max-random")
    model = describe_module(cancelling_net(), "cancelling", "seeded", input_size=8)
    report = run_class_distance(Samples(), db, model=model, precision="bfloat16", **common)
    stored = read_database(db)
    assert 0 in {row["second_logit"] for row in stored.results}  # logit 0, the drifting one, is among the maps
    assert report.receipt is not None and report.receipt.below() == ("saliency",)
    assert stored.receipts == [report.receipt.as_dict()]
    summary = summarize([db])
    assert summary["precision_receipts"] == [report.receipt.as_dict()]
    text = format_summary(summary)
    assert "note: precision receipt (bfloat16 against float32, first batch" in text
    assert "note: at bfloat16 the saliency maps differ from float32" in text and "deconvnet maps differ" not in text

    exact = run_class_distance(Samples(), tmp_path / "f32.sqlite", model=model, precision="float32", **common)
    assert exact.receipt is None and read_database(tmp_path / "f32.sqlite").receipts == []
    with pytest.raises(BackpropvisError, match="threshold"):
        run_class_distance(Samples(), tmp_path / "x.sqlite", model=model, receipt_threshold=2.0, **common)


TINY = str(Path(__file__).parent / "tiny_nets.py") + ":cancelling_net"


def test_the_commands_at_bfloat16_warn_in_one_line_naming_the_method(tmp_path, capsys):
    db = tmp_path / "run.sqlite"
    common = ["--model", TINY, "--input-size", "8", "--precision", "bfloat16"]
    status, out, err = run_cli(
        ["class-distance", "--samples", "--db", str(db), "--batch-size", "6", "--workers", "0", *common], capsys
    )
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("backpropvis: warning:")]
    assert len(warnings) == 1 and "saliency" in warnings[0] and "bfloat16" in warnings[0]
    assert "note: precision receipt (bfloat16 against float32" in out

    status, out, err = run_cli(
        ["visualize", "--out", str(tmp_path / "vis"), "--targets", "0,1", *common, "--receipt-threshold", "0.5"],
        capsys,
    )
    assert status == 0, err
    assert "warning" not in err  # 0.54 is above a threshold of 0.5
    summary = json.loads((tmp_path / "vis" / "summary.json").read_text())
    receipt = PrecisionReceipt.from_dict(summary["precision_receipt"])
    assert receipt.threshold == 0.5 and receipt.methods[0].method == "saliency" and receipt.methods[0].minimum < 0.9
    assert receipt.summary_line() in out

    status, _, err = run_cli(
        ["class-distance", "--samples", "--db", str(tmp_path / "x.sqlite"), *common, "--receipt-threshold", "1.5"],
        capsys,
    )
    assert status == 2 and "--receipt-threshold" in err and "Traceback" not in err
