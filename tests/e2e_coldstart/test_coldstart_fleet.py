#!/usr/bin/python3
"""Two HAProxy processes, each with its own spoa-agent, one private redis-server and one fake
platform (README "Running several agents"): the fleet wakes a sleeping resource once.

  1. herd: 1,000 concurrent requests for one sleeping resource, 500 through each HAProxy, all
     written at once: exactly one wake call reaches the platform (and one wake is counted
     across both agents: one won the lease, the other followed); all 1,000 answered 200 by the
     woken backend with x-route-kind: cold, none before it listened.
  2. takeover: agent A takes the lease and wakes a resource whose platform accepts the wake
     but starts nothing; requests wait on both nodes; A is killed with SIGKILL. B, following,
     claims again once A's lease ran out, wakes (the platform now starts it) and answers every
     request it holds 200; A's HAProxy answers its requests with the fail-closed 503 within
     `timeout processing`. The platform saw two wakes, the second after the kill.
  3. Redis killed while warm requests flow through both HAProxies (A restarted): every one is
     answered 200, a route never asked before is decided locally on each; Redis restarted: both
     reconnect and coordinate again (one wake for 200 requests).
  Activity: the request counts the two agents add up in Redis equal the requests the two
  HAProxies answered (after the herd, after the takeover), with a last-seen time for each
  resource; counts made while Redis was down reach the restarted Redis.

Needs redis-server and redis-cli (skipped, 77, without them).
"""

import asyncio
import collections
import os
import shutil
import signal
import threading
import time

import coldstart_env as c
import routing_env
from coldstart_env import check, check_eq, log

harness = c.harness

N = 1000
START_MS = 2500  # the herd's backend listens this long after the wake
LEASE_MS = 1500


class Node(c.Stack):
    """One HAProxy and its own agent, on their own ports, logs and stats socket."""

    def __init__(self, env, name):
        super().__init__(env)
        self.name = name
        self.stats_socket = os.path.join(env.socket_dir(), f"haproxy-{name}.sock")

    def write(self, fname, text):
        return super().write(f"{self.name}-{fname}", text)

    def start_agent(self, config_text, threads=2, deadline=4800, log_level="info"):
        cfg = self.write("routing.yaml", config_text)
        argv = [self.env.agent_bin, "--config", cfg, "--listen", self.agent_addr,
                "--admin", f"127.0.0.1:{self.admin_port}", "--threads", str(threads),
                "--deadline", str(deadline), "--log-level", log_level,
                *os.environ.get("SPOA_E2E_AGENT_ARGS", "").split()]
        self.agent = harness.Agent(self.env, argv, self.env.path(f"agent-{self.name}.log"),
                                   self.agent_addr, self.admin_port)
        self.agent.name = f"spoa-agent {self.name}"
        self.env.processes.append(self.agent)
        self.agent.wait_ready()
        return self.agent

    def start_haproxy(self, cfg_path=None):
        variables = self.haproxy_environment()
        variables["SPOA_STATS_SOCKET"] = self.stats_socket
        os.environ.update(variables)  # the HAProxy process inherits them
        cfg = self.shipped_cfg()
        self.haproxy = harness.Process(f"haproxy-{self.name}",
                                       [self.env.haproxy_bin, "-db", "-f", cfg],
                                       self.env.path(f"haproxy-{self.name}.log"))
        self.env.processes.append(self.haproxy)
        self.env.stats_socket = self.stats_socket  # env.cli / wait_server ask this node
        c.wait_for(lambda: os.path.exists(self.stats_socket), 10, f"{self.name}'s stats socket")
        self.wait_agent_up()

    def routing(self, routes, platform, redis):
        text = c.routing_yaml(routes, platform=platform,
                              cold_start={"timeout_ms": 10000, "max_waiters_per_resource": 5000,
                                          "max_waiters": 10000})
        return text + (f"redis: {{address: 127.0.0.1:{redis.port}, agent_id: {self.name}, "
                       f"wake_lease_ms: {LEASE_MS}, command_timeout_ms: 250, "
                       f"activity_interval_ms: 200, "
                       f"reconnect_min_ms: 20, reconnect_max_ms: 200}}\n")

    def redis_up(self):
        m = self.agent.metrics()
        return (self.agent.metric("spoa_redis_connected", 'connection="command"', m) == 1 and
                self.agent.metric("spoa_redis_connected", 'connection="subscriber"', m) == 1)


