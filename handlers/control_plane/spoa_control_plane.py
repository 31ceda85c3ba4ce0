#!/usr/bin/python3
"""Reference control plane for spoa-agent's remote resolver (msgpack-RPC over TCP or Unix).

It is the documented example for writing your own control plane (see PROTOCOL.md next to
it) and the server the agent's tests run against. Dependencies: python3 and python3-msgpack
(Debian packages), nothing else.

    spoa_control_plane.py --listen 127.0.0.1:7001 --routes routes.json [--admin 127.0.0.1:7002]
                          [--delay-ms N]

Addresses are host:port, [v6]:port or unix:/path; port 0 picks a free port. Once listening it
prints one line on stdout: `ready listen=<address> admin=<address or ->`.

The routes file is JSON: {"routes": {"<protocol>": {"<id>": <route>}}}, protocol one of http,
postgres, tcp, tls; an id may be a wildcard "*.example.com" (the longest suffix wins). A route
is the `resolve` result (endpoints, paths, metadata, ttl_ms, timeout_ms, state) or an error
(error: not_found|forbidden|unavailable|timeout|internal, reason, retry_after_ms); delay_ms
makes this route answer late. SIGHUP re-reads the file and pushes `invalidate` for every id that
changed.

The admin channel (optional, for tests and operators) takes one command per line and answers
one JSON line:
    stats                        calls per method and per "<protocol>/<id>", wakes, agents
    set <protocol> <id> <json>   add or replace a route, push invalidate [id, protocol]
    delete <protocol> <id>       remove a route, push invalidate [id, protocol]
    invalidate <id> [protocol]   push invalidate only
    pause | resume               stop / start answering requests (they are still counted)
    delay <ms>                   artificial delay before every answer
    reset                        zero the counters
"""

import argparse
import asyncio
import collections
import json
import os
import signal
import sys

import msgpack

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
RESULT_KEYS = ("endpoints", "paths", "metadata", "ttl_ms", "timeout_ms", "state")
PROTOCOLS = ("http", "postgres", "tcp", "tls")


class RpcError(Exception):
    """An error answer: {code, reason, retry_after_ms}."""

    def __init__(self, code, reason, retry_after_ms=None):
        super().__init__(reason)
        self.payload = {"code": code, "reason": reason}
        if retry_after_ms is not None:
            self.payload["retry_after_ms"] = retry_after_ms


