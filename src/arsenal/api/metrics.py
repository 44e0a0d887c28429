"""``GET /metrics``: the Prometheus text exposition of Arsenal's own metrics and the attached nodes'
vital signs (see :mod:`arsenal.telemetry`).

A scrape reads what the node sampler last saw; it never makes a node work more often than the
sampling interval, except that a node never sampled yet (just attached) is sampled once first.
The first scrape starts the sampler (default interval) when ``arsenal serve`` has not.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from ..client import Arsenal
from ..telemetry import NodeSampler, exposition, metrics_registry

__all__ = ["METRICS_PATH", "add_metrics_route"]

METRICS_PATH = "/metrics"
log = logging.getLogger("arsenal.telemetry")


def add_metrics_route(app: FastAPI, service: Arsenal) -> None:
    """Serve ``GET /metrics`` for ``service`` (its operation metrics are counted from now on)."""
    registry = metrics_registry(service)
    extra = {
        "responses": {
            "200": {
                "description": "Prometheus text exposition format 0.0.4 (every Prometheus reads it).",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        }
    }

    @app.get(
        METRICS_PATH,
        operation_id="metrics",
        summary="Prometheus metrics: Arsenal's operations and every attached node's vital signs.",
        tags=["telemetry"],
        openapi_extra=extra,
        response_class=Response,
    )
    async def metrics(request: Request) -> Response:
        sampler = service.services.get(NodeSampler)
        sampler.ensure_started(service.pool)
        await sampler.sample_now(only_missing=True)
        body = exposition(registry)
        log.debug("metrics scraped: %d nodes, %d bytes", len(sampler.samples), len(body))
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
