"""TLS distribution (``-proto_dist inet_tls``) against real OTP nodes, with mutual TLS.

The PKI is made per session with ``cryptography``: a CA, a server certificate
(also used by the node as its client certificate) and a client certificate for
Arsenal, all naming localhost, 127.0.0.1 and the short host name. Since nodes
are ``-sname name@HOST`` and HOST is in the certificates, the client context
keeps ``check_hostname=True`` (the default of ``PROTOCOL_TLS_CLIENT``).

Two node flavours: ``tls12`` has exactly the optfile of a typical production
setup, with which OTP 25 negotiates TLS 1.2 (its server side does not offer 1.3
unless asked); ``tls13`` adds ``{versions, ['tlsv1.3', 'tlsv1.2']}``, the OTP 26
default. Over TLS, ``inet_tls_dist`` frames the handshake with a 4-byte length
from the very first message; the tests below are that check against OTP 25.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from arsenal.dist import (
    Atom,
    ConnectFailed,
    CookieRejected,
    DistTimeout,
    LocalNode,
    NodeDown,
    Pid,
    charlist,
)

from .nodes import BeamNode, TlsFiles, erl_node, make_tls_files, open_fd_count, settle_resources

pytestmark = pytest.mark.timeout(90)

A = Atom


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _tls_node(files: TlsFiles, cookie: str, flavour: str, prefix: str) -> BeamNode:
    optfile = files.dist_optfile(f"{prefix}.conf", tls13=flavour == "tls13")
    extra = ["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)]
    return erl_node(prefix, cookie=cookie, extra=extra)


@pytest.fixture(scope="session")
def tls12_node(tls_files: TlsFiles, cookie: str) -> Iterator[BeamNode]:
    node = _tls_node(tls_files, cookie, "tls12", "tls12").start()
    yield node
    node.kill()


@pytest.fixture(scope="session")
def tls13_node(tls_files: TlsFiles, cookie: str) -> Iterator[BeamNode]:
    node = _tls_node(tls_files, cookie, "tls13", "tls13").start()
    yield node
    node.kill()


@pytest.fixture(params=["tls12", "tls13"])
def tls_node(request: pytest.FixtureRequest) -> BeamNode:
    """Each TLS flavour in turn (the nodes are started once per session, on first use)."""
    return request.getfixturevalue(f"{request.param}_node")


def client_context(files: TlsFiles, *, certificate: bool = True, trust: str = "ca") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, verify_mode=CERT_REQUIRED
    ctx.load_verify_locations(files.ca if trust == "ca" else files.other_ca)
    if certificate:
        ctx.load_cert_chain(files.client_cert, files.client_key)
    return ctx


@pytest.fixture
async def baseline() -> tuple[int, set[Any]]:
    return open_fd_count(), set(asyncio.all_tasks())


async def assert_released(local: LocalNode, baseline: tuple[int, set[Any]]) -> None:
    await local.close()
    fds, tasks = await settle_resources(*baseline)
    assert not tasks, f"tasks left behind: {tasks}"
    assert fds <= baseline[0], f"{fds - baseline[0]} file descriptor(s) left open"


# --------------------------------------------------------------------------- working TLS


async def test_rpc_over_tls(local: LocalNode, tls_node: BeamNode, tls_files: TlsFiles) -> None:
    conn = await local.connect(tls_node.name, ssl=client_context(tls_files))
    assert await conn.rpc("erlang", "node", [], via="erpc") == A(tls_node.name)
    assert await conn.rpc("erlang", "node", [], via="rex") == A(tls_node.name)
    # The node really runs TLS distribution, and sees us as a hidden node.
    assert await conn.rpc("init", "get_argument", [A("proto_dist")]) == (A("ok"), [[charlist("inet_tls")]])
    assert local.name in await conn.rpc("erlang", "nodes", [A("hidden")])
    # Larger terms, both ways, span many TLS records.
    seq = list(range(1, 10_001))
    assert await conn.rpc("lists", "seq", [1, 10_000], via="erpc") == seq
    assert await conn.rpc("lists", "seq", [1, 10_000], via="rex") == seq
    assert await conn.rpc("lists", "reverse", [seq]) == seq[::-1]
    blob = bytes(range(256)) * 8192  # 2 MiB
    assert await conn.rpc("erlang", "iolist_to_binary", [[blob, blob]], timeout=30) == blob + blob
    results = await asyncio.gather(*(conn.rpc("erlang", "abs", [-i]) for i in range(500)))
    assert results == list(range(500))


async def test_tls_version_of_each_flavour(local: LocalNode, tls_node: BeamNode, tls_files: TlsFiles) -> None:
    conn = await local.connect(tls_node.name, ssl=client_context(tls_files))
    # No public accessor for the transport: look at the protocol's (the version is what is checked).
    ssl_object = conn._proto.transport.get_extra_info("ssl_object")
    expected = "TLSv1.3" if tls_node.alive.startswith("tls13") else "TLSv1.2"
    assert ssl_object.version() == expected


async def test_monitors_links_and_messages_over_tls(
    local: LocalNode, tls_node: BeamNode, tls_files: TlsFiles
) -> None:
    conn = await local.connect(tls_node.name, ssl=client_context(tls_files))
    proc = local.spawn()
    sleeper = await conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [A("infinity")]])
    assert isinstance(sleeper, Pid)
    ref = await proc.monitor(sleeper)
    await conn.rpc("erlang", "exit", [sleeper, A("kill")])
    assert await proc.receive(timeout=10) == (A("DOWN"), ref, A("process"), sleeper, A("killed"))

    linked = await conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [A("infinity")]])
    await proc.link(linked)
    await conn.rpc("erlang", "exit", [linked, A("shutdown")])
    assert await proc.receive(timeout=10) == (A("EXIT"), linked, A("shutdown"))

    # The node sends to the Python process over TLS.
    assert await conn.rpc("erlang", "send", [proc.pid, (A("hello"), b"over tls")]) == (
        A("hello"),
        b"over tls",
    )
    assert await proc.receive(timeout=10) == (A("hello"), b"over tls")


async def test_wrong_cookie_over_tls_is_cookie_rejected(
    baseline: tuple[int, set[Any]], tls12_node: BeamNode, tls_files: TlsFiles
) -> None:
    local = LocalNode(cookie="not-the-cookie")
    with pytest.raises(CookieRejected, match="refused our cookie"):
        await local.connect(tls12_node.name, ssl=client_context(tls_files), timeout=10)
    await assert_released(local, baseline)


async def test_node_killed_over_tls_fails_pending_calls(
    baseline: tuple[int, set[Any]], cookie: str, tls_files: TlsFiles, make_node: Any
) -> None:
    optfile = tls_files.dist_optfile("doomed.conf")
    doomed = make_node("tlsdoomed", extra=["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)])
    local = LocalNode(cookie=cookie)
    try:
        conn = await local.connect(doomed.name, ssl=client_context(tls_files))
        call = asyncio.create_task(conn.rpc("timer", "sleep", [A("infinity")], timeout=60))
        await conn.rpc("erlang", "node", [])  # the sleep request went out before this reply came back
        doomed.kill()
        with pytest.raises(NodeDown):
            await call
        assert conn.closed
    finally:
        await assert_released(local, baseline)


async def test_node_dropping_us_over_tls(local: LocalNode, tls12_node: BeamNode, tls_files: TlsFiles) -> None:
    conn = await local.connect(tls12_node.name, ssl=client_context(tls_files))
    proc = local.spawn()
    sleeper = await conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [A("infinity")]])
    ref = await proc.monitor(sleeper)
    # disconnect_node runs in a process that replies first; the drop follows.
    await conn.rpc("erlang", "spawn", [A("erlang"), A("disconnect_node"), [local.name]])
    await asyncio.wait_for(conn.wait_closed(), 30)
    assert isinstance(conn.close_reason, NodeDown)
    assert await proc.receive(timeout=10) == (A("DOWN"), ref, A("process"), sleeper, A("noconnection"))
    # and a new connection works
    again = await local.connect(tls12_node.name, ssl=client_context(tls_files))
    assert again is not conn
    assert await again.rpc("erlang", "node", []) == A(tls12_node.name)


# --------------------------------------------------------------------------- refused TLS


async def test_client_without_certificate_is_refused(
    baseline: tuple[int, set[Any]], cookie: str, tls12_node: BeamNode, tls_files: TlsFiles
) -> None:
    local = LocalNode(cookie=cookie)
    with pytest.raises(ConnectFailed) as err:
        await local.connect(tls12_node.name, ssl=client_context(tls_files, certificate=False), timeout=10)
    assert type(err.value) is ConnectFailed
    message = str(err.value)
    assert tls12_node.name in message and "TLS" in message and "certificate" in message
    assert "HANDSHAKE_FAILURE" in message  # the alert the node sent
    await assert_released(local, baseline)


async def test_client_without_certificate_is_refused_tls13(
    baseline: tuple[int, set[Any]], cookie: str, tls13_node: BeamNode, tls_files: TlsFiles
) -> None:
    local = LocalNode(cookie=cookie)
    try:
        with pytest.raises(ConnectFailed) as err:
            await local.connect(tls13_node.name, ssl=client_context(tls_files, certificate=False), timeout=10)
        assert type(err.value) is ConnectFailed
        message = str(err.value)
        assert "TLS" in message and "certificate" in message.lower(), message
    finally:
        await assert_released(local, baseline)


async def test_client_not_trusting_the_node_is_refused(
    baseline: tuple[int, set[Any]], cookie: str, tls_node: BeamNode, tls_files: TlsFiles
) -> None:
    local = LocalNode(cookie=cookie)
    with pytest.raises(ConnectFailed) as err:
        await local.connect(tls_node.name, ssl=client_context(tls_files, trust="other"), timeout=10)
    message = str(err.value)
    assert "TLS" in message and "CERTIFICATE_VERIFY_FAILED" in message and "certificates" in message
    await assert_released(local, baseline)


async def test_plain_connect_to_a_tls_node_fails_fast(
    baseline: tuple[int, set[Any]], cookie: str, tls_node: BeamNode
) -> None:
    local = LocalNode(cookie=cookie)
    # The node answers our clear-text send_name with a TLS alert and closes: ConnectFailed, not a hang.
    with pytest.raises(ConnectFailed, match="closed the connection during the handshake") as err:
        await local.connect(tls_node.name, timeout=20)
    assert tls_node.name in str(err.value)
    await assert_released(local, baseline)


async def test_tls_connect_to_a_plain_node_is_a_typed_error(
    baseline: tuple[int, set[Any]], cookie: str, tls_files: TlsFiles, make_node: Any
) -> None:
    plain = make_node("plain")
    local = LocalNode(cookie=cookie)
    # The plain node reads our ClientHello as a handshake message and waits for the rest of it, then
    # gives up after net_setuptime (7 s): whichever comes first, the error is typed.
    with pytest.raises((DistTimeout, ConnectFailed)):
        await local.connect(plain.name, ssl=client_context(tls_files), timeout=3)
    await assert_released(local, baseline)
