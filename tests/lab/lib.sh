# Network-namespace lab helpers, sourced by the lab scripts.
#
# Every name carries the prefix $LAB (vpcfw-PID-) so that concurrent runs do
# not collide, and lab_cleanup removes all of it; callers trap it on EXIT.
# Rules are added only inside the lab's gateway namespace, never in the
# namespace this script runs in.

LAB=${LAB:-vpcfw-$$-}
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
PY=${PY:-/usr/bin/python3}
LAB_PIDS=

lab_ns() { echo "${LAB}$1"; }
in_ns() { local ns=$1; shift; ip netns exec "$(lab_ns "$ns")" "$@"; }

lab_cleanup() {
	local p ns
	for p in $LAB_PIDS; do
		kill "$p" 2>/dev/null
	done
	for p in $LAB_PIDS; do
		wait "$p" 2>/dev/null
	done
	LAB_PIDS=
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${LAB}"); do
		# processes still inside (servers) go with the namespace
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill "$p" 2>/dev/null
		done
		ip netns del "$ns" 2>/dev/null
	done
}

# lab_can_run: root, network namespaces, iptables with NFQUEUE inside one,
# and Debian's python3; else a reason on stdout and false.
lab_can_run() {
	local ns="${LAB}probe" ok
	[ "$(id -u)" = 0 ] || { echo "lab: not root, skipped"; return 1; }
	command -v ip >/dev/null && command -v iptables >/dev/null && command -v ip6tables >/dev/null ||
		{ echo "lab: ip/iptables/ip6tables missing, skipped"; return 1; }
	[ -x "$PY" ] || { echo "lab: $PY not found, skipped"; return 1; }
	ip netns add "$ns" 2>/dev/null || { echo "lab: ip netns unavailable, skipped"; return 1; }
	ip netns exec "$ns" iptables -A FORWARD -j NFQUEUE --queue-num 0 --queue-bypass >/dev/null 2>&1 &&
		ip netns exec "$ns" ip6tables -A FORWARD -j NFQUEUE --queue-num 0 --queue-bypass >/dev/null 2>&1
	ok=$?
	ip netns del "$ns" 2>/dev/null
	[ $ok = 0 ] || { echo "lab: NFQUEUE unavailable in a namespace, skipped"; return 1; }
	return 0
}

# lab_begin_ctl: the start of a test that drives $VPCFWD and $CTL: skipped
# (77) where the lab cannot run or either is missing; a scratch directory
# $T and the cleanup on exit (namespaces, processes, $T); fails=0
lab_begin_ctl() {
	lab_can_run || exit 77
	[ -x "$VPCFWD" ] && [ -x "$CTL" ] || { echo "lab: no vpcfwd/vpcfwctl, skipped"; exit 77; }
	T=$(mktemp -d)
	trap 'lab_cleanup; rm -rf "$T"' EXIT
	trap 'exit 130' INT TERM HUP
	fails=0
}

# lab_gateway: the gateway namespace, forwarding both families.
lab_gateway() {
	ip netns add "$(lab_ns gw)"
	in_ns gw ip link set lo up
	in_ns gw sysctl -qw net.ipv4.ip_forward=1
	in_ns gw sysctl -qw net.ipv6.conf.all.forwarding=1
	in_ns gw sysctl -qw net.ipv4.conf.all.rp_filter=0
	in_ns gw sysctl -qw net.ipv4.conf.default.rp_filter=0
}

# lab_host NAME DEV GW4 HOST4/LEN GW6 HOST6/LEN: a host namespace linked to
# the gateway by a veth pair; DEV is the gateway's end.
lab_host() {
	local name=$1 dev=$2 gw4=$3 host4=$4 gw6=$5 host6=$6 ns
	ns=$(lab_ns "$name")
	ip netns add "$ns"
	ip link add "${LAB}t" type veth peer name "${LAB}p"
	ip link set "${LAB}t" netns "$(lab_ns gw)" name "$dev"
	ip link set "${LAB}p" netns "$ns" name eth0
	in_ns "$name" ip link set lo up
	in_ns "$name" sysctl -qw net.ipv6.conf.all.accept_dad=0
	in_ns "$name" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
	in_ns gw sysctl -qw "net.ipv6.conf.$dev.accept_dad=0"
	in_ns gw sysctl -qw "net.ipv4.conf.$dev.rp_filter=0"
	in_ns "$name" ip addr add "$host4" dev eth0
	in_ns "$name" ip -6 addr add "$host6" dev eth0 nodad
	in_ns "$name" ip link set eth0 up
	in_ns gw ip addr add "$gw4/${host4#*/}" dev "$dev"
	in_ns gw ip -6 addr add "$gw6/${host6#*/}" dev "$dev" nodad
	in_ns gw ip link set "$dev" up
	in_ns "$name" ip route add default via "$gw4"
	in_ns "$name" ip -6 route add default via "$gw6"
}

