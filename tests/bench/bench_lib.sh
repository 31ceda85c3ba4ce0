# Helpers shared by the shell benchmark drivers (sourced, not run). The sourcing script sets
# BENCH_NAME (its name, for messages) first. Provides: WORK (a temp dir removed at exit), PIDS
# (processes killed and reaped at exit), fail / FAILED, listening, wait_listening, cpu_ticks,
# rss_kib, field, HZ.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

FAILED=0
fail() {
    echo "$BENCH_NAME: FAIL: $*" >&2
    FAILED=1
}

# True once something listens on 127.0.0.1:$1 (read from /proc: no probe connection).
listening() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp
}

# wait_listening PORT PID: up to 10 s, false early if PID exits.
wait_listening() {
    local port=$1 pid=$2 i
    for ((i = 0; i < 200; i++)); do
        listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# utime+stime of a process, in clock ticks (HZ per second).
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # Fields after "(comm) ": state is $1, utime is field 14 overall -> $12 here, stime $13.
    awk '{ print $12 + $13 }' <<<"$stat"
}
HZ=$(getconf CLK_TCK)

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

field() {  # field TEXT KEY: the value of the first KEY=value in TEXT
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1" | head -1
}
