#!/usr/bin/env bash
# Builds HAProxy from a source tarball into OUTDIR/haproxy, once: OUTDIR/haproxy.sha256 records
# the tarball it came from and the build options, and a later call with the same tarball and
# options reuses the binary.
# Installs the missing Debian -dev packages first (as root, or with sudo).
# Prints the binary's path on stdout; progress goes to stderr, the compiler to OUTDIR/build.log.
# Usage: tests/support/build_haproxy.sh TARBALL OUTDIR
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 TARBALL OUTDIR" >&2
    exit 2
fi
tarball=$1
[ -f "$tarball" ] || { echo "build_haproxy: no such tarball: $tarball" >&2; exit 1; }
mkdir -p "$2"
out=$(cd "$2" && pwd)
# Debian installs Lua 5.4 as liblua5.4.so with headers under /usr/include/lua5.4. USE_PROMEX:
# HAProxy's Prometheus exporter, which haproxy/monitoring and its tests use.
options=(TARGET=linux-glibc USE_OPENSSL=1 USE_PCRE2=1 USE_ZLIB=1 USE_LUA=1
         LUA_INC=/usr/include/lua5.4 LUA_LIB_NAME=lua5.4 USE_PROMEX=1)
sum="$(sha256sum "$tarball" | cut -d' ' -f1) ${options[*]}"
if [ -x "$out/haproxy" ] && [ "$(cat "$out/haproxy.sha256" 2>/dev/null)" = "$sum" ]; then
    echo "$out/haproxy"
    exit 0
fi

packages=(build-essential libssl-dev libpcre2-dev zlib1g-dev liblua5.4-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A stale stamp must not survive a failed build.
rm -rf "$out/src" "$out/haproxy" "$out/haproxy.sha256"
mkdir "$out/src"
tar -xf "$tarball" -C "$out/src" --strip-components=1
echo "== building HAProxy from $tarball (log: $out/build.log)" >&2
t0=$SECONDS
if ! make -C "$out/src" -j "$(nproc)" "${options[@]}" >"$out/build.log" 2>&1; then
    tail -20 "$out/build.log" >&2
    echo "build_haproxy: make failed (full log: $out/build.log)" >&2
    exit 1
fi
cp "$out/src/haproxy" "$out/haproxy"
rm -rf "$out/src"
echo "$sum" >"$out/haproxy.sha256"
echo "== built $("$out/haproxy" -v | head -1) in $((SECONDS - t0)) s" >&2
echo "$out/haproxy"
