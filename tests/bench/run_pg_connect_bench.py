#!/usr/bin/python3
"""PostgreSQL connection set-up through HAProxy and spoa-agent, per way of connecting.

    /usr/bin/python3 tests/bench/run_pg_connect_bench.py --agent BUILD/handlers/app/spoa-agent \\
        --tmpdir /tmp/pg-bench            # as root (the cluster runs as postgres)
    PG_BENCH_CONNECTIONS=1000 ...         # connections per row (default 300)

One PostgreSQL cluster (trust authentication), the shipped HAProxy configuration (haproxy/2.6 or
3.x by `haproxy -v`, $HAPROXY to choose the binary) with haproxy/postgres-tls.cfg, and the agent
routing the database `bench` to the cluster. Each connection, one after the other, from this
process (tests/e2e_routing/pg_wire.py): connect, the way's negotiation, StartupMessage, wait for
ReadyForQuery, Terminate. Rows, in the same run:

  direct            straight to PostgreSQL: the baseline
  plain             HAProxy, StartupMessage first (libpq's sslmode=disable)
  ssl-request       HAProxy, SSLRequest answered 'N' then the StartupMessage (libpq's default
                    sslmode=prefer): one more agent round trip and Lua action
  direct-tls        HAProxy terminating TLS (ALPN postgresql, as libpq 17 sslnegotiation=direct),
                    a full handshake every time (no session resumption)

Prints p50, p90, p99 and mean in milliseconds per row, and the load average. Every connection
must reach ReadyForQuery on the right cluster; any failure makes the exit status 1.
"""

import os
import ssl
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e_routing"))

import pg_wire  # noqa: E402
import routing_env as r  # noqa: E402
from routing_env import check, log  # noqa: E402

N = int(os.environ.get("PG_BENCH_CONNECTIONS", "300"))


def measure(name, connect):
    times = []
    for _ in range(N):
        t0 = time.perf_counter()
        s = connect()
        check(s.error is None, f"{name}: refused: {s.error}")
        s.close()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    pct = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    log(f"{name:12s} p50 {pct(0.50):6.3f}  p90 {pct(0.90):6.3f}  p99 {pct(0.99):6.3f}  "
        f"mean {statistics.mean(times):6.3f} ms  ({N} connections)")
    return pct(0.50)


def test(env):
    st = r.Stack(env)
    cluster = r.PgCluster(st, "bench")
    cluster.start()
    cluster.create_database("bench")
    st.start_agent(f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
routes:
  postgres:
    bench: {{endpoints: [127.0.0.1:{cluster.port}]}}
""")
    key, crt = r.self_signed(st, "pg.bench")
    pem = st.write("pg.bench.pem", open(crt).read() + open(key).read())
    variables = st.haproxy_environment()
    tls_port = env.port()
    variables.update({"SPOA_PG_TLS_BIND": f"127.0.0.1:{tls_port}", "SPOA_PG_TLS_CERT": pem})
    st.start_haproxy(cfg_path=[st.shipped_cfg(),
                               os.path.join(r.REPO, "haproxy", "postgres-tls.cfg")])
    ctx = ssl.create_default_context(cafile=crt)
    ctx.set_alpn_protocols(["postgresql"])

    log(f"load average before: {os.getloadavg()}")
    base = measure("direct", lambda: pg_wire.connect(cluster.port, "bench"))
    plain = measure("plain", lambda: pg_wire.connect(st.pg_port, "bench"))
    prefer = measure("ssl-request",
                     lambda: pg_wire.connect(st.pg_port, "bench", negotiate=[pg_wire.SSL]))
    tls = measure("direct-tls", lambda: pg_wire.connect(tls_port, "bench", tls=ctx,
                                                        server_hostname="pg.bench"))
    log(f"p50 over direct: plain +{plain - base:.3f} ms, ssl-request +{prefer - base:.3f} ms "
        f"(+{prefer - plain:.3f} over plain), direct-tls +{tls - base:.3f} ms")
    log(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    r.harness.main(test)
