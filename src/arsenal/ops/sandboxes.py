"""Sandboxes and live development: nodes Arsenal starts for experiments, and changing the code
that runs in them (hot swap with versions and rollback, injected code, direct calls).

A sandbox is a separate BEAM node with its own cookie, directory and limits (see
:mod:`arsenal.sandbox`); nothing done here reaches an attached node. Code given to a sandbox
is scanned against its security policy inside the sandbox before it is compiled or run.
"""

from __future__ import annotations

import secrets
import shutil
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from ..dist import Atom, EncodeError, Term, term_to_binary
from ..sandbox.generator import AppSpec, WorkerSpec, module_names, render_project, render_worker, snake_case
from ..sandbox.limits import SandboxLimits
from ..sandbox.manager import SandboxManager, SandboxSpec
from ..sandbox.policy import SecurityPolicy
from ..sandbox.source import SandboxSource, module_atom
from ..store import SandboxRecord
from ..terms.render import render
from ..terms.tagged_json import TaggedJSONError, from_json, to_json
from ..terms.truncation import cut_of
from .base import Context, NoParams, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .plain import pid_text, plain
from .registry import register

__all__ = [
    "CreateDynamicWorker",
    "CreateSandbox",
    "GenerateApplication",
    "DestroySandbox",
    "ExecuteInSandbox",
    "GetSandboxInfo",
    "HotSwapModule",
    "InjectCode",
    "ListModuleVersions",
    "ListSandboxes",
    "RestartSandbox",
    "RollbackModule",
    "SandboxResourceLimits",
    "SandboxSecurityPolicy",
]

CATEGORY = "sandboxes"
MAX_TERM_BYTES = 1024 * 1024
SandboxId = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,30}$", description="The sandbox's id (lowercase, digits, _).")
]
ModuleName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z][\w.]*$",
        description="`Counter`, `MyApp.Worker`, `my_mod`.",
    ),
]


def _manager(ctx: Context) -> SandboxManager:
    return ctx.services.get(SandboxManager)


def _time(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, UTC).isoformat() if value is not None else None


def _term(value: Any, what: str) -> Term:
    """Tagged JSON from a request -> a term for the sandbox (its own node: atoms may be new)."""
    try:
        term = from_json(value)
        size = len(term_to_binary(term))
    except (TaggedJSONError, EncodeError) as exc:
        raise OperationError(
            ErrorCode.validation_error, f"{what} is not a valid tagged JSON term: {exc}"
        ) from None
    if size > MAX_TERM_BYTES:
        raise OperationError(
            ErrorCode.limit_exceeded, f"{what} is {size:,} bytes encoded; at most {MAX_TERM_BYTES:,}"
        )
    return term


def _shown(term: Term, language: str) -> str:
    return render(term, language, max_items=100, max_binary=256, max_depth=12)


def _lossless(term: Term) -> Any:
    """Tagged JSON of a whole value; None for one too big, or cut by the node (its text says so)."""
    if cut_of(term) is not None:
        return None
    try:
        return to_json(term) if len(term_to_binary(term)) <= 256 * 1024 else None
    except Exception:  # an unencodable value simply has no lossless form
        return None


# ---------------------------------------------------------------------- results


class SandboxSummary(Result):
    sandbox_id: str
    status: Literal["starting", "running", "stopped", "failed"]
    node: str | None = Field(description="The sandbox node's name (reachable only with its own cookie).")
    template: str | None
    language: str
    persistent: bool
    created_at: str | None
    started_at: str | None
    stopped_at: str | None
    stop_reason: str | None = Field(
        description="Why it stopped: lifetime, memory, cpu_time, crashed, destroyed..."
    )


def _summary(record: SandboxRecord) -> SandboxSummary:
    spec = record.spec
    source = spec.get("source") or {}
    return SandboxSummary(
        sandbox_id=record.id,
        status=record.status,  # type: ignore[arg-type]
        node=record.node,
        template=spec.get("template"),
        language=source.get("language")
        or ("elixir" if spec.get("template") or spec.get("app") else spec.get("language", "elixir")),
        persistent=record.persistent,
        created_at=_time(record.created_at),
        started_at=_time(record.started_at),
        stopped_at=_time(record.stopped_at),
        stop_reason=record.stop_reason,
    )


# ---------------------------------------------------------------------- create / list / info / destroy


