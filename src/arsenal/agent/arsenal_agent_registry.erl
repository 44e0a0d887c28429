%% @doc Arsenal's agent for distributed registries: what one node holds in
%% `global', in its `pg' scopes, and in Horde's registries and supervisors
%% when Horde runs there, in one bounded call.
%%
%% snapshot/3 is what cluster_registries asks every attached node for,
%% concurrently. Every part is bounded:
%%   - global: the size of global's name table (O(1)) and at most Limit
%%     {Name, Pid} rows, read with one ets:select/3 on that table (global's own
%%     table, protected and readable; the layout's first two elements are the
%%     name and the pid in every release since OTP 20);
%%   - pg: scopes are found among at most ?MAX_REGISTERED registered processes
%%     as those owning an ETS table of their own name whose proc_lib initial
%%     call is pg:init/1 (no message is sent to them); at most ?MAX_SCOPES
%%     scopes, Limit groups per scope, MemberLimit pids per group;
%%   - Horde: detected from what is already in the VM (the horde application
%%     loaded, or its modules loaded), never by making an atom: a module name
%%     is looked up with binary_to_existing_atom, which fails when nothing
%%     ever loaded it. Instances are the registered processes Name whose
%%     Name.Supervisor process runs Horde's supervisor module (the naming
%%     Horde.Registry and Horde.DynamicSupervisor use); at most ?MAX_HORDE of
%%     each, read through Horde's public API (count/select, count_children/
%%     which_children, Horde.Cluster.members) in a helper process that is
%%     killed after ?HORDE_TIMEOUT ms, so a busy Horde process cannot hold
%%     the call. which_children is asked only when count_children says the
%%     supervisor has at most MemberLimit children.
%%
%% Keys, values, names and child ids are arbitrary terms: those larger than
%% ?MAX_TERM_WORDS words are replaced by {arsenal_truncated, Text}.
%%
%% Safety: no request data becomes an atom. The arguments are two integers
%% and a list of binaries compared as binaries.
-module(arsenal_agent_registry).

-export([snapshot/3]).

-define(MAX_LIMIT, 1000).
-define(MAX_MEMBERS, 500).
-define(MAX_REGISTERED, 10000).
-define(MAX_SCOPES, 20).
-define(MAX_HORDE, 10).
-define(HORDE_TIMEOUT, 500).
-define(MAX_TERM_WORDS, 64).
-define(TEXT_BYTES, 200).

%% @doc The registries of this node. Kinds: any of <<"global">>, <<"pg">>,
%% <<"horde">> (others are ignored). Limit: names per registry, groups per
%% scope; MemberLimit: pids per group, children per supervisor.
-spec snapshot(pos_integer(), pos_integer(), [binary()]) -> map().
snapshot(Limit0, MemberLimit0, Kinds) when is_integer(Limit0), is_integer(MemberLimit0),
                                           is_list(Kinds) ->
    Limit = clamp(Limit0, ?MAX_LIMIT),
    MemberLimit = clamp(MemberLimit0, ?MAX_MEMBERS),
    Parts = [{global, <<"global">>, fun() -> global_names(Limit) end},
             {pg, <<"pg">>, fun() -> pg_scopes(Limit, MemberLimit) end},
             {horde, <<"horde">>, fun() -> horde(Limit, MemberLimit) end}],
    maps:from_list([{node, node()}, {language, language()}]
                   ++ [{Key, Fun()} || {Key, Kind, Fun} <- Parts, lists:member(Kind, Kinds)]).

clamp(Value, Max) -> max(1, min(Value, Max)).

language() ->
    case erlang:module_loaded('Elixir.Kernel') of
        true -> elixir;
        false -> erlang
    end.

%% ---------------------------------------------------------------- global

global_names(Limit) ->
    case ets:info(global_names, size) of
        undefined ->
            #{running => false, count => 0, names => [], truncated => false};
        Count ->
            Spec = [{'_', [], [{{{element, 1, '$_'}, {element, 2, '$_'}}}]}],
            Rows = case ets:select(global_names, Spec, Limit) of
                       '$end_of_table' -> [];
                       {Found, _Continuation} -> Found
                   end,
            Names = [{small(Name), Pid} || {Name, Pid} <- Rows, is_pid(Pid)],
            #{running => true, count => Count, names => Names,
              truncated => Count > length(Rows)}
    end.

%% ---------------------------------------------------------------- pg

pg_scopes(Limit, MemberLimit) ->
    Candidates = [Name || Name <- lists:sublist(erlang:registered(), ?MAX_REGISTERED),
                          is_pg_scope(Name)],
    Scopes = lists:sublist(lists:sort(Candidates), ?MAX_SCOPES),
    #{scope_count => length(Candidates),
      truncated => length(Candidates) > ?MAX_SCOPES,
      scopes => [pg_scope(Scope, Limit, MemberLimit) || Scope <- Scopes]}.

