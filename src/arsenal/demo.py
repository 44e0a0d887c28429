"""The bundled demo: an Elixir OTP application, built with ``mix`` and run as a node.

The node uses ``~/.erlang.cookie`` like any ``erl``/``elixir`` started by hand
(created the way ``erl`` creates it when missing), so ``arsenal ps --node
arsenal_demo@host`` reaches it with no extra flag. The sources come with Arsenal (the wheel
carries them as ``arsenal/_demo``; a checkout has them in ``demo/``). They are copied, built
and logged under ``$ARSENAL_HOME/demo`` (default ``~/.arsenal/demo``), so a read-only install
works, and a build is reused until the sources or the Erlang/Elixir on PATH change.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sandbox.launcher import HOST, BeamProcess, LaunchError, LaunchSpec, kill_group

__all__ = [
    "READY_EXPR",
    "READY_MARKER",
    "DemoError",
    "DemoNode",
    "arsenal_home",
    "build_is_current",
    "demo_source",
    "ensure_erlang_cookie",
    "mark_build_current",
    "source_fingerprint",
    "start_demo_cluster",
]

DEMO_APP = "arsenal_demo"
READY_MARKER = "ARSENAL_DEMO_READY"
# EPMD knows the node before its application has started: the node prints this once it has.
READY_EXPR = f'{{:ok, _}} = Application.ensure_all_started(:{DEMO_APP}); IO.puts("{READY_MARKER}")'


class DemoError(Exception):
    """The demo could not be built, started or stopped; the message says why."""


def arsenal_home() -> Path:
    return Path(os.environ.get("ARSENAL_HOME", Path.home() / ".arsenal"))


def ensure_erlang_cookie() -> Path:
    """``~/.erlang.cookie``, created (20 random capitals, mode 0400) if missing, as ``erl`` does."""
    path = Path.home() / ".erlang.cookie"
    if not path.exists():
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        path.write_text("".join(secrets.choice(alphabet) for _ in range(20)))
        path.chmod(0o400)
    return path


def demo_source(kind: str = "elixir") -> Path:
    """A demo's source (``elixir`` or ``erlang``): shipped in the wheel, or in the checkout."""
    packaged = Path(__file__).parent / "_demo" / kind
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "demo" / kind
    if checkout.is_dir():
        return checkout
    raise DemoError(f"the {kind} demo's source is not installed with this copy of Arsenal")


_BUILD_OUTPUTS = frozenset({"_build", "deps", "ebin"})


def _source_files(source: Path) -> list[Path]:
    return sorted(
        path
        for path in source.rglob("*")
        if path.is_file() and not _BUILD_OUTPUTS.intersection(path.relative_to(source).parts)
    )


def _toolchain(tools: tuple[str, ...]) -> str:
    """Which compilers build it: where each tool really is and when it was installed."""
    parts = []
    for tool in tools:
        found = shutil.which(tool)
        real = Path(os.path.realpath(found)) if found else None
        parts.append(f"{tool}={real}:{real.stat().st_mtime_ns if real else 0}")
    return ";".join(parts)


def source_fingerprint(source: Path, tools: tuple[str, ...]) -> str:
    """A digest of every source file (name and content) and of the compilers on PATH."""
    digest = hashlib.sha256(_toolchain(tools).encode())
    for path in _source_files(source):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_is_current(stamp: Path, fingerprint: str) -> bool:
    """The build beside ``stamp`` was made from exactly these sources and compilers."""
    try:
        return stamp.read_text() == fingerprint
    except OSError:
        return False


def mark_build_current(stamp: Path, fingerprint: str) -> None:
    stamp.write_text(fingerprint)


