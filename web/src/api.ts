// The REST client: every call carries the session's key; every failure is an ApiError with the
// server's own message (the envelope's `detail`), so pages show what the server said to do.
import { session, logout } from "./session";

export interface ErrorObject {
  code: string;
  status: number;
  title: string;
  detail: string;
  meta?: Record<string, unknown>;
}

export class ApiError extends Error {
  constructor(
    public code: string,
    public status: number,
    message: string,
    public meta: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export interface Envelope<T> {
  data: T;
  meta: Record<string, unknown>;
  links: Record<string, string>;
}

export type Query = Record<string, string | number | boolean | undefined | null | string[]>;

export function url(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, v));
    else params.set(key, String(value));
  }
  const q = params.toString();
  return `/api/v1${path}${q ? "?" + q : ""}`;
}

/** A call to the API. `node` defaults to the node picked in the switcher. */
export async function request<T>(
  method: string,
  path: string,
  options: { query?: Query; body?: unknown; node?: string | null; key?: string } = {},
): Promise<Envelope<T>> {
  const key = options.key ?? session.value?.key;
  const node = options.node === undefined ? session.value?.node : options.node;
  const query = { ...(options.query ?? {}), node: node ?? undefined };
  let response: Response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    });
  } catch {
    throw new ApiError("unreachable", 0, "Arsenal's server does not answer: is `arsenal serve` running?");
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError("bad_answer", response.status, `the server answered ${response.status} with something that is not JSON`);
  }
  if (!response.ok) {
    const error: ErrorObject | undefined = body?.errors?.[0];
    const failure = new ApiError(
      error?.code ?? "http_error",
      response.status,
      error?.detail ?? `${response.status} ${response.statusText}`,
      error?.meta ?? {},
    );
    // A key that stops working (revoked, expired) ends the session: the login page says why.
    if (response.status === 401 && options.key === undefined) logout(failure.message);
    throw failure;
  }
  return body as Envelope<T>;
}

export const get = <T>(path: string, query?: Query, node?: string | null) =>
  request<T>("GET", path, { query, node }).then((e) => e.data);
export const post = <T>(path: string, body: unknown = {}, node?: string | null) =>
  request<T>("POST", path, { body, node }).then((e) => e.data);
export const put = <T>(path: string, body: unknown = {}, node?: string | null) =>
  request<T>("PUT", path, { body, node }).then((e) => e.data);
export const del = <T>(path: string, body?: unknown, node?: string | null) =>
  request<T>("DELETE", path, { body, node }).then((e) => e.data);

/** A pid (`<0.1.0>`) or registered name as a path segment. */
export const pidPath = (pid: string) => encodeURIComponent(pid);
