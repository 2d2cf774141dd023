"""The theory module against the engine and hand-made cases, and every theory study at a tiny size.

The closed forms (Lemma 1, Eq. 4; Eq. 6 with the pool's switches) share nothing with
the engine but the weights: agreement to 1e-5 is the cross-check of both. The limit
image, the switches and the law fits are checked on cases small enough to compute by
hand (or by plain loops).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import backpropvis
from backpropvis import theory
from backpropvis.cli import main
from backpropvis.experiments import THEORY
from backpropvis.experiments.base import RunContext, run_experiment
from backpropvis.images.samples import load_image
from backpropvis.models import three_layer_cnn, three_layer_fcn

METHODS = ("saliency", "deconvnet", "gbp")


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --- Lemma 1 / Eq. 6 against the engine ---------------------------------------------------

CONFIGURATIONS = [
    # num_filters, kernel_size, stride, pool, input_size, seed
    (8, 7, 2, None, 24, 0),
    (16, 3, 1, None, 17, 1),
    (5, 5, 3, None, 31, 2),
    (12, 3, 1, 2, 21, 3),  # odd conv output: the pool drops the last row and column
    (6, 5, 2, 3, 40, 4),
    (32, 11, 4, 2, 45, 5),
    (64, 7, 2, 2, 48, 6),
]


@pytest.mark.parametrize("num_filters, kernel_size, stride, pool, input_size, seed", CONFIGURATIONS)
def test_closed_form_equals_engine(num_filters, kernel_size, stride, pool, input_size, seed):
    model = three_layer_cnn(num_filters, kernel_size, stride, pool, num_classes=3, input_size=input_size, seed=seed)
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed))
    single = backpropvis.attribute_many(model, x, [0, 2], list(METHODS))
    model = model.double()
    double = backpropvis.attribute_many(model, x.double(), [0, 2], list(METHODS))
    columns = model.readout.columns([0, 2]).double()
    for method in METHODS:
        for number, column in enumerate(columns):
            closed = theory.closed_form_map(
                x[0].double(),
                model.conv.weight.detach(),
                column,
                method,
                stride=stride,
                padding=kernel_size // 2,
                pool=pool,
            )
            assert _relative_error(closed, double[method][number, 0]) < 1e-5, (method, number)
            assert _relative_error(closed, single[method][number, 0].double()) < 1e-5, (method, number)
    # the three methods really differ, so agreeing with each is not agreeing with one
    assert _relative_error(double["saliency"][0, 0], double["gbp"][0, 0]) > 0.1


POOLINGS = [
    # pool window, stride, padding, mode, conv (num_filters, kernel, stride, input_size), seed
    (2, 2, 0, "average", (8, 3, 1, 13), 7),  # non-overlapping, odd side: the last row and column are dropped
    (3, 2, 0, "max", (10, 5, 2, 29), 8),  # overlapping windows: an output can be chosen twice
    (3, 2, 0, "average", (10, 5, 2, 29), 9),
    (9, 1, 4, "max", (6, 7, 1, 20), 10),  # the authors' code: 9 x 9, stride 1, "SAME" padding
    (9, 1, 4, "average", (6, 7, 1, 20), 11),
    (3, 3, 1, "max", (12, 3, 1, 17), 12),  # padded, non-overlapping
]


@pytest.mark.parametrize("pool, pool_stride, pool_padding, pool_mode, conv, seed", POOLINGS)
def test_closed_form_equals_engine_for_any_pool(pool, pool_stride, pool_padding, pool_mode, conv, seed):
    """Eq. 6 (max, with the switches summed over overlapping windows) and the average pool's
    closed form against the engine in float64, for each of the three methods."""
    num_filters, kernel_size, stride, input_size = conv
    pooling = {"pool_stride": pool_stride, "pool_padding": pool_padding, "pool_mode": pool_mode}
    model = three_layer_cnn(
        num_filters, kernel_size, stride, pool, num_classes=3, input_size=input_size, seed=seed, **pooling
    ).double()
    assert isinstance(model.pool, torch.nn.MaxPool2d if pool_mode == "max" else torch.nn.AvgPool2d)
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    engine = backpropvis.attribute_many(model, x, [0, 2], list(METHODS))
    columns = model.readout.columns([0, 2]).double()
    maps = {}
    for method in METHODS:
        for number, column in enumerate(columns):
            closed = theory.closed_form_map(
                x[0],
                model.conv.weight.detach(),
                column,
                method,
                stride=stride,
                padding=kernel_size // 2,
                pool=pool,
                **pooling,
            )
            assert _relative_error(closed, engine[method][number, 0]) < 1e-10, (method, number)
            maps[method, number] = closed
    assert _relative_error(maps["saliency", 0], maps["gbp", 0]) > 0.1
    # Under max-pooling the readout reaches only chosen outputs, so DeconvNet equals GBP
    # exactly when no chosen output is inactive (no window of zeros): the case of the
    # authors' 9 x 9 stride-1 pool. Under average pooling every output gets a share.
    found = theory.switch_disagreement(
        x[0],
        model.conv.weight.detach(),
        stride=stride,
        padding=kernel_size // 2,
        pool=pool,
        pool_stride=pool_stride,
        pool_padding=pool_padding,
    )
    if pool_mode == "max" and found.chosen_but_inactive == 0:
        assert _relative_error(maps["deconvnet", 0], maps["gbp", 0]) < 1e-12
    else:
        assert _relative_error(maps["deconvnet", 0], maps["gbp", 0]) > 0.01


def test_pool_switches_of_overlapping_padded_windows_match_max_pool_indices():
    """Chosen by at least one window <=> PyTorch's max-pool names it in some window."""
    outputs = torch.randn(3, 9, 8, generator=torch.Generator().manual_seed(2)).clamp_min(0)
    outputs[1, :4, :4] = 0.0  # windows of zeros: the first valid position wins
    for window, stride, padding in ((3, 2, 0), (3, 1, 1), (9, 1, 4), (4, 3, 2)):
        switches = theory.pool_switches(outputs, window, stride, padding)
        _, indices = F.max_pool2d(outputs.unsqueeze(0), window, stride, padding, return_indices=True)
        expected = torch.zeros(3 * 9 * 8, dtype=torch.bool)
        expected[(indices[0] + (torch.arange(3) * 9 * 8).view(3, 1, 1)).flatten()] = True
        assert torch.equal(switches.flatten(), expected), (window, stride, padding)


