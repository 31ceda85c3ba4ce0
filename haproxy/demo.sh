#!/usr/bin/env bash
# The spoa demo: HAProxy + spoa-agent + demo backends on loopback.
#
#   haproxy/demo.sh            # installs what is missing (Debian, as root), builds, runs
#   haproxy/demo.sh --no-wait  # start, print, run a self-check, stop (used by the tests)
#
# Two HTTP backends and one PostgreSQL server are started on loopback; HAProxy routes HTTP by
# Host and PostgreSQL by database name, asking spoa-agent for every decision. A third HTTP
# backend sleeps until first use: its route says `state: asleep`, and the agent wakes it through
# a tiny platform API (POST /wake/<id>, started by this script), holding the first request until
# the backend listens (a cold start). PostgreSQL 17 clients can also open TLS at once on a second
# port, where HAProxy ends TLS (haproxy/postgres-tls.cfg, a certificate made for the demo) and
# routes by database the same way. Ctrl-C stops everything this script started.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wait_for_ctrl_c=1
[ "${1:-}" = "--no-wait" ] && wait_for_ctrl_c=0

http_port=${DEMO_HTTP_PORT:-8080}
pg_port=${DEMO_PG_PORT:-6432}
pg_tls_port=${DEMO_PG_TLS_PORT:-$((pg_port + 1))}      # PostgreSQL 17 direct TLS, ends at HAProxy
agent_port=${DEMO_AGENT_PORT:-12345}
admin_port=${DEMO_ADMIN_PORT:-9100}
web1_port=${DEMO_WEB1_PORT:-9001}
web2_port=${DEMO_WEB2_PORT:-9002}
web3_port=${DEMO_WEB3_PORT:-$((web2_port + 1))}          # the backend that sleeps until used
platform_port=${DEMO_PLATFORM_PORT:-$((admin_port + 1))} # the platform API that wakes it
pgsrv_port=${DEMO_PGSERVER_PORT:-5433}
smtp_port=${DEMO_SMTP_PORT:-2525}      # frontends of the shipped config the demo does not use
mysql_port=${DEMO_MYSQL_PORT:-3307}
tls_port=${DEMO_TLS_PORT:-8443}
feedback_port=${DEMO_FEEDBACK_PORT:-$((agent_port + 2))}  # UDP: HAProxy's log lines to the agent

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
# wait_for LOG COMMAND...: runs COMMAND every 0.1 s until it succeeds; if the process started
# last exits meanwhile, or 30 s pass, prints LOG (its output) and fails the script.
wait_for() {
    local log=$1
    shift
    for _ in $(seq 1 300); do
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log" >&2; exit 1; }
        "$@" && return 0
        sleep 0.1
    done
    say "gave up after 30 s waiting for: $*"
    tail -n 20 "$log" >&2
    exit 1
}

# --- dependencies -------------------------------------------------------------------------
packages=(build-essential cmake ninja-build pkg-config libuv1-dev libmsgpack-cxx-dev libboost-dev
          libspdlog-dev libfmt-dev catch2 libcli11-dev libmicrohttpd-dev libyaml-cpp-dev
          libcurl4-openssl-dev libhiredis-dev haproxy curl python3 postgresql postgresql-client procps openssl)
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
    agent_bin="$build/handlers/app/spoa-agent"
fi

for port in "$http_port" "$pg_port" "$pg_tls_port" "$agent_port" "$admin_port" "$web1_port" "$web2_port" \
            "$web3_port" "$platform_port" "$pgsrv_port" "$smtp_port" "$mysql_port" "$tls_port"; do
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

# A platform API that starts backend 3 when the agent wakes it: POST /wake/sleepy.localhost
# answers 202 and starts the backend (an http.server on $web3_port), 409 while it is starting,
# 200 once it listens. Backend 3 is not running until then.
mkdir -p "$work/web3"
echo "hello from demo backend 3 (port $web3_port, started on first use)" >"$work/web3/index.html"
cat >"$work/platform.py" <<'PY'
import http.server, signal, socket, subprocess, sys, threading
port, backend_port, docroot = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock, child = threading.Lock(), None
def listening():
    try:
        socket.create_connection(("127.0.0.1", backend_port), timeout=0.2).close()
        return True
    except OSError:
        return False
