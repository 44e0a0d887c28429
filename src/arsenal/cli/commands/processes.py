"""Process control commands: `state`, `kill`, `suspend`, `resume`, `send`, `messages`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..main import (
    CookieOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    app,
    errors,
    run_on_node,
    show,
)

PidArgument = Annotated[str, typer.Argument(help="<0.123.0>, 0.123.0 or a registered name.")]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Act on one of the VM's own processes too (admin only).")
]


@app.command("state")
def state(
    pid: PidArgument,
    node: NodeOption = None,
    cookie: CookieOption = None,
    call_timeout: Annotated[
        float, typer.Option("--call-timeout", min=0.001, max=30, help="Seconds sys:get_state may take.")
    ] = 5.0,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """The state of a gen_server (or gen_statem, supervisor...), as sys:get_state sees it."""
    show(
        run_on_node(node, cookie, timeout, "get_genserver_state", {"pid": pid, "timeout": call_timeout}),
        as_json,
    )


@app.command("kill")
def kill(
    pid: PidArgument,
    node: NodeOption = None,
    cookie: CookieOption = None,
    reason: Annotated[str, typer.Option("--reason", help="The exit reason (an existing atom).")] = "kill",
    force: ForceOption = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Send a process an exit signal and say whether it died."""
    show(
        run_on_node(node, cookie, timeout, "kill_process", {"pid": pid, "reason": reason, "force": force}),
        as_json,
    )


@app.command("suspend")
def suspend(
    pid: PidArgument,
    node: NodeOption = None,
    cookie: CookieOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Suspend a process until `arsenal resume`."""
    show(run_on_node(node, cookie, timeout, "suspend_process", {"pid": pid, "force": force}), as_json)


@app.command("resume")
def resume(
    pid: PidArgument,
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Resume a process that `arsenal suspend` suspended."""
    show(run_on_node(node, cookie, timeout, "resume_process", {"pid": pid}), as_json)


@app.command("send")
def send(
    pid: PidArgument,
    message: Annotated[
        str, typer.Argument(help='The message as (tagged) JSON, e.g. \'{"$atom": "ping"}\' or \'[1, "x"]\'.')
    ],
    node: NodeOption = None,
    cookie: CookieOption = None,
    mode: Annotated[str, typer.Option("--mode", "-m", help="send, cast or call.")] = "send",
    call_timeout: Annotated[
        float, typer.Option("--call-timeout", min=0.001, max=30, help="Seconds a call waits.")
    ] = 5.0,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Send a process a message (plain send, gen_server cast, or call and print the reply)."""
    try:
        value = json.loads(message)
    except ValueError as exc:
        errors.print(f"[red]error:[/red] the message is not JSON: {exc}", highlight=False)
        raise typer.Exit(2) from None
    params = {"pid": pid, "message": value, "mode": mode, "timeout": call_timeout}
    show(run_on_node(node, cookie, timeout, "send_message", params), as_json)


@app.command("messages")
def messages(
    pid: PidArgument,
    node: NodeOption = None,
    cookie: CookieOption = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=100, help="How many messages.")] = 10,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Peek at the first messages in a process's mailbox (refused for huge mailboxes)."""
    show(run_on_node(node, cookie, timeout, "get_process_messages", {"pid": pid, "limit": limit}), as_json)
