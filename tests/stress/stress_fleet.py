#!/usr/bin/python3
"""Stress test of a fleet (README "Running several agents"): two spoa-agent processes sharing one
private redis-server, each under its own sustained mixed load, while routes, caches, Redis values
and Redis itself are churned. It checks every answer, not only that the agents survived.

    stress_fleet.py --agent build/handlers/app/spoa-agent --loadgen build/tests/bench/spoa_loadgen
                    --tmpdir DIR [--threads 2] [--duration 60]

$SPOA_STRESS_SECONDS overrides --duration. Built on stress_routing.py (imported: its route sets,
allowed answers, resetting relay, RSS check and helpers), tests/e2e_routing/routing_env.py and
tests/e2e_coldstart/coldstart_env.py.

The fleet: agents "a" and "b", the same routing file except for `redis.agent_id` and
`redis.coordinate_resolves` (true on a, false on b), both with `resolver.chain: [static, redis,
remote]`, the shared cache tier, wake_lease_ms 1000, activity_interval_ms 100, command_timeout_ms
200 and ping_interval_ms 200. Both chains are the same on purpose: the shared cache tier hands one
agent's answer to the other, so a fleet whose agents resolve differently would serve either
agent's answer on both (that is a configuration mistake, not something to stress).

What runs, all at the same time, for the whole duration:
  * one spoa_loadgen per agent (8 connections x 16 frames in flight), with a host file written
    into the run's directory: stress_hosts.txt's classes (hot routes with 50 ms and 1 ms TTLs,
    wildcard hosts never seen before, flip, ssrf, unknown, control-plane-only hosts, cold routes
    to sleeping backends woken through the fake platform) plus the class
      redis    hosts only Redis knows (<prefix>routes:http:<host>, ttl_ms 100): the script
               changes their value (SET, then PUBLISH "1 - http <host>" on <prefix>invalidate)
               every 0.5 s, one host in turn, between two endpoint sets;
  * POST /invalidate?id=... every 100 ms, on a and b in turn (the fan-out carries it to the
    other), GET /metrics on both every second;
  * a platform's own PUBLISH on <prefix>invalidate every 2 s ("1 - http <hot host>" or
    "1 - * <host>");
  * a SIGHUP reload every second, a and b in turn, each switching to the other static route set;
  * the control plane behind stress_routing's relay that resets every connection every 2.5 s,
    and a woken cold backend killed every 2 s;
  * Redis SIGKILLed at 15%, 40% and 65% of the run and restarted on the same port 1.5 s later
    (with its append-only file, so that the values a platform stored survive, as in a real
    deployment; the shared tier's entries and leases survive too, with their expiry), and
    SIGSTOPped for 1 s at 85% (a paused server keeps its sockets open: only the agents' command
    timeouts and health checks see it).

Asserts (any failure prints the agents' logs):
  * both agents stay alive (checked every 20 ms) and answer every admin request within 15 s;
  * each spoa_loadgen: every connection established, errors=0, unanswered=0, ACKs = NOTIFYs;
  * every answer is allowed for its host: a decision's ip:port is one the route table, the
    control plane or Redis held for that host at some point of the run; a refusal is one its
    class documents (stress_routing.allowed_answers; the redis class: 503/504 while Redis is
    down, paused or still loading its data after a restart (it answers -LOADING for a few
    seconds), since the redis resolver then answers unavailable/timeout and a chain stops there;
    never 404). Static routes (hot, wild, ssrf) never get a 503/504: the static resolver
    answers before Redis is asked, and the shared tier failing must fall back to it;
  * each agent got, for every class, at least one answer of the kind that defines it;
  * no reload failed; no sanitizer report in either agent's output; RSS of each agent bounded
    (stress_routing.check_rss);
  * at the end both agents are connected to Redis again (spoa_redis_connected 1 on the command
    and the subscriber connection, polled for up to 30 s) and each resynchronised at least once
    (spoa_redis_invalidations_total{event="resync"} >= 1);
  * both exit 0 on SIGTERM within 30 s.

Nothing asserted depends on timing except the stated generous bounds. Needs redis-server (skip,
77, without it) and python3-msgpack (the control plane). Exit status: 0 pass, 1 fail, 77 skip.
"""

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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import stress_routing as sr  # noqa: E402  (puts tests/e2e* on sys.path)
import coldstart_env  # noqa: E402
import harness  # noqa: E402
import routing_env  # noqa: E402
from harness import Skip, TestFailure, check, check_eq, log  # noqa: E402

