%% @doc Arsenal's agent for relationships between processes: the process tree
%% from applications down, the graph of links, monitors and parents, what a
%% process's death would do, and what a process depends on.
%%
%% Everything here reads only: no process is killed, suspended or traced. The
%% one kind of message sent is a call to a supervisor (which_children or
%% sys:get_state), always with a timeout, under an overall deadline, so a stuck
%% supervisor is an error on its own node of the answer, never a hang.
%%
%% Parents come from process_info(P, parent) (OTP 25), with proc_lib's
%% '$ancestors' as a fallback; a process's application from its group leader
%% (the application master), read once from ac_tab. Supervisors are recognised
%% from their dictionary ('$initial_call'), without messaging them.
%%
%% Safety: names and exit reasons arrive as binaries and are looked up with
%% binary_to_existing_atom; pids are parsed by arsenal_agent:target/1. No atom
%% is made. Every list is capped and every walk bounded by a node limit.
-module(arsenal_agent_rel).

-export([process_tree/1, graph/1, impact/4, dependencies/3]).

-define(MAX_NODES, 5000).
-define(MAX_EDGES, 10000).
-define(MAX_DEPTH, 50).
-define(MAX_LIST, 1000).
-define(DEADLINE_MS, 20000).
-define(CHAIN, 20).

%% ================================================================== common

%% The local process that spawned P: process_info parent (OTP 25), else the
%% head of proc_lib's '$ancestors' (resolved when it is a name). A parent on
%% another node (erpc spawns) counts as none.
-spec parent(pid()) -> pid() | undefined.
parent(P) ->
    try erlang:process_info(P, [parent, initial_call]) of
        [{parent, Parent}, _] when is_pid(Parent), node(Parent) =:= node() -> Parent;
        [{parent, _}, {initial_call, {proc_lib, init_p, 5}}] -> ancestor(P);
        _ -> undefined
    catch error:badarg -> ancestor(P) % before OTP 25: no parent item
    end.

ancestor(P) ->
    case erlang:process_info(P, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind('$ancestors', 1, Dict) of
                {_, [Pid | _]} when is_pid(Pid), node(Pid) =:= node() -> Pid;
                {_, [Name | _]} when is_atom(Name) ->
                    case whereis(Name) of
                        Pid when is_pid(Pid) -> Pid;
                        _ -> undefined
                    end;
                _ -> undefined
            end;
        undefined -> undefined
    end.

%% One pass over the processes: Parent => [Child] (children in pid order) and
%% the processes with no live local parent (roots).
kids_and_roots() ->
    Me = self(),
    {Kids, NoParent} =
        lists:foldl(
          fun(P, Acc) when P =:= Me -> Acc;
             (P, {K, R}) ->
                  case parent(P) of
                      undefined -> {K, [P | R]};
                      Par -> {maps:update_with(Par, fun(L) -> [P | L] end, [P], K), R}
                  end
          end, {#{}, []}, erlang:processes()),
    Orphans = lists:append([L || {Par, L} <- maps:to_list(Kids), Par =:= Me orelse not is_process_alive(Par)]),
    {maps:map(fun(_, L) -> lists:reverse(L) end, Kids), lists:sort(NoParent ++ Orphans)}.

kids(P, Kids) -> maps:get(P, Kids, []).

%% Supervisor or not, from the dictionary only: arsenal_agent_sup's test
%% (no message is sent to the process).
-spec sup_kind(pid()) -> {supervisor | dynamic, module()} | other | dead.
sup_kind(P) -> arsenal_agent_sup:kind(P).

is_supervisor(P) -> is_tuple(sup_kind(P)).

%% Whether P is an application master, or the helper process it spawns to run
%% the application's start/2 (the top supervisor's parent).
role(P) ->
    case erlang:process_info(P, initial_call) of
        {initial_call, {application_master, start_it, 4}} -> app_helper;
        {initial_call, {proc_lib, init_p, 5}} ->
            case erlang:process_info(P, dictionary) of
                {dictionary, Dict} ->
                    case lists:keyfind('$initial_call', 1, Dict) of
                        {_, {application_master, init, 4}} -> app_master;
                        _ -> other
                    end;
                undefined -> other
            end;
        _ -> other
    end.

%% Running applications: #{MasterPid => {App, Vsn}}, read from ac_tab (no
%% message to application_controller).
apps() ->
    Masters = try ets:match(ac_tab, {{application_master, '$1'}, '$2'})
              catch error:badarg -> []
              end,
    maps:from_list([{M, {App, vsn(App)}} || [App, M] <- Masters, is_pid(M)]).

vsn(App) ->
    case application:get_key(App, vsn) of
        {ok, V} when is_list(V) -> unicode:characters_to_binary(V);
        _ -> undefined
    end.


%% The running application a request names: {ok, App, Master} or an error.
application_named(Bin, Apps) ->
    case arsenal_agent:existing_atom(Bin) of
        {ok, App} ->
            case [M || {M, {A, _}} <- maps:to_list(Apps), A =:= App] of
                [M | _] -> {ok, App, M};
                [] -> {error, {unknown_application, Bin}}
            end;
        error -> {error, {unknown_application, Bin}}
    end.

name_of(P) when is_pid(P) ->
    case erlang:process_info(P, registered_name) of
        {registered_name, N} when is_atom(N) -> N;
        _ -> undefined
    end;
name_of(_) -> undefined.

%% What a tree or graph node shows of a process; gone when it died meanwhile.
describe(P, Apps) ->
    case erlang:process_info(P, [registered_name, memory, message_queue_len, group_leader]) of
        [{registered_name, N}, {memory, M}, {message_queue_len, Q}, {group_leader, GL}] ->
            #{pid => P, name => case N of [] -> undefined; _ -> N end, memory => M,
              message_queue_len => Q, application => app_of(GL, Apps)};
        undefined -> gone
    end.

