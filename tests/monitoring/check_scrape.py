#!/usr/bin/python3
"""Real scrapes against haproxy/monitoring/: what the dashboard and the alerts read exists.

--agent-only (label unit): spoa-agent with a routing configuration whose resolver is a chain
(static routes, then a control plane that is not there, so the control-plane metrics are
rendered too) and a redis: section (a Redis that is not there: the fleet's metrics); GET /metrics must pass `promtool check metrics` with nothing reported, every
spoa_* metric named by the rules file or the dashboard (expressions, descriptions) must be a
metric family of the scrape, and the README's "## Metrics" tables must list exactly the
scrape's families, with their types.

Without it (label e2e): the same agent (with a private redis-server for its redis: section)
behind HAProxy with the SHIPPED configuration plus haproxy/monitoring/haproxy-prometheus.cfg. A few HTTP decisions (miss, hit, forbidden) must
move the counters the cache hit ratio and the decision panels read; the agent's scrape must
still pass promtool; every haproxy_* metric named by the rules or the dashboard must be in
HAProxy's own scrape; and once the agent is killed, HAProxy's exporter must show
haproxy_backend_status{proxy="be_spoa_http",state="UP"} 0, what SpoaAgentDownInHAProxy reads.
A real Prometheus server (Debian's `prometheus`, the package of promtool) scrapes both every
second with spoa-alerts.yml loaded: the recording rules give the scraped hit ratio (1 hit, 2
misses: 1/3) and a NOTIFY rate; every dashboard query is accepted and the main panels have
data; no alert is active; after the kill, SpoaAgentDown and SpoaAgentDownInHAProxy are
pending (their `for:` is longer than the test).

Exit status: 0 pass, 1 fail, 77 skip (no promtool; in e2e mode, no haproxy or one built
without the exporter).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e_routing"))

import harness  # noqa: E402
from harness import Skip, TestFailure, check, log  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

MONITORING = os.path.join(REPO, "haproxy", "monitoring")
RULES = os.path.join(MONITORING, "spoa-alerts.yml")
DASHBOARD = os.path.join(MONITORING, "spoa-dashboard.json")
EXPORTER_CFG = os.path.join(MONITORING, "haproxy-prometheus.cfg")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Names of metrics, not of recording rules (instance:spoa_x:rate5m), HAProxy proxies
# (be_spoa_http) or Grafana variables ($haproxy_job): a prefix at a word boundary that is not
# a colon or a dollar.
NAME_RE = re.compile(r"(?<![\w:$])((?:spoa|haproxy)_[A-Za-z0-9_]*[A-Za-z0-9])(?![\w:])")
# The dashboard's strings that hold queries or prose (not variable names or ids).
DASHBOARD_TEXT_KEYS = {"expr", "query", "definition", "title", "description"}


def referenced_names():
    """{metric name: [where]} for every spoa_*/haproxy_* name in the rules file and in the
    dashboard's queries, titles and descriptions."""
    names = {}
    with open(RULES) as f:
        for n in NAME_RE.findall(f.read()):
            names.setdefault(n, set()).add("spoa-alerts.yml")
    with open(DASHBOARD) as f:
        dashboard = json.load(f)

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in DASHBOARD_TEXT_KEYS:
            for n in NAME_RE.findall(node):
                names.setdefault(n, set()).add("spoa-dashboard.json")

    walk(dashboard)
    return names


def families(text):
    """Metric family names declared by # TYPE lines, with their types."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def missing_names(prefix, referenced, scraped):
    missing = []
    for name, where in sorted(referenced.items()):
        if not name.startswith(prefix):
            continue
        if name in scraped:
            continue
        base = next((name[:-len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base and scraped.get(base) in ("histogram", "summary"):
            continue
        missing.append(f"{name} (named in {', '.join(sorted(where))})")
    return missing


def promtool_lint(text, what):
    """`promtool check metrics` on a scrape: exit 0 and nothing reported."""
    promtool = shutil.which("promtool")
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True)
    report = (res.stdout + res.stderr).strip()
    check(res.returncode == 0 and not report,
          f"promtool check metrics on {what}: exit {res.returncode}: {report}")
    log(f"promtool check metrics on {what}: clean ({len(families(text))} families)")


def scrape(port, path="/metrics"):
    status, _, body = harness.http_request("127.0.0.1", port, "GET", path, timeout=5.0)
    check(status == 200, f"GET 127.0.0.1:{port}{path}: status {status}")
    return body.decode()


def routing_config(http_routes, control_plane_port):
    """A chain resolver (static routes, then a control plane at a port where nothing listens:
    the control-plane metrics are rendered, its calls fail) with the given HTTP routes."""
    return ("resolver:\n"
            "  type: chain\n"
            "  timeout_ms: 800\n"
            "  remote:\n"
            f"    address: 127.0.0.1:{control_plane_port}\n"
            "ssrf:\n"
            "  mode: allowlist\n"
            "  allow: [127.0.0.0/8]\n"
            "routes:\n"
            "  http:\n" + http_routes)


def readme_metrics():
    """{name: type} of the rows of the README's "## Metrics" tables."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    m = re.search(r"(?ms)^## Metrics\n(.*?)^## ", readme)
    check(m is not None, "README.md has no '## Metrics' section")
    return dict(re.findall(r"(?m)^\| `(spoa_\w+)` \| (\w+) \|", m.group(1)))


