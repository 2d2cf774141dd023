"""The rule engine against independent references.

- Captum 0.9 (``Saliency(abs=False)``, ``Deconvolution``, ``GuidedBackprop``) on models it
  handles: a random VGG-16 and a small ResNet-style net with ``nn.ReLU`` modules.
- A hand-written backward pass (:func:`tiny_nets.reference_map`, explicit masks) on
  every ReLU spelling, including the functional ones Captum silently leaves alone.
- The API's contract: one forward pass, targets, strict mode, errors, and a model that
  is exactly as it was after the call.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_nets import SPELLINGS, SpellingNet, reference_map, seeded_
from torch import nn

import backpropvis
from backpropvis.core.errors import InputError, ModelError, NoActivationError, TargetError, UnsupportedActivationError
from backpropvis.core.metrics import cosine_similarity
from backpropvis.engine import resolve_targets

captum_attr = pytest.importorskip("captum.attr")

METHODS = ("saliency", "deconvnet", "gbp")
RULE_OF = {"saliency": ("identity", "activation"), "deconvnet": ("relu", "one"), "gbp": ("relu", "activation")}
FUNCTIONAL_SPELLINGS = [spelling for spelling in SPELLINGS if "module" not in spelling]
MODULE_SPELLINGS = [spelling for spelling in SPELLINGS if "module" in spelling]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


def captum_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str) -> torch.Tensor:
    """Captum 0.9's map of ``method`` for ``target`` [B]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns about requires_grad and its hooks
        if method == "saliency":
            return captum_attr.Saliency(model).attribute(x.clone(), target=target, abs=False).detach()
        explainer = captum_attr.Deconvolution if method == "deconvnet" else captum_attr.GuidedBackprop
        return explainer(model).attribute(x.clone(), target=target).detach()


