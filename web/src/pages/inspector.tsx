// The process inspector (#/process/<pid or name>): a header with what the process is and does,
// actions by the session's rights, and tabs for its info, state (viewable and editable), mailbox,
// links, dictionary, stack, live memory/queue charts, a short trace and its history.
// A process that dies while shown keeps its last data on screen under a "process exited" notice.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import type { ComponentChildren } from "preact";
import uPlot from "uplot";
import { ApiError, del, get, pidPath, post, put } from "../api";
import { Confirm, ErrorBox, Loading, Tabs, useApi } from "../components";
import { bytes, count } from "../format";
import { useCurrentNode, useLang } from "../nodes";
import { may, session, useStore } from "../session";
import { inspectorHref, Term, type Lang } from "../term";
import { hasOpaque, termSource } from "../termsource";
import { live, type ServerMessage } from "../ws";
import "./inspector.css";

// ------------------------------------------------------------------ API shapes

type Plain = unknown; // plain JSON from the API: atoms and pids already written as text

interface InfoResult {
  pid: string;
  info: Record<string, Plain>;
}

interface StateResult {
  pid: string;
  behaviour: string | null;
  state: string;
  state_json: unknown;
  size: number;
  whole: boolean;
}

interface SetStateResult {
  pid: string;
  module: string | null;
  merge_strategy: string;
  old_state: string;
  new_state: string;
  backup: string;
  changes: { path: (string | number)[]; kind: string; old: string | null; new: string | null }[];
}

interface MessagesResult {
  pid: string;
  message_queue_len: number;
  messages: { value: Plain; source: string }[];
}

interface TraceInfo {
  id: string;
  status: string;
  end_reason: string | null;
  events: number;
  dropped: number;
  truncated: number;
  spec: Record<string, unknown>;
}

interface TraceEvent {
  seq: number;
  time: string;
  time_us: number;
  kind: string;
  pid: string;
  [field: string]: unknown;
}

interface HistoryResult {
  node: string;
  pid: string;
  events: ({ source: string; time_us?: number } & Record<string, unknown>)[];
}

interface LiveInfo {
  memory?: number;
  message_queue_len?: number;
  reductions?: number;
  status?: string;
  current_function?: string | null;
}

// ------------------------------------------------------------------ small hooks

const isNotFound = (error: unknown) => error instanceof ApiError && error.code === "not_found";

// ------------------------------------------------------------------ live samples

const MAX_SAMPLES = 600; // 10 minutes at one a second

interface Samples {
  t: number[];
  memory: number[];
  queue: number[];
}

/** The process:<pid> channel: the latest figures, a bounded series for the charts, and its exit. */
function useLiveProcess(pid: string, node: string | null, onExit: (reason: string) => void) {
  const samples = useRef<Samples>({ t: [], memory: [], queue: [] });
  const [latest, setLatest] = useState<LiveInfo | null>(null);
  const [version, setVersion] = useState(0);
  const last = useRef<LiveInfo | null>(null);
  const ended = useRef(false);
  const exitRef = useRef(onExit);
  exitRef.current = onExit;

  const push = (info: LiveInfo) => {
    const s = samples.current;
    s.t.push(Date.now() / 1000);
    s.memory.push(info.memory ?? NaN);
    s.queue.push(info.message_queue_len ?? NaN);
    if (s.t.length > MAX_SAMPLES) {
      s.t.shift();
      s.memory.shift();
      s.queue.shift();
    }
    setVersion((v) => v + 1);
  };

  useEffect(() => {
    if (!pid) return;
    let unsubscribe: (() => void) | null = null;
    const handler = (message: ServerMessage) => {
      if (message.type === "update" && message.data?.info) {
        last.current = message.data.info as LiveInfo;
        setLatest(last.current);
        push(last.current);
      } else if (message.type === "exit") {
        ended.current = true;
        exitRef.current(message.data?.reason ?? "unknown reason");
        unsubscribe?.();
        unsubscribe = null;
      }
    };
    unsubscribe = live.subscribe(`process:${pid}`, handler, { interval: 1, ...(node ? { node } : {}) });
    // The channel pushes only on change: an idle process still gets a point a second, so the
    // charts move with time rather than stretch between changes.
    const timer = window.setInterval(() => {
      const s = samples.current;
      if (!ended.current && last.current && (s.t.length === 0 || Date.now() / 1000 - s.t[s.t.length - 1] >= 0.9))
        push(last.current);
    }, 1000);
    return () => {
      window.clearInterval(timer);
      unsubscribe?.();
    };
  }, [pid, node]);
  return { latest, samples: samples.current, version };
}

// ------------------------------------------------------------------ the page

const TABS: [string, string][] = [
  ["info", "Info"],
  ["state", "State"],
  ["mailbox", "Mailbox"],
  ["links", "Links & monitors"],
  ["dictionary", "Dictionary"],
  ["stack", "Stacktrace"],
  ["charts", "Memory & queue"],
  ["trace", "Trace"],
  ["history", "History"],
];

