%% @doc Arsenal's interactive debugger: hold a sys-compliant process before it
%% handles a message, show the message and the state, step, continue.
%%
%% How: sys:install/3 puts a debug function into the target's sys debug list.
%% gen_server, gen_statem, gen_event and proc_lib special processes call it,
%% inside the target, for each system event: {in, Msg} (gen_server, gen_event)
%% or {in, Event, StateName} (gen_statem) before the message is handled, and
%% {noreply, State} / {out, Reply, To, State} (gen_server) after, with the new
%% state. The debug function hands every incoming message to this module's
%% session process and waits for its answer: `go' at once when no breakpoint
%% matches, or only when the user says continue or step when one does. While
%% it waits the target is held exactly there, before handling the message;
%% it cannot answer system messages then (sys:get_state would wait), so the
%% session reports the message and the last state the debug function saw.
%%
%% Breakpoints are match specifications (built in Python from Erlang/Elixir
%% pattern text, decoded here with existing atoms only) over [Payload], where
%% Payload is the call request, the cast or the plain message; a breakpoint
%% may have a second one over [LastState] (its condition).
%%
%% One session process per target, monitoring the target and its Owner (an
%% Arsenal process on the hidden node). It ends on detach, Owner down or target
%% down; it then releases a held target first and removes its debug function
%% with sys:remove/3 (from a helper, while the session goes on answering `go',
%% so the two never wait on each other), leaving the target as it was.
%% Safety nets: a hold lasts at most hold_ms (default 5 minutes) then the
%% session releases by itself; the debug function monitors the session, so a
%% session that is gone releases the target and the function removes itself
%% (returns `done') at the next event; a crash in it removes it too (sys does).
%%
%% Cost: every message the target handles waits for one round trip to the
%% session process (microseconds) and each new state is copied once to the
%% session and, truncated past max_state_bytes, to the Owner; events to the
%% Owner are rate limited (max_events_per_s, the rest counted as dropped).
-module(arsenal_agent_debug).
-behaviour(gen_server).

-export([start/3, command/2, debug_fun/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(TAG, arsenal_debug).
-define(CALL_TIMEOUT, 10000).
-define(SYS_TIMEOUT, 5000).
-define(MAX_BREAKPOINTS, 32).
-define(DEFAULT_HOLD_MS, 300000).
-define(MAX_HOLD_MS, 1800000).
-define(FUN_MARGIN_MS, 60000).
-define(DEFAULT_MAX_STATE_BYTES, 262144).
-define(DEFAULT_MAX_EVENTS, 500).
-define(TRUNCATED, '$arsenal_truncated').

-record(st, {
          target :: pid(),
          target_ref :: reference(),
          owner :: pid(),
          owner_ref :: reference(),
          phase = attaching :: attaching | running | ending,
          mode = run :: run | step,
          breakpoints = [] :: [{term(), term(), term() | undefined}],
          held :: undefined | {pid(), reference(), non_neg_integer()},
          hold_timer :: reference() | undefined,
          hold_ms :: pos_integer(),
          step = 0 :: non_neg_integer(),
          state = undefined :: term(),
          has_state = false :: boolean(),
          max_state_bytes :: pos_integer(),
          max_events :: pos_integer(),
          window = {0, 0} :: {integer(), non_neg_integer()},
          dropped = 0 :: non_neg_integer(),
          attach_from :: undefined | gen_server:from(),
          end_reason :: term(),
          waiting = [] :: [gen_server:from()]
         }).

%% ------------------------------------------------------------------ API

%% @doc Attach a debug session to Target (a pid text or registered name) for
%% Owner. WireOpts (safe-term encoded map): hold_ms, max_state_bytes,
%% max_events_per_s. Replies {ok, #{session, pid, state, has_state, module}}
%% or {error, Reason}: not_found | bad_pid | not_alive | not_sys_compliant |
%% {not_sys_compliant, Why} | self.
-spec start(binary(), pid(), term()) -> {ok, map()} | {error, term()}.
start(TargetRef, Owner, WireOpts) when is_binary(TargetRef), is_pid(Owner) ->
    case arsenal_agent_proc:decode(WireOpts) of
        {ok, Opts} when is_map(Opts) ->
            case arsenal_agent:target(TargetRef) of
                {ok, Pid} -> start_on(Pid, Owner, Opts);
                Error -> Error
            end;
        {ok, _} -> {error, bad_options};
        Error -> Error
    end.

start_on(Pid, Owner, Opts) ->
    case compliant(Pid) of
        ok ->
            {ok, Session} = gen_server:start(?MODULE, {Pid, Owner, Opts}, []),
            try gen_server:call(Session, attach, ?CALL_TIMEOUT)
            catch exit:_ -> exit(Session, kill), {error, attach_timeout}
            end;
        Error ->
            Error
    end.

%% A process sys can talk to runs an OTP behaviour's loop or implements the
%% sys callbacks (arsenal_agent_proc:answers_sys/1, decided without a
%% message). A plain receive loop would never answer the install request and
%% keep it in its mailbox; refuse it before asking.
compliant(Pid) when Pid =:= self() -> {error, self};
compliant(Pid) ->
    case erlang:is_process_alive(Pid) of
        false -> {error, not_alive};
        true ->
            case arsenal_agent_proc:answers_sys(Pid) of
                false -> {error, not_sys_compliant};
                true -> ok
            end
    end.

%% @doc A command for Session (pid from start/3), safe-term encoded:
%% {break, Id, MatchSpec, CondSpec | undefined}, {clear, Id}, continue, step,
%% state, info, detach.
-spec command(pid(), term()) -> term().
command(Session, WireCommand) when is_pid(Session) ->
    case arsenal_agent_proc:decode(WireCommand) of
        {ok, Command} ->
            try gen_server:call(Session, {command, Command}, ?CALL_TIMEOUT)
            catch
                exit:{noproc, _} -> {error, no_session};
                exit:{normal, _} -> {error, no_session};
                exit:{timeout, _} -> {error, timeout}
            end;
        Error ->
            Error
    end.

%% ------------------------------------------------------------------ the debug function

%% @doc Runs inside the target, for each sys event. FunState is {Session, Wait}.
-spec debug_fun({pid(), pos_integer()}, term(), term()) -> {pid(), pos_integer()}.
debug_fun({Session, Wait} = FunState, Event, _Name) ->
    case Event of
        {in, Msg} -> wait_go(Session, Wait, gen, Msg);
        {in, Msg, _StateName} -> wait_go(Session, Wait, statem, Msg);
        {noreply, State} -> Session ! {?TAG, state, self(), State};
        {out, _Reply, _To, State} -> Session ! {?TAG, state, self(), State};
        _ -> ok
    end,
    FunState.

%% Hand the message to the session and wait for `go'. A session that is gone
%% releases at once and removes this function (throw done: sys drops it).
wait_go(Session, Wait, Flavour, Msg) ->
    Ref = erlang:monitor(process, Session),
    Session ! {?TAG, in, self(), Ref, Flavour, Msg},
    receive
        {Ref, go} -> erlang:demonitor(Ref, [flush]), ok;
        {'DOWN', Ref, process, _, _} -> throw(done)
    after Wait ->
        erlang:demonitor(Ref, [flush]), ok
    end.

%% ------------------------------------------------------------------ the session

init({Target, Owner, Opts}) ->
    %% Names what this process is for whoever looks at it (observer, get_process_info).
    put('$arsenal_debug_target', Target),
    HoldMs = bounded(maps:get(hold_ms, Opts, ?DEFAULT_HOLD_MS), 100, ?MAX_HOLD_MS, ?DEFAULT_HOLD_MS),
    {ok, #st{target = Target,
             target_ref = erlang:monitor(process, Target),
             owner = Owner,
             owner_ref = erlang:monitor(process, Owner),
             hold_ms = HoldMs,
             max_state_bytes = bounded(maps:get(max_state_bytes, Opts, ?DEFAULT_MAX_STATE_BYTES),
                                       1024, 16777216, ?DEFAULT_MAX_STATE_BYTES),
             max_events = bounded(maps:get(max_events_per_s, Opts, ?DEFAULT_MAX_EVENTS),
                                  1, 100000, ?DEFAULT_MAX_EVENTS)}}.

