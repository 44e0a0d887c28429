%% @doc The inside of a sandbox: the node Arsenal starts for a user's experiments.
%%
%% boot/0 runs at the node's start (an -eval of the command line), before
%% Arsenal connects, so the limits hold even if Arsenal never does:
%%
%%   * a watchdog process halts the node when its wall-clock lifetime ends or
%%     when erlang:memory(total) passes its memory limit (checked every 200 ms;
%%     the OS limit on the address space catches what grows faster), writing
%%     the reason to <dir>/stop_reason first, so Arsenal can say why it stopped;
%%   * standard_error is fronted by a proxy that copies what an evaluation
%%     writes there (Elixir's compiler warnings) to that evaluation's capture;
%%   * Elixir (and its Logger) is started when the sandbox has it.
%%
%% The limits come from the environment (ARSENAL_SANDBOX_*), written by Arsenal.
-module(arsenal_agent_sandbox).

-behaviour(supervisor).

-export([boot/0, start_app/1, stop_app/1, usage/0, processes/1, app_tree/1, start_worker/1]).
-export([init/1]).

-define(MEMORY_CHECK_MS, 200).
-define(MAX_PROCESSES_LISTED, 500).
-define(MAX_TREE_LINES, 200).
-define(MAX_TREE_DEPTH, 8).

%% @doc Set up the sandbox (called once, from the node's command line).
-spec boot() -> ok.
boot() ->
    Dir = os:getenv("ARSENAL_SANDBOX_DIR", "."),
    Lifetime = env_int("ARSENAL_SANDBOX_LIFETIME_MS", 3600000),
    Memory = env_int("ARSENAL_SANDBOX_MEMORY_BYTES", 0),
    Self = self(),
    Watchdog = spawn(fun() -> watchdog_init(Self, Dir, Lifetime, Memory) end),
    receive {Watchdog, ready} -> ok after 5000 -> ok end,
    case os:getenv("ARSENAL_SANDBOX_ELIXIR") of
        "1" ->
            {ok, _} = application:ensure_all_started(elixir),
            _ = application:ensure_all_started(logger),
            ok;
        _ -> ok
    end,
    io:format("ARSENAL_SANDBOX_READY~n"),
    ok.

env_int(Name, Default) ->
    case os:getenv(Name) of
        false -> Default;
        Text -> list_to_integer(Text)
    end.

watchdog_init(Parent, Dir, Lifetime, Memory) ->
    register(arsenal_sandbox, self()),
    ets:new(arsenal_capture, [named_table, public, set]),
    install_stderr_proxy(),
    erlang:send_after(Lifetime, self(), lifetime),
    erlang:send_after(?MEMORY_CHECK_MS, self(), check_memory),
    Parent ! {self(), ready},
    watchdog(Dir, Lifetime, Memory).

watchdog(Dir, Lifetime, Memory) ->
    receive
        lifetime ->
            halt_with(Dir, io_lib:format("lifetime: the sandbox's lifetime of ~b s ended", [Lifetime div 1000]), 3);
        check_memory ->
            Total = erlang:memory(total),
            case Memory > 0 andalso Total > Memory of
                true ->
                    halt_with(Dir, io_lib:format("memory: the node used ~b MiB, over its limit of ~b MiB",
                                                 [Total bsr 20, Memory bsr 20]), 4);
                false ->
                    [ets:delete(arsenal_capture, P) || {P, _} <- ets:tab2list(arsenal_capture),
                                                       not is_process_alive(P)],
                    erlang:send_after(?MEMORY_CHECK_MS, self(), check_memory),
                    watchdog(Dir, Lifetime, Memory)
            end;
        _ ->
            watchdog(Dir, Lifetime, Memory)
    end.

halt_with(Dir, Reason, Status) ->
    _ = file:write_file(filename:join(Dir, "stop_reason"), unicode:characters_to_binary(Reason)),
    erlang:halt(Status, [{flush, false}]).

install_stderr_proxy() ->
    case whereis(standard_error) of
        undefined -> ok;
        Real ->
            Proxy = spawn(fun() -> stderr_proxy(Real) end),
            unregister(standard_error),
            register(standard_error, Proxy),
            ok
    end.

%% Forwards every request unchanged (replies go straight from the real
%% standard_error to the caller); an evaluation's text is also copied to its capture.
stderr_proxy(Real) ->
    receive
        {io_request, From, _, Request} = Message ->
            copy_to_capture(From, Request),
            Real ! Message;
        Other ->
            Real ! Other
    end,
    stderr_proxy(Real).

copy_to_capture(From, {put_chars, Enc, Chars}) ->
    case try ets:lookup(arsenal_capture, From) catch error:badarg -> [] end of
        [{_, Capture}] -> Capture ! {warning, unicode:characters_to_binary(Chars, Enc)};
        _ -> ok
    end;
copy_to_capture(_, _) ->
    ok.

%% @doc Load and start the user's application. Spec: #{app => Name, mod =>
%% Module | undefined, modules => [Module], applications => [Name],
%% description => Text}. Names arrive as binaries: a sandbox is Arsenal's own
%% node, so they become atoms here (user code creates its atoms anyway).
-spec start_app(map()) -> {ok, [atom()]} | {error, map()}.
start_app(#{app := AppBin} = Spec) ->
    App = binary_to_atom(AppBin),
    Deps = [binary_to_atom(D) || D <- maps:get(applications, Spec, [])],
    Keys = [{description, binary_to_list(maps:get(description, Spec, <<"sandbox application">>))},
            {vsn, binary_to_list(maps:get(vsn, Spec, <<"0.1.0">>))},
            {modules, [binary_to_atom(M) || M <- maps:get(modules, Spec, [])]},
            {registered, []},
            {applications, lists:usort([kernel, stdlib | Deps])},
            {env, maps:get(env, Spec, [])}],
    Mod = case maps:get(mod, Spec, undefined) of
              undefined -> [];
              M -> [{mod, {binary_to_atom(M), []}}]
          end,
    _ = application:unload(App),
    case application:load({application, App, Keys ++ Mod}) of
        ok -> started(App, application:ensure_all_started(App));
        {error, Reason} -> {error, #{stage => start, message => short("the application does not load", Reason)}}
    end.

started(_, {ok, Apps}) -> {ok, Apps};
started(App, {error, Reason}) ->
    {error, #{stage => start,
              message => short(io_lib:format("the application ~s did not start", [App]), Reason)}}.

%% @doc Stop and unload an application of the sandbox.
-spec stop_app(binary()) -> ok.
stop_app(AppBin) ->
    App = binary_to_atom(AppBin),
    _ = application:stop(App),
    _ = application:unload(App),
    ok.

short(What, Reason) ->
    iolist_to_binary(io_lib:format("~ts: ~0tP", [What, Reason, 20])).

%% @doc What the sandbox uses now, next to its limits. Cost: O(1) plus
%% which_applications.
-spec usage() -> map().
usage() ->
    {Uptime, _} = erlang:statistics(wall_clock),
    #{memory_bytes => erlang:memory(total),
      process_memory_bytes => erlang:memory(processes),
      process_count => erlang:system_info(process_count),
      process_limit => erlang:system_info(process_limit),
      schedulers => erlang:system_info(schedulers_online),
      max_heap_size => maps:get(size, erlang:system_info(max_heap_size)),
      run_queue => erlang:statistics(run_queue),
      uptime_ms => Uptime,
      applications => [#{name => atom_to_binary(A), vsn => unicode:characters_to_binary(V)}
                       || {A, _, V} <- application:which_applications()]}.

%% @doc The sandbox's processes, biggest first (at most ?MAX_PROCESSES_LISTED).
-spec processes(pos_integer()) -> [map()].
processes(Limit) ->
    Rows = [Row || P <- erlang:processes(), Row <- [process_row(P)], Row =/= undefined],
    Sorted = lists:sublist(lists:reverse(lists:keysort(1, Rows)), min(Limit, ?MAX_PROCESSES_LISTED)),
    [Map || {_, Map} <- Sorted].

process_row(Pid) ->
    case erlang:process_info(Pid, [registered_name, memory, message_queue_len, current_function, dictionary]) of
        undefined -> undefined;
        [{registered_name, Name}, {memory, Mem}, {message_queue_len, Q}, {current_function, MFA}, {dictionary, D}] ->
            Initial = case lists:keyfind('$initial_call', 1, D) of
                          {_, {M, F, A}} -> mfa(M, F, A);
                          false -> undefined
                      end,
            {Mem, #{pid => list_to_binary(pid_to_list(Pid)),
                    name => case Name of [] -> undefined; _ -> Name end,
                    memory => Mem, message_queue_len => Q,
                    current_function => case MFA of {M2, F2, A2} -> mfa(M2, F2, A2); _ -> undefined end,
                    initial_call => Initial}}
    end.

