%% @doc Arsenal's agent for moving a gen_server to another node with its state.
%%
%% migrate/3 runs on the source node. It starts a coordinator process (not
%% linked to the erpc call that asked, so a caller that times out or goes away
%% never leaves a migration half done) and waits for its outcome. The
%% coordinator works in bounded steps, each with the step timeout:
%%
%%   check     the process is a gen_server (sys:get_status says so), started
%%             without a link (its parent is itself: a supervisor would restart
%%             it on the source), its callback module exists on the target with
%%             the same md5, the target's agent is this one, the target is
%%             connected. A failure here changes nothing.
%%   suspend   sys:suspend: the process stops handling messages; what arrives
%%             queues in its mailbox.
%%   get_state sys:get_state, and its process dictionary (proc_lib's keys
%%             excepted); refused above max_state_bytes (external size).
%%   start     proc_lib:spawn on the target of new_server/5, which waits for its
%%             state (and exits by itself if it never comes).
%%   handover  the state is sent to it; it loads the module if needed (md5
%%             checked again), registers the process's local name on the target
%%             (so a name taken there fails this step: the only race-free
%%             check), takes the old dictionary and '$initial_call', and enters
%%             gen_server:enter_loop: init/1 never runs.
%%   switch    every global name of the process is moved with
%%             global:re_register_name and checked with global:whereis_name.
%%   forward   inside the old process (sys:replace_state with a function that
%%             does not change the state): its local name is unregistered, its
%%             mailbox is forwarded in order to the new process (at most
%%             max_forward messages), then a sys:get_state on the new process
%%             makes sure every forwarded call was answered before the old one
%%             stops, then what arrived meanwhile is forwarded too.
%%   stop      sys:terminate(Old, normal): its terminate/2 runs; if it does not
%%             stop in time it is killed.
%%
%% Strategy stop_then_start does the steps in that order. start_then_switch
%% starts the new process first (spawned on the target and waiting), and only
%% then suspends the old one: the old process is paused for the shortest time,
%% and a target that cannot start a process fails before the old one is
%% touched.
%%
%% Rollback: a failure in any step up to and including switch puts everything
%% back: global names re-registered to the old process, the new process killed
%% (it has received no message: nobody knew it), the old one resumed. After
%% switch one failure still rolls back: the new process dying (its node went
%% down) before it confirmed the forwarded messages; the old process, which
%% still holds the state, gets its names back and is resumed, and the
%% forwarded messages are lost (reported as lost). Otherwise the outcome
%% reports what it could not do (a forwarded call not confirmed in time, a
%% kill).
%%
%% Callers: a gen_server:call already queued in the old mailbox is forwarded
%% with its From, so the new process replies to the original caller (across
%% nodes too) before the old one stops. A call that reaches the old pid after
%% the forward fails when the old process stops (its monitor fires: exit
%% normal). Senders by local name on the source node find no process after the
%% forward (the name lives on the target now); by global name they reach the
%% new process from the switch on. Links, monitors, timers, ETS tables and
%% ports of the old process do not move.
%%
%% Safety: the process and node arrive as binaries (resolved with existing
%% atoms; the node must be connected). The target gets the atoms of the
%% process's own name, module and state, never of request data.
-module(arsenal_agent_migrate).

-export([migrate/3, module_md5/1, module_md5s/1, locate_global/1, new_server/5, movable/1]).

-define(DEFAULT_STEP_MS, 5000).
-define(MAX_STEP_MS, 30000).
-define(DEFAULT_MAX_FORWARD, 10000).
-define(MAX_FORWARD, 100000).
-define(DEFAULT_MAX_STATE, 16 * 1024 * 1024).
-define(MAX_GLOBAL_SCAN, 20000).
-define(MAX_GLOBAL_NAMES, 20).
-define(MAX_MOVABLE, 500).
-define(MAX_REGISTERED_SCAN, 20000).

%% ------------------------------------------------------------------ migrate

