"""A process's state, changed and taken back: set_process_state and checkpoints.

Every change goes the same way: read the state whole (``sys:get_state``) with its hash, take a
backup checkpoint, compute the new state here (replace, deep merge, or a value put at a path),
check it against the user's JSON schema if one was given, then write it with
``sys:replace_state`` *only if the state still has the hash that was read* — the replacing fun
runs inside the process between two messages, so the change is atomic and never overwrites
a change it did not see. A state that changed meanwhile is a ``conflict`` and nothing is
written.

New states are sent with the atom-safe markers of :mod:`.safeterm`: an atom the node does not
know is an error naming it (an admin may allow new atoms). Checkpoints are stored in SQLite
(``checkpoints``) as the exact term the node sent, compressed; a process's checkpoints follow
its registered name when it has one (a restarted worker keeps them), else its pid.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import Field

from ..beam import Node
from ..dist import Atom, Pid, Term
from ..store import Checkpoint, CheckpointStore
from ..terms.render import render
from ..terms.tagged_json import to_json
from .base import Context, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .plain import pid_text, plain
from .processes import ProcessRefParams
from .registry import register
from .safeterm import check_decoded, parse_term, to_wire
from .safety import ensure_not_protected
from .targets import check_target, process_ref

__all__ = [
    "CheckpointEtsTable",
    "CreateCheckpoint",
    "DeleteCheckpoint",
    "DiffCheckpoints",
    "GetCheckpoint",
    "ListCheckpoints",
    "RestoreEtsTable",
    "RollbackToCheckpoint",
    "SetProcessState",
]

CATEGORY = "state"
STATE = "arsenal_agent_state"
MAX_STATE_BYTES = 8 * 1024 * 1024
MAX_ETS_BYTES = 64 * 1024 * 1024
JSON_CAP = 256 * 1024
MAX_CHANGES = 100
CheckpointName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", description="Letters, digits, _ . : -")
]


def _store(ctx: Context) -> CheckpointStore:
    return CheckpointStore(ctx.services.store)


def _shown(term: Term, node: Node) -> str:
    return render(term, node.language, max_items=100, max_binary=512, local_node=node.name)


def _lossless(term: Term, size: int) -> Any:
    return to_json(term) if size <= JSON_CAP else None


# ---------------------------------------------------------------------- reading and writing a state


class Captured:
    """A state as read: the term, its hash, its callback module, the process's facts."""

    def __init__(self, raw: dict[Term, Term], node: Node) -> None:
        self.pid: Pid = raw[Atom("pid")]  # type: ignore[assignment]
        self.state: Term = raw[Atom("state")]
        self.hash: int = raw[Atom("hash")]  # type: ignore[assignment]
        self.size: int = raw[Atom("size")]  # type: ignore[assignment]
        module = raw[Atom("module")]
        self.module: str | None = None if module == Atom("undefined") else str(module)
        self.info: dict[str, Any] = plain(raw[Atom("info")], node.language, local_node=node.name)
        name = raw[Atom("info")].get(Atom("registered_name"))  # type: ignore[union-attr]
        self.name: str | None = str(name) if isinstance(name, Atom) else None

    @property
    def target(self) -> str:
        """What its checkpoints are filed under: the registered name, else the pid."""
        return self.name or pid_text(self.pid)


async def capture(node: Node, pid: str, timeout: float, *, doing: str) -> Captured:
    raw = await node.agent_call(
        "capture",
        [process_ref(pid), {Atom("timeout_ms"): int(timeout * 1000), Atom("max_bytes"): MAX_STATE_BYTES}],
        timeout + 5,
        module=STATE,
    )
    check_target(raw, pid, node)
    if isinstance(raw, tuple) and raw[0] == Atom("error"):
        raise _state_error(raw[1], pid, node, doing)
    return Captured(raw[1], node)  # type: ignore[index]


