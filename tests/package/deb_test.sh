#!/usr/bin/env bash
# Builds the Debian packages (cpack -G DEB) from the plain Release configuration and checks them:
#  1. on the host, with dpkg-deb: the files of each package, the conffiles, the maintainer
#     scripts, the Depends fields;
#  2. in a clean debian:bookworm-slim: apt-get install ./spoa-agent_*.deb resolves every library
#     the binary needs, the binary runs and accepts /etc/spoa/routing.yaml, the spoa account
#     exists, and a purge removes the package's files;
#  3. with systemd as PID 1 in a container that also has Debian's haproxy, a compiler and CMake:
#     systemd-analyze verify and security; the unit started with the shipped flags under its
#     hardening, reloaded, killed (restarted), misconfigured (not restarted) and stopped (drained);
#     Debian's chrooted HAProxy, running as user haproxy, refused by the socket when haproxy is
#     only a member of the agent's group and served through the shipped drop-in; a project
#     built and run with find_package(spoa) against libspoa-dev.
# Usage: deb_test.sh SOURCE_DIR WORK_DIR
# WORK_DIR/build is kept between runs (incremental rebuilds); so is the systemd image, tagged by
# the hash of its Dockerfile. Exit 77 when Docker cannot run.
# shellcheck disable=SC2016  # single-quoted scripts are expanded by bash in the containers
set -euo pipefail
src=$(cd "$1" && pwd)
mkdir -p "$2"
work=$(cd "$2" && pwd)
start=$SECONDS

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
phase() {
    echo "== [$((SECONDS - start)) s] $*"
}

# Starts dockerd when it is not running (as root), else skips with exit 77: the package test
# installs the packages into containers.
source "$src/tests/container/lib.sh"
docker_ready
for tool in dpkg-deb dpkg-shlibdeps cpack; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install dpkg-dev cmake)"
done

build=$work/build
debs=$work/debs

phase "base images"
"$src/tests/container/base_images.sh"

phase "build (Release, tests and benchmarks off) in $build"
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPOA_BUILD_TESTS=OFF \
    -DSPOA_BUILD_BENCH=OFF >"$work/configure.log" 2>&1 || {
    tail -30 "$work/configure.log"
    fail "configure"
}
cmake --build "$build" >"$work/build.log" 2>&1 || {
    tail -50 "$work/build.log"
    fail "build"
}
build_done=$SECONDS

