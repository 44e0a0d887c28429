#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's Chromium with Playwright (the Python package, told
# the system browser's path: Playwright's own browser download does not work offline).
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium from Debian's packages (for the dashboard's browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
else
  echo "warning: no chromium: the dashboard's browser tests will be skipped." >&2
  echo "Install it, e.g. as root: apt-get install chromium" >&2
fi
