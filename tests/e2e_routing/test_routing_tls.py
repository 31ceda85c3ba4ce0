#!/usr/bin/python3
"""TLS passthrough routed by SNI through the shipped HAProxy configuration.

Two `openssl s_server -www` instances with self-signed certificates (CN=a.test, CN=b.test,
generated here). Asserts: `openssl s_client -servername a.test` through HAProxy's TLS frontend
completes the handshake with the a.test server (certificate subject) and gets its -www page
(end-to-end TLS, HAProxy never terminates it); b.test reaches the other server; SNI is
normalised (case); an unknown SNI and a ClientHello without SNI are rejected (no certificate,
the agent's 404 and 400 in HAProxy's log); a wildcard SNI route."""

import subprocess

import routing_env as r
from routing_env import check, check_eq, log


def s_client(port, sni, timeout=15):
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof"]
    argv += ["-servername", sni] if sni else ["-noservername"]
    return subprocess.run(argv, input="GET / HTTP/1.0\r\n\r\n", capture_output=True, text=True,
                          timeout=timeout)


def subject_cn(out):
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[1].lstrip(" =") if "CN" in line else line
    return None


def test(env):
    st = r.Stack(env)
    pa, pb = r.tls_server(st, "a.test"), r.tls_server(st, "b.test")
    st.start_agent(f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 1000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
routes:
  tls:
    a.test: {{endpoints: [127.0.0.1:{pa}]}}
    b.test: {{endpoints: [127.0.0.1:{pb}]}}
    "*.apps.test": {{endpoints: [127.0.0.1:{pb}]}}
""")
    st.start_haproxy()
    port = st.tls_port

    for sni, want in (("a.test", "a.test"), ("b.test", "b.test"), ("A.TEST", "a.test"),
                      ("x.apps.test", "b.test"), ("a.test", "a.test")):
        res = s_client(port, sni)
        check_eq(subject_cn(res.stdout), want, f"certificate subject for SNI {sni!r}:\n"
                                                f"{res.stdout[-1500:]}{res.stderr[-800:]}")
        # s_server -www answers the request with a page describing the session.
        check("HTTP/1.0 200 ok" in res.stdout and "s_server" in res.stdout,
              f"-www page through HAProxy for {sni!r}:\n{res.stdout[-800:]}")
    lines = st.haproxy_log_lines(r"fe_tls .*route=b\.test ")
    check(lines and f"to=127.0.0.1:{pb}" in lines[0], f"fe_tls log: {lines}")

    for sni, status in (("unknown.test", 404), (None, 400)):
        res = s_client(port, sni)
        check(subject_cn(res.stdout) is None, f"SNI {sni!r} must get no certificate:\n"
                                               f"{res.stdout[-800:]}")
        check(res.returncode != 0, f"s_client with SNI {sni!r} must fail")
        log(f"SNI {sni!r}: s_client exit {res.returncode}, "
            f"{(res.stderr.strip().splitlines() or [''])[-1]!r}")
        pattern = (r"fe_tls .*route=unknown\.test status=404" if sni
                   else r"fe_tls .*route=- status=400")
        check(st.haproxy_log_lines(pattern), f"HAProxy log line {pattern!r}")
    m = st.metrics()
    check_eq(m.get(("spoa_route_decisions_total", 'protocol="tls",result="ok"')), 5.0,
             "tls decisions ok")
    check_eq(m.get(("spoa_route_decisions_total", 'protocol="tls",result="not_found"')), 1.0,
             "tls decisions not_found")


if __name__ == "__main__":
    r.harness.main(test)
