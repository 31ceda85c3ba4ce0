#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (Debian bookworm, as root),
# then builds and tests three times: a normal build (every test but the stress label), an
# ASan+UBSan build (every test but the container label) and a ThreadSanitizer build (the
# multi-threaded tests: agent, handlers, remote resolver, stress).
# HAProxy: SPOA_HAPROXY_BINARIES lists the binaries to test against (space-separated; default:
# the `haproxy` on PATH). Every build tests with the first; the normal build then runs the e2e
# label again with each further one (tests/support/build_haproxy.sh builds one from source).
# Exit code = result. Usage: tests/run.sh [--normal-only|--asan-only|--tsan-only] [ctest args]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builds=(normal asan tsan)
case "${1:-}" in
    --normal-only) builds=(normal); shift ;;
    --asan-only) builds=(asan); shift ;;
    --tsan-only) builds=(tsan); shift ;;
esac
# What the ThreadSanitizer build compiles and runs: the code with threads of its own.
tsan_targets=(agent_tests agent_slow_tests handlers_tests redis_tests remote_tests spoa-agent
              spoa_loadgen)
tsan_tests='^(agent|agent-slow|handlers|remote|stress):'

# --- dependencies -------------------------------------------------------------------------
packages=(
    build-essential cmake ninja-build pkg-config git
    libuv1-dev libmsgpack-cxx-dev libboost-dev libspdlog-dev libfmt-dev catch2 libcli11-dev
    libmicrohttpd-dev libyaml-cpp-dev libcurl4-openssl-dev libhiredis-dev redis-server
    clang libclang-rt-14-dev clang-format
    haproxy curl python3 python3-msgpack postgresql postgresql-client swaks openssl procps iproute2
    libssl-dev libpcre2-dev zlib1g-dev liblua5.4-dev
    docker.io docker-compose debootstrap systemd dpkg-dev fakeroot file
    prometheus
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- HAProxy binaries ---------------------------------------------------------------------
read -r -a haproxies <<<"${SPOA_HAPROXY_BINARIES:-$(command -v haproxy || echo /usr/sbin/haproxy)}"
((${#haproxies[@]})) || { echo "SPOA_HAPROXY_BINARIES is empty" >&2; exit 2; }
haproxy_versions=()
for i in "${!haproxies[@]}"; do
    h=$(command -v "${haproxies[i]}" || true)
    [ -x "$h" ] || { echo "SPOA_HAPROXY_BINARIES: not an executable: ${haproxies[i]}" >&2; exit 2; }
    # Absolute: the tests run in the build directory.
    [[ $h = /* ]] || h="$PWD/$h"
    haproxies[i]=$h
    v=$("$h" -v | awk 'NR == 1 && $2 == "version" { print $3 }')
    [[ $v =~ ^[0-9]+\.[0-9]+ ]] || { echo "cannot read the version of $h (haproxy -v)" >&2; exit 2; }
    haproxy_versions+=("$v")
done
# is_3x N: binary number N is HAProxy 3.1 or newer, which the e2e tests run with haproxy/3.x/.
is_3x() {
    local major minor
    IFS=. read -r major minor _ <<<"${haproxy_versions[$1]}"
    minor=${minor%%[!0-9]*}
    ((major > 3 || (major == 3 && minor >= 1)))
}

# --- formatting ---------------------------------------------------------------------------
# Every tracked C++ file as the repository's .clang-format writes it (fix: clang-format -i FILE).
# Reported as a failure, after which the builds and tests still run.
status=0
summary=()
unformatted=()
while IFS= read -r f; do
    clang-format --dry-run --Werror "$root/$f" >/dev/null 2>&1 || unformatted+=("$f")
done < <(git -C "$root" ls-files '*.cpp' '*.hpp' '*.h')
if ((${#unformatted[@]})); then
    echo "== not formatted with .clang-format (clang-format -i FILE):"
    printf '   %s\n' "${unformatted[@]}"
    summary+=("format: ${#unformatted[@]} file(s) not formatted")
    status=1
else
    summary+=("format: every tracked C++ file formatted")
fi

# --- build and test -----------------------------------------------------------------------
jobs=$(nproc 2>/dev/null || echo 2)
# Any sanitizer report fails the test that caused it.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
e2e_ran=0
tested_3x=0
# run_ctest N LOG [ctest args]: ctest in $dir with HAProxy binary number N (the e2e harness
# reads $HAPROXY, haproxy/demo.sh the `haproxy` on PATH), output also in LOG. Sets `result`.
run_ctest() {
    local n=$1 log=$2 rc
    shift 2
    mkdir -p "$dir/haproxy-$n"
    ln -sfn "${haproxies[$n]}" "$dir/haproxy-$n/haproxy"
    set +e
    (cd "$dir" && HAPROXY=${haproxies[$n]} PATH="$dir/haproxy-$n:$PATH" ctest "$@") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    result=$(grep -E "tests passed, [0-9]+ tests failed out of" "$log" | tail -1 || true)
    result=${result:-no ctest summary (rc=$rc)}
    [ "$rc" -eq 0 ] || status=1
}
for kind in "${builds[@]}"; do
    dir="$root/build/run-$kind"
    # Line tables only (-g1): enough for sanitizer and gdb backtraces, and it keeps the
    # builds of this 2-core CI within its time budget. The sanitized builds are -O1 with asserts.
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOA_BUILD_TESTS=ON -DSPOA_BUILD_BENCH=ON -DSPOA_WERROR=ON)
    targets=()
    select=()
    case "$kind" in
        asan)
            flags+=(-DSPOA_SANITIZE=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1")
            # The container tests run images built from the sources, not this build's binaries:
            # the normal build runs them once.
            select=(-LE container)
            ;;
        tsan)
            flags+=(-DSPOA_TSAN=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1")
            targets=(--target "${tsan_targets[@]}")
            select=(-R "$tsan_tests")
            ;;
        *)
            flags+=("-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG")
            select=(-LE stress)
            ;;
    esac
    echo "== $kind build ($dir)"
    t0=$SECONDS
    cmake -S "$root" -B "$dir" -G Ninja "${flags[@]}" >/dev/null
    cmake --build "$dir" -j "$jobs" "${targets[@]}"
    t1=$SECONDS
    echo "== $kind tests (HAProxy ${haproxy_versions[0]})"
    run_ctest 0 "$dir/ctest.log" --output-on-failure -j "$jobs" --timeout 600 "${select[@]}" "$@"
    summary+=("$kind (HAProxy ${haproxy_versions[0]}): $result (build $((t1 - t0)) s, tests $((SECONDS - t1)) s)")
    [ "$kind" = tsan ] && continue  # its selection has no e2e test
    e2e_ran=1
    if is_3x 0; then tested_3x=1; fi
    [ "$kind" = normal ] || continue
    for ((n = 1; n < ${#haproxies[@]}; n++)); do
        echo "== $kind e2e tests, HAProxy ${haproxy_versions[n]} (${haproxies[n]})"
        t1=$SECONDS
        run_ctest "$n" "$dir/ctest-haproxy-$n.log" --output-on-failure -j "$jobs" --timeout 600 -L e2e "$@"
        summary+=("$kind e2e (HAProxy ${haproxy_versions[n]}): $result (tests $((SECONDS - t1)) s)")
        if is_3x "$n"; then tested_3x=1; fi
    done
done

if ((e2e_ran && !tested_3x)); then
    summary+=("HAProxy 3.2: NOT tested (no HAProxy 3.1+ in SPOA_HAPROXY_BINARIES). Build one with"
        "   tests/support/build_haproxy.sh haproxy-3.2.0.tar.xz build/haproxy-3.2.0 and run"
        "   SPOA_HAPROXY_BINARIES=\"${haproxies[*]} $root/build/haproxy-3.2.0/haproxy\" tests/run.sh")
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
