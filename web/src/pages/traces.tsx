// Traces: start a trace from a form (calls, messages, message flow, message patterns), watch a
// session's events stream live over `trace:<id>` with its limits in view, stop it, browse the
// stored sessions, and draw who talks to whom (a graph of processes and a heat map).
//
// Trace events come from the API as text already rendered in the node's language (the store
// keeps them so); `<TermText>` shows that text as a term, with its pids linked to the inspector.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, del, get, post } from "../api";
import { ErrorBox, Loading, Tabs, useApi } from "../components";
import { count, duration } from "../format";
import { useCurrentNode } from "../nodes";
import { navigate } from "../router";
import { may, session, useStore } from "../session";
import { inspectorHref } from "../term";
import { live, type ServerMessage } from "../ws";
import "./traces.css";

// ------------------------------------------------------------------ API shapes

interface TraceInfo {
  id: string;
  node: string;
  kind: string;
  status: "running" | "finished";
  started_at: number;
  ended_at: number | null;
  end_reason: string | null;
  events: number;
  dropped: number;
  truncated: number;
  spec: Record<string, any>;
}

interface TraceEvent {
  seq: number;
  time_us: number;
  time: string;
  kind: string;
  pid: string;
  mfa?: string;
  args?: string[];
  caller?: string | null;
  result?: string;
  class?: string;
  reason?: string;
  message?: string;
  to?: string;
  other?: string;
  name?: string;
  data?: string;
  truncated?: boolean;
}

interface TraceResults {
  trace: TraceInfo;
  events: TraceEvent[];
  next_after: number | null;
}

interface FlowNode {
  id: string;
  name: string | null;
  role: string;
  alive: boolean;
}

interface FlowEdge {
  index: number;
  source: string;
  target: string;
  target_name: string | null;
  message: string;
  truncated: boolean;
  depth: number;
  parent: number | null;
}

interface MessageFlow {
  node: string;
  target: string;
  origin: string;
  nodes: FlowNode[];
  edges: FlowEdge[];
  max_depth: number;
  end_reason: string;
  events: number;
  truncated: number;
  duration_ms: number;
}

interface PairRow {
  source: string;
  source_name: string | null;
  target: string;
  target_name: string | null;
  count: number;
}

interface MessagePatterns {
  node: string;
  end_reason: string;
  messages: number;
  undelivered: number;
  dropped: number;
  truncated: number;
  duration_ms: number;
  distinct_pairs: number;
  distinct_shapes: number;
  pairs: PairRow[];
  shapes: { shape: string; count: number; senders: number; example: string }[];
}

// ------------------------------------------------------------------ the page

export function TracesPage({ id }: { id?: string }) {
  return id ? <SessionView id={id} /> : <TraceHome />;
}

/** The last flow or pattern analysis run from the form: it has no stored session, so it is kept
 *  here while the tab lives (leaving the page and coming back still shows it). */
type Analysis = { kind: "flow"; data: MessageFlow } | { kind: "patterns"; data: MessagePatterns };
let lastAnalysis: Analysis | null = null;

function TraceHome() {
  useStore(session);
  const [analysis, setAnalysis] = useState<Analysis | null>(lastAnalysis);
  const show = (a: Analysis) => {
    lastAnalysis = a;
    setAnalysis(a);
  };
  return (
    <div class="traces">
      <div class="traces-top">
        {may("write") ? (
          <TraceForm onAnalysis={show} />
        ) : (
          <div class="panel dim">Starting a trace needs a key with the write right; stored sessions are below.</div>
        )}
        <SessionList />
      </div>
      {analysis && <AnalysisView analysis={analysis} />}
    </div>
  );
}

// ------------------------------------------------------------------ the form

type Kind = "calls" | "messages" | "flow" | "patterns";

interface Field {
  name: string;
  label: string;
  value: string;
  hint?: string;
}

/** The limits each kind takes, defaulted as the API defaults them (docs/operations.md). */
// Call and message traces share one set of limits (TraceLimits on the server).
const TRACE_LIMITS: Field[] = [
  { name: "max_events", label: "max events", value: "100" },
  { name: "duration", label: "duration (s)", value: "15" },
  { name: "rate", label: "rate (events)", value: "1000" },
  { name: "rate_interval", label: "per (s)", value: "1" },
  { name: "max_bytes", label: "max bytes", value: "4096" },
];

const LIMITS: Record<Kind, Field[]> = {
  calls: TRACE_LIMITS,
  messages: TRACE_LIMITS,
  flow: [
    { name: "max_events", label: "max events", value: "200" },
    { name: "window", label: "window (s)", value: "2" },
    { name: "idle", label: "idle end (s)", value: "0" },
    { name: "rate", label: "rate (events)", value: "1000" },
    { name: "max_bytes", label: "max bytes", value: "4096" },
  ],
  patterns: [
    { name: "max_events", label: "max messages", value: "10000" },
    { name: "duration", label: "duration (s)", value: "5" },
    { name: "rate", label: "rate (messages)", value: "2000" },
    { name: "rate_interval", label: "per (s)", value: "1" },
    { name: "max_bytes", label: "max bytes", value: "4096" },
  ],
};

const KIND_TABS: [string, string][] = [
  ["calls", "Calls"],
  ["messages", "Messages"],
  ["flow", "Message flow"],
  ["patterns", "Message patterns"],
];

const lines = (text: string) =>
  text
    .split("\n")
    .map((s) => s.trim())
    .filter(Boolean);
const names = (text: string) =>
  text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean);

