#!/usr/bin/env bash
# The spoa demo: HAProxy + spoa-agent + demo backends on loopback.
#
#   haproxy/demo.sh            # installs what is missing (Debian, as root), builds, runs
#   haproxy/demo.sh --no-wait  # start, print, run a self-check, stop (used by the tests)
#
# Two HTTP backends and one PostgreSQL server are started on loopback; HAProxy routes HTTP by
# Host and PostgreSQL by database name, asking spoa-agent for every decision. Ctrl-C stops
# everything this script started.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wait_for_ctrl_c=1
[ "${1:-}" = "--no-wait" ] && wait_for_ctrl_c=0

http_port=${DEMO_HTTP_PORT:-8080}
pg_port=${DEMO_PG_PORT:-6432}
agent_port=${DEMO_AGENT_PORT:-12345}
admin_port=${DEMO_ADMIN_PORT:-9100}
web1_port=${DEMO_WEB1_PORT:-9001}
web2_port=${DEMO_WEB2_PORT:-9002}
pgsrv_port=${DEMO_PGSERVER_PORT:-5433}
smtp_port=${DEMO_SMTP_PORT:-2525}      # frontends of the shipped config the demo does not use
mysql_port=${DEMO_MYSQL_PORT:-3307}
tls_port=${DEMO_TLS_PORT:-8443}

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

# --- dependencies -------------------------------------------------------------------------
packages=(build-essential cmake ninja-build pkg-config libuv1-dev libmsgpack-cxx-dev libboost-dev
          libspdlog-dev libfmt-dev catch2 libcli11-dev libmicrohttpd-dev libyaml-cpp-dev
          libcurl4-openssl-dev haproxy curl python3 postgresql postgresql-client procps)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- build (DEMO_AGENT_BIN=<path> uses an existing binary instead) --------------------------
agent_bin=${DEMO_AGENT_BIN:-}
if [ -z "$agent_bin" ]; then
    build="$root/build/demo"
    say "building spoa-agent ($build)"
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOA_BUILD_TESTS=OFF \
          -DSPOA_BUILD_BENCH=OFF >/dev/null
    cmake --build "$build" --target spoa-agent >/dev/null
    agent_bin="$build/agent/app/spoa-agent"
fi

for port in "$http_port" "$pg_port" "$agent_port" "$admin_port" "$web1_port" "$web2_port" \
            "$pgsrv_port" "$smtp_port" "$mysql_port" "$tls_port"; do
    if ss -Htln "sport = :$port" | grep -q .; then
        echo "port $port is in use: stop what uses it or set DEMO_*_PORT (see the top of $0)" >&2
        exit 1
    fi
done

