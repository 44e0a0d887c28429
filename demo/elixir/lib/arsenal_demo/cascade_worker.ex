defmodule ArsenalDemo.CascadeWorker do
  @moduledoc """
  A worker that depends on other processes, found by registered name.

    * each dependency is monitored; a dependency that is not (yet) registered
      is looked up again every `:resolve_interval` ms;
    * failure propagation: when a dependency listed in `:propagate` dies, this
      worker stops with `{:dependency_down, name, reason}` (its supervisor then
      restarts it);
    * a circuit breaker guards `call_dependency/2`: `:closed` counts failures,
      `:failure_threshold` of them open it (`{:error, :circuit_open}` at once),
      after `:reset_timeout` ms (a `Process.send_after/3` timer) it goes
      `:half_open`, where one call decides: success closes it, failure opens it
      again.

  A dependency answers `GenServer.call(dep, :ping)` with `:pong` (every worker
  of this demo does).
  """
  use GenServer

  @default_deps [:arsenal_demo_pool, :arsenal_demo_events]

  ## Public API

  @doc """
  Options: `:name`, `:deps` (registered names, default
  `#{inspect(@default_deps)}`), `:propagate` (`true`, `false` or a list of
  dependency names whose death stops this worker; default `false`),
  `:failure_threshold` (3), `:reset_timeout` (ms, 5000), `:call_timeout` (ms,
  1000), `:resolve_interval` (ms, 500).
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

  @doc """
  Calls the dependency `dep` through the circuit breaker: `{:ok, :pong}`,
  `{:error, :circuit_open}`, `{:error, {:dependency_failed, reason}}` or
  `{:error, :unknown_dependency}`.
  """
  def call_dependency(server, dep), do: GenServer.call(server, {:call_dependency, dep}, 30_000)

  @doc "The breaker: `%{state: :closed | :open | :half_open, failures: n, ...}`."
  def breaker_state(server), do: GenServer.call(server, :breaker_state)

  @doc "Dependencies with their pid and status, plus the breaker and call counters."
  def status(server), do: GenServer.call(server, :status)

  ## Callbacks

  @impl true
  def init(opts) do
    names = Keyword.get(opts, :deps, @default_deps)

    state = %{
      name: Keyword.get(opts, :name),
      deps: Map.new(names, &{&1, %{pid: nil, mref: nil, status: :down, downs: 0}}),
      propagate: Keyword.get(opts, :propagate, false),
      call_timeout: Keyword.get(opts, :call_timeout, 1_000),
      resolve_interval: Keyword.get(opts, :resolve_interval, 500),
      resolve_scheduled: false,
      breaker: %{
        state: :closed,
        failures: 0,
        threshold: Keyword.get(opts, :failure_threshold, 3),
        reset_timeout: Keyword.get(opts, :reset_timeout, 5_000),
        opened_at: nil,
        trips: 0
      },
      calls: %{ok: 0, failed: 0, rejected: 0}
    }

    {:ok, resolve(state)}
  end

  @impl true
  def handle_call({:call_dependency, dep}, _from, state) do
    cond do
      not Map.has_key?(state.deps, dep) ->
        {:reply, {:error, :unknown_dependency}, state}

      state.breaker.state == :open ->
        {:reply, {:error, :circuit_open}, bump(state, :rejected)}

      true ->
        case ping(dep, state.call_timeout) do
          :ok ->
            {:reply, {:ok, :pong}, state |> bump(:ok) |> record_success()}

          {:error, reason} ->
            {:reply, {:error, {:dependency_failed, reason}},
             state |> bump(:failed) |> record_failure()}
        end
    end
  end

  def handle_call(:breaker_state, _from, state), do: {:reply, state.breaker, state}

  def handle_call(:status, _from, state) do
    deps = Map.new(state.deps, fn {name, dep} -> {name, Map.delete(dep, :mref)} end)
    {:reply, %{name: state.name, deps: deps, breaker: state.breaker, calls: state.calls}, state}
  end

  def handle_call(:ping, _from, state), do: {:reply, :pong, state}

  @impl true
  def handle_info({:DOWN, mref, :process, _pid, reason}, state) do
    case Enum.find(state.deps, fn {_name, dep} -> dep.mref == mref end) do
      nil ->
        {:noreply, state}

      {name, dep} ->
        dep = %{dep | pid: nil, mref: nil, status: :down, downs: dep.downs + 1}
        state = %{state | deps: Map.put(state.deps, name, dep)}

        if propagates?(state.propagate, name) do
          {:stop, {:dependency_down, name, reason}, state}
        else
          {:noreply, schedule_resolve(state)}
        end
    end
  end

  def handle_info(:resolve, state), do: {:noreply, resolve(%{state | resolve_scheduled: false})}

  def handle_info(:half_open, %{breaker: %{state: :open} = breaker} = state),
    do: {:noreply, %{state | breaker: %{breaker | state: :half_open}}}

  def handle_info(_other, state), do: {:noreply, state}

  ## Internals

  defp ping(dep, timeout) do
    case GenServer.call(dep, :ping, timeout) do
      :pong -> :ok
      other -> {:error, {:unexpected_reply, other}}
    end
  catch
    :exit, {reason, _call} -> {:error, reason}
    :exit, reason -> {:error, reason}
  end

  defp record_success(%{breaker: breaker} = state) do
    %{state | breaker: %{breaker | state: :closed, failures: 0, opened_at: nil}}
  end

  defp record_failure(%{breaker: breaker} = state) do
    failures = breaker.failures + 1

    if breaker.state == :half_open or failures >= breaker.threshold do
      Process.send_after(self(), :half_open, breaker.reset_timeout)

      breaker = %{
        breaker
        | state: :open,
          failures: failures,
          opened_at: System.system_time(:millisecond),
          trips: breaker.trips + 1
      }

      %{state | breaker: breaker}
    else
      %{state | breaker: %{breaker | failures: failures}}
    end
  end

  defp bump(state, key), do: %{state | calls: Map.update!(state.calls, key, &(&1 + 1))}

  defp propagates?(true, _name), do: true
  defp propagates?(false, _name), do: false
  defp propagates?(names, name) when is_list(names), do: name in names

  defp resolve(state) do
    deps =
      Map.new(state.deps, fn
        {name, %{status: :up} = dep} ->
          {name, dep}

        {name, dep} ->
          case Process.whereis(name) do
            nil -> {name, dep}
            pid -> {name, %{dep | pid: pid, mref: Process.monitor(pid), status: :up}}
          end
      end)

    schedule_resolve(%{state | deps: deps})
  end

  defp schedule_resolve(%{resolve_scheduled: true} = state), do: state

  defp schedule_resolve(state) do
    if Enum.any?(state.deps, fn {_name, dep} -> dep.status == :down end) do
      Process.send_after(self(), :resolve, state.resolve_interval)
      %{state | resolve_scheduled: true}
    else
      state
    end
  end
end
