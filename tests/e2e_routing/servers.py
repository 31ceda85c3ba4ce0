#!/usr/bin/python3
"""Small backends for the routing end-to-end tests (standard library only, asyncio).

    servers.py http  --port P --name NAME           HTTP/1.x: answers every request with
                                                      "backend=NAME\\nhost=...\\npath=...\\n"
    servers.py smtp  --port P --name NAME --spool DIR  SMTP sink: banner names NAME, every
                                                      message is written to DIR/<n>.eml
    servers.py greet --port P --name NAME           server-speaks-first (MySQL-like): sends a
                                                      greeting naming NAME on connect, then
                                                      echoes what it reads

Each prints "ready <port>" once listening. Listen backlog 4096 so that a burst of connections
(the single-flight test) is not dropped by a short accept queue.
"""

import argparse
import asyncio
import os
import signal

BACKLOG = 4096


async def read_request(reader):
    """One HTTP/1.x request: (method, target, version, headers with lower-case names, body).
    Raises asyncio.IncompleteReadError at EOF. Also used by the cold-start fake platform."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = (lines[0].split(" ") + ["", "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, target, version, headers, body


async def http_conn(reader, writer, name):
    try:
        while True:
            method, target, version, headers, _ = await read_request(reader)
            body = (f"backend={name}\nhost={headers.get('host', '')}\npath={target}\n"
                    f"method={method}\n").encode()
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"X-Backend: {name}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                .encode() + body)
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


class SmtpSink:
    def __init__(self, name, spool):
        self.name = name
        self.spool = spool
        self.count = 0

    async def conn(self, reader, writer):
        def send(line):
            writer.write(line.encode() + b"\r\n")

        mail_from, rcpts = None, []
        try:
            send(f"220 {self.name} ESMTP spoa-test-sink")
            await writer.drain()
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                line = raw.decode("latin-1").rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    send(f"250-{self.name} greets you")
                    send("250-8BITMIME")
                    send("250 SIZE 10485760")
                elif verb == "HELO":
                    send(f"250 {self.name}")
                elif verb == "MAIL":
                    mail_from, rcpts = line[10:].strip(), []
                    send("250 OK")
                elif verb == "RCPT":
                    rcpts.append(line[8:].strip())
                    send("250 OK")
                elif verb == "DATA":
                    if not rcpts:
                        send("503 need RCPT")
                        await writer.drain()
                        continue
                    send("354 end with <CRLF>.<CRLF>")
                    await writer.drain()
                    data = []
                    while True:
                        d = await reader.readline()
                        if not d:
                            return
                        if d in (b".\r\n", b".\n"):
                            break
                        data.append(d[1:] if d.startswith(b"..") else d)
                    self.count += 1
                    path = os.path.join(self.spool, f"{self.count}.eml")
                    with open(path + ".tmp", "wb") as f:
                        f.write(f"X-Sink: {self.name}\r\nX-Envelope-From: {mail_from}\r\n"
                                f"X-Envelope-To: {','.join(rcpts)}\r\n".encode())
                        f.write(b"".join(data))
                    os.rename(path + ".tmp", path)
                    send(f"250 queued as {self.name}-{self.count}")
                elif verb in ("RSET", "NOOP"):
                    send("250 OK")
                elif verb == "QUIT":
                    send(f"221 {self.name} bye")
                    await writer.drain()
                    break
                else:
                    send("502 command not implemented")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def greet_conn(reader, writer, name):
    try:
        writer.write(f"GREETING {name}\n".encode())
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["http", "smtp", "greet"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", required=True)
    ap.add_argument("--spool")
    args = ap.parse_args()
    if args.kind == "http":
        handler = lambda r, w: http_conn(r, w, args.name)  # noqa: E731
    elif args.kind == "smtp":
        os.makedirs(args.spool, exist_ok=True)
        handler = SmtpSink(args.name, args.spool).conn
    else:
        handler = lambda r, w: greet_conn(r, w, args.name)  # noqa: E731
    server = await asyncio.start_server(handler, args.host, args.port, backlog=BACKLOG,
                                        reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {args.port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
