"""The SQLite results database of a class-distance run: schema, settings check, rows.

One file holds one run (one rank's share of it under torchrun):

- ``runs``: the settings that decide the results (model, its arguments and source,
  weights and their fingerprint, output selector, methods, pairs, seed, input size,
  precision, images folder, rank, world size), the other settings (batch size,
  workers, device, limit), library versions, start and end times.
- ``sessions``: one row per start of the command (a resumed run has several).
- ``results``: one row per (run, image, method), unique.
- ``failures``: one row per (run, image) that could not be read or decoded, unique.
- ``receipts``: at TF32 or bfloat16, each session's precision receipt (JSON; added to a
  database of schema 2 when it is next written).

Each batch's rows are written in one transaction, so a process killed at any moment
(even ``kill -9``) leaves whole batches or nothing; a restart skips every image that
already has rows and never writes one twice.

Schema 2 added the model's arguments, source, weights fingerprint, output selector and
precision to a run's identity. A schema-1 database (written before) is still read by
:func:`read_database` (those settings then read "unknown (schema 1)"), but a run is
not resumed in it: without a fingerprint it cannot tell whether the model is the same.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional, Union

from ..core.errors import StoreError
from .run_settings import RunSettings, show_setting

__all__ = ["RunSettings", "ResultRow", "ResultsStore", "read_database", "StoredRun", "show_setting"]

SCHEMA_VERSION = 2

UNKNOWN_IN_SCHEMA_1 = "unknown (schema 1)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL, weights TEXT NOT NULL, weights_description TEXT NOT NULL,
    model_args TEXT NOT NULL, model_source TEXT NOT NULL, weights_fingerprint TEXT NOT NULL, output TEXT,
    precision TEXT NOT NULL,
    methods TEXT NOT NULL, pairs TEXT NOT NULL, seed INTEGER NOT NULL, input_size INTEGER,
    images TEXT NOT NULL, rank INTEGER NOT NULL, world_size INTEGER NOT NULL,
    settings TEXT NOT NULL, versions TEXT NOT NULL, images_total INTEGER,
    started_at TEXT NOT NULL, finished_at TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    started_at TEXT NOT NULL, ended_at TEXT, images_done INTEGER NOT NULL DEFAULT 0, settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    image TEXT NOT NULL, content_hash TEXT NOT NULL, method TEXT NOT NULL,
    first_logit INTEGER NOT NULL, first_name TEXT NOT NULL,
    second_logit INTEGER NOT NULL, second_name TEXT NOT NULL,
    predicted INTEGER NOT NULL, predicted_name TEXT NOT NULL,
    class_distance REAL NOT NULL, class_distance_minmax REAL NOT NULL,
    input_similarity_first REAL NOT NULL, input_similarity_second REAL NOT NULL,
    UNIQUE (run_id, image, method)
);
CREATE TABLE IF NOT EXISTS failures (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    image TEXT NOT NULL, content_hash TEXT NOT NULL, reason TEXT NOT NULL,
    UNIQUE (run_id, image)
);
CREATE TABLE IF NOT EXISTS receipts (run_id INTEGER NOT NULL REFERENCES runs(id),
    session_id INTEGER NOT NULL REFERENCES sessions(id), receipt TEXT NOT NULL, UNIQUE (session_id));
"""

_RESULT_COLUMNS = (
    "image",
    "content_hash",
    "method",
    "first_logit",
    "first_name",
    "second_logit",
    "second_name",
    "predicted",
    "predicted_name",
    "class_distance",
    "class_distance_minmax",
    "input_similarity_first",
    "input_similarity_second",
)


