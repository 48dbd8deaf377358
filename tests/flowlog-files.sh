#!/bin/sh
# Flow-log files (issue #10), read by an independent consumer (Debian's
# python3: gzip + csv, no PyPI) and jq:
#  - two runs over the same packets (the same minute) into one directory:
#    every record of both runs survives (random hash, exclusive names);
#  - object keys as flow-logs-s3-path documents them: the LogDestination
#    folder, HiveCompatiblePartitions, PerHourPartition, the name's time the
#    5-minute period the records fall in;
#  - each S3 file read with Athena's documented column list (vpc-flow-logs
#    CREATE TABLE of the default format) and its types;
#  - two flow logs into one CloudWatch log group: every line is JSON (jq)
#    and none is lost;
#  - NODATA: one record per interface and empty 60 s window;
#  - FileFormat parquet: a warning (an error under --strict), not text.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$top_srcdir}
VPCFWD=${VPCFWD:-$top_builddir/src/vpcfwd}
PY=/usr/bin/python3

[ -x "$VPCFWD" ] || { echo "SKIP: $VPCFWD not built"; exit 77; }
for tool in jq "$PY"; do
	command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: no $tool (tests/setup-debian)"; exit 77; }
done
$PY -c 'import scapy' 2>/dev/null || { echo "SKIP: $PY has no scapy (python3-scapy)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

BASE=1700000100   # a multiple of 300: the first 5-minute period

mkdir -p "$tmp/conf"
cp "$top_srcdir"/conf/three-tier/*.json "$tmp/conf/"
vpc=$(jq -r '.Vpcs[0].VpcId' "$top_srcdir/conf/three-tier/10-vpcs.json")
cat >"$tmp/conf/70-flowlogs.json" <<EOF
{"FlowLogs": [
 {"FlowLogId": "fl-0000000000000hive", "ResourceId": "$vpc", "TrafficType": "ALL",
  "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::my-bucket/team/vpc1/",
  "MaxAggregationInterval": 60,
  "DestinationOptions": {"FileFormat": "plain-text", "HiveCompatiblePartitions": true,
                         "PerHourPartition": true}},
 {"FlowLogId": "fl-00000000000plain", "ResourceId": "$vpc", "TrafficType": "ALL",
  "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::my-bucket",
  "MaxAggregationInterval": 60},
 {"FlowLogId": "fl-00000000000hour1", "ResourceId": "$vpc", "TrafficType": "ALL",
  "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::my-bucket/hourly/",
  "MaxAggregationInterval": 60, "DestinationOptions": {"PerHourPartition": true}},
 {"FlowLogId": "fl-00000000000cwl01", "ResourceId": "$vpc", "TrafficType": "ALL",
  "LogDestinationType": "cloud-watch-logs", "LogGroupName": "shared-group",
  "MaxAggregationInterval": 60},
 {"FlowLogId": "fl-00000000000cwl02", "ResourceId": "$vpc", "TrafficType": "ALL",
  "LogDestinationType": "cloud-watch-logs",
  "LogDestination": "arn:aws:logs:us-east-1:123456789012:log-group:shared-group",
  "MaxAggregationInterval": 60}
]}
EOF

# 3000 flows web01 -> app01 in the first 30 s, then silence for two
# windows, then one packet: lines long enough to tear two buffered writers.
$PY - "$tmp/in.pcap" "$BASE" <<'EOF'
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, TCP, wrpcap
out, base = sys.argv[1], int(sys.argv[2])
pk = []
for i in range(3000):
    p = Ether() / IP(src="10.0.1.10", dst="10.0.2.10") / TCP(sport=10000 + i, dport=8000, flags="S")
    p.time = base + i * 0.01
    pk.append(p)
p = Ether() / IP(src="10.0.1.10", dst="10.0.2.10") / TCP(sport=9999, dport=8000, flags="S")
p.time = base + 200
pk.append(p)
wrpcap(out, pk)
EOF

replay() {
	"$VPCFWD" -c "$tmp/conf" --replay "$tmp/in.pcap" --flow-log-dir "$tmp/out" >"$tmp/run$1.log" 2>&1 ||
		{ bad "replay $1 failed"; cat "$tmp/run$1.log"; }
}

# The consumer: every S3 file through gzip + csv with Athena's columns.
cat >"$tmp/consume.py" <<'EOF'
import csv, gzip, os, re, sys, json, calendar, time
top, base = sys.argv[1], int(sys.argv[2])
# Athena, vpc-flow-logs "Create a table" (default format), in order
athena = [("version", int), ("account_id", str), ("interface_id", str), ("srcaddr", str),
          ("dstaddr", str), ("srcport", int), ("dstport", int), ("protocol", int),
          ("packets", int), ("bytes", int), ("start", int), ("end", int), ("action", str),
          ("log_status", str)]
name = (r"(?P<acct>\d{12})_vpcflowlogs_(?P<reg>[a-z0-9-]+)_(?P<id>fl-[0-9a-z]+)_"
        r"(?P<stamp>\d{8}T\d{4}Z)_[0-9a-f]{8}\.log\.gz")
layouts = {
  "fl-0000000000000hive": r"team/vpc1/AWSLogs/aws-account-id=(?P<a>\d{12})/aws-service=vpcflowlogs/"
      r"aws-region=(?P<r>[a-z0-9-]+)/year=(?P<y>\d{4})/month=(?P<m>\d\d)/day=(?P<d>\d\d)/hour=(?P<h>\d\d)/",
  "fl-00000000000plain": r"AWSLogs/(?P<a>\d{12})/vpcflowlogs/(?P<r>[a-z0-9-]+)/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/",
  "fl-00000000000hour1": r"hourly/AWSLogs/(?P<a>\d{12})/vpcflowlogs/(?P<r>[a-z0-9-]+)/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/(?P<h>\d\d)/",
}
stats = {}
errors = []
for dirpath, dirs, files in os.walk(top):
    for f in files:
        rel = os.path.relpath(os.path.join(dirpath, f), top)
        if rel.startswith("CloudWatchLogs/"):
            continue
        if f.startswith("."):
            errors.append("partial file left: " + rel); continue
        m = re.fullmatch(r"(?P<dir>.*/)" + name, rel)
        if not m:
            errors.append("not AWS's file name: " + rel); continue
        fid = m.group("id")
        lm = re.fullmatch(layouts[fid], m.group("dir"))
        if not lm:
            errors.append("not AWS's layout for %s: %s" % (fid, rel)); continue
        t = calendar.timegm(time.strptime(m.group("stamp"), "%Y%m%dT%H%MZ"))
        tm = time.gmtime(t)
        want = {"y": "%04d" % tm.tm_year, "m": "%02d" % tm.tm_mon, "d": "%02d" % tm.tm_mday,
                "h": "%02d" % tm.tm_hour, "a": m.group("acct"), "r": m.group("reg")}
        for k, v in lm.groupdict().items():
            if v != want[k]:
                errors.append("%s: partition %s=%s, the name says %s" % (rel, k, v, want[k]))
        if t % 300:
            errors.append("%s: the name's time is no 5-minute boundary" % rel)
        with gzip.open(os.path.join(dirpath, f), "rt", newline="") as g:
            rows = list(csv.reader(g, delimiter=" "))
        if [h.replace("-", "_") for h in rows[0]] != [c for c, _ in athena]:
            errors.append("%s: header %s" % (rel, rows[0])); continue
        s = stats.setdefault(fid, {"OK": 0, "NODATA": [], "files": 0})
        s["files"] += 1
        for n, row in enumerate(rows[1:], 2):
            if len(row) != len(athena):
                errors.append("%s:%d: %d fields" % (rel, n, len(row))); continue
            rec = {}
            for (col, typ), v in zip(athena, row):
                try:
                    rec[col] = v if v == "-" else typ(v)
                except ValueError:
                    errors.append("%s:%d: %s=%r is no %s" % (rel, n, col, v, typ.__name__))
            st = rec["log_status"]
            if st == "OK":
                s["OK"] += 1
                if not (t <= rec["start"] and rec["end"] < t + 300):
                    errors.append("%s:%d: record %s-%s outside the file's period" % (rel, n, rec["start"], rec["end"]))
            elif st == "NODATA":
                s["NODATA"].append((rec["interface_id"], rec["start"], rec["end"]))
            else:
                errors.append("%s:%d: log-status %s" % (rel, n, st))
