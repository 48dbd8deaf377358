#!/bin/bash
# Offload to the kernel (issue #16): with Vpcfw.Offload and the shipped
# rules (contrib/offload/vpcfw-offload-iptables: the accept rule ahead of
# the NFQUEUE rule, the mark rule in mangle POSTROUTING), an established
# tracked flow is marked in its kernel conntrack entry by the verdict's
# packet mark, and its further packets stop reaching vpcfwd (the queue's packet ids stop
# rising while the stream goes on).  A reload takes every offloaded flow
# back before the new policy answers: one that removes the security-group
# rule leaves the tracked flow alive (offloaded again) and refuses new
# connections; one that removes the network ACL's entry cuts it within one
# packet.  Without the accept rule everything works as before and
# vpcfw_offload_missed_total grows; without any rule (the kernel tracks
# nothing here), vpcfw_offload_no_conntrack_total.  kill -9: the offloaded flow goes on in
# the kernel, a new one meets the unbound queue (fail closed); the next start
# takes the flow back.  A clean stop takes the flows back too.
#
# The flow: web -> app:8000 with app's security group allowing no egress,
# so app's segments pass only as a tracked flow's (as restart.sh).  Needs
# root, network namespaces and the conntrack / connmark matches; exits 77
# (skipped) otherwise.
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
	--or-mark 1 2>/dev/null || { echo "lab: conntrack/connmark/CONNMARK unavailable, skipped"; exit 77; }
in_ns gw iptables -F FORWARD
in_ns gw iptables -t mangle -F POSTROUTING
lab_host web vweb 10.0.1.1 $WEB4/24 2001:db8:1234:1::1 $WEB6/64
lab_host app vapp 10.0.2.1 $APP4/24 2001:db8:1234:2::1 $APP6/64

# the configurations: the example with app allowing no egress (base); the
# same without app's ingress rule for web on 8000 (nosg); the same without
# the network ACL's inbound IPv4 allow entry 100 (nonacl)
conf() { lab_conf_offload "$1" "$T/ctl.sock" "${2:-}"; } # conf DIR [MORE-VPCFW-KEYS]
conf "$T/base"
# the same with TcpLoose off: a segment of no tracked flow starts none, so a
# restarted vpcfwd cuts the stream whichever side's segment comes first
conf "$T/strict" '"TcpLoose": false,'
conf "$T/nosg"
"$PY" - "$T/nosg/40-security-groups.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for g in d["SecurityGroups"]:
    if g["GroupId"] == "sg-0000000000000app":
        g["IpPermissions"] = [r for r in g["IpPermissions"] if r.get("FromPort") != 8000]
json.dump(d, open(p, "w"), indent=1)
PYEOF
conf "$T/nonacl"
lab_conf_drop_nacl_in100 "$T/nonacl"
LIVE=$T/live
use() { rm -rf "$LIVE"; cp -r "$T/$1" "$LIVE"; } # use CONF: what the next (re)load reads
ctl() { "$CTL" -s "$T/ctl.sock" "$@"; }
status_offload() { # status_offload KEY
	ctl -j status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["offload"][sys.argv[1]])' "$1"
}
# the last packet id the kernel gave queue 0: one per packet queued
qid() { in_ns gw awk '$1 == 0 { print $8 }' /proc/net/netfilter/nfnetlink_queue; }
ms() { date +%s%3N; }