mfa(M, F, A) ->
    iolist_to_binary([atom_to_binary(M), ":", atom_to_binary(F), "/", integer_to_binary(A)]).

%% @doc An application's supervision tree as indented lines (at most
%% ?MAX_TREE_LINES, ?MAX_TREE_DEPTH levels), for the REPL's :tree.
-spec app_tree(binary()) -> [binary()].
app_tree(AppBin) ->
    try binary_to_existing_atom(AppBin) of
        App ->
            case application_controller:get_master(App) of
                undefined -> [];
                Master ->
                    case try application_master:get_child(Master) catch exit:_ -> none end of
                        {Top, _Mod} when is_pid(Top) ->
                            lists:sublist(tree_lines(Top, supervisor, 0), ?MAX_TREE_LINES);
                        _ -> []
                    end
            end
    catch error:badarg -> []
    end.

tree_lines(Pid, Type, Depth) ->
    Label = iolist_to_binary([binary:copy(<<"  ">>, Depth), label(Pid), " ", pid_to_list(Pid),
                              case Type of supervisor -> " (supervisor)"; worker -> "" end]),
    Children = case Type =:= supervisor andalso Depth < ?MAX_TREE_DEPTH of
                   true ->
                       case try supervisor:which_children(Pid) catch exit:_ -> none end of
                           List when is_list(List) ->
                               lists:append([tree_lines(C, T, Depth + 1) || {_, C, T, _} <- List, is_pid(C)]);
                           _ -> []
                       end;
                   false -> []
               end,
    [Label | Children].

