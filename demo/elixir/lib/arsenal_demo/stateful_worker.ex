defmodule ArsenalDemo.StatefulWorker do
  @moduledoc """
  A counter-like GenServer with state an operator can look at and play with.

    * `increment/2`, `get_state/1`: the counter and a summary of the state;
    * `history/1`: the last 50 states (bounded);
    * `snapshot/2`, `restore/2`: named snapshots of the counter (at most 20 kept);
    * `grow/2`, `release/1`: simulated memory growth (heap data kept in the state);
    * `crash/2`: crash the process in a chosen way, to watch the supervisor react.
  """
  use GenServer

  @history_limit 50
  @snapshot_limit 20
  @crash_modes [:raise, :exit, :throw, :bad_match, :badarith, :kill, :timeout_kill]

  @type server :: GenServer.server()

  ## Public API

  @doc """
  Options: `:name` (registered name, optional), `:initial` (counter start, default 0).
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

  @doc "The crash modes `crash/2` accepts."
  def crash_modes, do: @crash_modes

  @doc "Adds `by` (default 1) to the counter; returns the new value."
  def increment(server, by \\ 1) when is_integer(by), do: GenServer.call(server, {:increment, by})

  @doc "A summary of the state (the grown data is reported by size only)."
  def get_state(server), do: GenServer.call(server, :get_state)

  @doc "The last states, newest first (at most #{@history_limit})."
  def history(server), do: GenServer.call(server, :history)

  @doc "Saves the current counter under `name`."
  def snapshot(server, name), do: GenServer.call(server, {:snapshot, name})

  @doc "Restores the counter saved under `name`: `:ok` or `{:error, :not_found}`."
  def restore(server, name), do: GenServer.call(server, {:restore, name})

  @doc "Names of the saved snapshots."
  def snapshots(server), do: GenServer.call(server, :snapshots)

  @doc """
  Adds about `kib` KiB of heap data to the state (a list of integers, so it is
  counted in `process_info(pid, :memory)`). Returns the total grown bytes.
  """
  def grow(server, kib) when is_integer(kib) and kib > 0,
    do: GenServer.call(server, {:grow, kib}, 30_000)

  @doc "Drops the data added by `grow/2`."
  def release(server), do: GenServer.call(server, :release)

  @doc "Crashes the worker asynchronously in the given way (see `crash_modes/0`)."
  def crash(server, mode) when mode in @crash_modes, do: GenServer.cast(server, {:crash, mode})
  def crash(_server, mode), do: {:error, {:unknown_mode, mode}}

  ## Callbacks

  @impl true
  def init(opts) do
    counter = Keyword.get(opts, :initial, 0)

    state = %{
      name: Keyword.get(opts, :name),
      counter: counter,
      history: [entry(:init, counter)],
      snapshots: %{},
      snapshot_order: [],
      grown: [],
      grown_bytes: 0,
      started_at: System.system_time(:millisecond)
    }

    {:ok, state}
  end

  @impl true
  def handle_call({:increment, by}, _from, state) do
    state = put_counter(state, state.counter + by, :increment)
    {:reply, state.counter, state}
  end

  def handle_call(:get_state, _from, state), do: {:reply, summary(state), state}

  def handle_call(:history, _from, state), do: {:reply, state.history, state}

  def handle_call(:snapshots, _from, state),
    do: {:reply, Enum.reverse(state.snapshot_order), state}

  def handle_call({:snapshot, name}, _from, state) do
    order = [name | List.delete(state.snapshot_order, name)]
    {keep, dropped} = Enum.split(order, @snapshot_limit)
    snapshots = state.snapshots |> Map.drop(dropped) |> Map.put(name, state.counter)
    {:reply, :ok, %{state | snapshots: snapshots, snapshot_order: keep}}
  end

  def handle_call({:restore, name}, _from, state) do
    case Map.fetch(state.snapshots, name) do
      {:ok, value} -> {:reply, :ok, put_counter(state, value, {:restore, name})}
      :error -> {:reply, {:error, :not_found}, state}
    end
  end

  def handle_call({:grow, kib}, _from, state) do
    # One list cell is two words (16 bytes on a 64-bit VM).
    cells = div(kib * 1024, 16)
    chunk = Enum.to_list(1..cells)
    bytes = state.grown_bytes + cells * 16
    {:reply, bytes, %{state | grown: [chunk | state.grown], grown_bytes: bytes}}
  end

  def handle_call(:release, _from, state) do
    {:reply, :ok, %{state | grown: [], grown_bytes: 0}}
  end

  def handle_call(:ping, _from, state), do: {:reply, :pong, state}

  @impl true
  def handle_cast({:crash, mode}, state), do: do_crash(mode, state)

  ## Internals

  defp do_crash(:raise, _state), do: raise("ArsenalDemo.StatefulWorker: crash requested (:raise)")
  defp do_crash(:exit, _state), do: exit({:demo_crash, :exit})
  # gen_server treats a thrown value as the callback's return: a bad return value.
  defp do_crash(:throw, _state), do: throw({:demo_crash, :throw})

  defp do_crash(:bad_match, state) do
    {:ok, _value} = Map.fetch(state.snapshots, make_ref())
    {:noreply, state}
  end

  defp do_crash(:badarith, state) do
    {:noreply, %{state | counter: state.counter / zero(state)}}
  end

  defp do_crash(:kill, state) do
    Process.exit(self(), :kill)
    {:noreply, state}
  end

  # A hung worker that a watchdog kills: it sleeps in a callback until killed.
  defp do_crash(:timeout_kill, state) do
    {:ok, _tref} = :timer.kill_after(100)
    Process.sleep(5_000)
    {:noreply, state}
  end

  defp zero(state), do: state.counter - state.counter

  defp put_counter(state, value, op) do
    history = Enum.take([entry(op, value) | state.history], @history_limit)
    %{state | counter: value, history: history}
  end

  defp entry(op, value), do: %{op: op, counter: value, at: System.system_time(:millisecond)}

  defp summary(state) do
    %{
      name: state.name,
      counter: state.counter,
      history_size: length(state.history),
      snapshots: Enum.reverse(state.snapshot_order),
      grown_bytes: state.grown_bytes,
      started_at: state.started_at
    }
  end
end
