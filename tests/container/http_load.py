#!/usr/bin/python3
"""HTTP load for the container tests, and a look at HAProxy's view of a backend's servers.

    http_load.py load --url http://127.0.0.1:PORT/ --host app.localhost --workers 8 --out FILE
        Sends requests until SIGTERM or SIGINT; every 0.2 s and at the end writes FILE (JSON):
        {"sent": n, "ok": n, "failed": {"<status or error>": n}, "first_failures": [...]}.
        A request is ok when the answer is 200 with the expected body (--expect TEXT).

    http_load.py wait-ok FILE N TIMEOUT_S
        Waits until FILE says at least N ok answers; exit 1 after TIMEOUT_S.

    http_load.py servers SOCKET BACKEND
        Prints "<server> <status>" for each server of BACKEND, from the Runtime API's show stat.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = 0
        self.failed = {}
        self.first_failures = []

    def add(self, outcome, detail=""):
        with self.lock:
            self.sent += 1
            if outcome == "ok":
                self.ok += 1
                return
            self.failed[outcome] = self.failed.get(outcome, 0) + 1
            if len(self.first_failures) < 20:
                self.first_failures.append(f"{time.time():.3f} {outcome} {detail}"[:200])

    def write(self, path):
        with self.lock:
            data = {"sent": self.sent, "ok": self.ok, "failed": self.failed,
                    "first_failures": self.first_failures}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


def worker(url, host, expect, counts, stop):
    target = urllib.parse.urlsplit(url)
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            conn.request("GET", target.path or "/", headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            if resp.status == 200 and expect in body:
                counts.add("ok")
            else:
                counts.add(str(resp.status), body.strip())
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            counts.add(type(e).__name__, str(e))
            if conn is not None:
                conn.close()
            conn = None


def run_load(args):
    counts, stop = Counts(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=worker, args=(args.url, args.host, args.expect, counts, stop))
               for _ in range(args.workers)]
    for t in threads:
        t.start()
    while not stop.wait(0.2):
        counts.write(args.out)
    for t in threads:
        t.join()
    counts.write(args.out)


def wait_ok(path, wanted, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if json.load(f)["ok"] >= wanted:
                    return 0
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    print(f"wait-ok: fewer than {wanted} ok answers after {timeout_s} s", file=sys.stderr)
    return 1


def servers(sock_path, backend):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    name, status = header.index("svname"), header.index("status")
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) > status and fields[0] == backend and fields[name] not in (
                "FRONTEND", "BACKEND"):
            print(fields[name], fields[status])
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load")
    load.add_argument("--url", required=True)
    load.add_argument("--host", required=True)
    load.add_argument("--expect", default="")
    load.add_argument("--workers", type=int, default=8)
    load.add_argument("--out", required=True)
    w = sub.add_parser("wait-ok")
    w.add_argument("file")
    w.add_argument("n", type=int)
    w.add_argument("timeout_s", type=float)
    s = sub.add_parser("servers")
    s.add_argument("socket")
    s.add_argument("backend")
    args = ap.parse_args()
    if args.cmd == "load":
        run_load(args)
        return 0
    if args.cmd == "wait-ok":
        return wait_ok(args.file, args.n, args.timeout_s)
    return servers(args.socket, args.backend)


if __name__ == "__main__":
    sys.exit(main())
