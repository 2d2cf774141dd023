"""Class-sensitivity statistics over whole image sets (the paper's Figure 7, at scale).

- :func:`run_class_distance`: stream a folder of images through a model into a SQLite
  database, resumable, bad-file proof, sharded under torchrun.
- :func:`summarize`: per-method mean class distance with bootstrap 95% intervals over
  one or several databases (e.g. every rank's), and a Figure-7-like bar chart.
"""

from .listing import IMAGE_SUFFIXES, list_images, rank_db_path, shard
from .pairs import PAIRS, choose_pairs
from .runner import RunReport, run_class_distance
from .store import RunSettings, read_database
from .summary import Collected, collect, format_summary, plot_summary, summarize

__all__ = [
    "run_class_distance",
    "RunReport",
    "summarize",
    "collect",
    "Collected",
    "format_summary",
    "plot_summary",
    "list_images",
    "shard",
    "rank_db_path",
    "IMAGE_SUFFIXES",
    "PAIRS",
    "choose_pairs",
    "RunSettings",
    "read_database",
]
