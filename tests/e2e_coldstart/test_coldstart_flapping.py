#!/usr/bin/python3
"""Health checks with rise/fall against a flapping endpoint; one route, two endpoints.

HTTP checks (GET /healthz every 150 ms, fall 3, rise 2; breaker off so that health alone
decides). Endpoint B answers its checks from a script the test sets (O = 200, F = 503; each check
consumes one character), so the sequence of results is exact whatever the timing:
  1. flapping "FFO" x 4: 8 failed checks, never 3 in a row -> B never becomes unhealthy
     (the gauge is sampled all along), and both endpoints keep receiving requests;
  2. failing for good: B becomes unhealthy at its 3rd consecutive failure, not before (agent log
     "is unhealthy (3 checks failed ...)", every sample with fewer than 3 new failures shows it
     healthy); meanwhile every request goes to A, B gets none;
  3. up again: healthy after exactly 2 passed checks (agent log); requests reach B again."""

import collections
import json
import re
import time

import coldstart_env as c
from coldstart_env import check, check_eq, log
import harness

FALL, RISE = 3, 2
INTERVAL_MS = 150


def control(port, method, path, body=None):
    st, _, data = harness.http_request("127.0.0.1", port, method, path, body=body, timeout=5)
    check_eq(st, 200, f"backend control {path}")
    return data


def health_log(port):
    return json.loads(control(port, "GET", "/_control/stats"))


def requests_to(st, n):
    got = collections.Counter()
    for _ in range(n):
        r = st.get("flap.test")
        check_eq(r.status, 200, f"request status ({r})")
        got[r.backend] += 1
    return got


def sample(st):
    m = st.metrics()
    return (m.get(("spoa_health_checks_total", 'result="failed"'), 0),
            m.get(("spoa_endpoints_unhealthy", ""), 0))


def test(env):
    st = c.Stack(env)
    pa, _ = st.backend("A")
    pb, _ = st.backend("B")
    st.start_agent(c.routing_yaml(
        {"flap.test": {"endpoints": [f"127.0.0.1:{pa}", f"127.0.0.1:{pb}"]}},
        health={"type": "http", "path": "/healthz", "expect": [200], "interval_ms": INTERVAL_MS,
                "timeout_ms": 500, "rise": RISE, "fall": FALL, "recent_use_ms": 60000},
        breaker={"enabled": False}))
    st.start_haproxy()
    got = requests_to(st, 6)
    log(f"before: requests per backend {dict(got)}")
    check_eq(set(got), {"A", "B"}, "round robin over both endpoints")
    c.wait_for(lambda: len(health_log(pb)["health"]) >= 2 and len(health_log(pa)["health"]) >= 2,
               5, "active checks of both endpoints")

    # -- 1. flapping: never FALL failures in a row ---------------------------------------------
    script = "FFO" * 4
    failed0, _ = sample(st)
    # The backend says where the script starts: a check answered between reading its health log
    # and setting the script would otherwise shift every position by one.
    reply = control(pb, "POST", "/_control/health?hold=O", script.encode())
    start = int(re.search(rb"at=(\d+)", reply).group(1))
    samples = []
    while True:
        samples.append(sample(st))
        h = health_log(pb)
        if len(h["health"]) >= start + len(script) + 1:  # + 1: the last F was processed
            break
        time.sleep(0.02)
    samples.append(sample(st))
    answered = h["health"][start:]
    failed1 = samples[-1][0]
    log(f"flapping: B answered {answered!r}; {failed1 - failed0:g} failed checks; "
        f"{len(samples)} samples, unhealthy seen {max(u for _, u in samples):g}")
    check(answered.startswith(script), f"B's checks followed the script: {answered!r}")
    check_eq(failed1 - failed0, float(script.count("F")), "failed checks while flapping")
    check(all(u == 0 for _, u in samples), "B never unhealthy while flapping")
    got = requests_to(st, 6)
    check_eq(set(got), {"A", "B"}, "both endpoints in use after flapping")

    # -- 2. down for good: unhealthy at the FALL-th consecutive failure, traffic to A only -------
    failed0, _ = sample(st)
    start = len(health_log(pb)["health"])
    control(pb, "POST", "/_control/health?hold=F", b"")
    samples = []
    deadline = time.monotonic() + 10
    while True:
        f, u = sample(st)
        samples.append((f - failed0, u))
        if u >= 1:
            break
        check(time.monotonic() < deadline, "B did not become unhealthy")
        time.sleep(0.01)
    line = c.wait_log(st.agent, rf"endpoint 127\.0\.0\.1:{pb} is unhealthy \((\d+) checks failed,"
                                rf" last: ([^)]*)\)")
    log(f"down: samples (new failed checks, unhealthy) {samples[:3]}...{samples[-3:]}; "
        f"log {line.group(0)!r}")
    check_eq(int(line.group(1)), FALL, "consecutive failed checks when B became unhealthy")
    early = [s for s in samples if s[0] < FALL and s[1] >= 1]
    check(not early, f"unhealthy before {FALL} failures: {early}")
    check(samples[-1][0] >= FALL, f"unhealthy after {samples[-1][0]:g} failed checks")
    b_before = health_log(pb)["requests"]
    got = requests_to(st, 10)
    b_after = health_log(pb)["requests"]
    log(f"while B is down: requests per backend {dict(got)}")
    check_eq(dict(got), {"A": 10}, "requests while B is unhealthy")
    check_eq(b_after - b_before, 0, "requests that reached B while unhealthy")

    # -- 3. up again: healthy after RISE passed checks -------------------------------------------
    control(pb, "POST", "/_control/health?hold=O", b"")
    line = c.wait_log(st.agent, rf"endpoint 127\.0\.0\.1:{pb} is healthy again \((\d+) checks "
                                rf"passed\)")
    log(f"up: {line.group(0)!r}")
    check_eq(int(line.group(1)), RISE, "passed checks when B became healthy again")
    c.wait_for(lambda: sample(st)[1] == 0, 5, "spoa_endpoints_unhealthy back to 0")
    got = requests_to(st, 6)
    log(f"after recovery: requests per backend {dict(got)}")
    check_eq(set(got), {"A", "B"}, "both endpoints in use after recovery")
    text = st.agent.log_text()
    check_eq(len(re.findall(rf"endpoint 127\.0\.0\.1:{pb} is unhealthy", text)), 1,
             "unhealthy transitions of B")
    check(not re.search(rf"endpoint 127\.0\.0\.1:{pa} is unhealthy", text), "A stayed healthy")
    m = st.metrics()
    log("agent: " + c.metrics_line(m, {"spoa_health_checks_total", "spoa_endpoints_unhealthy",
                                       "spoa_endpoint_rejections_total",
                                       "spoa_breaker_transitions_total"}))


if __name__ == "__main__":
    c.harness.main(test)
