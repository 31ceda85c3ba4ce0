#!/usr/bin/python3
"""Circuit breaker: a backend killed under a route opens its circuit after `breaker.failures`
(3) consecutive failed checks; while open, requests are refused by the agent at once (503,
"circuit open" in the reason) instead of HAProxy trying a dead address; when the backend comes
back the circuit goes half_open after the cool-down and closes on a successful trial.

Active TCP checks every 100 ms; health.fall is set very high so that the breaker alone decides.
Asserts: exactly 3 failed checks before the open transition; fast 503s while open (latency
measured); transitions open, half_open, closed counted in /metrics
(spoa_breaker_transitions_total{to}), spoa_breaker_endpoints{state} following; traffic flows
again after recovery."""

import re
import statistics
import time

import coldstart_env as c
from coldstart_env import check, check_eq, log

FAILURES = 3
COOLDOWN_MS = 1500
FAST_MS = 250


def transitions(st):
    m = st.metrics()
    return {to: int(m.get(("spoa_breaker_transitions_total", f'to="{to}"'), 0))
            for to in ("open", "half_open", "closed")}, m


def test(env):
    st = c.Stack(env)
    port, backend = st.backend("brk")
    st.start_agent(c.routing_yaml(
        {"brk.test": {"endpoints": [f"127.0.0.1:{port}"]}},
        health={"type": "tcp", "interval_ms": 100, "timeout_ms": 300, "rise": 1,
                "fall": 1000000, "recent_use_ms": 60000},
        breaker={"failures": FAILURES, "cooldown_ms": COOLDOWN_MS}))
    st.start_haproxy()

    for i in range(3):
        r = st.get("brk.test")
        check_eq((r.status, r.backend), (200, "brk"), f"request {i} before the kill")
    c.wait_for(lambda: st.metric("spoa_health_checks_total", 'result="ok"') >= 2, 5,
               "active checks of the endpoint in use")
    failed_before = st.metric("spoa_health_checks_total", 'result="failed"')

    # -- kill: the checks fail, the circuit opens after FAILURES of them ------------------------
    t_kill = time.monotonic()
    backend.kill()
    c.wait_for(lambda: transitions(st)[0]["open"] >= 1, 10, "the circuit to open")
    t_open = time.monotonic()
    tr, m = transitions(st)
    line = c.wait_log(st.agent, r"circuit of 127\.0\.0\.1:\d+ closed -> open: (\d+) consecutive "
                                r"failures, last: ([^\n]*)")
    log(f"opened {1000 * (t_open - t_kill):.0f} ms after the kill: {line.group(0)!r}")
    check_eq(int(line.group(1)), FAILURES, "consecutive failures that opened the circuit")
    failed = m.get(("spoa_health_checks_total", 'result="failed"'), 0) - failed_before
    check(failed >= FAILURES, f"{failed:g} failed checks when the circuit opened")
    check_eq(m.get(("spoa_breaker_endpoints", 'state="open"'), 0), 1.0,
             'spoa_breaker_endpoints{state="open"}')

    # -- open: fast refusals ------------------------------------------------------------------
    fast = [st.get("brk.test") for _ in range(20)]
    lat = sorted(r.elapsed_ms for r in fast)
    log(f"while open: statuses {sorted({r.status for r in fast})}, body {fast[0].body!r}, "
        f"latency min {lat[0]:.1f} median {statistics.median(lat):.1f} max {lat[-1]:.1f} ms")
    check(all(r.status == 503 and "circuit open" in r.body for r in fast),
          f"503 with 'circuit open' while open: {fast[:3]}")
    check(lat[-1] < FAST_MS, f"refusals while open took up to {lat[-1]:.0f} ms")
    check_eq(transitions(st)[0]["closed"], 0, "closed transitions while the backend is dead")
    check(st.metric("spoa_endpoint_rejections_total", 'reason="open"') >= 20,
          'spoa_endpoint_rejections_total{reason="open"} counts the refusals')

    # -- the backend comes back: half_open after the cool-down, then closed --------------------
    port2, backend = st.backend("brk", port=port, log_name="brk-restarted")
    t_back = time.monotonic()
    c.wait_for(lambda: transitions(st)[0]["closed"] >= 1, 10, "the circuit to close again")
    t_closed = time.monotonic()
    tr, m = transitions(st)
    log(f"closed {1000 * (t_closed - t_back):.0f} ms after the backend came back "
        f"(cool-down {COOLDOWN_MS} ms); transitions {tr}")
    log("agent: " + c.metrics_line(m, {"spoa_breaker_transitions_total",
                                       "spoa_breaker_endpoints", "spoa_health_checks_total",
                                       "spoa_endpoint_rejections_total"}))
    # The agent counts a transition before it logs it: wait for the line, not for the counter.
    c.wait_log(st.agent, r"circuit of 127\.0\.0\.1:\d+ half_open -> closed")
    circuit_log = [l for l in st.agent.log_text().splitlines() if "circuit of" in l]
    log("agent log:\n  " + "\n  ".join(circuit_log))
    check_eq(tr, {"open": 1, "half_open": 1, "closed": 1}, "breaker transitions")
    check(re.search(r"open -> half_open", "\n".join(circuit_log)) and
          re.search(r"half_open -> closed", "\n".join(circuit_log)),
          "the log shows open -> half_open -> closed")
    check_eq(m.get(("spoa_breaker_endpoints", 'state="closed"'), 0), 1.0,
             'spoa_breaker_endpoints{state="closed"}')
    check(t_closed - t_back >= COOLDOWN_MS / 1000 - 0.3,
          f"closed {1000 * (t_closed - t_back):.0f} ms after the restart, before the cool-down")
    r = st.get("brk.test")
    check_eq((r.status, r.backend), (200, "brk"), "request after recovery")
    log(f"MEASURED: open {1000 * (t_open - t_kill):.0f} ms after the kill; fast-fail latency "
        f"median {statistics.median(lat):.1f} ms, max {lat[-1]:.1f} ms; closed "
        f"{1000 * (t_closed - t_back):.0f} ms after the backend came back")


if __name__ == "__main__":
    c.harness.main(test)
