#!/bin/bash
# Offload to the kernel (issue #16), where the kernel's side falls short:
#
# 1. A flow the kernel does not track falls back to the queue, never to
#    accept.  The kernel's table full (nf_conntrack_max) is what the issue
#    names; a child namespace cannot lower nf_conntrack_max (read-only
#    there), so the stand-in is the other way a packet has no kernel entry:
#    a raw-table CT --notrack rule for the test flow.  With Offload and the
#    shipped rules installed (and shown to offload a tracked flow first),
#    every forwarded packet of the untracked flow reaches the NFQUEUE rule
#    (the gateway's own iptables counters: one rule ahead of everything, one
#    just before the queue) and is decided by vpcfwd (its packet counter);
#    nothing is marked, vpcfw_offload_no_conntrack_total and the status's
#    offload.no_conntrack count the flow's packets and the hint says why;
#    and a reload that removes the network ACL's entry admitting the flow
#    cuts it at once.
# 2. nf_conntrack_tcp_be_liberal on in vpcfwd's namespace while
#    Vpcfw.TcpBeLiberal is off: vpcfwd --check-config and vpcfwd's start
#    warn (the kernel would pass out-of-window segments of offloaded flows
#    that vpcfwd refuses); with 0, no warning.  With Offload not written
#    (on by default), no warning but no offload either: vpcfwd's start
#    says the default is off, and why.
#
# The flow: web -> app:8000 with app's security group allowing no egress
# (as offload.sh).  Needs root, network namespaces, the conntrack/connmark
# matches and the CT target; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
RULES=$top_srcdir/contrib/offload/vpcfw-offload-iptables
. "$here/lib.sh"
lab_begin_ctl

lab_gateway
in_ns gw iptables -A FORWARD -m conntrack --ctstate ESTABLISHED -m connmark --mark 1/1 -j ACCEPT \
	2>/dev/null && in_ns gw iptables -t mangle -A POSTROUTING -m mark --mark 1/1 -j CONNMARK \
	--or-mark 1 2>/dev/null && in_ns gw iptables -t raw -A PREROUTING -p tcp --dport 9 -j CT \
	--notrack 2>/dev/null || { echo "lab: conntrack/connmark/CONNMARK/CT unavailable, skipped"; exit 77; }
in_ns gw iptables -F FORWARD
in_ns gw iptables -t mangle -F POSTROUTING
in_ns gw iptables -t raw -F PREROUTING
[ -e "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal" ] ||
	{ echo "lab: no net.netfilter.nf_conntrack_tcp_be_liberal, skipped"; exit 77; }
lab_host web vweb 10.0.1.1 $WEB4/24 2001:db8:1234:1::1 $WEB6/64
lab_host app vapp 10.0.2.1 $APP4/24 2001:db8:1234:2::1 $APP6/64

