%% @doc A demo gen_server with a map for state. A tick every second moves a
%% counter; with ballast_bytes it also holds that much heap data (a list) and a
%% binary of the same size, so it tops a sort by memory.
-module(arsenal_demo_erl_worker).
-behaviour(gen_server).

-export([start_link/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(TICK_MS, 1000).

start_link(Name, Opts) ->
    gen_server:start_link({local, Name}, ?MODULE, {Name, Opts}, []).

init({Name, Opts}) ->
    Bytes = maps:get(ballast_bytes, Opts, 0),
    State0 = #{name => Name,
               role => maps:get(role, Opts, plain),
               started_at => erlang:system_time(millisecond),
               ticks => 0,
               calls => 0,
               tags => [demo, Name]},
    State = case Bytes of
                0 ->
                    State0;
                _ ->
                    %% A list cell is two words (16 bytes): heap memory.
                    State0#{ballast_heap => lists:seq(1, Bytes div 16),
                            ballast_binary => binary:copy(<<"arsenal!">>, Bytes div 8)}
            end,
    erlang:send_after(?TICK_MS, self(), tick),
    {ok, State}.

handle_call(get_state, _From, State) ->
    {reply, summary(State), bump(State)};
handle_call(ping, _From, State) ->
    {reply, pong, bump(State)};
handle_call(_Other, _From, State) ->
    {reply, {error, unknown_call}, State}.

handle_cast(crash, #{name := Name}) ->
    exit({demo_crash, Name});
handle_cast(_Other, State) ->
    {noreply, State}.

handle_info(tick, #{ticks := T} = State) ->
    erlang:send_after(?TICK_MS, self(), tick),
    {noreply, State#{ticks := T + 1}};
handle_info(_Other, State) ->
    {noreply, State}.

bump(#{calls := C} = State) ->
    State#{calls := C + 1}.

%% The ballast is reported by size, not copied to the caller.
summary(State) ->
    maps:map(fun(ballast_heap, L) -> {ballast, length(L) * 16};
                (ballast_binary, B) -> {ballast, byte_size(B)};
                (_K, V) -> V
             end, State).
