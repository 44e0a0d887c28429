// Pieces every page uses: loading and error states (never a blank screen), a confirmation dialog
// for destructive actions, tabs, and hooks that load or poll the API.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

export function ErrorBox({ error, retry }: { error: unknown; retry?: () => void }) {
  const e = error instanceof ApiError ? error : null;
  return (
    <div class="error" role="alert">
      <strong>{e ? errorTitle(e) : "Something failed"}</strong>
      <span> {e ? e.message : String(error)}</span>
      {retry && (
        <button class="link" onClick={retry}>
          try again
        </button>
      )}
    </div>
  );
}

function errorTitle(e: ApiError): string {
  switch (e.code) {
    case "node_down":
      return "The node is down.";
    case "not_found":
      return "Not found.";
    case "forbidden":
    case "read_only":
    case "protected_process":
      return "Refused.";
    case "unreachable":
      return "Arsenal is not answering.";
    case "timeout":
      return "Timed out.";
    default:
      return `${e.code.replace(/_/g, " ")}:`;
  }
}

export function Loading({ what = "loading" }: { what?: string }) {
  return <div class="loading" aria-busy="true">{what} …</div>;
}

export interface Async<T> {
  data?: T;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Load `fn()` when `deps` change, and again every `every` ms if given (keeping the last data
 *  on screen while the next load runs, and the last error until one succeeds). With `keep`, the
 *  last data also stays while the inputs change (a name giving way to the pid it resolved to). */
export function useApi<T>(fn: () => Promise<T>, deps: unknown[], every = 0, keep = false): Async<T> {
  const [state, setState] = useState<{ data?: T; error: unknown; loading: boolean }>({ error: null, loading: true });
  const generation = useRef(0);
  const load = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    fn().then(
      (data) => mine === generation.current && setState({ data, error: null, loading: false }),
      (error) => mine === generation.current && setState((s) => ({ data: s.data, error, loading: false })),
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(() => {
    if (!keep) setState({ error: null, loading: true });
    load();
    if (!every) return () => void generation.current++;
    const timer = window.setInterval(load, every);
    return () => {
      window.clearInterval(timer);
      generation.current++;
    };
  }, [load, every]);
  return { ...state, reload: load };
}

export function Confirm({
  title,
  children,
  confirm,
  onConfirm,
  onCancel,
}: {
  title: string;
  children?: ComponentChildren;
  confirm: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const button = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    button.current?.focus();
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onCancel();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  return (
    <div class="modal-backdrop" onClick={onCancel}>
      <div class="modal" role="dialog" aria-modal="true" aria-label={title} onClick={(e) => e.stopPropagation()}>
        <h3>{title}</h3>
        <div>{children}</div>
        <div class="modal-actions">
          <button onClick={onCancel}>Cancel</button>
          <button ref={button} class="danger" onClick={onConfirm}>
            {confirm}
          </button>
        </div>
      </div>
    </div>
  );
}

export function Tabs({
  tabs,
  current,
  onChange,
}: {
  tabs: [string, string][];
  current: string;
  onChange: (id: string) => void;
}) {
  return (
    <div class="tabs" role="tablist">
      {tabs.map(([id, label]) => (
        <button
          role="tab"
          aria-selected={id === current}
          class={id === current ? "tab current" : "tab"}
          onClick={() => onChange(id)}
          key={id}
        >
          {label}
        </button>
      ))}
    </div>
  );
}
