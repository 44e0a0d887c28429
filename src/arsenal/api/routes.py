"""Turning operations into REST routes: paths, parameters, and their OpenAPI description.

Nothing here knows any particular operation: every route comes from an operation's
declared ``method`` and ``path``, and its parameters from the operation's pydantic model.
"""

from __future__ import annotations

import functools
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..dist.node import split_node_name
from ..ops.base import Operation
from ..ops.errors import ErrorCode, OperationError

__all__ = [
    "OperationRoute",
    "RouteConflict",
    "Schemas",
    "check_node",
    "plan_routes",
    "query_params",
    "read_body",
    "status_of",
]

API_PREFIX = "/api/v1"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Routes the API itself serves; an operation declaring one of them is a conflict.
RESERVED = {
    ("GET", "/api/v1/operations"),
    ("GET", "/api/v1/operations/{}"),
    ("POST", "/api/v1/operations/{}"),
    ("POST", "/api/v1/batch"),
    ("GET", "/api/v1/ws"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/docs"),
    ("GET", "/api/v1/session"),
}


class RouteConflict(ValueError):
    """Two operations (or an operation and the API itself) claim one method and path."""


@dataclass(frozen=True)
class OperationRoute:
    operation: type[Operation[Any, Any]]
    method: str
    path: str
    path_params: tuple[str, ...]


def _shape(path: str) -> str:
    return _PARAM.sub("{}", path.rstrip("/") or "/")


def plan_routes(operations: list[type[Operation[Any, Any]]]) -> list[OperationRoute]:
    """Every operation with a declared path, checked, in the order Starlette must try them.

    Raises :class:`RouteConflict` when two routes would be the same (the second would never be
    reached) or a path names a parameter its operation does not have.
    """
    seen: dict[tuple[str, str], str] = {key: "the API itself" for key in RESERVED}
    planned: list[OperationRoute] = []
    for operation in operations:
        if not operation.path:
            continue
        path = operation.path
        if not path.startswith(API_PREFIX + "/"):
            raise RouteConflict(f"operation {operation.name}: path {path!r} must start with {API_PREFIX}/")
        names = tuple(_PARAM.findall(path))
        missing = [name for name in names if name not in operation.params.model_fields]
        if missing:
            raise RouteConflict(
                f"operation {operation.name}: path {path!r} names {', '.join(missing)}, which "
                f"{operation.params.__name__} has no field for; name path parameters like the params fields"
            )
        if len(set(names)) != len(names):
            raise RouteConflict(f"operation {operation.name}: path {path!r} repeats a parameter")
        key = (operation.method, _shape(path))
        if key in seen:
            raise RouteConflict(
                f"route conflict: {operation.method} {path} is declared by {operation.name} and by "
                f"{seen[key]}; give one of them another path"
            )
        seen[key] = f"operation {operation.name}"
        planned.append(OperationRoute(operation, operation.method, path, names))
    # Literal segments before parameters, so /processes/top is tried before /processes/{pid}.
    planned.sort(key=lambda r: [(1, "") if _PARAM.fullmatch(s) else (0, s) for s in r.path.split("/")])
    return planned


# ---------------------------------------------------------------------- request parameters

MAX_BODY = 8 * 1024 * 1024


async def read_body(request: Request) -> bytes:
    """The request's body, refused (``limit_exceeded``, answered 413) past :data:`MAX_BODY` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise OperationError(
                ErrorCode.limit_exceeded,
                f"the body is larger than {MAX_BODY // (1024 * 1024)} MiB; send less (split a batch)",
                {"limit_bytes": MAX_BODY},
            )
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(error: OperationError) -> int | None:
    """413 for a body or batch over its limit; otherwise the code's own status."""
    return 413 if error.code is ErrorCode.limit_exceeded else None


def check_node(node: str | None) -> str | None:
    """A node name from a request: empty means the default; a malformed one is the caller's error."""
    if not node:
        return None
    try:
        split_node_name(node)
    except ValueError as exc:
        raise OperationError(
            ErrorCode.validation_error, f"{exc}; a node is name@host, or name for one on this host"
        ) from None
    return node


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, set, tuple, frozenset):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return False


def _is_structured(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel | dict)):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return False


@functools.cache
def _field_kinds(params: type[BaseModel]) -> dict[str, str]:
    """How each field of a params model is read from a query string: list, structured or scalar
    (worked out once per model: typing introspection on every request cost more than the parse)."""
    kinds: dict[str, str] = {}
    for name, field in params.model_fields.items():
        if _is_list(field.annotation):
            kinds[name] = "list"
        elif _is_structured(field.annotation):
            kinds[name] = "structured"
        else:
            kinds[name] = "scalar"
    return kinds