def test_average_pool_closed_form_by_hand():
    """One 1 x 1 filter (w.y = the pixel), a 2 x 2 average pool, stride 1: each output's
    gradient is the sum over the windows containing it of V / 4."""
    image = torch.tensor([[[1.0, -2.0, 3.0], [4.0, 5.0, -6.0], [7.0, 8.0, 9.0]]], dtype=torch.float64)
    filters = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    readout = torch.tensor([4.0, -8.0, 12.0, -16.0], dtype=torch.float64)  # windows at (0,0), (0,1), (1,0), (1,1)
    common = {"stride": 1, "padding": 0, "pool": 2, "pool_stride": 1, "pool_mode": "average"}
    gradient = torch.tensor([[1.0, -1.0, -2.0], [4.0, -2.0, -6.0], [3.0, -1.0, -4.0]], dtype=torch.float64)
    active = (image[0] > 0).double()
    expected = {
        "saliency": gradient * active,
        "deconvnet": gradient.clamp_min(0),
        "gbp": gradient.clamp_min(0) * active,
    }
    for method, map_ in expected.items():
        closed = theory.closed_form_map(image, filters, readout, method, **common)
        assert torch.equal(closed[0], map_), method
    with pytest.raises(ValueError, match="max-pooling"):
        theory.closed_form_map(image, filters, readout, "gbp", approximate_pool=True, **common)