%% @doc Move the gen_server Ref names (<<"<0.1.2>">>, a local name, or with
%% #{global := true} a global name) to the node NodeBin. Opts (all optional):
%% strategy (<<"stop_then_start">> | <<"start_then_switch">>), step_timeout_ms,
%% max_forward, max_state_bytes, global. Returns {ok, Outcome} or
%% {error, #{reason, step, steps, rollback}}; both list the steps with timings.
-spec migrate(binary(), binary(), map()) -> {ok, map()} | {error, map()}.
migrate(Ref, NodeBin, Opts) when is_binary(Ref), is_binary(NodeBin), is_map(Opts) ->
    StepMs = step_ms(Opts),
    Caller = self(),
    Tag = make_ref(),
    {Coordinator, MRef} =
        spawn_monitor(fun() -> Caller ! {Tag, coordinate(Ref, NodeBin, Opts, StepMs)} end),
    receive
        {Tag, Outcome} ->
            erlang:demonitor(MRef, [flush]),
            Outcome;
        {'DOWN', MRef, process, Coordinator, Reason} ->
            {error, #{reason => {coordinator_died, Reason}, step => unknown, steps => [],
                      rollback => []}}
    after 12 * StepMs + 2000 ->
            %% The coordinator goes on to its end (each step is bounded).
            erlang:demonitor(MRef, [flush]),
            {error, #{reason => timeout, step => unknown, steps => [], rollback => []}}
    end.

step_ms(Opts) ->
    case maps:get(step_timeout_ms, Opts, ?DEFAULT_STEP_MS) of
        Ms when is_integer(Ms), Ms >= 100, Ms =< ?MAX_STEP_MS -> Ms;
        _ -> ?DEFAULT_STEP_MS
    end.

coordinate(Ref, NodeBin, Opts, StepMs) ->
    M0 = #{step_ms => StepMs, steps => [], rollback => [], suspended => false, new => undefined,
           switched => [], tag => make_ref(),
           strategy => strategy(maps:get(strategy, Opts, <<"stop_then_start">>)),
           max_forward => bounded(maps:get(max_forward, Opts, ?DEFAULT_MAX_FORWARD), ?MAX_FORWARD),
           max_state => bounded(maps:get(max_state_bytes, Opts, ?DEFAULT_MAX_STATE), 1 bsl 30)},
    try
        M1 = step(check, fun(M) -> check(Ref, NodeBin, maps:get(global, Opts, false), M) end, M0),
        M2 = case maps:get(strategy, M1) of
                 stop_then_start ->
                     lists:foldl(fun({Name, F}, Acc) -> step(Name, F, Acc) end, M1,
                                 [{suspend, fun suspend/1}, {get_state, fun get_state/1},
                                  {start, fun spawn_new/1}, {handover, fun handover/1},
                                  {switch, fun switch/1}]);
                 start_then_switch ->
                     lists:foldl(fun({Name, F}, Acc) -> step(Name, F, Acc) end, M1,
                                 [{start, fun spawn_new/1}, {suspend, fun suspend/1},
                                  {get_state, fun get_state/1}, {handover, fun handover/1},
                                  {switch, fun switch/1}])
             end,
        M3 = step(forward, fun forward/1, M2),
        M4 = step(stop, fun stop_old/1, M3),
        {ok, outcome(M4)}
    catch
        throw:{failed, Step, Reason, MF} ->
            MR = rollback(MF),
            {error, #{reason => Reason, step => Step, steps => lists:reverse(maps:get(steps, MR)),
                      rollback => lists:reverse(maps:get(rollback, MR)),
                      old => maps:get(old, MR, undefined), new => maps:get(new, MR),
                      lost => maps:get(forwarded, MR, 0)}}
    end.

strategy(<<"start_then_switch">>) -> start_then_switch;
strategy(_) -> stop_then_start.

bounded(N, Max) when is_integer(N), N >= 0 -> min(N, Max);
bounded(_, Max) -> Max.

%% Run one step, timing it; {error, Reason} (or {error, Reason, M1}: with what
%% the step did before failing, for the rollback) fails the migration.
step(Name, F, M) ->
    T0 = erlang:monotonic_time(microsecond),
    Result = try F(M)
             catch Class:Why -> {error, {Class, Why}}
             end,
    Us = erlang:monotonic_time(microsecond) - T0,
    case Result of
        {ok, M1} ->
            M1#{steps := [#{step => Name, us => Us, ok => true} | maps:get(steps, M1)]};
        {error, Reason} ->
            failed(Name, Reason, Us, M);
        {error, Reason, M1} ->
            failed(Name, Reason, Us, M1)
    end.

