%% @doc Arsenal's agent for diagnostics: processes deadlocked in synchronous
%% calls on each other (and long chains of waits), and processes whose memory
%% keeps growing, with the biggest holders of refc binaries.
%%
%% Both read process_info inside the VM and sample it twice or more, so only
%% what lasts is reported: a call still the same one after interval_ms, a
%% memory footprint that never fell between samples. No process is traced,
%% suspended or sent a message; the one thing that acts on processes is the
%% opt-in garbage collection of the N largest binary holders (gc_top), like
%% recon:bin_leak/1 but never of every process.
%%
%% Safety: options arrive as a map of small integers, clamped here; no atom is
%% made. Every scan is one pass over erlang:processes() keeping bounded state,
%% and every result list is capped (?MAX_LIMIT rows, ?MAX_CANDIDATES callees).
-module(arsenal_agent_diag).

-export([deadlocks/1, leaks/1]).

-define(MAX_LIMIT, 100).
-define(MAX_BLOCKED, 10000).
-define(MAX_CHAIN, 50).
-define(MAX_CANDIDATES, 20).
-define(GC_WAIT_MS, 2000).
-define(GC_DEADLINE_MS, 10000).

%% Where a process waiting for the reply of a gen call (gen_server, gen_statem,
%% gen_event, sys, supervisor, Elixir's GenServer and Agent...) sits.
-define(CALL_WAITS, [{gen, do_call, 4}, {gen, wait_resp_mon, 3}]).

%% Modules of the call machinery: the frames to skip to find where in the
%% caller's own code the call was made.
-define(CALL_MODULES, [gen, gen_server, gen_statem, gen_event, sys, supervisor, proc_lib,
                       'Elixir.GenServer', 'Elixir.Agent', 'Elixir.GenStage']).

%% ================================================================== deadlocks

%% @doc Processes blocked in a synchronous call at two samples IntervalMs
%% apart (100..10000, default 500) in the same call, each with the process it
%% waits on (the process its gen call monitors). From them: cycles (processes
%% waiting on each other: a deadlock), and chains of waits ending at a process
%% that is not itself in a call (reported when at least min_chain processes
%% long, or when that last process is suspended). Opts: interval_ms, limit
%% (1..100), min_chain (2..50).
%% Cost: one process_info(P, current_function) per process, then for the
%% blocked ones (at most 10 000) monitors, reductions and queue length twice;
%% current_stacktrace only for the processes reported.
-spec deadlocks(map()) -> map().
deadlocks(Opts) ->
    Interval = clamp(maps:get(interval_ms, Opts, 500), 100, 10000, 500),
    Limit = clamp(maps:get(limit, Opts, 10), 1, ?MAX_LIMIT, 10),
    MinChain = clamp(maps:get(min_chain, Opts, 3), 2, ?MAX_CHAIN, 3),
    {First, FirstCount} = blocked_sample(self()),
    timer:sleep(Interval),
    Edges = still_blocked(First),
    Cycles = find_cycles(Edges),
    InCycle = maps:from_list([{P, true} || C <- Cycles, P <- C]),
    Ends = chain_ends(Edges, InCycle),
    CycleRows = cycle_rows(Cycles, Ends, Edges),
    ChainRows = chain_rows(Ends, Edges, InCycle, MinChain),
    #{interval_ms => Interval,
      blocked_first => FirstCount,
      blocked_count => maps:size(Edges),
      truncated => FirstCount > ?MAX_BLOCKED,
      cycle_count => length(CycleRows),
      cycles => lists:sublist(CycleRows, Limit),
      chain_count => length(ChainRows),
      chains => lists:sublist(ChainRows, Limit)}.

