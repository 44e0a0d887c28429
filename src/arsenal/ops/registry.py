"""The operation registry and the one pipeline every call goes through.

validate → authorize → audit (before) → execute with a timeout → audit (after) →
telemetry → the result model. Authorize and audit are hooks the security issue
fills in; telemetry is a list of callbacks (metrics, logs). Calls run
concurrently: the registry holds no lock while an operation runs.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from ..beam import NodePool
from .base import Context, Operation, Params, Principal, Result, Services
from .errors import ErrorCode, OperationError, as_operation_error

__all__ = ["AuditEvent", "Registry", "TelemetryEvent", "registry", "register"]


@dataclass(frozen=True)
class AuditEvent:
    """What the audit hook is told, before a write runs (``outcome`` None) and after."""

    operation: str
    severity: str
    node: str | None
    principal: Principal
    params: dict[str, Any]
    correlation_id: str
    outcome: str | None = None
    error_code: str | None = None
    duration_ms: float | None = None
    # The Arsenal's services (its store) the event belongs to; not part of the record itself.
    services: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TelemetryEvent:
    operation: str
    node: str | None
    duration_ms: float
    ok: bool
    error_code: str | None
    correlation_id: str = ""


Authorizer = Callable[[type[Operation[Any, Any]], Context, Params], Awaitable[None] | None]
Auditor = Callable[[AuditEvent], Awaitable[None] | None]
TelemetrySink = Callable[[TelemetryEvent], None]


class Registry:
    """All operations by name; ``run`` is the pipeline."""

    def __init__(self) -> None:
        self._operations: dict[str, type[Operation[Any, Any]]] = {}
        self.authorizers: list[Authorizer] = []
        self.auditors: list[Auditor] = []
        self.telemetry: list[TelemetrySink] = []

    # ------------------------------------------------------------------ definitions

    def register(self, operation: type[Operation[Any, Any]]) -> type[Operation[Any, Any]]:
        """Class decorator: check the definition and add it."""
        operation.check_definition()
        existing = self._operations.get(operation.name)
        if existing is not None and existing is not operation:
            raise TypeError(f"two operations are named {operation.name}: {existing} and {operation}")
        self._operations[operation.name] = operation
        return operation

    def get(self, name: str) -> type[Operation[Any, Any]]:
        operation = self._operations.get(name)
        if operation is None:
            close = [n for n in self._operations if name in n or n in name][:5]
            hint = f"; did you mean {', '.join(close)}?" if close else "; `arsenal ops` lists them"
            raise OperationError(ErrorCode.not_found, f"no operation named {name!r}{hint}")
        return operation

    def all(self) -> list[type[Operation[Any, Any]]]:
        return sorted(self._operations.values(), key=lambda op: (op.category, op.name))

    def __contains__(self, name: object) -> bool:
        return name in self._operations

    def discover(self, package: str = "arsenal.ops") -> None:
        """Import every module of ``package`` so that their operations register themselves."""
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__, f"{package}."):
            importlib.import_module(info.name)

    # ------------------------------------------------------------------ the pipeline

    async def run(
        self,
        name: str,
        params: dict[str, Any] | BaseModel | None,
        *,
        pool: NodePool,
        node: str | None = None,
        principal: Principal | None = None,
        timeout: float | None = None,
        correlation_id: str | None = None,
        services: Services | None = None,
    ) -> Result:
        """Run one operation through the whole pipeline; failures are :class:`OperationError`.

        ``correlation_id`` ties the call's audit and telemetry events to the request that made it
        (the REST API passes its request's id); a fresh one is made when none is given.
        """
        started = time.perf_counter()
        correlation_id = correlation_id or uuid.uuid4().hex
        operation = self.get(name)
        ctx: Context | None = None
        audited: AuditEvent | None = None
        try:
            ctx = Context(
                pool=pool,
                node=pool.get(node) if operation.needs_node else _optional_node(pool, node),
                principal=principal or Principal(),
                correlation_id=correlation_id,
                services=services if services is not None else Services(),
            )
            # Who may run it is checked before the parameters are: a caller without the right
            # gets 403 whatever they sent; then the parameters (force...) are checked too.
            validated: Params | None = None
            try:
                _refuse_writes_to_read_only(operation, ctx)
                await self._authorize(operation, ctx, None)
                validated = _validate(operation, params)
                await self._authorize(operation, ctx, validated)
            except OperationError as refused:
                if refused.code in (ErrorCode.forbidden, ErrorCode.read_only):
                    await self._audit_refused(operation, ctx, validated or params, refused)
                raise
            audited = await self._audit_before(operation, ctx, validated)
            async with asyncio.timeout(timeout or operation.timeout):
                result = await operation().execute(ctx, validated)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            error = as_operation_error(exc, name)
            await self._finish(operation, ctx, audited, started, error, correlation_id)
            raise error from None
        await self._finish(operation, ctx, audited, started, None, correlation_id)
        return result

    async def _authorize(
        self, operation: type[Operation[Any, Any]], ctx: Context, params: Params | None
    ) -> None:
        """Every authorizer, once before the parameters are validated (``params`` None) and once after."""
        for authorize in self.authorizers:
            outcome = authorize(operation, ctx, params)
            if outcome is not None:
                await outcome

    async def _audit_refused(
        self, operation: type[Operation[Any, Any]], ctx: Context, params: Any, refused: OperationError
    ) -> None:
        """A write the caller was not allowed is on record too (who tried what, and why not)."""
        if operation.severity.value == "read" or not self.auditors:
            return
        event = self._event(operation, ctx, params)
        await _notify(self.auditors, replace(event, outcome="refused", error_code=refused.code.value))

    def _event(self, operation: type[Operation[Any, Any]], ctx: Context, params: Any) -> AuditEvent:
        node = operation.target_node(ctx, _quietly_validated(operation, params))
        if isinstance(params, BaseModel):
            params = params.model_dump(mode="json")
        return AuditEvent(
            operation=operation.name,
            severity=operation.severity.value,
            node=node,
            principal=ctx.principal,
            params=params if isinstance(params, dict) else {"$raw": str(params)[:1000]},
            correlation_id=ctx.correlation_id,
            services=ctx.services,
        )

    async def _audit_before(
        self, operation: type[Operation[Any, Any]], ctx: Context, params: Params
    ) -> AuditEvent | None:
        if operation.severity.value == "read" or not self.auditors:
            return None
        event = self._event(operation, ctx, params)
        await _notify(self.auditors, event)
        return event

    async def _finish(
        self,
        operation: type[Operation[Any, Any]],
        ctx: Context | None,
        audited: AuditEvent | None,
        started: float,
        error: OperationError | None,
        correlation_id: str,
    ) -> None:
        duration = (time.perf_counter() - started) * 1000
        code = error.code.value if error else None
        if audited is not None:
            after = replace(
                audited, outcome="error" if error else "ok", error_code=code, duration_ms=duration
            )
            await _notify(self.auditors, after)
        node = ctx.node.name if ctx and ctx.node else None
        for sink in self.telemetry:
            sink(TelemetryEvent(operation.name, node, duration, error is None, code, correlation_id))


def _refuse_writes_to_read_only(operation: type[Operation[Any, Any]], ctx: Context) -> None:
    """Safety rule 6: nothing that changes a node reaches one attached read-only."""
    if not operation.needs_node:  # attach/detach act on Arsenal itself, not on the default node
        return
    if operation.severity.value != "read" and ctx.node is not None and ctx.node.read_only:
        raise OperationError(
            ErrorCode.read_only,
            f"{ctx.node.name} is attached read-only; {operation.name} ({operation.severity.value}) is "
            "refused. It stays read-only until an admin lifts it: attach_node with read_only=false "
            "(POST /api/v1/nodes)",
        )


def _validate(operation: type[Operation[Any, Any]], params: dict[str, Any] | BaseModel | None) -> Params:
    if isinstance(params, operation.params):
        return params
    if isinstance(params, BaseModel):
        params = params.model_dump()
    return operation.params.model_validate(params or {})


def _quietly_validated(operation: type[Operation[Any, Any]], params: Any) -> Params | None:
    """``params`` validated if they are valid (a refused call is audited with what it was sent)."""
    if isinstance(params, operation.params):
        return params
    try:
        return _validate(operation, params)
    except Exception:  # invalid parameters name no node
        return None


def _optional_node(pool: NodePool, node: str | None) -> Any:
    try:
        return pool.get(node)
    except Exception:  # operations that need no node also run with none attached
        if node is not None:
            raise
        return None


async def _notify(callbacks: Iterable[Callable[[Any], Awaitable[None] | None]], event: Any) -> None:
    for callback in callbacks:
        outcome = callback(event)
        if outcome is not None:
            await outcome


registry = Registry()
"""The registry of every operation Arsenal ships."""

register = registry.register
