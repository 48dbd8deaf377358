#!/bin/bash
# Flood fairness on the real kernel path (issue #9 item 8; beyond AWS, off by
# default).  web floods new UDP flows to the internet host, rotating its
# source port, into a flow table of 64 (ConntrackMax, one queue); then corp
# opens an SSH connection to web, which web's security group admits.
#   off (AWS's behaviour): the flood takes every slot and corp's connection
#     is refused, CONNTRACK_ALLOWANCE_EXCEEDED;
#   PerSourceConntrackPercent 25: web holds 16 flows, the other 184 are
#     refused as CONNTRACK_SOURCE_SHARE_EXCEEDED, corp gets through;
#   PerSourceNewFlowsPerSecond 20: web starts about 20 flows (the burst),
#     the rest refused as CONNTRACK_SOURCE_RATE_EXCEEDED, corp gets through.
# The counters are read from `vpcfwctl stats` and `vpcfwctl metrics`.
# Needs root and network namespaces; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
. "$here/lib.sh"
lab_begin_ctl
N=200           # new flows in the flood

lab_gateway
lab_host web vweb 10.0.1.1 $WEB4/24 2001:db8:1234:1::1 $WEB6/64
lab_host inet vinet 203.0.113.1 $INET4/24 2001:db8:ffff::1 $INET6/64
lab_host corp vcorp 198.51.100.1 $CORP4/24 2001:db8:c0::1 $CORP6/64
lab_queue_rules --queue-num 0
lab_bg web "$PY" "$here/probe.py" serve "$T/ready-web" --tcp 22 --udp 53
lab_bg inet "$PY" "$here/probe.py" serve "$T/ready-inet" --tcp 443 --udp 53
lab_wait_file "$T/ready-web" 10 && lab_wait_file "$T/ready-inet" 10 ||
	{ echo "lab: servers did not start"; exit 99; }