class CreateSandboxParams(Params):
    sandbox_id: SandboxId
    template: str | None = Field(None, description="worker_pool, pubsub, pipeline or cascade.")
    source: SandboxSource | None = Field(None, description="Source files and the application to start.")
    path: str | None = Field(
        None, max_length=4096, description="A mix or Erlang project directory on Arsenal's host (admin only)."
    )
    app: dict[str, Any] | None = Field(
        None, description="A generated application's spec (see generate_application)."
    )
    language: Literal["elixir", "erlang"] = Field(
        "elixir", description="For an empty sandbox: the REPL's language."
    )
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    policy: SecurityPolicy = Field(default_factory=SecurityPolicy)
    persistent: bool = False


@register
class CreateSandbox(Operation[CreateSandboxParams, SandboxSummary]):
    name = "create_sandbox"
    category = CATEGORY
    summary = "Start a sandbox: a separate node with limits, running a template, given source or nothing."
    cost = (
        "Starts one BEAM node (an OS process; about 0.5-1 s and 40-60 MB), compiles the source inside it "
        "(a few hundred ms for a small app). Nothing reaches an attached node."
    )
    risk = (
        "Uses the host's memory and CPU up to the sandbox's limits (max_memory_mb, schedulers, cpu_seconds) "
        "for up to lifetime_s. Source is scanned against the security policy before it is compiled."
    )
    params = CreateSandboxParams
    result = SandboxSummary
    severity = Severity.write
    method = "POST"
    path = "/api/v1/sandboxes"
    cli_name = "sandbox create"
    needs_node = False
    timeout = 120.0
    example = {"sandbox_id": "pool", "template": "worker_pool", "limits": {"lifetime_s": 600}}

    async def execute(self, ctx: Context, params: CreateSandboxParams) -> SandboxSummary:
        _policy_needs_admin(ctx, params.policy)
        source = params.source
        if params.path is not None:
            if ctx.principal.role != "admin":
                raise OperationError(
                    ErrorCode.forbidden, "reading a directory of Arsenal's host needs an admin"
                )
            if source is not None:
                raise OperationError(ErrorCode.validation_error, "give source or path, not both")
            from pathlib import Path

            try:
                source = SandboxSource.from_directory(Path(params.path))
            except (ValueError, OSError) as exc:
                raise OperationError(ErrorCode.validation_error, f"cannot use {params.path}: {exc}") from None
        try:
            spec = SandboxSpec(
                template=params.template,
                source=source,
                app=params.app,
                language=params.language,
                limits=params.limits,
                policy=params.policy,
                persistent=params.persistent,
            )
            if params.template is not None:
                spec.resolved_source()
        except ValueError as exc:
            raise OperationError(ErrorCode.validation_error, str(exc)) from None
        record = await _manager(ctx).create(params.sandbox_id, spec)
        return _summary(record)


class SandboxList(Result):
    sandboxes: list[SandboxSummary]


@register
class ListSandboxes(Operation[NoParams, SandboxList]):
    name = "list_sandboxes"
    category = CATEGORY
    summary = "Every sandbox of this Arsenal's home, with its status."
    cost = "A read of Arsenal's store and one signal-0 per running sandbox to see it is alive."
    params = NoParams
    result = SandboxList
    path = "/api/v1/sandboxes"
    cli_name = "sandbox list"
    needs_node = False

    async def execute(self, ctx: Context, params: NoParams) -> SandboxList:
        return SandboxList(sandboxes=[_summary(r) for r in _manager(ctx).list()])


class SandboxIdParams(Params):
    sandbox_id: SandboxId


class ModuleSummary(Result):
    module: str
    versions: int
    current: int


class SandboxInfo(Result):
    sandbox: SandboxSummary
    limits: SandboxLimits
    usage: dict[str, Any] | None = Field(
        description="What the node uses now (memory, processes...); null when stopped."
    )
    processes: list[dict[str, Any]] = Field(description="The biggest processes (memory), at most 20.")
    applications: list[dict[str, Any]]
    modules: list[ModuleSummary] = Field(description="Modules loaded by Arsenal, with their version counts.")
    policy: SecurityPolicy


