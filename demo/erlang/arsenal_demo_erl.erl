%% @doc A plain-Erlang demo node for Arsenal (no OTP application).
%%
%% Start a node with:
%%   erl -sname NAME -setcookie C -noshell -pa demo/erlang/ebin -s arsenal_demo_erl start
%%
%% start/0 starts a one_for_one supervisor registered as arsenal_demo_erl_sup
%% (unlinked from the caller, so it outlives it) with:
%%   demo_worker_1..3   gen_servers whose state is a map (a tick counter moves)
%%   demo_big_state     a gen_server holding ~2 MB of heap data plus a 2 MB binary
%%   demo_busy_mailbox  a process whose queue grows to 500 messages it never reads
%%   demo_spinner       a process burning reductions in a cheap loop with sleeps
-module(arsenal_demo_erl).

-export([start/0, stop/0, names/0, worker_names/0, worker_state/1, crash/1]).

-define(SUP, arsenal_demo_erl_sup).

%% @doc Starts the tree (idempotent): {ok, SupPid}.
-spec start() -> {ok, pid()}.
start() ->
    case whereis(?SUP) of
        undefined ->
            {ok, Pid} = arsenal_demo_erl_sup:start_link(),
            %% The supervisor must not die with whoever called start/0
            %% (the init process's -s runner, an rpc process, ...).
            true = unlink(Pid),
            {ok, Pid};
        Pid ->
            {ok, Pid}
    end.

%% @doc Stops the tree.
-spec stop() -> ok.
stop() ->
    case whereis(?SUP) of
        undefined ->
            ok;
        Pid ->
            Ref = monitor(process, Pid),
            exit(Pid, shutdown),
            receive
                {'DOWN', Ref, process, Pid, _} -> ok
            after 5000 ->
                exit(Pid, kill),
                ok
            end
    end.

%% @doc The registered names of the demo's processes.
-spec names() -> [atom()].
names() ->
    [?SUP | worker_names()] ++ [demo_busy_mailbox, demo_spinner].

%% @doc The names of the gen_server workers.
-spec worker_names() -> [atom()].
worker_names() ->
    [demo_worker_1, demo_worker_2, demo_worker_3, demo_big_state].

%% @doc The state map of a gen_server worker (ballast reported by size).
-spec worker_state(atom()) -> map() | {error, term()}.
worker_state(Name) ->
    case lists:member(Name, worker_names()) of
        true ->
            try
                gen_server:call(Name, get_state, 5000)
            catch
                exit:{Reason, _} -> {error, Reason}
            end;
        false ->
            {error, not_a_worker}
    end.

%% @doc Crashes a demo process: a worker exits with {demo_crash, Name}, the
%% other processes are killed. Returns {ok, OldPid}; the supervisor restarts it.
-spec crash(atom()) -> {ok, pid()} | {error, not_found}.
crash(Name) ->
    case whereis(Name) of
        undefined ->
            {error, not_found};
        Pid ->
            case lists:member(Name, worker_names()) of
                true -> gen_server:cast(Name, crash);
                false -> exit(Pid, kill)
            end,
            {ok, Pid}
    end.
