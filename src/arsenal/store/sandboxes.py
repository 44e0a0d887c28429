"""Sandboxes and their module versions in the store.

A sandbox's row is the truth about it for every Arsenal sharing ``ARSENAL_HOME``: the
CLI creates one and exits, ``arsenal serve`` lists it, destroys it, or (when it is
persistent) starts it again. The cookie stays in this file (mode 0600 directory) and
never leaves through the API.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .db import Store

__all__ = ["ModuleVersion", "SandboxRecord", "SandboxStore"]


@dataclass(frozen=True)
class SandboxRecord:
    id: str
    spec: dict[str, Any]
    persistent: bool
    status: str
    node: str | None
    cookie: str | None
    os_pid: int | None
    dir: str
    created_at: float
    started_at: float | None
    stopped_at: float | None
    stop_reason: str | None


@dataclass(frozen=True)
class ModuleVersion:
    module: str
    version: int
    language: str
    source: str | None
    file: str | None
    beam: bytes
    md5: str
    note: str
    created_at: float


class SandboxStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, id: str, spec: dict[str, Any], persistent: bool, dir: str) -> None:
        self.store.write(
            "INSERT INTO sandboxes (id, spec, persistent, status, dir, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (id, json.dumps(spec), int(persistent), "starting", dir, time.time()),
        )

    def started(self, id: str, node: str, cookie: str, os_pid: int) -> None:
        self.store.write(
            "UPDATE sandboxes SET status = 'starting', node = ?, cookie = ?, os_pid = ?, started_at = ?, "
            "stopped_at = NULL, stop_reason = NULL WHERE id = ?",
            (node, cookie, os_pid, time.time(), id),
        )

    def set_status(self, id: str, status: str, reason: str | None = None) -> None:
        if status in ("stopped", "failed"):
            self.store.write(
                "UPDATE sandboxes SET status = ?, stop_reason = ?, stopped_at = ? WHERE id = ?",
                (status, reason, time.time(), id),
            )
        else:
            self.store.write("UPDATE sandboxes SET status = ? WHERE id = ?", (status, id))

    def set_spec(self, id: str, spec: dict[str, Any]) -> None:
        self.store.write("UPDATE sandboxes SET spec = ? WHERE id = ?", (json.dumps(spec), id))

    def get(self, id: str) -> SandboxRecord | None:
        rows = self.store.execute("SELECT * FROM sandboxes WHERE id = ?", (id,))
        return _record(rows[0]) if rows else None

    def list(self) -> list[SandboxRecord]:
        return [_record(row) for row in self.store.execute("SELECT * FROM sandboxes ORDER BY created_at")]

    def delete(self, id: str) -> bool:
        return self.store.write("DELETE FROM sandboxes WHERE id = ?", (id,)) > 0

    def add_version(
        self,
        id: str,
        module: str,
        language: str,
        source: str | None,
        file: str | None,
        beam: bytes,
        md5: str,
        note: str,
    ) -> int:
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT max(version) FROM sandbox_module_versions WHERE sandbox_id = ? AND module = ?",
                (id, module),
            ).fetchone()
            version = (row[0] or 0) + 1
            db.execute(
                "INSERT INTO sandbox_module_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (id, module, version, language, source, file, beam, md5, note, time.time()),
            )
        return version

    def versions(self, id: str, module: str) -> list[ModuleVersion]:
        rows = self.store.execute(
            "SELECT * FROM sandbox_module_versions WHERE sandbox_id = ? AND module = ? ORDER BY version",
            (id, module),
        )
        return [_version(row) for row in rows]

    def latest_versions(self, id: str) -> list[ModuleVersion]:
        rows = self.store.execute(
            "SELECT v.* FROM sandbox_module_versions v WHERE sandbox_id = ? AND version = "
            "(SELECT max(version) FROM sandbox_module_versions w WHERE w.sandbox_id = v.sandbox_id "
            "AND w.module = v.module) ORDER BY module",
            (id,),
        )
        return [_version(row) for row in rows]

    def version_counts(self, id: str) -> dict[str, int]:
        rows = self.store.execute(
            "SELECT module, max(version) FROM sandbox_module_versions WHERE sandbox_id = ? GROUP BY module",
            (id,),
        )
        return {row[0]: row[1] for row in rows}


def _record(row: Any) -> SandboxRecord:
    return SandboxRecord(
        id=row["id"],
        spec=json.loads(row["spec"]),
        persistent=bool(row["persistent"]),
        status=row["status"],
        node=row["node"],
        cookie=row["cookie"],
        os_pid=row["os_pid"],
        dir=row["dir"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
        stop_reason=row["stop_reason"],
    )


def _version(row: Any) -> ModuleVersion:
    return ModuleVersion(
        module=row["module"],
        version=row["version"],
        language=row["language"],
        source=row["source"],
        file=row["file"],
        beam=bytes(row["beam"]),
        md5=row["md5"],
        note=row["note"],
        created_at=row["created_at"],
    )
