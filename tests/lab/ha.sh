#!/bin/bash
# An HA pair (issue #13 item 2): client web -- two gateways A and B, each
# running vpcfwd with Vpcfw.Sync over a link of their own -- server app.
# The server's security group allows no egress, so its segments pass only
# as a tracked flow's (VPC user guide, "security-group-connection-
# tracking").  Checked:
#   - B, started after A, bulk-syncs A's table and says so in its status;
#   - failover: the hosts' routes moved from A to B by hand, a connection
#     made through A (one learnt by the bulk sync, one by an update) keeps
#     going through B; the interruption is measured;
#   - active/active, asymmetric: requests through A, replies through B;
#   - the sync link down: a connection made meanwhile reaches B by the bulk
#     sync B asks for when it hears A again;
#   - a forged sync message (another key) and a replayed one (captured on
#     the link, sent again) are dropped and counted by reason;
#   - the control: B without Sync cuts the same kind of connection;
#   - keepalived with contrib/keepalived/keepalived.conf: vpcfwd killed on
#     the VRRP master, the stream goes on through the backup.
# Needs root and network namespaces; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
. "$here/lib.sh"
lab_begin_ctl
PORT=7710

# ------------------------------------------------------------ the network
#   web 10.0.1.10 --[br1]-- A vweb 10.0.1.2 / B vweb 10.0.1.3
#   app 10.0.2.10 --[br2]-- A vapp 10.0.2.2 / B vapp 10.0.2.3
#   A sync fd00:5ec::1 ------------------- B sync fd00:5ec::2 (IPv6: the
#   bench, bench/bench_sync.c, runs the sync over IPv4)
for n in sw web app gwa gwb; do
	ip netns add "$(lab_ns $n)"
	in_ns $n ip link set lo up
done
in_ns sw ip link add br1 type bridge
in_ns sw ip link add br2 type bridge
in_ns sw ip link set br1 up
in_ns sw ip link set br2 up
link() { # link NS DEV BRIDGE ADDRESS/LEN
	ip link add "${LAB}t" type veth peer name "${LAB}p"
	ip link set "${LAB}t" netns "$(lab_ns "$1")" name "$2"
	ip link set "${LAB}p" netns "$(lab_ns sw)" name "$1-$2"
	in_ns sw ip link set "$1-$2" master "$3" up
	in_ns "$1" ip addr add "$4" dev "$2"
	in_ns "$1" ip link set "$2" up
}
link web eth0 br1 10.0.1.10/24
link app eth0 br2 10.0.2.10/24
for g in gwa gwb; do
	in_ns $g sysctl -qw net.ipv4.ip_forward=1
	in_ns $g sysctl -qw net.ipv4.conf.all.rp_filter=0
	in_ns $g sysctl -qw net.ipv4.conf.default.rp_filter=0
done
link gwa vweb br1 10.0.1.2/24
link gwa vapp br2 10.0.2.2/24
link gwb vweb br1 10.0.1.3/24
link gwb vapp br2 10.0.2.3/24
ip link add "${LAB}t" type veth peer name "${LAB}p"
ip link set "${LAB}t" netns "$(lab_ns gwa)" name sync
ip link set "${LAB}p" netns "$(lab_ns gwb)" name sync
# (addresses kept when the link goes down: the outage below)
in_ns gwa sysctl -qw net.ipv6.conf.sync.keep_addr_on_down=1
in_ns gwb sysctl -qw net.ipv6.conf.sync.keep_addr_on_down=1
in_ns gwa ip -6 addr add fd00:5ec::1/64 dev sync nodad
in_ns gwb ip -6 addr add fd00:5ec::2/64 dev sync nodad
in_ns gwa ip link set sync up
in_ns gwb ip link set sync up
route() { # route VIA-WEB VIA-APP: the hosts' gateways
	in_ns web ip route replace default via "$1"
	in_ns app ip route replace default via "$2"
}
route 10.0.1.2 10.0.2.2
for g in gwa gwb; do
	in_ns $g iptables -A FORWARD -j NFQUEUE --queue-num 0
