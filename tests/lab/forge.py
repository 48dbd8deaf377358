#!/usr/bin/python3
"""Forged TCP resets for the blind-RST lab (tests/lab/rst.sh), sent from
inside a lab namespace with scapy.

usage: forge.py rst SRC DST SPORT DPORT SEQ
       forge.py rst-at IFACE SRC DST SPORT DPORT OFFSET

rst     sends one RST (no ACK) SRC:SPORT -> DST:DPORT with sequence number SEQ.
rst-at  waits (5 s at most) for a segment DST:DPORT -> SRC:SPORT on IFACE,
        reads its acknowledgement number -- the next sequence number the
        other side expects from SRC, the exact RST's (RFC 5961 3.2) -- and
        sends the RST at that number + OFFSET (0: the exact one).
Prints the sequence number used; exits 1 when no segment was seen."""
import sys

from scapy.all import IP, IPv6, TCP, conf, send, sniff  # noqa: E402

conf.verb = 0


def ip(src, dst):
    return IPv6(src=src, dst=dst) if ":" in dst else IP(src=src, dst=dst)


def rst(src, dst, sport, dport, seq):
    send(ip(src, dst) / TCP(sport=sport, dport=dport, flags="R", seq=seq & 0xffffffff,
                            window=0))
    print(seq & 0xffffffff)


def main():
    a = sys.argv[1:]
    if len(a) == 6 and a[0] == "rst":
        rst(a[1], a[2], int(a[3]), int(a[4]), int(a[5]))
        return 0
    if len(a) == 7 and a[0] == "rst-at":
        iface, src, dst, sport, dport, off = a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6])

        def theirs(p):
            return TCP in p and p[TCP].sport == dport and p[TCP].dport == sport and \
                p[TCP].flags & 0x10

        got = sniff(iface=iface, lfilter=theirs, count=1, timeout=5)
        if not got:
            print("no segment from %s:%d seen" % (dst, dport), file=sys.stderr)
            return 1
        rst(src, dst, sport, dport, got[0][TCP].ack + off)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
