"""`arsenal trace`: watch calls, messages or one process live; `traces` and `trace-export` read the store.

A trace started here belongs to this command: it stops at its first limit, on Ctrl-C, or
when the command goes away (the node ends a session whose owner is gone). Events print as
they arrive; with ``--json`` each is one JSON object on its own line (the summary goes to
stderr), so a script can read the stream as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from ...client import Arsenal
from ...ops.trace_sessions import TraceManager, Watcher
from ..main import (
    CookieOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    app,
    console,
    errors,
    node_name,
    run_job,
    run_local,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``500ms``, ``10s``, ``2m``, ``1h`` or plain seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration: write 500ms, 10s, 2m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _plan(
    patterns: list[str], messages: list[str], process: str | None, pids: list[str], options: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    chosen = sum(1 for x in (patterns and not process, messages, process) if x)
    if chosen != 1:
        errors.print(
            "[red]error:[/red] trace either functions (PATTERN...), --messages PID (repeatable, or all), "
            "or --process PID (with optional PATTERNs for its calls)"
        )
        raise typer.Exit(2)
    if process:
        return "trace_process", {"pid": process, "patterns": patterns, **options}
    if messages:
        return "trace_messages", {"pids": messages, **options}
    return "trace_calls", {"patterns": patterns, "pids": pids or None, **options}


@app.command("trace")
def trace(
    patterns: Annotated[
        list[str] | None,
        typer.Argument(help="Functions: 'mod:fun/2', 'mod:fun(X) when X > 1 -> return', 'Mod.fun/1'."),
    ] = None,
    node: NodeOption = None,
    cookie: CookieOption = None,
    messages: Annotated[
        list[str] | None, typer.Option("--messages", help="Trace this process's messages (repeatable; all).")
    ] = None,
    process: Annotated[
        str | None, typer.Option("--process", help="Trace one process: messages, spawns, links, exit.")
    ] = None,
    pid: Annotated[
        list[str] | None, typer.Option("--pid", help="Only calls by this process (repeatable).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=1_000_000, help="Events, then stop.")
    ] = 100,
    duration: Annotated[str, typer.Option("--for", help="How long: 500ms, 10s, 2m.")] = "15s",
    rate: Annotated[int, typer.Option("--rate", min=1, help="Events per second before it trips.")] = 1000,
    max_bytes: Annotated[int, typer.Option("--max-bytes", min=64, help="Bytes per event before cut.")] = 4096,
    force: Annotated[bool, typer.Option("--force", help="Allow every function of a hot module.")] = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Trace live, with the limits enforced inside the node (like recon_trace / redbug)."""
    seconds = parse_duration(duration)
    options: dict[str, Any] = {"max_events": limit, "duration": seconds, "rate": rate, "max_bytes": max_bytes}
    if force:
        options["force"] = True
    operation, params = _plan(patterns or [], messages or [], process, pid or [], options)
    name = node_name(node)
    run_job(lambda: _watch(name, cookie, timeout, operation, params, as_json))


async def _watch(
    node: str, cookie: str | None, timeout: float, operation: str, params: dict[str, Any], as_json: bool
) -> None:
    async with Arsenal(cookie=cookie) as service:
        await service.attach(node, timeout=timeout, reconnect=False)
        started = await service.run(operation, params, node=node)
        manager = service.services.get(TraceManager)
        trace_id = started.id  # type: ignore[attr-defined]
        watcher = manager.watch(trace_id) if trace_id in manager.live else None
        if not as_json:
            what = ", ".join(f"{p.pattern} ({p.functions} fn)" for p in started.patterns) or operation  # type: ignore[attr-defined]
            errors.print(
                f"tracing {escape(what)} on {node} — session {trace_id}; Ctrl-C stops", highlight=False
            )
        live_view = not as_json and console.is_terminal
        try:
            if watcher is not None:
                if live_view:
                    await _live(watcher, params, started.started_at)  # type: ignore[attr-defined]
                else:
                    await _stream(watcher, as_json)
        except (KeyboardInterrupt, asyncio.CancelledError):
            await manager.stop(trace_id)
        finally:
            with contextlib.suppress(Exception):
                await manager.stop(trace_id)
        record = manager.store.get(trace_id)
        if record is not None:
            summary = {
                "id": trace_id,
                "end": record.end_reason,
                "events": record.events,
                "dropped": record.dropped,
            }
            if as_json:
                print(json.dumps({"summary": summary}), file=sys.stderr)
            else:
                errors.print(
                    f"{record.events} events; ended: {record.end_reason}"
                    + (f" ({record.dropped} dropped by the node)" if record.dropped else ""),
                    highlight=False,
                )


