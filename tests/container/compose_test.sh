#!/usr/bin/env bash
# The compose quick start for real: haproxy/container/docker-compose.yml (HAProxy 3.2 with the
# shipped 3.x configuration, spoa-agent, the reference control plane, two web backends, a
# sleeping one, PostgreSQL, Redis) with its second node (profile fleet: HAProxy and agent B),
# brought up with the test override compose.test.yml (host network, free loopback
# ports), then routed as the README says: HTTP by Host, PostgreSQL by database, a route only
# the control plane knows, refusals, a cold start with exactly one wake for requests through
# both nodes, an invalidation on A applied by B, and activity counts in Redis.
# Usage: tests/container/compose_test.sh WORKDIR
# Needs Docker, docker-compose (1.29), an HAProxy 3.1+ binary (lib.sh's haproxy3_binary: from
# $SPOA_HAPROXY_BINARIES or $HAPROXY), curl and psql. Exit 77 (skipped) where Docker cannot run
# or there is no HAProxy 3.1+ binary to put in the haproxy:3.2 image.
set -euo pipefail

work=${1:?usage: compose_test.sh WORKDIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
root=$container_root
mkdir -p "$work"
work=$(cd "$work" && pwd)

say() { printf '== %s\n' "$*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

docker_ready
command -v docker-compose >/dev/null || skip "no docker-compose (apt-get install docker-compose)"
haproxy=$(haproxy3_binary)
[ -n "$haproxy" ] ||
    skip "no HAProxy 3.1+ binary for the haproxy:3.2 image (set SPOA_HAPROXY_BINARIES or HAPROXY)"
for tool in curl psql; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install curl postgresql-client)"
done

t0=$SECONDS
bash "$root/tests/container/base_images.sh"
bash "$root/tests/container/haproxy_image.sh" "$haproxy" haproxy:3.2

# ---- ports and the routing files for them ------------------------------------------------
# Every listener of the stack gets its own free loopback port, picked in one go so that no two
# are the same.
read -r -a ports <<<"$(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(22)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
export SPOA_HTTP_PORT=${ports[0]} SPOA_PG_PORT=${ports[1]} \
       SPOA_TEST_AGENT_PORT=${ports[2]} SPOA_TEST_ADMIN_PORT=${ports[3]} \
       SPOA_TEST_FEEDBACK_PORT=${ports[4]} SPOA_TEST_SMTP_PORT=${ports[5]} \
       SPOA_TEST_MYSQL_PORT=${ports[6]} SPOA_TEST_TLS_PORT=${ports[7]} \
       SPOA_TEST_WEB1_PORT=${ports[8]} SPOA_TEST_WEB2_PORT=${ports[9]} \
       SPOA_TEST_SLEEPY_PORT=${ports[10]} SPOA_TEST_WAKE_PORT=${ports[11]} \
       SPOA_TEST_POSTGRES_PORT=${ports[12]} SPOA_TEST_DIR=$work \
       SPOA_HTTP_PORT_B=${ports[13]} SPOA_PG_PORT_B=${ports[14]} \
       SPOA_TEST_AGENT_B_PORT=${ports[15]} SPOA_TEST_ADMIN_B_PORT=${ports[16]} \
       SPOA_TEST_FEEDBACK_B_PORT=${ports[17]} SPOA_TEST_SMTP_B_PORT=${ports[18]} \
       SPOA_TEST_MYSQL_B_PORT=${ports[19]} SPOA_TEST_TLS_B_PORT=${ports[20]} \
       SPOA_TEST_REDIS_PORT=${ports[21]}

# The shipped routing files with each service's port moved to its test port, and loopback
# added to the SSRF allowlist (on the host network every service is at 127.0.0.1). Everything
# else is what the quick start runs. derive SHIPPED DERIVED [FEEDBACK_PORT]
derive() {
    sed -e "s/\bweb1:8080\b/web1:$SPOA_TEST_WEB1_PORT/g" \
        -e "s/\bweb2:8080\b/web2:$SPOA_TEST_WEB2_PORT/g" \
        -e "s/\bsleepy:8080\b/sleepy:$SPOA_TEST_SLEEPY_PORT/g" \
        -e "s/\bsleepy:9000\b/sleepy:$SPOA_TEST_WAKE_PORT/g" \
        -e "s/\bpostgres:5432\b/postgres:$SPOA_TEST_POSTGRES_PORT/g" \
        -e "s/\bredis:6379\b/redis:$SPOA_TEST_REDIS_PORT/g" \
        -e "s/\b0\.0\.0\.0:5140\b/127.0.0.1:${3:-$SPOA_TEST_FEEDBACK_PORT}/g" \
        -e 's|^\(  allow: \[\)|\1127.0.0.0/8, |' "$1" >"$2"
    chmod 644 "$2"
    # A port of the shipped file this list does not know would leave the test pointing at
    # nothing: refuse to run rather than fail obscurely.
    if grep -nE ':(8080|9000|5432|5140|6379)\b' "$2"; then
        fail "$1 names a port the test does not move (lines above): update derive()"
    fi
}
derive "$root/haproxy/container/routing.yaml" "$work/routing.yaml"
derive "$root/haproxy/container/routing.yaml" "$work/routing-b.yaml" "$SPOA_TEST_FEEDBACK_B_PORT"
derive "$root/haproxy/container/routes.json" "$work/routes.json"
grep -q '127.0.0.0/8' "$work/routing.yaml" || fail "no ssrf.allow list in the shipped routing.yaml"

# ---- the stack ---------------------------------------------------------------------------
project="spoa-compose-$$-$RANDOM"
# The shipped files merged with the test override, less one thing: the HAProxies' published
# ports, which host networking replaces (Docker refuses both at once, and an override cannot
# remove an entry). They are checked here instead: loopback, the ports the variables name.
docker-compose -p "$project" -f "$root/haproxy/container/docker-compose.yml" \
    -f "$root/tests/container/compose.test.yml" --profile fleet config >"$work/compose.merged.yml"
published=$(/usr/bin/python3 - "$work/compose.merged.yml" "$work/compose.yml" <<'PY'
import sys, yaml
with open(sys.argv[1]) as f:
    doc = yaml.safe_load(f)
for node in ("haproxy", "haproxy-b"):
    print(node, " ".join(sorted(doc["services"][node].pop("ports"))))
with open(sys.argv[2], "w") as f:
    yaml.safe_dump(doc, f, sort_keys=False)
PY
)
sorted_words() { printf '%s\n' "$@" | LC_ALL=C sort | paste -sd' '; }
want="haproxy $(sorted_words "127.0.0.1:$SPOA_HTTP_PORT:8080/tcp" "127.0.0.1:$SPOA_PG_PORT:6432/tcp")
haproxy-b $(sorted_words "127.0.0.1:$SPOA_HTTP_PORT_B:8080/tcp" "127.0.0.1:$SPOA_PG_PORT_B:6432/tcp")"
[ "$published" = "$want" ] || fail "the HAProxies publish '$published', wanted '$want'"
dc() { docker-compose -p "$project" -f "$work/compose.yml" --profile fleet "$@"; }
cleanup() {
    local rc=$?
    trap - EXIT
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        echo "---- container logs (last 40 lines each) ----" >&2
        dc logs --no-color --tail=40 >&2 2>&1 || true
    fi
    local t=$SECONDS
    dc down -v --remove-orphans >"$work/down.log" 2>&1 || { cat "$work/down.log" >&2; rc=1; }
    say "compose down -v: $((SECONDS - t)) s; whole test: $((SECONDS - t0)) s"
    exit "$rc"
}
trap cleanup EXIT

t=$SECONDS
say "building the stack's images (docker-compose build)"
dc build >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; fail "docker-compose build"; }
build_s=$((SECONDS - t))
# The README's check of a routing file, with the image just built.
docker run --rm --network none -v "$root/haproxy/container/routing.yaml:/etc/spoa/routing.yaml:ro" \
    spoa-agent --check >/dev/null || fail "spoa-agent --check refuses haproxy/container/routing.yaml"