def not_sys_process(pid: str, node: Node, doing: str) -> OperationError:
    """The error for an agent's ``{error, not_sys_process}``: the process would never answer a system
    message, so the agent sent it none."""
    return OperationError(
        ErrorCode.validation_error,
        f"{pid} on {node.name} is not a sys process (not :sys-compliant): it runs no OTP behaviour loop "
        "(gen_server, gen_statem, gen_event, supervisor) and does not implement the sys callbacks, so it "
        f"would never answer a system message, and Arsenal sent it none; {doing} it is not possible "
        "(get_process_info shows what it runs)",
        {"reason": "not_sys_process"},
    )


def _state_error(reason: Term, pid: str, node: Node, doing: str) -> OperationError:
    if reason == Atom("not_sys_process"):
        return not_sys_process(pid, node, doing)
    if reason == Atom("gone"):
        return OperationError(ErrorCode.not_found, f"{pid} is not alive on {node.name}")
    if reason == Atom("timeout"):
        return OperationError(
            ErrorCode.timeout, f"{pid} did not answer in time while {doing} it; it may be busy"
        )
    if reason == Atom("state_changed"):
        return OperationError(
            ErrorCode.conflict,
            f"the state of {pid} changed between the read and the write; nothing was replaced, try again",
        )
    if isinstance(reason, tuple) and reason and reason[0] == Atom("too_large"):
        return OperationError(
            ErrorCode.limit_exceeded,
            f"the state of {pid} is {reason[1]:,} bytes; at most {MAX_STATE_BYTES:,} can be edited or "
            "checkpointed",
        )
    return OperationError(
        ErrorCode.remote_error, f"{doing} {pid} failed: {render(reason, node.language, max_items=20)}"
    )


async def write_state(
    node: Node, pid: str, expected: int | None, new_state: Term, timeout: float, *, raw_atoms: bool
) -> Term:
    """Replace the state if it still hashes to ``expected``; the state it replaced."""
    wire = new_state if raw_atoms else to_wire(new_state, what="state", max_bytes=MAX_STATE_BYTES * 2)
    raw = await node.agent_call(
        "replace",
        [process_ref(pid), expected if expected is not None else Atom("any"), wire, int(timeout * 1000)],
        timeout + 5,
        module=STATE,
    )
    check_target(raw, pid, node)
    if isinstance(raw, tuple) and raw[0] == Atom("error"):
        reason = raw[1]
        if isinstance(reason, tuple) and reason and reason[0] == Atom("decode"):
            check_decoded((Atom("error"), reason[1]), what="state")
        raise _state_error(reason, pid, node, "replacing the state of")
    return raw[1]  # type: ignore[index]


def backup(ctx: Context, node: Node, captured: Captured, why: str) -> str:
    """Keep the state about to be replaced as a checkpoint; its name."""
    name = f"backup-{time.strftime('%Y%m%dT%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
    _store(ctx).create(
        node=node.name,
        target=captured.target,
        kind="process",
        name=name,
        module=captured.module,
        principal=ctx.principal.name,
        info={**captured.info, "pid": pid_text(captured.pid), "note": why},
        term=captured.state,
    )
    return name


def rendered_diff(old: Term, new: Term, node: Node) -> tuple[list[dict[str, Any]], bool]:
    """What changed from ``old`` to ``new`` (path, kind, old, new in the node's language; at most
    100), and whether there was more."""
    from ..terms.diff import diff_terms

    diff = diff_terms(old, new, max_changes=MAX_CHANGES, language=node.language)
    rendered = [
        {
            "path": change.path,
            "kind": change.kind,
            "old": None if change.old is None else _shown(change.old, node),
            "new": None if change.new is None else _shown(change.new, node),
        }
        for change in diff
    ]
    return rendered, diff.truncated


def changes(old: Term, new: Term, node: Node) -> list[dict[str, Any]]:
    return rendered_diff(old, new, node)[0]


# ---------------------------------------------------------------------- set_process_state


