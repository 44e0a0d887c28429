"""How Arsenal reacts to bad input from the wire.

The peer here is a small asyncio server that really speaks the accepting side of
the version-6 handshake (``dist_util``: send_name, status, challenge,
challenge_reply, challenge_ack) and then 4-byte framed messages, and then sends
what a broken or hostile node could send. It is not a mock of a node: nothing of
Arsenal is replaced, and everything goes through a real socket. Where a real node
is needed (isolation, EPMD), it is a real ``erl`` node.

Every test ends by closing the LocalNode and the fake peer and checking that no
``dist-`` task and no file descriptor is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from arsenal.dist import (
    ARSENAL_FLAGS,
    Atom,
    ConnectFailed,
    Connection,
    CookieRejected,
    DFlag,
    DistTimeout,
    EpmdUnreachable,
    HandshakeError,
    LocalNode,
    NodeDown,
    NodeNotFound,
    NotAllowed,
    Pid,
    Process,
    port_please,
    term_to_binary,
)
from arsenal.dist.handshake import digest

from .nodes import HOST, TlsFiles, make_tls_files, open_fd_count, settle_resources

pytestmark = pytest.mark.timeout(60)

A = Atom
# A short name on this host, like every test node: a local node has one naming (short
# or long) and the real nodes it also talks to in these tests use short names.
FAKE = f"fake@{HOST}"
FAKE_ADDRESS = socket.gethostbyname(HOST)
PEER_FLAGS = int(ARSENAL_FLAGS | DFlag.PUBLISHED)
SEND, REG_SEND, MONITOR_P = 2, 6, 19


# --------------------------------------------------------------------------- the fake peer


class PeerSide:
    """One accepted connection, as the scripted peer sees it."""

    def __init__(self, peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.their_name = ""
        self.their_flags = 0
        self.done = False  # the script closed the socket itself
        self.eof = asyncio.Event()  # the client closed its side

    # handshake messages: a 2-byte length (4 bytes over TLS)
    async def read_message(self) -> bytes:
        size = self.peer.length_bytes
        length = int.from_bytes(await self.reader.readexactly(size), "big")
        return await self.reader.readexactly(length)

    def send_message(self, payload: bytes) -> None:
        self.writer.write(len(payload).to_bytes(self.peer.length_bytes, "big") + payload)

    async def receive_name(self) -> None:
        message = await self.read_message()
        assert message[:1] == b"N", f"expected send_name, got {message[:1]!r}"
        flags, _creation, name_len = struct.unpack_from(">QIH", message, 1)
        self.their_flags = flags
        self.their_name = message[15 : 15 + name_len].decode()

    def send_status(self, status: str) -> None:
        self.send_message(b"s" + status.encode())

    def send_challenge(self, flags: int = PEER_FLAGS) -> int:
        challenge = secrets.randbits(32)
        name = self.peer.name.encode()
        self.send_message(b"N" + struct.pack(">QIIH", flags, challenge, 1234, len(name)) + name)
        return challenge

    async def receive_challenge_reply(self, challenge: int) -> int:
        message = await self.read_message()
        assert message[:1] == b"r" and len(message) == 21, f"bad challenge_reply {message!r}"
        assert message[5:] == digest(challenge, self.peer.cookie), "Arsenal sent a wrong digest"
        return struct.unpack_from(">I", message, 1)[0]

    async def accept(self, *, ack_cookie: str | None = None) -> None:
        """The whole accepting handshake; ``ack_cookie`` forges the ack with another cookie."""
        await self.receive_name()
        self.send_status("ok")
        theirs = await self.receive_challenge_reply(self.send_challenge())
        self.send_message(b"a" + digest(theirs, ack_cookie or self.peer.cookie))
        await self.writer.drain()

    # after the handshake: 4-byte frames
    async def send_frame(self, body: bytes) -> None:
        self.writer.write(len(body).to_bytes(4, "big") + body)
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self) -> bytes:
        """The next frame from Arsenal that is not a tick."""
        while True:
            length = int.from_bytes(await self.reader.readexactly(4), "big")
            if length:
                return await self.reader.readexactly(length)

    def close(self, *, reset: bool = False) -> None:
        if reset:  # RST instead of FIN
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.done = True
        self.writer.close()


Script = Callable[[PeerSide], Awaitable[None]]


@dataclass
class FakePeer:
    """An asyncio server on this host that runs ``script`` on each accepted connection.

    When the script returns, the connection stays open (reading and discarding) until
    the client closes it, so what is observed is how Arsenal closes, not the peer.
    """

    script: Script
    cookie: str
    name: str = FAKE
    ssl: ssl.SSLContext | None = None
    port: int = 0
    sides: list[PeerSide] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def length_bytes(self) -> int:
        return 4 if self.ssl is not None else 2  # inet_tls_dist frames the handshake with 4 bytes

    async def start(self) -> FakePeer:
        self._server = await asyncio.start_server(self._serve, FAKE_ADDRESS, 0, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        side = PeerSide(self, reader, writer)
        self.sides.append(side)
        try:
            await self.script(side)
            if not side.done:
                while await reader.read(65536):
                    pass
                side.eof.set()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            side.eof.set()  # the client went away: that is what the tests provoke
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # an assertion of the script: reported by stop()
            self.errors.append(exc)
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for side in self.sides:
            side.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None


def framed(frame_body: bytes) -> bytes:
    return len(frame_body).to_bytes(4, "big") + frame_body


def body(control: Any, payload: Any = ...) -> bytes:
    """A pass-through frame body: ``p``, the control term, then the payload if given."""
    out = b"p" + term_to_binary(control)
    return out if payload is ... else out + term_to_binary(payload)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Baseline:
    fds: int
    tasks: set[Any]


@pytest.fixture
async def baseline() -> Baseline:
    """What was open before the test (taken before any connection is made)."""
    return Baseline(open_fd_count(), set(asyncio.all_tasks()))


@pytest.fixture
async def node(cookie: str) -> AsyncIterator[LocalNode]:
    local = LocalNode(cookie=cookie)
    yield local
    await local.close()


class Peers:
    """Starts fake peers (``await peers(script, name=..., ssl=...)``) and remembers them."""

    def __init__(self, cookie: str) -> None:
        self.cookie = cookie
        self.started: list[FakePeer] = []

    async def __call__(self, script: Script, **options: Any) -> FakePeer:
        options.setdefault("cookie", self.cookie)
        peer = await FakePeer(script, **options).start()
        self.started.append(peer)
        return peer

    async def stop(self) -> None:
        for peer in self.started:
            await peer.stop()


@pytest.fixture
async def peers(cookie: str) -> AsyncIterator[Peers]:
    """The fake peers of a test, all stopped at teardown (even when the test fails)."""
    started = Peers(cookie)
    yield started
    await started.stop()


async def assert_no_leaks(local: LocalNode, base: Baseline, peers: Peers | None = None) -> None:
    """Close everything the test opened, then: no ``dist-`` task, no extra fd, no peer-side surprise."""
    await local.close()
    if peers is not None:
        await peers.stop()
    fds, tasks = await settle_resources(base.fds, base.tasks)
    assert not tasks, f"tasks left behind by the connection: {tasks}"
    assert fds <= base.fds, f"{fds - base.fds} file descriptor(s) left open"
    for fake in peers.started if peers is not None else ():
        assert not fake.errors, f"the fake peer saw something wrong: {fake.errors!r}"


async def connect_fake(local: LocalNode, fake: FakePeer, **options: Any) -> Connection:
    return await local.connect(fake.name if "@" in fake.name else FAKE, port=fake.port, **options)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- frames after the handshake


async def _bad_frame_fails_pending_call(
    node: LocalNode, peers: Peers, bad: bytes, *, rpc_timeout: float = 30
) -> tuple[NodeDown, Connection]:
    """Handshake, start an rpc, and once the peer has read the request, send ``bad`` raw bytes."""

    async def script(side: PeerSide) -> None:
        await side.accept()
        await side.read_frame()  # the SPAWN_REQUEST of the rpc: the call is now pending
        await side.send_raw(bad)

    fake = await peers(script)
    conn = await connect_fake(node, fake)
    call = asyncio.create_task(conn.rpc("erlang", "node", [], timeout=rpc_timeout))
    # NodeDown, not DistTimeout: the call fails as soon as the connection is dropped.
    with pytest.raises(NodeDown) as err:
        await call
    assert conn.closed
    assert isinstance(conn.close_reason, NodeDown)
    await asyncio.wait_for(fake.sides[0].eof.wait(), 10)  # Arsenal really closed the socket
    assert node.connection_or_none(FAKE) is None
    return err.value, conn


def _no_error_logs(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, f"logged at ERROR or with a traceback: {[r.getMessage() for r in bad]}"


async def test_truncated_term_closes_the_connection_and_fails_the_pending_call(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    truncated = body((REG_SEND, A("x"), A(""), A("some_name")), (A("hello"), list(range(50))))[:-7]
    err, _conn = await _bad_frame_fails_pending_call(node, peers, framed(truncated))
    assert "malformed message" in str(err)
    assert FAKE in str(err)
    _no_error_logs(caplog)
    assert any("malformed" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    await assert_no_leaks(node, baseline, peers)


async def test_frame_over_the_size_limit_is_refused_without_allocating_it(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        err, _conn = await _bad_frame_fails_pending_call(
            node, peers, struct.pack(">I", 0xFFFFFFF0) + b"p\x83" + b"\x00" * 1000
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(0xFFFFFFF0) in str(err) and "frame" in str(err)
    assert peak < 16 * 1024 * 1024, f"{peak} bytes allocated for a frame that was refused"
    _no_error_logs(caplog)
    await assert_no_leaks(node, baseline, peers)


@pytest.mark.parametrize("first_byte", [131, ord("D"), 0], ids=["version-byte", "dist-header", "zero"])
async def test_frame_that_is_not_pass_through_is_refused(
    baseline: Baseline, node: LocalNode, peers: Peers, first_byte: int
) -> None:
    frame = bytes([first_byte]) + term_to_binary((SEND, A(""), A("x")))[1:]
    err, _conn = await _bad_frame_fails_pending_call(node, peers, framed(frame))
    assert f"frame of type {first_byte}" in str(err)
    await assert_no_leaks(node, baseline, peers)


async def test_unknown_control_message_is_skipped_and_the_connection_goes_on(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    proc = node.spawn()
    message = (A("after_unknown"), b"payload", [1, 2, 3])

    async def script(side: PeerSide) -> None:
        await side.accept()
        await side.send_frame(body((99, A("x"))))
        await side.send_frame(body((SEND, A(""), proc.pid), message))

    fake = await peers(script)
    conn = await connect_fake(node, fake)
    assert await proc.receive(timeout=20) == message
    assert not conn.closed
    assert conn.stats.unknown_control == 1
    assert node.connection_or_none(FAKE) is conn
    assert any("unknown control message 99" in r.getMessage() for r in caplog.records)
    _no_error_logs(caplog)
    await assert_no_leaks(node, baseline, peers)


async def _message_or_close(proc: Process, conn: Connection, timeout: float = 10) -> Any:
    """The next message of ``proc``, or ``_CLOSED`` if ``conn`` closes first (a hang guard bounds it)."""
    receive = asyncio.create_task(proc.receive(timeout=timeout))
    closed = asyncio.create_task(conn.wait_closed())
    try:
        await asyncio.wait({receive, closed}, return_when=asyncio.FIRST_COMPLETED, timeout=timeout)
        if receive.done() and receive.exception() is None:
            return receive.result()
        if closed.done():
            return _CLOSED
        pytest.fail("neither a message nor a close")
    finally:
        for task in (receive, closed):
            task.cancel()
        await asyncio.gather(receive, closed, return_exceptions=True)


_CLOSED = object()


async def test_unknown_control_message_with_a_huge_op_is_skipped(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    proc = node.spawn()

    async def script(side: PeerSide) -> None:
        await side.accept()
        await side.send_frame(body((10**5000, A("x"))))
        await side.send_frame(body((SEND, A(""), proc.pid), A("still_here")))

    fake = await peers(script)
    conn = await connect_fake(node, fake)
    try:
        got = await _message_or_close(proc, conn)
        assert got is not _CLOSED, f"the connection was dropped: {conn.close_reason}"
        assert got == A("still_here")
        assert conn.stats.unknown_control == 1
        _no_error_logs(caplog)
    finally:
        await assert_no_leaks(node, baseline, peers)


MALFORMED_CONTROLS = {
    "send-without-to": (SEND,),
    "reg-send-without-name": (REG_SEND, A("x")),
    "monitor-wrong-arity": (MONITOR_P, A("a"), A("b")),
    "send-to-a-list": (SEND, A(""), [1, 2]),
}


@pytest.mark.parametrize("control", MALFORMED_CONTROLS.values(), ids=MALFORMED_CONTROLS.keys())
async def test_malformed_control_message_closes_the_connection(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture, control: Any
) -> None:
    caplog.set_level(logging.WARNING)
    frame = body(control, A("payload"))
    err, _conn = await _bad_frame_fails_pending_call(node, peers, framed(frame))
    assert "malformed control message" in str(err)
    _no_error_logs(caplog)
    await assert_no_leaks(node, baseline, peers)


@pytest.mark.parametrize("control", [A("not_a_tuple"), (), (A("op"), 1)], ids=["atom", "empty", "atom-op"])
async def test_control_message_that_is_not_an_op_tuple_closes_the_connection(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture, control: Any
) -> None:
    caplog.set_level(logging.WARNING)
    frame = body(control)
    err, _conn = await _bad_frame_fails_pending_call(node, peers, framed(frame))
    assert "control message that is not a tuple" in str(err)
    _no_error_logs(caplog)
    await assert_no_leaks(node, baseline, peers)


@pytest.mark.parametrize("control", [(MONITOR_P, 10**5000), 10**5000], ids=["in-tuple", "bare"])
async def test_malformed_control_message_holding_a_huge_integer(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture, control: Any
) -> None:
    caplog.set_level(logging.WARNING)
    frame = body(control)
    try:
        err, _conn = await _bad_frame_fails_pending_call(node, peers, framed(frame))
        assert "control message" in str(err) and "internal error" not in str(err)
        _no_error_logs(caplog)
    finally:
        await assert_no_leaks(node, baseline, peers)


async def test_send_without_its_message_is_malformed(
    baseline: Baseline, node: LocalNode, peers: Peers
) -> None:
    proc = node.spawn()

    async def script(side: PeerSide) -> None:
        await side.accept()
        await side.send_frame(body((SEND, A(""), proc.pid)))
        await side.send_frame(body((SEND, A(""), proc.pid), A("second")))

    fake = await peers(script)
    conn = await connect_fake(node, fake)
    try:
        got = await _message_or_close(proc, conn)
        assert got is _CLOSED, f"a corrupt SEND was delivered as {got!r}"
        assert "malformed" in str(conn.close_reason)
    finally:
        await assert_no_leaks(node, baseline, peers)


def _nested_lists(depth: int) -> bytes:
    return b"\x83" + b"l\x00\x00\x00\x01" * depth + b"j" + b"j" * depth


HOSTILE_TERMS = {
    "list-2**31": b"\x83l" + struct.pack(">I", 2**31) + b"j",
    "tuple-2**32-1": b"\x83i" + struct.pack(">I", 2**32 - 1) + b"j",
    "map-2**31": b"\x83t" + struct.pack(">I", 2**31) + b"jj",
    "binary-2**31": b"\x83m" + struct.pack(">I", 2**31) + b"abc",
    "bignum-2**31": b"\x83o" + struct.pack(">I", 2**31) + b"\x00\x01",
    "nested-tuples-10000": b"\x83" + b"h\x01" * 10_000 + b"j",
    "nested-lists-10000": _nested_lists(10_000),
    "nested-maps-10000": b"\x83" + b"t\x00\x00\x00\x01a\x01" * 10_000 + b"j",
    "compressed-declares-2**31": b"\x83P" + struct.pack(">I", 2**31) + zlib.compress(b"j"),
    "compressed-bomb": b"\x83P" + struct.pack(">I", 1000) + zlib.compress(b"\x00" * 50_000_000),
    "compressed-not-zlib": b"\x83P" + struct.pack(">I", 100) + b"\xff" * 100,
}


@pytest.mark.parametrize("term", HOSTILE_TERMS.values(), ids=HOSTILE_TERMS.keys())
async def test_hostile_term_closes_the_connection_and_memory_stays_bounded(
    baseline: Baseline, node: LocalNode, peers: Peers, caplog: pytest.LogCaptureFixture, term: bytes
) -> None:
    caplog.set_level(logging.WARNING)
    proc = node.spawn()
    frame = b"p" + term_to_binary((SEND, A(""), proc.pid)) + term
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        err, _conn = await _bad_frame_fails_pending_call(node, peers, framed(frame))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "malformed message" in str(err)
    # A few times the frame itself at most: no declared size was believed.
    assert peak < 10 * len(frame) + 8 * 1024 * 1024, f"{peak} bytes allocated for a {len(frame)}-byte frame"
    assert len(proc) == 0
    _no_error_logs(caplog)
    # The process is still healthy: the same LocalNode makes a new connection and uses it.

    async def good(side: PeerSide) -> None:
        await side.accept()
        await side.send_frame(body((SEND, A(""), proc2.pid), A("fine")))

    proc2 = node.spawn()
    fake2 = await peers(good)
    await connect_fake(node, fake2)
    assert await proc2.receive(timeout=20) == A("fine")
    await assert_no_leaks(node, baseline, peers)


async def test_atom_longer_than_erlang_allows_is_refused(
    baseline: Baseline, node: LocalNode, peers: Peers
) -> None:
    proc = node.spawn()
    long_atom = b"\x83v" + struct.pack(">H", 60_000) + b"a" * 60_000
    frame = b"p" + term_to_binary((SEND, A(""), proc.pid)) + long_atom
    try:
        err, _conn = await _bad_frame_fails_pending_call(node, peers, framed(frame), rpc_timeout=5)
        assert "malformed" in str(err)
    finally:
        await assert_no_leaks(node, baseline, peers)


# --------------------------------------------------------------------------- the handshake


async def test_wrong_digest_in_challenge_ack_is_cookie_rejected(
    baseline: Baseline, node: LocalNode, peers: Peers
) -> None:
    async def script(side: PeerSide) -> None:
        await side.accept(ack_cookie="not-the-cookie")

    fake = await peers(script)
    with pytest.raises(CookieRejected, match="digest of a different cookie"):
        await connect_fake(node, fake)
    assert node.connection_or_none(FAKE) is None
    await assert_no_leaks(node, baseline, peers)


async def test_peer_closing_after_challenge_reply_is_cookie_rejected(
    baseline: Baseline, node: LocalNode, peers: Peers
) -> None:
    async def script(side: PeerSide) -> None:
        await side.receive_name()
        side.send_status("ok")
        await side.receive_challenge_reply(side.send_challenge())
        side.close()  # what a node does when the digest is wrong

    fake = await peers(script)
    with pytest.raises(CookieRejected) as err:
        await connect_fake(node, fake)
    assert "refused our cookie" in str(err.value) and "ARSENAL_COOKIE" in str(err.value)
    await assert_no_leaks(node, baseline, peers)


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        ("not_allowed", NotAllowed, "does not allow connections"),
        ("nok", HandshakeError, "already connecting"),
        ("weird_status", HandshakeError, "weird_status"),
    ],
)
async def test_refusing_status(
    baseline: Baseline, node: LocalNode, peers: Peers, status: str, error: type[Exception], words: str
) -> None:
    async def script(side: PeerSide) -> None:
        await side.receive_name()
        side.send_status(status)
        await side.writer.drain()
        side.close()

    fake = await peers(script)
    with pytest.raises(error, match=words) as err:
        await connect_fake(node, fake)
    assert type(err.value) is error
    await assert_no_leaks(node, baseline, peers)


async def test_status_alive_is_answered_and_the_handshake_goes_on(
    baseline: Baseline, node: LocalNode, peers: Peers
) -> None:
    answers: list[bytes] = []

    async def script(side: PeerSide) -> None:
        await side.receive_name()
        side.send_status("alive")
        answers.append(await side.read_message())
        theirs = await side.receive_challenge_reply(side.send_challenge())
        side.send_message(b"a" + digest(theirs, side.peer.cookie))

    fake = await peers(script)
    conn = await connect_fake(node, fake)
    assert answers == [b"strue"]
    assert not conn.closed
    await assert_no_leaks(node, baseline, peers)


async def test_challenge_without_required_flags_is_not_allowed(
    baseline: Baseline, node: LocalNode, peers: Peers
) -> None:
    async def script(side: PeerSide) -> None:
        await side.receive_name()
        side.send_status("ok")
        side.send_challenge(flags=PEER_FLAGS & ~DFlag.MAP_TAG & ~DFlag.BIG_CREATION)
        await side.writer.drain()
        await side.reader.read()

    fake = await peers(script)
    with pytest.raises(NotAllowed, match="MAP_TAG"):
        await connect_fake(node, fake)
    await assert_no_leaks(node, baseline, peers)


async def test_silent_peer_is_a_timeout(baseline: Baseline, node: LocalNode, peers: Peers) -> None:
    async def script(side: PeerSide) -> None:
        await side.receive_name()  # and never answer

    fake = await peers(script)
    with pytest.raises(DistTimeout, match="did not finish within 1s"):
        await connect_fake(node, fake, timeout=1.0)
    await assert_no_leaks(node, baseline, peers)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_peer_closing_at_once_is_connect_failed(
    baseline: Baseline, node: LocalNode, peers: Peers, reset: bool
) -> None:
    async def script(side: PeerSide) -> None:
        side.close(reset=reset)

    fake = await peers(script)
    with pytest.raises(ConnectFailed, match="closed the connection during the handshake"):
        await connect_fake(node, fake)
    await assert_no_leaks(node, baseline, peers)


async def test_unexpected_message_in_place_of_the_ack(
    baseline: Baseline, node: LocalNode, peers: Peers
) -> None:
    async def script(side: PeerSide) -> None:
        await side.receive_name()
        side.send_status("ok")
        await side.receive_challenge_reply(side.send_challenge())
        side.send_message(b"x" * 17)

    fake = await peers(script)
    with pytest.raises(HandshakeError, match="unexpected handshake message") as err:
        await connect_fake(node, fake)
    assert type(err.value) is HandshakeError
    await assert_no_leaks(node, baseline, peers)


# --------------------------------------------------------------------------- isolation


async def test_bad_frame_closes_only_its_own_connection(
    baseline: Baseline, node: LocalNode, peers: Peers, make_node: Any
) -> None:
    real = make_node("iso")
    real_conn = await node.connect(real.name)
    watcher = node.spawn()
    sleeper = await real_conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [A("infinity")]])
    assert isinstance(sleeper, Pid)
    ref = await watcher.monitor(sleeper)

    frame = b"p\x83l" + struct.pack(">I", 2**31)
    _err, fake_conn = await _bad_frame_fails_pending_call(node, peers, framed(frame))
    assert fake_conn.closed
    assert not real_conn.closed
    assert node.connection_or_none(real.name) is real_conn
    assert await real_conn.rpc("erlang", "node", []) == A(real.name)
    assert len(watcher) == 0 and ref in watcher.monitors  # no DOWN from the other connection
    await assert_no_leaks(node, baseline, peers)


async def test_peer_claiming_another_nodes_name_cannot_break_its_monitors(
    baseline: Baseline, node: LocalNode, peers: Peers, make_node: Any
) -> None:
    real = make_node("iso")
    real_conn = await node.connect(real.name)
    watcher = node.spawn()
    sleeper = await real_conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [A("infinity")]])
    ref = await watcher.monitor(sleeper)

    async def script(side: PeerSide) -> None:
        await side.accept()
        await side.send_frame(b"p\x83l" + struct.pack(">I", 2**31))

    impostor = await peers(script, name=real.name)
    try:
        try:
            fake_conn = await node.connect(FAKE, port=impostor.port)
        except HandshakeError:
            pass  # refused like dist_util refuses a mismatching name: fine
        else:
            await asyncio.wait_for(fake_conn.wait_closed(), 10)
        assert not real_conn.closed
        assert len(watcher) == 0, f"spurious signal: {watcher._mailbox!r}"
        assert ref in watcher.monitors
    finally:
        await assert_no_leaks(node, baseline, peers)


# --------------------------------------------------------------------------- TLS peer


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("hostile-tls"))


def _server_context(pki: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    return ctx


def _client_context(pki: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname stays on: the cert names this host
    ctx.load_verify_locations(pki.ca)
    return ctx


async def test_tls_handshake_message_too_long_is_refused(
    baseline: Baseline, node: LocalNode, peers: Peers, pki: TlsFiles
) -> None:
    async def script(side: PeerSide) -> None:
        await side.receive_name()
        side.writer.write(struct.pack(">I", 0xFFFFFFF0) + b"sok")
        await side.writer.drain()

    fake = await peers(script, ssl=_server_context(pki))
    with pytest.raises(HandshakeError, match=f"{0xFFFFFFF0}-byte handshake message"):
        await connect_fake(node, fake, ssl=_client_context(pki))
    await assert_no_leaks(node, baseline, peers)


async def test_tls_fake_peer_works_with_4_byte_handshake_framing(
    baseline: Baseline, node: LocalNode, peers: Peers, pki: TlsFiles
) -> None:
    proc = node.spawn()

    async def script(side: PeerSide) -> None:
        await side.accept()
        await side.send_frame(body((SEND, A(""), proc.pid), A("over_tls")))

    fake = await peers(script, ssl=_server_context(pki))
    await connect_fake(node, fake, ssl=_client_context(pki))
    assert await proc.receive(timeout=20) == A("over_tls")
    await assert_no_leaks(node, baseline, peers)


async def test_tls_bad_frame_fails_pending_calls_even_if_the_peer_ignores_close_notify(
    baseline: Baseline, node: LocalNode, peers: Peers, pki: TlsFiles
) -> None:
    async def script(side: PeerSide) -> None:
        await side.accept()
        await side.read_frame()  # the rpc is pending
        side.writer.transport.pause_reading()  # a stuck peer: never reads our close_notify
        await side.send_raw(struct.pack(">I", 0xFFFFFFF0))
        await asyncio.sleep(3600)

    fake = await peers(script, ssl=_server_context(pki))
    conn = await connect_fake(node, fake, ssl=_client_context(pki))
    call = asyncio.create_task(conn.rpc("erlang", "node", [], timeout=50))
    try:
        # A hang guard, not a timing: without the fix the call waits for asyncio's 30 s TLS shutdown.
        done, _ = await asyncio.wait({call}, timeout=10)
        assert call in done, "the pending call still waits although the frame was refused"
        assert isinstance(call.exception(), NodeDown)
        assert conn.closed
    finally:
        call.cancel()
        with contextlib.suppress(BaseException):
            await call
        await assert_no_leaks(node, baseline, peers)


# --------------------------------------------------------------------------- EPMD against reality


async def test_unknown_name_on_a_real_epmd_is_node_not_found(
    baseline: Baseline, node: LocalNode, make_node: Any
) -> None:
    make_node("epmdup")  # EPMD certainly runs
    missing = f"no_such_node_{secrets.token_hex(4)}"
    with pytest.raises(NodeNotFound, match=missing):
        await node.connect(f"{missing}@{HOST}")
    await assert_no_leaks(node, baseline)


async def test_epmd_not_running_is_epmd_unreachable(baseline: Baseline, node: LocalNode) -> None:
    port = _free_port()
    with pytest.raises(EpmdUnreachable, match=str(port)):
        await node.connect(f"anything@{HOST}", epmd_port=port)
    await assert_no_leaks(node, baseline)


async def test_dead_node_port_is_connect_failed(baseline: Baseline, node: LocalNode, make_node: Any) -> None:
    dead = make_node("dead")
    port = (await port_please(HOST, dead.alive)).port
    dead.kill()
    with pytest.raises(ConnectFailed, match="is it running"):
        await node.connect(dead.name, port=port)
    with pytest.raises(ConnectFailed, match=str(_closed := _free_port())):
        await node.connect(f"other@{HOST}", port=_closed)
    await assert_no_leaks(node, baseline)
