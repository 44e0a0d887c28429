// Sandboxes: Arsenal's own throwaway BEAM nodes. The list creates them from a template;
// one sandbox shows its usage, tree and modules, an editor that hot-swaps a module (with the
// server's report or its compile errors by line), module versions with rollback, and a REPL over
// the sandbox's own WebSocket (separate from ws.ts: one session per open page, its bindings die
// with the socket).
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, del, get, post } from "../api";
import { Confirm, ErrorBox, Loading, Tabs, useApi } from "../components";
import { bytes, count, duration } from "../format";
import { navigate, useRoute } from "../router";
import { may, session } from "../session";
import "./sandboxes.css";

// ------------------------------------------------------------------ API shapes

type Status = "starting" | "running" | "stopped" | "failed";

interface Summary {
  sandbox_id: string;
  status: Status;
  node: string | null;
  template: string | null;
  language: string;
  persistent: boolean;
  created_at: string | null;
  started_at: string | null;
  stopped_at: string | null;
  stop_reason: string | null;
}

interface Limits {
  max_processes: number;
  max_heap_mb: number;
  max_memory_mb: number;
  schedulers: number;
  cpu_seconds: number | null;
  lifetime_s: number;
}

interface Usage {
  memory_bytes: number;
  process_count: number;
  process_limit: number;
  process_memory_bytes: number;
  run_queue: number;
  schedulers: number;
  uptime_ms: number;
}

interface ProcessRow {
  pid: string;
  name: string;
  memory: number;
  message_queue_len: number;
  current_function: string;
  initial_call: string;
}

interface ModuleSummary {
  module: string;
  versions: number;
  current: number;
}

interface Info {
  sandbox: Summary;
  limits: Limits;
  usage: Usage | null;
  processes: ProcessRow[];
  applications: { name: string; vsn: string }[];
  modules: ModuleSummary[];
}

interface VersionInfo {
  version: number;
  note: string;
  md5: string;
  language: string;
  created_at: string | null;
  has_source: boolean;
  current: boolean;
}

interface SwapProcess {
  pid: string;
  name?: string | null;
  code_change: "ok" | "skipped" | "error";
  reason?: string;
  state_changed: boolean;
}

interface SwapReport {
  module: string;
  version: number;
  exports_added: string[];
  exports_removed: string[];
  processes: SwapProcess[];
  killed: string[];
  warnings: Diagnostic[];
}

/** A compile error, a warning or a policy finding as the server reports it. */
interface Diagnostic {
  file?: string;
  line?: number;
  message?: string;
  call?: string;
  reason?: string;
}

const TEMPLATES: [string, string][] = [
  ["worker_pool", "a dispatcher handing jobs round-robin to four workers"],
  ["pubsub", "a broker with monitored subscribers and a recorder"],
  ["pipeline", "source → transform → sink under rest_for_one"],
  ["cascade", "nested supervisors whose workers crash on request"],
  ["", "nothing: an empty node for the REPL"],
];

const DEFAULT_LIMITS: Limits = {
  max_processes: 32768,
  max_heap_mb: 256,
  max_memory_mb: 1024,
  schedulers: 1,
  cpu_seconds: null,
  lifetime_s: 3600,
};

const sandboxPath = (id: string) => `/sandboxes/${encodeURIComponent(id)}`;

// Sandboxes are not nodes of the switcher: every call goes without `?node=`.
const getInfo = (id: string) => get<Info>(sandboxPath(id), undefined, null);

function uptime(s: Summary, now: number): string {
  if (!s.started_at) return "—";
  const end = s.stopped_at ? Date.parse(s.stopped_at) : s.status === "running" ? now : NaN;
  if (Number.isNaN(end)) return "—";
  return duration(Math.max(0, (end - Date.parse(s.started_at)) / 1000));
}

function StatusBadge({ status }: { status: Status }) {
  const cls = status === "running" ? "ok" : status === "starting" ? "warn" : "bad";
  return <span class={`sbx-status ${cls}`}>{status}</span>;
}

/** Why a sandbox is no longer running: the limit it hit, a crash, a destroy. */
function StopReason({ s }: { s: Summary }) {
  if (s.status === "running" || s.status === "starting") return <span class="dim">—</span>;
  return <span class="bad">{s.stop_reason ?? "stopped (no reason recorded)"}</span>;
}

function errorLines(error: unknown): Diagnostic[] {
  if (!(error instanceof ApiError)) return [];
  const meta = error.meta as { errors?: Diagnostic[]; findings?: Diagnostic[] };
  return [...(meta.errors ?? []), ...(meta.findings ?? [])];
}

// ------------------------------------------------------------------ the page

export function SandboxesPage({ id }: { id?: string }) {
  return id ? <SandboxView id={id} /> : <SandboxList />;
}

