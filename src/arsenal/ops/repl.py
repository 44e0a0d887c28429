"""A REPL into a sandbox: bindings kept between inputs, multi-line input, completion, magic commands.

The session lives in the sandbox (``arsenal_agent_code:repl_start/2``): a process holding the
bindings, owned by a process of this Arsenal's connection, so it ends when Arsenal goes away.
Each input runs in a fresh process killed at the timeout, so ``receive after infinity`` or an
endless loop costs one timeout, not the session. The WebSocket (``/api/v1/sandboxes/{id}/repl``)
and ``arsenal repl`` both drive a :class:`Repl`.

Magic commands (a line that is exactly one of these; to evaluate such an atom, write ``(:help)``):

``:help``  ``:processes``  ``:tree``  ``:apps``  ``:info``  ``:versions Mod``
``:reload Mod`` (compile the module's current source again)  ``:rollback Mod N``  ``:reset``
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from ..dist import Atom, Pid, Process
from ..sandbox.manager import CODE, SandboxError, SandboxManager
from .errors import OperationError
from .sandboxes import eval_result

__all__ = ["MAGIC_HELP", "Repl", "ReplReply"]

MAGIC_HELP = (
    ":help                 this list\n"
    ":processes            the sandbox's biggest processes\n"
    ":tree                 its applications and supervision trees\n"
    ":apps                 running applications\n"
    ":info                 status, limits and usage\n"
    ":versions Mod         the versions Arsenal loaded of Mod\n"
    ":reload Mod           compile Mod's current source again and hot-swap it\n"
    ":rollback Mod N       load version N of Mod again\n"
    ":reset                forget the bindings"
)
SYSTEM_APPS = frozenset({"kernel", "stdlib", "compiler", "elixir", "logger", "sasl", "crypto"})
MAGIC = ("help", "processes", "tree", "apps", "info", "versions", "reload", "rollback", "reset")


@dataclass
class ReplReply:
    """One answer: ``kind`` is result, error, magic or incomplete."""

    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "text": self.text, **self.data}


class Repl:
    def __init__(self, manager: SandboxManager, sandbox_id: str, *, language: str | None = None) -> None:
        self.manager = manager
        self.sandbox_id = sandbox_id
        self.language = language or manager.spec(sandbox_id).code_language
        self.timeout_ms = 5000
        self._session: Pid | None = None
        self._owner: Process | None = None
        self.history: list[str] = []

    async def start(self) -> Repl:
        node = await self.manager.node(self.sandbox_id)
        self._owner = node.spawn_process(mailbox_size=16)
        started = await node.call(CODE, "repl_start", [Atom(self.language), self._owner.pid])
        self._session = started[1]
        return self

    async def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                node = await self.manager.node(self.sandbox_id)
                await node.call(CODE, "repl_stop", [self._session], 5)
        if self._owner is not None:
            with contextlib.suppress(Exception):
                await self._owner.close()
        self._session = None

    async def is_complete(self, text: str) -> bool:
        node = await self.manager.node(self.sandbox_id)
        return bool(await node.call(CODE, "input_complete", [Atom(self.language), text.encode()], 5))

    async def complete(self, prefix: str) -> list[str]:
        node = await self.manager.node(self.sandbox_id)
        names = await node.call(CODE, "repl_complete", [Atom(self.language), prefix.encode()], 5)
        return [n.decode() for n in names]

    async def handle(self, text: str) -> ReplReply:
        """Evaluate one complete input (or run a magic command)."""
        line = text.strip()
        if not line:
            return ReplReply("result", "")
        self.history.append(text)
        words = line.split()
        if (
            words[0].startswith(":")
            and words[0][1:] in MAGIC
            and (len(words) == 1 or words[0][1:] in ("versions", "reload", "rollback"))
        ):
            try:
                return await self._magic(words[0][1:], words[1:])
            except SandboxError as exc:
                return ReplReply("error", str(exc))
        return await self._evaluate(text)

    async def _evaluate(self, text: str) -> ReplReply:
        assert self._session is not None, "start() the REPL first"
        node = await self.manager.node(self.sandbox_id)
        options = {
            Atom("timeout_ms"): self.timeout_ms,
            Atom("policy"): self.manager.spec(self.sandbox_id).policy.wire(),
        }
        reply = await node.call(
            CODE, "repl_eval", [self._session, text.encode(), options], self.timeout_ms / 1000 + 10
        )
        try:
            result = eval_result(reply, self.language)
        except OperationError as exc:
            return ReplReply("error", exc.message, {"details": exc.details})
        if not result.ok:
            error = result.error or {}
            where = f" (line {error['line']})" if "line" in error else ""
            return ReplReply(
                "error",
                f"{error.get('kind', 'error')}{where}: {error.get('message', '')}",
                result.model_dump(),
            )
        return ReplReply("result", result.value or "", result.model_dump())

    async def _magic(self, name: str, args: list[str]) -> ReplReply:
        node = await self.manager.node(self.sandbox_id)
        if name == "help":
            return ReplReply("magic", MAGIC_HELP)
        if name == "reset":
            await self.close()
            await self.start()
            return ReplReply("magic", "bindings forgotten")
        if name == "processes":
            rows = await node.call("arsenal_agent_sandbox", "processes", [20], 10)
            lines = [
                f"{r[Atom('pid')].decode():<14} {_name(r[Atom('name')]):<32} {r[Atom('memory')]:>10} "
                f"{_name(r[Atom('current_function')])}"
                for r in rows
            ]
            return ReplReply("magic", "\n".join(lines))
        if name in ("apps", "info"):
            usage = await node.call("arsenal_agent_sandbox", "usage", [], 10)
            apps = "\n".join(
                f"{a[Atom('name')].decode()} {a[Atom('vsn')].decode()}" for a in usage[Atom("applications")]
            )
            if name == "apps":
                return ReplReply("magic", apps)
            record = self.manager.get(self.sandbox_id)
            return ReplReply(
                "magic",
                f"sandbox {record.id}: {record.status} on {record.node}\n"
                f"memory {usage[Atom('memory_bytes')] >> 20} MiB, processes {usage[Atom('process_count')]}/"
                f"{usage[Atom('process_limit')]}, schedulers {usage[Atom('schedulers')]}",
            )
        if name == "tree":
            return ReplReply("magic", await self._tree(node))
        if not args:
            return ReplReply("error", f":{name} needs a module, e.g. :{name} MyApp.Worker")
        module = args[0]
        if name == "versions":
            full, _ = self.manager.resolve_module(self.sandbox_id, module)
            versions = self.manager.versions(self.sandbox_id, full)
            if not versions:
                return ReplReply("error", f"Arsenal loaded no module {module} into this sandbox")
            return ReplReply("magic", "\n".join(f"v{v.version}  {v.note}  {v.md5[:12]}" for v in versions))
        if name == "reload":
            full, language = self.manager.resolve_module(self.sandbox_id, module)
            versions = self.manager.versions(self.sandbox_id, full)
            if not versions or versions[-1].source is None:
                return ReplReply(
                    "error", f"no stored source of {module}; hot-swap it with new source instead"
                )
            report = await self.manager.hot_swap(
                self.sandbox_id, module, versions[-1].source, language=language, force=False, extra=[]
            )
            return ReplReply("magic", f"{module} reloaded as v{report[Atom('version')]}")
        if name == "rollback":
            if len(args) != 2 or not args[1].lstrip("v").isdigit():
                return ReplReply("error", ":rollback needs a module and a version, e.g. :rollback Counter 1")
            report = await self.manager.rollback(
                self.sandbox_id, module, int(args[1].lstrip("v")), force=False, extra=[]
            )
            return ReplReply(
                "magic", f"{module} is v{args[1].lstrip('v')} again (recorded as v{report[Atom('version')]})"
            )
        return ReplReply("error", f"unknown magic :{name}; :help lists them")

    async def _tree(self, node: Any) -> str:
        usage = await node.call("arsenal_agent_sandbox", "usage", [], 10)
        lines = []
        for app in usage[Atom("applications")]:
            name = app[Atom("name")].decode()
            if name in SYSTEM_APPS:
                continue
            lines.append(name)
            children = await node.call("arsenal_agent_sandbox", "app_tree", [name.encode()], 10)
            lines.extend(f"  {line.decode()}" for line in children)
        return "\n".join(lines)


def _name(value: Any) -> str:
    if value is None or value == Atom("undefined"):
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
