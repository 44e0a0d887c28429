"""`arsenal record`, `arsenal recordings`, `arsenal replay`: record gen_server processes and replay
what they handled.

A recording started here belongs to this command: it runs for ``--for`` (or until a limit, or
Ctrl-C) and is then stored in this machine's Arsenal ($ARSENAL_HOME). ``replay`` attaches to the
recorded node (``--node`` or the recording's own) and prints every step and the divergence.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from ...client import Arsenal
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
from .trace import parse_duration


@app.command("record")
def record(
    pids: Annotated[
        list[str], typer.Argument(help="Processes to record: <0.123.0> or registered names (1-20).")
    ],
    node: NodeOption = None,
    cookie: CookieOption = None,
    duration: Annotated[str, typer.Option("--for", help="How long: 500ms, 30s, 2m (at most 10m).")] = "60s",
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, max=100_000)] = 1000,
    max_bytes: Annotated[int, typer.Option("--max-bytes", min=1024)] = 16 * 1024 * 1024,
    force: Annotated[
        bool, typer.Option("--force", help="Admins: record one of the VM's own processes.")
    ] = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Record every message the processes handle and their state after it; print the summary."""
    seconds = parse_duration(duration)
    name = node_name(node)
    params = {
        "pids": pids,
        "duration": seconds,
        "max_steps": max_steps,
        "max_bytes": max_bytes,
        "wait": True,
        "force": force,
    }

    async def job() -> Any:
        async with Arsenal(cookie=cookie) as service:
            await service.attach(name, timeout=timeout, reconnect=False)
            return await service.run("start_recording", params, node=name)

    info = run_job(job)
    if as_json:
        print(info.model_dump_json(indent=2))
        return
    targets = ", ".join(t.name or t.pid for t in info.targets)
    console.print(
        f"recording {info.id}: {info.steps} steps of {escape(targets)} ({info.end_reason}), "
        f"{info.stored_bytes or 0} bytes stored",
        highlight=False,
    )
    console.print(f"show it: arsenal recording {info.id}; replay it: arsenal replay {info.id} --pid PID")


@app.command("recordings")
def recordings(
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=500)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Stored recordings of this machine's Arsenal ($ARSENAL_HOME), newest first."""

    result = run_local("list_recordings", {"limit": limit})
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    for r in result.recordings:
        targets = ", ".join(t.name or t.pid for t in r.targets)
        console.print(
            f"{r.id}  {r.node}  {r.steps:>6} steps  {r.end_reason or r.status}  {escape(targets)}",
            highlight=False,
        )


@app.command("recording")
def recording_steps(
    recording: Annotated[str, typer.Argument(help="The recording's id (arsenal recordings).")],
    pid: Annotated[str | None, typer.Option("--pid", help="Only this recorded process's steps.")] = None,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=500)] = 50,
    as_json: JsonOption = False,
) -> None:
    """A stored recording: its processes' initial states and a page of steps."""
    if not recording.isalnum():
        errors.print(
            f"[red]error:[/red] {escape(recording)} is not a recording id; `arsenal recordings` lists them"
        )
        raise typer.Exit(2)

    page = run_local("get_recording", {"id": recording, "pid": pid, "offset": offset, "limit": limit})
    if as_json:
        print(page.model_dump_json(indent=2, by_alias=True))
        return
    info = page.recording
    console.print(
        f"{info.id} on {info.node}: {info.steps} steps ({info.end_reason or info.status})", highlight=False
    )
    for target in page.targets:
        console.print(
            f"{target.name or target.pid} initial: {escape(target.initial_state or '')}", highlight=False
        )
    for step in page.steps:
        reply = f" -> {escape(step.reply)}" if step.reply is not None else ""
        console.print(
            f"{step.step:>5} {step.pid} {step.kind:<5} {escape(step.message)}{reply}", highlight=False
        )
        if step.state is not None:
            console.print(f"      state: {escape(step.state)}", highlight=False)
    if page.next_offset is not None:
        console.print(f"more: --offset {page.next_offset}", highlight=False)


