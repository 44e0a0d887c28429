"""The REST + WebSocket API, against real nodes, in the session's event loop (httpx + ASGITransport)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from openapi_spec_validator import validate

from arsenal.api import RouteConflict, create_app
from arsenal.api.batch import MAX_BATCH
from arsenal.api.routes import plan_routes
from arsenal.api.ws import TASK_PREFIX
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.base import Context, NoParams, Operation, Result
from arsenal.ops.registry import Registry, registry

pytestmark = pytest.mark.timeout(120)

BASE = "http://arsenal.test"


class Api:
    def __init__(self, service: Arsenal, client: httpx.AsyncClient, node: str) -> None:
        self.service = service
        self.client = client
        self.node = node


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(erl, cookie) -> AsyncIterator[Api]:
    service = Arsenal(cookie=cookie)
    await service.attach(erl.name, reconnect=False)
    app = create_app(service, auth=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield Api(service, client, erl.name)
    await service.close()


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"errors"} and "data" not in body
    error = body["errors"][0]
    assert error["code"] == code and error["status"] == str(status)
    assert error["title"] and error["detail"] and isinstance(error["meta"], dict)
    assert "Traceback" not in response.text
    return error


async def test_list_processes_query_params_and_cursor_links(api: Api) -> None:
    response = await api.client.get("/api/v1/processes", params={"sort_by": "memory", "limit": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["operation"] == "list_processes" and body["meta"]["node"] == api.node
    assert body["meta"]["duration_ms"] >= 0
    assert len(body["data"]["processes"]) == 5
    assert body["data"]["processes"][0]["registered_name"] == "demo_big_state"
    assert body["links"]["self"].startswith(BASE)

    seen = [row["pid"] for row in body["data"]["processes"]]
    next_link = body["links"]["next"]
    assert "cursor=" in next_link and body["meta"]["next_cursor"] == body["data"]["next_cursor"]
    for _ in range(50):
        page = (await api.client.get(next_link)).json()
        seen += [row["pid"] for row in page["data"]["processes"]]
        next_link = page["links"].get("next")
        if next_link is None:
            assert page["data"]["next_cursor"] is None
            break
    assert len(seen) == len(set(seen)) > 20

    workers = await api.client.get(
        "/api/v1/processes", params={"name": "demo_worker", "limit": 10, "node": api.node}
    )
    names = sorted(row["registered_name"] for row in workers.json()["data"]["processes"])
    assert names == ["demo_worker_1", "demo_worker_2", "demo_worker_3"]
    by_queue = await api.client.get("/api/v1/processes?sort_by=message_queue_len&limit=1&min_queue=1")
    assert by_queue.json()["data"]["processes"][0]["registered_name"] == "demo_busy_mailbox"


async def test_get_process_info_by_name_and_pid(api: Api) -> None:
    by_name = await api.client.get("/api/v1/processes/demo_worker_1", params={"fields": "memory,status"})
    assert by_name.status_code == 200, by_name.text
    data = by_name.json()["data"]
    assert set(data["info"]) == {"memory", "status"}
    pid = data["pid"]
    assert pid.startswith("<0.")

    encoded = await api.client.get(f"/api/v1/processes/{quote(pid, safe='')}?fields=registered_name")
    assert encoded.json()["data"]["info"]["registered_name"] == "demo_worker_1"
    bare = await api.client.get(f"/api/v1/processes/{pid.strip('<>')}?fields=memory&fields=links")
    assert bare.json()["data"]["pid"] == pid and set(bare.json()["data"]["info"]) == {"memory", "links"}
    raw = await api.client.get(f"/api/v1/processes/{pid}", params={"fields": "status"})
    assert raw.json()["data"]["pid"] == pid


async def test_generic_operation_route_and_discovery(api: Api) -> None:
    ran = await api.client.post(
        "/api/v1/operations/list_processes", json={"sort_by": "reductions", "limit": 3}
    )
    assert ran.status_code == 200, ran.text
    assert len(ran.json()["data"]["processes"]) == 3
    assert ran.json()["meta"]["next_cursor"]
    info = await api.client.post("/api/v1/operations/get_process_info", json={"pid": "demo_worker_2"})
    assert info.json()["data"]["info"]["registered_name"] == "demo_worker_2"

    listed = await api.client.get("/api/v1/operations")
    assert listed.status_code == 200
    names = [op["name"] for op in listed.json()["data"]]
    assert sorted(names) == sorted(op.name for op in registry.all())
    assert listed.json()["meta"]["count"] == len(names)
    first = listed.json()["data"][0]
    assert {"params", "result", "severity", "routes", "example"} <= set(first)
    reads = (await api.client.get("/api/v1/operations", params={"severity": "read"})).json()["data"]
    assert all(op["severity"] == "read" for op in reads)
    by_category = (await api.client.get("/api/v1/operations?category=processes&sort=name")).json()["data"]
    assert [op["name"] for op in by_category] == sorted(op["name"] for op in by_category)
    assert {"get_process_info", "list_processes"} <= {op["name"] for op in by_category}
    one = await api.client.get("/api/v1/operations/get_process_info")
    assert one.json()["data"]["path"] == "/api/v1/processes/{pid}"
    assert one.json()["data"]["params"]["properties"]["pid"]


async def test_error_envelopes(api: Api) -> None:
    unknown_op = await api.client.post("/api/v1/operations/no_such_operation", json={})
    assert "no operation named" in _error(unknown_op, 404, "not_found")["detail"]
    _error(await api.client.get("/api/v1/operations/no_such_operation"), 404, "not_found")
    _error(await api.client.get("/api/v1/nowhere"), 404, "not_found")
    _error(await api.client.delete("/api/v1/processes"), 405, "validation_error")

    bad = await api.client.get("/api/v1/processes", params={"limit": 0})
    assert _error(bad, 422, "validation_error")["meta"]["errors"][0]["field"] == "limit"
    _error(await api.client.get("/api/v1/processes?no_such_param=1"), 422, "validation_error")
    _error(await api.client.get("/api/v1/processes?limit=1&limit=2"), 422, "validation_error")
    _error(await api.client.get("/api/v1/processes?sort_by=heap_size"), 422, "validation_error")
    _error(
        await api.client.post("/api/v1/operations/list_processes", content=b"{nope"), 422, "validation_error"
    )
    _error(await api.client.post("/api/v1/operations/list_processes", json=[1]), 422, "validation_error")
    in_query = await api.client.post("/api/v1/operations/list_processes?limit=3", json={})
    assert len(in_query.json()["data"]["processes"]) == 3
    both = await api.client.post("/api/v1/operations/list_processes?limit=3", json={"limit": 4})
    _error(both, 422, "validation_error")

    _error(await api.client.get("/api/v1/processes/nobody_registered_here"), 404, "not_found")
    _error(await api.client.get("/api/v1/processes/%3C0.32000.8000%3E"), 404, "not_found")
    _error(await api.client.get("/api/v1/processes/%3C1.2.3%3E"), 422, "validation_error")
    _error(await api.client.get("/api/v1/processes/demo_worker_1?fields=nope"), 422, "validation_error")
    unknown_node = await api.client.get("/api/v1/processes", params={"node": "nobody_here@nowhere"})
    _error(unknown_node, 404, "not_found")


async def test_correlation_ids_tie_answers_to_audit_and_telemetry(api: Api) -> None:
    seen: list[Any] = []
    audited: list[Any] = []
    api.service.registry.telemetry.append(seen.append)
    api.service.registry.auditors.append(audited.append)
    try:
        fresh = await api.client.get("/api/v1/processes", params={"limit": 1})
        cid = fresh.json()["meta"]["correlation_id"]
        assert len(cid) == 32 and int(cid, 16) >= 0 and fresh.headers["x-correlation-id"] == cid
        assert [e.correlation_id for e in seen if e.operation == "list_processes"][-1] == cid

        chosen = await api.client.post(
            "/api/v1/processes/demo_worker_2/gc", json={}, headers={"X-Correlation-ID": "req-42.a:b_c"}
        )
        assert chosen.status_code == 200, chosen.text
        assert chosen.json()["meta"]["correlation_id"] == "req-42.a:b_c"
        assert chosen.headers["x-correlation-id"] == "req-42.a:b_c"
        gc_events = [e for e in audited if e.operation == "garbage_collect_process"]
        assert [e.outcome for e in gc_events] == [None, "ok"]  # before it ran, and after
        assert {e.correlation_id for e in gc_events} == {"req-42.a:b_c"}

        proxied = await api.client.get("/api/v1/system/metrics", headers={"X-Request-ID": "edge-7"})
        assert proxied.json()["meta"]["correlation_id"] == "edge-7"
        for bad in ("has spaces", "x" * 65, "é"):
            replaced = await api.client.get(
                "/api/v1/processes", params={"limit": 1}, headers={"X-Correlation-ID": bad.encode()}
            )
            assert replaced.status_code == 200 and replaced.json()["meta"]["correlation_id"] != bad

        failed = await api.client.get("/api/v1/processes/nobody_registered_here")
        assert failed.status_code == 404
        assert failed.json()["meta"]["correlation_id"] == failed.headers["x-correlation-id"]
        no_route = await api.client.get("/api/v1/nowhere", headers={"X-Correlation-ID": "lost-1"})
        assert no_route.json()["meta"]["correlation_id"] == "lost-1"

        batch = await api.client.post(
            "/api/v1/batch",
            json=[{"operation": "list_processes", "params": {"limit": 1}}, {"operation": "nope"}],
            headers={"X-Correlation-ID": "batch-9"},
        )
        body = batch.json()
        assert body["meta"]["correlation_id"] == "batch-9"
        assert [r["meta"]["correlation_id"] for r in body["data"]] == ["batch-9.0", "batch-9.1"]
    finally:
        api.service.registry.telemetry.remove(seen.append)
        api.service.registry.auditors.remove(audited.append)


async def test_node_down_and_read_only(make_node, cookie) -> None:
    victim = make_node("apidown")
    guarded = make_node("apiro")
    async with Arsenal(cookie=cookie) as service:
        await service.attach(victim.name, reconnect=False)
        await service.attach(guarded.name, reconnect=False, read_only=True)
        app = create_app(service, auth=False)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            ok = await client.get("/api/v1/processes?limit=1", params={"node": victim.name})
            assert ok.status_code == 200
            victim.kill()
            for _ in range(100):
                down = await client.get("/api/v1/processes?limit=1", params={"node": victim.name})
                if down.status_code != 200:
                    break
                await asyncio.sleep(0.05)
            _error(down, 503, "node_down")

            writes = [op for op in registry.all() if op.severity.value != "read" and op.needs_node]
            if not writes:
                pytest.skip("no write operation is registered yet")
            op = writes[0]
            refused = await client.post(
                f"/api/v1/operations/{op.name}", params={"node": guarded.name}, json=op.example
            )
            assert "read-only" in _error(refused, 403, "read_only")["detail"]


async def test_batch_mixed_results_in_order(api: Api) -> None:
    items: list[Any] = [
        {"operation": "list_processes", "params": {"limit": 2}},
        {"operation": "no_such_operation"},
        {"operation": "get_process_info", "params": {"pid": "demo_worker_3"}, "node": api.node},
        {"operation": "get_process_info", "params": {"pid": "nobody_registered_here"}},
        {"operation": "list_processes", "params": {"limit": 0}},
        "not an object",
        {"operation": "list_processes", "params": {}, "surprise": 1},
    ] + [{"operation": "get_process_info", "params": {"pid": f"demo_worker_{i % 3 + 1}"}} for i in range(60)]
    response = await api.client.post("/api/v1/batch", json=items)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["data"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results[:7]] == [200, 404, 200, 404, 422, 422, 422]
    assert len(results[0]["data"]["processes"]) == 2
    assert results[2]["data"]["info"]["registered_name"] == "demo_worker_3"
    assert results[1]["errors"][0]["code"] == "not_found"
    for i, result in enumerate(results[7:]):
        assert result["data"]["info"]["registered_name"] == f"demo_worker_{i % 3 + 1}"
    assert body["meta"] == {**body["meta"], "count": len(items), "failed": 5, "atomic": False}

    too_many = [{"operation": "list_processes"}] * (MAX_BATCH + 1)
    error = _error(await api.client.post("/api/v1/batch", json=too_many), 413, "limit_exceeded")
    assert error["meta"]["limit"] == MAX_BATCH
    _error(await api.client.post("/api/v1/batch", json={"operation": "x"}), 422, "validation_error")
    huge = b"[" + b" " * (9 * 1024 * 1024) + b"]"
    _error(await api.client.post("/api/v1/batch", content=huge), 413, "limit_exceeded")
    _error(await api.client.post("/api/v1/operations/list_processes", content=huge), 413, "limit_exceeded")
    empty = await api.client.post("/api/v1/batch", json=[])
    assert empty.json()["data"] == [] and empty.json()["meta"]["count"] == 0


async def test_openapi_document_validates_and_covers_every_operation(api: Api) -> None:
    response = await api.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    for op in registry.all():
        if op.path:
            assert op.method.lower() in document["paths"][op.path], op.name
            entry = document["paths"][op.path][op.method.lower()]
            assert entry["operationId"] == op.name
            assert any(p["name"] == "node" for p in entry["parameters"])
    for path in ("/api/v1/operations", "/api/v1/operations/{name}", "/api/v1/batch"):
        assert path in document["paths"]
    batch = document["paths"]["/api/v1/batch"]["post"]
    assert "not atomic" in batch["description"]
    info = document["paths"]["/api/v1/processes/{pid}"]["get"]
    assert [p["name"] for p in info["parameters"] if p["in"] == "path"] == ["pid"]
    listing = document["paths"]["/api/v1/processes"]["get"]
    assert {"limit", "sort_by", "cursor"} <= {p["name"] for p in listing["parameters"]}
    docs = await api.client.get("/api/v1/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


class _Nothing(Result):
    pass


def _operation(name: str, path: str) -> type[Operation[Any, Any]]:
    async def execute(self: Any, ctx: Context, params: NoParams) -> _Nothing:
        return _Nothing()

    return type(
        f"Op_{name}",
        (Operation,),
        {
            "name": name,
            "category": "test",
            "summary": "A test operation.",
            "result": _Nothing,
            "path": path,
            "execute": execute,
        },
    )


def test_route_conflicts_are_refused_at_startup() -> None:
    things = _operation("things_op", "/api/v1/things")
    with pytest.raises(RouteConflict, match="declared by other_op and by operation things_op"):
        plan_routes([things, _operation("other_op", "/api/v1/things/")])
    with pytest.raises(RouteConflict, match="names pid"):
        plan_routes([_operation("pid_op", "/api/v1/things/{pid}")])
    with pytest.raises(RouteConflict, match="must start with"):
        plan_routes([_operation("elsewhere_op", "/things")])
    taken = _operation("taken_op", "/api/v1/batch")
    taken.method = "POST"  # type: ignore[misc]
    with pytest.raises(RouteConflict, match="the API itself"):
        plan_routes([things, taken])
    assert [r.operation.name for r in plan_routes([things])] == ["things_op"]

    twins = Registry()
    twins.register(_operation("twin_a", "/api/v1/twins"))
    twins.register(_operation("twin_b", "/api/v1/twins"))
    service = Arsenal()
    service.registry = twins
    with pytest.raises(
        RouteConflict, match="GET /api/v1/twins is declared by twin_b and by operation twin_a"
    ):
        create_app(service, auth=False)


class _Explodes(Operation[NoParams, _Nothing]):
    name = "explodes"
    category = "test"
    summary = "Fails the way a bug does."
    result = _Nothing
    path = "/api/v1/explode"
    needs_node = False

    async def execute(self, ctx: Context, params: NoParams) -> _Nothing:
        raise RuntimeError("a secret detail that must not reach the user")


async def test_a_bug_is_a_500_envelope_without_traceback(api: Api) -> None:
    own = Registry()
    own.register(_Explodes)
    service = Arsenal()
    service.registry = own
    app = create_app(service, auth=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        for answer in (await client.get("/api/v1/explode"), await client.post("/api/v1/operations/explodes")):
            error = _error(answer, 500, "internal_error")
            assert "bug" in error["detail"] and "secret" not in answer.text
    await service.close()


async def _atom_count(service: Arsenal) -> int:
    node = service.pool.get()
    last = -1
    for _ in range(50):
        count = await node.call("erlang", "system_info", [Atom("atom_count")])
        if count == last:
            return count
        last = count
        await asyncio.sleep(0.1)
    return last


KNOWN = ("list_processes", "get_process_info")


def _random_request(rng: random.Random, ops: list[str]) -> tuple[str, str, Any]:
    """One random request. Operations other than the two processes ones get a junk parameter, so they
    stop at validation: this exercises the API's routing, parsing and errors, not other categories'
    operations (their own tests check those create no atoms)."""
    junk = f"zz_api_leak_{rng.getrandbits(40):010x}"
    pid = rng.choice(
        [
            f"<0.{rng.randrange(10**6)}.{rng.randrange(3)}>",
            f"0.{rng.randrange(10**5)}.0",
            f"#PID<0.{rng.randrange(500)}.0>",
            junk,
            f"Elixir.{junk.capitalize()}",
            "<1.2.3>",
            "demo_worker_1",
        ]
    )

    def call() -> tuple[str, dict[str, Any]]:
        name = rng.choice([*KNOWN, *KNOWN, rng.choice(ops), junk])
        if name == "list_processes":
            return name, {rng.choice(["name", "module", "status", "cursor"]): junk, "limit": 1}
        if name == "get_process_info":
            return name, {"pid": pid, "fields": rng.sample(["memory", "status", junk], 2)}
        return name, {junk: pid}

    kind = rng.randrange(7)
    if kind == 0:
        return "GET", f"/api/v1/processes/{quote(pid, safe='')}", None
    if kind == 1:
        params = {rng.choice(["name", "module", "status", "sort_by", "cursor", junk]): junk, "limit": 1}
        return "GET", "/api/v1/processes?" + "&".join(f"{k}={v}" for k, v in params.items()), None
    if kind == 2:
        name, params = call()
        return "POST", f"/api/v1/operations/{name}", params
    if kind == 3:
        return rng.choice(["GET", "POST"]), f"/api/v1/{junk}/{quote(pid, safe='')}", None
    if kind == 4:
        fields = ",".join(rng.choice(["memory", "status", junk]) for _ in range(3))
        return "GET", f"/api/v1/processes/demo_worker_2?fields={fields}&node={junk}", None
    if kind == 5:
        batch = [dict(zip(("operation", "params"), call(), strict=True)) for _ in range(3)]
        return "POST", "/api/v1/batch", batch
    node = rng.choice([junk, "", f"{junk}@nowhere", "@"])
    return "POST", f"/api/v1/operations/get_process_info?node={node}", {"pid": pid}


@pytest.mark.timeout(180)
async def test_random_requests_create_no_atoms(api: Api) -> None:
    rng = random.Random(20261122)
    read_ops = [op.name for op in registry.all() if op.severity.value == "read"]
    await api.client.get("/api/v1/processes?limit=1")  # warm everything up once
    await api.client.get("/api/v1/processes/demo_worker_1")
    before = await _atom_count(api.service)
    statuses: dict[int, int] = {}
    requests = [_random_request(rng, read_ops) for _ in range(2000)]
    for start in range(0, len(requests), 50):
        chunk = requests[start : start + 50]
        answers = await asyncio.gather(
            *(api.client.request(method, url, json=body) for method, url, body in chunk)
        )
        for answer in answers:
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, answer.text
            assert "Traceback" not in answer.text
            assert ("data" in answer.json()) != ("errors" in answer.json())
    after = await _atom_count(api.service)
    assert after == before, f"{after - before} atoms were created ({statuses})"
    assert statuses.get(200, 0) > 0 and statuses.get(404, 0) > 0 and statuses.get(422, 0) > 0


async def test_websocket_channels(make_node, cookie) -> None:
    target = make_node("apiws", demo=True)
    async with Arsenal(cookie=cookie) as service:
        await service.attach(target.name, reconnect=False)
        app = create_app(service, auth=False)
        async with (
            ASGIWebSocketTransport(app=app) as transport,
            httpx.AsyncClient(transport=transport, base_url=BASE) as client,
            aconnect_ws(f"{BASE}/api/v1/ws", client) as ws,
        ):
            await ws.send_json({"subscribe": "system:metrics", "interval": 1})
            assert await ws.receive_json(timeout=10) == {"type": "subscribed", "channel": "system:metrics"}
            update = await ws.receive_json(timeout=10)
            assert update["type"] == "update" and update["channel"] == "system:metrics"
            assert update["data"]["process_count"] > 10 and update["data"]["memory_total"] > 0
            assert update["data"]["run_queue"] >= 0 and update["data"]["node"] == target.name
            # What the system dashboard charts, from one agent call per push.
            first = update["data"]
            assert first["process_count"] <= first["process_limit"]
            assert 0 < first["atom_count"] <= first["atom_limit"]
            assert first["port_count"] <= first["port_limit"] and first["ets_count"] > 0
            assert first["memory"]["total"] == first["memory_total"] and first["memory"]["binary"] > 0
            assert len(first["run_queues"]) == first["schedulers"] and first["uptime_ms"] > 0
            assert first["scheduler_utilization"] is None  # needs two samples
            second = (await ws.receive_json(timeout=10))["data"]
            usage = second["scheduler_utilization"]
            assert len(usage) == second["schedulers"] and all(0.0 <= u <= 1.0 for u in usage)
            assert second["scheduler_utilization_avg"] == pytest.approx(sum(usage) / len(usage))
            assert second["sampled_at"] > first["sampled_at"] and second["uptime_ms"] > first["uptime_ms"]
            await ws.send_json({"unsubscribe": "system:metrics"})
            while (message := await ws.receive_json(timeout=10))["type"] == "update":
                pass
            assert message == {"type": "unsubscribed", "channel": "system:metrics"}
            # The loop held scheduler_wall_time only while it ran: the VM turns it back off.
            beam = service.pool.get()
            wall_time = [Atom("scheduler_wall_time")]
            for _ in range(100):
                if await beam.call("erlang", "statistics", wall_time) == Atom("undefined"):
                    break
                await asyncio.sleep(0.05)
            assert await beam.call("erlang", "statistics", wall_time) == Atom("undefined")

            info = await service.run("get_process_info", {"pid": "demo_worker_1", "fields": ["status"]})
            pid = info.model_dump()["pid"]
            channel = f"process:{pid}"
            await ws.send_json({"subscribe": channel, "interval": 1})
            assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
            update = await ws.receive_json(timeout=10)
            assert update["type"] == "update" and update["data"]["pid"] == pid
            assert {"memory", "status", "message_queue_len"} <= set(update["data"]["info"])
            # Kill it behind Arsenal's back (test setup on a throwaway node): the channel says it exited.
            beam = service.pool.get()
            term = await beam.call("erlang", "list_to_pid", [list(pid.encode())])
            await beam.call("erlang", "exit", [term, Atom("kill")])
            while (message := await ws.receive_json(timeout=10))["type"] == "update":
                pass
            assert message["type"] == "exit" and message["channel"] == channel
            assert message["data"]["pid"] == pid and message["data"]["alive"] is False
            if "monitor_process" in registry:
                assert message["data"]["reason"] == "killed"

            await ws.send_json({"subscribe": "nothing:here"})
            assert (await ws.receive_json(timeout=10))["errors"][0]["code"] == "not_found"
            await ws.send_text("not json")
            assert (await ws.receive_json(timeout=10))["errors"][0]["code"] == "validation_error"
            await ws.send_json({"subscribe": "system:metrics", "interval": 0.01})
            assert (await ws.receive_json(timeout=10))["errors"][0]["code"] == "validation_error"
            await ws.send_json({"subscribe": "process:nobody_registered_here", "interval": 1})
            assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
            assert (await ws.receive_json(timeout=10))["errors"][0]["code"] == "not_found"
            if "which_children" in registry:
                await ws.send_json({"subscribe": "supervisor:arsenal_demo_erl_sup", "interval": 1})
                assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
                update = await ws.receive_json(timeout=10)
                assert update["type"] == "update" and update["channel"] == "supervisor:arsenal_demo_erl_sup"
                assert "demo_worker_2" in json.dumps(update["data"])
            await ws.send_json({"subscribe": "system:metrics", "interval": 1})
            await ws.send_json({"subscribe": "process:demo_worker_2", "interval": 1})
            await ws.receive_json(timeout=10)
            assert _ws_tasks()
        for _ in range(100):  # the socket is closed: every push loop ends with it
            if not _ws_tasks():
                break
            await asyncio.sleep(0.05)
        assert not _ws_tasks()


def _ws_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(TASK_PREFIX) and not t.done()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_runs_the_api_and_refuses_non_loopback(erl, cookie) -> None:
    env = {**os.environ, "ARSENAL_COOKIE": cookie}
    command = [sys.executable, "-m", "arsenal.cli.main", "serve"]
    refused = subprocess.run(
        [*command, "--node", erl.name, "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2 and "without TLS" in refused.stderr
    assert "Traceback" not in refused.stderr

    port = _free_port()
    server = subprocess.Popen(
        [*command, "--node", erl.name, "--port", str(port), "--read-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/operations", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None, server.stderr.read() if server.poll() is not None else "no answer"
        assert answer.status_code == 401 and answer.json()["errors"][0]["code"] == "unauthorized"
        # A key made by the CLI, with the same ARSENAL_HOME, works at once for the running server.
        made = subprocess.run(
            [*command[:-1], "keys", "create", "--role", "viewer", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        headers = {"Authorization": f"Bearer {json.loads(made.stdout)['key']}"}
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/operations", headers=headers, timeout=5)
        assert answer.status_code == 200
        assert {op["name"] for op in answer.json()["data"]} >= {"list_processes", "get_process_info"}
        top = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/processes?limit=2", headers=headers, timeout=10
        ).json()
        assert top["meta"]["node"] == erl.name and len(top["data"]["processes"]) == 2
    finally:
        server.kill()
        _, stderr = server.communicate(timeout=30)
    assert "serving" in stderr and "Traceback" not in stderr
    assert json.dumps(cookie) not in stderr and cookie not in stderr
