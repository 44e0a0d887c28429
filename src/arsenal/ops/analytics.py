"""Supervisor analytics (restart history, frequency, uptime, resources), a restart benchmark,
and alert rules.

The restart history is recorded by :class:`arsenal.analytics.RestartHistory` from the agent's
logger filter (``arsenal_agent_restarts``): ``arsenal serve`` starts it for every attached
node, and ``get_supervisor_analytics`` starts it on demand (so the first call on a node sees
only what happened from then on). Alerts are evaluated by
:class:`arsenal.analytics.AlertEvaluator`.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import Any, Literal

from pydantic import Field

from ..analytics import AlertEvaluator, AlertRule, RestartEvent, RestartHistory
from ..analytics.alerts import CRASHES
from ..analytics.history import AGENT, child_text
from ..beam import Node
from ..dist import Atom, Pid
from .base import Context, NoParams, Operation, Params, Result, Services, Severity
from .errors import ErrorCode, OperationError
from .plain import name_text, pid_or_none, pid_text
from .registry import register
from .safety import ensure_not_protected
from .supervisors import CALL_MS, SupervisorParams, _check
from .targets import process_ref

__all__ = [
    "AcknowledgeAlert",
    "BenchmarkSupervisionTree",
    "CreateAlertRule",
    "DeleteAlertRule",
    "GetSupervisorAnalytics",
    "ListAlertRules",
    "ListAlerts",
]

MAX_BUCKETS = 1000
TREND_SAMPLES = 120
ENDS = ("child_terminated", "start_error", "shutdown", "shutdown_error")


async def _history(ctx: Context, node: Node) -> RestartHistory:
    """The restart history, recording ``node`` (started now if it was not)."""
    history = ctx.services.get(RestartHistory)
    ctx.services.get(AlertEvaluator)  # restart-intensity rules follow the history from its start
    try:
        await history.ensure(node)
    except OperationError:
        raise
    except Exception as exc:
        raise OperationError(
            ErrorCode.agent_error, f"cannot record supervisor events on {node.name}: {exc}"
        ) from None
    return history


async def start_recording(services: Services, nodes: list[Node]) -> None:
    """Record every node's supervisor events and evaluate alert rules (``arsenal serve`` calls it)."""
    history = services.get(RestartHistory)
    evaluator = services.get(AlertEvaluator)
    from ..telemetry.sampler import NodeSampler

    sampler = services.get(NodeSampler)
    if hasattr(sampler, "subscribe"):  # metric rules: callback(node_name, {metric: value}, sampled_at)
        evaluator.attach_sampler(sampler)
    for node in nodes:
        await history.ensure(node)


# ---------------------------------------------------------------------------- analytics


class AnalyticsParams(SupervisorParams):
    window: int = Field(3600, ge=10, le=30 * 86400, description="Seconds of history to analyse.")
    bucket: int = Field(60, ge=1, le=86400, description="Seconds per bucket of the restart frequency.")
    top: int = Field(10, ge=1, le=100, description="How many most-crashed children and largest children.")


class Bucket(Result):
    start: float = Field(description="Seconds since the epoch.")
    restarts: int = Field(description="Child crashes (child_terminated, start_error) in this bucket.")


class CrashedChild(Result):
    id: str
    crashes: int
    last_reason: str | None
    last_crash: float


class ChildUptime(Result):
    id: str
    average_uptime_s: float | None = Field(description="Mean of the completed started→ended intervals seen.")
    intervals: int = Field(description="Completed intervals the average is over.")
    current_uptime_s: float | None = Field(description="Since its last recorded start, when it runs.")


class ChildResources(Result):
    id: str
    pid: str | None
    memory: int | None
    reductions: int | None
    message_queue_len: int | None


class TrendPoint(Result):
    time: float
    memory: int = Field(description="Sum of the children's memory (bytes).")
    reductions: int = Field(description="Sum of the children's reductions.")
    children: int


class Intensity(Result):
    limit: int = Field(description="Restarts allowed within `period` (the supervisor's intensity).")
    period: int = Field(description="Seconds.")
    recent_restarts: int = Field(description="Restarts within the period now, from the supervisor's state.")
    usage: float = Field(description="recent_restarts / limit: at 1.0 the next crash shuts it down.")


