"""Fixtures: real nodes, started once per session where they can be shared.

Nodes that a test kills or restarts are made by that test (``make_node``), and
every node is killed at teardown even when the test fails.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from arsenal.dist import LocalNode

from .nodes import ROOT, BeamNode, elixir_demo_node, erl_node

# The dashboard's browser fixtures (dashboard, browser, page, anonymous_page).
pytest_plugins = ["tests.browser", "tests.cluster"]

COOKIE = "arsenal_test_" + secrets.token_hex(8)
# Arsenal's data directory (its SQLite store) is the test run's own, never ~/.arsenal.
os.environ["ARSENAL_HOME"] = tempfile.mkdtemp(prefix="arsenal-test-home-")


@pytest.fixture(scope="session", autouse=True)
def built() -> None:
    """The agent and the demos are built by `make test`; build them here too for a bare `pytest`."""
    if not any((ROOT / "src/arsenal/agent/ebin").glob("otp*/manifest.json")):
        subprocess.run([str(ROOT / "scripts/build_agent.sh")], check=True)
    support = ROOT / "tests/erlang"
    (support / "ebin").mkdir(exist_ok=True)
    subprocess.run(["erlc", "-o", str(support / "ebin"), *map(str, support.glob("*.erl"))], check=True)
    if not (ROOT / "demo/erlang/ebin").exists() or not (ROOT / "demo/elixir/_build").exists():
        subprocess.run([str(ROOT / "demo/build.sh")], check=True, capture_output=True)


@pytest.fixture(scope="session")
def cookie() -> str:
    return COOKIE


@pytest.fixture(autouse=True)
def no_read_only_holds() -> Iterator[None]:
    """A node attached read-only stays so, by name, in the store (until an admin lifts it). The
    suite's tests share one store and the session's nodes, so each test leaves none held."""
    yield
    from arsenal.store import ReadOnlyNodes, Store

    store = Store()
    try:
        holds = ReadOnlyNodes(store)
        for node in holds.nodes():
            holds.lift(node)
    finally:
        store.close()


@pytest.fixture(scope="session")
def erl(built: None) -> Iterator[BeamNode]:
    """A plain Erlang node running the plain-Erlang demo tree, shared by the session."""
    node = erl_node("erl", cookie=COOKIE, demo=True).start()
    yield node
    node.kill()


@pytest.fixture(scope="session")
def elixir(built: None) -> Iterator[BeamNode]:
    """The Elixir demo application as a node, shared by the session."""
    node = elixir_demo_node(cookie=COOKIE).start()
    yield node
    node.kill()


@pytest.fixture
def make_node() -> Iterator[Callable[..., BeamNode]]:
    """Start throwaway nodes (killed at teardown): ``make_node(prefix, extra=[...])``."""
    started: list[BeamNode] = []

    def make(prefix: str = "tmp", **options: object) -> BeamNode:
        options.setdefault("cookie", COOKIE)
        node = erl_node(prefix, **options).start()  # type: ignore[arg-type]
        started.append(node)
        return node

    yield make
    for node in started:
        node.kill()


@pytest.fixture
async def local() -> AsyncIterator[LocalNode]:
    """A local hidden node with the session cookie, closed after the test."""
    node = LocalNode(cookie=COOKIE)
    yield node
    await node.close()
