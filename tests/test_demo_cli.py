"""`arsenal demo`: builds the Elixir demo, starts it as a node, attaches, and says how to reach it."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
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
        started = arsenal("demo", "--no-serve")
        assert started.returncode == 0, started.stdout + started.stderr
        node = f"{name}@{HOST}"
        assert "The demo node is up" in started.stdout and node in started.stdout
        assert (tmp_path / ".erlang.cookie").exists()

        # As the issue asks: no cookie flag needed, the demo uses ~/.erlang.cookie.
        top = arsenal("ps", "--node", node, "--sort", "memory", "--limit", "10")
        assert top.returncode == 0, top.stderr
        assert "of" in top.stdout and "processes by memory" in top.stdout

        again = arsenal("demo", "--no-serve")  # already running: attaches to it, starts no other
        assert again.returncode == 0, again.stderr
        # By default it stays, serving the API for the demo node.
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "arsenal.cli.main", "demo", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            made = arsenal("keys", "create", "--role", "viewer", "--json")
            assert made.returncode == 0, made.stderr
            key = json.loads(made.stdout)["key"]
            body = _get_when_up(f"http://127.0.0.1:{port}/api/v1/processes?limit=3", key)
            assert len(json.loads(body)["data"]["processes"]) == 3
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        stopped = arsenal("demo", "--stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    for _ in range(100):
        if not registered_with_epmd(name):
            break
        time.sleep(0.1)
    assert not registered_with_epmd(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_when_up(url: str, key: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    for _ in range(300):
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")
