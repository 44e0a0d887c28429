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

-export([version/0, info/0, top_processes/3]).

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
      process_count => erlang:system_info(process_count),
      process_limit => erlang:system_info(process_limit),
      agent_version => ?VERSION}.

language() ->
    case erlang:module_loaded('Elixir.Kernel') of
        true -> elixir;
        false -> erlang
    end.

%% @doc The top Limit processes by Key, largest first, computed in the VM.
%%
%% Key is <<"memory">>, <<"reductions">> or <<"message_queue_len">>.
%% Cost: one process_info/2 per process (like recon:proc_count/2), a
%% bounded top-N set of at most Limit entries, then details for the N winners
%% only. No full process list leaves the node, and the process doing the scan
%% (Arsenal's own) is not counted. Reductions are cumulative since each process
%% started.
-spec top_processes(binary(), pos_integer(), map()) -> map() | {error, term()}.
top_processes(KeyBin, Limit0, _Opts) when is_integer(Limit0), Limit0 > 0 ->
    case sort_key(KeyBin) of
        {ok, Key} ->
            Limit = min(Limit0, ?MAX_LIMIT),
            %% The process running this call is Arsenal's, not the node's: leave it out.
            Top = scan(Key, Limit, erlang:processes() -- [self()]),
            Rows = [Row || {Value, Pid} <- lists:reverse(gb_sets:to_list(Top)),
                           Row <- [describe(Pid, Key, Value)], Row =/= gone],
            #{sort => Key,
              limit => Limit,
              process_count => erlang:system_info(process_count),
              rows => Rows};
        error ->
            {error, {bad_sort_key, KeyBin}}
    end;
top_processes(_KeyBin, Limit, _Opts) ->
    {error, {bad_limit, Limit}}.

sort_key(<<"memory">>) -> {ok, memory};
sort_key(<<"reductions">>) -> {ok, reductions};
sort_key(<<"message_queue_len">>) -> {ok, message_queue_len};
sort_key(_) -> error.

%% Keep a set of at most Limit {Value, Pid}; a process only enters if it beats
%% the smallest member, so the common case is one comparison.
scan(Key, Limit, Pids) ->
    scan(Key, Limit, Pids, gb_sets:empty(), 0, undefined).

scan(_Key, _Limit, [], Set, _Size, _Min) ->
    Set;
scan(Key, Limit, [Pid | Rest], Set, Size, Min) ->
    case erlang:process_info(Pid, Key) of
        {Key, Value} when Size < Limit ->
            Set1 = gb_sets:add({Value, Pid}, Set),
            scan(Key, Limit, Rest, Set1, Size + 1, smallest(Set1));
        {Key, Value} when {Value, Pid} > Min ->
            {_, Set1} = gb_sets:take_smallest(Set),
            Set2 = gb_sets:add({Value, Pid}, Set1),
            scan(Key, Limit, Rest, Set2, Size, smallest(Set2));
        _ ->
            scan(Key, Limit, Rest, Set, Size, Min)
    end.

smallest(Set) -> gb_sets:smallest(Set).

-define(ROW_ITEMS, [registered_name, current_function, initial_call, memory,
                    reductions, message_queue_len, status]).

describe(Pid, _Key, _Value) ->
    case erlang:process_info(Pid, ?ROW_ITEMS) of
        undefined ->
            gone;
        Items ->
            Map = maps:from_list(Items),
            Name = case maps:get(registered_name, Map) of
                       [] -> undefined;
                       N -> N
                   end,
            Map#{pid => Pid,
                 registered_name => Name,
                 initial_call => initial_call(Pid, maps:get(initial_call, Map))}
    end.

%% proc_lib processes (gen_server, supervisor, Elixir GenServer...) all start in
%% proc_lib:init_p/5; the call that means something is in their dictionary.
initial_call(Pid, {proc_lib, init_p, 5}) ->
    proc_lib:translate_initial_call(Pid);
initial_call(_Pid, Call) ->
    Call.
