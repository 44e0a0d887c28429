%% @doc Arsenal's tracer: trace sessions that run inside the target VM, with
%% their limits enforced here, where the events are made.
%%
%% One process, the hub (registered under this module's name), is the tracer
%% of every session, because on OTP 25 and 26 a process has one tracer and a
%% function one trace pattern: sessions that each set their own tracer would
%% steal each other's events. On OTP 27 and later the hub traces in a trace
%% session of its own (trace:session_create/3), so Arsenal and dbg, recon or
%% redbug never see or undo each other's flags and patterns; before 27 another
%% tool's tracing is a conflict, refused with the tool named. The hub applies
%% the union of what its sessions ask for and hands each event to the sessions
%% it belongs to:
%%   * call, return_from and exception_from events by their function (the
%%     call patterns of live sessions never overlap: an overlapping one is
%%     refused with the session that holds it);
%%   * message and process events (send, receive, spawn, exit, link...) by
%%     their process, to every session that traces that process for them.
%%
%% Limits, per session (defaults in default_limits/0): max_events (then it
%% stops), max_ms (wall clock), a rate of at most N events per interval (a
%% trip stops it, as recon_trace does), max_bytes per event (a larger
%% argument, message or result is replaced by {'$arsenal_truncated', Bytes,
%% Preview}), and max_queue for the hub's mailbox (checked every 32 messages:
%% past it, every session trips and all tracing stops at once, because a
%% tracer that falls behind is how tracing takes a node down).
%%
%% Events go to the session's sink (an Arsenal process on the hidden node) in
%% batches: {arsenal_trace, Id, [Event]} at most every batch_ms or batch_size
%% events, sent with nosuspend (a busy distribution channel drops the batch
%% and counts it rather than blocking the hub). The end is one message:
%% {arsenal_trace_done, Id, Reason, Stats}.
%%
%% A session ends on stop, a limit, its owner going away (the owner is
%% monitored, so a closed connection ends it), or the death of every process
%% it traces. On its end its patterns and the flags no other session needs
%% are removed; with the last session the hub removes everything it set and
%% exits, so nothing is left behind.
%%
%% Safety: everything arrives decoded by arsenal_agent_proc:decode/1 (existing
%% atoms only). Patterns on the agent's own modules, on every module ('_'),
%% and every function of a hot system module (lists, erlang, io, ets, gen...)
%% are refused; an admin may force the last kind.
-module(arsenal_agent_trace).
-behaviour(gen_server).

