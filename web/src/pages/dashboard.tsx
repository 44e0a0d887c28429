// The system dashboard: observer's "System" and "Load charts" tabs for one node. Key figures and
// time-series charts come from the WebSocket's `system:metrics` channel (one cheap agent call per
// push on the server, every 2 s, for the node picked in the switcher); the node's facts, its
// health score and the alerts come from REST, alerts also live from the `alerts` channel. The
// charts keep the last five minutes in the browser; while the node is down the page keeps the last
// figures, says so, and charting resumes when pushes come back (the socket's subscription stays).
import uPlot from "uplot";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, post } from "../api";
import { ErrorBox, Loading, useApi, type Async } from "../components";
import { bytes, count, duration, percent } from "../format";
import { useCurrentNode } from "../nodes";
import { may } from "../session";
import { live, type ServerMessage } from "../ws";
import "./dashboard.css";

// ------------------------------------------------------------------ the API's shapes

/** One push of `system:metrics` (see src/arsenal/api/ws.py, `_Socket._metrics`). */
interface Sample {
  node: string;
  sampled_at?: number;
  process_count: number;
  process_limit?: number;
  memory_total: number;
  memory?: Record<string, number>;
  run_queue: number;
  run_queues?: number[];
  dirty_cpu_run_queue?: number;
  dirty_io_run_queue?: number;
  port_count?: number;
  port_limit?: number;
  atom_count?: number;
  atom_limit?: number;
  ets_count?: number;
  ets_limit?: number;
  schedulers?: number;
  schedulers_online?: number;
  uptime_ms?: number;
  scheduler_utilization?: number[] | null;
  scheduler_utilization_avg?: number | null;
}

interface SystemInfo {
  node: string;
  language: string;
  otp_release: string;
  erts_version: string;
  system_architecture: string;
  schedulers: number;
  schedulers_online: number;
  dirty_cpu_schedulers: number;
  dirty_io_schedulers: number;
  logical_processors: number | null;
  uptime_seconds: number;
}

interface HealthReason {
  check: string;
  level: string;
  penalty: number;
  value: number;
  threshold: number | null;
  message: string;
}

interface Health {
  node: string;
  score: number;
  status: string;
  reasons: HealthReason[];
}

interface Alert {
  id: number;
  rule: string;
  node: string | null;
  metric: string;
  value: number | null;
  threshold: number | null;
  message: string;
  fired_at: number;
  acknowledged_at: number | null;
  acknowledged_by: string | null;
}

// ------------------------------------------------------------------ the samples kept

const INTERVAL = 2; // seconds between pushes
const WINDOW = 300; // seconds of history the charts keep
const MAX_POINTS = 400; // a bound whatever the pushes' spacing
/** The memory types charted, in erlang:memory/0's names. */
const MEMORY_TYPES = ["total", "processes", "ets", "binary", "atom", "code", "system"] as const;
const MEMORY_COLORS = ["#e0a526", "#7fb4ff", "#5ec27a", "#d7a8ff", "#ff8c69", "#89dceb", "#8b95a8"];

/** Columns of numbers, one per series, all aligned on `x` (unix seconds); null is a gap. */
class History {
  x: number[] = [];
  columns = new Map<string, (number | null)[]>();

  column(name: string): (number | null)[] {
    let col = this.columns.get(name);
    if (!col) {
      col = this.x.map(() => null); // a series that appears late (a scheduler brought online)
      this.columns.set(name, col);
    }
    return col;
  }

  /** Add a point at `x`; series missing from `values` get a gap there. */
  push(x: number, values: Record<string, number | null | undefined>): void {
    if (this.x.length && x <= this.x[this.x.length - 1]) return; // a late or repeated push
    this.x.push(x);
    for (const name of Object.keys(values)) this.column(name);
    this.columns.forEach((col, name) => col.push(values[name] ?? null));
    let drop = 0;
    while (drop < this.x.length && (this.x[drop] < x - WINDOW || this.x.length - drop > MAX_POINTS)) drop++;
    if (drop) {
      this.x.splice(0, drop);
      this.columns.forEach((col) => col.splice(0, drop));
    }
  }

