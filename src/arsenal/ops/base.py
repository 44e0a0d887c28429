"""What an operation is: one class, from which every way of serving it is derived.

An operation declares its name, category, a summary, what it costs and risks on
a busy node (as ``recon`` documents), a pydantic model for its parameters and
one for its result, its severity, its HTTP method and path, and its CLI name.
The registry validates, authorizes, audits, runs (with a timeout), reports and
formats it; the Python API, the CLI and REST are all generated from it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from ..beam import Node, NodePool
from ..store import Store

__all__ = ["Context", "NoParams", "Operation", "Params", "Principal", "Result", "Services", "Severity"]


class Severity(StrEnum):
    """What an operation may do: ``read`` nothing, ``write`` change a node, ``destructive`` lose data."""

    read = "read"
    write = "write"
    destructive = "destructive"


class Params(BaseModel):
    """Base of every parameter model: unknown parameters are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    """For operations that take no parameters."""


class Result(BaseModel):
    """Base of every result model."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: over HTTP, the API key's name, role and grants; in-process (the Python API,
    the CLI on this machine) ``local`` with the admin role, as whoever can run Arsenal's code can
    do anything it does anyway."""

    name: str = "local"
    role: str = "admin"
    key_id: str | None = None
    nodes: tuple[str, ...] | None = None
    operations: tuple[str, ...] | None = None


S = TypeVar("S")


class Services:
    """The things one Arsenal shares between operations and calls: live trace sessions, the store.

    Each is made on first use, ``kind(services)``, and kept; ``aclose`` closes them in reverse
    order of creation (those with an ``aclose`` coroutine or a ``close`` method). Keyed by class,
    so an operation module defines its own service without this module knowing it.
    """

    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self._items: dict[type[Any], Any] = {}
        self._store: Store | None = None

    def get(self, kind: type[S]) -> S:
        item = self._items.get(kind)
        if item is None:
            item = self._items[kind] = kind(self)  # type: ignore[call-arg]
        return item  # type: ignore[no-any-return]

    @property
    def store(self) -> Store:
        """The database (``home/arsenal.db``, default ``$ARSENAL_HOME/arsenal.db``), opened on first use."""
        if self._store is None:
            self._store = Store(self.home / "arsenal.db" if self.home else None)
        return self._store

    def peek(self, kind: type[S]) -> S | None:
        """The service if it was made, without making it."""
        return self._items.get(kind)

    async def aclose(self) -> None:
        for item in reversed(list(self._items.values())):
            closer = getattr(item, "aclose", None)
            if closer is not None:
                await closer()
            elif hasattr(item, "close"):
                item.close()
        self._items.clear()
        if self._store is not None:
            self._store.close()
            self._store = None


@dataclass
class Context:
    """What an operation runs with: the node it targets, the pool it came from, the caller."""

    pool: NodePool
    node: Node | None
    principal: Principal = field(default_factory=Principal)
    correlation_id: str = ""
    services: Services = field(default_factory=Services)

    def require_node(self) -> Node:
        if self.node is None:
            from .errors import ErrorCode, OperationError

            raise OperationError(ErrorCode.not_found, "no node is attached; attach one first (--node)")
        return self.node


P = TypeVar("P", bound=Params)
R = TypeVar("R", bound=Result)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Operation(ABC, Generic[P, R]):
    """Subclass it, fill in the class attributes and ``execute``; ``@registry.register`` it."""

    name: ClassVar[str]
    category: ClassVar[str]
    summary: ClassVar[str]
    cost: ClassVar[str] = "O(1): one call into the node."
    risk: ClassVar[str] = "None: reads only."
    params: ClassVar[type[Params]] = NoParams
    result: ClassVar[type[Result]]
    severity: ClassVar[Severity] = Severity.read
    method: ClassVar[str] = "GET"
    path: ClassVar[str | None] = None
    cli_name: ClassVar[str | None] = None
    timeout: ClassVar[float] = 10.0
    needs_node: ClassVar[bool] = True
    # Only an admin key may run it, whatever its severity (attaching nodes, for example).
    admin_only: ClassVar[bool] = False
    example: ClassVar[dict[str, Any]] = {}

    @abstractmethod
    async def execute(self, ctx: Context, params: P) -> R:
        """Do the work. Raise :class:`OperationError` for failures the caller should see as such."""

    @classmethod
    def target_node(cls, ctx: Context, params: Params | None) -> str | None:
        """The node this call acts on, as its audit rows and a key's node grants name it: the
        context's node; operations on the pool of nodes name the one in their parameters."""
        return ctx.node.name if ctx.node is not None else None

    @classmethod
    def check_definition(cls) -> None:
        """Refuse at registration what would break serving it (a typo costs nothing later)."""
        for attribute in ("name", "category", "summary", "result"):
            if not hasattr(cls, attribute):
                raise TypeError(f"operation {cls.__name__} lacks {attribute}")
        if not _NAME.match(cls.name):
            raise TypeError(f"operation name {cls.name!r} must be snake_case")
        if cls.method not in ("GET", "POST", "PUT", "DELETE"):
            raise TypeError(f"operation {cls.name}: unknown HTTP method {cls.method}")
        if cls.severity is not Severity.read and "risk" not in cls.__dict__:
            raise TypeError(f"operation {cls.name} changes the node: it must say what it risks")
        cls.params.model_validate(cls.example)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The operation as data: for discovery, docs and the CLI."""
        return {
            "name": cls.name,
            "category": cls.category,
            "summary": cls.summary,
            "cost": cls.cost,
            "risk": cls.risk,
            "severity": cls.severity.value,
            "method": cls.method,
            "path": cls.path or f"/api/v1/operations/{cls.name}",
            "cli": cls.cli_name,
            "timeout": cls.timeout,
            "params": cls.params.model_json_schema(),
            "result": cls.result.model_json_schema(),
            "example": cls.example,
        }