@register
class GetSandboxInfo(Operation[SandboxIdParams, SandboxInfo]):
    name = "get_sandbox_info"
    category = CATEGORY
    summary = "A sandbox's status, limits and usage, biggest processes, applications and code versions."
    cost = "A read of the store, and for a running sandbox two calls into it (a scan of its processes)."
    params = SandboxIdParams
    result = SandboxInfo
    path = "/api/v1/sandboxes/{sandbox_id}"
    cli_name = "sandbox info"
    needs_node = False
    example = {"sandbox_id": "pool"}

    async def execute(self, ctx: Context, params: SandboxIdParams) -> SandboxInfo:
        manager = _manager(ctx)
        record = manager.get(params.sandbox_id)
        spec = SandboxSpec.model_validate(record.spec)
        usage: dict[str, Any] | None = None
        processes: list[dict[str, Any]] = []
        if record.status == "running":
            node = await manager.node(params.sandbox_id)
            usage = plain(await node.call("arsenal_agent_sandbox", "usage", []), node.language)
            processes = plain(await node.call("arsenal_agent_sandbox", "processes", [20]), node.language)
        counts = manager.records.version_counts(params.sandbox_id)
        modules = [
            ModuleSummary(module=name.removeprefix("Elixir."), versions=count, current=count)
            for name, count in sorted(counts.items())
        ]
        return SandboxInfo(
            sandbox=_summary(record),
            limits=spec.limits,
            usage=usage,
            processes=processes,
            applications=(usage or {}).pop("applications", []) if usage else [],
            modules=modules,
            policy=spec.policy,
        )


@register
class DestroySandbox(Operation[SandboxIdParams, SandboxSummary]):
    name = "destroy_sandbox"
    category = CATEGORY
    summary = "Stop a sandbox and remove it: its node, every OS process of it, its files and its record."
    cost = "Kills one OS process group and deletes a directory."
    risk = "Destructive: the sandbox's state, code versions and files are gone."
    params = SandboxIdParams
    result = SandboxSummary
    severity = Severity.destructive
    method = "DELETE"
    path = "/api/v1/sandboxes/{sandbox_id}"
    cli_name = "sandbox destroy"
    needs_node = False
    timeout = 30.0
    example = {"sandbox_id": "pool"}

    async def execute(self, ctx: Context, params: SandboxIdParams) -> SandboxSummary:
        record = await _manager(ctx).destroy(params.sandbox_id)
        summary = _summary(record)
        summary.status = "stopped"
        summary.stop_reason = "destroyed"
        return summary


class RestartParams(Params):
    sandbox_id: SandboxId


@register
class RestartSandbox(Operation[RestartParams, SandboxSummary]):
    name = "restart_sandbox"
    category = CATEGORY
    summary = "Stop a sandbox and start it again from its spec (a fresh node: its state starts over)."
    cost = "As create_sandbox."
    risk = "Destructive for the sandbox's state: processes and hot-swapped code start over from the spec."
    params = RestartParams
    result = SandboxSummary
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/sandboxes/{sandbox_id}/restart"
    cli_name = "sandbox restart"
    needs_node = False
    timeout = 120.0
    example = {"sandbox_id": "pool"}

    async def execute(self, ctx: Context, params: RestartParams) -> SandboxSummary:
        return _summary(await _manager(ctx).restart(params.sandbox_id))


class LimitsParams(Params):
    sandbox_id: SandboxId
    limits: SandboxLimits
    restart: bool = Field(
        True, description="Restart now so the limits hold (OS and VM limits are set at start)."
    )


class LimitsResult(Result):
    sandbox: SandboxSummary
    limits: SandboxLimits
    applied: bool = Field(description="True when the sandbox runs under them now; false: at its next start.")


@register
class SandboxResourceLimits(Operation[LimitsParams, LimitsResult]):
    name = "sandbox_resource_limits"
    category = CATEGORY
    summary = (
        "Set a sandbox's resource limits (processes, heap per process, memory, schedulers, CPU, lifetime)."
    )
    cost = "A write to the store; with restart, as restart_sandbox."
    risk = "With restart (the default) the sandbox starts over: its state is lost."
    params = LimitsParams
    result = LimitsResult
    severity = Severity.write
    method = "PUT"
    path = "/api/v1/sandboxes/{sandbox_id}/limits"
    needs_node = False
    timeout = 120.0
    example = {"sandbox_id": "pool", "limits": {"max_processes": 4096, "max_memory_mb": 512}}

    async def execute(self, ctx: Context, params: LimitsParams) -> LimitsResult:
        manager = _manager(ctx)
        if params.restart:
            record = await manager.restart(params.sandbox_id, params.limits)
        else:
            spec = manager.spec(params.sandbox_id)
            manager.records.set_spec(
                params.sandbox_id, spec.model_copy(update={"limits": params.limits}).model_dump(mode="json")
            )
            record = manager.get(params.sandbox_id)
        return LimitsResult(sandbox=_summary(record), limits=params.limits, applied=params.restart)


