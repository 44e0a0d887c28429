"""State commands: `state-set`, `checkpoint`, `checkpoints`, `checkpoint-diff`, `rollback`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ..main import (
    CookieOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    app,
    console,
    errors,
    run_on_node,
    show,
)
from .processes import ForceOption, PidArgument


@app.command("state-set")
def state_set(
    pid: PidArgument,
    new_state: Annotated[str, typer.Argument(help="The new state (or part): Erlang/Elixir source, or JSON.")],
    node: NodeOption = None,
    cookie: CookieOption = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="elixir, erlang or json (tagged JSON).")
    ] = "elixir",
    merge: Annotated[
        str, typer.Option("--merge", "-m", help="replace, deep_merge or partial_update.")
    ] = "replace",
    path: Annotated[
        str | None, typer.Option("--path", "-p", help="For partial_update: users.alice[0].")
    ] = None,
    schema: Annotated[
        str | None, typer.Option("--schema", help="A JSON Schema (text) the new state must fit.")
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Replace a process's state atomically; prints what changed and the backup checkpoint's name."""
    params: dict[str, Any] = {"pid": pid, "format": fmt, "merge_strategy": merge, "force": force}
    try:
        params["state"] = json.loads(new_state) if fmt == "json" else new_state
        if schema is not None:
            params["json_schema"] = json.loads(schema)
    except ValueError as exc:
        errors.print(f"[red]error:[/red] not JSON: {exc}")
        raise typer.Exit(2) from None
    if path is not None:
        params["path"] = path
    result = run_on_node(node, cookie, timeout, "set_process_state", params)
    if as_json:
        show(result, True)
        return
    console.print(
        f"{result.pid}: state replaced ({result.merge_strategy}); backup checkpoint {result.backup}"
    )
    _print_changes(result.changes)


def _print_changes(changes: list[dict[str, Any]]) -> None:
    if not changes:
        console.print("  no change")
    for change in changes:
        where = ".".join(str(p) for p in change["path"]) or "(whole state)"
        console.print(f"  {change['kind']:<8} {where}: {change['old']} -> {change['new']}", highlight=False)


@app.command("checkpoint")
def checkpoint(
    pid: PidArgument,
    name: Annotated[str | None, typer.Option("--name", help="Default: cp-<time>.")] = None,
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Snapshot a process's state (and info, links, monitors, queue length)."""
    params: dict[str, Any] = {"pid": pid}
    if name:
        params["name"] = name
    result = run_on_node(node, cookie, timeout, "create_checkpoint", params)
    if as_json:
        show(result, True)
        return
    console.print(f"checkpoint {result.name} of {result.target} ({result.module}, {result.size} bytes)")


@app.command("checkpoints")
def checkpoints(
    pid: PidArgument,
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """A process's checkpoints, newest first."""
    result = run_on_node(node, cookie, timeout, "list_checkpoints", {"pid": pid})
    if as_json:
        show(result, True)
        return
    for c in result.checkpoints:
        console.print(f"{c.name:<40} {c.created_at}  {c.module}  {c.size} bytes", highlight=False)


@app.command("checkpoint-diff")
def checkpoint_diff(
    pid: PidArgument,
    name: Annotated[str, typer.Argument(help="The checkpoint.")],
    against: Annotated[
        str, typer.Option(help="Another checkpoint, or current (the live state).")
    ] = "current",
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """What differs between a checkpoint and another one (or the live state)."""
    result = run_on_node(
        node, cookie, timeout, "diff_checkpoints", {"pid": pid, "name": name, "against": against}
    )
    if as_json:
        show(result, True)
        return
    _print_changes(result.changes)


@app.command("rollback")
def rollback(
    pid: PidArgument,
    name: Annotated[str, typer.Argument(help="The checkpoint to put back.")],
    force: ForceOption = False,
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Put a checkpoint's state back into the live process (the current one is backed up)."""
    result = run_on_node(
        node, cookie, timeout, "rollback_to_checkpoint", {"pid": pid, "name": name, "force": force}
    )
    if as_json:
        show(result, True)
        return
    console.print(f"{result.pid}: back to {name}; backup checkpoint {result.backup}")
    _print_changes(result.changes)