class Wake(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global child
        if self.path != "/wake/sleepy.localhost":
            status = 404
        else:
            with lock:
                if child is None or child.poll() is not None:
                    child = subprocess.Popen([sys.executable, "-m", "http.server", str(backend_port),
                                              "--bind", "127.0.0.1", "--directory", docroot],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    status = 202
                else:
                    status = 200 if listening() else 409
        print(f"wake {self.path}: {status}", flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
def stop(*_):
    if child is not None:
        child.terminate()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Wake).serve_forever()
PY
python3 "$work/platform.py" "$platform_port" "$web3_port" "$work/web3" >"$work/platform.log" 2>&1 &
pids+=($!)

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
# Passive health signals: HAProxy's log lines (connect failures open circuits).
passive: {listen: "127.0.0.1:$feedback_port"}
health: {type: tcp, interval_ms: 2000, rise: 2, fall: 3}
breaker: {failures: 3, cooldown_ms: 5000}
# Cold starts: a request for a sleeping backend is held while the platform starts it (one wake
# per backend, however many requests wait), then forwarded; 504 if it is not up in time.
cold_start:
  waker: http
  http: {url: "http://127.0.0.1:$platform_port/wake/{id}", method: POST, ok_statuses: [200, 202, 409]}
  timeout_ms: 4000
  processing_timeout_ms: 5000
  margin_ms: 300
routes:
  http:
    app1.localhost: {endpoints: [127.0.0.1:$web1_port], metadata: {tenant: alpha}}
    app2.localhost: {endpoints: [127.0.0.1:$web2_port], metadata: {tenant: beta}}
    "*.preview.localhost":
      endpoints: [127.0.0.1:$web1_port]
      paths: {/v2: [127.0.0.1:$web2_port]}
    sleepy.localhost: {endpoints: [127.0.0.1:$web3_port], state: asleep}
    suspended.localhost: {error: forbidden, reason: tenant suspended}
    metadata.localhost: {endpoints: [169.254.169.254:80]}
  postgres:
    app1: {endpoints: [127.0.0.1:$pgsrv_port]}
    app2: {endpoints: [127.0.0.1:$pgsrv_port]}
EOF
"$agent_bin" --check --config "$work/routing.yaml" >/dev/null
"$agent_bin" --listen "127.0.0.1:$agent_port" --admin "127.0.0.1:$admin_port" \
    --config "$work/routing.yaml" --deadline 4500 >"$work/agent.log" 2>&1 &
pids+=($!)
# HAProxy starts once the agent listens: an SPOE connection refused at start-up is retried after
# a one-second turn-around while the requests behind it wait.
wait_for "$work/agent.log" curl -sf -o /dev/null "http://127.0.0.1:$admin_port/healthz"

version=$(haproxy -v | sed -n 's/^HAProxy version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
read -r major minor <<<"$version"
cfg_dir="$root/haproxy/2.6"
if [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 1 ]; }; then cfg_dir="$root/haproxy/3.x"; fi
# Direct TLS for PostgreSQL 17 clients, terminated by HAProxy (haproxy/postgres-tls.cfg) with a
# certificate made for the demo.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/pg-tls.key" -out "$work/pg-tls.crt" 2>/dev/null
cat "$work/pg-tls.crt" "$work/pg-tls.key" >"$work/pg-tls.pem"
export SPOA_PG_TLS_BIND="127.0.0.1:$pg_tls_port" SPOA_PG_TLS_CERT="$work/pg-tls.pem"
export SPOA_AGENT_ADDR="127.0.0.1:$agent_port" SPOA_HTTP_BIND="127.0.0.1:$http_port" \
       SPOA_PG_BIND="127.0.0.1:$pg_port" SPOA_SMTP_BIND="127.0.0.1:$smtp_port" \
       SPOA_MYSQL_BIND="127.0.0.1:$mysql_port" SPOA_TLS_BIND="127.0.0.1:$tls_port" SPOA_SPOE_CONF="$cfg_dir/spoe-routing.conf" \
       SPOA_PG_LUA="$root/haproxy/spoa-postgres.lua" \
       SPOA_FEEDBACK_LOG="127.0.0.1:$feedback_port" \
       SPOA_STATS_SOCKET="$work/haproxy.sock"
haproxy -f "$cfg_dir/haproxy.cfg" -f "$root/haproxy/postgres-tls.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)

# Wait until HAProxy routes through the agent: any HTTP answer is not enough, a 503 "no routing
# decision" comes back while HAProxy has not yet connected to the agent (its first check).
routed() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: app1.localhost' \
          "http://127.0.0.1:$http_port/")" = 200 ]
}
wait_for "$work/haproxy.log" routed

say "running: HAProxy $(haproxy -v | head -1 | awk '{print $3}') ($cfg_dir), spoa-agent, 2 web backends (+1 asleep), PostgreSQL"
cat <<EOF

  Routing by Host (HAProxy :$http_port -> spoa-agent -> backend):
    curl -i -H 'Host: app1.localhost' http://127.0.0.1:$http_port/        # backend 1, x-route-cache: miss then hit
    curl -i -H 'Host: app2.localhost' http://127.0.0.1:$http_port/        # backend 2
    curl -i -H 'Host: x.preview.localhost' http://127.0.0.1:$http_port/v2/ # wildcard + path prefix -> backend 2
    curl -i -H 'Host: suspended.localhost' http://127.0.0.1:$http_port/   # 403 from the resolver
    curl -i -H 'Host: nobody.localhost' http://127.0.0.1:$http_port/      # 404
    curl -i -H 'Host: metadata.localhost' http://127.0.0.1:$http_port/    # 403: SSRF policy refuses 169.254.169.254

  Cold start (backend 3 is not running; the agent wakes it through the platform on :$platform_port):
    curl -i -H 'Host: sleepy.localhost' http://127.0.0.1:$http_port/      # held until it listens: x-route-kind: cold
    curl -i -H 'Host: sleepy.localhost' http://127.0.0.1:$http_port/      # x-route-kind: cached

  Routing by database (HAProxy :$pg_port answers SSLRequest 'N', the agent routes the startup packet):
    psql "host=127.0.0.1 port=$pg_port user=postgres dbname=app1" -c 'table whoami'
    psql "host=127.0.0.1 port=$pg_port user=postgres dbname=app2" -c 'table whoami'
    psql "host=127.0.0.1 port=$pg_port user=postgres dbname=other"   # FATAL: no postgres route (SQLSTATE 3D000)
    psql "host=127.0.0.1 port=$pg_port user=postgres dbname=app1 sslmode=require"   # libpq: server does not support SSL
  Direct TLS ended at HAProxy (libpq 17+; Debian's psql 15 cannot open TLS at once):
    psql "host=127.0.0.1 port=$pg_tls_port user=postgres dbname=app1 sslnegotiation=direct sslmode=verify-full sslrootcert=$work/pg-tls.crt"
    openssl s_client -connect 127.0.0.1:$pg_tls_port -alpn postgresql </dev/null | grep ALPN   # postgresql

  Agent:   curl http://127.0.0.1:$admin_port/metrics | grep spoa_route
           curl -X POST 'http://127.0.0.1:$admin_port/invalidate?id=app1.localhost'
  Logs:    $work/{agent,haproxy,platform}.log

EOF

if [ "$wait_for_ctrl_c" -eq 0 ]; then
    # Self-check: the routes above answer as described.
    out1=$(curl -s -H 'Host: app1.localhost' "http://127.0.0.1:$http_port/")
    out2=$(curl -s -H 'Host: app2.localhost' "http://127.0.0.1:$http_port/")
    code404=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: nobody.localhost' "http://127.0.0.1:$http_port/")
    code403=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: metadata.localhost' "http://127.0.0.1:$http_port/")
    db1=$(env -u PGSSLMODE psql -XAtq "host=127.0.0.1 port=$pg_port user=postgres dbname=app1" -c 'table whoami' || true)
    db2=$(env -u PGSSLMODE psql -XAtq "host=127.0.0.1 port=$pg_port user=postgres dbname=app2" -c 'table whoami' || true)
    refused=$(env -u PGSSLMODE psql -XAtq "host=127.0.0.1 port=$pg_port user=postgres dbname=other" -c 'select 1' 2>&1 || true)
    alpn=$(openssl s_client -connect "127.0.0.1:$pg_tls_port" -alpn postgresql -CAfile "$work/pg-tls.crt" \
               -verify_return_error </dev/null 2>&1 | sed -n 's/^ALPN protocol: //p' || true)
    # What libpq 17 does with sslnegotiation=direct: TLS, then the StartupMessage; the server's
    # first answer ('R', authentication) shows the connection was routed to PostgreSQL.
    tls_routed=$(python3 - "$pg_tls_port" "$work/pg-tls.crt" <<'PY' 2>&1 || true
import socket, ssl, struct, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.set_alpn_protocols(["postgresql"])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s = ctx.wrap_socket(raw, server_hostname="localhost")
params = b"user\0postgres\0database\0app1\0\0"
s.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
print(s.recv(1).decode())
PY
)
    # The cold start: backend 3 is not listening; the first request wakes it and waits.
    asleep=no
    ss -Htln "sport = :$web3_port" | grep -q . || asleep=yes
    cold=$(curl -s -D - -H 'Host: sleepy.localhost' "http://127.0.0.1:$http_port/" | tr -d '\r')
    kind1=$(sed -n 's/^x-route-kind: //Ip' <<<"$cold")
    kind2=$(curl -s -o /dev/null -D - -H 'Host: sleepy.localhost' "http://127.0.0.1:$http_port/" |
            tr -d '\r' | sed -n 's/^x-route-kind: //Ip')
    if [[ "$out1" == *"backend 1"* && "$out2" == *"backend 2"* && "$code404" == 404 &&
          "$code403" == 403 && "$db1" == app1 && "$db2" == app2 && "$refused" == *"SQLSTATE 3D000"* && "$alpn" == postgresql &&
          "$tls_routed" == R &&
          "$asleep" == yes &&
          "$cold" == *"backend 3"* && "$kind1" == cold && ( "$kind2" == cached || "$kind2" == warm ) ]]; then
        say "self-check passed (cold start: $(grep -o 'ready after [0-9]* ms' "$work/agent.log" | head -1))"
        exit 0
    fi
    say "self-check FAILED: '$out1' '$out2' $code404 $code403 '$db1' '$db2' '$refused' alpn='$alpn' tls='$tls_routed' asleep=$asleep cold='$kind1' then '$kind2'"
    tail -n 20 "$work/agent.log" "$work/haproxy.log" "$work/platform.log" >&2
    exit 1
fi

say "Ctrl-C to stop"
# `wait` (unlike a foreground sleep) lets the trap run as soon as a signal arrives.
while :; do sleep 3600 & wait $!; done
