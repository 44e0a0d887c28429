"""`arsenal sandbox ...` and `arsenal repl`: sandboxes from the command line.

A sandbox outlives the command that created it (until it is destroyed or its lifetime ends);
every Arsenal sharing ``ARSENAL_HOME`` sees it. `arsenal repl ID` keeps a session with
bindings, multi-line input, history (``$ARSENAL_HOME/repl_history``) and Tab completion of
module and function names from the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ...client import Arsenal
from ...ops.base import Result
from ...ops.repl import Repl, ReplReply
from ...sandbox.manager import SandboxManager
from ...store import default_home
from ..main import JsonOption, app, console, errors, human_bytes, run_job, run_local
from .trace import parse_duration

sandbox_app = typer.Typer(
    help="Sandboxes: separate nodes Arsenal starts for experiments (create, list, info, eval, reload...).",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")

IdArgument = Annotated[str, typer.Argument(help="The sandbox's id.")]


def _print_json(result: Result) -> None:
    print(result.model_dump_json(indent=2))


@sandbox_app.command("create")
def create(
    sandbox_id: IdArgument,
    template: Annotated[str | None, typer.Option(help="worker_pool, pubsub, pipeline or cascade.")] = None,
    source: Annotated[
        Path | None, typer.Option(help="A mix project or Erlang project directory to compile in the sandbox.")
    ] = None,
    file: Annotated[list[Path] | None, typer.Option(help="A source file (repeatable): .ex or .erl.")] = None,
    app_name: Annotated[
        str | None, typer.Option("--app", help="With --file: the application to start.")
    ] = None,
    mod: Annotated[str | None, typer.Option(help="With --file: the application's callback module.")] = None,
    language: Annotated[
        str, typer.Option(help="elixir or erlang (for --file, or an empty sandbox).")
    ] = "elixir",
    lifetime: Annotated[str, typer.Option(help="Wall-clock lifetime: 30m, 2h...")] = "1h",
    max_memory: Annotated[int, typer.Option(help="Memory limit of the node, MiB.")] = 1024,
    max_processes: Annotated[int, typer.Option(help="Process limit (+P).")] = 32768,
    max_heap: Annotated[int, typer.Option(help="Heap limit of one process, MiB (0: none).")] = 256,
    schedulers: Annotated[int, typer.Option(help="Scheduler threads.")] = 1,
    cpu_seconds: Annotated[int | None, typer.Option(help="CPU-time limit, seconds.")] = None,
    persistent: Annotated[bool, typer.Option(help="`arsenal serve` starts it again when it starts.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a sandbox from a template, a project directory, files, or nothing (for the REPL)."""
    params: dict[str, Any] = {
        "sandbox_id": sandbox_id,
        "language": language,
        "persistent": persistent,
        "limits": {
            "lifetime_s": max(10, int(parse_duration(lifetime))),
            "max_memory_mb": max_memory,
            "max_processes": max_processes,
            "max_heap_mb": max_heap,
            "schedulers": schedulers,
            "cpu_seconds": cpu_seconds,
        },
    }
    if template:
        params["template"] = template
    if source is not None:
        params["path"] = str(source.resolve())
    if file:
        try:
            files = {path.name: path.read_text() for path in file}
        except OSError as exc:
            errors.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        params["source"] = {"language": language, "files": files, "app": app_name, "mod": mod}
    result = run_local("create_sandbox", params)
    if as_json:
        _print_json(result)
        return
    console.print(
        f"sandbox [bold]{result.sandbox_id}[/bold] is {result.status} on {result.node}\n"
        f"  arsenal sandbox info {result.sandbox_id}\n  arsenal repl {result.sandbox_id}\n"
        f"  arsenal sandbox destroy {result.sandbox_id}",
        highlight=False,
    )


@sandbox_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """Every sandbox of this ARSENAL_HOME."""
    result = run_local("list_sandboxes", {})
    if as_json:
        _print_json(result)
        return
    if not result.sandboxes:
        console.print("no sandboxes; create one with `arsenal sandbox create ID --template worker_pool`")
    for s in result.sandboxes:
        what = s.template or s.language
        reason = f"  ({s.stop_reason})" if s.stop_reason else ""
        console.print(f"{s.sandbox_id:<20} {s.status:<9} {what:<12} {s.node or ''}{reason}", highlight=False)


