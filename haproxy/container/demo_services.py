#!/usr/bin/python3
"""The demo backends of the compose stack (docker-compose.yml next to this file).

    demo_services.py web NAME           an HTTP backend answering "hello from NAME"
    demo_services.py sleepy RESOURCE    a backend that sleeps until woken, and the small
                                        platform API that wakes it

Addresses come from the environment, so the same image serves every service and the test can
move them to free loopback ports: LISTEN (the backend, default 0.0.0.0:8080); for `sleepy`
also WAKE_LISTEN (the platform API, default 0.0.0.0:9000) and START_DELAY_MS (how long the
backend takes to come up once woken, default 500, so that the held request is visible).

The platform API, as the agent's cold_start.http waker expects it:
    POST /wake/RESOURCE   202 the backend is starting now, 409 it is still starting,
                          200 it already listens; 404 for any other resource
    GET /state            {"state": "asleep|starting|running", "wakes": N, "starts": N}
    GET /healthz          200 (the platform API is up; says nothing about the backend)
"""

import http.server
import json
import os
import signal
import sys
import threading
import time


def address(variable, default):
    host, _, port = os.environ.get(variable, default).rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def text_handler(body):
    """A request handler class answering every GET and HEAD with `body`."""
    payload = body.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            # One line per request on the container's output (docker compose logs).
            print(f"{self.client_address[0]} {fmt % args}", flush=True)

    return Handler


def serve_web(name):
    server = http.server.ThreadingHTTPServer(address("LISTEN", "0.0.0.0:8080"),
                                             text_handler(f"hello from {name}\n"))
    print(f"{name}: listening on {server.server_address}", flush=True)
    server.serve_forever()


class Platform:
    """Starts the sleeping backend on the first wake; counts what it was asked."""

    def __init__(self, resource):
        self.resource = resource
        self.listen = address("LISTEN", "0.0.0.0:8080")
        self.delay = int(os.environ.get("START_DELAY_MS", "500")) / 1000
        self.lock = threading.Lock()
        self.state, self.wakes, self.starts = "asleep", 0, 0

    def wake(self):
        with self.lock:
            self.wakes += 1
            if self.state == "running":
                return 200
            if self.state == "starting":
                return 409
            self.state, self.starts = "starting", self.starts + 1
        threading.Thread(target=self.run_backend, daemon=True).start()
        return 202

    def run_backend(self):
        time.sleep(self.delay)  # what a real platform spends starting a VM or a container
        body = f"hello from {self.resource} (asleep until its first request woke it)\n"
        server = http.server.ThreadingHTTPServer(self.listen, text_handler(body))
        with self.lock:
            self.state = "running"
        print(f"backend of {self.resource} listening on {self.listen}", flush=True)
        server.serve_forever()

    def snapshot(self):
        with self.lock:
            return {"state": self.state, "wakes": self.wakes, "starts": self.starts}


def serve_sleepy(resource):
    platform = Platform(resource)

    class Api(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            status = platform.wake() if self.path == f"/wake/{resource}" else 404
            print(f"POST {self.path}: {status}", flush=True)
            self.answer(status, b"")

        def do_GET(self):
            if self.path == "/state":
                self.answer(200, json.dumps(platform.snapshot()).encode() + b"\n")
            elif self.path == "/healthz":
                self.answer(200, b"ok\n")
            else:
                self.answer(404, b"")

        def answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass  # do_POST prints what matters; health checks would drown it

    server = http.server.ThreadingHTTPServer(address("WAKE_LISTEN", "0.0.0.0:9000"), Api)
    print(f"platform API for {resource} on {server.server_address}; backend asleep", flush=True)
    server.serve_forever()


def main():
    # PID 1 in a container gets no default action for SIGTERM: exit explicitly, or every
    # `docker compose stop` waits for its timeout and then kills.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    modes = {"web": serve_web, "sleepy": serve_sleepy}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    modes[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
