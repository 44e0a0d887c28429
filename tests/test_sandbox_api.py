"""Sandboxes through REST, the REPL WebSocket and the CLI, against real sandbox nodes.

One pubsub sandbox is shared by the REST and WebSocket tests (a module-scoped fixture that
destroys it); the tests that destroy a sandbox, and the CLI test, make their own. Every
sandbox is destroyed at the end even when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.sandbox.generator import render_project
from arsenal.sandbox.manager import SandboxError, SandboxManager
from arsenal.sandbox.templates import template
from arsenal.store import default_home

pytestmark = pytest.mark.timeout(120)

BASE = "http://arsenal.test"
SANDBOXES = "/api/v1/sandboxes"


class Api:
    """The app over one Arsenal service, its client, and the shared pubsub sandbox's id."""

    def __init__(
        self, service: Arsenal, app: Any, client: httpx.AsyncClient, sandbox: str, created: Any
    ) -> None:
        self.service = service
        self.app = app
        self.client = client
        self.sandbox = sandbox
        self.created = created
        self.owned: list[str] = [sandbox]

    @property
    def manager(self) -> SandboxManager:
        return self.service.services.get(SandboxManager)

    async def inject(self, code: str, **extra: Any) -> httpx.Response:
        return await self.client.post(f"{SANDBOXES}/{self.sandbox}/inject", json={"code": code, **extra})

    async def value(self, code: str) -> str:
        """The rendered value of ``code`` in the shared sandbox (which must succeed)."""
        response = await self.inject(code)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["ok"] is True, data
        return data["value"]


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api() -> AsyncIterator[Api]:
    service = Arsenal()
    app = create_app(service, auth=False)
    sandbox = _new_id("t5pubsub")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=120) as client:
        created = await client.post(SANDBOXES, json={"sandbox_id": sandbox, "template": "pubsub"})
        state = Api(service, app, client, sandbox, created)
        try:
            yield state
        finally:
            for owned in state.owned:
                with contextlib.suppress(SandboxError):
                    await state.manager.destroy(owned)
            await service.close()


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["errors"][0]
    assert error["code"] == code and error["status"] == str(status), error
    assert error["detail"] and "Traceback" not in response.text
    return error


# ---------------------------------------------------------------------- REST


async def test_create_list_and_info(api: Api) -> None:
    assert api.created.status_code == 200, api.created.text
    created = api.created.json()["data"]
    assert created["sandbox_id"] == api.sandbox and created["status"] == "running"
    assert created["template"] == "pubsub" and created["language"] == "elixir"
    assert created["node"].startswith(f"arsenal_sbx_{api.sandbox}_")

    listed = await api.client.get(SANDBOXES)
    assert listed.status_code == 200, listed.text
    rows = {row["sandbox_id"]: row for row in listed.json()["data"]["sandboxes"]}
    assert rows[api.sandbox]["status"] == "running" and rows[api.sandbox]["template"] == "pubsub"

    info = await api.client.get(f"{SANDBOXES}/{api.sandbox}")
    assert info.status_code == 200, info.text
    data = info.json()["data"]
    assert data["sandbox"]["status"] == "running"
    assert data["usage"]["process_count"] > 10 and data["usage"]["memory_bytes"] > 0
    assert data["usage"]["process_limit"] == data["limits"]["max_processes"]
    assert "pubsub" in {app["name"] for app in data["applications"]}
    modules = {m["module"]: m for m in data["modules"]}
    assert {"PubSub.Broker", "PubSub.Recorder", "PubSub.Root", "PubSub.Application"} <= set(modules)
    assert modules["PubSub.Broker"]["versions"] >= 1
    assert data["processes"] and len(data["processes"]) <= 20
    assert all(p["pid"].startswith("<0.") and p["memory"] > 0 for p in data["processes"])


async def test_inject_binding_output_and_errors(api: Api) -> None:
    ran = await api.inject('IO.puts("hello from the sandbox")\nx + 1', binding={"x": 41})
    assert ran.status_code == 200, ran.text
    data = ran.json()["data"]
    assert data["ok"] is True and data["value"] == "42" and data["value_json"] == 42
    assert data["output"] == "hello from the sandbox\n"
    assert data["binding"]["x"] == "41" and data["error"] is None

    broken = await api.inject("y = 1\nz = (y +\n)")
    assert broken.status_code == 200, broken.text
    failed = broken.json()["data"]
    assert failed["ok"] is False and failed["value"] is None
    assert failed["error"]["kind"] == "syntax" and failed["error"]["line"] == 3

    refused = _error(await api.inject('a = 1\nSystem.cmd("ls", [])'), 403, "forbidden")
    findings = refused["meta"]["findings"]
    assert [(f["call"], f["line"]) for f in findings] == [("System.cmd/2", 2)]
    assert "System.cmd/2" in refused["detail"] and "nothing ran" in refused["detail"]

    slow = await api.inject("receive do\n  :never -> :ok\nafter\n  60_000 -> :x\nend", timeout_ms=300)
    assert "300 ms" in _error(slow, 504, "timeout")["detail"]
    assert await api.value("Enum.sum([1, 2, 3])") == "6"


