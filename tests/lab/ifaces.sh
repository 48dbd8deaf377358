#!/bin/bash
# Lab tests of issue #10 on the real kernel path (NFQUEUE in a gateway
# namespace), with the fixtures of tests/data/ifaces:
#  - nat-tgw.json: a NAT gateway's and a transit gateway attachment's
#    interfaces (no security groups: network ACLs only, never refused
#    wholesale) beside an application instance;
#  - prefixes.json: an EKS-style node whose interface has a delegated IPv4
#    /28 and IPv6 /80: a pod address is the interface's for its security
#    groups and for a group reference naming them, a source outside the
#    prefixes is spoofed;
#  - flow logs across two restarts of the daemon within one minute: every
#    run's records survive (file names unique across runs).
# Needs root and network namespaces; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$VPCFWD" ] || { echo "lab: no vpcfwd at $VPCFWD"; exit 1; }
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}
data=$top_srcdir/tests/data/ifaces

T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP
fails=0

# servers HOST...: echo servers (TCP 22 80 443 5432 8000, UDP 53) on each
servers() {
	local h
	for h in "$@"; do
		lab_bg "$h" "$PY" "$LAB_DIR/probe.py" serve "$T/ready-$h" --tcp 22,80,443,5432,8000 --udp 53
	done
	for h in "$@"; do
		lab_wait_file "$T/ready-$h" 10 || return 1
	done
}

# config FIXTURE OUT BINDINGS: the fixture with a Vpcfw section binding the
# gateway's devices
config() {
	mkdir -p "$2"
	cp "$1" "$2/10-export.json"
	cat >"$2/90-vpcfw.json" <<JSON
{"Vpcfw": {"Queues": [0], "InterfaceBindings": [$3]}}
JSON
}

# ---------------------------------------------------------------- NAT gateway, transit gateway
echo "--- NAT gateway and transit gateway attachment (nat-tgw.json)"
lab_gateway
lab_host app vapp 10.1.1.1 10.1.1.10/24 2600:1f16:abc:de01::1 2600:1f16:abc:de01::10/64
lab_host nat vnat 10.1.250.1 10.1.250.210/24 2001:db8:aaaa:1::1 2001:db8:aaaa:1::10/64
lab_host tgw vtgw 10.1.10.129 10.1.10.132/28 2001:db8:aaaa:2::1 2001:db8:aaaa:2::10/64
lab_host inet vinet 203.0.113.1 203.0.113.7/24 2001:db8:ffff::1 2001:db8:ffff::7/64
servers app nat tgw inet || { echo "lab: servers did not start"; exit 99; }
config "$data/nat-tgw.json" "$T/nat" \
	'{"NetworkInterfaceId": "eni-0ifacesapp0000001", "Device": "vapp"},
	 {"NetworkInterfaceId": "eni-0ifacesnatgw00001", "Device": "vnat"},
	 {"NetworkInterfaceId": "eni-0ifacestgw0000001", "Device": "vtgw"}'
lab_queue_rules --queue-num 0
LOG=$T/nat.log
lab_start_vpcfwd "$LOG" -c "$T/nat" || { echo "lab: vpcfwd did not start"; exit 99; }
lab_matrix "$LOG" <<PATHS
app nat 10.1.250.210 tcp 80 ACCEPT
inet nat 10.1.250.210 tcp 80 ACCEPT
nat app 10.1.1.10 tcp 443 ACCEPT
nat app 10.1.1.10 tcp 22 REJECT ENI_SG_RULES_MISMATCH
inet tgw 10.1.10.132 tcp 80 ACCEPT
inet tgw 10.1.10.132 tcp 22 REJECT SUBNET_ACL_RESTRICTION
tgw app 10.1.1.10 tcp 443 ACCEPT
tgw app 10.1.1.10 tcp 8000 REJECT ENI_SG_RULES_MISMATCH
PATHS
check "NAT gateway and transit gateway: network ACLs only, the app's groups as ever" 0 $?
# The NAT gateway does not check sources (SourceDestCheck false): it
# forwards others' traffic, as AWS lets it.
check "the NAT gateway forwards a source not its own (SourceDestCheck false)" ok \
	"$(in_ns nat ip addr add 10.1.250.77/32 dev eth0 && probe nat tcp 203.0.113.7 80 --src 10.1.250.77)"
lab_stop_vpcfwd
check "vpcfwd exits 0" 0 "$VPCFWD_STATUS"
lab_cleanup

