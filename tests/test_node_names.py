"""Our own node name: attaching again and again adds no atom to the target (a small pool of names
per host, each held by one process at a time through a lock), against real nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arsenal.beam import Node
from arsenal.dist import Atom, DistError, LocalNode
from arsenal.dist.naming import POOL_SIZE, claim_name

from .nodes import ROOT, BeamNode

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def name_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A pool of this test's own, so other Arsenal processes on this machine do not take names from it."""
    directory = tmp_path / "names"
    monkeypatch.setenv("ARSENAL_NODE_NAME_DIR", str(directory))
    yield directory


async def _atom_count(probe: LocalNode, node: str) -> int:
    conn = await probe.connect(node)
    return await conn.rpc("erlang", "system_info", [Atom("atom_count")])  # type: ignore[no-any-return]


def _cli(*args: str, cookie: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARSENAL_COOKIE": cookie}
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_fifty_attaches_add_no_atom_to_the_target(
    make_node: Callable[..., BeamNode], cookie: str, name_dir: Path
) -> None:
    target = make_node("atoms")
    async with LocalNode(cookie=cookie) as probe:
        async with Node(target.name, cookie=cookie, reconnect=False):  # loads the agent once
            pass
        before = await _atom_count(probe, target.name)
        for _ in range(50):
            async with Node(target.name, cookie=cookie, reconnect=False) as node:
                await node.call("erlang", "node")
        for _ in range(3):  # separate processes, as a CLI polled from cron
            run = _cli("apps", "--node", target.name, "--json", cookie=cookie)
            assert run.returncode == 0, run.stderr
        after = await _atom_count(probe, target.name)
        names = await (await probe.connect(target.name)).rpc("erlang", "nodes", [Atom("hidden")])
    assert after - before <= 1, f"{after - before} atoms more on the target"
    assert names == [probe.name]


async def test_live_local_nodes_never_share_a_name(erl: BeamNode, cookie: str, name_dir: Path) -> None:
    first, second = LocalNode(cookie=cookie), LocalNode(cookie=cookie)
    try:
        await first.connect(erl.name)
        await second.connect(erl.name)
        assert first.name != second.name
        assert {str(first.name).partition("@")[0], str(second.name).partition("@")[0]} == {
            "arsenal-1",
            "arsenal-2",
        }
        taken = first.name
        await first.close()
        third = LocalNode(cookie=cookie)
        await third.connect(erl.name)
        assert third.name == taken  # a released name is the next one handed out
        await third.close()
    finally:
        await first.close()
        await second.close()


async def test_an_explicit_name_wins(erl: BeamNode, cookie: str, name_dir: Path) -> None:
    async with LocalNode("arsenal_named_probe", cookie=cookie) as local:
        await local.connect(erl.name)
        assert str(local.name).startswith("arsenal_named_probe@")
    assert not list(name_dir.glob("*.lock"))  # no name of the pool was taken


def test_a_killed_process_frees_its_name(name_dir: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom arsenal.dist.naming import claim_name\n"
            "lease = claim_name()\nprint(lease.alive, flush=True)\ntime.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline().strip()
        assert held == "arsenal-1"
        mine = claim_name()
        assert mine.alive == "arsenal-2"  # held by the other process
        mine.release()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    again = claim_name()  # the kernel dropped the dead process's lock
    assert again.alive == "arsenal-1"
    again.release()


def test_an_exhausted_pool_is_an_error_not_a_new_name(name_dir: Path) -> None:
    held = [claim_name(size=3) for _ in range(3)]
    assert [lease.alive for lease in held] == ["arsenal-1", "arsenal-2", "arsenal-3"]
    with pytest.raises(DistError, match="all 3 node names"):
        claim_name(size=3)
    held[1].release()
    assert claim_name(size=3).alive == "arsenal-2"
    for lease in held:
        lease.release()
    assert POOL_SIZE >= 32
