"""The class-distance run: every image of a folder, streamed, into a SQLite database.

For each image the model's maps are computed for two logits (see
:mod:`~backpropvis.stats.pairs`) with every method, in ONE
:func:`~backpropvis.engine.attribute_many` call per batch, and the paper's Figure 7
statistic is stored per (image, method): the class distance
``|| s_a / ||s_a|| - s_b / ||s_b|| ||_2`` between the two maps
(:func:`~backpropvis.metrics.class_distance`, and its min-max variant), with each
map's input similarity.

Batches are fixed blocks of the rank's sorted image list, padded to the full batch
size, so an image is computed in the same company and at the same batch size
whether the run was resumed, had failures, or ran with other workers: the values are
then bit-identical; only another batch size (``batch_size``, or a rank with fewer
images than that) or another number of CPU threads may change them in the last
float bits.
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

from ..devices import resolve_device
from ..engine import Precision, PrecisionLike, attribute_many
from ..engine.unit_targets import layer_modules
from ..errors import BackpropvisError, Interrupted
from ..image_sets import ImageSource, list_images, source_setting
from ..images import logit_name
from ..metrics import class_distance, class_distance_minmax, input_similarity
from ..models import LoadedModel, ModelLike, as_loaded
from ..rules import PAPER_METHODS, Rule, resolve_rule
from .decoding import Batch, ImageSet, batch_loader
from .distributed import World, barrier, process_group, world_from_environment
from .listing import rank_db_path, shard
from .pairs import PAIRS, choose_pairs, random_pairs
from .store import ResultRow, ResultsStore, RunSettings
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


def _check_counts(batch_size: int, workers: int) -> None:
    if batch_size < 1:
        raise BackpropvisError(f"`batch_size` must be at least 1, not {batch_size}")
    if workers < 0:
        raise BackpropvisError(f"`workers` must be 0 or more, not {workers}")


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
    workers: int = 2,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    world: Optional[World] = None,
    elsewhere: str = "another `db`",
    on_model: Optional[Callable[[LoadedModel], None]] = None,
) -> RunReport:
    """Compute and store the class distance of every image under ``images`` (resumable).

    Args:
        images: a folder (recursive, sorted), a :class:`~backpropvis.image_sets.Samples`
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
        workers: DataLoader processes decoding images (0: in this process).
        device: "cpu", "cuda", ... (under torchrun, CUDA rank r uses ``cuda:LOCAL_RANK``).
        progress: show a progress bar (images/s and ETA).
        world: the torchrun world (default: read from the environment).
        elsewhere: what a message refusing ``db`` (another run's database) tells the user
            to use instead.
        on_model: called with the model once it is built, before the first image is read
            (the command line prints the model and preprocessing line there).

    Returns:
        :class:`RunReport` for this rank. Under torchrun every rank waits for all the
        others before returning.

    Raises:
        BackpropvisError: bad settings, images folder or database (nothing is written).
    """
    _check_counts(batch_size, workers)
    world = world or world_from_environment()
    torch_device = world.device(resolve_device(str(device)))
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
    other = {"batch_size": batch_size, "workers": workers, "device": str(torch_device), "limit": limit}
    other["smooth_activations"] = loaded.smooth.as_dict()
    with process_group(world, torch_device):
        store = ResultsStore(
            rank_db_path(db, world.rank, world.size), settings, loaded.weights_description, other, elsewhere
        )
        try:
            report = _run(store, keys, job, progress)
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


def _run(store: ResultsStore, keys: Sequence[str], job: _Job, progress: bool) -> RunReport:
    world = job.world
    mine = shard(keys, world.rank, world.size)
    batch_size = max(1, min(job.batch_size, len(mine)))  # a handful of images is not padded to a large batch
    store.set_total(len(mine))
    done = store.done_images()
    blocks = [range(start, min(start + batch_size, len(mine))) for start in range(0, len(mine), batch_size)]
    batches = [[i for i in block if mine[i] not in done] for block in blocks]
    batches = [batch for batch in batches if batch]
    pending = sum(len(batch) for batch in batches)
    dataset = ImageSet(job.images, mine, job.preprocess)

    started, done_now, failed_images, num_classes = time.perf_counter(), 0, [], None
    units = unit_pair_layers(job.settings.pairs) is not None
    description = ("unit distance" if units else "class distance") + (
        f" (rank {world.rank}/{world.size})" if world.size > 1 else ""
    )
    try:
        with tqdm(
            total=pending,
            unit="image",
            desc=description,
            disable=not progress or pending == 0,
            position=world.local_rank if world.size > 1 else None,
            dynamic_ncols=True,
        ) as bar:
            for batch in batch_loader(dataset, batches, job.workers):
                rows: list[ResultRow] = []
                if batch.keys:
                    rows, num_classes = (_measure_units if units else _measure)(job, batch, batch_size, num_classes)
                store.write_batch(rows, batch.failures, len(batch.keys) + len(batch.failures))
                done_now += len(batch.keys) + len(batch.failures)
                failed_images += [key for key, _, _ in batch.failures]
                bar.update(len(batch.keys) + len(batch.failures))
                if failed_images:
                    bar.set_postfix(failed=len(failed_images))
    except KeyboardInterrupt:
        store.finish(complete=False)  # rolls back a batch cut off halfway
        saved = len(store.done_images())
        failed = f", {len(failed_images)} of them failed" if failed_images else ""
        raise Interrupted(
            f"{saved} of {len(mine)} images saved in {store.path} ({saved - len(done)} in this session{failed}); "
            "run the same command again to resume"
        ) from None
    store.finish(complete=len(done) + done_now == len(mine))
    return RunReport(
        store.path,
        world.rank,
        world.size,
        len(mine),
        len(done),
        done_now,
        time.perf_counter() - started,
        failed_images,
    )


def _measure_units(job: _Job, batch: Batch, batch_size: int, num_classes: Optional[int]) -> tuple[list[ResultRow], int]:
    """Rows of a unit-distance run's batch (:func:`~backpropvis.stats.unit_distance.measure_unit_pairs`)."""
    return measure_unit_pairs(job.network, batch, job.rules, job.settings, batch_size, job.device)


def _measure(job: _Job, batch: Batch, batch_size: int, num_classes: Optional[int]) -> tuple[list[ResultRow], int]:
    """Rows for a batch's good images, and the model's number of logits.

    Pads the batch to ``batch_size``, picks the pairs (a no-grad forward pass first,
    unless the pairs are "random-random" and the number of logits is known), then ONE
    attribute_many call for every method and both logits, then the metrics.
    """
    network, settings, device = job.network, job.settings, job.device
    count = len(batch.keys)
    inputs = torch.zeros((batch_size, *batch.pixels.shape[1:]), dtype=batch.pixels.dtype)
    inputs[:count] = batch.pixels
    inputs = inputs.to(device)
    logits = None
    if settings.pairs == "random-random" and num_classes is not None:
        chosen = random_pairs(num_classes, batch.keys, settings.seed)
    else:
        with torch.no_grad():
            logits = network(inputs)[:count]
        chosen = choose_pairs(settings.pairs, logits, batch.keys, settings.seed)  # [2, count]
    padded = torch.zeros((2, batch_size), dtype=torch.long)
    padded[:, :count] = chosen
    maps = attribute_many(
        network, inputs, [padded[0].to(device), padded[1].to(device)], job.rules, precision=settings.precision
    )
    # the logits the pairs were chosen from; "random-random" takes none, so always the shared pass's
    chosen_from = maps.logits[:count] if settings.pairs == "random-random" or logits is None else logits
    predicted = chosen_from.argmax(dim=1).cpu()
    return _rows(maps, job.rules, batch, inputs[:count], chosen, predicted), len(maps.logits[0])


def _rows(maps, rules: Sequence[Rule], batch: Batch, image: torch.Tensor, chosen, predicted) -> list[ResultRow]:
    """One row per (method, image): the class distances between the two logits' maps, and their input similarity."""
    count, num_logits, rows = len(batch.keys), maps.logits.shape[1], []
    for rule in rules:
        pair = maps[rule.name][:, :count]  # [2, count, 3, S, S]
        distance = class_distance(pair[0], pair[1]).cpu()
        distance_minmax = class_distance_minmax(pair[0], pair[1]).cpu()
        similarity = input_similarity(pair, image).cpu()  # [2, count]
        for column, key in enumerate(batch.keys):
            first, second, top = int(chosen[0, column]), int(chosen[1, column]), int(predicted[column])
            rows.append(
                ResultRow(
                    image=key,
                    content_hash=batch.hashes[column],
                    method=rule.name,
                    first_logit=first,
                    first_name=logit_name(first, num_logits),
                    second_logit=second,
                    second_name=logit_name(second, num_logits),
                    predicted=top,
                    predicted_name=logit_name(top, num_logits),
                    class_distance=float(distance[column]),
                    class_distance_minmax=float(distance_minmax[column]),
                    input_similarity_first=float(similarity[0, column]),
                    input_similarity_second=float(similarity[1, column]),
                )
            )
    return rows
