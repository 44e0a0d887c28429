"""`arsenal deadlocks` and `arsenal leaks`: the diagnostics category on the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ...ops.diagnostics import MAX_LIMIT, DeadlockReport, LeakReport
from ..main import (
    CookieOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    app,
    console,
    human_bytes,
    run_on_node,
)

LimitOption = Annotated[int, typer.Option("--limit", "-l", min=1, max=MAX_LIMIT, help="Rows per list.")]


@app.command("deadlocks")
def deadlocks(
    node: NodeOption = None,
    cookie: CookieOption = None,
    interval: Annotated[
        int, typer.Option("--interval", "-i", min=100, max=10_000, help="Milliseconds between the samples.")
    ] = 500,
    min_chain: Annotated[
        int, typer.Option("--min-chain", min=2, max=50, help="Report chains from this many processes.")
    ] = 3,
    limit: LimitOption = 10,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Processes deadlocked in calls on each other, and long chains of waits on a stuck process."""
    params = {"interval_ms": interval, "min_chain": min_chain, "limit": limit}
    result = run_on_node(node, cookie, timeout, "analyze_deadlocks", params)
    assert isinstance(result, DeadlockReport)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    console.print(
        f"[bold]{result.node}[/bold]: {result.blocked_count} process(es) blocked in the same call "
        f"for {result.interval_ms} ms ({result.blocked_first} in a call at the first sample); "
        f"{result.cycle_count} deadlock(s), {result.chain_count} long chain(s)"
        + (" — only the first 10 000 blocked were followed" if result.truncated else ""),
        highlight=False,
    )
    for finding in result.findings:
        colour = "red" if finding.startswith("Deadlock") else "yellow"
        console.print(f"[{colour}]•[/{colour}] {finding}", highlight=False)
    for index, cycle in enumerate(result.cycles, 1):
        table = Table(title=f"deadlock {index}", title_justify="left")
        for column in ("process", "waits in", "from", "on", "certain"):
            table.add_column(column, overflow="fold")
        for p in cycle.processes:
            who = f"{p.name or ''} {p.pid}".strip()
            table.add_row(
                who, p.call or "", p.location or "", p.waiting_on or "", "yes" if p.certain else "no"
            )
        console.print(table)


@app.command("leaks")
def leaks(
    node: NodeOption = None,
    cookie: CookieOption = None,
    samples: Annotated[int, typer.Option("--samples", "-s", min=2, max=10, help="Samples per process.")] = 3,
    interval: Annotated[
        int, typer.Option("--interval", "-i", min=100, max=10_000, help="Milliseconds between samples.")
    ] = 1000,
    gc_top: Annotated[
        int,
        typer.Option(
            "--gc-top",
            min=0,
            max=50,
            help="Garbage-collect this many top binary holders; show what each freed.",
        ),
    ] = 0,
    every_sample: Annotated[
        bool,
        typer.Option(
            "--every-sample/--any-rise",
            help="Only processes that grew at every sample, or also those that never shrank and grew once.",
        ),
    ] = True,
    limit: LimitOption = 10,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Processes whose memory keeps growing, and the largest refc binary holders."""
    params = {
        "samples": samples,
        "interval_ms": interval,
        "gc_top": gc_top,
        "limit": limit,
        "every_sample": every_sample,
    }
    result = run_on_node(node, cookie, timeout, "memory_leak_detection", params)
    assert isinstance(result, LeakReport)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    growing = Table(
        title=f"{result.node} — {result.growing_count} of {result.process_count} processes grew over "
        f"{result.samples} samples {result.interval_ms} ms apart",
        title_justify="left",
    )
    for column in ("process", "initial call", "growth", "per s", "rose in", "footprint"):
        growing.add_column(
            column, overflow="fold", justify="right" if column in ("growth", "per s") else "left"
        )
    for row in result.growing:
        series = " → ".join(human_bytes(m + b) for m, b in zip(row.memory, row.binary, strict=True))
        growing.add_row(
            f"{row.name or ''} {row.pid}".strip(),
            row.initial_call or "",
            human_bytes(row.growth),
            human_bytes(round(row.growth_per_s)),
            f"{row.rises}/{row.intervals}",
            series,
        )
    console.print(growing)
    holders = Table(
        title=f"refc binary holders ({human_bytes(result.binary_total)} referenced in all)",
        title_justify="left",
    )
    for column in ("process", "binaries", "count", "memory"):
        holders.add_column(column, overflow="fold", justify="left" if column == "process" else "right")
    for h in result.binary_holders:
        holders.add_row(
            f"{h.name or ''} {h.pid}".strip(),
            human_bytes(h.binary_memory),
            f"{h.binary_count:,}",
            human_bytes(h.memory),
        )
    console.print(holders)
    if result.gc:
        gc = Table(title="garbage-collected", title_justify="left")
        for column in ("process", "outcome", "binaries freed", "memory before → after"):
            gc.add_column(column, overflow="fold")
        for g in result.gc:
            memory = (
                f"{human_bytes(g.memory_before)} → {human_bytes(g.memory_after)}"
                if g.memory_before is not None and g.memory_after is not None
                else ""
            )
            freed = human_bytes(g.binary_freed) if g.binary_freed is not None else ""
            gc.add_row(f"{g.name or ''} {g.pid}".strip(), g.outcome, freed, memory)
        console.print(gc)
    for finding in result.findings:
        console.print(f"[yellow]•[/yellow] {finding}", highlight=False)
