%% @doc Arsenal's message-flow tracer: follow one message through the system
%% with seq_trace, and name processes for the message-pattern analysis.
%%
%% follow/5 sends one message to a process from an origin process that first
%% sets a sequential trace token (a label of its own, send, 'receive' and a
%% strict monotonic timestamp). The VM copies the token into every message
%% sent by a process that received a message carrying it, so everything the
%% message causes is traced, hop by hop. The events go to the seq_trace system
%% tracer, which for the window is this module's collector process:
%%
%%   caller (the erpc process of the call)
%%     `- collector: system tracer, keeps the events; monitors the owner and the caller
%%          `- origin: sets the token, sends the message, clears its token, then
%%             only receives (replies are traced as they arrive) until it is stopped
%%
%% There is one system tracer per node. One already set (dbg's seq_trace
%% support, another tool, another flow) is never replaced: the call is refused
%% with {tracer_busy, Tracer}. A tracer that is a dead process robs no one and
%% is taken over.
%%
%% Limits, enforced here: max_events (send and receive events, then it stops),
%% max_ms (the window), idle_ms (optional: stop after that long without an
%% event), a rate of at most rate events per rate_ms (a trip stops it, as
%% recon_trace does), max_bytes per message (a larger one is replaced by
%% {'$arsenal_truncated', Bytes, Preview}, as the trace hub does), and the
%% collector's mailbox (checked every 32 events: past ?MAX_QUEUE messages it
%% stops, because a tracer that falls behind is how tracing hurts a node). It stops on
%% the first limit, when its owner (an Arsenal process; a closed connection
%% takes it away) or its caller goes away, and on a crash. Every ending stops
%% the origin, empties every token (below), sets the system tracer back to
%% false and drops the trace messages still queued, so no process, no token
%% and no tracer is left.
%%
%% A token stays in a process that received a traced message until it
%% receives an untraced one (the VM's rule): a server that gets no other
%% message, a logger handler or the group leader would keep it for good, and
%% pass it on with every message it sends; messages still queued carry it
%% too. A token can only be set by its own process, so at the end of every
%% flow, while this flow still holds the system tracer (so no other flow has
%% started), seq_trace:reset_trace/0 empties the token of every process of
%% the node and of every queued message. It is the one documented way to do
%% it. Its cost, once per flow: the VM walks every process with the
%% schedulers stopped, about 0.1 ms per 1 000 processes (measured: 6 ms at
%% 50 000, 0.1 s at a million). Other users of sequential tracing lose
%% nothing: a flow only runs when no one else holds the system tracer, so no
%% one else's sequential trace is being collected. Tokens that travelled to
%% other nodes are theirs to keep (a flow traces one node).
%%
%% Safety: the message arrives encoded by Arsenal and is rebuilt with
%% arsenal_agent_proc:decode/1 (existing atoms only); the target with
%% arsenal_agent:target/1. The atom '$arsenal_origin' in the message stands
%% for the origin's pid, so a message can ask for a reply.
-module(arsenal_agent_flow).

-export([follow/5, names/1]).
%% Spawned entry points (exported so the processes are named after this module).
-export([collector/1, origin/1]).

-define(TRUNCATED, '$arsenal_truncated').
-define(ORIGIN, '$arsenal_origin').
-define(MARGIN_MS, 5000).
-define(MAX_NAMES, 2000).
-define(MAX_DEPTH, 100).
-define(MAX_QUEUE, 10000).
%% The messages one reply carries, in bytes: past it the rest are cut to markers.
-define(MAX_KEPT_BYTES, 16777216).
-define(QUEUE_CHECK_EVERY, 32).

%% ------------------------------------------------------------------ API

%% @doc Send Message (safe-term encoded) to Target with a seq_trace token and
%% record where it goes. Mode: <<"send">> (!), <<"cast">> ({'$gen_cast', M})
%% or <<"call">> ({'$gen_call', {Origin, Tag}, M}: the reply comes back to
%% the origin). Opts: max_events (1..1000), max_ms (10..30000), max_bytes
%% (64..1048576), idle_ms (0: off, ..30000), rate (1..1000000) events per
%% rate_ms (10..60000). Owner: the Arsenal process whose
%% end ends the flow. The reply: {ok, #{edges, nodes, origin, target, label,
%% end_reason, events, truncated, duration_ms}} or {error, Reason}.
%%
%% Cost: one message, then a copy of every message the flow causes (cut to
%% max_bytes) to the collector, at most max_events; nothing else is traced.
-spec follow(binary(), term(), binary(), map(), pid()) -> {ok, map()} | {error, term()}.
follow(Target, WireMessage, Mode, Opts, Owner)
  when is_binary(Target), is_binary(Mode), is_map(Opts), is_pid(Owner) ->
    case checked(Mode, Opts) of
        {ok, Wrap, Limits} ->
            case arsenal_agent_proc:decode(WireMessage) of
                {ok, Message} -> with_target(Target, Message, Wrap, Limits, Owner);
                Error -> Error
            end;
        Error ->
            Error
    end.

