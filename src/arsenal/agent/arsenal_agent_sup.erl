%% @doc Arsenal's agent for supervisors: find them, read their children and
%% flags, walk supervision trees, and operate on children.
%%
%% Detecting a supervisor sends it no message. A supervisor is a proc_lib
%% process that traps exits and whose behaviour module implements the
%% supervisor protocol, as its dictionary tells:
%%   - '$initial_call' {supervisor, Module, 1}: OTP's supervisor (and Elixir's
%%     Supervisor) with callback Module;
%%   - {'Elixir.DynamicSupervisor', init, 1}: Elixir's DynamicSupervisor;
%%   - {Impl, init, 1} where Impl is a gen_server callback module that exports
%%     the supervisor API (which_children/1, start_child/2, terminate_child/2):
%%     a fork of OTP's supervisor under another name (a supervisor2, as some
%%     message brokers ship), whose gen_server answers the same calls.
%% A request is only sent when the behaviour module exports the API function
%% that sends it (which_children/1 for which_children, get_childspec/2 for
%% {get_childspec, Id}...): a fork made before a request existed never gets
%% one it would crash on. Every call has a timeout.
%%
%% Flags, strategy and restart types come from the supervisor's state record,
%% a private layout that differs between releases. parse_state/1 tells the
%% layouts it knows apart by size and by the shape of their fields:
%%   11 fields (OTP 21-23, forks made from them):
%%     {state, Name, Strategy, {Ids, Db}, Dynamics, Intensity, Period,
%%      Restarts, DynamicRestarts, Module, Args}
%%   12 fields (OTP 24-28): AutoShutdown before Module
%%   16 fields (OTP 29): {state, Name, Strategy, {Ids, Db}, Dynamics,
%%      Intensity, Period, Restarts, NRestarts, DynamicRestarts, AutoShutdown,
%%      HibernateAfter, Hibernating, Tag, Module, Args}
%% with child records {child, Pid, Id, MFArgs, Restart, ...} of 8 or 9
%% fields, and Elixir's %DynamicSupervisor{} struct. Anything else is refused
%% with {unsupported_state, What} naming what was seen, never guessed at; the
%% children still come from which_children, which needs no layout.
%%
%% Safety: names and child ids arrive as binaries and are compared with
%% existing terms or looked up with binary_to_existing_atom; no atom is made.
%% Every list is capped.
-module(arsenal_agent_sup).

-export([kind/1, identify/1, list_supervisors/2, flags/2, which_children/3, tree/4, child/3, child_op/4,
         simulate_failure/5, pause/3, resume/2, set_strategy/3, pause_watchdog/2,
         add_child/3, add_dynamic_child/3, start_supervisor/3, stop_supervisor/2]).
%% Shared with the other agent modules (impact, restart analytics, health).
-export([parse_state/1, initial_call_kind/1, handles/2]).

-define(MAX_LIMIT, 1000).
-define(MAX_NODES, 2000).
-define(MAX_DEPTH, 20).
-define(MAX_SPEC_CALLS, 50).
-define(STRATEGIES, [one_for_one, one_for_all, rest_for_one]).
%% The supervisor API functions a fork must export to be taken for a supervisor.
-define(SUPERVISOR_API, [{which_children, 1}, {start_child, 2}, {terminate_child, 2}]).

%% ------------------------------------------------------------------ detection

%% @doc What kind of supervisor Pid is, from its dictionary: no message is sent
%% (also used by arsenal_agent_rel and arsenal_agent_restarts). Module is the
%% callback module when the dictionary names it (OTP's supervisor, Elixir's),
%% else the fork's own module.
-spec kind(pid()) -> {supervisor | dynamic, module()} | other | dead.
kind(Pid) ->
    case identify(Pid) of
        {Kind, Module, _Impl} -> {Kind, Module};
        Other -> Other
    end.

%% @doc kind/1 with the behaviour module that implements the supervisor
%% (supervisor, 'Elixir.DynamicSupervisor', or a fork such as supervisor2).
%% Only proc_lib processes that trap exits (every supervisor does) have their
%% dictionary copied.
-spec identify(pid()) -> {supervisor | dynamic, module(), module()} | other | dead.
identify(Pid) ->
    case erlang:process_info(Pid, [initial_call, trap_exit]) of
        [{initial_call, {proc_lib, init_p, 5}}, {trap_exit, true}] ->
            case erlang:process_info(Pid, dictionary) of
                {dictionary, Dict} ->
                    case lists:keyfind('$initial_call', 1, Dict) of
                        {_, Call} -> initial_call_kind(Call);
                        false -> other
                    end;
                undefined -> dead
            end;
        undefined -> dead;
        _ -> other
    end.

%% @doc The supervisor a proc_lib '$initial_call' stands for (of a process
%% that traps exits): {Kind, Module, Impl} as identify/1, or other.
-spec initial_call_kind(term()) -> {supervisor | dynamic, module(), module()} | other.
initial_call_kind({supervisor, Mod, 1}) when is_atom(Mod), Mod =/= supervisor_bridge ->
    case module_kind(Mod) of
        dynamic -> {dynamic, Mod, 'Elixir.DynamicSupervisor'};
        supervisor -> {supervisor, Mod, supervisor}
    end;
initial_call_kind({'Elixir.DynamicSupervisor', init, 1}) ->
    {dynamic, 'Elixir.DynamicSupervisor', 'Elixir.DynamicSupervisor'};
initial_call_kind({Impl, init, 1}) when is_atom(Impl), Impl =/= supervisor, Impl =/= supervisor_bridge ->
    case supervisor_implementation(Impl) of
        true -> {supervisor, Impl, Impl};
        false -> other
    end;
initial_call_kind(_) ->
    other.

%% A gen_server callback module that exports the supervisor API: a fork of
%% OTP's supervisor. Exports are read from the loaded module (no message, no
%% loading: a module a process runs is loaded).
supervisor_implementation(Mod) ->
    erlang:module_loaded(Mod)
        andalso erlang:function_exported(Mod, init, 1)
        andalso erlang:function_exported(Mod, handle_call, 3)
        andalso lists:all(fun({F, A}) -> erlang:function_exported(Mod, F, A) end, ?SUPERVISOR_API).

