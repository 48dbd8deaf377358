#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_sync.c: HA sync messages
(include/vpcfw/sync.h, version 1) authenticated with the fuzz target's key.
Usage: tests/fuzz/mksync.py tests/fuzz/corpus/sync"""
import hashlib
import hmac
import os
import struct
import sys

KEY = b"vpcfw fuzz_sync key, not a secret"
NS = 1000000000


def v4(a):
    b = bytes(int(x) for x in a.split("."))
    return 0, 0xFFFF00000000 | int.from_bytes(b, "big")


def v6(a):
    import ipaddress
    n = int(ipaddress.IPv6Address(a))
    return n >> 64, n & (2**64 - 1)


def record(op, proto, state, flags, iface, queue, sport, dport, life_ms, src, dst, tcp=b""):
    tcp = tcp.ljust(40, b"\0")
    return struct.pack("<BBBBHHHHIQQQQ", op, proto, state, flags, iface, queue, sport, dport,
                       life_ms, src[0], src[1], dst[0], dst[1]) + tcp


def message(mtype, flags, recs, ids, seq=1, bulk_id=0, bulk_total=0, lag=0, sender=2,
            epoch=1800000000 * NS, sent=1800000001 * NS, version=1, key=KEY, tail=b""):
    head = b"VPCFWSY\0" + struct.pack("<HBBIQQQHHIII", version, mtype, flags, sender, epoch, seq,
                                       sent, len(recs), len(ids), bulk_id, bulk_total, lag)
    body = head + b"".join(recs) + b"".join(bytes([len(i)]) + i for i in ids) + tail
    return body + hmac.new(key, body, hashlib.sha256).digest()


def main(out):
    os.makedirs(out, exist_ok=True)
    tcp = record(1, 6, 3, 1, 0, 2, 40000, 443, 431999000, v4("10.0.1.5"), v4("10.0.2.9"),
                 bytes(range(1, 41)))
    udp = record(1, 17, 0, 3, 1, 0, 5353, 53, 180000, v4("10.0.1.5"), v4("10.0.2.9"))
    icmp = record(1, 1, 0, 0, 0, 2, 77, 77, 30000, v4("10.0.1.5"), v4("10.0.2.9"))
    gone = record(2, 6, 7, 0, 0, 1, 50000, 22, 0, v6("2001:db8::1"), v6("2001:db8::2"))
    ids = [b"eni-0123456789abcdef0", b"eni-b"]
    seeds = {
        "update": message(1, 1, [tcp, udp, icmp, gone], ids, seq=42, lag=1234),
        "update-one": message(1, 0, [icmp], ids[:1]),
        "bulk-req": message(2, 0, [], [], bulk_id=7),
        "bulk-last": message(3, 3, [tcp, udp], ids, seq=9, bulk_id=7, bulk_total=1000000),
        "hello": message(4, 1, [], []),
        "bad-mac": message(1, 0, [icmp], ids[:1], key=b"another key, sixteen bytes at least"),
        "version2": message(1, 0, [icmp], ids[:1], version=2),
        "trailing": message(1, 0, [icmp], ids[:1], tail=b"x"),
        "dup-id": message(1, 0, [icmp, record(1, 1, 0, 0, 1, 2, 78, 78, 30000, v4("10.0.1.5"),
                                                v4("10.0.2.9"))], [b"eni-a", b"eni-a"]),
        "truncated": message(1, 1, [tcp, udp], ids)[:150],
        "empty": b"",
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/sync")
