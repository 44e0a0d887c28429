"""System operations: what a node is, what it holds, and how healthy it is.

Every scan runs inside the VM (``arsenal_agent_sys``) in one pass, and only a
bounded result crosses the wire: capped lists that report their full length,
pages with cursors, big terms replaced by a marker.
"""

from __future__ import annotations

import base64
import binascii
import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from ..beam import Node
from ..dist import Atom, Pid, Port, Term
from .base import Context, Operation, Params, Result
from .errors import ErrorCode, OperationError
from .plain import mfa_text, name_text, pid_or_none, pid_text, plain
from .registry import register
from .targets import check_target, is_agent_error, process_ref

__all__ = [
    "AnalyzeMessageQueue",
    "AnalyzeSystemHealth",
    "DetectBottlenecks",
    "GetEtsTable",
    "GetMemoryInfo",
    "GetSchedulerUsage",
    "GetSystemInfo",
    "ListApplications",
    "ListEtsTables",
    "ListPorts",
    "ListRegisteredProcesses",
]

SYS_MODULE = "arsenal_agent_sys"
CATEGORY = "system"
MAX_LIMIT = 1000
MAX_ROWS = 500


async def sys_call(node: Node, function: str, args: list[Term], timeout: float | None = None) -> Term:
    """Call ``arsenal_agent_sys:function(args)`` (the agent is loaded again if the node lost it)."""
    return await node.agent_call(function, args, timeout, module=SYS_MODULE)


def _text(value: Term) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _id_text(value: Term, language: str) -> str | None:
    """A pid as <0.N.S>, a port as the node writes it, None for undefined."""
    if isinstance(value, Pid):
        return pid_text(value)
    if isinstance(value, Port):
        return plain(value, language)
    return None


def _optional_int(value: Term) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ====================================================================== get_system_info


class DistributionInfo(Result):
    alive: bool
    net_ticktime: int | None = Field(description="Seconds.")
    visible_node_count: int
    hidden_node_count: int
    visible_nodes: list[str] = Field(description="At most 100.")
    hidden_nodes: list[str] = Field(description="At most 100 (Arsenal itself is one).")


class SystemInfo(Result):
    node: str
    language: str
    otp_release: str
    erts_version: str
    system_architecture: str
    word_size: int = Field(description="Bytes.")
    emulator_flavor: str
    schedulers: int
    schedulers_online: int
    dirty_cpu_schedulers: int
    dirty_io_schedulers: int
    logical_processors: int | None
    process_count: int
    process_limit: int
    port_count: int
    port_limit: int
    atom_count: int
    atom_limit: int
    ets_count: int
    ets_limit: int
    uptime_seconds: float
    distribution: DistributionInfo


@register
class GetSystemInfo(Operation[Params, SystemInfo]):
    name = "get_system_info"
    category = CATEGORY
    summary = (
        "The node's release, emulator, schedulers, process/port/atom/ETS counts against their limits, "
        "uptime, language and distribution."
    )
    cost = "O(1): constant-time system_info/1 reads; the lists of connected nodes are capped at 100."
    risk = "None: reads only."
    result = SystemInfo
    path = "/api/v1/system/metrics"
    example: dict[str, Any] = {}

    async def execute(self, ctx: Context, params: Params) -> SystemInfo:
        node = ctx.require_node()
        raw = await sys_call(node, "system_info", [])
        dist = raw[Atom("distribution")]
        return SystemInfo(
            node=_text(raw[Atom("node")]),
            language=_text(raw[Atom("language")]),
            otp_release=_text(raw[Atom("otp_release")]),
            erts_version=_text(raw[Atom("erts_version")]),
            system_architecture=_text(raw[Atom("system_architecture")]),
            word_size=raw[Atom("word_size")],
            emulator_flavor=_text(raw[Atom("emulator_flavor")]),
            schedulers=raw[Atom("schedulers")],
            schedulers_online=raw[Atom("schedulers_online")],
            dirty_cpu_schedulers=raw[Atom("dirty_cpu_schedulers")],
            dirty_io_schedulers=raw[Atom("dirty_io_schedulers")],
            logical_processors=_optional_int(raw[Atom("logical_processors")]),
            process_count=raw[Atom("process_count")],
            process_limit=raw[Atom("process_limit")],
            port_count=raw[Atom("port_count")],
            port_limit=raw[Atom("port_limit")],
            atom_count=raw[Atom("atom_count")],
            atom_limit=raw[Atom("atom_limit")],
            ets_count=raw[Atom("ets_count")],
            ets_limit=raw[Atom("ets_limit")],
            uptime_seconds=raw[Atom("uptime_ms")] / 1000,
            distribution=DistributionInfo(
                alive=dist[Atom("alive")] is True,
                net_ticktime=_optional_int(dist[Atom("net_ticktime")]),
                visible_node_count=dist[Atom("visible_node_count")],
                hidden_node_count=dist[Atom("hidden_node_count")],
                visible_nodes=[_text(n) for n in dist[Atom("visible_nodes")]],
                hidden_nodes=[_text(n) for n in dist[Atom("hidden_nodes")]],
            ),
        )


