"""The results store: one SQLite file, one row per job, each row written in its own transaction.

SQLite's write-ahead log makes every :meth:`Store.put` atomic: a campaign killed mid-write leaves either
the whole row or none, never half of one. Rows are keyed by :func:`nnmend.campaign.grid.job_key`, so a
rerun of the same grid finds its finished jobs and skips them. Only the process driving the campaign
writes; workers return records to it.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Iterable

from ..errors import NnmendError

COLUMNS = (("key", "TEXT PRIMARY KEY"), ("campaign", "TEXT"), ("network", "TEXT"), ("defect", "TEXT"),
           ("method", "TEXT"), ("seed", "INTEGER"), ("status", "TEXT"), ("error", "TEXT"), ("success", "INTEGER"),
           ("certificate", "TEXT"), ("drawdown", "REAL"), ("seconds", "REAL"), ("parameters", "INTEGER"),
           ("parameters_added", "INTEGER"), ("wall_seconds", "REAL"), ("record", "TEXT"),
           ("finished", "TEXT DEFAULT CURRENT_TIMESTAMP"))
_NAMES = tuple(c for c, _ in COLUMNS if c != "finished")


class Store:
    """``Store(path)`` opens (or creates) the store; ``put(campaign, record)``, ``done()``, ``records()``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0)
            # write-ahead log: each row is still one atomic transaction (a killed campaign loses no finished
            # row), without an fsync per row; only a power cut can lose the last rows, which the resume reruns
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(f'{c} {t}' for c, t in COLUMNS)})")
            cols = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        except sqlite3.DatabaseError as exc:
            raise NnmendError(f"{self.path}: not a campaign store ({exc})") from None
        missing = [c for c, _ in COLUMNS if c not in cols]
        if missing:
            raise NnmendError(f"{self.path}: not a campaign store (table jobs lacks {', '.join(missing)})")

    def put(self, campaign: str, record: dict) -> None:
        """Insert or replace one job's row, atomically."""
        row = {**{c: record.get(c) for c in _NAMES}, "campaign": campaign, "record": json.dumps(record, default=str)}
        row["defect"] = (record.get("defect") or {}).get("name")
        if row["success"] is not None:
            row["success"] = int(bool(row["success"]))
        with self.db:                                  # one transaction: the whole row or nothing
            self.db.execute(f"INSERT OR REPLACE INTO jobs ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})",
                            [row[c] for c in _NAMES])

    def done(self, keys: Iterable[str] | None = None, *, include_failed: bool = True) -> set[str]:
        """Keys of the finished jobs (``include_failed=False``: only those that ran through)."""
        q = "SELECT key FROM jobs" + ("" if include_failed else " WHERE status = 'ok'")
        found = {k for (k,) in self.db.execute(q)}
        return found if keys is None else found & set(keys)

    def records(self, keys: Iterable[str] | None = None) -> list[dict]:
        """Every stored record (or those of ``keys``), in the order they finished."""
        rows = [(k, json.loads(r)) for k, r in self.db.execute("SELECT key, record FROM jobs ORDER BY rowid")]
        wanted = None if keys is None else set(keys)
        return [r for k, r in rows if wanted is None or k in wanted]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
