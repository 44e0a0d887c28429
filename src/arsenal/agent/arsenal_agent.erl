%% @doc Arsenal's agent: the code Arsenal loads into a node it attaches to.
%%
%% Plain functions, called one at a time through erpc, so every call is a
%% short-lived process that Arsenal kills if it times out: nothing is left
%% running when Arsenal goes away. Every function does bounded work, sorts and
%% filters where the data lives, and returns a bounded result.
%%
%% Safety: nothing here turns request data into atoms. Names arrive as
%% binaries and are looked up with binary_to_existing_atom/2; sort keys are
%% matched against a closed list.
-module(arsenal_agent).

-export([version/0, info/0, target/1, lookup_name/1, protected/1, list_processes/1, process_info/2,
         proc_window/1, existing_atom/1]).

-define(VERSION, <<"0.1.0">>).
-define(MAX_LIMIT, 1000).

%% @doc The agent's version; Arsenal compares module md5s, this is for people.
-spec version() -> binary().
version() -> ?VERSION.

%% @doc Facts about the node Arsenal needs once per attach. Cost: O(1).
-spec info() -> map().
info() ->
    #{node => node(),
      otp_release => list_to_binary(erlang:system_info(otp_release)),
      erts_version => list_to_binary(erlang:system_info(version)),
      language => language(),
      elixir_version => elixir_version(),
      process_count => erlang:system_info(process_count),
      process_limit => erlang:system_info(process_limit),
      agent_version => ?VERSION}.

language() ->
    case erlang:module_loaded('Elixir.Kernel') of
        true -> elixir;
        false -> erlang
    end.

%% Which Elixir prints this node's terms (its `inspect` changed between releases);
%% undefined when Elixir is not loaded.
elixir_version() ->
    case application:get_key(elixir, vsn) of
        {ok, Vsn} -> list_to_binary(Vsn);
        undefined -> undefined
    end.

%% @doc The process a request names: <<"<0.1.2>">> or a registered name.
%% Pids are parsed here, by the node itself: a pid out of the node's ranges is
%% an error for this call only (built in Python and sent, it would make the
%% node drop the whole connection).
-spec target(binary()) -> {ok, pid()} | {error, not_found | bad_pid}.
target(<<"<", _/binary>> = Text) ->
    try {ok, list_to_pid(binary_to_list(Text))}
    catch error:badarg -> {error, bad_pid}
    end;
target(Name) when is_binary(Name) ->
    case lookup_name(Name) of
        Pid when is_pid(Pid) -> {ok, Pid};
        _ -> {error, not_found}
    end.

%% @doc Whether a process belongs to the VM itself, so killing, suspending or
%% replacing its state is refused unless an admin forces it: the kernel
%% application's processes (init, code_server, application_controller, the
%% kernel supervisors, net_kernel, logger...), erl_prim_loader, and this agent's
%% own calls. Cost: a few lookups.
-spec protected(binary()) -> {ok, boolean(), term()} | {error, not_found | bad_pid}.
protected(Target) when is_binary(Target) ->
    case target(Target) of
        {ok, Pid} -> {ok, is_protected(Pid), describe_owner(Pid)};
        Error -> Error
    end.

-define(PROTECTED_NAMES, [init, erl_prim_loader, code_server, application_controller,
                          kernel_sup, kernel_safe_sup, erts_code_purger, user, user_drv,
                          standard_error, standard_error_sup, rex, net_kernel, net_sup,
                          global_name_server, file_server_2, inet_db, logger, erl_epmd,
                          erl_signal_server, socket_registry]).

is_protected(Pid) when Pid =:= self() ->
    true;
is_protected(Pid) ->
    Name = case erlang:process_info(Pid, registered_name) of
               {registered_name, N} -> N;
               _ -> undefined
           end,
    lists:member(Name, ?PROTECTED_NAMES)
        orelse application:get_application(Pid) =:= {ok, kernel}
        orelse agent_call(Pid).

%% A process running one of Arsenal's agent calls.
agent_call(Pid) ->
    case erlang:process_info(Pid, current_function) of
        {current_function, {Mod, _, _}} -> lists:prefix("arsenal_agent", atom_to_list(Mod));
        _ -> false
    end.

describe_owner(Pid) ->
    case {erlang:process_info(Pid, registered_name), application:get_application(Pid)} of
        {{registered_name, Name}, _} when is_atom(Name) -> Name;
        {_, {ok, App}} -> App;
        _ -> undefined
    end.