# ====================================================================== get_memory_info


class AllocatorRow(Result):
    name: str
    instances: int = Field(description="One per scheduler, plus the global one.")
    blocks_size: int = Field(description="Bytes in use by the VM.")
    carriers_size: int = Field(description="Bytes reserved from the OS.")
    usage: float = Field(description="blocks_size / carriers_size: low means fragmentation.")


class MemoryInfo(Result):
    node: str
    total: int = Field(description="Bytes, erlang:memory(total).")
    by_type: dict[str, int] = Field(description="erlang:memory() in bytes: processes, ets, binary, atom...")
    allocators: list[AllocatorRow]


@register
class GetMemoryInfo(Operation[Params, MemoryInfo]):
    name = "get_memory_info"
    category = CATEGORY
    summary = "Memory by type (erlang:memory/0) and, per allocator, bytes used against bytes reserved."
    cost = (
        "erlang:memory/0 plus erlang:system_info({allocator_sizes, A}) for each of the ~10 alloc_util "
        "allocators: each visits one instance per scheduler (microseconds each; no option or call "
        "counters are gathered, unlike {allocator, A})."
    )
    risk = "None: reads only."
    result = MemoryInfo
    path = "/api/v1/system/memory"
    example: dict[str, Any] = {}

    async def execute(self, ctx: Context, params: Params) -> MemoryInfo:
        node = ctx.require_node()
        raw = await sys_call(node, "memory_info", [])
        by_type = {str(k): v for k, v in raw[Atom("memory")].items()}
        return MemoryInfo(
            node=node.name,
            total=by_type.get("total", 0),
            by_type=by_type,
            allocators=[
                AllocatorRow(
                    name=str(a[Atom("name")]),
                    instances=a[Atom("instances")],
                    blocks_size=a[Atom("blocks_size")],
                    carriers_size=a[Atom("carriers_size")],
                    usage=float(a[Atom("usage")]),
                )
                for a in raw[Atom("allocators")]
            ],
        )


# ====================================================================== list_applications


class ApplicationRow(Result):
    name: str
    description: str
    version: str
    process_count: int = Field(description="Processes whose group leader is this application's master.")


class ApplicationList(Result):
    node: str
    applications: list[ApplicationRow]
    other_processes: int = Field(description="Processes of no application (the runtime's, bare spawns).")
    process_count: int


class ListApplicationsParams(Params):
    timeout_ms: int = Field(
        5000, ge=100, le=30000, description="How long to wait for application_controller."
    )


@register
class ListApplications(Operation[ListApplicationsParams, ApplicationList]):
    name = "list_applications"
    category = CATEGORY
    summary = "The running applications with their versions and how many processes each has."
    cost = (
        "application:which_applications/1 (a call to application_controller, bounded by timeout_ms) "
        "and one process_info(P, group_leader) per process, in one pass inside the VM: about 0.1 s at "
        "100 000 processes."
    )
    risk = "None: reads only. A busy application_controller makes it wait up to timeout_ms."
    params = ListApplicationsParams
    result = ApplicationList
    path = "/api/v1/applications"
    cli_name = "apps"
    timeout = 60.0
    example = {"timeout_ms": 5000}

    async def execute(self, ctx: Context, params: ListApplicationsParams) -> ApplicationList:
        node = ctx.require_node()
        raw = await sys_call(node, "applications", [params.timeout_ms], self.timeout)
        if is_agent_error(raw):
            raise OperationError(
                ErrorCode.timeout,
                f"application_controller on {node.name} did not answer in {params.timeout_ms} ms; "
                "retry with a larger timeout_ms",
            )
        apps = [
            ApplicationRow(
                name=str(a[Atom("name")]),
                description=_text(a[Atom("description")]),
                version=_text(a[Atom("version")]),
                process_count=a[Atom("process_count")],
            )
            for a in raw[Atom("applications")]
        ]
        return ApplicationList(
            node=node.name,
            applications=sorted(apps, key=lambda a: a.name),
            other_processes=raw[Atom("other_processes")],
            process_count=raw[Atom("process_count")],
        )


# ====================================================================== list_registered_processes


class LocalName(Result):
    name: str
    pid: str | None = Field(description="<0.N.S>, or null when the name is a port's.")
    port: str | None = None


class GlobalName(Result):
    name: str
    pid: str | None = Field(description="The pid as the node writes it (it may live on another node).")


class PgGroup(Result):
    group: Any = Field(description="The group's name (any term).")
    member_count: int
    local_member_count: int


class PgInfo(Result):
    running: bool = Field(description="Whether pg's default scope runs on the node (never started here).")
    group_count: int
    groups: list[PgGroup]


class RegisteredList(Result):
    node: str
    local_count: int
    local: list[LocalName]
    global_count: int
    global_names: list[GlobalName]
    pg: PgInfo