def _copy_sources(source: Path, target: Path) -> None:
    """A writable copy of the sources to build in (an installed package may be read-only)."""
    if target.exists():
        shutil.rmtree(target)
    for path in _source_files(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


@dataclass
class DemoNode:
    """The demo node's files and process."""

    name: str = field(default_factory=lambda: os.environ.get("ARSENAL_DEMO_NAME", DEMO_APP))
    home: Path | None = None

    def __post_init__(self) -> None:
        self.home = self.home or arsenal_home() / "demo"
        self.build_dir = self.home / "_build"
        self.src_dir = self.home / "src"
        self.stamp = self.home / "build.stamp"
        self.log_file = self.home / "node.log"
        self.pid_file = self.home / "node.pid"

    @property
    def node_name(self) -> str:
        return f"{self.name}@{HOST}"

    @property
    def ebin(self) -> Path:
        return self.build_dir / "dev" / "lib" / DEMO_APP / "ebin"

    def build(self) -> Path:
        """Compile the demo with ``mix`` (no Hex packages), unless the last build is still
        current; return its ebin directory."""
        for tool in ("mix", "elixir", "erl"):
            if shutil.which(tool) is None:
                raise DemoError(
                    f"`{tool}` is not installed; `make demo` installs Erlang and Elixir, "
                    "or install them yourself (Debian: apt-get install erlang-nox elixir)"
                )
        source = demo_source("elixir")
        fingerprint = source_fingerprint(source, ("mix", "elixir", "erl"))
        if build_is_current(self.stamp, fingerprint) and (self.ebin / f"{DEMO_APP}.app").is_file():
            return self.ebin
        self.home.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        # Built again from scratch: mix judges staleness by dates, which a copy does not change.
        self.stamp.unlink(missing_ok=True)
        shutil.rmtree(self.build_dir, ignore_errors=True)
        _copy_sources(source, self.src_dir)
        self._mix_compile()
        mark_build_current(self.stamp, fingerprint)
        return self.ebin

    def _mix_compile(self) -> None:
        env = {
            **os.environ,
            "MIX_ENV": "dev",
            "MIX_BUILD_PATH": str(self.build_dir / "dev"),
            "HEX_OFFLINE": "1",
        }
        done = subprocess.run(
            ["mix", "compile"], cwd=self.src_dir, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DemoError(f"building the demo failed:\n{done.stdout}\n{done.stderr}")

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def start(self, timeout: float = 60.0) -> str:
        """Build and start the node (unless it runs already); return its name.

        The node runs in a session of its own, so it stays after the command that
        started it exits; its pid (the leader of its process group) goes to the pid file.
        """
        if self.running_pid() is not None:
            return self.node_name
        ebin = self.build()
        ensure_erlang_cookie()
        spec = LaunchSpec(
            alive=self.name,
            program="elixir",
            code_paths=[ebin],
            args=["-e", READY_EXPR, "--no-halt"],
            log_path=self.log_file,
            ready_marker=READY_MARKER,
        )
        try:
            process = BeamProcess.start(spec)
        except LaunchError as exc:
            raise DemoError(str(exc)) from None
        self.pid_file.write_text(str(process.pid))
        try:
            process.wait_ready(timeout)
        except LaunchError as exc:  # the node is killed by then
            self.pid_file.unlink(missing_ok=True)
            raise DemoError(f"the demo node did not start: {exc}\nSee {self.log_file}") from None
        return self.node_name

    def stop(self) -> bool:
        """Stop the node; True if one was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            if self.running_pid() is None:
                break
            time.sleep(0.1)
        else:
            kill_group(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def start_demo_cluster(size: int, timeout: float = 60.0) -> Any:
    """A local cluster of ``size`` meshed demo nodes (``arsenal demo --cluster N``): the Elixir demo
    on the first, the plain-Erlang demo tree on the others, all with ``~/.erlang.cookie``. Blocks
    until meshed; the nodes halt when this process exits (kill them sooner with ``kill_all``)."""
    import asyncio

    from .cluster.local import ClusterError, LocalCluster

    ensure_erlang_cookie()
    cluster = LocalCluster(
        size, prefix=DEMO_APP, elixir_ebin=DemoNode().build(), log_dir=arsenal_home() / "demo"
    )

    async def start() -> None:
        await cluster.start(timeout)
        await cluster.disconnect()  # its connections belong to this event loop only

    try:
        asyncio.run(start())
    except ClusterError as exc:
        raise DemoError(str(exc)) from None
    return cluster
