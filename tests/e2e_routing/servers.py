#!/usr/bin/python3
"""Small backends for the routing end-to-end tests (standard library only, asyncio).

    servers.py http  --port P --name NAME           HTTP/1.x: answers every request with
                                                      "backend=NAME\\nhost=...\\npath=...\\n"
    servers.py smtp  --port P --name NAME --spool DIR  SMTP sink: banner names NAME, every
                                                      message is written to DIR/<n>.eml
    servers.py greet --port P --name NAME           server-speaks-first (MySQL-like): sends a
                                                      greeting naming NAME on connect, then
                                                      echoes what it reads
    servers.py pg-tls --port P --name NAME --cert CRT --key KEY --to PORT
                                                      a PostgreSQL 17 server's direct TLS in
                                                      front of a plaintext one: TLS with ALPN
                                                      "postgresql" (else closed), then relays
                                                      to 127.0.0.1:PORT; logs each ALPN

Each prints "ready <port>" once listening. The HTTP side and the listen / ready / stop loop
(backlog 4096, so that a burst of connections in the single-flight test is not dropped by a short
accept queue) are tests/e2e/http_backend.py, shared with the cold-start fake platform.
"""

import argparse
import asyncio
import os
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "e2e"))
from http_backend import echo_body, serve, serve_http  # noqa: E402


async def http_conn(reader, writer, name):
    def respond(method, target, headers, _body):
        return 200, "text/plain", echo_body(name, method, target, headers)

    await serve_http(reader, writer, name, respond)


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


async def pump(reader, writer):
    """Copies reader to writer until EOF, then closes writer."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def greet_conn(reader, writer, name):
    try:
        writer.write(f"GREETING {name}\n".encode())
        await writer.drain()
    except ConnectionError:
        writer.close()
        return
    await pump(reader, writer)


async def pg_tls_conn(reader, writer, upstream_port):
    alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    print(f"connection alpn={alpn}", flush=True)
    if alpn != "postgresql":  # as PostgreSQL 17 does
        writer.close()
        return
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["http", "smtp", "greet", "pg-tls"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", required=True)
    ap.add_argument("--spool")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--to", type=int)
    args = ap.parse_args()
    tls = None
    if args.kind == "http":
        handler = lambda r, w: http_conn(r, w, args.name)  # noqa: E731
    elif args.kind == "smtp":
        os.makedirs(args.spool, exist_ok=True)
        handler = SmtpSink(args.name, args.spool).conn
    elif args.kind == "greet":
        handler = lambda r, w: greet_conn(r, w, args.name)  # noqa: E731
    else:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
        tls.set_alpn_protocols(["postgresql"])
        handler = lambda r, w: pg_tls_conn(r, w, args.to)  # noqa: E731
    await serve(handler, args.port, args.host, tls=tls)


if __name__ == "__main__":
    asyncio.run(main())