class ListRegisteredParams(Params):
    limit: int = Field(200, ge=1, le=MAX_LIMIT, description="At most this many of each kind, sorted.")


@register
class ListRegisteredProcesses(Operation[ListRegisteredParams, RegisteredList]):
    name = "list_registered_processes"
    category = CATEGORY
    summary = "Registered names: local (with pids or ports), global, and the groups of pg's default scope."
    cost = (
        "O(names): registered/0, global:registered_names/0 (an ETS read) and, when pg runs, "
        "pg:which_groups/0 with two member lookups per group listed."
    )
    risk = "None: reads only; pg is looked up, never started."
    params = ListRegisteredParams
    result = RegisteredList
    path = "/api/v1/registered"
    example = {"limit": 100}

    async def execute(self, ctx: Context, params: ListRegisteredParams) -> RegisteredList:
        node = ctx.require_node()
        raw = await sys_call(node, "registered", [params.limit])
        language = node.language
        pg = raw[Atom("pg")]
        return RegisteredList(
            node=node.name,
            local_count=raw[Atom("local_count")],
            local=[
                LocalName(
                    name=name_text(r[Atom("name")], language) or "",
                    pid=pid_or_none(r[Atom("id")]),
                    port=_id_text(r[Atom("id")], language) if isinstance(r[Atom("id")], Port) else None,
                )
                for r in raw[Atom("local")]
            ],
            global_count=raw[Atom("global_count")],
            global_names=[
                GlobalName(
                    name=plain(r[Atom("name")], language),
                    pid=plain(r[Atom("pid")], language, local_node=node.name)
                    if isinstance(r[Atom("pid")], Pid)
                    else None,
                )
                for r in raw[Atom("global")]
            ],
            pg=PgInfo(
                running=pg[Atom("running")] is True,
                group_count=pg[Atom("group_count")],
                groups=[
                    PgGroup(
                        group=plain(g[Atom("group")], language),
                        member_count=g[Atom("member_count")],
                        local_member_count=g[Atom("local_member_count")],
                    )
                    for g in pg[Atom("groups")]
                ],
            ),
        )


# ====================================================================== list_ports


class PortRow(Result):
    port: str
    id: int
    name: str = Field(description="The driver or the command the port runs.")
    connected: str | None = Field(description="The owning process.")
    input: int = Field(description="Bytes read from the port.")
    output: int = Field(description="Bytes written to the port.")
    os_pid: int | None


class PortList(Result):
    node: str
    port_count: int
    port_limit: int
    ports: list[PortRow] = Field(description="The busiest by input + output bytes.")


class ListPortsParams(Params):
    limit: int = Field(50, ge=1, le=MAX_LIMIT)


@register
class ListPorts(Operation[ListPortsParams, PortList]):
    name = "list_ports"
    category = CATEGORY
    summary = "The node's ports (sockets, files, drivers), busiest first, with owner and io counters."
    cost = "One port_info/1 per port, in one pass inside the VM keeping a bounded top-N."
    risk = "None: reads only."
    params = ListPortsParams
    result = PortList
    path = "/api/v1/ports"
    example = {"limit": 20}

    async def execute(self, ctx: Context, params: ListPortsParams) -> PortList:
        node = ctx.require_node()
        raw = await sys_call(node, "ports", [params.limit])
        language = node.language
        return PortList(
            node=node.name,
            port_count=raw[Atom("port_count")],
            port_limit=raw[Atom("port_limit")],
            ports=[
                PortRow(
                    port=plain(p[Atom("port")], language),
                    id=p.get(Atom("id"), 0),
                    name=_text(p.get(Atom("name"), b"")),
                    connected=_id_text(p.get(Atom("connected")), language),
                    input=p.get(Atom("input"), 0),
                    output=p.get(Atom("output"), 0),
                    os_pid=_optional_int(p.get(Atom("os_pid"))),
                )
                for p in raw[Atom("ports")]
            ],
        )


# ====================================================================== ETS


class EtsSort(StrEnum):
    memory = "memory"
    size = "size"


class EtsRow(Result):
    id: str = Field(description="The name of a named table, else its id #Ref<...>: pass it as `table`.")
    name: str
    named_table: bool
    type: str
    protection: str
    size: int = Field(description="Objects.")
    memory: int = Field(description="Bytes.")
    owner: str | None
    owner_name: str | None
    heir: str | None
    keypos: int
    read_concurrency: bool
    write_concurrency: bool | str
    compressed: bool


def _ets_row(raw: dict[Any, Any], language: str) -> EtsRow:
    write_concurrency = raw[Atom("write_concurrency")]
    return EtsRow(
        id=_text(raw[Atom("id")]),
        name=name_text(raw[Atom("name")], language) or "",
        named_table=raw[Atom("named_table")] is True,
        type=str(raw[Atom("type")]),
        protection=str(raw[Atom("protection")]),
        size=raw[Atom("size")],
        memory=raw[Atom("memory")],
        owner=pid_or_none(raw[Atom("owner")]),
        owner_name=name_text(raw[Atom("owner_name")], language),
        heir=pid_or_none(raw[Atom("heir")]),
        keypos=raw[Atom("keypos")],
        read_concurrency=raw[Atom("read_concurrency")] is True,
        write_concurrency=(
            write_concurrency if isinstance(write_concurrency, bool) else str(write_concurrency)
        ),
        compressed=raw[Atom("compressed")] is True,
    )


