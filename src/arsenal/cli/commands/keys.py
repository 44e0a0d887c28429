"""`arsenal keys create|list|revoke` and `arsenal audit`: API keys and the audit trail.

Keys live in ``$ARSENAL_HOME/arsenal.db`` (only their hash); a key made here works at once
for an ``arsenal serve`` using the same home. The key's text is printed once, never again.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ...security.keys import ROLE_NAMES, KeyStore
from ...store import Store
from ..main import JsonOption, app, console, errors, run_local

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _keys() -> tuple[Store, KeyStore]:
    store = Store()
    return store, KeyStore(store)


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, operator or admin.")],
    name: Annotated[str, typer.Option(help="A name for people (who or what uses it).")] = "",
    node: Annotated[list[str] | None, typer.Option("--node", help="Only these nodes (repeatable).")] = None,
    operation: Annotated[
        list[str] | None, typer.Option("--operation", help="Only these operations (repeatable).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key; its text is printed once (store it: only its hash is kept)."""
    if role not in ROLE_NAMES:
        errors.print(f"[red]error:[/red] unknown role {role!r}; roles are {', '.join(ROLE_NAMES)}")
        raise typer.Exit(2)
    store, keys = _keys()
    try:
        key, text = keys.create(role, name=name, nodes=node, operations=operation)
    finally:
        store.close()
    if as_json:
        print(
            json.dumps({"key": text, "id": key.id, "name": key.name, "role": key.role, "grants": key.grants})
        )
        return
    console.print(f"created {key.role} key {key.id} ({key.name}); it is shown only now:", highlight=False)
    print(text)


@keys_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """Every key (never its text): id, name, role, grants, created, revoked, last used."""
    store, keys = _keys()
    try:
        found = keys.list()
    finally:
        store.close()
    if as_json:
        print(json.dumps([key.__dict__ for key in found]))
        return
    for key in found:
        state = "revoked" if key.revoked_at else "active"
        grants = f" {key.grants}" if key.grants else ""
        console.print(f"{key.id}  {key.role:<8} {state:<8} {key.name}{grants}", highlight=False)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (arsenal keys list).")]) -> None:
    """Revoke a key: it is refused from the next request on."""
    store, keys = _keys()
    try:
        done = keys.revoke(key_id)
    finally:
        store.close()
    if not done:
        errors.print(f"[red]error:[/red] no active key {key_id}; `arsenal keys list` shows them")
        raise typer.Exit(3)
    console.print(f"revoked {key_id}")


@app.command("audit")
def audit(
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=1000)] = 50,
    operation: Annotated[str | None, typer.Option(help="Only this operation.")] = None,
    outcome: Annotated[str | None, typer.Option(help="ok, error, refused or intent.")] = None,
    export: Annotated[
        bool, typer.Option("--export", help="Every entry as JSON lines, oldest first.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The audit trail of this ARSENAL_HOME: every write and destructive operation, newest first."""
    if export:
        from ...security.audit import AuditLog

        store = Store()
        try:
            for line in AuditLog(store).export():
                sys.stdout.write(line)
        finally:
            store.close()
        return
    params: dict[str, Any] = {"limit": limit}
    if operation:
        params["operation"] = operation
    if outcome:
        params["outcome"] = outcome
    result = run_local("list_audit", params)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    import time

    for e in result.entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        end = e["outcome"] or e["phase"]
        console.print(
            f"{when}  {e['phase']:<7} {e['operation']:<24} {e['principal']:<16} {e['node'] or '-':<24} {end}",
            highlight=False,
        )
