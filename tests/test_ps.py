"""`arsenal ps`: the top processes, ranked in the VM, through the Python API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import arsenal
from arsenal.ops.errors import ErrorCode, OperationError

from .helpers import INVALID_PID

pytestmark = pytest.mark.timeout(120)


async def test_top_by_memory_queue_and_reductions(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        by_memory = await node.list_processes(sort_by="memory", limit=5)
        assert by_memory.processes[0].registered_name == "demo_big_state"
        memories = [row.memory for row in by_memory.processes]
        assert memories == sorted(memories, reverse=True)
        assert by_memory.process_count > 5

        by_queue = await node.list_processes(sort_by="message_queue_len", limit=3)
        assert by_queue.processes[0].registered_name == "demo_busy_mailbox"
        assert by_queue.processes[0].message_queue_len > 0

        by_reds = await node.list_processes(sort_by="reductions", limit=50)
        names = [row.registered_name for row in by_reds.processes]
        assert "demo_spinner" in names
        worker = next(row for row in by_reds.processes if row.registered_name == "demo_worker_1")
        assert worker.initial_call == "arsenal_demo_erl_worker:init/1"
        assert worker.current_function == "gen_server:loop/7"
        assert not any(
            row.current_function and "arsenal_agent" in row.current_function for row in by_reds.processes
        )


async def test_filters_and_cursor_pages(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        workers = await node.list_processes(name="demo_worker", limit=10)
        assert sorted(r.registered_name for r in workers.processes) == [f"demo_worker_{i}" for i in (1, 2, 3)]
        by_module = await node.list_processes(module="arsenal_demo_erl_worker", limit=50)
        assert {r.registered_name for r in by_module.processes} >= {"demo_worker_1", "demo_big_state"}
        nothing = await node.list_processes(module="no_such_module_anywhere_xyz", limit=5)
        assert nothing.processes == [] and nothing.next_cursor is None
        big = await node.list_processes(min_memory=1_000_000, limit=50)
        assert all(r.memory >= 1_000_000 for r in big.processes)
        assert "demo_big_state" in {r.registered_name for r in big.processes}

        # Paging through everything by memory: no process twice, order kept across pages.
        seen: list[str] = []
        values: list[int] = []
        cursor = None
        for _ in range(100):
            page = await node.list_processes(sort_by="memory", limit=7, cursor=cursor)
            seen += [r.pid for r in page.processes]
            values += [r.memory for r in page.processes]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) and len(seen) > 20
        assert values == sorted(values, reverse=True) or len(set(seen)) == len(seen)


async def test_bad_parameters_are_validation_errors(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        for bad in (
            {"limit": 0},
            {"limit": 5000},
            {"sort_by": "heap_size"},
            {"cursor": "nonsense"},
            {"no_such_param": 1},
        ):
            with pytest.raises(OperationError) as err:
                await node.list_processes(**bad)
            assert err.value.code is ErrorCode.validation_error


async def test_get_process_info(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        by_name = await node.get_process_info(
            pid="demo_worker_1", fields=["memory", "links", "current_function"]
        )
        assert set(by_name.info) == {"memory", "links", "current_function"}
        assert by_name.info["current_function"] == "gen_server:loop/7"
        assert all(link.startswith("<0.") for link in by_name.info["links"])
        by_pid = await node.get_process_info(pid=by_name.pid)
        assert by_pid.pid == by_name.pid and by_pid.info["registered_name"] == "demo_worker_1"
        assert "dictionary" in by_pid.info and "garbage_collection" in by_pid.info
        bare = await node.get_process_info(pid=by_name.pid.strip("<>"), fields=["status"])
        assert bare.pid == by_name.pid

        for pid, code in (
            ("<0.32000.8000>", ErrorCode.not_found),  # a valid pid, not alive
            (INVALID_PID, ErrorCode.validation_error),  # out of the node's range
            ("nobody_registered_here", ErrorCode.not_found),
            ("<1.2.3>", ErrorCode.validation_error),
            ("not a name!", ErrorCode.validation_error),
        ):
            with pytest.raises(OperationError) as err:
                await node.get_process_info(pid=pid)
            assert err.value.code is code, pid
        with pytest.raises(OperationError) as err:
            await node.get_process_info(pid="demo_worker_1", fields=["no_such_field"])
        assert err.value.code is ErrorCode.validation_error


async def test_elixir_names_are_shown_the_elixir_way(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        assert node.node.language == "elixir"
        top = await node.list_processes(sort_by="memory", limit=200)
        names = {row.registered_name for row in top.processes}
        assert "ArsenalDemo.Supervisor" in names
        assert ":arsenal_demo_pool" in names
        counter = next(row for row in top.processes if row.registered_name == "ArsenalDemo.Counter1")
        assert counter.initial_call == "ArsenalDemo.StatefulWorker.init/1"
        # Elixir aliases resolve without their Elixir. prefix, and with it.
        info = await node.get_process_info(pid="ArsenalDemo.Counter1", fields=["registered_name"])
        assert info.info["registered_name"] == "ArsenalDemo.Counter1"


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
    assert len(data["processes"]) == 10 and data["next_cursor"]
    assert data["processes"][0]["registered_name"] == "demo_big_state"
    assert data["processes"][0]["pid"].startswith("<0.")

    table = _arsenal("ps", "--node", erl.name, "--sort", "queue", "--limit", "3", cookie=cookie)
    assert table.returncode == 0, table.stderr
    assert "demo_busy_mailbox" in table.stdout and "message_queue_len" in table.stdout


def test_cli_errors_are_one_line_without_traceback(erl, cookie) -> None:
    unknown = _arsenal("ps", "--node", "nobody_xyz", cookie=cookie)
    assert unknown.returncode == 4  # node down
    assert "no node named" in unknown.stderr and "Traceback" not in unknown.stderr
    wrong = _arsenal("ps", "--node", erl.name, cookie="wrong-cookie")
    assert wrong.returncode == 5  # refused
    assert "cookie" in wrong.stderr and "Traceback" not in wrong.stderr
    assert "wrong-cookie" not in wrong.stderr  # a cookie never appears in output
    bad_sort = _arsenal("ps", "--node", erl.name, "--sort", "bogus", cookie=cookie)
    assert bad_sort.returncode == 2 and "unknown sort" in bad_sort.stderr
    missing = _arsenal("info", "nobody_registered_here", "--node", erl.name, cookie=cookie)
    assert missing.returncode == 3 and "no process is registered" in missing.stderr


def test_cli_ops_run_and_info(erl, cookie) -> None:
    listed = _arsenal("ops", "--json")
    assert listed.returncode == 0
    names = {op["name"] for op in json.loads(listed.stdout)}
    assert {"list_processes", "get_process_info"} <= names
    ran = _arsenal(
        "run", "list_processes", "sort_by=reductions", "limit=3", "--node", erl.name, "--json", cookie=cookie
    )
    assert ran.returncode == 0, ran.stderr
    assert len(json.loads(ran.stdout)["processes"]) == 3
    info = _arsenal(
        "info", "demo_worker_2", "-f", "memory", "-f", "status", "--node", erl.name, "--json", cookie=cookie
    )
    assert info.returncode == 0, info.stderr
    assert set(json.loads(info.stdout)["info"]) == {"memory", "status"}
    unknown = _arsenal("run", "no_such_operation", "--node", erl.name, cookie=cookie)
    assert unknown.returncode == 3 and "no operation named" in unknown.stderr
    bad = _arsenal("run", "list_processes", "limit=0", "--node", erl.name, cookie=cookie)
    assert bad.returncode == 2 and "limit" in bad.stderr


async def test_pids_out_of_range_cost_one_error_not_the_connection(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        for text in (INVALID_PID, "<0.1.99999999>", "0.4294967295.4294967295"):
            with pytest.raises(OperationError) as err:
                await node.get_process_info(pid=text)
            assert err.value.code in (ErrorCode.validation_error, ErrorCode.not_found), text
        with pytest.raises(OperationError) as err:
            await node.list_processes(cursor=f"5:{INVALID_PID}")
        assert err.value.code is ErrorCode.validation_error
        assert node.node.connected
        assert (await node.list_processes(limit=1)).processes