class EtsList(Result):
    node: str
    sort: EtsSort
    table_count: int
    tables: list[EtsRow]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null on the last.")


class ListEtsTablesParams(Params):
    sort_by: EtsSort = Field(EtsSort.memory, description="Largest first.")
    limit: int = Field(50, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=1_000_000)


@register
class ListEtsTables(Operation[ListEtsTablesParams, EtsList]):
    name = "list_ets_tables"
    category = CATEGORY
    summary = "ETS tables ranked by memory or size, a page at a time, with owner, type and protection."
    cost = "One ets:info/1 per table and a sort, inside the VM (tables number thousands at most)."
    risk = "None: reads only; no table content is read."
    params = ListEtsTablesParams
    result = EtsList
    path = "/api/v1/ets"
    cli_name = "ets"
    timeout = 30.0
    example = {"sort_by": "memory", "limit": 20}

    async def execute(self, ctx: Context, params: ListEtsTablesParams) -> EtsList:
        node = ctx.require_node()
        options = {
            Atom("sort"): params.sort_by.value.encode(),
            Atom("limit"): params.limit,
            Atom("offset"): params.offset,
        }
        raw = await sys_call(node, "ets_list", [options], self.timeout)
        tables = [_ets_row(t, node.language) for t in raw[Atom("tables")]]
        count = raw[Atom("table_count")]
        after = params.offset + len(tables)
        return EtsList(
            node=node.name,
            sort=params.sort_by,
            table_count=count,
            tables=tables,
            next_offset=after if tables and after < count else None,
        )


_CURSOR = re.compile(r"^(?:k:[A-Za-z0-9_-]+=*|o:\d{1,9})$")
_TABLE = re.compile(r"^(?:#Ref<\d+(?:\.\d+){1,4}>|:?[A-Za-z_][A-Za-z0-9_.@]{0,254})$")


class EtsTablePage(Result):
    node: str
    table: EtsRow
    rows: list[Any] = Field(
        description="Objects as plain JSON; one larger than max_row_words is "
        '{"$truncated": true, "words": N, "preview": "..."}.'
    )
    truncated_rows: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class GetEtsTableParams(Params):
    table: str = Field(
        max_length=300, description="The table's name, or its id #Ref<...> as list_ets_tables gives it."
    )
    limit: int = Field(50, ge=1, le=MAX_ROWS, description="Objects per page.")
    cursor: str | None = Field(None, max_length=65536, description="`next_cursor` of the previous page.")
    max_row_words: int = Field(2000, ge=16, le=1_000_000, description="Objects larger are truncated.")

    @field_validator("table")
    @classmethod
    def _table_shape(cls, value: str) -> str:
        if not _TABLE.match(value.strip()):
            raise ValueError("not a table name or a table id #Ref<...>")
        return value.strip()

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CURSOR.match(value):
            raise ValueError("not a cursor returned by get_ets_table")
        return value


@register
class GetEtsTable(Operation[GetEtsTableParams, EtsTablePage]):
    name = "get_ets_table"
    category = CATEGORY
    summary = "One ETS table's metadata and a page of its objects (at most 500), with a cursor."
    cost = (
        "set/ordered_set: ets:next/2 and ets:lookup/2 per object from the cursor key, O(limit). "
        "bag/duplicate_bag: ets:select/3 in chunks of 100 skipping the earlier pages, O(offset + limit). "
        "Objects larger than max_row_words are measured (erts_debug:flat_size/1) and cut."
    )
    risk = (
        "Reads only; each object shown is copied once. Private tables are refused. Pages are not a "
        "snapshot: objects written between calls may be missed or, in a set resized meanwhile, seen "
        "twice; a set whose cursor key was deleted meanwhile fails with a conflict (start again)."
    )
    params = GetEtsTableParams
    result = EtsTablePage
    path = "/api/v1/ets/{table}"
    cli_name = "ets"
    timeout = 30.0
    example = {"table": "ac_tab", "limit": 20}

    async def execute(self, ctx: Context, params: GetEtsTableParams) -> EtsTablePage:
        node = ctx.require_node()
        options: dict[Any, Any] = {Atom("limit"): params.limit, Atom("max_row_words"): params.max_row_words}
        if params.cursor:
            kind, value = params.cursor[0], params.cursor[2:]
            if kind == "k":
                try:
                    options[Atom("cursor")] = base64.urlsafe_b64decode(value)
                except (binascii.Error, ValueError):
                    raise OperationError(
                        ErrorCode.validation_error, "not a cursor returned by get_ets_table"
                    ) from None
            else:
                options[Atom("offset")] = int(value)
        table = params.table if params.table.startswith("#") else params.table.lstrip(":")
        raw = await sys_call(node, "ets_table", [table.encode(), options], self.timeout)
        if is_agent_error(raw):
            _ets_error(raw[1], params.table, node.name)
        rows = [plain(row, node.language, local_node=node.name) for row in raw[Atom("rows")]]
        return EtsTablePage(
            node=node.name,
            table=_ets_row(raw[Atom("table")], node.language),
            rows=rows,
            truncated_rows=sum(1 for r in rows if isinstance(r, dict) and r.get("$truncated") is True),
            next_cursor=_next_cursor(raw[Atom("next")]),
        )


