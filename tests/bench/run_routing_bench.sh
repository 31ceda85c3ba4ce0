#!/usr/bin/env bash
# Routing benchmark driver: spoa_loadgen --message route-http against spoa-agent --config, with
# the echo handler of the same agent process as the baseline, and one table per agent thread
# count.
#
#   tests/bench/run_routing_bench.sh BUILD_DIR [--quick]
#
# Builds nothing: BUILD_DIR must hold handlers/app/spoa-agent and tests/bench/spoa_loadgen (or set
# SPOA_AGENT, SPOA_LOADGEN). The remote resolver runs against the reference control plane
# (handlers/control_plane/spoa_control_plane.py, /usr/bin/python3 with python3-msgpack; or set
# SPOA_CONTROL_PLANE, SPOA_BENCH_PYTHON). Use a RelWithDebInfo or Release build.
#
# Every run: N connections x K NOTIFY frames in flight (the agent bench's 16 x 32 row),
# WARMUP s then DURATION s, load generator with one thread on the same cores. Three agent
# processes per thread count, each also serving `--example echo`, whose run is that process's
# baseline:
#   static  static routes, health checks off, circuit breaker off:
#           echo | route warm (BENCH_HOSTS hosts, every request a cache hit after the first
#           one per host) | route 1% misses, IP-literal endpoints | route 1% misses, endpoints
#           named "localhost" (getaddrinfo + SSRF check of every address per miss)
#   health  the same routes with `health` (tcp, interval 2000 ms) and `breaker` (failures 5)
#           on, against listening backends: echo | route warm
#   remote  resolver.type remote: the reference control plane with --delay-ms 1:
#           echo | route 1% misses
# A miss is a host name never sent before (spoa_loadgen --miss-rate: exactly 1 request in
# 100), so it is a cache miss whatever the throughput; the cache TTL is 10 minutes, so warm
# hosts never expire during a run. The miss ratio printed is the agent's own:
# spoa_route_cache_misses_total / (hits + negative hits + misses + coalesced), from /metrics
# before and after the run (warm-up included); "resolve us" is spoa_route_resolve_seconds
# sum/count over the run (resolver call + endpoint validation, per miss).
#
# Columns: decisions (or ACKs) per second, latency p50/p99/p99.9 per frame (send to ACK), the
# rate as a share of the same process's echo rate, agent CPU seconds per million frames
# answered (warm-up and drain included), and the miss columns above.
#
# The warm target (route warm within 15% of echo) is also measured in PAIRS alternating 1-s
# runs, echo then route warm, against the static agent: the VM this runs on varies by +-20%
# from one second to the next, so the summary gives the median of the per-pair ratios (and
# their range) beside the single 5-s runs of the table.
#
# --quick: a functional smoke run for ctest (4 x 8, 1 s, 1 agent thread). Exit status 1 if any
# run reports a validation error, a refusal, an unanswered frame or a failed connection, or if
# a miss run's decisions labelled "miss" are not the misses sent (plus at most one per warm
# host); timing never fails.
#
# Environment overrides: BENCH_CONNS (16), BENCH_INFLIGHT (32), BENCH_DURATION (5),
# BENCH_WARMUP (1), BENCH_AGENT_THREADS ("1 2"), BENCH_HOSTS (4), BENCH_MISS_RATE (0.01),
# BENCH_CP_DELAY_MS (1), BENCH_LG_THREADS (1), BENCH_PAIRS (9; 0 with --quick).

set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
BUILD=$1
shift
QUICK=0
if [[ ${1:-} == --quick ]]; then QUICK=1; shift; fi

SRC=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=${SPOA_AGENT:-$BUILD/handlers/app/spoa-agent}
LOADGEN=${SPOA_LOADGEN:-$BUILD/tests/bench/spoa_loadgen}
CONTROL_PLANE=${SPOA_CONTROL_PLANE:-$SRC/handlers/control_plane/spoa_control_plane.py}
PYTHON=${SPOA_BENCH_PYTHON:-/usr/bin/python3}
for exe in "$AGENT" "$LOADGEN"; do
    if [[ ! -x $exe ]]; then
        echo "run_routing_bench: $exe not found (build first: ninja -C $BUILD)" >&2
        exit 2
    fi
