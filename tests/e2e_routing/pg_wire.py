#!/usr/bin/python3
"""A small PostgreSQL client for the tests, for what psql 15 cannot do: direct TLS (TLS at
once, ALPN "postgresql", as PostgreSQL 17's sslnegotiation=direct), a GSSENCRequest without
Kerberos credentials, and reading an ErrorResponse's fields (psql prints the message but not
the SQLSTATE of a failed connection). Trust authentication only. Standard library.

    session = pg_wire.connect(port, "alpha", negotiate=[GSSENC, SSL])   # or tls=context
    session.answers    -> [b"N", b"N"]   (one byte per negotiation request)
    session.error      -> {"C": "3D000", "M": "...", ...} when the connection was refused
    session.query("select 1") -> [("1",)]
"""

import socket
import struct

SSL = 80877103
GSSENC = 80877104
PROTOCOL_3_0 = 196608


class Refused(Exception):
    pass


def startup_message(user, database):
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", user), ("database", database))) + b"\0"
    return struct.pack("!II", 8 + len(params), PROTOCOL_3_0) + params


def negotiation_request(code):
    return struct.pack("!II", 8, code)


def error_fields(body):
    """ErrorResponse body -> {field code: text}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class Session:
    def __init__(self, sock):
        self.sock = sock
        self.answers = []
        self.error = None
        self.parameters = {}

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise Refused(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def message(self):
        kind = self.recv_exact(1)
        (length,) = struct.unpack("!I", self.recv_exact(4))
        return kind, self.recv_exact(length - 4)

    def wait_ready(self):
        """After the StartupMessage: authentication (trust), parameters, ReadyForQuery; or an
        ErrorResponse, kept in self.error."""
        while True:
            kind, body = self.message()
            if kind == b"E":
                self.error = error_fields(body)
                return False
            if kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
                raise Refused(f"authentication request {body[:4].hex()}: only trust is supported")
            if kind == b"S":
                name, value = body[:-1].split(b"\0", 1)
                self.parameters[name.decode()] = value.decode()
            if kind == b"Z":
                return True

    def query(self, sql):
        """Simple query -> rows of text values."""
        payload = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!I", 4 + len(payload)) + payload)
        rows = []
        while True:
            kind, body = self.message()
            if kind == b"D":
                (count,) = struct.unpack("!H", body[:2])
                pos, row = 2, []
                for _ in range(count):
                    (n,) = struct.unpack("!i", body[pos:pos + 4])
                    pos += 4
                    row.append(None if n < 0 else body[pos:pos + n].decode())
                    pos += max(n, 0)
                rows.append(tuple(row))
            elif kind == b"E":
                raise Refused(f"query failed: {error_fields(body)}")
            elif kind == b"Z":
                return rows

    def close(self):
        try:
            self.sock.sendall(b"X\0\0\0\4")
        except OSError:
            pass
        self.sock.close()


def connect(port, database, user="postgres", negotiate=(), tls=None, server_hostname=None,
            timeout=10.0):
    """Open a session. `negotiate`: request codes sent first, one at a time, each answer byte
    kept in session.answers (stops at the first answer that is not 'N'). `tls`: an
    ssl.SSLContext for direct TLS (set its ALPN protocols to ["postgresql"])."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock = tls.wrap_socket(raw, server_hostname=server_hostname) if tls else raw
    session = Session(sock)
    for code in negotiate:
        sock.sendall(negotiation_request(code))
        answer = session.recv_exact(1)
        session.answers.append(answer)
        if answer == b"E":
            (length,) = struct.unpack("!I", session.recv_exact(4))
            session.error = error_fields(session.recv_exact(length - 4))
            return session
        if answer != b"N":
            return session
    sock.sendall(startup_message(user, database))
    session.wait_ready()
    return session
