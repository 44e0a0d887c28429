%% @doc Arsenal's agent for process control: sending terms safely, killing,
%% suspending, resuming, collecting, peeking at mailboxes, reading a
%% gen_server's state, starting and restarting processes.
%%
%% Called one function at a time through erpc, like arsenal_agent. The one
%% process that can outlive a call is the suspender (see suspend/1): erlang:
%% suspend_process/1 lasts only as long as the process that suspended, so one
%% registered process holds every suspension Arsenal made, and exits as soon as
%% it holds none (or when the agent is purged, which resumes everything).
%%
%% Safety: nothing here turns request data into atoms. Terms from requests
%% arrive with every atom replaced by {'$arsenal_atom', <<"name">>} (and pids,
%% ports, refs and funs by {'$arsenal_etf', Binary, AtomNames}); decode/1
%% rebuilds them with binary_to_existing_atom/2 and binary_to_term(_, [safe]),
%% and an atom the node does not know is an error naming it.
-module(arsenal_agent_proc).

-export([decode/1, send_message/4, kill/3, suspend/1, resume/1, garbage_collect/1,
         messages/3, get_state/2, start/4, start_under/5, restart/3, await_exit/2,
         answers_sys/1, callback_module/1]).

-define(ATOM_MARK, '$arsenal_atom').
-define(ETF_MARK, '$arsenal_etf').
-define(CUT, '$arsenal_truncated').
-define(MAX_DEPTH, 100).
-define(SUSPENDER, arsenal_agent_proc_suspender).
-define(STATE_CAP, 1048576).
-define(TRIM_ITEMS, 100).
-define(TRIM_BINARY, 1024).
-define(TRIM_DEPTH, 24).

%% ------------------------------------------------------------------ safe terms

%% @doc Rebuild a term sent by Arsenal: markers become existing atoms (or the
%% pid/port/ref/fun they encode). Cost: one walk of the term (at most 100 deep).
-spec decode(term()) -> {ok, term()} | {error, {unknown_atom, binary()} | too_deep | {unsafe_term, [binary()]}}.
decode(Term) ->
    try {ok, rebuild(Term, 0)}
    catch throw:{?MODULE, Reason} -> {error, Reason}
    end.

rebuild(_Term, Depth) when Depth > ?MAX_DEPTH ->
    throw({?MODULE, too_deep});
rebuild({?ATOM_MARK, Name}, _Depth) when is_binary(Name) ->
    to_atom(Name);
rebuild({?ETF_MARK, Bin, Names}, _Depth) when is_binary(Bin), is_list(Names) ->
    _ = [to_atom(N) || N <- Names],
    try binary_to_term(Bin, [safe])
    catch error:badarg -> throw({?MODULE, {unsafe_term, Names}})
    end;
rebuild(Tuple, Depth) when is_tuple(Tuple) ->
    list_to_tuple([rebuild(E, Depth + 1) || E <- tuple_to_list(Tuple)]);
rebuild(List, Depth) when is_list(List) ->
    rebuild_list(List, Depth + 1);
rebuild(Map, Depth) when is_map(Map) ->
    maps:from_list([{rebuild(K, Depth + 1), rebuild(V, Depth + 1)} || {K, V} <- maps:to_list(Map)]);
rebuild(Other, _Depth) ->
    Other.

rebuild_list([], _Depth) -> [];
rebuild_list([H | T], Depth) -> [rebuild(H, Depth) | rebuild_list(T, Depth)];
rebuild_list(Tail, Depth) -> rebuild(Tail, Depth).

to_atom(Name) ->
    try binary_to_existing_atom(Name, utf8)
    catch error:badarg -> throw({?MODULE, {unknown_atom, Name}})
    end.

%% ------------------------------------------------------------------ helpers

with_pid(Target, Fun) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} when is_pid(Pid) ->
            case is_process_alive(Pid) of
                true -> Fun(Pid);
                false -> {error, gone}
            end;
        {ok, _Port} -> {error, not_found};
        Error -> Error
    end.

existing(Name) when is_binary(Name) ->
    try {ok, binary_to_existing_atom(Name, utf8)}
    catch error:badarg -> {error, {unknown_atom, Name}}
    end.