class PolicyParams(Params):
    sandbox_id: SandboxId
    policy: SecurityPolicy


class PolicyResult(Result):
    sandbox_id: str
    policy: SecurityPolicy


@register
class SandboxSecurityPolicy(Operation[PolicyParams, PolicyResult]):
    name = "sandbox_security_policy"
    category = CATEGORY
    summary = "Set which calls a sandbox's code may make; checked on all code given to it from now on."
    cost = "A write to the store."
    risk = (
        "A looser policy lets code given later call what it allows; code already loaded is not scanned "
        "again. The policy is a scan of the source, not a jail: the sandbox's isolation is its separate OS "
        "process."
    )
    params = PolicyParams
    result = PolicyResult
    # Loosening what sandbox code may call can hand out a shell on Arsenal's host: admins only.
    severity = Severity.destructive
    method = "PUT"
    path = "/api/v1/sandboxes/{sandbox_id}/policy"
    needs_node = False
    example = {"sandbox_id": "pool", "policy": {"dynamic_calls": "warn"}}

    async def execute(self, ctx: Context, params: PolicyParams) -> PolicyResult:
        manager = _manager(ctx)
        spec = manager.spec(params.sandbox_id)
        manager.records.set_spec(
            params.sandbox_id, spec.model_copy(update={"policy": params.policy}).model_dump(mode="json")
        )
        return PolicyResult(sandbox_id=params.sandbox_id, policy=params.policy)


# ---------------------------------------------------------------------- running code


class ExecuteParams(Params):
    sandbox_id: SandboxId
    module: ModuleName
    function: str = Field(min_length=1, max_length=255, pattern=r"^[a-z_][\w?!]*$")
    args: list[Any] = Field(
        default_factory=list, max_length=32, description="Arguments as tagged JSON terms."
    )
    timeout: float = Field(5.0, gt=0, le=60)


class ExecuteResult(Result):
    value: str = Field(description="The returned value in the sandbox's language (bounded).")
    value_json: Any = Field(description="The value as lossless tagged JSON, when under 256 KiB.")


@register
class ExecuteInSandbox(Operation[ExecuteParams, ExecuteResult]):
    name = "execute_in_sandbox"
    category = CATEGORY
    summary = "Call Module.function(args) in a sandbox and return its value."
    cost = "One call into the sandbox, as long as the function runs (bounded by timeout)."
    risk = "Runs the function in the sandbox; calls its security policy refuses are refused here too."
    params = ExecuteParams
    result = ExecuteResult
    severity = Severity.write
    method = "POST"
    path = "/api/v1/sandboxes/{sandbox_id}/execute"
    needs_node = False
    timeout = 65.0
    example = {"sandbox_id": "pool", "module": "Enum", "function": "sum", "args": [[1, 2, 3]]}

    async def execute(self, ctx: Context, params: ExecuteParams) -> ExecuteResult:
        manager = _manager(ctx)
        spec = manager.spec(params.sandbox_id)
        module, _ = manager.resolve_module(params.sandbox_id, params.module, spec.code_language)
        args = [_term(arg, f"args[{i}]") for i, arg in enumerate(params.args)]
        shown = f"{module.removeprefix('Elixir.')}.{params.function}/{len(args)}"
        node = await manager.node(params.sandbox_id)
        await node.call("code", "ensure_loaded", [Atom(module)], 10)
        if not await node.call(
            "erlang", "function_exported", [Atom(module), Atom(params.function), len(args)], 10
        ):
            raise OperationError(
                ErrorCode.not_found, f"{shown} is not defined in sandbox {params.sandbox_id}"
            )
        # The call is evaluated as code (`'Mod':'fun'(A1, ...)` with the arguments bound), so the
        # sandbox's policy scan judges it exactly as it judges injected code, and a call that runs
        # too long is killed at the timeout.
        names = [f"A{i}" for i in range(1, len(args) + 1)]
        code = f"'{module}':'{params.function}'({', '.join(names)})"
        binding = [(name.encode(), arg) for name, arg in zip(names, args, strict=True)]
        timeout_ms = int(params.timeout * 1000)
        reply = await manager.evaluate(
            params.sandbox_id, code, language="erlang", binding=binding, timeout_ms=timeout_ms
        )
        result = eval_result(reply, spec.code_language)
        if not result.ok:
            error = result.error or {}
            raise OperationError(
                ErrorCode.remote_error,
                f"{shown} raised: {error.get('message', '')}",
                {"output": result.output},
            )
        return ExecuteResult(value=result.value or "", value_json=result.value_json)


