#!/bin/bash
# vpcfw-lab (issue #14 item 1) on the shipped three-tier example and on a
# configuration with two VPCs, secondary addresses, IPv6 and delegated
# prefixes (tests/data/lab/two-vpcs): every path probed through real sockets,
# with its exit status (0 through, 1 refused, 2 usage or lab error) and
# vpcfwd's reason; a reload keeps a tracked flow while the revoked rule
# refuses new ones, and one that adds and removes interfaces builds and
# removes their namespaces; "down" leaves no namespace, veth, process or file, also
# after kill -9 of a vpcfwd.  Needs root.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
top_builddir=${top_builddir:-$top_srcdir}
export VPCFWD=${VPCFWD:-$top_builddir/src/vpcfwd}
export VPCFWCTL=${VPCFWCTL:-$top_builddir/src/vpcfwctl}
LABCMD=${LABCMD:-$top_builddir/src/vpcfw-lab}
. "$here/lib.sh"
lab_can_run || exit 77
for f in "$VPCFWD" "$VPCFWCTL" "$LABCMD"; do
	[ -x "$f" ] || { echo "vpcfw-lab: no $f (build first), skipped"; exit 77; }
done
NAME=t$$
LABS="$NAME ${NAME}b"
T=$(mktemp -d)
cleanup() {
	kill $HOLD_PIDS $SERVE_PID 2>/dev/null
	for n in $LABS; do "$LABCMD" down --name "$n" >/dev/null 2>&1; done
	rm -rf "$T"
}
HOLD_PIDS= SERVE_PID=
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
fails=0
lab() { "$LABCMD" "$@"; }

veths() { ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | sort; }
veths >"$T/veths.before"

# probe_is FROM TO PROTO PORT STATUS [TEXT]: the probe's exit status, and
# TEXT in what it printed (a refusal's reason)
probe_is() {
	local from=$1 to=$2 proto=$3 port=$4 want=$5 text=${6:-} out rc
	[ "$port" = - ] && port=
	out=$(lab probe --name "$NAME" --timeout 1 "$from" "$to" "$proto" $port 2>&1)
	rc=$?
	if [ $rc = "$want" ] && { [ -z "$text" ] || grep -qF -- "$text" <<<"$out"; }; then
		pass "probe $from $to $proto $port: exit $rc${text:+, $text}"
	else
		fail "probe $from $to $proto $port: want exit $want${text:+ and '$text'}, got $rc: $out"
	fi
}

# ---------------------------------------------------------------- three tiers
out=$(lab up --name "$NAME" -c "$top_srcdir/conf/three-tier" 2>&1)
check "up three-tier" 0 $?
echo "$out"
ns_count=$(ip netns list | grep -c "^vpcfwlab-$NAME-")
check "three-tier: 3 interfaces + 1 gateway + outside namespaces" 5 "$ns_count"
# the generated bindings are the ones vpcfwd enforces
st=/run/vpcfw-lab/$NAME/state.json
sock=$(python3 -c 'import json,sys; print(list(json.load(open(sys.argv[1]))["vpcs"].values())[0]["socket"])' "$st")
"$VPCFWCTL" -s "$sock" flows >/dev/null 2>&1
check "vpcfwctl answers on the lab's socket" 0 $?
ip netns exec "vpcfwlab-$NAME-gw-vpc-0a1b2c3d4e5f60001" iptables -S FORWARD | grep -q NFQUEUE
check "NFQUEUE rule inside the gateway namespace" 0 $?
if iptables -S FORWARD 2>/dev/null | grep -q "vpcfwlab" || ip route | grep -q '169.254.254'; then
	fail "a rule or route of the lab in the host's namespace"
else
	pass "nothing of the lab in the host's rules and routes"
fi