PREFIX = "spoa:"
CHANNEL = PREFIX + "invalidate"
CONNECTIONS, INFLIGHT = 8, 16  # per agent: two loads share the machine

WEIGHTS = {"hot": 35, "wild": 20, "flip": 5, "ssrf": 5, "unknown": 10, "remote": 10, "cold": 5,
           "redis": 10}
REDIS_HOSTS = [f"r{i}.redis.test" for i in range(4)]
REDIS_SETS = {h: (["127.0.6.1:%d" % (8000 + i)],
                  ["127.0.6.2:%d" % (8000 + i), "127.0.6.3:%d" % (8000 + i)])
              for i, h in enumerate(REDIS_HOSTS)}
REDIS_FAILURES = {"status:503", "status:504"}
DEFINING = dict(sr.DEFINING, redis="endpoint")

# Redis chaos, as fractions of the run: (kill, restart) pairs and the pause.
REDIS_KILLS = (0.15, 0.40, 0.65)
REDIS_DOWN_S = 1.5
REDIS_PAUSE_AT, REDIS_PAUSE_S = 0.85, 1.0


def allowed_answers(cls, host, sets, cold_ports):
    if cls == "redis":
        return set(REDIS_SETS[host][0]) | set(REDIS_SETS[host][1]) | REDIS_FAILURES
    return sr.allowed_answers(cls, host, sets, cold_ports)


def write_host_file(path):
    """stress_hosts.txt's hosts plus the redis class, with this test's weights."""
    hosts = sr.read_hosts(sr.HOST_FILE) + [("redis", h) for h in REDIS_HOSTS]
    with open(path, "w") as f:
        f.write("# written by stress_fleet.py\n")
        for cls, w in WEIGHTS.items():
            f.write(f"weight {cls} {w}\n")
        for cls, host in hosts:
            f.write(f"host {cls} {host}\n")
    return hosts


def redis_route(host, version):
    return json.dumps({"endpoints": REDIS_SETS[host][version], "ttl_ms": 100})


def fleet_yaml(name, routes, cold_ports, platform, cp_address, redis_port):
    """stress_routing's configuration with a redis: section and the chain through Redis."""
    text = sr.routing_yaml(routes, cold_ports, platform, cp_address)
    text = text.replace("  type: chain\n", "  type: chain\n  chain: [static, redis, remote]\n", 1)
    redis = {"address": f"127.0.0.1:{redis_port}", "agent_id": name, "key_prefix": PREFIX,
             "connect_timeout_ms": 500, "command_timeout_ms": 200, "reconnect_min_ms": 20,
             "reconnect_max_ms": 200, "ping_interval_ms": 200, "wake_lease_ms": 1000,
             "coordinate_resolves": name == "a", "resolve_lease_ms": 500,
             "activity_interval_ms": 100}
    check("  chain: [static, redis, remote]\n" in text, "stress_routing.routing_yaml changed shape")
    return f"redis: {json.dumps(redis)}\n" + text


# ---------------------------------------------------------------------------------------------
# Redis: a restartable private server with its append-only file, and a tolerant client

class PersistentRedis(routing_env.RedisServer):
    """routing_env.RedisServer with an append-only file (written at every event loop turn,
    before replies go out; not fsynced, which a SIGKILL of the process does not need)."""

    def start(self):
        self.runs += 1
        argv = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--appendfsync", "no", "--dir", self.dir]
        self.proc = harness.Process(f"redis-{self.runs}", argv,
                                    self.env.path(f"redis-{self.runs}.log"))
        self.env.processes.append(self.proc)
        routing_env.wait_port(self.port, proc=self.proc)


