"""set_process_state and checkpoints against real nodes: the Elixir demo's StatefulWorker and
EventWorker (fresh instances started for each test, so the shared demo is untouched) and
throwaway Erlang nodes for ETS tables."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom, RpcError
from arsenal.ops.errors import ErrorCode

from .helpers import eval_erlang, fails
from .nodes import BeamNode


@pytest.fixture
async def service(elixir: BeamNode, cookie: str) -> AsyncIterator[Arsenal]:
    async with Arsenal(cookie=cookie) as arsenal:
        await arsenal.attach(elixir.name)
        yield arsenal


async def ex(service: Arsenal, code: str) -> Any:
    """Evaluate Elixir on the demo node (test set-up) and return the value's text."""
    result = await service.run("evaluate_code", {"code": code, "language": "elixir"})
    assert result.ok, result.error
    return result.value


async def start_worker(service: Arsenal, initial: int = 5) -> str:
    name = f"state_test_{secrets.token_hex(3)}"
    await ex(
        service,
        f"{{:ok, _}} = GenServer.start(ArsenalDemo.StatefulWorker, [name: :{name}, initial: {initial}], "
        f"name: :{name}); :ok",
    )
    return name


async def counter(service: Arsenal, name: str) -> str:
    return await ex(service, f":sys.get_state(:{name}).counter")


async def test_set_state_three_ways(service: Arsenal) -> None:
    name = await start_worker(service, 5)
    partial = await service.run(
        "set_process_state",
        {
            "pid": name,
            "state": "42",
            "format": "elixir",
            "merge_strategy": "partial_update",
            "path": "counter",
        },
    )
    assert await counter(service, name) == "42"
    assert partial.backup.startswith("backup-") and partial.module == "Elixir.ArsenalDemo.StatefulWorker"
    assert [(c["path"], c["old"], c["new"]) for c in partial.changes] == [(["counter"], "5", "42")]
    assert "counter: 5" in partial.old_state

    merged = await service.run(
        "set_process_state",
        {
            "pid": name,
            "state": '%{counter: 7, snapshots: %{"a" => 1}}',
            "format": "elixir",
            "merge_strategy": "deep_merge",
        },
    )
    assert await counter(service, name) == "7"
    assert await ex(service, f":sys.get_state(:{name}).snapshots") == '%{"a" => 1}'
    assert {tuple(c["path"]) for c in merged.changes} == {("counter",), ("snapshots", "a")}

    current = (await service.run("get_genserver_state", {"pid": name})).state_json
    for pair in current["$map"]:  # tagged JSON: atom keys are written as [{"$atom": k}, v] pairs
        if pair[0] == {"$atom": "counter"}:
            pair[1] = 99
    replaced = await service.run("set_process_state", {"pid": name, "state": current, "format": "json"})
    assert await counter(service, name) == "99" and replaced.merge_strategy == "replace"

    erlang = await service.run(
        "set_process_state",
        {
            "pid": name,
            "state": "100",
            "format": "erlang",
            "merge_strategy": "partial_update",
            "path": ["counter"],
        },
    )
    assert await counter(service, name) == "100" and erlang.changes[0]["old"] == "99"
    backups = await service.run("list_checkpoints", {"pid": name})
    assert len([c for c in backups.checkpoints if c.name.startswith("backup-")]) == 4


async def test_a_state_reads_as_the_nodes_own_elixir_prints_it(service: Arsenal) -> None:
    """Charlists are ``~c"abc"`` from Elixir 1.15 on and ``'abc'`` before: shown as the node's release
    prints them, whichever the node runs."""
    name = f"charlists_{secrets.token_hex(3)}"
    state = '{~c"abc", [~c"it\'s", ~c"say \\"hi\\""], [7, 8]}'
    await ex(service, f"{{:ok, _}} = Agent.start(fn -> {state} end, name: :{name}); :ok")
    try:
        node = service.pool.get()
        release = await node.call("Elixir.System", "version")
        assert node.info.elixir_version == release.decode()
        shown = (await service.run("get_genserver_state", {"pid": name})).state
        term = await node.call("sys", "get_state", [Atom(name)])
        assert shown == (await node.call("Elixir.Kernel", "inspect", [term])).decode()
    finally:
        await ex(service, f"Agent.stop(:{name})")


