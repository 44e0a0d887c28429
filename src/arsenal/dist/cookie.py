"""Where the cookie comes from: an argument, ``ARSENAL_COOKIE``, or ``~/.erlang.cookie`` (as ``erl`` does)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import HandshakeError

__all__ = ["resolve_cookie"]


def resolve_cookie(cookie: str | None = None) -> str:
    """Return the cookie to use; never log or show it."""
    if cookie:
        return cookie
    env = os.environ.get("ARSENAL_COOKIE")
    if env:
        return env
    path = Path.home() / ".erlang.cookie"
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    if not text:
        raise HandshakeError(
            "no cookie: pass one (--cookie), set ARSENAL_COOKIE, or create ~/.erlang.cookie "
            "with the same cookie as the node"
        )
    return text
