#!/usr/bin/python3
"""PostgreSQL routing by database name through the shipped HAProxy configuration.

Two real PostgreSQL clusters (initdb as the postgres user), each holding the databases alpha
and beta with a table `whoami` naming the cluster; routes alpha -> cluster A, beta -> cluster B.
Asserts: psql through HAProxy's PostgreSQL frontend reaches the cluster its database is routed
to (so the route, not the database's existence, decides); an unknown database is rejected (the
agent's 404 in HAProxy's log); a malformed first packet is rejected at once (400), not after the
inspect delay; with the default `postgres.ssl_request: reject`, sslmode=require fails and
sslmode=disable works; after a restart with `ssl_request: route:alpha`, sslmode=prefer reaches
cluster A (which answers 'N' to SSLRequest, then receives the StartupMessage) whatever the
database, while sslmode=disable still routes by database."""

import socket
import struct
import time

import routing_env as r
from routing_env import check, check_eq, log


def whoami(port, db, sslmode="disable"):
    res = r.psql(port, db, "select cluster || '/' || database from whoami", sslmode=sslmode,
                 check_rc=False)
    return res.returncode, res.stdout.strip(), res.stderr.strip()


def config(pa, pb, ssl_request):
    return f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 1000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
postgres: {{resource_from: database, ssl_request: "{ssl_request}", cancel_request: reject}}
routes:
  postgres:
    alpha: {{endpoints: [127.0.0.1:{pa}]}}
    beta: {{endpoints: [127.0.0.1:{pb}]}}
"""


def test(env):
    st = r.Stack(env)
    clusters = [r.PgCluster(st, "A"), r.PgCluster(st, "B")]  # initdb runs in parallel
    for c in clusters:
        c.start()
        for db in ("alpha", "beta"):
            c.create_database(db)
    ca, cb = clusters
    log(f"PostgreSQL clusters: A on {ca.port}, B on {cb.port}")
    st.start_agent(config(ca.port, cb.port, "reject"))
    st.start_haproxy()
    port = st.pg_port

    # -- routed by database name -------------------------------------------------------------
    check_eq(whoami(port, "alpha")[:2], (0, "A/alpha"), "alpha through HAProxy")
    check_eq(whoami(port, "beta")[:2], (0, "B/beta"), "beta through HAProxy")
    check_eq(whoami(port, "alpha")[:2], (0, "A/alpha"), "alpha again (cached route)")
    lines = st.haproxy_log_lines(r"fe_postgres .*route=beta", expect=1)
    check(lines and f"to=127.0.0.1:{cb.port}" in lines[0], f"beta log line: {lines}")

    # -- unknown database: rejected ----------------------------------------------------------------
    t0 = time.monotonic()
    rc, out, err = whoami(port, "nosuchdb")
    check(rc != 0, f"unknown database must fail: {out!r}")
    check(time.monotonic() - t0 < 3, "rejected at once, not after the inspect delay")
    check("does not exist" not in err, f"no server must have seen it: {err!r}")
    log(f"unknown database: psql says {err.splitlines()[-1] if err else ''!r}")
    lines = st.haproxy_log_lines(r"fe_postgres .*route=nosuchdb status=404")
    check(lines, "HAProxy log: route=nosuchdb status=404")

    # -- a malformed first packet: rejected at once ------------------------------------------------
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    s.sendall(struct.pack("!II", 12, 12345678) + b"junk")
    data = s.recv(100)
    took = time.monotonic() - t0
    s.close()
    check_eq(data, b"", "malformed startup packet: connection closed without an answer")
    check(took < 2, f"malformed packet rejected after {took:.2f}s")
    check(st.haproxy_log_lines(r"fe_postgres .*status=400"), "HAProxy log: status=400")

    # -- SSLRequest refused by default ---------------------------------------------------------------
    rc, out, err = whoami(port, "alpha", sslmode="require")
    check(rc != 0, f"sslmode=require must fail while SSLRequest is refused: {out!r}")
    log(f"sslmode=require: {err.splitlines()[-1] if err else ''!r}")
    check(st.haproxy_log_lines(r"fe_postgres .*status=403"), "HAProxy log: SSLRequest 403")
    check_eq(whoami(port, "alpha", sslmode="disable")[:2], (0, "A/alpha"), "sslmode=disable")
    rc, out, err = whoami(port, "alpha", sslmode="prefer")
    log(f"sslmode=prefer with ssl_request: reject -> rc={rc} {out!r} {err[-200:]!r}")

    # -- SSLRequest routed to a default --------------------------------------------------------------
    st.restart_agent(config(ca.port, cb.port, "route:alpha"))
    for attempt in range(30):  # HAProxy reconnects to the restarted agent
        res = whoami(port, "alpha", sslmode="prefer")
        if res[0] == 0:
            break
        time.sleep(0.2)
    check_eq(res[:2], (0, "A/alpha"), f"sslmode=prefer with ssl_request: route:alpha ({res[2]!r})")
    # The SSLRequest carries no database: the connection goes to alpha's cluster, whose server
    # refuses TLS ('N') and then gets the StartupMessage of whatever database the client wants.
    check_eq(whoami(port, "beta", sslmode="prefer")[:2], (0, "A/beta"),
             "sslmode=prefer dbname=beta lands on the SSLRequest default (cluster A)")
    check_eq(whoami(port, "beta", sslmode="disable")[:2], (0, "B/beta"),
             "sslmode=disable still routes by database")
    rc, out, err = whoami(port, "alpha", sslmode="require")
    check(rc != 0 and "SSL" in err, f"sslmode=require: cluster A has no TLS: {rc} {err!r}")
    m = st.metrics()
    check(m.get(("spoa_route_decisions_total", 'protocol="postgres",result="ok"'), 0) >= 4,
          "postgres decisions counted")


if __name__ == "__main__":
    r.harness.main(test)
