#!/usr/bin/python3
"""The operator's admin endpoint of a real spoa-agent (and HAProxy where decisions are needed):

  * GET /explain for a cache miss then a hit, an SSRF refusal (the address and range named), an
    open circuit (opened by HAProxy-style log lines on passive.listen), and a sleeping resource:
    it says the backend would be woken, and nothing is woken (the wake API counts no call);
    unknown protocol or missing id is a 400;
  * GET /routes lists the cached routes and negative answers, paginated (total, next);
  * GET /readyz is 503 naming the control plane while the remote resolver is disconnected, 200
    once connected, 503 again when the control plane stops; /healthz stays 200 throughout;
  * --admin-token-file: 401 without the token on /explain, /routes, /metrics, POST /invalidate
    and POST /log-level, 200 with it; /healthz and /readyz open; a non-loopback --admin without
    a token is refused at start with a message naming both ways out;
  * POST /log-level=debug then --log-format json: one JSON object per line, and one "decision"
    line per routing decision with its fields (resource, cache, kind, endpoint, latency_us).
"""

import http.server
import json
import socket
import subprocess
import threading
import time

import routing_env as r
from routing_env import check, check_eq, log


class WakeCounter:
    """A wake API that only counts calls: /explain must never reach it."""

    def __init__(self, port):
        self.calls = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.calls += 1
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def admin(st, method, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = r.harness.http_request("127.0.0.1", st.admin_port, method, path,
                                             headers=headers, timeout=10.0)
    return status, body.decode()


def explain(st, host, path="/", token=None):
    status, body = admin(st, "GET", f"/explain?protocol=http&id={host}&path={path}", token)
    check_eq(status, 200, f"/explain {host}: {body}")
    return json.loads(body)


def static_config(web, dead, udp, wake_port):
    return f"""
resolver: {{type: static, timeout_ms: 800}}
metadata_variables: {{tenant: tenant}}
cache: {{ttl_ms: 60000, negative_ttl_ms: 30000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
breaker: {{failures: 3, cooldown_ms: 60000}}
passive: {{listen: 127.0.0.1:{udp}}}
cold_start: {{waker: http, http: {{url: "http://127.0.0.1:{wake_port}/wake/{{id}}", method: POST}}, processing_timeout_ms: 5000, margin_ms: 300}}
routes:
  http:
    app.test: {{endpoints: [127.0.0.1:{web}], metadata: {{tenant: acme}}}}
    outside.test: {{endpoints: [10.9.8.7:80]}}
    dead.test: {{endpoints: [127.0.0.1:{dead}]}}
    sleepy.test: {{endpoints: [127.0.0.1:{web}], state: asleep}}
"""


def check_explain(st, web, dead, udp, wake):
    # A miss: the resolver's route, checked; nothing cached yet.
    e = explain(st, "App.Test")
    check_eq(e["id"], "app.test", "the id is normalised as the handler does")
    check_eq(e["cache"]["state"], "absent", f"nothing cached before a decision: {e['cache']}")
    check_eq(e["resolver"]["answer"], "route", f"resolver answer: {e['resolver']}")
    check_eq(e["resolver"]["route"]["metadata"], {"tenant": "acme"}, "metadata shown")
    addr = e["endpoints"][0]["addresses"][0]
    check_eq((addr["address"], addr["ssrf"]), ("127.0.0.1", "allowed"), f"address: {addr}")
    v = e["haproxy_variables"]
    check_eq((v["ip"], v["port"], v["cache"], v["tenant"]), ("127.0.0.1", web, "miss", "acme"),
             f"variables, the metadata variable included: {v}")
    check_eq(explain(st, "app.test")["cache"]["state"], "absent",
             "/explain caches nothing: still absent")

    # A hit, after one real decision through HAProxy.
    status, _, body = r.http_get(st.http_port, host="app.test")
    check_eq(status, 200, f"app.test through HAProxy: {body}")
    e = explain(st, "app.test")
    check_eq(e["cache"]["state"], "route", f"cached after the decision: {e['cache']}")
    check(0 < e["cache"]["expires_in_ms"] <= 60000, f"expiry: {e['cache']}")
    check_eq(e["haproxy_variables"]["cache"], "hit", "a cached route answers as a hit")

    # SSRF: the refused address and the reason, and the refusal HAProxy would get.
    e = explain(st, "outside.test")
    addr = e["endpoints"][0]["addresses"][0]
    check_eq((addr["address"], addr["ssrf"]), ("10.9.8.7", "refused"), f"{addr}")
    check("allowlist" in addr["ssrf_reason"], f"reason names the policy: {addr}")
    v = e["haproxy_variables"]
    check_eq(v["status"], 403, f"SSRF refusal: {v}")
    check("10.9.8.7" in v["reason"], f"refusal reason: {v}")

    # An open circuit: three connect failures reported as HAProxy log lines.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        line = (f"<134>haproxy[1]: 127.0.0.1:40000 [07/Dec/2026:00:00:00.000] fe_http 503 0 1 "
                f"route=dead.test proto=http to=127.0.0.1:{dead} ts=SC-- in=0 out=0 dur=1")
        s.sendto(line.encode(), ("127.0.0.1", udp))
    s.close()
    deadline = time.monotonic() + 5
    while True:
        e = explain(st, "dead.test")
        health = e["endpoints"][0]["addresses"][0]
        if health.get("breaker") == "open" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check_eq((health.get("health_tracked"), health.get("breaker")), (True, "open"),
             f"circuit open after 3 reported failures: {health}")

    # A sleeping backend: would be woken by a request, is not by /explain.
    e = explain(st, "sleepy.test")
    check_eq(e["cold_start"], {"enabled": True, "backend_state": "asleep", "would_wake": True},
             f"cold start: {e['cold_start']}")
    check_eq(e["haproxy_variables"].get("after_cold_start"), True, f"{e['haproxy_variables']}")
    check_eq(wake.calls, 0, "/explain woke nothing")

    for bad in ("/explain?protocol=gopher&id=x", "/explain?protocol=http"):
        check_eq(admin(st, "GET", bad)[0], 400, f"{bad} is a usage error")


