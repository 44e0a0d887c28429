// Builds the dashboard into web/dist (served by arsenal serve): one JS bundle, one CSS file, the page.
// Run by scripts/build_web.sh (make web); `node build.mjs --watch` rebuilds on change.
import { build, context } from "esbuild";
import { copyFileSync, mkdirSync, renameSync, rmSync } from "node:fs";

// Built beside the served directory, then swapped in: a running server never serves half a build.
const served = new URL("dist", import.meta.url).pathname;
const out = `${served}.build-${process.pid}/`;
rmSync(out, { recursive: true, force: true });
mkdirSync(out + "assets", { recursive: true });
copyFileSync("index.html", out + "index.html");
copyFileSync("favicon.svg", out + "favicon.svg");

function swapIn() {
  const old = `${served}.old-${process.pid}`;
  try {
    renameSync(served, old);
  } catch {}
  renameSync(out, served);
  rmSync(old, { recursive: true, force: true });
}

const options = {
  entryPoints: { main: "src/main.tsx" },
  bundle: true,
  minify: true,
  sourcemap: true,
  target: "es2020",
  outdir: out + "assets",
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".css": "css" },
  logLevel: "warning",
};

if (process.argv.includes("--watch")) {
  swapIn();
  await (await context({ ...options, outdir: served + "/assets" })).watch();
} else {
  await build(options);
  swapIn();
}
