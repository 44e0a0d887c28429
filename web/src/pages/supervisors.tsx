// The supervision tree explorer (#/supervisors): applications → their top supervisors → children,
// drawn as an SVG tree we lay out ourselves (zoom, pan, fold), polled every 2 s so a restarted
// child (its pid changed between two polls) flashes and counts against its supervisor. A side
// panel shows the selected node and the actions its severity allows.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, get, pidPath, post, put } from "../api";
import { Confirm, ErrorBox, Loading, useApi } from "../components";
import { bytes, count, duration } from "../format";
import { useCurrentNode } from "../nodes";
import { may, session, useStore } from "../session";
import { inspectorHref } from "../term";
import "./supervisors.css";

// ---------------------------------------------------------------------------- API shapes

interface SupNode {
  pid: string | null;
  state: string;
  name: string | null;
  id: unknown;
  type: string;
  restart: string | null;
  strategy?: string | null;
  module?: string | null;
  application?: string | null;
  children: SupNode[];
  truncated: boolean;
  error?: string | null;
}

interface Tree {
  node: string;
  roots: SupNode[];
  node_count: number;
  truncated: boolean;
}

interface AppRow {
  name: string;
  description: string;
  version: string;
  process_count: number;
}

interface Flags {
  pid: string;
  kind: string;
  strategy: string;
  intensity: number;
  period: number;
  auto_shutdown: string;
  paused: boolean;
  max_children?: unknown;
}

interface Analytics {
  recording: boolean;
  restarts: number;
  window: number;
  most_crashed: { id: string; crashes: number; last_reason: string | null; last_crash: number }[];
  uptime: { id: string; average_uptime_s: number | null; current_uptime_s: number | null }[];
  intensity: { limit: number; period: number; recent_restarts: number; usage: number };
}

interface ProcRow {
  pid: string;
  memory: number;
  message_queue_len: number;
  reductions: number;
  status: string;
}

interface FailureResult {
  child_died: boolean;
  supervisor_alive: boolean;
  restarted: string[];
  changes: { id: unknown; old_pid: string | null; new_pid: string | null; outcome: string }[];
}

// Bounds: the tree operation's own limits (max_depth ≤ 20, max_nodes ≤ 2000); we ask for less.
const MAX_DEPTH = 6;
const MAX_NODES = 500;
const POLL_MS = 2000;
const OVERLAY_ROWS = 500; // the largest processes the resource overlay colours (list_processes ≤ 1000)
const FOLD_LEVEL = 2; // supervisors this deep (applications are level 0) start folded
const FOLD_WIDE = 40; // ... and so do supervisors with more children than this
const FLASH_MS = 4000;

// ---------------------------------------------------------------------------- the view model

/** A node as drawn: an application, a supervisor or a worker, with a stable key (its path of ids,
 *  so a restarted child keeps its key while its pid changes). */
interface VNode {
  key: string;
  kind: "app" | "supervisor" | "worker";
  label: string;
  raw: SupNode | null; // null for an application
  app?: AppRow;
  parent: VNode | null;
  children: VNode[];
  level: number;
  truncated: boolean;
}

const text = (v: unknown): string => (v === null || v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));

function childKey(parent: string, n: SupNode): string {
  // Dynamic children have no id: their registered name, else their pid (a restart is then a new node).
  const part = n.id !== null && n.id !== undefined ? text(n.id) : (n.name ?? n.pid ?? "?");
  return `${parent}/${part}`;
}

function build(tree: Tree, apps: AppRow[] | undefined, scoped: boolean): VNode[] {
  const convert = (n: SupNode, key: string, parent: VNode | null, level: number): VNode => {
    const v: VNode = {
      key,
      kind: n.type === "supervisor" ? "supervisor" : "worker",
      label: n.name ?? (text(n.id) || n.pid || "?"),
      raw: n,
      parent,
      children: [],
      level,
      truncated: n.truncated,
    };
    v.children = n.children.map((c) => convert(c, childKey(key, c), v, level + 1));
    return v;
  };
  if (scoped) return tree.roots.map((r) => convert(r, `root:${r.name ?? r.pid}`, null, 1));
  // Applications first, each with its top supervisor(s); then roots of no application.
  const byApp = new Map<string, SupNode[]>();
  for (const r of tree.roots) {
    const app = r.application ?? "";
    byApp.set(app, [...(byApp.get(app) ?? []), r]);
  }
  const out: VNode[] = [];
  const names = new Set<string>([...(apps ?? []).map((a) => a.name), ...byApp.keys()]);
  for (const name of [...names].sort()) {
    const app: VNode = {
      key: `app:${name}`,
      kind: "app",
      label: name || "(no application)",
      raw: null,
      app: apps?.find((a) => a.name === name),
      parent: null,
      children: [],
      level: 0,
      truncated: false,
    };
    app.children = (byApp.get(name) ?? []).map((r) => convert(r, `${app.key}/${r.name ?? r.pid}`, app, 1));
    out.push(app);
  }
  return out;
}

