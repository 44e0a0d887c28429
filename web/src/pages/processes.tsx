// The process table: observer's process list for nodes with a million processes. The VM ranks and
// filters (list_processes: a bounded top-N scan per page; get_process_window: reductions over a
// window, like `arsenal top`); the page only ever holds one page of rows, pages with the API's
// cursor, and refreshes itself one request at a time (the next poll waits for the last answer, so
// a slow scan never piles requests up).
import { useEffect, useRef, useState } from "preact/hooks";
import { del, get, pidPath, post } from "../api";
import { Confirm, ErrorBox } from "../components";
import { bytes, count } from "../format";
import { useCurrentNode } from "../nodes";
import { may } from "../session";
import { inspectorHref } from "../term";
import "./processes.css";

// ------------------------------------------------------------------ the API's shapes

type SortKey = "memory" | "reductions" | "message_queue_len";
/** "window": reductions over a one-second window (get_process_window), the rest list_processes. */
type Sort = SortKey | "window";

interface Row {
  pid: string;
  registered_name: string | null;
  current_function: string | null;
  initial_call: string | null;
  memory: number;
  reductions: number;
  message_queue_len: number;
  status: string;
  reductions_delta?: number;
}

interface ProcessList {
  node: string;
  sort: SortKey;
  process_count: number;
  processes: Row[];
  next_cursor: string | null;
}

interface ProcessWindow {
  node: string;
  process_count: number;
  scheduler_usage: number;
  processes: Row[];
}

const STATUSES = ["running", "runnable", "waiting", "garbage_collecting", "suspended", "exiting"];
const PAGE_SIZES = [25, 50, 100];
const REFRESH_MS = 5000;
const WINDOW_MS = 1000;
const MAX_WINDOW_OFFSET = 100_000; // the window op's own bound on offset

// ------------------------------------------------------------------ columns

type ColumnId =
  | "registered_name"
  | "initial_call"
  | "current_function"
  | "memory"
  | "reductions"
  | "reductions_delta"
  | "message_queue_len"
  | "status";

interface Column {
  id: ColumnId;
  label: string;
  numeric?: boolean;
  sort?: Sort; // clicking the header ranks by this
  cell: (row: Row) => string;
  title?: string;
}

const COLUMNS: Column[] = [
  { id: "registered_name", label: "Name", cell: (r) => r.registered_name ?? "" },
  { id: "initial_call", label: "Initial call", cell: (r) => r.initial_call ?? "—" },
  { id: "current_function", label: "Current function", cell: (r) => r.current_function ?? "—" },
  { id: "memory", label: "Memory", numeric: true, sort: "memory", cell: (r) => bytes(r.memory) },
  { id: "reductions", label: "Reductions", numeric: true, sort: "reductions", cell: (r) => count(r.reductions) },
  {
    id: "reductions_delta",
    label: "Reds / 1 s",
    numeric: true,
    sort: "window",
    title: "Reductions over a one-second window (like arsenal top); click to rank by it",
    cell: (r) => (r.reductions_delta === undefined ? "—" : count(r.reductions_delta)),
  },
  { id: "message_queue_len", label: "Queue", numeric: true, sort: "message_queue_len", cell: (r) => count(r.message_queue_len) },
  { id: "status", label: "Status", cell: (r) => r.status },
];

const COLUMNS_SAVED = "arsenal.processes.columns";
const DEFAULT_COLUMNS: ColumnId[] = COLUMNS.map((c) => c.id);

function loadColumns(): ColumnId[] {
  try {
    const saved = JSON.parse(localStorage.getItem(COLUMNS_SAVED) ?? "null");
    if (Array.isArray(saved)) return DEFAULT_COLUMNS.filter((id) => saved.includes(id));
  } catch {
    // A corrupt entry is ignored: the default columns.
  }
  return DEFAULT_COLUMNS;
}

function useColumns(): [ColumnId[], (id: ColumnId, on: boolean) => void] {
  const [shown, setShown] = useState<ColumnId[]>(loadColumns);
  const toggle = (id: ColumnId, on: boolean) => {
    const next = DEFAULT_COLUMNS.filter((c) => (c === id ? on : shown.includes(c)));
    localStorage.setItem(COLUMNS_SAVED, JSON.stringify(next));
    setShown(next);
  };
  return [shown, toggle];
}

