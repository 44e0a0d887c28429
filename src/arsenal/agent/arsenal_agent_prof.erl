%% @doc Arsenal's agent, profiling part: stack sampling of one process.
%%
%% sample/5 spawns a sampler that reads process_info(Pid, [current_stacktrace,
%% status]) of the target every IntervalMs, for at most WindowMs and at most
%% MaxSamples samples, and folds every sample into counters inside the VM:
%%   * stacks: the distinct call stacks (root first) and how often each was
%%     seen, at most ?MAX_STACKS of them; samples of further stacks are only
%%     counted (other_stacks), so memory and the reply stay bounded;
%%   * functions: per function the samples where it was the running one (self)
%%     and where it was anywhere on the stack (total), at most ?MAX_FUNCTIONS;
%%     the reply carries the ?TOP_FUNCTIONS first by self and by total;
%%   * statuses: how often the process was running, runnable, waiting...
%% A stack has at most the VM's backtrace_depth frames (8 unless someone
%% raised it with erlang:system_flag(backtrace_depth, N), which this module
%% never does: it is node-wide): deeper stacks lose their root frames. Call time of chosen functions is measured by the
%% tracer hub (arsenal_agent_trace profile sessions), not here.
%%
%% Like eprof's sampling cousins (and unlike fprof) nothing is traced: one
%% process_info call per tick, which asks the target for its stack between two
%% of its reductions. The cost to the target is a stack walk of at most
%% backtrace_depth frames per sample.
%%
%% The sampler monitors its caller (the rpc process: killed when Arsenal gives
%% up on the call), the owner (a process of Arsenal's connection: gone when
%% the connection closes) and the target; it stops on the exit of any of them,
%% at the end of the window and at MaxSamples, and leaves nothing behind.
%%
%% Safety: the target arrives as a binary and is resolved by
%% arsenal_agent:target/1 (existing names only); every other argument is an
%% integer checked against its bounds.
-module(arsenal_agent_prof).

-export([sample/5]).

-define(MAX_WINDOW_MS, 60000).
-define(MAX_INTERVAL_MS, 1000).
-define(MAX_SAMPLES, 20000).
-define(MAX_STACKS, 5000).
-define(MAX_FUNCTIONS, 5000).
-define(TOP_FUNCTIONS, 50).
%% How long past the window the caller waits for the sampler's report.
-define(REPORT_SLACK_MS, 5000).

-record(st, {
          target :: pid(),
          caller_ref :: reference(),
          owner_ref :: reference(),
          target_ref :: reference(),
          interval :: pos_integer(),
          max :: pos_integer(),
          started :: integer(),
          deadline :: integer(),
          next :: integer(),
          samples = 0 :: non_neg_integer(),
          stacks = #{} :: #{[mfa()] => pos_integer()},
          other_stacks = 0 :: non_neg_integer(),
          self = #{} :: #{mfa() => pos_integer()},
          total = #{} :: #{mfa() => pos_integer()},
          other_functions = 0 :: non_neg_integer(),
          statuses = #{} :: #{atom() => pos_integer()}
         }).

%% @doc Sample the stack of the process Ref names (pid text or registered
%% name) every IntervalMs for WindowMs, at most MaxSamples times; Owner is the
%% Arsenal process whose exit stops the sampling. Returns {ok, Report} (see
%% report/2) or {error, not_found | bad_pid | dead | bad_args | timeout}.
-spec sample(binary(), pid(), pos_integer(), pos_integer(), pos_integer()) -> {ok, map()} | {error, term()}.
sample(Ref, Owner, WindowMs, IntervalMs, MaxSamples)
  when is_binary(Ref), is_pid(Owner),
       is_integer(WindowMs), WindowMs >= 1, WindowMs =< ?MAX_WINDOW_MS,
       is_integer(IntervalMs), IntervalMs >= 1, IntervalMs =< ?MAX_INTERVAL_MS,
       is_integer(MaxSamples), MaxSamples >= 1, MaxSamples =< ?MAX_SAMPLES ->
    case arsenal_agent:target(Ref) of
        {ok, Pid} ->
            case erlang:is_process_alive(Pid) of
                true -> run(Pid, Owner, WindowMs, IntervalMs, MaxSamples);
                false -> {error, dead}
            end;
        Error ->
            Error
    end;
sample(_, _, _, _, _) ->
    {error, bad_args}.

%% The caller waits for the sampler's one report; if the sampler dies or does
%% not report in time it is killed, so no sampler outlives this call.
-spec run(pid(), pid(), pos_integer(), pos_integer(), pos_integer()) -> {ok, map()} | {error, term()}.
run(Pid, Owner, WindowMs, IntervalMs, MaxSamples) ->
    Caller = self(),
    {Sampler, Ref} = spawn_monitor(fun() -> init(Caller, Owner, Pid, WindowMs, IntervalMs, MaxSamples) end),
    receive
        {arsenal_prof, Sampler, Report} ->
            erlang:demonitor(Ref, [flush]),
            {ok, Report};
        {'DOWN', Ref, process, Sampler, Reason} ->
            {error, {sampler_down, Reason}}
    after WindowMs + ?REPORT_SLACK_MS ->
            exit(Sampler, kill),
            erlang:demonitor(Ref, [flush]),
            {error, timeout}
    end.

