#!/usr/bin/python3
"""`option spop-check`: HAProxy's SPOP health check reports the agent server UP (L7OK, a real
HELLO/AGENT-HELLO exchange, not just a TCP connect); stopping the agent takes it DOWN; a
listener that is not an SPOP agent stays DOWN; restarting the agent on the same port brings it
back UP; requests while it is DOWN fail closed at once (503, set-on-error set)."""

import socket
import threading
import time

import harness
from harness import check, check_eq

PROCESSING_MS = 2000


def check_fields(env):
    row = env.server_row()
    return row.get("status"), row.get("check_status"), row.get("check_desc", "")


def request(env, fe_port):
    t0 = time.monotonic()
    status, _, body = harness.http_request("127.0.0.1", fe_port, "GET", "/x", timeout=10)
    return status, harness.parse_kv_body(body), time.monotonic() - t0


class NotAnAgent:
    """A TCP listener that answers anything with an HTTP response and closes."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                c.settimeout(1)
                c.recv(4096)
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            c.close()

    def close(self):
        # shutdown() wakes the thread blocked in accept(); close() alone would leave the
        # port in LISTEN until that accept() returns.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def test(env):
    agent_port = env.port()
    admin_port = env.port()
    listen = f"127.0.0.1:{agent_port}"
    agent = env.start_agent(listen=listen, admin_port=admin_port)
    fe_port = env.port()
    cfg, _ = env.render(
        fe_port=fe_port,
        server_addr=listen,
        rules=[
            'http-request return status 503 content-type text/plain '
            'lf-string "status=503\\nerr=%[var(txn.e.err)]\\n" unless { var(txn.e.ok) -m found }',
            'http-request return status 200 content-type text/plain '
            'lf-string "ok=%[var(txn.e.ok)]\\nerr=%[var(txn.e.err)]\\n"',
        ],
        messages=["echo"],
        message_sections="spoe-message echo\n    args ok=str(yes)\n"
                         "    event on-frontend-http-request\n",
        processing=f"{PROCESSING_MS}ms",
        check_inter="200ms", check_fall=2, check_rise=2,
    )
    env.start_haproxy(cfg, wait_up=False)

    # 1. UP through a real SPOP handshake.
    took = env.wait_server("UP")
    status, check_status, desc = check_fields(env)
    harness.log(f"UP after {took:.2f}s: check_status={check_status} desc={desc!r}")
    check_eq(check_status, "L7OK", "check status of a healthy agent (spop-check is layer 7)")
    # inter 200ms: at least one more check after the two that made it UP (rise 2); waited for,
    # not assumed after a fixed sleep (checks run late on a loaded machine).
    deadline = time.monotonic() + 5
    while (hellos := agent.metric("spoa_frames_received_total", 'type="HAPROXY-HELLO"')) < 3 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    check(hellos >= 3, f"the agent received the checks' HAPROXY-HELLO frames ({hellos})")
    st, kv, _ = request(env, fe_port)
    check_eq((st, kv.get("ok"), kv.get("err")), (200, "yes", ""), "request while UP")

    # 2. Agent stopped -> DOWN, requests fail closed at once.
    agent.signal(15)
    check_eq(agent.wait(10), 0, "agent exit status after SIGTERM")
    took = env.wait_server("DOWN")
    status, check_status, desc = check_fields(env)
    harness.log(f"DOWN after {took:.2f}s: check_status={check_status} desc={desc!r}")
    check_eq(check_status, "L4CON", "check status with nothing listening")
    for _ in range(5):
        st, kv, dt = request(env, fe_port)
        check_eq(st, 503, "request while the agent is DOWN fails closed")
        check(kv.get("err") not in (None, ""), f"set-on-error variable set while DOWN: {kv}")
        if not env.v31:
            check_eq(kv.get("err"), "2", "set-on-error while DOWN (2 = no agent, HAProxy 2.6)")
        check(dt < 1.0, f"request while DOWN answered at once ({dt:.2f}s, "
                        f"timeout processing {PROCESSING_MS} ms)")
    harness.log(f"while DOWN: 503 err={kv.get('err')} in {dt * 1000:.0f} ms")

    # 3. Something that is not an SPOP agent on the port: the check must not pass.
    fake = NotAnAgent(agent_port)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and fake.accepted < 4:
            time.sleep(0.05)
        check(fake.accepted >= 4, f"checks reached the fake listener ({fake.accepted})")
        status, check_status, desc = check_fields(env)
        harness.log(f"fake listener: status={status} check_status={check_status} desc={desc!r}")
        check_eq(status, "DOWN", "server status with a non-SPOP listener")
        check(check_status != "L7OK" and not check_status.startswith("L4"),
              f"check status with a non-SPOP listener: connected, reply refused "
              f"({check_status})")
    finally:
        fake.close()

    # 4. Agent restarted on the same port -> UP again, requests succeed.
    agent2 = env.start_agent(listen=listen, admin_port=env.port())
    took = env.wait_server("UP")
    status, check_status, desc = check_fields(env)
    harness.log(f"UP again {took:.2f}s after restart: check_status={check_status}")
    check_eq(check_status, "L7OK", "check status after restart")
    st, kv, _ = request(env, fe_port)
    check_eq((st, kv.get("ok"), kv.get("err")), (200, "yes", ""), "request after restart")
    check_eq(agent2.metric("spoa_messages_total", 'message="echo"'), 1.0,
             "the restarted agent handled the request")


if __name__ == "__main__":
    harness.main(test)
