// Erlang terms as source text in the node's syntax, from the API's tagged JSON: what the state
// editor starts from, and what the server's term parser reads back as the same term (for terms
// without pids, refs, ports and funs, which have no source syntax: `hasOpaque` tells). term.tsx
// uses the atom and binary spellings too, so what is shown and what is edited agree.
import type { Lang } from "./term";
/** A tagged-JSON value's tag (`$atom`, `$pid`...), or null for plain JSON. */
export function tag(v: unknown): string | null {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return null;
  const keys = Object.keys(v);
  return keys.length === 1 && keys[0].startsWith("$") ? keys[0] : null;
}

export function hasOpaque(v: unknown): boolean {
  const stack: unknown[] = [v];
  while (stack.length) {
    const x = stack.pop();
    if (x === null || typeof x !== "object") continue;
    const t = tag(x);
    if (t === "$pid" || t === "$port" || t === "$ref" || t === "$fun") return true;
    if (Array.isArray(x)) stack.push(...x);
    else if (t === "$bin" || t === "$bits" || t === "$int" || t === "$float" || t === "$atom" || t === "$export") continue;
    else stack.push(...Object.values(x as Record<string, unknown>));
  }
  return false;
}

const ERLANG_RESERVED = new Set(
  "after and andalso band begin bnot bor bsl bsr bxor case catch cond div end fun if let not of or orelse receive rem try when xor maybe else".split(" "),
);

export function atomSource(name: string, lang: Lang): string {
  if (lang === "erlang")
    return /^[a-z][a-zA-Z0-9_@]*$/.test(name) && !ERLANG_RESERVED.has(name) ? name : `'${escapeText(name, "'")}'`;
  if (name === "nil" || name === "true" || name === "false") return name;
  if (/^Elixir(\.[A-Z][a-zA-Z0-9_]*)+$/.test(name)) return name.slice(7);
  return /^[a-zA-Z_][a-zA-Z0-9_@]*[?!]?$/.test(name) ? `:${name}` : `:"${escapeText(name, '"')}"`;
}

function escapeText(s: string, quote: string): string {
  let out = "";
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === "\\" || ch === quote) out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out;
}

export function binarySource(s: string, lang: Lang): string {
  if (lang === "elixir") return `"${escapeText(s, '"').replace(/#\{/g, "\\#{")}"`;
  // Erlang's "..." in a binary is one byte per character: other text needs /utf8.
  return /[^\x00-\x7f]/.test(s) ? `<<"${escapeText(s, '"')}"/utf8>>` : `<<"${escapeText(s, '"')}">>`;
}

function numberSource(n: number | string, lang: Lang, float: boolean): string {
  let text = String(n);
  if (/^-?0x/i.test(text) && lang === "erlang") text = text.replace(/0x/i, "16#");
  if (float || /e/i.test(text)) {
    // A float needs a fraction in both languages: 1e+16 → 1.0e+16, 2 → 2.0.
    if (!/[.]/.test(text)) text = /e/i.test(text) ? text.replace(/e/i, ".0e") : text + ".0";
  }
  return text;
}

function bytesOf(b64: string): number[] {
  return Array.from(atob(b64), (c) => c.charCodeAt(0));
}

const WIDTH = 72;

/** Tagged JSON as source text in the node's syntax, indented, that the server's parser reads
 *  back as the same term (for terms without pids, refs, ports and funs). */
export function termSource(v: unknown, lang: Lang): string {
  return src(v, lang, "")!;
}

interface Entry {
  key?: unknown; // a map's key, written `key => value`
  keyword?: string; // or an Elixir keyword key, written `key: value`
  value: unknown;
}

interface Parts {
  open: string;
  entries: Entry[];
  tail?: unknown; // an improper list's tail
  close: string;
}

/** With `indent` null: the term on one line, or null when it is longer than WIDTH (measuring
 *  stops there, so a big subtree costs no more than a small one). Otherwise: one line if it fits,
 *  else one entry a line, indented. */
