"""Message flow and message patterns: where one message goes, and who talks to whom.

``trace_message_flow`` follows one message with seq_trace (``arsenal_agent_flow``): an
origin process inside the node sends it with a sequential trace token, the VM passes the
token on with every message the first one causes, and the agent's collector (the node's
seq_trace system tracer for the window) records each send and receive. The result is a
graph: the processes, and one edge per message in causal order with its depth, taken from
the serial numbers seq_trace gives every message ({Previous, Current}: a message a process
sends carries as Previous the Current of the last traced message it received).

``analyze_message_patterns`` runs a send-only session on the trace hub (the same limits as
``trace_messages``, enforced in the node) and aggregates its raw events here, as they arrive:
pairs (sender, receiver, count), top senders and receivers, and message shapes
(``{order, _, _}``, ``binary(5)``, ``#{id, kind}``...). Nothing but the counters is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from ..beam import Node
from ..beam.trace import TraceEvent, TraceSession
from ..dist import Atom, BitString, FrozenList, FrozenMap, ImproperList, Pid, Port, Ref, StrictKey, Term
from ..terms.render import render
from .base import Context, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .plain import pid_text
from .process_control import SendMode
from .registry import register
from .safeterm import check_decoded, parse_term, to_wire
from .targets import check_target, is_agent_error, process_ref, resolve_process
from .trace_sessions import TRUNCATED, TraceManager, refusal
from .tracing import TraceLimits

__all__ = ["AnalyzeMessagePatterns", "TraceMessageFlow", "message_shape"]

CATEGORY = "tracing"
FLOW_MODULE = "arsenal_agent_flow"
MESSAGE_ITEMS = 50
MESSAGE_BINARY = 200
EXAMPLE_CHARS = 200
NAMES_PER_CALL = 2000
SHAPES_PER_PAIR = 3
SHAPE_KEYS = 8
SHAPE_KEY_BYTES = 40
# OTP messages whose interesting part is inside: {'$gen_call', From, Request} and the like.
WRAPPERS = {"$gen_call": 2, "$gen_cast": 1, "system": 2, "io_request": 3}


def _who(value: Term, node: Node) -> str:
    """A process as requests write it (``<0.N.S>``); a remote pid or a name as the node writes it."""
    if isinstance(value, Pid) and str(value.node) == node.name:
        return pid_text(value)
    return render(value, node.language, max_items=20, local_node=node.name)


def _message_text(term: Term, language: str, local_node: str | None) -> tuple[str, bool]:
    """A message as text in the node's language, and whether the node cut it to max_bytes."""
    if isinstance(term, tuple) and len(term) == 3 and term[0] == TRUNCATED:
        preview = term[2].decode(errors="replace") if isinstance(term[2], bytes) else ""
        return f"... ({term[1]} bytes, truncated) {preview}", True
    text = render(term, language, max_items=MESSAGE_ITEMS, max_binary=MESSAGE_BINARY, local_node=local_node)
    return text, False


# ====================================================================== trace_message_flow


class FlowParams(Params):
    pid: str = Field(
        max_length=300, description="The first receiver: <0.123.0>, 0.123.0 or a registered name."
    )
    message: Any = Field(
        description="The message as tagged JSON (plain JSON is a subset). The atom $arsenal_origin "
        '({"$atom": "$arsenal_origin"}) stands for the sending process, so a message can ask for a reply.'
    )
    mode: SendMode = Field(
        SendMode.send,
        description="send (!), cast ({'$gen_cast', M}) or call ({'$gen_call', {Origin, Tag}, M}: the "
        "reply comes back to the origin and is part of the flow).",
    )
    max_events: int = Field(200, ge=1, le=1000, description="Send and receive events, then it stops.")
    window: float = Field(2.0, ge=0.01, le=30, description="Seconds to follow the message.")
    idle: float = Field(
        0.0, ge=0, le=30, description="End earlier after this many seconds without an event (0: off)."
    )
    max_bytes: int = Field(4096, ge=64, le=1_048_576, description="Bytes per message before it is cut.")
    rate: int = Field(
        1000, ge=1, le=1_000_000, description="Events per rate_interval; more trips (ends) the flow."
    )
    rate_interval: float = Field(1.0, ge=0.01, le=60, description="Seconds.")


