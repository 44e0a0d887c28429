%% @doc Arsenal's agent, system part: what a node is, what it holds and how
%% healthy it is (system facts, memory, applications, registered names, ports,
%% ETS tables, scheduler usage, health and bottlenecks).
%%
%% Like the core agent, every function is called through erpc in a short-lived
%% process, does bounded work where the data lives and returns a bounded result:
%% lists are capped and report their full length, large terms are replaced by a
%% marker that says so. Nothing is started and left behind; the one flag changed
%% (scheduler_wall_time) is put back as it was.
%%
%% Safety: no request data becomes an atom. Table and process names arrive as
%% binaries and are looked up with binary_to_existing_atom/2; cursors are
%% decoded with binary_to_term(_, [safe]).
-module(arsenal_agent_sys).

-export([system_info/0, counts/0, memory_info/0, applications/1, registered/1, ports/1,
         ets_list/1, ets_table/2, scheduler_usage/1, health/1, bottlenecks/1,
         message_queue/2]).

-define(MAX_LIMIT, 1000).
-define(MAX_ROWS, 500).
-define(MAX_NODES, 100).

%% ---------------------------------------------------------------- system facts

%% @doc Release, emulator, schedulers, counts against their limits, uptime,
%% language and distribution. Cost: O(1) (nodes() lists are capped at 100).
-spec system_info() -> map().
system_info() ->
    {UptimeMs, _} = erlang:statistics(wall_clock),
    Visible = erlang:nodes(visible),
    Hidden = erlang:nodes(hidden),
    maps:merge(counts(), #{node => node(),
      language => language(),
      otp_release => list_to_binary(erlang:system_info(otp_release)),
      erts_version => list_to_binary(erlang:system_info(version)),
      system_architecture => list_to_binary(erlang:system_info(system_architecture)),
      word_size => erlang:system_info(wordsize),
      emulator_flavor => erlang:system_info(emu_flavor),
      schedulers => erlang:system_info(schedulers),
      schedulers_online => erlang:system_info(schedulers_online),
      dirty_cpu_schedulers => erlang:system_info(dirty_cpu_schedulers),
      dirty_io_schedulers => erlang:system_info(dirty_io_schedulers),
      logical_processors => erlang:system_info(logical_processors_available),
      uptime_ms => UptimeMs,
      distribution => #{alive => erlang:is_alive(),
                        net_ticktime => net_ticktime(),
                        visible_node_count => length(Visible),
                        hidden_node_count => length(Hidden),
                        visible_nodes => lists:sublist(Visible, ?MAX_NODES),
                        hidden_nodes => lists:sublist(Hidden, ?MAX_NODES)}}).

%% @doc Processes, ports, atoms and ETS tables against their limits: counters
%% the VM keeps (used by system_info/0 and by the sampler's vitals). Cost: O(1).
-spec counts() -> map().
counts() ->
    #{process_count => erlang:system_info(process_count),
      process_limit => erlang:system_info(process_limit),
      port_count => erlang:system_info(port_count),
      port_limit => erlang:system_info(port_limit),
      atom_count => erlang:system_info(atom_count),
      atom_limit => erlang:system_info(atom_limit),
      ets_count => erlang:system_info(ets_count),
      ets_limit => erlang:system_info(ets_limit)}.

net_ticktime() ->
    try net_kernel:get_net_ticktime() of
        Seconds when is_integer(Seconds) -> Seconds;
        {ongoing_change_to, Seconds} -> Seconds;
        _ -> undefined
    catch _:_ -> undefined
    end.

language() ->
    case erlang:module_loaded('Elixir.Kernel') of
        true -> elixir;
        false -> erlang
    end.

%% ---------------------------------------------------------------- memory

%% @doc erlang:memory() by type, and per alloc_util allocator the bytes in
%% blocks (used) and in carriers (reserved from the OS), summed over its
%% instances. Cost: erlang:system_info({allocator_sizes, A}) per allocator,
%% which visits every scheduler's instance (a few microseconds each; no
%% options or call counters are gathered).
-spec memory_info() -> map().
memory_info() ->
    Allocators = [allocator_summary(A) || A <- erlang:system_info(alloc_util_allocators)],
    #{memory => maps:from_list(erlang:memory()),
      allocators => [A || A <- Allocators, A =/= undefined]}.

allocator_summary(Alloc) ->
    case erlang:system_info({allocator_sizes, Alloc}) of
        Instances when is_list(Instances) ->
            {Blocks, Carriers, Count} =
                lists:foldl(fun({instance, _, Info}, {B, C, N}) ->
                                    {B1, C1} = instance_sizes(Info),
                                    {B + B1, C + C1, N + 1};
                               (_, Acc) -> Acc
                            end, {0, 0, 0}, Instances),
            #{name => Alloc, instances => Count, blocks_size => Blocks, carriers_size => Carriers,
              usage => case Carriers of 0 -> 0.0; _ -> Blocks / Carriers end};
        _ ->
            undefined
    end.

