#!/usr/bin/python3
"""HTTP routing by Host through the shipped HAProxy configuration.

Two real HTTP backends that say who they are. Asserts: each Host reaches its own backend (the
backend sees the client's Host and path), the Host is normalised (case, port, trailing dot);
x-route-cache is `miss` on the first request and `hit` after it (x-route-kind warm/cached);
one keep-alive client connection switching Hosts gets each request routed on its own Host;
a wildcard route with path prefixes (longest prefix first, the host's own endpoints otherwise,
the bare parent domain not matched); HAProxy's log line names the route, cache state and the
address it forwarded to; a metadata variable (metadata_variables: tenant) is sent by the agent
and usable by HAProxy once the configuration references it."""

import os
import socket
import time

import routing_env as r
from routing_env import check, check_eq, log


def keepalive_requests(port, hosts):
    """Requests for `hosts` one after the other on ONE client connection (HTTP/1.1
    keep-alive). Returns [(status, backend)]."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        for host in hosts:
            s.sendall(f"GET /ka HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status = int(f.readline().split()[1])
            headers = {}
            while (line := f.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            body = f.read(int(headers.get("content-length", "0")))
            out.append((status, r.backend_of(body.decode())))
    return out


def test(env):
    st = r.Stack(env)
    a, b = st.http_backend("A"), st.http_backend("B")
    st.start_agent(f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 2000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
metadata_variables: {{tenant: tenant}}
routes:
  http:
    app1.test: {{endpoints: [127.0.0.1:{a}], metadata: {{tenant: alpha}}}}
    app2.test: {{endpoints: [127.0.0.1:{b}], metadata: {{tenant: beta}}}}
    "*.preview.test":
      endpoints: [127.0.0.1:{a}]
      paths:
        /api: [127.0.0.1:{b}]
        /api/v2: [127.0.0.1:{a}]
""")
    st.start_haproxy()
    port = st.http_port

    # -- right backend per Host, miss then hit -------------------------------------------------
    code, h, body = r.http_get(port, "app1.test", "/hello?x=1")
    check_eq(code, 200, f"app1.test status (body {body!r})")
    check_eq(r.backend_of(body), "A", "app1.test backend")
    kv = r.harness.parse_kv_body(body.encode())
    check_eq(kv.get("host"), "app1.test", "Host seen by the backend")
    check_eq(kv.get("path"), "/hello?x=1", "path seen by the backend")
    check_eq(h.get("x-route-cache"), "miss", "first app1.test request: x-route-cache")
    check_eq(h.get("x-route-kind"), "warm", "first app1.test request: x-route-kind")
    check(h.get("x-route-decision-us", "").isdigit(), f"x-route-decision-us: {h}")

    code, h, body = r.http_get(port, "app1.test", "/again")
    check_eq((code, r.backend_of(body)), (200, "A"), "second app1.test request")
    check_eq(h.get("x-route-cache"), "hit", "second app1.test request: x-route-cache")
    check_eq(h.get("x-route-kind"), "cached", "second app1.test request: x-route-kind")
    check("x-route-decision-us" not in h, f"a cache hit has no decision time: {h}")

    # Normalised Host: case, port and trailing dot do not make another resource.
    for host in ("APP1.Test", "app1.test:8080", "app1.test."):
        code, h, body = r.http_get(port, host)
        check_eq((code, r.backend_of(body)), (200, "A"), f"Host {host!r}")
        check_eq(h.get("x-route-cache"), "hit", f"Host {host!r}: same cache entry")

    code, h, body = r.http_get(port, "app2.test", "/")
    check_eq((code, r.backend_of(body)), (200, "B"), f"app2.test (body {body!r})")
    check_eq(h.get("x-route-cache"), "miss", "first app2.test request")
    code, h, body = r.http_get(port, "app2.test", "/app2-again")  # its log line is checked
    check_eq((code, r.backend_of(body), h.get("x-route-cache")), (200, "B", "hit"),
             "second app2.test request")

    # -- one keep-alive client connection, several Hosts: one decision per request, and no
    #    server connection of one backend reused for another's request ---------------------------
    seen = keepalive_requests(port, ["app1.test", "app2.test", "app1.test", "nobody.test",
                                     "app2.test", "app1.test"])
    check_eq(seen, [(200, "A"), (200, "B"), (200, "A"), (404, None), (200, "B"), (200, "A")],
             "keep-alive connection switching Hosts")

    # -- wildcard + path prefixes --------------------------------------------------------------
    cases = [
        ("x.preview.test", "/", "A"),            # the host's own endpoints
        ("x.preview.test", "/api", "B"),          # prefix /api
        ("x.preview.test", "/api/users", "B"),
        ("x.preview.test", "/api/v2/users", "A"),  # the longest prefix wins
        ("y.preview.test", "/api/v1", "B"),       # another host, same wildcard
        ("deep.x.preview.test", "/", "A"),        # any depth under the suffix
        ("x.preview.test", "/other", "A"),
    ]
    for host, path, want in cases:
        code, h, body = r.http_get(port, host, path)
        check_eq((code, r.backend_of(body)), (200, want), f"{host}{path} (body {body!r})")
        kv = r.harness.parse_kv_body(body.encode())
        check_eq(kv.get("path"), path, f"{host}{path}: path seen by the backend")
    # One cache entry per host: the second host under the wildcard was its own miss, the
    # second path on the same host a hit.
    code, h, _ = r.http_get(port, "x.preview.test", "/api/zzz")
    check_eq(h.get("x-route-cache"), "hit", "x.preview.test again")
    code, _, body = r.http_get(port, "preview.test", "/")
    check_eq(code, 404, f"the wildcard's parent domain itself (body {body!r})")

    # -- HAProxy's log: route, cache state, forwarded-to address --------------------------------
    # Each request's line is found by its path (used once), not by its position in the log:
    # HAProxy's threads write the lines of consecutive requests in either order.
    lines = st.haproxy_log_by_request({"first": r.request_line("/hello?x=1"),
                                       "again": r.request_line("/app2-again")})
    check("route=app1.test cache=miss" in lines["first"]
          and f"to=127.0.0.1:{a}" in lines["first"],
          f"log line of the first app1.test request: {lines['first']}")
    check("route=app2.test cache=hit" in lines["again"] and f"to=127.0.0.1:{b}" in lines["again"],
          f"log line of the second app2.test request: {lines['again']}")

    m = st.metrics()
    check_eq(m.get(("spoa_route_decisions_total", 'protocol="http",result="ok"')), 20.0,
             "spoa_route_decisions_total ok")
    # app1.test, app2.test, nobody.test, x., y., deep.x.preview.test, preview.test (not found)
    check_eq(m.get(("spoa_route_cache_misses_total", "")), 7.0, "spoa_route_cache_misses_total")

    # -- metadata variable -----------------------------------------------------------------------
    # The agent sets txn.route.tenant from the route's metadata. The shipped configuration does
    # not reference it (its contract lists the routing variables only); HAProxy only keeps
    # variables whose name it knows, so a deployment that wants the tenant references it.
    # Run a second HAProxy from the shipped haproxy.cfg with one operator line added.
    shipped = open(os.path.join(st.cfg_dir, "haproxy.cfg")).read()
    anchor = "    default_backend be_dynamic_http\n"
    check(anchor in shipped, "fe_http's default_backend line in the shipped haproxy.cfg")
    extended = shipped.replace(
        anchor,
        "    http-response set-header X-Tenant %[var(txn.route.tenant)] "
        "if { var(txn.route.tenant) -m found }\n" + anchor, 1)
    cfg2 = st.write("haproxy-tenant.cfg", extended)
    port2 = env.port()
    sock2 = os.path.join(env.socket_dir(), "haproxy-tenant.sock")
    environ = dict(os.environ)
    for k in ("SPOA_HTTP_BIND", "SPOA_PG_BIND", "SPOA_SMTP_BIND", "SPOA_MYSQL_BIND",
              "SPOA_TLS_BIND"):
        os.environ[k] = f"127.0.0.1:{env.port() if k != 'SPOA_HTTP_BIND' else port2}"
    os.environ["SPOA_STATS_SOCKET"] = sock2
    try:
        hap2 = st.spawn("haproxy-tenant", [env.haproxy_bin, "-db", "-f", cfg2])
    finally:
        os.environ.clear()
        os.environ.update(environ)
    r.wait_port(port2, proc=hap2)
    for host, tenant, backend in (("app1.test", "alpha", "A"), ("app2.test", "beta", "B"),
                                  ("x.preview.test", None, "A")):
        for attempt in range(50):  # its agent connections and checks come up first
            code, h, body = r.http_get(port2, host)
            if code == 200:
                break
            time.sleep(0.1)
        check_eq((code, r.backend_of(body)), (200, backend), f"{host} via the extended config")
        check_eq(h.get("x-tenant"), tenant, f"{host}: X-Tenant from txn.route.tenant")
    log("metadata variable tenant reaches HAProxy when referenced")


if __name__ == "__main__":
    r.harness.main(test)