def test_switch_disagreement_with_overlapping_windows_by_hand():
    """A 1 x 3 row, 2-wide windows at stride 1: [3, 1, 2] -> windows (3, 1) and (1, 2) choose
    3 and 2; 1 is active but never chosen."""
    one = torch.ones(1, 1, 1, 1)
    row = torch.tensor([[[3.0, 1.0, 2.0], [-1.0, -1.0, -1.0]]])  # 2 x 3; the second row is inactive
    found = theory.switch_disagreement(row, one, stride=1, padding=0, pool=2, pool_stride=1)
    # windows: 2 x 2 at stride 1 over [2, 3] -> 1 x 2 windows, covering all six outputs;
    # window 1 (cols 0-1) chooses (0,0)=3, window 2 (cols 1-2) chooses (0,2)=2.
    assert (found.active_but_not_chosen, found.chosen_but_inactive) == (1 / 6, 0.0)


def test_closed_forms_state_eq2_themselves(monkeypatch):
    """A wrong GBP rule in rules.py (h swapped to the identity) changes the engine's map,
    and the closed form, which never reads rules.py, no longer agrees with it."""
    from backpropvis.core.rules import RULES, Rule

    model = three_layer_cnn(12, 5, 2, 2, num_classes=2, input_size=24, seed=3).double()
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    column = model.readout.columns([1])[0].double()
    closed = theory.closed_form_map(x[0], model.conv.weight.detach(), column, "gbp", stride=2, padding=2, pool=2)
    right = backpropvis.attribute_many(model, x, [1], ["gbp"])["gbp"][0, 0]
    assert _relative_error(closed, right) < 1e-10
    monkeypatch.setitem(RULES, "gbp", Rule("gbp", h="identity", g="activation"))
    wrong = backpropvis.attribute_many(model, x, [1], ["gbp"])["gbp"][0, 0]
    assert torch.equal(
        theory.closed_form_map(x[0], model.conv.weight.detach(), column, "gbp", stride=2, padding=2, pool=2), closed
    )
    assert _relative_error(closed, wrong) > 0.1
    with pytest.raises(backpropvis.BackpropvisError, match="closed forms"):
        theory.closed_form_map(x[0], model.conv.weight.detach(), column, RULES["gbp"], stride=2, padding=2)


def test_eq7_deconvnet_takes_gbps_form():
    """Eq. 7: with "chosen <=> w.y > 0", DeconvNet with pooling is exactly GBP's form,
    while with the exact switches (Eq. 6) the two differ."""
    model = three_layer_cnn(16, 5, 2, 2, num_classes=1, input_size=32, seed=0).double()
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w, v = model.conv.weight.detach(), model.readout.columns([0])[0].double()
    common = {"stride": 2, "padding": 2, "pool": 2}
    approximate = {m: theory.closed_form_map(x, w, v, m, approximate_pool=True, **common) for m in ("deconvnet", "gbp")}
    exact = {m: theory.closed_form_map(x, w, v, m, **common) for m in ("deconvnet", "gbp")}
    assert torch.allclose(approximate["deconvnet"], approximate["gbp"])
    assert _relative_error(exact["deconvnet"], exact["gbp"]) > 0.1


def test_pool_switches_match_max_pool_indices_with_ties():
    outputs = torch.randn(4, 6, 7, generator=torch.Generator().manual_seed(0)).clamp_min(0)
    outputs[1] = 0.0  # windows of zeros: the first element wins
    outputs[2, :2, :2] = 1.5  # a tie of positive values
    switches = theory.pool_switches(outputs, 2)
    _, indices = F.max_pool2d(outputs.unsqueeze(0), 2, return_indices=True)
    expected = torch.zeros(4 * 6 * 7, dtype=torch.bool)
    offsets = (torch.arange(4) * 6 * 7).view(4, 1, 1)
    expected[(indices[0] + offsets).flatten()] = True
    assert torch.equal(switches.flatten(), expected)
    assert not switches[:, :, 6].any()  # the column the floor-mode pool drops