class FlowNode(Result):
    id: str = Field(description="<0.N.S>.")
    name: str | None = Field(description="Its registered name.")
    role: str = Field(description="origin (Arsenal's sender), target (the first receiver) or process.")
    alive: bool = Field(description="Alive when the flow ended (the origin never is: it is stopped).")


class FlowEdge(Result):
    index: int = Field(description="Position in causal order, from 0.")
    source: str = Field(description="The sender.")
    target: str = Field(description="The receiver (a name or {Name, Node} when it was sent to one).")
    target_name: str | None = Field(description="The name it was sent to, when sent to a registered name.")
    message: str = Field(description="The message in the node's language (cut to max_bytes).")
    truncated: bool
    serial: tuple[int, int] = Field(description="seq_trace's {Previous, Current}.")
    depth: int = Field(
        description="Hops from the origin: 1 for the first message (and for a message "
        "whose cause was not recorded)."
    )
    parent: int | None = Field(description="The index of the message whose receipt caused this one.")
    sent_us: int | None = Field(description="When it was sent (microseconds since the epoch).")
    received_us: int | None = Field(description="When it was received; null: not (yet) received.")


class MessageFlow(Result):
    node: str
    target: str
    origin: str
    nodes: list[FlowNode]
    edges: list[FlowEdge]
    max_depth: int
    end_reason: str = Field(
        description="max_ms (the window), idle, max_events, rate_limit, queue_overflow or owner_down."
    )
    events: int = Field(description="Send and receive events recorded.")
    truncated: int = Field(description="Messages cut to max_bytes.")
    duration_ms: int


@register
class TraceMessageFlow(Operation[FlowParams, MessageFlow]):
    name = "trace_message_flow"
    category = CATEGORY
    summary = (
        "Send a message with a seq_trace token and return where it went: every message it caused, as a graph."
    )
    cost = (
        "One message, then one trace message (a copy, cut to max_bytes, 4 KiB) per send and receive it "
        "causes, to a collector in the node. Limits enforced in the target: max_events (200, at most "
        "1000), the window (2 s, at most 30 s), rate events per rate_interval (1000/s; a trip ends it), "
        "10 000 messages waiting in the collector. Nothing else is traced. The node's seq_trace system "
        "tracer is held for the window and set back to none at every ending (a limit, Arsenal going "
        "away or giving up on the call); before that, seq_trace:reset_trace/0 empties every token on "
        "the node: the VM walks its processes with the schedulers stopped, about 0.1 ms per 1 000 "
        "processes (0.1 s at a million)."
    )
    risk = (
        "Write: the receiver acts on the message as its code decides (as with send_message). The token "
        "travels with everything the message causes, also into system processes (io, logger...): "
        "max_events bounds what is recorded. When the flow ends, no process and no queued message of "
        "the node keeps a token, even one that never receives another message (tokens that reached "
        "other nodes stay there). Refused (conflict) while another tool holds the seq_trace system "
        "tracer, so no one else's sequential trace is being collected when the tokens are emptied. "
        "Atoms in the message must already exist on the node."
    )
    severity = Severity.write
    params = FlowParams
    result = MessageFlow
    method = "POST"
    path = "/api/v1/traces/message-flow"
    cli_name = "flow"
    timeout = 50.0
    example = {"pid": "demo_worker_1", "message": {"$atom": "ping"}, "mode": "call", "window": 0.5}

    async def execute(self, ctx: Context, params: FlowParams) -> MessageFlow:
        node = ctx.require_node()
        wire = to_wire(parse_term(params.message))
        opts = {
            Atom("max_events"): params.max_events,
            Atom("max_ms"): max(10, int(params.window * 1000)),
            Atom("max_bytes"): params.max_bytes,
            Atom("idle_ms"): int(params.idle * 1000),
            Atom("rate"): params.rate,
            Atom("rate_ms"): max(10, int(params.rate_interval * 1000)),
        }
        owner = node.spawn_process(mailbox_size=16)
        try:
            raw = await node.agent_call(
                "follow",
                [process_ref(params.pid), wire, params.mode.value.encode(), opts, owner.pid],
                params.window + 10.0,
                module=FLOW_MODULE,
            )
        finally:
            await owner.close()
        _flow_failed(raw, params.pid, node)
        return _flow(raw[1], node)  # type: ignore[index]


