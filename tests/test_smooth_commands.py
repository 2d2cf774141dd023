"""The smooth mode and the dead ends on the command line (docs/smooth-activations.md).

Model files written by the tests, tiny (32 px, a few channels):

- ``convnext``: ConvNeXt-style blocks (depthwise 7x7 convolution, LayerNorm over
  channels, pointwise dense 4x wide, GELU, residual);
- ``efficientnet``: EfficientNet-style MBConv blocks (1x1 expand, BatchNorm, SiLU,
  depthwise 3x3, squeeze-excite with a sigmoid gate, 1x1 project);
- ``needs64``: a ReLU net whose dense layer takes exactly 64 px, and ``declares64``, the
  same net carrying timm's ``pretrained_cfg["input_size"]``.

Both smooth models go through ``visualize`` and ``audit`` with ``--smooth-activations rule``,
and what they wrote says so; without the option the error is one line naming it. A 64-px
model without ``--input-size`` gets one line naming the shape tried and ``--input-size``,
and the corrected command then runs on the same ``--db``.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from cli_runner import run_cli

MODELS = textwrap.dedent("""
    import torch
    from torch import nn


    class ConvNeXtBlock(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim)
            self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

        def forward(self, x):
            y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
            return x + self.pwconv2(self.act(self.pwconv1(y))).permute(0, 3, 1, 2)


    class TinyConvNeXt(nn.Module):
        def __init__(self, classes=6, dim=8):
            super().__init__()
            self.stem = nn.Conv2d(3, dim, 4, stride=4)
            self.blocks = nn.Sequential(ConvNeXtBlock(dim), ConvNeXtBlock(dim))
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

        def forward(self, x):
            return self.head(self.norm(self.blocks(self.stem(x)).mean((2, 3))))


    class SqueezeExcite(nn.Module):
        def __init__(self, channels, squeezed):
            super().__init__()
            self.reduce, self.act = nn.Conv2d(channels, squeezed, 1), nn.SiLU()
            self.expand = nn.Conv2d(squeezed, channels, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


    class MBConv(nn.Module):
        def __init__(self, channels, expand=4):
            super().__init__()
            wide = channels * expand
            self.expand = nn.Sequential(nn.Conv2d(channels, wide, 1), nn.BatchNorm2d(wide), nn.SiLU())
            depthwise = nn.Conv2d(wide, wide, 3, padding=1, groups=wide)
            self.depthwise = nn.Sequential(depthwise, nn.BatchNorm2d(wide), nn.SiLU())
            self.se = SqueezeExcite(wide, max(1, channels // 4))
            self.project = nn.Sequential(nn.Conv2d(wide, channels, 1), nn.BatchNorm2d(channels))

        def forward(self, x):
            return x + self.project(self.se(self.depthwise(self.expand(x))))


    class TinyEfficientNet(nn.Module):
        def __init__(self, classes=6, channels=8):
            super().__init__()
            stem = nn.Conv2d(3, channels, 3, stride=2, padding=1)
            self.stem = nn.Sequential(stem, nn.BatchNorm2d(channels), nn.SiLU())
            self.blocks = nn.Sequential(MBConv(channels), MBConv(channels))
            self.head = nn.Linear(channels, classes)

        def forward(self, x):
            return self.head(self.blocks(self.stem(x)).mean((2, 3)))


    class Needs64(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 4, stride=4), nn.Linear(4 * 16 * 16, 5)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))


    def convnext():
        return TinyConvNeXt()


    def efficientnet():
        return TinyEfficientNet()


    def needs64():
        return Needs64()


    def declares64():
        model = Needs64()
        model.pretrained_cfg = {"input_size": (3, 64, 64), "crop_pct": 0.875}
        return model
""")

SMOOTH = {"convnext": "gelu", "efficientnet": "silu"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "smooth_models.py"
    path.write_text(MODELS)
    return path


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_visualize_needs_the_option_and_says_the_rule(models, name, tmp_path, capsys) -> None:
    argv = ["visualize", "tabby", "--model", f"{models}:{name}", "--input-size", "32", "--out", str(tmp_path / "v")]
    status, _, err = run_cli(argv, capsys)
    assert status == 2 and "--smooth-activations to rule" in err and SMOOTH[name] in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "v").exists()  # refused before anything was written
    status, out, err = run_cli([*argv, "--smooth-activations", "rule"], capsys)
    assert status == 0, err
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    smooth = summary["smooth_activations"]
    assert smooth["mode"] == "rule" and any(SMOOTH[name] in entry for entry in smooth["rule_applied"])
    assert any("rule (g' = f')" in note for note in summary["notes"]) and "rule (g' = f')" in out
    if name == "efficientnet":
        assert any("sigmoid" in gate for gate in smooth["gates"])
    assert (tmp_path / "v" / "grid.png").is_file()


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_audit_with_the_rule_says_so_in_its_json_and_page(models, name, tmp_path, capsys) -> None:
    out = tmp_path / "audit"
    argv = ["audit", "--samples", "--limit", "3", "--few-images", "2", "--workers", "0", "--input-size", "32"]
    argv += ["--fgsm-steps", "1", "--model", f"{models}:{name}", "--smooth-activations", "rule", "--out", str(out)]
    status, _, err = run_cli(argv, capsys)
    assert status == 0, err
    audit = json.loads((out / "audit.json").read_text())
    smooth = audit["model"]["smooth_activations"]
    assert smooth["mode"] == "rule" and audit["settings"]["smooth_activations"] == "rule"
    assert any(SMOOTH[name] in entry for entry in smooth["rule_applied"])
    page = (out / "index.html").read_text()
    assert "smooth activations: rule (g&#x27; = f&#x27;)" in page and SMOOTH[name] in page


def test_a_64_px_model_without_its_size_is_one_line_and_the_same_db_works_after(models, tmp_path, capsys) -> None:
    db = tmp_path / "runs.sqlite"
    argv = ["class-distance", "--samples", "--limit", "2", "--workers", "0", "--model", f"{models}:needs64"]
    argv += ["--db", str(db)]
    status, _, err = run_cli(argv, capsys)
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "[1, 3, 224, 224]" in err and "the default 224 px" in err and "--input-size" in err
    status, _, err = run_cli([*argv, "--input-size", "64"], capsys)
    assert status == 0, err
    status, _, err = run_cli([*argv, "--input-size", "64", "--smooth-activations", "gradient"], capsys)
    assert status == 2 and "--smooth-activations" in err  # the mode is part of the run's identity
    status, out, err = run_cli(["summarize", str(db), "--json", "--resamples", "10"], capsys)
    assert status == 0, err
    assert json.loads(out)["settings"]["smooth_activations"]["mode"] == "refuse"


def test_class_distance_stores_the_mode_and_what_it_touched(models, tmp_path, capsys) -> None:
    db = tmp_path / "runs.sqlite"
    argv = ["class-distance", "--samples", "--limit", "2", "--workers", "0", "--model", f"{models}:efficientnet"]
    status, _, err = run_cli([*argv, "--input-size", "32", "--db", str(db), "--smooth-activations", "rule"], capsys)
    assert status == 0, err
    status, out, err = run_cli(["summarize", str(db), "--json", "--resamples", "10"], capsys)
    smooth = json.loads(out)["settings"]["smooth_activations"]
    assert smooth["mode"] == "rule" and any("silu" in entry for entry in smooth["rule_applied"])
    assert any("sigmoid" in gate for gate in smooth["gates"])


def test_a_model_declaring_its_size_in_a_timm_config_needs_no_option(models, tmp_path, capsys) -> None:
    argv = ["visualize", "tabby", "--model", f"{models}:declares64", "--out", str(tmp_path / "v")]
    status, out, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "pretrained_cfg" in out and "centre crop 64 px" in out