  /** A gap after the last point (the node stopped answering): lines break instead of bridging. */
  gap(): void {
    const last = this.x[this.x.length - 1];
    if (last === undefined || this.columns.size === 0) return;
    if ([...this.columns.values()].every((col) => col[col.length - 1] === null)) return;
    this.push(last + INTERVAL / 2, {});
  }

  data(names: string[]): uPlot.AlignedData {
    return [this.x, ...names.map((n) => this.columns.get(n) ?? this.x.map(() => null))] as uPlot.AlignedData;
  }
}

function values(s: Sample): Record<string, number | null | undefined> {
  const out: Record<string, number | null | undefined> = {
    process_count: s.process_count,
    run_queue: s.run_queue,
    dirty_cpu_run_queue: s.dirty_cpu_run_queue,
    dirty_io_run_queue: s.dirty_io_run_queue,
    atom_count: s.atom_count,
    port_count: s.port_count,
    ets_count: s.ets_count,
    scheduler_avg: s.scheduler_utilization_avg == null ? null : s.scheduler_utilization_avg * 100,
  };
  for (const type of MEMORY_TYPES) out[`memory_${type}`] = type === "total" ? s.memory_total : s.memory?.[type];
  s.scheduler_utilization?.forEach((u, i) => (out[`scheduler_${i + 1}`] = u * 100));
  return out;
}

// ------------------------------------------------------------------ the page

export function DashboardPage() {
  const node = useCurrentNode();
  if (!node) return <Loading what="finding the attached nodes" />;
  return <NodeDashboard name={node.name} connected={node.connected} />;
}

/** The live part: one subscription for this node, the samples in a History, redrawn per push. */
interface Metrics {
  sample: Sample | null;
  history: History;
  version: number;
  down: string | null; // why the node does not answer (node_down, timeout), while it does not
  refused: ApiError | null; // any other error of the channel (a key not allowed this node, ...)
}

/** Errors that mean "the node is away for now": the loop goes on and pushes again when it is back. */
const AWAY = new Set(["node_down", "timeout"]);

function useMetrics(name: string): Metrics {
  const history = useRef(new History()).current;
  const [sample, setSample] = useState<Sample | null>(null);
  const [version, setVersion] = useState(0);
  const [down, setDown] = useState<string | null>(null);
  const [refused, setRefused] = useState<ApiError | null>(null);
  useEffect(
    () =>
      live.subscribe(
        "system:metrics",
        (message: ServerMessage) => {
          if (message.type === "update") {
            const data = message.data as Sample;
            if (data.node !== name) return; // a push of a previous subscription still on its way
            history.push(data.sampled_at ?? Date.now() / 1000, values(data));
            setSample(data);
            setDown(null);
            setRefused(null);
            setVersion((v) => v + 1);
          } else if (message.type === "error") {
            const error = message.errors?.[0];
            history.gap();
            setVersion((v) => v + 1);
            if (!error || AWAY.has(error.code)) setDown(error?.detail ?? "the node does not answer");
            else setRefused(new ApiError(error.code, error.status, error.detail));
          }
        },
        { node: name, interval: INTERVAL },
      ),
    [name],
  );
  return { sample, history, version, down, refused };
}

/** Counts the node's returns (down, then up again): what was read before is read again. */
function useReturns(isDown: boolean): number {
  const [returns, setReturns] = useState(0);
  const wasDown = useRef(isDown);
  useEffect(() => {
    if (wasDown.current && !isDown) setReturns((n) => n + 1);
    wasDown.current = isDown;
  }, [isDown]);
  return returns;
}

