#!/usr/bin/python3
"""PostgreSQL routing by database name, as clients really connect, through the shipped HAProxy
configuration and haproxy/spoa-postgres.lua.

Two real PostgreSQL clusters (initdb as the postgres user), each holding the databases alpha
and beta with a table `whoami` naming the cluster; routes alpha -> cluster A, beta -> cluster B.
Asserts:
  * psql with libpq's default sslmode (prefer: SSLRequest first, answered 'N') reaches the
    cluster its database is routed to; sslmode=disable too; sslmode=require stops with libpq's
    own "server does not support SSL" message;
  * GSSENCRequest then SSLRequest (libpq with Kerberos credentials) are both answered 'N', then
    routed by database; a third encryption request is a protocol violation (08P01);
  * every refusal reaches psql as a PostgreSQL error with the resolver's reason and its SQLSTATE
    (unknown database 3D000, forbidden 28000, SSRF 28000, unavailable 57P03, malformed packet
    08P01, agent down 08006), at once, not after the inspect delay; HAProxy's log line has it;
  * a client that stops after its SSLRequest is refused (08P01) when the inspect delay ends;
  * postgres.ssl_request: reject refuses with 28000; route:alpha sends the whole connection
    to cluster A (which answers the SSLRequest itself).
"""

import socket
import struct
import time

import pg_wire
import routing_env as r
from routing_env import check, check_eq, log

REQUIRE_MESSAGE = "server does not support SSL, but SSL was required"


def whoami(port, db, sslmode=None):
    res = r.psql(port, db, "select cluster || '/' || database from whoami", sslmode=sslmode,
                 check_rc=False)
    return res.returncode, res.stdout.strip(), res.stderr.strip()


def config(pa, pb, ssl_request=None):
    policy = f', ssl_request: "{ssl_request}"' if ssl_request else ""
    return f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 1000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
postgres: {{resource_from: database{policy}}}
routes:
  postgres:
    alpha: {{endpoints: [127.0.0.1:{pa}]}}
    beta: {{endpoints: [127.0.0.1:{pb}]}}
    suspended: {{error: forbidden, reason: tenant suspended}}
    waking: {{error: unavailable, reason: database is waking up}}
    outside: {{endpoints: [10.1.2.3:5432]}}
