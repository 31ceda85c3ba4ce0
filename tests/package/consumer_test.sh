#!/usr/bin/env bash
# Installs spoa from the build tree into a scratch prefix, then configures and builds the two
# example user projects with find_package(spoa) against it, and runs them:
#   agent/examples/greeting-agent  (spoa::agent alone) must refuse an unusable listen address;
#   handlers/examples/zone-router  (its own resolver behind spoa's routing service) must route
#   every host of its zone, checked by spoa_loadgen's route-http answers.
set -euo pipefail
build_dir=$1 source_dir=$2 work=$3 cxx_flags=${4:-} loadgen=$5
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
for project in agent/examples/greeting-agent handlers/examples/zone-router; do
    name=$(basename "$project")
    cmake -S "$source_dir/$project" -B "$work/$name" -G Ninja \
        -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_FLAGS="$cxx_flags" >/dev/null
    cmake --build "$work/$name"
done
"$work/greeting-agent/greeting-agent" unix:/nonexistent-dir/sock 2>/dev/null && {
    echo "expected the greeting agent to fail on an unusable listen address"; exit 1; }

port=$("$loadgen" --free-port)
"$work/zone-router/zone-router" "127.0.0.1:$port" apps.test 127.0.0.1:8080 2>"$work/zone.log" &
router_pid=$!
trap 'kill "$router_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do  # until it listens (or 10 s)
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$router_pid" 2>/dev/null || { cat "$work/zone.log"; exit 1; }
    sleep 0.1
done
# --expect route: every ACK must be a decision for the host sent (w0.apps.test...).
if ! "$loadgen" --target "127.0.0.1:$port" --connections 2 --inflight 4 --duration 1 \
        --warmup 0 --message route-http --hosts 8 --host-suffix apps.test --expect route \
        >"$work/loadgen.log" 2>&1; then
    cat "$work/loadgen.log" "$work/zone.log"
    echo "zone-router did not route its zone"
    exit 1
fi
grep -q 'decisions=[1-9]' "$work/loadgen.log" || { cat "$work/loadgen.log"; exit 1; }
kill -TERM "$router_pid"
wait "$router_pid" || { echo "zone-router did not exit cleanly on SIGTERM"; cat "$work/zone.log"; exit 1; }
trap - EXIT
echo "consumers built against the installed package and run: OK"
