#!/usr/bin/env python3
"""Regenerates tests/fuzz/corpus/routing/: seeds for routing_fuzzer.cpp.

Usage: make_routing_corpus.py [output dir]

An input is up to 8 records, each one SPOE message sent as its own NOTIFY. A record is a
message byte (0 route-http, 1 route-pg, 2 route-tcp, 3 route-tls) followed, for each argument
of that message in contract order (handlers/include/spoa/handlers/routing/contract.hpp), by a
tag byte and a value:

    0 absent          1 the argument's own type    2 STRING    3 BINARY
    4 INT32 (4 B)     5 INT64 (8 B)                6 IPV4 (4 B)  7 IPV6 (16 B)

STRING and BINARY values are a 2-byte big-endian length and the bytes. The argument orders are
  route-http: host, path, src
  route-pg:   startup, sni, src
  route-tcp:  service, dst, dst_port, src, authority
  route-tls:  service, sni, alpn, dst_port, src

The seeds name every route of the fuzzer's fixed table (exact, wildcard, path, SSRF-refused,
forbidden, unavailable, asleep), hosts HAProxy really forwards (ports, upper case, trailing
dots, IPv6 literals, oversized), PostgreSQL startup, SSLRequest, GSSENCRequest, CancelRequest
and direct TLS packets (valid and broken), each route-tcp routing key, wrong argument types,
and a few pipelined sequences (the same miss twice: coalesced; a miss then a hit). The
regressions in REGRESSIONS below are inputs the fuzzer once failed on.

Plain python3, standard library only. File names are stable, so a re-run only rewrites files
whose content changed.
"""

import ipaddress
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "corpus", "routing")

HTTP, PG, TCP, TLS = 0, 1, 2, 3


class Arg(bytes):
    """An encoded argument (tag and value); plain str/bytes given to the message helpers
    below are wrapped with s() instead."""


ABSENT = Arg(b"\x00")

# Inputs that once made routing_fuzzer fail, as hex, keyed by file name (kept here so that
# they stay in the corpus when it is regenerated).
REGRESSIONS = {}


def s(text):
    """An argument of its own type holding a STRING (or BINARY for startup) value."""
    data = text.encode() if isinstance(text, str) else text
    return Arg(b"\x01" + struct.pack(">H", len(data)) + data)


def string(text):
    data = text.encode() if isinstance(text, str) else text
    return Arg(b"\x02" + struct.pack(">H", len(data)) + data)


def binary(data):
    return Arg(b"\x03" + struct.pack(">H", len(data)) + data)


def ipv4(a, b, c, d):
    return Arg(b"\x06" + bytes([a, b, c, d]))


def ipv6(text):
    return Arg(b"\x07" + ipaddress.IPv6Address(text).packed)


def int32(v):
    return Arg(b"\x04" + struct.pack(">i", v))


def int64(v):
    return Arg(b"\x05" + struct.pack(">q", v))


SRC = ipv4(192, 0, 2, 10)


def arg(v):
    return v if isinstance(v, Arg) else s(v)


def http(host, path=ABSENT, src=SRC):
    host, path = arg(host), arg(path)
    return bytes([HTTP]) + host + path + src


def pg(startup, sni=ABSENT, src=SRC):
    startup, sni = arg(startup), arg(sni)
    return bytes([PG]) + startup + sni + src


def tcp(service, dst=ABSENT, dst_port=ABSENT, src=SRC, authority=ABSENT):
    service, authority = arg(service), arg(authority)
    return bytes([TCP]) + service + dst + dst_port + src + authority


def tls(sni, service="tls", alpn="h2", dst_port=None, src=SRC):
    sni, service, alpn = arg(sni), arg(service), arg(alpn)
    dst_port = int32(443) if dst_port is None else dst_port
    return bytes([TLS]) + service + sni + alpn + dst_port + src


