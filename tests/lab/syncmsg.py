#!/usr/bin/python3
"""HA sync messages for tests/lab/ha.sh (format: include/vpcfw/sync.h).

usage: syncmsg.py forge ADDR PORT NODE     a well-formed update claiming a
                                           flow, under a key that is not the
                                           pair's: sent once
       syncmsg.py capture DEV PORT FILE SECONDS
                                           the UDP payload of the first sync
                                           message received on DEV for PORT,
                                           to FILE
       syncmsg.py send ADDR PORT FILE      FILE's bytes in one datagram"""
import hashlib
import hmac
import socket
import struct
import sys
import time


def forge(addr, port, node):
    key = b"not the pair's key, but a key all the same"
    rec = struct.pack("<BBBBHHHHIQQQQ", 1, 6, 3, 1, 0, 0, 40000, 22, 3600000,
                      0, 0xFFFF00000000 | 0xCB007107, 0, 0xFFFF00000000 | 0x0A00020A) + bytes(40)
    ids = [b"eni-0000000000app01"]
    now = time.time_ns()
    head = b"VPCFWSY\0" + struct.pack("<HBBIQQQHHIII", 1, 1, 1, node, now, 1, now, 1, len(ids),
                                       0, 0, 0)
    body = head + rec + b"".join(bytes([len(i)]) + i for i in ids)
    msg = body + hmac.new(key, body, hashlib.sha256).digest()
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(msg, (addr, port))


def capture(dev, port, out, seconds):
    # every protocol (ETH_P_ALL): IPv4 or IPv6 (without extension headers)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
    s.bind((dev, 0))
    s.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            pkt, where = s.recvfrom(65535)
        except socket.timeout:
            continue
        if where[2] == socket.PACKET_OUTGOING:
            continue    # this side's own: only what the peer sent is replayed
        if len(pkt) >= 28 and pkt[0] >> 4 == 4 and pkt[9] == 17:
            ihl = (pkt[0] & 15) * 4
        elif len(pkt) >= 48 and pkt[0] >> 4 == 6 and pkt[6] == 17:
            ihl = 40
        else:
            continue
        dport = struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0]
        payload = pkt[ihl + 8:]
        if dport == port and payload[:8] == b"VPCFWSY\0":
            with open(out, "wb") as f:
                f.write(payload)
            return 0
    return 1


def send(addr, port, path):
    with open(path, "rb") as f:
        data = f.read()
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(data, (addr, port))


if __name__ == "__main__":
    a = sys.argv
    if a[1] == "forge":
        forge(a[2], int(a[3]), int(a[4]))
    elif a[1] == "capture":
        sys.exit(capture(a[2], int(a[3]), a[4], float(a[5])))
    elif a[1] == "send":
        send(a[2], int(a[3]), a[4])
    else:
        sys.exit(__doc__)
