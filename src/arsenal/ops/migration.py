"""Process migration and load balancing: move a gen_server to another node with its state.

The work happens in the source node's agent (``arsenal_agent_migrate:migrate/3``): one
coordinator process there runs the steps (check, suspend, get_state, start, handover, switch,
forward, stop), each bounded by ``step_timeout_ms``, and rolls back on any failure up to the
name switch, so a failed migration leaves exactly one process holding the name, with its state,
on the source. Doing it inside the cluster (not step by step from Arsenal) keeps the process
paused for the shortest time and makes the rollback independent of Arsenal's own connection:
a caller that gives up or goes away never leaves a process suspended.

``migrate_processes`` runs several migrations, each with its own rollback, one at a time or a
few at once. ``balance_cluster_load`` reads every attached node's process count or memory, asks
each for its movable processes (named gen_servers without links, not protected, filtered by
module or name prefix) and proposes the moves that even the nodes out; with ``dry_run=false``
it runs them through ``migrate_processes``.
"""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from typing import Any

from pydantic import Field

from ..beam import Node
from ..dist import Atom, Pid, Term
from ..terms.render import render
from .base import Context, Operation, Params, Result, Severity
from .cluster import DEFAULT_NODE_TIMEOUT_MS, Missing, facts_of, fan_out, node_context
from .errors import ErrorCode, OperationError, as_operation_error
from .nodes import full_node_name
from .plain import pid_text
from .registry import register
from .safety import ensure_not_protected
from .targets import process_ref

__all__ = [
    "BalanceClusterLoad",
    "Migration",
    "MigrateProcess",
    "MigrateProcesses",
    "Strategy",
    "migrate_one",
]

CATEGORY = "cluster"
MODULE = "arsenal_agent_migrate"
MAX_BATCH = 50


class Strategy(StrEnum):
    stop_then_start = "stop_then_start"
    start_then_switch = "start_then_switch"


class Metric(StrEnum):
    process_count = "process_count"
    memory = "memory"


class MigrationOptions(Params):
    strategy: Strategy = Field(
        Strategy.stop_then_start,
        description="stop_then_start: suspend the process, then start its copy on the target. "
        "start_then_switch: start the copy first (waiting), then suspend, hand the state over and "
        "switch: the process is paused for less time, and a target that cannot start a process "
        "fails before the old one is touched.",
    )
    step_timeout_ms: int = Field(
        5000, ge=100, le=30_000, description="The limit of each step (suspend, get_state, start...)."
    )
    max_forward: int = Field(
        10_000, ge=0, le=100_000, description="Messages of the old mailbox forwarded to the new process."
    )
    max_state_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1,
        le=1024 * 1024 * 1024,
        description="Refuse (and roll back) a state larger than this (external term size).",
    )
    force: bool = Field(False, description="Move even one of the VM's own processes (admin only).")


class MigrateParams(MigrationOptions):
    process: str = Field(
        max_length=300,
        description="The process on the source node (node=): <0.N.S> or its registered name; with "
        "global_name=true, a global name (its node is found).",
    )
    target_node: str = Field(max_length=460, description="An attached node to move it to.")
    global_name: bool = Field(False, description="`process` is a name registered in global.")


class MigrationStep(Result):
    step: str
    ms: float
    ok: bool
    result: str | None = Field(None, description="For rollback steps: what undoing gave.")


class Migration(Result):
    process: str = Field(description="As requested.")
    module: str
    source_node: str
    target_node: str
    old_pid: str = Field(description="On the source node (now stopped).")
    new_pid: str = Field(description="On the target node.")
    strategy: Strategy
    local_name: str | None = Field(description="Registered on the target now (gone from the source).")
    global_names: list[str] = Field(description="Re-registered to the new process.")
    state_bytes: int = Field(description="External size of the state and process dictionary moved.")
    forwarded: int = Field(description="Messages of the old mailbox forwarded to the new process, in order.")
    left_behind: int | None = Field(
        description="Messages still in the old mailbox when it stopped (past max_forward): lost."
    )
    calls_synced: bool = Field(
        description="The new process handled every forwarded message (and answered forwarded calls) "
        "before the old one stopped."
    )
    stopped: str = Field(description="How the old process ended: stopped (terminate/2 ran) or killed.")
    warnings: list[str]
    steps: list[MigrationStep]
    total_ms: float


