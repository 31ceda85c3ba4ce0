#!/usr/bin/python3
"""Two spoa-agent processes sharing one private redis-server (README "Running several agents"):

  * both connect (spoa_redis_connected on /metrics) and decide from their own cache: a decision
    on B is a miss, then a hit (decisions sent as SPOP NOTIFYs with spoa-cli);
  * B's miss writes the shared cache tier (spoa:cache:http:app.test); POST /invalidate on
    agent A deletes that entry and empties B's cached route (B's GET /explain says "absent",
    B's next decision is a miss); the fan-out latency (POST on A -> gone on B) over many rounds,
    p50/p99 printed, p50 under 50 ms (the p99 target is checked without HTTP in
    tests/handlers/invalidation_fanout_test.cpp);
  * an invalidation the control plane pushes to A (resolver chain) empties B too;
  * a platform's own `redis-cli PUBLISH spoa:invalidate "1 - * app.test"` empties both, and
    the shared tier's entry;
  * with redis.coordinate_resolves, two more agents behind one slow control plane: a miss on
    D while C holds the resolve lease follows C's answer; the control plane is asked once;
  * Redis killed: both agents keep deciding (hits, and misses resolved locally) and stay ready
    (/readyz 200, with a "degraded: redis ..." line); an
    invalidation published meanwhile is counted as dropped; Redis restarted: both reconnect,
    resynchronise (their caches cleared once, counted) and fan out again;
  * an agent stopped with SIGTERM writes the activity counted since its last flush.

Needs redis-server and redis-cli (skipped, 77, without them) and spoa-cli from the same build.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import routing_env as r
from routing_env import check, check_eq, log

harness = r.harness
SHARED_APP = "spoa:cache:http:app.test"  # the shared cache tier's entry (README)


def find_spoa_cli(agent_bin):
    if os.environ.get("SPOA_CLI"):
        return os.environ["SPOA_CLI"]
    # <build>/handlers/app/spoa-agent -> <build>/cli/spoa-cli
    build = os.path.dirname(os.path.dirname(os.path.dirname(agent_bin)))
    return os.path.join(build, "cli", "spoa-cli")


def wait_for(what, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise r.TestFailure(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.01)


class FleetAgent:
    def __init__(self, env, name, redis_port, web, resolver="", redis_extra=""):
        self.env = env
        self.name = name
        self.port = env.port()
        self.admin_port = env.port()
        cfg = env.path(f"routing-{name}.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
redis: {{address: 127.0.0.1:{redis_port}, agent_id: {name}, command_timeout_ms: 200,
        reconnect_min_ms: 20, reconnect_max_ms: 200{redis_extra}}}
{resolver}
cache: {{ttl_ms: 600000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
routes:
  http:
    app.test: {{endpoints: [127.0.0.1:{web}]}}
    other.test: {{endpoints: [127.0.0.1:{web}]}}
""")
        res = subprocess.run([env.agent_bin, "--check", "--config", cfg], capture_output=True,
                             text=True)
        check_eq(res.returncode, 0, f"spoa-agent --check {cfg}: {res.stdout}{res.stderr}")
        argv = [env.agent_bin, "--config", cfg, "--listen", f"127.0.0.1:{self.port}",
                "--admin", f"127.0.0.1:{self.admin_port}", "--threads", "2", "--log-level",
                "info", *os.environ.get("SPOA_E2E_AGENT_ARGS", "").split()]
        self.proc = harness.Agent(env, argv, env.path(f"agent-{name}.log"),
                                  f"127.0.0.1:{self.port}", self.admin_port)
        self.proc.name = f"spoa-agent {name}"
        env.processes.append(self.proc)
        self.proc.wait_ready()

    def metric(self, name, labels=""):
        return self.proc.metric(name, labels)

    def redis_up(self):
        m = self.proc.metrics()
        return (self.proc.metric("spoa_redis_connected", 'connection="command"', m) == 1 and
                self.proc.metric("spoa_redis_connected", 'connection="subscriber"', m) == 1)

    def decide(self, host):
        """One route-http NOTIFY; returns the txn variables {name: value}."""
        out = subprocess.run([self.env.spoa_cli, "notify", "--target", f"127.0.0.1:{self.port}",
                              "--json", "route-http", f"host=str:{host}", "path=str:/",
                              "src=ipv4:127.0.0.1"], capture_output=True, text=True, timeout=10)
        check_eq(out.returncode, 0, f"spoa-cli notify to {self.name}: {out.stdout}{out.stderr}")
        return {a["name"]: a["value"] for a in json.loads(out.stdout)["actions"]}

    def cache_state(self, host):
        status, _, body = harness.http_request(
            "127.0.0.1", self.admin_port, "GET", f"/explain?protocol=http&id={host}", timeout=5)
        check_eq(status, 200, f"/explain on {self.name}")
        return json.loads(body)["cache"]["state"]

    def readyz(self):
        status, _, body = harness.http_request("127.0.0.1", self.admin_port, "GET", "/readyz",
                                               timeout=5)
        return status, body.decode()

    def invalidate(self, host):
        status, _, body = harness.http_request(
            "127.0.0.1", self.admin_port, "POST", f"/invalidate?id={host}", timeout=5)
        check_eq(status, 200, f"POST /invalidate on {self.name}: {body}")


