#!/usr/bin/env python3
"""Regenerates tests/fuzz/corpus/frame/ from the example frames of protocol/README.md §11.1.

Usage: make_corpus.py [path/to/protocol/README.md] [output dir]

Every corpus file is one fuzzer input: byte 0 is the control byte read by frame_fuzzer.cpp
(bits 0-5: receive limit, 0x3f = 16380, else 7 + 8 * n; bit 6: fragmentation and a 1024-byte
own limit; bit 7: pipelining), the rest is the byte stream. Files are:

* one file per vector V1..V10 (limit 16380), and each again with a small limit (too big);
* concatenations: all vectors; a handshake + NOTIFY + ACK + DISCONNECT session;
* fragment sequences built from V5's payload (NOTIFY without FIN, UNSET, UNSET FIN), an
  aborted one (FIN|ABORT), the final UNSET recorded live (protocol/README.md §11.3), and a
  reassembly above the fuzzer's 256-byte cap;
* a few malformed frames (11-byte varint, reserved data type, LEN below 7);
* the regressions listed in REGRESSIONS below (inputs the fuzzer once crashed on).

Plain python3, standard library only. Output file names are stable so a re-run only changes
files whose content changed.
"""

import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SPEC = os.path.join(HERE, "..", "..", "protocol", "README.md")
DEFAULT_OUT = os.path.join(HERE, "corpus", "frame")

LIMIT_16380 = 0x3F
PIPELINING = 0x80
FRAGMENTATION = 0x40

# Inputs that once made frame_fuzzer fail, as hex (control byte first), keyed by file name.
# Kept here so they stay in the corpus when it is regenerated.
REGRESSIONS = {}


def vectors(spec_text):
    """{'V1': bytes, ...} from protocol/README.md §11.1."""
    start = spec_text.index("### 11.1")
    end = spec_text.index("### 11.2")
    section = spec_text[start:end]
    out = {}
    pattern = r"#### (V\d+) \((\d+) bytes\)\n\n```\n(.*?)```"
    for m in re.finditer(pattern, section, re.S):
        data = bytes.fromhex(m.group(3).replace("\n", " "))
        if len(data) != int(m.group(2)):
            raise SystemExit(f"{m.group(1)}: {len(data)} bytes, the heading says {m.group(2)}")
        out[m.group(1)] = data
    if len(out) != 10:
        raise SystemExit(f"expected 10 vectors, found {len(out)}")
    return out


def varint(x):
    if x < 240:
        return bytes([x])
    out = [(x & 0xFF) | 0xF0]
    x = (x - 240) >> 4
    while x >= 128:
        out.append((x & 0xFF) | 0x80)
        x = (x - 128) >> 7
    out.append(x)
    return bytes(out)


def frame(ftype, flags, sid, fid, payload):
    body = bytes([ftype]) + struct.pack(">I", flags) + varint(sid) + varint(fid) + payload
    return struct.pack(">I", len(body)) + body


def payload_of(vec):
    # The example frames of protocol/README.md §11 all use one-byte ids: header = 4 + 1 + 4 + 1 + 1.
    return vec[11:]


def build(spec_path):
    with open(spec_path, encoding="utf-8") as f:
        v = vectors(f.read())
    full = bytes([PIPELINING | LIMIT_16380])
    files = {}
    for name, data in v.items():
        files[f"vector-{name.lower()}"] = full + data
        # Limit 7 + 8 * 8 = 71: the larger vectors are refused as too big.
        files[f"vector-{name.lower()}-small-limit"] = bytes([0x08]) + data

    files["all-vectors"] = full + b"".join(v[f"V{i}"] for i in range(1, 11))
    files["session-2.6"] = bytes([PIPELINING | FRAGMENTATION | LIMIT_16380]) + (
        v["V2"] + v["V4"] + v["V5"] + v["V6"] + v["V7"] + v["V9"] + v["V10"]
    )
    files["healthcheck"] = full + v["V1"] + v["V4"]

    p5 = payload_of(v["V5"])
    frag = bytes([PIPELINING | FRAGMENTATION | LIMIT_16380])
    files["fragments-v5-3"] = frag + (
        frame(3, 0, 3, 1, p5[:68]) + frame(0, 0, 3, 1, p5[68:99]) + frame(0, 1, 3, 1, p5[99:])
    )
    files["fragments-v5-aborted"] = frag + (
        frame(3, 0, 3, 1, p5[:68]) + frame(0, 0, 3, 1, p5[68:99]) + frame(0, 3, 3, 1, b"")
        + v["V5"]
    )
    files["fragments-live-2.6"] = frag + (
        frame(3, 0, 2, 2, bytes.fromhex("04 62 6f 64 79 01 00 09 08 41 41 41 41"))
        + bytes.fromhex("00 00 00 0b 00 00 00 00 01 02 02 41 41 41 41")
    )
    files["fragments-over-cap"] = frag + (
        frame(3, 0, 5, 1, p5) + frame(0, 0, 5, 1, p5) + frame(0, 1, 5, 1, p5)
    )
    files["fragments-interlaced"] = frag + (
        frame(3, 0, 5, 1, p5[:50]) + frame(0, 1, 6, 1, p5[50:])
    )

    files["malformed-varint-11"] = full + bytes.fromhex(
        "00 00 00 11 03 00 00 00 01 f0 80 80 80 80 80 80 80 80 80 00 01"
    )
    files["malformed-reserved-type"] = full + frame(3, 1, 1, 1, bytes.fromhex("01 6d 01 01 61 0a"))
    files["malformed-len-3"] = full + bytes.fromhex("00 00 00 03 03 00 00 00 01")

    for name, hexdata in REGRESSIONS.items():
        files[name] = bytes.fromhex(hexdata)
    return files


def main():
    spec = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SPEC
    out = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUT
    os.makedirs(out, exist_ok=True)
    files = build(spec)
    for name, data in sorted(files.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {out}")


if __name__ == "__main__":
    main()
