defmodule ArsenalDemo.ResourceWorkerTest do
  use ExUnit.Case, async: true

  alias ArsenalDemo.ResourceWorker

  setup do
    {:ok, pool: start_supervised!({ResourceWorker, id: :pool, size: 2, max_waiting: 1})}
  end

  test "checkout and checkin", %{pool: pool} do
    assert {:ok, c1} = ResourceWorker.checkout(pool)
    assert {:ok, c2} = ResourceWorker.checkout(pool)
    assert c1 != c2
    assert %{available: 0, in_use: 2} = ResourceWorker.stats(pool)
    assert :ok = ResourceWorker.checkin(pool, c1)
    assert {:error, :not_checked_out} = ResourceWorker.checkin(pool, c1)
    assert %{available: 1, in_use: 1, checkouts: 2, checkins: 1} = ResourceWorker.stats(pool)
  end

  test "checkout times out when the pool is empty", %{pool: pool} do
    {:ok, _} = ResourceWorker.checkout(pool)
    {:ok, _} = ResourceWorker.checkout(pool)
    assert {:error, :timeout} = ResourceWorker.checkout(pool, 50)
    assert {:error, :timeout} = ResourceWorker.checkout(pool, 0)
    assert %{timeouts: 2, waiting: 0} = ResourceWorker.stats(pool)
  end

  test "a waiter gets the connection that is checked in", %{pool: pool} do
    {:ok, c1} = ResourceWorker.checkout(pool)
    {:ok, _} = ResourceWorker.checkout(pool)
    waiter = Task.async(fn -> ResourceWorker.checkout(pool, 2_000) end)
    wait_until(fn -> ResourceWorker.stats(pool).waiting == 1 end)
    # The waiting queue is bounded (max_waiting: 1): backpressure.
    assert {:error, :queue_full} = ResourceWorker.checkout(pool, 1_000)
    :ok = ResourceWorker.checkin(pool, c1)
    assert {:ok, ^c1} = Task.await(waiter)
    # The task has exited since: its connection is reclaimed.
    wait_until(fn -> ResourceWorker.stats(pool).reclaimed == 1 end)
    assert %{waiting: 0, in_use: 1, checkouts: 3, rejected: 1} = ResourceWorker.stats(pool)
  end

  test "connections of a dead holder are reclaimed", %{pool: pool} do
    {:ok, holder} =
      Task.start(fn ->
        {:ok, _} = ResourceWorker.checkout(pool)
        Process.sleep(:infinity)
      end)

    wait_until(fn -> ResourceWorker.stats(pool).in_use == 1 end)
    Process.exit(holder, :kill)
    wait_until(fn -> ResourceWorker.stats(pool).in_use == 0 end)
    assert %{available: 2, reclaimed: 1} = ResourceWorker.stats(pool)
  end

  test "leak holds connections until the leaker dies", %{pool: pool} do
    assert {:ok, leaker, conns} = ResourceWorker.leak(pool, 5)
    assert length(conns) == 2
    stats = ResourceWorker.stats(pool)
    assert stats.available == 0
    assert Enum.all?(stats.holders, &(&1.pid == leaker))
    assert {:error, :timeout} = ResourceWorker.checkout(pool, 20)
    Process.exit(leaker, :kill)
    wait_until(fn -> ResourceWorker.stats(pool).available == 2 end)
    assert ResourceWorker.stats(pool).reclaimed == 2
  end

  defp wait_until(fun, tries \\ 100) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition not met in time")
      true -> Process.sleep(10) && wait_until(fun, tries - 1)
    end
  end
end