# --- run ----------------------------------------------------------------------------------
work=$(mktemp -d /tmp/spoa-demo.XXXXXX)
chmod 755 "$work"
pids=()
pg_data=""
cleanup() {
    trap - EXIT INT TERM
    say "stopping"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$pg_data" ]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -m fast stop >/dev/null 2>&1 || true
    fi
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Two HTTP backends that say who they are.
for n in 1 2; do
    port_var="web${n}_port"
    mkdir -p "$work/web$n"
    echo "hello from demo backend $n (port ${!port_var})" >"$work/web$n/index.html"
    python3 -m http.server "${!port_var}" --bind 127.0.0.1 --directory "$work/web$n" \
        >"$work/web$n.log" 2>&1 &
    pids+=($!)
done

# A PostgreSQL server with two databases, app1 and app2.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_data="$work/pgdata"
mkdir -p "$pg_data" && chown postgres:postgres "$pg_data"
runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
    -o "-p $pgsrv_port -k $pg_data -c listen_addresses=127.0.0.1" start >/dev/null
for db in app1 app2; do
    runuser -u postgres -- "$pg_bin/createdb" -h 127.0.0.1 -p "$pgsrv_port" -U postgres "$db"
    runuser -u postgres -- "$pg_bin/psql" -q -h 127.0.0.1 -p "$pgsrv_port" -U postgres -d "$db" \
        -c "create table whoami as select '$db'::text as database"
done

# The routing configuration (the demo's built-in default).
cat >"$work/routing.yaml" <<EOF
resolver: {type: static, timeout_ms: 800}
cache: {ttl_ms: 1000, negative_ttl_ms: 2000}
ssrf:
  mode: allowlist
  allow: [127.0.0.0/8]
metadata_variables: {tenant: tenant}
routes:
  http:
    app1.localhost: {endpoints: [127.0.0.1:$web1_port], metadata: {tenant: alpha}}
    app2.localhost: {endpoints: [127.0.0.1:$web2_port], metadata: {tenant: beta}}
    "*.preview.localhost":
      endpoints: [127.0.0.1:$web1_port]
      paths: {/v2: [127.0.0.1:$web2_port]}
    suspended.localhost: {error: forbidden, reason: tenant suspended}
    metadata.localhost: {endpoints: [169.254.169.254:80]}
  postgres:
    app1: {endpoints: [127.0.0.1:$pgsrv_port]}
    app2: {endpoints: [127.0.0.1:$pgsrv_port]}
EOF
"$agent_bin" --check --config "$work/routing.yaml" >/dev/null
"$agent_bin" --listen "127.0.0.1:$agent_port" --admin "127.0.0.1:$admin_port" \
    --config "$work/routing.yaml" --deadline 4000 >"$work/agent.log" 2>&1 &
pids+=($!)

version=$(haproxy -v | sed -n 's/^HAProxy version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
read -r major minor <<<"$version"
cfg_dir="$root/haproxy/2.6"
if [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 1 ]; }; then cfg_dir="$root/haproxy/3.x"; fi
export SPOA_AGENT_ADDR="127.0.0.1:$agent_port" SPOA_HTTP_BIND="127.0.0.1:$http_port" \
       SPOA_PG_BIND="127.0.0.1:$pg_port" SPOA_SMTP_BIND="127.0.0.1:$smtp_port" \
       SPOA_MYSQL_BIND="127.0.0.1:$mysql_port" SPOA_TLS_BIND="127.0.0.1:$tls_port" SPOA_SPOE_CONF="$cfg_dir/spoe-routing.conf" \
       SPOA_STATS_SOCKET="$work/haproxy.sock"
haproxy -f "$cfg_dir/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)

# Wait until HAProxy answers through the agent.
for _ in $(seq 1 100); do
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/haproxy.log" >&2; exit 1; }
    curl -s -o /dev/null -H 'Host: app1.localhost' "http://127.0.0.1:$http_port/" && break
    sleep 0.1
done

say "running: HAProxy $(haproxy -v | head -1 | awk '{print $3}') ($cfg_dir), spoa-agent, 2 web backends, PostgreSQL"
cat <<EOF

  Routing by Host (HAProxy :$http_port -> spoa-agent -> backend):
    curl -i -H 'Host: app1.localhost' http://127.0.0.1:$http_port/        # backend 1, x-route-cache: miss then hit
    curl -i -H 'Host: app2.localhost' http://127.0.0.1:$http_port/        # backend 2
    curl -i -H 'Host: x.preview.localhost' http://127.0.0.1:$http_port/v2/ # wildcard + path prefix -> backend 2
    curl -i -H 'Host: suspended.localhost' http://127.0.0.1:$http_port/   # 403 from the resolver
    curl -i -H 'Host: nobody.localhost' http://127.0.0.1:$http_port/      # 404
    curl -i -H 'Host: metadata.localhost' http://127.0.0.1:$http_port/    # 403: SSRF policy refuses 169.254.169.254

  Routing by database (HAProxy :$pg_port parses the startup packet through the agent):
    psql "host=127.0.0.1 port=$pg_port user=postgres dbname=app1 sslmode=disable" -c 'table whoami'
    psql "host=127.0.0.1 port=$pg_port user=postgres dbname=app2 sslmode=disable" -c 'table whoami'
    psql "host=127.0.0.1 port=$pg_port user=postgres dbname=other sslmode=disable"   # refused: no route

  Agent:   curl http://127.0.0.1:$admin_port/metrics | grep spoa_route
           curl -X POST 'http://127.0.0.1:$admin_port/invalidate?id=app1.localhost'
  Logs:    $work/{agent,haproxy}.log

EOF

if [ "$wait_for_ctrl_c" -eq 0 ]; then
    # Self-check: the routes above answer as described.
    out1=$(curl -s -H 'Host: app1.localhost' "http://127.0.0.1:$http_port/")
    out2=$(curl -s -H 'Host: app2.localhost' "http://127.0.0.1:$http_port/")
    code404=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: nobody.localhost' "http://127.0.0.1:$http_port/")
    code403=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: metadata.localhost' "http://127.0.0.1:$http_port/")
    db1=$(psql -XAtq "host=127.0.0.1 port=$pg_port user=postgres dbname=app1 sslmode=disable" -c 'table whoami' || true)
    db2=$(psql -XAtq "host=127.0.0.1 port=$pg_port user=postgres dbname=app2 sslmode=disable" -c 'table whoami' || true)
    if [[ "$out1" == *"backend 1"* && "$out2" == *"backend 2"* && "$code404" == 404 &&
          "$code403" == 403 && "$db1" == app1 && "$db2" == app2 ]]; then
        say "self-check passed"
        exit 0
    fi
    say "self-check FAILED: '$out1' '$out2' $code404 $code403 '$db1' '$db2'"
    tail -20 "$work/agent.log" "$work/haproxy.log" >&2
    exit 1
fi

say "Ctrl-C to stop"
# `wait` (unlike a foreground sleep) lets the trap run as soon as a signal arrives.
while :; do sleep 3600 & wait $!; done
