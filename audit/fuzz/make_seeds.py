#!/usr/bin/env python3
"""Writes the seed inputs of the `segment` fuzz target (seeds/segment/): small valid segments
and records in the formats of audit/README.md, and a few damaged ones. Rerun after a format
change: python3 make_seeds.py"""
import os
import struct

POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def s(text):
    b = text.encode()
    return struct.pack("<H", len(b)) + b


def record(i, refused=False, consent=True):
    out = bytes([1]) + struct.pack("<Q", 1_795_000_000_000_000_000 + i)
    for t in ["gw-1", f"req-{i}", "housing-programme", "identity-authority",
              "identity.person", "housing-grant", "statute", "Housing Act art. 7"]:
        out += s(t)
    out += (b"\x01" + s(f"c-{i}")) if consent else b"\x00"
    out += bytes([i % 256]) * 32
    out += struct.pack("<H", 2) + s("full_name_en") + s("date_of_birth")
    out += struct.pack("<H", 1) + s("full_name_en") + s("allow") + s("r1")
    out += struct.pack("<H", 1) + s("date_of_birth") + s("field_not_granted") + s("")
    out += (b"\x02" + s("consent") + s("consent_revoked")) if refused else b"\x00"
    out += b"\x07" * 32 + b"\x09" * 32 + s("ok")
    return out


def header(first):
    h = b"isnadseg" + struct.pack("<IQ", 1, first)
    return h + struct.pack("<I", crc32c(h))


def frame(index, payload):
    head = struct.pack("<IQ", len(payload), index)
    crc = crc32c(payload, crc32c(head))
    return head + struct.pack("<I", crc) + payload


def segment(first, count):
    return header(first) + b"".join(frame(first + i, record(first + i, refused=i % 3 == 2, consent=i % 2 == 0)) for i in range(count))


here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "segment")
os.makedirs(here, exist_ok=True)
seeds = {
    "empty-segment": header(0),
    "one-record": segment(0, 1),
    "five-records": segment(0, 5),
    "later-segment": segment(4096, 3),
    "torn-tail": segment(0, 3)[:-7],
    "bad-crc": segment(0, 2)[:-1] + b"\x00",
    "gap": header(0) + frame(0, record(0)) + frame(2, record(2)),
    # the last segment as the writer keeps it: records, then zeros written ahead of them
    "zero-tail": segment(0, 2) + bytes(4096),
    "empty-zero-tail": header(0) + bytes(100),
    "torn-then-zeros": segment(0, 2) + frame(2, record(2))[:300] + bytes(4096),
    "zeros-then-frame": segment(0, 1) + bytes(64) + frame(1, record(1)),
    "record": record(7),
    "record-refused": record(8, refused=True, consent=False),
}
for name, data in seeds.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
