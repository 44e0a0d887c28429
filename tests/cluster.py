"""The ``cluster`` fixture: a fresh local cluster of three real, fully meshed peer nodes.

Each test gets its own (tests cut links and kill nodes); every node is killed at teardown,
even when the test fails. Registered in ``tests/conftest.py``'s ``pytest_plugins``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from arsenal.cluster import LocalCluster

from .nodes import DEMO_ERL_EBIN, LOG_DIR, TEST_SUPPORT_EBIN

CLUSTER_SIZE = 3


@pytest.fixture
async def cluster(built: None, cookie: str) -> AsyncIterator[LocalCluster]:
    """Three plain Erlang nodes running the demo tree, meshed, with the session cookie."""
    local = LocalCluster(
        CLUSTER_SIZE,
        cookie=cookie,
        prefix="cl",
        erl_ebin=DEMO_ERL_EBIN,
        code_paths=[TEST_SUPPORT_EBIN],
        log_dir=LOG_DIR,
    )
    await local.start()
    try:
        yield local
    finally:
        await local.close()