class SetStateParams(ProcessRefParams):
    state: Any = Field(
        description="The new state (or the part to merge or put): tagged JSON, or source text."
    )
    format: Literal["json", "erlang", "elixir"] = Field(
        "json", description="How `state` is written: tagged JSON, or Erlang / Elixir term syntax (a string)."
    )
    merge_strategy: Literal["replace", "deep_merge", "partial_update"] = Field(
        "replace",
        description="replace the whole state; deep_merge maps into it; partial_update puts `state` at "
        "`path`.",
    )
    path: list[str | int] | str | None = Field(
        None,
        description='For partial_update: ["users", "alice", 0] or "users.alice[0]" (map keys, 0-based '
        "indexes).",
    )
    json_schema: dict[str, Any] | None = Field(
        None, description="A JSON Schema the new state (as plain JSON) must satisfy, else nothing is written."
    )
    allow_new_atoms: bool = Field(False, description="Let the state create atoms on the node (admin only).")
    force: bool = Field(False, description="Replace even a VM process's state (admin only).")
    timeout: float = Field(5.0, gt=0, le=30, description="Seconds to wait for the process.")


class StateChange(Result):
    pid: str
    module: str | None = Field(description="The process's callback module.")
    merge_strategy: str
    old_state: str = Field(description="The state that was replaced, in the node's language.")
    old_state_json: Any = Field(description="The same as lossless tagged JSON, when under 256 KiB.")
    new_state: str
    backup: str = Field(description="The checkpoint holding the old state (roll back to it to undo).")
    changes: list[dict[str, Any]] = Field(description="What changed: path, kind, old, new (at most 100).")


@register
class SetProcessState(Operation[SetStateParams, StateChange]):
    name = "set_process_state"
    category = CATEGORY
    summary = "Replace a process's state atomically (replace, deep_merge or partial_update); returns the old."
    cost = (
        "Two system messages (sys:get_state, sys:replace_state), each answered between two of the process's "
        "messages; the state is copied to Arsenal and back (at most 8 MB)."
    )
    risk = (
        "Write: the process continues with the new state; a state its code does not expect can crash it. "
        "A backup checkpoint is taken first (roll back to it). Written only if the state did not change "
        "since it was read. VM processes are refused unless an admin forces."
    )
    params = SetStateParams
    result = StateChange
    severity = Severity.write
    method = "PUT"
    path = "/api/v1/processes/{pid}/state"
    cli_name = "state-set"
    timeout = 70.0
    example = {
        "pid": "ArsenalDemo.Counter1",
        "state": "%{count: 5}",
        "format": "elixir",
        "merge_strategy": "deep_merge",
    }

    async def execute(self, ctx: Context, params: SetStateParams) -> StateChange:
        node = ctx.require_node()
        node.ensure_writable("replacing a process's state")
        if params.allow_new_atoms and ctx.principal.role != "admin":
            raise OperationError(ErrorCode.forbidden, "allow_new_atoms needs an admin: atoms are never freed")
        await ensure_not_protected(ctx, params.pid, force=params.force, action="replacing the state of")
        given = _given_state(params, node)
        current = await capture(node, params.pid, params.timeout, doing="replacing the state of")
        new_state = _merged(current.state, given, params)
        if params.json_schema is not None:
            _validate(new_state, params.json_schema, node)
        saved = backup(ctx, node, current, f"before set_process_state ({params.merge_strategy})")
        old = await write_state(
            node, params.pid, current.hash, new_state, params.timeout, raw_atoms=params.allow_new_atoms
        )
        return StateChange(
            pid=pid_text(current.pid),
            module=current.module,
            merge_strategy=params.merge_strategy,
            old_state=_shown(old, node),
            old_state_json=_lossless(old, current.size),
            new_state=_shown(new_state, node),
            backup=saved,
            changes=changes(old, new_state, node),
        )


def _given_state(params: SetStateParams, node: Node) -> Term:
    if params.format == "json":
        return parse_term(params.state, what="state")
    if not isinstance(params.state, str):
        raise OperationError(
            ErrorCode.validation_error,
            f"with format={params.format}, state is a string of {params.format} source",
        )
    from ..terms.source import TermSourceError
    from ..terms.source import parse_term as parse_source

    try:
        return parse_source(params.state, params.format)
    except TermSourceError as exc:
        raise OperationError(
            ErrorCode.validation_error, f"the state does not parse as {params.format}: {exc}"
        ) from None


