"""Safety rule 1: no request creates an atom on a target, whatever it holds.

10,000 random requests over every registered operation — names that are no
atoms, pids in and out of range, junk of every type — and the node's atom count
does not move.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import typing
from enum import Enum
from typing import Any

import pytest

from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.base import Principal
from arsenal.ops.errors import OperationError
from arsenal.ops.registry import registry

pytestmark = pytest.mark.timeout(600)

REQUESTS = 10_000


def _junk_text(rng: random.Random) -> str:
    choices = [
        lambda: "zz_never_an_atom_" + "".join(rng.choices(string.ascii_lowercase, k=8)),
        lambda: "Elixir.Never.An" + "".join(rng.choices(string.ascii_letters, k=6)),
        lambda: f"<0.{rng.randrange(1 << 16)}.{rng.randrange(1 << 14)}>",
        lambda: f"{rng.randrange(3)}.{rng.randrange(1 << 20)}.{rng.randrange(9)}",
        lambda: "".join(rng.choices(string.printable, k=rng.randrange(1, 40))),
        lambda: "ünï_" + "".join(rng.choices("ßçø∂ƒ", k=5)),
        lambda: rng.choice(["code_server", "init", "demo_worker_1", "memory", "kill", "normal", ""]),
    ]
    return rng.choice(choices)()


def _value(annotation: Any, rng: random.Random) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _value(rng.choice(options), rng) if options and rng.random() < 0.9 else None
    if origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        return [_value(item, rng) for _ in range(rng.randrange(4))]
    if origin is dict:
        return {_junk_text(rng): _junk_text(rng) for _ in range(rng.randrange(3))}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        members = [m.value for m in annotation]
        return rng.choice(members) if rng.random() < 0.7 else _junk_text(rng)
    if annotation is bool:
        return rng.random() < 0.5
    if annotation is int:
        return rng.choice([0, 1, 5, -1, 10**12, rng.randrange(-100, 2000)])
    if annotation is float:
        return rng.choice([0.0, 0.1, 1.0, -3.5, 1e9])
    return _junk_text(rng)


def _params(operation: Any, rng: random.Random) -> dict[str, Any]:
    params = {}
    for name, field in operation.params.model_fields.items():
        if field.is_required() or rng.random() < 0.5:
            params[name] = _value(field.annotation, rng)
    if rng.random() < 0.05:
        params[_junk_text(rng)] = _junk_text(rng)  # an unknown parameter
    return params


async def _settled_atom_count(service: Arsenal, node: str) -> int:
    last = -1
    for _ in range(100):
        count = await service.pool.get(node).call("erlang", "system_info", [Atom("atom_count")])
        if count == last:
            return count
        last = count
        await asyncio.sleep(0.2)
    return last


async def test_ten_thousand_random_requests_create_no_atom(make_node, cookie) -> None:
    target = make_node("atoms", demo=True)
    rng = random.Random(20261122)
    registry.discover()
    # Operations that manage attachments act on Arsenal, not on the node; they get their own tests.
    # Cluster operations fan out to every attached node (here the one), so they are fuzzed too.
    operations = [op for op in registry.all() if op.needs_node or op.category == "cluster"]
    # An operator, not an admin: random force=true must not let requests kill the VM's own processes.
    async with Arsenal(cookie=cookie, principal=Principal(name="fuzz", role="operator")) as service:
        await service.attach(target.name, reconnect=True, timeout=10.0)
        # Warm up every operation once so that the agent and the code it uses are loaded, and ask
        # for every process_info field once: the VM makes one atom of its own the first time
        # anyone asks for garbage_collection on a node (an atom of the runtime, not of a request).
        await service.run("get_process_info", {"pid": "init"}, node=target.name)
        # Likewise the VM makes one atom ('Argument__1') the first time a call trace event reaches a
        # tracer on the node (found with a crash dump's atom table): trigger it once here.
        traced = await service.run(
            "trace_calls", {"patterns": ["lists:seq/2"], "max_events": 1, "duration": 10}, node=target.name
        )
        await service.pool.get(target.name).call("lists", "seq", [1, 2])
        with contextlib.suppress(OperationError):
            await service.run("stop_trace", {"id": traced.id})  # type: ignore[attr-defined]
        for op in operations:
            with contextlib.suppress(OperationError):
                await service.run(op.name, op.example, node=target.name)
        before = await _settled_atom_count(service, target.name)
        outcomes: dict[str, int] = {}
        semaphore = asyncio.Semaphore(16)

        async def one() -> None:
            op = rng.choice(operations)
            params = _params(op, rng)
            async with semaphore:
                try:
                    await service.run(op.name, params, node=target.name, timeout=5.0)
                    outcomes["ok"] = outcomes.get("ok", 0) + 1
                except OperationError as exc:
                    outcomes[exc.code.value] = outcomes.get(exc.code.value, 0) + 1

        await asyncio.gather(*(one() for _ in range(REQUESTS)))
        assert sum(outcomes.values()) == REQUESTS
        assert "internal_error" not in outcomes, outcomes
        assert service.pool.get(target.name).connected, "the node went down under random requests"
        after = await _settled_atom_count(service, target.name)
        assert after == before, f"{after - before} atoms created; outcomes: {outcomes}"
