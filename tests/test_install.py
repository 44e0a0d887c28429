"""Arsenal as a user installs it: the packages built from the checkout, the wheel installed into a
clean virtual environment outside it, and the installed ``arsenal`` run from elsewhere — against a
real node, serving its dashboard, and starting the demo from the sources the wheel carries."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .compat import OtpTarget, otp_targets
from .nodes import ROOT, BeamNode, registered_with_epmd, unique_name

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed: it builds the packages"),
]


@dataclass(frozen=True)
class Installed:
    """A wheel installed in a venv of its own, and a directory outside the checkout to run it in."""

    venv: Path
    package: Path  # the installed ``arsenal`` package
    cwd: Path
    sdist: Path

    def env(self, **extra: str) -> dict[str, str]:
        outside = ("VIRTUAL_ENV", "PYTHON", "ARSENAL_")  # nothing of the checkout's environment
        env = {key: value for key, value in os.environ.items() if not key.startswith(outside)}
        env.update(ARSENAL_HOME=str(self.cwd / "arsenal-home"), **extra)
        return env

    def arsenal(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run("arsenal", *args, timeout=timeout, **env)

    def python(self, code: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.run("python", "-c", code, timeout=timeout)

    def run(self, program: str, *args: str, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
        """A program of the venv, run outside the checkout with none of its environment."""
        return subprocess.run(
            [str(self.venv / "bin" / program), *args],
            cwd=self.cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(built: None, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        _run(str(ROOT / "scripts" / "build_web.sh"), cwd=ROOT)
    base = tmp_path_factory.mktemp("install")
    dist = base / "dist"
    # Both packages, the wheel built from the sdist (what `uv build` and pip do).
    _run("uv", "build", "--out-dir", str(dist), str(ROOT), cwd=base)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    venv = base / "venv"
    _run("uv", "venv", "--quiet", "--python", sys.executable, str(venv), cwd=base)
    _run("uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel), cwd=base)
    (package,) = (venv / "lib").glob("python3*/site-packages/arsenal")
    cwd = base / "elsewhere"
    cwd.mkdir()
    return Installed(venv, package, cwd, sdist)


def test_the_packages_carry_the_agent_builds_dashboard_and_demo(installed: Installed) -> None:
    manifests = sorted(installed.package.glob("agent/ebin/**/manifest.json"))
    assert manifests, "no agent build in the wheel"
    built = sorted((ROOT / "src/arsenal/agent/ebin").glob("**/manifest.json"))
    assert [m.relative_to(installed.package / "agent/ebin") for m in manifests] == [
        m.relative_to(ROOT / "src/arsenal/agent/ebin") for m in built
    ]
    for manifest in manifests:
        modules = json.loads(manifest.read_text())["modules"]
        assert all((manifest.parent / f"{module}.beam").is_file() for module in modules)
    assert (installed.package / "web/static/index.html").is_file()
    assert (installed.package / "_demo/elixir/mix.exs").is_file()
    assert sorted(p.name for p in (installed.package / "_demo/erlang").glob("*.erl")) == sorted(
        p.name for p in (ROOT / "demo/erlang").glob("*.erl")
    )
    assert not [*installed.package.glob("_demo/**/_build"), *installed.package.glob("_demo/**/*.beam")]

    with tarfile.open(installed.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert "web/dist/index.html" in names and "demo/elixir/mix.exs" in names
    assert {str(m.relative_to(ROOT)) for m in built} <= names
    assert not any(name.startswith("web/node_modules/") for name in names)


def test_the_installed_package_is_the_one_that_runs(installed: Installed) -> None:
    code = "import arsenal, arsenal.demo as d; print(arsenal.__file__); print(d.demo_source('elixir'))"
    done = installed.python(code)
    assert done.returncode == 0, done.stderr
    module, demo = (Path(line) for line in done.stdout.split())
    assert module.is_relative_to(installed.package) and demo == installed.package / "_demo" / "elixir"
    assert installed.arsenal("--help").returncode == 0


def test_ps_from_the_wheel_against_a_real_node(installed: Installed, erl: BeamNode, cookie: str) -> None:
    done = installed.arsenal(
        "ps", "--node", erl.name, "--sort", "memory", "--limit", "5", "--json", ARSENAL_COOKIE=cookie
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["node"] == erl.name and data["process_count"] > 20
    assert len(data["processes"]) == 5 and data["processes"][0]["registered_name"] == "demo_big_state"
    assert all(row["pid"].startswith("<0.") for row in data["processes"])


@pytest.mark.parametrize(
    "target", [t for t in otp_targets() if t.root is not None], ids=lambda t: f"otp{t.release}"
)
def test_ps_from_the_wheel_on_other_otp_lines(installed: Installed, target: OtpTarget, cookie: str) -> None:
    """A plain node of each other OTP release (a Debian root's): the wheel picks its agent build."""
    node = BeamNode(unique_name(f"wheel{target.release}"), cookie, root=target.root).start()
    try:
        done = installed.arsenal("ps", "--node", node.name, "--limit", "3", "--json", ARSENAL_COOKIE=cookie)
    finally:
        node.kill()
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["node"] == node.name and len(data["processes"]) == 3 and data["process_count"] > 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, key: str | None = None) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
        return answer.status, answer.headers.get("content-type", ""), answer.read()


