#!/usr/bin/python3
"""Shared harness for the end-to-end tests: spoa-agent behind the real `haproxy` binary.

Each test script calls `harness.main(test_function)`. The harness:
  * reads `--agent <path to spoa-agent>` and `--tmpdir <dir>` from the command line,
  * finds free loopback ports (each port is held under an flock until the test ends, so that
    tests running in parallel under `ctest -j` never pick the same one),
  * generates haproxy.cfg and the SPOE configuration from templates into the temp dir,
    adapted to the HAProxy version (`mode spop` on the agent backend only for >= 3.1),
  * starts spoa-agent and haproxy, waits until HAProxy reports the agent server UP
    (stats socket `show stat`),
  * kills every process it started when the test ends, even on failure or on a signal
    (and children get PR_SET_PDEATHSIG so a SIGKILLed test leaves nothing behind),
  * prints the agent's and HAProxy's logs when the test fails.

Exit status: 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
Environment: HAPROXY (haproxy binary), SPOA_E2E_AGENT_ARGS (extra spoa-agent arguments, e.g.
"--log-level debug"; appended last, so they override the test's own).
Standard library only; run with /usr/bin/python3.
"""

import argparse
import atexit
import ctypes
import fcntl
import http.client
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77


class TestFailure(Exception):
    """An assertion of the test failed."""


class Skip(Exception):
    """The test does not apply (e.g. HAProxy version)."""


def check(cond, what):
    if not cond:
        raise TestFailure(what)


def check_eq(actual, expected, what):
    if actual != expected:
        raise TestFailure(f"{what}: expected {expected!r}, got {actual!r}")


def check_log_count(found, dropped, expected, what):
    """`found` log lines of `expected`: never more, and every missing one counted by HAProxy
    in DroppedLogs (see Env.dropped_logs)."""
    if found > expected or found + dropped < expected:
        raise TestFailure(f"{what}: expected {expected}, got {found} "
                          f"(HAProxy counts {dropped} dropped log lines)")
    if found < expected:
        log(f"{what}: {found} of {expected}, HAProxy counts {dropped} dropped log lines")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# HAProxy version

def haproxy_binary():
    """$HAPROXY, else `haproxy` on PATH (or in the sbin directories), else None."""
    if os.environ.get("HAPROXY"):
        return os.environ["HAPROXY"]
    return shutil.which("haproxy") or shutil.which(
        "haproxy", path="/usr/sbin:/usr/local/sbin:/sbin")


def haproxy_version(binary=None):
    out = subprocess.run([binary or haproxy_binary(), "-v"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        raise RuntimeError(f"cannot parse `haproxy -v` output: {out!r}")
    return tuple(int(x or 0) for x in m.groups())


# --------------------------------------------------------------------------------------------
# Free ports

_PORT_LOCK_FILE = f"/tmp/spoa-e2e-ports-{os.getuid()}.lock"


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


class PortAllocator:
    """Hands out loopback TCP ports outside the ephemeral range (so that a port is not taken
    meanwhile by an outgoing connection's source port). Each port is held by a POSIX record
    lock on byte <port> of one shared lock file until release() or the process's end, so
    concurrent tests never get the same one."""

    def __init__(self):
        self._fd = os.open(_PORT_LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o666)
        self._held = set()
        lo, hi = _ephemeral_range()
        self._candidates = [p for p in range(15000, 32000) if not lo <= p <= hi]

    def get(self):
        for _ in range(2000):
            port = random.choice(self._candidates)
            if port in self._held:  # record locks never conflict within one process
                continue
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
            except OSError:
                continue
            if not _bindable(port):
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, port)
                continue
            self._held.add(port)
            return port
        raise RuntimeError("no free port found")

    def release(self):
        for port in self._held:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, port)
        self._held.clear()


def _bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------------------------
# Processes