def startup_packet(params, version=(3, 0)):
    """A PostgreSQL StartupMessage: length, protocol version, name\\0value\\0 pairs, \\0."""
    body = struct.pack(">HH", *version)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack(">I", len(body) + 4) + body


def special_packet(code, extra=b""):
    return struct.pack(">II", 8 + len(extra), code) + extra


SSL_REQUEST = special_packet(80877103)
GSS_REQUEST = special_packet(80877104)
CANCEL_REQUEST = special_packet(80877102, struct.pack(">II", 4242, 0xDEADBEEF))
# The first bytes of a TLS record carrying a ClientHello (PostgreSQL 17 direct TLS).
TLS_HELLO = bytes.fromhex("16030100c4010000c00303") + bytes(32)


def corpus():
    files = {}
    # route-http: every kind of table entry, and Host headers as clients send them.
    files["http-exact"] = http("app.fuzz.test", "/", SRC)
    files["http-exact-port-case-dot"] = http("APP.Fuzz.Test.:8443", "/index.html")
    files["http-wildcard"] = http("acme.tenants.fuzz.test", "/")
    files["http-wildcard-deep"] = http("a.b.tenants.fuzz.test")
    files["http-wildcard-bare"] = http("tenants.fuzz.test")
    files["http-path-api"] = http("paths.fuzz.test", "/api/users?id=1")
    files["http-path-api-v2"] = http("paths.fuzz.test", "/api/v2/x")
    files["http-path-apiary"] = http("paths.fuzz.test", "/apiary")
    files["http-path-root"] = http("paths.fuzz.test", "/")
    files["http-ssrf-public"] = http("ssrf.fuzz.test")
    files["http-ssrf-metadata"] = http("metadata.fuzz.test", "/latest/meta-data/")
    files["http-forbidden"] = http("forbidden.fuzz.test")
    files["http-unavailable"] = http("down.fuzz.test")
    files["http-asleep"] = http("asleep.fuzz.test")
    files["http-unknown"] = http("nobody.example.org")
    files["http-ipv6-literal"] = http("[2001:DB8::1]:80")
    files["http-host-empty"] = http("")
    files["http-host-absent"] = http(ABSENT)
    files["http-host-spaces"] = http(" \tapp.fuzz.test \t")
    files["http-host-only-port"] = http(":80")
    files["http-host-dots"] = http("...")
    files["http-host-nul"] = http(b"app.fuzz.test\x00evil")
    files["http-host-oversized"] = http("a" * 300 + ".tenants.fuzz.test")
    files["http-host-binary"] = http(binary(b"app.fuzz.test"))
    files["http-host-int"] = http(int32(80))
    files["http-src-ipv6"] = http("app.fuzz.test", "/", ipv6("2001:db8::7"))
    files["http-src-string"] = http("app.fuzz.test", "/", string("10.0.0.1"))
    # route-pg: the packets a PostgreSQL client can open with.
    files["pg-startup-app1"] = pg(startup_packet([("user", "alice"), ("database", "app1")]))
    files["pg-startup-user-only"] = pg(startup_packet([("user", "app1")]))
    files["pg-startup-wildcard"] = pg(
        startup_packet(
            [("user", "bob"), ("database", "x.db.fuzz.test"), ("application_name", "psql")]
        )
    )
    files["pg-startup-ssrf"] = pg(startup_packet([("user", "u"), ("database", "ssrf-db")]))
    files["pg-startup-forbidden"] = pg(startup_packet([("user", "u"), ("database", "locked")]))
    files["pg-startup-unknown"] = pg(startup_packet([("user", "u"), ("database", "nope")]))
    files["pg-startup-options"] = pg(
        startup_packet([("user", "u"), ("database", "app1"), ("options", "-c endpoint=ep-1")])
    )
    files["pg-startup-empty-params"] = pg(startup_packet([]))
    files["pg-startup-v2"] = pg(startup_packet([("user", "u")], (2, 0)))
    files["pg-startup-truncated"] = pg(startup_packet([("user", "u"), ("database", "app1")])[:-3])
    files["pg-startup-unterminated"] = pg(
        struct.pack(">IHH", 17, 3, 0) + b"user\0alice"
    )
    files["pg-length-huge"] = pg(struct.pack(">IHH", 0x7FFFFFFF, 3, 0) + b"user\0u\0\0")
    files["pg-ssl-request"] = pg(SSL_REQUEST)
    files["pg-gss-request"] = pg(GSS_REQUEST)
    files["pg-cancel-request"] = pg(CANCEL_REQUEST)
    files["pg-direct-tls"] = pg(TLS_HELLO, "app1")
    files["pg-direct-tls-no-sni"] = pg(TLS_HELLO)
    files["pg-startup-string-type"] = pg(
        string(startup_packet([("user", "u"), ("database", "app1")]))
    )
    files["pg-startup-absent"] = pg(ABSENT)
    files["pg-empty"] = pg(b"")
    # route-tcp: each routing key of the fuzzer's tcp_services.
    files["tcp-smtp-port"] = tcp("smtp", ipv4(127, 0, 0, 5), int32(2525))
    files["tcp-mysql-dst"] = tcp("mysql", ipv4(127, 0, 0, 5), int32(3306))
    files["tcp-pgbouncer-dst-addr"] = tcp("pgbouncer", ipv6("::1"), int32(6432))
    files["tcp-src"] = tcp("srcsvc", ABSENT, int32(1), ipv4(10, 1, 2, 3))
    files["tcp-proxy-authority"] = tcp("proxy", authority="Tenant.Fuzz.Test:443")
    files["tcp-sniff-sni-absent"] = tcp("sniff")
    files["tcp-default-ssrf"] = tcp(ABSENT, ipv4(127, 0, 0, 1), int32(9999))
    files["tcp-port-zero"] = tcp("smtp", dst_port=int32(0))
    files["tcp-port-negative"] = tcp("smtp", dst_port=int32(-25))
    files["tcp-port-int64-big"] = tcp("smtp", dst_port=int64(2**40 + 2525))
    files["tcp-port-string"] = tcp("smtp", dst_port=string("2525"))
    files["tcp-dst-string"] = tcp("mysql", dst=string("127.0.0.5"))
    # route-tls: SNI routing.
    files["tls-exact"] = tls("secure.fuzz.test")
    files["tls-wildcard"] = tls("App.TLS.fuzz.test.")
    files["tls-forbidden"] = tls("forbidden.tls.fuzz.test")
    files["tls-no-sni"] = tls(ABSENT)
    files["tls-sni-empty"] = tls("")
    files["tls-port-out-of-range"] = tls("secure.fuzz.test", dst_port=int32(70000))
    files["tls-alpn-binary"] = tls("secure.fuzz.test", alpn=binary(b"\x02h2"))
    # Pipelined sequences: coalesced misses, then hits and negative hits of the same ids.
    files["seq-coalesced"] = http("burst.tenants.fuzz.test") * 3
    files["seq-miss-then-hit"] = http("paths.fuzz.test", "/api") + http("paths.fuzz.test", "/")
    files["seq-negative"] = http("gone.example.org") * 2 + http("forbidden.fuzz.test") * 2
    files["seq-all-protocols"] = (
        http("app.fuzz.test")
        + pg(startup_packet([("user", "u"), ("database", "app1")]))
        + tcp("smtp", dst_port=int32(2525))
        + tls("secure.fuzz.test")
    )
    for name, hexdata in REGRESSIONS.items():
        files[name] = bytes.fromhex(hexdata)
    return files


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    os.makedirs(out, exist_ok=True)
    files = corpus()
    for name, data in files.items():
        path = os.path.join(out, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                if f.read() == data:
                    continue
        with open(path, "wb") as f:
            f.write(data)
    print(f"{len(files)} inputs in {out}")


if __name__ == "__main__":
    main()
