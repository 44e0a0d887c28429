%% @doc Helpers the Python tests call on real nodes through rpc.
%% Every process started here ends by itself (timeouts), so a failed test
%% leaves nothing running for long.
-module(arsenal_test_support).

-export([register_and_sleep/2, register_and_sleep_async/2, link_watcher/1,
         monitor_watcher/1, last_exit_seen/1, send_sequence/2, start_echo/0,
         send_to_name/3, eval/1, busy_caller/2, busy_loop/2, traced/1, never_called/0,
         trace_state/0]).
-export([deadlock_pair/1, stuck_chain/1, leaker/2, bin_dropper/3,
         init/1, handle_call/3, handle_cast/2, handle_info/2]). % diagnostics
-export([stack_worker/1, stack_loop/1, call_traced/1, profile_state/0]). % profiling
-export([forwarder/1, chatter/1, flow_state/0]). % message flow

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

%% ---------------------------------------------------------------- diagnostics
%% Real deadlocks and leaks for tests/test_ops_diagnostics.py. The gen_server
%% callbacks below are a "fun server": a call {apply, Fun} runs Fun inside the
%% server; it stops after Ms idle, and every call it makes times out after Ms.

%% Two gen_servers calling each other (A -> B -> A) and a third process calling
%% A: a deadlock of real gen_server calls that ends when the calls time out
%% (Ms). Returns {A, B, Caller}.
deadlock_pair(Ms) ->
    {ok, A} = gen_server:start(?MODULE, {diag_server, Ms}, []),
    {ok, B} = gen_server:start(?MODULE, {diag_server, Ms}, []),
    Cycle = fun() -> gen_server:call(B, {apply, fun() -> gen_server:call(A, ping, Ms) end}, Ms) end,
    Caller = spawn(fun() -> catch gen_server:call(A, {apply, Cycle}, Ms) end),
    {A, B, Caller}.

%% A chain of waits that is no cycle: Caller -> Middle -> Blocker, Blocker a
%% fun server suspended (by Suspender, for Ms). Returns the four pids.
stuck_chain(Ms) ->
    {ok, Blocker} = gen_server:start(?MODULE, {diag_server, Ms}, []),
    {ok, Middle} = gen_server:start(?MODULE, {diag_server, Ms}, []),
    Parent = self(),
    Suspender = spawn(fun() ->
                              true = erlang:suspend_process(Blocker),
                              Parent ! {suspended, self()},
                              receive stop -> ok after Ms -> ok end
                      end),
    receive {suspended, Suspender} -> ok after 5000 -> error(timeout) end,
    Hop = fun() -> gen_server:call(Blocker, ping, Ms) end,
    Caller = spawn(fun() -> catch gen_server:call(Middle, {apply, Hop}, Ms) end),
    #{caller => Caller, middle => Middle, blocker => Blocker, suspender => Suspender}.

init({diag_server, Ms}) -> {ok, Ms, Ms}.

handle_call({apply, Fun}, _From, Ms) -> {reply, Fun(), Ms, Ms};
handle_call(ping, _From, Ms) -> {reply, pong, Ms, Ms}.

handle_cast(_Message, Ms) -> {noreply, Ms, Ms}.

handle_info(timeout, Ms) -> {stop, normal, Ms};
handle_info(_Message, Ms) -> {noreply, Ms, Ms}.

%% A process that appends to its state every 100 ms, for Seconds: a term and
%% a refc binary of Bytes each time (a leak of heap and of binary memory).
leaker(Bytes, Seconds) ->
    Until = erlang:monotonic_time(millisecond) + Seconds * 1000,
    spawn(fun() -> leak_loop(Bytes, Until, 1, []) end).

leak_loop(Bytes, Until, N, State) ->
    case erlang:monotonic_time(millisecond) < Until of
        true ->
            Item = {N, binary:copy(<<(N rem 256)>>, Bytes), lists:seq(1, 50)},
            receive stop -> ok after 100 -> leak_loop(Bytes, Until, N + 1, [Item | State]) end;
        false ->
            length(State)
    end.

%% A process that made Count refc binaries of Size bytes and dropped them:
%% they stay referenced from its heap (and counted as its binary memory) until
%% it is garbage-collected, since it then waits without allocating. Ends after
%% Ms. Returns its pid once the binaries are dropped.
bin_dropper(Count, Size, Ms) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        Made = length([binary:copy(<<(I rem 256)>>, Size) || I <- lists:seq(1, Count)]),
                        Parent ! {dropped, self(), Made},
                        receive stop -> ok after Ms -> ok end
                end),
    receive {dropped, Pid, _} -> Pid after 5000 -> error(timeout) end.

