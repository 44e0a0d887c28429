"""GET /metrics against the Elixir demo: Arsenal's own series and the node's vital signs (parsed with
prometheus_client's parser), the sampling interval, a node that goes away, the scheduler_wall_time
flag put back, and JSON logs that carry the correlation id of the request that logged them."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from arsenal.api import create_app
from arsenal.cli.main import app as cli
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.telemetry import DEFAULT_INTERVAL, JsonFormatter, NodeSampler

pytestmark = pytest.mark.timeout(120)

BASE = "http://arsenal.test"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Api:
    def __init__(self, service: Arsenal, client: httpx.AsyncClient, node: str) -> None:
        self.service = service
        self.client = client
        self.node = node

    @property
    def sampler(self) -> NodeSampler:
        return self.service.services.get(NodeSampler)

    async def scrape(self, **headers: str) -> Series:
        response = await self.client.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse(response.text)

    async def restart_sampler(self, interval: float) -> NodeSampler:
        sampler = self.sampler
        await sampler.aclose()
        sampler.start(self.service.pool, interval)
        return sampler


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(elixir, cookie) -> AsyncIterator[Api]:
    service = Arsenal(cookie=cookie)
    await service.attach(elixir.name, reconnect=False)
    app = create_app(service, auth=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield Api(service, client, elixir.name)
    await service.close()


def parse(text: str) -> Series:
    """Every sample of the exposition, by name and labels."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value(series: Series, name: str, default: float | None = None, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    if key not in series:
        if default is not None:
            return default
        raise AssertionError(f"no series {name}{labels}; have {sorted({n for n, _ in series})}")
    return series[key]


def for_node(series: Series, name: str, node: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in series.items() if n == name and ("node", node) in labels}


