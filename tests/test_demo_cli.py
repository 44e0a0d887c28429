"""`arsenal demo`: builds the Elixir demo, starts it as a node, attaches, and says how to reach it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .nodes import HOST, registered_with_epmd

pytestmark = pytest.mark.timeout(240)


def test_demo_starts_a_node_that_ps_reaches_then_stops(tmp_path: Path) -> None:
    name = f"demo_{secrets.token_hex(3)}"
    # A home of its own: the demo creates ~/.erlang.cookie there, as erl would.
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "ARSENAL_HOME": str(tmp_path / "arsenal"),
        "ARSENAL_DEMO_NAME": name,
    }
    env.pop("ARSENAL_COOKIE", None)

    def arsenal(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arsenal.cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )

    try:
        started = arsenal("demo")
        assert started.returncode == 0, started.stdout + started.stderr
        node = f"{name}@{HOST}"
        assert "The demo node is up" in started.stdout and node in started.stdout
        assert (tmp_path / ".erlang.cookie").exists()

        # As the issue asks: no cookie flag needed, the demo uses ~/.erlang.cookie.
        top = arsenal("ps", "--node", node, "--sort", "memory", "--limit", "10")
        assert top.returncode == 0, top.stderr
        assert "of" in top.stdout and "processes by memory" in top.stdout

        again = arsenal("demo")  # already running: attaches to it instead of starting another
        assert again.returncode == 0, again.stderr
    finally:
        stopped = arsenal("demo", "--stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    for _ in range(100):
        if not registered_with_epmd(name):
            break
        time.sleep(0.1)
    assert not registered_with_epmd(name)