function NodeDashboard({ name, connected }: { name: string; connected: boolean }) {
  const { sample, history, version, down, refused } = useMetrics(name);
  const isDown = !connected || down !== null;
  const returns = useReturns(isDown);
  // The facts change only with a restart: read again when the node is back, the last kept meanwhile.
  const info = useApi(() => get<SystemInfo>("/system/metrics", {}, name), [name, returns]);
  const lastInfo = useRef<SystemInfo | undefined>(undefined);
  if (info.data) lastInfo.current = info.data;
  // A scan of the node's processes inside the VM (about 0.3 s at 100 000): every 30 s, not per push.
  const health = useApi(() => get<Health>("/system/health", {}, name), [name, returns], 30_000);
  const schedulers = sample?.scheduler_utilization?.length ?? sample?.schedulers ?? 0;

  return (
    <div class="dashboard" data-samples={history.x.length}>
      <Facts name={name} info={lastInfo.current} sample={sample} isDown={isDown} health={health.data} />
      {info.error !== null && !lastInfo.current && !isDown && <ErrorBox error={info.error} retry={info.reload} />}
      {isDown && (
        <div class="notice dash-down" role="status">
          {name} is not answering{down ? `: ${down}` : ""}.{" "}
          {sample ? "The figures below are the last ones received; charting resumes when it is back." : ""}
        </div>
      )}
      {refused && <ErrorBox error={refused} />}
      {!sample && !isDown && !refused && <Loading what="waiting for the first sample" />}
      {sample && <Figures sample={sample} />}
      <div class="dash-charts">
        <Chart
          title="Memory by type"
          names={MEMORY_TYPES.map((t) => `memory_${t}`)}
          labels={[...MEMORY_TYPES]}
          colors={MEMORY_COLORS}
          history={history}
          version={version}
          format={bytes}
          axisFormat={bytesShort}
        />
        <Chart
          title="Scheduler utilisation"
          names={["scheduler_avg", ...Array.from({ length: schedulers }, (_, i) => `scheduler_${i + 1}`)]}
          labels={["average", ...Array.from({ length: schedulers }, (_, i) => `#${i + 1}`)]}
          colors={["#e0a526", ...Array.from({ length: schedulers }, (_, i) => schedulerColor(i, schedulers))]}
          widths={[2.5]}
          history={history}
          version={version}
          format={(v) => `${v.toFixed(0)}%`}
          range={[0, 100]}
        />
        <Chart
          title="Processes"
          names={["process_count"]}
          labels={["processes"]}
          colors={["#7fb4ff"]}
          history={history}
          version={version}
          format={count}
        />
        <Chart
          title="Run queues"
          names={["run_queue", "dirty_cpu_run_queue", "dirty_io_run_queue"]}
          labels={["normal + dirty CPU", "dirty CPU", "dirty IO"]}
          colors={["#e0a526", "#ff8c69", "#89dceb"]}
          history={history}
          version={version}
          format={count}
          floor={4}
        />
        <Chart
          title="Atoms"
          names={["atom_count"]}
          labels={["atoms"]}
          colors={["#d7a8ff"]}
          history={history}
          version={version}
          format={count}
        />
        <Chart
          title="Ports and ETS tables"
          names={["port_count", "ets_count"]}
          labels={["ports", "ETS tables"]}
          colors={["#5ec27a", "#89dceb"]}
          history={history}
          version={version}
          format={count}
        />
      </div>
      <div class="dash-lower">
        <HealthPanel health={health} isDown={isDown} />
        <AlertsPanel name={name} />
      </div>
    </div>
  );
}

function schedulerColor(i: number, n: number): string {
  return `hsl(${200 + (i * 140) / Math.max(1, n)}, 55%, 62%)`;
}

// ------------------------------------------------------------------ facts and figures