-spec init(pid(), pid(), pid(), pos_integer(), pos_integer(), pos_integer()) -> ok.
init(Caller, Owner, Pid, WindowMs, IntervalMs, MaxSamples) ->
    Now = erlang:monotonic_time(millisecond),
    loop(#st{target = Pid,
             caller_ref = erlang:monitor(process, Caller),
             owner_ref = erlang:monitor(process, Owner),
             target_ref = erlang:monitor(process, Pid),
             interval = IntervalMs, max = MaxSamples,
             started = Now, deadline = Now + WindowMs, next = Now},
         Caller).

%% One tick: stop at a limit, take a sample, then wait for the next tick (or
%% for an exit that ends the sampling). A sampler that falls behind (a slow
%% process_info) skips the ticks it missed rather than catching up in a burst.
-spec loop(#st{}, pid()) -> ok.
loop(#st{samples = N, max = Max} = S, Caller) when N >= Max ->
    report(S, max_samples, Caller);
loop(#st{deadline = Deadline} = S, Caller) ->
    Now = erlang:monotonic_time(millisecond),
    case Now >= Deadline of
        true ->
            report(S, window, Caller);
        false ->
            case take(S) of
                {ok, S1} ->
                    Next = max(S#st.next + S#st.interval, Now),
                    wait(S1#st{next = Next}, min(Next, Deadline) - Now, Caller);
                exited ->
                    report(S, process_exited, Caller)
            end
    end.

wait(#st{caller_ref = CRef, owner_ref = ORef, target_ref = TRef} = S, Ms, Caller) ->
    receive
        {'DOWN', CRef, process, _, _} -> exit(normal);
        {'DOWN', ORef, process, _, _} -> exit(normal);
        {'DOWN', TRef, process, _, _} -> report(S, process_exited, Caller)
    after max(0, Ms) ->
            loop(S, Caller)
    end.

-spec take(#st{}) -> {ok, #st{}} | exited.
take(#st{target = Pid} = S) ->
    case erlang:process_info(Pid, [current_stacktrace, status]) of
        [{current_stacktrace, Stack}, {status, Status}] ->
            Frames = [frame(F) || F <- Stack],
            {ok, count(Frames, Status, S)};
        undefined ->
            exited
    end.

frame({M, F, Args, _Location}) when is_list(Args) -> {M, F, length(Args)};
frame({M, F, A, _Location}) -> {M, F, A}.

count(Frames, Status, #st{samples = N, statuses = Statuses} = S) ->
    S1 = count_stack(lists:reverse(Frames), S),
    S2 = count_functions(Frames, S1),
    S2#st{samples = N + 1, statuses = bump(Status, Statuses)}.

count_stack(Stack, #st{stacks = Stacks, other_stacks = Other} = S) ->
    case maps:is_key(Stack, Stacks) orelse map_size(Stacks) < ?MAX_STACKS of
        true -> S#st{stacks = bump(Stack, Stacks)};
        false -> S#st{other_stacks = Other + 1}
    end.

%% Self: the running function (the top frame). Total: every function on the
%% stack, once per sample however often it recurses.
count_functions([], S) ->
    S;
count_functions([Top | _] = Frames, #st{self = Self, total = Total} = S) ->
    {Self1, Lost1} = bump_bounded(Top, Self),
    {Total1, Lost2} = lists:foldl(fun(MFA, {Acc, Lost}) ->
                                          {Acc1, L} = bump_bounded(MFA, Acc),
                                          {Acc1, Lost + L}
                                  end, {Total, 0}, lists:usort(Frames)),
    S#st{self = Self1, total = Total1, other_functions = S#st.other_functions + Lost1 + Lost2}.

bump(Key, Map) ->
    maps:update_with(Key, fun(C) -> C + 1 end, 1, Map).

bump_bounded(Key, Map) ->
    case maps:is_key(Key, Map) orelse map_size(Map) < ?MAX_FUNCTIONS of
        true -> {bump(Key, Map), 0};
        false -> {Map, 1}
    end.

%% The report, to the caller: stacks most seen first, the functions that are
%% in the top ?TOP_FUNCTIONS by self or by total samples (with both counts).
-spec report(#st{}, window | max_samples | process_exited, pid()) -> ok.
report(#st{} = S, Stopped, Caller) ->
    Stacks = lists:reverse(lists:keysort(2, maps:to_list(S#st.stacks))),
    Top = lists:usort(top(S#st.self) ++ top(S#st.total)),
    Functions = [{MFA, maps:get(MFA, S#st.self, 0), maps:get(MFA, S#st.total, 0)} || MFA <- Top],
    Report = #{samples => S#st.samples,
               stopped => Stopped,
               elapsed_ms => erlang:monotonic_time(millisecond) - S#st.started,
               stacks => Stacks,
               distinct_stacks => map_size(S#st.stacks),
               other_stacks => S#st.other_stacks,
               functions => Functions,
               other_functions => S#st.other_functions,
               statuses => S#st.statuses},
    Caller ! {arsenal_prof, self(), Report},
    ok.

top(Counts) ->
    Sorted = lists:reverse(lists:keysort(2, maps:to_list(Counts))),
    [MFA || {MFA, _} <- lists:sublist(Sorted, ?TOP_FUNCTIONS)].