%% A copy of Term small enough to ship: lists, tuples and maps cut at 100
%% items, binaries at 1024 bytes, nesting at 24, each cut marked with
%% {'$arsenal_truncated', What}.
trim(_Term, Depth) when Depth > ?TRIM_DEPTH ->
    {?CUT, too_deep};
trim(Bin, _Depth) when is_binary(Bin), byte_size(Bin) > ?TRIM_BINARY ->
    {?CUT, #{binary_bytes => byte_size(Bin), head => binary:part(Bin, 0, ?TRIM_BINARY)}};
trim(Tuple, Depth) when is_tuple(Tuple), tuple_size(Tuple) > ?TRIM_ITEMS ->
    {?CUT, #{tuple_size => tuple_size(Tuple),
             head => [trim(E, Depth + 1) || E <- lists:sublist(tuple_to_list(Tuple), ?TRIM_ITEMS)]}};
trim(Tuple, Depth) when is_tuple(Tuple) ->
    list_to_tuple([trim(E, Depth + 1) || E <- tuple_to_list(Tuple)]);
trim(List, Depth) when is_list(List) ->
    trim_list(List, Depth + 1, 0);
trim(Map, Depth) when is_map(Map) ->
    {Pairs, More} = take_pairs(maps:next(maps:iterator(Map)), ?TRIM_ITEMS, []),
    Trimmed = maps:from_list([{trim(K, Depth + 1), trim(V, Depth + 1)} || {K, V} <- Pairs]),
    case More of
        true -> Trimmed#{?CUT => #{map_size => map_size(Map)}};
        false -> Trimmed
    end;
trim(Other, _Depth) ->
    Other.

trim_list([], _Depth, _N) -> [];
trim_list([_ | _], _Depth, ?TRIM_ITEMS) -> [{?CUT, more_items}];
trim_list([H | T], Depth, N) -> [trim(H, Depth) | trim_list(T, Depth, N + 1)];
trim_list(Tail, Depth, _N) -> trim(Tail, Depth).

take_pairs(none, _N, Acc) -> {lists:reverse(Acc), false};
take_pairs(_Iter, 0, Acc) -> {lists:reverse(Acc), true};
take_pairs({K, V, Iter}, N, Acc) -> take_pairs(maps:next(Iter), N - 1, [{K, V} | Acc]).

%% A term as it can be shipped: whole when its external size is at most Cap,
%% trimmed otherwise.
bounded(Term, Cap) ->
    Size = erlang:external_size(Term),
    case Size =< Cap of
        true -> #{term => Term, size => Size, whole => true};
        false -> #{term => trim(Term, 0), size => Size, whole => false}
    end.

%% ------------------------------------------------------------------ operations

%% @doc Send Message (safe-term encoded) to Target: Mode <<"send">> (!),
%% <<"cast">> (gen_server:cast) or <<"call">> (gen_server:call with TimeoutMs,
%% the reply returned bounded). Cost: the decode walk, one message.
-spec send_message(binary(), binary(), term(), pos_integer()) -> term().
send_message(Target, Mode, Message, TimeoutMs) ->
    case decode(Message) of
        {ok, Msg} ->
            with_pid(Target, fun(Pid) ->
                case Mode of
                    <<"send">> -> Pid ! Msg, {ok, sent};
                    <<"cast">> -> gen_server:cast(Pid, Msg), {ok, sent};
                    <<"call">> ->
                        try gen_server:call(Pid, Msg, TimeoutMs) of
                            Reply -> {ok, {reply, bounded(Reply, ?STATE_CAP)}}
                        catch
                            exit:{timeout, _} -> {error, timeout};
                            exit:{noproc, _} -> {error, gone};
                            exit:{Reason, _} -> {error, {call_failed, trim(Reason, 0)}}
                        end
                end
            end);
        Error ->
            Error
    end.