def _flow_failed(raw: Term, pid: str, node: Node) -> None:
    """Raise what the agent's ``{error, Reason}`` means; return for ``{ok, _}``."""
    check_target(raw, pid, node)
    if not is_agent_error(raw):
        return
    reason = raw[1]  # type: ignore[index]
    tag = reason[0] if isinstance(reason, tuple) and reason else reason
    if tag == Atom("unknown_atom"):
        name = reason[1].decode(errors="replace") if isinstance(reason[1], bytes) else str(reason[1])
        raise OperationError(
            ErrorCode.not_found,
            f"the message names the atom '{name}', which does not exist on {node.name}, so no process "
            "there could match it (nothing was created): check the spelling",
            {"atom": name},
        )
    check_decoded(raw)
    if reason == Atom("gone"):
        raise OperationError(ErrorCode.not_found, f"{pid} is not alive on {node.name}")
    if tag == Atom("tracer_busy"):
        holder = _who(reason[1], node)
        raise OperationError(
            ErrorCode.conflict,
            f"the seq_trace system tracer of {node.name} is held by {holder} (another message flow, or "
            "a tool such as dbg or seq_trace); one flow at a time: wait for it to end, or clear it with "
            "seq_trace:set_system_tracer(false) if it is stale",
            {"tracer": holder},
        )
    if reason == Atom("timeout"):
        raise OperationError(ErrorCode.timeout, f"the message flow on {node.name} did not end in time")
    raise OperationError(
        ErrorCode.agent_error,
        f"the message flow on {node.name} failed: {render(reason, node.language, max_items=20)}",
    )


def _flow(reply: dict[Atom, Term], node: Node) -> MessageFlow:
    get = {str(k): v for k, v in reply.items()}
    language = node.language
    raw_nodes = [{str(k): v for k, v in item.items()} for item in get["nodes"]]
    raw_edges = [{str(k): v for k, v in item.items()} for item in get["edges"]]
    edges: list[FlowEdge] = []
    depths: list[int] = []
    parents = _parents(raw_edges)
    for index, edge in enumerate(raw_edges):
        parent = parents[index]
        depths.append(depths[parent] + 1 if parent is not None else 1)
        text, truncated = _message_text(edge["message"], language, node.name)
        to_name = edge["to_name"]
        edges.append(
            FlowEdge(
                index=index,
                source=_who(edge["from"], node),
                target=_who(edge["to"], node),
                target_name=None if to_name == Atom("undefined") else render(to_name, language),
                message=text,
                truncated=truncated,
                serial=(edge["previous"], edge["current"]),
                depth=depths[index],
                parent=parent,
                sent_us=_us(edge["sent_us"]),
                received_us=_us(edge["received_us"]),
            )
        )
    nodes = [
        FlowNode(
            id=_who(item["pid"], node),
            name=None if item["name"] == Atom("undefined") else render(item["name"], language),
            role=str(item["role"]),
            alive=bool(item["alive"]),
        )
        for item in raw_nodes
    ]
    return MessageFlow(
        node=node.name,
        target=_who(get["target"], node),
        origin=_who(get["origin"], node),
        nodes=nodes,
        edges=edges,
        max_depth=max(depths, default=0),
        end_reason=str(get["end_reason"]),
        events=get["events"],
        truncated=get["truncated"],
        duration_ms=get["duration_ms"],
    )


def _parents(edges: list[dict[str, Term]]) -> list[int | None]:
    """For each edge (in causal order), the edge whose receipt caused it, from the serials.

    A process's message carries as Previous the Current of the last traced message it
    received; so the cause of a message from P is the latest earlier message to P with that
    Current. None for the origin's message and for one whose cause was not recorded.
    """
    latest: dict[tuple[Any, int], int] = {}  # (receiver, Current) -> the latest such edge so far
    parents: list[int | None] = []
    for index, edge in enumerate(edges):
        parents.append(latest.get((_key(edge["from"]), edge["previous"])))
        latest[(_key(edge["to"]), edge["current"])] = index
    return parents