def _changes(drop: list[int], modify: list[str], insert: list[str]) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = [{"step": n, "action": "drop"} for n in drop]
    for action, items in (("modify", modify), ("insert", insert)):
        for item in items:
            step, sep, text = item.partition("=")
            if not sep or not step.strip().isdigit():
                raise typer.BadParameter(
                    f'{item!r}: write --{action} STEP=JSON, e.g. --{action} \'3={{"atom": "x"}}\''
                )
            try:
                message = json.loads(text)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{item!r}: the message is not JSON ({exc.msg})") from None
            changes.append({"step": int(step), "action": action, "message": message})
    return changes


@app.command("replay")
def replay(
    recording: Annotated[str, typer.Argument(help="The recording's id (arsenal recordings).")],
    pid: Annotated[str, typer.Option("--pid", help="Which recorded process (pid or registered name).")],
    node: NodeOption = None,
    cookie: CookieOption = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox/--live", help="Into a sandbox copy (default) or the live process.")
    ] = True,
    from_step: Annotated[
        int, typer.Option("--from", min=0, help="Start after this step (0: initial state).")
    ] = 0,
    to_step: Annotated[int | None, typer.Option("--to", min=1, help="Last step re-delivered.")] = None,
    drop: Annotated[
        list[int] | None, typer.Option("--drop", help="Do not deliver step N (repeatable).")
    ] = None,
    modify: Annotated[
        list[str] | None, typer.Option("--modify", help="N=JSON: deliver this message instead (tagged JSON).")
    ] = None,
    insert: Annotated[
        list[str] | None, typer.Option("--insert", help="N=JSON: deliver this message before step N.")
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="State path not compared, e.g. 'history[*].at'.")
    ] = None,
    keep_sandbox: Annotated[bool, typer.Option("--keep-sandbox")] = False,
    force: Annotated[bool, typer.Option("--force")] = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Replay a recording into a sandbox copy or the live process; print the steps and the divergence."""
    params: dict[str, Any] = {
        "id": recording,
        "pid": pid,
        "from_step": from_step,
        "to_step": to_step,
        "target": "sandbox" if sandbox else "live",
        "changes": _changes(drop or [], modify or [], insert or []),
        "ignore": ignore or [],
        "keep_sandbox": keep_sandbox,
        "force": force,
    }

    async def job() -> Any:
        async with Arsenal(cookie=cookie) as service:
            info = await service.run("get_recording", {"id": recording, "limit": 1})
            name = node or info.recording.node  # type: ignore[attr-defined]
            await service.attach(name, timeout=timeout, reconnect=False)
            return await service.run("replay_recording", params, node=name)

    if not recording.isalnum():
        errors.print(
            f"[red]error:[/red] {escape(recording)} is not a recording id; `arsenal recordings` lists them"
        )
        raise typer.Exit(2)
    result = run_job(job)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    for step in result.steps:
        number = f"{step.step:>5}" if step.step is not None else "  new"
        mark = {"same": "=", "different": "≠", "not_compared": "+", "dropped": "-"}.get(step.outcome, "?")
        change = f" [{step.change}]" if step.change else ""
        console.print(f"{number} {mark} {step.kind:<5} {escape(step.message)}{change}", highlight=False)
    if result.first_change is not None:
        console.print(f"first change at step {result.first_change}", highlight=False)
    divergence = result.divergence
    if divergence is None:
        console.print(f"no divergence: every state matched the recording ({result.ended})", highlight=False)
    else:
        where = f"step {divergence.step}" if divergence.step is not None else f"#{divergence.index}"
        console.print(f"diverged at {where} ({result.different_steps} steps differ)", highlight=False)
        for change in divergence.diff:
            was, now = escape(change.recorded or "-"), escape(change.replayed or "-")
            console.print(f"  {escape(change.path)}: {was} -> {now}", highlight=False)
        if divergence.reply_differs:
            was, now = escape(divergence.recorded_reply or "-"), escape(divergence.replayed_reply or "-")
            console.print(f"  reply: {was} -> {now}", highlight=False)
    if result.ended != "completed" and divergence is not None:
        console.print(result.ended, highlight=False)
