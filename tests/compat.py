"""The OTP releases the compatibility suite runs against: this machine's own, and each Debian root
made by scripts/compat_roots.sh (trixie: OTP 27 / Elixir 1.18, sid: OTP 29 / Elixir 1.20).

A node in a root runs under ``chroot`` and shares this machine's network and EPMD, so Arsenal
attaches to it as to any local node. What it runs (the test-support module, the demos) is compiled
by the root's own compilers in a scratch directory inside the root, removed afterwards: a root
never has anything mounted inside it, so removing files there is safe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from arsenal.sandbox.launcher import LaunchError, OtpInstall

from .nodes import DEMO_EX_DIR, ROOT, BeamNode, unique_name

__all__ = ["COMPAT_ROOTS", "OtpTarget", "Workspace", "otp_targets", "required"]

COMPAT_ROOTS = Path(os.environ.get("ARSENAL_COMPAT_ROOTS", Path.home() / ".cache/arsenal/roots"))
# `make test` sets this after building the roots: then a missing root is a failure, not a skip.
required = os.environ.get("ARSENAL_COMPAT") == "required"
SUITES = ("bookworm", "trixie", "sid")
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@dataclass(frozen=True)
class OtpTarget:
    """One OTP release to test against: this machine's (``root is None``) or a Debian root's."""

    release: str
    root: Path | None

    @property
    def id(self) -> str:
        where = "host" if self.root is None else self.root.name
        return f"otp{self.release}-{where}"

    def run(self, *command: str, cwd: str = "/", timeout: float = 300) -> str:
        """A command with this target's tools (``erlc``, ``mix``), its output; fails loudly."""
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "MIX_ENV": "dev"}
        env["HEX_OFFLINE"] = "1"
        if self.root is None:
            argv, env = list(command), {**os.environ, **env, "PATH": os.environ["PATH"]}
        else:
            argv = [CHROOT, str(self.root), "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *command]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=cwd if self.root is None else None)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed on {self.id}:\n{done.stdout}{done.stderr}")
        return done.stdout


def _root_release(root: Path) -> str | None:
    """The OTP release of a root that has both Erlang and Elixir, else None."""
    if not (root / "usr/bin/elixir").exists():
        return None
    try:
        return OtpInstall(root).release()
    except LaunchError:
        return None


@cache
def otp_targets() -> list[OtpTarget]:
    """This machine's OTP, then one root per other release (a release already covered is skipped)."""
    targets = [OtpTarget(OtpInstall().release(), None)]
    for suite in SUITES:
        root = COMPAT_ROOTS / suite
        release = _root_release(root) if root.is_dir() else None
        if release is not None and release not in {t.release for t in targets}:
            targets.append(OtpTarget(release, root))
    return targets


class Workspace:
    """A scratch directory inside a target (in a root, under its /tmp) holding what its nodes run,
    compiled by that target's own compilers: the test-support module and both demos."""

    def __init__(self, target: OtpTarget) -> None:
        self.target = target
        base = (target.root / "tmp") if target.root is not None else None
        self.path = Path(tempfile.mkdtemp(prefix="arsenal-compat-", dir=base))
        self.support_ebin = self.path / "support"
        self.demo_erl_ebin = self.path / "demo_erl"
        self.demo_ex = self.path / "demo_ex"

    def inside(self, path: Path) -> str:
        """``path`` as the target sees it."""
        return OtpInstall(self.target.root).inside(path)

    def build(self) -> Workspace:
        for out, sources in (
            (self.support_ebin, ROOT / "tests/erlang"),
            (self.demo_erl_ebin, ROOT / "demo/erlang"),
        ):
            out.mkdir()
            for source in sources.glob("*.erl"):
                shutil.copy(source, out)
            self.target.run("sh", "-c", "erlc -o . *.erl", cwd=self.inside(out))
        shutil.copytree(DEMO_EX_DIR, self.demo_ex, ignore=shutil.ignore_patterns("_build", "deps"))
        self.target.run("mix", "compile", cwd=self.inside(self.demo_ex))
        return self

    @property
    def demo_ex_ebin(self) -> Path:
        return self.demo_ex / "_build" / "dev" / "lib" / "arsenal_demo" / "ebin"

    def erl_demo_node(self, cookie: str) -> BeamNode:
        """The plain-Erlang demo tree plus the test-support module, on this target's OTP."""
        return BeamNode(
            unique_name(f"compat{self.target.release}"),
            cookie,
            ["-s", "arsenal_demo_erl", "start", "-eval", 'io:format("ERL_DEMO_READY~n")'],
            code_paths=[self.support_ebin, self.demo_erl_ebin],
            ready_marker="ERL_DEMO_READY",
            root=self.target.root,
        )

    def elixir_demo_node(self, cookie: str) -> BeamNode:
        from arsenal.demo import READY_EXPR, READY_MARKER

        return BeamNode(
            unique_name(f"compatex{self.target.release}"),
            cookie,
            ["-e", READY_EXPR, "--no-halt"],
            code_paths=[self.demo_ex_ebin],
            ready_marker=READY_MARKER,
            program="elixir",
            root=self.target.root,
        )

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def workspace(target: OtpTarget) -> Iterator[Workspace]:
    space = Workspace(target)
    try:
        yield space.build()
    finally:
        space.remove()
