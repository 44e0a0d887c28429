"""The version-6 distribution handshake, initiator side (``dist_util`` with HANDSHAKE_23).

Plain TCP frames handshake messages with a 2-byte length; ``inet_tls_dist`` uses a
4-byte length from the first message, so the prefix size is a parameter.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import ssl
import struct
from dataclasses import dataclass
from typing import Protocol

from .errors import ConnectFailed, CookieRejected, HandshakeError, NotAllowed
from .flags import REQUIRED_PEER_FLAGS, DFlag

__all__ = ["PeerInfo", "handshake", "digest"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the peer told us about itself during the handshake."""

    name: str
    flags: DFlag
    creation: int


def digest(challenge: int, cookie: str) -> bytes:
    """MD5 of the cookie followed by the challenge written in decimal (``dist_util:gen_digest``)."""
    return hashlib.md5(cookie.encode() + str(challenge).encode()).digest()


class Stream(Protocol):
    """What the handshake needs of the byte stream."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def readexactly(self, count: int) -> bytes: ...


async def handshake(
    stream: Stream,
    *,
    our_name: str,
    our_flags: int,
    our_creation: int,
    cookie: str,
    peer_name: str,
    length_bytes: int = 2,
) -> PeerInfo:
    """Run the handshake on an open stream; return the peer's flags and creation."""
    framer = _Framer(stream, length_bytes, peer_name)
    name = our_name.encode()
    await framer.send(b"N" + struct.pack(">QIH", our_flags, our_creation, len(name)) + name)
    await _receive_status(framer, peer_name)
    peer = await _receive_challenge(framer, peer_name)
    our_challenge = secrets.randbits(32)
    await framer.send(b"r" + struct.pack(">I", our_challenge) + digest(peer.challenge, cookie))
    ack = await framer.receive(
        on_eof=CookieRejected(
            f"{peer_name} refused our cookie (it closed the connection after our challenge reply); "
            "use the node's cookie: --cookie, ARSENAL_COOKIE or ~/.erlang.cookie"
        )
    )
    if len(ack) != 17 or ack[:1] != b"a":
        raise HandshakeError(f"{peer_name} sent an unexpected handshake message {ack[:1]!r}")
    if not secrets.compare_digest(ack[1:], digest(our_challenge, cookie)):
        raise CookieRejected(f"{peer_name} answered with a digest of a different cookie")
    return PeerInfo(peer.name, DFlag(peer.flags), peer.creation)


@dataclass(frozen=True, slots=True)
class _Challenge:
    name: str
    flags: int
    challenge: int
    creation: int


async def _receive_status(framer: _Framer, peer_name: str) -> None:
    message = await framer.receive()
    if message[:1] != b"s":
        raise HandshakeError(f"{peer_name} sent {message[:1]!r} where the handshake status belongs")
    status = message[1:].decode(errors="replace")
    if status in ("ok", "ok_simultaneous"):
        return
    if status == "alive":
        # The peer believes a connection from our name is already up: take it over.
        await framer.send(b"strue")
        return
    if status == "not_allowed":
        raise NotAllowed(
            f"{peer_name} does not allow connections from this node (net_kernel:allow/1, or it needs "
            "distribution features this client lacks)"
        )
    if status == "nok":
        raise HandshakeError(f"{peer_name} is already connecting to us (nok); try again")
    raise HandshakeError(f"{peer_name} answered the handshake with status {status!r}")


async def _receive_challenge(framer: _Framer, peer_name: str) -> _Challenge:
    message = await framer.receive()
    if message[:1] != b"N" or len(message) < 19:
        raise HandshakeError(
            f"{peer_name} sent a challenge Arsenal cannot read ({message[:1]!r}); it needs OTP 23 or later"
        )
    flags, challenge, creation, name_len = struct.unpack_from(">QIIH", message, 1)
    name = message[19 : 19 + name_len].decode(errors="replace")
    if name != peer_name:
        # As dist_util does: a peer may not pose as another node (it would break that node's monitors).
        raise HandshakeError(f"the node at {peer_name}'s address calls itself {name!r}; refusing it")
    missing = DFlag(REQUIRED_PEER_FLAGS & ~flags)
    if missing:
        raise NotAllowed(f"{peer_name} lacks distribution features Arsenal needs: {missing!r}")
    return _Challenge(name, flags, challenge, creation)


class _Framer:
    """Length-prefixed handshake messages over the stream."""

    def __init__(self, stream: Stream, length_bytes: int, peer: str) -> None:
        self._stream = stream
        self._fmt = ">H" if length_bytes == 2 else ">I"
        self._size = length_bytes
        self._peer = peer

    async def send(self, payload: bytes) -> None:
        try:
            self._stream.write(struct.pack(self._fmt, len(payload)) + payload)
            await self._stream.drain()
        except ssl.SSLError as exc:
            raise _tls_failed(self._peer, exc) from None
        except ConnectionError as exc:
            raise ConnectFailed(f"{self._peer} closed the connection during the handshake ({exc})") from None

    async def receive(self, on_eof: Exception | None = None) -> bytes:
        try:
            header = await self._stream.readexactly(self._size)
            (length,) = struct.unpack(self._fmt, header)
            if length > 65535:
                raise HandshakeError(f"{self._peer} sent a {length}-byte handshake message")
            return await self._stream.readexactly(length)
        except ssl.SSLError as exc:
            raise _tls_failed(self._peer, exc) from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial[:2] == b"\x15\x03" and self._size == 2:  # a TLS alert record
                raise ConnectFailed(
                    f"{self._peer} answered with TLS: it uses TLS distribution (inet_tls); connect with ssl="
                ) from None
            if on_eof is not None:
                raise on_eof from None
            raise ConnectFailed(f"{self._peer} closed the connection during the handshake") from None
        except ConnectionError as exc:
            if on_eof is not None:
                raise on_eof from None
            raise ConnectFailed(f"{self._peer} closed the connection during the handshake ({exc})") from None


def _tls_failed(peer: str, exc: ssl.SSLError) -> ConnectFailed:
    reason = exc.reason or exc.strerror or str(exc) or type(exc).__name__
    return ConnectFailed(f"TLS with {peer} failed: {reason}; check certificates")
