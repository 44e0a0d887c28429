defmodule ArsenalDemo.Supervisor do
  @moduledoc """
  The top of the tree (`:one_for_one`): a `:one_for_all` pair of counters, a
  `:rest_for_one` chain of services, a `DynamicSupervisor` and the load
  generator.
  """
  use Supervisor

  def start_link(opts) do
    Supervisor.start_link(__MODULE__, opts, name: __MODULE__)
  end

  @impl true
  def init(_opts) do
    load = Application.get_env(:arsenal_demo, :load_enabled, true)
    interval = Application.get_env(:arsenal_demo, :load_interval, 200)

    children = [
      ArsenalDemo.PairSupervisor,
      ArsenalDemo.ServiceSupervisor,
      ArsenalDemo.DynamicWorkers,
      {ArsenalDemo.LoadGenerator,
       name: ArsenalDemo.LoadGenerator, interval: interval, enabled: load}
    ]

    Supervisor.init(children, strategy: :one_for_one, max_restarts: 10, max_seconds: 10)
  end
end

defmodule ArsenalDemo.PairSupervisor do
  @moduledoc """
  `:one_for_all`: two counters that live and die together. Crash one and both
  restart (watch both pids change).
  """
  use Supervisor

  alias ArsenalDemo.StatefulWorker

  def start_link(opts) do
    Supervisor.start_link(__MODULE__, opts, name: __MODULE__)
  end

  @impl true
  def init(_opts) do
    children = [
      {StatefulWorker, name: ArsenalDemo.Counter1},
      {StatefulWorker, name: ArsenalDemo.Counter2, initial: 100}
    ]

    Supervisor.init(children, strategy: :one_for_all, max_restarts: 5, max_seconds: 10)
  end
end

defmodule ArsenalDemo.ServiceSupervisor do
  @moduledoc """
  `:rest_for_one`: pool -> events -> cascade. When the pool dies, the events hub
  and the cascade worker are restarted after it; when the events hub dies, only
  the cascade worker is. The cascade worker also depends on
  `ArsenalDemo.Counter1`, which lives in another subtree: its death reaches here
  through the cascade worker's monitor (failure propagation).
  """
  use Supervisor

  def start_link(opts) do
    Supervisor.start_link(__MODULE__, opts, name: __MODULE__)
  end

  @impl true
  def init(_opts) do
    children = [
      {ArsenalDemo.ResourceWorker, name: :arsenal_demo_pool, size: 5, max_waiting: 20},
      {ArsenalDemo.EventWorker,
       name: :arsenal_demo_events, buffer_size: 100, dead_letter_limit: 50},
      {ArsenalDemo.CascadeWorker,
       name: :arsenal_demo_cascade,
       deps: [:arsenal_demo_pool, :arsenal_demo_events, ArsenalDemo.Counter1],
       propagate: [ArsenalDemo.Counter1],
       reset_timeout: 5_000}
    ]

    Supervisor.init(children, strategy: :rest_for_one, max_restarts: 5, max_seconds: 10)
  end
end
