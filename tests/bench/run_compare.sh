#!/usr/bin/env bash
# Two builds of spoa-agent side by side, for a change that must not make the agent slower:
# echo and warm route-http (every request a cache hit), 16 connections x 32 in flight, agent
# with 2 threads, the same load generator (NEW's) against both. The runs alternate
# BASE, NEW, BASE, NEW... ROUNDS times so that a noisy neighbour hits both alike; prints every
# run and the median of each column.
#
#   tests/bench/run_compare.sh BASE_BUILD NEW_BUILD [ROUNDS=3] [SECONDS=5]
# Each BUILD holds handlers/app/spoa-agent (or agent/app/spoa-agent, the older layout).
set -uo pipefail
BENCH_NAME=run_compare
base=${1:?usage: run_compare.sh BASE_BUILD NEW_BUILD [ROUNDS] [SECONDS]}
new=${2:?usage: run_compare.sh BASE_BUILD NEW_BUILD [ROUNDS] [SECONDS]}
rounds=${3:-3}
seconds=${4:-5}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/bench_lib.sh"

agent_of() {
    if [ -x "$1/handlers/app/spoa-agent" ]; then echo "$1/handlers/app/spoa-agent"; else
        echo "$1/agent/app/spoa-agent"; fi
}
loadgen=$new/tests/bench/spoa_loadgen
cat >"$WORK/routes.yaml" <<YAML
cache: {ttl_ms: 600000}
ssrf: {mode: allowlist, allow: [127.0.0.0/8]}
routes:
  http:
    "*.bench.localhost": {endpoints: [127.0.0.1:9001]}
YAML

# run AGENT MESSAGE: one agent process, one measured run; prints ACK/s.
run() {
    local agent=$1 message=$2 port pid out expect=echo
    [ "$message" = route-http ] && expect=route
    port=$("$loadgen" --free-port)
    "$agent" --listen "127.0.0.1:$port" --threads 2 --config "$WORK/routes.yaml" \
        --example echo --log-level warn 2>>"$WORK/agent.log" &
    pid=$!
    PIDS+=("$pid")
    wait_listening "$port" "$pid" || { cat "$WORK/agent.log"; fail "agent did not start"; return; }
    out=$("$loadgen" --target "127.0.0.1:$port" --connections 16 --inflight 32 --threads 1 \
        --warmup 1 --duration "$seconds" --message "$message" --hosts 64 --expect "$expect" \
        --quiet 2>&1) || fail "$message run failed: $out"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null
    field " $out" ack_per_s
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo "$BENCH_NAME: base $(agent_of "$base"), new $(agent_of "$new"); load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-5s %12s %12s\n' round build echo/s route_warm/s
for ((r = 1; r <= rounds; r++)); do
    for which in base new; do
        dir=$base
        [ "$which" = new ] && dir=$new
        e=$(run "$(agent_of "$dir")" echo)
        w=$(run "$(agent_of "$dir")" route-http)
        printf '%-6s %-5s %12s %12s\n' "$r" "$which" "$e" "$w"
        echo "$which $e $w" >>"$WORK/rows"
    done
done
for which in base new; do
    e=$(awk -v w="$which" '$1 == w {print $2}' "$WORK/rows" | median)
    w=$(awk -v w="$which" '$1 == w {print $3}' "$WORK/rows" | median)
    printf '%-6s %-5s %12.0f %12.0f\n' median "$which" "$e" "$w"
done
echo "$BENCH_NAME: load after $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$FAILED" -eq 0 ] && echo "$BENCH_NAME: OK"
exit "$FAILED"