lab_bg app "$PY" "$here/stream.py" serve $APP4 8000 "$T/ready"
lab_wait_file "$T/ready" 10 || { echo "lab: stream server did not start"; exit 99; }
# client NAME: a new connection web -> app:8000, 15 lines through (about
# 30 segments: past the default OffloadAfterPackets, 8)
client() {
	lab_bg web "$PY" "$here/stream.py" client $APP4 8000 "$T/$1" 120
	stream_wait_more "$T/$1" 0 15 10
}
# short N: N connections web -> app:8000 that read one line and close
# (a handful of segments each, as connrate's)
short() {
	in_ns web "$PY" - $APP4 "$1" <<'PYEOF'
import socket, sys
for i in range(int(sys.argv[2])):
    c = socket.create_connection((sys.argv[1], 8000), timeout=5)
    c.sendall(b"hello\n")
    got = b""
    while not got.endswith(b"\n"):
        d = c.recv(64)
        if not d:
            break
        got += d
    c.close()
print("ok")
PYEOF
}
# offloaded NAME WHAT: the stream goes on (10 lines, a second) while the
# queue sees at most 2 of its packets (one in flight when the mark was set)
offloaded() {
	local c q0 q1
	sleep 0.3
	c=$(stream_count "$T/$1") q0=$(qid)
	if ! stream_wait_more "$T/$1" "$c" 10 5; then
		fail "$2: the stream stopped at $(stream_count "$T/$1") lines"
		return
	fi
	q1=$(qid)
	if [ $((q1 - q0)) -le 2 ]; then
		pass "$2: offloaded (10 lines, $((q1 - q0)) packet(s) queued)"
	else
		fail "$2: not offloaded ($((q1 - q0)) packets queued for 10 lines)"
	fi
}
# cut NAME WHAT: no more than one line after this point
cut() {
	local c
	c=$(stream_count "$T/$1")
	sleep 2
	if [ "$(stream_count "$T/$1")" -le $((c + 1)) ]; then
		pass "$2: the stream cut ($(stream_count "$T/$1") lines, $c at the cut)"
	else
		fail "$2: the stream went on ($c -> $(stream_count "$T/$1") lines)"
	fi
}
SPORT=31000
refused() { # refused WHAT LOG REASON: a new connection web -> app:8000 is refused
	SPORT=$((SPORT + 1))
	local r
	r=$(probe web tcp $APP4 8000 --sport $SPORT)
	if [ "$r" != timeout ]; then
		fail "$1: a new connection got '$r'"
	elif [ -n "$2" ] && ! lab_wait_log "$2" ":$SPORT -> $APP4:8000: $3" 3; then
		fail "$1: no $3 refusal of the new connection in the log"
	else
		pass "$1: a new connection is refused${3:+ ($3)}"
	fi
}

LOG=$T/vpcfwd.log
# ------------------------------------------------------------ offloaded
lab_queue_rules --queue-num 0
in_ns gw sh "$RULES" add
use base
lab_start_vpcfwd "$LOG" -c "$LIVE" || { echo "lab: vpcfwd did not start"; exit 99; }
client s1 || fail "the stream does not flow through vpcfwd"
offloaded s1 "established tracked flow"
check "status: offload.marked >= 1" 1 "$([ "$(status_offload marked)" -ge 1 ] && echo 1)"
check "status: no missed packets with the accept rule" 0 "$(status_offload missed)"
if command -v conntrack >/dev/null; then
	in_ns gw conntrack -L -p tcp --dport 8000 2>/dev/null | grep -q 'mark=1073741824' &&
		pass "the kernel entry carries the mark" || fail "no kernel entry with the mark"
fi
# short connections (fewer than OffloadAfterPackets segments once
# established) are never offered: nothing marked, no baseline read (the
# accounting's counters, logged on SIGUSR1: baselines read + not found or read again)
asked() {
	local n
	n=$(grep -c "offload accounting:" "$LOG")
	kill -USR1 "$VPCFWD_PID"
	for i in $(seq 50); do
		[ "$(grep -c "offload accounting:" "$LOG")" -gt "$n" ] && break
		sleep 0.1
	done
	grep "offload accounting:" "$LOG" | tail -1 |
		sed -n 's/.* \([0-9][0-9]*\) baselines (\([0-9][0-9]*\) not found.*/\1 \2/p' |
		awk '{ print $1 + $2 }'
}
m0=$(status_offload marked) b0=$(asked)
check "short connections work" ok "$(short 5)"
sleep 0.3
check "short connections: none marked (OffloadAfterPackets)" "$m0" "$(status_offload marked)"
check "short connections: no baseline asked for (OffloadAfterPackets)" "${b0:-none}" "$(asked)"