-export([start_session/2, stop_session/1, sessions/0, hub/0, match_variables/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(QUEUE_CHECK_EVERY, 32).
-define(MAX_SESSIONS, 32).
-define(CALL_TIMEOUT, 10000).
-define(TRUNCATED, '$arsenal_truncated').
-define(HOT_MODULES,
        [erlang, lists, io, io_lib, ets, maps, gen, gen_server, gen_statem, gen_event, proc_lib,
         sys, timer, application, application_controller, code, code_server, error_logger, logger,
         logger_server, logger_backend, prim_file, prim_inet, prim_eval, file, file_io_server,
         file_server, erts_internal, erl_eval, binary, string, unicode, re, global, rpc, erpc,
         net_kernel, dist_util, inet, gen_tcp, supervisor, init, erl_prim_loader, persistent_term,
         atomics, counters, queue, dict, orddict, sets, ordsets, gb_trees, gb_sets, array, proplists,
         os, filename, math, rand, 'Elixir.Enum', 'Elixir.Kernel', 'Elixir.String', 'Elixir.Map',
         'Elixir.List', 'Elixir.Keyword', 'Elixir.GenServer', 'Elixir.IO', 'Elixir.Logger',
         'Elixir.Process', 'Elixir.Agent', 'Elixir.Access', 'Elixir.Enumerable',
         'Elixir.String.Chars', 'Elixir.Inspect', 'Elixir.Stream']).

-record(session, {
          id :: pos_integer(),
          owner :: pid(),
          owner_ref :: reference(),
          sink :: pid(),
          patterns = [] :: [{module(), atom(), arity() | '_'}],
          profiles = [] :: [{module(), atom(), arity() | '_', call_count | call_time}],
          counted = [] :: [{mfa(), call_count | call_time}],
          flags = [] :: [atom()],
          scope :: all | [pid()],
          alive = [] :: [pid()],
          limits :: map(),
          started :: integer(),
          timer :: reference() | undefined,
          count = 0 :: non_neg_integer(),
          window = {0, 0} :: {integer(), non_neg_integer()},
          buffer = [] :: list(),
          buffered = 0 :: non_neg_integer(),
          dropped = 0 :: non_neg_integer(),
          truncated = 0 :: non_neg_integer()
         }).

%% ------------------------------------------------------------------ API

%% @doc Start a session for Owner (who receives the events). Spec is the
%% safe-term encoded map of the session (see spec/1); the reply is
%% {ok, #{id, patterns => [{M, F, A, Matched}], limits}} or {error, Reason}.
-spec start_session(term(), pid()) -> {ok, map()} | {error, term()}.
start_session(WireSpec, Owner) when is_pid(Owner) ->
    case arsenal_agent_proc:decode(WireSpec) of
        {ok, Raw} ->
            case spec(Raw) of
                {ok, Spec} -> call_hub({start, Spec, Owner});
                Error -> Error
            end;
        Error ->
            Error
    end.

%% @doc Stop session Id; its last events and its end message still reach its sink.
-spec stop_session(pos_integer()) -> ok | {error, not_found}.
stop_session(Id) when is_integer(Id) ->
    case whereis(?MODULE) of
        undefined -> {error, not_found};
        Hub -> quiet(Hub, Id), call_existing({stop, Id})
    end.

%% Turn the session's call patterns off from here, at once: a stop request
%% waits in the hub's mailbox behind every event already queued, and a busy
%% traced function would go on adding to them meanwhile. The hub keeps each
%% session's functions in its dictionary for this (readable without a
%% message); no other session can hold the same function, so nothing else
%% loses events, and the hub removing them again later changes nothing.
quiet(Hub, Id) ->
    case erlang:process_info(Hub, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind({session_functions, Id}, 1, Dict) of
                {_, MFAs} ->
                    Session = case lists:keyfind(trace_session, 1, Dict) of
                                  {_, S} -> S;
                                  false -> legacy
                              end,
                    [begin
                         pattern(Session, MFA, false, [local]),
                         pattern(Session, MFA, false, [global])
                     end || MFA <- MFAs],
                    ok;
                false ->
                    ok
            end;
        undefined ->
            ok
    end.

%% @doc The live sessions (empty when the hub is not running).
-spec sessions() -> [map()].
sessions() ->
    case whereis(?MODULE) of
        undefined -> [];
        _ -> case call_existing(sessions) of
                 List when is_list(List) -> List;
                 _ -> []
             end
    end.

%% @doc The hub's pid, or undefined: for tests that check nothing is left.
-spec hub() -> pid() | undefined.
hub() -> whereis(?MODULE).

%% Start the hub if it is not running and call it. A hub that was just ending
%% (its last session over) may be found and then be gone: start another.
call_hub(Request) ->
    call_hub(Request, 3).

call_hub(_Request, 0) ->
    {error, hub_timeout};
call_hub(Request, Tries) ->
    Started = case gen_server:start({local, ?MODULE}, ?MODULE, [], []) of
                  {ok, _} -> ok;
                  {error, {already_started, _}} -> ok;
                  {error, Reason} -> {error, {hub_start, Reason}}
              end,
    case Started of
        ok ->
            case call_existing(Request) of
                {error, not_found} -> call_hub(Request, Tries - 1);
                Reply -> Reply
            end;
        Error ->
            Error
    end.

call_existing(Request) ->
    try gen_server:call(?MODULE, Request, ?CALL_TIMEOUT)
    catch
        exit:{noproc, _} -> {error, not_found};
        exit:{normal, _} -> {error, not_found};
        exit:{timeout, _} -> {error, hub_timeout}
    end.

%% @doc The variables of match specifications, '$1' to '$50': named here so
%% that they exist on every node the agent is loaded on (a spec arrives with
%% its atoms as markers, rebuilt with binary_to_existing_atom).
-spec match_variables() -> [atom()].
match_variables() ->
    ['$1', '$2', '$3', '$4', '$5', '$6', '$7', '$8', '$9', '$10', '$11', '$12', '$13', '$14', '$15', '$16', '$17', '$18', '$19', '$20', '$21', '$22', '$23', '$24', '$25', '$26', '$27', '$28', '$29', '$30', '$31', '$32', '$33', '$34', '$35', '$36', '$37', '$38', '$39', '$40', '$41', '$42', '$43', '$44', '$45', '$46', '$47', '$48', '$49', '$50'].

%% ------------------------------------------------------------------ the spec

%% A session's spec, checked: #{patterns => [#{module, function, arity,
%% match_spec, actions, scope}], flags => [send | 'receive' | procs],
%% pids => all | [pid()], limits => #{...}, force => boolean()}.
spec(Raw) when is_map(Raw) ->
    try
        Force = maps:get(force, Raw, false) =:= true,
        Patterns = [pattern(P, Force) || P <- list(maps:get(patterns, Raw, []))],
        Profiles = [profile(P, Force) || P <- list(maps:get(profiles, Raw, []))],
        Flags = [flag(F) || F <- list(maps:get(flags, Raw, []))],
        Scope = scope(maps:get(pids, Raw, all)),
        Limits = limits(maps:get(limits, Raw, #{})),
        (Patterns =/= [] orelse Flags =/= [] orelse Profiles =/= [])
            orelse throw({bad_spec, nothing_to_trace}),
        length(Patterns) + length(Profiles) =< 20 orelse throw({bad_spec, too_many_patterns}),
        {ok, #{patterns => Patterns, profiles => Profiles, flags => lists:usort(Flags), scope => Scope,
               limits => Limits}}
    catch
        throw:Reason -> {error, Reason}
    end;
spec(_) ->
    {error, {bad_spec, not_a_map}}.

list(L) when is_list(L) -> L;
list(_) -> throw({bad_spec, not_a_list}).

flag(send) -> send;
flag('receive') -> 'receive';
flag(procs) -> procs;
flag(Other) -> throw({bad_flag, Other}).

scope(all) -> all;
scope(Pids) when is_list(Pids), Pids =/= [], length(Pids) =< 100 ->
    [case is_pid(P) andalso node(P) =:= node() of
         true -> P;
         false -> throw({bad_pid, P})
     end || P <- Pids];
scope(Other) -> throw({bad_scope, Other}).

pattern(#{module := M, function := F, arity := A, match_spec := MS} = P, Force)
  when is_atom(M), is_atom(F), (is_integer(A) andalso A >= 0 andalso A =< 255) orelse A =:= '_' ->
    check_allowed(M, F, Force),
    Actions = [action(X) || X <- list(maps:get(actions, P, []))],
    Spec = [{Head, Guards, body(Actions)} || {Head, Guards, _} <- clauses(MS)],
    TestArgs = case A of '_' -> []; _ -> lists:duplicate(A, 0) end,
    case erlang:match_spec_test(TestArgs, Spec, trace) of
        {error, Errors} -> throw({bad_match_spec, [iolist_to_binary(io_lib:format("~p", [E])) || E <- Errors]});
        _ -> ok
    end,
    Where = case maps:get(scope, P, local) of
                local -> local;
                global -> global;
                Other -> throw({bad_call_scope, Other})
            end,
    {M, F, A, Spec, Where};
pattern(Other, _) ->
    throw({bad_pattern, Other}).

%% A profiled function: call counts (call_count: every caller, no process
%% flag needed) or counts and time per process (call_time: the processes in
%% scope get the call flag), as cprof and eprof keep them.
profile(#{module := M, function := F, arity := A, kind := Kind}, Force)
  when is_atom(M), is_atom(F), (is_integer(A) andalso A >= 0 andalso A =< 255) orelse A =:= '_' ->
    check_allowed(M, F, Force),
    case Kind of
        call_count -> {M, F, A, call_count};
        call_time -> {M, F, A, call_time};
        _ -> throw({bad_profile_kind, Kind})
    end;
profile(Other, _) ->
    throw({bad_profile, Other}).

clauses(MS) when is_list(MS), MS =/= [], length(MS) =< 20 ->
    [case C of
         {_Head, Guards, Body} when is_list(Guards), is_list(Body) -> C;
         _ -> throw({bad_match_spec, [<<"each clause is {Head, Guards, Body}">>]})
     end || C <- MS];
clauses(_) -> throw({bad_match_spec, [<<"a match spec is a list of 1 to 20 clauses">>]}).

action(return) -> return;
action(caller) -> caller;
action(Other) -> throw({bad_action, Other}).

%% The body is Arsenal's, never the caller's: only these actions exist.
body(Actions) ->
    [{exception_trace} || lists:member(return, Actions)] ++
        [{message, {caller}} || lists:member(caller, Actions)].

check_allowed('_', _, _) -> throw({refused, every_module});
check_allowed(M, F, Force) ->
    case lists:prefix("arsenal_agent", atom_to_list(M)) of
        true -> throw({refused, {arsenal_agent, M}});
        false -> ok
    end,
    case F =:= '_' andalso lists:member(M, ?HOT_MODULES) andalso not Force of
        true -> throw({refused, {hot_module, M}});
        false -> ok
    end.

limits(L) when is_map(L) ->
    D = default_limits(),
    Get = fun(K, Min, Max) ->
                  V = maps:get(K, L, maps:get(K, D)),
                  case is_integer(V) andalso V >= Min andalso V =< Max of
                      true -> V;
                      false -> throw({bad_limit, K, V})
                  end
          end,
    #{max_events => Get(max_events, 1, 1000000),
      max_ms => Get(max_ms, 10, 3600000),
      rate => Get(rate, 1, 1000000),
      rate_ms => Get(rate_ms, 10, 60000),
      max_bytes => Get(max_bytes, 64, 1048576),
      max_queue => Get(max_queue, 100, 1000000),
      batch_ms => Get(batch_ms, 10, 5000),
      batch_size => Get(batch_size, 1, 10000)};
limits(_) -> throw({bad_spec, limits}).

default_limits() ->
    #{max_events => 100, max_ms => 15000, rate => 1000, rate_ms => 1000, max_bytes => 4096,
      max_queue => 10000, batch_ms => 100, batch_size => 200}.

%% ------------------------------------------------------------------ the hub

init([]) ->
    process_flag(trap_exit, true),
    %% The hub's own heap must not grow with a burst: messages live off-heap.
    process_flag(message_queue_data, off_heap),
    %% High priority: the limits are only as good as the hub's ability to count. At normal
    %% priority, busy callers of a hot function flooded its mailbox past max_queue before it
    %% handled a first event (measured: most sessions ended by queue_overflow with nothing);
    %% at high priority it keeps up until the rate limit trips, within one interval.
    process_flag(priority, high),
    Hub = self(),
    Session = open_trace_session(),
    put(trace_session, Session),
    Janitor = spawn(fun() -> janitor(erlang:monitor(process, Hub), Session, []) end),
    put(janitor, Janitor),
    {ok, #{sessions => #{}, next => 1, handled => 0, flush => undefined, janitor => Janitor}}.

%% The janitor undoes the hub's tracing if the hub dies without doing it
%% itself (killed, or its code purged): trace flags stay on the traced
%% processes when their tracer dies, and trace patterns and call counters
%% stay in the code. The hub tells it what is set after every change; on the
%% hub's normal exit there is nothing left to undo.
janitor(Ref, Session, Set) ->
    receive
        {set, Set1} when is_list(Set1) ->
            janitor(Ref, Session, Set1);
        {'DOWN', Ref, process, _, normal} ->
            ok;
        {'DOWN', Ref, process, _, _} when Session =/= legacy ->
            close_trace_session(Session);
        {'DOWN', Ref, process, _, _} ->
            [try pattern(Session, MFA, false, [How]) catch error:badarg -> 0 end || {MFA, How} <- Set],
            clear_everything(Session)
    end.

%% A trace session of Arsenal's own where the VM has them (OTP 27 and later),
%% or the VM's one legacy session (`legacy`) before that. The session's name
%% is an atom this module already holds, so opening one creates no atom.
open_trace_session() ->
    _ = code:ensure_loaded(trace),
    case erlang:function_exported(trace, session_create, 3) of
        true -> trace:session_create(arsenal, self(), []);
        false -> legacy
    end.

close_trace_session(legacy) ->
    ok;
close_trace_session(Session) ->
    try trace:session_destroy(Session) catch error:badarg -> ok end,
    ok.

%% erlang:trace/3, trace_pattern/3 and trace_info/2 in the hub's session. In a
%% session of its own the tracer is the session's: no {tracer, _} flag.
flags(legacy, Flags) -> Flags;
flags(_, Flags) -> [F || F <- Flags, not is_tuple(F) orelse element(1, F) =/= tracer].

trace_flags(legacy, PidSpec, How, Flags) -> erlang:trace(PidSpec, How, Flags);
trace_flags(Session, PidSpec, How, Flags) -> trace:process(Session, PidSpec, How, flags(Session, Flags)).

pattern(legacy, MFA, Spec, Flags) -> erlang:trace_pattern(MFA, Spec, Flags);
pattern(Session, MFA, Spec, Flags) -> trace:function(Session, MFA, Spec, Flags).

info(legacy, What, Item) -> erlang:trace_info(What, Item);
info(Session, What, Item) -> trace:info(Session, What, Item).

%% The same, for the hub itself (its session is in its dictionary).
trace_flags(PidSpec, How, Flags) -> trace_flags(get(trace_session), PidSpec, How, Flags).
pattern(MFA, Spec, Flags) -> pattern(get(trace_session), MFA, Spec, Flags).
info(What, Item) -> info(get(trace_session), What, Item).

%% Tell the janitor what is set now.
inform_janitor(#{janitor := Janitor, sessions := Sessions}) ->
    Set = lists:append([[{MFA, How} || MFA <- Ps, How <- [local, global]] ++
                            [{{M, F, A}, Kind} || {M, F, A, Kind} <- Prs]
                        || #session{patterns = Ps, profiles = Prs} <- maps:values(Sessions)]),
    Janitor ! {set, Set},
    ok.

handle_call({start, Spec, Owner}, _From, State) ->
    case start(Spec, Owner, State) of
        {ok, Reply, State1} -> {reply, {ok, Reply}, State1};
        {error, Reason} -> stop_if_idle({reply, {error, Reason}, State})
    end;
handle_call({stop, Id}, _From, #{sessions := Sessions} = State) ->
    case maps:find(Id, Sessions) of
        {ok, S} -> stop_if_idle({reply, ok, finish(S, stopped, State)});
        error -> {reply, {error, not_found}, State}
    end;
handle_call(sessions, _From, #{sessions := Sessions} = State) ->
    {reply, [describe(S) || S <- maps:values(Sessions)], State};
handle_call(_, _From, State) ->
    {reply, {error, unknown_request}, State}.

handle_cast(_, State) ->
    {noreply, State}.

handle_info(Msg, State) when element(1, Msg) =:= trace_ts ->
    stop_if_idle({noreply, dispatch(Msg, check_queue(State))});
handle_info(Msg, State) when element(1, Msg) =:= trace ->
    %% A trace message without a timestamp: one set by a flag change in flight.
    stop_if_idle({noreply, dispatch(erlang:append_element(Msg, erlang:monotonic_time()), State)});
handle_info(flush, State) ->
    {noreply, flush_all(State#{flush := undefined})};
handle_info({expire, Id}, #{sessions := Sessions} = State) ->
    case maps:find(Id, Sessions) of
        {ok, S} -> stop_if_idle({noreply, finish(S, max_ms, State)});
        error -> {noreply, State}
    end;
handle_info({'DOWN', Ref, process, Pid, _}, #{sessions := Sessions} = State) ->
    State1 = maps:fold(fun(_, S, Acc) -> on_down(S, Ref, Pid, Acc) end, State, Sessions),
    stop_if_idle({noreply, State1});
handle_info(_, State) ->
    {noreply, State}.

terminate(_Reason, #{sessions := Sessions} = State) ->
    _ = maps:fold(fun(_, S, Acc) -> finish(S, hub_stopped, Acc) end, State, Sessions),
    clear_everything(get(trace_session)),
    close_trace_session(get(trace_session)).

%% With no session left the hub goes away (after undoing everything it set).
stop_if_idle({reply, Reply, #{sessions := S} = State}) when map_size(S) =:= 0 ->
    {stop, normal, Reply, State};
stop_if_idle({noreply, #{sessions := S} = State}) when map_size(S) =:= 0 ->
    {stop, normal, State};
stop_if_idle(Result) ->
    Result.

%% ------------------------------------------------------------------ starting

start(_Spec, _Owner, #{sessions := Sessions}) when map_size(Sessions) >= ?MAX_SESSIONS ->
    {error, {too_many_sessions, ?MAX_SESSIONS}};
start(#{patterns := Patterns, profiles := Profiles, flags := Flags0, scope := Scope, limits := Limits},
      Owner, #{sessions := Sessions, next := Id} = State) ->
    Taken = [{M, F, A, SId} || #session{id = SId, patterns = Ps} <- maps:values(Sessions), {M, F, A} <- Ps],
    Counted = [{M, F, A, SId} || #session{id = SId, profiles = Ps} <- maps:values(Sessions), {M, F, A, _} <- Ps],
    Problems = overlaps(Patterns, Taken) ++ overlaps([{M, F, A, x, x} || {M, F, A, _} <- Profiles], Counted)
        ++ foreign_tracers(Scope) ++ dead(Scope),
    case Problems of
        [Problem | _] ->
            {error, Problem};
        [] ->
            Timed = lists:keymember(call_time, 4, Profiles),
            Flags = case Patterns =/= [] orelse Timed of
                        true -> lists:usort([call | Flags0]);
                        false -> Flags0
                    end,
            %% The functions to read counters of, listed before the counters are on
            %% (module_info/1 is a call like any other).
            ToRead = lists:usort([{{M, Fn, Ar}, Kind}
                                   || {M, F, A, Kind} <- Profiles, erlang:module_loaded(M),
                                      {Fn, Ar} <- M:module_info(functions), wild_eq(F, Fn), wild_eq(A, Ar)]),
            case apply_all(Patterns, Profiles) of
                {ok, Matched, ProfileMatched} ->
                    Alive = case Scope of all -> []; _ -> Scope end,
                    [erlang:monitor(process, P) || P <- Alive],
                    set_flags(Scope, Flags),
                    S = #session{id = Id, owner = Owner, owner_ref = erlang:monitor(process, Owner),
                                 sink = Owner, patterns = [{M, F, A} || {M, F, A, _, _} <- Patterns],
                                 profiles = Profiles, counted = ToRead,
                                 flags = Flags, scope = Scope, alive = Alive, limits = Limits,
                                 started = erlang:monotonic_time(millisecond),
                                 timer = erlang:send_after(maps:get(max_ms, Limits), self(), {expire, Id})},
                    Reply = #{id => Id, hub => self(), patterns => Matched, profiles => ProfileMatched,
                              limits => Limits, flags => Flags},
                    State1 = State#{sessions := Sessions#{Id => S}, next := Id + 1},
                    put({session_functions, Id}, S#session.patterns),
                    inform_janitor(State1),
                    {ok, Reply, State1};
                {error, _} = Error ->
                    Error
            end
    end.

overlaps(Patterns, Taken) ->
    [{conflict, {M, F, A}, SId} || {M, F, A, _, _} <- Patterns, {M2, F2, A2, SId} <- Taken,
                                   M =:= M2, wild_eq(F, F2), wild_eq(A, A2)].

wild_eq('_', _) -> true;
wild_eq(_, '_') -> true;
wild_eq(X, Y) -> X =:= Y.

%% Another tool (dbg, recon, redbug...) tracing what we would trace. In a
%% trace session of Arsenal's own there is no such thing.
foreign_tracers(Scope) ->
    case get(trace_session) of
        legacy -> legacy_tracers(Scope);
        _ -> []
    end.

legacy_tracers(all) ->
    case info(new_processes, tracer) of
        {tracer, T} when T =/= [], T =/= self() -> [{foreign_tracer, T}];
        _ -> []
    end;
legacy_tracers(Pids) ->
    lists:usort([{foreign_tracer, T} || P <- Pids,
                                        {tracer, T} <- [info(P, tracer)],
                                        T =/= [], T =/= self()]).

dead(all) -> [];
dead(Pids) -> [{dead, P} || P <- Pids, not erlang:is_process_alive(P)].

apply_all(Patterns, Profiles) ->
    case apply_patterns(Patterns, []) of
        {ok, Matched} ->
            case apply_profiles(Profiles, []) of
                {ok, ProfileMatched} ->
                    {ok, Matched, ProfileMatched};
                Error ->
                    undo_patterns(Matched),
                    Error
            end;
        Error ->
            Error
    end.

apply_profiles([], Done) ->
    {ok, lists:reverse(Done)};
apply_profiles([{M, F, A, Kind} | Rest], Done) ->
    case erlang:module_loaded(M) of
        false ->
            undo_profiles(Done),
            {error, {not_loaded, M}};
        true ->
            %% Counters start from zero for this session.
            pattern({M, F, A}, restart, [Kind]),
            case pattern({M, F, A}, true, [Kind]) of
                0 ->
                    undo_profiles(Done),
                    {error, {no_match, {M, F, A}}};
                N ->
                    apply_profiles(Rest, [{M, F, A, N, Kind} | Done])
            end
    end.

undo_profiles(Done) ->
    [pattern({M, F, A}, false, [Kind]) || {M, F, A, _, Kind} <- Done],
    ok.

%% Set each pattern; undo the ones already set if one fails.
apply_patterns([], Done) ->
    {ok, lists:reverse(Done)};
apply_patterns([{M, F, A, Spec, Where} | Rest], Done) ->
    case erlang:module_loaded(M) of
        false ->
            undo_patterns(Done),
            {error, {not_loaded, M}};
        true ->
            case pattern({M, F, A}, Spec, [Where]) of
                0 ->
                    undo_patterns(Done),
                    {error, {no_match, {M, F, A}}};
                N ->
                    apply_patterns(Rest, [{M, F, A, N} | Done])
            end
    end.

undo_patterns(Done) ->
    [pattern({M, F, A}, false, [local]) || {M, F, A, _} <- Done],
    [pattern({M, F, A}, false, [global]) || {M, F, A, _} <- Done],
    ok.

%% The timestamp is monotonic (converted to wall-clock microseconds per event).
%% Take trace flags off a process that may have exited meanwhile.
untrace(Pid, Flags) ->
    try trace_flags(Pid, false, Flags) catch error:badarg -> 0 end.

set_flags(_Scope, []) ->
    ok;
set_flags(all, Flags) ->
    trace_flags(all, true, [monotonic_timestamp, {tracer, self()} | Flags]),
    %% The tracer never traces itself (an event about the hub would make another), nor its janitor.
    trace_flags(self(), false, [all]),
    case get(janitor) of
        Janitor when is_pid(Janitor) -> untrace(Janitor, [all]);
        _ -> ok
    end,
    ok;
set_flags(Pids, Flags) ->
    [try trace_flags(P, true, [monotonic_timestamp, {tracer, self()} | Flags]) catch error:badarg -> 0 end
     || P <- Pids],
    ok.

%% ------------------------------------------------------------------ events

dispatch(Msg, #{sessions := Sessions} = State) ->
    Tag = element(3, Msg),
    Pid = element(2, Msg),
    Targets = case Tag of
                  call -> by_function(element(4, Msg), Pid, Sessions);
                  return_from -> by_function(element(4, Msg), Pid, Sessions);
                  exception_from -> by_function(element(4, Msg), Pid, Sessions);
                  _ -> by_process(flag_of(Tag), Pid, Sessions)
              end,
    lists:foldl(fun(S, Acc) -> deliver(S, Msg, Acc) end, State, Targets).

by_function(MFA, Pid, Sessions) ->
    {M, F, A} = mfa(MFA),
    [S || #session{patterns = Ps, scope = Scope} = S <- maps:values(Sessions),
          in_scope(Pid, Scope),
          lists:any(fun({M2, F2, A2}) -> M =:= M2 andalso wild_eq(F2, F) andalso wild_eq(A2, A) end, Ps)].

mfa({M, F, Args}) when is_list(Args) -> {M, F, length(Args)};
mfa({M, F, A}) -> {M, F, A}.

by_process(undefined, _Pid, _Sessions) -> [];
by_process(Flag, Pid, Sessions) ->
    [S || #session{flags = Fs, scope = Scope} = S <- maps:values(Sessions),
          lists:member(Flag, Fs), in_scope(Pid, Scope)].

in_scope(_, all) -> true;
in_scope(Pid, Pids) -> lists:member(Pid, Pids).

flag_of(send) -> send;
flag_of(send_to_non_existing_process) -> send;
flag_of('receive') -> 'receive';
flag_of(spawn) -> procs;
flag_of(spawned) -> procs;
flag_of(exit) -> procs;
flag_of(link) -> procs;
flag_of(unlink) -> procs;
flag_of(getting_linked) -> procs;
flag_of(getting_unlinked) -> procs;
flag_of(register) -> procs;
flag_of(unregister) -> procs;
flag_of(_) -> undefined.

deliver(#session{count = Count, limits = L, window = {Start, InWindow}} = S0, Msg, State) ->
    Now = erlang:monotonic_time(millisecond),
    {Start1, InWindow1} = case Now - Start >= maps:get(rate_ms, L) of
                              true -> {Now, 1};
                              false -> {Start, InWindow + 1}
                          end,
    case InWindow1 > maps:get(rate, L) of
        true ->
            finish(S0, rate_limit, State);
        false ->
            {Event, Truncated} = event(Count + 1, Msg, maps:get(max_bytes, L)),
            S1 = S0#session{count = Count + 1, window = {Start1, InWindow1},
                            buffer = [Event | S0#session.buffer], buffered = S0#session.buffered + 1,
                            truncated = S0#session.truncated + Truncated},
            State1 = put_session(S1, State),
            if
                Count + 1 >= map_get(max_events, L) -> finish(S1, max_events, State1);
                S1#session.buffered >= map_get(batch_size, L) -> put_session(flush(S1), State1);
                true -> schedule_flush(maps:get(batch_ms, L), State1)
            end
    end.

put_session(#session{id = Id} = S, #{sessions := Sessions} = State) ->
    case maps:is_key(Id, Sessions) of
        true -> State#{sessions := Sessions#{Id := S}};
        false -> State
    end.

schedule_flush(_, #{flush := Ref} = State) when Ref =/= undefined -> State;
schedule_flush(Ms, State) -> State#{flush := erlang:send_after(Ms, self(), flush)}.

%% {Seq, Microseconds since the epoch, Tag, Pid, A, B}: see the module doc.
event(Seq, Msg, MaxBytes) ->
    Size = tuple_size(Msg),
    Time = erlang:convert_time_unit(element(Size, Msg) + erlang:time_offset(), native, microsecond),
    Tag = element(3, Msg),
    Pid = element(2, Msg),
    {A, B, T} =
        case {Tag, Size} of
            {call, 5} -> {M, F, Args} = element(4, Msg), {Args1, T1} = cut(Args, MaxBytes), {{M, F, Args1}, undefined, T1};
            {call, 6} -> {M, F, Args} = element(4, Msg), {Args1, T1} = cut(Args, MaxBytes), {{M, F, Args1}, element(5, Msg), T1};
            {return_from, 6} -> {V, T1} = cut(element(5, Msg), MaxBytes), {element(4, Msg), V, T1};
            {exception_from, 6} -> {V, T1} = cut(element(5, Msg), MaxBytes), {element(4, Msg), V, T1};
            {send, 6} -> {V, T1} = cut(element(4, Msg), MaxBytes), {V, element(5, Msg), T1};
            {send_to_non_existing_process, 6} -> {V, T1} = cut(element(4, Msg), MaxBytes), {V, element(5, Msg), T1};
            {'receive', 5} -> {V, T1} = cut(element(4, Msg), MaxBytes), {V, undefined, T1};
            {exit, 5} -> {V, T1} = cut(element(4, Msg), MaxBytes), {V, undefined, T1};
            {spawn, 6} -> {V, T1} = cut(element(5, Msg), MaxBytes), {element(4, Msg), V, T1};
            {spawned, 6} -> {V, T1} = cut(element(5, Msg), MaxBytes), {element(4, Msg), V, T1};
            {_, 5} -> {element(4, Msg), undefined, 0};
            {_, _} -> {V, T1} = cut(list_to_tuple(lists:sublist(tuple_to_list(Msg), 4, Size - 4)), MaxBytes), {V, undefined, T1}
        end,
    {{Seq, Time, Tag, Pid, A, B}, T}.

%% A term over MaxBytes (external format) becomes a marker with a preview.
cut(Term, MaxBytes) ->
    case erlang:external_size(Term) of
        Bytes when Bytes =< MaxBytes -> {Term, 0};
        Bytes ->
            Preview = iolist_to_binary(io_lib:format("~0P", [Term, 12])),
            {{?TRUNCATED, Bytes, binary:part(Preview, 0, min(byte_size(Preview), 200))}, 1}
    end.

%% ------------------------------------------------------------------ flushing

flush_all(#{sessions := Sessions} = State) ->
    State#{sessions := maps:map(fun(_, S) -> flush(S) end, Sessions)}.

flush(#session{buffer = []} = S) -> S;
flush(#session{id = Id, sink = Sink, buffer = Buffer, buffered = N, dropped = D} = S) ->
    Dropped = case erlang:send(Sink, {arsenal_trace, Id, lists:reverse(Buffer)}, [nosuspend]) of
                  ok -> 0;
                  _ -> N
              end,
    S#session{buffer = [], buffered = 0, dropped = D + Dropped}.

%% ------------------------------------------------------------------ ending

on_down(#session{owner_ref = Ref} = S, Ref, _Pid, State) ->
    finish(S, owner_down, State);
on_down(#session{alive = Alive} = S, _Ref, Pid, State) ->
    case lists:member(Pid, Alive) of
        false -> State;
        true ->
            case lists:delete(Pid, Alive) of
                [] -> finish(S#session{alive = []}, processes_exited, State);
                Rest -> put_session(S#session{alive = Rest}, State)
            end
    end.

%% End a session: flush, tell the sink, take out what only it needed.
finish(#session{id = Id, sink = Sink, timer = Timer} = S0, Reason, #{sessions := Sessions} = State) ->
    case maps:is_key(Id, Sessions) of
        false -> State;
        true ->
            Rest = maps:remove(Id, Sessions),
            Profile = profile_results(S0#session.counted),
            unapply(S0, maps:values(Rest)),
            S = flush(S0),
            _ = erlang:cancel_timer(Timer),
            erlang:demonitor(S#session.owner_ref, [flush]),
            Stats = #{events => S#session.count, dropped => S#session.dropped, profile => Profile,
                      truncated => S#session.truncated,
                      duration_ms => erlang:monotonic_time(millisecond) - S#session.started},
            _ = erlang:send(Sink, {arsenal_trace_done, Id, Reason, Stats}, [nosuspend]),
            State1 = State#{sessions := Rest},
            erase({session_functions, Id}),
            inform_janitor(State1),
            State1
    end.

%% Remove this session's patterns, and its flags from the processes no
%% remaining session needs them on.
unapply(#session{patterns = Patterns, profiles = Profiles, flags = Flags, scope = Scope}, Others) ->
    [begin
         pattern(MFA, false, [local]),
         pattern(MFA, false, [global])
     end || MFA <- Patterns],
    [pattern({M, F, A}, false, [Kind]) || {M, F, A, Kind} <- Profiles],
    NeededEverywhere = lists:usort(lists:append([Fs || #session{flags = Fs, scope = all} <- Others])),
    case Scope of
        all ->
            case Flags -- NeededEverywhere of
                [] -> ok;
                Clear ->
                    trace_flags(all, false, Clear),
                    %% Per-process sessions that needed some of those get them back.
                    [set_flags(Pids, [F || F <- Fs, lists:member(F, Clear)])
                     || #session{flags = Fs, scope = Pids} <- Others, Pids =/= all]
            end;
        Pids ->
            [begin
                 Needed = NeededEverywhere ++
                     lists:append([Fs || #session{flags = Fs, scope = Ps} <- Others, Ps =/= all,
                                         lists:member(P, Ps)]),
                 case Flags -- Needed of
                     [] -> ok;
                     Clear -> untrace(P, Clear)
                 end
             end || P <- Pids]
    end,
    ok.

%% The last session is gone: no flag and no timestamp flag of ours stays.
clear_everything(Session) ->
    trace_flags(Session, all, false, [call, send, 'receive', procs, monotonic_timestamp]),
    ok.

%% Every ?QUEUE_CHECK_EVERY events, the mailbox: past the smallest max_queue
%% of the sessions, all tracing stops first and the sessions end after.
check_queue(#{handled := N} = State) when N rem ?QUEUE_CHECK_EVERY =/= 0 ->
    State#{handled := N + 1};
check_queue(#{handled := N, sessions := Sessions} = State) ->
    Max = lists:min([maps:get(max_queue, L) || #session{limits = L} <- maps:values(Sessions)] ++ [1000000]),
    case erlang:process_info(self(), message_queue_len) of
        {message_queue_len, Len} when Len > Max ->
            trace_flags(all, false, [call, send, 'receive', procs]),
            State1 = maps:fold(fun(_, S, Acc) -> finish(S, queue_overflow, Acc) end, State, Sessions),
            drain(),
            State1#{handled := N + 1};
        _ ->
            State#{handled := N + 1}
    end.

%% Throw away the trace messages still queued (bounded by the queue's length).
drain() ->
    receive
        Msg when element(1, Msg) =:= trace_ts; element(1, Msg) =:= trace -> drain()
    after 0 -> ok
    end.

%% What the profiled functions counted: per function the calls and, for
%% call_time, the microseconds and the 5 processes that spent most, the
%% 200 functions with the most time (then calls). Read before the patterns
%% are removed (removing them resets the counters).
-define(MAX_PROFILE_ROWS, 200).
profile_results([]) ->
    [];
profile_results(Counted) ->
    Rows = [Row || {MFA, Kind} <- Counted, Row <- [profile_row(MFA, Kind)], maps:get(calls, Row) > 0],
    Sorted = lists:sort(fun(#{time_us := T1, calls := C1}, #{time_us := T2, calls := C2}) ->
                                {T1, C1} >= {T2, C2}
                        end, Rows),
    lists:sublist(Sorted, ?MAX_PROFILE_ROWS).

profile_row(MFA, call_count) ->
    Calls = case info(MFA, call_count) of
                {call_count, N} when is_integer(N) -> N;
                _ -> 0
            end,
    #{mfa => MFA, calls => Calls, time_us => 0, processes => []};
profile_row(MFA, call_time) ->
    PerPid = case info(MFA, call_time) of
                 {call_time, L} when is_list(L) ->
                     [{S * 1000000 + Us, C, P} || {P, C, S, Us} <- L];
                 _ -> []
             end,
    Top = lists:sublist(lists:reverse(lists:sort(PerPid)), 5),
    #{mfa => MFA, calls => lists:sum([C || {_, C, _} <- PerPid]),
      time_us => lists:sum([T || {T, _, _} <- PerPid]),
      processes => [#{pid => P, calls => C, time_us => T} || {T, C, P} <- Top]}.

describe(#session{id = Id, owner = Owner, patterns = Ps, flags = Fs, scope = Scope, count = C,
                  limits = L, started = Started, dropped = D, truncated = T}) ->
    #{id => Id, owner => Owner, patterns => Ps, flags => Fs,
      scope => case Scope of all -> all; _ -> Scope end, events => C, dropped => D, truncated => T,
      limits => L, running_ms => erlang:monotonic_time(millisecond) - Started}.
