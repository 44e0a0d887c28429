"""Typed failures of the distribution client.

Every failure a caller can meet is one of these, each with a message that says
what happened and what to do. They all derive from :class:`DistError`.
"""

from __future__ import annotations

from typing import Any

from ._format import brief

__all__ = [
    "CookieRejected",
    "DistError",
    "DistTimeout",
    "EpmdUnreachable",
    "HandshakeError",
    "NodeDown",
    "NodeNotFound",
    "NotAllowed",
    "ConnectFailed",
    "ProtocolError",
    "RpcError",
]


class DistError(Exception):
    """Base of every error raised by :mod:`arsenal.dist`."""


class EpmdUnreachable(DistError):
    """EPMD (the port mapper, port 4369) does not answer on the node's host."""


class NodeNotFound(DistError):
    """EPMD answered, but no node of that name is registered with it."""


class ConnectFailed(DistError):
    """The node's distribution port refused or dropped the TCP/TLS connection."""


class HandshakeError(DistError):
    """The distribution handshake failed for a reason other than the cookie."""


class CookieRejected(HandshakeError):
    """The node refused our cookie, or answered with a digest of a different cookie."""


class NotAllowed(HandshakeError):
    """The node refused the connection (``not_allowed``: allowed-nodes list or missing flags)."""


class DistTimeout(DistError, TimeoutError):
    """A connect, handshake or call did not finish within its timeout."""


class NodeDown(DistError):
    """The connection to the node is gone (or was never made); pending calls fail with this."""


class ProtocolError(DistError):
    """The peer sent something that is not valid distribution protocol; the connection is closed."""


class RpcError(DistError):
    """A remote call raised. ``kind`` is ``error``, ``throw``, ``exit`` or ``badrpc``.

    ``reason`` and ``stacktrace`` are the Erlang terms as the node reported them.
    """

    def __init__(self, kind: str, reason: Any, stacktrace: Any = None, *, mfa: str = "") -> None:
        self.kind = kind
        self.reason = reason
        self.stacktrace = stacktrace
        self.mfa = mfa
        shown = brief(reason, 300)
        where = f" in {mfa}" if mfa else ""
        super().__init__(f"remote {kind}{where}: {shown}")
