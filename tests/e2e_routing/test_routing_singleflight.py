#!/usr/bin/python3
"""Single-flight through HAProxy: 1,000 concurrent requests for one cold key.

The resolver is the reference control plane with an artificial delay (DELAY_MS), so that the
requests overlap the one resolve call. All 1,000 client connections are opened first, then the
1,000 requests are written at once. Asserts: 1,000 responses 200 from the routed backend;
exactly one resolve call reached the control plane; /metrics shows
spoa_route_cache_misses_total == 1 and the other 999 as coalesced (waited on the one call) or,
if HAProxy delivered some after the answer, hits; the x-route-cache headers agree with the
counters; no SPOE error in HAProxy's log (whose lines HAProxy may drop under such a burst:
every missing one must be in its DroppedLogs count)."""

import asyncio
import collections
import resource
import time

import routing_env as r
from routing_env import check, check_eq, log

N = 1000
DELAY_MS = 300


async def one(reader, writer, req):
    writer.write(req)
    data = await asyncio.wait_for(reader.read(-1), 30)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else None
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers.get("x-route-cache"), r.backend_of(body.decode(errors="replace"))


async def burst(port, host):
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                   for _ in range(N)))
    req = f"GET /sf HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(rd, wr, req) for rd, wr in conns),
                                   return_exceptions=True)
    return results, time.monotonic() - t0


def test(env):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * N:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * N), hard))
    st = r.Stack(env)
    a = st.http_backend("A")
    cp = r.ControlPlane(st, {"http": {"cold.test": {"endpoints": [f"127.0.0.1:{a}"]}}},
                        delay_ms=DELAY_MS)
    st.start_agent(f"""
resolver:
  type: remote
  timeout_ms: 3000
  remote: {{address: {cp.address}, timeout_ms: 3000}}
cache: {{ttl_ms: 60000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
""")
    st.start_haproxy()
    info = env.cli("show info")
    maxconn = int(next(l.split(":")[1] for l in info.splitlines() if l.startswith("Maxconn:")))
    check(maxconn >= 2 * N, f"HAProxy's maxconn {maxconn} leaves room for {N} clients + {N} "
                            f"server connections")
    cp.admin("reset")

    results, took = asyncio.run(burst(st.http_port, "cold.test"))
    errors = [x for x in results if isinstance(x, BaseException)]
    check(not errors, f"{len(errors)} requests failed, e.g. {errors[:3]!r}")
    statuses = collections.Counter(x[0] for x in results)
    labels = collections.Counter(x[1] for x in results)
    backends = collections.Counter(x[2] for x in results)
    log(f"{N} requests in {took:.2f}s: statuses {dict(statuses)}, x-route-cache "
        f"{dict(labels)}, backends {dict(backends)}")
    check_eq(dict(statuses), {200: N}, "statuses")
    check_eq(dict(backends), {"A": N}, "backends")

    stats = cp.stats()
    check_eq(stats["calls"].get("resolve", 0), 1, "resolve calls made to the control plane")
    check_eq(stats["ids"]["resolve"], {"http/cold.test": 1}, "resolve calls per id")

    m = st.metrics()
    misses = m.get(("spoa_route_cache_misses_total", ""), 0)
    coalesced = m.get(("spoa_route_cache_coalesced_total", ""), 0)
    hits = m.get(("spoa_route_cache_hits_total", ""), 0)
    log(f"agent: misses {misses:.0f}, coalesced {coalesced:.0f}, hits {hits:.0f}")
    check_eq(misses, 1.0, "spoa_route_cache_misses_total")
    check_eq(coalesced + hits, float(N - 1), "coalesced + hits")
    check_eq(labels.get("miss", 0), 1, "one response says x-route-cache: miss")
    check_eq(labels.get("coalesced", 0), int(coalesced), "x-route-cache: coalesced responses")
    check(coalesced >= 0.9 * N, f"most requests waited on the one call: {coalesced:.0f}")
    check_eq(m.get(("spoa_resolver_calls_total", 'resolver="remote"'), 0), 1.0,
             "spoa_resolver_calls_total")
    lines = env.wait_log_lines(lambda: st.haproxy_log_matches(r'"GET /sf HTTP/1\.1"'), N,
                               timeout=10, what="HAProxy log lines of the burst")
    bad = [l for l in lines if "spoe_err=-" not in l]
    check(not bad, f"SPOE errors in HAProxy's log: {bad[:3]}")


if __name__ == "__main__":
    r.harness.main(test)
