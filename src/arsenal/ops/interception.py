"""Message interception: rules that log, block, delay or modify what is sent to a process's
registered name, applied by a proxy inside the node (``arsenal_agent_intercept``).

What the BEAM allows, exactly (``docs/interception.md``): a message sent to a pid goes straight
into that process's mailbox, and nothing outside the VM can sit in between. Only messages sent
to the process's locally registered *name* can be intercepted: Arsenal moves the name to a proxy
that applies the rules in order and forwards to the real pid. Messages sent to the pid itself
(replies, monitors, links, callers that cached the pid) bypass it; a process without a
registered name cannot be intercepted, and ``global``/``via`` names are not handled.

:class:`InterceptionManager` is a service (``ctx.services.get(InterceptionManager)``): one per
Arsenal, holding the interceptions it started. Each has a Python process on the node's connection
as its owner: the proxy reports to it, and when it goes away (the Arsenal closes or dies) the
proxy gives the name back by itself. A pump task keeps the last :data:`RING` events of each
interception and hands them to live watchers (the WebSocket's ``intercept:<id>`` channel, the
CLI); a watcher that falls behind loses batches, counted, instead of slowing the pump.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from ..beam import Node
from ..dist import Atom, Pid, Process, Ref, Term
from ..dist.process import DOWN
from ..terms.render import render
from .base import Context, Operation, Params, Result, Services, Severity
from .errors import ErrorCode, OperationError
from .plain import pid_text
from .registry import register
from .safeterm import check_decoded, parse_term, to_wire
from .safety import ensure_not_protected
from .targets import check_target, is_agent_error, process_ref
from .trace_patterns import MessagePattern, TracePatternError, parse_message_pattern
from .watchers import Watcher

__all__ = [
    "GetInterception",
    "InterceptMessages",
    "InterceptionManager",
    "ListInterceptions",
    "LiveInterception",
    "StopInterception",
    "Watcher",
]

CATEGORY = "interception"
MODULE = "arsenal_agent_intercept"
RING = 1000
"""Events kept in memory per interception (the last ones)."""
KEEP_FINISHED = 100
"""Finished interceptions remembered per Arsenal (in memory; not stored)."""
MAILBOX_BATCHES = 10_000
MAX_ITEMS = 200
BATCH = Atom("arsenal_intercept")
DONE = Atom("arsenal_intercept_done")
TRUNCATED = Atom("$arsenal_truncated")
COUNTERS = ("passed", "logged", "blocked", "delayed", "modified", "reported", "unreported", "dropped")

WHERE = (
    "Only messages sent to the process's registered name pass through the proxy; messages sent to "
    "its pid (replies, monitors, links, callers that cached the pid) bypass it."
)


class Action(StrEnum):
    log = "log"
    block = "block"
    delay = "delay"
    modify = "modify"


class Syntax(StrEnum):
    erlang = "erlang"
    elixir = "elixir"


# ---------------------------------------------------------------------- the service


@dataclass
class LiveInterception:
    """One interception, live or finished (then ``end_reason`` is set)."""

    id: str
    node: Node
    pid: str
    name: str
    proxy: Pid
    ctl: Ref
    process: Process
    rules: list[dict[str, Any]]
    limits: dict[str, int]
    principal: str | None
    started_at: float
    counters: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RING))
    ended_at: float | None = None
    end_reason: str | None = None
    restored: bool | None = None
    watchers: list[Watcher] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    proxy_ref: Ref | None = None

    @property
    def running(self) -> bool:
        return self.end_reason is None


class InterceptionManager:
    """The interceptions one Arsenal runs (a service: ``ctx.services.get(InterceptionManager)``)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.live: dict[str, LiveInterception] = {}
        self.finished: deque[LiveInterception] = deque(maxlen=KEEP_FINISHED)

    def get(self, interception_id: str) -> LiveInterception:
        found = self.live.get(interception_id) or next(
            (i for i in self.finished if i.id == interception_id), None
        )
        if found is None:
            raise OperationError(
                ErrorCode.not_found,
                f"no interception {interception_id}; list_interceptions shows this Arsenal's interceptions",
            )
        return found

    def all(self) -> list[LiveInterception]:
        return sorted([*self.live.values(), *self.finished], key=lambda i: i.started_at, reverse=True)

    async def start(
        self,
        node: Node,
        target: str,
        rules: list[dict[str, Any]],
        wire_rules: Term,
        limits: dict[str, int],
        principal: str | None,
    ) -> LiveInterception:
        process = node.spawn_process(mailbox_size=MAILBOX_BATCHES)
        wire_limits = to_wire({Atom(k): v for k, v in limits.items()}, what="limits")
        try:
            reply = await node.agent_call(
                "start", [process_ref(target), wire_rules, process.pid, wire_limits], 15.0, module=MODULE
            )
        except BaseException:
            await process.close()
            raise
        if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] == Atom("ok")):
            await process.close()
            raise refusal(reply, target, node, rules)
        info = {str(k): v for k, v in reply[1].items()}
        interception = LiveInterception(
            id=secrets.token_hex(6),
            node=node,
            pid=pid_text(info["target"]),
            name=render(info["name"], node.language),
            proxy=info["proxy"],
            ctl=info["ctl"],
            process=process,
            rules=rules,
            limits={str(k): v for k, v in info["limits"].items()},
            principal=principal,
            started_at=time.time(),
        )
        interception.proxy_ref = await process.monitor(interception.proxy)
        self.live[interception.id] = interception
        interception.task = asyncio.create_task(
            self._pump(interception), name=f"arsenal-intercept {interception.id}"
        )
        return interception

    async def _pump(self, interception: LiveInterception) -> None:
        try:
            while interception.end_reason is None:
                message = await interception.process.receive()
                batch = self._handle(interception, message)
                if batch:
                    interception.events.extend(batch)
                    for watcher in interception.watchers:
                        watcher.offer(batch)
        except Exception:  # the connection closed under us
            interception.end_reason = interception.end_reason or "node_down"
        finally:
            interception.end_reason = interception.end_reason or "stopped"
            interception.ended_at = time.time()
            for watcher in interception.watchers:
                watcher.offer(None, force=True)
            self.live.pop(interception.id, None)
            self.finished.append(interception)
            interception.finished.set()
            with contextlib.suppress(Exception):
                await interception.process.close()

    def _handle(self, interception: LiveInterception, message: Term) -> list[dict[str, Any]]:
        if not isinstance(message, tuple) or not message:
            return []
        tag = message[0]
        if tag == BATCH and len(message) == 4 and message[1] == interception.proxy:
            self._count(interception, message[3])
            return [self._event(interception, raw) for raw in message[2]]
        if tag == DONE and len(message) == 4 and message[1] == interception.proxy:
            self._count(interception, message[3])
            interception.end_reason = str(message[2])
        elif (
            tag == DOWN
            and len(message) == 5
            and message[1] == interception.proxy_ref
            and interception.end_reason is None
        ):
            # The done message comes first when the proxy ends normally; this is a crash or a lost node.
            interception.end_reason = "node_down" if message[4] == Atom("noconnection") else "proxy_down"
        return []

    @staticmethod
    def _count(interception: LiveInterception, counters: Term) -> None:
        if not isinstance(counters, dict):
            return
        values = {str(k): v for k, v in counters.items()}
        if "restored" in values:
            interception.restored = values.pop("restored") is True
        interception.counters.update(values)

    def _event(self, interception: LiveInterception, raw: Term) -> dict[str, Any]:
        seq, time_us, index, action, delay, message, truncated = raw  # type: ignore[misc]
        rule = interception.rules[index - 1] if 0 < index <= len(interception.rules) else {}
        language = interception.node.language
        event: dict[str, Any] = {
            "seq": seq,
            "time_us": time_us,
            "time": datetime.fromtimestamp(time_us / 1_000_000, UTC).isoformat(timespec="microseconds"),
            "rule": index,
            "pattern": rule.get("pattern"),
            "action": str(action),
            "message": _text(message, language, interception.node.name),
            "truncated": truncated is True,
        }
        if str(action) == "delay":
            event["delay_ms"] = delay
        if str(action) == "modify":
            event["replacement"] = rule.get("replacement_text")
        return event

    def watch(self, interception_id: str) -> Watcher:
        interception = self.live.get(interception_id)
        if interception is None:
            raise OperationError(
                ErrorCode.not_found,
                f"no running interception {interception_id}; a finished one is at "
                f"GET /api/v1/interceptions/{interception_id}",
            )
        watcher = Watcher()
        interception.watchers.append(watcher)
        return watcher

    def unwatch(self, interception_id: str, watcher: Watcher) -> None:
        interception = self.live.get(interception_id)
        if interception is not None and watcher in interception.watchers:
            interception.watchers.remove(watcher)

    async def wait(self, interception: LiveInterception, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(interception.finished.wait(), timeout)

    async def stop(self, interception_id: str, timeout: float = 10.0) -> LiveInterception:
        """Stop an interception: the proxy forwards what it holds and gives the name back."""
        interception = self.get(interception_id)
        if not interception.running:
            return interception
        if interception.node.connected:
            with contextlib.suppress(Exception):  # already ending: its done message is on its way
                await interception.node.agent_call(
                    "stop", [interception.proxy, interception.ctl], timeout, module=MODULE
                )
        await self.wait(interception, timeout)
        if not interception.finished.is_set() and interception.task is not None:
            # The node did not answer: forget it here (the proxy ends when its owner goes).
            interception.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await interception.task
        return interception

    async def aclose(self) -> None:
        for interception_id in list(self.live):
            with contextlib.suppress(Exception):
                await self.stop(interception_id, timeout=5.0)


def _text(term: Term, language: str, local_node: str | None = None) -> str:
    if isinstance(term, tuple) and len(term) == 3 and term[0] == TRUNCATED:
        preview = term[2].decode(errors="replace") if isinstance(term[2], bytes) else ""
        return f"... ({term[1]} bytes, truncated) {preview}"
    return render(term, language, max_items=MAX_ITEMS, local_node=local_node)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- errors from the agent


def refusal(reply: Term, target: str, node: Node, rules: list[dict[str, Any]]) -> OperationError:
    """The agent's ``{error, Reason}`` for a start, as an error that says what to do."""
    check_target(reply, target, node)
    check_decoded(reply, what="interception rules")
    reason = reply[1] if isinstance(reply, tuple) and len(reply) == 2 else reply
    tag = reason[0] if isinstance(reason, tuple) and reason else reason
    if tag == Atom("not_registered"):
        return OperationError(
            ErrorCode.validation_error,
            f"{target} has no registered name, so its messages cannot be intercepted: on the BEAM a "
            "message sent to a pid goes straight into its mailbox and nothing can sit in between. "
            "Only what is sent to a locally registered name can be intercepted: register the process "
            "(or route its senders through a name) and intercept that name",
            {"pid": target},
        )
    if tag == Atom("dead"):
        return OperationError(ErrorCode.not_found, f"{target} is not alive on {node.name}")
    if tag == Atom("already_intercepted"):
        return OperationError(
            ErrorCode.conflict,
            f"{target} is already intercepted (the real process is {pid_text(reason[1])}); stop that "
            "interception first (list_interceptions), or add your rules to it",
            {"pid": pid_text(reason[1])},
        )
    if tag in (Atom("name_moved"), Atom("name_taken")):
        return OperationError(
            ErrorCode.conflict,
            f"the name of {target} changed hands while the interception started; nothing was changed, "
            "try again",
        )
    if tag == Atom("bad_match_spec"):
        index, problems = reason[1], reason[2]
        pattern = rules[index - 1]["pattern"] if 0 < index <= len(rules) else "?"
        texts = [p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in problems or []]
        return OperationError(
            ErrorCode.validation_error,
            f"the node refused the pattern of rule {index} ({pattern!r}): {'; '.join(texts)[:500]}",
            {"rule": index, "problems": texts},
        )
    return OperationError(
        ErrorCode.agent_error,
        f"the interception on {node.name} could not start: {render(reason, max_items=20)}",
    )


# ---------------------------------------------------------------------- parameters and results


class RuleSpec(Params):
    pattern: str = Field(
        min_length=1,
        max_length=2000,
        description="A message pattern in the node's syntax, with variables and an optional guard: "
        "{inc, N} when N > 5 (Erlang), {:inc, n} when n > 5 (Elixir). 'call P' and 'cast P' match "
        "gen_server calls and casts whose request matches P.",
    )
    action: Action = Field(description="log (forward, report), block (drop), delay, modify.")
    delay_ms: int | None = Field(None, ge=1, le=10_000, description="For delay: milliseconds (at most 10 s).")
    replacement: Any = Field(
        None, description="For modify: the message forwarded instead (tagged JSON; atoms must exist)."
    )

    @model_validator(mode="after")
    def _fits_action(self) -> RuleSpec:
        if (self.action is Action.delay) != (self.delay_ms is not None):
            raise ValueError("delay_ms is given with (and only with) the delay action")
        if (self.action is Action.modify) != (self.replacement is not None):
            raise ValueError("replacement is given with (and only with) the modify action")
        return self


class InterceptParams(Params):
    pid: str = Field(max_length=300, description="A registered name, or the pid of a registered process.")
    rules: list[RuleSpec] = Field(
        min_length=1, max_length=20, description="Applied in order to each message; the first match wins."
    )
    duration: float = Field(60.0, ge=0.1, le=3600, description="Seconds, then the name is given back.")
    max_events: int = Field(
        10_000, ge=1, le=1_000_000, description="Reported events; past it the rules apply unreported."
    )
    max_bytes: int = Field(4096, ge=64, le=1_048_576, description="Bytes of a reported message before cut.")
    syntax: Syntax | None = Field(None, description="Pattern syntax; default: the node's language.")
    force: bool = Field(False, description="Intercept one of the VM's own processes (admin only).")


class Interception(Result):
    id: str
    node: str
    pid: str = Field(description="The real process.")
    name: str = Field(description="The registered name being intercepted.")
    proxy: str = Field(description="The proxy that holds the name meanwhile.")
    status: Literal["running", "finished"]
    end_reason: str | None = Field(
        description="stopped, max_ms, owner_down, process_exited, queue_overflow, proxy_down, node_down."
    )
    restored: bool | None = Field(
        description="Whether the name went back to the real process at the end (false: it had exited)."
    )
    started_at: float
    ended_at: float | None
    rules: list[dict[str, Any]]
    limits: dict[str, int]
    counters: dict[str, int] = Field(
        description="passed (no rule matched), logged, blocked, delayed, modified, reported, unreported "
        "(past max_events), dropped (reports lost on a busy connection), queue, forwarded_at_end."
    )
    note: str = WHERE


class InterceptionDetail(Interception):
    events: list[dict[str, Any]] = Field(
        description="The last events, oldest first: seq, time, rule, pattern, action, message, "
        "delay_ms, replacement, truncated."
    )


def _info(interception: LiveInterception) -> Interception:
    return Interception(
        id=interception.id,
        node=interception.node.name,
        pid=interception.pid,
        name=interception.name,
        proxy=pid_text(interception.proxy),
        status="running" if interception.running else "finished",
        end_reason=interception.end_reason,
        restored=interception.restored,
        started_at=interception.started_at,
        ended_at=interception.ended_at,
        rules=[{k: v for k, v in r.items() if k != "replacement_text"} for r in interception.rules],
        limits=interception.limits,
        counters={k: v for k, v in interception.counters.items() if isinstance(v, int)},
    )


def _manager(ctx: Context) -> InterceptionManager:
    return ctx.services.get(InterceptionManager)


def compile_rules(rules: list[RuleSpec], language: str) -> tuple[list[dict[str, Any]], Term]:
    """The rules as given (for reports) and as the agent takes them (safe-term encoded)."""
    shown: list[dict[str, Any]] = []
    wire: list[dict[Atom, Term]] = []
    for index, rule in enumerate(rules, 1):
        pattern = _parse(rule.pattern, language, index)
        item: dict[Atom, Term] = {Atom("match_spec"): pattern.match_spec, Atom("action"): Atom(rule.action)}
        view: dict[str, Any] = {"pattern": rule.pattern, "action": rule.action.value}
        if rule.delay_ms is not None:
            item[Atom("delay_ms")] = rule.delay_ms
            view["delay_ms"] = rule.delay_ms
        if rule.replacement is not None:
            replacement = parse_term(rule.replacement, what=f"replacement of rule {index}")
            item[Atom("replacement")] = replacement
            view["replacement"] = rule.replacement
            view["replacement_text"] = render(replacement, language)  # type: ignore[arg-type]
        shown.append(view)
        wire.append(item)
    return shown, to_wire(wire, what="interception rules")


def _parse(text: str, language: str, index: int) -> MessagePattern:
    try:
        return parse_message_pattern(text, "elixir" if language == "elixir" else "erlang")
    except TracePatternError as exc:
        raise OperationError(
            ErrorCode.validation_error, f"rule {index}, pattern {text!r}: {exc}", {"rule": index}
        ) from None


# ---------------------------------------------------------------------- operations


@register
class InterceptMessages(Operation[InterceptParams, Interception]):
    name = "intercept_messages"
    category = CATEGORY
    summary = "Intercept what is sent to a process's registered name: log, block, delay or modify by pattern."
    cost = (
        "One proxy process (high priority, off-heap mailbox) takes the registered name; every message "
        "sent to the name costs a match of the rules and one extra copy into the real process. Reports "
        "are batched (at most every 100 ms) and sent without blocking the proxy."
    )
    risk = (
        "While it runs, messages sent to the name are held, dropped or changed as the rules say: a "
        "blocked or delayed gen_server call makes its caller wait or time out. " + WHERE + " Moving "
        "the name is two steps (the VM has no atomic swap): a send to the name in that instant fails "
        "as if the process were restarting. If the proxy's mailbox passes 10 000 messages it stops "
        "intercepting. Ends after duration, on stop, when this Arsenal goes away or when the process "
        "exits; the name then goes back to the process."
    )
    severity = Severity.write
    params = InterceptParams
    result = Interception
    method = "POST"
    path = "/api/v1/processes/{pid}/intercept"
    cli_name = "intercept-messages"
    timeout = 30.0
    example = {
        "pid": "my_server",
        "rules": [
            {"pattern": "{ping, _}", "action": "block"},
            {"pattern": "call {get, K} when is_integer(K)", "action": "delay", "delay_ms": 200},
        ],
        "duration": 30,
    }

    async def execute(self, ctx: Context, params: InterceptParams) -> Interception:
        node = ctx.require_node()
        language = params.syntax.value if params.syntax else node.language
        shown, wire = compile_rules(params.rules, language)
        if params.force and ctx.principal.role != "admin":
            raise OperationError(ErrorCode.forbidden, "only an admin may force an interception")
        checked = await node.agent_call("check", [process_ref(params.pid)], module=MODULE)
        if is_agent_error(checked):  # not registered, already intercepted...: said before anything else
            raise refusal(checked, params.pid, node, shown)
        await ensure_not_protected(ctx, params.pid, force=params.force, action="intercepting the messages of")
        limits = {
            "max_ms": max(100, int(params.duration * 1000)),
            "max_events": params.max_events,
            "max_bytes": params.max_bytes,
        }
        interception = await _manager(ctx).start(node, params.pid, shown, wire, limits, ctx.principal.name)
        return _info(interception)


class ListInterceptionsParams(Params):
    running: bool = Field(False, description="Only running interceptions.")


class InterceptionList(Result):
    interceptions: list[Interception]
    running: int


@register
class ListInterceptions(Operation[ListInterceptionsParams, InterceptionList]):
    name = "list_interceptions"
    category = CATEGORY
    summary = "This Arsenal's interceptions, running and recently finished, newest first."
    cost = "A read of Arsenal's own memory; nothing reaches the node."
    risk = "None."
    params = ListInterceptionsParams
    result = InterceptionList
    path = "/api/v1/interceptions"
    cli_name = "interceptions"
    needs_node = False
    example = {"running": True}

    async def execute(self, ctx: Context, params: ListInterceptionsParams) -> InterceptionList:
        manager = _manager(ctx)
        found = [i for i in manager.all() if i.running or not params.running]
        return InterceptionList(interceptions=[_info(i) for i in found], running=len(manager.live))


class InterceptionIdParams(Params):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$", description="The interception's id.")


class GetInterceptionParams(InterceptionIdParams):
    limit: int = Field(100, ge=1, le=RING, description="The last events, at most this many.")


@register
class GetInterception(Operation[GetInterceptionParams, InterceptionDetail]):
    name = "get_interception"
    category = CATEGORY
    summary = "An interception's status, rules, counters and last events."
    cost = "A read of Arsenal's own memory (the counters are at most 100 ms old)."
    risk = "None."
    params = GetInterceptionParams
    result = InterceptionDetail
    path = "/api/v1/interceptions/{id}"
    cli_name = "interception"
    needs_node = False
    example = {"id": "0123456789ab", "limit": 50}

    async def execute(self, ctx: Context, params: GetInterceptionParams) -> InterceptionDetail:
        interception = _manager(ctx).get(params.id)
        events = list(interception.events)[-params.limit :]
        return InterceptionDetail(**_info(interception).model_dump(), events=events)


@register
class StopInterception(Operation[InterceptionIdParams, Interception]):
    name = "stop_interception"
    category = CATEGORY
    summary = "Stop an interception: the proxy forwards what it holds and gives the name back."
    cost = "One call to the proxy; it forwards its mailbox in order and exits."
    risk = (
        "Low: the original routing is restored. Messages still queued in the proxy are forwarded as they "
        "are, without the rules."
    )
    severity = Severity.write
    params = InterceptionIdParams
    result = Interception
    method = "DELETE"
    path = "/api/v1/interceptions/{id}"
    cli_name = "intercept-stop"
    needs_node = False
    example = {"id": "0123456789ab"}

    async def execute(self, ctx: Context, params: InterceptionIdParams) -> Interception:
        return _info(await _manager(ctx).stop(params.id))
