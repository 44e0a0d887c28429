"""A synchronous face on the Python API, for scripts and notebooks.

    from arsenal.sync import attach
    node = attach("app@host")
    print(node.list_processes(limit=5))
    node.close()

An event loop runs in a background thread; each call waits for its result.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .client import Arsenal, NodeClient

__all__ = ["SyncNode", "attach"]


class SyncNode:
    """A node attached in a background loop; every operation is a plain method."""

    def __init__(self, name: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="arsenal-sync", daemon=True)
        self._thread.start()
        cookie = options.pop("cookie", None)
        self._arsenal = self._wait(_make_arsenal(cookie))
        self._client: NodeClient = self._wait(self._arsenal.attach(name, **options))

    def _wait(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self._client, operation)
        if not callable(method):
            return method

        def call(**params: Any) -> Any:
            return self._wait(method(**params))

        call.__name__ = operation
        call.__doc__ = method.__doc__
        return call

    def close(self) -> None:
        self._wait(self._arsenal.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> SyncNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make_arsenal(cookie: str | None) -> Arsenal:
    return Arsenal(cookie=cookie)


def attach(name: str, **options: Any) -> SyncNode:
    """Attach to ``name`` and return a node whose operations are plain (blocking) methods."""
    return SyncNode(name, **options)
