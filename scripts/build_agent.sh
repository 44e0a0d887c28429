#!/usr/bin/env bash
# Compile the agent once per OTP line: a .beam file is only loadable by some OTP releases (OTP 29
# refuses what OTP 25 compiled, OTP 25 refuses what OTP 27 compiled, OTP 27 refuses what OTP 29
# compiled), so Arsenal ships one build per compiler and picks, at attach time, the newest build
# not newer than the node's release.
#
#   src/arsenal/agent/ebin/otp<REL>/*.beam + manifest.json
#
# The host's erlc always builds one; every Debian root made by scripts/compat_roots.sh (under
# $ARSENAL_COMPAT_ROOTS, default ~/.cache/arsenal/roots) builds the line of its own OTP. The
# manifest maps module -> md5 (as module_info(md5) reports it on a node), which the loader
# compares to decide whether a node already runs this exact agent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/src/arsenal/agent"
out="$src/ebin"
roots=${ARSENAL_COMPAT_ROOTS:-$HOME/.cache/arsenal/roots}
mkdir -p "$out"
rm -f "$out"/*.beam "$out"/manifest.json  # the layout before builds were per OTP line

# The build step, run by the host's or a root's erl: compile every module, then write the manifest
# into the directory named after the compiler's release. Prints that directory's name.
read -r -d '' build_eval <<'ERL' || true
  [Src, Out] = init:get_plain_arguments(),
  Rel = erlang:system_info(otp_release),
  Dir = filename:join(Out, "otp" ++ Rel),
  ok = filelib:ensure_path(Dir),
  [file:delete(F) || F <- filelib:wildcard(filename:join(Dir, "*.beam"))],
  Opts = [deterministic, warnings_as_errors, debug_info, report, {outdir, Dir}],
  Results = [compile:file(F, Opts) || F <- lists:sort(filelib:wildcard(filename:join(Src, "*.erl")))],
  case [R || R <- Results, element(1, R) =/= ok] of
      [] -> ok;
      _ -> io:format(standard_error, "agent: OTP ~s failed to compile the agent~n", [Rel]), halt(1)
  end,
  Beams = lists:sort(filelib:wildcard(filename:join(Dir, "*.beam"))),
  Entries = [begin
      {ok, {Mod, Md5}} = beam_lib:md5(B),
      io_lib:format("    \"~s\": \"~s\"", [Mod, binary:encode_hex(Md5)])
    end || B <- Beams],
  Json = ["{\n  \"otp_release\": \"", Rel, "\",\n  \"erts_version\": \"",
          erlang:system_info(version), "\",\n  \"modules\": {\n",
          lists:join(",\n", Entries), "\n  }\n}\n"],
  ok = file:write_file(filename:join(Dir, "manifest.json"), Json),
  io:format("~s ~b~n", [filename:basename(Dir), length(Beams)]),
  halt().
ERL

report() { read -r dir count; echo "agent: built $count module(s) into ${out#$here/}/$dir ($1)"; }

erl -noshell -eval "$build_eval" -extra "$src" "$out" | report "this machine's OTP"

# Each compat root compiles in a scratch directory inside itself: a chroot sees only its own tree.
for root in "$roots"/*; do
  case "$root" in *-bare|*.partial|*.log) continue ;; esac
  [ -x "$root/usr/bin/erlc" ] || continue
  [ "$(id -u)" -eq 0 ] || { echo "agent: skipping $root (building inside it needs root)" >&2; continue; }
  scratch=$(mktemp -d "$root/tmp/arsenal-agent.XXXXXX")
  mkdir -p "$scratch/src" "$scratch/out"
  cp "$src"/*.erl "$scratch/src/"
  inner=${scratch#"$root"}
  chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp \
    erl -noshell -eval "$build_eval" -extra "$inner/src" "$inner/out" | report "$(basename "$root")"
  for dir in "$scratch"/out/otp*; do
    rel=$(basename "$dir")
    rm -rf "${out:?}/$rel"
    cp -r "$dir" "$out/$rel"
  done
  rm -rf "$scratch"
done
