#!/bin/bash
# Offloaded flows' flow logs and idle timeouts (issue #16, offacct.h), in
# the lab's three tiers with the shipped connmark accept rule ahead of the
# NFQUEUE rule and net.netfilter.nf_conntrack_acct=1 in the gateway:
#   1. exact flow logs: the same traffic (a UDP exchange, a TCP connection
#      with many exchanges, ICMP echoes, each from a fixed port or id) once
#      without and once with Vpcfw.Offload gives the same records, times
#      aside; and in both runs every record's packets and bytes are those
#      the gateway's own iptables counters saw for that direction.  The
#      offload run really offloaded (the daemon's accounting took packets
#      from the kernel, and saw few of them itself).  Among them, two TCP
#      connections of the same tuple one after the other, the first reset
#      (SO_LINGER 0) while offloaded: the kernel replaces its entry (a new
#      id, no mark) at the second's SYN, which vpcfwd must not mark without
#      a baseline of its own (its packets would be missing from the flow
#      logs);
#   2. AWS's idle timeout, not the kernel's: with web's UdpStreamTimeout at
#      60 s and the kernel's own UDP timeouts at 600 s, an idle
#      offloaded UDP stream expires at 60 s (its kernel entry deleted: an
#      unsolicited datagram of the old reply direction is refused), while
#      one active every few seconds lives on.
# Takes about two minutes.  Needs root and network namespaces; exits 77
# (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
reader=$top_srcdir/tests/tools/flowlog-reader
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$VPCFWD" ] || { echo "lab: no vpcfwd at $VPCFWD, skipped"; exit 77; }
command -v conntrack >/dev/null || { echo "lab: conntrack (conntrack-tools) missing, skipped"; exit 77; }
[ -f "$top_srcdir/contrib/offload/vpcfw-offload-iptables" ] ||
	{ echo "lab: no contrib/offload/vpcfw-offload-iptables, skipped"; exit 77; }
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}

T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP

fails=0
MARK=0x40000000
WEB=eni-0000000000web01

lab_three_tier || { echo "lab: cannot build the topology"; exit 99; }
lab_servers "$T" || { echo "lab: servers did not start"; exit 99; }
in_ns gw sysctl -qw net.netfilter.nf_conntrack_acct=1 ||
	{ echo "lab: cannot turn conntrack accounting on in the gateway, skipped"; exit 77; }
# the kernel's own UDP timeouts far above AWS's: only vpcfwd ends the flows
in_ns gw sysctl -qw net.netfilter.nf_conntrack_udp_timeout=600
in_ns gw sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream=600

# The gateway's rules: counting rules first (no target: they count and go
# on), then the offload's shipped rules (contrib/offload), then the queue.
rules() {
	local ipt
	for ipt in iptables ip6tables; do
		in_ns gw $ipt -F FORWARD
		in_ns gw $ipt -A FORWARD -j NFQUEUE --queue-num 0
	done
	in_ns gw sh "$top_srcdir/contrib/offload/vpcfw-offload-iptables" add FORWARD $MARK
	in_ns gw iptables -I FORWARD -s $INET4 -d $WEB4 -p icmp --icmp-type echo-reply
	in_ns gw iptables -I FORWARD -s $WEB4 -d $INET4 -p icmp --icmp-type echo-request
	in_ns gw iptables -I FORWARD -s $WEB4 -d $CORP4 -p tcp --sport 22 --dport 41002
	in_ns gw iptables -I FORWARD -s $CORP4 -d $WEB4 -p tcp --sport 41002 --dport 22
	in_ns gw iptables -I FORWARD -s $WEB4 -d $CORP4 -p tcp --sport 22 --dport 41004
	in_ns gw iptables -I FORWARD -s $CORP4 -d $WEB4 -p tcp --sport 41004 --dport 22
	in_ns gw iptables -I FORWARD -s $INET4 -d $WEB4 -p udp --sport 53 --dport 41001
	in_ns gw iptables -I FORWARD -s $WEB4 -d $INET4 -p udp --sport 41001 --dport 53
}