instance_sizes(Info) ->
    lists:foldl(fun({Kind, Sizes}, {B, C}) when Kind =:= mbcs; Kind =:= sbcs ->
                        {B + blocks_size(proplists:get_value(blocks, Sizes, [])),
                         C + first(lists:keyfind(carriers_size, 1, Sizes))};
                   (_, Acc) -> Acc
                end, {0, 0}, Info).

%% OTP 23+: [{Type, [{count, ...}, {size, Cur, ...}]}]; older: {blocks_size, Cur, ...}.
blocks_size(PerType) when is_list(PerType) ->
    lists:sum([first(lists:keyfind(size, 1, Stats)) || {_Type, Stats} <- PerType,
                                                             is_list(Stats)]);
blocks_size(_) -> 0.

first(N) when is_integer(N) -> N;
first(T) when is_tuple(T), tuple_size(T) >= 2 -> element(2, T);
first(false) -> 0;
first(_) -> 0.

%% ---------------------------------------------------------------- applications

%% @doc The running applications with their versions and how many processes
%% each has: a process belongs to the application whose master is its group
%% leader (as application:get_application/1 decides). Cost: one
%% process_info(P, group_leader) per process (one pass) and a lookup per
%% application; Timeout bounds the wait on application_controller.
-spec applications(pos_integer()) -> map() | {error, timeout}.
applications(Timeout) when is_integer(Timeout) ->
    try application:which_applications(Timeout) of
        Apps ->
            Masters = maps:from_list([{M, App} || {App, _, _} <- Apps,
                                                  M <- [master(App)], is_pid(M)]),
            Counts = count_by_leader(erlang:processes(), Masters, #{}),
            #{applications => [#{name => App,
                                 description => to_binary(Desc),
                                 version => to_binary(Vsn),
                                 process_count => maps:get(App, Counts, 0)}
                               || {App, Desc, Vsn} <- Apps],
              other_processes => maps:get('$none', Counts, 0),
              process_count => erlang:system_info(process_count)}
    catch exit:{timeout, _} -> {error, timeout}
    end.

master(App) ->
    try application_controller:get_master(App) catch _:_ -> undefined end.

count_by_leader([], _Masters, Acc) ->
    Acc;
count_by_leader([P | Rest], Masters, Acc) ->
    case erlang:process_info(P, group_leader) of
        {group_leader, GL} ->
            %% An application master is its own application's member too.
            App = case maps:find(GL, Masters) of
                      {ok, A} -> A;
                      error -> maps:get(P, Masters, '$none')
                  end,
            count_by_leader(Rest, Masters, maps:update_with(App, fun(N) -> N + 1 end, 1, Acc));
        undefined ->
            count_by_leader(Rest, Masters, Acc)
    end.

to_binary(L) when is_list(L) -> unicode:characters_to_binary(L);
to_binary(B) when is_binary(B) -> B;
to_binary(Other) -> iolist_to_binary(io_lib:format("~tp", [Other])).

%% ---------------------------------------------------------------- registered names

