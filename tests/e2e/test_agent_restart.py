#!/usr/bin/python3
"""Agent restart under traffic: requests loop through HAProxy while the agent is SIGKILLed and
restarted on the same port. Before the kill every request gets its own variables back; during
the outage the fail-closed rule answers 503 (with set-on-error set) promptly instead of hanging
until `timeout processing`; once the agent is back, requests succeed again with their own
variables."""

import signal
import threading
import time

import harness
from harness import check, check_eq

PROCESSING_S = 1.5
CLIENTS = 4


class Traffic:
    def __init__(self, fe_port):
        self.fe_port = fe_port
        self.results = []  # (t0, t1, id, status, kv or exception text)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(CLIENTS)]

    def start(self):
        for t in self._threads:
            t.start()

    def _run(self, n):
        i = 0
        while not self._stop.is_set():
            i += 1
            rid = f"c{n}-{i}"
            t0 = time.monotonic()
            try:
                st, _, body = harness.http_request("127.0.0.1", self.fe_port, "GET", f"/r/{rid}",
                                                   headers={"X-Id": rid}, timeout=10)
                res = (t0, time.monotonic(), rid, st, harness.parse_kv_body(body))
            except Exception as e:  # noqa: BLE001 - recorded and asserted on
                res = (t0, time.monotonic(), rid, None, repr(e))
            with self._lock:
                self.results.append(res)
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def between(self, a, b):
        with self._lock:
            return [r for r in self.results if a <= r[0] and r[1] <= b]


def test(env):
    listen = f"127.0.0.1:{env.port()}"
    agent = env.start_agent(listen=listen)
    fe_port = env.port()
    cfg, _ = env.render(
        fe_port=fe_port,
        server_addr=listen,
        rules=[
            'http-request return status 503 content-type text/plain '
            'lf-string "err=%[var(txn.e.err)]\\n" unless { var(txn.e.id) -m found }',
            'http-request return status 200 content-type text/plain '
            'lf-string "id=%[var(txn.e.id)]\\npath=%[var(txn.e.path)]\\nerr=%[var(txn.e.err)]\\n"',
        ],
        messages=["echo"],
        message_sections="spoe-message echo\n    args id=req.hdr(x-id) path=path\n"
                         "    event on-frontend-http-request\n",
        processing=f"{int(PROCESSING_S * 1000)}ms",
        check_inter="200ms", check_fall=1, check_rise=1,
    )
    env.start_haproxy(cfg)

    traffic = Traffic(fe_port)
    t_start = time.monotonic()
    traffic.start()
    try:
        time.sleep(1.0)
        t_kill = time.monotonic()
        agent.signal(signal.SIGKILL)
        check_eq(agent.wait(5), -signal.SIGKILL, "agent killed")
        env.wait_server("DOWN", timeout=5)
        t_down = time.monotonic()
        harness.log(f"DOWN {t_down - t_kill:.2f}s after SIGKILL")
        # Longer than timeout processing, so that clients caught by the kill are answered and
        # go on sending while the agent is down.
        time.sleep(PROCESSING_S + 1.0)
        t_restart = time.monotonic()
        agent2 = env.start_agent(listen=listen)
        env.wait_server("UP", timeout=5)
        t_up = time.monotonic()
        harness.log(f"UP {t_up - t_restart:.2f}s after restart")
        time.sleep(1.5)
    finally:
        traffic.stop()
    t_end = time.monotonic()

    results = traffic.results
    harness.log(f"{len(results)} requests in {t_end - t_start:.1f}s")
    # Every request got an answer (no client timeout, no connection error), never a hang
    # past timeout processing.
    for t0, t1, rid, st, kv in results:
        check(st in (200, 503), f"request {rid} at +{t0 - t_start:.2f}s: status {st} ({kv})")
        check(t1 - t0 < PROCESSING_S + 0.5,
              f"request {rid} at +{t0 - t_start:.2f}s took {t1 - t0:.2f}s "
              f"(past timeout processing {PROCESSING_S}s)")
        if st == 200:
            check_eq((kv.get("id"), kv.get("path"), kv.get("err")), (rid, f"/r/{rid}", ""),
                     f"variables of request {rid}")
        else:
            check(kv.get("err") not in (None, ""), f"503 for {rid} carries set-on-error: {kv}")

    # HAProxy 2.6 keeps requests queued for an agent connection while its SPOE applets retry
    # the dead server: they wait at most `timeout processing` (then set-on-error 1 and the
    # fail-closed rule), or are served as soon as the agent is back. Only requests around the
    # outage may be slow, and never past timeout processing (asserted above).
    slow = [r for r in results if r[1] - r[0] >= 0.5]
    harness.log(f"slow requests: "
                f"{[(r[2], round(r[1] - r[0], 2), r[3], r[4].get('err')) for r in slow]}")
    for t0, t1, rid, st, kv in slow:
        check(t_kill - 0.5 <= t0 <= t_restart,
              f"slow request {rid} started at +{t0 - t_start:.2f}s, during the outage "
              f"(kill +{t_kill - t_start:.2f}s, restart +{t_restart - t_start:.2f}s)")

    before = traffic.between(t_start, t_kill)
    # answered after HAProxy marked the agent DOWN and before it was restarted
    outage = [r for r in results if t_down <= r[1] <= t_restart]
    after = [r for r in results if r[0] >= t_up]
    n503 = sum(r[3] == 503 for r in results)
    harness.log(f"before kill: {len(before)}, answered during the outage: {len(outage)}, "
                f"started after UP: {len(after)}; 503 in total: {n503}")
    check(len(before) >= 10, f"enough requests before the kill ({len(before)})")
    check(all(r[3] == 200 for r in before), "all requests before the kill succeeded")
    check(len(outage) >= CLIENTS,
          f"requests answered during the outage ({len(outage)}): the fail-closed rule answers "
          f"instead of holding them until the agent is back")
    check(all(r[3] == 503 for r in outage), "every request answered during the outage is a 503")
    if not env.v31:
        errs = {r[4].get("err") for r in outage}
        check(errs <= {"1", "2"},
              f"set-on-error during the outage is 1 (timeout) or 2 (no agent): {errs}")
    check(len(after) >= 10, f"enough requests after the restart ({len(after)})")
    check(all(r[3] == 200 for r in after), "all requests after the agent is UP again succeed")
    served = agent2.metric("spoa_messages_total", 'message="echo"')
    check(served >= len(after), f"the restarted agent served the requests ({served})")


if __name__ == "__main__":
    harness.main(test)