def _next_cursor(raw: Term) -> str | None:
    if isinstance(raw, tuple) and raw[0] == Atom("key"):
        return "k:" + base64.urlsafe_b64encode(raw[1]).decode()
    if isinstance(raw, tuple) and raw[0] == Atom("offset"):
        return f"o:{raw[1]}"
    return None


def _ets_error(reason: Term, table: str, node: str) -> None:
    messages = {
        "not_found": (ErrorCode.not_found, f"no ETS table {table} on {node}; list_ets_tables lists them"),
        "bad_table_id": (ErrorCode.validation_error, f"{table} is not a table id of {node}"),
        "private": (
            ErrorCode.forbidden,
            f"ETS table {table} on {node} is private: only its owner can read it",
        ),
        "table_gone": (ErrorCode.not_found, f"ETS table {table} was deleted while being read"),
        "bad_cursor": (ErrorCode.validation_error, "not a cursor returned by get_ets_table"),
        "cursor_key_gone": (
            ErrorCode.conflict,
            f"the cursor's key was deleted from {table} meanwhile; start again without a cursor",
        ),
    }
    code, message = messages.get(str(reason), (ErrorCode.agent_error, f"reading {table} failed: {reason!r}"))
    raise OperationError(code, message)


# ====================================================================== get_scheduler_usage


class SchedulerRow(Result):
    id: int
    type: str = Field(description="normal, dirty_cpu or dirty_io.")
    utilization: float = Field(description="0..1 of the interval spent working.")


class SchedulerUsage(Result):
    node: str
    interval_ms: int
    total: float = Field(description="Utilisation of the normal schedulers together, 0..1.")
    total_with_dirty: float
    schedulers: list[SchedulerRow]


class SchedulerUsageParams(Params):
    interval: float = Field(1.0, ge=0.1, le=10.0, description="Seconds to sample over.")


def _schedulers(raw: list[Any]) -> list[SchedulerRow]:
    return [
        SchedulerRow(id=s[Atom("id")], type=str(s[Atom("type")]), utilization=float(s[Atom("utilization")]))
        for s in raw
    ]


@register
class GetSchedulerUsage(Operation[SchedulerUsageParams, SchedulerUsage]):
    name = "get_scheduler_usage"
    category = CATEGORY
    summary = "How busy each scheduler was over an interval (scheduler_wall_time, sampled twice)."
    cost = (
        "Turns scheduler_wall_time on for the interval (each scheduler then reads the clock at every "
        "state change: a small overhead), takes two samples, and puts the flag back as it was."
    )
    risk = "Negligible: the flag's overhead lasts the interval only; the call waits `interval` seconds."
    params = SchedulerUsageParams
    result = SchedulerUsage
    path = "/api/v1/system/schedulers"
    timeout = 20.0
    example = {"interval": 1.0}

    async def execute(self, ctx: Context, params: SchedulerUsageParams) -> SchedulerUsage:
        node = ctx.require_node()
        raw = await sys_call(node, "scheduler_usage", [round(params.interval * 1000)], params.interval + 10)
        return SchedulerUsage(
            node=node.name,
            interval_ms=raw[Atom("interval_ms")],
            total=float(raw[Atom("total")]),
            total_with_dirty=float(raw[Atom("total_with_dirty")]),
            schedulers=_schedulers(raw[Atom("schedulers")]),
        )


# ====================================================================== analyze_system_health


class ProcessSummary(Result):
    pid: str
    name: str | None
    initial_call: str | None
    memory: int
    message_queue_len: int


def _summary(raw: dict[Any, Any], language: str) -> ProcessSummary:
    return ProcessSummary(
        pid=pid_text(raw[Atom("pid")]),
        name=name_text(raw[Atom("name")], language),
        initial_call=mfa_text(raw[Atom("initial_call")], language),
        memory=raw[Atom("memory")],
        message_queue_len=raw[Atom("message_queue_len")],
    )


class LargeSupervisor(ProcessSummary):
    children: int


class HealthReason(Result):
    check: str
    level: str = Field(description="ok, warning or critical.")
    penalty: int = Field(description="Points taken off the score.")
    value: float = Field(description="The figure behind the verdict.")
    threshold: float | None = Field(description="Where it starts to count against the node.")
    message: str


