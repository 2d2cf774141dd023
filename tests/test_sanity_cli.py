"""``backpropvis sanity``: the bundled digits VGG and a user's model file from the command line,
resuming, and bad input refused with one line and status 2 (nothing written over)."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli
from test_user_models import MODEL_FILE

SMALL = ["--set", "seeds=1", "--set", "independent=false", "--set", "data=false", "--count", "3"]


def test_the_digits_vgg_from_the_command_line_and_a_resumed_rerun(tmp_path, capsys) -> None:
    out = tmp_path / "digits"
    argv = ["sanity", "--protocol", "adebayo2018", "--quick", *SMALL, "--out", str(out)]
    status, printed, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "from 3 images only (fewer than 20)" in printed and "controls: random" in printed
    assert "claim gbp_survives_top_randomisation" in printed and "wrote" in printed
    data = json.loads((out / "sanity.json").read_text())
    assert data["model"] == "digits-vgg" and data["settings"]["seeds"] == 1 and data["images"] == "digits-test"
    status, printed, _ = run_cli(argv, capsys)
    assert status == 0 and "steps kept from an earlier run" in printed


def test_a_users_model_file_with_batch_norm(tmp_path, capsys) -> None:
    path = tmp_path / "smallnet.py"
    path.write_text(MODEL_FILE)
    out = tmp_path / "user"
    argv = [
        "sanity", "--protocol", "adebayo2018", "--model", f"{path}:build", "--model-args", '{"width": 32}',
        "--weights", "random", "--input-size", "32", "--samples", "--quick", *SMALL, "--out", str(out),
    ]  # fmt: skip
    status, printed, err = run_cli(argv, capsys)
    assert status == 0, err
    data = json.loads((out / "sanity.json").read_text())
    assert data["batch_norm"] == "reestimate" and data["images"] == "samples"
    assert [step["redrawn"] for step in data["steps"]][1:] == [["fc"], ["conv2", "fc"], ["conv1", "conv2", "fc"]]
    assert "note: Layers redrawn in execution order" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "sedes=2"], "--set names 'sedes', which protocol adebayo2018 does not have"),
        (["--set", "seeds"], "--set takes NAME=VALUE"),
        (["--set", "granularity=blocks"], "granularity must be layers, stages or auto"),
        (["--images", "{tmp}/missing"], "missing"),
        (["--weights", "{tmp}/missing.pt"], "missing.pt"),
        (["--crops", "2"], "--crops goes with --samples"),
    ],
)
def test_bad_input_is_one_line_and_status_2(extra, message, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["sanity", "--protocol", "adebayo2018", "--quick", *[part.format(tmp=tmp_path) for part in extra]]
    status, _, err = run_cli([*argv, "--out", str(out)], capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (out / "sanity.json").exists()


def test_an_unknown_protocol_is_refused_by_the_parser(tmp_path, capsys) -> None:
    status, _, err = run_cli(["sanity", "--protocol", "nope", "--out", str(tmp_path)], capsys)
    assert status == 2 and "invalid choice: 'nope'" in err


def test_reproduce_knows_the_protocols_as_extra_experiments(tmp_path, capsys) -> None:
    status, _, err = run_cli(["reproduce", "nope", "--quick", "--out", str(tmp_path)], capsys)
    assert status == 2 and "adebayo2018-digits" in err and "adebayo2018-efficientnet" in err and "fig9" in err


def test_set_reads_json_values_text_and_comma_separated_lists() -> None:
    from backpropvis.cli import _protocol_settings

    assert _protocol_settings(["seeds=2", "independent=false", "methods=saliency,gbp", "granularity=layers"]) == {
        "seeds": 2,
        "independent": False,
        "methods": ("saliency", "gbp"),
        "granularity": "layers",
    }
    assert _protocol_settings(['methods=["gbp"]', "data_train_images=null"]) == {
        "methods": ("gbp",),
        "data_train_images": None,
    }
