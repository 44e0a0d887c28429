"""Cluster commands: `arsenal cluster health|topology|ps --node ONE_NODE`.

Each attaches to the node given, discovers its visible peers (``nodes()``) and attaches them
too (``--no-discover``: only the nodes given with ``--node``), runs one cluster operation over
all of them at once, and detaches. Unreachable nodes are listed, never an error of the whole.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from ...client import Arsenal
from ...ops.base import Result
from ...ops.cluster import ClusterHealth, ClusterProcessList, Missing, Topology
from ..main import (
    _SORT_ALIASES,
    CookieOption,
    JsonOption,
    TimeoutOption,
    app,
    console,
    errors,
    human_bytes,
    node_name,
    run_job,
)

cluster_app = typer.Typer(
    help="A whole cluster at once: health, topology, processes across nodes.", no_args_is_help=True
)
app.add_typer(cluster_app, name="cluster")

NodesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--node", "-n", help="A node of the cluster (repeatable). Env: ARSENAL_NODE.", show_default=False
    ),
]
DiscoverOption = Annotated[
    bool, typer.Option("--discover/--no-discover", help="Attach the peers of the node(s) given too.")
]
NodeTimeoutOption = Annotated[
    int, typer.Option("--node-timeout-ms", min=10, max=60_000, help="How long to wait for each node.")
]


async def _on_cluster(
    names: list[str],
    cookie: str | None,
    timeout: float,
    discover: bool,
    operation: str,
    params: dict[str, Any],
) -> Result:
    """Attach the nodes (and their peers), run one cluster operation, detach."""
    from ...cluster.membership import ClusterMembership

    async with Arsenal(cookie=cookie) as service:
        for name in names:
            await service.attach(name, timeout=timeout, reconnect=False)
        if discover:
            membership = service.services.get(ClusterMembership)
            for name in names:
                found = await membership.discover(
                    service.pool, service.pool.get(name), timeout=timeout, reconnect=False
                )
                for failure in found.failed:
                    errors.print(
                        f"[yellow]note:[/yellow] could not attach {failure['node']}: {failure['message']}",
                        highlight=False,
                    )
        return await service.run(operation, params)


def _run(
    nodes: list[str] | None,
    cookie: str | None,
    timeout: float,
    discover: bool,
    op: str,
    params: dict[str, Any],
) -> Any:
    names = list(nodes or []) or [node_name(None)]
    return run_job(lambda: _on_cluster(names, cookie, timeout, discover, op, params))


def _missing(missing: list[Missing]) -> None:
    for item in missing:
        errors.print(
            f"[yellow]missing:[/yellow] {item.node} ({item.reason}): {item.message}", highlight=False
        )


@cluster_app.command("health")
def health(
    node: NodesOption = None,
    cookie: CookieOption = None,
    discover: DiscoverOption = True,
    node_timeout_ms: NodeTimeoutOption = 400,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Every node's reachability, latency, processes, memory, run queue and alarms, and a score."""
    result = _run(node, cookie, timeout, discover, "cluster_health", {"node_timeout_ms": node_timeout_ms})
    assert isinstance(result, ClusterHealth)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table(title=f"cluster health: {result.score}/100 ({result.status})", title_justify="left")
    for column in ("node", "reachable", "latency", "processes", "memory", "run queue", "alarms"):
        table.add_column(column, overflow="fold")
    for row in result.nodes:
        table.add_row(
            row.node,
            "yes" if row.reachable else f"no: {row.error}",
            f"{row.latency_ms:.1f} ms" if row.latency_ms is not None else "",
            f"{row.process_count:,}" if row.process_count is not None else "",
            human_bytes(row.memory_total) if row.memory_total is not None else "",
            str(row.run_queue) if row.run_queue is not None else "",
            "; ".join(row.alarms),
        )
    console.print(table)
    for reason in result.reasons:
        colour = "red" if reason.severity == "critical" else "yellow"
        console.print(f"  [{colour}]{reason.severity}[/]: {reason.reason}", highlight=False)


