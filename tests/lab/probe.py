#!/usr/bin/python3
"""Traffic for the vpcfw lab: echo servers and probes, TCP, UDP, ICMP, both
families.  Every probe prints one word (ok, timeout, refused, ...) and exits 0
only on ok.

  probe.py serve READYFILE --tcp 22,80 --udp 53
  probe.py tcp DST PORT [--sport N]     connect, send, expect the echo
  probe.py udp DST PORT [--sport N]     send, expect the echo
  probe.py icmp DST [--id N]            echo request, expect the reply
  probe.py hold DST PORT --sport N      a connection kept open; each line on
                                        stdin is one exchange, each answer one
                                        line on stdout
  probe.py spoof SRC DST PORT           one UDP datagram from a forged source
  probe.py rtt DST COUNT [--warmup N]   ICMP echo round trips: p50 p99 (us),
                                        after N uncounted ones of the same flow
  probe.py notify PATH OUT              a $NOTIFY_SOCKET: each datagram, one
                                        line per field, appended to OUT
"""
import argparse
import os
import select
import socket
import struct
import sys
import threading
import time

TIMEOUT = float(os.environ.get('PROBE_TIMEOUT', '1.5'))


def family(addr):
    return socket.AF_INET6 if ':' in addr else socket.AF_INET


def serve(args):
    socks = []
    for p in filter(None, args.tcp.split(',')):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(('::', int(p)))
        s.listen(64)
        socks.append(('tcp', s))
    for p in filter(None, args.udp.split(',')):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(('::', int(p)))
        socks.append(('udp', s))
    with open(args.ready + '.tmp', 'w') as f:
        f.write('ready\n')
    os.rename(args.ready + '.tmp', args.ready)

    def echo(conn):
        conn.settimeout(600)
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        conn.close()

    byfd = {s.fileno(): (kind, s) for kind, s in socks}
    while True:
        r, _, _ = select.select(list(byfd), [], [])
        for fd in r:
            kind, s = byfd[fd]
            if kind == 'tcp':
                conn, _ = s.accept()
                threading.Thread(target=echo, args=(conn,), daemon=True).start()
            else:
                data, peer = s.recvfrom(4096)
                s.sendto(data, peer)


