defmodule ArsenalDemo.ApplicationTest do
  use ExUnit.Case, async: false

  test "the whole tree is up with its registered names" do
    for name <- ArsenalDemo.registered_names() do
      assert is_pid(Process.whereis(name)), "#{inspect(name)} is not registered"
    end
  end

  test "each supervisor uses its strategy" do
    strategy = fn sup -> :sys.get_state(sup) |> elem(2) end
    assert strategy.(ArsenalDemo.Supervisor) == :one_for_one
    assert strategy.(ArsenalDemo.PairSupervisor) == :one_for_all
    assert strategy.(ArsenalDemo.ServiceSupervisor) == :rest_for_one
    assert %{workers: 2, active: 2} = DynamicSupervisor.count_children(ArsenalDemo.DynamicWorkers)
  end

  test "the load generator keeps the node busy" do
    %{tick: t0} = ArsenalDemo.LoadGenerator.stats(ArsenalDemo.LoadGenerator)
    Process.sleep(500)
    assert %{tick: t1, errors: 0} = ArsenalDemo.LoadGenerator.stats(ArsenalDemo.LoadGenerator)
    assert t1 > t0
    assert ArsenalDemo.EventWorker.stats(:arsenal_demo_events).subscribers >= 1
  end
end
