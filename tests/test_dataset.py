"""Class-distance runs over image sets (backpropvis.stats): listing, bad files, resume
after SIGKILL, torchrun sharding, summaries and the CLI's bad-input handling.

The model is the ImageNet-trained EfficientNet-Lite0 at a 32-pixel input (fast); every
subprocess runs with one thread (as torchrun's workers do), so runs compare bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backpropvis.cli import main
from backpropvis.core.errors import StoreError
from backpropvis.images.samples import load_image
from backpropvis.models import ModelSpec, build_model
from backpropvis.stats import choose_pairs, list_images, rank_db_path, read_database, run_class_distance, shard
from backpropvis.stats.pairs import random_pairs
from backpropvis.stats.store import ResultRow, ResultsStore, RunSettings
from backpropvis.stats.summary import bootstrap_means, expand_databases, plot_summary, summarize

GOOD_IMAGES = 14
SIZE = 32
BATCH = 3
BAD = {  # key -> a word the failure's reason must contain
    "bad/bomb.png": "too large",
    "bad/dangling.jpg": "no such file",
    "bad/empty.png": "0 bytes",
    "bad/folder.jpg": "folder",
    "bad/not-an-image.jpg": "not an image",
    "bad/truncated.jpg": "truncated",
}
RUN_FLAGS = [  # the paper's pairs for the CLI runs; the in-process run uses the default max-random
    "--model",
    "efficientnet-lite0",
    "--weights",
    "imagenet",
    "--input-size",
    str(SIZE),
    "--batch-size",
    str(BATCH),
    "--pairs",
    "random-random",
]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (PIL refuses it as a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """An ImageFolder tree: good JPEG/PNG images of several modes, and every kind of bad file."""
    root = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P", "I;16"]
    for number in range(GOOD_IMAGES):
        folder = root / ("cat" if number % 2 else "dog")
        folder.mkdir(exist_ok=True)
        pixels = (generator.random((36 + number, 44, 3)) * 255).astype(np.uint8)
        picture = Image.fromarray(pixels)
        mode = modes[number % len(modes)]
        if mode == "I;16":
            picture = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
        elif mode != "RGB":
            picture = picture.convert(mode)
        suffix = ".jpg" if number % 3 == 0 and mode in ("RGB", "L") else ".png"
        picture.save(folder / f"{number:03d}{suffix}")
    (root / "notes.txt").write_text("not listed")
    (root / ".hidden").mkdir()
    Image.fromarray(pixels).save(root / ".hidden" / "skipped.png")
    bad = root / "bad"
    bad.mkdir()
    (bad / "bomb.png").write_bytes(_png_claiming(20000, 20000))
    (bad / "dangling.jpg").symlink_to(bad / "gone.jpg")  # root reads any file: an unopenable path instead of chmod 000
    (bad / "empty.png").write_bytes(b"")
    (bad / "folder.jpg").mkdir()
    (bad / "not-an-image.jpg").write_text("hello")
    jpeg = (root / "dog" / "000.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return root


def _cli(*args: str, env=ONE_THREAD, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backpropvis", *args], env=env, capture_output=True, text=True, timeout=120, **kwargs
    )


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT image, content_hash, method, first_logit, first_name, second_logit, second_name, predicted, "
            "predicted_name, class_distance, class_distance_minmax, input_similarity_first, input_similarity_second "
            "FROM results ORDER BY image, method"
        ).fetchall()


def _count(db: Path, table: str) -> int:
    try:
        with sqlite3.connect(db, timeout=0.2) as connection:
            return connection.execute(f"SELECT COUNT(DISTINCT image) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return 0


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> Path:
    """An uninterrupted one-process run of the CLI over every image."""
    db = tmp_path_factory.mktemp("reference") / "results.sqlite"
    done = _cli("class-distance", "--images", str(images), "--db", str(db), "--workers", "1", *RUN_FLAGS)
    assert done.returncode == 0, done.stderr
    return db


def test_listing_is_sorted_recursive_and_sharded(images):
    keys = list_images(images)
    good = sorted(
        path.relative_to(images).as_posix() for path in images.rglob("*") if path.parent.name in ("cat", "dog")
    )
    assert keys == sorted(good + list(BAD))  # bad entries are listed (then recorded), .txt and hidden ones are not
    assert list_images(images, limit=5) == keys[:5]
    parts = [shard(keys, rank, 3) for rank in range(3)]
    assert sorted(sum(parts, [])) == keys and parts[1] == keys[1::3]
    assert rank_db_path("out/results.sqlite", 1, 2) == Path("out/results.rank-1.sqlite")
    assert rank_db_path("out/results.sqlite", 0, 1) == Path("out/results.sqlite")


def test_linked_folders_are_followed_once(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.png").write_bytes(b"")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")  # a cycle
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    (tmp_path / "zz").symlink_to(tmp_path / "real")
    assert list_images(tmp_path) == ["alias/a.png"]  # the first name in sorted order


def test_pairs_depend_on_the_image_only():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 1000, generator=generator)
    keys = [f"class/{number:04d}.jpg" for number in range(6)]
    for kind in ("max-random", "random-random", "top1-top2"):
        together = choose_pairs(kind, logits, keys, seed=0)
        alone = torch.stack([choose_pairs(kind, logits[i : i + 1], keys[i : i + 1], seed=0)[:, 0] for i in range(6)], 1)
        assert torch.equal(together, alone)  # batch composition does not matter
        assert bool((together[0] != together[1]).all())
    assert torch.equal(choose_pairs("max-random", logits, keys, 0)[0], logits.argmax(1))
    assert torch.equal(choose_pairs("top1-top2", logits, keys, 0), logits.topk(2).indices.t())
    assert torch.equal(choose_pairs("random-random", logits, keys, 0), random_pairs(1000, keys, 0))  # no logits needed
    many = [f"n01440764/ILSVRC2012_val_{number:08d}.JPEG" for number in range(200)]
    draws = choose_pairs("random-random", torch.zeros(200, 1000), many, seed=0)
    assert len(set(draws[0].tolist())) > 150  # paths differing late still get their own draws
    assert not torch.equal(draws, choose_pairs("random-random", torch.zeros(200, 1000), many, seed=1))


def test_bad_files_are_recorded_and_skipped(images, tmp_path):
    db = tmp_path / "run.sqlite"
    report = run_class_distance(
        images,
        db,
        model=ModelSpec("efficientnet-lite0", weights="imagenet", input_size=SIZE),
        batch_size=4,
        workers=2,
        progress=False,
    )
    assert (report.images_total, report.done_now, report.failed_now) == (
        GOOD_IMAGES + len(BAD),
        GOOD_IMAGES + len(BAD),
        len(BAD),
    )
    stored = read_database(db)
    reasons = {row["image"]: row["reason"] for row in stored.failures}
    assert set(reasons) == set(BAD)
    for key, word in BAD.items():
        assert word in reasons[key], (key, reasons[key])
    assert len(stored.results) == 3 * GOOD_IMAGES
    assert {row["image"] for row in stored.results}.isdisjoint(BAD)

    # one image checked against an independent computation: plain autograd saliency
    row = next(row for row in stored.results if row["method"] == "saliency")
    path = images / row["image"]
    assert row["content_hash"] == hashlib.sha256(path.read_bytes()).hexdigest()
    model = build_model("efficientnet-lite0", "imagenet")
    x = model.preprocessing.resized(SIZE)(load_image(path))[None].requires_grad_(True)
    logits = model(x)
    assert row["predicted"] == row["first_logit"] == int(logits.argmax())
    assert row["second_logit"] != row["first_logit"]
    first = torch.autograd.grad(logits[0, row["first_logit"]], x, retain_graph=True)[0].double().flatten()
    second = torch.autograd.grad(logits[0, row["second_logit"]], x)[0].double().flatten()
    expected = float((first / first.norm() - second / second.norm()).norm())
    assert row["class_distance"] == pytest.approx(expected, rel=1e-4)

    summary = summarize([db])
    assert summary["images"] == GOOD_IMAGES and summary["failures"] == len(BAD) and summary["complete"]
    assert set(summary["methods"]) == {"saliency", "deconvnet", "gbp"}
    saliency = [r["class_distance"] for r in stored.results if r["method"] == "saliency"]
    assert summary["methods"]["saliency"]["class_distance"]["mean"] == pytest.approx(np.mean(saliency), rel=1e-12)
    assert plot_summary(summary, tmp_path / "fig7.png").stat().st_size > 1000


def test_resume_after_sigkill_equals_an_uninterrupted_run(images, reference, tmp_path):
    db = tmp_path / "killed.sqlite"
    command = [
        sys.executable,
        "-m",
        "backpropvis",
        "class-distance",
        "--images",
        str(images),
        "--db",
        str(db),
        "--workers",
        "0",
        *RUN_FLAGS,
    ]
    process = subprocess.Popen(command, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while (
        _count(db, "results") + _count(db, "failures") < 2 * BATCH
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    total = GOOD_IMAGES + len(BAD)
    interrupted = _count(db, "results") + _count(db, "failures")
    assert 0 < interrupted < total, "the run was not killed mid-way"

    resumed = _cli("class-distance", "--images", str(images), "--db", str(db), "--workers", "0", *RUN_FLAGS)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{interrupted} before" in resumed.stdout
    assert _rows(db) == _rows(reference)  # row for row, bit for bit, no duplicate, none lost
    stored, uninterrupted = read_database(db), read_database(reference)
    assert [(r["image"], r["reason"]) for r in stored.failures] == [
        (r["image"], r["reason"]) for r in uninterrupted.failures
    ]
    assert stored.run["finished_at"] is not None
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 2
    statistics = {key: value for key, value in summarize([db]).items() if key != "databases"}
    assert statistics == {key: value for key, value in summarize([reference]).items() if key != "databases"}


def test_torchrun_two_processes_merge_to_the_one_process_run(images, reference, tmp_path):
    """Each rank takes every second image; together they hold the one-process run's rows.
    The ranks compute their images in other batches than the single process, so the
    values agree to float32 rounding (bit for bit where the kernels are batch-invariant,
    as measured here with one thread per process; not something to rely on)."""
    db = tmp_path / "results.sqlite"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "backpropvis",
        "class-distance",
        "--images",
        str(images),
        "--db",
        str(db),
        "--workers",
        "0",
        *RUN_FLAGS,
    ]
    done = subprocess.run(command, env=ONE_THREAD, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [tmp_path / "results.rank-0.sqlite", tmp_path / "results.rank-1.sqlite"]
    assert expand_databases([db]) == [path.resolve() for path in ranks]
    keys = list_images(images)
    for rank, path in enumerate(ranks):
        stored = read_database(path)
        assert {r["image"] for r in stored.results} | {r["image"] for r in stored.failures} == set(keys[rank::2])
    merged, single = summarize([db]), summarize([reference])
    assert merged["complete"] and merged["images"] == GOOD_IMAGES
    for key in ("images", "failures", "failure_reasons"):
        assert merged[key] == single[key]
    for method, statistics in single["methods"].items():
        assert merged["methods"][method]["class_distance"]["mean"] == pytest.approx(
            statistics["class_distance"]["mean"], rel=1e-3
        )
    ranked, alone = sorted(_rows(ranks[0]) + _rows(ranks[1])), _rows(reference)
    assert [row[:9] for row in ranked] == [row[:9] for row in alone]  # images, hashes, methods, logits, names
    assert np.allclose([row[9:] for row in ranked], [row[9:] for row in alone], rtol=5e-3, atol=1e-5)
    assert "from 2 database(s)" in done.stdout  # rank 0 summarised both ranks after the barrier


def _store(path: Path, values: dict[str, list[float]], images: list[str], **settings) -> Path:
    config = dict(
        model="m", weights="random", methods=tuple(values), pairs="max-random", seed=0, input_size=None, images="/x"
    )
    config.update(settings)
    store = ResultsStore(path, RunSettings(**config), "random", {})
    store.set_total(len(images))
    rows = [
        ResultRow(image, "h", method, 1, "a", 2, "b", 1, "a", distances[number], distances[number] / 2, 0.1, 0.3)
        for method, distances in values.items()
        for number, image in enumerate(images)
    ]
    store.write_batch(rows, [], len(images))
    store.close()
    return path


def test_summary_on_known_values(tmp_path):
    images = [f"{number}.png" for number in range(5)]
    db = _store(tmp_path / "known.sqlite", {"saliency": [1.0] * 5, "deconvnet": [0.5] * 5, "gbp": [0.25] * 5}, images)
    summary = summarize([db], resamples=200)
    assert summary["methods"]["saliency"]["class_distance"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert summary["methods"]["gbp"]["class_distance_minmax"] == {"mean": 0.125, "low": 0.125, "high": 0.125}
    assert summary["methods"]["gbp"]["input_similarity"] == pytest.approx(0.2)
    assert summary["ratios"]["saliency/gbp"] == {"mean": 4.0, "low": 4.0, "high": 4.0}
    assert summary["ratios"]["saliency/deconvnet"]["mean"] == 2.0

    # two files of different runs are refused, naming the setting; an image in two files too
    other = _store(tmp_path / "other.sqlite", {"saliency": [1.0], "deconvnet": [1.0], "gbp": [1.0]}, ["9.png"], seed=3)
    with pytest.raises(StoreError, match="`seed` 3 there, 0 here|`seed` 0 there, 3 here"):
        summarize([db, other])
    twice = _store(
        tmp_path / "twice.sqlite",
        {"saliency": [1.0], "deconvnet": [1.0], "gbp": [1.0]},
        ["0.png"],
        rank=1,
        world_size=2,
    )
    with pytest.raises(StoreError):
        summarize([db, twice])


def test_bootstrap_interval_matches_the_normal_closed_form():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(400, 1))
    means = bootstrap_means(values, resamples=4000, seed=0, chunk_elements=10_000)
    low, high = np.percentile(means[:, 0], [2.5, 97.5])
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # sigma / sqrt(n) for the mean
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.05 * half_width + 0.02)
    assert np.array_equal(means, bootstrap_means(values, resamples=4000, seed=0))  # chunking changes nothing
    assert np.all(bootstrap_means(np.full((7, 2), 0.5), resamples=50) == 0.5)


def test_cli_bad_input_is_one_line_and_status_2(images, reference, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    db = str(tmp_path / "x.sqlite")
    cases = {
        "missing folder": ["class-distance", "--images", str(tmp_path / "nope"), "--db", db, *RUN_FLAGS],
        "empty folder": ["class-distance", "--images", str(empty), "--db", db, *RUN_FLAGS],
        "wrong model": ["class-distance", "--images", str(images), "--db", db, "--model", "resnet50"],
        "other settings": [
            "class-distance",
            "--images",
            str(images),
            "--db",
            str(reference),
            *RUN_FLAGS,
            "--pairs",
            "top1-top2",
        ],
        "unwritable db": ["class-distance", "--images", str(images), "--db", "/proc/results.sqlite", *RUN_FLAGS],
        "db is a folder": ["class-distance", "--images", str(images), "--db", str(empty), *RUN_FLAGS],
        "missing db": ["summarize", str(tmp_path / "none.sqlite")],
        "not a db": ["summarize", str(images / "dog" / "000.jpg")],
    }
    before = _rows(reference)
    for name, argv in cases.items():
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse's own errors
            status = exit_.code
        error = capsys.readouterr().err.strip()
        assert status == 2, name
        assert len(error.splitlines()) == 1 and "Traceback" not in error, (name, error)
    assert "--pairs random-random there, top1-top2 here" in _last_error(main, capsys, cases["other settings"])
    assert _rows(reference) == before  # a refused run leaves the database as it was


def _last_error(run, capsys, argv) -> str:
    run(argv)
    return capsys.readouterr().err


def test_cli_on_the_bundled_samples(tmp_path, capsys):
    db = tmp_path / "samples.sqlite"
    assert main(["class-distance", "--samples", "--limit", "2", "--db", str(db), *RUN_FLAGS, "--workers", "0"]) == 0
    assert "2 images, 0 failed" in capsys.readouterr().out
    assert main(["summarize", str(db), "--json", "--plot", str(tmp_path / "fig7.png")]) == 0
    assert '"images": 2' in capsys.readouterr().out and (tmp_path / "fig7.png").is_file()


def test_cluster_bootstrap_counts_photos_not_crops():
    """Ten photos, each with twenty identical crops: the crops add nothing, so the interval of
    the mean must be that of ten values (sigma / sqrt(10)), not of two hundred."""
    photos = np.random.default_rng(1).normal(0.0, 1.0, size=10)
    values = np.repeat(photos, 20)[:, None]  # [200, 1]
    groups = [f"photo{number}" for number in range(10) for _ in range(20)]
    clustered = bootstrap_means(values, resamples=4000, seed=0, groups=groups, chunk_elements=1000)
    naive = bootstrap_means(values, resamples=4000, seed=0)
    plain = photos.std(ddof=0) / np.sqrt(10)  # the bootstrap's standard error of a mean of 10
    assert clustered[:, 0].std() == pytest.approx(plain, rel=0.1)
    assert naive[:, 0].std() == pytest.approx(plain / np.sqrt(20), rel=0.1)  # what crops counted as photos claim
    # groups of one row are the plain bootstrap in distribution; unequal groups weigh by their rows
    single = bootstrap_means(values[::20], resamples=4000, seed=0, groups=[str(n) for n in range(10)])
    assert single[:, 0].std() == pytest.approx(plain, rel=0.1)
    uneven = bootstrap_means(np.array([[0.0], [0.0], [0.0], [4.0]]), resamples=3, seed=0, groups=["a", "a", "a", "b"])
    assert set(np.round(uneven[:, 0], 9)) <= {0.0, 1.0, 4.0}  # aa: 0, ab: 4/4 = 1, bb: 4
    with pytest.raises(ValueError, match="group labels"):
        bootstrap_means(values, groups=groups[:5])


def test_intervals_from_fewer_than_20_images_are_flagged(tmp_path):
    """5 images: the summary, its text and its chart title say the intervals are a rough guide; 20 do not."""
    from backpropvis.core.metrics import SMALL_SAMPLE
    from backpropvis.stats.summary import format_summary

    few = [f"{number}.png" for number in range(5)]
    db = _store(tmp_path / "few.sqlite", {"saliency": [1.0, 0.9, 1.1, 1.0, 0.8], "gbp": [0.2] * 5}, few)
    summary = summarize([db], resamples=50)
    assert summary["small_sample"] == "from 5 images only (fewer than 20): read the interval as a rough guide"
    assert "note: the 95% intervals are from 5 images only" in format_summary(summary)
    enough = [f"{number}.png" for number in range(SMALL_SAMPLE)]
    db = _store(tmp_path / "enough.sqlite", {"saliency": [1.0] * SMALL_SAMPLE, "gbp": [0.2] * SMALL_SAMPLE}, enough)
    assert summarize([db], resamples=50)["small_sample"] is None