@dataclass(frozen=True)
class ResultRow:
    """One (image, method) result; the field names are the ``results`` columns."""

    image: str
    content_hash: str
    method: str
    first_logit: int
    first_name: str
    second_logit: int
    second_name: str
    predicted: int
    predicted_name: str
    class_distance: float
    class_distance_minmax: float
    input_similarity_first: float
    input_similarity_second: float

    def values(self) -> tuple:
        return tuple(getattr(self, column) for column in _RESULT_COLUMNS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    import numpy
    import PIL
    import torch

    from .. import __version__

    return {
        "backpropvis": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }


def _settings_from_row(row: sqlite3.Row) -> RunSettings:
    """The settings of a ``runs`` row; a schema-1 row lacks the model's identity beyond its name."""
    columns = row.keys()

    def newer(name: str, schema_1_value):
        return row[name] if name in columns else schema_1_value

    return RunSettings(
        model=row["model"],
        weights=row["weights"],
        methods=tuple(row["methods"].split(",")),
        pairs=row["pairs"],
        seed=row["seed"],
        input_size=row["input_size"],
        images=row["images"],
        rank=row["rank"],
        world_size=row["world_size"],
        model_args=newer("model_args", UNKNOWN_IN_SCHEMA_1),
        model_source=newer("model_source", UNKNOWN_IN_SCHEMA_1),
        weights_fingerprint=newer("weights_fingerprint", UNKNOWN_IN_SCHEMA_1),
        output=newer("output", None),
        precision=newer("precision", "float32"),  # before schema 2 the engine always computed in float32
        smooth=json.loads(row["settings"]).get("smooth_activations", {}).get("mode", "refuse"),
    )


class ResultsStore:
    """The database of one run (one rank), opened for writing.

    Opening it creates the schema, or checks that the run stored there has the same
    :class:`RunSettings`; a difference raises :class:`StoreError` naming it, before
    anything is written. ``elsewhere`` is what such a message tells the user to use
    instead ("another `db`"; the audit's database: "another `out`").
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        settings: RunSettings,
        weights_description: str,
        other_settings: dict,
        elsewhere: str = "another `db`",
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self.elsewhere = elsewhere
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the folder of database {self.path}: {error.strerror or error}") from None
        if self.path.is_dir():
            raise StoreError(f"database path {self.path} is a folder; give a file name such as results.sqlite")
        try:
            self.connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.connection.row_factory = sqlite3.Row
            self.connection.execute("PRAGMA synchronous = FULL")
            self._refuse_foreign_database()
            # a write transaction at once: a read-only file fails here, not after an hour of work
            self.connection.executescript("BEGIN IMMEDIATE;" + _SCHEMA)
            self.run_id = self._find_or_create_run(weights_description, other_settings)
            self.session_id = self.connection.execute(
                "INSERT INTO sessions (run_id, started_at, settings) VALUES (?, ?, ?)",
                (self.run_id, _now(), json.dumps(other_settings, sort_keys=True)),
            ).lastrowid
            self.connection.execute("COMMIT")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot write database {self.path}: {error}") from None

    def _refuse_foreign_database(self) -> None:
        tables = {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not {"meta", "runs", "results", "failures"} <= tables:
            self.connection.close()
            found = ", ".join(sorted(tables))
            raise StoreError(f"{self.path} is a database of something else (tables {found}); use {self.elsewhere}")

    def _find_or_create_run(self, weights_description: str, other_settings: dict) -> int:
        self.connection.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        version = self.connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        if version != str(SCHEMA_VERSION):
            self.connection.execute("ROLLBACK")
            self.connection.close()
            older = version.isdigit() and int(version) < SCHEMA_VERSION
            raise StoreError(
                f"database {self.path} was written by an {'older' if older else 'other'} backpropvis (schema "
                f"{version}, this one writes {SCHEMA_VERSION}); summarize still reads it, but a run cannot resume in "
                f"it: use {self.elsewhere}"
            )
        stored_id = self._stored_run()
        if stored_id is not None:
            return stored_id
        s = self.settings
        run_id = self.connection.execute(
            "INSERT INTO runs (model, weights, weights_description, model_args, model_source, weights_fingerprint, "
            "output, precision, methods, pairs, seed, input_size, images, rank, world_size, settings, versions, "
            "started_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.model,
                s.weights,
                weights_description,
                s.model_args,
                s.model_source,
                s.weights_fingerprint,
                s.output,
                s.precision,
                ",".join(s.methods),
                s.pairs,
                s.seed,
                s.input_size,
                s.images,
                s.rank,
                s.world_size,
                json.dumps(other_settings, sort_keys=True),
                json.dumps(_versions(), sort_keys=True),
                _now(),
            ),
        ).lastrowid
        assert run_id is not None  # an INSERT always has one
        return run_id

    def _stored_run(self) -> Optional[int]:
        """The id of the run stored here with the same settings; None for none, or for a run
        with other settings that holds no row yet (its first batch failed: it is removed, so
        the corrected command starts afresh in the same file).

        Raises:
            StoreError: a run with other settings and results (or failures) is stored here.
        """
        row = self.connection.execute("SELECT * FROM runs").fetchone()
        if row is None:
            return None
        differences = self.settings.differences(_settings_from_row(row))
        if not differences:
            return row["id"]
        held = "SELECT 1 FROM results WHERE run_id = ? UNION ALL SELECT 1 FROM failures WHERE run_id = ? LIMIT 1"
        if self.connection.execute(held, (row["id"], row["id"])).fetchone() is None:
            self.connection.execute("DELETE FROM sessions WHERE run_id = ?", (row["id"],))
            self.connection.execute("DELETE FROM runs WHERE id = ?", (row["id"],))
            return None
        self.connection.execute("ROLLBACK")
        self.connection.close()
        raise StoreError(
            f"database {self.path} holds a run with other settings ({'; '.join(differences)}); "
            f"use the same settings to resume it, or {self.elsewhere}"
        )

    def done_images(self) -> set[str]:
        """Keys of the images that already have rows (results or a failure)."""
        query = "SELECT image FROM results WHERE run_id = ? UNION SELECT image FROM failures WHERE run_id = ?"
        return {row[0] for row in self.connection.execute(query, (self.run_id, self.run_id))}

    def set_total(self, images_total: int) -> None:
        """Record how many images this run (rank) has to do in all."""
        self.connection.execute("UPDATE runs SET images_total = ? WHERE id = ?", (images_total, self.run_id))

    def write_batch(
        self, rows: Iterable[ResultRow], failures: Iterable[tuple[str, str, str]], images_done: int
    ) -> None:
        """Write one batch's result rows and failures ``(key, hash, reason)`` in one transaction."""
        columns = ", ".join(("run_id",) + _RESULT_COLUMNS)
        marks = ", ".join("?" * (len(_RESULT_COLUMNS) + 1))
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany(
                f"INSERT INTO results ({columns}) VALUES ({marks})", [(self.run_id,) + row.values() for row in rows]
            )
            self.connection.executemany(
                "INSERT INTO failures (run_id, image, content_hash, reason) VALUES (?, ?, ?, ?)",
                [(self.run_id, *failure) for failure in failures],
            )
            self.connection.execute(
                "UPDATE sessions SET images_done = images_done + ?, ended_at = ? WHERE id = ?",
                (images_done, _now(), self.session_id),
            )
            self.connection.execute("COMMIT")
        except sqlite3.DatabaseError as error:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise StoreError(f"cannot write database {self.path}: {error}") from None

    def write_receipt(self, receipt: dict) -> None:
        """Record this session's precision receipt (``PrecisionReceipt.as_dict()``)."""
        row = (self.run_id, self.session_id, json.dumps(receipt, sort_keys=True))
        try:
            self.connection.execute("INSERT OR REPLACE INTO receipts VALUES (?, ?, ?)", row)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot write database {self.path}: {error}") from None

    def finish(self, complete: bool) -> None:
        """Close the session; mark the run finished when every image has its rows.

        A batch interrupted halfway (Ctrl-C inside :meth:`write_batch`) is rolled back first.
        """
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")
        now = _now()
        self.connection.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (now, self.session_id))
        if complete:
            self.connection.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (now, self.run_id))

    def close(self) -> None:
        self.connection.close()