class Resp:
    """A minimal RESP client for the platform's writes: one connection, remade after any
    failure; a command that fails returns None (Redis may be down: the caller retries later)."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise OSError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise OSError(rest.decode(errors="replace"))
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                data = self.sock.recv(65536)
                if not data:
                    raise OSError("connection closed")
                self.buf += data
            value, self.buf = self.buf[:n], self.buf[n + 2:]
            return value.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise OSError(f"unexpected reply {line!r}")

    def command(self, *args):
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
            out = f"*{len(args)}\r\n".encode()
            for a in args:
                a = str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            self.sock.sendall(out)
            return self._reply()
        except (OSError, ValueError):
            self.close()
            return None


# ---------------------------------------------------------------------------------------------
# One agent of the fleet

class Member:
    """One agent: its own ports (a stress_routing.Rig), routing file, load and RSS samples."""

    def __init__(self, env, name):
        self.env = env
        self.name = name
        self.rig = sr.Rig(env)
        self.agent = None
        self.cfg_path = env.path(f"routing-{name}.yaml")
        self.which_set = 0
        self.loadgen = None
        self.counts_path = env.path(f"counts-{name}.txt")
        self.rss = []

    def start(self, text, threads):
        """Stack.start_agent with files of its own name (two agents share the directory)."""
        with open(self.cfg_path, "w") as f:
            f.write(text)
        res = subprocess.run([self.env.agent_bin, "--check", "--config", self.cfg_path],
                             capture_output=True, text=True)
        check_eq(res.returncode, 0, f"spoa-agent --check {self.cfg_path}: {res.stdout}{res.stderr}")
        argv = [self.env.agent_bin, "--config", self.cfg_path, "--listen", self.rig.agent_addr,
                "--admin", f"127.0.0.1:{self.rig.admin_port}", "--threads", str(threads),
                "--deadline", "8000", "--log-level", "info", "--drain-timeout", "20000",
                *os.environ.get("SPOA_E2E_AGENT_ARGS", "").split()]
        self.agent = harness.Agent(self.env, argv, self.env.path(f"agent-{self.name}.log"),
                                   self.rig.agent_addr, self.rig.admin_port)
        self.agent.name = f"spoa-agent {self.name}"
        self.env.processes.append(self.agent)
        self.agent.wait_ready(timeout=20.0)

    def start_load(self, loadgen, host_file, duration):
        self.loadgen = self.rig.spawn(f"loadgen-{self.name}", [
            loadgen, "--target", self.rig.agent_addr, "--connections", str(CONNECTIONS),
            "--inflight", str(INFLIGHT), "--threads", "1", "--warmup", "0",
            "--duration", str(duration), "--drain", "30", "--host-file", host_file,
            "--counts-out", self.counts_path, "--refusals-ok"])

    def reload(self, text):
        tmp = self.cfg_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.cfg_path)  # atomic: the agent reads either file, never half of one
        self.agent.signal(signal.SIGHUP)

    def invalidate(self, host):
        st, _, body = harness.http_request("127.0.0.1", self.rig.admin_port, "POST",
                                           f"/invalidate?id={host}&protocol=http", timeout=15)
        check_eq(st, 200, f"POST /invalidate?id={host} on {self.name} ({body!r})")

    def redis_up(self):
        m = self.agent.metrics()
        return all(self.agent.metric("spoa_redis_connected", f'connection="{c}"', m) == 1
                   for c in ("command", "subscriber"))

    def died(self, when):
        return TestFailure(f"spoa-agent {self.name} died {when} (exit "
                           f"{self.agent.popen.returncode}){sr.report_excerpt(self.agent)}")


def summed(m, prefix):
    """{name{labels}: value} of the metrics starting with prefix (non-zero ones), for the log."""
    return " ".join(f"{n}{{{l}}}={v:g}" if l else f"{n}={v:g}"
                    for (n, l), v in sorted(m.items()) if n.startswith(prefix) and v
                    and not n.endswith(("_bucket", "_sum", "_count")))


# ---------------------------------------------------------------------------------------------
# The test

def check_answers(member, res, allowed):
    """Every answer of one agent's load against the allowed set; returns the answers counted."""
    return sr.check_answers(member.counts_path, res, allowed, DEFINING,
                            who=f"agent {member.name}: ")


