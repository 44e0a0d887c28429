"""Elixir OTP applications from a declarative spec: a tree of GenServers, written as a mix project.

A sandbox runs code that a user describes, not code a user uploads as files: an
:class:`AppSpec` names an application, its supervisors (strategy, intensity,
children in order) and its workers (initial state, one clause per message it
handles), and :func:`render_project` turns it into a complete mix project with
no dependencies (``mix.exs``, ``.formatter.exs``, ``README.md``, ``lib/...``)
that compiles offline, in a sandbox node or with ``mix compile``.

What lands in the source is of two kinds only, so that nothing has to be escaped:

* names (the application, its top-level module, each supervisor and worker),
  validated by a regular expression, so they can only be atoms and aliases;
* code snippets (patterns, bodies, initial states, extra definitions), placed
  verbatim (indented) where the spec says. They are Elixir the sandbox compiles;
  the generator neither parses nor rewrites them. A snippet is at most 8 KiB.

The tree is bounded (:data:`MAX_DEPTH` levels, :data:`MAX_NODES` specs) and its
names are unique, so every module and file name is too. Rendering is
deterministic: the same spec gives the same bytes, so a sandbox can tell whether
a project changed by comparing what it renders.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SNIPPET_BYTES",
    "AppSpec",
    "HandlerSpec",
    "SupervisorSpec",
    "WorkerSpec",
    "application_module",
    "module_names",
    "render_project",
    "snake_case",
]

MAX_SNIPPET_BYTES = 8 * 1024
"""Each code snippet (pattern, guard, body, initial state, extra code), in UTF-8 bytes."""
MAX_DEPTH = 8
"""Levels of the tree: the root supervisor is level 1, its children level 2, and so on."""
MAX_NODES = 256
"""Supervisor and worker specs in one tree (a worker spec with ``count`` > 1 is one spec)."""
MAX_COUNT = 64
"""Copies of one worker under its supervisor."""

ELIXIR_VERSION = "~> 1.14"
APP_VERSION = "0.1.0"
INDENT = "  "

_NAME = r"^[A-Z][A-Za-z0-9]{0,63}$"
_APP_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_MODULE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}(\.[A-Z][A-Za-z0-9]{0,63}){0,3}$")

RESERVED_NAMES = frozenset({"Application", "MixProject"})
"""Child names the project itself uses: ``<Module>.Application`` and mix.exs's ``<Module>.MixProject``."""

RESERVED_APPS = frozenset(
    {
        *("asn1", "common_test", "compiler", "crypto", "debugger", "dialyzer", "diameter", "edoc"),
        *("eldap", "erl_interface", "erts", "et", "eunit", "ftp", "inets", "jinterface", "kernel"),
        *("megaco", "mnesia", "observer", "odbc", "os_mon", "parsetools", "public_key", "reltool"),
        *("runtime_tools", "sasl", "snmp", "ssh", "ssl", "stdlib", "syntax_tools", "tftp", "tools"),
        *("wx", "xmerl", "eex", "elixir", "ex_unit", "iex", "logger", "mix", "hex"),
    }
)
"""Applications of OTP and Elixir: an application of the same name would replace theirs."""

RESERVED_MODULES = frozenset(
    {
        *("Access", "Agent", "Application", "Atom", "Base", "Behaviour", "Bitwise", "Calendar"),
        *("Code", "Collectable", "Config", "Date", "DateTime", "Dict", "DynamicSupervisor", "EEx"),
        *("Elixir", "Enum", "Enumerable", "ExUnit", "Exception", "File", "Float", "Function"),
        *("GenEvent", "GenServer", "HashDict", "HashSet", "Hex", "IEx", "IO", "Inspect", "Integer"),
        *("Kernel", "Keyword", "List", "Logger", "Macro", "Map", "MapSet", "Mix", "Module"),
        *("NaiveDateTime", "Node", "OptionParser", "Path", "Port", "Process", "Protocol", "Range"),
        *("Record", "Regex", "Registry", "Set", "Stream", "String", "StringIO", "Supervisor"),
        *("System", "Task", "Time", "Tuple", "URI", "Version"),
    }
)
"""Top-level namespaces of Elixir itself: ``String.Chars`` or ``Logger.App`` must never be redefined."""