function Facts({
  name,
  info,
  sample,
  isDown,
  health,
}: {
  name: string;
  info: SystemInfo | undefined;
  sample: Sample | null;
  isDown: boolean;
  health: Health | undefined;
}) {
  const uptime = sample?.uptime_ms != null ? sample.uptime_ms / 1000 : info?.uptime_seconds;
  return (
    <div class="dash-facts" aria-label="node facts">
      <h2>
        <span class={isDown ? "dot bad" : "dot ok"} aria-hidden="true">
          ●
        </span>{" "}
        {name}
      </h2>
      <Fact label="language" value={info?.language} />
      <Fact label="OTP" value={info?.otp_release} />
      <Fact label="ERTS" value={info?.erts_version} />
      <Fact label="uptime" value={uptime != null ? duration(uptime) : undefined} />
      <Fact
        label="schedulers"
        value={info ? `${info.schedulers_online}/${info.schedulers} · dirty ${info.dirty_cpu_schedulers}+${info.dirty_io_schedulers}` : undefined}
      />
      <Fact label="arch" value={info?.system_architecture} />
      {health && (
        <a
          class={`fact health-badge ${isDown ? "dim" : healthTone(health)}`}
          href="#/"
          onClick={scrollToHealth}
          title={isDown ? "the last score, from before the node went down" : "the health panel below"}
        >
          health {health.score} · {health.status}
        </a>
      )}
    </div>
  );
}

function scrollToHealth(e: Event): void {
  e.preventDefault(); // the hash is the route: scroll instead of navigating
  document.querySelector(".dash-health")?.scrollIntoView({ behavior: "smooth", block: "start" });
}

function Fact({ label, value }: { label: string; value: string | undefined }) {
  return (
    <span class="fact" data-fact={label}>
      <span class="dim">{label}</span> <span class="mono">{value ?? "—"}</span>
    </span>
  );
}

function Figures({ sample }: { sample: Sample }) {
  const memory = sample.memory ?? {};
  return (
    <div class="dash-figures" aria-label="key figures">
      <Figure label="Processes" value={sample.process_count} limit={sample.process_limit} />
      <div class="figure" data-figure="memory">
        <div class="figure-label">Memory</div>
        <div class="figure-value">{bytes(sample.memory_total)}</div>
        <div class="memory-types">
          {MEMORY_TYPES.slice(1).map((type) => (
            <span key={type} data-memory={type} title={`${count(memory[type])} bytes`}>
              <span class="dim">{type}</span>
              <span class="num">{bytes(memory[type])}</span>
            </span>
          ))}
        </div>
      </div>
      <div class="figure" data-figure="run_queue">
        <div class="figure-label">Run queue</div>
        <div class="figure-value">{count(sample.run_queue)}</div>
        {sample.run_queues && (
          <div class="figure-sub dim" title="the normal schedulers' queues, in scheduler order">
            per scheduler <span class="mono">{sample.run_queues.join(" ")}</span>
          </div>
        )}
        {sample.dirty_cpu_run_queue != null && (
          <div class="figure-sub dim">
            dirty CPU {sample.dirty_cpu_run_queue} · IO {sample.dirty_io_run_queue ?? 0}
          </div>
        )}
      </div>
      <div class="figure" data-figure="schedulers">
        <div class="figure-label">Scheduler usage</div>
        <div class="figure-value">{percent(sample.scheduler_utilization_avg)}</div>
        <div class="scheduler-bars" aria-label="per scheduler">
          {(sample.scheduler_utilization ?? []).map((u, i) => (
            <span class="scheduler-bar" key={i} title={`scheduler ${i + 1}: ${percent(u, 1)}`}>
              <span style={{ height: `${Math.max(2, u * 100)}%` }} />
            </span>
          ))}
          {!sample.scheduler_utilization && <span class="dim figure-sub">measuring …</span>}
        </div>
      </div>
      <Figure label="Atoms" value={sample.atom_count} limit={sample.atom_limit} />
      <Figure label="Ports" value={sample.port_count} limit={sample.port_limit} />
      <Figure label="ETS tables" value={sample.ets_count} limit={sample.ets_limit} />
    </div>
  );
}

