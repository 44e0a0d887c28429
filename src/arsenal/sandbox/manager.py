"""Sandboxes: BEAM nodes Arsenal starts, feeds code into, watches and tears down.

A sandbox is a separate OS process (a node of its own, with a random cookie, its own
directory under ``$ARSENAL_HOME/sandboxes/<id>`` and the limits of
:class:`~arsenal.sandbox.limits.SandboxLimits`), never a supervisor inside a user's node:
modules and atoms are global to a VM, and a runaway experiment must not touch a real
system. Its row in the store is the truth about it for every Arsenal sharing
``ARSENAL_HOME``; the node itself outlives the Arsenal process that started it (the CLI
starts one and exits) until it is destroyed or its lifetime ends.

How a sandbox ended is read from what it leaves in its directory: ``stop_reason`` (written
by its watchdog: lifetime, memory), ``exit_status`` (written by the launcher's wrapper:
a signal such as SIGXCPU for the CPU limit), and the slogan of ``erl_crash.dump``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..beam import Node
from ..beam.agent import AgentLoader
from ..dist import Atom, Term, charlist
from ..store import ModuleVersion, SandboxRecord, SandboxStore, Store, default_home
from .errors import SandboxError
from .launcher import BeamProcess, LaunchSpec, OtpInstall, group_alive, kill_group
from .limits import SandboxLimits
from .policy import SecurityPolicy
from .source import SandboxSource, module_atom

__all__ = ["SandboxError", "SandboxManager", "SandboxSpec", "death_reason", "unwrap_reply"]

log = logging.getLogger("arsenal.sandbox")

SANDBOX_ID = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
READY_MARKER = "ARSENAL_SANDBOX_READY"
START_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
CODE = "arsenal_agent_code"
SANDBOX = "arsenal_agent_sandbox"
SIGXCPU_STATUS = 128 + 24
SIGKILL_STATUS = 128 + 9


class SandboxSpec(BaseModel):
    """What to run and under which limits. Exactly one of ``template``, ``source`` or ``app``
    may be given; none gives an empty node (for the REPL and injected code)."""

    model_config = ConfigDict(extra="forbid")

    template: str | None = Field(None, description="worker_pool, pubsub, pipeline or cascade.")
    source: SandboxSource | None = None
    app: dict[str, Any] | None = Field(
        None, description="A generated application's spec (see generate_application)."
    )
    language: str = Field(
        "elixir", pattern="^(elixir|erlang)$", description="For an empty sandbox: its REPL's language."
    )
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    policy: SecurityPolicy = Field(default_factory=SecurityPolicy)
    persistent: bool = Field(
        False, description="Kept in the store; `arsenal serve` starts it again when it starts."
    )

    @model_validator(mode="after")
    def _one_source(self) -> SandboxSpec:
        given = [name for name in ("template", "source", "app") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of template, source or app, not {' and '.join(given)}")
        return self

    def resolved_source(self) -> SandboxSource | None:
        if self.source is not None:
            return self.source
        if self.template is not None or self.app is not None:
            from .generator import AppSpec
            from .templates import template

            spec = template(self.template) if self.template is not None else AppSpec.model_validate(self.app)
            return source_of_app(spec)
        return None

    @property
    def code_language(self) -> str:
        source = self.source
        if source is not None:
            return source.language
        return "elixir" if (self.template or self.app) else self.language


def source_of_app(spec: Any) -> SandboxSource:
    """A generated mix project as sandbox source (its ``lib/`` files, its application)."""
    from .generator import application_module, render_project

    files = {path: text for path, text in render_project(spec).items() if path.startswith("lib/")}
    return SandboxSource(
        language="elixir",
        files=files,
        app=spec.name,
        mod=f"{application_module(spec)}.Application",
        applications=["logger"],
    )


@dataclass
class LiveSandbox:
    """What this Arsenal process holds of a running sandbox: its connection (and its OS
    process, when this process started it)."""

    id: str
    node: Node
    process: BeamProcess | None = None
    watcher: asyncio.Task[None] | None = None


class SandboxManager:
    """The sandboxes of one ``ARSENAL_HOME`` (a service: ``services.get(SandboxManager)``)."""

    def __init__(self, services: Any = None, *, store: Store | None = None, home: Path | None = None) -> None:
        if store is None:
            store = services.store
        self.home = (
            home or (services.home if services is not None and services.home else None) or default_home()
        )
        self.records = SandboxStore(store)
        self.live: dict[str, LiveSandbox] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loader = AgentLoader()
        self.otp = OtpInstall.from_environment()

    # ------------------------------------------------------------------ lifecycle

    def _lock(self, id: str) -> asyncio.Lock:
        return self._locks.setdefault(id, asyncio.Lock())

    def directory(self, id: str) -> Path:
        return self.home / "sandboxes" / id

    def _agent_ebin(self) -> Path:
        """The agent build for the sandboxes' OTP, where their nodes can load it from."""
        build = self._loader.build_for(self.otp.release())
        if self.otp.holds(build.directory):
            return build.directory
        # A node in another OS tree sees only that tree: it gets a copy, under the home inside it.
        copy = self.home / "agent" / build.directory.name
        if not (copy / "manifest.json").is_file() or (copy / "manifest.json").read_bytes() != (
            build.directory / "manifest.json"
        ).read_bytes():
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(build.directory, copy)
        return copy

    async def create(self, id: str, spec: SandboxSpec) -> SandboxRecord:
        """Start a new sandbox and load its code; on any failure nothing is left behind."""
        if not SANDBOX_ID.match(id):
            raise SandboxError(
                "validation",
                f"{id!r} is not a sandbox id: lowercase letters, digits and _, starting with a letter, "
                "up to 31",
            )
        async with self._lock(id):
            existing = self.refresh(self.records.get(id))
            if existing is not None:
                raise SandboxError(
                    "conflict",
                    f"sandbox {id} exists ({existing.status}); destroy it first or choose another id",
                )
            source = spec.resolved_source()
            directory = self.directory(id)
            self.records.create(id, spec.model_dump(mode="json"), spec.persistent, str(directory))
            try:
                await self._start(id, spec, source)
            except BaseException:
                await self._teardown(id, keep_record=False)
                raise
            return self.records.get(id)  # type: ignore[return-value]

    async def _start(self, id: str, spec: SandboxSpec, source: SandboxSource | None) -> None:
        directory = self.directory(id)
        _fresh_directory(directory)
        cookie = secrets.token_hex(16)
        # An Erlang sandbox does without Elixir (its applications cost ~40 ms of start-up).
        elixir = self.otp.elixir_code_paths()
        uses_elixir = bool(elixir) and spec.code_language == "elixir"
        if spec.code_language == "elixir" and not elixir:
            raise SandboxError(
                "start", "Elixir is not installed on Arsenal's host; give Erlang source instead"
            )
        launch = LaunchSpec(
            alive=f"arsenal_sbx_{id}_{secrets.token_hex(2)}",
            cookie=cookie,
            code_paths=[self._agent_ebin(), *(elixir if uses_elixir else [])],
            args=[*spec.limits.erl_args(), "-eval", "arsenal_agent_sandbox:boot()"],
            env={
                **spec.limits.env(),
                "ARSENAL_SANDBOX_DIR": str(directory),
                "ARSENAL_SANDBOX_ELIXIR": "1" if uses_elixir else "0",
                "ERL_CRASH_DUMP": str(directory / "erl_crash.dump"),
                "ERL_CRASH_DUMP_BYTES": "1048576",
            },
            log_path=directory / "node.log",
            rlimits=spec.limits.rlimits(),
            exit_status_path=directory / "exit_status",
            ready_marker=READY_MARKER,
            cwd=directory / "work",
            root=self.otp.root,
        )
        process = BeamProcess.start(launch)
        self.records.started(id, launch.node_name, cookie, process.pid)
        await _wait_ready(process)
        node = Node(launch.node_name, cookie=cookie, reconnect=False, timeout=CALL_TIMEOUT)
        await node.connect()
        live = LiveSandbox(id, node, process)
        self.live[id] = live
        if source is not None:
            await self._load_source(live, source, spec)
        self.records.set_status(id, "running")
        live.watcher = asyncio.create_task(self._watch(live), name=f"arsenal-sandbox {id}")

    async def _load_source(self, live: LiveSandbox, source: SandboxSource, spec: SandboxSpec) -> None:
        modules = await self._compile(
            live.id, live.node, source.language, source.files, spec.policy, "initial"
        )
        if source.app is None:
            return
        app = {
            Atom("app"): source.app.encode(),
            Atom("applications"): [a.encode() for a in source.applications],
        }
        if source.mod is not None:
            app[Atom("mod")] = source.module_atom(source.mod).encode()
        app[Atom("modules")] = [m.encode() for m in modules]
        unwrap_reply(await live.node.call(SANDBOX, "start_app", [app], CALL_TIMEOUT), "start")

    async def _compile(
        self, id: str, node: Node, language: str, files: dict[str, str], policy: SecurityPolicy, note: str
    ) -> list[str]:
        """Compile and load files in the sandbox (after its policy scan); record each module's version."""
        request = {
            Atom("lang"): Atom(language),
            Atom("dir"): charlist(self.otp.inside(self.directory(id))),
            Atom("files"): [(name.encode(), text.encode()) for name, text in sorted(files.items())],
            Atom("policy"): policy.wire(),
        }
        result = unwrap_reply(await node.call(CODE, "compile", [request], CALL_TIMEOUT * 4), "compile")
        names = []
        for module in result[Atom("modules")]:
            name = str(module[Atom("module")])
            self.records.add_version(
                id,
                name,
                language,
                _source_of(name, files),
                None,
                module[Atom("beam")],
                module[Atom("md5")].hex(),
                note,
            )
            names.append(name)
        return names

    async def load_modules(self, id: str, language: str, files: dict[str, str], note: str) -> list[str]:
        """Compile more modules into a running sandbox (for example a worker generated at run time)."""
        node = await self.node(id)
        return await self._compile(id, node, language, files, self.spec(id).policy, note)

    async def start_worker(
        self, id: str, module: str, args: Term, *, child_id: Term, restart: str, supervisor: str | None
    ) -> dict[Term, Term]:
        node = await self.node(id)
        request = {
            Atom("module"): module.encode(),
            Atom("args"): args,
            Atom("id"): child_id,
            Atom("restart"): Atom(restart),
            Atom("supervisor"): supervisor.encode() if supervisor else Atom("undefined"),
        }
        return unwrap_reply(await node.call(SANDBOX, "start_worker", [request], CALL_TIMEOUT), "start")

    async def _watch(self, live: LiveSandbox) -> None:
        """Notice the sandbox going away (a limit, a crash, its lifetime) and record why."""
        with contextlib.suppress(Exception):
            await live.node.connection.wait_closed()
        if self.live.get(live.id) is not live:
            return  # destroyed or restarted on purpose
        if live.process is not None:
            await live.process.wait_exit(10)
        self.live.pop(live.id, None)
        with contextlib.suppress(Exception):
            await live.node.close()
        record = self.records.get(live.id)
        if record is not None and record.status in ("starting", "running"):
            status, reason = death_reason(Path(record.dir))
            self.records.set_status(live.id, status, reason)
            log.warning("sandbox %s %s: %s", live.id, status, reason)

    def refresh(self, record: SandboxRecord | None) -> SandboxRecord | None:
        """The record with its status brought up to date (a node that died unseen gets its reason)."""
        if record is None or record.status not in ("starting", "running"):
            return record
        live = self.live.get(record.id)
        running = (
            live.process.running
            if live is not None and live.process is not None
            else (record.os_pid is not None and group_alive(record.os_pid))
        )
        if running:
            return record
        status, reason = death_reason(Path(record.dir))
        self.records.set_status(record.id, status, reason)
        return self.records.get(record.id)

    async def destroy(self, id: str) -> SandboxRecord:
        """Stop the node (its whole process group), delete its directory and its record."""
        async with self._lock(id):
            record = self.records.get(id)
            if record is None:
                raise _not_found(id)
            await self._teardown(id, keep_record=False)
            return record

    async def stop(self, id: str, reason: str = "stopped by request") -> None:
        """Stop the node but keep the record and directory (for restart)."""
        live = self.live.pop(id, None)
        if live is not None:
            if live.watcher is not None:
                live.watcher.cancel()
            with contextlib.suppress(Exception):
                await live.node.close()
        record = self.records.get(id)
        if record is not None and record.os_pid is not None:
            kill_group(record.os_pid)
            if live is not None and live.process is not None:
                await live.process.wait_exit(10)
            await _wait_gone(record.os_pid)
        if record is not None and record.status in ("starting", "running"):
            self.records.set_status(id, "stopped", reason)

    async def _teardown(self, id: str, *, keep_record: bool) -> None:
        await self.stop(id, "destroyed")
        shutil.rmtree(self.directory(id), ignore_errors=True)
        if not keep_record:
            self.records.delete(id)

    async def restart(self, id: str, limits: SandboxLimits | None = None) -> SandboxRecord:
        """Stop and start again from the stored spec (a fresh node: state is not kept)."""
        async with self._lock(id):
            record = self.records.get(id)
            if record is None:
                raise _not_found(id)
            spec = SandboxSpec.model_validate(record.spec)
            if limits is not None:
                spec = spec.model_copy(update={"limits": limits})
                self.records.set_spec(id, spec.model_dump(mode="json"))
            await self.stop(id, "restarted")
            self.records.set_status(id, "starting")
            try:
                await self._start(id, spec, spec.resolved_source())
            except SandboxError as exc:
                await self.stop(id)
                self.records.set_status(id, "failed", str(exc))
                raise
            return self.records.get(id)  # type: ignore[return-value]

    async def start_persistent(self) -> list[str]:
        """Start every persistent sandbox that is not running (``arsenal serve`` calls this)."""
        started = []
        for record in self.records.list():
            record = self.refresh(record)
            if record is None or not record.persistent or record.status in ("starting", "running"):
                continue
            try:
                await self.restart(record.id)
                started.append(record.id)
            except SandboxError as exc:
                log.warning("persistent sandbox %s did not start: %s", record.id, exc)
        return started

    def list(self) -> list[SandboxRecord]:
        return [r for r in (self.refresh(record) for record in self.records.list()) if r is not None]

    def get(self, id: str) -> SandboxRecord:
        record = self.refresh(self.records.get(id))
        if record is None:
            raise _not_found(id)
        return record

    def spec(self, id: str) -> SandboxSpec:
        return SandboxSpec.model_validate(self.get(id).spec)

    async def node(self, id: str) -> Node:
        """The running sandbox's node, connected (a sandbox started by another Arsenal is attached here)."""
        record = self.get(id)
        if record.status not in ("starting", "running"):
            why = f": {record.stop_reason}" if record.stop_reason else ""
            raise SandboxError("node_down", f"sandbox {id} is {record.status}{why}; restart it")
        live = self.live.get(id)
        if live is not None and live.node.connected:
            return live.node
        async with self._lock(id):
            live = self.live.get(id)
            if live is not None and live.node.connected:
                return live.node
            assert record.node is not None and record.cookie is not None
            node = Node(record.node, cookie=record.cookie, reconnect=False, timeout=CALL_TIMEOUT)
            try:
                await node.connect()
            except Exception as exc:
                await node.close()
                raise SandboxError("node_down", f"sandbox {id} does not answer ({exc}); restart it") from None
            live = LiveSandbox(id, node)
            self.live[id] = live
            live.watcher = asyncio.create_task(self._watch(live), name=f"arsenal-sandbox {id}")
            return node

    async def aclose(self) -> None:
        """Disconnect; the sandboxes keep running until destroyed or their lifetime ends."""
        for live in list(self.live.values()):
            if live.watcher is not None:
                live.watcher.cancel()
            with contextlib.suppress(Exception):
                await live.node.close()
        self.live.clear()

    # ------------------------------------------------------------------ code

    def versions(self, id: str, module: str) -> list[ModuleVersion]:
        return self.records.versions(id, module)

    def module_language(self, id: str, module: str) -> str:
        versions = self.records.versions(id, module)
        if versions:
            return versions[-1].language
        return self.spec(id).code_language

    def resolve_module(self, id: str, module: str, language: str | None = None) -> tuple[str, str]:
        """``Counter`` -> (``Elixir.Counter``, ``elixir``) as the sandbox knows it."""
        spec_language = language or self.spec(id).code_language
        name = module_atom(module, spec_language)
        return name, language or self.module_language(id, name)

    async def hot_swap(
        self, id: str, module: str, source: str, *, language: str | None, force: bool, extra: Term
    ) -> dict[Term, Term]:
        """Compile ``source`` in the sandbox and replace ``module`` while its processes run."""
        name, lang = self.resolve_module(id, module, language)
        node = await self.node(id)
        versions = self.records.versions(id, name)
        file = f"{name.removeprefix('Elixir.')}.{'ex' if lang == 'elixir' else 'erl'}"
        request = {
            Atom("lang"): Atom(lang),
            Atom("dir"): charlist(self.otp.inside(self.directory(id))),
            Atom("module"): name.encode(),
            Atom("file"): (f"swap/{file}".encode(), source.encode()),
            Atom("policy"): self.spec(id).policy.wire(),
            Atom("force"): force,
            Atom("extra"): extra,
            Atom("previous"): versions[-1].beam if versions else Atom("undefined"),
        }
        report = unwrap_reply(await node.call(CODE, "swap", [request], CALL_TIMEOUT * 2), "swap")
        version = self.records.add_version(
            id, name, lang, source, file, report[Atom("beam")], report[Atom("md5")].hex(), "hot swap"
        )
        report[Atom("version")] = version
        return report

    async def rollback(
        self, id: str, module: str, version: int, *, force: bool, extra: Term
    ) -> dict[Term, Term]:
        """Load a stored version again (recorded as a new version that names it)."""
        name, lang = self.resolve_module(id, module)
        versions = {v.version: v for v in self.records.versions(id, name)}
        if version not in versions:
            known = ", ".join(str(v) for v in versions) or "none"
            raise SandboxError(
                "not_found", f"{module} has no version {version} in sandbox {id} (versions: {known})"
            )
        node = await self.node(id)
        target = versions[version]
        latest = versions[max(versions)]
        request = {
            Atom("module"): name.encode(),
            Atom("beam"): target.beam,
            Atom("dir"): charlist(self.otp.inside(self.directory(id))),
            Atom("force"): force,
            Atom("extra"): extra,
            Atom("previous"): latest.beam,
        }
        report = unwrap_reply(await node.call(CODE, "load_version", [request], CALL_TIMEOUT * 2), "rollback")
        new = self.records.add_version(
            id, name, lang, target.source, target.file, target.beam, target.md5, f"rollback to v{version}"
        )
        report[Atom("version")] = new
        return report

    async def evaluate(
        self, id: str, code: str, *, language: str | None, binding: list[tuple[bytes, Term]], timeout_ms: int
    ) -> Term:
        node = await self.node(id)
        request = {
            Atom("lang"): Atom(language or self.spec(id).code_language),
            Atom("code"): code.encode(),
            Atom("binding"): binding,
            Atom("timeout_ms"): timeout_ms,
            Atom("policy"): self.spec(id).policy.wire(),
        }
        return await node.call(CODE, "eval", [request], timeout_ms / 1000 + 10)