def _snippet_cap(code: str) -> str:
    size = len(code.encode())
    if size > MAX_SNIPPET_BYTES:
        raise ValueError(
            f"this code snippet is {size} bytes; at most {MAX_SNIPPET_BYTES} (8 KiB) are allowed: "
            "move the bulk into helper functions (extra_code) or split the worker"
        )
    return code


Snippet = Annotated[str, AfterValidator(_snippet_cap)]
"""Elixir source placed verbatim; capped at 8 KiB."""
RequiredSnippet = Annotated[str, Field(min_length=1), AfterValidator(_snippet_cap)]
Name = Annotated[str, Field(pattern=_NAME, description="An Elixir alias segment: Counter, Worker2, ...")]


def _uses(code: str, var: str) -> bool:
    """Whether ``var`` occurs in ``code`` as a variable (not as ``:var``, ``x.var``, ``@var`` or ``var:``).

    Only decides whether a parameter is written ``var`` or ``_var``: a false
    positive (the word in a string) costs an "unused variable" warning, never an
    error, and a snippet that uses the variable always finds it bound.
    """
    return re.search(rf"(?<![\w@:.]){var}(?![\w?!]|:(?!:))", code) is not None


def snake_case(name: str) -> str:
    """The file name of an alias segment, as ``Macro.underscore``: ``HTTPServer`` -> ``http_server``."""
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return text.lower()


def _camel_case(app: str) -> str:
    """The default top-level module, as ``Macro.camelize``: ``shop_cart`` -> ``ShopCart``."""
    return "".join(part[:1].upper() + part[1:] for part in app.split("_") if part)


class HandlerSpec(BaseModel):
    """One clause of ``handle_call/3``, ``handle_cast/2`` or ``handle_info/2``.

    ``pattern`` is the head's message pattern, ``guard`` (optional) its ``when``
    condition, ``body`` the clause body: ``state`` is in scope (and ``from`` for a
    call); it evaluates to what the callback returns (``{:reply, x, state}``,
    ``{:noreply, state}``, ``{:stop, reason, state}``, ...).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["call", "cast", "info"]
    pattern: RequiredSnippet = Field(description='The message pattern, e.g. ":get" or "{:add, n}".')
    body: RequiredSnippet = Field(description="Elixir code; `state` (and `from` for a call) are in scope.")
    guard: Snippet = Field(default="", description="An optional guard, e.g. `is_integer(n)` (no `when`).")

    @field_validator("pattern")
    @classmethod
    def _pattern_keeps_callback_vars(cls, pattern: str) -> str:
        """A pattern that binds ``state`` or ``from`` would silently turn them into an equality match."""
        for var in ("state", "from"):
            if _uses(pattern, var):
                raise ValueError(
                    f"the pattern {pattern!r} uses the variable `{var}`, which the callback binds "
                    "(the GenServer state / the caller); name it differently"
                )
        return pattern


class WorkerSpec(BaseModel):
    """A GenServer: ``<Module>.<name>`` in ``lib/<app>/<snake_case(name)>.ex``.

    With ``count`` 1 it is registered as its module name; with more, the
    supervisor starts ``count`` copies with ids ``{Module, i}`` (i = 1..count),
    each given ``[index: i]`` as ``args``, and none is registered.
    ``extra_code`` is placed in the module as is: helper ``def``s, a client API,
    ``code_change/3`` (callbacks need ``@impl true``).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["worker"] = "worker"
    name: Name
    initial_state: RequiredSnippet = Field(
        description="Elixir expression; `args` (the keyword list given to start_link) is in scope."
    )
    handlers: list[HandlerSpec]
    count: int = Field(default=1, ge=1, le=MAX_COUNT)
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    extra_code: Snippet = ""