# conf DIR OFFLOAD: the three tiers, a flow log of the VPC (ALL, 60 s),
# web's UDP stream timeout at AWS's minimum
conf() {
	lab_config "$top_srcdir/conf/three-tier" "$1"
	"$PY" - "$1/50-network-interfaces.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for e in d["NetworkInterfaces"]:
    if e["NetworkInterfaceId"] == "eni-0000000000web01":
        e["ConnectionTrackingConfiguration"] = {"UdpStreamTimeout": 60, "UdpTimeout": 30}
json.dump(d, open(p, "w"), indent=1)
PYEOF
	cat >"$1/60-flow-logs.json" <<JSON
{"FlowLogs": [{"FlowLogId": "fl-00000000000000ff", "ResourceId": "vpc-0a1b2c3d4e5f60001",
  "ResourceType": "VPC", "TrafficType": "ALL", "MaxAggregationInterval": 60,
  "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::vpcfw-lab"}]}
JSON
	cat >"$1/95-offload.json" <<JSON
{"Vpcfw": {"FlowLogDirectory": "$1/flowlogs", "Offload": $2}}
JSON
}

# The traffic of part 1 (deterministic in packets and bytes where the
# protocol allows: UDP and ICMP; TCP's acknowledgements may vary).
cat >"$T/traffic.py" <<'PYEOF'
import socket, struct, sys, time
kind, dst, port, sport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", sport))
    s.settimeout(2)
    for i in range(n):
        s.sendto(b"u" * (20 + i), (dst, port))
        s.recvfrom(2048)
        time.sleep(0.02)
