"""Live development on an attached node, for admins: hot-swap a module, evaluate code.

The same machinery as in a sandbox (``arsenal_agent_code``: the policy scan before anything is
compiled, soft purge, suspend, load, code_change, resume, the previous version put back when a
code_change fails), aimed at a node Arsenal attached to. That node is somebody's real system,
so both operations are admin-only, destructive in the audit log's eyes, refused on a read-only
attachment, and scanned against the default security policy unless the admin passes another.
Compiling creates the module's atoms on the node, as loading any code does.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import Field

from ..dist import Atom, RpcError, Term, charlist
from ..sandbox.manager import unwrap_reply
from ..sandbox.policy import SecurityPolicy
from ..sandbox.source import module_atom
from .base import Context, Operation, Params, Severity
from .errors import ErrorCode, OperationError
from .registry import register
from .sandboxes import InjectResult, ModuleName, SwapReport, _swap_report, _term, eval_result

__all__ = ["EvaluateCode", "ReloadModule"]

CATEGORY = "code"
CODE = "arsenal_agent_code"


def _require_admin(ctx: Context, what: str) -> None:
    if ctx.principal.role != "admin":
        raise OperationError(ErrorCode.forbidden, f"{what} on an attached node needs an admin")


class ReloadParams(Params):
    module: ModuleName
    source: str = Field(min_length=1, max_length=1024 * 1024, description="The module's new source.")
    language: Literal["elixir", "erlang"] | None = Field(None, description="Default: the node's language.")
    force: bool = Field(False, description="Load even if processes still run old code (a purge kills them).")
    extra: Any = Field(None, description="Extra for code_change/3, as tagged JSON (default []).")
    policy: SecurityPolicy = Field(
        default_factory=SecurityPolicy,
        description="What the new source may call (default: the sandbox default).",
    )


@register
class ReloadModule(Operation[ReloadParams, SwapReport]):
    name = "reload_module"
    category = CATEGORY
    summary = "Hot-swap a module on an attached node from new source, keeping its processes' state (admin)."
    cost = (
        "A compile on the node (CPU of one scheduler for a moment), a scan of up to 100,000 processes for "
        "the module's gen_servers, and per such process sys:suspend, sys:change_code and sys:resume."
    )
    risk = (
        "Destructive: it changes a running system's code. The module's processes pause for the load; "
        "processes in old code block it unless forced (then they are killed). If a code_change fails, the "
        "previous version (from the node's code path) is put back. Admin only; refused on read-only "
        "attachments."
    )
    params = ReloadParams
    result = SwapReport
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/modules/{module}/reload"
    timeout = 90.0
    example = {"module": "my_worker", "source": "-module(my_worker). ...", "language": "erlang"}

    async def execute(self, ctx: Context, params: ReloadParams) -> SwapReport:
        _require_admin(ctx, "loading code")
        node = ctx.require_node()
        node.ensure_writable("loading code")
        language = params.language or node.language
        module = module_atom(params.module, language)
        scratch = f"/tmp/arsenal-code-{secrets.token_hex(6)}"
        request = {
            Atom("lang"): Atom(language),
            Atom("dir"): charlist(scratch),
            Atom("module"): module.encode(),
            Atom("file"): (
                f"{params.module}.{'ex' if language == 'elixir' else 'erl'}".encode(),
                params.source.encode(),
            ),
            Atom("policy"): params.policy.wire(),
            Atom("force"): params.force,
            Atom("extra"): [] if params.extra is None else _term(params.extra, "extra"),
            Atom("previous"): await _loaded_binary(node, module),
        }
        try:
            reply = await node.agent_call("swap", [request], 80, module=CODE)
        finally:
            await node.call("file", "del_dir_r", [charlist(scratch)], 10)
        report = unwrap_reply(reply, "swap")
        report[Atom("version")] = 0
        return _swap_report(report)


async def _loaded_binary(node: Any, module: str) -> Term:
    """The object code the node would load for ``module`` (to put it back), if it has it."""
    try:
        found = await node.call("code", "get_object_code", [Atom(module)], 10)
    except RpcError:
        return Atom("undefined")
    if isinstance(found, tuple) and len(found) == 3:
        return found[1]
    return Atom("undefined")


class EvaluateParams(Params):
    code: str = Field(min_length=1, max_length=256 * 1024)
    language: Literal["elixir", "erlang"] | None = Field(None, description="Default: the node's language.")
    binding: dict[str, Any] = Field(default_factory=dict, description="Variables: name -> tagged JSON term.")
    timeout_ms: int = Field(5000, ge=1, le=60_000, description="The evaluating process is killed after this.")
    policy: SecurityPolicy = Field(default_factory=SecurityPolicy)


@register
class EvaluateCode(Operation[EvaluateParams, InjectResult]):
    name = "evaluate_code"
    category = CATEGORY
    summary = "Evaluate code on an attached node with a binding and a timeout (admin); like inject_code."
    cost = "One process on the node for as long as the code runs (killed at timeout_ms)."
    risk = (
        "Destructive: arbitrary code on a running system, after the policy scan. Its atoms (names, bindings) "
        "are created on the node. Admin only; refused on read-only attachments."
    )
    params = EvaluateParams
    result = InjectResult
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/code/eval"
    timeout = 75.0
    example = {"code": "length(processes())", "language": "erlang"}

    async def execute(self, ctx: Context, params: EvaluateParams) -> InjectResult:
        _require_admin(ctx, "evaluating code")
        node = ctx.require_node()
        node.ensure_writable("evaluating code")
        language = params.language or node.language
        request = {
            Atom("lang"): Atom(language),
            Atom("code"): params.code.encode(),
            Atom("binding"): [(k.encode(), _term(v, f"binding.{k}")) for k, v in params.binding.items()],
            Atom("timeout_ms"): params.timeout_ms,
            Atom("policy"): params.policy.wire(),
        }
        reply = await node.agent_call("eval", [request], params.timeout_ms / 1000 + 10, module=CODE)
        return eval_result(reply, language)
