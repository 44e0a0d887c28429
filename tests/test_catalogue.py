"""The catalogue: generated docs are current, definitions are consistent, the scaffold works."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from arsenal.ops.catalogue import render_catalogue
from arsenal.ops.registry import registry

from .nodes import ROOT


def test_docs_operations_md_is_generated_from_the_registry() -> None:
    current = (ROOT / "docs/operations.md").read_text()
    assert current == render_catalogue(), "docs/operations.md is out of date: run `arsenal docs`"


def test_every_route_is_unique_and_every_operation_documented() -> None:
    registry.discover()
    routes: dict[tuple[str, str], str] = {}
    for op in registry.all():
        info = op.describe()
        key = (info["method"], info["path"])
        assert key not in routes, f"{op.name} and {routes[key]} share {key}"
        routes[key] = op.name
        assert op.summary and op.cost and op.risk
        # Every {placeholder} in a route names a parameter REST can fill from the path.
        for placeholder in re.findall(r"{(\w+)}", info["path"]):
            assert placeholder in op.params.model_fields, f"{op.name}: {{{placeholder}}} is no parameter"


@pytest.mark.timeout(180)
def test_new_operation_scaffolds_a_working_operation_and_test() -> None:
    name = "scaffolded_probe_op"
    module = ROOT / "src/arsenal/ops" / f"{name}.py"
    test = ROOT / "tests" / f"test_op_{name}.py"
    try:
        made = subprocess.run(
            [sys.executable, "-m", "arsenal", "new-operation", name, "--category", "probes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        assert module.exists() and test.exists()
        again = subprocess.run(
            [sys.executable, "-m", "arsenal", "new-operation", name, "--category", "probes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 1 and "exists already" in again.stderr
        ran = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
            capture_output=True,
            text=True,
            timeout=150,
            cwd=ROOT,
        )
        assert ran.returncode == 0, ran.stdout[-3000:]
        assert "2 passed" in ran.stdout
    finally:
        module.unlink(missing_ok=True)
        test.unlink(missing_ok=True)
