#!/usr/bin/python3
"""Server-speaks-first protocols through the shipped HAProxy configuration, routed on the
destination port (route ids `smtp:<port>`, `mysql:<port>`).

HAProxy's SMTP frontend binds three ports and its MySQL frontend two (SPOA_SMTP_BIND and
SPOA_MYSQL_BIND hold comma-separated address lists). Asserts: swaks through the first SMTP port
delivers to sink A, through the second to sink B (the sink's banner and the stored message
prove which one, with the envelope and body intact); the third, unrouted port is rejected (no
banner, HAProxy logs the agent's 404); a client of the MySQL frontend gets the greeting the
fake server sends first, through HAProxy, and its bytes relayed both ways; the unrouted MySQL
port is rejected."""

import glob
import os
import socket
import subprocess
import time

import routing_env as r
from routing_env import check, check_eq, log


def swaks(port, token, timeout=20):
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), "--from", "sender@a.test",
         "--to", f"rcpt-{token}@b.test", "--header", f"Subject: {token}",
         "--body", f"body of {token}", "--timeout", "10", "--helo", "client.test"],
        capture_output=True, text=True, timeout=timeout)


def spooled(spool):
    out = []
    for path in sorted(glob.glob(os.path.join(spool, "*.eml"))):
        with open(path, "rb") as f:
            out.append(f.read().decode(errors="replace"))
    return out


def read_greeting(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        t0 = time.monotonic()
        data = b""
        while not data.endswith(b"\n"):
            b = s.recv(100)
            if not b:
                break
            data += b
        took = time.monotonic() - t0
        echo = None
        if data:
            s.sendall(b"COM_PING\n")
            echo = s.recv(100)
        return data, took, echo
    finally:
        s.close()


def test(env):
    st = r.Stack(env)
    port_a, spool_a = st.smtp_sink("A")
    port_b, spool_b = st.smtp_sink("B")
    mysql_srv = st.greeting_server("mysql-A")
    st.haproxy_environment(smtp_ports=3, mysql_ports=2)  # the routes name HAProxy's ports
    s1, s2, s3 = st.smtp_ports
    m1, m2 = st.mysql_ports
    st.start_agent(f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 1000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
tcp:
  services: {{smtp: dst_port, mysql: dst_port}}
routes:
  tcp:
    "smtp:{s1}": {{endpoints: [127.0.0.1:{port_a}]}}
    "smtp:{s2}": {{endpoints: [127.0.0.1:{port_b}]}}
    "mysql:{m1}": {{endpoints: [127.0.0.1:{mysql_srv}]}}
""")
    st.start_haproxy()

    # -- SMTP routed by destination port ---------------------------------------------------------
    for port, name, spool in ((s1, "A", spool_a), (s2, "B", spool_b), (s1, "A", spool_a)):
        token = f"tok{port}x{len(spooled(spool))}"
        res = swaks(port, token)
        check_eq(res.returncode, 0, f"swaks via {port}:\n{res.stdout}{res.stderr}")
        check(f"<-  220 {name} ESMTP" in res.stdout, f"banner of sink {name}:\n{res.stdout}")
        msgs = [m for m in spooled(spool) if f"Subject: {token}" in m]
        check_eq(len(msgs), 1, f"message {token} stored by sink {name}")
        check(f"X-Sink: {name}" in msgs[0] and f"rcpt-{token}@b.test" in msgs[0]
              and f"body of {token}" in msgs[0], f"stored message: {msgs[0]!r}")
    check_eq(len(spooled(spool_a)), 2, "sink A got exactly its two messages")
    check_eq(len(spooled(spool_b)), 1, "sink B got exactly its message")
    lines = st.haproxy_log_lines(rf"fe_smtp .*route=smtp:{s2} ")
    check(lines and f"to=127.0.0.1:{port_b}" in lines[0], f"fe_smtp log: {lines}")

    # -- an unrouted port is rejected -----------------------------------------------------------
    t0 = time.monotonic()
    res = swaks(s3, "unrouted")
    took = time.monotonic() - t0
    check(res.returncode != 0, f"swaks via the unrouted port must fail:\n{res.stdout}")
    check("<-  220" not in res.stdout, f"no banner on the unrouted port:\n{res.stdout}")
    check(took < 5, f"rejected at once ({took:.2f}s)")
    check(st.haproxy_log_lines(rf"fe_smtp .*route=smtp:{s3} status=404"),
          "HAProxy log: smtp unrouted port, status=404")
    log(f"unrouted SMTP port: swaks exit {res.returncode} after {took:.2f}s")

    # -- MySQL: the server's greeting comes through ---------------------------------------------
    data, took, echo = read_greeting(m1)
    check_eq(data, b"GREETING mysql-A\n", "greeting of the MySQL-like server through HAProxy")
    check(took < 2, f"greeting after {took:.2f}s: no inspect delay on a server-speaks-first port")
    check_eq(echo, b"COM_PING\n", "client bytes relayed to the server and back")
    data, took, echo = read_greeting(m2)
    check_eq(data, b"", "unrouted MySQL port: closed without a greeting")
    check(st.haproxy_log_lines(rf"fe_mysql .*route=mysql:{m2} status=404"),
          "HAProxy log: mysql unrouted port, status=404")
    lines = st.haproxy_log_lines(rf"fe_mysql .*route=mysql:{m1} ")
    check(lines and f"to=127.0.0.1:{mysql_srv}" in lines[0], f"fe_mysql log: {lines}")


if __name__ == "__main__":
    r.harness.main(test)