def _merged(old: Term, given: Term, params: SetStateParams) -> Term:
    from ..terms.paths import PathError, deep_merge, parse_path, put_in

    if params.merge_strategy == "replace":
        return given
    if params.merge_strategy == "deep_merge":
        return deep_merge(old, given)
    if params.path is None or params.path == [] or params.path == "":
        raise OperationError(
            ErrorCode.validation_error, 'partial_update needs a path, e.g. users.alice or ["count"]'
        )
    try:
        return put_in(old, parse_path(params.path), given)
    except (PathError, ValueError) as exc:
        raise OperationError(ErrorCode.validation_error, f"the path does not fit the state: {exc}") from None


def _validate(state: Term, schema: dict[str, Any], node: Node) -> None:
    import jsonschema

    try:
        jsonschema.validate(plain(state, node.language, local_node=node.name), schema)
    except jsonschema.SchemaError as exc:
        raise OperationError(
            ErrorCode.validation_error, f"the JSON schema itself is invalid: {exc.message}"
        ) from None
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(the state)"
        raise OperationError(
            ErrorCode.validation_error,
            f"the new state does not match the schema at {where}: {exc.message}; nothing was written",
            {"path": list(exc.absolute_path)},
        ) from None


# ---------------------------------------------------------------------- checkpoints


class CheckpointParams(ProcessRefParams):
    name: CheckpointName | None = Field(None, description="Default: cp-<time>.")
    timeout: float = Field(5.0, gt=0, le=30)


class CheckpointInfo(Result):
    name: str
    target: str = Field(description="The registered name it is filed under, else the pid.")
    kind: Literal["process", "ets"]
    module: str | None
    created_at: str
    size: int = Field(description="The term's external size, bytes.")
    info: dict[str, Any] = Field(
        description="The process's facts when it was taken (links, monitors, queue...)."
    )


def _info(checkpoint: Checkpoint) -> CheckpointInfo:
    return CheckpointInfo(
        name=checkpoint.name,
        target=checkpoint.target,
        kind=checkpoint.kind,  # type: ignore[arg-type]
        module=checkpoint.module,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(checkpoint.created_at)),
        size=checkpoint.size,
        info=checkpoint.info,
    )


@register
class CreateCheckpoint(Operation[CheckpointParams, CheckpointInfo]):
    name = "create_checkpoint"
    category = CATEGORY
    summary = "Snapshot a process's state and facts (info, links, monitors, queue length) under a name."
    cost = "One sys:get_state (the state is copied to Arsenal, at most 8 MB) and one process_info."
    risk = (
        "None to the process: it answers between two of its messages. A write to Arsenal's database "
        "(a copy of the state, up to 8 MB): an operator's, audited."
    )
    params = CheckpointParams
    result = CheckpointInfo
    severity = Severity.write
    method = "POST"
    path = "/api/v1/processes/{pid}/checkpoint"
    cli_name = "checkpoint"
    timeout = 40.0
    example = {"pid": "ArsenalDemo.Counter1", "name": "before-load"}

    async def execute(self, ctx: Context, params: CheckpointParams) -> CheckpointInfo:
        node = ctx.require_node()
        current = await capture(node, params.pid, params.timeout, doing="checkpointing")
        name = params.name or f"cp-{time.strftime('%Y%m%dT%H%M%S')}"
        store = _store(ctx)
        if store.get(node.name, current.target, name) is not None:
            raise OperationError(
                ErrorCode.conflict, f"{current.target} already has a checkpoint {name}; choose another name"
            )
        checkpoint = store.create(
            node=node.name,
            target=current.target,
            kind="process",
            name=name,
            module=current.module,
            principal=ctx.principal.name,
            info={**current.info, "pid": pid_text(current.pid)},
            term=current.state,
        )
        return _info(checkpoint)


