#!/bin/sh
# vpcfwd --replay-flow-logs (issue #15):
#  - AWS's own example records (VPC user guide, "Flow log record examples",
#    https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-records-examples.html,
#    copied in tests/data/flowlogs): accepted SSH, rejected RDP, NODATA,
#    SKIPDATA, IPv6, v5 fields (flow-direction, tcp-flags, pkt-*) parse and
#    are decided, each against the configuration behind it (replay-cases.json)
#    and agreeing with AWS's logged action;
#  - gzip, the S3 key layout (a directory walked), CloudWatch JSON lines;
#  - malformed input: truncated and corrupt gzip, unknown header fields,
#    the wrong field count, bad values: reported with file and line,
#    skipped, the run continues, exit status 1;
#  - round trip: a pcap replayed with flow logs on, then those flow logs
#    replayed against the same configuration: every record agrees.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$top_srcdir}
VPCFWD=${VPCFWD:-$top_builddir/src/vpcfwd}
data=$top_srcdir/tests/data/flowlogs

[ -x "$VPCFWD" ] || { echo "SKIP: $VPCFWD not built"; exit 77; }
command -v jq >/dev/null 2>&1 || { echo "SKIP: no jq (tests/setup-debian)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# the configurations behind the documented examples
n=$(jq length "$data/replay-cases.json")
i=0
while [ "$i" -lt "$n" ]; do
	jq ".[$i].config" "$data/replay-cases.json" >"$tmp/case$i.json"
	i=$((i + 1))
done

# The documented samples with their format's header line (the README of
# tests/data/flowlogs names each sample's format)
mkdir -p "$tmp/docs"
cp "$data/awsdocs_default_v2.log" "$tmp/docs/"
{ echo "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status"
  cat "$data/awsdocs_tcpflags_custom_v3.log"; } >"$tmp/docs/tcpflags_v3.log"
{ echo "version srcaddr dstaddr srcport dstport protocol start end type packets bytes account-id vpc-id subnet-id instance-id interface-id region az-id sublocation-type sublocation-id action tcp-flags pkt-srcaddr pkt-dstaddr pkt-src-aws-service pkt-dst-aws-service traffic-path flow-direction log-status"
  cat "$data/awsdocs_trafficpath_custom_v5.log"; } >"$tmp/docs/trafficpath_v5.log"

# decide FILE CASE: verdict lines of FILE under case CASE's configuration
decide() {
	"$VPCFWD" -c "$tmp/case$2.json" --replay-flow-logs "$1" --verdicts "$tmp/out.json" \
		2>"$tmp/err"
}
# line N of the verdicts
rec() { jq -c "select(.line == $1)" "$tmp/out.json"; }

decide "$tmp/docs/awsdocs_default_v2.log" 0 || bad "default sample: exit $?: $(cat "$tmp/err")"
r=$(rec 1)
[ "$(echo "$r" | jq -r '.verdict + " " + .action + " " + (.agrees|tostring) + " " + .rule')" = \
  "ACCEPT ACCEPT true sg-ssh IpPermissions[0]" ] && ok "doc example: accepted SSH decided ACCEPT by sg-ssh" ||
	bad "doc example: accepted SSH: $r"
[ "$(echo "$r" | jq -r '"\(.packets) \(.bytes) \(.start) \(.end) \(.interface_id)"')" = \
  "20 4249 1418530010 1418530070 eni-1235b8ca123456789" ] && ok "record fields packets/bytes/start/end/interface_id carried" ||
	bad "record fields: $r"
grep -q "1 NODATA, 1 SKIPDATA skipped" "$tmp/err" && ok "NODATA and SKIPDATA counted and skipped" ||
	bad "NODATA/SKIPDATA: $(cat "$tmp/err")"
[ "$(jq -s 'map(select(.line == 3 or .line == 4)) | length' "$tmp/out.json")" = 0 ] &&
	ok "NODATA/SKIPDATA lines make no verdict" || bad "NODATA/SKIPDATA decided"

decide "$tmp/docs/awsdocs_default_v2.log" 1 || bad "rdp: exit $?"
r=$(rec 2)
[ "$(echo "$r" | jq -r '.verdict + " " + .action + " " + .reason')" = "REJECT REJECT ENI_SG_RULES_MISMATCH" ] &&
	ok "doc example: rejected RDP decided REJECT (security group)" || bad "doc example: rejected RDP: $r"

decide "$tmp/docs/awsdocs_default_v2.log" 3 || bad "ipv6: exit $?"
r=$(rec 7)
[ "$(echo "$r" | jq -r '.verdict + " " + (.agrees|tostring) + " " + .src')" = \
  "ACCEPT true 2001:db8:1234:a100:8d6e:3477:df66:f105" ] && ok "doc example: IPv6 SSH decided ACCEPT" ||
	bad "doc example: IPv6: $r"

decide "$tmp/docs/trafficpath_v5.log" 5 || bad "v5 sample: exit $?: $(cat "$tmp/err")"
[ "$(jq -s 'map(.flow_direction + ":" + .verdict + ":" + (.agrees|tostring)) | join(" ")' -r "$tmp/out.json")" = \
  "ingress:ACCEPT:true egress:ACCEPT:true" ] && ok "doc example: v5 fields (flow-direction, tcp-flags, pkt-*) decided" ||
	bad "v5 sample: $(cat "$tmp/out.json")"

decide "$tmp/docs/tcpflags_v3.log" 4 || bad "tcp-flags sample: exit $?: $(cat "$tmp/err")"
[ "$(jq -s 'length' "$tmp/out.json")" = 8 ] && [ "$(jq -s 'map(select(.agrees != true)) | length' "$tmp/out.json")" = 0 ] &&
	ok "doc example: tcp-flags sequence (custom v3 header) decided, all agree" ||
	bad "tcp-flags sample: $(cat "$tmp/out.json") $(cat "$tmp/err")"

# gzip, the S3 layout, CloudWatch JSON lines
s3=$tmp/s3/AWSLogs/123456789010/vpcflowlogs/us-east-1/2014/12/14
mkdir -p "$s3"
gzip -c "$data/awsdocs_default_v2.log" >"$s3/123456789010_vpcflowlogs_us-east-1_fl-1234abcd_20141214T0400Z_0a1b2c3d.log.gz"
jq -R -c '{timestamp: 1418530010000, message: ., ingestionTime: 1418530080000}' \
	"$data/awsdocs_default_v2.log" >"$tmp/cwl.json"
"$VPCFWD" -c "$tmp/case0.json" --replay-flow-logs "$tmp/s3" "$tmp/cwl.json" --verdicts "$tmp/out.json" 2>"$tmp/err" ||
	bad "gzip + S3 + CloudWatch: exit $?: $(cat "$tmp/err")"
[ "$(jq -s 'map(select(.line == 1 and .verdict == "ACCEPT")) | length' "$tmp/out.json")" = 2 ] &&
	grep -q "2 files, 10 records" "$tmp/err" &&
	ok "gzip S3 objects (directory walked) and CloudWatch JSON lines read" ||
	bad "gzip/S3/CloudWatch: $(cat "$tmp/err")"

# gzip as zlib reads it, whichever decoder configure chose (ISA-L's or
# zlib's): a file of several members is read whole, bytes after the last
# member are ignored; the records are those of the plain text
mkdir -p "$tmp/gz"
cat "$data/awsdocs_default_v2.log" "$data/awsdocs_default_v2.log" "$data/awsdocs_default_v2.log" >"$tmp/gz/plain.log"
{ gzip -c "$data/awsdocs_default_v2.log"; gzip -c "$data/awsdocs_default_v2.log"
  gzip -c "$data/awsdocs_default_v2.log"; printf 'trailing bytes\n'; } >"$tmp/gz/multi.log.gz"
for f in plain.log multi.log.gz; do
	"$VPCFWD" -c "$tmp/case0.json" --replay-flow-logs "$tmp/gz/$f" --verdicts "$tmp/gz/$f.json" \
		2>"$tmp/gz/$f.err" || bad "gzip members: $f: exit $?: $(cat "$tmp/gz/$f.err")"
	jq -c 'del(.file)' "$tmp/gz/$f.json" >"$tmp/gz/$f.nofile"
done
[ "$(jq -s length "$tmp/gz/multi.log.gz.json")" = 15 ] && cmp -s "$tmp/gz/plain.log.nofile" "$tmp/gz/multi.log.gz.nofile" &&
	ok "gzip of three members and trailing bytes: the same 15 records as the plain text" ||
	bad "gzip members: $(cat "$tmp/gz/multi.log.gz.err")"

# malformed input: every problem reported with file and line, the rest decided
mkdir -p "$tmp/bad"
printf '2 123456789010 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1 2 ACCEPT\n' >"$tmp/bad/a-fields.log"
printf '2 123456789010 eni-1 10.0.0.1 10.0.0.999 1 2 6 1 40 1 2 ACCEPT OK\n' >>"$tmp/bad/a-fields.log"
printf 'version interface-id srcaddr dstaddr no-such-field dstport protocol log-status\n2 eni-1 172.31.16.139 172.31.16.21 x 22 6 OK\n' \
	>"$tmp/bad/b-unknown.log"
gzip -c "$data/awsdocs_default_v2.log" | head -c 150 >"$tmp/bad/c-truncated.log.gz"
{ gzip -c "$data/awsdocs_default_v2.log" | head -c 40; head -c 200 /dev/zero; } >"$tmp/bad/d-corrupt.log.gz"
cp "$data/awsdocs_default_v2.log" "$tmp/bad/e-good.log"
"$VPCFWD" -c "$tmp/case0.json" --replay-flow-logs "$tmp/bad" --verdicts "$tmp/out.json" 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && ok "malformed input: exit status 1" || bad "malformed input: exit $rc"
for want in "a-fields.log:1: 13 fields, the format has 14" "a-fields.log:2: dstaddr '10.0.0.999' is not valid" \
	    "b-unknown.log:1: unknown field 'no-such-field'" "c-truncated.log.gz: " "d-corrupt.log.gz: "; do
	grep -qF "$want" "$tmp/err" && ok "reported: $want" || bad "not reported: $want: $(cat "$tmp/err")"
done
[ "$(jq -s 'map(select(.file | endswith("b-unknown.log"))) | .[0].verdict' -r "$tmp/out.json")" = ACCEPT ] &&
	ok "unknown header field: its column skipped, the record decided" || bad "unknown field record: $(cat "$tmp/out.json")"
[ "$(jq -s 'map(select(.file | endswith("e-good.log"))) | length' "$tmp/out.json")" = 5 ] &&
	ok "the run continued past broken files to the good one" || bad "run stopped: $(cat "$tmp/out.json")"

# round trip
mkdir -p "$tmp/rt"
"$VPCFWD" -c "$top_srcdir/conf/three-tier" --replay "$top_srcdir/conf/three-tier.pcap" --flow-log-dir "$tmp/rt" \
	>/dev/null 2>"$tmp/err" || bad "pcap replay: $(cat "$tmp/err")"
"$VPCFWD" -c "$top_srcdir/conf/three-tier" --replay-flow-logs "$tmp/rt" --verdicts "$tmp/out.json" 2>"$tmp/err" ||
	bad "replaying the flow logs: exit $?: $(cat "$tmp/err")"
total=$(jq -s length "$tmp/out.json")
agree=$(jq -s 'map(select(.agrees == true)) | length' "$tmp/out.json")
[ "$total" -gt 10 ] && [ "$total" = "$agree" ] &&
	ok "round trip: all $total records of the pcap's flow logs agree with their logged action" ||
	bad "round trip: $agree of $total agree: $(cat "$tmp/err")"
grep -q "fidelity: $total of $total records with a logged action agree" "$tmp/err" &&
	ok "fidelity summary printed" || bad "fidelity summary: $(cat "$tmp/err")"

# a disagreement shows in the fidelity table by interface and port
jq '(.SecurityGroups[] | select(.GroupId == "sg-ssh") | .IpPermissions) = []' "$tmp/case0.json" >"$tmp/nossh.json"
"$VPCFWD" -c "$tmp/nossh.json" --replay-flow-logs "$tmp/docs/awsdocs_default_v2.log" 2>"$tmp/err" >/dev/null
grep -Eq "eni-1235b8ca123456789 +6 +22 +ACCEPT +1" "$tmp/err" &&
	ok "fidelity table: the SSH record AWS accepted, refused here, by interface and port" ||
	bad "fidelity table: $(cat "$tmp/err")"

# threads: the reading side in a second thread hands over chunks of parsed
# records; one thread and two make the same verdicts, counts and messages
# in the same order, over inputs that span many chunks: several gzip files,
# lines shorter than a chunk's share (a chunk passed on before its text is
# used up), a line longer than any, malformed and NODATA lines between the
# records, CloudWatch JSON lines, a truncated file
mkdir -p "$tmp/mt"
awk 'BEGIN { for (i = 1; i <= 6000; i++) {
	if (i % 1000 == 0) print "2 123456789010 eni-1 10.0.0.1 10.0.0.999 1 2 6 1 40 1 2 ACCEPT OK";
	else if (i % 777 == 0) print "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1418530010 1418530070 - NODATA";
	else printf "2 123456789010 eni-1235b8ca123456789 172.31.16.%d 172.31.16.21 %d 22 6 20 4249 %d %d %s OK\n",
		i % 250 + 1, 20000 + i % 40000, 1418530010 + i, 1418530070 + i, i % 3 ? "ACCEPT" : "REJECT" } }' |
	gzip -c >"$tmp/mt/a-big.log.gz"
{ echo "srcaddr dstaddr"; awk 'BEGIN { for (i = 1; i <= 20000; i++)
	print (i % 5000 == 0 ? "x 172.31.16.21" : "172.31.16." (i % 250 + 1) " 172.31.16.21") }'; } >"$tmp/mt/b-short.log"
{ head -c 70000 /dev/zero | tr '\0' 7; echo; cat "$data/awsdocs_default_v2.log"; } >"$tmp/mt/c-long.log"
cp "$tmp/cwl.json" "$tmp/mt/d-cwl.json"
cp "$tmp/bad/c-truncated.log.gz" "$tmp/mt/e-truncated.log.gz"
for t in 1 2; do
	"$VPCFWD" -c "$tmp/case0.json" --replay-flow-logs "$tmp/mt" --threads $t --verdicts "$tmp/mt$t.json" \
		2>"$tmp/mt$t.err"
	echo $? >"$tmp/mt$t.rc"
