%% @doc Message interception through a registered name: a proxy process takes
%% over the name, applies rules to what is sent to it, and forwards to the
%% real process.
%%
%% What the VM allows, exactly: a message sent to a pid goes straight into
%% that process's mailbox and nothing can sit in between. Only messages sent
%% to the process's locally registered *name* can be intercepted: the name is
%% moved to the proxy (unregister/2 then register/2; the VM has no atomic
%% swap, so a send to the name in the instant between the two fails with
%% badarg, as it would for a process restarting). Messages sent to the pid
%% itself (replies, monitors, links, exit signals, callers that cached the
%% pid) bypass the proxy. global and via names are not handled.
%%
%% The proxy handles its mailbox strictly in order: each message is matched
%% against the rules in order (the first match wins; a rule is a compiled
%% ets match spec run on {Message}) and then, by the rule's action:
%%   log     forwarded unchanged, reported;
%%   block   dropped, reported;
%%   delay   reported, held for N ms, then forwarded; the messages after it
%%           wait behind it, so the order of what is delivered is kept;
%%   modify  the replacement term is forwarded instead, reported.
%% A message no rule matches is forwarded unreported (counted as passed).
%% {'$gen_call', From, Req} is forwarded unchanged: the real process replies
%% to From directly.
%%
%% Reports go to the owner in batches {arsenal_intercept, Proxy, Events,
%% Counters} at most every batch_ms, sent with nosuspend (a busy connection
%% drops the batch, counted). After max_events reports the rules still
%% apply but are no longer reported (counted as unreported).
%%
%% The interception ends on stop/2, max_ms, the owner going away, the real
%% process exiting, or the proxy's mailbox passing max_queue (then it stops
%% intercepting rather than grow). Ending: forward what is in the mailbox,
%% give the name back to the real process (if it is alive), forward what
%% arrived meanwhile, send {arsenal_intercept_done, Proxy, Reason, Counters}
%% and exit. A janitor process gives the name back if the proxy is killed.
%%
%% Safety: rules arrive safe-term encoded and are decoded with
%% arsenal_agent_proc:decode/1 (existing atoms only); every limit is
%% checked here.
-module(arsenal_agent_intercept).

-export([check/1, start/4, stop/2, proxy_of/1]).

-define(TRUNCATED, '$arsenal_truncated').
-define(MAX_RULES, 20).
-define(MAX_CLAUSES, 20).
-define(CHECK_EVERY, 32).
-define(SLICE_MS, 50).
-define(DICT_KEY, '$arsenal_intercept').

-record(rule, {index :: pos_integer(),
               ms :: term(),
               action :: log | block | delay | modify,
               delay = 0 :: non_neg_integer(),
               replacement :: term()}).

-record(st, {name :: atom(),
             target :: pid(),
             target_ref :: reference(),
             owner :: pid(),
             owner_ref :: reference(),
             ctl :: reference(),
             rules :: [#rule{}],
             limits :: map(),
             deadline :: reference() | undefined,
             flush :: reference() | undefined,
             started :: integer(),
             seq = 0 :: non_neg_integer(),
             buffer = [] :: list(),
             buffered = 0 :: non_neg_integer(),
             counts = #{} :: map(),
             handled = 0 :: non_neg_integer(),
             changed = false :: boolean()}).

%% ------------------------------------------------------------------ API

%% @doc Intercept what is sent to the registered name of Target (a pid text
%% or a name, as arsenal_agent:target/1 takes it). WireRules: safe-term
%% encoded list of #{match_spec, action, delay_ms, replacement}; WireLimits:
%% safe-term encoded map (see limits/1). Reply: {ok, #{proxy, ctl, name,
%% target, limits}} or {error, Reason}. Cost: a few lookups, one spawn.
-spec start(binary(), term(), pid(), term()) -> {ok, map()} | {error, term()}.
start(Target, WireRules, Owner, WireLimits) when is_binary(Target), is_pid(Owner) ->
    try
        Pid = ok(arsenal_agent:target(Target)),
        Name = registered_name(Pid),
        Rules = rules(ok(arsenal_agent_proc:decode(WireRules))),
        Limits = limits(ok(arsenal_agent_proc:decode(WireLimits))),
        take_over(Name, Pid, Owner, Rules, Limits)
    catch
        throw:{error, _} = Error -> Error
    end.

