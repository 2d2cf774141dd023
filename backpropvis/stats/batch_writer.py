"""A class-distance run's writer: finished batches' rows and failures saved in one transaction.

:class:`~backpropvis.stats.streaming.ResultsBehind` hands it a group of finished batches
(each with its packed results tensor on the CPU, or a unit-distance batch's rows); it turns
them into the store's rows (:func:`~backpropvis.stats.measuring.result_rows`), writes them
with the batches' failures, counts them and shows them on the progress bar once saved.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch

from ..core.rules import Rule
from .decoding import Batch
from .measuring import result_rows
from .store import ResultRow, ResultsStore

__all__ = ["BatchWriter"]


class BatchWriter:
    """``ResultsBehind``'s writer: a group of batches' rows and failures in one transaction,
    counted and shown on the progress bar (``bar``, set once it exists) once they are saved.

    Attributes:
        num_classes: the model's number of logits, set by the run before the first write.
        images: how many images were written so far; failed_images: their keys that failed.
    """

    def __init__(self, store: ResultsStore, rules: Sequence[Rule]) -> None:
        self.store, self.rules = store, rules
        self.num_classes: Optional[int] = None
        self.images: int = 0
        self.bar: Any = None
        self.failed_images: list[str] = []

    def __call__(self, done: list[tuple[Batch, Union[None, torch.Tensor, list[ResultRow]]]]) -> None:
        rows: list[ResultRow] = []
        failures: list[tuple[str, str, str]] = []
        for batch, results in done:
            if isinstance(results, list):  # a unit-distance batch's rows (stats.unit_distance)
                rows += results
            elif results is not None:
                assert self.num_classes is not None
                rows += result_rows(results, batch.keys, batch.hashes, self.rules, self.num_classes)
            failures += batch.failures
        images = sum(batch.images for batch, _ in done)
        self.store.write_batch(rows, failures, images)
        self.images += images
        self.failed_images += [key for key, _, _ in failures]
        if self.bar is not None:
            self.bar.update(images)
            if self.failed_images:
                self.bar.set_postfix(failed=len(self.failed_images))
