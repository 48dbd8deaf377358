#!/usr/bin/python3
"""usage: vxlan-rx.py ADDR PORT OUT READY [STOP]
Receives UDP datagrams on ADDR PORT and writes them to OUT (pcap) as
Ethernet/IPv4/UDP frames, so that tshark decodes the VXLAN in them.
ADDR "loopback": the first 127.x.y.z (from a random start) whose PORT is
free; exits 1 when none is.  Writes the address bound to READY once bound.  Without STOP: stops 1.5 s after the last datagram
(20 s when none comes); with STOP: once the file STOP exists (at most 120 s)."""
import os
import random
import socket
import struct
import sys
import time

addr, port, out, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
stop = sys.argv[5] if len(sys.argv) > 5 else None
idle, wait = (0.2, 120.0) if stop else (1.5, 20.0)

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if addr == "loopback":
    rnd = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        cand = "127.%d.%d.%d" % (rnd.randrange(1, 255), rnd.randrange(0, 256), rnd.randrange(1, 255))
        try:
            s.bind((cand, port))
        except OSError:
            continue
        addr = cand
        break
    else:
        sys.exit("vxlan-rx: no free loopback address for port %d" % port)
else:
    s.bind((addr, port))
with open(ready + ".tmp", "w") as f:
    f.write(addr + "\n")
os.rename(ready + ".tmp", ready)
got = []
start = time.time()
while True:
    s.settimeout(idle if got else max(0.1, wait - (time.time() - start)))
    if stop:
        s.settimeout(idle)
    try:
        data, (src, sport) = s.recvfrom(65535)
    except socket.timeout:
        if stop and not os.path.exists(stop) and time.time() - start < wait:
            continue
        break
    got.append((time.time(), src, sport, data))

def csum(b):
    if len(b) % 2:
        b += b"\0"
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while n >> 16:
        n = (n & 0xffff) + (n >> 16)
    return ~n & 0xffff

with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for t, src, sport, data in got:
        udp = struct.pack("!HHHH", sport, port, 8 + len(data), 0) + data
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(addr))
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        frame = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + udp
        f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)))
        f.write(frame)
print("vxlan-rx: %d datagrams" % len(got), file=sys.stderr)
