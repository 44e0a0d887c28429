%% @doc A process's state, taken and put back: the inside of set_process_state
%% and checkpoints (of processes and of ETS tables).
%%
%% capture/2 reads a state whole (with sys:get_state, from processes that
%% answer system messages) together with what identifies it: the callback
%% module, a hash, and the process's info. replace/4 puts a state back with
%% sys:replace_state, atomically: the replacing fun runs inside the process,
%% between two of its messages, and only if the state is still the one Arsenal
%% read (same hash) — otherwise nothing changes and the caller is told, so an
%% edit never overwrites a change it did not see.
%%
%% Every wait has a timeout; states and tables past their size limit are
%% refused, not cut (a cut state cannot be put back).
%%
%% A system message is only ever sent to a process that handles system
%% messages (speaks_sys/1, decided without sending it anything): a plain
%% receive loop would never answer, and the message would stay in its mailbox
%% for good. Every agent module that uses sys asks speaks_sys/1 first (through
%% arsenal_agent_proc:answers_sys/1); the refusal is {error, not_sys_process}.
-module(arsenal_agent_state).

-export([capture/2, replace/4, ets_capture/2, ets_restore/2, speaks_sys/1]).

%% The OTP behaviours whose process loop handles system messages.
-define(SYS_BEHAVIOURS, [gen_server, gen_statem, gen_event, gen_fsm, supervisor, supervisor_bridge]).
%% Where a process waits while in one of those loops (or suspended by sys).
-define(LOOP_MODULES, [gen_server, gen_statem, gen_event, gen_fsm, sys]).

%% @doc Whether Pid handles system messages (sys:get_state, sys:suspend,
%% sys:replace_state...), decided from process_info alone: nothing is sent to
%% it. True when
%%   - it waits in an OTP behaviour's loop (gen_server, gen_statem, gen_event,
%%     gen_fsm; or in sys itself, suspended): its current function says so;
%%   - its current function's module implements the sys callbacks
%%     (system_continue/3 and system_terminate/4): a special process in its loop;
%%   - proc_lib recorded an initial call ('$initial_call') of an OTP behaviour
%%     ({supervisor, Mod, 1}, {gen_event, init_it, 6}...), of a behaviour
%%     callback module started by gen ({Mod, init, 1} where Mod exports
%%     handle_call/3, callback_mode/0 or handle_sync_event/4: gen_server,
%%     Elixir's GenServer, gen_statem, gen_fsm), or of a module that
%%     implements the sys callbacks. This covers such a process while it
%%     hibernates or runs a callback: it answers once back in its loop.
%% Anything else (a raw spawn, a proc_lib process running a plain receive
%% loop, a Task) is false. Cost: one process_info (the dictionary is copied)
%% and a few function_exported lookups.
-spec speaks_sys(pid()) -> boolean().
speaks_sys(Pid) when is_pid(Pid), node(Pid) =:= node() ->
    case erlang:process_info(Pid, [current_function, dictionary]) of
        [{current_function, Current}, {dictionary, Dict}] ->
            in_loop(Current) orelse implements_sys(Current) orelse sys_initial_call(Dict);
        _ ->
            false
    end;
speaks_sys(_) ->
    false.

%% Waiting in a behaviour's loop; the client side of a call (which also runs
%% code of these modules in the caller) is not a loop.
in_loop({Mod, Fun, _}) ->
    lists:member(Mod, ?LOOP_MODULES) andalso not client_function(atom_to_binary(Fun, utf8));
in_loop(_) ->
    false.

client_function(<<"call", _/binary>>) -> true;
client_function(<<"multi_call", _/binary>>) -> true;
client_function(<<"rec_nodes", _/binary>>) -> true;
client_function(<<"wait_resp", _/binary>>) -> true;
client_function(<<"receive_resp", _/binary>>) -> true;
client_function(<<"send_system_msg", _/binary>>) -> true;
client_function(_) -> false.

implements_sys({Mod, _, _}) when is_atom(Mod) ->
    erlang:function_exported(Mod, system_continue, 3)
        andalso erlang:function_exported(Mod, system_terminate, 4);
implements_sys(_) ->
    false.

sys_initial_call(Dict) ->
    case lists:keyfind('$initial_call', 1, Dict) of
        {_, {Mod, Fun, Arity} = Call} when is_atom(Mod) ->
            lists:member(Mod, ?SYS_BEHAVIOURS)
                orelse (Fun =:= init andalso Arity =:= 1 andalso behaviour_callbacks(Mod))
                orelse implements_sys(Call);
        _ ->
            false
    end.

%% A callback module that gen starts: gen_server (and Elixir's GenServer,
%% Agent...), gen_statem, gen_fsm. Read from its exports, which releases keep
%% (behaviour attributes may be stripped).
behaviour_callbacks(Mod) ->
    erlang:function_exported(Mod, handle_call, 3)
        orelse erlang:function_exported(Mod, callback_mode, 0)
        orelse erlang:function_exported(Mod, handle_sync_event, 4).