const defaultFolded = (v: VNode) => v.kind !== "worker" && (v.level >= FOLD_LEVEL || v.children.length > FOLD_WIDE);

interface Placed {
  v: VNode;
  x: number;
  y: number;
}

const COL = 250;
const ROW = 30;

/** Left-to-right tidy layout: every visible leaf gets a row, a parent sits midway along its
 *  children. Returns the placed nodes in visiting order (also the keyboard order). */
function layout(roots: VNode[], isOpen: (v: VNode) => boolean): { placed: Placed[]; width: number; height: number } {
  const placed: Placed[] = [];
  let row = 0;
  let maxLevel = 0;
  const minLevel = roots[0]?.level ?? 0;
  const visit = (v: VNode): number => {
    const at = placed.length;
    placed.push({ v, x: (v.level - minLevel) * COL, y: 0 });
    maxLevel = Math.max(maxLevel, v.level - minLevel);
    let y: number;
    if (isOpen(v) && v.children.length) {
      const ys = v.children.map(visit);
      y = (ys[0] + ys[ys.length - 1]) / 2;
    } else {
      y = row++ * ROW;
    }
    placed[at].y = y;
    return y;
  };
  roots.forEach(visit);
  return { placed, width: (maxLevel + 1) * COL, height: Math.max(row, 1) * ROW };
}

// ---------------------------------------------------------------------------- restart detection

interface Seen {
  pids: Map<string, string | null>; // key → its last pid seen
  childRestarts: Map<string, number>; // key → pid changes seen
  supRestarts: Map<string, number>; // supervisor key → its children's pid changes seen
  flashing: Map<string, number>; // key → until (ms)
}

function diff(seen: Seen, roots: VNode[], first: boolean): boolean {
  let changed = false;
  const now = Date.now();
  const next = new Map<string, string | null>();
  const walk = (v: VNode) => {
    if (v.raw) {
      const pid = v.raw.pid;
      const before = seen.pids.get(v.key);
      // Remember the last pid it ran with: a poll that catches it dead (no pid) between the
      // kill and the restart must not hide the change.
      next.set(v.key, pid ?? before ?? null);
      if (!first && before && pid && before !== pid) {
        seen.childRestarts.set(v.key, (seen.childRestarts.get(v.key) ?? 0) + 1);
        if (v.parent?.raw) seen.supRestarts.set(v.parent.key, (seen.supRestarts.get(v.parent.key) ?? 0) + 1);
        seen.flashing.set(v.key, now + FLASH_MS);
        changed = true;
      }
    }
    v.children.forEach(walk);
  };
  roots.forEach(walk);
  seen.pids = next;
  return changed;
}

// ---------------------------------------------------------------------------- the page

type Overlay = "none" | "memory" | "message_queue_len";

