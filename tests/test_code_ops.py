"""Live development on an attached node (admins only): reload_module and evaluate_code."""

from __future__ import annotations

from collections.abc import Callable

from arsenal.client import Arsenal
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode

from .helpers import fails
from .nodes import BeamNode

WORKER = """
-module(live_worker).
-behaviour(gen_server).
-export([start/0, init/1, handle_call/3, handle_cast/2, code_change/3]).
start() -> gen_server:start({local, live_worker}, ?MODULE, [], []).
init([]) -> {ok, 7}.
handle_call(get, _From, S) -> {reply, {VSN, S}, S}.
handle_cast(_, S) -> {noreply, S}.
code_change(_Old, N, _Extra) when is_integer(N) -> {ok, #{n => N}};
code_change(_Old, S, _Extra) -> {ok, S}.
"""


def source(version: str) -> str:
    return WORKER.replace("VSN", version)


async def test_reload_module_on_an_attached_node_keeps_state(
    make_node: Callable[..., BeamNode], cookie: str
) -> None:
    target = make_node("live")
    async with Arsenal(cookie=cookie) as service:
        await service.attach(target.name, reconnect=False)

        async def run(operation: str, params: dict[str, object]) -> object:
            return await service.run(operation, params, node=target.name)

        first = await run(
            "reload_module", {"module": "live_worker", "source": source("v1"), "language": "erlang"}
        )
        assert first.processes == []  # not running yet: a plain load
        started = await run(
            "evaluate_code", {"code": "{ok, _} = live_worker:start(), ok", "language": "erlang"}
        )
        assert started.ok and started.value == "ok"
        second = await run(
            "reload_module", {"module": "live_worker", "source": source("v2"), "language": "erlang"}
        )
        [process] = second.processes
        assert (
            process["name"] == "live_worker" and process["code_change"] == "ok" and process["state_changed"]
        )
        got = await run("evaluate_code", {"code": "gen_server:call(live_worker, get)", "language": "erlang"})
        assert got.value == "{v2,#{n => 7}}"
        # The default policy holds on attached nodes too, and errors leave the running version.
        error = await fails(
            ErrorCode.forbidden,
            run("evaluate_code", {"code": 'os:cmd("id")', "language": "erlang"}),
        )
        assert error.details["findings"][0]["call"] == "os:cmd/1"
        broken = source("v3").replace("init([]) -> {ok, 7}.", "init([]) -> {ok, 7}")
        error = await fails(
            ErrorCode.validation_error,
            run("reload_module", {"module": "live_worker", "source": broken, "language": "erlang"}),
        )
        assert error.details["errors"][0]["line"] >= 6
        got = await run("evaluate_code", {"code": "gen_server:call(live_worker, get)", "language": "erlang"})
        assert got.value == "{v2,#{n => 7}}"
        scratch = await run(
            "evaluate_code", {"code": 'filelib:wildcard("/tmp/arsenal-code-*")', "language": "erlang"}
        )
        assert scratch.value == "[]"


async def test_only_admins_and_never_read_only(make_node: Callable[..., BeamNode], cookie: str) -> None:
    target = make_node("live")
    async with Arsenal(cookie=cookie, principal=Principal(name="op", role="operator")) as service:
        await service.attach(target.name, reconnect=False)
        for operation, params in [
            ("reload_module", {"module": "m", "source": "-module(m).", "language": "erlang"}),
            ("evaluate_code", {"code": "1"}),
        ]:
            error = await fails(ErrorCode.forbidden, service.run(operation, params, node=target.name))
            assert "admin" in error.message
    async with Arsenal(cookie=cookie) as service:
        await service.attach(target.name, reconnect=False, read_only=True)
        await fails(ErrorCode.read_only, service.run("evaluate_code", {"code": "1"}, node=target.name))
