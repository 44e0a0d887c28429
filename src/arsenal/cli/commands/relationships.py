"""Relationship commands: `arsenal ptree`, `arsenal graph`, `arsenal impact PID`, `arsenal deps PID`."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table
from rich.tree import Tree

from ...ops.relationships import (
    Dependencies,
    FailureImpact,
    ProcessTree,
    RelatedList,
    RelationshipGraph,
    TreeNode,
)
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

_PID_TEXT = re.compile(r"^(#PID)?<?\d+\.\d+\.\d+>?$")
ApplicationOption = Annotated[str | None, typer.Option("--app", "-a", help="Only this application.")]


def who(name: str | None, pid: str) -> str:
    """``name <0.1.0>`` for a named process, the pid alone for an unnamed one (never twice)."""
    return f"{name} {pid}" if name and name != pid else pid


@app.command("ptree")
def ptree(
    node: NodeOption = None,
    cookie: CookieOption = None,
    application: ApplicationOption = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=1, max=50, help="Levels to show.")] = 12,
    max_nodes: Annotated[int, typer.Option("--max-nodes", min=1, max=5000, help="Nodes at most.")] = 1000,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Every process as one tree: applications, supervision trees, and unsupervised spawns (marked)."""
    params: dict[str, object] = {"max_depth": depth, "max_nodes": max_nodes}
    if application:
        params["application"] = application
    result = run_on_node(node, cookie, timeout, "build_process_tree", params)
    assert isinstance(result, ProcessTree)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    cut = " (truncated)" if result.truncated else ""
    top = Tree(
        f"[bold]{result.node}[/bold] — {result.node_count} nodes, {result.supervised_count} supervised, "
        f"{result.unsupervised_count} unsupervised{cut}"
    )
    for item in result.applications:
        _branch(top, item)
    if result.other:
        other = top.add("[bold](no application)[/bold]")
        for item in result.other:
            _branch(other, item)
    console.print(top)


def _tree_label(item: TreeNode) -> str:
    if item.kind == "application":
        return f"[bold green]{item.name}[/bold green] {item.version or ''}"
    parts = [f"[bold]{item.name}[/bold]" if item.name else "", item.pid or "", f"[cyan]{item.kind}[/cyan]"]
    if item.memory is not None:
        parts.append(f"[dim]{human_bytes(item.memory)}[/dim]")
    if item.message_queue_len:
        parts.append(f"[yellow]queue {item.message_queue_len}[/yellow]")
    if item.supervised is False:
        parts.append("[magenta]unsupervised[/magenta]")
    if item.truncated:
        parts.append("[yellow]…more[/yellow]")
    if item.error:
        parts.append(f"[red]{item.error}[/red]")
    return " ".join(p for p in parts if p)


def _branch(parent: Tree, item: TreeNode) -> None:
    branch = parent.add(_tree_label(item), highlight=False)
    for child in item.children:
        _branch(branch, child)


