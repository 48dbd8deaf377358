#!/usr/bin/env python3
"""Reload stall benchmark: does the control socket keep answering while a
large configuration is reloaded?  (issue #9: "a reload of that size swaps in
without stalling the control socket for more than" the 2 s of the load.)
Prints figures; not a test.

    sudo make bench-reload              (uses the build's src/vpcfwd)
    sudo bench/bench_reload.py VPCFWD [RULES:IFACES] [--sighup]
        default: 200000:20000, reload by the control socket's "reload" verb

The configuration is bench_config.py's (RULES security-group rules over 5
groups, IFACES interfaces) plus a Vpcfw section with a control socket in a
temporary directory.  vpcfwd runs in the foreground in a network namespace
of its own (unshare -n: its NFQUEUE binding sees no traffic and no rule is
added anywhere), and once it serves:

  * a poller connects to the control socket every 10 ms, sends "status" and
    times the answer (connect to last byte): the figure is the worst latency
    while the reload runs, against the same figure before it;
  * the reload is asked for once (the "reload" verb, or SIGHUP with
    --sighup) and timed until the new configuration is in force (the verb's
    answer; with SIGHUP, until "status" reports the next generation), with
    the CPU time vpcfwd spent meanwhile (all threads).

Needs root (unshare -n, vpcfwd's own checks) and only the Python standard
library.  Peak RSS of vpcfwd is read from /proc at the end (VmHWM: the old
and the new configuration are both in memory during the swap).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_config  # noqa: E402  (the generator)


def ask(path, verb, timeout=60.0):
    """One request on a fresh connection; returns (seconds, reply)."""
    t0 = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall((json.dumps({"verb": verb}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return time.monotonic() - t0, json.loads(buf or b"{}")


class Poller(threading.Thread):
    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.samples = []          # (start, latency)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                lat, _ = ask(self.path, "status")
            except OSError:
                lat = float("inf")
            self.samples.append((t, lat))
            self.stop.wait(0.01)

    def worst(self, t0, t1):
        lats = [lat for t, lat in self.samples if t0 <= t <= t1 or (t < t0 and t + lat > t0)]
        return (max(lats) if lats else float("nan")), len(lats)


def hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid):
    """User + system CPU seconds of every thread of pid so far."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sighup = "--sighup" in sys.argv
    if not args:
        sys.exit(__doc__)
    if os.geteuid() != 0:
        sys.exit("bench_reload: needs root (unshare -n)")
    vpcfwd = os.path.abspath(args[0])
    n_rules, n_ifaces = (int(x) for x in (args[1] if len(args) > 1 else "200000:20000").split(":"))
    d = tempfile.mkdtemp(prefix="vpcfw-reload-")
    os.chmod(d, 0o755)
    conf = os.path.join(d, "conf")
    os.mkdir(conf)
    sock = os.path.join(d, "ctl.sock")
    log = os.path.join(d, "vpcfwd.log")
    proc = None
    try:
        bench_config.generate(conf, n_rules, n_ifaces)
        with open(os.path.join(conf, "90-vpcfw.json"), "w") as f:
            json.dump({"Vpcfw": {"Queues": [0], "ControlSocket": sock}}, f)
        t_start = time.monotonic()
        with open(log, "w") as lf:
            proc = subprocess.Popen(["unshare", "-n", vpcfwd, "-f", "-c", conf],
                                    stdout=subprocess.DEVNULL, stderr=lf)
        while True:
            with open(log) as lf:
                if "serving queue" in lf.read():
                    break
            if proc.poll() is not None:
                with open(log) as lf:
                    sys.stderr.write(lf.read()[-3000:])
                sys.exit("bench_reload: vpcfwd exited with %d" % proc.returncode)
            time.sleep(0.02)
        started = time.monotonic() - t_start

        poller = Poller(sock)
        poller.start()
        time.sleep(1.0)                      # the idle figure
        c0 = cpu_s(proc.pid)
        t0 = time.monotonic()
        _, st = ask(sock, "status")
        gen0 = st.get("generation")
        if sighup:
            os.kill(proc.pid, signal.SIGHUP)
            while True:
                _, st = ask(sock, "status")
                if st.get("generation") != gen0:
                    break
                time.sleep(0.01)
            ok = True
        else:
            _, r = ask(sock, "reload", timeout=600)
            ok = bool(r.get("ok"))
        t1 = time.monotonic()
        c1 = cpu_s(proc.pid)
        time.sleep(0.5)
        poller.stop.set()
        poller.join()
        idle, n_idle = poller.worst(t0 - 1.0, t0 - 0.001)
        busy, n_busy = poller.worst(t0, t1)
        peak = hwm_kib(proc.pid)
        print("%8s %8s %8s %9s %9s %12s %13s %8s %8s" % (
            "rules", "ifaces", "start s", "reload s", "cpu s", "idle max ms", "reload max ms",
            "answers", "peak MB"))
        print("%8d %8d %8.2f %9.2f %9.2f %12.1f %13.1f %8d %8.0f%s" % (
            n_rules, n_ifaces, started, t1 - t0, c1 - c0, idle * 1e3, busy * 1e3, n_busy,
            peak / 1024, "" if ok else "  (reload refused)"), flush=True)
        print("(%s; %d status answers before the reload; the worst during the reload is the "
              "stall)" % ("SIGHUP" if sighup else "reload verb", n_idle))
        sys.exit(0 if ok else 1)
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
