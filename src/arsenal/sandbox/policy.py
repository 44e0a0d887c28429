"""What code run in a sandbox may call: the security policy and its default rules.

The policy is checked by scanning the source's syntax tree inside the sandbox before
anything is compiled (compiling Elixir runs code: module bodies and macros), for every
way Arsenal feeds code in: application source, hot swaps, injected code, the REPL. Each
refused call is reported with its file, line and reason, and nothing of that code runs.

The scan is a guard-rail, not a jail. It sees calls written in the source — including
through ``alias``, ``apply`` and ``spawn`` with literal targets — and refuses calls whose
module or function is computed at run time (``mod.fun()`` with ``mod`` a variable),
because those could reach anything. What keeps a sandbox from hurting the host is that it
is a separate OS process with its own limits, cookie and directory.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..dist import Atom

__all__ = ["DEFAULT_RULES", "PolicyRule", "SecurityPolicy"]

_CALL = re.compile(
    r"^(?P<module>[A-Za-z_][\w.]*)(?::|\.)(?P<function>[a-z_*][\w?!]*|\*)(?:/(?P<arity>\d+))?$"
)


class PolicyRule(BaseModel):
    """One refused call: ``module:function/arity`` (``*`` and no arity mean all)."""

    model_config = ConfigDict(extra="forbid")

    call: str = Field(
        description="`os:cmd/1`, `os:*`, `System.cmd`, `File.write/2`; Elixir modules by their alias."
    )
    reason: str = Field(max_length=300)
    action: Literal["refuse", "relative_path"] = Field(
        "refuse",
        description="`relative_path`: allowed only with a literal relative path without `..` as first "
        "argument.",
    )

    @field_validator("call")
    @classmethod
    def _parse(cls, value: str) -> str:
        if _CALL.match(value) is None:
            raise ValueError(
                f"{value!r} is not module:function/arity (for example os:cmd/1, System.cmd, File.write/2)"
            )
        return value

    def wire(self) -> tuple[bytes, bytes, int, Atom, bytes]:
        module, function, arity = split_call(self.call)
        return (module.encode(), function.encode(), arity, Atom(self.action), self.reason.encode())


def split_call(call: str) -> tuple[str, str, int]:
    """``"System.cmd/3"`` -> ``("Elixir.System", "cmd", 3)``; arity -1 means any."""
    if ":" in call:
        module, _, rest = call.partition(":")
    else:
        module, _, rest = call.rpartition(".")
    function, _, arity = rest.partition("/")
    module = module.lstrip(":")
    if module[:1].isupper() and not module.startswith("Elixir."):
        module = f"Elixir.{module}"
    return module, function, int(arity) if arity else -1


_OS = "runs an OS command or reads the host's environment"
_HALT = "stops the whole node"
_PORT = "opens a port to an OS program or driver"
_CODE = "loads code that the scan has not seen"
_FILE = "touches files: only a literal relative path, inside the sandbox's directory, is allowed"
_NIF = "loads native code, which runs outside the VM's safety"
_DIST = "reaches other nodes"

DEFAULT_RULES: list[PolicyRule] = [
    PolicyRule(call="os:*", reason=_OS),
    PolicyRule(call="System.cmd", reason=_OS),
    PolicyRule(call="System.shell", reason=_OS),
    PolicyRule(call="System.get_env", reason=_OS),
    PolicyRule(call="System.put_env", reason=_OS),
    PolicyRule(call="System.delete_env", reason=_OS),
    PolicyRule(call="System.halt", reason=_HALT),
    PolicyRule(call="System.stop", reason=_HALT),
    PolicyRule(call="erlang:halt", reason=_HALT),
    PolicyRule(call="init:*", reason=_HALT),
    PolicyRule(call="erlang:open_port", reason=_PORT),
    PolicyRule(call="Port.open", reason=_PORT),
    PolicyRule(call="erl_ddll:*", reason=_NIF),
    PolicyRule(call="erlang:load_nif", reason=_NIF),
    PolicyRule(call="code:*", reason=_CODE),
    PolicyRule(call="erlang:load_module", reason=_CODE),
    PolicyRule(call="erlang:purge_module", reason=_CODE),
    PolicyRule(call="compile:*", reason=_CODE),
    PolicyRule(call="erl_eval:*", reason=_CODE),
    PolicyRule(call="Code.*", reason=_CODE),
    PolicyRule(call="file:eval", reason=_CODE),
    PolicyRule(call="file:script", reason=_CODE),
    PolicyRule(call="file:path_eval", reason=_CODE),
    PolicyRule(call="file:path_script", reason=_CODE),
    PolicyRule(call="Kernel.ParallelCompiler.*", reason=_CODE),
    PolicyRule(call="erlang:set_cookie", reason=_DIST),
    PolicyRule(call="net_kernel:*", reason=_DIST),
    PolicyRule(call="rpc:*", reason=_DIST),
    PolicyRule(call="erpc:*", reason=_DIST),
    PolicyRule(call="Node.connect", reason=_DIST),
    PolicyRule(call="Node.spawn", reason=_DIST),
    *(
        PolicyRule(call=call, reason=_FILE, action="relative_path")
        for call in (
            "file:write_file",
            "file:open",
            "file:delete",
            "file:del_dir",
            "file:del_dir_r",
            "file:rename",
            "file:make_dir",
            "file:copy",
            "file:make_link",
            "file:make_symlink",
            "file:write_file_info",
            "file:change_mode",
            "file:set_cwd",
            "File.write",
            "File.write!",
            "File.open",
            "File.open!",
            "File.rm",
            "File.rm!",
            "File.rm_rf",
            "File.rm_rf!",
            "File.rmdir",
            "File.rmdir!",
            "File.mkdir",
            "File.mkdir!",
            "File.mkdir_p",
            "File.mkdir_p!",
            "File.cp",
            "File.cp!",
            "File.cp_r",
            "File.cp_r!",
            "File.rename",
            "File.rename!",
            "File.ln",
            "File.ln_s",
            "File.chmod",
            "File.cd",
            "File.cd!",
            "File.touch",
            "File.touch!",
            "File.stream!",
            "file:read_file",
            "file:consult",
            "file:list_dir",
            "file:read_file_info",
            "file:read_link",
            "File.read",
            "File.read!",
            "File.ls",
            "File.ls!",
            "File.stat",
            "File.stat!",
            "File.lstat",
        )
    ),
]

# Harmless functions of modules refused as a whole.
DEFAULT_ALLOWED = [
    "os:timestamp/0",
    "os:system_time/0",
    "os:system_time/1",
    "os:perf_counter/0",
    "os:perf_counter/1",
    "os:type/0",
    "os:version/0",
    "code:which/1",
    "code:is_loaded/1",
    "code:all_loaded/0",
    "Code.ensure_loaded/1",
    "Code.ensure_loaded?/1",
]


class SecurityPolicy(BaseModel):
    """The calls a sandbox's code may not make. The default refuses OS commands, halting the
    node, ports, NIFs, loading unscanned code, other nodes, and file writes outside the
    sandbox's directory, and refuses dynamic calls."""

    model_config = ConfigDict(extra="forbid")

    rules: list[PolicyRule] = Field(default_factory=lambda: list(DEFAULT_RULES), max_length=500)
    allow: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED), max_length=500)
    dynamic_calls: Literal["refuse", "warn", "allow"] = Field(
        "refuse",
        description="Calls whose module or function is computed at run time (they could reach anything).",
    )

    @field_validator("allow")
    @classmethod
    def _allowed(cls, values: list[str]) -> list[str]:
        for value in values:
            PolicyRule(call=value, reason="allowed")
        return values

    def wire(self) -> dict[Atom, Any]:
        allowed = []
        for call in self.allow:
            module, function, arity = split_call(call)
            allowed.append((module.encode(), function.encode(), arity))
        return {
            Atom("rules"): [rule.wire() for rule in self.rules],
            Atom("allow"): allowed,
            Atom("dynamic"): Atom(self.dynamic_calls),
        }
