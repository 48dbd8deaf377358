#!/bin/bash
# Lab tests: vpcfwd on the real kernel path (NFQUEUE in a gateway network
# namespace) with real TCP, UDP and ICMP in both families.  Needs root and
# network namespaces; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$VPCFWD" ] || { echo "lab: no vpcfwd at $VPCFWD, skipped"; exit 77; }
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}

T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP

fails=0

lab_three_tier || { echo "lab: cannot build the topology"; exit 99; }
lab_servers "$T" || { echo "lab: servers did not start"; exit 99; }
lab_config "$top_srcdir/conf/three-tier" "$T/conf"
LOG=$T/vpcfwd.log

# ---------------------------------------------------------------- the daemon down
# No listener on the queue: the kernel drops, unless the rule says
# --queue-bypass.
lab_queue_rules --queue-num 0
check "daemon down, plain rule: dropped" timeout "$(probe inet tcp $WEB4 80)"
lab_queue_rules --queue-num 0 --queue-bypass
check "daemon down, --queue-bypass: passes unfiltered" ok "$(probe inet tcp $WEB4 22)"

# ---------------------------------------------------------------- every path
lab_queue_rules --queue-num 0
# a unix socket only: no traffic leaves this namespace
"$PY" "$here/probe.py" notify "$T/notify.sock" "$T/notify.out" &
LAB_PIDS="$LAB_PIDS $!"
for _ in $(seq 40); do [ -S "$T/notify.sock" ] && break; sleep 0.05; done
NOTIFY_SOCKET=$T/notify.sock lab_start_vpcfwd "$LOG" -c "$T/conf" --flow-log-dir "$T/flowlogs" ||
	{ echo "lab: vpcfwd did not start"; exit 99; }
lab_wait_file "$T/notify.out" 2
check "notify: READY=1 at start" READY=1 "$(grep -m1 -x READY=1 "$T/notify.out")"

echo "--- the three-tier paths"
lab_paths | lab_matrix "$LOG"
bad=$?
check "three-tier: every path as in AWS" 0 $bad

# ---------------------------------------------------------------- source/destination check
probe web spoof 10.0.1.99 $INET4 5000 --sport 30001 >/dev/null
lab_wait_log "$LOG" "10.0.1.99:30001 -> " 2
check "spoofed IPv4 source from web refused" ENI_SOURCE_DEST_CHECK_RESTRICTION \
	"$(grep -m1 -o '10.0.1.99:30001 -> [^ ]* [A-Z_]*' "$LOG" | awk '{print $4}')"
probe web spoof 2001:db8:1234:1::99 $INET6 5000 --sport 30002 >/dev/null
lab_wait_log "$LOG" "1::99:30002 -> " 2
check "spoofed IPv6 source from web refused" ENI_SOURCE_DEST_CHECK_RESTRICTION \
	"$(grep -m1 -o '1::99:30002 -> [^ ]* [A-Z_]*' "$LOG" | awk '{print $4}')"
check "a forged source on an unbound link (internet) is judged by the rules" ok \
	"$(probe inet tcp $WEB4 80 --sport 30003)"

# ---------------------------------------------------------------- reload
# An untracked flow (80 from 0.0.0.0/0 with open egress) and a tracked one
# (22 from the corporate /24) are open when the rules admitting both go.
mkfifo "$T/h80.in" "$T/h22.in"
probe inet hold $WEB4 80 --sport 30080 <"$T/h80.in" >"$T/h80.out" &
LAB_PIDS="$LAB_PIDS $!"
probe corp hold $WEB4 22 --sport 30022 <"$T/h22.in" >"$T/h22.out" &
LAB_PIDS="$LAB_PIDS $!"
exec 7>"$T/h80.in" 8>"$T/h22.in"
say() { # say FD OUTFILE LINE -> the answer to the exchange
	local n
	n=$(($(wc -l <"$2") + 1))
	echo x >&"$1"
	for _ in $(seq 60); do
		[ "$(wc -l <"$2")" -ge $n ] && break
		sleep 0.05
	done
	sed -n "${n}p" "$2"
}
check "before reload: untracked flow (web:80) open" ok "$(say 7 "$T/h80.out")"
check "before reload: tracked flow (web:22) open" ok "$(say 8 "$T/h22.out")"