done

# ------------------------------------------------------------ configurations
head -c 32 /dev/urandom | base64 >"$T/sync.key"
chmod 0600 "$T/sync.key"
conf() { # conf DIR NAME [SYNC-JSON]
	lab_conf_tracked_only "$1"
	cat >"$1/90-vpcfw.json" <<JSON
{"Vpcfw": {"Queues": [0], "ControlSocket": "$T/$2.sock", ${3:-}
  "InterfaceBindings": [
    {"NetworkInterfaceId": "eni-0000000000web01", "Device": "vweb"},
    {"NetworkInterfaceId": "eni-0000000000app01", "Device": "vapp"}]}}
JSON
}
sync_json() { # sync_json NODE ME PEER
	echo "\"Sync\": {\"NodeId\": $1, \"Listen\": \"$2\", \"Peer\": \"$3\", \"Port\": $PORT, \"KeyFile\": \"$T/sync.key\"},"
}
conf "$T/a" a "$(sync_json 1 fd00:5ec::1 fd00:5ec::2)"
conf "$T/b" b "$(sync_json 2 fd00:5ec::2 fd00:5ec::1)"
conf "$T/b-alone" b ""

start() { # start NS LOG CONFDIR: sets PID
	local log=$2 i=0
	: >"$log"
	ip netns exec "$(lab_ns "$1")" "$VPCFWD" -f -c "$3" 2>>"$log" &
	PID=$!
	LAB_PIDS="$LAB_PIDS $PID"
	until grep -q 'serving queue' "$log"; do
		kill -0 "$PID" 2>/dev/null || { cat "$log"; return 1; }
		i=$((i + 1))
		[ $i -gt 200 ] && { cat "$log"; return 1; }
		sleep 0.05
	done
}
stop() { # stop PID
	kill -TERM "$1" 2>/dev/null
	wait "$1"
	LAB_PIDS=$(echo "$LAB_PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}
status() { # status NAME PYTHON-EXPRESSION-OF-s: prints it
	"$CTL" -s "$T/$1.sock" -j status | "$PY" -c "import json, sys; s = json.load(sys.stdin); print($2)"
}

lab_bg app "$PY" "$here/stream.py" serve 10.0.2.10 8000 "$T/ready"
lab_wait_file "$T/ready" 10 || { echo "lab: stream server did not start"; exit 99; }
client() { # client NAME [SECONDS]: a new connection web -> app:8000
	lab_bg web "$PY" "$here/stream.py" client 10.0.2.10 8000 "$T/$1" 300
	stream_wait_more "$T/$1" 0 5 "${2:-10}"
}
ms() { date +%s%3N; }

# ------------------------------------------------------------ bulk sync
start gwa "$T/a.log" "$T/a" || { echo "lab: vpcfwd A did not start"; exit 99; }
PA=$PID
client s1 || fail "the stream does not flow through A"
lab_wait_log "$T/a.log" "sync: no answer from the peer" 10 &&
	pass "A alone: ready without a peer after the bulk-sync wait" || fail "A: not ready alone"
t0=$(ms)
start gwb "$T/b.log" "$T/b" || { echo "lab: vpcfwd B did not start"; exit 99; }
PB=$PID
if lab_wait_log "$T/b.log" "sync: bulk sync from node 1 done" 10; then
	pass "B: bulk sync from A done"
	echo "figure: B's bulk sync: $(grep -o 'done: .*ms' "$T/b.log") ($(( $(ms) - t0 )) ms from B's start)"
else
	fail "B: no bulk sync ($(grep sync: "$T/b.log"))"
fi
check "B's status: ready after the bulk sync" "ready done True" \
	"$(status b 's["sync"]["state"], s["sync"]["bulk"]["state"], s["sync"]["bulk"]["received"] >= 1' | tr -d "(),'")"
check "A's status: B up and ready" "True True 2" \
	"$(status a 's["sync"]["peer"]["up"], s["sync"]["peer"]["ready"], s["sync"]["peer"]["node"]' | tr -d "(),'")"
"$CTL" -s "$T/b.sock" metrics | grep -q '^vpcfw_sync_ready 1' &&
	pass "metrics: vpcfw_sync_ready" || fail "metrics: no vpcfw_sync_ready 1"

# ------------------------------------------------------------ the cost of a flow
# 50 short connections through A (each two tracked flows: at web's and at
# app's interface): what A sends for them, hellos included
sent() { status a '"%d %d %d" % (s["sync"]["sent"]["messages"], s["sync"]["sent"]["records"], s["sync"]["sent"]["bytes"])'; }
read -r m0 r0 b0 <<<"$(sent)"
for i in $(seq 1 50); do
	in_ns web "$PY" "$here/probe.py" tcp 10.0.2.10 8000 --sport $((30000 + i)) >/dev/null
done
sleep 0.3
read -r m1 r1 b1 <<<"$(sent)"
echo "figure: 50 short connections through A: $(( (r1 - r0) )) records, $(( (m1 - m0) )) messages, $(( (b1 - b0) / 50 )) bytes per connection sent to B (hellos included)"
[ $((r1 - r0)) -ge 100 ] && pass "every new connection's flows sent to B" ||
	fail "50 connections gave $((r1 - r0)) records"

# ------------------------------------------------------------ failover
client s2 || fail "a second stream does not flow through A"
sleep 0.5
c1=$(stream_count "$T/s1") c2=$(stream_count "$T/s2")
t0=$(ms)
route 10.0.1.3 10.0.2.3
if stream_wait_more "$T/s1" "$c1" 5 10; then
	pass "failover to B: the stream B learnt by bulk sync keeps going"
	echo "figure: failover (routes moved by hand): $(( $(ms) - t0 )) ms to 5 more lines (0.5 s of which the stream's pace)"
else
	fail "failover to B: the bulk-synced stream stopped at $(stream_count "$T/s1") lines"
fi
stream_wait_more "$T/s2" "$c2" 5 10 && pass "failover to B: the stream B learnt by an update keeps going" ||
	fail "failover to B: the update-synced stream stopped at $(stream_count "$T/s2") lines"
grep -q 'ENI_SG_RULES_MISMATCH' "$T/b.log" && fail "B refused something: $(grep -m3 REJECT "$T/b.log")" ||
	pass "B refused none of the streams' segments"

# ------------------------------------------------------------ active/active
# Each gateway sees one direction of a connection: neither can follow its
# TCP windows (the other side's sequence numbers pass elsewhere), so
# active/active wants Vpcfw.TcpBeLiberal, as conntrackd's does Linux's
# nf_conntrack_tcp_be_liberal; reloaded into both, sync running.
for g in a b; do
	sed -i 's/"Queues": \[0\],/"Queues": [0], "TcpBeLiberal": true,/' "$T/$g/90-vpcfw.json"
	"$CTL" -s "$T/$g.sock" reload >/dev/null || fail "reload of $g refused"
done
route 10.0.1.2 10.0.2.3     # requests through A, replies through B
if client s3 15; then
	pass "asymmetric: a new connection through A with its replies through B"
else
	fail "asymmetric: the new connection does not flow ($(stream_count "$T/s3") lines)"
fi
c1=$(stream_count "$T/s1")
stream_wait_more "$T/s1" "$c1" 5 10 && pass "asymmetric: the older stream keeps going" ||
	fail "asymmetric: the older stream stopped"
route 10.0.1.3 10.0.2.2     # and the other way round
c3=$(stream_count "$T/s3")
stream_wait_more "$T/s3" "$c3" 5 10 && pass "asymmetric, reversed: the stream keeps going" ||
	fail "asymmetric, reversed: the stream stopped at $(stream_count "$T/s3") lines"

# ------------------------------------------------------------ the sync link down
# A connection made through A while the link is down: its changes are lost
# on the way; when B hears A again it asks for A's whole table.
route 10.0.1.2 10.0.2.2
in_ns gwa ip link set sync down
sleep 4
client s6 || fail "link down: a stream does not flow through A"
in_ns gwa ip link set sync up
if lab_wait_log "$T/b.log" "sync: node 1 heard again after" 10 &&
	lab_wait_log "$T/b.log" "bulk sync from node 1 done.*flows" 10; then
	pass "link back: B heard A again and took its table"
else
	fail "link back: no new bulk sync ($(grep 'sync:' "$T/b.log" | tail -3))"
fi
sleep 0.5
c6=$(stream_count "$T/s6")
route 10.0.1.3 10.0.2.3
stream_wait_more "$T/s6" "$c6" 5 10 && pass "link back: the stream made during the outage goes on through B" ||
	fail "link back: the stream made during the outage stopped at $(stream_count "$T/s6") lines"

# ------------------------------------------------------------ forged, replayed
drops() { status b '"%d %d" % (s["sync"]["received"]["dropped"]["auth"], s["sync"]["received"]["dropped"]["replay"])'; }
read -r auth0 replay0 <<<"$(drops)"
in_ns gwa "$PY" "$here/syncmsg.py" forge fd00:5ec::2 $PORT 1
in_ns gwb "$PY" "$here/syncmsg.py" capture sync $PORT "$T/captured" 5 ||
	fail "no sync message seen on the link"
sleep 0.2
in_ns gwa "$PY" "$here/syncmsg.py" send fd00:5ec::2 $PORT "$T/captured"
sleep 0.5
check "a forged and a replayed message dropped, counted by reason" \
	"$((auth0 + 1)) $((replay0 + 1))" "$(drops)"
for g in a b; do
	check "$g: no authenticated message of the peer broke the format" 0 \
		"$(status $g 's["sync"]["received"]["dropped"]["malformed"]')"
done
"$CTL" -s "$T/b.sock" metrics | grep -q '^vpcfw_sync_dropped_total{reason="replay"} [1-9]' &&
	pass "metrics: vpcfw_sync_dropped_total{reason=\"replay\"}" || fail "metrics: no replay drop"
"$CTL" -s "$T/b.sock" status | grep '^sync'
"$CTL" -s "$T/b.sock" status | grep -q '^sync messages .*dropped [1-9].*auth 1' &&
	pass "vpcfwctl status: the drops by reason" || fail "vpcfwctl status: $("$CTL" -s "$T/b.sock" status | grep sync)"

# ------------------------------------------------------------ the control
# B without Sync: a stream made through A is cut when the routes move to B.
stop "$PB"
route 10.0.1.2 10.0.2.2
start gwb "$T/b2.log" "$T/b-alone" || { echo "lab: vpcfwd B did not restart"; exit 99; }
PB=$PID
client s4 || fail "control: the stream does not flow through A"
route 10.0.1.3 10.0.2.3
# what was in flight before the move (sockets, a client slowed by a loaded
# machine) may still arrive: count from a second after it
sleep 1
c4=$(stream_count "$T/s4")
if stream_wait_more "$T/s4" "$c4" 5 5; then
	fail "control: without Sync the stream survived the move to B (the lab tests nothing)"
else
	pass "control: without Sync the move to B cuts the stream"
fi
lab_wait_log "$T/b2.log" "10.0.2.10:8000 -> 10.0.1.10:[0-9]*: ENI_SG_RULES_MISMATCH" 5 &&
	pass "control: B refused the server's segments by app's egress rules" ||
	fail "control: no ENI_SG_RULES_MISMATCH on B"
stop "$PB"

# ------------------------------------------------------------ keepalived
# contrib/keepalived/keepalived.conf as shipped (devices and paths put in):
# VRRP moves 10.0.1.1 and 10.0.2.1; vpcfwd killed on the master mid-stream,
# its track script fails and the backup takes the addresses; the stream
# goes on through B.
if command -v keepalived >/dev/null; then
	start gwb "$T/b3.log" "$T/b" || { echo "lab: vpcfwd B did not restart"; exit 99; }
	PB=$PID
	lab_wait_log "$T/b3.log" "sync: bulk sync from node 1 done" 10 || fail "keepalived: B did not bulk-sync"
	for g in a b; do
		mkdir -p "$T/run-$g"
		printf '#!/bin/sh\nVPCFWCTL=%s VPCFW_SOCKET=%s exec %s\n' "$CTL" "$T/$g.sock" \
			"$top_srcdir/contrib/keepalived/vpcfw-ready" >"$T/ready-$g"
		printf '#!/bin/sh\nVPCFWCTL=%s VPCFW_SOCKET=%s VPCFW_RUNDIR=%s exec %s "$@"\n' "$CTL" \
			"$T/$g.sock" "$T/run-$g" "$top_srcdir/contrib/keepalived/vpcfw-notify" >"$T/notify-$g"
		chmod 0755 "$T/ready-$g" "$T/notify-$g"
		prio=100
		[ $g = b ] && prio=90
		sed -e "s|/etc/keepalived/vpcfw-ready|$T/ready-$g|" \
		    -e "s|/etc/keepalived/vpcfw-notify|$T/notify-$g|" \
		    -e "s|router_id vpcfw-a|router_id vpcfw-$g|" -e "s|priority 100|priority $prio|" \
		    -e 's|eth0|vweb|g' -e 's|eth1|vapp|g' \
		    "$top_srcdir/contrib/keepalived/keepalived.conf" >"$T/keepalived-$g.conf"
	done
	lab_bg gwa keepalived -n -l -f "$T/keepalived-a.conf" -p "$T/ka-a.pid" -r "$T/ka-a-vrrp.pid" \
		-c "$T/ka-a-chk.pid" >"$T/ka-a.log" 2>&1
	vip() { in_ns "$1" ip -4 addr show dev vweb | grep -q 'inet 10.0.1.1/' &&
		in_ns "$1" ip -4 addr show dev vapp | grep -q 'inet 10.0.2.1/'; }
	i=0
	until vip gwa; do
		i=$((i + 1))
		[ $i -gt 200 ] && break
		sleep 0.05
	done
	vip gwa && pass "keepalived: A holds the gateway addresses" ||
		fail "keepalived: A did not take the addresses ($(tail -5 "$T/ka-a.log"))"
	lab_bg gwb keepalived -n -l -f "$T/keepalived-b.conf" -p "$T/ka-b.pid" -r "$T/ka-b-vrrp.pid" \
		-c "$T/ka-b-chk.pid" >"$T/ka-b.log" 2>&1
	sleep 2
	vip gwb && fail "keepalived: B took the addresses while A holds them" ||
		pass "keepalived: B is the backup"
	route 10.0.1.1 10.0.2.1
	client s5 || fail "keepalived: the stream does not flow through the addresses"
	c5=$(stream_count "$T/s5")
	t0=$(ms)
	kill -9 "$PA"
	wait "$PA" 2>/dev/null
	LAB_PIDS=$(echo "$LAB_PIDS" | tr ' ' '\n' | grep -vx "$PA" | tr '\n' ' ')
	if stream_wait_more "$T/s5" "$c5" 5 30; then
		pass "keepalived: vpcfwd killed on A, the stream goes on through B"
		echo "figure: failover by keepalived after kill -9 of A's vpcfwd: $(( $(ms) - t0 )) ms to 5 more lines (track script: 1 s interval, fall 2)"
	else
		fail "keepalived: the stream stopped at $(stream_count "$T/s5") lines"
	fi
	vip gwb && pass "keepalived: B holds the addresses" || fail "keepalived: B did not take the addresses"
	grep -q 'MASTER' "$T/run-b/vrrp-state" 2>/dev/null &&
		pass "keepalived: the notify hook recorded B's MASTER state" ||
		fail "keepalived: no MASTER in B's notify record ($(cat "$T/run-b/vrrp-state" 2>&1))"
	stop "$PB"
else
	echo "keepalived not installed: its part skipped"
	stop "$PA"
fi

echo "ha lab: $fails failure(s)"
[ "$fails" -eq 0 ]
