%% @doc A gen_server for the migration tests, and helpers the tests call through rpc.
%%
%% The server keeps the casts {seq, I} it handles, in order, a counter and an
%% optional ballast binary (a large state takes a while to copy to another
%% node: the window in which messages queue while it is suspended). Started
%% without a link, so it can be migrated; it stops by itself after 10 minutes.
-module(arsenal_test_migrate).
-behaviour(gen_server).

-export([start/2, start_global/2, start_many/3, casts/3, during_suspension/4, report/1,
         load_source/1, state_of/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(LIFETIME, 600000).

%% @doc Start a server registered locally as Name with a Ballast-byte binary.
start(Name, Ballast) ->
    gen_server:start({local, Name}, ?MODULE, Ballast, []).

start_global(Name, Ballast) ->
    gen_server:start({global, Name}, ?MODULE, Ballast, []).

%% @doc Start N servers named Prefix_1..Prefix_N (Prefix an atom); their pids.
start_many(Prefix, N, Ballast) ->
    [begin
         {ok, Pid} = start(list_to_atom(atom_to_list(Prefix) ++ "_" ++ integer_to_list(I)), Ballast),
         Pid
     end || I <- lists:seq(1, N)].

init(Ballast) ->
    erlang:send_after(?LIFETIME, self(), lifetime_over),
    {ok, #{seq => [], count => 0, ballast => binary:copy(<<0>>, Ballast)}}.

handle_call(get, _From, S) ->
    {reply, S#{ballast := byte_size(maps:get(ballast, S)), seq := lists:reverse(maps:get(seq, S))}, S};
handle_call({add, N}, _From, S = #{count := C}) ->
    {reply, {added, node(), C + N}, S#{count := C + N}}.

handle_cast({seq, I}, S = #{seq := Seq, count := C}) ->
    {noreply, S#{seq := [I | Seq], count := C + 1}}.

handle_info(lifetime_over, S) ->
    {stop, normal, S};
handle_info(_, S) ->
    {noreply, S}.

%% @doc Cast {seq, I} for I in From..To to Dest (a pid, a name or {global, Name}).
casts(Dest, From, To) ->
    [gen_server:cast(Dest, {seq, I}) || I <- lists:seq(From, To)],
    ok.

%% @doc A watcher that waits until Pid is suspended by sys (a migration has
%% started), then casts From..To to Dest and makes one gen_server:call to Pid:
%% both queue in the suspended process's mailbox. report/1 gives what it saw.
during_suspension(Pid, Dest, From, To) ->
    spawn(fun() ->
                  Deadline = erlang:monotonic_time(millisecond) + 60000,
                  Suspended = wait_suspended(Pid, Deadline),
                  casts(Dest, From, To),
                  Self = self(),
                  spawn(fun() -> Self ! {call, catch gen_server:call(Pid, {add, 0}, 30000)} end),
                  Queued = wait_queued(Pid, To - From + 2, erlang:monotonic_time(millisecond) + 1000),
                  Call = receive {call, R} -> R after 40000 -> no_reply end,
                  receive {report, Who} -> Who ! {seen, #{suspended => Suspended, queued => Queued,
                                                           call => Call}}
                  after 60000 -> ok
                  end
          end).

wait_suspended(Pid, Deadline) ->
    case erlang:process_info(Pid, current_function) of
        {current_function, {sys, F, _}} when F =:= suspend_loop; F =:= suspend_loop_hib -> true;
        undefined -> false;
        _ ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> false;
                false -> erlang:yield(), wait_suspended(Pid, Deadline)
            end
    end.

%% The largest queue seen until N messages are queued (or the deadline).
wait_queued(Pid, N, Deadline) ->
    case erlang:process_info(Pid, message_queue_len) of
        {message_queue_len, Q} when Q >= N -> Q;
        {message_queue_len, Q} ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> Q;
                false -> erlang:yield(), wait_queued(Pid, N, Deadline)
            end;
        undefined -> gone
    end.

report(Watcher) ->
    Watcher ! {report, self()},
    receive {seen, Seen} -> Seen after 60000 -> timeout end.

%% @doc Compile a module from its source text and load it on this node only.
load_source(Source) ->
    {ok, Tokens, _} = erl_scan:string(binary_to_list(Source)),
    Forms = [begin {ok, F} = erl_parse:parse_form(Toks), F end || Toks <- split_forms(Tokens, [])],
    {ok, Mod, Bin} = compile:forms(Forms, []),
    {module, Mod} = code:load_binary(Mod, "nofile", Bin),
    Mod:module_info(md5).

split_forms([], []) -> [];
split_forms([{dot, _} = Dot | Rest], Acc) -> [lists:reverse([Dot | Acc]) | split_forms(Rest, [])];
split_forms([T | Rest], Acc) -> split_forms(Rest, [T | Acc]).

%% @doc The state of a server (by pid or name), or what went wrong.
state_of(Ref) ->
    try gen_server:call(Ref, get, 5000)
    catch exit:Why -> {exit, Why}
    end.
