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
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from ..client import Arsenal
from ..demo import DemoError, DemoNode
from ..dist import DistError
from ..ops.base import Result
from ..ops.errors import ErrorCode, OperationError, as_operation_error
from ..ops.processes import MAX_LIMIT, ProcessList, SortKey
from ..ops.registry import registry

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
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for the node.")]
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


def sort_key(sort: str) -> SortKey:
    """A ``--sort`` value (``memory``, ``reds``, ``queue``...) as a SortKey, or exit 2 saying which."""
    key = _SORT_ALIASES.get(sort)
    if key is None:
        errors.print(
            f"[red]error:[/red] unknown sort {sort!r}; use one of: {', '.join(sorted(_SORT_ALIASES))}"
        )
        raise typer.Exit(2)
    return key


PARAMS_HELP = "Parameters as key=value (values may be JSON); required ones also bare, in order."

# Exit codes by error code: 2 bad input, 3 not found, 4 node down or too slow, 5 refused, 1 anything else.
EXIT_CODES = {
    ErrorCode.validation_error: 2,
    ErrorCode.not_found: 3,
    ErrorCode.node_down: 4,
    ErrorCode.timeout: 4,
    ErrorCode.forbidden: 5,
    ErrorCode.read_only: 5,
    ErrorCode.protected_process: 5,
}


def _run(job: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(job())  # type: ignore[arg-type]
    except (OperationError, DistError, ValueError) as exc:
        error = as_operation_error(exc) if not isinstance(exc, ValueError) else None
        errors.print(f"[red]error:[/red] {error.message if error else exc}", highlight=False)
        raise typer.Exit(EXIT_CODES.get(error.code, 1) if error else 2) from None
    except DemoError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _on_node(
    node: str, cookie: str | None, timeout: float, operation: str, params: dict[str, Any]
) -> Result:
    """Attach to ``node``, run one operation through the registry, detach."""
    async with Arsenal(cookie=cookie) as service:
        await service.attach(node, timeout=timeout, reconnect=False)
        return await service.run(operation, params, node=node)


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
    key = sort_key(sort)
    name = _node_name(node)
    result = _run(lambda: _on_node(name, cookie, timeout, "list_processes", {"sort_by": key, "limit": limit}))
    assert isinstance(result, ProcessList)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(_table(result))


@app.command()
def info(
    pid: Annotated[str, typer.Argument(help="<0.123.0>, 0.123.0 or a registered name.")],
    node: NodeOption = None,
    cookie: CookieOption = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="A field to show (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the node.")] = 10.0,
) -> None:
    """What process_info knows of one process."""
    name = _node_name(node)
    result = _run(
        lambda: _on_node(name, cookie, timeout, "get_process_info", {"pid": pid, "fields": field or []})
    )
    _show(result, as_json)


@app.command("ops")
def list_operations(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with parameter schemas).")] = False,
) -> None:
    """Every operation Arsenal offers, with its severity and cost."""
    registry.discover()
    operations = registry.all()
    if as_json:
        print(json.dumps([op.describe() for op in operations], indent=2))
        return
    table = Table(title="Operations (arsenal run NAME k=v …)", title_justify="left")
    for column in ("name", "category", "severity", "summary"):
        table.add_column(column, overflow="fold")
    for op in operations:
        table.add_row(op.name, op.category, op.severity.value, op.summary)
    console.print(table)


@app.command("run")
def run_operation(
    operation: Annotated[str, typer.Argument(help="The operation's name (arsenal ops lists them).")],
    params: Annotated[list[str] | None, typer.Argument(help=PARAMS_HELP)] = None,
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the node.")] = 10.0,
) -> None:
    """Run any operation: arsenal run list_processes sort_by=reductions limit=5."""
    registry.discover()
    try:
        parsed = _parse_params(registry.get(operation), params or [])
    except OperationError as exc:
        errors.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(EXIT_CODES.get(exc.code, 1)) from None
    if not registry.get(operation).needs_node and node is None:
        result = run_local(operation, parsed)
    else:
        name = _node_name(node)
        result = _run(lambda: _on_node(name, cookie, timeout, operation, parsed))
    _show(result, as_json)