class SystemHealth(Result):
    node: str
    score: int = Field(description="0..100: 100 minus the penalties.")
    status: str = Field(description="healthy (>= 80), degraded (>= 50) or critical.")
    reasons: list[HealthReason] = Field(description="Every check, worst first, with its figure.")
    process_count: int
    process_limit: int
    atom_count: int
    atom_limit: int
    supervisor_count: int
    supervised_count: int = Field(description="Processes a supervisor links to as a child.")
    supervised_share: float = Field(description="supervised_count / processes scanned.")
    proc_lib_count: int = Field(description="Processes started by proc_lib (with '$ancestors' and a parent).")
    unsupervised_count: int = Field(
        description="OTP processes no supervisor supervises (application masters and kernel's own aside)."
    )
    unsupervised: list[ProcessSummary]
    large_supervisors: list[LargeSupervisor]
    orphan_count: int
    orphans: list[ProcessSummary]
    memory_hog_count: int
    memory_hogs: list[ProcessSummary]
    large_queue_count: int
    large_queues: list[ProcessSummary]


class HealthParams(Params):
    queue_threshold: int = Field(1000, ge=1, le=100_000_000, description="A queue this long counts.")
    memory_threshold: int = Field(
        50_000_000, ge=1024, le=1 << 50, description="A process this large (bytes) counts as a hog."
    )
    limit: int = Field(10, ge=1, le=100, description="Processes shown per finding.")


def _usage_check(check: str, count: int, limit: int) -> HealthReason:
    share = count / limit if limit else 0.0
    level, penalty = "ok", 0
    if share >= 0.9:
        level, penalty = "critical", 30
    elif share >= 0.7:
        level, penalty = "warning", 15
    elif share >= 0.5:
        level, penalty = "warning", 5
    return HealthReason(
        check=check,
        level=level,
        penalty=penalty,
        value=round(share, 4),
        threshold=0.5,
        message=f"{count:,} of {limit:,} ({share:.1%}) used",
    )


@register
class AnalyzeSystemHealth(Operation[HealthParams, SystemHealth]):
    name = "analyze_system_health"
    category = CATEGORY
    summary = (
        "A health score 0-100 with its reasons: counts against limits, memory hogs, long queues, the "
        "share of supervised processes, unsupervised OTP processes, huge supervisors, and orphans."
    )
    cost = (
        "One pass over the processes inside the VM, one process_info/2 of six cheap items each (links "
        "are copied: a supervisor's list is as long as its children), keeping bounded top-N sets; the "
        "dictionary is read only for supervisor candidates (proc_lib processes with 2+ links) and for at "
        "most 10 000 proc_lib processes no supervisor links to. About 0.3-0.5 s at 100 000 processes."
    )
    risk = "None beyond the scan's CPU time: nothing is suspended or collected."
    params = HealthParams
    result = SystemHealth
    path = "/api/v1/system/health"
    cli_name = "health"
    timeout = 60.0
    example = {"queue_threshold": 1000, "limit": 10}

    async def execute(self, ctx: Context, params: HealthParams) -> SystemHealth:
        node = ctx.require_node()
        options = {
            Atom("queue_threshold"): params.queue_threshold,
            Atom("memory_threshold"): params.memory_threshold,
            Atom("limit"): params.limit,
        }
        raw = await sys_call(node, "health", [options], self.timeout)
        get = lambda key: raw[Atom(key)]  # noqa: E731
        language = node.language
        scanned = max(1, get("scanned"))
        supervised = get("supervised_count") / scanned
        unsupervised = get("unsupervised_count")
        large_supervisors = get("large_supervisors")
        reasons = [
            _usage_check("process_count", get("process_count"), get("process_limit")),
            _usage_check("atom_count", get("atom_count"), get("atom_limit")),
            _usage_check("port_count", get("port_count"), get("port_limit")),
            _usage_check("ets_count", get("ets_count"), get("ets_limit")),
        ]
        queues, hogs, orphans = get("large_queue_count"), get("memory_hog_count"), get("orphan_count")
        reasons.append(
            HealthReason(
                check="large_queues",
                level="ok" if queues == 0 else "critical" if queues >= 5 else "warning",
                penalty=min(25, 5 * queues),
                value=queues,
                threshold=params.queue_threshold,
                message=f"{queues} process(es) with {params.queue_threshold:,} or more queued messages",
            )
        )
        reasons.append(
            HealthReason(
                check="memory_hogs",
                level="ok" if hogs == 0 else "warning",
                penalty=min(20, 5 * hogs),
                value=hogs,
                threshold=params.memory_threshold,
                message=f"{hogs} process(es) holding {params.memory_threshold:,} bytes or more "
                f"(all processes: {get('processes_memory'):,} of {get('memory_total'):,} bytes)",
            )
        )
        reasons.append(
            HealthReason(
                check="supervised_share",
                level="ok" if supervised >= 0.25 else "warning",
                penalty=0 if supervised >= 0.25 else 10,
                value=round(supervised, 4),
                threshold=0.25,
                message=f"{get('supervised_count'):,} of {scanned:,} processes ({supervised:.1%}) are "
                f"children of one of {get('supervisor_count'):,} supervisors "
                f"({get('proc_lib_count'):,} were started by proc_lib)",
            )
        )
        reasons.append(
            HealthReason(
                check="unsupervised_otp_processes",
                level="ok" if unsupervised == 0 else "warning",
                penalty=min(10, 2 * unsupervised),
                value=unsupervised,
                threshold=1,
                message=f"{unsupervised} OTP process(es) (gen_server, gen_statem, Task...) that no "
                "supervisor supervises: started from a shell or without a supervision tree, nothing "
                "restarts them",
            )
        )
        reasons.append(
            HealthReason(
                check="large_supervisors",
                level="ok" if not large_supervisors else "warning",
                penalty=min(10, 5 * len(large_supervisors)),
                value=len(large_supervisors),
                threshold=1,
                message=f"{len(large_supervisors)} supervisor(s) with over 10,000 children: restarts and "
                "which_children get slow; partition them (PartitionSupervisor) or use a dynamic supervisor",
            )
        )
        reasons.append(
            HealthReason(
                check="orphans",
                level="ok" if orphans <= 10 else "warning",
                penalty=0 if orphans <= 10 else 5 if orphans <= 100 else 10,
                value=orphans,
                threshold=10,
                message=f"{orphans} process(es) neither OTP-started, nor linked, nor registered",
            )
        )
        score = max(0, 100 - sum(r.penalty for r in reasons))
        reasons.sort(key=lambda r: -r.penalty)
        return SystemHealth(
            node=node.name,
            score=score,
            status="healthy" if score >= 80 else "degraded" if score >= 50 else "critical",
            reasons=reasons,
            process_count=get("process_count"),
            process_limit=get("process_limit"),
            atom_count=get("atom_count"),
            atom_limit=get("atom_limit"),
            supervisor_count=get("supervisor_count"),
            supervised_count=get("supervised_count"),
            supervised_share=round(supervised, 4),
            proc_lib_count=get("proc_lib_count"),
            unsupervised_count=unsupervised,
            unsupervised=[_summary(r, language) for r in get("unsupervised")],
            large_supervisors=[
                LargeSupervisor(**_summary(r, language).model_dump(), children=r[Atom("children")])
                for r in large_supervisors
            ],
            orphan_count=orphans,
            orphans=[_summary(r, language) for r in get("orphans")],
            memory_hog_count=hogs,
            memory_hogs=[_summary(r, language) for r in get("memory_hogs")],
            large_queue_count=queues,
            large_queues=[_summary(r, language) for r in get("large_queues")],
        )