app_of(GL, Apps) ->
    case maps:find(GL, Apps) of
        {ok, {App, _}} -> App;
        error -> undefined
    end.

deadline() -> erlang:monotonic_time(millisecond) + ?DEADLINE_MS.

past(Deadline) -> erlang:monotonic_time(millisecond) > Deadline.

clamp(V, Lo, Hi, _Default) when is_integer(V) -> max(Lo, min(V, Hi));
clamp(_, _, _, Default) -> Default.

%% A supervisor's running children, newest first (as which_children lists
%% them): {ok, [{Pid, Type}]} or an error.
which_children(P, Timeout) ->
    try gen_server:call(P, which_children, Timeout) of
        L when is_list(L) -> {ok, [{C, T} || {_, C, T, _} <- L, is_pid(C)]};
        _ -> {error, bad_answer}
    catch exit:{timeout, _} -> {error, timeout};
          exit:{noproc, _} -> {error, dead};
          exit:{Reason, _} when is_atom(Reason) -> {error, Reason};
          exit:_ -> {error, call_failed}
    end.

%% ================================================================== process tree

%% @doc The process tree: each running application (or only Opts' application)
%% -> its master -> its top supervisor -> the supervision tree, and under every
%% process the processes it spawned that no supervisor supervises
%% (supervised => false); then (without an application) the processes that no
%% application's tree reaches, under their own roots (init, erts helpers,
%% processes spawned from a shell or another node).
%%
%% Opts: application (binary), max_depth (1..50), max_nodes (1..5000),
%% timeout (ms per supervisor call).
%% Cost: one process_info(P, [parent, initial_call]) per process (plus a
%% dictionary copy for proc_lib processes with no parent), then for every node
%% shown a process_info of four cheap items and, per supervisor, one
%% which_children with a timeout, all under a 20 s deadline.
-spec process_tree(map()) -> map() | {error, term()}.
process_tree(Opts) ->
    Apps = apps(),
    Which = case maps:get(application, Opts, undefined) of
                undefined -> {ok, all};
                Bin -> application_named(Bin, Apps)
            end,
    case Which of
        {error, _} = Error -> Error;
        _ ->
            {Kids, Roots} = kids_and_roots(),
            St0 = #{kids => Kids, apps => Apps, visited => #{}, count => 0,
                    max_nodes => clamp(maps:get(max_nodes, Opts, 1000), 1, ?MAX_NODES, 1000),
                    max_depth => clamp(maps:get(max_depth, Opts, 12), 1, ?MAX_DEPTH, 12),
                    timeout => clamp(maps:get(timeout, Opts, 2000), 100, 10000, 2000),
                    deadline => deadline(), truncated => false, supervised => 0, unsupervised => 0},
            Selected = case Which of
                           {ok, all} -> lists:sort([{App, M} || {M, {App, _}} <- maps:to_list(Apps)]);
                           {ok, App, M} -> [{App, M}]
                       end,
            {AppNodes, St1} = lists:mapfoldl(fun({App, M}, S) -> app_node(App, M, S) end, St0, Selected),
            {Other, St2} = case Which of
                               {ok, all} -> walk_list([{R, false} || R <- Roots], 1, St1);
                               _ -> {[], St1}
                           end,
            #{applications => [N || N <- AppNodes, N =/= skip], other => Other,
              node_count => maps:get(count, St2), supervised_count => maps:get(supervised, St2),
              unsupervised_count => maps:get(unsupervised, St2), truncated => maps:get(truncated, St2),
              max_depth => maps:get(max_depth, St2), max_nodes => maps:get(max_nodes, St2)}
    end.