def seeded_input(shape, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the input, then ReLU; every ReLU its own module."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + x)


class SmallResNet(nn.Module):
    """Stem conv-BN-ReLU-maxpool, two basic blocks, global average pool, dense to 10.
    Shapes: [B, 3, 16, 16] -> [B, 10]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


# --- Captum cross-checks on models Captum handles ------------------------------------------


def test_vgg16_equals_captum(vgg16_random: nn.Module) -> None:
    x = seeded_input((2, 3, 32, 32))
    maps = backpropvis.attribute_many(vgg16_random, x, ["max", torch.tensor([7, 281])], METHODS)
    for method in METHODS:
        # Captum takes one target tensor [B] per call: the max for one sample, 281 for the other
        target = torch.stack([maps.targets[0, 0], maps.targets[1, 1]])
        expected = captum_map(vgg16_random, x, target, method)
        assert expected.abs().max() > 0
        actual = torch.stack([maps[method][0, 0], maps[method][1, 1]])
        assert relative_error(actual, expected) < 1e-5, method


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_small_resnet_equals_captum(dtype: torch.dtype) -> None:
    model = seeded_(SmallResNet(), seed=3).eval().to(dtype)
    x = seeded_input((3, 3, 16, 16), dtype=dtype)
    maps = backpropvis.attribute_many(model, x, ["max", torch.tensor([0, 4, 9])], METHODS)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for method in METHODS:
        assert maps[method].dtype == dtype
        for number in range(2):
            expected = captum_map(model, x, maps.targets[number], method)
            assert relative_error(maps[method][number], expected) < tolerance, (method, number)
    # The three methods really differ here, so the cross-check has teeth.
    assert relative_error(maps["gbp"], maps["saliency"]) > 0.1
    assert relative_error(maps["deconvnet"], maps["gbp"]) > 0.1


# --- every ReLU spelling against the hand-written backward pass ------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_relu_spelling_equals_hand_reference(spelling: str, dtype: torch.dtype) -> None:
    model = SpellingNet(spelling).to(dtype)
    x = seeded_input((3, 3, 16, 16), dtype=dtype)
    maps = backpropvis.attribute_many(model, x, ["max", 2], METHODS)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for method in METHODS:
        for number in range(2):
            expected = reference_map(model.steps(), x, maps.targets[number], *RULE_OF[method])
            assert expected.abs().max() > 0
            assert relative_error(maps[method][number], expected) < tolerance, (method, number)


@pytest.mark.parametrize("spelling", FUNCTIONAL_SPELLINGS)
def test_captum_leaves_functional_relu_unmodified_and_we_do_not(spelling: str) -> None:
    """Captum hooks nn.ReLU modules only: with F.relu / torch.relu / x.relu() / relu_ its
    DeconvNet and Guided Backprop silently return the plain gradient."""
    model = SpellingNet(spelling)
    x = seeded_input((3, 3, 16, 16))
    maps = backpropvis.attribute_many(model, x, ["max"], METHODS)
    target = maps.targets[0]
    for method in ("deconvnet", "gbp"):
        reference = reference_map(model.steps(), x, target, *RULE_OF[method])
        captum = captum_map(model, x, target, method)
        assert relative_error(maps[method][0], reference) < 1e-5
        assert relative_error(captum, reference) > 0.5, f"Captum got {method} right on {spelling}"
        assert relative_error(captum, maps["saliency"][0]) < 1e-5  # it is the plain gradient


@pytest.mark.parametrize("spelling", MODULE_SPELLINGS)
def test_captum_agrees_on_relu_modules_even_reused_or_inplace(spelling: str) -> None:
    """Captum 0.9 handles nn.ReLU modules, inplace and reused ones included (its hooks
    fire on each call): the reference, Captum and the engine agree."""
    model = SpellingNet(spelling)
    x = seeded_input((3, 3, 16, 16))
    maps = backpropvis.attribute_many(model, x, ["max"], METHODS)
    for method in METHODS:
        reference = reference_map(model.steps(), x, maps.targets[0], *RULE_OF[method])
        assert relative_error(captum_map(model, x, maps.targets[0], method), reference) < 1e-5
        assert relative_error(maps[method][0], reference) < 1e-5


# --- attribute_many: one forward pass, targets ----------------------------------------------


def test_attribute_many_runs_one_forward_pass_and_equals_separate_calls() -> None:
    model = SpellingNet("F.relu")
    x = seeded_input((4, 3, 16, 16))
    per_sample = torch.tensor([4, 0, 3, 1])
    targets = [2, per_sample, "max", "random"]
    maps = backpropvis.attribute_many(model, x, targets, METHODS, generator=torch.Generator().manual_seed(5))
    assert model.forward_calls == 1
    assert set(maps) == set(METHODS)
    for method in METHODS:
        assert maps[method].shape == (4, 4, 3, 16, 16)

    with torch.no_grad():
        logits = SpellingNet("F.relu")(x)
    torch.testing.assert_close(maps.logits, logits)
    assert torch.equal(maps.targets[0], torch.full((4,), 2))
    assert torch.equal(maps.targets[1], per_sample)
    assert torch.equal(maps.targets[2], logits.argmax(1))
    assert maps.targets.dtype == torch.long and maps.targets.shape == (4, 4)

    model.forward_calls = 0
    for method in METHODS:
        for number in range(4):
            # one sample at a time, one call each: batching does not mix samples
            for sample in range(4):
                single = backpropvis.attribute(model, x[sample : sample + 1], int(maps.targets[number, sample]), method)
                torch.testing.assert_close(maps[method][number, sample : sample + 1], single)
    assert model.forward_calls == len(METHODS) * 4 * 4


def test_attribute_returns_a_map_shaped_like_the_inputs() -> None:
    model = SpellingNet("module")
    x = seeded_input((2, 3, 16, 16))
    single = backpropvis.attribute(model, x, "max", "gbp")
    assert single.shape == x.shape
    reference = reference_map(model.steps(), x, model(x).argmax(1), "relu", "activation")
    assert relative_error(single, reference) < 1e-5
    # a 0-dim LongTensor or a numpy integer is one logit for every sample, like an int
    by_int = backpropvis.attribute(model, x, 3, "saliency")
    torch.testing.assert_close(backpropvis.attribute(model, x, torch.tensor(3), "saliency"), by_int)
    torch.testing.assert_close(backpropvis.attribute(model, x, np.int64(3), "saliency"), by_int)
    # a LongTensor [T, B] is T targets
    table = backpropvis.attribute_many(model, x, torch.tensor([[3, 0], [1, 4]]), ["gbp"])
    assert torch.equal(table.targets, torch.tensor([[3, 0], [1, 4]]))


def test_random_target_is_never_the_max_and_uniform_over_the_rest(generator: torch.Generator) -> None:
    logits = torch.randn(6000, 5, generator=generator)
    logits[:, 2] += 100.0  # the max is logit 2 for every sample
    drawn = resolve_targets(["random"], logits, torch.Generator().manual_seed(1))[0]
    counts = torch.bincount(drawn, minlength=5)
    assert counts[2] == 0
    # each of the 4 others: 1500 expected, standard deviation 33.5; allow 4.5 of them
    assert ((counts[[0, 1, 3, 4]] - 1500).abs() < 150).all(), counts

    varied = torch.randn(2000, 7, generator=generator)  # the max changes with the sample
    drawn = resolve_targets(["random"] * 3, varied, torch.Generator().manual_seed(2))
    assert (drawn != varied.argmax(1)).all()
    assert ((drawn >= 0) & (drawn < 7)).all()


def test_random_target_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    model = SpellingNet("module")
    x = seeded_input((6, 3, 16, 16))
    state = torch.random.get_rng_state()
    first = backpropvis.attribute_many(model, x, ["random"] * 2, ["gbp"], generator=torch.Generator().manual_seed(7))
    again = backpropvis.attribute_many(model, x, ["random"] * 2, ["gbp"], generator=torch.Generator().manual_seed(7))
    other = backpropvis.attribute_many(model, x, ["random"] * 2, ["gbp"], generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first.targets, again.targets) and torch.equal(first["gbp"], again["gbp"])
    assert not torch.equal(first.targets, other.targets)
    default = backpropvis.attribute_many(model, x, ["random"], ["gbp"])
    assert torch.equal(default.targets, backpropvis.attribute_many(model, x, ["random"], ["gbp"]).targets)


@pytest.mark.parametrize("max_batch", [1, 3, 6, 100])
def test_batched_targets_equal_one_target_per_pass(max_batch: int) -> None:
    model = SpellingNet("Tensor.relu_")
    x = seeded_input((3, 3, 16, 16))
    targets = [0, 1, 2, 3, 4, "max", torch.tensor([4, 2, 0])]
    one_per_pass = backpropvis.attribute_many(model, x, targets, METHODS, max_batch=1)
    batched = backpropvis.attribute_many(model, x, targets, METHODS, max_batch=max_batch)
    for method in METHODS:
        torch.testing.assert_close(batched[method], one_per_pass[method], rtol=1e-5, atol=1e-6)
        for number in range(len(targets)):
            reference = reference_map(model.steps(), x, one_per_pass.targets[number], *RULE_OF[method])
            assert relative_error(batched[method][number], reference) < 1e-5


# --- strict mode -----------------------------------------------------------------------------


class WithOther(nn.Module):
    """dense 3->4 -> ReLU -> block.{dense 4->4 -> OTHER} -> dense 4->2, OTHER one of several spellings."""

    def __init__(self, other: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.block = nn.Module()
        self.block.fc = nn.Linear(4, 4)
        modules = {"GELU": nn.GELU(), "SiLU": nn.SiLU(), "Sigmoid": nn.Sigmoid(), "Tanh": nn.Tanh()}
        self.block.act = modules.get(other)
        self.other = other
        self.fc2 = nn.Linear(4, 2)
        seeded_(self, 11, scale=1.0)

    def nonlinearity(self, y: torch.Tensor) -> torch.Tensor:
        if self.block.act is not None:
            return self.block.act(y)
        return {"F.gelu": F.gelu, "F.silu": F.silu, "torch.sigmoid": torch.sigmoid, "Tensor.tanh": torch.Tensor.tanh}[
            self.other
        ](y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.nonlinearity(self.block.fc(torch.relu(self.fc1(x)))))


OTHERS = {
    # spelling -> (name in the message, module path in the message)
    "GELU": ("gelu", "block.act"),
    "SiLU": ("silu", "block.act"),
    "Sigmoid": ("sigmoid", "block.act"),
    "Tanh": ("tanh", "block.act"),
    "F.gelu": ("gelu", "WithOther"),
    "F.silu": ("silu", "WithOther"),
    "torch.sigmoid": ("sigmoid", "WithOther"),
    "Tensor.tanh": ("tanh", "WithOther"),
}


SMOOTH = sorted(other for other in OTHERS if OTHERS[other][0] in ("gelu", "silu"))
GATE_SPELLINGS = sorted(other for other in OTHERS if other not in SMOOTH)


@pytest.mark.parametrize("other", SMOOTH)
def test_refusing_a_smooth_activation_names_the_function_the_module_and_the_option(other: str) -> None:
    function, where = OTHERS[other]
    model = WithOther(other)
    for settings in ({}, {"strict": True}, {"smooth": "refuse"}):
        with pytest.raises(UnsupportedActivationError) as raised:
            backpropvis.attribute(model, seeded_input((2, 3)), 0, "gbp", **settings)
        message = str(raised.value)
        assert function in message and f"'{where}'" in message and "`smooth` to rule" in message
        assert "\n" not in message


@pytest.mark.parametrize("other", GATE_SPELLINGS)
def test_a_gate_keeps_its_true_gradient_in_every_mode_and_is_listed(other: str) -> None:
    function, where = OTHERS[other]
    model = WithOther(other).double()
    x = seeded_input((2, 3), dtype=torch.float64)
    steps = [model.fc1, "relu", lambda y: model.nonlinearity(model.block.fc(y)), model.fc2]
    for smooth in ("refuse", "gradient", "rule"):
        maps = backpropvis.attribute_many(model, x, [0, 1], METHODS, smooth=smooth)
        assert maps.smooth.mode == smooth and maps.passed_through == () and maps.smooth.rule_applied == ()
        (gate,) = maps.smooth.gates
        assert function in gate and f"'{where}'" in gate
        for method in METHODS:
            for number in range(2):
                expected = reference_map(steps, x, maps.targets[number], *RULE_OF[method])
                torch.testing.assert_close(maps[method][number], expected)


@pytest.mark.parametrize("other", ["GELU", "F.silu"])
def test_strict_false_passes_the_true_gradient_and_says_so(other: str) -> None:
    function, where = OTHERS[other]
    model = WithOther(other)
    x = seeded_input((2, 3), dtype=torch.float64)
    model = model.double()
    with pytest.warns(UserWarning, match=function):
        maps = backpropvis.attribute_many(model, x, [0, 1], METHODS, strict=False)
    assert maps.smooth.mode == "gradient"
    assert len(maps.passed_through) == 1
    assert function in maps.passed_through[0] and f"'{where}'" in maps.passed_through[0]
    # reference: the ReLU with the rule; the other nonlinearity crossed by its own vjp
    steps = [model.fc1, "relu", lambda y: model.nonlinearity(model.block.fc(y)), model.fc2]
    for method in METHODS:
        for number in range(2):
            expected = reference_map(steps, x, maps.targets[number], *RULE_OF[method])
            torch.testing.assert_close(maps[method][number], expected)
    y = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(y)[:, 0].sum(), y)
    torch.testing.assert_close(maps["saliency"][0], gradient)


def test_no_activation_is_an_error_except_for_saliency_alone() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    seeded_(model, 4)
    x = seeded_input((2, 3, 2, 2))
    for methods in (["gbp"], ["deconvnet"], ["saliency", "gbp"], ["linear"]):
        with pytest.raises(NoActivationError, match="no ReLU-like activation"):
            backpropvis.attribute_many(model, x, [1], methods)
    # saliency of a linear model is the weight row of the target (closed form)
    saliency = backpropvis.attribute(model, x, 1, "saliency")
    torch.testing.assert_close(saliency, model[1].weight[1].detach().reshape(1, 3, 2, 2).expand(2, 3, 2, 2))


# --- the model is untouched -------------------------------------------------------------------

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def global_hook_dicts() -> dict:
    module = torch.nn.modules.module
    hooks = {
        name: dict(value)
        for name, value in vars(module).items()
        if name.startswith("_global") and isinstance(value, dict)
    }
    hooks["full"] = module._global_is_full_backward_hook
    return hooks


def snapshot(model: nn.Module) -> dict:
    """Everything about a model a call could change, as comparable values."""
    return {
        "modules": [
            (name, id(m), type(m), m.training, sorted(vars(m)))
            for name, m in model.named_modules(remove_duplicate=False)
        ],
        "hooks": [
            (name, attr, dict(getattr(m, attr)))
            for name, m in model.named_modules()
            for attr in _HOOK_DICTS
            if hasattr(m, attr)
        ],
        "full_backward_hook": [getattr(m, "_is_full_backward_hook", None) for m in model.modules()],
        "parameters": [
            (name, id(p), p.requires_grad, p.grad, p.detach().clone()) for name, p in model.named_parameters()
        ],
        "buffers": [(name, b.clone()) for name, b in model.named_buffers()],
        "global_hooks": global_hook_dicts(),
        "function_modes": torch._C._len_torch_function_stack(),
    }


def assert_same_snapshot(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        if key in ("parameters", "buffers"):
            assert len(before[key]) == len(after[key])
            for old, new in zip(before[key], after[key]):
                assert old[:-1] == new[:-1], key
                assert torch.equal(old[-1], new[-1]), (key, old[0])
        else:
            assert before[key] == after[key], key


def relu_still_plain() -> None:
    y = torch.tensor([-1.0, 2.0], requires_grad=True)
    (gradient,) = torch.autograd.grad((F.relu(y) * torch.tensor([-3.0, -3.0])).sum(), y)
    assert torch.equal(gradient, torch.tensor([0.0, -3.0]))  # the true gradient, no rule left


@pytest.mark.parametrize("training", [False, True])
def test_model_is_exactly_as_before_after_a_call(training: bool) -> None:
    model = SmallResNet()
    seeded_(model, 5)
    model.stem[2] = nn.ReLU(inplace=True)
    model.train(training)
    if training:  # batch norm in training mode would update its statistics: freeze them
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.track_running_stats = False
                module.running_mean = module.running_var = None
    calls = []
    model.blocks[0].register_forward_hook(lambda module, inputs, output: calls.append("hook"))
    x = seeded_input((2, 3, 16, 16))
    x_before = x.clone()
    with torch.no_grad():
        out_before = model(x)
    before = snapshot(model)
    maps = backpropvis.attribute_many(model, x, ["max", "random"], METHODS)
    assert calls == ["hook", "hook"]  # the user's hook still runs, during our pass too
    assert_same_snapshot(before, snapshot(model))
    assert model.training is training
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None
    assert not maps["gbp"].requires_grad and not maps.logits.requires_grad
    with torch.no_grad():
        assert torch.equal(model(x), out_before)
    relu_still_plain()


class FailsMidway(SpellingNet):
    """A SpellingNet whose forward pass raises after its first two activations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv2(self.act(self.conv1(x), 1)), 2))
        raise RuntimeError("a bug in the user's model")