# ====================================================================== one migration


def _text(value: Term) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value) if isinstance(value, Atom) else render(value)


def _steps(raw: Term) -> list[MigrationStep]:
    steps = []
    for item in raw if isinstance(raw, list) else []:
        result = item.get(Atom("result"))
        steps.append(
            MigrationStep(
                step=str(item[Atom("step")]),
                ms=round(item[Atom("us")] / 1000, 3),
                ok=bool(item[Atom("ok")]),
                result=None if result is None else render(result, max_items=20),
            )
        )
    return steps


def find_node(ctx: Context, name: str) -> Node:
    """An attached node the caller may reach, by name (name@host, or name on this host)."""
    full = full_node_name(name.strip())
    node = next((n for n in ctx.pool.nodes if n.name == full), None)
    if node is None:
        attached = ", ".join(n.name for n in ctx.pool.nodes) or "none"
        raise OperationError(
            ErrorCode.not_found,
            f"{full} is not attached to Arsenal (attached: {attached}); attach it first (discover=true "
            "attaches every member of the cluster)",
        )
    granted = ctx.principal.nodes
    if granted is not None and full not in granted:
        raise OperationError(ErrorCode.forbidden, f"this API key is not granted {full}")
    return node


def _writable(node: Node, what: str) -> None:
    if node.read_only:
        raise OperationError(
            ErrorCode.read_only,
            f"{node.name} is attached read-only; {what} is refused. It stays read-only until an admin "
            "lifts it (attach_node with read_only=false)",
        )


async def _source(ctx: Context, params: MigrateParams) -> tuple[Node, bytes]:
    """The node the process lives on and the reference to give its agent (a global name is
    located first: its node becomes the source, whatever node= said)."""
    node = ctx.require_node()
    if not params.global_name:
        return node, process_ref(params.process)
    name = params.process.strip().encode()
    found = await node.agent_call("locate_global", [name], params.step_timeout_ms / 1000, module=MODULE)
    if not (isinstance(found, tuple) and found[0] == Atom("ok")):
        raise OperationError(
            ErrorCode.not_found,
            f"no process is registered in global as {params.process} (seen from {node.name})",
        )
    pid = found[1]
    assert isinstance(pid, Pid)
    return find_node(ctx, str(pid.node)), pid_text(pid).encode()


def _options(params: MigrationOptions) -> dict[Term, Term]:
    """The agent's options; a global name was located already, so the agent gets its pid."""
    return {
        Atom("strategy"): params.strategy.value.encode(),
        Atom("step_timeout_ms"): params.step_timeout_ms,
        Atom("max_forward"): params.max_forward,
        Atom("max_state_bytes"): params.max_state_bytes,
    }