# ====================================================================== detect_bottlenecks


class ProcessRef(Result):
    pid: str
    name: str | None


class QueueGrowth(Result):
    pid: str
    name: str | None
    before: int
    after: int
    growth_per_s: float


class CallChain(Result):
    length: int
    deadlock: bool = Field(description="The chain comes back on itself: these calls wait on each other.")
    processes: list[ProcessRef] = Field(description="Caller first; each waits on the next.")


class Bottlenecks(Result):
    node: str
    interval_ms: int
    queued_process_count: int = Field(description="Processes with a non-empty queue at the first sample.")
    growing_queues: list[QueueGrowth]
    waiting_call_count: int = Field(description="Processes blocked in a synchronous call (gen:do_call).")
    call_chains: list[CallChain]
    scheduler_total: float
    busy_schedulers: list[SchedulerRow] = Field(description="Normal schedulers at 90% or more.")
    findings: list[str]


class BottleneckParams(Params):
    interval: float = Field(1.0, ge=0.1, le=10.0, description="Seconds between the two samples.")
    limit: int = Field(10, ge=1, le=100, description="Rows per finding.")
    min_queue: int = Field(1, ge=1, le=100_000_000, description="Queues shorter are not sampled.")


def _ref(raw: dict[Any, Any], language: str) -> ProcessRef:
    return ProcessRef(pid=pid_text(raw[Atom("pid")]), name=name_text(raw[Atom("name")], language))