def test_model_is_untouched_after_an_exception_mid_forward() -> None:
    x = seeded_input((2, 3, 16, 16))
    model = FailsMidway("module")
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="a bug in the user's model"):
        backpropvis.attribute_many(model, x, ["max"], METHODS)
    assert_same_snapshot(before, snapshot(model))
    relu_still_plain()

    strict = WithOther("GELU")
    before = snapshot(strict)
    with torch.no_grad():
        out_before = strict(seeded_input((2, 3)))
    with pytest.raises(UnsupportedActivationError):
        backpropvis.attribute_many(strict, seeded_input((2, 3)), ["max"], METHODS)
    assert_same_snapshot(before, snapshot(strict))
    with torch.no_grad():
        assert torch.equal(strict(seeded_input((2, 3))), out_before)
    relu_still_plain()


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        5,
        -1,
        1000,
        "foo",
        True,
        np.bool_(True),
        np.int64(7),
        2.0,
        torch.tensor([0, 1]),
        torch.tensor([0.0, 1.0, 2.0]),
        torch.tensor([0, 9, 1]),
        torch.tensor([0, -2, 1]),
        torch.zeros(2, 2, 3, dtype=torch.long),
    ],
    ids=lambda target: repr(target).replace("\n", " ")[:40],
)
def test_bad_targets_raise_target_error(target) -> None:
    model = SpellingNet("module")
    with pytest.raises(TargetError):
        backpropvis.attribute_many(
            model, seeded_input((3, 3, 16, 16)), [target] if not torch.is_tensor(target) else target, ["gbp"]
        )


