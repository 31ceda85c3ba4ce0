#!/usr/bin/python3
"""Stress test of the routing agent: spoa-agent --config under sustained, mixed load while its
routes, cache and resolvers are churned from every side at once. It checks the answers, not only
that the agent survived.

    stress_routing.py --agent build/handlers/app/spoa-agent --loadgen build/tests/bench/spoa_loadgen
                      --tmpdir DIR [--threads 2] [--duration 60]

$SPOA_STRESS_SECONDS overrides --duration (a developer's 10-minute run: SPOA_STRESS_SECONDS=600).

What runs, all at the same time, for the whole duration:
  * spoa_loadgen (a fake HAProxy) sends route-http NOTIFYs from stress_hosts.txt, by class:
      hot      exact static routes with a 50 ms TTL (two of them: 1 ms), which expire and
               re-resolve all the time; half of them change endpoints on every reload
      wild     "*.wild.test": every request a host never seen before (cache fills, FIFO evicts)
      flip     static routes present in one route set only: on the other they fall through the
               chain to the control plane, which does not know them (404)
      ssrf     static routes to addresses outside the SSRF allowlist (403)
      unknown  hosts nobody knows: the control plane says not_found (404, negative cache)
      remote   hosts only the control plane knows (its answers are delayed; r0's endpoints are
               changed on the control plane now and then, which pushes an invalidation)
      cold     static routes to sleeping backends (state: asleep): the agent probes, wakes them
               through the fake platform (tests/e2e_coldstart/fake_platform.py) and waits
  * POST /invalidate?id=... on the admin endpoint every 100 ms (hosts of every class in turn),
    GET /metrics every second;
  * a reload every second: the routing file is rewritten (temp file + rename) with the other of
    two route sets, then SIGHUP;
  * the control plane (handlers/control_plane/spoa_control_plane.py, --delay-ms 2) is reached
    through a relay in this script that resets every connection every 2.5 s;
  * a woken cold backend is killed every 2 s (the next expiry finds it asleep again).

Asserts (any failure prints the agent's log):
  * the agent never dies (checked every 20 ms) and answers every admin request within 15 s;
  * spoa_loadgen: every connection established, every ACK well formed (a decision whose
    txn.resource is the host sent, or a refusal), errors=0, unanswered=0;
  * every answer is allowed for its host (allowed_answers() and the comment above it): a
    decision's ip:port is one the route table held for that host at some point of the run (the
    union of both route sets and both control plane versions), a refusal's status is the one
    its class documents;
  * every class got at least one answer of the kind that defines it (a 404 for unknown, a 403
    for ssrf, an endpoint for the others): the run really exercised each path;
  * no reload failed;
  * the agent is alive at the end and exits 0 on SIGTERM (within 30 s);
  * no sanitizer report in its output ("ERROR: AddressSanitizer", "WARNING: ThreadSanitizer",
    "runtime error:", LeakSanitizer); the options make any report fatal anyway;
  * RSS (VmRSS, sampled every second) does not keep growing: see check_rss().

Nothing asserted depends on timing except the stated generous bounds (RSS, 30 s to exit).
Standard library + python3-msgpack (for the control plane). Built on tests/e2e/harness.py,
tests/e2e_routing/routing_env.py and tests/e2e_coldstart/coldstart_env.py (imported).
Exit status: 0 pass, 1 fail, 77 skip.
"""

import argparse
import atexit
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for sub in ("e2e", "e2e_routing", "e2e_coldstart"):
    sys.path.insert(0, os.path.join(REPO, "tests", sub))

import coldstart_env  # noqa: E402
import harness  # noqa: E402
import routing_env  # noqa: E402
from harness import Skip, TestFailure, check, check_eq, log  # noqa: E402

HOST_FILE = os.path.join(HERE, "stress_hosts.txt")
# spoa_loadgen: 16 connections x 32 frames in flight, as the load that crashed the agent
# (tests/bench/run_ttl_churn.sh): enough requests at once to pile up on every expiring key.
CONNECTIONS, INFLIGHT = 16, 32

