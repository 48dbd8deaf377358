#!/bin/bash
# Flow logs in flight across a restart (issue #13 item 1): the state file
# keeps each worker's open capture windows, so a window's record covers the
# packets before and after a restart.  A counted UDP stream web -> app:9000
# (tests/lab/udpcount.py: the receiver's count is every datagram vpcfwd
# accepted), a 60 s flow log delivered CloudWatch-style (JSON lines, flushed
# as written), Vpcfw.StateSyncInterval 1:
#   1. SIGTERM + start inside one window: the stop saves the window instead
#      of writing it (no record yet), the start puts it back, and the one
#      record per interface counts exactly the datagrams received;
#   2. kill -9 + start inside the window: one record per interface, short of
#      the datagrams received by at most what a StateSyncInterval (1 s, and
#      the workers' answer) carries, never more than received;
#   3. stopped again, started after the window's end: its records are
#      written at the start with their own start and end.
# Takes 40 to 100 s (the windows are aligned to the minute).  Needs root and
# network namespaces; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
. "$here/lib.sh"
lab_begin_ctl
WEB=eni-0000000000web01 APP=eni-0000000000app01
RATE=50                 # datagrams a second
SYNC=1                  # Vpcfw.StateSyncInterval

lab_gateway
lab_host web vweb 10.0.1.1 $WEB4/24 2001:db8:1234:1::1 $WEB6/64
lab_host app vapp 10.0.2.1 $APP4/24 2001:db8:1234:2::1 $APP6/64
lab_queue_rules --queue-num 0

# the three tiers, app admitting UDP 9000 from web; the flow log; the state
FL=$T/flowlogs
STATE=$T/state/flows.state
mkdir -p "$T/state"
lab_config "$top_srcdir/conf/three-tier" "$T/conf"
"$PY" - "$T/conf/40-security-groups.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for g in d["SecurityGroups"]:
    if g["GroupId"] == "sg-0000000000000app":
        g["IpPermissions"].append({"IpProtocol": "udp", "FromPort": 9000, "ToPort": 9000,
            "UserIdGroupPairs": [{"GroupId": "sg-0000000000000web"}]})
json.dump(d, open(p, "w"), indent=1)
PYEOF
cat >"$T/conf/60-flow-logs.json" <<JSON
{"FlowLogs": [
  {"FlowLogId": "fl-0000000000000c01", "ResourceId": "vpc-0a1b2c3d4e5f60001",
   "ResourceType": "VPC", "TrafficType": "ALL", "MaxAggregationInterval": 60,
   "LogDestinationType": "cloud-watch-logs", "LogGroupName": "lab",
   "LogFormat": "\${interface-id} \${srcport} \${dstport} \${protocol} \${packets} \${start} \${end} \${action} \${flow-direction} \${log-status}"}]}
JSON
cat >"$T/conf/95-state.json" <<JSON
{"Vpcfw": {"FlowLogDirectory": "$FL", "StateFile": "$STATE", "StateSyncInterval": $SYNC,
  "ControlSocket": "$T/ctl.sock"}}
JSON
"$VPCFWD" --check-config -c "$T/conf" >"$T/check.out" 2>&1 ||
	{ cat "$T/check.out"; echo "lab: the configuration does not load"; exit 99; }

COUNTS=$T/counts
lab_bg app "$PY" "$here/udpcount.py" recv $APP4 9000 "$COUNTS" "$T/ready"
lab_wait_file "$T/ready" 10 || { echo "lab: receiver did not start"; exit 99; }

received() { # received SPORT: datagrams app received from it
	awk -v p="$1" '$1 == p { print $2; f = 1 } END { if (!f) print 0 }' "$COUNTS"
}
sender() { # sender SPORT: starts a stream; stop_sender SPORT ends it
	rm -f "$T/stop-$1" "$T/sent-$1"
	lab_bg web "$PY" "$here/udpcount.py" send $APP4 9000 "$1" $RATE "$T/stop-$1" "$T/sent-$1"
}
stop_sender() {
	touch "$T/stop-$1"
	lab_wait_file "$T/sent-$1" 5
	sleep 0.5       # the last datagrams in flight
}
# records SPORT: "INTERFACE PACKETS START END" of the OK records from SPORT
records() {
	"$PY" - "$FL" "$1" <<'PY'
import json, os, sys
top, sport = sys.argv[1], sys.argv[2]
for d, _, files in os.walk(top):
    for f in sorted(files):
        if not f.endswith(".jsonl"):
            continue
        for line in open(os.path.join(d, f)):
            m = json.loads(line)["message"].split()
            if m[1] == sport and m[2] == "9000" and m[-1] == "OK":
                print(m[0], m[4], m[5], m[6])
PY
}
kill9() {
	kill -9 "$VPCFWD_PID"
	wait "$VPCFWD_PID" 2>/dev/null
	LAB_PIDS=$(echo "$LAB_PIDS" | tr ' ' '\n' | grep -vx "$VPCFWD_PID" | tr '\n' ' ')
}

