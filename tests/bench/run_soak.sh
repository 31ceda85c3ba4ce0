#!/usr/bin/env bash
# Soak benchmark (not part of CI): spoa-agent behind the real HAProxy (the shipped haproxy/2.6 or
# haproxy/3.x configuration, addresses set through its SPOA_* environment variables), routing
# HTTP by Host for a long time at about 70% of the maximum throughput of this setup, to show
# that memory, file descriptors and errors do not drift.
#
#   tests/bench/run_soak.sh [--minutes N] [--build DIR] [--load PCT] [--keep]
#     --minutes N   soak length (default 30); one table row per minute
#     --build DIR   build directory with handlers/app/spoa-agent and tests/bench/spoa_loadgen
#                   (default build/dev; both are copied at start, so rebuilding DIR meanwhile
#                   does not disturb the run)
#     --load PCT    target rate in percent of the measured maximum (default 70)
#     --keep        keep the work directory (logs, generated configurations) at exit
#   HAPROXY=/path/to/haproxy picks another HAProxy than the one on PATH.
#
# Setup, all on 127.0.0.1: spoa-agent (--threads 2, --admin, a static routing table: four exact
# hosts with a 200 ms cache TTL, so entries keep expiring under load, and a wildcard route);
# HAProxy with the shipped configuration; a second, tiny HAProxy as the HTTP backends
# (`http-request return`, far cheaper than any script server, so the backends do not set the
# rate); wrk with tests/bench/soak_rate.lua (Host spread over the warm hosts and 50 wildcard
# names; its delay() hook paces the requests to a schedule).
#
# Steps: 15 s of wrk without pacing measures the maximum rate; a 10-s paced run checks that
# PCT% of it is reachable; then one 60-s paced wrk run per minute. Each row shows the agent's
# RSS (KiB), open fds, SPOP connections (spoa_connections_active: HAProxy opens more when the
# agent answers slower, and closes idle ones), CPU seconds used in that minute (utime+stime),
# requests and their rate,
# non-2xx answers, socket errors, and the SPOE errors HAProxy logged (request lines whose
# spoe_err= field is set: txn.route.error, from `option set-on-error`). The shipped config
# fails closed, so an SPOE error also shows as a 503 in non2xx even if its log line was dropped.
# Summary: fails (exit 1) unless RSS in minutes 2..N stays within 5% of minute 2, the agent's
# own fds (open fds minus SPOP connections) are the same in minutes 2..N, there is no error of
# any kind, and the agent is still alive.
# Needs wrk (apt-get install wrk), curl and haproxy; run as any user on an otherwise quiet
# machine (the rates share the cores with HAProxy, the backends and wrk).
set -euo pipefail
BENCH_NAME=run_soak
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

minutes=30
build=$root/build/dev
load_pct=70
keep=0
usage() { sed -n '/^#   tests/,/^#   HAPROXY/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case $1 in
        --minutes) minutes=${2:?}; shift 2 ;;
        --build) build=${2:?}; shift 2 ;;
        --load) load_pct=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage ;;
        *) echo "$BENCH_NAME: unknown argument $1" >&2; usage ;;
    esac
done
[[ "$minutes" =~ ^[1-9][0-9]*$ ]] || { echo "$BENCH_NAME: --minutes wants a positive integer" >&2; exit 2; }
[[ "$load_pct" =~ ^[1-9][0-9]?$ ]] || { echo "$BENCH_NAME: --load wants 1..99" >&2; exit 2; }
haproxy_bin=${HAPROXY:-$(command -v haproxy || true)}
for tool in wrk curl "$haproxy_bin"; do
    command -v "$tool" >/dev/null || { echo "$BENCH_NAME: $tool not found (wrk: apt-get install wrk)" >&2; exit 2; }
done
for f in "$build/handlers/app/spoa-agent" "$build/tests/bench/spoa_loadgen"; do
    [ -x "$f" ] || { echo "$BENCH_NAME: $f missing (build with -DSPOA_BUILD_BENCH=ON)" >&2; exit 2; }
done

# WORK, PIDS, the EXIT trap that kills and reaps PIDS, cpu_ticks, rss_kib, wait_listening.
source "$here/bench_lib.sh"
if ((keep)); then
    # bench_lib's cleanup removes WORK; keep the processes' cleanup but not the removal.
    trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; echo "$BENCH_NAME: kept $WORK"' EXIT
