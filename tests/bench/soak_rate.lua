-- wrk script for tests/bench/run_soak.sh: spreads requests over several Host headers and, when
-- SOAK_RATE is set, paces them to that many requests per second with wrk's delay() hook.
--
--   SOAK_HOSTS="a.test b.test"   warm hosts (exact routes): 4 requests in 5
--   SOAK_WILD_SUFFIX=wild.test   wildcard suffix: 1 request in 5 goes to u<N>.<suffix>,
--   SOAK_WILD_COUNT=50           N cycling through 1..SOAK_WILD_COUNT
--   SOAK_RATE=8000               total requests/s over all wrk threads (unset or 0: as fast as
--   SOAK_THREADS=2               possible); SOAK_THREADS must be wrk's -t
--
-- Pacing: a fixed "delay = N ms" gives conns / (N + latency) requests/s, so the rate would move
-- with the latency of a shared machine. Instead each wrk thread hands out send times one
-- interval apart (a schedule): delay() returns how long until the connection's slot. As long
-- as enough connections are idle (conns > rate x latency), the rate is the schedule's, whatever
-- the latency. A slot in the past is moved to now: an overloaded run falls behind instead of
-- bursting to catch up.

local ffi = require("ffi")

local warm = {}
for h in string.gmatch(os.getenv("SOAK_HOSTS") or "app1.soak.test", "%S+") do
    warm[#warm + 1] = h
end
local wild_suffix = os.getenv("SOAK_WILD_SUFFIX") or "wild.soak.test"
local wild_count = tonumber(os.getenv("SOAK_WILD_COUNT") or "50")
local rate = tonumber(os.getenv("SOAK_RATE") or "0")
local threads = tonumber(os.getenv("SOAK_THREADS") or "1")

local requests = {}
local next_index = 1

function init(args)
    -- A fixed pattern of 500 requests, formatted once: building each request in Lua would make
    -- wrk, not the system under test, the limit of the maximum-rate run. 4 in 5 are warm (round
    -- robin), 1 in 5 wildcard, cycling through every wildcard name: a bounded set, so the route
    -- cache holds a steady working set that keeps expiring (short TTL) instead of growing.
    local w = 0
    for i = 1, 500 do
        local host
        if i % 5 == 0 then
            host = string.format("u%d.%s", math.floor(i / 5) % wild_count + 1, wild_suffix)
        else
            w = w + 1
            host = warm[(w - 1) % #warm + 1]
        end
        requests[i] = wrk.format("GET", "/", { Host = host })
    end
    -- Where this wrk thread (its own Lua state) starts in the pattern.
    next_index = math.random(1, #requests)
end

function request()
    local r = requests[next_index]
    next_index = next_index % #requests + 1
    return r
end

-- Only defined when pacing: wrk checks at start-up whether the script has a delay() at all, and
-- the maximum-rate run must not pay for a timer per request.
if rate > 0 then
    ffi.cdef [[
        typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
        int clock_gettime(int clock_id, soak_timespec *ts);
    ]]
    local ts = ffi.new("soak_timespec")
    local CLOCK_MONOTONIC = 1
    local function now_ms()
        ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
        return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
    local interval_ms = 1000 * threads / rate -- this thread's share of the rate
    local next_slot = nil

    function delay()
        local now = now_ms()
        if next_slot == nil or next_slot < now then
            next_slot = now
        end
        local wait = next_slot - now
        next_slot = next_slot + interval_ms
        -- wrk's timer takes whole milliseconds (it truncates): a connection may go up to 1 ms
        -- early, the schedule itself does not drift.
        return math.floor(wait)
    end
end
