defmodule ArsenalDemo.StatefulWorkerTest do
  use ExUnit.Case, async: true
  @moduletag :capture_log

  alias ArsenalDemo.StatefulWorker

  setup do
    {:ok, pid: start_supervised!({StatefulWorker, id: :counter, initial: 10})}
  end

  test "increment and get_state", %{pid: pid} do
    assert StatefulWorker.increment(pid) == 11
    assert StatefulWorker.increment(pid, 5) == 16
    state = StatefulWorker.get_state(pid)
    assert state.counter == 16
    assert state.grown_bytes == 0
  end

  test "history is bounded to the last 50 states, newest first", %{pid: pid} do
    for _ <- 1..60, do: StatefulWorker.increment(pid)
    history = StatefulWorker.history(pid)
    assert length(history) == 50
    assert hd(history).counter == 70
    assert List.last(history).counter == 21
  end

  test "snapshot and restore", %{pid: pid} do
    assert :ok = StatefulWorker.snapshot(pid, :before)
    StatefulWorker.increment(pid, 100)
    assert :ok = StatefulWorker.restore(pid, :before)
    assert StatefulWorker.get_state(pid).counter == 10
    assert {:error, :not_found} = StatefulWorker.restore(pid, :nope)
    assert StatefulWorker.snapshots(pid) == [:before]
    assert hd(StatefulWorker.history(pid)).op == {:restore, :before}
  end

  test "snapshots are bounded", %{pid: pid} do
    for i <- 1..30, do: StatefulWorker.snapshot(pid, i)
    names = StatefulWorker.snapshots(pid)
    assert length(names) == 20
    assert {:error, :not_found} = StatefulWorker.restore(pid, 1)
    assert :ok = StatefulWorker.restore(pid, 30)
  end

  test "grow adds heap memory and release drops it", %{pid: pid} do
    {:memory, before} = Process.info(pid, :memory)
    bytes = StatefulWorker.grow(pid, 1024)
    assert bytes >= 1024 * 1024
    {:memory, grown} = Process.info(pid, :memory)
    assert grown - before >= 1024 * 1024
    assert StatefulWorker.get_state(pid).grown_bytes == bytes
    assert :ok = StatefulWorker.release(pid)
    assert StatefulWorker.get_state(pid).grown_bytes == 0
  end

  test "every crash mode kills the process" do
    for mode <- StatefulWorker.crash_modes() do
      {:ok, pid} = GenServer.start(StatefulWorker, [])
      ref = Process.monitor(pid)
      assert :ok = StatefulWorker.crash(pid, mode)
      assert_receive {:DOWN, ^ref, :process, ^pid, reason}, 2_000
      assert reason != :normal, "mode #{inspect(mode)} exited normally"
    end
  end

  test "unknown crash mode is refused", %{pid: pid} do
    assert {:error, {:unknown_mode, :nope}} = StatefulWorker.crash(pid, :nope)
    assert Process.alive?(pid)
  end
end
