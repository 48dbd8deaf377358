#!/usr/bin/python3
"""Writes a pcap from a JSON list of packets.

usage: mkpcap.py PACKETS.json OUT.pcap

PACKETS.json is a list of packets, or a scenario object with a "packets"
list, in the shape of tests/scenarios/*.json (see tests/tools/scenario-check):
  t (seconds since start, default: previous + 0.001), src, dst,
  proto (tcp|udp|icmp|icmpv6|NUMBER), sport, dport, flags (tcp, scapy
  letters, default "S"), seq, ack, type, code, id (icmp, icmpv6 echo), len (payload
  bytes) or payload (text).  Other keys (expect, note) are ignored.
The output depends only on the input, so a committed pcap can be checked
against its source by regenerating it.
"""
import json
import logging
import sys

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6, Raw, wrpcap  # noqa: E402
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, _ICMPv6  # noqa: E402

EPOCH = 1700000000.0


def build(p):
    v6 = ":" in p["src"]
    l3 = IPv6(src=p["src"], dst=p["dst"]) if v6 else IP(src=p["src"], dst=p["dst"])
    proto = p.get("proto", "tcp")
    if proto == "tcp":
        l4 = TCP(sport=p.get("sport", 40000), dport=p.get("dport", 80), flags=p.get("flags", "S"),
                 seq=p.get("seq", 1000), ack=p.get("ack", 0))
    elif proto == "udp":
        l4 = UDP(sport=p.get("sport", 40000), dport=p.get("dport", 53))
    elif proto == "icmp":
        l4 = ICMP(type=p.get("type", 8), code=p.get("code", 0), id=p.get("id", 1), seq=p.get("seq", 1))
    elif proto == "icmpv6" and p.get("type", 128) in (128, 129):
        echo = ICMPv6EchoRequest if p.get("type", 128) == 128 else ICMPv6EchoReply
        l4 = echo(code=p.get("code", 0), id=p.get("id", 1), seq=p.get("seq", 1))
    elif proto == "icmpv6":
        l4 = _ICMPv6(type=p.get("type", 128), code=p.get("code", 0))
    else:
        n = int(proto)
        if v6:
            l3.nh = n
        else:
            l3.proto = n
        l4 = Raw(b"\0" * 8)
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3 / l4
    if "payload" in p:
        pkt = pkt / Raw(p["payload"].encode())
    elif p.get("len"):
        pkt = pkt / Raw(b"x" * p["len"])
    return pkt


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(sys.argv[1]) as f:
        data = json.load(f)
    packets = data["packets"] if isinstance(data, dict) else data
    out, t = [], EPOCH
    for p in packets:
        t = EPOCH + p["t"] if "t" in p else t + 0.001
        x = build(p)
        x.time = t
        out.append(x)
    wrpcap(sys.argv[2], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
