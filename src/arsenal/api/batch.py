"""``POST /api/v1/batch``: many operations in one request, run concurrently, answered in order."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..ops.errors import ErrorCode, OperationError, as_operation_error
from .envelope import error_object, error_response, success_response
from .routes import read_body, status_of

if TYPE_CHECKING:
    from ..client import Arsenal

__all__ = ["BATCH_CONCURRENCY", "BATCH_DESCRIPTION", "MAX_BATCH", "BatchItem", "run_batch"]

MAX_BATCH = 1000
BATCH_CONCURRENCY = 32

BATCH_DESCRIPTION = f"""Run up to {MAX_BATCH} operations in one request.

The body is a JSON array of `{{"operation": NAME, "params": {{...}}, "node": NAME?}}`. They run
concurrently, at most {BATCH_CONCURRENCY} at a time, each through the whole pipeline as if it had
been sent alone. The answer's `data` has one entry per operation **in the order sent**, each with
its own `status` and either `data` or `errors`; `meta` counts successes and failures.

**A batch is not atomic.** Each operation succeeds or fails on its own: a failure does not stop,
undo or roll back the others, and there is no ordering between them (they run concurrently) —
send dependent operations in separate requests. The request as a whole fails only when the body is
not an array (422) or holds more than {MAX_BATCH} operations (413, code `limit_exceeded`), and then
nothing runs.
"""


class BatchItem(BaseModel):
    """One operation of a batch."""

    model_config = ConfigDict(extra="forbid")

    operation: str = Field(max_length=100, description="The operation's name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Its params.")
    node: str | None = Field(None, max_length=255, description="The node; default: the first attached.")


async def run_batch(request: Request, service: Arsenal) -> JSONResponse:
    from .app import Failed, run_operation
    from .correlation import current_correlation_id, new_correlation_id

    started = time.perf_counter()
    try:
        body = json.loads(await read_body(request) or b"null")
    except ValueError:
        body = None
    except OperationError as error:
        return error_response(error, status=status_of(error))
    if not isinstance(body, list):
        return error_response(
            OperationError(
                ErrorCode.validation_error,
                'the body must be a JSON array of {"operation", "params", "node"?} objects',
            )
        )
    if len(body) > MAX_BATCH:
        error = OperationError(
            ErrorCode.limit_exceeded,
            f"a batch holds at most {MAX_BATCH} operations, this one has {len(body)}; split it",
            {"limit": MAX_BATCH, "count": len(body)},
        )
        return error_response(error, status=413)

    gate = asyncio.Semaphore(BATCH_CONCURRENCY)
    batch_id = current_correlation_id() or new_correlation_id()

    async def one(index: int, raw: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": index}
        try:
            item = BatchItem.model_validate(raw)
        except ValidationError as exc:
            error = as_operation_error(exc, f"batch item {index}")
            return {**entry, "status": error.status, "errors": [error_object(error)]}
        entry["operation"] = item.operation
        async with gate:
            try:
                data, meta = await run_operation(
                    service, item.operation, item.params, item.node, f"{batch_id}.{index}"
                )
            except Failed as failed:
                error = failed.error
                return {**entry, "status": error.status, "errors": [error_object(error)], "meta": failed.meta}
        return {**entry, "status": 200, "data": data, "meta": meta}

    results = await asyncio.gather(*(one(i, raw) for i, raw in enumerate(body)))
    failed = sum(1 for r in results if "errors" in r)
    meta = {
        "count": len(results),
        "succeeded": len(results) - failed,
        "failed": failed,
        "atomic": False,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return success_response(list(results), meta, {"self": str(request.url)})