fi
# Ctrl-C / kill: leave through exit so the EXIT trap stops everything. The long waits below are
# `wait PID` on background jobs, which a signal interrupts at once (a foreground wrk would hold
# the trap back for up to a minute).
trap 'echo "$BENCH_NAME: interrupted" >&2; exit 130' INT
trap 'echo "$BENCH_NAME: terminated" >&2; exit 143' TERM

# Private copies: another build into $build must not swap the binary under a running soak.
cp "$build/handlers/app/spoa-agent" "$WORK/spoa-agent"
cp "$build/tests/bench/spoa_loadgen" "$WORK/spoa_loadgen"
agent_bin=$WORK/spoa-agent
"$agent_bin" --version >/dev/null

# Free ports, distinct from each other (each --free-port call is independent, so two calls may
# in principle return the same port).
taken=" "
free_port() {
    local p i
    for ((i = 0; i < 20; i++)); do
        p=$("$WORK/spoa_loadgen" --free-port)
        if [[ "$taken" != *" $p "* ]]; then
            echo "$p"
            return 0
        fi
    done
    echo "$BENCH_NAME: no free port" >&2
    return 1
}
# free_port runs in a command substitution (a subshell): the caller records what it returned.
ports=()
for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$(free_port)
    taken+="$p "
    ports+=("$p")
done
read -r agent_port admin_port http_port pg_port smtp_port mysql_port tls_port feedback_port \
    web1_port web2_port <<<"${ports[*]}"

