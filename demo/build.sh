#!/usr/bin/env bash
# Builds Arsenal's demo nodes, offline and idempotently:
#   demo/erlang/*.erl  -> demo/erlang/ebin/*.beam           (erlc)
#   demo/elixir        -> demo/elixir/_build/dev/lib/...    (mix compile, MIX_ENV=dev)
# Set DEMO_STRICT=1 to turn compiler warnings into errors.
set -euo pipefail

DEMO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STRICT="${DEMO_STRICT:-0}"

for tool in erlc mix; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build.sh: '$tool' not found (install erlang and elixir)" >&2
        exit 1
    fi
done

# --- Erlang demo -----------------------------------------------------------
ERL_SRC="$DEMO_DIR/erlang"
ERL_EBIN="$ERL_SRC/ebin"
mkdir -p "$ERL_EBIN"
erlc_flags=(-Wall)
[ "$STRICT" = "1" ] && erlc_flags+=(-Werror)
echo "==> erlc ${erlc_flags[*]} -o ${ERL_EBIN#"$DEMO_DIR"/} erlang/*.erl"
erlc "${erlc_flags[@]}" -o "$ERL_EBIN" "$ERL_SRC"/*.erl
echo "    built: $(cd "$ERL_EBIN" && ls *.beam | tr '\n' ' ')"

# --- Elixir demo -----------------------------------------------------------
EX_DIR="$DEMO_DIR/elixir"
export MIX_ENV=dev
export HEX_OFFLINE=1
export MIX_HOME="${MIX_HOME_DEMO:-$EX_DIR/_build/mix_home}"
mkdir -p "$MIX_HOME"
mix_flags=()
[ "$STRICT" = "1" ] && mix_flags+=(--warnings-as-errors)
echo "==> (cd elixir && MIX_ENV=dev HEX_OFFLINE=1 mix compile ${mix_flags[*]})"
(cd "$EX_DIR" && mix compile ${mix_flags[@]+"${mix_flags[@]}"})
echo "    built: elixir/_build/dev/lib/arsenal_demo/ebin ($(ls "$EX_DIR"/_build/dev/lib/arsenal_demo/ebin | wc -l) files)"
echo "==> demo build OK"