# lab_bg NS CMD...: a background process inside a lab namespace.
lab_bg() {
	local ns=$1; shift
	in_ns "$ns" "$@" &
	LAB_PIDS="$LAB_PIDS $!"
}

# lab_wait_file FILE SECONDS: waits until FILE is non-empty.
lab_wait_file() {
	local i=0
	while [ ! -s "$1" ]; do
		i=$((i + 1))
		[ $i -gt $(($2 * 20)) ] && return 1
		sleep 0.05
	done
	return 0
}

# ------------------------------------------------------------ three tiers
# The SPEC's three-tier example on real links.  Gateway devices carry the
# names the lab's InterfaceBindings use.
#   web 10.0.1.10   app 10.0.2.10   db 10.0.3.10   (and ...:N::10 in IPv6)
#   internet 203.0.113.7 / 2001:db8:ffff::7   corp 198.51.100.20 / 2001:db8:c0::20
WEB4=10.0.1.10 WEB6=2001:db8:1234:1::10
APP4=10.0.2.10 APP6=2001:db8:1234:2::10
DB4=10.0.3.10 DB6=2001:db8:1234:3::10
INET4=203.0.113.7 INET6=2001:db8:ffff::7
CORP4=198.51.100.20 CORP6=2001:db8:c0::20

lab_three_tier() {
	lab_gateway
	lab_host web vweb 10.0.1.1 $WEB4/24 2001:db8:1234:1::1 $WEB6/64
	lab_host app vapp 10.0.2.1 $APP4/24 2001:db8:1234:2::1 $APP6/64
	lab_host db vdb 10.0.3.1 $DB4/24 2001:db8:1234:3::1 $DB6/64
	lab_host inet vinet 203.0.113.1 $INET4/24 2001:db8:ffff::1 $INET6/64
	lab_host corp vcorp 198.51.100.1 $CORP4/24 2001:db8:c0::1 $CORP6/64
}

# lab_servers DIR: echo servers on every host (TCP 22 80 443 8000 3306,
# UDP 53 5000).
lab_servers() {
	local h
	for h in web app db inet corp; do
		lab_bg $h "$PY" "$LAB_DIR/probe.py" serve "$1/ready-$h" \
			--tcp 22,80,443,8000,3306 --udp 53,5000
	done
	for h in web app db inet corp; do
		lab_wait_file "$1/ready-$h" 10 || return 1
	done
}

