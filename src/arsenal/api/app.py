"""The REST + WebSocket API: an ASGI app generated from the operation registry.

Every registered operation with a ``path`` is served at that path and HTTP method;
every operation (with or without a path) is also served by ``POST /api/v1/operations/{name}``.
Path parameters (``{pid}``, ``{name}``) fill the params field of that name; a GET takes the
other params from the query string, POST/PUT/DELETE from a JSON object body (and the query
string, which some clients must use for a DELETE). Every call runs
through :meth:`arsenal.client.Arsenal.run`, the registry's pipeline (validate → authorize →
audit → execute → telemetry), and every answer is an envelope (see :mod:`.envelope`).

``?node=NAME`` on every route picks the attached node (default: the first attached).
Pids may be written ``<0.123.0>`` (URL-encoded: ``%3C0.123.0%3E``), ``0.123.0`` or as a
registered name.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..client import Arsenal
from ..ops.base import Operation
from ..ops.errors import ErrorCode, OperationError, as_operation_error
from .batch import BATCH_DESCRIPTION, MAX_BATCH, BatchItem, run_batch
from .correlation import CorrelationMiddleware, current_correlation_id, new_correlation_id
from .envelope import ErrorEnvelope, error_response, success_response
from .routes import (
    API_PREFIX,
    NODE_PARAMETER,
    OperationRoute,
    Schemas,
    check_node,
    error_responses,
    json_responses,
    operation_openapi,
    plan_routes,
    query_params,
    read_body,
    status_of,
)

__all__ = ["API_DESCRIPTION", "create_app"]

API_DESCRIPTION = f"""Every Arsenal operation over HTTP, generated from the operation registry.

* Each operation is served at its own route (below, grouped by category) and by
  `POST {API_PREFIX}/operations/{{name}}` with the params as a JSON body.
