#!/usr/bin/env bash
# Install what `make demo` and `make test` need and the machine lacks:
# Erlang/OTP, Elixir and Node.js from Debian's packages (when root), uv from PyPI.
# Idempotent: it only installs what is missing.
set -euo pipefail

need_apt=()
command -v erl >/dev/null 2>&1 && command -v erlc >/dev/null 2>&1 || need_apt+=(erlang-nox erlang-dev)
command -v elixir >/dev/null 2>&1 && command -v mix >/dev/null 2>&1 || need_apt+=(elixir)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The dashboard's assets are built with Node.js (scripts/build_web.sh); Debian's is recent enough.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from Debian's packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "error: missing ${need_apt[*]}." >&2
    echo "Install Erlang/OTP (25 or later) and Elixir (1.14 or later), e.g. as root:" >&2
    echo "  apt-get install erlang-nox erlang-dev elixir nodejs npm" >&2
    exit 1
  fi
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv from PyPI"
  python3 -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet --user uv
fi