// ------------------------------------------------------------------ the query

type SearchIn = "name" | "module";

interface Query {
  sort: Sort;
  search: string;
  searchIn: SearchIn;
  status: string;
  minQueue: string;
  limit: number;
}

/** The module a search names, as the agent wants it (an atom's text): accepts the way the node's
 *  language prints modules and calls — `:gen_server`, `ArsenalDemo.Counter`, `Mod.fun/2`,
 *  `gen_server:loop/7` — so a value copied from the table's cells works. */
export function moduleOf(text: string, elixir: boolean): string {
  let t = text.trim().replace(/\/\d+$/, "");
  if (t.startsWith(":")) return t.slice(1).split(/[.:]/)[0];
  const colon = t.indexOf(":");
  if (colon > 0) t = t.slice(0, colon);
  if (elixir && /^[A-Z]/.test(t)) {
    const alias = t.split(".").filter((part) => /^[A-Z]/.test(part));
    return "Elixir." + alias.join(".");
  }
  return t;
}

interface PageData {
  key: string; // the query it answers (rows of an older query are shown dimmed until the new ones come)
  rows: Row[];
  processCount: number;
  next: string | null; // list: the next cursor; window: the next offset
  schedulerUsage?: number;
  at: Date;
}

function queryKey(q: Query, cursor: string | null): string {
  return JSON.stringify([q, cursor]);
}

async function loadPage(q: Query, cursor: string | null, elixir: boolean): Promise<PageData> {
  const key = queryKey(q, cursor);
  if (q.sort === "window") {
    const offset = cursor ? Number(cursor) : 0;
    const data = await get<ProcessWindow>("/processes/window", {
      sort_by: "reductions",
      window_ms: WINDOW_MS,
      limit: q.limit,
      offset,
    });
    const nextOffset = offset + q.limit;
    return {
      key,
      rows: data.processes,
      processCount: data.process_count,
      next: data.processes.length >= q.limit && nextOffset <= MAX_WINDOW_OFFSET ? String(nextOffset) : null,
      schedulerUsage: data.scheduler_usage,
      at: new Date(),
    };
  }
  const search = q.search.trim();
  const data = await get<ProcessList>("/processes", {
    sort_by: q.sort,
    limit: q.limit,
    cursor,
    // Elixir prints Erlang names as :name; the atom's text has no colon.
    name: q.searchIn === "name" ? (elixir ? search.replace(/^:/, "") : search) : undefined,
    module: q.searchIn === "module" && search ? moduleOf(search, elixir) : undefined,
    status: q.status || undefined,
    min_queue: q.minQueue || undefined,
  });
  return { key, rows: data.processes, processCount: data.process_count, next: data.next_cursor, at: new Date() };
}

/** Loads the page for `key`, then again REFRESH_MS after each answer while not paused. */
function usePoll(load: () => Promise<PageData>, key: string, paused: boolean, tick: number) {
  const [data, setData] = useState<PageData | undefined>();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const run = () => {
      setBusy(true);
      const started = performance.now();
      load().then(
        (page) => {
          if (stopped) return;
          setData(page);
          setError(null);
        },
        (failure) => !stopped && setError(failure),
      ).finally(() => {
        if (stopped) return;
        setBusy(false);
        // Each refresh is a scan of every process: on a big node (5 s at a million) wait four times
        // as long as the last one took, so the page never keeps a scheduler busy.
        if (!paused) timer = window.setTimeout(run, Math.max(REFRESH_MS, 4 * (performance.now() - started)));
      });
    };
    run();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [key, paused, tick]);
  return { data, error, busy };
}

// ------------------------------------------------------------------ the page

type Pending = { row: Row } | null;