def query_params(operation: type[Operation[Any, Any]], request: Request) -> dict[str, Any]:
    """A GET's query string as params: lists repeat (``f=a&f=b``) or split on commas, maps are JSON."""
    kinds = _field_kinds(operation.params)
    query = request.query_params
    params: dict[str, Any] = {}
    for key in dict.fromkeys(query.keys()):
        if key == "node":
            continue
        values = query.getlist(key)
        kind = kinds.get(key, "scalar")
        if kind == "list":
            params[key] = [part for value in values for part in value.split(",") if part]
        elif kind == "structured":
            try:
                params[key] = json.loads(values[-1])
            except ValueError:
                raise OperationError(
                    ErrorCode.validation_error, f"query parameter {key} must be JSON (an object)"
                ) from None
        else:
            if len(values) > 1:
                raise OperationError(ErrorCode.validation_error, f"query parameter {key} is given twice")
            params[key] = values[0]
    return params


# ---------------------------------------------------------------------- OpenAPI


class Schemas:
    """The JSON schemas of every params and result model, as OpenAPI components (names made unique)."""

    def __init__(self, models: list[tuple[type[BaseModel], str]]) -> None:
        unique = list(dict.fromkeys(models))
        refs, top = models_json_schema(unique, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
        self.components: dict[str, Any] = dict(top.get("$defs", {}))
        self._refs = refs

    def ref(self, model: type[BaseModel], mode: str = "validation") -> dict[str, Any]:
        return dict(self._refs[(model, mode)])  # type: ignore[index]

    def resolve(self, model: type[BaseModel], mode: str = "validation") -> dict[str, Any]:
        ref = self.ref(model, mode)["$ref"]
        return self.components[ref.rsplit("/", 1)[-1]]


NODE_PARAMETER = {
    "name": "node",
    "in": "query",
    "required": False,
    "description": "The attached node to run on (name@host or the short name); default: the first attached.",
    "schema": {"type": "string", "maxLength": 255},
}


def error_responses() -> dict[str, Any]:
    described = {
        "404": "Unknown operation, process, name or node.",
        "422": "Invalid parameters (the error's meta lists the fields).",
        "403": "Refused: read-only node, protected process or not allowed.",
        "503": "The node is down.",
        "504": "The operation did not finish in time.",
        "500": "A bug in Arsenal (no traceback is shown; the server log has it).",
    }
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    return {status: {"description": text, "content": body} for status, text in described.items()}


def json_responses(description: str, data: dict[str, Any]) -> dict[str, Any]:
    """The ``responses`` of a route answering an envelope whose ``data`` has schema ``data``, with
    every error status."""
    return {
        "200": {
            "description": description,
            "content": {"application/json": {"schema": success_schema(data)}},
        },
        **error_responses(),
    }


def success_schema(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "meta", "links"],
        "properties": {
            "data": data,
            "meta": {"$ref": "#/components/schemas/Meta"},
            "links": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def operation_openapi(route: OperationRoute, schemas: Schemas) -> dict[str, Any]:
    """The OpenAPI operation object (merged into FastAPI's) for one operation's route."""
    operation = route.operation
    schema = schemas.resolve(operation.params)
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _scalar(properties[name])}
        for name in route.path_params
    ]
    extra: dict[str, Any] = {}
    if route.method == "GET":
        for name, prop in properties.items():
            if name in route.path_params or name == "node":
                continue
            parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if _is_structured(operation.params.model_fields[name].annotation):
                parameter["content"] = {"application/json": {"schema": prop}}
            else:
                parameter["schema"] = prop
                if _is_list(operation.params.model_fields[name].annotation):
                    parameter["style"] = "form"
                    parameter["explode"] = True
            if prop.get("description"):
                parameter["description"] = prop["description"]
            parameters.append(parameter)
    else:
        body = {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: v for k, v in properties.items() if k not in route.path_params},
        }
        body_required = sorted(required - set(route.path_params))
        if body_required:
            body["required"] = body_required
        extra["requestBody"] = {
            "required": bool(body_required),
            "content": {"application/json": {"schema": body, "example": _body_example(route)}},
        }
    parameters.append(NODE_PARAMETER)
    extra["parameters"] = parameters
    extra["responses"] = json_responses(
        operation.result.__doc__ or "The result.", schemas.ref(operation.result, "serialization")
    )
    extra["x-arsenal"] = {
        "severity": operation.severity.value,
        "cost": operation.cost,
        "risk": operation.risk,
        "cli": operation.cli_name,
        "timeout": operation.timeout,
    }
    return extra


def _scalar(prop: dict[str, Any]) -> dict[str, Any]:
    return prop if prop else {"type": "string"}


def _body_example(route: OperationRoute) -> dict[str, Any]:
    return {k: v for k, v in route.operation.example.items() if k not in route.path_params}