class SupervisorAnalytics(Result):
    node: str
    pid: str
    name: str | None
    window: int
    bucket: int
    recording: bool = Field(description="Whether the restart history is being recorded for this node.")
    recorded_since: float | None = Field(description="The oldest stored event in the window.")
    events: int = Field(description="Stored events in the window (starts and ends).")
    dropped: int = Field(description="Events the agent dropped (rate or queue limits) since recording began.")
    restarts: int = Field(description="Child crashes in the window.")
    frequency: list[Bucket]
    most_crashed: list[CrashedChild]
    uptime: list[ChildUptime]
    children: list[ChildResources] = Field(description="The `top` children by memory, sampled now.")
    trend: list[TrendPoint] = Field(description="Totals sampled by earlier analytics calls, then now.")
    intensity: Intensity


class _Trends:
    """Per-supervisor samples of the children's totals, taken by analytics calls (in memory)."""

    def __init__(self, services: Services) -> None:
        self.points: dict[tuple[str, str], deque[TrendPoint]] = defaultdict(
            lambda: deque(maxlen=TREND_SAMPLES)
        )


@register
class GetSupervisorAnalytics(Operation[AnalyticsParams, SupervisorAnalytics]):
    name = "get_supervisor_analytics"
    category = "supervisors"
    summary = (
        "A supervisor's restart history: frequency over time, most-crashed children, average uptime per "
        "child, its children's resources and trend, and its restart intensity against its limit."
    )
    cost = (
        "sys:get_state and which_children of the supervisor (2 s timeouts), one process_info per child "
        "(at most 200), and a read of the stored history (indexed by node, supervisor, time). Starts the "
        "restart recorder on the node if it is not running: a logger primary filter (one pattern match "
        "per log event) and one collector process."
    )
    risk = (
        "None for the supervisor. Recording sets the logger module level of `supervisor` to info while "
        "Arsenal is attached (put back on detach); the filter stops the reports the node would not "
        "have logged, so its logs do not change."
    )
    params = AnalyticsParams
    result = SupervisorAnalytics
    path = "/api/v1/supervisors/{name}/analytics"
    cli_name = "sup-analytics"
    timeout = 20.0
    example = {"name": "kernel_sup", "window": 3600, "bucket": 60}

    async def execute(self, ctx: Context, params: AnalyticsParams) -> SupervisorAnalytics:
        node = ctx.require_node()
        history = await _history(ctx, node)
        raw = await node.agent_call(
            "analytics_sample", [process_ref(params.name), 200, CALL_MS], self.timeout, module=AGENT
        )
        raw = _check(raw, params.name, node)
        lang = node.language
        pid = pid_text(raw[Atom("pid")])
        name = name_text(raw[Atom("name")], lang)
        now = raw[Atom("time")] / 1000.0
        since = now - params.window
        events = history.events(node.name, [n for n in (name, pid) if n], since)
        crashes = [e for e in events if e.event in CRASHES]
        children = [_resources(row, lang) for row in raw[Atom("children")]]
        point = TrendPoint(
            time=now,
            memory=sum(c.memory or 0 for c in children),
            reductions=sum(c.reductions or 0 for c in children),
            children=len(children),
        )
        trend = ctx.services.get(_Trends).points[(node.name, pid)]
        trend.append(point)
        limit, recent = int(raw[Atom("intensity")]), int(raw[Atom("recent_restarts")])
        status = history.status(node.name)
        return SupervisorAnalytics(
            node=node.name,
            pid=pid,
            name=name,
            window=params.window,
            bucket=params.bucket,
            recording=status["recording"],
            recorded_since=events[0].time if events else None,
            events=len(events),
            dropped=status["dropped"],
            restarts=len(crashes),
            frequency=_buckets(crashes, since, now, params.bucket),
            most_crashed=_most_crashed(crashes, params.top),
            uptime=_uptimes(events, now),
            children=sorted(children, key=lambda c: -(c.memory or 0))[: params.top],
            trend=list(trend),
            intensity=Intensity(
                limit=limit,
                period=int(raw[Atom("period")]),
                recent_restarts=recent,
                usage=recent / limit if limit else 1.0,
            ),
        )


def _resources(row: dict[Any, Any], language: str) -> ChildResources:
    return ChildResources(
        id=child_text(row[Atom("id")], language),
        pid=pid_or_none(row[Atom("pid")]),
        memory=row.get(Atom("memory")),
        reductions=row.get(Atom("reductions")),
        message_queue_len=row.get(Atom("message_queue_len")),
    )