def check_readme(scraped):
    documented = readme_metrics()
    problems = [f"{n} ({t}) is not in README's Metrics tables"
                for n, t in sorted(scraped.items()) if n not in documented]
    problems += [f"README documents {n}, which the scrape does not have"
                 for n in sorted(documented) if n not in scraped]
    problems += [f"{n}: README says {documented[n]}, the scrape {t}"
                 for n, t in sorted(scraped.items()) if n in documented and documented[n] != t]
    check(not problems, "; ".join(problems))
    log(f"README documents the {len(documented)} families of the scrape")


def check_agent_scrape(text, referenced):
    promtool_lint(text, "spoa-agent's /metrics")
    missing = missing_names("spoa_", referenced, families(text))
    check(not missing, "named by haproxy/monitoring but not in spoa-agent's /metrics: "
          + "; ".join(missing))


def agent_only(agent_bin, tmpdir, referenced):
    os.makedirs(tmpdir, exist_ok=True)
    ports = harness.PortAllocator()
    proc = None
    try:
        listen, admin, nobody, no_redis = ports.get(), ports.get(), ports.get(), ports.get()
        cfg = os.path.join(tmpdir, "routing.yaml")
        with open(cfg, "w") as f:
            f.write(routing_config("    app1.localhost: {endpoints: [127.0.0.1:9001]}\n", nobody))
            # The fleet's metrics are rendered (at 0) with a Redis that is not there.
            f.write(f"redis: {{address: 127.0.0.1:{no_redis}}}\n")
        argv = [agent_bin, "--config", cfg, "--listen", f"127.0.0.1:{listen}",
                "--admin", f"127.0.0.1:{admin}", "--threads", "1"]
        proc = harness.Agent(None, argv, os.path.join(tmpdir, "agent.log"),
                             f"127.0.0.1:{listen}", admin)
        try:
            proc.wait_ready()
            text = scrape(admin)
            check_agent_scrape(text, referenced)
            check_readme(families(text))
        except TestFailure:
            print(proc.log_text()[-3000:])
            raise
    finally:
        if proc:
            proc.stop()
        ports.release()


# Dashboard panels that must have data once the test's requests went through (the others may
# rightly be empty: no errors, no cold start, no control plane call).
PANELS_WITH_DATA = ("Agents up", "Agent backends UP in HAProxy", "Decisions / s",
                    "Decisions by protocol and result", "Frames received and sent",
                    "Lookups", "Hit ratio", "Agent backends UP", "HTTP responses by class",
                    "Redis connections")


class PrometheusServer:
    """Prometheus scraping the agent (job spoa-agent) and HAProxy's exporter (job haproxy)
    every second, evaluating spoa-alerts.yml every second."""

    def __init__(self, env, agent_admin_port, haproxy_port):
        binary = shutil.which("prometheus")
        if not binary:
            raise Skip("no prometheus server binary (apt-get install prometheus)")
        self.port = env.port()
        cfg = env.path("prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    f"rule_files: [{json.dumps(RULES)}]\n"
                    "scrape_configs:\n"
                    "  - job_name: spoa-agent\n"
                    f"    static_configs: [{{targets: ['127.0.0.1:{agent_admin_port}']}}]\n"
                    "  - job_name: haproxy\n"
                    f"    static_configs: [{{targets: ['127.0.0.1:{haproxy_port}']}}]\n")
        self.proc = harness.Process("prometheus", [
            binary, f"--config.file={cfg}", f"--storage.tsdb.path={env.path('tsdb')}",
            f"--web.listen-address=127.0.0.1:{self.port}"], env.path("prometheus.log"))
        env.processes.append(self.proc)
        self.wait("Prometheus ready", lambda: self._ready(), timeout=30)

    def _ready(self):
        try:
            status, _, _ = harness.http_request("127.0.0.1", self.port, "GET", "/-/ready",
                                                timeout=2.0)
            return status == 200
        except OSError:
            return False

    def query(self, expr):
        """The instant vector or scalar of `expr`, as [(labels, float value)]; fails on an
        error answer (a query Prometheus refuses)."""
        status, _, body = harness.http_request(
            "127.0.0.1", self.port, "GET", "/api/v1/query?" + urlencode({"query": expr}),
            timeout=5.0)
        answer = json.loads(body.decode())
        check(status == 200 and answer.get("status") == "success",
              f"Prometheus refused {expr!r}: {status} {answer.get('error')}")
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def wait(self, what, cond, timeout=30, last=None):
        deadline = time.monotonic() + timeout
        while not cond():
            check(self.proc.alive(), f"prometheus exited: {self.proc.log_text()[-2000:]}")
            check(time.monotonic() < deadline,
                  f"{what}: not within {timeout} s" + (f" ({last()})" if last else ""))
            time.sleep(0.2)

    def value(self, expr):
        result = self.query(expr)
        return result[0][1] if len(result) == 1 else None