async def _targets(node: Node, pid: str) -> list[str]:
    """Where a process's checkpoints may be filed: the text given, and its pid and name if it is alive."""
    targets = {pid.strip().lstrip(":")}
    raw = await node.agent_call("target", [process_ref(pid)])
    if isinstance(raw, tuple) and raw[0] == Atom("ok"):
        targets.add(pid_text(raw[1]))
        name = await node.call("erlang", "process_info", [raw[1], Atom("registered_name")])
        if isinstance(name, tuple) and isinstance(name[1], Atom):
            targets.add(str(name[1]))
    if re.match(r"^[A-Z]", pid.strip()):
        targets.add(f"Elixir.{pid.strip()}")
    return sorted(targets)


async def _checkpoint(ctx: Context, node: Node, pid: str, name: str) -> Checkpoint:
    found = _store(ctx).find(node.name, await _targets(node, pid), name)
    if found is None:
        raise OperationError(
            ErrorCode.not_found, f"{pid} has no checkpoint {name} on {node.name}; list_checkpoints shows them"
        )
    return found


class ListParams(ProcessRefParams):
    limit: int = Field(100, ge=1, le=1000)


class CheckpointList(Result):
    checkpoints: list[CheckpointInfo]


@register
class ListCheckpoints(Operation[ListParams, CheckpointList]):
    name = "list_checkpoints"
    category = CATEGORY
    summary = "A process's checkpoints, newest first (by its registered name and its pid)."
    cost = "A read of Arsenal's database and one lookup on the node."
    params = ListParams
    result = CheckpointList
    path = "/api/v1/processes/{pid}/checkpoints"
    cli_name = "checkpoints"
    example = {"pid": "ArsenalDemo.Counter1"}

    async def execute(self, ctx: Context, params: ListParams) -> CheckpointList:
        node = ctx.require_node()
        found = _store(ctx).list(node.name, await _targets(node, params.pid), limit=params.limit)
        return CheckpointList(checkpoints=[_info(c) for c in found])


class NamedParams(ProcessRefParams):
    name: CheckpointName


class CheckpointShown(Result):
    checkpoint: CheckpointInfo
    state: str
    state_json: Any


@register
class GetCheckpoint(Operation[NamedParams, CheckpointShown]):
    name = "get_checkpoint"
    category = CATEGORY
    summary = "One checkpoint: its state (in the node's language and as tagged JSON) and facts."
    cost = "A read of Arsenal's database."
    params = NamedParams
    result = CheckpointShown
    path = "/api/v1/processes/{pid}/checkpoints/{name}"
    example = {"pid": "ArsenalDemo.Counter1", "name": "before-load"}

    async def execute(self, ctx: Context, params: NamedParams) -> CheckpointShown:
        node = ctx.require_node()
        checkpoint = await _checkpoint(ctx, node, params.pid, params.name)
        term = checkpoint.term()
        return CheckpointShown(
            checkpoint=_info(checkpoint),
            state=_shown(term, node),
            state_json=_lossless(term, checkpoint.size),
        )


class DiffParams(NamedParams):
    against: str = Field(
        "current", max_length=64, description="Another checkpoint's name, or `current` for the live state."
    )
    timeout: float = Field(5.0, gt=0, le=30)


class CheckpointDiff(Result):
    name: str
    against: str
    changes: list[dict[str, Any]] = Field(description="path, kind (changed, added, removed, type), old, new.")
    truncated: bool


@register
class DiffCheckpoints(Operation[DiffParams, CheckpointDiff]):
    name = "diff_checkpoints"
    category = CATEGORY
    summary = "A structural diff between a checkpoint and another one, or the live state."
    cost = "A read of Arsenal's database; against `current`, one sys:get_state."
    params = DiffParams
    result = CheckpointDiff
    path = "/api/v1/processes/{pid}/checkpoints/{name}/diff"
    cli_name = "checkpoint-diff"
    timeout = 40.0
    example = {"pid": "ArsenalDemo.Counter1", "name": "before-load", "against": "current"}

    async def execute(self, ctx: Context, params: DiffParams) -> CheckpointDiff:

        node = ctx.require_node()
        checkpoint = await _checkpoint(ctx, node, params.pid, params.name)
        if params.against == "current":
            other = (await capture(node, params.pid, params.timeout, doing="reading")).state
        else:
            other = (await _checkpoint(ctx, node, params.pid, params.against)).term()
        found, truncated = rendered_diff(checkpoint.term(), other, node)
        return CheckpointDiff(name=params.name, against=params.against, changes=found, truncated=truncated)