# Print the tail of every log, then fail: used when something does not start.
die() {
    echo "$BENCH_NAME: FAIL: $*" >&2
    for f in "$WORK"/*.log; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}

# ---- backends: two HTTP servers that answer 200 at once --------------------------------------
cat >"$WORK/backends.cfg" <<EOF
global
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend web1
    bind 127.0.0.1:$web1_port
    http-request return status 200 content-type text/plain string "backend 1\n"
frontend web2
    bind 127.0.0.1:$web2_port
    http-request return status 200 content-type text/plain string "backend 2\n"
EOF
"$haproxy_bin" -f "$WORK/backends.cfg" >"$WORK/backends.log" 2>&1 &
PIDS+=($!)
wait_listening "$web2_port" "${PIDS[-1]}" || die "backend HAProxy did not start"

# ---- spoa-agent --------------------------------------------------------------------------------
warm_hosts="app1.soak.test app2.soak.test app3.soak.test app4.soak.test"
wild_suffix=wild.soak.test
cat >"$WORK/routing.yaml" <<EOF
resolver: {type: static, timeout_ms: 800}
# Short TTLs: under load every entry expires several times a second, so the miss path (defer,
# single flight, SSRF check, re-encode) runs all along, not only the warm path.
cache: {ttl_ms: 200, negative_ttl_ms: 1000}
ssrf: {mode: allowlist, allow: [127.0.0.0/8]}
# HAProxy's shipped config sends every log line to the agent; reading them runs the passive
# health path too, as in production.
passive: {listen: "127.0.0.1:$feedback_port"}
routes:
  http:
    app1.soak.test: {endpoints: [127.0.0.1:$web1_port], ttl_ms: 200}
    app2.soak.test: {endpoints: [127.0.0.1:$web2_port], ttl_ms: 200}
    app3.soak.test: {endpoints: [127.0.0.1:$web1_port], ttl_ms: 200}
    app4.soak.test: {endpoints: [127.0.0.1:$web2_port], ttl_ms: 200}
    "*.$wild_suffix": {endpoints: [127.0.0.1:$web1_port, 127.0.0.1:$web2_port]}
EOF
"$agent_bin" --check --config "$WORK/routing.yaml" >"$WORK/check.log" 2>&1 || die "routing config refused"
# --deadline below the shipped SPOE files' `timeout processing 5s`.
"$agent_bin" --listen "127.0.0.1:$agent_port" --admin "127.0.0.1:$admin_port" --threads 2 \
    --config "$WORK/routing.yaml" --deadline 4500 --log-level warn >"$WORK/agent.log" 2>&1 &
agent_pid=$!
PIDS+=("$agent_pid")
# HAProxy must find the agent listening: a refused first SPOE connection costs a 1-s retry.
wait_listening "$agent_port" "$agent_pid" || die "spoa-agent did not start"
wait_listening "$admin_port" "$agent_pid" || die "spoa-agent admin did not start"

# ---- HAProxy with the shipped configuration -------------------------------------------------
# The same choice as haproxy/demo.sh: 3.x files for HAProxy >= 3.1, 2.6 files otherwise.
read -r major minor < <("$haproxy_bin" -v | sed -n 's/^HAProxy version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
cfg_dir=$root/haproxy/2.6
if ((major > 3 || (major == 3 && minor >= 1))); then cfg_dir=$root/haproxy/3.x; fi
export SPOA_AGENT_ADDR="127.0.0.1:$agent_port" SPOA_HTTP_BIND="127.0.0.1:$http_port" \
       SPOA_PG_BIND="127.0.0.1:$pg_port" SPOA_SMTP_BIND="127.0.0.1:$smtp_port" \
       SPOA_MYSQL_BIND="127.0.0.1:$mysql_port" SPOA_TLS_BIND="127.0.0.1:$tls_port" \
       SPOA_SPOE_CONF="$cfg_dir/spoe-routing.conf" SPOA_FEEDBACK_LOG="127.0.0.1:$feedback_port" \
       SPOA_PG_LUA="$root/haproxy/spoa-postgres.lua" \
       SPOA_STATS_SOCKET="$WORK/haproxy.sock"
"$haproxy_bin" -c -q -f "$cfg_dir/haproxy.cfg" >"$WORK/haproxy-check.log" 2>&1 ||
    die "haproxy -c refused $cfg_dir/haproxy.cfg"
# The shipped config logs every request to stdout: tens of millions of lines in a soak. Keep
# only what matters: lines that are not a plain success (not a request log, non-2xx status, or
# spoe_err set), HAProxy's own messages, and the SPOE engine's lines if it logs any (2.6 logged
# none in our runs) unless they report success (st=0). Field 4 of the request log-format is %ST.
"$haproxy_bin" -f "$cfg_dir/haproxy.cfg" > >(awk '
    / proto=http / { if ($4 !~ /^2/ || $0 !~ / spoe_err=- /) { print; fflush() } ; next }
    /SPOE: / && / st=0 / { next }
    { print; fflush() }' >"$WORK/haproxy.log") 2>&1 &
haproxy_pid=$!
PIDS+=("$haproxy_pid")
wait_listening "$http_port" "$haproxy_pid" || die "HAProxy did not start"
# Ready when a request is routed: before HAProxy's first agent connection, answers are 503
# "no routing decision".
routed=0
for ((i = 0; i < 100; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: app1.soak.test' "http://127.0.0.1:$http_port/" || true)
    [ "$code" = 200 ] && { routed=1; break; }
    sleep 0.1
done
((routed)) || die "no request routed through HAProxy within 10 s (last status $code)"

# ---- wrk ---------------------------------------------------------------------------------------
wrk_threads=2
export SOAK_HOSTS=$warm_hosts SOAK_WILD_SUFFIX=$wild_suffix SOAK_WILD_COUNT=50 SOAK_THREADS=$wrk_threads
# run_wrk SECONDS CONNECTIONS RATE OUT: wrk (RATE req/s, 0 = unpaced) in the background, so a
# signal stops the script at once, then waited for; a non-zero exit is a failure of the run.
run_wrk() {
    local pid rc=0
    SOAK_RATE=$3 wrk -t "$wrk_threads" -c "$2" -d "${1}s" --timeout 10s \
        -s "$here/soak_rate.lua" "http://127.0.0.1:$http_port/" >"$4" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$4" >&2; die "wrk exited with $rc"; }
}
# wrk_stat OUT KEY: requests | rate | non2xx | sockerr, from wrk's summary.
wrk_stat() {
    case $2 in
        requests) awk '/ requests in / { print $1; exit }' "$1" ;;
        rate) awk '/^Requests\/sec:/ { printf "%.0f\n", $2; exit }' "$1" ;;
        non2xx) awk '/Non-2xx or 3xx responses:/ { n = $NF } END { print n + 0 }' "$1" ;;
        # "Socket errors: connect 0, read 0, write 0, timeout 0"
        sockerr) awk '/Socket errors:/ { gsub(",", ""); n = $4 + $6 + $8 + $10 } END { print n + 0 }' "$1" ;;
    esac
}
# SPOE errors HAProxy logged so far (filtered log above: request lines with spoe_err set, or
# SPOE engine lines with a non-zero status).
spoe_errors() {
    grep -cE ' spoe_err=[^- ]|SPOE: .* st=[^0]' "$WORK/haproxy.log" || true
}
# SPOP connections open on the agent (its /metrics gauge).
spop_connections() {
    curl -s "http://127.0.0.1:$admin_port/metrics" | awk '$1 == "spoa_connections_active" {print $2}'
}

echo "$BENCH_NAME: HAProxy $("$haproxy_bin" -v | awk 'NR == 1 { print $3 }') ($cfg_dir), spoa-agent pid $agent_pid (--threads 2), load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

# Maximum: unpaced, enough connections to keep HAProxy and the agent busy.
max_conns=64
run_wrk 15 "$max_conns" 0 "$WORK/wrk-max.txt"
max_rate=$(wrk_stat "$WORK/wrk-max.txt" rate)
max_errors=$(($(wrk_stat "$WORK/wrk-max.txt" non2xx) + $(wrk_stat "$WORK/wrk-max.txt" sockerr)))
((max_rate > 0)) || die "no request completed in the maximum-rate run"
target=$((max_rate * load_pct / 100))
echo "$BENCH_NAME: maximum $max_rate req/s (15 s, $max_conns connections, $max_errors errors); target $load_pct% = $target req/s"

# Pacing: soak_rate.lua schedules the sends (see there), so the rate does not depend on the
# latency; it only needs connections to spare: at full load max_conns were all busy, twice that
# leaves most of them waiting for their slot at the target rate. A 10-s check run shows whether
# the machine can keep up (other builds share the cores).
conns=$((2 * max_conns))
run_wrk 10 "$conns" "$target" "$WORK/wrk-check.txt"
rate=$(wrk_stat "$WORK/wrk-check.txt" rate)
# Mean time a connection waits for its slot: the cycle conns / rate minus the latency.
mean_delay=$(awk -v c="$conns" -v r="$rate" -v f="$WORK/wrk-check.txt" 'BEGIN {
    while ((getline l < f) > 0) if (l ~ /^ +Latency /) { split(l, a, " "); lat = a[2] }
    ms = lat + 0; if (lat ~ /us$/) ms /= 1000; else if (lat ~ /[^m]s$/) ms *= 1000
    printf "%.1f", (r > 0 ? c * 1000 / r - ms : 0) }')
echo "$BENCH_NAME: soak at $target req/s ($load_pct% of $max_rate; 10-s check: $rate req/s): $conns connections, one request every $(awk -v t="$target" -v n="$wrk_threads" 'BEGIN { printf "%.3f", 1000 * n / t }') ms per wrk thread, mean per-request delay ${mean_delay} ms; $minutes min"

# ---- the soak ----------------------------------------------------------------------------------
printf '\n%6s %9s %5s %5s %6s %9s %7s %7s %8s %8s\n' minute rss_kib fds conns cpu_s requests req_s \
    non2xx sock_err spoe_err
rss=() fds=() own=() errors_total=0 total_requests=0 dead=0
spoe_before=$(spoe_errors)
for ((m = 1; m <= minutes; m++)); do
    ticks0=$(cpu_ticks "$agent_pid")
    run_wrk 60 "$conns" "$target" "$WORK/wrk-minute.txt"
    if ! kill -0 "$agent_pid" 2>/dev/null; then
        dead=1
        echo "$BENCH_NAME: spoa-agent died in minute $m" >&2
        break
    fi
    ticks1=$(cpu_ticks "$agent_pid")
    rss[m]=$(rss_kib "$agent_pid")
    fds[m]=$(ls "/proc/$agent_pid/fd" | wc -l)
    conns=$(spop_connections)
    own[m]=$((fds[m] - conns))
    spoe_now=$(spoe_errors)
    spoe=$((spoe_now - spoe_before))
    spoe_before=$spoe_now
    non2xx=$(wrk_stat "$WORK/wrk-minute.txt" non2xx)
    sockerr=$(wrk_stat "$WORK/wrk-minute.txt" sockerr)
    requests=$(wrk_stat "$WORK/wrk-minute.txt" requests)
    errors_total=$((errors_total + non2xx + sockerr + spoe))
    total_requests=$((total_requests + requests))
    printf '%6d %9d %5d %5d %6.2f %9d %7d %7d %8d %8d\n' "$m" "${rss[m]}" "${fds[m]}" "$conns" \
        "$(awk -v t=$((ticks1 - ticks0)) -v hz="$HZ" 'BEGIN { print t / hz }')" \
        "$requests" "$(wrk_stat "$WORK/wrk-minute.txt" rate)" \
        "$non2xx" "$sockerr" "$spoe"
done

# ---- summary -----------------------------------------------------------------------------------
echo
if ((m > 1)); then
    # Not a failure (the machine is shared), but a soak far below its target says little.
    mean_rate=$(awk -v r="$total_requests" -v n=$((m - 1)) 'BEGIN { printf "%.0f", r / (60 * n) }')
    if ((10 * mean_rate < 9 * target)); then
        echo "$BENCH_NAME: WARNING: mean rate $mean_rate req/s is below 90% of the target $target (busy machine?)"
    fi
fi
((dead)) && fail "spoa-agent died (log: $(tail -n 5 "$WORK/agent.log"))"
if ((minutes >= 2 && ${#rss[@]} >= 2)); then
    base=${rss[2]}
    lo=$base hi=$base fd_lo=${own[2]} fd_hi=${own[2]}
    for ((m = 2; m <= ${#rss[@]}; m++)); do
        ((rss[m] < lo)) && lo=${rss[m]}
        ((rss[m] > hi)) && hi=${rss[m]}
        ((own[m] < fd_lo)) && fd_lo=${own[m]}
        ((own[m] > fd_hi)) && fd_hi=${own[m]}
    done
    # Within 5% of minute 2, both ways: 20 * |x - base| <= base.
    if ((20 * (hi - base) <= base && 20 * (base - lo) <= base)); then
        echo "$BENCH_NAME: RSS minutes 2..${#rss[@]}: $lo..$hi KiB, within 5% of $base: ok"
    else
        fail "RSS minutes 2..${#rss[@]}: $lo..$hi KiB, not within 5% of minute 2 ($base KiB)"
    fi
    # HAProxy opens SPOP connections as its load needs and closes idle ones, so the agent's
    # own descriptors (open fds minus its SPOP connections) are what must not move.
    if ((fd_lo == fd_hi)); then
        echo "$BENCH_NAME: fds other than SPOP connections, minutes 2..${#fds[@]}: $fd_lo, flat: ok"
    else
        fail "fds other than SPOP connections, minutes 2..${#fds[@]}: $fd_lo..$fd_hi, not flat"
    fi
else
    echo "$BENCH_NAME: fewer than 2 minutes: no RSS/fd trend to check"
fi
if ((errors_total == 0)); then
    echo "$BENCH_NAME: errors (non-2xx, socket, SPOE): 0: ok"
else
    fail "$errors_total errors (non-2xx, socket, SPOE); HAProxy's non-success lines: $WORK/haproxy.log"
    head -n 5 "$WORK/haproxy.log" >&2
fi
# Log lines HAProxy could not write are SPOE errors we may not have counted: say so.
dropped=$(/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"show info\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(next((l.split(":", 1)[1].strip() for l in data.decode().splitlines()
            if l.startswith("DroppedLogs:")), "?"))' "$WORK/haproxy.sock" 2>/dev/null || echo "?")
echo "$BENCH_NAME: HAProxy DroppedLogs: $dropped (stdout and the UDP feedback to the agent; spoe_err counts only written lines)"
if grep -qiE "error|critical" "$WORK/agent.log"; then
    echo "$BENCH_NAME: agent log has errors:" >&2
    grep -iE "error|critical" "$WORK/agent.log" | head -n 5 >&2
fi
[ "$FAILED" -eq 0 ] && echo "$BENCH_NAME: OK"
exit "$FAILED"
