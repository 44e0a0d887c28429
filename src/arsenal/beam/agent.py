"""Loading Arsenal's agent modules into a node, and taking them out again.

The agent ships as ``.beam`` files (built by ``make agent``) so it loads on
nodes without the ``compiler`` application, as releases often are. A node that
already runs the same module (same md5) is left alone; a different version is
purged and replaced, as ``code:load_binary/3`` requires.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..dist import Atom, Connection, Pid, RpcError, charlist
from .errors import AgentError, AgentNotBuilt

__all__ = ["AgentLoader", "AgentModule", "AGENT_MODULE"]

AGENT_MODULE = "arsenal_agent"


@dataclass(frozen=True, slots=True)
class AgentModule:
    name: str
    md5: bytes
    beam: bytes


def _ebin() -> Path:
    return Path(str(resources.files("arsenal.agent"))) / "ebin"


class AgentLoader:
    """Knows the agent's modules and puts them into, or takes them out of, a node."""

    def __init__(self, ebin: Path | None = None) -> None:
        self.ebin = ebin or _ebin()
        self._modules: list[AgentModule] | None = None

    @property
    def modules(self) -> list[AgentModule]:
        if self._modules is None:
            self._modules = self._read()
        return self._modules

    def _read(self) -> list[AgentModule]:
        manifest = self.ebin / "manifest.json"
        if not manifest.is_file():
            raise AgentNotBuilt(
                f"the agent is not built ({manifest} is missing); run `make agent` in the Arsenal checkout"
            )
        entries = json.loads(manifest.read_text())["modules"]
        return [
            AgentModule(name, bytes.fromhex(md5), (self.ebin / f"{name}.beam").read_bytes())
            for name, md5 in sorted(entries.items())
        ]

    @property
    def built_with_otp(self) -> str:
        return json.loads((self.ebin / "manifest.json").read_text()).get("otp_release", "?")

    async def loaded_md5(self, conn: Connection, module: str, timeout: float) -> bytes | None:
        """The md5 of ``module`` as loaded on the node, or None when it is not loaded."""
        try:
            md5 = await conn.rpc("erlang", "get_module_info", [Atom(module), Atom("md5")], timeout)
        except RpcError as exc:
            if exc.reason == Atom("badarg"):
                return None
            raise
        return md5 if isinstance(md5, bytes) else None

    async def ensure_loaded(self, conn: Connection, timeout: float = 10.0) -> list[str]:
        """Load every agent module the node lacks or has in another version; return those loaded."""
        loaded = []
        for module in self.modules:
            if await self.loaded_md5(conn, module.name, timeout) == module.md5:
                continue
            await self._load(conn, module, timeout)
            loaded.append(module.name)
        return loaded

    async def _stop_server(self, conn: Connection, module: AgentModule, timeout: float) -> None:
        """Stop the agent's server registered under the module's name (the tracer hub) through
        its own code, so it undoes what it set (trace flags and patterns) before the code it runs
        is replaced or purged; a purge would kill it with nothing undone."""
        mod = Atom(module.name)
        if isinstance(await conn.rpc("erlang", "whereis", [mod], timeout), Pid):
            with contextlib.suppress(RpcError):  # it ended on its own meanwhile
                await conn.rpc("gen_server", "stop", [mod, Atom("normal"), 5000], timeout)

    async def _load(self, conn: Connection, module: AgentModule, timeout: float) -> None:
        mod = Atom(module.name)
        await self._stop_server(conn, module, timeout)
        # A module with old code still resident cannot be loaded again: purge first.
        await conn.rpc("code", "purge", [mod], timeout)
        result = await conn.rpc(
            "code", "load_binary", [mod, charlist(f"arsenal/{module.name}.beam"), module.beam], timeout
        )
        if result != (Atom("module"), mod):
            raise AgentError(
                f"{conn.peer} refused to load {module.name}: {result!r}; the agent was built with OTP "
                f"{self.built_with_otp}, and a node older than that cannot load it"
            )
        if await self.loaded_md5(conn, module.name, timeout) != module.md5:
            raise AgentError(f"{module.name} on {conn.peer} does not match the agent just loaded")

    async def unload(self, conn: Connection, timeout: float = 10.0) -> list[str]:
        """Remove the agent's modules from the node (purging kills processes still running them)."""
        removed = []
        for module in self.modules:
            mod = Atom(module.name)
            await self._stop_server(conn, module, timeout)
            await conn.rpc("code", "purge", [mod], timeout)
            if await conn.rpc("code", "delete", [mod], timeout) is True:
                removed.append(module.name)
            await conn.rpc("code", "purge", [mod], timeout)
        return removed
