// One WebSocket per page (/api/v1/ws), shared by every view: views subscribe to channels and get
// their messages; when the socket drops (Arsenal restarted, network) it reconnects with backoff
// and subscribes again, and `socketState` says so meanwhile so pages can show it.
import { request } from "./api";
import { session, Store } from "./session";

export interface ServerMessage {
  type: string;
  channel?: string;
  data?: any;
  errors?: { code: string; detail: string; status: number }[];
}

export type SocketState = "connecting" | "open" | "down";
export const socketState = new Store<SocketState>("connecting");

type Handler = (message: ServerMessage) => void;

interface Subscription {
  channel: string;
  options: Record<string, unknown>;
  handlers: Set<Handler>;
}

class Socket {
  private socket: WebSocket | null = null;
  private subscriptions = new Map<string, Subscription>();
  private retry = 500;
  private timer: number | undefined;
  private key: string | null = null;

  constructor() {
    session.subscribe((value) => {
      if ((value?.key ?? null) !== this.key) this.restart();
    });
  }

  /** Receive `channel`'s messages until the returned function is called. */
  subscribe(channel: string, handler: Handler, options: Record<string, unknown> = {}): () => void {
    let sub = this.subscriptions.get(channel);
    if (!sub) {
      sub = { channel, options, handlers: new Set() };
      this.subscriptions.set(channel, sub);
      this.sendSubscribe(sub);
    }
    sub.handlers.add(handler);
    this.ensure();
    return () => {
      const current = this.subscriptions.get(channel);
      if (!current) return;
      current.handlers.delete(handler);
      if (current.handlers.size === 0) {
        this.subscriptions.delete(channel);
        this.send({ unsubscribe: channel });
      }
    };
  }

  private sendSubscribe(sub: Subscription): void {
    this.send({ subscribe: sub.channel, ...sub.options });
  }

  private send(message: unknown): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private restart(): void {
    this.key = session.value?.key ?? null;
    window.clearTimeout(this.timer);
    const old = this.socket;
    this.socket = null;
    old?.close();
    if (this.key && this.subscriptions.size) this.connect();
  }

  private ensure(): void {
    if (!this.socket && session.value) this.connect();
  }

  private connect(): void {
    const key = session.value?.key;
    if (!key) return;
    this.key = key;
    socketState.set("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/ws?access_token=${encodeURIComponent(key)}`);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.retry = 500;
      socketState.set("open");
      this.subscriptions.forEach((sub) => this.sendSubscribe(sub));
    };
    socket.onmessage = (event) => {
      let message: ServerMessage;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      const sub = message.channel ? this.subscriptions.get(message.channel) : undefined;
      sub?.handlers.forEach((handler) => handler(message));
    };
    socket.onclose = () => {
      if (this.socket !== socket) return; // replaced on purpose
      this.socket = null;
      socketState.set("down");
      // A refused handshake looks like any failure to the page; asking the API tells a revoked
      // key (request() ends the session on 401) from a server that is away.
      if (!opened) request("GET", "/session").catch(() => undefined);
      this.timer = window.setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 8000);
    };
  }
}

export const live = new Socket();
