# Shared by the container tests (sourced): Docker readiness, the images they run, HAProxy 3.x.
# A test that cannot run here exits 77 (ctest: skipped) after saying why.

container_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

skip() {
    echo "SKIPPED: $*"
    exit 77
}

# Docker's CLI and a daemon that answers. As root, starts dockerd the way these machines
# allow (no bridge, no iptables: the tests use host networking) when none runs.
docker_ready() {
    command -v docker >/dev/null || skip "no docker CLI (apt-get install docker.io)"
    docker info >/dev/null 2>&1 && return 0
    [ "$(id -u)" -eq 0 ] && command -v dockerd >/dev/null ||
        skip "the Docker daemon does not answer and cannot be started here"
    echo "== starting dockerd --bridge=none --iptables=false"
    (dockerd --bridge=none --iptables=false >/tmp/spoa-dockerd.log 2>&1 &)
    for _ in $(seq 300); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -20 /tmp/spoa-dockerd.log
    skip "dockerd did not come up in 30 s (log above)"
}

# The spoa-agent image from this work tree, tagged $1 (layer cache: fast when nothing changed).
build_agent_image() {
    bash "$container_root/tests/container/base_images.sh"
    docker build --network host -q -f "$container_root/haproxy/container/Dockerfile" \
        -t "$1" "$container_root" >/dev/null
}

# The first HAProxy 3.1+ binary of $SPOA_HAPROXY_BINARIES (space-separated), else $HAPROXY if
# it is 3.1+; prints its path or nothing.
haproxy3_binary() {
    local b version
    for b in ${SPOA_HAPROXY_BINARIES:-} ${HAPROXY:-}; do
        # Read whole, then matched: a pipe cut short by head or grep -q fails under pipefail.
        version=$("$b" -v 2>/dev/null || true)
        [[ ${version%%$'\n'*} =~ version\ (3\.[1-9]|[4-9]\.) ]] && { echo "$b"; return; }
    done
    return 0
}

# A free TCP port on 127.0.0.1.
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
