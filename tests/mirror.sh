#!/usr/bin/env bash
# Traffic mirroring and the drop capture in replay (SPEC §8), read back by
# the tools people use: the shipped three-tier example with two sessions
# (tests/data/mirror/mirror.json): web01 -> a pcap target, app01 -> VXLAN
# (VNI 42, PacketLength 64) to a receiver on port 4789 of a loopback address
# chosen free at run time (127.x.y.z: VXLAN's port is fixed); and the
# refused packets to an NFLOG pcap.  Checked with tshark and tcpdump:
#   - the VXLAN stream decodes, every copy has VNI 42 and is cut at 64 bytes;
#   - the copies are exactly the packets the semantics name (computed from
#     the replay's verdicts): SG-refused packets are absent;
#   - tcpdump -r reads the pcap target; tshark finds the refused packets by
#     their reason in nflog.prefix.
# Skips (77) without tshark or tcpdump, and when the live part cannot run
# (not root, no namespaces or NFQUEUE): never passes without its live part.
set -euo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir/build}/src/vpcfwd}
PY=/usr/bin/python3
for tool in tshark tcpdump "$PY"; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is not installed (tests/setup-debian installs it)"
		exit 77
	fi
done

tmp=$(mktemp -d)
rx=
cleanup() {
	[ -n "$rx" ] && kill "$rx" 2>/dev/null
	rm -rf "$tmp"
	return 0
}
trap 'set +e; cleanup' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# tshark refuses to read files of other users when run as root: keep ours
export HOME=$tmp
mkdir -p "$tmp/conf"
cp "$top_srcdir"/conf/three-tier/*.json "$tmp/conf/"
cp "$top_srcdir/tests/data/mirror/mirror.json" "$tmp/conf/60-mirror.json"
cat >"$tmp/conf/95-mirror-vpcfw.json" <<EOF
{"Vpcfw": {
  "PcapTargets": [{"TrafficMirrorTargetId": "tmt-00000000000file", "Path": "$tmp/web.pcap"}],
  "MirrorTargetAddresses": [{"TrafficMirrorTargetId": "tmt-000000000vxlan", "Address": "@RXADDR@"}],
  "DropCapture": {"Path": "$tmp/drops.pcap", "SnapLength": 1500}
}}
EOF

# VXLAN's port is fixed (4789), so the receiver takes a loopback address
# that is free at run time (vxlan-rx.py "loopback": it writes the address
# it bound into its READY file); a parallel `make check` cannot collide.
echo "== VXLAN receiver on port 4789 of a free loopback address"
"$PY" "$top_srcdir/tests/data/mirror/vxlan-rx.py" loopback 4789 "$tmp/vxlan.pcap" "$tmp/ready" &
rx=$!
for _ in $(seq 50); do
	[ -s "$tmp/ready" ] && break
	kill -0 "$rx" 2>/dev/null || fail "the receiver did not start (no free loopback address?)"
	sleep 0.1
done
[ -s "$tmp/ready" ] || fail "the receiver is not ready"
rxaddr=$(cat "$tmp/ready")
echo "receiver on $rxaddr:4789"
sed -i "s/@RXADDR@/$rxaddr/" "$tmp/conf/95-mirror-vpcfw.json"

echo "== $VPCFWD -c CONF --check-config --strict (the example plus mirroring)"
"$VPCFWD" -c "$tmp/conf" --check-config --strict

echo "== $VPCFWD -c CONF --replay conf/three-tier.pcap"
"$VPCFWD" -c "$tmp/conf" --replay "$top_srcdir/conf/three-tier.pcap" \
	--verdicts "$tmp/verdicts.jsonl" 2>&1 | tee "$tmp/replay.txt"
wait "$rx" || fail "the receiver failed"
rx=

# What the semantics say, from the verdicts: egress of X once X's stages let
# it go (accepted, or refused later at the NACL inbound / SG ingress), ingress
# of X only when accepted; exempt packets have no interface.
"$PY" - "$tmp/verdicts.jsonl" >"$tmp/expect.txt" <<'EOF'
import json, sys
web, app = "eni-0000000000web01", "eni-0000000000app01"
n = {web: 0, app: 0}
app_in_refused, app_in = [], []
rejected = 0
for line in open(sys.argv[1]):
    v = json.loads(line)
    ok = v["verdict"] == "ACCEPT"
    rejected += v["reason"] == "ENI_SG_RULES_MISMATCH"
    for e in (web, app):
        if v.get("src_interface") == e and (ok or v["stage"] in ("sg-ingress", "nacl-inbound")):
            n[e] += 1
        if v.get("dst_interface") == e and ok:
            n[e] += 1
    if v.get("dst_interface") == app:
        key = "%s %s %s %s" % (v["src"], v["dst"], v["sport"], v["dport"])
        (app_in if ok else app_in_refused).append(key)
print(n[web], n[app], rejected)
print(";".join(app_in))
print(";".join(app_in_refused))
EOF
{ read -r want_web want_app want_drops; read -r app_in; read -r app_refused; } <"$tmp/expect.txt"
echo "expected: web01 $want_web copies, app01 $want_app copies, $want_drops SG refusals"
[ "$want_web" -gt 0 ] && [ "$want_app" -gt 0 ] && [ -n "$app_refused" ] ||
	fail "the example no longer exercises mirroring (expectations: $want_web $want_app)"

echo "== tcpdump -r web.pcap (pcap target)"
got=$(tcpdump -nn -r "$tmp/web.pcap" 2>/dev/null | wc -l)
[ "$got" = "$want_web" ] || fail "web.pcap has $got packets, want $want_web"
got=$(tshark -r "$tmp/web.pcap" -Y 'ip.addr == 10.0.1.10 || ipv6.addr == 2001:db8:1234:1::10' | wc -l)
[ "$got" = "$want_web" ] || fail "tshark finds $got packets of web01 in web.pcap, want $want_web"

echo "== tshark -r vxlan.pcap (the VXLAN stream)"
tshark -r "$tmp/vxlan.pcap" -Y vxlan -T fields -E 'separator=|' -e vxlan.vni -e udp.length \
	-e ip.src -e ip.dst -e ipv6.src -e ipv6.dst -e tcp.srcport -e tcp.dstport >"$tmp/vxlan.txt"
cat "$tmp/vxlan.txt"
got=$(wc -l <"$tmp/vxlan.txt")
[ "$got" = "$want_app" ] || fail "$got VXLAN copies, want $want_app"
"$PY" - "$tmp/vxlan.txt" "$app_in" "$app_refused" <<'EOF' || exit 1
import sys
inner = set()
for line in open(sys.argv[1]):
    vni, udplen, src4, dst4, src6, dst6, sport, dport = line.rstrip("\n").split("|")
    assert vni == "42", "VNI %s, want 42" % vni
    # PacketLength 64: at most 64 bytes after the VXLAN header
    udplen = int(udplen.split(",")[0])
    assert udplen <= 8 + 8 + 64, "UDP length %d: not cut at PacketLength 64" % udplen
    src = src6 if src6 else src4.split(",")[-1]
    dst = dst6 if dst6 else dst4.split(",")[-1]
    inner.add("%s %s %s %s" % (src, dst, sport, dport))
cut = sum(1 for l in open(sys.argv[1]) if int(l.split("|")[1].split(",")[0]) == 80)
assert cut > 0, "no copy was long enough to be cut"
for k in sys.argv[2].split(";"):
    assert k in inner, "accepted packet to app01 missing from the mirror: " + k
for k in sys.argv[3].split(";"):
    assert k not in inner, "SG-refused packet to app01 in the mirror: " + k
print("inner packets as expected; %d cut at PacketLength" % cut)
EOF

echo "== tshark -r drops.pcap -Y 'nflog.prefix contains \"ENI_SG_RULES_MISMATCH\"'"
tshark -r "$tmp/drops.pcap" -Y 'nflog.prefix contains "ENI_SG_RULES_MISMATCH"' -T fields \
	-e nflog.prefix >"$tmp/drops.txt"
cat "$tmp/drops.txt"
got=$(wc -l <"$tmp/drops.txt")
[ "$got" = "$want_drops" ] || fail "$got refused packets in drops.pcap, want $want_drops"
grep -q '^REJECT sg-ingress ENI_SG_RULES_MISMATCH no security-group rule of eni-0000000000app01' \
	"$tmp/drops.txt" || fail "the prefix does not name stage, reason and rule"
got=$(tshark -r "$tmp/drops.pcap" -Y 'nflog && (ip || ipv6) && tcp' | wc -l)
[ "$got" -ge 1 ] || fail "tshark does not decode the refused packets inside NFLOG"
got=$(tcpdump -nn -r "$tmp/drops.pcap" 2>/dev/null | wc -l)
[ "$got" = "$want_drops" ] || fail "tcpdump reads $got records of drops.pcap, want $want_drops"

# Issue #10: records cut at SnapLength are cut as the kernel's NFLOG copy
# range cuts them: each record whole (pcap length = what is stored, the
# payload TLV as long as the bytes kept), so tshark decodes the NFLOG
# header, the prefix and the packet's IP header; a record length longer
# than what is stored made tshark stop before the packet.
echo "== DropCapture SnapLength 20: tshark decodes the cut packets"
mkdir -p "$tmp/snapconf"
cp "$tmp"/conf/*.json "$tmp/snapconf/"
printf '{"Vpcfw": {"DropCapture": {"Path": "%s", "SnapLength": 20}}}\n' "$tmp/snapped.pcap" \
	>"$tmp/snapconf/95-mirror-vpcfw.json"
"$VPCFWD" -c "$tmp/snapconf" --replay "$top_srcdir/conf/three-tier.pcap" >/dev/null 2>&1
tshark -r "$tmp/snapped.pcap" -T fields -E separator=, -e frame.len -e frame.cap_len \
	-e nflog.family -e ip.src -e ip.dst -e _ws.malformed >"$tmp/snapped.txt" 2>/dev/null
cat "$tmp/snapped.txt"
all=$(wc -l <"$tmp/snapped.txt")
whole=$(awk -F, '$1 == $2' "$tmp/snapped.txt" | wc -l)
v4=$(awk -F, '$3 == 2' "$tmp/snapped.txt" | wc -l)
v4ok=$(awk -F, '$3 == 2 && $4 != "" && $5 != "" && $6 == ""' "$tmp/snapped.txt" | wc -l)
[ "$all" -ge "$want_drops" ] && [ "$whole" = "$all" ] && [ "$v4" -ge 1 ] && [ "$v4ok" = "$v4" ] ||
	fail "snapped drop capture: $all records, $whole whole, $v4ok of $v4 IPv4 decoded"
echo "PASS: replay"

# ---------------------------------------------------------------- live (lab)
# vpcfwd in the lab's gateway namespace; a monitoring namespace (10.0.9.9)
# receives app01's VXLAN stream.  Needs root, namespaces and NFQUEUE, and a
# daemon that mirrors (it names its sessions at start).  Without root,
# namespaces or NFQUEUE the whole test is SKIPPED (77), not passed; a daemon
# that names no session fails.
LAB_DIR=$top_srcdir/tests/lab
. "$top_srcdir/tests/lab/lib.sh"
# lib.sh brings a counting fail(); this script stops at the first failure
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
if ! lab_can_run; then
	echo "SKIP: the replay part passed, the live part cannot run here (see above)"
	exit 77
fi
trap 'set +e; lab_cleanup; cleanup' EXIT
L=$tmp/lab
mkdir -p "$L"
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}
probe() { local from=$1; shift; in_ns "$from" "$PY" "$top_srcdir/tests/lab/probe.py" "$@"; }

lab_three_tier || fail "lab: cannot build the topology"
lab_host mon vmon 10.0.9.1 10.0.9.9/24 2001:db8:9::1 2001:db8:9::9/64
lab_servers "$L" || fail "lab: servers did not start"
lab_config "$top_srcdir/conf/three-tier" "$L/conf"
cp "$top_srcdir/tests/data/mirror/mirror.json" "$L/conf/60-mirror.json"
cat >"$L/conf/95-mirror-vpcfw.json" <<EOF
{"Vpcfw": {
  "PcapTargets": [{"TrafficMirrorTargetId": "tmt-00000000000file", "Path": "$L/web.pcap"}],
  "MirrorTargetAddresses": [{"TrafficMirrorTargetId": "tmt-000000000vxlan", "Address": "10.0.9.9"}],
  "DropCapture": {"Path": "$L/drops.pcap", "SnapLength": 1500}
}}
EOF
lab_bg mon "$PY" "$top_srcdir/tests/data/mirror/vxlan-rx.py" 10.0.9.9 4789 "$L/vxlan.pcap" \
	"$L/rx-ready" "$L/rx-stop"
rxpid=${LAB_PIDS##* }
for _ in $(seq 100); do [ -e "$L/rx-ready" ] && break; sleep 0.05; done
[ -e "$L/rx-ready" ] || fail "lab: the receiver did not start"
lab_queue_rules --queue-num 0
lab_start_vpcfwd "$L/vpcfwd.log" -c "$L/conf" || fail "lab: vpcfwd did not start"
grep -q "mirror: session" "$L/vpcfwd.log" ||
	fail "lab: vpcfwd names no mirror session at start (mirroring not set up): $(cat "$L/vpcfwd.log")"

echo "== live traffic"
r1=$(probe inet tcp "$WEB4" 80 || true)     # web01 ingress and egress -> web.pcap
r2=$(probe corp tcp "$APP4" 22 || true)     # app01 ingress and egress -> VXLAN
r3=$(probe web tcp "$APP4" 8000 || true)    # app01 ingress and egress -> VXLAN
r4=$(probe inet tcp "$APP4" 8000 || true)   # refused by app's SG: no copy, captured
r5=$(probe web tcp "$APP6" 8000 || true)    # IPv6 -> VXLAN
echo "probes: $r1 $r2 $r3 $r4 $r5"
[ "$r1 $r2 $r3 $r4 $r5" = "ok ok ok timeout ok" ] || fail "lab: unexpected verdicts"
lab_stop_vpcfwd
[ "$VPCFWD_STATUS" = 0 ] || fail "lab: vpcfwd exited with $VPCFWD_STATUS"
touch "$L/rx-stop"
wait "$rxpid" 2>/dev/null || true

echo "== tshark -r vxlan.pcap (received in the monitoring namespace)"
tshark -r "$L/vxlan.pcap" -Y vxlan -T fields -E 'separator=|' -e vxlan.vni -e udp.length \
	-e ip.src -e ip.dst -e ipv6.src -e ipv6.dst -e tcp.srcport -e tcp.dstport >"$L/vxlan.txt"
cat "$L/vxlan.txt"
"$PY" "$top_srcdir/tests/data/mirror/check-live.py" "$L/vxlan.txt" || exit 1

echo "== tcpdump -r web.pcap, tshark -r drops.pcap"
got=$(tcpdump -nn -r "$L/web.pcap" 'host 203.0.113.7 and port 80' 2>/dev/null | wc -l)
[ "$got" -ge 2 ] || fail "web.pcap has $got packets of inet -> web:80"
got=$(tshark -r "$L/drops.pcap" -Y 'nflog.prefix contains "ENI_SG_RULES_MISMATCH" &&
	ip.src == 203.0.113.7 && tcp.dstport == 8000' | wc -l)
[ "$got" -ge 1 ] || fail "the refused inet -> app:8000 is not in drops.pcap"
echo "PASS: live"
exit 0
