"""The database file, its connection and its schema migrations.

SQLite in WAL mode with ``synchronous=NORMAL``: a write that returned survives a crash of
Arsenal (not necessarily of the machine's power), and readers never block the writer.
Arsenal's writes are small (a batch of trace events, one audit row), so they run on the
caller's thread; one connection is shared under a lock, which is simpler and, for this
load, as fast as a pool.

Migrations are numbered SQL scripts applied in order inside a transaction; the number of
the last one applied is ``PRAGMA user_version``. A database written by a newer Arsenal
(a higher version than this one knows) is refused rather than misread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["MIGRATIONS", "Store", "StoreError", "default_home"]

MIGRATIONS: list[str] = [
    # 1: trace sessions and their events.
    """
    CREATE TABLE trace_sessions (
        id TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        kind TEXT NOT NULL,
        spec TEXT NOT NULL,
        principal TEXT,
        started_at REAL NOT NULL,
        ended_at REAL,
        end_reason TEXT,
        events INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0,
        truncated INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX trace_sessions_started ON trace_sessions (started_at);
    CREATE TABLE trace_events (
        session_id TEXT NOT NULL REFERENCES trace_sessions (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        time_us INTEGER NOT NULL,
        kind TEXT NOT NULL,
        pid TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX trace_events_pid ON trace_events (pid, time_us);
    """,
    # 2: sandboxes and the versions of the modules loaded into them.
    """
    CREATE TABLE sandboxes (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        persistent INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        node TEXT,
        cookie TEXT,
        os_pid INTEGER,
        dir TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        stopped_at REAL,
        stop_reason TEXT
    );
    CREATE TABLE sandbox_module_versions (
        sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
        module TEXT NOT NULL,
        version INTEGER NOT NULL,
        language TEXT NOT NULL,
        source TEXT,
        file TEXT,
        beam BLOB NOT NULL,
        md5 TEXT NOT NULL,
        note TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (sandbox_id, module, version)
    ) WITHOUT ROWID;
    """,
    # 3: checkpoints of process states and ETS tables; recordings of processes' messages and states.
    """
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        node TEXT NOT NULL,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        module TEXT,
        created_at REAL NOT NULL,
        principal TEXT,
        info TEXT NOT NULL,
        term BLOB NOT NULL,
        size INTEGER NOT NULL,
        UNIQUE (node, target, name)
    );
    CREATE INDEX checkpoints_target ON checkpoints (node, target, created_at);
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        targets TEXT NOT NULL,
        spec TEXT NOT NULL,
        principal TEXT,
        started_at REAL NOT NULL,
        ended_at REAL,
        end_reason TEXT,
        steps INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        data BLOB
    );
    CREATE INDEX recordings_started ON recordings (started_at);
    """,
    # 4: API keys, the audit trail, supervisors' restart history, alerts.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        grants TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        correlation_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        time REAL NOT NULL,
        principal TEXT,
        key_id TEXT,
        role TEXT,
        operation TEXT NOT NULL,
        severity TEXT NOT NULL,
        node TEXT,
        params TEXT NOT NULL,
        outcome TEXT,
        error_code TEXT,
        duration_ms REAL
    );
    CREATE INDEX audit_time ON audit (time);
    CREATE INDEX audit_correlation ON audit (correlation_id);
    CREATE TABLE supervisor_restarts (
        id INTEGER PRIMARY KEY,
        node TEXT NOT NULL,
        supervisor TEXT NOT NULL,
        child_id TEXT NOT NULL,
        event TEXT NOT NULL,
        reason TEXT,
        pid TEXT,
        time REAL NOT NULL
    );
    CREATE INDEX supervisor_restarts_sup ON supervisor_restarts (node, supervisor, time);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        node TEXT,
        metric TEXT NOT NULL,
        value REAL,
        threshold REAL,
        message TEXT NOT NULL,
        fired_at REAL NOT NULL,
        acknowledged_at REAL,
        acknowledged_by TEXT
    );
    CREATE INDEX alerts_fired ON alerts (fired_at);
    CREATE TABLE alert_rules (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 5: nodes held read-only, by name, until an admin lifts it (detaching does not).
    """
    CREATE TABLE read_only_nodes (
        node TEXT PRIMARY KEY,
        since REAL NOT NULL
    ) WITHOUT ROWID;
    """,
]


class StoreError(RuntimeError):
    """The database cannot be opened or is from a newer Arsenal."""


def default_home() -> Path:
    """Arsenal's data directory: ``$ARSENAL_HOME``, or ``~/.arsenal``."""
    return Path(os.environ.get("ARSENAL_HOME") or Path.home() / ".arsenal")


class Store:
    """One SQLite database. ``path=None`` means ``default_home() / "arsenal.db"``; ``":memory:"``
    keeps everything in memory (for tests and throwaway scripts)."""

    def __init__(self, path: Path | str | None = None) -> None:
        if path is None:
            path = default_home() / "arsenal.db"
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}; check ARSENAL_HOME") from None
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} was written by a newer Arsenal (schema {version}, this one knows "
                f"{len(MIGRATIONS)}); upgrade Arsenal or point ARSENAL_HOME elsewhere"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction() as db:
                db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def write(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the rows changed."""
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Many rows in one transaction (a batch of events is one commit, not one per event)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self.execute("PRAGMA user_version")[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
