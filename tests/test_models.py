"""The paper's models: VGG-16 key names and partial training, weight files, the seeded
truncated-normal init, the on-the-fly readout, EfficientNet-Lite0, and the memory bound
of the paper-size three-layer CNN."""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from tiny_nets import reference_map, rejection_sampled
from torch import nn

import backpropvis
from backpropvis.core.errors import ModelError, WeightsError
from backpropvis.images.samples import load_image
from backpropvis.models import SeededDense, three_layer_cnn, truncated_normal_, vgg16
from backpropvis.models.weights import check_fits, read_state_dict

# torchvision's VGG-16 (configuration "D" of Simonyan & Zisserman, as torchvision.models.vgg16
# documents it): 13 convolutions 3x3 in features (ReLU after each, max-pool after blocks
# 1-5), classifier Linear 25088->4096, ReLU, Dropout, Linear 4096->4096, ReLU, Dropout,
# Linear 4096->1000; 138,357,544 parameters.
TORCHVISION_VGG16 = [
    ("features.0", (64, 3, 3, 3)),
    ("features.2", (64, 64, 3, 3)),
    ("features.5", (128, 64, 3, 3)),
    ("features.7", (128, 128, 3, 3)),
    ("features.10", (256, 128, 3, 3)),
    ("features.12", (256, 256, 3, 3)),
    ("features.14", (256, 256, 3, 3)),
    ("features.17", (512, 256, 3, 3)),
    ("features.19", (512, 512, 3, 3)),
    ("features.21", (512, 512, 3, 3)),
    ("features.24", (512, 512, 3, 3)),
    ("features.26", (512, 512, 3, 3)),
    ("features.28", (512, 512, 3, 3)),
    ("classifier.0", (4096, 25088)),
    ("classifier.3", (4096, 4096)),
    ("classifier.6", (1000, 4096)),
]
PAPER_NAMES = {  # the paper's layer names (Figure 9) -> torchvision module
    "conv1_1": "features.0",
    "conv1_2": "features.2",
    "conv2_1": "features.5",
    "conv2_2": "features.7",
    "conv3_1": "features.10",
    "conv3_2": "features.12",
    "conv3_3": "features.14",
    "conv4_1": "features.17",
    "conv4_2": "features.19",
    "conv4_3": "features.21",
    "conv5_1": "features.24",
    "conv5_2": "features.26",
    "conv5_3": "features.28",
    "fc1": "classifier.0",
    "fc2": "classifier.3",
    "fc3": "classifier.6",
}
TRUNCATED_STD = 0.1 * math.sqrt(1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))
"""Standard deviation of N(0, 0.1^2) cut at +-2 std: 0.1 sqrt(1 - 2 * 2 phi(2) / (2 Phi(2) - 1)) = 0.08796."""


def expected_vgg16_keys() -> list[tuple[str, tuple]]:
    keys = []
    for module, shape in TORCHVISION_VGG16:
        keys += [(f"{module}.weight", shape), (f"{module}.bias", shape[:1])]
    return keys


# --- VGG-16 -----------------------------------------------------------------------------------


def test_vgg16_has_torchvisions_keys_and_shapes(vgg16_random: nn.Module) -> None:
    state = vgg16_random.state_dict()
    assert [(key, tuple(value.shape)) for key, value in state.items()] == expected_vgg16_keys()
    assert sum(value.numel() for value in state.values()) == 138_357_544
    assert not vgg16_random.training
    for paper_name, module in PAPER_NAMES.items():
        assert vgg16_random.layer(paper_name) is vgg16_random.get_submodule(module)
    assert list(PAPER_NAMES) == list(backpropvis.models.VGG16_LAYERS)