* `GET {API_PREFIX}/operations` lists the operations with their parameter and result schemas.
* A GET takes its params in the query string (lists repeat, `fields=a&fields=b`, or use commas); a
  POST, PUT or DELETE in a JSON object body (or the query string: some clients drop a DELETE's body).
* `?node=NAME` picks the attached node on every route; the default is the first attached.
* Pids are written `<0.123.0>` (URL-encoded in a path: `%3C0.123.0%3E`), `0.123.0`, or as a
  registered name.
* Answers are envelopes: `{{"data", "meta", "links"}}` on success; `{{"errors": [{{"code", "status",
  "title", "detail", "meta"}}]}}` on failure, with the HTTP status of the error code
  (validation_error 422, not_found 404, node_down 503, timeout 504, forbidden/read_only/
  protected_process 403, conflict 409, limit_exceeded 429 — 413 for an oversized body or batch —,
  remote_error/agent_error 502, internal_error 500).
* Lists page with a cursor: when a result has `next_cursor`, `links.next` is the URL of the next page.
* `POST {API_PREFIX}/batch` runs up to {MAX_BATCH} operations. **A batch is not atomic**: see its entry.
* `{API_PREFIX}/ws` is a WebSocket: send `{{"subscribe": "system:metrics"}}`, `{{"subscribe":
  "process:<0.123.0>"}}` or `{{"subscribe": "supervisor:NAME"}}` (and `{{"unsubscribe": ...}}`).

Every route but this document and the dashboard's page needs an API key: `Authorization: Bearer
<key>` (a WebSocket may pass `?access_token=<key>`); `GET {API_PREFIX}/session` says the key's role
and grants. See docs/security.md.
"""


def create_app(service: Arsenal, *, auth: bool = True, rate_limit: float = 200.0) -> FastAPI:
    """The API for ``service``'s attached nodes and registry. Route conflicts raise at once.

    ``auth`` (the default) makes every request show an API key of ``service``'s store; without
    it every request runs as ``service``'s own principal — for an API embedded behind its own
    authentication, and for tests of everything but authentication. ``rate_limit``: requests a
    second per key."""
    service.registry.discover()
    operations = service.registry.all()
    planned = plan_routes(operations)
    schemas = Schemas(
        [(op.params, "validation") for op in operations]
        + [(op.result, "serialization") for op in operations]
        + [(ErrorEnvelope, "validation"), (BatchItem, "validation")]
    )
    app = FastAPI(
        title="Arsenal",
        version="1",
        description=API_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.operation_paths = {}
    _install_error_handlers(app)

    for route in planned:
        _add_operation_route(app, service, route, schemas)
    _add_discovery(app, service)
    _add_batch(app, service)
    _add_trace_export(app, service)

    # GET /metrics, Prometheus text (see api/metrics.py).
    from .metrics import add_metrics_route

    add_metrics_route(app, service)
    _add_audit_export(app, service)

    from .debug import add_debug_websocket
    from .repl import add_repl_websocket
    from .ws import add_websocket

    add_websocket(app, service)
    add_repl_websocket(app, service)
    add_debug_websocket(app, service)

    from ..web import add_dashboard
    from .session import add_session_route

    add_session_route(app, service, API_PREFIX)
    add_dashboard(app)

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{API_PREFIX}/openapi.json", title="Arsenal API")

    _install_openapi(app, schemas)
    if auth:
        from ..security.keys import KeyStore
        from .auth import AuthMiddleware, RateLimiter

        app.add_middleware(
            AuthMiddleware,
            keys=KeyStore(service.services.store),
            limiter=RateLimiter(rate_limit, int(rate_limit * 2)),
        )
    from .headers import SecurityHeadersMiddleware

    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(CorrelationMiddleware)
    return app


# ---------------------------------------------------------------------- running one operation


def _node_name(service: Arsenal, node: str | None) -> str | None:
    try:
        return service.pool.get(node).name
    except Exception:  # the pipeline reports an unknown node properly; here it is only meta
        return node


async def run_operation(
    service: Arsenal,
    operation: str,
    params: dict[str, Any],
    node: str | None,
    correlation_id: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run through the pipeline: (the result as JSON data, meta). Any failure is :class:`Failed`.

    ``correlation_id`` defaults to the request's (see :mod:`.correlation`); a batch gives each
    of its operations its own.
    """
    started = time.perf_counter()
    correlation_id = correlation_id or current_correlation_id() or new_correlation_id()
    meta: dict[str, Any] = {"operation": operation, "node": node, "correlation_id": correlation_id}
    try:
        node = check_node(node)
        meta["node"] = _node_name(service, node)
        result = await service.run(operation, params, node=node, correlation_id=correlation_id)
        data = result.model_dump(mode="json")
    except Exception as exc:
        error = as_operation_error(exc, operation)
        meta["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        raise Failed(error, meta) from None
    meta["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return data, meta


class Failed(Exception):
    """An operation failed: its :class:`OperationError` and the meta of the attempt."""

    def __init__(self, error: OperationError, meta: dict[str, Any]) -> None:
        super().__init__(error.message)
        self.error = error
        self.meta = meta


async def _answer(
    request: Request, service: Arsenal, operation: type[Operation[Any, Any]], params: dict[str, Any]
) -> JSONResponse:
    node = request.query_params.get("node")
    try:
        data, meta = await run_operation(service, operation.name, params, node)
    except Failed as failed:
        return error_response(failed.error, failed.meta)
    links: dict[str, str] = {"self": str(request.url)}
    next_cursor = data.get("next_cursor") if isinstance(data, dict) else None
    if next_cursor:
        meta["next_cursor"] = next_cursor
        if request.method == "GET" and "cursor" in operation.params.model_fields:
            links["next"] = str(request.url.include_query_params(cursor=next_cursor))
    return success_response(data, meta, links)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise OperationError(ErrorCode.validation_error, "the body is not JSON; send a JSON object") from None
    if not isinstance(body, dict):
        raise OperationError(ErrorCode.validation_error, "the body must be a JSON object of parameters")
    return body


async def _body_and_query(operation: type[Operation[Any, Any]], request: Request) -> dict[str, Any]:
    """A POST/PUT/DELETE's params: the JSON body, plus any given in the query string (some clients
    drop a DELETE's body); a param given in both, differently, is an error."""
    params = await _json_body(request)
    for key, value in query_params(operation, request).items():
        if key in params and params[key] != value:
            raise OperationError(
                ErrorCode.validation_error, f"{key} is given in the query and differently in the body"
            )
        params.setdefault(key, value)
    return params


def _add_operation_route(app: FastAPI, service: Arsenal, route: OperationRoute, schemas: Schemas) -> None:
    operation = route.operation

    async def endpoint(request: Request) -> JSONResponse:
        try:
            if route.method == "GET":
                params = query_params(operation, request)
            else:
                params = await _body_and_query(operation, request)
            for name in route.path_params:
                value = request.path_params[name]
                if name in params and str(params[name]) != value:
                    raise OperationError(
                        ErrorCode.validation_error,
                        f"{name} is given in the path ({value!r}) and differently in the request",
                    )
                params[name] = value
        except OperationError as error:
            return error_response(error, {"operation": operation.name}, status=status_of(error))
        return await _answer(request, service, operation, params)

    endpoint.__name__ = operation.name
    # A plain Starlette route: FastAPI's per-request dependency solving and exit stacks cost about
    # a sixth of the server's CPU on a cheap call, and these endpoints take only the Request. Their
    # OpenAPI entries are written here instead (see _install_openapi).
    app.router.add_route(route.path, endpoint, methods=[route.method], name=operation.name)
    path_item = app.state.operation_paths.setdefault(route.path, {})
    path_item[route.method.lower()] = {
        "tags": [operation.category],
        "summary": operation.summary,
        "description": f"{operation.summary}\n\n**Severity:** {operation.severity.value}\n\n"
        f"**Cost:** {operation.cost}\n\n**Risk:** {operation.risk}",
        "operationId": operation.name,
        **operation_openapi(route, schemas),
    }


# ---------------------------------------------------------------------- discovery and the generic route


def _add_discovery(app: FastAPI, service: Arsenal) -> None:
    registry = service.registry

    list_extra = {
        "parameters": [
            {"name": "category", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "severity",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["read", "write", "destructive"]},
            },
            {
                "name": "sort",
                "in": "query",
                "required": False,
                "description": "name or category (default: category, then name).",
                "schema": {"type": "string", "enum": ["name", "category"]},
            },
        ],
        "responses": json_responses("The operations.", {"type": "array", "items": {"type": "object"}}),
    }

    @app.get(
        f"{API_PREFIX}/operations",
        operation_id="list_operations",
        summary="Discovery: every operation, with parameter and result schemas.",
        tags=["discovery"],
        openapi_extra=list_extra,
    )
    async def list_operations(request: Request) -> JSONResponse:
        category = request.query_params.get("category")
        severity = request.query_params.get("severity")
        sort = request.query_params.get("sort", "category")
        if sort not in ("name", "category"):
            return error_response(OperationError(ErrorCode.validation_error, "sort must be name or category"))
        found = [
            op
            for op in registry.all()
            if (category is None or op.category == category)
            and (severity is None or op.severity.value == severity)
        ]
        if sort == "name":
            found.sort(key=lambda op: op.name)
        data = [_describe(op) for op in found]
        links = {op.name: f"{API_PREFIX}/operations/{op.name}" for op in found}
        return success_response(data, {"count": len(data)}, {"self": str(request.url), **links})

    name_parameter = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    one_extra = {
        "parameters": [name_parameter],
        "responses": json_responses("The operation.", {"type": "object"}),
    }

    @app.get(
        f"{API_PREFIX}/operations/{{name}}",
        operation_id="describe_operation",
        summary="One operation, with its parameter and result schemas.",
        tags=["discovery"],
        openapi_extra=one_extra,
    )
    async def describe_operation(request: Request) -> JSONResponse:
        try:
            operation = registry.get(request.path_params["name"])
        except OperationError as error:
            return error_response(error)
        return success_response(
            _describe(operation), {"operation": operation.name}, {"self": str(request.url)}
        )

    run_extra = {
        "parameters": [name_parameter, NODE_PARAMETER],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "description": "The operation's params (see its schema)."}
                }
            },
        },
        "responses": json_responses("The operation's result.", {}),
    }

    @app.post(
        f"{API_PREFIX}/operations/{{name}}",
        operation_id="run_operation",
        summary="Run any operation by name; the body is its params.",
        tags=["discovery"],
        openapi_extra=run_extra,
    )
    async def run_any(request: Request) -> JSONResponse:
        try:
            operation = registry.get(request.path_params["name"])
            params = await _body_and_query(operation, request)
        except OperationError as error:
            meta = {"operation": request.path_params["name"]}
            return error_response(error, meta, status=status_of(error))
        return await _answer(request, service, operation, params)


def _describe(operation: type[Operation[Any, Any]]) -> dict[str, Any]:
    described = operation.describe()
    described["routes"] = [
        *([{"method": operation.method, "path": operation.path}] if operation.path else []),
        {"method": "POST", "path": f"{API_PREFIX}/operations/{operation.name}"},
    ]
    if not operation.path:
        described["method"] = "POST"
    return described


# ---------------------------------------------------------------------- batch


def _add_batch(app: FastAPI, service: Arsenal) -> None:
    extra = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": MAX_BATCH,
                        "items": {"$ref": "#/components/schemas/BatchItem"},
                    },
                    "example": [
                        {"operation": "list_processes", "params": {"limit": 5}},
                        {"operation": "get_process_info", "params": {"pid": "<0.0.0>"}},
                    ],
                }
            },
        },
        "responses": {
            **json_responses(
                "One entry per operation, in the order sent, each with `data` or `errors`.",
                {"type": "array", "items": {"type": "object"}},
            ),
            "413": {
                "description": f"More than {MAX_BATCH} operations (code limit_exceeded).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            },
        },
    }

    @app.post(
        f"{API_PREFIX}/batch",
        operation_id="batch",
        summary=f"Run up to {MAX_BATCH} operations in one request (not atomic).",
        description=BATCH_DESCRIPTION,
        tags=["batch"],
        openapi_extra=extra,
    )
    async def batch(request: Request) -> JSONResponse:
        return await run_batch(request, service)


# ---------------------------------------------------------------------- trace export


def _add_ndjson_route(
    app: FastAPI,
    path: str,
    *,
    operation_id: str,
    summary: str,
    tag: str,
    description: str,
    lines: Callable[[Request], Iterator[str] | OperationError],
    filename: Callable[[Request], str],
) -> None:
    """A GET route that streams JSON lines (an export); ``lines`` may refuse with an error instead."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]
    extra: dict[str, Any] = {
        "responses": {
            "200": {
                "description": description,
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            },
            **error_responses(),
        },
    }
    if parameters:
        extra["parameters"] = parameters

    @app.get(
        f"{API_PREFIX}{path}", operation_id=operation_id, summary=summary, tags=[tag], openapi_extra=extra
    )
    async def export(request: Request) -> Response:
        found = lines(request)
        if isinstance(found, OperationError):
            return error_response(found, {"operation": operation_id})
        return StreamingResponse(
            iterate_in_threadpool(found),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{filename(request)}"'},
        )


def _add_audit_export(app: FastAPI, service: Arsenal) -> None:
    from ..security.audit import AuditLog
    from ..security.context import current_principal

    def lines(request: Request) -> Iterator[str] | OperationError:
        if (current_principal() or service.principal).role != "admin":
            return OperationError(ErrorCode.forbidden, "exporting the audit trail needs an admin key")
        return AuditLog(service.services.store).export()

    _add_ndjson_route(
        app,
        "/audit/export",
        operation_id="export_audit",
        summary="The whole audit trail as JSON lines (admins).",
        tag="security",
        description="Every audit entry as one JSON object per line, oldest first.",
        lines=lines,
        filename=lambda _request: "audit.jsonl",
    )


def _add_trace_export(app: FastAPI, service: Arsenal) -> None:
    from ..ops.trace_sessions import TraceManager

    def lines(request: Request) -> Iterator[str] | OperationError:
        trace_id = request.path_params["id"]
        manager = service.services.get(TraceManager)
        if not trace_id.isalnum() or manager.store.get(trace_id) is None:
            return OperationError(
                ErrorCode.not_found, f"no trace session {trace_id}; GET {API_PREFIX}/traces lists them"
            )
        return manager.store.export_lines(trace_id)

    _add_ndjson_route(
        app,
        "/traces/{id}/export",
        operation_id="export_trace",
        summary="A stored trace session's events as JSON lines (streamed).",
        tag="tracing",
        description="One JSON object per line per event, in order (as get_trace_results serves).",
        lines=lines,
        filename=lambda request: f"trace-{request.path_params['id']}.jsonl",
    )


# ---------------------------------------------------------------------- errors and OpenAPI


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error = OperationError(
                ErrorCode.not_found,
                f"no route {request.url.path}; GET {API_PREFIX}/operations lists the operations and "
                "their routes",
            )
            return error_response(error)
        if exc.status_code == 405:
            error = OperationError(
                ErrorCode.validation_error,
                f"{request.method} is not served at {request.url.path}; "
                f"GET {API_PREFIX}/operations says which method each route takes",
            )
            return error_response(error, status=405)
        code = ErrorCode.internal_error if exc.status_code >= 500 else ErrorCode.validation_error
        return error_response(OperationError(code, str(exc.detail)), status=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]
        error = OperationError(ErrorCode.validation_error, "invalid request", {"errors": problems})
        return error_response(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(as_operation_error(exc, request.url.path))


def _install_openapi(app: FastAPI, schemas: Schemas) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        paths = document.setdefault("paths", {})
        for path, item in app.state.operation_paths.items():
            paths.setdefault(path, {}).update(item)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(schemas.components)
        components["Meta"] = {
            "type": "object",
            "properties": {
                "operation": {"type": "string"},
                "node": {"type": ["string", "null"]},
                "duration_ms": {"type": "number"},
                "next_cursor": {"type": "string"},
                "correlation_id": {
                    "type": "string",
                    "description": "This request's id, also in the X-Correlation-ID header and the "
                    "audit log; send X-Correlation-ID to choose it.",
                },
            },
            "additionalProperties": True,
        }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
