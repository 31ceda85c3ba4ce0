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
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import harness  # noqa: E402
from harness import Skip, TestFailure, check, check_eq, log  # noqa: E402,F401

PYTHON = "/usr/bin/python3"
PLATFORM = os.path.join(HERE, "fake_platform.py")

# The agent backends of the shipped haproxy.cfg (one per SPOE engine).
AGENT_BACKENDS = ("be_spoa_http", "be_spoa_pg", "be_spoa_smtp", "be_spoa_mysql", "be_spoa_tls")
# HAProxy's `timeout processing` in the shipped spoe-routing.conf.
PROCESSING_TIMEOUT_MS = 5000


def shipped_dir(version):
    return os.path.join(REPO, "haproxy", "3.x" if version[:2] >= (3, 1) else "2.6")


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


def wait_log(proc, pattern, timeout=10.0):
    """Wait until `pattern` (regex) appears in the process's log; return the match."""
    def find():
        m = re.search(pattern, proc.log_text())
        if not m and not proc.alive():
            raise TestFailure(f"{proc.name} exited with {proc.popen.returncode}:\n"
                              f"{proc.log_text()[-2000:]}")
        return m
    return wait_for(find, timeout, f"{pattern!r} in the log of {proc.name}", 0.05)


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


class Stack:
    """spoa-agent + HAProxy with the shipped configuration (or a variant of it), for one test."""

    def __init__(self, env):
        self.env = env
        self.agent = None
        self.agent_port = env.port()
        self.admin_port = env.port()
        self.cfg_dir = shipped_dir(env.version)
        self._agent_runs = 0
        self.http_port = None

    @property
    def agent_addr(self):
        return f"127.0.0.1:{self.agent_port}"

    def spawn(self, name, argv):
        p = harness.Process(name, argv, self.env.path(f"{name}.log"))
        self.env.processes.append(p)
        return p

    def write(self, name, text):
        path = self.env.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- spoa-agent --------------------------------------------------------------------------
    def start_agent(self, config_text, threads=2, deadline=4800, log_level="info"):
        self._agent_runs += 1
        cfg = self.write(f"routing-{self._agent_runs}.yaml", config_text)
        res = subprocess.run([self.env.agent_bin, "--check", "--config", cfg],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise TestFailure(f"spoa-agent --check refused {cfg}:\n{res.stdout}{res.stderr}")
        argv = [self.env.agent_bin, "--config", cfg, "--listen", self.agent_addr,
                "--admin", f"127.0.0.1:{self.admin_port}", "--threads", str(threads),
                "--deadline", str(deadline), "--log-level", log_level,
                *os.environ.get("SPOA_E2E_AGENT_ARGS", "").split()]
        agent = harness.Agent(self.env, argv, self.env.path(f"agent-{self._agent_runs}.log"),
                              self.agent_addr, self.admin_port)
        self.env.processes.append(agent)
        agent.wait_ready()
        self.agent = agent
        return agent

    def restart_agent(self, config_text, **kw):
        if self.agent:
            self.agent.stop(grace=5.0)
        agent = self.start_agent(config_text, **kw)
        self.wait_agent_up()
        return agent

    def metrics(self):
        return self.agent.metrics()

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
    def haproxy_environment(self):
        env = self.env
        self.http_port = env.port()
        env.stats_socket = os.path.join(env.socket_dir(), "haproxy-stats.sock")
        return {
            "SPOA_AGENT_ADDR": self.agent_addr,
            "SPOA_HTTP_BIND": f"127.0.0.1:{self.http_port}",
            "SPOA_PG_BIND": f"127.0.0.1:{env.port()}",
            "SPOA_SMTP_BIND": f"127.0.0.1:{env.port()}",
            "SPOA_MYSQL_BIND": f"127.0.0.1:{env.port()}",
            "SPOA_TLS_BIND": f"127.0.0.1:{env.port()}",
            "SPOA_SPOE_CONF": os.path.join(self.cfg_dir, "spoe-routing.conf"),
            "SPOA_STATS_SOCKET": env.stats_socket,
        }

    def shipped_cfg(self):
        return os.path.join(self.cfg_dir, "haproxy.cfg")

    def start_haproxy(self, cfg_path=None):
        """HAProxy with haproxy/<version>/haproxy.cfg as shipped (or `cfg_path`, a variant of
        it), addresses from the environment; returns once every agent backend's check passed."""
        variables = self.haproxy_environment()
        os.environ.update(variables)  # haproxy -c and haproxy inherit this process's environment
        log("haproxy environment: " + " ".join(f"{k}={v}" for k, v in variables.items()))
        self.env.start_haproxy(cfg_path or self.shipped_cfg(), wait_up=False)
        self.wait_agent_up()
        return self.env.haproxy

    def wait_agent_up(self):
        for be in AGENT_BACKENDS:
            self.env.wait_server("UP", timeout=15, backend=be, server="agent")

    def frontend_limit(self, frontend="fe_http"):
        for row in self.env.stats():
            if row.get("pxname") == frontend and row.get("svname") == "FRONTEND":
                return int(row.get("slim") or 0)
        raise TestFailure(f"{frontend} not in show stat")

    def get(self, host, path="/", timeout=15.0):
        return http_get(self.http_port, host, path, timeout)

    def haproxy_log_lines(self, pattern, expect=1, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in self.env.haproxy_log().splitlines() if re.search(pattern, l)]
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

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