%% @doc Names for pids and pids for names, at most 2000 items: a pid gives
%% {Pid, RegisteredName | undefined}, an atom (a registered name, as send
%% trace events carry it) {Atom, Pid | undefined}. Cost: one process_info or
%% whereis per item.
-spec names([pid() | atom()]) -> [{pid() | atom(), atom() | pid()}] | {error, too_many}.
names(Items) when is_list(Items), length(Items) =< ?MAX_NAMES ->
    [{Item, name(Item)} || Item <- Items, is_pid(Item) orelse is_atom(Item)];
names(_) ->
    {error, too_many}.

name(Pid) when is_pid(Pid), node(Pid) =:= node() ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} -> Name;
        _ -> undefined
    end;
name(Pid) when is_pid(Pid) ->
    undefined;
name(Atom) ->
    case erlang:whereis(Atom) of
        undefined -> undefined;
        Pid -> Pid
    end.

%% ------------------------------------------------------------------ checks

checked(Mode, Opts) ->
    try
        Wrap = case Mode of
                   <<"send">> -> send;
                   <<"cast">> -> cast;
                   <<"call">> -> call;
                   _ -> throw({bad_mode, Mode})
               end,
        Get = fun(K, Default, Min, Max) ->
                      V = maps:get(K, Opts, Default),
                      case is_integer(V) andalso V >= Min andalso V =< Max of
                          true -> V;
                          false -> throw({bad_limit, K, V})
                      end
              end,
        Limits = #{max_events => Get(max_events, 200, 1, 1000),
                   max_ms => Get(max_ms, 2000, 10, 30000),
                   max_bytes => Get(max_bytes, 4096, 64, 1048576),
                   idle_ms => Get(idle_ms, 0, 0, 30000),
                   rate => Get(rate, 1000, 1, 1000000),
                   rate_ms => Get(rate_ms, 1000, 10, 60000)},
        {ok, Wrap, Limits}
    catch
        throw:Reason -> {error, Reason}
    end.

with_target(Target, Message, Wrap, Limits, Owner) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} when is_pid(Pid) ->
            case erlang:is_process_alive(Pid) of
                true -> run(Pid, Message, Wrap, Limits, Owner);
                false -> {error, gone}
            end;
        {ok, _} -> {error, not_found};
        Error -> Error
    end.

%% The caller waits for the collector (window + a margin) and for its exit,
%% so that when the call returns no process of the flow is left.
run(Pid, Message, Wrap, Limits, Owner) ->
    Ref = make_ref(),
    Job = #{caller => self(), ref => Ref, owner => Owner, target => Pid, message => Message,
            wrap => Wrap, limits => Limits},
    {Collector, CRef} = spawn_monitor(?MODULE, collector, [Job]),
    receive
        {Ref, Reply} ->
            receive {'DOWN', CRef, process, _, _} -> ok after 1000 -> ok end,
            Reply;
        {'DOWN', CRef, process, _, Reason} ->
            release(Collector),
            {error, {collector_down, Reason}}
    after maps:get(max_ms, Limits) + ?MARGIN_MS ->
            exit(Collector, kill),
            receive {'DOWN', CRef, process, _, _} -> ok after 1000 -> ok end,
            release(Collector),
            {error, timeout}
    end.