function src(v: unknown, lang: Lang, indent: string | null): string | null {
  while (tag(v) === "$strict") v = (v as { $strict: unknown }).$strict;
  const scalar = scalarSource(v, lang);
  if (scalar !== null) return indent === null && scalar.length > WIDTH ? null : scalar;
  const parts = containerParts(v, lang);
  if (parts.entries.length === 0 && parts.tail === undefined) return parts.open + parts.close;
  if (indent === null) {
    let out = parts.open;
    for (let i = 0; i < parts.entries.length; i++) {
      const e = parts.entries[i];
      const key = e.keyword !== undefined ? `${e.keyword}: ` : e.key !== undefined ? src(e.key, lang, null) : "";
      const value = src(e.value, lang, null);
      if (key === null || value === null) return null;
      out += (i ? ", " : "") + (e.key !== undefined ? `${key} => ` : key) + value;
      if (out.length > WIDTH) return null;
    }
    if (parts.tail !== undefined) {
      const tail = src(parts.tail, lang, null);
      if (tail === null) return null;
      out += ` | ${tail}`;
    }
    out += parts.close;
    return out.length > WIDTH ? null : out;
  }
  const one = src(v, lang, null);
  if (one !== null && one.length + indent.length <= WIDTH) return one;
  const inner = indent + "  ";
  // A long list of numbers, atoms or short strings fills its lines rather than taking one each.
  const scalars =
    parts.tail === undefined && parts.entries.every((e) => e.key === undefined && e.keyword === undefined)
      ? parts.entries.map((e) => scalarSource(e.value, lang))
      : null;
  if (scalars && scalars.every((x) => x !== null && x.length <= 24)) {
    const rows: string[] = [];
    let row = "";
    for (const item of scalars as string[]) {
      if (row && inner.length + row.length + item.length + 2 > WIDTH) rows.push(row), (row = "");
      row += (row ? ", " : "") + item;
    }
    rows.push(row);
    return `${parts.open}\n${rows.map((r) => inner + r).join(",\n")}\n${indent}${parts.close}`;
  }
  const lines = parts.entries.map((e) => {
    const key = e.keyword !== undefined ? `${e.keyword}: ` : e.key !== undefined ? `${src(e.key, lang, inner)} => ` : "";
    return inner + key + src(e.value, lang, inner);
  });
  const tail = parts.tail !== undefined ? `\n${inner}| ${src(parts.tail, lang, inner)}` : "";
  return `${parts.open}\n${lines.join(",\n")}${tail}\n${indent}${parts.close}`;
}

function scalarSource(v: unknown, lang: Lang): string | null {
  if (v === null || v === undefined) return lang === "elixir" ? "nil" : "undefined";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") return numberSource(v, lang, !Number.isInteger(v));
  if (typeof v === "string") return binarySource(v, lang);
  if (Array.isArray(v)) return null;
  const o = v as Record<string, any>;
  switch (tag(v)) {
    case "$atom":
      return atomSource(o.$atom, lang);
    case "$int":
      return numberSource(o.$int, lang, false);
    case "$float":
      return numberSource(o.$float, lang, true);
    case "$bin":
      return `<<${bytesOf(o.$bin).join(", ")}>>`;
    case "$bits": {
      const data = bytesOf(o.$bits.data);
      const bits: number = o.$bits.bits;
      const last = data.pop() ?? 0;
      const tail = bits ? (lang === "erlang" ? `${last >> (8 - bits)}:${bits}` : `${last >> (8 - bits)}::size(${bits})`) : "";
      return `<<${[...data.map(String), ...(tail ? [tail] : [])].join(", ")}>>`;
    }
    case "$export":
      return lang === "elixir"
        ? `&${atomSource(o.$export.module, lang)}.${o.$export.function}/${o.$export.arity}`
        : `fun ${atomSource(o.$export.module, lang)}:${atomSource(o.$export.function, lang)}/${o.$export.arity}`;
    case "$pid":
    case "$port":
    case "$ref":
    case "$fun":
      throw new Error("pids, ports, refs and funs have no source syntax");
    default:
      return null;
  }
}

function containerParts(v: unknown, lang: Lang): Parts {
  const values = (items: unknown[]) => items.map((value) => ({ value }));
  if (Array.isArray(v)) return { open: "[", entries: values(v), close: "]" };
  const o = v as Record<string, any>;
  const t = tag(v);
  if (t === "$tuple") return { open: "{", entries: values(o.$tuple), close: "}" };
  if (t === "$flist") return { open: "[", entries: values(o.$flist), close: "]" };
  if (t === "$improper") return { open: "[", entries: values(o.$improper.items), tail: o.$improper.tail, close: "]" };
  return mapParts(t === "$map" || t === "$fmap" ? o[t] : Object.entries(o), lang);
}

function mapParts(pairs: [unknown, unknown][], lang: Lang): Parts {
  let open = lang === "elixir" ? "%{" : "#{";
  let shown = pairs;
  if (lang === "elixir") {
    const struct = pairs.find(([k]) => tag(k) === "$atom" && (k as { $atom: string }).$atom === "__struct__");
    const mod = struct && tag(struct[1]) === "$atom" ? (struct[1] as { $atom: string }).$atom : null;
    if (mod && /^Elixir(\.[A-Z][a-zA-Z0-9_]*)+$/.test(mod)) {
      open = `%${mod.slice(7)}{`;
      shown = pairs.filter((p) => p !== struct);
    }
  }
  // Elixir's `key: value` must come after every `k => v`: use it only when every key allows it.
  const keyword =
    lang === "elixir" &&
    shown.every(([k]) => tag(k) === "$atom" && /^[a-zA-Z_][a-zA-Z0-9_@]*[?!]?$/.test((k as { $atom: string }).$atom));
  return {
    open,
    entries: shown.map(([key, value]) => (keyword ? { keyword: (key as { $atom: string }).$atom, value } : { key, value })),
    close: "}",
  };
}