export function SupervisorsPage() {
  const node = useCurrentNode();
  const [scope, setScope] = useState("*"); // "*": every application; else a supervisor (name or pid)
  const [overlay, setOverlay] = useState<Overlay>("none");
  const [folds, setFolds] = useState<Map<string, boolean>>(new Map());
  const [selected, setSelected] = useState<string | null>(null);
  const [, redraw] = useState(0);
  const seen = useRef<Seen>({ pids: new Map(), childRestarts: new Map(), supRestarts: new Map(), flashing: new Map() });

  const apps = useApi(() => get<{ applications: AppRow[] }>("/applications"), [], 30000);
  // A slow node must not pile up tree reads: a poll while one is still out shares its answer.
  const inFlight = useRef<{ scope: string; answer: Promise<Tree> } | null>(null);
  const tree = useApi(
    () => {
      if (inFlight.current?.scope === scope) return inFlight.current.answer;
      const answer = get<Tree>(`/supervisors/${pidPath(scope)}/tree`, { max_depth: MAX_DEPTH, max_nodes: MAX_NODES });
      const mine = { scope, answer };
      inFlight.current = mine;
      const done = () => {
        if (inFlight.current === mine) inFlight.current = null;
      };
      answer.then(done, done);
      return answer;
    },
    [scope],
    POLL_MS,
  );
  const resources = useApi<ProcRow[] | null>(
    () =>
      overlay === "none"
        ? Promise.resolve(null)
        : get<{ processes: ProcRow[] }>("/processes", { sort_by: overlay, limit: OVERLAY_ROWS }).then((d) => d.processes),
    [overlay],
    overlay === "none" ? undefined : POLL_MS,
  );

  const roots = useMemo(
    () => (tree.data ? build(tree.data, apps.data?.applications, scope !== "*") : []),
    [tree.data, apps.data, scope],
  );

  // A new scope starts a new history: nothing flashes on the first poll of it.
  const firstPoll = useRef(true);
  useEffect(() => {
    firstPoll.current = true;
    seen.current = { pids: new Map(), childRestarts: new Map(), supRestarts: new Map(), flashing: new Map() };
  }, [scope]);
  useEffect(() => {
    if (!tree.data) return;
    const changed = diff(seen.current, roots, firstPoll.current);
    firstPoll.current = false;
    if (changed) {
      redraw((n) => n + 1);
      const timer = window.setTimeout(() => redraw((n) => n + 1), FLASH_MS + 50);
      return () => window.clearTimeout(timer);
    }
    return undefined;
  }, [roots]);

  const isOpen = (v: VNode) => folds.get(v.key) ?? !defaultFolded(v);
  const toggle = (v: VNode) => {
    if (!v.children.length) return;
    setFolds((m) => new Map(m).set(v.key, !isOpen(v)));
  };

  const index = useMemo(() => {
    const m = new Map<string, VNode>();
    const walk = (v: VNode) => (m.set(v.key, v), v.children.forEach(walk));
    roots.forEach(walk);
    return m;
  }, [roots]);
  const current = selected ? index.get(selected) : undefined;

  const flags = useFlags(roots, isOpen, folds);
  const metric = useMemo(() => {
    if (!resources.data) return null;
    const byPid = new Map(resources.data.map((r) => [r.pid, r]));
    const max = Math.max(1, ...resources.data.map((r) => (overlay === "memory" ? r.memory : r.message_queue_len)));
    return { byPid, max };
  }, [resources.data, overlay]);

  const rootOptions = (tree.data && scope === "*" ? tree.data.roots : []).filter((r) => r.name || r.pid);
  const [knownRoots, setKnownRoots] = useState<SupNode[]>([]);
  useEffect(() => {
    if (rootOptions.length) setKnownRoots(rootOptions);
  }, [tree.data]);

  return (
    <div class="sup-page">
      <div class="toolbar">
        <h2>Supervision tree</h2>
        <label>
          show{" "}
          <select
            aria-label="tree root"
            value={scope}
            onChange={(e) => {
              setScope((e.target as HTMLSelectElement).value);
              setSelected(null);
            }}
          >
            <option value="*">every application</option>
            {knownRoots.map((r) => (
              <option value={r.name ?? r.pid ?? ""} key={r.pid}>
                {r.application ?? "no app"} — {r.name ?? r.pid}
              </option>
            ))}
            {scope !== "*" && !knownRoots.some((r) => (r.name ?? r.pid) === scope) && <option value={scope}>{scope}</option>}
          </select>
        </label>
        <label>
          overlay{" "}
          <select aria-label="resource overlay" value={overlay} onChange={(e) => setOverlay((e.target as HTMLSelectElement).value as Overlay)}>
            <option value="none">none</option>
            <option value="memory">memory</option>
            <option value="message_queue_len">message queue</option>
          </select>
        </label>
        <button onClick={() => setFolds(new Map())} title="fold back to the default depth">
          Reset folds
        </button>
        <span class="dim">
          {tree.data ? `${count(tree.data.node_count)} nodes` : ""}
          {tree.data?.truncated ? ` — cut at ${MAX_DEPTH} levels / ${MAX_NODES} nodes: focus a supervisor to see below` : ""}
          {metric ? ` — overlay: largest ${overlay === "memory" ? bytes(metric.max) : count(metric.max)}` : ""}
        </span>
      </div>
      {tree.error != null && <ErrorBox error={tree.error} retry={tree.reload} />}
      {resources.error != null && <ErrorBox error={resources.error} />}
      {!tree.data && !tree.error && <Loading what="reading the supervision tree" />}
      <div class="sup-body">
        {tree.data && (
          <TreeView
            roots={roots}
            isOpen={isOpen}
            toggle={toggle}
            selected={selected}
            select={setSelected}
            seen={seen.current}
            flags={flags}
            overlay={overlay}
            metric={metric}
            stale={tree.error != null}
          />
        )}
        <SidePanel
          key={selected ?? ""}
          v={current}
          gone={selected !== null && !current && !!tree.data}
          seen={seen.current}
          flags={current?.raw?.pid ? flags[current.raw.pid] : undefined}
          resource={current?.raw?.pid ? metric?.byPid.get(current.raw.pid) : undefined}
          node={node?.name ?? null}
          focus={(name) => {
            setScope(name);
            setSelected(null);
          }}
          changed={tree.reload}
        />
      </div>
    </div>
  );
}