class RollbackParams(NamedParams):
    force: bool = Field(False, description="Roll back even a VM process (admin only).")
    timeout: float = Field(5.0, gt=0, le=30)


@register
class RollbackToCheckpoint(Operation[RollbackParams, StateChange]):
    name = "rollback_to_checkpoint"
    category = CATEGORY
    summary = (
        "Put a checkpoint's state back into the live process (atomically; the current one is backed up)."
    )
    cost = "As set_process_state."
    risk = (
        "Write: the process continues from the checkpoint's state. Refused when the process now runs another "
        "callback module than the checkpoint's. A backup of the current state is taken first."
    )
    params = RollbackParams
    result = StateChange
    severity = Severity.write
    method = "POST"
    path = "/api/v1/processes/{pid}/checkpoints/{name}/rollback"
    cli_name = "rollback"
    timeout = 70.0
    example = {"pid": "ArsenalDemo.Counter1", "name": "before-load"}

    async def execute(self, ctx: Context, params: RollbackParams) -> StateChange:
        node = ctx.require_node()
        node.ensure_writable("rolling back a process's state")
        await ensure_not_protected(ctx, params.pid, force=params.force, action="rolling back the state of")
        checkpoint = await _checkpoint(ctx, node, params.pid, params.name)
        if checkpoint.kind != "process":
            raise OperationError(ErrorCode.validation_error, f"{params.name} is a checkpoint of an ETS table")
        current = await capture(node, params.pid, params.timeout, doing="rolling back")
        if checkpoint.module != current.module:
            raise OperationError(
                ErrorCode.conflict,
                f"{params.name} holds the state of a {checkpoint.module} process, but {params.pid} runs "
                f"{current.module}; a state of another module's shape would crash it. Nothing was changed",
            )
        saved = backup(ctx, node, current, f"before rollback to {params.name}")
        target_state = checkpoint.term()
        old = await write_state(node, params.pid, current.hash, target_state, params.timeout, raw_atoms=False)
        return StateChange(
            pid=pid_text(current.pid),
            module=current.module,
            merge_strategy="rollback",
            old_state=_shown(old, node),
            old_state_json=_lossless(old, current.size),
            new_state=_shown(target_state, node),
            backup=saved,
            changes=changes(old, target_state, node),
        )


@register
class DeleteCheckpoint(Operation[NamedParams, CheckpointInfo]):
    name = "delete_checkpoint"
    category = CATEGORY
    summary = "Delete a checkpoint from Arsenal's database."
    cost = "One delete in Arsenal's database; nothing reaches the node."
    risk = "Destructive for the checkpoint only: it cannot be rolled back to afterwards."
    params = NamedParams
    result = CheckpointInfo
    severity = Severity.destructive
    method = "DELETE"
    path = "/api/v1/processes/{pid}/checkpoints/{name}"
    example = {"pid": "ArsenalDemo.Counter1", "name": "before-load"}

    async def execute(self, ctx: Context, params: NamedParams) -> CheckpointInfo:
        node = ctx.require_node()
        checkpoint = await _checkpoint(ctx, node, params.pid, params.name)
        _store(ctx).delete(checkpoint.id)
        return _info(checkpoint)


# ---------------------------------------------------------------------- ETS tables


class EtsParams(Params):
    table: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.@]{0,254}$", description="A named ETS table.")
    name: CheckpointName | None = Field(None, description="Default: cp-<time>.")
    max_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=MAX_ETS_BYTES, description="Refused past this size.")


def _ets_target(table: str) -> str:
    return f"ets:{table}"