def test_vgg16_random_init_is_the_papers(vgg16_random: nn.Module) -> None:
    for module, _ in TORCHVISION_VGG16:
        layer = vgg16_random.get_submodule(module)
        assert layer.weight.abs().max() <= 0.2 + 1e-7, module
        assert torch.count_nonzero(layer.bias) == 0, module
    fc2 = vgg16_random.layer("fc2").weight  # 16.8 M draws: standard error of the std ~ 2e-5
    assert abs(float(fc2.detach().std()) - TRUNCATED_STD) < 2e-4
    assert abs(float(fc2.detach().mean())) < 2e-4


def test_vgg16_layers_are_seeded_distinctly(vgg16_random: nn.Module) -> None:
    """No two layers share values (each has its own seed), and seed 1 differs from seed 0."""
    heads = {name: vgg16_random.layer(name).weight.detach().flatten()[:64] for name in PAPER_NAMES}
    names = list(heads)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not torch.equal(heads[first], heads[second]), (first, second)
    other = nn.Conv2d(512, 512, 3, padding=1)
    backpropvis.models.init.init_layer_(other, 1, "conv5_3")
    assert not torch.equal(other.weight, vgg16_random.layer("conv5_3").weight)


@pytest.fixture(scope="module")
def vgg16_checkpoint(vgg16_random: nn.Module, tmp_path_factory) -> pathlib.Path:
    """A VGG-16 checkpoint unlike the seed-0 random model: its weights negated, biases 0.5."""
    state = {
        key: (-value if key.endswith("weight") else torch.full_like(value, 0.5))
        for key, value in vgg16_random.state_dict().items()
    }
    path = tmp_path_factory.mktemp("weights") / "vgg16-test.pth"
    torch.save(state, path)
    return path


def layer_matches(model: nn.Module, reference: nn.Module, name: str, sign: float) -> bool:
    ours = model.layer(name)
    return torch.equal(ours.weight, sign * reference.layer(name).weight)


def test_vgg16_loads_a_checkpoint_file(vgg16_random: nn.Module, vgg16_checkpoint: pathlib.Path) -> None:
    state = torch.random.get_rng_state()
    model = vgg16(weights=vgg16_checkpoint)
    assert torch.equal(torch.random.get_rng_state(), state)  # building did not draw from the global RNG
    for name in PAPER_NAMES:
        assert layer_matches(model, vgg16_random, name, -1.0), name
        assert (model.layer(name).bias == 0.5).all()
    assert str(vgg16_checkpoint) in model.weights_description and not model.training


def test_vgg16_trained_upto_keeps_the_checkpoint_up_to_that_layer(vgg16_random, vgg16_checkpoint) -> None:
    model = vgg16(weights=vgg16_checkpoint, seed=0, trained_upto="conv3_1")
    names = list(PAPER_NAMES)
    for name in names[: names.index("conv3_1") + 1]:  # conv1_1 ... conv3_1: the checkpoint's
        assert layer_matches(model, vgg16_random, name, -1.0), name
        assert (model.layer(name).bias == 0.5).all()
    for name in names[names.index("conv3_1") + 1 :]:  # conv3_2 ... fc3: seed 0's random ones
        assert layer_matches(model, vgg16_random, name, 1.0), name
        assert torch.count_nonzero(model.layer(name).bias) == 0
    assert "conv3_1" in model.weights_description


def test_vgg16_random_layers_redraws_only_those(vgg16_random, vgg16_checkpoint) -> None:
    model = vgg16(weights=vgg16_checkpoint, seed=0, random_layers=["conv3_1", "fc2"])
    for name in PAPER_NAMES:
        random = name in ("conv3_1", "fc2")
        assert layer_matches(model, vgg16_random, name, 1.0 if random else -1.0), name
        assert bool((model.layer(name).bias == (0.0 if random else 0.5)).all()), name