/** Flags (intensity, period, kind) of the visible supervisors, read once per pid. */
function useFlags(roots: VNode[], isOpen: (v: VNode) => boolean, folds: unknown): Record<string, Flags | null> {
  const [flags, setFlags] = useState<Record<string, Flags | null>>({});
  const asked = useRef(new Set<string>());
  useEffect(() => {
    const want: string[] = [];
    const walk = (v: VNode) => {
      if (v.kind === "supervisor" && v.raw?.pid && !asked.current.has(v.raw.pid)) want.push(v.raw.pid);
      if (v.kind === "app" || isOpen(v)) v.children.forEach(walk);
    };
    roots.forEach(walk);
    let live = true;
    // A few at a time: each is two sys calls into a supervisor.
    (async () => {
      for (const pid of want.slice(0, 20)) {
        asked.current.add(pid);
        let value: Flags | null = null;
        try {
          value = await get<Flags>(`/supervisors/${pidPath(pid)}/flags`);
        } catch (e) {
          // A node away or slow: ask again at the next poll. Anything else (a supervisor_bridge
          // such as :user has no flags) is an answer: do not ask every 2 s.
          const again = !(e instanceof ApiError) || ["node_down", "unreachable", "timeout"].includes(e.code);
          if (again) asked.current.delete(pid);
        }
        if (!live) return;
        setFlags((f) => ({ ...f, [pid]: value }));
      }
    })();
    return () => {
      live = false;
    };
  }, [roots, folds]);
  return flags;
}

// ---------------------------------------------------------------------------- the SVG tree

interface View {
  x: number;
  y: number;
  k: number;
}

function TreeView(props: {
  roots: VNode[];
  isOpen: (v: VNode) => boolean;
  toggle: (v: VNode) => void;
  selected: string | null;
  select: (key: string) => void;
  seen: Seen;
  flags: Record<string, Flags | null>;
  overlay: Overlay;
  metric: { byPid: Map<string, ProcRow>; max: number } | null;
  stale: boolean;
}) {
  const { roots, isOpen, toggle, selected, select, seen, flags, overlay, metric } = props;
  const { placed, width, height } = layout(roots, isOpen);
  const [view, setView] = useState<View>({ x: 24, y: 24, k: 1 });
  const svg = useRef<SVGSVGElement>(null);
  const drag = useRef<{ x: number; y: number; vx: number; vy: number } | null>(null);
  const now = Date.now();

  const zoomAt = (factor: number, cx?: number, cy?: number) =>
    setView((v) => {
      const k = Math.min(4, Math.max(0.15, v.k * factor));
      const box = svg.current?.getBoundingClientRect();
      const px = cx ?? (box ? box.width / 2 : 0);
      const py = cy ?? (box ? box.height / 2 : 0);
      // Keep the point under the cursor where it is.
      return { k, x: px - ((px - v.x) * k) / v.k, y: py - ((py - v.y) * k) / v.k };
    });
  const fit = () => {
    const box = svg.current?.getBoundingClientRect();
    if (!box) return;
    const k = Math.min(1.5, Math.max(0.15, Math.min((box.width - 48) / width, (box.height - 48) / height)));
    setView({ k, x: 24, y: 24 });
  };

  // Wheel zoom needs a non-passive listener to keep the page from scrolling.
  useEffect(() => {
    const el = svg.current;
    if (!el) return;
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const box = el.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - box.left, e.clientY - box.top);
    };
    el.addEventListener("wheel", onWheel, { passive: false });
    return () => el.removeEventListener("wheel", onWheel);
  }, []);

  const focusNode = (key: string) =>
    svg.current?.querySelector<SVGGElement>(`g.node[data-key="${CSS.escape(key)}"]`)?.focus();

  const onKey = (e: KeyboardEvent, p: Placed, i: number) => {
    const v = p.v;
    if (e.key === "Enter") select(v.key);
    else if (e.key === " " || e.key === "ArrowRight" || e.key === "ArrowLeft") {
      if (e.key === " " || (e.key === "ArrowRight") !== isOpen(v)) toggle(v);
      else if (e.key === "ArrowLeft" && v.parent) focusNode(v.parent.key);
    } else if (e.key === "ArrowDown" && placed[i + 1]) focusNode(placed[i + 1].v.key);
    else if (e.key === "ArrowUp" && placed[i - 1]) focusNode(placed[i - 1].v.key);
    else if (e.key === "+" || e.key === "=") zoomAt(1.25);
    else if (e.key === "-") zoomAt(0.8);
    else return;
    e.preventDefault();
  };

  const byKey = new Map(placed.map((p) => [p.v.key, p]));
  return (
    <div class={props.stale ? "sup-canvas stale" : "sup-canvas"}>
      <div class="sup-zoom" role="group" aria-label="zoom">
        <button onClick={() => zoomAt(1.25)} aria-label="Zoom in" title="zoom in (+, wheel)">
          +
        </button>
        <button onClick={() => zoomAt(0.8)} aria-label="Zoom out" title="zoom out (-, wheel)">
          −
        </button>
        <button onClick={fit} title="fit the whole tree">
          Fit
        </button>
        <button onClick={() => setView({ x: 24, y: 24, k: 1 })} title="100 %, back to the top">
          1:1
        </button>
      </div>
      <svg
        ref={svg}
        class="sup-svg"
        role="tree"
        aria-label="supervision tree"
        onPointerDown={(e) => {
          if ((e.target as Element).closest("g.node")) return;
          drag.current = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y };
          (e.currentTarget as SVGSVGElement).setPointerCapture(e.pointerId);
        }}
        onPointerMove={(e) => {
          const d = drag.current;
          if (d) setView((v) => ({ ...v, x: d.vx + e.clientX - d.x, y: d.vy + e.clientY - d.y }));
        }}
        onPointerUp={() => (drag.current = null)}
        onPointerCancel={() => (drag.current = null)}
      >
        <g class="viewport" transform={`translate(${view.x.toFixed(1)},${view.y.toFixed(1)}) scale(${view.k.toFixed(3)})`}>
          {placed.map((p) =>
            p.v.parent && byKey.has(p.v.parent.key) ? (
              <path key={"e" + p.v.key} class="edge" d={edge(byKey.get(p.v.parent.key)!, p)} />
            ) : null,
          )}
          {placed.map((p, i) => (
            <NodeGlyph
              key={p.v.key}
              p={p}
              open={isOpen(p.v)}
              selected={selected === p.v.key}
              tabbable={p.v.key === (selected && byKey.has(selected) ? selected : placed[0]?.v.key)}
              flashing={(seen.flashing.get(p.v.key) ?? 0) > now}
              restarts={seen.childRestarts.get(p.v.key) ?? 0}
              supRestarts={seen.supRestarts.get(p.v.key) ?? 0}
              flags={p.v.raw?.pid ? flags[p.v.raw.pid] : undefined}
              overlay={overlay}
              metric={metric}
              onSelect={() => select(p.v.key)}
              onToggle={() => {
                select(p.v.key);
                toggle(p.v);
              }}
              onKey={(e) => onKey(e, p, i)}
            />
          ))}
        </g>
      </svg>
      <div class="sup-legend dim">
        click a supervisor's box to fold it · drag to pan · wheel to zoom · keys: ↑↓ move, →← unfold/fold, Enter select
      </div>
    </div>
  );
}

