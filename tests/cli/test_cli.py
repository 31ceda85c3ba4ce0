#!/usr/bin/python3
"""spoa-cli against a real spoa-agent (no HAProxy): hello, notify as a table and as JSON with
every SPOP type, several messages in one NOTIFY, TCP/IPv6/Unix targets, each exit code (ACK,
usage error, AGENT-DISCONNECT, timeout, connection refused), --repeat/--concurrency numbers,
a recorded routing session replayed identically (exit 0) and against a changed route (exit 1),
and the --record-max-bytes bound.

Uses tests/e2e/harness.py for free ports, processes that die with the test and log dumps;
standard library only, run with /usr/bin/python3."""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import harness  # noqa: E402
from harness import TestFailure, check, check_eq, log  # noqa: E402

# spoa-cli's exit codes (cli/src/exit_code.hpp).
OK, DIFFERENCES, USAGE, AGENT_DISCONNECT, TIMEOUT, CONNECTION_FAILED = 0, 1, 2, 3, 4, 5

ROUTES = """resolver:
  type: static
ssrf:
  mode: allowlist
  allow: [127.0.0.0/8]
routes:
  http:
    app1.example:
      endpoints: [127.0.0.1:{app1_port}]
    app2.example:
      endpoints: [127.0.0.1:9002]
"""


