#!/usr/bin/env bash
# Two spoa-agent containers behind one HAProxy (the shipped configuration with a second server
# in every agent backend). Under steady HTTP load, each agent container is restarted in turn
# (docker restart: SIGTERM, the agent fails /healthz for its drain grace, then drains). Not one
# request may fail: HAProxy's checks move decisions to the other agent before the restarting one
# stops answering, and bring it back once it answers checks again.
# HAProxy 3.x from $SPOA_HAPROXY_BINARIES when there is one, else Debian's 2.6.
# Usage: rolling_restart_test.sh WORKDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
work=$1
python=/usr/bin/python3

docker_ready
haproxy_bin=$(haproxy3_binary)
config_dir=3.x
if [ -z "$haproxy_bin" ]; then
    haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
    config_dir=2.6
fi
[ -x "$haproxy_bin" ] || skip "no HAProxy binary"
echo "== HAProxy: $("$haproxy_bin" -v | head -1) with haproxy/$config_dir"

rm -rf "$work" && mkdir -p "$work" && chmod 755 "$work"
image=spoa-agent:test
echo "== building $image"
build_agent_image "$image"

name=spoa-rolling-$$
pids=()
cleanup() {
    docker rm -f "$name-a" "$name-b" >/dev/null 2>&1 || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# --- a backend, two agents --------------------------------------------------------------------
web_port=$(free_port)
mkdir -p "$work/web" && echo "rolling backend" >"$work/web/index.html"
$python -m http.server "$web_port" --bind 127.0.0.1 --directory "$work/web" >"$work/web.log" 2>&1 &
pids+=($!)

cat >"$work/routing.yaml" <<EOF
resolver: {type: static, timeout_ms: 800}
ssrf: {mode: allowlist, allow: [127.0.0.0/8]}
routes:
  http:
    app.localhost: {endpoints: [127.0.0.1:$web_port]}
EOF
chmod 644 "$work/routing.yaml"

# HAProxy's checks: inter 2s, then fall 2 at fastinter 500ms, so a failing agent is out within
# about 2.5 s; the drain grace covers that with a margin.
start_agent() {  # NAME SPOP_PORT ADMIN_PORT
    docker run -d --name "$1" --network host --stop-timeout 30 \
        -v "$work/routing.yaml:/etc/spoa/routing.yaml:ro" "$image" \
        --listen "127.0.0.1:$2" --admin "127.0.0.1:$3" --threads 1 \
        --deadline 4500 --drain-grace 3500 >/dev/null
}
healthy() { curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz"; }
wait_until() {  # SECONDS WHAT COMMAND...: polls every 0.1 s
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 10))); do
        "$@" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "FAIL: $what not within $limit s"
    return 1
}
declare -A spop_port admin_port
for c in a b; do
    spop_port[$c]=$(free_port)
    admin_port[$c]=$(free_port)
    start_agent "$name-$c" "${spop_port[$c]}" "${admin_port[$c]}"
done
for c in a b; do
    wait_until 30 "agent $c healthy" healthy "${admin_port[$c]}" || { docker logs "$name-$c"; exit 1; }
done

# --- HAProxy: the shipped files, a second server in every agent backend -----------------------
$python - "$container_root/haproxy/$config_dir/haproxy.cfg" "$work/haproxy.cfg" <<'PY'
import re, sys
src, dst = sys.argv[1], sys.argv[2]
out = []
for line in open(src):
    out.append(line)
    m = re.match(r'(\s+)server agent "\$\{SPOA_AGENT_ADDR\}"(.*)', line)
    if m:
        out.append(f'{m.group(1)}server agent2 "${{SPOA_AGENT2_ADDR}}"{m.group(2)}\n')
text = "".join(out)
assert text.count("SPOA_AGENT2_ADDR") >= 5, "expected a server line in every agent backend"
open(dst, "w").write(text)
PY
stats=$work/haproxy.sock
export SPOA_AGENT_ADDR=127.0.0.1:${spop_port[a]} SPOA_AGENT2_ADDR=127.0.0.1:${spop_port[b]}
export SPOA_HTTP_BIND=127.0.0.1:$(free_port) SPOA_PG_BIND=127.0.0.1:$(free_port)
export SPOA_SMTP_BIND=127.0.0.1:$(free_port) SPOA_MYSQL_BIND=127.0.0.1:$(free_port)
export SPOA_TLS_BIND=127.0.0.1:$(free_port) SPOA_FEEDBACK_LOG=127.0.0.1:$(free_port)
export SPOA_SPOE_CONF=$container_root/haproxy/$config_dir/spoe-routing.conf SPOA_STATS_SOCKET=$stats
export SPOA_PG_LUA=$container_root/haproxy/spoa-postgres.lua
"$haproxy_bin" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)

agent_server() { [ "$1" = a ] && echo agent || echo agent2; }
# HAProxy's view of one agent server in the HTTP agent backend: UP?
server_up() {
    $python "$here/http_load.py" servers "$stats" be_spoa_http | grep -x "$(agent_server "$1") UP" >/dev/null
}
for c in a b; do
    wait_until 30 "HAProxy sees agent $c UP" server_up "$c" || { tail "$work/haproxy.log"; exit 1; }
done

# --- load, then one restart at a time ---------------------------------------------------------
load=$work/load.json
$python "$here/http_load.py" load --url "http://$SPOA_HTTP_BIND/" --host app.localhost \
    --expect "rolling backend" --workers 8 --out "$load" &
load_pid=$!
pids+=($load_pid)
$python "$here/http_load.py" wait-ok "$load" 200 30
t_start=$SECONDS
for c in a b; do
    t0=$SECONDS
    echo "== restarting agent $c under load"
    docker restart -t 30 "$name-$c" >/dev/null
    restart_s=$((SECONDS - t0))
    wait_until 30 "agent $c healthy after its restart" healthy "${admin_port[$c]}"
    wait_until 30 "HAProxy sees agent $c UP again" server_up "$c"
    echo "   docker restart took ${restart_s} s; agent $c back in HAProxy after $((SECONDS - t0)) s"
    # Decisions keep coming after the restart, from both agents again.
    ok_now=$($python -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$load")
    $python "$here/http_load.py" wait-ok "$load" $((ok_now + 200)) 30
done
kill -TERM "$load_pid"
wait "$load_pid"

$python - "$load" $((SECONDS - t_start)) <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
secs = max(int(sys.argv[2]), 1)
print(f"== {r['sent']} requests over {secs} s with two rolling agent restarts: {r['ok']} ok, "
      f"failed: {r['failed'] or 'none'}")
for line in r["first_failures"]:
    print("   ", line)
sys.exit(0 if r["ok"] == r["sent"] and r["sent"] >= 400 else 1)
PY
# Each agent drained on its restart (a container's log outlives docker restart).
for c in a b; do
    log=$(docker logs "$name-$c" 2>&1)  # whole, not piped: grep -q would cut the pipe short
    grep -q "signal 15: draining" <<<"$log" || { echo "FAIL: agent $c never drained"; echo "$log"; exit 1; }
done
echo "rolling restart: OK"