def _wait_until_up(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _get(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def server(installed: Installed, erl: BeamNode, cookie: str) -> Iterator[str]:
    port = _free_port()
    log = (installed.cwd / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(installed.venv / "bin" / "arsenal"), "serve", "--node", erl.name, "--port", str(port)],
        cwd=installed.cwd,
        env=installed.env(ARSENAL_COOKIE=cookie),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_serve_from_the_wheel_serves_the_dashboard_and_the_api(
    installed: Installed, server: str, erl: BeamNode
) -> None:
    _wait_until_up(server + "/favicon.svg")
    status, kind, page = _get(server + "/")
    assert status == 200 and kind.startswith("text/html")
    html = page.decode()
    scripts = re.findall(r'src="(/assets/[^"]+\.js)"', html)
    assert scripts, html
    status, kind, script = _get(server + scripts[0])
    assert status == 200 and "javascript" in kind
    assert script == (installed.package / "web/static" / scripts[0].lstrip("/")).read_bytes()

    made = installed.arsenal("keys", "create", "--role", "viewer", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    _, _, body = _get(server + "/api/v1/processes?limit=3", key)
    assert len(json.loads(body)["data"]["processes"]) == 3
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(server + "/api/v1/processes?limit=3")
    assert refused.value.code == 401


def test_demo_from_the_wheel_builds_outside_the_package_and_runs(installed: Installed) -> None:
    name = f"wheeldemo_{secrets.token_hex(3)}"
    home = installed.cwd / "home"
    home.mkdir(exist_ok=True)
    # A home of its own: the demo makes ~/.erlang.cookie there, as erl would.
    env = {"HOME": str(home), "ARSENAL_DEMO_NAME": name}
    try:
        started = installed.arsenal("demo", "--no-serve", timeout=180, **env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "The demo node is up" in started.stdout
        top = installed.arsenal("ps", "--node", name, "--limit", "1000", "--json", **env)
        assert top.returncode == 0, top.stderr
        names = {row["registered_name"] for row in json.loads(top.stdout)["processes"]}
        assert any(n and n.startswith("ArsenalDemo.") for n in names), names
    finally:
        stopped = installed.arsenal("demo", "--stop", **env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    app = installed.cwd / "arsenal-home/demo/_build/dev/lib/arsenal_demo/ebin/arsenal_demo.app"
    assert app.is_file()
    assert not list(installed.package.glob("_demo/**/_build"))  # nothing written into the package
    for _ in range(100):
        if not registered_with_epmd(name):
            break
        time.sleep(0.1)
    assert not registered_with_epmd(name)


def test_the_demo_build_is_reused_until_its_sources_change(installed: Installed) -> None:
    def build() -> Path:
        done = installed.python("from arsenal.demo import DemoNode; print(DemoNode().build())")
        assert done.returncode == 0, done.stderr
        return Path(done.stdout.strip()) / "arsenal_demo.app"

    app = build()
    made = app.stat().st_mtime_ns
    assert build().stat().st_mtime_ns == made  # nothing changed: not built again
    source = installed.package / "_demo/elixir/lib/arsenal_demo.ex"
    source.write_text(source.read_text() + "\n# changed\n")
    assert build().stat().st_mtime_ns != made