def _key(value: Term) -> Any:
    return (value.node, value.id, value.serial) if isinstance(value, Pid) else repr(value)


def _us(value: Term) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ====================================================================== analyze_message_patterns


class PatternsParams(Params):
    pids: list[str] = Field(
        min_length=1,
        max_length=100,
        description='The senders to watch (pids or registered names), or ["all"] for every process.',
    )
    duration: float = Field(5.0, ge=0.01, le=60, description="Seconds to watch.")
    max_events: int = Field(10_000, ge=1, le=100_000, description="Messages, then the session stops.")
    rate: int = Field(
        2000, ge=1, le=1_000_000, description="Messages per rate_interval; more trips (ends) the session."
    )
    rate_interval: float = Field(1.0, ge=0.01, le=60, description="Seconds.")
    max_bytes: int = Field(
        4096, ge=64, le=1_048_576, description="Bytes per message; a larger one counts as shape (cut)."
    )
    max_queue: int = Field(10_000, ge=100, le=1_000_000, description="Messages waiting in the tracer.")
    limit: int = Field(50, ge=1, le=50, description="Rows in each list (pairs, senders, receivers, shapes).")


class ShapeCount(Result):
    shape: str
    count: int


class PairRow(Result):
    source: str = Field(description="The sender.")
    source_name: str | None
    target: str = Field(description="The receiver (a name when it was sent to one not registered now).")
    target_name: str | None
    count: int
    shapes: list[ShapeCount] = Field(description=f"Its commonest shapes (at most {SHAPES_PER_PAIR}).")


class TalkerRow(Result):
    pid: str
    name: str | None
    count: int = Field(description="Messages sent (senders) or received (receivers).")
    peers: int = Field(description="Distinct processes it sent to (senders) or heard from (receivers).")


class ShapeRow(Result):
    shape: str = Field(
        description="{tag, _, _} for a tuple with an atom tag (OTP wrappers show their request: "
        "{'$gen_call', _, {get, _}}), the atom itself, binary(Bytes), list(), [], #{keys} for a map, "
        "integer(), pid()...; (cut) for a message over max_bytes."
    )
    count: int
    senders: int = Field(description="Distinct senders of it.")
    example: str = Field(description=f"The first such message seen (at most {EXAMPLE_CHARS} characters).")


class MessagePatterns(Result):
    node: str
    pids: list[str] = Field(description="What was watched, as given.")
    end_reason: str = Field(
        description="max_ms (the duration), max_events, rate_limit, queue_overflow, processes_exited, "
        "stopped or node_down."
    )
    messages: int = Field(description="Messages seen.")
    undelivered: int = Field(description="Of which sent to a process that did not exist.")
    dropped: int = Field(description="Events the node could not send (a busy connection).")
    truncated: int = Field(description="Messages cut to max_bytes.")
    duration_ms: int
    distinct_pairs: int
    distinct_shapes: int
    pairs: list[PairRow] = Field(description="Sender-receiver pairs, most messages first.")
    senders: list[TalkerRow]
    receivers: list[TalkerRow]
    shapes: list[ShapeRow]