@dataclass
class StoredRun:
    """What one database file holds, read back for a summary.

    Attributes:
        path: the file.
        settings: its run's :class:`RunSettings`.
        run: the ``runs`` row as a dict.
        results: every ``results`` row as a dict.
        failures: every ``failures`` row as a dict.
        receipts: its sessions' precision receipts (dicts), oldest first.
    """

    path: Path
    settings: RunSettings
    run: dict
    results: list[dict]
    failures: list[dict]
    receipts: list[dict] = field(default_factory=list)


def read_database(path: Union[str, os.PathLike], rows: bool = True) -> StoredRun:
    """Read a results database (read-only, so a read-only file is fine); with
    ``rows=False`` only its run's settings (``results`` and ``failures`` left empty).

    Raises:
        StoreError: a missing file, not a database, or not a class-distance database.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"database {path} does not exist")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        connection.row_factory = sqlite3.Row
        try:
            runs = connection.execute("SELECT * FROM runs").fetchall()
            if len(runs) != 1:
                raise StoreError(f"database {path} holds {len(runs)} runs, not one")
            results, failures = [], []
            if rows:
                results = [dict(row) for row in connection.execute("SELECT * FROM results ORDER BY image, method")]
                failures = [dict(row) for row in connection.execute("SELECT * FROM failures ORDER BY image")]
            receipts = _receipts(connection)
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path} is not a class-distance results database ({error})") from None
    return StoredRun(path, _settings_from_row(runs[0]), dict(runs[0]), results, failures, receipts)


def _receipts(connection: sqlite3.Connection) -> list[dict]:
    """The ``receipts`` table's receipts, oldest session first (none in a database written before it)."""
    try:
        return [json.loads(row[0]) for row in connection.execute("SELECT receipt FROM receipts ORDER BY session_id")]
    except sqlite3.OperationalError:  # no such table
        return []
