#!/usr/bin/python3
"""Cold-start benchmark: wake-to-ready latency and wakes per cold start under concurrency.

    /usr/bin/python3 tests/bench/run_coldstart_bench.py BUILD_DIR [--quick]
        [--resources 100] [--delay-ms 50] [--concurrency 200] [--threads 2]

Builds nothing: BUILD_DIR must hold handlers/app/spoa-agent (or set SPOA_AGENT). Standard library
only; run it with /usr/bin/python3.

What runs (all on loopback, no HAProxy: this script speaks SPOP to the agent itself):
  * a fake platform (a child process, asyncio): one backend socket per resource, bound at the
    start but not listening (a connection is refused, as to a sleeping backend); POST
    /wake/<id> answers 202 and makes that socket listen --delay-ms later (409 while starting,
    200 once up); every wake call, the moment the socket started listening and the moment it
    accepted its first connection (the agent's readiness probe) are recorded.
  * spoa-agent --config with static routes `<id>.cold.localhost -> 127.0.0.1:<port>`, state
    asleep, cold_start.waker http (the platform), probe tcp, default polling (2 ms growing by
    half up to 25 ms), --log-level info (for its `ready after N ms` lines).
  * an SPOP client (asyncio, this process): HELLO with pipelining, then NOTIFY route-http.

Phases:
  sequential  --resources cold starts one after the other: for each, --concurrency requests
              for that resource sent at once, spread over the connections (both agent loop
              threads), and all their ACKs awaited.
  herd        --resources other resources all at once, --concurrency requests each
              (resources x concurrency requests held by the agent at the same time).

Reported per phase:
  * wakes per cold start: wake calls the platform received / cold starts (expected 1.0), and
    the agent's spoa_cold_start_wakes_total / spoa_cold_starts_total{outcome="ready"}.
  * wake-to-ready, agent side: its log line `cold start of <key>: ready after N ms` (the wake
    call to the successful probe; ms resolution) and that minus --delay-ms (the overhead:
    wake call round trip, polling granularity, probe). The mean of the agent's
    spoa_cold_start_seconds histogram is printed too (its buckets are too coarse for
    percentiles here).
  * platform side: the delay it really applied (wake received -> listen()) and the detection
    lag (listen() -> first accepted connection, i.e. the probe that found it).
  * client side: per resource, the first ACK's latency (send -> ACK) minus --delay-ms, and the
    latency of every request (p50/p99).
Every ACK must be a decision (ip, port, resource; its kind is reported: `cold` when it waited
for the wake, `cached` if it reached the agent after the backend was ready); refusals, wrong
decisions, missing ACKs, or wake calls per cold start other than 1 make the exit status 1
(timing never does).

--quick: a functional smoke run for ctest (5 resources, 20 requests each, 1 agent thread).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

# The decoding side of SPOP (varints, typed data) is the e2e harness's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "e2e"))
from harness import decode_typed, decode_varint  # noqa: E402

# ---------------------------------------------------------------------------------------------
# SPOP codec (the few frames a client needs)

SUFFIX = ".cold.localhost"  # resource ids are <short id>.cold.localhost
HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY = 1, 2, 3
AGENT_HELLO, AGENT_DISCONNECT, ACK = 101, 102, 103
FIN = 1
T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64, T_IPV4, T_IPV6, T_STR, T_BIN = range(10)


def varint(v):
    if v < 240:
        return bytes([v])
    out = bytearray([(v | 240) & 0xFF])
    v = (v - 240) >> 4
    while v >= 128:
        out.append((v | 128) & 0xFF)
        v = (v - 128) >> 7
    out.append(v)
    return bytes(out)


def string(s):
    data = s.encode() if isinstance(s, str) else s
    return varint(len(data)) + data


def typed_string(s):
    return bytes([T_STR]) + string(s)


def typed_ipv4(a):
    return bytes([T_IPV4]) + socket.inet_aton(a)


def typed_uint32(v):
    return bytes([T_UINT32]) + varint(v)


def read_typed(buf, off):
    """A typed value as the bench uses it: strings decoded, other types as the harness gives."""
    (kind, value), off = decode_typed(buf, off)
    return (value.decode() if kind == "str" else value), off


def frame(ftype, sid, fid, payload):
    body = bytes([ftype]) + FIN.to_bytes(4, "big") + varint(sid) + varint(fid) + payload
    return len(body).to_bytes(4, "big") + body


def hello_frame():
    kv = (string("supported-versions") + typed_string("2.0") + string("max-frame-size") +
          typed_uint32(16380) + string("capabilities") + typed_string("pipelining") +
          string("engine-id") + typed_string("coldstart-bench-0000"))
    return frame(HAPROXY_HELLO, 0, 0, kv)


def route_http_notify(sid, host):
    msg = (string("route-http") + bytes([3]) + string("host") + typed_string(host) +
           string("path") + typed_string("/") + string("src") + typed_ipv4("192.0.2.10"))
    return frame(NOTIFY, sid, 1, msg)


def parse_actions(payload):
    """ACK payload -> {name: value} of the set-var actions."""
    out, off = {}, 0
    while off < len(payload):
        atype, nargs = payload[off], payload[off + 1]
        off += 2
        scope = payload[off]
        off += 1
        n, off = decode_varint(payload, off)
        name = bytes(payload[off:off + n]).decode()
        off += n
        if atype == 1 and nargs == 3:
            value, off = read_typed(payload, off)
            out[name] = value
        elif atype != 2:
            raise ValueError(f"unknown action {atype} ({nargs} args, scope {scope})")
    return out


class SpopClient(asyncio.Protocol):
    """One SPOP connection: pipelined NOTIFYs, each answered by a future (recv_ns, actions)."""

    def __init__(self):
        self.buf = bytearray()
        self.hello = asyncio.get_running_loop().create_future()
        self.waiting = {}
        self.next_sid = 1
        self.transport = None
        self.errors = []

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(hello_frame())

    def data_received(self, data):
        now = time.monotonic_ns()
        self.buf += data
        while len(self.buf) >= 4:
            n = int.from_bytes(self.buf[:4], "big")
            if len(self.buf) < 4 + n:
                break
            body = bytes(self.buf[4:4 + n])
            del self.buf[:4 + n]
            ftype = body[0]
            off = 5
            sid, off = decode_varint(body, off)
            fid, off = decode_varint(body, off)
            payload = body[off:]
            if ftype == AGENT_HELLO:
                self.hello.set_result(True)
            elif ftype == ACK:
                fut = self.waiting.pop((sid, fid), None)
                if fut is None:
                    self.errors.append(f"ACK for no frame in flight sid={sid}")
                    continue
                try:
                    fut.set_result((now, parse_actions(payload)))
                except ValueError as e:
                    fut.set_exception(e)
            elif ftype == AGENT_DISCONNECT:
                self.errors.append(f"AGENT-DISCONNECT {payload!r}")
                self.fail_all("agent disconnected")
            else:
                self.errors.append(f"unexpected frame type {ftype}")

    def connection_lost(self, exc):
        self.fail_all(f"connection lost: {exc}")

    def fail_all(self, why):
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(why))
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError(why))
        self.waiting.clear()

    def queue(self, host, out):
        """Appends a NOTIFY for `host` to `out`; returns its future (written by the caller)."""
        sid = self.next_sid
        self.next_sid += 2
        fut = asyncio.get_running_loop().create_future()
        self.waiting[(sid, 1)] = fut
        out += route_http_notify(sid, host)
        return fut


# ---------------------------------------------------------------------------------------------
# fake platform (child process)


async def platform_main(args):
    ids = [l.strip() for l in open(args.ids) if l.strip()]
    delay = args.delay_ms / 1000
    loop = asyncio.get_running_loop()
    state = {}
    for rid in ids:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        state[rid] = {"sock": s, "port": s.getsockname()[1], "status": "asleep", "wakes": 0,
                      "wake_ns": [], "listen_ns": None, "accept_ns": None, "server": None}

    def on_accept(rid):
        def cb(reader, writer):
            st = state[rid]
            if st["accept_ns"] is None:
                st["accept_ns"] = time.monotonic_ns()
            writer.close()
        return cb

    async def start(rid):
        st = state[rid]
        st["server"] = await asyncio.start_server(on_accept(rid), sock=st["sock"], backlog=4096)
        st["listen_ns"] = time.monotonic_ns()
        st["status"] = "up"

    def listen_later(rid):
        loop.create_task(start(rid))

    async def http(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.monotonic_ns()
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                status, body = 404, b"not found\n"
                if method == "POST" and target.startswith("/wake/"):
                    rid = target[len("/wake/"):].removesuffix(SUFFIX)
                    st = state.get(rid)
                    if st is not None:
                        st["wakes"] += 1
                        st["wake_ns"].append(now)
                        if st["status"] == "asleep":
                            st["status"] = "starting"
                            loop.call_later(delay, listen_later, rid)
                            status, body = 202, b"starting\n"
                        elif st["status"] == "starting":
                            status, body = 409, b"already starting\n"
                        else:
                            status, body = 200, b"up\n"
                elif method == "GET" and target == "/stats":
                    status = 200
                    body = json.dumps({rid: {k: st[k] for k in
                                             ("port", "status", "wakes", "wake_ns", "listen_ns",
                                              "accept_ns")}
                                       for rid, st in state.items()}).encode()
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                             f"Content-Type: text/plain\r\n\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0, backlog=1024)
    print(json.dumps({"wake_port": server.sockets[0].getsockname()[1],
                      "ports": {rid: st["port"] for rid, st in state.items()}}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# ---------------------------------------------------------------------------------------------
# helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def metric(text, name, labels=None):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        base = key.split("{", 1)[0]
        if base != name:
            continue
        if labels and labels not in key:
            continue
        total += float(value)
    return total


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]


def fmt(v, digits=1):
    return "-" if v != v else f"{v:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.failures = []
        self.work = tempfile.mkdtemp(prefix="coldstart-bench-")
        self.procs = []
        self.log_offset = 0

    def fail(self, what):
        self.failures.append(what)
        print(f"run_coldstart_bench: FAIL: {what}", file=sys.stderr)

    def start_platform(self, ids):
        path = os.path.join(self.work, "ids.txt")
        with open(path, "w") as f:
            f.write("\n".join(ids) + "\n")
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--platform", path,
                              "--delay-ms", str(self.args.delay_ms)],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        info = json.loads(p.stdout.readline())
        self.wake_port = info["wake_port"]
        self.ports = info["ports"]

    def start_agent(self, ids):
        a = self.args
        cfg = os.path.join(self.work, "routing.yaml")
        with open(cfg, "w") as f:
            f.write(f"""resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 600000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
