"""Four sandbox applications, ready to start: small OTP systems that show one idea each.

Each template is an :class:`~arsenal.sandbox.generator.AppSpec`, built by the
function of the same name, whose docstring says what the application does and
what it shows; its first paragraph is the spec's ``description`` (and so its
README). :func:`template` returns a fresh copy, so a caller may change it
before rendering it.

* ``worker_pool``: a dispatcher hands jobs round-robin to a pool of workers.
* ``pubsub``: a broker keeps topics, monitors subscribers and drops dead ones.
* ``pipeline``: source -> transform -> sink under ``rest_for_one``.
* ``cascade``: nested supervisors whose workers crash on request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .generator import AppSpec, HandlerSpec, SupervisorSpec, WorkerSpec

__all__ = ["TEMPLATES", "cascade", "pipeline", "pubsub", "template", "worker_pool"]


def _summary(build: Callable[[], AppSpec]) -> str:
    """The first paragraph of a template's docstring, on one line."""
    doc = inspect.getdoc(build) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _call(pattern: str, body: str) -> HandlerSpec:
    return HandlerSpec(kind="call", pattern=pattern, body=body)


def _cast(pattern: str, body: str) -> HandlerSpec:
    return HandlerSpec(kind="cast", pattern=pattern, body=body)


def _info(pattern: str, body: str) -> HandlerSpec:
    return HandlerSpec(kind="info", pattern=pattern, body=body)


# --- worker_pool ----------------------------------------------------------------

_POOL_WORKER_HELPERS = r'''
@doc """
Runs a job here, in the worker: a zero-arity fun is called, any other term is its
own result. (No `{module, function, args}` jobs: the sandbox's policy refuses `apply`
of a module computed at run time.) `{:ok, result}`, or `{:error, reason}` if
the job raised, threw or exited (the worker survives it).
"""
def run(job) when is_function(job, 0), do: safely(job)

def run(term), do: {:ok, term}

defp safely(fun) do
  {:ok, fun.()}
rescue
  error -> {:error, Exception.message(error)}
catch
  kind, reason -> {:error, {kind, reason}}
end
'''

_DISPATCHER_HELPERS = r"""
@doc "Runs `job` on the next worker: `{:ok, result, worker}` or `{:error, reason, worker}`."
def run(job, timeout \\ 5000), do: GenServer.call(__MODULE__, {:run, job}, timeout)

@doc "Jobs dispatched in all and per worker index, and how many workers are up."
def stats, do: GenServer.call(__MODULE__, :stats)

# The live workers as {index, pid}, by index: asked of the pool on every job, so a
# restarted worker (or a restarted pool) is picked up without telling the dispatcher.
defp workers do
  children = Supervisor.which_children(WorkerPool.Pool)

  Enum.sort(
    for {{WorkerPool.Worker, index}, pid, :worker, _} <- children, is_pid(pid), do: {index, pid}
  )
end
"""


def worker_pool() -> AppSpec:
    """A pool of four workers and a dispatcher that hands them jobs round-robin.

    ``WorkerPool.Dispatcher.run(job)`` (the call ``{:run, job}``) sends the job to
    the next worker and returns at once to other callers: the worker runs it and
    answers the caller itself (``GenServer.reply/2``), so four jobs run at the same
    time and a slow job blocks one worker, not the dispatcher. The answer says
    which worker ran the job: ``{:ok, result, index}``. A job is a zero-arity fun
    or any other term (its own result); a job that raises
    is ``{:error, message, index}`` and the worker lives on.
    ``WorkerPool.Dispatcher.stats()`` (``:stats``) counts jobs per worker; each
    worker answers ``:jobs_done``.

    Shows: ``count`` copies of a worker (ids ``{WorkerPool.Worker, i}``),
    deferred replies, and finding workers through their supervisor rather than
    by name. The root is ``one_for_one`` because the dispatcher keeps no pids.
    """
    worker = WorkerSpec(
        name="Worker",
        count=4,
        initial_state="%{index: Keyword.fetch!(args, :index), jobs_done: 0}",
        handlers=[
            _cast(
                "{:run, job, reply_to}",
                "{status, result} = run(job)\n"
                "GenServer.reply(reply_to, {status, result, state.index})\n"
                "{:noreply, %{state | jobs_done: state.jobs_done + 1}}",
            ),
            _call(":jobs_done", "{:reply, state.jobs_done, state}"),
        ],
        extra_code=_POOL_WORKER_HELPERS,
    )
    dispatcher = WorkerSpec(
        name="Dispatcher",
        initial_state="%{next: 0, dispatched: 0, by_worker: %{}}",
        handlers=[
            _call(
                "{:run, job}",
                """case workers() do
  [] ->
    {:reply, {:error, :no_workers, nil}, state}

  workers ->
    {index, pid} = Enum.at(workers, rem(state.next, length(workers)))
    GenServer.cast(pid, {:run, job, from})
    by_worker = Map.update(state.by_worker, index, 1, &(&1 + 1))

    {:noreply,
     %{state | next: state.next + 1, dispatched: state.dispatched + 1, by_worker: by_worker}}
end""",
            ),
            _call(
                ":stats",
                "stats = %{\n"
                "  dispatched: state.dispatched,\n"
                "  by_worker: state.by_worker,\n"
                "  workers: length(workers())\n"
                "}\n\n"
                "{:reply, stats, state}",
            ),
        ],
        extra_code=_DISPATCHER_HELPERS,
    )
    pool = SupervisorSpec(name="Pool", strategy="one_for_one", children=[worker])
    return AppSpec(
        name="worker_pool",
        description=_summary(worker_pool),
        root=SupervisorSpec(name="Root", strategy="one_for_one", children=[pool, dispatcher]),
    )


