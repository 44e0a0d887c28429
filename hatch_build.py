"""Puts the built products in Arsenal's packages: the agent's builds, the dashboard and the demo.

They are made by ``make setup`` (and ignored by git), so a package build picks them up here:

- the wheel carries ``src/arsenal/agent/ebin/`` whole (every OTP line's build and manifest),
  ``web/dist/`` as ``arsenal/web/static/`` and the demo's sources as ``arsenal/_demo/``;
- the sdist carries the built agent and dashboard at their places in the checkout (the demo's
  sources are in it anyway), so a wheel built from the sdist carries them too.

A package without them would install an Arsenal that cannot attach or serve its dashboard,
so a missing product stops the build and says which ``make`` target makes it. Editable
installs (``uv sync``) read everything from the checkout and need none of this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

AGENT_EBIN = "src/arsenal/agent/ebin"
DASHBOARD = "web/dist"
DEMO = "demo"
# Build outputs inside the demo's tree: made again from the sources wherever the demo runs.
DEMO_SKIPPED = frozenset({"_build", "ebin", "deps", "mix_home", "erl_crash.dump", ".elixir_ls"})


class BuildError(RuntimeError):
    """A product the package must carry has not been built."""


def _require(root: Path, relative: str, marker: str, make_target: str) -> Path:
    """``root/relative``, which must hold ``marker`` (a glob, searched recursively)."""
    path = root / relative
    if not path.is_dir() or not any(path.rglob(marker)):
        raise BuildError(
            f"{relative}/ has no {marker}: build it first with `make {make_target}` (or `make setup`)"
        )
    return path


def _check_agent_builds(ebin: Path) -> None:
    """Every build's manifest names only modules that are there: no half-made build ships."""
    for manifest in ebin.rglob("manifest.json"):
        modules = json.loads(manifest.read_text()).get("modules", {})
        missing = sorted(name for name in modules if not (manifest.parent / f"{name}.beam").is_file())
        if missing:
            raise BuildError(
                f"{manifest.parent} lacks {', '.join(missing)} that its manifest names: "
                "build the agent again with `make agent`"
            )


def _demo_sources(root: Path) -> list[Path]:
    """Every file of the demo's tree but its build outputs."""
    demo = root / DEMO
    files = [
        path
        for path in sorted(demo.rglob("*"))
        if path.is_file() and not DEMO_SKIPPED.intersection(path.relative_to(demo).parts)
    ]
    if not files:
        raise BuildError(f"{DEMO}/ is missing: the demo's sources are part of the checkout")
    return files


def wheel_contents(root: Path) -> dict[str, str]:
    """Source path -> path in the wheel, for the built products and the demo's sources."""
    agent = _require(root, AGENT_EBIN, "manifest.json", "agent")
    _check_agent_builds(agent)
    dashboard = _require(root, DASHBOARD, "index.html", "web")
    contents = {str(agent): "arsenal/agent/ebin", str(dashboard): "arsenal/web/static"}
    for path in _demo_sources(root):
        contents[str(path)] = f"arsenal/_demo/{path.relative_to(root / DEMO).as_posix()}"
    return contents


def sdist_contents(root: Path) -> dict[str, str]:
    """Source path -> path in the sdist: the built products where the checkout has them."""
    agent = _require(root, AGENT_EBIN, "manifest.json", "agent")
    _check_agent_builds(agent)
    dashboard = _require(root, DASHBOARD, "index.html", "web")
    return {str(agent): AGENT_EBIN, str(dashboard): DASHBOARD}


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        contents = wheel_contents(root) if self.target_name == "wheel" else sdist_contents(root)
        build_data["force_include"].update(contents)