%% Elixir's DynamicSupervisor records {supervisor, Mod, 1} too (for observer);
%% its callback module declares the DynamicSupervisor behaviour. Reading a
%% loaded module's attributes sends no message. The state tells for sure, and
%% the functions that read the state go by it.
module_kind('Elixir.DynamicSupervisor.Default') -> dynamic;
module_kind(Mod) ->
    case erlang:module_loaded(Mod) of
        true ->
            Attributes = try erlang:get_module_info(Mod, attributes) catch error:_ -> [] end,
            Behaviours = lists:append([B || {behaviour, B} <- Attributes] ++
                                      [B || {behavior, B} <- Attributes]),
            case lists:member('Elixir.DynamicSupervisor', Behaviours) of
                true -> dynamic;
                false -> supervisor
            end;
        false -> supervisor
    end.

%% @doc Whether the supervisor Pid handles Request: its behaviour module
%% exports the API function that sends it. A request no API function sends
%% is never sent.
-spec handles(pid(), term()) -> boolean().
handles(Pid, Request) ->
    case {identify(Pid), api_function(Request)} of
        {{_, _, Impl}, {F, A}} -> erlang:function_exported(Impl, F, A);
        _ -> false
    end.

api_function(which_children) -> {which_children, 1};
api_function(count_children) -> {count_children, 1};
api_function({start_child, _}) -> {start_child, 2};
api_function({terminate_child, _}) -> {terminate_child, 2};
api_function({restart_child, _}) -> {restart_child, 2};
api_function({delete_child, _}) -> {delete_child, 2};
api_function({get_childspec, _}) -> {get_childspec, 2};
api_function(_) -> undefined.

%% ------------------------------------------------------------------ state layouts

%% @doc The supervisor state State (from sys:get_state) read through the
%% layout it has (see the module doc): {ok, #{kind, layout, strategy,
%% intensity, period, restarts, auto_shutdown, callback, children}} where
%% children is [{Id, Pid, Restart}] in start order (dynamic children: Id
%% undefined, in pid order), or {error, {unsupported_state, What}}.
-spec parse_state(term()) -> {ok, map()} | {error, {unsupported_state, map()}}.
parse_state(#{'__struct__' := 'Elixir.DynamicSupervisor', strategy := Strategy, max_restarts := I,
              max_seconds := P, mod := Mod} = S) ->
    Children = case maps:get(children, S, #{}) of
                   Cs when is_map(Cs) ->
                       [{undefined, Pid, restart_of_spec(Spec)} || {Pid, Spec} <- lists:sort(maps:to_list(Cs))];
                   _ -> []
               end,
    {ok, #{kind => dynamic, layout => dynamic_supervisor, strategy => Strategy, intensity => I, period => P,
           restarts => maps:get(restarts, S, []), auto_shutdown => never, callback => Mod,
           max_children => maps:get(max_children, S, infinity), children => Children}};
parse_state(State) ->
    case layout(State) of
        {ok, Layout, At} ->
            Get = fun(Field) -> element(maps:get(Field, At), State) end,
            Strategy = Get(strategy),
            {ok, #{kind => supervisor, layout => Layout, strategy => Strategy,
                   intensity => Get(intensity), period => Get(period), restarts => Get(restarts),
                   auto_shutdown => case maps:find(auto_shutdown, At) of
                                        {ok, N} -> element(N, State);
                                        error -> never
                                    end,
                   callback => Get(module),
                   children => state_children(Strategy, Get(children), Get(dynamics))}};
        error ->
            {error, {unsupported_state, seen(State)}}
    end.

%% {ok, LayoutName, FieldPositions} for a supervisor state record whose size
%% and field shapes match a known layout, or error.
layout(S) when is_tuple(S), element(1, S) =:= state ->
    Common = #{strategy => 3, children => 4, dynamics => 5, intensity => 6, period => 7, restarts => 8},
    {Name, At} = case tuple_size(S) of
                     11 -> {state11, Common#{dynamic_restarts => 9, module => 10}};
                     12 -> {state12, Common#{dynamic_restarts => 9, auto_shutdown => 10, module => 11}};
                     16 -> {state16, Common#{nrestarts => 9, dynamic_restarts => 10, auto_shutdown => 11,
                                             hibernating => 13, tag => 14, module => 15}};
                     _ -> {undefined, #{}}
                 end,
    case Name =/= undefined andalso shaped(S, At) of
        true -> {ok, Name, At};
        false -> error
    end;
layout(_) ->
    error.

shaped(S, At) ->
    lists:all(fun({Field, N}) -> field_shape(Field, element(N, S)) end, maps:to_list(At)).

field_shape(strategy, V) -> is_atom(V);
field_shape(children, {Ids, Db}) -> is_list(Ids) andalso is_map(Db);
field_shape(children, _) -> false;
field_shape(intensity, V) -> is_integer(V) andalso V >= 0;
field_shape(period, V) -> is_integer(V) andalso V > 0;
field_shape(restarts, V) -> is_list(V);
field_shape(nrestarts, V) -> is_integer(V);
field_shape(dynamic_restarts, V) -> is_integer(V);
field_shape(auto_shutdown, V) -> is_atom(V);
field_shape(hibernating, V) -> is_boolean(V);
field_shape(tag, V) -> is_reference(V);
field_shape(module, V) -> is_atom(V);
field_shape(_, _) -> true.

%% [{Id, Pid, Restart}] in start order (Ids are kept newest first); for
%% simple_one_for_one, its running children in pid order with the template's
%% restart type.
state_children(simple_one_for_one, {_Ids, Db}, Dynamics) ->
    Restart = case maps:values(Db) of
                  [Child] -> child_restart(Child);
                  _ -> undefined
              end,
    [{undefined, Pid, Restart} || Pid <- lists:sort(dynamic_pids(Dynamics))];
state_children(_Strategy, {Ids, Db}, _Dynamics) ->
    [{Id, element(2, C), child_restart(C)}
     || Id <- lists:reverse(Ids), {ok, C} <- [maps:find(Id, Db)], is_child(C)].

is_child(C) -> is_tuple(C) andalso element(1, C) =:= child andalso tuple_size(C) >= 8.

child_restart(C) ->
    case is_child(C) of
        true -> element(5, C);
        false -> undefined
    end.

dynamic_pids({maps, M}) when is_map(M) -> maps:keys(M);
dynamic_pids({mapsets, M}) when is_map(M) -> maps:keys(M);
dynamic_pids({sets, S}) -> try sets:to_list(S) catch error:_ -> [] end;
dynamic_pids(_) -> [].

restart_of_spec(Spec) when is_tuple(Spec), tuple_size(Spec) >= 2 -> element(2, Spec);
restart_of_spec(_) -> undefined.

%% What a state that matches no known layout looks like, for the error: its
%% type, size and the type of each of its first 20 fields (no values).
seen(S) when is_tuple(S) ->
    #{type => tuple, size => tuple_size(S),
      tag => case tuple_size(S) > 0 andalso is_atom(element(1, S)) of
                 true -> element(1, S);
                 false -> undefined
             end,
      fields => [type_of(F) || F <- lists:sublist(tuple_to_list(S), 20)]};
seen(S) when is_map(S) ->
    #{type => map, size => map_size(S), struct => maps:get('__struct__', S, undefined)};
seen(S) ->
    #{type => type_of(S)}.

type_of(V) when is_atom(V) -> atom;
type_of(V) when is_integer(V) -> integer;
type_of(V) when is_float(V) -> float;
type_of(V) when is_list(V) -> list;
type_of(V) when is_tuple(V) -> tuple;
type_of(V) when is_map(V) -> map;
type_of(V) when is_pid(V) -> pid;
type_of(V) when is_reference(V) -> reference;
type_of(V) when is_binary(V) -> binary;
type_of(V) when is_function(V) -> function;
type_of(_) -> other.

%% The supervisor a request names: {ok, Pid, Kind, Module} or an error.
sup(Target) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} ->
            case kind(Pid) of
                {Kind, Mod} -> {ok, Pid, Kind, Mod};
                dead -> {error, dead};
                other -> {error, {not_supervisor, describe_process(Pid)}}
            end;
        Error ->
            Error
    end.

