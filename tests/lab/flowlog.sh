#!/bin/bash
# Flow logs of the live daemon (SPEC §7): vpcfwd in the lab's gateway with
# two flow logs (the VPC, ALL, default format; web's interface, REJECT, a v5
# format), small rotation (Vpcfw.FlowLogRotateSeconds / FlowLogRotateBytes),
# real TCP, UDP and ICMP in both families, accepted and refused, and exempt
# traffic to the instance-metadata and DNS addresses.
#   1. a capture window closes on wall time while the daemon runs: its records
#      are in complete files before SIGTERM;
#   2. the open window is written at SIGTERM: nothing observed is lost;
#   3. files: AWS's S3 keys, gzip -t, the format's header, records read by
#      tests/tools/flowlog-reader; rotation made more than one file; the
#      daemon's counters at exit agree with the files;
#   4. a full aggregation table: SKIPDATA, and the daemon says how many packets.
# Takes about two minutes (the windows are AWS's 60 seconds).  Needs root and
# network namespaces; exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
reader=$top_srcdir/tests/tools/flowlog-reader
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$VPCFWD" ] || { echo "lab: no vpcfwd at $VPCFWD, skipped"; exit 77; }
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}

T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP

fails=0

ACCOUNT=123456789012 REGION=us-east-1
WEB=eni-0000000000web01 APP=eni-0000000000app01 DB=eni-00000000000db01
V2="version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
REJFMT="version interface-id srcaddr dstaddr srcport dstport protocol action flow-direction pkt-srcaddr pkt-dstaddr log-status"
IMDS4=169.254.169.254 IMDS6=fd00:ec2::254 VPCDNS=10.0.0.2

lab_three_tier || { echo "lab: cannot build the topology"; exit 99; }
# exempt destinations (SPEC §5) behind the gateway: instance metadata and the
# VPC's DNS address (base of 10.0.0.0/16 + 2)
lab_host imds vimds 169.254.169.1 $IMDS4/24 fd00:ec2::1 $IMDS6/64
lab_host vdns vvdns 10.0.0.1 $VPCDNS/24 2001:db8:dead::1 2001:db8:dead::2/64
lab_servers "$T" || { echo "lab: servers did not start"; exit 99; }
for h in imds vdns; do
	lab_bg $h "$PY" "$here/probe.py" serve "$T/ready-$h" --tcp 80 --udp 53
	lab_wait_file "$T/ready-$h" 10 || { echo "lab: servers did not start"; exit 99; }
done
lab_queue_rules --queue-num 0

# conf DIR FLOWDIR ROTATE_BYTES: the three tiers, the two flow logs, rotation
conf() {
	lab_config "$top_srcdir/conf/three-tier" "$1"
	cat >"$1/60-flow-logs.json" <<JSON
{
  "FlowLogs": [
    {"FlowLogId": "fl-0000000000000a11", "ResourceId": "vpc-0a1b2c3d4e5f60001",
     "ResourceType": "VPC", "TrafficType": "ALL", "MaxAggregationInterval": 60,
     "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::vpcfw-lab",
     "LogFormat": "\${version} \${account-id} \${interface-id} \${srcaddr} \${dstaddr} \${srcport} \${dstport} \${protocol} \${packets} \${bytes} \${start} \${end} \${action} \${log-status}"},
    {"FlowLogId": "fl-000000000000bad1", "ResourceId": "$WEB",
     "ResourceType": "NetworkInterface", "TrafficType": "REJECT", "MaxAggregationInterval": 60,
     "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::vpcfw-lab",
     "LogFormat": "$(for f in $REJFMT; do printf '${%s} ' $f; done | sed 's/ $//')"}
  ]
}
JSON
	cat >"$1/95-flow-log-dir.json" <<JSON
{"Vpcfw": {"FlowLogDirectory": "$2", "FlowLogRotateSeconds": 2, "FlowLogRotateBytes": $3}}
JSON
}

