"""Two threads calling the engine at once each see only their own model's modules.

The two forward passes are interleaved in a fixed order with events: "alpha" enters its
block; then "beta"'s call starts and enters its block; alpha calls a smooth activation
(GELU) while beta is still inside its block, and beta calls its own once alpha has. The
record (``passed_through``) and the refusal's message must name the thread's own module.
Process-global module hooks without a per-call context push beta's modules on alpha's
stack of running modules, so alpha's message would name beta's block ('Block').
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.core.errors import UnsupportedActivationError

TIMEOUT = 20.0


class Block(nn.Module):
    """dense 4->4 -> GELU; ``inside`` is set on entry, ``go`` awaited before the GELU and
    ``done`` set after it (also when it raises)."""

    def __init__(self, inside: threading.Event, go: threading.Event, done: threading.Event) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.inside, self.go, self.done = inside, go, done

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        self.inside.set()
        assert self.go.wait(TIMEOUT)
        try:
            return F.gelu(y)
        finally:
            self.done.set()


class Model(nn.Module):
    """dense 3->4 -> ReLU -> ``<block_name>`` (a Block) -> dense 4->2."""

    def __init__(self, block_name: str, block: Block, seed: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.add_module(block_name, block)
        self.block_name = block_name
        self.fc2 = nn.Linear(4, 2)
        seeded_(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(getattr(self, self.block_name)(torch.relu(self.fc1(x))))


def _run_both(call: Callable[[nn.Module], Any]) -> dict[str, Any]:
    """Run ``call`` on models "alpha" and "beta" in two threads, interleaved as the module
    docstring says: what each returned or raised, by name."""
    alpha_inside, beta_inside, alpha_done, beta_done = (threading.Event() for _ in range(4))
    models = {
        "alpha": Model("alpha", Block(alpha_inside, go=beta_inside, done=alpha_done), 1),
        "beta": Model("beta", Block(beta_inside, go=alpha_done, done=beta_done), 2),
    }
    starts = {"alpha": threading.Event(), "beta": alpha_inside}
    starts["alpha"].set()
    results: dict[str, Any] = {}

    def worker(name: str) -> None:
        try:
            assert starts[name].wait(TIMEOUT)
            results[name] = call(models[name])
        except Exception as error:  # noqa: BLE001 - handed to the test
            results[name] = error

    threads = [threading.Thread(target=worker, args=(name,)) for name in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=3 * TIMEOUT)
    return results


def test_two_threads_record_only_their_own_modules() -> None:
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    results = _run_both(lambda model: backpropvis.attribute_many(model, x, [0], ["gbp"], smooth="gradient"))
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        maps = results[name]
        assert not isinstance(maps, BaseException), maps
        assert len(maps.passed_through) == 1
        (entry,) = maps.passed_through
        assert "gelu" in entry and f"module '{name}'" in entry and other not in entry.lower(), entry


def test_two_threads_refusing_each_name_their_own_module() -> None:
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    results = _run_both(lambda model: backpropvis.attribute(model, x, 0, "gbp"))
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        error = results[name]
        assert isinstance(error, UnsupportedActivationError), error
        assert f"module '{name}'" in str(error) and other not in str(error).lower()


def test_the_context_is_cleared_after_each_call() -> None:
    """The context variable names no forward pass once a call has returned or raised."""
    from backpropvis.engine import recording

    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    events = [threading.Event() for _ in range(3)]
    events[1].set()
    model = Model("alpha", Block(*events), 1)
    backpropvis.attribute(model, x, 0, "gbp", smooth="gradient")
    assert recording._RUNNING.get() is None
    with pytest.raises(UnsupportedActivationError):
        backpropvis.attribute(model, x, 0, "gbp")
    assert recording._RUNNING.get() is None
