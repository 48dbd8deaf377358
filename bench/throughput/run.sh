#!/bin/bash
# Throughput and latency through a gateway namespace: figures, not a test.
#   client (203.0.113.7, .8) -- gw -- server (10.0.1.10)
# Modes, run in alternating order over ROUNDS rounds (the best of each is
# kept): no filter; equivalent kernel rules (iptables + conntrack); a minimal
# accept-all NFQUEUE reader with vpcfwd's own queue code and tuning (the
# ceiling); vpcfwd; vpcfwd with Vpcfw.Offload and the shipped connmark
# accept rule (vpcfwd+off); each NFQUEUE mode with 1 and 2 queues.
# Measures: bulk TCP (iperf3, two streams, one per client address), 64-byte
# UDP packet rate (iperf3 -u -l 64 -b 0), ICMP echo RTT p50/p99, and the
# new-flow rate (connrate.c: short TCP connections, connect + one byte each
# way + close, CONN_THREADS per client address).  Every figure is also given
# as a ratio to the kernel path (iptables + conntrack) of the same run.
# usage: bench/throughput/run.sh [path/to/vpcfwd]
#        (root; DURATION, ROUNDS, MODES, PINGS, WARMUP from the environment;
#        MODES may add vpcfwd+rules:N, the offload rules without the offload)
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${1:-${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
PINGS=${PINGS:-1000}
# echoes of the same flow before the PINGS counted: the latency measured is
# an established flow's (under vpcfwd+off its first OffloadAfterPackets, 8,
# and those during the offload's baseline read take the queue: with 1000
# counted, about 1% of them, the p99 itself; WARMUP=0 counts them)
WARMUP=${WARMUP:-20}
. "$top_srcdir/tests/lab/lib.sh"
lab_can_run || exit 77
command -v iperf3 >/dev/null || { echo "bench: iperf3 missing"; exit 77; }
[ -x "$VPCFWD" ] || { echo "bench: no vpcfwd at $VPCFWD"; exit 77; }

T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP

# The ceiling, built like vpcfwd (optimised, no sanitizers).
${CC:-cc} -std=c11 -O2 -D_GNU_SOURCE -I"$top_srcdir/include" -o "$T/accept-all" \
	"$here/accept-all.c" "$top_srcdir/src/nfq.c" \
	$(pkg-config --cflags --libs libnetfilter_queue libmnl) -pthread || exit 1
${CC:-cc} -std=c11 -O2 -D_GNU_SOURCE -o "$T/connrate" "$here/connrate.c" -pthread || exit 1
CONN_THREADS=${CONN_THREADS:-4}

lab_gateway
lab_host cli vcli 203.0.113.1 203.0.113.7/24 2001:db8:ffff::1 2001:db8:ffff::7/64
lab_host srv vsrv 10.0.1.1 10.0.1.10/24 2001:db8:1234:1::1 2001:db8:1234:1::10/64
in_ns cli ip addr add 203.0.113.8/24 dev eth0
for p in 5201 5202; do
	lab_bg srv iperf3 -s -p $p >/dev/null 2>&1
done
lab_bg srv "$T/connrate" server 5203
sleep 0.3

# The server's security group admits iperf3 and ping from the client's /24
# (tracked: not from 0.0.0.0/0), as the kernel rules below do.
mkdir -p "$T/conf"
cat >"$T/conf/bench.json" <<'JSON'
{
  "Vpcs": [{"VpcId": "vpc-0000000000bench", "CidrBlock": "10.0.0.0/16"}],
  "Subnets": [{"SubnetId": "subnet-000000000bench", "VpcId": "vpc-0000000000bench",
               "CidrBlock": "10.0.1.0/24"}],
  "NetworkAcls": [{"NetworkAclId": "acl-0000000000bench", "VpcId": "vpc-0000000000bench",
    "IsDefault": true, "Associations": [],
    "Entries": [
      {"RuleNumber": 100, "Egress": false, "Protocol": "-1", "RuleAction": "allow", "CidrBlock": "0.0.0.0/0"},
      {"RuleNumber": 100, "Egress": true, "Protocol": "-1", "RuleAction": "allow", "CidrBlock": "0.0.0.0/0"}]}],
  "SecurityGroups": [{"GroupId": "sg-0000000000bench", "GroupName": "bench", "VpcId": "vpc-0000000000bench",
    "IpPermissions": [
      {"IpProtocol": "tcp", "FromPort": 5201, "ToPort": 5203, "IpRanges": [{"CidrIp": "203.0.113.0/24"}]},
      {"IpProtocol": "udp", "FromPort": 5201, "ToPort": 5202, "IpRanges": [{"CidrIp": "203.0.113.0/24"}]},
      {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}],
    "IpPermissionsEgress": [
      {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}],
  "NetworkInterfaces": [{"NetworkInterfaceId": "eni-0000000000bench", "SubnetId": "subnet-000000000bench",
    "VpcId": "vpc-0000000000bench", "PrivateIpAddress": "10.0.1.10",
    "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.1.10", "Primary": true}],
    "Groups": [{"GroupId": "sg-0000000000bench"}], "SourceDestCheck": true}],
  "Vpcfw": {"Offload": false,
            "InterfaceBindings": [{"NetworkInterfaceId": "eni-0000000000bench", "Device": "vsrv"}]}
}
JSON
"$VPCFWD" --check-config -c "$T/conf" || exit 1
# fl2: the same with flow logs (every interface, ALL, the default format)
mkdir -p "$T/conf-fl"
cp "$T/conf/bench.json" "$T/conf-fl/"
echo "{\"Vpcfw\": {\"FlowLogDirectory\": \"$T/flowlogs\"}}" >"$T/conf-fl/90-flow-logs.json"
"$VPCFWD" --check-config -c "$T/conf-fl" || exit 1
# off: the same with the offload of established flows (README, "Offload");
# every other mode has it off, whatever the default
mkdir -p "$T/conf-off"
sed 's/"Offload": false/"Offload": true/' "$T/conf/bench.json" >"$T/conf-off/bench.json"
"$VPCFWD" --check-config -c "$T/conf-off" 2>/dev/null ||
	{ echo "bench: this vpcfwd has no Vpcfw.Offload: no vpcfwd+off mode" >&2; NO_OFFLOAD=1; }
# mirror: one session mirroring everything of the server's interface, VXLAN to a monitor
lab_host mon vmon 10.0.9.1 10.0.9.9/24 2001:db8:9::1 2001:db8:9::9/64
in_ns mon iptables -A INPUT -p udp --dport 4789 -j DROP
mkdir -p "$T/conf-mir"
cp "$T/conf/bench.json" "$T/conf-mir/"
cat >"$T/conf-mir/60-mirror.json" <<'JSON'
{"TrafficMirrorFilters": [{"TrafficMirrorFilterId": "tmf-all",
   "IngressFilterRules": [{"RuleNumber": 1, "RuleAction": "accept", "SourceCidrBlock": "0.0.0.0/0", "DestinationCidrBlock": "0.0.0.0/0"}],
   "EgressFilterRules": [{"RuleNumber": 1, "RuleAction": "accept", "SourceCidrBlock": "0.0.0.0/0", "DestinationCidrBlock": "0.0.0.0/0"}]}],
 "TrafficMirrorTargets": [{"TrafficMirrorTargetId": "tmt-mon", "NetworkLoadBalancerArn": "arn:x"}],
 "TrafficMirrorSessions": [{"TrafficMirrorSessionId": "tms-all", "NetworkInterfaceId": "eni-0000000000bench",
   "TrafficMirrorTargetId": "tmt-mon", "TrafficMirrorFilterId": "tmf-all", "SessionNumber": 1, "VirtualNetworkId": 1}],
 "Vpcfw": {"MirrorTargetAddresses": [{"TrafficMirrorTargetId": "tmt-mon", "Address": "10.0.9.9"}]}}
JSON
"$VPCFWD" --check-config -c "$T/conf-mir" || exit 1

rules_none() {
	in_ns gw iptables -F FORWARD
	in_ns gw iptables -t mangle -F POSTROUTING
	in_ns gw iptables -P FORWARD ACCEPT
}
rules_kernel() {
	rules_none
	in_ns gw iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
	in_ns gw iptables -A FORWARD -s 203.0.113.0/24 -d 10.0.1.10 -p tcp --dport 5201:5203 \
		-m conntrack --ctstate NEW -j ACCEPT
	in_ns gw iptables -A FORWARD -s 203.0.113.0/24 -d 10.0.1.10 -p udp --dport 5201:5202 \
		-m conntrack --ctstate NEW -j ACCEPT
	in_ns gw iptables -A FORWARD -s 203.0.113.0/24 -d 10.0.1.10 -p icmp --icmp-type echo-request \
		-j ACCEPT
	in_ns gw iptables -A FORWARD -s 10.0.1.10 -j ACCEPT
	in_ns gw iptables -A FORWARD -j DROP
}
# Two queues: each client address and its replies to one queue, so that
# both directions of a flow meet the same worker.
rules_queue() { # rules_queue QUEUES [offload]
	rules_none
	if [ "$1" = 1 ]; then
		in_ns gw iptables -A FORWARD -j NFQUEUE --queue-num 0
	else
		in_ns gw iptables -A FORWARD -s 203.0.113.8 -j NFQUEUE --queue-num 1
		in_ns gw iptables -A FORWARD -d 203.0.113.8 -j NFQUEUE --queue-num 1
		in_ns gw iptables -A FORWARD -j NFQUEUE --queue-num 0
	fi
	# the offload's shipped rules (contrib/offload): the mark vpcfwd's
	# verdict sets goes to the flow's conntrack mark, and marked flows are
	# accepted ahead of the queue
	if [ "${2:-}" = offload ]; then
		in_ns gw sh "$top_srcdir/contrib/offload/vpcfw-offload-iptables" add FORWARD >/dev/null
	fi
}

READER=
start_reader() { # start_reader accept-all|vpcfwd|vpcfwd+fl QUEUES
	if [ "$1" = accept-all ]; then
		ip netns exec "$(lab_ns gw)" "$T/accept-all" "$2" 2>>"$T/reader.log" &
	elif [ "$1" = vpcfwd+mir ]; then
		ip netns exec "$(lab_ns gw)" "$VPCFWD" -f -c "$T/conf-mir" -q "$2" 2>>"$T/reader.log" &
	elif [ "$1" = vpcfwd+off ]; then
		ip netns exec "$(lab_ns gw)" "$VPCFWD" -f -c "$T/conf-off" -q "$2" 2>>"$T/reader.log" &
	elif [ "$1" = vpcfwd+fl ]; then
		ip netns exec "$(lab_ns gw)" "$VPCFWD" -f -c "$T/conf-fl" -q "$2" 2>>"$T/reader.log" &
	else
		ip netns exec "$(lab_ns gw)" "$VPCFWD" -f -c "$T/conf" -q "$2" 2>>"$T/reader.log" &
	fi
	READER=$!
	sleep 0.5
}
stop_reader() {
	[ -n "$READER" ] || return 0
	kill "$READER" 2>/dev/null
	wait "$READER" 2>/dev/null
	READER=
	# what the reader saw: batches, socket overruns, the kernel's drops
	grep -E 'mirror|at exit: [0-9]+ packets|at exit: flow logs|at exit: offload accounting|kernel queue|accept-all: queue' "$T/reader.log" |
		sed 's/^/    /' >&2
	: >"$T/reader.log"
}

# Returns "tcp_gbps udp_kpps p50_us p99_us conn_per_s" for the current setup.
measure() {
	local tcp udp lat pids
	pids=
	for i in 0 1; do
		in_ns cli iperf3 -c 10.0.1.10 -B 203.0.113.$((7 + i)) -p $((5201 + i)) -t "$DURATION" -J \
			>"$T/tcp$i.json" 2>/dev/null &
		pids="$pids $!"
	done
	wait $pids
	tcp=$("$PY" -c '
import json, sys
s = 0
for f in sys.argv[1:]:
    try: s += json.load(open(f))["end"]["sum_received"]["bits_per_second"]
    except Exception: pass
print("%.2f" % (s / 1e9))' "$T/tcp0.json" "$T/tcp1.json")
	pids=
	for i in 0 1; do
		in_ns cli iperf3 -c 10.0.1.10 -B 203.0.113.$((7 + i)) -p $((5201 + i)) -u -l 64 -b 0 \
			-t "$DURATION" -J >"$T/udp$i.json" 2>/dev/null &
		pids="$pids $!"
	done
	wait $pids
	udp=$("$PY" -c '
import json, sys
s = 0
for f in sys.argv[1:]:
    try:
        e = json.load(open(f))["end"]["sum"]
        s += (e["packets"] - e["lost_packets"]) / e["seconds"]
    except Exception: pass
print("%.0f" % (s / 1e3))' "$T/udp0.json" "$T/udp1.json")
	lat=$(in_ns cli "$PY" "$top_srcdir/tests/lab/probe.py" rtt 10.0.1.10 "$PINGS" --interval 0.002 \
		--warmup "$WARMUP")
	pids=
	for i in 0 1; do
		in_ns cli "$T/connrate" client 10.0.1.10 5203 "$DURATION" "$CONN_THREADS" \
			203.0.113.$((7 + i)) >"$T/conn$i.txt" 2>/dev/null &
		pids="$pids $!"
	done
	wait $pids
	cps=$(cat "$T/conn0.txt" "$T/conn1.txt" | awk '{ s += $1 } END { printf "%.0f", s }')
	echo "$tcp $udp ${lat% *} $cps"
}

MODES=${MODES:-"none kernel accept-all:1 vpcfwd:1 vpcfwd+off:1 vpcfwd+fl:1 vpcfwd+mir:1 accept-all:2 vpcfwd:2 vpcfwd+off:2 vpcfwd+fl:2"}
[ -n "${NO_OFFLOAD:-}" ] && MODES=$(echo $MODES | tr ' ' '\n' | grep -v '+off' | tr '\n' ' ')
run_mode() {
	case $1 in
	none) rules_none;;
	kernel) rules_kernel;;
	vpcfwd+rules:*) # the offload's rules, vpcfwd without it: the kernel's
	     # conntrack (and the rules) alone, not in the default MODES
	     rules_queue "${1#*:}" offload
	     local q=0
	     [ "${1#*:}" = 2 ] && q=0-1
	     start_reader vpcfwd $q;;
	vpcfwd+off:*) rules_queue "${1#*:}" offload
	     local q=0
	     [ "${1#*:}" = 2 ] && q=0-1
	     start_reader "${1%:*}" $q;;
	*:*) rules_queue "${1#*:}"
	     local q=0
	     [ "${1#*:}" = 2 ] && q=0-1
	     start_reader "${1%:*}" $q;;
	esac
	measure
	stop_reader
	rules_none
}