conf() { # conf DIR EXTRA-VPCFW-KEYS
	mkdir -p "$1"
	for f in "$top_srcdir"/conf/three-tier/*.json; do
		case $(basename "$f") in *vpcfw*) continue;; esac
		cp "$f" "$1/"
	done
	cat >"$1/90-vpcfw.json" <<JSON
{"Vpcfw": {"Queues": [0], "ControlSocket": "$T/ctl.sock", "ConntrackMax": 64, $2
  "InterfaceBindings": [{"NetworkInterfaceId": "eni-0000000000web01", "Device": "vweb"}]}}
JSON
}
conf "$T/off" ""
conf "$T/share" '"PerSourceConntrackPercent": 25,'
conf "$T/rate" '"PerSourceNewFlowsPerSecond": 20,'

ctl() { "$CTL" -s "$T/ctl.sock" "$@"; }
conntrack() { # conntrack COUNTER: the stats' conntrack section
	ctl -j stats | "$PY" -c "import json,sys; print(json.load(sys.stdin)['conntrack']['$1'])"
}
metric() { # metric NAME: its value in `vpcfwctl metrics`
	ctl metrics | awk -v n="$1" '$1 == n { print $2 }'
}
flood() { # N new UDP flows web -> inet:53, one source port each
	in_ns web "$PY" - "$INET4" "$N" <<'PYEOF'
import socket, sys
dst, n = sys.argv[1], int(sys.argv[2])
for p in range(30000, 30000 + n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", p))
    s.sendto(b"x", (dst, 53))
    s.close()
PYEOF
}
# settle: until vpcfwd has decided every datagram of the flood
settle() {
	local i=0 n
	while :; do
		n=$(ctl -j stats | "$PY" -c "import json,sys; print(sum(q['packets'] for q in json.load(sys.stdin)['queues']))")
		[ "$n" -ge "$N" ] && return 0
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		sleep 0.05
	done
}

run() { # run NAME: one daemon with the configuration NAME, one flood, one probe
	LOG=$T/vpcfwd-$1.log
	lab_start_vpcfwd "$LOG" -c "$T/$1" || { echo "lab: vpcfwd did not start"; exit 99; }
	flood
	settle || fail "$1: vpcfwd did not decide the $N datagrams of the flood"
	PROBE=$(in_ns corp "$PY" "$here/probe.py" tcp $WEB4 22 --sport 41000)
	USED=$(ctl -j status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["conntrack_used"])')
	EXCEEDED=$(conntrack allowance_exceeded)
	SHARE=$(conntrack source_share_exceeded)
	RATE=$(conntrack source_rate_exceeded)
	M_SHARE=$(metric vpcfw_conntrack_source_share_exceeded_total)
	M_RATE=$(metric vpcfw_conntrack_source_rate_exceeded_total)
	M_EXCEEDED=$(metric vpcfw_conntrack_allowance_exceeded_total)
	echo "figure: $1: flows $USED, allowance_exceeded $EXCEEDED, source_share_exceeded $SHARE, source_rate_exceeded $RATE, corp's connection $PROBE"
}

# ------------------------------------------------------------ off: AWS's behaviour
run off
check "off: the flood fills the table" 64 "$USED"
check "off: corp's connection to web is refused" timeout "$PROBE"
lab_wait_log "$LOG" "REJECT tcp $CORP4:41000 -> $WEB4:22: CONNTRACK_ALLOWANCE_EXCEEDED" 3 &&
	pass "off: refused as CONNTRACK_ALLOWANCE_EXCEEDED" ||
	fail "off: no CONNTRACK_ALLOWANCE_EXCEEDED refusal of corp's connection logged"
check "off: no fairness refusal" "0 0" "$SHARE $RATE"
[ "$EXCEEDED" -ge $((N - 64)) ] && pass "off: allowance_exceeded $EXCEEDED" ||
	fail "off: allowance_exceeded $EXCEEDED, expected at least $((N - 64))"
check "off: metrics agree" "$EXCEEDED 0 0" "$M_EXCEEDED $M_SHARE $M_RATE"
lab_stop_vpcfwd

# ------------------------------------------------------------ a share of the table
run share
check "share: web's flood refused beyond 16 flows" $((N - 16)) "$SHARE"
check "share: corp's connection to web gets through" ok "$PROBE"
check "share: the table holds web's 16 flows and corp's" 17 "$USED"
check "share: no table-full refusal" 0 "$EXCEEDED"
lab_wait_log "$LOG" "REJECT udp $WEB4:[0-9]* -> $INET4:53: CONNTRACK_SOURCE_SHARE_EXCEEDED conntrack" 3 &&
	pass "share: refusals logged as CONNTRACK_SOURCE_SHARE_EXCEEDED" ||
	fail "share: no CONNTRACK_SOURCE_SHARE_EXCEEDED refusal logged"
check "share: metrics agree" "$SHARE 0" "$M_SHARE $M_RATE"
lab_stop_vpcfwd

# ------------------------------------------------------------ a rate
run rate
# the burst (20) and what the rate refills while the flood is sent
[ "$RATE" -ge $((N - 40)) ] && [ "$RATE" -le $((N - 20)) ] &&
	pass "rate: web's flood refused beyond its burst ($((N - RATE)) admitted)" ||
	fail "rate: source_rate_exceeded $RATE, expected $((N - 40)) to $((N - 20))"
check "rate: corp's connection to web gets through" ok "$PROBE"
check "rate: no table-full refusal" 0 "$EXCEEDED"
lab_wait_log "$LOG" "REJECT udp $WEB4:[0-9]* -> $INET4:53: CONNTRACK_SOURCE_RATE_EXCEEDED conntrack" 3 &&
	pass "rate: refusals logged as CONNTRACK_SOURCE_RATE_EXCEEDED" ||
	fail "rate: no CONNTRACK_SOURCE_RATE_EXCEEDED refusal logged"
check "rate: metrics agree" "0 $RATE" "$M_SHARE $M_RATE"
lab_stop_vpcfwd

echo "flood lab: $fails failure(s)"
[ "$fails" -eq 0 ]
