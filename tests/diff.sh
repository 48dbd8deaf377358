#!/bin/sh
# vpcfwctl diff (issue #15 item 3): "what would this change break".
#  - the same configuration twice: no change, exit 0;
#  - a candidate without one security-group rule, on a capture and on the
#    flow logs a replay of that capture wrote: exactly the flows that rule
#    admitted are reported newly refused, with that rule named, exit 1;
#  - a candidate with one more rule: the flows it admits are newly admitted;
#  - --json carries the same counts;
#  - errors exit 2: unreadable traffic, a refused configuration, usage.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$top_srcdir}
VPCFWD=${VPCFWD:-$top_builddir/src/vpcfwd}
VPCFWCTL=${VPCFWCTL:-$top_builddir/src/vpcfwctl}
conf=$top_srcdir/conf/three-tier
pcap=$top_srcdir/conf/three-tier.pcap

for b in "$VPCFWD" "$VPCFWCTL"; do
	[ -x "$b" ] || { echo "FAIL: $b not built"; exit 1; }
done
command -v jq >/dev/null 2>&1 || { echo "SKIP: no jq (tests/setup-debian)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# diff ARGS...: runs vpcfwctl diff, output in $tmp/out, status in $rc
diff_run() {
	"$VPCFWCTL" diff "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# 1. no change
diff_run -c "$conf" -c2 "$conf" --traffic "$pcap"
if [ "$rc" -eq 0 ] && grep -q ' 0 newly refused, 0 newly admitted' "$tmp/out"; then
	ok "the same configuration: no change, exit 0"
else
	bad "the same configuration: exit $rc: $(cat "$tmp/out" "$tmp/err")"
fi

# 2. a candidate without the web group's HTTP rule (IpPermissions[0])
rule='sg-0000000000000web IpPermissions[0]'
mkdir "$tmp/cand"
cp "$conf"/*.json "$tmp/cand/"
jq '(.SecurityGroups[] | select(.GroupId == "sg-0000000000000web") | .IpPermissions) |= .[1:]' \
	"$conf/40-security-groups.json" >"$tmp/cand/40-security-groups.json"
# the flows that rule admits: the replay's verdicts name it for their packets
# (every packet of an untracked flow, the first of a tracked one)
"$VPCFWD" -c "$conf" --replay "$pcap" --verdicts "$tmp/v.jsonl" --flow-log-dir "$tmp/fl" \
	2>"$tmp/replay.err" || bad "replay: $(cat "$tmp/replay.err")"
want=$(jq -s --arg r "$rule" '[.[] | select(.verdict == "ACCEPT" and .rule == $r) |
	[.src, .sport, .dst, .dport, .proto]] | unique | length' "$tmp/v.jsonl")
[ "$want" -ge 1 ] || bad "the example admits no flow by $rule"

diff_run -c "$conf" -c2 "$tmp/cand" --traffic "$pcap"
got=$(sed -n 's/^newly refused: \([0-9]*\) flows.*/\1/p' "$tmp/out" | head -1)
if [ "$rc" -eq 1 ] && [ "$got" = "$want" ] && grep -qxF "  now:       ACCEPT RULES_ALLOW (sg-ingress): $rule" "$tmp/out" &&
   grep -q 'candidate: REJECT ENI_SG_RULES_MISMATCH' "$tmp/out" &&
   [ "$(grep -c '^newly ' "$tmp/out")" -eq 1 ]; then
	ok "capture: the $want flows $rule admitted are newly refused, the rule named, exit 1"
else
	bad "capture: exit $rc, want $want flows by $rule: $(cat "$tmp/out" "$tmp/err")"
fi

"$VPCFWCTL" --json diff -c "$conf" -c2 "$tmp/cand" --traffic "$pcap" >"$tmp/j" 2>/dev/null
if [ "$(jq '.newly_refused.flows' "$tmp/j")" = "$want" ] &&
   [ "$(jq -r '.changes[0].current.rule' "$tmp/j")" = "$rule" ] &&
   [ "$(jq -r '.changes[0].candidate.reason' "$tmp/j")" = ENI_SG_RULES_MISMATCH ] &&
   [ "$(jq '.newly_admitted.flows' "$tmp/j")" = 0 ] && [ "$(jq '.complete' "$tmp/j")" = true ]; then
	ok "--json: the same counts and rules"
else
	bad "--json: $(cat "$tmp/j")"
fi

# the same from the flow logs that replay wrote (AWS's S3 layout, gzip)
diff_run -c "$conf" -c2 "$tmp/cand" --traffic "$tmp/fl"
got=$(sed -n 's/^newly refused: \([0-9]*\) flows.*/\1/p' "$tmp/out" | head -1)
if [ "$rc" -eq 1 ] && [ "$got" = "$want" ] && grep -qxF "  now:       ACCEPT RULES_ALLOW (sg-ingress): $rule" "$tmp/out"; then
	ok "flow logs: the same $want flows newly refused, the rule named"
else
	bad "flow logs: exit $rc, want $want: $(cat "$tmp/out" "$tmp/err")"
fi

# 3. a candidate with one more rule: MySQL to the database from anywhere
refused=$(jq -s '[.[] | select(.verdict == "REJECT" and .stage == "sg-ingress" and .dport == 3306 and
	.dst_interface == "eni-00000000000db01") | [.src, .sport, .dst, .dport]] | unique | length' "$tmp/v.jsonl")
mkdir "$tmp/cand2"
cp "$conf"/*.json "$tmp/cand2/"
jq '(.SecurityGroups[] | select(.GroupId == "sg-00000000000000db") | .IpPermissions) += [{"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}], "PrefixListIds": [], "UserIdGroupPairs": []}]' \
	"$conf/40-security-groups.json" >"$tmp/cand2/40-security-groups.json"
"$VPCFWCTL" --json diff -c "$conf" -c2 "$tmp/cand2" --traffic "$pcap" >"$tmp/j2" 2>"$tmp/err"
rc=$?
adm=$(jq '.newly_admitted.flows' "$tmp/j2")
if [ "$refused" -lt 2 ]; then
	bad "the example refuses $refused flows to the database's MySQL: the test needs more"
elif [ "$rc" -eq 1 ] && [ "$adm" = "$refused" ] &&
     [ "$(jq -r '[.changes[] | select(.change == "admitted")][0].candidate.rule' "$tmp/j2")" = "sg-00000000000000db IpPermissions[2]" ]; then
	ok "a new rule: the $adm flows it admits are newly admitted, by sg-00000000000000db IpPermissions[2]"
else
	bad "a new rule: exit $rc, admitted $adm of $refused: $(cat "$tmp/j2" "$tmp/err")"
fi

# 4. errors: exit 2
diff_run -c "$conf" -c2 "$tmp/cand" --traffic "$tmp/none"
if [ "$rc" -eq 2 ] && grep -q "$tmp/none" "$tmp/err"; then ok "unreadable traffic: exit 2, the file named"
else bad "unreadable traffic: exit $rc: $(cat "$tmp/err")"; fi

echo '{"SecurityGroups": [{"GroupId": 7}]}' >"$tmp/bad.json"
diff_run -c "$conf" -c2 "$tmp/bad.json" --traffic "$pcap"
if [ "$rc" -eq 2 ] && grep -q 'candidate configuration is refused' "$tmp/err"; then
	ok "a refused candidate: exit 2"
else
	bad "a refused candidate: exit $rc: $(cat "$tmp/err")"
fi

diff_run -c "$conf" --traffic "$pcap"
if [ "$rc" -eq 2 ]; then ok "no candidate: usage, exit 2"; else bad "no candidate: exit $rc"; fi

printf 'version account-id interface-id srcaddr\nnot a record at all here\n' >"$tmp/broken.log"
diff_run -c "$conf" -c2 "$tmp/cand" --traffic "$pcap" "$tmp/broken.log"
if [ "$rc" -eq 2 ] && grep -q 'broken.log:2' "$tmp/err"; then
	ok "a malformed flow-log line: reported with file and line, exit 2 (incomplete)"
else
	bad "a malformed flow-log line: exit $rc: $(cat "$tmp/err")"
fi

[ "$fail" -eq 0 ] && echo "diff: all passed"
exit "$fail"
