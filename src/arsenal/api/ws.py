"""``/api/v1/ws``: a WebSocket that pushes updates on channels a client subscribes to.

Client messages (JSON objects)::

    {"subscribe": "system:metrics", "interval": 2, "node": "app@host"}   # interval ≥ 1 s, default 2
    {"subscribe": "process:<0.123.0>"}        # or process:0.123.0, process:registered_name
    {"subscribe": "supervisor:my_sup"}        # needs a supervisor-children operation in the registry
    {"subscribe": "trace:0123456789ab"}       # a running trace session's events, then its end
    {"subscribe": "intercept:0123456789ab"}   # what a running interception's rules did, then its end
    {"subscribe": "alerts"}                   # alerts as they fire: {"type": "alert", "channel", "data"}
    {"subscribe": "cluster"}                  # nodes joining and leaving the attached cluster
    {"unsubscribe": "system:metrics"}

Server messages: ``{"type": "subscribed"|"unsubscribed", "channel"}``, ``{"type": "update",
"channel", "data"}``, ``{"type": "exit", "channel", "data": {"pid", "alive": false, "reason"}}``
(the process is gone — with its exit reason when the registry has ``monitor_process``; the
subscription ends), ``system:metrics`` updates carry one vitals sample (process, port, atom and ETS
counts and limits, memory by type, run queues, scheduler utilisation — null on the first push),
``{"type": "error", "channel"?, "errors": [...]}`` (same error objects as
REST), ``{"type": "trace", "channel", "data": {"events": [...], "dropped"}}`` and, when the
session ends, ``{"type": "trace_end", "channel", "data": {"id", "reason", "events"}}``; the same
for interceptions: ``{"type": "intercept", "channel", "data": {"events", "counters", "dropped"}}``
then ``{"type": "intercept_end", "channel", "data": {"id", "reason", "restored", "counters"}}``. Process
and supervisor channels push only when something changed; system:metrics pushes every interval.
Every push loop belongs to its socket: when the socket closes they are cancelled and awaited, so
nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from ..dist import Atom
from ..ops.errors import ErrorCode, OperationError, as_operation_error
from ..ops.interception import InterceptionManager
from ..ops.interception import Watcher as InterceptWatcher
from ..ops.trace_sessions import TraceManager, Watcher
from .messages import client_message, error_message
from .routes import check_node

if TYPE_CHECKING:
    from ..client import Arsenal

__all__ = ["MAX_SUBSCRIPTIONS", "TASK_PREFIX", "add_websocket"]

MAX_SUBSCRIPTIONS = 32
MAX_MESSAGE = 4096
TASK_PREFIX = "arsenal-ws "
MIN_INTERVAL = 1.0
MAX_INTERVAL = 60.0
DEFAULT_INTERVAL = 2.0
# Waits for a process's exit between two polls, when the registry has it (for the exit reason).
MONITOR_OPERATION = "monitor_process"
PROCESS_FIELDS = ["memory", "message_queue_len", "reductions", "status", "current_function"]
# Operations that list a supervisor's children, tried in this order (whichever the registry has).
SUPERVISOR_OPERATIONS = ("which_children", "get_supervisor_children", "list_supervisor_children")

Push = Callable[[dict[str, Any]], Awaitable[None]]


class _Socket:
    def __init__(self, websocket: WebSocket, service: Arsenal) -> None:
        self.websocket = websocket
        self.service = service
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(message))

    async def error(self, error: OperationError, channel: str | None = None) -> None:
        await self.send(error_message(error, **({"channel": channel} if channel is not None else {})))

    async def handle(self, text: str) -> None:
        try:
            message = client_message(
                text,
                max_bytes=MAX_MESSAGE,
                accepts=lambda m: ("subscribe" in m) ^ ("unsubscribe" in m),
                usage='send {"subscribe": CHANNEL} or {"unsubscribe": CHANNEL}; channels: system:metrics, '
                "process:<pid>, supervisor:<name>",
            )
        except OperationError as error:
            await self.error(error)
            return
        if "unsubscribe" in message:
            channel = message["unsubscribe"]
            task = self.tasks.pop(channel, None) if isinstance(channel, str) else None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.send({"type": "unsubscribed", "channel": channel})
            return
        channel = message["subscribe"]
        try:
            loop = self._plan(channel, message)
        except OperationError as error:
            await self.error(error, channel if isinstance(channel, str) else None)
            return
        if channel in self.tasks:
            await self.send({"type": "subscribed", "channel": channel})
            return
        self.tasks[channel] = asyncio.create_task(self._guard(channel, loop), name=f"{TASK_PREFIX}{channel}")
        await self.send({"type": "subscribed", "channel": channel})

    def _plan(self, channel: Any, message: dict[str, Any]) -> Callable[[], Awaitable[None]]:
        if not isinstance(channel, str) or len(channel) > 320:
            raise OperationError(
                ErrorCode.validation_error, "a channel is a string of at most 320 characters"
            )
        if channel not in self.tasks and len(self.tasks) >= MAX_SUBSCRIPTIONS:
            raise OperationError(
                ErrorCode.limit_exceeded,
                f"at most {MAX_SUBSCRIPTIONS} subscriptions per socket; unsubscribe from one first",
            )
        interval = message.get("interval", DEFAULT_INTERVAL)
        if not isinstance(interval, int | float) or not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            raise OperationError(
                ErrorCode.validation_error, f"interval is seconds, from {MIN_INTERVAL:g} to {MAX_INTERVAL:g}"
            )
        node = message.get("node")
        if node is not None and (not isinstance(node, str) or len(node) > 255):
            raise OperationError(ErrorCode.validation_error, "node is a node name (name@host)")
        node = check_node(node)
        kind, _, target = channel.partition(":")
        if kind == "system" and target == "metrics":
            return lambda: self._metrics(channel, float(interval), node)
        if kind == "process" and target:
            return lambda: self._watch(
                channel, float(interval), node, "get_process_info", {"pid": target, "fields": PROCESS_FIELDS}
            )
        if kind == "supervisor" and target:
            operation = next((n for n in SUPERVISOR_OPERATIONS if n in self.service.registry), None)
            if operation is None:
                raise OperationError(
                    ErrorCode.not_found,
                    "no supervisor operation is registered in this Arsenal, so supervisor channels are "
                    "unavailable; watch its processes with process:<pid>",
                )
            return lambda: self._watch(channel, float(interval), node, operation, {"name": target})
        if kind == "trace" and target:
            manager = self.service.services.get(TraceManager)
            if target not in manager.live:
                raise OperationError(
                    ErrorCode.not_found,
                    f"no running trace session {target}; a finished one's events are at "
                    f"GET /api/v1/traces/{target}",
                )
            watcher = manager.watch(target)
            return lambda: self._trace(channel, manager, target, watcher)
        # The alerts channel.
        if channel == "alerts":
            from ..analytics import AlertEvaluator

            alert_watcher = self.service.services.get(AlertEvaluator).watch()
            return lambda: self._alerts(channel, alert_watcher)
        if kind == "intercept" and target:
            interceptions = self.service.services.get(InterceptionManager)
            intercept_watcher = interceptions.watch(target)
            return lambda: self._intercept(channel, interceptions, target, intercept_watcher)
        if channel == "cluster":  # cluster joins and leaves (see cluster.membership)
            from ..cluster.membership import ClusterMembership, push_events

            membership = self.service.services.get(ClusterMembership)
            return lambda: push_events(self.send, channel, membership)
        raise OperationError(
            ErrorCode.not_found,
            f"no channel {channel!r}; channels: system:metrics, process:<pid>, supervisor:<name>, "
            "trace:<id>, intercept:<id>, alerts, cluster",
        )

    async def _guard(self, channel: str, loop: Callable[[], Awaitable[None]]) -> None:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a push loop's failure ends that subscription, not the socket
            self.tasks.pop(channel, None)
            with contextlib.suppress(Exception):
                await self.error(as_operation_error(exc, channel), channel)

    async def _metrics(self, channel: str, interval: float, node_name: str | None) -> None:
        """Push the node's vital signs every ``interval``: what the system dashboard shows and charts.

        One agent call per push, ``arsenal_agent_vitals:vitals/0`` (the node sampler's: counters the
        VM keeps anyway, O(schedulers)). Each push carries ``node, process_count, memory_total,
        run_queue`` (normal + dirty CPU queues, as ``statistics(run_queue)``) and, with the agent:
        ``sampled_at`` (unix seconds), ``process_limit``, ``port_count``/``port_limit``,
        ``atom_count``/``atom_limit``, ``ets_count``/``ets_limit``, ``memory`` (bytes by type, as
        ``erlang:memory()``), ``run_queues`` (per normal scheduler), ``dirty_cpu_run_queue``,
        ``dirty_io_run_queue``, ``schedulers``, ``schedulers_online``, ``reductions``,
        ``runtime_ms``, ``uptime_ms``, ``scheduler_utilization`` (busy share 0..1 per normal
        scheduler since the previous push; null on the first) and ``scheduler_utilization_avg``.

        Utilisation needs the scheduler_wall_time flag: the loop holds it on the node while it runs
        (a holder process of the agent watching a Python process of ours, as the node sampler does;
        a reconnect gets a new one), and closing ours on the way out lets the VM turn it back off.
        A node attached without the agent gets the first four fields only (three plain calls).
        """
        from ..dist import Process
        from ..telemetry.sampler import VITALS_MODULE

        holder: Process | None = None
        held_on: object = None  # the connection the holder was started on
        wall: dict[int, tuple[int, int]] | None = None
        wall_on: object = None  # the connection the last wall-time sample came over (a new VM restarts them)
        timeout = min(5.0, max(interval, 1.0))
        try:
            while True:
                try:
                    node = self.service.pool.get(check_node(node_name))
                    if not node.use_agent:
                        call = node.call
                        sample: dict[str, Any] = {
                            "node": node.name,
                            "process_count": await call("erlang", "system_info", [Atom("process_count")]),
                            "memory_total": await call("erlang", "memory", [Atom("total")]),
                            "run_queue": await call("erlang", "statistics", [Atom("run_queue")]),
                        }
                    else:
                        connection = node.connection  # NodeDown while it is down
                        if connection is not wall_on:
                            wall, wall_on = None, connection
                        if holder is None or holder.closed or held_on is not connection:
                            if holder is not None:
                                with contextlib.suppress(Exception):
                                    await holder.close()
                            holder, held_on = None, None
                            owner = node.spawn_process(mailbox_size=1)
                            try:
                                await node.agent_call("hold", [owner.pid], timeout, module=VITALS_MODULE)
                            except BaseException as exc:
                                with contextlib.suppress(Exception):
                                    await owner.close()
                                if not isinstance(exc, Exception):
                                    raise
                                # Best effort: the figures still come, utilisation stays null, and
                                # the next push tries again.
                            else:
                                holder, held_on = owner, connection
                        raw = await node.agent_call("vitals", [], timeout, module=VITALS_MODULE)
                        sample = _vitals_sample(node.name, raw)
                        current = _wall_time(raw[Atom("scheduler_wall_time")])
                        usage = _utilization(wall, current)
                        wall = current
                        sample["scheduler_utilization"] = usage
                        sample["scheduler_utilization_avg"] = sum(usage) / len(usage) if usage else None
                except Exception as exc:
                    await self.error(as_operation_error(exc, channel), channel)
                else:
                    await self.send({"type": "update", "channel": channel, "data": sample})
                await asyncio.sleep(interval)
        finally:
            if holder is not None:
                with contextlib.suppress(Exception):  # a dead connection ends the holder by itself
                    await holder.close()

    async def _watch(
        self, channel: str, interval: float, node: str | None, operation: str, params: dict[str, Any]
    ) -> None:
        last: Any = None
        params = dict(params)
        is_process = channel.startswith("process:")
        while True:
            try:
                result = await self.service.run(operation, params, node=node)
            except OperationError as error:
                if error.code is ErrorCode.not_found and is_process and last is not None:
                    await self._exited(channel, {"pid": last.get("pid"), "alive": False, "reason": None})
                    return
                if error.code in (ErrorCode.not_found, ErrorCode.validation_error):
                    self.tasks.pop(channel, None)
                    await self.error(error, channel)
                    return
                await self.error(error, channel)
            else:
                data = result.model_dump(mode="json")
                if is_process:
                    # Follow the process first found (a name may later belong to a new process).
                    params["pid"] = data["pid"]
                if data != last:
                    last = data
                    await self.send({"type": "update", "channel": channel, "data": data})
            if is_process and last is not None and MONITOR_OPERATION in self.service.registry:
                exit_reason = await self._wait_exit(params["pid"], interval, node)
                if exit_reason is not None:
                    await self._exited(channel, {"pid": params["pid"], "alive": False, "reason": exit_reason})
                    return
            else:
                await asyncio.sleep(interval)

    async def _wait_exit(self, pid: str, interval: float, node: str | None) -> str | None:
        """Wait up to ``interval`` for the process to exit (a monitor in the node); its exit reason."""
        started = asyncio.get_running_loop().time()
        try:
            result = await self.service.run(MONITOR_OPERATION, {"pid": pid, "timeout": interval}, node=node)
            outcome = result.model_dump(mode="json")
        except OperationError:
            outcome = {}
        if outcome.get("exited"):
            return str(outcome.get("reason"))
        await asyncio.sleep(max(0.0, interval - (asyncio.get_running_loop().time() - started)))
        return None

    async def _trace(self, channel: str, manager: TraceManager, trace_id: str, watcher: Watcher) -> None:
        """Push a trace session's events as they are stored, then its end."""
        try:
            while True:
                batch = await watcher.queue.get()
                if batch is None:
                    break
                data = {"events": batch, "dropped": watcher.dropped}
                await self.send({"type": "trace", "channel": channel, "data": data})
            record = manager.store.get(trace_id)
            end = {
                "id": trace_id,
                "reason": record.end_reason if record else None,
                "events": record.events if record else None,
                "dropped_here": watcher.dropped,
            }
            self.tasks.pop(channel, None)
            await self.send({"type": "trace_end", "channel": channel, "data": end})
        finally:
            manager.unwatch(trace_id, watcher)

    async def _intercept(
        self, channel: str, manager: InterceptionManager, interception_id: str, watcher: InterceptWatcher
    ) -> None:
        """Push what an interception's rules did as it happens, then its end."""
        interception = manager.get(interception_id)
        try:
            while True:
                batch = await watcher.queue.get()
                if batch is None:
                    break
                data = {"events": batch, "counters": dict(interception.counters), "dropped": watcher.dropped}
                await self.send({"type": "intercept", "channel": channel, "data": data})
            end = {
                "id": interception_id,
                "reason": interception.end_reason,
                "restored": interception.restored,
                "counters": dict(interception.counters),
                "dropped_here": watcher.dropped,
            }
            self.tasks.pop(channel, None)
            await self.send({"type": "intercept_end", "channel": channel, "data": end})
        finally:
            manager.unwatch(interception_id, watcher)

    async def _alerts(self, channel: str, watcher: Any) -> None:
        """Push each alert as it fires: ``{"type": "alert", "channel": "alerts", "data": alert}``."""
        from ..analytics import AlertEvaluator

        try:
            while True:
                alert = await watcher.queue.get()
                data = {**alert, "dropped": watcher.dropped}
                await self.send({"type": "alert", "channel": channel, "data": data})
        finally:
            self.service.services.get(AlertEvaluator).unwatch(watcher)

    async def _exited(self, channel: str, data: dict[str, Any]) -> None:
        self.tasks.pop(channel, None)
        await self.send({"type": "exit", "channel": channel, "data": data})

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def add_websocket(app: FastAPI, service: Arsenal) -> None:
    @app.websocket("/api/v1/ws")
    async def websocket(websocket: WebSocket) -> None:
        await websocket.accept()
        socket = _Socket(websocket, service)
        try:
            while True:
                await socket.handle(await websocket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            await socket.close()


# --- system:metrics: the vitals sample as pushed (see _Socket._metrics) ---
_VITAL_COUNTS = (
    "process_count", "process_limit", "port_count", "port_limit", "atom_count", "atom_limit",
    "ets_count", "ets_limit", "schedulers", "schedulers_online", "dirty_cpu_run_queue",
    "dirty_io_run_queue", "reductions", "runtime_ms", "uptime_ms",
)  # fmt: skip


def _vitals_sample(name: str, raw: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {"node": name, "sampled_at": time.time()}
    sample.update({key: int(raw[Atom(key)]) for key in _VITAL_COUNTS})
    memory = {str(kind): int(size) for kind, size in raw[Atom("memory")].items()}
    run_queues = [int(n) for n in raw[Atom("run_queues")]]
    sample.update(
        memory_total=memory.get("total", 0),
        memory=memory,
        run_queues=run_queues,
        run_queue=sum(run_queues) + sample["dirty_cpu_run_queue"],
    )
    return sample


def _wall_time(raw: Any) -> dict[int, tuple[int, int]] | None:
    """``{scheduler id: (active, total)}``, or None while scheduler_wall_time is off."""
    if not isinstance(raw, list):
        return None
    return {int(id_): (int(active), int(total)) for id_, active, total in raw}


def _utilization(
    previous: dict[int, tuple[int, int]] | None, current: dict[int, tuple[int, int]] | None
) -> list[float] | None:
    """Busy share per normal scheduler between two wall-time samples (scheduler order)."""
    if previous is None or current is None:
        return None
    usage: list[float] = []
    for id_ in sorted(current):
        active, total = current[id_]
        before = previous.get(id_)
        if before is None or total <= before[1]:
            return None  # the counters were reset (the flag went off and on): wait for the next
        usage.append(min(1.0, max(0.0, (active - before[0]) / (total - before[1]))))
    return usage or None