def _policy_needs_admin(ctx: Context, policy: SecurityPolicy) -> None:
    """Only an admin may give a sandbox another policy than the default: a looser one could let its
    code run OS commands as Arsenal's user."""
    if policy != SecurityPolicy() and ctx.principal.role != "admin":
        raise OperationError(
            ErrorCode.forbidden,
            "a security policy other than the default needs an admin key; leave `policy` out",
        )


class InjectParams(Params):
    sandbox_id: SandboxId
    code: str = Field(min_length=1, max_length=256 * 1024, description="Expressions to evaluate.")
    language: Literal["elixir", "erlang"] | None = Field(None, description="Default: the sandbox's language.")
    binding: dict[str, Any] = Field(
        default_factory=dict,
        description="Variables the code sees: name -> tagged JSON term (Erlang: capitalised).",
    )
    timeout_ms: int = Field(5000, ge=1, le=60_000, description="The evaluating process is killed after this.")


class InjectResult(Result):
    ok: bool = Field(description="False when the code did not compile or raised (see error).")
    value: str | None = Field(
        description="The value of the last expression, in the code's language (bounded)."
    )
    value_json: Any = Field(None, description="The value as lossless tagged JSON, when under 256 KiB.")
    binding: dict[str, str] = Field(description="The variables after the code ran, rendered.")
    output: str = Field(description="What the code printed (its group leader's output, at most 64 KiB).")
    warnings: list[dict[str, Any]]
    error: dict[str, Any] | None = Field(
        description="kind (syntax, compile, exception, exit), message, line."
    )


@register
class InjectCode(Operation[InjectParams, InjectResult]):
    name = "inject_code"
    category = CATEGORY
    summary = "Evaluate code in a sandbox with a binding and a timeout; value, output and warnings come back."
    cost = "One process in the sandbox for as long as the code runs (killed at timeout_ms)."
    risk = (
        "Runs the code in the sandbox, after its security-policy scan. Processes the code starts and does "
        "not link keep running after the timeout; the sandbox's limits bound them."
    )
    params = InjectParams
    result = InjectResult
    severity = Severity.write
    method = "POST"
    path = "/api/v1/sandboxes/{sandbox_id}/inject"
    cli_name = "sandbox eval"
    needs_node = False
    timeout = 75.0
    example = {"sandbox_id": "pool", "code": "x + 1", "binding": {"x": 41}}

    async def execute(self, ctx: Context, params: InjectParams) -> InjectResult:
        manager = _manager(ctx)
        spec = manager.spec(params.sandbox_id)
        language = params.language or spec.code_language
        binding = [(name.encode(), _term(value, f"binding.{name}")) for name, value in params.binding.items()]
        reply = await manager.evaluate(
            params.sandbox_id,
            params.code,
            language=language,
            binding=binding,
            timeout_ms=params.timeout_ms,
        )
        return eval_result(reply, language)


def eval_result(reply: Term, language: str) -> InjectResult:
    """The agent's ``{ok, Map} | {error, Map}`` as a result; policy refusals and timeouts as errors."""
    status, data = reply  # type: ignore[misc]
    if status == Atom("ok"):
        value = data[Atom("value")]
        return InjectResult(
            ok=True,
            value=_shown(value, language),
            value_json=_lossless(value),
            binding={_text(k): _shown(v, language) for k, v in data[Atom("binding")]},
            output=_text(data[Atom("output")]),
            warnings=plain(data[Atom("warnings")], language),
            error=None,
        )
    kind = str(data.get(Atom("kind"), "error"))
    message = _text(data.get(Atom("message"), b""))
    if kind == "policy":
        findings = plain(data.get(Atom("findings"), []), language)
        said = "; ".join(f"{f['call']} (line {f['line']}: {f['reason']})" for f in findings[:3])
        raise OperationError(ErrorCode.forbidden, f"{message}: {said}; nothing ran", {"findings": findings})
    if kind == "timeout":
        raise OperationError(ErrorCode.timeout, message, {"output": _text(data.get(Atom("output"), b""))})
    error: dict[str, Any] = {"kind": kind, "message": message}
    if Atom("line") in data:
        error["line"] = data[Atom("line")]
    return InjectResult(
        ok=False,
        value=None,
        binding={},
        output=_text(data.get(Atom("output"), b"")),
        warnings=[],
        error=error,
    )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- hot swap and versions