async def _without_node(operation: str, params: dict[str, Any]) -> Result:
    """Operations on Arsenal's own things (sandboxes, stored traces) need no attached node."""
    async with Arsenal() as service:
        return await service.run(operation, params)


def _parse_params(operation: Any, pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is taken as such (a text field keeps the text), a
    list field also takes a,b,c. A bare value is the next required parameter not given as k=v:
    ``arsenal sup-analytics my_sup`` is ``name=my_sup``."""
    fields = operation.params.model_fields
    named = [pair.partition("=") for pair in pairs if _is_named(pair, fields)]
    parsed = {key: _value(fields.get(key), text) for key, _, text in named}
    bare = [pair for pair in pairs if not _is_named(pair, fields)]
    free = [name for name, field in fields.items() if field.is_required() and name not in parsed]
    if len(bare) > len(free):
        extra = bare[len(free)]
        wanted = f"the required {', '.join(free)} and then key=value" if free else "key=value"
        raise OperationError(ErrorCode.validation_error, f"{extra!r} is not key=value (expected {wanted})")
    parsed.update({name: _value(fields[name], text) for name, text in zip(free, bare, strict=False)})
    return parsed


def _is_named(pair: str, fields: dict[str, Any]) -> bool:
    """``k=v`` with a known parameter (or any identifier) before the ``=``, not a value containing one."""
    key, sep, _ = pair.partition("=")
    return bool(sep) and (key in fields or key.isidentifier())


def _value(field: Any, text: str) -> Any:
    if field is not None and field.annotation is str:
        return text
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    if field is not None and "list" in str(field.annotation) and isinstance(value, str):
        value = [part for part in value.split(",") if part]
    return value


def _show(result: BaseModel, as_json: bool) -> None:
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        console.print(result.model_dump(mode="json"))


def _table(result: ProcessList) -> Table:
    shown = f"top {len(result.processes)} of {result.process_count} processes"
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
    for row in result.processes:
        table.add_row(
            row.pid,
            row.registered_name or "",
            human_bytes(row.memory),
            f"{row.reductions:,}",
            f"{row.message_queue_len:,}",
            row.current_function or "",
            row.initial_call or "",
        )
    return table


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(count)


@app.command()
def demo(
    stop: Annotated[bool, typer.Option("--stop", help="Stop the demo node.")] = False,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the API until Ctrl-C.")] = True,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the API.")] = 4000,
    cluster: Annotated[
        int,
        typer.Option(
            "--cluster",
            min=0,
            max=10,
            help="Start a local cluster of N demo nodes instead (the Elixir demo and plain Erlang ones), "
            "discover and serve it; the nodes stop with this command.",
        ),
    ] = 0,
) -> None:
    """Start the bundled Elixir demo node, attach to it, show how to reach it, and serve the API."""
    if cluster:
        from .commands.cluster import demo_cluster

        demo_cluster(cluster, serve=serve, port=port)
        return
    demo_node = DemoNode()
    if stop:
        stopped = _run_sync(demo_node.stop)
        console.print("demo node stopped" if stopped else "no demo node was running")
        return
    console.print("building and starting the demo node …")
    name = _run_sync(demo_node.start)

    async def job() -> tuple[Any, Result]:
        async with Arsenal() as service:
            attached = await service.attach(name, timeout=10.0, reconnect=False)
            return attached.node.info, await service.run("list_processes", {"limit": 10}, node=name)

    info, top = _run(job)
    assert isinstance(top, ProcessList)
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
    if serve:
        from .commands.serve import serve_nodes

        key = _demo_key()
        console.print(
            f"\n[bold]The dashboard[/bold] is at http://127.0.0.1:{port}/ and Arsenal's API at "
            f"http://127.0.0.1:{port}/api/v1 (interactive docs: http://127.0.0.1:{port}/api/v1/docs). "
            "Log in to the dashboard with this admin key, which every API request needs too; it was "
            "made for the demo and is shown only now:\n"
            f"  {key}\n"
            f"  curl -H 'Authorization: Bearer {key}' http://127.0.0.1:{port}/api/v1/processes?limit=5\n"
            "More keys: arsenal keys create --role viewer. Ctrl-C stops Arsenal; the demo node keeps "
            "running.",
            highlight=False,
        )
        serve_nodes([name], cookie=None, host="127.0.0.1", port=port, read_only=False, timeout=10.0)


def _demo_key() -> str:
    """A fresh admin key for this demo run (its text is printed once, only its hash is kept)."""
    from ..security.keys import KeyStore
    from ..store import Store

    store = Store()
    try:
        return KeyStore(store).create("admin", name="demo")[1]
    finally:
        store.close()


def _run_sync(job: Callable[[], T]) -> T:
    try:
        return job()
    except DemoError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


# What command modules (arsenal.cli.commands.*) use.
run_job = _run
on_node = _on_node
show = _show
node_name = _node_name


def run_local(operation: str, params: dict[str, Any]) -> Any:
    """Run one operation that needs no node (sandboxes, stored traces and recordings) and return
    its result; a failure exits with its one-line message and exit code."""
    return _run(lambda: _without_node(operation, params))


def run_on_node(
    node: str | None, cookie: str | None, timeout: float, operation: str, params: dict[str, Any]
) -> Any:
    """Run one operation on ``--node`` (or ``ARSENAL_NODE``) and return its result; a failure exits
    with its one-line message and exit code, as every command does."""
    name = _node_name(node)
    return _run(lambda: _on_node(name, cookie, timeout, operation, params))


def _load_command_modules() -> None:
    import importlib
    import pkgutil

    from . import commands

    for info in pkgutil.iter_modules(commands.__path__, f"{commands.__name__}."):
        importlib.import_module(info.name)


def _add_operation_commands() -> None:
    """Every operation that names a command (``cli_name``) and has no hand-written one gets a
    generic command: its parameters as key=value, exactly as ``arsenal run`` takes them. So the
    catalogue's CLI column is always true, and a new operation has its command at once."""
    registry.discover()
    # A command registered without a name is named after its function, as typer names it.
    taken = {
        c.name or c.callback.__name__.lower().replace("_", "-") for c in app.registered_commands if c.callback
    }
    taken |= {group.name for group in app.registered_groups if group.name}
    for operation in registry.all():
        name = operation.cli_name
        if name and " " not in name and name not in taken:
            help_text = f"{operation.summary}\n\n{_parameters_help(operation)}"
            app.command(name, help=help_text)(_operation_command(operation.name))
            taken.add(name)


def _parameters_help(operation: Any) -> str:
    fields = operation.params.model_fields
    if not fields:
        return "It takes no parameters."
    names = [f"{name} (required)" if field.is_required() else name for name, field in fields.items()]
    required = [name.upper() for name, field in fields.items() if field.is_required()]
    alone = f" The required ones may be given alone, in order: {' '.join(required)}." if required else ""
    return f"Parameters, as key=value: {', '.join(names)} (docs/operations.md: {operation.name}).{alone}"


def _operation_command(operation: str) -> Any:
    def command(
        params: Annotated[list[str] | None, typer.Argument(help=PARAMS_HELP)] = None,
        node: NodeOption = None,
        cookie: CookieOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for the node.")] = 10.0,
    ) -> None:
        run_operation(operation, params, node, cookie, as_json, timeout)

    return command


if __name__ == "__main__":
    # Run as a script, this file is `__main__`, not `arsenal.cli.main`: hand over to the real
    # module, on whose `app` the command modules register.
    from arsenal.cli.main import app as canonical_app

    canonical_app()
else:
    _load_command_modules()
    _add_operation_commands()
