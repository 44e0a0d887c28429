"""Starting and stopping real BEAM nodes for the tests (no mocks of a node, ever)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_ERL_EBIN = ROOT / "demo" / "erlang" / "ebin"
DEMO_EX_DIR = ROOT / "demo" / "elixir"
TEST_SUPPORT_EBIN = ROOT / "tests" / "erlang" / "ebin"
HOST = socket.gethostname().split(".")[0]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def registered_with_epmd(alive: str) -> bool:
    out = subprocess.run(["epmd", "-names"], capture_output=True, text=True, check=False).stdout
    return f"name {alive} " in out


@dataclass
class BeamNode:
    """A node started as an OS process in its own session, so the whole group can be killed."""

    alive: str
    cookie: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_marker: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.alive}@{HOST}"

    def start(self, timeout: float = 60.0) -> BeamNode:
        log_dir = Path(os.environ.get("ARSENAL_TEST_LOGS", "/tmp/arsenal-test-nodes"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.alive}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.alive} exited at start:\n{self.log_path.read_text()[-2000:]}")
            if registered_with_epmd(self.alive) and self._ready():
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"node {self.alive} did not register with EPMD in {timeout}s")

    def _ready(self) -> bool:
        if self.ready_marker is None:
            return True
        return self.log_path is not None and self.ready_marker in self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the node's whole process group (the way a crash looks to its peers)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def wait_unregistered(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while registered_with_epmd(self.alive) and time.monotonic() < deadline:
            time.sleep(0.05)


def erl_node(
    prefix: str = "t",
    *,
    cookie: str,
    demo: bool = False,
    extra: list[str] | None = None,
    alive: str | None = None,
) -> BeamNode:
    """A plain ``erl`` node; with ``demo=True`` it runs the plain-Erlang demo tree."""
    alive = alive or unique_name(prefix)
    command = [
        "erl",
        "-sname",
        alive,
        "-setcookie",
        cookie,
        "-noshell",
        "-noinput",
        "-pa",
        str(TEST_SUPPORT_EBIN),
    ]
    if demo:
        command += ["-pa", str(DEMO_ERL_EBIN), "-s", "arsenal_demo_erl", "start"]
    command += extra or []
    return BeamNode(alive, cookie, command)


from arsenal.demo import READY_EXPR, READY_MARKER  # noqa: E402


def elixir_demo_node(*, cookie: str, alive: str | None = None) -> BeamNode:
    alive = alive or unique_name("exdemo")
    ebin = DEMO_EX_DIR / "_build" / "dev" / "lib" / "arsenal_demo" / "ebin"
    command = [
        "elixir",
        "--sname",
        alive,
        "--cookie",
        cookie,
        "-pa",
        str(ebin),
        "-e",
        READY_EXPR,
        "--no-halt",
    ]
    return BeamNode(alive, cookie, command, ready_marker=READY_MARKER)
