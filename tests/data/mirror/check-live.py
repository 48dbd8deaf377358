#!/usr/bin/python3
"""usage: check-live.py VXLAN.txt
Checks the VXLAN stream of tests/mirror.sh's live part, given as tshark
fields vni|udp.length|ip.src|ip.dst|ipv6.src|ipv6.dst|tcp.srcport|tcp.dstport
(outer and inner values comma-separated): VNI 42, cut at PacketLength 64,
the accepted flows of app01 in both directions, nothing of the SG-refused
one."""
import sys

rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1])]
if not rows:
    sys.exit("no VXLAN received")
inner = []
for vni, udplen, src4, dst4, src6, dst6, sport, dport in rows:
    if vni != "42":
        sys.exit("VNI %s, want 42" % vni)
    if int(udplen.split(",")[0]) > 8 + 8 + 64:
        sys.exit("UDP length %s: not cut at PacketLength 64" % udplen)
    inner.append((src6 or src4.split(",")[-1], dst6 or dst4.split(",")[-1], sport, dport))


def seen(src, dst, port, reply=False):
    return any(s == src and d == dst and (sp if reply else dp) == port for s, d, sp, dp in inner)


want = [
    (("198.51.100.20", "10.0.2.10", "22"), "corp -> app:22 (ingress of app01)"),
    (("10.0.2.10", "198.51.100.20", "22", True), "app:22 -> corp (egress of app01)"),
    (("10.0.1.10", "10.0.2.10", "8000"), "web -> app:8000"),
    (("10.0.2.10", "10.0.1.10", "8000", True), "app:8000 -> web"),
    (("2001:db8:1234:1::10", "2001:db8:1234:2::10", "8000"), "IPv6 web -> app:8000"),
]
for args, name in want:
    if not seen(*args):
        sys.exit("not mirrored: " + name)
if any(s == "203.0.113.7" for s, _, _, _ in inner):
    sys.exit("SG-refused packets (inet -> app:8000) were mirrored")
print("VXLAN stream as expected: %d copies" % len(rows))