def test_more_bad_targets_and_inputs() -> None:
    model = SpellingNet("module")
    x = seeded_input((3, 3, 16, 16))
    with pytest.raises(TargetError, match="outside"):
        backpropvis.attribute(model, x, 5, "gbp")
    with pytest.raises(TargetError):
        backpropvis.attribute_many(model, x, [], ["gbp"])
    one_logit = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1), nn.ReLU())
    with pytest.raises(TargetError, match="two logits"):
        backpropvis.attribute(one_logit, x, "random", "gbp")
    with pytest.raises(InputError):
        backpropvis.attribute(model, x.long(), 0, "gbp")
    with pytest.raises(ModelError):
        backpropvis.attribute(lambda inputs: F.relu(inputs).sum(dim=(1, 2, 3)), x, 0, "gbp")
    with pytest.raises(backpropvis.BackpropvisError):
        backpropvis.attribute(model, x, 0, "lrp")


# --- devices ----------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu() -> None:
    model = SpellingNet("F.relu").double()
    x = seeded_input((3, 3, 16, 16), dtype=torch.float64)
    on_cpu = backpropvis.attribute_many(
        model, x, ["max", "random", 1], METHODS, generator=torch.Generator().manual_seed(0)
    )
    gpu_model = copy.deepcopy(model).cuda()
    on_gpu = backpropvis.attribute_many(
        gpu_model, x.cuda(), ["max", "random", 1], METHODS, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(on_gpu.targets.cpu(), on_cpu.targets)
    for method in METHODS:
        assert on_gpu[method].device.type == "cuda"
        assert relative_error(on_gpu[method].cpu(), on_cpu[method]) < 1e-10
        reference = reference_map(model.steps(), x, on_cpu.targets[0], *RULE_OF[method])
        assert relative_error(on_gpu[method][0].cpu(), reference) < 1e-10


# --- in-place operations around activations behave as in plain PyTorch -------------------------


class AddsInPlaceAfter(nn.Module):
    """dense -> activation -> ``add_(1)`` on its output -> dense; with ``in_place=False`` the
    same net with an out-of-place add (the same gradients, since the add is a constant)."""

    def __init__(self, activation, in_place: bool) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)
        seeded_(self, 12, scale=1.0)
        self.activation, self.in_place = activation, in_place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.fc1(x))
        return self.fc2(hidden.add_(1.0) if self.in_place else hidden + 1.0)