"$PY" - "$T/conf/40-security-groups.json" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for g in d['SecurityGroups']:
    if g['GroupName'] == 'web':
        g['IpPermissions'] = [r for r in g['IpPermissions'] if r.get('FromPort') not in (80, 22)]
json.dump(d, open(p, 'w'), indent=1)
PY
: >"$T/notify.out"
kill -HUP "$VPCFWD_PID"
lab_wait_log "$LOG" "configuration 2 in force" 5 || fail "reload: new configuration not in force"
check "reload: tracked flow survives the rule's removal" ok "$(say 8 "$T/h22.out")"
check "reload: untracked flow is cut at once" timeout "$(say 7 "$T/h80.out")"
# refused by vpcfwd under the new rules, with its reason: a reload that never
# swapped the policy, or a probe failing for another cause, does not pass
check "reload: a new connection is judged by the new rules" timeout \
	"$(probe corp tcp $WEB4 22 --sport 30023)"
lab_wait_log "$LOG" ":30023 -> " 2
check "reload: ... refused by vpcfwd's new rules (reason logged)" ENI_SG_RULES_MISMATCH \
	"$(lab_reason "$LOG" ":30023 -> ")"
check "reload: rules still present still admit" ok "$(probe inet tcp $WEB4 443)"
check "notify: RELOADING=1 on SIGHUP" RELOADING=1 "$(grep -m1 -x RELOADING=1 "$T/notify.out")"
check "notify: MONOTONIC_USEC with RELOADING=1" yes \
	"$(grep -q '^MONOTONIC_USEC=[0-9][0-9]*$' "$T/notify.out" && echo yes)"
check "notify: READY=1 after the reload" READY=1 "$(grep -x READY=1 "$T/notify.out" | tail -1)"

# A broken configuration changes nothing.
echo '{ "SecurityGroups": [ {' >"$T/conf/40-security-groups.json"
kill -HUP "$VPCFWD_PID"
lab_wait_log "$LOG" "reload refused" 5
check "broken reload: refused and logged" yes "$(grep -q 'reload refused' "$LOG" && echo yes)"
check "broken reload: its errors are logged" yes \
	"$(grep -q 'error: .*40-security-groups.json' "$LOG" && echo yes)"
check "broken reload: the daemon still runs" yes "$(kill -0 "$VPCFWD_PID" 2>/dev/null && echo yes)"
check "broken reload: tracked flow still open" ok "$(say 8 "$T/h22.out")"
check "broken reload: the running rules stay (443 admitted)" ok "$(probe inet tcp $WEB4 443)"
check "broken reload: the running rules stay (22 refused)" timeout "$(probe corp tcp $WEB4 22)"
exec 7>&- 8>&-

# ---------------------------------------------------------------- stop
lab_stop_vpcfwd
check "SIGTERM: exit status 0" 0 "$VPCFWD_STATUS"
check "SIGTERM: counters logged at exit" yes "$(grep -q 'at exit: .* packets' "$LOG" && echo yes)"
check "notify: STOPPING=1" STOPPING=1 "$(grep -m1 -x STOPPING=1 "$T/notify.out")"
# Flow logs of the live traffic, written when the daemon stops: the SSH
# attempt from the internet (the matrix's third path) as a REJECT record of
# web's interface, in the default format.
flow_records() { find "$T/flowlogs" -name '*.gz' -exec zcat {} + 2>/dev/null; }
check "flow logs: the refused SSH attempt is a REJECT record" yes \
	"$(flow_records | grep -q "eni-0000000000web01 $INET4 $WEB4 20003 22 6 .* REJECT OK" && echo yes)"
check "flow logs: the web -> app call is an ACCEPT record" yes \
	"$(flow_records | grep -q "eni-0000000000app01 $WEB4 $APP4 20008 8000 6 .* ACCEPT OK" && echo yes)"
