%% @doc Processes as other people's releases have them, for Arsenal's tests:
%% trees of a supervisor fork (test_supervisor2) and OTP supervisors, plain
%% proc_lib and raw receive loops that do not speak sys, a supervised worker
%% that links helper processes (as acceptor pools do), and gen_servers.
%% Everything started here is registered under the names the tests give, and
%% every loop ends by itself after a minute, so a failed test leaves little.
-module(arsenal_test_other).

-export([start_fork_tree/0, start_fork_simple/0, stop/1, start_unlinked/1]).
-export([start_plain_loops/0, plain_loop/1, plain_hibernating/1, raw_loop/1]).
-export([start_pool/0, start_lone_server/0, acceptor/1, start_server/1, mailbox/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(LIFE_MS, 60000).

%% ------------------------------------------------------------------ supervisor trees

%% arsenal_fork_top (test_supervisor2, one_for_one)
%%   |- arsenal_otp_mid (supervisor, rest_for_one)
%%   |    |- arsenal_fork_leaf (test_supervisor2, one_for_all)
%%   |    |    |- arsenal_leaf_w1, arsenal_leaf_w2 (gen_servers, permanent)
%%   |    `- arsenal_mid_w (gen_server, transient)
%%   `- arsenal_top_w (gen_server, temporary)
start_fork_tree() ->
    start_unlinked(fun() -> test_supervisor2:start_link({local, arsenal_fork_top}, ?MODULE, fork_top) end).

%% arsenal_fork_simple (test_supervisor2, simple_one_for_one) with two workers.
start_fork_simple() ->
    {ok, Sup} = start_unlinked(fun() ->
                                       test_supervisor2:start_link({local, arsenal_fork_simple}, ?MODULE,
                                                                   fork_simple)
                               end),
    {ok, _} = test_supervisor2:start_child(Sup, [arsenal_simple_w1]),
    {ok, _} = test_supervisor2:start_child(Sup, [arsenal_simple_w2]),
    {ok, Sup}.

%% Start a process with a start_link function from a helper that unlinks
%% from it at once, so it outlives the rpc call that asked for it.
start_unlinked(Start) ->
    Caller = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  Result = Start(),
                  case Result of {ok, P} -> unlink(P); _ -> ok end,
                  Caller ! {Ref, Result}
          end),
    receive {Ref, Result} -> Result after 10000 -> {error, timeout} end.

stop(Name) ->
    case whereis(Name) of
        undefined -> ok;
        Pid -> try proc_lib:stop(Pid, shutdown, 10000) catch exit:_ -> ok end
    end.

worker(Name, Restart) ->
    #{id => Name, start => {?MODULE, start_server, [Name]}, restart => Restart}.

sup_spec(Id, Module, Name, Arg) ->
    #{id => Id, start => {Module, start_link, [{local, Name}, ?MODULE, Arg]}, type => supervisor}.

init(fork_top) ->
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10},
          [sup_spec(otp_mid, supervisor, arsenal_otp_mid, otp_mid),
           worker(arsenal_top_w, temporary)]}};
init(otp_mid) ->
    {ok, {#{strategy => rest_for_one, intensity => 10, period => 10},
          [sup_spec(fork_leaf, test_supervisor2, arsenal_fork_leaf, fork_leaf),
           worker(arsenal_mid_w, transient)]}};
init(fork_leaf) ->
    {ok, {#{strategy => one_for_all, intensity => 10, period => 10},
          [worker(arsenal_leaf_w1, permanent), worker(arsenal_leaf_w2, permanent)]}};
