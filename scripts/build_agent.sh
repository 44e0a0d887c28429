#!/usr/bin/env bash
# Compile the agent's Erlang modules into src/arsenal/agent/ebin and write manifest.json
# (module -> md5 of the module, as module_info(md5) reports it on a node), which the
# loader compares to decide whether a node already runs this exact agent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/src/arsenal/agent"
out="$src/ebin"
mkdir -p "$out"
erlc +deterministic +warnings_as_errors +debug_info -o "$out" "$src"/*.erl
erl -noshell -eval '
  [Out] = init:get_plain_arguments(),
  Beams = filelib:wildcard(filename:join(Out, "*.beam")),
  Entries = [begin
      {ok, {Mod, Md5}} = beam_lib:md5(B),
      io_lib:format("  \"~s\": \"~s\"", [Mod, binary:encode_hex(Md5)])
    end || B <- lists:sort(Beams)],
  Json = ["{\n  \"otp_release\": \"", erlang:system_info(otp_release), "\",\n  \"modules\": {\n",
          lists:join(",\n", [["  ", E] || E <- Entries]), "\n  }\n}\n"],
  ok = file:write_file(filename:join(Out, "manifest.json"), Json),
  halt().' -extra "$out"
echo "agent: built $(ls "$out"/*.beam | wc -l) module(s) into ${out#$here/}"
