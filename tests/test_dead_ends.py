"""No dead ends for a model brought from elsewhere (issue 17, part 3).

- The input size a model declares is used: timm's ``pretrained_cfg`` / ``default_cfg``
  (``input_size``, ``crop_pct``, ``mean``, ``std``) becomes its preprocessing.
- A model whose forward pass fails at the size tried gets one line naming that shape,
  where the size came from and the parameter that sets it, before anything is written.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backpropvis.core.errors import ModelError
from backpropvis.models import IMAGENET
from backpropvis.models.preprocessing import declared_preprocessing
from backpropvis.models.probe import probe_input_size


class Needs64(nn.Module):
    """conv 3->2 stride 4 -> flatten -> dense: takes exactly [B, 3, 64, 64]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 2, 4, stride=4), nn.Linear(2 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_a_timm_style_config_declares_the_preprocessing() -> None:
    model = Needs64()
    assert declared_preprocessing(model) is None
    model.default_cfg = {"input_size": (3, 64, 64)}
    declared = declared_preprocessing(model)
    assert declared is not None and (declared.crop, declared.resize) == (64, round(64 * 256 / 224))
    assert declared.mean == IMAGENET.mean and declared.std == IMAGENET.std
    model.pretrained_cfg = {"input_size": [3, 96, 96], "crop_pct": 0.9, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    declared = declared_preprocessing(model)  # pretrained_cfg (timm >= 0.9) before default_cfg
    assert declared is not None and (declared.crop, declared.resize, declared.std) == (96, 107, (0.25,) * 3)
    for odd in ((1, 64, 64), (3, 64, 48), "64"):
        model.pretrained_cfg = {"input_size": odd}
        assert declared_preprocessing(model) is None, odd


def test_a_forward_pass_failing_at_the_size_tried_is_one_line_naming_it() -> None:
    model = Needs64().eval()
    with pytest.raises(ModelError) as raised:
        probe_input_size(model, IMAGENET, name="Needs64", size_from="the default 224 px")
    message = str(raised.value)
    assert "[1, 3, 224, 224]" in message and "the default 224 px" in message and "input_size" in message
    assert "\n" not in message
    probe_input_size(model, IMAGENET.resized(64), name="Needs64", size_from="input_size=64")  # no error


def test_a_run_that_never_finished_a_batch_does_not_block_other_settings(tmp_path) -> None:
    """A database whose run holds no row (its first batch failed) takes the corrected settings;
    one holding a row (a result or a failure) still refuses them, naming the difference."""
    from backpropvis.core.errors import StoreError
    from backpropvis.stats.store import ResultsStore, RunSettings

    path = tmp_path / "runs.sqlite"
    first = RunSettings("my.py:build", "random", ("gbp",), "max-random", 0, None, "samples")
    corrected = RunSettings("my.py:build", "random", ("gbp",), "max-random", 0, 64, "samples")
    ResultsStore(path, first, "as built", {}).close()  # opened, then the first batch failed
    store = ResultsStore(path, corrected, "as built", {})
    store.write_batch([], [("a.png", "sha256:0", "unreadable")], 1)
    store.close()
    with pytest.raises(StoreError, match="`input_size` 64 there, None here"):
        ResultsStore(path, first, "as built", {})
    ResultsStore(path, corrected, "as built", {}).close()  # the same settings resume