%% @doc Find a registered process by name, given as a binary. Elixir aliases
%% (<<"MyApp.Worker">>) are tried with their "Elixir." prefix too. Creates no atom.
-spec lookup_name(binary()) -> pid() | port() | undefined.
lookup_name(Name) when is_binary(Name) ->
    case registered(Name) of
        undefined -> registered(<<"Elixir.", Name/binary>>);
        Found -> Found
    end.

registered(Name) ->
    case existing_atom(Name) of
        {ok, Atom} -> erlang:whereis(Atom);
        error -> undefined
    end.

%% @doc The atom a request names, only if it exists already: request data never creates atoms
%% (the atom table is never collected, and a full one kills the node).
-spec existing_atom(term()) -> {ok, atom()} | error.
existing_atom(Bin) when is_binary(Bin) ->
    try {ok, binary_to_existing_atom(Bin, utf8)}
    catch error:badarg -> error
    end;
existing_atom(_) -> error.

%% @doc Processes matching Opts, the top Limit by the sort key, largest first.
%%
%% Opts (all optional): sort (<<"memory">> | <<"reductions">> |
%% <<"message_queue_len">>), limit (1..1000), name (substring of the registered
%% name), module (running or started in this module), min_memory, min_queue,
%% min_reductions, status (<<"running">>, <<"waiting">>...), 'after' ({Value, Pid}:
%% the cursor, rows strictly after it in the order).
%%
%% Cost: one process_info/2 per process, fetching only what the filters need,
%% and a bounded top-N set (like recon:proc_count/2); details for the N winners
%% only. The process doing the scan (Arsenal's) is left out.
-spec list_processes(map()) -> map() | {error, term()}.
list_processes(Opts) when is_map(Opts) ->
    case sort_key(maps:get(sort, Opts, <<"memory">>)) of
        {ok, Key} ->
            Limit = max(1, min(maps:get(limit, Opts, 20), ?MAX_LIMIT)),
            case {filter(Opts), cursor(maps:get('after', Opts, undefined))} of
                {_, error} ->
                    {error, {bad_cursor, maps:get('after', Opts)}};
                {{ok, Needs, Keep}, {ok, After}} ->
                    Items = lists:usort([Key | Needs]),
                    Top = scan(Key, Items, Keep, After, Limit, erlang:processes() -- [self()]),
                    Rows = [Row || {_Value, Pid} <- lists:reverse(gb_sets:to_list(Top)),
                                   Row <- [describe(Pid)], Row =/= gone],
                    #{sort => Key, limit => Limit,
                      process_count => erlang:system_info(process_count),
                      rows => Rows};
                {none, _} ->
                    #{sort => Key, limit => Limit,
                      process_count => erlang:system_info(process_count), rows => []}
            end;
        error ->
            {error, {bad_sort_key, maps:get(sort, Opts)}}
    end.

cursor({Value, PidText}) when is_integer(Value), is_binary(PidText) ->
    case target(PidText) of
        {ok, Pid} -> {ok, {Value, Pid}};
        {error, _} -> error
    end;
cursor(undefined) ->
    {ok, undefined};
cursor(_) ->
    error.

sort_key(<<"memory">>) -> {ok, memory};
sort_key(<<"reductions">>) -> {ok, reductions};
sort_key(<<"message_queue_len">>) -> {ok, message_queue_len};
sort_key(_) -> error.

%% What the filters need from process_info, and a fun deciding on those items.
%% 'none' when a filter can match no process at all (a module that is no atom).
filter(Opts) ->
    Tests = [filter_one(F, maps:get(F, Opts)) || F <- [name, module, min_memory, min_queue,
                                                       min_reductions, status],
                                                 maps:is_key(F, Opts),
                                                 maps:get(F, Opts) =/= undefined],
    case lists:member(none, Tests) of
        true -> none;
        false ->
            Needs = lists:append([N || {N, _} <- Tests]),
            Checks = [C || {_, C} <- Tests],
            {ok, Needs, fun(Info) -> lists:all(fun(C) -> C(Info) end, Checks) end}
    end.

filter_one(name, <<>>) ->
    {[], fun(_) -> true end};
filter_one(name, Pattern) when is_binary(Pattern) ->
    {[registered_name], fun(I) ->
        case proplists:get_value(registered_name, I) of
            [] -> false;
            Name -> binary:match(atom_to_binary(Name, utf8), Pattern) =/= nomatch
        end
    end};
