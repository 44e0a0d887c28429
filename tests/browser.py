"""The dashboard's browser tests' fixtures: a real ``arsenal serve`` on a demo node of its own,
and Debian's Chromium driven by Playwright (the Python package, pointed at the system browser).

``tests/conftest.py`` loads this module as a plugin, so every test module has the fixture. Each
test gets a fresh browser context, logged in as an admin unless it asks otherwise; an uncaught
error in the page fails the test. ``shot(page, name)`` saves a screenshot to
``artifacts/screenshots`` (the README shows copies from ``docs/screenshots``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .nodes import ROOT, BeamNode, elixir_demo_node, erl_node

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# Chromium as root in a closed network: no sandbox (root), no background calls home (they are
# refused here, many at a time, and slow the start).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1440, "height": 900}  # a laptop screen


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Dashboard:
    """A running ``arsenal serve`` with the dashboard, and the nodes it serves."""

    url: str
    env: dict[str, str]
    node: BeamNode  # the Elixir demo (the default node)
    erl: BeamNode  # a plain-Erlang demo node, the second in the switcher
    admin_key: str
    process: subprocess.Popen[bytes]
    keys: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=self.env
        )

    def make_key(self, role: str, name: str | None = None) -> dict[str, str]:
        made = self.cli("keys", "create", "--role", role, "--name", name or f"web-{role}", "--json")
        assert made.returncode == 0, made.stderr
        return json.loads(made.stdout)

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def dashboard(built: None, cookie: str) -> Iterator[Dashboard]:
    if not (ROOT / "web/dist/index.html").exists():
        subprocess.run([str(ROOT / "scripts/build_web.sh")], check=True)
    node = elixir_demo_node(cookie=cookie, alive="webdemo_" + os.urandom(3).hex()).start()
    erl = erl_node("weberl", cookie=cookie, demo=True).start()
    home = Path(tempfile.mkdtemp(prefix="arsenal-web-home-"))
    env = {**os.environ, "ARSENAL_HOME": str(home), "ARSENAL_COOKIE": cookie}
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "arsenal.cli.main",
            "keys",
            "create",
            "--role",
            "admin",
            "--name",
            "web-admin",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    port = _free_port()
    log = open(home / "serve.log", "wb")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arsenal.cli.main",
            "serve",
            "--node",
            node.name,
            "--node",
            erl.name,
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, key, server, home)
        yield Dashboard(url=url, env=env, node=node, erl=erl, admin_key=key, process=server)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        node.kill()
        erl.kill()


def _wait_for(url: str, key: str, server: subprocess.Popen[bytes], home: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"arsenal serve exited: {(home / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(
                f"{url}/api/v1/nodes", headers={"Authorization": f"Bearer {key}"}, timeout=2
            ).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("arsenal serve did not answer within 90 s")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium for one test module. Not for the whole session: Playwright's sync API keeps its
    event loop current while it runs, and asyncio tests of a later module would find it there."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium: `make test` installs it as root (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # The pages wait on real nodes, on a machine that may be busy: expectations wait as long as
    # actions do (they still pass the moment the condition holds).
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class PageErrors(list[str]):
    """Uncaught errors in the page: any is a failure, whatever the test checked."""


@pytest.fixture
def anonymous_page(browser, dashboard: Dashboard) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh, logged-out page at the dashboard."""
    context = browser.new_context(viewport=VIEWPORT, base_url=dashboard.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(anonymous_page, dashboard: Dashboard) -> object:  # type: ignore[no-untyped-def]
    """A page logged in with the admin key, on the dashboard."""
    log_in(anonymous_page, dashboard.admin_key)
    return anonymous_page


def log_in(page, key: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="pages").wait_for()


def shot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save a screenshot of the page as it is now (artifacts/screenshots/NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
