#!/usr/bin/python3
"""Readiness is seen within 10 ms of the backend listening (poll_initial_ms 2, poll_max_ms 5).

One request for a sleeping backend; the fake platform starts it on the wake and the backend
listens DELAY_MS later, recording the time right after listen() (wall clock and
CLOCK_MONOTONIC). Measured per attempt:
  * agent:  the agent's log line "cold start of ...: ready after N ms" (its timestamp, ms
            resolution) minus the backend's listen time. This is the asserted number (< 10 ms).
  * probe:  the backend's first accepted connection (the agent's readiness probe) minus its
            listen time.
  * client: the client's response (through HAProxy and the backend) minus the listen time; an
            upper bound that includes forwarding the request.
The machine may be loaded: up to ATTEMPTS fresh resources are tried, the test passes on the first
attempt under the bound, and every attempt's raw numbers are printed."""

import datetime
import re

import coldstart_env as c
from coldstart_env import TestFailure, check, check_eq, log

ATTEMPTS = 5
DELAY_MS = 400
BOUND_MS = 10.0


def agent_ready_wall(agent, rid):
    m = c.wait_log(agent, rf"(?m)^(\S+) \S+ \[\d+\] cold start of http:{re.escape(rid)}: "
                          rf"ready after (\d+) ms")
    ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
    return ts, int(m.group(2))


def test(env):
    st = c.Stack(env)
    ids = [f"ready{i}.test" for i in range(ATTEMPTS)]
    ports = {rid: env.port() for rid in ids}
    platform = c.Platform(st, {rid: {"port": ports[rid], "delay_ms": DELAY_MS} for rid in ids})
    st.start_agent(c.routing_yaml(
        {rid: {"endpoints": [f"127.0.0.1:{ports[rid]}"], "state": "asleep"} for rid in ids},
        platform=platform,
        cold_start={"timeout_ms": 4000, "poll_initial_ms": 2, "poll_max_ms": 5}))
    st.start_haproxy()

    rows = []
    passed = None
    for rid in ids:
        r = st.get(rid)
        check_eq((r.status, r.kind), (200, "cold"), f"status and kind of the request for {rid}")
        b = c.wait_for(lambda: (lambda x: x if "first_accept_mono" in x else None)(
            platform.backend(rid)), 5, f"the platform's record of {rid}'s listen and accept")
        wake = next(x for x in platform.stats()["calls"] if x["id"] == rid)
        ready_wall, ready_after = agent_ready_wall(st.agent, rid)
        row = {
            "id": rid,
            "agent_ms": (ready_wall - b["listen_wall"]) * 1000,
            "probe_ms": (b["first_accept_mono"] - b["listen_mono"]) * 1000,
            "client_ms": (r.t_end - b["listen_mono"]) * 1000,
            "wake_to_listen_ms": (b["listen_mono"] - wake["mono"]) * 1000,
            "ready_after_ms": ready_after,
            "request_ms": r.elapsed_ms,
        }
        rows.append(row)
        log(f"{rid}: backend listening {row['wake_to_listen_ms']:.1f} ms after the wake; "
            f"agent ready {row['agent_ms']:+.1f} ms after listen (log, ms resolution; agent "
            f"says 'ready after {ready_after} ms' since its wake), probe accepted "
            f"{row['probe_ms']:+.2f} ms after listen, client response {row['client_ms']:+.1f} ms "
            f"after listen (request took {r.elapsed_ms:.0f} ms)")
        # Sanity: the agent cannot have seen it ready before it listened (1 ms log resolution).
        check(row["agent_ms"] > -1.5, f"agent ready {row['agent_ms']:.1f} ms before the listen?")
        if row["agent_ms"] < BOUND_MS:
            passed = row
            break
        log(f"{rid}: {row['agent_ms']:.1f} ms >= {BOUND_MS} ms, machine loaded? "
            f"(load average {open('/proc/loadavg').read().split()[:3]}); trying again")

    log("readiness delays (agent log - listen, ms): " +
        ", ".join(f"{x['agent_ms']:.1f}" for x in rows) + "; probe accept - listen: " +
        ", ".join(f"{x['probe_ms']:.2f}" for x in rows) + "; client response - listen: " +
        ", ".join(f"{x['client_ms']:.1f}" for x in rows))
    if passed is None:
        raise TestFailure(f"readiness took >= {BOUND_MS} ms after listen in all {ATTEMPTS} "
                          f"attempts: {[round(x['agent_ms'], 1) for x in rows]}")
    log(f"PASSED on attempt {len(rows)}: readiness {passed['agent_ms']:.1f} ms after listen")
    h = st.metrics()
    log("agent: " + c.metrics_line(h, {"spoa_cold_starts_total", "spoa_cold_start_wakes_total"}))
    check_eq(h.get(("spoa_cold_start_wakes_total", ""), 0), float(len(rows)), "wake calls")


if __name__ == "__main__":
    c.harness.main(test)