async def test_hot_swap_keeps_state_then_versions_and_rollback(api: Api) -> None:
    base = f"{SANDBOXES}/{api.sandbox}/modules/PubSub.Recorder"
    recorder = render_project(template("pubsub"))["lib/pubsub/recorder.ex"]
    old_handler = "def handle_call(:seen, _from, state) do\n    {:reply, state.seen, state}"
    assert old_handler in recorder
    changed = recorder.replace(
        old_handler, "def handle_call(:seen, _from, state) do\n    {:reply, {:v2, state.seen}, state}"
    )

    pid = await api.value("inspect(Process.whereis(PubSub.Recorder))")
    published = await api.value(
        "for n <- 1..3, do: PubSub.Broker.publish(:news, n)\nPubSub.Recorder.events()"
    )
    assert published == "[news: 1, news: 2, news: 3]"
    seen = int(await api.value("PubSub.Recorder.seen()"))
    assert seen >= 3

    swapped = await api.client.post(f"{base}/reload", json={"source": changed})
    assert swapped.status_code == 200, swapped.text
    report = swapped.json()["data"]
    assert report["module"] == "PubSub.Recorder" and report["version"] == 2
    assert report["exports_removed"] == [] and report["killed"] == []
    assert [p["pid"] for p in report["processes"]] == [json.loads(pid).removeprefix("#PID")]
    # The new code answers, from the state the process had before the swap.
    assert await api.value("PubSub.Recorder.seen()") == f"{{:v2, {seen}}}"
    assert await api.value("inspect(Process.whereis(PubSub.Recorder))") == pid
    assert await api.value("length(PubSub.Recorder.events())") == "3"

    bad = changed.replace("{:reply, {:v2, state.seen}, state}", "{:reply, no_such_variable, state}")
    refused = _error(await api.client.post(f"{base}/reload", json={"source": bad}), 422, "validation_error")
    assert refused["meta"]["stage"] == "compile"
    lines = [e["line"] for e in refused["meta"]["errors"]]
    assert bad.splitlines().index("    {:reply, no_such_variable, state}") + 1 in lines
    assert await api.value("PubSub.Recorder.seen()") == f"{{:v2, {seen}}}"  # still version 2

    versions = await api.client.get(f"{base}/versions")
    assert versions.status_code == 200, versions.text
    listed = versions.json()["data"]["versions"]
    assert [(v["version"], v["note"], v["current"]) for v in listed] == [
        (1, "initial", False),
        (2, "hot swap", True),
    ]
    assert listed[0]["md5"] != listed[1]["md5"]

    rolled = await api.client.post(f"{base}/rollback", json={"version": 1})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["data"]["version"] == 3
    assert await api.value("PubSub.Recorder.seen()") == str(seen)
    after = (await api.client.get(f"{base}/versions")).json()["data"]["versions"]
    assert [v["note"] for v in after] == ["initial", "hot swap", "rollback to v1"]
    assert after[2]["md5"] == listed[0]["md5"]
    _error(await api.client.post(f"{base}/rollback", json={"version": 9}), 404, "not_found")


async def test_unknown_duplicate_and_invalid_sandboxes(api: Api) -> None:
    for answer in (
        await api.client.get(f"{SANDBOXES}/nosuch_box"),
        await api.client.delete(f"{SANDBOXES}/nosuch_box"),
        await api.client.post(f"{SANDBOXES}/nosuch_box/inject", json={"code": "1"}),
    ):
        assert "nosuch_box" in _error(answer, 404, "not_found")["detail"]

    again = await api.client.post(SANDBOXES, json={"sandbox_id": api.sandbox, "template": "pubsub"})
    assert "destroy it first" in _error(again, 409, "conflict")["detail"]
    bad_id = await api.client.post(SANDBOXES, json={"sandbox_id": "Bad-Id", "template": "pubsub"})
    assert _error(bad_id, 422, "validation_error")["meta"]["errors"][0]["field"] == "sandbox_id"
    unknown = await api.client.post(SANDBOXES, json={"sandbox_id": _new_id("t5x"), "template": "nope"})
    detail = _error(unknown, 422, "validation_error")["detail"]
    assert "nope" in detail and all(
        name in detail for name in ("worker_pool", "pubsub", "pipeline", "cascade")
    )
    # The shared sandbox is unaffected by the refused create.
    assert (await api.client.get(f"{SANDBOXES}/{api.sandbox}")).json()["data"]["sandbox"][
        "status"
    ] == "running"


