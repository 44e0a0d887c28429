defmodule ArsenalDemo.CascadeWorkerTest do
  use ExUnit.Case, async: false
  @moduletag :capture_log

  alias ArsenalDemo.{CascadeWorker, StatefulWorker}

  # Names private to this test module, so the running application is untouched.
  @dep :cascade_test_dep

  test "the breaker opens after repeated failures, then half-opens and closes" do
    cascade =
      start_supervised!(
        {CascadeWorker,
         id: :cascade,
         deps: [@dep],
         failure_threshold: 3,
         reset_timeout: 100,
         resolve_interval: 20}
      )

    assert %{state: :closed} = CascadeWorker.breaker_state(cascade)

    for _ <- 1..3 do
      assert {:error, {:dependency_failed, :noproc}} =
               CascadeWorker.call_dependency(cascade, @dep)
    end

    assert %{state: :open, failures: 3, trips: 1} = CascadeWorker.breaker_state(cascade)
    assert {:error, :circuit_open} = CascadeWorker.call_dependency(cascade, @dep)
    assert {:error, :unknown_dependency} = CascadeWorker.call_dependency(cascade, :other)

    Process.sleep(150)
    assert %{state: :half_open} = CascadeWorker.breaker_state(cascade)

    start_supervised!({StatefulWorker, id: :dep, name: @dep})
    assert {:ok, :pong} = CascadeWorker.call_dependency(cascade, @dep)
    assert %{state: :closed, failures: 0} = CascadeWorker.breaker_state(cascade)

    # The dependency was found and monitored once it appeared.
    Process.sleep(50)

    assert %{deps: %{@dep => %{status: :up}}, calls: %{ok: 1, failed: 3, rejected: 1}} =
             CascadeWorker.status(cascade)
  end

  test "a failed half-open trial opens the breaker again" do
    cascade =
      start_supervised!(
        {CascadeWorker, id: :cascade, deps: [@dep], failure_threshold: 1, reset_timeout: 50}
      )

    assert {:error, _} = CascadeWorker.call_dependency(cascade, @dep)
    Process.sleep(80)
    assert %{state: :half_open} = CascadeWorker.breaker_state(cascade)
    assert {:error, _} = CascadeWorker.call_dependency(cascade, @dep)
    assert %{state: :open, trips: 2} = CascadeWorker.breaker_state(cascade)
  end

  test "failure propagates when a configured dependency dies" do
    {:ok, dep} = StatefulWorker.start_link(name: @dep)
    Process.unlink(dep)
    {:ok, cascade} = GenServer.start(CascadeWorker, deps: [@dep], propagate: [@dep])
    ref = Process.monitor(cascade)
    assert %{deps: %{@dep => %{status: :up, pid: ^dep}}} = CascadeWorker.status(cascade)
    Process.exit(dep, :kill)
    assert_receive {:DOWN, ^ref, :process, ^cascade, {:dependency_down, @dep, :killed}}, 1_000
  end

  test "without propagation the worker survives and re-resolves the dependency" do
    {:ok, dep} = StatefulWorker.start_link(name: @dep)
    Process.unlink(dep)
    cascade = start_supervised!({CascadeWorker, id: :cascade, deps: [@dep], resolve_interval: 20})
    Process.exit(dep, :kill)
    Process.sleep(20)
    assert %{deps: %{@dep => %{status: :down, downs: 1}}} = CascadeWorker.status(cascade)
    {:ok, dep2} = StatefulWorker.start_link(name: @dep)
    Process.sleep(60)
    assert %{deps: %{@dep => %{status: :up, pid: ^dep2}}} = CascadeWorker.status(cascade)
  end
end
