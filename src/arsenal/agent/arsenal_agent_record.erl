%% @doc Recording and replay of gen_server processes (GenServer in Elixir).
%%
%% Recording. A recorder process (one per recording, started by start/3)
%% installs a sys debug function (sys:install/2 with the function id
%% {arsenal_record, Recorder}) in each recorded process. gen_server calls it
%% with {in, Msg} before a message is handled and with {noreply, State} or
%% {out, Reply, To, State} after it, so the function pairs the two and sends
%% the recorder one step: {Seq, TimeUs, Pid, Kind, Message, From, StateAfter,
%% Reply}, Kind being call, cast, info (or continue, for a handle_continue
%% that follows a message). The initial state is read with sys:replace_state
%% and a function that sends the state to the recorder and changes nothing:
%% that message comes from the recorded process itself, so the recorder sees
%% it in order with the steps, and the steps that arrive before it (handled
%% before the read) are not part of the recording.
%%
%% The debug function runs inside the recorded process, so it is cheap and
%% bounded: it counts its steps and removes itself (returns done) past
%% max_steps, when the recorder is gone, or when the recorder's mailbox holds
%% more than ?MAX_QUEUE messages (checked every 64 steps). It is installed as
%% an external fun (fun ?MODULE:hook/3), so reloading the agent never leaves a
%% process holding a fun of purged code.
%%
%% A recording ends on stop/1, max_steps, max_bytes (external size of the
%% steps), its duration, the death of every recorded process (a process that
%% dies gets an {exit, Reason} step, the others go on), or its owner going
%% away (the owner is an Arsenal process on the hidden node, monitored). The
%% recorder then removes every debug function it installed, and sends the
%% owner the recording, term_to_binary compressed, in chunks of at most
%% ?CHUNK bytes: {arsenal_record_chunk, Recorder, Index, Binary}, then
%% {arsenal_record_done, Recorder, Summary}; then it exits, so nothing of the
%% recording stays in the target's memory.
%%
%% Replay. replay/3 re-delivers a plan of messages to a process, one at a
%% time (casts with gen_server:cast, infos with !, calls with gen_server:call
%% from the replaying process), reads the state after each (sys:get_state)
%% and compares it (=:=) with the recorded state, and the reply with the
%% recorded reply. Only the steps that differ carry their actual state back
%% (at most ?MAX_DIFFERENT of them). The plan arrives as an external term
%% format binary: decoded with [safe] on a user's node (no new atom), plainly
%% in an Arsenal sandbox. sandbox_start/2 starts a gen_server from a state
%% without running init/1 (gen_server:enter_loop in a proc_lib process), and
%% module_code/2 reads a module's and its application's object code for a
%% sandbox.
-module(arsenal_agent_record).

-export([start/3, stop/1, status/1, hook/3, replay/3, sandbox_start/2, module_code/2,
         debug_funs/1]).

-define(MAX_STEPS, 100000).
-define(MAX_DURATION_MS, 600000).
-define(MAX_BYTES, 256 * 1024 * 1024).
-define(MAX_TARGETS, 20).
-define(MAX_QUEUE, 100000).
-define(CHUNK, 1048576).
-define(SYS_TIMEOUT, 5000).
-define(MAX_DIFFERENT, 50).
-define(MAX_MODULES, 300).
-define(MAX_CODE_BYTES, 64 * 1024 * 1024).

%% ------------------------------------------------------------------ recording