%% @doc Locally registered names (with pid or port), names in `global', and the
%% groups of pg's default scope when pg runs (looked up, never started). Each
%% list is sorted and capped at Limit, with its full count. Cost: O(names).
-spec registered(pos_integer()) -> map().
registered(Limit0) ->
    Limit = clamp(Limit0),
    Local = lists:sort(erlang:registered()),
    Global = lists:sort(global:registered_names()),
    #{local_count => length(Local),
      local => [#{name => N, id => erlang:whereis(N)} || N <- lists:sublist(Local, Limit)],
      global_count => length(Global),
      global => [#{name => N, pid => global:whereis_name(N)} || N <- lists:sublist(Global, Limit)],
      pg => pg_groups(Limit)}.

pg_groups(Limit) ->
    case erlang:whereis(pg) of
        undefined ->
            #{running => false, group_count => 0, groups => []};
        _ ->
            Groups = try lists:sort(pg:which_groups()) catch _:_ -> [] end,
            #{running => true, group_count => length(Groups),
              groups => [#{group => bounded(G, 200),
                           member_count => length(pg:get_members(G)),
                           local_member_count => length(pg:get_local_members(G))}
                         || G <- lists:sublist(Groups, Limit)]}
    end.

%% ---------------------------------------------------------------- ports

%% @doc Ports, the Limit busiest by bytes in + out, with name, owner and io
%% counters. Cost: one port_info/1 per port (one pass, a bounded top-N set).
-spec ports(pos_integer()) -> map().
ports(Limit0) ->
    Limit = clamp(Limit0),
    Rows = lists:foldl(fun(Port, Acc) ->
                               case erlang:port_info(Port) of
                                   undefined -> Acc;
                                   Info ->
                                       M = maps:with([id, name, connected, input, output, os_pid],
                                                     maps:from_list(Info)),
                                       Io = maps:get(input, M) + maps:get(output, M),
                                       top_add({Io, Port}, M#{port => Port,
                                                               name => to_binary(maps:get(name, M))},
                                               Limit, Acc)
                               end
                       end, [], erlang:ports()),
    #{port_count => erlang:system_info(port_count),
      port_limit => erlang:system_info(port_limit),
      ports => [Row || {_, Row} <- lists:reverse(lists:keysort(1, Rows))]}.

%% A small top-N list of {Key, Row}: fine for N up to a thousand rows.
top_add(Key, Row, Limit, Acc) when length(Acc) < Limit ->
    [{Key, Row} | Acc];
top_add(Key, Row, _Limit, Acc) ->
    [{Min, _} | Rest] = lists:keysort(1, Acc),
    case Key > Min of
        true -> [{Key, Row} | Rest];
        false -> Acc
    end.

%% ---------------------------------------------------------------- ETS

%% @doc ETS tables ranked by memory or size (largest first), a page of Limit
%% from Offset. Opts: sort (<<"memory">> | <<"size">>), limit, offset. Cost:
%% one ets:info/2 per table and a sort of all tables (tables number thousands
%% at most).
-spec ets_list(map()) -> map() | {error, term()}.
ets_list(Opts) ->
    case maps:get(sort, Opts, <<"memory">>) of
        Sort when Sort =:= <<"memory">>; Sort =:= <<"size">> ->
            Key = binary_to_existing_atom(Sort, utf8),
            Limit = clamp(maps:get(limit, Opts, 50)),
            Offset = max(0, maps:get(offset, Opts, 0)),
            Word = erlang:system_info(wordsize),
            All = [{K, T, I} || T <- ets:all(), I <- [table_summary(T, Word)], I =/= undefined,
                                K <- [maps:get(Key, I)]],
            Sorted = lists:reverse(lists:keysort(1, All)),
            Page = lists:sublist(Sorted, Offset + 1, Limit),
            #{table_count => length(All), offset => Offset,
              tables => [I || {_, _, I} <- Page]};
        Other ->
            {error, {bad_sort_key, Other}}
    end.

table_summary(T, Word) ->
    case ets:info(T) of
        undefined -> undefined;
        Info ->
            M = maps:from_list(Info),
            Owner = maps:get(owner, M),
            #{id => table_id(T, M),
              name => maps:get(name, M),
              named_table => maps:get(named_table, M),
              type => maps:get(type, M),
              protection => maps:get(protection, M),
              size => maps:get(size, M),
              memory => maps:get(memory, M) * Word,
              owner => Owner,
              owner_name => registered_name(Owner),
              keypos => maps:get(keypos, M),
              read_concurrency => maps:get(read_concurrency, M),
              write_concurrency => maps:get(write_concurrency, M),
              compressed => maps:get(compressed, M),
              heir => heir(maps:get(heir, M))}
    end.

table_id(T, _M) when is_atom(T) -> atom_to_binary(T, utf8);
table_id(T, _M) when is_reference(T) -> list_to_binary(erlang:ref_to_list(T)).

heir(none) -> none;
heir(Pid) when is_pid(Pid) -> Pid;
heir(_) -> none.

registered_name(Pid) when is_pid(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} -> Name;
        _ -> undefined
    end;
registered_name(_) -> undefined.

%% @doc One table: its metadata and a page of rows. Table is a name or a
%% table id as written by ets_list (<<"#Ref<...>">>). Opts: limit (rows,
%% <= 500), cursor (set and ordered_set: the key after which to start, as
%% term_to_binary), offset (bag and duplicate_bag: rows to skip), max_row_words
%% (rows larger than this are replaced by a marker with a short preview).
%% Private tables of other processes are refused. Cost: Limit lookups for
%% set/ordered_set (ets:next from the cursor key); for bags ets:select/3 in
%% chunks, skipping Offset rows (so late pages of a bag cost more).
-spec ets_table(binary(), map()) -> map() | {error, term()}.
ets_table(TableText, Opts) ->
    case find_table(TableText) of
        {ok, T} ->
            Word = erlang:system_info(wordsize),
            case table_summary(T, Word) of
                undefined -> {error, not_found};
                #{protection := private, owner := Owner} when Owner =/= self() -> {error, private};
                Summary -> table_page(T, Summary, Opts)
            end;
        Error ->
            Error
    end.

find_table(<<"#Ref<", _/binary>> = Text) ->
    try list_to_ref(binary_to_list(Text)) of
        Ref -> try ets:info(Ref, id) of
                   undefined -> {error, not_found};
                   _ -> {ok, Ref}
               catch error:badarg -> {error, not_found}
               end
    catch error:badarg -> {error, bad_table_id}
    end;
find_table(Name) when is_binary(Name) ->
    case arsenal_agent:existing_atom(Name) of
        {ok, Atom} ->
            case ets:info(Atom, id) of
                undefined -> {error, not_found};
                _ -> {ok, Atom}
            end;
        error -> {error, not_found}
    end.


table_page(T, Summary, Opts) ->
    Limit = max(1, min(maps:get(limit, Opts, 50), ?MAX_ROWS)),
    MaxWords = max(16, maps:get(max_row_words, Opts, 2000)),
    try
        {Rows, Next} = case maps:get(type, Summary) of
                           Type when Type =:= set; Type =:= ordered_set ->
                               keyed_page(T, maps:get(cursor, Opts, undefined), Limit);
                           _ ->
                               offset_page(T, max(0, maps:get(offset, Opts, 0)), Limit)
                       end,
        #{table => Summary,
          rows => [bound_row(R, MaxWords) || R <- Rows],
          next => Next}
    catch
        throw:Reason -> {error, Reason};
        error:badarg -> {error, table_gone}
    end.

keyed_page(T, undefined, Limit) ->
    collect_keys(T, ets:first(T), Limit, []);
keyed_page(T, Cursor, Limit) when is_binary(Cursor) ->
    Key = try binary_to_term(Cursor, [safe]) catch error:badarg -> throw(bad_cursor) end,
    Next = try ets:next(T, Key) catch error:badarg -> throw(cursor_key_gone) end,
    collect_keys(T, Next, Limit, []).

collect_keys(_T, '$end_of_table', _Limit, Acc) ->
    {lists:reverse(Acc), done};
collect_keys(T, Key, 0, Acc) ->
    %% Acc holds Limit rows and more remain: the cursor is the last key shown.
    _ = Key,
    [Last | _] = Acc,
    {lists:reverse(Acc), {key, term_to_binary(element(ets:info(T, keypos), Last))}};
collect_keys(T, Key, Limit, Acc) ->
    Rows = ets:lookup(T, Key),
    Next = try ets:next(T, Key) catch error:badarg -> '$end_of_table' end,
    collect_keys(T, Next, Limit - length(Rows), lists:reverse(Rows, Acc)).

offset_page(T, Offset, Limit) ->
    Spec = [{'_', [], ['$_']}],
    Rows = skip_select(ets:select(T, Spec, 100), Offset, Limit, []),
    case length(Rows) > Limit of
        true -> {lists:sublist(Rows, Limit), {offset, Offset + Limit}};
        false -> {Rows, done}
    end.

%% Skip Offset rows, then take Limit + 1 (the extra one says whether more remain).
skip_select('$end_of_table', _Skip, _Limit, Acc) ->
    lists:reverse(Acc);
skip_select({Rows, Cont}, Skip, Limit, Acc) ->
    N = length(Rows),
    if
        Skip >= N ->
            skip_select(ets:select(Cont), Skip - N, Limit, Acc);
        true ->
            Taken = lists:reverse(lists:nthtail(Skip, Rows), Acc),
            case length(Taken) > Limit of
                true -> lists:sublist(lists:reverse(Taken), Limit + 1);
                false -> skip_select(ets:select(Cont), 0, Limit, Taken)
            end
    end.

bound_row(Row, MaxWords) ->
    case erts_debug:flat_size(Row) of
        Words when Words > MaxWords ->
            #{'$truncated' => true, words => Words,
              preview => iolist_to_binary(io_lib:format("~P", [Row, 12]))};
        _ ->
            Row
    end.

bounded(Term, MaxWords) ->
    case erts_debug:flat_size(Term) > MaxWords of
        true -> iolist_to_binary(io_lib:format("~P", [Term, 12]));
        false -> Term
    end.

%% ---------------------------------------------------------------- schedulers

%% @doc Scheduler utilisation over IntervalMs (100..10000): turns
%% scheduler_wall_time on, samples twice, and puts the flag back as it was.
%% Cost: the flag makes schedulers read the clock at every state change (a
%% small overhead, only while sampling); this call sleeps for the interval.
-spec scheduler_usage(pos_integer()) -> map().
scheduler_usage(IntervalMs) ->
    Interval = max(100, min(IntervalMs, 10000)),
    Before = erlang:system_flag(scheduler_wall_time, true),
    try
        First = erlang:statistics(scheduler_wall_time_all),
        timer:sleep(Interval),
        Second = erlang:statistics(scheduler_wall_time_all),
        usage(First, Second, Interval)
    after
        Before =:= false andalso erlang:system_flag(scheduler_wall_time, false)
    end.

usage(First, Second, Interval) ->
    Normal = erlang:system_info(schedulers),
    DirtyCpu = erlang:system_info(dirty_cpu_schedulers),
    Pairs = lists:zip(lists:sort(First), lists:sort(Second)),
    Rows = [#{id => Id,
              type => scheduler_type(Id, Normal, DirtyCpu),
              utilization => ratio(A1 - A0, T1 - T0)}
            || {{Id, A0, T0}, {Id, A1, T1}} <- Pairs],
    Normals = [{A1 - A0, T1 - T0} || {{Id, A0, T0}, {Id, A1, T1}} <- Pairs, Id =< Normal],
    All = [{A1 - A0, T1 - T0} || {{_, A0, T0}, {_, A1, T1}} <- Pairs],
    #{interval_ms => Interval,
      total => sum_ratio(Normals),
      total_with_dirty => sum_ratio(All),
      schedulers => Rows}.

scheduler_type(Id, Normal, _) when Id =< Normal -> normal;
scheduler_type(Id, Normal, DirtyCpu) when Id =< Normal + DirtyCpu -> dirty_cpu;
scheduler_type(_, _, _) -> dirty_io.

ratio(_, 0) -> 0.0;
ratio(Active, Total) -> Active / Total.

sum_ratio(Pairs) ->
    ratio(lists:sum([A || {A, _} <- Pairs]), lists:sum([T || {_, T} <- Pairs])).

%% ---------------------------------------------------------------- health

%% @doc One pass over the processes gathering what a health verdict needs:
%% counts against limits, the Limit largest processes by memory, processes
%% whose queue is at least queue_threshold, how many were started by proc_lib
%% (so they have '$ancestors' and a parent), the supervisors and how many
%% processes they supervise (their links other than their parent), orphans
%% (not proc_lib-started, no links, no registered name, not one of the
%% runtime's erts_* helpers), and two supervision anti-patterns: OTP processes
%% that no supervisor supervises (started from a shell or with start/0), and
%% supervisors with more than 10 000 children. Supervisors are told by
%% arsenal_agent_sup:initial_call_kind/1 (OTP's, Elixir's and forks of OTP's
%% supervisor). A process linked to a supervised process, or to one so
%% linked (an acceptor pool's helpers, linked to their supervised parent), is
%% part of the supervision tree: it dies with it, and is not reported.
%%
%% Opts: queue_threshold, memory_threshold (bytes), limit.
%%
%% Cost: one process_info/2 of six cheap items per process (links are copied:
%% a supervisor's link list is as long as its children); the dictionary is
%% read only for proc_lib processes that trap exits and have links (supervisor
%% candidates) and for at most 10 000 proc_lib processes no supervisor links
%% to; the links of those are followed to supervised processes (at most 20
%% rounds over them). Like recon's scans, in one pass with bounded top-N sets.
-spec health(map()) -> map().
health(Opts) ->
    QueueMin = maps:get(queue_threshold, Opts, 1000),
    MemoryMin = maps:get(memory_threshold, Opts, 50000000),
    Limit = clamp(maps:get(limit, Opts, 10)),
    Items = [memory, message_queue_len, initial_call, links, registered_name, group_leader, trap_exit],
    Init = #{count => 0, proc_lib => 0, orphans => 0, orphan_sample => [],
             hogs => [], queues => [], queue_count => 0, hog_count => 0, total_memory => 0,
             supervisors => 0, big_supervisors => [], children => #{}, otp => []},
    Me = self(),
    Acc = lists:foldl(
            fun(P, A) when P =:= Me -> A;
               (P, A) ->
                    case erlang:process_info(P, Items) of
                        undefined -> A;
                        Info -> health_add(P, maps:from_list(Info), QueueMin, MemoryMin, Limit, A)
                    end
            end, Init, erlang:processes()),
    Hogs = [R || {_, R} <- lists:reverse(lists:keysort(1, maps:get(hogs, Acc)))],
    Queues = [R || {_, R} <- lists:reverse(lists:keysort(1, maps:get(queues, Acc)))],
    Children = maps:get(children, Acc),
    {Unsupervised, UnsupervisedCount} = unsupervised(maps:get(otp, Acc), Children, Limit),
    #{process_count => erlang:system_info(process_count),
      process_limit => erlang:system_info(process_limit),
      atom_count => erlang:system_info(atom_count),
      atom_limit => erlang:system_info(atom_limit),
      port_count => erlang:system_info(port_count),
      port_limit => erlang:system_info(port_limit),
      ets_count => erlang:system_info(ets_count),
      ets_limit => erlang:system_info(ets_limit),
      memory_total => erlang:memory(total),
      scanned => maps:get(count, Acc),
      processes_memory => maps:get(total_memory, Acc),
      proc_lib_count => maps:get(proc_lib, Acc),
      supervisor_count => maps:get(supervisors, Acc),
      supervised_count => maps:size(Children),
      large_supervisors => lists:sublist(maps:get(big_supervisors, Acc), Limit),
      unsupervised_count => UnsupervisedCount,
      unsupervised => Unsupervised,
      orphan_count => maps:get(orphans, Acc),
      orphans => lists:reverse(maps:get(orphan_sample, Acc)),
      memory_hog_count => maps:get(hog_count, Acc),
      memory_hogs => Hogs,
      large_queue_count => maps:get(queue_count, Acc),
      large_queues => Queues,
      queue_threshold => QueueMin,
      memory_threshold => MemoryMin}.

health_add(P, I, QueueMin, MemoryMin, Limit, A) ->
    #{memory := Mem, message_queue_len := Q, initial_call := Call, links := Links,
      registered_name := Name} = I,
    ProcLib = Call =:= {proc_lib, init_p, 5},
    Orphan = not ProcLib andalso Links =:= [] andalso Name =:= [] andalso not erts_process(Call),
    Row = fun() -> #{pid => P, name => registered_name(P), memory => Mem,
                     message_queue_len => Q, initial_call => initial_call(P, Call)} end,
    A0 = A#{count := maps:get(count, A) + 1,
            total_memory := maps:get(total_memory, A) + Mem,
            proc_lib := maps:get(proc_lib, A) + bool(ProcLib)},
    A1 = case ProcLib of
             true -> supervision_add(P, Links, Row, maps:get(trap_exit, I), A0);
             false -> A0
         end,
    A2 = case Orphan of
             true ->
                 Sample = maps:get(orphan_sample, A1),
                 A1#{orphans := maps:get(orphans, A1) + 1,
                     orphan_sample := case length(Sample) < Limit of
                                          true -> [Row() | Sample];
                                          false -> Sample
                                      end};
             false -> A1
         end,
    A3 = case Mem >= MemoryMin of
             true -> A2#{hog_count := maps:get(hog_count, A2) + 1,
                         hogs := top_add({Mem, P}, Row(), Limit, maps:get(hogs, A2))};
             false -> A2
         end,
    case Q >= QueueMin of
        true -> A3#{queue_count := maps:get(queue_count, A3) + 1,
                    queues := top_add({Q, P}, Row(), Limit, maps:get(queues, A3))};
        false -> A3
    end.

%% A proc_lib process that traps exits and has links may be a supervisor (a
%% supervisor started outside any tree may have no parent link): its
%% '$initial_call' says so. A supervisor's links other than its parent are
%% the processes it supervises.
supervision_add(P, Links, Row, true, A) when Links =/= [] ->
    case dictionary(P) of
        {supervisor, Dict} ->
            Parent = parent(Dict),
            Kids = [L || L <- Links, is_pid(L), L =/= Parent],
            A1 = A#{supervisors := maps:get(supervisors, A) + 1,
                    children := lists:foldl(fun(K, M) -> M#{K => true} end, maps:get(children, A), Kids)},
            case length(Kids) > 10000 of
                true -> A1#{big_supervisors := [(Row())#{children => length(Kids)}
                                                | maps:get(big_supervisors, A1)]};
                false -> A1
            end;
        _ ->
            A#{otp := [{P, Links} | maps:get(otp, A)]}
    end;
supervision_add(P, Links, _Row, _TrapExit, A) ->
    A#{otp := [{P, Links} | maps:get(otp, A)]}.

%% A supervisor (OTP's, Elixir's, a fork) or a supervisor_bridge, from
%% proc_lib's '$initial_call' (of a process that traps exits, as every one does).
dictionary(P) ->
    case erlang:process_info(P, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind('$initial_call', 1, Dict) of
                {_, {supervisor_bridge, _, _}} -> {supervisor, Dict};
                {_, Call} ->
                    case arsenal_agent_sup:initial_call_kind(Call) of
                        {_, _, _} -> {supervisor, Dict};
                        other -> other
                    end;
                false -> other
            end;
        undefined -> other
    end.

parent(Dict) ->
    case lists:keyfind('$ancestors', 1, Dict) of
        {_, [Pid | _]} when is_pid(Pid) -> Pid;
        {_, [Name | _]} when is_atom(Name) -> erlang:whereis(Name);
        _ -> undefined
    end.

%% OTP processes (proc_lib-started, not supervisors) that no supervisor links
%% to and that are not linked to a process in a supervision tree (a supervised
%% one, or one linked to such, followed for at most 20 rounds), leaving out
%% application masters and the kernel application's own (logger...): at most
%% 10 000 are looked at.
unsupervised(OtpProcs, Children, Limit) ->
    Candidates = lists:sublist([PL || {P, _} = PL <- OtpProcs, not maps:is_key(P, Children)], 10000),
    Linked = in_tree(Candidates, Children, 20),
    {Found, _Cache} = lists:foldl(fun({P, _}, {Acc, Cache}) ->
                                          case system_otp(P, Cache) of
                                              {true, Cache1} -> {Acc, Cache1};
                                              {false, Cache1} -> {[P | Acc], Cache1}
                                          end
                                  end, {[], #{}}, Linked),
    Rows = [#{pid => P, name => registered_name(P), initial_call => initial_call(P, {proc_lib, init_p, 5}),
              memory => memory(P), message_queue_len => queue_len(P)}
            || P <- lists:sublist(Found, Limit)],
    {Rows, length(Found)}.

%% The candidates ({Pid, Links}) left once those linked to a process of the
%% tree (InTree, a map) are taken out; each round adds the ones taken out to
%% the tree, so chains of linked helpers are followed.
in_tree(Candidates, _InTree, 0) ->
    Candidates;
in_tree(Candidates, InTree, Rounds) ->
    {Joined, Rest} = lists:partition(
                       fun({_, Links}) -> lists:any(fun(L) -> maps:is_key(L, InTree) end, Links) end,
                       Candidates),
    case Joined of
        [] -> Rest;
        _ -> in_tree(Rest, lists:foldl(fun({P, _}, M) -> M#{P => true} end, InTree, Joined), Rounds - 1)
    end.

%% Application masters, supervisors, and processes of the kernel application
%% or running its code (logger starts before kernel's master). Which
%% application a module belongs to is looked up once per module.
system_otp(P, Cache) ->
    case initial_call(P, {proc_lib, init_p, 5}) of
        {application_master, _, _} -> {true, Cache};
        {supervisor_bridge, _, _} -> {true, Cache};
        {M, _, _} = Call when is_atom(M) ->
            case arsenal_agent_sup:initial_call_kind(Call) of
                {_, _, _} -> {true, Cache};
                other ->
                    case application:get_application(P) of
                        {ok, kernel} -> {true, Cache};
                        _ ->
                            case maps:find(M, Cache) of
                                {ok, Kernel} -> {Kernel, Cache};
                                error ->
                                    Kernel = application:get_application(M) =:= {ok, kernel},
                                    {Kernel, Cache#{M => Kernel}}
                            end
                    end
            end;
        _ -> {false, Cache}
    end.

memory(P) -> case erlang:process_info(P, memory) of {memory, M} -> M; _ -> 0 end.
queue_len(P) -> case erlang:process_info(P, message_queue_len) of {message_queue_len, Q} -> Q; _ -> 0 end.

%% The runtime's own helpers (literal area collector, dirty signal handlers...).
erts_process({M, _, _}) -> lists:prefix("erts_", atom_to_list(M));
erts_process(_) -> false.

bool(true) -> 1;
bool(false) -> 0.

initial_call(Pid, {proc_lib, init_p, 5}) ->
    try proc_lib:translate_initial_call(Pid) catch _:_ -> {proc_lib, init_p, 5} end;
initial_call(_Pid, Call) ->
    Call.

%% ---------------------------------------------------------------- bottlenecks

%% @doc Where work piles up, sampled over IntervalMs (100..10000): processes
%% whose queue grew between two scans, processes waiting in a synchronous call
%% (gen:do_call, found by the monitor the call holds) assembled into chains
%% and deadlock cycles, and the scheduler utilisation over the same interval.
%% Opts: interval_ms, limit, min_queue. Cost: two passes of
%% process_info(P, message_queue_len), one of current_function, and
%% scheduler_wall_time on while sampling (put back as it was).
-spec bottlenecks(map()) -> map().
bottlenecks(Opts) ->
    Interval = max(100, min(maps:get(interval_ms, Opts, 1000), 10000)),
    Limit = clamp(maps:get(limit, Opts, 10)),
    MinQueue = max(1, maps:get(min_queue, Opts, 1)),
    Me = self(),
    First = queue_snapshot(Me, MinQueue),
    Schedulers = scheduler_usage(Interval),
    Growing = lists:foldl(
                fun({P, Q0}, Acc) ->
                        case erlang:process_info(P, message_queue_len) of
                            {message_queue_len, Q1} when Q1 > Q0 ->
                                top_add({Q1 - Q0, P},
                                        #{pid => P, name => registered_name(P),
                                          before => Q0, 'after' => Q1,
                                          growth_per_s => (Q1 - Q0) * 1000 / Interval},
                                        Limit, Acc);
                            _ -> Acc
                        end
                end, [], First),
    Waits = call_waits(Me),
    Busy = [S || S = #{utilization := U, type := normal} <- maps:get(schedulers, Schedulers),
                 U >= 0.9],
    #{interval_ms => Interval,
      queued_process_count => length(First),
      growing_queues => [R || {_, R} <- lists:reverse(lists:keysort(1, Growing))],
      waiting_call_count => maps:size(Waits),
      call_chains => lists:sublist(call_chains(Waits), Limit),
      scheduler_total => maps:get(total, Schedulers),
      busy_schedulers => Busy}.

%% {Pid, Len} for processes with a queue of at least MinQueue, capped at the
%% 10 000 longest so the second pass stays bounded.
queue_snapshot(Me, MinQueue) ->
    All = [{P, Q} || P <- erlang:processes(), P =/= Me,
                     {message_queue_len, Q} <- [erlang:process_info(P, message_queue_len)],
                     Q >= MinQueue],
    case length(All) > 10000 of
        true -> lists:sublist(lists:reverse(lists:keysort(2, All)), 10000);
        false -> All
    end.

%% Caller => callee for every process blocked in gen:do_call/4 (gen_server,
%% gen_statem, supervisor calls...): the callee is the process it monitors.
call_waits(Me) ->
    lists:foldl(
      fun(P, Acc) when P =:= Me -> Acc;
         (P, Acc) ->
              case erlang:process_info(P, current_function) of
                  {current_function, {gen, do_call, 4}} ->
                      case erlang:process_info(P, monitors) of
                          {monitors, [{process, Callee} | _]} when is_pid(Callee) ->
                              Acc#{P => Callee};
                          {monitors, [{process, {Name, Node}} | _]} when Node =:= node() ->
                              case erlang:whereis(Name) of
                                  Callee when is_pid(Callee) -> Acc#{P => Callee};
                                  _ -> Acc
                              end;
                          _ -> Acc
                      end;
                  _ -> Acc
              end
      end, #{}, erlang:processes()).

%% Chains that start at a caller nobody waits on, longest first; a chain that
%% comes back on itself is a deadlock.
call_chains(Waits) ->
    Callees = maps:from_list([{C, true} || C <- maps:values(Waits)]),
    Heads = [P || P <- maps:keys(Waits), not maps:is_key(P, Callees)],
    Cycles = [P || P <- maps:keys(Waits), in_cycle(P, Waits)],
    Chains = [chain(H, Waits, [], false) || H <- Heads]
             ++ [chain(C, Waits, [], false) || C <- lists:usort([lists:min(cycle_of(C, Waits)) || C <- Cycles])],
    Sorted = lists:reverse(lists:sort([{length(Ps), Ps, Dead} || {Ps, Dead} <- Chains])),
    [#{length => L, processes => [#{pid => P, name => registered_name(P)} || P <- Ps],
       deadlock => Dead} || {L, Ps, Dead} <- Sorted].

chain(P, Waits, Seen, _) ->
    case lists:member(P, Seen) of
        true -> {lists:reverse(Seen), true};
        false ->
            case maps:find(P, Waits) of
                {ok, Next} when length(Seen) < 50 -> chain(Next, Waits, [P | Seen], false);
                _ -> {lists:reverse([P | Seen]), false}
            end
    end.

in_cycle(P, Waits) -> lists:member(P, follow(maps:get(P, Waits), Waits, [], 50)).

cycle_of(P, Waits) -> [P | lists:takewhile(fun(Q) -> Q =/= P end, follow(maps:get(P, Waits), Waits, [], 50))].

follow(_P, _Waits, Acc, 0) -> lists:reverse(Acc);
follow(P, Waits, Acc, N) ->
    case lists:member(P, Acc) of
        true -> lists:reverse(Acc);
        false ->
            case maps:find(P, Waits) of
                {ok, Next} -> follow(Next, Waits, [P | Acc], N - 1);
                error -> lists:reverse([P | Acc])
            end
    end.

%% ---------------------------------------------------------------- one queue

%% @doc One process's queue: its length sampled twice over IntervalMs
%% (0..10000), what the process is doing, and, when the queue holds at most
%% max_copy messages, the first `sample' messages summarised by shape (tag
%% and size) and shown truncated. Longer queues are not copied (copying a huge
%% queue is what kills nodes): only the figures are returned. Opts:
%% interval_ms, sample, max_copy.
-spec message_queue(binary(), map()) -> map() | {error, term()}.
message_queue(Target, Opts) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} ->
            Interval = max(0, min(maps:get(interval_ms, Opts, 1000), 10000)),
            Sample = max(0, min(maps:get(sample, Opts, 20), 100)),
            MaxCopy = max(0, min(maps:get(max_copy, Opts, 10000), 100000)),
            Items = [message_queue_len, current_function, status, memory],
            case erlang:process_info(Pid, Items) of
                undefined -> {error, gone};
                Info0 ->
                    First = maps:from_list(Info0),
                    timer:sleep(Interval),
                    case erlang:process_info(Pid, Items) of
                        undefined -> {error, gone};
                        Info1 ->
                            Second = maps:from_list(Info1),
                            Len = maps:get(message_queue_len, Second),
                            {Shapes, Messages, Copied} = queue_sample(Pid, Len, Sample, MaxCopy),
                            #{pid => Pid, name => registered_name(Pid),
                              before => maps:get(message_queue_len, First),
                              'after' => Len,
                              interval_ms => Interval,
                              growth_per_s => case Interval of
                                                  0 -> 0.0;
                                                  _ -> (Len - maps:get(message_queue_len, First))
                                                           * 1000 / Interval
                                              end,
                              current_function => maps:get(current_function, Second),
                              status => maps:get(status, Second),
                              memory => maps:get(memory, Second),
                              copied => Copied,
                              shapes => Shapes,
                              messages => Messages}
                    end
            end;
        Error ->
            Error
    end.

