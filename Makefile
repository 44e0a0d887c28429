# The two commands: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= uv

.PHONY: demo test setup tools python agent demo-build web browser lint bench clean

demo: setup
	$(UV) run arsenal demo

test: setup browser
	$(UV) run pytest

setup: tools python agent demo-build web

tools:
	@scripts/ensure_tools.sh

python: tools
	$(UV) sync --quiet

agent: tools
	@scripts/build_agent.sh

demo-build: tools
	@demo/build.sh

web: tools
	@scripts/build_web.sh

browser:
	@scripts/ensure_browser.sh

lint: python
	$(UV) run ruff check src tests benchmarks

bench: setup
	$(UV) run python benchmarks/rpc_latency.py
	$(UV) run python benchmarks/decode_throughput.py
	$(UV) run python benchmarks/rest_list_processes.py
	$(UV) run python benchmarks/rest_process_info.py
	$(UV) run python benchmarks/trace_throughput.py
	$(UV) run python benchmarks/trace_overhead.py
	$(UV) run python benchmarks/sandbox.py
	$(UV) run python benchmarks/sampling_overhead.py
	$(UV) run python benchmarks/cluster.py

clean:
	rm -rf web/dist src/arsenal/agent/ebin demo/erlang/ebin demo/elixir/_build .pytest_cache
