#!/usr/bin/env bash
# One million distinct hosts through one wildcard route: every one is a cache miss, a resolve
# and a new activity record. The agent's state must stay within its configured bounds (cache
# and activity table at 10,000 entries each) and its RSS under RSS_BOUND_KIB.
#
#   tests/bounds/wildcard_hosts_test.sh BUILD_DIR [HOSTS=1000000] [RSS_BOUND_KIB=65536]
set -uo pipefail
BENCH_NAME=wildcard_hosts
build=${1:?usage: wildcard_hosts_test.sh BUILD_DIR [HOSTS] [RSS_BOUND_KIB]}
hosts=${2:-1000000}
rss_bound=${3:-65536}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../bench/bench_lib.sh"

agent=$build/handlers/app/spoa-agent
loadgen=$build/tests/bench/spoa_loadgen
port=$("$loadgen" --free-port)
admin=$("$loadgen" --free-port)
limit=10000
cat >"$WORK/routes.yaml" <<YAML
ssrf: {mode: allowlist, allow: [127.0.0.0/8]}
cache: {max_entries: $limit}
activity: {max_entries: $limit}
routes:
  http:
    "*.wild.test": {endpoints: [127.0.0.1:9001]}
YAML
"$agent" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --threads 2 \
    --config "$WORK/routes.yaml" --log-level warn 2>"$WORK/agent.log" &
agent_pid=$!
PIDS+=("$agent_pid")
wait_listening "$port" "$agent_pid" || { cat "$WORK/agent.log"; fail "agent did not start"; exit 1; }

metric() {  # metric NAME: its value on /metrics
    curl -sf "http://127.0.0.1:$admin/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

sent=0
warm_rss=
rounds=0
# Chunks of 10 s until HOSTS distinct hosts were sent (each run of the load generator names
# its misses after its own pid, so no host repeats across chunks). 30 chunks at most.
while ((sent < hosts && rounds < 30)); do
    out=$("$loadgen" --target "127.0.0.1:$port" --connections 8 --inflight 32 --warmup 0 \
        --duration 10 --message route-http --hosts 1 --miss-rate 1.0 --host-suffix wild.test \
        --expect route --quiet 2>&1) || { echo "$out"; fail "load generator failed"; break; }
    sent=$((sent + $(field " $out" misses_sent)))
    rounds=$((rounds + 1))
    kill -0 "$agent_pid" 2>/dev/null || { fail "agent died"; break; }
    rss=$(rss_kib "$agent_pid")
    [ -n "$warm_rss" ] || warm_rss=$rss
    echo "$BENCH_NAME: hosts_sent=$sent rss_kib=$rss activity=$(metric spoa_activity_resources) cache_entries=$(metric spoa_route_cache_entries)"
done
((sent >= hosts)) || fail "only $sent of $hosts hosts sent in $rounds rounds"
activity=$(metric spoa_activity_resources)
evicted=$(metric spoa_activity_evictions_total)
entries=$(metric spoa_route_cache_entries)
misses=$(metric spoa_route_cache_misses_total)
rss=$(rss_kib "$agent_pid")
echo "$BENCH_NAME: hosts=$sent resolver_misses=$misses activity_records=$activity activity_evictions=$evicted cache_entries=$entries rss_kib=$rss (after the first round: $warm_rss, bound $rss_bound)"
((misses >= sent)) || fail "fewer misses ($misses) than distinct hosts ($sent)"
((activity <= limit)) || fail "activity records $activity above the limit $limit"
((entries <= limit)) || fail "cache entries $entries above the limit $limit"
((evicted >= sent - limit)) || fail "activity evictions $evicted, expected at least $((sent - limit))"
((rss <= rss_bound)) || fail "RSS $rss KiB above the bound $rss_bound KiB"
[ "$FAILED" -eq 0 ] && echo "$BENCH_NAME: OK"
exit "$FAILED"