%% A pg scope process owns a named table of its own name: check that (O(1))
%% before reading its dictionary for proc_lib's initial call.
is_pg_scope(Name) ->
    Pid = whereis(Name),
    is_pid(Pid) andalso ets:info(Name, owner) =:= Pid
        andalso initial_call(Pid) =:= {pg, init, 1}.

initial_call(Pid) when is_pid(Pid) ->
    case erlang:process_info(Pid, dictionary) of
        {dictionary, Dictionary} -> proplists:get_value('$initial_call', Dictionary);
        undefined -> undefined
    end;
initial_call(_) ->
    undefined.

%% pg's table holds {Group, AllMembers, LocalMembers} (OTP 23 onwards).
pg_scope(Scope, Limit, MemberLimit) ->
    Count = case ets:info(Scope, size) of
                undefined -> 0;
                Size -> Size
            end,
    Spec = [{{'$1', '$2', '_'}, [], [{{'$1', '$2'}}]}],
    Rows = try ets:select(Scope, Spec, Limit) of
               '$end_of_table' -> [];
               {Found, _Continuation} -> Found
           catch error:badarg -> []  % the scope stopped meanwhile
           end,
    Groups = [#{group => small(Group),
                member_count => length(Members),
                members => lists:sublist(Members, MemberLimit),
                truncated => length(Members) > MemberLimit}
              || {Group, Members} <- lists:sort(Rows), is_list(Members)],
    #{scope => Scope, group_count => Count, groups => Groups,
      truncated => Count > length(Rows)}.

%% ---------------------------------------------------------------- Horde

horde(Limit, MemberLimit) ->
    Modules = [existing_module(Name) || Name <- [<<"Elixir.Horde.Registry">>,
                                                  <<"Elixir.Horde.DynamicSupervisor">>,
                                                  <<"Elixir.Horde.Cluster">>]],
    App = horde_application(),
    case App =/= undefined orelse lists:any(fun(M) -> M =/= undefined end, Modules) of
        false ->
            #{present => false,
              reason => <<"Horde is not loaded on ", (atom_to_binary(node(), utf8))/binary>>};
        true ->
            [Registry, Supervisor, Cluster] = Modules,
            Instances = horde_instances(),
            #{present => true,
              version => App,
              registries => [horde_registry(Registry, Cluster, Name, Pid, Limit)
                             || {registry, Name, Pid} <- Instances],
              supervisors => [horde_supervisor(Supervisor, Cluster, Name, Pid, MemberLimit)
                              || {supervisor, Name, Pid} <- Instances]}
    end.

%% The module named Name when it is loaded; undefined otherwise. An atom that
%% does not exist names no loaded module, so nothing is created here.
existing_module(Name) ->
    try binary_to_existing_atom(Name, utf8) of
        Module ->
            case code:is_loaded(Module) of
                false -> undefined;
                _ -> Module
            end
    catch error:badarg -> undefined
    end.

%% The version of the horde application when it is loaded, as a binary.
horde_application() ->
    Versions = [Vsn || {App, _, Vsn} <- application:loaded_applications(),
                       atom_to_binary(App, utf8) =:= <<"horde">>],
    case Versions of
        [Vsn | _] when is_list(Vsn) -> unicode:characters_to_binary(Vsn);
        _ -> undefined
    end.

%% {registry | supervisor, Name, Pid} for every registered Name whose
%% Name.Supervisor runs Horde's registry or dynamic supervisor module.
horde_instances() ->
    Registered = lists:sublist(erlang:registered(), ?MAX_REGISTERED),
    Texts = maps:from_list([{atom_to_binary(N, utf8), N} || N <- Registered]),
    Found = lists:filtermap(
              fun(Name) ->
                      Text = atom_to_binary(Name, utf8),
                      case maps:find(<<Text/binary, ".Supervisor">>, Texts) of
                          {ok, SupName} -> horde_kind(Name, SupName);
                          error -> false
                      end
              end, lists:sort(Registered)),
    Registries = [I || {registry, _, _} = I <- Found],
    Supervisors = [I || {supervisor, _, _} = I <- Found],
    lists:sublist(Registries, ?MAX_HORDE) ++ lists:sublist(Supervisors, ?MAX_HORDE).

horde_kind(Name, SupName) ->
    Kind = case initial_call(whereis(SupName)) of
               {supervisor, Module, 1} when is_atom(Module) ->
                   case atom_to_binary(Module, utf8) of
                       <<"Elixir.Horde.RegistrySupervisor">> -> registry;
                       <<"Elixir.Horde.Registry">> -> registry;
                       <<"Elixir.Horde.DynamicSupervisor">> -> supervisor;
                       _ -> undefined
                   end;
               _ -> undefined
           end,
    case {Kind, whereis(Name)} of
        {undefined, _} -> false;
        {_, Pid} when is_pid(Pid) -> {true, {Kind, Name, Pid}};
        _ -> false
    end.