_PR_SET_PDEATHSIG = 1
_SETPRIV = shutil.which("setpriv")
try:
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent():
    # Fallback when util-linux's setpriv is missing. Runs in the child between fork and exec;
    # libc is loaded beforehand so nothing here takes a lock another thread could hold.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _spawn(argv, log):
    """Start argv in its own process group, stdout+stderr to `log`. The child gets
    PR_SET_PDEATHSIG=SIGKILL: if the test process dies (even by SIGKILL from a ctest timeout),
    the kernel kills the child too. Processes are only started from the main thread, whose
    end is the process's end."""
    if _SETPRIV:
        return subprocess.Popen([_SETPRIV, "--pdeathsig", "KILL", "--", *argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_die_with_parent)


class Process:
    def __init__(self, name, argv, log_path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self._log.write(("$ " + " ".join(argv) + "\n").encode())
        self._log.flush()
        assert threading.current_thread() is threading.main_thread()
        self.popen = _spawn(argv, self._log)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Exit code, or None if still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace=3.0):
        """SIGTERM, then SIGKILL after `grace` seconds; also kills the process group."""
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(grace) is None:
                self.kill()
        self._close_log()

    def kill(self):
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self.signal(signal.SIGKILL)
        self.popen.wait()
        self._close_log()

    def _close_log(self):
        if not self._log.closed:
            self._log.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


class Agent(Process):
    def __init__(self, env, argv, log_path, listen, admin_port):
        super().__init__("spoa-agent", argv, log_path)
        self.env = env
        self.listen = listen
        self.admin_port = admin_port

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise TestFailure(f"spoa-agent exited with {self.popen.returncode} at start")
            try:
                status, _, body = http_request("127.0.0.1", self.admin_port, "GET", "/healthz",
                                               timeout=1.0)
                if status == 200:
                    if self.listen.startswith("unix:"):
                        if os.path.exists(self.listen[5:]):
                            return
                    else:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TestFailure("spoa-agent did not become ready")

    def metrics(self):
        """Prometheus text from /metrics as {(name, labels): value}."""
        status, _, body = http_request("127.0.0.1", self.admin_port, "GET", "/metrics",
                                       timeout=5.0)
        check_eq(status, 200, "GET /metrics status")
        return parse_prometheus(body.decode())

    def metric(self, name, labels="", metrics=None):
        m = metrics if metrics is not None else self.metrics()
        return m.get((name, labels), 0.0)


def parse_prometheus(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


# --------------------------------------------------------------------------------------------
# HTTP client

def http_request(host, port, method, path, headers=None, body=None, timeout=10.0):
    """One request on a fresh connection. Returns (status, {lower-case header: value}, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def parse_kv_body(body):
    """Bodies our frontends return: one `key=value` per line."""
    out = {}
    for line in body.decode(errors="replace").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v
    return out


# --------------------------------------------------------------------------------------------
# Configuration templates

HAPROXY_CFG = string.Template("""\
# generated by tests/e2e/harness.py for HAProxy $version
global
    nbthread 2
    log stdout format raw local0 info
    stats socket $stats_socket level admin
$global_extra
defaults
    log global
    mode http
    option httplog
    timeout connect 2s
    timeout client  15s
    timeout server  15s

frontend fe
    bind 127.0.0.1:$fe_port
$frontend_extra
    filter spoe engine e config $spoe_path
$rules

backend be_spoa
$spoa_mode
$backend_extra
    option spop-check
    timeout connect 1s
    timeout server  30s
    server agent $server_addr check inter $check_inter fall $check_fall rise $check_rise
""")

SPOE_CFG = string.Template("""\
# generated by tests/e2e/harness.py for HAProxy $version
[e]
spoe-agent e-agent
    messages $messages
    option var-prefix e
    option set-on-error err
    option set-process-time ptime
$agent_extra
    timeout hello      2s
    timeout idle       20s
    timeout processing $processing
    use-backend be_spoa
    log global

$message_sections
""")


def indent(lines):
    if isinstance(lines, str):
        lines = [lines]
    return "\n".join("    " + l for l in lines if l)


# --------------------------------------------------------------------------------------------
# The test environment

class Env:
    def __init__(self, agent_bin, tmpdir, name):
        self.agent_bin = agent_bin
        self.name = name
        # A fresh directory per run under the given one, so that two ctest runs at once (in the
        # same build tree) do not clobber each other; removed when the test passes.
        os.makedirs(tmpdir, exist_ok=True)
        self.tmpdir = tempfile.mkdtemp(prefix="run-", dir=tmpdir)
        self.haproxy_bin = haproxy_binary()
        if not self.haproxy_bin:
            raise Skip("no haproxy binary (set $HAPROXY or put haproxy on PATH)")
        self.version = haproxy_version(self.haproxy_bin)
        self.ports = PortAllocator()
        self.processes = []
        self.haproxy = None
        self.taps = []
        self._agent_count = 0
        self._short_dir = None
        self._cleaned = False
        self._dropped_logs = None
        log(f"{name}: HAProxy {'.'.join(map(str, self.version))} ({self.haproxy_bin}), "
            f"agent {agent_bin}, tmpdir {self.tmpdir}")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def v31(self):
        """HAProxy >= 3.1: SPOP multiplexer, `mode spop`, no fragmentation, no async."""
        return self.version[:2] >= (3, 1)

    def port(self):
        return self.ports.get()

    def path(self, name):
        return os.path.join(self.tmpdir, name)

    def socket_dir(self):
        """A directory for Unix sockets: the temp dir unless a socket path in it could be
        too long (sun_path holds 108 bytes, HAProxy's `stats socket` takes at most 97), then
        a short one under /tmp, removed at cleanup."""
        if len(self.tmpdir) <= 60:
            return self.tmpdir
        if self._short_dir is None:
            self._short_dir = tempfile.mkdtemp(prefix="spoa-e2e-", dir="/tmp")
        return self._short_dir

    # -- spoa-agent ------------------------------------------------------------------------
    def start_agent(self, listen=None, extra=(), threads=2, log_level="info", wait=True,
                    admin_port=None):
        """Start spoa-agent with the echo example. `listen` defaults to a fresh TCP port."""
        self._agent_count += 1
        if listen is None:
            listen = f"127.0.0.1:{self.port()}"
        if admin_port is None:
            admin_port = self.port()
        argv = [self.agent_bin, "--listen", listen, "--admin", f"127.0.0.1:{admin_port}",
                "--threads", str(threads), "--log-level", log_level, "--example", "echo",
                *extra, *os.environ.get("SPOA_E2E_AGENT_ARGS", "").split()]
        agent = Agent(self, argv, self.path(f"agent-{self._agent_count}.log"), listen,
                      admin_port)
        self.processes.append(agent)
        if wait:
            agent.wait_ready()
        return agent

    # -- haproxy ---------------------------------------------------------------------------
    def render(self, fe_port, server_addr, rules, messages, message_sections,
               frontend_extra=(), global_extra=(), agent_extra=(), backend_extra=(),
               processing="2s",
               check_inter="200ms", check_fall=1, check_rise=1):
        """Write haproxy.cfg and spoe.conf; return (cfg_path, spoe_path)."""
        version = ".".join(map(str, self.version))
        cfg_path, spoe_path = self.path("haproxy.cfg"), self.path("spoe.conf")
        self.stats_socket = os.path.join(self.socket_dir(), "haproxy-stats.sock")
        spoe = SPOE_CFG.substitute(
            version=version, messages=" ".join(messages), agent_extra=indent(agent_extra),
            processing=processing, message_sections=message_sections)
        cfg = HAPROXY_CFG.substitute(
            version=version, stats_socket=self.stats_socket, global_extra=indent(global_extra),
            fe_port=fe_port, frontend_extra=indent(frontend_extra), spoe_path=spoe_path,
            rules=indent(rules),
            spoa_mode=indent("mode spop" if self.v31 else "mode tcp"),
            backend_extra=indent(backend_extra),
            server_addr=server_addr, check_inter=check_inter, check_fall=check_fall,
            check_rise=check_rise)
        with open(spoe_path, "w") as f:
            f.write(spoe)
        with open(cfg_path, "w") as f:
            f.write(cfg)
        return cfg_path, spoe_path

    def start_haproxy(self, cfg_path, wait_up=True):
        """`cfg_path`: a configuration file, or a list of them (loaded in order, one -f
        each)."""
        files = cfg_path if isinstance(cfg_path, (list, tuple)) else [cfg_path]
        args = [a for f in files for a in ("-f", f)]
        res = subprocess.run([self.haproxy_bin, "-c", *args], capture_output=True, text=True)
        if res.returncode != 0:
            raise TestFailure(f"haproxy -c refused the configuration:\n{res.stdout}{res.stderr}")
        self.haproxy = Process("haproxy", [self.haproxy_bin, "-db", *args],
                               self.path("haproxy.log"))
        self.processes.append(self.haproxy)
        deadline = time.monotonic() + 10
        while True:
            if not self.haproxy.alive():
                raise TestFailure(f"haproxy exited with {self.haproxy.popen.returncode}")
            try:
                self.cli("show info")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TestFailure("haproxy stats socket did not come up")
                time.sleep(0.05)
        if wait_up:
            self.wait_server("UP")
        return self.haproxy

    def cli(self, command, timeout=5.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.stats_socket)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace")
        finally:
            s.close()

    def stats(self):
        lines = self.cli("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, l.split(","))) for l in lines[1:] if l]

    def server_row(self, backend="be_spoa", server="agent"):
        for row in self.stats():
            if row.get("pxname") == backend and row.get("svname") == server:
                row["check_status"] = row.get("check_status", "").lstrip("* ")
                return row
        raise TestFailure(f"server {backend}/{server} not in show stat")

    def server_status(self, backend="be_spoa", server="agent"):
        return self.server_row(backend, server).get("status")

    def wait_server(self, want, timeout=10.0, backend="be_spoa", server="agent"):
        """Wait until `show stat` reports exactly `want` (UP, DOWN) for the agent server;
        return the seconds it took. HAProxy starts servers UP before any check ran, so UP
        also requires the last check to have passed (L7OK: a real SPOP HELLO exchange)."""
        start = time.monotonic()
        row = {}
        while time.monotonic() - start < timeout:
            row = self.server_row(backend, server)
            if row.get("status") == want and (want != "UP" or row["check_status"] == "L7OK"):
                return time.monotonic() - start
            time.sleep(0.05)
        raise TestFailure(f"{backend}/{server} still {row.get('status')!r} "
                          f"(check {row.get('check_status')!r}) after {timeout}s, wanted {want}")

    def haproxy_log(self):
        return self.haproxy.log_text() if self.haproxy else ""

    def dropped_logs(self):
        """HAProxy's DroppedLogs counter. Its threads write log lines to stdout without
        blocking: one that cannot take the write lock after a few hundred tries gives the line
        up and counts it here (a UDP log target that would block counts the same way). A test
        that counts the lines of a burst accounts for these."""
        m = re.search(r"DroppedLogs: (\d+)", self.cli("show info", timeout=2))
        return int(m.group(1)) if m else 0

    def wait_log_lines(self, find, expect, timeout, what):
        """Calls find() (the matching lines of HAProxy's log) until it returns `expect` lines,
        or fewer with the difference counted by HAProxy as dropped, or `timeout` s passed:
        HAProxy writes log lines after the client got its answer. Then check_log_count();
        returns the lines."""
        deadline = time.monotonic() + timeout
        while True:
            found = find()
            dropped = self.dropped_logs() if len(found) < expect else 0
            if len(found) + dropped >= expect or time.monotonic() > deadline:
                check_log_count(len(found), dropped, expect, what)
                return found
            time.sleep(0.05)

    def spoe_log_statuses(self, expect=None, timeout=3.0):
        """st=<status> of every SPOE event line in HAProxy's log, as ints. With `expect`, wait
        as wait_log_lines() does and fail unless every missing line is one HAProxy dropped."""
        def find():
            return [int(m) for m in re.findall(
                r"SPOE: \[e-agent\] <EVENT:[^>]*> sid=\d+ st=(-?\d+)", self.haproxy_log())]
        if expect is None:
            return find()
        return self.wait_log_lines(find, expect, timeout, "SPOE event lines in HAProxy's log")

    # -- frame tap -------------------------------------------------------------------------
    def tap(self, upstream_port):
        t = FrameTap(self.port(), upstream_port)
        self.taps.append(t)
        return t

    # -- teardown --------------------------------------------------------------------------
    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        if self.haproxy and self.haproxy.alive():
            try:
                self._dropped_logs = self.dropped_logs()
            except OSError:
                pass
        for t in self.taps:
            t.close()
        # HAProxy first, so that it does not hammer a dying agent with checks.
        for p in sorted(self.processes, key=lambda p: p is not self.haproxy):
            try:
                p.stop(grace=2.0)
            except Exception:  # noqa: BLE001 - cleanup must go on
                traceback.print_exc()
        self.ports.release()
        if self._short_dir:
            shutil.rmtree(self._short_dir, ignore_errors=True)

    def dump_logs(self, tail_lines=150):
        if self._dropped_logs is not None:
            print(f"\nHAProxy DroppedLogs: {self._dropped_logs}")
        for p in self.processes:
            text = p.log_text().splitlines()
            print(f"\n===== {p.name} (pid {p.pid}) log {p.log_path}, last {tail_lines} lines "
                  f"of {len(text)} =====")
            print("\n".join(text[-tail_lines:]))
        for name in ("haproxy.cfg", "spoe.conf"):
            path = self.path(name)
            if os.path.exists(path):
                print(f"\n===== {path} =====")
                with open(path) as f:
                    print(f.read())
        sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# Frame tap: a TCP relay between HAProxy and the agent that decodes SPOP frame headers, so
# tests can see what went over the wire (fragmentation, pipelining).

FRAME_TYPES = {0: "UNSET", 1: "HAPROXY-HELLO", 2: "HAPROXY-DISCONNECT", 3: "NOTIFY",
               101: "AGENT-HELLO", 102: "AGENT-DISCONNECT", 103: "ACK"}
FLAG_FIN, FLAG_ABORT = 1, 2


def decode_varint(buf, pos):
    """protocol/README.md §3. Returns (value, new position)."""
    v = buf[pos]
    pos += 1
    if v < 240:
        return v, pos
    shift = 4
    while True:
        b = buf[pos]
        pos += 1
        v += b << shift
        shift += 7
        if b < 128:
            return v, pos


def decode_typed(buf, pos):
    """protocol/README.md §4. Returns ((type name, value), new position)."""
    t = buf[pos]
    pos += 1
    kind = t & 0x0F
    if kind == 0:
        return ("null", None), pos
    if kind == 1:
        return ("bool", bool(t & 0x10)), pos
    if kind in (2, 3, 4, 5):
        v, pos = decode_varint(buf, pos)
        if kind in (2, 4) and v >= 1 << 63:
            v -= 1 << 64
        return ("int", v), pos
    if kind == 6:
        return ("ipv4", socket.inet_ntop(socket.AF_INET, bytes(buf[pos:pos + 4]))), pos + 4
    if kind == 7:
        return ("ipv6", socket.inet_ntop(socket.AF_INET6, bytes(buf[pos:pos + 16]))), pos + 16
    if kind in (8, 9):
        n, pos = decode_varint(buf, pos)
        return ("str" if kind == 8 else "bin", bytes(buf[pos:pos + n])), pos + n
    raise ValueError(f"unknown type byte {t:#x}")


def decode_messages(payload):
    """LIST-OF-MESSAGES (protocol/README.md §5.2) -> [(name, [(arg name, (type, value))])]."""
    out, pos = [], 0
    while pos < len(payload):
        n, pos = decode_varint(payload, pos)
        name = bytes(payload[pos:pos + n]).decode()
        pos += n
        nargs = payload[pos]
        pos += 1
        args = []
        for _ in range(nargs):
            n, pos = decode_varint(payload, pos)
            aname = bytes(payload[pos:pos + n]).decode()
            pos += n
            value, pos = decode_typed(payload, pos)
            args.append((aname, value))
        out.append((name, args))
    return out


class Frame:
    __slots__ = ("conn", "direction", "type", "flags", "stream_id", "frame_id", "payload", "t",
                 "length")

    def __init__(self, conn, direction, data):
        self.conn = conn
        self.direction = direction  # "h2a" (HAProxy to agent) or "a2h"
        self.t = time.monotonic()
        self.length = len(data)  # the frame length field: everything after the 4-byte prefix
        self.type = data[0]
        self.flags = int.from_bytes(data[1:5], "big")
        pos = 5
        self.stream_id, pos = decode_varint(data, pos)
        self.frame_id, pos = decode_varint(data, pos)
        self.payload = bytes(data[pos:])

    @property
    def type_name(self):
        return FRAME_TYPES.get(self.type, str(self.type))

    @property
    def fin(self):
        return bool(self.flags & FLAG_FIN)

    def __repr__(self):
        return (f"<{self.direction} conn={self.conn} {self.type_name} flags={self.flags} "
                f"sid={self.stream_id} fid={self.frame_id} len={len(self.payload)}>")


class FrameTap:
    """Relays 127.0.0.1:port <-> upstream and records every frame both ways. Once the upstream
    refuses a connection the tap stops listening for good (mirrors a stopped agent)."""

    def __init__(self, port, upstream_port):
        self.port = port
        self.upstream = ("127.0.0.1", upstream_port)
        self.frames = []
        self.errors = []
        self._lock = threading.Lock()
        self._socks = []
        self._closed = False
        self._conn_count = 0
        self.upstream_gone = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
                upstream.settimeout(None)
            except OSError:
                # The agent is gone: stop listening too, so that HAProxy sees "connection
                # refused" as it would without the tap (an accept-then-close looks different).
                client.close()
                self.upstream_gone = True
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._listener.close()
                return
            with self._lock:
                self._conn_count += 1
                cid = self._conn_count
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(cid, "h2a", client, upstream),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(cid, "a2h", upstream, client),
                             daemon=True).start()

    def _pump(self, cid, direction, src, dst):
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:
                    n = int.from_bytes(buf[:4], "big")
                    if len(buf) < 4 + n:
                        break
                    try:
                        f = Frame(cid, direction, buf[4:4 + n])
                        with self._lock:
                            self.frames.append(f)
                    except (IndexError, ValueError) as e:
                        self.errors.append(f"conn {cid} {direction}: undecodable frame: {e}")
                    del buf[:4 + n]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def snapshot(self):
        with self._lock:
            return list(self.frames)

    def close(self):
        self._closed = True
        # shutdown() wakes the accept() thread; close() alone would keep the port listening.
        for op in (lambda: self._listener.shutdown(socket.SHUT_RDWR), self._listener.close):
            try:
                op()
            except OSError:
                pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def reassemble_notifies(frames):
    """Group HAProxy->agent NOTIFY/UNSET frames per connection into whole NOTIFYs.
    Returns [(conn, stream_id, frame_id, [frames], payload)] for every NOTIFY whose last
    fragment carried FIN."""
    out, open_ = [], {}
    for f in frames:
        if f.direction != "h2a" or f.type not in (0, 3):
            continue
        if f.type == 3:
            open_[f.conn] = [f]
        elif f.conn in open_:
            open_[f.conn].append(f)
        else:
            continue
        if f.fin:
            parts = open_.pop(f.conn)
            out.append((f.conn, parts[0].stream_id, parts[0].frame_id, parts,
                        b"".join(p.payload for p in parts)))
    return out


# --------------------------------------------------------------------------------------------
# Entry point

_active_env = None


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main(test_fn):
    global _active_env
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True, help="path to spoa-agent")
    ap.add_argument("--tmpdir", required=True,
                    help="scratch directory; each run gets its own run-* subdirectory, removed "
                         "when the test passes")
    args = ap.parse_args()
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if not os.access(args.agent, os.X_OK):
        log(f"{name}: FAIL: spoa-agent not found or not executable: {args.agent}")
        sys.exit(1)
    try:
        env = Env(os.path.abspath(args.agent), os.path.abspath(args.tmpdir), name)
    except Skip as e:
        log(f"{name}: SKIP: {e}")
        sys.exit(SKIP)
    _active_env = env
    atexit.register(env.cleanup)
    start = time.monotonic()
    rc = 1
    try:
        test_fn(env)
        rc = 0
        log(f"{name}: PASS ({time.monotonic() - start:.1f}s)")
        env.cleanup()
        shutil.rmtree(env.tmpdir, ignore_errors=True)
    except Skip as e:
        rc = SKIP
        log(f"{name}: SKIP: {e}")
        env.cleanup()
        shutil.rmtree(env.tmpdir, ignore_errors=True)
    except BaseException as e:  # noqa: BLE001 - report anything, then dump logs
        if isinstance(e, TestFailure):
            log(f"{name}: FAIL: {e}")
        else:
            log(f"{name}: ERROR: {type(e).__name__}: {e}")
            traceback.print_exc()
        env.cleanup()
        env.dump_logs()
        print(f"\nfiles of this run kept in {env.tmpdir}")
    finally:
        env.cleanup()
    sys.exit(rc)