export function InspectorPage({ pid }: { pid: string }) {
  const node = useCurrentNode();
  const nodeName = node?.name ?? null;
  const lang = useLang();
  useStore(session); // rights may change (log out, another key)
  const [tab, setTab] = useState("info");
  const [exited, setExited] = useState<string | null>(null);
  // After the first answer, everything asks for the pid it resolved to: a name that a restarted
  // process takes over must not silently switch the page to another process.
  const [target, setTarget] = useState(pid);
  const info = useApi(() => get<InfoResult>(`/processes/${pidPath(target)}`), [target], exited ? 0 : 5000, true);
  useEffect(() => {
    if (info.data && info.data.pid !== target) setTarget(info.data.pid);
  }, [info.data]);
  const onExit = useCallback((reason: string) => setExited(reason), []);
  const liveProcess = useLiveProcess(pid, nodeName, onExit);
  const trace = useTraceSession(target, nodeName);

  if (!pid) return <ErrorBox error={new ApiError("validation_error", 422, "no pid in the address: #/process/<0.123.0> or #/process/<registered name>")} />;
  if (!info.data) {
    return (
      <section class="inspector">
        <h2 class="mono">{pid}</h2>
        {info.error ? <ErrorBox error={info.error} retry={info.reload} /> : <Loading what={`reading ${pid}`} />}
      </section>
    );
  }
  // A process found once and now not found has gone, whether or not the channel said so yet.
  const gone = exited ?? (isNotFound(info.error) ? "it is no longer alive" : null);
  return (
    <section class="inspector">
      <Header
        pid={info.data.pid}
        asked={pid}
        info={info.data.info}
        live={gone ? null : liveProcess.latest}
        gone={gone}
        lang={lang}
        onChanged={info.reload}
        onKilled={(reason) => setExited((r) => r ?? reason)}
      />
      {gone && (
        <div class="notice exited" role="status">
          process exited: <strong>{gone}</strong>. What is shown is what was last read.
        </div>
      )}
      {!gone && info.error !== null && <ErrorBox error={info.error} retry={info.reload} />}
      <Tabs tabs={TABS} current={tab} onChange={setTab} />
      <div class="inspector-body" role="tabpanel" aria-label={TABS.find(([id]) => id === tab)?.[1]}>
        {tab === "info" && <InfoTab info={info.data.info} />}
        {tab === "state" && <StateTab pid={target} lang={lang} gone={gone} />}
        {tab === "mailbox" && <MailboxTab pid={target} gone={gone} />}
        {tab === "links" && <LinksTab info={info.data.info} node={nodeName} />}
        {tab === "dictionary" && <DictionaryTab info={info.data.info} node={nodeName} />}
        {tab === "stack" && <StackTab info={info.data.info} lang={lang} />}
        {tab === "charts" && <ChartsTab samples={liveProcess.samples} version={liveProcess.version} gone={gone} />}
        {tab === "trace" && <TraceTab session={trace} gone={gone} />}
        {tab === "history" && <HistoryTab pid={target} />}
      </div>
    </section>
  );
}

// ------------------------------------------------------------------ header and actions

function Header({
  pid,
  asked,
  info,
  live,
  gone,
  lang,
  onChanged,
  onKilled,
}: {
  pid: string;
  asked: string;
  info: Record<string, Plain>;
  live: LiveInfo | null;
  gone: string | null;
  lang: Lang;
  onChanged: () => void;
  onKilled: (reason: string) => void;
}) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [confirmKill, setConfirmKill] = useState(false);
  const status = String(live?.status ?? info.status ?? "—").replace(/^:/, "");
  const memory = (live?.memory ?? info.memory) as number | undefined;
  const queue = (live?.message_queue_len ?? info.message_queue_len) as number | undefined;
  const current = (live?.current_function ?? info.current_function) as string | null | undefined;
  const name = info.registered_name as string | null | undefined;

  const run = async (label: string, fn: () => Promise<string>) => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      setResult(`${label}: ${await fn()}`);
      onChanged();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const path = `/processes/${pidPath(pid)}`;
  const suspend = () => run("suspend", async () => (await post<{ status: string }>(`${path}/suspend`)).status.replace(/_/g, " "));
  const resume = () => run("resume", async () => (await post<{ status: string }>(`${path}/resume`)).status.replace(/_/g, " "));
  const gc = () =>
    run("garbage collection", async () => {
      const r = await post<{ memory_before: number; memory_after: number }>(`${path}/gc`);
      return `${bytes(r.memory_before)} → ${bytes(r.memory_after)}`;
    });
  const kill = () => {
    setConfirmKill(false);
    run("kill", async () => {
      const r = await del<{ died: boolean; exit_reason: string | null }>(path, { reason: "kill" });
      if (r.died) onKilled(r.exit_reason ?? "killed");
      return r.died ? `exited (${r.exit_reason ?? "killed"})` : "still alive after the signal";
    });
  };

  return (
    <header class="inspector-head panel">
      <div class="ident">
        <h2>
          <span class="mono">{pid}</span>
          {name && <span class="name mono">{name}</span>}
          {asked !== pid && asked !== name && <span class="dim"> (asked as {asked})</span>}
        </h2>
        <dl class="facts">
          <div>
            <dt>initial call</dt>
            <dd class="mono">{String(info.initial_call ?? "—")}</dd>
          </div>
          <div>
            <dt>current function</dt>
            <dd class="mono">{current ?? "—"}</dd>
          </div>
          <div>
            <dt>status</dt>
            <dd class={gone ? "bad" : status === "suspended" ? "warn" : ""} data-testid="status">
              {gone ? "exited" : status}
            </dd>
          </div>
          <div>
            <dt>memory</dt>
            <dd class="num">{bytes(memory)}</dd>
          </div>
          <div>
            <dt>queue</dt>
            <dd class={`num ${(queue ?? 0) > 1000 ? "warn" : ""}`}>{count(queue)}</dd>
          </div>
          <div>
            <dt>reductions</dt>
            <dd class="num">{count((live?.reductions ?? info.reductions) as number | undefined)}</dd>
          </div>
        </dl>
      </div>
      {!gone && (may("write") || may("destructive")) && (
        <div class="actions" aria-label="process actions">
          {may("write") && (
            <>
              {status === "suspended" ? (
                <button disabled={busy} onClick={resume}>Resume</button>
              ) : (
                <button disabled={busy} onClick={suspend} title="erlang:suspend_process/1 until resumed">Suspend</button>
              )}
              <button disabled={busy} onClick={gc} title="a full garbage collection of this process">GC</button>
            </>
          )}
          {may("destructive") && (
            <button class="danger" disabled={busy} onClick={() => setConfirmKill(true)}>
              Kill
            </button>
          )}
        </div>
      )}
      {(result || error !== null) && (
        <div class="action-result">
          {result && <span class="ok" role="status">{result}</span>}
          {error !== null && <ErrorBox error={error} />}
        </div>
      )}
      {confirmKill && (
        <Confirm title={`Kill ${name ?? pid}?`} confirm="Kill" onConfirm={kill} onCancel={() => setConfirmKill(false)}>
          <p>
            Sends <code>exit({lang === "elixir" ? `#PID${pid}` : pid}, kill)</code>: its state is lost, linked processes die
            unless they trap exits, and its supervisor (if any) restarts it.
          </p>
        </Confirm>
      )}
    </header>
  );
}