# ---------------------------------------------------------------- delegated prefixes
echo "--- delegated prefixes (prefixes.json)"
lab_gateway
lab_host node vnode 10.2.1.1 10.2.1.10/24 2600:1f16:abc:df01::1 2600:1f16:abc:df01::10/64
lab_host db vdb 10.2.3.1 10.2.3.10/24 2600:1f16:abc:df03::1 2600:1f16:abc:df03::10/64
lab_host inet vinet 203.0.113.1 203.0.113.7/24 2001:db8:ffff::1 2001:db8:ffff::7/64
# pods: addresses inside the node's /28 and /80; .32 is just outside the /28
in_ns node ip addr add 10.2.1.20/32 dev eth0
in_ns node ip addr add 10.2.1.31/32 dev eth0
in_ns node ip addr add 10.2.1.32/32 dev eth0
in_ns node ip -6 addr add 2600:1f16:abc:df01:7a2b::5/128 dev eth0 nodad
in_ns node ip -6 addr add 2600:1f16:abc:df01:7a2c::5/128 dev eth0 nodad
servers node db inet || { echo "lab: servers did not start"; exit 99; }
config "$data/prefixes.json" "$T/pfx" \
	'{"NetworkInterfaceId": "eni-0ifacesnode000001", "Device": "vnode"},
	 {"NetworkInterfaceId": "eni-0ifacesdb00000001", "Device": "vdb"}'
lab_queue_rules --queue-num 0
LOG=$T/pfx.log
lab_start_vpcfwd "$LOG" -c "$T/pfx" || { echo "lab: vpcfwd did not start"; exit 99; }
lab_matrix "$LOG" <<PATHS
inet node 10.2.1.20 tcp 22 REJECT ENI_SG_RULES_MISMATCH
inet node 10.2.1.20 tcp 443 ACCEPT
inet node 2600:1f16:abc:df01:7a2b::5 tcp 22 REJECT ENI_SG_RULES_MISMATCH
inet node 2600:1f16:abc:df01:7a2b::5 tcp 443 ACCEPT
node@10.2.1.20 db 10.2.3.10 tcp 5432 ACCEPT
node@10.2.1.31 db 10.2.3.10 tcp 5432 ACCEPT
node@2600:1f16:abc:df01:7a2b::5 db 2600:1f16:abc:df03::10 tcp 5432 ACCEPT
node@10.2.1.32 db 10.2.3.10 tcp 5432 REJECT ENI_SOURCE_DEST_CHECK_RESTRICTION
node@2600:1f16:abc:df01:7a2c::5 db 2600:1f16:abc:df03::10 tcp 5432 REJECT ENI_SOURCE_DEST_CHECK_RESTRICTION
PATHS
check "delegated prefixes: pod addresses are the node's, outside them spoofed" 0 $?
lab_stop_vpcfwd
check "vpcfwd exits 0" 0 "$VPCFWD_STATUS"

# ---------------------------------------------------------------- restarts within a minute
echo "--- flow logs across two restarts within one minute"
cat >"$T/pfx/80-flowlogs.json" <<JSON
{"FlowLogs": [{"FlowLogId": "fl-0lab00000000restart", "ResourceId": "eni-0ifacesnode000001",
  "TrafficType": "ALL", "LogDestinationType": "s3",
  "LogDestination": "arn:aws:s3:::lab-bucket", "MaxAggregationInterval": 60}]}
JSON
start=$(date +%s)
for run in 1 2 3; do
	lab_start_vpcfwd "$T/run$run.log" -c "$T/pfx" --flow-log-dir "$T/fl" ||
		{ echo "lab: vpcfwd did not start (run $run)"; exit 99; }
	for k in 1 2 3; do
		probe inet tcp 10.2.1.20 443 --sport $((31000 + run * 10 + k)) >/dev/null
	done
	lab_stop_vpcfwd
	check "run $run: vpcfwd exits 0" 0 "$VPCFWD_STATUS"
done
elapsed=$(($(date +%s) - start))
files=$(find "$T/fl" -name '*.log.gz' | wc -l)
# one record per probe and direction at least: the ports of every run
find "$T/fl" -name '*.log.gz' -exec zcat {} + >"$T/records.txt"
missing=
for run in 1 2 3; do
	for k in 1 2 3; do
		p=$((31000 + run * 10 + k))
		grep -q " $p 443 6 " "$T/records.txt" || missing="$missing $p"
	done
done
check "three runs in ${elapsed}s: $files files, every run's records kept" "" "$missing"
[ "$files" -ge 3 ] || fail "expected a file per run, found $files"

[ "$fails" -eq 0 ] && echo "lab ifaces: all passed"
exit $((fails > 0))