lab_config "$top_srcdir/conf/three-tier" "$T/conf"

# ---------------------------------------------------------------- two queues
# Both directions of a flow must reach the same worker, or tracked replies
# would be refused by a worker that never saw the flow start.
two_queues() { # NAME: runs flows that need tracking on many address pairs
	local name=$1 ok=yes
	for pair in "web $INET4" "app $INET4" "db $INET4" "web $INET6" "app $INET6" "db $INET6" \
		    "corp $WEB4" "corp $APP4" "corp $DB4"; do
		set -- $pair
		case $1 in
		corp) [ "$(probe corp tcp "$2" 22)" = ok ] || ok="no ($1 -> $2 tcp)";;
		*) [ "$(probe "$1" udp "$2" 53)" = ok ] || ok="no ($1 -> $2 udp)"
		   [ "$(probe "$1" icmp "$2")" = ok ] || ok="no ($1 -> $2 icmp)";;
		esac
	done
	check "$name: tracked flows work on every pair" yes "$ok"
	local q0 q1
	q0=$(in_ns gw awk '$1 == 0 {print $8}' /proc/net/netfilter/nfnetlink_queue)
	q1=$(in_ns gw awk '$1 == 1 {print $8}' /proc/net/netfilter/nfnetlink_queue)
	check "$name: both queues carried packets" yes \
		"$([ "${q0:-0}" -gt 0 ] && [ "${q1:-0}" -gt 0 ] && echo yes || echo "no: $q0/$q1")"
}

lab_queue_rules --queue-balance 0:1
lab_start_vpcfwd "$LOG" -c "$T/conf" -q 0-1 || { echo "lab: vpcfwd -q 0-1 did not start"; exit 99; }
check "two queues: two workers" yes "$(grep -q 'with 2 worker' "$LOG" && echo yes)"
two_queues "two queues (--queue-balance)"
lab_stop_vpcfwd
check "two queues: exit status 0" 0 "$VPCFWD_STATUS"

# Port entropy with a symmetric mark: HMARK hashes the ordered 5-tuple.
for ipt in iptables ip6tables; do
	in_ns gw $ipt -F FORWARD
	in_ns gw $ipt -A FORWARD -j HMARK --hmark-tuple src,dst,sport,dport,proto \
		--hmark-mod 2 --hmark-rnd 0x5eed
	in_ns gw $ipt -A FORWARD -m mark --mark 0 -j NFQUEUE --queue-num 0
	in_ns gw $ipt -A FORWARD -m mark --mark 1 -j NFQUEUE --queue-num 1
done
lab_start_vpcfwd "$LOG" -c "$T/conf" -q 0-1 || { echo "lab: vpcfwd -q 0-1 did not start"; exit 99; }
two_queues "two queues (HMARK)"
lab_stop_vpcfwd

# ---------------------------------------------------------------- a second reader
lab_queue_rules --queue-num 0
lab_start_vpcfwd "$LOG" -c "$T/conf" || exit 99
ip netns exec "$(lab_ns gw)" "$VPCFWD" -f -c "$T/conf" -q 0 2>"$T/second.log"
check "a second vpcfwd on a served queue fails" 1 $?
check "... and says why" yes "$(grep -q 'another process' "$T/second.log" && echo yes)"
lab_stop_vpcfwd

# ---------------------------------------------------------------- -u nobody
# As nobody with CAP_NET_ADMIN alone it still decides and reloads (the
# configuration readable by nobody, as -u requires).
chmod 755 "$T"
lab_config "$top_srcdir/conf/three-tier" "$T/conf-u"
chmod -R a+rX "$T/conf-u"
lab_queue_rules --queue-num 0
lab_start_vpcfwd "$LOG" -c "$T/conf-u" -u nobody || { echo "lab: vpcfwd -u nobody did not start"; exit 99; }
check "-u nobody: runs as nobody" nobody "$(ps -o user= -p "$VPCFWD_PID" | tr -d ' ')"
# libcap-ng: CAP_NET_ADMIN alone (effective and permitted), nothing
# inheritable, the bounding and ambient sets empty (no mirroring here, so no
# CAP_NET_RAW)
check "-u nobody: CAP_NET_ADMIN alone, bounding and ambient sets empty" \
	"Inh=0000000000000000 Prm=0000000000001000 Eff=0000000000001000 Bnd=0000000000000000 Amb=0000000000000000" \
	"$(lab_caps "$VPCFWD_PID")"
