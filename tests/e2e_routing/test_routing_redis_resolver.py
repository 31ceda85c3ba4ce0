#!/usr/bin/python3
"""Routes stored in Redis (resolver.type redis) through the shipped HAProxy configuration.

A private redis-server, spoa-agent with `resolver.type: redis`, real HAProxy, two HTTP backends
in this process that record every request they answer. Asserts:

  * a route stored as JSON under spoa:routes:http:<host> routes requests (miss, then hit); an
    error entry is that error (403); a malformed value is 500, not a fall-through; a missing
    key is 404;
  * while two clients send requests without pause, a platform changes the route the documented
    way (MULTI, SET, DEL of the shared tier's copy, PUBLISH spoa:invalidate "1 - http <host>",
    EXEC): every request succeeds,
    and every request started after the agent applied the invalidation (its
    spoa_redis_invalidations_total{event="applied"}) reached the new backend, as the backends'
    own records show;
  * a route deleted and published is 404 at once;
  * `resolver.chain: [static, redis]`: the file's route wins over Redis's, Redis serves the
    others; Redis killed: the cache and the file still serve, an id in neither is 503, not 404.

Needs redis-server and redis-cli (skipped, 77, without them).
"""

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time

import routing_env as r
from routing_env import check, check_eq, log

harness = r.harness
KEY = "spoa:routes:http:"
CACHE_KEY = "spoa:cache:http:"  # the shared cache tier's copy (redis.shared_cache)
CHANNEL = "spoa:invalidate"


class RecordingBackend:
    """An HTTP backend in this process that remembers the path of every request it answered
    (answers "backend=NAME\\npath=..." like servers.py)."""

    def __init__(self, env, name):
        self.name = name
        self.lock = threading.Lock()
        self.seen = []
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with backend.lock:
                    backend.seen.append(self.path)
                body = f"backend={backend.name}\npath={self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # HAProxy resetting an idle server connection is no error of the test

        self.port = env.port()
        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def paths(self):
        with self.lock:
            return list(self.seen)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class PrivateRedis:
    """A redis-server of this test only (free loopback port, no persistence)."""

    def __init__(self, env):
        self.port = env.port()
        data = env.path("redis")
        os.makedirs(data, exist_ok=True)
        argv = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", data]
        self.proc = harness.Process("redis", argv, env.path("redis.log"))
        env.processes.append(self.proc)
        r.wait_port(self.port, proc=self.proc)

    def cli(self, *args, script=None):
        """redis-cli's raw output for one command, or for the lines of `script` sent on one
        connection (as a platform would send a MULTI ... EXEC block)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), *map(str, args)],
                             input=script, capture_output=True, text=True, timeout=10)
        check_eq(out.returncode, 0, f"redis-cli {args}: {out.stderr}")
        return out.stdout.strip()

    def kill(self):
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(5.0)


def route_json(port):
    return '{"endpoints": ["127.0.0.1:%d"], "metadata": {"tenant": "acme"}}' % port


def change_route(redis, host, command):
    """The documented way: the new value (`command`: SET ... or DEL ...), the shared cache
    tier's copy dropped, and the invalidation, in one transaction."""
    script = (f"MULTI\n{command}\nDEL {CACHE_KEY}{host}\n"
              f"PUBLISH {CHANNEL} \"1 - http {host}\"\nEXEC\n")
    return redis.cli(script=script).split("\n")


