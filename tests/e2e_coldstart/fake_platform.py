#!/usr/bin/python3
"""A fake tenant platform for the cold-start end-to-end tests (standard library only).

    fake_platform.py platform --listen 127.0.0.1:P --config platform.json
        The platform API that spoa-agent's HTTP waker calls (`cold_start.waker: http`,
        url http://127.0.0.1:P/wake/{id}):
          POST /wake/<id>       202 and start the backend of <id> (first call); 409 while it is
                                starting; 200 when it already listens; 404 for an unknown id;
                                500 for a resource whose mode is "fail". Every call is counted.
          GET  /stats           JSON: wake calls per id, every call with its time and answer,
                                and per backend: state, pid, when it started listening, when it
                                accepted its first connection (the readiness probe that found it)
          POST /kill/<id>       SIGKILL the backend of <id> (the next wake starts it again)
          POST /start/<id>      start the backend without counting a wake
          PUT  /resources/<id>  replace the resource's settings (JSON body)
          POST /reset           zero the wake counters and the call log
        platform.json: {"resources": {"<id>": {"port": P, "delay_ms": N, "mode": "start"}}}
        mode: "start" (default: the backend listens delay_ms after the wake), "never" (the wake
        is accepted but nothing ever listens), "fail" (the wake answers 500).
        Backends are child processes (this script in `backend` mode) that die with the platform.

    fake_platform.py backend --port P --name NAME [--delay-ms N]
        An HTTP/1.1 backend (asyncio, backlog 4096; tests/e2e/http_backend.py, shared with the
        routing tests' servers.py) that starts listening N ms after it started and answers every
        request with "backend=NAME\\nhost=...\\npath=...\\n". It prints one
        JSON line per event on stdout: {"event": "listening", "mono": ..., "wall": ...} (taken
        right after listen(), CLOCK_MONOTONIC and wall clock) and {"event": "first_accept", ...}
        for its first accepted connection.
        Health script (for flapping tests): GET /healthz answers 200 ("O") or 503 ("F") from a
        script that each /healthz request consumes one character of; when it is used up the
        `hold` state answers. POST /_control/health?hold=O|F with a body "FFOFFO..." replaces
        the script and answers "ok at=<answers so far>" (where the script starts); GET
        /_control/stats gives {"requests", "health": "<answers so far>"}.

Everything prints "ready ..." once listening. Run with /usr/bin/python3.
"""

import argparse
import asyncio
import ctypes
import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "e2e"))
from http_backend import echo_body, serve, serve_http  # noqa: E402

SETPRIV = shutil.which("setpriv")


def emit(**event):
    print(json.dumps(event), flush=True)


# ---------------------------------------------------------------------------------------------
# backend


class Backend:
    def __init__(self, name):
        self.name = name
        self.requests = 0
        self.first_accept = False
        self.script = ""
        self.hold = "O"
        self.health_log = []

    def health_answer(self):
        if self.script:
            c, self.script = self.script[0], self.script[1:]
        else:
            c = self.hold
        self.health_log.append(c)
        return (200, b"ok\n") if c == "O" else (503, b"down\n")

    def respond(self, method, target, headers, data):
        url = urllib.parse.urlsplit(target)
        if url.path == "/healthz":
            status, body = self.health_answer()
            return status, "text/plain", body
        if url.path == "/_control/health":
            q = urllib.parse.parse_qs(url.query)
            self.script = data.decode().strip()
            self.hold = q.get("hold", [self.hold])[0]
            # Where the script starts in the health log: read in the same step as it is set,
            # so no check answered in between can shift it.
            return 200, "text/plain", f"ok at={len(self.health_log)}\n".encode()
        if url.path == "/_control/stats":
            return 200, "application/json", json.dumps({
                "requests": self.requests, "health": "".join(self.health_log),
                "script_left": self.script}).encode()
        self.requests += 1
        return 200, "text/plain", echo_body(self.name, method, target, headers)

    async def conn(self, reader, writer):
        if not self.first_accept:
            self.first_accept = True
            emit(event="first_accept", mono=time.monotonic(), wall=time.time())
        await serve_http(reader, writer, self.name, self.respond)


async def run_backend(args):
    if args.delay_ms:
        await asyncio.sleep(args.delay_ms / 1000)
    await serve(Backend(args.name).conn, args.port, on_listen=lambda: emit(
        event="listening", mono=time.monotonic(), wall=time.time(), port=args.port))


# ---------------------------------------------------------------------------------------------
# platform


