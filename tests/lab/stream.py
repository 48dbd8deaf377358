#!/usr/bin/python3
"""A long-lived TCP connection whose server talks and whose client only
listens (issue #13's restart lab): after a restart, the server's segments
come first, so only a tracked flow lets them through a security group that
allows no egress.

usage: stream.py serve ADDR PORT READYFILE
       stream.py client ADDR PORT STATUSFILE SECONDS

The server sends one numbered line every 0.1 s to each client.  The client
sends one line ("hello") and then nothing but ACKs; it rewrites STATUSFILE
with "COUNT TIME" (lines received, CLOCK_MONOTONIC of the last) on each
line, and with "closed COUNT" when the connection ends.  It gives up after
SECONDS."""
import os
import socket
import sys
import threading
import time


def serve(addr, port, ready):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(8)
    with open(ready, "w") as f:
        f.write("ready\n")

    def talk(c):
        try:
            c.recv(64)
            n = 0
            while True:
                n += 1
                c.sendall(b"line %d\n" % n)
                time.sleep(0.1)
        except OSError:
            c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=talk, args=(c,), daemon=True).start()


def status(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.rename(tmp, path)


def client(addr, port, path, seconds):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect((addr, port))
    c.sendall(b"hello\n")
    c.settimeout(1)
    n, buf, end = 0, b"", time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = c.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        buf += data
        k = buf.count(b"\n")
        if k:
            n += k
            buf = buf[buf.rfind(b"\n") + 1:]
            status(path, "%d %.3f" % (n, time.monotonic()))
    status(path, "closed %d" % n)


if sys.argv[1] == "serve":
    serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
else:
    client(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