function SandboxList() {
  const list = useApi(() => get<{ sandboxes: Summary[] }>("/sandboxes", undefined, null), [], 3000);
  const [filter, setFilter] = useState("");
  const [creating, setCreating] = useState<string | null>(null);
  const [created, setCreated] = useState<Summary | null>(null);
  const [destroying, setDestroying] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const now = Date.now();
  const rows = (list.data?.sandboxes ?? []).filter(
    (s) => !filter || s.sandbox_id.includes(filter) || (s.template ?? "").includes(filter),
  );

  const destroy = async (sid: string) => {
    setDestroying(null);
    setActionError(null);
    try {
      await del(sandboxPath(sid), undefined, null);
    } catch (e) {
      setActionError(e);
    }
    list.reload();
  };

  return (
    <div class="sandboxes grid">
      <div class="toolbar">
        <h2>Sandboxes</h2>
        <input
          data-search
          aria-label="filter sandboxes"
          placeholder="filter by id or template (/)"
          value={filter}
          onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
        />
        <span class="dim">{list.data ? `${list.data.sandboxes.length} sandboxes` : ""}</span>
      </div>
      {may("write") && (
        <CreateForm
          busy={creating !== null}
          onStart={(sid) => {
            setCreating(sid);
            setCreated(null);
          }}
          onDone={(summary) => {
            setCreating(null);
            setCreated(summary);
            list.reload();
          }}
        />
      )}
      {creating && (
        <div class="notice sbx-progress" role="status" aria-busy="true">
          Starting sandbox <strong>{creating}</strong>: a new BEAM node, then its code compiled inside it …
        </div>
      )}
      {created && (
        <div class="notice" role="status">
          Sandbox <a href={`#/sandboxes/${created.sandbox_id}`}>{created.sandbox_id}</a> is {created.status}
          {created.node ? ` on ${created.node}` : ""}.
        </div>
      )}
      {actionError !== null && <ErrorBox error={actionError} />}
      {list.error !== null && <ErrorBox error={list.error} retry={list.reload} />}
      <div class="panel">
        {!list.data && list.loading ? (
          <Loading what="loading sandboxes" />
        ) : rows.length === 0 && !creating ? (
          <p class="dim">
            {filter ? "No sandbox matches." : "No sandboxes yet."}
            {!filter && may("write") && " Create one from a template above."}
          </p>
        ) : (
          <table class="data sbx-table" aria-label="sandboxes">
            <thead>
              <tr>
                <th>id</th>
                <th>status</th>
                <th>template</th>
                <th>language</th>
                <th class="num">uptime</th>
                <th>limits</th>
                <th>stop reason</th>
                <th>node</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {creating && !rows.some((s) => s.sandbox_id === creating) && (
                <tr aria-busy="true">
                  <td>{creating}</td>
                  <td>
                    <span class="sbx-status warn">starting …</span>
                  </td>
                  <td colSpan={7} class="dim">
                    starting the node
                  </td>
                </tr>
              )}
              {rows.map((s) => (
                <tr key={s.sandbox_id} data-sandbox={s.sandbox_id}>
                  <td>
                    <a href={`#/sandboxes/${s.sandbox_id}`}>{s.sandbox_id}</a>
                    {s.persistent && <span class="dim"> (persistent)</span>}
                  </td>
                  <td>
                    <StatusBadge status={s.status} />
                  </td>
                  <td>{s.template ?? <span class="dim">—</span>}</td>
                  <td>{s.language}</td>
                  <td class="num">{uptime(s, now)}</td>
                  <td class="dim">
                    <LimitsText id={s.sandbox_id} />
                  </td>
                  <td>
                    <StopReason s={s} />
                  </td>
                  <td class="mono dim">{s.node ?? "—"}</td>
                  <td>
                    {may("destructive") && (
                      <button class="link" onClick={() => setDestroying(s.sandbox_id)}>
                        destroy
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {destroying && (
        <Confirm
          title={`Destroy sandbox ${destroying}?`}
          confirm="Destroy"
          onCancel={() => setDestroying(null)}
          onConfirm={() => destroy(destroying)}
        >
          Its node, every OS process of it, its files and its code versions are gone.
        </Confirm>
      )}
    </div>
  );
}

// The list op has no limits: they come from each sandbox's info, fetched once per row (the
// limits only change through sandbox_resource_limits, which restarts the sandbox).
const limitsCache = new Map<string, Limits>();

function LimitsText({ id }: { id: string }) {
  const [limits, setLimits] = useState<Limits | undefined>(limitsCache.get(id));
  useEffect(() => {
    if (limits) return;
    let live = true;
    getInfo(id).then(
      (info) => {
        limitsCache.set(id, info.limits);
        if (live) setLimits(info.limits);
      },
      () => undefined, // a gone sandbox simply shows no limits
    );
    return () => {
      live = false;
    };
  }, [id]);
  if (!limits) return <span>…</span>;
  return <span>{limitsSummary(limits)}</span>;
}

function limitsSummary(l: Limits): string {
  return [
    `${l.max_memory_mb} MiB`,
    `${count(l.max_processes)} procs`,
    `heap ${l.max_heap_mb ? l.max_heap_mb + " MiB" : "∞"}`,
    `${l.schedulers} sched`,
    l.cpu_seconds ? `cpu ${l.cpu_seconds} s` : null,
    `life ${duration(l.lifetime_s)}`,
  ]
    .filter(Boolean)
    .join(" · ");
}

function CreateForm({
  busy,
  onStart,
  onDone,
}: {
  busy: boolean;
  onStart: (id: string) => void;
  onDone: (s: Summary | null) => void;
}) {
  const [sid, setSid] = useState("");
  const [template, setTemplate] = useState("worker_pool");
  const [language, setLanguage] = useState("elixir");
  const [limits, setLimits] = useState<Limits>(DEFAULT_LIMITS);
  const [persistent, setPersistent] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const id = sid.trim();
    onStart(id);
    try {
      const body: Record<string, unknown> = { sandbox_id: id, limits, persistent };
      // The security policy stays the default: a looser one needs an admin (and its own page).
      if (template) body.template = template;
      else body.language = language;
      const summary = await post<Summary>("/sandboxes", body, null);
      setSid("");
      onDone(summary);
    } catch (err) {
      setError(err);
      onDone(null);
    }
  };

  const limitInput = (key: keyof Limits, label: string, min: number, optional = false) => (
    <label>
      {label}
      <input
        type="number"
        title={`at least ${min}`}
        value={limits[key] ?? ""}
        placeholder={optional ? "none" : undefined}
        onInput={(e) => {
          const text = (e.target as HTMLInputElement).value;
          setLimits({ ...limits, [key]: text === "" && optional ? null : Number(text) });
        }}
      />
    </label>
  );

  return (
    <form class="panel sbx-create" onSubmit={submit} aria-label="create a sandbox">
      <div class="sbx-create-row">
        <label>
          id
          <input
            required
            value={sid}
            title="lowercase letters, digits and _, starting with a letter, up to 31"
            placeholder="pool"
            onInput={(e) => setSid((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          template
          <select value={template} onChange={(e) => setTemplate((e.target as HTMLSelectElement).value)}>
            {TEMPLATES.map(([name]) => (
              <option value={name} key={name}>
                {name || "none (empty)"}
              </option>
            ))}
          </select>
        </label>
        {!template && (
          <label>
            language
            <select value={language} onChange={(e) => setLanguage((e.target as HTMLSelectElement).value)}>
              <option value="elixir">elixir</option>
              <option value="erlang">erlang</option>
            </select>
          </label>
        )}
        <label class="check">
          <input type="checkbox" checked={persistent} onChange={() => setPersistent(!persistent)} />
          persistent
        </label>
        <button type="button" class="link" aria-expanded={open} onClick={() => setOpen(!open)}>
          {open ? "hide limits" : "limits…"}
        </button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Starting …" : "Create sandbox"}
        </button>
        <span class="dim">{TEMPLATES.find(([n]) => n === template)?.[1]}</span>
      </div>
      {open && (
        <div class="sbx-create-row sbx-limits">
          {limitInput("max_memory_mb", "memory MiB", 128)}
          {limitInput("max_processes", "processes", 1024)}
          {limitInput("max_heap_mb", "heap/process MiB (0: none)", 0)}
          {limitInput("schedulers", "schedulers", 1)}
          {limitInput("cpu_seconds", "CPU seconds", 1, true)}
          {limitInput("lifetime_s", "lifetime s", 10)}
        </div>
      )}
      {error !== null && <ErrorBox error={error} />}
    </form>
  );
}

// ------------------------------------------------------------------ one sandbox

function SandboxView({ id }: { id: string }) {
  const route = useRoute();
  const info = useApi(() => getInfo(id), [id], 3000);
  const tab = route.query.get("tab") ?? "overview";
  const [confirm, setConfirm] = useState<"destroy" | "restart" | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const s = info.data?.sandbox;
  const running = s?.status === "running";
  const gone = info.error instanceof ApiError && info.error.code === "not_found";

  const act = async (what: "destroy" | "restart") => {
    setConfirm(null);
    setActionError(null);
    setBusy(what === "destroy" ? "destroying …" : "restarting: a fresh node …");
    try {
      if (what === "destroy") {
        await del(sandboxPath(id), undefined, null);
        limitsCache.delete(id);
        navigate("sandboxes");
        return;
      }
      await post(`${sandboxPath(id)}/restart`, {}, null);
      info.reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(null);
    }
  };

  return (
    <div class="sandbox grid">
      <div class="toolbar">
        <a href="#/sandboxes">← sandboxes</a>
        <h2>
          Sandbox <span class="mono">{id}</span>
        </h2>
        {s && <StatusBadge status={s.status} />}
        {s && <span class="dim">{s.template ?? "no template"} · {s.language}</span>}
        {s?.node && <span class="mono dim">{s.node}</span>}
        <span class="sbx-spacer" />
        {s && !gone && may("destructive") && (
          <>
            <button onClick={() => setConfirm("restart")} disabled={busy !== null}>
              Restart
            </button>
            <button class="danger" onClick={() => setConfirm("destroy")} disabled={busy !== null}>
              Destroy
            </button>
          </>
        )}
      </div>
      {busy && (
        <div class="notice" role="status" aria-busy="true">
          {busy}
        </div>
      )}
      {actionError !== null && <ErrorBox error={actionError} />}
      {gone ? (
        <>
          <ErrorBox error={info.error} />
          <p>
            The sandbox no longer exists (destroyed here or elsewhere). <a href="#/sandboxes">Back to the list</a>
          </p>
        </>
      ) : (
        info.error !== null && <ErrorBox error={info.error} retry={info.reload} />
      )}
      {!info.data && info.loading && <Loading what="loading the sandbox" />}
      {s && !running && !gone && (
        <div class="error sbx-stopped" role="alert">
          <strong>This sandbox is {s.status}</strong>: {s.stop_reason ?? "no reason recorded"}
          {s.stopped_at && <span class="dim"> (at {new Date(s.stopped_at).toLocaleTimeString()})</span>}
          {may("destructive") && " — restart it for a fresh node, or destroy it."}
        </div>
      )}
      {info.data && !gone && (
        <>
          <Tabs
            tabs={[
              ["overview", "Overview"],
              ["code", "Code & hot swap"],
              ["repl", "REPL"],
            ]}
            current={tab}
            onChange={(t) => navigate(`sandboxes/${id}`, { tab: t })}
          />
          {/* Every tab stays mounted: the REPL keeps its session and bindings, the editor its text. */}
          <div hidden={tab !== "overview"}>
            <Overview info={info.data} />
          </div>
          <div hidden={tab !== "code"}>
            <CodeTab id={id} info={info.data} reload={info.reload} />
          </div>
          <div hidden={tab !== "repl"}>
            {may("write") ? (
              <Repl id={id} running={running} />
            ) : (
              <p class="dim">The REPL runs code: it needs an operator or admin key.</p>
            )}
          </div>
        </>
      )}
      {confirm && (
        <Confirm
          title={confirm === "destroy" ? `Destroy sandbox ${id}?` : `Restart sandbox ${id}?`}
          confirm={confirm === "destroy" ? "Destroy" : "Restart"}
          onCancel={() => setConfirm(null)}
          onConfirm={() => act(confirm)}
        >
          {confirm === "destroy"
            ? "Its node, every OS process of it, its files and its code versions are gone."
            : "A fresh node from its spec: processes, state and hot-swapped code start over."}
        </Confirm>
      )}
    </div>
  );
}

function Meter({ label, used, limit, text }: { label: string; used: number; limit: number; text: string }) {
  const share = limit > 0 ? Math.min(1, used / limit) : 0;
  const cls = share > 0.9 ? "bad" : share > 0.7 ? "warn" : "ok";
  return (
    <div class="sbx-meter">
      <span>{label}</span>
      <div class="sbx-bar" role="meter" aria-label={label} aria-valuenow={used} aria-valuemax={limit}>
        <div class={`sbx-fill ${cls}`} style={{ width: `${(share * 100).toFixed(1)}%` }} />
      </div>
      <span class="num">{text}</span>
    </div>
  );
}

function Overview({ info }: { info: Info }) {
  const { limits, usage, sandbox: s } = info;
  const lifetimeLeft = usage ? Math.max(0, limits.lifetime_s - usage.uptime_ms / 1000) : null;
  return (
    <div class="sbx-overview">
      <div class="panel">
        <h3>Usage and limits</h3>
        {usage ? (
          <>
            <Meter
              label="memory"
              used={usage.memory_bytes}
              limit={limits.max_memory_mb * 1024 * 1024}
              text={`${bytes(usage.memory_bytes)} / ${limits.max_memory_mb} MiB`}
            />
            <Meter
              label="processes"
              used={usage.process_count}
              limit={usage.process_limit}
              text={`${count(usage.process_count)} / ${count(usage.process_limit)}`}
            />
            <Meter
              label="lifetime"
              used={usage.uptime_ms / 1000}
              limit={limits.lifetime_s}
              text={`up ${duration(usage.uptime_ms / 1000)}, ${duration(lifetimeLeft ?? 0)} left`}
            />
          </>
        ) : (
          <p class="dim">No usage: the node is not running.</p>
        )}
        <table class="data sbx-kv">
          <tbody>
            <tr>
              <th>heap per process</th>
              <td>{limits.max_heap_mb ? `${limits.max_heap_mb} MiB (the process is killed)` : "no limit"}</td>
            </tr>
            <tr>
              <th>schedulers</th>
              <td>{limits.schedulers}</td>
            </tr>
            <tr>
              <th>CPU time</th>
              <td>{limits.cpu_seconds ? `${limits.cpu_seconds} s` : "no limit"}</td>
            </tr>
            <tr>
              <th>run queue</th>
              <td>{usage ? usage.run_queue : "—"}</td>
            </tr>
            <tr>
              <th>created</th>
              <td>{s.created_at ? new Date(s.created_at).toLocaleString() : "—"}</td>
            </tr>
            <tr>
              <th>stop reason</th>
              <td>
                <StopReason s={s} />
              </td>
            </tr>
          </tbody>
        </table>
      </div>
      <div class="panel">
        <h3>Applications</h3>
        {info.applications.length ? (
          <ul class="sbx-apps">
            {info.applications.map((a) => (
              <li key={a.name}>
                {a.name} <span class="dim">{a.vsn}</span>
              </li>
            ))}
          </ul>
        ) : (
          <p class="dim">none</p>
        )}
        <h3>Application tree</h3>
        {s.status !== "running" ? (
          <p class="dim">The node is not running.</p>
        ) : may("write") ? (
          <AppTree id={s.sandbox_id} />
        ) : (
          <p class="dim">Reading the tree goes through the REPL: it needs an operator key.</p>
        )}
      </div>
      <div class="panel sbx-procs">
        <h3>Biggest processes</h3>
        <table class="data">
          <thead>
            <tr>
              <th>pid</th>
              <th>name</th>
              <th class="num">memory</th>
              <th class="num">queue</th>
              <th>current function</th>
            </tr>
          </thead>
          <tbody>
            {info.processes.map((p) => (
              <tr key={p.pid}>
                <td class="mono">{p.pid}</td>
                <td>
                  {p.name !== ":undefined" ? (
                    p.name
                  ) : (
                    <span class="dim">{p.initial_call === ":undefined" ? "—" : p.initial_call}</span>
                  )}
                </td>
                <td class="num">{bytes(p.memory)}</td>
                <td class={p.message_queue_len > 100 ? "num warn" : "num"}>{count(p.message_queue_len)}</td>
                <td class="mono dim">{p.current_function}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

/** The sandbox's application tree, from the REPL's `:tree` (the sandbox node is not one of the
 *  switcher's nodes, so the supervisor ops cannot reach it). One short-lived session. */
function AppTree({ id }: { id: string }) {
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    setText(null);
    setError(null);
    const socket = openRepl(id);
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data as string) as ReplMessage;
      if (message.type === "ready") socket.send(JSON.stringify({ input: ":tree" }));
      else if (message.type === "magic") {
        setText(message.text ?? "");
        socket.close();
      } else if (message.type === "error") {
        setError(messageText(message));
        socket.close();
      }
    };
    socket.onerror = () => setError("the REPL socket failed");
    return () => socket.close();
  }, [id, generation]);
  if (error) return <div class="error">{error}</div>;
  if (text === null) return <Loading what="reading the tree" />;
  return (
    <>
      <pre class="sbx-tree" aria-label="application tree">
        {text || "(no application of its own)"}
      </pre>
      <button class="link" onClick={() => setGeneration(generation + 1)}>
        refresh
      </button>
    </>
  );
}

// ------------------------------------------------------------------ code: modules, versions, editor

function skeleton(language: string): string {
  return language === "erlang"
    ? "-module(scratch).\n-export([hello/1]).\n\nhello(Who) -> {hello, Who}.\n"
    : "defmodule Scratch do\n  def hello(who), do: {:hello, who}\nend\n";
}

function shellOf(module: string, language: string): string {
  return language === "erlang"
    ? `-module(${module}).\n-export([]).\n\n%% The module's whole new source: every function it keeps, and code_change/3\n%% if its processes' state must change shape.\n`
    : `defmodule ${module} do\n  # The module's whole new source: every function it keeps, and code_change/3\n  # if its processes' state must change shape.\nend\n`;
}

function moduleOf(source: string, language: string): string | null {
  const m =
    language === "erlang"
      ? /-module\(\s*'?([a-z][\w@]*)'?\s*\)/.exec(source)
      : /defmodule\s+([A-Z][\w.]*)\s+do/.exec(source);
  return m ? m[1] : null;
}

function CodeTab({ id, info, reload }: { id: string; info: Info; reload: () => void }) {
  const language = info.sandbox.language;
  const [module, setModule] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  const [source, setSource] = useState(() => skeleton(language));
  const [force, setForce] = useState(false);
  const [report, setReport] = useState<SwapReport | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [versionsGen, setVersionsGen] = useState(0);
  const editor = useRef<HTMLTextAreaElement>(null);
  const generated = useRef(source); // the text the page wrote itself (safe to replace)
  const gutter = useRef<HTMLDivElement>(null);
  const badLines = new Set(errorLines(error).flatMap((d) => (d.line ? [d.line] : [])));
  const target = module.trim() || moduleOf(source, language) || "";
  const running = info.sandbox.status === "running";

  // Start from the module's current source (Arsenal keeps what it loaded), else a shell of it,
  // unless the editor already holds the author's own text.
  const edit = async (name: string) => {
    setModule(name);
    setSelected(name);
    editor.current?.focus();
    if (source.trim() && source !== generated.current) return;
    let current: string | null = null;
    try {
      const found = await get<{ source: string | null }>(
        `${sandboxPath(id)}/modules/${encodeURIComponent(name)}/versions`,
        undefined,
        null,
      );
      current = found.source;
    } catch {
      current = null; // no stored version: the shell below says what to write
    }
    generated.current = current ?? shellOf(name, language);
    setSource(generated.current);
  };

  const swap = async () => {
    setBusy(true);
    setError(null);
    setReport(null);
    try {
      const result = await post<SwapReport>(
        `${sandboxPath(id)}/modules/${encodeURIComponent(target)}/reload`,
        { source, language, force },
        null,
      );
      setReport(result);
      setSelected(result.module);
      setVersionsGen(versionsGen + 1);
      reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const jump = (line: number) => {
    // Select the line so the author sees where the compiler points.
    const area = editor.current;
    if (!area) return;
    const lines = area.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
  };

  return (
    <div class="sbx-code">
      <div class="panel sbx-modules">
        <h3>Modules Arsenal loaded</h3>
        {info.modules.length === 0 ? (
          <p class="dim">None yet: hot-swap a new module to start.</p>
        ) : (
          <table class="data" aria-label="modules">
            <thead>
              <tr>
                <th>module</th>
                <th class="num">versions</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {info.modules.map((m) => (
                <tr key={m.module} class={selected === m.module ? "sbx-selected" : ""}>
                  <td class="mono">
                    <button class="link mono" onClick={() => setSelected(m.module)}>
                      {m.module}
                    </button>
                  </td>
                  <td class="num">{m.versions}</td>
                  <td>
                    <button class="link" onClick={() => edit(m.module)} disabled={!running}>
                      edit
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {selected && (
          <Versions
            id={id}
            module={selected}
            generation={versionsGen}
            running={running}
            onRolledBack={(r) => {
              setReport(r);
              setError(null);
              setVersionsGen(versionsGen + 1);
              reload();
            }}
          />
        )}
      </div>
      <div class="panel sbx-editor">
        <h3>Editor</h3>
        <div class="toolbar">
          <label>
            module{" "}
            <input
              class="mono"
              aria-label="module"
              list={`sbx-modules-${id}`}
              value={module}
              placeholder={moduleOf(source, language) ?? (language === "erlang" ? "my_mod" : "MyApp.Worker")}
              onInput={(e) => setModule((e.target as HTMLInputElement).value)}
            />
          </label>
          <datalist id={`sbx-modules-${id}`}>
            {info.modules.map((m) => (
              <option value={m.module} key={m.module} />
            ))}
          </datalist>
          <span class="dim">{language}</span>
          <label class="sbx-check" title="load even if processes still run the old code: a purge kills them">
            <input type="checkbox" checked={force} onChange={() => setForce(!force)} /> force
          </label>
          {may("write") && (
            <button class="primary" onClick={swap} disabled={busy || !running || !target || !source.trim()}>
              {busy ? "Swapping …" : "Hot swap"}
            </button>
          )}
        </div>
        <p class="dim sbx-hint">
          The module's whole new source. Its processes are suspended, <code>code_change/3</code> runs if it is
          exported, and they resume with their state; a compile error leaves the running version untouched.
        </p>
        <div class="sbx-editor-box">
        <div class="sbx-gutter mono" ref={gutter} aria-hidden="true">
          {source.split("\n").map((_, i) => (
            <div key={i} class={badLines.has(i + 1) ? "sbx-bad-line" : ""}>
              {i + 1}
            </div>
          ))}
        </div>
        <textarea
          ref={editor}
          onScroll={(e) => gutter.current && (gutter.current.scrollTop = e.currentTarget.scrollTop)}
          wrap="off"
          class="mono sbx-source"
          aria-label="module source"
          spellcheck={false}
          rows={18}
          value={source}
          onInput={(e) => setSource((e.target as HTMLTextAreaElement).value)}
          onKeyDown={(e) => {
            // Tab indents (two spaces) instead of leaving the editor; Esc then Tab leaves it.
            if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey) {
              const area = e.currentTarget;
              e.preventDefault();
              const { selectionStart: a, selectionEnd: b } = area;
              const next = area.value.slice(0, a) + "  " + area.value.slice(b);
              setSource(next);
              requestAnimationFrame(() => area.setSelectionRange(a + 2, a + 2));
            } else if (e.key === "Escape") {
              e.currentTarget.blur();
            } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              if (running && target && may("write")) swap();
            }
          }}
        />
        </div>
        {error !== null && <SwapError error={error} onLine={jump} />}
        {report && <SwapReportView report={report} />}
      </div>
    </div>
  );
}

/** The compiler repeats the file (with the sandbox's path on the host) and line we already show. */
function cleanMessage(message: string | undefined): string {
  return (message ?? "").replace(/^\S+:\d+:\s*/, "");
}

function SwapError({ error, onLine }: { error: unknown; onLine: (line: number) => void }) {
  const lines = errorLines(error);
  const stage = error instanceof ApiError ? (error.meta as { stage?: string }).stage : undefined;
  return (
    <div class="error sbx-swap-error" role="alert">
      <strong>
        Not loaded{stage ? ` (${stage})` : ""}: the running version is unchanged.
      </strong>
      {lines.length ? (
        <ul>
          {lines.map((d, i) => (
            <li key={i}>
              {d.line ? (
                <button class="link mono" onClick={() => onLine(d.line!)}>
                  {d.file ?? "source"}:{d.line}
                </button>
              ) : (
                <span class="mono">{d.file ?? ""}</span>
              )}{" "}
              {d.call ? `${d.call}: ${d.reason ?? ""}` : cleanMessage(d.message)}
            </li>
          ))}
        </ul>
      ) : (
        <div>{error instanceof ApiError ? error.message : String(error)}</div>
      )}
    </div>
  );
}

function SwapReportView({ report }: { report: SwapReport }) {
  const failed = report.processes.filter((p) => p.code_change === "error");
  return (
    <div class="sbx-report" role="status" aria-label="hot swap report">
      <div class={failed.length ? "bad" : "ok"}>
        <strong>
          {failed.length ? "✗" : "✓"} {report.module} v{report.version} loaded
        </strong>
        {report.processes.length > 0 &&
          ` · ${report.processes.length} process${report.processes.length > 1 ? "es" : ""} converted`}
      </div>
      <div>
        exports added:{" "}
        {report.exports_added.length ? <span class="ok mono">{report.exports_added.join(", ")}</span> : <span class="dim">none</span>}
      </div>
      <div>
        exports removed:{" "}
        {report.exports_removed.length ? (
          <span class="warn mono">{report.exports_removed.join(", ")} (callers will fail with undef)</span>
        ) : (
          <span class="dim">none</span>
        )}
      </div>
      {report.processes.length > 0 && (
        <table class="data" aria-label="processes of the module">
          <thead>
            <tr>
              <th>pid</th>
              <th>name</th>
              <th>code_change</th>
              <th>state changed</th>
            </tr>
          </thead>
          <tbody>
            {report.processes.map((p) => (
              <tr key={p.pid}>
                <td class="mono">{p.pid}</td>
                <td>{p.name && p.name !== "undefined" ? p.name : <span class="dim">not registered</span>}</td>
                <td class={p.code_change === "ok" ? "ok" : p.code_change === "error" ? "bad" : "dim"}>
                  {p.code_change}
                  {p.reason ? `: ${p.reason}` : ""}
                </td>
                <td>{p.state_changed ? "yes" : "no"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {report.killed.length > 0 && <div class="bad">killed by the purge: {report.killed.join(", ")}</div>}
      {report.warnings.length > 0 && (
        <ul class="warn">
          {report.warnings.map((w, i) => (
            <li key={i}>
              {w.line ? `line ${w.line}: ` : ""}
              {w.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function Versions({
  id,
  module,
  generation,
  running,
  onRolledBack,
}: {
  id: string;
  module: string;
  generation: number;
  running: boolean;
  onRolledBack: (r: SwapReport) => void;
}) {
  const path = `${sandboxPath(id)}/modules/${encodeURIComponent(module)}`;
  const versions = useApi(
    () => get<{ versions: VersionInfo[] }>(`${path}/versions`, undefined, null),
    [path, generation],
  );
  const [busy, setBusy] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  const rollback = async (version: number) => {
    setBusy(version);
    setError(null);
    try {
      onRolledBack(await post<SwapReport>(`${path}/rollback`, { version }, null));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };
  return (
    <div class="sbx-versions">
      <h3>
        Versions of <span class="mono">{module}</span>
      </h3>
      {versions.error !== null && <ErrorBox error={versions.error} retry={versions.reload} />}
      {error !== null && <ErrorBox error={error} />}
      {!versions.data ? (
        versions.loading && <Loading what="loading versions" />
      ) : (
        <table class="data" aria-label="versions">
          <thead>
            <tr>
              <th class="num">v</th>
              <th>note</th>
              <th>loaded</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {versions.data.versions.map((v) => (
              <tr key={v.version}>
                <td class="num" title={`md5 ${v.md5}`}>{v.version}</td>
                <td>
                  {v.note}
                  {v.current && <span class="ok"> (current)</span>}
                </td>
                <td class="dim">{v.created_at ? new Date(v.created_at).toLocaleTimeString() : "—"}</td>
                <td>
                  {!v.current && may("write") && (
                    <button class="link" disabled={!running || busy !== null} onClick={() => rollback(v.version)}>
                      {busy === v.version ? "rolling back …" : `roll back to v${v.version}`}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

// ------------------------------------------------------------------ the REPL

interface ReplMessage {
  type: "ready" | "incomplete" | "result" | "magic" | "error" | "completions";
  text?: string;
  language?: string;
  output?: string;
  items?: string[];
  errors?: { detail?: string; title?: string }[];
  error?: { kind?: string; message?: string; line?: number } | null;
}

function openRepl(id: string): WebSocket {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const key = encodeURIComponent(session.value?.key ?? "");
  return new WebSocket(`${scheme}://${location.host}/api/v1${sandboxPath(id)}/repl?access_token=${key}`);
}

function messageText(m: ReplMessage): string {
  if (m.text) return m.text;
  if (m.errors?.length) return m.errors.map((e) => e.detail ?? e.title ?? "error").join("; ");
  return "error";
}

interface Entry {
  kind: "in" | "out" | "value" | "error" | "magic" | "info";
  text: string;
}

const MAX_ENTRIES = 400; // the transcript is bounded: old entries scroll away
const MAX_HISTORY = 200;

function Repl({ id, running }: { id: string; running: boolean }) {
  const [entries, setEntries] = useState<Entry[]>([]);
  const [state, setState] = useState<"connecting" | "ready" | "closed">("connecting");
  const [input, setInput] = useState("");
  const [waiting, setWaiting] = useState(false);
  const [incomplete, setIncomplete] = useState(false);
  const [completions, setCompletions] = useState<string[]>([]);
  const [generation, setGeneration] = useState(0);
  const socket = useRef<WebSocket | null>(null);
  const history = useRef<string[]>([]);
  const cursor = useRef<number>(-1); // -1: not browsing the history
  const draft = useRef("");
  const out = useRef<HTMLDivElement>(null);
  const field = useRef<HTMLTextAreaElement>(null);

  const add = (...more: Entry[]) => setEntries((old) => [...old, ...more].slice(-MAX_ENTRIES));

  useEffect(() => {
    if (!running) {
      setState("closed");
      return;
    }
    setState("connecting");
    const ws = openRepl(id);
    socket.current = ws;
    let ended = false;
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data as string) as ReplMessage;
      switch (m.type) {
        case "ready":
          setState("ready");
          add({ kind: "info", text: `session started (${m.language}); :help lists the magic commands` });
          break;
        case "incomplete":
          setIncomplete(true);
          setWaiting(false);
          break;
        case "result":
          setIncomplete(false);
          setWaiting(false);
          if (m.output) add({ kind: "out", text: m.output.replace(/\n$/, "") });
          add({ kind: "value", text: m.text ?? "" });
          break;
        case "magic":
          setIncomplete(false);
          setWaiting(false);
          add({ kind: "magic", text: m.text ?? "" });
          break;
        case "error":
          setIncomplete(false);
          setWaiting(false);
          if (m.output) add({ kind: "out", text: m.output.replace(/\n$/, "") });
          add({ kind: "error", text: messageText(m) });
          break;
        case "completions":
          applyCompletions(m.items ?? []);
          break;
      }
    };
    ws.onclose = (event) => {
      if (ended) return;
      setState("closed");
      setWaiting(false);
      add({ kind: "info", text: `session ended${event.reason ? ": " + event.reason : ""} (its bindings are gone)` });
    };
    return () => {
      ended = true;
      ws.close();
      socket.current = null;
    };
  }, [id, running, generation]);

  useEffect(() => {
    const el = out.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [entries]);

  const send = (message: object) => {
    if (socket.current?.readyState === WebSocket.OPEN) socket.current.send(JSON.stringify(message));
  };

  const submit = () => {
    const text = input;
    if (state !== "ready" || waiting) return;
    add({ kind: "in", text });
    if (text.trim()) {
      const h = history.current;
      if (h[h.length - 1] !== text) h.push(text);
      if (h.length > MAX_HISTORY) h.shift();
    }
    cursor.current = -1;
    setInput("");
    setCompletions([]);
    setWaiting(true);
    send({ input: text });
  };

  // The word before the caret, for Tab completion.
  const wordBefore = (): [string, number] => {
    // Read the field itself: this also runs from the socket's handler, whose `input` is stale.
    const area = field.current;
    const text = area?.value ?? "";
    const end = area ? area.selectionStart : text.length;
    const m = /[\w.:?!@]*$/.exec(text.slice(0, end));
    return [m ? m[0] : "", end];
  };

  // The server answers full names (`Mod.fun/2`): put the one candidate, or the candidates'
  // common prefix, in place of the word (without the arity), and list them when several.
  const applyCompletions = (items: string[]) => {
    const [word, end] = wordBefore();
    const names = [...new Set(items.map((item) => item.replace(/\/\d+$/, "")))];
    let common = names[0] ?? "";
    for (const name of names) while (!name.startsWith(common)) common = common.slice(0, -1);
    if (common.length > word.length && common.startsWith(word)) {
      setInput((current) => current.slice(0, end - word.length) + common + current.slice(end));
      const caret = end - word.length + common.length;
      requestAnimationFrame(() => field.current?.setSelectionRange(caret, caret));
    }
    setCompletions(names.length > 1 ? items.slice(0, 60) : names.length ? [] : ["(no completions)"]);
  };

  const onKey = (e: KeyboardEvent) => {
    const area = e.currentTarget as HTMLTextAreaElement;
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      submit();
    } else if (e.key === "Tab" && !e.shiftKey) {
      const [word] = wordBefore();
      if (!word) return; // nothing to complete: let Tab move the focus
      e.preventDefault();
      send({ complete: word });
    } else if (e.key === "ArrowUp" && !area.value.slice(0, area.selectionStart).includes("\n")) {
      const h = history.current;
      if (!h.length) return;
      e.preventDefault();
      if (cursor.current === -1) {
        draft.current = input;
        cursor.current = h.length - 1;
      } else cursor.current = Math.max(0, cursor.current - 1);
      setInput(h[cursor.current]);
    } else if (e.key === "ArrowDown" && !area.value.slice(area.selectionEnd).includes("\n")) {
      if (cursor.current === -1) return;
      e.preventDefault();
      const h = history.current;
      if (cursor.current >= h.length - 1) {
        cursor.current = -1;
        setInput(draft.current);
      } else {
        cursor.current += 1;
        setInput(h[cursor.current]);
      }
    } else if (e.key === "Escape") {
      if (incomplete) {
        send({ cancel: true });
        setIncomplete(false);
        add({ kind: "info", text: "incomplete input dropped" });
      } else area.blur();
    }
  };

  const prompt = `${id}${incomplete ? "…" : ""}>`;
  return (
    <div class="panel sbx-repl">
      <div class="toolbar">
        <h3>REPL</h3>
        <span class={state === "ready" ? "ok" : state === "connecting" ? "warn" : "bad"} role="status">
          {state === "ready" ? "connected" : state === "connecting" ? "connecting …" : running ? "disconnected" : "the node is not running"}
        </span>
        {[":tree", ":processes", ":apps", ":info"].map((cmd) => (
          <button
            key={cmd}
            class="link mono"
            disabled={state !== "ready" || waiting}
            onClick={() => {
              add({ kind: "in", text: cmd });
              setWaiting(true);
              send({ input: cmd });
            }}
          >
            {cmd}
          </button>
        ))}
        <span class="sbx-spacer" />
        <button class="link" onClick={() => setEntries([])}>
          clear
        </button>
        {state === "closed" && running && (
          <button onClick={() => setGeneration(generation + 1)}>Reconnect</button>
        )}
      </div>
      <div class="sbx-transcript mono" ref={out} aria-label="REPL output" aria-live="polite">
        {entries.map((entry, i) => (
          <div key={i} class={`sbx-entry sbx-${entry.kind}`}>
            {entry.kind === "in" ? (
              <>
                <span class="sbx-prompt">{id}&gt; </span>
                {entry.text}
              </>
            ) : (
              entry.text
            )}
          </div>
        ))}
        {waiting && <div class="sbx-entry dim">running …</div>}
      </div>
      {completions.length > 0 && (
        <div class="sbx-completions mono" aria-label="completions">
          {completions.join("  ")}
        </div>
      )}
      <div class="sbx-input">
        <span class="sbx-prompt mono">{prompt}</span>
        <textarea
          ref={field}
          class="mono"
          aria-label="REPL input"
          rows={Math.min(8, input.split("\n").length)}
          spellcheck={false}
          disabled={state !== "ready"}
          value={input}
          placeholder={state === "ready" ? "Enter runs · Shift+Enter new line · ↑↓ history · Tab completes" : ""}
          onInput={(e) => setInput((e.target as HTMLTextAreaElement).value)}
          onKeyDown={onKey}
        />
      </div>
    </div>
  );
}