%% What a process that is not a supervisor is, for the error message.
describe_process(Pid) ->
    case erlang:process_info(Pid, [registered_name, initial_call]) of
        undefined -> undefined;
        [{registered_name, Name}, {initial_call, {proc_lib, init_p, 5}}] ->
            #{name => Name, initial_call => proc_lib:translate_initial_call(Pid)};
        [{registered_name, Name}, {initial_call, Call}] ->
            #{name => Name, initial_call => Call}
    end.

name_of(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} when is_atom(Name) -> Name;
        _ -> undefined
    end.

application_of(Pid) ->
    case application:get_application(Pid) of
        {ok, App} -> App;
        undefined -> undefined
    end.

%% The process that started Pid (proc_lib's '$ancestors'), when it is alive.
parent_of(Pid) ->
    case erlang:process_info(Pid, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind('$ancestors', 1, Dict) of
                {_, [Parent | _]} -> resolve(Parent);
                _ -> undefined
            end;
        undefined -> undefined
    end.

resolve(Pid) when is_pid(Pid) -> Pid;
resolve(Name) when is_atom(Name) ->
    case whereis(Name) of
        undefined -> undefined;
        Pid -> Pid
    end;
resolve(_) -> undefined.

%% ------------------------------------------------------------------ list

%% @doc Every supervisor of the node (OTP's, Elixir dynamic ones, forks), at most
%% Limit (1..1000), optionally only those whose registered name contains Name.
%% Cost: process_info(initial_call, trap_exit) per process, plus a dictionary
%% copy for the proc_lib processes that trap exits. Sends no message.
-spec list_supervisors(pos_integer(), binary() | undefined) -> map().
list_supervisors(Limit0, NameFilter) ->
    Limit = max(1, min(Limit0, ?MAX_LIMIT)),
    {Rows, Total} = lists:foldl(
        fun(Pid, {Acc, N}) ->
            case identify(Pid) of
                {Kind, Mod, Impl} ->
                    Name = name_of(Pid),
                    case matches(Name, NameFilter) of
                        false -> {Acc, N};
                        true when N < Limit ->
                            {[#{pid => Pid, name => Name, kind => Kind, module => Mod, behaviour => Impl,
                                application => application_of(Pid), parent => parent_of(Pid)} | Acc],
                             N + 1};
                        true -> {Acc, N + 1}
                    end;
                _ -> {Acc, N}
            end
        end, {[], 0}, erlang:processes()),
    #{supervisors => lists:reverse(Rows), total => Total, limit => Limit}.

matches(_Name, undefined) -> true;
matches(undefined, _) -> false;
matches(Name, Pattern) -> binary:match(atom_to_binary(Name, utf8), Pattern) =/= nomatch.

%% ------------------------------------------------------------------ flags

%% @doc Strategy, intensity, period, auto_shutdown and callback module of a
%% supervisor, from its state (sys:get_state with Timeout ms) read through
%% its layout (parse_state/1).
-spec flags(binary(), timeout()) -> map() | {error, term()}.
flags(Target, Timeout) ->
    case sup(Target) of
        {ok, Pid, _Kind, _Mod} ->
            case parsed_state(Pid, Timeout) of
                {ok, #{kind := Kind, callback := Callback, layout := Layout} = Parsed} ->
                    Flags = maps:with([strategy, intensity, period, auto_shutdown, max_children], Parsed),
                    Flags#{pid => Pid, name => name_of(Pid), kind => Kind, module => Callback,
                           callback => Callback, behaviour => behaviour_of(Pid), layout => Layout,
                           suspended => suspended(Pid, Timeout)};
                Error -> Error
            end;
        Error -> Error
    end.

behaviour_of(Pid) ->
    case identify(Pid) of
        {_, _, Impl} -> Impl;
        _ -> undefined
    end.

state(Pid, Timeout) ->
    try {ok, sys:get_state(Pid, Timeout)}
    catch exit:{timeout, _} -> {error, timeout};
          exit:{noproc, _} -> {error, dead};
          exit:{Reason, _} -> {error, {no_state, Reason}}
    end.

%% The state, read through its layout: {ok, parse_state/1's map} or an error.
parsed_state(Pid, Timeout) ->
    case state(Pid, Timeout) of
        {ok, State} -> parse_state(State);
        Error -> Error
    end.

%% Whether the supervisor is suspended (sys:suspend): its sys status says so.
suspended(Pid, Timeout) ->
    try sys:get_status(Pid, Timeout) of
        {status, _, _, [_PDict, SysState | _]} -> SysState =:= suspended;
        _ -> false
    catch exit:_ -> false
    end.

%% Restart type of each child, by id (OTP) or pid (dynamic / simple_one_for_one),
%% from the parsed state.
restart_types(#{children := Children}) ->
    ById = maps:from_list([{Id, R} || {Id, _, R} <- Children, Id =/= undefined]),
    ByPid = maps:from_list([{P, R} || {_, P, R} <- Children, is_pid(P)]),
    fun(Id, Pid) ->
            case maps:find(Pid, ByPid) of
                {ok, R} -> R;
                error -> maps:get(Id, ById, undefined)
            end
    end.

%% ------------------------------------------------------------------ children

%% @doc The children of a supervisor (at most Limit), in its order, each with
%% id, pid (or restarting/undefined), type, restart type and modules.
%% Cost: supervisor:which_children (copies every child) and sys:get_state
%% (restart types; for a state of a layout not known, get_childspec for at most
%% ?MAX_SPEC_CALLS children, when the supervisor's module has it).
-spec which_children(binary(), pos_integer(), timeout()) -> map() | {error, term()}.
which_children(Target, Limit0, Timeout) ->
    Limit = max(1, min(Limit0, ?MAX_LIMIT)),
    case sup(Target) of
        {ok, Pid, _Kind, _Mod} ->
            case children(Pid, Timeout) of
                {ok, Children, Restart, _Parsed} ->
                    Rows = [child_row(C, Restart) || C <- lists:sublist(Children, Limit)],
                    #{pid => Pid, name => name_of(Pid), total => length(Children), children => Rows};
                Error -> Error
            end;
        Error -> Error
    end.

%% {ok, Children, RestartOf, ParsedState} or an error: which_children, and
%% the restart types from the state (its layout known) or from get_childspec.
children(Pid, Timeout) ->
    case gen_call(Pid, which_children, Timeout) of
        {ok, Children} when is_list(Children) ->
            Parsed = parsed_state(Pid, Timeout),
            Restart = case Parsed of
                          {ok, P} -> restart_types(P);
                          _ -> spec_restarts(Pid, Children, Timeout)
                      end,
            {ok, Children, Restart, Parsed};
        {ok, Other} -> {error, {no_children, bad_reply(Other)}};
        {error, {call_failed, Reason}} -> {error, {no_children, Reason}};
        Error -> Error
    end.

%% Restart types by get_childspec (a public request), for a supervisor whose
%% state layout is not known: at most ?MAX_SPEC_CALLS calls, none when its
%% module does not have get_childspec/2.
spec_restarts(Pid, Children, Timeout) ->
    Keys = [case Id of undefined -> Child; _ -> Id end
            || {Id, Child, _, _} <- lists:sublist(Children, ?MAX_SPEC_CALLS)],
    Found = case handles(Pid, {get_childspec, undefined}) of
                true -> lists:foldl(fun(Key, Acc) -> spec_restart(Pid, Key, Timeout, Acc) end, #{}, Keys);
                false -> #{}
            end,
    fun(Id, Child) ->
            case maps:find(Id, Found) of
                {ok, R} when Id =/= undefined -> R;
                _ -> maps:get(Child, Found, undefined)
            end
    end.

spec_restart(_Pid, undefined, _Timeout, Acc) -> Acc;
spec_restart(Pid, Key, Timeout, Acc) ->
    case gen_call(Pid, {get_childspec, Key}, Timeout) of
        {ok, {ok, #{restart := R}}} -> Acc#{Key => R};
        {ok, {ok, Spec}} when is_tuple(Spec), tuple_size(Spec) >= 3 -> Acc#{Key => element(3, Spec)};
        _ -> Acc
    end.

bad_reply(Term) -> bound_term(Term).

child_row({Id, Child, Type, Modules}, Restart) ->
    #{id => Id, pid => Child, type => Type, restart => Restart(Id, Child),
      name => case is_pid(Child) of true -> name_of(Child); false -> undefined end,
      modules => case Modules of dynamic -> dynamic; _ -> lists:sublist(Modules, 10) end}.

%% ------------------------------------------------------------------ tree

%% @doc The supervision tree under Target, or (Target = all) under every root
%% supervisor: one whose parent is no supervisor (an application's top
%% supervisor, or one started by hand). At most MaxDepth levels and MaxNodes
%% nodes; cut subtrees say so (truncated => true).
%% Cost: one which_children and one sys:get_state per supervisor visited.
-spec tree(binary() | all, pos_integer(), pos_integer(), timeout()) -> map() | {error, term()}.
tree(Target, MaxDepth0, MaxNodes0, Timeout) ->
    MaxDepth = max(1, min(MaxDepth0, ?MAX_DEPTH)),
    MaxNodes = max(1, min(MaxNodes0, ?MAX_NODES)),
    Roots = case Target of
                all ->
                    {ok, [{Pid, undefined, undefined, undefined} || Pid <- erlang:processes(), is_root(Pid)]};
                _ ->
                    case sup(Target) of
                        {ok, Pid, _, _} -> {ok, [{Pid, undefined, undefined, undefined}]};
                        Error -> Error
                    end
            end,
    case Roots of
        {ok, List} ->
            {Nodes, Count, Cut} = walk(List, 1, MaxDepth, MaxNodes, Timeout, 0, false),
            #{roots => Nodes, node_count => Count, truncated => Cut,
              max_depth => MaxDepth, max_nodes => MaxNodes};
        Err -> Err
    end.

is_root(Pid) ->
    case kind(Pid) of
        {_, _} ->
            case parent_of(Pid) of
                undefined -> true;
                Parent -> not is_tuple(kind(Parent))
            end;
        _ -> false
    end.

%% Walk a list of {Pid, Id, Type, Restart}; returns {Nodes, Count, Truncated}.
walk([], _Depth, _MaxDepth, _MaxNodes, _Timeout, Count, Cut) ->
    {[], Count, Cut};
walk(_, _Depth, _MaxDepth, MaxNodes, _Timeout, Count, _Cut) when Count >= MaxNodes ->
    {[], Count, true};
walk([{Pid, Id, Type0, Restart} | Rest], Depth, MaxDepth, MaxNodes, Timeout, Count, Cut0) ->
    Base = #{pid => Pid, id => Id, restart => Restart,
             name => case is_pid(Pid) of true -> name_of(Pid); false -> undefined end},
    Kind = case is_pid(Pid) of true -> identify(Pid); false -> other end,
    {Node, Count1, Cut1} =
        case Kind of
            {SupKind, Mod, Impl} ->
                Info0 = Base#{type => supervisor, kind => SupKind, module => Mod, behaviour => Impl,
                              application => application_of(Pid)},
                case Depth >= MaxDepth of
                    true ->
                        {Info0#{children => [], truncated => true}, Count + 1, true};
                    false ->
                        case children(Pid, Timeout) of
                            {ok, Children, RestartOf, Parsed} ->
                                Info1 = case Parsed of
                                            {ok, #{strategy := S, callback := Callback}} ->
                                                Info0#{strategy => S, module => Callback};
                                            {error, StateError} ->
                                                Info0#{strategy => undefined, state_error => StateError}
                                        end,
                                Items = [{C, CId, T, RestartOf(CId, C)} || {CId, C, T, _} <- Children],
                                {Sub, Count2, Cut2} =
                                    walk(Items, Depth + 1, MaxDepth, MaxNodes, Timeout, Count + 1, false),
                                {Info1#{children => Sub, truncated => length(Sub) < length(Items)},
                                 Count2, Cut2};
                            {error, Reason} ->
                                {Info0#{children => [], error => Reason, truncated => false},
                                 Count + 1, false}
                        end
                end;
            _ ->
                Type = case Type0 of undefined -> worker; _ -> Type0 end,
                {Base#{type => Type}, Count + 1, false}
        end,
    {Others, Count3, Cut3} = walk(Rest, Depth, MaxDepth, MaxNodes, Timeout, Count1, false),
    {[Node | Others], Count3, Cut0 orelse Cut1 orelse Cut3}.

strategy(Pid, Timeout) ->
    case parsed_state(Pid, Timeout) of
        {ok, #{strategy := Strategy}} -> Strategy;
        _ -> undefined
    end.

%% The strategy, or dynamic for a DynamicSupervisor (its children have no ids).
strategy_or_dynamic(Pid, Timeout) ->
    case parsed_state(Pid, Timeout) of
        {ok, #{kind := dynamic}} -> dynamic;
        {ok, #{strategy := Strategy}} -> Strategy;
        _ -> undefined
    end.

%% ------------------------------------------------------------------ operating on children

%% @doc The child of a supervisor a request names: its pid text, or its id as
%% text (an atom id matches its name, an Elixir alias with or without
%% "Elixir."; binary and charlist ids match their text).
%% Returns {ok, #{id, pid, supervisor}} or an error.
-spec child(binary(), binary(), timeout()) -> {ok, map()} | {error, term()}.
child(Target, ChildRef, Timeout) ->
    case sup(Target) of
        {ok, Pid, Kind, _} ->
            case gen_call(Pid, which_children, Timeout) of
                {ok, Children} -> find_child(Pid, Kind, Children, ChildRef);
                Error -> Error
            end;
        Error -> Error
    end.

find_child(Sup, Kind, Children, <<"<", _/binary>> = Text) ->
    case arsenal_agent:target(Text) of
        {ok, ChildPid} ->
            case lists:keyfind(ChildPid, 2, Children) of
                {Id, _, Type, _} -> {ok, #{id => Id, pid => ChildPid, supervisor => Sup, kind => Kind,
                                            type => Type}};
                false -> {error, unknown_child}
            end;
        Error -> Error
    end;
find_child(Sup, Kind, Children, Text) ->
    case [C || {Id, _, _, _} = C <- Children, id_matches(Id, Text)] of
        [{Id, ChildPid, Type, _} | _] ->
            {ok, #{id => Id, pid => ChildPid, supervisor => Sup, kind => Kind, type => Type}};
        [] -> {error, unknown_child}
    end.

id_matches(Id, Text) when is_atom(Id) ->
    Name = atom_to_binary(Id, utf8),
    Name =:= Text orelse Name =:= <<"Elixir.", Text/binary>>;
id_matches(Id, Text) when is_binary(Id) -> Id =:= Text;
id_matches(Id, Text) when is_list(Id) ->
    try unicode:characters_to_binary(Id) =:= Text catch _:_ -> false end;
id_matches(_, _) -> false.

%% A call to a supervisor, only with a request its behaviour module has an
%% API function for (a fork may predate some requests: it would crash on them).
gen_call(Pid, Request, Timeout) ->
    case handles(Pid, Request) of
        true ->
            try {ok, gen_server:call(Pid, Request, Timeout)}
            catch exit:{timeout, _} -> {error, timeout};
                  exit:{noproc, _} -> {error, dead};
                  exit:{Reason, _} -> {error, {call_failed, Reason}}
            end;
        false ->
            case identify(Pid) of
                {_, _, Impl} -> {error, {unsupported_request, Impl, request_name(Request)}};
                dead -> {error, dead};
                other -> {error, {not_supervisor, describe_process(Pid)}}
            end
    end.

request_name(Request) when is_atom(Request) -> Request;
request_name(Request) when is_tuple(Request) -> element(1, Request).

%% @doc restart_child, terminate_child or delete_child (binaries) of the child
%% ChildRef names, as the supervisor module's own API does it. For a
%% simple_one_for_one or dynamic supervisor, terminate goes by pid; restart and
%% delete do not exist there (an error says so).
-spec child_op(binary(), binary(), binary(), timeout()) -> {ok, map()} | {error, term()}.
child_op(Op, Target, ChildRef, Timeout) ->
    case child(Target, ChildRef, Timeout) of
        {ok, #{id := Id, pid := ChildPid, supervisor := Sup, kind := Kind} = Child} ->
            Simple = Kind =:= dynamic orelse lists:member(strategy_or_dynamic(Sup, Timeout),
                                                          [simple_one_for_one, dynamic]),
            Request = case {Op, Simple} of
                          {<<"terminate">>, true} -> {ok, {terminate_child, ChildPid}};
                          {<<"terminate">>, false} -> {ok, {terminate_child, Id}};
                          {<<"restart">>, false} -> {ok, {restart_child, Id}};
                          {<<"delete">>, false} -> {ok, {delete_child, Id}};
                          {_, true} -> {error, {dynamic_supervisor, Op}};
                          _ -> {error, {bad_op, Op}}
                      end,
            case Request of
                {ok, Req} ->
                    case gen_call(Sup, Req, Timeout) of
                        {ok, ok} -> {ok, Child#{outcome => ok}};
                        {ok, {ok, NewPid}} -> {ok, Child#{outcome => ok, new_pid => NewPid}};
                        {ok, {ok, NewPid, _Info}} -> {ok, Child#{outcome => ok, new_pid => NewPid}};
                        {ok, {error, Reason}} -> {error, {refused, Reason}};
                        Error -> Error
                    end;
                Error -> Error
            end;
        Error -> Error
    end.

%% @doc Kill a child with Reason (kill | shutdown | crash, binaries; crash is
%% {arsenal, simulated_failure}) and watch up to WaitMs (<= 10000) for the
%% supervisor to react: which children got new pids, which went away, and
%% whether the supervisor itself survived (past its restart intensity it dies).
-spec simulate_failure(binary(), binary(), binary(), non_neg_integer(), timeout()) ->
    map() | {error, term()}.
simulate_failure(Target, ChildRef, ReasonBin, WaitMs0, Timeout) ->
    WaitMs = max(0, min(WaitMs0, 10000)),
    case {reason(ReasonBin), child(Target, ChildRef, Timeout)} of
        {error, _} -> {error, {bad_reason, ReasonBin}};
        {_, {error, _} = Error} -> Error;
        {_, {ok, #{pid := ChildPid}}} when not is_pid(ChildPid) -> {error, child_not_running};
        {{ok, Reason}, {ok, #{id := Id, pid := ChildPid, supervisor := Sup}}} ->
            case gen_call(Sup, which_children, Timeout) of
                {ok, Before} -> kill_and_watch(Sup, Id, ChildPid, Reason, Before, WaitMs, Timeout);
                Error -> Error
            end
    end.

kill_and_watch(Sup, Id, ChildPid, Reason, Before, WaitMs, Timeout) ->
    Ref = erlang:monitor(process, ChildPid),
    Deadline = erlang:monotonic_time(millisecond) + WaitMs,
    exit(ChildPid, Reason),
    Died = receive {'DOWN', Ref, process, ChildPid, _} -> true
           after WaitMs -> erlang:demonitor(Ref, [flush]), false
           end,
    After = settle(Sup, Id, ChildPid, Before, Deadline, Timeout),
    #{supervisor => Sup, id => Id, pid => ChildPid, reason => Reason, child_died => Died,
      supervisor_alive => is_process_alive(Sup), changes => changes(Before, After)}.

reason(<<"kill">>) -> {ok, kill};
reason(<<"shutdown">>) -> {ok, shutdown};
reason(<<"crash">>) -> {ok, {arsenal, simulated_failure}};
reason(_) -> error.

%% Poll which_children until the killed child is back (or gone for good) and the
%% children list stopped changing, or until the deadline.
settle(Sup, Id, OldPid, Before, Deadline, Timeout) ->
    case gen_call(Sup, which_children, Timeout) of
        {ok, Now} ->
            Back = case Id of
                       %% Dynamic children have no id: back when the old pid is gone and
                       %% as many children run as before.
                       undefined -> not lists:keymember(OldPid, 2, Now)
                                        andalso length(Now) >= length(Before);
                       _ ->
                           case lists:keyfind(Id, 1, Now) of
                               {_, P, _, _} when is_pid(P), P =/= OldPid -> true;
                               false -> not lists:keymember(OldPid, 2, Now);
                               _ -> false
                           end
                   end,
            case Back orelse erlang:monotonic_time(millisecond) >= Deadline of
                true -> settle_stable(Sup, Now, Deadline, Timeout);
                false -> timer:sleep(20), settle(Sup, Id, OldPid, Before, Deadline, Timeout)
            end;
        {error, _} -> []
    end.

settle_stable(Sup, Last, Deadline, Timeout) ->
    Left = Deadline - erlang:monotonic_time(millisecond),
    case Left > 0 of
        false -> Last;
        true ->
            timer:sleep(min(50, Left)),
            case gen_call(Sup, which_children, Timeout) of
                {ok, Last} -> Last;
                {ok, Now} -> settle_stable(Sup, Now, Deadline, Timeout);
                {error, _} -> Last
            end
    end.

changes(Before, After) ->
    [#{id => Id, old_pid => Old,
       new_pid => case lists:keyfind(Id, 1, After) of {_, New, _, _} -> New; false -> undefined end,
       outcome => case lists:keyfind(Id, 1, After) of
                      {_, Old, _, _} -> unchanged;
                      {_, New, _, _} when is_pid(New) -> restarted;
                      {_, _, _, _} -> not_running;
                      false -> removed
                  end}
     || {Id, Old, _, _} <- lists:sublist(Before, ?MAX_LIMIT), Id =/= undefined]
    ++ [#{id => undefined, old_pid => Old, new_pid => undefined, outcome => removed}
        || {undefined, Old, _, _} <- lists:sublist(Before, ?MAX_LIMIT),
           not lists:keymember(Old, 2, After)]
    ++ [#{id => undefined, old_pid => undefined, new_pid => New, outcome => started}
        || {undefined, New, _, _} <- lists:sublist(After, ?MAX_LIMIT),
           not lists:keymember(New, 2, Before)].

%% ------------------------------------------------------------------ pause, resume, strategy

%% @doc Suspend a supervisor (sys:suspend): it handles system messages only, so
%% children that die meanwhile are not restarted; their EXIT signals queue and
%% are handled (restarts included) on resume. A watchdog process resumes it
%% after AutoResumeMs (<= 1 h) unless resume/2 ran first, so a forgotten pause
%% cannot leave a supervisor down for good.
-spec pause(binary(), pos_integer(), timeout()) -> map() | {error, term()}.
pause(Target, AutoResumeMs0, Timeout) ->
    AutoResumeMs = max(1000, min(AutoResumeMs0, 3600000)),
    case sup(Target) of
        {ok, Pid, _, _} ->
            case suspended(Pid, Timeout) of
                true -> {error, already_paused};
                false ->
                    try sys:suspend(Pid, Timeout) of
                        ok ->
                            Watchdog = spawn(?MODULE, pause_watchdog, [Pid, AutoResumeMs]),
                            #{pid => Pid, name => name_of(Pid), watchdog => Watchdog,
                              auto_resume_ms => AutoResumeMs}
                    catch exit:{timeout, _} -> {error, timeout};
                          exit:{noproc, _} -> {error, dead}
                    end
            end;
        Error -> Error
    end.

%% @doc The watchdog of a pause (spawned by pause/3, not for calling): resumes
%% the supervisor after Ms, unless told to stop (resume/2) or the supervisor dies.
-spec pause_watchdog(pid(), pos_integer()) -> ok.
pause_watchdog(Sup, Ms) ->
    Ref = erlang:monitor(process, Sup),
    receive
        {arsenal_resumed, Sup} -> ok;
        {'DOWN', Ref, process, Sup, _} -> ok
    after Ms ->
        try sys:resume(Sup, 5000) catch exit:_ -> ok end,
        ok
    end.

%% @doc Resume a supervisor paused by pause/3 (or by anyone's sys:suspend) and
%% stop the watchdogs of its pauses. Cost: a scan of initial calls to find the
%% watchdogs (one process_info per process).
-spec resume(binary(), timeout()) -> map() | {error, term()}.
resume(Target, Timeout) ->
    case sup(Target) of
        {ok, Pid, _, _} ->
            case suspended(Pid, Timeout) of
                false -> {error, not_paused};
                true ->
                    try sys:resume(Pid, Timeout) of
                        ok ->
                            Watchdogs = [W || W <- erlang:processes(),
                                              erlang:process_info(W, initial_call) =:=
                                                  {initial_call, {?MODULE, pause_watchdog, 2}}],
                            [W ! {arsenal_resumed, Pid} || W <- Watchdogs],
                            #{pid => Pid, name => name_of(Pid)}
                    catch exit:{timeout, _} -> {error, timeout};
                          exit:{noproc, _} -> {error, dead}
                    end
            end;
        Error -> Error
    end.

%% @doc Change a running supervisor's restart strategy in place (sys:replace_state
%% on its state record, only the strategy field): no child is stopped or
%% restarted, so there is no gap in supervision. one_for_one, one_for_all and
%% rest_for_one only; a simple_one_for_one or dynamic supervisor is refused (its
%% children are kept differently). Read back to verify. The supervisor's init/1
%% still says the old strategy: a restart of the supervisor brings it back.
-spec set_strategy(binary(), binary(), timeout()) -> map() | {error, term()}.
set_strategy(Target, StrategyBin, Timeout) ->
    case {strategy_of(StrategyBin), sup(Target)} of
        {error, _} -> {error, {bad_strategy, StrategyBin}};
        {_, {error, _} = Error} -> Error;
        {_, {ok, _, dynamic, _}} -> {error, {unsupported_strategy_change, dynamic}};
        {{ok, New}, {ok, Pid, _, _}} ->
            case state(Pid, Timeout) of
                {ok, State} ->
                    case {parse_state(State), layout(State)} of
                        {{ok, #{kind := dynamic}}, _} ->
                            {error, {unsupported_strategy_change, dynamic}};
                        {{ok, #{strategy := simple_one_for_one}}, _} ->
                            {error, {unsupported_strategy_change, simple_one_for_one}};
                        {{ok, #{strategy := Old}}, {ok, Layout, #{strategy := At}}} ->
                            case lists:member(Old, ?STRATEGIES) of
                                false -> {error, {unsupported_state, #{strategy => Old}}};
                                true -> replace_strategy(Pid, Layout, At, Old, New, Timeout)
                            end;
                        {{error, _} = Error, _} -> Error
                    end;
                Error -> Error
            end
    end.

%% The replacing fun runs inside the supervisor: it changes the strategy field
%% only if the state still has the layout read before and the old strategy;
%% otherwise it fails and sys leaves the state as it was.
replace_strategy(Pid, Layout, At, Old, New, Timeout) ->
    Fun = fun(S) ->
                  {ok, Layout, #{strategy := At}} = layout(S),
                  Old = element(At, S),
                  setelement(At, S, New)
          end,
    try sys:replace_state(Pid, Fun, Timeout) of
        Replaced when is_tuple(Replaced), tuple_size(Replaced) >= At, element(At, Replaced) =:= New ->
            case strategy(Pid, Timeout) of
                New -> #{pid => Pid, name => name_of(Pid), old => Old, new => New, layout => Layout};
                Other -> {error, {not_applied, Other}}
            end;
        _ -> {error, {not_applied, Old}}
    catch exit:{timeout, _} -> {error, timeout};
          exit:{noproc, _} -> {error, dead};
          error:{callback_failed, _, _} -> {error, {conflict, changed_meanwhile}};
          exit:{Reason, _} -> {error, {not_applied, Reason}}
    end.

strategy_of(Bin) ->
    case [S || S <- ?STRATEGIES, atom_to_binary(S, utf8) =:= Bin] of
        [S] -> {ok, S};
        [] -> error
    end.

%% ------------------------------------------------------------------ adding children, starting and stopping

%% A function of an existing, loadable module: names as binaries, never new atoms.
mfa(ModBin, FunBin, Args) when is_list(Args) ->
    case {arsenal_agent:existing_atom(ModBin), arsenal_agent:existing_atom(FunBin)} of
        {{ok, M}, {ok, F}} ->
            case code:ensure_loaded(M) of
                {module, M} ->
                    case erlang:function_exported(M, F, length(Args)) of
                        true -> {ok, {M, F, Args}};
                        false -> {error, {undefined_function, ModBin, FunBin, length(Args)}}
                    end;
                _ -> {error, {unknown_module, ModBin}}
            end;
        {error, _} -> {error, {unknown_module, ModBin}};
        {_, error} -> {error, {undefined_function, ModBin, FunBin, length(Args)}}
    end.


restart_type(<<"permanent">>) -> {ok, permanent};
restart_type(<<"transient">>) -> {ok, transient};
restart_type(<<"temporary">>) -> {ok, temporary};
restart_type(Other) -> {error, {bad_restart, Other}}.

child_type(<<"worker">>) -> {ok, worker};
child_type(<<"supervisor">>) -> {ok, supervisor};
child_type(Other) -> {error, {bad_type, Other}}.

%% The child spec a request describes (Id is kept a binary: no atom is made).
spec(#{id := Id, module := ModBin, function := FunBin, args := Args, restart := R, type := T,
       shutdown := Shutdown}) when is_integer(Shutdown) ->
    case {mfa(ModBin, FunBin, Args), restart_type(R), child_type(T)} of
        {{ok, {M, _, _} = MFA}, {ok, Restart}, {ok, Type}} ->
            {ok, #{id => Id, start => MFA, restart => Restart, type => Type, modules => [M],
                   shutdown => case Type of supervisor -> infinity; worker -> Shutdown end}};
        {{error, _} = E, _, _} -> E;
        {_, {error, _} = E, _} -> E;
        {_, _, {error, _} = E} -> E
    end.

started({ok, {ok, Pid}}) when is_pid(Pid) -> {ok, Pid};
started({ok, {ok, Pid, _Info}}) when is_pid(Pid) -> {ok, Pid};
started({ok, {ok, undefined}}) -> {error, {start_failed, ignore}};
started({ok, ignore}) -> {error, {start_failed, ignore}};
started({ok, {error, Reason}}) -> {error, {start_failed, bound_term(Reason)}};
started({error, _} = Error) -> Error;
started(Other) -> {error, {start_failed, bound_term(Other)}}.

%% Start reasons can carry big terms (stack traces with arguments): keep them short.
bound_term(Term) ->
    case erts_debug:flat_size(Term) > 2000 of
        true -> {truncated, iolist_to_binary(io_lib:format("~P", [Term, 20]))};
        false -> Term
    end.

%% @doc Add a child to a one_for_one/one_for_all/rest_for_one supervisor and
%% start it (supervisor:start_child/2 with a spec): Spec has id (binary),
%% module, function (binaries naming an existing function), args (plain
%% values), restart, type (binaries) and shutdown (ms). The start function runs
%% inside the supervisor, as always with start_child.
-spec add_child(binary(), map(), timeout()) -> map() | {error, term()}.
add_child(Target, Request, Timeout) ->
    case sup(Target) of
        {ok, Pid, _, _} ->
            case strategy_or_dynamic(Pid, Timeout) of
                S when S =:= simple_one_for_one; S =:= dynamic -> {error, {use_dynamic, S}};
                _ ->
                    case spec(Request) of
                        {ok, Spec} ->
                            case started(gen_call(Pid, {start_child, Spec}, Timeout)) of
                                {ok, Child} -> #{supervisor => Pid, id => maps:get(id, Spec), pid => Child};
                                Error -> Error
                            end;
                        Error -> Error
                    end
            end;
        Error -> Error
    end.

%% @doc Start a child of a simple_one_for_one supervisor (Request: args, the
%% extra arguments appended to its spec's) or of an Elixir DynamicSupervisor
%% (Request: module, function, args, restart, type, shutdown).
-spec add_dynamic_child(binary(), map(), timeout()) -> map() | {error, term()}.
add_dynamic_child(Target, Request, Timeout) ->
    case sup(Target) of
        {ok, Pid, _, _} ->
            case strategy_or_dynamic(Pid, Timeout) of
                simple_one_for_one ->
                    case maps:get(module, Request, undefined) of
                        undefined ->
                            Args = maps:get(args, Request, []),
                            case started(gen_call(Pid, {start_child, Args}, Timeout)) of
                                {ok, Child} -> #{supervisor => Pid, id => undefined, pid => Child};
                                Error -> Error
                            end;
                        _ -> {error, simple_takes_args}
                    end;
                dynamic ->
                    case spec(Request#{id => undefined}) of
                        {ok, Spec} -> start_dynamic(Pid, Spec, Timeout);
                        Error -> Error
                    end;
                Other ->
                    {error, {use_add_child, Other}}
            end;
        Error -> Error
    end.

%% DynamicSupervisor:start_child/2 validates the spec and calls the supervisor
%% (with no timeout of its own): run it in a monitored process, bounded by Timeout.
start_dynamic(Sup, Spec, Timeout) ->
    Caller = self(),
    {Worker, Ref} = spawn_monitor(fun() ->
        Caller ! {self(), try 'Elixir.DynamicSupervisor':start_child(Sup, Spec)
                          catch exit:Exit -> {'EXIT', Exit};
                                error:Error:Stack -> {'EXIT', {Error, Stack}}
                          end}
    end),
    receive
        {Worker, Result} ->
            erlang:demonitor(Ref, [flush]),
            case started({ok, Result}) of
                {ok, Child} -> #{supervisor => Sup, id => undefined, pid => Child};
                Error -> Error
            end;
        {'DOWN', Ref, process, Worker, Reason} -> {error, {start_failed, bound_term(Reason)}}
    after Timeout ->
        exit(Worker, kill),
        erlang:demonitor(Ref, [flush]),
        {error, timeout}
    end.

%% @doc Start a supervisor outside any supervision tree (unlinked, so it
%% outlives this call): supervisor:start_link(Module, Arg), registered as Name
%% when Name (binary) is given, which must be an existing atom no process has.
-spec start_supervisor(binary(), term(), binary() | undefined) -> map() | {error, term()}.
start_supervisor(ModBin, Arg, NameBin) ->
    %% The name first: a refused request loads no code.
    case name(NameBin) of
        {error, _} = Error -> Error;
        {ok, Name} -> start_named(mfa(ModBin, <<"init">>, [Arg]), Arg, Name)
    end.

start_named({error, _} = Error, _Arg, _Name) ->
    Error;
start_named({ok, {M, _, _}}, Arg, Name) ->
    Caller = self(),
    %% Started from a process of its own that unlinks at once, so the new
    %% supervisor's parent never dies under it while this call returns.
    {Starter, Ref} = spawn_monitor(fun() ->
        Result = case Name of
                     undefined -> start_link_caught([M, Arg]);
                     _ -> start_link_caught([{local, Name}, M, Arg])
                 end,
        case Result of {ok, P} -> unlink(P); _ -> ok end,
        Caller ! {self(), Result}
    end),
    receive
        {Starter, Result} ->
            erlang:demonitor(Ref, [flush]),
            case started({ok, Result}) of
                {ok, Pid} -> #{pid => Pid, name => name_of(Pid), module => M};
                {error, {start_failed, {already_started, P}}} -> {error, {already_started, P}};
                Error -> Error
            end;
        {'DOWN', Ref, process, Starter, Reason} -> {error, {start_failed, bound_term(Reason)}}
    end.

name(undefined) -> {ok, undefined};
name(Bin) ->
    case arsenal_agent:existing_atom(Bin) of
        {ok, Name} ->
            case whereis(Name) of
                undefined -> {ok, Name};
                Pid -> {error, {already_started, Pid}}
            end;
        error -> {error, {new_atom, Bin}}
    end.

%% @doc Stop a supervisor and its whole subtree (proc_lib:stop with reason
%% shutdown: children are shut down in order, as when its parent stops it).
%% A supervisor that is itself a child may be restarted by its parent.
-spec stop_supervisor(binary(), timeout()) -> map() | {error, term()}.
stop_supervisor(Target, Timeout) ->
    case sup(Target) of
        {ok, Pid, _, _} ->
            Name = name_of(Pid),
            Parent = parent_of(Pid),
            try proc_lib:stop(Pid, shutdown, Timeout) of
                ok -> #{pid => Pid, name => Name,
                        parent => case Parent =/= undefined andalso is_tuple(kind(Parent)) of
                                      true -> Parent;
                                      false -> undefined
                                  end}
            catch exit:timeout -> {error, timeout};
                  exit:noproc -> {error, dead};
                  exit:Reason -> {error, {stop_failed, bound_term(Reason)}}
            end;
        Error -> Error
    end.

%% supervisor:start_link/2,3, with a failure returned as the old-style catch gave it.
start_link_caught(Args) ->
    try apply(supervisor, start_link, Args)
    catch
        exit:Exit -> {'EXIT', Exit};
        error:Error:Stack -> {'EXIT', {Error, Stack}}
    end.