def dashboard_queries():
    """[(panel title, expr)] with Grafana's variables replaced as for the test's jobs."""
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    variables = {"$__rate_interval": "1m", "$haproxy_instance": ".*",
                 "$haproxy_job": "haproxy", "$instance": ".*", "$job": "spoa-agent"}
    out = []
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for k in sorted(variables, key=len, reverse=True):
                expr = expr.replace(k, variables[k])
            out.append((p["title"], expr))
    return out


def with_haproxy(env, referenced):
    import routing_env

    vv = subprocess.run([env.haproxy_bin, "-vv"], capture_output=True, text=True).stdout
    if "prometheus-exporter" not in vv:
        # e.g. a source build without USE_PROMEX=1
        raise Skip(f"{env.haproxy_bin} has no prometheus-exporter service (haproxy -vv)")
    if not shutil.which("redis-server"):
        raise Skip("redis-server not installed (apt-get install redis-server)")
    # A private Redis: the fleet's metrics (dashboard row, alert) are scraped from a connected
    # agent, so that no alert is active while all is well.
    redis = routing_env.RedisServer(env)
    redis.start()
    stack = routing_env.Stack(env)
    web = stack.http_backend("web1")
    stack.start_agent(routing_config(f"    app1.localhost: {{endpoints: [127.0.0.1:{web}]}}\n"
                                     "    blocked.localhost: {error: forbidden, reason: test}\n",
                                     env.port())
                      + f"redis: {{address: 127.0.0.1:{redis.port}}}\n")
    prom_port = env.port()
    stack.haproxy_environment()
    os.environ["SPOA_PROMETHEUS_BIND"] = f"127.0.0.1:{prom_port}"
    stack.start_haproxy(cfg_path=[stack.shipped_cfg(), EXPORTER_CFG])
    prometheus = PrometheusServer(env, stack.admin_port, prom_port)
    # Two scrapes of each at 0 before the requests: rate() then sees them.
    prometheus.wait("two scrapes of each job", lambda: (prometheus.value(
        'min(count_over_time(up{job=~"spoa-agent|haproxy"}[1m]))') or 0) >= 2)

    # A miss, then a hit for app1; a route that answers forbidden (403 from HAProxy).
    for host, want in (("app1.localhost", 200), ("app1.localhost", 200),
                       ("blocked.localhost", 403)):
        status, _, _ = routing_env.http_get(stack.http_port, host=host)
        check(status == want, f"GET Host: {host}: status {status}, wanted {want}")

    deadline = time.monotonic() + 10
    while not all(f'spoa_redis_connected{{connection="{c}"}} 1' in scrape(stack.admin_port)
                  for c in ("command", "subscriber")):
        check(time.monotonic() < deadline, "the agent did not connect to its Redis")
        time.sleep(0.05)
    text = scrape(stack.admin_port)
    check_agent_scrape(text, referenced)
    m = harness.parse_prometheus(text)
    ok = m.get(("spoa_route_decisions_total", 'protocol="http",result="ok"'), 0)
    forbidden = m.get(("spoa_route_decisions_total", 'protocol="http",result="forbidden"'), 0)
    hits = m.get(("spoa_route_cache_hits_total", ""), 0)
    misses = m.get(("spoa_route_cache_misses_total", ""), 0)
    notify = m.get(("spoa_frames_received_total", 'type="NOTIFY"'), 0)
    check(ok == 2 and forbidden == 1, f"decisions ok={ok} forbidden={forbidden}, wanted 2 and 1")
    check(hits == 1 and misses == 2, f"cache hits={hits} misses={misses}, wanted 1 and 2")
    check(notify >= 3, f"NOTIFY frames received {notify}, wanted >= 3")

    hap = scrape(prom_port)
    missing = missing_names("haproxy_", referenced, families(hap))
    version = ".".join(map(str, env.version))
    check(not missing, f"named by haproxy/monitoring but not in HAProxy {version}'s "
          "exporter scrape: " + "; ".join(missing))
    up = 'proxy="be_spoa_http",state="UP"'
    hm = harness.parse_prometheus(hap)
    check(hm.get(("haproxy_backend_status", up)) == 1,
          f"haproxy_backend_status{{{up}}} = {hm.get(('haproxy_backend_status', up))}, wanted 1")
    responses_4xx = hm.get(("haproxy_frontend_http_responses_total",
                            'proxy="fe_http",code="4xx"'), 0)
    check(responses_4xx >= 1, f"fe_http 4xx responses {responses_4xx}, wanted >= 1")

    # What Prometheus computes from the same counters.
    prometheus.wait("the requests scraped", lambda: prometheus.value(
        'sum(spoa_route_cache_misses_total{job="spoa-agent"})') == 2)
    # The recording rules run once a second, after the scrape that saw the requests.
    recorded = {}

    def recorded_after_requests():
        for name in ("instance:spoa_route_cache_hit_ratio:rate30m",
                     "instance:spoa_notify_frames:rate5m", "instance:spoa_spoe_failures:rate5m"):
            recorded[name] = prometheus.value(name)
        ratio = recorded["instance:spoa_route_cache_hit_ratio:rate30m"]
        return ratio is not None and abs(ratio - 1 / 3) < 1e-6

    prometheus.wait("recorded hit ratio 1/3", recorded_after_requests, timeout=15,
                    last=lambda: f"recorded: {recorded}")
    check((recorded["instance:spoa_notify_frames:rate5m"] or 0) > 0,
          f"recorded: {recorded}, wanted a NOTIFY rate above 0")
    check(recorded["instance:spoa_spoe_failures:rate5m"] == 0,
          f"recorded: {recorded}, wanted 0 SPOP failures per second")
    empty = set()
    queries = dashboard_queries()
    unknown = set(PANELS_WITH_DATA) - {title for title, _ in queries}
    check(not unknown, f"PANELS_WITH_DATA names panels the dashboard lacks: {sorted(unknown)}")
    for title, expr in queries:
        if not prometheus.query(expr):
            empty.add(title)
    check(not empty & set(PANELS_WITH_DATA),
          f"dashboard panels without data: {sorted(empty & set(PANELS_WITH_DATA))}")
    log(f"Prometheus: hit ratio 1/3, every dashboard query accepted; empty panels (no such "
        f"events in this test): {sorted(empty)}")

    # All is well: no alert may be pending or firing (else the pending alerts awaited below
    # would prove nothing).
    active = [m.get("alertname") for m, _ in prometheus.query("ALERTS")]
    check(not active, f"alerts active while the agent and HAProxy are up: {active}")

    # The agent gone: HAProxy's checks (shipped: fastinter 500ms, fall 2) mark it DOWN.
    stack.agent.kill()
    deadline = time.monotonic() + 15
    while True:
        value = harness.parse_prometheus(scrape(prom_port)).get(("haproxy_backend_status", up))
        if value == 0:
            break
        check(time.monotonic() < deadline,
              f"haproxy_backend_status{{{up}}} still {value} 15 s after the agent was killed")
        time.sleep(0.1)
    log("HAProxy's exporter shows be_spoa_http DOWN after the agent was killed")
    for alert, labels in (("SpoaAgentDown", ""), ("SpoaAgentDownInHAProxy",
                                                   ',proxy="be_spoa_http"')):
        prometheus.wait(f"{alert} pending", lambda: prometheus.query(
            f'ALERTS{{alertname="{alert}",alertstate="pending"{labels}}}'))
    log("Prometheus: SpoaAgentDown and SpoaAgentDownInHAProxy pending after the kill")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--tmpdir", required=True)
    ap.add_argument("--agent-only", action="store_true")
    args = ap.parse_args()
    if not shutil.which("promtool"):
        print("SKIP: promtool is not installed (apt-get install prometheus)")
        return harness.SKIP
    referenced = referenced_names()
    log(f"{len(referenced)} metric names named by haproxy/monitoring")
    if not args.agent_only:
        # harness.main: HAProxy (skip when missing), ports, cleanup, logs on failure.
        sys.argv = [sys.argv[0], "--agent", args.agent, "--tmpdir", args.tmpdir]
        harness.main(lambda env: with_haproxy(env, referenced))
    try:
        agent_only(os.path.abspath(args.agent), os.path.abspath(args.tmpdir), referenced)
    except TestFailure as e:
        log(f"FAIL: {e}")
        return 1
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
