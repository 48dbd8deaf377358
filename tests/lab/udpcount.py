#!/usr/bin/python3
"""A counted UDP stream (the flow-log restart lab): the sender's datagrams
and the receiver's count, exact, to hold flow-log packet totals against.

usage: udpcount.py recv ADDR PORT COUNTFILE READYFILE
       udpcount.py send ADDR PORT SPORT RATE STOPFILE SENTFILE

The receiver counts the datagrams from each source port and rewrites
COUNTFILE ("SPORT COUNT" lines) at most every 0.1 s and on each datagram
after a pause.  The sender sends RATE datagrams a second from SPORT until
STOPFILE exists, then writes the number sent to SENTFILE."""
import os
import socket
import sys
import time


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def recv(addr, port, path, ready):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(0.1)
    counts = {}
    write(path, "")
    with open(ready, "w") as f:
        f.write("ready\n")
    last = 0.0
    dirty = False
    while True:
        try:
            _, src = s.recvfrom(2048)
            counts[src[1]] = counts.get(src[1], 0) + 1
            dirty = True
        except socket.timeout:
            pass
        now = time.monotonic()
        if dirty and now - last >= 0.1:
            write(path, "".join("%d %d\n" % kv for kv in sorted(counts.items())))
            last = now
            dirty = False


def send(addr, port, sport, rate, stop, sent_path):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", sport))
    n = 0
    t0 = time.monotonic()
    while not os.path.exists(stop):
        try:
            s.sendto(b"datagram %d\n" % n, (addr, port))
        except OSError:
            pass    # counted as sent: the receiver's count is what matters
        n += 1
        delay = t0 + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    write(sent_path, "%d\n" % n)


if __name__ == "__main__":
    a = sys.argv
    if len(a) == 6 and a[1] == "recv":
        recv(a[2], int(a[3]), a[4], a[5])
    elif len(a) == 8 and a[1] == "send":
        send(a[2], int(a[3]), int(a[4]), float(a[5]), a[6], a[7])
    else:
        sys.exit(__doc__)
