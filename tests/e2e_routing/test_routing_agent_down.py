#!/usr/bin/python3
"""spoa-agent killed under traffic and restarted, with the shipped HAProxy configuration (its
spop-check timings and `timeout processing 5s`).

A request starts every 100 ms. The agent is SIGKILLed, stays down for 6.5 s, and is started
again on the same address; once it is ready, requests are sent one after another until the
first 200. Asserts: every answer is either 200 from the routed backend or the fail-closed
503 "no routing decision" (never another backend, another status or a hang); no request takes
longer than `timeout processing` (5 s) plus a margin; the first 200 comes within the shipped
`downinter` plus RECOVERY_MARGIN_S of the restart's start (the recovery time, logged); from then on
every request gets 200 at once.

Why the bound is `downinter`: HAProxy sends nothing to an agent server its check marked DOWN
until a check succeeds again, and a DOWN server is checked every `downinter`.

The two versions differ during the outage (the timeline in the log shows it):
  * 2.6 holds every request up to `timeout processing`, DOWN or not: those whose 5 s ran out
    before the restart get 503 after 5 s, the later ones are answered (200) by the restarted
    agent. Asserted: such held requests exist, and nothing is refused after the first of them.
  * 3.x: until the check marks the agent DOWN, requests wait about 3 s for an agent
    connection, then get 503; once DOWN, they are refused at once (SPOE error 257, the fail-closed 503). Asserted: no request of
    the outage is answered by the restarted agent, and those made while DOWN are refused
    within 0.5 s."""

import collections
import re
import signal
import threading
import time

import routing_env as r
from routing_env import check, check_eq, log

INTERVAL = 0.1
KILL_AT = 0.5
RESTART_AT = 7.0
TRAFFIC_UNTIL = 9.0
PROCESSING_S = 5.0
# Above the check interval: scheduling, the check's HELLO exchange and the request itself.
RECOVERY_MARGIN_S = 1.0