done
grep -q "5 files, 25994 records" "$tmp/mt1.err" && [ "$(cat "$tmp/mt1.rc")" = 1 ] &&
	[ "$(jq -s length "$tmp/mt1.json")" = 25994 ] &&
	ok "one thread: every record of 5 files read and decided (exit 1: malformed lines)" ||
	bad "one thread: exit $(cat "$tmp/mt1.rc"): $(head -c 2000 "$tmp/mt1.err")"
cmp -s "$tmp/mt1.json" "$tmp/mt2.json" && ok "two threads: the same verdict lines, byte for byte" ||
	bad "two threads: other verdicts: $(cmp "$tmp/mt1.json" "$tmp/mt2.json")"
cmp -s "$tmp/mt1.err" "$tmp/mt2.err" && cmp -s "$tmp/mt1.rc" "$tmp/mt2.rc" &&
	ok "two threads: the same messages, counts and exit status" ||
	bad "two threads: other messages: $(diff "$tmp/mt1.err" "$tmp/mt2.err" | head -20)"
"$VPCFWD" -c "$tmp/case0.json" --replay-flow-logs "$tmp/mt" --threads 3 >/dev/null 2>"$tmp/err"
[ $? = 2 ] && grep -q "threads '3': 1 or 2" "$tmp/err" && ok "--threads 3 refused" ||
	bad "--threads 3: $(cat "$tmp/err")"

exit $fail