%% @doc Start recording the processes Targets (pid texts or registered names)
%% for Owner. Limits: #{max_steps, max_bytes, duration_ms}. The reply is
%% {ok, Recorder, [#{pid, module, name}]} once every hook is installed and every
%% initial state read, or {error, Reason} with nothing left installed.
-spec start([binary()], pid(), map()) -> {ok, pid(), [map()]} | {error, term()}.
start(Targets, Owner, Limits) when is_list(Targets), is_pid(Owner), is_map(Limits) ->
    case resolve(Targets, []) of
        {ok, Pids} when length(Pids) >= 1, length(Pids) =< ?MAX_TARGETS ->
            Caller = self(),
            Ref = make_ref(),
            {Recorder, MRef} = spawn_monitor(fun() -> recorder(Caller, Ref, Pids, Owner, limits(Limits)) end),
            receive
                {Ref, Reply} ->
                    erlang:demonitor(MRef, [flush]),
                    Reply;
                {'DOWN', MRef, process, Recorder, Reason} ->
                    {error, {recorder_died, Reason}}
            after 30000 ->
                    exit(Recorder, kill),
                    {error, timeout}
            end;
        {ok, _} ->
            {error, {bad_targets, length(Targets)}};
        Error ->
            Error
    end.

%% @doc Ask a recorder to end; the recording still reaches its owner.
-spec stop(pid()) -> ok | {error, not_found}.
stop(Recorder) when is_pid(Recorder) ->
    case erlang:is_process_alive(Recorder) of
        true -> Recorder ! stop, ok;
        false -> {error, not_found}
    end.

%% @doc Steps and bytes so far: {ok, #{steps, bytes, alive}} or {error, not_found}.
-spec status(pid()) -> {ok, map()} | {error, not_found | timeout}.
status(Recorder) when is_pid(Recorder) ->
    MRef = erlang:monitor(process, Recorder),
    Recorder ! {status, self(), MRef},
    receive
        {MRef, Status} -> erlang:demonitor(MRef, [flush]), {ok, Status};
        {'DOWN', MRef, process, _, _} -> {error, not_found}
    after ?SYS_TIMEOUT ->
            erlang:demonitor(MRef, [flush]),
            {error, timeout}
    end.

%% @doc The sys debug options of a process (the ids of installed debug
%% functions; trace, log, statistics), for tests that check a recording left
%% nothing behind.
-spec debug_funs(binary()) -> {ok, list()} | {error, term()}.
debug_funs(Target) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} ->
            try sys:get_status(Pid, ?SYS_TIMEOUT) of
                {status, _, _, [_PDict, _SysState, _Parent, Debug | _]} ->
                    {ok, [element(1, D) || D <- Debug, is_tuple(D)]}
            catch
                exit:Reason -> {error, {no_status, element(1, Reason)}}
            end;
        Error ->
            Error
    end.

resolve([], Acc) ->
    {ok, lists:reverse(Acc)};
resolve([Target | Rest], Acc) when is_binary(Target) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} ->
            case erlang:is_process_alive(Pid) of
                true -> resolve(Rest, [Pid | Acc]);
                false -> {error, {dead, Pid}}
            end;
        {error, Reason} -> {error, {Reason, Target}}
    end;
resolve(_, _) ->
    {error, bad_targets}.

limits(L) ->
    #{max_steps => bounded(maps:get(max_steps, L, 1000), 1, ?MAX_STEPS),
      max_bytes => bounded(maps:get(max_bytes, L, 16 * 1024 * 1024), 1024, ?MAX_BYTES),
      duration_ms => bounded(maps:get(duration_ms, L, 60000), 10, ?MAX_DURATION_MS)}.

bounded(V, Min, Max) when is_integer(V) -> max(Min, min(Max, V));
bounded(_, _Min, Max) -> Max.

%% Whether Pid is a gen_server (only those carry their state in debug events).
%% A process is only sent a system message when it is certainly in a gen
%% receive loop or hibernating after proc_lib started it: anything else would
%% never answer and keep the message.
kind_of(Pid) ->
    kind_of(Pid, 10).

kind_of(Pid, Tries) ->
    case erlang:process_info(Pid, [current_function, dictionary]) of
        undefined ->
            {error, {dead, Pid}};
        [{current_function, {gen_server, _, _}}, _] ->
            ok;
        [{current_function, {Mod, _, _}}, _] when Mod =:= gen_statem; Mod =:= gen_event; Mod =:= gen_fsm ->
            {error, {not_gen_server, Pid, Mod}};
        [{current_function, {erlang, hibernate, 3}}, _] ->
            case arsenal_agent_proc:answers_sys(Pid) of
                true -> by_status(Pid);
                false -> {error, {not_sys_compliant, Pid}}
            end;
        [{current_function, _}, _] ->
            case Tries > 0 andalso arsenal_agent_proc:answers_sys(Pid) of
                true -> timer:sleep(20), kind_of(Pid, Tries - 1);
                false -> {error, {not_sys_compliant, Pid}}
            end
    end.

by_status(Pid) ->
    try sys:get_status(Pid, ?SYS_TIMEOUT) of
        {status, _, {module, gen_server}, _} -> ok;
        {status, _, {module, Mod}, _} -> {error, {not_gen_server, Pid, Mod}}
    catch
        exit:_ -> {error, {not_sys_compliant, Pid}}
    end.

module_of(Pid) ->
    case proc_lib:translate_initial_call(Pid) of
        {Mod, _, _} -> Mod;
        _ -> undefined
    end.

name_of(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} -> Name;
        _ -> undefined
    end.

