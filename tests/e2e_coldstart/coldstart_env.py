#!/usr/bin/python3
"""Helpers for the cold-start / health / breaker end-to-end tests.

HAProxy runs the SHIPPED configuration (haproxy/2.6 or haproxy/3.x by `haproxy -v`, addresses
through the SPOA_* environment variables), spoa-agent runs with a routing configuration written
by the test, backends are started by the fake platform (fake_platform.py, next to this file) on
a wake call, or directly by the test.

Built on tests/e2e/harness.py (imported, not modified): free ports under a lock, processes that
die with the test, cleanup of everything started, log dumps on failure.
Standard library only; run with /usr/bin/python3.
"""

import asyncio
import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e_routing"))

import harness  # noqa: E402
import routing_env  # noqa: E402
from harness import Skip, TestFailure, check, check_eq, log  # noqa: E402,F401
from routing_env import AGENT_BACKENDS, shipped_dir, wait_log  # noqa: E402,F401

PYTHON = "/usr/bin/python3"
PLATFORM = os.path.join(HERE, "fake_platform.py")

# HAProxy's `timeout processing` in the shipped spoe-routing.conf.
PROCESSING_TIMEOUT_MS = 5000


def wait_for(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Response:
    def __init__(self, status, headers, body, elapsed_ms, t_end):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed_ms = elapsed_ms
        self.t_end = t_end  # time.monotonic() when the response was complete

    @property
    def kind(self):
        return self.headers.get("x-route-kind")

    @property
    def backend(self):
        return harness.parse_kv_body(self.body.encode()).get("backend")

    def __repr__(self):
        return (f"<{self.status} kind={self.kind} {self.elapsed_ms:.1f} ms "
                f"body={self.body.strip()[:120]!r}>")


def http_get(port, host, path="/", timeout=15.0):
    t0 = time.monotonic()
    st, hdrs, body = harness.http_request("127.0.0.1", port, "GET", path,
                                          headers={"Host": host}, timeout=timeout)
    t1 = time.monotonic()
    return Response(st, hdrs, body.decode(errors="replace"), (t1 - t0) * 1000, t1)


def parse_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body.decode(errors="replace")


async def _one(reader, writer, req, timeout):
    t0 = time.monotonic()
    writer.write(req)
    data = await asyncio.wait_for(reader.read(-1), timeout)
    t1 = time.monotonic()
    writer.close()
    st, hdrs, body = parse_response(data)
    return Response(st, hdrs, body, (t1 - t0) * 1000, t1)


async def _burst(port, host, n, path, timeout):
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                   for _ in range(n)))
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    return await asyncio.gather(*(_one(rd, wr, req, timeout) for rd, wr in conns),
                                return_exceptions=True)


def burst(port, host, n, path="/", timeout=30.0):
    """n concurrent requests: all connections are opened first, then every request is written
    at once. Returns a list of Response (or exceptions)."""
    return asyncio.run(_burst(port, host, n, path, timeout))


def raise_nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Stack(routing_env.Stack):
    """The routing tests' stack (spoa-agent + HAProxy with the shipped configuration) with what
    the cold-start tests add: a longer agent deadline, configuration variants, /resources,
    fake backends of the platform."""

    def start_agent(self, config_text, threads=2, deadline=4800, log_level="info"):
        return super().start_agent(config_text, threads, deadline, log_level)

    def start_haproxy(self, cfg_path=None):
        return super().start_haproxy(cfg_path=cfg_path)

    def metric(self, name, labels=""):
        return self.agent.metric(name, labels)

    def resources(self):
        """GET /resources -> {(protocol, id): decisions}."""
        st, _, body = harness.http_request("127.0.0.1", self.admin_port, "GET", "/resources",
                                           timeout=5)
        check_eq(st, 200, "GET /resources")
        out = {}
        for line in body.decode().splitlines()[1:]:
            parts = line.split()
            if len(parts) == 4:
                out[(parts[0], parts[1])] = int(parts[2])
        return out

    # -- haproxy -----------------------------------------------------------------------------
    def frontend_limit(self, frontend="fe_http"):
        for row in self.env.stats():
            if row.get("pxname") == frontend and row.get("svname") == "FRONTEND":
                return int(row.get("slim") or 0)
        raise TestFailure(f"{frontend} not in show stat")

    def get(self, host, path="/", timeout=15.0):
        return http_get(self.http_port, host, path, timeout)

    # -- backends ----------------------------------------------------------------------------
    def backend(self, name, port=None, delay_ms=0, log_name=None):
        """A fake backend started by the test itself (not through the platform); it answers
        "backend=<name>"."""
        port = port or self.env.port()
        p = self.spawn(f"backend-{log_name or name}", [PYTHON, "-B", PLATFORM, "backend", "--port",
                                           str(port), "--name", name, "--delay-ms",
                                           str(delay_ms)])
        wait_log(p, rf"ready {port}\b")
        return port, p


