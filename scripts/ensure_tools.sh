#!/usr/bin/env bash
# Install what `make demo` and `make test` need and the machine lacks:
# Erlang/OTP, Elixir and Node.js from Debian's packages (when root), uv from PyPI.
# Idempotent: it only installs what is missing.
#
# uv comes from PyPI into a private virtual environment (~/.local/share/arsenal/uv-venv)
# linked as ~/.local/bin/uv: Debian's python3 has no pip and
# refuses installs into itself (PEP 668), but its venv module (Debian's python3-venv) gives an
# environment with a pip of its own, which reads this machine's pip configuration as usual.
set -euo pipefail
export PATH="$HOME/.local/bin:$PATH"
uv_venv=${XDG_DATA_HOME:-$HOME/.local/share}/arsenal/uv-venv

need_apt=()
command -v erl >/dev/null 2>&1 && command -v erlc >/dev/null 2>&1 || need_apt+=(erlang-nox erlang-dev)
command -v elixir >/dev/null 2>&1 && command -v mix >/dev/null 2>&1 || need_apt+=(elixir)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The dashboard's assets are built with Node.js (scripts/build_web.sh); Debian's is recent enough.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# uv is bootstrapped with Python's venv module, which Debian ships apart from python3.
if ! command -v uv >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3 python3-venv)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from Debian's packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "error: this machine lacks ${need_apt[*]} (Debian's package names). Install them as root:" >&2
    echo "  apt-get install ${need_apt[*]}" >&2
    echo "Erlang/OTP 25 or later and Elixir 1.14 or later; python3-venv only serves to install uv" >&2
    echo "(with uv on PATH, e.g. from 'pipx install uv', it is not needed)." >&2
    exit 1
  fi
fi

install_uv() {
  echo "installing uv from PyPI into $uv_venv"
  python3 -m venv --clear "$uv_venv"
  "$uv_venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
  mkdir -p "$HOME/.local/bin"
  ln -sf "$uv_venv/bin/uv" "$HOME/.local/bin/uv"
}

if ! command -v uv >/dev/null 2>&1; then
  if [ -x "$uv_venv/bin/uv" ]; then
    mkdir -p "$HOME/.local/bin"
    ln -sf "$uv_venv/bin/uv" "$HOME/.local/bin/uv"
  else
    install_uv
  fi
  uv --version
fi
