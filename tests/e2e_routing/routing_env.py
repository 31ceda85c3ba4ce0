#!/usr/bin/python3
"""Helpers for the routing end-to-end tests: the SHIPPED HAProxy configuration
(haproxy/2.6 or haproxy/3.x, chosen from `haproxy -v`) with its addresses set through the
SPOA_* environment variables, spoa-agent with a routing configuration, real backends (HTTP,
SMTP sink, greeting server, PostgreSQL clusters, openssl s_server) and the reference control
plane.

Built on tests/e2e/harness.py (imported, not modified): free ports under a lock, processes that
die with the test (PR_SET_PDEATHSIG), cleanup of everything started, log dumps on failure.
Standard library only; run with /usr/bin/python3.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import harness  # noqa: E402
from harness import Skip, TestFailure, check, check_eq, log  # noqa: E402,F401

PYTHON = "/usr/bin/python3"
SERVERS = os.path.join(HERE, "servers.py")
CONTROL_PLANE = os.path.join(REPO, "handlers", "control_plane", "spoa_control_plane.py")
SETPRIV = shutil.which("setpriv")

# The agent backends of the shipped haproxy.cfg (one per SPOE engine).
AGENT_BACKENDS = ("be_spoa_http", "be_spoa_pg", "be_spoa_smtp", "be_spoa_mysql", "be_spoa_tls")


def shipped_dir(version):
    """haproxy/3.x for HAProxy >= 3.1 (mode spop, SPOP multiplexer), haproxy/2.6 otherwise
    (the same choice as haproxy/demo.sh)."""
    return os.path.join(REPO, "haproxy", "3.x" if version[:2] >= (3, 1) else "2.6")


def wait_port(port, timeout=10.0, proc=None, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise TestFailure(f"{proc.name} exited with {proc.popen.returncode} at start:\n"
                              f"{proc.log_text()[-2000:]}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TestFailure(f"nothing listens on {host}:{port} after {timeout}s")


def wait_log(proc, pattern, timeout=10.0):
    """Wait until `pattern` (regex) appears in the process's log; return the match."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, proc.log_text())
        if m:
            return m
        if not proc.alive():
            raise TestFailure(f"{proc.name} exited with {proc.popen.returncode}:\n"
                              f"{proc.log_text()[-2000:]}")
        time.sleep(0.05)
    raise TestFailure(f"{proc.name}: {pattern!r} not in its log after {timeout}s")


def http_get(port, host=None, path="/", timeout=10.0, headers=None):
    """GET through HAProxy's HTTP frontend. Returns (status, headers, body text)."""
    h = dict(headers or {})
    if host is not None:
        h["Host"] = host
    st, hdrs, body = harness.http_request("127.0.0.1", port, "GET", path, headers=h,
                                          timeout=timeout)
    return st, hdrs, body.decode(errors="replace")


def raw_http(port, data, timeout=10.0):
    """Send raw bytes, read until the server closes. Returns (status or None, raw text)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    text = b"".join(chunks).decode(errors="replace")
    m = re.match(r"HTTP/1\.[01] (\d{3})", text)
    return (int(m.group(1)) if m else None), text


def request_line(path, method="GET"):
    """A regex for the quoted request line (%{+Q}r) of fe_http's log-format, e.g.
    "GET /x HTTP/1.1": with a path used by one request only, it names that request's line."""
    return rf'"{method} {re.escape(path)} HTTP/1\.[01]"'


def backend_of(body):
    return harness.parse_kv_body(body.encode()).get("backend")


class ManagedProcess(harness.Process):
    """A harness.Process with its own stop signal and an on-stop hook (e.g. removing a
    PostgreSQL data directory once the server is down)."""

    def __init__(self, name, argv, log_path, stop_signal=signal.SIGTERM, on_stop=None):
        super().__init__(name, argv, log_path)
        self.stop_signal = stop_signal
        self.on_stop = on_stop

    def stop(self, grace=3.0):
        if self.alive():
            self.signal(self.stop_signal)
            if self.wait(max(grace, 5.0)) is None:
                self.kill()
        self._close_log()
        if self.on_stop:
            hook, self.on_stop = self.on_stop, None
            hook()