# --- pubsub -----------------------------------------------------------------------

_BROKER_HELPERS = r"""
@doc "Subscribes the caller to `topic` (`:all` receives every topic) as `{:event, topic, msg}`."
def subscribe(topic), do: GenServer.call(__MODULE__, {:subscribe, topic})

@doc "Unsubscribes the caller from `topic`."
def unsubscribe(topic), do: GenServer.call(__MODULE__, {:unsubscribe, topic})

@doc "Sends `{:event, topic, msg}` to the subscribers of `topic` and of `:all`: `{:ok, how_many}`."
def publish(topic, msg), do: GenServer.call(__MODULE__, {:publish, topic, msg})

@doc "Topic -> number of subscribers."
def topics, do: GenServer.call(__MODULE__, :topics)

# Takes `pid` off `topics`; once it is on no topic, its monitor goes too.
defp remove(state, pid, topics) do
  topic_map =
    Enum.reduce(topics, state.topics, fn topic, acc ->
      case Map.fetch(acc, topic) do
        {:ok, subscribers} ->
          left = MapSet.delete(subscribers, pid)
          if MapSet.size(left) == 0, do: Map.delete(acc, topic), else: Map.put(acc, topic, left)

        :error ->
          acc
      end
    end)

  if Enum.any?(topic_map, fn {_topic, subscribers} -> MapSet.member?(subscribers, pid) end) do
    %{state | topics: topic_map}
  else
    {ref, monitors} = Map.pop(state.monitors, pid)
    if ref, do: Process.demonitor(ref, [:flush])
    %{state | topics: topic_map, monitors: monitors}
  end
end
"""

_RECORDER_HELPERS = r"""
@doc "The kept events, oldest first, as `{topic, msg}`."
def events, do: GenServer.call(__MODULE__, :events)

@doc "How many events it has seen since it started."
def seen, do: GenServer.call(__MODULE__, :seen)
"""


