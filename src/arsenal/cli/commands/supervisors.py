"""Supervisor commands: `arsenal supervisors`, `arsenal tree [SUP]`, `arsenal children SUP`.

Everything else about supervisors (flags, restart/terminate/delete a child,
simulate_failure, pause/resume, change the strategy) runs with
`arsenal run OPERATION k=v`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.tree import Tree

from ...ops.supervisors import ChildList, SupervisionNode, SupervisionTree, SupervisorList
from ..main import (
    CookieOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    app,
    console,
    run_on_node,
)


@app.command("supervisors")
def supervisors(
    node: NodeOption = None,
    cookie: CookieOption = None,
    name: Annotated[str | None, typer.Option("--name", help="Part of the registered name.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=1000, help="At most this many.")] = 200,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Every supervisor of a node (found in the VM, without messaging any)."""
    params: dict[str, object] = {"limit": limit}
    if name:
        params["name"] = name
    result = run_on_node(node, cookie, timeout, "list_supervisors", params)
    assert isinstance(result, SupervisorList)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table(
        title=f"{result.node} — {len(result.supervisors)} of {result.total} supervisors", title_justify="left"
    )
    for column in ("pid", "name", "kind", "module", "application", "parent"):
        table.add_column(column, overflow="fold")
    for row in result.supervisors:
        table.add_row(row.pid, row.name or "", row.kind, row.module, row.application or "", row.parent or "")
    console.print(table)


@app.command("tree")
def tree(
    sup: Annotated[
        str | None, typer.Argument(help="The supervisor (pid or name); every root supervisor when omitted.")
    ] = None,
    node: NodeOption = None,
    cookie: CookieOption = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=1, max=20, help="Levels to show.")] = 6,
    max_nodes: Annotated[int, typer.Option("--max-nodes", min=1, max=2000, help="Nodes at most.")] = 500,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """The supervision tree under SUP, or under every application's top supervisor."""
    params: dict[str, object] = {"max_depth": depth, "max_nodes": max_nodes}
    if sup:
        params["name"] = sup
    result = run_on_node(node, cookie, timeout, "get_supervision_tree", params)
    assert isinstance(result, SupervisionTree)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    cut = " (truncated)" if result.truncated else ""
    top = Tree(f"[bold]{result.node}[/bold] — {result.node_count} nodes{cut}")
    for root in result.roots:
        _branch(top, root)
    console.print(top)


def _label(item: SupervisionNode) -> str:
    who = item.name or (str(item.id) if item.id is not None else "")
    parts = [f"[bold]{who}[/bold]" if who else "", item.pid or item.state]
    if item.type == "supervisor":
        parts.append(f"[cyan]{item.strategy or 'supervisor'}[/cyan]")
    else:
        parts.append(item.type)
    if item.restart:
        parts.append(f"[dim]{item.restart}[/dim]")
    if item.application:
        parts.append(f"[dim]app {item.application}[/dim]")
    if item.truncated:
        parts.append("[yellow]…more[/yellow]")
    if item.error:
        parts.append(f"[red]{item.error}[/red]")
    return " ".join(p for p in parts if p)


def _branch(parent: Tree, item: SupervisionNode) -> None:
    branch = parent.add(_label(item), highlight=False)
    for child in item.children:
        _branch(branch, child)


@app.command("children")
def children(
    sup: Annotated[str, typer.Argument(help="The supervisor: pid or registered name.")],
    node: NodeOption = None,
    cookie: CookieOption = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=1000, help="At most this many.")] = 200,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """The children of a supervisor, in its order."""
    params = {"name": sup, "limit": limit}
    result = run_on_node(node, cookie, timeout, "which_children", params)
    assert isinstance(result, ChildList)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    who = result.name or result.pid
    table = Table(title=f"{who} — {len(result.children)} of {result.total} children", title_justify="left")
    for column in ("id", "pid", "name", "type", "restart"):
        table.add_column(column, overflow="fold")
    for row in result.children:
        table.add_row(
            str(row.id) if row.id is not None else "",
            row.pid or row.state,
            row.name or "",
            row.type,
            row.restart or "",
        )
    console.print(table)
