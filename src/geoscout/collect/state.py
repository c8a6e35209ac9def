"""The job state: one SQLite file (WAL) with a row per sampled point, per location and per image.

Every step commits before the next begins, so a job killed at any instant (even ``kill -9``)
resumes from the database: points already asked are not asked again, images already on disk
are not fetched again, and the daily request count survives restarts.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["StateDB", "utc_day"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    idx INTEGER PRIMARY KEY,          -- position in the sampler's stream
    lat REAL NOT NULL, lon REAL NOT NULL,
    grp TEXT,                         -- quota group (country, city) or NULL
    info TEXT,                        -- sampler metadata, JSON
    status TEXT NOT NULL,             -- pending | located | no_imagery | user_upload | duplicate | full | error
    location_id TEXT, detail TEXT, updated REAL
);
CREATE TABLE IF NOT EXISTS locations (
    location_id TEXT PRIMARY KEY, point_idx INTEGER NOT NULL, grp TEXT,
    lat REAL NOT NULL, lon REAL NOT NULL, captured_at TEXT, license TEXT, attribution TEXT, extra TEXT
);
CREATE TABLE IF NOT EXISTS images (
    location_id TEXT NOT NULL, view INTEGER NOT NULL, heading REAL, params TEXT NOT NULL,
    status TEXT NOT NULL,             -- pending | done | failed | duplicate
    path TEXT, sha256 TEXT, image_id TEXT, bytes INTEGER, detail TEXT, updated REAL,
    PRIMARY KEY (location_id, view)
);
CREATE UNIQUE INDEX IF NOT EXISTS images_image_id ON images(image_id) WHERE image_id IS NOT NULL AND status = 'done';
CREATE TABLE IF NOT EXISTS usage (day TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (day, kind));
"""


def utc_day(ts: float | None = None) -> str:
    """The UTC calendar day ``YYYY-MM-DD`` of a Unix time (now by default)."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC).strftime("%Y-%m-%d")


class StateDB:
    """A collect job's SQLite state file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------------------
    def tx(self) -> _Tx:
        """``with db.tx(): ...`` runs the statements in one IMMEDIATE transaction."""
        return _Tx(self.conn)

    # -- meta -----------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    # -- usage (daily quota) ----------------------------------------------------------------------------
    def add_usage(self, kind: str, n: int = 1, day: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO usage(day, kind, n) VALUES(?, ?, ?) ON CONFLICT(day, kind) DO UPDATE SET n = n + ?",
            (day or utc_day(), kind, n, n),
        )

    def usage(self, day: str | None = None, kinds: tuple[str, ...] | None = None) -> int:
        q = "SELECT COALESCE(SUM(n), 0) FROM usage WHERE day = ?"
        args: list[Any] = [day or utc_day()]
        if kinds is not None:
            q += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += list(kinds)
        return int(self.conn.execute(q, args).fetchone()[0])

    def total_usage(self, kinds: tuple[str, ...] | None = None) -> int:
        q, args = "SELECT COALESCE(SUM(n), 0) FROM usage", []
        if kinds is not None:
            q += f" WHERE kind IN ({','.join('?' * len(kinds))})"
            args = list(kinds)
        return int(self.conn.execute(q, args).fetchone()[0])

    # -- counts ---------------------------------------------------------------------------------------
    def point_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT status, COUNT(*) FROM points GROUP BY status")}

    def image_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT status, COUNT(*) FROM images GROUP BY status")}

    def n_locations(self, grp: str | None = None) -> int:
        if grp is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM locations").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM locations WHERE grp = ?", (grp,)).fetchone()[0])

    def group_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT grp, COUNT(*) FROM locations GROUP BY grp") if r[0]}

    def has_location(self, location_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM locations WHERE location_id = ?", (location_id,)).fetchone() is not None

    def next_point_index(self) -> int:
        return int(self.get_meta("points_drawn", 0))


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