function edge(from: Placed, to: Placed): string {
  const x1 = from.x + 8;
  const x2 = to.x - 8;
  const mx = (x1 + x2) / 2;
  return `M${x1},${from.y} C${mx},${from.y} ${mx},${to.y} ${x2},${to.y}`;
}

function heat(share: number): string {
  // green → amber → red as the share of the largest grows
  const s = Math.max(0, Math.min(1, share));
  const hue = 130 - 130 * s;
  return `hsl(${hue.toFixed(0)}, 70%, ${(38 + 14 * s).toFixed(0)}%)`;
}

function NodeGlyph(props: {
  p: Placed;
  open: boolean;
  selected: boolean;
  tabbable: boolean;
  flashing: boolean;
  restarts: number;
  supRestarts: number;
  flags: Flags | null | undefined;
  overlay: Overlay;
  metric: { byPid: Map<string, ProcRow>; max: number } | null;
  onSelect: () => void;
  onToggle: () => void;
  onKey: (e: KeyboardEvent) => void;
}) {
  const { p, open, flags, metric, overlay } = props;
  const v = p.v;
  const raw = v.raw;
  const foldable = v.children.length > 0;
  const state = raw ? raw.state : "app";
  let r = v.kind === "app" ? 8 : 7;
  let fill: string | undefined;
  if (metric && raw?.pid && v.kind !== "app") {
    const row = metric.byPid.get(raw.pid);
    const value = row ? (overlay === "memory" ? row.memory : row.message_queue_len) : 0;
    const share = value / metric.max;
    r = Math.round((5 + 9 * Math.sqrt(share)) * 10) / 10;
    fill = heat(share);
  }
  const cls = ["node", v.kind, `st-${state}`, props.selected && "selected", props.flashing && "flash", raw?.error && "failing"]
    .filter(Boolean)
    .join(" ");
  const sub = subLabel(v, flags, props.supRestarts, props.restarts);
  const label = v.label.length > 32 ? v.label.slice(0, 31) + "…" : v.label;
  return (
    <g
      class={cls}
      transform={`translate(${p.x},${p.y})`}
      // One tab stop for the tree (the selected node), arrows inside it (the ARIA tree pattern).
      // SVG attributes are case-sensitive: "tabIndex" would not make it focusable.
      tabindex={props.tabbable ? 0 : -1}
      role="treeitem"
      aria-selected={props.selected}
      aria-expanded={foldable ? open : undefined}
      aria-label={`${v.kind} ${v.label}`}
      data-key={v.key}
      data-name={v.label}
      data-pid={raw?.pid ?? ""}
      data-restarts={v.kind === "supervisor" ? props.supRestarts : props.restarts}
      onKeyDown={props.onKey}
    >
      <title>
        {v.label}
        {raw?.pid ? ` ${raw.pid}` : ""}
        {raw?.error ? ` — ${raw.error}` : ""}
      </title>
      {v.kind === "worker" ? (
        <circle class="glyph" r={r} style={fill ? { fill } : undefined} onClick={props.onSelect} />
      ) : (
        <g class="toggle" onClick={foldable ? props.onToggle : props.onSelect}>
          <rect class="glyph" x={-r} y={-r} width={2 * r} height={2 * r} rx={v.kind === "app" ? 4 : 2} style={fill ? { fill } : undefined} />
          {foldable && (
            <text class="sign" y={4} text-anchor="middle">
              {open ? "−" : "+"}
            </text>
          )}
        </g>
      )}
      <text class="label" x={r + 6} y={-1} onClick={props.onSelect}>
        {label}
        {!open && foldable ? <tspan class="dim"> ({v.children.length})</tspan> : null}
      </text>
      <text class="sub" x={r + 6} y={11} onClick={props.onSelect}>
        {sub}
      </text>
      {open && v.truncated && (
        <text class="sub cut" x={r + 6 + COL / 2} y={-1}>
          … cut by the limits
        </text>
      )}
    </g>
  );
}