class SupervisorSpec(BaseModel):
    """A supervisor: ``<Module>.<name>``, its strategy and intensity, and its children in start order."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervisor"] = "supervisor"
    name: Name
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"]
    max_restarts: int = Field(default=3, ge=0, le=1_000_000)
    max_seconds: int = Field(default=5, ge=1, le=86_400)
    children: list[Annotated[WorkerSpec | SupervisorSpec, Field(discriminator="type")]]

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        """Refuse a tree too deep or too big before its children are validated (walks <= MAX_NODES + 1)."""
        depth, nodes = _shape(data)
        if depth > MAX_DEPTH:
            raise ValueError(
                f"the supervision tree is more than {MAX_DEPTH} levels deep "
                "(the root supervisor is level 1); flatten it"
            )
        if nodes > MAX_NODES:
            raise ValueError(
                f"the supervision tree has more than {MAX_NODES} supervisors and workers; "
                "use `count` on a worker for many copies of it"
            )
        return data

    @model_validator(mode="after")
    def _unique(self) -> SupervisorSpec:
        _check_unique(self)
        return self

    def walk(self) -> Iterator[WorkerSpec | SupervisorSpec]:
        """This supervisor and everything under it, depth first, in start order."""
        yield self
        for child in self.children:
            if isinstance(child, SupervisorSpec):
                yield from child.walk()
            else:
                yield child


def _children_of(node: Any) -> list[Any]:
    """The children of a raw (dict) or validated supervisor; [] for anything else."""
    if isinstance(node, SupervisorSpec):
        return list(node.children)
    if isinstance(node, dict) and node.get("type", "supervisor") == "supervisor":
        children = node.get("children")
        return list(children) if isinstance(children, list) else []
    return []


def _shape(root: Any) -> tuple[int, int]:
    """(depth, nodes) of a tree given as data or models, stopping as soon as either passes its cap."""
    depth, nodes = 0, 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, level = stack.pop()
        nodes += 1
        depth = max(depth, level)
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            break
        stack.extend((child, level + 1) for child in _children_of(node))
    return depth, nodes


def _check_unique(root: SupervisorSpec) -> None:
    """Names, and the file names made of them, are unique across the tree; reserved names are refused."""
    names: set[str] = set()
    files: dict[str, str] = {}
    for spec in root.walk():
        if spec.name in RESERVED_NAMES:
            raise ValueError(f"the name {spec.name!r} is taken by the generated project; pick another")
        if spec.name in names:
            raise ValueError(
                f"the name {spec.name!r} is used twice in the tree; every supervisor and worker is a "
                "module of its own and needs a unique name"
            )
        file = snake_case(spec.name)
        if file in files:
            raise ValueError(
                f"the names {files[file]!r} and {spec.name!r} give the same file name {file}.ex; "
                "rename one of them"
            )
        names.add(spec.name)
        files[file] = spec.name


class AppSpec(BaseModel):
    """An OTP application: its name, top-level module, and root supervisor."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_APP_NAME, description="The OTP application name, e.g. shop_cart.")
    module: str | None = Field(
        default=None,
        description="The top-level Elixir alias (default: the CamelCase of name, shop_cart -> ShopCart).",
    )
    description: str = Field(default="", max_length=2000, description="Goes into README.md only.")
    root: SupervisorSpec

    @field_validator("name")
    @classmethod
    def _not_a_system_app(cls, name: str) -> str:
        if name in RESERVED_APPS:
            raise ValueError(f"{name!r} is an application of OTP or Elixir; pick another name")
        return name

    @field_validator("module")
    @classmethod
    def _alias(cls, module: str | None) -> str | None:
        if module is not None and not _MODULE.match(module):
            raise ValueError(
                f"module {module!r} is not an Elixir alias (like ShopCart or Acme.Shop: "
                "up to 4 segments, each a capital letter then letters and digits)"
            )
        return module

    @model_validator(mode="after")
    def _module_is_ours(self) -> AppSpec:
        top = application_module(self).split(".")[0]
        if top in RESERVED_MODULES:
            raise ValueError(
                f"the top-level module {application_module(self)!r} would live in Elixir's own {top} "
                "namespace; set `module` (or the name) to something else"
            )
        return self


def application_module(spec: AppSpec) -> str:
    """The top-level alias of the project: ``spec.module`` or the CamelCase of its name."""
    return spec.module or _camel_case(spec.name)


def module_names(spec: AppSpec) -> list[str]:
    """Every module compiled from ``lib/`` (Elixir form, ``Shop.Application``), the Application first,
    then the tree depth first in start order. (``mix.exs``'s ``<Module>.MixProject`` is not among them.)"""
    top = application_module(spec)
    return [f"{top}.Application", *(f"{top}.{node.name}" for node in spec.root.walk())]


# --- rendering ----------------------------------------------------------------


def _indent(code: str, level: int) -> str:
    """``code`` with every non-blank line indented ``level`` steps (heredocs keep their content)."""
    pad = INDENT * level
    lines = code.strip("\n").split("\n")
    return "\n".join(pad + line if line.strip() else "" for line in lines)


def _oneline(code: str) -> str:
    return " ".join(code.split())