init(fork_simple) ->
    {ok, {#{strategy => simple_one_for_one, intensity => 10, period => 10},
          [#{id => simple_worker, start => {?MODULE, start_server, []}, restart => transient}]}};
init(pool) ->
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10},
          [#{id => arsenal_pool_listener, start => {?MODULE, start_server, [arsenal_pool_listener]}}]}};
%% gen_server workers: the state is their name and a counter.
init({server, Name}) ->
    case Name of
        %% A listener links acceptors (and one acceptor a helper of its own),
        %% as acceptor pools do: none of them is a supervisor's child.
        arsenal_pool_listener ->
            Acceptors = [proc_lib:spawn_link(?MODULE, acceptor, [N]) || N <- [1, 2, 3]],
            {ok, #{name => Name, calls => 0, acceptors => Acceptors}};
        arsenal_lone_server ->
            Helper = proc_lib:spawn_link(?MODULE, acceptor, [0]),
            {ok, #{name => Name, calls => 0, acceptors => [Helper]}};
        _ ->
            {ok, #{name => Name, calls => 0}}
    end.

start_server(Name) ->
    gen_server:start_link({local, Name}, ?MODULE, {server, Name}, []).

handle_call(ping, _From, #{calls := N} = S) -> {reply, pong, S#{calls := N + 1}};
handle_call(acceptors, _From, S) -> {reply, maps:get(acceptors, S, []), S}.

handle_cast(_Message, S) -> {noreply, S}.

handle_info(_Message, S) -> {noreply, S}.

%% ------------------------------------------------------------------ pools and lone servers

%% arsenal_pool_sup (OTP supervisor) -> arsenal_pool_listener (gen_server) ->
%% three linked acceptors (proc_lib, plain loops), the first of which links
%% a helper of its own.
start_pool() ->
    start_unlinked(fun() -> supervisor:start_link({local, arsenal_pool_sup}, ?MODULE, pool) end).

%% A gen_server nobody supervises (started by hand), with a linked helper.
start_lone_server() ->
    {ok, Pid} = gen_server:start({local, arsenal_lone_server}, ?MODULE, {server, arsenal_lone_server}, []),
    {ok, Pid}.

acceptor(1) ->
    proc_lib:spawn_link(?MODULE, acceptor, [11]),
    accept_loop();
acceptor(_) ->
    accept_loop().

accept_loop() ->
    receive
        stop -> ok
    after ?LIFE_MS -> ok
    end.

%% ------------------------------------------------------------------ loops without sys

%% Registered: arsenal_plain_loop (proc_lib, a plain receive loop),
%% arsenal_plain_hib (proc_lib, hibernating with proc_lib:hibernate) and
%% arsenal_raw_loop (a raw spawn). None handles system messages.
start_plain_loops() ->
    Plain = proc_lib:spawn(?MODULE, plain_loop, [0]),
    true = register(arsenal_plain_loop, Plain),
    Hib = proc_lib:spawn(fun() -> erlang:send_after(?LIFE_MS, self(), stop), plain_hibernating(0) end),
    true = register(arsenal_plain_hib, Hib),
    Raw = spawn(?MODULE, raw_loop, [0]),
    true = register(arsenal_raw_loop, Raw),
    #{plain => Plain, hibernating => Hib, raw => Raw}.

plain_loop(N) ->
    receive
        {ping, From} -> From ! {pong, N}, plain_loop(N + 1);
        stop -> ok
    after ?LIFE_MS -> ok
    end.

plain_hibernating(N) ->
    receive
        {ping, From} -> From ! {pong, N}, proc_lib:hibernate(?MODULE, plain_hibernating, [N + 1]);
        stop -> ok
    after 0 ->
        proc_lib:hibernate(?MODULE, plain_hibernating, [N])
    end.

raw_loop(N) ->
    receive
        {ping, From} -> From ! {pong, N}, raw_loop(N + 1);
        stop -> ok
    after ?LIFE_MS -> ok
    end.

%% The length and the messages of a process's mailbox (at most 20).
mailbox(Target) ->
    Pid = case Target of
              P when is_pid(P) -> P;
              Name when is_atom(Name) -> whereis(Name)
          end,
    case erlang:process_info(Pid, [message_queue_len, messages]) of
        [{message_queue_len, Len}, {messages, Messages}] -> {Len, lists:sublist(Messages, 20)};
        undefined -> gone
    end.
