#!/usr/bin/python3
"""The SSRF policy through the shipped HAProxy configuration.

Blocklist mode (the default): routes pointing at loopback, private, link-local/metadata, CGNAT,
"this network", IPv6 loopback/ULA/link-local, IPv4-mapped and NAT64/6to4 forms embedding a
blocked IPv4, multicast, broadcast, and a host name resolving to
loopback are each answered 403 with a reason naming the address and the range; nothing is
forwarded. Allowlist mode (allow 127.0.0.0/8), after an agent restart: loopback backends work,
an IPv4-mapped loopback address too, 169.254.169.254 and 0.0.0.0 are still refused (refused in
both modes), addresses outside the allowlist are refused; a route to the host name "localhost"
is resolved by the agent and HAProxy is given the IP (its log line says to=127.0.0.1:<port>)."""

import re
import socket
import time

import routing_env as r
from routing_env import check, check_eq, log


BLOCKED = [
    # (host, endpoint, substring the reason must contain)
    ("lo.test", "127.0.0.1:{a}", "127.0.0.1 is in 127.0.0.0/8 (loopback)"),
    ("lo2.test", "127.9.8.7:80", "127.9.8.7 is in 127.0.0.0/8 (loopback)"),
    ("private10.test", "10.1.2.3:80", "10.1.2.3 is in 10.0.0.0/8 (private (RFC 1918))"),
    ("private172.test", "172.16.5.5:80", "172.16.5.5 is in 172.16.0.0/12 (private (RFC 1918))"),
    ("private192.test", "192.168.1.1:80", "192.168.1.1 is in 192.168.0.0/16 (private"),
    ("metadata.test", "169.254.169.254:80", "169.254.169.254 is in 169.254.0.0/16 (link-local, "
                                            "cloud metadata"),
    ("cgnat.test", "100.64.0.1:80", "100.64.0.1 is in 100.64.0.0/10 (carrier-grade NAT"),
    ("zero.test", "0.0.0.0:80", "0.0.0.0 is in 0.0.0.0/8 (\"this network\""),
    ("v6lo.test", "[::1]:80", "::1 is in ::1/128 (loopback)"),
    ("v6unspec.test", "[::]:80", ":: is in ::/128 (unspecified)"),
    ("mapped.test", "[::ffff:127.0.0.1]:80", "embeds 127.0.0.1 is in 127.0.0.0/8 (loopback)"),
    ("mapped-meta.test", "[::ffff:169.254.169.254]:80", "embeds 169.254.169.254 is in "
                                                         "169.254.0.0/16"),
    ("nat64.test", "[64:ff9b::a9fe:a9fe]:80", "embeds 169.254.169.254 is in 169.254.0.0/16"),
    ("6to4.test", "[2002:7f00:1::1]:80", "embeds 127.0.0.1 is in 127.0.0.0/8"),
    ("ula.test", "[fd00::1]:80", "fd00::1 is in fc00::/7 (unique local"),
    ("v6ll.test", "[fe80::1]:80", "fe80::1 is in fe80::/10 (link-local)"),
    ("mcast.test", "224.0.0.1:80", "224.0.0.1 is in 224.0.0.0/4 (multicast)"),
    ("bcast.test", "255.255.255.255:80", "255.255.255.255 is in 240.0.0.0/4"),
    ("localhost-name.test", "localhost:{a}", "127.0.0.1 is in 127.0.0.0/8 (loopback)"),
]


def routes_yaml(routes, a):
    return "\n".join(f'    {host}: {{endpoints: ["{ep.format(a=a)}"]}}' for host, ep in routes)