json.dump({"stats": stats, "errors": errors}, sys.stdout)
EOF

replay 1
$PY "$tmp/consume.py" "$tmp/out" $BASE >"$tmp/r1.json" || bad "consumer failed on run 1"
cat "$tmp/run1.log" | grep -i "parquet\|error" || true
replay 2
$PY "$tmp/consume.py" "$tmp/out" $BASE >"$tmp/r2.json" || bad "consumer failed on run 2"

errs=$(jq -r '.errors[]' "$tmp/r2.json")
if [ -z "$errs" ]; then ok "every object key and record as AWS documents them (Athena columns)"
else bad "consumer: $(printf '%s\n' "$errs" | head -5)"; fi

for id in fl-0000000000000hive fl-00000000000plain fl-00000000000hour1; do
	r1=$(jq ".stats[\"$id\"].OK // 0" "$tmp/r1.json")
	r2=$(jq ".stats[\"$id\"].OK // 0" "$tmp/r2.json")
	f1=$(jq ".stats[\"$id\"].files // 0" "$tmp/r1.json")
	f2=$(jq ".stats[\"$id\"].files // 0" "$tmp/r2.json")
	if [ "$r1" -ge 6000 ] && [ "$r2" -eq $((2 * r1)) ] && [ "$f2" -eq $((2 * f1)) ]; then
		ok "$id: both runs' $r1 records survive ($f2 files, none overwritten)"
	else
		bad "$id: run 1 $r1 records in $f1 files, after run 2 $r2 in $f2"
	fi