# records DIR [FLOWLOGID]: every record as a JSON line (flowlog-reader; its
# complaints in $T/reader.err)
records() {
	local files
	files=$(find "$1" -name "*_${2:-fl-}*.log.gz" ! -name '.*' | sort)
	[ -n "$files" ] || return 0
	# shellcheck disable=SC2086
	"$PY" "$reader" --json --quiet $files 2>>"$T/reader.err"
}
# count JSONL FIELD=VALUE...: records with all of these values
count() {
	"$PY" - "$@" <<'PY'
import json, sys
want = [a.split("=", 1) for a in sys.argv[2:]]
print(sum(all(r.get(k) == v for k, v in want)
          for r in map(json.loads, open(sys.argv[1]))))
PY
}
# wait_boundary SECONDS: until SECONDS after the next minute (the windows
# are aligned to it)
wait_boundary() {
	local s
	s=$(date +%s)
	sleep $((60 - s % 60 + $1))
}

# ==================================================================== run A
FL=$T/flowlogs
conf "$T/conf" "$FL" 1024
"$VPCFWD" --check-config -c "$T/conf" >"$T/check.out" 2>&1
check "the configuration with FlowLogs and rotation keys loads" 0 $?
echo '{"Vpcfw": {"FlowLogRotateBytes": 100}}' >"$T/conf/96-bad.json"
"$VPCFWD" --check-config -c "$T/conf" >"$T/check.out" 2>&1
check "FlowLogRotateBytes below 1024 is an error naming it" 1,yes \
	"$?,$(grep -q 'error: .*96-bad.json.*FlowLogRotateBytes' "$T/check.out" && echo yes)"
rm "$T/conf/96-bad.json"
LOG=$T/vpcfwd.log
lab_start_vpcfwd "$LOG" -c "$T/conf" || { echo "lab: vpcfwd did not start"; exit 99; }
t_start=$(date +%s)

# ---------------------------------------------------------------- phase 1
# FROM PROBE-ARGS EXPECTED: the traffic, with what AWS would do
phase1() {
	cat <<P
inet tcp $WEB4 80 --sport 41001|ok
inet tcp $WEB4 22 --sport 41002|timeout
web tcp $APP4 8000 --sport 41003|ok
web tcp $DB4 3306 --sport 41004|timeout
web udp $INET4 53 --sport 41005|ok
inet udp $WEB4 53 --sport 41006|timeout
web icmp $INET4 --id 41007|ok
inet icmp $WEB4 --id 41008|timeout
inet tcp $WEB6 443 --sport 41009|ok
corp tcp $WEB6 22 --sport 41010|timeout
web tcp $IMDS4 80 --sport 41011|ok
web tcp $IMDS6 80 --sport 41012|ok
web udp $VPCDNS 53 --sport 41013|ok
P
}
while IFS='|' read -r args want; do
	set -- $args
	check "phase 1: $*" "$want" "$(probe "$@")"
done < <(phase1)
t1=$(date +%s)

# ---------------------------------------------------------------- 1. live windows
# The window(s) of phase 1 close at the next minute; then the writer has
# them, and 2 s later rotation has closed the file.
wait_boundary 3
check "the daemon still runs after a window closed" yes \
	"$(kill -0 "$VPCFWD_PID" 2>/dev/null && echo yes)"
check "live: no half-written file 2 s after the window (FlowLogRotateSeconds)" 0 \
	"$(find "$FL" -name '.*.part' | wc -l)"
records "$FL" fl-0000000000000a11 >"$T/live.jsonl"
check "live: phase 1's refused SSH is in the files before SIGTERM" 1 \
	"$(count "$T/live.jsonl" interface-id=$WEB srcaddr=$INET4 srcport=41002 dstport=22 action=REJECT)"
check "live: phase 1's web -> app call is in the files before SIGTERM" 1 \
	"$(count "$T/live.jsonl" interface-id=$APP srcaddr=$WEB4 srcport=41003 action=ACCEPT)"

# ---------------------------------------------------------------- phase 2
# In the new window, which only SIGTERM closes.
t2=$(date +%s)
check "phase 2: inet -> web tcp 80" ok "$(probe inet tcp $WEB4 80 --sport 42001)"
check "phase 2: inet -> web tcp 22 refused" timeout "$(probe inet tcp $WEB4 22 --sport 42002)"
check "phase 2: corp -> app tcp 22" ok "$(probe corp tcp $APP4 22 --sport 42003)"
check "phase 2: web -> inet6 udp 53" ok "$(probe web udp $INET6 53 --sport 42004)"
records "$FL" fl-0000000000000a11 >"$T/before.jsonl"
check "phase 2's records are not written before SIGTERM (their window is open)" 0 \
	"$(count "$T/before.jsonl" srcport=42001)"