function subLabel(v: VNode, flags: Flags | null | undefined, supRestarts: number, restarts: number): string {
  const raw = v.raw;
  if (!raw) return v.app ? `${v.app.version} · ${count(v.app.process_count)} procs` : "";
  if (raw.error) return `unreadable: ${raw.error}`;
  if (v.kind === "supervisor") {
    // supervisor_bridge processes (:user, :standard_error_sup) have no strategy.
    const strategy = raw.strategy ?? flags?.strategy;
    const parts = strategy ? [strategy] : [];
    if (flags) parts.push(`${flags.intensity}/${flags.period}s`);
    if (flags?.paused) parts.push("paused");
    parts.push(`↻${supRestarts}`);
    return parts.join(" · ");
  }
  const parts = [raw.pid ?? raw.state];
  if (restarts) parts.push(`↻${restarts}`);
  return parts.join(" · ");
}

// ---------------------------------------------------------------------------- the side panel

function SidePanel(props: {
  v: VNode | undefined;
  gone: boolean;
  seen: Seen;
  flags: Flags | null | undefined;
  resource: ProcRow | undefined;
  node: string | null;
  focus: (name: string) => void;
  changed: () => void;
}) {
  const { v, seen } = props;
  if (!v) {
    return (
      <aside class="panel sup-side">
        {props.gone ? (
          <p class="notice">The selected process is no longer in the tree (it stopped, or its supervisor did).</p>
        ) : (
          <p class="dim">Select a node to see its details and actions.</p>
        )}
      </aside>
    );
  }
  const raw = v.raw;
  if (!raw) {
    return (
      <aside class="panel sup-side">
        <h3>application {v.label}</h3>
        {v.app ? (
          <dl class="sup-facts">
            <dt>version</dt>
            <dd>{v.app.version}</dd>
            <dt>description</dt>
            <dd>{v.app.description}</dd>
            <dt>processes</dt>
            <dd>{count(v.app.process_count)}</dd>
          </dl>
        ) : null}
        {!v.children.length && <p class="dim">No supervision tree (a library application).</p>}
      </aside>
    );
  }
  const parent = v.parent?.raw ?? null;
  return (
    <aside class="panel sup-side" aria-label="selected node">
      <h3>
        {v.kind} {v.label}
      </h3>
      <dl class="sup-facts">
        <dt>pid</dt>
        <dd>
          {raw.pid ? (
            <a href={inspectorHref(raw.pid, props.node)} class="mono">
              {raw.pid}
            </a>
          ) : (
            <span class="warn">none ({raw.state})</span>
          )}
        </dd>
        <dt>state</dt>
        <dd class={raw.state === "running" ? "ok" : "warn"}>{raw.state}</dd>
        {raw.id !== null && raw.id !== undefined && (
          <>
            <dt>child id</dt>
            <dd class="mono">{text(raw.id)}</dd>
          </>
        )}
        {raw.restart && (
          <>
            <dt>restart</dt>
            <dd>{raw.restart}</dd>
          </>
        )}
        {parent && (
          <>
            <dt>supervisor</dt>
            <dd>{parent.name ?? parent.pid}</dd>
          </>
        )}
        {raw.module && (
          <>
            <dt>module</dt>
            <dd class="mono">{raw.module}</dd>
          </>
        )}
        <dt>restarts seen</dt>
        <dd>
          {v.kind === "supervisor" ? seen.supRestarts.get(v.key) ?? 0 : seen.childRestarts.get(v.key) ?? 0}{" "}
          <span class="dim">(new pids seen by this page)</span>
        </dd>
        {props.resource && (
          <>
            <dt>memory</dt>
            <dd>{bytes(props.resource.memory)}</dd>
            <dt>queue</dt>
            <dd>{count(props.resource.message_queue_len)}</dd>
          </>
        )}
        {raw.error && (
          <>
            <dt>error</dt>
            <dd class="bad">{raw.error}</dd>
          </>
        )}
      </dl>
      {v.kind === "supervisor" && raw.pid && (
        <SupervisorDetails pid={raw.pid} name={raw.name} strategy={raw.strategy ?? null} flags={props.flags} focus={props.focus} changed={props.changed} />
      )}
      {parent?.pid && <ChildActions sup={parent.pid} child={raw} changed={props.changed} />}
    </aside>
  );
}