# Sanitizer options: any report is fatal (and non-zero), so a report cannot go unnoticed even if
# the log check below missed it. ASan's quarantine is capped so that RSS levels off within the
# warm-up (its default 256 MB would still be filling at the end of a 60 s run).
SANITIZER_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=1:detect_leaks=1:quarantine_size_mb=64",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1:history_size=2",
}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "WARNING: ThreadSanitizer", "runtime error:",
                     "ERROR: LeakSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

# ---------------------------------------------------------------------------------------------
# The route table. Endpoints are IP literals nobody connects to (the agent only decides; there
# is no HAProxy here), except the cold backends, which the agent probes.

HOT = [f"hot{i}.stress.test" for i in range(8)]
HOT_MOVING = HOT[:4]  # these change endpoints between the two route sets
# TTL per static route, ms. Two of the fixed hot hosts expire after 1 ms: nearly every request
# for them finds the entry expired, so a resolve is in flight for them almost all the time and
# requests keep joining flights that are completing on the service loop (the window of the
# waiter ownership bugs); 50 ms for the rest, which are mostly hits.
TTL_MS = {h: 1 for h in HOT[6:]}
FLIP = [f"flip{i}.stress.test" for i in range(4)]
SSRF = {"evil0.stress.test": "192.0.2.10:80",        # TEST-NET-1: outside the allowlist
        "evil1.stress.test": "169.254.169.254:80",   # cloud metadata: refused in every mode
        "evil2.stress.test": "10.1.2.3:8080"}        # RFC 1918 but not allowed here
COLD = [f"cold{i}.stress.test" for i in range(4)]
REMOTE_MOVING = "r0.remote.test"


def route_sets():
    """The two static route sets the reloads alternate between: {host: [endpoint]}."""
    a, b = {}, {}
    for i, h in enumerate(HOT):
        a[h] = [f"127.0.1.1:{10000 + i}"]
        b[h] = [f"127.0.2.1:{10000 + i}", f"127.0.2.2:{10000 + i}"] if h in HOT_MOVING \
            else a[h]
    a["*.wild.test"], b["*.wild.test"] = ["127.0.3.1:9000"], ["127.0.3.2:9000"]
    for i, h in enumerate(FLIP):
        a[h] = [f"127.0.4.1:{9000 + i}"]  # absent from set b
    for h, ep in SSRF.items():
        a[h] = b[h] = [ep]
    return a, b


REMOTE_ROUTES = {"*.remote.test": ["127.0.5.1:7000"]}
REMOTE_MOVING_SETS = (["127.0.5.2:7000"], ["127.0.5.3:7000", "127.0.5.4:7000"])

# Refusals each class may get, and why the design allows them:
#  * 404: the chain's last word for an id neither resolver knows (unknown; flip while its route
#    set is not loaded).
#  * 403: an endpoint outside the SSRF allowlist (ssrf only).
#  * 503/504 where the control plane decides (unknown, remote, flip in the other set): the relay
#    resets the agent's connection every 2.5 s and the design fails closed with 503 "control
#    plane unreachable" for calls in flight and while reconnecting; a call not answered within
#    the remote timeout (2 s; the control plane answers in ~2 ms, so only a starved machine, e.g.
#    under TSan, gets there) is a 504.
#  * 503/504 for cold: a cold start waits at most min(cold_start.timeout_ms, processing - margin)
#    and then answers 504; a failed wake or a full waiter list answers 503 at once.
#  * Static routes (hot, wild, ssrf, flip while loaded) never involve the control plane: the
#    static resolver answers first and the chain only falls through on not_found, so a 503 or
#    504 there is a bug: a 504 would mean the service loop did not finish an in-memory lookup
#    within resolver.timeout_ms (5 s), i.e. it hung.
REMOTE_FAILURES = {"status:503", "status:504"}
COLD_FAILURES = {"status:503", "status:504"}

# What defines each class: at least one answer of this kind must be seen ("endpoint": any ip:port).
DEFINING = {"hot": "endpoint", "wild": "endpoint", "flip": "endpoint", "ssrf": "status:403",
            "unknown": "status:404", "remote": "endpoint", "cold": "endpoint"}