def pubsub() -> AppSpec:
    """A topic broker with monitored subscribers, and a recorder that keeps the last 100 events.

    ``PubSub.Broker`` keeps topic -> subscriber pids. ``subscribe(topic)``
    (``{:subscribe, topic}``) monitors the caller; ``publish(topic, msg)``
    (``{:publish, topic, msg}``) sends ``{:event, topic, msg}`` to every subscriber of
    the topic and of ``:all``, and answers how many it reached; ``topics()``
    (``:topics``) counts subscribers per topic. A subscriber that dies is dropped
    on its ``:DOWN`` message, and empty topics go with it.

    ``PubSub.Recorder`` subscribes to ``:all`` when it starts and keeps the last
    100 events in its state (``events()``, ``seen()``): a subscriber you can read.
    The root is ``rest_for_one`` with the broker first: if the broker restarts,
    its subscriptions are gone, so the recorder restarts too and subscribes again.
    """
    broker = WorkerSpec(
        name="Broker",
        initial_state="%{topics: %{}, monitors: %{}}",
        handlers=[
            _call(
                "{:subscribe, topic}",
                """{pid, _tag} = from
subscribers = Map.get(state.topics, topic, MapSet.new())
monitors = Map.put_new_lazy(state.monitors, pid, fn -> Process.monitor(pid) end)
topics = Map.put(state.topics, topic, MapSet.put(subscribers, pid))
{:reply, :ok, %{state | topics: topics, monitors: monitors}}""",
            ),
            _call(
                "{:unsubscribe, topic}",
                "{pid, _tag} = from\n{:reply, :ok, remove(state, pid, [topic])}",
            ),
            _call(
                "{:publish, topic, msg}",
                """subscribers =
  MapSet.union(
    Map.get(state.topics, topic, MapSet.new()),
    Map.get(state.topics, :all, MapSet.new())
  )

Enum.each(subscribers, &send(&1, {:event, topic, msg}))
{:reply, {:ok, MapSet.size(subscribers)}, state}""",
            ),
            _call(
                ":topics",
                "counts = Map.new(state.topics, fn {topic, pids} -> {topic, MapSet.size(pids)} end)\n"
                "{:reply, counts, state}",
            ),
            _info(
                "{:DOWN, _ref, :process, pid, _reason}",
                "{:noreply, remove(state, pid, Map.keys(state.topics))}",
            ),
        ],
        extra_code=_BROKER_HELPERS,
    )
    recorder = WorkerSpec(
        name="Recorder",
        initial_state=":ok = PubSub.Broker.subscribe(:all)\n%{events: [], seen: 0}",
        handlers=[
            _info(
                "{:event, topic, msg}",
                "events = Enum.take([{topic, msg} | state.events], 100)\n"
                "{:noreply, %{state | events: events, seen: state.seen + 1}}",
            ),
            _call(":events", "{:reply, Enum.reverse(state.events), state}"),
            _call(":seen", "{:reply, state.seen, state}"),
        ],
        extra_code=_RECORDER_HELPERS,
    )
    return AppSpec(
        name="pubsub",
        module="PubSub",
        description=_summary(pubsub),
        root=SupervisorSpec(name="Root", strategy="rest_for_one", children=[broker, recorder]),
    )


# --- pipeline ---------------------------------------------------------------------

_SOURCE_HELPERS = r"""
@doc "Feeds `item` into the pipeline: `{:ok, sequence_number}`."
def push(item), do: GenServer.call(__MODULE__, {:push, item})

@doc "Returns once everything pushed before has reached the sink."
def flush, do: GenServer.call(__MODULE__, :flush)
"""

_TRANSFORM_HELPERS = r"""
@doc "What the stage does to one item: numbers doubled, strings upcased, anything else as is."
def transform(item) when is_number(item), do: item * 2
def transform(item) when is_binary(item), do: String.upcase(item)
def transform(item), do: item
"""

_SINK_HELPERS = r"""
@doc "The outputs kept (the last 1000), oldest first."
def results, do: GenServer.call(__MODULE__, :results)
"""


def pipeline() -> AppSpec:
    """Three stages, source -> transform -> sink, under a ``rest_for_one`` supervisor.

    ``Pipeline.Source.push(x)`` (the call ``{:push, x}``) numbers an item and casts
    it to ``Pipeline.Transform``, which doubles numbers, upcases strings and passes
    anything else on, casting the result to ``Pipeline.Sink``, which keeps the last
    1000 outputs: ``Pipeline.Sink.results()`` (``:results``). Casts make the flow
    asynchronous; ``Pipeline.Source.flush()`` (``:flush``, passed down the stages
    as calls) returns once everything pushed before has reached the sink, because
    messages between two processes keep their order.

    Shows ``rest_for_one``: children start in flow order, so a stage that crashes
    restarts itself and every stage after it (what was in flight is dropped, the
    sink starts empty), while the stages before it keep running.
    """
    source = WorkerSpec(
        name="Source",
        initial_state="%{pushed: 0}",
        handlers=[
            _call(
                "{:push, item}",
                "seq = state.pushed + 1\n"
                "GenServer.cast(Pipeline.Transform, {:item, seq, item})\n"
                "{:reply, {:ok, seq}, %{state | pushed: seq}}",
            ),
            _call(":flush", "{:reply, GenServer.call(Pipeline.Transform, :flush), state}"),
        ],
        extra_code=_SOURCE_HELPERS,
    )
    transform = WorkerSpec(
        name="Transform",
        initial_state="%{transformed: 0}",
        handlers=[
            _cast(
                "{:item, seq, item}",
                "GenServer.cast(Pipeline.Sink, {:result, seq, transform(item)})\n"
                "{:noreply, %{state | transformed: state.transformed + 1}}",
            ),
            _call(":flush", "{:reply, GenServer.call(Pipeline.Sink, :flush), state}"),
        ],
        extra_code=_TRANSFORM_HELPERS,
    )
    sink = WorkerSpec(
        name="Sink",
        initial_state="%{results: [], count: 0}",
        handlers=[
            _cast(
                "{:result, _seq, output}",
                "{:noreply,\n"
                " %{state | results: Enum.take([output | state.results], 1000), count: state.count + 1}}",
            ),
            _call(":results", "{:reply, Enum.reverse(state.results), state}"),
            _call(":flush", "{:reply, :ok, state}"),
        ],
        extra_code=_SINK_HELPERS,
    )
    return AppSpec(
        name="pipeline",
        description=_summary(pipeline),
        root=SupervisorSpec(name="Root", strategy="rest_for_one", children=[source, transform, sink]),
    )