%% @doc exit(Pid, Reason) with Reason an existing atom, then wait up to
%% WaitMs for the process to go. Cost: one signal and a monitor.
-spec kill(binary(), binary(), non_neg_integer()) -> term().
kill(Target, ReasonBin, WaitMs) ->
    case existing(ReasonBin) of
        {ok, Reason} ->
            with_pid(Target, fun(Pid) ->
                Ref = erlang:monitor(process, Pid),
                exit(Pid, Reason),
                receive
                    {'DOWN', Ref, process, Pid, Why} -> {ok, died, trim(Why, 0)}
                after WaitMs ->
                    erlang:demonitor(Ref, [flush]),
                    {ok, alive, undefined}
                end
            end);
        Error ->
            Error
    end.

%% @doc Suspend a process until resume/1 (or until the agent is purged). The
%% suspension is held by one registered process, the suspender, because
%% erlang:suspend_process/1 ends with the process that made it.
-spec suspend(binary()) -> term().
suspend(Target) ->
    with_pid(Target, fun(Pid) -> suspender_call({suspend, Pid}, 3) end).

%% @doc Resume a process Arsenal suspended.
-spec resume(binary()) -> term().
resume(Target) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} when is_pid(Pid) ->
            case whereis(?SUSPENDER) of
                undefined -> {error, not_suspended};
                _ -> suspender_call({resume, Pid}, 3)
            end;
        {ok, _Port} -> {error, not_found};
        Error -> Error
    end.

suspender_call(_Request, 0) ->
    {error, suspender_unavailable};
suspender_call(Request, Tries) ->
    Server = suspender(),
    Ref = erlang:monitor(process, Server),
    Server ! {Request, self(), Ref},
    receive
        {Ref, Reply} -> erlang:demonitor(Ref, [flush]), Reply;
        {'DOWN', Ref, process, Server, _} -> suspender_call(Request, Tries - 1)
    after 5000 ->
        erlang:demonitor(Ref, [flush]),
        {error, suspender_unavailable}
    end.

