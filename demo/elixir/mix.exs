defmodule ArsenalDemo.MixProject do
  use Mix.Project

  # No dependencies on purpose: this project must build offline with a plain
  # `mix compile` (see ../build.sh), so Arsenal's tests can boot it anywhere.
  def project do
    [
      app: :arsenal_demo,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: false,
      deps: []
    ]
  end

  def application do
    [
      extra_applications: [:logger],
      mod: {ArsenalDemo.Application, []},
      env: [load_interval: 200, load_enabled: true]
    ]
  end
end
