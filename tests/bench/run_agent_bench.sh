#!/usr/bin/env bash
# Agent benchmark driver: runs spoa_loadgen against spoa-agent (echo handler) and against
# spoa_null_agent (the do-nothing reference), and prints one table.
#
#   tests/bench/run_agent_bench.sh BUILD_DIR [--quick]
#
# Builds nothing: BUILD_DIR must already hold handlers/app/spoa-agent, tests/bench/spoa_loadgen and
# tests/bench/spoa_null_agent (or set SPOA_AGENT, SPOA_LOADGEN, SPOA_NULL_AGENT). Use a
# RelWithDebInfo or Release build.
#
# For each connection count: N connections x K frames in flight, WARMUP s then DURATION s,
# against both servers; reports ACK/s, latency p50/p99/p99.9 (per frame, send to ACK), the ratio
# agent/reference, the agent's CPU seconds per million frames (utime+stime from /proc/<pid>/stat
# around the run, warm-up and drain included, divided by every frame answered) and the load
# generator's own CPU use. Then the agent's memory per idle connection: RSS before and with
# IDLE connections that did the HELLO and stay open, (RSS_with - RSS_before) / IDLE.
# The load generator runs on the same cores as the server it measures.
#
# On a shared machine, other processes on the same cores dominate throughput and tail latency:
# the script prints the load average before and after; compare runs made at a low load only.
#
# --quick: a functional smoke run (1 and 4 connections, 1 s, 200 idle connections) for ctest.
# Exit status 1 if any run reports a validation error, an unanswered frame or a failed
# connection; timing never fails the script.
#
# Environment overrides: BENCH_CONNS ("1 16 256"), BENCH_INFLIGHT (32), BENCH_DURATION (5),
# BENCH_WARMUP (1), BENCH_IDLE (10000), BENCH_AGENT_THREADS (2), BENCH_LG_THREADS (1).

set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
BUILD=$1
shift
QUICK=0
if [[ ${1:-} == --quick ]]; then QUICK=1; shift; fi

AGENT=${SPOA_AGENT:-$BUILD/handlers/app/spoa-agent}
LOADGEN=${SPOA_LOADGEN:-$BUILD/tests/bench/spoa_loadgen}
NULL_AGENT=${SPOA_NULL_AGENT:-$BUILD/tests/bench/spoa_null_agent}
for exe in "$AGENT" "$LOADGEN" "$NULL_AGENT"; do
    if [[ ! -x $exe ]]; then
        echo "run_agent_bench: $exe not found (build first: ninja -C $BUILD)" >&2
        exit 2
    fi
done

if [[ $QUICK == 1 ]]; then
    CONNS=${BENCH_CONNS:-"1 4"}
    DURATION=${BENCH_DURATION:-1}
    WARMUP=${BENCH_WARMUP:-0.2}
    IDLE=${BENCH_IDLE:-200}
else
    CONNS=${BENCH_CONNS:-"1 16 256"}
    DURATION=${BENCH_DURATION:-5}
    WARMUP=${BENCH_WARMUP:-1}
    IDLE=${BENCH_IDLE:-10000}
fi
INFLIGHT=${BENCH_INFLIGHT:-32}
AGENT_THREADS=${BENCH_AGENT_THREADS:-2}
LG_THREADS=${BENCH_LG_THREADS:-1}

# 10,000 idle connections need that many descriptors in the agent and in the load generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE + 256)); then
    echo "run_agent_bench: ulimit -n is $(ulimit -n): idle test reduced" >&2
    IDLE=$(($(ulimit -n) - 256))
fi

BENCH_NAME=run_agent_bench
# shellcheck source=bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

APORT=$("$LOADGEN" --free-port)
"$AGENT" --example echo --listen "127.0.0.1:$APORT" --threads "$AGENT_THREADS" \
    --log-level warn 2>"$WORK/agent.err" &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
wait_listening "$APORT" "$AGENT_PID" || {
    cat "$WORK/agent.err" >&2
    echo "run_agent_bench: spoa-agent did not start" >&2
    exit 1
}

NPORT=$("$LOADGEN" --free-port)
while [[ $NPORT == "$APORT" ]]; do NPORT=$("$LOADGEN" --free-port); done
"$NULL_AGENT" --listen "127.0.0.1:$NPORT" --threads "$AGENT_THREADS" 2>"$WORK/null.err" &
NULL_PID=$!
PIDS+=("$NULL_PID")
wait_listening "$NPORT" "$NULL_PID" || {
    cat "$WORK/null.err" >&2
    echo "run_agent_bench: spoa_null_agent did not start" >&2
    exit 1
}

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
echo "spoa agent benchmark: $(nproc) cores, agent and reference with $AGENT_THREADS threads," \
    "load generator with $LG_THREADS thread(s) on the same cores"
echo "workload: NOTIFY 'echo' with 5 args (host, path, IPv4 src, INT64 port, 16-byte binary)," \
    "$INFLIGHT in flight per connection, ${WARMUP}s warm-up + ${DURATION}s measured"
if awk -v l="$LOAD_BEFORE" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average $LOAD_BEFORE before the run: other processes compete for the" \
        "cores, throughput and tail latency are not representative"
fi
echo

