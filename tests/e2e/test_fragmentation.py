#!/usr/bin/python3
"""Request bodies larger than a frame: a 1024-byte frame size on both HAProxy versions.

Two messages are sent per request, `big` (the body; no handler) and then `echo`. A frame tap
between HAProxy and the agent records the frames.

HAProxy 2.6 / 3.0 fragment: the agent announces `fragmentation`, so a NOTIFY that does not fit
is sent as a NOTIFY frame without FIN followed by UNSET frames, the last one with FIN
(protocol/README.md §9):

  A. 20 KB body: the wire shows the fragments, the reassembled payload is exactly
     [big(body), echo(...)], and the agent's ACK sets `tail`/`blen`/`head`/`end` from the
     `echo` message, which sits after the 20 KB in the payload: the agent decoded the whole
     reassembled NOTIFY. Echoing `body` itself cannot fit a 1024-byte ACK: the agent drops that
     one action (spoa_actions_refused_total) and keeps the others.
  B. 700-byte body: still fragmented (two copies), and the ACK now fits, so txn.e.body comes
     back and its SHA-1 must be the body's.

HAProxy 3.1+ never fragments (the SPOP multiplexer has no fragmentation):

  C. 300-byte body: both copies fit one frame: one NOTIFY frame with FIN, no UNSET, and the
     body comes back byte for byte.
  D. 20 KB body: within HAProxy's own max-frame-size but above the 1024 bytes negotiated with
     the agent (spoa-agent --max-frame-size 1024). The NOTIFY is not sent; the stream gets
     SPOE error 259 (256 + status 3, "frame too big") and the fail-closed rule answers 503.
     Nothing above the frame size and no UNSET frame ever reaches the agent.
  E. a 300-byte body afterwards is served as in C.
"""

import hashlib
import os

import harness
from harness import check, check_eq

FRAME = 1024

# Known agent bug (reported, not fixed here: agent/ is being changed by others): the metric
# spoa_frames_received_total{type="UNSET"} is exported but never incremented (only HELLO,
# DISCONNECT and complete NOTIFYs are counted), so fragments are invisible in /metrics. While
# True, a 0 there is an XFAIL (logged), the right count an XPASS (failure: drop the flag).
KNOWN_BUG_UNSET_METRIC = False  # fixed: UNSET frames are counted


def post(env, fe_port, body):
    st, _, resp = harness.http_request("127.0.0.1", fe_port, "POST", "/upload", body=body,
                                       headers={"Content-Type": "application/octet-stream"})
    return st, harness.parse_kv_body(resp)


def unfragmented(env, agent, tap, fe_port):
    """Parts C, D and E (HAProxy >= 3.1)."""
    def fitting(what):
        body = os.urandom(300)
        st, kv = post(env, fe_port, body)
        check_eq(st, 200, f"{what}: status ({kv})")
        check_eq((kv.get("tail"), kv.get("blen"), kv.get("err")), ("END-MARKER", "300", ""),
                 f"{what}: variables")
        check_eq(kv.get("body_hex"), body.hex().upper(), f"{what}: body round trip")
        mine = [n for n in harness.reassemble_notifies(tap.snapshot())
                if harness.decode_messages(n[4])[0][1] == [("body", ("bin", body))]]
        check_eq(len(mine), 1, f"{what}: one NOTIFY carries the body")
        parts = mine[0][3]
        check_eq([(p.type_name, p.fin) for p in parts], [("NOTIFY", True)],
                 f"{what}: the NOTIFY is one frame with FIN")

    # ---- C. both copies fit one frame ---------------------------------------------------
    fitting("C")

    # ---- D. 20 KB body: not sent, SPOE error 259, fail-closed 503 ----------------------
    body = os.urandom(20 * 1024)
    st, kv = post(env, fe_port, body)
    harness.log(f"D: status {st}, {kv}")
    check_eq((st, kv.get("err")), (503, "259"), "D: status and SPOE error (256 + frame too big)")

    # ---- E. the agent still serves a fitting body ---------------------------------------
    fitting("E")

    frames = tap.snapshot()
    check(not tap.errors, f"tap decoding errors: {tap.errors}")
    h2a = [f for f in frames if f.direction == "h2a"]
    check_eq([f for f in h2a if f.length > FRAME], [], "frames above max-frame-size")
    check_eq([f for f in h2a if f.type == 0], [], "UNSET frames (fragments)")
    check_eq(len(harness.reassemble_notifies(frames)), 2, "NOTIFYs on the wire (C and E only)")
    m = agent.metrics()
    check_eq(agent.metric("spoa_messages_total", 'message="echo"', m), 2.0, "echo messages")
    check_eq(agent.metric("spoa_frames_received_total", 'type="UNSET"', m), 0.0,
             "UNSET frames counted by the agent")