done
if ! "$PYTHON" -c 'import msgpack' 2>/dev/null; then
    echo "run_routing_bench: $PYTHON cannot import msgpack (apt-get install python3-msgpack)" >&2
    exit 2
fi

if [[ $QUICK == 1 ]]; then
    CONNS=${BENCH_CONNS:-4}
    INFLIGHT=${BENCH_INFLIGHT:-8}
    DURATION=${BENCH_DURATION:-1}
    WARMUP=${BENCH_WARMUP:-0.2}
    THREAD_COUNTS=${BENCH_AGENT_THREADS:-1}
    PAIRS=${BENCH_PAIRS:-0}
else
    CONNS=${BENCH_CONNS:-16}
    INFLIGHT=${BENCH_INFLIGHT:-32}
    DURATION=${BENCH_DURATION:-5}
    WARMUP=${BENCH_WARMUP:-1}
    THREAD_COUNTS=${BENCH_AGENT_THREADS:-"1 2"}
    PAIRS=${BENCH_PAIRS:-9}
fi
HOSTS=${BENCH_HOSTS:-4}
MISS_RATE=${BENCH_MISS_RATE:-0.01}
CP_DELAY_MS=${BENCH_CP_DELAY_MS:-1}
LG_THREADS=${BENCH_LG_THREADS:-1}

BENCH_NAME=run_routing_bench
# shellcheck source=bench_lib.sh
source "$SRC/tests/bench/bench_lib.sh"

USED_PORTS=" "
new_port() {  # a free port not handed out before by this script
    local p
    for ((;;)); do
        p=$("$LOADGEN" --free-port)
        if [[ $USED_PORTS != *" $p "* ]]; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
}

metric() {  # metric FILE NAME: the sum of NAME's samples (every label set)
    awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.9g\n", s }' "$1"
}

scrape() {  # scrape ADMIN_PORT FILE
    curl -sf "http://127.0.0.1:$1/metrics" >"$2" || : >"$2"
}

delta() {  # delta BEFORE AFTER NAME
    awk -v a="$(metric "$1" "$3")" -v b="$(metric "$2" "$3")" 'BEGIN { printf "%.9g\n", b - a }'
}

# --- backends: the endpoints the routes point to listen (health checks connect to them)
BE_PORT=$(new_port)
MISS_PORT=$(new_port)
"$PYTHON" - "$BE_PORT" "$MISS_PORT" >"$WORK/backends.out" 2>&1 <<'EOF' &
import asyncio, sys
async def main():
    async def conn(reader, writer):
        writer.close()
    servers = [await asyncio.start_server(conn, "127.0.0.1", int(p), backlog=1024)
               for p in sys.argv[1:]]
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
EOF
BE_PID=$!
PIDS+=("$BE_PID")
wait_listening "$MISS_PORT" "$BE_PID" || {
    cat "$WORK/backends.out" >&2
    echo "run_routing_bench: the backend listeners did not start" >&2
    exit 1
}

