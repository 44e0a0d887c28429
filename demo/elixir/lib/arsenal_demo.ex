defmodule ArsenalDemo do
  @moduledoc """
  A demo OTP application for Arsenal to attach to: real supervision trees and
  workers with state worth inspecting. See `demo/README.md`.

  Registered names (Elixir module atoms are `'Elixir.ArsenalDemo.X'` seen from Erlang):

      ArsenalDemo.Supervisor            one_for_one, the top
        ArsenalDemo.PairSupervisor      one_for_all
          ArsenalDemo.Counter1          StatefulWorker
          ArsenalDemo.Counter2          StatefulWorker
        ArsenalDemo.ServiceSupervisor   rest_for_one
          :arsenal_demo_pool            ResourceWorker (5 connections)
          :arsenal_demo_events          EventWorker
          :arsenal_demo_cascade         CascadeWorker (depends on the three above)
        ArsenalDemo.DynamicWorkers      DynamicSupervisor
          ArsenalDemo.Dynamic1          StatefulWorker
          ArsenalDemo.Dynamic2          StatefulWorker
        ArsenalDemo.LoadGenerator       background activity
  """

  @doc "The registered names of the demo's processes."
  def registered_names do
    [
      ArsenalDemo.Supervisor,
      ArsenalDemo.PairSupervisor,
      ArsenalDemo.Counter1,
      ArsenalDemo.Counter2,
      ArsenalDemo.ServiceSupervisor,
      :arsenal_demo_pool,
      :arsenal_demo_events,
      :arsenal_demo_cascade,
      ArsenalDemo.DynamicWorkers,
      ArsenalDemo.Dynamic1,
      ArsenalDemo.Dynamic2,
      ArsenalDemo.LoadGenerator
    ]
  end
end