t_stop=$(date +%s)
[ $((t_stop / 60)) = $((t2 / 60)) ] || fail "phase 2 crossed a minute: the test's timing is off"
lab_stop_vpcfwd
check "SIGTERM: exit status 0" 0 "$VPCFWD_STATUS"

# ---------------------------------------------------------------- 2. after SIGTERM
records "$FL" fl-0000000000000a11 >"$T/all.jsonl"
records "$FL" fl-000000000000bad1 >"$T/rej.jsonl"
check "flowlog-reader: every file and record valid" 0 "$(wc -l <"$T/reader.err")"
[ -s "$T/reader.err" ] && head -5 "$T/reader.err"
check "no half-written file after exit" 0 "$(find "$FL" -name '.*' -type f | wc -l)"

# --- files
files=$(find "$FL" -type f -name '*.log.gz' | sort)
nfiles=$(echo "$files" | grep -c .)
bad_gz=0 bad_key=0 bad_head=0
day=$(date -u -d @"$t_start" +%Y/%m/%d)
key="^$FL/AWSLogs/$ACCOUNT/vpcflowlogs/$REGION/[0-9]{4}/[0-9]{2}/[0-9]{2}/${ACCOUNT}_vpcflowlogs_${REGION}_fl-[0-9a-f]{16}_[0-9]{8}T[0-9]{4}Z_[0-9a-f]{8}\.log\.gz$"
for f in $files; do
	gzip -t "$f" 2>/dev/null || bad_gz=$((bad_gz + 1))
	echo "$f" | grep -Eq "$key" || bad_key=$((bad_key + 1))
	case $f in
	*fl-0000000000000a11*) want=$V2;;
	*) want=$REJFMT;;
	esac
	[ "$(zcat "$f" | head -1)" = "$want" ] || bad_head=$((bad_head + 1))
done
check "files: every one passes gzip -t ($nfiles files)" 0 $bad_gz
check "files: every path is AWS's S3 key" 0 $bad_key
check "files: the first file is under the day it was written" yes \
	"$(echo "$files" | grep -q "/$day/" && echo yes)"
check "files: every header names the flow log's format (14 v2 fields / the custom one)" 0 $bad_head
check "rotation: FlowLogRotateBytes made several files of one flow log" yes \
	"$([ "$(echo "$files" | grep -c fl-0000000000000a11)" -gt 2 ] && echo yes)"
big=0
for f in $(echo "$files" | grep fl-0000000000000a11); do
	# a file is closed once it holds 1024 bytes: at most one record beyond
	[ "$(zcat "$f" | wc -c)" -le $((1024 + 200)) ] || big=$((big + 1))
done
check "rotation: no file much beyond FlowLogRotateBytes" 0 $big

# --- records of the ALL log (default format)
rec() { # NAME COUNT FIELD=VALUE...
	local name=$1 n=$2
	shift 2
	check "record: $name" "$n" "$(count "$T/all.jsonl" "$@")"
}
rec "inet -> web:80 at web, ingress, ACCEPT" 1 interface-id=$WEB srcaddr=$INET4 dstaddr=$WEB4 \
	srcport=41001 dstport=80 protocol=6 action=ACCEPT log-status=OK
rec "... its reply at web, ACCEPT" 1 interface-id=$WEB srcaddr=$WEB4 dstaddr=$INET4 srcport=80 \
	dstport=41001 protocol=6 action=ACCEPT
rec "inet -> web:22 at web, REJECT" 1 interface-id=$WEB srcaddr=$INET4 dstaddr=$WEB4 \
	srcport=41002 dstport=22 protocol=6 action=REJECT
rec "inet -> web:22 never ACCEPT" 0 srcport=41002 action=ACCEPT
rec "web -> app:8000 at web (egress), ACCEPT" 1 interface-id=$WEB srcaddr=$WEB4 dstaddr=$APP4 \
	srcport=41003 dstport=8000 protocol=6 action=ACCEPT
rec "web -> app:8000 at app (ingress), ACCEPT" 1 interface-id=$APP srcaddr=$WEB4 dstaddr=$APP4 \
	srcport=41003 dstport=8000 protocol=6 action=ACCEPT
