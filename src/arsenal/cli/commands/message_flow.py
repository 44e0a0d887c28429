"""`arsenal flow PID MESSAGE`: where one message goes; `arsenal message-patterns PID...`: who talks to whom.

Both run for a window and print what they saw: the flow as a table of messages in causal
order (indented by depth), the patterns as tables of pairs, senders and message shapes.
``--json`` prints the operation's result instead.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ...ops.message_flow import MessageFlow, MessagePatterns
from ..main import (
    CookieOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    app,
    console,
    errors,
    run_on_node,
)
from .trace import parse_duration


@app.command("flow")
def flow(
    pid: Annotated[str, typer.Argument(help="The first receiver: pid or registered name.")],
    message: Annotated[
        str,
        typer.Argument(
            help='The message as (tagged) JSON, e.g. \'{"$atom": "ping"}\'; {"$atom": "$arsenal_origin"} '
            "stands for the sender, so a message can ask for a reply."
        ),
    ],
    node: NodeOption = None,
    cookie: CookieOption = None,
    mode: Annotated[str, typer.Option("--mode", "-m", help="send, cast or call.")] = "send",
    duration: Annotated[str, typer.Option("--for", help="The window: 500ms, 2s (at most 30s).")] = "2s",
    idle: Annotated[
        str, typer.Option("--idle", help="End earlier after this long without a message (0: off).")
    ] = "0",
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=1000, help="Send and receive events, then stop.")
    ] = 200,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=64, help="Bytes per message before cut.")
    ] = 4096,
    rate: Annotated[int, typer.Option("--rate", min=1, help="Events per second before it trips.")] = 1000,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Send a message with a seq_trace token and show every message it caused, hop by hop."""
    try:
        value = json.loads(message)
    except ValueError as exc:
        errors.print(f"[red]error:[/red] the message is not JSON: {exc}", highlight=False)
        raise typer.Exit(2) from None
    params: dict[str, Any] = {
        "pid": pid,
        "message": value,
        "mode": mode,
        "window": parse_duration(duration),
        "idle": parse_duration(idle),
        "max_events": limit,
        "max_bytes": max_bytes,
        "rate": rate,
    }
    result = run_on_node(node, cookie, timeout, "trace_message_flow", params)
    assert isinstance(result, MessageFlow)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    console.print(_flow_table(result))


def _flow_table(result: MessageFlow) -> Table:
    names = {n.id: n.name for n in result.nodes}
    roles = {n.id: n.role for n in result.nodes}

    def who(pid: str) -> str:
        if roles.get(pid) == "origin":
            return f"arsenal {pid}"
        name = names.get(pid)
        return f"{name} {pid}" if name else pid

    table = Table(
        title=f"{result.node} — {len(result.edges)} messages, depth {result.max_depth}, "
        f"{result.events} events in {result.duration_ms} ms (ended: {result.end_reason})",
        title_justify="left",
    )
    for column in ("#", "depth", "from", "to", "message"):
        table.add_column(column, overflow="fold", no_wrap=column in ("#", "depth"))
    for edge in result.edges:
        arrow = "  " * (edge.depth - 1) + ("└▶" if edge.depth > 1 else "▶")
        unread = "" if edge.received_us is not None else " [yellow](not received)[/yellow]"
        table.add_row(
            str(edge.index),
            f"{edge.depth} {arrow}",
            escape(who(edge.source)),
            escape(who(edge.target)) + unread,
            escape(edge.message),
        )
    return table


@app.command("message-patterns")
def message_patterns(
    pids: Annotated[list[str], typer.Argument(help="The senders to watch (pids or names), or: all.")],
    node: NodeOption = None,
    cookie: CookieOption = None,
    duration: Annotated[str, typer.Option("--for", help="How long: 500ms, 5s, 1m (at most 60s).")] = "5s",
    max_events: Annotated[
        int, typer.Option("--max-events", min=1, max=100_000, help="Messages, then stop.")
    ] = 10_000,
    rate: Annotated[int, typer.Option("--rate", min=1, help="Messages per second before it trips.")] = 2000,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=64, help="Bytes per message before cut.")
    ] = 4096,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=50, help="Rows per table.")] = 20,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Who sends whom how many messages, and of which shapes, over a window."""
    params = {
        "pids": pids,
        "duration": parse_duration(duration),
        "max_events": max_events,
        "rate": rate,
        "max_bytes": max_bytes,
        "limit": limit,
    }
    result = run_on_node(node, cookie, timeout, "analyze_message_patterns", params)
    assert isinstance(result, MessagePatterns)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    for table in _pattern_tables(result):
        console.print(table)


def _pattern_tables(result: MessagePatterns) -> list[Table]:
    def who(pid: str, name: str | None) -> str:
        return escape(f"{name} {pid}" if name and name != pid else pid)

    pairs = Table(
        title=f"{result.node} — {result.messages} messages, {result.distinct_pairs} pairs, "
        f"{result.distinct_shapes} shapes in {result.duration_ms} ms (ended: {result.end_reason})",
        title_justify="left",
    )
    for column in ("from", "to", "count", "shapes"):
        pairs.add_column(column, overflow="fold", justify="right" if column == "count" else "left")
    for pair in result.pairs:
        shapes = ", ".join(f"{s.shape} ({s.count})" for s in pair.shapes)
        pairs.add_row(
            who(pair.source, pair.source_name),
            who(pair.target, pair.target_name),
            str(pair.count),
            escape(shapes),
        )
    talkers = Table(title="top senders and receivers", title_justify="left")
    for column in ("sender", "sent", "to", "receiver", "received", "from"):
        talkers.add_column(column, overflow="fold")
    for index in range(max(len(result.senders), len(result.receivers))):
        sender = result.senders[index] if index < len(result.senders) else None
        receiver = result.receivers[index] if index < len(result.receivers) else None
        talkers.add_row(
            who(sender.pid, sender.name) if sender else "",
            str(sender.count) if sender else "",
            str(sender.peers) if sender else "",
            who(receiver.pid, receiver.name) if receiver else "",
            str(receiver.count) if receiver else "",
            str(receiver.peers) if receiver else "",
        )
    shapes = Table(title="message shapes", title_justify="left")
    for column in ("shape", "count", "senders", "example"):
        shapes.add_column(column, overflow="fold")
    for row in result.shapes:
        shapes.add_row(escape(row.shape), str(row.count), str(row.senders), escape(row.example))
    return [pairs, talkers, shapes]
