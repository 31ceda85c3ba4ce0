#!/usr/bin/env bash
# The load that crashed the agent (a route cache waiter used after the service loop had freed
# it): spoa-agent with a static route and the default 1-s cache TTL, spoa_loadgen sending
# route-http for that route on 16 connections x 32 frames in flight, for MINUTES. Every TTL
# expiry makes misses that race with their own completion. Prints the agent's RSS and the
# loadgen's result; fails if the agent dies, reports a sanitizer error, or a frame goes
# unanswered or wrong.
#
#   tests/bench/run_ttl_churn.sh BUILD_DIR [MINUTES=10] [THREADS=2]
# Works with any build (normal, -DSPOA_SANITIZE=ON, -DSPOA_TSAN=ON) of spoa-agent and
# spoa_loadgen.
set -uo pipefail
BENCH_NAME=run_ttl_churn
build=${1:?usage: run_ttl_churn.sh BUILD_DIR [MINUTES] [THREADS]}
minutes=${2:-10}
threads=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/bench_lib.sh"

agent=$build/handlers/app/spoa-agent

loadgen=$build/tests/bench/spoa_loadgen
port=$("$loadgen" --free-port)
admin=$("$loadgen" --free-port)
cat >"$WORK/routes.yaml" <<YAML
ssrf: {mode: allowlist, allow: [127.0.0.0/8]}
routes:
  http:
    "*.app.test": {endpoints: [127.0.0.1:9001]}
YAML
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
"$agent" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --threads "$threads" \
    --config "$WORK/routes.yaml" --log-level warn 2>"$WORK/agent.log" &
agent_pid=$!
PIDS+=("$agent_pid")
wait_listening "$port" "$agent_pid" || { cat "$WORK/agent.log"; fail "agent did not start"; exit 1; }

echo "$BENCH_NAME: agent pid $agent_pid, $threads loop threads, $minutes min"
failed_runs=0
for ((m = 1; m <= minutes; m++)); do
    out=$("$loadgen" --target "127.0.0.1:$port" --connections 16 --inflight 32 --threads 1 \
        --warmup 0 --duration 60 --message route-http --hosts 4 --host-suffix app.test \
        --expect route --quiet 2>&1)
    rc=$?
    alive=yes
    kill -0 "$agent_pid" 2>/dev/null || alive=no
    printf '%s: minute %d rss_kib=%s alive=%s ack_per_s=%s errors=%s unanswered=%s cache_miss=%s cache_coalesced=%s\n' \
        "$BENCH_NAME" "$m" "$( [ $alive = yes ] && rss_kib "$agent_pid" || echo -)" "$alive" \
        "$(field " $out" ack_per_s)" "$(field " $out" errors)" "$(field " $out" unanswered)" \
        "$(field " $out" cache_miss)" "$(field " $out" cache_coalesced)"
    if [ "$rc" -ne 0 ] || [ "$alive" = no ]; then
        failed_runs=$((failed_runs + 1))
        echo "$out"
        break
    fi
done
if grep -qE "AddressSanitizer|ThreadSanitizer|runtime error:|malloc\(\)|double free" "$WORK/agent.log"; then
    fail "sanitizer or allocator report:"
    head -60 "$WORK/agent.log" >&2
fi
[ "$failed_runs" -eq 0 ] || fail "the agent died or answered wrongly (log: $(tail -5 "$WORK/agent.log"))"
if kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid"
    wait "$agent_pid"
    rc=$?
    [ "$rc" -eq 0 ] || fail "agent exited with $rc after SIGTERM"
fi
[ "$FAILED" -eq 0 ] && echo "$BENCH_NAME: OK"
exit "$FAILED"