app_node(_App, _M, #{count := C, max_nodes := Max} = St) when C >= Max ->
    {skip, St#{truncated := true}};
app_node(App, Master, #{apps := Apps, count := C} = St) ->
    {_, Vsn} = maps:get(Master, Apps),
    {Children, St1} = walk_list([{Master, master}], 1, St#{count := C + 1}),
    {#{kind => application, name => App, version => Vsn, application => App,
       children => Children}, St1}.

walk_list(Items, Depth, St) ->
    {Nodes, St1} = lists:mapfoldl(fun({P, How}, S) -> walk(P, How, Depth, S) end, St, Items),
    {[N || N <- Nodes, N =/= skip], St1}.

%% How is master (an application master), top (an application's top
%% supervisor), true (a supervisor's child) or false (spawned, unsupervised).
walk(P, How, Depth, #{visited := V, count := C, max_nodes := Max} = St) ->
    case maps:is_key(P, V) of
        true -> {skip, St};
        false when C >= Max -> {skip, St#{truncated := true}};
        false ->
            case describe(P, maps:get(apps, St)) of
                gone -> {skip, St#{visited := V#{P => true}}};
                Info -> expand(P, How, Info, Depth, St#{visited := V#{P => true}, count := C + 1})
            end
    end.

expand(P, How, Info, Depth, St0) ->
    Sup = sup_kind(P),
    Kind = case {How, Sup} of
               {master, _} -> application_master;
               {_, {_, _}} -> supervisor;
               {true, _} -> worker;
               {top, _} -> worker;
               _ -> process
           end,
    Supervised = How =/= false,
    St = case Supervised of
             true -> maps:update_with(supervised, fun(N) -> N + 1 end, St0);
             false -> maps:update_with(unsupervised, fun(N) -> N + 1 end, St0)
         end,
    Node = Info#{kind => Kind, supervised => Supervised},
    {SupChildren0, Extra} = supervised_children(P, Sup, Kind, St),
    Spawned = spawned(P, How, St),
    %% A supervisor that did not answer: the processes it spawned and is
    %% linked to are taken as its children (a supervisor links to each child).
    SupChildren = case {Kind, Extra} of
                      {supervisor, #{error := _}} ->
                          Links = set(links(P)),
                          [C || C <- Spawned, maps:is_key(C, Links)];
                      _ -> SupChildren0
                  end,
    SpawnedHow = case How of master -> top; _ -> false end,
    Supervised1 = set(SupChildren),
    Items = [{C, true} || C <- SupChildren]
        ++ [{C, SpawnedHow} || C <- Spawned, not maps:is_key(C, Supervised1)],
    Node1 = maps:merge(Node, Extra),
    case {Items, Depth >= maps:get(max_depth, St)} of
        {[], _} -> {Node1#{children => []}, St};
        {_, true} -> {Node1#{children => [], truncated => true}, St#{truncated := true}};
        {_, false} ->
            {Children, St1} = walk_list(Items, Depth + 1, St),
            Cut = length(Children) < length([I || {I, _} <- Items, not maps:is_key(I, maps:get(visited, St))]),
            {Node1#{children => Children, truncated => Cut}, St1}
    end.

%% A supervisor's running children (which_children, bounded by the deadline);
%% an application master's top supervisor (through its start_it helper).
supervised_children(P, Sup, supervisor, #{timeout := T, deadline := D}) ->
    case past(D) of
        true -> {[], #{error => deadline}};
        false ->
            case which_children(P, T) of
                {ok, L} ->
                    %% Start order; a dynamic supervisor's children have none: pid order.
                    Pids = [C || {C, _} <- L],
                    case Sup of
                        {dynamic, _} -> {lists:sort(Pids), #{}};
                        _ -> {lists:reverse(Pids), #{}}
                    end;
                {error, Reason} -> {[], #{error => Reason}}
            end
    end;
supervised_children(_P, _Sup, _Kind, _St) ->
    {[], #{}}.

set(List) -> maps:from_list([{X, true} || X <- List]).

%% The processes P spawned; for an application master, what its start_it
%% helper spawned (the top supervisor), the helper itself being part of the
%% master.
spawned(P, master, #{kids := Kids}) ->
    lists:append([case role(K) of
                      app_helper -> kids(K, Kids);
                      _ -> [K]
                  end || K <- kids(P, Kids)]);
spawned(P, _, #{kids := Kids}) ->
    kids(P, Kids).

%% ================================================================== graph

%% @doc Nodes and edges around processes: link (once per pair), monitor
%% (monitoring -> monitored, by-name monitors resolved) and parent (parent ->
%% child). Scope (Opts): pid (binary) with radius (1..5 hops), or application
%% (binary), or the whole node. Linked ports appear as port nodes. At most
%% max_nodes (1..2000) and max_edges (1..10000).
%% Cost: for a pid, one pass of process_info(parent) over every process (to
%% find children), then per node one process_info of links, monitors and
%% monitored_by (copies: as long as the lists are).
-spec graph(map()) -> map() | {error, term()}.
graph(Opts) ->
    MaxNodes = clamp(maps:get(max_nodes, Opts, 200), 1, 2000, 200),
    MaxEdges = clamp(maps:get(max_edges, Opts, 1000), 1, ?MAX_EDGES, 1000),
    Apps = apps(),
    Seeds = case {maps:get(pid, Opts, undefined), maps:get(application, Opts, undefined)} of
                {undefined, undefined} -> {ok, all};
                {undefined, AppBin} ->
                    case application_named(AppBin, Apps) of
                        {ok, _, M} -> {ok, {group_leader, M}};
                        Error -> Error
                    end;
                {Target, _} ->
                    case arsenal_agent:target(Target) of
                        {ok, Pid} ->
                            case is_process_alive(Pid) of
                                true -> {ok, {pid, Pid}};
                                false -> {error, dead}
                            end;
                        Error -> Error
                    end
            end,
    case Seeds of
        {error, _} = E -> E;
        {ok, Scope} ->
            {Members, Cut1} = members(Scope, clamp(maps:get(radius, Opts, 1), 1, 5, 1), MaxNodes),
            {Edges, Cut2} = edges(Members, MaxEdges),
            Nodes = [N || M <- Members, N <- [graph_node(M, Apps)], N =/= gone],
            #{nodes => Nodes, edges => Edges, node_count => length(Nodes), edge_count => length(Edges),
              truncated => Cut1 orelse Cut2, max_nodes => MaxNodes, max_edges => MaxEdges}
    end.

%% The nodes of the graph, in order, and whether the limit cut them.
members(all, _Radius, Max) ->
    with_ports(erlang:processes() -- [self()], Max);
members({group_leader, M}, _Radius, Max) ->
    Ps = [P || P <- erlang:processes(), P =/= self(),
               erlang:process_info(P, group_leader) =:= {group_leader, M}],
    with_ports(Ps, Max);
members({pid, Pid}, Radius, Max) ->
    {Kids, _} = kids_and_roots(),
    bfs([Pid], Radius, Kids, Max, #{Pid => true}, [Pid]).

with_ports(Ps, Max) ->
    Taken = lists:sublist(Ps, Max),
    Ports = lists:usort([L || P <- Taken, L <- links(P), is_port(L)]),
    Room = Max - length(Taken),
    {Taken ++ lists:sublist(Ports, max(0, Room)), length(Ps) > Max orelse length(Ports) > Room}.

bfs(_Frontier, 0, _Kids, _Max, _Seen, Acc) ->
    {lists:reverse(Acc), false};
bfs([], _Radius, _Kids, _Max, _Seen, Acc) ->
    {lists:reverse(Acc), false};
bfs(Frontier, Radius, Kids, Max, Seen0, Acc0) ->
    Next = lists:append([neighbours(P, Kids) || P <- Frontier, is_pid(P)]),
    {Seen, Acc, New, Cut} =
        lists:foldl(fun(_N, {S, A, F, true}) -> {S, A, F, true};
                       (N, {S, A, F, false}) ->
                            case maps:is_key(N, S) of
                                true -> {S, A, F, false};
                                false when length(A) >= Max -> {S, A, F, true};
                                false -> {S#{N => true}, [N | A], [N | F], false}
                            end
                    end, {Seen0, Acc0, [], false}, Next),
    case Cut of
        true -> {lists:reverse(Acc), true};
        false -> bfs(lists:reverse(New), Radius - 1, Kids, Max, Seen, Acc)
    end.

neighbours(P, Kids) ->
    Me = self(),
    case erlang:process_info(P, [links, monitors, monitored_by]) of
        [{links, Links}, {monitors, Mons}, {monitored_by, By}] ->
            Up = case parent(P) of undefined -> []; Par -> [Par] end,
            [N || N <- Links ++ [T || {_, T, _} <- [monitor_target(M) || M <- Mons]] ++ By ++ Up ++ kids(P, Kids),
                  (is_pid(N) andalso node(N) =:= node() andalso N =/= Me) orelse
                      (is_port(N) andalso node(N) =:= node())];
        undefined -> []
    end.

links(P) ->
    case erlang:process_info(P, links) of
        {links, L} -> L;
        undefined -> []
    end.

%% A monitor of process_info(P, monitors) as {Type, Target | undefined, ByName}.
monitor_target({process, Pid}) when is_pid(Pid) -> {process, Pid, undefined};
monitor_target({process, {Name, Node}}) when Node =:= node() -> {process, whereis(Name), Name};
monitor_target({port, Port}) when is_port(Port) -> {port, Port, undefined};
monitor_target({port, {Name, Node}}) when Node =:= node() -> {port, whereis(Name), Name};
monitor_target(Other) -> {other, undefined, Other}.

edges(Members, Max) ->
    Set = maps:from_list([{M, true} || M <- Members]),
    All = lists:append([process_edges(P, Set) || P <- Members, is_pid(P)]),
    {lists:sublist(All, Max), length(All) > Max}.

process_edges(P, Set) ->
    case erlang:process_info(P, [links, monitors]) of
        [{links, Links}, {monitors, Mons}] ->
            In = fun(X) -> maps:is_key(X, Set) end,
            Parent = case parent(P) of
                         undefined -> [];
                         Par -> [#{type => parent, from => Par, to => P} || In(Par)]
                     end,
            [#{type => link, from => P, to => L} || L <- Links, In(L), is_port(L) orelse P < L]
                ++ [#{type => monitor, from => P, to => T, by_name => Name}
                    || M <- Mons, {_, T, Name} <- [monitor_target(M)], T =/= undefined, In(T)]
                ++ Parent;
        undefined -> []
    end.

graph_node(Port, _Apps) when is_port(Port) ->
    case erlang:port_info(Port, name) of
        {name, N} ->
            Mem = case erlang:port_info(Port, memory) of {memory, M} -> M; _ -> 0 end,
            Queue = case erlang:port_info(Port, queue_size) of {queue_size, Q} -> Q; _ -> 0 end,
            #{id => Port, name => unicode:characters_to_binary(N), kind => port, application => undefined,
              memory => Mem, message_queue_len => Queue};
        undefined -> gone
    end;
graph_node(P, Apps) ->
    case describe(P, Apps) of
        gone -> gone;
        Info ->
            Kind = case sup_kind(P) of {_, _} -> supervisor; _ -> process end,
            maps:remove(pid, Info#{id => P, kind => Kind})
    end.

%% ================================================================== failure impact

%% @doc What the death of Target with ReasonBin (kill | normal | shutdown |
%% any existing atom) would do, without killing anything: the processes its
%% links take down (kill arrives as killed; normal does not propagate to
%% processes that do not trap exits; a gen process stops when its parent
%% exits), what its supervisor restarts (strategy, restart type, restart
%% intensity: past it the supervisor gives up and the analysis goes on at its
%% own supervisor), and the processes notified by a monitor or an 'EXIT'
%% message. Opts: max_affected (1..1000), max_depth (1..20); Timeout: ms for
%% each supervisor's sys:get_state.
%% Cost: per affected process, one process_info; per supervisor met, one
%% sys:get_state with a timeout, all under a 20 s deadline.
-spec impact(binary(), binary(), map(), timeout()) -> map() | {error, term()}.
impact(Target, ReasonBin, Opts, Timeout) ->
    case {exit_reason(ReasonBin), arsenal_agent:target(Target)} of
        {error, _} -> {error, {bad_reason, ReasonBin}};
        {_, {error, _} = Error} -> Error;
        {{ok, Reason}, {ok, Pid}} ->
            case is_process_alive(Pid) of
                false -> {error, dead};
                true -> impact_of(Pid, Reason, Opts, Timeout)
            end
    end.

exit_reason(Bin) ->
    case arsenal_agent:existing_atom(Bin) of
        {ok, A} -> {ok, A};
        error -> error
    end.

impact_of(Pid, Reason, Opts, Timeout) ->
    Exit = case Reason of kill -> killed; R -> R end,
    St0 = #{entries => #{}, order => [], sups => #{}, count => 0, truncated => false,
            max => clamp(maps:get(max_affected, Opts, 200), 1, ?MAX_LIST, 200),
            max_depth => clamp(maps:get(max_depth, Opts, 10), 1, 20, 10),
            timeout => Timeout, deadline => deadline(), notes => []},
    Why = iolist_to_binary(io_lib:format("exits with reason ~0tp (the process analysed)", [Exit])),
    St1 = add(Pid, dies, Why, 0, St0),
    St = deaths([{Pid, Exit, 0, false}], St1),
    Entries = maps:get(entries, St),
    Rows = [maps:get(P, Entries) || P <- lists:reverse(maps:get(order, St))],
    #{pid => Pid, reason => Reason, exit_reason => Exit, affected => Rows,
      truncated => maps:get(truncated, St), notes => lists:reverse(maps:get(notes, St))}.

%% Add or update the entry of P. A death beats a notification; an existing
%% death is only refined by later sentences.
add(P, Effect, Why, Depth, #{entries := E, order := O, count := C, max := Max} = St) ->
    case maps:find(P, E) of
        {ok, #{effect := notified} = Old} when Effect =/= notified ->
            St#{entries := E#{P := Old#{effect := Effect, why := [Why | maps:get(why, Old)]}}};
        {ok, _} -> St;
        error when C >= Max -> St#{truncated := true};
        error ->
            Entry = #{pid => P, name => name_of(P), effect => Effect, why => [Why], depth => Depth},
            St#{entries := E#{P => Entry}, order := [P | O], count := C + 1}
    end.

%% Record that P dies and queue its death, once: a process left out (the
%% limit was reached) is not followed, so the walk always ends.
doomed(P, Effect, Why, Depth, Death, {Acc, St}) ->
    St1 = add(P, Effect, Why, Depth, St),
    case dead(P, St1) andalso not dead(P, St) of
        true -> {Acc ++ [Death], St1};
        false -> {Acc, St1}
    end.

%% Change the effect of P (already listed) and add a sentence. A supervisor
%% that escalates stays escalates: what its own supervisor does next is told
%% by the sentence.
set(P, Effect, Why, #{entries := E} = St) ->
    case maps:find(P, E) of
        {ok, #{effect := escalates} = Old} ->
            St#{entries := E#{P := Old#{why := [Why | maps:get(why, Old)]}}};
        {ok, Old} -> St#{entries := E#{P := Old#{effect := Effect, why := [Why | maps:get(why, Old)]}}};
        error -> St
    end.

dead(P, #{entries := E}) ->
    case maps:find(P, E) of
        {ok, #{effect := notified}} -> false;
        {ok, _} -> true;
        error -> false
    end.

note(Text, #{notes := N} = St) -> St#{notes := [Text | N]}.

%% Breadth first over deaths: {Pid, ExitReason, Depth, ByItsSupervisor}.
deaths([], St) ->
    St;
deaths([{P, R, D, Handled} | Rest], St0) ->
    case D >= maps:get(max_depth, St0) of
        true -> deaths(Rest, St0#{truncated := true});
        false ->
            {More1, St1, Sup} = case Handled of
                                    true -> {[], St0, parent(P)};
                                    false -> supervisor_reaction(P, R, D, St0)
                                end,
            {More2, St2} = link_reaction(P, R, D, Sup, St1),
            St3 = monitor_reaction(P, R, D, St2),
            deaths(Rest ++ More1 ++ More2, St3)
    end.

%% What P's supervisor does about its death. Returns {NewDeaths, St, Sup}.
supervisor_reaction(P, R, D, St) ->
    Parent = parent(P),
    case Parent =/= undefined andalso role(Parent) of
        app_helper -> {[], app_stops(P, Parent, R, D, St), Parent};
        _ when Parent =:= undefined -> {[], St, undefined};
        _ ->
            case dead(Parent, St) orelse not is_supervisor(Parent) of
                true -> {[], St, undefined};
                false ->
                    case sup_state(Parent, St) of
                        {{ok, S}, St1} -> restart(P, R, D, Parent, S, St1);
                        {{error, Why}, St1} ->
                            Text = fmt("its supervisor ~s could not be read (~0tp): whether it restarts it "
                                       "is unknown", [who(Parent), Why]),
                            {[], set(P, dies, Text, St1), Parent}
                    end
            end
    end.

app_stops(Top, Helper, R, D, St) ->
    Master = parent(Helper),
    App = case application:get_application(Top) of {ok, A} -> A; undefined -> undefined end,
    Why = fmt("the top supervisor of application ~0tp exits (~0tp): the application stops; if it is a "
              "permanent application the whole node stops", [App, R]),
    St1 = case Master of
              undefined -> St;
              _ -> add(Master, escalates, Why, D + 1, St)
          end,
    note(Why, St1).

restart(P, R, D, Sup, #{children := Children, strategy := Strategy} = S, St) ->
    case lists:keyfind(P, 2, Children) of
        false ->
            {[], set(P, dies, fmt("its parent ~s is a supervisor that does not supervise it", [who(Sup)]), St),
             Sup};
        {_Id, _, Restart} ->
            case restarts(Restart, R) of
                false ->
                    Text = fmt("its supervisor ~s does not restart it (restart type ~s, exit reason ~0tp)",
                               [who(Sup), Restart, R]),
                    {[], set(P, not_restarted, Text, St), Sup};
                true ->
                    case exceeds(S) of
                        true -> give_up(P, D, Sup, S, St);
                        false -> restart_by_strategy(P, D, Sup, Strategy, Children, St)
                    end
            end
    end.

restarts(permanent, _) -> true;
restarts(temporary, _) -> false;
restarts(transient, R) -> not (R =:= normal orelse R =:= shutdown orelse
                                   (is_tuple(R) andalso tuple_size(R) =:= 2 andalso element(1, R) =:= shutdown));
restarts(_, _) -> true.

exceeds(#{intensity := I, recent := C}) -> C + 1 > I.

restart_by_strategy(P, D, Sup, Strategy, Children, St) ->
    St1 = set(P, restarted, fmt("its supervisor ~s (~s) restarts it", [who(Sup), Strategy]), St),
    Others = case Strategy of
                 one_for_all -> [C || {_, Pid, _} = C <- Children, Pid =/= P];
                 rest_for_one -> after_it(P, Children);
                 _ -> []
             end,
    {Deaths, St2} = lists:foldl(
                      fun({_, Pid, Restart}, {Acc, S0}) ->
                              case dead(Pid, S0) of
                                  true -> {Acc, S0};
                                  false ->
                                      {Effect, Tail} = sibling_effect(Restart),
                                      Text = fmt("its supervisor ~s (~s) terminates it because ~s died~s",
                                                 [who(Sup), Strategy, who(P), Tail]),
                                      doomed(Pid, Effect, Text, D + 1, {Pid, shutdown, D + 1, true},
                                             {Acc, S0})
                              end
                      end, {[], St1}, Others),
    {Deaths, St2, Sup}.

sibling_effect(temporary) -> {not_restarted, ", and does not restart it (temporary)"};
sibling_effect(_) -> {terminated_and_restarted, ", then starts it again"}.

%% The children started after P (the children list is in start order).
after_it(P, Children) ->
    case lists:dropwhile(fun({_, Pid, _}) -> Pid =/= P end, Children) of
        [_ | Rest] -> Rest;
        [] -> []
    end.

give_up(P, D, Sup, #{intensity := I, period := Per, recent := C, children := Children}, St) ->
    Text = fmt("its supervisor ~s has restarted ~b times in the last ~b s (intensity ~b): one more is too "
               "many, so it terminates its children and exits with reason shutdown", [who(Sup), C, Per, I]),
    St1 = set(P, dies, Text, St),
    Escalates = fmt("restart intensity exceeded (~b restarts in ~b s allowed) after ~s died: it exits with "
                    "reason shutdown", [I, Per, who(P)]),
    {SupDeath, St2} = doomed(Sup, escalates, Escalates, D + 1, {Sup, shutdown, D + 1, false}, {[], St1}),
    St3 = note(fmt("~s escalates: its restart intensity would be exceeded", [who(Sup)]), St2),
    {Deaths, St4} = lists:foldl(
                      fun({_, Pid, _}, {Acc, S0}) ->
                              case dead(Pid, S0) of
                                  true -> {Acc, S0};
                                  false ->
                                      Why = fmt("its supervisor ~s gives up and terminates it", [who(Sup)]),
                                      doomed(Pid, dies, Why, D + 2, {Pid, shutdown, D + 2, true}, {Acc, S0})
                              end
                      end, {[], St3}, Children),
    {Deaths ++ SupDeath, St4, Sup}.

%% The exit signal P's death sends through its links.
link_reaction(P, R, D, Sup, St) ->
    Me = self(),
    Links = [L || L <- links_of(P), is_pid(L), node(L) =:= node(), L =/= Me, L =/= Sup],
    lists:foldl(fun(L, {Acc, S}) -> linked(L, P, R, D, Acc, S) end, {[], St}, Links).

links_of(P) ->
    case erlang:process_info(P, links) of
        {links, L} -> L;
        undefined -> []
    end.

linked(_L, _P, _R, _D, Acc, #{count := C, max := Max} = St) when C >= Max ->
    {Acc, St#{truncated := true}};
linked(L, P, R, D, Acc, St) ->
    case dead(L, St) of
        true -> {Acc, St};
        false ->
            case erlang:process_info(L, [trap_exit, initial_call]) of
                undefined -> {Acc, St};
                [{trap_exit, false}, _] when R =:= normal -> {Acc, St};
                [{trap_exit, false}, _] ->
                    Why = fmt("linked to ~s, does not trap exits: the exit signal ~0tp kills it", [who(P), R]),
                    doomed(L, dies, Why, D + 1, {L, R, D + 1, false}, {Acc, St});
                [{trap_exit, true}, {initial_call, Call}] ->
                    case Call =:= {proc_lib, init_p, 5} andalso parent(L) =:= P of
                        true ->
                            Why = fmt("its parent ~s exits: an OTP process stops with its parent (reason ~0tp)",
                                      [who(P), R]),
                            doomed(L, dies, Why, D + 1, {L, R, D + 1, false}, {Acc, St});
                        false ->
                            Why = fmt("linked to ~s, traps exits: it gets {'EXIT', ~s, ~0tp} as a message",
                                      [who(P), who(P), R]),
                            {Acc, add(L, notified, Why, D + 1, St)}
                    end
            end
    end.

monitor_reaction(P, R, D, St) ->
    Me = self(),
    By = case erlang:process_info(P, monitored_by) of
             {monitored_by, L} -> [M || M <- L, is_pid(M), node(M) =:= node(), M =/= Me];
             undefined -> []
         end,
    lists:foldl(
      fun(M, S) ->
              Why = fmt("monitors ~s: it gets a 'DOWN' message with reason ~0tp (what it does then is up "
                        "to its code)", [who(P), R]),
              add(M, notified, Why, D + 1, S)
      end, St, By).

%% A supervisor's strategy, intensity, restarts in the current period and
%% children in start order with restart types; read once per analysis.
sup_state(Sup, #{sups := Cache, timeout := T, deadline := Deadline} = St) ->
    case maps:find(Sup, Cache) of
        {ok, Found} -> {Found, St};
        error ->
            Found = case past(Deadline) of
                        true -> {error, deadline};
                        false -> read_sup(Sup, T)
                    end,
            {Found, St#{sups := Cache#{Sup => Found}}}
    end.

read_sup(Sup, T) ->
    try sys:get_state(Sup, T) of
        State -> parse_sup(State)
    catch exit:{timeout, _} -> {error, timeout};
          exit:{noproc, _} -> {error, dead};
          exit:_ -> {error, no_state}
    end.

%% The state read through its layout (arsenal_agent_sup:parse_state/1: the
%% supervisor records of OTP 21 to 29, forks of them, Elixir's
%% DynamicSupervisor); a layout it does not know is an error that says what
%% was seen.
parse_sup(State) ->
    case arsenal_agent_sup:parse_state(State) of
        {ok, #{strategy := Strategy, intensity := I, period := Per, restarts := Restarts,
               children := Children}} ->
            {ok, sup_map(Strategy, I, Per, Restarts, [{Id, P, restart_type(R)} || {Id, P, R} <- Children])};
        {error, _} = Error ->
            Error
    end.

%% A restart type as OTP knows them: forks add a delay ({permanent, Secs}) or
%% an intrinsic type (restarted on an abnormal exit, like transient).
restart_type({R, _Delay}) when is_atom(R) -> restart_type(R);
restart_type(intrinsic) -> transient;
restart_type(R) when R =:= permanent; R =:= transient; R =:= temporary -> R;
restart_type(_) -> permanent.

sup_map(Strategy, I, Per, Restarts, Children) ->
    Now = erlang:monotonic_time(second),
    Recent = length([T || T <- Restarts, is_integer(T), T >= Now - Per]),
    #{strategy => Strategy, intensity => I, period => Per, recent => Recent, children => Children}.

who(P) ->
    case name_of(P) of
        undefined -> pid_to_list(P);
        Name -> fmt("~s ~s", [name_text(Name), pid_to_list(P)])
    end.

name_text(Name) ->
    case atom_to_binary(Name, utf8) of
        <<"Elixir.", Rest/binary>> -> Rest;
        B -> B
    end.

fmt(Format, Args) ->
    iolist_to_binary(io_lib:format(Format, Args)).

%% ================================================================== dependencies

%% @doc What Target depends on (its parent chain up to its application master,
%% the processes it monitors, the processes linked to it other than its parent
%% and children, and the process it is blocked calling if it waits in a gen
%% call) and what depends on it (the processes that monitor it, linked
%% processes, the processes it spawned), with the ETS tables it owns and the
%% ports it holds. Lists are at most Limit (1..1000) long, with counts.
%% Cost: one pass of process_info(parent) over every process (to find its
%% children), a pass over ets:all() and erlang:ports() for owners.
-spec dependencies(binary(), pos_integer(), timeout()) -> map() | {error, term()}.
dependencies(Target, Limit0, _Timeout) ->
    Limit = clamp(Limit0, 1, ?MAX_LIST, 50),
    case arsenal_agent:target(Target) of
        {ok, P} ->
            Items = [links, monitors, monitored_by, current_function, status, trap_exit],
            case erlang:process_info(P, Items) of
                undefined -> {error, dead};
                Info -> deps_of(P, maps:from_list(Info), Limit)
            end;
        Error -> Error
    end.

deps_of(P, Info, Limit) ->
    Apps = apps(),
    #{links := Links, monitors := Mons, monitored_by := By, current_function := Current} = Info,
    Me = self(),
    Parent = parent(P),
    {Kids, _} = kids_and_roots(),
    Children = kids(P, Kids),
    ChildSet = set(Children),
    LinkSet = set(Links),
    LinkedPids = [L || L <- Links, is_pid(L), node(L) =:= node(), L =/= Me],
    Peers = [L || L <- LinkedPids, L =/= Parent, not maps:is_key(L, ChildSet)],
    Monitored = [#{pid => T, by_name => N, type => Type}
                 || M <- Mons, {Type, T, N} <- [monitor_target(M)], Type =/= other],
    Watchers = [M || M <- By, is_pid(M), M =/= Me],
    Tables = [T || T <- ets:all(), ets:info(T, owner) =:= P],
    Ports = [Port || Port <- erlang:ports(), erlang:port_info(Port, connected) =:= {connected, P}],
    Brief = fun(X) -> brief(X, Apps) end,
    #{pid => P, name => name_of(P), application => app_of(group_leader_of(P), Apps),
      status => maps:get(status, Info), trap_exit => maps:get(trap_exit, Info),
      current_function => Current,
      upstream => #{chain => chain(P, Apps),
                    monitors => bounded(Monitored, Limit, fun monitored/1),
                    linked => bounded(Peers, Limit, Brief),
                    blocked_on => blocked_on(Current, Monitored, Apps)},
      downstream => #{monitored_by => bounded(Watchers, Limit, Brief),
                      linked => bounded([L || L <- LinkedPids, L =/= Parent], Limit, Brief),
                      children => bounded(Children, Limit,
                                          fun(C) -> (Brief(C))#{linked => maps:is_key(C, LinkSet)} end)},
      ets_tables => bounded(Tables, Limit, fun table/1),
      ports => bounded(Ports, Limit, fun(Port) -> port(Port, maps:is_key(Port, LinkSet)) end)}.

monitored(#{pid := T, type := Type} = M) -> M#{name => name_of(T), kind => Type}.

%% The first Limit of a list, described (only those are), with the full count.
bounded(List, Limit, Describe) ->
    #{total => length(List), items => [Describe(X) || X <- lists:sublist(List, Limit)]}.

group_leader_of(P) ->
    case erlang:process_info(P, group_leader) of
        {group_leader, GL} -> GL;
        undefined -> undefined
    end.

brief(P, Apps) when is_pid(P) ->
    Kind = case sup_kind(P) of {_, _} -> supervisor; _ -> process end,
    #{pid => P, name => name_of(P), kind => Kind, application => app_of(group_leader_of(P), Apps)};
brief(Other, _) ->
    #{pid => Other, name => undefined, kind => other, application => undefined}.

%% Parent, grandparent... up to the application master (its start_it helper
%% is folded into it), at most 20 steps.
chain(P, Apps) -> chain(parent(P), Apps, ?CHAIN, []).

chain(undefined, _Apps, _N, Acc) -> lists:reverse(Acc);
chain(_P, _Apps, 0, Acc) -> lists:reverse(Acc);
chain(P, Apps, N, Acc) ->
    case {role(P), maps:find(P, Apps)} of
        {app_helper, _} -> chain(parent(P), Apps, N - 1, Acc);
        {_, {ok, {App, _}}} ->
            lists:reverse([#{pid => P, name => name_of(P), kind => application_master, application => App}
                           | Acc]);
        _ -> chain(parent(P), Apps, N - 1, [brief(P, Apps) | Acc])
    end.

%% A process waiting in a gen call (gen:do_call/4 and the like) monitors the
%% process it calls for as long as the call lasts: that callee is among its
%% monitors. One monitor: that is it; several: all are candidates.
blocked_on({M, F, A} = Current, Monitored, Apps) ->
    case lists:member(Current, [{gen, do_call, 4}, {gen, call, 4}, {gen_server, call, 2},
                                {gen_server, call, 3}, {gen_statem, call, 3}, {erpc, call, 5},
                                {erpc, receive_response, 2}, {gen_statem, call_dirty, 4},
                                {gen_statem, call_clean, 4}]) of
        false -> undefined;
        true ->
            Candidates = [T || #{pid := T, type := process} <- Monitored, is_pid(T)],
            How = fmt("its current function is ~s:~s/~b (waiting for a call's reply); the process called is "
                      "monitored for the call's length, so it is among its monitors", [M, F, A]),
            #{detected_by => How, function => Current,
              candidates => [brief(C, Apps) || C <- lists:sublist(Candidates, 20)],
              certain => length(Candidates) =:= 1}
    end;
blocked_on(_, _, _) ->
    undefined.

table(T) ->
    #{id => T, name => ets:info(T, name), size => ets:info(T, size), type => ets:info(T, type),
      protection => ets:info(T, protection), memory_words => ets:info(T, memory)}.

port(Port, Linked) ->
    Name = case erlang:port_info(Port, name) of
               {name, N} -> unicode:characters_to_binary(N);
               _ -> undefined
           end,
    #{id => Port, name => Name, linked => Linked}.
