%% @doc Helpers the Python tests call on real nodes through rpc.
%% Every process started here ends by itself (timeouts), so a failed test
%% leaves nothing running for long.
-module(arsenal_test_support).

-export([register_and_sleep/2, register_and_sleep_async/2, link_watcher/1,
         monitor_watcher/1, last_exit_seen/1, send_sequence/2, start_echo/0,
         send_to_name/3, eval/1, busy_caller/2, busy_loop/2, traced/1, never_called/0,
         trace_state/0]).

%% Register the calling process under Name, then sleep: lets a test see
%% whether an abandoned call was stopped.
register_and_sleep(Name, Ms) ->
    true = register(Name, self()),
    timer:sleep(Ms).

register_and_sleep_async(Name, Ms) ->
    Parent = self(),
    Pid = spawn(fun() -> true = register(Name, self()), Parent ! {registered, self()}, timer:sleep(Ms) end),
    receive {registered, Pid} -> Pid after 5000 -> error(timeout) end.

%% A process that traps exits, links to Target and remembers the exit it sees.
link_watcher(Target) ->
    spawn(fun() ->
                  process_flag(trap_exit, true),
                  link(Target),
                  remember(receive Exit = {'EXIT', _, _} -> Exit after 30000 -> none end)
          end).

%% A process that monitors Target and remembers the DOWN it sees.
monitor_watcher(Target) ->
    spawn(fun() ->
                  erlang:monitor(process, Target),
                  remember(receive Down = {'DOWN', _, _, _, _} -> Down after 30000 -> none end)
          end).

remember(What) ->
    put(seen, What),
    receive {report, From} -> From ! {seen, What} after 30000 -> ok end.

last_exit_seen(Watcher) ->
    case erlang:process_info(Watcher, dictionary) of
        {dictionary, Dict} -> proplists:get_value(seen, Dict, none);
        undefined -> none
    end.

send_sequence(To, N) ->
    [To ! {seq, I} || I <- lists:seq(1, N)],
    N.

%% Echo {echo, From, Term} back to From as Term, for 30 s.
start_echo() ->
    spawn(fun Loop() ->
                  receive {echo, From, Term} -> From ! Term, Loop() after 30000 -> ok end
          end).

send_to_name(Name, Node, Messages) ->
    [{Name, Node} ! M || M <- Messages],
    ok.

%% Evaluate Erlang source given as a binary (tests only: builds terms the node
%% itself produces, such as funs and refs, that Python cannot write down).
eval(Source) ->
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Source) ++ "."),
    {ok, [Expr]} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:expr(Expr, erl_eval:new_bindings()),
    Value.

%% A process that calls traced/1 every Ms milliseconds (0: as fast as it can)
%% for Seconds, then ends: something for the tracing tests to trace.
%% At most one runs at a time (registered as arsenal_test_busy): a new one
%% replaces the last, so one test's caller never feeds the next test's traces.
busy_caller(Ms, Seconds) ->
    case whereis(arsenal_test_busy) of
        undefined -> ok;
        Old -> exit(Old, kill), timer:sleep(10)
    end,
    Until = erlang:monotonic_time(millisecond) + Seconds * 1000,
    Pid = spawn(fun() -> receive go -> busy_loop(Ms, Until) end end),
    catch register(arsenal_test_busy, Pid),
    Pid ! go,
    Pid.

busy_loop(Ms, Until) ->
    case erlang:monotonic_time(millisecond) < Until of
        true ->
            N = case get(calls) of undefined -> 1; Last -> Last + 1 end,
            put(calls, N),
            _ = ?MODULE:traced(N),
            Ms > 0 andalso timer:sleep(Ms),
            ?MODULE:busy_loop(Ms, Until);
        false ->
            ok
    end.

traced(N) -> {traced, N, lists:duplicate(N rem 7 + 40, x)}.

never_called() -> ok.

%% What tracing is left on this node: the Arsenal tracer hub, processes with
%% trace flags, the flags new processes get, and call patterns set on this
%% module's functions (the ones the tests trace) or on lists.
trace_state() ->
    Traced = [{P, F} || P <- erlang:processes(), {flags, F} <- [erlang:trace_info(P, flags)], F =/= []],
    {flags, New} = erlang:trace_info(new_processes, flags),
    Functions = [{?MODULE, F, A} || {F, A} <- ?MODULE:module_info(functions)]
        ++ [{lists, F, A} || {F, A} <- lists:module_info(functions)],
    Patterns = [MFA || MFA <- Functions, erlang:trace_info(MFA, traced) =/= {traced, false}],
    Hub = case erlang:function_exported(arsenal_agent_trace, hub, 0) of
              true -> arsenal_agent_trace:hub();
              false -> undefined
          end,
    #{hub => Hub, traced_processes => Traced, new_processes_flags => New, patterns => Patterns}.
