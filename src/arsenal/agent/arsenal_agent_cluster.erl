%% @doc Arsenal's agent for clusters: what one node knows of its cluster, in
%% one cheap call, and a small watcher that reports nodes joining and leaving.
%%
%% facts/0 is what cluster_health, cluster_topology and node_info ask every
%% attached node for, concurrently: counters the VM keeps (O(1)), the node
%% lists (capped) and the alarms of SASL's alarm_handler if it runs (capped,
%% asked with a timeout).
%%
%% watch/1 starts one watcher process for an owner, a process of Arsenal's on
%% the other end of the distribution connection. The watcher subscribes to
%% net_kernel:monitor_nodes(true, [{node_type, all}, nodedown_reason]) and
%% forwards each nodeup/nodedown to the owner, at most ?MAX_RATE a second (more
%% are counted and the count is sent with the next event). It monitors the
%% owner and exits when the owner goes DOWN (closed, or the connection lost),
%% so nothing is left running when Arsenal goes away.
%%
%% Safety: no request data becomes an atom; the only argument is a pid.
-module(arsenal_agent_cluster).

-export([facts/0, watch/1]).

-define(MAX_NODES, 200).
-define(MAX_ALARMS, 20).
-define(ALARM_TEXT, 300).
-define(ALARM_TIMEOUT, 200).
-define(WATCH_TIMEOUT, 5000).
-define(MAX_RATE, 100).

%% @doc One node's view of itself and of its cluster. Cost: O(1) counters,
%% nodes() lists capped at 200, one gen_event call (200 ms at most) for alarms.
-spec facts() -> map().
facts() ->
    Visible = erlang:nodes(visible),
    Hidden = erlang:nodes(hidden),
    {UptimeMs, _} = erlang:statistics(wall_clock),
    #{node => node(),
      otp_release => list_to_binary(erlang:system_info(otp_release)),
      language => language(),
      visible => lists:sublist(Visible, ?MAX_NODES),
      visible_count => length(Visible),
      hidden => lists:sublist(Hidden, ?MAX_NODES),
      hidden_count => length(Hidden),
      process_count => erlang:system_info(process_count),
      process_limit => erlang:system_info(process_limit),
      memory_total => erlang:memory(total),
      run_queue => erlang:statistics(total_run_queue_lengths),
      schedulers_online => erlang:system_info(schedulers_online),
      uptime_ms => UptimeMs,
      alarms => alarms()}.

language() ->
    case erlang:module_loaded('Elixir.Kernel') of
        true -> elixir;
        false -> erlang
    end.

%% SASL's alarm_handler (also where os_mon's memsup/disksup raise theirs), as
%% text: {error, not_running} style answers are simply no alarms.
alarms() ->
    case whereis(alarm_handler) of
        undefined ->
            [];
        _ ->
            try gen_event:call(alarm_handler, alarm_handler, get_alarms, ?ALARM_TIMEOUT) of
                List when is_list(List) -> [alarm_text(A) || A <- lists:sublist(List, ?MAX_ALARMS)];
                _ -> []
            catch _:_ -> []
            end
    end.

alarm_text(Alarm) ->
    Text = unicode:characters_to_binary(io_lib:format("~0tP", [Alarm, 12])),
    case byte_size(Text) > ?ALARM_TEXT of
        true -> <<(binary:part(Text, 0, ?ALARM_TEXT))/binary, "...">>;
        false -> Text
    end.

%% @doc Start a watcher for Owner; returns {ok, Watcher, Visible, Hidden}: the
%% node lists read after the subscription, so no join or leave falls between
%% the snapshot and the events. Events arrive at Owner as
%% {arsenal_cluster_event, Watcher, up | down, Node, NodeType, Reason, Dropped}.
-spec watch(pid()) -> {ok, pid(), [node()], [node()]}.
watch(Owner) when is_pid(Owner) ->
    Caller = self(),
    {Watcher, Ref} = spawn_monitor(fun() -> watcher(Owner, Caller) end),
    receive
        {Watcher, watching, Visible, Hidden} ->
            erlang:demonitor(Ref, [flush]),
            {ok, Watcher, Visible, Hidden};
        {'DOWN', Ref, process, Watcher, Reason} ->
            error({watcher_failed, Reason})
    after ?WATCH_TIMEOUT ->
        exit(Watcher, kill),
        error(timeout)
    end.

watcher(Owner, Caller) ->
    OwnerRef = erlang:monitor(process, Owner),
    ok = net_kernel:monitor_nodes(true, [{node_type, all}, nodedown_reason]),
    Caller ! {self(), watching, lists:sublist(erlang:nodes(visible), ?MAX_NODES),
              lists:sublist(erlang:nodes(hidden), ?MAX_NODES)},
    watch_loop(Owner, OwnerRef, {second(), 0, 0}).

watch_loop(Owner, OwnerRef, Rate) ->
    receive
        {'DOWN', OwnerRef, process, Owner, _} ->
            exit(normal);
        {nodeup, Node, Info} ->
            watch_loop(Owner, OwnerRef, forward(Owner, up, Node, Info, Rate));
        {nodedown, Node, Info} ->
            watch_loop(Owner, OwnerRef, forward(Owner, down, Node, Info, Rate));
        _Other ->
            watch_loop(Owner, OwnerRef, Rate)
    end.

%% At most ?MAX_RATE events a second reach the owner; the rest are counted.
forward(Owner, Kind, Node, Info, {Second, Sent, Dropped}) ->
    Now = second(),
    {Sent1, Dropped1} = case Now =:= Second of
                            true -> {Sent, Dropped};
                            false -> {0, Dropped}
                        end,
    case Sent1 < ?MAX_RATE of
        true ->
            Type = proplists:get_value(node_type, Info, visible),
            Reason = proplists:get_value(nodedown_reason, Info, undefined),
            Owner ! {arsenal_cluster_event, self(), Kind, Node, Type, Reason, Dropped1},
            {Now, Sent1 + 1, 0};
        false ->
            {Now, Sent1, Dropped1 + 1}
    end.

second() ->
    erlang:monotonic_time(second).