-record(rec, {
          owner :: pid(),
          owner_ref :: reference(),
          limits :: map(),
          targets = #{} :: #{pid() => map()},
          alive = [] :: [pid()],
          installed = [] :: [pid()],
          seq = 0 :: non_neg_integer(),
          bytes = 0 :: non_neg_integer(),
          steps = [] :: list(),
          started :: integer()
         }).

recorder(Caller, Ref, Pids, Owner, Limits) ->
    S0 = #rec{owner = Owner, owner_ref = erlang:monitor(process, Owner), limits = Limits,
              started = os:system_time(microsecond)},
    case install_all(Pids, S0) of
        {ok, S1} ->
            Info = [maps:with([pid, module, name], T) || T <- [maps:get(P, S1#rec.targets) || P <- Pids]],
            Caller ! {Ref, {ok, self(), Info}},
            erlang:send_after(maps:get(duration_ms, Limits), self(), duration),
            loop(S1);
        {error, Reason, S1} ->
            remove_hooks(S1),
            Caller ! {Ref, {error, Reason}}
    end.

install_all([], S) ->
    {ok, S};
install_all([Pid | Rest], #rec{limits = L, targets = T, installed = I, alive = A} = S) ->
    case kind_of(Pid) of
        ok ->
            MRef = erlang:monitor(process, Pid),
            Hook = {{arsenal_record, self()}, fun ?MODULE:hook/3,
                    #{rec => self(), n => 0, max => maps:get(max_steps, L), pending => undefined}},
            Target = #{pid => Pid, module => module_of(Pid), name => name_of(Pid), mref => MRef,
                       initial => pending},
            S1 = S#rec{targets = T#{Pid => Target}, installed = [Pid | I], alive = [Pid | A]},
            try
                ok = sys:install(Pid, Hook, ?SYS_TIMEOUT),
                Self = self(),
                _ = sys:replace_state(Pid, fun(State) -> Self ! {arsenal_record_initial, Pid, State}, State end,
                                      ?SYS_TIMEOUT),
                install_all(Rest, S1)
            catch
                exit:{noproc, _} -> {error, {dead, Pid}, S1};
                exit:{timeout, _} -> {error, {timeout, Pid}, S1};
                exit:Reason -> {error, {install_failed, Pid, element(1, Reason)}, S1}
            end;
        Error ->
            {error, element(2, Error), S}
    end.

%% @doc The sys debug function (runs in the recorded process). Not for calling.
-spec hook(map(), term(), term()) -> map() | done.
hook(#{rec := Rec} = FS, {in, Msg}, _ProcState) ->
    case erlang:is_process_alive(Rec) of
        true -> FS#{pending := {os:system_time(microsecond), Msg}};
        false -> done
    end;
hook(FS, {in, Msg, From}, _ProcState) ->
    FS#{pending := {os:system_time(microsecond), {'$gen_call', From, Msg}}};
hook(FS, {noreply, State}, _ProcState) ->
    emit(FS, State, undefined);
hook(FS, {out, Reply, _To, State}, _ProcState) ->
    emit(FS, State, {reply, Reply});
hook(FS, _Event, _ProcState) ->
    FS.

emit(#{rec := Rec, n := N, max := Max, pending := Pending} = FS, State, Reply) ->
    {Time, Kind, Msg, From} =
        case Pending of
            undefined -> {os:system_time(microsecond), continue, undefined, undefined};
            {T, {'$gen_call', F, Req}} -> {T, call, Req, F};
            {T, {'$gen_cast', Req}} -> {T, cast, Req, undefined};
            {T, Info} -> {T, info, Info, undefined}
        end,
    Rec ! {arsenal_record_step, self(), Time, Kind, Msg, From, State, Reply},
    N1 = N + 1,
    if
        N1 >= Max -> done;
        N1 rem 64 =:= 0 ->
            case erlang:process_info(Rec, message_queue_len) of
                {message_queue_len, Q} when Q < ?MAX_QUEUE -> FS#{n := N1, pending := undefined};
                _ -> done
            end;
        true -> FS#{n := N1, pending := undefined}
    end.

loop(S) ->
    receive
        {arsenal_record_initial, Pid, State} ->
            loop(set_initial(Pid, State, S));
        {arsenal_record_step, Pid, Time, Kind, Msg, From, State, Reply} ->
            step(S, Pid, Time, Kind, Msg, From, State, Reply);
        {'DOWN', Ref, process, _, _} when Ref =:= S#rec.owner_ref ->
            finish(S, owner_down);
        {'DOWN', _Ref, process, Pid, Reason} ->
            target_down(S, Pid, Reason);
        {status, From, Ref} ->
            From ! {Ref, #{steps => S#rec.seq, bytes => S#rec.bytes, alive => S#rec.alive}},
            loop(S);
        stop ->
            finish(S, stopped);
        duration ->
            finish(S, duration);
        _ ->
            loop(S)
    end.

set_initial(Pid, State, #rec{targets = T} = S) ->
    case T of
        #{Pid := #{initial := pending} = Target} ->
            S#rec{targets = T#{Pid := Target#{initial := {ok, State}}},
                  bytes = S#rec.bytes + erlang:external_size(State)};
        _ ->
            S
    end.

step(#rec{targets = T, limits = L} = S, Pid, Time, Kind, Msg, From, State, Reply) ->
    case T of
        #{Pid := #{initial := {ok, _}}} ->
            Seq = S#rec.seq + 1,
            Step = {Seq, Time, Pid, Kind, Msg, From, State, Reply},
            Bytes = S#rec.bytes + erlang:external_size(Step),
            S1 = S#rec{seq = Seq, bytes = Bytes, steps = [Step | S#rec.steps]},
            if
                Bytes >= map_get(max_bytes, L) -> finish(S1, max_bytes);
                Seq >= map_get(max_steps, L) -> finish(S1, max_steps);
                true -> loop(S1)
            end;
        _ ->
            %% Handled before the initial state was read: not part of the recording.
            loop(S)
    end.

target_down(#rec{alive = Alive} = S, Pid, Reason) ->
    case lists:member(Pid, Alive) of
        false ->
            loop(S);
        true ->
            Seq = S#rec.seq + 1,
            Step = {Seq, os:system_time(microsecond), Pid, exit, Reason, undefined, undefined, undefined},
            S1 = S#rec{seq = Seq, steps = [Step | S#rec.steps], alive = lists:delete(Pid, Alive),
                       bytes = S#rec.bytes + erlang:external_size(Step)},
            case S1#rec.alive of
                [] -> finish(S1, processes_exited);
                _ -> loop(S1)
            end
    end.

remove_hooks(#rec{installed = Installed}) ->
    [try sys:remove(Pid, {arsenal_record, self()}, ?SYS_TIMEOUT) catch _:_ -> ok end
     || Pid <- Installed, erlang:is_process_alive(Pid)],
    ok.

%% Remove the hooks, take in the steps sent before their removal (within the
%% limits), and hand the recording to the owner.
finish(S0, Reason) ->
    remove_hooks(S0),
    S = drain(S0),
    case Reason of
        owner_down ->
            exit(normal);
        _ ->
            Targets = [target_info(T) || T <- maps:values(S#rec.targets)],
            Recording = #{version => 1, node => node(), started_us => S#rec.started,
                          ended_us => os:system_time(microsecond), end_reason => Reason,
                          targets => Targets, steps => lists:reverse(S#rec.steps),
                          limits => S#rec.limits},
            Bin = term_to_binary(Recording, [{compressed, 6}]),
            N = send_chunks(S#rec.owner, Bin, 0),
            S#rec.owner ! {arsenal_record_done, self(),
                           #{end_reason => Reason, steps => S#rec.seq, bytes => S#rec.bytes,
                             chunks => N, size => byte_size(Bin)}},
            exit(normal)
    end.

drain(#rec{limits = L} = S) ->
    receive
        {arsenal_record_step, Pid, Time, Kind, Msg, From, State, Reply}
          when S#rec.seq < map_get(max_steps, L), S#rec.bytes < map_get(max_bytes, L) ->
            #rec{targets = T} = S,
            case T of
                #{Pid := #{initial := {ok, _}}} ->
                    Seq = S#rec.seq + 1,
                    Step = {Seq, Time, Pid, Kind, Msg, From, State, Reply},
                    drain(S#rec{seq = Seq, bytes = S#rec.bytes + erlang:external_size(Step),
                                steps = [Step | S#rec.steps]});
                _ ->
                    drain(S)
            end
    after 0 ->
            S
    end.

target_info(#{pid := Pid, module := Mod, name := Name, initial := Initial}) ->
    #{pid => Pid, module => Mod, name => Name,
      initial_state => case Initial of {ok, State} -> State; pending -> undefined end}.

send_chunks(Owner, Bin, I) when byte_size(Bin) =< ?CHUNK ->
    Owner ! {arsenal_record_chunk, self(), I, Bin},
    I + 1;
send_chunks(Owner, Bin, I) ->
    <<Chunk:?CHUNK/binary, Rest/binary>> = Bin,
    Owner ! {arsenal_record_chunk, self(), I, Chunk},
    send_chunks(Owner, Rest, I + 1).

%% ------------------------------------------------------------------ replay

%% @doc Replay a plan into Target. PlanBin is term_to_binary of
%% #{initial => {state, State} | keep, steps => [{Index, Kind, Message, Expect}],
%% call_timeout => Ms, ignore => [Path]}, a Path being a list of '*' (every
%% element or value), integers (0-based positions) and {key, Key}: the parts
%% of the states compared as equal whatever they hold (timestamps). Expect being {State, Reply} (Reply: undefined or
%% {reply, R}) or none (an inserted message: not compared). Safe =:= true
%% decodes it without creating atoms. The reply: {ok, #{results => [Result],
%% different => N, ended => completed | {exited, Reason} | {call_failed, ...}}},
%% Result = {Index, same} | {Index, not_compared} |
%% {Index, different, StateDiffers, ActualState, ReplyDiffers, ActualReply}.
-spec replay(binary(), binary(), boolean()) -> {ok, map()} | {error, term()}.
replay(Target, PlanBin, Safe) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} ->
            try binary_to_term(PlanBin, case Safe of true -> [safe]; false -> [] end) of
                Plan when is_map(Plan) -> replay_plan(Pid, Plan);
                _ -> {error, bad_plan}
            catch
                error:badarg -> {error, unknown_atoms}
            end;
        Error ->
            Error
    end.

replay_plan(Pid, Plan) ->
    case kind_of(Pid) of
        ok ->
            MRef = erlang:monitor(process, Pid),
            Result = case restore(Pid, maps:get(initial, Plan, keep)) of
                         ok ->
                             put(arsenal_record_ignore, maps:get(ignore, Plan, [])),
                             deliver_all(Pid, MRef, maps:get(steps, Plan, []),
                                         maps:get(call_timeout, Plan, 5000), [], 0);
                         Error -> Error
                     end,
            erlang:demonitor(MRef, [flush]),
            Result;
        Error ->
            Error
    end.

restore(_Pid, keep) ->
    ok;
restore(Pid, {state, State}) ->
    try sys:replace_state(Pid, fun(_) -> State end, ?SYS_TIMEOUT) of
        _ -> ok
    catch
        exit:Reason -> {error, {replace_state_failed, element(1, Reason)}}
    end.

deliver_all(_Pid, _MRef, [], _Timeout, Acc, Different) ->
    {ok, #{results => lists:reverse(Acc), different => Different, ended => completed}};
deliver_all(Pid, MRef, [{Index, Kind, Msg, Expect} | Rest], Timeout, Acc, Different) ->
    case deliver(Pid, Kind, Msg, Timeout) of
        {ok, Reply} ->
            case read_state(Pid, MRef) of
                {ok, State} ->
                    {Result, D} = compare(Index, Expect, State, Reply, Different),
                    deliver_all(Pid, MRef, Rest, Timeout, [Result | Acc], D);
                {exited, Reason} ->
                    ended(Acc, Different, {exited, Index, Reason})
            end;
        {exited, Reason} ->
            ended(Acc, Different, {exited, Index, Reason});
        {call_failed, Reason} ->
            ended(Acc, Different, {call_failed, Index, Reason})
    end.

ended(Acc, Different, How) ->
    {ok, #{results => lists:reverse(Acc), different => Different, ended => How}}.

deliver(Pid, call, Msg, Timeout) ->
    try gen_server:call(Pid, Msg, Timeout) of
        Reply -> {ok, {reply, Reply}}
    catch
        exit:{noproc, _} -> {exited, noproc};
        exit:{timeout, _} -> {call_failed, timeout};
        exit:{Reason, _} -> {exited, Reason}
    end;
deliver(Pid, cast, Msg, _Timeout) ->
    gen_server:cast(Pid, Msg),
    {ok, undefined};
deliver(Pid, _Info, Msg, _Timeout) ->
    Pid ! Msg,
    {ok, undefined}.

read_state(Pid, MRef) ->
    try sys:get_state(Pid, ?SYS_TIMEOUT) of
        State -> {ok, State}
    catch
        exit:_ ->
            receive
                {'DOWN', MRef, process, Pid, Reason} -> {exited, Reason}
            after 1000 -> {exited, no_answer}
            end
    end.

compare(Index, none, _State, _Reply, D) ->
    {{Index, not_compared}, D};
compare(Index, {Expected, ExpectedReply}, State, Reply, D) ->
    Ignore = get(arsenal_record_ignore),
    StateDiffers = ignoring(Expected, Ignore) =/= ignoring(State, Ignore),
    ReplyDiffers = ExpectedReply =/= Reply,
    case StateDiffers orelse ReplyDiffers of
        false -> {{Index, same}, D};
        true when D < ?MAX_DIFFERENT -> {{Index, different, StateDiffers, State, ReplyDiffers, Reply}, D + 1};
        true -> {{Index, different, StateDiffers, truncated, ReplyDiffers, truncated}, D + 1}
    end.

ignoring(Term, []) -> Term;
ignoring(Term, [Path | Rest]) -> ignoring(blank(Term, Path), Rest).

%% Term with what Path names replaced by one marker.
blank(_Term, []) ->
    '$arsenal_ignored';
blank(Map, ['*' | Rest]) when is_map(Map) ->
    maps:map(fun(_, V) -> blank(V, Rest) end, Map);
blank(Map, [{key, K} | Rest]) when is_map(Map) ->
    case Map of
        #{K := V} -> Map#{K := blank(V, Rest)};
        _ -> Map
    end;
blank(List, ['*' | Rest]) when is_list(List) ->
    blank_list(List, fun(E) -> blank(E, Rest) end);
blank(List, [I | Rest]) when is_list(List), is_integer(I), I >= 0 ->
    try lists:split(I, List) of
        {Before, [E | After]} -> Before ++ [blank(E, Rest) | After];
        _ -> List
    catch
        error:_ -> List
    end;
blank(Tuple, ['*' | Rest]) when is_tuple(Tuple) ->
    list_to_tuple([blank(E, Rest) || E <- tuple_to_list(Tuple)]);
blank(Tuple, [I | Rest]) when is_tuple(Tuple), is_integer(I), I >= 0, I < tuple_size(Tuple) ->
    setelement(I + 1, Tuple, blank(element(I + 1, Tuple), Rest));
blank(Term, _Path) ->
    Term.

%% Improper lists are left as they are.
blank_list(List, F) ->
    try lists:map(F, List)
    catch
        error:_ -> List
    end.

%% @doc Start a gen_server of Module with State, without init/1 (for a
%% sandbox): {ok, Pid}. The process is not linked to the caller.
-spec sandbox_start(atom(), binary()) -> {ok, pid()} | {error, term()}.
sandbox_start(Module, StateBin) when is_atom(Module), is_binary(StateBin) ->
    case code:ensure_loaded(Module) of
        {module, Module} ->
            State = binary_to_term(StateBin),
            Pid = proc_lib:spawn(fun() -> gen_server:enter_loop(Module, [], State) end),
            {ok, Pid};
        {error, Reason} ->
            {error, {not_loaded, Module, Reason}}
    end.

%% @doc The object code of Module and of the other modules of its application
%% (at most ?MAX_MODULES, ?MAX_CODE_BYTES in all):
%% {ok, [{Module, File, Binary}]} or {error, Reason}.
-spec module_code(binary(), boolean()) -> {ok, list()} | {error, term()}.
module_code(ModBin, WithApp) ->
    try binary_to_existing_atom(ModBin, utf8) of
        Mod ->
            Mods = case WithApp andalso application:get_application(Mod) of
                       {ok, App} ->
                           case application:get_key(App, modules) of
                               {ok, Ms} -> [Mod | lists:delete(Mod, Ms)];
                               _ -> [Mod]
                           end;
                       _ -> [Mod]
                   end,
            collect_code(lists:sublist(Mods, ?MAX_MODULES), 0, [])
    catch
        error:badarg -> {error, {unknown_module, ModBin}}
    end.

collect_code([], _Size, Acc) ->
    {ok, lists:reverse(Acc)};
collect_code([Mod | Rest], Size, Acc) ->
    case code:get_object_code(Mod) of
        {Mod, Bin, File} when Size + byte_size(Bin) =< ?MAX_CODE_BYTES ->
            collect_code(Rest, Size + byte_size(Bin), [{Mod, File, Bin} | Acc]);
        {Mod, _Bin, _File} ->
            {error, {code_too_large, Size}};
        error when Acc =:= [] ->
            {error, {no_object_code, Mod}};
        error ->
            collect_code(Rest, Size, Acc)
    end.