def cached_on(agent, host):
    v = agent.decide(host)
    check(v.get("cache") in ("miss", "hit"), f"{agent.name} decided {host}: {v}")
    check_eq(agent.cache_state(host), "route", f"{host} cached on {agent.name}")


def check_fanout_latency(a, b, rounds=200):
    samples = []
    for _ in range(rounds):
        cached_on(b, "app.test")
        start = time.monotonic()
        a.invalidate("app.test")
        wait_for("B's entry gone", lambda: b.cache_state("app.test") == "absent", timeout=5)
        samples.append((time.monotonic() - start) * 1000)
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[len(samples) * 99 // 100]
    log(f"fan-out latency over {rounds} rounds (POST /invalidate on A -> B's /explain says "
        f"absent, HTTP round trips included): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {samples[-1]:.2f} ms")
    # Issue 14's target is p99 under 50 ms. The Redis path alone is checked against it in
    # tests/handlers/invalidation_fanout_test.cpp; here HTTP round trips and a shared, loaded
    # test machine make the tail noisy, so the gate is the median and the p99 is reported.
    check(p50 < 50.0, f"p50 {p50:.2f} ms under 50 ms")


def check_control_plane_push(a, b, cp, web):
    wait_for("A connected to the control plane",
             lambda: a.metric("spoa_control_plane_connected", f'address="{cp.address}"') == 1)
    cached_on(b, "app.test")
    reply = cp.admin("set http app.test " + json.dumps({"endpoints": [f"127.0.0.1:{web}"]}))
    check_eq(reply.get("pushed"), 1, "the control plane pushed its invalidation to A")
    wait_for("B's app.test gone after the control plane's push to A",
             lambda: b.cache_state("app.test") == "absent", timeout=5)


def check_coordinated_resolves(env, redis, web):
    """Two agents with redis.coordinate_resolves and the same control plane (answering after
    400 ms): B's miss while A resolves waits for A's answer; the control plane is asked once."""
    cp = r.ControlPlane(r.Stack(env), {"http": {
        "coord.test": {"endpoints": [f"127.0.0.1:{web}"], "ttl_ms": 600000}}},
        delay_ms=400, name="slow-control-plane")
    remote = (f"resolver: {{type: remote, timeout_ms: 1500, "
              f"remote: {{address: {cp.address}, timeout_ms: 1000}}}}")
    extra = ", coordinate_resolves: true, resolve_lease_ms: 2000"
    c = FleetAgent(env, "agent-c", redis.port, web, resolver=remote, redis_extra=extra)
    d = FleetAgent(env, "agent-d", redis.port, web, resolver=remote, redis_extra=extra)
    for agent in (c, d):
        wait_for(f"{agent.name} connected to Redis and the control plane", lambda agent=agent: (
            agent.redis_up() and
            agent.metric("spoa_control_plane_connected", f'address="{cp.address}"') == 1))
    first = subprocess.Popen([env.spoa_cli, "notify", "--target", f"127.0.0.1:{c.port}",
                              "--json", "route-http", "host=str:coord.test", "path=str:/",
                              "src=ipv4:127.0.0.1"], stdout=subprocess.PIPE, text=True)
    # C holds the resolve lease while the control plane takes its time: D's miss comes now.
    wait_for("C holding the resolve lease",
             lambda: redis.cli("GET", "spoa:resolve:http:coord.test") == "agent-c")
    v = d.decide("coord.test")
    out, _ = first.communicate(timeout=10)
    check_eq(first.returncode, 0, "C's decision")
    c_vars = {a["name"]: a["value"] for a in json.loads(out)["actions"]}
    for name, got in (("C", c_vars), ("D", v)):
        check_eq((got.get("ip"), got.get("port")), ("127.0.0.1", web), f"{name}'s decision {got}")
    check_eq(cp.resolve_count("http", "coord.test"), 1, "control-plane calls for coord.test")
    check_eq(d.metric("spoa_redis_shared_cache_follows_total", 'outcome="shared"'), 1,
             "D followed C's resolve")
    check_eq(c.metric("spoa_redis_shared_cache_resolve_leases_total", 'result="taken"'), 1,
             "C took the resolve lease")


def check_activity_at_stop(env, redis, web):
    """An agent whose activity interval never comes (an hour) still writes what it counted when
    it stops (SIGTERM): the flush at stop, answered before the process exits."""
    extra = ", key_prefix: 'stopping:', activity_interval_ms: 3600000"
    e = FleetAgent(env, "agent-e", redis.port, web, redis_extra=extra)
    wait_for("E connected to Redis", e.redis_up)
    for _ in range(5):
        e.decide("app.test")
    check_eq(redis.cli("HGET", "stopping:activity:http:app.test", "requests"), "",
             "nothing written before the stop")
    e.proc.signal(signal.SIGTERM)
    check_eq(e.proc.wait(15), 0, "E's exit code after SIGTERM")
    check_eq(redis.cli("HGET", "stopping:activity:http:app.test", "requests"), "5",
             "the 5 decisions written at stop")


def test(env):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        raise r.Skip("redis-server/redis-cli not installed (apt-get install redis-server)")
    env.spoa_cli = find_spoa_cli(env.agent_bin)
    check(os.access(env.spoa_cli, os.X_OK), f"spoa-cli not built next to the agent: "
                                            f"{env.spoa_cli} (build target spoa-cli)")
    web = env.port()  # nothing needs to listen: only decisions are checked
    redis = r.RedisServer(env)
    redis.start()
    # A asks the reference control plane for the ids its file does not know (chain), so that the
    # control plane's pushes reach A, and through Redis, B.
    # Without python3-msgpack (the control plane's) only that part is left out.
    try:
        cp = r.ControlPlane(r.Stack(env), {"http": {
            "pushed.test": {"endpoints": [f"127.0.0.1:{web}"], "ttl_ms": 600000}}})
        chain = f"resolver: {{type: chain, remote: {{address: {cp.address}}}}}"
    except r.Skip as e:
        log(f"control-plane push part left out: {e}")
        cp, chain = None, ""
    a = FleetAgent(env, "agent-a", redis.port, web, resolver=chain)
    b = FleetAgent(env, "agent-b", redis.port, web)
    wait_for("both agents connected to Redis", lambda: a.redis_up() and b.redis_up())

    # Each agent decides from its own first tier.
    check_eq(b.decide("app.test")["cache"], "miss", "B's first decision")
    check_eq(b.decide("app.test")["cache"], "hit", "B's second decision")
    # The subscription is confirmed asynchronously: publish until both receive.
    wait_for("both subscribed", lambda: redis.publish("spoa:invalidate", "1 - * warmup") == 2)

    # POST /invalidate on A empties B, and the shared cache tier (B's miss wrote it).
    wait_for("B's route in the shared tier", lambda: redis.cli("EXISTS", SHARED_APP) == "1")
    a.invalidate("app.test")
    wait_for("the shared entry gone after A's invalidation",
             lambda: redis.cli("EXISTS", SHARED_APP) == "0")
    wait_for("B's app.test gone after A's invalidation",
             lambda: b.cache_state("app.test") == "absent", timeout=5)
    check_eq(b.decide("app.test")["cache"], "miss", "B resolves again after the invalidation")
    wait_for("A counted its own echo",
             lambda: a.metric("spoa_redis_invalidations_total", 'event="own"') >= 1)
    check_fanout_latency(a, b)
    # What B applied it did not publish again (no echo storm between agents).
    check_eq(b.metric("spoa_redis_invalidations_total", 'event="published"'), 0,
             "B published nothing")

    # A control-plane push to A reaches B.
    if cp:
        check_control_plane_push(a, b, cp, web)

    # A platform's own PUBLISH reaches both.
    cached_on(a, "other.test")
    cached_on(b, "other.test")
    wait_for("other.test in the shared tier",
             lambda: redis.cli("EXISTS", "spoa:cache:http:other.test") == "1")
    check_eq(redis.publish("spoa:invalidate", "1 - http other.test"), 2, "two subscribers")
    for agent in (a, b):
        wait_for(f"{agent.name}: other.test gone after the platform's PUBLISH",
                 lambda agent=agent: agent.cache_state("other.test") == "absent", timeout=5)
    # The platform changed the route behind the agents' back: they drop the shared entry too.
    wait_for("other.test gone from the shared tier",
             lambda: redis.cli("EXISTS", "spoa:cache:http:other.test") == "0")

    # Redis killed: decisions go on locally; invalidations are dropped and counted.
    cached_on(a, "app.test")
    cached_on(b, "app.test")
    redis.kill()
    wait_for("both agents see Redis down", lambda: not a.redis_up() and not b.redis_up())
    for agent in (a, b):
        status, body = agent.readyz()
        check_eq(status, 200, f"{agent.name} stays ready without Redis")
        check("degraded: redis 127.0.0.1:" in body, f"{agent.name}'s /readyz says: {body!r}")
    for agent in (a, b):
        check_eq(agent.decide("app.test")["cache"], "hit", f"{agent.name}: hit without Redis")
        v = agent.decide("other.test")
        check_eq((v["cache"], v["ip"], v["port"]), ("miss", "127.0.0.1", web),
                 f"{agent.name}: a miss resolved locally without Redis: {v}")
    dropped = a.metric("spoa_redis_invalidations_total", 'event="dropped"')
    a.invalidate("app.test")
    wait_for("A counted the dropped publication",
             lambda: a.metric("spoa_redis_invalidations_total", 'event="dropped"') == dropped + 1)
    check_eq(b.cache_state("app.test"), "route", "B kept its entry (nothing reached it)")

    # Redis back: both reconnect, resynchronise (cache cleared once), and fan out again.
    redis.start()
    wait_for("both agents reconnected", lambda: a.redis_up() and b.redis_up())
    check_eq(b.readyz(), (200, "ready\n"), "B's /readyz once Redis is back")
    for agent in (a, b):
        wait_for(f"{agent.name} resynchronised",
                 lambda agent=agent: agent.metric("spoa_redis_invalidations_total",
                                                  'event="resync"') >= 1)
    check_eq(b.cache_state("app.test"), "absent", "B's cache cleared on resubscription")
    cached_on(b, "app.test")
    wait_for("both subscribed again",
             lambda: redis.publish("spoa:invalidate", "1 - * warmup") == 2)
    a.invalidate("app.test")
    wait_for("B's app.test gone after Redis came back",
             lambda: b.cache_state("app.test") == "absent", timeout=5)
    check(a.metric("spoa_redis_reconnects_total") >= 1, "A counted its reconnects")

    check_activity_at_stop(env, redis, web)
    if cp:
        check_coordinated_resolves(env, redis, web)


if __name__ == "__main__":
    harness.main(test)