filter_one(module, ModBin) when is_binary(ModBin) ->
    case existing_atom(ModBin) of
        error -> none;
        {ok, Mod} -> {[current_function, initial_call, dictionary], fun(I) -> runs_module(Mod, I) end}
    end;
filter_one(min_memory, N) when is_integer(N) ->
    {[memory], fun(I) -> proplists:get_value(memory, I) >= N end};
filter_one(min_queue, N) when is_integer(N) ->
    {[message_queue_len], fun(I) -> proplists:get_value(message_queue_len, I) >= N end};
filter_one(min_reductions, N) when is_integer(N) ->
    {[reductions], fun(I) -> proplists:get_value(reductions, I) >= N end};
filter_one(status, StatusBin) when is_binary(StatusBin) ->
    {[status], fun(I) -> atom_to_binary(proplists:get_value(status, I), utf8) =:= StatusBin end}.

runs_module(Mod, Info) ->
    element(1, default_mfa(proplists:get_value(current_function, Info))) =:= Mod
        orelse element(1, default_mfa(proplists:get_value(initial_call, Info))) =:= Mod
        orelse element(1, default_mfa(proplists:get_value('$initial_call',
                                                          proplists:get_value(dictionary, Info, []),
                                                          undefined))) =:= Mod.

default_mfa({M, F, A}) -> {M, F, A};
default_mfa(_) -> {undefined, undefined, 0}.

%% Keep a set of at most Limit {Value, Pid}; a process only enters if it beats
%% the smallest member (and comes after the cursor), so most cost one comparison.
scan(Key, Items, Keep, After, Limit, Pids) ->
    scan(Key, Items, Keep, After, Limit, Pids, gb_sets:empty(), 0, undefined).

scan(_Key, _Items, _Keep, _After, _Limit, [], Set, _Size, _Min) ->
    Set;
scan(Key, Items, Keep, After, Limit, [Pid | Rest], Set, Size, Min) ->
    case erlang:process_info(Pid, Items) of
        undefined ->
            scan(Key, Items, Keep, After, Limit, Rest, Set, Size, Min);
        Info ->
            Entry = {proplists:get_value(Key, Info), Pid},
            Wanted = (After =:= undefined orelse Entry < After)
                andalso (Size < Limit orelse Entry > Min)
                andalso Keep(Info),
            case Wanted of
                false ->
                    scan(Key, Items, Keep, After, Limit, Rest, Set, Size, Min);
                true when Size < Limit ->
                    Set1 = gb_sets:add(Entry, Set),
                    scan(Key, Items, Keep, After, Limit, Rest, Set1, Size + 1, gb_sets:smallest(Set1));
                true ->
                    {_, Set1} = gb_sets:take_smallest(Set),
                    Set2 = gb_sets:add(Entry, Set1),
                    scan(Key, Items, Keep, After, Limit, Rest, Set2, Size, gb_sets:smallest(Set2))
            end
    end.

-define(ROW_ITEMS, [registered_name, current_function, initial_call, memory,
                    reductions, message_queue_len, status]).

describe(Pid) ->
    case erlang:process_info(Pid, ?ROW_ITEMS) of
        undefined ->
            gone;
        Items ->
            Map = maps:from_list(Items),
            Map#{pid => Pid,
                 registered_name => registered_name(maps:get(registered_name, Map)),
                 initial_call => initial_call(Pid, maps:get(initial_call, Map))}
    end.

registered_name([]) -> undefined;
registered_name(Name) -> Name.

%% proc_lib processes (gen_server, supervisor, Elixir GenServer...) all start in
%% proc_lib:init_p/5; the call that means something is in their dictionary.
initial_call(Pid, {proc_lib, init_p, 5}) ->
    proc_lib:translate_initial_call(Pid);
initial_call(_Pid, Call) ->
    Call.

%% ---------------------------------------------------------------- process window

-define(MAX_OFFSET, 100000).
-define(MIN_WINDOW, 100).
-define(MAX_WINDOW, 5000).