@pytest.mark.parametrize(
    "activation",
    [
        F.relu6,
        F.hardtanh,
        F.leaky_relu,
        lambda y: F.threshold(y, 0.1, 0.0),
        lambda y: F.prelu(y, torch.tensor([0.2], dtype=y.dtype)),
    ],
    ids=["relu6", "hardtanh", "leaky_relu", "threshold", "prelu"],
)
def test_an_in_place_op_on_an_activations_output_works_as_in_pytorch(activation) -> None:
    """PyTorch saves these activations' inputs, not their outputs, so a model may modify the
    output in place; the engine must not fail where a plain backward pass works."""
    x = seeded_input((3, 4), dtype=torch.float64)
    in_place, out_of_place = AddsInPlaceAfter(activation, True).double(), AddsInPlaceAfter(activation, False).double()
    y = x.clone().requires_grad_(True)
    in_place(y)[:, 0].sum().backward()  # plain PyTorch accepts this model
    maps = backpropvis.attribute_many(in_place, x, [0, "max"], METHODS)
    expected = backpropvis.attribute_many(out_of_place, x, [0, "max"], METHODS)
    for method in METHODS:
        torch.testing.assert_close(maps[method], expected[method])
    torch.testing.assert_close(maps["saliency"][0], y.grad)


def test_explainers_have_captums_call_shape() -> None:
    model = SpellingNet("F.relu")
    x = seeded_input((2, 3, 16, 16))
    for explainer, method in (
        (backpropvis.Saliency, "saliency"),
        (backpropvis.DeconvNet, "deconvnet"),
        (backpropvis.GuidedBackprop, "gbp"),
    ):
        expected = reference_map(model.steps(), x, torch.tensor([3, 3]), *RULE_OF[method])
        assert relative_error(explainer(model).attribute(x, target=3), expected) < 1e-5


