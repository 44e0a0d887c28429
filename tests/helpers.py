"""Small helpers shared by the operation tests."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from arsenal.beam import Node
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.errors import ErrorCode, OperationError

INVALID_PID = "<0.4294967295.0>"
"""A local pid that no OTP release accepts: out of range for the node, so a validation error.
(``<0.99999.0>`` is not one: pid numbers above 32767 are valid from OTP 26 on.)"""


async def fails(code: ErrorCode, call: Awaitable[Any]) -> OperationError:
    """Await ``call``, which must fail with ``code``; the error, for checks on its message."""
    with pytest.raises(OperationError) as err:
        await call
    assert err.value.code is code, err.value.message
    return err.value


async def eval_erlang(service: Arsenal, node: str, source: str) -> Any:
    """Erlang expressions (test code, not request data), separated by commas, a final dot optional,
    evaluated on ``node`` by the test-support module."""
    body = f"begin {source.strip().removesuffix('.')} end"
    return await service.pool.get(node).call("arsenal_test_support", "eval", [body.encode()])


async def otp_release(node: Node) -> str:
    """The OTP release the node itself says it runs (``"25"``, ``"27"``...): tests run on either."""
    return bytes(await node.call("erlang", "system_info", [Atom("otp_release")])).decode()


async def elixir_version(node: Node) -> str:
    """The Elixir release the node itself says it runs (``"1.14.0"``, ``"1.18.3"``...)."""
    return (await node.call("Elixir.System", "version")).decode()


async def has_trace_sessions(node: Node) -> bool:
    """Whether the node has trace sessions (OTP 27 and later). There dbg traces in a session of its
    own, beside anyone else's; before, a process has one tracer, which Arsenal must not take over."""
    await node.call("code", "ensure_loaded", [Atom("trace")])
    return await node.call("erlang", "function_exported", [Atom("trace"), Atom("session_create"), 3])
