// Erlang terms as the node's own shell would print them (Elixir or Erlang syntax), from the API's
// tagged JSON: containers fold, long lists and binaries are cut with a way to see more, and pids
// link to their inspector. Rendering is bounded: nothing folded or cut is walked at all.
import { useState } from "preact/hooks";
import type { ComponentChildren } from "preact";
import { atomSource, binarySource, tag } from "./termsource";

export type Lang = "elixir" | "erlang";
type J = any;

const PAGE_ITEMS = 50; // items of a list, tuple or map shown before "more"
const CUT_CHARS = 240; // characters of a binary shown before "more"
const INLINE_CHARS = 72; // a container this short (roughly) prints on one line

export interface PidValue {
  node: string;
  id: number;
  serial: number;
}

/** `<0.ID.SERIAL>`: how the API takes a pid, on the pid's own node. */
export const pidText = (pid: PidValue) => `<0.${pid.id}.${pid.serial}>`;
export const inspectorHref = (pid: string, node?: string | null) =>
  `#/process/${encodeURIComponent(pid)}${node ? `?node=${encodeURIComponent(node)}` : ""}`;

const tagOf = tag;
const atomText = atomSource;
const stringText = binarySource;
const ELIXIR_PLAIN_ATOM = /^[a-zA-Z_][a-zA-Z0-9_@]*[?!]?$/;

const isAtom = (v: J, name?: string) => tagOf(v) === "$atom" && (name === undefined || v.$atom === name);

/** A rough printed length, walking at most `budget` characters' worth (for inline-or-block). */
function roughLength(v: J, budget: number): number {
  let used = 0;
  const stack: J[] = [v];
  while (stack.length && used <= budget) {
    const x = stack.pop();
    const tag = tagOf(x);
    if (Array.isArray(x)) {
      used += 2 + x.length * 2;
      stack.push(...x.slice(0, budget));
    } else if (tag === "$tuple") {
      used += 2 + x.$tuple.length * 2;
      stack.push(...x.$tuple.slice(0, budget));
    } else if (tag === "$map" || tag === "$fmap") {
      used += 3;
      for (const [k, val] of x[tag].slice(0, budget)) stack.push(k, val), (used += 4);
    } else if (tag === "$pid" || tag === "$port" || tag === "$ref" || tag === "$fun" || tag === "$export") {
      used += 16;
    } else if (tag) {
      stack.push(x[tag]);
      used += 2;
    } else if (x !== null && typeof x === "object") {
      for (const [k, val] of Object.entries(x).slice(0, budget)) stack.push(val), (used += k.length + 6);
    } else {
      used += String(x).length + (typeof x === "string" ? 2 : 0);
    }
  }
  return used;
}

interface Props {
  value: J;
  lang?: Lang;
  /** Containers deeper than this start folded. */
  open?: number;
  depth?: number;
}

export function Term({ value, lang = "elixir", open = 2, depth = 0 }: Props) {
  return (
    <code class="term">
      <Node value={value} lang={lang} open={open} depth={depth} />
    </code>
  );
}

function Node({ value, lang, open, depth }: Required<Props>): any {
  const v = value;
  const tag = tagOf(v);
  if (v === null || v === undefined) return <span class="t-atom">{lang === "elixir" ? "nil" : "undefined"}</span>;
  if (typeof v === "boolean") return <span class="t-atom">{String(v)}</span>;
  if (typeof v === "number") return <span class="t-num">{String(v)}</span>;
  if (typeof v === "string") return <Binary text={v} lang={lang} />;
  if (Array.isArray(v)) return <Seq items={v} open="[" close="]" lang={lang} openDepth={open} depth={depth} />;
  switch (tag) {
    case "$atom":
      return <span class="t-atom">{atomText(v.$atom, lang)}</span>;
    case "$int":
    case "$float":
      return <span class="t-num">{String(v[tag])}</span>;
    case "$tuple":
      return <Seq items={v.$tuple} open="{" close="}" lang={lang} openDepth={open} depth={depth} />;
    case "$flist":
      return <Seq items={v.$flist} open="[" close="]" lang={lang} openDepth={open} depth={depth} />;
    case "$strict":
      return <Node value={v.$strict} lang={lang} open={open} depth={depth} />;
    case "$map":
    case "$fmap":
      return <MapView pairs={v[tag]} lang={lang} openDepth={open} depth={depth} />;
    case "$pid": {
      const pid = v.$pid as PidValue;
      const text = pidText(pid);
      const shown = lang === "elixir" ? `#PID${text}` : text;
      return (
        <a class="t-pid" href={inspectorHref(text, pid.node)} title={`${text} on ${pid.node}: open its inspector`}>
          {shown}
        </a>
      );
    }
    case "$port": {
      const text = `#Port<0.${v.$port.id}>`;
      return <span class="t-ref">{text}</span>;
    }
    case "$ref":
      return <span class="t-ref">{`#Reference<0.${(v.$ref.ids as number[]).slice().reverse().join(".")}>`}</span>;
    case "$fun":
      return <span class="t-ref">{lang === "elixir" ? `#Function<${v.$fun.index}/${v.$fun.arity} in ${atomText(v.$fun.module, lang)}>` : `#Fun<${v.$fun.module}.${v.$fun.index}>`}</span>;
    case "$export":
      return (
        <span class="t-ref">
          {lang === "elixir"
            ? `&${atomText(v.$export.module, lang)}.${v.$export.function}/${v.$export.arity}`
            : `fun ${v.$export.module}:${v.$export.function}/${v.$export.arity}`}
        </span>
      );
    case "$bin":
      return <span class="t-str">{`<<${atob(v.$bin).length} bytes>>`}</span>;
    case "$bits":
      return <span class="t-str">{`<<${v.$bits.bits} bits>>`}</span>;
    case "$improper":
      return (
        <span>
          [<Seq items={v.$improper.items} open="" close="" lang={lang} openDepth={open} depth={depth} /> |{" "}
          <Node value={v.$improper.tail} lang={lang} open={open} depth={depth + 1} />]
        </span>
      );
    default:
      if (typeof v === "object")
        return <MapView pairs={Object.entries(v)} lang={lang} openDepth={open} depth={depth} />;
      return <span>{String(v)}</span>;
  }
}