declare -A best rounds
# paired A B: the median over rounds of A's figure against B's of the same
# round (ratios for rates, differences in us for latency): the load of a
# shared machine changes between rounds more than within one
paired() {
	awk -v a="${rounds[$1]:-}" -v b="${rounds[$2]:-}" 'BEGIN {
		na = split(a, ra, ";"); split(b, rb, ";"); n = 0
		for (i = 1; i < na; i++) {
			split(ra[i], x, " "); split(rb[i], y, " ")
			if (y[1] <= 0) continue
			n++; t[n] = x[1] / y[1]; u[n] = x[2] / y[2]; l[n] = x[4] - y[4]
			c[n] = y[5] > 0 ? x[5] / y[5] : 0
		}
		if (!n) { print "n/a"; exit }
		printf "TCP %.2f, UDP64 %.2f, p99 %+.0f us, conn/s %.2f (%d rounds)",
			med(t, n), med(u, n), med(l, n), med(c, n), n
	}
	function med(v, n,   i, j, s, w) {
		for (i = 1; i <= n; i++) s[i] = v[i]
		for (i = 2; i <= n; i++) for (j = i; j > 1 && s[j - 1] > s[j]; j--) { w = s[j]; s[j] = s[j - 1]; s[j - 1] = w }
		return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
	}'
}
for r in $(seq "$ROUNDS"); do
	order=$MODES
	[ $((r % 2)) = 0 ] && order=$(echo $MODES | tr ' ' '\n' | tac | tr '\n' ' ')
	for m in $order; do
		res=$(run_mode "$m")
		echo "round $r $m: $res" >&2
		rounds[$m]="${rounds[$m]:-}$res;"
		prev=${best[$m]:-}
		if [ -z "$prev" ]; then
			best[$m]=$res
		else
			best[$m]=$(echo "$prev $res" | awk '{
				printf "%s %s %s %s %s", ($1 > $6 ? $1 : $6), ($2 > $7 ? $2 : $7),
					($3 < $8 ? $3 : $8), ($4 < $9 ? $4 : $9), ($5 > $10 ? $5 : $10) }')
		fi
	done