# --- idle connections first, on a fresh agent: freed memory of earlier runs would hide the cost.
IDLE_LINE=""
if ((IDLE > 0)); then
    RSS_BEFORE=$(rss_kib "$AGENT_PID")
    : >"$WORK/idle.out"
    "$LOADGEN" --target "127.0.0.1:$APORT" --idle "$IDLE" --hold 0 \
        >"$WORK/idle.out" 2>"$WORK/idle.err" &
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    for ((i = 0; i < 1200; i++)); do
        grep -q '^idle_ready' "$WORK/idle.out" && break
        kill -0 "$IDLE_PID" 2>/dev/null || break
        sleep 0.05
    done
    sleep 1  # let the agent settle (every HELLO answered, nothing pending)
    RSS_WITH=$(rss_kib "$AGENT_PID")
    kill -TERM "$IDLE_PID" 2>/dev/null || true
    IDLE_RC=0
    wait "$IDLE_PID" || IDLE_RC=$?
    IDLE_LINE=$(grep '^spoa_loadgen: idle' "$WORK/idle.out" || true)
    ESTABLISHED=$(field "$IDLE_LINE" established)
    if [[ $IDLE_RC != 0 || -z $IDLE_LINE || ${ESTABLISHED:-0} != "$IDLE" ]]; then
        cat "$WORK/idle.err" >&2
        fail "idle run: ${IDLE_LINE:-no result line} (exit $IDLE_RC)"
    fi
    # Let the agent notice the closes before the load runs.
    sleep 0.5
fi

# --- load runs
run_load() {  # run_load PORT PID CONNS EXPECT -> sets LINE, CPU_S
    local port=$1 pid=$2 conns=$3 expect=$4 t0 t1 rc=0
    t0=$(cpu_ticks "$pid")
    LINE=$("$LOADGEN" --target "127.0.0.1:$port" --connections "$conns" --inflight "$INFLIGHT" \
        --threads "$LG_THREADS" --warmup "$WARMUP" --duration "$DURATION" --expect "$expect" \
        2>"$WORK/lg.err") || rc=$?
    t1=$(cpu_ticks "$pid")
    CPU_S=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }')
    if [[ $rc != 0 || -z $LINE ]]; then
        cat "$WORK/lg.err" >&2
        fail "loadgen against port $port, $conns connections: exit $rc: ${LINE:-no result line}"
    fi
    echo "$LINE" >>"$WORK/lines"
}

per_m() {  # CPU seconds per million frames
    awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.3f", c / (n / 1e6); else print "-" }'
}

ROWS=()
for conns in $CONNS; do
    run_load "$APORT" "$AGENT_PID" "$conns" echo
    A=$LINE
    A_CPU=$CPU_S
    run_load "$NPORT" "$NULL_PID" "$conns" empty
    R=$LINE
    R_CPU=$CPU_S
    a_rate=$(field "$A" ack_per_s)
    r_rate=$(field "$R" ack_per_s)
    ratio=$(awk -v a="${a_rate:-0}" -v r="${r_rate:-0}" \
        'BEGIN { if (r > 0) printf "%.1f%%", 100 * a / r; else print "-" }')
    ROWS+=("$(printf '%5s %4s | %9s %8s %8s %8s %6s %4s%% | %9s %8s %8s %8s %6s %4s%% | %6s' \
        "$conns" "$INFLIGHT" \
        "${a_rate:--}" "$(field "$A" p50_us)" "$(field "$A" p99_us)" "$(field "$A" p999_us)" \
        "$(per_m "$A_CPU" "$(field "$A" acks_total)")" "$(field "$A" lg_cpu_pct)" \
        "${r_rate:--}" "$(field "$R" p50_us)" "$(field "$R" p99_us)" "$(field "$R" p999_us)" \
        "$(per_m "$R_CPU" "$(field "$R" acks_total)")" "$(field "$R" lg_cpu_pct)" \
        "$ratio")")
done

printf '%-10s | %-54s | %-54s | %s\n' "" "spoa-agent (echo)" "reference (spoa_null_agent)" "agent/"
printf '%5s %4s | %9s %8s %8s %8s %6s %5s | %9s %8s %8s %8s %6s %5s | %6s\n' \
    conns infl ACK/s p50_us p99_us p99.9_us cpu/M lgcpu ACK/s p50_us p99_us p99.9_us cpu/M \
    lgcpu ref
for row in "${ROWS[@]}"; do echo "$row"; done
echo "cpu/M: server CPU seconds (utime+stime) per million frames answered;" \
    "lgcpu: load generator CPU, % of one core"

if [[ -n $IDLE_LINE ]]; then
    awk -v b="$RSS_BEFORE" -v w="$RSS_WITH" -v n="$IDLE" 'BEGIN {
        printf "idle connections: %d, agent RSS %d KiB -> %d KiB: %.0f bytes per connection\n",
               n, b, w, (w - b) * 1024 / n }'
fi

echo "load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1 /proc/loadavg)"
if [[ $QUICK == 0 ]]; then
    # Informational only: timing never fails the script.
    echo
    echo "floors (informational): >= 500000 ACK/s, >= 25% of the reference and p99 < 2 ms at" \
        "16 x 32; < 4096 bytes per idle connection"
fi

if [[ -s $WORK/agent.err ]]; then
    echo "agent stderr:" >&2
    head -20 "$WORK/agent.err" >&2
fi
if [[ $FAILED != 0 ]]; then
    echo "run_agent_bench: FAILED (validation errors, unanswered frames or failed connections)"
    exit 1
fi
echo "run_agent_bench: all runs completed with zero validation errors"