class Platform:
    """fake_platform.py in `platform` mode: the HTTP waker's target."""

    def __init__(self, stack, resources, name="platform"):
        self.stack = stack
        self.port = stack.env.port()
        self.config = stack.write(f"{name}.json", json.dumps({"resources": resources}, indent=1))
        self.proc = stack.spawn(name, [PYTHON, "-B", PLATFORM, "platform", "--listen",
                                       f"127.0.0.1:{self.port}", "--config", self.config])
        wait_log(self.proc, rf"ready 127\.0\.0\.1:{self.port}\b")

    @property
    def wake_url(self):
        return f"http://127.0.0.1:{self.port}/wake/{{id}}"

    def call(self, method, path, body=None):
        st, _, data = harness.http_request("127.0.0.1", self.port, method, path,
                                           body=json.dumps(body) if body is not None else None,
                                           timeout=10)
        return st, json.loads(data or b"null")

    def stats(self):
        st, data = self.call("GET", "/stats")
        check_eq(st, 200, "platform GET /stats")
        return data

    def wakes(self, rid=None):
        w = self.stats()["wakes"]
        return w.get(rid, 0) if rid is not None else w

    def backend(self, rid):
        return self.stats()["backends"].get(rid, {})

    def kill(self, rid):
        return self.call("POST", f"/kill/{rid}")

    def start(self, rid):
        return self.call("POST", f"/start/{rid}")

    def set_resource(self, rid, settings):
        return self.call("PUT", f"/resources/{rid}", settings)


def routing_yaml(routes, platform=None, cold_start=None, health=None, breaker=None,
                 activity=None, passive=None, cache_ttl_ms=60000, resolver=None):
    """A routing configuration: `routes` maps an HTTP host to a route dict (endpoints, state...);
    the sections are dicts dumped as YAML flow maps (JSON is valid YAML)."""
    out = [resolver or "resolver: {type: static, timeout_ms: 1000}",
           f"cache: {{ttl_ms: {cache_ttl_ms}, negative_ttl_ms: 1000}}",
           "ssrf: {mode: allowlist, allow: [127.0.0.0/8]}"]
    if cold_start is not None:
        cs = {"waker": "http", "processing_timeout_ms": PROCESSING_TIMEOUT_MS, "margin_ms": 300}
        if platform is not None:
            cs["http"] = {"url": platform.wake_url, "method": "POST",
                          "ok_statuses": [200, 202, 409]}
        cs.update(cold_start)
        out.append("cold_start: " + json.dumps(cs))
    for name, section in (("health", health), ("breaker", breaker), ("activity", activity),
                          ("passive", passive)):
        if section is not None:
            out.append(f"{name}: " + json.dumps(section))
    if not routes:
        out.append("routes: {}")
    else:
        out.append("routes:")
        out.append("  http:")
        for host, route in routes.items():
            out.append(f"    {json.dumps(host)}: {json.dumps(route)}")
    return "\n".join(out) + "\n"


def metrics_line(m, names):
    """A compact 'name{labels}=value' summary of selected metrics, for the test's output."""
    parts = []
    for (name, labels), v in sorted(m.items()):
        if name in names:
            parts.append(f"{name}{{{labels}}}={v:g}" if labels else f"{name}={v:g}")
    return " ".join(parts)


def udp_port_bound(port):
    """True if something holds UDP 127.0.0.1:port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