class CliEnv:
    def __init__(self, agent_bin, cli_bin, tmpdir):
        self.agent_bin = agent_bin
        self.cli_bin = cli_bin
        os.makedirs(tmpdir, exist_ok=True)
        self.tmpdir = tempfile.mkdtemp(prefix="run-", dir=tmpdir)
        self.short_dir = tempfile.mkdtemp(prefix="spoa-cli-", dir="/tmp")  # Unix socket paths
        self.ports = harness.PortAllocator()
        self.processes = []
        self.count = 0

    def path(self, name):
        return os.path.join(self.tmpdir, name)

    def start_agent(self, *extra, listen=None, example_echo=True):
        """spoa-agent on a fresh loopback port (plus `listen` addresses); returns (agent, target)."""
        self.count += 1
        port, admin = self.ports.get(), self.ports.get()
        argv = [self.agent_bin, "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                "--threads", "2"]
        for address in listen or ():
            argv += ["--listen", address]
        if example_echo:
            argv += ["--example", "echo"]
        argv += list(extra)
        agent = harness.Agent(None, argv, self.path(f"agent-{self.count}.log"),
                              f"127.0.0.1:{port}", admin)
        self.processes.append(agent)
        agent.wait_ready()
        return agent, f"127.0.0.1:{port}"

    def cli(self, *args, timeout=30):
        res = subprocess.run([self.cli_bin, *args], capture_output=True, text=True,
                             timeout=timeout)
        log(f"$ spoa-cli {' '.join(args)}  -> exit {res.returncode}\n{res.stdout}{res.stderr}")
        return res

    def cleanup(self):
        for p in self.processes:
            p.stop(grace=2.0)
        self.ports.release()
        shutil.rmtree(self.short_dir, ignore_errors=True)

    def dump_logs(self):
        for p in self.processes:
            print(f"\n===== {p.name} log {p.log_path} =====\n{p.log_text()[-4000:]}")


def table_rows(text):
    """The table's data rows as [scope, name, type, value] (value may be empty)."""
    lines = text.splitlines()
    check(lines and lines[0].split() == ["SCOPE", "NAME", "TYPE", "VALUE"], f"table header: {text!r}")
    return [re.split(r"\s{2,}", l.rstrip(), maxsplit=3) for l in lines[1:]]


def test_hello(env, target):
    res = env.cli("hello", "--target", target)
    check_eq(res.returncode, OK, "hello exit code")
    fields = dict(re.split(r"\s+", l, maxsplit=1) for l in res.stdout.splitlines())
    check_eq(fields.get("version"), "2.0", "announced version")
    check_eq(fields.get("max-frame-size"), "16380", "announced max-frame-size")
    check("pipelining" in fields.get("capabilities", ""), "pipelining announced")
    res = env.cli("hello", "--json", "--target", target)
    check_eq(json.loads(res.stdout),
             {"version": "2.0", "max_frame_size": 16380,
              "capabilities": "pipelining,fragmentation"}, "hello --json")


def test_notify_output(env, target):
    args = ["notify", "--target", target, "echo", "s=str:app1.example", "n=int32:-5",
            "u=uint32:4294967295", "l=int64:-9000000000", "q=uint64:18446744073709551615",
            "b=bool:true", "z=null", "a=ipv4:192.0.2.1", "v6=ipv6:2001:db8::1", "x=bin:00ff"]
    res = env.cli(*args)
    check_eq(res.returncode, OK, "notify exit code")
    check_eq(table_rows(res.stdout), [
        ["txn", "s", "str", "app1.example"], ["txn", "n", "int32", "-5"],
        ["txn", "u", "uint32", "4294967295"], ["txn", "l", "int64", "-9000000000"],
        ["txn", "q", "uint64", "18446744073709551615"], ["txn", "b", "bool", "true"],
        ["txn", "z", "null"], ["txn", "a", "ipv4", "192.0.2.1"],
        ["txn", "v6", "ipv6", "2001:db8::1"], ["txn", "x", "bin", "00ff"]], "echoed table")
    res = env.cli(*args[:1], "--json", *args[1:])
    actions = json.loads(res.stdout)["actions"]
    check_eq({a["name"]: (a["type"], a["value"]) for a in actions}, {
        "s": ("str", "app1.example"), "n": ("int32", -5), "u": ("uint32", 4294967295),
        "l": ("int64", -9000000000), "q": ("uint64", 18446744073709551615),
        "b": ("bool", True), "z": ("null", None), "a": ("ipv4", "192.0.2.1"),
        "v6": ("ipv6", "2001:db8::1"), "x": ("bin", "00ff")}, "echoed JSON")
    check(all(a["action"] == "set-var" and a["scope"] == "txn" for a in actions), "set-var txn")
    # Two messages in one NOTIFY: both answered in one ACK.
    res = env.cli("notify", "--json", "--target", target, "echo", "first=str:1", "echo",
                  "second=str:2")
    check_eq([a["name"] for a in json.loads(res.stdout)["actions"]], ["first", "second"],
             "two messages in one NOTIFY")


def test_targets(env):
    sock = os.path.join(env.short_dir, "agent.sock")
    listen = [f"unix:{sock}"]
    v6_port = env.ports.get()
    if socket.has_ipv6:
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
            listen.append(f"[::1]:{v6_port}")
        except OSError:
            log("no IPv6 loopback here: [v6]:port target not tested")
    env.start_agent(listen=listen)
    for address in listen:
        res = env.cli("notify", "--json", "--target", address, "echo", "via=str:" + address)
        check_eq(res.returncode, OK, f"notify over {address}")
        check_eq(json.loads(res.stdout)["actions"][0]["value"], address, f"answer over {address}")


def test_exit_codes(env, target):
    for bad in (["notify", "--target", target, "echo", "n=int32:abc"],
                ["notify", "--target", target, "n=str:x"],
                ["notify", "--target", "nowhere", "echo"],
                ["frobnicate"], []):
        res = env.cli(*bad)
        check_eq(res.returncode, USAGE, f"exit code of {bad}")
    # The agent refuses a frame above its max-frame-size with AGENT-DISCONNECT status 3.
    _, small = env.start_agent("--max-frame-size", "256")
    res = env.cli("notify", "--target", small, "echo", "big=str:" + "x" * 1000)
    check_eq(res.returncode, AGENT_DISCONNECT, "exit code on AGENT-DISCONNECT")
    check("status 3" in res.stderr, f"DISCONNECT status printed: {res.stderr!r}")
    # A listener that accepts (the kernel does, from its backlog) but never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", env.ports.get()))
    silent.listen(8)
    try:
        res = env.cli("hello", "--timeout", "300", "--target",
                      f"127.0.0.1:{silent.getsockname()[1]}")
        check_eq(res.returncode, TIMEOUT, "exit code when nothing answers")
    finally:
        silent.close()
    # Nothing listens on a port the allocator holds for us.
    res = env.cli("notify", "--target", f"127.0.0.1:{env.ports.get()}", "echo")
    check_eq(res.returncode, CONNECTION_FAILED, "exit code on connection refused")
    check("refused" in res.stderr, f"reason printed: {res.stderr!r}")


def test_repeat(env, target):
    res = env.cli("notify", "--repeat", "2000", "--concurrency", "4", "--target", target, "echo",
                  "id=str:x")
    check_eq(res.returncode, OK, "--repeat exit code")
    m = re.search(r"^2000 ACKs in [\d.]+ s over 4 connection\(s\): ([\d.]+) ACK/s$", res.stdout,
                  re.M)
    check(m is not None, f"ACK/s line in {res.stdout!r}")
    check(re.search(r"^latency us: p50 [\d.]+  p90 [\d.]+  p99 [\d.]+  max [\d.]+$", res.stdout,
                    re.M) is not None, "latency percentiles line")
    res = env.cli("notify", "--json", "--repeat", "100", "--concurrency", "2", "--target", target,
                  "echo")
    j = json.loads(res.stdout)
    check_eq((j["acks"], j["concurrency"]), (100, 2), "--repeat --json counts")
    lat = j["latency_us"]
    check(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], f"ordered percentiles {lat}")
    log(f"echo agent, 2 threads: {m.group(1)} ACK/s with 4 connections")