@register
class AnalyzeMessagePatterns(Operation[PatternsParams, MessagePatterns]):
    name = "analyze_message_patterns"
    category = CATEGORY
    summary = "Who sends whom how many messages, and of which shapes, over a window."
    cost = (
        "A send-only trace session on the chosen processes (or every process): each message they send "
        "costs a trace message to the tracer (a copy, cut to max_bytes). Limits enforced in the target: "
        "max_events (10 000), duration (5 s), rate per rate_interval (2000/s; a trip ends the session, "
        "like recon_trace), max_queue (10 000 waiting in the tracer), max_bytes (4 KiB). Arsenal keeps "
        "counters only; one more call names the processes listed."
    )
    risk = (
        '["all"] traces every send of the node: on a busy node the rate limit ends it early (the result '
        "says so, with what was counted). Refused while another tracer (dbg, recon) traces them."
    )
    severity = Severity.write
    params = PatternsParams
    result = MessagePatterns
    method = "POST"
    path = "/api/v1/traces/message-patterns"
    cli_name = "message-patterns"
    timeout = 90.0
    example = {"pids": ["demo_worker_1"], "duration": 1, "max_events": 1000}

    async def execute(self, ctx: Context, params: PatternsParams) -> MessagePatterns:
        node = ctx.require_node()
        everything = params.pids == ["all"]
        pids = None if everything else [await resolve_process(node, text) for text in params.pids]
        limits = TraceLimits(
            max_events=params.max_events,
            duration=params.duration,
            rate=params.rate,
            rate_interval=params.rate_interval,
            max_bytes=params.max_bytes,
            max_queue=params.max_queue,
        ).limits()
        wire = {
            Atom("patterns"): [],
            Atom("flags"): [Atom("send")],
            Atom("pids"): pids if pids is not None else Atom("all"),
            Atom("limits"): {Atom(k): v for k, v in limits.items()},
            Atom("force"): False,
        }
        session = await TraceSession.start(node, to_wire(wire, what="trace spec"))
        if not isinstance(session, TraceSession):
            raise refusal(session, node, ctx.services.get(TraceManager))
        tally = Tally(node.language, node.name)
        await _pump(session, tally, params.duration + 10.0)
        end = session.end
        names = await _names(node, tally)
        return tally.result(
            node,
            params,
            names,
            end_reason=end.reason if end else "stopped",
            dropped=end.dropped if end else 0,
            duration_ms=end.duration_ms if end else 0,
        )


async def _pump(session: TraceSession, tally: Tally, timeout: float) -> None:
    """Count every batch until the session ends; whatever happens, the session ends with this call."""
    try:
        async with asyncio.timeout(timeout):
            async for batch in session.batches():
                for event in batch:
                    tally.add(event)
    except TimeoutError:
        await session.stop(5.0)
    finally:
        # Closing the owner process ends the session on the node if it still runs (a cancelled call).
        with contextlib.suppress(Exception):
            await session.close()


async def _names(node: Node, tally: Tally) -> dict[Any, Term]:
    """Pids for the registered names messages were sent to, and names for the pids listed."""
    atoms = tally.targets_by_name()[:NAMES_PER_CALL]
    resolved: dict[Any, Term] = {}
    if atoms:
        resolved.update(_pairs(await node.agent_call("names", [atoms], module=FLOW_MODULE)))
        tally.merge_names({a: p for a, p in resolved.items() if isinstance(p, Pid)})
    pids = tally.listed_pids(NAMES_PER_CALL)
    if pids:
        resolved.update(_pairs(await node.agent_call("names", [pids], module=FLOW_MODULE)))
    return resolved


def _pairs(raw: Term) -> dict[Any, Term]:
    if not isinstance(raw, list):
        return {}
    return {_key(item[0]): item[1] for item in raw if isinstance(item, tuple) and len(item) == 2}


@dataclass
class _Peer:
    """What one process sent or received: a count and the distinct others."""

    count: int = 0
    peers: set[Any] = field(default_factory=set)


