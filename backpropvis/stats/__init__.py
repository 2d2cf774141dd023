"""Class-sensitivity statistics over whole image sets (the paper's Figure 7, at scale).

- :func:`run_class_distance`: stream a folder of images through a model into a SQLite
  database, resumable, bad-file proof, sharded under torchrun.
- :func:`summarize`: per-method mean class distance with bootstrap 95% intervals over
  one or several databases (e.g. every rank's), and a Figure-7-like bar chart.
- :func:`summarize_runs`: databases of several runs (a random and a trained model),
  each run summarised, side by side.

From the shell::

    backpropvis class-distance --images val/ --model vgg16 --weights imagenet --pairs random-random --db results.sqlite
    backpropvis summarize results.sqlite --plot fig7.png

Run the same command again after a crash or ``kill -9``: it continues with the images
not yet done. On K GPUs of one machine, or M machines (each rank writes
``results.rank-R.sqlite``; copy them together, then summarise)::

    torchrun --nproc-per-node K -m backpropvis class-distance --images val/ ... --device cuda --db results.sqlite

    # on machine N = 0 .. M-1 (a fixed --node-rank keeps each rank's file on its machine across restarts)
    torchrun --nnodes M --node-rank N --nproc-per-node K --master-addr HOST0 --master-port 29500 \\
        -m backpropvis class-distance --images val/ ... --device cuda --db results.sqlite
    backpropvis summarize 'results.rank-*.sqlite'

What is equal to what (measured on 48 images, CPU, batch 4):

- a resumed run and an uninterrupted one, or runs with other ``--workers``: bit-identical
  (the same images in the same batches, at the same thread count);
- torchrun ranks against one process: each rank computes its images in other batches.
  With one thread per process on both sides (torchrun's default; run the single process
  with ``OMP_NUM_THREADS=1``) the values came out bit-identical here, but only
  batch-invariant kernels make that so: it is measured, not guaranteed;
- another number of CPU threads (e.g. torchrun's 1 against a plain process's 2): float32
  rounding. Per image up to 1.8e-6 relative (random VGG-16, 64 px) and 1.5e-3 relative on
  GBP's small distances (EfficientNet-Lite0, 96 px); the per-method means differ by at most
  4e-5 relative.
"""

from ..images.sets import IMAGE_SUFFIXES, Samples, list_images
from .compare import format_runs, group_by_run, plot_runs, summarize_runs
from .listing import rank_db_path, shard
from .pairs import PAIRS, choose_pairs
from .runner import RunReport, run_class_distance, run_unit_distance
from .store import RunSettings, read_database
from .summary import Collected, collect, format_summary, plot_summary, summarize
from .unit_distance import format_unit_distance, plot_unit_distance, summarize_unit_distance

__all__ = [
    "run_class_distance",
    "run_unit_distance",
    "summarize_unit_distance",
    "format_unit_distance",
    "plot_unit_distance",
    "RunReport",
    "summarize",
    "summarize_runs",
    "format_runs",
    "plot_runs",
    "group_by_run",
    "collect",
    "Collected",
    "format_summary",
    "plot_summary",
    "list_images",
    "Samples",
    "shard",
    "rank_db_path",
    "IMAGE_SUFFIXES",
    "PAIRS",
    "choose_pairs",
    "RunSettings",
    "read_database",
]
