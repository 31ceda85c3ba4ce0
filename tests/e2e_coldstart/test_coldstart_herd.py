#!/usr/bin/python3
"""1,000 concurrent requests through HAProxy for one sleeping backend: one wake.

The route is `state: asleep` in the static table; cold_start.waker is http, pointing at the fake
platform, which starts the backend (listening START_MS after the wake). All 1,000 client
connections are opened first, then every request is written at once. Asserts: exactly one wake
call reached the platform (and spoa_cold_start_wakes_total == 1, spoa_cold_starts_total
{outcome="ready"} == 1); 1,000 responses 200 from the woken backend, each with
x-route-kind: cold; none arrived before the backend listened; no waiter is left."""

import collections
import statistics

import coldstart_env as c
from coldstart_env import check, check_eq, log

N = 1000
START_MS = 2500  # the backend listens this long after the wake: every request must be in


def test(env):
    nofile = c.raise_nofile(8 * N)
    check(nofile >= 4 * N, f"RLIMIT_NOFILE {nofile} too low for {N} clients through HAProxy")
    st = c.Stack(env)
    port = env.port()
    platform = c.Platform(st, {"herd.test": {"port": port, "delay_ms": START_MS}})
    st.start_agent(c.routing_yaml(
        {"herd.test": {"endpoints": [f"127.0.0.1:{port}"], "state": "asleep"}},
        platform=platform,
        cold_start={"timeout_ms": 10000, "max_waiters_per_resource": 5000,
                    "max_waiters": 10000}))
    st.start_haproxy()
    info = env.cli("show info")
    maxconn = int(next(l.split(":")[1] for l in info.splitlines() if l.startswith("Maxconn:")))
    slim = st.frontend_limit()
    log(f"HAProxy Maxconn {maxconn}, fe_http session limit {slim}, RLIMIT_NOFILE {nofile}")
    check(maxconn >= 2 * N and slim >= N,
          f"HAProxy's limits (maxconn {maxconn}, fe_http slim {slim}) must admit {N} clients")

    results = c.burst(st.http_port, "herd.test", N, timeout=30)
    errors = [x for x in results if isinstance(x, BaseException)]
    check(not errors, f"{len(errors)} requests failed, e.g. {errors[:3]!r}")
    statuses = collections.Counter(r.status for r in results)
    kinds = collections.Counter(r.kind for r in results)
    backends = collections.Counter(r.backend for r in results)
    ms = sorted(r.elapsed_ms for r in results)
    log(f"{N} requests: statuses {dict(statuses)}, x-route-kind {dict(kinds)}, backends "
        f"{dict(backends)}, latency min {ms[0]:.0f} median {statistics.median(ms):.0f} "
        f"max {ms[-1]:.0f} ms")
    stats = platform.stats()
    log(f"platform: wakes {stats['wakes']}, calls {[x['status'] for x in stats['calls']]}")
    m = st.metrics()
    log("agent: " + c.metrics_line(m, {"spoa_cold_start_wakes_total", "spoa_cold_starts_total",
                                       "spoa_cold_start_waiters",
                                       "spoa_route_cache_misses_total",
                                       "spoa_route_cache_coalesced_total",
                                       "spoa_route_cache_hits_total"}))

    check_eq(stats["wakes"], {"herd.test": 1}, "wake calls received by the platform")
    check_eq(dict(statuses), {200: N}, "statuses")
    check_eq(dict(kinds), {"cold": N}, "x-route-kind")
    check_eq(dict(backends), {"herd.test": N}, "backend that answered")
    listen = stats["backends"]["herd.test"]["listen_mono"]
    early = [r for r in results if r.t_end < listen]
    check(not early, f"{len(early)} responses arrived before the backend listened")
    check_eq(m.get(("spoa_cold_start_wakes_total", ""), 0), 1.0, "spoa_cold_start_wakes_total")
    check_eq(m.get(("spoa_cold_starts_total", 'outcome="ready"'), 0), 1.0,
             'spoa_cold_starts_total{outcome="ready"}')
    check_eq(m.get(("spoa_cold_starts_total", 'outcome="busy"'), 0), 0.0,
             'spoa_cold_starts_total{outcome="busy"}')
    check_eq(m.get(("spoa_cold_start_waiters", ""), 0), 0.0, "spoa_cold_start_waiters after")
    check_eq(m.get(("spoa_cold_start_seconds_count", ""), 0), 1.0,
             "spoa_cold_start_seconds observations")
    wake_s = m.get(("spoa_cold_start_seconds_sum", ""), 0)
    log(f"spoa_cold_start_seconds: one start of {wake_s:.3f} s (backend delay {START_MS} ms)")
    check(START_MS / 1000 <= wake_s < START_MS / 1000 + 2, "wake-to-ready time in the histogram")
    ready = st.agent.log_text()
    check(ready.count("cold start of http:herd.test: waking the backend") == 1,
          "the agent logged exactly one wake")
    check(f"{N} request(s) released" in ready,
          f"the agent released all {N} requests at once (log: "
          f"{[l for l in ready.splitlines() if 'released' in l]})")

    # The next request is answered from the cache, without a wake.
    r = st.get("herd.test")
    log(f"next request: {r}")
    check_eq((r.status, r.kind), (200, "cached"), "status and kind of the next request")
    check_eq(platform.wakes("herd.test"), 1, "wake calls after the next request")


if __name__ == "__main__":
    c.harness.main(test)