class HotSwapParams(Params):
    sandbox_id: SandboxId
    module: ModuleName
    source: str = Field(min_length=1, max_length=1024 * 1024, description="The module's new source.")
    language: Literal["elixir", "erlang"] | None = Field(
        None, description="Default: the module's or the sandbox's."
    )
    force: bool = Field(False, description="Load even if processes still run old code (a purge kills them).")
    extra: Any = Field(None, description="Extra for code_change/3, as tagged JSON (default []).")


class SwapReport(Result):
    module: str
    version: int = Field(description="The version number now loaded (every load is kept).")
    exports_added: list[str]
    exports_removed: list[str] = Field(
        description="Callers of these will fail with undef: check before you rely on it."
    )
    processes: list[dict[str, Any]] = Field(
        description="Processes whose callback module it is: suspended, code_change run, resumed "
        "(state_changed)."
    )
    killed: list[str] = Field(description="Processes killed by a forced purge of old code.")
    warnings: list[dict[str, Any]]


def _swap_report(report: dict[Term, Term]) -> SwapReport:
    data = plain({k: v for k, v in report.items() if k not in (Atom("beam"), Atom("md5"))}, "erlang")
    for process in data["processes"]:
        if isinstance(process.get("name"), str):
            process["name"] = process["name"].removeprefix("Elixir.")
    return SwapReport(
        module=str(report[Atom("module")]).removeprefix("Elixir."),
        version=data["version"],
        exports_added=data["exports_added"],
        exports_removed=data["exports_removed"],
        processes=data["processes"],
        killed=data["killed"],
        warnings=data["warnings"],
    )


@register
class HotSwapModule(Operation[HotSwapParams, SwapReport]):
    name = "hot_swap_module"
    category = CATEGORY
    summary = (
        "Compile a module's new source in a sandbox and load it while its processes run, keeping their state."
    )
    cost = (
        "A compile in the sandbox, a scan of its processes (for the module's gen_servers) and per such "
        "process one sys:suspend, sys:change_code and sys:resume."
    )
    risk = (
        "The module's processes pause for the load. Refused when processes still run the previous old code "
        "(loading would kill them) unless forced. If a code_change fails, the previous version is put back."
    )
    params = HotSwapParams
    result = SwapReport
    severity = Severity.write
    method = "POST"
    path = "/api/v1/sandboxes/{sandbox_id}/modules/{module}/reload"
    cli_name = "sandbox reload"
    needs_node = False
    timeout = 90.0
    example = {"sandbox_id": "pool", "module": "Counter", "source": "defmodule Counter do ... end"}

    async def execute(self, ctx: Context, params: HotSwapParams) -> SwapReport:
        extra = [] if params.extra is None else _term(params.extra, "extra")
        report = await _manager(ctx).hot_swap(
            params.sandbox_id,
            params.module,
            params.source,
            language=params.language,
            force=params.force,
            extra=extra,
        )
        return _swap_report(report)


class ModuleParams(Params):
    sandbox_id: SandboxId
    module: ModuleName


class VersionInfo(Result):
    version: int
    note: str = Field(description="initial, hot swap, or rollback to vN.")
    md5: str
    language: str
    created_at: str | None
    has_source: bool
    current: bool


class VersionList(Result):
    module: str
    versions: list[VersionInfo]
    source: str | None = Field(
        None,
        description="The current version's source, to edit and hot swap again (null when it was "
        "loaded without source); the others' stay in the store (a rollback loads one).",
    )