done

echo
echo "vpcfw throughput, $(nproc) CPU(s), $(uname -r), ${DURATION}s per test, best of $ROUNDS round(s)"
printf '%-14s %10s %12s %9s %9s %10s\n' mode "TCP Gbit/s" "UDP64 kpps" "p50 us" "p99 us" "conn/s"
for m in $MODES; do
	set -- ${best[$m]:-}
	printf '%-14s %10s %12s %9s %9s %10s\n' "$m" "$1" "$2" "$3" "$4" "${5:-}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# every mode against the kernel path of the same run: throughput and rates
# as ratios, latency as the difference in us
echo
echo "as a ratio to the kernel path (iptables + conntrack), latency as a difference"
printf '%-14s %10s %12s %9s %9s %10s\n' mode "TCP" "UDP64" "p50 +us" "p99 +us" "conn/s"
set -- ${best[kernel]:-0 0 0 0 0}
k_tcp=$1 k_udp=$2 k_p50=$3 k_p99=$4 k_cps=${5:-0}
for m in $MODES; do
	set -- ${best[$m]:-0 0 0 0 0}
	printf '%-14s %10s %12s %9s %9s %10s\n' "$m" "$(ratio "$1" "$k_tcp")" "$(ratio "$2" "$k_udp")" \
		"$(awk -v a="$3" -v b="$k_p50" 'BEGIN { printf "%+.0f", a - b }')" \
		"$(awk -v a="$4" -v b="$k_p99" 'BEGIN { printf "%+.0f", a - b }')" "$(ratio "${5:-0}" "$k_cps")"