// ------------------------------------------------------------------ plain values (info fields)

const PID_TEXT = /^(?:#PID)?(<\d+\.\d+\.\d+>)$/;

/** A plain-JSON value from process_info: text as the node writes it, pids linked. Bounded. */
function PlainView({ value, node, depth = 0 }: { value: Plain; node?: string | null; depth?: number }): any {
  const [all, setAll] = useState(false);
  if (value === null || value === undefined) return <span class="dim">—</span>;
  if (typeof value === "string") {
    const pid = PID_TEXT.exec(value);
    if (pid) return <a class="t-pid mono" href={inspectorHref(pid[1], node)}>{value}</a>;
    return <span class="mono">{value}</span>;
  }
  if (typeof value === "number" || typeof value === "boolean") return <span class="mono t-num">{String(value)}</span>;
  if (depth > 12) return <span class="dim">…</span>;
  const LIMIT = 50;
  if (Array.isArray(value)) {
    const shown = all ? value : value.slice(0, LIMIT);
    return (
      <span class="mono">
        [
        {shown.map((v, i) => (
          <span key={i}>
            <PlainView value={v} node={node} depth={depth + 1} />
            {i < value.length - 1 ? ", " : ""}
          </span>
        ))}
        {value.length > shown.length && (
          <button class="t-more" onClick={() => setAll(true)}>… {value.length - shown.length} more</button>
        )}
        ]
      </span>
    );
  }
  const entries = Object.entries(value as Record<string, Plain>);
  const shown = all ? entries : entries.slice(0, LIMIT);
  return (
    <span class="mono">
      {"{"}
      {shown.map(([k, v], i) => (
        <span key={k}>
          {k}: <PlainView value={v} node={node} depth={depth + 1} />
          {i < entries.length - 1 ? ", " : ""}
        </span>
      ))}
      {entries.length > shown.length && (
        <button class="t-more" onClick={() => setAll(true)}>… {entries.length - shown.length} more</button>
      )}
      {"}"}
    </span>
  );
}

const OWN_TABS = new Set(["dictionary", "current_stacktrace", "links", "monitors", "monitored_by"]);
const BYTE_FIELDS = new Set(["memory"]);

function InfoTab({ info }: { info: Record<string, Plain> }) {
  const node = useCurrentNode()?.name ?? null;
  const rows = Object.entries(info).filter(([k]) => !OWN_TABS.has(k));
  rows.sort(([a], [b]) => a.localeCompare(b));
  return (
    <table class="data kv">
      <tbody>
        {rows.map(([k, v]) => (
          <tr key={k}>
            <th scope="row">{k.replace(/_/g, " ")}</th>
            <td class="wrap">
              {BYTE_FIELDS.has(k) && typeof v === "number" ? (
                <span title={`${count(v)} bytes`}>{bytes(v)}</span>
              ) : (
                <PlainView value={v} node={node} />
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function PidList({ title, items, node }: { title: string; items: Plain; node: string | null }) {
  const list = Array.isArray(items) ? items : [];
  return (
    <div class="panel">
      <h3>
        {title} <span class="dim">({list.length})</span>
      </h3>
      {list.length === 0 ? (
        <div class="dim">none</div>
      ) : (
        <ul class="pids">
          {list.slice(0, 500).map((item, i) => (
            <li key={i}>
              <PlainView value={item} node={node} />
            </li>
          ))}
          {list.length > 500 && <li class="dim">… {list.length - 500} more not shown</li>}
        </ul>
      )}
    </div>
  );
}

function dictionaryEntry(info: Record<string, Plain>, key: string): Plain {
  const dict = Array.isArray(info.dictionary) ? info.dictionary : [];
  const found = dict.find((pair) => Array.isArray(pair) && typeof pair[0] === "string" && pair[0].includes(key));
  return Array.isArray(found) ? found[1] : null;
}

function LinksTab({ info, node }: { info: Record<string, Plain>; node: string | null }) {
  const ancestors = dictionaryEntry(info, "$ancestors");
  return (
    <div class="grid links-grid">
      <PidList title="Links" items={info.links} node={node} />
      <PidList title="Monitors (it monitors)" items={info.monitors} node={node} />
      <PidList title="Monitored by" items={info.monitored_by} node={node} />
      <div class="panel">
        <h3>Parents</h3>
        <dl class="plain-dl">
          <dt>group leader</dt>
          <dd><PlainView value={info.group_leader} node={node} /></dd>
          <dt>ancestors</dt>
          <dd>
            {Array.isArray(ancestors) && ancestors.length ? (
              <ol class="ancestors">
                {/* a registered name (its supervisor, usually) opens like a pid */}
                {ancestors.map((a, i) => (
                  <li key={i}>
                    {typeof a === "string" && !PID_TEXT.test(a) ? (
                      <a class="mono" href={inspectorHref(a, node)}>{a}</a>
                    ) : (
                      <PlainView value={a} node={node} />
                    )}
                  </li>
                ))}
              </ol>
            ) : (
              <span class="dim">— (not started by proc_lib)</span>
            )}
          </dd>
        </dl>
      </div>
    </div>
  );
}

function DictionaryTab({ info, node }: { info: Record<string, Plain>; node: string | null }) {
  const dict = Array.isArray(info.dictionary) ? info.dictionary : [];
  if (dict.length === 0) return <div class="dim">The process dictionary is empty.</div>;
  return (
    <table class="data kv">
      <thead>
        <tr>
          <th>key</th>
          <th>value</th>
        </tr>
      </thead>
      <tbody>
        {dict.slice(0, 1000).map((pair, i) => {
          const [k, v] = Array.isArray(pair) ? pair : [pair, null];
          return (
            <tr key={i}>
              <td class="mono">{typeof k === "string" ? k : <PlainView value={k} node={node} />}</td>
              <td class="wrap">
                <PlainView value={v} node={node} />
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** A charlist from plain JSON ([103, 101, ...]) as text; anything else as it is. */
const charlist = (v: Plain): string =>
  Array.isArray(v) && v.every((c) => typeof c === "number") ? String.fromCharCode(...(v as number[])) : String(v ?? "");

function frameText(frame: Plain, lang: Lang): { fn: string; where: string } {
  if (!Array.isArray(frame) || frame.length < 3) return { fn: JSON.stringify(frame), where: "" };
  const [mod, fun, arity, location] = frame;
  const m = String(mod);
  const f = String(fun).replace(/^:/, "");
  const a = Array.isArray(arity) ? arity.length : arity;
  const fn = lang === "elixir" ? `${m}.${f}/${a}` : `${m}:${f}/${a}`;
  let file = "";
  let line = "";
  if (Array.isArray(location))
    for (const pair of location) {
      if (!Array.isArray(pair)) continue;
      const key = String(pair[0]).replace(/^:/, "");
      if (key === "file") file = charlist(pair[1]);
      if (key === "line") line = String(pair[1]);
    }
  return { fn, where: file ? `${file}${line ? `:${line}` : ""}` : "" };
}

function StackTab({ info, lang }: { info: Record<string, Plain>; lang: Lang }) {
  const frames = Array.isArray(info.current_stacktrace) ? info.current_stacktrace : [];
  if (frames.length === 0) return <div class="dim">No stacktrace.</div>;
  return (
    <table class="data stack">
      <thead>
        <tr>
          <th class="num">#</th>
          <th>function</th>
          <th>location</th>
        </tr>
      </thead>
      <tbody>
        {frames.map((frame, i) => {
          const { fn, where } = frameText(frame, lang);
          return (
            <tr key={i}>
              <td class="num dim">{i}</td>
              <td class="mono">{fn}</td>
              <td class="mono dim">{where}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

// ------------------------------------------------------------------ state: view and edit

function StateTab({ pid, lang, gone }: { pid: string; lang: Lang; gone: string | null }) {
  const [nonce, setNonce] = useState(0);
  const state = useApi(() => get<StateResult>(`/processes/${pidPath(pid)}/state`), [pid, nonce], 0, true);
  const [openDepth, setOpenDepth] = useState(2);
  const [editing, setEditing] = useState(false);
  const [saved, setSaved] = useState<SetStateResult | null>(null);
  const reload = () => setNonce((n) => n + 1);

  if (!state.data) return state.error ? <ErrorBox error={state.error} retry={reload} /> : <Loading what="reading the state" />;
  const s = state.data;
  const canEdit = may("write") && !gone;
  return (
    <div class="state-tab">
      <div class="toolbar">
        <span>
          {s.behaviour && <span class="mono">{s.behaviour}</span>} <span class="dim">· {bytes(s.size)}</span>
          {!s.whole && <span class="warn"> · cut: over 1 MB, shown in part</span>}
        </span>
        <button onClick={reload} disabled={state.loading}>Refresh</button>
        <button onClick={() => setOpenDepth(1)} title="fold everything below the top level">Fold all</button>
        <button onClick={() => setOpenDepth(6)} title="unfold six levels deep">Unfold</button>
        {canEdit && !editing && (
          <button class="primary" onClick={() => { setEditing(true); setSaved(null); }}>
            Edit state
          </button>
        )}
      </div>
      {state.error !== null && !gone && <ErrorBox error={state.error} retry={reload} />}
      {saved && <SavedNotice key={saved.backup} saved={saved} onUndone={reload} />}
      {editing && (
        <StateEditor
          pid={pid}
          lang={lang}
          state={s}
          onCancel={() => setEditing(false)}
          onSaved={(result) => {
            setSaved(result);
            setEditing(false);
            reload();
          }}
        />
      )}
      <div class="panel state-view" aria-label="state">
        {s.state_json !== null && s.state_json !== undefined ? (
          <Term key={`${openDepth}/${nonce}`} value={s.state_json} lang={lang} open={openDepth} />
        ) : (
          <>
            <div class="notice">
              The state is too big to travel whole ({bytes(s.size)}): this is its text, cut by the node.
            </div>
            <pre class="term">{s.state}</pre>
          </>
        )}
      </div>
    </div>
  );
}

function SavedNotice({ saved, onUndone }: { saved: SetStateResult; onUndone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [undone, setUndone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const undo = async () => {
    setBusy(true);
    setError(null);
    try {
      await post(`/processes/${pidPath(saved.pid)}/checkpoints/${encodeURIComponent(saved.backup)}/rollback`);
      setUndone(true);
      onUndone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="panel saved" role="status">
      <div>
        <strong class="ok">State saved</strong> ({saved.merge_strategy}). The old state is kept in the checkpoint{" "}
        <code>{saved.backup}</code>.{" "}
        {undone ? (
          <strong>Rolled back to it.</strong>
        ) : (
          <button onClick={undo} disabled={busy} title="put the old state back (itself backed up first)">
            Undo (roll back)
          </button>
        )}
      </div>
      {error !== null && <ErrorBox error={error} />}
      {saved.changes.length > 0 ? (
        <table class="data changes">
          <tbody>
            {saved.changes.slice(0, 20).map((c, i) => (
              <tr key={i}>
                <td class={c.kind === "removed" ? "bad" : c.kind === "added" ? "ok" : "warn"}>{c.kind}</td>
                <td class="mono">{c.path.join(".") || "(the whole state)"}</td>
                <td class="mono wrap">
                  {c.old ?? ""} {c.old !== null && c.new !== null ? "→" : ""} {c.new ?? ""}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <div class="dim">Nothing changed.</div>
      )}
    </div>
  );
}

type Format = "json" | Lang;
type Strategy = "replace" | "deep_merge" | "partial_update";

/** Where a parse error points: the server says "line L, column C"; a browser's JSON.parse says
 *  "position N" (or line/column itself). */
function errorPosition(message: string, text: string): { line: number; column: number } | null {
  const lc = /line (\d+),? column (\d+)/i.exec(message);
  if (lc) return { line: Number(lc[1]), column: Number(lc[2]) };
  const pos = /position (\d+)/i.exec(message);
  if (pos) {
    const before = text.slice(0, Number(pos[1])).split("\n");
    return { line: before.length, column: before[before.length - 1].length + 1 };
  }
  return null;
}

function offsetOf(text: string, line: number, column: number): number {
  const lines = text.split("\n");
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
  return Math.min(text.length, offset + Math.max(0, column - 1));
}

function StateEditor({
  pid,
  lang,
  state,
  onCancel,
  onSaved,
}: {
  pid: string;
  lang: Lang;
  state: StateResult;
  onCancel: () => void;
  onSaved: (result: SetStateResult) => void;
}) {
  const whole = state.state_json !== null && state.state_json !== undefined;
  // Pids, refs, ports and funs have no source syntax a node accepts: such a state is edited as
  // tagged JSON, which carries them losslessly.
  const sourceable = whole && !hasOpaque(state.state_json);
  const initialFormat: Format = sourceable ? lang : "json";
  const textFor = (f: Format) => (!whole ? "" : f === "json" ? JSON.stringify(state.state_json, null, 2) : termSource(state.state_json, f));
  const [format, setFormat] = useState<Format>(initialFormat);
  const [strategy, setStrategy] = useState<Strategy>(whole ? "replace" : "partial_update");
  const [path, setPath] = useState("");
  const [text, setText] = useState(() => textFor(initialFormat));
  const [error, setError] = useState<unknown>(null);
  const [where, setWhere] = useState<{ line: number; column: number } | null>(null);
  const [busy, setBusy] = useState(false);
  const area = useRef<HTMLTextAreaElement>(null);

  const changeFormat = (f: Format) => {
    // Converting what was typed needs a parser here; the state as read is converted instead,
    // so the switch is offered only while nothing was typed.
    setText(textFor(f));
    setFormat(f);
    setError(null);
    setWhere(null);
  };
  const pristine = text === textFor(format);

  const fail = (e: unknown) => {
    setError(e);
    const message = e instanceof Error ? e.message : String(e);
    const at = errorPosition(message, text);
    setWhere(at);
    if (at && area.current) {
      const offset = offsetOf(text, at.line, at.column);
      area.current.focus();
      area.current.setSelectionRange(offset, Math.min(text.length, offset + 1));
    }
  };

  const save = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setWhere(null);
    let value: unknown = text;
    if (format === "json") {
      try {
        value = JSON.parse(text);
      } catch (err) {
        fail(new ApiError("validation_error", 0, `the text is not JSON: ${(err as Error).message}`));
        return;
      }
    }
    const body: Record<string, unknown> = { state: value, format, merge_strategy: strategy };
    if (strategy === "partial_update") body.path = path;
    setBusy(true);
    try {
      onSaved(await put<SetStateResult>(`/processes/${pidPath(pid)}/state`, body));
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="panel state-editor" onSubmit={save} aria-label="edit the state">
      <div class="toolbar">
        <label>
          syntax{" "}
          <select aria-label="syntax" value={format} disabled={!pristine} title={pristine ? "" : "Reset the text to switch the syntax"} onChange={(e) => changeFormat((e.target as HTMLSelectElement).value as Format)}>
            {sourceable && <option value={lang}>{lang === "elixir" ? "Elixir" : "Erlang"} term</option>}
            <option value="json">tagged JSON</option>
          </select>
        </label>
        <label>
          strategy{" "}
          <select aria-label="merge strategy" value={strategy} onChange={(e) => setStrategy((e.target as HTMLSelectElement).value as Strategy)}>
            {whole && <option value="replace">replace the whole state</option>}
            <option value="deep_merge">deep merge maps into it</option>
            <option value="partial_update">put the value at a path</option>
          </select>
        </label>
        {strategy === "partial_update" && (
          <label>
            path{" "}
            <input
              aria-label="path"
              class="mono"
              placeholder="users.alice[0]"
              value={path}
              onInput={(e) => setPath((e.target as HTMLInputElement).value)}
            />
          </label>
        )}
      </div>
      {!whole && (
        <div class="notice">
          The state is too big to edit whole: put a value at a path, or deep-merge a map into it.
        </div>
      )}
      {whole && !sourceable && (
        <div class="dim hint">
          The state holds pids, refs, ports or funs, which have no source syntax: it is edited as tagged JSON.
        </div>
      )}
      <textarea
        ref={area}
        aria-label="new state"
        class="mono"
        spellcheck={false}
        rows={Math.min(24, Math.max(6, text.split("\n").length + 1))}
        value={text}
        onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if ((e.ctrlKey || e.metaKey) && e.key === "Enter") save(e);
        }}
      />
      {error !== null && (
        <div class="editor-error">
          {where && (
            <div class="where" role="status">
              line {where.line}, column {where.column}
            </div>
          )}
          <ErrorBox error={error} />
        </div>
      )}
      <div class="toolbar">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Saving …" : "Save"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" disabled={pristine} onClick={() => changeFormat(format)} title="back to the state as read (then the syntax can be switched)">
          Reset text
        </button>
        <span class="dim hint">
          Replace writes this whole text back: what a busy process changed since the editor opened is overwritten (put a
          value at a path to touch only that). A change between the server's read and write is refused (conflict); the old
          state is kept as a checkpoint. Ctrl+Enter saves.
        </span>
      </div>
    </form>
  );
}


// ------------------------------------------------------------------ mailbox

function MailboxTab({ pid, gone }: { pid: string; gone: string | null }) {
  const [limit, setLimit] = useState(20);
  const messages = useApi(
    () => get<MessagesResult>(`/processes/${pidPath(pid)}/messages`, { limit }),
    [pid, limit],
    gone ? 0 : 3000,
    true,
  );
  const m = messages.data;
  return (
    <div>
      <div class="toolbar">
        <span>
          queue length <strong class="num">{m ? count(m.message_queue_len) : "…"}</strong>
        </span>
        <label>
          show the first{" "}
          <select aria-label="messages shown" value={limit} onChange={(e) => setLimit(Number((e.target as HTMLSelectElement).value))}>
            {[10, 20, 50, 100].map((n) => (
              <option value={n} key={n}>{n}</option>
            ))}
          </select>
        </label>
        <button onClick={messages.reload}>Refresh</button>
        <span class="dim">A peek: nothing is taken from the mailbox. Refreshed every 3 s.</span>
      </div>
      {messages.error !== null && !gone && <ErrorBox error={messages.error} retry={messages.reload} />}
      {!m && messages.error === null && <Loading what="peeking at the mailbox" />}
      {m && m.messages.length === 0 && <div class="dim">The mailbox is empty.</div>}
      {m && m.messages.length > 0 && (
        <table class="data">
          <thead>
            <tr>
              <th class="num">#</th>
              <th>message (oldest first)</th>
            </tr>
          </thead>
          <tbody>
            {m.messages.map((msg, i) => (
              <tr key={i}>
                <td class="num dim">{i + 1}</td>
                <td class="mono wrap">{msg.source}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {m && m.message_queue_len > m.messages.length && (
        <div class="dim">… and {count(m.message_queue_len - m.messages.length)} more behind them.</div>
      )}
    </div>
  );
}

// ------------------------------------------------------------------ charts

function Chart({
  title,
  label,
  samples,
  values,
  version,
  format,
  color,
}: {
  title: string;
  label: string;
  samples: Samples;
  values: number[];
  version: number;
  format: (n: number) => string;
  color: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current!;
    const width = () => Math.max(300, el.clientWidth - 4);
    plot.current = new uPlot(
      {
        width: width(),
        height: 220,
        legend: { show: true },
        // At least a minute wide, so the first few points do not fill the chart edge to edge.
        scales: {
          x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] },
          y: { range: (_u, min, max) => [0, Math.max(max * 1.1, min + 1, 1)] },
        },
        axes: [
          { stroke: "#8b95a8", grid: { stroke: "#2c3445" }, ticks: { stroke: "#2c3445" } },
          { stroke: "#8b95a8", grid: { stroke: "#2c3445" }, ticks: { stroke: "#2c3445" }, size: 80, values: (_u, ticks) => ticks.map(format) },
        ],
        series: [{}, { label, stroke: color, width: 2, fill: color + "22", value: (_u, v) => (v === null ? "—" : format(v)), paths: uPlot.paths.stepped!({ align: 1 }) }],
      },
      [samples.t.slice(), values.slice()],
      el,
    );
    const onResize = () => plot.current?.setSize({ width: width(), height: 220 });
    window.addEventListener("resize", onResize);
    return () => {
      window.removeEventListener("resize", onResize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData([samples.t.slice(), values.slice()]);
  }, [version]);
  const latest = values.length ? values[values.length - 1] : null;
  return (
    <div class="panel chart">
      <h3>
        {title} <span class="dim">{latest === null || Number.isNaN(latest) ? "" : format(latest)}</span>
      </h3>
      <div ref={box} class="chart-box" />
    </div>
  );
}

function ChartsTab({ samples, version, gone }: { samples: Samples; version: number; gone: string | null }) {
  return (
    <div>
      <div class="toolbar dim">
        {gone
          ? "The process is gone: the charts end where it exited."
          : "Live from the process channel, one point a second (the last 10 minutes of this page)."}
        <span> {samples.t.length} samples</span>
      </div>
      <div class="grid charts-grid">
        <Chart title="Memory" label="memory" samples={samples} values={samples.memory} version={version} format={(n) => bytes(n)} color="#7fb4ff" />
        <Chart title="Message queue" label="queue" samples={samples} values={samples.queue} version={version} format={(n) => count(n)} color="#e0a526" />
      </div>
    </div>
  );
}

// ------------------------------------------------------------------ trace

const MAX_TRACE_EVENTS = 500;

interface TraceSession {
  info: TraceInfo | null;
  events: TraceEvent[];
  ended: { reason: string | null } | null;
  error: unknown;
  busy: boolean;
  start: (spec: Record<string, unknown>) => void;
  stop: () => void;
}

/** A trace of this process, kept by the page (not the tab) so switching tabs does not end the
 *  stream: its events as they arrive over trace:<id>, backfilled from the store once. */
function useTraceSession(pid: string, node: string | null): TraceSession {
  const [info, setInfo] = useState<TraceInfo | null>(null);
  const [events, setEvents] = useState<TraceEvent[]>([]);
  const [ended, setEnded] = useState<{ reason: string | null } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const unsubscribe = useRef<(() => void) | null>(null);
  useEffect(() => () => unsubscribe.current?.(), []);

  const add = (batch: TraceEvent[]) =>
    setEvents((old) => {
      const seen = new Set(old.map((e) => e.seq));
      const merged = [...old, ...batch.filter((e) => !seen.has(e.seq))].sort((a, b) => a.seq - b.seq);
      return merged.slice(-MAX_TRACE_EVENTS);
    });

  const start = async (spec: Record<string, unknown>) => {
    unsubscribe.current?.();
    setBusy(true);
    setError(null);
    setEvents([]);
    setEnded(null);
    try {
      const started = await post<TraceInfo>(`/processes/${pidPath(pid)}/trace`, spec);
      setInfo(started);
      unsubscribe.current = live.subscribe(
        `trace:${started.id}`,
        (message) => {
          if (message.type === "trace") add(message.data?.events ?? []);
          else if (message.type === "trace_end") {
            setEnded({ reason: message.data?.reason ?? null });
            get<{ trace: TraceInfo; events: TraceEvent[] }>(`/traces/${started.id}`, { limit: 100 }).then(
              (r) => (setInfo(r.trace), add(r.events)),
              () => undefined,
            );
          } else if (message.type === "error") {
            // A session that ended before the subscription: its events are in the store.
            get<{ trace: TraceInfo; events: TraceEvent[] }>(`/traces/${started.id}`, { limit: 100 }).then(
              (r) => {
                setInfo(r.trace);
                add(r.events);
                if (r.trace.status !== "running") setEnded({ reason: r.trace.end_reason });
              },
              (e) => setError(e),
            );
          }
        },
        node ? { node } : {},
      );
      // Events stored before the subscription took effect.
      get<{ trace: TraceInfo; events: TraceEvent[] }>(`/traces/${started.id}`, { limit: 100 }).then(
        (r) => add(r.events),
        () => undefined,
      );
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const stop = async () => {
    if (!info) return;
    setBusy(true);
    try {
      const stopped = await del<TraceInfo>(`/traces/${info.id}`);
      setInfo(stopped);
      setEnded((e) => e ?? { reason: stopped.end_reason ?? "stopped" });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return { info, events, ended, error, busy, start, stop };
}

function eventDetail(e: TraceEvent): string {
  switch (e.kind) {
    case "send":
    case "send_to_non_existing_process":
      return `${String(e.message ?? "")}  → ${String(e.to ?? "")}`;
    case "receive":
      return String(e.message ?? "");
    case "call":
      return `${String(e.mfa ?? "")}(${Array.isArray(e.args) ? e.args.join(", ") : ""})`;
    case "return_from":
      return `${String(e.mfa ?? "")} → ${String(e.result ?? "")}`;
    case "exception_from":
      return `${String(e.mfa ?? "")} raised ${String(e.class ?? "")}: ${String(e.reason ?? "")}`;
    case "exit":
      return String(e.reason ?? "");
    case "spawn":
    case "spawned":
      return `${String(e.other ?? "")} ${String(e.mfa ?? "")}`;
    case "link":
    case "unlink":
    case "getting_linked":
    case "getting_unlinked":
      return String(e.other ?? "");
    case "register":
    case "unregister":
      return String(e.name ?? "");
    default:
      return String(e.data ?? "");
  }
}

/** The limits the node enforces on the session, as a person reads them. */
function limitsText(limits: unknown): string {
  const l = (limits ?? {}) as Record<string, number | undefined>;
  const parts = [
    l.max_events !== undefined && `at most ${count(l.max_events)} events`,
    l.max_ms !== undefined && `${l.max_ms / 1000} s`,
    l.rate !== undefined && `${count(l.rate)} per ${(l.rate_ms ?? 1000) / 1000} s`,
    l.max_bytes !== undefined && `${bytes(l.max_bytes)} an event`,
  ].filter(Boolean);
  return parts.length ? `limits: ${parts.join(" · ")}` : "";
}

function TraceTab({ session: t, gone }: { session: TraceSession; gone: string | null }) {
  const [maxEvents, setMaxEvents] = useState(100);
  const [duration, setDuration] = useState(10);
  const [messages, setMessages] = useState(true);
  const [lifecycle, setLifecycle] = useState(true);
  const [patterns, setPatterns] = useState("");
  const running = t.info !== null && t.ended === null;
  const submit = (e: Event) => {
    e.preventDefault();
    const list = patterns.split(/[\s,]+/).filter(Boolean);
    t.start({ max_events: maxEvents, duration, messages, lifecycle, ...(list.length ? { patterns: list } : {}) });
  };
  return (
    <div class="trace-tab">
      {may("write") ? (
        <form class="toolbar" onSubmit={submit} aria-label="start a trace">
          <label>
            max events <input type="number" min={1} max={10000} value={maxEvents} aria-label="max events" onInput={(e) => setMaxEvents(Number((e.target as HTMLInputElement).value))} />
          </label>
          <label>
            seconds <input type="number" min={1} max={300} value={duration} aria-label="seconds" onInput={(e) => setDuration(Number((e.target as HTMLInputElement).value))} />
          </label>
          <label>
            <input type="checkbox" checked={messages} onChange={(e) => setMessages((e.target as HTMLInputElement).checked)} /> messages
          </label>
          <label>
            <input type="checkbox" checked={lifecycle} onChange={(e) => setLifecycle((e.target as HTMLInputElement).checked)} /> spawns, links, exit
          </label>
          <label>
            calls of{" "}
            <input class="mono patterns" placeholder="Mod.fun/2, mod:f/_" value={patterns} aria-label="call patterns" onInput={(e) => setPatterns((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit" class="primary" disabled={t.busy || running || !!gone}>
            Start trace
          </button>
          {running && (
            <button type="button" onClick={t.stop} disabled={t.busy}>
              Stop
            </button>
          )}
        </form>
      ) : (
        <div class="dim">Starting a trace needs the write right; your key is read-only.</div>
      )}
      {t.error !== null && <ErrorBox error={t.error} />}
      {t.info && (
        <div class="toolbar trace-status" role="status">
          <span>
            trace <a href={`#/traces/${t.info.id}`} class="mono">{t.info.id}</a>
          </span>
          <span class={running ? "ok" : "dim"}>{running ? "running" : `ended: ${t.ended?.reason ?? t.info.end_reason ?? "—"}`}</span>
          <span>
            {count(t.events.length)} events shown
            {t.info.events > t.events.length ? ` (of ${count(t.info.events)})` : ""}
          </span>
          <span class="dim">{limitsText(t.info.spec.limits)}</span>
        </div>
      )}
      {t.info && t.events.length === 0 && <div class="dim">{running ? "Waiting for events …" : "No events."}</div>}
      {t.events.length > 0 && (
        <table class="data trace-events">
          <thead>
            <tr>
              <th class="num">#</th>
              <th>time</th>
              <th>kind</th>
              <th>detail</th>
            </tr>
          </thead>
          <tbody>
            {t.events.map((e) => (
              <tr key={e.seq}>
                <td class="num dim">{e.seq}</td>
                <td class="mono dim">{e.time.slice(11, 23)}</td>
                <td>{e.kind}</td>
                <td class="mono wrap">
                  {eventDetail(e)}
                  {e.truncated ? <span class="warn"> (cut)</span> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

// ------------------------------------------------------------------ history

function historyDetail(e: HistoryResult["events"][number]): ComponentChildren {
  if (e.source === "trace") return <span class="mono">{eventDetail(e as unknown as TraceEvent)}</span>;
  if (e.source === "checkpoint")
    return (
      <span>
        checkpoint <code>{String(e.name)}</code> {e.module ? <span class="dim">({String(e.module)})</span> : null}
      </span>
    );
  if (e.source === "recording")
    return (
      <span>
        recording <code>{String(e.id)}</code>, {String(e.steps)} steps{e.end_reason ? `, ${String(e.end_reason)}` : ""}
      </span>
    );
  return <span class="mono">{JSON.stringify(e)}</span>;
}

function HistoryTab({ pid }: { pid: string }) {
  const history = useApi(() => get<HistoryResult>(`/processes/${pidPath(pid)}/history`, { limit: 100 }), [pid], 0, true);
  if (!history.data) return history.error ? <ErrorBox error={history.error} retry={history.reload} /> : <Loading what="reading the history" />;
  const events = history.data.events;
  return (
    <div>
      <div class="toolbar">
        <span class="dim">Trace events, checkpoints and recordings of this process, newest first (at most 100).</span>
        <button onClick={history.reload}>Refresh</button>
      </div>
      {history.error !== null && <ErrorBox error={history.error} retry={history.reload} />}
      {events.length === 0 ? (
        <div class="dim">Nothing yet: trace it, checkpoint it or edit its state, and it shows here.</div>
      ) : (
        <table class="data history">
          <thead>
            <tr>
              <th>time</th>
              <th>source</th>
              <th>kind</th>
              <th>detail</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e, i) => (
              <tr key={i}>
                <td class="mono dim">{e.time_us ? new Date(e.time_us / 1000).toISOString().replace("T", " ").slice(0, 23) : "—"}</td>
                <td>
                  {e.source === "trace" && e.trace ? <a href={`#/traces/${String(e.trace)}`}>trace</a> : e.source}
                </td>
                <td>{String(e.kind ?? "")}</td>
                <td class="wrap">{historyDetail(e)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