# ---------------------------------------------------------------------- helpers


def _not_found(id: str) -> SandboxError:
    return SandboxError("not_found", f"no sandbox {id}; list them with `arsenal sandbox list`")


def _fresh_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for leftover in ("stop_reason", "exit_status", "erl_crash.dump"):
        (directory / leftover).unlink(missing_ok=True)
    for sub in ("src", "ebin", "work"):
        shutil.rmtree(directory / sub, ignore_errors=True)
    (directory / "work").mkdir()


async def _wait_ready(process: BeamProcess, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running:
            raise SandboxError("start", f"the sandbox's node exited at start:\n{process.log_tail()}")
        if READY_MARKER in process.log_tail(100_000):
            return
        await asyncio.sleep(0.02)
    raise SandboxError(
        "start", f"the sandbox's node was not ready within {timeout:g}s:\n{process.log_tail()}"
    )


async def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while group_alive(pid) and time.monotonic() < deadline:  # noqa: ASYNC110 - another process's exit
        await asyncio.sleep(0.05)


def unwrap_reply(reply: Term, stage: str) -> Any:
    """``{ok, Value}`` -> Value; ``{error, Map}`` -> :class:`SandboxError` with the map as details."""
    if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == Atom("ok"):
        return reply[1]
    if (
        isinstance(reply, tuple)
        and len(reply) == 2
        and reply[0] == Atom("error")
        and isinstance(reply[1], dict)
    ):
        details = reply[1]
        kind = str(details.get(Atom("stage"), Atom(stage)))
        message = details.get(Atom("message"), b"failed")
        text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        return _raise(kind, text, details)
    raise SandboxError(stage, f"the sandbox answered {reply!r}")


def _raise(kind: str, message: str, details: dict[Term, Term]) -> Any:
    raise SandboxError(kind, message, {"raw": details})


def _source_of(module: str, files: dict[str, str]) -> str | None:
    """The file that defines ``module``, when one can tell (for the version history)."""
    short = module.removeprefix("Elixir.")
    for text in files.values():
        if re.search(rf"defmodule\s+{re.escape(short)}\s+do|-module\(\s*'?{re.escape(short)}'?\s*\)", text):
            return text
    return None


def death_reason(directory: Path) -> tuple[str, str]:
    """``(status, reason)`` of a sandbox whose node is gone, from what it left behind."""
    with contextlib.suppress(OSError):
        reason = (directory / "stop_reason").read_text().strip()
        if reason:
            return ("stopped" if reason.startswith("lifetime") else "failed", reason)
    status: int | None = None
    with contextlib.suppress(OSError, ValueError):
        status = int((directory / "exit_status").read_text().strip())
    slogan = _crash_slogan(directory / "erl_crash.dump")
    if status == SIGXCPU_STATUS:
        return "failed", "cpu_time: the node used up its CPU time limit and the OS stopped it (SIGXCPU)"
    if slogan and ("Cannot allocate" in slogan or "memory" in slogan.lower()):
        return "failed", f"memory: the OS refused memory past the node's limit ({slogan})"
    if slogan:
        return "failed", f"crashed: {slogan}"
    if status == SIGKILL_STATUS:
        return "failed", "killed: the node's process got SIGKILL from outside Arsenal"
    if status == 0:
        return "stopped", "the node halted"
    if status is not None:
        return "failed", f"the node exited with status {status}"
    return (
        "failed",
        "killed: the node left no exit status (its whole process group was killed from outside Arsenal, "
        "or the host restarted)",
    )


def _crash_slogan(path: Path) -> str | None:
    with contextlib.suppress(OSError), open(path, errors="replace") as dump:
        for _, line in zip(range(10), dump, strict=False):
            if line.startswith("Slogan: "):
                return line.removeprefix("Slogan: ").strip()
    return None


def process_exists(pid: int) -> bool:
    with contextlib.suppress(OSError):
        os.kill(pid, 0)
        return True
    return False