@register
class ListModuleVersions(Operation[ModuleParams, VersionList]):
    name = "list_module_versions"
    category = CATEGORY
    summary = "Every version of a module Arsenal loaded into a sandbox, oldest first."
    cost = "A read of Arsenal's store."
    params = ModuleParams
    result = VersionList
    path = "/api/v1/sandboxes/{sandbox_id}/modules/{module}/versions"
    cli_name = "sandbox versions"
    needs_node = False
    example = {"sandbox_id": "pool", "module": "Counter"}

    async def execute(self, ctx: Context, params: ModuleParams) -> VersionList:
        manager = _manager(ctx)
        manager.get(params.sandbox_id)
        name, _ = manager.resolve_module(params.sandbox_id, params.module)
        versions = manager.versions(params.sandbox_id, name)
        if not versions:
            raise OperationError(
                ErrorCode.not_found,
                f"Arsenal loaded no module {params.module} into sandbox {params.sandbox_id}; "
                "get_sandbox_info lists the modules it did",
            )
        return VersionList(
            module=params.module,
            versions=[
                VersionInfo(
                    version=v.version,
                    note=v.note,
                    md5=v.md5,
                    language=v.language,
                    created_at=_time(v.created_at),
                    has_source=v.source is not None,
                    current=v is versions[-1],
                )
                for v in versions
            ],
            source=versions[-1].source,
        )


class RollbackParams(Params):
    sandbox_id: SandboxId
    module: ModuleName
    version: int = Field(ge=1, description="The version to load again (list_module_versions).")
    force: bool = Field(False, description="Load even if processes still run old code (a purge kills them).")
    extra: Any = Field(None, description="Extra for code_change/3, as tagged JSON (default []).")


@register
class RollbackModule(Operation[RollbackParams, SwapReport]):
    name = "rollback_module"
    category = CATEGORY
    summary = "Load a stored version of a module again, as a hot swap (recorded as a new version)."
    cost = "As hot_swap_module, without the compile."
    risk = (
        "As hot_swap_module. code_change runs with the current version's vsn as OldVsn: a state already "
        "reshaped by a later version stays reshaped unless that code_change undoes it."
    )
    params = RollbackParams
    result = SwapReport
    severity = Severity.write
    method = "POST"
    path = "/api/v1/sandboxes/{sandbox_id}/modules/{module}/rollback"
    cli_name = "sandbox rollback"
    needs_node = False
    timeout = 90.0
    example = {"sandbox_id": "pool", "module": "Counter", "version": 1}

    async def execute(self, ctx: Context, params: RollbackParams) -> SwapReport:
        extra = [] if params.extra is None else _term(params.extra, "extra")
        report = await _manager(ctx).rollback(
            params.sandbox_id, params.module, params.version, force=params.force, extra=extra
        )
        return _swap_report(report)


# ---------------------------------------------------------------------- dynamic workers and generated apps


class WorkerParams(Params):
    sandbox_id: SandboxId
    module: ModuleName | None = Field(
        None, description="An existing module with start_link/1 (e.g. a template's)."
    )
    worker: WorkerSpec | None = Field(
        None,
        description="A GenServer to generate: name, initial_state, handlers (as in generate_application).",
    )
    namespace: str = Field(
        "Dynamic", pattern=r"^[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)*$", description="Of a generated worker."
    )
    registered: bool = Field(False, description="Register a generated worker under its module name.")
    args: Any = Field(None, description="start_link's argument, as tagged JSON (default []).")
    supervisor: str | None = Field(
        None,
        max_length=255,
        pattern=r"^[A-Za-z][\w.]*$",
        description="A registered supervisor (Supervisor or DynamicSupervisor); default: Arsenal's own.",
    )
    child_id: str | None = Field(None, max_length=255, description="The child id (default: a unique one).")
    restart: Literal["permanent", "transient", "temporary"] = "permanent"


class WorkerStarted(Result):
    pid: str
    module: str
    supervisor: str
    child_spec: str = Field(description="The child spec it was started with, in the sandbox's language.")
    generated_version: int | None = Field(description="The version of a generated module, else null.")