def stop(agent):
    agent.signal(signal.SIGTERM)
    check_eq(agent.wait(10), 0, "agent exit status after SIGTERM")


def test_record_replay(env):
    config_a, config_b = env.path("routes-a.yaml"), env.path("routes-b.yaml")
    with open(config_a, "w") as f:
        f.write(ROUTES.format(app1_port=9001))
    with open(config_b, "w") as f:
        f.write(ROUTES.format(app1_port=9005))
    record = env.path("session.rec")
    agent, target = env.start_agent("--config", config_a, "--record", record,
                                    example_echo=False)
    for host in ("app1.example", "app2.example", "unknown.example"):
        res = env.cli("notify", "--target", target, "route-http", f"host=str:{host}",
                      "path=str:/", "src=ipv4:192.0.2.1")
        check_eq(res.returncode, OK, f"routing {host}")
    stop(agent)
    with open(record, "rb") as f:
        check_eq(f.read(8), b"SPOAREC\x01", "recording magic")

    agent, target = env.start_agent("--config", config_a, example_echo=False)
    res = env.cli("replay", record, "--target", target)
    check_eq(res.returncode, OK, "replay against the same routes")
    check("replayed 3 NOTIFY(s): 3 same, 0 different" in res.stdout, "replay summary")
    stop(agent)

    agent, target = env.start_agent("--config", config_b, example_echo=False)
    res = env.cli("replay", record, "--target", target)
    check_eq(res.returncode, DIFFERENCES, "replay against a changed route")
    check("1 different" in res.stdout, "one exchange differs")
    check("host=str:app1.example" in res.stdout, "the differing request is named")
    check("- txn.port int64 9001" in res.stdout and "+ txn.port int64 9005" in res.stdout,
          "the differing variable is shown both ways")
    stop(agent)
    # --ignore replaces the default list: ignoring the changed variable too makes them equal. A
    # fresh agent again: the last replay left its route cache warm ("cache hit" answers).
    agent, target = env.start_agent("--config", config_b, example_echo=False)
    res = env.cli("replay", record, "--target", target, "--ignore", "port", "--ignore",
                  "decision_us")
    check_eq(res.returncode, OK, "replay with the changed variable ignored")
    stop(agent)


def test_record_bound(env):
    record = env.path("bounded.rec")
    agent, target = env.start_agent("--record", record, "--record-max-bytes", "1000")
    res = env.cli("notify", "--repeat", "50", "--target", target, "echo", "id=str:abcdef")
    check_eq(res.returncode, OK, "agent keeps answering past the bound")
    size = os.path.getsize(record)
    check(100 < size <= 1000, f"recording size {size} within --record-max-bytes 1000")
    # The line is logged by the loop thread that hit the bound, before its ACK went out.
    stopped = re.findall(r"recording to .* stopped", agent.log_text())
    check_eq(len(stopped), 1, "one log line when the bound is reached")
    res = env.cli("notify", "--target", target, "echo", "more=str:1")
    check_eq(os.path.getsize(record), size, "nothing written after the bound")
    check_eq(len(re.findall(r"recording to .* stopped", agent.log_text())), 1, "still one line")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--tmpdir", required=True)
    args = ap.parse_args()
    env = CliEnv(os.path.abspath(args.agent), os.path.abspath(args.cli), args.tmpdir)
    start = time.monotonic()
    try:
        _, target = env.start_agent()
        test_hello(env, target)
        test_notify_output(env, target)
        test_targets(env)
        test_exit_codes(env, target)
        test_repeat(env, target)
        test_record_replay(env)
        test_record_bound(env)
    except BaseException as e:  # noqa: BLE001 - report anything, then dump logs
        log(f"test_cli: FAIL: {type(e).__name__}: {e}")
        env.cleanup()
        env.dump_logs()
        print(f"\nfiles of this run kept in {env.tmpdir}")
        sys.exit(1)
    env.cleanup()
    shutil.rmtree(env.tmpdir, ignore_errors=True)
    log(f"test_cli: PASS ({time.monotonic() - start:.1f}s)")


if __name__ == "__main__":
    main()
