// Hash routes (`#/processes?sort=memory`): a reload keeps the page, the server serves one file,
// and a pid in a link needs no server-side routing.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  path: string[]; // "#/process/<0.1.0>" → ["process", "<0.1.0>"]
  query: URLSearchParams;
}

export function parseHash(hash: string = location.hash): Route {
  const text = hash.replace(/^#\/?/, "");
  const [path, query = ""] = text.split("?", 2);
  return {
    path: path.split("/").filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(query),
  };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const update = () => setRoute(parseHash());
    update(); // a change between the first render and this effect would otherwise be missed
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}

export function navigate(path: string, query: Record<string, string | undefined> = {}): void {
  const q = new URLSearchParams();
  Object.entries(query).forEach(([k, v]) => v !== undefined && v !== "" && q.set(k, v));
  const text = q.toString();
  location.hash = `#/${path}${text ? "?" + text : ""}`;
}