def test_bfloat16_precision_is_close_and_restores_the_global_flags() -> None:
    model = SpellingNet("module")
    x = seeded_input((2, 3, 16, 16))
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    exact = backpropvis.attribute_many(model, x, [1], ["gbp"])
    rough = backpropvis.attribute_many(model, x, [1], ["gbp"], precision="bfloat16")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    assert rough["gbp"].dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: close maps, though a few near-zero ReLU inputs flip
    assert not torch.equal(rough["gbp"], exact["gbp"])
    assert (cosine_similarity(rough["gbp"], exact["gbp"]) > 0.9).all()
    with pytest.raises(ValueError, match="precision"):
        backpropvis.attribute_many(model, x, [1], ["gbp"], precision="float8")


def test_works_under_no_grad_and_inference_mode() -> None:
    """Evaluation scripts often run under torch.no_grad() or torch.inference_mode()."""
    model = SpellingNet("module")
    x = seeded_input((2, 3, 16, 16))
    expected = reference_map(model.steps(), x, torch.tensor([1, 1]), "relu", "activation")
    with torch.no_grad():
        assert relative_error(backpropvis.attribute(model, x, 1, "gbp"), expected) < 1e-5
    with torch.inference_mode():
        assert relative_error(backpropvis.attribute(model, x, 1, "gbp"), expected) < 1e-5
        made_inside = x.clone()  # an inference tensor
        assert relative_error(backpropvis.attribute(model, made_inside, 1, "gbp"), expected) < 1e-5


