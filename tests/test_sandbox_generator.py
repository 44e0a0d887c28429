"""The application generator and the four sandbox templates, built with the real mix and run on a real VM.

Validation and rendering are checked in Python; then every template (and one
spec that uses every generator feature) is written to disk, compiled by
``mix compile --warnings-as-errors`` offline, and started with ``elixir -pa
<ebin>`` running a script that exercises it and prints ``RESULT <key> <inspect>``
lines, which the tests compare.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from arsenal.sandbox.generator import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_SNIPPET_BYTES,
    AppSpec,
    HandlerSpec,
    SupervisorSpec,
    WorkerSpec,
    application_module,
    module_names,
    render_project,
    snake_case,
)
from arsenal.sandbox.templates import TEMPLATES, template

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("elixir", "mix")),
        reason="needs Elixir (elixir, mix)",
    ),
]

TOOL_TIMEOUT = 120


# --- specs used by the tests ------------------------------------------------------------


def counter(name: str = "Counter", **extra: Any) -> WorkerSpec:
    return WorkerSpec(
        name=name,
        initial_state="%{count: 0}",
        handlers=[HandlerSpec(kind="call", pattern=":get", body="{:reply, state.count, state}")],
        **extra,
    )


def app(*children: WorkerSpec | SupervisorSpec, **extra: Any) -> AppSpec:
    fields = {"name": "shop", **extra}
    return AppSpec(
        root=SupervisorSpec(name="Root", strategy="one_for_one", children=list(children)), **fields
    )


def shop_cart() -> AppSpec:
    """Every generator feature at once: a registered worker with guards and all three kinds,
    a counted transient worker, a nested supervisor, a worker without handlers, extra code."""
    counter_worker = WorkerSpec(
        name="Counter",
        initial_state="%{count: Keyword.get(args, :start, 0), ticks: 0}",
        handlers=[
            HandlerSpec(kind="call", pattern=":get", body="{:reply, state.count, state}"),
            HandlerSpec(
                kind="call",
                pattern="{:add, n}",
                guard="is_integer(n)",
                body="state = %{state | count: state.count + n}\n{:reply, state.count, state}",
            ),
            HandlerSpec(kind="call", pattern=":caller", body="{pid, _tag} = from\n{:reply, pid, state}"),
            HandlerSpec(kind="cast", pattern=":reset", body="{:noreply, %{state | count: 0}}"),
            HandlerSpec(kind="info", pattern=":tick", body="{:noreply, %{state | ticks: state.ticks + 1}}"),
            HandlerSpec(kind="call", pattern=":ticks", body="{:reply, state.ticks, state}"),
        ],
    )
    copies = WorkerSpec(
        name="HTTPWorker",
        count=3,
        restart="transient",
        initial_state="%{index: Keyword.fetch!(args, :index)}",
        handlers=[HandlerSpec(kind="call", pattern=":index", body="{:reply, state.index, state}")],
    )
    leaf = WorkerSpec(
        name="Leaf",
        initial_state=":idle",
        handlers=[],
        extra_code='@doc "A helper placed verbatim."\ndef hello, do: :world',
    )
    sub = SupervisorSpec(name="Sub", strategy="rest_for_one", max_restarts=1, max_seconds=9, children=[leaf])
    return AppSpec(
        name="shop_cart",
        description="Every feature of the generator.",
        root=SupervisorSpec(name="Root", strategy="one_for_one", children=[counter_worker, copies, sub]),
    )


def warns() -> AppSpec:
    """A spec whose snippet leaves a variable unused: the compiler must say so (the check can fail)."""
    sloppy = HandlerSpec(kind="call", pattern="{:add, n}", body="{:reply, :ignored, state}")
    return AppSpec(
        name="warns",
        root=SupervisorSpec(
            name="Root",
            strategy="one_for_one",
            children=[WorkerSpec(name="Sloppy", initial_state="0", handlers=[sloppy])],
        ),
    )


def chain(depth: int) -> dict[str, Any]:
    """A tree ``depth`` levels deep, as request data: supervisors nested, one worker at the bottom."""
    node: dict[str, Any] = {"type": "worker", "name": "Bottom", "initial_state": "nil", "handlers": []}
    for level in range(depth - 1, 0, -1):
        node = {"type": "supervisor", "name": f"Level{level}", "strategy": "one_for_one", "children": [node]}
    return node


def invalid(call: Any, *fragments: str) -> str:
    """``call()`` must raise a ValidationError whose text has every fragment; the text."""
    with pytest.raises(ValidationError) as err:
        call()
    text = str(err.value)
    for fragment in fragments:
        assert fragment in text, text
    return text


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Shop", "1shop", "shop-cart", "_shop", "s" * 41, ""])
def test_bad_app_name(name: str) -> None:
    invalid(lambda: AppSpec(name=name, root=SupervisorSpec(name="R", strategy="one_for_one", children=[])))


@pytest.mark.parametrize("name", ["counter", "Counter_1", "Count-er", "C" * 65, "Ünicode", "A.B", ""])
def test_bad_child_name(name: str) -> None:
    invalid(lambda: counter(name), "name")


@pytest.mark.parametrize("module", ["shop", "Shop..Cart", "Shop.cart", "Shop.", "A.B.C.D.E", "Shop Cart"])
def test_bad_module(module: str) -> None:
    invalid(lambda: app(counter(), module=module), "not an Elixir alias")


def test_reserved_names() -> None:
    invalid(lambda: app(counter(), name="logger"), "application of OTP or Elixir")
    invalid(lambda: app(counter(), name="enum"), "'Enum'", "namespace")
    invalid(lambda: app(counter(), module="String"), "namespace")
    invalid(lambda: app(counter("Application")), "'Application'", "taken by the generated project")


def test_duplicate_names_are_named() -> None:
    nested = SupervisorSpec(name="Sub", strategy="one_for_all", children=[counter("Cache")])
    invalid(lambda: app(counter("Cache"), nested), "'Cache'", "used twice")
    invalid(lambda: app(counter("Root")), "'Root'", "used twice")


def test_names_that_share_a_file_name() -> None:
    assert snake_case("HTTPServer") == snake_case("HttpServer") == "http_server"
    invalid(
        lambda: app(counter("HTTPServer"), counter("HttpServer")),
        "'HTTPServer'",
        "'HttpServer'",
        "http_server.ex",
    )


def test_depth_cap() -> None:
    ok = AppSpec.model_validate({"name": "deep", "root": chain(MAX_DEPTH)})
    assert len(module_names(ok)) == MAX_DEPTH + 1
    invalid(lambda: AppSpec.model_validate({"name": "deep", "root": chain(MAX_DEPTH + 1)}), "levels deep")
    # Hostile input is refused at the top, before its depth is walked.
    invalid(lambda: AppSpec.model_validate({"name": "deep", "root": chain(5000)}), "levels deep")


def test_size_cap() -> None:
    workers = [counter(f"W{i}") for i in range(MAX_NODES - 1)]
    assert len(module_names(app(*workers))) == MAX_NODES + 1  # and the Application
    invalid(lambda: app(*workers, counter("OneTooMany")), f"more than {MAX_NODES}", "count")


def test_snippet_cap_counts_bytes() -> None:
    at_cap = "x" * (MAX_SNIPPET_BYTES - len(":ok # "))
    HandlerSpec(kind="cast", pattern=":go", body=f":ok # {at_cap}")
    invalid(lambda: HandlerSpec(kind="cast", pattern=":go", body="x" * (MAX_SNIPPET_BYTES + 1)), "8 KiB")
    # 4097 characters, 8194 bytes: the cap is on bytes.
    invalid(lambda: counter(extra_code="é" * 4097), "8194 bytes")
    invalid(lambda: WorkerSpec(name="W", initial_state="x" * 9000, handlers=[]), "9000 bytes")
    invalid(lambda: HandlerSpec(kind="info", pattern="{" * 9000, body="{:noreply, state}"), "9000 bytes")


def test_other_field_checks() -> None:
    invalid(lambda: HandlerSpec(kind="call", pattern="{:set, state}", body="{:reply, :ok, state}"), "`state`")
    invalid(lambda: HandlerSpec(kind="call", pattern="{:x, from}", body="{:reply, :ok, state}"), "`from`")
    invalid(lambda: HandlerSpec(kind="call", pattern="", body="{:reply, :ok, state}"), "pattern")
    invalid(lambda: HandlerSpec(kind="reply", pattern=":x", body="x"), "kind")
    invalid(lambda: counter(count=0), "count")
    invalid(lambda: counter(count=65), "count")
    invalid(lambda: counter(restart="sometimes"), "restart")
    invalid(lambda: counter(colour="red"), "colour", "Extra inputs are not permitted")
    invalid(lambda: SupervisorSpec(name="S", strategy="simple_one_for_one", children=[]), "strategy")
    invalid(
        lambda: SupervisorSpec.model_validate(
            {"name": "S", "strategy": "one_for_one", "children": [{"type": "gen_server", "name": "X"}]}
        ),
        "type",
    )


# --- rendering --------------------------------------------------------------------------


def test_rendering_is_deterministic() -> None:
    spec = shop_cart()
    first = render_project(spec)
    assert render_project(spec) == first
    again = AppSpec.model_validate_json(spec.model_dump_json())
    assert render_project(again) == first
    assert list(first) == [
        "mix.exs",
        ".formatter.exs",
        "README.md",
        "lib/shop_cart/application.ex",
        "lib/shop_cart/root.ex",
        "lib/shop_cart/counter.ex",
        "lib/shop_cart/http_worker.ex",
        "lib/shop_cart/sub.ex",
        "lib/shop_cart/leaf.ex",
    ]


def test_names_and_modules() -> None:
    spec = shop_cart()
    assert application_module(spec) == "ShopCart"
    assert application_module(spec.model_copy(update={"module": "Acme.Shop"})) == "Acme.Shop"
    assert module_names(spec) == [
        "ShopCart.Application",
        "ShopCart.Root",
        "ShopCart.Counter",
        "ShopCart.HTTPWorker",
        "ShopCart.Sub",
        "ShopCart.Leaf",
    ]
    files = render_project(spec)
    for module in module_names(spec):
        assert sum(f"defmodule {module} do\n" in text for text in files.values()) == 1, module


def test_rendered_sources() -> None:
    files = render_project(shop_cart())
    mix = files["mix.exs"]
    for fragment in (
        "defmodule ShopCart.MixProject do",
        "app: :shop_cart",
        'version: "0.1.0"',
        'elixir: "~> 1.14"',
        "deps: []",
        "extra_applications: [:logger]",
        "mod: {ShopCart.Application, []}",
    ):
        assert fragment in mix
    assert "ShopCart.Root.start_link([])" in files["lib/shop_cart/application.ex"]
    root = files["lib/shop_cart/root.ex"]
    entries = [
        "ShopCart.Counter,",
        "Supervisor.child_spec({ShopCart.HTTPWorker, [index: 1]}, id: {ShopCart.HTTPWorker, 1}),",
        "Supervisor.child_spec({ShopCart.HTTPWorker, [index: 3]}, id: {ShopCart.HTTPWorker, 3}),",
        "ShopCart.Sub\n",
    ]
    assert [root.index(e) for e in entries] == sorted(root.index(e) for e in entries)
    assert "strategy: :one_for_one, max_restarts: 3, max_seconds: 5" in root
    assert "strategy: :rest_for_one, max_restarts: 1, max_seconds: 9" in files["lib/shop_cart/sub.ex"]

    worker = files["lib/shop_cart/counter.ex"]
    assert "GenServer.start_link(__MODULE__, args, name: __MODULE__)" in worker
    heads = [
        "def handle_call(:get, _from, state) do",
        "def handle_call({:add, n}, _from, state) when is_integer(n) do",
        "def handle_call(:caller, from, state) do",
        "def handle_call(:ticks, _from, state) do",
        "def handle_call(request, _from, state) do",
        "def handle_cast(:reset, state) do",
        "def handle_cast(request, state) do",
        "def handle_info(:tick, state) do",
        "def handle_info(msg, state) do",
    ]
    assert [worker.index(h) for h in heads] == sorted(worker.index(h) for h in heads)
    copies = files["lib/shop_cart/http_worker.ex"]
    assert "GenServer.start_link(__MODULE__, args)\n" in copies
    assert "use GenServer, restart: :transient" in copies
    assert "handle_cast" not in copies and "handle_info" not in copies  # catch-alls only for kinds present
    leaf = files["lib/shop_cart/leaf.ex"]
    assert "def handle_" not in leaf and "require Logger" not in leaf
    assert "  def hello, do: :world\n" in leaf and "defp initial_state(_args) do\n    :idle\n" in leaf
    readme = files["README.md"]
    assert "Every feature of the generator." in readme and "`ShopCart.HTTPWorker`: worker x 3" in readme


def test_snippets_are_placed_verbatim() -> None:
    body = '# "quoted" \\ #{not_interpolated_by_python}\n{:reply, """\nheredoc\n""", state}'
    files = render_project(
        app(
            WorkerSpec(
                name="W",
                initial_state="nil",
                handlers=[
                    HandlerSpec(kind="call", pattern='{:x, %{"k" => v}}', body=f"_ = v\n{body}"),
                ],
            )
        )
    )
    text = files["lib/shop/w.ex"]
    assert 'def handle_call({:x, %{"k" => v}}, _from, state) do' in text
    assert (
        '    # "quoted" \\ #{not_interpolated_by_python}\n    {:reply, """\n    heredoc\n    """, state}'
        in text
    )


# --- templates --------------------------------------------------------------------------


def test_templates_catalogue() -> None:
    assert list(TEMPLATES) == ["worker_pool", "pubsub", "pipeline", "cascade"]
    with pytest.raises(ValueError, match="worker_pool, pubsub, pipeline, cascade"):
        template("nope")
    copy = template("cascade")
    copy.root.children.clear()
    assert TEMPLATES["cascade"].root.children, "template() must hand out a copy"
    for name, spec in TEMPLATES.items():
        assert spec.name == name and spec.description
        assert template(name) == spec


# --- compiled and run -------------------------------------------------------------------


@dataclass
class Built:
    """A rendered project and what ``mix compile --warnings-as-errors`` said about it."""

    spec: AppSpec
    path: Path
    returncode: int
    output: str

    @property
    def ebin(self) -> Path:
        return self.path / "_build" / "dev" / "lib" / self.spec.name / "ebin"


def mix_env(root: Path) -> dict[str, str]:
    return {**os.environ, "MIX_ENV": "dev", "HEX_OFFLINE": "1", "MIX_HOME": str(root / "mix_home")}


def write_project(spec: AppSpec, path: Path) -> None:
    for relative, text in render_project(spec).items():
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        (path / relative).write_text(text)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Built]]:
    """Every template and ``shop_cart()`` rendered and compiled once, the mix runs side by side."""
    root = tmp_path_factory.mktemp("sandbox_projects")
    specs = {**TEMPLATES, "shop_cart": shop_cart(), "warns": warns()}
    procs: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    for name, spec in specs.items():
        path = root / name
        write_project(spec, path)
        proc = subprocess.Popen(
            ["mix", "compile", "--warnings-as-errors"],
            cwd=path,
            env=mix_env(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs[name] = (path, proc)
    result = {}
    for name, (path, proc) in procs.items():
        output, _ = proc.communicate(timeout=TOOL_TIMEOUT)
        result[name] = Built(specs[name], path, proc.returncode, output)
    yield result


def run_elixir(project: Built, script: str) -> dict[str, str]:
    """Run ``script`` on a fresh VM with the project's ebin; its ``RESULT key value`` lines as a dict."""
    assert project.returncode == 0, project.output
    proc = subprocess.run(
        ["elixir", "-pa", str(project.ebin), "-e", script],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        env=mix_env(project.path.parent),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            _, key, value = line.split(" ", 2)
            results[key] = value
    return results


@pytest.mark.parametrize("name", [*TEMPLATES, "shop_cart"])
def test_compiles_without_warnings(built: dict[str, Built], name: str) -> None:
    project = built[name]
    assert project.returncode == 0, project.output
    assert "warning" not in project.output.lower(), project.output
    beams = sorted(p.stem for p in project.ebin.glob("*.beam"))
    assert beams == sorted(f"Elixir.{m}" for m in module_names(project.spec))
    assert (project.ebin / f"{project.spec.name}.app").exists()


def test_a_warning_fails_the_build(built: dict[str, Built]) -> None:
    project = built["warns"]
    assert project.returncode != 0
    assert 'variable "n" is unused' in project.output, project.output


def test_templates_are_mix_formatted(built: dict[str, Built]) -> None:
    procs = {
        name: subprocess.Popen(
            ["mix", "format", "--check-formatted"],
            cwd=built[name].path,
            env=mix_env(built[name].path.parent),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in [*TEMPLATES, "shop_cart"]
    }
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=TOOL_TIMEOUT)
        assert proc.returncode == 0, f"{name}: {output}"


# The scripts print maps with sorted keys: from OTP 26 on a small map's own order is an internal one.
SHOP_CART = r"""
{:ok, _} = Application.ensure_all_started(:shop_cart)
sorted = [custom_options: [sort_maps: true]]
alias ShopCart.Counter
IO.puts("RESULT add " <> inspect([GenServer.call(Counter, {:add, 5}), GenServer.call(Counter, {:add, 2})]))
IO.puts("RESULT guarded " <> inspect(GenServer.call(Counter, {:add, "x"})))
IO.puts("RESULT caller " <> inspect(GenServer.call(Counter, :caller) == self()))
send(Counter, :tick)
send(Counter, :tock)
GenServer.cast(Counter, :unknown)
GenServer.cast(Counter, :reset)
IO.puts("RESULT after " <> inspect({GenServer.call(Counter, :get), GenServer.call(Counter, :ticks)}))
ids = for {id, _pid, type, _} <- Supervisor.which_children(ShopCart.Root), do: {id, type}
IO.puts("RESULT children " <> inspect(Enum.sort(ids)))
indexes =
  for {{ShopCart.HTTPWorker, _}, pid, _, _} <- Supervisor.which_children(ShopCart.Root),
      do: GenServer.call(pid, :index)
IO.puts("RESULT indexes " <> inspect(Enum.sort(indexes)))
IO.puts("RESULT registered " <> inspect(Process.whereis(ShopCart.HTTPWorker)))
IO.puts("RESULT restart " <> inspect(ShopCart.HTTPWorker.child_spec([]).restart))
IO.puts("RESULT counts " <> inspect(Supervisor.count_children(ShopCart.Root), sorted))
IO.puts("RESULT leaf " <> inspect({ShopCart.Leaf.hello(), :sys.get_state(ShopCart.Leaf)}))
"""


def test_generated_features_run(built: dict[str, Built]) -> None:
    out = run_elixir(built["shop_cart"], SHOP_CART)
    assert out["add"] == "[5, 7]"
    assert out["guarded"] == '{:error, {:unknown_call, {:add, "x"}}}'  # the catch-all, not a crash
    assert out["caller"] == "true"
    assert out["after"] == "{0, 1}"  # :tock and :unknown were logged, :reset and :tick handled
    assert out["children"] == (
        "[{ShopCart.Counter, :worker}, {ShopCart.Sub, :supervisor}, {{ShopCart.HTTPWorker, 1}, :worker}, "
        "{{ShopCart.HTTPWorker, 2}, :worker}, {{ShopCart.HTTPWorker, 3}, :worker}]"
    )
    assert out["indexes"] == "[1, 2, 3]"
    assert out["registered"] == "nil"
    assert out["restart"] == ":transient"
    assert out["counts"] == "%{active: 5, specs: 5, supervisors: 1, workers: 4}"
    assert out["leaf"] == "{:world, :idle}"


WORKER_POOL = r"""
{:ok, _} = Application.ensure_all_started(:worker_pool)
sorted = [custom_options: [sort_maps: true]]
alias WorkerPool.Dispatcher
IO.puts("RESULT runs " <> inspect(for i <- 1..8, do: Dispatcher.run(fn -> i * i end)))
IO.puts("RESULT term " <> inspect(Dispatcher.run(:hello)))
IO.puts("RESULT raise " <> inspect(Dispatcher.run(fn -> raise "boom" end)))
IO.puts("RESULT stats " <> inspect(Dispatcher.stats(), sorted))
done =
  for {{WorkerPool.Worker, i}, pid, _, _} <- Supervisor.which_children(WorkerPool.Pool),
      into: %{},
      do: {i, GenServer.call(pid, :jobs_done)}
IO.puts("RESULT done " <> inspect(done, sorted))
# Four jobs that wait for each other: they only finish if four workers run them at once.
parent = self()
job = fn ->
  send(parent, {:started, self()})
  receive do
    :go -> :released
  after
    5000 -> :never_released
  end
end
tasks = for _ <- 1..4, do: Task.async(fn -> Dispatcher.run(job, 10_000) end)
workers = for _ <- 1..4, do: (receive do {:started, pid} -> pid after 5000 -> nil end)
Enum.each(workers, &(is_pid(&1) && send(&1, :go)))
IO.puts("RESULT parallel " <> inspect(tasks |> Enum.map(&Task.await(&1, 10_000)) |> Enum.sort()))
"""


def test_worker_pool_dispatches_round_robin(built: dict[str, Built]) -> None:
    out = run_elixir(built["worker_pool"], WORKER_POOL)
    assert out["runs"] == (
        "[{:ok, 1, 1}, {:ok, 4, 2}, {:ok, 9, 3}, {:ok, 16, 4}, {:ok, 25, 1}, {:ok, 36, 2}, {:ok, 49, 3}, "
        "{:ok, 64, 4}]"
    )
    assert out["term"] == "{:ok, :hello, 1}"
    assert out["raise"] == '{:error, "boom", 2}'  # and the worker lives on: it ran the next jobs
    assert out["stats"] == "%{by_worker: %{1 => 3, 2 => 3, 3 => 2, 4 => 2}, dispatched: 10, workers: 4}"
    assert out["done"] == "%{1 => 3, 2 => 3, 3 => 2, 4 => 2}"
    assert (
        out["parallel"]
        == "[{:ok, :released, 1}, {:ok, :released, 2}, {:ok, :released, 3}, {:ok, :released, 4}]"
    )


PUBSUB = r"""
{:ok, _} = Application.ensure_all_started(:pubsub)
alias PubSub.{Broker, Recorder}
parent = self()
subscriber =
  spawn(fn ->
    :ok = Broker.subscribe("orders")
    send(parent, :subscribed)
    receive do
      {:event, topic, msg} -> send(parent, {:got, topic, msg})
    end
    Process.sleep(:infinity)
  end)
receive do
  :subscribed -> :ok
after
  5000 -> raise "the subscriber did not subscribe"
end
IO.puts("RESULT topics " <> inspect(Broker.topics()))
IO.puts("RESULT orders " <> inspect(Broker.publish("orders", {:new, 1})))
IO.puts("RESULT payments " <> inspect(Broker.publish("payments", :paid)))
IO.puts("RESULT got " <> inspect(receive do {:got, t, m} -> {t, m} after 5000 -> :nothing end))
IO.puts("RESULT recorded " <> inspect(Recorder.events()))
ref = Process.monitor(subscriber)
Process.exit(subscriber, :kill)
receive do
  {:DOWN, ^ref, _, _, _} -> :ok
end
dropped =
  Enum.find_value(1..500, fn _ ->
    topics = Broker.topics()
    if Map.has_key?(topics, "orders"), do: Process.sleep(10) && nil, else: topics
  end)
IO.puts("RESULT dropped " <> inspect(dropped))
for i <- 1..150, do: Broker.publish("bulk", i)
events = Recorder.events()
IO.puts("RESULT kept " <> inspect({length(events), Recorder.seen(), hd(events), List.last(events)}))
"""


def test_pubsub_publishes_and_drops_dead_subscribers(built: dict[str, Built]) -> None:
    out = run_elixir(built["pubsub"], PUBSUB)
    assert out["topics"] == '%{:all => 1, "orders" => 1}'  # the Recorder is on :all
    assert out["orders"] == "{:ok, 2}"
    assert out["payments"] == "{:ok, 1}"
    assert out["got"] == '{"orders", {:new, 1}}'
    assert out["recorded"] == '[{"orders", {:new, 1}}, {"payments", :paid}]'
    assert out["dropped"] == "%{all: 1}"
    assert out["kept"] == '{100, 152, {"bulk", 51}, {"bulk", 150}}'


PIPELINE = r"""
{:ok, _} = Application.ensure_all_started(:pipeline)
alias Pipeline.{Source, Transform, Sink}
IO.puts("RESULT pushed " <> inspect(for x <- [1, 2, 3, "abc", :other, 2.5], do: Source.push(x)))
:ok = Source.flush()
IO.puts("RESULT results " <> inspect(Sink.results()))
[source, transform, sink] = Enum.map([Source, Transform, Sink], &Process.whereis/1)
Process.exit(transform, :kill)
restarted = fn name, old ->
  Enum.find_value(1..500, fn _ ->
    pid = Process.whereis(name)
    if is_pid(pid) and pid != old, do: pid, else: (Process.sleep(10) && nil)
  end)
end
new_transform = restarted.(Transform, transform)
new_sink = restarted.(Sink, sink)
kept_source = Process.whereis(Source) == source
IO.puts("RESULT restarted " <> inspect({kept_source, is_pid(new_transform), is_pid(new_sink)}))
IO.puts("RESULT emptied " <> inspect(Sink.results()))
IO.puts("RESULT again " <> inspect(Source.push(10)))
:ok = Source.flush()
IO.puts("RESULT results2 " <> inspect(Sink.results()))
"""


def test_pipeline_flows_and_restarts_downstream(built: dict[str, Built]) -> None:
    out = run_elixir(built["pipeline"], PIPELINE)
    assert out["pushed"] == "[ok: 1, ok: 2, ok: 3, ok: 4, ok: 5, ok: 6]"
    assert out["results"] == '[2, 4, 6, "ABC", :other, 5.0]'
    assert out["restarted"] == "{true, true, true}"  # rest_for_one: Source kept, Transform and Sink new
    assert out["emptied"] == "[]"
    assert out["again"] == "{:ok, 7}"
    assert out["results2"] == "[20]"


CASCADE = r"""
{:ok, _} = Application.ensure_all_started(:cascade)
sorted = [custom_options: [sort_maps: true]]
names = [Cascade.First, Cascade.Second, Cascade.Third, Cascade.Left, Cascade.Right]
names = names ++ [Cascade.Chain, Cascade.Branch]
snap = fn -> Map.new(names, &{&1, Process.whereis(&1)}) end
changed = fn a, b -> for n <- names, a[n] != b[n], do: n |> Module.split() |> List.last() end
await = fn name, old ->
  Enum.find_value(1..500, fn _ ->
    pid = Process.whereis(name)
    if is_pid(pid) and pid != old, do: pid, else: (Process.sleep(10) && nil)
  end) || raise "#{inspect(name)} was not restarted"
end
for _ <- 1..3, do: Cascade.First.bump()
Cascade.Left.bump()
IO.puts("RESULT counts " <> inspect({Cascade.First.count(), Cascade.Left.count()}))
s0 = snap.()
Cascade.Second.crash()
await.(Cascade.Third, s0[Cascade.Third])
s1 = snap.()
IO.puts("RESULT second " <> inspect({changed.(s0, s1), Cascade.First.count()}))
Cascade.Left.crash()
await.(Cascade.Left, s1[Cascade.Left])
s2 = snap.()
IO.puts("RESULT left " <> inspect({changed.(s1, s2), Cascade.Left.count()}))
Cascade.Right.crash()
await.(Cascade.Right, s2[Cascade.Right])
s3 = snap.()
IO.puts("RESULT right " <> inspect(changed.(s2, s3)))
Cascade.Right.crash()
Enum.each(names, &await.(&1, s3[&1]))
s4 = snap.()
IO.puts("RESULT escalated " <> inspect({changed.(s3, s4), Cascade.First.count()}))
counts = Enum.map([Cascade.Root, Cascade.Chain, Cascade.Branch], &Supervisor.count_children/1)
IO.puts("RESULT children " <> inspect(counts, sorted))
"""


def test_cascade_failures_follow_the_strategies(built: dict[str, Built]) -> None:
    out = run_elixir(built["cascade"], CASCADE)
    assert out["counts"] == "{3, 1}"
    assert out["second"] == '{["Second", "Third"], 3}'  # rest_for_one: First keeps its pid and count
    assert out["left"] == '{["Left"], 0}'  # one_for_one: only Left
    assert out["right"] == '["Right"]'
    # The third crash in Branch passes its intensity (2 in 30 s): one_for_all at the root restarts all.
    assert out["escalated"] == '{["First", "Second", "Third", "Left", "Right", "Chain", "Branch"], 0}'
    assert out["children"] == (
        "[%{active: 2, specs: 2, supervisors: 2, workers: 0}, "
        "%{active: 3, specs: 3, supervisors: 0, workers: 3}, "
        "%{active: 2, specs: 2, supervisors: 0, workers: 2}]"
    )