/** A count against its limit, with a bar that turns amber at 70 % and red at 90 %. */
function Figure({ label, value, limit }: { label: string; value: number | undefined; limit: number | undefined }) {
  const share = value != null && limit ? value / limit : null;
  const level = share == null ? "" : share >= 0.9 ? "bad" : share >= 0.7 ? "warn" : "ok";
  return (
    <div class="figure" data-figure={label.toLowerCase().replace(/ /g, "_")}>
      <div class="figure-label">{label}</div>
      <div class="figure-value" data-value={value ?? ""}>
        {count(value)}
      </div>
      <div class="figure-sub dim">
        of {count(limit)} · {percent(share, share != null && share < 0.01 ? 2 : 0)}
      </div>
      <div class="limit-bar">
        <span class={level} style={{ width: `${Math.min(100, (share ?? 0) * 100)}%` }} />
      </div>
    </div>
  );
}

// ------------------------------------------------------------------ charts

/** A uPlot time-series chart over some columns of the History; redrawn when `version` moves. */
function Chart({
  title,
  names,
  labels,
  colors,
  widths = [],
  history,
  version,
  format,
  range,
  floor,
  axisFormat,
}: {
  title: string;
  names: string[];
  labels: string[];
  colors: string[];
  widths?: number[];
  history: History;
  version: number;
  format: (v: number) => string;
  range?: [number, number];
  floor?: number; // the y axis shows at least 0..floor (a queue of 0 is a flat line at the bottom)
  axisFormat?: (v: number) => string; // shorter than `format`, for the ticks
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = names.join(",");

  useEffect(() => {
    const el = box.current!;
    const axis = { stroke: "#8b95a8", grid: { stroke: "#2c3445", width: 1 }, ticks: { stroke: "#2c3445", width: 1 } };
    const options: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 150,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        // At least a minute wide, so the first few points do not spread over the whole chart.
        x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] },
        y: {
          range: (_u, min, max) =>
            range ?? [0, Math.max(floor ?? 0, max > 0 ? max * 1.1 : 1, min)],
        },
      },
      axes: [
        { ...axis, size: 24 },
        { ...axis, size: 66, values: (_u, ticks) => ticks.map((t) => (axisFormat ?? format)(t)) },
      ],
      series: [
        { label: "time" },
        ...names.map((_, i) => ({
          label: labels[i],
          stroke: colors[i % colors.length],
          width: widths[i] ?? 1.25,
          // Off the cursor, the legend shows the latest value (uPlot's default is a dash).
          value: (u: uPlot, v: number | null, sidx: number, idx: number | null) => {
            const shown = idx == null ? latest(u.data[sidx]) : v;
            return shown == null ? "—" : format(shown);
          },
        })),
      ],
    };
    plot.current = new uPlot(options, history.data(names), el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(200, el.clientWidth), height: 150 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(history.data(names));
  }, [version, shape]);

  // data-points: how many points the chart holds (the tests watch it grow).
  return (
    <section class="panel dash-chart" aria-label={title} data-points={history.x.length}>
      <h3>{title}</h3>
      <div ref={box} class="chart-box" />
    </section>
  );
}

function latest(column: ArrayLike<number | null | undefined>): number | null {
  for (let i = column.length - 1; i >= 0; i--) if (column[i] != null) return column[i] as number;
  return null;
}

/** Bytes for an axis tick: whole numbers from 10 up (the tick labels stay narrow). */
function bytesShort(n: number): string {
  const text = bytes(n);
  return text.replace(/^(\d{2,})\.\d /, "$1 ");
}

// ------------------------------------------------------------------ health

function healthTone(h: Health): string {
  return h.status === "healthy" ? "ok" : h.status === "degraded" ? "warn" : "bad";
}

