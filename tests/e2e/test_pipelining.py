#!/usr/bin/python3
"""Many concurrent requests: 200 clients at once, each with its own X-Id header; every answer
must carry that request's own id, path and a per-request integer (no cross-talk between
pipelined frames). A frame tap between HAProxy and the agent checks that every NOTIFY got
exactly one ACK, on the same connection, with the same stream-id/frame-id, and that
connections really carried several NOTIFYs in flight at once (pipelining)."""

import collections
import concurrent.futures
import threading

import harness
from harness import check, check_eq

REQUESTS = 200


def test(env):
    agent_port = env.port()
    agent = env.start_agent(listen=f"127.0.0.1:{agent_port}", threads=2)
    tap = env.tap(agent_port)
    fe_port = env.port()
    cfg, _ = env.render(
        fe_port=fe_port,
        server_addr=f"127.0.0.1:{tap.port}",
        rules=[
            'http-request return status 503 content-type text/plain '
            'lf-string "err=%[var(txn.e.err)]\\n" unless { var(txn.e.id) -m found }',
            'http-request return status 200 content-type text/plain '
            'lf-string "id=%[var(txn.e.id)]\\npath=%[var(txn.e.path)]\\nn=%[var(txn.e.n)]\\n'
            'err=%[var(txn.e.err)]\\n"',
        ],
        messages=["echo"],
        message_sections="spoe-message echo\n"
                         "    args id=req.hdr(x-id) path=path n=req.hdr(x-n),neg\n"
                         "    event on-frontend-http-request\n",
        processing="5s",
        global_extra=["maxconn 2000"],
    )
    env.start_haproxy(cfg)

    barrier = threading.Barrier(REQUESTS, timeout=20)

    def one(i):
        rid = f"req-{i:04d}-{'x' * (i % 17)}"
        barrier.wait()  # all requests leave together
        st, _, body = harness.http_request("127.0.0.1", fe_port, "GET", f"/p/{i}",
                                           headers={"X-Id": rid, "X-N": str(i * 7919)},
                                           timeout=20)
        return i, rid, st, harness.parse_kv_body(body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        results = list(pool.map(one, range(REQUESTS)))

    for i, rid, st, kv in results:
        check_eq(st, 200, f"request {i} status ({kv})")
        check_eq((kv.get("id"), kv.get("path"), kv.get("n"), kv.get("err")),
                 (rid, f"/p/{i}", str(-i * 7919), ""), f"variables of request {i}")

    m = agent.metrics()
    check_eq(agent.metric("spoa_messages_total", 'message="echo"', m), float(REQUESTS),
             "echo messages handled by the agent")
    check_eq(agent.metric("spoa_frames_received_total", 'type="NOTIFY"', m), float(REQUESTS),
             "NOTIFY frames received by the agent")
    check_eq(agent.metric("spoa_frames_sent_total", 'type="ACK"', m), float(REQUESTS),
             "ACK frames sent by the agent")
    check_eq([s for s in env.spoe_log_statuses(expect=REQUESTS) if s != 0], [],
             "SPOE error statuses in HAProxy's log")

    # Wire-level view.
    frames = tap.snapshot()
    check(not tap.errors, f"tap decoding errors: {tap.errors}")
    notifies = [f for f in frames if f.direction == "h2a" and f.type_name == "NOTIFY"]
    acks = [f for f in frames if f.direction == "a2h" and f.type_name == "ACK"]
    check_eq(len(notifies), REQUESTS, "NOTIFY frames on the wire")
    check(all(f.fin for f in notifies + acks), "no fragmented NOTIFY or ACK")
    keys = collections.Counter((f.conn, f.stream_id, f.frame_id) for f in notifies)
    check_eq(max(keys.values()), 1, "(connection, stream-id, frame-id) unique per NOTIFY")
    ack_keys = collections.Counter((f.conn, f.stream_id, f.frame_id) for f in acks)
    check_eq(ack_keys, keys, "exactly one ACK per NOTIFY, on the NOTIFY's connection")

    # Pipelining: the largest number of NOTIFYs outstanding (sent, not yet ACKed) on one
    # connection at any moment, and how many connections carried them.
    inflight, peak = collections.Counter(), 0
    for f in frames:
        if f.type_name == "NOTIFY" and f.direction == "h2a":
            inflight[f.conn] += 1
            peak = max(peak, inflight[f.conn])
        elif f.type_name == "ACK" and f.direction == "a2h":
            inflight[f.conn] -= 1
    conns = {f.conn for f in notifies}
    harness.log(f"{REQUESTS} NOTIFYs over {len(conns)} agent connections, "
                f"peak {peak} in flight on one connection")
    check(len(conns) < REQUESTS, f"agent connections were reused ({len(conns)})")
    check(peak >= 2, f"several NOTIFYs in flight on one connection (peak {peak})")


if __name__ == "__main__":
    harness.main(test)
