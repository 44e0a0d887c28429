"""The operation catalogue as Markdown, generated from the registry (``docs/operations.md``).

Nothing in it is written by hand: every operation's summary, severity, cost,
risk, parameters, result, REST route, CLI name and example come from its class.
"""

from __future__ import annotations

import json
from typing import Any

from .base import Operation
from .registry import Registry, registry

__all__ = ["render_catalogue"]

_HEADER = """# Operations

Generated from the operation registry by `arsenal docs` — do not edit by hand.

Every operation runs through one pipeline (validate → authorize → audit → execute
with a timeout → telemetry) and is served the same way everywhere: the Python API
(`await node.<name>(...)`), the CLI (`arsenal run <name> k=v …`, and the friendly
command where one is named), and REST (its route, or `POST /api/v1/operations/<name>`).
Severity: **read** changes nothing; **write** changes the node; **destructive** can lose
something (a process, its state). Each entry says what it costs and risks on a busy node.
"""


def render_catalogue(source: Registry | None = None) -> str:
    """The whole catalogue, grouped by category."""
    source = source or registry
    source.discover()
    parts = [_HEADER]
    categories: dict[str, list[type[Operation[Any, Any]]]] = {}
    for operation in source.all():
        categories.setdefault(operation.category, []).append(operation)
    parts.append("| operation | category | severity | summary |\n|---|---|---|---|")
    parts.extend(
        f"| [`{op.name}`](#{op.name}) | {op.category} | {op.severity.value} | {op.summary} |"
        for op in source.all()
    )
    for category, operations in categories.items():
        parts.append(f"\n## {category.capitalize()}\n")
        parts.extend(_entry(op) for op in operations)
    return "\n".join(parts) + "\n"


def _entry(operation: type[Operation[Any, Any]]) -> str:
    info = operation.describe()
    lines = [
        f"### {operation.name}\n",
        f"{operation.summary}\n",
        "| | |\n|---|---|",
        f"| severity | {operation.severity.value} |",
        f"| REST | `{info['method']} {info['path']}` (or `POST /api/v1/operations/{operation.name}`) |",
        f"| CLI | {_cli(operation)} |",
        f"| Python | `await node.{operation.name}(...)` |",
        f"| timeout | {operation.timeout:g} s |",
        f"| cost | {operation.cost} |",
        f"| risk | {operation.risk} |",
        "",
        "**Parameters**\n",
        _fields(info["params"]),
        "**Result**\n",
        _fields(info["result"]),
        "**Example**\n",
        "```sh",
        f"arsenal run {operation.name} {_cli_args(operation.example)} --node app@host".replace("  ", " "),
        "```",
        "```python",
        f"await node.{operation.name}({', '.join(f'{k}={v!r}' for k, v in operation.example.items())})",
        "```\n",
    ]
    return "\n".join(lines)


def _cli(operation: type[Operation[Any, Any]]) -> str:
    generic = f"`arsenal run {operation.name} k=v …`"
    return f"`arsenal {operation.cli_name}`, or {generic}" if operation.cli_name else generic


def _cli_args(example: dict[str, Any]) -> str:
    return " ".join(
        f"{key}={value if isinstance(value, (str, int, float)) else json.dumps(value)}"
        for key, value in example.items()
    )


def _fields(schema: dict[str, Any]) -> str:
    properties = schema.get("properties", {})
    if not properties:
        return "None.\n"
    required = set(schema.get("required", []))
    rows = ["| name | type | default | description |", "|---|---|---|---|"]
    for name, prop in properties.items():
        default = "required" if name in required else json.dumps(prop.get("default"))
        description = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type(prop)} | {default} | {description} |")
    return "\n".join(rows) + "\n"


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if "enum" in prop:
        return " \\| ".join(str(v) for v in prop["enum"])
    return str(prop.get("type", "any"))
