"""`arsenal apps`, `arsenal ets [TABLE]`, `arsenal health`: the system category on the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ...ops.system import MAX_ROWS, ApplicationList, EtsList, EtsTablePage, SystemHealth
from ..main import (
    CookieOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    app,
    console,
    errors,
    human_bytes,
    run_on_node,
)


@app.command()
def apps(
    node: NodeOption = None,
    cookie: CookieOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """The running applications, their versions and process counts."""
    result = run_on_node(node, cookie, timeout, "list_applications", {})
    assert isinstance(result, ApplicationList)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table(
        title=f"{result.node} — {len(result.applications)} applications, {result.process_count} processes "
        f"({result.other_processes} in none)",
        title_justify="left",
    )
    for column, justify in (("application", "left"), ("version", "left"), ("processes", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("description", overflow="fold")
    for row in result.applications:
        table.add_row(row.name, row.version, f"{row.process_count:,}", row.description)
    console.print(table)


@app.command()
def ets(
    table: Annotated[
        str | None, typer.Argument(help="Show this table's objects (a name, or an id #Ref<...>).")
    ] = None,
    node: NodeOption = None,
    cookie: CookieOption = None,
    sort: Annotated[str, typer.Option("--sort", "-s", help="memory or size (the list).")] = "memory",
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=MAX_ROWS, help="Rows.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """ETS tables by memory or size; with TABLE, that table's objects a page at a time."""
    if sort not in ("memory", "size"):
        errors.print(f"[red]error:[/red] unknown sort {sort!r}; use memory or size")
        raise typer.Exit(2)
    if table is None:
        listed = run_on_node(node, cookie, timeout, "list_ets_tables", {"sort_by": sort, "limit": limit})
        assert isinstance(listed, EtsList)
        if as_json:
            print(listed.model_dump_json(indent=2))
            return
        view = Table(
            title=f"{listed.node} — top {len(listed.tables)} of {listed.table_count} ETS tables by {sort}",
            title_justify="left",
        )
        for column in ("table", "type", "protection", "size", "memory", "owner"):
            right = column in ("size", "memory")
            view.add_column(column, justify="right" if right else "left", overflow="fold")
        for row in listed.tables:
            owner = row.owner_name or row.owner or ""
            view.add_row(row.id, row.type, row.protection, f"{row.size:,}", human_bytes(row.memory), owner)
        console.print(view)
        return
    params: dict[str, object] = {"table": table, "limit": limit}
    if cursor:
        params["cursor"] = cursor
    page = run_on_node(node, cookie, timeout, "get_ets_table", params)
    assert isinstance(page, EtsTablePage)
    if as_json:
        print(page.model_dump_json(indent=2))
        return
    info = page.table
    console.print(
        f"[bold]{info.id}[/bold] on {page.node}: {info.type}, {info.protection}, {info.size:,} objects, "
        f"{human_bytes(info.memory)}, owner {info.owner_name or info.owner}",
        highlight=False,
    )
    for row in page.rows:
        console.print(json.dumps(row, default=str), highlight=False, soft_wrap=True)
    if page.next_cursor:
        console.print(f"more: arsenal ets {table} --cursor {page.next_cursor}", highlight=False)


@app.command()
def health(
    node: NodeOption = None,
    cookie: CookieOption = None,
    queue_threshold: Annotated[int, typer.Option(min=1, help="A queue this long counts.")] = 1000,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """A health score 0-100 with the reasons behind it."""
    result = run_on_node(node, cookie, timeout, "analyze_system_health", {"queue_threshold": queue_threshold})
    assert isinstance(result, SystemHealth)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    colour = {"healthy": "green", "degraded": "yellow"}.get(result.status, "red")
    console.print(f"{result.node}: [{colour}]{result.score}/100 {result.status}[/{colour}]")
    table = Table(title_justify="left")
    for column in ("check", "level", "penalty", "figure"):
        table.add_column(column, overflow="fold")
    for reason in result.reasons:
        table.add_row(reason.check, reason.level, str(reason.penalty), reason.message)
    console.print(table)
    for title, rows in (("large queues", result.large_queues), ("memory hogs", result.memory_hogs)):
        for row in rows:
            console.print(
                f"{title}: {row.name or row.pid} queue {row.message_queue_len:,}, {human_bytes(row.memory)}",
                highlight=False,
            )
