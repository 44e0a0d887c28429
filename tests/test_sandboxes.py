"""Sandboxes against real nodes: lifecycle, limits, the security policy, hot swap, injected code.

Every sandbox here is a real BEAM node started by Arsenal; every test destroys what it made and
checks that nothing is left (OS processes, EPMD names, directories).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.errors import ErrorCode, OperationError
from arsenal.sandbox.launcher import group_alive, registered_with_epmd
from arsenal.sandbox.manager import SandboxManager
from arsenal.store import default_home

COUNTER_V1 = """
defmodule Counter do
  use GenServer
  def start_link(_), do: GenServer.start_link(__MODULE__, 0, name: __MODULE__)
  def init(n), do: {:ok, n}
  def handle_call(:get, _from, n), do: {:reply, n, n}
  def handle_cast(:inc, n), do: {:noreply, n + 1}
  def park, do: receive(do: (:go -> :ok))
end

defmodule CounterApp do
  use Application
  def start(_type, _args), do: Supervisor.start_link([Counter], strategy: :one_for_one, name: CounterSup)
end
"""

# v2 keeps the count, in a map: code_change turns the old integer state into the new shape.
COUNTER_V2 = """
defmodule Counter do
  use GenServer
  def start_link(_), do: GenServer.start_link(__MODULE__, %{count: 0}, name: __MODULE__)
  def init(s), do: {:ok, s}
  def handle_call(:get, _from, s), do: {:reply, {:v2, s.count}, s}
  def handle_cast(:inc, s), do: {:noreply, %{s | count: s.count + 1}}
  def code_change(_old, n, _extra) when is_integer(n), do: {:ok, %{count: n}}
  def code_change(_old, s, _extra), do: {:ok, s}
  def park, do: receive(do: (:go -> :ok))
