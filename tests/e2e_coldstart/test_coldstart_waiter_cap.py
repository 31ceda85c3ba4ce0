#!/usr/bin/python3
"""Waiter bound: with max_waiters_per_resource 5, the 6th concurrent request for a starting
backend is answered 503 at once (with the reason), while the 5 others keep waiting and then
get 200 with x-route-kind: cold.

The backend listens START_MS after the wake. The test waits until the agent reports 5 held
requests (spoa_cold_start_waiters), sends the 6th and measures it; then checks the 5 were still
pending when the 6th was answered, and that one wake served them all."""

import concurrent.futures
import time

import coldstart_env as c
from coldstart_env import check, check_eq, log

CAP = 5
START_MS = 3000
FAST_MS = 200  # "at once": well under the wait of the held ones


def test(env):
    st = c.Stack(env)
    port = env.port()
    platform = c.Platform(st, {"cap.test": {"port": port, "delay_ms": START_MS}})
    st.start_agent(c.routing_yaml(
        {"cap.test": {"endpoints": [f"127.0.0.1:{port}"], "state": "asleep"}},
        platform=platform,
        cold_start={"timeout_ms": 4500, "max_waiters_per_resource": CAP, "max_waiters": 1000}))
    st.start_haproxy()

    with concurrent.futures.ThreadPoolExecutor(CAP) as pool:
        held = [pool.submit(st.get, "cap.test") for _ in range(CAP)]
        c.wait_for(lambda: st.metric("spoa_cold_start_waiters") >= CAP, 5,
                   f"{CAP} held requests (spoa_cold_start_waiters)")
        sixth = st.get("cap.test")
        pending_then = sum(1 for f in held if not f.done())
        log(f"6th request: {sixth}; {pending_then} of the {CAP} first still waiting")
        first = [f.result(timeout=15) for f in held]
    t_listen = platform.backend("cap.test")["listen_mono"]
    for r in first:
        log(f"held request: {r}")
    check_eq(sixth.status, 503, "status of the 6th request")
    check("too many requests waiting" in sixth.body, f"503 carries the reason: {sixth.body!r}")
    check(sixth.elapsed_ms < FAST_MS, f"the 6th was answered in {sixth.elapsed_ms:.1f} ms, "
                                      f"not at once (< {FAST_MS} ms)")
    check_eq(pending_then, CAP, "held requests still waiting when the 6th was refused")
    check_eq([(r.status, r.kind) for r in first], [(200, "cold")] * CAP,
             "status and kind of the held requests")
    check(all(r.t_end >= t_listen for r in first), "held requests answered after the listen")
    check_eq(platform.wakes("cap.test"), 1, "wake calls")
    m = st.metrics()
    log("agent: " + c.metrics_line(m, {"spoa_cold_starts_total", "spoa_cold_start_waiters",
                                       "spoa_cold_start_wakes_total"}))
    check_eq(m.get(("spoa_cold_starts_total", 'outcome="busy"'), 0), 1.0,
             'spoa_cold_starts_total{outcome="busy"}')
    check_eq(m.get(("spoa_cold_start_waiters", ""), 0), 0.0, "spoa_cold_start_waiters after")
    log(f"MEASURED: 6th request refused in {sixth.elapsed_ms:.1f} ms; held ones waited "
        f"{min(r.elapsed_ms for r in first):.0f}-{max(r.elapsed_ms for r in first):.0f} ms")
    # Once started, the resource takes requests again (no leftover waiter count).
    time.sleep(0.05)
    r = st.get("cap.test")
    check_eq((r.status, r.kind), (200, "cached"), "a request after the start")


if __name__ == "__main__":
    c.harness.main(test)