def test(env):
    agent_port = env.port()
    fragmenting = not env.v31
    # 2.6 gets the frame size from HAProxy's side; 3.1+ from the agent's, which is the size
    # the two negotiate (HAProxy's own max-frame-size stays 65532, from tune.bufsize).
    agent = env.start_agent(listen=f"127.0.0.1:{agent_port}",
                            extra=[] if fragmenting else ["--max-frame-size", str(FRAME)])
    tap = env.tap(agent_port)
    fe_port = env.port()
    # hex: converters that take a string (length, ...) would stop at the first NUL byte
    body_line = "body_hex=%[var(txn.e.body),hex]\\nbody_sha1=%[var(txn.e.body),sha1,hex]\\n"
    cfg, _ = env.render(
        fe_port=fe_port,
        server_addr=f"127.0.0.1:{tap.port}",
        # http-buffer-request only waits for what fits in a buffer (~15 KB with the default
        # 16 KB): make room for the whole 20 KB body.
        global_extra=["tune.bufsize 65536"],
        frontend_extra=["option http-buffer-request"],
        rules=[
            'http-request return status 503 content-type text/plain '
            'lf-string "err=%[var(txn.e.err)]\\n" unless { var(txn.e.tail) -m found }',
            'http-request return status 200 content-type text/plain lf-string '
            '"tail=%[var(txn.e.tail)]\\nblen=%[var(txn.e.blen)]\\nhead=%[var(txn.e.head),hex]\\n'
            'end=%[var(txn.e.end),hex]\\n' + body_line + 'err=%[var(txn.e.err)]\\n"',
        ],
        messages=["big", "echo"],
        agent_extra=[f"max-frame-size {FRAME}"] if fragmenting else [],
        message_sections=(
            "spoe-message big\n"
            "    args body=req.body\n"
            "    event on-frontend-http-request\n\n"
            "spoe-message echo\n"
            "    args tail=str(END-MARKER) blen=req.body_len head=req.body,bytes(0,64) "
            # the last 64 bytes of a 20 KB body (2.6's bytes() takes no negative offset)
            f"end=req.body,bytes({20 * 1024 - 64},64) body=req.body\n"
            "    event on-frontend-http-request\n"),
    )
    env.start_haproxy(cfg)

    if not fragmenting:
        unfragmented(env, agent, tap, fe_port)
        return

    # ---- A. 20 KB body ------------------------------------------------------------------
    body = os.urandom(20 * 1024)
    st, kv = post(env, fe_port, body)
    harness.log(f"A: status {st}, {dict((k, v[:40]) for k, v in kv.items())}")
    check_eq(st, 200, f"A: status ({kv})")
    check_eq(kv.get("err"), "", "A: set-on-error variable")
    check_eq(kv.get("tail"), "END-MARKER", "A: txn.e.tail (echo message after the 20 KB)")
    check_eq(kv.get("blen"), str(len(body)), "A: txn.e.blen")
    check_eq(kv.get("head"), body[:64].hex().upper(), "A: txn.e.head (first 64 bytes)")
    check_eq(kv.get("end"), body[-64:].hex().upper(), "A: txn.e.end (last 64 bytes)")
    check_eq(kv.get("body_hex"), "", "A: txn.e.body not set (cannot fit a 1024-byte ACK)")
    m = agent.metrics()
    check_eq(agent.metric("spoa_actions_refused_total", "", m), 1.0,
             "A: the oversized set-var was refused, once")
    check_eq(agent.metric("spoa_messages_total", 'message="echo"', m), 1.0, "A: echo messages")
    check_eq(agent.metric("spoa_messages_total", 'message="(no handler)"', m), 1.0,
             "A: big messages (no handler)")
    check_eq(agent.metric("spoa_frames_received_total", 'type="NOTIFY"', m), 1.0,
             "A: NOTIFY frames (one reassembled NOTIFY)")

    frames = tap.snapshot()
    check(not tap.errors, f"tap decoding errors: {tap.errors}")
    oversized = [f for f in frames if f.length > FRAME]
    notifies = harness.reassemble_notifies(frames)
    check_eq(len(notifies), 1, f"A: one NOTIFY on the wire ({notifies})")
    conn, sid, fid, parts, payload = notifies[0]
    types = [p.type_name for p in parts]
    fins = [p.fin for p in parts]
    harness.log(f"A: NOTIFY sid={sid} fid={fid} in {len(parts)} frames, "
                f"{len(payload)} payload bytes; largest frame payload "
                f"{max(len(p.payload) for p in parts)}")
    check(len(parts) >= 20, f"A: the NOTIFY was fragmented ({len(parts)} frames)")
    check_eq(types, ["NOTIFY"] + ["UNSET"] * (len(parts) - 1), "A: fragment frame types")
    check_eq(fins, [False] * (len(parts) - 1) + [True], "A: FIN only on the last fragment")
    check(not oversized, f"A: frames above max-frame-size, either way: {oversized}")
    msgs = harness.decode_messages(payload)
    check_eq([name for name, _ in msgs], ["big", "echo"], "A: messages in the NOTIFY")
    check_eq(msgs[0][1], [("body", ("bin", body))], "A: the body went over the wire whole")
    acks = [f for f in frames if f.direction == "a2h" and f.type_name == "ACK" and f.conn == conn]
    check_eq([(a.stream_id, a.frame_id, a.fin) for a in acks], [(sid, fid, True)],
             "A: one ACK, after the last fragment, with FIN")
    check(acks[0].t >= parts[-1].t, "A: ACK after the last fragment")

    # ---- B. 700-byte body: fragmented NOTIFY, ACK fits: the body comes back --------------
    body = os.urandom(700)
    st, kv = post(env, fe_port, body)
    harness.log(f"B: status {st}, {dict((k, v[:40]) for k, v in kv.items())}")
    check_eq(st, 200, f"B: status ({kv})")
    check_eq((kv.get("tail"), kv.get("blen"), kv.get("err")), ("END-MARKER", "700", ""),
             "B: variables")
    check_eq(kv.get("body_hex"), body.hex().upper(),
             "B: txn.e.body is the request body, byte for byte")
    check_eq(kv.get("body_sha1"), hashlib.sha1(body).hexdigest().upper(),
             "B: sha1 of txn.e.body in HAProxy")
    notifies = harness.reassemble_notifies(tap.snapshot())
    check_eq(len(notifies), 2, "B: a second NOTIFY on the wire")
    # B's NOTIFY is the one that carries B's body (found by content, not by its position).
    mine = [n for n in notifies if harness.decode_messages(n[4])[0][1] == [("body", ("bin", body))]]
    check_eq(len(mine), 1, "B: one NOTIFY carries B's body")
    parts = mine[0][3]
    check(len(parts) >= 2, f"B: that NOTIFY was fragmented too ({len(parts)} frames)")
    check_eq(agent.metric("spoa_actions_refused_total"), 1.0, "B: nothing refused this time")
    check_eq([s for s in env.spoe_log_statuses(expect=2) if s != 0], [],
             "SPOE error statuses in HAProxy's log")

    # /metrics: spoa_frames_received_total{type="UNSET"} should count the UNSET fragments.
    unset_on_wire = sum(1 for f in tap.snapshot() if f.direction == "h2a" and f.type == 0)
    unset_metric = agent.metric("spoa_frames_received_total", 'type="UNSET"')
    harness.log(f"UNSET frames: {unset_on_wire} on the wire, {unset_metric:.0f} in /metrics")
    if unset_metric == unset_on_wire:
        if KNOWN_BUG_UNSET_METRIC:
            raise harness.TestFailure("XPASS: UNSET frames are counted now; the known bug seems "
                                      "fixed: set KNOWN_BUG_UNSET_METRIC = False")
    elif unset_metric == 0 and KNOWN_BUG_UNSET_METRIC:
        harness.log("XFAIL (known agent bug, see KNOWN_BUG_UNSET_METRIC): "
                    'spoa_frames_received_total{type="UNSET"} stays 0')
    else:
        raise harness.TestFailure(f'spoa_frames_received_total{{type="UNSET"}} is '
                                  f"{unset_metric}, {unset_on_wire} UNSET frames were sent")


if __name__ == "__main__":
    harness.main(test)