bounded(V, Lo, Hi, _Default) when is_integer(V), V >= Lo, V =< Hi -> V;
bounded(_, _, _, Default) -> Default.

handle_call(attach, From, #st{target = Target, hold_ms = HoldMs} = St) ->
    Self = self(),
    FunSpec = {{?TAG, Self}, fun ?MODULE:debug_fun/3, {Self, HoldMs + ?FUN_MARGIN_MS}},
    %% From a helper: the session must go on answering the debug function (a
    %% message handled between install and get_state waits for it).
    spawn_link(fun() ->
                       Result = try
                                    ok = sys:install(Target, FunSpec, ?SYS_TIMEOUT),
                                    {ok, sys:get_state(Target, ?SYS_TIMEOUT)}
                                catch
                                    exit:{timeout, _} -> {error, {not_sys_compliant, timeout}};
                                    exit:{noproc, _} -> {error, not_alive};
                                    Class:Reason -> {error, {not_sys_compliant, {Class, Reason}}}
                                end,
                       Self ! {?TAG, attached, Result}
               end),
    {noreply, St#st{attach_from = From}};
handle_call({command, Command}, From, St) ->
    command_reply(Command, From, St);
handle_call(_Other, _From, St) ->
    {reply, {error, unknown_request}, St}.

command_reply(_Command, _From, #st{phase = ending} = St) ->
    {reply, {error, ending}, St};
command_reply({break, Id, Spec, Cond}, _From, #st{breakpoints = Bps} = St) ->
    case {compile(Spec), compile_cond(Cond)} of
        {{ok, C}, {ok, CC}} when length(Bps) < ?MAX_BREAKPOINTS ->
            {reply, ok, St#st{breakpoints = lists:keystore(Id, 1, Bps, {Id, C, CC})}};
        {{ok, _}, {ok, _}} -> {reply, {error, too_many_breakpoints}, St};
        {{error, _} = E, _} -> {reply, E, St};
        {_, {error, _} = E} -> {reply, E, St}
    end;
command_reply({clear, Id}, _From, #st{breakpoints = Bps} = St) ->
    case lists:keymember(Id, 1, Bps) of
        true -> {reply, ok, St#st{breakpoints = lists:keydelete(Id, 1, Bps)}};
        false -> {reply, {error, not_found}, St}
    end;
command_reply(continue, _From, St) ->
    {Held, St1} = release(St),
    {reply, {ok, Held}, St1#st{mode = run}};
command_reply(step, _From, St) ->
    {Held, St1} = release(St),
    {reply, {ok, Held}, St1#st{mode = step}};
command_reply(state, _From, #st{step = Step, state = State, has_state = Has} = St) ->
    {reply, {ok, #{step => Step, has_state => Has, state => limit(State, St),
                   held => St#st.held =/= undefined}}, St};
command_reply(info, _From, St) ->
    {reply, {ok, info(St)}, St};
command_reply(detach, From, St) ->
    {noreply, finish(detached, St#st{waiting = [From]})};
command_reply(_Other, _From, St) ->
    {reply, {error, unknown_command}, St}.

compile(Spec) ->
    try ets:match_spec_compile(Spec) of
        C -> {ok, C}
    catch error:_ -> {error, bad_match_spec}
    end.

compile_cond(undefined) -> {ok, undefined};
compile_cond(Spec) -> compile(Spec).

info(#st{} = St) ->
    #{target => St#st.target, phase => St#st.phase, mode => St#st.mode, step => St#st.step,
      held => St#st.held =/= undefined, breakpoints => [Id || {Id, _, _} <- St#st.breakpoints],
      dropped => St#st.dropped}.

handle_cast(_Msg, St) ->
    {noreply, St}.

handle_info({?TAG, attached, Result}, #st{attach_from = From, phase = Phase} = St) ->
    case Result of
        {ok, _} when Phase =:= ending ->
            gen_server:reply(From, {error, owner_down}),
            {noreply, St#st{attach_from = undefined}};
        {ok, State} ->
            gen_server:reply(From, {ok, #{session => self(), pid => St#st.target,
                                          state => limit(State, St), has_state => true,
                                          hold_ms => St#st.hold_ms}}),
            {noreply, St#st{phase = running, attach_from = undefined, state = State,
                            has_state = true}};
        {error, _} = Error ->
            gen_server:reply(From, Error),
            %% An install that timed out may still be applied later: the
            %% function then finds this session gone and removes itself.
            {stop, normal, St#st{attach_from = undefined}}
    end;
handle_info({?TAG, in, Target, Ref, Flavour, Msg}, #st{target = Target} = St) ->
    {noreply, incoming(Ref, Flavour, Msg, St)};
handle_info({?TAG, in, Other, Ref, _Flavour, _Msg}, St) ->
    Other ! {Ref, go},
    {noreply, St};
handle_info({?TAG, state, Target, State}, #st{target = Target, phase = Phase} = St)
  when Phase =/= ending ->
    St1 = St#st{state = State, has_state = true},
    {noreply, notify({state, #{step => St#st.step, state => limit(State, St1)}}, false, St1)};
handle_info({?TAG, state, _, _}, St) ->
    {noreply, St};
handle_info({hold_timeout, Ref}, #st{held = {_, Ref, Step}} = St) ->
    {_, St1} = release(St),
    {noreply, notify({released, #{step => Step, reason => timeout}}, true, St1#st{mode = run})};
handle_info({hold_timeout, _}, St) ->
    {noreply, St};
handle_info({?TAG, removed}, St) ->
    stop(St);
handle_info({'DOWN', Ref, process, _, Reason}, #st{target_ref = Ref, phase = Phase} = St) ->
    case Phase of
        ending -> stop(St);
        attaching -> {noreply, St};
        running -> stop(St#st{held = undefined, end_reason = {target_down, Reason}})
    end;
handle_info({'DOWN', Ref, process, _, _}, #st{owner_ref = Ref} = St) ->
    {noreply, finish(owner_down, St)};
handle_info(_Other, St) ->
    {noreply, St}.

terminate(_Reason, #st{held = {Target, Ref, _}}) ->
    Target ! {Ref, go},
    ok;
terminate(_Reason, _St) ->
    ok.

%% ------------------------------------------------------------------ holding

incoming(Ref, _Flavour, _Msg, #st{phase = Phase, target = Target} = St) when Phase =/= running ->
    Target ! {Ref, go},
    St;
incoming(Ref, Flavour, Msg, #st{target = Target} = St) ->
    Step = St#st.step + 1,
    {Kind, From, Payload} = payload(Flavour, Msg),
    Hit = hit(Payload, St),
    Hold = St#st.mode =:= step orelse Hit =/= undefined,
    Event = #{step => Step, kind => Kind, from => From, message => limit(Payload, St),
              held => Hold, breakpoint => Hit},
    St1 = St#st{step = Step},
    case Hold of
        false ->
            Target ! {Ref, go},
            notify({in, Event}, false, St1);
        true ->
            Timer = erlang:send_after(St#st.hold_ms, self(), {hold_timeout, Ref}),
            notify({in, Event}, true, St1#st{held = {Target, Ref, Step}, hold_timer = Timer})
    end.

%% The part of a message a user writes a pattern for, and how it came.
payload(gen, {'$gen_call', {From, _Tag}, Request}) -> {call, From, Request};
payload(gen, {'$gen_cast', Msg}) -> {cast, undefined, Msg};
payload(gen, Msg) -> {info, undefined, Msg};
payload(statem, {{call, {From, _Tag}}, Request}) -> {call, From, Request};
payload(statem, {cast, Msg}) -> {cast, undefined, Msg};
payload(statem, {info, Msg}) -> {info, undefined, Msg};
payload(statem, {{timeout, _}, Content}) -> {timeout, undefined, Content};
payload(statem, {Type, Content}) when Type =:= internal; Type =:= timeout; Type =:= state_timeout ->
    {Type, undefined, Content};
payload(_, Msg) -> {info, undefined, Msg}.

%% The first breakpoint whose pattern matches the message and whose condition
%% (if any) matches the last known state.
hit(Payload, #st{breakpoints = Bps, state = State, has_state = Has}) ->
    first([Id || {Id, Spec, Cond} <- Bps,
                 matches(Spec, Payload),
                 Cond =:= undefined orelse (Has andalso matches(Cond, State))]).

first([]) -> undefined;
first([Id | _]) -> Id.

matches(Compiled, Term) ->
    try ets:match_spec_run([[Term]], Compiled) of
        [] -> false;
        [_ | _] -> true
    catch error:_ -> false
    end.

%% Let a held target go: {WasHeld, St}.
release(#st{held = undefined} = St) ->
    {false, St};
release(#st{held = {Target, Ref, _}, hold_timer = Timer} = St) ->
    _ = erlang:cancel_timer(Timer),
    Target ! {Ref, go},
    {true, St#st{held = undefined, hold_timer = undefined}}.

%% ------------------------------------------------------------------ ending

%% Release, then remove the debug function from a helper; the session answers
%% `go' meanwhile (phase ending) and stops when the helper is done.
finish(Reason, St) ->
    {_, St1} = release(St),
    Self = self(),
    Target = St#st.target,
    spawn_link(fun() ->
                       try sys:remove(Target, {?TAG, Self}, ?SYS_TIMEOUT) catch _:_ -> ok end,
                       Self ! {?TAG, removed}
               end),
    St1#st{phase = ending, end_reason = Reason}.

stop(#st{end_reason = Reason, waiting = Waiting} = St) ->
    St1 = notify({ended, #{reason => Reason}}, true, St),
    [gen_server:reply(From, ok) || From <- Waiting],
    {stop, normal, St1#st{held = undefined, waiting = []}}.

%% ------------------------------------------------------------------ to the owner

%% Events to the owner, at most max_events per second unless Always.
notify(Event, Always, #st{owner = Owner, max_events = Max, window = {Second, Count}} = St) ->
    Now = erlang:monotonic_time(second),
    {Second1, Count1} = if Now =:= Second -> {Second, Count}; true -> {Now, 0} end,
    case Always orelse Count1 < Max of
        true ->
            Dropped = St#st.dropped,
            Owner ! {?TAG, self(), Event, Dropped},
            St#st{window = {Second1, Count1 + 1}};
        false ->
            St#st{window = {Second1, Count1}, dropped = St#st.dropped + 1}
    end.

%% A term sent to the owner, replaced by a marker past max_state_bytes.
limit(Term, #st{max_state_bytes = Max}) ->
    case erlang:external_size(Term) of
        Size when Size > Max -> {?TRUNCATED, Size};
        _ -> Term
    end.