conf() { lab_conf_offload "$1" "$T/ctl.sock" "${2:-}"; } # conf DIR [MORE-VPCFW-KEYS]
conf "$T/base"
conf "$T/liberal" '"TcpBeLiberal": true,'
# the same with Offload not written: on by default
conf "$T/default"
sed -i 's/"Offload": true, //' "$T/default/90-vpcfw.json"
# the same without the network ACL's inbound IPv4 allow entry 100
conf "$T/nonacl"
lab_conf_drop_nacl_in100 "$T/nonacl"
LIVE=$T/live
use() { rm -rf "$LIVE"; cp -r "$T/$1" "$LIVE"; }
ctl() { "$CTL" -s "$T/ctl.sock" "$@"; }
status() { # status PYTHON-EXPRESSION-OF-s
	ctl -j status | "$PY" -c 'import json,sys; s = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
metric() { # metric NAME: queue 0's value
	ctl metrics | awk -v n="$1{queue=\"0\"}" '$1 == n { print $2 }'
}
qid() { in_ns gw awk '$1 == 0 { print $8 }' /proc/net/netfilter/nfnetlink_queue; }
# the packets of port-8000 flows counted by FORWARD rules 1 and 3 (one
# listing: one reading of the table's counters), as "N M"
fwd() { in_ns gw iptables -nvxL FORWARD --line-numbers | awk '$1 == 1 { a = $2 } $1 == 3 { b = $2 } END { print a, b }'; }
LOG=$T/vpcfwd.log

# ------------------------------------------------------------ 2. be_liberal
liberal() { in_ns gw sysctl -qw "net.netfilter.nf_conntrack_tcp_be_liberal=$1"; }
WARN="net.netfilter.nf_conntrack_tcp_be_liberal is 1 here while Vpcfw.TcpBeLiberal is off"
use base
liberal 1
out=$(in_ns gw "$VPCFWD" --check-config -c "$LIVE" 2>&1)
if echo "$out" | grep -q "warning: Vpcfw.Offload: the kernel's $WARN" &&
	echo "$out" | grep -q "sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=0"; then
	pass "--check-config, be_liberal 1: the warning names the sysctl, its value and the fix"
else
	fail "--check-config, be_liberal 1: no warning ($out)"
fi
out=$(in_ns gw "$VPCFWD" --check-config -c "$T/liberal" 2>&1)
echo "$out" | grep -q "nf_conntrack_tcp_be_liberal" &&
	fail "--check-config, be_liberal 1 and TcpBeLiberal on: warned ($out)" ||
	pass "--check-config, be_liberal 1 and TcpBeLiberal on: no warning"
lab_queue_rules --queue-num 0
lab_start_vpcfwd "$LOG.liberal" -c "$LIVE" || { echo "lab: vpcfwd did not start"; exit 99; }
lab_stop_vpcfwd
grep -q "$WARN" "$LOG.liberal" && pass "start, be_liberal 1: the warning is logged" ||
	fail "start, be_liberal 1: no warning in the log"
grep -q '"Offload"' "$T/default/90-vpcfw.json" && fail "the default's configuration writes Offload"
out=$(in_ns gw "$VPCFWD" --check-config -c "$T/default" 2>&1)
echo "$out" | grep -q "nf_conntrack_tcp_be_liberal" &&
	fail "--check-config, be_liberal 1, Offload by default: warned ($out)" ||
	pass "--check-config, be_liberal 1, Offload by default: no warning"
lab_start_vpcfwd "$LOG.default" -c "$T/default" || { echo "lab: vpcfwd did not start"; exit 99; }
lab_stop_vpcfwd
grep -q "Offload (the default) is off: the kernel's net.netfilter.nf_conntrack_tcp_be_liberal is 1" \
	"$LOG.default" && pass "start, be_liberal 1, Offload by default: off, and the log says why" ||
	fail "start, be_liberal 1, Offload by default: not said to be off ($(cat "$LOG.default"))"
liberal 0
out=$(in_ns gw "$VPCFWD" --check-config -c "$LIVE" 2>&1)
echo "$out" | grep -q "nf_conntrack_tcp_be_liberal" &&
	fail "--check-config, be_liberal 0: warned ($out)" || pass "--check-config, be_liberal 0: no warning"
lab_start_vpcfwd "$LOG.strict" -c "$LIVE" || { echo "lab: vpcfwd did not start"; exit 99; }
lab_stop_vpcfwd
grep -q "nf_conntrack_tcp_be_liberal" "$LOG.strict" && fail "start, be_liberal 0: warned" ||
	pass "start, be_liberal 0: no warning"

# ------------------------------------------------------------ 1. no kernel entry
# FORWARD: 1 counts every port-8000 packet, 2 is the offload's accept rule,
# 3 counts what passed it, 4 queues
lab_queue_rules --queue-num 0
in_ns gw sh "$RULES" add
in_ns gw iptables -I FORWARD 1 -p tcp -m multiport --ports 8000
in_ns gw iptables -I FORWARD 3 -p tcp -m multiport --ports 8000
check "FORWARD: counter, accept rule, counter, queue" "-A FORWARD -p tcp -m multiport --ports 8000|-A FORWARD -m conntrack --ctstate ESTABLISHED -m connmark --mark 0x40000000/0x40000000 -j ACCEPT|-A FORWARD -p tcp -m multiport --ports 8000|-A FORWARD -j NFQUEUE --queue-num 0" \
	"$(in_ns gw iptables -S FORWARD | grep -v '^-P' | paste -sd '|')"

use base
lab_start_vpcfwd "$LOG" -c "$LIVE" || { echo "lab: vpcfwd did not start"; exit 99; }
lab_bg app "$PY" "$here/stream.py" serve $APP4 8000 "$T/ready"
lab_wait_file "$T/ready" 10 || { echo "lab: stream server did not start"; exit 99; }

# the rules work here: a tracked flow is offloaded (the queue stops seeing it)
lab_bg web "$PY" "$here/stream.py" client $APP4 8000 "$T/c1" 5
stream_wait_more "$T/c1" 0 15 10 || fail "the tracked stream does not flow through vpcfwd"
sleep 0.3
c=$(stream_count "$T/c1") q0=$(qid)
stream_wait_more "$T/c1" "$c" 10 5 || fail "the tracked stream stopped"
q1=$(qid)
[ $((q1 - q0)) -le 2 ] && pass "control: a tracked flow is offloaded ($((q1 - q0)) packet(s) queued for 10 lines)" ||
	fail "control: the tracked flow was not offloaded ($((q1 - q0)) packets queued for 10 lines)"
marked0=$(metric vpcfw_offload_marked_total)
[ "${marked0:-0}" -ge 1 ] && pass "control: marked ($marked0)" || fail "control: nothing marked"
# it ends (the client gives up after 5 s): no port-8000 flow but the next one
for i in $(seq 100); do [ "$(stream_count "$T/c1")" -lt 0 ] && break; sleep 0.1; done
[ "$(stream_count "$T/c1")" -lt 0 ] || fail "the tracked stream did not end"
sleep 0.5

# the kernel tracks no port-8000 packet from here on
in_ns gw iptables -t raw -A PREROUTING -p tcp -m multiport --ports 8000 -j CT --notrack
in_ns gw ip6tables -t raw -A PREROUTING -p tcp -m multiport --ports 8000 -j CT --notrack
nc0=$(metric vpcfw_offload_no_conntrack_total)
lab_bg web "$PY" "$here/stream.py" client $APP4 8000 "$T/n1" 120
stream_wait_more "$T/n1" 0 15 10 || fail "the untracked stream does not flow through vpcfwd"
# past OffloadAfterPackets (8), the baseline asked, answered (no entry) and
# asked again a second later
sleep 1.5
# readings nested: the queue's and vpcfwd's around the rules' (>=)
c=$(stream_count "$T/n1") q0=$(qid) d0=$(status 's["queues"][0]["packets"]')
read -r a0 b0 <<<"$(fwd)"
stream_wait_more "$T/n1" "$c" 20 5 || fail "the untracked stream stopped at $(stream_count "$T/n1") lines"
read -r a1 b1 <<<"$(fwd)"
d1=$(status 's["queues"][0]["packets"]') q1=$(qid)
n=$((a1 - a0))
echo "figure: 20 lines of the untracked flow: $n packets forwarded, $((b1 - b0)) past the accept rule, $((q1 - q0)) queued, $((d1 - d0)) decided by vpcfwd"
[ "$n" -ge 20 ] || fail "the untracked stream: only $n packets forwarded for 20 lines"
check "no kernel entry: every packet of the flow past the accept rule" "$n" "$((b1 - b0))"
[ $((q1 - q0)) -ge "$n" ] && pass "no kernel entry: every packet queued ($((q1 - q0)) >= $n)" ||
	fail "no kernel entry: $((q1 - q0)) packets queued for $n forwarded"
[ $((d1 - d0)) -ge "$n" ] && pass "no kernel entry: vpcfwd decided every packet ($((d1 - d0)) >= $n)" ||
	fail "no kernel entry: vpcfwd decided $((d1 - d0)) packets for $n forwarded"
check "no kernel entry: nothing marked" "$marked0" "$(metric vpcfw_offload_marked_total)"
nc1=$(metric vpcfw_offload_no_conntrack_total)
[ "${nc1:-0}" -gt "${nc0:-0}" ] &&
	pass "no kernel entry: vpcfw_offload_no_conntrack_total counts it (${nc0:-?} -> $nc1)" ||
	fail "no kernel entry: vpcfw_offload_no_conntrack_total ${nc0:-?} -> ${nc1:-?}"
v=$(status 's["offload"]["no_conntrack"]')
[ "$v" -ge "${nc1:-1}" ] && pass "no kernel entry: status offload.no_conntrack counts it ($v)" ||
	fail "no kernel entry: status offload.no_conntrack $v, the metric $nc1"
check "no kernel entry: no packet counted as missed (the rules are there)" 0 "$(metric vpcfw_offload_missed_total)"
status 's["offload"]["hint"]' | grep -q "NOTRACK" &&
	pass "no kernel entry: the status's hint says why" || fail "status hint: '$(status 's["offload"]["hint"]')'"
v=$(ctl status | sed -n 's/^offload .* \([0-9][0-9]*\) without a kernel entry.*/\1/p')
[ "${v:-0}" -ge "${nc1:-1}" ] && pass "vpcfwctl status shows the count ($v without a kernel entry)" ||
	fail "vpcfwctl status: $(ctl status | grep '^offload')"

# a reload that removes the network ACL's entry admitting the flow cuts it:
# the next packet is refused
use nonacl
c=$(stream_count "$T/n1")
ctl reload >/dev/null || fail "reload (NACL entry removed) refused"
sleep 2
c1=$(stream_count "$T/n1")
[ "$c1" -le $((c + 1)) ] && pass "NACL entry removed: the stream cut at once ($c1 lines, $c at the reload)" ||
	fail "NACL entry removed: the stream went on ($c -> $c1 lines)"
lab_wait_log "$LOG" "10.0.2.10:8000 -> 10.0.1.10:[0-9]*: SUBNET_ACL_RESTRICTION" 3 ||
	lab_wait_log "$LOG" "10.0.1.10:[0-9]* -> 10.0.2.10:8000: SUBNET_ACL_RESTRICTION" 3 &&
	pass "NACL entry removed: the flow's packets refused by the network ACL" ||
	fail "NACL entry removed: no SUBNET_ACL_RESTRICTION refusal"
check "NACL entry removed: still nothing marked" "$marked0" "$(metric vpcfw_offload_marked_total)"
lab_stop_vpcfwd
check "SIGTERM: vpcfwd exits 0" 0 "$VPCFWD_STATUS"

echo "offload-kernel lab: $fails failure(s)"
[ "$fails" -eq 0 ]