@app.command("graph")
def graph(
    pid: Annotated[
        str | None, typer.Argument(help="Around this process (pid or name); all when omitted.")
    ] = None,
    node: NodeOption = None,
    cookie: CookieOption = None,
    application: ApplicationOption = None,
    radius: Annotated[int, typer.Option("--radius", "-r", min=1, max=5, help="Hops from PID.")] = 1,
    max_nodes: Annotated[int, typer.Option("--max-nodes", min=1, max=2000)] = 200,
    max_edges: Annotated[int, typer.Option("--max-edges", min=1, max=10000)] = 1000,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Links, monitors and parent edges between processes (and linked ports)."""
    params: dict[str, object] = {"radius": radius, "max_nodes": max_nodes, "max_edges": max_edges}
    if pid:
        params["pid"] = pid
    if application:
        params["application"] = application
    result = run_on_node(node, cookie, timeout, "build_relationship_graph", params)
    assert isinstance(result, RelationshipGraph)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    names = {n.id: n.name for n in result.nodes}
    cut = " (truncated)" if result.truncated else ""
    table = Table(
        title=f"{result.node} — {len(result.nodes)} nodes, {len(result.edges)} edges{cut}",
        title_justify="left",
    )
    for column in ("from", "edge", "to"):
        table.add_column(column, overflow="fold")
    arrows = {"link": "── link ──", "monitor": "── monitors ─▶", "parent": "── spawned ─▶"}
    for edge in result.edges:
        by = f" ({edge.by_name})" if edge.by_name else ""
        table.add_row(
            who(names.get(edge.source), edge.source),
            arrows.get(edge.type, edge.type) + by,
            who(names.get(edge.target), edge.target),
        )
    console.print(table)


@app.command("impact")
def impact(
    pid: Annotated[str, typer.Argument(help="The process: pid or registered name.")],
    node: NodeOption = None,
    cookie: CookieOption = None,
    reason: Annotated[str, typer.Option("--reason", help="kill, normal, shutdown or another atom.")] = "kill",
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """What would happen if PID died (an analysis: nothing is killed)."""
    params = {"pid": pid, "reason": reason}
    result = run_on_node(node, cookie, timeout, "trace_failure_impact", params)
    assert isinstance(result, FailureImpact)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    counts = ", ".join(f"{count} {effect}" for effect, count in result.summary.items())
    cut = " (truncated)" if result.truncated else ""
    table = Table(
        title=f"If {_analysed(pid, result)} exits with {result.exit_reason}: {counts}{cut}",
        title_justify="left",
    )
    for column in ("depth", "process", "effect", "why"):
        table.add_column(column, overflow="fold")
    for row in result.affected:
        table.add_row(str(row.depth), who(row.name, row.pid), row.effect, row.why)
    console.print(table)
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False)


def _analysed(asked: str, result: FailureImpact) -> str:
    """The process analysed: its name from the analysis (or as asked) and its pid."""
    first = next((row for row in result.affected if row.depth == 0), None)
    if first is not None and first.name:
        return who(first.name, result.pid)
    return result.pid if _PID_TEXT.match(asked.strip()) else who(asked, result.pid)


@app.command("deps")
def deps(
    pid: Annotated[str, typer.Argument(help="The process: pid or registered name.")],
    node: NodeOption = None,
    cookie: CookieOption = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=1000, help="Items per list.")] = 50,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """What PID depends on and what depends on it."""
    params = {"pid": pid, "limit": limit}
    result = run_on_node(node, cookie, timeout, "find_process_dependencies", params)
    assert isinstance(result, Dependencies)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    title = f"{result.name or ''} {result.pid}".strip()
    top = Tree(f"[bold]{title}[/bold] ({result.application or 'no application'}, {result.status})")
    up = top.add("[bold]depends on[/bold]")
    chain = up.add("supervisor chain")
    for item in result.upstream.chain:
        chain.add(f"{item.name or ''} {item.pid} [cyan]{item.kind}[/cyan]".strip(), highlight=False)
    _related(up, "monitors", result.upstream.monitors)
    _related(up, "linked", result.upstream.linked)
    if result.upstream.blocked_on is not None:
        blocked = result.upstream.blocked_on
        who = ", ".join(f"{c.name or ''} {c.pid}".strip() for c in blocked.candidates) or "unknown"
        up.add(f"[red]blocked calling[/red] {who} ({blocked.detected_by})", highlight=False)
    down = top.add("[bold]depended on by[/bold]")
    _related(down, "monitored by", result.downstream.monitored_by)
    _related(down, "linked", result.downstream.linked)
    _related(down, "children", result.downstream.children)
    tables = top.add(f"ETS tables owned: {result.ets_tables.total}")
    for t in result.ets_tables.items:
        tables.add(f"{t.name} ({t.size} objects)", highlight=False)
    ports = top.add(f"ports: {result.ports.total}")
    for p in result.ports.items:
        ports.add(f"{p.id} {p.name or ''}", highlight=False)
    console.print(top)


def _related(parent: Tree, label: str, items: RelatedList) -> None:
    branch = parent.add(f"{label}: {items.total}")
    for item in items.items:
        branch.add(f"{item.name or ''} {item.pid or item.by_name or ''}".strip(), highlight=False)