check "-u nobody: supplementary groups are nobody's" "$(id -G nobody | tr ' ' '\n' | sort -n | tr '\n' ' ')" \
	"$(awk '/^Groups:/ {$1=""; print}' "/proc/$VPCFWD_PID/status" | tr ' \t' '\n\n' | grep . | sort -n | tr '\n' ' ')"
check "-u nobody: decides (web:80 admitted)" ok "$(probe inet tcp $WEB4 80)"
check "-u nobody: decides (web:22 from the internet refused)" timeout "$(probe inet tcp $WEB4 22)"
"$PY" - "$T/conf-u/40-security-groups.json" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for g in d['SecurityGroups']:
    if g['GroupName'] == 'web':
        g['IpPermissions'] = [r for r in g['IpPermissions'] if r.get('FromPort') != 80]
json.dump(d, open(p, 'w'), indent=1)
PY
kill -HUP "$VPCFWD_PID"
lab_wait_log "$LOG" "configuration 2 in force" 5
check "-u nobody: reload" yes "$(grep -q 'configuration 2 in force' "$LOG" && echo yes)"
check "-u nobody: the reloaded rules apply (web:80 refused)" timeout \
	"$(probe inet tcp $WEB4 80 --sport 30081)"
lab_wait_log "$LOG" ":30081 -> " 2
check "-u nobody: ... refused by vpcfwd's reloaded rules (reason logged)" ENI_SG_RULES_MISMATCH \
	"$(lab_reason "$LOG" ":30081 -> ")"
lab_stop_vpcfwd
check "-u nobody: exit status 0" 0 "$VPCFWD_STATUS"

# ---------------------------------------------------------------- as the systemd unit starts it
# User= with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW (setpriv does the
# same): without mirroring the daemon keeps CAP_NET_ADMIN alone and empties
# the inheritable and ambient sets, so nothing it might start inherits them.
if command -v setpriv >/dev/null; then
	lab_queue_rules --queue-num 0
	LAB_WRAP="setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all,+net_admin,+net_raw --ambient-caps=+net_admin,+net_raw --bounding-set=-all,+net_admin,+net_raw" \
		lab_start_vpcfwd "$LOG" -c "$T/conf-u" ||
		{ echo "lab: vpcfwd with ambient capabilities did not start"; exit 99; }
	check "ambient start: runs as nobody" nobody "$(ps -o user= -p "$VPCFWD_PID" | tr -d ' ')"
	check "ambient start: CAP_NET_ADMIN alone, nothing inheritable or ambient" \
		"Inh=0000000000000000 Prm=0000000000001000 Eff=0000000000001000 Bnd=0000000000003000 Amb=0000000000000000" \
		"$(lab_caps "$VPCFWD_PID")"
	check "ambient start: decides (web:443 admitted)" ok "$(probe inet tcp $WEB4 443)"
	check "ambient start: decides (web:22 from the internet refused)" timeout "$(probe inet tcp $WEB4 22)"
	lab_stop_vpcfwd
	check "ambient start: exit status 0" 0 "$VPCFWD_STATUS"
else
	echo "SKIP: ambient start (no setpriv)"
fi

# ---------------------------------------------------------------- flow logs
# Their own topology and about two minutes: windows, rotation, SIGTERM, SKIPDATA.
VPCFWD=$VPCFWD top_srcdir=$top_srcdir "$here/flowlog.sh"
check "flow logs of the live daemon (tests/lab/flowlog.sh)" 0 $?

echo "lab: $fails failure(s)"
[ $fails = 0 ]