@sandbox_app.command("info")
def info(sandbox_id: IdArgument, as_json: JsonOption = False) -> None:
    """Status, limits and usage, processes, applications and module versions."""
    result = run_local("get_sandbox_info", {"sandbox_id": sandbox_id})
    if as_json:
        _print_json(result)
        return
    s, limits = result.sandbox, result.limits
    console.print(f"[bold]{s.sandbox_id}[/bold]: {s.status} on {s.node}", highlight=False)
    if s.stop_reason:
        console.print(f"  stopped: {s.stop_reason}", highlight=False)
    if result.usage:
        u = result.usage
        console.print(
            f"  memory {human_bytes(u['memory_bytes'])} of {limits.max_memory_mb} MiB, "
            f"processes {u['process_count']}/{u['process_limit']}, schedulers {u['schedulers']}, "
            f"up {u['uptime_ms'] // 1000} s of {limits.lifetime_s} s",
            highlight=False,
        )
    for a in result.applications:
        console.print(f"  app {a['name']} {a['vsn']}", highlight=False)
    for m in result.modules:
        console.print(f"  module {m.module} v{m.current}", highlight=False)


@sandbox_app.command("destroy")
def destroy(sandbox_id: IdArgument) -> None:
    """Stop the sandbox and remove everything of it (node, OS processes, files, record)."""
    run_local("destroy_sandbox", {"sandbox_id": sandbox_id})
    console.print(f"sandbox {sandbox_id} destroyed", highlight=False)


@sandbox_app.command("restart")
def restart(sandbox_id: IdArgument) -> None:
    """Start the sandbox again from its spec (state starts over)."""
    result = run_local("restart_sandbox", {"sandbox_id": sandbox_id})
    console.print(f"sandbox {sandbox_id} is {result.status} on {result.node}", highlight=False)


@sandbox_app.command("eval")
def eval_(
    sandbox_id: IdArgument,
    code: Annotated[str, typer.Argument(help="Code to evaluate; - reads it from stdin.")],
    binding: Annotated[
        list[str] | None, typer.Option("--binding", "-b", help="name=JSON (tagged JSON term), repeatable.")
    ] = None,
    language: Annotated[str | None, typer.Option(help="elixir or erlang (default: the sandbox's).")] = None,
    timeout: Annotated[str, typer.Option(help="Kill the evaluation after this: 500ms, 5s...")] = "5s",
    as_json: JsonOption = False,
) -> None:
    """Evaluate code in the sandbox: prints its output, then its value (exit 1 if it failed)."""
    text = sys.stdin.read() if code == "-" else code
    bindings: dict[str, Any] = {}
    for item in binding or []:
        name, sep, value = item.partition("=")
        try:
            bindings[name] = json.loads(value) if sep else None
        except ValueError:
            errors.print(f"[red]error:[/red] --binding {escape(item)}: the value is not JSON")
            raise typer.Exit(2) from None
    params: dict[str, Any] = {
        "sandbox_id": sandbox_id,
        "code": text,
        "binding": bindings,
        "timeout_ms": max(1, int(parse_duration(timeout) * 1000)),
    }
    if language:
        params["language"] = language
    result = run_local("inject_code", params)
    if as_json:
        _print_json(result)
    else:
        if result.output:
            sys.stdout.write(result.output)
        for warning in result.warnings:
            errors.print(f"[yellow]warning:[/yellow] {escape(str(warning.get('message', warning)))}")
        if result.ok:
            print(result.value)
        else:
            e = result.error or {}
            where = f" (line {e['line']})" if "line" in e else ""
            errors.print(f"[red]{e.get('kind', 'error')}{where}:[/red] {escape(str(e.get('message', '')))}")
    if not result.ok:
        raise typer.Exit(1)