class Checkpointed(nn.Module):
    """dense -> ReLU -> dense -> ReLU inside torch.utils.checkpoint (recomputed in the backward
    pass, outside the engine's forward), then dense to 3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        seeded_(self, 13, scale=1.0)

    def segment(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(torch.relu(self.a(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.utils.checkpoint.checkpoint(self.segment, x, use_reentrant=False))


def test_gradient_checkpointing_keeps_the_rule() -> None:
    """The recomputation only refills saved tensors; the rule's backward nodes are the ones
    recorded in the engine's forward pass, so checkpointed activations still follow the rule."""
    model = Checkpointed()
    x = seeded_input((3, 4), dtype=torch.float64)
    model = model.double()
    maps = backpropvis.attribute_many(model, x, [0, "max"], METHODS)
    for method in METHODS:
        for number in range(2):
            expected = reference_map(
                [model.a, "relu", model.b, "relu", model.c], x, maps.targets[number], *RULE_OF[method]
            )
            torch.testing.assert_close(maps[method][number], expected)
    assert relative_error(maps["gbp"], maps["saliency"]) > 0.1


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_torchscript_submodule_is_refused_in_strict_mode() -> None:
    """Activations inside TorchScript never reach the interceptor: refusing beats a map that
    silently follows the rule in one part of the model and the plain gradient in another."""
    inner = torch.jit.script(nn.Sequential(nn.Linear(6, 6), nn.ReLU()))
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), inner, nn.Linear(6, 3)).double()
    seeded_(model, 14, scale=1.0)
    x = seeded_input((2, 4), dtype=torch.float64)
    with pytest.raises(UnsupportedActivationError, match="TorchScript module '2'"):
        backpropvis.attribute(model, x, 0, "gbp")
    with pytest.raises(UnsupportedActivationError, match="TorchScript"):
        backpropvis.attribute(torch.jit.script(model), x, 0, "gbp")
    with pytest.warns(UserWarning, match="TorchScript"):
        maps = backpropvis.attribute_many(model, x, [0], ["gbp"], strict=False)
    assert maps.passed_through == ("TorchScript module '2'",)
    # the scripted part keeps its true gradient (its vjp); the outer ReLU follows the rule
    target = torch.tensor([0, 0])
    expected = reference_map([model[0], "relu", lambda y: model[2](y), model[3]], x, target, "relu", "activation")
    everywhere = reference_map([model[0], "relu", model[2][0], "relu", model[3]], x, target, "relu", "activation")
    torch.testing.assert_close(maps["gbp"][0], expected)
    assert relative_error(expected, everywhere) > 0.01  # so the refusal in strict mode matters
