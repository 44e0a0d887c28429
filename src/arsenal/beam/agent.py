"""Loading Arsenal's agent modules into a node, and taking them out again.

The agent ships as ``.beam`` files (built by ``make agent``) so it loads on
nodes without the ``compiler`` application, as releases often are: one build per
OTP line, of which a node gets the newest not newer than its release. A node that
already runs the same module (same md5) is left alone; a different version is
purged and replaced, every module of the build at once.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..dist import Atom, Connection, Pid, RpcError, charlist
from .errors import AgentError, AgentNotBuilt

__all__ = ["AgentBuild", "AgentLoader", "AgentModule", "AGENT_MODULE"]

AGENT_MODULE = "arsenal_agent"


@dataclass(frozen=True, slots=True)
class AgentModule:
    name: str
    md5: bytes
    beam: bytes


def _ebin() -> Path:
    return Path(str(resources.files("arsenal.agent"))) / "ebin"


def _release(text: str) -> int:
    """``"27"`` -> 27; an OTP release as ``erlang:system_info(otp_release)`` gives it (also ``"R16B"``)."""
    digits = "".join(ch for ch in text.lstrip("R") if ch.isdigit())
    return int(digits[:2]) if digits else 0


class AgentBuild:
    """The agent compiled by one OTP release's compiler: ``ebin/otp<REL>/`` with its manifest.

    A .beam file loads only on some releases (OTP 29 refuses what OTP 25 compiled, OTP 25 refuses
    what OTP 27 compiled, OTP 27 refuses what OTP 29 compiled), so each OTP line has its own build
    and a node gets the newest one not newer than itself."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        manifest = json.loads((directory / "manifest.json").read_text())
        self.otp_release = _release(str(manifest.get("otp_release", "0")))
        self._entries: dict[str, str] = manifest["modules"]
        self._modules: list[AgentModule] | None = None

    def __repr__(self) -> str:
        return f"<AgentBuild OTP {self.otp_release} {self.directory}>"

    @property
    def modules(self) -> list[AgentModule]:
        if self._modules is None:
            self._modules = [
                AgentModule(name, bytes.fromhex(md5), (self.directory / f"{name}.beam").read_bytes())
                for name, md5 in sorted(self._entries.items())
            ]
        return self._modules


