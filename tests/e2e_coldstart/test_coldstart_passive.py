#!/usr/bin/python3
"""Passive signals: HAProxy's own log lines, sent over UDP to the agent (`passive.listen`), open
the circuit of an endpoint HAProxy cannot connect to and invalidate its cached route.

The shipped haproxy.cfg sends its logs to stdout only, and fe_http's log-format has no
termination state (`ts=`), which the agent's parser needs to tell a connect failure. The test
therefore runs a variant of the shipped file with two additions to fe_http (reported as changes
the shipped file should get):
    log 127.0.0.1:<udp port> local1                 # a second log target: the agent
    log-format "... ts=%ts"                         # the termination state, e.g. SC--
A route points at a port where nothing listens: HAProxy answers 503 with ts=SC; each log line
is one breaker failure and one invalidation (the next request resolves again: a cache miss);
after `breaker.failures` (3) of them the circuit is open and the agent refuses at once (503,
"circuit open"), measured against the slow connect-failure path."""

import re
import statistics

import coldstart_env as c
from coldstart_env import TestFailure, check, check_eq, log

FAILURES = 3


def variant(stack, udp_port):
    """The shipped haproxy.cfg with fe_http logging to the agent, including %ts."""
    with open(stack.shipped_cfg()) as f:
        text = f.read()
    m = re.search(r"(?ms)^frontend fe_http\n(.*?)(?=^\S)", text)
    check(m, "fe_http in the shipped haproxy.cfg")
    section = m.group(1)
    check(not re.search(r"(?m)^\s*log\s+\d", section),
          "the shipped fe_http already has a network log target: update this test")
    fmt = re.search(r'(?m)^(\s*log-format\s+")(.*)("\s*)$', section)
    check(fmt, "fe_http has a log-format")
    new_section = section
    if "%ts" not in fmt.group(2):
        new_section = new_section.replace(fmt.group(0),
                                          fmt.group(1) + fmt.group(2) + " ts=%ts" + fmt.group(3))
    new_section = re.sub(r'(?m)^(\s*bind\s+"\$\{SPOA_HTTP_BIND\}"\n)',
                         lambda b: b.group(1) + f"    log 127.0.0.1:{udp_port} local1\n",
                         new_section, count=1)
    check(f"log 127.0.0.1:{udp_port}" in new_section, "added the log target to fe_http")
    text = text.replace(section, new_section)
    return stack.write("haproxy-passive.cfg", text)


def test(env):
    st = c.Stack(env)
    udp = env.port()
    dead = env.port()  # held under the port lock, never bound: connections are refused
    ok_port, _ = st.backend("ok")
    st.start_agent(c.routing_yaml(
        {"dead.test": {"endpoints": [f"127.0.0.1:{dead}"]},
         "ok.test": {"endpoints": [f"127.0.0.1:{ok_port}"]}},
        breaker={"failures": FAILURES, "cooldown_ms": 30000},
        passive={"listen": f"127.0.0.1:{udp}"}))
    if not c.udp_port_bound(udp) or "feedback log: listening" not in st.agent.log_text():
        raise TestFailure(f"spoa-agent does not listen on passive.listen udp://127.0.0.1:{udp} "
                          f"(routing::service starts the feedback_log): HAProxy's log lines "
                          f"would never be read")
    st.start_haproxy(variant(st, udp))

    r = st.get("ok.test")
    check_eq((r.status, r.backend), (200, "ok"), "a working route")

    slow = []
    for i in range(FAILURES):
        before = st.metrics()
        r = st.get("dead.test", f"/connect-failure-{i + 1}", timeout=30)
        slow.append(r)
        check_eq(r.status, 503, f"connect failure {i + 1}: HAProxy's status")
        check("circuit open" not in r.body, f"connect failure {i + 1} reached HAProxy: {r}")
        # The log line reaches the agent after the response: wait for its invalidation.
        inv0 = before.get(("spoa_route_cache_invalidations_total", ""), 0)
        c.wait_for(lambda: st.metric("spoa_route_cache_invalidations_total") >= inv0 + 1, 5,
                   f"the invalidation from log line {i + 1}")
        after = st.metrics()
        misses = after.get(("spoa_route_cache_misses_total", ""), 0) - \
            before.get(("spoa_route_cache_misses_total", ""), 0)
        log(f"connect failure {i + 1}: {r}; cache misses +{misses:g}")
        check_eq(misses, 1.0, f"request {i + 1} resolved again (the route was invalidated)")
    # Each failed request's line, found by its path (not by its position in the log).
    lines = st.haproxy_log_by_request(
        {i: c.routing_env.request_line(f"/connect-failure-{i}") for i in range(1, FAILURES + 1)})
    log("HAProxy log:\n  " + "\n  ".join(lines.values()))
    for i, line in lines.items():
        check(" route=dead.test " in line and re.search(r" ts=SC", line),
              f"HAProxy logged ts=SC for connect failure {i}: {line}")

    c.wait_for(lambda: st.metric("spoa_breaker_transitions_total", 'to="open"') >= 1, 5,
               "the circuit to open")
    line = c.wait_log(st.agent, rf"circuit of 127\.0\.0\.1:{dead} closed -> open: (\d+) "
                                rf"consecutive failures, last: ([^\n]*)")
    log(f"agent: {line.group(0)!r}")
    check_eq(int(line.group(1)), FAILURES, "failures that opened the circuit")
    check("HAProxy could not connect (SC" in line.group(2), "the failure came from the log")

    fast = [st.get("dead.test") for _ in range(10)]
    check(all(x.status == 503 and "circuit open" in x.body for x in fast),
          f"refused by the agent while open: {fast[:2]}")
    r = st.get("ok.test")
    check_eq((r.status, r.backend), (200, "ok"), "the other route is unaffected")
    m = st.metrics()
    log("agent: " + c.metrics_line(m, {"spoa_breaker_transitions_total",
                                       "spoa_breaker_endpoints",
                                       "spoa_route_cache_invalidations_total",
                                       "spoa_route_cache_misses_total"}))
    check_eq(m.get(("spoa_breaker_endpoints", 'state="open"'), 0), 1.0,
             'spoa_breaker_endpoints{state="open"}')
    sl = [x.elapsed_ms for x in slow]
    fl = sorted(x.elapsed_ms for x in fast)
    log(f"MEASURED: connect failures through HAProxy {', '.join(f'{x:.0f}' for x in sl)} ms; "
        f"refusals while open median {statistics.median(fl):.1f} ms, max {fl[-1]:.1f} ms")


if __name__ == "__main__":
    c.harness.main(test)
