"""`arsenal ps`: the top processes, ranked in the VM, through the Python API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from arsenal.beam import Node
from arsenal.ops.processes import SortKey, top_processes

pytestmark = pytest.mark.timeout(120)


async def test_top_by_memory_queue_and_reductions(erl, cookie) -> None:
    async with Node(erl.name, cookie=cookie, reconnect=False) as node:
        by_memory = await top_processes(node, SortKey.memory, 5)
        assert by_memory.rows[0].registered_name == "demo_big_state"
        memories = [row.memory for row in by_memory.rows]
        assert memories == sorted(memories, reverse=True)
        assert by_memory.process_count > 5

        by_queue = await top_processes(node, "message_queue_len", 3)
        assert by_queue.rows[0].registered_name == "demo_busy_mailbox"
        assert by_queue.rows[0].message_queue_len > 0

        by_reds = await top_processes(node, "reductions", 50)
        names = [row.registered_name for row in by_reds.rows]
        assert "demo_spinner" in names
        worker = next(row for row in by_reds.rows if row.registered_name == "demo_worker_1")
        assert worker.initial_call == "arsenal_demo_erl_worker:init/1"
        assert worker.current_function == "gen_server:loop/7"


async def test_limits_are_checked(erl, cookie) -> None:
    async with Node(erl.name, cookie=cookie, reconnect=False) as node:
        with pytest.raises(ValueError, match="limit"):
            await top_processes(node, "memory", 0)
        with pytest.raises(ValueError, match="limit"):
            await top_processes(node, "memory", 5000)
        with pytest.raises(ValueError):
            await top_processes(node, "heap_size", 5)
        everything = await top_processes(node, "memory", 1000)
        assert len(everything.rows) == min(1000, everything.process_count) or len(everything.rows) > 20


async def test_elixir_names_are_shown_the_elixir_way(elixir, cookie) -> None:
    async with Node(elixir.name, cookie=cookie, reconnect=False) as node:
        assert node.language == "elixir"
        top = await top_processes(node, "memory", 200)
        names = {row.registered_name for row in top.rows}
        assert "ArsenalDemo.Supervisor" in names
        assert ":arsenal_demo_pool" in names
        counter = next(row for row in top.rows if row.registered_name == "ArsenalDemo.Counter1")
        assert counter.initial_call == "ArsenalDemo.StatefulWorker.init/1"


def _arsenal(*args: str, cookie: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if cookie:
        env["ARSENAL_COOKIE"] = cookie
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_ps_json_and_table(erl, cookie) -> None:
    done = _arsenal("ps", "--node", erl.name, "--sort", "memory", "--limit", "10", "--json", cookie=cookie)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["node"] == erl.name and data["sort"] == "memory"
    assert len(data["processes"]) == 10
    assert data["processes"][0]["registered_name"] == "demo_big_state"
    assert data["processes"][0]["pid"].startswith("<0.")

    table = _arsenal("ps", "--node", erl.name, "--sort", "queue", "--limit", "3", cookie=cookie)
    assert table.returncode == 0, table.stderr
    assert "demo_busy_mailbox" in table.stdout and "message_queue_len" in table.stdout


def test_cli_errors_are_one_line_without_traceback(erl, cookie) -> None:
    unknown = _arsenal("ps", "--node", "nobody_xyz", cookie=cookie)
    assert unknown.returncode == 1
    assert "no node named" in unknown.stderr and "Traceback" not in unknown.stderr
    wrong = _arsenal("ps", "--node", erl.name, cookie="wrong-cookie")
    assert wrong.returncode == 1
    assert "cookie" in wrong.stderr and "Traceback" not in wrong.stderr
    assert "wrong-cookie" not in wrong.stderr  # a cookie never appears in output
    bad_sort = _arsenal("ps", "--node", erl.name, "--sort", "bogus", cookie=cookie)
    assert bad_sort.returncode == 2 and "unknown sort" in bad_sort.stderr