class Tally:
    """Counters over send events: pairs, senders, receivers, shapes (bounded by max_events)."""

    def __init__(self, language: str, node: str | None = None) -> None:
        self.language = language
        self.node = node
        self.terms: dict[Any, Term] = {}  # key -> the pid or name it stands for
        self.pairs: Counter[tuple[Any, Any]] = Counter()
        self.pair_shapes: dict[tuple[Any, Any], Counter[str]] = {}
        self.shapes: Counter[str] = Counter()
        self.shape_senders: dict[str, set[Any]] = {}
        self.examples: dict[str, str] = {}
        self.messages = 0
        self.undelivered = 0
        self.truncated = 0

    def add(self, event: TraceEvent) -> None:
        if event.kind not in ("send", "send_to_non_existing_process"):
            return
        self.messages += 1
        self.undelivered += event.kind == "send_to_non_existing_process"
        source, target = self._remember(event.pid), self._remember(event.b)
        shape = message_shape(event.a, self.language)
        self.truncated += shape == CUT_SHAPE
        pair = (source, target)
        self.pairs[pair] += 1
        self.pair_shapes.setdefault(pair, Counter())[shape] += 1
        self.shapes[shape] += 1
        self.shape_senders.setdefault(shape, set()).add(source)
        if shape not in self.examples:
            self.examples[shape] = _message_text(event.a, self.language, self.node)[0][:EXAMPLE_CHARS]

    def _remember(self, term: Term) -> Any:
        key = _key(term)
        self.terms.setdefault(key, term)
        return key

    def targets_by_name(self) -> list[Atom]:
        """Registered names messages were sent to (send events carry the name, not the pid)."""
        keys = {target for _, target in self.pairs if isinstance(self.terms[target], Atom)}
        return [self.terms[key] for key in sorted(keys)]  # type: ignore[misc]

    def merge_names(self, pids: dict[Any, Pid]) -> None:
        """Count messages sent to a name as sent to the process registered under it now."""
        if not pids:
            return
        merged: Counter[tuple[Any, Any]] = Counter()
        shapes: dict[tuple[Any, Any], Counter[str]] = {}
        for (source, target), count in self.pairs.items():
            pid = pids.get(target)
            new = (source, self._remember(pid)) if pid is not None else (source, target)
            merged[new] += count
            shapes.setdefault(new, Counter()).update(self.pair_shapes[(source, target)])
        self.pairs, self.pair_shapes = merged, shapes

    def _talkers(self, side: int) -> dict[Any, _Peer]:
        talkers: dict[Any, _Peer] = {}
        for pair, count in self.pairs.items():
            peer = talkers.setdefault(pair[side], _Peer())
            peer.count += count
            peer.peers.add(pair[1 - side])
        return talkers

    @staticmethod
    def _top(talkers: dict[Any, _Peer], limit: int) -> list[tuple[Any, _Peer]]:
        return sorted(talkers.items(), key=lambda item: (-item[1].count, str(item[0])))[:limit]

    def listed_pids(self, cap: int, limit: int = 50) -> list[Pid]:
        keys: set[Any] = set()
        for (source, target), _ in self.pairs.most_common(limit):
            keys |= {source, target}
        for side in (0, 1):
            keys |= {key for key, _ in self._top(self._talkers(side), limit)}
        return [t for t in (self.terms[k] for k in sorted(keys, key=str)) if isinstance(t, Pid)][:cap]

    def result(
        self,
        node: Node,
        params: PatternsParams,
        names: dict[Any, Term],
        *,
        end_reason: str,
        dropped: int,
        duration_ms: int,
    ) -> MessagePatterns:
        limit = params.limit

        def who(key: Any) -> tuple[str, str | None]:
            term = self.terms[key]
            if isinstance(term, Atom):  # sent to a name no process holds now
                return render(term, self.language), render(term, self.language)
            name = names.get(key)
            shown = (
                None
                if not isinstance(name, Atom) or name == Atom("undefined")
                else render(name, self.language)
            )
            return _who(term, node), shown

        pairs = []
        for (source, target), count in sorted(self.pairs.items(), key=lambda item: (-item[1], str(item[0])))[
            :limit
        ]:
            (source_id, source_name), (target_id, target_name) = who(source), who(target)
            common = self.pair_shapes[(source, target)].most_common(SHAPES_PER_PAIR)
            pairs.append(
                PairRow(
                    source=source_id,
                    source_name=source_name,
                    target=target_id,
                    target_name=target_name,
                    count=count,
                    shapes=[ShapeCount(shape=s, count=c) for s, c in common],
                )
            )

        def talkers(side: int) -> list[TalkerRow]:
            rows = []
            for key, peer in self._top(self._talkers(side), limit):
                pid, name = who(key)
                rows.append(TalkerRow(pid=pid, name=name, count=peer.count, peers=len(peer.peers)))
            return rows

        shapes = [
            ShapeRow(
                shape=shape,
                count=count,
                senders=len(self.shape_senders[shape]),
                example=self.examples[shape],
            )
            for shape, count in sorted(self.shapes.items(), key=lambda item: (-item[1], item[0]))[:limit]
        ]
        return MessagePatterns(
            node=node.name,
            pids=params.pids,
            end_reason=end_reason,
            messages=self.messages,
            undelivered=self.undelivered,
            dropped=dropped,
            truncated=self.truncated,
            duration_ms=duration_ms,
            distinct_pairs=len(self.pairs),
            distinct_shapes=len(self.shapes),
            pairs=pairs,
            senders=talkers(0),
            receivers=talkers(1),
            shapes=shapes,
        )


