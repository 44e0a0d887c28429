"""Process operations: find processes and look inside them.

Everything that scans processes runs inside the VM (the agent): only the rows
asked for cross the wire.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from ..dist import Atom
from .base import Context, Operation, Params, Result
from .errors import ErrorCode, OperationError
from .plain import mfa_text, name_text, pid_text, plain, stacktrace
from .registry import register
from .targets import check_target, is_agent_error, process_ref

__all__ = [
    "GetProcessInfo",
    "GetProcessWindow",
    "ListProcesses",
    "MAX_LIMIT",
    "ProcessList",
    "ProcessRow",
    "ProcessWindow",
    "ProcessWindowRow",
    "SortKey",
]

MAX_LIMIT = 1000


class SortKey(StrEnum):
    memory = "memory"
    reductions = "reductions"
    message_queue_len = "message_queue_len"


class ProcessStatus(StrEnum):
    running = "running"
    runnable = "runnable"
    waiting = "waiting"
    garbage_collecting = "garbage_collecting"
    suspended = "suspended"
    exiting = "exiting"


class ProcessRow(Result):
    pid: str = Field(description="The pid on its node, <0.N.S>.")
    registered_name: str | None
    current_function: str | None
    initial_call: str | None
    memory: int = Field(description="Bytes.")
    reductions: int
    message_queue_len: int
    status: str


class ProcessList(Result):
    node: str
    sort: SortKey
    process_count: int = Field(description="All processes on the node, not only those listed.")
    processes: list[ProcessRow]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


_CURSOR = re.compile(r"^(\d+):<0\.(\d+)\.(\d+)>$")


class ListProcessesParams(Params):
    sort_by: SortKey = Field(SortKey.memory, description="What to rank by, largest first.")
    limit: int = Field(20, ge=1, le=MAX_LIMIT, description="Rows per page.")
    name: str | None = Field(None, min_length=1, max_length=255, description="Part of the registered name.")
    module: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Only processes running, or started in, this module (copies each "
        "process dictionary: costlier).",
    )
    min_memory: int | None = Field(None, ge=0, description="Bytes.")
    min_queue: int | None = Field(None, ge=0)
    min_reductions: int | None = Field(None, ge=0)
    status: ProcessStatus | None = None
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CURSOR.match(value):
            raise ValueError("not a cursor returned by list_processes")
        return value


@register
class ListProcesses(Operation[ListProcessesParams, ProcessList]):
    name = "list_processes"
    category = "processes"
    summary = "The processes of a node, filtered and ranked inside the VM, a page at a time."
    cost = (
        "One process_info/2 per process, fetching only what the filters need, and a bounded top-N set "
        "(like recon:proc_count/2): about 0.3 s at 100 000 processes, 5 s at 1 000 000. Each page is a "
        "new scan."
    )
    risk = "None beyond the scan's CPU time: nothing is suspended, traced or collected."
    params = ListProcessesParams
    result = ProcessList
    path = "/api/v1/processes"
    cli_name = "ps"
    timeout = 60.0
    example = {"sort_by": "memory", "limit": 10}

    async def execute(self, ctx: Context, params: ListProcessesParams) -> ProcessList:
        node = ctx.require_node()
        options: dict[Any, Any] = {Atom("sort"): params.sort_by.value.encode(), Atom("limit"): params.limit}
        for field, value in (
            ("name", params.name),
            ("module", params.module),
            ("min_memory", params.min_memory),
            ("min_queue", params.min_queue),
            ("min_reductions", params.min_reductions),
            ("status", params.status.value if params.status else None),
        ):
            if value is not None:
                # Text goes as binaries: the agent looks names up, it never makes atoms of them.
                options[Atom(field)] = value.encode() if isinstance(value, str) else value
        if params.cursor:
            value, number, serial = _CURSOR.match(params.cursor).groups()  # type: ignore[union-attr]
            options[Atom("after")] = (int(value), f"<0.{number}.{serial}>".encode())
        raw = await node.agent_call("list_processes", [options], self.timeout)
        if is_agent_error(raw):
            raise OperationError(ErrorCode.validation_error, f"the agent refused the request: {raw[1]!r}")
        rows = [_row(item, node.language) for item in raw[Atom("rows")]]
        next_cursor = None
        if len(rows) == params.limit:
            last = raw[Atom("rows")][-1]
            next_cursor = f"{last[Atom(params.sort_by.value)]}:{pid_text(last[Atom('pid')])}"
        return ProcessList(
            node=node.name,
            sort=params.sort_by,
            process_count=raw[Atom("process_count")],
            processes=rows,
            next_cursor=next_cursor,
        )


def _row(item: dict[Any, Any], language: str) -> ProcessRow:
    return ProcessRow(
        pid=pid_text(item[Atom("pid")]),
        registered_name=name_text(item[Atom("registered_name")], language),
        current_function=mfa_text(item[Atom("current_function")], language),
        initial_call=mfa_text(item[Atom("initial_call")], language),
        memory=item[Atom("memory")],
        reductions=item[Atom("reductions")],
        message_queue_len=item[Atom("message_queue_len")],
        status=str(item[Atom("status")]),
    )


class InfoField(StrEnum):
    registered_name = "registered_name"
    current_function = "current_function"
    initial_call = "initial_call"
    status = "status"
    message_queue_len = "message_queue_len"
    links = "links"
    monitors = "monitors"
    monitored_by = "monitored_by"
    dictionary = "dictionary"
    current_stacktrace = "current_stacktrace"
    memory = "memory"
    heap_size = "heap_size"
    total_heap_size = "total_heap_size"
    stack_size = "stack_size"
    reductions = "reductions"
    trap_exit = "trap_exit"
    group_leader = "group_leader"
    priority = "priority"
    garbage_collection = "garbage_collection"
    error_handler = "error_handler"
    suspending = "suspending"


class ProcessRefParams(Params):
    pid: str = Field(description="<0.123.0>, 0.123.0, #PID<0.123.0> or a registered name.", max_length=300)


class GetProcessInfoParams(ProcessRefParams):
    fields: list[InfoField] = Field(default_factory=list, description="Which fields; all when empty.")


class ProcessInfo(Result):
    pid: str
    info: dict[str, Any] = Field(
        description="Each field asked for; lists over 1000 entries are cut and say so."
    )


@register
class GetProcessInfo(Operation[GetProcessInfoParams, ProcessInfo]):
    name = "get_process_info"
    category = "processes"
    summary = "What process_info/2 knows of one process: the fields asked for, or all of them."
    cost = "One process_info/2; the dictionary and the stacktrace are copied, so ask only for what you need."
    risk = "None: reads only."
    params = GetProcessInfoParams
    result = ProcessInfo
    path = "/api/v1/processes/{pid}"
    cli_name = "info"
    example = {"pid": "<0.0.0>", "fields": ["memory", "message_queue_len", "current_function"]}

    async def execute(self, ctx: Context, params: GetProcessInfoParams) -> ProcessInfo:
        node = ctx.require_node()
        fields = [f.value.encode() for f in params.fields]
        raw = await node.agent_call("process_info", [process_ref(params.pid), fields])
        check_target(raw, params.pid, node)
        if raw == Atom("undefined"):
            raise OperationError(ErrorCode.not_found, f"{params.pid} is not alive on {node.name}")
        return ProcessInfo(pid=pid_text(raw[Atom("pid")]), info=_info(raw, node.language, node.name))


def _info(raw: dict[Any, Any], language: str, node: str) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for key, value in raw.items():
        field = str(key)
        if field == "pid":
            continue
        if field in ("current_function", "initial_call"):
            info[field] = mfa_text(value, language)
        elif field == "registered_name":
            info[field] = name_text(value, language)
        elif field == "current_stacktrace":
            info[field] = stacktrace(value, language, local_node=node)
        else:
            info[field] = plain(value, language, local_node=node)
    return info


# ====================================================================== get_process_window

MAX_WINDOW_OFFSET = 100_000


class ProcessWindowRow(Result):
    pid: str = Field(description="The pid on its node, <0.N.S>.")
    registered_name: str | None
    current_function: str | None
    initial_call: str | None
    memory: int = Field(description="Bytes, at the end of the window.")
    message_queue_len: int = Field(description="At the end of the window.")
    reductions: int = Field(description="Since the process started.")
    reductions_delta: int = Field(
        description="Reductions during the window (all of them for a process born in it)."
    )
    status: str


class WindowMemory(Result):
    """erlang:memory() at the end of the window, in bytes."""

    total: int
    processes: int
    system: int
    ets: int
    binary: int
    atom: int
    code: int


class WindowScheduler(Result):
    id: int
    type: str = Field(description="normal or dirty_cpu.")
    utilization: float = Field(description="0..1 of the window spent working.")


class ProcessWindow(Result):
    node: str
    uptime_seconds: float
    window_ms: int
    sort: SortKey = Field(
        description="reductions ranks by growth over the window; memory and message_queue_len by "
        "their value at its end."
    )
    offset: int
    limit: int
    process_count: int = Field(description="All processes on the node, not only those listed.")
    process_limit: int
    run_queue: int = Field(description="Processes ready to run, summed over the run queues.")
    memory: WindowMemory
    io_input: int = Field(description="Bytes received through ports during the window.")
    io_output: int = Field(description="Bytes sent through ports during the window.")
    scheduler_usage: float = Field(description="The normal schedulers' average utilisation, 0..1.")
    schedulers: list[WindowScheduler] = Field(description="Each normal and dirty CPU scheduler.")
    processes: list[ProcessWindowRow] = Field(
        description="Ranked largest first; a process that died before its details were read is left out."
    )


class GetProcessWindowParams(Params):
    sort_by: SortKey = Field(
        SortKey.reductions,
        description="reductions: growth over the window; memory, message_queue_len: value at its end.",
    )
    window_ms: int = Field(1000, ge=100, le=5000, description="Milliseconds between the two samples.")
    limit: int = Field(20, ge=1, le=MAX_LIMIT, description="Rows per page.")
    offset: int = Field(0, ge=0, le=MAX_WINDOW_OFFSET, description="Ranked rows to skip (paging).")


@register
class GetProcessWindow(Operation[GetProcessWindowParams, ProcessWindow]):
    name = "get_process_window"
    category = "processes"
    summary = (
        "The top processes by how much they grew over a window (like recon:proc_window/3), with the "
        "node's totals and scheduler usage over the same window: what `arsenal top` shows."
    )
    cost = (
        "Like recon:proc_window/3: two scans of every process (process_info/2 each), the first one's "
        "reductions held in a map for the window (about 30 bytes per process), a bounded top set of "
        "offset + limit entries, details for the winners only: about 0.4 s of scanning at 200 000 "
        "processes on top of the window. scheduler_wall_time is on for the window (each scheduler "
        "reads the clock at every state change) and put back as it was. The call waits `window_ms`."
    )
    risk = (
        "None beyond the scans' CPU time and the snapshot's memory (tens of MB at 1 000 000 "
        "processes, while the call runs): nothing is suspended, traced or collected."
    )
    params = GetProcessWindowParams
    result = ProcessWindow
    path = "/api/v1/processes/window"
    cli_name = "top"
    timeout = 60.0
    example = {"sort_by": "reductions", "window_ms": 500, "limit": 10}

    async def execute(self, ctx: Context, params: GetProcessWindowParams) -> ProcessWindow:
        node = ctx.require_node()
        options = {
            Atom("sort"): params.sort_by.value.encode(),
            Atom("window_ms"): params.window_ms,
            Atom("limit"): params.limit,
            Atom("offset"): params.offset,
        }
        raw = await node.agent_call("proc_window", [options], self.timeout)
        if is_agent_error(raw):
            raise OperationError(ErrorCode.validation_error, f"the agent refused the request: {raw[1]!r}")
        memory = {str(key): value for key, value in raw[Atom("memory")].items()}
        return ProcessWindow(
            node=node.name,
            uptime_seconds=raw[Atom("uptime_ms")] / 1000,
            window_ms=raw[Atom("window_ms")],
            sort=params.sort_by,
            offset=raw[Atom("offset")],
            limit=raw[Atom("limit")],
            process_count=raw[Atom("process_count")],
            process_limit=raw[Atom("process_limit")],
            run_queue=raw[Atom("run_queue")],
            memory=WindowMemory(**{name: memory.get(name, 0) for name in WindowMemory.model_fields}),
            io_input=raw[Atom("io_input")],
            io_output=raw[Atom("io_output")],
            scheduler_usage=float(raw[Atom("scheduler_usage")]),
            schedulers=[
                WindowScheduler(
                    id=s[Atom("id")], type=str(s[Atom("type")]), utilization=float(s[Atom("utilization")])
                )
                for s in raw[Atom("schedulers")]
            ],
            processes=[_window_row(item, node.language) for item in raw[Atom("rows")]],
        )


def _window_row(item: dict[Any, Any], language: str) -> ProcessWindowRow:
    return ProcessWindowRow(
        **_row(item, language).model_dump(), reductions_delta=item[Atom("reductions_delta")]
    )
