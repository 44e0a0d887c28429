defmodule ArsenalDemo.ResourceWorker do
  @moduledoc """
  A checkout/checkin pool of N fake connections.

    * `checkout/2` hands out a connection or waits in a bounded queue
      (backpressure) until one is checked in or the timeout passes;
    * every holder and waiter is monitored: a holder that dies has its
      connection reclaimed, a waiter that dies leaves the queue;
    * `leak/2` checks connections out from a process that never gives them
      back: a leak for an operator to find (kill the leaker and the pool heals);
    * `stats/1` reports the pool.
  """
  use GenServer

  @type conn :: {:demo_conn, pos_integer()}

  ## Public API

  @doc """
  Options: `:name`, `:size` (connections, default 5), `:max_waiting`
  (bounded waiting queue, default 50).
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
  Checks a connection out for the calling process: `{:ok, conn}`,
  `{:error, :timeout}` after waiting `timeout` ms, or `{:error, :queue_full}`.
  """
  def checkout(server, timeout \\ 5_000) when is_integer(timeout) and timeout >= 0 do
    GenServer.call(server, {:checkout, timeout}, timeout + 1_000)
  end

  @doc "Gives a connection back: `:ok` or `{:error, :not_checked_out}`."
  def checkin(server, conn), do: GenServer.call(server, {:checkin, conn})

  @doc "Pool statistics."
  def stats(server), do: GenServer.call(server, :stats)

  @doc """
  Spawns an unlinked process that checks out up to `n` connections (those it
  can get within a short wait) and never checks them in. Returns
  `{:ok, leaker_pid, conns}`. Killing the leaker (or sending it `:stop`)
  returns them to the pool.
  """
  def leak(server, n) when is_integer(n) and n > 0 do
    caller = self()
    ref = make_ref()

    pid =
      spawn(fn ->
        Process.put(:"$initial_call", {__MODULE__, :leaker, 2})
        Process.put(:arsenal_demo_role, :resource_leaker)
        conns = take(server, n, [])
        send(caller, {ref, conns})
        leaker_loop()
      end)

    receive do
      {^ref, conns} -> {:ok, pid, conns}
    after
      10_000 -> {:error, :timeout}
    end
  end

  defp take(_server, 0, acc), do: Enum.reverse(acc)

  defp take(server, n, acc) do
    case checkout(server, 50) do
      {:ok, conn} -> take(server, n - 1, [conn | acc])
      {:error, _} -> Enum.reverse(acc)
    end
  end

  defp leaker_loop do
    receive do
      :stop -> :ok
    end
  end

  ## Callbacks

  @impl true
  def init(opts) do
    size = Keyword.get(opts, :size, 5)

    state = %{
      name: Keyword.get(opts, :name),
      size: size,
      available: Enum.map(1..size//1, &{:demo_conn, &1}),
      holders: %{},
      waiting: :queue.new(),
      max_waiting: Keyword.get(opts, :max_waiting, 50),
      checkouts: 0,
      checkins: 0,
      timeouts: 0,
      reclaimed: 0,
      rejected: 0
    }

    {:ok, state}
  end

  @impl true
  def handle_call({:checkout, timeout}, {pid, _tag} = from, state) do
    cond do
      state.available != [] ->
        [conn | rest] = state.available
        mref = Process.monitor(pid)
        {:reply, {:ok, conn}, hand_out(%{state | available: rest}, mref, pid, conn)}

      timeout == 0 ->
        {:reply, {:error, :timeout}, %{state | timeouts: state.timeouts + 1}}

      :queue.len(state.waiting) >= state.max_waiting ->
        {:reply, {:error, :queue_full}, %{state | rejected: state.rejected + 1}}

      true ->
        wid = make_ref()

        waiter = %{
          wid: wid,
          from: from,
          pid: pid,
          mref: Process.monitor(pid),
          tref: Process.send_after(self(), {:waiter_timeout, wid}, timeout)
        }

        {:noreply, %{state | waiting: :queue.in(waiter, state.waiting)}}
    end
  end

  def handle_call({:checkin, conn}, _from, state) do
    case Enum.find(state.holders, fn {_mref, holder} -> holder.conn == conn end) do
      {mref, _holder} ->
        Process.demonitor(mref, [:flush])
        state = %{state | holders: Map.delete(state.holders, mref), checkins: state.checkins + 1}
        {:reply, :ok, release(state, conn)}

      nil ->
        {:reply, {:error, :not_checked_out}, state}
    end
  end

  def handle_call(:stats, _from, state), do: {:reply, stats_of(state), state}

  def handle_call(:ping, _from, state), do: {:reply, :pong, state}

  @impl true
  def handle_info({:waiter_timeout, wid}, state) do
    case take_waiter(state.waiting, &(&1.wid == wid)) do
      {nil, _} ->
        {:noreply, state}

      {waiter, waiting} ->
        Process.demonitor(waiter.mref, [:flush])
        GenServer.reply(waiter.from, {:error, :timeout})
        {:noreply, %{state | waiting: waiting, timeouts: state.timeouts + 1}}
    end
  end

  def handle_info({:DOWN, mref, :process, _pid, _reason}, state) do
    case Map.pop(state.holders, mref) do
      {%{conn: conn}, holders} ->
        {:noreply, release(%{state | holders: holders, reclaimed: state.reclaimed + 1}, conn)}

      {nil, _} ->
        case take_waiter(state.waiting, &(&1.mref == mref)) do
          {nil, _} ->
            {:noreply, state}

          {waiter, waiting} ->
            Process.cancel_timer(waiter.tref)
            {:noreply, %{state | waiting: waiting}}
        end
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  ## Internals

  defp hand_out(state, mref, pid, conn) do
    holder = %{pid: pid, conn: conn, since: System.system_time(:millisecond)}
    %{state | holders: Map.put(state.holders, mref, holder), checkouts: state.checkouts + 1}
  end

  # A connection came back: the first waiter gets it, or it goes back to the pool.
  defp release(state, conn) do
    case :queue.out(state.waiting) do
      {{:value, waiter}, waiting} ->
        Process.cancel_timer(waiter.tref)
        GenServer.reply(waiter.from, {:ok, conn})
        # The waiter's monitor now watches a holder.
        hand_out(%{state | waiting: waiting}, waiter.mref, waiter.pid, conn)

      {:empty, _} ->
        %{state | available: state.available ++ [conn]}
    end
  end

  defp take_waiter(queue, fun) do
    list = :queue.to_list(queue)

    case Enum.split_with(list, fun) do
      {[waiter | _], rest} -> {waiter, :queue.from_list(rest)}
      {[], _} -> {nil, queue}
    end
  end

  defp stats_of(state) do
    %{
      name: state.name,
      size: state.size,
      available: length(state.available),
      in_use: map_size(state.holders),
      waiting: :queue.len(state.waiting),
      max_waiting: state.max_waiting,
      holders:
        Enum.map(state.holders, fn {_mref, h} -> %{pid: h.pid, conn: h.conn, since: h.since} end),
      checkouts: state.checkouts,
      checkins: state.checkins,
      timeouts: state.timeouts,
      reclaimed: state.reclaimed,
      rejected: state.rejected
    }
  end
end
