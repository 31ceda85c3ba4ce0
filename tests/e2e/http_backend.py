"""What the end-to-end tests' fake backends share (standard library only, asyncio): the HTTP/1.x
side of tests/e2e_routing/servers.py and of the backends that tests/e2e_coldstart/fake_platform.py
starts, and the listen / "ready" / stop-on-signal loop of every one of them.

    read_request(reader)      one request: (method, target, version, headers, body)
    echo_body(name, ...)      the answer the tests check: "backend=NAME\\nhost=...\\npath=...\\n
                              method=...\\n"
    serve_http(reader, writer, name, respond)
                              one client connection: each request goes to respond(), each
                              answer carries "X-Backend: NAME"; keep-alive unless the client is
                              HTTP/1.0 or sends "Connection: close"
    serve(handler, port)      listen (backlog 4096, so that a burst of connections is not
                              dropped by a short accept queue), print "ready <port>", serve until
                              SIGTERM or SIGINT

Imported by scripts that put tests/e2e on sys.path; run them with /usr/bin/python3.
"""

import asyncio
import signal
import socket

BACKLOG = 4096
REASONS = {200: "OK", 503: "Service Unavailable"}


async def read_request(reader):
    """One HTTP/1.x request: (method, target, version, headers with lower-case names, body).
    Raises asyncio.IncompleteReadError at EOF."""
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


def echo_body(name, method, target, headers):
    """What a backend answers to an ordinary request: who it is and what it was asked."""
    return (f"backend={name}\nhost={headers.get('host', '')}\npath={target}\n"
            f"method={method}\n").encode()


async def serve_http(reader, writer, name, respond):
    """Serves one connection. respond(method, target, headers, body) returns
    (status, content type, body bytes)."""
    try:
        while True:
            method, target, version, headers, data = await read_request(reader)
            status, ctype, body = respond(method, target, headers, data)
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            writer.write(
                f"HTTP/1.1 {status} {REASONS.get(status, 'X')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nX-Backend: {name}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode() + body)
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(handler, port, host="127.0.0.1", on_listen=None, tls=None):
    """Listens on host:port (SO_REUSEADDR), calls on_listen() right after listen(), prints
    "ready <port>" once connections are served by handler(reader, writer) (behind TLS with
    the ssl.SSLContext `tls`), and returns after SIGTERM or SIGINT."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(BACKLOG)
    if on_listen is not None:
        on_listen()
    server = await asyncio.start_server(handler, sock=sock, backlog=BACKLOG, ssl=tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {port}", flush=True)
    await stop.wait()
    server.close()