class Stack:
    """spoa-agent + HAProxy with the shipped configuration, for one test."""

    def __init__(self, env):
        self.env = env
        self.agent = None
        self.agent_port = env.port()
        self.admin_port = env.port()
        self.cfg_dir = shipped_dir(env.version)
        self._agent_runs = 0
        self.http_port = self.pg_port = self.tls_port = None
        self.smtp_ports = self.mysql_ports = ()

    @property
    def agent_addr(self):
        return f"127.0.0.1:{self.agent_port}"

    # -- processes ---------------------------------------------------------------------------
    def spawn(self, name, argv, stop_signal=signal.SIGTERM, on_stop=None):
        p = ManagedProcess(name, argv, self.env.path(f"{name}.log"), stop_signal, on_stop)
        self.env.processes.append(p)
        return p

    # -- spoa-agent --------------------------------------------------------------------------
    def write(self, name, text):
        path = self.env.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_agent(self, config_text, threads=2, deadline=4500, log_level="info", extra=()):
        """Start spoa-agent --config on the stack's agent and admin ports (a restart keeps
        them, so HAProxy's agent backends reconnect to the new process)."""
        self._agent_runs += 1
        cfg = self.write(f"routing-{self._agent_runs}.yaml", config_text)
        res = subprocess.run([self.env.agent_bin, "--check", "--config", cfg],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise TestFailure(f"spoa-agent --check refused {cfg}:\n{res.stdout}{res.stderr}")
        argv = [self.env.agent_bin, "--config", cfg, "--listen", self.agent_addr,
                "--admin", f"127.0.0.1:{self.admin_port}", "--threads", str(threads),
                "--deadline", str(deadline), "--log-level", log_level, *extra,
                *os.environ.get("SPOA_E2E_AGENT_ARGS", "").split()]
        agent = harness.Agent(self.env, argv, self.env.path(f"agent-{self._agent_runs}.log"),
                              self.agent_addr, self.admin_port)
        self.env.processes.append(agent)
        agent.wait_ready()
        self.agent = agent
        return agent

    def restart_agent(self, config_text, **kw):
        """Stop the agent (SIGTERM: graceful drain) and start it again with another
        configuration (the non-route sections are only read at start)."""
        if self.agent:
            self.agent.stop(grace=5.0)
        agent = self.start_agent(config_text, **kw)
        # HAProxy reconnects on the next request; make sure its checks still see the agent.
        self.wait_agent_up()
        return agent

    def metrics(self):
        return self.agent.metrics()

    # -- haproxy -----------------------------------------------------------------------------
    def haproxy_environment(self, smtp_ports=1, mysql_ports=1):
        """Ports for every frontend; SPOA_SMTP_BIND/SPOA_MYSQL_BIND may list several addresses
        (HAProxy's `bind` takes a comma-separated list), to have routed and unrouted ports.
        Call it before start_haproxy() when the routes must name these ports."""
        env = self.env
        self.http_port, self.pg_port, self.tls_port = env.port(), env.port(), env.port()
        self.smtp_ports = tuple(env.port() for _ in range(smtp_ports))
        self.mysql_ports = tuple(env.port() for _ in range(mysql_ports))
        env.stats_socket = os.path.join(env.socket_dir(), "haproxy-stats.sock")
        self._variables = {
            "SPOA_AGENT_ADDR": self.agent_addr,
            "SPOA_HTTP_BIND": f"127.0.0.1:{self.http_port}",
            "SPOA_PG_BIND": f"127.0.0.1:{self.pg_port}",
            "SPOA_SMTP_BIND": ",".join(f"127.0.0.1:{p}" for p in self.smtp_ports),
            "SPOA_MYSQL_BIND": ",".join(f"127.0.0.1:{p}" for p in self.mysql_ports),
            "SPOA_TLS_BIND": f"127.0.0.1:{self.tls_port}",
            "SPOA_SPOE_CONF": os.path.join(self.cfg_dir, "spoe-routing.conf"),
            "SPOA_PG_LUA": os.path.join(REPO, "haproxy", "spoa-postgres.lua"),
            "SPOA_STATS_SOCKET": env.stats_socket,
        }
        return self._variables

    def shipped_cfg(self):
        return os.path.join(self.cfg_dir, "haproxy.cfg")

    def start_haproxy(self, smtp_ports=1, mysql_ports=1, cfg_path=None):
        """HAProxy with haproxy/<version>/haproxy.cfg as shipped (or `cfg_path`, a variant of
        it), addresses from the environment; returns once every agent backend's check passed
        (L7OK)."""
        variables = (self._variables if self.http_port is not None
                     else self.haproxy_environment(smtp_ports, mysql_ports))
        # haproxy -c and haproxy itself inherit the environment of this process.
        os.environ.update(variables)
        log("haproxy environment: " + " ".join(f"{k}={v}" for k, v in variables.items()))
        self.env.start_haproxy(cfg_path or self.shipped_cfg(), wait_up=False)
        self.wait_agent_up()
        return self.env.haproxy

    def wait_agent_up(self):
        for be in AGENT_BACKENDS:
            self.env.wait_server("UP", timeout=15, backend=be, server="agent")

    def haproxy_log_matches(self, pattern):
        return [l for l in self.env.haproxy_log().splitlines() if re.search(pattern, l)]

    def haproxy_log_lines(self, pattern, expect=1, timeout=3.0):
        """Lines of HAProxy's log matching `pattern`; waits (HAProxy writes log lines
        asynchronously, after the client got its answer) until `expect` of them exist."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.haproxy_log_matches(pattern)
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def haproxy_log_by_request(self, patterns, timeout=5.0):
        """The one HAProxy log line of each request, found by content, never by position:
        HAProxy writes a request's line when its stream ends, on whichever of its threads ran
        it, so the lines of two consecutive requests can come in either order. `patterns` maps
        a key to a regex that only that request's line matches (e.g. request_line(path) for a
        path used once). Waits until every request has its line; fails unless each has exactly
        one. Returns {key: line}."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.env.haproxy_log().splitlines()
            found = {k: [l for l in text if re.search(p, l)] for k, p in patterns.items()}
            if all(found.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        bad = {k: v for k, v in found.items() if len(v) != 1}
        if bad:
            raise TestFailure(f"HAProxy log: not exactly one line per request: "
                              f"{ {k: (patterns[k], v) for k, v in bad.items()} } "
                              f"(HAProxy counts {self.env.dropped_logs()} dropped log lines)")
        return {k: v[0] for k, v in found.items()}

    # -- backends ----------------------------------------------------------------------------
    def http_backend(self, name):
        port = self.env.port()
        p = self.spawn(f"http-{name}", [PYTHON, "-B", SERVERS, "http", "--port", str(port),
                                        "--name", name])
        wait_log(p, r"ready \d+")
        return port

    def smtp_sink(self, name):
        port = self.env.port()
        spool = self.env.path(f"spool-{name}")
        p = self.spawn(f"smtp-{name}", [PYTHON, "-B", SERVERS, "smtp", "--port", str(port),
                                        "--name", name, "--spool", spool])
        wait_log(p, r"ready \d+")
        return port, spool

    def pg_tls_relay(self, name, crt, key, upstream_port):
        """Direct TLS (ALPN postgresql) in front of the PostgreSQL on `upstream_port`, as a
        PostgreSQL 17 server offers it; its log has one "alpn=..." line per connection."""
        port = self.env.port()
        p = self.spawn(f"pg-tls-{name}", [PYTHON, "-B", SERVERS, "pg-tls", "--port", str(port),
                                          "--name", name, "--cert", crt, "--key", key,
                                          "--to", str(upstream_port)])
        wait_log(p, r"ready \d+")
        return port, p

    def greeting_server(self, name):
        port = self.env.port()
        p = self.spawn(f"greet-{name}", [PYTHON, "-B", SERVERS, "greet", "--port", str(port),
                                         "--name", name])
        wait_log(p, r"ready \d+")
        return port


# ---------------------------------------------------------------------------------------------
# Redis, for the fleet's tests (README "Running several agents")

class RedisServer:
    """A private redis-server on a free loopback port (no persistence), restartable on the same
    port; `redis-cli` for what a platform would do."""

    def __init__(self, env):
        self.env = env
        self.port = env.port()
        self.dir = env.path("redis")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.runs = 0

    def start(self):
        self.runs += 1
        argv = [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]
        self.proc = harness.Process(f"redis-{self.runs}", argv,
                                    self.env.path(f"redis-{self.runs}.log"))
        self.env.processes.append(self.proc)
        wait_port(self.port, proc=self.proc)

    def kill(self):
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(5.0)

    def cli(self, *args):
        """redis-cli's output for one command (raw: no quoting)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *map(str, args)],
                             capture_output=True, text=True, timeout=10)
        check_eq(out.returncode, 0, f"redis-cli {args}: {out.stderr}")
        return out.stdout.rstrip("\n")

    def publish(self, channel, message):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "PUBLISH", channel, message],
                             capture_output=True, text=True, timeout=10)
        check_eq(out.returncode, 0, f"redis-cli PUBLISH: {out.stderr}")
        return int(out.stdout.strip())


# ---------------------------------------------------------------------------------------------
# The reference control plane (handlers/control_plane/spoa_control_plane.py)

class ControlPlane:
    def __init__(self, stack, routes, delay_ms=0, name="control-plane"):
        if not os.path.exists(CONTROL_PLANE):
            raise Skip(f"{CONTROL_PLANE} does not exist yet")
        try:
            import msgpack  # noqa: F401
        except ImportError:
            raise Skip("python3-msgpack is not installed")
        self.stack = stack
        self.name = name
        self.port = stack.env.port()
        self.admin_port = stack.env.port()
        self.routes_path = stack.write(f"{name}-routes.json", json.dumps({"routes": routes},
                                                                          indent=1))
        self.delay_ms = delay_ms
        self.proc = None
        self._runs = 0
        self.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._runs += 1
        self.proc = self.stack.spawn(
            f"{self.name}-{self._runs}",
            [PYTHON, "-B", CONTROL_PLANE, "--listen", self.address,
             "--admin", f"127.0.0.1:{self.admin_port}", "--routes", self.routes_path,
             "--delay-ms", str(self.delay_ms)])
        wait_log(self.proc, r"ready listen=")
        return self.proc

    def kill(self):
        """SIGKILL: the agent sees its connection reset, no goodbye."""
        self.proc.kill()

    def admin(self, command, timeout=5.0):
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=timeout) as s:
            s.sendall(command.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                b = s.recv(65536)
                if not b:
                    break
                buf += b
        reply = json.loads(buf.decode())
        check(reply.get("ok"), f"control plane refused {command!r}: {reply}")
        return reply

    def stats(self):
        return self.admin("stats")

    def resolve_count(self, proto, rid):
        return self.stats().get("ids", {}).get("resolve", {}).get(f"{proto}/{rid}", 0)


# ---------------------------------------------------------------------------------------------
# PostgreSQL clusters: initdb as the postgres user (runuser, as haproxy/demo.sh does), the
# server in the foreground under setpriv (no forking wrapper, so it dies with the test)

def pg_bin_dir():
    dirs = sorted((d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int) \
        if os.path.isdir("/usr/lib/postgresql") else []
    if not dirs:
        raise Skip("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return os.path.join("/usr/lib/postgresql", dirs[-1], "bin")


class PgCluster:
    def __init__(self, stack, name):
        if os.getuid() != 0:
            raise Skip("PostgreSQL clusters are started as the postgres user: needs root")
        if not SETPRIV or not shutil.which("runuser") or not shutil.which("psql"):
            raise Skip("setpriv, runuser or psql missing")
        self.stack = stack
        self.name = name
        self.bin = pg_bin_dir()
        self.port = stack.env.port()
        # The data directory must be reachable by the postgres user: under /tmp, not the
        # build tree. Removed when the server has stopped (ManagedProcess on_stop).
        self.dir = tempfile.mkdtemp(prefix=f"spoa-e2e-pg-{name}-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        os.mkdir(self.data)
        shutil.chown(self.data, "postgres", "postgres")
        self.proc = None
        self.pid = None
        self.log_path = "(initdb output)"
        self._initdb_out = ""
        # Cleanup even if the server never starts (a failure during initdb of the other one):
        # Env.cleanup stops every entry of env.processes, this object included.
        stack.env.processes.append(self)
        self._initdb = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", os.path.join(self.bin, "initdb"), "-D", self.data,
             "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def start(self):
        """Wait for initdb (started in __init__, so that two clusters initialise in
        parallel), then run the server in the foreground."""
        out, _ = self._initdb.communicate(timeout=60)
        self._initdb_out = out
        if self._initdb.returncode != 0:
            raise TestFailure(f"initdb for {self.name} failed:\n{out}")
        self.proc = self.stack.spawn(
            f"postgres-{self.name}",
            [SETPRIV, "--reuid=postgres", "--regid=postgres", "--init-groups",
             "--pdeathsig", "KILL", "--", os.path.join(self.bin, "postgres"), "-D", self.data,
             "-p", str(self.port), "-k", self.data, "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "max_connections=20", "-c", "shared_buffers=16MB"],
            stop_signal=signal.SIGINT,  # fast shutdown
            on_stop=lambda: shutil.rmtree(self.dir, ignore_errors=True))
        deadline = time.monotonic() + 30
        while True:
            r = self.psql("postgres", "select 1", port=self.port, check_rc=False)
            if r.returncode == 0:
                break
            if not self.proc.alive() or time.monotonic() > deadline:
                raise TestFailure(f"postgres {self.name} did not start:\n"
                                  f"{self.proc.log_text()[-2000:]}")
            time.sleep(0.1)

    # The cleanup interface of harness.Env (it calls stop() on every entry of env.processes).
    def stop(self, grace=3.0):
        if self._initdb.poll() is None:
            self._initdb.kill()
            self._initdb.wait()
        if self.proc is not None:
            self.proc.stop(grace)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        return self._initdb_out

    def psql(self, dbname, sql, port=None, check_rc=True, sslmode="disable", timeout=20):
        return psql(port or self.port, dbname, sql, sslmode=sslmode, check_rc=check_rc,
                    timeout=timeout)

    def create_database(self, db):
        """A database whose table `whoami` names this cluster."""
        self.psql("postgres", f"create database {db}")
        self.psql(db, f"create table whoami as select '{self.name}'::text as cluster, "
                      f"current_database()::text as database")


def two_clusters(stack):
    """Clusters A and B (initdb in parallel), each with the databases alpha and beta whose
    table `whoami` names the cluster."""
    clusters = [PgCluster(stack, "A"), PgCluster(stack, "B")]
    for c in clusters:
        c.start()
        for db in ("alpha", "beta"):
            c.create_database(db)
    log(f"PostgreSQL clusters: A on {clusters[0].port}, B on {clusters[1].port}")
    return clusters


def psql(port, dbname, sql, sslmode="disable", check_rc=True, timeout=20, extra=""):
    """psql -c `sql`; sslmode=None leaves libpq's default (prefer, or $PGSSLMODE: removed)."""
    ssl = f"sslmode={sslmode} " if sslmode else ""
    conninfo = f"host=127.0.0.1 port={port} user=postgres dbname={dbname} {ssl}" \
               f"connect_timeout=10 {extra}"
    r = subprocess.run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql],
                       capture_output=True, text=True, timeout=timeout,
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("PGSSL")},
                            "PGCONNECT_TIMEOUT": "10"})
    if check_rc and r.returncode != 0:
        raise TestFailure(f"psql {conninfo!r} -c {sql!r} failed ({r.returncode}):\n"
                          f"{r.stdout}{r.stderr}")
    return r


# ---------------------------------------------------------------------------------------------
# TLS: self-signed certificates and openssl s_server

def self_signed(stack, cn):
    key, crt = stack.env.path(f"{cn}.key"), stack.env.path(f"{cn}.crt")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", f"/CN={cn}", "-keyout", key, "-out", crt],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"openssl req failed: {r.stderr}")
    return key, crt


def tls_server(stack, cn):
    key, crt = self_signed(stack, cn)
    port = stack.env.port()
    p = stack.spawn(f"s_server-{cn}", ["openssl", "s_server", "-accept", f"127.0.0.1:{port}",
                                       "-cert", crt, "-key", key, "-www"])
    wait_port(port, proc=p)
    return port
