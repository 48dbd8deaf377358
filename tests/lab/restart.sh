#!/bin/bash
# Restart without loss (issue #13 item 1): a long-lived TCP connection whose
# server's segments are admitted only by connection tracking (its security
# group allows no egress: VPC user guide, "security-group-connection-
# tracking": "responses to tracked traffic are allowed regardless of the
# outbound rules") keeps going across SIGTERM + start and across kill -9 +
# start with Vpcfw.StateSyncInterval 1; without a state file the same
# restart cuts it (the control).  A damaged state file is refused and the
# daemon starts empty.  Needs root and network namespaces; exits 77
# (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
. "$here/lib.sh"
lab_begin_ctl

# web (client) and app (server) of the three-tier example
lab_gateway
lab_host web vweb 10.0.1.1 $WEB4/24 2001:db8:1234:1::1 $WEB6/64
lab_host app vapp 10.0.2.1 $APP4/24 2001:db8:1234:2::1 $APP6/64
lab_queue_rules --queue-num 0

# the example, with app's security group allowing no egress at all
conf() { # conf DIR STATEFILE-JSON
	lab_conf_tracked_only "$1"
	cat >"$1/90-vpcfw.json" <<JSON
{"Vpcfw": {"Queues": [0], "ControlSocket": "$T/ctl.sock", $2
  "InterfaceBindings": [
    {"NetworkInterfaceId": "eni-0000000000web01", "Device": "vweb"},
    {"NetworkInterfaceId": "eni-0000000000app01", "Device": "vapp"}]}}
JSON
}
mkdir -p "$T/state"
STATE=$T/state/flows.state
conf "$T/plain" ""
conf "$T/kept" "\"StateFile\": \"$STATE\", \"StateSyncInterval\": 1,"

lab_bg app "$PY" "$here/stream.py" serve $APP4 8000 "$T/ready"
lab_wait_file "$T/ready" 10 || { echo "lab: stream server did not start"; exit 99; }

client() { # client NAME: a new connection web -> app:8000
	lab_bg web "$PY" "$here/stream.py" client $APP4 8000 "$T/$1" 120
	stream_wait_more "$T/$1" 0 5 10
}
ms() { date +%s%3N; }

LOG=$T/vpcfwd.log
# ------------------------------------------------------------ the control
# Without a state file, a restart forgets the flow: the server's next
# segments meet app's security group, which allows no egress.
lab_start_vpcfwd "$LOG" -c "$T/plain" || { echo "lab: vpcfwd did not start"; exit 99; }
client c0 || fail "control: the stream does not flow through vpcfwd"
lab_stop_vpcfwd
c=$(stream_count "$T/c0")
lab_start_vpcfwd "$LOG.2" -c "$T/plain" || { echo "lab: vpcfwd did not restart"; exit 99; }
if stream_wait_more "$T/c0" "$c" 5 6; then
	fail "control: without a state file the tracked-only stream survived the restart (the lab tests nothing)"
else
	pass "control: without a state file a restart cuts the tracked-only stream"
fi
lab_wait_log "$LOG.2" "10.0.2.10:8000 -> 10.0.1.10:[0-9]*: ENI_SG_RULES_MISMATCH" 5 &&
	pass "control: the server's segments refused by app's egress rules" ||
	fail "control: no ENI_SG_RULES_MISMATCH refusal of the server's segments"
lab_stop_vpcfwd

# ------------------------------------------------------------ SIGTERM + start
lab_start_vpcfwd "$LOG.3" -c "$T/kept" || { echo "lab: vpcfwd did not start"; exit 99; }
client c1 || fail "SIGTERM: the stream does not flow through vpcfwd"
lab_stop_vpcfwd
check "SIGTERM: vpcfwd exits 0" 0 "$VPCFWD_STATUS"
grep -q "StateFile $STATE: [1-9][0-9]* flows saved" "$LOG.3" &&
	pass "SIGTERM: the flow table saved" || fail "SIGTERM: no 'flows saved' in the log"
