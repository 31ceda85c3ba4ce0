#!/usr/bin/python3
"""Activity reports are throttled: one per resource per activity.throttle_ms window.

Two resources on one backend. Bursts of concurrent requests within one window must raise
spoa_activity_reports_total by exactly one per resource; a burst after the window by exactly
one per resource again; GET /resources counts every decision.
  phase 1: static resolver (the counter only);
  phase 2: remote resolver, the reference control plane (handlers/control_plane): its count of
           `activity` notifications per resource must equal the agent's reports (skipped if
           python3-msgpack or the control plane is missing)."""

import json
import os
import time

import coldstart_env as c
from coldstart_env import check, check_eq, log

THROTTLE_MS = 1500
PER_BURST = 60
IDS = ("act1.test", "act2.test")
CONTROL_PLANE = os.path.join(c.REPO, "handlers", "control_plane", "spoa_control_plane.py")


def window(st):
    """Bursts for both resources; returns (seconds taken, statuses)."""
    t0 = time.monotonic()
    statuses = []
    for rid in IDS:
        res = c.burst(st.http_port, rid, PER_BURST)
        statuses += [getattr(r, "status", r) for r in res]
    return time.monotonic() - t0, statuses


def run_phase(st, name):
    reports0 = st.metric("spoa_activity_reports_total")
    t_start = time.monotonic()
    took, statuses = window(st)
    check(took * 1000 < THROTTLE_MS, f"{name}: the first bursts took {took * 1000:.0f} ms, "
                                     f"longer than the {THROTTLE_MS} ms window")
    check_eq(set(statuses), {200}, f"{name}: statuses")
    r1 = st.metric("spoa_activity_reports_total") - reports0
    took2, statuses = window(st)  # still inside the window (checked below)
    inside = (time.monotonic() - t_start) * 1000 < THROTTLE_MS
    r2 = st.metric("spoa_activity_reports_total") - reports0
    time.sleep(max(0.0, THROTTLE_MS / 1000 - (time.monotonic() - t_start)) + 0.1)
    took3, statuses3 = window(st)
    r3 = st.metric("spoa_activity_reports_total") - reports0
    log(f"{name}: reports after burst 1: {r1:g} ({took * 1000:.0f} ms), burst 2: {r2:g} "
        f"({took2 * 1000:.0f} ms, inside the window: {inside}), after the window: {r3:g}")
    check_eq(r1, float(len(IDS)), f"{name}: reports in the first window")
    if inside:
        check_eq(r2, float(len(IDS)), f"{name}: reports after a second burst in the window")
    check_eq(set(statuses3), {200}, f"{name}: statuses after the window")
    check_eq(r3, float(2 * len(IDS)), f"{name}: reports after the window")
    res = st.resources()
    log(f"{name}: GET /resources {res}")
    for rid in IDS:
        check_eq(res.get(("http", rid)), 3 * PER_BURST,
                 f"{name}: decisions of {rid} in /resources")
    return r3


def test(env):
    c.raise_nofile(4 * PER_BURST * len(IDS) + 1000)
    st = c.Stack(env)
    port, _ = st.backend("act")
    routes = {rid: {"endpoints": [f"127.0.0.1:{port}"]} for rid in IDS}
    st.start_agent(c.routing_yaml(routes, activity={"throttle_ms": THROTTLE_MS}))
    st.start_haproxy()
    run_phase(st, "static")

    # -- phase 2: the control plane sees the same throttled notifications ---------------------
    try:
        import msgpack  # noqa: F401
    except ImportError:
        log("phase 2 skipped: python3-msgpack is not installed")
        return
    if not os.path.exists(CONTROL_PLANE):
        log(f"phase 2 skipped: {CONTROL_PLANE} does not exist")
        return
    cp_port, cp_admin = env.port(), env.port()
    routes_path = st.write("cp-routes.json", json.dumps({"routes": {"http": routes}}))
    cp = st.spawn("control-plane", [c.PYTHON, "-B", CONTROL_PLANE, "--listen",
                                    f"127.0.0.1:{cp_port}", "--admin", f"127.0.0.1:{cp_admin}",
                                    "--routes", routes_path])
    c.wait_log(cp, r"ready listen=")
    st.restart_agent(c.routing_yaml(
        {}, activity={"throttle_ms": THROTTLE_MS},
        resolver=f"resolver: {{type: remote, timeout_ms: 1000, remote: {{address: "
                 f"127.0.0.1:{cp_port}}}}}"))
    reports = run_phase(st, "remote")

    def cp_stats():
        import socket
        with socket.create_connection(("127.0.0.1", cp_admin), timeout=5) as s:
            s.sendall(b"stats\n")
            buf = b""
            while not buf.endswith(b"\n"):
                b = s.recv(65536)
                if not b:
                    break
                buf += b
        return json.loads(buf)

    want = {f"http/{rid}": 2 for rid in IDS}
    c.wait_for(lambda: cp_stats().get("ids", {}).get("activity") == want, 5,
               f"the control plane to count {want} activity notifications")
    s = cp_stats()
    log(f"control plane: activity notifications {s['ids'].get('activity')}, resolve calls "
        f"{s['ids'].get('resolve')}")
    check_eq(reports, float(sum(want.values())), "agent reports = control plane notifications")


if __name__ == "__main__":
    c.harness.main(test)
