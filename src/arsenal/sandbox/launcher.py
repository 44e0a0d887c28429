"""Starting a BEAM node as an OS process Arsenal owns, and making sure it goes away.

One launcher for every node Arsenal starts: sandboxes, the demo, the test suite's
nodes and the benchmarks' nodes. A node runs in a session of its own (so the whole
process group — ``erl``, ``beam.smp``, ``epmd`` children, ports — is killed as one),
optionally under OS resource limits set between ``fork`` and ``exec``, and
optionally through a tiny ``sh`` wrapper that writes the node's exit status to a
file: a node that Arsenal did not start in this process (a sandbox created by the
CLI, seen later by ``arsenal serve``) still tells how it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "HOST",
    "BeamProcess",
    "LaunchError",
    "LaunchSpec",
    "elixir_code_paths",
    "OtpInstall",
    "owner_watchdog",
    "registered_with_epmd",
    "unique_alive",
]

HOST = socket.gethostname().split(".")[0]

# The literal area's super carrier is 1 GiB of address space by default; with an OS limit
# on the address space that reservation alone would fail, so nodes under a memory limit
# ask for 64 MiB (plenty for the literals of an application of sandbox size).
SMALL_LITERAL_CARRIER = ["+MIscs", "64"]


class LaunchError(RuntimeError):
    """The node could not be started, or did not become ready; the message carries its log's tail."""


def unique_alive(prefix: str) -> str:
    """``prefix_<6 hex>``: unique enough for nodes of one host, and a valid node name."""
    return f"{prefix}_{secrets.token_hex(3)}"


def registered_with_epmd(alive: str) -> bool:
    """Whether EPMD on this host lists ``alive`` (a node is registered before its start-up ran)."""
    out = subprocess.run(["epmd", "-names"], capture_output=True, text=True, check=False).stdout
    return f"name {alive} " in out


def elixir_code_paths() -> list[Path]:
    """The ``ebin`` directories of the installed Elixir (elixir, logger, eex, mix, ...), or ``[]``.

    Found from the ``elixir`` script's real location (``<root>/bin/elixir`` ->
    ``<root>/lib/*/ebin``), so a plain ``erl`` node can run Elixir code without the script.
    """
    script = shutil.which("elixir")
    if script is None:
        return []
    lib = Path(script).resolve().parent.parent / "lib"
    return sorted(path for path in lib.glob("*/ebin") if path.is_dir())


@dataclass(frozen=True)
class OtpInstall:
    """The Erlang/OTP (and Elixir) that runs the nodes Arsenal starts itself: this machine's own, or
    the one in another OS tree (``root``: a Debian root with another OTP release, as
    scripts/compat_roots.sh makes; ``ARSENAL_OTP_ROOT`` chooses one), run there under ``chroot``."""

    root: Path | None = None

    @classmethod
    def from_environment(cls) -> OtpInstall:
        root = os.environ.get("ARSENAL_OTP_ROOT")
        return cls(Path(root) if root else None)

    def release(self) -> str:
        """Its OTP release, ``"27"``."""
        if self.root is None:
            return _host_otp_release()
        releases = sorted(p.name for p in (self.root / "usr/lib/erlang/releases").glob("[0-9]*"))
        if not releases:
            raise LaunchError(f"{self.root} holds no Erlang/OTP (no usr/lib/erlang/releases/<N>)")
        return releases[-1]

    def elixir_code_paths(self) -> list[Path]:
        """The ebin directories of its Elixir, as this machine sees them (``[]`` without Elixir)."""
        if self.root is None:
            return elixir_code_paths()
        lib = self.root / "usr/lib/elixir/lib"
        return sorted(path for path in lib.glob("*/ebin") if path.is_dir())

    def holds(self, path: Path) -> bool:
        """Whether a node of this install can see ``path``."""
        return self.root is None or path.resolve().is_relative_to(self.root.resolve())

    def inside(self, path: Path | str) -> str:
        """``path`` as a node of this install sees it: relative to :attr:`root` when there is one."""
        if self.root is None:
            return str(path)
        return "/" + str(Path(path).resolve().relative_to(self.root.resolve()))