[ -e "$STATE.tmp" ] && fail "SIGTERM: $STATE.tmp left behind" || pass "SIGTERM: no temporary left"
c=$(stream_count "$T/c1")
t0=$(ms)
lab_start_vpcfwd "$LOG.4" -c "$T/kept" || { echo "lab: vpcfwd did not restart"; exit 99; }
grep -q "flows restored" "$LOG.4" && ! grep -q " 0 flows restored" "$LOG.4" &&
	pass "SIGTERM: flows restored at start" || fail "SIGTERM: nothing restored ($(grep StateFile "$LOG.4"))"
if stream_wait_more "$T/c1" "$c" 5 20; then
	pass "SIGTERM + start: the tracked-only stream keeps going"
	echo "figure: SIGTERM + start: $(( $(ms) - t0 )) ms from the new start to 5 more lines"
else
	fail "SIGTERM + start: the stream stopped at $(stream_count "$T/c1") lines"
fi
st=$("$CTL" -s "$T/ctl.sock" -j status 2>&1)
echo "$st" | "$PY" -c '
import json, sys
s = json.load(sys.stdin)["state_file"]
assert s["restored"] >= 1 and s["age_seconds"] >= 0 and not s["refused"], s
' && pass "status: the state file's age and the flows restored" || fail "status: state_file: $st"
"$CTL" -s "$T/ctl.sock" metrics | grep -q '^vpcfw_state_flows_restored [1-9]' &&
	pass "metrics: vpcfw_state_flows_restored" || fail "metrics: no vpcfw_state_flows_restored"

# ------------------------------------------------------------ kill -9 + start
# StateSyncInterval 1: the flow is in a snapshot at most a second old
sleep 2.5
kill -9 "$VPCFWD_PID"
wait "$VPCFWD_PID" 2>/dev/null
LAB_PIDS=$(echo "$LAB_PIDS" | tr ' ' '\n' | grep -vx "$VPCFWD_PID" | tr '\n' ' ')
c=$(stream_count "$T/c1")
t0=$(ms)
lab_start_vpcfwd "$LOG.5" -c "$T/kept" || { echo "lab: vpcfwd did not restart"; exit 99; }
grep -q "flows restored" "$LOG.5" && ! grep -q " 0 flows restored" "$LOG.5" &&
	pass "kill -9: flows restored from the last snapshot" ||
	fail "kill -9: nothing restored ($(grep StateFile "$LOG.5"))"
if stream_wait_more "$T/c1" "$c" 5 20; then
	pass "kill -9 + start: the tracked-only stream keeps going"
	echo "figure: kill -9 + start: $(( $(ms) - t0 )) ms from the new start to 5 more lines"
else
	fail "kill -9 + start: the stream stopped at $(stream_count "$T/c1") lines"
fi
lab_stop_vpcfwd

# ------------------------------------------------------------ damaged files
# truncated: refused with the file named, the daemon starts empty
size=$(stat -c %s "$STATE")
head -c $((size - 5)) "$STATE" >"$T/cut" && cat "$T/cut" >"$STATE"
lab_start_vpcfwd "$LOG.6" -c "$T/kept" || fail "truncated state file: vpcfwd did not start"
grep -q "StateFile $STATE refused: corrupt or truncated" "$LOG.6" &&
	pass "truncated state file refused, named, start empty" ||
	fail "truncated state file: $(grep StateFile "$LOG.6")"
check "truncated state file: no flow tracked" 0 \
	"$("$CTL" -s "$T/ctl.sock" -j status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["conntrack_used"])')"
lab_stop_vpcfwd
# from another program: refused too
printf 'not a state file, but long enough to hold a header: %064d\n' 0 >"$STATE"
lab_start_vpcfwd "$LOG.7" -c "$T/kept" || fail "foreign state file: vpcfwd did not start"
grep -q "StateFile $STATE refused: .*bad magic" "$LOG.7" &&
	pass "foreign state file refused" || fail "foreign state file: $(grep StateFile "$LOG.7")"
lab_stop_vpcfwd

echo "restart lab: $fails failure(s)"
[ "$fails" -eq 0 ]