async def _stream(watcher: Watcher, as_json: bool) -> None:
    while True:
        batch = await watcher.queue.get()
        if batch is None:
            return
        for event in batch:
            _print_event(event, as_json)


async def _live(watcher: Watcher, params: dict[str, Any], started_at: float) -> None:
    """Events scroll above a status line that shows the session against its limits, refreshed
    four times a second (a terminal only: pipes get plain lines)."""
    count = 0
    limit, duration, rate = params["max_events"], params["duration"], params["rate"]

    def status() -> Text:
        elapsed = time.time() - started_at
        dropped = f" · {watcher.dropped} not shown (terminal too slow)" if watcher.dropped else ""
        return Text(
            f"{count}/{limit} events · {elapsed:.1f}/{duration:g} s · trips above {rate}/s · Ctrl-C stops"
            + dropped,
            style="dim",
        )

    with Live(status(), console=console, refresh_per_second=4, transient=True) as live:
        while True:
            try:
                batch = await asyncio.wait_for(watcher.queue.get(), 0.25)
            except TimeoutError:
                live.update(status())
                continue
            if batch is None:
                return
            for event in batch:
                count += 1
                live.console.print(escape(event_line(event)), highlight=False, soft_wrap=True)
            live.update(status())


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
        return
    console.print(escape(event_line(event)), highlight=False, soft_wrap=True)


MAX_FIELD = 300


def _short(text: str) -> str:
    """A long argument, message or result cut for the terminal (--json and the store keep it all)."""
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "…"


def event_line(event: dict[str, Any]) -> str:
    """One event as a person reads it: time, pid, then what happened (long terms cut)."""
    event = {k: _short(v) if isinstance(v, str) else v for k, v in event.items()}
    if isinstance(event.get("args"), list):
        event["args"] = [_short(a) for a in event["args"]]
    clock = event["time"][11:26]
    kind, pid = event["kind"], event["pid"]
    if kind == "call":
        name = event["mfa"].rsplit("/", 1)[0]
        caller = f"  (from {event['caller']})" if event.get("caller") else ""
        return f"{clock} {pid} call {name}({', '.join(event['args'])}){caller}"
    if kind == "return_from":
        return f"{clock} {pid} {event['mfa']} -> {event['result']}"
    if kind == "exception_from":
        return f"{clock} {pid} {event['mfa']} raised {event.get('class')}:{event.get('reason')}"
    if kind in ("send", "send_to_non_existing_process"):
        return f"{clock} {pid} ! {event['message']} -> {event['to']}"
    if kind == "receive":
        return f"{clock} {pid} << {event['message']}"
    if kind == "exit":
        return f"{clock} {pid} exit {event['reason']}"
    if kind in ("spawn", "spawned"):
        return f"{clock} {pid} {kind} {event['other']} {event['mfa']}"
    detail = event.get("other") or event.get("name") or event.get("data") or ""
    return f"{clock} {pid} {kind} {detail}"


@app.command("traces")
def traces(
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=500)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Stored trace sessions of this machine's Arsenal ($ARSENAL_HOME), newest first."""

    result = run_local("list_traces", {"limit": limit})
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    for t in result.traces:
        console.print(
            f"{t.id}  {t.kind:<8} {t.node}  {t.events:>6} events  {t.end_reason or t.status}", highlight=False
        )


@app.command("trace-export")
def trace_export(trace_id: Annotated[str, typer.Argument(help="The session's id (arsenal traces).")]) -> None:
    """A stored session's events as JSON lines on stdout."""

    async def job() -> None:
        async with Arsenal() as service:
            manager = service.services.get(TraceManager)
            if not trace_id.isalnum() or manager.store.get(trace_id) is None:
                errors.print(
                    f"[red]error:[/red] no trace session {escape(trace_id)}; `arsenal traces` lists them"
                )
                raise typer.Exit(3)
            for line in manager.store.export_lines(trace_id):
                sys.stdout.write(line)

    run_job(job)
