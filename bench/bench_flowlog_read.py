#!/usr/bin/env python3
"""Flow-log reading benchmark (issue #15 item 4): records per second of
`vpcfwd --replay-flow-logs` (with --threads 1 and 2) and of `vpcfwctl diff
--traffic` on default-format (version 2) gzip files, against `zcat FILES |
wc -l` on the same files as the floor (decompression alone).  Per core:
records / CPU-seconds of the process (user + system, every thread); wall:
records / elapsed seconds.  The load average is printed beside: on a shared
machine the wall-clock figures are the load's as much as the program's.
Prints figures; not a test.

    make bench-flowlog                  (uses the build's src/vpcfwd, src/vpcfwctl)
    bench/bench_flowlog_read.py VPCFWD [RECORDS [FILES]]
        default: 4000000 records in 4 files

The records are made up over the shipped three-tier example's interfaces
and addresses (conf/three-tier), with AWS's field order: version account-id
interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end
action log-status.  Only the Python standard library is used.
"""
import gzip
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "..", "conf", "three-tier")

IFACES = [("eni-0000000000web01", "10.0.1.10"), ("eni-0000000000app01", "10.0.2.10"),
          ("eni-00000000000db01", "10.0.3.10")]
PORTS = [80, 443, 22, 8000, 3306, 53, 123]


def make(path, n, seed):
    rnd = random.Random(seed)
    t = 1700000000
    with gzip.open(path, "wt", compresslevel=6) as f:
        f.write("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
                "packets bytes start end action log-status\n")
        for i in range(n):
            eni, addr = IFACES[i % 3]
            peer = "203.0.113.%d" % (rnd.randrange(1, 255))
            port = PORTS[i % len(PORTS)]
            inbound = i & 1
            src, dst = (peer, addr) if inbound else (addr, peer)
            sp, dp = (40000 + i % 20000, port) if inbound else (port, 40000 + i % 20000)
            if i % 1000 == 0:
                t += 60
            f.write("2 123456789012 %s %s %s %d %d 6 %d %d %d %d %s OK\n" % (
                eni, src, dst, sp, dp, 1 + i % 50, 40 + i % 9000, t, t + 59,
                "ACCEPT" if i % 7 else "REJECT"))


def timed(argv, shell=False):
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - t0
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return p, wall, cpu, r1.ru_maxrss


def load():
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def report(name, n, wall, cpu, rss=None):
    print("%-28s %6.2f s wall, %6.2f s CPU: %5.2f M records/s per core, %5.2f M/s wall%s"
          % (name + ":", wall, cpu, n / cpu / 1e6, n / wall / 1e6,
             "; peak RSS %d MB" % (rss // 1024) if rss is not None else ""))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    vpcfwd = sys.argv[1]
    vpcfwctl = os.path.join(os.path.dirname(vpcfwd), "vpcfwctl")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4000000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    tmp = tempfile.mkdtemp(prefix="vpcfw-bench-fl-")
    try:
        paths = []
        for k in range(files):
            p = os.path.join(tmp, "fl-%d.log.gz" % k)
            make(p, n // files, k)
            paths.append(p)
        size = sum(os.path.getsize(p) for p in paths)
        print("%d records in %d gzip files (%.1f MB compressed), on %d cores; %s"
              % (n, files, size / 1e6, os.cpu_count(), load()))
        p, wall, cpu, _ = timed("zcat %s | wc -l" % " ".join(paths), shell=True)
        lines = int(p.stdout.strip() or 0)
        print("%-28s %6.2f s wall, %6.2f s CPU: %5.2f M lines/s per core, %5.2f M/s wall "
              "(the floor)" % ("zcat | wc -l:", wall, cpu, lines / cpu / 1e6, lines / wall / 1e6))
        first = ""
        for threads in (1, 2):
            p, wall, cpu, rss = timed([vpcfwd, "-c", CONF, "--replay-flow-logs"] + paths +
                                      ["--threads", str(threads)])
            if p.returncode != 0:
                print("vpcfwd failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
                return 1
            first = p.stderr.splitlines()[0] if p.stderr else ""
            if " %d records" % n not in first:
                print("vpcfwd did not read every record: %s" % first)
                return 1
            report("replay-flow-logs, %d thread%s" % (threads, "s" if threads > 1 else ""),
                   n, wall, cpu, rss)
        print("  (%s)" % first)
        if os.access(vpcfwctl, os.X_OK):
            p, wall, cpu, _ = timed([vpcfwctl, "diff", "-c", CONF, "-c2", CONF, "--traffic"] + paths)
            if p.returncode != 0:
                print("vpcfwctl diff failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
                return 1
            report("diff --traffic (2 threads)", n, wall, cpu)
        print("after: %s" % load())
    finally:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
