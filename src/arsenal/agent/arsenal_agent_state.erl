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
-module(arsenal_agent_state).

-export([capture/2, replace/4, ets_capture/2, ets_restore/2]).

%% @doc The state of Target and its facts. MaxBytes bounds the state's
%% external size. Cost: one system message; the state is copied once.
-spec capture(binary(), map()) -> {ok, map()} | {error, term()}.
capture(Target, #{timeout_ms := Timeout, max_bytes := MaxBytes}) ->
    case arsenal_agent:target(Target) of
        {ok, Pid} -> capture_pid(Pid, Timeout, MaxBytes);
        Error -> Error
    end.

capture_pid(Pid, Timeout, MaxBytes) ->
    case arsenal_agent_proc:answers_sys(Pid) of
        false -> {error, not_sys};
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
    case arsenal_agent_proc:answers_sys(Pid) of
        false -> {error, not_sys};
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
