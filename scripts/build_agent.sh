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
  Final = filename:join(Out, "otp" ++ Rel),
  %% Built beside the current build and swapped in whole: a running Arsenal never reads half of one.
  Dir = Final ++ ".new",
  _ = file:del_dir_r(Dir),
  ok = filelib:ensure_path(Dir),
  Opts = [deterministic, warnings_as_errors, debug_info, report, {outdir, Dir}],
  Results = [compile:file(F, Opts) || F <- lists:sort(filelib:wildcard(filename:join(Src, "*.erl")))],
  case [R || R <- Results, not (is_tuple(R) andalso element(1, R) =:= ok)] of
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
  _ = file:del_dir_r(Final ++ ".old"),
  _ = file:rename(Final, Final ++ ".old"),
  ok = file:rename(Dir, Final),
  _ = file:del_dir_r(Final ++ ".old"),
  io:format("built: ~s ~b~n", [filename:basename(Final), length(Beams)]),
  halt().
ERL

# Run the build step (its arguments: how to run erl); compiler messages go to stderr.
build() {
  local what=$1 output; shift
  if ! output=$("$@" -noshell -eval "$build_eval" -extra "${args[@]}" 2>&1); then
    printf '%s\n' "$output" | grep -v '^built: ' >&2
    echo "agent: the build with $what failed" >&2
    return 1
  fi
  printf '%s\n' "$output" | grep -v '^built: ' >&2 || true
  local _ dir count
  read -r _ dir count < <(printf '%s\n' "$output" | grep '^built: ')
  echo "agent: built $count module(s) into ${out#"$here"/}/$dir ($what)"
}

args=("$src" "$out")
build "this machine's OTP" erl

# Each compat root compiles in a scratch directory inside itself: a chroot sees only its own tree.
for root in "$roots"/*; do
  case "$root" in *-bare|*.partial|*.log) continue ;; esac
  [ -x "$root/usr/bin/erlc" ] || continue
  [ "$(id -u)" -eq 0 ] || { echo "agent: skipping $root (building inside it needs root)" >&2; continue; }
  scratch=$(mktemp -d "$root/tmp/arsenal-agent.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/src" "$scratch/out"
  cp "$src"/*.erl "$scratch/src/"
  inner=${scratch#"$root"}
  args=("$inner/src" "$inner/out")
  build "$(basename "$root")" chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp erl
  for dir in "$scratch"/out/otp[0-9]*; do
    rel=$(basename "$dir")
    rm -rf "${out:?}/$rel.new"
    cp -r "$dir" "$out/$rel.new"
    rm -rf "${out:?}/$rel.old"
    [ ! -d "$out/$rel" ] || mv "$out/$rel" "$out/$rel.old"
    mv "$out/$rel.new" "$out/$rel"
    rm -rf "${out:?}/$rel.old"
  done
  rm -rf "$scratch"
done