function TraceForm({ onAnalysis }: { onAnalysis: (a: Analysis) => void }) {
  const [kind, setKind] = useState<Kind>("calls");
  const [patterns, setPatterns] = useState("");
  const [pids, setPids] = useState("");
  const [scope, setScope] = useState("local");
  const [send, setSend] = useState(true);
  const [receive, setReceive] = useState(true);
  const [target, setTarget] = useState("");
  const [message, setMessage] = useState("");
  const [mode, setMode] = useState("call");
  const [limits, setLimits] = useState<Record<Kind, Record<string, string>>>(() => {
    const all = {} as Record<Kind, Record<string, string>>;
    (Object.keys(LIMITS) as Kind[]).forEach((k) => (all[k] = Object.fromEntries(LIMITS[k].map((f) => [f.name, f.value]))));
    return all;
  });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const numbers = () => {
    const out: Record<string, number> = {};
    for (const [name, text] of Object.entries(limits[kind])) {
      if (text.trim() === "") continue;
      const n = Number(text);
      // A value that is not a number goes as text: the server says what is wrong with it.
      out[name] = Number.isFinite(n) ? n : (text as unknown as number);
    }
    return out;
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      if (kind === "calls") {
        const body: Record<string, unknown> = { patterns: lines(patterns), scope, ...numbers() };
        if (names(pids).length) body.pids = names(pids);
        const started = await post<TraceInfo>("/traces/calls", body);
        navigate(`traces/${started.id}`);
      } else if (kind === "messages") {
        const body = { pids: names(pids), send, receive, ...numbers() };
        const started = await post<TraceInfo>("/traces/messages", body);
        navigate(`traces/${started.id}`);
      } else if (kind === "flow") {
        const body = { pid: target.trim(), message: parseMessage(message), mode, ...numbers() };
        onAnalysis({ kind: "flow", data: await post<MessageFlow>("/traces/message-flow", body) });
      } else {
        const body = { pids: names(pids), ...numbers() };
        onAnalysis({ kind: "patterns", data: await post<MessagePatterns>("/traces/message-patterns", body) });
      }
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };

  const setLimit = (name: string, value: string) => setLimits({ ...limits, [kind]: { ...limits[kind], [name]: value } });
  const waits = kind === "flow" || kind === "patterns";
  return (
    <form class="panel trace-form" onSubmit={submit} aria-label="start a trace">
      <h3>Start a trace</h3>
      <Tabs tabs={KIND_TABS} current={kind} onChange={(k) => (setKind(k as Kind), setError(null))} />
      {kind === "calls" && (
        <>
          <label class="field wide">
            <span>patterns, one per line</span>
            <textarea
              name="patterns"
              data-search
              rows={3}
              value={patterns}
              placeholder={"ArsenalDemo.StatefulWorker.handle_call/3\nmy_mod:lookup(Key, _) when Key > 100 -> return, caller"}
              onInput={(e) => setPatterns(e.currentTarget.value)}
              required
            />
            <small class="dim">
              mod:fun/2, Mod.fun/_, mod (every function); conditions like redbug: <code>mod:f(X, _) when X &gt; 1 -&gt; return, caller</code>
            </small>
          </label>
          <div class="row">
            <label class="field">
              <span>only calls by (pids or names, optional)</span>
              <input name="pids" value={pids} placeholder="every process" onInput={(e) => setPids(e.currentTarget.value)} />
            </label>
            <label class="field">
              <span>scope</span>
              <select name="scope" aria-label="scope" value={scope} onChange={(e) => setScope(e.currentTarget.value)}>
                <option value="local">local (every call)</option>
                <option value="global">global (M:F() only)</option>
              </select>
            </label>
          </div>
        </>
      )}
      {(kind === "messages" || kind === "patterns") && (
        <div class="row">
          <label class="field wide">
            <span>{kind === "messages" ? "processes (pids or names, or all)" : "senders (pids or names, or all)"}</span>
            <input
              name="pids"
              data-search
              value={pids}
              placeholder=":arsenal_demo_events, <0.250.0>"
              onInput={(e) => setPids(e.currentTarget.value)}
              required
            />
          </label>
          {kind === "messages" && (
            <div class="checks">
              <label>
                <input type="checkbox" checked={send} onChange={(e) => setSend(e.currentTarget.checked)} /> sent
              </label>
              <label>
                <input type="checkbox" checked={receive} onChange={(e) => setReceive(e.currentTarget.checked)} /> received
              </label>
            </div>
          )}
        </div>
      )}
      {kind === "flow" && (
        <>
          <div class="row">
            <label class="field wide">
              <span>first receiver (pid or name)</span>
              <input name="target" data-search value={target} placeholder=":arsenal_demo_cascade" onInput={(e) => setTarget(e.currentTarget.value)} required />
            </label>
            <label class="field">
              <span>as</span>
              <select name="mode" aria-label="send as" value={mode} onChange={(e) => setMode(e.currentTarget.value)}>
                <option value="call">call (GenServer.call)</option>
                <option value="cast">cast</option>
                <option value="send">send (!)</option>
              </select>
            </label>
          </div>
          <label class="field wide">
            <span>message (a term, or tagged JSON)</span>
            <input
              name="message"
              class="mono"
              value={message}
              placeholder="{:call_dependency, :arsenal_demo_pool}"
              onInput={(e) => setMessage(e.currentTarget.value)}
              required
            />
            <small class="dim">atoms must exist on the node; <code>self()</code> stands for the sender, so a message can ask for a reply</small>
          </label>
        </>
      )}
      <fieldset class="limits">
        <legend>limits (enforced in the node)</legend>
        {LIMITS[kind].map((f) => (
          <label class="field" key={f.name}>
            <span>{f.label}</span>
            <input
              name={f.name}
              inputMode="decimal"
              value={limits[kind][f.name]}
              onInput={(e) => setLimit(f.name, e.currentTarget.value)}
            />
          </label>
        ))}
      </fieldset>
      <div class="toolbar">
        <button class="primary" type="submit" disabled={busy}>
          {busy ? (waits ? "watching …" : "starting …") : kind === "flow" ? "Send and follow" : kind === "patterns" ? "Watch" : "Start trace"}
        </button>
        {waits && <span class="dim">runs for its window, then shows the graph below</span>}
      </div>
      {error !== null && <FormError error={error} />}
    </form>
  );
}

