%% @doc The demo's one_for_one supervisor, registered as arsenal_demo_erl_sup.
-module(arsenal_demo_erl_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-define(BIG_BYTES, 2 * 1024 * 1024).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    Flags = #{strategy => one_for_one, intensity => 10, period => 10},
    Workers = [worker(N, #{role => plain}) || N <- [demo_worker_1, demo_worker_2, demo_worker_3]],
    Big = worker(demo_big_state, #{role => big_state, ballast_bytes => ?BIG_BYTES}),
    Procs = [
        #{id => demo_busy_mailbox,
          start => {arsenal_demo_erl_procs, start_busy_mailbox, []},
          modules => [arsenal_demo_erl_procs]},
        #{id => demo_spinner,
          start => {arsenal_demo_erl_procs, start_spinner, []},
          modules => [arsenal_demo_erl_procs]}
    ],
    {ok, {Flags, Workers ++ [Big | Procs]}}.

worker(Name, Opts) ->
    #{id => Name,
      start => {arsenal_demo_erl_worker, start_link, [Name, Opts]},
      modules => [arsenal_demo_erl_worker]}.