def _ets_error(reason: Term, table: str, node: Node) -> OperationError:
    if reason == Atom("not_found"):
        return OperationError(ErrorCode.not_found, f"no named ETS table {table} on {node.name}")
    if isinstance(reason, tuple) and reason[0] == Atom("too_large"):
        return OperationError(
            ErrorCode.limit_exceeded,
            f"table {table} takes {reason[1]:,} bytes; raise max_bytes (at most {MAX_ETS_BYTES:,})",
        )
    if isinstance(reason, tuple) and reason[0] == Atom("protection"):
        return OperationError(
            ErrorCode.forbidden,
            f"table {table} is {reason[1]}: only its owner process may write it, so Arsenal cannot "
            "restore it",
        )
    if isinstance(reason, tuple) and reason[0] == Atom("decode"):
        check_decoded((Atom("error"), reason[1]), what="table's rows")
    return OperationError(
        ErrorCode.remote_error, f"table {table}: {render(reason, node.language, max_items=20)}"
    )


@register
class CheckpointEtsTable(Operation[EtsParams, CheckpointInfo]):
    name = "checkpoint_ets_table"
    category = CATEGORY
    summary = "Snapshot every row of a named ETS table (bounded by max_bytes)."
    cost = "ets:tab2list: the whole table is copied (refused past max_bytes, default 16 MB)."
    risk = "Read: a large table costs the node a copy of it; the size is checked first."
    params = EtsParams
    result = CheckpointInfo
    method = "POST"
    path = "/api/v1/ets/{table}/checkpoint"
    timeout = 60.0
    example = {"table": "my_cache", "name": "before-import"}

    async def execute(self, ctx: Context, params: EtsParams) -> CheckpointInfo:
        node = ctx.require_node()
        raw = await node.agent_call(
            "ets_capture", [params.table.encode(), params.max_bytes], 50, module=STATE
        )
        if raw[0] == Atom("error"):  # type: ignore[index]
            raise _ets_error(raw[1], params.table, node)  # type: ignore[index]
        data = raw[1]  # type: ignore[index]
        name = params.name or f"cp-{time.strftime('%Y%m%dT%H%M%S')}"
        store = _store(ctx)
        if store.get(node.name, _ets_target(params.table), name) is not None:
            raise OperationError(ErrorCode.conflict, f"table {params.table} already has a checkpoint {name}")
        checkpoint = store.create(
            node=node.name,
            target=_ets_target(params.table),
            kind="ets",
            name=name,
            module=None,
            principal=ctx.principal.name,
            info={
                **plain(data[Atom("info")], node.language, local_node=node.name),
                "bytes": data[Atom("bytes")],
            },
            term=data[Atom("rows")],
        )
        return _info(checkpoint)


class EtsRestoreParams(Params):
    table: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.@]{0,254}$")
    name: CheckpointName


class EtsRestored(Result):
    table: str
    checkpoint: str
    rows: int


@register
class RestoreEtsTable(Operation[EtsRestoreParams, EtsRestored]):
    name = "restore_ets_table"
    category = CATEGORY
    summary = "Replace every row of a public ETS table by those of a checkpoint."
    cost = "ets:delete_all_objects and one ets:insert of every row."
    risk = (
        "Destructive: the table's current rows are gone (checkpoint it first). Readers may see it empty "
        "for a moment. Protected and private tables are refused: only their owner may write them."
    )
    params = EtsRestoreParams
    result = EtsRestored
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/ets/{table}/checkpoints/{name}/restore"
    timeout = 60.0
    example = {"table": "my_cache", "name": "before-import"}

    async def execute(self, ctx: Context, params: EtsRestoreParams) -> EtsRestored:
        node = ctx.require_node()
        node.ensure_writable("restoring an ETS table")
        checkpoint = _store(ctx).get(node.name, _ets_target(params.table), params.name)
        if checkpoint is None:
            raise OperationError(ErrorCode.not_found, f"table {params.table} has no checkpoint {params.name}")
        wire = to_wire(checkpoint.term(), what="table's rows", max_bytes=MAX_ETS_BYTES * 2)
        raw = await node.agent_call("ets_restore", [params.table.encode(), wire], 50, module=STATE)
        if raw[0] == Atom("error"):  # type: ignore[index]
            raise _ets_error(raw[1], params.table, node)  # type: ignore[index]
        return EtsRestored(table=params.table, checkpoint=params.name, rows=raw[1])  # type: ignore[index]
