"""The class-distance run: every image of a folder, streamed, into a SQLite database.

For each image the model's maps are computed for two logits (see
:mod:`~backpropvis.stats.pairs`) with every method, in ONE
:func:`~backpropvis.engine.attribute_many` call per batch, and the paper's Figure 7
statistic is stored per (image, method): the class distance
``|| s_a / ||s_a|| - s_b / ||s_b|| ||_2`` between the two maps
(:func:`~backpropvis.core.metrics.class_distance`, and its min-max variant), with each
map's input similarity.

Batches are fixed blocks of the rank's sorted image list, padded to the full batch
size, so an image is computed in the same company and at the same batch size
whether the run was resumed, had failures, or ran with other workers: the values are
then bit-identical; only another batch size (``batch_size``, or a rank with fewer
images than that) or another number of CPU threads may change them in the last
float bits.

The pipeline keeps the device busy (:mod:`~backpropvis.stats.measuring`,
:mod:`~backpropvis.stats.streaming`, docs/class-distance-pipeline.md): DataLoader
workers hand over uint8 pixels padded to the batch (pinned on CUDA), copied without
waiting and scaled on the device; the pairs are targets the engine resolves from its
own forward pass (no second one); each batch's numbers stay on the device and are read
back two batches behind, then written in groups of whole batches (every batch on the
CPU). At TF32 or bfloat16 the first batch of each session is also computed in float32:
its precision receipt (:mod:`backpropvis.engine.receipt`) is stored and returned.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..core.devices import resolve_device
from ..core.errors import BackpropvisError, Interrupted, StoreError
from ..core.rules import PAPER_METHODS, Rule, resolve_rule
from ..engine import Precision, PrecisionLike
from ..engine.receipt import DEFAULT_THRESHOLD, PrecisionReceipt, check_threshold, collect_receipt
from ..engine.unit_targets import layer_modules
from ..images.sets import ImageSource, list_images, source_setting
from ..models import LoadedModel, ModelLike, as_loaded
from .batch_writer import BatchWriter
from .decoding import Batch, ImageSet, batch_loader, decoding_workers
from .distributed import World, barrier, process_group, world_from_environment
from .listing import rank_db_path, shard
from .measuring import PairTargets, measure_batch
from .pairs import PAIRS, pair_draws
from .store import ResultRow, ResultsStore, RunSettings
from .streaming import ResultsBehind, device_layout
from .unit_distance import measure_unit_pairs, unit_labels, unit_pair_layers, unit_pairs_setting

__all__ = ["RunReport", "run_class_distance", "run_unit_distance"]


@dataclass
class RunReport:
    """What one call of :func:`run_class_distance` did (for this rank).

    Attributes:
        db: the database file written.
        rank, world_size: this process's place under torchrun.
        images_total: images in this rank's share.
        already_done: of them, those that had rows before this call (a resumed run).
        done_now: images this call went through: measured (:attr:`measured_now`) or failed
            (:attr:`failed_now`), counted apart wherever they are reported.
        seconds: wall time of the loop.
        failed_images: the keys of this call's failures, in order.
        model: the model and its weights, in words.
        model_notes: what was done to the model (eval mode, default preprocessing).
        preprocessing: the images' preprocessing, in words.
        receipt: at TF32 or bfloat16, this call's first batch against float32
            (:mod:`backpropvis.engine.receipt`), else None.
    """

    db: Path
    rank: int
    world_size: int
    images_total: int
    already_done: int
    done_now: int
    seconds: float
    failed_images: list[str] = field(default_factory=list)
    model: str = ""
    model_notes: tuple[str, ...] = ()
    preprocessing: str = ""
    receipt: Optional[PrecisionReceipt] = None

    @property
    def failed_now(self) -> int:
        """Of ``done_now``, the failures."""
        return len(self.failed_images)

    @property
    def measured_now(self) -> int:
        """Of ``done_now``, the images measured (each with its rows)."""
        return self.done_now - self.failed_now

    @property
    def images_per_second(self) -> float:
        return self.done_now / self.seconds if self.seconds > 0 else 0.0


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise BackpropvisError(f"`batch_size` must be at least 1, not {batch_size}")


def run_class_distance(
    images: ImageSource,
    db: Union[str, os.PathLike],
    *,
    model: ModelLike = "vgg16",
    precision: PrecisionLike = Precision.DEFAULT,
    methods: Sequence[str] = PAPER_METHODS,
    pairs: str = "max-random",
    seed: int = 0,
    limit: Optional[int] = None,
    batch_size: int = 8,
    workers: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    world: Optional[World] = None,
    elsewhere: str = "another `db`",
    on_model: Optional[Callable[[LoadedModel], None]] = None,
    receipt_threshold: float = DEFAULT_THRESHOLD,
) -> RunReport:
    """Compute and store the class distance of every image under ``images`` (resumable).

    Args:
        images: a folder (recursive, sorted), a :class:`~backpropvis.images.sets.Samples`
            (the bundled samples and seeded crops of them), or None for the bundled samples.
        db: the SQLite file; under torchrun each rank writes ``<stem>.rank-R<suffix>``.
        model: a name or a :class:`~backpropvis.models.ModelSpec` (built with ``seed``), a
            :class:`~backpropvis.models.LoadedModel`, or an ``nn.Module`` (used as it is: its
            train/eval mode is kept; name it, its weights and its crop size with
            :func:`~backpropvis.models.describe_module`); see :func:`~backpropvis.models.as_loaded`.
        precision: the engine's arithmetic, a :class:`~backpropvis.engine.Precision` or its
            name; part of the run's identity (stored as its name).
        methods: rule names, e.g. ("saliency", "deconvnet", "gbp").
        pairs: which two logits per image, one of :data:`~backpropvis.stats.pairs.PAIRS`,
            or two units per layer (:func:`run_unit_distance`).
        seed: the random weights' and the random logits' seed.
        limit: only the first ``limit`` images of the sorted list (before sharding).
        batch_size: images per forward pass.
        workers: DataLoader processes decoding images (0: in this process); None: 0 on the
            CPU, 2 on an accelerator (:func:`~.decoding.decoding_workers`).
        device: "cpu", "cuda", ... (under torchrun, CUDA rank r uses ``cuda:LOCAL_RANK``).
        progress: show a progress bar (images/s and ETA).
        world: the torchrun world (default: read from the environment).
        elsewhere: what a message refusing ``db`` (another run's database) tells the user
            to use instead.
        on_model: called with the model once it is built, before the first image is read
            (the command line prints the model and preprocessing line there).
        receipt_threshold: at TF32 or bfloat16 the first batch is also computed in
            float32, and a method whose maps' cosine to it falls under this is named in
            the receipt's warnings (:mod:`backpropvis.engine.receipt`).

    Returns:
        :class:`RunReport` for this rank. Under torchrun every rank waits for all the
        others before returning.

    Raises:
        BackpropvisError: bad settings, images folder or database (nothing is written).
    """
    _check_batch_size(batch_size)
    check_threshold(receipt_threshold)
    world = world or world_from_environment()
    torch_device = world.device(resolve_device(str(device)))
    workers = decoding_workers(workers, torch_device)
    rules = [resolve_rule(method) for method in methods]
    layers = unit_pair_layers(pairs)
    if layers is None and pairs not in PAIRS:
        raise BackpropvisError(f"unknown `pairs` {pairs!r}; choose one of {', '.join(PAIRS)}")
    keys = list_images(images, limit)
    loaded = as_loaded(model, seed)
    if on_model is not None:
        on_model(loaded)
    network = loaded.module.to(torch_device)
    layer_modules(network, layers or [])  # a unit run's unknown layer is refused before its database is made

    settings = _run_settings(loaded, rules, pairs, seed, images, world, Precision.parse(precision))
    job = _Job(images, network, loaded.preprocessing, rules, settings, batch_size, workers, torch_device, world)
    job = replace(job, receipt_threshold=receipt_threshold)
    other = {"batch_size": batch_size, "workers": workers, "device": str(torch_device), "limit": limit}
    other["smooth_activations"] = loaded.smooth.as_dict()
    with process_group(world, torch_device):
        store = ResultsStore(
            rank_db_path(db, world.rank, world.size), settings, loaded.weights_description, other, elsewhere
        )
        try:
            with device_layout(network, torch_device) as layout:
                report = _run(store, keys, replace(job, layout=layout), progress)
        finally:
            store.close()
        barrier(world)
    return replace(report, model=loaded.title, model_notes=loaded.notes, preprocessing=loaded.preprocessing_description)


def _run_settings(
    loaded: LoadedModel,
    rules: Sequence[Rule],
    pairs: str,
    seed: int,
    images: ImageSource,
    world: World,
    precision: Precision,
) -> RunSettings:
    """The run's identity, as its database stores it."""
    return RunSettings(
        model=loaded.name,
        weights=str(loaded.weights),
        methods=_labels(rules, pairs),
        pairs=pairs,
        seed=int(seed),
        input_size=loaded.input_size,
        images=source_setting(images),
        rank=world.rank,
        world_size=world.size,
        model_args=loaded.args_json,
        model_source=loaded.source,
        weights_fingerprint=loaded.fingerprint,
        output=loaded.output,
        precision=precision.value,
        smooth=loaded.smooth.mode,
    )


def _labels(rules: Sequence[Rule], pairs: str) -> tuple[str, ...]:
    """The stored rows' methods: the rule names, or ``METHOD@LAYER`` for a unit-distance run."""
    layers = unit_pair_layers(pairs)
    names = [rule.name for rule in rules]
    return tuple(names) if layers is None else unit_labels(names, layers)


def run_unit_distance(
    images: ImageSource, db: Union[str, os.PathLike], *, layers: Sequence[str], **options
) -> RunReport:
    """Compute and store the unit distance of every image under ``images`` (resumable,
    sharded under torchrun): per layer of ``layers`` (depth order) the distance between
    the maps of its most active unit and of a random other channel at the same position
    (:mod:`~backpropvis.stats.unit_distance`).

    Args:
        images, db: as :func:`run_class_distance`.
        layers: module names as in ``named_modules()``, e.g. ``["features.3", "features.8"]``.
        options: :func:`run_class_distance`'s keyword arguments but ``pairs``.

    Raises:
        BackpropvisError: bad settings, layer names, images or database.
    """
    if "pairs" in options:
        raise TypeError("run_unit_distance takes layers, not pairs")
    return run_class_distance(images, db, pairs=unit_pairs_setting(layers), **options)


@dataclass(frozen=True)
class _Job:
    """What every batch of one rank's run needs."""

    images: ImageSource
    network: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    rules: Sequence[Rule]
    settings: RunSettings
    batch_size: int
    workers: int
    device: torch.device
    world: World
    layout: torch.memory_format = torch.contiguous_format
    receipt_threshold: float = DEFAULT_THRESHOLD


def _run(store: ResultsStore, keys: Sequence[str], job: _Job, progress: bool) -> RunReport:
    world = job.world
    mine = shard(keys, world.rank, world.size)
    batch_size = max(1, min(job.batch_size, len(mine)))  # a handful of images is not padded to a large batch
    store.set_total(len(mine))
    done = store.done_images()
    batches = _batches(mine, done, batch_size)
    pending = sum(len(batch) for batch in batches)
    dataset = ImageSet(job.images, mine, job.preprocess)
    loader = batch_loader(dataset, batches, job.workers, batch_size, pin_memory=job.device.type == "cuda")
    written = BatchWriter(store, job.rules)
    # on an accelerator results come back two batches behind and are written once a second
    behind = ResultsBehind(written, every=0.0 if job.device.type == "cpu" else 1.0)
    started, num_classes, receipt = time.perf_counter(), None, None
    units = unit_pair_layers(job.settings.pairs) is not None
    try:
        with _progress_bar(world, pending, units, progress) as bar, collect_receipt(job.receipt_threshold) as receipts:
            written.bar = bar
            for batch in loader:
                results: Union[None, torch.Tensor, list[ResultRow]] = None
                receipts.images = len(batch.keys)  # the first batch's real images, not its padding
                if batch.keys and units:
                    results, written.num_classes = measure_unit_pairs(
                        job.network, batch, _inputs(batch, job), job.rules, job.settings
                    )
                elif batch.keys:
                    results, num_classes = _measure(job, batch, _inputs(batch, job), num_classes)
                    written.num_classes = num_classes
                if receipt is None and receipts.receipt is not None:
                    receipt = receipts.receipt
                    store.write_receipt(receipt.as_dict())
                behind.add(batch, results)
            behind.flush()
    except KeyboardInterrupt:
        raise _interrupted(store, behind, written, len(mine), len(done)) from None
    store.finish(complete=len(done) + written.images == len(mine))
    seconds = time.perf_counter() - started  # the loop's, workers' start included
    return RunReport(
        store.path,
        world.rank,
        world.size,
        len(mine),
        len(done),
        written.images,
        seconds,
        written.failed_images,
        receipt=receipt,
    )


def _progress_bar(world: World, pending: int, units: bool, progress: bool) -> tqdm:
    """The rank's progress bar over its ``pending`` images (one line per rank under torchrun)."""
    description = ("unit distance" if units else "class distance") + (
        f" (rank {world.rank}/{world.size})" if world.size > 1 else ""
    )
    return tqdm(
        total=pending,
        unit="image",
        desc=description,
        disable=not progress or pending == 0,
        position=world.local_rank if world.size > 1 else None,
        dynamic_ncols=True,
    )


def _interrupted(store: ResultsStore, behind: ResultsBehind, written: BatchWriter, mine: int, done: int) -> Interrupted:
    """After Ctrl-C: the batches already computed saved, the store closed (a batch cut off
    halfway rolled back), and the error saying how many of the rank's ``mine`` images are saved."""
    _save_what_is_done(behind)
    store.finish(complete=False)
    saved = len(store.done_images())
    failed = f", {len(written.failed_images)} of them failed" if written.failed_images else ""
    return Interrupted(
        f"{saved} of {mine} images saved in {store.path} ({saved - done} in this session{failed}); "
        "run the same command again to resume"
    )


def _batches(mine: Sequence[str], done: set[str], batch_size: int) -> list[list[int]]:
    """The rank's fixed blocks of ``batch_size`` images (indices into ``mine``), without the images
    already done; blocks left empty are dropped."""
    blocks = [range(start, min(start + batch_size, len(mine))) for start in range(0, len(mine), batch_size)]
    batches = [[i for i in block if mine[i] not in done] for block in blocks]
    return [batch for batch in batches if batch]


def _save_what_is_done(behind: ResultsBehind) -> None:
    """After Ctrl-C: write the batches already computed (a second Ctrl-C gives them up)."""
    try:
        behind.flush()
    except (KeyboardInterrupt, StoreError):
        pass


def _inputs(batch: Batch, job: _Job) -> torch.Tensor:
    """The batch as the model's input on the job's device, in its memory layout (:meth:`Batch.inputs`)."""
    return batch.inputs(job.preprocess, job.device).contiguous(memory_format=job.layout)


def _measure(job: _Job, batch: Batch, inputs: torch.Tensor, num_classes: Optional[int]) -> tuple[torch.Tensor, int]:
    """A batch's packed results on the device (:func:`~.measuring.measure_batch`) and the
    model's number of logits. The pairs' random draws are made before the call when the
    number of logits is known (every batch after the first)."""
    settings, count = job.settings, len(batch.keys)
    draws = None if num_classes is None else pair_draws(settings.pairs, batch.keys, settings.seed, num_classes)
    pairs = PairTargets(settings.pairs, batch.keys, settings.seed, draws)
    results, maps = measure_batch(job.network, inputs, count, pairs, job.rules, settings.precision)
    return results, maps.logits.shape[1]