# --- cascade ----------------------------------------------------------------------

_COUNTER_HELPERS = r"""
@doc "The counter."
def count, do: GenServer.call(__MODULE__, :count)

@doc "Adds one to the counter."
def bump, do: GenServer.cast(__MODULE__, :bump)

@doc "Makes this worker raise, as a real bug would."
def crash, do: GenServer.cast(__MODULE__, :crash)
"""


def _counter(name: str) -> WorkerSpec:
    """A worker that counts ``:bump`` casts, answers ``:count`` and raises on ``:crash``."""
    return WorkerSpec(
        name=name,
        initial_state="%{count: 0}",
        handlers=[
            _call(":count", "{:reply, state.count, state}"),
            _cast(":bump", "{:noreply, %{state | count: state.count + 1}}"),
            _cast(":crash", 'raise "#{inspect(__MODULE__)} crashed on request"'),
        ],
        extra_code=_COUNTER_HELPERS,
    )


def cascade() -> AppSpec:
    """Nested supervisors with crashable counters, to watch failures travel up and across the tree.

    ``Cascade.Root`` (``one_for_all``) supervises ``Cascade.Chain``
    (``rest_for_one``: ``First``, ``Second``, ``Third``) and ``Cascade.Branch``
    (``one_for_one``: ``Left``, ``Right``; at most 2 restarts in 30 s). Every worker
    keeps a counter (``bump()``/``:bump``, ``count()``/``:count``) and raises on
    ``crash()`` (the cast ``:crash``).

    Crash ``Second``: it and ``Third`` restart (counters back to 0), ``First``
    keeps its pid and count. Crash ``Left``: only ``Left`` restarts. Crash
    ``Branch``'s workers three times within 30 s: ``Branch`` gives up, and
    ``one_for_all`` at the root restarts everything, ``Chain`` included. Watch it
    with ``Supervisor.which_children/1`` and ``Supervisor.count_children/1``.
    """
    chain = SupervisorSpec(
        name="Chain",
        strategy="rest_for_one",
        children=[_counter("First"), _counter("Second"), _counter("Third")],
    )
    branch = SupervisorSpec(
        name="Branch",
        strategy="one_for_one",
        max_restarts=2,
        max_seconds=30,
        children=[_counter("Left"), _counter("Right")],
    )
    return AppSpec(
        name="cascade",
        description=_summary(cascade),
        root=SupervisorSpec(name="Root", strategy="one_for_all", children=[chain, branch]),
    )


_BUILDERS: dict[str, Callable[[], AppSpec]] = {
    "worker_pool": worker_pool,
    "pubsub": pubsub,
    "pipeline": pipeline,
    "cascade": cascade,
}

TEMPLATES: dict[str, AppSpec] = {name: build() for name, build in _BUILDERS.items()}
"""The templates by name. Use :func:`template` for a copy you may change."""


def template(name: str) -> AppSpec:
    """A fresh copy of the template ``name``; ValueError (listing the known names) for any other."""
    spec = TEMPLATES.get(name)
    if spec is None:
        raise ValueError(f"no sandbox template {name!r}; the templates are: {', '.join(TEMPLATES)}")
    return spec.model_copy(deep=True)