async def migrate_one(ctx: Context, params: MigrateParams) -> Migration:
    """One migration, with every check of the operation: the unit migrate_processes repeats."""
    source, ref = await _source(ctx, params)
    target = find_node(ctx, params.target_node)
    if target.name == source.name:
        raise OperationError(
            ErrorCode.validation_error, f"{params.process} is already on {target.name}; choose another node"
        )
    _writable(source, "migrating a process from it")
    _writable(target, "migrating a process to it")
    await ensure_not_protected(
        node_context(ctx, source), ref.decode(), force=params.force, action="migrating"
    )
    started = time.perf_counter()
    budget = (12 * params.step_timeout_ms + 2000) / 1000 + 5
    raw = await source.agent_call(
        "migrate", [ref, target.name.encode(), _options(params)], budget, module=MODULE
    )
    total = (time.perf_counter() - started) * 1000
    if not (isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[1], dict)):
        raise OperationError(
            ErrorCode.agent_error, f"unexpected answer from {source.name}'s agent: {raw!r:.300}"
        )
    tag, outcome = raw
    if tag != Atom("ok"):
        raise migration_error(params.process, source, target, outcome)
    left = outcome[Atom("left_behind")]
    warnings = []
    if isinstance(left, int) and left > 0:
        warnings.append(f"{left} message(s) arrived past max_forward and were lost with the old process")
    if not outcome[Atom("calls_synced")]:
        warnings.append(
            "the new process did not confirm it had handled the forwarded messages in time: a caller "
            "waiting on the old pid may have got an exit instead of its reply"
        )
    if outcome[Atom("stopped")] == Atom("killed"):
        warnings.append("the old process did not stop in time (terminate/2) and was killed")
    if outcome.get(Atom("warning"), Atom("undefined")) != Atom("undefined"):
        warnings.append(f"forwarding failed: {render(outcome[Atom('warning')], max_items=20)}")
    local = outcome[Atom("local")]
    return Migration(
        process=params.process,
        module=_text(outcome[Atom("module")]),
        source_node=source.name,
        target_node=target.name,
        old_pid=pid_text(outcome[Atom("old")]),
        new_pid=pid_text(outcome[Atom("new")]),
        strategy=Strategy(str(outcome[Atom("strategy")])),
        local_name=None if local == Atom("undefined") else _text(local),
        global_names=[_text(name) for name in outcome[Atom("globals")]],
        state_bytes=outcome[Atom("state_bytes")],
        forwarded=outcome[Atom("forwarded")],
        left_behind=left if isinstance(left, int) else None,
        calls_synced=bool(outcome[Atom("calls_synced")]),
        stopped=str(outcome[Atom("stopped")]),
        warnings=warnings,
        steps=_steps(outcome[Atom("steps")]),
        total_ms=round(total, 3),
    )


def migration_error(process: str, source: Node, target: Node, outcome: dict[Term, Term]) -> OperationError:
    """The error a failed migration is, with its steps and rollback in the details."""
    reason = outcome[Atom("reason")]
    step = str(outcome[Atom("step")])
    rollback = _steps(outcome.get(Atom("rollback"), []))
    code, key, message = _explain(reason, process, source.name, target.name)
    undone = all(item.ok for item in rollback)
    if rollback:
        state = (
            "rolled back: the old process is running again with its name and state"
            if undone
            else "the rollback did not complete: check both nodes (details.rollback)"
        )
        message = f"{message} (failed at {step}; {state})"
    lost = outcome.get(Atom("lost"), 0)
    if isinstance(lost, int) and lost > 0:
        message = f"{message}; {lost} message(s) forwarded to the new process were lost with it"
    return OperationError(
        code,
        message,
        {
            "reason": key,
            "step": step,
            "raw_reason": render(reason, max_items=20),
            "rolled_back": undone,
            "lost_messages": lost if isinstance(lost, int) else 0,
            "steps": [s.model_dump() for s in _steps(outcome.get(Atom("steps"), []))],
            "rollback": [s.model_dump() for s in rollback],
        },
    )


