#!/usr/bin/env python3
"""Writes the flow-log seeds of tests/fuzz/fuzz_state.c: state files
(include/vpcfw/state.h) with open flow-log capture windows (version 2), and
one of version 1.  Usage: tests/fuzz/mkstate.py tests/fuzz/corpus/state"""
import os
import struct
import sys
import zlib

NS = 1000000000
WRITTEN = 1800000030            # Unix seconds (not a window boundary)
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
EGRESS, ACCEPT, DECISION, SAME_VPC = 1, 2, 4, 8
STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH = 8, 6
CT_SAVED_TCP_BYTES = int(os.environ.get("CT_SAVED_TCP_BYTES", "40"))


def v4(a):
    b = bytes(int(x) for x in a.split("."))
    return 0, 0xFFFF00000000 | int.from_bytes(b, "big")


def v6(a):
    import ipaddress
    n = int(ipaddress.IPv6Address(a))
    return n >> 64, n & (2**64 - 1)


def ifaces(ids):
    return b"".join(struct.pack("<H", len(i)) + i.encode() for i in ids)


def flow(iface, queue, proto, sport, dport, src, dst, deadline_s):
    # a UDP flow (no TCP state), deadline on the wall clock
    return (struct.pack("<IHBBB3xHH", iface, queue, proto, 0, 0, sport, dport) +
            struct.pack("<QQQQQ", src[0], src[1], dst[0], dst[1], deadline_s * NS) +
            b"\0" * CT_SAVED_TCP_BYTES)


def entry(iface, proto, fam, bits, flags, sport, dport, src, dst, packets, nbytes, first, last,
          stage=0, reason=0, rule=b""):
    return (struct.pack("<IBBBBHHBBBB", iface, proto, fam, bits, flags, sport, dport, stage,
                        reason, len(rule), 0) +
            struct.pack("<QQQQQQII", src[0], src[1], dst[0], dst[1], packets, nbytes, first,
                        last) + rule)


def window(queue, cls, start, entries, lost=(), lost_other=0):
    return (struct.pack("<HBBIQQ", queue, cls, len(lost), len(entries), start, lost_other) +
            b"".join(struct.pack("<II", i, n) for i, n in lost) + b"".join(entries))


def file(version, ids, flows, windows=None):
    body = ifaces(ids) + b"".join(flows)
    if version >= 2:
        body += struct.pack("<I", len(windows)) + b"".join(windows)
    head = b"VPCFWST\0" + struct.pack("<IIQIIQI", version, 48, WRITTEN * NS, len(ids), 0,
                                      len(flows), zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head)) + body


def main(out):
    a, b = v4("10.0.1.10"), v4("10.0.2.20")
    ids = ["eni-a", "eni-bb"]             # eni-a: odd length, "gone" in fuzz_state.c
    f = flow(1, 0, UDP, 5353, 53, a, b, WRITTEN + 100)
    w60 = WRITTEN - WRITTEN % 60
    w600 = WRITTEN - WRITTEN % 600
    tcp = entry(1, TCP, 4, EGRESS | ACCEPT | SAME_VPC, 2 | 1 | 16, 40000, 80, a, b, 10, 600,
                w60 + 1, WRITTEN)
    rej = entry(1, TCP, 4, DECISION, 2, 40001, 81, a, b, 2, 120, w60 + 2, w60 + 3,
                STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH,
                b"no security-group rule of eni-bb admits it (ingress)")
    ip6 = entry(1, ICMPV6, 6, ACCEPT, 0, 0, 0, v6("2001:db8::1"), v6("2001:db8::2"), 1, 104,
                w600 + 5, w600 + 5)
    gone = entry(0, UDP, 4, ACCEPT, 0, 1, 2, a, b, 1, 28, w60, w60)
    seeds = {
        "flowlog-open": file(2, ids, [f], [
            window(0, 0, w60, [tcp, rej, gone], lost=[(1, 5)], lost_other=2),
            window(0, 1, w600, [ip6, tcp])]),
        # ended by the time the fuzz target restores it (the file's time + 1 s)
        "flowlog-ended": file(2, ids, [], [window(1, 0, w60 - 120, [entry(
            1, UDP, 4, ACCEPT, 0, 5353, 53, a, b, 3, 300, w60 - 119, w60 - 61)])]),
        # more entries than the fuzz target's table holds: lost, as SKIPDATA
        "flowlog-full": file(2, ids, [], [window(0, 0, w60, [entry(
            1, UDP, 4, ACCEPT, 0, 1000 + i, 53, a, b, 1, 60, w60, w60) for i in range(20)])]),
        "flowlog-duplicate-entry": file(2, ids, [], [window(0, 0, w60, [tcp, tcp])]),
        "flowlog-duplicate-window": file(2, ids, [], [window(0, 0, w60, [tcp]),
                                                      window(0, 0, w60, [])]),
        "flowlog-queue-gone": file(2, ids, [], [window(9, 1, w600, [tcp])]),
        "version1-flows": file(1, ids, [f]),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