class Client:
    """Threads that send GET /seq/<n> for `host` one after the other, without pause, until
    stopped; n is taken from one counter when a request starts."""

    def __init__(self, port, host, threads=2):
        self.port, self.host = port, host
        self.next_n = 0
        self.lock = threading.Lock()
        self.results = []  # (n, status, backend it named, error)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def next_seq(self):
        with self.lock:
            self.next_n += 1
            return self.next_n - 1

    def peek_seq(self):
        """The number the next request will get."""
        with self.lock:
            return self.next_n

    def run(self):
        while not self.stop.is_set():
            n = self.next_seq()
            try:
                status, _, body = r.http_get(self.port, self.host, f"/seq/{n}", timeout=10)
                result = (n, status, r.backend_of(body), None)
            except OSError as e:
                result = (n, None, None, repr(e))
            with self.lock:
                self.results.append(result)

    def done(self, pred):
        with self.lock:
            return sum(1 for res in self.results if pred(res[0]))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)
            check(not t.is_alive(), "client thread ended")
        return sorted(self.results)


def wait_for(what, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise r.TestFailure(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.005)


def check_answers(port):
    """Found (miss, then hit), an error entry, a malformed value, a missing key."""
    code, h, body = r.http_get(port, "app.test", "/first")
    check_eq((code, r.backend_of(body)), (200, "A"), f"app.test routed from Redis ({body!r})")
    check_eq(h.get("x-route-cache"), "miss", "first app.test request")
    log(f"decision time of a miss resolved from Redis (GET + parse, x-route-decision-us): "
        f"{h.get('x-route-decision-us')} us")
    code, h, body = r.http_get(port, "APP.test:8080", "/second")
    check_eq((code, r.backend_of(body), h.get("x-route-cache")), (200, "A", "hit"),
             "second app.test request (normalised Host, cached)")
    code, _, body = r.http_get(port, "blocked.test")
    check_eq(code, 403, f"an error entry stored in Redis ({body!r})")
    code, _, body = r.http_get(port, "broken.test")
    check_eq(code, 500, f"a malformed value ({body!r})")
    code, _, body = r.http_get(port, "nobody.test")
    check_eq(code, 404, f"no key ({body!r})")


def check_change_under_traffic(st, redis, a, b):
    """The route of app.test changes from A to B while requests keep coming."""
    client = Client(st.http_port, "app.test")
    try:
        wait_for("100 requests before the change", lambda: client.done(lambda n: True) >= 100)
        applied = st.agent.metric("spoa_redis_invalidations_total", 'event="applied"')
        started = time.monotonic()
        reply = change_route(redis, "app.test", f"SET {KEY}app.test '{route_json(b.port)}'")
        check_eq((reply[:5], reply[-1]), (["OK", "QUEUED", "QUEUED", "QUEUED", "OK"], "1"),
                 f"MULTI/SET/DEL/PUBLISH/EXEC: stored, and one subscriber (the agent): {reply}")
        wait_for("the agent applied the invalidation",
                 lambda: st.agent.metric("spoa_redis_invalidations_total",
                                         'event="applied"') > applied)
        applied_ms = (time.monotonic() - started) * 1000
        boundary = client.peek_seq()
        wait_for("100 requests started after the invalidation was applied",
                 lambda: client.done(lambda n: n >= boundary) >= 100, timeout=20)
    finally:
        results = client.finish()

    errors = [res for res in results if res[1] != 200]
    check_eq(errors, [], "every request during the change succeeded")
    seen = {p: "A" for p in a.paths() if p.startswith("/seq/")}
    seen.update({p: "B" for p in b.paths() if p.startswith("/seq/")})
    for n, _, named, _ in results:
        check_eq(seen.get(f"/seq/{n}"), named, f"request {n} was answered by the backend it names")
    late_on_a = [n for n, *_ in results if n >= boundary and seen[f"/seq/{n}"] == "A"]
    check_eq(late_on_a, [], "requests started after the invalidation was applied that reached A")
    before = [n for n, *_ in results if n < boundary]
    log(f"route changed under traffic: {len(results)} requests, 0 errors; PUBLISH -> applied by "
        f"the agent in {applied_ms:.1f} ms (redis-cli and /metrics polling included); "
        f"{len(before)} requests before the boundary ({sum(seen[f'/seq/{n}'] == 'B' for n in before)}"
        f" of them already on B), {len(results) - len(before)} after, all on B")


def agent_config(redis, resolver, routes=""):
    # shared_cache: off, so that the only cache between Redis and HAProxy is the agent's own
    # (the one the invalidation channel empties), which is what this test is about.
    return f"""
redis: {{address: 127.0.0.1:{redis.port}, command_timeout_ms: 500, reconnect_min_ms: 20,
        reconnect_max_ms: 200, shared_cache: false}}
{resolver}
cache: {{ttl_ms: 600000, negative_ttl_ms: 1}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
{routes}
"""


def check_chain(st, redis, a, b):
    """resolver.chain [static, redis]: the file's routes first, Redis for the others; with
    Redis down, the file's routes and the cache still serve and the other ids are 503."""
    st.restart_agent(agent_config(
        redis, "resolver: {type: chain, chain: [static, redis], timeout_ms: 800}",
        f"routes:\n  http:\n    static.test: {{endpoints: [127.0.0.1:{a.port}]}}\n"))
    redis.cli("SET", KEY + "static.test", route_json(b.port))  # the file's route wins
    redis.cli("SET", KEY + "kept.test", route_json(b.port))
    check_eq(r.backend_of(r.http_get(st.http_port, "static.test")[2]), "A", "static.test")
    check_eq(r.backend_of(r.http_get(st.http_port, "kept.test")[2]), "B", "kept.test")
    check_eq(r.http_get(st.http_port, "nobody.test")[0], 404, "in neither")

    redis.kill()
    wait_for("the agent saw Redis go",
             lambda: st.agent.metric("spoa_redis_connected", 'connection="command"') == 0)
    code, h, body = r.http_get(st.http_port, "kept.test", "/cached")
    check_eq((code, r.backend_of(body), h.get("x-route-cache")), (200, "B", "hit"),
             "a cached route without Redis")
    check_eq(r.http_get(st.http_port, "static.test", "/no-redis")[0], 200, "the file's route")
    # Redis is a source of routes here: the agent says it is not ready (misses may fail).
    status, _, body = harness.http_request("127.0.0.1", st.admin_port, "GET", "/readyz",
                                           timeout=5)
    check_eq(status, 503, f"/readyz without the redis resolver's Redis: {body!r}")
    check(b"not ready: redis resolver: Redis 127.0.0.1:" in body, f"/readyz says {body!r}")
    code, _, body = r.http_get(st.http_port, "new.test")
    check_eq(code, 503, f"an id not cached while Redis is down: not 404 ({body!r})")
    check_eq(st.agent.metric("spoa_resolver_calls_total", 'resolver="chain"'), 4.0,
             "the chain's calls on /metrics (static.test, kept.test, nobody.test, new.test)")


def test(env):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        raise r.Skip("redis-server/redis-cli not installed (apt-get install redis-server)")
    redis = PrivateRedis(env)
    a, b = RecordingBackend(env, "A"), RecordingBackend(env, "B")
    try:
        st = r.Stack(env)
        st.start_agent(agent_config(redis, "resolver: {type: redis, timeout_ms: 800}"))
        redis.cli("SET", KEY + "app.test", route_json(a.port))
        redis.cli("SET", KEY + "blocked.test", '{"error": "forbidden", "reason": "suspended"}')
        redis.cli("SET", KEY + "broken.test", '{"endpoints": "not a list"}')
        st.start_haproxy()
        wait_for("the agent subscribed to the invalidation channel",
                 lambda: redis.cli("PUBSUB", "NUMSUB", CHANNEL).split("\n")[-1] == "1")

        check_answers(st.http_port)
        check_change_under_traffic(st, redis, a, b)

        # A route removed the same way is gone at once.
        change_route(redis, "app.test", f"DEL {KEY}app.test")
        wait_for("app.test answered 404 once its key is deleted and published",
                 lambda: r.http_get(st.http_port, "app.test", "/gone")[0] == 404)

        check_chain(st, redis, a, b)
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    harness.main(test)
