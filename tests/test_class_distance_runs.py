"""Class-distance runs as a user meets them: Ctrl-C says what is saved and how to resume,
the summary line names the failed files, ``summarize`` puts different runs side by side,
databases of schema 1 are still read, and --precision is part of a run's identity."""

from __future__ import annotations

import json
import pathlib
import sqlite3

import numpy as np
import pytest
from cli_runner import run_cli
from PIL import Image

import backpropvis.stats.runner
from backpropvis.stats import read_database, summarize_runs
from backpropvis.stats.store import ResultRow, ResultsStore, RunSettings

RUN = [
    "--model",
    "efficientnet-lite0",
    "--weights",
    "imagenet",
    "--input-size",
    "32",
    "--workers",
    "0",
    "--pairs",
    "random-random",
]


def images_in(db: pathlib.Path, table: str = "results") -> set[str]:
    with sqlite3.connect(db) as connection:
        return {row[0] for row in connection.execute(f"SELECT image FROM {table}")}


def test_ctrl_c_says_how_many_images_are_saved_and_that_the_same_command_resumes(tmp_path, capsys, monkeypatch) -> None:
    db = tmp_path / "run.sqlite"
    argv = ["class-distance", "--samples", "--batch-size", "2", "--db", str(db), *RUN]
    measure, calls = backpropvis.stats.runner._measure, []

    def interrupted_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return measure(*args, **kwargs)

    monkeypatch.setattr(backpropvis.stats.runner, "_measure", interrupted_on_the_third_batch)
    status, _, err = run_cli(argv, capsys)
    assert status == 130
    saved = images_in(db)
    assert len(saved) == 4  # two whole batches of two
    assert err.strip().splitlines()[-1] == (
        f"backpropvis: interrupted: 4 of 6 images saved in {db} (4 in this session); "
        "run the same command again to resume"
    )

    monkeypatch.setattr(backpropvis.stats.runner, "_measure", measure)
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "2 images measured now, 0 failed" in stdout and "4 before, 6 in all" in stdout
    assert len(images_in(db)) == 6 and saved < images_in(db)


def test_the_summary_line_names_the_failed_files(tmp_path, capsys) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for number in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 * number, dtype=np.uint8)).save(folder / f"good{number}.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "zz.png").write_text("neither")
    status, stdout, err = run_cli(
        ["class-distance", "--images", str(folder), "--db", str(tmp_path / "f.sqlite"), *RUN], capsys
    )
    assert status == 0, err
    line = next(line for line in stdout.splitlines() if "images measured now" in line)
    assert "2 images measured now, 4 failed: empty.png, notes.jpg, zero.jpg and 1 more" in line  # apart
    assert images_in(tmp_path / "f.sqlite", "failures") == {"empty.png", "notes.jpg", "zero.jpg", "zz.png"}


def _store(path: pathlib.Path, values: dict[str, list[float]], first: int = 0, **settings) -> pathlib.Path:
    """A database holding ``values`` (method -> class distance per image) under ``settings``."""
    config = dict(
        model="m",
        weights="random",
        methods=tuple(values),
        pairs="max-random",
        seed=0,
        input_size=None,
        images="/x",
        weights_fingerprint="sha256:" + "0" * 64,
    )
    config.update(settings)
    store = ResultsStore(path, RunSettings(**config), str(config["weights"]), {})
    count = len(next(iter(values.values())))
    store.set_total(count)
    store.write_batch(
        [
            ResultRow(
                f"{first + number}.png",
                "h",
                method,
                1,
                "a",
                2,
                "b",
                1,
                "a",
                distances[number],
                distances[number] / 2,
                0.1,
                0.3,
            )
            for method, distances in values.items()
            for number in range(count)
        ],
        [],
        count,
    )
    store.close()
    return path


def test_summarize_puts_different_runs_side_by_side(tmp_path, capsys) -> None:
    random = _store(tmp_path / "random.sqlite", {"saliency": [1.0] * 4, "gbp": [0.5] * 4})
    trained = _store(
        tmp_path / "trained.sqlite",
        {"saliency": [0.8] * 3, "gbp": [0.1] * 3},
        weights="imagenet",
        weights_fingerprint="sha256:" + "1" * 64,
    )
    argv = ["summarize", str(random), str(trained), "--plot", str(tmp_path / "both.png")]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "2 runs, side by side:"
    assert "A: m (random)" in stdout and "B: m (imagenet)" in stdout and "random.sqlite" in stdout
    assert "they differ in --weights: A random, B imagenet" in stdout
    saliency = next(line for line in lines if line.split()[0] == "saliency")  # the first table: unit L2
    assert saliency.split()[1:] == ["1.0000", "[1.0000,", "1.0000]", "0.8000", "[0.8000,", "0.8000]"]
    ratio = next(line for line in lines if "ratio saliency/gbp" in line)
    assert ratio.split()[2:] == ["2.00", "[2.00,", "2.00]", "8.00", "[8.00,", "8.00]"]
    assert (tmp_path / "both.png").stat().st_size > 0

    summary = summarize_runs([random, trained], resamples=50)
    assert [run["images"] for run in summary["runs"]] == [4, 3] and summary["labels"] == ["A", "B"]
    assert summary["runs"][1]["methods"]["gbp"]["class_distance"]["mean"] == pytest.approx(0.1)
    status, stdout, _ = run_cli(["summarize", str(random), str(trained), "--json"], capsys)
    assert status == 0 and len(json.loads(stdout)["runs"]) == 2

    # the ranks of one run still merge into one column, next to another run
    rank1 = _store(tmp_path / "random.rank-1.sqlite", {"saliency": [3.0], "gbp": [0.5]}, first=1, rank=1, world_size=2)
    rank0 = _store(tmp_path / "random.rank-0.sqlite", {"saliency": [1.0], "gbp": [0.5]}, world_size=2)
    merged = summarize_runs([rank0, trained, rank1], resamples=50)
    assert [run["images"] for run in merged["runs"]] == [2, 3] and merged["runs"][0]["notes"] == []
    assert merged["runs"][0]["methods"]["saliency"]["class_distance"]["mean"] == pytest.approx(2.0)


def test_runs_side_by_side_with_one_method_have_no_ratio_rows(tmp_path, capsys) -> None:
    first = _store(tmp_path / "first.sqlite", {"saliency": [1.0] * 2})
    second = _store(tmp_path / "second.sqlite", {"saliency": [0.5] * 2}, seed=1)
    status, stdout, err = run_cli(["summarize", str(first), str(second)], capsys)
    assert status == 0, err
    assert "they differ in --seed: A 0, B 1" in stdout and "ratio" not in stdout


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL, weights TEXT NOT NULL, weights_description TEXT NOT NULL,
    methods TEXT NOT NULL, pairs TEXT NOT NULL, seed INTEGER NOT NULL, input_size INTEGER,
    images TEXT NOT NULL, rank INTEGER NOT NULL, world_size INTEGER NOT NULL,
    settings TEXT NOT NULL, versions TEXT NOT NULL, images_total INTEGER,
    started_at TEXT NOT NULL, finished_at TEXT
);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
    images_done INTEGER NOT NULL DEFAULT 0, settings TEXT NOT NULL);