def _explain(reason: Term, process: str, source: str, target: str) -> tuple[ErrorCode, str, str]:
    """(code, short reason key, message that says what to do) for an agent's failure reason."""
    tag = reason[0] if isinstance(reason, tuple) and reason else reason
    name = str(tag) if isinstance(tag, Atom) else "error"
    arg = reason[1] if isinstance(reason, tuple) and len(reason) > 1 else None
    shown = render(arg, max_items=10) if arg is not None else ""
    table: dict[str, tuple[ErrorCode, str]] = {
        "not_found": (ErrorCode.not_found, f"no process {process} on {source}"),
        "bad_pid": (ErrorCode.validation_error, f"{process} is not a valid pid on {source}"),
        "on_other_node": (ErrorCode.validation_error, f"{process} lives on {shown}: pass node={shown}"),
        "same_node": (ErrorCode.validation_error, f"{process} is already on {target}"),
        "unknown_node": (ErrorCode.not_found, f"{source} has never been connected to {target}"),
        "not_connected": (
            ErrorCode.node_down,
            f"{source} is not connected to {target}; a migration goes directly between the two nodes",
        ),
        "unreachable": (ErrorCode.node_down, f"{target} did not answer {source} (down or partitioned)"),
        "not_gen_server": (
            ErrorCode.validation_error,
            f"{process} is not a gen_server ({shown}); only gen_servers (GenServers) can be migrated",
        ),
        "supervised": (
            ErrorCode.conflict,
            f"{process} was started with a link by {shown} (its parent: a supervisor, or the process "
            "that started it), which would restart it or see it exit. Only processes started without a "
            "link (gen_server:start, GenServer.start) are migrated",
        ),
        "module_missing": (
            ErrorCode.conflict,
            f"{target} does not have module {shown}; load the same version there first (load_module)",
        ),
        "module_differs": (
            ErrorCode.conflict,
            f"{target} has another version of module {shown} (md5 differs); load the source's version "
            "there first",
        ),
        "module_unreadable": (ErrorCode.conflict, f"{target} cannot read module {shown}'s object code"),
        "module_not_loadable": (ErrorCode.conflict, f"{target} could not load module {shown}"),
        "agent_missing": (ErrorCode.agent_error, f"Arsenal's agent is not loaded on {target}: attach it"),
        "agent_differs": (
            ErrorCode.agent_error,
            f"{target} runs another version of Arsenal's agent: re-attach it",
        ),
        "not_responding": (
            ErrorCode.timeout,
            f"{process} did not answer {shown} within step_timeout_ms (busy in a long callback?)",
        ),
        "state_too_large": (
            ErrorCode.limit_exceeded,
            f"{process}'s state is {shown} bytes, over max_state_bytes; raise it to move it anyway",
        ),
        "name_taken": (
            ErrorCode.conflict,
            f"the name {shown} is already registered on {target}; free it there first",
        ),
        "global_name": (ErrorCode.conflict, f"the global name {shown} could not be moved"),
        "global_name_moved": (ErrorCode.conflict, f"the global name {shown} was re-registered meanwhile"),
        "new_process_died": (ErrorCode.remote_error, f"the new process on {target} died: {shown}"),
        "timeout": (ErrorCode.timeout, "the migration did not finish within its steps' timeouts"),
        "coordinator_died": (ErrorCode.agent_error, f"the migration's coordinator on {source} died: {shown}"),
    }
    code, message = table.get(
        name, (ErrorCode.agent_error, f"migration failed: {render(reason, max_items=20)}")
    )
    return code, name, message


@register
class MigrateProcess(Operation[MigrateParams, Migration]):
    name = "migrate_process"
    category = CATEGORY
    summary = (
        "Move a gen_server (GenServer) to another attached node keeping its state: started there "
        "without init/1, its local or global name moved, its queued messages forwarded in order, "
        "the old one stopped; rolled back if any step fails."
    )
    cost = (
        "A few calls into the process (sys:get_status, suspend, get_state, replace_state, terminate), "
        "one process spawned on the target, the state copied once across the distribution link; "
        "a global name takes one global lock. Every step is bounded by step_timeout_ms."
    )
    risk = (
        "Destructive: the process is paused (suspended) while its state is copied and stops on the "
        "source; its pid changes. Messages sent to the old pid after the forward, and calls "
        "that reach it then, fail (callers get an exit, as when a process stops); its terminate/2 runs "
        "with reason normal. Links, monitors, timers, ETS tables and ports do not move. Senders by "
        "local name on the source find no process afterwards (the name lives on the target). "
        "Supervised processes are refused (their supervisor would restart them), and so are the "
        "VM's own unless an admin forces it."
    )
    params = MigrateParams
    result = Migration
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/cluster/migrations"
    cli_name = None
    timeout = 400.0
    example = {"process": "demo_cache", "target_node": "b@localhost", "strategy": "stop_then_start"}

    async def execute(self, ctx: Context, params: MigrateParams) -> Migration:
        return await migrate_one(ctx, params)