%% @doc The top processes over a window, like recon:proc_window/3, and the
%% figures a top-like header needs, measured over the same window.
%%
%% Opts (all optional): sort (<<"reductions">>, the default: how many each
%% process did during the window; <<"memory">> or <<"message_queue_len">>:
%% absolute values at the end), window_ms (100..5000, default 1000), limit
%% (1..1000, default 20), offset (0..100000: rows to skip, for paging).
%%
%% Cost: two scans of every process (the first reads reductions only), a map
%% of every pid's reductions held for the window (like recon; about 30 bytes
%% per process), and a bounded top set of offset + limit entries; details are
%% read for the winners only (about 0.4 s of scanning at 200 000 processes).
%% scheduler_wall_time is switched on for the window and put back as it was.
%% The calling process sleeps for the window.
%% Processes born during the window count all their reductions as growth.
-spec proc_window(map()) -> map() | {error, term()}.
proc_window(Opts) when is_map(Opts) ->
    Sort = maps:get(sort, Opts, <<"reductions">>),
    Window = maps:get(window_ms, Opts, 1000),
    Limit = maps:get(limit, Opts, 20),
    Offset = maps:get(offset, Opts, 0),
    case sort_key(Sort) of
        error -> {error, {bad_sort_key, Sort}};
        {ok, _} when not is_integer(Window); Window < ?MIN_WINDOW; Window > ?MAX_WINDOW ->
            {error, {bad_window_ms, Window}};
        {ok, _} when not is_integer(Limit); Limit < 1; Limit > ?MAX_LIMIT ->
            {error, {bad_limit, Limit}};
        {ok, _} when not is_integer(Offset); Offset < 0; Offset > ?MAX_OFFSET ->
            {error, {bad_offset, Offset}};
        {ok, Key} ->
            window(Key, Window, Limit, Offset)
    end.

window(Key, Window, Limit, Offset) ->
    WasOn = erlang:system_flag(scheduler_wall_time, true),
    try
        First = reductions_snapshot(self()),
        {{input, In0}, {output, Out0}} = erlang:statistics(io),
        Wall0 = erlang:statistics(scheduler_wall_time),
        timer:sleep(Window),
        Wall1 = erlang:statistics(scheduler_wall_time),
        {{input, In1}, {output, Out1}} = erlang:statistics(io),
        Top = window_scan(Key, First, Offset + Limit, self()),
        Ranked = lists:reverse(gb_sets:to_list(Top)),
        Page = lists:sublist(drop(Offset, Ranked), Limit),
        {Schedulers, Average} = scheduler_usage(Wall0, Wall1),
        {UptimeMs, _} = erlang:statistics(wall_clock),
        #{node => node(),
          uptime_ms => UptimeMs,
          window_ms => Window,
          sort => Key,
          limit => Limit,
          offset => Offset,
          process_count => erlang:system_info(process_count),
          process_limit => erlang:system_info(process_limit),
          run_queue => erlang:statistics(run_queue),
          memory => maps:from_list(erlang:memory()),
          io_input => In1 - In0,
          io_output => Out1 - Out0,
          scheduler_usage => Average,
          schedulers => Schedulers,
          rows => [Row || Entry <- Page, Row <- [window_row(Key, Entry)], Row =/= gone]}
    after
        WasOn =:= false andalso erlang:system_flag(scheduler_wall_time, false)
    end.

%% Every process's reductions at the start of the window (the caller left out).
reductions_snapshot(Self) ->
    maps:from_list([{Pid, Reds} || Pid <- erlang:processes(), Pid =/= Self,
                                   {reductions, Reds} <- [erlang:process_info(Pid, reductions)]]).

%% The second scan: the top N {Value, Pid, Delta, Reductions} by the sort key.
window_scan(Key, First, N, Self) ->
    Items = lists:usort([reductions, Key]),
    Fold = fun(Pid, Top) when Pid =:= Self ->
                   Top;
              (Pid, Top) ->
                   case erlang:process_info(Pid, Items) of
                       undefined ->
                           Top;
                       Info ->
                           Reds = proplists:get_value(reductions, Info),
                           Delta = Reds - maps:get(Pid, First, 0),
                           Value = case Key of
                                       reductions -> Delta;
                                       _ -> proplists:get_value(Key, Info)
                                   end,
                           keep({Value, Pid, Delta, Reds}, Top, N)
                   end
           end,
    {Set, _Size, _Min} = lists:foldl(Fold, {gb_sets:empty(), 0, undefined}, erlang:processes()),
    Set.

drop(0, List) -> List;
drop(_, []) -> [];
drop(N, [_ | Rest]) -> drop(N - 1, Rest).

