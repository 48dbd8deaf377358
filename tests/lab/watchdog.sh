#!/bin/bash
# The systemd watchdog (sd_notify(3) WATCHDOG=1, sd_watchdog_enabled(3)):
# vpcfwd pings $NOTIFY_SOCKET every WATCHDOG_USEC/2 only while every worker
# makes progress.  The test build (tests/vpcfwd-hooks, -DVPCFW_TEST_HOOKS)
# stalls its workers inside their next batch on SIGUSR2; with packets held,
# the pings must stop, and resume once the workers are released.  An idle
# daemon (no traffic) keeps pinging: idle is not stuck.  Root and network
# namespaces; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
HOOKS=${VPCFWD_HOOKS:-${top_builddir:-$top_srcdir}/tests/vpcfwd-hooks}
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$HOOKS" ] || { echo "lab: no test build at $HOOKS (make check builds it), skipped"; exit 77; }
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}

T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP
fails=0

lab_three_tier || { echo "lab: cannot build the topology"; exit 99; }
lab_servers "$T" || { echo "lab: servers did not start"; exit 99; }
lab_config "$top_srcdir/conf/three-tier" "$T/conf"
lab_queue_rules --queue-num 0
LOG=$T/vpcfwd.log

# a unix datagram socket of our own stands in for systemd
"$PY" "$here/probe.py" notify "$T/notify.sock" "$T/notify.out" &
LAB_PIDS="$LAB_PIDS $!"
for _ in $(seq 40); do [ -S "$T/notify.sock" ] && break; sleep 0.05; done
pings() { grep -cx 'WATCHDOG=1' "$T/notify.out" 2>/dev/null || true; }

# 400 ms: a ping every 200 ms
VPCFWD=$HOOKS NOTIFY_SOCKET=$T/notify.sock WATCHDOG_USEC=400000 \
	lab_start_vpcfwd "$LOG" -c "$T/conf" || { echo "lab: vpcfwd-hooks did not start"; exit 99; }
lab_wait_file "$T/notify.out" 2
check "watchdog announced in the log" yes "$(grep -q 'watchdog: pinging systemd every 200 ms' "$LOG" && echo yes)"

sleep 1.2
n=$(pings)
check "idle workers: pinging (at least 4 in 1.2 s)" yes "$([ "$n" -ge 4 ] && echo yes || echo "no ($n)")"
check "traffic decided before the stall" ok "$(probe inet tcp $WEB4 80 --sport 31001)"

kill -USR2 "$VPCFWD_PID"
lab_wait_log "$LOG" "test hook: workers stalled" 2
# a packet for the stalled worker: held inside its batch
probe inet tcp $WEB4 80 --sport 31002 >/dev/null &
LAB_PIDS="$LAB_PIDS $!"
lab_wait_log "$LOG" "makes no progress with packets pending; watchdog pings stopped" 3
check "stalled worker reported" yes \
	"$(grep -q 'queue 0: the worker makes no progress with packets pending' "$LOG" && echo yes)"
before=$(pings)
sleep 1.5
after=$(pings)
check "stalled worker: no ping in 1.5 s (3 periods of 400 ms + slack)" "$before" "$after"

kill -USR2 "$VPCFWD_PID"
lab_wait_log "$LOG" "watchdog pings resumed" 3
sleep 0.6
check "released: pinging again" yes "$([ "$(pings)" -gt "$after" ] && echo yes || echo no)"
check "released: traffic decided again" ok "$(probe inet tcp $WEB4 80 --sport 31003)"

# WATCHDOG_PID naming another process: that watchdog is not ours
lab_stop_vpcfwd
check "test build stops cleanly" 0 "$VPCFWD_STATUS"
: >"$T/notify.out"
VPCFWD=$HOOKS NOTIFY_SOCKET=$T/notify.sock WATCHDOG_USEC=400000 WATCHDOG_PID=1 \
	lab_start_vpcfwd "$LOG" -c "$T/conf" || { echo "lab: vpcfwd-hooks did not start"; exit 99; }
sleep 1
check "WATCHDOG_PID of another process: no pings" 0 "$(pings)"
lab_stop_vpcfwd

echo "lab watchdog: $fails failure(s)"
[ $fails = 0 ]