async def test_bad_states_leave_the_process_untouched(service: Arsenal) -> None:
    name = await start_worker(service, 3)
    node = service.pool.get()
    atom = f"zz_never_{secrets.token_hex(4)}"
    error = await fails(
        ErrorCode.validation_error,
        service.run(
            "set_process_state",
            {"pid": name, "state": f"%{{{atom}: 1}}", "format": "elixir", "merge_strategy": "deep_merge"},
        ),
    )
    assert atom in error.message
    with pytest.raises(RpcError):
        await node.call("erlang", "binary_to_existing_atom", [atom.encode(), Atom("utf8")])
    error = await fails(
        ErrorCode.validation_error,
        service.run("set_process_state", {"pid": name, "state": "%{counter: ", "format": "elixir"}),
    )
    assert "does not parse" in error.message
    error = await fails(
        ErrorCode.validation_error,
        service.run(
            "set_process_state",
            {
                "pid": name,
                "state": "1",
                "format": "elixir",
                "merge_strategy": "partial_update",
                "path": "nope.deeper",
            },
        ),
    )
    assert "nope" in error.message
    schema = {"type": "object", "properties": {"counter": {"type": "integer", "maximum": 10}}}
    error = await fails(
        ErrorCode.validation_error,
        service.run(
            "set_process_state",
            {
                "pid": name,
                "state": "50",
                "format": "elixir",
                "merge_strategy": "partial_update",
                "path": "counter",
                "json_schema": schema,
            },
        ),
    )
    assert "schema" in error.message and "counter" in error.message
    assert await counter(service, name) == "3"
    ok = await service.run(
        "set_process_state",
        {
            "pid": name,
            "state": "9",
            "format": "elixir",
            "merge_strategy": "partial_update",
            "path": "counter",
            "json_schema": schema,
        },
    )
    assert ok.changes[0]["new"] == "9"

    plain = f"plain_{secrets.token_hex(3)}"
    await ex(service, f"Process.register(spawn(fn -> Process.sleep(:infinity) end), :{plain}); :ok")
    error = await fails(
        ErrorCode.validation_error, service.run("set_process_state", {"pid": plain, "state": 1})
    )
    assert ":sys-compliant" in error.message
    await fails(
        ErrorCode.protected_process, service.run("set_process_state", {"pid": "code_server", "state": 1})
    )
    await fails(
        ErrorCode.not_found, service.run("set_process_state", {"pid": "no_such_process_x", "state": 1})
    )


async def test_checkpoints_diff_rollback_and_delete(service: Arsenal) -> None:
    name = await start_worker(service, 1)
    made = await service.run("create_checkpoint", {"pid": name, "name": "first"})
    assert made.target == name and made.module == "Elixir.ArsenalDemo.StatefulWorker"
    assert made.info["message_queue_len"] == 0 and "links" in made.info
    await fails(ErrorCode.conflict, service.run("create_checkpoint", {"pid": name, "name": "first"}))
    await ex(service, f"ArsenalDemo.StatefulWorker.increment(:{name}, 10)")
    diff = await service.run("diff_checkpoints", {"pid": name, "name": "first"})
    paths = {tuple(c["path"]) for c in diff.changes}
    assert ("counter",) in paths and any(p[0] == "history" for p in paths)
    shown = await service.run("get_checkpoint", {"pid": name, "name": "first"})
    assert "counter: 1" in shown.state and shown.state_json is not None
    back = await service.run("rollback_to_checkpoint", {"pid": name, "name": "first"})
    assert await counter(service, name) == "1" and back.backup.startswith("backup-")
    assert (await service.run("diff_checkpoints", {"pid": name, "name": "first"})).changes == []
    second = await service.run("create_checkpoint", {"pid": name, "name": "second"})
    between = await service.run("diff_checkpoints", {"pid": name, "name": "first", "against": "second"})
    assert between.changes == [] and second.name == "second"
    names = [c.name for c in (await service.run("list_checkpoints", {"pid": name})).checkpoints]
    assert {"first", "second"} <= set(names)
    history = await service.run("get_process_history", {"pid": name})
    listed = [(e["source"], e.get("name")) for e in history.events]
    assert ("checkpoint", "second") in listed and ("checkpoint", "first") in listed
    times = [e["time_us"] for e in history.events]
    assert times == sorted(times, reverse=True)
    await service.run("delete_checkpoint", {"pid": name, "name": "second"})
    await fails(ErrorCode.not_found, service.run("get_checkpoint", {"pid": name, "name": "second"}))