/** The server's refusal, with the fields it names (a 422 lists each field's problem). */
function FormError({ error }: { error: unknown }) {
  const listed = error instanceof ApiError && Array.isArray(error.meta?.errors) ? (error.meta.errors as { field: string; problem: string }[]) : [];
  // Listed only where the message does not already say them (a body that is not JSON at all).
  const problems = listed.filter((p) => !(error as ApiError).message.includes(p.problem));
  return (
    <div class="form-error">
      <ErrorBox error={error} />
      {problems.length > 0 && (
        <ul class="problems">
          {problems.slice(0, 10).map((p, i) => (
            <li key={i}>
              <code>{p.field.replace(/^body\./, "")}</code>: {p.problem}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

// ------------------------------------------------------------------ a term typed in the form

/** The message field: tagged JSON as is, else a small term syntax (Elixir or Erlang): atoms
 *  (`:ok`, `ok`, `'Quoted'`, `Mod.Name`), numbers, "strings", tuples and lists, `self()`. */
export function parseMessage(text: string): unknown {
  const source = text.trim();
  try {
    return JSON.parse(source);
  } catch {
    /* not JSON: a term */
  }
  let i = 0;
  const fail = (what: string): never => {
    throw new ApiError("validation_error", 0, `the message is not a term: ${what} at character ${i + 1}; write it like {:ping, 1} or as tagged JSON`);
  };
  const space = () => {
    while (i < source.length && /\s/.test(source[i])) i++;
  };
  const seq = (close: string): unknown[] => {
    const items: unknown[] = [];
    space();
    if (source[i] === close) return i++, items;
    for (;;) {
      items.push(value());
      space();
      if (source[i] === ",") i++;
      else if (source[i] === close) return i++, items;
      else fail(`expected , or ${close}`);
    }
  };
  const quoted = (q: string): string => {
    let out = "";
    i++;
    while (i < source.length && source[i] !== q) out += source[i] === "\\" ? source[++i] : source[i], i++;
    if (source[i] !== q) fail("an unclosed quote");
    i++;
    return out;
  };
  const value = (): unknown => {
    space();
    const c = source[i];
    if (c === "{") return i++, { $tuple: seq("}") };
    if (c === "[") return i++, seq("]");
    if (c === '"') return quoted('"');
    if (c === "'") return { $atom: quoted("'") };
    if (c === ":" && source[i + 1] === '"') return i++, { $atom: quoted('"') };
    const word = /^(:?[A-Za-z_][\w.@]*[?!]?(\(\))?|-?\d+(\.\d+)?)/.exec(source.slice(i));
    if (!word) fail("an unexpected character");
    const w = word![0];
    i += w.length;
    if (/^-?\d/.test(w)) return Number(w);
    if (w === "self()") return { $atom: "$arsenal_origin" };
    if (w === "true" || w === "false") return w === "true";
    if (w === "nil") return { $atom: "nil" };
    if (w.startsWith(":")) return { $atom: w.slice(1) };
    if (/^[A-Z]/.test(w)) return { $atom: `Elixir.${w}` };
    return { $atom: w };
  };
  if (!source) fail("nothing");
  const result = value();
  space();
  if (i < source.length) fail("text after the term");
  return result;
}

// ------------------------------------------------------------------ stored sessions

const PAGE = 20;

function SessionList() {
  // `before` cursors of the pages seen, to go back (the API pages by start time).
  const [cursors, setCursors] = useState<(number | undefined)[]>([undefined]);
  const before = cursors[cursors.length - 1];
  const list = useApi(() => get<{ traces: TraceInfo[]; running: number }>("/traces", { limit: PAGE, before }), [before], 3000);
  const rows = list.data?.traces ?? [];
  return (
    <section class="panel sessions" aria-label="trace sessions">
      <div class="toolbar">
        <h3>Sessions</h3>
        {list.data && <span class="dim">{list.data.running} running</span>}
        <span class="spacer" />
        <button disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
          ‹ newer
        </button>
        <button disabled={rows.length < PAGE} onClick={() => setCursors([...cursors, rows[rows.length - 1].started_at])}>
          older ›
        </button>
      </div>
      {list.error !== null && <ErrorBox error={list.error} retry={list.reload} />}
      {!list.data && list.loading && <Loading />}
      {list.data && rows.length === 0 && <p class="dim">No trace sessions stored yet.</p>}
      {rows.length > 0 && (
        <table class="data">
          <thead>
            <tr>
              <th>id</th>
              <th>kind</th>
              <th>what</th>
              <th>started</th>
              <th>status</th>
              <th class="num">events</th>
              <th class="num">dropped</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((t) => (
              <tr key={t.id}>
                <td>
                  <a class="mono" href={`#/traces/${t.id}`}>
                    {t.id}
                  </a>
                </td>
                <td>{t.kind}</td>
                <td class="what" title={specText(t)}>
                  {specText(t)}
                </td>
                <td class="dim">{new Date(t.started_at * 1000).toLocaleTimeString()}</td>
                <td>
                  <Status trace={t} />
                </td>
                <td class="num">{count(t.events)}</td>
                <td class={t.dropped ? "num warn" : "num"}>{count(t.dropped)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function specText(t: TraceInfo): string {
  const s = t.spec ?? {};
  const list = (v: unknown) => (Array.isArray(v) ? v.join(", ") : String(v ?? ""));
  if (t.kind === "calls") return list(s.patterns) + (s.pids && s.pids !== "all" ? ` by ${list(s.pids)}` : "");
  if (t.kind === "messages") return list(s.pids);
  if (t.kind === "process") return String(s.pid ?? "");
  return JSON.stringify(s).slice(0, 80);
}

function Status({ trace }: { trace: TraceInfo }) {
  if (trace.status === "running") return <span class="ok status">● running</span>;
  const bad = trace.end_reason && !["stopped", "max_events", "max_ms"].includes(trace.end_reason);
  return <span class={bad ? "warn status" : "dim status"}>ended: {trace.end_reason ?? "?"}</span>;
}

// ------------------------------------------------------------------ one session

const LIVE_KEEP = 500; // events kept on screen while a session streams (the rest are stored)

function SessionView({ id }: { id: string }) {
  const lang = useLang();
  const [info, setInfo] = useState<TraceInfo | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [liveEvents, setLiveEvents] = useState<TraceEvent[]>([]);
  const [ended, setEnded] = useState<string | null>(null);
  const [streamDropped, setStreamDropped] = useState(0);
  const [recent, setRecent] = useState(0); // events of the last batch, for the pulse
  const [tab, setTab] = useState("events");
  const [stopping, setStopping] = useState(false);
  const running = info?.status === "running" && ended === null;

  // Load the session; while it runs, poll its counters (they are the truth; the stream may drop).
  const load = async () => {
    try {
      const data = await get<TraceResults>(`/traces/${id}`, { limit: 200 }, null);
      setInfo(data.trace);
      setError(null);
      return data;
    } catch (e) {
      setError(e);
      return null;
    }
  };

  useEffect(() => {
    let stop = false;
    let unsubscribe: (() => void) | null = null;
    const merge = (events: TraceEvent[]) =>
      setLiveEvents((old) => {
        const last = old.length ? old[old.length - 1].seq : 0;
        const fresh = events.filter((e) => e.seq > last);
        return fresh.length ? old.concat(fresh).slice(-LIVE_KEEP) : old;
      });
    const onMessage = (m: ServerMessage) => {
      if (m.type === "trace") {
        merge(m.data.events as TraceEvent[]);
        setRecent(m.data.events.length);
        setStreamDropped(m.data.dropped ?? 0);
      } else if (m.type === "trace_end") {
        setEnded(m.data.reason ?? "stopped");
        void load();
      } else if (m.type === "error") {
        // Not live any more (it ended between the load and the subscription): the store has it all.
        void load().then(() => setEnded((e) => e ?? "finished"));
      }
    };
    (async () => {
      const first = await load();
      if (stop || !first) return;
      if (first.trace.status === "running") {
        // Subscribe, then take what was stored meanwhile: seq numbers make the merge exact.
        unsubscribe = live.subscribe(`trace:${id}`, onMessage);
        merge(first.events);
        const again = await get<TraceResults>(`/traces/${id}`, { after: first.next_after ?? first.events[first.events.length - 1]?.seq ?? 0, limit: 1000 }, null).catch(() => null);
        if (again && !stop) merge(again.events);
      }
    })();
    return () => {
      stop = true;
      unsubscribe?.();
    };
  }, [id]);

  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(load, 2000);
    return () => window.clearInterval(timer);
  }, [running, id]);

  // Never loaded (Arsenal away, say): try again until it answers.
  const failed = info === null && error !== null;
  useEffect(() => {
    if (!failed) return;
    const timer = window.setInterval(load, 3000);
    return () => window.clearInterval(timer);
  }, [failed, id]);

  const stopTrace = async () => {
    setStopping(true);
    try {
      const done = await del<TraceInfo>(`/traces/${id}`, undefined, null);
      setInfo(done);
      setEnded(done.end_reason ?? "stopped");
    } catch (e) {
      setError(e);
    } finally {
      setStopping(false);
    }
  };

  if (!info) return error ? <ErrorBox error={error} retry={load} /> : <Loading what="loading the session" />;
  const shownInfo = ended !== null && info.status === "running" ? { ...info, status: "finished" as const, end_reason: info.end_reason ?? ended } : info;
  return (
    <div class="traces session">
      <div class="toolbar">
        <a href="#/traces">‹ sessions</a>
        <h2>
          {info.kind} trace <span class="mono">{info.id}</span>
        </h2>
        <Status trace={shownInfo} />
        <span class="dim">on {info.node}</span>
        <span class="spacer" />
        {running && may("write") && (
          <button class="danger" onClick={stopTrace} disabled={stopping}>
            {stopping ? "stopping …" : "Stop"}
          </button>
        )}
      </div>
      {error !== null && <ErrorBox error={error} retry={load} />}
      <div class="panel spec">
        <span class="dim">traces</span> <code>{specText(info)}</code>
      </div>
      <LimitsBar info={shownInfo} live={running} streamDropped={streamDropped} recent={recent} />
      <Tabs
        tabs={[
          ["events", "Events"],
          ["flow", "Who talks to whom"],
        ]}
        current={tab}
        onChange={setTab}
      />
      {tab === "events" &&
        (running ? <LiveEvents events={liveEvents} node={info.node} lang={lang} /> : <StoredEvents id={id} node={info.node} lang={lang} />)}
      {tab === "flow" && <SessionGraph id={id} info={info} liveEvents={running ? liveEvents : null} />}
    </div>
  );
}

function useLang(): "elixir" | "erlang" {
  const node = useCurrentNode();
  return node?.language === "erlang" ? "erlang" : "elixir";
}

/** Events so far against max_events, time left against the duration, and what was lost. */
function LimitsBar({ info, live, streamDropped, recent }: { info: TraceInfo; live: boolean; streamDropped: number; recent: number }) {
  const limits = (info.spec?.limits ?? {}) as Record<string, number>;
  const [now, setNow] = useState(Date.now() / 1000);
  useEffect(() => {
    if (!live) return;
    const timer = window.setInterval(() => setNow(Date.now() / 1000), 500);
    return () => window.clearInterval(timer);
  }, [live]);
  const max = limits.max_events ?? 0;
  const total = (limits.max_ms ?? 0) / 1000;
  const elapsed = (live ? now : (info.ended_at ?? now)) - info.started_at;
  const left = Math.max(0, total - elapsed);
  return (
    <div class="panel limits-bar" aria-label="limits">
      <div class="gauge">
        <span class="dim">events</span>
        <strong class="events-count" data-count={info.events}>
          {count(info.events)}
        </strong>
        <span class="dim">/ {count(max)}</span>
        <Meter share={max ? info.events / max : 0} />
      </div>
      <div class="gauge">
        <span class="dim">{live ? "time left" : "ran"}</span>
        <strong>{live ? `${left.toFixed(left < 10 ? 1 : 0)} s` : duration(Math.max(0, elapsed))}</strong>
        <span class="dim">/ {total ? `${total} s` : "—"}</span>
        <Meter share={total ? Math.min(1, elapsed / total) : 0} />
      </div>
      <div class="gauge">
        <span class="dim">rate limit</span>
        <strong>{count(limits.rate)}</strong>
        <span class="dim">per {(limits.rate_ms ?? 0) / 1000} s</span>
      </div>
      <div class="gauge">
        <span class="dim">dropped</span>
        <strong class={info.dropped ? "warn" : ""}>{count(info.dropped)}</strong>
        {streamDropped > 0 && <span class="warn">(+{count(streamDropped)} not shown here)</span>}
      </div>
      <div class="gauge">
        <span class="dim">truncated</span>
        <strong>{count(info.truncated)}</strong>
        <span class="dim">&gt; {count(limits.max_bytes)} B</span>
      </div>
      {live ? (
        <div class={recent ? "pulse on" : "pulse"} title="events arriving">
          ● live
        </div>
      ) : (
        <div class="gauge">
          <span class="dim">ended</span>
          <strong class="end-reason">{info.end_reason ?? "—"}</strong>
        </div>
      )}
    </div>
  );
}

function Meter({ share }: { share: number }) {
  const pct = Math.max(0, Math.min(1, share)) * 100;
  return (
    <span class="meter" role="meter" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100}>
      <span style={{ width: `${pct}%` }} class={pct > 90 ? "full" : ""} />
    </span>
  );
}

function LiveEvents({ events, node, lang }: { events: TraceEvent[]; node: string; lang: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [follow, setFollow] = useState(true);
  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [events, follow]);
  return (
    <section aria-label="events">
      <div class="toolbar">
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> follow
        </label>
        <span class="dim">the last {LIVE_KEEP} events show here while it runs; every event is stored</span>
      </div>
      <div class="events-box" ref={box}>
        {events.length === 0 ? <p class="dim waiting">waiting for events …</p> : <EventTable events={events} node={node} lang={lang} />}
      </div>
    </section>
  );
}

function StoredEvents({ id, node, lang }: { id: string; node: string; lang: string }) {
  const [afters, setAfters] = useState<number[]>([0]);
  const after = afters[afters.length - 1];
  const page = useApi(() => get<TraceResults>(`/traces/${id}`, { after, limit: 100 }, null), [id, after]);
  const events = page.data?.events ?? [];
  return (
    <section aria-label="events">
      <div class="toolbar">
        <button disabled={afters.length === 1} onClick={() => setAfters(afters.slice(0, -1))}>
          ‹ previous
        </button>
        <button disabled={page.data?.next_after == null} onClick={() => setAfters([...afters, page.data!.next_after!])}>
          next ›
        </button>
        {events.length > 0 && (
          <span class="dim">
            events {events[0].seq}–{events[events.length - 1].seq}
          </span>
        )}
        <span class="spacer" />
        <ExportButton id={id} />
      </div>
      {page.error !== null && <ErrorBox error={page.error} retry={page.reload} />}
      {!page.data && page.loading && <Loading />}
      {page.data && events.length === 0 && <p class="dim">No events were recorded.</p>}
      {events.length > 0 && (
        <div class="events-box">
          <EventTable events={events} node={node} lang={lang} />
        </div>
      )}
    </section>
  );
}

/** Every stored event as JSON lines (the export needs the key, so it is fetched, not linked). */
function ExportButton({ id }: { id: string }) {
  const [error, setError] = useState<string | null>(null);
  const download = async () => {
    setError(null);
    const response = await fetch(`/api/v1/traces/${id}/export`, { headers: { authorization: `Bearer ${session.value?.key ?? ""}` } }).catch(() => null);
    if (!response?.ok) return setError(`the export failed (${response ? response.status : "no answer"})`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `trace-${id}.jsonl`;
    link.click();
    window.setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  };
  return (
    <>
      {error && <span class="bad">{error}</span>}
      <button onClick={download} title="every stored event of the session, one JSON object a line">
        Export JSON lines
      </button>
    </>
  );
}

function EventTable({ events, node, lang }: { events: TraceEvent[]; node: string; lang: string }) {
  return (
    <table class="data events">
      <thead>
        <tr>
          <th class="num">#</th>
          <th>time</th>
          <th>process</th>
          <th>event</th>
          <th>detail</th>
        </tr>
      </thead>
      <tbody>
        {events.map((e) => (
          <tr key={e.seq} class={`ev-${e.kind}`}>
            <td class="num dim">{e.seq}</td>
            <td class="dim mono">{e.time.slice(11, 23)}</td>
            <td>
              <PidLink pid={e.pid} node={node} />
            </td>
            <td class="kind">{e.kind}</td>
            <td class="detail">
              <EventDetail event={e} node={node} lang={lang} />
              {e.truncated && <span class="warn"> (cut)</span>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function EventDetail({ event: e, node, lang }: { event: TraceEvent; node: string; lang: string }) {
  switch (e.kind) {
    case "call":
      return (
        <>
          <span class="mfa">{callHead(e.mfa ?? "", lang)}</span>
          <TermText text={`(${(e.args ?? []).join(", ")})`} node={node} />
          {e.caller && <span class="dim"> from {e.caller}</span>}
        </>
      );
    case "return_from":
      return (
        <>
          <span class="mfa">{e.mfa}</span> → <TermText text={e.result ?? ""} node={node} />
        </>
      );
    case "exception_from":
      return (
        <>
          <span class="mfa">{e.mfa}</span> <span class="bad">{e.class}</span> <TermText text={e.reason ?? ""} node={node} />
        </>
      );
    case "send":
    case "send_to_non_existing_process":
      return (
        <>
          <TermText text={e.message ?? ""} node={node} /> <span class="dim">→</span> <PidLink pid={e.to ?? ""} node={node} />
        </>
      );
    case "receive":
      return <TermText text={e.message ?? ""} node={node} />;
    case "exit":
      return <TermText text={e.reason ?? ""} node={node} />;
    case "spawn":
    case "spawned":
      return (
        <>
          <PidLink pid={e.other ?? ""} node={node} /> <TermText text={e.mfa ?? ""} node={node} />
        </>
      );
    case "register":
    case "unregister":
      return <TermText text={e.name ?? ""} node={node} />;
    default:
      return e.other ? <PidLink pid={e.other} node={node} /> : <TermText text={e.data ?? ""} node={node} />;
  }
}

/** `Mod.fun/2` → `Mod.fun` before the arguments (`mod:fun/2` → `mod:fun`). */
const callHead = (mfa: string, _lang: string) => mfa.replace(/\/\d+$/, "");

const PID = /(#PID)?<(\d+)\.(\d+)\.(\d+)>/g;
const CUT = 240; // characters of a term shown before "more": a row stays two or three lines

/** A term the API sent as text in the node's syntax: shown as a term, its local pids linked to
 *  their inspector, a long one cut with a way to see it all. */
export function TermText({ text, node }: { text: string; node?: string }) {
  const [all, setAll] = useState(false);
  const shown = all || text.length <= CUT + 40 ? text : text.slice(0, CUT);
  const parts: (string | preact.JSX.Element)[] = [];
  let at = 0;
  for (const m of shown.matchAll(PID)) {
    if (m.index! > at) parts.push(shown.slice(at, m.index));
    const pid = `<0.${m[3]}.${m[4]}>`;
    parts.push(
      m[2] === "0" ? (
        <a class="t-pid" href={inspectorHref(pid, node)} key={m.index}>
          {m[0]}
        </a>
      ) : (
        <span class="t-ref" key={m.index}>
          {m[0]}
        </span>
      ),
    );
    at = m.index! + m[0].length;
  }
  if (at < shown.length) parts.push(shown.slice(at));
  return (
    <code class="term">
      {parts}
      {shown !== text && (
        <button class="t-more" onClick={() => setAll(true)}>
          … {count(text.length - CUT)} more characters
        </button>
      )}
    </code>
  );
}

function PidLink({ pid, node }: { pid: string; node: string }) {
  const local = /^<0\.\d+\.\d+>$/.test(pid);
  const named = /^[:A-Za-z]/.test(pid);
  if (!local && !named) return <code class="mono">{pid}</code>;
  return (
    <a class="mono pid" href={inspectorHref(pid, node)}>
      {pid}
    </a>
  );
}

// ------------------------------------------------------------------ who talks to whom

interface GNode {
  id: string;
  label: string;
  role?: string;
  alive?: boolean;
}
interface GPair {
  source: string;
  target: string;
  count: number;
}
interface Graph {
  nodes: GNode[];
  pairs: GPair[];
}

/** Pairs counted from send events (a receive says not who sent it). */
function graphOfEvents(events: TraceEvent[]): Graph {
  const counts = new Map<string, GPair>();
  const seen = new Map<string, GNode>();
  for (const e of events) {
    if ((e.kind !== "send" && e.kind !== "send_to_non_existing_process") || !e.to) continue;
    const key = `${e.pid}\u0000${e.to}`;
    const pair = counts.get(key) ?? { source: e.pid, target: e.to, count: 0 };
    pair.count++;
    counts.set(key, pair);
    for (const id of [e.pid, e.to]) if (!seen.has(id)) seen.set(id, { id, label: aliasLabel(id) });
  }
  return { nodes: [...seen.values()], pairs: [...counts.values()] };
}

/** A reply to a process alias (OTP 24's GenServer.call) is sent to a reference, not a pid. */
const aliasLabel = (id: string) => (id.startsWith("#Ref") ? "reply alias" : id);

function graphOfFlow(flow: MessageFlow): Graph {
  const nodes: GNode[] = flow.nodes.map((n) => ({
    id: n.id,
    label: n.role === "origin" ? "origin (Arsenal)" : (n.name ?? n.id),
    role: n.role,
    alive: n.alive,
  }));
  const byName = new Map(flow.nodes.filter((n) => n.name).map((n) => [n.name!, n.id]));
  const ids = new Set(nodes.map((n) => n.id));
  const counts = new Map<string, GPair>();
  for (const e of flow.edges) {
    // A message sent to a name names its receiver by that name: find the process of the name.
    const target = ids.has(e.target) ? e.target : (byName.get(e.target) ?? e.target);
    // A reply to a process alias (OTP 24's GenServer.call) is sent to a reference, not a pid.
    if (!ids.has(target)) nodes.push({ id: target, label: aliasLabel(target) }), ids.add(target);
    const key = `${e.source}\u0000${target}`;
    const pair = counts.get(key) ?? { source: e.source, target, count: 0 };
    pair.count++;
    counts.set(key, pair);
  }
  return { nodes, pairs: [...counts.values()] };
}

function graphOfPatterns(p: MessagePatterns): Graph {
  const seen = new Map<string, GNode>();
  const add = (id: string, name: string | null) => {
    if (!seen.has(id)) seen.set(id, { id, label: name ?? id });
  };
  p.pairs.forEach((r) => (add(r.source, r.source_name), add(r.target, r.target_name)));
  return { nodes: [...seen.values()], pairs: p.pairs.map((r) => ({ source: r.source, target: r.target, count: r.count })) };
}

const MAX_NODES = 24; // the busiest processes drawn; the rest are counted in "others"

/** The busiest nodes (by messages sent and received), at most MAX_NODES. */
function busiest(graph: Graph): Graph {
  if (graph.nodes.length <= MAX_NODES) return graph;
  const weight = new Map<string, number>();
  graph.pairs.forEach((p) => {
    weight.set(p.source, (weight.get(p.source) ?? 0) + p.count);
    weight.set(p.target, (weight.get(p.target) ?? 0) + p.count);
  });
  const keep = new Set(
    [...graph.nodes]
      .sort((a, b) => (weight.get(b.id) ?? 0) - (weight.get(a.id) ?? 0))
      .slice(0, MAX_NODES)
      .map((n) => n.id),
  );
  return { nodes: graph.nodes.filter((n) => keep.has(n.id)), pairs: graph.pairs.filter((p) => keep.has(p.source) && keep.has(p.target)) };
}

function SessionGraph({ id, info, liveEvents }: { id: string; info: TraceInfo; liveEvents: TraceEvent[] | null }) {
  // A finished session: its first 1000 events (one bounded page) make the picture.
  const stored = useApi(() => (liveEvents ? Promise.resolve(null) : get<TraceResults>(`/traces/${id}`, { limit: 1000 }, null)), [id, liveEvents === null]);
  const events = liveEvents ?? stored.data?.events ?? [];
  const graph = useMemo(() => graphOfEvents(events), [events]);
  if (info.kind !== "messages" && info.kind !== "process")
    return <p class="dim">Who talks to whom is drawn from message events: start a messages trace, a message flow or message patterns.</p>;
  if (stored.error) return <ErrorBox error={stored.error} retry={stored.reload} />;
  const recent = liveEvents ? new Set(graphOfEvents(liveEvents.slice(-20)).pairs.map((p) => `${p.source}\u0000${p.target}`)) : undefined;
  return (
    <div>
      <p class="dim">
        From {liveEvents ? `the last ${count(events.length)} events shown` : `the first ${count(events.length)} stored events`}: sends only (a receive does
        not say who sent it).
      </p>
      <GraphAndHeat graph={graph} node={info.node} recent={recent} />
    </div>
  );
}

function AnalysisView({ analysis }: { analysis: Analysis }) {
  const node = analysis.data.node;
  if (analysis.kind === "flow") {
    const flow = analysis.data;
    return (
      <section class="panel analysis" aria-label="message flow">
        <div class="toolbar">
          <h3>Message flow into {flow.nodes.find((n) => n.role === "target")?.name ?? flow.target}</h3>
          <span class="dim">
            {count(flow.edges.length)} messages, {count(flow.nodes.length)} processes, depth {flow.max_depth}, {flow.duration_ms} ms, ended: {flow.end_reason}
            {flow.truncated ? `, ${flow.truncated} cut` : ""}
          </span>
        </div>
        <GraphAndHeat graph={graphOfFlow(flow)} node={node} flow={flow} />
      </section>
    );
  }
  const p = analysis.data;
  return (
    <section class="panel analysis" aria-label="message patterns">
      <div class="toolbar">
        <h3>Message patterns</h3>
        <span class="dim">
          {count(p.messages)} messages in {p.duration_ms} ms, {count(p.distinct_pairs)} pairs, {count(p.distinct_shapes)} shapes, ended: {p.end_reason}
          {p.dropped ? `, ${count(p.dropped)} dropped` : ""}
          {p.undelivered ? `, ${count(p.undelivered)} undelivered` : ""}
        </span>
      </div>
      <GraphAndHeat graph={graphOfPatterns(p)} node={node} />
      {p.shapes.length > 0 && (
        <table class="data shapes">
          <thead>
            <tr>
              <th>shape</th>
              <th class="num">count</th>
              <th class="num">senders</th>
              <th>example</th>
            </tr>
          </thead>
          <tbody>
            {p.shapes.slice(0, 15).map((s) => (
              <tr key={s.shape}>
                <td>
                  <code>{s.shape}</code>
                </td>
                <td class="num">{count(s.count)}</td>
                <td class="num">{count(s.senders)}</td>
                <td class="detail">
                  <TermText text={s.example} node={node} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function GraphAndHeat({ graph, node, flow, recent }: { graph: Graph; node: string; flow?: MessageFlow; recent?: Set<string> }) {
  const shown = busiest(graph);
  // The replay's position in a flow's messages (null: not replaying), shared by graph and list.
  const [step, setStep] = useState<number | null>(null);
  useEffect(() => setStep(null), [flow]);
  useEffect(() => {
    if (step === null || !flow) return;
    if (step >= flow.edges.length) return void setStep(null);
    const timer = window.setTimeout(() => setStep(step + 1), 600);
    return () => window.clearTimeout(timer);
  }, [step, flow]);
  if (shown.pairs.length === 0) return <p class="dim">No messages between processes were seen.</p>;
  return (
    <>
      <div class="who-talks">
        <FlowGraph graph={shown} node={node} flow={flow} recent={recent} step={step} onReplay={() => setStep(0)} />
        <HeatMap graph={shown} node={node} />
      </div>
      {flow && <FlowEdges flow={flow} node={node} current={step} />}
    </>
  );
}

// ------------------------------------------------------------------ the graph (SVG)

const W = 640;
const H = 380;

function FlowGraph({
  graph,
  node,
  flow,
  recent,
  step,
  onReplay,
}: {
  graph: Graph;
  node: string;
  flow?: MessageFlow;
  recent?: Set<string>;
  step: number | null;
  onReplay: () => void;
}) {
  // Processes on a circle, in the order they first appear (a flow's order is causal).
  const n = graph.nodes.length;
  // An ellipse, wider than high: labels go beside the nodes on the sides, above and below at the poles.
  const rx = W / 2 - 170;
  const ry = H / 2 - 40;
  const pos = new Map(
    graph.nodes.map((g, i) => {
      const angle = -Math.PI / 2 + (2 * Math.PI * i) / n;
      return [g.id, { x: W / 2 + rx * Math.cos(angle), y: H / 2 + ry * Math.sin(angle), angle }];
    }),
  );
  const maxCount = Math.max(1, ...graph.pairs.map((p) => p.count));
  const width = (c: number) => 1.2 + (5 * Math.log(1 + c)) / Math.log(1 + maxCount);
  const current = flow && step !== null ? flow.edges[step] : null;
  const currentKey = current ? `${current.source}\u0000${graphOfFlowTarget(flow!, current)}` : null;

  const path = (p: GPair) => {
    const a = pos.get(p.source)!;
    const b = pos.get(p.target)!;
    if (p.source === p.target) {
      // A message to itself: a small loop outside the circle.
      const ox = Math.cos(a.angle) * 34;
      const oy = Math.sin(a.angle) * 34;
      return `M ${a.x} ${a.y} C ${a.x + ox - oy} ${a.y + oy + ox} ${a.x + ox + oy} ${a.y + oy - ox} ${a.x} ${a.y}`;
    }
    // Bend each arrow to its right so A→B and B→A do not overlap; stop short of the node.
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    const ux = dx / len;
    const uy = dy / len;
    const sx = a.x + ux * 14;
    const sy = a.y + uy * 14;
    const ex = b.x - ux * 16;
    const ey = b.y - uy * 16;
    const bend = Math.min(40, len / 5);
    const cx = (sx + ex) / 2 - uy * bend;
    const cy = (sy + ey) / 2 + ux * bend;
    return `M ${sx} ${sy} Q ${cx} ${cy} ${ex} ${ey}`;
  };

  return (
    <figure class="flow-graph">
      <svg viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label="process graph">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="5" markerHeight="5" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#7fb4ff" />
          </marker>
          <marker id="arrow-hot" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="5" markerHeight="5" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#e0a526" />
          </marker>
        </defs>
        {graph.pairs.map((p) => {
          const key = `${p.source}\u0000${p.target}`;
          const hot = key === currentKey || recent?.has(key);
          const d = path(p);
          return (
            <g key={key} class={hot ? "edge hot" : "edge"}>
              <path d={d} stroke-width={width(p.count)} marker-end={hot ? "url(#arrow-hot)" : "url(#arrow)"}>
                <title>
                  {p.source} → {p.target}: {p.count} message{p.count === 1 ? "" : "s"}
                </title>
              </path>
              {key === currentKey && (
                <circle r="5" class="token" key={step}>
                  <animateMotion dur="0.5s" fill="freeze" {...({ path: d } as Record<string, string>)} />
                </circle>
              )}
            </g>
          );
        })}
        {graph.nodes.map((g) => {
          const p = pos.get(g.id)!;
          const cos = Math.cos(p.angle);
          const pole = Math.abs(cos) < 0.3;
          const anchor = pole ? "middle" : cos > 0 ? "start" : "end";
          const tx = pole ? 0 : cos > 0 ? 13 : -13;
          const ty = pole ? (Math.sin(p.angle) > 0 ? 24 : -15) : 4;
          const linkable = /^<0\.\d+\.\d+>$/.test(g.id) && g.role !== "origin";
          const body = (
            <>
              <circle r="9" class={`node ${g.role ?? ""} ${g.alive === false ? "dead" : ""}`} />
              <text x={tx} y={ty} text-anchor={anchor}>
                {g.label.length > 20 ? g.label.slice(0, 19) + "…" : g.label}
              </text>
              <title>
                {g.label}
                {g.label !== g.id ? ` (${g.id})` : ""}
                {linkable ? ": open its inspector" : ""}
              </title>
            </>
          );
          return (
            <g key={g.id} class="gnode" transform={`translate(${p.x} ${p.y})`} data-pid={g.id}>
              {linkable ? <a href={inspectorHref(g.id, node)}>{body}</a> : body}
            </g>
          );
        })}
      </svg>
      <figcaption class="dim">thicker arrow: more messages; click a process to inspect it</figcaption>
      {flow && (
        <div class="replay">
          <button onClick={onReplay} disabled={step !== null}>
            ▶ Replay the messages
          </button>
          {current && (
            <span class="step">
              <span class="dim">
                #{current.index + 1} depth {current.depth}:
              </span>{" "}
              <TermText text={current.message} node={node} />
            </span>
          )}
        </div>
      )}
    </figure>
  );
}

function graphOfFlowTarget(flow: MessageFlow, edge: FlowEdge): string {
  const ids = new Set(flow.nodes.map((n) => n.id));
  if (ids.has(edge.target)) return edge.target;
  return flow.nodes.find((n) => n.name === edge.target)?.id ?? edge.target;
}

function FlowEdges({ flow, node, current }: { flow: MessageFlow; node: string; current: number | null }) {
  const label = (id: string) => {
    const n = flow.nodes.find((x) => x.id === id);
    return n?.role === "origin" ? "origin" : (n?.name ?? id);
  };
  return (
    <div class="events-box flow-edges">
      <table class="data">
        <thead>
          <tr>
            <th class="num">#</th>
            <th class="num">depth</th>
            <th>from</th>
            <th>to</th>
            <th>message</th>
          </tr>
        </thead>
        <tbody>
          {flow.edges.slice(0, 300).map((e) => (
            <tr key={e.index} class={e.index === current ? "current" : ""}>
              <td class="num dim">{e.index + 1}</td>
              <td class="num">{e.depth}</td>
              <td class="mono">{label(e.source)}</td>
              <td class="mono">{e.target_name ?? label(e.target)}</td>
              <td class="detail">
                <TermText text={e.message} node={node} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

// ------------------------------------------------------------------ the heat map

function HeatMap({ graph, node }: { graph: Graph; node: string }) {
  // Rows send, columns receive; only processes that send (rows) or receive (columns) appear.
  const senders = graph.nodes.filter((g) => graph.pairs.some((p) => p.source === g.id));
  const receivers = graph.nodes.filter((g) => graph.pairs.some((p) => p.target === g.id));
  const cell = new Map(graph.pairs.map((p) => [`${p.source}\u0000${p.target}`, p.count]));
  const max = Math.max(1, ...graph.pairs.map((p) => p.count));
  const colour = (c: number) => {
    // Log scale: one message is visible, the busiest pair is full.
    const t = Math.log(1 + c) / Math.log(1 + max);
    return `hsl(${45 - 40 * t} 85% ${18 + 42 * t}%)`;
  };
  const short = (g: GNode) => (g.label.length > 22 ? g.label.slice(0, 21) + "…" : g.label);
  return (
    <figure class="heat-map">
      <table aria-label="heat map">
        <thead>
          <tr>
            <th class="corner dim">from ↓ to →</th>
            {receivers.map((r) => (
              <th key={r.id} class="col" title={`${r.label} (${r.id})`}>
                <span>{short(r)}</span>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {senders.map((s) => (
            <tr key={s.id}>
              <th class="row-head" title={`${s.label} (${s.id})`}>
                {/^<0\.\d+\.\d+>$/.test(s.id) && s.role !== "origin" ? <a href={inspectorHref(s.id, node)}>{short(s)}</a> : short(s)}
              </th>
              {receivers.map((r) => {
                const c = cell.get(`${s.id}\u0000${r.id}`) ?? 0;
                return (
                  <td
                    key={r.id}
                    class={c ? "cell hot" : "cell"}
                    style={c ? { background: colour(c) } : undefined}
                    title={`${s.label} → ${r.label}: ${c}`}
                  >
                    {c || ""}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
      <figcaption class="dim">
        messages from a row's process to a column's; colour: <span class="scale" /> 1 to {count(max)}
      </figcaption>
    </figure>
  );
}
