defmodule ArsenalDemo.LoadGenerator do
  @moduledoc """
  Light background activity so the node is never idle: every `:interval` ms
  (default 200) it increments the counters, publishes an event (every 10th one
  high priority) that it also receives as a subscriber, checks a pool
  connection out and in, and every 5th tick calls a dependency through the
  cascade worker's breaker. Each step is cheap and tolerates the target being
  down or restarting. `pause/1`, `resume/1`, `stats/1`.
  """
  use GenServer

  alias ArsenalDemo.{CascadeWorker, EventWorker, ResourceWorker, StatefulWorker}

  @topic "demo.tick"
  @call_timeout 500

  def start_link(opts \\ []) do
    case Keyword.get(opts, :name) do
      nil -> GenServer.start_link(__MODULE__, opts)
      name -> GenServer.start_link(__MODULE__, opts, name: name)
    end
  end

  def pause(server), do: GenServer.call(server, :pause)
  def resume(server), do: GenServer.call(server, :resume)
  def stats(server), do: GenServer.call(server, :stats)

  @impl true
  def init(opts) do
    state = %{
      interval: Keyword.get(opts, :interval, 200),
      enabled: Keyword.get(opts, :enabled, true),
      counters: Keyword.get(opts, :counters, [ArsenalDemo.Counter1, ArsenalDemo.Counter2]),
      dynamic: Keyword.get(opts, :dynamic, [ArsenalDemo.Dynamic1, ArsenalDemo.Dynamic2]),
      pool: Keyword.get(opts, :pool, :arsenal_demo_pool),
      events: Keyword.get(opts, :events, :arsenal_demo_events),
      cascade: Keyword.get(opts, :cascade, :arsenal_demo_cascade),
      cascade_deps: [:arsenal_demo_pool, :arsenal_demo_events, ArsenalDemo.Counter1],
      events_pid: nil,
      tick: 0,
      received: 0,
      errors: 0
    }

    if state.enabled, do: schedule(state)
    {:ok, state}
  end

  @impl true
  def handle_call(:pause, _from, state), do: {:reply, :ok, %{state | enabled: false}}

  def handle_call(:resume, _from, %{enabled: true} = state), do: {:reply, :ok, state}

  def handle_call(:resume, _from, state) do
    schedule(state)
    {:reply, :ok, %{state | enabled: true}}
  end

  def handle_call(:stats, _from, state) do
    {:reply, Map.take(state, [:interval, :enabled, :tick, :received, :errors]), state}
  end

  def handle_call(:ping, _from, state), do: {:reply, :pong, state}

  @impl true
  def handle_info(:tick, %{enabled: false} = state), do: {:noreply, state}

  def handle_info(:tick, state) do
    schedule(state)
    {:noreply, work(%{state | tick: state.tick + 1})}
  end

  def handle_info({:arsenal_event, _topic, _payload, _meta}, state) do
    {:noreply, %{state | received: state.received + 1}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp schedule(state), do: Process.send_after(self(), :tick, state.interval)

  defp work(state) do
    tick = state.tick

    results =
      Enum.map(state.counters, fn c ->
        safe(fn -> GenServer.call(c, {:increment, 1}, @call_timeout) end)
      end) ++
        [
          safe(fn -> pool_round_trip(state.pool) end),
          safe(fn -> EventWorker.publish(state.events, @topic, %{tick: tick}, priority(tick)) end)
        ]

    results =
      if rem(tick, 5) == 0 do
        dynamic = Enum.at(state.dynamic, rem(div(tick, 5), max(length(state.dynamic), 1)))
        dep = Enum.at(state.cascade_deps, rem(div(tick, 5), length(state.cascade_deps)))

        results ++
          [
            safe(fn -> dynamic && StatefulWorker.increment(dynamic) end),
            safe(fn -> CascadeWorker.call_dependency(state.cascade, dep) end)
          ]
      else
        results
      end

    errors = Enum.count(results, &(&1 == :error))
    ensure_subscribed(%{state | errors: state.errors + errors})
  end

  defp priority(tick) when rem(tick, 10) == 0, do: :high
  defp priority(_tick), do: :normal

  defp pool_round_trip(pool) do
    case ResourceWorker.checkout(pool, 0) do
      {:ok, conn} -> ResourceWorker.checkin(pool, conn)
      other -> other
    end
  end

  # (Re)subscribe when the events hub is new (first tick, or after a restart).
  defp ensure_subscribed(state) do
    case Process.whereis(state.events) do
      nil ->
        state

      pid when pid == state.events_pid ->
        state

      pid ->
        case safe(fn -> EventWorker.subscribe(pid, @topic) end) do
          :error -> state
          _ -> %{state | events_pid: pid}
        end
    end
  end

  defp safe(fun) do
    fun.()
  catch
    :exit, _reason -> :error
  end
end