# ====================================================================== a set of migrations


class MigrationRequest(Params):
    process: str = Field(max_length=300, description="<0.N.S>, a registered name, or a global name.")
    node: str | None = Field(None, max_length=460, description="Its node (default: the default node).")
    target_node: str = Field(max_length=460)
    global_name: bool = False


class MigrateManyParams(MigrationOptions):
    migrations: list[MigrationRequest] = Field(min_length=1, max_length=MAX_BATCH)
    concurrency: int = Field(1, ge=1, le=8, description="Migrations run at once (1: one after the other).")
    stop_on_error: bool = Field(False, description="Skip the rest after the first failure.")


class MigrationOutcome(Result):
    process: str
    source_node: str | None
    target_node: str
    status: str = Field(description="migrated, failed (rolled back: see error) or skipped.")
    migration: Migration | None
    error: dict[str, Any] | None = Field(description="code, message and details of a failure.")


class Migrations(Result):
    outcomes: list[MigrationOutcome] = Field(description="In the order requested.")
    migrated: int
    failed: int
    skipped: int


async def migrate_many(ctx: Context, params: MigrateManyParams) -> Migrations:
    """Each migration on its own (its own checks and rollback); at most ``concurrency`` at once."""
    options = params.model_dump(include=set(MigrationOptions.model_fields))
    limit = asyncio.Semaphore(params.concurrency)
    stop = asyncio.Event()

    async def one(request: MigrationRequest) -> MigrationOutcome:
        async with limit:
            if stop.is_set():
                return MigrationOutcome(
                    process=request.process, source_node=request.node, target_node=request.target_node,
                    status="skipped", migration=None, error=None,
                )  # fmt: skip
            try:
                source = find_node(ctx, request.node) if request.node else ctx.require_node()
                single = MigrateParams(
                    **options,
                    process=request.process,
                    target_node=request.target_node,
                    global_name=request.global_name,
                )
                done = await migrate_one(node_context(ctx, source), single)
            except Exception as exc:
                error = as_operation_error(exc, "migrate_process")
                if params.stop_on_error:
                    stop.set()
                return MigrationOutcome(
                    process=request.process, source_node=request.node, target_node=request.target_node,
                    status="failed", migration=None, error=error.to_json(),
                )  # fmt: skip
            return MigrationOutcome(
                process=request.process, source_node=done.source_node, target_node=done.target_node,
                status="migrated", migration=done, error=None,
            )  # fmt: skip

    outcomes = list(await asyncio.gather(*(one(request) for request in params.migrations)))
    count = {
        status: sum(1 for o in outcomes if o.status == status) for status in ("migrated", "failed", "skipped")
    }
    return Migrations(
        outcomes=outcomes, migrated=count["migrated"], failed=count["failed"], skipped=count["skipped"]
    )


@register
class MigrateProcesses(Operation[MigrateManyParams, Migrations]):
    name = "migrate_processes"
    category = CATEGORY
    summary = (
        "Migrate a set of gen_servers (each like migrate_process, with its own checks and rollback), "
        "one after the other or a few at once; the outcome of each."
    )
    cost = "migrate_process for each (at most 50), at most `concurrency` at once."
    risk = (
        "Destructive, as migrate_process for each process. A failure rolls back that migration only: "
        "the others that succeeded stay moved (stop_on_error skips the rest)."
    )
    params = MigrateManyParams
    result = Migrations
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/cluster/migrations/batch"
    timeout = 1800.0
    example = {
        "migrations": [{"process": "demo_cache", "target_node": "b@localhost"}],
        "concurrency": 1,
    }

    async def execute(self, ctx: Context, params: MigrateManyParams) -> Migrations:
        return await migrate_many(ctx, params)


# ====================================================================== balancing