%% ------------------------------------------------------------------ the collector

%% @private The system tracer of one flow (see the module doc).
-spec collector(map()) -> ok.
collector(#{caller := Caller, ref := Ref} = Job) ->
    %% A burst of events must not grow this process's heap.
    process_flag(message_queue_data, off_heap),
    case claim() of
        ok ->
            try flow(Job) of
                {caller_down, _Reply} -> ok;
                {_, Reply} -> Caller ! {Ref, {ok, Reply}}, ok
            after
                release(self())
            end;
        {error, _} = Error ->
            Caller ! {Ref, Error},
            ok
    end.

%% Become the system tracer unless a live one is set.
claim() ->
    case seq_trace:get_system_tracer() of
        false ->
            take(false);
        Pid when is_pid(Pid) ->
            case erlang:is_process_alive(Pid) of
                false -> take(Pid);
                true -> {error, {tracer_busy, Pid}}
            end;
        Other ->
            {error, {tracer_busy, Other}}
    end.

take(Expected) ->
    case seq_trace:set_system_tracer(self()) of
        Expected -> ok;
        Other ->
            %% Another tracer was set between the look and the take: give it back.
            _ = seq_trace:set_system_tracer(Other),
            {error, {tracer_busy, Other}}
    end.

%% Empty every sequential trace token of the node and set the system tracer
%% back to false, if Tracer still holds it (so the tokens are this flow's).
release(Tracer) ->
    case seq_trace:get_system_tracer() of
        Tracer ->
            true = seq_trace:reset_trace(),
            _ = seq_trace:set_system_tracer(false),
            ok;
        _ -> ok
    end.

flow(#{caller := Caller, owner := Owner, target := Target, message := Message, wrap := Wrap,
       limits := #{max_ms := MaxMs, idle_ms := IdleMs} = Limits}) ->
    Label = erlang:unique_integer([positive]),
    Started = erlang:monotonic_time(millisecond),
    State0 = #{label => Label, limits => Limits, events => [], count => 0, truncated => 0,
               window => {Started, 0},
               owner => erlang:monitor(process, Owner), caller => erlang:monitor(process, Caller)},
    Origin = spawn(?MODULE, origin, [#{collector => self(), label => Label, target => Target,
                                       message => Message, wrap => Wrap, max_ms => MaxMs}]),
    ORef = erlang:monitor(process, Origin),
    Timer = erlang:send_after(MaxMs, self(), {?MODULE, window}),
    arm_idle(IdleMs, 0),
    {Reason, State} = loop(State0#{origin => ORef}),
    _ = erlang:cancel_timer(Timer),
    exit(Origin, kill),
    case State of
        #{origin := gone} -> ok;
        _ -> receive {'DOWN', ORef, process, _, _} -> ok after 1000 -> ok end
    end,
    %% The origin is gone: no token is made any more; empty them all.
    release(self()),
    drain(),
    #{events := Events, count := Count, truncated := Truncated} = State,
    Edges = edges(Events),
    Reply = #{label => Label, origin => Origin, target => Target, end_reason => Reason,
              events => Count, truncated => Truncated, edges => Edges,
              nodes => nodes(Edges, Origin, Target),
              duration_ms => erlang:monotonic_time(millisecond) - Started},
    {Reason, Reply}.

loop(#{label := Label, owner := OwnerRef, caller := CallerRef, origin := ORef, count := Count} = State) ->
    receive
        {seq_trace, Label, Info, Time} ->
            event(Info, Time, State);
        {seq_trace, Label, Info} ->
            event(Info, undefined, State);
        {?MODULE, window} ->
            {max_ms, State};
        {?MODULE, idle, Count} ->
            {idle, State};
        {'DOWN', OwnerRef, process, _, _} ->
            {owner_down, State};
        {'DOWN', CallerRef, process, _, _} ->
            {caller_down, State};
        {'DOWN', ORef, process, _, _} ->
            loop(State#{origin := gone});
        _Other ->
            %% Other labels (tokens left by an earlier flow), a stale idle timer,
            %% the origin's end: nothing to keep.
            loop(State)
    end.

event({Kind, {Previous, Current}, From, To, Message}, Time,
      #{limits := #{max_events := Max, max_bytes := MaxBytes, idle_ms := IdleMs} = Limits,
        events := Events, count := Count, truncated := Truncated} = State)
  when Kind =:= send; Kind =:= 'receive' ->
    case rate(Limits, State) of
        tripped ->
            {rate_limit, State};
        Window ->
            {Cut, T} = cut(Message, MaxBytes),
            Event = {Kind, Previous, Current, From, To, Cut, order(Time)},
            State1 = State#{events := [Event | Events], count := Count + 1, truncated := Truncated + T,
                            window := Window},
            case Count + 1 >= Max of
                true ->
                    {max_events, State1};
                false ->
                    case overflowing(Count + 1) of
                        true ->
                            {queue_overflow, State1};
                        false ->
                            arm_idle(IdleMs, Count + 1),
                            loop(State1)
                    end
            end
    end;
event(_Info, _Time, State) ->
    %% print events and anything newer than this module.
    loop(State).

%% At most rate events per rate_ms: the window of the current interval, or tripped.
rate(#{rate := Rate, rate_ms := RateMs}, #{window := {Start, InWindow}}) ->
    Now = erlang:monotonic_time(millisecond),
    case Now - Start >= RateMs of
        true -> {Now, 1};
        false when InWindow + 1 > Rate -> tripped;
        false -> {Start, InWindow + 1}
    end.

overflowing(Count) when Count rem ?QUEUE_CHECK_EVERY =/= 0 ->
    false;
overflowing(_Count) ->
    {message_queue_len, Len} = erlang:process_info(self(), message_queue_len),
    Len > ?MAX_QUEUE.

arm_idle(0, _Count) -> ok;
arm_idle(IdleMs, Count) -> _ = erlang:send_after(IdleMs, self(), {?MODULE, idle, Count}), ok.

%% {Monotonic, Unique}: the strict monotonic timestamp (taken now if the event
%% has none), a total order of the events consistent with causality.
order({Monotonic, Unique}) when is_integer(Monotonic) -> {Monotonic, Unique};
order(_) -> {erlang:monotonic_time(), erlang:unique_integer([monotonic])}.

%% Microseconds since the epoch, all with one time offset so they compare.
time_us({Monotonic, _Unique}, Offset) ->
    erlang:convert_time_unit(Monotonic + Offset, native, microsecond).

%% Drop the trace messages still queued (bounded by the queue's length).
drain() ->
    receive
        {seq_trace, _, _, _} -> drain();
        {seq_trace, _, _} -> drain();
        {?MODULE, _} -> drain();
        {?MODULE, _, _} -> drain()
    after 0 -> ok
    end.

%% A term over MaxBytes (external format) becomes a marker with a preview.
cut(Term, MaxBytes) ->
    case erlang:external_size(Term) of
        Bytes when Bytes =< MaxBytes -> {Term, 0};
        Bytes ->
            Preview = iolist_to_binary(io_lib:format("~0P", [Term, 12])),
            {{?TRUNCATED, Bytes, binary:part(Preview, 0, min(byte_size(Preview), 200))}, 1}
    end.

%% ------------------------------------------------------------------ the graph

%% One edge per message: its send and receive events share sender, receiver
%% and serial. In causal order: by the strict monotonic time of its first event.
%% The messages of all edges together stay under ?MAX_KEPT_BYTES (the reply is
%% one term): past it, messages are cut to markers.
edges(Events) ->
    Offset = erlang:time_offset(),
    Merged = lists:foldl(fun(Event, Acc) -> merge(Event, Offset, Acc) end, #{}, Events),
    Sorted = lists:keysort(1, [{maps:get(order, E), E} || E <- maps:values(Merged)]),
    budget([maps:remove(order, E) || {_, E} <- Sorted], ?MAX_KEPT_BYTES).

budget([], _Left) ->
    [];
budget([#{message := Message} = Edge | Rest], Left) ->
    Size = erlang:external_size(Message),
    case Size =< Left of
        true -> [Edge | budget(Rest, Left - Size)];
        false -> [Edge#{message := element(1, cut(Message, 0))} | budget(Rest, 0)]
    end.

merge({Kind, Previous, Current, From, To0, Message, Order}, Offset, Acc) ->
    Us = time_us(Order, Offset),
    To = resolved(To0),
    Key = {From, To, Previous, Current},
    Edge0 = maps:get(Key, Acc, #{from => From, to => To, to_name => name_of(To0),
                                 previous => Previous, current => Current, message => Message,
                                 sent_us => undefined, received_us => undefined, order => Order}),
    Edge1 = case Kind of
                send -> Edge0#{sent_us := Us};
                'receive' -> Edge0#{received_us := Us}
            end,
    Acc#{Key => Edge1#{order := min(Order, maps:get(order, Edge0))}}.

%% A message sent to a registered name: the process the name stands for now.
resolved(Name) when is_atom(Name) ->
    case erlang:whereis(Name) of
        Pid when is_pid(Pid) -> Pid;
        _ -> Name
    end;
resolved(To) ->
    To.

name_of(Name) when is_atom(Name) -> Name;
name_of(_) -> undefined.

nodes(Edges, Origin, Target) ->
    Pids = lists:usort([Origin, Target | lists:append([[F, T] || #{from := F, to := T} <- Edges])]),
    [#{pid => P, name => name(P), role => role(P, Origin, Target),
       alive => is_pid(P) andalso node(P) =:= node() andalso erlang:is_process_alive(P)}
     || P <- Pids, is_pid(P)].

role(Origin, Origin, _) -> origin;
role(Target, _, Target) -> target;
role(_, _, _) -> process.

%% ------------------------------------------------------------------ the origin

%% @private Sends the message with the token, then takes in whatever comes
%% back (each receive is traced) until the collector stops it or ends.
-spec origin(map()) -> ok.
origin(#{collector := Collector, label := Label, target := Target, message := Message,
         wrap := Wrap, max_ms := MaxMs}) ->
    Ref = erlang:monitor(process, Collector),
    Wrapped = wrap(Wrap, with_origin(Message, 0)),
    seq_trace:set_token(label, Label),
    seq_trace:set_token(send, true),
    seq_trace:set_token('receive', true),
    seq_trace:set_token(strict_monotonic_timestamp, true),
    Target ! Wrapped,
    seq_trace:set_token([]),
    wait(Ref, erlang:monotonic_time(millisecond) + MaxMs + ?MARGIN_MS).

wait(Ref, Until) ->
    Left = max(0, Until - erlang:monotonic_time(millisecond)),
    receive
        {'DOWN', Ref, process, _, _} -> ok;
        _Reply -> wait(Ref, Until)
    after Left -> ok
    end.

wrap(send, Message) -> Message;
wrap(cast, Message) -> {'$gen_cast', Message};
wrap(call, Message) -> {'$gen_call', {self(), make_ref()}, Message}.

%% '$arsenal_origin' anywhere in the message is this process's pid (the term
%% was decoded at most ?MAX_DEPTH deep).
with_origin(?ORIGIN, _Depth) -> self();
with_origin(Term, Depth) when Depth > ?MAX_DEPTH -> Term;
with_origin(Tuple, Depth) when is_tuple(Tuple) ->
    list_to_tuple([with_origin(E, Depth + 1) || E <- tuple_to_list(Tuple)]);
with_origin([H | T], Depth) ->
    [with_origin(H, Depth + 1) | with_origin(T, Depth)];
with_origin(Map, Depth) when is_map(Map) ->
    maps:from_list([{with_origin(K, Depth + 1), with_origin(V, Depth + 1)} || {K, V} <- maps:to_list(Map)]);
with_origin(Other, _Depth) ->
    Other.