done
for q in 1 2; do
	[ -n "${best[vpcfwd+off:$q]:-}" ] || continue
	set -- ${best[vpcfwd+off:$q]}
	o_tcp=$1 o_udp=$2 o_p99=$4 o_cps=${5:-0}
	set -- ${best[vpcfwd:$q]:-0 0 0 0 0}
	echo "offload, $q queue(s): TCP $(ratio "$o_tcp" "$k_tcp"), UDP64 $(ratio "$o_udp" "$k_udp") of the kernel (target >= 0.95); new flows $(ratio "$o_cps" "${5:-0}") of vpcfwd without offload (target >= 1); p99 $(awk -v a="$o_p99" -v b="$k_p99" 'BEGIN { printf "%+.0f", a - b }') us from the kernel (target <= 10)"
	echo "  per round, median: vpcfwd+off:$q / kernel: $(paired "vpcfwd+off:$q" kernel); / vpcfwd:$q: $(paired "vpcfwd+off:$q" "vpcfwd:$q")"
done
for q in 1 2; do
	set -- ${best[vpcfwd:$q]:-0 0}
	v_tcp=$1 v_udp=$2
	set -- ${best[accept-all:$q]:-0 0}
	echo "vpcfwd/ceiling with $q queue(s): TCP $(ratio "$v_tcp" "$1"), UDP64 $(ratio "$v_udp" "$2") (target >= 0.9)"
	# fl2: what flow logs cost
	set -- ${best[vpcfwd+fl:$q]:-0 0}
	echo "vpcfwd with/without flow logs, $q queue(s): TCP $(ratio "$1" "$v_tcp"), UDP64 $(ratio "$2" "$v_udp") (target >= 0.9)"
	# the cost of one session mirroring everything (measured with 1 queue)
	if [ -n "${best[vpcfwd+mir:$q]:-}" ]; then
		set -- ${best[vpcfwd+mir:$q]}
		echo "vpcfwd with/without one session mirroring everything, $q queue(s): TCP $(ratio "$1" "$v_tcp"), UDP64 $(ratio "$2" "$v_udp")"
	fi
done
set -- ${best[none]:-0 0 0 0}
n99=$4
set -- ${best[vpcfwd:1]:-0 0 0 0}
echo "p99 latency, vpcfwd minus no filter: $(awk -v a="$4" -v b="$n99" 'BEGIN { printf "%.0f", a - b }') us (target <= 50)"