def test_vgg16_partial_training_is_the_randomization_modules(vgg16_checkpoint) -> None:
    """vgg16(random_layers=...) redraws in place what only_redrawn redraws on a copy: the same values."""
    from backpropvis.models.randomization import default_stages, only_redrawn

    built = vgg16(weights=vgg16_checkpoint, seed=0, random_layers=["conv3_1"])
    trained = vgg16(weights=vgg16_checkpoint)
    assert [stage.label for stage in default_stages(trained)] == ["Conv1-1", "Conv3-1", "Conv5-1", "FC3"]
    copied = only_redrawn(trained, "Conv3-1", seed=0)
    for key, value in built.state_dict().items():
        assert torch.equal(copied.state_dict()[key], value), key
    assert not torch.equal(trained.layer("conv3_1").weight, copied.layer("conv3_1").weight)


def test_vgg16_partial_training_errors() -> None:
    with pytest.raises(WeightsError, match="trained weights"):
        vgg16(weights="random", trained_upto="conv3_1")
    with pytest.raises(WeightsError, match="not both"):
        vgg16(weights="/nonexistent.pth", trained_upto="conv3_1", random_layers=["fc1"])


# --- weight files -------------------------------------------------------------------------------


def partial_vgg16_state(upto: str) -> dict[str, torch.Tensor]:
    """Correctly shaped zero tensors for every key before ``upto`` (cheap: the first layers)."""
    state = {}
    for key, shape in expected_vgg16_keys():
        if key == upto:
            break
        state[key] = torch.zeros(shape)
    return state


def test_weights_whose_shapes_do_not_fit_name_the_first_mismatching_key(tmp_path: pathlib.Path) -> None:
    state = partial_vgg16_state("features.10.weight")
    state["features.10.weight"] = torch.zeros(256, 128, 5, 5)  # wrong shape
    state["features.12.weight"] = torch.zeros(1)  # also wrong, but later
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(WeightsError) as raised:
        vgg16(weights=tmp_path / "shape.pth")
    message = str(raised.value)
    assert "features.10.weight" in message and "features.12" not in message
    assert "[256, 128, 5, 5]" in message and "[256, 128, 3, 3]" in message and "\n" not in message