# --- configurations
# Warm hosts are w<i>.<suffix>, misses m<n>-<pid>-<thread>.miss.<suffix> (spoa_loadgen).
routes_yaml() {
    cat <<EOF
routes:
  http:
    "*.lit.bench.localhost": {endpoints: [127.0.0.1:$BE_PORT], metadata: {tenant: bench}}
    "*.miss.lit.bench.localhost": {endpoints: [127.0.0.1:$MISS_PORT], metadata: {tenant: bench}}
    "*.dns.bench.localhost": {endpoints: [127.0.0.1:$BE_PORT], metadata: {tenant: bench}}
    "*.miss.dns.bench.localhost": {endpoints: [localhost:$MISS_PORT], metadata: {tenant: bench}}
EOF
}
common_yaml() {
    cat <<EOF
cache: {ttl_ms: 600000, negative_ttl_ms: 5000, max_entries: 1000000}
ssrf: {mode: allowlist, allow: [127.0.0.0/8, "::1/128"]}
metadata_variables: {tenant: tenant}
EOF
}
{
    echo "resolver: {type: static, timeout_ms: 800}"
    common_yaml
    echo "breaker: {enabled: false}"
    routes_yaml
} >"$WORK/static.yaml"
{
    echo "resolver: {type: static, timeout_ms: 800}"
    common_yaml
    echo "health: {type: tcp, interval_ms: 2000, timeout_ms: 1000, rise: 2, fall: 3}"
    echo "breaker: {failures: 5, cooldown_ms: 5000}"
    routes_yaml
} >"$WORK/health.yaml"
cat >"$WORK/routes.json" <<EOF
{"routes": {"http": {
  "*.lit.bench.localhost": {"endpoints": ["127.0.0.1:$BE_PORT"], "metadata": {"tenant": "bench"}},
  "*.miss.lit.bench.localhost": {"endpoints": ["127.0.0.1:$MISS_PORT"],
                                 "metadata": {"tenant": "bench"}}
}}}
EOF

# --- the reference control plane (remote resolver), 1 ms before every answer
: >"$WORK/cp.out"
"$PYTHON" "$CONTROL_PLANE" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --routes "$WORK/routes.json" \
    --delay-ms "$CP_DELAY_MS" >"$WORK/cp.out" 2>"$WORK/cp.err" &
CP_PID=$!
PIDS+=("$CP_PID")
for ((i = 0; i < 200; i++)); do
    grep -q '^ready' "$WORK/cp.out" && break
    kill -0 "$CP_PID" 2>/dev/null || break
    sleep 0.05
