#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (Debian bookworm, as root),
# then builds and runs every test twice, a normal build and an ASan+UBSan build.
# Exit code = result. Usage: tests/run.sh [--normal-only|--asan-only] [extra ctest args]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builds=(normal asan)
case "${1:-}" in
    --normal-only) builds=(normal); shift ;;
    --asan-only) builds=(asan); shift ;;
esac

# --- dependencies -------------------------------------------------------------------------
packages=(
    build-essential cmake ninja-build pkg-config git
    libuv1-dev libmsgpack-cxx-dev libboost-dev libspdlog-dev libfmt-dev catch2 libcli11-dev
    libmicrohttpd-dev libyaml-cpp-dev libcurl4-openssl-dev
    clang libclang-rt-14-dev
    haproxy curl python3 python3-msgpack postgresql postgresql-client swaks openssl procps iproute2
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

# --- build and test -----------------------------------------------------------------------
jobs=$(nproc 2>/dev/null || echo 2)
status=0
summary=()
for kind in "${builds[@]}"; do
    dir="$root/build/run-$kind"
    # Line tables only (-g1): enough for sanitizer and gdb backtraces, and it keeps the two
    # builds of this 2-core CI within its time budget. The sanitized build is -O1 with asserts.
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOA_BUILD_TESTS=ON -DSPOA_BUILD_BENCH=ON)
    if [ "$kind" = asan ]; then
        flags+=(-DSPOA_SANITIZE=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1")
    else
        flags+=("-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG")
    fi
    echo "== $kind build ($dir)"
    t0=$SECONDS
    cmake -S "$root" -B "$dir" -G Ninja "${flags[@]}" >/dev/null
    cmake --build "$dir" -j "$jobs"
    t1=$SECONDS
    echo "== $kind tests"
    log="$dir/ctest.log"
    set +e
    (cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j "$jobs" --timeout 600 "$@") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E "tests passed, [0-9]+ tests failed out of" "$log" | tail -1 || true)
    summary+=("$kind: ${line:-no ctest summary (rc=$rc)} (build $((t1 - t0)) s, tests $((SECONDS - t1)) s)")
    [ "$rc" -eq 0 ] || status=1
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