# ------------------------------------------------------------ reload: SG rule removed
use nosg
t0=$(ms)
ctl reload >/dev/null || fail "reload (SG rule removed) refused"
echo "figure: reload with the take-back: $(( $(ms) - t0 )) ms"
lab_wait_log "$LOG" "offload: [1-9][0-9]* flow(s) taken back from the kernel (reload)" 3 &&
	pass "reload: the offloaded flow taken back" ||
	fail "reload: no take-back in the log ($(grep 'offload:' "$LOG" | tail -1))"
offloaded s1 "SG rule removed: the tracked flow survives and"
refused "SG rule removed" "$LOG" ENI_SG_RULES_MISMATCH

# ------------------------------------------------------------ reload: NACL entry removed
use base
ctl reload >/dev/null || fail "reload (base) refused"
offloaded s1 "back to the first configuration"
use nonacl
ctl reload >/dev/null || fail "reload (NACL entry removed) refused"
cut s1 "NACL entry removed: within one packet"
lab_wait_log "$LOG" "10.0.2.10:8000 -> 10.0.1.10:[0-9]*: SUBNET_ACL_RESTRICTION" 3 ||
	lab_wait_log "$LOG" "10.0.1.10:[0-9]* -> 10.0.2.10:8000: SUBNET_ACL_RESTRICTION" 3 &&
	pass "NACL entry removed: the flow's segments refused by the network ACL" ||
	fail "NACL entry removed: no SUBNET_ACL_RESTRICTION refusal"

# ------------------------------------------------------------ clean stop
use base
ctl reload >/dev/null || fail "reload (base) refused"
client s2 || fail "the second stream does not flow"
offloaded s2 "a new flow after the reloads"
lab_stop_vpcfwd
check "SIGTERM: vpcfwd exits 0" 0 "$VPCFWD_STATUS"
grep -q "offload: [1-9][0-9]* flow(s) taken back from the kernel (stop)" "$LOG" &&
	pass "stop: the offloaded flows taken back" || fail "stop: no take-back ($(grep 'offload:' "$LOG" | tail -1))"
cut s2 "stop (fail closed): the flow meets the unbound queue"

# ------------------------------------------------------------ kill -9
lab_start_vpcfwd "$LOG.2" -c "$LIVE" || { echo "lab: vpcfwd did not start"; exit 99; }
client s3 || fail "the third stream does not flow"
offloaded s3 "before kill -9"
kill -9 "$VPCFWD_PID"
wait "$VPCFWD_PID" 2>/dev/null
LAB_PIDS=$(echo "$LAB_PIDS" | tr ' ' '\n' | grep -vx "$VPCFWD_PID" | tr '\n' ' ')
c=$(stream_count "$T/s3")
stream_wait_more "$T/s3" "$c" 10 5 &&
	pass "kill -9: the offloaded flow goes on in the kernel" ||
	fail "kill -9: the offloaded flow stopped at $(stream_count "$T/s3") lines"
refused "kill -9 (fail closed)" "" ""
use strict
lab_start_vpcfwd "$LOG.3" -c "$LIVE" || { echo "lab: vpcfwd did not restart"; exit 99; }
grep -q "offload: [1-9][0-9]* flow(s) taken back from the kernel (start)" "$LOG.3" &&
	pass "start: the flows a killed vpcfwd left offloaded are taken back" ||
	fail "start: no take-back ($(grep 'offload:' "$LOG.3" | tail -1))"
# no state file: the restarted vpcfwd knows nothing of the flow; app's
# segments meet its egress rules and web's are of no tracked connection, as
# without the offload
cut s3 "start without a state file: the tracked-only flow"
lab_stop_vpcfwd
use base

