"""EPMD look-up (``PORT_PLEASE2``): find the distribution port of a node by name."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from dataclasses import dataclass

from .errors import DistTimeout, EpmdUnreachable, NodeNotFound

__all__ = ["NodeAddress", "DEFAULT_EPMD_PORT", "port_please", "epmd_port"]

DEFAULT_EPMD_PORT = 4369
PORT_PLEASE2_REQ = 122
PORT2_RESP = 119


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """What EPMD knows of a registered node."""

    port: int
    hidden: bool
    protocol: int
    highest_version: int
    lowest_version: int


def epmd_port() -> int:
    """The EPMD port, honouring ``ERL_EPMD_PORT`` as ``erl`` does."""
    return int(os.environ.get("ERL_EPMD_PORT", DEFAULT_EPMD_PORT))


async def port_please(host: str, alive: str, *, port: int | None = None, timeout: float = 5.0) -> NodeAddress:
    """Ask EPMD on ``host`` for the node ``alive`` (the part of the name before ``@``)."""
    port = port or epmd_port()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _open(host, port)
            try:
                name = alive.encode()
                writer.write(struct.pack(">HB", len(name) + 1, PORT_PLEASE2_REQ) + name)
                await writer.drain()
                # EPMD closes the socket after its answer, so read to EOF.
                reply = await reader.read(-1)
            finally:
                writer.close()
                await _quiet_wait_closed(writer)
    except TimeoutError:
        raise DistTimeout(f"EPMD on {host}:{port} did not answer within {timeout:g}s") from None
    return _parse(reply, host, alive)


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection(host, port)
    except OSError as exc:
        raise EpmdUnreachable(
            f"EPMD is not reachable on {host}:{port} ({exc.strerror or exc}); is the node running on that "
            "host, and is ERL_EPMD_PORT the same for both?"
        ) from None


async def _quiet_wait_closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _parse(reply: bytes, host: str, alive: str) -> NodeAddress:
    if len(reply) < 2 or reply[0] != PORT2_RESP:
        raise EpmdUnreachable(f"EPMD on {host} gave an unexpected answer ({reply[:8]!r})")
    if reply[1] != 0:
        raise NodeNotFound(
            f"no node named {alive!r} is registered with EPMD on {host}; check the name "
            "(`epmd -names` on that host lists them)"
        )
    if len(reply) < 12:
        raise EpmdUnreachable(f"EPMD on {host} sent a truncated answer")
    port, node_type, protocol, high, low = struct.unpack_from(">HBBHH", reply, 2)
    return NodeAddress(port, node_type == 72, protocol, high, low)