class BalanceParams(MigrationOptions):
    metric: Metric = Field(Metric.process_count, description="What to even out across the nodes.")
    modules: list[str] = Field(
        [], max_length=50, description="Only processes of these callback modules (Erlang or Elixir names)."
    )
    name_prefix: str | None = Field(None, max_length=255, description="Only names starting with this.")
    max_moves: int = Field(10, ge=1, le=50, description="At most this many moves are proposed.")
    dry_run: bool = Field(True, description="Only propose; false runs the moves (migrate_processes).")
    concurrency: int = Field(1, ge=1, le=8, description="Moves run at once when applied.")
    node_timeout_ms: int = Field(
        max(DEFAULT_NODE_TIMEOUT_MS, 2000), ge=10, le=30_000, description="How long to wait for each node."
    )


class Move(Result):
    process: str = Field(description="Its pid on the source.")
    name: str
    module: str
    source_node: str
    target_node: str
    weight: int = Field(description="What moving it shifts: 1 process, or its memory in bytes.")


class Balance(Result):
    metric: Metric
    dry_run: bool
    loads: dict[str, int] = Field(description="Each node's load before.")
    projected: dict[str, int] = Field(description="Each node's load once the moves are made.")
    movable: dict[str, int] = Field(description="Movable processes found on each node.")
    moves: list[Move]
    migrations: Migrations | None = Field(description="The moves' outcomes, when applied.")
    after: dict[str, int] | None = Field(description="Each node's load measured after applying.")
    missing: list[Missing]


def _elixir_name(module: str) -> str:
    return module if module[:1].islower() or module.startswith("Elixir.") else f"Elixir.{module}"


async def _loads(ctx: Context, metric: Metric, timeout_ms: int) -> tuple[dict[str, int], list[Missing]]:
    facts = await fan_out(ctx, lambda node: facts_of(node, timeout_ms / 1000), timeout_ms / 1000)
    key = "process_count" if metric is Metric.process_count else "memory_total"
    return {name: int(fact[key]) for name, fact in facts.results.items()}, facts.missing


def plan_moves(
    loads: dict[str, int],
    candidates: dict[str, list[dict[str, Any]]],
    can_host: dict[str, set[bytes]],
    max_moves: int,
) -> tuple[list[tuple[str, str, dict[str, Any]]], dict[str, int]]:
    """Greedy: while a move strictly narrows the gap between a loaded node and the least loaded
    one that has the process's module (same md5), move the candidate whose weight is nearest half
    that gap. Each candidate moves at most once. Returns the moves and the projected loads."""
    projected = dict(loads)
    left = {node: list(rows) for node, rows in candidates.items()}
    moves: list[tuple[str, str, dict[str, Any]]] = []
    while len(moves) < max_moves:
        best: tuple[int, str, str, dict[str, Any]] | None = None
        for source in sorted(projected, key=lambda n: -projected[n]):
            for row in left.get(source, []):
                targets = [n for n in projected if n != source and row["md5"] in can_host.get(n, set())]
                if not targets:
                    continue
                target = min(targets, key=lambda n: (projected[n], n))
                gap = projected[source] - projected[target]
                weight = row["weight"]
                if 0 < weight < gap:
                    score = abs(gap - 2 * weight)
                    if best is None or score < best[0]:
                        best = (score, source, target, row)
            if best is not None:
                break  # the most loaded node that can give something gives first
        if best is None:
            break
        _, source, target, row = best
        left[source].remove(row)
        projected[source] -= row["weight"]
        projected[target] += row["weight"]
        moves.append((source, target, row))
    return moves, projected


async def _movable(
    ctx: Context, params: BalanceParams, nodes: list[Node]
) -> tuple[dict[str, list[dict[str, Any]]], list[Missing]]:
    options: dict[Term, Term] = {Atom("modules"): [_elixir_name(m).encode() for m in params.modules]}
    if params.name_prefix:
        options[Atom("name_prefix")] = params.name_prefix.encode()
    timeout = params.node_timeout_ms / 1000

    async def scan(node: Node) -> list[dict[str, Any]]:
        raw = await node.agent_call("movable", [options], timeout, module=MODULE)
        rows = []
        for item in raw[Atom("processes")]:
            memory = int(item[Atom("memory")])
            rows.append(
                {
                    "pid": pid_text(item[Atom("pid")]),
                    "name": _text(item[Atom("name")]),
                    "module": _text(item[Atom("module")]),
                    "md5": item[Atom("md5")],
                    "weight": 1 if params.metric is Metric.process_count else memory,
                }
            )
        return rows

    found = await fan_out(ctx, scan, timeout, nodes)
    return found.results, found.missing