def test_switch_disagreement_by_hand():
    one = torch.ones(1, 1, 1, 1)  # a 1x1 filter on one channel: w.y = the pixel
    active = torch.tensor([[[1.0, 2.0], [-1.0, -3.0]]])  # (0,0) active, loses to (0,1)
    found = theory.switch_disagreement(active, one, stride=1, padding=0, pool=2)
    assert (found.total, found.active_but_not_chosen, found.chosen_but_inactive) == (0.25, 0.25, 0.0)
    dead = -torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # all zero after the ReLU: the first is chosen
    found = theory.switch_disagreement(dead, one, stride=1, padding=0, pool=2)
    assert (found.total, found.active_but_not_chosen, found.chosen_but_inactive) == (0.25, 0.0, 0.25)


# --- Theorem 1: the limit image and recovery ---------------------------------------------


def test_limit_image_of_a_single_patch_is_the_normalised_image():
    x = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(theory.limit_image(x, 5, 1, 0), x / x.norm())


def test_limit_image_without_overlap_normalises_each_patch():
    x = torch.arange(1.0, 17.0, dtype=torch.float64).reshape(1, 4, 4)
    x[:, 2:, :2] = 0.0  # a patch of zeros stays zero (no NaN)
    limit = theory.limit_image(x, 2, 2, 0)
    for row in (0, 2):
        for col in (0, 2):
            patch = x[:, row : row + 2, col : col + 2]
            norm = patch.norm()
            expected = patch / norm if norm > 0 else torch.zeros_like(patch)
            assert torch.allclose(limit[:, row : row + 2, col : col + 2], expected)


def test_limit_image_with_overlap_and_padding_matches_loops():
    x = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    kernel, stride, padding = 3, 2, 1
    padded = F.pad(x, (padding,) * 4)
    expected = torch.zeros_like(padded)
    for top in range(0, padded.shape[1] - kernel + 1, stride):
        for left in range(0, padded.shape[2] - kernel + 1, stride):
            patch = padded[:, top : top + kernel, left : left + kernel]
            expected[:, top : top + kernel, left : left + kernel] += patch / patch.norm()
    expected = expected[:, padding:-padding, padding:-padding]
    assert torch.allclose(theory.limit_image(x, kernel, stride, padding), expected)


def test_recovery_is_the_cosine_with_the_limit():
    limit = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    other = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(1))
    orthogonal = other - (other * limit).sum() / (limit * limit).sum() * limit
    maps = torch.stack([3.0 * limit, -limit, orthogonal])
    assert torch.allclose(theory.recovery(maps, limit), torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64), atol=1e-6)