t=$SECONDS
say "docker-compose -p $project up -d (HTTP on 127.0.0.1:$SPOA_HTTP_PORT, PostgreSQL on :$SPOA_PG_PORT)"
dc up -d --no-build >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "docker-compose up"; }

http() { # http HOST [PATH [CURL OPTION...]]: the body; the status goes to $work/status
    local host=$1 path=${2:-/}
    shift $(($# < 2 ? $# : 2))
    curl -s -m 10 -o "$work/body" -w '%{http_code}' -H "Host: $host" "$@" \
        "http://127.0.0.1:$SPOA_HTTP_PORT$path" >"$work/status" || echo 000 >"$work/status"
    cat "$work/body" 2>/dev/null || true
}
status() { cat "$work/status"; }
# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s, fails after SECONDS.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || fail "not within $limit s: $what"
        sleep 0.2
    done
}
metric() { # metric NAME_WITH_LABELS: its value on the agent's /metrics, or nothing
    curl -s -m 5 "http://127.0.0.1:$SPOA_TEST_ADMIN_PORT/metrics" |
        awk -v m="$1" '$1 == m { print $2 }'
}
# on_b COMMAND...: COMMAND against node B (its HAProxy and its agent's admin port).
on_b() {
    local SPOA_HTTP_PORT=$SPOA_HTTP_PORT_B SPOA_TEST_ADMIN_PORT=$SPOA_TEST_ADMIN_B_PORT
    "$@"
}
routed() { [ "$(http app1.localhost)" = "hello from web1" ] && [ "$(status)" = 200 ]; }
cp_connected() { [ "$(metric 'spoa_control_plane_connected{address="unix:/run/control-plane/agent.sock"}')" = 1 ]; }
# HAProxy answers 503 "no routing decision" until its first check of the agent succeeds.
wait_until 60 "HAProxy routes app1.localhost through the agent to web1" routed
wait_until 60 "HAProxy B routes app1.localhost through agent B to web1" on_b routed
wait_until 30 "the agent is connected to the control plane" cp_connected
up_s=$((SECONDS - t))
say "stack up and routing after $up_s s (images built in $build_s s)"

t=$SECONDS
# ---- HTTP by Host, from this file's routes ------------------------------------------------
body=$(http app1.localhost)
[ "$(status)" = 200 ] && [ "$body" = "hello from web1" ] || fail "app1.localhost: $(status) '$body'"
body=$(http app2.localhost)
[ "$(status)" = 200 ] && [ "$body" = "hello from web2" ] || fail "app2.localhost: $(status) '$body'"
say "app1.localhost -> web1, app2.localhost -> web2"

# ---- refusals decided by the agent (HAProxy's own failure would be a 503) -----------------
reason=$(http nobody.localhost)
[ "$(status)" = 404 ] && [[ "$reason" == *"no http route for 'nobody.localhost'"* ]] ||
    fail "nobody.localhost: wanted 404 from the agent, got $(status) '$reason'"
body=$(http suspended.localhost)
[ "$(status)" = 403 ] && [ "$body" = "tenant suspended" ] ||
    fail "suspended.localhost: wanted 403 'tenant suspended', got $(status) '$body'"
body=$(http metadata.localhost)
[ "$(status)" = 403 ] || fail "metadata.localhost (169.254.169.254): wanted 403, got $(status) '$body'"
say "nobody.localhost 404 ($reason), suspended.localhost 403, metadata.localhost 403 (SSRF)"

# ---- routes only the control plane knows (chain resolver: the file's routes, then it) -----
calls_before=$(metric 'spoa_control_plane_calls_total{address="unix:/run/control-plane/agent.sock",method="resolve"}')
body=$(http app3.localhost)
[ "$(status)" = 200 ] && [ "$body" = "hello from web1" ] || fail "app3.localhost: $(status) '$body'"
body=$(http x.preview.localhost /v2/)
[ "$(status)" = 200 ] && [ "$body" = "hello from web2" ] ||
    fail "x.preview.localhost/v2/: $(status) '$body'"
calls_after=$(metric 'spoa_control_plane_calls_total{address="unix:/run/control-plane/agent.sock",method="resolve"}')
[ "${calls_after:-0}" -ge $((${calls_before:-0} + 2)) ] ||
    fail "the control plane was not asked (resolve calls $calls_before -> $calls_after)"
say "app3.localhost -> web1 and x.preview.localhost/v2/ -> web2 through the control plane"

# ---- PostgreSQL by database ----------------------------------------------------------------
# libpq's default sslmode (prefer): the SSLRequest is answered 'N' by the mounted Lua actions.
for db in app1 app2; do
    got=$(env -u PGSSLMODE psql -XAtq "host=127.0.0.1 port=$SPOA_PG_PORT dbname=$db user=postgres connect_timeout=10" \
        -c 'select database from whoami' 2>&1) || fail "psql $db: $got"
    [ "$got" = "$db" ] || fail "psql $db: whoami says '$got'"
done
got=$(env -u PGSSLMODE psql -XAtq "host=127.0.0.1 port=$SPOA_PG_PORT dbname=nodb user=postgres connect_timeout=10" \
    -c 'select 1' 2>&1) && fail "psql nodb: connected"
[[ "$got" == *"no postgres route for 'nodb'"*"SQLSTATE 3D000"* ]] || fail "psql nodb: '$got'"
say "psql app1 and app2 through HAProxy: whoami says app1, app2; nodb refused with 3D000"

# ---- cold start ----------------------------------------------------------------------------
platform() { curl -s -m 5 "http://127.0.0.1:$SPOA_TEST_WAKE_PORT/state"; }
state=$(platform)
[ "$state" = '{"state": "asleep", "wakes": 0, "starts": 0}' ] || fail "sleepy before: $state"
! curl -s -m 5 -o /dev/null "http://127.0.0.1:$SPOA_TEST_SLEEPY_PORT/" ||
    fail "the sleeping backend answers before anything woke it"
# Several first requests at once, through both nodes: they wait on one wake for the fleet
# (agent A's or agent B's, whichever claims it first), then the woken backend answers them all. One that a busy machine starts late may find the backend already up (kind cached or
# warm), or join the wake another request started (kind cold, held for less); the request that
# started the wake was held until the backend listened, START_DELAY_MS (500) after the wake.
n=6
for i in $(seq "$n"); do
    port=$SPOA_HTTP_PORT
    [ $((i % 2)) -eq 0 ] && port=$SPOA_HTTP_PORT_B
    curl -s -m 10 -o "$work/cold$i.body" -D "$work/cold$i.head" -w '%{http_code} %{time_total}\n' \
        -H 'Host: sleepy.localhost' "http://127.0.0.1:$port/" >"$work/cold$i.out" &
done
wait
cold=0 held=
for i in $(seq "$n"); do
    read -r code took <"$work/cold$i.out"
    kind=$(tr -d '\r' <"$work/cold$i.head" | sed -n 's/^x-route-kind: //Ip')
    body=$(cat "$work/cold$i.body")
    [ "$code" = 200 ] && [[ "$body" == "hello from sleepy.localhost"* ]] ||
        fail "cold request $i: $code '$body'"
    case $kind in
        cold)
            cold=$((cold + 1))
            if [ -z "$held" ] || awk -v t="$took" -v h="$held" 'BEGIN { exit !(t > h) }'; then
                held=$took
            fi ;;
        cached | warm) ;;
        *) fail "cold request $i: x-route-kind '$kind'" ;;
    esac