def _mix_exs(spec: AppSpec, top: str) -> str:
    return f"""defmodule {top}.MixProject do
  use Mix.Project

  # Generated by Arsenal. No dependencies: it builds offline with `mix compile`.
  def project do
    [
      app: :{spec.name},
      version: "{APP_VERSION}",
      elixir: "{ELIXIR_VERSION}",
      start_permanent: Mix.env() == :prod,
      deps: []
    ]
  end

  def application do
    [
      extra_applications: [:logger],
      mod: {{{top}.Application, []}}
    ]
  end
end
"""


_FORMATTER = '[\n  inputs: ["{mix,.formatter}.exs", "{config,lib,test}/**/*.{ex,exs}"]\n]\n'


def _application_ex(spec: AppSpec, top: str) -> str:
    return f'''defmodule {top}.Application do
  @moduledoc """
  The `:{spec.name}` application (generated by Arsenal): starts the root supervisor `{top}.{spec.root.name}`.
  """
  use Application

  @impl true
  def start(_type, _args) do
    {top}.{spec.root.name}.start_link([])
  end
end
'''


def _child_entries(spec: SupervisorSpec, top: str) -> list[str]:
    """The children list of a supervisor: a module, or one child_spec per copy of a counted worker."""
    entries: list[str] = []
    for child in spec.children:
        module = f"{top}.{child.name}"
        if isinstance(child, WorkerSpec) and child.count > 1:
            entries.extend(
                f"Supervisor.child_spec({{{module}, [index: {i}]}}, id: {{{module}, {i}}})"
                for i in range(1, child.count + 1)
            )
        else:
            entries.append(module)
    return entries


def _supervisor_ex(spec: SupervisorSpec, app: AppSpec, top: str) -> str:
    entries = _child_entries(spec, top)
    children = "[]" if not entries else "[\n" + ",\n".join(f"      {e}" for e in entries) + "\n    ]"
    flags = f"strategy: :{spec.strategy}, max_restarts: {spec.max_restarts}, max_seconds: {spec.max_seconds}"
    return f'''defmodule {top}.{spec.name} do
  @moduledoc """
  Supervisor `{spec.name}` of the `:{app.name}` application (generated by Arsenal):
  `:{spec.strategy}`, at most {spec.max_restarts} restarts in {spec.max_seconds} s.
  """
  use Supervisor

  def start_link(args) do
    Supervisor.start_link(__MODULE__, args, name: __MODULE__)
  end

  @impl true
  def init(_args) do
    children = {children}

    Supervisor.init(children, {flags})
  end
end
'''


_CALLBACKS = {
    "call": ("handle_call", "request", "call"),
    "cast": ("handle_cast", "request", "cast"),
    "info": ("handle_info", "msg", "message"),
}


def _clause(handler: HandlerSpec) -> str:
    """One callback clause; ``from``/``state`` are ``_from``/``_state`` if the snippet does not use them."""
    function = _CALLBACKS[handler.kind][0]
    code = f"{handler.guard}\n{handler.body}"
    state = "state" if _uses(code, "state") else "_state"
    params = [handler.pattern.strip()]
    if handler.kind == "call":
        params.append("from" if _uses(code, "from") else "_from")
    params.append(state)
    guard = f" when {handler.guard.strip()}" if handler.guard.strip() else ""
    return f"  def {function}({', '.join(params)}){guard} do\n{_indent(handler.body, 2)}\n  end\n"


def _catch_all(kind: str) -> str:
    """The last clause of a callback: an unexpected message is logged (and a call answered), not a crash."""
    function, var, what = _CALLBACKS[kind]
    params = f"{var}, _from, state" if kind == "call" else f"{var}, state"
    log = f'Logger.warning("#{{inspect(__MODULE__)}} got an unexpected {what}: #{{inspect({var})}}")'
    reply = (
        f"{{:reply, {{:error, {{:unknown_call, {var}}}}}, state}}" if kind == "call" else "{:noreply, state}"
    )
    return f"  def {function}({params}) do\n    {log}\n    {reply}\n  end\n"


def render_worker(spec: WorkerSpec, namespace: str, *, registered: bool = False) -> str:
    """One GenServer module, ``<namespace>.<name>``, on its own (for a worker started at run time).
    ``registered`` gives it the name ``__MODULE__`` (so only one can run at a time)."""
    return _worker_ex(spec, None, namespace, registered=registered)


