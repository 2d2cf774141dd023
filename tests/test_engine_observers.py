"""Engine observers and the receipt they collect: every engine call inside ``watching`` is
shown once, in this context only, and the receipt recomputes the call's own targets.

References are independent of the observer code: a plain ``attribute_many`` call at
float32 for explicitly given targets, and torch's own cosine.
"""

from __future__ import annotations

import threading

import pytest
import torch
from tiny_nets import cancelling_net, seeded_
from torch import nn

from backpropvis.core.errors import TargetError
from backpropvis.core.targets import Unit, resolve_unit
from backpropvis.engine import attribute_many
from backpropvis.engine.observers import EngineCall, watching
from backpropvis.engine.receipt import collect_receipt, resolved_targets

METHODS = ["saliency", "deconvnet", "gbp"]


def _conv_net() -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(5),
    )
    net(torch.zeros(1, 3, 6, 6))
    return seeded_(net, 3).eval()


def _inputs(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 6, 6, generator=torch.Generator().manual_seed(2))


def test_every_call_inside_is_shown_once_and_none_outside():
    net, seen = _conv_net(), []
    attribute_many(net, _inputs(), "max", METHODS)
    with watching(seen.append):
        first = attribute_many(net, _inputs(), ["max", 1], METHODS, precision="tf32")
        attribute_many(net, _inputs(2), 0, "gbp")
    attribute_many(net, _inputs(), "max", METHODS)
    assert len(seen) == 2 and all(isinstance(call, EngineCall) for call in seen)
    assert seen[0].result is first and seen[0].precision.value == "tf32"
    assert [rule.name for rule in seen[0].rules] == METHODS and seen[1].inputs.batch == 2


def test_an_observer_that_calls_the_engine_does_not_see_its_own_calls():
    net, seen = _conv_net(), []

    def observer(call: EngineCall) -> None:
        seen.append(call)
        attribute_many(call.model, call.inputs.tensors[0], 0, "saliency")

    with watching(observer):
        attribute_many(net, _inputs(), 0, METHODS)
    assert len(seen) == 1


def test_another_thread_is_not_watched():
    net, seen, errors = _conv_net(), [], []

    def other() -> None:
        try:
            attribute_many(net, _inputs(), 0, METHODS)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    with watching(seen.append):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert errors == [] and seen == []


def test_the_receipt_recomputes_the_resolved_random_targets_and_units():
    """At TF32 on a CPU (float32 arithmetic) the receipt must find cosine 1 for every map: a
    random logit or a 'max' unit drawn or resolved again would give other maps."""
    net, inputs = _conv_net(), _inputs(4)
    targets = ["random", Unit("2", "random"), Unit("0", "max", "peak")]
    with collect_receipt() as receipts:
        result = attribute_many(
            net, inputs, targets, METHODS, generator=torch.Generator().manual_seed(9), precision="tf32"
        )
    receipt = receipts.receipt
    assert receipt is not None and receipt.maps == 12
    assert all(entry.minimum > 1 - 1e-6 for entry in receipt.methods), receipt.lines()

    fixed = resolved_targets(result, 4)  # the same maps from the fixed targets, in a plain float32 call
    again = attribute_many(net, inputs, fixed, METHODS, precision="float32")
    for name in METHODS:
        torch.testing.assert_close(again[name], result[name])
    assert torch.equal(again.targets[0], result.targets[0])
    drawn_again = attribute_many(net, inputs, targets, "saliency", generator=torch.Generator().manual_seed(10))
    assert not torch.equal(drawn_again["saliency"], result["saliency"])  # the check above could fail


def test_the_receipt_of_a_padded_batch_compares_its_real_images_only():
    net, inputs = cancelling_net(), torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    with collect_receipt(images=2) as receipts:
        attribute_many(net, inputs, [0, 1], METHODS, precision="bfloat16")
        attribute_many(net, inputs[:1], 2, METHODS, precision="bfloat16")  # not the first: no second receipt
    assert receipts.receipt is not None and receipts.receipt.maps == 4
    assert receipts.receipt.below() == ("saliency",)


def test_a_float32_call_gets_no_receipt():
    with collect_receipt() as receipts:
        attribute_many(cancelling_net(), torch.ones(2, 3, 8, 8), 0, METHODS, precision="float32")
    assert receipts.receipt is None


def test_a_unit_with_a_position_per_sample_is_that_neuron_in_each_sample():
    output = torch.zeros(2, 4, 3, 5)
    output[0, 1, 2, 4], output[1, 1, 0, 3] = 7.0, 5.0
    position = torch.tensor([[2, 4], [0, 3]])
    resolved = resolve_unit(Unit("layer", 1, position), output)
    assert resolved.position.tolist() == [[2, 4], [0, 3]] and resolved.activation.tolist() == [7.0, 5.0]
    assert str(Unit("layer", 1, position)) == "layer:1@per-sample"
    with pytest.raises(TargetError, match=r"shaped \[2, 2\]"):
        resolve_unit(Unit("layer", 1, torch.tensor([[2, 4]])), output)
    with pytest.raises(TargetError, match="outside"):
        resolve_unit(Unit("layer", 1, torch.tensor([[2, 4], [3, 0]])), output)
    with pytest.raises(TargetError, match="LongTensor"):
        Unit("layer", 1, torch.zeros(2, 2))


def test_nested_commands_share_one_float32_pass_and_get_the_same_receipt():
    """reproduce's sanity experiments watch the engine twice (the experiment, the protocol): the
    float32 maps of the receipt are made once for both."""
    net, forwards = cancelling_net(), []
    net.register_forward_hook(lambda *_: forwards.append(1))
    with collect_receipt() as outer, collect_receipt(threshold=0.5) as inner:
        attribute_many(net, torch.ones(2, 3, 8, 8), [0, 1], METHODS, precision="bfloat16")
    assert len(forwards) == 2  # the bfloat16 call and ONE float32 pass
    assert outer.receipt is not None and inner.receipt is not None
    assert outer.receipt.methods == inner.receipt.methods and outer.receipt.below() == ("saliency",)
    assert inner.receipt.below() == ()