function SupervisorDetails(props: {
  pid: string;
  name: string | null;
  strategy: string | null;
  flags: Flags | null | undefined;
  focus: (name: string) => void;
  changed: () => void;
}) {
  const { flags } = props;
  const analytics = useApi(
    () => get<Analytics>(`/supervisors/${pidPath(props.pid)}/analytics`, { window: 3600, bucket: 300, top: 5 }),
    [props.pid],
    5000,
  );
  const a = analytics.data;
  return (
    <section class="sup-section">
      <h4>Supervisor</h4>
      <dl class="sup-facts">
        <dt>strategy</dt>
        <dd>{props.strategy ?? flags?.strategy ?? "?"}</dd>
        {flags && (
          <>
            <dt>intensity</dt>
            <dd>
              {flags.intensity} restarts in {flags.period} s
            </dd>
            <dt>kind</dt>
            <dd>{flags.kind}</dd>
            <dt>auto_shutdown</dt>
            <dd>{flags.auto_shutdown}</dd>
            {flags.paused && (
              <>
                <dt>paused</dt>
                <dd class="warn">yes: no restarts happen</dd>
              </>
            )}
          </>
        )}
        {a && (
          <>
            <dt>restarts now</dt>
            <dd class={a.intensity.usage >= 0.8 ? "bad" : a.intensity.usage >= 0.5 ? "warn" : ""}>
              {a.intensity.recent_restarts} / {a.intensity.limit} in the last {a.intensity.period} s
            </dd>
            <dt>last hour</dt>
            <dd>
              {a.restarts} crash{a.restarts === 1 ? "" : "es"}
              {!a.recording && <span class="dim"> (not recording)</span>}
            </dd>
          </>
        )}
      </dl>
      {analytics.error != null && <ErrorBox error={analytics.error} />}
      {a && a.most_crashed.length > 0 && (
        <table class="data">
          <thead>
            <tr>
              <th>most crashed</th>
              <th class="num">crashes</th>
              <th>last</th>
            </tr>
          </thead>
          <tbody>
            {a.most_crashed.map((c) => (
              <tr key={c.id}>
                <td class="mono">{c.id}</td>
                <td class="num">{c.crashes}</td>
                <td class="dim">{duration(Math.max(0, Date.now() / 1000 - c.last_crash))} ago</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="toolbar">
        <button onClick={() => props.focus(props.name ?? props.pid)} title="show the tree from this supervisor down">
          Focus here
        </button>
      </div>
      {may("write") && flags && flags.kind !== "dynamic" && flags.strategy !== "simple_one_for_one" && (
        <StrategyForm pid={props.pid} current={props.strategy ?? flags.strategy} changed={props.changed} />
      )}
    </section>
  );
}

const STRATEGIES = ["one_for_one", "one_for_all", "rest_for_one"];

function StrategyForm({ pid, current, changed }: { pid: string; current: string; changed: () => void }) {
  const [want, setWant] = useState(current);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  useEffect(() => setWant(current), [current]);
  const apply = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await put<{ old_strategy: string; new_strategy: string }>(`/supervisors/${pidPath(pid)}/strategy`, { strategy: want });
      setDone(`strategy ${r.old_strategy} → ${r.new_strategy}`);
      changed();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="toolbar">
      <label>
        strategy{" "}
        <select aria-label="new strategy" value={want} onChange={(e) => setWant((e.target as HTMLSelectElement).value)}>
          {STRATEGIES.map((s) => (
            <option value={s} key={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <button class="primary" disabled={busy || want === current} onClick={apply}>
        Change strategy
      </button>
      {done && <span class="ok" role="status">{done}</span>}
      {error != null && <ErrorBox error={error} />}
    </div>
  );
}

type Action = "restart" | "terminate" | "simulate";

function ChildActions({ sup, child, changed }: { sup: string; child: SupNode; changed: () => void }) {
  const [asking, setAsking] = useState<Action | null>(null);
  const [reason, setReason] = useState("crash");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [outcome, setOutcome] = useState<string | null>(null);
  useStore(session);
  const destructive = may("destructive");
  const write = may("write");
  // The child by id when it has one (a stopped child has no pid), else by pid (dynamic children).
  const ref = typeof child.id === "string" ? child.id : (child.pid ?? "");
  const running = child.pid !== null;
  const label = child.name ?? (text(child.id) || child.pid);

  if (!write && !destructive) return <p class="dim sup-section">Read-only session: no actions.</p>;

  const run = async (action: Action) => {
    setAsking(null);
    setBusy(true);
    setError(null);
    setOutcome(null);
    const base = `/supervisors/${pidPath(sup)}`;
    try {
      if (action === "simulate") {
        const r = await post<FailureResult>(`${base}/simulate-failure`, { child: ref, reason, wait_ms: 2000 });
        setOutcome(
          `${r.child_died ? "died" : "did not die"}; restarted: ${r.restarted.length ? r.restarted.join(", ") : "nothing"}` +
            (r.supervisor_alive ? "" : " — the supervisor gave up and died"),
        );
      } else if (action === "terminate") {
        await post(`${base}/children/${encodeURIComponent(ref)}/terminate`, {});
        setOutcome("terminated: it stays stopped until restarted");
      } else if (running) {
        // A running child: terminate + restart through its supervisor (restart_process).
        const r = await post<{ new_pid?: string | null; pid?: string | null }>(`/processes/${pidPath(child.pid!)}/restart`, {});
        setOutcome(`restarted${r.new_pid ? ` as ${r.new_pid}` : ""}`);
      } else {
        const r = await post<{ new_pid: string | null }>(`${base}/children/${encodeURIComponent(ref)}/restart`, {});
        setOutcome(`started${r.new_pid ? ` as ${r.new_pid}` : ""}`);
      }
      changed();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  // Severities (docs/operations.md): restart_child write, restart_process / terminate_child /
  // simulate_failure destructive.
  const canRestart = running ? destructive : write && typeof child.id === "string";
  return (
    <section class="sup-section">
      <h4>Actions</h4>
      <div class="toolbar">
        {canRestart && (
          <button disabled={busy} class={running ? "danger" : ""} onClick={() => (running ? setAsking("restart") : run("restart"))}>
            {running ? "Restart child…" : "Start child"}
          </button>
        )}
        {destructive && running && (
          <button disabled={busy} class="danger" onClick={() => setAsking("terminate")}>
            Terminate child…
          </button>
        )}
        {destructive && running && (
          <button disabled={busy} class="danger" onClick={() => setAsking("simulate")}>
            Simulate failure…
          </button>
        )}
      </div>
      {busy && <Loading what="working" />}
      {outcome && (
        <p class="ok" role="status">
          {outcome}
        </p>
      )}
      {error != null && <ErrorBox error={error instanceof ApiError ? error : String(error)} />}
      {asking === "restart" && (
        <Confirm title={`Restart ${label}?`} confirm="Restart" onConfirm={() => run("restart")} onCancel={() => setAsking(null)}>
          Its supervisor shuts it down as its spec says and starts it again: its in-memory state is lost.
        </Confirm>
      )}
      {asking === "terminate" && (
        <Confirm title={`Terminate ${label}?`} confirm="Terminate" onConfirm={() => run("terminate")} onCancel={() => setAsking(null)}>
          It stops and stays stopped (no restart); a dynamic child is removed for good.
        </Confirm>
      )}
      {asking === "simulate" && (
        <Confirm title={`Simulate a failure of ${label}?`} confirm="Kill it" onConfirm={() => run("simulate")} onCancel={() => setAsking(null)}>
          <p>
            It is killed and its supervisor reacts by its strategy (siblings too under one_for_all or rest_for_one).
            Repeated quickly it can exhaust the restart intensity.
          </p>
          <label>
            exit reason{" "}
            <select aria-label="exit reason" value={reason} onChange={(e) => setReason((e.target as HTMLSelectElement).value)}>
              <option value="crash">crash</option>
              <option value="kill">kill</option>
              <option value="shutdown">shutdown</option>
            </select>
          </label>
        </Confirm>
      )}
    </section>
  );
}