%% ---------------------------------------------------------------- profiling
%% For tests/test_profiling.py: a process with a recognisable call stack
%% (stack_loop -> stack_outer -> stack_middle -> stack_inner -> spin), exact
%% numbers of calls to traced/1, and what profiling may have left behind.

%% A process (registered as arsenal_test_stack, replacing the last one) that
%% spins inside stack_inner/1 for Seconds, then ends.
stack_worker(Seconds) ->
    case whereis(arsenal_test_stack) of
        undefined -> ok;
        Old -> exit(Old, kill), timer:sleep(10)
    end,
    Until = erlang:monotonic_time(millisecond) + Seconds * 1000,
    Pid = spawn(fun() -> receive go -> ?MODULE:stack_loop(Until) end end),
    catch register(arsenal_test_stack, Pid),
    Pid ! go,
    Pid.

stack_loop(Until) ->
    case erlang:monotonic_time(millisecond) < Until of
        true ->
            _ = stack_outer(2000),
            ?MODULE:stack_loop(Until);
        false ->
            ok
    end.

%% Each level uses the result of the next, so every call keeps a stack frame.
stack_outer(N) -> stack_middle(N) + 1.
stack_middle(N) -> stack_inner(N) + 1.
stack_inner(N) -> spin(N, 0) + 1.

spin(0, Acc) -> Acc;
spin(N, Acc) -> spin(N - 1, (Acc + N * N) rem 1000003).

%% Call traced/1 exactly N times from this process.
call_traced(N) ->
    [traced(I) || I <- lists:seq(1, N)],
    N.

%% Call counters left on this module's functions or on lists, and processes
%% still running Arsenal's stack sampler.
profile_state() ->
    Functions = [{?MODULE, F, A} || {F, A} <- ?MODULE:module_info(functions)]
        ++ [{lists, F, A} || {F, A} <- lists:module_info(functions)],
    Counted = [MFA || MFA <- Functions, Kind <- [call_count, call_time],
                      element(2, erlang:trace_info(MFA, Kind)) =/= false],
    Samplers = [P || P <- erlang:processes(),
                     {current_function, {arsenal_agent_prof, _, _}} <-
                         [erlang:process_info(P, current_function)]],
    #{counted => lists:usort(Counted), samplers => Samplers}.

%% ---------------------------------------------------------------- message flow
%% For tests/test_message_flow.py.

%% A process that forwards every message it gets to Next for 30 s. With Next
%% = reply it is the end of a chain: it answers {hop, From, M} with
%% From ! {done, M} and a gen_server call with {done, Request}.
forwarder(Next) ->
    spawn(fun() -> forward(Next) end).

forward(Next) ->
    receive
        {hop, From, M} when Next =:= reply -> From ! {done, M}, forward(Next);
        {'$gen_call', From, Request} when Next =:= reply -> gen:reply(From, {done, Request}), forward(Next);
        _ when Next =:= reply -> forward(Next);
        M -> Next ! M, forward(Next)
    after 30000 -> ok
    end.

%% A sender with a known mix of messages, every 20 ms for Seconds: to the
%% registered sink arsenal_test_sink_a (by name) {order, I, x}, {order, I, y},
%% {order, I, z} and ping; to sink B (by pid) <<"hello">> and #{id => I, kind => k}.
%% Returns {Chatter, SinkA, SinkB}; all three end after Seconds.
chatter(Seconds) ->
    case whereis(arsenal_test_sink_a) of
        undefined -> ok;
        Old -> unregister(arsenal_test_sink_a), exit(Old, kill)
    end,
    Sink = fun Loop() -> receive _ -> Loop() after Seconds * 1000 -> ok end end,
    A = spawn(Sink),
    true = register(arsenal_test_sink_a, A),
    B = spawn(Sink),
    Until = erlang:monotonic_time(millisecond) + Seconds * 1000,
    C = spawn(fun() -> chat(B, 1, Until) end),
    {C, A, B}.

chat(B, I, Until) ->
    case erlang:monotonic_time(millisecond) < Until of
        true ->
            [arsenal_test_sink_a ! {order, I, X} || X <- [x, y, z]],
            arsenal_test_sink_a ! ping,
            B ! <<"hello">>,
            B ! #{id => I, kind => k},
            timer:sleep(20),
            chat(B, I + 1, Until);
        false ->
            ok
    end.

%% What a message flow may leave behind: the seq_trace system tracer and any
%% process of arsenal_agent_flow (its collector, its origin, a waiting caller).
flow_state() ->
    Flow = [P || P <- erlang:processes(), P =/= self(),
                 lists:any(fun({_, {arsenal_agent_flow, _, _}}) -> true; (_) -> false end,
                           case erlang:process_info(P, [initial_call, current_function]) of
                               undefined -> [];
                               Info -> Info
                           end)],
    #{system_tracer => seq_trace:get_system_tracer(), processes => Flow}.
