%% @doc Arsenal's agent, vital signs: one cheap sample of a node's health for
%% Arsenal's metrics sampler (processes, memory by type, run queues, scheduler
%% wall time, ports, atoms, ETS, reductions, CPU time, uptime).
%%
%% vitals/0 is called through erpc every sampling interval (default 10 s), so
%% it only reads counters the VM keeps anyway: every call is O(1) except the
%% run queue lengths and the scheduler wall time, which are one entry per
%% scheduler. No process, port or table is visited.
%%
%% Scheduler utilisation needs the scheduler_wall_time flag, which makes every
%% scheduler read the clock when it goes to sleep and wakes up (a small cost,
%% why it is off by default). The flag is counted per process by the VM: it is
%% on while at least one process that turned it on is alive. hold/1 starts one
%% small holder process that turns it on and waits for the DOWN of its owner, a
%% process of Arsenal's on the other end of the distribution connection. When
%% Arsenal stops sampling (it closes the owner), detaches, dies or loses the
%% connection, the owner goes DOWN, the holder exits and the VM turns the flag
%% back off (unless someone else holds it too). Nothing else is left behind.
%%
%% Safety: no request data becomes an atom; the only argument is a pid.
-module(arsenal_agent_vitals).

-export([vitals/0, hold/1]).

-define(HOLD_TIMEOUT, 5000).

%% @doc One sample. Memory is erlang:memory() by type (bytes); run_queues are
%% the normal schedulers' run queue lengths (in scheduler order), followed by
%% the dirty CPU and dirty IO queues; scheduler_wall_time is undefined while
%% the flag is off, else {Id, Active, Total} per normal scheduler (Python keeps
%% the previous sample and works out the utilisation from the deltas).
-spec vitals() -> map().
vitals() ->
    {UptimeMs, _} = erlang:statistics(wall_clock),
    {Reductions, _} = erlang:statistics(reductions),
    {RuntimeMs, _} = erlang:statistics(runtime),
    Schedulers = erlang:system_info(schedulers),
    {Normal, Dirty} = lists:split(Schedulers, erlang:statistics(run_queue_lengths_all)),
    {DirtyCpu, DirtyIo} = dirty_queues(Dirty),
    maps:merge(arsenal_agent_sys:counts(), #{
      memory => maps:from_list(erlang:memory()),
      schedulers => Schedulers,
      schedulers_online => erlang:system_info(schedulers_online),
      run_queues => Normal,
      dirty_cpu_run_queue => DirtyCpu,
      dirty_io_run_queue => DirtyIo,
      scheduler_wall_time => wall_time(Schedulers),
      reductions => Reductions,
      runtime_ms => RuntimeMs,
      uptime_ms => UptimeMs}).

dirty_queues([Cpu, Io | _]) -> {Cpu, Io};
dirty_queues([Cpu]) -> {Cpu, 0};
dirty_queues([]) -> {0, 0}.

wall_time(Schedulers) ->
    case erlang:statistics(scheduler_wall_time) of
        undefined -> undefined;
        Rows -> lists:sort([Row || {Id, _, _} = Row <- Rows, Id =< Schedulers])
    end.

%% @doc Start a holder of the scheduler_wall_time flag for Owner (see the
%% module doc); returns its pid once the flag is on. The holder ends when
%% Owner goes DOWN (closed, or its node disconnected).
-spec hold(pid()) -> pid().
hold(Owner) when is_pid(Owner) ->
    Caller = self(),
    {Holder, Ref} = spawn_monitor(fun() -> holder(Owner, Caller) end),
    receive
        {Holder, holding} ->
            erlang:demonitor(Ref, [flush]),
            Holder;
        {'DOWN', Ref, process, Holder, Reason} ->
            error({holder_failed, Reason})
    after ?HOLD_TIMEOUT ->
            exit(Holder, kill),
            error(timeout)
    end.

holder(Owner, Caller) ->
    OwnerRef = erlang:monitor(process, Owner),
    erlang:system_flag(scheduler_wall_time, true),
    Caller ! {self(), holding},
    wait(OwnerRef).

%% Only the owner's DOWN ends it; anything else sent here is dropped, so the
%% mailbox stays empty.
wait(OwnerRef) ->
    receive
        {'DOWN', OwnerRef, process, _, _} -> ok;
        _ -> wait(OwnerRef)
    end.
