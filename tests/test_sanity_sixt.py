"""sixt2020: the cosine similarity convergence and the authors' SSIM on hand-made cases and
against scikit-image, the engine's backward signals against a closed-form network (and
nothing of the call outliving it), and the protocol's claims under sabotage."""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import pytest
import torch
from browser import CHROMIUM, SKIP_REASON, screenshot
from sabotage import sabotaged
from skimage.metrics import structural_similarity
from torch import nn

from backpropvis.core.errors import BackpropvisError
from backpropvis.engine.signals import backward_signals
from backpropvis.sanity import find_protocol
from backpropvis.sanity.convergence import cosine_convergence, normalize_sanity, sixt_ssim, uniform_ssim
from backpropvis.sanity.protocol import SanityResult
from backpropvis.sanity.run import RESULT_FILE, SanityOptions, run_sanity
from backpropvis.sanity.sixt import start_vectors
from backpropvis.sanity.sixt_page import draw_sixt


def test_cosine_convergence_by_hand() -> None:
    """Dense signals [S=3, B=2, D=2]: image 0's pairs have |cos| 1, 0, 0 (median 0); image
    1's are parallel up to sign and scale (median 1)."""
    signals = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 1.0]],
            [[2.0, 0.0], [-2.0, -2.0]],
            [[0.0, 3.0], [0.5, 0.5]],
        ]
    )
    assert cosine_convergence(signals) == pytest.approx([0.0, 1.0])


