// Who is logged in, and on which node: a tiny observable store (no framework state library).
// The key lives in sessionStorage: it is gone when the tab closes, and never in a URL.
import { useEffect, useState } from "preact/hooks";

export interface Session {
  key: string;
  name: string;
  role: "viewer" | "operator" | "admin" | string;
  rights: string[];
  node: string | null; // the node picked in the switcher; null: the server's default
}

type Listener<T> = (value: T) => void;

export class Store<T> {
  private listeners = new Set<Listener<T>>();
  constructor(private current: T) {}
  get value(): T {
    return this.current;
  }
  set(value: T): void {
    this.current = value;
    this.listeners.forEach((listener) => listener(value));
  }
  subscribe(listener: Listener<T>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export function useStore<T>(store: Store<T>): T {
  const [value, setValue] = useState(store.value);
  useEffect(() => {
    setValue(store.value);
    return store.subscribe(setValue);
  }, [store]);
  return value;
}

const SAVED = "arsenal.session";

function load(): Session | null {
  try {
    const text = sessionStorage.getItem(SAVED);
    return text ? (JSON.parse(text) as Session) : null;
  } catch {
    return null;
  }
}

export const session = new Store<Session | null>(load());
/** Why the last session ended (a refused key, a revoked one), shown on the login page. */
export const loggedOutBecause = new Store<string | null>(null);

session.subscribe((value) => {
  if (value) sessionStorage.setItem(SAVED, JSON.stringify(value));
  else sessionStorage.removeItem(SAVED);
});

export function login(value: Session): void {
  loggedOutBecause.set(null);
  session.set(value);
}

export function logout(reason: string | null = null): void {
  if (session.value === null) return;
  loggedOutBecause.set(reason);
  session.set(null);
}

export function pickNode(node: string | null): void {
  if (session.value) session.set({ ...session.value, node });
}

/** May this session run operations of this severity? (read, write, destructive) */
export function may(severity: "read" | "write" | "destructive"): boolean {
  return session.value?.rights.includes(severity) ?? false;
}