cold_start:
  waker: http
  http: {{url: "http://127.0.0.1:{self.wake_port}/wake/{{id}}", method: POST,
          ok_statuses: [200, 202, 409]}}
  timeout_ms: 10000
  processing_timeout_ms: 5000
  margin_ms: 300
  max_waiters_per_resource: 10000
  max_waiters: 100000
  probe: {{type: tcp}}
routes:
  http:
""")
            for rid in ids:
                f.write(f"    {rid}{SUFFIX}: {{endpoints: [127.0.0.1:{self.ports[rid]}], "
                        f"state: asleep}}\n")
        self.listen_port = free_port()
        self.admin_port = free_port()
        self.agent_log = os.path.join(self.work, "agent.log")
        log = open(self.agent_log, "w")
        p = subprocess.Popen([a.agent, "--config", cfg, "--listen",
                              f"127.0.0.1:{self.listen_port}", "--admin",
                              f"127.0.0.1:{self.admin_port}", "--threads", str(a.threads),
                              "--deadline", "4500", "--max-inflight", "4096",
                              "--log-level", "info"], stdout=log, stderr=log)
        self.procs.append(p)
        self.agent = p
        for _ in range(200):
            try:
                http_get(self.admin_port, "/healthz")
                socket.create_connection(("127.0.0.1", self.listen_port), timeout=1).close()
                return
            except OSError:
                if p.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("spoa-agent did not start: " + open(self.agent_log).read()[-2000:])

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def ready_lines(self):
        """New `ready after N ms` lines of the agent log: {resource id: ms}."""
        with open(self.agent_log) as f:
            f.seek(self.log_offset)
            text = f.read()
            self.log_offset = f.tell()
        out = {}
        for m in re.finditer(r"cold start of http:([^.]+)\.cold\.localhost: ready after (\d+) ms",
                             text):
            out[m.group(1)] = int(m.group(2))
        return out

    async def connect(self, n):
        loop = asyncio.get_running_loop()
        clients = []
        for _ in range(n):
            _, c = await loop.create_connection(SpopClient, "127.0.0.1", self.listen_port)
            await asyncio.wait_for(c.hello, 5)
            clients.append(c)
        return clients

    async def burst(self, clients, rids, per_resource):
        """Sends per_resource requests for each id at once, spread over the connections;
        returns {id: [(latency_ns, actions) ...]}."""
        batches = [bytearray() for _ in clients]
        futs = {rid: [] for rid in rids}
        k = 0
        for i in range(per_resource):
            for rid in rids:
                j = k % len(clients)
                futs[rid].append(clients[j].queue(rid + SUFFIX, batches[j]))
                k += 1
        sent = time.monotonic_ns()
        for c, b in zip(clients, batches):
            if b:
                c.transport.write(bytes(b))
        out = {}
        for rid, fl in futs.items():
            res = await asyncio.wait_for(asyncio.gather(*fl, return_exceptions=True), 30)
            out[rid] = [(r[0] - sent, r[1]) if not isinstance(r, BaseException) else (None, r)
                        for r in res]
        return out

    def check(self, phase, results):
        bad = 0
        for rid, rs in results.items():
            for lat, acts in rs:
                if lat is None:
                    bad += 1
                    if bad <= 3:
                        self.fail(f"{phase} {rid}: no answer: {acts}")
                    continue
                if "status" in acts:
                    bad += 1
                    if bad <= 3:
                        self.fail(f"{phase} {rid}: refused {acts.get('status')} "
                                  f"'{acts.get('reason')}'")
                    continue
                if (acts.get("resource") != rid + SUFFIX or "ip" not in acts or
                        acts.get("port") != self.ports[rid]):
                    bad += 1
                    if bad <= 3:
                        self.fail(f"{phase} {rid}: not the decision expected: {acts}")
        return bad

    async def phase(self, name, clients, rids, concurrent):
        a = self.args
        m0 = http_get(self.admin_port, "/metrics")
        st0 = json.loads(http_get(self.wake_port, "/stats"))
        results = {}
        if concurrent:
            results = await self.burst(clients, rids, a.concurrency)
        else:
            for rid in rids:
                results.update(await self.burst(clients, [rid], a.concurrency))
        await asyncio.sleep(0.1)  # let the agent log and count
        m1 = http_get(self.admin_port, "/metrics")
        st1 = json.loads(http_get(self.wake_port, "/stats"))
        ready = self.ready_lines()
        bad = self.check(name, results)

        wakes = sum(st1[r]["wakes"] - st0[r]["wakes"] for r in rids)
        starts = metric(m1, "spoa_cold_starts_total", 'outcome="ready"') - \
            metric(m0, "spoa_cold_starts_total", 'outcome="ready"')
        agent_wakes = metric(m1, "spoa_cold_start_wakes_total") - \
            metric(m0, "spoa_cold_start_wakes_total")
        hs = metric(m1, "spoa_cold_start_seconds_sum") - metric(m0, "spoa_cold_start_seconds_sum")
        hc = metric(m1, "spoa_cold_start_seconds_count") - \
            metric(m0, "spoa_cold_start_seconds_count")
        per_resource_wakes = [st1[r]["wakes"] - st0[r]["wakes"] for r in rids]
        if starts != len(rids):
            self.fail(f"{name}: {starts:.0f} cold starts for {len(rids)} resources")
        if any(w != 1 for w in per_resource_wakes):
            self.fail(f"{name}: wake calls per resource {sorted(set(per_resource_wakes))}, "
                      f"expected 1 each")
        if len(ready) != len(rids):
            self.fail(f"{name}: {len(ready)} 'ready after' log lines for {len(rids)} resources")

        d = a.delay_ms
        agent_ms = [ready[r] for r in rids if r in ready]
        applied = [(st1[r]["listen_ns"] - st1[r]["wake_ns"][0]) / 1e6 for r in rids
                   if st1[r]["listen_ns"] and st1[r]["wake_ns"]]
        detect = [(st1[r]["accept_ns"] - st1[r]["listen_ns"]) / 1e6 for r in rids
                  if st1[r]["accept_ns"] and st1[r]["listen_ns"]]
        first = [min(l for l, _ in results[r] if l is not None) / 1e6 - d for r in rids
                 if any(l is not None for l, _ in results[r])]
        every = [l / 1e6 for r in rids for l, _ in results[r] if l is not None]
        kinds = {}
        for r in rids:
            for lat, acts in results[r]:
                if lat is not None and isinstance(acts, dict):
                    kinds[acts.get("kind", "-")] = kinds.get(acts.get("kind", "-"), 0) + 1
        total = len(rids) * a.concurrency
        print(f"\n{name}: {len(rids)} cold starts, {a.concurrency} requests each "
              f"({total} requests{', all at once' if concurrent else ', one resource at a time'})")
        print(f"  wakes per cold start: platform {wakes}/{starts:.0f} = "
              f"{wakes / starts if starts else float('nan'):.2f}; agent wake calls "
              f"{agent_wakes:.0f}/{starts:.0f}; answers by kind {kinds}; bad answers {bad}")
        print(f"  {'ms':<46} {'p50':>7} {'p99':>7} {'max':>7} {'mean':>7}")

        def row(label, vals):
            print(f"  {label:<46} {fmt(pct(vals, .5)):>7} {fmt(pct(vals, .99)):>7} "
                  f"{fmt(max(vals) if vals else float('nan')):>7} "
                  f"{fmt(statistics.mean(vals) if vals else float('nan')):>7}")

        row("agent: wake to ready (log 'ready after')", agent_ms)
        row(f"agent: wake to ready - {d} ms delay", [v - d for v in agent_ms])
        print(f"  {'agent: spoa_cold_start_seconds mean':<46} {'':>7} {'':>7} {'':>7} "
              f"{fmt(1000 * hs / hc if hc else float('nan')):>7}")
        row("platform: wake received to listen()", applied)
        row("platform: listen() to probe accepted", detect)
        row(f"client: first ACK of a resource - {d} ms", first)
        row("client: every request, send to ACK", every)
        return bad

    async def run(self):
        a = self.args
        n = a.resources
        seq_ids = [f"s{i}" for i in range(n)]
        herd_ids = [f"h{i}" for i in range(n)]
        self.start_platform(seq_ids + herd_ids)
        self.start_agent(seq_ids + herd_ids)
        load0 = open("/proc/loadavg").read().split()[:3]
        print(f"spoa cold-start benchmark: {os.cpu_count()} cores, spoa-agent --threads "
              f"{a.threads}; backends listen {a.delay_ms} ms after their wake (fake platform, "
              f"HTTP waker, TCP probe); SPOP driven directly by this script (asyncio client, "
              f"no HAProxy)")
        print(f"load average before: {' '.join(load0)}")
        # Per-connection in flight stays <= 200: the herd needs resources x concurrency / 200.
        conns = max(16, -(-n * a.concurrency // 200))
        clients = await self.connect(conns)
        print(f"{conns} SPOP connections")
        await self.phase("sequential", clients, seq_ids, False)
        if not a.no_herd:
            await self.phase("herd", clients, herd_ids, True)
        for c in clients:
            if c.errors:
                self.fail(f"client errors: {c.errors[:3]}")
            c.transport.close()
        print(f"\nload average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--resources", type=int)
    ap.add_argument("--delay-ms", type=int, default=50)
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-herd", action="store_true")
    ap.add_argument("--platform", help=argparse.SUPPRESS)  # child process: the fake platform
    args = ap.parse_args()
    if args.platform:
        args.ids = args.platform
        asyncio.run(platform_main(args))
        return 0
    if not args.build and not os.environ.get("SPOA_AGENT"):
        ap.error("BUILD_DIR is required (or set SPOA_AGENT)")
    args.agent = os.environ.get("SPOA_AGENT") or os.path.join(args.build, "handlers/app/spoa-agent")
    if not os.access(args.agent, os.X_OK):
        print(f"run_coldstart_bench: {args.agent} not found (build first)", file=sys.stderr)
        return 2
    if args.resources is None:
        args.resources = 5 if args.quick else 100
    if args.concurrency is None:
        args.concurrency = 20 if args.quick else 200
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    bench = Bench(args)
    try:
        asyncio.run(bench.run())
    finally:
        bench.stop()
    if bench.failures:
        print(f"run_coldstart_bench: FAILED ({len(bench.failures)} problem(s))")
        return 1
    print("run_coldstart_bench: every request answered with a routing decision, one wake per "
          "cold start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