@functools.cache
def _host_otp_release() -> str:
    done = subprocess.run(
        ["erl", "-noshell", "-eval", "io:put_chars(erlang:system_info(otp_release)), halt()."],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise LaunchError(f"cannot read this machine's OTP release from `erl`: {done.stderr.strip()}")
    return done.stdout.strip()


def owner_watchdog(pid: int | None = None) -> list[str]:
    """``-eval`` arguments that halt the node once process ``pid`` (default: this one) is gone.

    Covers an owner killed with SIGKILL, which runs no clean-up. One check a second in a
    process of its own; only where ``/proc`` exists (Linux).
    """
    pid = pid or os.getpid()
    if not Path(f"/proc/{pid}").exists():
        return []
    expr = (
        f'P = "/proc/{pid}", '
        "spawn(fun W() -> timer:sleep(1000), "
        "case file:read_file_info(P) of {ok, _} -> W(); _ -> erlang:halt(1) end end)."
    )
    return ["-eval", expr]


@dataclass
class LaunchSpec:
    """How to start one node. ``cookie=None`` uses ``~/.erlang.cookie``, as ``erl`` does."""

    alive: str
    cookie: str | None = None
    code_paths: Sequence[Path] = ()
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    # resource.RLIMIT_* -> limit (or (soft, hard)), applied to the node's process before exec.
    rlimits: Mapping[int, int | tuple[int, int]] = field(default_factory=dict)
    # Where the wrapper writes the exit status ("137" for SIGKILL, as a shell reports it).
    exit_status_path: Path | None = None
    ready_marker: str | None = None
    cwd: Path | None = None
    program: str = "erl"
    # A long name, ``alive@host`` (``-name``), instead of the short ``alive@HOST`` (``-sname``).
    host: str | None = None
    # Another OS tree whose Erlang/OTP runs the node (a Debian root with another OTP release, as
    # scripts/compat_roots.sh makes): the node starts under ``chroot`` there, sharing this host's
    # network and EPMD. Paths given to it (code paths, cwd, environment values) must lie inside it.
    root: Path | None = None

    @property
    def node_name(self) -> str:
        return f"{self.alive}@{self.host or HOST}"

    def _name_args(self, dashes: str) -> list[str]:
        if self.host is None:
            return [f"{dashes}sname", self.alive]
        return [f"{dashes}name", self.node_name]

    def inside(self, path: Path | str) -> str:
        """``path`` as the node sees it: relative to :attr:`root` when it runs in one."""
        return OtpInstall(self.root).inside(path)

    def environment(self) -> dict[str, str]:
        """The environment variables to add, with paths into :attr:`root` as the node sees them."""
        if self.root is None:
            return dict(self.env)
        prefix = str(self.root.resolve()) + "/"
        return {k: self.inside(v) if v.startswith(prefix) else v for k, v in self.env.items()}

    def _in_root(self, command: list[str]) -> list[str]:
        if self.root is None:
            return command
        # chroot(1) changes directory to the new root; the node's own cwd is set inside it.
        cwd = self.inside(self.cwd) if self.cwd is not None else "/"
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        return [chroot, str(self.root), "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *command]

    def command(self) -> list[str]:
        command = [self.program]
        if self.program == "elixir":
            command += self._name_args("--")
            if self.cookie is not None:
                command += ["--cookie", self.cookie]
            for path in self.code_paths:
                command += ["-pa", self.inside(path)]
            command += list(self.args)
        else:
            command += [*self._name_args("-"), "-noshell", "-noinput"]
            if self.cookie is not None:
                command += ["-setcookie", self.cookie]
            for path in self.code_paths:
                command += ["-pa", self.inside(path)]
            if self.rlimits:
                command += SMALL_LITERAL_CARRIER
            command += list(self.args)
        command = self._in_root(command)
        if self.exit_status_path is None:
            return command
        # `exec` is not used on purpose: the shell stays to record how the node ended.
        return [
            "/bin/sh",
            "-c",
            'status=0; "$@" || status=$?; echo "$status" > "$0"',
            str(self.exit_status_path),
            *command,
        ]


def _limits_setter(rlimits: Mapping[int, int | tuple[int, int]]) -> Callable[[], None] | None:
    if not rlimits:
        return None
    items = [(kind, value if isinstance(value, tuple) else (value, value)) for kind, value in rlimits.items()]

    def apply() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        for kind, value in items:
            resource.setrlimit(kind, value)

    return apply


class BeamProcess:
    """A started node: its OS process group, its log, and how it ended."""

    def __init__(self, spec: LaunchSpec, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.spec = spec
        self.proc = proc
        self.log_path = log_path

    @property
    def alive(self) -> str:
        return self.spec.alive

    @property
    def name(self) -> str:
        return self.spec.node_name

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, spec: LaunchSpec) -> BeamProcess:
        """Start the node (without waiting for it): its own session, output to the log file."""
        log_path = spec.log_path or Path(os.environ.get("ARSENAL_NODE_LOGS", "/tmp/arsenal-nodes")) / (
            f"{spec.alive}.log"
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    spec.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, **spec.environment()},
                    cwd=spec.cwd,
                    preexec_fn=_limits_setter(spec.rlimits),
                )
        except OSError as exc:
            raise LaunchError(f"cannot start {spec.program}: {exc}; is Erlang/OTP installed?") from None
        return cls(spec, proc, log_path)

    def log_tail(self, size: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    def _ready(self) -> bool:
        if self.spec.ready_marker is not None and self.spec.ready_marker not in self.log_tail(1_000_000):
            return False
        return registered_with_epmd(self.alive)

    def _check_running(self) -> None:
        if self.proc.poll() is not None:
            raise LaunchError(
                f"node {self.alive} exited at start (status {self.proc.returncode}):\n{self.log_tail()}"
            )

    def wait_ready(self, timeout: float = 60.0, poll: float = 0.05) -> BeamProcess:
        """Block until EPMD knows the node (and its ready marker is in the log); kill it on failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            if self._ready():
                return self
            time.sleep(poll)
        self.kill()
        raise LaunchError(f"node {self.alive} was not ready within {timeout:g}s:\n{self.log_tail()}")

    async def wait_exit(self, timeout: float | None = None) -> int | None:
        """Wait (without blocking the loop) for the process to end; its status, or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (the way a crash looks to the node's peers)."""
        kill_group(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def wait_unregistered(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while registered_with_epmd(self.alive) and time.monotonic() < deadline:
            time.sleep(0.05)


def kill_group(pid: int) -> bool:
    """SIGKILL process group ``pid`` (a node started by :class:`BeamProcess`); False if it was gone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pid: int) -> bool:
    """Whether any process of group ``pid`` still runs (zombies waiting to be reaped do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pid) and fields[0] not in ("Z", "X"):
            return True
    return False
