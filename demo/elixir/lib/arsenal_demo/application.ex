defmodule ArsenalDemo.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    ArsenalDemo.Supervisor.start_link([])
  end
end