def test_gbp_closed_form_tends_to_the_limit_image():
    """Theorem 1 on a tiny image, from the weights alone: recovery rises with N toward 1,
    and tan^2 = A / N with A near pi^2 p for non-overlapping patches."""
    x = torch.randn(3, 24, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    limit = theory.limit_image(x, 3, 3, 1)
    recoveries = []
    for count in (16, 256, 4096):
        model = three_layer_cnn(count, 3, 3, num_classes=1, input_size=24, seed=1)
        gbp = theory.closed_form_map(
            x, model.conv.weight.detach().double(), model.readout.columns([0])[0].double(), "gbp", stride=3, padding=1
        )
        recoveries.append(float(theory.recovery(gbp, limit)))
    assert recoveries[0] < recoveries[1] < recoveries[2]
    assert recoveries[2] > 0.9
    amplitude = theory.law_amplitude([16, 256, 4096], recoveries)
    assert 0.5 * math.pi**2 * 27 < amplitude < 2 * math.pi**2 * 27


# --- the laws and statistics --------------------------------------------------------------


def test_power_law_fit_recovers_a_known_slope():
    x = np.array([8, 16, 32, 64, 128, 256, 512], dtype=float)
    exact = theory.fit_power_law(x, 5.0 / x)
    assert exact.slope == pytest.approx(-1.0) and math.exp(exact.intercept) == pytest.approx(5.0)
    noise = np.exp(np.random.default_rng(0).normal(0.0, 0.1, x.size))
    noisy = theory.fit_power_law(x, 5.0 * x**-0.7 * noise)
    assert noisy.slope_low < -0.7 < noisy.slope_high
    assert noisy.slope_high - noisy.slope_low < 0.3
    with pytest.raises(ValueError):
        theory.fit_power_law([1, 2], [1, 2])


def test_law_amplitude_and_filters_needed_round_trip():
    counts = np.array([64, 256, 1024])
    recoveries = 1 / np.sqrt(1 + 300.0 / counts)  # tan^2 = 300 / N exactly
    assert theory.law_amplitude(counts, recoveries) == pytest.approx(300.0)
    needed = theory.filters_needed(300.0, 0.9)
    assert 1 / math.sqrt(1 + 300.0 / needed) == pytest.approx(0.9)


def test_gbp_amplitude_from_the_truncated_normal_moments():
    """A = pi p E[h^2] / E[h]^2 with h = ReLU of the paper's normal cut at +-2 std; the
    moments here come from scipy's truncated normal (half of it positive, by symmetry)."""
    from scipy import stats

    truncated = stats.truncnorm(-2.0, 2.0)
    positive = stats.truncnorm(0.0, 2.0)  # v given v > 0: E[h^k] = P(v > 0) E[v^k | v > 0], P(v > 0) = 1/2
    first, second = 0.5 * positive.mean(), 0.5 * positive.moment(2)
    assert second == pytest.approx(truncated.var() / 2)
    assert theory.gbp_amplitude(147) == pytest.approx(math.pi * 147 * second / first**2)
    assert theory.gbp_amplitude(1, truncation=40.0) == pytest.approx(math.pi**2, rel=1e-6)  # untruncated: pi^2 p


def test_expected_gbp_recovery_matches_the_engine_on_random_fcns():
    """The law's prediction for the FCN (one patch: the whole image, d values) against
    GBP's cosine with x from the engine, averaged over seeds: Theorem 1 quantitatively."""
    size, hidden = 24, 1024
    measured = []
    for seed in range(4):
        model = three_layer_fcn(hidden=hidden, input_size=size, num_classes=4, seed=seed)
        x = model.preprocessing.batch([load_image("tabby")])
        gbp = backpropvis.attribute(model, x, target=0, method="gbp")[0]
        measured.append(float(theory.recovery(gbp, x[0])))
    predicted = theory.expected_gbp_recovery(hidden, x[0].numel())
    assert 0.2 < predicted < 0.5  # a regime where the law is informative
    assert np.mean(measured) == pytest.approx(predicted, rel=0.1)


def test_gaussianity_statistics():
    rng = np.random.default_rng(0)
    normal = theory.gaussianity(torch.from_numpy(rng.normal(3.0, 2.0, 50_000)))
    assert normal["ks"] < 0.01 and abs(normal["skewness"]) < 0.05 and abs(normal["excess_kurtosis"]) < 0.1
    skewed = theory.gaussianity(torch.from_numpy(rng.exponential(1.0, 50_000)))
    assert skewed["ks"] > 0.05 and skewed["skewness"] == pytest.approx(2.0, abs=0.2)
    assert skewed["excess_kurtosis"] == pytest.approx(6.0, abs=1.5)


def test_effective_dimension():
    assert theory.effective_dimension(torch.eye(6)) == pytest.approx(6.0)
    line = torch.outer(torch.arange(1.0, 5.0), torch.randn(9, generator=torch.Generator().manual_seed(0)))
    assert theory.effective_dimension(line) == pytest.approx(1.0)


# --- every study at a tiny size -----------------------------------------------------------

ASSERTED_AT_TINY = {
    "closed-form": {"closed_form_equals_engine", "pooling_turns_deconvnet_into_recovery"},
    "recovery": {
        "recovery_law_slope_low",
        "recovery_law_slope_high",
        "filters_needed_linear_in_p",
        "fcn_needs_d_over_p_more",
    },
    "gaussianity": {
        "saliency_is_gaussian",
        "deconvnet_is_gaussian",
        "saliency_carries_no_image",
        "deconvnet_carries_no_image",
        "gbp_recovers",
    },
    "depth": {
        "gbp_recovery_stays_high",
        "gbp_beats_saliency_in_depth",
        "saliency_is_gbp_from_conv1_1",
        "deconvnet_noise_before_pool",
        "deconvnet_image_after_pool",
    },
    "dead-zones": {
        "trained_filters_small_subspace",
        "gbp_class_independent",
        "deconvnet_class_independent",
        "gbp_carries_the_image",
        "no_zero_map",
    },
}
"""Per study, the claims asserted at its tiny size (``Experiment.tiny``): recovery at N = 4096
needs the full sweep; GBP's edge correlation changes sign with the image size."""

TINY = {name: (THEORY[name].tiny, claims) for name, claims in ASSERTED_AT_TINY.items()}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """Each study run once at its tiny size, on demand: name -> (result, its folder)."""
    cache = {}

    def run(name: str):
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            experiment = dataclasses.replace(THEORY[name], quick=TINY[name][0])
            cache[name] = (run_experiment(experiment, RunContext(out=out, quick=True, progress=False)), out)
        return cache[name]

    return run


@pytest.mark.parametrize("name", list(TINY))
def test_study_at_tiny_size(name, tiny_results):
    settings, asserted = TINY[name]
    assert set(settings) == set(THEORY[name].quick), "tiny settings must name every setting of the study"
    result, out = tiny_results(name)
    assert result.skipped is None and result.group == "theory"
    verdicts = {claim.id: claim for claim in result.claims}
    assert asserted <= set(verdicts)
    for claim_id in asserted:
        assert verdicts[claim_id].holds, verdicts[claim_id]
    assert (out / "figure.png").stat().st_size > 10_000


def test_recovery_study_values_are_consistent(tiny_results):
    """The recovery study's numbers hang together: recovery rises with N, the slope lies
    in its own interval, d / p is the geometry's."""
    settings, _ = TINY["recovery"]
    metrics = tiny_results("recovery")[0].metrics
    means = [metrics[f"recovery_at_{count}"] for count in settings["num_filters"]]
    assert means == sorted(means) and 0 < means[0] < means[-1] < 1
    assert metrics["recovery_law_slope_low"] <= metrics["recovery_law_slope"] <= metrics["recovery_law_slope_high"]
    # d / p counted on the networks themselves: the FCN's input size over one CNN filter's weights
    fcn = three_layer_fcn(hidden=4, input_size=settings["fcn_input_size"], num_classes=2)
    inputs = fcn.preprocessing.batch([load_image("tabby")])
    cnn = three_layer_cnn(4, settings["kernel_size"], num_classes=2, input_size=settings["fcn_input_size"])
    filters = cnn.conv.weight
    assert metrics["d_over_p"] == pytest.approx(inputs[0].numel() / filters[0].numel())


# --- the command --------------------------------------------------------------------------


def test_cli_theory_writes_figure_metrics_and_report(tmp_path, monkeypatch, capsys):
    settings, _ = TINY["gaussianity"]
    monkeypatch.setitem(THEORY, "gaussianity", dataclasses.replace(THEORY["gaussianity"], quick=settings))
    out = tmp_path / "report"
    assert main(["theory", "gaussianity", "--quick", "--out", str(out), "--image", "astronaut"]) == 0
    metrics = json.loads((out / "gaussianity" / "metrics.json").read_text())
    assert metrics["group"] == "theory" and metrics["settings"]["input_size"] == 64
    assert {claim["id"] for claim in metrics["claims"]} >= {"saliency_is_gaussian", "gbp_recovers"}
    assert (out / "gaussianity" / "figure.png").is_file()
    assert "gaussianity" in (out / "index.html").read_text()
    assert "claims hold" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["theory", "no-such-study"], "unknown experiment"),
        (["theory", "gaussianity", "--image", "/no/such/image.png"], "neither an image file"),
    ],
)
def test_cli_theory_bad_input_is_one_line_and_status_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