# The three-tier example's paths (tests/lab/lib.sh), with the internet and
# the corporate network as addresses of the outside namespace.
while read -r from to addr proto port expect reason; do
	case $from:$addr in
	inet:*:*) from=$INET6 ;; inet:*) from=$INET4 ;;
	corp:*:*) from=$CORP6 ;; corp:*) from=$CORP4 ;;
	esac
	if [ "$addr" = 10.0.1.77 ]; then continue; fi	# below: no interface holds it
	# a refusal's line is vpcfwd's: "refused by vpcfwd (VPC): ... -> ...: REASON stage (rule)"
	[ "$expect" = ACCEPT ] && probe_is "$from" "$addr" "$proto" "$port" 0
	[ "$expect" = REJECT ] && probe_is "$from" "$addr" "$proto" "$port" 1 ": $reason "
done < <(lab_paths)
# names, interface ids, the outside by name, IPv6 sources given by address
probe_is web app tcp 8000 0
probe_is eni-0000000000web01 eni-0000000000app01 tcp 8000 0
probe_is db app tcp 8000 1 ENI_SG_RULES_MISMATCH
probe_is outside web tcp 443 0
probe_is outside app tcp 8000 1 ENI_SG_RULES_MISMATCH
probe_is "$CORP6" "$DB6" tcp 22 1 ENI_SG_RULES_MISMATCH
probe_is 10.0.2.10 web icmp - 1 ENI_SG_RULES_MISMATCH
probe_is "$INET4" 10.0.1.77 tcp 80 1 "no interface holds 10.0.1.77"
# usage and lab errors: 2
probe_is web app sctp 80 2
probe_is web app tcp - 2
probe_is web app tcp 70000 2
probe_is nosuch app tcp 80 2
probe_is 10.0.1.77 web tcp 80 2
lab probe --name "nolab$$" web app tcp 80 >/dev/null 2>&1
check "probe in a lab that does not exist: exit 2" 2 $?
lab up --name "$NAME" -c "$top_srcdir/conf/three-tier" >/dev/null 2>&1
check "up over a lab that is up: exit 2" 2 $?
out=$(lab exec --name "$NAME" web -- ip -o addr show dev eth0)
grep -q '10.0.1.10/24' <<<"$out" && grep -q '2001:db8:1234:1::10/64' <<<"$out"
check "exec web: runs in the namespace holding web's addresses" 0 $?
lab exec --name "$NAME" app -- sh -c 'exit 3'
check "exec: the command's exit status" 3 $?
lab status --name "$NAME" >/dev/null
check "status of a healthy lab: 0" 0 $?
# a drop that is not vpcfwd's (a rule inside web's namespace): no refusal
# logged, and vpcfwctl explain says the running policy admits it
lab exec --name "$NAME" web -- iptables -I INPUT -p tcp --dport 80 -j DROP
probe_is "$INET4" web tcp 80 1 "no refusal logged by vpcfwd; vpcfwctl explain (vpc-0a1b2c3d4e5f60001): ACCEPT "
lab exec --name "$NAME" web -- iptables -D INPUT -p tcp --dport 80 -j DROP
probe_is "$INET4" web tcp 80 0
# a service of the user's (not an echo server) on the outside: a TCP
# handshake is what counts
"$LABCMD" exec --name "$NAME" outside -- "$PY" -m http.server --bind :: 8081 >/dev/null 2>&1 &
SERVE_PID="$SERVE_PID $!"
for i in $(seq 50); do
	[ -n "$(lab exec --name "$NAME" outside -- ss -Hltn 'sport = :8081')" ] && break
	sleep 0.1