phase "cpack -G DEB"
rm -rf "$debs"
(cd "$build" && cpack -G DEB -B "$debs") >"$work/cpack.log" 2>&1 || {
    cat "$work/cpack.log"
    fail "cpack"
}
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
arch=$(dpkg --print-architecture)
agent_deb=spoa-agent_${version}-1_${arch}.deb
dev_deb=libspoa-dev_${version}-1_${arch}.deb
[ -n "$version" ] || fail "no CPACK_PACKAGE_VERSION in $build/CPackConfig.cmake"
produced=$(cd "$debs" && printf '%s ' *.deb)
[ "$produced" = "$dev_deb $agent_deb " ] || fail "cpack made '$produced', expected $dev_deb $agent_deb"
ls -l "$debs"/*.deb

phase "package contents and control data"
# Paths in a package, one a line, without the leading "./" (dpkg-deb -c: permissions, owner,
# size, date, time, path).
paths() { dpkg-deb -c "$1" | awk '{print substr($6, 3)}'; }
has() {  # has DEB PATH-REGEX...
    local deb=$1 list
    shift
    list=$(paths "$deb")
    for re in "$@"; do
        grep -Eqx "$re" <<<"$list" || fail "$(basename "$deb") has no file matching '$re'"
    done
}
has_not() {  # has_not DEB PATH-REGEX: no file may match
    if paths "$1" | grep -Ex "$2"; then fail "$(basename "$1") should not hold '$2'"; fi
}
examples=usr/share/doc/spoa-agent/examples
has "$debs/$agent_deb" usr/bin/spoa-agent usr/bin/spoa-cli lib/systemd/system/spoa-agent.service \
    etc/spoa/routing.yaml etc/default/spoa-agent usr/share/doc/spoa-agent/copyright \
    "$examples/haproxy/2.6/haproxy.cfg" "$examples/haproxy/2.6/spoe-routing.conf" \
    "$examples/haproxy/3.x/haproxy.cfg" "$examples/haproxy/3.x/spoe-routing.conf" \
    "$examples/haproxy/spoa-postgres.lua" "$examples/haproxy/postgres-tls.cfg" \
    "$examples/control_plane/spoa_control_plane.py" "$examples/control_plane/PROTOCOL.md" \
    "$examples/systemd/haproxy-unix-socket.conf" "$examples/routing.example.yaml"
has_not "$debs/$agent_deb" 'usr/include/.*|.*\.a'
has "$debs/$dev_deb" usr/include/spoa/protocol/session.hpp usr/include/spoa/agent/agent.hpp \
    usr/include/spoa/handlers/routing/service.hpp
libdir='usr/lib/([a-z0-9_]+-linux-gnu/)?'
for lib in protocol agent handlers; do has "$debs/$dev_deb" "${libdir}libspoa_$lib\.a"; done
for f in spoaConfig spoaConfigVersion spoaTargets; do
    has "$debs/$dev_deb" "${libdir}cmake/spoa/$f\.cmake"
done
has_not "$debs/$dev_deb" 'usr/bin/.*|etc/.*|lib/systemd/.*'

# The packaged unit and defaults are the repository's files, byte for byte.
unpacked=$work/unpacked
rm -rf "$unpacked" && mkdir -p "$unpacked"
dpkg-deb -x "$debs/$agent_deb" "$unpacked"
cmp "$unpacked/lib/systemd/system/spoa-agent.service" "$src/haproxy/systemd/spoa-agent.service"
cmp "$unpacked/etc/default/spoa-agent" "$src/haproxy/systemd/spoa-agent.default"
cmp "$unpacked/etc/spoa/routing.yaml" "$src/haproxy/routing.example.yaml"

conffiles=$(dpkg-deb -I "$debs/$agent_deb" conffiles | sort | tr '\n' ' ')
[ "$conffiles" = "/etc/default/spoa-agent /etc/spoa/routing.yaml " ] ||
    fail "spoa-agent conffiles are '$conffiles'"
control_list=$(dpkg-deb --ctrl-tarfile "$debs/$agent_deb" | tar -tvf -)
for script in postinst prerm postrm; do
    grep -Eq "^-rwxr-xr-x .* \./$script$" <<<"$control_list" ||
        fail "spoa-agent has no executable $script: $control_list"
done
agent_depends=$(dpkg-deb -f "$debs/$agent_deb" Depends)
dev_depends=$(dpkg-deb -f "$debs/$dev_deb" Depends)
echo "spoa-agent Depends: $agent_depends"
echo "libspoa-dev Depends: $dev_depends"
# adduser for postinst; libc6 and libuv1 only appear when dpkg-shlibdeps ran on the binary.
for dep in adduser libc6 libuv1 libhiredis0.14 'libstdc\+\+6'; do
    grep -Eq "(^|, )$dep( |,|$)" <<<"$agent_depends" || fail "spoa-agent does not depend on $dep"
done
for dep in libuv1-dev libmicrohttpd-dev libspdlog-dev libyaml-cpp-dev libcurl4-openssl-dev libhiredis-dev; do
    grep -Eq "(^|, )$dep( |,|$)" <<<"$dev_depends" || fail "libspoa-dev does not depend on $dep"
done
static_done=$SECONDS

phase "clean debian:bookworm-slim: apt-get install ./$agent_deb"
docker run --rm --network host -v "$debs:/debs:ro" -e "AGENT_DEB=/debs/$agent_deb" \
    -e "VERSION=$version" debian:bookworm-slim bash -euo pipefail -c '
    fail() { echo "FAIL: $*" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    dpkg-query -W -f="\${Package}\n" | sort >/tmp/before
    apt-get install -y -q "$AGENT_DEB" >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "apt-get install"; }
    dpkg-query -W -f="\${Package}\n" | sort >/tmp/after
    echo "apt installed with spoa-agent: $(comm -13 /tmp/before /tmp/after | tr "\n" " ")"
    if ldd /usr/bin/spoa-agent | grep "not found"; then fail "libraries missing"; fi
    [ "$(spoa-agent --version)" = "spoa-agent $VERSION" ] || fail "--version: $(spoa-agent --version)"
    spoa-agent --check --config /etc/spoa/routing.yaml
    IFS=: read -r _ _ uid gid _ home shell < <(getent passwd spoa) || fail "no spoa user"
    [ "$uid" -lt 1000 ] || fail "spoa is not a system account (uid $uid)"
    [ "$(getent group spoa | cut -d: -f3)" = "$gid" ] || fail "the primary group of spoa is not spoa"
    [ "$home" = /nonexistent ] && [ "$shell" = /usr/sbin/nologin ] || fail "spoa: $home $shell"
    echo "spoa account: uid $uid gid $gid home $home shell $shell"
    apt-get purge -y -q spoa-agent >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; fail "purge"; }
    for f in /usr/bin/spoa-agent /etc/spoa /etc/default/spoa-agent /lib/systemd/system/spoa-agent.service; do
        [ ! -e "$f" ] || fail "$f is still there after a purge"
    done
    echo "clean install, run, purge: OK"' || fail "clean bookworm-slim container"
clean_done=$SECONDS

phase "systemd container"
# A full system rather than a slim one: dpkg installs documentation, so the examples (the
# drop-in among them) are there.
dockerfile='FROM debian:bookworm-slim
RUN grep -l "path-exclude /usr/share/doc" /etc/dpkg/dpkg.cfg.d/* | xargs -r rm -f \
 && apt-get update \
 && apt-get install -y --no-install-recommends systemd systemd-sysv haproxy curl procps \
        g++ cmake ninja-build \
 && rm -rf /var/lib/apt/lists/*
CMD ["/lib/systemd/systemd"]'
image=spoa-deb-test-systemd:$(sha256sum <<<"$dockerfile" | cut -c1-12)
if ! docker image inspect "$image" >/dev/null 2>&1; then
    docker build --network host -t "$image" - <<<"$dockerfile" >"$work/image.log" 2>&1 || {
        tail -30 "$work/image.log"
        fail "docker build $image"
    }
fi
name=spoa-deb-test-$$
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
# systemd needs to mount (its sandboxing makes mount namespaces) and its own cgroup subtree.
docker run -d --name "$name" --network host --cap-add SYS_ADMIN \
    --security-opt seccomp=unconfined --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw -e container=docker -v "$debs:/debs:ro" \
    -v "$src/handlers/examples/zone-router:/srv/zone-router:ro" "$image" >/dev/null
in_c() { docker exec "$name" bash -euo pipefail -c "$1"; }
# Until systemd's bus is up, systemctl cannot even ask; then --wait waits for the boot to end.
deadline=$((SECONDS + 120))
until state=$(docker exec "$name" systemctl is-system-running --wait 2>&1) ||
    [ "$state" = degraded ]; do
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] ||
        fail "the systemd container exited: $(docker logs "$name" 2>&1 | tail -20)"
    [ $SECONDS -lt $deadline ] || fail "systemd in the container did not come up: '$state'"
    sleep 0.5
done
[ "$state" = running ] || in_c 'systemctl --failed --no-pager' || true
# Poll CMD in the container until it succeeds, for up to SECONDS seconds.
wait_for() {  # wait_for SECONDS WHAT CMD
    local deadline=$((SECONDS + $1))
    until in_c "$3" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$2 (waited $1 s)"
        sleep 0.2
    done
}
journal() { in_c 'journalctl -u spoa-agent --no-pager -o cat'; }

in_c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq
      dpkg-query -W -f="\${Package}\n" | sort >/tmp/before
      apt-get install -y -q /debs/'"$agent_deb"' /debs/'"$dev_deb"' >/tmp/apt.log 2>&1 ||
          { cat /tmp/apt.log; exit 1; }
      dpkg-query -W -f="\${Package}\n" | sort >/tmp/after
      echo "apt installed with both packages: $(comm -13 /tmp/before /tmp/after | tr "\n" " ")"
      test -f /usr/share/doc/spoa-agent/examples/systemd/haproxy-unix-socket.conf'

phase "systemd-analyze"
verify=$(in_c 'systemd-analyze verify spoa-agent.service 2>&1') || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify complains: $verify"
echo "systemd-analyze verify spoa-agent.service: no complaint"
exposure=$(in_c 'systemd-analyze security --no-pager spoa-agent.service' |
    sed -n 's/.*Overall exposure level for spoa-agent.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security: exposure $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' ||
    fail "exposure '$exposure' above 2.0: hardening lost?"

phase "start with the shipped flags, on a Unix socket in the RuntimeDirectory"
# The shipped flags but for the address: no TCP port, nothing to collide with on the host.
in_c 'sed -i "s|--listen 127.0.0.1:12345|--listen unix:/run/spoa-agent/agent.sock|" /etc/default/spoa-agent
      grep -q "^SPOA_AGENT_OPTS=\"--listen unix:/run/spoa-agent/agent.sock --config /etc/spoa/routing.yaml --drain-grace 4000\"$" /etc/default/spoa-agent' ||
    fail "/etc/default/spoa-agent is not the shipped one (listen 127.0.0.1:12345, config, drain grace 4000)"
in_c 'systemctl start spoa-agent'
wait_for 10 "no socket /run/spoa-agent/agent.sock" 'test -S /run/spoa-agent/agent.sock'
[ "$(in_c 'stat -c "%U:%G %a" /run/spoa-agent')" = "spoa:spoa 750" ] || fail "runtime directory"
[ "$(in_c 'stat -c "%U:%G %a" /run/spoa-agent/agent.sock')" = "spoa:spoa 700" ] ||
    fail "socket: $(in_c 'stat -c "%U:%G %a" /run/spoa-agent/agent.sock')"
pid=$(in_c 'systemctl show -p MainPID --value spoa-agent')
[ "$(in_c "ps -o user= -p $pid")" = spoa ] || fail "the agent does not run as spoa"
status=$(in_c "cat /proc/$pid/status")
grep -Eq '^CapEff:\s+0+$' <<<"$status" || fail "the agent has capabilities"
grep -Eq '^NoNewPrivs:\s+1$' <<<"$status" || fail "NoNewPrivileges not in effect"
grep -Eq '^Seccomp:\s+2$' <<<"$status" || fail "no system call filter"
journal | grep "listening on unix:/run/spoa-agent/agent.sock" >/dev/null || fail "no listening line"

phase "reload reads the new routes"
in_c 'printf "resolver: {type: static}\nroutes:\n  http:\n    a.test: {endpoints: [127.0.0.1:9001]}\n    b.test: {endpoints: [127.0.0.1:9002]}\n" >/etc/spoa/routing.yaml
      systemctl reload spoa-agent'
wait_for 10 "no reload line in the journal" \
    'journalctl -u spoa-agent -o cat | grep -q "reloaded /etc/spoa/routing.yaml (2 routes)"'
[ "$(in_c 'systemctl show -p MainPID --value spoa-agent')" = "$pid" ] || fail "reload restarted it"

phase "a killed agent is restarted"
in_c "kill -KILL $pid"
wait_for 10 "not restarted after SIGKILL" \
    "[ \"\$(systemctl show -p NRestarts --value spoa-agent)\" = 1 ] && systemctl is-active -q spoa-agent && test -S /run/spoa-agent/agent.sock"

phase "stop drains"
t0=$(date +%s%N)
in_c 'systemctl stop spoa-agent'
took_ms=$((($(date +%s%N) - t0) / 1000000))
echo "systemctl stop took ${took_ms} ms (--drain-grace 4000)"
if [ $took_ms -lt 4000 ] || [ $took_ms -ge 30000 ]; then fail "stop took ${took_ms} ms"; fi
[ "$(in_c 'systemctl show -p Result --value spoa-agent')" = success ] || fail "stop result"
[ "$(in_c 'systemctl show -p ExecMainStatus --value spoa-agent')" = 0 ] || fail "exit status"
journal | grep "draining" >/dev/null || fail "no drain in the journal"
journal | grep "spoa-agent stopped" >/dev/null || fail "no clean stop in the journal"  # not after the kill
in_c '! test -e /run/spoa-agent' || fail "/run/spoa-agent left behind"

phase "a routing file the agent refuses is not restarted"
in_c 'printf "cache: {ttl: 5}\n" >/etc/spoa/routing.yaml; systemctl start spoa-agent || true'
# systemd decides at the exit: a unit it will restart waits in "activating (auto-restart)";
# "failed" means no restart is scheduled.
wait_for 10 "not failed" '[ "$(systemctl show -p ActiveState --value spoa-agent)" = failed ]'
[ "$(in_c 'systemctl show -p ActiveState --value spoa-agent')" = failed ] || fail "restarted"
[ "$(in_c 'systemctl show -p NRestarts --value spoa-agent')" = 0 ] || fail "restarted"
[ "$(in_c 'systemctl show -p ExecMainStatus --value spoa-agent')" = 2 ] || fail "exit status"
in_c 'cp /usr/share/doc/spoa-agent/examples/routing.example.yaml /etc/spoa/routing.yaml
      systemctl reset-failed spoa-agent'

phase "the installed example configuration (PostgreSQL's Lua actions included) loads in Debian's HAProxy"
in_c 'ex=/usr/share/doc/spoa-agent/examples/haproxy
      SPOA_SPOE_CONF=$ex/2.6/spoe-routing.conf SPOA_PG_LUA=$ex/spoa-postgres.lua \
          SPOA_STATS_SOCKET=/tmp/spoa-check.sock haproxy -c -f $ex/2.6/haproxy.cfg' ||
    fail "haproxy -c refuses the installed examples/haproxy/2.6/haproxy.cfg"

phase "Debian's HAProxy (chroot /var/lib/haproxy, user haproxy) over the Unix socket"
# Debian's own haproxy.cfg, with a frontend that answers the host the echo handler sent back.
in_c 'cat >>/etc/haproxy/haproxy.cfg <<EOF

frontend fe_spoa_test
    mode http
    bind unix@/run/haproxy/spoa-test.sock
    filter spoe engine echo config /etc/haproxy/spoe-echo.conf
    http-request return status 200 content-type text/plain lf-string "echo=%[var(txn.e.host)]"

backend be_spoa
    mode tcp
    option spop-check
    timeout connect 2s
    timeout server 3m
    server agent1 unix@/spoa-agent/agent.sock check inter 1s fall 1 rise 1
EOF
cat >/etc/haproxy/spoe-echo.conf <<EOF
[echo]
spoe-agent echo-agent
    messages echo
    option var-prefix e
    timeout hello 2s
    timeout idle 2m
    timeout processing 2s
    use-backend be_spoa
spoe-message echo
    args host=req.hdr(host)
    event on-frontend-http-request
EOF
grep -q "^\s*chroot /var/lib/haproxy" /etc/haproxy/haproxy.cfg
grep -q "^\s*user haproxy" /etc/haproxy/haproxy.cfg
haproxy -c -q -f /etc/haproxy/haproxy.cfg
echo "SPOA_AGENT_OPTS=\"--listen unix:/var/lib/haproxy/spoa-agent/agent.sock --example echo\"" >/etc/default/spoa-agent
mkdir -p /etc/systemd/system/spoa-agent.service.d'
ask() {
    in_c 'curl -sS --max-time 5 --unix-socket /run/haproxy/spoa-test.sock -H "Host: probe.test" http://spoa/'
}

# What does not work: the socket open to group spoa, haproxy added to that group.
in_c 'printf "[Service]\nUMask=0007\nStateDirectory=haproxy/spoa-agent\nStateDirectoryMode=0770\n" >/etc/systemd/system/spoa-agent.service.d/group-spoa.conf
      usermod -aG spoa haproxy
      systemctl daemon-reload && systemctl restart spoa-agent && systemctl restart haproxy'
wait_for 10 "no socket" 'test -S /var/lib/haproxy/spoa-agent/agent.sock'
[ "$(in_c 'stat -c "%U:%G %a" /var/lib/haproxy/spoa-agent/agent.sock')" = "spoa:spoa 770" ] ||
    fail "socket in the group-spoa setup"
in_c 'id -nG haproxy | grep -qw spoa'
wait_for 15 "HAProxy did not report the refused connection" \
    'journalctl -u haproxy -o cat | grep "be_spoa/agent1" | grep -q "Permission denied"'
answer=$(ask)
[ "$answer" = "echo=" ] || fail "with haproxy only in group spoa, HAProxy got '$answer'"
echo "haproxy in group spoa: refused (Permission denied), answer '$answer'"
echo "haproxy worker supplementary groups: $(in_c 'ps -o supgid= -u haproxy | sort -u | tr "\n" " "')"

# What works: the shipped drop-in (group haproxy, umask 0007, directory inside the chroot).
in_c 'rm /etc/systemd/system/spoa-agent.service.d/group-spoa.conf
      gpasswd -d haproxy spoa >/dev/null
      cp /usr/share/doc/spoa-agent/examples/systemd/haproxy-unix-socket.conf /etc/systemd/system/spoa-agent.service.d/
      systemctl daemon-reload && systemctl restart spoa-agent && systemctl restart haproxy'
wait_for 10 "no socket" 'test -S /var/lib/haproxy/spoa-agent/agent.sock'
[ "$(in_c 'stat -c "%U:%G %a" /var/lib/haproxy/spoa-agent')" = "spoa:haproxy 750" ] ||
    fail "socket directory: $(in_c 'stat -c "%U:%G %a" /var/lib/haproxy/spoa-agent')"
[ "$(in_c 'stat -c "%U:%G %a" /var/lib/haproxy/spoa-agent/agent.sock')" = "spoa:haproxy 770" ] ||
    fail "socket: $(in_c 'stat -c "%U:%G %a" /var/lib/haproxy/spoa-agent/agent.sock')"
in_c '! id -nG haproxy | grep -qw spoa'
deadline=$((SECONDS + 15))
until answer=$(ask) && [ "$answer" = "echo=probe.test" ]; do
    [ $SECONDS -lt $deadline ] || fail "HAProxy did not reach the agent through the drop-in's socket: '$answer'"
    sleep 0.5
done
echo "shipped drop-in: HAProxy answered '$answer' through unix@/spoa-agent/agent.sock"
in_c 'systemctl stop haproxy spoa-agent'
systemd_done=$SECONDS

phase "find_package(spoa) against libspoa-dev: build and run handlers/examples/zone-router"
in_c 'cmake -S /srv/zone-router -B /srv/zr -G Ninja -DCMAKE_BUILD_TYPE=Release >/srv/zr.log 2>&1 &&
      cmake --build /srv/zr >>/srv/zr.log 2>&1 || { cat /srv/zr.log; exit 1; }
      grep -q "spoa_DIR:PATH=/usr/lib/.*cmake/spoa" /srv/zr/CMakeCache.txt
      /srv/zr/zone-router unix:/tmp/zr.sock apps.test 127.0.0.1:8080 2>/tmp/zr.err &
      zr=$!
      for _ in $(seq 100); do test -S /tmp/zr.sock && break; sleep 0.1; done
      test -S /tmp/zr.sock || { cat /tmp/zr.err; exit 1; }
      kill -TERM $zr && wait $zr' || fail "find_package(spoa) consumer"
consumer_done=$SECONDS

echo "deb_test: OK in $((SECONDS - start)) s (build $((build_done - start)) s," \
    "packages and static checks $((static_done - build_done)) s, clean install" \
    "$((clean_done - static_done)) s, systemd and HAProxy $((systemd_done - clean_done)) s," \
    "find_package $((consumer_done - systemd_done)) s)"