def bursts(targets, timeout=30):
    """Concurrent bursts: [(port, host, n)] -> one list of responses per target."""
    async def run():
        return await asyncio.gather(*(c._burst(port, host, n, "/", timeout)
                                      for port, host, n in targets))
    return asyncio.run(run())


def summary(results):
    statuses = collections.Counter(getattr(x, "status", type(x).__name__) for x in results)
    kinds = collections.Counter(getattr(x, "kind", None) for x in results)
    return dict(statuses), dict(kinds)


def herd(a, b, platform):
    results_a, results_b = bursts([(a.http_port, "herd.test", N // 2),
                                   (b.http_port, "herd.test", N // 2)])
    results = results_a + results_b
    errors = [x for x in results if isinstance(x, BaseException)]
    check(not errors, f"{len(errors)} requests failed, e.g. {errors[:3]!r}")
    statuses, kinds = summary(results)
    stats = platform.stats()
    wakes = [n.agent.metric("spoa_cold_start_wakes_total") for n in (a, b)]
    log(f"herd over two nodes: statuses {statuses}, kinds {kinds}, platform wakes "
        f"{stats['wakes']}, wake calls per agent {wakes}")
    check_eq(stats["wakes"], {"herd.test": 1}, "wake calls received by the platform")
    check_eq(sum(wakes), 1.0, "wake calls made by the two agents together")
    check_eq(statuses, {200: N}, "statuses")
    check_eq(kinds, {"cold": N}, "x-route-kind")
    listen = stats["backends"]["herd.test"]["listen_mono"]
    early = [x for x in results if x.t_end < listen]
    check(not early, f"{len(early)} responses arrived before the backend listened")
    won = [n.agent.metric("spoa_redis_wake_claims_total", 'result="won"') for n in (a, b)]
    lost = [n.agent.metric("spoa_redis_wake_claims_total", 'result="lost"') for n in (a, b)]
    log(f"lease claims won {won}, lost {lost}")
    check_eq(sorted(won), [0.0, 1.0], "one agent won the wake lease")
    follower = b if won[0] == 1 else a
    check("another agent wakes the backend, following" in follower.agent.log_text(),
          f"{follower.name} followed the other agent's wake")
    return N


def activity(redis, rid):
    """The fleet's request count of `rid` in Redis (README "Activity in Redis")."""
    return int(redis.cli("HGET", f"spoa:activity:http:{rid}", "requests") or 0)


def check_activity(redis, expected):
    """Every agent flushes its counts within its activity interval: wait for the totals."""
    try:
        c.wait_for(lambda: all(activity(redis, rid) == n for rid, n in expected.items()), 10,
                   "activity counts in Redis")
    finally:
        log("activity in Redis: " + ", ".join(f"{rid} {activity(redis, rid)} (requests answered "
                                              f"{n})" for rid, n in expected.items()))
    now_ms = time.time() * 1000
    for rid in expected:
        seen = float(redis.cli("ZSCORE", "spoa:activity:last_seen", f"http:{rid}"))
        check(now_ms - 60000 < seen <= now_ms + 1000, f"last seen of {rid}: {seen}")


def run_in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("value", fn()))
    t.start()
    return t, out


def takeover(a, b, platform, redis):
    rid = "takeover.test"
    lease_key = f"spoa:wake:http:{rid}"
    # Either agent may have won the herd's lease before: B's claims are counted from here.
    b_won_before = b.agent.metric("spoa_redis_wake_claims_total", 'result="won"')
    t_a, out_a = run_in_thread(lambda: bursts([(a.http_port, rid, 20)])[0])
    c.wait_for(lambda: redis.cli("GET", lease_key) == "node-a", 10, "A holding the wake lease")
    c.wait_for(lambda: platform.wakes(rid) == 1, 10, "A's wake call at the platform")
    t_b, out_b = run_in_thread(lambda: bursts([(b.http_port, rid, 20)])[0])
    c.wait_for(lambda: "cold start of http:takeover.test: another agent wakes the backend"
               in b.agent.log_text(), 10, "B following A's wake")
    # B holds its requests (the cold-start waiters gauge) before A dies.
    c.wait_for(lambda: b.agent.metric("spoa_cold_start_waiters") == 20, 10, "B holding 20")
    a.agent.signal(signal.SIGKILL)
    t_kill = time.monotonic()
    a.agent.wait(5.0)
    # The platform lost that start (as if its worker died with the agent's call): the next
    # wake starts the backend.
    platform.kill(rid)
    platform.set_resource(rid, {"port": platform.takeover_port, "delay_ms": 300, "mode": "start"})
    t_a.join(30)
    t_b.join(30)
    results_a, results_b = out_a["value"], out_b["value"]
    for name, results in (("A", results_a), ("B", results_b)):
        errors = [x for x in results if isinstance(x, BaseException)]
        check(not errors, f"{name}: {len(errors)} requests failed, e.g. {errors[:3]!r}")
    log(f"takeover: through A {summary(results_a)}, through B {summary(results_b)}")
    check_eq(summary(results_b), ({200: 20}, {"cold": 20}), "B's requests after the takeover")
    check_eq(summary(results_a)[0], {503: 20}, "A's requests after A died (fail closed)")
    slowest = max(x.elapsed_ms for x in results_a + results_b)
    check(slowest < c.PROCESSING_TIMEOUT_MS + 1000,
          f"every request answered within timeout processing (slowest {slowest:.0f} ms)")
    calls = [x for x in platform.stats()["calls"] if x["id"] == rid]
    check_eq(len(calls), 2, f"wake calls for {rid}: {calls}")
    check(calls[1]["mono"] > t_kill, "the second wake came after A was killed")
    log(f"second wake {1000 * (calls[1]['mono'] - t_kill):.0f} ms after the kill "
        f"(lease {LEASE_MS} ms, renewed every {LEASE_MS // 3} ms)")
    check("cold start of http:takeover.test: taking over the wake" in b.agent.log_text(),
          "B logged the takeover")
    check_eq(b.agent.metric("spoa_redis_wake_claims_total", 'result="won"') - b_won_before, 1.0,
             "B won the lease once (the takeover)")


def redis_outage(a, b, platform, redis):
    """Redis killed while warm traffic flows through both HAProxies, and restarted."""
    stop = threading.Event()
    statuses = collections.Counter()

    def traffic():
        while not stop.is_set():
            for node in (a, b):
                statuses[c.http_get(node.http_port, "herd.test").status] += 1

    t = threading.Thread(target=traffic)
    t.start()
    try:
        c.wait_for(lambda: sum(statuses.values()) >= 20, 10, "warm traffic flowing")
        redis.kill()
        killed_at = sum(statuses.values())
        c.wait_for(lambda: not a.redis_up() and not b.redis_up(), 10, "both agents without Redis")
        during = sum(statuses.values())
        # A route never asked before is decided locally on each node (no shared tier, no lease).
        for node in (a, b):
            r = c.http_get(node.http_port, "late.test")
            check_eq((r.status, r.backend), (200, "late.test"), f"{node.name}: a miss without Redis")
        c.wait_for(lambda: sum(statuses.values()) >= during + 20, 10, "traffic during the outage")
        down_until = sum(statuses.values())
        redis.start()
        c.wait_for(lambda: a.redis_up() and b.redis_up(), 10, "both agents reconnected")
    finally:
        stop.set()
        t.join(30)
    log(f"warm traffic through both HAProxies across the Redis outage: {dict(statuses)}")
    check_eq(list(statuses), [200], "every warm request answered 200, Redis down or not")
    # Coordinated again: a sleeping resource woken once for both nodes.
    c.wait_for(lambda: redis.publish("spoa:wake", "1 - http ready warmup") == 2, 10,
               "both agents subscribed again")
    results_a, results_b = bursts([(a.http_port, "again.test", 100),
                                   (b.http_port, "again.test", 100)])
    statuses_again, kinds_again = summary(results_a + results_b)
    log(f"after Redis came back: statuses {statuses_again}, kinds {kinds_again}")
    check_eq(statuses_again, {200: 200}, "requests for a sleeping resource after Redis came back")
    check_eq(platform.wakes("again.test"), 1, "one wake after Redis came back")
    return down_until - killed_at, statuses[200]


def test(env):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        raise c.Skip("redis-server/redis-cli not installed (apt-get install redis-server)")
    nofile = c.raise_nofile(8 * N)
    check(nofile >= 4 * N, f"RLIMIT_NOFILE {nofile} too low for {N} clients through HAProxy")
    redis = routing_env.RedisServer(env)
    redis.start()
    a, b = Node(env, "node-a"), Node(env, "node-b")
    herd_port, takeover_port, again_port = env.port(), env.port(), env.port()
    platform = c.Platform(a, {"herd.test": {"port": herd_port, "delay_ms": START_MS},
                              "takeover.test": {"port": takeover_port, "mode": "never"},
                              "again.test": {"port": again_port, "delay_ms": 500}})
    platform.takeover_port = takeover_port
    late_port, _ = a.backend("late.test")
    routes = {"herd.test": {"endpoints": [f"127.0.0.1:{herd_port}"], "state": "asleep"},
              "takeover.test": {"endpoints": [f"127.0.0.1:{takeover_port}"], "state": "asleep"},
              "again.test": {"endpoints": [f"127.0.0.1:{again_port}"], "state": "asleep"},
              "late.test": {"endpoints": [f"127.0.0.1:{late_port}"]}}
    for node in (a, b):
        node.start_agent(node.routing(routes, platform, redis))
    c.wait_for(lambda: a.redis_up() and b.redis_up(), 10, "both agents connected to Redis")
    # Outcomes are announced on a channel the agents subscribe to asynchronously.
    c.wait_for(lambda: redis.publish("spoa:wake", "1 - http ready warmup") == 2, 10,
               "both agents subscribed to the wake channel")
    for node in (a, b):
        node.start_haproxy()

    herd_requests = herd(a, b, platform)
    # Both agents' counts, added in Redis, equal the requests both HAProxies answered.
    check_activity(redis, {"herd.test": herd_requests})
    takeover(a, b, platform, redis)
    # A's counts were flushed before it was killed; its refused requests were never routed.
    check_activity(redis, {"herd.test": herd_requests, "takeover.test": 20})
    # A was killed by the takeover: it comes back on the same ports, for both nodes to route.
    a.start_agent(a.routing(routes, platform, redis))
    a.env.stats_socket = a.stats_socket
    a.wait_agent_up()
    during, warm = redis_outage(a, b, platform, redis)
    # The restarted Redis starts empty (no persistence here): it holds what was counted while
    # it was down (written once the agents reconnected) and what came after.
    check_activity(redis, {"late.test": 2, "again.test": 200})
    herd_after = activity(redis, "herd.test")
    check(during <= herd_after <= warm,
          f"herd.test in the new Redis: {herd_after}, between the {during} requests made while "
          f"it was down and the {warm} of the whole outage test")


if __name__ == "__main__":
    harness.main(test)