async def test_rollback_refuses_another_modules_checkpoint(service: Arsenal) -> None:
    name = await start_worker(service, 1)
    await service.run("create_checkpoint", {"pid": name, "name": "mine"})
    # The name now belongs to an EventWorker: the checkpoint's state does not fit it.
    await ex(
        service,
        f"GenServer.stop(:{name}); {{:ok, _}} = GenServer.start(ArsenalDemo.EventWorker, [name: :{name}], "
        f"name: :{name}); :ok",
    )
    before = await ex(service, f":sys.get_state(:{name}) |> :erlang.phash2()")
    error = await fails(
        ErrorCode.conflict, service.run("rollback_to_checkpoint", {"pid": name, "name": "mine"})
    )
    assert "StatefulWorker" in error.message and "EventWorker" in error.message
    assert await ex(service, f":sys.get_state(:{name}) |> :erlang.phash2()") == before


async def test_ets_checkpoint_and_restore(make_node: Callable[..., BeamNode], cookie: str) -> None:
    target = make_node("ets")
    async with Arsenal(cookie=cookie) as service:
        await service.attach(target.name)
        await eval_erlang(
            service,
            target.name,
            "Self = self(), spawn(fun() -> ets:new(cp_public, [named_table, public]), "
            "ets:new(cp_protected, [named_table, protected]), ets:insert(cp_public, [{a, 1}, {b, 2}]), "
            "Self ! ready, receive stop -> ok end end), receive ready -> ok end",
        )
        made = await service.run("checkpoint_ets_table", {"table": "cp_public", "name": "two"})
        assert made.kind == "ets" and made.info["size"] == 2
        await eval_erlang(service, target.name, "ets:delete(cp_public, a), ets:insert(cp_public, {c, 3})")
        restored = await service.run("restore_ets_table", {"table": "cp_public", "name": "two"})
        assert restored.rows == 2
        rows = await eval_erlang(service, target.name, "lists:sort(ets:tab2list(cp_public))")
        assert rows == [(Atom("a"), 1), (Atom("b"), 2)]
        await service.run("checkpoint_ets_table", {"table": "cp_protected", "name": "p"})
        error = await fails(
            ErrorCode.forbidden, service.run("restore_ets_table", {"table": "cp_protected", "name": "p"})
        )
        assert "owner" in error.message
        await fails(ErrorCode.not_found, service.run("checkpoint_ets_table", {"table": "no_such_table_q"}))
        await fails(
            ErrorCode.limit_exceeded,
            service.run("checkpoint_ets_table", {"table": "cp_public", "max_bytes": 1024}),
        )


async def test_rest_and_cli(service: Arsenal, elixir: BeamNode, cookie: str) -> None:
    name = await start_worker(service, 2)
    app = create_app(service, auth=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://arsenal") as client:
        put = await client.put(
            f"/api/v1/processes/{name}/state",
            json={"state": "%{counter: 11}", "format": "elixir", "merge_strategy": "deep_merge"},
        )
        assert put.status_code == 200, put.text
        assert put.json()["data"]["changes"][0]["new"] == "11"
        made = await client.post(f"/api/v1/processes/{name}/checkpoint", json={"name": "rest"})
        assert made.status_code == 200, made.text
        listed = await client.get(f"/api/v1/processes/{name}/checkpoints")
        assert "rest" in [c["name"] for c in listed.json()["data"]["checkpoints"]]
        bad = await client.put(f"/api/v1/processes/{name}/state", json={"state": "%{", "format": "elixir"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "validation_error"
        back = await client.post(f"/api/v1/processes/{name}/checkpoints/rest/rollback", json={})
        assert back.status_code == 200, back.text

    env = {**os.environ, "ARSENAL_NODE": elixir.name}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arsenal", *args, "--cookie", cookie],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    done = cli("state-set", name, "5", "--merge", "partial_update", "--path", "counter")
    assert done.returncode == 0, done.stderr
    assert "backup checkpoint" in done.stdout and "counter: 11 -> 5" in done.stdout
    assert cli("checkpoint", name, "--name", "cli").returncode == 0
    assert cli("state-set", name, "6", "--merge", "partial_update", "--path", "counter").returncode == 0
    diff = cli("checkpoint-diff", name, "cli")
    assert diff.returncode == 0 and "counter: 5 -> 6" in diff.stdout
    rolled = cli("rollback", name, "cli", "--json")
    assert rolled.returncode == 0 and json.loads(rolled.stdout)["merge_strategy"] == "rollback"
    assert await counter(service, name) == "5"
    bad = cli("state-set", name, "%{x:", "--merge", "deep_merge")
    assert bad.returncode == 2 and "does not parse" in bad.stderr