def load_routes(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    routes = doc.get("routes", {})
    for proto, table in routes.items():
        if proto not in PROTOCOLS or not isinstance(table, dict):
            raise ValueError(f"{path}: routes.{proto}: unknown protocol or not a map")
    return {p: dict(routes.get(p, {})) for p in PROTOCOLS}


class ControlPlane:
    def __init__(self, routes_path, delay_ms):
        self.routes_path = routes_path
        self.routes = load_routes(routes_path)
        self.delay_ms = delay_ms
        self.paused = False
        self.agents = set()  # StreamWriters of connected agents
        self.reset()

    def reset(self):
        self.calls = collections.Counter()  # method -> count (requests and notifications)
        self.ids = collections.defaultdict(collections.Counter)  # method -> "proto/id" -> count
        self.wakes = []

    # ---- routes ----

    def lookup(self, proto, rid):
        table = self.routes.get(proto, {})
        if rid in table:
            return table[rid]
        best = None
        for key, route in table.items():
            if key.startswith("*.") and rid.endswith(key[1:]) and len(rid) > len(key) - 1:
                if best is None or len(key) > len(best[0]):
                    best = (key, route)
        return best[1] if best else None

    def push_invalidate(self, rid, proto=None):
        params = [rid] if proto is None else [rid, proto]
        data = msgpack.packb([NOTIFICATION, "invalidate", params], use_bin_type=True)
        for w in list(self.agents):
            if not w.is_closing():
                w.write(data)
        return len(self.agents)

    def reload(self):
        try:
            fresh = load_routes(self.routes_path)
        except (OSError, ValueError) as e:
            print(f"reload failed, keeping the routes: {e}", file=sys.stderr)
            return
        old, self.routes = self.routes, fresh
        for proto in PROTOCOLS:
            for rid in set(old[proto]) | set(fresh[proto]):
                if old[proto].get(rid) != fresh[proto].get(rid):
                    self.push_invalidate(rid, proto)

    # ---- methods ----

    async def resolve(self, params):
        req = self.single_map(params, "resolve")
        rid, proto = str(req.get("id", "")), str(req.get("protocol", "http"))
        self.ids["resolve"][f"{proto}/{rid}"] += 1
        route = self.lookup(proto, rid)
        if route is None:
            raise RpcError("not_found", f"no {proto} route for '{rid}'")
        if route.get("delay_ms"):
            await asyncio.sleep(route["delay_ms"] / 1000)
        if "error" in route:
            raise RpcError(route["error"], route.get("reason", route["error"]),
                           route.get("retry_after_ms"))
        return {k: route[k] for k in RESULT_KEYS if k in route}

    async def wake(self, params):
        req = self.single_map(params, "wake")
        rid, proto = str(req.get("id", "")), str(req.get("protocol", "http"))
        self.ids["wake"][f"{proto}/{rid}"] += 1
        self.wakes.append({"id": rid, "protocol": proto})
        if self.lookup(proto, rid) is None:
            raise RpcError("not_found", f"no {proto} route for '{rid}'")
        return None  # starting (or already up): the agent polls resolve for state "ready"

    @staticmethod
    def single_map(params, method):
        if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], dict):
            raise RpcError("internal", f"{method} expects params [{{id, protocol, ...}}]")
        return params[0]

    # ---- agent connections ----

    async def serve_agent(self, reader, writer):
        self.agents.add(writer)
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while data := await reader.read(65536):
                unpacker.feed(data)
                for msg in unpacker:
                    self.dispatch(msg, writer)
        except (ConnectionError, ValueError, msgpack.UnpackException) as e:
            print(f"agent connection closed: {e!r}", file=sys.stderr)
        finally:
            self.agents.discard(writer)
            writer.close()

    def dispatch(self, msg, writer):
        if not isinstance(msg, list) or not msg:
            raise ValueError(f"not a msgpack-RPC message: {msg!r}")
        if msg[0] == REQUEST and len(msg) == 4:
            _, msgid, method, params = msg
            self.calls[method] += 1
            # Each request is a task: a slow answer does not hold up the others (out of order).
            asyncio.get_running_loop().create_task(self.answer(writer, msgid, method, params))
        elif msg[0] == NOTIFICATION and len(msg) == 3:
            _, method, params = msg
            self.calls[method] += 1
            if params and isinstance(params[0], dict) and "id" in params[0]:
                proto = params[0].get("protocol", "-")
                self.ids[method][f"{proto}/{params[0]['id']}"] += 1
        else:
            raise ValueError(f"unexpected message: {msg!r}")

    async def answer(self, writer, msgid, method, params):
        if self.paused:
            return  # never answered: the agent's call times out
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        error, result = None, None
        try:
            handler = {"resolve": self.resolve, "wake": self.wake}.get(method)
            if handler is None:
                raise RpcError("internal", f"unknown method '{method}'")
            result = await handler(params)
        except RpcError as e:
            error = e.payload
        if self.paused or writer.is_closing():
            return
        writer.write(msgpack.packb([RESPONSE, msgid, error, result], use_bin_type=True))

    # ---- admin channel ----

    async def serve_admin(self, reader, writer):
        try:
            while line := await reader.readline():
                try:
                    reply = self.admin(line.decode().strip())
                except Exception as e:  # a bad command must not end the server
                    reply = {"ok": False, "error": str(e)}
                writer.write((json.dumps(reply, sort_keys=True) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def admin(self, line):
        cmd, _, rest = line.partition(" ")
        if cmd == "stats":
            return {"ok": True, "calls": dict(self.calls),
                    "ids": {m: dict(c) for m, c in self.ids.items()},
                    "wakes": self.wakes, "agents": len(self.agents), "paused": self.paused}
        if cmd == "set":
            proto, rid, route = rest.split(" ", 2)
            if proto not in PROTOCOLS:
                raise ValueError(f"unknown protocol {proto}")
            self.routes[proto][rid] = json.loads(route)
            return {"ok": True, "pushed": self.push_invalidate(rid, proto)}
        if cmd == "delete":
            proto, rid = rest.split(" ", 1)
            self.routes[proto].pop(rid, None)
            return {"ok": True, "pushed": self.push_invalidate(rid, proto)}
        if cmd == "invalidate":
            args = rest.split()
            return {"ok": True, "pushed": self.push_invalidate(*args[:2])}
        if cmd in ("pause", "resume"):
            self.paused = cmd == "pause"
            return {"ok": True}
        if cmd == "delay":
            self.delay_ms = int(rest)
            return {"ok": True}
        if cmd == "reset":
            self.reset()
            return {"ok": True}
        raise ValueError(f"unknown command '{cmd}'")


async def listen(address, handler):
    """Starts a server on host:port, [v6]:port or unix:/path; returns (server, bound address)."""
    if address.startswith("unix:"):
        path = address[5:]
        if os.path.exists(path):
            os.unlink(path)
        server = await asyncio.start_unix_server(handler, path)
        return server, address
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    server = await asyncio.start_server(handler, host, int(port))
    bound = server.sockets[0].getsockname()
    return server, (f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}")


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="agent address: host:port or unix:/path")
    ap.add_argument("--routes", required=True, help="routes file (JSON)")
    ap.add_argument("--admin", help="admin channel address (line-based)")
    ap.add_argument("--delay-ms", type=int, default=0, help="delay before every answer")
    args = ap.parse_args()

    cp = ControlPlane(args.routes, args.delay_ms)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, cp.reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    servers = []
    server, bound = await listen(args.listen, cp.serve_agent)
    servers.append(server)
    admin_bound = "-"
    if args.admin:
        admin_server, admin_bound = await listen(args.admin, cp.serve_admin)
        servers.append(admin_server)
    print(f"ready listen={bound} admin={admin_bound}", flush=True)
    await stop.wait()
    for s in servers:
        s.close()
    for w in list(cp.agents):
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