%% A bounded top-N set: an entry only enters if it beats the smallest member,
%% so most processes cost one comparison.
keep(Entry, {Set, Size, _Min}, N) when Size < N ->
    Set1 = gb_sets:add(Entry, Set),
    {Set1, Size + 1, gb_sets:smallest(Set1)};
keep(Entry, {_Set, _Size, Min} = Top, _N) when Entry =< Min ->
    Top;
keep(Entry, {Set, Size, _Min}, _N) ->
    {_, Set1} = gb_sets:take_smallest(Set),
    Set2 = gb_sets:add(Entry, Set1),
    {Set2, Size, gb_sets:smallest(Set2)}.

%% A winner's details; the figures it was ranked by are the scanned ones, so
%% a page reads in the order it was ranked in.
window_row(Key, {Value, Pid, Delta, Reds}) ->
    case describe(Pid) of
        gone ->
            gone;
        Row ->
            Ranked = case Key of
                         reductions -> Row;
                         _ -> Row#{Key => Value}
                     end,
            Ranked#{reductions => Reds, reductions_delta => Delta}
    end.

%% Utilisation of each scheduler (normal and dirty CPU) between two
%% scheduler_wall_time samples, and the normal schedulers' average.
scheduler_usage(Wall0, Wall1) when is_list(Wall0), is_list(Wall1) ->
    Normal = erlang:system_info(schedulers),
    Pairs = lists:zip(lists:sort(Wall0), lists:sort(Wall1)),
    Rows = [#{id => Id,
              type => case Id =< Normal of true -> normal; false -> dirty_cpu end,
              utilization => usage_ratio(A1 - A0, T1 - T0)}
            || {{Id, A0, T0}, {Id, A1, T1}} <- Pairs],
    {Active, Total} = lists:foldl(fun({{Id, A0, T0}, {Id, A1, T1}}, {A, T}) when Id =< Normal ->
                                          {A + A1 - A0, T + T1 - T0};
                                     (_, Acc) ->
                                          Acc
                                  end, {0, 0}, Pairs),
    {Rows, usage_ratio(Active, Total)};
scheduler_usage(_, _) ->
    {[], 0.0}.

usage_ratio(_, 0) -> 0.0;
usage_ratio(Active, Total) -> Active / Total.

-define(INFO_FIELDS, [registered_name, current_function, initial_call, status,
                      message_queue_len, links, monitors, monitored_by, dictionary,
                      current_stacktrace, memory, heap_size, total_heap_size,
                      stack_size, reductions, trap_exit, group_leader, priority,
                      garbage_collection, error_handler, suspending]).
-define(MAX_LIST, 1000).

%% @doc process_info for the fields named (binaries from a closed list; [] for
%% all). Lists (links, monitors, dictionary...) are cut at 1000 entries and the
%% full length reported. Cost: one process_info/2; the dictionary and the
%% stacktrace are copied, so ask for them only when needed.
-spec process_info(binary(), [binary()]) -> map() | undefined | {error, term()}.
process_info(Target, FieldBins) when is_binary(Target), is_list(FieldBins) ->
    case {target(Target), fields(FieldBins)} of
        {{ok, Pid}, {ok, Fields}} ->
            case erlang:process_info(Pid, Fields) of
                undefined -> undefined;
                Items -> maps:from_list([bound(Pid, F, V) || {F, V} <- Items] ++ [{pid, Pid}])
            end;
        {{error, _} = Error, _} ->
            Error;
        {_, {error, _} = Error} ->
            Error
    end.

fields([]) -> {ok, ?INFO_FIELDS};
fields(Bins) ->
    Known = [{atom_to_binary(F, utf8), F} || F <- ?INFO_FIELDS],
    case [B || B <- Bins, not lists:keymember(B, 1, Known)] of
        [] -> {ok, [element(2, lists:keyfind(B, 1, Known)) || B <- Bins]};
        Unknown -> {error, {unknown_fields, Unknown}}
    end.

bound(_Pid, registered_name, []) -> {registered_name, undefined};
bound(Pid, initial_call, Call) -> {initial_call, initial_call(Pid, Call)};
bound(_Pid, Field, List) when is_list(List), Field =/= garbage_collection ->
    case length(List) > ?MAX_LIST of
        true -> {Field, #{truncated => true, count => length(List),
                          items => lists:sublist(List, ?MAX_LIST)}};
        false -> {Field, List}
    end;
bound(_Pid, Field, Value) ->
    {Field, Value}.