function HealthPanel({ health, isDown }: { health: Async<Health>; isDown: boolean }) {
  const h = health.data;
  const tone = h ? healthTone(h) : "";
  return (
    <section class="panel dash-health" aria-label="health">
      <div class="panel-head">
        <h3>Health</h3>
        {h && (
          <span class={`health-score ${tone}`} data-score={h.score} title="100 minus the penalties">
            {h.score}
            <small>/100 {h.status}</small>
          </span>
        )}
        <button class="link" onClick={health.reload} disabled={health.loading}>
          {health.loading ? "checking …" : "check again"}
        </button>
      </div>
      {health.error !== null && !(isDown && h) && <ErrorBox error={health.error} retry={health.reload} />}
      {!h && health.error === null && <Loading what="scoring the node" />}
      {h && (
        <table class="data health-reasons">
          <thead>
            <tr>
              <th>check</th>
              <th class="num">penalty</th>
              <th>reason</th>
            </tr>
          </thead>
          <tbody>
            {h.reasons.map((r) => (
              <tr key={r.check} data-level={r.level}>
                <td>
                  <span class={r.level === "ok" ? "ok" : r.level === "warning" ? "warn" : "bad"}>●</span> {r.check}
                </td>
                <td class="num">{r.penalty ? `−${r.penalty}` : ""}</td>
                <td class="reason">{r.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

// ------------------------------------------------------------------ alerts

const ALERTS_SHOWN = 20;

function AlertsPanel({ name }: { name: string }) {
  const listed = useApi(() => get<{ alerts: Alert[] }>("/alerts", { limit: ALERTS_SHOWN }, name), [name]);
  const [pushed, setPushed] = useState<Alert[]>([]);
  const [acked, setAcked] = useState<Record<number, Alert>>({});
  const [error, setError] = useState<unknown>(null);
  const canAck = may("write");

  useEffect(
    () =>
      live.subscribe("alerts", (message) => {
        if (message.type === "alert") setPushed((list) => [message.data as Alert, ...list].slice(0, ALERTS_SHOWN));
      }),
    [],
  );

  // The pushed ones first (newest), then the listed ones not pushed meanwhile; acknowledged copies win.
  const seen = new Set<number>();
  const alerts = [...pushed, ...(listed.data?.alerts ?? [])]
    .filter((a) => !seen.has(a.id) && seen.add(a.id))
    .slice(0, ALERTS_SHOWN)
    .map((a) => acked[a.id] ?? a);

  const acknowledge = async (id: number) => {
    setError(null);
    try {
      const row = await post<Alert>(`/alerts/${id}/acknowledge`, {}, name);
      setAcked((m) => ({ ...m, [id]: row }));
    } catch (e) {
      setError(e);
    }
  };

  return (
    <section class="panel dash-alerts" aria-label="alerts">
      <div class="panel-head">
        <h3>Alerts</h3>
        <span class="dim">{alerts.filter((a) => !a.acknowledged_at).length} unacknowledged · all nodes</span>
      </div>
      {listed.error !== null && <ErrorBox error={listed.error} retry={listed.reload} />}
      {error !== null && <ErrorBox error={error} />}
      {listed.loading && !listed.data && <Loading what="loading alerts" />}
      {listed.data && alerts.length === 0 && (
        <p class="dim">No alerts have fired. Rules: <code>arsenal run create_alert_rule …</code> or POST /api/v1/alerts/rules.</p>
      )}
      {alerts.length > 0 && (
        <table class="data alert-table">
          <thead>
            <tr>
              <th>fired</th>
              <th>node</th>
              <th>message</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {alerts.map((a) => (
              <tr key={a.id} data-alert={a.id} class={a.acknowledged_at ? "acked" : ""}>
                <td class="mono" title={new Date(a.fired_at * 1000).toLocaleString("en-GB")}>
                  {new Date(a.fired_at * 1000).toLocaleTimeString("en-GB")}
                </td>
                <td class={a.node === name ? "" : "dim"}>{a.node ?? "—"}</td>
                <td class="reason">{a.message}</td>
                <td>
                  {a.acknowledged_at ? (
                    <span class="dim" title={new Date(a.acknowledged_at * 1000).toLocaleString()}>
                      seen by {a.acknowledged_by ?? "?"}
                    </span>
                  ) : canAck ? (
                    <button onClick={() => acknowledge(a.id)}>Acknowledge</button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