CREATE TABLE results (
    run_id INTEGER NOT NULL, image TEXT NOT NULL, content_hash TEXT NOT NULL, method TEXT NOT NULL,
    first_logit INTEGER NOT NULL, first_name TEXT NOT NULL, second_logit INTEGER NOT NULL, second_name TEXT NOT NULL,
    predicted INTEGER NOT NULL, predicted_name TEXT NOT NULL, class_distance REAL NOT NULL,
    class_distance_minmax REAL NOT NULL, input_similarity_first REAL NOT NULL, input_similarity_second REAL NOT NULL,
    UNIQUE (run_id, image, method)
);
CREATE TABLE failures (run_id INTEGER NOT NULL, image TEXT NOT NULL, content_hash TEXT NOT NULL, reason TEXT NOT NULL,
    UNIQUE (run_id, image));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs VALUES (1, 'vgg16', 'random', 'random (seed 0)', 'saliency,gbp', 'max-random', 0, NULL, 'samples',
    0, 1, '{}', '{}', 2, '2025-01-01T00:00:00+00:00', '2025-01-01T00:01:00+00:00');
INSERT INTO results VALUES (1, 'coffee', 'h', 'saliency', 1, 'a', 2, 'b', 1, 'a', 1.2, 0.3, 0.0, 0.1);
INSERT INTO results VALUES (1, 'coffee', 'h', 'gbp', 1, 'a', 2, 'b', 1, 'a', 0.4, 0.1, 0.5, 0.6);
INSERT INTO results VALUES (1, 'tabby', 'h', 'saliency', 1, 'a', 2, 'b', 1, 'a', 1.0, 0.3, 0.0, 0.1);
INSERT INTO results VALUES (1, 'tabby', 'h', 'gbp', 1, 'a', 2, 'b', 1, 'a', 0.2, 0.1, 0.5, 0.6);
"""


def test_a_schema_1_database_is_summarized_but_not_resumed(tmp_path, capsys) -> None:
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as connection:
        connection.executescript(SCHEMA_1)
    before = old.read_bytes()
    stored = read_database(old)
    assert stored.settings.weights_fingerprint == "unknown (schema 1)" and stored.settings.precision == "float32"
    status, stdout, err = run_cli(["summarize", str(old)], capsys)
    assert status == 0, err
    assert "vgg16 (random (seed 0))" in stdout and "ratio saliency/gbp: 3.67" in stdout  # (1.2 + 1.0) / (0.4 + 0.2)

    status, _, err = run_cli(
        ["class-distance", "--samples", "--db", str(old), "--model", "cnn3", "--input-size", "32"], capsys
    )
    assert status == 2 and err.count("\n") == 1
    assert "older backpropvis (schema 1" in err and "summarize still reads it" in err and "another --db" in err
    assert old.read_bytes() == before  # refused without a write


def test_precision_is_part_of_a_runs_identity(tmp_path, capsys) -> None:
    db = tmp_path / "p.sqlite"
    argv = ["class-distance", "--samples", "--limit", "1", "--db", str(db), *RUN]
    status, _, err = run_cli([*argv, "--precision", "float32"], capsys)
    assert status == 0, err
    assert read_database(db).settings.precision == "float32"
    status, _, err = run_cli([*argv, "--precision", "bfloat16"], capsys)
    assert status == 2 and "--precision float32 there, bfloat16 here" in err
    status, _, err = run_cli(argv, capsys)
    assert status == 2 and "--precision float32 there, default here" in err
