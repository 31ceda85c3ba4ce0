#!/usr/bin/python3
"""PostgreSQL 17 direct TLS terminated by HAProxy (haproxy/postgres-tls.cfg loaded after the
shipped haproxy.cfg), then routed by the database of the decrypted StartupMessage.

Debian's psql (15) cannot open TLS at once, so the client is tests/e2e_routing/pg_wire.py: TLS
with ALPN "postgresql" and SNI, then a StartupMessage, as libpq 17 does with
sslnegotiation=direct. Two real PostgreSQL clusters, alpha -> A and beta -> B. Asserts:
  * plaintext upstream (the default): alpha and beta reach their clusters through TLS; the
    certificate is the configured one; HAProxy's log line says proto=postgres alpn=postgresql;
  * refusals are ErrorResponses inside TLS (unknown database 3D000); a client without ALPN
    "postgresql" is refused with 08P01, as PostgreSQL 17 refuses it;
  * the plaintext frontend keeps working next to it (psql, default sslmode);
  * SPOA_PG_TLS_UPSTREAM=tls: HAProxy re-encrypts to a PostgreSQL 17-style direct TLS server
    (a relay in front of cluster A that requires ALPN "postgresql"), verifying its certificate
    against SPOA_PG_UPSTREAM_CA; an upstream whose certificate that CA did not sign is refused.
"""

import os
import ssl

import pg_wire
import routing_env as r
from routing_env import check, check_eq, log

WHOAMI = "select cluster || '/' || database from whoami"


def config(routes):
    lines = "\n".join(f"    {db}: {{endpoints: [127.0.0.1:{port}]}}" for db, port in routes.items())
    return f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 1000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
routes:
  postgres:
{lines}
"""


def client_tls(cafile, alpn=("postgresql",)):
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def direct(port, db, ctx):
    """Direct TLS session (SNI pg.test); returns (session, rows or None)."""
    s = pg_wire.connect(port, db, tls=ctx, server_hostname="pg.test")
    rows = None if s.error else s.query(WHOAMI)
    return s, rows


def start_haproxy(st, upstream, upstream_ca):
    os.environ.update({"SPOA_PG_TLS_UPSTREAM": upstream, "SPOA_PG_UPSTREAM_CA": upstream_ca})
    st.start_haproxy(cfg_path=[st.shipped_cfg(), os.path.join(r.REPO, "haproxy",
                                                              "postgres-tls.cfg")])


def test(env):
    st = r.Stack(env)
    ca, cb = r.two_clusters(st)
    front_key, front_crt = r.self_signed(st, "pg.test")
    pem = st.write("pg.test.pem", open(front_crt).read() + open(front_key).read())
    up_key, up_crt = r.self_signed(st, "upstream")
    relay_port, relay = st.pg_tls_relay("A", up_crt, up_key, ca.port)
    other_key, other_crt = r.self_signed(st, "unknown-upstream")
    rogue_port, _ = st.pg_tls_relay("rogue", other_crt, other_key, ca.port)

    st.start_agent(config({"alpha": ca.port, "beta": cb.port}))
    variables = st.haproxy_environment()
    tls_port = env.port()
    variables.update({"SPOA_PG_TLS_BIND": f"127.0.0.1:{tls_port}", "SPOA_PG_TLS_CERT": pem})
    start_haproxy(st, "plain", up_crt)
    ctx = client_tls(front_crt)

    # -- terminated at HAProxy, plaintext to the clusters -------------------------------------
    s, rows = direct(tls_port, "alpha", ctx)
    check_eq(rows, [("A/alpha",)], f"direct TLS alpha -> cluster A ({s.error})")
    check_eq(s.sock.selected_alpn_protocol(), "postgresql", "ALPN negotiated by HAProxy")
    check_eq(s.sock.getpeercert()["subject"], ((("commonName", "pg.test"),),),
             "HAProxy presents SPOA_PG_TLS_CERT")
    s.close()
    s, rows = direct(tls_port, "beta", ctx)
    check_eq(rows, [("B/beta",)], f"direct TLS beta -> cluster B ({s.error})")
    s.close()
    lines = st.haproxy_log_lines(r"fe_postgres_tls~ .*route=beta .*proto=postgres "
                                 r"alpn=postgresql")
    check(lines and f"to=127.0.0.1:{cb.port}" in lines[0], f"beta's log line: {lines}")

    s, rows = direct(tls_port, "nosuchdb", ctx)
    check(s.error is not None, "unknown database refused")
    check_eq((s.error.get("C"), s.error.get("M")), ("3D000", "no postgres route for 'nosuchdb'"),
             f"ErrorResponse inside TLS: {s.error}")
    s.close()
    s = pg_wire.connect(tls_port, "alpha", tls=client_tls(front_crt, alpn=()),
                        server_hostname="pg.test")
    check(s.error is not None and s.error.get("C") == "08P01" and "ALPN" in s.error.get("M", ""),
          f"no ALPN: refused with 08P01: {s.error}")
    s.close()
    res = r.psql(st.pg_port, "beta", WHOAMI, sslmode=None)
    check_eq(res.stdout.strip(), "B/beta", "the plaintext frontend, next to it")

    # -- re-encrypted to a PostgreSQL 17-style direct TLS server --------------------------------
    st.restart_agent(config({"alpha": relay_port, "beta": rogue_port}))
    env.haproxy.stop()
    start_haproxy(st, "tls", up_crt)
    s, rows = direct(tls_port, "alpha", ctx)
    check_eq(rows, [("A/alpha",)], f"re-encrypted alpha -> relay -> cluster A ({s.error})")
    s.close()
    r.wait_log(relay, r"connection alpn=postgresql")
    check("alpn=None" not in relay.log_text(), "HAProxy offers ALPN postgresql upstream")
    # The rogue upstream's certificate is not signed by SPOA_PG_UPSTREAM_CA: no session.
    try:
        s, rows = direct(tls_port, "beta", ctx)
        outcome = f"error {s.error}" if s.error else f"rows {rows}"
    except pg_wire.Refused as e:
        outcome = f"closed ({e})"
    log(f"upstream with an unknown certificate: {outcome}")
    check(not outcome.startswith("rows"), f"unverified upstream must not be reached: {outcome}")
    check(st.haproxy_log_lines(r"fe_postgres_tls~ .*route=beta .*ts=S"),
          "HAProxy log: the server side failed (ts=S...)")


if __name__ == "__main__":
    r.harness.main(test)
