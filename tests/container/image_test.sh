#!/usr/bin/env bash
# The shipped agent image (haproxy/container/Dockerfile) as an operator uses it: its size, user,
# stop signal and labels; --version and --check (the image's file, a good and a broken mounted
# one); the HEALTHCHECK turning healthy; docker stop draining to exit 0.
# Usage: image_test.sh WORKDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
work=$1
image=spoa-agent:test
max_mb=100

docker_ready
rm -rf "$work" && mkdir -p "$work" && chmod 755 "$work"
echo "== building $image"
build_agent_image "$image"
name=spoa-image-$$
trap 'docker rm -f "$name" "$name-default" >/dev/null 2>&1 || true' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}

# --- what the image declares --------------------------------------------------------------------
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "== image size: $((size / 1000000)) MB ($size bytes)"
((size < max_mb * 1000000)) || fail "image is $size bytes, over $max_mb MB"
[ "$(docker image inspect --format '{{.Config.User}}' "$image")" = spoa ] || fail "not user spoa"
[ "$(docker run --rm --entrypoint id "$image" -u)" != 0 ] || fail "runs as root"
[ "$(docker image inspect --format '{{.Config.StopSignal}}' "$image")" = SIGTERM ] ||
    fail "stop signal is not SIGTERM"
docker image inspect --format '{{index .Config.Labels "org.opencontainers.image.title"}}' \
    "$image" | grep -x spoa-agent >/dev/null || fail "no OCI title label"
docker image inspect --format '{{json .Config.Healthcheck.Test}}' "$image" | grep -- --probe >/dev/null ||
    fail "no --probe health check"

# --- the command line ---------------------------------------------------------------------------
docker run --rm "$image" --version | grep -E '^spoa-agent [0-9]+\.[0-9]+' >/dev/null || fail "--version"
docker run --rm --entrypoint spoa-cli "$image" --version | grep -E '^spoa-cli ' >/dev/null ||
    fail "spoa-cli is not in the image"
docker run --rm "$image" --check | grep '/etc/spoa/routing.yaml: OK' >/dev/null ||
    fail "--check of the image's own routing file"
printf 'routes:\n  http:\n    a.test: {endpoints: [127.0.0.1:80]}\n' >"$work/good.yaml"
printf 'cache: {ttl: 5}\n' >"$work/bad.yaml"
chmod 644 "$work"/*.yaml
docker run --rm -v "$work/good.yaml:/etc/spoa/routing.yaml:ro" "$image" --check |
    grep 'OK (1 routes)' >/dev/null || fail "--check of a mounted routing file"
set +e
out=$(docker run --rm -v "$work/bad.yaml:/etc/spoa/routing.yaml:ro" "$image" --check 2>&1)
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "--check of a broken file exited $rc, not 2: $out"
grep -q "ttl" <<<"$out" || fail "--check did not name the unknown key: $out"

# --- the default arguments start (in a network namespace of its own: 0.0.0.0 stays inside) --------
docker run -d --name "$name-default" --network none "$image" >/dev/null
for _ in $(seq 100); do
    docker exec "$name-default" spoa-agent --probe 127.0.0.1:9100 >/dev/null 2>&1 && break
    sleep 0.1
done
docker exec "$name-default" spoa-agent --probe 127.0.0.1:9100 >/dev/null ||
    { docker logs "$name-default"; fail "the image's default arguments do not start an agent"; }
docker rm -f "$name-default" >/dev/null

# --- running: health, then a drain on docker stop ------------------------------------------------
# Host networking: the default arguments (0.0.0.0:12345, admin 0.0.0.0:9100) would take those
# ports on the host, so the test passes its own loopback ones and the health check's address.
spop=$(free_port)
admin=$(free_port)
docker run -d --name "$name" --network host --stop-timeout 30 \
    --health-cmd "spoa-agent --probe 127.0.0.1:$admin" --health-interval 1s \
    -v "$work/good.yaml:/etc/spoa/routing.yaml:ro" "$image" \
    --listen "127.0.0.1:$spop" --admin "127.0.0.1:$admin" --drain-grace 500 >/dev/null
status=""
for _ in $(seq 300); do  # 30 s
    status=$(docker inspect --format '{{.State.Health.Status}}' "$name")
    [ "$status" = healthy ] && break
    sleep 0.1
done
[ "$status" = healthy ] || { docker logs "$name"; fail "health status '$status' after 30 s"; }
echo "== health: $status"
docker stop "$name" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "$name")
log=$(docker logs "$name" 2>&1)
[ "$code" = 0 ] || { echo "$log"; fail "exit code $code after docker stop"; }
grep -q "draining" <<<"$log" && grep -q "spoa-agent stopped" <<<"$log" ||
    { echo "$log"; fail "docker stop did not drain"; }
echo "image: OK"