done
CP_LISTEN=$(sed -n 's/^ready listen=\([^ ]*\) .*/\1/p' "$WORK/cp.out")
CP_ADMIN=$(sed -n 's/^ready .* admin=127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/cp.out")
if [[ -z $CP_LISTEN || -z $CP_ADMIN ]]; then
    cat "$WORK/cp.err" >&2
    echo "run_routing_bench: the control plane did not start" >&2
    exit 1
fi
{
    echo "resolver:"
    echo "  type: remote"
    echo "  timeout_ms: 800"
    echo "  remote: {address: $CP_LISTEN, timeout_ms: 250}"
    common_yaml
    echo "breaker: {enabled: false}"
} >"$WORK/remote.yaml"

cp_stat() {  # cp_stat agents|resolve: from the control plane's admin channel (`stats`)
    "$PYTHON" - "$CP_ADMIN" "$1" <<'EOF'
import json, socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
    s.sendall(b"stats\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
st = json.loads(data)
print(st["agents"] if sys.argv[2] == "agents" else st["calls"].get(sys.argv[2], 0))
EOF
}

AGENT_PID=""
start_agent() {  # start_agent CONFIG THREADS -> AGENT_PID, APORT, ADMIN_PORT
    local cfg=$1 threads=$2
    APORT=$(new_port)
    ADMIN_PORT=$(new_port)
    "$AGENT" --example echo --config "$cfg" --listen "127.0.0.1:$APORT" \
        --admin "127.0.0.1:$ADMIN_PORT" --threads "$threads" --log-level warn \
        2>>"$WORK/agent.err" &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    if ! wait_listening "$APORT" "$AGENT_PID" || ! wait_listening "$ADMIN_PORT" "$AGENT_PID"; then
        cat "$WORK/agent.err" >&2
        echo "run_routing_bench: spoa-agent did not start with $cfg" >&2
        exit 1
    fi
}
stop_agent() {
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
}

# run_row LABEL MODE [loadgen args...]: one run against the current agent; prints a table row
# and remembers rate/p50/p99 in ROW_RATE, ROW_P50, ROW_P99, ROW_RESOLVE_US.
ECHO_RATE=0
run_row() {
    local label=$1 mode=$2 rc=0 t0 t1 line cpu_s
    shift 2
    scrape "$ADMIN_PORT" "$WORK/m0"
    t0=$(cpu_ticks "$AGENT_PID")
    line=$("$LOADGEN" --target "127.0.0.1:$APORT" --connections "$CONNS" --inflight "$INFLIGHT" \
        --threads "$LG_THREADS" --warmup "$WARMUP" --duration "$DURATION" "$@" \
        2>"$WORK/lg.err") || rc=$?
    t1=$(cpu_ticks "$AGENT_PID")
    scrape "$ADMIN_PORT" "$WORK/m1"
    echo "$label: $line" >>"$WORK/lines"
    if [[ $rc != 0 || -z $line ]]; then
        cat "$WORK/lg.err" >&2
        fail "$label: loadgen exit $rc: ${line:-no result line}"
    fi
    cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }')
    ROW_RATE=$(field "$line" ack_per_s)
    ROW_P50=$(field "$line" p50_us)
    ROW_P99=$(field "$line" p99_us)
    local p999 total per_m ratio misses lookups miss_ratio resolve_us="-" miss_col="-"
    local lookups_col="-" refusals="-"
    p999=$(field "$line" p999_us)
    total=$(field "$line" acks_total)
    per_m=$(awk -v c="$cpu_s" -v n="${total:-0}" \
        'BEGIN { if (n > 0) printf "%.3f", c / (n / 1e6); else print "-" }')
    if [[ $mode == echo ]]; then
        ECHO_RATE=${ROW_RATE:-0}
        ratio="100.0%"
    else
        ratio=$(awk -v a="${ROW_RATE:-0}" -v r="$ECHO_RATE" \
            'BEGIN { if (r > 0) printf "%.1f%%", 100 * a / r; else print "-" }')
        refusals=$(field "$line" refusals)
        misses=$(delta "$WORK/m0" "$WORK/m1" spoa_route_cache_misses_total)
        lookups=$(awk -v h="$(delta "$WORK/m0" "$WORK/m1" spoa_route_cache_hits_total)" \
            -v n="$(delta "$WORK/m0" "$WORK/m1" spoa_route_cache_negative_hits_total)" \
            -v m="$misses" -v c="$(delta "$WORK/m0" "$WORK/m1" spoa_route_cache_coalesced_total)" \
            'BEGIN { printf "%.0f", h + n + m + c }')
        miss_col=$misses
        lookups_col=$lookups
        miss_ratio=$(awk -v m="$misses" -v l="$lookups" \
            'BEGIN { if (l > 0) printf "%.3f%%", 100 * m / l; else print "-" }')
        local rs_sum rs_count
        rs_sum=$(delta "$WORK/m0" "$WORK/m1" spoa_route_resolve_seconds_sum)
        rs_count=$(delta "$WORK/m0" "$WORK/m1" spoa_route_resolve_seconds_count)
        resolve_us=$(awk -v s="$rs_sum" -v c="$rs_count" \
            'BEGIN { if (c > 0) printf "%.1f", 1e6 * s / c; else print "-" }')
        ROW_RESOLVE_US=$resolve_us
        ROW_MISS_RATIO=$miss_ratio
        if [[ $mode == miss ]]; then
            local sent got
            sent=$(field "$line" misses_sent)
            got=$(field "$line" cache_miss)
            # Each never-seen host is one miss; so is the first request of each warm host the
            # agent has not seen yet (the others wait on it: coalesced).
            if ((${sent:-0} == 0 || ${got:-0} < sent || ${got:-0} > sent + HOSTS)); then
                fail "$label: $sent misses sent but $got decisions labelled miss"
            fi
        fi
        miss_col="$miss_col/$lookups_col $miss_ratio"
    fi
    printf '%-34s | %9s %8s %8s %9s | %7s | %6s | %-26s %9s %4s\n' "$label" "${ROW_RATE:--}" \
        "${ROW_P50:--}" "${ROW_P99:--}" "${p999:--}" "$ratio" "$per_m" "$miss_col" "$resolve_us" \
        "$refusals" | tee -a "$WORK/table"
}

# paired_ratio: PAIRS alternating 1-s runs (echo, route warm) against the current agent; sets
# PAIRED to "median X% (min..max of N pairs)" of route/echo rate per pair.
paired_ratio() {
    local i e r ratios=()
    PAIRED="-"
    ((PAIRS > 0)) || return 0
    one_second_rate() {  # one_second_rate LOADGEN_ARGS...: ACKs/s of a 1-s run
        local line
        line=$("$LOADGEN" --target "127.0.0.1:$APORT" --connections "$CONNS" \
            --inflight "$INFLIGHT" --threads "$LG_THREADS" --warmup 0.2 --duration 1 "$@" \
            2>>"$WORK/lg.err") || return 1
        field "$line" ack_per_s
    }
    for ((i = 0; i < PAIRS; i++)); do
        e=$(one_second_rate --message echo --expect echo) || fail "pair $i: echo run failed"
        r=$(one_second_rate --message route-http --hosts "$HOSTS" \
            --host-suffix lit.bench.localhost) || fail "pair $i: route run failed"
        ratios+=("$(awk -v r="${r:-0}" -v e="${e:-0}" \
            'BEGIN { if (e > 0) printf "%.1f", 100 * r / e; else print 0 }')")
    done
    PAIRED=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END {
        printf "median %.1f%% (%.1f%%..%.1f%% over %d pairs)", v[int((NR + 1) / 2)], v[1], v[NR], NR }')
}

header() {
    printf '%-34s | %9s %8s %8s %9s | %7s | %6s | %-26s %9s %4s\n' "run" "rate/s" "p50_us" \
        "p99_us" "p99.9_us" "vs echo" "cpu/M" "misses/lookups ratio" "resolve" "ref"
    printf '%-34s | %9s %8s %8s %9s | %7s | %6s | %-26s %9s %4s\n' "" "" "" "" "" "" "" \
        "(agent /metrics)" "us/miss" ""
}

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
echo "spoa routing benchmark: $(nproc) cores; $CONNS connections x $INFLIGHT in flight," \
    "${WARMUP}s warm-up + ${DURATION}s measured per run; load generator with $LG_THREADS" \
    "thread(s) on the same cores"
echo "echo: NOTIFY 'echo' with 5 args (5 set-var in the ACK); route: NOTIFY 'route-http'" \
    "host/path/src (ACK: ip, port, resource, cache, kind, tenant, decision_us)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="$LOAD_BEFORE" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average $LOAD_BEFORE before the run: other processes compete for the" \
        "cores, throughput and tail latency are not representative"
fi

SUMMARY=()
for threads in $THREAD_COUNTS; do
    echo
    echo "== spoa-agent --threads $threads"
    header

    # static routes, health and breaker off
    start_agent "$WORK/static.yaml" "$threads"
    run_row "static: echo (baseline)" echo --message echo --expect echo
    S_ECHO=$ROW_RATE
    S_ECHO_P99=$ROW_P99
    run_row "static: route warm ($HOSTS hosts)" warm --message route-http --hosts "$HOSTS" \
        --host-suffix lit.bench.localhost
    S_WARM=$ROW_RATE
    S_WARM_P50=$ROW_P50
    S_WARM_P99=$ROW_P99
    run_row "static: route $MISS_RATE miss, IP literal" miss --message route-http \
        --hosts "$HOSTS" --miss-rate "$MISS_RATE" --host-suffix lit.bench.localhost
    S_LIT_US=$ROW_RESOLVE_US
    S_LIT_RATE=$ROW_RATE
    run_row "static: route $MISS_RATE miss, localhost" miss --message route-http \
        --hosts "$HOSTS" --miss-rate "$MISS_RATE" --host-suffix dns.bench.localhost
    S_DNS_US=$ROW_RESOLVE_US
    S_DNS_RATE=$ROW_RATE
    paired_ratio
    stop_agent

    # health checks and circuit breaker on
    start_agent "$WORK/health.yaml" "$threads"
    run_row "health+breaker: echo (baseline)" echo --message echo --expect echo
    H_ECHO=$ROW_RATE
    run_row "health+breaker: route warm" warm --message route-http --hosts "$HOSTS" \
        --host-suffix lit.bench.localhost
    H_WARM=$ROW_RATE
    H_WARM_P50=$ROW_P50
    H_WARM_P99=$ROW_P99
    stop_agent

    # remote resolver: the reference control plane, 1 ms delay
    start_agent "$WORK/remote.yaml" "$threads"
    for ((i = 0; i < 100; i++)); do
        [[ $(cp_stat agents) == 0 ]] || break
        sleep 0.05
    done
    run_row "remote: echo (baseline)" echo --message echo --expect echo
    R_ECHO=$ROW_RATE
    cp_before=$(cp_stat resolve)
    run_row "remote (cp ${CP_DELAY_MS}ms): route $MISS_RATE miss" miss --message route-http \
        --hosts "$HOSTS" --miss-rate "$MISS_RATE" --host-suffix lit.bench.localhost
    R_MISS=$ROW_RATE
    R_MISS_RATIO=$ROW_MISS_RATIO
    R_RESOLVE_US=$ROW_RESOLVE_US
    cp_after=$(cp_stat resolve)
    stop_agent
    cp_calls=$((cp_after - cp_before))

    SUMMARY+=("--threads $threads:")
    SUMMARY+=("$(awk -v w="$S_WARM" -v e="$S_ECHO" -v wp="$S_WARM_P99" -v ep="$S_ECHO_P99" \
        -v pr="$PAIRED" \
        'BEGIN { printf "  (b) warm routing %s/s vs echo %s/s: %.1f%% of echo (target >= 85%%); p99 %s us vs %s us; alternating 1-s pairs: %s", w, e, 100 * w / e, wp, ep, pr }')")
    SUMMARY+=("$(awk -v r="$R_MISS" -v e="$R_ECHO" -v m="$R_MISS_RATIO" -v u="$R_RESOLVE_US" \
        -v c="$cp_calls" \
        'BEGIN { printf "  (c) remote, %s cache misses: %s decisions/s = %.1f%% of that agent'"'"'s echo; resolve+check %s us per miss; control plane resolve calls during the run: %s", m, r, 100 * r / e, u, c }')")
    SUMMARY+=("$(awk -v l="$S_LIT_US" -v d="$S_DNS_US" -v lr="$S_LIT_RATE" -v dr="$S_DNS_RATE" \
        'BEGIN { printf "  (d) per miss (static resolver): IP literal %s us, localhost %s us: a name adds %.1f us per miss; rates %s/s vs %s/s", l, d, d - l, lr, dr }')")
    SUMMARY+=("$(awk -v s50="$S_WARM_P50" -v s99="$S_WARM_P99" -v h50="$H_WARM_P50" \
        -v h99="$H_WARM_P99" -v sw="$S_WARM" -v hw="$H_WARM" -v se="$S_ECHO" -v he="$H_ECHO" \
        'BEGIN { printf "  (e) warm path, health+breaker on vs off: p50 %+.1f us, p99 %+.1f us, rate %s/s vs %s/s (%.1f%% vs %.1f%% of own echo; echo-to-echo difference between the two processes %+.1f%%: the noise)", h50 - s50, h99 - s99, hw, sw, 100 * hw / he, 100 * sw / se, 100 * (he - se) / se }')")
done

echo
echo "summary"
for line in "${SUMMARY[@]}"; do echo "$line"; done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu/M: agent CPU seconds per million frames answered; ref: refusals (ACKs with txn.status)"

if [[ -s $WORK/agent.err ]]; then
    echo "agent stderr (first lines):" >&2
    grep -v 'circuit of\|cold start' "$WORK/agent.err" | head -20 >&2 || true
fi
if [[ $FAILED != 0 ]]; then
    echo "run_routing_bench: FAILED (validation errors, refusals, unanswered frames or failed" \
        "connections)"
    exit 1
fi
echo "run_routing_bench: all runs completed with zero validation errors"