def tcp_connect(dst, port, sport, src=''):
    s = socket.socket(family(dst), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sport or src:
        s.bind((src, sport))
    s.settimeout(TIMEOUT)
    s.connect((dst, port))
    return s


def tcp(args):
    try:
        s = tcp_connect(args.dst, args.port, args.sport, args.src)
        s.sendall(b'hello')
        data = s.recv(16)
        s.close()
        return 'ok' if data == b'hello' else 'bad-echo'
    except socket.timeout:
        return 'timeout'
    except ConnectionRefusedError:
        return 'refused'
    except OSError as e:
        return 'error:%s' % e.errno


def udp(args):
    s = socket.socket(family(args.dst), socket.SOCK_DGRAM)
    if args.sport or args.src:
        s.bind((args.src, args.sport))
    s.settimeout(TIMEOUT)
    try:
        s.sendto(b'hello', (args.dst, args.port))
        data, _ = s.recvfrom(16)
        return 'ok' if data == b'hello' else 'bad-echo'
    except socket.timeout:
        return 'timeout'
    except ConnectionRefusedError:
        return 'refused'
    except OSError as e:
        return 'error:%s' % e.errno


def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def icmp_socket(dst):
    if family(dst) == socket.AF_INET6:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


def icmp_once(s, dst, ident, seq, timeout=TIMEOUT):
    v6 = family(dst) == socket.AF_INET6
    payload = b'vpcfw-lab-probe!'
    if v6:
        pkt = struct.pack('!BBHHH', 128, 0, 0, ident, seq) + payload  # kernel sums it
    else:
        hdr = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
        pkt = struct.pack('!BBHHH', 8, 0, csum(hdr + payload), ident, seq) + payload
    t0 = time.perf_counter()
    s.sendto(pkt, (dst, 0))
    deadline = t0 + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return None
        r, _, _ = select.select([s], [], [], left)
        if not r:
            return None
        data, peer = s.recvfrom(2048)
        t1 = time.perf_counter()
        if not v6:
            data = data[(data[0] & 0x0f) * 4:]
        if len(data) < 8:
            continue
        typ, _, _, rid, rseq = struct.unpack('!BBHHH', data[:8])
        if typ == (129 if v6 else 0) and rid == ident and rseq == seq:
            return t1 - t0


def icmp(args):
    s = icmp_socket(args.dst)
    ident = args.id or (os.getpid() & 0xffff)
    return 'ok' if icmp_once(s, args.dst, ident, 1) is not None else 'timeout'


def rtt(args):
    s = icmp_socket(args.dst)
    ident = os.getpid() & 0xffff
    times = []
    lost = 0
    # the same flow's first echoes, not counted: an established flow's
    # latency, not its first packets' (decided on the queue, offload or not)
    for i in range(args.warmup):
        icmp_once(s, args.dst, ident, (args.count + i) & 0xffff, 1.0)
        time.sleep(args.interval)
    for i in range(args.count):
        t = icmp_once(s, args.dst, ident, i & 0xffff, 1.0)
        if t is None:
            lost += 1
        else:
            times.append(t * 1e6)
        time.sleep(args.interval)
    times.sort()
    if not times:
        print('nan nan %d' % lost)
        return 'timeout'
    p50 = times[len(times) // 2]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print('%.1f %.1f %d' % (p50, p99, lost))
    return None


def hold(args):
    try:
        s = tcp_connect(args.dst, args.port, args.sport)
    except OSError:
        print('connect-failed', flush=True)
        return 'connect-failed'
    for line in sys.stdin:
        msg = line.strip().encode() or b'x'
        try:
            s.settimeout(TIMEOUT)
            s.sendall(msg)
            data = s.recv(len(msg))
            print('ok' if data == msg else 'bad-echo', flush=True)
        except socket.timeout:
            print('timeout', flush=True)
        except OSError as e:
            print('error:%s' % e.errno, flush=True)
    s.close()
    return None


def spoof(args):
    from scapy.all import IP, IPv6, UDP, send, conf  # only here: slow to import
    conf.verb = 0
    l3 = IPv6(src=args.src, dst=args.dst) if ':' in args.dst else IP(src=args.src, dst=args.dst)
    send(l3 / UDP(sport=args.sport or 40404, dport=args.port) / b'spoofed')
    return 'sent'


def notify(args):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(args.path)
    while True:
        data = s.recv(4096).decode(errors='replace')
        with open(args.out, 'a') as f:
            for line in data.split('\n'):
                if line:
                    f.write(line + '\n')


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('serve')
    p.add_argument('ready')
    p.add_argument('--tcp', default='')
    p.add_argument('--udp', default='')
    for name in ('tcp', 'udp', 'hold'):
        p = sub.add_parser(name)
        p.add_argument('dst')
        p.add_argument('port', type=int)
        p.add_argument('--sport', type=int, default=0)
        p.add_argument('--src', default='', help='source address (one of this host\'s)')
    p = sub.add_parser('icmp')
    p.add_argument('dst')
    p.add_argument('--id', type=int, default=0)
    p = sub.add_parser('spoof')
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('port', type=int)
    p.add_argument('--sport', type=int, default=0)
    p = sub.add_parser('rtt')
    p.add_argument('dst')
    p.add_argument('count', type=int)
    p.add_argument('--interval', type=float, default=0.01)
    p.add_argument('--warmup', type=int, default=0)
    p = sub.add_parser('notify')
    p.add_argument('path')
    p.add_argument('out')
    args = ap.parse_args()
    if args.cmd == 'serve':
        serve(args)
        return 0
    if args.cmd == 'notify':
        notify(args)
        return 0
    res = globals()[args.cmd](args)
    if res is not None:
        print(res)
    return 0 if res in (None, 'ok', 'sent') else 1


if __name__ == '__main__':
    sys.exit(main())