# SPEC §7: REJECT for a packet any stage refused, at both ends when it got
# to the destination's side (db's security group refuses it)
rec "web -> db:3306 at web (egress), REJECT" 1 interface-id=$WEB srcaddr=$WEB4 dstaddr=$DB4 \
	srcport=41004 dstport=3306 protocol=6 action=REJECT
rec "web -> db:3306 at db (ingress), REJECT" 1 interface-id=$DB srcaddr=$WEB4 dstaddr=$DB4 \
	srcport=41004 dstport=3306 protocol=6 action=REJECT
rec "web -> db:3306 never ACCEPT" 0 srcport=41004 action=ACCEPT
rec "web -> inet udp 53 at web, ACCEPT" 1 interface-id=$WEB srcaddr=$WEB4 dstaddr=$INET4 \
	srcport=41005 dstport=53 protocol=17 action=ACCEPT
rec "inet -> web udp 53 at web, REJECT" 1 interface-id=$WEB srcaddr=$INET4 dstaddr=$WEB4 \
	srcport=41006 dstport=53 protocol=17 action=REJECT
rec "web -> inet ICMP at web, ports 0, ACCEPT" 1 interface-id=$WEB srcaddr=$WEB4 dstaddr=$INET4 \
	srcport=0 dstport=0 protocol=1 action=ACCEPT
rec "inet -> web ICMP at web, REJECT" 1 interface-id=$WEB srcaddr=$INET4 dstaddr=$WEB4 \
	protocol=1 action=REJECT
rec "inet -> web IPv6 443 at web, ACCEPT" 1 interface-id=$WEB srcaddr=$INET6 dstaddr=$WEB6 \
	srcport=41009 dstport=443 protocol=6 action=ACCEPT
rec "corp -> web IPv6 22 at web, REJECT" 1 interface-id=$WEB srcaddr=$CORP6 dstaddr=$WEB6 \
	srcport=41010 dstport=22 protocol=6 action=REJECT
rec "phase 2 (SIGTERM's window): inet -> web:80 ACCEPT" 1 interface-id=$WEB srcaddr=$INET4 \
	srcport=42001 dstport=80 action=ACCEPT
rec "phase 2: inet -> web:22 REJECT" 1 interface-id=$WEB srcaddr=$INET4 srcport=42002 \
	dstport=22 action=REJECT
rec "phase 2: corp -> app:22 at app, ACCEPT" 1 interface-id=$APP srcaddr=$CORP4 dstaddr=$APP4 \
	srcport=42003 dstport=22 action=ACCEPT
rec "phase 2: web -> inet6 udp 53 at web, ACCEPT" 1 interface-id=$WEB srcaddr=$WEB6 \
	dstaddr=$INET6 srcport=42004 dstport=53 protocol=17 action=ACCEPT
for a in $IMDS4 $IMDS6 $VPCDNS; do
	n=$(($(count "$T/all.jsonl" srcaddr=$a) + $(count "$T/all.jsonl" dstaddr=$a) +
	     $(count "$T/rej.jsonl" pkt-srcaddr=$a) + $(count "$T/rej.jsonl" pkt-dstaddr=$a)))
	check "exempt traffic with $a is not logged" 0 $n
done
check "records: only the VPC's three interfaces" 0 \
	"$(grep -vc -e "\"$WEB\"" -e "\"$APP\"" -e "\"$DB\"" "$T/all.jsonl")"
check "records: account-id is the interface owner's" 0 \
	"$(grep -vc "\"account-id\": \"$ACCOUNT\"" "$T/all.jsonl")"
check "records: windows inside the daemon's life" ok "$("$PY" - "$T/all.jsonl" "$t_start" "$t_stop" <<'PY'
import json, sys
lo, hi = int(sys.argv[2]), int(sys.argv[3])
bad = [r for r in map(json.loads, open(sys.argv[1]))
       if r["log-status"] == "OK" and not (lo <= int(r["start"]) <= int(r["end"]) <= hi)]
print("ok" if not bad else "%d outside, e.g. %s" % (len(bad), bad[0]))
PY
)"
check "records: phase 2 in the window SIGTERM closed" 0 "$("$PY" - "$T/all.jsonl" "$t2" <<'PY'
import json, sys
print(sum(1 for r in map(json.loads, open(sys.argv[1]))
          if r.get("srcport", "").startswith("4200") and int(r["start"]) < int(sys.argv[2])))
