"""The one exception of the sandbox layer (the operations layer turns it into an API error)."""

from __future__ import annotations

from typing import Any

__all__ = ["SandboxError"]


class SandboxError(Exception):
    """A sandbox operation failed. ``kind`` is one of not_found, conflict, validation, start,
    compile, syntax, compatibility, policy, limit, node_down, timeout (or the stage of a code
    load that failed); ``details`` carries data (``raw``: the agent's map, errors with lines)."""

    def __init__(self, kind: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details or {}
