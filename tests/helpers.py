"""Small helpers shared by the operation tests."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from arsenal.client import Arsenal
from arsenal.ops.errors import ErrorCode, OperationError


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
