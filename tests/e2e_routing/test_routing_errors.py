#!/usr/bin/python3
"""Resolver errors through the shipped HAProxy configuration, each with its own status and the
reason text in the body.

resolver: chain (the file's routes first, the reference control plane for the rest). Asserts:
404 for an unknown Host (the control plane's reason; the second request is a negative cache
hit); 403/503/504/500 for `error: forbidden|unavailable|timeout|internal` routes, reasons
intact, not cached (the next request asks again); a real resolver timeout: the control plane
answers after 1.5 s, the router's resolver.timeout_ms (600 ms) answers 504 "no routing decision
within 600 ms" in well under a second; 400 for a request without a usable Host (HTTP/1.0
without Host, an empty Host); the agent's per-result decision counters."""

import time

import routing_env as r
from routing_env import check, check_eq, log


def body_line(body):
    return body.rstrip("\n")


def test(env):
    st = r.Stack(env)
    a = st.http_backend("A")
    cp = r.ControlPlane(st, {"http": {
        "remote.test": {"endpoints": [f"127.0.0.1:{a}"]},
        "slow.test": {"endpoints": [f"127.0.0.1:{a}"], "delay_ms": 1500},
    }})
    st.start_agent(f"""
resolver:
  type: chain
  timeout_ms: 600
  remote: {{address: {cp.address}, timeout_ms: 3000, reconnect_min_ms: 50, reconnect_max_ms: 500}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 30000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
routes:
  http:
    ok.test: {{endpoints: [127.0.0.1:{a}]}}
    forbidden.test: {{error: forbidden, reason: tenant suspended for non-payment}}
    unavailable.test: {{error: unavailable, reason: "maintenance window, back at 10:00"}}
    timeout.test: {{error: timeout, reason: upstream control plane too slow}}
    internal.test: {{error: internal, reason: route table corrupted}}
""")
    st.start_haproxy()
    port = st.http_port

    code, _, body = r.http_get(port, "ok.test")
    check_eq((code, r.backend_of(body)), (200, "A"), "static route")
    code, _, body = r.http_get(port, "remote.test")
    check_eq((code, r.backend_of(body)), (200, "A"), "route from the control plane (chain)")

    # -- 404: unknown host, reason from the control plane; negative caching ----------------------
    # Every request whose HAProxy log line is checked has a path of its own: HAProxy writes a
    # line when the request's stream ends, on whichever of its two threads ran it, so two
    # consecutive requests' lines may come in either order. Each is found by its request line.
    code, h, body = r.http_get(port, "nobody.test", "/unknown-1")
    check_eq(code, 404, "unknown host")
    check_eq(body_line(body), "no http route for 'nobody.test'", "404 body")
    check(h.get("content-type", "").startswith("text/plain"), f"404 content-type: {h}")
    code, _, body = r.http_get(port, "nobody.test", "/unknown-2")
    check_eq((code, body_line(body)), (404, "no http route for 'nobody.test'"), "404 again")
    check_eq(cp.resolve_count("http", "nobody.test"), 1,
             "not_found is negatively cached: one control plane call for two requests")
    lines = st.haproxy_log_by_request({p: r.request_line(p) for p in ("/unknown-1", "/unknown-2")})
    for path, cache in (("/unknown-1", "miss"), ("/unknown-2", "negative")):
        check(" fe_http 404 " in lines[path] and " route=nobody.test " in lines[path]
              and f" cache={cache} " in lines[path],
              f"log line of nobody.test{path}: 404, cache={cache}: {lines[path]}")

    # -- typed errors from error routes -----------------------------------------------------------
    for host, status, reason in (
            ("forbidden.test", 403, "tenant suspended for non-payment"),
            ("unavailable.test", 503, "maintenance window, back at 10:00"),
            ("timeout.test", 504, "upstream control plane too slow"),
            ("internal.test", 500, "route table corrupted")):
        paths = {attempt: f"/{host}-{attempt}" for attempt in (1, 2)}
        for attempt, path in paths.items():
            code, h, body = r.http_get(port, host, path)
            check_eq((code, body_line(body)), (status, reason), f"{host} attempt {attempt}")
        lines = st.haproxy_log_by_request({a: r.request_line(p) for a, p in paths.items()})
        for attempt, line in lines.items():
            check(f" fe_http {status} " in line and f" route={host} " in line
                  and " cache=miss " in line,
                  f"{host} attempt {attempt}: errors other than not_found are not cached: {line}")

    # -- a real resolver timeout: the control plane answers after 1.5 s -------------------------
    t0 = time.monotonic()
    code, _, body = r.http_get(port, "slow.test")
    took = time.monotonic() - t0
    check_eq((code, body_line(body)), (504, "no routing decision within 600 ms"),
             "slow control plane")
    check(0.5 <= took < 1.4, f"the 504 came after {took:.2f}s, expected ~0.6s")
    log(f"resolver timeout answered 504 after {took:.2f}s")
    check(st.agent.metric("spoa_route_resolve_timeouts_total") == 1,
          "spoa_route_resolve_timeouts_total")

    # -- 400: no usable Host ---------------------------------------------------------------------
    code, text = r.raw_http(port, b"GET / HTTP/1.0\r\n\r\n")
    check_eq(code, 400, f"HTTP/1.0 without Host: {text!r}")
    check(text.endswith("\r\n\r\nmissing or oversized Host header\n"), f"400 body: {text!r}")
    code, text = r.raw_http(port, b"GET / HTTP/1.0\r\nHost: \r\n\r\n")
    check_eq(code, 400, f"empty Host: {text!r}")
    check("missing or oversized Host header" in text, f"400 body: {text!r}")
    code, text = r.raw_http(port, b"GET / HTTP/1.0\r\nHost: " + b"a" * 300 + b".test\r\n\r\n")
    check_eq(code, 400, f"oversized Host: {text!r}")

    m = st.metrics()
    for result, want in (("ok", 2), ("not_found", 2), ("forbidden", 2), ("unavailable", 2),
                         ("timeout", 3), ("internal", 2)):
        got = m.get(("spoa_route_decisions_total", f'protocol="http",result="{result}"'))
        check_eq(got, float(want), f"spoa_route_decisions_total result={result}")
    check_eq(m.get(("spoa_route_bad_requests_total", "")), 3.0, "spoa_route_bad_requests_total")


if __name__ == "__main__":
    r.harness.main(test)
