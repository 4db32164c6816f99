"""The run store: one SQLite file with every trial of a sweep, its per-epoch metrics and its files.

Only the driver of a sweep writes to it (workers return results over Dask), so
concurrent workers can never corrupt it; each trial is keyed by the hash of its
configuration, so recording a trial again replaces it instead of adding a row.
"""

import json
import socket
import sqlite3
import time
from pathlib import Path

from .errors import DataError

__all__ = ["RunStore", "METRICS", "score_metric"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,          -- hash of the trial's configuration
    config TEXT NOT NULL,         -- the trial's settings, JSON
    status TEXT NOT NULL,         -- running | done | failed
    folder TEXT,                  -- where the trial's model, metrics and checkpoint live
    host TEXT,                    -- the worker that trained it
    driver_host TEXT,
    started REAL, finished REAL,  -- Unix times
    total_seconds REAL, seconds_per_epoch REAL,
    test_loss REAL, test_accuracy REAL,
    error TEXT,
    test_r2 REAL                  -- regressions (fcnet.tables); their test_accuracy is NULL

);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL, seconds REAL, loss REAL, accuracy REAL, val_loss REAL, val_accuracy REAL,
    lr REAL,                      -- the rate the epoch trained at
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""

METRICS = ("test_accuracy", "test_r2", "test_loss", "seconds_per_epoch", "total_seconds")
HIGHER_IS_BETTER = ("test_accuracy", "test_r2")


def score_metric(configs):
    """What ranks a sweep's trials: ``test_r2`` when every trial is a regression, else ``test_accuracy``."""
    configs = list(configs)
    return "test_r2" if configs and all(c.get("task") == "regression" for c in configs) else "test_accuracy"


def _check_store(path):
    """Refuse a file that is not an fcnet run store (another database, or not SQLite at all)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise DataError(f"{path}: not an fcnet run store ({exc})") from None
    if tables and not {"runs", "epochs", "artifacts"} <= tables:
        raise DataError(f"{path}: not an fcnet run store (its tables: {', '.join(sorted(tables))})")


class RunStore:
    """A SQLite run store at ``path`` (created if missing)."""

    def __init__(self, path, create=True):
        """Open (``create``: or create) the store; a SQLite file that is not one is refused, not extended."""
        self.path = path
        if not create or Path(path).exists():
            _check_store(path)
        self.db = sqlite3.connect(path)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA)
        for table, column in (("runs", "test_r2"), ("epochs", "lr")):  # a store written before these were kept
            if column not in {row["name"] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                with self.db:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} REAL")

    def close(self):
        self.db.close()

    def status(self, run_id):
        row = self.db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row["status"] if row else None

    def start(self, run_id, config, folder):
        """Record a trial as running (keeping nothing of an earlier attempt but its id)."""
        with self.db:
            self.db.execute(
                "INSERT INTO runs (id, config, status, folder, driver_host, started) VALUES (?, ?, 'running', ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET status = 'running', started = excluded.started, error = NULL",
                (run_id, json.dumps(config, sort_keys=True), str(folder), socket.gethostname(), time.time()))

    def finish(self, run_id, metrics, host, artifacts):
        """Record a finished trial: its final metrics (a :class:`~fcnet.records.RunMetrics`), every epoch, and
        its files."""
        epochs = metrics.epochs
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = 'done', host = ?, finished = ?, total_seconds = ?, seconds_per_epoch = ?,"
                " test_loss = ?, test_accuracy = ?, test_r2 = ?, error = NULL WHERE id = ?",
                (host, time.time(), metrics.total_seconds, metrics.seconds_per_epoch, metrics.test["loss"],
                 metrics.test.get("accuracy"), metrics.test.get("r2"), run_id))
            self.db.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            self.db.executemany(
                "INSERT INTO epochs (run_id, epoch, seconds, loss, accuracy, val_loss, val_accuracy, lr)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, e["epoch"], e["seconds"], e["loss"], e.get("accuracy"), e.get("val_loss"),
                  e.get("val_accuracy"), e.get("lr")) for e in epochs])
            self.db.execute("DELETE FROM artifacts WHERE run_id = ?", (run_id,))
            self.db.executemany("INSERT INTO artifacts VALUES (?, ?, ?)",
                                [(run_id, name, str(path)) for name, path in artifacts.items()])

    def fail(self, run_id, error):
        with self.db:
            self.db.execute("UPDATE runs SET status = 'failed', finished = ?, error = ? WHERE id = ?",
                            (time.time(), error, run_id))

    def runs(self, status=None):
        """Every run as a dict (config decoded), optionally only those with ``status``."""
        query = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY started"
        return [self._decode(r) for r in self.db.execute(query, (status,) if status else ())]

    def get(self, run_id):
        """One run with its epochs and artifacts; ``run_id`` may be a unique prefix."""
        rows = self.db.execute("SELECT * FROM runs WHERE id LIKE ?", (run_id + "%",)).fetchall()
        if len(rows) != 1:
            return None
        run = self._decode(rows[0])
        run["epochs"] = [dict(r) for r in self.db.execute(
            "SELECT epoch, seconds, loss, accuracy, val_loss, val_accuracy, lr FROM epochs WHERE run_id = ? "
            "ORDER BY epoch", (run["id"],))]
        run["artifacts"] = {r["name"]: r["path"] for r in self.db.execute(
            "SELECT name, path FROM artifacts WHERE run_id = ?", (run["id"],))}
        return run

    def best(self, metric="test_accuracy", n=10):
        """Finished runs ranked by ``metric`` (highest first for accuracy and R², lowest first for loss and time;
        runs without the metric last)."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        order = "DESC" if metric in HIGHER_IS_BETTER else "ASC"
        return [self._decode(r) for r in self.db.execute(
            f"SELECT * FROM runs WHERE status = 'done' ORDER BY {metric} IS NULL, {metric} {order} LIMIT ?", (n,))]

    @staticmethod
    def _decode(row):
        run = dict(row)
        run["config"] = json.loads(run["config"])
        return run
