#!/usr/bin/python3
"""promtool check rules and promtool test rules on haproxy/monitoring/spoa-alerts.yml, and
the Grafana dashboard's queries through PromQL's parser.

The unit tests (spoa-alerts.test.yml) run against a copy of the rules without their
`description:` annotations: those are prose for the operator, and promtool compares every
annotation of a firing alert, so keeping them in the tests would only copy the prose. Their
templates are still checked, on the file as shipped, by promtool check rules.

Also fails when an alert of the rules file has no test case where it fires, or none where it
must stay quiet (`exp_alerts: []`): a rule without both cannot be shown to discriminate.

The dashboard (spoa-dashboard.json): every target's expr, with Grafana's variables replaced
by values, must parse (as the expression of a recording rule given to promtool check rules);
every query targets the ${datasource} variable, which the dashboard must declare; panel ids
are unique and no two panels overlap.

The example Prometheus configuration (prometheus.example.yml, which loads the rules) must pass
promtool check config.

Exit status: 0 pass, 1 fail, 77 skip (promtool not installed: Debian's `prometheus` package).
Usage: check_rules.py RULES_FILE TEST_FILE DASHBOARD_FILE PROMETHEUS_CONFIG SCRATCH_DIR
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def strip_descriptions(text):
    """The rules text without `description:` keys and their indented continuation lines."""
    out = []
    skip_deeper_than = None
    for line in text.splitlines(keepends=True):
        indent = len(line) - len(line.lstrip(" "))
        if skip_deeper_than is not None:
            if not line.strip() or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if re.match(r"^\s*description:", line):
            skip_deeper_than = indent
            continue
        out.append(line)
    return "".join(out)


def alert_cases(test_text):
    """{alertname: (has a firing case, has a quiet case)} from the test file's text: each
    alert_rule_test item is an `alertname:` line followed by `exp_alerts: []` or a list."""
    cases = {}
    for m in re.finditer(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:(.*)", test_text):
        name, rest = m.group(1), m.group(2).strip()
        fires, quiet = cases.get(name, (False, False))
        if rest == "[]":
            quiet = True
        else:
            fires = True
        cases[name] = (fires, quiet)
    return cases


# What Grafana puts in place of the dashboard's variables before sending a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$haproxy_instance": ".*", "$haproxy_job": "haproxy",
                     "$instance": ".*", "$job": "spoa-agent"}


def dashboard_problems(dashboard, scratch, promtool):
    """Problems of the dashboard: structure, and queries PromQL's parser refuses."""
    problems = []
    variables = [v.get("name") for v in dashboard.get("templating", {}).get("list", [])]
    if "datasource" not in variables:
        problems.append("no `datasource` template variable")
    panels = dashboard.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        problems.append(f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}")
    cells = {}
    for p in panels:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            problems.append(f"panel {p['title']!r} is wider than the grid")
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                if (x, y) in cells:
                    problems.append(f"panels {cells[(x, y)]!r} and {p['title']!r} overlap")
                    break
                cells[(x, y)] = p["title"]
            else:
                continue
            break
    exprs = []
    for p in panels:
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"panel {p['title']!r}: a query not on ${{datasource}}")
            expr = t.get("expr", "")
            for k in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
                expr = expr.replace(k, GRAFANA_VARIABLES[k])
            if "$" in expr:
                problems.append(f"panel {p['title']!r}: unknown variable in {t.get('expr')!r}")
            exprs.append((p["title"], expr))
    if not exprs:
        problems.append("no query in the dashboard")
    # One recording rule per query: promtool check rules parses each expression.
    path = os.path.join(scratch, "dashboard-queries.yml")
    with open(path, "w") as f:
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, (title, expr) in enumerate(exprs):
            f.write(f"      # {title}\n      - record: dashboard:query_{i}\n"
                    f"        expr: {json.dumps(expr)}\n")
    if run([promtool, "check", "rules", path]) != 0:
        problems.append("a dashboard query does not parse (see promtool above)")
    return problems


def run(argv):
    print("$ " + " ".join(argv), flush=True)
    res = subprocess.run(argv, capture_output=True, text=True)
    sys.stdout.write(res.stdout + res.stderr)
    return res.returncode


def main():
    if len(sys.argv) != 6:
        print(__doc__)
        return 2
    rules_path, test_path, dashboard_path, config_path, scratch = sys.argv[1:]
    promtool = shutil.which("promtool")
    if not promtool:
        print("SKIP: promtool is not installed (apt-get install prometheus)")
        return 77

    failures = []
    if run([promtool, "check", "rules", rules_path]) != 0:
        failures.append("promtool check rules")
    if run([promtool, "check", "config", config_path]) != 0:
        failures.append("promtool check config")

    with open(rules_path) as f:
        rules_text = f.read()
    with open(test_path) as f:
        test_text = f.read()
    alerts = re.findall(r"^\s*-\s*alert:\s*(\S+)", rules_text, re.M)
    if not alerts:
        failures.append(f"no alert found in {rules_path}")
    cases = alert_cases(test_text)
    for name in alerts:
        fires, quiet = cases.get(name, (False, False))
        if not fires:
            failures.append(f"{name}: no test case where it fires")
        if not quiet:
            failures.append(f"{name}: no test case where it stays quiet")
    for name in sorted(set(cases) - set(alerts)):
        failures.append(f"{name}: tested but not in {rules_path}")

    os.makedirs(scratch, exist_ok=True)
    with open(dashboard_path) as f:
        dashboard = json.load(f)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        failures += [f"{dashboard_path}: {p}" for p in dashboard_problems(dashboard, tmp, promtool)]

    # The test file names its rules file relatively: both copies side by side.
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        stripped = strip_descriptions(rules_text)
        if "description:" in stripped:
            failures.append("a description annotation survived the stripping")
        with open(os.path.join(tmp, os.path.basename(rules_path)), "w") as f:
            f.write(stripped)
        tmp_test = os.path.join(tmp, os.path.basename(test_path))
        shutil.copyfile(test_path, tmp_test)
        if run([promtool, "test", "rules", tmp_test]) != 0:
            failures.append("promtool test rules")

    for f in failures:
        print("FAIL: " + f)
    print(f"{len(alerts)} alerts, {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