label(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} ->
            case atom_to_binary(Name) of
                <<"Elixir.", Rest/binary>> -> Rest;
                Other -> Other
            end;
        _ -> <<"-">>
    end.

%% @doc Start a worker under a supervisor of the sandbox: #{module, args, id,
%% restart, supervisor => Name | undefined}. Without a supervisor, under
%% arsenal_dynamic_workers (a one_for_one supervisor started on first use, kept
%% by a process of its own so it outlives this call). A DynamicSupervisor is
%% asked through its own API. Returns the pid and the child spec used.
-spec start_worker(map()) -> {ok, map()} | {error, map()}.
start_worker(#{module := ModBin, args := Args, id := Id, restart := Restart} = Spec) ->
    Mod = binary_to_atom(ModBin),
    case code:ensure_loaded(Mod) of
        {module, Mod} ->
            case erlang:function_exported(Mod, start_link, 1) of
                true -> start_child(supervisor_of(maps:get(supervisor, Spec, undefined)), Mod, Args, Id, Restart);
                false -> {error, #{stage => validation, message => <<ModBin/binary, " has no start_link/1">>}}
            end;
        {error, _} ->
            {error, #{stage => not_found, message => <<"no module ", ModBin/binary, " in the sandbox">>}}
    end.

supervisor_of(undefined) -> dynamic_workers();
supervisor_of(Name) ->
    case whereis(binary_to_atom(Name)) of
        undefined -> {missing, Name};
        Pid -> Pid
    end.

start_child({missing, Name}, _, _, _, _) ->
    {error, #{stage => not_found, message => <<"no supervisor registered as ", Name/binary>>}};
start_child(Sup, Mod, Args, Id, Restart) ->
    Child = #{id => Id, start => {Mod, start_link, [Args]}, restart => Restart, type => worker,
              shutdown => 5000, modules => [Mod]},
    Result = case arsenal_agent_proc:callback_module(Sup) of
                 'Elixir.DynamicSupervisor' -> 'Elixir.DynamicSupervisor':start_child(Sup, Child);
                 _ -> try supervisor:start_child(Sup, Child) catch exit:Exit -> {'EXIT', Exit} end
             end,
    case Result of
        {ok, Pid} when is_pid(Pid) -> {ok, #{pid => Pid, supervisor => Sup, child_spec => Child}};
        {ok, Pid, _} when is_pid(Pid) -> {ok, #{pid => Pid, supervisor => Sup, child_spec => Child}};
        Other -> {error, #{stage => start, message => short("the worker did not start", Other)}}
    end.

dynamic_workers() ->
    case whereis(arsenal_dynamic_workers) of
        undefined ->
            Caller = self(),
            spawn(fun() ->
                Started = supervisor:start_link({local, arsenal_dynamic_workers}, ?MODULE, dynamic_workers),
                Caller ! {dynamic_workers, Started},
                case Started of
                    {ok, _} -> receive after infinity -> ok end;
                    _ -> ok
                end
            end),
            receive {dynamic_workers, _} -> ok after 5000 -> ok end,
            whereis(arsenal_dynamic_workers);
        Pid -> Pid
    end.

%% @private The supervisor of workers started at run time.
init(dynamic_workers) ->
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, []}}.