%% Processes waiting in a gen call: #{Pid => {Current, Monitors, Reductions,
%% QueueLen}} for the first ?MAX_BLOCKED, and how many there were.
blocked_sample(Me) ->
    lists:foldl(
      fun(P, Acc) when P =:= Me -> Acc;
         (P, {Map, N}) ->
              case erlang:process_info(P, current_function) of
                  {current_function, Current} ->
                      case lists:member(Current, ?CALL_WAITS) of
                          true when N < ?MAX_BLOCKED ->
                              case call_signature(P) of
                                  undefined -> {Map, N};
                                  Sig -> {Map#{P => Sig}, N + 1}
                              end;
                          true -> {Map, N + 1};
                          false -> {Map, N}
                      end;
                  undefined -> {Map, N}
              end
      end, {#{}, 0}, erlang:processes()).

call_signature(P) ->
    case erlang:process_info(P, [current_function, monitors, reductions, message_queue_len]) of
        [{current_function, C}, {monitors, M}, {reductions, R}, {message_queue_len, Q}] -> {C, M, R, Q};
        undefined -> undefined
    end.

%% The processes still in the same call: same function, same monitors, and no
%% more reductions spent than the messages that arrived meanwhile explain (a
%% blocked receive costs about one reduction per message arriving, a new call
%% at least a dozen). Each maps to {Callee, Certain, Candidates}.
still_blocked(First) ->
    decide(maps:fold(
      fun(P, {C, M, R, Q}, Acc) ->
              case call_signature(P) of
                  {C, M, R2, Q2} when Q2 >= Q, R2 - R =< 2 * (Q2 - Q) + 4 ->
                      case callees(M) of
                          [] -> Acc;
                          [Only] -> Acc#{P => {Only, true, [Only]}};
                          Several -> Acc#{P => {undecided, false, lists:sublist(Several, ?MAX_CANDIDATES)}}
                      end;
                  _ -> Acc
              end
      end, #{}, First)).

%% With several candidates, the one that is itself blocked is taken (a call
%% to a process that is waiting is the one that matters here).
decide(Edges) ->
    maps:map(fun(_P, {undecided, false, Cands}) ->
                     Next = case [C || C <- Cands, is_pid(C), maps:is_key(C, Edges)] of
                                [B | _] -> B;
                                [] -> hd(Cands)
                            end,
                     {Next, false, Cands};
                (_P, Edge) -> Edge
             end, Edges).

%% The processes monitored: a gen call monitors its callee for the call's
%% length. Names are resolved on this node; a name on another node stays
%% {Name, Node}.
callees(Monitors) ->
    lists:usort(lists:filtermap(
                  fun({process, Pid}) when is_pid(Pid) -> {true, Pid};
                     ({process, {Name, Node}}) when Node =:= node() ->
                          case erlang:whereis(Name) of
                              Pid when is_pid(Pid) -> {true, Pid};
                              _ -> false
                          end;
                     ({process, {Name, Node}}) -> {true, {Name, Node}};
                     (_) -> false
                  end, Monitors)).

%% Each blocked process has one next process: the wait graph is a functional
%% graph, and one walk per unvisited process finds every cycle once, in O(n).
find_cycles(Edges) ->
    {_, Cycles} = lists:foldl(
                    fun(P, {Seen, Acc}) ->
                            case maps:is_key(P, Seen) of
                                true -> {Seen, Acc};
                                false -> walk(P, P, Edges, Seen, [], Acc)
                            end
                    end, {#{}, []}, lists:sort(maps:keys(Edges))),
    lists:reverse(Cycles).

walk(P, Start, Edges, Seen, Path, Acc) ->
    case maps:find(P, Seen) of
        {ok, Start} ->
            {Before, _} = lists:splitwith(fun(Q) -> Q =/= P end, Path),
            {Seen, [[P | lists:reverse(Before)] | Acc]};
        {ok, _EarlierWalk} ->
            {Seen, Acc};
        error ->
            case maps:find(P, Edges) of
                {ok, {Next, _, _}} when is_pid(Next) ->
                    walk(Next, Start, Edges, Seen#{P => Start}, [P | Path], Acc);
                _ ->
                    {Seen#{P => Start}, Acc}
            end
    end.

%% For every blocked process outside a cycle: the process its waits end at
%% (one not in a call, or a cycle member) and how many steps away it is.
chain_ends(Edges, InCycle) ->
    maps:fold(fun(P, _, Memo) ->
                      case maps:is_key(P, InCycle) of
                          true -> Memo;
                          false -> element(2, resolve(P, Edges, InCycle, Memo))
                      end
              end, #{}, Edges).

resolve(P, Edges, InCycle, Memo) ->
    case maps:find(P, Memo) of
        {ok, Found} -> {Found, Memo};
        error ->
            case {maps:is_key(P, InCycle), maps:find(P, Edges)} of
                {true, _} -> {{P, 0}, Memo};
                {false, {ok, {Next, _, _}}} ->
                    {{End, Steps}, Memo1} = resolve(Next, Edges, InCycle, Memo),
                    Found = {End, Steps + 1},
                    {Found, Memo1#{P => Found}};
                {false, error} -> {{P, 0}, Memo}
            end
    end.

%% Cycles, biggest first, each with its members described (the first
%% ?MAX_CHAIN) and how many other blocked processes wait on it.
cycle_rows(Cycles, Ends, Edges) ->
    Waiting = maps:fold(fun(_P, {End, _}, Acc) -> maps:update_with(End, fun(N) -> N + 1 end, 1, Acc) end,
                        #{}, Ends),
    Rows = [#{processes => [waiter(P, Edges) || P <- lists:sublist(C, ?MAX_CHAIN)],
              length => length(C),
              certain => lists:all(fun(P) -> element(2, maps:get(P, Edges)) end, C),
              waiting_count => lists:sum([maps:get(P, Waiting, 0) || P <- C])}
            || C <- Cycles],
    lists:sort(fun(A, B) -> maps:get(length, A) >= maps:get(length, B) end, Rows).

%% Chains not ending in a cycle, one per process they end at (the longest
%% one, its first ?MAX_CHAIN processes listed, with how many processes wait
%% on that end in all): reported when
%% MinChain processes long or when the end is suspended. Longest first.
chain_rows(Ends, Edges, InCycle, MinChain) ->
    ByEnd = maps:fold(
              fun(P, {End, Steps}, Acc) ->
                      case maps:is_key(End, InCycle) of
                          true -> Acc;
                          false ->
                              maps:update_with(End, fun({_, BestSteps, N}) when Steps > BestSteps ->
                                                            {P, Steps, N + 1};
                                                       ({Best, BestSteps, N}) -> {Best, BestSteps, N + 1}
                                                    end, {P, Steps, 1}, Acc)
                      end
              end, #{}, Ends),
    Rows = lists:filtermap(
             fun({End, {Head, Steps, Count}}) ->
                     Blocker = blocker(End),
                     Suspended = maps:get(status, Blocker) =:= suspended,
                     case Steps + 1 >= MinChain orelse Suspended of
                         true ->
                             Path = path(Head, End, Edges, ?MAX_CHAIN),
                             {true, #{processes => [waiter(P, Edges) || P <- Path],
                                      blocker => Blocker, length => Steps + 1,
                                      waiting_count => Count}};
                         false -> false
                     end
             end, maps:to_list(ByEnd)),
    Key = fun(#{length := L, blocker := #{status := S}, waiting_count := N}) -> {S =:= suspended, L, N} end,
    lists:sort(fun(A, B) -> Key(A) >= Key(B) end, Rows).

path(End, End, _Edges, _N) -> [];
path(_P, _End, _Edges, 0) -> [];
path(P, End, Edges, N) ->
    case maps:find(P, Edges) of
        {ok, {Next, _, _}} -> [P | path(Next, End, Edges, N - 1)];
        error -> []
    end.

%% A blocked process as a finding shows it: where it waits, in which call,
%% from where in its own code, and on whom.
waiter(P, Edges) ->
    {Next, Certain, Cands} = maps:get(P, Edges),
    Info = case erlang:process_info(P, [current_function, current_stacktrace, status, message_queue_len]) of
               [{current_function, C}, {current_stacktrace, Stack}, {status, S}, {message_queue_len, Q}] ->
                   #{current_function => C, call => call_frame(Stack), location => location(Stack),
                     status => S, message_queue_len => Q};
               undefined ->
                   #{current_function => undefined, call => undefined, location => undefined,
                     status => gone, message_queue_len => 0}
           end,
    Info#{pid => P, name => name_of(P), waiting_on => Next, certain => Certain,
          candidates => Cands}.

%% The call API used (gen_server:call/3...): the first frame past gen's.
call_frame(Stack) ->
    case [{M, F, A} || {M, F, A, _} <- Stack, M =/= gen] of
        [MFA | _] -> MFA;
        [] -> undefined
    end.

%% Where the caller's own code made the call: the first frame outside the
%% call machinery.
location(Stack) ->
    case [{M, F, A} || {M, F, A, _} <- Stack, not lists:member(M, ?CALL_MODULES)] of
        [MFA | _] -> MFA;
        [] -> undefined
    end.

%% The process a chain ends at: what it is doing instead of answering.
blocker({Name, Node}) ->
    #{pid => undefined, name => Name, remote_node => Node, status => remote,
      current_function => undefined, message_queue_len => 0};
blocker(P) when node(P) =/= node() ->
    #{pid => P, name => undefined, remote_node => node(P), status => remote,
      current_function => undefined, message_queue_len => 0};
blocker(P) ->
    case erlang:process_info(P, [current_function, status, message_queue_len]) of
        [{current_function, C}, {status, S}, {message_queue_len, Q}] ->
            #{pid => P, name => name_of(P), remote_node => undefined, status => S,
              current_function => C, message_queue_len => Q};
        undefined ->
            #{pid => P, name => undefined, remote_node => undefined, status => gone,
              current_function => undefined, message_queue_len => 0}
    end.

%% ================================================================== leaks

%% @doc Memory of every process sampled Samples times (2..10, default 3)
%% IntervalMs apart (100..10000, default 1000): the processes whose footprint
%% (process memory + the refc binaries it references) rose at every sample
%% (with every_sample => false: never fell and rose at least once; heaps grow
%% in steps, at garbage collections), biggest growth first, with their
%% series; the largest holders of
%% refc binaries at the last sample; and, when gc_top (0..50, default 0) is
%% set, those many of the largest holders garbage-collected with what each
%% freed. Opts: samples, interval_ms, limit (1..100), gc_top, every_sample.
%% Cost: per sample one process_info(P, [memory, binary]) per process (the
%% binary list is copied: long for a process holding many binaries), and
%% about ten words of state per process kept between samples; gc_top full
%% GCs, each waited on at most 2 s, 10 s in all.
-spec leaks(map()) -> map().
leaks(Opts) ->
    Samples = clamp(maps:get(samples, Opts, 3), 2, 10, 3),
    Interval = clamp(maps:get(interval_ms, Opts, 1000), 100, 10000, 1000),
    Limit = clamp(maps:get(limit, Opts, 10), 1, ?MAX_LIMIT, 10),
    GcTop = clamp(maps:get(gc_top, Opts, 0), 0, 50, 0),
    EverySample = maps:get(every_sample, Opts, true) =/= false,
    Me = self(),
    First = first_sample(Me),
    Cands = lists:foldl(fun(I, Acc) ->
                                timer:sleep(Interval),
                                next_sample(Acc, I)
                        end, First, lists:seq(2, Samples - 1)),
    timer:sleep(Interval),
    {Last, Holders, BinTotal} = last_sample(Me, Cands, Samples, max(Limit, GcTop)),
    Growing = [{G, P, V} || {P, {Rises, _, _} = V} <- maps:to_list(Last),
                            Rises > 0, not EverySample orelse Rises =:= Samples - 1,
                            G <- [growth(V)]],
    Top = lists:sublist(lists:reverse(lists:sort(Growing)), Limit),
    HolderRows = [holder(P, Bin, Count, Mem) || {Bin, P, Count, Mem} <- Holders],
    #{samples => Samples, interval_ms => Interval,
      process_count => maps:size(First),
      growing_count => length(Growing),
      growing => [grower(P, V, G, Samples) || {G, P, V} <- Top],
      binary_total => BinTotal,
      binary_holders => lists:sublist(HolderRows, Limit),
      gc => gc_top(lists:sublist(Holders, GcTop))}.

%% Per process {Rises, Prev, Series}: Prev is the last footprint sample
%% {Memory, Binary}; Series, newest first, is kept only once the process grew
%% (before that it is Prev repeated), so steady processes cost a few words.
first_sample(Me) ->
    lists:foldl(fun(P, Acc) when P =:= Me -> Acc;
                   (P, Acc) ->
                        case footprint(P) of
                            {Mem, Bin, _Count} -> Acc#{P => {0, {Mem, Bin}, undefined}};
                            undefined -> Acc
                        end
                end, #{}, erlang:processes()).

next_sample(Cands, I) ->
    maps:fold(fun(P, V, Acc) ->
                      case footprint(P) of
                          {Mem, Bin, _} ->
                              case step(V, {Mem, Bin}, I) of
                                  dropped -> Acc;
                                  V1 -> Acc#{P => V1}
                              end;
                          undefined -> Acc
                      end
              end, #{}, Cands).

%% The last sample goes over every process: growth for the candidates, and
%% the top binary holders ({Bin, Pid, Count, Memory}, biggest first) of all.
last_sample(Me, Cands, Samples, Keep) ->
    {Last, Top, Total} =
        lists:foldl(
          fun(P, Acc) when P =:= Me -> Acc;
             (P, {L, T, Sum}) ->
                  case footprint(P) of
                      {Mem, Bin, Count} ->
                          L1 = case maps:find(P, Cands) of
                                   {ok, V} ->
                                       case step(V, {Mem, Bin}, Samples) of
                                           dropped -> L;
                                           V1 -> L#{P => V1}
                                       end;
                                   error -> L
                               end,
                          {L1, top_add({Bin, P, Count, Mem}, Keep, T), Sum + Bin};
                      undefined -> {L, T, Sum}
                  end
          end, {#{}, {0, gb_sets:empty()}, 0}, erlang:processes()),
    {_, Set} = Top,
    {Last, [H || {Bin, _, _, _} = H <- lists:reverse(gb_sets:to_list(Set)), Bin > 0], Total}.

%% Sample I of a process: dropped when its footprint fell.
step({Rises, {M0, B0} = Prev, Series}, {M, B} = Now, I) ->
    if
        M + B < M0 + B0 -> dropped;
        M + B =:= M0 + B0 -> {Rises, Now, case Series of undefined -> undefined; _ -> [Now | Series] end};
        true ->
            Old = case Series of undefined -> lists:duplicate(I - 1, Prev); _ -> Series end,
            {Rises + 1, Now, [Now | Old]}
    end.

growth({0, _, _}) -> 0;
growth({_, {M, B}, Series}) ->
    {M0, B0} = lists:last(Series),
    M + B - (M0 + B0).

%% {Memory, Binary bytes, Binary count} of a process; undefined when gone.
footprint(P) ->
    case erlang:process_info(P, [memory, binary]) of
        [{memory, Mem}, {binary, Bins}] ->
            {Bin, Count} = lists:foldl(fun({_, Size, _}, {S, N}) -> {S + Size, N + 1} end, {0, 0}, Bins),
            {Mem, Bin, Count};
        undefined -> undefined
    end.

%% A bounded top-N: {Size, Set}; the smallest goes when a bigger one comes.
top_add(_Item, 0, Top) -> Top;
top_add({0, _, _, _}, _Keep, Top) -> Top;
top_add(Item, Keep, {N, Set}) when N < Keep -> {N + 1, gb_sets:add(Item, Set)};
top_add(Item, _Keep, {N, Set}) ->
    case Item > gb_sets:smallest(Set) of
        true -> {N, gb_sets:add(Item, gb_sets:delete(gb_sets:smallest(Set), Set))};
        false -> {N, Set}
    end.

grower(P, {Rises, _, Series}, Growth, Samples) ->
    Ordered = lists:reverse(Series),
    Info = case erlang:process_info(P, [current_function, initial_call, message_queue_len]) of
               [{current_function, C}, {initial_call, Init}, {message_queue_len, Q}] ->
                   #{current_function => C, initial_call => initial_call(P, Init), message_queue_len => Q};
               undefined ->
                   #{current_function => undefined, initial_call => undefined, message_queue_len => 0}
           end,
    Info#{pid => P, name => name_of(P), growth => Growth, rises => Rises, intervals => Samples - 1,
          memory => [M || {M, _} <- Ordered], binary => [B || {_, B} <- Ordered]}.

holder(P, Bin, Count, Mem) ->
    #{pid => P, name => name_of(P), binary_memory => Bin, binary_count => Count, memory => Mem}.

%% Garbage-collect each process (asynchronously, waited on at most 2 s, all
%% under a 10 s deadline) and read its binaries again.
gc_top(Holders) ->
    Deadline = erlang:monotonic_time(millisecond) + ?GC_DEADLINE_MS,
    [gc_one(P, Deadline) || {_, P, _, _} <- Holders].

gc_one(P, Deadline) ->
    Row = #{pid => P, name => name_of(P)},
    case footprint(P) of
        undefined -> Row#{outcome => gone};
        {Mem0, Bin0, _} ->
            Wait = min(?GC_WAIT_MS, Deadline - erlang:monotonic_time(millisecond)),
            Outcome = case Wait > 0 of
                          true -> collect(P, Wait);
                          false -> deadline
                      end,
            case footprint(P) of
                {Mem1, Bin1, _} ->
                    Row#{outcome => Outcome, memory_before => Mem0, memory_after => Mem1,
                         binary_before => Bin0, binary_after => Bin1};
                undefined -> Row#{outcome => gone}
            end
    end.

collect(P, Wait) ->
    Ref = make_ref(),
    case erlang:garbage_collect(P, [{async, Ref}]) of
        async ->
            receive {garbage_collect, Ref, _} -> done
            after Wait -> timeout
            end;
        _ -> done
    end.

%% ================================================================== helpers

initial_call(P, {proc_lib, init_p, 5}) ->
    try proc_lib:translate_initial_call(P) catch _:_ -> {proc_lib, init_p, 5} end;
initial_call(_P, Call) ->
    Call.

name_of(P) when is_pid(P), node(P) =:= node() ->
    case erlang:process_info(P, registered_name) of
        {registered_name, N} when is_atom(N) -> N;
        _ -> undefined
    end;
name_of(_) -> undefined.

clamp(V, Lo, Hi, _Default) when is_integer(V) -> max(Lo, min(V, Hi));
clamp(_, _, _, Default) -> Default.