function Binary({ text, lang }: { text: string; lang: Lang }) {
  const [all, setAll] = useState(false);
  if (all || text.length <= CUT_CHARS) return <span class="t-str">{stringText(text, lang)}</span>;
  return (
    <span class="t-str">
      {stringText(text.slice(0, CUT_CHARS), lang).replace(/"(\/utf8)?(>>)?$/, "")}
      <button class="t-more" onClick={() => setAll(true)} title="show the whole binary">
        … {text.length - CUT_CHARS} more characters
      </button>
    </span>
  );
}

interface Folding {
  lang: Lang;
  openDepth: number;
  depth: number;
}

/** A container's frame: inline when short, else a block that folds with a toggle. */
function Container({
  count,
  open,
  close,
  value,
  depth,
  openDepth,
  children,
}: {
  count: number;
  open: ComponentChildren;
  close: string;
  value: J;
  depth: number;
  openDepth: number;
  children: (shown: number, block: boolean) => ComponentChildren;
}) {
  const inline = count === 0 || roughLength(value, INLINE_CHARS) <= INLINE_CHARS;
  const [unfolded, setUnfolded] = useState(depth < openDepth);
  const [shown, setShown] = useState(PAGE_ITEMS);
  if (inline) return <span>{open}{children(count, false)}{close}</span>;
  if (!unfolded)
    return (
      <span>
        <button class="t-fold" aria-expanded="false" onClick={() => setUnfolded(true)} title="unfold">▸</button>
        {open}<button class="t-more" onClick={() => setUnfolded(true)}>… {count} items</button>{close}
      </span>
    );
  return (
    <span>
      <button class="t-fold" aria-expanded="true" onClick={() => setUnfolded(false)} title="fold">▾</button>
      {open}
      <span class="t-block">{children(Math.min(shown, count), true)}</span>
      {count > shown && (
        <span class="t-line">
          <button class="t-more" onClick={() => setShown(shown + PAGE_ITEMS)}>
            … {count - shown} more (show {Math.min(PAGE_ITEMS, count - shown)})
          </button>
        </span>
      )}
      {close}
    </span>
  );
}

function Seq({ items, open, close, lang, openDepth, depth }: { items: J[]; open: string; close: string } & Folding) {
  return (
    <Container count={items.length} open={open} close={close} value={items} depth={depth} openDepth={openDepth}>
      {(shown, block) =>
        items.slice(0, shown).map((item, i) =>
          block ? (
            <span class="t-line" key={i}>
              <Node value={item} lang={lang} open={openDepth} depth={depth + 1} />
              {i < items.length - 1 ? "," : ""}
            </span>
          ) : (
            <span key={i}>
              <Node value={item} lang={lang} open={openDepth} depth={depth + 1} />
              {i < items.length - 1 ? ", " : ""}
            </span>
          ),
        )
      }
    </Container>
  );
}

function MapView({ pairs, lang, openDepth, depth }: { pairs: [J, J][] } & Folding) {
  // Elixir structs: %Mod{...}, without the __struct__ key.
  let structName: string | null = null;
  let shownPairs = pairs;
  const struct = pairs.find(([k]) => isAtom(k, "__struct__") || k === "__struct__");
  if (lang === "elixir" && struct && isAtom(struct[1]) && struct[1].$atom.startsWith("Elixir.")) {
    structName = struct[1].$atom.slice(7);
    shownPairs = pairs.filter((p) => p !== struct);
  }
  const open = lang === "elixir" ? `%${structName ?? ""}{` : "#{";
  const entry = ([k, val]: [J, J], i: number, block: boolean) => {
    const last = i === shownPairs.length - 1;
    const keyword = lang === "elixir" && isAtom(k) && ELIXIR_PLAIN_ATOM.test(k.$atom) && !k.$atom.startsWith("Elixir.");
    const key = keyword ? (
      <span class="t-atom">{k.$atom}: </span>
    ) : (
      <span>
        <Node value={k} lang={lang} open={openDepth} depth={depth + 1} /> {lang === "elixir" ? "=> " : "=> "}
      </span>
    );
    const body = (
      <>
        {key}
        <Node value={val} lang={lang} open={openDepth} depth={depth + 1} />
        {last ? "" : block ? "," : ", "}
      </>
    );
    return block ? <span class="t-line" key={i}>{body}</span> : <span key={i}>{body}</span>;
  };
  return (
    <Container count={shownPairs.length} open={open} close="}" value={shownPairs} depth={depth} openDepth={openDepth}>
      {(shown, block) => shownPairs.slice(0, shown).map((pair, i) => entry(pair, i, block))}
    </Container>
  );
}