done

# NODATA: web01 and app01 had no traffic in [BASE+60, BASE+180): one
# record per interface and window; db01 none at all: every window.
nod=$(jq -r '.stats["fl-00000000000plain"].NODATA[] | "\(.[0]) \(.[1]) \(.[2])"' "$tmp/r1.json" | sort)
want=$(for e in eni-0000000000web01 eni-0000000000app01; do
	for w in 60 120; do echo "$e $((BASE + w)) $((BASE + w + 60))"; done; done
	for w in 0 60 120 180; do echo "eni-00000000000db01 $((BASE + w)) $((BASE + w + 60))"; done)
want=$(printf '%s\n' "$want" | sort)
if [ "$nod" = "$want" ]; then ok "NODATA: one record per interface and empty 60 s window"
else bad "NODATA records:"; printf 'got:\n%s\nwant:\n%s\n' "$nod" "$want"; fi

# Two flow logs, one group: one stream per interface, whole lines, all of them.
cwl="$tmp/out/CloudWatchLogs/shared-group"
n=0; badl=0
for f in "$cwl"/*.jsonl; do
	[ -f "$f" ] || continue
	if ! jq -e -c 'select(.message | type == "string") | .timestamp' "$f" >/dev/null 2>"$tmp/jq.err"; then
		badl=1; head -3 "$tmp/jq.err"
	fi
	n=$((n + $(jq -c 'select(.message | test(" OK$"))' "$f" | wc -l)))
done
plain=$(jq '.stats["fl-00000000000plain"].OK' "$tmp/r2.json")
if [ "$badl" -eq 0 ] && [ "$n" -eq $((2 * plain)) ]; then
	ok "two flow logs into one CloudWatch group: every line is JSON, $n records, none lost"
else
	bad "cloud-watch-logs shared group: jq errors $badl, $n OK records, want $((2 * plain))"
fi
[ "$(ls "$tmp/out/CloudWatchLogs")" = shared-group ] || bad "more than one group directory"

# parquet: refused loudly, never written as text
jq '.FlowLogs[1].DestinationOptions = {"FileFormat": "parquet"}' "$tmp/conf/70-flowlogs.json" \
	>"$tmp/pq.json"
mkdir -p "$tmp/pqconf" && cp "$tmp"/conf/*.json "$tmp/pqconf/" && cp "$tmp/pq.json" "$tmp/pqconf/70-flowlogs.json"
if "$VPCFWD" -c "$tmp/pqconf" --check-config >"$tmp/pq.out" 2>&1 &&
   grep -q 'FlowLogs\[1\].DestinationOptions.FileFormat.*parquet' "$tmp/pq.out" &&
   ! "$VPCFWD" -c "$tmp/pqconf" --check-config --strict >/dev/null 2>&1; then
	ok "FileFormat parquet: a warning naming it (an error under --strict)"
else
	bad "parquet warning"; cat "$tmp/pq.out"
fi
"$VPCFWD" -c "$tmp/pqconf" --replay "$tmp/in.pcap" --flow-log-dir "$tmp/pqout" >/dev/null 2>&1
if find "$tmp/pqout" -name '*fl-00000000000plain*' | grep -q .; then
	bad "a parquet flow log was written as text"
else
	ok "a parquet flow log is not written as text"
fi

exit $fail
