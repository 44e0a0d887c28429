"""Supervisor analytics on real nodes: restart history from the agent's logger filter, analytics,
benchmark_supervision_tree, alerts on restart intensity (WebSocket + webhook), and the node's
logger left as it was."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from arsenal.analytics import RestartHistory
from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.errors import ErrorCode, OperationError

SUP = "arsenal_demo_erl_sup"
BASE = "http://arsenal.test"
AGENT = "arsenal_agent_restarts"


async def _until(predicate: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def _kill(service: Arsenal, name: str) -> None:
    node = service.pool.get()
    pid = await node.call("erlang", "whereis", [Atom(name)])
    await node.call("erlang", "exit", [pid, Atom("kill")])


async def _logger_config(service: Arsenal) -> tuple[Any, ...]:
    node = service.pool.get()
    return (
        await node.call("logger", "get_primary_config", []),
        await node.call("logger", "get_module_level", []),
        await node.call("logger", "get_handler_ids", []),
    )


@pytest.fixture
async def demo(make_node, cookie, tmp_path: Path) -> AsyncIterator[tuple[Arsenal, Any]]:
    target = make_node("analytics", demo=True)
    service = Arsenal(cookie=cookie, home=tmp_path)
    await service.attach(target.name, reconnect=False)
    yield service, target
    await service.close()


@pytest.mark.timeout(90)
async def test_history_analytics_and_logger_restored(demo) -> None:
    service, target = demo
    before = await _logger_config(service)
    first = await service.run("get_supervisor_analytics", {"name": SUP})
    assert first.recording and first.restarts == 0 and first.intensity.limit == 10
    assert first.intensity.period == 10 and first.pid.startswith("<0.")
    # Recording raised only the module level of `supervisor`, not the primary level.
    during = await _logger_config(service)
    assert during[0][Atom("level")] == before[0][Atom("level")] == Atom("notice")
    assert [f[0] for f in during[0][Atom("filters")]] == [Atom("arsenal_restarts")]
    assert during[1] == [(Atom("supervisor"), Atom("info"))] and before[1] == []

    for _ in range(2):
        await _kill(service, "demo_worker_1")
        await asyncio.sleep(0.2)
    await _kill(service, "demo_worker_2")

    async def three() -> bool:
        result = await service.run("get_supervisor_analytics", {"name": SUP, "window": 600, "bucket": 30})
        return result.restarts == 3

    await _until(three)
    result = await service.run("get_supervisor_analytics", {"name": SUP, "window": 600, "bucket": 30})
    top = result.most_crashed[0]
    assert (top.id, top.crashes, top.last_reason) == ("demo_worker_1", 2, "killed")
    assert [(c.id, c.crashes) for c in result.most_crashed[1:]] == [("demo_worker_2", 1)]
    assert sum(b.restarts for b in result.frequency) == 3 and len(result.frequency) >= 20
    uptime = {row.id: row for row in result.uptime}
    # The first restart of demo_worker_1 started it; its second crash ended that run.
    assert uptime["demo_worker_1"].intervals == 1 and uptime["demo_worker_1"].average_uptime_s >= 0
    assert uptime["demo_worker_1"].current_uptime_s is not None
    assert (
        result.intensity.recent_restarts >= 1
        and result.intensity.usage == result.intensity.recent_restarts / 10
    )
    assert {"demo_big_state", "demo_worker_1"} <= {c.id for c in result.children}
    big = next(c for c in result.children if c.id == "demo_big_state")
    assert big.memory > 2 * 1024 * 1024 and result.children[0].id == "demo_big_state"
    assert len(result.trend) >= 2 and result.trend[-1].children == 6
    rows = service.services.store.execute("SELECT COUNT(*) FROM supervisor_restarts WHERE event = 'started'")
    assert rows[0][0] == 3

    # The node's logs are as before: the crash reports, not the progress reports we let through.
    log = Path(target.log_path).read_text() if target.log_path else ""
    assert "SUPERVISOR REPORT" in log and "PROGRESS REPORT" not in log

    # Detaching (the owner process closes) removes the filter and restores the levels.
    await service.services.get(RestartHistory).stop(target.name)

    async def restored() -> bool:
        status = await service.pool.get().call(AGENT, "status", [])
        return status[Atom("collector")] == Atom("undefined") and status[Atom("filter")] is False

    await _until(restored)
    assert await _logger_config(service) == before


@pytest.mark.timeout(90)
async def test_benchmark_supervision_tree(demo) -> None:
    service, _ = demo
    result = await service.run("benchmark_supervision_tree", {"name": SUP, "count": 4})
    assert len(result.results) == 4 and result.intensity == 10
    for row in result.results:
        assert row.new_pid is not None and row.new_pid != row.old_pid
        assert row.restart_us is not None and row.restart_us > 0 and row.polls >= 1
    assert result.max_us == max(r.restart_us for r in result.results)
    children = await service.run("which_children", {"name": SUP})
    assert {c.pid for c in children.children} >= {r.new_pid for r in result.results}

    # 4 recent restarts + 6 more would reach the intensity of 10: refused, nothing killed.
    with pytest.raises(OperationError) as refused:
        await service.run("benchmark_supervision_tree", {"name": SUP, "count": 6})
    assert refused.value.code is ErrorCode.conflict and "intensity" in str(refused.value)
    with pytest.raises(OperationError) as protected:
        await service.run("benchmark_supervision_tree", {"name": "kernel_sup", "count": 1})
    assert protected.value.code is ErrorCode.protected_process
    with pytest.raises(OperationError) as plain:
        await service.run("benchmark_supervision_tree", {"name": "demo_worker_1"})
    assert plain.value.code is ErrorCode.validation_error


class _Webhook:
    """A local HTTP receiver: records each POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        self.bodies.append(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.mark.timeout(90)
async def test_restart_intensity_alert_ws_webhook_and_acknowledge(demo) -> None:
    service, target = demo
    hook = _Webhook()
    url = await hook.start()
    app = create_app(service, auth=False)
    try:
        async with (
            ASGIWebSocketTransport(app=app) as transport,
            httpx.AsyncClient(transport=transport, base_url=BASE) as client,
            aconnect_ws(f"{BASE}/api/v1/ws", client) as ws,
        ):
            bad = await client.post(
                f"{BASE}/api/v1/alerts/rules", json={"metric": "restart_intensity", "threshold": 1}
            )
            assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "validation_error"
            created = await client.post(
                f"{BASE}/api/v1/alerts/rules",
                json={
                    "name": "crash loop",
                    "metric": "restart_intensity",
                    "supervisor": SUP,
                    "threshold": 2,
                    "window_seconds": 60,
                    "webhook": url,
                },
            )
            assert created.status_code == 200, created.text
            rule = created.json()["data"]
            listed = (await client.get(f"{BASE}/api/v1/alerts/rules")).json()["data"]["rules"]
            assert [r["id"] for r in listed] == [rule["id"]]
            await ws.send_json({"subscribe": "alerts"})
            assert await ws.receive_json(timeout=10) == {"type": "subscribed", "channel": "alerts"}

            await _kill(service, "demo_worker_3")  # one crash: below the threshold
            await asyncio.sleep(0.5)
            assert (await client.get(f"{BASE}/api/v1/alerts")).json()["data"]["alerts"] == []
            await _kill(service, "demo_worker_2")  # the second within the window: fires
            message = await ws.receive_json(timeout=10)
            assert message["type"] == "alert" and message["channel"] == "alerts"
            alert = message["data"]
            assert (alert["rule"], alert["node"], alert["value"]) == (rule["id"], target.name, 2.0)
            assert SUP in alert["message"]

            await _until(lambda: _true(bool(hook.bodies)))
            assert hook.bodies[0]["alert"]["id"] == alert["id"]

            listed_alerts = (await client.get(f"{BASE}/api/v1/alerts?unacknowledged=true")).json()["data"]
            assert [a["id"] for a in listed_alerts["alerts"]] == [alert["id"]]
            acked = await client.post(f"{BASE}/api/v1/alerts/{alert['id']}/acknowledge")
            assert acked.status_code == 200 and acked.json()["data"]["acknowledged_by"] == "local"
            assert (await client.get(f"{BASE}/api/v1/alerts?unacknowledged=true")).json()["data"][
                "alerts"
            ] == []
            missing = await client.post(f"{BASE}/api/v1/alerts/999999/acknowledge")
            assert missing.status_code == 404

            # A third crash within the window does not fire again (one alert per window).
            await _kill(service, "demo_worker_1")
            await asyncio.sleep(0.5)
            assert len((await client.get(f"{BASE}/api/v1/alerts")).json()["data"]["alerts"]) == 1
            deleted = await client.delete(f"{BASE}/api/v1/alerts/rules/{rule['id']}")
            assert deleted.status_code == 200
            assert (await client.get(f"{BASE}/api/v1/alerts/rules")).json()["data"]["rules"] == []
    finally:
        await hook.close()


async def _true(value: bool) -> bool:
    return value


async def test_metric_rule_and_retention(tmp_path: Path) -> None:
    async with Arsenal(home=tmp_path) as service:
        from arsenal.analytics import AlertEvaluator, AlertRule

        evaluator = service.services.get(AlertEvaluator)
        evaluator.add_rule(AlertRule(metric="run_queue", comparison=">", threshold=5, window_seconds=10))
        evaluator.on_sample("a@h", {"run_queue": 4}, 1000.0)
        evaluator.on_sample("a@h", {"run_queue": 8}, 1001.0)  # mean 6 > 5
        assert [a["metric"] for a in evaluator.alerts()] == ["run_queue"]
        assert evaluator.alerts()[0]["value"] == 6.0

        history = service.services.get(RestartHistory)
        history.max_rows_per_node = 3
        service.services.store.write_many(
            "INSERT INTO supervisor_restarts (node, supervisor, child_id, event, time) "
            "VALUES (?, ?, ?, ?, ?)",
            [("n@h", "s", "c", "child_terminated", t) for t in (1.0, 2e9, 2e9 + 1, 2e9 + 2, 2e9 + 3)],
        )
        assert history.prune(now=2e9 + 10) == 2  # one too old, one beyond the 3 newest
        kept = service.services.store.execute("SELECT time FROM supervisor_restarts ORDER BY time")
        assert [row[0] for row in kept] == [2e9 + 1, 2e9 + 2, 2e9 + 3]