def test_weights_with_a_missing_or_unexpected_key_name_it(tmp_path: pathlib.Path) -> None:
    state = partial_vgg16_state("features.10.bias")
    state["features.10.weight"] = torch.zeros(256, 128, 3, 3)
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"features\.10\.bias is missing"):
        vgg16(weights=tmp_path / "missing.pth")
    tiny = nn.Sequential(nn.Linear(2, 3))
    extra = dict(tiny.state_dict(), **{"1.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match=r"unexpected key 1\.weight"):
        check_fits(tiny, extra, "test weights")
    with pytest.raises(WeightsError, match=r"_conv_stem\.weight"):  # a VGG file for EfficientNet
        backpropvis.models.efficientnet_lite0(str(tmp_path / "missing.pth"))


def test_unreadable_weight_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        vgg16(weights=tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(corrupt)
    not_tensors = tmp_path / "numbers.pth"
    torch.save({"features.0.weight": 3}, not_tensors)
    with pytest.raises(WeightsError, match="state dict of tensors"):
        read_state_dict(not_tensors)
    nested = tmp_path / "nested.pth"  # a training checkpoint: the weights under "state_dict"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, nested)
    assert torch.equal(read_state_dict(nested)["w"], torch.ones(2))


class Payload:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_weight_files_are_read_with_weights_only(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"features.0.weight": torch.zeros(1), "payload": Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_build_model_by_name() -> None:
    with pytest.raises(ModelError, match="unknown model"):
        backpropvis.models.build_model("resnet50")
    with pytest.raises(ModelError):
        backpropvis.models.build_model("cnn3", weights="imagenet")
    with pytest.raises(ModelError):
        backpropvis.models.build_model("efficientnet-lite0", weights="random")


# --- seeded init --------------------------------------------------------------------------------


def test_truncated_normal_statistics() -> None:
    from scipy import stats

    values = truncated_normal_(torch.empty(1_000_000), 0.1, torch.Generator().manual_seed(0))
    assert values.abs().max() <= 0.2
    assert abs(float(values.std()) - TRUNCATED_STD) < 5e-4  # standard error ~ 6e-5
    assert abs(float(values.mean())) < 5e-4
    assert abs(TRUNCATED_STD - 0.1 * stats.truncnorm(-2, 2).std()) < 1e-9
    # the whole distribution, not just two moments: Kolmogorov-Smirnov on 20 000 values
    test = stats.kstest(values[:20_000].double().numpy() / 0.1, stats.truncnorm(-2, 2).cdf)
    assert test.pvalue > 1e-3
    # the same seed on another dtype or layout gives the same values; another seed, others
    single = truncated_normal_(torch.empty(1000), 0.1, torch.Generator().manual_seed(0))
    as_double = truncated_normal_(torch.empty(1000, dtype=torch.float64), 0.1, torch.Generator().manual_seed(0))
    strided = truncated_normal_(torch.empty(2000)[::2], 0.1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(as_double, single.double())
    assert torch.equal(strided, single)
    assert not torch.equal(truncated_normal_(torch.empty(1000), 0.1, torch.Generator().manual_seed(1)), single)


def test_seeded_draws_are_the_rejection_algorithm_to_the_bit() -> None:
    """truncated_normal_ and the block drawing of SeededDense's columns (normals drawn in
    threads, redraws found for the whole block) give exactly the plain algorithm's values."""
    from backpropvis.models.init import generator_for

    assert torch.equal(
        truncated_normal_(torch.empty(5000), 0.1, torch.Generator().manual_seed(4)),
        rejection_sampled(5000, 0.1, torch.Generator().manual_seed(4)),
    )
    layer = SeededDense(2000, 50, seed=5, name="hidden", materialize_bytes=0)
    wanted = [49, 3, 17, 17, 0]
    expected = torch.stack([rejection_sampled(2000, 0.1, generator_for(5, "hidden", k)) for k in wanted])
    assert torch.equal(layer.columns(wanted), expected)


def small_cnn(seed: int, **options) -> nn.Module:
    return three_layer_cnn(num_filters=4, kernel_size=3, stride=2, num_classes=10, input_size=16, seed=seed, **options)


def test_seeds_are_reproducible_and_distinct() -> None:
    first, again, other = small_cnn(0), small_cnn(0), small_cnn(1)
    assert torch.equal(first.conv.weight, again.conv.weight) and torch.equal(first.readout.weight, again.readout.weight)
    assert not torch.equal(first.conv.weight, other.conv.weight)
    assert not torch.equal(first.readout.weight, other.readout.weight)
    state = torch.random.get_rng_state()
    small_cnn(2)
    backpropvis.models.three_layer_fcn(hidden=8, input_size=4, num_classes=3, seed=0)
    backpropvis.models.efficientnet_lite0()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched


def test_three_layer_cnn_is_eq3() -> None:
    """f_k(x) = sum V[q, k] relu(conv(x))_q, checked with plain torch ops; with pooling (Eq. 6)."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for pool in (None, 2):
        model = small_cnn(3, pool=pool)
        features = torch.relu(nn.functional.conv2d(x, model.conv.weight, model.conv.bias, stride=2, padding=1))
        if pool:
            features = nn.functional.max_pool2d(features, 2)
        assert features.shape[1:] == ((4, 4, 4) if pool else (4, 8, 8))
        with torch.no_grad():
            torch.testing.assert_close(model(x), features.flatten(1) @ model.readout.weight.T)
        assert model.readout.weight.abs().max() <= 0.2 and model.conv.weight.abs().max() <= 0.2


def test_seeded_dense_on_the_fly_equals_materialized() -> None:
    kept = SeededDense(300, 7, seed=3, name="readout")
    drawn = SeededDense(300, 7, seed=3, name="readout", materialize_bytes=0)
    assert not kept.on_the_fly and drawn.on_the_fly and not drawn.supports_batched_backward
    assert drawn.weight is None and sum(b.numel() for b in drawn.buffers()) == 0  # nothing stored
    torch.testing.assert_close(drawn.columns(range(7)), kept.weight)
    x = torch.randn(4, 300, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grad_out = torch.zeros(4, 7)
    grad_out[:, 5] = torch.tensor([1.0, -2.0, 0.5, 3.0])  # one column needed, as for a one-hot target
    (expected,) = torch.autograd.grad(kept(x), x, grad_out)
    (actual,) = torch.autograd.grad(drawn(x), x, grad_out)
    torch.testing.assert_close(drawn(x), kept(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(expected, grad_out @ kept.weight)


def test_engine_on_an_on_the_fly_readout_equals_the_stored_one() -> None:
    kept, drawn = small_cnn(4), small_cnn(4, materialize_bytes=0)
    assert drawn.readout.on_the_fly
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    methods = ["saliency", "deconvnet", "gbp"]
    a = backpropvis.attribute_many(kept, x, ["max", "random", 3], methods, generator=torch.Generator().manual_seed(0))
    b = backpropvis.attribute_many(drawn, x, ["max", "random", 3], methods, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.targets, b.targets)
    steps = [kept.conv, "relu", lambda f: f.flatten(1), lambda f: f @ kept.readout.weight.T]
    for method, rule in zip(methods, [("identity", "activation"), ("relu", "one"), ("relu", "activation")]):
        torch.testing.assert_close(b[method], a[method], rtol=1e-5, atol=1e-6)
        for number in range(3):
            torch.testing.assert_close(a[method][number], reference_map(steps, x, a.targets[number], *rule))


def test_three_layer_fcn_on_the_fly_equals_stored_and_the_reference() -> None:
    """Both dense layers drawn on the fly: the first one's backward needs every column."""
    build = backpropvis.models.three_layer_fcn
    kept = build(hidden=8, input_size=4, num_classes=5, seed=2)
    drawn = build(hidden=8, input_size=4, num_classes=5, seed=2, materialize_bytes=0)
    assert drawn.hidden.on_the_fly and drawn.readout.on_the_fly and not kept.hidden.on_the_fly
    x = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    a = backpropvis.attribute_many(kept, x, ["max", "random"], ["saliency", "gbp"])
    b = backpropvis.attribute_many(drawn, x, ["max", "random"], ["saliency", "gbp"])
    steps = [lambda v: v.flatten(1), lambda v: v @ kept.hidden.weight.T, "relu", lambda v: v @ kept.readout.weight.T]
    for method, rule in (("saliency", ("identity", "activation")), ("gbp", ("relu", "activation"))):
        torch.testing.assert_close(b[method], a[method], rtol=1e-5, atol=1e-6)
        for number in range(2):
            expected = reference_map(steps, x, a.targets[number], *rule).reshape(x.shape)
            torch.testing.assert_close(a[method][number], expected)


# --- preprocessing ------------------------------------------------------------------------------


def test_imagenet_preprocessing_crops_the_centre_and_normalises() -> None:
    """A 256 x 256 image needs no resize: the result is its centre 224 x 224, (p/255 - mean) / std."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    tensor = backpropvis.models.IMAGENET(Image.fromarray(pixels))
    centre = torch.tensor(pixels[16:240, 16:240], dtype=torch.float32).permute(2, 0, 1) / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(tensor, (centre - mean) / std)
    torch.testing.assert_close(backpropvis.models.IMAGENET.unnormalize(tensor), centre)
    # a 512 x 300 image: shorter side to 256, then the 224 centre crop
    assert backpropvis.models.IMAGENET(Image.fromarray(np.zeros((300, 512, 3), dtype=np.uint8))).shape == (3, 224, 224)


def test_tf_lite_preprocessing_is_pixel_minus_127_over_128() -> None:
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    tensor = backpropvis.models.efficientnet_lite0(None).preprocessing(Image.fromarray(pixels))
    expected = (torch.tensor(pixels[16:240, 16:240], dtype=torch.float32).permute(2, 0, 1) - 127.0) / 128.0
    torch.testing.assert_close(tensor, expected)


# --- EfficientNet-Lite0 -------------------------------------------------------------------------


def test_efficientnet_lite0_classifies_the_tabby_as_a_cat() -> None:
    model = backpropvis.models.efficientnet_lite0()
    x = model.preprocessing(load_image("tabby"))[None]
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        logits = model(x)
    assert 281 <= int(logits.argmax()) <= 285
    assert not model.training and "imagenet" in model.weights_description
    # every activation is ReLU6, so strict mode accepts it and the rules apply
    gbp = backpropvis.attribute(model, x, "max", "gbp")
    assert gbp.shape == x.shape and torch.isfinite(gbp).all() and gbp.abs().max() > 0


# --- the paper-size three-layer CNN -------------------------------------------------------------


def test_paper_size_cnn_stores_no_readout_matrix() -> None:
    model = three_layer_cnn(seed=0)  # 256 filters 7x7x3 stride 2 on 224: 112 x 112 x 256 features
    assert model.readout.on_the_fly and model.readout.in_features == 256 * 112 * 112 == 3_211_264
    assert sum(t.numel() for t in list(model.parameters()) + list(model.buffers())) == 256 * 3 * 7 * 7 + 256
    column = model.readout.columns([17])[0]  # V[:, 17]: 3.2 M draws of the paper's init
    assert column.abs().max() <= 0.2 and abs(float(column.std()) - TRUNCATED_STD) < 5e-4
    assert torch.equal(model.readout.columns([17])[0], column)  # drawn again: the same values


PAPER_SIZE_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch, backpropvis
    sys.path.insert(0, sys.argv[1])
    from tiny_nets import reference_map
    model = backpropvis.models.three_layer_cnn(seed=0)  # 256 filters 7x7 stride 2, 224 input, 1000 logits
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    methods = ["saliency", "deconvnet", "gbp"]
    maps = backpropvis.attribute_many(model, x, ["max", "random"], methods, generator=torch.Generator().manual_seed(0))
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of a big pytest
    # process would report its parent's peak.
    peak_kb = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
    # reference through the two needed readout columns only (V[:, k] for the two targets)
    columns = model.readout.columns(maps.targets[:, 0].tolist())
    steps = [model.conv, "relu", lambda f: f.flatten(1), lambda f: f @ columns.T]
    errors = {}
    for method, rule in zip(methods, [("identity", "activation"), ("relu", "one"), ("relu", "activation")]):
        for number in range(2):
            expected = reference_map(steps, x, torch.tensor([number]), *rule)
            errors[f"{method}/{number}"] = float((maps[method][number] - expected).norm() / expected.norm())
    print(json.dumps({
        "peak_gb": peak_kb / 1e6, "on_the_fly": model.readout.on_the_fly, "targets": maps.targets[:, 0].tolist(),
        "shape": list(maps["gbp"].shape), "finite": all(bool(torch.isfinite(m).all()) for m in maps.values()),
        "max_logit": int(maps.logits.argmax()), "errors": errors,
    }))
    """
)


@pytest.mark.slow
def test_paper_size_cnn_runs_in_under_4_gb() -> None:
    """3.2 G readout weights (12.8 GB as a float32 matrix) drawn on the fly: the whole
    process, torch included, stays under 4 GB resident at its peak."""
    done = subprocess.run(
        [sys.executable, "-c", PAPER_SIZE_SCRIPT, str(pathlib.Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["on_the_fly"]
    assert result["peak_gb"] < 4.0, result
    assert result["shape"] == [2, 1, 3, 224, 224] and result["finite"]
    assert result["targets"][0] == result["max_logit"] and result["targets"][1] != result["max_logit"]
    assert max(result["errors"].values()) < 1e-4, result["errors"]
