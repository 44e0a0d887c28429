#!/usr/bin/env bash
# Build the dashboard (web/) into web/dist, which `arsenal serve` serves: its packages come from the npm
# registry at `make` time, pinned by web/package-lock.json; the page fetches nothing at run time.
# Skipped when the built page is newer than every source file.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
web="$here/web"
out="$web/dist/index.html"
cd "$web"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ -f "$out" ] && [ -z "$(find src index.html favicon.svg build.mjs package-lock.json -newer "$out" -print -quit)" ]; then
  exit 0
fi
npx --no-install tsc --noEmit  # the types are checked here: esbuild only strips them
node build.mjs
echo "web: built the dashboard into ${out%/index.html}"