def shipped_downinter(st):
    """The `downinter` of be_spoa_http's agent server in the shipped haproxy.cfg, in s."""
    with open(st.shipped_cfg()) as f:
        text = f.read()
    m = re.search(r"^backend be_spoa_http\n(?:[ \t].*\n)*?[ \t]+server agent .* downinter "
                  r"(\d+)(ms|s)\b", text, re.M)
    check(m, f"no downinter on be_spoa_http's agent server in {st.shipped_cfg()}")
    return int(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def first_200(st, since, bound):
    """Requests one after another until one gets 200; returns its completion time - since.
    Fails when none did within `bound` s."""
    tries = collections.Counter()
    while True:
        code, _, body = r.http_get(st.http_port, "app.test", timeout=PROCESSING_S + 1)
        took = time.monotonic() - since
        if code == 200:
            log(f"first 200 {took:.2f}s after the restart began; before it: {dict(tries)}")
            return took
        tries[(code, body.strip())] += 1
        check(took < bound, f"a 200 within {bound:.1f}s of the agent's restart "
                            f"(got {dict(tries)})")
        time.sleep(0.02)


def timeline(results):
    """Runs of consecutive requests with the same status and about the same duration."""
    runs = []
    for begin, took, code, _ in results:
        key = (code, "<0.1s" if took < 0.1 else f"{took:.0f}s")
        if runs and runs[-1][2] == key:
            runs[-1][1] = begin
        else:
            runs.append([begin, begin, key])
    return "; ".join(f"+{a:.1f}..{b:.1f} {k[0]} {k[1]}" for a, b, k in runs)


def test(env):
    st = r.Stack(env)
    a = st.http_backend("A")
    config = f"""
resolver: {{type: static, timeout_ms: 800}}
cache: {{ttl_ms: 60000}}
ssrf: {{mode: allowlist, allow: [127.0.0.0/8]}}
routes:
  http:
    app.test: {{endpoints: [127.0.0.1:{a}]}}
"""
    st.start_agent(config)
    st.start_haproxy()
    bound = shipped_downinter(st) + RECOVERY_MARGIN_S
    code, _, body = r.http_get(st.http_port, "app.test")
    check_eq((code, r.backend_of(body)), (200, "A"), "before the kill")

    results = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def one(start):
        delay = t0 + start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        begin = time.monotonic() - t0
        try:
            code, _, body = r.http_get(st.http_port, "app.test", timeout=PROCESSING_S + 10)
            res = (begin, time.monotonic() - t0 - begin, code, body.strip())
        except Exception as e:  # noqa: BLE001 - recorded and asserted on
            res = (begin, time.monotonic() - t0 - begin, None, repr(e))
        with lock:
            results.append(res)

    threads = [threading.Thread(target=one, args=(i * INTERVAL,), daemon=True)
               for i in range(int(TRAFFIC_UNTIL / INTERVAL))]
    for t in threads:
        t.start()
    time.sleep(max(0.0, t0 + KILL_AT - time.monotonic()))
    st.agent.signal(signal.SIGKILL)
    st.agent.wait(5)
    t_kill = time.monotonic() - t0
    statuses = []
    while time.monotonic() - t0 < RESTART_AT:
        statuses.append((round(time.monotonic() - t0, 1), env.server_status("be_spoa_http")))
        time.sleep(0.2)
    # The recovery counts from the restart's start: it includes the agent's own start-up.
    t_restart = time.monotonic() - t0
    st.start_agent(config)
    t_back = time.monotonic() - t0
    recovery = first_200(st, t0 + t_restart, bound)
    t_recovered = t_restart + recovery
    log(f"agent killed at +{t_kill:.2f}s, restarted at +{t_restart:.2f}s, ready at "
        f"+{t_back:.2f}s; be_spoa_http/agent: "
        f"{[s for i, s in enumerate(statuses) if i == 0 or s[1] != statuses[i - 1][1]]}")
    for t in threads:
        t.join(PROCESSING_S + 15)
    check(not any(t.is_alive() for t in threads), "every request finished")

    results.sort()
    log("timeline (start, outcome, time taken): " + timeline(results))
    outcome = collections.Counter((c, b if c != 200 else r.backend_of(b)) for _, _, c, b in results)
    log(f"{len(results)} requests: {dict(outcome)}")
    for begin, took, code, body in results:
        what = f"request at +{begin:.2f}s ({took:.2f}s): {code} {body[:80]!r}"
        check(code == 200 and r.backend_of(body) == "A"
              or (code == 503 and body == "no routing decision"), f"fail closed: {what}")
        check(took < PROCESSING_S + 1.0, f"bounded by timeout processing: {what}")
        if begin < t_kill - 0.05:
            check_eq(code, 200, f"before the kill: {what}")
        if begin > t_recovered:
            check_eq(code, 200, f"after the recovery: {what}")
            check(took < 1.0, f"after the recovery, at once: {what}")
    during = [x for x in results if t_kill + 0.1 < x[0] < t_back - PROCESSING_S - 0.2]
    check(during and all(x[2] == 503 for x in during),
          f"requests whose timeout expired during the outage got 503: {during}")
    held = [x for x in results if t_kill < x[0] < t_restart and x[2] == 200]
    if env.v31:
        # 3.x sends nothing to a DOWN agent server: refused at once, nothing waits for it.
        t_down = next((t for t, s in statuses if s.startswith("DOWN")), None)
        check(t_down is not None, f"the check marked the agent DOWN: {statuses}")
        check_eq(held, [], "3.x: requests made during the outage answered by the restarted agent")
        refused = [x for x in results if t_down < x[0] < t_restart]
        check(refused and all(x[1] < 0.5 for x in refused),
              f"3.x: requests made while the agent was DOWN refused at once: {refused}")
    else:
        # 2.6 holds the requests of the outage (up to `timeout processing`) and the restarted
        # agent answers them; from the first of them on, nothing is refused any more.
        check(held, "2.6: requests held during the outage were answered once the agent was back")
        late503 = [x for x in results if x[0] > held[0][0] and x[2] != 200]
        check(not late503, f"2.6: refusals after the agent answered again: {late503}")
    log(f"RECOVERY: first 200 {recovery:.2f}s after the agent's restart began, "
        f"{t_recovered - t_back:.2f}s after it was ready (bound {bound:.1f}s); "
        f"{len(held)} requests of the outage held and answered")
    slow503 = [x for x in results if x[2] == 503]
    log(f"503 latencies: min {min(x[1] for x in slow503):.2f}s, "
        f"max {max(x[1] for x in slow503):.2f}s")


if __name__ == "__main__":
    r.harness.main(test)