# lab_config SRCDIR OUTDIR [QUEUES]: the example's JSON with the lab's Vpcfw
# section (bindings to the gateway's devices).
lab_config() {
	mkdir -p "$2"
	for f in "$1"/*.json; do
		case $(basename "$f") in *vpcfw*) continue;; esac
		cp "$f" "$2/"
	done
	cat >"$2/90-vpcfw.json" <<JSON
{
    "Vpcfw": {
        "Queues": [${3:-0}],
        "InterfaceBindings": [
            {"NetworkInterfaceId": "eni-0000000000web01", "Device": "vweb"},
            {"NetworkInterfaceId": "eni-0000000000app01", "Device": "vapp"},
            {"NetworkInterfaceId": "eni-00000000000db01", "Device": "vdb"}
        ]
    }
}
JSON
}

# lab_queue_rules ARGS...: every forwarded packet of both families to
# NFQUEUE, inside the gateway only.  ARGS: the target's options.
lab_queue_rules() {
	in_ns gw iptables -F FORWARD
	in_ns gw ip6tables -F FORWARD
	in_ns gw iptables -A FORWARD -j NFQUEUE "$@"
	in_ns gw ip6tables -A FORWARD -j NFQUEUE "$@"
}

# lab_start_vpcfwd LOG ARGS...: vpcfwd inside the gateway; waits until it
# serves.  Sets VPCFWD_PID.  LAB_WRAP: a command (words) that execs vpcfwd,
# e.g. setpriv, so the PID stays vpcfwd's.
lab_start_vpcfwd() {
	local log=$1 i=0
	shift
	: >"$log"
	# shellcheck disable=SC2086 # LAB_WRAP is words
	ip netns exec "$(lab_ns gw)" ${LAB_WRAP:-} "$VPCFWD" -f "$@" 2>>"$log" &
	VPCFWD_PID=$!
	LAB_PIDS="$LAB_PIDS $VPCFWD_PID"
	until grep -q 'serving queue' "$log"; do
		kill -0 "$VPCFWD_PID" 2>/dev/null || { cat "$log"; return 1; }
		i=$((i + 1))
		[ $i -gt 200 ] && { cat "$log"; return 1; }
		sleep 0.05
	done
}

# lab_stop_vpcfwd: SIGTERM, and the exit status in VPCFWD_STATUS.
lab_stop_vpcfwd() {
	kill -TERM "$VPCFWD_PID" 2>/dev/null
	wait "$VPCFWD_PID"
	VPCFWD_STATUS=$?
	LAB_PIDS=$(echo "$LAB_PIDS" | tr ' ' '\n' | grep -vx "$VPCFWD_PID" | tr '\n' ' ')
}

# lab_wait_log LOG PATTERN [SECONDS]
lab_wait_log() {
	local i=0
	until grep -q -- "$2" "$1"; do
		i=$((i + 1))
		[ $i -gt $((${3:-5} * 20)) ] && return 1
		sleep 0.05
	done
}

# The paths of the three-tier example: from, to, address, protocol, port,
# what AWS would do and, for a refusal, the reason vpcfwd must give (its
# reason codes, SPEC).  The ports are the example's security-group rules.
lab_paths() {
	cat <<PATHS
inet web $WEB4 tcp 80 ACCEPT
inet web $WEB6 tcp 443 ACCEPT
inet web $WEB4 tcp 22 REJECT ENI_SG_RULES_MISMATCH
corp web $WEB4 tcp 22 ACCEPT
corp app $APP4 tcp 22 ACCEPT
corp db $DB4 tcp 22 ACCEPT
corp web $WEB6 tcp 22 REJECT ENI_SG_RULES_MISMATCH
web app $APP4 tcp 8000 ACCEPT
web app $APP6 tcp 8000 ACCEPT
inet app $APP4 tcp 8000 REJECT ENI_SG_RULES_MISMATCH
db app $APP4 tcp 8000 REJECT ENI_SG_RULES_MISMATCH
app db $DB4 tcp 3306 ACCEPT
app db $DB6 tcp 3306 ACCEPT
web db $DB4 tcp 3306 REJECT ENI_SG_RULES_MISMATCH
inet db $DB6 tcp 3306 REJECT ENI_SG_RULES_MISMATCH
app web $WEB4 tcp 80 ACCEPT
web inet $INET4 tcp 443 ACCEPT
web inet $INET4 udp 53 ACCEPT
db inet $INET6 udp 53 ACCEPT
inet web $WEB4 udp 53 REJECT ENI_SG_RULES_MISMATCH
web inet $INET4 icmp - ACCEPT
web inet $INET6 icmp - ACCEPT
inet web $WEB4 icmp - REJECT ENI_SG_RULES_MISMATCH
inet web $WEB6 icmp - REJECT ENI_SG_RULES_MISMATCH
inet web 10.0.1.77 tcp 80 REJECT ENI_SOURCE_DEST_CHECK_RESTRICTION
PATHS
}

# lab_matrix LOG: tries every path, prints the table; returns the number of
# paths whose outcome differs from AWS's.  Each outcome is one of
#   ACCEPT  the probe got its answer, and vpcfwd logged no refusal of it;
#   REJECT  the firewall's verdict: vpcfwd logged the refusal of this very
#           probe (its source port or ICMP id) in LOG, and the probe saw the
#           drop (timeout); the logged reason must be the expected one;
#   ERROR   anything else: the probe failed (a host's RST or unreachable, a
#           timeout) without vpcfwd refusing it, or an answer despite a
#           logged refusal.  An error never counts as a refusal.
LAB_SPORT=${LAB_SPORT:-20000}
lab_matrix() {
	local log=$1 from to addr proto port expect want_reason got res reason key bad=0 note
	printf '%-5s %-5s %-20s %-5s %-5s %-8s %-8s %s\n' from to address proto port expected got reason
	local ns src
	while read -r from to addr proto port expect want_reason; do
		LAB_SPORT=$((LAB_SPORT + 1))
		# FROM may be HOST@ADDRESS: a source address of that host's
		ns=${from%@*} src=
		[ "$ns" = "$from" ] || src=${from#*@}
		if [ "$proto" = icmp ]; then
			res=$(in_ns "$ns" "$PY" "$LAB_DIR/probe.py" icmp "$addr" --id $LAB_SPORT)
			key="id $LAB_SPORT:"
		else
			res=$(in_ns "$ns" "$PY" "$LAB_DIR/probe.py" "$proto" "$addr" "$port" --sport $LAB_SPORT \
				${src:+--src "$src"})
			key=":$LAB_SPORT -> "
		fi
		reason=-
		# a refusal is logged by the daemon's logging thread: wait for it
		# when the probe failed, look once when it succeeded
		if [ "$res" = ok ]; then
			grep -q -- "REJECT .*$key" "$log" && reason=$(lab_reason "$log" "$key")
		elif lab_wait_log "$log" "$key" 1; then
			reason=$(lab_reason "$log" "$key")
		fi
		if [ "$res" = ok ] && [ "$reason" = - ]; then
			got=ACCEPT
		elif [ "$res" = timeout ] && [ "$reason" != - ]; then
			got=REJECT
		else
			got="ERROR($res)"
		fi
		note=
		if [ "$got" != "$expect" ]; then
			note='   <-- differs'
		elif [ "$got" = REJECT ] && [ "$reason" != "${want_reason:-$reason}" ]; then
			note="   <-- reason differs (want $want_reason)"
		elif [ "$got" = REJECT ] && [ -z "$want_reason" ]; then
			note='   <-- no expected reason given'
		fi
		[ -z "$note" ] || bad=$((bad + 1))
		printf '%-5s %-5s %-20s %-5s %-5s %-8s %-8s %s%s\n' "$from" "$to" "$addr" "$proto" "$port" \
			"$expect" "$got" "$reason" "$note"
	done
	return $bad
}

# lab_reason LOG KEY: the reason code of vpcfwd's first refusal line that
# contains KEY ("REJECT tcp SRC:PORT -> DST:PORT: REASON stage (rule)").
lab_reason() {
	grep -- "$2" "$1" | grep -m1 'REJECT ' |
		awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[A-Z][A-Z_]+$/ && $i != "REJECT") { print $i; exit }}'
}

# ---- results of a lab script: pass/fail lines, counted in $fails
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { # check NAME EXPECTED GOT
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (expected $2, got $3)"; fi
}
# lab_caps PID -> "CapInh CapPrm CapEff CapBnd CapAmb" of /proc/PID/status
# (hex masks; CAP_NET_ADMIN is bit 12 = 0000000000001000)
lab_caps() {
	awk '/^Cap(Inh|Prm|Eff|Bnd|Amb):/ {printf "%s%s=%s", s, substr($1, 4, 3), $2; s=" "}' \
		"/proc/$1/status"
}
probe() { # probe FROM ARGS... -> ok / timeout / ...
	local from=$1
	shift
	in_ns "$from" "$PY" "$LAB_DIR/probe.py" "$@"
}

# ---- shared by the tracked-stream tests (restart.sh, rst.sh, ha.sh)

# lab_conf_tracked_only DIR: the three-tier example (without its Vpcfw
# file) with app's security group allowing no egress at all, so app's
# segments pass only as a tracked flow's
lab_conf_tracked_only() {
	mkdir -p "$1"
	for f in "$top_srcdir"/conf/three-tier/*.json; do
		case $(basename "$f") in *vpcfw*) continue;; esac
		cp "$f" "$1/"
	done
	"$PY" - "$1/40-security-groups.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for g in d["SecurityGroups"]:
    if g["GroupId"] == "sg-0000000000000app":
        g["IpPermissionsEgress"] = []
json.dump(d, open(p, "w"), indent=1)
PYEOF
}

# lab_conf_offload DIR SOCKET [MORE-VPCFW-KEYS]: lab_conf_tracked_only with
# queue 0, the control socket SOCKET, Offload on and web and app bound to
# vweb and vapp (MORE-VPCFW-KEYS: '"Key": value,' each)
lab_conf_offload() {
	lab_conf_tracked_only "$1"
	cat >"$1/90-vpcfw.json" <<JSON
{"Vpcfw": {"Queues": [0], "ControlSocket": "$2", "Offload": true, ${3:-}
  "InterfaceBindings": [
    {"NetworkInterfaceId": "eni-0000000000web01", "Device": "vweb"},
    {"NetworkInterfaceId": "eni-0000000000app01", "Device": "vapp"}]}}
JSON
}

# lab_conf_drop_nacl_in100 DIR: DIR's network ACLs without their inbound
# IPv4 allow entry 100 (what admits the example's traffic into a subnet)
lab_conf_drop_nacl_in100() {
	"$PY" - "$1/30-network-acls.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for n in d["NetworkAcls"]:
    n["Entries"] = [e for e in n["Entries"] if not (e["RuleNumber"] == 100 and not e["Egress"])]
json.dump(d, open(p, "w"), indent=1)
PYEOF
}

# stream_count STATUS: lines a stream.py client has received (-1: closed)
stream_count() {
	local s
	s=$(cat "$1" 2>/dev/null)
	case $s in closed*) echo -1;; "") echo 0;; *) echo "${s%% *}";; esac
}

# stream_wait_more STATUS FROM N SECONDS: until the client has N lines
# more than FROM (1: closed or timed out)
stream_wait_more() {
	local i=0 c
	while :; do
		c=$(stream_count "$1")
		[ "$c" -ge $(($2 + $3)) ] && return 0
		[ "$c" -lt 0 ] && return 1
		i=$((i + 1))
		[ $i -gt $(($4 * 20)) ] && return 1
		sleep 0.05
	done
}