class AgentLoader:
    """Knows the agent's builds and puts the right one into, or takes it out of, a node."""

    def __init__(self, ebin: Path | None = None) -> None:
        self.ebin = ebin or _ebin()
        self._builds: list[AgentBuild] | None = None

    @property
    def builds(self) -> list[AgentBuild]:
        """Every build present, oldest OTP line first."""
        if self._builds is None:
            # Only ``otp<digits>``: ``otpNN.new`` and ``.old`` are a build being swapped in.
            dirs = [m for m in self.ebin.glob("otp*/manifest.json") if m.parent.name[3:].isdigit()]
            builds = sorted((AgentBuild(m.parent) for m in dirs), key=lambda b: b.otp_release)
            if not builds:
                raise AgentNotBuilt(
                    f"the agent is not built (no {self.ebin}/otp*/manifest.json); run `make agent` "
                    "in the Arsenal checkout"
                )
            self._builds = builds
        return self._builds

    def supported(self) -> str:
        """The OTP lines this installation has builds for, e.g. ``"25, 27 and 29"``."""
        rels = [str(b.otp_release) for b in self.builds]
        return rels[0] if len(rels) == 1 else f"{', '.join(rels[:-1])} and {rels[-1]}"

    def build_for(self, otp_release: str) -> AgentBuild:
        """The newest build whose compiler is not newer than the node's release."""
        release = _release(otp_release)
        fitting = [b for b in self.builds if b.otp_release <= release]
        if not fitting:
            raise AgentError(
                f"this node runs OTP {otp_release}, older than every build of Arsenal's agent "
                f"(built for OTP {self.supported()}); attach to OTP {self.builds[0].otp_release} or later"
            )
        return fitting[-1]

    @property
    def modules(self) -> list[AgentModule]:
        """The agent's modules of the newest build: their names are every build's; their code and
        md5 are that build's (a node's own is :meth:`build_for` its release)."""
        return self.builds[-1].modules

    async def node_release(self, conn: Connection, timeout: float) -> str:
        raw = await conn.rpc("erlang", "system_info", [Atom("otp_release")], timeout)
        return _text(raw)

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
        """Load every agent module the node lacks or has in another version; return those loaded.

        All of them load at once (``code:atomic_load/1``) or none does: a node that refuses one
        module (a build for another OTP line) keeps the agent it had, whole."""
        release = await self.node_release(conn, timeout)
        build = self.build_for(release)
        stale = [m for m in build.modules if await self.loaded_md5(conn, m.name, timeout) != m.md5]
        if not stale:
            return []
        for module in stale:
            await self._stop_server(conn, module, timeout)
            # A module with old code still resident cannot be loaded again: purge first.
            await conn.rpc("code", "purge", [Atom(module.name)], timeout)
        batch = [(Atom(m.name), charlist(f"arsenal/{m.name}.beam"), m.beam) for m in stale]
        result = await conn.rpc("code", "atomic_load", [batch], timeout)
        if result != Atom("ok"):
            raise AgentError(_refusal(conn.peer, result, build, release))
        for module in stale:
            if await self.loaded_md5(conn, module.name, timeout) != module.md5:
                raise AgentError(f"{module.name} on {conn.peer} does not match the agent just loaded")
        return [m.name for m in stale]

    async def _stop_server(self, conn: Connection, module: AgentModule, timeout: float) -> None:
        """Stop the agent's server registered under the module's name (the tracer hub) through
        its own code, so it undoes what it set (trace flags and patterns) before the code it runs
        is replaced or purged; a purge would kill it with nothing undone."""
        mod = Atom(module.name)
        if isinstance(await conn.rpc("erlang", "whereis", [mod], timeout), Pid):
            with contextlib.suppress(RpcError):  # it ended on its own meanwhile
                await conn.rpc("gen_server", "stop", [mod, Atom("normal"), 5000], timeout)

    async def unload(self, conn: Connection, timeout: float = 10.0) -> list[str]:
        """Remove the agent's modules from the node (purging kills processes still running them)."""
        return await self._remove(conn, self.modules, timeout)

    async def _remove(self, conn: Connection, modules: list[AgentModule], timeout: float) -> list[str]:
        removed = []
        for module in modules:
            mod = Atom(module.name)
            await self._stop_server(conn, module, timeout)
            await conn.rpc("code", "purge", [mod], timeout)
            if await conn.rpc("code", "delete", [mod], timeout) is True:
                removed.append(module.name)
            await conn.rpc("code", "purge", [mod], timeout)
        return removed


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return "".join(chr(c) for c in value if isinstance(c, int))
    return str(value)


def _refusal(peer: str, result: object, build: AgentBuild, release: str) -> str:
    """Why a node refused the agent, naming both releases: the usual cause is a build for an
    older OTP line than the node's (no newer compiler was at hand when the agent was built)."""
    refused = result[1] if isinstance(result, tuple) and len(result) == 2 else result
    if isinstance(refused, list):
        refused = ", ".join(f"{m[0]} ({m[1]})" if isinstance(m, tuple) else str(m) for m in refused[:6])
    reason = f"{peer} refused to load the agent: {refused}; "
    if build.otp_release < _release(release):
        return reason + (
            f"this node runs OTP {release} and the newest agent build here is for OTP {build.otp_release}. "
            f"Build the agent with an OTP {_release(release)} compiler too: `scripts/compat_roots.sh` then "
            "`make agent` in the Arsenal checkout (see README, \"Supported OTP releases\")"
        )
    return reason + f"the agent build for OTP {build.otp_release} does not load on this node's OTP {release}"

