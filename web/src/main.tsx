// The dashboard's shell: login, navigation, node switcher, the live-connection and node-down
// banners, keyboard shortcuts; each page lives in pages/.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "uplot/dist/uPlot.min.css";
import "./styles.css";
import { ApiError, request } from "./api";
import { ErrorBox, Loading } from "./components";
import { currentNode, nodes, refreshNodes, type NodeRow } from "./nodes";
import { navigate, useRoute } from "./router";
import { login, logout, loggedOutBecause, pickNode, session, useStore } from "./session";
import { socketState } from "./ws";
import { DashboardPage } from "./pages/dashboard";
import { ProcessesPage } from "./pages/processes";
import { InspectorPage } from "./pages/inspector";
import { SupervisorsPage } from "./pages/supervisors";
import { TracesPage } from "./pages/traces";
import { SandboxesPage } from "./pages/sandboxes";

const PAGES: { path: string; label: string; key: string }[] = [
  { path: "", label: "Dashboard", key: "1" },
  { path: "processes", label: "Processes", key: "2" },
  { path: "supervisors", label: "Supervisors", key: "3" },
  { path: "traces", label: "Traces", key: "4" },
  { path: "sandboxes", label: "Sandboxes", key: "5" },
];

function Login() {
  const why = useStore(loggedOutBecause);
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const { data } = await request<{ name: string; role: string; rights: string[] }>("GET", "/session", {
        key: key.trim(),
        node: null,
      });
      login({ key: key.trim(), name: data.name, role: data.role, rights: data.rights, node: null });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} aria-label="log in">
        <h1>Arsenal</h1>
        {why && <div class="notice" role="status">Your session ended: {why}. Log in again.</div>}
        <label for="key">API key</label>
        <input
          id="key"
          name="key"
          type="password"
          autocomplete="off"
          placeholder="ars_…"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          autofocus
        />
        <button type="submit" disabled={busy || !key.trim()}>
          Log in
        </button>
        {error !== null && <ErrorBox error={error} />}
        <p class="hint">
          <code>arsenal demo</code> prints a key; <code>arsenal keys create --role viewer</code> makes one.
        </p>
      </form>
    </main>
  );
}

function NodeSwitcher({ list }: { list: NodeRow[] }) {
  const picked = currentNode(list);
  return (
    <label class="node-switcher">
      <span>node</span>
      <select
        aria-label="node"
        value={picked?.name ?? ""}
        onChange={(e) => pickNode((e.target as HTMLSelectElement).value || null)}
      >
        {list.map((n) => (
          <option value={n.name} key={n.name}>
            {n.name}
            {n.connected ? "" : " (down)"}
            {n.read_only ? " (read-only)" : ""}
          </option>
        ))}
      </select>
    </label>
  );
}

function Banners({ node, nodesError }: { node: NodeRow | undefined; nodesError: unknown }) {
  const socket = useStore(socketState);
  return (
    <>
      {nodesError !== null && <ErrorBox error={nodesError} />}
      {node && !node.connected && (
        <div class="banner down" role="alert">
          Node {node.name} is down. Arsenal keeps reconnecting; this page recovers when it is back.
        </div>
      )}
      {socket === "down" && (
        <div class="banner warn" role="status">
          The live connection to Arsenal dropped; reconnecting …
        </div>
      )}
    </>
  );
}

function useShortcuts(): void {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (e.ctrlKey || e.metaKey || e.altKey || target.closest("input, textarea, select, [contenteditable]")) return;
      const page = PAGES.find((p) => p.key === e.key);
      if (page) {
        navigate(page.path);
        e.preventDefault();
      } else if (e.key === "/") {
        const search = document.querySelector<HTMLInputElement>("[data-search]");
        if (search) {
          search.focus();
          e.preventDefault();
        }
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
}

function Shell() {
  const me = useStore(session)!;
  const list = useStore(nodes);
  const route = useRoute();
  const [nodesError, setNodesError] = useState<unknown>(null);
  // Pages are keyed by their node, so one rendered before the node list arrives would be mounted
  // again when it does, losing what the user typed meanwhile: wait for the first answer.
  const [nodesKnown, setNodesKnown] = useState(list.length > 0);
  useShortcuts();

  useEffect(() => {
    const poll = () =>
      refreshNodes().then(
        () => setNodesError(null),
        (error) => setNodesError(error instanceof ApiError && error.status === 401 ? null : error),
      ).finally(() => setNodesKnown(true));
    poll();
    const timer = window.setInterval(poll, 3000);
    return () => window.clearInterval(timer);
  }, []);

  // A link may carry ?node= (a pid of another node): follow it.
  const linkedNode = route.query.get("node");
  useEffect(() => {
    if (linkedNode && linkedNode !== me.node && list.some((n) => n.name === linkedNode)) pickNode(linkedNode);
  }, [linkedNode, list]);

  const node = currentNode(list);
  const [page, ...rest] = route.path;
  const key = `${page ?? ""}/${node?.name ?? ""}`;
  let content;
  switch (page ?? "") {
    case "":
      content = <DashboardPage key={key} />;
      break;
    case "processes":
      content = <ProcessesPage key={key} />;
      break;
    case "process":
      content = <InspectorPage key={`${key}/${rest[0]}`} pid={rest[0] ?? ""} />;
      break;
    case "supervisors":
      content = <SupervisorsPage key={key} />;
      break;
    case "traces":
      content = <TracesPage key={key} id={rest[0]} />;
      break;
    case "sandboxes":
      content = <SandboxesPage key={key} id={rest[0]} />;
      break;
    default:
      content = <ErrorBox error={new ApiError("not_found", 404, `no page ${page}; pick one above`)} />;
  }
  const active = page === "process" ? "processes" : page ?? "";
  return (
    <div class="shell">
      <header>
        <a class="brand" href="#/">
          Arsenal
        </a>
        <nav aria-label="pages">
          {PAGES.map((p) => (
            <a href={`#/${p.path}`} class={active === p.path ? "current" : ""} key={p.path} title={`${p.label} (${p.key})`}>
              {p.label}
            </a>
          ))}
        </nav>
        <NodeSwitcher list={list} />
        <span class="who" title={`key ${me.name}`}>
          {me.name} · {me.role}
        </span>
        <button class="link" onClick={() => logout(null)}>
          Log out
        </button>
      </header>
      <Banners node={node} nodesError={nodesError} />
      <main>{nodesKnown ? content : <Loading what="reading the attached nodes" />}</main>
    </div>
  );
}

function App() {
  const me = useStore(session);
  return me ? <Shell /> : <Login />;
}

render(<App />, document.getElementById("app")!);