PY
)"

# --- the REJECT-only log of web's interface (v5 format)
check "REJECT log: only REJECT records" 0 \
	"$(grep -v '"log-status": "NODATA"' "$T/rej.jsonl" | grep -vc '"action": "REJECT"')"
check "REJECT log: only web's interface" 0 "$(grep -vc "\"interface-id\": \"$WEB\"" "$T/rej.jsonl")"
check "REJECT log: version 5 (flow-direction)" 0 "$(grep -vc '"version": "5"' "$T/rej.jsonl")"
check "REJECT log: inet -> web:22, ingress" 1 "$(count "$T/rej.jsonl" pkt-srcaddr=$INET4 \
	srcport=41002 dstport=22 protocol=6 flow-direction=ingress action=REJECT)"
check "REJECT log: phase 2's refused SSH" 1 "$(count "$T/rej.jsonl" srcport=42002 dstport=22)"

# --- the daemon's counters at exit against the files
line=$(grep 'at exit: flow logs:' "$LOG")
want=$("$PY" - "$T/all.jsonl" "$T/rej.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for f in sys.argv[1:] for l in open(f)]
n = lambda st: sum(r["log-status"] == st for r in recs)
print("%d records, %d NODATA and %d SKIPDATA" % (n("OK"), n("NODATA"), n("SKIPDATA")))
PY
)
check "counters at exit: what the files hold" "$want in $nfiles files; 0 packets lost" \
	"$(echo "$line" | grep -o '[0-9]* records.* packets lost')"
check "counters at exit: no write error" yes "$(echo "$line" | grep -q ' 0 write errors' && echo yes)"

# ==================================================================== run B
# 20000 UDP flows from web in one window: web's table (12288 flows per
# worker and window) overflows; SKIPDATA, and the daemon's count.
FL=$T/flowlogs-b
conf "$T/conf" "$FL" 75000000
[ $(($(date +%s) % 60)) -lt 30 ] || wait_boundary 1
lab_start_vpcfwd "$LOG" -c "$T/conf" || { echo "lab: vpcfwd did not start"; exit 99; }
in_ns web "$PY" - $INET4 20000 30000 <<'PY'
import socket, sys, time
dst, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", base + i))
    s.sendto(b"x", (dst, 53))
    s.close()
    if i % 100 == 99:
        time.sleep(0.005)
PY
sleep 1
t_b=$(date +%s)
lab_stop_vpcfwd
check "run B: SIGTERM: exit status 0" 0 "$VPCFWD_STATUS"
[ $((t_b / 60)) = $(($(date +%s) / 60)) ] || echo "note: run B crossed a minute"
records "$FL" fl-0000000000000a11 >"$T/b.jsonl"
check "run B: a SKIPDATA record for web's interface" yes \
	"$([ "$(count "$T/b.jsonl" interface-id=$WEB log-status=SKIPDATA)" -ge 1 ] && echo yes)"
line=$(grep 'at exit: flow logs:' "$LOG")
lost=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) packets lost.*/\1/p')
check "run B: the daemon counts the packets lost (SKIPDATA)" yes \
	"$([ "${lost:-0}" -gt 0 ] && echo yes)"
web_ok=$(count "$T/b.jsonl" interface-id=$WEB log-status=OK)
check "run B: web's window held its 12288 flows" yes \
	"$([ "$web_ok" -ge 12000 ] && [ "$web_ok" -le 12288 ] && echo yes || echo "no: $web_ok")"
# Every packet of run B is web's (inet is no interface): each one is in a
# record's packets or in the count of the lost.
pkts=$(grep -o 'at exit: [0-9]* packets' "$LOG" | awk '{print $3}')
check "run B: packets in web's records + packets lost = packets decided" "${pkts:-?}" \
	"$("$PY" - "$T/b.jsonl" "${lost:-0}" <<'PY'
import json, sys
print(int(sys.argv[2]) + sum(int(r["packets"]) for r in map(json.loads, open(sys.argv[1]))
                             if r["log-status"] == "OK"))
PY
)"
echo "run B: $line"

echo "lab flow logs: $fails failure(s)"
[ $fails = 0 ]
