#!/bin/sh
# Issue #9: a symbolic link planted at every path vpcfwd writes (decision log,
# flow-log directories and CloudWatch-style streams, pcap target, drop
# capture, --verdicts) is refused, and the file it points to keeps its
# content and mode.  (MetricsFile: tests/check_ctl; the primitives:
# tests/check_safefile.)  Replay-driven: each case plants one link, runs
# vpcfwd --replay on the three-tier example and checks the victim.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$top_srcdir}
VPCFWD=${VPCFWD:-$top_builddir/src/vpcfwd}

[ -x "$VPCFWD" ] || { echo "SKIP: $VPCFWD not built"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# CASE: a name, the JSON of the Vpcfw keys (and mirror objects), the path at
# which to plant the link (relative to the case directory), extra arguments.
run_case() {
	name=$1 vpcfw=$2 link=$3
	shift 3
	d="$tmp/$name"
	mkdir -p "$d/conf" "$d/out"
	cp "$top_srcdir"/conf/three-tier/*.json "$d/conf/"
	[ "$name" = pcap-target ] && cp "$top_srcdir/tests/data/mirror/mirror.json" "$d/conf/60-mirror.json"
	printf '%s\n' "$vpcfw" | sed "s|@D@|$d|g" >"$d/conf/95-outputs.json"
	printf 'secret\n' >"$d/victim"
	chmod 0600 "$d/victim"
	mkdir -p "$d/victimdir"
	chmod 0700 "$d/victimdir"
	mkdir -p "$(dirname "$d/$link")"
	case $link in
	*/AWSLogs) ln -s "$d/victimdir" "$d/$link" ;;
	*) ln -s "$d/victim" "$d/$link" ;;
	esac
	args=$(printf '%s\n' "$*" | sed "s|@D@|$d|g")
	# shellcheck disable=SC2086
	"$VPCFWD" -c "$d/conf" --replay "$top_srcdir/conf/three-tier.pcap" $args >"$d/log" 2>&1
	rc=$?
	if [ "$(cat "$d/victim")" = secret ] && [ "$(stat -c %a "$d/victim")" = 600 ] &&
	   [ -z "$(ls -A "$d/victimdir")" ] && [ "$(stat -c %a "$d/victimdir")" = 700 ] &&
	   [ -L "$d/$link" ]; then
		ok "$name: the link's target is untouched"
	else
		bad "$name: the link was followed"; cat "$d/log"
	fi
	if [ "$rc" -ne 0 ] && grep -q "refused\|Too many levels\|Operation not permitted" "$d/log"; then
		ok "$name: refused with a message, exit $rc"
	else
		bad "$name: not refused (exit $rc)"; cat "$d/log"
	fi
}

FL='"FlowLogs": [{"FlowLogId": "fl-1", "ResourceId": "vpc-0000000000000001", "TrafficType": "ALL",
  "LogDestinationType": "@T@", "LogGroupName": "g1", "MaxAggregationInterval": 60}]'
vpc=$(sed -n 's/.*"VpcId": "\([^"]*\)".*/\1/p' "$top_srcdir/conf/three-tier/10-vpcs.json" | head -1)
s3=$(printf '%s' "$FL" | sed "s/@T@/s3/; s/vpc-0000000000000001/$vpc/")
cwl=$(printf '%s' "$FL" | sed "s/@T@/cloud-watch-logs/; s/vpc-0000000000000001/$vpc/")

run_case decision-log '{"Vpcfw": {"DecisionLog": "@D@/decisions.jsonl"}}' decisions.jsonl
run_case drop-capture '{"Vpcfw": {"DropCapture": {"Path": "@D@/drops.pcap", "SnapLength": 64}}}' \
	drops.pcap
run_case pcap-target '{"Vpcfw": {"PcapTargets": [{"TrafficMirrorTargetId": "tmt-00000000000file",
  "Path": "@D@/web.pcap"}]}}' web.pcap
run_case verdicts '{}' verdicts.jsonl --verdicts @D@/verdicts.jsonl
run_case s3-directory "{$s3}" out/AWSLogs --flow-log-dir @D@/out
run_case cwl-stream "{$cwl}" out/CloudWatchLogs/g1/eni-0000000000web01.jsonl \
	--flow-log-dir @D@/out

# issue #12: under the unit's UMask=0027 what vpcfwd writes is readable by
# its group (the unit's Group=vpcfw) and by no one else: files 0640,
# directories 0750; the S3 flow logs, the decision log and the drop capture
d="$tmp/modes"
mkdir -p "$d/conf"
cp "$top_srcdir"/conf/three-tier/*.json "$d/conf/"
printf '{"Vpcfw": {"DecisionLog": "%s/decisions.jsonl", "DropCapture": {"Path": "%s/drops.pcap"}}, %s}\n' \
	"$d" "$d" "$s3" >"$d/conf/95-outputs.json"
(umask 0027 && "$VPCFWD" -c "$d/conf" --replay "$top_srcdir/conf/three-tier.pcap" \
	--flow-log-dir "$d/out" >"$d/log" 2>&1) || { bad "modes: replay failed"; cat "$d/log"; }
files=$(find "$d/out" "$d/decisions.jsonl" "$d/drops.pcap" -type f | wc -l)
odd=$(find "$d/out" "$d/decisions.jsonl" "$d/drops.pcap" \( -type f ! -perm 0640 \) -o \
	\( -type d ! -perm 0750 \) | head -5)
if [ "$files" -ge 3 ] && [ -z "$odd" ]; then
	ok "modes under UMask=0027: $files files 0640, their directories 0750"
else
	bad "modes under UMask=0027 ($files files): $odd"; ls -lR "$d/out" "$d"
fi

exit $fail
