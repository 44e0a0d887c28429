"""The one node launcher (``arsenal.sandbox.launcher``) against real ``erl`` nodes.

Every node the suite, the benchmarks, the demo and the sandboxes start goes through
it, so what it promises is checked here on real OS processes: a kill leaves no
process of the group and no name in EPMD, OS limits end a node that passes them
and the wrapper records how it ended, a node that never gets ready is killed, the
owner watchdog halts an orphan, and Elixir's code can be put on a plain node's path.
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arsenal.dist import Atom, LocalNode
from arsenal.sandbox.launcher import (
    BeamProcess,
    LaunchError,
    LaunchSpec,
    elixir_code_paths,
    group_alive,
    owner_watchdog,
    registered_with_epmd,
    unique_alive,
)

pytestmark = pytest.mark.timeout(90)

A = Atom
Launch = Callable[..., BeamProcess]


def _stat(pid_dir: Path) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of one ``/proc/<pid>``, or None if it ended while we looked."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")".
    state, ppid, pgrp = text.rpartition(")")[2].split()[:3]
    return state, int(ppid), int(pgrp)


def live_processes(*, pgrp: int | None = None, ppid: int | None = None) -> set[int]:
    """Pids of live (not zombie) processes of process group ``pgrp`` or with parent ``ppid``."""
    found = set()
    for pid_dir in Path("/proc").glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is None or stat[0] == "Z":
            continue
        if (pgrp is not None and stat[2] == pgrp) or (ppid is not None and stat[1] == ppid):
            found.add(int(pid_dir.name))
    return found


def still_running(pids: set[int]) -> set[int]:
    """Those of ``pids`` that are live (not zombies)."""
    return {pid for pid in pids if (stat := _stat(Path(f"/proc/{pid}"))) is not None and stat[0] != "Z"}


@pytest.fixture
def launch(cookie: str, tmp_path: Path) -> Iterator[Launch]:
    """Start nodes (not waiting for them) with the session cookie; kill every one at teardown."""
    started: list[BeamProcess] = []

    def start(prefix: str = "launch", **options: object) -> BeamProcess:
        alive = unique_alive(prefix)
        options.setdefault("log_path", tmp_path / f"{alive}.log")
        options.setdefault("cwd", tmp_path)  # any erl_crash.dump lands here, not in the checkout
        process = BeamProcess.start(LaunchSpec(alive=alive, cookie=cookie, **options))  # type: ignore[arg-type]
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


async def test_kill_leaves_no_process_of_the_group_and_no_name_in_epmd(launch: Launch) -> None:
    node = launch().wait_ready(60)
    assert node.running and registered_with_epmd(node.alive)
    assert node.pid in live_processes(pgrp=node.pid)
    # The VM's port helper (erl_child_setup) runs in a session of its own; it must end too.
    helpers = live_processes(ppid=node.pid)
    assert helpers

    node.kill()
    node.wait_unregistered()

    assert not node.running
    assert live_processes(pgrp=node.pid) == set()
    assert not group_alive(node.pid)
    assert not registered_with_epmd(node.alive)
    for _ in range(200):  # it notices its VM's end a moment later
        if not still_running(helpers):
            break
        await asyncio.sleep(0.05)
    assert still_running(helpers) == set()


async def test_a_node_past_its_address_space_limit_ends_and_its_status_is_recorded(
    launch: Launch, local: LocalNode, tmp_path: Path
) -> None:
    status_file = tmp_path / "exit_status"
    node = launch(
        "limited",
        args=["+S", "1:1", "+SDcpu", "1:1"],
        # OTP 27 and later need about 384 MiB of address space to start (OTP 25: 256 MiB).
        rlimits={resource.RLIMIT_AS: 512 * 1024 * 1024},
        exit_status_path=status_file,
        env={"ERL_CRASH_DUMP_BYTES": "0"},
    ).wait_ready(60)
    conn = await local.connect(node.name)
    # It runs under the limit...
    assert await conn.rpc("erlang", "node") == A(node.name)
    assert not status_file.exists()
    # ...until a process builds a list of 100 million cells (about 1.6 GB of heap).
    await conn.rpc("erlang", "spawn", [A("lists"), A("seq"), [1, 100_000_000]])

    assert await node.wait_exit(timeout=60) is not None
    status = int(status_file.read_text())
    assert status != 0
    assert "Cannot allocate" in node.log_tail()
    assert not group_alive(node.pid)


async def test_a_node_that_never_prints_its_ready_marker_fails_and_is_killed(launch: Launch) -> None:
    node = launch(
        "unready", args=["-eval", 'io:format("BOOTED_BUT_NOT_READY~n")'], ready_marker="NEVER_PRINTED"
    )
    # Wait (without a clock) until the node has said something, so the error can carry it.
    for _ in range(1200):
        if "BOOTED_BUT_NOT_READY" in node.log_tail():
            break
        assert node.running, node.log_tail()
        await asyncio.sleep(0.05)

    with pytest.raises(LaunchError, match="BOOTED_BUT_NOT_READY") as failure:
        node.wait_ready(timeout=1)
    assert node.alive in str(failure.value)

    node.wait_unregistered()
    assert not node.running
    assert not group_alive(node.pid)
    assert not registered_with_epmd(node.alive)


def test_owner_watchdog_halts_the_node_once_its_owner_is_gone(launch: Launch) -> None:
    owner = subprocess.Popen(["sleep", "600"])
    try:
        watchdog = owner_watchdog(owner.pid)
        assert watchdog[0] == "-eval" and str(owner.pid) in watchdog[1]
        node = launch("orphan", args=watchdog).wait_ready(60)
        assert node.running
    finally:
        owner.kill()
        owner.wait()  # reaped: a zombie would still have its /proc entry
    # The watchdog halts the node with status 1; nothing else would end it.
    assert node.proc.wait(timeout=30) == 1
    node.wait_unregistered()
    assert not registered_with_epmd(node.alive)


@pytest.mark.skipif(shutil.which("elixir") is None, reason="needs Elixir")
async def test_elixir_code_paths_let_a_plain_erl_node_run_elixir(launch: Launch, local: LocalNode) -> None:
    paths = elixir_code_paths()
    assert any(path.parent.name == "elixir" for path in paths), paths
    node = launch("exonerl", code_paths=paths).wait_ready(60)
    assert node.spec.program == "erl"
    conn = await local.connect(node.name)
    assert await conn.rpc("Elixir.Enum", "sum", [[1, 2]]) == 3