%% @doc The state of Target and its facts. MaxBytes bounds the state's
%% external size. Cost: one system message; the state is copied once.
-spec capture(binary(), map()) -> {ok, map()} | {error, term()}.
capture(Target, #{timeout_ms := Timeout, max_bytes := MaxBytes}) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} -> capture_pid(Pid, Timeout, MaxBytes);
        Error -> Error
    end.

capture_pid(Pid, Timeout, MaxBytes) ->
    case speaks_sys(Pid) of
        false -> {error, not_sys_process};
        true ->
            try sys:get_state(Pid, Timeout) of
                State ->
                    Size = erlang:external_size(State),
                    case Size > MaxBytes of
                        true -> {error, {too_large, Size}};
                        false ->
                            {ok, #{pid => Pid, state => State, hash => erlang:phash2(State), size => Size,
                                   module => arsenal_agent_proc:callback_module(Pid), info => info(Pid)}}
                    end
            catch
                exit:{timeout, _} -> {error, timeout};
                exit:{noproc, _} -> {error, gone};
                exit:{Reason, _} -> {error, {failed, Reason}}
            end
    end.

%% @doc Put NewState (sent with Arsenal's atom-safe markers) into Target, if its
%% state still hashes to Expected (or Expected is any). Returns the state it
%% replaced. Cost: one system message.
-spec replace(binary(), integer() | any, term(), pos_integer()) -> {ok, term()} | {error, term()}.
replace(Target, Expected, Wire, Timeout) ->
    case arsenal_agent_proc:decode(Wire) of
        {error, Reason} -> {error, {decode, Reason}};
        {ok, NewState} ->
            case arsenal_agent:target(Target) of
                {ok, Pid} -> replace_pid(Pid, Expected, NewState, Timeout);
                Error -> Error
            end
    end.

replace_pid(Pid, Expected, NewState, Timeout) ->
    case speaks_sys(Pid) of
        false -> {error, not_sys_process};
        true ->
            Self = self(),
            Ref = make_ref(),
            Fun = fun(Old) ->
                      case Expected =:= any orelse erlang:phash2(Old) =:= Expected of
                          true -> Self ! {Ref, Old}, NewState;
                          false -> throw(state_changed)
                      end
                  end,
            try sys:replace_state(Pid, Fun, Timeout) of
                _ ->
                    receive {Ref, Old} -> {ok, Old}
                    after 0 -> {error, state_changed}
                    end
            catch
                exit:{timeout, _} -> flush_old(Ref, timeout);
                exit:{noproc, _} -> {error, gone};
                error:{callback_failed, _, {throw, state_changed}} -> {error, state_changed};
                error:{callback_failed, _, Failure} -> {error, {failed, Failure}};
                exit:{Reason, _} -> {error, {failed, Reason}}
            end
    end.

%% A timeout after the fun ran means the new state is in: report that, not a failure.
flush_old(Ref, Why) ->
    receive {Ref, Old} -> {ok, Old}
    after 0 -> {error, Why}
    end.

info(Pid) ->
    Items = [registered_name, links, monitors, monitored_by, message_queue_len, current_function,
             memory, status],
    case erlang:process_info(Pid, Items) of
        undefined -> #{};
        List -> maps:from_list([{K, bounded_list(V)} || {K, V} <- List])
    end.

bounded_list(L) when is_list(L) -> lists:sublist(L, 100);
bounded_list(V) -> V.

%% @doc The rows of an ETS table (by name), if it is at most MaxBytes.
%% Cost: a copy of the whole table (ets:tab2list); refused past the size.
-spec ets_capture(binary(), non_neg_integer()) -> {ok, map()} | {error, term()}.
ets_capture(Name, MaxBytes) ->
    case table(Name) of
        {error, _} = Error -> Error;
        {ok, Tab} ->
            Bytes = ets:info(Tab, memory) * erlang:system_info(wordsize),
            case Bytes > MaxBytes of
                true -> {error, {too_large, Bytes}};
                false ->
                    {ok, #{rows => ets:tab2list(Tab), bytes => Bytes,
                           info => maps:from_list([{K, ets:info(Tab, K)}
                                                   || K <- [type, keypos, protection, size, owner, named_table]])}}
            end
    end.

%% @doc Replace every row of a public table by Rows (sent with the atom-safe
%% markers). A protected or private table only its owner may write: refused.
-spec ets_restore(binary(), term()) -> {ok, non_neg_integer()} | {error, term()}.
ets_restore(Name, Wire) ->
    case table(Name) of
        {error, _} = Error -> Error;
        {ok, Tab} ->
            case ets:info(Tab, protection) of
                public ->
                    case arsenal_agent_proc:decode(Wire) of
                        {ok, Rows} when is_list(Rows) ->
                            true = ets:delete_all_objects(Tab),
                            true = ets:insert(Tab, Rows),
                            {ok, length(Rows)};
                        {ok, _} -> {error, not_rows};
                        {error, Reason} -> {error, {decode, Reason}}
                    end;
                Protection -> {error, {protection, Protection}}
            end
    end.

table(Name) ->
    try binary_to_existing_atom(Name) of
        Atom ->
            case ets:info(Atom, id) of
                undefined -> {error, not_found};
                _ -> {ok, Atom}
            end
    catch error:badarg -> {error, not_found}
    end.
