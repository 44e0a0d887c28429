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
    CookieOption,
    JsonOption,
    TimeoutOption,
    app,
    console,
    errors,
    human_bytes,
    node_name,
    run_job,
    sort_key,
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
    console.print(_link_matrix(result))
    for index, part in enumerate(result.components, 1):
        console.print(f"  part {index}: {', '.join(part)}", highlight=False)
    for edge in result.missing_edges:
        console.print(f"  [yellow]not connected:[/yellow] {edge.a} - {edge.b}", highlight=False)
    if result.hidden_nodes:
        console.print(f"  hidden nodes: {', '.join(result.hidden_nodes)}", highlight=False)
    _missing(result.missing)


def _link_matrix(result: Topology) -> Table:
    """Who sees whom, drawn: a row per node, as its own nodes() says (●), a missing link (x), a
    node that did not answer (?). Parts of a partition get a number each."""
    part_of = {name: index for index, part in enumerate(result.components, 1) for name in part}
    views = {row.node: set(row.visible) if row.reachable else None for row in result.nodes}
    names = [row.node for row in result.nodes]
    table = Table(title="links (row sees column)", title_justify="left", box=None, pad_edge=False)
    table.add_column("node")
    table.add_column("part", justify="right")
    for index in range(len(names)):
        table.add_column(str(index + 1), justify="center")
    for index, name in enumerate(names, 1):
        seen = views[name]
        cells = [
            "·" if other == name else "?" if seen is None else "[green]●[/]" if other in seen else "[red]x[/]"
            for other in names
        ]
        table.add_row(f"{index} {name}", str(part_of.get(name, "")), *cells)
    return table


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
    key = sort_key(sort)
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


# ---------------------------------------------------------------------- registries


@cluster_app.command("registries")
def registries(
    node: NodesOption = None,
    cookie: CookieOption = None,
    discover: DiscoverOption = True,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Only these nodes of the cluster (repeatable); default: all attached."),
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", "-k", help="global, pg or horde (repeatable); default: all.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, max=1000, help="Names/groups per node.")
    ] = 200,
    member_limit: Annotated[
        int, typer.Option("--member-limit", min=1, max=500, help="Members per group.")
    ] = 50,
    node_timeout_ms: NodeTimeoutOption = 2000,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """global names (with conflicts between nodes), pg groups and Horde, across the cluster."""
    from ...ops.registries import ClusterRegistries

    params: dict[str, Any] = {
        "limit": limit,
        "member_limit": member_limit,
        "node_timeout_ms": node_timeout_ms,
    }
    if only:
        params["nodes"] = only
    if kind:
        params["kinds"] = kind
    result = _run(node, cookie, timeout, discover, "cluster_registries", params)
    assert isinstance(result, ClusterRegistries)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    _print_registries(result)


def _print_registries(result: Any) -> None:
    """The merged views as tables, then conflicts, resolutions, Horde and missing nodes."""
    names = Table(title=f"global names on {len(result.nodes)} nodes", title_justify="left")
    for column in ("name", "pid", "runs on", "seen by"):
        names.add_column(column, overflow="fold")
    for view in result.global_names:
        if view.agreed:
            names.add_row(view.name, view.pid, view.node, ", ".join(view.seen_by))
        else:
            names.add_row(view.name, "[red]CONFLICT[/red]", "", ", ".join(view.seen_by))
    console.print(names)
    for conflict in result.conflicts:
        console.print(f"  [red]conflict:[/red] {conflict.message}", highlight=False)
    for resolved in result.resolved:
        console.print(f"  [green]resolved:[/green] {resolved.message}", highlight=False)
    groups = Table(title="pg groups", title_justify="left")
    for column in ("scope", "group", "members", "counts by node"):
        groups.add_column(column, overflow="fold")
    for group in result.pg_groups:
        members = ", ".join(f"{m.pid}@{m.node}" for m in group.members)
        counts = ", ".join(f"{n}: {c}" for n, c in group.member_counts.items())
        groups.add_row(group.scope, group.group, members, counts + ("" if group.agreed else " (differ)"))
    console.print(groups)
    for row in result.nodes:
        if row.horde is None:
            continue
        if not row.horde.present:
            console.print(f"  horde on {row.node}: {row.horde.reason}", highlight=False)
            continue
        parts = [f"registry {r.name} ({r.key_count} keys)" for r in row.horde.registries]
        parts += [f"supervisor {s.name} ({s.child_count} children)" for s in row.horde.supervisors]
        console.print(f"  horde {row.horde.version} on {row.node}: {'; '.join(parts) or 'no instance'}")
    _missing(result.missing)