def check_load(member):
    lg = member.loadgen
    out = lg.log_text()
    res = sr.parse_result(out)
    log(f"loadgen {member.name}: " +
        " ".join(l for l in out.splitlines() if l.startswith("spoa_loadgen: ")))
    check("errors" in res, f"spoa_loadgen {member.name} printed no result "
                           f"(exit {lg.popen.returncode}):\n{out[-3000:]}")
    check_eq(res.get("unanswered"), "0", f"{member.name}: frames never answered")
    check_eq(res.get("errors"), "0", f"{member.name}: invalid answers or connection errors "
                                     f"(spoa_loadgen errors=; its stderr says which)")
    check_eq(res.get("established"), str(CONNECTIONS), f"{member.name}: connections established")
    check_eq(res.get("acks_total"), res.get("sent_total"), f"{member.name}: ACKs vs NOTIFYs")
    check_eq(lg.popen.returncode, 0, f"spoa_loadgen {member.name} exit status")
    return res


def run(env, args):
    if not shutil.which("redis-server"):
        raise Skip("redis-server is not installed (apt-get install redis-server)")
    kind = sr.sanitized(args.agent)
    for k, v in sr.SANITIZER_ENV.items():
        os.environ[k] = ":".join(x for x in (os.environ.get(k), v) if x)
    log(f"stress fleet: 2 agents x --threads {args.threads}, {args.duration:.0f} s of load, "
        f"sanitizer {kind or 'none'}")
    sets = sr.route_sets()
    members = [Member(env, "a"), Member(env, "b")]
    rig = members[0].rig  # spawns the shared helpers

    redis = PersistentRedis(env)
    redis.start()
    resp = Resp(redis.port)
    atexit.register(resp.close)
    redis_version = {h: 0 for h in REDIS_HOSTS}
    for h in REDIS_HOSTS:
        check(resp.command("SET", f"{PREFIX}routes:http:{h}", redis_route(h, 0)) == "OK",
              f"SET route of {h}")

    cold_ports = {h: env.port() for h in sr.COLD}
    platform = coldstart_env.Platform(rig, {h: {"port": p, "delay_ms": 150}
                                            for h, p in cold_ports.items()})
    remote_routes = {h: {"endpoints": eps} for h, eps in sr.REMOTE_ROUTES.items()}
    remote_routes[sr.REMOTE_MOVING] = {"endpoints": sr.REMOTE_MOVING_SETS[0]}
    cp = routing_env.ControlPlane(rig, {"http": remote_routes}, delay_ms=2)
    relay = sr.ResettingRelay(env.port(), cp.port)
    atexit.register(relay.close)
    cp_address = f"127.0.0.1:{relay.port}"

    def config(m):
        return fleet_yaml(m.name, sets[m.which_set], cold_ports, platform, cp_address, redis.port)

    for m in members:
        m.start(config(m), args.threads)

    def guarded(fn, when):
        """fn(); if it fails and an agent is dead, report the death (and its sanitizer report)."""
        try:
            fn()
        except (OSError, TestFailure) as e:
            for m in members:
                if m.agent.wait(15) is not None:
                    raise m.died(when()) from e
            raise

    guarded(lambda: coldstart_env.wait_for(lambda: all(m.redis_up() for m in members), 20,
                                           "both agents connected to Redis"), lambda: "at start")
    guarded(lambda: coldstart_env.wait_for(
        lambda: all(m.agent.metric("spoa_control_plane_connected", f'address="{cp_address}"') == 1
                    for m in members), 20, "both agents connected to the control plane"),
        lambda: "at start")

    host_file = env.path("fleet_hosts.txt")
    hosts = write_host_file(host_file)
    for m in members:
        m.start_load(args.loadgen, host_file, args.duration)

    invalidate_hosts = (sr.HOT + ["fixed0.wild.test"] + sr.FLIP + sr.COLD + REDIS_HOSTS +
                        [sr.REMOTE_MOVING, "nobody0.nowhere.test"])
    t0 = time.monotonic()
    next_at = collections.defaultdict(lambda: t0)
    counters = collections.Counter()
    chaos = []  # (seconds since t0, action), in order
    for f in REDIS_KILLS:
        chaos += [(f * args.duration, "kill"), (f * args.duration + REDIS_DOWN_S, "start")]
    chaos += [(REDIS_PAUSE_AT * args.duration, "stop"),
              (REDIS_PAUSE_AT * args.duration + REDIS_PAUSE_S, "cont")]
    redis_state = ["up"]

    def due(name, period):
        if time.monotonic() >= next_at[name]:
            next_at[name] += period
            return True
        return False

    def redis_chaos(now):
        while chaos and now - t0 >= chaos[0][0]:
            _, action = chaos.pop(0)
            if action == "kill":
                redis.kill()
                resp.close()
                redis_state[0] = "down"
            elif action == "start":
                redis.start()
                redis_state[0] = "up"
            elif action == "stop":
                os.kill(redis.proc.pid, signal.SIGSTOP)
                redis_state[0] = "paused"
            else:
                os.kill(redis.proc.pid, signal.SIGCONT)
                redis_state[0] = "up"
            counters["redis-" + action] += 1
            log(f"{now - t0:.1f} s: redis {action}")

    def platform_write(host, version):
        """The documented change: SET the new value, then PUBLISH the invalidation."""
        if resp.command("SET", f"{PREFIX}routes:http:{host}", redis_route(host, version)) != "OK":
            counters["redis-write-failed"] += 1
            return
        redis_version[host] = version
        if resp.command("PUBLISH", CHANNEL, f"1 - http {host}") is None:
            counters["redis-write-failed"] += 1
            return
        counters["redis-set"] += 1

    def tick(now):
        redis_chaos(now)
        if due("rss", 1.0):
            for m in members:
                kb = sr.vm_rss_kb(m.agent.pid)
                if kb is not None:
                    m.rss.append((now - t0, kb))
        if due("metrics", 1.0):
            for m in members:
                m.agent.metrics()
        if due("invalidate", 0.1):
            n = counters["invalidate"]
            members[n % 2].invalidate(invalidate_hosts[n % len(invalidate_hosts)])
            counters["invalidate"] += 1
        if due("reload", 1.0) and now > t0 + 0.5:
            m = members[counters["reload"] % 2]
            m.which_set ^= 1
            m.reload(config(m))
            counters["reload"] += 1
        if due("drop", 2.5) and now > t0 + 1.0:
            relay.drop()
        if due("cold-kill", 2.0) and now > t0 + 1.0:
            platform.kill(sr.COLD[counters["cold-kill"] % len(sr.COLD)])
            counters["cold-kill"] += 1
        if due("remote-set", 3.0) and now > t0 + 1.0:
            counters["remote-set"] += 1
            cp.admin(f"set http {sr.REMOTE_MOVING} " + json.dumps(
                {"endpoints": sr.REMOTE_MOVING_SETS[counters["remote-set"] % 2]}))
        if redis_state[0] != "up":
            return  # a paused server would block the script's own client
        if due("redis-set", 0.5):
            host = REDIS_HOSTS[counters["redis-set-tries"] % len(REDIS_HOSTS)]
            counters["redis-set-tries"] += 1
            platform_write(host, redis_version[host] ^ 1)
        if due("publish", 2.0):
            n = counters["publish-tries"]
            counters["publish-tries"] += 1
            msg = (f"1 - http {sr.HOT[n % len(sr.HOT)]}" if n % 2 == 0
                   else f"1 - * {invalidate_hosts[n % len(invalidate_hosts)]}")
            if resp.command("PUBLISH", CHANNEL, msg) is not None:
                counters["publish"] += 1

    try:
        while any(m.loadgen.alive() for m in members):
            now = time.monotonic()
            for m in members:
                if not m.agent.alive():
                    raise m.died(f"under load after {now - t0:.1f} s")
            guarded(lambda: tick(now), lambda: f"under load after {now - t0:.1f} s")
            time.sleep(0.02)
    finally:
        if redis_state[0] == "paused" and redis.proc.alive():
            os.kill(redis.proc.pid, signal.SIGCONT)
    load_s = time.monotonic() - t0
    check(not chaos, f"the load ended before the Redis chaos did: {chaos}")
    log(f"chaos in {load_s:.1f} s: {counters['invalidate']} invalidations, "
        f"{counters['reload']} reloads, {relay.drops} control plane resets, "
        f"{counters['cold-kill']} cold backends killed, {counters['remote-set']} control plane "
        f"route changes, {counters['redis-set']} Redis route changes (SET+PUBLISH; "
        f"{counters['redis-write-failed']} refused while Redis loaded its data after a "
        f"restart), "
        f"{counters['publish']} platform PUBLISHes, {counters['redis-kill']} Redis kills and "
        f"restarts, {counters['redis-stop']} pause")

    # -- the loads' verdicts and every answer --------------------------------------------------
    for m in members:
        if not m.agent.alive() or (m.loadgen.popen.returncode != 0 and
                                   m.agent.wait(15) is not None):
            raise m.died("at the end of the load")
    allowed = {(c, h): allowed_answers(c, h, sets, cold_ports) for c, h in hosts}
    total = 0
    for m in members:
        res = check_load(m)
        total += check_answers(m, res, allowed)
    log(f"{total} answers checked on both agents")

    # -- each agent's own view -------------------------------------------------------------------
    for m in members:
        coldstart_env.wait_for(m.redis_up, 30, f"agent {m.name} reconnected to Redis")
    for m in members:
        mm = m.agent.metrics()
        log(f"agent {m.name}: " + summed(mm, "spoa_redis_"))
        log(f"agent {m.name}: " + coldstart_env.metrics_line(mm, {
            "spoa_route_cache_hits_total", "spoa_route_cache_misses_total",
            "spoa_route_cache_coalesced_total", "spoa_route_cache_invalidations_total",
            "spoa_cold_start_wakes_total", "spoa_cold_starts_total"}))
        resyncs = m.agent.metric("spoa_redis_invalidations_total", 'event="resync"', mm)
        check(resyncs >= 1, f"agent {m.name}: spoa_redis_invalidations_total{{event=\"resync\"}} "
                            f"is {resyncs:g} after {counters['redis-kill']} Redis restarts")
        text = m.agent.log_text()
        failed = [l for l in text.splitlines() if "reload of" in l and "failed" in l]
        check(not failed, f"agent {m.name}: reloads failed: {failed[:3]}")
        check(len(re.findall(r"reloaded ", text)) > 0, f"agent {m.name}: no reload applied")
        reports = sr.sanitizer_reports(text)
        check(not reports, f"agent {m.name}: sanitizer report during the load:\n" +
              "\n".join(reports[:20]))
        log(f"agent {m.name}:")
        sr.check_rss(m.rss, max(20.0, args.duration / 3), kind)

    # -- clean exit on SIGTERM -----------------------------------------------------------------
    for m in members:
        m.agent.signal(signal.SIGTERM)
    for m in members:
        rc = m.agent.wait(30)
        check(rc is not None, f"spoa-agent {m.name} still running 30 s after SIGTERM")
        reports = sr.sanitizer_reports(m.agent.log_text())
        check(not reports, f"agent {m.name}: sanitizer report at exit:\n" + "\n".join(reports[:20]))
        check_eq(rc, 0, f"spoa-agent {m.name} exit status after SIGTERM")


def main():
    args = sr.parse_args("spoa-agent --threads (each agent)")
    name = "stress_fleet"
    if args.duration < 10:
        # The Redis chaos (REDIS_KILLS, the pause) must fit in the load with room to recover.
        log(f"{name}: FAIL: --duration must be at least 10 s (got {args.duration:g})")
        sys.exit(1)
    sr.drive(name, run, args)

if __name__ == "__main__":
    main()
