#!/bin/bash
# Blind resets on the real kernel path (issue #9 item 2, SPEC §4: TCP state
# follows nf_conntrack's window checks, RFC 5961).  A long-lived TCP
# connection web -> app:8000 whose server's segments are admitted only by
# connection tracking (app's security group allows no egress), then, forged
# from web's link with scapy:
#   1. a RST at a sequence number far outside the window (a blind RST):
#      dropped as CONNTRACK_INVALID, tcp_invalid counted, the flow stays
#      ESTABLISHED and the stream keeps going;
#   2. a RST inside the window but not at the expected number: passed on
#      (the host answers it with a challenge ACK), tcp_rst_ignored counted,
#      the flow and the stream go on;
#   3. the RST at the exact expected number: passed, the tracking closes
#      (CLOSE) and the stream stops.
# Needs root, network namespaces and scapy; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$VPCFWD" ] && [ -x "$CTL" ] || { echo "lab: no vpcfwd/vpcfwctl, skipped"; exit 77; }
"$PY" -c 'import scapy' 2>/dev/null || { echo "lab: no python3-scapy, skipped"; exit 77; }

T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP

fails=0

lab_gateway
lab_host web vweb 10.0.1.1 $WEB4/24 2001:db8:1234:1::1 $WEB6/64
lab_host app vapp 10.0.2.1 $APP4/24 2001:db8:1234:2::1 $APP6/64
lab_queue_rules --queue-num 0

# the example, with app's security group allowing no egress at all
lab_conf_tracked_only "$T/conf"
cat >"$T/conf/90-vpcfw.json" <<JSON
{"Vpcfw": {"Queues": [0], "ControlSocket": "$T/ctl.sock",
  "InterfaceBindings": [
    {"NetworkInterfaceId": "eni-0000000000web01", "Device": "vweb"},
    {"NetworkInterfaceId": "eni-0000000000app01", "Device": "vapp"}]}}
JSON

lab_bg app "$PY" "$here/stream.py" serve $APP4 8000 "$T/ready"
lab_wait_file "$T/ready" 10 || { echo "lab: stream server did not start"; exit 99; }

ctl() { "$CTL" -s "$T/ctl.sock" "$@"; }
# conntrack COUNTER: a counter of the stats' conntrack section
conntrack() {
	ctl -j stats | "$PY" -c "import json,sys; print(json.load(sys.stdin)['conntrack']['$1'])"
}
# states: the TCP states of the flow web:PORT -> app:8000, at each interface
states() {
	ctl -j flows -p "$PORT" | "$PY" -c "
import json, sys
f = [x for x in json.load(sys.stdin)['flows'] if x['sport'] == $PORT and x['dport'] == 8000]
print(' '.join(sorted('%s=%s' % (x['eni'], x['tcp_state']) for x in f)) or 'none')"
}
both() { echo "eni-0000000000app01=$1 eni-0000000000web01=$1"; }

LOG=$T/vpcfwd.log
lab_start_vpcfwd "$LOG" -c "$T/conf" || { echo "lab: vpcfwd did not start"; exit 99; }
lab_bg web "$PY" "$here/stream.py" client $APP4 8000 "$T/c" 120
stream_wait_more "$T/c" 0 5 10 || { fail "the stream does not flow through vpcfwd"; exit 1; }
PORT=$(in_ns web ss -Htn state established "( dport = :8000 )" | awk '{split($3, a, ":"); print a[2]; exit}')
[ -n "$PORT" ] || { fail "no established connection to app:8000 seen in web"; exit 1; }
check "the connection is tracked at web and at app" "$(both ESTABLISHED)" "$(states)"

# ------------------------------------------------------------ 1. blind RST
inv0=$(conntrack tcp_invalid)
in_ns web "$PY" "$here/forge.py" rst $WEB4 $APP4 "$PORT" 8000 12345 >/dev/null ||
	fail "blind RST: scapy could not send"
lab_wait_log "$LOG" "REJECT tcp $WEB4:$PORT -> $APP4:8000: CONNTRACK_INVALID conntrack" 5 &&
	pass "blind RST: refused as CONNTRACK_INVALID" ||
	fail "blind RST: no CONNTRACK_INVALID refusal logged ($(grep -c REJECT "$LOG") refusals)"
inv1=$(conntrack tcp_invalid)
[ "$inv1" -gt "$inv0" ] && pass "blind RST: tcp_invalid $inv0 -> $inv1" ||
	fail "blind RST: tcp_invalid did not go up ($inv0 -> $inv1)"
check "blind RST: the flow stays ESTABLISHED" "$(both ESTABLISHED)" "$(states)"
c=$(stream_count "$T/c")
# (this alone would not tell: a flow in CLOSE is refreshed by every
# segment and keeps admitting them, as nf_conntrack's does; the state above
# is what a blind RST must not change)
stream_wait_more "$T/c" "$c" 10 10 && pass "blind RST: the tracked-only stream keeps going" ||
	fail "blind RST: the stream stopped at $(stream_count "$T/c") lines"

# ------------------------------------------------------------ 2. in the window, not exact
ign0=$(conntrack tcp_rst_ignored)
in_ns web "$PY" "$here/forge.py" rst-at eth0 $WEB4 $APP4 "$PORT" 8000 1000 >/dev/null ||
	fail "in-window RST: no segment of the stream seen to aim at"
i=0
until [ "$(conntrack tcp_rst_ignored)" -gt "$ign0" ] || [ $i -ge 40 ]; do
	i=$((i + 1))
	sleep 0.05
done
ign1=$(conntrack tcp_rst_ignored)
[ "$ign1" -gt "$ign0" ] && pass "in-window RST: passed on, tcp_rst_ignored $ign0 -> $ign1" ||
	fail "in-window RST: tcp_rst_ignored did not go up ($ign0 -> $ign1)"
check "in-window RST: the flow stays ESTABLISHED" "$(both ESTABLISHED)" "$(states)"
c=$(stream_count "$T/c")
stream_wait_more "$T/c" "$c" 10 10 && pass "in-window RST: the stream keeps going (the host's challenge ACK)" ||
	fail "in-window RST: the stream stopped at $(stream_count "$T/c") lines"

# ------------------------------------------------------------ 3. the exact RST
inv2=$(conntrack tcp_invalid)
seq=$(in_ns web "$PY" "$here/forge.py" rst-at eth0 $WEB4 $APP4 "$PORT" 8000 0) ||
	fail "exact RST: no segment of the stream seen to aim at"
echo "exact RST at seq $seq"
i=0
until [ "$(states)" = "$(both CLOSE)" ] || [ $i -ge 40 ]; do
	i=$((i + 1))
	sleep 0.05
done
check "exact RST: the tracking closes" "$(both CLOSE)" "$(states)"
check "exact RST: not refused (tcp_invalid unchanged)" "$inv2" "$(conntrack tcp_invalid)"
check "exact RST: passed (the blind RST is the one refusal web -> app)" 1 \
	"$(grep -c "REJECT tcp $WEB4:$PORT -> $APP4:8000:" "$LOG")"
sleep 1
c=$(stream_count "$T/c")
if stream_wait_more "$T/c" "$c" 3 3; then
	fail "exact RST: the stream goes on ($(stream_count "$T/c") lines)"
else
	pass "exact RST: the connection is reset, the stream stops"
fi

lab_stop_vpcfwd
echo "rst lab: $fails failure(s)"
[ "$fails" -eq 0 ]