# ------------------------------------------------------------ -u nobody
# CAP_NET_ADMIN alone (the daemon drops the rest) is enough for ctnetlink:
# a SIGHUP reload's take-back works, and the flow is offloaded again
if id nobody >/dev/null 2>&1; then
	chmod 755 "$T"
	chmod -R a+rX "$LIVE"
	lab_start_vpcfwd "$LOG.5" -c "$LIVE" -u nobody || { echo "lab: vpcfwd -u nobody did not start"; exit 99; }
	client s5 || fail "-u nobody: the stream does not flow"
	offloaded s5 "-u nobody"
	kill -HUP "$VPCFWD_PID"
	lab_wait_log "$LOG.5" "offload: [1-9][0-9]* flow(s) taken back from the kernel (reload)" 5 &&
		pass "-u nobody: a reload takes the offloaded flow back (ctnetlink with CAP_NET_ADMIN)" ||
		fail "-u nobody: no take-back ($(grep 'offload:' "$LOG.5" | tail -1))"
	offloaded s5 "-u nobody, after the reload"
	lab_stop_vpcfwd
	grep -q "offload: [1-9][0-9]* flow(s) taken back from the kernel (stop)" "$LOG.5" &&
		pass "-u nobody: the stop takes the flows back" || fail "-u nobody: no take-back at the stop"
fi

# ------------------------------------------------------------ no accept rule
# The mark rule stays (it keeps the kernel tracking flows here): the flow is
# marked in vain and its packets still come, vpcfw_offload_missed_total.
# Then no rule at all: nothing else here makes the kernel track flows, the
# flow has no kernel entry and is never marked, vpcfw_offload_no_conntrack_total.
norules() { # norules NAME LOG WHAT COUNTER
	lab_start_vpcfwd "$2" -c "$LIVE" || { echo "lab: vpcfwd did not start"; exit 99; }
	client "$1" || fail "$3: the stream does not flow"
	sleep 0.3
	local c q0 q1
	c=$(stream_count "$T/$1") q0=$(qid)
	if stream_wait_more "$T/$1" "$c" 10 5; then
		q1=$(qid)
		[ $((q1 - q0)) -ge 10 ] && pass "$3: works, every packet queued ($((q1 - q0)))" ||
			fail "$3: only $((q1 - q0)) packets queued for 10 lines"
	else
		fail "$3: the stream stopped"
	fi
	ctl metrics | grep -q "^$4{queue=\"0\"} [1-9]" &&
		pass "$3: $4 grows" || fail "$3: $(ctl metrics | grep -E 'offload_(missed|no_conntrack)_total\{')"
	status_offload hint | grep -q "accept rule" &&
		pass "$3: the status's hint names the accept rule" || fail "$3: hint '$(status_offload hint)'"
	lab_stop_vpcfwd
}
in_ns gw sh "$RULES" delete
lab_queue_rules --queue-num 0
in_ns gw iptables -t mangle -A POSTROUTING -m mark --mark 0x40000000/0x40000000 -j CONNMARK --or-mark 0x40000000
norules s4 "$LOG.4" "without the accept rule" vpcfw_offload_missed_total
in_ns gw iptables -t mangle -F POSTROUTING
norules s6 "$LOG.6" "without any rule" vpcfw_offload_no_conntrack_total

# ------------------------------------------------------------ the nftables form
# (this kernel may lack nft_queue: the queue statement is left out of the check)
if command -v nft >/dev/null; then
	if sed '/queue num/d' "$top_srcdir/contrib/offload/vpcfw-offload.nft" | in_ns gw nft -c -f - 2>"$T/nft.err"; then
		pass "vpcfw-offload.nft: the kernel takes its rules (queue statement aside)"
	else
		fail "vpcfw-offload.nft: $(cat "$T/nft.err")"
	fi
fi

echo "offload lab: $fails failure(s)"
[ "$fails" -eq 0 ]
