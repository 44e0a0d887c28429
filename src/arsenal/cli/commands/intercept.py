"""`arsenal intercept PID`: block, delay, modify or log what is sent to a process's registered name,
live, until Ctrl-C or ``--for``; then the name goes back to the process.

The interception belongs to this command: Ctrl-C (or its end) stops it, and if the command is
killed the node gives the name back by itself (the proxy's owner, this command's connection, is
gone). Only messages sent to the *name* pass through the rules; see docs/interception.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from ...client import Arsenal
from ...ops.interception import InterceptionManager, Watcher
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
)
from .trace import parse_duration

_DELAY = re.compile(r"^(?P<pattern>.+)=\s*(?P<ms>\d+)\s*(?P<unit>ms|s)?\s*$", re.S)


def _delay_rule(text: str) -> dict[str, Any]:
    """``PATTERN=MS`` (``=200``, ``=200ms``, ``=2s``); the last ``=`` splits, so guards may use ``==``."""
    match = _DELAY.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r}: write --delay 'PATTERN=MS', such as --delay '{{slow, _}}=500'")
    ms = int(match.group("ms")) * (1000 if match.group("unit") == "s" else 1)
    return {"pattern": match.group("pattern").strip(), "action": "delay", "delay_ms": ms}


def _modify_rule(text: str) -> dict[str, Any]:
    """``PATTERN -> JSON``: the message forwarded instead, as (tagged) JSON."""
    pattern, sep, replacement = text.rpartition("->")
    if not sep or not pattern.strip():
        raise typer.BadParameter(
            f"{text!r}: write --modify 'PATTERN -> JSON' (the replacement as tagged JSON)"
        )
    try:
        value = json.loads(replacement)
    except ValueError:
        raise typer.BadParameter(
            f'{replacement.strip()!r} is not JSON (tagged JSON: {{"$atom": "ok"}})'
        ) from None
    return {"pattern": pattern.strip(), "action": "modify", "replacement": value}


@app.command("intercept")
def intercept(
    pid: Annotated[str, typer.Argument(help="A registered name (or the pid of a registered process).")],
    block: Annotated[
        list[str] | None, typer.Option("--block", help="Drop messages matching PATTERN (repeatable).")
    ] = None,
    delay: Annotated[
        list[str] | None, typer.Option("--delay", help="Hold messages matching PATTERN=MS (repeatable).")
    ] = None,
    modify: Annotated[
        list[str] | None,
        typer.Option("--modify", help="Replace messages matching 'PATTERN -> JSON' (repeatable)."),
    ] = None,
    log: Annotated[
        list[str] | None, typer.Option("--log", help="Forward and show messages matching PATTERN.")
    ] = None,
    duration: Annotated[str, typer.Option("--for", help="How long: 30s, 2m (at most 1h).")] = "30s",
    max_events: Annotated[int, typer.Option("--limit", "-l", min=1, help="Events to report.")] = 10_000,
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Intercept what is sent to a registered name. Rules are tried in the order --block, --delay,
    --modify, --log; the first that matches acts. Patterns use the node's syntax: {inc, N} when N > 5
    (Erlang), {:inc, n} (Elixir); 'call P' / 'cast P' match gen_server calls / casts."""
    rules = (
        [{"pattern": p, "action": "block"} for p in block or []]
        + [_delay_rule(d) for d in delay or []]
        + [_modify_rule(m) for m in modify or []]
        + [{"pattern": p, "action": "log"} for p in log or []]
    )
    if not rules:
        errors.print("[red]error:[/red] give at least one rule: --block, --delay, --modify or --log")
        raise typer.Exit(2)
    params = {"pid": pid, "rules": rules, "duration": parse_duration(duration), "max_events": max_events}
    name = node_name(node)
    run_job(lambda: _watch(name, cookie, timeout, params, as_json))


async def _watch(
    node: str, cookie: str | None, timeout: float, params: dict[str, Any], as_json: bool
) -> None:
    async with Arsenal(cookie=cookie) as service:
        await service.attach(node, timeout=timeout, reconnect=False)
        started = await service.run("intercept_messages", params, node=node)
        manager = service.services.get(InterceptionManager)
        interception_id = started.id  # type: ignore[attr-defined]
        watcher = manager.watch(interception_id) if interception_id in manager.live else None
        if not as_json:
            errors.print(
                f"intercepting {escape(started.name)} ({started.pid}) on {node} for "  # type: ignore[attr-defined]
                f"{params['duration']:g} s — {interception_id}; only messages sent to the name pass "
                "through the rules; Ctrl-C stops and gives the name back",
                highlight=False,
            )
        try:
            if watcher is not None:
                await _stream(watcher, as_json)
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await manager.stop(interception_id)
        done = manager.get(interception_id)
        summary = {"id": interception_id, "end": done.end_reason, "restored": done.restored, **done.counters}
        if as_json:
            print(json.dumps({"summary": summary}), file=sys.stderr)
        else:
            counts = ", ".join(
                f"{k} {done.counters.get(k, 0)}"
                for k in ("passed", "logged", "blocked", "delayed", "modified")
            )
            back = (
                "the name is back with the process"
                if done.restored
                else "the name was not given back (the process had exited)"
            )
            errors.print(f"ended: {done.end_reason}; {counts}; {back}", highlight=False)


async def _stream(watcher: Watcher, as_json: bool) -> None:
    while True:
        batch = await watcher.queue.get()
        if batch is None:
            return
        for event in batch:
            if as_json:
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
            else:
                console.print(escape(event_line(event)), highlight=False, soft_wrap=True)


def event_line(event: dict[str, Any]) -> str:
    """One event as a person reads it: time, action, rule, message."""
    clock = event["time"][11:23]
    action = event["action"]
    extra = ""
    if action == "delay":
        extra = f" ({event.get('delay_ms')} ms)"
    elif action == "modify":
        extra = f" -> {event.get('replacement')}"
    message = event["message"] if len(event["message"]) <= 300 else event["message"][:299] + "…"
    return f"{clock} {action:<6} #{event['rule']} {message}{extra}"
