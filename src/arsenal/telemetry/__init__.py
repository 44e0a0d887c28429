"""Telemetry: Arsenal's own metrics, attached nodes' vital signs (sampled), structured logs.

* :class:`NodeSampler` (a service: ``services.get(NodeSampler)``) samples every attached node
  through one agent call per interval (``arsenal_agent_vitals:vitals/0``).
* :func:`metrics_registry` / :func:`exposition`: the Prometheus text served at ``GET /metrics``.
* :func:`configure_logging`: text or JSON lines with correlation ids.
"""

from __future__ import annotations

from .logs import JsonFormatter, configure_logging
from .metrics import ArsenalCollector, OperationMetrics, exposition, metrics_registry, operation_metrics
from .sampler import DEFAULT_INTERVAL, NodeSampler, NodeVitals

__all__ = [
    "DEFAULT_INTERVAL",
    "ArsenalCollector",
    "JsonFormatter",
    "NodeSampler",
    "NodeVitals",
    "OperationMetrics",
    "configure_logging",
    "exposition",
    "metrics_registry",
    "operation_metrics",
]
