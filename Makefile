# The two commands: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= uv

.PHONY: demo test setup tools python agent demo-build web browser compat lint bench clean

demo: setup
	$(UV) run arsenal demo

# The roots come first, so that `agent` builds the agent with each OTP line's compiler too.
test: tools compat setup browser
	ARSENAL_COMPAT=$$([ "$$(id -u)" = 0 ] && echo required) $(UV) run pytest

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

# Debian roots with the OTP releases this machine lacks (25, 27, 29), for the compatibility suite and
# the agent's per-OTP builds; cached under ~/.cache/arsenal/roots. Building them needs root.
compat:
	@if [ "$$(id -u)" = 0 ]; then scripts/compat_roots.sh >/dev/null; \
	else echo "compat: not root, so no Debian roots: the agent is built for this machine's OTP only" >&2; fi

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