export function ProcessesPage() {
  const node = useCurrentNode();
  const elixir = node?.language !== "erlang";
  const [query, setQuery] = useState<Query>(() => ({
    sort: initialSort(),
    search: "",
    searchIn: "name",
    status: "",
    minQueue: "",
    limit: 50,
  }));
  const [typed, setTyped] = useState(""); // the search box, applied after a pause in typing
  const [cursors, setCursors] = useState<(string | null)[]>([null]); // one per page seen
  const [paused, setPaused] = useState(false);
  const [tick, setTick] = useState(0);
  const [columns, toggleColumn] = useColumns();
  const [notice, setNotice] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [confirmKill, setConfirmKill] = useState<Pending>(null);
  const [working, setWorking] = useState<string | null>(null); // the pid an action runs on

  const cursor = cursors[cursors.length - 1];
  const key = queryKey(query, cursor);
  const { data, error, busy } = usePoll(() => loadPage(query, cursor, elixir), key, paused, tick);

  // A new query starts again at page 1.
  const change = (patch: Partial<Query>) => {
    setQuery((q) => ({ ...q, ...patch }));
    setCursors([null]);
  };

  useEffect(() => {
    if (typed === query.search) return;
    const timer = window.setTimeout(() => change({ search: typed }), 300);
    return () => window.clearTimeout(timer);
  }, [typed]);

  // The sort is kept in the address: a reload or a shared link ranks the same way.
  useEffect(() => {
    history.replaceState(null, "", `#/processes?sort=${query.sort}`);
  }, [query.sort]);

  const canWrite = may("write");
  const canKill = may("destructive");
  const windowed = query.sort === "window";
  // Stale: the rows answer an older query, or the search box holds text not yet applied.
  const stale = !data || data.key !== key || (!windowed && typed !== query.search);
  const shownColumns = COLUMNS.filter((c) => columns.includes(c.id));

  const act = async (row: Row, what: "gc" | "suspend" | "resume" | "kill") => {
    setWorking(row.pid);
    setActionError(null);
    setNotice(null);
    try {
      const path = `/processes/${pidPath(row.pid)}`;
      if (what === "gc") {
        const r = await post<{ memory_before: number; memory_after: number }>(`${path}/gc`);
        setNotice(`Garbage-collected ${row.pid}: ${bytes(r.memory_before)} → ${bytes(r.memory_after)}.`);
      } else if (what === "kill") {
        const r = await del<{ died: boolean; exit_reason: string | null }>(path);
        setNotice(r.died ? `Killed ${row.pid} (${r.exit_reason ?? "killed"}).` : `${row.pid} did not exit in time.`);
      } else {
        const r = await post<{ status: string }>(`${path}/${what}`);
        setNotice(`${row.pid}: ${r.status.replace(/_/g, " ")}.`);
      }
    } catch (failure) {
      // A process that died meanwhile, a protected one, a node gone: the server's own words.
      setActionError(failure);
    } finally {
      setWorking(null);
      setTick((t) => t + 1);
    }
  };

  return (
    <div class="processes">
      <div class="toolbar">
        <h2>Processes</h2>
        <label class="search">
          <span class="sr">search</span>
          <input
            data-search
            type="search"
            aria-label="search processes"
            placeholder={query.searchIn === "name" ? "registered name contains …  ( / )" : "module of initial call / current function"}
            title={
              query.searchIn === "name"
                ? "Processes whose registered name contains this"
                : "Processes running, or started in, this module (as the node prints it: ArsenalDemo.Worker, :gen_server, mod:fun/2)"
            }
            value={typed}
            disabled={windowed}
            onInput={(e) => setTyped((e.target as HTMLInputElement).value)}
            onKeyDown={(e) => e.key === "Enter" && change({ search: typed })}
          />
        </label>
        <select
          aria-label="search in"
          value={query.searchIn}
          disabled={windowed}
          onChange={(e) => change({ searchIn: (e.target as HTMLSelectElement).value as SearchIn })}
        >
          <option value="name">in names</option>
          <option value="module">in modules</option>
        </select>
        <select
          aria-label="status"
          value={query.status}
          disabled={windowed}
          onChange={(e) => change({ status: (e.target as HTMLSelectElement).value })}
        >
          <option value="">any status</option>
          {STATUSES.map((s) => (
            <option value={s} key={s}>
              {s.replace(/_/g, " ")}
            </option>
          ))}
        </select>
        <input
          class="min-queue"
          type="number"
          min={0}
          aria-label="minimum queue"
          placeholder="queue ≥"
          value={query.minQueue}
          disabled={windowed}
          onChange={(e) => change({ minQueue: (e.target as HTMLInputElement).value.replace(/[^0-9]/g, "") })}
        />
        <label class="dim">
          sort{" "}
          <select aria-label="sort by" value={query.sort} onChange={(e) => change({ sort: (e.target as HTMLSelectElement).value as Sort })}>
            <option value="memory">memory</option>
            <option value="reductions">reductions</option>
            <option value="message_queue_len">message queue</option>
            <option value="window">reductions over 1 s</option>
          </select>
        </label>
        <ColumnPicker shown={columns} toggle={toggleColumn} />
        <span class="spacer" />
        <button onClick={() => setPaused(!paused)} aria-pressed={paused} title="Refresh every 5 s (longer when a scan takes long)">
          {paused ? "▶ Resume refresh" : "❚❚ Pause refresh"}
        </button>
        <button onClick={() => setTick((t) => t + 1)} disabled={busy}>
          Refresh
        </button>
      </div>
      {windowed && (
        <p class="dim hint">
          Ranked by reductions over a {WINDOW_MS / 1000} s window, like <code>arsenal top</code>; filters apply to the other sorts.
          {data?.schedulerUsage !== undefined && !stale && <> Scheduler usage {Math.round(data.schedulerUsage * 100)}%.</>}
        </p>
      )}
      {notice && (
        <div class="notice" role="status">
          {notice}
        </div>
      )}
      {actionError !== null && <ErrorBox error={actionError} retry={() => setActionError(null)} />}
      {error !== null && <ErrorBox error={error} retry={() => setTick((t) => t + 1)} />}
      <div class="panel table-panel">
        <table class="data proc-table" aria-busy={stale ? "true" : "false"} data-sort={stale ? "" : query.sort}>
          <thead>
            <tr>
              <th>Pid</th>
              {shownColumns.map((c) => (
                <Header column={c} current={query.sort} onSort={(sort) => change({ sort })} key={c.id} />
              ))}
              {(canWrite || canKill) && <th class="actions-head">Actions</th>}
            </tr>
          </thead>
          <tbody class={stale ? "stale" : ""}>
            {data?.rows.map((row) => (
              <ProcessRow
                row={row}
                columns={shownColumns}
                node={node?.name}
                key={row.pid}
                busy={working === row.pid}
                canWrite={canWrite}
                canKill={canKill}
                onAct={(what) => (what === "kill" ? setConfirmKill({ row }) : act(row, what))}
              />
            ))}
          </tbody>
        </table>
        {!data && !error && <div class="loading" aria-busy="true">scanning the node's processes …</div>}
        {data && !stale && data.rows.length === 0 && <div class="empty dim">No process matches.</div>}
      </div>
      <div class="toolbar pager">
        <button onClick={() => setCursors(cursors.slice(0, -1))} disabled={cursors.length <= 1}>
          ← Previous
        </button>
        <span class="page-no">page {cursors.length}</span>
        <button onClick={() => data?.next && setCursors([...cursors, data.next])} disabled={stale || !data?.next}>
          Next →
        </button>
        <label class="dim">
          rows{" "}
          <select aria-label="rows per page" value={query.limit} onChange={(e) => change({ limit: Number((e.target as HTMLSelectElement).value) })}>
            {PAGE_SIZES.map((n) => (
              <option value={n} key={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <span class="dim">
          {data && `${count(data.processCount)} processes on ${node?.name ?? "the node"} · updated ${data.at.toLocaleTimeString()}`}
          {paused && " · refresh paused"}
          {busy && " · loading …"}
        </span>
      </div>
      {confirmKill && (
        <Confirm
          title={`Kill ${confirmKill.row.pid}?`}
          confirm="Kill"
          onCancel={() => setConfirmKill(null)}
          onConfirm={() => {
            const row = confirmKill.row;
            setConfirmKill(null);
            act(row, "kill");
          }}
        >
          <p>
            Sends <code>exit(Pid, kill)</code> to {confirmKill.row.registered_name ?? confirmKill.row.pid}
            {confirmKill.row.initial_call && <> ({confirmKill.row.initial_call})</>}. Its state is lost; linked processes die
            too unless they trap exits; a supervised process is restarted by its supervisor.
          </p>
        </Confirm>
      )}
    </div>
  );
}

function initialSort(): Sort {
  const asked = new URLSearchParams(location.hash.split("?")[1] ?? "").get("sort");
  return asked === "reductions" || asked === "message_queue_len" || asked === "window" ? asked : "memory";
}

function Header({ column, current, onSort }: { column: Column; current: Sort; onSort: (sort: Sort) => void }) {
  const cls = column.numeric ? "num" : "";
  if (!column.sort) return <th class={cls}>{column.label}</th>;
  const active = column.sort === current;
  const sort = column.sort;
  return (
    <th class={cls} aria-sort={active ? "descending" : "none"} title={column.title}>
      <button class={active ? "sorted" : ""} onClick={() => onSort(sort)}>
        {column.label}
        {active ? " ▼" : ""}
      </button>
    </th>
  );
}

function ColumnPicker({ shown, toggle }: { shown: ColumnId[]; toggle: (id: ColumnId, on: boolean) => void }) {
  const ref = useRef<HTMLDetailsElement>(null);
  // Close on Escape or a click elsewhere, like a menu.
  useEffect(() => {
    const close = (e: Event) => {
      const details = ref.current;
      if (!details?.open) return;
      if (e instanceof KeyboardEvent ? e.key === "Escape" : !details.contains(e.target as Node)) details.open = false;
    };
    window.addEventListener("click", close);
    window.addEventListener("keydown", close);
    return () => {
      window.removeEventListener("click", close);
      window.removeEventListener("keydown", close);
    };
  }, []);
  return (
    <details class="column-picker" ref={ref}>
      <summary>Columns</summary>
      <div class="menu" role="group" aria-label="columns">
        {COLUMNS.map((c) => (
          <label key={c.id}>
            <input type="checkbox" checked={shown.includes(c.id)} onChange={(e) => toggle(c.id, (e.target as HTMLInputElement).checked)} />
            {c.label}
          </label>
        ))}
      </div>
    </details>
  );
}

function ProcessRow({
  row,
  columns,
  node,
  busy,
  canWrite,
  canKill,
  onAct,
}: {
  row: Row;
  columns: Column[];
  node?: string;
  busy: boolean;
  canWrite: boolean;
  canKill: boolean;
  onAct: (what: "gc" | "suspend" | "resume" | "kill") => void;
}) {
  const href = inspectorHref(row.pid, node);
  const suspended = row.status === "suspended";
  return (
    <tr
      tabIndex={0}
      data-pid={row.pid}
      aria-label={`${row.registered_name ?? row.pid}`}
      // Enter on the row (not on one of its buttons) opens the inspector.
      onKeyDown={(e) => {
        if (e.key === "Enter" && e.target === e.currentTarget) {
          e.preventDefault();
          location.hash = href;
        }
      }}
    >
      <td class="pid mono">
        <a href={href} tabIndex={-1}>
          {row.pid}
        </a>
      </td>
      {columns.map((c) => {
        const text = c.cell(row);
        const raw = (row as unknown as Record<string, unknown>)[c.id];
        return (
          <td
            key={c.id}
            class={`col-${c.id}${c.numeric ? " num" : ""}${c.id === "status" ? " " + statusClass(row.status) : ""}`}
            data-col={c.id}
            data-value={typeof raw === "number" ? raw : undefined}
            title={c.numeric ? undefined : text}
          >
            {text}
          </td>
        );
      })}
      {(canWrite || canKill) && (
        <td class="actions">
          {canWrite && (
            <>
              <button disabled={busy} onClick={() => onAct("gc")} title="Force a full garbage collection (write)">
                GC
              </button>
              <button disabled={busy} onClick={() => onAct(suspended ? "resume" : "suspend")} title={suspended ? "Resume it (write)" : "Suspend it (write)"}>
                {suspended ? "Resume" : "Suspend"}
              </button>
            </>
          )}
          {canKill && (
            <button class="danger" disabled={busy} onClick={() => onAct("kill")} title="Kill it (destructive)">
              Kill
            </button>
          )}
        </td>
      )}
    </tr>
  );
}

function statusClass(status: string): string {
  if (status === "suspended" || status === "garbage_collecting") return "warn";
  if (status === "exiting") return "bad";
  if (status === "running" || status === "runnable") return "ok";
  return "dim";
}

