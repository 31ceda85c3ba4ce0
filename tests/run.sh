#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (Debian bookworm, as root),
# then builds and tests three times: a normal build (every test but the stress label), an
# ASan+UBSan build (every test) and a ThreadSanitizer build (the multi-threaded tests: agent,
# handlers, remote resolver, stress).
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
tsan_targets=(agent_tests agent_slow_tests handlers_tests remote_tests spoa-agent spoa_loadgen)
tsan_tests='^(agent|agent-slow|handlers|remote|stress):'

# --- dependencies -------------------------------------------------------------------------
packages=(
    build-essential cmake ninja-build pkg-config git
    libuv1-dev libmsgpack-cxx-dev libboost-dev libspdlog-dev libfmt-dev catch2 libcli11-dev
    libmicrohttpd-dev libyaml-cpp-dev libcurl4-openssl-dev
    clang libclang-rt-14-dev clang-format
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
for kind in "${builds[@]}"; do
    dir="$root/build/run-$kind"
    # Line tables only (-g1): enough for sanitizer and gdb backtraces, and it keeps the
    # builds of this 2-core CI within its time budget. The sanitized builds are -O1 with asserts.
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOA_BUILD_TESTS=ON -DSPOA_BUILD_BENCH=ON -DSPOA_WERROR=ON)
    targets=()
    select=()
    case "$kind" in
        asan) flags+=(-DSPOA_SANITIZE=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1") ;;
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
    echo "== $kind tests"
    log="$dir/ctest.log"
    set +e
    # Any sanitizer report fails the test that caused it.
    (cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        ctest --output-on-failure -j "$jobs" --timeout 600 "${select[@]}" "$@") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E "tests passed, [0-9]+ tests failed out of" "$log" | tail -1 || true)
    summary+=("$kind: ${line:-no ctest summary (rc=$rc)} (build $((t1 - t0)) s, tests $((SECONDS - t1)) s)")
    [ "$rc" -eq 0 ] || status=1
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
