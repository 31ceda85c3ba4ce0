#!/usr/bin/python3
"""A backend that never starts: 504 with a reason, before HAProxy's `timeout processing` (5 s).

The platform accepts the wake (202) but nothing ever listens. A held request waits at most
min(cold_start.timeout_ms, processing_timeout_ms - margin_ms):
  phase 1: timeout_ms 10000, processing_timeout 5000, margin 300 -> 504 after ~4700 ms, < 5 s,
           answered by the agent (the reason in the body), not by HAProxy's own SPOE timeout
           (which would give the config's fail-closed 503 "no routing decision").
  phase 2: timeout_ms 1500 -> 504 after ~1500 ms; the start is then remembered as failed
           (failure_ttl_ms): the next request gets 503 at once, without a second wake call."""

import coldstart_env as c
from coldstart_env import check, check_eq, log

# Sweeps run every 5 ms; a loaded machine adds scheduling delay.
EARLY_MS = 30
LATE_MS = 250


def config(platform, port, timeout_ms):
    return c.routing_yaml(
        {"never.test": {"endpoints": [f"127.0.0.1:{port}"], "state": "asleep"}},
        platform=platform,
        cold_start={"timeout_ms": timeout_ms, "margin_ms": 300, "failure_ttl_ms": 3000})


def test(env):
    st = c.Stack(env)
    port = env.port()
    platform = c.Platform(st, {"never.test": {"port": port, "mode": "never"}})

    # -- phase 1: the processing timeout bounds the wait ---------------------------------------
    st.start_agent(config(platform, port, 10000))
    st.start_haproxy()
    budget = min(10000, c.PROCESSING_TIMEOUT_MS - 300)
    r1 = st.get("never.test", "/phase-1", timeout=10)
    log(f"phase 1 (timeout_ms 10000): {r1}, budget {budget} ms")
    check_eq(r1.status, 504, "status")
    check("backend not ready after" in r1.body, f"504 carries the agent's reason: {r1.body!r}")
    check(budget - EARLY_MS <= r1.elapsed_ms < c.PROCESSING_TIMEOUT_MS,
          f"504 after {r1.elapsed_ms:.0f} ms: expected ~{budget} ms and before "
          f"{c.PROCESSING_TIMEOUT_MS} ms")
    check(r1.elapsed_ms <= budget + LATE_MS,
          f"504 after {r1.elapsed_ms:.0f} ms, budget {budget} ms")
    check_eq(platform.wakes("never.test"), 1, "wake calls")
    m = st.metrics()
    check_eq(m.get(("spoa_cold_start_waiter_timeouts_total", ""), 0), 1.0,
             "spoa_cold_start_waiter_timeouts_total")
    # This request's line, found by its path, not by its position in the log.
    line = st.haproxy_log_by_request({1: c.routing_env.request_line("/phase-1")})[1]
    log(f"HAProxy log: {line}")
    check(" 504 " in line and " route=never.test " in line and "spoe_err=-" in line,
          f"HAProxy logged a 504 without SPOE error: {line}")

    # -- phase 2: cold_start.timeout_ms shorter than the processing bound ----------------------
    platform.call("POST", "/reset")
    platform.kill("never.test")  # forget the "starting" state of phase 1
    st.restart_agent(config(platform, port, 1500))
    r = st.get("never.test", timeout=10)
    log(f"phase 2 (timeout_ms 1500): {r}")
    check_eq(r.status, 504, "status")
    check("not ready after" in r.body or "did not become ready" in r.body,
          f"504 carries the agent's reason: {r.body!r}")
    check(1500 - EARLY_MS <= r.elapsed_ms <= 1500 + LATE_MS,
          f"504 after {r.elapsed_ms:.0f} ms, expected ~1500 ms")
    # The failed start is remembered: the next request is refused at once, no new wake.
    c.wait_for(lambda: st.metric("spoa_cold_starts_total", 'outcome="timeout"') >= 1, 5,
               'spoa_cold_starts_total{outcome="timeout"}')
    r2 = st.get("never.test", timeout=10)
    log(f"phase 2, next request: {r2}")
    check_eq(r2.status, 503, "status after a failed start")
    check("failed recently" in r2.body, f"reason names the recent failure: {r2.body!r}")
    check(r2.elapsed_ms < 500, f"refused at once ({r2.elapsed_ms:.0f} ms)")
    check_eq(platform.wakes("never.test"), 1, "wake calls in phase 2")
    m = st.metrics()
    log("agent: " + c.metrics_line(m, {"spoa_cold_starts_total",
                                       "spoa_cold_start_waiter_timeouts_total",
                                       "spoa_cold_start_wakes_total"}))
    log(f"MEASURED: phase 1 504 after {r1.elapsed_ms:.0f} ms (budget {budget} ms); phase 2 504 "
        f"after {r.elapsed_ms:.0f} ms; refusal after the failed start {r2.elapsed_ms:.1f} ms")


if __name__ == "__main__":
    c.harness.main(test)