done
[ "$cold" -ge 1 ] || fail "no request of the $n was a cold start"
awk -v t="$held" 'BEGIN { exit !(t >= 0.5) }' ||
    fail "the longest cold request took $held s: none was held until the backend listened"
state=$(platform)
[ "$state" = '{"state": "running", "wakes": 1, "starts": 1}' ] || fail "sleepy after: $state"
wakes_a=$(metric spoa_cold_start_wakes_total)
wakes_b=$(on_b metric spoa_cold_start_wakes_total)
[ $((wakes_a + wakes_b)) = 1 ] || fail "the agents count $wakes_a and $wakes_b wakes, wanted 1 in all"
body=$(http sleepy.localhost / -D "$work/warm.head")
kind=$(tr -d '\r' <"$work/warm.head" | sed -n 's/^x-route-kind: //Ip')
[ "$(status)" = 200 ] && [[ "$kind" == cached || "$kind" == warm ]] ||
    fail "sleepy.localhost once awake: $(status) kind '$kind'"
[ "$(platform)" = '{"state": "running", "wakes": 1, "starts": 1}' ] || fail "woken again: $(platform)"
say "cold start: $cold of $n concurrent first requests through A and B held (one for $held s), one wake (A $wakes_a, B $wakes_b), all answered by the woken backend; then $kind"