done
out=$(lab exec --name "$NAME" web -- curl -s -m 3 -o /dev/null -w '%{http_code}' http://198.51.100.1:8081/)
check "exec web -- curl to a server run in the outside" 200 "$out"
probe_is web 198.51.100.1 tcp 8081 0
probe_is db 2001:db8:ffff::1 tcp 8081 0
probe_is 198.51.100.1 web tcp 8081 1 ENI_SG_RULES_MISMATCH

# ---------------------------------------------------------------- two VPCs, side by side
two=$top_srcdir/tests/data/lab/two-vpcs
N1=$NAME
NAME=${N1}b
lab up --name "$NAME" -c "$two" --flow-log-dir "$T/fl" >/dev/null
check "up two-vpcs beside the three-tier lab (--name)" 0 $?
check "two-vpcs: 3 interfaces + 2 gateways + outside namespaces" 6 \
	"$(ip netns list | grep -c "^vpcfwlab-$NAME-")"
probe_is front back tcp 8080 0				# a group reference
probe_is 10.1.1.11 back tcp 8080 0			# from a secondary address
probe_is 10.1.1.50 back tcp 8080 0			# from the delegated IPv4 prefix
probe_is 2001:db8:a:1:1::5 back tcp 8080 0		# from the delegated IPv6 prefix
probe_is 2001:db8:a:1::10 2001:db8:a:2::10 tcp 8080 0	# IPv6
probe_is back front tcp 8080 1 ENI_SG_RULES_MISMATCH
probe_is outside 10.1.1.11 tcp 80 0			# to a secondary address
probe_is outside 10.1.1.60 tcp 80 0			# into the delegated prefix
probe_is outside 2001:db8:a:1:1::7 tcp 80 0
probe_is outside 10.1.1.11 tcp 81 1 ENI_SG_RULES_MISMATCH
probe_is outside api tcp 22 1 "SUBNET_ACL_RESTRICTION nacl-inbound (acl-0bbbbbbbbbbbbbbb1 inbound rule 90)"
probe_is 2001:db8:ffff::9 2001:db8:b:1::10 tcp 22 1 "SUBNET_ACL_RESTRICTION nacl-inbound (acl-0bbbbbbbbbbbbbbb1 inbound rule 91)"
probe_is outside api udp 443 1 ENI_SG_RULES_MISMATCH
probe_is front api tcp 443 0				# VPC to VPC, through the outside
probe_is api front icmp - 1 ENI_SG_RULES_MISMATCH
probe_is front 198.51.100.9 udp 53 0			# egress to the outside
probe_is front 2001:db8:ffff::53 icmp - 0
probe_is front 198.51.100.9 icmp - 0
# the first lab is still there, untouched
NAME=$N1 probe_is web app tcp 8000 0

# ------------------------------------------------- reload: tracked flows survive
# hold_open KEY TARGET DST PORT SPORT: a connection kept open from TARGET;
# hold_say KEY: one exchange on it, its answer (ok, timeout, ...)
hold_open() {
	local fd
	mkfifo "$T/$1.in"
	: >"$T/$1.out"
	"$LABCMD" exec --name "$NAME" "$2" -- "$PY" "$here/probe.py" hold "$3" "$4" --sport "$5" \
		<"$T/$1.in" >"$T/$1.out" &
	HOLD_PIDS="$HOLD_PIDS $!"
	exec {fd}>"$T/$1.in"
	eval "HOLDFD_$1=$fd"
}
hold_say() {
	local fd n i
	eval "fd=\$HOLDFD_$1"
	n=$(wc -l <"$T/$1.out")
	echo x >&"$fd"
	for i in $(seq 60); do
		[ "$(wc -l <"$T/$1.out")" -gt "$n" ] && break
		sleep 0.1
	done
	[ "$(wc -l <"$T/$1.out")" -gt "$n" ] && tail -n 1 "$T/$1.out" || echo none
}
"$LABCMD" exec --name "$NAME" api -- "$PY" "$here/probe.py" serve "$T/ready-api" --tcp 443 &
SERVE_PID="$SERVE_PID $!"
"$LABCMD" exec --name "$NAME" front -- "$PY" "$here/probe.py" serve "$T/ready-front" --tcp 80 &
SERVE_PID="$SERVE_PID $!"
lab_wait_file "$T/ready-api" 10 && lab_wait_file "$T/ready-front" 10 || fail "servers did not start"
# tracked: api admits 443 from 203.0.113.0/24 only (SPEC section 4)
hold_open api outside 10.2.1.10 443 31443
# untracked: front admits 80 from 0.0.0.0/0 and sends anything anywhere
hold_open front outside 10.1.1.10 80 31080
check "held connection outside -> api:443 before the reload" ok "$(hold_say api)"
check "held connection outside -> front:80 before the reload" ok "$(hold_say front)"
cp -r "$two" "$T/conf2"
python3 - "$T/conf2/40-security-groups.json" <<'EOF2'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for g in d['SecurityGroups']:
    # revoke api's 443 and front's 80
    if g['GroupId'] in ('sg-0bbbbbbbbbbbbbbb1', 'sg-0aaaaaaaaaaaaaaa1'):
        g['IpPermissions'] = [x for x in g['IpPermissions'] if x.get('FromPort') not in (443, 80)]
json.dump(d, open(p, 'w'), indent=1)
EOF2
out=$(lab reload --name "$NAME" -c "$T/conf2" 2>&1)
check "reload with the 443 and 80 rules revoked: exit 0" 0 $?
echo "$out"
check "the tracked connection (api:443) survives the reload" ok "$(hold_say api)"
check "the untracked connection (front:80, rule from 0.0.0.0/0) is cut at once" timeout "$(hold_say front)"
probe_is outside api tcp 443 1 ENI_SG_RULES_MISMATCH
probe_is 2001:db8:ffff::7 api tcp 443 1 ENI_SG_RULES_MISMATCH
probe_is outside front tcp 80 1 ENI_SG_RULES_MISMATCH
probe_is front back tcp 8080 0
check "the tracked connection still works after a refused new one" ok "$(hold_say api)"
# a refused configuration keeps the running one
echo '{"SecurityGroups": [' >"$T/conf2/45-broken.json"
lab reload --name "$NAME" -c "$T/conf2" >"$T/out" 2>&1
check "reload of a broken configuration: exit 2" 2 $?
grep -q '45-broken.json' "$T/out" && pass "the refusal names the broken file" ||
	fail "the refusal does not name 45-broken.json: $(cat "$T/out")"
probe_is front back tcp 8080 0

# interfaces added and removed: their namespaces follow, the daemons reload
rm -f "$T/conf2/45-broken.json"
python3 - "$T/conf2/50-network-interfaces.json" <<'EOF2'
import copy, json, sys
p = sys.argv[1]
d = json.load(open(p))
ifs = d['NetworkInterfaces']
api = next(i for i in ifs if i['NetworkInterfaceId'] == 'eni-0bbbbbbbbbbbbbbb1')
api2 = copy.deepcopy(api)
api2.update(NetworkInterfaceId='eni-0bbbbbbbbbbbbbbb2', PrivateIpAddress='10.2.1.20',
            PrivateIpAddresses=[{'PrivateIpAddress': '10.2.1.20', 'Primary': True}],
            Ipv6Addresses=[{'Ipv6Address': '2001:db8:b:1::20'}],
            TagSet=[{'Key': 'Name', 'Value': 'api2'}])
d['NetworkInterfaces'] = [i for i in ifs if i['NetworkInterfaceId'] != 'eni-0aaaaaaaaaaaaaaa2'] + [api2]
json.dump(d, open(p, 'w'), indent=1)
EOF2
out=$(lab reload --name "$NAME" -c "$T/conf2" 2>&1)
check "reload adding api2 and removing back: exit 0" 0 $?
echo "$out"
check "back's namespace is gone" 0 "$(ip netns list | grep -c "^vpcfwlab-$NAME-eni-0aaaaaaaaaaaaaaa2")"
check "api2's namespace is there" 1 "$(ip netns list | grep -c "^vpcfwlab-$NAME-eni-0bbbbbbbbbbbbbbb2")"
probe_is api api2 tcp 22 0				# one subnet: no ACL between them
probe_is 2001:db8:b:1::10 api2 tcp 22 0
probe_is outside api2 tcp 22 1 "SUBNET_ACL_RESTRICTION"
probe_is front back tcp 8080 2
check "the tracked connection survives a reload that changes interfaces" ok "$(hold_say api)"

# ------------------------------------------------- kill -9 of vpcfwd, then down
# (of the three-tier lab's: the two-vpcs lab's daemons write their flow logs
# out when down stops them, checked below)
pids=$(for n in $N1 $NAME; do
	python3 -c 'import json,sys; print(" ".join(str(v["pid"]) for v in json.load(open(sys.argv[1]))["vpcs"].values()))' \
		"/run/vpcfw-lab/$n/state.json"; done)
victim=$(python3 -c 'import json,sys; print(list(json.load(open(sys.argv[1]))["vpcs"].values())[0]["pid"])' \
	"/run/vpcfw-lab/$N1/state.json")
kill -9 "$victim"
sleep 0.2
lab status --name "$N1" >"$T/out"
check "status after kill -9 of a vpcfwd: exit 1" 1 $?
grep -q 'NOT RUNNING' "$T/out" && pass "status says which vpcfwd is not running" ||
	fail "status: $(cat "$T/out")"
labpids="$pids $SERVE_PID $HOLD_PIDS $(for n in $(ip netns list | awk '{print $1}' | grep "^vpcfwlab-\($N1\|$NAME\)-"); do ip netns pids "$n"; done)"
lab down --name "$N1" >/dev/null
check "down after kill -9: exit 0" 0 $?
lab down --name "$NAME" >/dev/null
check "down of the two-vpcs lab: exit 0" 0 $?
wait $SERVE_PID $HOLD_PIDS 2>/dev/null
left=$(ip netns list | grep -c "^vpcfwlab-\($N1\|$NAME\)-")
check "no namespace left" 0 "$left"
[ ! -e "/run/vpcfw-lab/$N1" ] && [ ! -e "/run/vpcfw-lab/$NAME" ]
check "no file left under /run/vpcfw-lab" 0 $?
alive=
for p in $labpids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
check "no process left (vpcfwd, servers, commands run in the lab)" "" "$alive"
pgrep -f "vpcfwlab-($N1|$NAME)-" >/dev/null
check "no process names a lab namespace" 1 $?
veths >"$T/veths.after"
cmp -s "$T/veths.before" "$T/veths.after"
check "no veth left in the host's namespace" 0 $?
lab down --name "$NAME" >/dev/null
check "down of a lab that is gone: exit 0" 0 $?

# Flow logs: each goes to the gateway of its resource's VPC only, so the
# probe front -> api:443 (an interface of each VPC) is one record in the
# VPC flow log of the shop (at front) and one in api's interface flow log,
# each in AWS's S3 layout under its LogDestination's folder.
out=$(python3 - "$T/fl" <<'EOF2'
import gzip, os, re, sys
root = sys.argv[1]
recs = {}
for dp, _, fns in os.walk(root):
    for fn in fns:
        m = re.match(r'123456789012_vpcflowlogs_eu-west-1_(fl-[0-9a-f]+)_\d{8}T\d{4}Z_[0-9a-f]{8}\.log\.gz$', fn)
        if not m:
            continue
        rel = os.path.relpath(dp, root)
        want = {'fl-0aaaaaaaaaaaaaaa1': 'AWSLogs/', 'fl-0bbbbbbbbbbbbbbb1': 'api/AWSLogs/'}[m.group(1)]
        if not (rel + '/').startswith(want):
            print('misplaced', rel, fn)
        with gzip.open(os.path.join(dp, fn), 'rt') as f:
            recs.setdefault(m.group(1), []).extend(l.split() for l in f.read().splitlines()[1:])
a = recs.get('fl-0aaaaaaaaaaaaaaa1', [])
b = recs.get('fl-0bbbbbbbbbbbbbbb1', [])
fa = sum(1 for r in a if r[2:5] == ['eni-0aaaaaaaaaaaaaaa1', '10.1.1.10', '10.2.1.10'] and r[6] == '443')
fb = sum(1 for r in b if r[2:5] == ['eni-0bbbbbbbbbbbbbbb1', '10.1.1.10', '10.2.1.10'] and r[6] == '443')
other_a = sum(1 for r in a if not r[2].startswith('eni-0aaaaaaaaaaaaaaa'))
other_b = sum(1 for r in b if r[2] not in ('eni-0bbbbbbbbbbbbbbb1',))
print(fa, fb, other_a, other_b)
EOF2
)
check "flow logs: front -> api:443 once in each VPC's flow log, nothing of the other VPC" "1 1 0 0" "$out"

echo "$fails failure(s)"
[ $fails = 0 ]