suspender() ->
    case whereis(?SUSPENDER) of
        undefined ->
            Pid = spawn(fun() -> suspender_loop(#{}) end),
            try register(?SUSPENDER, Pid), Pid
            catch error:badarg -> exit(Pid, kill), suspender()
            end;
        Pid ->
            Pid
    end.

suspender_loop(Held) ->
    receive
        {{suspend, Pid}, From, Ref} when is_map_key(Pid, Held) ->
            From ! {Ref, {ok, already_suspended}},
            suspender_loop(Held);
        {{suspend, Pid}, From, Ref} ->
            Mon = erlang:monitor(process, Pid),
            try erlang:suspend_process(Pid) of
                true ->
                    From ! {Ref, {ok, suspended}},
                    suspender_loop(Held#{Pid => Mon})
            catch error:_ ->
                erlang:demonitor(Mon, [flush]),
                From ! {Ref, {error, gone}},
                suspender_next(Held)
            end;
        {{resume, Pid}, From, Ref} ->
            case maps:take(Pid, Held) of
                {Mon, Rest} ->
                    erlang:demonitor(Mon, [flush]),
                    try erlang:resume_process(Pid) catch error:badarg -> ok end,
                    From ! {Ref, {ok, resumed}},
                    suspender_next(Rest);
                error ->
                    From ! {Ref, {error, not_suspended}},
                    suspender_next(Held)
            end;
        {'DOWN', _Mon, process, Pid, _} ->
            suspender_next(maps:remove(Pid, Held));
        _Other ->
            suspender_loop(Held)
    end.

%% Holding nothing, the suspender unregisters before it goes, so a request that
%% races with its exit finds no name (and starts a new one) or sees it DOWN.
suspender_next(Held) when map_size(Held) =:= 0 ->
    unregister(?SUSPENDER),
    receive
        {_, From, Ref} when is_pid(From), is_reference(Ref) -> exit(normal)
    after 0 -> ok
    end;
suspender_next(Held) ->
    suspender_loop(Held).

%% @doc garbage_collect/1 on a process; memory before and after. Cost: one GC
%% of that process (it is runnable again when done).
-spec garbage_collect(binary()) -> term().
garbage_collect(Target) ->
    with_pid(Target, fun(Pid) ->
        Before = memory(Pid),
        Done = erlang:garbage_collect(Pid),
        {ok, Done, Before, memory(Pid)}
    end).

memory(Pid) ->
    case erlang:process_info(Pid, memory) of
        {memory, M} -> M;
        undefined -> 0
    end.

%% @doc The first Limit messages of a mailbox, each trimmed, refused when the
%% queue is longer than MaxQueue: process_info(Pid, messages) copies the whole
%% mailbox onto this process's heap.
-spec messages(binary(), pos_integer(), pos_integer()) -> term().
messages(Target, MaxQueue, Limit) ->
    with_pid(Target, fun(Pid) ->
        case erlang:process_info(Pid, message_queue_len) of
            {message_queue_len, Len} when Len > MaxQueue ->
                {error, {queue_too_long, Len}};
            {message_queue_len, Len} ->
                case erlang:process_info(Pid, messages) of
                    {messages, Messages} ->
                        {ok, Len, [trim(M, 0) || M <- lists:sublist(Messages, Limit)]};
                    undefined ->
                        {error, gone}
                end;
            undefined ->
                {error, gone}
        end
    end).

%% @doc sys:get_state/2 with TimeoutMs, only for processes that answer system
%% messages (started by proc_lib, or sitting in a gen loop): anything else
%% would never reply. The state comes whole when its external size is at most
%% 1 MB, trimmed otherwise.
-spec get_state(binary(), pos_integer()) -> term().
get_state(Target, TimeoutMs) ->
    with_pid(Target, fun(Pid) ->
        case answers_sys(Pid) of
            false ->
                {error, not_sys_process};
            true ->
                try sys:get_state(Pid, TimeoutMs) of
                    State -> {ok, behaviour(Pid), bounded(State, ?STATE_CAP)}
                catch
                    exit:{timeout, _} -> {error, timeout};
                    exit:{noproc, _} -> {error, gone};
                    exit:{Reason, _} -> {error, {failed, trim(Reason, 0)}}
                end
        end
    end).

%% @doc Whether Pid answers system messages (sys:get_state, sys:replace_state,
%% sys:install...), decided without sending it anything: see
%% arsenal_agent_state:speaks_sys/1.
-spec answers_sys(pid()) -> boolean().
answers_sys(Pid) ->
    arsenal_agent_state:speaks_sys(Pid).

%% @doc The callback module proc_lib recorded for Pid (the module of a
%% gen_server, gen_statem, gen_event manager; a supervisor's own module), or
%% undefined. Read from the dictionary: nothing is sent to the process.
-spec callback_module(pid()) -> module() | undefined.
callback_module(Pid) ->
    case erlang:process_info(Pid, dictionary) of
        {dictionary, Dict} ->
            case lists:keyfind('$initial_call', 1, Dict) of
                {_, {supervisor, M, _}} -> M;
                {_, {supervisor_bridge, M, _}} -> M;
                {_, {M, _, _}} -> M;
                _ -> undefined
            end;
        _ -> undefined
    end.

behaviour(Pid) ->
    case proc_lib:translate_initial_call(Pid) of
        {Mod, _, _} -> Mod;
        _ -> undefined
    end.

%% @doc spawn(Module, Function, Args): names are existing atoms, Args a safe
%% term (a list); NameBin (<<>> for none) must be an existing atom too, and
%% free. Cost: one spawn.
-spec start(binary(), binary(), term(), binary()) -> term().
start(ModBin, FunBin, Args0, NameBin) ->
    Checked = [existing(ModBin), existing(FunBin), decode(Args0),
               case NameBin of <<>> -> {ok, undefined}; _ -> existing(NameBin) end],
    case [E || {error, _} = E <- Checked] of
        [Error | _] ->
            Error;
        [] ->
            [{ok, Mod}, {ok, Fun}, {ok, Args}, {ok, Name}] = Checked,
            start_checked(Mod, Fun, Args, Name)
    end.

start_checked(_Mod, _Fun, Args, _Name) when not is_list(Args) ->
    {error, args_not_a_list};
start_checked(Mod, Fun, Args, Name) ->
    _ = code:ensure_loaded(Mod),
    case erlang:function_exported(Mod, Fun, length(Args)) of
        false ->
            {error, {undef, Mod, Fun, length(Args)}};
        true when Name =/= undefined ->
            case whereis(Name) of
                undefined ->
                    Pid = spawn(fun() ->
                        receive {?MODULE, go} -> apply(Mod, Fun, Args) end
                    end),
                    try register(Name, Pid) of
                        true -> Pid ! {?MODULE, go}, {ok, Pid}
                    catch error:badarg -> exit(Pid, kill), {error, name_taken}
                    end;
                _ ->
                    {error, name_taken}
            end;
        true ->
            {ok, spawn(Mod, Fun, Args)}
    end.

%% @doc Start Module:Function(Args) as a temporary child of a supervisor (not
%% simple_one_for_one, whose children come from one template): id
%% {arsenal, N}, restart temporary, so it is never restarted and leaves the
%% supervisor's restart intensity alone. Cost: one sys:get_state of the
%% supervisor (its strategy) and one start_child call.
-spec start_under(binary(), binary(), binary(), term(), pos_integer()) -> term().
start_under(SupTarget, ModBin, FunBin, Args0, TimeoutMs) ->
    with_pid(SupTarget, fun(Sup) ->
        Checked = [existing(ModBin), existing(FunBin), decode(Args0)],
        case [E || {error, _} = E <- Checked] of
            [Error | _] ->
                Error;
            [] ->
                [{ok, Mod}, {ok, Fun}, {ok, Args}] = Checked,
                case is_list(Args) andalso is_supervisor(Sup) andalso strategy(Sup, TimeoutMs) of
                    false when not is_list(Args) -> {error, args_not_a_list};
                    false -> {error, not_a_supervisor};
                    {error, _} = Error -> Error;
                    simple_one_for_one -> {error, dynamic_supervisor};
                    dynamic -> {error, dynamic_supervisor};
                    _ -> add_child(Sup, Mod, Fun, Args, TimeoutMs)
                end
        end
    end).

strategy(Sup, TimeoutMs) ->
    try sys:get_state(Sup, TimeoutMs) of
        State ->
            case arsenal_agent_sup:parse_state(State) of
                {ok, #{kind := dynamic}} -> dynamic;
                {ok, #{strategy := Strategy}} -> Strategy;
                {error, _} = Error -> Error
            end
    catch
        exit:{timeout, _} -> {error, timeout};
        exit:_ -> {error, not_a_supervisor}
    end.

add_child(Sup, Mod, Fun, Args, TimeoutMs) ->
    _ = code:ensure_loaded(Mod),
    case erlang:function_exported(Mod, Fun, length(Args)) of
        false ->
            {error, {undef, Mod, Fun, length(Args)}};
        true ->
            Id = {arsenal, erlang:unique_integer([positive])},
            Spec = #{id => Id, start => {Mod, Fun, Args}, restart => temporary},
            try gen_server:call(Sup, {start_child, Spec}, TimeoutMs) of
                {ok, Pid} when is_pid(Pid) -> {ok, Pid, Id};
                {ok, Pid, _Info} when is_pid(Pid) -> {ok, Pid, Id};
                {ok, undefined} -> {error, {start_failed, ignore}};
                {error, Reason} -> {error, {start_failed, trim(Reason, 0)}}
            catch
                exit:{timeout, _} -> {error, timeout};
                exit:{Reason, _} -> {error, {start_failed, trim(Reason, 0)}}
            end
    end.

%% @doc Restart a supervised process through its supervisor: the supervisor
%% is the first of its '$ancestors' (a pid or a name), if that is a supervisor
%% (its proc_lib initial call says so) listing it among its children; then
%% terminate_child and restart_child for its id. With KeepState, the state
%% read before (sys:get_state) is put into the new process (sys:replace_state).
%% Every call has TimeoutMs.
-spec restart(binary(), pos_integer(), boolean()) -> term().
restart(Target, TimeoutMs, KeepState) ->
    with_pid(Target, fun(Pid) ->
        case supervisor_of(Pid, TimeoutMs) of
            {ok, Sup, undefined} ->
                {error, {dynamic_child, Sup}};
            {ok, Sup, Id} ->
                case old_state(Pid, KeepState, TimeoutMs) of
                    {error, _} = Error -> Error;
                    Old -> restart_child(Sup, Id, Pid, Old, TimeoutMs)
                end;
            Error ->
                Error
        end
    end).

%% The state to carry over: only asked for, and only from a process that
%% answers system messages and is not itself a supervisor.
old_state(_Pid, false, _TimeoutMs) ->
    none;
old_state(Pid, true, TimeoutMs) ->
    case answers_sys(Pid) andalso not is_supervisor(Pid) of
        false ->
            {error, state_not_kept};
        true ->
            try {state, sys:get_state(Pid, TimeoutMs)}
            catch exit:{timeout, _} -> {error, timeout};
                  exit:_ -> {error, state_not_kept}
            end
    end.

restart_child(Sup, Id, Pid, Old, TimeoutMs) ->
    try
        ok = terminate_child(Sup, Id, TimeoutMs),
        case gen_server:call(Sup, {restart_child, Id}, TimeoutMs) of
            {ok, New} -> {ok, Sup, trim(Id, 0), Pid, New, restore(New, Old, TimeoutMs)};
            {ok, New, _Info} -> {ok, Sup, trim(Id, 0), Pid, New, restore(New, Old, TimeoutMs)};
            {error, Reason} -> {error, {restart_failed, trim(Reason, 0)}}
        end
    catch
        exit:{timeout, _} -> {error, timeout};
        error:{badmatch, {error, Why}} -> {error, {restart_failed, trim(Why, 0)}}
    end.

restore(New, {state, State}, TimeoutMs) when is_pid(New) ->
    case answers_sys(New) of
        true ->
            try sys:replace_state(New, fun(_Fresh) -> State end, TimeoutMs) of
                _ -> true
            catch exit:_ -> false
            end;
        false ->
            false
    end;
restore(_New, _Old, _TimeoutMs) ->
    false.

terminate_child(Sup, Id, TimeoutMs) ->
    gen_server:call(Sup, {terminate_child, Id}, TimeoutMs).

supervisor_of(Pid, TimeoutMs) ->
    Ancestors = case erlang:process_info(Pid, dictionary) of
                    {dictionary, Dict} -> proplists:get_value('$ancestors', Dict, []);
                    undefined -> []
                end,
    Candidates = [P || A <- lists:sublist(Ancestors, 1), P <- [resolve(A)], is_pid(P)],
    find_child(Candidates, Pid, TimeoutMs).

resolve(Pid) when is_pid(Pid) -> Pid;
resolve(Name) when is_atom(Name) -> whereis(Name);
resolve(_) -> undefined.

find_child([], _Pid, _TimeoutMs) ->
    {error, no_supervisor};
find_child([Sup | Rest], Pid, TimeoutMs) ->
    case is_supervisor(Sup) of
        true -> ask_children(Sup, Rest, Pid, TimeoutMs);
        false -> find_child(Rest, Pid, TimeoutMs)
    end.

%% Only a supervisor is asked which_children: another gen_server might crash
%% on a call it does not expect (arsenal_agent_sup tells, forks included).
is_supervisor(Pid) ->
    is_tuple(arsenal_agent_sup:kind(Pid)).

ask_children(Sup, Rest, Pid, TimeoutMs) ->
    try gen_server:call(Sup, which_children, TimeoutMs) of
        Children when is_list(Children) ->
            case [Id || {Id, Child, _, _} <- Children, Child =:= Pid] of
                [Id | _] -> {ok, Sup, Id};
                [] -> find_child(Rest, Pid, TimeoutMs)
            end;
        _ ->
            find_child(Rest, Pid, TimeoutMs)
    catch
        exit:{timeout, _} -> {error, timeout};
        exit:_ -> find_child(Rest, Pid, TimeoutMs)
    end.

%% @doc Wait up to TimeoutMs for a process to exit: {exited, Reason} or alive.
-spec await_exit(binary(), non_neg_integer()) -> term().
await_exit(Target, TimeoutMs) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} when is_pid(Pid) ->
            Ref = erlang:monitor(process, Pid),
            receive
                {'DOWN', Ref, process, Pid, Reason} -> {ok, exited, trim(Reason, 0)}
            after TimeoutMs ->
                erlang:demonitor(Ref, [flush]),
                {ok, alive, undefined}
            end;
        {ok, _Port} -> {error, not_found};
        Error -> Error
    end.