%% @doc Whether Target could be intercepted, changing nothing: {ok, Pid, Name}
%% or the error start/4 would give (not_registered, dead, already_intercepted,
%% not_found, bad_pid). Cost: a few lookups.
-spec check(binary()) -> {ok, pid(), atom()} | {error, term()}.
check(Target) when is_binary(Target) ->
    try
        Pid = ok(arsenal_agent:target(Target)),
        {ok, Pid, registered_name(Pid)}
    catch
        throw:{error, _} = Error -> Error
    end.

%% @doc End an interception (its proxy restores the name); waits up to 5 s
%% for the proxy to finish. Cost: the proxy forwards its mailbox.
-spec stop(pid(), reference()) -> ok | {error, not_found | timeout}.
stop(Proxy, Ctl) when is_pid(Proxy), is_reference(Ctl) ->
    Ref = erlang:monitor(process, Proxy),
    Proxy ! {Ctl, stop},
    receive
        {'DOWN', Ref, process, _, noproc} -> {error, not_found};
        {'DOWN', Ref, process, _, _} -> ok
    after 5000 ->
            erlang:demonitor(Ref, [flush]),
            {error, timeout}
    end.

%% @doc The real process behind a proxy, or undefined if Pid is none (for
%% tests and for refusing to intercept a proxy).
-spec proxy_of(pid()) -> pid() | undefined.
proxy_of(Pid) when is_pid(Pid) ->
    case erlang:process_info(Pid, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind(?DICT_KEY, 1, Dict) of
                {_, Real} -> Real;
                false -> undefined
            end;
        undefined ->
            undefined
    end.

ok({ok, Value}) -> Value;
ok({error, _} = Error) -> throw(Error).

registered_name(Pid) ->
    case proxy_of(Pid) of
        undefined -> ok;
        Real -> throw({error, {already_intercepted, Real}})
    end,
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} -> Name;
        [] -> throw({error, not_registered});
        undefined -> throw({error, dead})
    end.

%% ------------------------------------------------------------------ rules and limits

rules(Rules) when is_list(Rules), Rules =/= [], length(Rules) =< ?MAX_RULES ->
    lists:zipwith(fun rule/2, lists:seq(1, length(Rules)), Rules);
rules(_) ->
    throw({error, {bad_rules, <<"1 to 20 rules">>}}).

rule(Index, #{match_spec := MS0, action := Action} = R) ->
    MS = clauses(Index, MS0),
    Compiled = try ets:match_spec_compile(MS)
               catch error:badarg -> throw({error, {bad_match_spec, Index, ms_errors(MS)}})
               end,
    Rule = #rule{index = Index, ms = Compiled, action = Action},
    case Action of
        log -> Rule;
        block -> Rule;
        delay ->
            case maps:get(delay_ms, R, undefined) of
                D when is_integer(D), D >= 1 -> Rule#rule{delay = D};
                _ -> throw({error, {bad_rule, Index, <<"delay needs delay_ms >= 1">>}})
            end;
        modify ->
            case maps:find(replacement, R) of
                {ok, Replacement} -> Rule#rule{replacement = Replacement};
                error -> throw({error, {bad_rule, Index, <<"modify needs a replacement">>}})
            end;
        _ ->
            throw({error, {bad_rule, Index, <<"action is log, block, delay or modify">>}})
    end;
rule(Index, _) ->
    throw({error, {bad_rule, Index, <<"a rule is a map with match_spec and action">>}}).

%% The body is Arsenal's: only whether it matched comes out.
clauses(Index, MS) when is_list(MS), MS =/= [], length(MS) =< ?MAX_CLAUSES ->
    [case C of
         {{_} = Head, Guards, _} when is_list(Guards) -> {Head, Guards, [true]};
         _ -> throw({error, {bad_rule, Index, <<"each clause is {{Pattern}, Guards, Body}">>}})
     end || C <- MS];
clauses(Index, _) ->
    throw({error, {bad_rule, Index, <<"a match spec is a list of 1 to 20 clauses">>}}).

ms_errors(MS) ->
    case try erlang:match_spec_test({x}, MS, table) catch error:_ -> error end of
        {error, Errors} -> [iolist_to_binary(io_lib:format("~p", [E])) || E <- Errors];
        _ -> [<<"the match spec does not compile">>]
    end.

limits(L) when is_map(L) ->
    Get = fun(K, Default, Min, Max) ->
                  V = maps:get(K, L, Default),
                  case is_integer(V) andalso V >= Min andalso V =< Max of
                      true -> V;
                      false -> throw({error, {bad_limit, K, V}})
                  end
          end,
    Limits = #{max_ms => Get(max_ms, 60000, 100, 3600000),
               max_events => Get(max_events, 10000, 1, 1000000),
               max_delay_ms => Get(max_delay_ms, 10000, 1, 10000),
               max_queue => Get(max_queue, 10000, 100, 10000),
               max_bytes => Get(max_bytes, 4096, 64, 1048576),
               batch_ms => Get(batch_ms, 100, 10, 5000),
               batch_size => Get(batch_size, 200, 1, 10000)},
    Limits;
