"""`arsenal docs` (the generated catalogue) and `arsenal new-operation` (a new operation, its test)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ...ops.catalogue import render_catalogue
from ...ops.registry import registry
from ..main import app, console, errors

_CHECKOUT = Path(__file__).resolve().parents[4]
# In a checkout the catalogue belongs in its docs/; an installed Arsenal writes where it is run.
_DEFAULT = (
    _CHECKOUT / "docs/operations.md" if (_CHECKOUT / "pyproject.toml").is_file() else Path("operations.md")
)


@app.command("docs")
def write_docs(
    output: Annotated[Path, typer.Option(help="Where to write the catalogue.")] = _DEFAULT,
    check: Annotated[
        bool, typer.Option(help="Only check that the file is up to date (exit 1 if not).")
    ] = False,
) -> None:
    """Generate docs/operations.md from the operation registry."""
    text = render_catalogue()
    if check:
        current = output.read_text() if output.exists() else ""
        if current != text:
            errors.print(f"{output} is out of date: run `arsenal docs`")
            raise typer.Exit(1)
        console.print(f"{output} is up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    console.print(f"wrote {output} ({len(registry.all())} operations)")


_SNAKE = re.compile(r"^[a-z][a-z0-9_]{2,60}$")

_OPERATION = '''"""{category_title} operation: {name}."""

from __future__ import annotations

from pydantic import Field

from ..dist import Atom
from .base import Context, Operation, Params, Result
from .registry import register


class {klass}Params(Params):
    timeout_ms: int = Field(1000, ge=1, le=30_000, description="How long the node may take.")


class {klass}Result(Result):
    node: str
    value: str


@register
class {klass}(Operation[{klass}Params, {klass}Result]):
    name = "{name}"
    category = "{category}"
    summary = "Describe in one sentence what {name} does."
    cost = "Say what it costs on a node with a million processes."
    risk = "Say what could go wrong on a busy production node."
    params = {klass}Params
    result = {klass}Result
    path = "/api/v1/{category}/{slug}"
    example = {{"timeout_ms": 1000}}

    async def execute(self, ctx: Context, params: {klass}Params) -> {klass}Result:
        node = ctx.require_node()
        # Replace with the work: an agent function (src/arsenal/agent/*.erl) keeps it in the VM.
        value = await node.call("erlang", "node", [], params.timeout_ms / 1000)
        return {klass}Result(node=node.name, value=str(value if isinstance(value, Atom) else value))
'''

_TEST = '''"""{name} against a real node."""

from __future__ import annotations

import pytest

import arsenal
from arsenal.ops.errors import ErrorCode, OperationError

pytestmark = pytest.mark.timeout(60)


async def test_{name}(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        result = await node.{name}()
        assert result.node == erl.name


async def test_{name}_refuses_bad_parameters(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        with pytest.raises(OperationError) as err:
            await node.{name}(timeout_ms=0)
        assert err.value.code is ErrorCode.validation_error
'''


@app.command("new-operation")
def new_operation(
    name: Annotated[str, typer.Argument(help="snake_case name, e.g. list_timers.")],
    category: Annotated[str, typer.Option(help="Its category, e.g. processes, system.")],
) -> None:
    """Scaffold an operation (a module in src/arsenal/ops), its test; `arsenal docs` adds its docs entry."""
    if not _SNAKE.match(name) or not _SNAKE.match(category):
        errors.print("[red]error:[/red] name and category must be snake_case")
        raise typer.Exit(2)
    ops_dir, tests_dir = _CHECKOUT / "src/arsenal/ops", _CHECKOUT / "tests"
    if not ops_dir.is_dir() or not tests_dir.is_dir():
        errors.print("[red]error:[/red] new-operation works in an Arsenal checkout (src/ and tests/)")
        raise typer.Exit(1)
    registry.discover()
    module, test = ops_dir / f"{name}.py", tests_dir / f"test_op_{name}.py"
    if name in registry or module.exists() or test.exists():
        errors.print(f"[red]error:[/red] an operation or file named {name} exists already")
        raise typer.Exit(1)
    klass = "".join(part.capitalize() for part in name.split("_"))
    fields = {
        "name": name,
        "category": category,
        "klass": klass,
        "slug": name.replace("_", "-"),
        "category_title": category.capitalize(),
    }
    module.write_text(_OPERATION.format(**fields))
    test.write_text(_TEST.format(**fields))
    console.print(
        f"created {module.relative_to(_CHECKOUT)} and {test.relative_to(_CHECKOUT)}\n"
        "next: write execute(), then `arsenal docs` and `make test`"
    )
