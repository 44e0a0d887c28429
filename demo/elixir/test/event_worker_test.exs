defmodule ArsenalDemo.EventWorkerTest do
  use ExUnit.Case, async: true

  alias ArsenalDemo.EventWorker

  defp start_hub(opts \\ []) do
    start_supervised!({EventWorker, [id: :hub] ++ opts})
  end

  test "subscribers receive events of their topics" do
    hub = start_hub()
    :ok = EventWorker.subscribe(hub, :a)
    EventWorker.publish(hub, :a, 1)
    EventWorker.publish(hub, :b, 2)
    assert_receive {:arsenal_event, :a, 1, %{priority: :normal}}
    refute_receive {:arsenal_event, :b, _, _}, 50
    assert [%{topic: :b, reason: :no_subscribers}] = EventWorker.dead_letters(hub)
    :ok = EventWorker.unsubscribe(hub, :a)
    EventWorker.publish(hub, :a, 3)
    refute_receive {:arsenal_event, :a, 3, _}, 50
  end

  test "high priority events are delivered first" do
    hub = start_hub(paused: true)
    :ok = EventWorker.subscribe(hub, :t)
    for i <- 1..5, do: EventWorker.publish(hub, :t, {:normal, i})
    EventWorker.publish(hub, :t, :urgent, :high)
    assert %{buffered: %{high: 1, normal: 5}} = EventWorker.stats(hub)
    :ok = EventWorker.resume(hub)

    received =
      for _ <- 1..6 do
        assert_receive {:arsenal_event, :t, payload, _meta}
        payload
      end

    assert received == [:urgent | Enum.map(1..5, &{:normal, &1})]
  end

  test "overflow goes to the bounded dead-letter list (drop_newest)" do
    hub = start_hub(paused: true, buffer_size: 10, dead_letter_limit: 5)
    :ok = EventWorker.subscribe(hub, :t)
    for i <- 1..20, do: EventWorker.publish(hub, :t, i)
    stats = EventWorker.stats(hub)
    assert stats.buffered.normal == 10
    assert stats.dropped == 10
    assert stats.dead_letters == 5
    assert stats.dead_letters_total == 10
    assert Enum.map(EventWorker.dead_letters(hub), & &1.payload) == [20, 19, 18, 17, 16]
  end

  test "drop_oldest keeps the newest events" do
    hub = start_hub(paused: true, buffer_size: 3, overflow: :drop_oldest)
    :ok = EventWorker.subscribe(hub, :t)
    for i <- 1..5, do: EventWorker.publish(hub, :t, i)
    :ok = EventWorker.resume(hub)
    for i <- 3..5, do: assert_receive({:arsenal_event, :t, ^i, _})
    assert Enum.map(EventWorker.dead_letters(hub), & &1.payload) == [2, 1]
  end

  test "dead subscribers are removed" do
    hub = start_hub()
    {:ok, sub} = Task.start(fn -> Process.sleep(:infinity) end)
    :ok = EventWorker.subscribe(hub, :t, sub)
    assert %{subscribers: 1, topics: %{t: 1}} = EventWorker.stats(hub)
    Process.exit(sub, :kill)
    Process.sleep(20)
    assert %{subscribers: 0, topics: topics} = EventWorker.stats(hub)
    assert topics == %{}
  end
end