end
"""

ERLANG_WORKER = """
-module(erl_worker).
-behaviour(gen_server).
-export([start_link/0, init/1, handle_call/3, handle_cast/2]).
start_link() -> gen_server:start_link({local, erl_worker}, ?MODULE, [], []).
init([]) -> {ok, 10}.
handle_call(get, _From, N) -> {reply, {v1, N}, N}.
handle_cast(_, N) -> {noreply, N}.
"""


async def error_of(call: Awaitable[Any]) -> OperationError:
    """The OperationError ``call`` fails with (each test checks its code and details)."""
    with pytest.raises(OperationError) as err:
        await call
    return err.value


@pytest.fixture
async def arsenal() -> AsyncIterator[Arsenal]:
    async with Arsenal() as service:
        created: list[str] = []
        service.created = created  # type: ignore[attr-defined]
        yield service
        manager = service.services.get(SandboxManager)
        for record in manager.records.list():
            await manager.destroy(record.id)


async def create(arsenal: Arsenal, sandbox_id: str, **params: object) -> object:
    return await arsenal.run("create_sandbox", {"sandbox_id": sandbox_id, **params})


def counter_source() -> dict[str, object]:
    return {"files": {"lib/counter.ex": COUNTER_V1}, "app": "counter", "mod": "CounterApp"}


async def inject(arsenal: Arsenal, sandbox_id: str, code: str, **params: object) -> object:
    return await arsenal.run("inject_code", {"sandbox_id": sandbox_id, "code": code, **params})


# ---------------------------------------------------------------------- lifecycle


async def test_template_sandbox_runs_and_is_destroyed_leaving_nothing(arsenal: Arsenal) -> None:
    created = await create(arsenal, "pool", template="worker_pool", limits={"lifetime_s": 300})
    assert created.status == "running" and created.template == "worker_pool"
    info = await arsenal.run("get_sandbox_info", {"sandbox_id": "pool"})
    assert "worker_pool" in {a["name"] for a in info.applications}
    assert {"WorkerPool.Dispatcher", "WorkerPool.Worker"} <= {m.module for m in info.modules}
    assert info.usage["process_limit"] >= info.limits.max_processes
    ran = await inject(arsenal, "pool", "WorkerPool.Dispatcher.run(fn -> 6 * 7 end)")
    assert ran.ok and ran.value == "{:ok, 42, 1}"

    manager = arsenal.services.get(SandboxManager)
    record = manager.get("pool")
    alive = record.node.split("@")[0]
    directory = Path(record.dir)
    assert directory.is_dir() and group_alive(record.os_pid) and registered_with_epmd(alive)

    await arsenal.run("destroy_sandbox", {"sandbox_id": "pool"})
    assert not group_alive(record.os_pid)
    assert not directory.exists()
    for _ in range(50):
        if not registered_with_epmd(alive):
            break
        await asyncio.sleep(0.1)
    assert not registered_with_epmd(alive)
    assert (await arsenal.run("list_sandboxes", {})).sandboxes == []
    error = await error_of(arsenal.run("get_sandbox_info", {"sandbox_id": "pool"}))
    assert error.code is ErrorCode.not_found and "arsenal sandbox list" in error.message


async def test_bad_ids_duplicates_and_unknown_templates(arsenal: Arsenal) -> None:
    error = await error_of(create(arsenal, "Bad-Id"))
    assert error.code is ErrorCode.validation_error
    error = await error_of(create(arsenal, "tpl", template="no_such_thing"))
    assert error.code is ErrorCode.validation_error and "worker_pool" in error.message
    await create(arsenal, "twice", language="erlang")
    error = await error_of(create(arsenal, "twice"))
    assert error.code is ErrorCode.conflict and "destroy it first" in error.message
    for operation, params in [
        ("destroy_sandbox", {}),
        ("restart_sandbox", {}),
        ("inject_code", {"code": "1"}),
        ("hot_swap_module", {"module": "Counter", "source": "x"}),
        ("list_module_versions", {"module": "Counter"}),
    ]:
        error = await error_of(arsenal.run(operation, {"sandbox_id": "nope", **params}))
        assert error.code is ErrorCode.not_found, operation


async def test_source_that_does_not_compile_leaves_nothing(arsenal: Arsenal) -> None:
    broken = {"files": {"lib/broken.ex": "defmodule Broken do\n  def f(x), do: y\nend\n"}}
    error = await error_of(create(arsenal, "broken", source=broken))
    assert error.code is ErrorCode.validation_error
    assert error.details["errors"][0]["line"] == 2 and "broken.ex" in error.details["errors"][0]["file"]
    assert arsenal.services.get(SandboxManager).records.get("broken") is None
    assert not (default_home() / "sandboxes" / "broken").exists()


async def test_forbidden_source_is_refused_before_it_is_compiled(arsenal: Arsenal) -> None:
    # A module body runs at compile time: the scan must refuse before compiling.
    evil = {
        "files": {
            "lib/evil.ex": 'defmodule Evil do\n  File.write!("/tmp/arsenal-evil", "x")\n'
            '  def f, do: System.cmd("id", [])\nend\n'
        }
    }
    error = await error_of(create(arsenal, "evil", source=evil))
    assert error.code is ErrorCode.forbidden
    calls = {(f["call"], f["line"]) for f in error.details["findings"]}
    assert calls == {("File.write!/2", 2), ("System.cmd/2", 3)}
    assert not Path("/tmp/arsenal-evil").exists()


async def test_erlang_source_and_its_hot_swap(arsenal: Arsenal) -> None:
    source = {"language": "erlang", "files": {"src/erl_worker.erl": ERLANG_WORKER}}
    await create(arsenal, "erl", source=source, language="erlang")
    started = await inject(
        arsenal, "erl", "{ok, P} = erl_worker:start_link(), unlink(P), gen_server:call(P, get)"
    )
    assert started.value == "{v1,10}"
    new = ERLANG_WORKER.replace("{reply, {v1, N}, N}", "{reply, {v2, N}, N}")
    report = await arsenal.run(
        "hot_swap_module", {"sandbox_id": "erl", "module": "erl_worker", "source": new, "language": "erlang"}
    )
    assert report.version == 2 and [p["name"] for p in report.processes] == ["erl_worker"]
    assert (
        await inject(arsenal, "erl", "gen_server:call(erl_worker, get)", language="erlang")
    ).value == "{v2,10}"


async def test_restart_starts_over_from_the_spec(arsenal: Arsenal) -> None:
    await create(arsenal, "again", source=counter_source())
    await inject(arsenal, "again", "GenServer.cast(Counter, :inc); GenServer.call(Counter, :get)")
    before = arsenal.services.get(SandboxManager).get("again")
    restarted = await arsenal.run("restart_sandbox", {"sandbox_id": "again"})
    assert restarted.status == "running" and restarted.node != before.node
    assert not group_alive(before.os_pid)
    assert (await inject(arsenal, "again", "GenServer.call(Counter, :get)")).value == "0"


async def test_a_second_arsenal_sees_and_uses_the_sandbox(arsenal: Arsenal) -> None:
    """What the CLI does: one process creates a sandbox and exits, another uses it."""
    await create(arsenal, "shared", language="elixir")
    async with Arsenal() as other:
        assert [s.sandbox_id for s in (await other.run("list_sandboxes", {})).sandboxes] == ["shared"]
        assert (await inject(other, "shared", "1 + 1")).value == "2"


async def test_persistent_sandboxes_come_back_when_serve_starts(arsenal: Arsenal) -> None:
    await create(arsenal, "keep", source=counter_source(), persistent=True)
    await create(arsenal, "drop", language="erlang")
    manager = arsenal.services.get(SandboxManager)
    for sandbox_id in ("keep", "drop"):
        os.killpg(manager.get(sandbox_id).os_pid, signal.SIGKILL)
    await asyncio.sleep(0.5)
    assert manager.get("keep").status == "failed" and "killed" in manager.get("keep").stop_reason
    async with Arsenal() as serve:
        started = await serve.services.get(SandboxManager).start_persistent()
        assert started == ["keep"]
        assert (await inject(serve, "keep", "GenServer.call(Counter, :get)")).value == "0"
    assert manager.get("drop").status == "failed"


# ---------------------------------------------------------------------- hot swap and versions


async def test_hot_swap_keeps_state_and_every_version_can_come_back(arsenal: Arsenal) -> None:
    await create(arsenal, "swap", source=counter_source())
    await inject(arsenal, "swap", "for _ <- 1..3, do: GenServer.cast(Counter, :inc)")
    report = await arsenal.run(
        "hot_swap_module", {"sandbox_id": "swap", "module": "Counter", "source": COUNTER_V2}
    )
    assert report.version == 2 and report.exports_removed == [] and report.killed == []
    [process] = report.processes
    assert process["name"] == "Counter"
    assert process["code_change"] == "ok" and process["state_changed"] is True
    assert (await inject(arsenal, "swap", "GenServer.call(Counter, :get)")).value == "{:v2, 3}"

    versions = await arsenal.run("list_module_versions", {"sandbox_id": "swap", "module": "Counter"})
    assert [(v.version, v.note, v.current) for v in versions.versions] == [
        (1, "initial", False),
        (2, "hot swap", True),
    ]
    assert versions.source == COUNTER_V2  # the current version's, to edit again
    back = await arsenal.run("rollback_module", {"sandbox_id": "swap", "module": "Counter", "version": 1})
    assert back.version == 3
    versions = await arsenal.run("list_module_versions", {"sandbox_id": "swap", "module": "Counter"})
    assert versions.versions[-1].note == "rollback to v1"
    assert versions.versions[-1].md5 == versions.versions[0].md5
    assert versions.source == COUNTER_V1  # v1's source is current again
    error = await error_of(
        arsenal.run("rollback_module", {"sandbox_id": "swap", "module": "Counter", "version": 9})
    )
    assert error.code is ErrorCode.not_found and "versions: 1, 2, 3" in error.message


async def test_hot_swap_errors_leave_the_running_version(arsenal: Arsenal) -> None:
    await create(arsenal, "bad", source=counter_source())
    broken = COUNTER_V2.replace("def init(s), do: {:ok, s}", "def init(s), do: {:ok, s\n")
    error = await error_of(
        arsenal.run("hot_swap_module", {"sandbox_id": "bad", "module": "Counter", "source": broken})
    )
    assert error.code is ErrorCode.validation_error and error.details["errors"][0]["line"] >= 5
    evil = COUNTER_V2.replace("def park,", 'def evil, do: :os.cmd(~c"id")\n  def park,')
    error = await error_of(
        arsenal.run("hot_swap_module", {"sandbox_id": "bad", "module": "Counter", "source": evil})
    )
    assert error.code is ErrorCode.forbidden and error.details["findings"][0]["call"] == "os:cmd/1"
    other = "defmodule NotCounter do\n  def x, do: 1\nend\n"
    error = await error_of(
        arsenal.run("hot_swap_module", {"sandbox_id": "bad", "module": "Counter", "source": other})
    )
    assert error.code is ErrorCode.validation_error and "NotCounter" in error.message
    assert (await inject(arsenal, "bad", "GenServer.call(Counter, :get)")).value == "0"
    versions = await arsenal.run("list_module_versions", {"sandbox_id": "bad", "module": "Counter"})
    assert len(versions.versions) == 1


async def test_a_failing_code_change_puts_the_previous_version_back(arsenal: Arsenal) -> None:
    await create(arsenal, "cc", source=counter_source())
    failing = COUNTER_V2.replace(
        "def code_change(_old, n, _extra) when is_integer(n), do: {:ok, %{count: n}}",
        "def code_change(_old, _n, _extra), do: {:error, :cannot_convert}",
    )
    error = await error_of(
        arsenal.run("hot_swap_module", {"sandbox_id": "cc", "module": "Counter", "source": failing})
    )
    assert error.details["stage"] == "code_change" and error.details["rolled_back"] is True
    assert (await inject(arsenal, "cc", "GenServer.call(Counter, :get)")).value == "0"
    assert (await inject(arsenal, "cc", ":sys.get_status(Counter) |> elem(1) |> is_pid()")).value == "true"


async def test_processes_in_old_code_block_a_swap_unless_forced(arsenal: Arsenal) -> None:
    await create(arsenal, "old", source=counter_source())
    # A process parked inside Counter's v1 code: after one swap it runs old code.
    await inject(arsenal, "old", "pid = spawn(&Counter.park/0); Process.register(pid, :parked)")
    await arsenal.run("hot_swap_module", {"sandbox_id": "old", "module": "Counter", "source": COUNTER_V2})
    v3 = COUNTER_V2.replace(":v2", ":v3")
    error = await error_of(
        arsenal.run("hot_swap_module", {"sandbox_id": "old", "module": "Counter", "source": v3})
    )
    assert error.code is ErrorCode.conflict and len(error.details["processes"]) == 1
    assert (await inject(arsenal, "old", "Process.whereis(:parked) |> is_pid()")).value == "true"
    report = await arsenal.run(
        "hot_swap_module", {"sandbox_id": "old", "module": "Counter", "source": v3, "force": True}
    )
    assert len(report.killed) == 1 and report.version == 3
    assert (await inject(arsenal, "old", "Process.whereis(:parked)")).value == "nil"
    assert (await inject(arsenal, "old", "GenServer.call(Counter, :get)")).value == "{:v3, 0}"


# ---------------------------------------------------------------------- injected code


async def test_inject_code_value_output_binding_and_errors_as_data(arsenal: Arsenal) -> None:
    await create(arsenal, "ev", language="elixir")
    ran = await inject(
        arsenal, "ev", 'IO.puts("hello")\ny = x * 2\n{y, self() |> is_pid()}', binding={"x": 21}
    )
    assert ran.ok and ran.value == "{42, true}" and ran.output == "hello\n"
    assert ran.binding["y"] == "42" and ran.value_json is not None
    syntax = await inject(arsenal, "ev", "x = \n(1 +")
    assert not syntax.ok and syntax.error["kind"] == "syntax"
    undefined = await inject(arsenal, "ev", "undefined_thing(1)")
    assert not undefined.ok and undefined.error["kind"] == "compile" and undefined.error["line"] == 1
    assert "undefined function undefined_thing/1" in undefined.error["message"]  # not "errors logged"
    warned = await inject(arsenal, "ev", "f = fn unused -> :done end\nf.(1)")
    assert warned.ok and warned.value == ":done"
    assert any('variable "unused" is unused' in w["message"] for w in warned.warnings), warned.warnings
    raised = await inject(arsenal, "ev", 'raise "boom"')
    assert not raised.ok and raised.error["kind"] == "exception" and "boom" in raised.error["message"]
    erlang = await inject(arsenal, "ev", "lists:sum([1, 2, 3])", language="erlang")
    assert erlang.value == "6"


async def test_code_that_hangs_spawns_or_allocates_without_bound(arsenal: Arsenal) -> None:
    await create(arsenal, "wild", language="elixir", limits={"max_processes": 1024, "max_heap_mb": 16})
    error = await error_of(
        inject(arsenal, "wild", "receive do after :infinity -> :never end", timeout_ms=300)
    )
    assert error.code is ErrorCode.timeout and "was killed" in error.message
    spawned = await inject(
        arsenal,
        "wild",
        "Enum.each(1..5000, fn _ -> spawn(fn -> Process.sleep(:infinity) end) end)",
        timeout_ms=5000,
    )
    assert not spawned.ok and "system limit" in spawned.error["message"].lower()
    heap = await inject(
        arsenal, "wild", "Enum.reduce(1..100_000_000, [], fn i, acc -> [i | acc] end)", timeout_ms=20000
    )
    assert not heap.ok and heap.error["kind"] == "exit" and "killed" in heap.error["message"]
    # The sandbox itself is fine and answers.
    assert (await inject(arsenal, "wild", "1 + 1")).value == "2"


async def test_forbidden_calls_in_injected_code_are_refused_with_lines(arsenal: Arsenal) -> None:
    await create(arsenal, "pol", language="elixir")
    cases = {
        'System.cmd("id", [])': "System.cmd/2",
        'alias System, as: S\nS.cmd("id", [])': "System.cmd/2",
        ":erlang.halt()": "erlang:halt/0",
        'File.write("/etc/passwd-x", "x")': "File.write/2",
        'File.write("../../escape", "x")': "File.write/2",
        'm = :os\nm.cmd(~c"id")': "dynamic call",
        'apply(:os, :cmd, [~c"id"])': "os:cmd/1",
        'Code.eval_string("1")': "Code.eval_string/1",
        'Port.open({:spawn, "id"}, [])': "Port.open/2",
    }
    for code, call in cases.items():
        error = await error_of(inject(arsenal, "pol", code))
        assert error.code is ErrorCode.forbidden, code
        assert call in {f["call"] for f in error.details["findings"]}, (code, error.details)
    allowed = await inject(arsenal, "pol", 'File.write("notes.txt", "ok")\nFile.read!("notes.txt")')
    assert allowed.value == '"ok"'
    erlang = await error_of(inject(arsenal, "pol", 'halt(), os:cmd("id")', language="erlang"))
    assert {f["call"] for f in erlang.details["findings"]} == {"erlang:halt/0", "os:cmd/1"}
    call = await error_of(
        arsenal.run(
            "execute_in_sandbox", {"sandbox_id": "pol", "module": "os", "function": "cmd", "args": ["id"]}
        )
    )
    assert call.code is ErrorCode.forbidden
    summed = await arsenal.run(
        "execute_in_sandbox", {"sandbox_id": "pol", "module": "Enum", "function": "sum", "args": [[1, 2, 3]]}
    )
    assert summed.value == "6"
    nope = {"sandbox_id": "pol", "module": "Nope", "function": "x", "args": []}
    missing = await error_of(arsenal.run("execute_in_sandbox", nope))
    assert missing.code is ErrorCode.not_found and "Nope.x/0" in missing.message
    # A looser policy applies to code given from then on.
    await arsenal.run("sandbox_security_policy", {"sandbox_id": "pol", "policy": {"dynamic_calls": "warn"}})
    warned = await inject(arsenal, "pol", "m = Enum\nm.sum([1])")
    assert warned.ok and warned.warnings[0]["call"] == "dynamic call"


# ---------------------------------------------------------------------- limits and how a sandbox ends


async def wait_status(manager: SandboxManager, sandbox_id: str, timeout: float = 30.0) -> object:
    for _ in range(int(timeout * 10)):
        record = manager.get(sandbox_id)
        if record.status not in ("starting", "running"):
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"{sandbox_id} still {manager.get(sandbox_id).status}")


async def test_memory_limit_stops_the_sandbox_with_its_reason_and_spares_the_others(arsenal: Arsenal) -> None:
    await create(arsenal, "bystander", language="erlang")
    await create(arsenal, "hog", language="elixir", limits={"max_memory_mb": 200, "max_heap_mb": 0})
    code = "Enum.map(1..400, fn _ -> :binary.copy(<<1>>, 1_000_000) end) |> length()"
    error = await error_of(inject(arsenal, "hog", code, timeout_ms=30000))
    assert error.code is ErrorCode.node_down
    record = await wait_status(arsenal.services.get(SandboxManager), "hog")
    assert record.status == "failed" and record.stop_reason.startswith("memory")
    assert (await inject(arsenal, "bystander", "1 + 1.", language="erlang")).value == "2"
    error = await error_of(inject(arsenal, "hog", "1"))
    assert error.code is ErrorCode.node_down and "restart it" in error.message


async def test_cpu_time_limit_kills_the_node(arsenal: Arsenal) -> None:
    await create(arsenal, "cpu", language="erlang", limits={"cpu_seconds": 2})
    busy = "F = fun L(N) -> L(N + 1) end, F(0)."
    with pytest.raises(OperationError):
        await inject(arsenal, "cpu", busy, timeout_ms=30000)
    record = await wait_status(arsenal.services.get(SandboxManager), "cpu")
    assert record.status == "failed" and record.stop_reason.startswith("cpu_time")


async def test_lifetime_ends_the_sandbox(arsenal: Arsenal) -> None:
    await create(arsenal, "brief", language="erlang", limits={"lifetime_s": 10})
    record = await wait_status(arsenal.services.get(SandboxManager), "brief", timeout=40)
    assert record.status == "stopped" and record.stop_reason.startswith("lifetime")
    assert not group_alive(record.os_pid)


async def test_limits_change_with_a_restart(arsenal: Arsenal) -> None:
    await create(arsenal, "lim", language="erlang")
    changed = await arsenal.run(
        "sandbox_resource_limits", {"sandbox_id": "lim", "limits": {"max_processes": 4096, "schedulers": 1}}
    )
    assert changed.applied and changed.limits.max_processes == 4096
    info = await arsenal.run("get_sandbox_info", {"sandbox_id": "lim"})
    assert info.usage["process_limit"] == 4096 or info.usage["process_limit"] >= 4096
    assert info.limits.max_processes == 4096
    node = await arsenal.services.get(SandboxManager).node("lim")
    assert await node.call("erlang", "system_info", [Atom("schedulers_online")]) == 1


# ---------------------------------------------------------------------- workers and generated applications


GREETER = {
    "name": "Greeter",
    "initial_state": "%{greeted: 0}",
    "handlers": [
        {
            "kind": "call",
            "pattern": "{:hello, who}",
            "body": '{:reply, "hi " <> who, %{state | greeted: state.greeted + 1}}',
        },
        {"kind": "call", "pattern": ":count", "body": "{:reply, state.greeted, state}"},
    ],
}


async def test_dynamic_workers_generated_or_existing_under_chosen_supervisors(arsenal: Arsenal) -> None:
    await create(arsenal, "dyn", source=counter_source())
    started = await arsenal.run("create_dynamic_worker", {"sandbox_id": "dyn", "worker": GREETER})
    assert started.module == "Dynamic.Greeter" and started.generated_version == 1
    assert "Dynamic.Greeter" in started.child_spec and started.pid.startswith("<")
    said = await inject(
        arsenal,
        "dyn",
        f'pid = :erlang.list_to_pid(~c"{started.pid}")\nGenServer.call(pid, {{:hello, "ann"}})',
    )
    assert said.value == '"hi ann"'
    # A second one of the same generated module (not registered), and one under the app's supervisor.
    again = await arsenal.run("create_dynamic_worker", {"sandbox_id": "dyn", "module": "Dynamic.Greeter"})
    assert again.pid != started.pid
    under = await arsenal.run(
        "create_dynamic_worker",
        {
            "sandbox_id": "dyn",
            "module": "Dynamic.Greeter",
            "supervisor": "CounterSup",
            "child_id": "greeter_2",
        },
    )
    children = await inject(arsenal, "dyn", "Supervisor.which_children(CounterSup) |> Enum.map(&elem(&1, 0))")
    assert '"greeter_2"' in children.value and under.supervisor.endswith("<") is False
    error = await error_of(
        arsenal.run("create_dynamic_worker", {"sandbox_id": "dyn", "module": "NoSuchModule"})
    )
    assert error.code is ErrorCode.not_found
    error = await error_of(
        arsenal.run(
            "create_dynamic_worker", {"sandbox_id": "dyn", "module": "Counter", "supervisor": "NoSup"}
        )
    )
    assert error.code is ErrorCode.not_found and "NoSup" in error.message
    evil = {**GREETER, "name": "Evil", "initial_state": 'System.cmd("id", [])'}
    error = await error_of(arsenal.run("create_dynamic_worker", {"sandbox_id": "dyn", "worker": evil}))
    assert error.code is ErrorCode.forbidden


async def test_generate_application_writes_a_mix_project_and_runs_it(arsenal: Arsenal) -> None:
    spec = {
        "name": "shop",
        "root": {
            "name": "Root",
            "strategy": "one_for_all",
            "children": [{"type": "worker", **GREETER, "name": "Cart"}],
        },
    }
    generated = await arsenal.run("generate_application", {"sandbox_id": "shop", "app": spec})
    assert generated.sandbox.status == "running"
    project = Path(generated.project_dir)
    assert (project / "mix.exs").is_file() and "lib/shop/cart.ex" in generated.files
    assert generated.modules == ["Shop.Application", "Shop.Root", "Shop.Cart"]
    said = await inject(arsenal, "shop", 'GenServer.call(Shop.Cart, {:hello, "bo"})')
    assert said.value == '"hi bo"'
    tree = await inject(arsenal, "shop", "Supervisor.which_children(Shop.Root) |> length()")
    assert tree.value == "1"