# ---------------------------------------------------------------------- shapes

CUT_SHAPE = "(cut)"


def message_shape(term: Term, language: str = "erlang") -> str:
    """A message's shape: what stays the same between messages of one kind.

    ``{tag, _, _}`` for a tuple with an atom tag (for OTP's wrappers the request inside:
    ``{'$gen_call', _, {get, _}}``), an atom as itself, ``binary(5)``, ``list()``, ``[]``,
    ``#{id, kind}`` (``%{id, kind}`` and ``%Struct{}`` in Elixir), ``integer()``, ``pid()``...
    """
    if isinstance(term, tuple) and len(term) == 3 and term[0] == TRUNCATED:
        return CUT_SHAPE
    return _shape(term, language, 0)


def _shape(term: Term, language: str, depth: int) -> str:
    kind = type(term)
    if kind is Atom or kind is bool:
        return render(term, language)
    if kind is tuple:
        return _tuple_shape(term, language, depth)  # type: ignore[arg-type]
    if kind is bytes:
        return f"binary({len(term)})"  # type: ignore[arg-type]
    if kind is BitString:
        return f"bitstring({term.bit_size} bits)"  # type: ignore[union-attr]
    if kind in (list, FrozenList):
        return "[]" if not term else "list()"
    if kind is ImproperList:
        if term.items == [Atom("alias")] and isinstance(term.tail, Ref):  # type: ignore[union-attr]
            return "[alias | reference()]"
        return "list()"
    if kind in (dict, FrozenMap):
        return _map_shape(term, language)
    simple = {int: "integer()", float: "float()", Pid: "pid()", Port: "port()", Ref: "reference()"}
    return simple.get(kind, "fun()")


def _tuple_shape(term: tuple[Term, ...], language: str, depth: int) -> str:
    if not term:
        return "{}"
    if depth > 0:
        return f"{{{render(term[0], language)}, ...}}" if type(term[0]) is Atom else "tuple()"
    head = term[0]
    if type(head) is Atom:
        parts = [render(head, language)] + ["_"] * (len(term) - 1)
        inner = WRAPPERS.get(str(head))
        if inner is not None and len(term) == inner + 1:
            parts[inner] = _shape(term[inner], language, 1)
        return "{" + ", ".join(parts) + "}"
    return "{" + ", ".join([_shape(head, language, 1)] + ["_"] * (len(term) - 1)) + "}"


def _map_shape(term: Any, language: str) -> str:
    pairs = list(term.items()) if isinstance(term, dict) else list(term)
    keys = [k.value if type(k) is StrictKey else k for k, _ in pairs]
    struct = next((v for k, v in pairs if k == Atom("__struct__")), None)
    if struct is not None and type(struct) is Atom and language == "elixir":
        return f"%{render(struct, 'elixir')}{{}}"
    names = sorted(_key_shape(k, language) for k in keys)
    shown = names[:SHAPE_KEYS] + (["..."] if len(names) > SHAPE_KEYS else [])
    opening = "%{" if language == "elixir" else "#{"
    return opening + ", ".join(shown) + "}"


def _key_shape(key: Term, language: str) -> str:
    """Map keys name the fields: atoms and short binaries as themselves, others by their type."""
    if type(key) is Atom or (type(key) is bytes and len(key) <= SHAPE_KEY_BYTES):
        return render(key, language)
    return _shape(key, language, 1)
