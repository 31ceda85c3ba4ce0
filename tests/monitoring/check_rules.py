#!/usr/bin/python3
"""promtool check rules and promtool test rules on haproxy/monitoring/spoa-alerts.yml.

The unit tests (spoa-alerts.test.yml) run against a copy of the rules without their
`description:` annotations: those are prose for the operator, and promtool compares every
annotation of a firing alert, so keeping them in the tests would only copy the prose. Their
templates are still checked, on the file as shipped, by promtool check rules.

Also fails when an alert of the rules file has no test case where it fires, or none where it
must stay quiet (`exp_alerts: []`): a rule without both cannot be shown to discriminate.

Exit status: 0 pass, 1 fail, 77 skip (promtool not installed: Debian's `prometheus` package).
Usage: check_rules.py RULES_FILE TEST_FILE SCRATCH_DIR
"""

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


def run(argv):
    print("$ " + " ".join(argv), flush=True)
    res = subprocess.run(argv, capture_output=True, text=True)
    sys.stdout.write(res.stdout + res.stderr)
    return res.returncode


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    rules_path, test_path, scratch = sys.argv[1:]
    promtool = shutil.which("promtool")
    if not promtool:
        print("SKIP: promtool is not installed (apt-get install prometheus)")
        return 77

    failures = []
    if run([promtool, "check", "rules", rules_path]) != 0:
        failures.append("promtool check rules")

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

    # The test file names its rules file relatively: both copies side by side.
    os.makedirs(scratch, exist_ok=True)
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
