defmodule ArsenalDemo.EventWorker do
  @moduledoc """
  A small pub/sub hub.

    * `subscribe/3`, `unsubscribe/3`: subscribers are monitored and dropped when
      they die;
    * `publish/4` buffers an event; the buffer is drained every few ms, high
      priority events first, each delivered to the topic's subscribers as
      `{:arsenal_event, topic, payload, %{priority: p, seq: n}}`;
    * the buffer is bounded: when it is full the overflow policy
      (`:drop_newest`, the default, or `:drop_oldest`) moves an event to the
      dead-letter list, itself bounded; events for a topic nobody subscribes to
      are dead-lettered too;
    * `pause/1`, `resume/1` stop and restart the draining (to watch the buffer
      fill and overflow); `dead_letters/1`, `stats/1` report.
  """
  use GenServer

  @priorities [:high, :normal]

  ## Public API

  @doc """
  Options: `:name`, `:buffer_size` (default 100), `:overflow` (`:drop_newest` or
  `:drop_oldest`), `:dead_letter_limit` (default 100), `:flush_interval` (ms,
  default 5), `:paused` (default false).
  """
  def start_link(opts \\ []) do
    case Keyword.get(opts, :name) do
      nil -> GenServer.start_link(__MODULE__, opts)
      name -> GenServer.start_link(__MODULE__, opts, name: name)
    end
  end

  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :id, Keyword.get(opts, :name, __MODULE__)),
      start: {__MODULE__, :start_link, [opts]}
    }
  end

  @doc "Subscribes `pid` (default: the caller) to `topic`."
  def subscribe(server, topic, pid \\ self()) when is_pid(pid),
    do: GenServer.call(server, {:subscribe, topic, pid})

  @doc "Unsubscribes `pid` (default: the caller) from `topic`."
  def unsubscribe(server, topic, pid \\ self()) when is_pid(pid),
    do: GenServer.call(server, {:unsubscribe, topic, pid})

  @doc "Publishes an event (asynchronously). `priority` is `:high` or `:normal`."
  def publish(server, topic, payload, priority \\ :normal) when priority in @priorities,
    do: GenServer.cast(server, {:publish, topic, payload, priority})

  @doc "Dead letters, newest first."
  def dead_letters(server), do: GenServer.call(server, :dead_letters)

  def pause(server), do: GenServer.call(server, :pause)
  def resume(server), do: GenServer.call(server, :resume)

  @doc "Hub statistics."
  def stats(server), do: GenServer.call(server, :stats)

  ## Callbacks

  @impl true
  def init(opts) do
    state = %{
      name: Keyword.get(opts, :name),
      subscribers: %{},
      topics: %{},
      high: :queue.new(),
      normal: :queue.new(),
      buffer_size: Keyword.get(opts, :buffer_size, 100),
      overflow: Keyword.get(opts, :overflow, :drop_newest),
      dead_letters: [],
      dead_letter_count: 0,
      dead_letter_limit: Keyword.get(opts, :dead_letter_limit, 100),
      flush_interval: Keyword.get(opts, :flush_interval, 5),
      paused: Keyword.get(opts, :paused, false),
      drain_scheduled: false,
      seq: 0,
      published: 0,
      delivered: 0,
      dropped: 0
    }

    {:ok, state}
  end

  @impl true
  def handle_call({:subscribe, topic, pid}, _from, state) do
    sub =
      case Map.fetch(state.subscribers, pid) do
        {:ok, sub} -> sub
        :error -> %{mref: Process.monitor(pid), topics: MapSet.new()}
      end

    sub = %{sub | topics: MapSet.put(sub.topics, topic)}
    topics = Map.update(state.topics, topic, MapSet.new([pid]), &MapSet.put(&1, pid))
    {:reply, :ok, %{state | subscribers: Map.put(state.subscribers, pid, sub), topics: topics}}
  end

  def handle_call({:unsubscribe, topic, pid}, _from, state) do
    case Map.fetch(state.subscribers, pid) do
      {:ok, sub} ->
        topics = remove_from_topic(state.topics, topic, pid)
        remaining = MapSet.delete(sub.topics, topic)

        subscribers =
          if MapSet.size(remaining) == 0 do
            Process.demonitor(sub.mref, [:flush])
            Map.delete(state.subscribers, pid)
          else
            Map.put(state.subscribers, pid, %{sub | topics: remaining})
          end

        {:reply, :ok, %{state | subscribers: subscribers, topics: topics}}

      :error ->
        {:reply, :ok, state}
    end
  end

  def handle_call(:dead_letters, _from, state), do: {:reply, state.dead_letters, state}

  def handle_call(:pause, _from, state), do: {:reply, :ok, %{state | paused: true}}

  def handle_call(:resume, _from, state),
    do: {:reply, :ok, schedule_drain(%{state | paused: false})}

  def handle_call(:stats, _from, state), do: {:reply, stats_of(state), state}

  def handle_call(:ping, _from, state), do: {:reply, :pong, state}

  @impl true
  def handle_cast({:publish, topic, payload, priority}, state) do
    seq = state.seq + 1
    event = %{topic: topic, payload: payload, priority: priority, seq: seq}
    state = %{state | seq: seq, published: state.published + 1}
    {:noreply, state |> enqueue(event) |> schedule_drain()}
  end

  @impl true
  def handle_info(:drain, state) do
    state = %{state | drain_scheduled: false}
    if state.paused, do: {:noreply, state}, else: {:noreply, drain(state)}
  end

  def handle_info({:DOWN, _mref, :process, pid, _reason}, state) do
    case Map.pop(state.subscribers, pid) do
      {nil, _} ->
        {:noreply, state}

      {sub, subscribers} ->
        topics = Enum.reduce(sub.topics, state.topics, &remove_from_topic(&2, &1, pid))
        {:noreply, %{state | subscribers: subscribers, topics: topics}}
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  ## Internals

  defp buffered(state), do: :queue.len(state.high) + :queue.len(state.normal)

  defp enqueue(state, event) do
    if buffered(state) < state.buffer_size do
      push(state, event)
    else
      overflow(state, event)
    end
  end

  defp push(state, %{priority: :high} = event), do: %{state | high: :queue.in(event, state.high)}
  defp push(state, event), do: %{state | normal: :queue.in(event, state.normal)}

  defp overflow(%{overflow: :drop_oldest} = state, event) do
    # Sacrifice the oldest low-priority event first.
    case {:queue.out(state.normal), :queue.out(state.high)} do
      {{{:value, old}, rest}, _} ->
        %{state | normal: rest} |> dead_letter(old, :overflow) |> push(event)

      {{:empty, _}, {{:value, old}, rest}} ->
        %{state | high: rest} |> dead_letter(old, :overflow) |> push(event)

      {{:empty, _}, {:empty, _}} ->
        # A zero-sized buffer: nothing older to drop.
        dead_letter(state, event, :overflow)
    end
  end

  defp overflow(state, event), do: dead_letter(state, event, :overflow)

  defp dead_letter(state, event, reason) do
    letter = Map.merge(event, %{reason: reason, at: System.system_time(:millisecond)})

    %{
      state
      | dead_letters: Enum.take([letter | state.dead_letters], state.dead_letter_limit),
        dead_letter_count: state.dead_letter_count + 1,
        dropped: state.dropped + if(reason == :overflow, do: 1, else: 0)
    }
  end

  defp schedule_drain(%{paused: true} = state), do: state
  defp schedule_drain(%{drain_scheduled: true} = state), do: state

  defp schedule_drain(state) do
    if buffered(state) > 0 do
      Process.send_after(self(), :drain, state.flush_interval)
      %{state | drain_scheduled: true}
    else
      state
    end
  end

  defp drain(state) do
    events = :queue.to_list(state.high) ++ :queue.to_list(state.normal)
    state = %{state | high: :queue.new(), normal: :queue.new()}
    Enum.reduce(events, state, &deliver/2)
  end

  defp deliver(event, state) do
    pids = Map.get(state.topics, event.topic, MapSet.new())

    if MapSet.size(pids) == 0 do
      dead_letter(state, event, :no_subscribers)
    else
      meta = %{priority: event.priority, seq: event.seq}
      Enum.each(pids, &send(&1, {:arsenal_event, event.topic, event.payload, meta}))
      %{state | delivered: state.delivered + MapSet.size(pids)}
    end
  end

  defp remove_from_topic(topics, topic, pid) do
    case Map.fetch(topics, topic) do
      {:ok, pids} ->
        pids = MapSet.delete(pids, pid)

        if MapSet.size(pids) == 0,
          do: Map.delete(topics, topic),
          else: Map.put(topics, topic, pids)

      :error ->
        topics
    end
  end

  defp stats_of(state) do
    %{
      name: state.name,
      subscribers: map_size(state.subscribers),
      topics: Map.new(state.topics, fn {topic, pids} -> {topic, MapSet.size(pids)} end),
      buffered: %{high: :queue.len(state.high), normal: :queue.len(state.normal)},
      buffer_size: state.buffer_size,
      overflow: state.overflow,
      paused: state.paused,
      published: state.published,
      delivered: state.delivered,
      dropped: state.dropped,
      dead_letters: length(state.dead_letters),
      dead_letters_total: state.dead_letter_count
    }
  end
end