async def test_delete_stops_the_node_and_removes_its_directory(api: Api) -> None:
    sandbox = _new_id("t5del")
    api.owned.append(sandbox)
    created = await api.client.post(SANDBOXES, json={"sandbox_id": sandbox})
    assert created.status_code == 200, created.text
    directory = default_home() / "sandboxes" / sandbox
    assert directory.is_dir()
    os_pid = api.manager.get(sandbox).os_pid
    assert os_pid is not None

    deleted = await api.client.delete(f"{SANDBOXES}/{sandbox}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"]["stop_reason"] == "destroyed"
    _error(await api.client.get(f"{SANDBOXES}/{sandbox}"), 404, "not_found")
    assert not directory.exists()
    assert sandbox not in {
        s["sandbox_id"] for s in (await api.client.get(SANDBOXES)).json()["data"]["sandboxes"]
    }
    with pytest.raises(ProcessLookupError):
        os.kill(os_pid, 0)


async def test_openapi_lists_the_sandbox_paths(api: Api) -> None:
    document = (await api.client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    assert {"post", "get"} <= set(paths[SANDBOXES])
    assert {"get", "delete"} <= set(paths[f"{SANDBOXES}/{{sandbox_id}}"])
    for tail in ("inject", "restart", "execute"):
        assert "post" in paths[f"{SANDBOXES}/{{sandbox_id}}/{tail}"]
    for tail in ("reload", "rollback"):
        assert "post" in paths[f"{SANDBOXES}/{{sandbox_id}}/modules/{{module}}/{tail}"]
    assert "get" in paths[f"{SANDBOXES}/{{sandbox_id}}/modules/{{module}}/versions"]


# ---------------------------------------------------------------------- the REPL WebSocket


@contextlib.asynccontextmanager
async def _repl(api: Api, sandbox: str) -> AsyncIterator[Any]:
    """A WebSocket to the sandbox's REPL (its own transport: it runs tasks of the test's own)."""
    async with (
        ASGIWebSocketTransport(app=api.app) as transport,
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
        aconnect_ws(f"{BASE}{SANDBOXES}/{sandbox}/repl", client) as ws,
    ):
        yield ws


async def test_repl_websocket_session(api: Api) -> None:
    async with _repl(api, api.sandbox) as ws:
        ready = await ws.receive_json(timeout=10)
        assert ready == {"type": "ready", "sandbox_id": api.sandbox, "language": "elixir"}

        await ws.send_json({"input": "x = 2"})
        assert (await ws.receive_json(timeout=10))["text"] == "2"
        await ws.send_json({"input": "x * 21"})
        answer = await ws.receive_json(timeout=10)
        assert answer["type"] == "result" and answer["text"] == "42"

        await ws.send_json({"input": "defmodule Foo do"})
        assert await ws.receive_json(timeout=10) == {"type": "incomplete"}
        await ws.send_json({"input": "  def twice(n), do: n * 2"})
        assert await ws.receive_json(timeout=10) == {"type": "incomplete"}
        await ws.send_json({"input": "end"})
        defined = await ws.receive_json(timeout=10)
        assert defined["type"] == "result" and defined["text"].startswith("{:module, Foo, <<"), defined
        await ws.send_json({"input": "Foo.twice(x)"})
        assert (await ws.receive_json(timeout=10))["text"] == "4"

        await ws.send_json({"complete": "Enu"})
        completions = await ws.receive_json(timeout=10)
        assert completions["type"] == "completions"
        assert any(item.startswith("Enum") for item in completions["items"]), completions
        assert "Enum" in [item.split("/")[0] for item in completions["items"]]

        await ws.send_json({"input": ":help"})
        magic = await ws.receive_json(timeout=10)
        assert magic["type"] == "magic" and ":versions Mod" in magic["text"]

        await ws.send_text("not json")
        bad = await ws.receive_json(timeout=10)
        assert bad["type"] == "error" and bad["errors"][0]["code"] == "validation_error"
        await ws.send_json({"what": 1})
        assert (await ws.receive_json(timeout=10))["errors"][0]["code"] == "validation_error"

        await ws.send_json({"input": 'System.cmd("ls", [])'})
        refused = await ws.receive_json(timeout=10)
        assert refused["type"] == "error" and "System.cmd/2" in refused["text"]
        await ws.send_json({"input": "x"})  # the session and its bindings survive the errors
        assert (await ws.receive_json(timeout=10))["text"] == "2"


async def test_repl_websocket_unknown_sandbox_errors_then_closes(api: Api) -> None:
    async with _repl(api, "nosuch_box") as ws:
        message = await ws.receive_json(timeout=10)
        assert message["type"] == "error" and message["errors"][0]["code"] == "not_found"
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json(timeout=10)
        assert closed.value.code == 1008  # policy violation: there is no such sandbox


# ---------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_home(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An ARSENAL_HOME of its own for the CLI's sandboxes; any left at the end are destroyed."""
    env = {**os.environ, "ARSENAL_HOME": str(tmp_path / "home")}
    yield env
    for row in json.loads(_arsenal(env, "sandbox", "list", "--json").stdout or "{}").get("sandboxes", []):
        _arsenal(env, "sandbox", "destroy", row["sandbox_id"])


def _arsenal(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=90,
    )


def test_cli_sandbox_lifecycle_eval_reload_and_repl(cli_home: dict[str, str], tmp_path: Path) -> None:
    sandbox = _new_id("t5cli")

    def arsenal(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return _arsenal(cli_home, *args, stdin=stdin)

    created = arsenal("sandbox", "create", sandbox, "--template", "worker_pool", "--lifetime", "5m")
    assert created.returncode == 0, created.stdout + created.stderr
    assert f"sandbox {sandbox} is running" in created.stdout

    listed = arsenal("sandbox", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(sandbox))
    assert "running" in row and "worker_pool" in row

    info = arsenal("sandbox", "info", sandbox)
    assert info.returncode == 0, info.stderr
    assert "running" in info.stdout and "of 300 s" in info.stdout
    assert "app worker_pool" in info.stdout and "module WorkerPool.Dispatcher v1" in info.stdout

    ran = arsenal("sandbox", "eval", sandbox, 'IO.puts("out")\nWorkerPool.Dispatcher.run(fn -> 6 * 7 end)')
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("out\n") and ran.stdout.endswith("\n{:ok, 42, 1}\n")
    refused = arsenal("sandbox", "eval", sandbox, 'System.cmd("ls", [])')
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "System.cmd/2" in refused.stderr

    dispatcher = render_project(template("worker_pool"))["lib/worker_pool/dispatcher.ex"]
    old = "      workers: length(workers())\n"
    assert old in dispatcher
    source = tmp_path / "dispatcher.ex"
    source.write_text(dispatcher.replace(old, old.replace("\n", ",\n") + "      version: 2\n"))
    reloaded = arsenal("sandbox", "reload", sandbox, "WorkerPool.Dispatcher", str(source))
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    assert "WorkerPool.Dispatcher is now v2" in reloaded.stdout and "state kept" in reloaded.stdout
    stats = arsenal(
        "sandbox", "eval", sandbox, "s = WorkerPool.Dispatcher.stats()\n{s.version, s.dispatched}"
    )
    assert stats.returncode == 0 and stats.stdout.strip() == "{2, 1}", stats.stdout + stats.stderr

    versions = arsenal("sandbox", "versions", sandbox, "WorkerPool.Dispatcher")
    assert versions.returncode == 0, versions.stderr
    lines = versions.stdout.splitlines()
    assert len(lines) == 2 and "v1" in lines[0] and "initial" in lines[0]
    assert lines[1].startswith("* v2") and "hot swap" in lines[1]

    session = arsenal("repl", sandbox, stdin="x = 1\nx + 1\n")
    assert session.returncode == 0, session.stdout + session.stderr
    assert session.stdout.splitlines() == ["1", "2"]

    destroyed = arsenal("sandbox", "destroy", sandbox)
    assert destroyed.returncode == 0 and f"sandbox {sandbox} destroyed" in destroyed.stdout
    gone = arsenal("sandbox", "info", sandbox)
    assert gone.returncode == 3, gone.stdout + gone.stderr
    assert f"no sandbox {sandbox}" in gone.stderr
