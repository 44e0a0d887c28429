%% @doc Two plain processes (proc_lib, supervised) that stand out in Arsenal:
%%  - demo_busy_mailbox: sends itself 50 messages every 100 ms up to 500 and
%%    never reads them (its message_queue_len grows, then stays at 500);
%%  - demo_spinner: burns reductions in a cheap loop with a 5 ms sleep, so it
%%    tops a sort by reductions without taking a core.
-module(arsenal_demo_erl_procs).

-export([start_busy_mailbox/0, start_spinner/0]).
-export([busy_mailbox_init/1, spinner_init/0]).

-define(MAILBOX_MAX, 500).
-define(MAILBOX_BATCH, 50).
-define(MAILBOX_EVERY_MS, 100).
-define(SPIN_WORK, 2000).
-define(SPIN_SLEEP_MS, 5).

start_busy_mailbox() ->
    proc_lib:start_link(?MODULE, busy_mailbox_init, [?MAILBOX_MAX]).

start_spinner() ->
    proc_lib:start_link(?MODULE, spinner_init, []).

busy_mailbox_init(Max) ->
    true = register(demo_busy_mailbox, self()),
    proc_lib:init_ack({ok, self()}),
    busy_mailbox_loop(0, Max).

busy_mailbox_loop(N, Max) when N < Max ->
    Count = min(?MAILBOX_BATCH, Max - N),
    lists:foreach(fun(I) -> self() ! {unread, N + I, erlang:system_time(millisecond)} end,
                  lists:seq(1, Count)),
    wait(?MAILBOX_EVERY_MS),
    busy_mailbox_loop(N + Count, Max);
busy_mailbox_loop(N, Max) ->
    wait(infinity),
    busy_mailbox_loop(N, Max).

%% Waits without reading anything: no message ever matches.
wait(Timeout) ->
    receive
        {?MODULE, never_sent} -> ok
    after Timeout ->
        ok
    end.

spinner_init() ->
    true = register(demo_spinner, self()),
    proc_lib:init_ack({ok, self()}),
    spinner_loop(0).

spinner_loop(N) ->
    Acc = lists:foldl(fun(X, A) -> (A + X * X) rem 1000003 end, N, lists:seq(1, ?SPIN_WORK)),
    put(spins, N + 1),
    put(last_result, Acc),
    wait(?SPIN_SLEEP_MS),
    spinner_loop(N + 1).