"""


def check_refusal(port, db, sqlstate, reason_part):
    """psql prints the reason and the SQLSTATE (ErrorResponse detail); the wire carries the
    SQLSTATE in its C field."""
    t0 = time.monotonic()
    rc, out, err = whoami(port, db)
    took = time.monotonic() - t0
    log(f"{db}: psql says {err!r}")
    check(rc != 0, f"{db}: psql must fail: {out!r}")
    check(took < 3, f"{db}: refused after {took:.2f}s, not at once")
    check(f"FATAL:  " in err and reason_part in err, f"{db}: reason {reason_part!r} in {err!r}")
    check(f"(SQLSTATE {sqlstate})" in err, f"{db}: SQLSTATE {sqlstate} in psql's output {err!r}")
    s = pg_wire.connect(port, db, negotiate=[pg_wire.SSL])
    check_eq(s.answers, [b"N"], f"{db}: SSLRequest answered 'N' before the refusal")
    check(s.error is not None, f"{db}: an ErrorResponse")
    check_eq((s.error.get("C"), s.error.get("S"), s.error.get("V")), (sqlstate, "FATAL", "FATAL"),
             f"{db}: ErrorResponse fields {s.error}")
    check(reason_part in s.error.get("M", ""), f"{db}: message {s.error}")
    s.close()


def test(env):
    st = r.Stack(env)
    ca, cb = r.two_clusters(st)
    st.start_agent(config(ca.port, cb.port))
    st.start_haproxy()
    port = st.pg_port
    # A client that stops after its SSLRequest: refused once the inspect delay (5s) is over,
    # as PostgreSQL refuses an incomplete startup packet. Checked at the end of the test.
    idle = socket.create_connection(("127.0.0.1", port), timeout=15)
    idle.sendall(pg_wire.negotiation_request(pg_wire.SSL))
    check_eq(idle.recv(1), b"N", "idle client: SSLRequest answered")
    idle_since = time.monotonic()

    # -- libpq's default sslmode (prefer): 'N', then routed by database --------------------------
    check_eq(whoami(port, "alpha")[:2], (0, "A/alpha"), "alpha, default sslmode")
    check_eq(whoami(port, "beta")[:2], (0, "B/beta"), "beta, default sslmode")
    check_eq(whoami(port, "beta", "prefer")[:2], (0, "B/beta"), "beta, sslmode=prefer")
    check_eq(whoami(port, "alpha", "disable")[:2], (0, "A/alpha"), "alpha, sslmode=disable")
    check_eq(whoami(port, "beta", "allow")[:2], (0, "B/beta"), "beta, sslmode=allow")
    lines = st.haproxy_log_lines(r"fe_postgres .*route=beta ", expect=3)
    check(len(lines) >= 3 and all(f"to=127.0.0.1:{cb.port}" in l for l in lines),
          f"beta log lines: {lines}")
    rc, out, err = whoami(port, "alpha", "require")
    check(rc != 0 and REQUIRE_MESSAGE in err, f"sslmode=require: libpq's message, got {err!r}")
    m = st.metrics()
    check(m.get(("spoa_route_postgres_plaintext_answers_total", ""), 0) >= 4,
          "plaintext answers counted")

    # -- GSSENCRequest, then SSLRequest, then the StartupMessage ---------------------------------
    s = pg_wire.connect(port, "beta", negotiate=[pg_wire.GSSENC, pg_wire.SSL])
    check_eq(s.answers, [b"N", b"N"], "GSSENCRequest and SSLRequest answered 'N'")
    check(s.error is None, f"routed after two negotiations: {s.error}")
    check_eq(s.query("select cluster || '/' || database from whoami"), [("B/beta",)],
             "GSSENC + SSL + startup reaches beta's cluster")
    s.close()
    s = pg_wire.connect(port, "beta", negotiate=[pg_wire.GSSENC, pg_wire.SSL, pg_wire.SSL])
    check_eq(s.answers, [b"N", b"N", b"E"], "a third encryption request is refused")
    check_eq(s.error.get("C"), "08P01", f"protocol_violation: {s.error}")
    s.close()

    # -- refusals as PostgreSQL errors -----------------------------------------------------------
    check_refusal(port, "nosuchdb", "3D000", "no postgres route for 'nosuchdb'")
    check(st.haproxy_log_lines(r"fe_postgres .*route=nosuchdb status=404 sqlstate=3D000 "),
          "HAProxy log: route=nosuchdb status=404 sqlstate=3D000")
    check_refusal(port, "suspended", "28000", "tenant suspended")
    check_refusal(port, "outside", "28000", "10.1.2.3")
    check_refusal(port, "waking", "57P03", "database is waking up")

    # A malformed first packet: 08P01 at once.
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    sock.sendall(struct.pack("!II", 12, 12345678) + b"junk")
    session = pg_wire.Session(sock)
    session.wait_ready()
    took = time.monotonic() - t0
    sock.close()
    check_eq(session.error.get("C"), "08P01", f"malformed startup packet: {session.error}")
    check("invalid PostgreSQL startup packet" in session.error.get("M", ""), f"{session.error}")
    check(took < 2, f"malformed packet refused after {took:.2f}s")
    check(st.haproxy_log_lines(r"fe_postgres .*status=400"), "HAProxy log: status=400")

    # The idle client of the start: 08P01 once the inspect delay ran out, not before.
    idle_session = pg_wire.Session(idle)
    idle_session.wait_ready()
    waited = time.monotonic() - idle_since
    idle.close()
    check_eq((idle_session.error.get("C"), idle_session.error.get("M")),
             ("08P01", "incomplete startup packet"), f"idle client: {idle_session.error}")
    check(4 < waited < 8, f"idle client refused after {waited:.2f}s (inspect-delay 5s)")
    check(st.haproxy_log_lines(r"fe_postgres .*route=- status=- sqlstate=08P01 "),
          "HAProxy log: the idle client's sqlstate=08P01")

    # -- postgres.ssl_request: reject ----------------------------------------------------------
    st.restart_agent(config(ca.port, cb.port, "reject"))
    s = pg_wire.connect(port, "alpha", negotiate=[pg_wire.SSL])
    check_eq((s.answers, s.error and s.error.get("C")), ([b"E"], "28000"),
             f"SSLRequest refused: {s.error}")
    check("postgres.ssl_request: reject" in s.error.get("M", ""), f"{s.error}")
    s.close()
    # libpq discards an error received in answer to its SSLRequest (CVE-2024-10977): what it
    # prints is its own text. The connection must fail.
    rc, out, err = whoami(port, "alpha")
    log(f"sslmode=prefer with ssl_request: reject: {err!r}")
    check(rc != 0, f"sslmode=prefer refused: {out!r}")
    check_eq(whoami(port, "alpha", "disable")[:2], (0, "A/alpha"), "sslmode=disable still routed")

    # -- postgres.ssl_request: route:alpha ----------------------------------------------------
    st.restart_agent(config(ca.port, cb.port, "route:alpha"))
    # The SSLRequest carries no database: the connection goes to alpha's cluster, whose server
    # refuses TLS ('N') and then gets the StartupMessage of whatever database the client wants.
    check_eq(whoami(port, "beta")[:2], (0, "A/beta"), "sslmode=prefer lands on cluster A")
    check_eq(whoami(port, "beta", "disable")[:2], (0, "B/beta"), "sslmode=disable by database")
    rc, out, err = whoami(port, "alpha", "require")
    check(rc != 0 and REQUIRE_MESSAGE in err, f"sslmode=require: cluster A has no TLS: {err!r}")

    # -- the agent down: 08006 from HAProxy itself ---------------------------------------------
    st.agent.stop(grace=5.0)
    t0 = time.monotonic()
    rc, out, err = whoami(port, "alpha", "disable")
    took = time.monotonic() - t0
    log(f"agent down: psql says {err!r} after {took:.2f}s")
    # Before HAProxy's checks see the agent down, the SPOE waits up to `timeout processing`.
    check(took < 8, f"agent down: refused after {took:.2f}s")
    check(rc != 0 and "(SQLSTATE 08006)" in err and "no routing decision" in err,
          f"agent down: 08006 in psql's output: {err!r}")
    check(st.haproxy_log_lines(r"fe_postgres .*sqlstate=08006 "), "HAProxy log: sqlstate=08006")


if __name__ == "__main__":
    r.harness.main(test)