failed(Name, Reason, Us, M) ->
    throw({failed, Name, Reason,
           M#{steps := [#{step => Name, us => Us, ok => false} | maps:get(steps, M)]}}).

%% ------------------------------------------------------------------ steps

check(Ref, NodeBin, Global, M) ->
    case resolve(Ref, Global) of
        {ok, Old} ->
            case target_node(NodeBin) of
                {ok, Node} -> check_process(Old, Node, M);
                Error -> Error
            end;
        Error ->
            Error
    end.

resolve(Ref, true) ->
    case global_name(Ref) of
        {ok, _Name, Pid} -> local_pid(Pid);
        Error -> Error
    end;
resolve(Ref, _) ->
    case arsenal_agent:target(Ref) of
        {ok, Pid} -> local_pid(Pid);
        {error, Reason} -> {error, Reason}
    end.

local_pid(Pid) when is_pid(Pid), node(Pid) =:= node() ->
    case is_process_alive(Pid) of
        true -> {ok, Pid};
        false -> {error, not_found}
    end;
local_pid(Pid) when is_pid(Pid) -> {error, {on_other_node, node(Pid)}};
local_pid(_) -> {error, not_a_process}.

%% A global name given as text: an existing atom, else compared with the text
%% of each registered global name (at most ?MAX_GLOBAL_SCAN of them).
global_name(Bin) ->
    Atom = try binary_to_existing_atom(Bin, utf8) catch error:badarg -> undefined end,
    case Atom =/= undefined andalso global:whereis_name(Atom) of
        Pid when is_pid(Pid) -> {ok, Atom, Pid};
        _ ->
            Names = lists:sublist(global:registered_names(), ?MAX_GLOBAL_SCAN),
            case [N || N <- Names, name_text(N) =:= Bin] of
                [Name | _] ->
                    case global:whereis_name(Name) of
                        Pid when is_pid(Pid) -> {ok, Name, Pid};
                        _ -> {error, not_found}
                    end;
                [] -> {error, not_found}
            end
    end.

name_text(Name) -> unicode:characters_to_binary(io_lib:format("~0tp", [Name])).

name_bin(Name) when is_atom(Name) -> atom_to_binary(Name, utf8);
name_bin(Name) -> name_text(Name).

target_node(Bin) ->
    try binary_to_existing_atom(Bin, utf8) of
        Node when Node =:= node() -> {error, same_node};
        Node ->
            case lists:member(Node, nodes()) of
                true -> {ok, Node};
                false -> {error, {not_connected, Node}}
            end
    catch error:badarg -> {error, unknown_node}
    end.

check_process(Old, Node, M) ->
    StepMs = maps:get(step_ms, M),
    Info = erlang:process_info(Old, [registered_name, dictionary]),
    case Info of
        undefined -> {error, not_found};
        [{registered_name, Local}, {dictionary, Dict}] ->
            case proplists:get_value('$initial_call', Dict) of
                {Mod, init, 1} = Initial when is_atom(Mod) ->
                    case status(Old, StepMs) of
                        {ok, Old} ->
                            check_target(Node, Mod, M#{old => Old, node => Node, module => Mod,
                                                       initial_call => Initial,
                                                       local => local_name(Local),
                                                       globals => global_names(Old)});
                        {ok, Parent} ->
                            {error, {supervised, Parent}};
                        Error ->
                            Error
                    end;
                _ ->
                    {error, {not_gen_server, not_proc_lib}}
            end
    end.

local_name([]) -> undefined;
local_name(Name) -> Name.

%% The parent of a gen_server (itself when started without a link). A process
%% that does not handle system messages is not asked (it would keep the
%% request in its mailbox for good).
status(Pid, StepMs) ->
    case arsenal_agent_proc:answers_sys(Pid) of
        true -> sys_status(Pid, StepMs);
        false -> {error, {not_gen_server, no_sys}}
    end.

sys_status(Pid, StepMs) ->
    try sys:get_status(Pid, StepMs) of
        {status, Pid, {module, gen_server}, [_PDict, _SysState, Parent | _]} -> {ok, Parent};
        {status, Pid, {module, Other}, _} -> {error, {not_gen_server, Other}};
        _ -> {error, {not_gen_server, unknown}}
    catch
        exit:{timeout, _} -> {error, {not_responding, get_status}};
        exit:{noproc, _} -> {error, not_found};
        _:_ -> {error, {not_gen_server, no_sys}}
    end.

global_names(Pid) ->
    Names = lists:sublist(global:registered_names(), ?MAX_GLOBAL_SCAN),
    lists:sublist([N || N <- Names, global:whereis_name(N) =:= Pid], ?MAX_GLOBAL_NAMES).

check_target(Node, Mod, M) ->
    Agent = ?MODULE:module_info(md5),
    Source = Mod:module_info(md5),
    try erpc:call(Node, ?MODULE, module_md5, [atom_to_binary(Mod, utf8)], maps:get(step_ms, M)) of
        {ok, Source, Agent} -> {ok, M#{md5 => Source}};
        {ok, Other, Agent} -> {error, {module_differs, Mod, Source, Other}};
        {error, missing, Agent} -> {error, {module_missing, Mod}};
        {error, Reason, Agent} -> {error, {module_unreadable, Mod, Reason}};
        _ -> {error, {agent_differs, Node}}
    catch
        error:{erpc, noconnection} -> {error, {unreachable, Node}};
        error:{erpc, timeout} -> {error, {unreachable, Node}};
        error:{exception, undef, _} -> {error, {agent_missing, Node}};
        Class:Why -> {error, {unreachable, Node, {Class, Why}}}
    end.

suspend(M = #{old := Old, step_ms := StepMs}) ->
    try sys:suspend(Old, StepMs) of
        ok -> {ok, M#{suspended := true}}
    catch
        exit:{timeout, _} ->
            %% The suspend request is still queued and will be handled: the
            %% rollback's resume is queued after it.
            {error, {not_responding, suspend}, M#{suspended := true}};
        exit:{noproc, _} ->
            {error, not_found}
    end.

get_state(M = #{old := Old, step_ms := StepMs, max_state := Max}) ->
    try sys:get_state(Old, StepMs) of
        State ->
            {dictionary, Dict} = erlang:process_info(Old, dictionary),
            Keep = [KV || {K, _} = KV <- Dict, K =/= '$ancestors', K =/= '$initial_call'],
            case erlang:external_size({State, Keep}) of
                Size when Size > Max -> {error, {state_too_large, Size, Max}};
                Size -> {ok, M#{state => State, dict => Keep, state_bytes => Size}}
            end
    catch
        exit:{timeout, _} -> {error, {not_responding, get_state}};
        exit:{noproc, _} -> {error, not_found}
    end.

%% The new process on the target, waiting for its state (for at most a few
%% step timeouts: it exits by itself if never handed one).
spawn_new(M = #{node := Node, module := Mod, initial_call := Initial, tag := Tag,
                step_ms := StepMs}) ->
    New = proc_lib:spawn(Node, ?MODULE, new_server, [self(), Tag, Mod, Initial, 4 * StepMs]),
    NRef = erlang:monitor(process, New),
    {ok, M#{new := New, new_ref => NRef}}.

handover(M = #{new := New, new_ref := NRef, tag := Tag, step_ms := StepMs, local := Local,
               state := State, dict := Dict, md5 := Md5}) ->
    New ! {Tag, start, State, Dict, Local, Md5},
    receive
        {Tag, New, started} -> {ok, M};
        {Tag, New, {error, Reason}} -> {error, Reason};
        {'DOWN', NRef, process, New, Reason} -> {error, {new_process_died, Reason}}
    after StepMs ->
            {error, {not_responding, new_process}}
    end.

switch(M = #{globals := Globals}) ->
    switch(Globals, M).

%% Last chance to roll back: the new process must still be running.
switch([], M = #{new := New, new_ref := NRef}) ->
    receive
        {'DOWN', NRef, process, New, Reason} -> {error, {new_process_died, Reason}, M}
    after 0 ->
            {ok, M}
    end;
switch([Name | Rest], M = #{new := New, switched := Done, step_ms := StepMs}) ->
    %% Recorded before the call: a timeout may still have moved it.
    M1 = M#{switched := [Name | Done]},
    case with_timeout(fun() -> global:re_register_name(Name, New) end, StepMs) of
        {ok, yes} ->
            case global:whereis_name(Name) of
                New -> switch(Rest, M1);
                Other -> {error, {global_name_moved, Name, Other}, M1}
            end;
        {ok, Other} -> {error, {global_name, Name, Other}, M1};
        {error, Reason} -> {error, {global_name, Name, Reason}, M1}
    end.

with_timeout(F, Ms) ->
    Tag = make_ref(),
    Self = self(),
    {Pid, MRef} = spawn_monitor(fun() -> Self ! {Tag, F()} end),
    receive
        {Tag, Value} -> erlang:demonitor(MRef, [flush]), {ok, Value};
        {'DOWN', MRef, process, Pid, Reason} -> {error, Reason}
    after Ms ->
            exit(Pid, kill),
            erlang:demonitor(MRef, [flush]),
            {error, timeout}
    end.

forward(M = #{old := Old, new := New, tag := Tag, step_ms := StepMs, max_forward := Max,
              local := Local}) ->
    Self = self(),
    Drain = fun(State) ->
                    drain(Self, Tag, New, Local, Max, StepMs),
                    State
            end,
    Counts = try sys:replace_state(Old, Drain, 3 * StepMs) of
                 _ ->
                     receive {Tag, forwarded, Forwarded, Left, Synced} ->
                             #{forwarded => Forwarded, left_behind => Left, synced => Synced}
                     after 0 -> #{forwarded => 0, left_behind => 0, synced => false}
                     end
             catch _:Why ->
                     #{forwarded => 0, left_behind => unknown, synced => false,
                       warning => {forward_failed, Why}}
             end,
    M1 = maps:merge(M#{unregistered => true}, Counts),
    case maps:get(synced, Counts) of
        true -> {ok, M1};
        false -> new_still_running(M1)
    end.

%% The new process did not confirm it handled what was forwarded: if it died
%% (its node went down mid-way), the old one still holds the state, so roll
%% back rather than lose the process; the forwarded messages are lost.
new_still_running(M = #{new := New, new_ref := NRef, step_ms := StepMs}) ->
    receive
        {'DOWN', NRef, process, New, Reason} -> {error, {new_process_died, Reason}, M}
    after min(StepMs, 1000) ->
            {ok, M}
    end.

%% Runs inside the old process (suspended): no message it handles is lost.
drain(Coordinator, Tag, New, Local, Max, StepMs) ->
    _ = Local =/= undefined andalso whereis(Local) =:= self() andalso unregister(Local),
    First = forward_queue(New, Max, 0),
    Synced = try sys:get_state(New, StepMs) of _ -> true
             catch _:_ -> false
             end,
    All = forward_queue(New, Max, First),
    {message_queue_len, Left} = erlang:process_info(self(), message_queue_len),
    Coordinator ! {Tag, forwarded, All, Left, Synced}.

forward_queue(_New, Max, N) when N >= Max ->
    N;
forward_queue(New, Max, N) ->
    receive
        Message ->
            New ! Message,
            forward_queue(New, Max, N + 1)
    after 0 ->
            N
    end.

stop_old(M = #{old := Old, step_ms := StepMs}) ->
    How = try sys:terminate(Old, normal, StepMs) of
              ok -> stopped
          catch
              exit:{noproc, _} -> stopped;
              exit:{normal, _} -> stopped;
              _:_ ->
                  exit(Old, kill),
                  killed
          end,
    {ok, M#{suspended := false, stopped => How}}.

outcome(M = #{old := Old, new := New, node := Node, strategy := Strategy}) ->
    #{old => Old, new => New, node => Node, strategy => Strategy,
      module => maps:get(module, M), local => maps:get(local, M),
      globals => maps:get(globals, M), state_bytes => maps:get(state_bytes, M),
      forwarded => maps:get(forwarded, M), left_behind => maps:get(left_behind, M),
      calls_synced => maps:get(synced, M), stopped => maps:get(stopped, M),
      warning => maps:get(warning, M, undefined),
      steps => lists:reverse(maps:get(steps, M))}.

%% ------------------------------------------------------------------ rollback

%% Undo in reverse: global names back to the old process, the new process
%% killed (and seen to go, so its local name is free), the old one resumed.
rollback(M) ->
    M1 = undo(regive, M),
    M2 = undo(kill_new, M1),
    M3 = undo(reregister, M2),
    undo(resume, M3).

undo(What, M) ->
    T0 = erlang:monotonic_time(microsecond),
    case undo_step(What, M) of
        skip ->
            M;
        Result ->
            Us = erlang:monotonic_time(microsecond) - T0,
            M#{rollback := [#{step => What, us => Us, ok => Result =:= ok, result => Result}
                            | maps:get(rollback, M)]}
    end.

undo_step(regive, #{switched := []}) ->
    skip;
undo_step(regive, #{switched := Names, old := Old, step_ms := StepMs}) ->
    Results = [with_timeout(fun() -> global:re_register_name(N, Old) end, StepMs) || N <- Names],
    case lists:all(fun(R) -> R =:= {ok, yes} end, Results) of
        true -> ok;
        false -> {failed, Results}
    end;
undo_step(kill_new, #{new := undefined}) ->
    skip;
undo_step(kill_new, #{new := New, step_ms := StepMs} = M) ->
    erlang:demonitor(maps:get(new_ref, M), [flush]),
    exit(New, kill),
    %% A fresh monitor: DOWN at once (noproc) if it is already gone.
    NRef = erlang:monitor(process, New),
    receive
        {'DOWN', NRef, process, New, _} -> ok
    after StepMs -> {failed, not_seen_to_exit}
    end;
undo_step(reregister, #{unregistered := true, local := Local, old := Old}) when Local =/= undefined ->
    try register(Local, Old) of
        true -> ok
    catch error:badarg -> {failed, {name_taken, whereis(Local)}}
    end;
undo_step(reregister, _) ->
    skip;
undo_step(resume, #{suspended := false}) ->
    skip;
undo_step(resume, #{old := Old, step_ms := StepMs}) ->
    try sys:resume(Old, StepMs) of
        ok -> ok
    catch _:Why -> {failed, Why}
    end.

%% ------------------------------------------------------------------ the new process

%% @doc The new process on the target (spawned by the coordinator with
%% proc_lib, so gen_server accepts it): waits for its state, registers the
%% local name, then becomes the gen_server without running init/1. It looks
%% like the old one: same '$initial_call', same dictionary, its own parent.
-spec new_server(pid(), reference(), module(), mfa(), pos_integer()) -> ok | no_return().
new_server(Coordinator, Tag, Mod, Initial, Wait) ->
    CRef = erlang:monitor(process, Coordinator),
    receive
        {Tag, start, State, Dict, Local, Md5} ->
            erlang:demonitor(CRef, [flush]),
            enter(Coordinator, Tag, Mod, Initial, State, Dict, Local, Md5);
        {'DOWN', CRef, process, Coordinator, _} ->
            ok
    after Wait ->
            ok
    end.

%% The module is loaded here if it was not (its md5 was checked on the file:
%% checked again once loaded).
enter(Coordinator, Tag, Mod, Initial, State, Dict, Local, Md5) ->
    case code:ensure_loaded(Mod) =:= {module, Mod} andalso Mod:module_info(md5) of
        Md5 ->
            case register_local(Local) of
                ok ->
                    _ = [put(K, V) || {K, V} <- Dict],
                    put('$ancestors', [self()]),
                    put('$initial_call', Initial),
                    Coordinator ! {Tag, self(), started},
                    case Local of
                        undefined -> gen_server:enter_loop(Mod, [], State);
                        _ -> gen_server:enter_loop(Mod, [], State, {local, Local})
                    end;
                {error, Reason} ->
                    Coordinator ! {Tag, self(), {error, Reason}}
            end;
        false ->
            Coordinator ! {Tag, self(), {error, {module_not_loadable, Mod}}};
        Other ->
            Coordinator ! {Tag, self(), {error, {module_differs, Mod, Md5, Other}}}
    end.

register_local(undefined) ->
    ok;
register_local(Name) ->
    try register(Name, self()) of
        true -> ok
    catch error:badarg -> {error, {name_taken, Name, whereis(Name)}}
    end.

%% ------------------------------------------------------------------ on the target

%% @doc The md5 of a module on this node (loaded, or else its .beam on the
%% code path, read without loading it), and this agent's md5. Creates no atom
%% for a module that does not exist here.
-spec module_md5(binary()) -> {ok, binary(), binary()} | {error, atom(), binary()}.
module_md5(ModBin) when is_binary(ModBin) ->
    Agent = ?MODULE:module_info(md5),
    case binary:match(ModBin, [<<"/">>, <<"\\">>, <<0>>]) of
        nomatch -> module_md5(ModBin, Agent);
        _ -> {error, missing, Agent}
    end.

module_md5(ModBin, Agent) ->
    Loaded = try binary_to_existing_atom(ModBin, utf8) of
                 Mod -> code:is_loaded(Mod) =/= false andalso Mod
             catch error:badarg -> false
             end,
    case Loaded of
        false -> file_md5(ModBin, Agent);
        Mod1 -> {ok, Mod1:module_info(md5), Agent}
    end.

%% @doc module_md5/1 of each module (at most 200): [{Bin, Md5 | missing}].
-spec module_md5s([binary()]) -> [{binary(), binary() | missing}].
module_md5s(Bins) when is_list(Bins) ->
    [{B, case module_md5(B) of {ok, Md5, _} -> Md5; _ -> missing end}
     || B <- lists:sublist(Bins, 200), is_binary(B)].

%% @doc The pid a global name (given as text) is registered to, on any node.
-spec locate_global(binary()) -> {ok, pid()} | {error, not_found}.
locate_global(Bin) when is_binary(Bin) ->
    case global_name(Bin) of
        {ok, _Name, Pid} -> {ok, Pid};
        Error -> Error
    end.

file_md5(ModBin, Agent) ->
    case code:where_is_file(binary_to_list(ModBin) ++ ".beam") of
        non_existing -> {error, missing, Agent};
        File ->
            case beam_lib:md5(File) of
                {ok, {_, Md5}} -> {ok, Md5, Agent};
                _ -> {error, unreadable, Agent}
            end
    end.

%% ------------------------------------------------------------------ movable

%% @doc The named processes of this node that balance_cluster_load may move:
%% registered locally or globally (on this node), a gen_server callback module
%% (exports handle_call/3 or handle_cast/2, not callback_mode/0) started by
%% proc_lib, without links (so no supervisor or linked worker depends on it),
%% not protected, not Arsenal's. Opts: modules (binaries, unknown ones match
%% nothing), name_prefix (binary), limit. Cost: one process_info per named
%% process (registered() and the global names, each capped at 20 000).
-spec movable(map()) -> #{count := non_neg_integer(), processes := [map()]}.
movable(Opts) when is_map(Opts) ->
    Modules = [A || B <- maps:get(modules, Opts, []), {ok, A} <- [arsenal_agent:existing_atom(B)]],
    Prefix = maps:get(name_prefix, Opts, <<>>),
    Limit = bounded(maps:get(limit, Opts, ?MAX_MOVABLE), ?MAX_MOVABLE),
    Locals = [{N, whereis(N), local} || N <- lists:sublist(registered(), ?MAX_REGISTERED_SCAN)],
    Globals = [{N, P, global} || N <- lists:sublist(global:registered_names(), ?MAX_GLOBAL_SCAN),
                                 P <- [global:whereis_name(N)], is_pid(P), node(P) =:= node()],
    Filter = fun(Name, Mod) ->
                     (Modules =:= [] orelse lists:member(Mod, Modules)) andalso
                         binary:longest_common_prefix([name_bin(Name), Prefix]) =:= byte_size(Prefix)
             end,
    Found = [Row || {Name, Pid, Kind} <- Locals ++ Globals, is_pid(Pid),
                    Row <- movable_row(Name, Pid, Kind, Filter)],
    Unique = maps:values(maps:from_list([{maps:get(pid, R), R} || R <- Found])),
    #{count => length(Unique), processes => lists:sublist(lists:sort(Unique), Limit)}.

movable_row(Name, Pid, Kind, Filter) ->
    case erlang:process_info(Pid, [dictionary, links, memory, message_queue_len]) of
        [{dictionary, Dict}, {links, []}, {memory, Memory}, {message_queue_len, Queue}] ->
            case proplists:get_value('$initial_call', Dict) of
                {Mod, init, 1} when is_atom(Mod) ->
                    case gen_server_module(Mod) andalso Filter(Name, Mod)
                        andalso not protected(Pid) of
                        true ->
                            [#{pid => Pid, name => Name, kind => Kind, module => Mod,
                               md5 => Mod:module_info(md5),
                               memory => Memory, message_queue_len => Queue}];
                        false -> []
                    end;
                _ -> []
            end;
        _ -> []
    end.

gen_server_module(Mod) ->
    not lists:prefix("arsenal_agent", atom_to_list(Mod))
        andalso erlang:function_exported(Mod, module_info, 0)
        andalso not erlang:function_exported(Mod, callback_mode, 0)
        andalso (erlang:function_exported(Mod, handle_call, 3)
                 orelse erlang:function_exported(Mod, handle_cast, 2)).

protected(Pid) ->
    case arsenal_agent:protected(list_to_binary(pid_to_list(Pid))) of
        {ok, false, _} -> false;
        _ -> true
    end.