def allowed_answers(cls, host, sets, cold_ports):
    """The set of answers allowed for one host entry of the host file."""
    a, b = sets
    if cls == "hot":
        return set(a[host]) | set(b[host])
    if cls == "wild":
        return set(a["*.wild.test"]) | set(b["*.wild.test"])
    if cls == "flip":
        return set(a[host]) | {"status:404"} | REMOTE_FAILURES
    if cls == "ssrf":
        return {"status:403"}
    if cls == "unknown":
        return {"status:404"} | REMOTE_FAILURES
    if cls == "remote":
        eps = set(REMOTE_ROUTES["*.remote.test"])
        if host == REMOTE_MOVING:
            eps = set(REMOTE_MOVING_SETS[0]) | set(REMOTE_MOVING_SETS[1])
        return eps | REMOTE_FAILURES
    if cls == "cold":
        return {f"127.0.0.1:{cold_ports[host]}"} | COLD_FAILURES
    raise TestFailure(f"host file: unknown class {cls!r} ({host})")


def routing_yaml(routes, cold_ports, platform, cp_address):
    """The agent's configuration with one static route set; only `routes` changes on reload (the
    other sections are read at start)."""
    cold_start = {"waker": "http",
                  "http": {"url": platform.wake_url, "method": "POST",
                           "ok_statuses": [200, 202, 409]},
                  "timeout_ms": 4000, "processing_timeout_ms": 5000, "margin_ms": 300,
                  "failure_ttl_ms": 200, "probe": {"type": "tcp"}}
    lines = [
        "resolver:",
        "  type: chain",
        "  timeout_ms: 5000",
        f"  remote: {{address: {cp_address}, timeout_ms: 2000, reconnect_min_ms: 20, "
        "reconnect_max_ms: 200}",
        # 50 ms TTL: hot routes expire under load; a small cache: the wildcard's endless new
        # hosts evict all the time.
        "cache: {ttl_ms: 50, negative_ttl_ms: 100, max_entries: 256}",
        "ssrf: {mode: allowlist, allow: [127.0.0.0/8]}",
        "cold_start: " + json.dumps(cold_start),
        # Small, so that it is full within the warm-up and RSS must be flat after it.
        "activity: {max_entries: 1000}",
        "routes:",
        "  http:",
    ]
    for host, eps in routes.items():
        route = {"endpoints": eps, "ttl_ms": TTL_MS.get(host, 50)}
        lines.append(f"    {json.dumps(host)}: {json.dumps(route)}")
    for host in COLD:
        route = {"endpoints": [f"127.0.0.1:{cold_ports[host]}"], "state": "asleep", "ttl_ms": 50}
        lines.append(f"    {json.dumps(host)}: {json.dumps(route)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The environment: harness.Env without HAProxy (this test talks SPOP itself)

class StressEnv(harness.Env):
    """harness.Env's ports, paths, process cleanup and log dumps, without the HAProxy it
    requires (and skips without)."""

    def __init__(self, agent_bin, tmpdir, name):  # noqa: super().__init__ looks for haproxy
        self.agent_bin = agent_bin
        self.name = name
        os.makedirs(tmpdir, exist_ok=True)
        self.tmpdir = tempfile.mkdtemp(prefix="run-", dir=tmpdir)
        self.haproxy_bin = None
        self.version = (0, 0, 0)
        self.ports = harness.PortAllocator()
        self.processes = []
        self.haproxy = None
        self.taps = []
        self._agent_count = 0
        self._short_dir = None
        self._cleaned = False
        self._dropped_logs = None


class Rig(routing_env.Stack):
    """routing_env.Stack's agent start (--check first, ready on /healthz), file writing and
    process spawning, which the control plane and the fake platform helpers build on; no
    HAProxy."""

    def __init__(self, env):  # noqa: Stack.__init__ picks a shipped HAProxy configuration
        self.env = env
        self.agent = None
        self.agent_port = env.port()
        self.admin_port = env.port()
        self.cfg_dir = None
        self._agent_runs = 0
        self.http_port = self.pg_port = self.tls_port = None
        self.smtp_ports = self.mysql_ports = ()


# ---------------------------------------------------------------------------------------------
# A relay to the control plane that resets its connections on demand

class ResettingRelay:
    """127.0.0.1:port -> the control plane. drop() resets (RST) every connection it relays: the
    agent sees its control plane connection fail mid-call and must reconnect."""

    def __init__(self, port, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.lock = threading.Lock()
        self.pairs = []
        self.drops = 0
        self.accepted = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.port = port
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            with self.lock:
                self.pairs.append((down, up))
                self.accepted += 1
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
            if pairs:
                self.drops += 1
        for pair in pairs:
            for s in pair:
                try:
                    # SO_LINGER 0: the connection is reset, the abrupt failure a crashed or
                    # partitioned control plane looks like. shutdown() wakes the pump threads
                    # blocked in recv() (close() alone would not).
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.closed = True
        self.listener.close()
        self.drop()


# ---------------------------------------------------------------------------------------------
# Helpers

def sanitized(binary):
    """'asan', 'tsan' or None: which runtime the binary carries (its symbols name it)."""
    with open(binary, "rb") as f:
        data = f.read()
    if b"__tsan_init" in data:
        return "tsan"
    if b"__asan_init" in data:
        return "asan"
    return None


def vm_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def sanitizer_reports(text):
    return [l for l in text.splitlines() if any(m in l for m in SANITIZER_MARKERS)]


def report_excerpt(agent):
    """The start of a sanitizer report (or the last lines) of a dead agent, for the failure
    message: the log dump that follows is long."""
    lines = agent.log_text().splitlines()
    first = next((i for i, l in enumerate(lines) if any(m in l for m in SANITIZER_MARKERS)), None)
    excerpt = lines[first:first + 40] if first is not None else lines[-15:]
    return ":\n    " + "\n    ".join(excerpt)


def read_hosts(path):
    """[(class, host entry)] of the host file, in order."""
    out = []
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) == 3 and w[0] == "host":
                out.append((w[1], w[2]))
    return out


def check_answers(counts_path, res, allowed, defining, who=""):
    """Every answer spoa_loadgen counted (counts_path) against the allowed set {(class, host):
    answers}; each class must have had its defining kind of answer at least once. `who` names
    the agent in messages. Returns the answers counted."""
    wrong, seen = [], collections.defaultdict(collections.Counter)
    total = 0
    with open(counts_path) as f:
        for line in f:
            cls, host, answer, n = line.split()
            n = int(n)
            total += n
            seen[cls]["endpoint" if not answer.startswith("status:") else answer] += n
            if answer not in allowed.get((cls, host), ()):
                wrong.append(f"{cls} {host} -> {answer} x{n} (allowed: "
                             f"{sorted(allowed.get((cls, host), ()))})")
    log(f"{who}{total} answers checked: " + "; ".join(
        f"{c}: " + ", ".join(f"{k} {v}" for k, v in sorted(seen[c].items())) for c in sorted(seen)))
    check_eq(total, int(res["acks_total"]), f"{who}answers in the counts file vs ACKs")
    check(not wrong, f"{who}{len(wrong)} wrong answers:\n  " + "\n  ".join(wrong[:30]))
    for cls, what in defining.items():
        check(seen[cls][what] > 0, f"{who}class {cls}: no answer of kind {what} in the whole run "
                                   f"(got {dict(seen[cls])}): that path was not exercised")
    return total


def check_rss(samples, warmup_s, kind):
    """samples: [(seconds since the load started, VmRSS kB)], one per second during the load.
    The agent's memory must level off once its bounded tables are full: the lowest of the last 5
    samples (the lowest, so that one burst of allocation at the very end is not a failure;
    steady growth raises the minimum too) must not exceed the highest of the 5 samples right
    after the warm-up by more than 10% + 24 MiB (sanitized builds: 25% + 64 MiB, their
    allocators, quarantine and shadow memory settle later). The warm-up (a third of the run, at
    least 20 s) is far more than the route cache (max_entries 256) and the activity table
    (max_entries 1000) need to fill: thousands of new wildcard hosts a second. Memory kept per
    host without a bound (~150 bytes per host: 0.2-1 MiB/s at the rates this machine reaches,
    so a 60 s run catches the faster end and a 10-minute run all of it) or a leak per request
    fails it."""
    after = [kb for t, kb in samples if t >= warmup_s]
    series = " ".join(f"{t:.0f}s:{kb // 1024}" for t, kb in samples[::5])
    log(f"RSS MiB every 5 s: {series}")
    if len(after) < 10:
        log(f"RSS: only {len(after)} samples after the {warmup_s:.0f} s warm-up: not checked")
        return
    base = max(after[:5])
    last = min(after[-5:])
    ratio, slack_mb = (1.25, 64) if kind else (1.10, 24)
    bound = base * ratio + slack_mb * 1024
    log(f"RSS: {base / 1024:.0f} MiB after the {warmup_s:.0f} s warm-up (max of 5), "
        f"{last / 1024:.0f} MiB at the end (min of the last 5), peak "
        f"{max(kb for _, kb in samples) / 1024:.0f} MiB; bound {bound / 1024:.0f} MiB")
    check(last <= bound, f"RSS grew from {base} kB after the warm-up to {last} kB at the end "
                         f"(bound {bound:.0f} kB): memory that is never given back")


def parse_result(text):
    """The loadgen's result lines as {key: value} (both lines merged)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("spoa_loadgen: ") and "=" in line:
            for m in re.finditer(r"(\w+)=(\S+)", line):
                out[m.group(1)] = m.group(2)
    return out


# ---------------------------------------------------------------------------------------------
# The test

def run(env, args):
    kind = sanitized(args.agent)
    for k, v in SANITIZER_ENV.items():
        # The caller's options (e.g. suppressions) are kept; ours come last and win.
        os.environ[k] = ":".join(x for x in (os.environ.get(k), v) if x)
    rig = Rig(env)
    sets = route_sets()
    log(f"stress: spoa-agent --threads {args.threads}, {args.duration:.0f} s of load, "
        f"sanitizer {kind or 'none'}")

    # Cold backends: the fake platform starts them on a wake (listening 150 ms later).
    cold_ports = {h: env.port() for h in COLD}
    platform = coldstart_env.Platform(rig, {h: {"port": p, "delay_ms": 150}
                                            for h, p in cold_ports.items()})
    # The control plane, 2 ms late on every answer, behind the resetting relay.
    remote_routes = {h: {"endpoints": eps} for h, eps in REMOTE_ROUTES.items()}
    remote_routes[REMOTE_MOVING] = {"endpoints": REMOTE_MOVING_SETS[0]}
    cp = routing_env.ControlPlane(rig, {"http": remote_routes}, delay_ms=2)
    relay = ResettingRelay(env.port(), cp.port)
    atexit.register(relay.close)
    cp_address = f"127.0.0.1:{relay.port}"

    agent = rig.start_agent(routing_yaml(sets[0], cold_ports, platform, cp_address),
                            threads=args.threads, deadline=8000,
                            extra=("--drain-timeout", "20000"))
    cfg_path = env.path("routing-1.yaml")  # Stack.start_agent's file: the one SIGHUP re-reads

    def died(when):
        return TestFailure(f"spoa-agent died {when} (exit {agent.popen.returncode})"
                           f"{report_excerpt(agent)}")

    def dead_agent_first(fn, when):
        """fn(); if it fails and the agent is dead (a request failing is most often the agent
        dying; a sanitizer report takes seconds to write), report the death and its report."""
        try:
            fn()
        except (OSError, TestFailure) as e:
            if agent.wait(15) is not None:
                raise died(when()) from e
            raise

    dead_agent_first(lambda: coldstart_env.wait_for(
        lambda: agent.metric("spoa_control_plane_connected", f'address="{cp_address}"') == 1,
        10, "agent connected to the control plane"), lambda: "at start")

    # -- the load ---------------------------------------------------------------------------
    counts_path = env.path("counts.txt")
    lg = rig.spawn("loadgen", [
        args.loadgen, "--target", rig.agent_addr, "--connections", str(CONNECTIONS),
        "--inflight", str(INFLIGHT),
        "--threads", "1", "--warmup", "0", "--duration", str(args.duration),
        # Frames still in flight at the end: a cold start waits at most 4.7 s, a remote call
        # 2 s; 30 s is far beyond both, so what is still unanswered then was lost.
        "--drain", "30", "--host-file", HOST_FILE, "--counts-out", counts_path,
        "--refusals-ok"])

    invalidate_hosts = HOT + ["fixed0.wild.test"] + FLIP + COLD + [REMOTE_MOVING,
                                                                    "nobody0.nowhere.test"]
    t0 = time.monotonic()
    next_at = collections.defaultdict(lambda: t0)
    rss = []
    counters = collections.Counter()
    which_set = 0
    remote_version = 0
    cold_victim = 0

    def due(name, period):
        if time.monotonic() >= next_at[name]:
            next_at[name] += period
            return True
        return False

    def tick(now):
        nonlocal which_set, remote_version, cold_victim
        if due("rss", 1.0):
            kb = vm_rss_kb(agent.pid)
            if kb is not None:
                rss.append((now - t0, kb))
        if due("metrics", 1.0):
            agent.metrics()  # a Prometheus scrape: reads every loop thread's counters
        if due("invalidate", 0.1):
            host = invalidate_hosts[counters["invalidate"] % len(invalidate_hosts)]
            st, _, body = harness.http_request("127.0.0.1", rig.admin_port, "POST",
                                               f"/invalidate?id={host}&protocol=http",
                                               timeout=15)
            check_eq(st, 200, f"POST /invalidate?id={host} ({body!r})")
            counters["invalidate"] += 1
        if due("reload", 1.0) and now > t0 + 0.5:
            which_set ^= 1
            tmp = cfg_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(routing_yaml(sets[which_set], cold_ports, platform, cp_address))
            os.rename(tmp, cfg_path)  # atomic: the agent reads either file, never half of one
            agent.signal(signal.SIGHUP)
            counters["reload"] += 1
        if due("drop", 2.5) and now > t0 + 1.0:
            relay.drop()
        if due("cold-kill", 2.0) and now > t0 + 1.0:
            platform.kill(COLD[cold_victim % len(COLD)])
            cold_victim += 1
            counters["cold-kill"] += 1
        if due("remote-set", 3.0) and now > t0 + 1.0:
            remote_version ^= 1
            cp.admin(f"set http {REMOTE_MOVING} " +
                     json.dumps({"endpoints": REMOTE_MOVING_SETS[remote_version]}))
            counters["remote-set"] += 1

    while lg.alive():
        now = time.monotonic()
        if not agent.alive():
            raise died(f"under load after {now - t0:.1f} s")
        dead_agent_first(lambda: tick(now), lambda: f"under load after {now - t0:.1f} s")
        time.sleep(0.02)
    load_s = time.monotonic() - t0
    relay_drops = relay.drops

    # -- the load generator's verdict ----------------------------------------------------------
    lg_rc = lg.popen.returncode
    out = lg.log_text()
    res = parse_result(out)
    log("loadgen: " + " ".join(l for l in out.splitlines() if l.startswith("spoa_loadgen: ")))
    log(f"chaos: {counters['invalidate']} invalidations, {counters['reload']} reloads, "
        f"{relay_drops} control plane resets, {counters['cold-kill']} cold backends killed, "
        f"{counters['remote-set']} control plane route changes in {load_s:.1f} s")
    # A failed load generator may have seen the agent die before this loop did.
    if not agent.alive() or (lg_rc != 0 and agent.wait(15) is not None):
        raise died("at the end of the load")
    check("errors" in res, f"spoa_loadgen printed no result (exit {lg_rc}):\n{out[-3000:]}")
    check_eq(res.get("unanswered"), "0", "frames never answered (spoa_loadgen unanswered=)")
    check_eq(res.get("errors"), "0", "invalid answers or connection errors (spoa_loadgen "
                                     "errors=; its stderr says which)")
    check_eq(res.get("established"), str(CONNECTIONS), "connections established")
    check_eq(res.get("acks_total"), res.get("sent_total"), "ACKs received vs NOTIFYs sent")
    check_eq(lg_rc, 0, "spoa_loadgen exit status")

    # -- every answer against the route table ----------------------------------------------------
    hosts = read_hosts(HOST_FILE)
    allowed = {(c, h): allowed_answers(c, h, sets, cold_ports) for c, h in hosts}
    check_answers(counts_path, res, allowed, DEFINING)

    # -- the agent's own view ----------------------------------------------------------------------
    m = agent.metrics()
    log("agent: " + coldstart_env.metrics_line(m, {
        "spoa_route_cache_hits_total", "spoa_route_cache_misses_total",
        "spoa_route_cache_coalesced_total", "spoa_route_cache_evictions_total",
        "spoa_route_cache_expirations_total", "spoa_route_cache_invalidations_total",
        "spoa_cold_start_wakes_total", "spoa_cold_starts_total",
        "spoa_control_plane_reconnects_total", "spoa_route_ssrf_refusals_total"}))
    text = agent.log_text()
    failed_reloads = [l for l in text.splitlines() if "reload of" in l and "failed" in l]
    check(not failed_reloads, f"reloads failed: {failed_reloads[:3]}")
    reloads = len(re.findall(r"reloaded ", text))
    log(f"agent logged {reloads} reloads of {counters['reload']} SIGHUPs (signals sent close "
        f"together may be handled once)")
    check(counters["reload"] == 0 or reloads > 0, "no reload was ever applied")
    check(not sanitizer_reports(text), "sanitizer report during the load:\n" +
          "\n".join(sanitizer_reports(text)[:20]))
    check_rss(rss, max(20.0, args.duration / 3), kind)

    # -- clean exit on SIGTERM -----------------------------------------------------------------
    agent.signal(signal.SIGTERM)
    rc = agent.wait(30)
    check(rc is not None, "spoa-agent still running 30 s after SIGTERM")
    text = agent.log_text()
    check(not sanitizer_reports(text), "sanitizer report at exit:\n" +
          "\n".join(sanitizer_reports(text)[:20]))
    check_eq(rc, 0, "spoa-agent exit status after SIGTERM")


def parse_args(threads_help="spoa-agent --threads"):
    """The command line every stress script takes."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True, help="path to spoa-agent")
    ap.add_argument("--loadgen", required=True, help="path to spoa_loadgen")
    ap.add_argument("--tmpdir", required=True, help="scratch directory (a run-* per run, "
                                                    "removed when the test passes)")
    ap.add_argument("--threads", type=int, default=2, help=threads_help)
    ap.add_argument("--duration", type=float, default=60.0,
                    help="seconds of load ($SPOA_STRESS_SECONDS overrides)")
    args = ap.parse_args()
    if os.environ.get("SPOA_STRESS_SECONDS"):
        args.duration = float(os.environ["SPOA_STRESS_SECONDS"])
    return args


def drive(name, run_fn, args):
    """Runs `run_fn(env, args)` in a StressEnv and exits with its result: harness.main's shape
    (which insists on HAProxy): cleanup on any exit, logs kept and printed on failure."""
    for path in (args.agent, args.loadgen):
        if not os.access(path, os.X_OK):
            log(f"{name}: FAIL: not an executable: {path}")
            sys.exit(1)
    args.agent, args.loadgen = os.path.abspath(args.agent), os.path.abspath(args.loadgen)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    signal.signal(signal.SIGINT, lambda s, f: sys.exit(128 + s))
    env = StressEnv(args.agent, os.path.abspath(args.tmpdir), name)
    atexit.register(env.cleanup)
    start = time.monotonic()
    rc = 1
    try:
        run_fn(env, args)
        rc = 0
        log(f"{name}: PASS ({time.monotonic() - start:.1f}s)")
    except Skip as e:
        rc = harness.SKIP
        log(f"{name}: SKIP: {e}")
    except BaseException as e:  # noqa: BLE001 - report anything, then dump logs
        if isinstance(e, TestFailure):
            log(f"{name}: FAIL: {e}")
        else:
            log(f"{name}: ERROR: {type(e).__name__}: {e}")
            traceback.print_exc()
    env.cleanup()
    if rc == 1:
        env.dump_logs(tail_lines=80)
        print(f"\nfiles of this run kept in {env.tmpdir}")
    else:
        shutil.rmtree(env.tmpdir, ignore_errors=True)
    sys.exit(rc)


def main():
    args = parse_args()
    drive(f"stress_routing_threads{args.threads}", run, args)

if __name__ == "__main__":
    main()
