"""How fast fig5's seeded hidden weights are drawn: serial, as before, and ahead in threads.

The layer is ``reproduce --quick``'s largest FCN hidden layer (Nh = 39375 columns of
d = 3 x 48 x 48 = 6912, 1.09 GB, drawn on the fly: 17 blocks of 64 MB). For each thread
count it times, over the first ``--blocks`` blocks:

- ``serial``: each block drawn in the calling thread, one after another (the reference);
- ``rows-threaded``: before this change: one block at a time, its rows' normals in threads;
- ``ahead``: ``SeededDense.column_blocks`` (blocks drawn several at once, ahead of use, and
  on a GPU copied from page-locked memory without waiting);
- on a GPU, ``kept``: the whole matrix drawn once onto the device (first pass), then
  a second pass reading it there.

Every path's values are compared with the serial draw bit for bit (``equal``). Times are
wall clock and process CPU seconds; on a shared machine the wall clock follows its load.

    python benchmarks/bench_seeded_dense.py --blocks 3 --threads 1,2
    python benchmarks/bench_seeded_dense.py --device cuda --blocks 17 --threads 1,8,16
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from backpropvis.models import SeededDense
from backpropvis.models.init import generator_for, truncated_normal_rows_

HIDDEN, INPUTS = 39375, 3 * 48 * 48


def timed(run) -> tuple[dict, list[torch.Tensor]]:
    """Run ``run()`` (a list of blocks); wall and CPU seconds, and the blocks."""
    wall, cpu = time.perf_counter(), time.process_time()
    blocks = run()
    if blocks and blocks[0].is_cuda:
        torch.cuda.synchronize()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}, blocks


def rows_threaded(layer: SeededDense, chunks: list[list[int]], workers: int) -> list[torch.Tensor]:
    """The draw before: one block at a time, the rows' normals drawn in a thread pool."""
    blocks = []
    with ThreadPoolExecutor(workers) as pool:
        for chunk in chunks:
            generators = [generator_for(layer.seed, layer.name, index) for index in chunk]
            block = torch.empty((len(chunk), layer.in_features))
            blocks.append(truncated_normal_rows_(block, layer.std, generators, pool.map))
    return blocks


def measure(blocks: int, threads: int, device: torch.device, reference: list[torch.Tensor]) -> dict:
    torch.set_num_threads(threads)  # drawing_workers() follows torch's thread count
    layer = SeededDense(INPUTS, HIDDEN, seed=0, name="hidden", materialize_bytes=0)
    indices = list(range(min(HIDDEN, blocks * layer.columns_per_block)))
    chunks = layer.blocks_of(indices)
    row: dict = {"threads": threads}
    paths = {
        "rows-threaded": lambda: rows_threaded(layer, chunks, min(8, threads)),
        "ahead": lambda: [rows for _, rows in layer.column_blocks(indices, device)],
    }
    if device.type == "cuda":
        paths["kept first pass"] = lambda: [rows for _, rows in layer.column_blocks(indices, device)]
        paths["kept second pass"] = paths["kept first pass"]
        layer.keep_drawn_bytes = 1 << 40
    for name, run in paths.items():
        if name == "kept first pass":
            layer.keep_drawn_on = ("cuda",)
        elif name == "ahead":
            layer.keep_drawn_on = ()
        times, drawn = timed(run)
        times["equal"] = all(torch.equal(a.cpu(), b) for a, b in zip(drawn, reference))
        row[name] = times
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=3, help="blocks of 64 MB to draw (17 is the whole layer)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    layer = SeededDense(INPUTS, HIDDEN, seed=0, name="hidden", materialize_bytes=0)
    indices = list(range(min(HIDDEN, args.blocks * layer.columns_per_block)))
    serial_times, reference = timed(lambda: [layer.drawn_block(chunk) for chunk in layer.blocks_of(indices)])
    print(f"{len(reference)} blocks of {layer.columns_per_block} x {INPUTS} (64 MB), device {device}")
    print(f"serial (1 thread): {serial_times['wall_s']:.2f} s wall, {serial_times['cpu_s']:.2f} s CPU")
    rows = [measure(args.blocks, int(t), device, reference) for t in args.threads.split(",")]
    for row in rows:
        for name, times in row.items():
            if name != "threads":
                speedup = serial_times["wall_s"] / times["wall_s"]
                print(
                    f"threads={row['threads']:<3} {name:<17} {times['wall_s']:6.2f} s wall ({speedup:4.2f}x serial), "
                    f"{times['cpu_s']:6.2f} s CPU, equal to serial: {times['equal']}"
                )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"blocks": len(reference), "device": str(device), "serial": serial_times, "rows": rows}, handle)
    if not all(times["equal"] for row in rows for name, times in row.items() if name != "threads"):
        raise SystemExit("a path's values differ from the serial draw")


if __name__ == "__main__":
    main()