# ---- the fleet: invalidations and activity through Redis ------------------------------------
applied() { on_b metric 'spoa_redis_invalidations_total{event="applied"}'; }
applied_before=$(applied)
status=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST \
    "http://127.0.0.1:$SPOA_TEST_ADMIN_PORT/invalidate?id=app1.localhost")
[ "$status" = 200 ] || fail "POST /invalidate on agent A: $status"
b_applied() { [ "$(applied)" = $((applied_before + 1)) ]; }
wait_until 5 "agent B applies agent A's invalidation" b_applied
say "POST /invalidate on agent A: applied by agent B"

# Every request for app2.localhost, through either node, counts once in Redis: the one of the
# routing checks above and ten through each node now.
for _ in $(seq 10); do
    [ "$(http app2.localhost)" = "hello from web2" ] || fail "app2.localhost through A: $(status)"
    [ "$(on_b http app2.localhost)" = "hello from web2" ] || fail "app2.localhost through B: $(status)"
done
activity() {
    dc exec -T redis redis-cli -p "$SPOA_TEST_REDIS_PORT" HGET spoa:activity:http:app2.localhost requests
}
counted() { [ "$(activity)" = 21 ]; }
wait_until 10 "Redis counts the 21 requests for app2.localhost" counted
say "activity in Redis: spoa:activity:http:app2.localhost requests = 21, the requests sent through both nodes"

say "all checks passed in $((SECONDS - t)) s"
