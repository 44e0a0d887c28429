// Builds the dashboard into src/arsenal/web/static: one JS bundle, one CSS file, the page.
// Run by scripts/build_web.sh (make web); `node build.mjs --watch` rebuilds on change.
import { build, context } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const out = new URL("../src/arsenal/web/static/", import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out + "assets", { recursive: true });
copyFileSync("index.html", out + "index.html");
copyFileSync("favicon.svg", out + "favicon.svg");

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
  await (await context(options)).watch();
} else {
  await build(options);
}
