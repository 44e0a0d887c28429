"""Alert rules, their evaluation, the alerts they fire and where those go.

A rule compares one value with a threshold (``>``, ``>=``, ``<``, ``<=``):

* ``metric = "restart_intensity"`` with a ``supervisor``: the number of its children's
  crashes (child_terminated and start_error reports) in the last ``window_seconds``,
  evaluated on every event the restart history records;
* any other ``metric``: a vital sign the node sampler reports (process_count,
  memory_total, run_queue, ...), averaged over the samples of the last ``window_seconds``
  (the latest sample when the window is 0), evaluated on every sample. The sampler is
  connected with :meth:`AlertEvaluator.attach_sampler` (anything with ``subscribe(callback)``
  calling ``callback(node_name, {metric: value}, time)``), or samples are fed to
  :meth:`AlertEvaluator.on_sample` directly.

A rule fires at most once per ``window_seconds`` (at least ``MIN_REFIRE`` seconds) per node,
so a crash loop is one alert per window, not one per crash. A fired alert is stored in
``alerts``, pushed to every WebSocket subscriber of the ``alerts`` channel (bounded queues:
a slow client loses its oldest alerts, counted) and, when the rule has a ``webhook``, POSTed
there as JSON once (timeout ``WEBHOOK_TIMEOUT``, no retries; at most ``MAX_PENDING_POSTS``
deliveries in flight, more are dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import re
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, Field, field_validator, model_validator

from .history import RestartEvent, RestartHistory

if TYPE_CHECKING:
    from ..ops.base import Services
    from ..store import Store

__all__ = ["RESTART_INTENSITY", "AlertEvaluator", "AlertRule", "AlertWatcher"]

RESTART_INTENSITY = "restart_intensity"
CRASHES = ("child_terminated", "start_error")
MIN_REFIRE = 1.0
WEBHOOK_TIMEOUT = 5.0
MAX_PENDING_POSTS = 100
MAX_RULES = 500
WATCHER_QUEUE = 100
MAX_WINDOW = 86_400
log = logging.getLogger("arsenal.analytics")

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_METRIC = re.compile(r"^[a-z][a-z0-9_.:]{0,99}$")


class AlertRule(BaseModel):
    """A rule as stored (``alert_rules.spec``) and served."""

    id: str = Field(default_factory=lambda: secrets.token_hex(6))
    name: str = Field("", max_length=200, description="A label for people.")
    metric: str = Field(
        description="restart_intensity (needs supervisor) or a vital sign of the node sampler "
        "(process_count, memory_total, run_queue, ...)."
    )
    comparison: Literal[">", ">=", "<", "<="] = ">="
    threshold: float
    window_seconds: float = Field(60, ge=0, le=MAX_WINDOW)
    node: str | None = Field(None, max_length=255, description="Only this node (default: every node).")
    supervisor: str | None = Field(
        None, max_length=300, description="restart_intensity: the supervisor's registered name or pid text."
    )
    webhook: str | None = Field(None, max_length=2000, description="POST each alert here (http or https).")
    created_at: float = Field(default_factory=time.time)

    @field_validator("metric")
    @classmethod
    def _metric_shape(cls, value: str) -> str:
        if not _METRIC.match(value):
            raise ValueError("a metric name: lower-case letters, digits, _ . :")
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s]+$", value):
            raise ValueError("an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _supervisor_needed(self) -> AlertRule:
        if self.metric == RESTART_INTENSITY and not self.supervisor:
            raise ValueError("a restart_intensity rule names its supervisor")
        return self

    def applies(self, node: str) -> bool:
        return self.node is None or self.node == node

    def holds(self, value: float) -> bool:
        return _COMPARE[self.comparison](value, self.threshold)


@dataclass
class AlertWatcher:
    """One subscriber of the alerts channel: a bounded queue of alert dicts."""

    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(WATCHER_QUEUE))
    dropped: int = 0

    def put(self, alert: dict[str, Any]) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(alert)


class AlertEvaluator:
    """The alert service (``services.get(AlertEvaluator)``): rules, evaluation, delivery."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._rules: dict[str, AlertRule] | None = None
        self._last_fired: dict[tuple[str, str], float] = {}
        self._samples: dict[tuple[str, str], deque[tuple[float, float]]] = defaultdict(
            lambda: deque(maxlen=10_000)
        )
        self._crashes: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=100_000))
        self._watchers: list[AlertWatcher] = []
        self._posts: set[asyncio.Task[None]] = set()
        self.dropped_posts = 0
        self.webhook_failures = 0
        self._client: httpx.AsyncClient | None = None
        self._history = services.get(RestartHistory)
        self._history.subscribe(self.on_restart)
        self._samplers: list[Any] = []

    @property
    def store(self) -> Store:
        return self.services.store

    # ------------------------------------------------------------------ rules

    @property
    def rules(self) -> dict[str, AlertRule]:
        if self._rules is None:
            rows = self.store.execute("SELECT spec FROM alert_rules ORDER BY created_at")
            self._rules = {}
            for row in rows:
                with contextlib.suppress(ValueError):
                    rule = AlertRule.model_validate_json(row["spec"])
                    self._rules[rule.id] = rule
        return self._rules

    def add_rule(self, rule: AlertRule) -> AlertRule:
        if len(self.rules) >= MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} alert rules; delete one first")
        self.store.write(
            "INSERT INTO alert_rules (id, spec, created_at) VALUES (?, ?, ?)",
            (rule.id, rule.model_dump_json(), rule.created_at),
        )
        self.rules[rule.id] = rule
        return rule

    def delete_rule(self, rule_id: str) -> bool:
        removed = self.store.write("DELETE FROM alert_rules WHERE id = ?", (rule_id,))
        self.rules.pop(rule_id, None)
        return removed > 0

    # ------------------------------------------------------------------ alerts

    def alerts(self, *, limit: int = 100, unacknowledged: bool = False) -> list[dict[str, Any]]:
        where = "WHERE acknowledged_at IS NULL " if unacknowledged else ""
        rows = self.store.execute(f"SELECT * FROM alerts {where}ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]

    def acknowledge(self, alert_id: int, by: str) -> dict[str, Any] | None:
        self.store.write(
            "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? "
            "WHERE id = ? AND acknowledged_at IS NULL",
            (time.time(), by, alert_id),
        )
        rows = self.store.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        return dict(rows[0]) if rows else None

    # ------------------------------------------------------------------ evaluation

    def on_restart(self, event: RestartEvent) -> None:
        """Restart-history listener: evaluate the restart_intensity rules of that supervisor."""
        if event.event not in CRASHES:
            return
        crashes = self._crashes[(event.node, event.supervisor)]
        crashes.append(event.time)
        for rule in list(self.rules.values()):
            if rule.metric != RESTART_INTENSITY or rule.supervisor != event.supervisor:
                continue
            if not rule.applies(event.node):
                continue
            since = event.time - rule.window_seconds
            value = float(sum(1 for t in crashes if t >= since))
            self._check(rule, event.node, value, f"supervisor {event.supervisor}")

    def on_sample(self, node: str, values: Mapping[str, float], when: float | None = None) -> None:
        """Sampler callback: evaluate the metric rules with a node's vital signs."""
        now = time.time() if when is None else when
        for metric, value in values.items():
            if isinstance(value, int | float):
                self._samples[(node, metric)].append((now, float(value)))
        for rule in list(self.rules.values()):
            if rule.metric == RESTART_INTENSITY or rule.metric not in values or not rule.applies(node):
                continue
            samples = self._samples[(node, rule.metric)]
            recent = [v for t, v in samples if t >= now - rule.window_seconds] or [samples[-1][1]]
            self._check(rule, node, sum(recent) / len(recent), f"{rule.metric} on {node}")
            self._trim(samples, now)

    @staticmethod
    def _trim(samples: deque[tuple[float, float]], now: float) -> None:
        while samples and samples[0][0] < now - MAX_WINDOW:
            samples.popleft()

    def attach_sampler(self, sampler: Any) -> None:
        """Evaluate metric rules on every sample of ``sampler`` (``subscribe(callback)``)."""
        if sampler not in self._samplers:
            sampler.subscribe(self.on_sample)
            self._samplers.append(sampler)

    def _check(self, rule: AlertRule, node: str, value: float, what: str) -> None:
        if not rule.holds(value):
            return
        now = time.time()
        key = (rule.id, node)
        last = self._last_fired.get(key)
        if last is not None and now - last < max(rule.window_seconds, MIN_REFIRE):
            return
        self._last_fired[key] = now
        self.fire(rule, node, value, what)

    def fire(self, rule: AlertRule, node: str, value: float, what: str) -> dict[str, Any]:
        label = f" ({rule.name})" if rule.name else ""
        window = f" over {rule.window_seconds:g} s" if rule.window_seconds else ""
        message = (
            f"{rule.metric} of {what} is {value:g}{window}, {rule.comparison} {rule.threshold:g}: "
            f"rule {rule.id}{label}"
        )
        fired_at = time.time()
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO alerts (rule, node, metric, value, threshold, message, fired_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rule.id, node, rule.metric, value, rule.threshold, message, fired_at),
            )
            alert_id = cursor.lastrowid
        alert = {
            "id": alert_id,
            "rule": rule.id,
            "node": node,
            "metric": rule.metric,
            "value": value,
            "threshold": rule.threshold,
            "message": message,
            "fired_at": fired_at,
            "acknowledged_at": None,
            "acknowledged_by": None,
        }
        for watcher in list(self._watchers):
            watcher.put(alert)
        if rule.webhook:
            self._post_later(rule.webhook, alert)
        log.warning("alert fired: %s", message)
        return alert

    # ------------------------------------------------------------------ delivery

    def watch(self) -> AlertWatcher:
        watcher = AlertWatcher()
        self._watchers.append(watcher)
        return watcher

    def unwatch(self, watcher: AlertWatcher) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(watcher)

    def _post_later(self, url: str, alert: dict[str, Any]) -> None:
        if len(self._posts) >= MAX_PENDING_POSTS:
            self.dropped_posts += 1
            return
        try:
            task = asyncio.get_running_loop().create_task(self._post(url, alert))
        except RuntimeError:  # no event loop (a synchronous caller): no delivery
            self.dropped_posts += 1
            return
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, url: str, alert: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, follow_redirects=False)
        try:
            response = await self._client.post(
                url, content=json.dumps({"alert": alert}), headers={"content-type": "application/json"}
            )
            if response.status_code >= 400:
                self.webhook_failures += 1
                log.warning("alert webhook %s answered %s", url, response.status_code)
        except httpx.HTTPError as exc:
            self.webhook_failures += 1
            log.warning("alert webhook %s failed: %s", url, exc)

    async def aclose(self) -> None:
        self._history.unsubscribe(self.on_restart)
        for task in list(self._posts):
            task.cancel()
        for task in list(self._posts):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
