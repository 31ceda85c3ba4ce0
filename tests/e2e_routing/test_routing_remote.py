#!/usr/bin/python3
"""The remote resolver with the reference control plane
(handlers/control_plane/spoa_control_plane.py), through the shipped HAProxy configuration.

Asserts: decisions come from the control plane (one resolve call, then cache hits); a route
changed on the control plane is pushed as an invalidation and the next request sees the new
backend (the cache TTL is a minute, so only the push can explain it), a deleted route becomes a
404; a control plane that does not answer gives a 504 after the call timeout (1.5 s), well
within the agent's deadline; a call in flight when the control plane dies, and every uncached
decision while it is down, fail closed with 503 "control plane unreachable" at once, never
hanging (routes already cached keep working); once the control plane is back on its address the
agent reconnects by itself and decisions succeed again."""

import json
import threading
import time

import routing_env as r
from routing_env import check, check_eq, log

CALL_TIMEOUT_MS = 1500


def wait_until(fn, what, timeout=5.0, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = fn()
        if ok:
            return last
        time.sleep(interval)
    raise r.TestFailure(f"{what}: not reached after {timeout}s (last: {last!r})")


def timed_get(port, host, path="/"):
    t0 = time.monotonic()
    code, h, body = r.http_get(port, host, path, timeout=15)
    return code, h, body, time.monotonic() - t0


def test(env):
    st = r.Stack(env)
    a, b = st.http_backend("A"), st.http_backend("B")
    cp = r.ControlPlane(st, {"http": {
        "app.test": {"endpoints": [f"127.0.0.1:{a}"], "ttl_ms": 60000},
        "other.test": {"endpoints": [f"127.0.0.1:{b}"], "ttl_ms": 60000},
        "*.tenants.test": {"endpoints": [f"127.0.0.1:{a}"], "ttl_ms": 60000},
    }})
    st.start_agent(f"""
resolver:
  type: remote
  timeout_ms: 2000
  remote: {{address: {cp.address}, timeout_ms: {CALL_TIMEOUT_MS}, reconnect_min_ms: 50, reconnect_max_ms: 300}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 1000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
""")
    st.start_haproxy()
    port = st.http_port
    wait_until(lambda: (st.agent.metric("spoa_control_plane_connected",
                                        f'address="{cp.address}"') == 1, None),
               "agent connected to the control plane")

    # -- decisions come from the control plane -------------------------------------------------
    code, h, body, _ = timed_get(port, "app.test")
    check_eq((code, r.backend_of(body), h.get("x-route-cache")), (200, "A", "miss"), "app.test")
    code, h, body, _ = timed_get(port, "app.test")
    check_eq((code, r.backend_of(body), h.get("x-route-cache")), (200, "A", "hit"), "app.test 2")
    check_eq(cp.resolve_count("http", "app.test"), 1, "control plane resolve calls for app.test")
    code, _, body, _ = timed_get(port, "other.test")
    check_eq((code, r.backend_of(body)), (200, "B"), "other.test")
    code, _, body, _ = timed_get(port, "nobody.test")
    check_eq((code, body.strip()), (404, "no http route for 'nobody.test'"), "unknown host")

    # -- invalidation pushed by the control plane ---------------------------------------------
    reply = cp.admin("set http app.test " + json.dumps(
        {"endpoints": [f"127.0.0.1:{b}"], "ttl_ms": 60000}))
    check_eq(reply.get("pushed"), 1, "invalidation pushed to one agent")

    def moved():
        code, h, body, _ = timed_get(port, "app.test")
        return r.backend_of(body) == "B", (code, r.backend_of(body), h.get("x-route-cache"))
    last = wait_until(moved, "app.test follows the control plane's change")
    check_eq(last, (200, "B", "miss"), "first request after the invalidation")
    check_eq(cp.resolve_count("http", "app.test"), 2, "one more resolve after the invalidation")
    check(st.agent.metric("spoa_control_plane_invalidations_total",
                          f'address="{cp.address}"') >= 1, "spoa_control_plane_invalidations_total")
    code, h, body, _ = timed_get(port, "app.test")
    check_eq((r.backend_of(body), h.get("x-route-cache")), ("B", "hit"), "then cached again")

    cp.admin("delete http other.test")
    wait_until(lambda: ((c := timed_get(port, "other.test")[0]) == 404, c),
               "deleted route answers 404")

    # -- a control plane that does not answer: 504 after the call timeout ----------------------
    cp.admin("pause")
    code, _, body, took = timed_get(port, "x.tenants.test")
    cp.admin("resume")
    check_eq(code, 504, f"paused control plane (body {body!r})")
    check(CALL_TIMEOUT_MS / 1000 - 0.05 <= took < CALL_TIMEOUT_MS / 1000 + 1.0,
          f"504 after {took:.2f}s")
    log(f"paused control plane: 504 {body.strip()!r} after {took:.2f}s")
    code, _, body, _ = timed_get(port, "x.tenants.test")
    check_eq((code, r.backend_of(body)), (200, "A"), "resumed: the timeout was not cached")

    # -- control plane killed: in-flight and new calls fail closed at once -----------------------
    cp.admin("delay 5000")  # the next call stays in flight (until the call timeout)
    inflight = {}
    calls_before = cp.stats()["calls"].get("resolve", 0)

    def slow_request():
        inflight["result"] = timed_get(port, "y.tenants.test")
    t = threading.Thread(target=slow_request, daemon=True)
    t.start()
    wait_until(lambda: (cp.stats()["calls"].get("resolve", 0) == calls_before + 1, None),
               "the in-flight call reached the control plane", interval=0.01)
    t_kill = time.monotonic()
    cp.kill()
    t.join(10)
    check("result" in inflight, "in-flight request answered")
    code, _, body, took = inflight["result"]
    check_eq(code, 503, f"call in flight when the control plane died (body {body!r})")
    check(time.monotonic() - t_kill < 1.0, "answered as soon as the connection dropped")
    log(f"in-flight call: 503 {body.strip()!r}")

    for i in range(5):
        code, _, body, took = timed_get(port, f"down{i}.tenants.test")
        check_eq(code, 503, f"uncached decision while the control plane is down ({body!r})")
        check_eq(body.strip(), "control plane unreachable", "503 reason")
        check(took < 1.0, f"503 after {took:.2f}s: fail fast, not at the deadline")
    code, h, body, _ = timed_get(port, "app.test")
    check_eq((code, r.backend_of(body), h.get("x-route-cache")), (200, "B", "hit"),
             "a cached route keeps working while the control plane is down")
    check_eq(st.agent.metric("spoa_control_plane_connected", f'address="{cp.address}"'), 0.0,
             "spoa_control_plane_connected while down")
    # Each request's log line, found by its route (one request per host), not by position.
    lines = st.haproxy_log_by_request({i: rf" route=down{i}\.tenants\.test " for i in range(5)})
    for i, line in lines.items():
        check(" fe_http 503 " in line and " spoe_err=- " in line,
              f"down{i}: the agent answered the request (no SPOE error/timeout): {line}")

    # -- control plane back: decisions work again -------------------------------------------------
    cp.delay_ms = 0
    cp.start()
    t_back = time.monotonic()
    last = wait_until(lambda: ((res := timed_get(port, "back.tenants.test"))[0] == 200,
                               res[:2]), "decisions after the control plane restarted")
    log(f"control plane back: first 200 after {time.monotonic() - t_back:.2f}s")
    code, _, body, _ = timed_get(port, "back.tenants.test")
    check_eq((code, r.backend_of(body)), (200, "A"), "after restart")
    check(st.agent.metric("spoa_control_plane_reconnects_total", f'address="{cp.address}"') >= 1
          or st.agent.metric("spoa_control_plane_connections_total",
                             f'address="{cp.address}"') >= 2, "reconnect counted")
    # The restarted control plane pushes invalidations again.
    cp.admin("set http app.test " + json.dumps({"endpoints": [f"127.0.0.1:{a}"]}))
    wait_until(lambda: ((b_ := r.backend_of(timed_get(port, "app.test")[2])) == "A", b_),
               "invalidation from the restarted control plane")


if __name__ == "__main__":
    r.harness.main(test)
