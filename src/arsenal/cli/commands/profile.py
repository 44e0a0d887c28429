"""`arsenal profile`: where one process spends its time (stack samples, flame-graph stacks), or how
often and how long chosen functions run (call counts and call time).

``arsenal profile PID --for 5s`` samples the process and prints its top functions;
``--collapsed FILE`` writes the collapsed stacks for ``flamegraph.pl FILE > flame.svg`` or
speedscope. ``arsenal profile --function 'mod:fun/_' --for 5s`` counts the calls (``--measure
count``) or the calls and time (``--measure time``) of functions; with a PID too, their time in
that process is measured alongside the samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ...ops.profiling import FunctionProfile, Measure, ProcessProfile
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


@app.command("profile")
def profile(
    pid: Annotated[
        str | None, typer.Argument(help="The process to sample: <0.123.0>, 0.123.0 or a registered name.")
    ] = None,
    node: NodeOption = None,
    cookie: CookieOption = None,
    function: Annotated[
        list[str] | None,
        typer.Option(
            "--function", "-f", help="Measure this function: 'mod:fun/2', 'mod:fun/_', 'Mod.fun/1'."
        ),
    ] = None,
    duration: Annotated[str, typer.Option("--for", help="How long: 500ms, 5s, 1m (at most 60s).")] = "5s",
    interval: Annotated[str, typer.Option("--interval", help="Between two samples: 1ms to 1s.")] = "10ms",
    max_samples: Annotated[int, typer.Option("--max-samples", help="Samples, then stop.")] = 2000,
    measure: Annotated[
        Measure | None,
        typer.Option(
            "--measure", help="--function only: count (calls, cheap) or time (calls and time; default)."
        ),
    ] = None,
    pids: Annotated[
        list[str] | None,
        typer.Option("--pid", help="--function, --measure time: only these processes (repeatable)."),
    ] = None,
    collapsed: Annotated[
        Path | None,
        typer.Option("--collapsed", help="Write the collapsed stacks here (flamegraph.pl, speedscope)."),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=1, max=200, help="Functions to show.")] = 20,
    force: Annotated[bool, typer.Option("--force", help="Allow every function of a hot module.")] = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Profile a process (stack samples) or functions (call counts and time), like eprof and cprof."""
    if pid is None and not function:
        errors.print(
            "[red]error:[/red] profile a process (PID) or functions (--function 'mod:fun/_'), or both"
        )
        raise typer.Exit(2)
    if pid is not None and (measure is Measure.count or pids):
        errors.print(
            "[red]error:[/red] with a PID, its functions are timed in that process: drop --measure count "
            "and --pid, or drop the PID to count every caller"
        )
        raise typer.Exit(2)
    seconds = parse_duration(duration)
    params: dict[str, Any] = {"duration": seconds}
    if force:
        params["force"] = True
    if pid is not None:
        operation = "profile_process"
        params.update(
            pid=pid,
            interval_ms=round(parse_duration(interval) * 1000),
            max_samples=max_samples,
            functions=function or [],
        )
    else:
        operation = "profile_function"
        params.update(patterns=function, measure=measure or Measure.time, pids=pids or None)
    result = run_on_node(node, cookie, timeout, operation, params)
    if isinstance(result, ProcessProfile) and collapsed is not None:
        collapsed.write_text("".join(line + "\n" for line in result.collapsed))
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    if isinstance(result, ProcessProfile):
        _show_process(result, rows, collapsed)
    elif isinstance(result, FunctionProfile):
        _show_functions(result, rows)


def _percent(part: float) -> str:
    return f"{part * 100:.1f}%"


def _show_process(result: ProcessProfile, rows: int, collapsed: Path | None) -> None:
    states = ", ".join(
        f"{state} {_percent(n / result.samples)}"
        for state, n in sorted(result.statuses.items(), key=lambda item: -item[1])
        if result.samples
    )
    ended = " — the process exited" if result.process_exited else f" (stopped: {result.stopped})"
    console.print(
        f"{result.pid} on {result.node}: {result.samples} samples in {result.duration:.2f}s, every "
        f"{result.interval_ms}ms{ended}",
        highlight=False,
    )
    if states:
        console.print(f"states: {states}", highlight=False)
    table = Table(title="top functions by samples", title_justify="left")
    table.add_column("function", overflow="fold")
    for column in ("self", "self %", "total", "total %"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in result.top_functions[:rows]:
        table.add_row(
            escape(row.function),
            str(row.self),
            _percent(row.self_share),
            str(row.total),
            _percent(row.total_share),
        )
    console.print(table)
    if result.functions is not None:
        _show_functions(result.functions, rows)
    stacks = f"{result.distinct_stacks} distinct stacks" + (
        f" ({result.other_stacks} samples beyond the 5000 kept)" if result.other_stacks else ""
    )
    where = f"; written to {collapsed} (flamegraph.pl {collapsed} > flame.svg)" if collapsed else ""
    console.print(stacks + where, highlight=False)


def _show_functions(result: FunctionProfile, rows: int) -> None:
    timed = result.measure is Measure.time
    table = Table(
        title=f"{result.measure.value} of {', '.join(p.pattern for p in result.patterns)} over "
        f"{result.duration:.2f}s ({result.end_reason})",
        title_justify="left",
    )
    table.add_column("function", overflow="fold")
    table.add_column("calls", justify="right", no_wrap=True)
    if timed:
        table.add_column("time µs", justify="right", no_wrap=True)
        table.add_column("µs/call", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    if timed:
        table.add_column("top process", no_wrap=True)
    for row in result.functions[:rows]:
        cells = [escape(row.function), f"{row.calls:,}"]
        if timed:
            cells += [f"{row.time_us:,}", f"{row.us_per_call or 0:.2f}"]
        cells.append(_percent(row.share))
        if timed:
            cells.append(row.processes[0].pid if row.processes else "")
        table.add_row(*cells)
    console.print(table)
    total = f"{result.total_calls:,} calls" + (f", {result.total_time_us:,} µs" if timed else "")
    shown = f"; {len(result.functions)} functions called" if len(result.functions) > rows else ""
    console.print(f"total: {total}{shown}", highlight=False)