def test(env):
    st = r.Stack(env)
    a = st.http_backend("A")
    st.start_agent(f"""
resolver: {{type: static, timeout_ms: 2000}}
cache: {{ttl_ms: 60000}}
ssrf: {{mode: blocklist}}
routes:
  http:
{routes_yaml([(h, ep) for h, ep, _ in BLOCKED], a)}
""")
    st.start_haproxy()
    port = st.http_port

    for host, ep, want in BLOCKED:
        code, _, body = r.http_get(port, host)
        check_eq(code, 403, f"{host} -> {ep.format(a=a)} (body {body!r})")
        check(want in body and "refused" in body, f"{host}: reason {body!r} must contain {want!r}")
    # Each request's HAProxy log line, found by its route (one request per host here), not by
    # its position: HAProxy's threads write the lines of consecutive requests in either order.
    lines = st.haproxy_log_by_request({h: rf" route={re.escape(h)} " for h, _, _ in BLOCKED})
    for host, line in lines.items():
        check(" fe_http 403 " in line and " to=-:- " in line, f"{host}: nothing forwarded: {line}")
    m = st.metrics()
    check(m.get(("spoa_route_ssrf_refusals_total", ""), 0) >= len(BLOCKED),
          "spoa_route_ssrf_refusals_total")
    backend_log = [p for p in env.processes if p.name == "http-A"][0].log_text()
    check_eq(backend_log.count("\n"), 2, "the loopback backend was never reached")

    # -- allowlist mode ------------------------------------------------------------------------------
    st.restart_agent(f"""
resolver: {{type: static, timeout_ms: 2000}}
cache: {{ttl_ms: 60000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
routes:
  http:
    lo.test: {{endpoints: ["127.0.0.1:{a}"]}}
    localhost.test: {{endpoints: ["localhost:{a}"]}}
    mapped.test: {{endpoints: ["[::ffff:127.0.0.1]:{a}"]}}
    metadata.test: {{endpoints: ["169.254.169.254:80"]}}
    zero.test: {{endpoints: ["0.0.0.0:{a}"]}}
    private10.test: {{endpoints: ["10.1.2.3:80"]}}
    v6lo.test: {{endpoints: ["[::1]:{a}"]}}
""")
    for attempt in range(50):  # HAProxy reconnects to the restarted agent
        code, _, body = r.http_get(port, "lo.test")
        if code == 200:
            break
        time.sleep(0.1)
    check_eq((code, r.backend_of(body)), (200, "A"), f"allowlisted loopback backend ({body!r})")

    # "localhost" is resolved by the agent; HAProxy only ever sees the checked IP.
    local_addrs = {ai[4][0] for ai in socket.getaddrinfo("localhost", a, type=socket.SOCK_STREAM)}
    code, _, body = r.http_get(port, "localhost.test")
    if local_addrs <= {"127.0.0.1"} or all(x.startswith("127.") for x in local_addrs):
        check_eq((code, r.backend_of(body)), (200, "A"), f"route to localhost ({body!r})")
        lines = st.haproxy_log_lines(r"route=localhost\.test ")
        check(lines and f" to=127.0.0.1:{a} " in lines[0], f"HAProxy got the IP: {lines}")
        log(f"localhost route: {lines[0]}")
    else:
        # localhost also resolves to ::1, outside the allowlist: every address is checked.
        check_eq(code, 403, f"localhost resolves to {local_addrs}: refused ({body!r})")

    code, _, body = r.http_get(port, "mapped.test", "/mapped-allowlist")
    log(f"[::ffff:127.0.0.1] in allowlist mode: {code} {body.strip()[:100]!r}")
    check_eq((code, r.backend_of(body)), (200, "A"), "IPv4-mapped loopback judged as 127.0.0.1")
    lines = st.haproxy_log_lines(r"route=mapped\.test ", expect=2)
    check(len(lines) == 2, f"mapped.test log lines: {lines}")
    line = st.haproxy_log_by_request({"allow": r.request_line("/mapped-allowlist")})["allow"]
    check(" fe_http 200 " in line and " route=mapped.test " in line,
          f"mapped.test in allowlist mode: {line}")
    log(f"mapped route in allowlist mode: {line}")

    for host, want in (("metadata.test", "169.254.169.254 is in 169.254.0.0/16 (link-local, "
                                         "cloud metadata"),
                       ("zero.test", "0.0.0.0 is in 0.0.0.0/8"),
                       ("private10.test", "10.1.2.3 is not in the allowlist"),
                       ("v6lo.test", "::1 is not in the allowlist")):
        code, _, body = r.http_get(port, host)
        check_eq(code, 403, f"allowlist mode: {host} ({body!r})")
        check(want in body, f"{host}: reason {body!r} must contain {want!r}")


if __name__ == "__main__":
    r.harness.main(test)
