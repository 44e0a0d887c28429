"""Prometheus metrics: Arsenal's own and every attached node's vital signs, on a registry of their own.

Arsenal's operations are counted by a sink on the operation registry's telemetry list (one per
Python process, installed once: every call of every Arsenal in the process goes through the same
pipeline). The rest is read at scrape time by :class:`ArsenalCollector` from one Arsenal: its
attached nodes, live trace sessions and sandboxes, and the :class:`NodeSampler`'s last samples.
A scrape never calls a node; it reads what the sampler last saw, so it costs the nodes nothing
and a node that went away shows up as ``arsenal_node_up 0`` instead of failing the scrape.

Nothing is put in ``prometheus_client``'s global registry: each app gets its own
:class:`~prometheus_client.CollectorRegistry` (:func:`metrics_registry`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..ops.registry import Registry, TelemetryEvent
from .sampler import NodeSampler, NodeVitals

if TYPE_CHECKING:
    from ..client import Arsenal

__all__ = ["ArsenalCollector", "OperationMetrics", "exposition", "metrics_registry", "operation_metrics"]

log = logging.getLogger("arsenal.operations")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperationMetrics:
    """Counts and times every operation run through the pipeline (a telemetry sink)."""

    def __init__(self) -> None:
        self.calls = Counter(
            "arsenal_operations",
            "Operations run, by operation and outcome (ok or error).",
            ["operation", "outcome"],
            registry=None,
        )
        self.errors = Counter(
            "arsenal_operation_errors",
            "Operations that failed, by operation and error code.",
            ["operation", "code"],
            registry=None,
        )
        self.latency = Histogram(
            "arsenal_operation_duration_seconds",
            "Time from validation to result of each operation, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )

    def __call__(self, event: TelemetryEvent) -> None:
        self.calls.labels(event.operation, "ok" if event.ok else "error").inc()
        self.latency.labels(event.operation).observe(event.duration_ms / 1000)
        if not event.ok:
            self.errors.labels(event.operation, event.error_code or "unknown").inc()
        log.debug(
            "%s on %s: %s in %.1f ms",
            event.operation,
            event.node or "-",
            "ok" if event.ok else event.error_code,
            event.duration_ms,
            extra={"correlation_id": event.correlation_id},
        )

    def collectors(self) -> list[Collector]:
        return [self.calls, self.errors, self.latency]


_metrics: OperationMetrics | None = None
_install_lock = threading.Lock()


def operation_metrics(registry: Registry | None = None) -> OperationMetrics:
    """The process's operation metrics, installed on ``registry`` (Arsenal's) the first time."""
    global _metrics
    with _install_lock:
        if _metrics is None:
            if registry is None:
                from ..ops.registry import registry as default_registry

                registry = default_registry
            _metrics = OperationMetrics()
            registry.telemetry.append(_metrics)
        return _metrics


class ArsenalCollector(Collector):
    """One Arsenal's gauges and every sampled node's vital signs, read at scrape time."""

    def __init__(self, service: Arsenal) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; the families depend on the nodes attached

    def collect(self) -> Iterator[Metric]:
        yield from self._arsenal()
        sampler = self.service.services.get(NodeSampler)
        yield from _node_families(sampler.snapshot(), sampler.interval)

    def _arsenal(self) -> Iterator[Metric]:
        nodes = self.service.pool.nodes
        yield _gauge("arsenal_nodes_attached", "Nodes attached to this Arsenal.", len(nodes))
        yield _gauge(
            "arsenal_nodes_connected",
            "Attached nodes whose connection is up.",
            sum(1 for node in nodes if node.connected),
        )
        yield _gauge("arsenal_trace_sessions", "Trace sessions running now.", self._live_traces())
        yield _gauge("arsenal_sandboxes_running", "Sandbox nodes this Arsenal runs now.", self._sandboxes())

    def _live_traces(self) -> int:
        from ..ops.trace_sessions import TraceManager

        manager = self.service.services.peek(TraceManager)
        if manager is None:
            return 0
        return sum(1 for trace in list(manager.live.values()) if not trace.finished.is_set())

    def _sandboxes(self) -> int:
        from ..sandbox.manager import SandboxManager

        manager = self.service.services.peek(SandboxManager)
        return 0 if manager is None else len(manager.live)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


# (metric, help, key in NodeVitals.values, scale) for the one-value-per-node gauges.
NODE_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("arsenal_node_processes", "Processes on the node.", "process_count", 1),
    ("arsenal_node_process_limit", "The node's process limit.", "process_limit", 1),
    ("arsenal_node_ports", "Ports on the node.", "port_count", 1),
    ("arsenal_node_port_limit", "The node's port limit.", "port_limit", 1),
    ("arsenal_node_atoms", "Atoms in the node's atom table.", "atom_count", 1),
    ("arsenal_node_atom_limit", "The node's atom table limit.", "atom_limit", 1),
    ("arsenal_node_ets_tables", "ETS tables on the node.", "ets_count", 1),
    ("arsenal_node_ets_limit", "The node's ETS table limit.", "ets_limit", 1),
    ("arsenal_node_schedulers_online", "Normal schedulers online.", "schedulers_online", 1),
    ("arsenal_node_dirty_cpu_run_queue", "Length of the dirty CPU run queue.", "dirty_cpu_run_queue", 1),
    ("arsenal_node_dirty_io_run_queue", "Length of the dirty IO run queue.", "dirty_io_run_queue", 1),
    ("arsenal_node_uptime_seconds", "Time since the node started.", "uptime_ms", 0.001),
)
NODE_COUNTERS: tuple[tuple[str, str, str, float], ...] = (
    ("arsenal_node_reductions", "Reductions done by the node since it started.", "reductions", 1),
    (
        "arsenal_node_cpu_seconds",
        "CPU time of the node's schedulers (statistics(runtime)).",
        "runtime_ms",
        0.001,
    ),
)


def _node_families(samples: dict[str, NodeVitals], interval: float) -> Iterator[Metric]:
    """Per node: up, when sampled, and (for nodes that answered) the vital signs."""
    yield _gauge("arsenal_sampler_interval_seconds", "Seconds between two samples of a node.", interval)
    up = GaugeMetricFamily(
        "arsenal_node_up", "1 if the node answered its last sample, else 0.", labels=["node"]
    )
    at = GaugeMetricFamily(
        "arsenal_node_sample_timestamp_seconds",
        "When the node was last sampled (Unix time).",
        labels=["node"],
    )
    took = GaugeMetricFamily(
        "arsenal_node_sample_duration_seconds", "How long the last sample took, round trip.", labels=["node"]
    )
    for name, vitals in samples.items():
        up.add_metric([name], 1 if vitals.up else 0)
        at.add_metric([name], vitals.sampled_at)
        took.add_metric([name], vitals.duration_s)
    yield from (up, at, took)
    live = [v for v in samples.values() if v.up]
    yield from _scalar_families(live)
    yield from _labelled_families(live)


def _scalar_families(live: list[NodeVitals]) -> Iterator[Metric]:
    for metric, documentation, key, scale in NODE_GAUGES:
        family = GaugeMetricFamily(metric, documentation, labels=["node"])
        for vitals in live:
            family.add_metric([vitals.node], vitals.values[key] * scale)
        yield family
    for metric, documentation, key, scale in NODE_COUNTERS:
        counter = CounterMetricFamily(metric, documentation, labels=["node"])
        for vitals in live:
            counter.add_metric([vitals.node], vitals.values[key] * scale)
        yield counter
    ets = GaugeMetricFamily("arsenal_node_ets_memory_bytes", "Memory used by ETS tables.", labels=["node"])
    total = GaugeMetricFamily(
        "arsenal_node_run_queue", "Processes and ports ready to run, all normal run queues.", labels=["node"]
    )
    for vitals in live:
        ets.add_metric([vitals.node], vitals.memory.get("ets", 0))
        total.add_metric([vitals.node], sum(vitals.run_queues))
    yield from (ets, total)


def _labelled_families(live: list[NodeVitals]) -> Iterator[Metric]:
    memory = GaugeMetricFamily(
        "arsenal_node_memory_bytes",
        "erlang:memory() by type (total, processes, ets, binary, …).",
        labels=["node", "type"],
    )
    queues = GaugeMetricFamily(
        "arsenal_node_scheduler_run_queue",
        "Run queue length per normal scheduler.",
        labels=["node", "scheduler"],
    )
    usage = GaugeMetricFamily(
        "arsenal_node_scheduler_utilization",
        "Busy share (0-1) of each normal scheduler between the last two samples (scheduler_wall_time).",
        labels=["node", "scheduler"],
    )
    average = GaugeMetricFamily(
        "arsenal_node_schedulers_utilization",
        "Busy share (0-1) of all normal schedulers between the last two samples.",
        labels=["node"],
    )
    for vitals in live:
        for kind, value in sorted(vitals.memory.items()):
            memory.add_metric([vitals.node, kind], value)
        for index, length in enumerate(vitals.run_queues, start=1):
            queues.add_metric([vitals.node, str(index)], length)
        if vitals.utilization:
            for scheduler, share in sorted(vitals.utilization.items()):
                usage.add_metric([vitals.node, str(scheduler)], share)
            average.add_metric([vitals.node], sum(vitals.utilization.values()) / len(vitals.utilization))
    yield from (memory, queues, usage, average)


def metrics_registry(service: Arsenal) -> CollectorRegistry:
    """A registry of its own with Arsenal's operation metrics and ``service``'s collector."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in operation_metrics(service.registry).collectors():
        registry.register(collector)
    registry.register(ArsenalCollector(service))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition format (version 0.0.4) of ``registry``."""
    return generate_latest(registry)