async def eventually(check, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Poll ``check`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = await check()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------- the scrape


async def test_scrape_has_arsenal_and_node_series(api: Api) -> None:
    before = await api.scrape()
    ok = {"operation": "get_system_info", "outcome": "ok"}
    calls_before = value(before, "arsenal_operations_total", 0.0, **ok)
    count_before = value(before, "arsenal_operation_duration_seconds_count", 0.0, operation="get_system_info")
    errors_before = value(
        before, "arsenal_operation_errors_total", 0.0, operation="get_process_info", code="not_found"
    )

    response = await api.client.get("/api/v1/system/metrics")
    assert response.status_code == 200, response.text
    missing = await api.client.get("/api/v1/processes/no_such_registered_name_xyz")
    assert missing.status_code == 404, missing.text
    after = await api.scrape()

    # Arsenal's own: the operation's counter and histogram moved by exactly one call.
    assert value(after, "arsenal_operations_total", **ok) == calls_before + 1
    assert (
        value(after, "arsenal_operation_duration_seconds_count", operation="get_system_info")
        == count_before + 1
    )
    assert value(after, "arsenal_operation_duration_seconds_sum", operation="get_system_info") > 0
    inf = value(after, "arsenal_operation_duration_seconds_bucket", operation="get_system_info", le="+Inf")
    assert inf == count_before + 1
    assert (
        value(after, "arsenal_operation_errors_total", operation="get_process_info", code="not_found")
        == errors_before + 1
    )
    assert value(after, "arsenal_nodes_attached") == 1 and value(after, "arsenal_nodes_connected") == 1
    assert value(after, "arsenal_trace_sessions") == 0 and value(after, "arsenal_sandboxes_running") == 0
    assert value(after, "arsenal_sampler_interval_seconds") == api.sampler.interval

    # The node's vital signs, labelled with its name, as the node itself reports them.
    node = api.node
    info = response.json()["data"]
    assert value(after, "arsenal_node_up", node=node) == 1
    assert value(after, "arsenal_node_processes", node=node) > 50  # the demo app's tree
    assert value(after, "arsenal_node_process_limit", node=node) == info["process_limit"]
    assert value(after, "arsenal_node_atom_limit", node=node) == info["atom_limit"]
    assert 0 < value(after, "arsenal_node_atoms", node=node) <= info["atom_limit"]
    assert value(after, "arsenal_node_port_limit", node=node) == info["port_limit"]
    assert value(after, "arsenal_node_ets_tables", node=node) > 10
    assert value(after, "arsenal_node_ets_memory_bytes", node=node) > 0
    assert value(after, "arsenal_node_reductions_total", node=node) > 0
    assert value(after, "arsenal_node_uptime_seconds", node=node) > 0
    memory = {
        dict(labels)["type"]: v for labels, v in for_node(after, "arsenal_node_memory_bytes", node).items()
    }
    assert {"total", "processes", "ets", "binary", "atom", "code", "system"} <= set(memory)
    assert memory["total"] == memory["processes"] + memory["system"]
    queues = for_node(after, "arsenal_node_scheduler_run_queue", node)
    assert len(queues) == info["schedulers"]
    assert value(after, "arsenal_node_run_queue", node=node) == sum(queues.values())


async def test_sampling_interval_and_scheduler_utilisation(api: Api) -> None:
    node = api.node
    # A long interval: scrapes read the last sample and never make the node work more often.
    sampler = await api.restart_sampler(60.0)
    first = sampler.counts.get(node, 0) + 1  # the counts are kept across restarts
    await eventually(lambda: _sampled(sampler, node, first), "the first sample")
    stamp = value(await api.scrape(), "arsenal_node_sample_timestamp_seconds", node=node)
    for _ in range(5):
        assert value(await api.scrape(), "arsenal_node_sample_timestamp_seconds", node=node) == stamp
    assert sampler.counts[node] == first

    # A short one: samples keep coming, never closer together than the interval.
    sampler = await api.restart_sampler(0.2)
    await eventually(lambda: _sampled(sampler, node, first + 4), "four more samples")
    starts = list(sampler.recent[node])[-4:]
    assert all(b - a >= 0.2 - 0.01 for a, b in itertools.pairwise(starts))

    # From the second sample on, scheduler utilisation per normal scheduler, as a share.
    series = await api.scrape()
    usage = for_node(series, "arsenal_node_scheduler_utilization", node)
    assert len(usage) == len(for_node(series, "arsenal_node_scheduler_run_queue", node))
    assert all(0.0 <= share <= 1.0 for share in usage.values())
    assert 0.0 <= value(series, "arsenal_node_schedulers_utilization", node=node) <= 1.0


async def _sampled(sampler: NodeSampler, node: str, count: int) -> bool:
    return sampler.counts.get(node, 0) >= count and node in sampler.samples


async def test_scheduler_wall_time_is_put_back_when_sampling_stops(api: Api) -> None:
    target = api.service.pool.get(api.node)

    async def wall_time() -> object:
        return await target.call("erlang", "statistics", [Atom("scheduler_wall_time")])

    async def flag_off() -> bool:
        return await wall_time() == Atom("undefined")

    sampler = api.sampler
    await sampler.aclose()
    await eventually(flag_off, "scheduler_wall_time off before sampling")
    sampler.start(api.service.pool, 0.2)
    enough = sampler.counts.get(api.node, 0) + 2
    await eventually(lambda: _sampled(sampler, api.node, enough), "two samples")
    assert isinstance(await wall_time(), list)  # on while Arsenal samples
    await sampler.aclose()
    await eventually(flag_off, "scheduler_wall_time off once sampling stopped")


async def test_a_node_that_goes_away_is_reported_down(api: Api, make_node) -> None:
    doomed = make_node("metricsdown")
    await api.service.attach(doomed.name, reconnect=False)
    sampler = await api.restart_sampler(DEFAULT_INTERVAL)
    try:
        await sampler.sample_now()
        series = await api.scrape()
        assert value(series, "arsenal_node_up", node=doomed.name) == 1
        assert value(series, "arsenal_node_processes", node=doomed.name) > 0
        assert value(series, "arsenal_nodes_attached") == 2

        doomed.kill()

        async def reported_down() -> Series | None:
            await sampler.sample_now()
            series = await api.scrape()
            return series if value(series, "arsenal_node_up", node=doomed.name) == 0 else None

        series = await eventually(reported_down, "the killed node reported down")
        assert not for_node(series, "arsenal_node_processes", doomed.name)  # no stale vital signs
        assert value(series, "arsenal_node_up", node=api.node) == 1  # the others are unaffected
        assert value(series, "arsenal_node_processes", node=api.node) > 0
        assert value(series, "arsenal_nodes_attached") == 2
    finally:
        await api.service.detach(doomed.name)
    # Detached: gone from the scrape altogether.
    await sampler.sample_now()
    series = await api.scrape()
    assert not for_node(series, "arsenal_node_up", doomed.name)
    assert value(series, "arsenal_nodes_attached") == 1


# ---------------------------------------------------------------------- logs


async def test_json_logs_carry_the_request_correlation_id(api: Api) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("arsenal")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        response = await api.client.get("/api/v1/system/metrics", headers={"X-Correlation-ID": "op-7f3a"})
        assert response.status_code == 200 and response.json()["meta"]["correlation_id"] == "op-7f3a"
        await api.scrape(**{"X-Correlation-ID": "scrape-91c2"})
        logging.getLogger("arsenal.telemetry").info("outside any request")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    # The pipeline's line for the operation, and the route's own line (from the request's context).
    operation = [line for line in lines if line["logger"] == "arsenal.operations"]
    assert [line["correlation_id"] for line in operation] == ["op-7f3a"]
    assert "get_system_info" in operation[0]["message"] and operation[0]["level"] == "debug"
    scrape = [line for line in lines if line["message"].startswith("metrics scraped")]
    assert [line["correlation_id"] for line in scrape] == ["scrape-91c2"]
    outside = [line for line in lines if line["message"] == "outside any request"]
    assert len(outside) == 1 and "correlation_id" not in outside[0]


def test_serve_refuses_an_unknown_log_format() -> None:
    result = CliRunner().invoke(cli, ["serve", "--node", "x@localhost", "--log-format", "xml"])
    assert result.exit_code == 2
    assert "use text or json" in result.output