# both phases inside one capture window: start in its first half
s=$(date +%s)
[ $((s % 60)) -le 28 ] || sleep $((60 - s % 60 + 1))
window=$(( $(date +%s) / 60 * 60 ))

# ---------------------------------------------------------------- 1. SIGTERM
LOG=$T/vpcfwd.log
lab_start_vpcfwd "$LOG.1" -c "$T/conf" || { echo "lab: vpcfwd did not start"; exit 99; }
sender 41001
sleep 4
lab_stop_vpcfwd
check "SIGTERM: vpcfwd exits 0" 0 "$VPCFWD_STATUS"
grep -q "flows saved, and [1-9][0-9]* flow-log entries of open capture windows" "$LOG.1" &&
	pass "SIGTERM: the open window's entries saved" ||
	fail "SIGTERM: no flow-log entries saved ($(grep StateFile "$LOG.1"))"
check "SIGTERM: no record written for the saved window" "" "$(records 41001)"
lab_start_vpcfwd "$LOG.2" -c "$T/conf" || { echo "lab: vpcfwd did not restart"; exit 99; }
grep -q "flow logs: [1-9][0-9]* entries of open capture windows restored (1 windows go on" \
	"$LOG.2" && pass "SIGTERM + start: the window restored" ||
	fail "SIGTERM + start: $(grep 'flow logs:' "$LOG.2")"
"$CTL" -s "$T/ctl.sock" metrics | grep -q '^vpcfw_state_flowlog_entries{what="restored"} [1-9]' &&
	pass "metrics: vpcfw_state_flowlog_entries restored" ||
	fail "metrics: $("$CTL" -s "$T/ctl.sock" metrics | grep flowlog_entries)"
sleep 4
stop_sender 41001
r1=$(received 41001)

# ---------------------------------------------------------------- 2. kill -9
sender 41002
sleep 3
kill9
lab_start_vpcfwd "$LOG.3" -c "$T/conf" || { echo "lab: vpcfwd did not restart"; exit 99; }
grep -q "flow logs: [1-9][0-9]* entries of open capture windows restored (1 windows go on" \
	"$LOG.3" && pass "kill -9 + start: the window restored from the last snapshot" ||
	fail "kill -9 + start: $(grep 'flow logs:' "$LOG.3")"
sleep 3
stop_sender 41002
r2=$(received 41002)
lab_stop_vpcfwd
now=$(date +%s)
[ "$now" -lt $((window + 60)) ] && pass "both restarts inside the window $window" ||
	fail "the phases overran the window ($now >= $((window + 60))): the lab tests less"

# ---------------------------------------------------------------- 3. after the window
sleep $((window + 62 - $(date +%s)))
lab_start_vpcfwd "$LOG.4" -c "$T/conf" || { echo "lab: vpcfwd did not restart"; exit 99; }
grep -q "0 windows go on, 1 ended meanwhile: written now" "$LOG.4" &&
	pass "started after the window's end: it is written at the start" ||
	fail "after the window: $(grep 'flow logs:' "$LOG.4")"
sleep 1
lab_stop_vpcfwd

records 41001 >"$T/rec1"
records 41002 >"$T/rec2"
echo "SIGTERM phase: $r1 datagrams received; records:"; sed 's/^/  /' "$T/rec1"
echo "kill -9 phase: $r2 datagrams received; records:"; sed 's/^/  /' "$T/rec2"
for ifc in $WEB $APP; do
	check "SIGTERM: one record at $ifc for the window (none split, none twice)" 1 \
		"$(grep -c "^$ifc " "$T/rec1")"
	check "SIGTERM: the record at $ifc counts every datagram received" "$r1" \
		"$(awk -v i=$ifc '$1 == i { print $2 }' "$T/rec1")"
	check "SIGTERM: the record at $ifc starts and ends in its window" 1 \
		"$(awk -v i=$ifc -v w=$window '$1 == i && $3 >= w && $4 < w + 60 { n++ } END { print n + 0 }' "$T/rec1")"
	check "kill -9: one record at $ifc for the window" 1 "$(grep -c "^$ifc " "$T/rec2")"
	p=$(awk -v i=$ifc '$1 == i { print $2 }' "$T/rec2")
	lost=$(( r2 - ${p:-0} ))
	bound=$(( RATE * SYNC * 2 ))
	if [ -n "$p" ] && [ "$lost" -ge 0 ] && [ "$lost" -le "$bound" ]; then
		pass "kill -9: the record at $ifc: $p of $r2 datagrams ($lost lost, at most $bound: twice ${SYNC} s of $RATE/s, for the snapshot's own latency)"
	else
		fail "kill -9: the record at $ifc: '${p}' of $r2 datagrams (at most $bound lost, none counted twice)"
	fi
	echo "figure: kill -9: $lost datagrams of $r2 missing from the record at $ifc (StateSyncInterval $SYNC s, $RATE/s)"
done
size=$(stat -c %s "$STATE")
echo "figure: state file after the last stop: $size bytes"

echo "restart-flowlog lab: $fails failure(s)"
[ "$fails" -eq 0 ]