horde_registry(Registry, Cluster, Name, Pid, Limit) ->
    Base = #{name => Name, pid => Pid, members => horde_members(Cluster, Name)},
    Count = horde_call(fun() -> Registry:count(Name) end),
    case Count of
        {ok, N} when is_integer(N), N =< Limit ->
            Spec = [{{'$1', '$2', '$3'}, [], [{{'$1', '$2', '$3'}}]}],
            entries(Base, N, horde_call(fun() -> Registry:select(Name, Spec) end), Limit);
        {ok, N} when is_integer(N) ->
            %% More than Limit: Horde.Registry.select/2 has no limit; read at most
            %% Limit rows of its keys table ({Key, Member, {Pid, Value}}) instead.
            entries(Base, N, horde_call(fun() -> keys_rows(Name, Limit) end), Limit);
        {ok, Other} ->
            Base#{error => text(Other)};
        {error, Reason} ->
            Base#{error => Reason}
    end.

keys_rows(Name, Limit) ->
    Table = binary_to_existing_atom(<<"keys_", (atom_to_binary(Name, utf8))/binary>>, utf8),
    case ets:select(Table, [{{'$1', '_', {'$2', '$3'}}, [], [{{'$1', '$2', '$3'}}]}], Limit) of
        '$end_of_table' -> [];
        {Rows, _Continuation} -> Rows
    end.

entries(Base, Count, {ok, Rows}, Limit) when is_list(Rows) ->
    Shown = lists:sublist(Rows, Limit),
    Base#{key_count => Count, truncated => Count > length(Shown),
          entries => [{small(Key), Pid, small(Value)} || {Key, Pid, Value} <- Shown]};
entries(Base, Count, {ok, Other}, _Limit) ->
    Base#{key_count => Count, error => text(Other)};
entries(Base, Count, {error, Reason}, _Limit) ->
    Base#{key_count => Count, error => Reason}.

horde_supervisor(Supervisor, Cluster, Name, Pid, MemberLimit) ->
    Base = #{name => Name, pid => Pid, members => horde_members(Cluster, Name)},
    case horde_call(fun() -> Supervisor:count_children(Name) end) of
        {ok, Counts} ->
            Active = active(Counts),
            Base1 = Base#{child_count => Active},
            case is_integer(Active) andalso Active =< MemberLimit of
                true ->
                    case horde_call(fun() -> Supervisor:which_children(Name) end) of
                        {ok, Children} when is_list(Children) ->
                            Shown = lists:sublist(Children, MemberLimit),
                            Base1#{truncated => length(Children) > MemberLimit,
                                   children => [child(C) || C <- Shown]};
                        {ok, Other} -> Base1#{error => text(Other)};
                        {error, Reason} -> Base1#{error => Reason}
                    end;
                false ->
                    Base1#{truncated => true, children => []}
            end;
        {error, Reason} ->
            Base#{error => Reason}
    end.

active(Counts) when is_map(Counts) -> maps:get(active, Counts, undefined);
active(Counts) when is_list(Counts) -> proplists:get_value(active, Counts);
active(_) -> undefined.

child({Id, Pid, Type, Modules}) ->
    #{id => small(Id), pid => Pid, type => Type, modules => small(Modules)};
child(Other) ->
    #{id => small(Other), pid => undefined, type => undefined, modules => []}.

horde_members(undefined, _Name) ->
    [];
horde_members(Cluster, Name) ->
    case horde_call(fun() -> Cluster:members(Name) end) of
        {ok, Members} when is_list(Members) -> [small(M) || M <- lists:sublist(Members, ?MAX_LIMIT)];
        _ -> []
    end.

%% Fun() in a helper process, killed after ?HORDE_TIMEOUT ms: Horde's calls
%% wait up to 5 s (members) or forever (count_children, which_children).
horde_call(Fun) ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({arsenal_ok, Fun()}) end),
    receive
        {'DOWN', Ref, process, Pid, {arsenal_ok, Value}} -> {ok, Value};
        {'DOWN', Ref, process, Pid, Reason} -> {error, text(Reason)}
    after ?HORDE_TIMEOUT ->
        exit(Pid, kill),
        erlang:demonitor(Ref, [flush]),
        {error, <<"no answer within 500 ms">>}
    end.

%% ---------------------------------------------------------------- terms

%% Small terms as they are; large ones as a bounded text marker.
small(Term) ->
    case erts_debug:flat_size(Term) =< ?MAX_TERM_WORDS of
        true -> Term;
        false -> {arsenal_truncated, text(Term)}
    end.

text(Term) ->
    Text = unicode:characters_to_binary(io_lib:format("~0tP", [Term, 8])),
    case byte_size(Text) > ?TEXT_BYTES of
        true -> <<(binary:part(Text, 0, ?TEXT_BYTES))/binary, "...">>;
        false -> Text
    end.
