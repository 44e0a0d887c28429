#!/usr/bin/env bash
# Prove that a fresh Debian machine gets from a clone to a working Arsenal with `make setup`, the
# way a new user would: Debian's minimal base plus only Debian's own python3 (no pip: PEP 668),
# make, git and ca-certificates. For each suite (default: bookworm trixie, i.e. Debian 12 and 13):
#
#   1. a copy of the cached bare root (scripts/compat_roots.sh --bare SUITE), those four packages
#      installed in it with apt, and a `git clone` of this checkout (its committed HEAD) at
#      /root/arsenal;
#   2. inside it (chroot, with /proc /sys /dev /dev/pts bind-mounted): `make setup`,
#      `uv run arsenal --help`, then `uv run arsenal ps` against a node started inside the root
#      (it shares this machine's network and epmd), and `arsenal demo --no-serve` / `--stop`;
#   3. every process started in the copy killed, every mount undone, the copy deleted (--keep
#      keeps it, unmounted).
#
# Usage: scripts/check_fresh_debian.sh [--keep] [--make-test] [SUITE ...]
#   --make-test  also run `make test` (the whole suite, half an hour or more) in each root
# Needs root. Prints each step's time and a summary; exits non-zero if any suite failed. Logs go
# to $ARSENAL_FRESH_WORK (default /tmp/arsenal-fresh)/SUITE.log. Not part of `make test`.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=${ARSENAL_FRESH_WORK:-/tmp/arsenal-fresh}
keep=0
make_test=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --make-test) make_test=1 ;;
    -*) echo "check_fresh_debian: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

if [ "$(id -u)" -ne 0 ]; then
  echo "check_fresh_debian: needs root (debootstrap, chroot, mount)" >&2
  exit 1
fi

# This machine's TLS settings, as a user of this machine would have them in a shell; nothing else
# of the host's environment reaches the root.
passed_env=()
for var in SSL_CERT_FILE SSL_CERT_DIR NODE_EXTRA_CA_CERTS PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE \
  PIP_DEFAULT_TIMEOUT; do
  [ -n "${!var:-}" ] && passed_env+=("$var=${!var}")
done

mounted=()   # mount points, in the order they were made
copy=""      # the copy being worked in

mounts_inside() { grep -F " $1/" /proc/mounts | awk '{print $2}' || true; }

kill_inside() {  # every process whose root is the copy: only ever ones this script started there
  local root=$1 link pid
  for link in /proc/[0-9]*/root; do
    pid=${link#/proc/}; pid=${pid%/root}
    [ "$(readlink "$link" 2>/dev/null)" = "$root" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  sleep 0.5
}

unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
  done
  mounted=()
}

remove_copy() {  # rm -rf only a copy with nothing mounted inside it
  local root=$1
  [ -e "$root" ] || return 0
  if [ -n "$(mounts_inside "$root")" ]; then
    echo "check_fresh_debian: $root still has mounts inside; NOT deleting it:" >&2
    mounts_inside "$root" >&2
    return 1
  fi
  rm -rf --one-file-system "$root"
}

cleanup() {
  [ -n "$copy" ] || return 0
  kill_inside "$copy"
  unmount_all
  [ $keep -eq 1 ] || remove_copy "$copy" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_binds() {
  local root=$1 dir
  for dir in proc sys dev dev/pts; do
    mkdir -p "$root/$dir"
    mount --bind "/$dir" "$root/$dir"
    mounted+=("$root/$dir")
  done
}

in_root() {  # in_root CMD...: a login-less shell of root's inside the copy, in the clone
  chroot "$copy" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
    PATH=/root/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "${passed_env[@]+"${passed_env[@]}"}" ARSENAL_COOKIE="$cookie" \
    bash -c 'cd /root/arsenal 2>/dev/null || cd /root; exec "$@"' in_root "$@"
}

step() {  # step NAME CMD...: run, log, time; stop the suite at the first failure
  local name=$1; shift
  local start=$SECONDS rc=0
  printf '  %-34s' "$name" >&2
  echo "=== $name: $*" >>"$log"
  "$@" >>"$log" 2>&1 || rc=$?
  printf '%4ds  %s\n' $((SECONDS - start)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")" >&2
  timings+=("$name $((SECONDS - start))s")
  return $rc
}

install_user_packages() {
  in_root apt-get -o Acquire::Check-Valid-Until=false update -qq
  in_root apt-get install -y -qq --no-install-recommends python3 make git ca-certificates
}

no_pip_in_python() {  # the premise: Debian's python3, without pip, externally managed
  in_root bash -c '! python3 -m pip --version && ls /usr/lib/python3*/EXTERNALLY-MANAGED && python3 --version'
}

start_node() {  # a plain node inside the root, halting by itself after 10 minutes
  in_root erl -noshell -sname "$node" -setcookie "$cookie" -eval 'timer:sleep(600000), halt().' \
    >>"$log" 2>&1 &
  local _
  for _ in $(seq 100); do
    epmd -names 2>/dev/null | grep -q "^name $node " && return 0
    sleep 0.2
  done
  return 1
}

ps_on_node() {
  in_root uv run arsenal ps --node "$node" --limit 5 | tee -a "$log" | grep -q "processes by"
}

demo_runs() {  # the demo uses ~/.erlang.cookie, as erl does: no cookie of the test's
  in_root env -u ARSENAL_COOKIE ARSENAL_DEMO_NAME="demo_$node" uv run arsenal demo --no-serve \
    && in_root env -u ARSENAL_COOKIE uv run arsenal ps --node "demo_$node" --limit 3 \
    && in_root env -u ARSENAL_COOKIE ARSENAL_DEMO_NAME="demo_$node" uv run arsenal demo --stop
}

check_suite() {
  local suite=$1 bare
  log="$work/$suite.log"
  : >"$log"
  timings=()
  echo "== $suite" >&2
  bare=$("$here/scripts/compat_roots.sh" --bare "$suite" | tail -n1)
  copy="$work/$suite-root"
  remove_copy "$copy"
  cookie="fresh_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  node="fresh_${suite}_$$"
  local start=$SECONDS
  step "copy the bare root" cp -a "$bare" "$copy" || return 1
  step "clone the checkout" git clone -q "$here" "$copy/root/arsenal" || return 1
  mount_binds "$copy"
  step "apt: python3 make git" install_user_packages || return 1
  step "python3 has no pip (PEP 668)" no_pip_in_python || return 1
  step "make setup" in_root make setup || return 1
  step "uv run arsenal --help" in_root uv run arsenal --help || return 1
  step "start a node in the root" start_node || return 1
  step "uv run arsenal ps" ps_on_node || return 1
  step "arsenal demo --no-serve/--stop" demo_runs || return 1
  if [ $make_test -eq 1 ]; then step "make test" in_root make test || return 1; fi
  echo "  total $((SECONDS - start))s" >&2
  timings+=("total $((SECONDS - start))s")
}

mkdir -p "$work"
# The host's epmd, so nodes in a root register with it and leave no epmd of the root's behind.
command -v epmd >/dev/null 2>&1 && epmd -daemon
summary=()
failed=0
for suite in "${suites[@]}"; do
  if check_suite "$suite"; then
    summary+=("$suite: ok (${timings[*]})")
  else
    summary+=("$suite: FAILED (see $work/$suite.log; ${timings[*]})")
    failed=1
  fi
  cleanup
  copy=""
done
printf '%s\n' "${summary[@]}"
exit $failed