@cluster_app.command("topology")
def topology(
    node: NodesOption = None,
    cookie: CookieOption = None,
    discover: DiscoverOption = True,
    node_timeout_ms: NodeTimeoutOption = 400,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Who is connected to whom, the connected components (a partition) and the missing links."""
    result = _run(node, cookie, timeout, discover, "cluster_topology", {"node_timeout_ms": node_timeout_ms})
    assert isinstance(result, Topology)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    state = f"PARTITIONED into {len(result.components)} parts" if result.partitioned else "one component"
    console.print(f"[bold]{len(result.nodes)} nodes, {len(result.edges)} links, {state}[/bold]")
    for index, part in enumerate(result.components, 1):
        console.print(f"  part {index}: {', '.join(part)}", highlight=False)
    for edge in result.missing_edges:
        console.print(f"  [yellow]not connected:[/yellow] {edge.a} - {edge.b}", highlight=False)
    if result.hidden_nodes:
        console.print(f"  hidden nodes: {', '.join(result.hidden_nodes)}", highlight=False)
    _missing(result.missing)


@cluster_app.command("ps")
def ps(
    node: NodesOption = None,
    cookie: CookieOption = None,
    discover: DiscoverOption = True,
    sort: Annotated[
        str, typer.Option("--sort", "-s", help="memory, reductions or message_queue_len.")
    ] = "memory",
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=1000, help="How many processes.")] = 20,
    name: Annotated[str | None, typer.Option("--name", help="Part of the registered name.")] = None,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next_cursor of the previous page.")] = None,
    node_timeout_ms: NodeTimeoutOption = 2000,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """The top processes across every node, ranked in each VM, merged; each row names its node."""
    key = _SORT_ALIASES.get(sort)
    if key is None:
        errors.print(
            f"[red]error:[/red] unknown sort {sort!r}; use one of: {', '.join(sorted(_SORT_ALIASES))}"
        )
        raise typer.Exit(2)
    params: dict[str, Any] = {"sort_by": key, "limit": limit, "node_timeout_ms": node_timeout_ms}
    if name:
        params["name"] = name
    if cursor:
        params["cursor"] = cursor
    result = _run(node, cookie, timeout, discover, "cluster_process_list", params)
    assert isinstance(result, ClusterProcessList)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    shown = f"top {len(result.processes)} of {result.process_count} processes"
    table = Table(title=f"{shown} on {len(result.process_counts)} nodes by {key.value}", title_justify="left")
    for column in ("node", "pid", "name", "memory", "reductions", "queue", "current function"):
        table.add_column(column, overflow="fold")
    for row in result.processes:
        table.add_row(
            row.node,
            row.pid,
            row.registered_name or "",
            human_bytes(row.memory),
            f"{row.reductions:,}",
            f"{row.message_queue_len:,}",
            row.current_function or "",
        )
    console.print(table)
    if result.next_cursor:
        console.print(f"next page: --cursor {result.next_cursor}", highlight=False)
    _missing(result.missing)


def demo_cluster(size: int, *, serve: bool, port: int) -> None:
    """``arsenal demo --cluster N``: start N meshed demo nodes, show the cluster's health, serve it
    with discovery on; the nodes are killed when this command ends."""
    from ...demo import DemoError, start_demo_cluster
    from ..main import _demo_key

    console.print(f"building the demo and starting a {size}-node cluster …")
    try:
        cluster = start_demo_cluster(size)
    except DemoError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    try:
        first = cluster.names[0]
        result = _run([first], None, 10.0, True, "cluster_health", {"node_timeout_ms": 1000})
        assert isinstance(result, ClusterHealth)
        console.print(
            f"\n[bold]The demo cluster is up:[/bold] {', '.join(cluster.names)} (the first runs the "
            f"Elixir demo), health {result.score}/100. They use ~/.erlang.cookie, so these reach it:\n"
            f"  arsenal cluster health --node {first}\n"
            f"  arsenal cluster topology --node {first}\n"
            f"  arsenal cluster ps --node {first} --sort reductions",
            highlight=False,
        )
        if not serve:
            console.print("(--no-serve: the cluster stops now)")
        else:
            from .serve import serve_nodes

            key = _demo_key()
            console.print(
                f"\n[bold]The dashboard[/bold] is at http://127.0.0.1:{port}/ and the API at "
                f"http://127.0.0.1:{port}/api/v1 (log in with this admin key, shown only now):\n  {key}\n"
                f"  curl -H 'Authorization: Bearer {key}' http://127.0.0.1:{port}/api/v1/cluster/health\n"
                "Ctrl-C stops Arsenal and the cluster.",
                highlight=False,
            )
            serve_nodes(
                [first],
                cookie=None,
                host="127.0.0.1",
                port=port,
                read_only=False,
                timeout=10.0,
                discover=True,
            )
    finally:
        cluster.kill_all()


