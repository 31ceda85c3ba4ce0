#!/usr/bin/python3
"""HTTP through HAProxy with the echo handler (curl as the client): every SPOE argument (host,
path, method, src, int(-3), int(-9000000000), bool(1), bool(0), req.hdrs_bin) comes back as a
txn variable with the same value AND the same type, checked with HAProxy's own `debug`
converter, which logs the sample type to the ring buffer buf0 (read via `show events buf0`).
The client is 127.0.0.1 (src ipv4) and, when the host has IPv6 loopback, ::1 (src ipv6)."""

import re
import socket
import subprocess

import harness
from harness import check, check_eq

ARGS = [
    # name, sample expression, expected HAProxy sample type
    ("host", "req.hdr(host)", "str"),
    ("path", "path", "str"),
    ("method", "method", "str"),
    ("src", "src", None),  # ipv4 or ipv6 depending on the client
    ("neg", "int(-3)", "sint"),
    ("big", "int(-9000000000)", "sint"),
    ("yes", "bool(1)", "bool"),
    ("no", "bool(0)", "bool"),
    ("hdrs", "req.hdrs_bin", "bin"),
]


def parse_hdrs_bin(b):
    """req.hdrs_bin: (varint len, name, varint len, value)* then 00 00 (protocol/README.md §4)."""
    out, pos = [], 0
    while True:
        n, pos = harness.decode_varint(b, pos)
        name = b[pos:pos + n]
        pos += n
        m, pos = harness.decode_varint(b, pos)
        value = b[pos:pos + m]
        pos += m
        if n == 0 and m == 0:
            check_eq(pos, len(b), "hdrs_bin ends after its terminator")
            return out
        out.append((name.decode(), value.decode()))


def ring_types(env):
    """{prefix: (type, value)} from `show events buf0` (debug converter output)."""
    out = {}
    for m in re.finditer(r"\[debug\] (\w+): type=(\w+) <(.*)>", env.cli("show events buf0")):
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def curl(url, headers):
    argv = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n__status=%{http_code}\n"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    res = subprocess.run(argv, capture_output=True, timeout=20)
    check_eq(res.returncode, 0, f"curl exit status (stderr: {res.stderr!r})")
    return res.stdout


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def test(env):
    agent = env.start_agent()
    fe_port = env.port()
    v6 = ipv6_loopback()
    fe_port6 = env.port() if v6 else None

    body_lines = [f"{name}=%[var(txn.e.{name})]" for name, _, _ in ARGS if name != "hdrs"]
    body_lines += [
        "hdrs_hex=%[var(txn.e.hdrs),hex]",
        "orig_hex=%[req.hdrs_bin,hex]",
        "err=%[var(txn.e.err)]",
        # debug() logs "[debug] T_<name>: type=<sample type> <value>" to the ring buf0; the
        # requests are sent one at a time and the last line per prefix is the latest.
        "dbg=" + "".join(f"%[var(txn.e.{name}),debug(T_{name},buf0)]" for name, _, _ in ARGS),
    ]
    cfg, _ = env.render(
        fe_port=fe_port,
        server_addr=agent.listen,
        frontend_extra=[f"bind [::1]:{fe_port6}"] if v6 else [],
        rules=[
            # fail closed: no variable from the agent, no 200
            'http-request return status 503 content-type text/plain '
            'lf-string "spoe-missing err=%[var(txn.e.err)]\\n" unless { var(txn.e.host) -m found }',
            'http-request return status 200 content-type text/plain lf-string "'
            + "\\n".join(body_lines) + '\\n"',
        ],
        messages=["echo"],
        message_sections="spoe-message echo\n    args "
        + " ".join(f"{n}={e}" for n, e, _ in ARGS)
        + "\n    event on-frontend-http-request\n",
    )
    env.start_haproxy(cfg)

    cases = [("127.0.0.1", f"127.0.0.1:{fe_port}", "ipv4")]
    if v6:
        cases.append(("::1", f"[::1]:{fe_port6}", "ipv6"))
    else:
        harness.log("no IPv6 loopback: skipping the IPv6 src case")

    for i, (client_ip, hostport, src_type) in enumerate(cases):
        token = f"tok-{i}-\u00e9"  # non-ASCII (UTF-8) bytes in a header value
        path = f"/some/path-{i}"
        out = curl(f"http://{hostport}{path}?q=1", {"X-E2e-Token": token})
        text = out.decode("latin-1")
        status = re.search(r"__status=(\d+)", text).group(1)
        check_eq(status, "200", f"HTTP status ({text!r})")
        kv = harness.parse_kv_body(out.split(b"\n__status=")[0])
        harness.log(f"{client_ip}: {kv}")

        check_eq(kv.get("err"), "", "set-on-error variable (no SPOE error)")
        check_eq(kv.get("host"), hostport, "txn.e.host")
        check_eq(kv.get("path"), path, "txn.e.path (path without query)")
        check_eq(kv.get("method"), "GET", "txn.e.method")
        check_eq(kv.get("src"), client_ip, "txn.e.src")
        check_eq(kv.get("neg"), "-3", "txn.e.neg (negative int)")
        check_eq(kv.get("big"), "-9000000000", "txn.e.big (negative int beyond 32 bits)")
        check_eq(kv.get("yes"), "1", "txn.e.yes (bool true)")
        check_eq(kv.get("no"), "0", "txn.e.no (bool false)")
        check(kv.get("hdrs_hex"), "txn.e.hdrs is set")
        check_eq(kv.get("hdrs_hex"), kv.get("orig_hex"),
                 "txn.e.hdrs == req.hdrs_bin, byte for byte")
        headers = parse_hdrs_bin(bytes.fromhex(kv["hdrs_hex"]))
        check(("x-e2e-token", token) in headers,
              f"x-e2e-token header inside the echoed hdrs_bin: {headers}")
        check(("host", hostport) in headers, f"host header inside the echoed hdrs_bin: {headers}")

        # Types as HAProxy sees them.
        types = ring_types(env)
        harness.log(f"types: { {k: v[0] for k, v in types.items()} }")
        for name, _, want in ARGS:
            want = want or src_type
            got = types.get(f"T_{name}")
            check(got is not None, f"debug() output for {name} in buf0: {types}")
            check_eq(got[0], want, f"HAProxy sample type of txn.e.{name}")
        check_eq(types["T_neg"][1], "-3", "txn.e.neg value in debug output")
        check_eq(types["T_src"][1], client_ip, "txn.e.src value in debug output")

    # The agent really handled the messages (and HAProxy logged no SPOE error).
    m = agent.metrics()
    check_eq(agent.metric("spoa_messages_total", 'message="echo"', m), float(len(cases)),
             "spoa_messages_total{message=echo}")
    check_eq([s for s in env.spoe_log_statuses(expect=len(cases)) if s != 0], [],
             "SPOE error statuses in HAProxy's log")


if __name__ == "__main__":
    harness.main(test)