@sandbox_app.command("reload")
def reload(
    sandbox_id: IdArgument,
    module: Annotated[str, typer.Argument(help="The module, e.g. Counter or my_mod.")],
    file: Annotated[Path, typer.Argument(help="Its new source file.")],
    force: Annotated[bool, typer.Option(help="Load even if processes still run old code.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Hot-swap a module from a source file, keeping its processes' state (code_change)."""
    try:
        source = file.read_text()
    except OSError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    language = "erlang" if file.suffix == ".erl" else "elixir"
    result = run_local(
        "hot_swap_module",
        {"sandbox_id": sandbox_id, "module": module, "source": source, "language": language, "force": force},
    )
    if as_json:
        _print_json(result)
        return
    console.print(f"{result.module} is now v{result.version}", highlight=False)
    for p in result.processes:
        changed = "state changed" if p.get("state_changed") else "state kept"
        console.print(
            f"  {p['pid']} {p.get('name') or ''}: code_change {p['code_change']}, {changed}", highlight=False
        )
    if result.exports_removed:
        console.print(f"  [yellow]exports removed:[/yellow] {', '.join(result.exports_removed)}")
    for warning in result.warnings:
        console.print(
            f"  [yellow]warning:[/yellow] line {warning.get('line')}: {escape(str(warning.get('message')))}"
        )


@sandbox_app.command("versions")
def versions(sandbox_id: IdArgument, module: str, as_json: JsonOption = False) -> None:
    """The versions of a module Arsenal loaded into the sandbox."""
    result = run_local("list_module_versions", {"sandbox_id": sandbox_id, "module": module})
    if as_json:
        _print_json(result)
        return
    for v in result.versions:
        mark = "*" if v.current else " "
        console.print(f"{mark} v{v.version:<3} {v.note:<16} {v.md5[:12]} {v.created_at}", highlight=False)


@sandbox_app.command("rollback")
def rollback(sandbox_id: IdArgument, module: str, version: int) -> None:
    """Load a stored version of a module again."""
    result = run_local("rollback_module", {"sandbox_id": sandbox_id, "module": module, "version": version})
    console.print(f"{result.module} is v{version} again (recorded as v{result.version})", highlight=False)


# ---------------------------------------------------------------------- the REPL


@app.command()
def repl(
    sandbox_id: IdArgument,
    language: Annotated[str | None, typer.Option(help="elixir or erlang (default: the sandbox's).")] = None,
    timeout: Annotated[str, typer.Option(help="Each input is killed after this.")] = "5s",
) -> None:
    """An interactive session in a sandbox (:help lists the magic commands; Ctrl-D leaves)."""
    run_job(lambda: _repl(sandbox_id, language, max(1, int(parse_duration(timeout) * 1000))))


async def _repl(sandbox_id: str, language: str | None, timeout_ms: int) -> None:
    async with Arsenal() as service:
        manager = service.services.get(SandboxManager)
        session = await Repl(manager, sandbox_id, language=language).start()
        session.timeout_ms = timeout_ms
        interactive = sys.stdin.isatty()
        loop = asyncio.get_running_loop()
        if interactive:
            _readline_setup(session, loop)
            console.print(f"sandbox {sandbox_id} ({session.language}); :help for commands, Ctrl-D to leave")
        try:
            await _read_eval_print(session, interactive)
        finally:
            await session.close()
            if interactive:
                _readline_save()


async def _read_eval_print(session: Repl, interactive: bool) -> None:
    buffer: list[str] = []
    while True:
        prompt = ("...> " if buffer else f"{session.sandbox_id}> ") if interactive else ""
        try:
            line = (
                await asyncio.to_thread(input, prompt)
                if interactive
                else await asyncio.to_thread(_stdin_line)
            )
        except EOFError:
            if buffer:
                await _show(await session.handle("\n".join(buffer)))
            return
        buffer.append(line)
        text = "\n".join(buffer)
        if not line.strip().startswith(":") and not await session.is_complete(text):
            continue
        buffer = []
        await _show(await session.handle(text))


def _stdin_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


async def _show(reply: ReplReply) -> None:
    output = reply.data.get("output")
    if output:
        sys.stdout.write(output)
    for warning in reply.data.get("warnings") or []:
        errors.print(f"[yellow]warning:[/yellow] {escape(str(warning.get('message', warning)))}")
    if reply.kind == "error":
        errors.print(f"[red]error:[/red] {escape(reply.text)}")
    elif reply.text:
        print(reply.text)
    sys.stdout.flush()


def _history_file() -> Path:
    return default_home() / "repl_history"


def _readline_setup(session: Repl, loop: asyncio.AbstractEventLoop) -> None:
    try:
        import readline
    except ImportError:  # not every Python has it; the REPL works without history then
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(_history_file())
    readline.set_completer_delims(" \t\n()[]{},;=+-*/<>|&!")
    readline.parse_and_bind("tab: complete")
    matches: list[str] = []

    def complete(text: str, state: int) -> str | None:
        nonlocal matches
        if state == 0:
            future = asyncio.run_coroutine_threadsafe(session.complete(text), loop)
            try:
                matches = [m.rsplit("/", 1)[0] for m in future.result(timeout=2)]
            except Exception:  # a slow or gone sandbox: no completion rather than a stuck prompt
                matches = []
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)


def _readline_save() -> None:
    with contextlib.suppress(ImportError, OSError):
        import readline

        _history_file().parent.mkdir(parents=True, exist_ok=True)
        readline.set_history_length(1000)
        readline.write_history_file(_history_file())
