defmodule ArsenalDemo.DynamicWorkers do
  @moduledoc """
  A `DynamicSupervisor` of `ArsenalDemo.StatefulWorker`s. Two are started with
  it (`ArsenalDemo.Dynamic1`, `ArsenalDemo.Dynamic2`), also after a restart of
  this supervisor; more can be added with `start_worker/2`.
  """
  use DynamicSupervisor

  alias ArsenalDemo.StatefulWorker

  @boot_workers [ArsenalDemo.Dynamic1, ArsenalDemo.Dynamic2]

  def start_link(opts) do
    name = Keyword.get(opts, :name, __MODULE__)

    # The children are added here, in the parent's start call, so a restarted
    # DynamicWorkers comes back with them too.
    with {:ok, pid} <- DynamicSupervisor.start_link(__MODULE__, opts, name: name) do
      for worker <- Keyword.get(opts, :workers, @boot_workers) do
        {:ok, _} = start_worker(pid, worker)
      end

      {:ok, pid}
    end
  end

  def child_spec(opts) do
    %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, type: :supervisor}
  end

  @doc "Starts a StatefulWorker registered as `name` (or unnamed with `nil`)."
  def start_worker(sup \\ __MODULE__, name) do
    DynamicSupervisor.start_child(sup, {StatefulWorker, name: name})
  end

  @doc "Stops a dynamic worker by pid."
  def stop_worker(sup \\ __MODULE__, pid), do: DynamicSupervisor.terminate_child(sup, pid)

  @impl true
  def init(_opts) do
    DynamicSupervisor.init(
      strategy: :one_for_one,
      max_children: 100,
      max_restarts: 5,
      max_seconds: 10
    )
  end
end