# ---------------------------------------------------------------------- migrate and balance


@cluster_app.command("migrate")
def migrate(
    process: Annotated[str, typer.Argument(help="<0.N.S> or a registered name on the first --node.")],
    to: Annotated[str, typer.Option("--to", help="The node to move it to.", show_default=False)],
    node: NodesOption = None,
    cookie: CookieOption = None,
    discover: DiscoverOption = True,
    strategy: Annotated[
        str, typer.Option("--strategy", help="stop_then_start or start_then_switch.")
    ] = "stop_then_start",
    global_name: Annotated[
        bool, typer.Option("--global", help="PROCESS is a global name (its node is found).")
    ] = False,
    step_timeout_ms: Annotated[int, typer.Option("--step-timeout-ms", min=100, max=30_000)] = 5000,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Move a gen_server to another node with its state (the process lives on the first --node)."""
    from ...ops.migration import Migration

    params = {
        "process": process,
        "target_node": to,
        "strategy": strategy,
        "global_name": global_name,
        "step_timeout_ms": step_timeout_ms,
    }
    result = _run(node, cookie, timeout, discover, "migrate_process", params)
    assert isinstance(result, Migration)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    console.print(
        f"[bold]{result.process}[/bold] moved: {result.old_pid} on {result.source_node} -> "
        f"{result.new_pid} on {result.target_node} ({result.strategy.value}, {result.state_bytes:,} "
        f"bytes of state, {result.forwarded} message(s) forwarded, {result.total_ms:.1f} ms)",
        highlight=False,
    )
    for step in result.steps:
        console.print(f"  {step.step:<10} {step.ms:8.2f} ms", highlight=False)
    for warning in result.warnings:
        console.print(f"  [yellow]warning:[/yellow] {warning}", highlight=False)


@cluster_app.command("balance")
def balance(
    node: NodesOption = None,
    cookie: CookieOption = None,
    discover: DiscoverOption = True,
    metric: Annotated[str, typer.Option("--metric", help="process_count or memory.")] = "process_count",
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Only processes of this module (repeatable).")
    ] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only names starting with this.")] = None,
    max_moves: Annotated[int, typer.Option("--max-moves", min=1, max=50)] = 10,
    apply: Annotated[bool, typer.Option("--apply", help="Make the moves (default: only propose).")] = False,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 300.0,
) -> None:
    """Propose (or, with --apply, make) moves of named gen_servers that even out the nodes."""
    from ...ops.migration import Balance

    params: dict[str, Any] = {
        "metric": metric,
        "modules": list(module or []),
        "max_moves": max_moves,
        "dry_run": not apply,
    }
    if prefix:
        params["name_prefix"] = prefix
    result = _run(node, cookie, timeout, discover, "balance_cluster_load", params)
    assert isinstance(result, Balance)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table(title=f"{metric} by node", title_justify="left")
    for column in ("node", "now", "projected", "after", "movable"):
        table.add_column(column)
    for name, load in result.loads.items():
        after = result.after.get(name) if result.after else None
        table.add_row(
            name,
            f"{load:,}",
            f"{result.projected.get(name, load):,}",
            f"{after:,}" if after is not None else "",
            str(result.movable.get(name, "")),
        )
    console.print(table)
    verb = "proposed" if result.dry_run else "made"
    console.print(f"[bold]{len(result.moves)} move(s) {verb}[/bold]", highlight=False)
    outcomes = {o.process: o for o in result.migrations.outcomes} if result.migrations else {}
    for move in result.moves:
        outcome = outcomes.get(move.process)
        status = f"  [{outcome.status}]" if outcome else ""
        console.print(
            f"  {move.name} ({move.module}) {move.source_node} -> {move.target_node}{status}", highlight=False
        )
    _missing(result.missing)
