%% @doc Supervisors' restart history without polling: a logger primary filter
%% sees every supervisor report as it is logged and hands a compact event to a
%% collector process, which batches them to the Arsenal processes (owners)
%% that asked for them.
%%
%% What is captured: OTP's supervisor reports (label {supervisor, Context}:
%% child_terminated, start_error, shutdown, shutdown_error; logged at error
%% level, domain [otp, sasl]) and progress reports (label {supervisor,
%% progress}, logged at info: the start of a child, with its pid and id). Elixir's
%% DynamicSupervisor logs the same reports.
%%
%% Logger levels: a progress report is info, and logger drops an event whose
%% level the module level (or else the primary level) does not admit before any
%% filter or handler runs. So, while the collector runs, the module level of
%% `supervisor' (and of 'Elixir.DynamicSupervisor' when that module exists) is
%% set to info when it admitted less; the primary level is never touched. The
%% filter then stops again every supervisor event the node would not have
%% logged before (its level below the node's own threshold), so handlers see
%% exactly what they saw before. When the last owner goes away (its process
%% ends or the connection drops: owners are monitored) the filter is removed
%% and the module levels are put back as they were (unset when they were
%% unset). The filter's arguments keep those saved levels, so a filter left by
%% a collector that was killed is cleaned up by the next start/2 or by stop_all/0.
%%
%% Bounds: the filter runs in the supervisor's own process and does O(1)
%% work plus a bounded copy (a reason larger than ?MAX_REASON_WORDS words is
%% replaced by its first element); it drops events (counted) while the
%% collector's mailbox holds more than ?MAX_QUEUE messages. The collector sends
%% each owner a batch at most every ?BATCH_MS ms (or every ?BATCH_SIZE events),
%% at most ?RATE events per second per owner (the rest are counted as dropped),
%% with nosuspend sends: {arsenal_restarts, [Event], Dropped}, where Event is
%% {TimeMs, Kind, SupervisorPid, SupervisorName, ChildId, ChildPid, Reason}:
%% TimeMs is os:system_time(millisecond) when the report was logged, Kind is
%% started | child_terminated | start_error | shutdown | shutdown_error, and
%% Reason a binary of at most ?REASON_BYTES bytes (or undefined).
-module(arsenal_agent_restarts).

-export([start/2, stop/1, stop_all/0, status/0, filter/2, analytics_sample/3, benchmark/4]).
-export([init/2]).

-define(FILTER_ID, arsenal_restarts).
-define(MAX_QUEUE, 5000).
-define(BATCH_MS, 200).
-define(BATCH_SIZE, 200).
-define(RATE, 1000).
-define(MAX_OWNERS, 16).
-define(MAX_REASON_WORDS, 2000).
-define(REASON_BYTES, 400).
-define(MAX_CHILDREN, 200).
-define(CALL_TIMEOUT, 5000).

%% ------------------------------------------------------------------ API

%% @doc Make Owner (a pid on Arsenal's node) receive the supervisor events of
%% this node. Starts the collector and installs the filter on first use.
%% Returns {ok, CollectorPid}; Options is reserved (a map).
-spec start(pid(), map()) -> {ok, pid()} | {error, term()}.
start(Owner, Options) when is_pid(Owner), is_map(Options) ->
    subscribe(Owner, 3).

subscribe(_Owner, 0) ->
    {error, collector_timeout};
subscribe(Owner, Tries) ->
    Collector = case whereis(?MODULE) of
                    undefined -> spawn_collector();
                    Pid -> Pid
                end,
    Ref = erlang:monitor(process, Collector),
    Collector ! {subscribe, self(), Ref, Owner},
    receive
        {Ref, Reply} -> erlang:demonitor(Ref, [flush]), Reply;
        {'DOWN', Ref, process, _, _} -> subscribe(Owner, Tries - 1)
    after ?CALL_TIMEOUT ->
        erlang:demonitor(Ref, [flush]),
        {error, collector_timeout}
    end.

%% @doc Stop sending events to Owner (the collector ends with its last owner).
-spec stop(pid()) -> ok.
stop(Owner) when is_pid(Owner) ->
    case whereis(?MODULE) of
        undefined -> ok;
        Collector -> Collector ! {unsubscribe, Owner}, ok
    end.

%% @doc Stop the collector and remove the filter whatever the owners (and a
%% filter some dead collector left behind), restoring the module levels.
-spec stop_all() -> ok.
stop_all() ->
    case whereis(?MODULE) of
        undefined -> ok;
        Collector ->
            Ref = erlang:monitor(process, Collector),
            Collector ! stop,
            receive {'DOWN', Ref, process, _, _} -> ok
            after ?CALL_TIMEOUT -> exit(Collector, kill)
            end
    end,
    cleanup_filter().

%% @doc The collector's pid, its owners and counters, and whether the filter is
%% installed (for tests and for checking nothing is left behind).
-spec status() -> map().
status() ->
    Filter = lists:keymember(?FILTER_ID, 1, maps:get(filters, logger:get_primary_config(), [])),
    case whereis(?MODULE) of
        undefined -> #{collector => undefined, filter => Filter, owners => []};
        Pid ->
            Dict = case erlang:process_info(Pid, dictionary) of
                       {dictionary, D} -> D;
                       undefined -> []
                   end,
            Owners = proplists:get_value(owners, Dict, []),
            #{collector => Pid, filter => Filter, owners => Owners}
    end.

%% ------------------------------------------------------------------ the filter

%% @doc The logger primary filter (not for calling): forwards supervisor
%% reports to the collector; stops those only the raised module level let
%% through; leaves every other event alone at the cost of one match.
-spec filter(logger:log_event(), map()) -> logger:filter_return().
filter(#{msg := {report, #{label := {supervisor, Context}, report := Report}}, level := Level} = Event,
       #{collector := Collector, dropped := Dropped, saved := Saved}) ->
    forward(Collector, Dropped, Context, Report, Event),
    case admitted_before(Level, Event, Saved) of
        true -> ignore;
        false -> stop
    end;
filter(_Event, _Args) ->
    ignore.

forward(Collector, Dropped, Context, Report, Event) ->
    case erlang:process_info(Collector, message_queue_len) of
        {message_queue_len, N} when N < ?MAX_QUEUE ->
            case compact(Context, Report) of
                skip -> ok;
                {Kind, Id, Pid, Reason} ->
                    Time = case Event of
                               #{meta := #{time := T}} -> T div 1000;
                               _ -> os:system_time(millisecond)
                           end,
                    Collector ! {event, {Time, Kind, self(), sup_name(Report), Id, Pid, Reason}}
            end;
        {message_queue_len, _} -> counters:add(Dropped, 1, 1);
        undefined -> ok
    end.

%% Whether the node logged this event before the module levels were raised.
admitted_before(Level, Event, Saved) ->
    Module = case Event of
                 #{meta := #{mfa := {M, _, _}}} -> M;
                 _ -> supervisor
             end,
    Threshold = case lists:keyfind(Module, 1, Saved) of
                    {_, unset} -> primary_level();
                    {_, L} -> L;
                    false -> primary_level()
                end,
    logger:compare_levels(Level, Threshold) =/= lt.

primary_level() ->
    maps:get(level, logger:get_primary_config(), notice).

compact(progress, Report) ->
    Started = list_value(started, Report),
    {started, bound(list_value(id, Started)), list_value(pid, Started), undefined};
compact(Context, Report) when Context =:= child_terminated; Context =:= start_error;
                              Context =:= shutdown; Context =:= shutdown_error ->
    Offender = list_value(offender, Report),
    {Id, Pid} = case Offender of
                    #{id := I} -> {I, maps:get(pid, Offender, undefined)};
                    _ -> {list_value(id, Offender), list_value(pid, Offender)}
                end,
    {Context, bound(Id), Pid, bound(list_value(reason, Report))};
compact(_, _) ->
    skip.

list_value(Key, List) when is_list(List) ->
    case lists:keyfind(Key, 1, List) of
        {_, Value} -> Value;
        false -> undefined
    end;
list_value(Key, Map) when is_map(Map) -> maps:get(Key, Map, undefined);
list_value(_, _) -> undefined.

sup_name(Report) ->
    case list_value(supervisor, Report) of
        {local, Name} -> Name;
        {global, Name} -> bound(Name);
        Name when is_atom(Name) -> Name;
        _ -> undefined
    end.

%% A term small enough to copy: larger ones become their first element.
bound(Term) ->
    case erts_debug:flat_size(Term) > ?MAX_REASON_WORDS of
        false -> Term;
        true when is_tuple(Term), tuple_size(Term) > 0, is_atom(element(1, Term)) ->
            {'$arsenal_truncated', element(1, Term)};
        true -> '$arsenal_truncated'
    end.

%% ------------------------------------------------------------------ the collector

spawn_collector() ->
    Parent = self(),
    Ref = make_ref(),
    Pid = spawn(?MODULE, init, [Parent, Ref]),
    receive {Ref, _} -> Pid
    after ?CALL_TIMEOUT -> Pid
    end.

%% @doc The collector (spawned by start/2, not for calling).
-spec init(pid(), reference()) -> no_return().
init(Parent, Ref) ->
    case try register(?MODULE, self()) catch error:badarg -> taken end of
        true ->
            cleanup_filter(),
            Dropped = counters:new(1, []),
            Saved = raise_levels(),
            ok = logger:add_primary_filter(?FILTER_ID, {fun ?MODULE:filter/2,
                                                       #{collector => self(), dropped => Dropped,
                                                         saved => Saved}}),
            Parent ! {Ref, ok},
            erlang:send_after(?BATCH_MS, self(), flush),
            loop(#{owners => #{}, dropped => Dropped, reported => 0});
        _ ->
            Parent ! {Ref, already_started},
            exit(normal)
    end.

%% Raise the module levels that would drop progress reports; what they were.
raise_levels() ->
    Modules = [supervisor | [M || M <- ['Elixir.DynamicSupervisor'], code:ensure_loaded(M) =:= {module, M}]],
    Primary = primary_level(),
    lists:map(
      fun(M) ->
              Before = case logger:get_module_level(M) of
                           [{M, L}] -> L;
                           _ -> unset
                       end,
              Effective = case Before of unset -> Primary; _ -> Before end,
              case logger:compare_levels(info, Effective) of
                  lt -> ok = logger:set_module_level(M, info);
                  _ -> ok
              end,
              {M, Before}
      end, Modules).

%% Remove the filter (ours or one a dead collector left) and restore the
%% module levels it saved.
cleanup_filter() ->
    Filters = maps:get(filters, logger:get_primary_config(), []),
    case lists:keyfind(?FILTER_ID, 1, Filters) of
        {_, {_, #{saved := Saved}}} ->
            _ = logger:remove_primary_filter(?FILTER_ID),
            [case Before of
                 unset -> logger:unset_module_level(M);
                 L -> logger:set_module_level(M, L)
             end || {M, Before} <- Saved],
            ok;
        {_, _} ->
            _ = logger:remove_primary_filter(?FILTER_ID),
            ok;
        false ->
            ok
    end.

loop(#{owners := Owners} = State) ->
    put(owners, maps:keys(Owners)),
    receive
        {event, Event} ->
            loop(State#{owners := maps:map(fun(Owner, O) -> buffer(Owner, Event, O) end, Owners)});
        flush ->
            erlang:send_after(?BATCH_MS, self(), flush),
            loop(flush_all(State));
        {subscribe, From, Ref, Owner} ->
            case maps:is_key(Owner, Owners) orelse map_size(Owners) < ?MAX_OWNERS of
                true ->
                    New = case Owners of
                              #{Owner := _} -> Owners;
                              _ -> Owners#{Owner => #{ref => erlang:monitor(process, Owner), buffer => [],
                                                      count => 0, window => {0, 0}, dropped => 0}}
                          end,
                    From ! {Ref, {ok, self()}},
                    loop(State#{owners := New});
                false ->
                    From ! {Ref, {error, too_many_owners}},
                    loop(State)
            end;
        {unsubscribe, Owner} ->
            remove_owner(Owner, State);
        {'DOWN', _, process, Owner, _} ->
            remove_owner(Owner, State);
        stop ->
            cleanup_filter(),
            exit(normal);
        _ ->
            loop(State)
    end.

remove_owner(Owner, #{owners := Owners} = State) ->
    case maps:take(Owner, Owners) of
        {#{ref := Ref}, Rest} when map_size(Rest) =:= 0 ->
            erlang:demonitor(Ref, [flush]),
            cleanup_filter(),
            exit(normal);
        {#{ref := Ref}, Rest} ->
            erlang:demonitor(Ref, [flush]),
            loop(State#{owners := Rest});
        error ->
            loop(State)
    end.

%% Buffer an event for an owner within its rate; count the rest as dropped.
buffer(Owner, Event, #{window := {Second, InWindow}} = O) ->
    Now = erlang:monotonic_time(second),
    {S, N} = case Now of Second -> {Second, InWindow}; _ -> {Now, 0} end,
    case N < ?RATE of
        true ->
            O2 = O#{buffer := [Event | maps:get(buffer, O)], count := maps:get(count, O) + 1,
                    window := {S, N + 1}},
            case maps:get(count, O2) >= ?BATCH_SIZE of
                true -> send_batch(Owner, O2);
                false -> O2
            end;
        false ->
            O#{dropped := maps:get(dropped, O) + 1, window := {S, N}}
    end.

flush_all(#{owners := Owners, dropped := Counter, reported := Reported} = State) ->
    Total = counters:get(Counter, 1),
    Extra = Total - Reported,
    New = maps:map(fun(Owner, O) ->
                           send_batch(Owner, O#{dropped := maps:get(dropped, O) + Extra})
                   end, Owners),
    State#{owners := New, reported := Total}.

send_batch(_Owner, #{buffer := [], dropped := 0} = O) ->
    O;
send_batch(Owner, #{buffer := Buffer, dropped := Dropped} = O) ->
    Events = [render(E) || E <- lists:reverse(Buffer)],
    _ = erlang:send(Owner, {arsenal_restarts, Events, Dropped}, [nosuspend]),
    O#{buffer := [], count := 0, dropped := 0}.

render({Time, Kind, SupPid, SupName, Id, Pid, Reason}) ->
    Name = case SupName of
               undefined -> name_of(SupPid);
               N -> N
           end,
    {Time, Kind, SupPid, Name, Id, Pid, reason_text(Reason)}.

reason_text(undefined) -> undefined;
reason_text(Reason) ->
    Text = iolist_to_binary(io_lib:format("~0tP", [Reason, 12])),
    case byte_size(Text) > ?REASON_BYTES of
        true -> <<(binary:part(Text, 0, ?REASON_BYTES))/binary, "...">>;
        false -> Text
    end.

%% ------------------------------------------------------------------ analytics and benchmark

name_of(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} when is_atom(Name) -> Name;
        _ -> undefined
    end.

%% @doc Now, for a supervisor: its pid and name, restart intensity and period,
%% the restarts its state counts within the period, and its first ?MAX_CHILDREN
%% children with memory, reductions and message queue length (one
%% process_info each).
-spec analytics_sample(binary(), pos_integer(), timeout()) -> map() | {error, term()}.
analytics_sample(Target, Limit, Timeout) ->
    case supervisor_pid(Target) of
        {ok, Pid} ->
            case try sys:get_state(Pid, Timeout) catch exit:Exit -> {'EXIT', Exit} end of
                {'EXIT', {timeout, _}} -> {error, timeout};
                {'EXIT', {noproc, _}} -> {error, dead};
                {'EXIT', Reason} -> {error, {no_state, Reason}};
                State ->
                    case intensity(State) of
                        {ok, Intensity, Period, Recent} ->
                            Children = children(Pid, min(Limit, ?MAX_CHILDREN), Timeout),
                            #{pid => Pid, name => name_of(Pid), intensity => Intensity,
                              period => Period, recent_restarts => Recent, children => Children,
                              time => os:system_time(millisecond)};
                        error -> {error, unsupported_state}
                    end
            end;
        Error -> Error
    end.

supervisor_pid(Target) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} ->
            case arsenal_agent_sup:kind(Pid) of
                {_, _} -> {ok, Pid};
                dead -> {error, dead};
                other -> {error, {not_supervisor, #{}}}
            end;
        Error -> Error
    end.

%% Read through the state's layout (arsenal_agent_sup:parse_state/1).
intensity(State) ->
    case arsenal_agent_sup:parse_state(State) of
        {ok, #{intensity := I, period := P, restarts := Restarts}} -> {ok, I, P, recent(Restarts, P)};
        {error, _} -> error
    end.

recent(Restarts, Period) when is_list(Restarts) ->
    Now = erlang:monotonic_time(second),
    length([T || T <- Restarts, is_integer(T), Now - T < Period]);
recent(_, _) -> 0.

children(Sup, Limit, Timeout) ->
    case which_children(Sup, Timeout) of
        List when is_list(List) ->
            [child_row(C) || C <- lists:sublist(List, Limit)];
        _ -> []
    end.

%% A supervisor's children, or none when it is gone or too slow to answer.
which_children(Sup, Timeout) ->
    try gen_server:call(Sup, which_children, Timeout) catch exit:_ -> [] end.

child_row({Id, Pid, Type, _}) ->
    Info = case is_pid(Pid) of
               true -> erlang:process_info(Pid, [memory, reductions, message_queue_len]);
               false -> undefined
           end,
    Base = #{id => bound(Id), pid => Pid, type => Type},
    case Info of
        [{memory, M}, {reductions, R}, {message_queue_len, Q}] ->
            Base#{memory => M, reductions => R, message_queue_len => Q};
        _ -> Base
    end.

%% @doc Kill the first Count running children of a supervisor (in its
%% order) one after the other, and measure for each the microseconds from the
%% kill until the supervisor lists a new pid for that id (polled with
%% which_children; per child at most TimeoutMs). Refuses when the kills would
%% reach the supervisor's restart intensity (it would shut down), and refuses
%% simple_one_for_one / dynamic supervisors (their children have no ids).
-spec benchmark(binary(), pos_integer(), pos_integer(), timeout()) -> map() | {error, term()}.
benchmark(Target, Count, TimeoutMs, Timeout) ->
    case analytics_sample(Target, ?MAX_CHILDREN, Timeout) of
        #{pid := Sup, intensity := Intensity, recent_restarts := Recent, children := Children} ->
            Running = [C || #{id := Id, pid := P} = C <- Children, is_pid(P), Id =/= undefined],
            Chosen = lists:sublist(Running, Count),
            case Children =/= [] andalso Running =:= [] of
                true -> {error, dynamic_supervisor};
                false when length(Chosen) + Recent >= Intensity ->
                    {error, {intensity, Intensity, Recent, length(Chosen)}};
                false ->
                    Results = [measure(Sup, C, TimeoutMs, Timeout) || C <- Chosen],
                    #{pid => Sup, name => name_of(Sup), results => Results,
                      intensity => Intensity, recent_restarts => Recent}
            end;
        Error -> Error
    end.

measure(Sup, #{id := Id, pid := Old}, TimeoutMs, Timeout) ->
    Ref = erlang:monitor(process, Old),
    Start = erlang:monotonic_time(microsecond),
    exit(Old, kill),
    receive {'DOWN', Ref, process, Old, _} -> ok after TimeoutMs -> ok end,
    Deadline = Start + TimeoutMs * 1000,
    case wait_new(Sup, Id, Old, Deadline, Timeout, 0) of
        {ok, New, At, Polls} ->
            #{id => Id, old_pid => Old, new_pid => New, restart_us => At - Start, polls => Polls};
        {timeout, Polls} ->
            #{id => Id, old_pid => Old, new_pid => undefined, restart_us => undefined, polls => Polls}
    end.

wait_new(Sup, Id, Old, Deadline, Timeout, Polls) ->
    Now = erlang:monotonic_time(microsecond),
    case Now > Deadline of
        true -> {timeout, Polls};
        false ->
            Found = case which_children(Sup, Timeout) of
                        List when is_list(List) -> lists:keyfind(Id, 1, List);
                        _ -> false
                    end,
            case Found of
                {_, New, _, _} when is_pid(New), New =/= Old ->
                    {ok, New, erlang:monotonic_time(microsecond), Polls + 1};
                _ ->
                    %% Spin for the first polls (a restart takes microseconds), then back off.
                    case Polls > 200 of true -> timer:sleep(1); false -> ok end,
                    wait_new(Sup, Id, Old, Deadline, Timeout, Polls + 1)
            end
    end.
