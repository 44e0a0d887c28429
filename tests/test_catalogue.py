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


def test_every_command_the_catalogue_names_exists() -> None:
    """The catalogue's CLI column is true: each operation's cli_name is a command (hand-written,
    or the generic one that takes the parameters as key=value)."""
    from typer.testing import CliRunner

    from arsenal.cli.main import app

    registry.discover()
    runner = CliRunner()
    named = [op for op in registry.all() if op.cli_name]
    assert len(named) > 50
    missing = [op.cli_name for op in named if runner.invoke(app, [*op.cli_name.split(), "--help"]).exit_code]
    assert missing == []


def test_a_generic_command_runs_its_operation(erl, cookie) -> None:  # type: ignore[no-untyped-def]
    command = [sys.executable, "-m", "arsenal.cli.main", "gc", "pid=demo_big_state", "--node", erl.name]
    done = subprocess.run(
        [*command, "--cookie", cookie, "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert '"memory_before"' in done.stdout and '"memory_after"' in done.stdout
    bad = subprocess.run(
        [*command[:-2], "nonsense", "--node", erl.name, "--cookie", cookie],  # pid is given already
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "key=value" in bad.stderr


def test_generic_commands_never_replace_a_hand_written_one() -> None:
    from typer.main import get_command

    from arsenal.cli.main import app

    ps = get_command(app).get_command(None, "ps")  # type: ignore[attr-defined]
    assert ps is not None and any(p.name == "sort" for p in ps.params)  # `arsenal ps`'s own options
