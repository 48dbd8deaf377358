#!/usr/bin/python3
"""Holds N idle connections to a control socket, as a client that never
sends a request would; reports how many the daemon kept and how many it
refused (with the first refusal's text), then keeps the kept ones open
until SECONDS have passed or the daemon drops them.

usage: hold.py SOCKET N SECONDS REPORT"""
import json
import select
import socket
import sys
import time

path, n, seconds, report = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
socks, refused, errors, first = [], 0, 0, ""
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
    except OSError:
        errors += 1
        s.close()
        continue
    socks.append(s)
# The daemon answers refusals at once, but a loaded machine may take a while
# to get through hundreds: collect answers until none has come for a second
# (10 s at most); the silent ones are the kept.
kept = list(socks)
quiet_since, give_up = time.time(), time.time() + 10
while kept and time.time() - quiet_since < 1 and time.time() < give_up:
    r, _, _ = select.select(kept, [], [], 0.1)
    for s in r:
        try:
            data = s.recv(4096).decode(errors="replace")
        except OSError:
            data = ""
        refused += 1
        first = first or data.strip()
        kept.remove(s)
        s.close()
        quiet_since = time.time()
with open(report, "w") as f:
    json.dump({"kept": len(kept), "refused": refused, "connect_errors": errors,
               "first_refusal": first}, f)
# hold; a connection the daemon drops reads as closed
deadline = time.time() + seconds
dropped = 0
while kept and time.time() < deadline:
    r, _, _ = select.select(kept, [], [], 0.2)
    for s in r:
        kept.remove(s)
        s.close()
        dropped += 1
with open(report + ".end", "w") as f:
    json.dump({"dropped_by_daemon": dropped, "still_open": len(kept)}, f)