def _worker_ex(spec: WorkerSpec, app: AppSpec | None, top: str, *, registered: bool | None = None) -> str:
    module = f"{top}.{spec.name}"
    use = "use GenServer" if spec.restart == "permanent" else f"use GenServer, restart: :{spec.restart}"
    if registered is None:
        registered = spec.count == 1
    if registered:
        how = f"registered as `{module}`"
        start = "GenServer.start_link(__MODULE__, args, name: __MODULE__)"
    else:
        how = (
            f"{spec.count} copies with ids `{{{module}, i}}` and `args` `[index: i]`, not registered"
            if app is not None
            else "not registered (start as many as you like)"
        )
        start = "GenServer.start_link(__MODULE__, args)"
    kinds = [kind for kind in _CALLBACKS if any(h.kind == kind for h in spec.handlers)]
    owner = f"of the `:{app.name}` application" if app is not None else "started at run time"
    parts = [
        f'defmodule {module} do\n  @moduledoc """\n  Worker `{spec.name}` {owner} '
        f'(generated by Arsenal):\n  {how}; restart `:{spec.restart}`.\n  """\n  {use}\n',
    ]
    if kinds:
        parts.append("  require Logger\n")
    parts.append(f"  def start_link(args) do\n    {start}\n  end\n")
    parts.append("  @impl true\n  def init(args) do\n    {:ok, initial_state(args)}\n  end\n")
    for kind in kinds:
        clauses = [_clause(h) for h in spec.handlers if h.kind == kind]
        parts.append("  @impl true\n" + "\n".join([*clauses, _catch_all(kind)]))
    args = "args" if _uses(spec.initial_state, "args") else "_args"
    parts.append(f"  defp initial_state({args}) do\n{_indent(spec.initial_state, 2)}\n  end\n")
    if spec.extra_code.strip():
        parts.append(_indent(spec.extra_code, 1) + "\n")
    return "\n".join(parts) + "end\n"


def _tree_lines(spec: SupervisorSpec, top: str, level: int = 0) -> Iterator[str]:
    pad = "  " * level
    yield (
        f"{pad}- `{top}.{spec.name}`: supervisor, `:{spec.strategy}`, "
        f"at most {spec.max_restarts} restarts in {spec.max_seconds} s"
    )
    for child in spec.children:
        if isinstance(child, SupervisorSpec):
            yield from _tree_lines(child, top, level + 1)
            continue
        copies = f" x {child.count} (ids `{{{top}.{child.name}, i}}`)" if child.count > 1 else ""
        handles = ", ".join(f"{h.kind} `{_oneline(h.pattern)}`" for h in child.handlers) or "no messages"
        yield f"{pad}  - `{top}.{child.name}`: worker{copies}, restart `:{child.restart}`; handles {handles}"


def _readme(spec: AppSpec, top: str) -> str:
    description = f"{spec.description.strip()}\n\n" if spec.description.strip() else ""
    tree = "\n".join(_tree_lines(spec.root, top))
    return f"""# {spec.name}

{description}An OTP application generated by Arsenal from an application spec: one
supervision tree of GenServers, no dependencies.

## Supervision tree

Children start in the order listed; `{top}.Application` starts the root.

{tree}

A single worker is registered under its module name; a worker with copies is
not registered (find its pids with `Supervisor.which_children/1`). For each kind
of message a worker handles (call, cast, info), one that matches none of its
clauses is logged (a call is answered `{{:error, {{:unknown_call, request}}}}`)
instead of crashing the worker.

## Run it

    mix compile
    iex -S mix

or, without mix, from the compiled `ebin` directory:

    elixir --no-halt -pa _build/dev/lib/{spec.name}/ebin -e "Application.ensure_all_started(:{spec.name})"
"""


def render_project(spec: AppSpec) -> dict[str, str]:
    """The mix project of ``spec``: relative path -> file content, in a fixed order, same spec same bytes."""
    top = application_module(spec)
    files = {
        "mix.exs": _mix_exs(spec, top),
        ".formatter.exs": _FORMATTER,
        "README.md": _readme(spec, top),
        f"lib/{spec.name}/application.ex": _application_ex(spec, top),
    }
    for node in spec.root.walk():
        path = f"lib/{spec.name}/{snake_case(node.name)}.ex"
        if isinstance(node, SupervisorSpec):
            files[path] = _supervisor_ex(node, spec, top)
        else:
            files[path] = _worker_ex(node, spec, top)
    return files
