#!/usr/bin/env bash
# Debian roots that carry other OTP releases, for the compatibility suite and for building the agent
# with each OTP line's compiler:
#   trixie  -> OTP 27 / Elixir 1.18        sid -> OTP 29 / Elixir 1.20
# A node started with `chroot ROOT erl -sname ...` shares this machine's network and epmd, so
# Arsenal on the host attaches to it as to any local node.
#
# Usage: scripts/compat_roots.sh [--bare] [SUITE ...]
#   default: the suites whose OTP line this machine lacks, of bookworm (25), trixie (27), sid (29)
#   --bare   a root with nothing but Debian's minimal base (for proving a fresh-machine setup)
# Roots are cached under $ARSENAL_COMPAT_ROOTS (default ~/.cache/arsenal/roots) and built once;
# a half-built root is never used (it is only renamed into place when complete). Needs root and
# debootstrap (installed from Debian's packages when missing). Prints each ready root's path.
#
# No root ever has /dev or /proc bind-mounted when this script is not running: /proc is mounted only
# around apt, and unmounted on every exit path, so deleting a cached root is a plain `rm -rf`.
set -euo pipefail

bare=0
if [ "${1:-}" = "--bare" ]; then bare=1; shift; fi
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  host=$(erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().' 2>/dev/null || true)
  for pair in bookworm:25 trixie:27 sid:29; do
    [ "${pair#*:}" = "$host" ] || suites+=("${pair%%:*}")
  done
fi
base=${ARSENAL_COMPAT_ROOTS:-$HOME/.cache/arsenal/roots}

if [ "$(id -u)" -ne 0 ]; then
  echo "compat_roots: building Debian roots needs root (debootstrap, chroot)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# The mirror this machine's apt already uses: the only package registry it may reach.
mirror=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
  2>/dev/null || true; } | sed -nE 's/^URIs:[[:space:]]*//p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//p' \
  | awk '{print $1}' | grep -v security | head -n1 || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

mounted=()
cleanup() {
  local m
  for m in "${mounted[@]+"${mounted[@]}"}"; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

in_root() {  # in_root ROOT CMD...: run with /proc mounted, unmounted again right after
  local root=$1; shift
  mount -t proc proc "$root/proc"
  mounted+=("$root/proc")
  local rc=0
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
  umount -l "$root/proc"
  mounted=("${mounted[@]/$root\/proc}")
  return $rc
}

build_root() {
  local suite=$1 root=$2
  local tmp="$root.partial"
  if [ -d "$tmp" ]; then
    # Only ever a leftover of an interrupted build; make sure nothing is mounted inside first.
    umount -l "$tmp/proc" 2>/dev/null || true
    if grep -q " $tmp/" /proc/mounts; then
      echo "compat_roots: $tmp still has mounts inside; not deleting it" >&2
      return 1
    fi
    rm -rf "$tmp"
  fi
  mkdir -p "$(dirname "$root")"
  echo "compat_roots: debootstrap $suite (minbase) from $mirror" >&2
  debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 \
    || { echo "compat_roots: debootstrap $suite failed; see $tmp.log" >&2; return 1; }
  cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  cp /etc/hosts "$tmp/etc/hosts"
  # This machine's extra CA certificates, or HTTPS clients (uv, npm) fail inside the root.
  if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    mkdir -p "$tmp/usr/local/share/ca-certificates"
    cp -r /usr/local/share/ca-certificates/. "$tmp/usr/local/share/ca-certificates/"
  fi
  # The same PyPI configuration as this machine, so pip/uv inside reach what this machine reaches.
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$tmp/etc/pip.conf"
  local apt_opts=(-o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false)
  local pkgs=(ca-certificates)
  [ $bare -eq 1 ] || pkgs+=(erlang-nox erlang-dev elixir)
  in_root "$tmp" apt-get "${apt_opts[@]}" update -qq >>"$tmp.log" 2>&1
  in_root "$tmp" apt-get "${apt_opts[@]}" install -y -qq "${pkgs[@]}" >>"$tmp.log" 2>&1 \
    || { echo "compat_roots: installing ${pkgs[*]} in $suite failed; see $tmp.log" >&2; return 1; }
  in_root "$tmp" update-ca-certificates >/dev/null 2>&1 || true
  in_root "$tmp" apt-get clean >/dev/null 2>&1 || true
  mv "$tmp" "$root"
  mv "$tmp.log" "$root.log"
}

for suite in "${suites[@]}"; do
  name=$suite
  [ $bare -eq 1 ] && name="$suite-bare"
  root="$base/$name"
  if [ ! -d "$root" ]; then
    build_root "$suite" "$root"
  fi
  echo "$root"
done