queue_sample(_Pid, Len, _Sample, MaxCopy) when Len > MaxCopy -> {[], [], false};
queue_sample(_Pid, _Len, 0, _MaxCopy) -> {[], [], false};
queue_sample(Pid, _Len, Sample, _MaxCopy) ->
    case erlang:process_info(Pid, messages) of
        {messages, All} ->
            Shapes = lists:foldl(fun(M, Acc) -> maps:update_with(shape(M), fun(N) -> N + 1 end, 1, Acc) end,
                                 #{}, All),
            Ranked = lists:sublist(lists:reverse(lists:keysort(2, maps:to_list(Shapes))), Sample),
            {[#{shape => S, count => N} || {S, N} <- Ranked],
             [bound_row(M, 500) || M <- lists:sublist(All, Sample)], true};
        undefined ->
            {[], [], false}
    end.

shape(M) when is_tuple(M), tuple_size(M) > 0, is_atom(element(1, M)) ->
    iolist_to_binary(io_lib:format("{~p, ...}/~b", [element(1, M), tuple_size(M)]));
shape(M) when is_tuple(M) -> iolist_to_binary(io_lib:format("tuple/~b", [tuple_size(M)]));
shape(M) when is_atom(M) -> iolist_to_binary(io_lib:format("~p", [M]));
shape(M) when is_binary(M) -> <<"binary">>;
shape(M) when is_list(M) -> <<"list">>;
shape(M) when is_map(M) -> <<"map">>;
shape(M) when is_integer(M) -> <<"integer">>;
shape(_) -> <<"other">>.

%% ---------------------------------------------------------------- helpers

clamp(N) when is_integer(N) -> max(1, min(N, ?MAX_LIMIT));
clamp(_) -> 50.