def test_cosine_convergence_per_position_leaves_zero_vectors_out() -> None:
    """Convolutional signals [S=2, B=1, C=2, 1, 3]: positions with |cos| 1, 0.6 and a zero
    vector (no cosine): the median of {1, 0.6} is 0.8; all-zero signals give NaN."""
    first = torch.tensor([[1.0, 3.0, 0.0], [0.0, 4.0, 0.0]])  # channel x position
    second = torch.tensor([[2.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    signals = torch.stack([first, second])[:, None, :, None, :]
    assert cosine_convergence(signals)[0] == pytest.approx(0.8)
    assert math.isnan(cosine_convergence(torch.zeros(3, 1, 2, 2, 2))[0])


def test_random_signals_sit_at_the_gaussian_median() -> None:
    """Independent Gaussian 64-vectors: median |cos| ~ 0.6745 / sqrt(64) (the half-normal median)."""
    signals = torch.randn(5, 1, 64, 16, 16, generator=torch.Generator().manual_seed(0))
    assert cosine_convergence(signals)[0] == pytest.approx(0.6745 / 8, rel=0.08)


def test_normalize_sanity_as_the_authors_wrote_it() -> None:
    maps = torch.randn(2, 9, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for ours, values in zip(normalize_sanity(maps), maps.numpy()):
        low, high = np.percentile(values, 99.5), np.percentile(values, 0.5)
        assert np.allclose(ours.numpy(), np.clip((values - low) / (high - low), 0, 1))


def test_ssim_equals_scikit_image() -> None:
    generator = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 12, 14, generator=generator).double(), torch.rand(3, 12, 14, generator=generator).double()
    reference = [structural_similarity(x.numpy(), y.numpy(), win_size=5, data_range=2.0) for x, y in zip(a, b)]
    assert np.allclose(uniform_ssim(a, b), reference, atol=1e-12)


def test_sixt_ssim_is_the_better_of_the_map_and_its_negation() -> None:
    generator = torch.Generator().manual_seed(3)
    variant, reference = torch.randn(2, 3, 12, 12, generator=generator), torch.randn(2, 3, 12, 12, generator=generator)
    first, second = variant.double().abs().amax(1), reference.double().abs().amax(1)
    expected = []
    for x, y in zip(first, second):
        normalized = normalize_sanity(x[None])[0].numpy()
        plain = structural_similarity(normalized, normalize_sanity(y[None])[0].numpy(), win_size=5, data_range=2.0)
        flipped = structural_similarity(normalized, normalize_sanity(-y[None])[0].numpy(), win_size=5, data_range=2.0)
        expected.append(max(plain, flipped))
    assert np.allclose(sixt_ssim(variant, reference), expected, atol=1e-12)
    assert np.allclose(sixt_ssim(reference, reference), 1.0)


class TwoLayer(nn.Module):
    """f(x) = V relu(W x); weak references to every hidden output it makes."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(4)
        self.W = nn.Linear(3, 4, bias=False)
        self.V = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.W.weight.copy_(torch.randn(4, 3, generator=generator))
            self.V.weight.copy_(torch.randn(2, 4, generator=generator))
        self.requires_grad_(False)
        self.outputs: list[weakref.ref] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.W(x))
        self.outputs.append(weakref.ref(hidden))
        return self.V(hidden)


def test_backward_signals_closed_form_and_lifetime() -> None:
    """At the hidden output every rule passes V^T s (above every activation); at the input
    saliency gives W^T (mask * V^T s), GBP W^T (mask * relu(V^T s)), DeconvNet W^T relu(V^T s).
    Nothing of the call survives it (reference counting only)."""
    model = TwoLayer()
    W, V = model.W.weight, model.V.weight
    x = torch.tensor([[1.0, -0.5, 2.0]])
    seeds = torch.tensor([[[1.0, 0.0]], [[0.3, -2.0]]])  # [S=2, B=1, K=2]
    gc.collect()
    gc.disable()
    try:
        found = backward_signals(model, x, seeds, ["saliency", "gbp", "deconvnet"], lambda t: t, with_input=True)
        assert model.outputs[0]() is None
    finally:
        gc.enable()
    assert found.layers == ("TwoLayer", "input")
    mask = (W @ x[0] > 0).float()
    for index, seed in enumerate(seeds[:, 0]):
        top = V.T @ seed
        expected = {
            "saliency": W.T @ (mask * top),
            "gbp": W.T @ (mask * top.clamp_min(0)),
            "deconvnet": W.T @ top.clamp_min(0),
        }
        for method, values in found.values.items():
            assert torch.allclose(values[0][index, 0], top)
            assert torch.allclose(values[1][index, 0], expected[method])
            assert values[1].grad_fn is None


def test_a_module_called_twice_names_its_second_call() -> None:
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 2))
    found = backward_signals(model, torch.randn(2, 3), torch.randn(2, 2, 2), ["gbp"], lambda t: t, with_input=True)
    assert found.layers == ("1", "1 #2", "input")
    assert [value.shape for value in found.values["gbp"]] == [(2, 2, 4), (2, 2, 4), (2, 2, 3)]


def test_start_vectors() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 1.0, 2.0]])
    classes = start_vectors(logits, 3, "classes", seed=0)
    assert classes.shape == (3, 2, 4) and (classes.sum(-1) == 1).all()
    chosen = classes.argmax(-1)  # [S, B]
    assert chosen[0].tolist() == [1, 0]  # the predicted class first
    assert all(len(set(chosen[:, image].tolist())) == 3 for image in range(2))
    assert torch.equal(start_vectors(logits, 5, "random", seed=1), start_vectors(logits, 5, "random", seed=1))


def tiny_run(out):
    protocol = find_protocol("sixt2020")
    options = SanityOptions(size="tiny", count=3, progress=False)
    return run_sanity(protocol, out, options=options)  # the trained digits VGG


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("sixt-honest")


@pytest.fixture(scope="module")
def honest(folder):
    return tiny_run(folder)


def test_honest_run_on_the_digits_vgg(honest, tmp_path) -> None:
    result, claims = honest
    held = {claim["id"] for claim in claims if claim["holds"]}
    assert {"gbp_converges", "gbp_ignores_the_top_layer"} <= held
    csc = result.series("csc")
    assert csc[-1].label == "input" and csc[0].label == "relu_fc1"
    top = [csc[0].methods[method]["csc"].mean for method in result.methods]
    assert max(top) - min(top) < 1e-9  # above every activation the rules agree
    assert result.series("cascading")[0].label == "trained"


@pytest.mark.parametrize("kind", ["plain-gradient", "zero-gbp"])
def test_claims_fail_under_sabotage(kind: str, honest, tmp_path) -> None:
    _, claims = honest
    held = {claim["id"] for claim in claims if claim["holds"]}
    with sabotaged(kind):
        _, broken = tiny_run(tmp_path)
    failing = {claim["id"] for claim in broken if not claim["holds"]}
    assert held & failing, f"every claim the honest run holds still holds under {kind}"


def test_figure_redrawn_from_the_saved_result(honest, tmp_path) -> None:
    result, _ = honest
    again = SanityResult.from_json(result.to_json(), result.arrays)
    draw_sixt(again, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 10_000 and (tmp_path / "figure-maps.png").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_the_page_renders_in_headless_chromium(honest, folder, tmp_path) -> None:
    alone = tmp_path / "alone.html"  # the page alone: every figure is inside it
    alone.write_bytes((folder / "index.html").read_bytes())
    text = alone.read_text()
    assert "csc (csc)" in text and "random vectors" in text and "from 3 images only" in text
    picture = screenshot(alone, tmp_path, height=3000)
    assert float(picture[300:1800].std()) > 30.0  # the curves and the map grid are drawn


@pytest.mark.parametrize(
    "settings, message",
    [({"vectors": 1}, "vectors"), ({"start": "logits"}, "start"), ({"methods": ("nope",)}, "nope")],
)
def test_bad_settings_are_refused_before_anything_runs(settings, message, tmp_path) -> None:
    with pytest.raises(BackpropvisError, match=message):
        run_sanity("sixt2020", tmp_path, options=SanityOptions(size="tiny", settings=settings, progress=False))
    assert not (tmp_path / RESULT_FILE).exists()
