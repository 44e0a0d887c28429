// The attached nodes, refreshed by the shell: the node switcher, the "node is down" banner and
// the term syntax (a node's language) all read this.
import { get } from "./api";
import { session, Store, useStore } from "./session";
import type { Lang } from "./term";

export interface NodeRow {
  name: string;
  connected: boolean;
  read_only: boolean;
  default: boolean;
  language: string | null;
  otp_release: string | null;
  erts_version: string | null;
  agent_version: string | null;
  reconnects: number;
}

export const nodes = new Store<NodeRow[]>([]);

export async function refreshNodes(): Promise<void> {
  const data = await get<{ nodes: NodeRow[] }>("/nodes", {}, null);
  nodes.set(data.nodes);
}

/** The node pages act on: the one picked, else the server's default. */
export function currentNode(list: NodeRow[] = nodes.value): NodeRow | undefined {
  const picked = session.value?.node;
  return list.find((n) => (picked ? n.name === picked : n.default)) ?? list[0];
}

export function useCurrentNode(): NodeRow | undefined {
  const list = useStore(nodes);
  useStore(session);
  return currentNode(list);
}

/** The syntax terms are shown in: the node's own language. */
export function useLang(): Lang {
  return useCurrentNode()?.language === "erlang" ? "erlang" : "elixir";
}