async def _hosts(ctx: Context, modules: set[str], nodes: list[Node], timeout: float) -> dict[str, set[bytes]]:
    """For each node, the md5s of the candidates' modules it has (loaded or on its code path)."""
    names = sorted(modules)

    async def md5s(node: Node) -> set[bytes]:
        raw = await node.agent_call("module_md5s", [[m.encode() for m in names]], timeout, module=MODULE)
        return {md5 for _, md5 in raw if isinstance(md5, bytes)}

    found = await fan_out(ctx, md5s, timeout, nodes)
    return found.results


@register
class BalanceClusterLoad(Operation[BalanceParams, Balance]):
    name = "balance_cluster_load"
    category = CATEGORY
    summary = (
        "Propose (dry run, the default) or make the moves of named gen_servers that even out process "
        "counts or memory across the attached nodes; applied through migrate_processes."
    )
    cost = (
        "One facts call and one scan of the registered names (local and global, at most 20 000 each, "
        "one process_info per name) per node, all at once; one md5 lookup per candidate module per "
        "node. Applying costs migrate_process per move (at most max_moves)."
    )
    risk = (
        "A dry run changes nothing. Applied, as migrate_process for each move: each process is paused "
        "and its pid changes. Only named gen_servers without links (so no supervisor's child), not "
        "the VM's own, not Arsenal's, whose module is identical on the target, are ever moved; "
        "applying requires a module or name filter."
    )
    params = BalanceParams
    result = Balance
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/cluster/balance"
    needs_node = False
    timeout = 1800.0
    example = {"metric": "process_count", "modules": ["demo_cache"], "max_moves": 5, "dry_run": True}

    async def execute(self, ctx: Context, params: BalanceParams) -> Balance:
        if not params.dry_run and not params.modules and not params.name_prefix:
            raise OperationError(
                ErrorCode.validation_error,
                "applying moves needs modules or name_prefix (which processes may move); a dry run "
                "without them shows what is movable",
            )
        loads, missing = await _loads(ctx, params.metric, params.node_timeout_ms)
        nodes = [n for n in ctx.pool.nodes if n.name in loads and not n.read_only]
        candidates, scan_missing = await _movable(ctx, params, nodes)
        modules = {row["module"] for rows in candidates.values() for row in rows}
        hosts = await _hosts(ctx, modules, nodes, params.node_timeout_ms / 1000) if modules else {}
        movable_loads = {name: load for name, load in loads.items() if name in {n.name for n in nodes}}
        planned, projected_part = plan_moves(movable_loads, candidates, hosts, params.max_moves)
        projected = {**loads, **projected_part}
        moves = [
            Move(
                process=row["pid"],
                name=row["name"],
                module=row["module"],
                source_node=source,
                target_node=target,
                weight=row["weight"],
            )
            for source, target, row in planned
        ]
        result = Balance(
            metric=params.metric,
            dry_run=params.dry_run,
            loads=loads,
            projected=projected,
            movable={name: len(rows) for name, rows in candidates.items()},
            moves=moves,
            migrations=None,
            after=None,
            missing=missing + scan_missing,
        )
        if params.dry_run or not moves:
            return result
        batch = MigrateManyParams(
            **params.model_dump(include=set(MigrationOptions.model_fields)),
            migrations=[
                MigrationRequest(process=m.process, node=m.source_node, target_node=m.target_node)
                for m in moves
            ],
            concurrency=params.concurrency,
        )
        result.migrations = await migrate_many(ctx, batch)
        result.after, _ = await _loads(ctx, params.metric, params.node_timeout_ms)
        return result