def check_routes(st):
    # A route and a negative answer (not_found is cached; other refusals are not).
    for host in ("app.test", "nobody.test"):
        r.http_get(st.http_port, host=host)
    status, body = admin(st, "GET", "/routes?limit=1")
    check_eq(status, 200, f"/routes: {body}")
    page = json.loads(body)
    check(page["total"] >= 2, f"at least the route and the refusal are cached: {page}")
    check_eq(len(page["routes"]), 1, "limit=1 gives one entry")
    check("next" in page, f"a next page is linked: {page}")
    status, body = admin(st, "GET", page["next"])
    nxt = json.loads(body)
    check(nxt["routes"] and nxt["routes"][0]["id"] != page["routes"][0]["id"],
          f"the second page goes on: {page['routes']} then {nxt['routes']}")
    status, body = admin(st, "GET", "/routes")
    ids = {e["id"]: e for e in json.loads(body)["routes"]}
    check("endpoints" in ids.get("app.test", {}), f"app.test with its endpoints: {ids}")
    check_eq(ids.get("nobody.test", {}).get("refusal"), "not_found", f"{ids}")


def check_json_logs_and_level(st):
    status, body = admin(st, "POST", "/log-level?level=debug")
    check_eq((status, body), (200, "debug\n"), "log level raised at run time")
    before = len(st.agent.log_text().splitlines())
    status, _, _ = r.http_get(st.http_port, host="app.test")
    check_eq(status, 200, "a decision at debug level")
    deadline = time.monotonic() + 5
    decisions = []
    while not decisions and time.monotonic() < deadline:
        lines = st.agent.log_text().splitlines()[before:]
        decisions = [json.loads(l) for l in lines if l.startswith("{") and '"decision"' in l]
        time.sleep(0.05)
    check(decisions, "a JSON decision line at debug level")
    d = decisions[0]
    for field in ("time", "level", "thread", "message", "connection", "spoe_message",
                  "resource", "cache", "kind", "endpoint", "latency_us"):
        check(field in d, f"decision line has {field}: {d}")
    check_eq((d["message"], d["level"], d["resource"], d["spoe_message"]),
             ("decision", "debug", "app.test", "route-http"), f"{d}")
    for line in st.agent.log_text().splitlines():
        if line.startswith("$ "):
            continue  # the harness's own command line
        json.loads(line)  # every line the agent wrote is one JSON object


def check_readiness(env, st):
    cp = r.ControlPlane(st, {"http": {}})
    st.restart_agent(f"""
resolver: {{type: remote, timeout_ms: 800, remote: {{address: {cp.address}, reconnect_min_ms: 50, reconnect_max_ms: 200}}}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
""")

    def readyz_until(status_wanted):
        deadline = time.monotonic() + 10
        while True:
            status, body = admin(st, "GET", "/readyz")
            if status == status_wanted or time.monotonic() > deadline:
                return status, body
            time.sleep(0.05)

    check_eq(readyz_until(200), (200, "ready\n"), "ready once the control plane is connected")
    cp.kill()
    status, body = readyz_until(503)
    check_eq(status, 503, f"not ready without the control plane: {body}")
    check("remote resolver: not connected" in body, f"the reason is named: {body!r}")
    check_eq(admin(st, "GET", "/healthz")[0], 200, "still alive")
    cp.start()
    check_eq(readyz_until(200)[0], 200, "ready again after the control plane is back")


def check_token(env, st):
    token_file = st.write("admin.token", "tok-3f9a\n")
    st.restart_agent("routes: {}\n", extra=("--admin-token-file", token_file))
    for method, path in (("GET", "/explain?id=x"), ("GET", "/routes"), ("GET", "/metrics"),
                         ("POST", "/invalidate?id=x"), ("POST", "/log-level?level=info")):
        check_eq(admin(st, method, path)[0], 401, f"{method} {path} without the token")
        check_eq(admin(st, method, path, token="tok-3f9a0")[0], 401, f"{method} {path} bad token")
        check_eq(admin(st, method, path, token="tok-3f9a")[0], 200, f"{method} {path} with it")
    check_eq(admin(st, "GET", "/healthz")[0], 200, "/healthz open")
    check_eq(admin(st, "GET", "/readyz")[0], 200, "/readyz open")

    port = env.port()
    res = subprocess.run([env.agent_bin, "--listen", f"127.0.0.1:{env.port()}",
                          "--admin", f"0.0.0.0:{port}", "--example", "echo"],
                         capture_output=True, text=True, timeout=10)
    check(res.returncode != 0, "a public admin address without a token is refused")
    check("--admin-token-file" in res.stderr and "--admin-public" in res.stderr,
          f"the refusal names both ways out: {res.stderr!r}")


def test(env):
    st = r.Stack(env)
    web = st.http_backend("web")
    dead, udp, wake_port = env.port(), env.port(), env.port()
    wake = WakeCounter(wake_port)
    try:
        st.start_agent(static_config(web, dead, udp, wake_port),
                       extra=("--log-format", "json"))
        st.start_haproxy()
        check_explain(st, web, dead, udp, wake)
        check_routes(st)
        check_json_logs_and_level(st)
        check_readiness(env, st)
        check_token(env, st)
    finally:
        wake.close()


if __name__ == "__main__":
    r.harness.main(test)
