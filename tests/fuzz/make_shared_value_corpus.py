#!/usr/bin/python3
"""Writes the seed corpus of shared_value_fuzzer.cpp: values of shared cache entries as agents
write them (shared_route_value.hpp), and a few that must be refused.

    /usr/bin/python3 tests/fuzz/make_shared_value_corpus.py tests/fuzz/corpus/shared_value
"""
import os
import sys

import msgpack

SEEDS = {
    "route_full": {"v": 1, "route": {
        "endpoints": ["127.0.0.1:9001", "[::1]:9002", "backend.internal:80"],
        "paths": {"/api/v2": ["127.0.0.1:9003"], "/api": ["127.0.0.1:9004"]},
        "metadata": {"tenant": "alpha", "plan": "pro"},
        "state": "ready", "ttl_ms": 1500, "timeout_ms": 20000}},
    "route_minimal": {"v": 1, "route": {"endpoints": ["10.0.0.1:5432"]}},
    "route_asleep": {"v": 1, "route": {"endpoints": [], "state": "asleep"}},
    "error_not_found": {"v": 1, "error": {"code": "not_found", "reason": "no such app"}},
    "error_retry": {"v": 1, "error": {"code": "unavailable", "reason": "busy",
                                      "retry_after_ms": 2500}},
    "bad_version": {"v": 2, "route": {"endpoints": ["127.0.0.1:80"]}},
    "bad_both": {"v": 1, "route": {"endpoints": ["127.0.0.1:80"]},
                 "error": {"code": "not_found"}},
    "bad_code": {"v": 1, "error": {"code": "nope"}},
    "bad_endpoint": {"v": 1, "route": {"endpoints": ["no port"]}},
    "extra_key": {"v": 1, "new": [1, 2, 3], "route": {"endpoints": ["127.0.0.1:80"]}},
}


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, value in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(msgpack.packb(value, use_bin_type=True))


if __name__ == "__main__":
    main()