def _buckets(crashes: list[RestartEvent], since: float, now: float, size: int) -> list[Bucket]:
    """Crash counts per bucket, oldest first; the bucket size grows so there are at most MAX_BUCKETS."""
    span = max(now - since, 1.0)
    size = max(size, int(span // MAX_BUCKETS) + 1) if span / size > MAX_BUCKETS else size
    count = int(span // size) + 1
    start = now - count * size
    counts = [0] * count
    for event in crashes:
        index = int((event.time - start) // size)
        if 0 <= index < count:
            counts[index] += 1
    return [Bucket(start=start + i * size, restarts=n) for i, n in enumerate(counts)]


def _most_crashed(crashes: list[RestartEvent], top: int) -> list[CrashedChild]:
    counts = Counter(e.child_id for e in crashes)
    last = {e.child_id: e for e in crashes}
    return [
        CrashedChild(id=child, crashes=n, last_reason=last[child].reason, last_crash=last[child].time)
        for child, n in counts.most_common(top)
    ]


def _uptimes(events: list[RestartEvent], now: float) -> list[ChildUptime]:
    """Per child: intervals from a `started` event to the next end of the same child."""
    started: dict[str, float] = {}
    intervals: dict[str, list[float]] = defaultdict(list)
    seen: list[str] = []
    for event in events:
        if event.child_id not in seen:
            seen.append(event.child_id)
        if event.event == "started":
            started[event.child_id] = event.time
        elif event.event in ENDS and event.child_id in started:
            intervals[event.child_id].append(event.time - started.pop(event.child_id))
    rows = []
    for child in seen[:MAX_BUCKETS]:
        spans = intervals.get(child, [])
        rows.append(
            ChildUptime(
                id=child,
                average_uptime_s=sum(spans) / len(spans) if spans else None,
                intervals=len(spans),
                current_uptime_s=now - started[child] if child in started else None,
            )
        )
    return rows


# ---------------------------------------------------------------------------- benchmark


class BenchmarkParams(SupervisorParams):
    count: int = Field(3, ge=1, le=50, description="Kill at most this many running children, in order.")
    timeout_ms: int = Field(5000, ge=100, le=60000, description="Per child: wait this long for the restart.")
    force: bool = Field(False, description="Act even on one of the VM's own supervisors (admins only).")


class RestartTime(Result):
    id: str
    old_pid: str
    new_pid: str | None = Field(description="None: not restarted within timeout_ms.")
    restart_us: int | None = Field(description="From the kill until which_children showed a new pid.")
    polls: int = Field(description="which_children calls it took to see the new pid.")


class BenchmarkResult(Result):
    node: str
    pid: str
    name: str | None
    results: list[RestartTime]
    mean_us: float | None
    max_us: int | None
    intensity: int
    recent_restarts_before: int


@register
class BenchmarkSupervisionTree(Operation[BenchmarkParams, BenchmarkResult]):
    name = "benchmark_supervision_tree"
    category = "supervisors"
    summary = (
        "Kill children of a supervisor one by one and measure, in the VM, how long each takes to be "
        "restarted (until the supervisor lists a new pid for it)."
    )
    cost = (
        "Per child: one exit/2, then which_children calls in a tight loop until the new pid shows (each a "
        "call into the supervisor, O(children)), then 1 ms sleeps; bounded by timeout_ms per child."
    )
    risk = (
        "Destructive: each chosen child is killed (exit reason kill) and loses its state; its restart "
        "counts toward the supervisor's intensity (refused when the kills would reach it, so the "
        "supervisor itself never gives up), and one_for_all/rest_for_one restart siblings too. The VM's "
        "own supervisors are refused unless an admin forces it."
    )
    params = BenchmarkParams
    result = BenchmarkResult
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/supervisors/{name}/benchmark"
    cli_name = "sup-benchmark"
    timeout = 120.0
    example = {"name": "arsenal_demo_erl_sup", "count": 3}

    async def execute(self, ctx: Context, params: BenchmarkParams) -> BenchmarkResult:
        node = ctx.require_node()
        ref = process_ref(params.name)
        _check(
            await node.agent_call("analytics_sample", [ref, 1, CALL_MS], self.timeout, module=AGENT),
            params.name,
            node,
        )
        await ensure_not_protected(ctx, params.name, force=params.force, action="benchmarking")
        timeout = (params.count * (params.timeout_ms + CALL_MS)) / 1000 + 10
        raw = await node.agent_call(
            "benchmark", [ref, params.count, params.timeout_ms, CALL_MS], timeout, module=AGENT
        )
        if isinstance(raw, tuple) and len(raw) == 2 and raw[0] == Atom("error"):
            reason = raw[1]
            if isinstance(reason, tuple) and reason and reason[0] == Atom("intensity"):
                _, limit, recent, wanted = reason
                raise OperationError(
                    ErrorCode.conflict,
                    f"killing {wanted} children with {recent} recent restarts would reach the supervisor's "
                    f"restart intensity ({limit}): it would shut down. Ask for fewer (count) or wait for "
                    "its period to pass",
                )
        raw = _check(raw, params.name, node)
        lang = node.language
        results = [
            RestartTime(
                id=child_text(r[Atom("id")], lang),
                old_pid=pid_text(r[Atom("old_pid")]),
                new_pid=pid_or_none(r[Atom("new_pid")]),
                restart_us=r[Atom("restart_us")] if isinstance(r[Atom("restart_us")], int) else None,
                polls=r[Atom("polls")],
            )
            for r in raw[Atom("results")]
        ]
        times = [r.restart_us for r in results if r.restart_us is not None]
        return BenchmarkResult(
            node=node.name,
            pid=pid_text(raw[Atom("pid")]) if isinstance(raw[Atom("pid")], Pid) else str(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], lang),
            results=results,
            mean_us=sum(times) / len(times) if times else None,
            max_us=max(times) if times else None,
            intensity=raw[Atom("intensity")],
            recent_restarts_before=raw[Atom("recent_restarts")],
        )


# ---------------------------------------------------------------------------- alert rules and alerts


class AlertRuleParams(Params):
    name: str = Field("", max_length=200, description="A label for people.")
    metric: str = Field(
        max_length=100,
        description="restart_intensity (with supervisor) or a sampled vital sign: process_count, "
        "memory_total, run_queue, ...",
    )
    comparison: Literal[">", ">=", "<", "<="] = ">="
    threshold: float
    window_seconds: float = Field(60, ge=0, le=86400)
    node: str | None = Field(None, max_length=255, description="Only this node (default: every node).")
    supervisor: str | None = Field(None, max_length=300)
    webhook: str | None = Field(None, max_length=2000, description="POST each alert here (http/https).")


class AlertRuleRow(Result):
    id: str
    name: str
    metric: str
    comparison: str
    threshold: float
    window_seconds: float
    node: str | None
    supervisor: str | None
    webhook: str | None
    created_at: float


class AlertRuleList(Result):
    rules: list[AlertRuleRow]


def _row(rule: AlertRule) -> AlertRuleRow:
    return AlertRuleRow(**rule.model_dump())


@register
class CreateAlertRule(Operation[AlertRuleParams, AlertRuleRow]):
    name = "create_alert_rule"
    category = "alerts"
    summary = "Add an alert rule: a sampled metric or a supervisor's restart intensity against a threshold."
    cost = "One row in the store; the rule is evaluated on each sample and each recorded restart (O(rules))."
    risk = (
        "None for the nodes. A webhook rule makes Arsenal POST alerts to that URL (one attempt, 5 s "
        "timeout), so only give it URLs you trust."
    )
    params = AlertRuleParams
    result = AlertRuleRow
    severity = Severity.write
    method = "POST"
    path = "/api/v1/alerts/rules"
    cli_name = "alert-rule-add"
    needs_node = False
    example = {"metric": "restart_intensity", "supervisor": "arsenal_demo_erl_sup", "threshold": 3}

    async def execute(self, ctx: Context, params: AlertRuleParams) -> AlertRuleRow:
        if params.webhook is not None and ctx.principal.role != "admin":
            # Arsenal would POST to any address it can reach, inside the network too.
            raise OperationError(ErrorCode.forbidden, "a rule with a webhook needs an admin key")
        try:
            rule = AlertRule(**params.model_dump())
        except ValueError as exc:
            raise OperationError(ErrorCode.validation_error, _first_error(exc)) from None
        evaluator = ctx.services.get(AlertEvaluator)
        try:
            evaluator.add_rule(rule)
        except ValueError as exc:
            raise OperationError(ErrorCode.limit_exceeded, str(exc)) from None
        if rule.metric == "restart_intensity" and ctx.node is not None:
            await _history(ctx, ctx.node)
        return _row(rule)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            where = ".".join(str(p) for p in found[0].get("loc", ()))
            return f"{where}: {found[0].get('msg')}" if where else str(found[0].get("msg"))
    return str(exc)


@register
class ListAlertRules(Operation[NoParams, AlertRuleList]):
    name = "list_alert_rules"
    category = "alerts"
    summary = "The alert rules, oldest first."
    cost = "A read of the store (at most 500 rules)."
    params = NoParams
    result = AlertRuleList
    path = "/api/v1/alerts/rules"
    cli_name = "alert-rules"
    needs_node = False

    async def execute(self, ctx: Context, params: NoParams) -> AlertRuleList:
        rules = ctx.services.get(AlertEvaluator).rules.values()
        return AlertRuleList(rules=[_row(rule) for rule in rules])


class RuleIdParams(Params):
    id: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="The rule's id.")


class Deleted(Result):
    id: str
    deleted: bool


@register
class DeleteAlertRule(Operation[RuleIdParams, Deleted]):
    name = "delete_alert_rule"
    category = "alerts"
    summary = "Remove an alert rule (the alerts it fired stay)."
    cost = "One row deleted from the store."
    risk = "None for the nodes: the rule stops being evaluated."
    params = RuleIdParams
    result = Deleted
    severity = Severity.write
    method = "DELETE"
    path = "/api/v1/alerts/rules/{id}"
    cli_name = "alert-rule-delete"
    needs_node = False
    example = {"id": "0123456789ab"}

    async def execute(self, ctx: Context, params: RuleIdParams) -> Deleted:
        if not ctx.services.get(AlertEvaluator).delete_rule(params.id):
            raise OperationError(
                ErrorCode.not_found, f"no alert rule {params.id}; list_alert_rules lists them"
            )
        return Deleted(id=params.id, deleted=True)


class ListAlertsParams(Params):
    limit: int = Field(100, ge=1, le=1000, description="At most this many, newest first.")
    unacknowledged: bool = Field(False, description="Only alerts nobody acknowledged yet.")


class AlertRow(Result):
    id: int
    rule: str
    node: str | None
    metric: str
    value: float | None
    threshold: float | None
    message: str
    fired_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None


class AlertList(Result):
    alerts: list[AlertRow]


@register
class ListAlerts(Operation[ListAlertsParams, AlertList]):
    name = "list_alerts"
    category = "alerts"
    summary = "Fired alerts, newest first (the WebSocket channel `alerts` pushes them as they fire)."
    cost = "An indexed read of the store, at most `limit` rows."
    params = ListAlertsParams
    result = AlertList
    path = "/api/v1/alerts"
    cli_name = "alerts"
    needs_node = False
    example = {"limit": 20, "unacknowledged": True}

    async def execute(self, ctx: Context, params: ListAlertsParams) -> AlertList:
        rows = ctx.services.get(AlertEvaluator).alerts(
            limit=params.limit, unacknowledged=params.unacknowledged
        )
        return AlertList(alerts=[AlertRow(**row) for row in rows])


class AlertIdParams(Params):
    id: int = Field(ge=1, description="The alert's id.")


@register
class AcknowledgeAlert(Operation[AlertIdParams, AlertRow]):
    name = "acknowledge_alert"
    category = "alerts"
    summary = "Mark an alert as seen, by the caller (acknowledging twice keeps the first)."
    cost = "One row updated in the store."
    risk = "None for the nodes."
    params = AlertIdParams
    result = AlertRow
    severity = Severity.write
    method = "POST"
    path = "/api/v1/alerts/{id}/acknowledge"
    cli_name = "alert-ack"
    needs_node = False
    example = {"id": 1}

    async def execute(self, ctx: Context, params: AlertIdParams) -> AlertRow:
        row = ctx.services.get(AlertEvaluator).acknowledge(params.id, ctx.principal.name)
        if row is None:
            raise OperationError(ErrorCode.not_found, f"no alert {params.id}; list_alerts lists them")
        return AlertRow(**row)
