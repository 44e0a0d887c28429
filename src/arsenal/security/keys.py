"""API keys: created and revoked by ``arsenal keys``, checked on every request.

A key is ``ars_<id>_<secret>``: the id finds the row, and only the SHA-256 of the secret is
stored (secrets are 32 random bytes, so a plain hash is enough: there is nothing to guess).
The comparison is constant-time. Keys are read from the database on every check, so a key
created or revoked by the CLI takes effect at once in a running ``arsenal serve`` sharing the
same ``ARSENAL_HOME``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..store import Store

__all__ = ["ApiKey", "KeyStore"]

_KEY = re.compile(r"^ars_([a-f0-9]{12})_([A-Za-z0-9_-]{43})$")
ROLE_NAMES = ("viewer", "operator", "admin")
_TOUCH_EVERY = 60.0


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    grants: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def nodes(self) -> list[str] | None:
        """The nodes this key may act on (None: every node)."""
        return self.grants.get("nodes")

    @property
    def operations(self) -> list[str] | None:
        """The operations this key may run (None: all its role allows)."""
        return self.grants.get("operations")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._touched: dict[str, float] = {}

    def create(
        self,
        role: str,
        *,
        name: str = "",
        nodes: list[str] | None = None,
        operations: list[str] | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; returns it and its text, which is shown once and never stored."""
        if role not in ROLE_NAMES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLE_NAMES)}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        grants: dict[str, Any] = {}
        if nodes:
            grants["nodes"] = sorted(set(nodes))
        if operations:
            grants["operations"] = sorted(set(operations))
        self.store.write(
            "INSERT INTO api_keys (id, name, role, secret_hash, grants, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, name or f"{role}-{key_id}", role, _hash(secret), json.dumps(grants), time.time()),
        )
        return self.get(key_id), f"ars_{key_id}_{secret}"  # type: ignore[return-value]

    def get(self, key_id: str) -> ApiKey | None:
        rows = self.store.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None

    def list(self) -> list[ApiKey]:
        return [_key(row) for row in self.store.execute("SELECT * FROM api_keys ORDER BY created_at")]

    def revoke(self, key_id: str) -> bool:
        return (
            self.store.write(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            > 0
        )

    def verify(self, text: str) -> tuple[ApiKey | None, str]:
        """The key ``text`` names, or None with why (malformed, unknown, wrong, revoked)."""
        match = _KEY.match(text.strip())
        if match is None:
            return None, "malformed"
        key_id, secret = match.groups()
        rows = self.store.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if not rows:
            return None, "unknown"
        if not hmac.compare_digest(rows[0]["secret_hash"], _hash(secret)):
            return None, "wrong"
        key = _key(rows[0])
        if key.revoked_at is not None:
            return None, "revoked"
        self._touch(key_id)
        return key, "ok"

    def _touch(self, key_id: str) -> None:
        now = time.time()
        if now - self._touched.get(key_id, 0.0) >= _TOUCH_EVERY:  # one write a minute, not one a request
            self._touched[key_id] = now
            self.store.write("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))

    def count_active(self) -> int:
        return int(self.store.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")[0][0])


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        grants=json.loads(row["grants"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
