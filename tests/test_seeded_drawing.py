"""SeededDense's blocks drawn ahead in threads, and kept on a device: exactly the serial
CPU draw's values (the rejection algorithm written out plainly in the test), and no draw
left running once a pass is over (issue 19, point 4)."""

from __future__ import annotations

import threading

import pytest
import torch
from tiny_nets import rejection_sampled

from backpropvis.models import SeededDense, seeded_dense
from backpropvis.models.init import generator_for


@pytest.fixture
def threads():
    """Four drawing threads (drawing_workers follows torch's thread count), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 columns of 40 values, so a small layer has many blocks."""
    monkeypatch.setattr(seeded_dense, "_BLOCK_BYTES", 3 * 40 * 4)


def layer(out_features: int = 20) -> SeededDense:
    return SeededDense(40, out_features, seed=7, name="hidden", materialize_bytes=0)


def test_blocks_drawn_ahead_equal_the_serial_draw_to_the_bit(threads, small_blocks) -> None:
    drawn = layer()
    wanted = [19, 0, 5, 5, 11, 3, 2, 18, 7, 1]
    assert seeded_dense.drawing_workers() == 4 and len(drawn.blocks_of(wanted)) == 4
    expected = torch.stack([rejection_sampled(40, 0.1, generator_for(7, "hidden", k)) for k in wanted])
    blocks = list(drawn.column_blocks(wanted))
    assert [chunk for chunk, _ in blocks] == drawn.blocks_of(wanted)
    assert torch.equal(torch.cat([rows for _, rows in blocks]), expected)
    assert torch.equal(drawn.columns(wanted), expected)
    assert all(torch.equal(drawn.drawn_block(chunk), rows) for chunk, rows in blocks)  # the serial draw


def test_materialized_weights_drawn_ahead_equal_the_serial_draw(threads, small_blocks) -> None:
    kept = SeededDense(40, 20, seed=7, name="hidden")
    assert not kept.on_the_fly
    assert torch.equal(kept.weight, layer().drawn_block(range(20)))


def test_kept_on_the_device_gives_the_on_the_fly_values_and_draws_once(threads, small_blocks) -> None:
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(1), requires_grad=True)
    fly, kept = layer(), layer()
    kept.keep_drawn_on = ("cpu",)  # what a GPU does, here on the CPU
    expected = fly(x)
    expected_grad = torch.autograd.grad(expected[:, 4].sum(), x)[0]
    output = kept(x)
    assert kept._kept is not None and torch.equal(kept._kept, fly.drawn_block(range(20)))
    drawn_before = kept.drawn_block
    kept.drawn_block = lambda *args: pytest.fail("drawn again")  # type: ignore[method-assign]
    again = kept(x)
    grad = torch.autograd.grad(again[:, 4].sum(), x)[0]
    kept.drawn_block = drawn_before  # type: ignore[method-assign]
    assert torch.equal(output, expected) and torch.equal(again, expected) and torch.equal(grad, expected_grad)
    kept.keep_drawn_bytes = 40 * 20 * 4 - 1  # does not fit: drawn on the fly again
    assert not kept._keeps_drawn(torch.device("cpu"))


def test_no_draw_outlives_a_pass_left_early(threads, small_blocks, monkeypatch) -> None:
    counts = {"started": 0, "finished": 0}
    lock = threading.Lock()
    draw = SeededDense.drawn_block

    def counted(self, *args, **kwargs):
        with lock:
            counts["started"] += 1
        try:
            return draw(self, *args, **kwargs)
        finally:
            with lock:
                counts["finished"] += 1

    monkeypatch.setattr(SeededDense, "drawn_block", counted)
    blocks = layer(60).column_blocks(range(60))  # 20 blocks, 4 drawn ahead
    next(blocks)
    blocks.close()
    assert counts["started"] == counts["finished"] <= 1 + 4
    seeded_dense._drawing_pool(4).submit(lambda: None).result()  # everything queued before it has run
    assert counts["started"] == counts["finished"] <= 1 + 4


def test_a_failed_draw_is_raised_and_stops_the_others(threads, small_blocks, monkeypatch) -> None:
    draw = SeededDense.drawn_block

    def failing(self, indices, *args):
        if 9 in indices:
            raise RuntimeError("draw failed")
        return draw(self, indices, *args)

    monkeypatch.setattr(SeededDense, "drawn_block", failing)
    with pytest.raises(RuntimeError, match="draw failed"):
        list(layer(60).column_blocks(range(60)))