elif kind in ("tcp", "tcp-reset"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if kind == "tcp-reset":     # closed with a RST: no TIME_WAIT, the port free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", sport))
    s.settimeout(2)
    s.connect((dst, port))
    for i in range(n):
        b = b"t" * (30 + i)
        s.sendall(b)
        got = b""
        while len(got) < len(b):
            got += s.recv(4096)
        time.sleep(0.02)
    s.close()
    time.sleep(0.3)
print("ok")
PYEOF

traffic() {
	in_ns web "$PY" "$T/traffic.py" udp $INET4 53 41001 30 >/dev/null || echo "udp failed"
	in_ns corp "$PY" "$T/traffic.py" tcp $WEB4 22 41002 30 >/dev/null || echo "tcp failed"
	in_ns corp "$PY" "$T/traffic.py" tcp-reset $WEB4 22 41004 30 >/dev/null || echo "tcp 1 failed"
	sleep 0.5
	in_ns corp "$PY" "$T/traffic.py" tcp $WEB4 22 41004 30 >/dev/null || echo "tcp 2 failed"
	for i in $(seq 20); do
		probe web icmp $INET4 --id 41003 >/dev/null || echo "icmp failed"
	done
}

# counts -> "SRC DST SPORT DPORT PROTO packets bytes" per counting rule
counts() {
	in_ns gw iptables-save -c -t filter | "$PY" -c '
import re, sys
for line in sys.stdin:
    m = re.match(r"\[(\d+):(\d+)\] -A FORWARD -s (\S+?)(?:/32)? -d (\S+?)(?:/32)? -p (\w+)(.*)", line)
    if not m or "-j" in m.group(6):
        continue
    pk, by, src, dst, proto, rest = m.groups()
    sp = re.search(r"--sport (\d+)", rest)
    dp = re.search(r"--dport (\d+)", rest)
    num = {"udp": 17, "tcp": 6, "icmp": 1}[proto]
    print(src, dst, sp.group(1) if sp else 0, dp.group(1) if dp else 0, num, pk, by)
' | sort
}

# records DIR -> "SRC DST SPORT DPORT PROTO packets bytes DIRECTION ACTION" on
# web's interface, summed over the capture windows
records() {
	local files
	files=$(find "$1" -name '*.log.gz' ! -name '.*' | sort)
	[ -n "$files" ] || return 0
	# shellcheck disable=SC2086
	"$PY" "$reader" --json --quiet $files 2>>"$T/reader.err" | "$PY" -c '
import json, sys
tot = {}
for line in sys.stdin:
    r = json.loads(line)
    if r.get("interface-id") != "'$WEB'" or r.get("log-status") != "OK":
        continue
    k = (r["srcaddr"], r["dstaddr"], str(r["srcport"]), str(r["dstport"]), str(r["protocol"]),
         r["action"])
    p, b = tot.get(k, (0, 0))
    tot[k] = (p + int(r["packets"]), b + int(r["bytes"]))
for k in sorted(tot):
    print(*k[:5], *tot[k], k[5])'
}

# run NAME OFFLOAD: the traffic under vpcfwd; leaves records in $T/NAME.rec
# and the gateway's counts in $T/NAME.cnt
run() {
	conf "$T/$1" "$2"
	rules
	in_ns gw conntrack -F >/dev/null 2>&1
	lab_start_vpcfwd "$T/$1.log" -c "$T/$1" || { fail "$1: vpcfwd did not start"; return 1; }
	traffic >"$T/$1.traffic"
	in_ns gw conntrack -L -m $MARK/$MARK 2>/dev/null | wc -l >"$T/$1.marked"
	sleep 1.5       # a dump round
	lab_stop_vpcfwd
	counts >"$T/$1.cnt"
	records "$T/$1/flowlogs" >"$T/$1.rec"
}

# ---------------------------------------------------------------- part 1
run plain false
run offload true
check "traffic went through (without offload)" "" "$(cat "$T/plain.traffic")"
check "traffic went through (with offload)" "" "$(cat "$T/offload.traffic")"
check "eight directions counted by the gateway" 8 "$(wc -l <"$T/offload.cnt")"
for r in plain offload; do
	# every counted direction is one ACCEPT record with the same packets, bytes
	got=$(awk '$8 == "ACCEPT" { print $1, $2, $3, $4, $5, $6, $7 }' "$T/$r.rec" | sort)
	if [ "$got" = "$(cat "$T/$r.cnt")" ]; then
		pass "$r: flow-log packets and bytes are the gateway's counts"
	else
		fail "$r: flow-log packets and bytes differ from the gateway's counts"
		diff <(cat "$T/$r.cnt") <(echo "$got") | sed 's/^/    /'
	fi
done
# UDP and ICMP are the same packets both times: the same records
same() { grep -E ' (17|1) [0-9]+ [0-9]+ ' "$1" | sort; }
if [ -n "$(same "$T/plain.rec")" ] && [ "$(same "$T/plain.rec")" = "$(same "$T/offload.rec")" ]; then
	pass "UDP and ICMP: the same records with and without offload"
else
	fail "UDP and ICMP records differ with offload"
	diff <(same "$T/plain.rec") <(same "$T/offload.rec") | sed 's/^/    /'
fi
# the offload happened: marked kernel entries during the traffic, packets
# taken from the kernel, and vpcfwd saw far fewer than went through
marked=$(cat "$T/offload.marked")
[ "$marked" -ge 2 ] && pass "flows offloaded ($marked marked kernel entries)" ||
	fail "no offloaded flow (marked kernel entries: $marked)"
from_kernel=$(sed -n 's/.*offload accounting: .* \([0-9][0-9]*\) packets from the kernel.*/\1/p' \
	"$T/offload.log" | tail -1)
[ "${from_kernel:-0}" -gt 50 ] && pass "flow logs took $from_kernel packets from the kernel" ||
	fail "flow logs took ${from_kernel:-no} packets from the kernel"
total=$(awk '{ s += $6 } END { print s }' "$T/offload.cnt")
seen=$(sed -n 's/.*at exit: \([0-9][0-9]*\) packets in.*/\1/p' "$T/offload.log" | tail -1)
[ "${seen:-$total}" -lt $((total / 2)) ] && pass "vpcfwd saw $seen of $total packets" ||
	fail "vpcfwd saw ${seen:-?} of $total packets: not offloaded"

# ---------------------------------------------------------------- part 2
# Two UDP streams from web to the internet's port 53 (tracked at web: the
# replies pass only as the flows'): 41011 goes idle, 41012 stays active.
conf "$T/idle" true
rules
in_ns gw conntrack -F >/dev/null 2>&1
lab_start_vpcfwd "$T/idle.log" -c "$T/idle" || { fail "idle: vpcfwd did not start"; exit 1; }
cat >"$T/stream.py" <<'PYEOF'
import socket, sys, time
dst, sport, active, total, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "active", float(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", sport))
s.settimeout(2)
for i in range(20):                     # a stream, past OffloadAfterPackets (8)
    s.sendto(b"x", (dst, 53)); s.recvfrom(100)
    time.sleep(0.05)
open(out, "w").write("started\n")
end = time.time() + total
while time.time() < end:
    if active:
        s.sendto(b"x", (dst, 53)); s.recvfrom(100)
    time.sleep(4)
# anything unsolicited from the internet's port 53 now?
s.settimeout(3)
try:
    d, a = s.recvfrom(100)
    res = "received"
except socket.timeout:
    res = "nothing"
open(out, "a").write(res + "\n")
PYEOF
lab_bg web "$PY" "$T/stream.py" $INET4 41011 idle 66 "$T/idle.out"
lab_bg web "$PY" "$T/stream.py" $INET4 41012 active 66 "$T/active.out"
lab_wait_file "$T/idle.out" 5 && lab_wait_file "$T/active.out" 5 ||
	fail "the streams did not start"
sleep 3
check "both streams offloaded" 2 "$(in_ns gw conntrack -L -p udp -m $MARK/$MARK 2>/dev/null |
	grep -c 'sport=4101[12]')"
# at 55 s of idleness the idle flow is still vpcfwd's and the kernel's
sleep 50
check "idle stream still offloaded before its AWS timeout" 1 \
	"$(in_ns gw conntrack -L -p udp -m $MARK/$MARK 2>/dev/null | grep -c 'sport=41011')"
# after 60 s (and a dump round) vpcfwd let it go and deleted its kernel entry
sleep 12
check "idle stream's kernel entry deleted at its AWS timeout" 0 \
	"$(in_ns gw conntrack -L -p udp 2>/dev/null | grep -c 'sport=41011')"
check "active stream still offloaded" 1 \
	"$(in_ns gw conntrack -L -p udp -m $MARK/$MARK 2>/dev/null | grep -c 'sport=41012')"
# an unsolicited datagram from the internet's port 53 to each: the idle
# flow's is a new flow, refused; the active one's is its flow's
# (a raw socket: the internet's echo server holds its port 53)
in_ns inet "$PY" -c "
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
for p in (41011, 41012):
    s.sendto(struct.pack('!HHHH', 53, p, 12, 0) + b'late', ('$WEB4', 0))
"
for i in $(seq 100); do
	[ "$(wc -l <"$T/idle.out")" -ge 2 ] && [ "$(wc -l <"$T/active.out")" -ge 2 ] && break
	sleep 0.1
done
check "idle stream: the late datagram is refused (a new flow)" nothing "$(tail -1 "$T/idle.out")"
check "active stream: the late datagram passes (its flow)" received "$(tail -1 "$T/active.out")"
lab_wait_log "$T/idle.log" "REJECT udp $INET4:53 -> $WEB4:41011" 3 &&
	pass "vpcfwd refused it as a new flow" || fail "vpcfwd did not refuse the late datagram"
lab_stop_vpcfwd
deleted=$(sed -n 's/.*at exit: offload accounting: .* \([0-9][0-9]*\) idled out.*/\1/p' "$T/idle.log")
check "vpcfwd deleted one kernel entry (the idle stream's)" 1 "${deleted:-none}"

echo "$fails failure(s)"
[ "$fails" = 0 ]
