"""The ``arsenal`` command line: presentation only, calling the operations.

Errors from any layer are shown as one plain line (no traceback) and exit with
status 1 (2 for bad usage).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ..beam import Node
from ..demo import DemoError, DemoNode
from ..dist import DistError
from ..ops.processes import MAX_LIMIT, SortKey, TopProcesses, top_processes

app = typer.Typer(
    name="arsenal",
    help="Look inside and operate live Erlang and Elixir nodes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Output that is not a terminal (a pipe, a file, CI) gets room for every column.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)

T = TypeVar("T")

NodeOption = Annotated[
    str | None,
    typer.Option(
        "--node", "-n", help="Node to attach to, name@host (or name on this host). Env: ARSENAL_NODE."
    ),
]
CookieOption = Annotated[
    str | None,
    typer.Option(
        help="Distribution cookie. Default: ARSENAL_COOKIE, then ~/.erlang.cookie.", show_default=False
    ),
]

_SORT_ALIASES = {
    "memory": SortKey.memory,
    "mem": SortKey.memory,
    "reductions": SortKey.reductions,
    "reds": SortKey.reductions,
    "message_queue_len": SortKey.message_queue_len,
    "queue": SortKey.message_queue_len,
    "mq": SortKey.message_queue_len,
}


def _run(job: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(job())  # type: ignore[arg-type]
    except (DistError, DemoError, ValueError) as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _node_name(node: str | None) -> str:
    name = node or os.environ.get("ARSENAL_NODE")
    if not name:
        errors.print("[red]error:[/red] say which node: --node name@host (or set ARSENAL_NODE)")
        raise typer.Exit(2)
    return name


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


@app.command()
def ps(
    node: NodeOption = None,
    cookie: CookieOption = None,
    sort: Annotated[
        str,
        typer.Option("--sort", "-s", help="memory (mem), reductions (reds) or message_queue_len (queue)."),
    ] = "memory",
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=MAX_LIMIT, help="How many processes.")
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the node.")] = 10.0,
) -> None:
    """The top processes of a node, ranked inside the VM (no full process list crosses the wire)."""
    key = _SORT_ALIASES.get(sort)
    if key is None:
        errors.print(
            f"[red]error:[/red] unknown sort {sort!r}; use one of: {', '.join(sorted(_SORT_ALIASES))}"
        )
        raise typer.Exit(2)
    name = _node_name(node)

    async def job() -> TopProcesses:
        async with Node(name, cookie=cookie, timeout=timeout, reconnect=False) as attached:
            return await top_processes(attached, key, limit)

    result = _run(job)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        console.print(_table(result))


def _table(result: TopProcesses) -> Table:
    shown = f"top {len(result.rows)} of {result.process_count} processes"
    table = Table(title=f"{result.node} — {shown} by {result.sort.value}", title_justify="left")
    # Pids and figures never wrap; names and functions fold to fit narrow terminals.
    for column, justify, wrap in (
        ("pid", "left", False),
        ("name", "left", True),
        ("memory", "right", False),
        ("reductions", "right", False),
        ("queue", "right", False),
        ("current function", "left", True),
        ("initial call", "left", True),
    ):
        table.add_column(column, justify=justify, overflow="fold", no_wrap=not wrap)  # type: ignore[arg-type]
    for row in result.rows:
        data = row.to_json(result.language)
        table.add_row(
            data["pid"],
            data["registered_name"] or "",
            _bytes(row.memory),
            f"{row.reductions:,}",
            f"{row.message_queue_len:,}",
            data["current_function"] or "",
            data["initial_call"] or "",
        )
    return table


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(count)


@app.command()
def demo(
    stop: Annotated[bool, typer.Option("--stop", help="Stop the demo node.")] = False,
) -> None:
    """Build and start the bundled Elixir demo node, attach to it, and show how to reach it."""
    demo_node = DemoNode()
    if stop:
        stopped = _run_sync(demo_node.stop)
        console.print("demo node stopped" if stopped else "no demo node was running")
        return
    console.print("building and starting the demo node …")
    name = _run_sync(demo_node.start)

    async def job() -> tuple[Node, TopProcesses]:
        async with Node(name, timeout=10.0, reconnect=False) as attached:
            return attached, await top_processes(attached, SortKey.memory, 10)

    attached, top = _run(job)
    info = attached.info
    console.print(_table(top))
    console.print(
        f"\n[bold]The demo node is up:[/bold] {name} ({info.language}, OTP {info.otp_release}, "
        f"{info.process_count} processes; Arsenal's agent {info.agent_version} is loaded).\n"
        f"It uses the cookie in ~/.erlang.cookie, so these reach it directly:\n"
        f"  arsenal ps --node {name} --sort memory --limit 10\n"
        f"  arsenal ps --node {name} --sort reductions --json\n"
        f"  iex --sname probe --remsh {name}\n"
        f"Its log is {demo_node.log_file}. Stop it with: arsenal demo --stop"
    )


def _run_sync(job: Callable[[], T]) -> T:
    try:
        return job()
    except DemoError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