class Platform:
    def __init__(self, config_path):
        with open(config_path) as f:
            self.resources = json.load(f).get("resources", {})
        self.lock = threading.Lock()
        self.wakes = {}
        self.calls = []
        self.backends = {}  # id -> {"state", "pid", "proc", "listen_mono", ...}
        self.spawn_queue = queue.Queue()

    # Child processes are started from the main thread only: PR_SET_PDEATHSIG fires when the
    # thread that forked ends, and only the main thread lives as long as the platform.
    def spawn(self, rid):
        done = threading.Event()
        self.spawn_queue.put((rid, done))
        done.wait(10)

    def do_spawn(self, rid):
        res = self.resources[rid]
        argv = [sys.executable, "-B", os.path.abspath(__file__), "backend",
                "--port", str(res["port"]), "--name", rid,
                "--delay-ms", str(res.get("delay_ms", 0))]
        if SETPRIV:
            argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=None, start_new_session=True, text=True)
        with self.lock:
            b = self.backends[rid]
            b.update(proc=proc, pid=proc.pid, spawned_mono=time.monotonic())
        threading.Thread(target=self.watch, args=(rid, proc), daemon=True).start()

    def watch(self, rid, proc):
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            ev = json.loads(line)
            with self.lock:
                b = self.backends.get(rid)
                if b is None or b.get("proc") is not proc:
                    continue
                if ev["event"] == "listening":
                    b.update(state="running", listen_mono=ev["mono"], listen_wall=ev["wall"])
                elif ev["event"] == "first_accept":
                    b.update(first_accept_mono=ev["mono"], first_accept_wall=ev["wall"])
            print(f"backend {rid}: {line}", flush=True)
        proc.wait()
        with self.lock:
            b = self.backends.get(rid)
            if b is not None and b.get("proc") is proc:
                b["state"] = "stopped"

    def start(self, rid, count):
        """Returns the HTTP status of a wake (count=True) or a plain start."""
        with self.lock:
            res = self.resources.get(rid)
            if count:
                self.wakes[rid] = self.wakes.get(rid, 0) + 1
            if res is None:
                status = 404
            elif res.get("mode") == "fail":
                status = 500
            else:
                b = self.backends.get(rid)
                state = b["state"] if b else "stopped"
                if state == "starting":
                    status = 409
                elif state == "running":
                    status = 200
                else:
                    status = 202
                    self.backends[rid] = {"state": "starting", "woken_mono": time.monotonic(),
                                          "woken_wall": time.time()}
            if count:
                self.calls.append({"id": rid, "status": status, "mono": time.monotonic(),
                                   "wall": time.time()})
        if status == 202 and res.get("mode", "start") == "start":
            self.spawn(rid)
        return status

    def kill(self, rid):
        with self.lock:
            b = self.backends.get(rid)
            proc = b.get("proc") if b else None
            if b:
                b["state"] = "stopped"
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            return True
        return False

    def stats(self):
        with self.lock:
            return {"wakes": dict(self.wakes), "calls": list(self.calls),
                    "backends": {rid: {k: v for k, v in b.items() if k != "proc"}
                                 for rid, b in self.backends.items()}}

    def stop_all(self):
        for rid in list(self.backends):
            self.kill(rid)


def make_handler(platform):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            print("http: " + fmt % args, flush=True)

        def reply(self, status, obj):
            body = (json.dumps(obj) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def route(self):
            parts = urllib.parse.urlsplit(self.path).path.split("/", 2)
            return parts[1] if len(parts) > 1 else "", \
                urllib.parse.unquote(parts[2]) if len(parts) > 2 else ""

        def do_GET(self):
            what, _ = self.route()
            if what == "stats":
                return self.reply(200, platform.stats())
            self.reply(404, {"error": "not found"})

        def do_POST(self):
            self.body()
            what, rid = self.route()
            if what == "wake":
                status = platform.start(rid, count=True)
                return self.reply(status, {"id": rid, "status": status})
            if what == "start":
                return self.reply(platform.start(rid, count=False), {"id": rid})
            if what == "kill":
                return self.reply(200, {"id": rid, "killed": platform.kill(rid)})
            if what == "reset":
                with platform.lock:
                    platform.wakes.clear()
                    platform.calls.clear()
                return self.reply(200, {"ok": True})
            self.reply(404, {"error": "not found"})

        def do_PUT(self):
            what, rid = self.route()
            data = json.loads(self.body() or b"{}")
            if what == "resources" and rid:
                with platform.lock:
                    platform.resources[rid] = data
                return self.reply(200, {"ok": True})
            self.reply(404, {"error": "not found"})

    return Handler


def run_platform(args):
    platform = Platform(args.config)
    host, port = args.listen.rsplit(":", 1)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    server = Server((host, int(port)), make_handler(platform))

    def on_signal(signum, _frame):
        platform.spawn_queue.put(None)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready {args.listen}", flush=True)
    try:
        while True:
            job = platform.spawn_queue.get()
            if job is None:
                break
            rid, done = job
            try:
                platform.do_spawn(rid)
            finally:
                done.set()
    finally:
        platform.stop_all()
        server.shutdown()


def main():
    # If our parent (the test) dies, die too (setpriv may be missing).
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("platform")
    p.add_argument("--listen", required=True)
    p.add_argument("--config", required=True)
    b = sub.add_parser("backend")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--name", required=True)
    b.add_argument("--delay-ms", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "platform":
        run_platform(args)
    else:
        try:
            asyncio.run(run_backend(args))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