@register
class DetectBottlenecks(Operation[BottleneckParams, Bottlenecks]):
    name = "detect_bottlenecks"
    category = CATEGORY
    summary = (
        "Where work piles up: queues growing over an interval, chains of processes blocked in "
        "synchronous calls on each other (and deadlocks), and busy schedulers."
    )
    cost = (
        "Three passes over the processes inside the VM (message_queue_len twice, for at most the 10 000 "
        "longest queues the second time, and current_function once, then monitors of the callers), with "
        "scheduler_wall_time on for the interval (put back as it was)."
    )
    risk = "Negligible: reads only; the call waits `interval` seconds."
    params = BottleneckParams
    result = Bottlenecks
    path = "/api/v1/system/bottlenecks"
    timeout = 60.0
    example = {"interval": 1.0, "limit": 10}

    async def execute(self, ctx: Context, params: BottleneckParams) -> Bottlenecks:
        node = ctx.require_node()
        options = {
            Atom("interval_ms"): round(params.interval * 1000),
            Atom("limit"): params.limit,
            Atom("min_queue"): params.min_queue,
        }
        raw = await sys_call(node, "bottlenecks", [options], self.timeout)
        language = node.language
        growing = [
            QueueGrowth(
                pid=pid_text(g[Atom("pid")]),
                name=name_text(g[Atom("name")], language),
                before=g[Atom("before")],
                after=g[Atom("after")],
                growth_per_s=float(g[Atom("growth_per_s")]),
            )
            for g in raw[Atom("growing_queues")]
        ]
        chains = [
            CallChain(
                length=c[Atom("length")],
                deadlock=c[Atom("deadlock")] is True,
                processes=[_ref(p, language) for p in c[Atom("processes")]],
            )
            for c in raw[Atom("call_chains")]
        ]
        busy = _schedulers(raw[Atom("busy_schedulers")])
        findings = [
            f"{g.name or g.pid}: queue grew {g.before} -> {g.after} ({g.growth_per_s:.0f}/s)" for g in growing
        ]
        findings += [
            ("deadlock: " if c.deadlock else f"call chain of {c.length}: ")
            + " -> ".join(p.name or p.pid for p in c.processes)
            for c in chains
            if c.deadlock or c.length > 2
        ]
        findings += [f"scheduler {s.id} at {s.utilization:.0%}" for s in busy]
        return Bottlenecks(
            node=node.name,
            interval_ms=raw[Atom("interval_ms")],
            queued_process_count=raw[Atom("queued_process_count")],
            growing_queues=growing,
            waiting_call_count=raw[Atom("waiting_call_count")],
            call_chains=chains,
            scheduler_total=float(raw[Atom("scheduler_total")]),
            busy_schedulers=busy,
            findings=findings,
        )


# ====================================================================== analyze_message_queue


class MessageShape(Result):
    shape: str = Field(description="{tag, ...}/size for tagged tuples, else the type.")
    count: int


class MessageQueueAnalysis(Result):
    node: str
    pid: str
    name: str | None
    before: int
    after: int
    interval_ms: int
    growth_per_s: float
    current_function: str | None
    status: str
    memory: int
    copied: bool = Field(description="Whether the queue was read (only when at most max_copy messages).")
    shapes: list[MessageShape]
    messages: list[Any] = Field(description="The first `sample` messages; big ones truncated.")


class MessageQueueParams(Params):
    pid: str = Field(description="<0.123.0>, 0.123.0 or a registered name.", max_length=300)
    interval: float = Field(1.0, ge=0.0, le=10.0, description="Seconds between the two length samples.")
    sample: int = Field(20, ge=0, le=100, description="Messages shown (0: figures only).")
    max_copy: int = Field(
        10_000, ge=0, le=100_000, description="Longer queues are not copied (only measured)."
    )


@register
class AnalyzeMessageQueue(Operation[MessageQueueParams, MessageQueueAnalysis]):
    name = "analyze_message_queue"
    category = CATEGORY
    summary = "One process's queue: growth over an interval, what it is doing, and its messages by shape."
    cost = (
        "Two process_info/2 calls `interval` apart; when the queue holds at most max_copy messages, one "
        "process_info(P, messages), which copies the whole queue into the agent's call (the reason for "
        "the cap: copying a million-message queue is what takes nodes down)."
    )
    risk = "Reads only; the copy briefly doubles the queue's memory, bounded by max_copy."
    params = MessageQueueParams
    result = MessageQueueAnalysis
    path = "/api/v1/processes/{pid}/message_queue"
    timeout = 30.0
    example = {"pid": "<0.0.0>", "interval": 0.5, "sample": 10}

    async def execute(self, ctx: Context, params: MessageQueueParams) -> MessageQueueAnalysis:
        node = ctx.require_node()
        options = {
            Atom("interval_ms"): round(params.interval * 1000),
            Atom("sample"): params.sample,
            Atom("max_copy"): params.max_copy,
        }
        raw = await sys_call(node, "message_queue", [process_ref(params.pid), options], self.timeout)
        check_target(raw, params.pid, node)
        if is_agent_error(raw):
            raise OperationError(ErrorCode.not_found, f"{params.pid} is not alive on {node.name}")
        language = node.language
        return MessageQueueAnalysis(
            node=node.name,
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], language),
            before=raw[Atom("before")],
            after=raw[Atom("after")],
            interval_ms=raw[Atom("interval_ms")],
            growth_per_s=float(raw[Atom("growth_per_s")]),
            current_function=mfa_text(raw[Atom("current_function")], language),
            status=str(raw[Atom("status")]),
            memory=raw[Atom("memory")],
            copied=raw[Atom("copied")] is True,
            shapes=[
                MessageShape(shape=_text(s[Atom("shape")]), count=s[Atom("count")])
                for s in raw[Atom("shapes")]
            ],
            messages=[plain(m, language, local_node=node.name) for m in raw[Atom("messages")]],
        )