limits(_) ->
    throw({error, {bad_limit, limits, not_a_map}}).

%% ------------------------------------------------------------------ taking the name over

take_over(Name, Pid, Owner, Rules, Limits) ->
    MaxDelay = maps:get(max_delay_ms, Limits),
    [throw({error, {bad_rule, I, <<"delay_ms is over max_delay_ms">>}})
     || #rule{index = I, delay = D} <- Rules, D > MaxDelay],
    Ctl = make_ref(),
    Caller = self(),
    Proxy = spawn(fun() -> init(Name, Pid, Owner, Ctl, Rules, Limits, Caller) end),
    ProxyRef = erlang:monitor(process, Proxy),
    receive
        {Ctl, ready} -> ok;
        {'DOWN', ProxyRef, process, _, Why} -> throw({error, {proxy_failed, Why}})
    after 5000 ->
            exit(Proxy, kill),
            throw({error, {proxy_failed, timeout}})
    end,
    erlang:demonitor(ProxyRef, [flush]),
    case swap(Name, Pid, Proxy) of
        ok ->
            Proxy ! {Ctl, go},
            {ok, #{proxy => Proxy, ctl => Ctl, name => Name, target => Pid, limits => Limits}};
        {error, _} = Error ->
            Proxy ! {Ctl, abort},
            Error
    end.

%% Move Name from Pid to Proxy; on any failure the name stays (or goes back) with Pid.
swap(Name, Pid, Proxy) ->
    case whereis(Name) of
        Pid ->
            try unregister(Name) of
                true ->
                    try register(Name, Proxy) of
                        true -> ok
                    catch error:badarg ->
                            _ = try register(Name, Pid) catch error:badarg -> false end,
                            {error, name_taken}
                    end
            catch error:badarg ->
                    {error, name_moved}
            end;
        undefined ->
            {error, dead};
        _Other ->
            {error, name_moved}
    end.

%% ------------------------------------------------------------------ the proxy

init(Name, Target, Owner, Ctl, Rules, Limits, Caller) ->
    process_flag(message_queue_data, off_heap),
    %% High priority: it must keep up with what is sent to the name, and win the race
    %% with a supervisor restarting the real process (which re-registers the name).
    process_flag(priority, high),
    put(?DICT_KEY, Target),
    Self = self(),
    _ = spawn(fun() -> janitor(erlang:monitor(process, Self), Name, Target) end),
    S = #st{name = Name, target = Target, target_ref = erlang:monitor(process, Target),
            owner = Owner, owner_ref = erlang:monitor(process, Owner), ctl = Ctl, rules = Rules,
            limits = Limits, started = erlang:monotonic_time(millisecond),
            counts = #{passed => 0, logged => 0, blocked => 0, delayed => 0, modified => 0,
                       reported => 0, unreported => 0, dropped => 0}},
    Caller ! {Ctl, ready},
    receive
        {Ctl, go} ->
            Deadline = erlang:start_timer(maps:get(max_ms, Limits), self(), deadline),
            loop(S#st{deadline = Deadline});
        {Ctl, abort} ->
            ok
    after 10000 ->
            %% The starting call died between the swap and go: end as if stopped.
            finish(start_timeout, S)
    end.

%% Nothing to undo while the proxy lives or after it exited normally; if it is
%% killed, the name goes back to the real process (if the name is free).
janitor(Ref, Name, Target) ->
    receive
        {'DOWN', Ref, process, _, normal} ->
            ok;
        {'DOWN', Ref, process, _, _} ->
            case whereis(Name) =:= undefined andalso erlang:is_process_alive(Target) of
                true -> _ = try register(Name, Target) catch error:badarg -> false end, ok;
                false -> ok
            end
    end.

loop(#st{ctl = Ctl, target_ref = TRef, owner_ref = ORef, deadline = Deadline, flush = Flush} = S) ->
    receive
        {Ctl, stop} -> finish(stopped, S);
        {'DOWN', TRef, process, _, _} -> finish(process_exited, S);
        {'DOWN', ORef, process, _, _} -> finish(owner_down, S);
        {timeout, Deadline, deadline} -> finish(max_ms, S);
        {timeout, Flush, flush} -> loop(flush(S#st{flush = undefined}));
        Msg -> next(handle(Msg, S))
    end.

next({continue, S}) -> check_queue(S);
next({finish, Reason, S}) -> finish(Reason, S).

check_queue(#st{handled = N} = S) when N rem ?CHECK_EVERY =/= 0 ->
    loop(S);
check_queue(#st{limits = #{max_queue := Max}} = S) ->
    case erlang:process_info(self(), message_queue_len) of
        {message_queue_len, Len} when Len > Max -> finish(queue_overflow, S);
        _ -> loop(S)
    end.

handle(Msg, #st{rules = Rules} = S0) ->
    S = S0#st{handled = S0#st.handled + 1, changed = true},
    case match(Msg, Rules) of
        nomatch ->
            forward(Msg, S),
            {continue, schedule(count(passed, S))};
        #rule{action = log} = R ->
            forward(Msg, S),
            {continue, report(R, Msg, count(logged, S))};
        #rule{action = block} = R ->
            {continue, report(R, Msg, count(blocked, S))};
        #rule{action = modify, replacement = New} = R ->
            forward(New, S),
            {continue, report(R, Msg, count(modified, S))};
        #rule{action = delay, delay = Ms} = R ->
            S1 = report(R, Msg, count(delayed, S)),
            Until = erlang:monotonic_time(millisecond) + Ms,
            hold(Until, Msg, S1)
    end.

match(_Msg, []) -> nomatch;
match(Msg, [#rule{ms = MS} = R | Rest]) ->
    case ets:match_spec_run([{Msg}], MS) of
        [true] -> R;
        _ -> match(Msg, Rest)
    end.

forward(Msg, #st{target = Target}) ->
    erlang:send(Target, Msg),
    ok.

count(Key, #st{counts = C} = S) ->
    S#st{counts = maps:update_with(Key, fun(N) -> N + 1 end, 1, C)}.

%% A delayed message: everything after it waits in the mailbox (order kept).
%% Only Arsenal's own signals are taken meanwhile; any ending forwards the
%% held message first.
hold(Until, Msg, #st{ctl = Ctl, target_ref = TRef, owner_ref = ORef, deadline = Deadline,
                     flush = Flush, limits = #{max_queue := Max}} = S) ->
    Left = Until - erlang:monotonic_time(millisecond),
    End = fun(Reason) -> forward(Msg, S), {finish, Reason, S} end,
    case Left =< 0 of
        true ->
            forward(Msg, S),
            {continue, S};
        false ->
            receive
                {Ctl, stop} -> End(stopped);
                {'DOWN', TRef, process, _, _} -> {finish, process_exited, S};
                {'DOWN', ORef, process, _, _} -> End(owner_down);
                {timeout, Deadline, deadline} -> End(max_ms);
                {timeout, Flush, flush} -> hold(Until, Msg, flush(S#st{flush = undefined}))
            after min(Left, ?SLICE_MS) ->
                    case erlang:process_info(self(), message_queue_len) of
                        {message_queue_len, Len} when Len > Max -> End(queue_overflow);
                        _ -> hold(Until, Msg, S)
                    end
            end
    end.

%% ------------------------------------------------------------------ reports

report(#rule{index = I, action = Action, delay = Delay}, Msg,
       #st{limits = L, counts = #{reported := Reported}} = S) ->
    case Reported >= maps:get(max_events, L) of
        true ->
            schedule(count(unreported, S));
        false ->
            Seq = S#st.seq + 1,
            Now = erlang:system_time(microsecond),
            {Cut, Truncated} = cut(Msg, maps:get(max_bytes, L)),
            Event = {Seq, Now, I, Action, Delay, Cut, Truncated},
            S1 = count(reported, S#st{seq = Seq, buffer = [Event | S#st.buffer],
                                      buffered = S#st.buffered + 1}),
            case S1#st.buffered >= maps:get(batch_size, L) of
                true -> flush(S1);
                false -> schedule(S1)
            end
    end.

schedule(#st{flush = undefined, limits = L} = S) ->
    S#st{flush = erlang:start_timer(maps:get(batch_ms, L), self(), flush)};
schedule(S) ->
    S.

flush(#st{changed = false, buffer = []} = S) ->
    S;
flush(#st{owner = Owner, buffer = Buffer, buffered = N} = S) ->
    Counts = counters(S),
    S1 = case erlang:send(Owner, {arsenal_intercept, self(), lists:reverse(Buffer), Counts}, [nosuspend]) of
             ok -> S;
             _ -> S#st{counts = maps:update_with(dropped, fun(D) -> D + N end, N, S#st.counts)}
         end,
    S1#st{buffer = [], buffered = 0, changed = false}.

counters(#st{counts = C, started = Started}) ->
    Queue = case erlang:process_info(self(), message_queue_len) of
                {message_queue_len, Len} -> Len;
                _ -> 0
            end,
    C#{queue => Queue, running_ms => erlang:monotonic_time(millisecond) - Started}.

%% A message over MaxBytes (external format) is reported as a marker with a preview.
cut(Term, MaxBytes) ->
    case erlang:external_size(Term) of
        Bytes when Bytes =< MaxBytes -> {Term, false};
        Bytes ->
            Preview = iolist_to_binary(io_lib:format("~0P", [Term, 12])),
            {{?TRUNCATED, Bytes, binary:part(Preview, 0, min(byte_size(Preview), 200))}, true}
    end.

%% ------------------------------------------------------------------ ending

%% Forward what is queued while the name is still ours, give the name back,
%% forward what arrived meanwhile, report, exit.
finish(Reason, #st{name = Name, target = Target, owner = Owner} = S) ->
    cancel(S#st.deadline),
    cancel(S#st.flush),
    Queued = case erlang:process_info(self(), message_queue_len) of
                 {message_queue_len, Len} -> Len;
                 _ -> 0
             end,
    Forwarded1 = drain(S, Queued + 1000, 0),
    case whereis(Name) =:= self() of
        true -> try unregister(Name) catch error:badarg -> false end;
        false -> ok
    end,
    Restored = erlang:is_process_alive(Target) andalso whereis(Name) =:= undefined
        andalso (try register(Name, Target) catch error:badarg -> false end),
    Forwarded2 = drain(S, 100000, 0),
    S1 = S#st{changed = true},
    Counts = counters(S1),
    Final = Counts#{forwarded_at_end => Forwarded1 + Forwarded2, restored => Restored},
    _ = erlang:send(Owner, {arsenal_intercept, self(), lists:reverse(S1#st.buffer), Final}, [nosuspend]),
    _ = erlang:send(Owner, {arsenal_intercept_done, self(), Reason, Final}, [nosuspend]),
    ok.

%% Forward every queued message except Arsenal's own signals, in order; at most Max.
drain(_S, 0, N) ->
    N;
drain(#st{ctl = Ctl, target_ref = TRef, owner_ref = ORef, deadline = D, flush = F} = S, Max, N) ->
    receive
        {Ctl, _} -> drain(S, dec(Max), N);
        {'DOWN', TRef, process, _, _} -> drain(S, dec(Max), N);
        {'DOWN', ORef, process, _, _} -> drain(S, dec(Max), N);
        {timeout, D, _} -> drain(S, dec(Max), N);
        {timeout, F, _} -> drain(S, dec(Max), N);
        Msg -> forward(Msg, S), drain(S, dec(Max), N + 1)
    after 0 ->
            N
    end.

dec(N) -> N - 1.

cancel(undefined) -> ok;
cancel(Ref) -> _ = erlang:cancel_timer(Ref), ok.