@register
class CreateDynamicWorker(Operation[WorkerParams, WorkerStarted]):
    name = "create_dynamic_worker"
    category = CATEGORY
    summary = (
        "Start a worker in a sandbox under a chosen supervisor: an existing module or a generated GenServer."
    )
    cost = "For a generated worker one compile in the sandbox; then one supervisor:start_child."
    risk = "A new process under the supervisor; a crashing worker counts against that supervisor's intensity."
    params = WorkerParams
    result = WorkerStarted
    severity = Severity.write
    method = "POST"
    path = "/api/v1/sandboxes/{sandbox_id}/workers"
    needs_node = False
    timeout = 90.0
    example = {
        "sandbox_id": "pool",
        "worker": {
            "name": "Greeter",
            "initial_state": "%{greeted: 0}",
            "handlers": [
                {"kind": "call", "pattern": "{:hello, who}", "body": '{:reply, "hi " <> who, state}'}
            ],
        },
    }

    async def execute(self, ctx: Context, params: WorkerParams) -> WorkerStarted:
        if (params.module is None) == (params.worker is None):
            raise OperationError(
                ErrorCode.validation_error, "give module (an existing one) or worker (to generate)"
            )
        manager = _manager(ctx)
        spec = manager.spec(params.sandbox_id)
        version = None
        if params.worker is not None:
            module = f"Elixir.{params.namespace}.{params.worker.name}"
            source = render_worker(params.worker, params.namespace, registered=params.registered)
            file = f"dynamic/{snake_case(params.worker.name)}.ex"
            await manager.load_modules(params.sandbox_id, "elixir", {file: source}, "dynamic worker")
            version = manager.versions(params.sandbox_id, module)[-1].version
        else:
            module, _ = manager.resolve_module(params.sandbox_id, params.module or "", spec.code_language)
        args = [] if params.args is None else _term(params.args, "args")
        child_id = (
            params.child_id.encode() if params.child_id else (module.encode(), secrets.token_hex(4).encode())
        )
        started = await manager.start_worker(
            params.sandbox_id,
            module,
            args,
            child_id=child_id,
            restart=params.restart,
            supervisor=module_atom(params.supervisor, spec.code_language) if params.supervisor else None,
        )
        node = await manager.node(params.sandbox_id)
        language = spec.code_language
        return WorkerStarted(
            pid=pid_text(started[Atom("pid")]),
            module=module.removeprefix("Elixir."),
            supervisor=_shown(started[Atom("supervisor")], language),
            child_spec=render(started[Atom("child_spec")], language, max_items=50, local_node=node.name),
            generated_version=version,
        )


class GenerateParams(Params):
    sandbox_id: SandboxId
    app: AppSpec = Field(
        description="The application: name, supervision tree, GenServers with state and handlers."
    )
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    policy: SecurityPolicy = Field(default_factory=SecurityPolicy)
    persistent: bool = False


class GeneratedApp(Result):
    sandbox: SandboxSummary
    project_dir: str = Field(
        description="Where the mix project was written (mix compile / iex -S mix there)."
    )
    files: list[str]
    modules: list[str]


@register
class GenerateApplication(Operation[GenerateParams, GeneratedApp]):
    name = "generate_application"
    category = CATEGORY
    summary = "Write a complete mix project from a spec and start it in a new sandbox."
    cost = "Writes a few files under $ARSENAL_HOME/projects, then as create_sandbox."
    risk = "As create_sandbox; the handlers' code is scanned against the policy before it is compiled."
    params = GenerateParams
    result = GeneratedApp
    severity = Severity.write
    method = "POST"
    path = "/api/v1/sandboxes/generate"
    needs_node = False
    timeout = 120.0
    example = {
        "sandbox_id": "shop",
        "app": {
            "name": "shop",
            "root": {
                "name": "Root",
                "strategy": "one_for_one",
                "children": [
                    {
                        "type": "worker",
                        "name": "Cart",
                        "initial_state": "%{items: []}",
                        "handlers": [
                            {"kind": "call", "pattern": ":items", "body": "{:reply, state.items, state}"},
                            {
                                "kind": "cast",
                                "pattern": "{:add, item}",
                                "body": "{:noreply, %{state | items: [item | state.items]}}",
                            },
                        ],
                    }
                ],
            },
        },
    }

    async def execute(self, ctx: Context, params: GenerateParams) -> GeneratedApp:
        _policy_needs_admin(ctx, params.policy)
        manager = _manager(ctx)
        files = render_project(params.app)
        project = manager.home / "projects" / params.sandbox_id / params.app.name
        if project.exists():
            shutil.rmtree(project)
        for relative, text in files.items():
            path = project / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        spec = SandboxSpec(
            app=params.app.model_dump(mode="json"),
            limits=params.limits,
            policy=params.policy,
            persistent=params.persistent,
        )
        record = await manager.create(params.sandbox_id, spec)
        return GeneratedApp(
            sandbox=_summary(record),
            project_dir=str(project),
            files=sorted(files),
            modules=module_names(params.app),
        )
