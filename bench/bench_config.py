#!/usr/bin/env python3
"""Large-configuration benchmark: how long `vpcfwd --check-config -c DIR`
takes, and its peak memory, as the configuration grows (issue #9: loading
and compiling must be O(n log n) in rules, interfaces, addresses and
prefix-list entries).  Prints figures; not a test.

    make bench-config                   (uses the build's src/vpcfwd)
    bench/bench_config.py [-r REPEAT] VPCFWD [RULES:IFACES ...]
        REPEAT runs of each (3): the least wall and CPU time are printed
        default: 10000:100 50000:100 200000:100 1000:20000 1000:100000 200000:20000

The reload of such a configuration while the control socket is polled:
bench_reload.py (make bench-reload, as root).

Each configuration: one VPC, a subnet per 1,000 interfaces with a default
network ACL of 20 entries per direction, a prefix list of 50 entries, RULES
security-group rules (IpPermissions entries, 4 in 5 ingress) spread over 5
large groups "sg-big0".."sg-big4" -- single ports and overlapping ranges of
tcp and udp, icmp, IPv6, references to groups and to the prefix list -- and
IFACES interfaces.  Every interface carries one of 10 small application
groups that reference each other (so the member sets hold every interface's
addresses); the first interface carries all 5 large groups and the next five
one each, so one interface compiles every rule.  Only the Python standard
library is used.
"""
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def generate(directory, n_rules, n_ifaces, seed=9):
    rnd = random.Random(seed)
    n_subnets = max(1, (n_ifaces + 999) // 1000)
    vpc = {"VpcId": "vpc-bench", "CidrBlock": "10.0.0.0/8",
           "CidrBlockAssociationSet": [{"CidrBlock": "10.0.0.0/8"}],
           "Ipv6CidrBlockAssociationSet": [{"Ipv6CidrBlock": "2001:db8::/56"}]}
    subnets = []
    for s in range(n_subnets):
        # 10.S.0.0/20 (S from 1): room for 4,091 interfaces
        subnets.append({"SubnetId": "subnet-b%05d" % s, "VpcId": "vpc-bench",
                        "CidrBlock": "10.%d.%d.0/20" % (1 + s // 16, (s % 16) * 16)})
    entries = []
    for egress in (False, True):
        for i in range(20):
            entries.append({"RuleNumber": 100 + i * 10, "Egress": egress,
                            "RuleAction": "deny" if i < 19 else "allow",
                            "Protocol": "6" if i < 19 else "-1",
                            "CidrBlock": "198.18.%d.0/24" % i if i < 19 else "0.0.0.0/0",
                            **({"PortRange": {"From": 1 + i, "To": 100 + i}} if i < 19 else {})})
    nacl = {"NetworkAclId": "acl-bench", "VpcId": "vpc-bench", "IsDefault": True,
            "Entries": entries}
    pl = {"PrefixListId": "pl-bench", "PrefixListName": "bench",
          "Entries": [{"Cidr": "100.%d.%d.0/24" % (64 + i // 256, i % 256)} for i in range(50)]}

    def big_rule(j):
        kind = j % 20
        if kind < 12 or kind == 19:
            proto = "tcp" if kind % 3 else "udp"
            lo = rnd.randrange(1, 65536)
            hi = lo if rnd.random() < 0.6 else min(65535, lo + rnd.randrange(1, 2000))
            if rnd.random() < 0.001:
                cidr = "0.0.0.0/0"
            else:
                cidr = "%d.%d.%d.0/24" % (rnd.choice((172, 192, 198)), rnd.randrange(256),
                                          rnd.randrange(256))
            return {"IpProtocol": proto, "FromPort": lo, "ToPort": hi,
                    "IpRanges": [{"CidrIp": cidr}]}
        if kind < 14:
            return {"IpProtocol": "icmp", "FromPort": rnd.randrange(0, 16), "ToPort": -1,
                    "IpRanges": [{"CidrIp": "203.0.%d.0/24" % rnd.randrange(256)}]}
        if kind < 16:
            lo = rnd.randrange(1, 65536)
            return {"IpProtocol": "tcp", "FromPort": lo, "ToPort": lo,
                    "Ipv6Ranges": [{"CidrIpv6": "2001:db8:%x::/48" % rnd.randrange(65536)}]}
        if kind < 18:
            lo = rnd.randrange(1, 65536)
            return {"IpProtocol": "tcp", "FromPort": lo, "ToPort": lo,
                    "UserIdGroupPairs": [{"GroupId": "sg-app%d" % rnd.randrange(10)}]}
        if j % 1000 == 18:
            return {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                    "PrefixListIds": [{"PrefixListId": "pl-bench"}]}
        return {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.%d.0.0/16" % rnd.randrange(256)}]}

    groups = []
    per = [n_rules // 5 + (1 if g < n_rules % 5 else 0) for g in range(5)]
    j = 0
    for g in range(5):
        ing, eg = [], []
        for _ in range(per[g]):
            (eg if j % 5 == 4 else ing).append(big_rule(j))
            j += 1
        groups.append({"GroupId": "sg-big%d" % g, "GroupName": "big%d" % g,
                       "VpcId": "vpc-bench", "IpPermissions": ing,
                       "IpPermissionsEgress": eg})
    for a in range(10):
        groups.append({"GroupId": "sg-app%d" % a, "GroupName": "app%d" % a, "VpcId": "vpc-bench",
                       "IpPermissions": [
                           {"IpProtocol": "tcp", "FromPort": 8000 + a, "ToPort": 8000 + a,
                            "UserIdGroupPairs": [{"GroupId": "sg-app%d" % ((a + 1) % 10)}]},
                           {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                            "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
                           {"IpProtocol": "-1",
                            "UserIdGroupPairs": [{"GroupId": "sg-app%d" % a}]}],
                       "IpPermissionsEgress": [
                           {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]})
    enis = []
    for i in range(n_ifaces):
        s = i // 1000
        host = 4 + i % 1000
        net3 = (s % 16) * 16 + host // 256
        addr = "10.%d.%d.%d" % (1 + s // 16, net3, host % 256)
        gs = [{"GroupId": "sg-app%d" % (i % 10)}]
        if i == 0:
            gs += [{"GroupId": "sg-big%d" % g} for g in range(5)]
        elif i <= 5:
            gs.append({"GroupId": "sg-big%d" % (i - 1)})
        enis.append({"NetworkInterfaceId": "eni-b%07d" % i, "SubnetId": "subnet-b%05d" % s,
                     "VpcId": "vpc-bench", "PrivateIpAddress": addr,
                     "PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": addr}],
                     "Groups": gs})
    files = {"10-vpcs.json": {"Vpcs": [vpc]}, "20-subnets.json": {"Subnets": subnets},
             "30-network-acls.json": {"NetworkAcls": [nacl]},
             "35-prefix-lists.json": {"ManagedPrefixLists": [pl]},
             "40-security-groups.json": {"SecurityGroups": groups},
             "50-network-interfaces.json": {"NetworkInterfaces": enis}}
    for name, doc in files.items():
        with open(os.path.join(directory, name), "w") as f:
            json.dump(doc, f, separators=(",", ":"))


def check(vpcfwd, directory):
    """Runs vpcfwd --check-config; returns (wall seconds, cpu seconds,
    peak KiB, exit code).  The CPU time (user + system) is the figure on a
    shared machine; wall time includes waiting for a core."""
    t0 = time.monotonic()
    proc = subprocess.Popen([vpcfwd, "--check-config", "-c", directory],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        sys.stderr.write(err[-2000:])
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--generate":
        generate(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    args = sys.argv[1:]
    repeat = 3
    if len(args) >= 2 and args[0] == "-r":
        repeat = max(1, int(args[1]))
        args = args[2:]
    if not args:
        sys.exit(__doc__)
    vpcfwd = args[0]
    sizes = args[1:] or ["10000:100", "50000:100", "200000:100",
                             "1000:20000", "1000:100000", "200000:20000"]
    # per item: CPU microseconds and peak KB per (rule + interface); flat
    # columns as the sizes grow are the linear growth the issue asks for
    print("%8s %8s %8s %8s %8s %8s %9s %9s" % ("rules", "ifaces", "json MB", "wall s", "cpu s",
                                              "peak MB", "cpu us/n", "peak KB/n"))
    failed = False
    for size in sizes:
        n_rules, n_ifaces = (int(x) for x in size.split(":"))
        d = tempfile.mkdtemp(prefix="vpcfw-bench-")
        try:
            # in a child: vpcfwd is started by a fork of this process, and
            # the peak RSS the kernel reports for it would otherwise count
            # the generator's memory at the fork
            subprocess.run([sys.executable, os.path.abspath(__file__), "--generate", d,
                            str(n_rules), str(n_ifaces)], check=True)
            mb = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) / 1e6
            # the best of `repeat` runs: on a shared machine the others
            # only add waiting
            runs = [check(vpcfwd, d) for _ in range(repeat)]
            sec = min(r[0] for r in runs)
            cpu = min(r[1] for r in runs)
            kib = max(r[2] for r in runs)
            rc = max(r[3] for r in runs)
            n = n_rules + n_ifaces
            print("%8d %8d %8.1f %8.2f %8.2f %8.0f %9.2f %9.2f%s" % (
                n_rules, n_ifaces, mb, sec, cpu, kib / 1024, cpu * 1e6 / n, kib / n,
                "" if rc == 0 else "  (exit %d)" % rc), flush=True)
            failed |= rc != 0
        finally:
            shutil.rmtree(d)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
