#!/usr/bin/env bash
# The command lines keep what the man pages promise: exit 2 for a usage
# error in every mode, errors on standard error, `vpcfwctl help [VERB]`.
# No daemon is needed: every case here fails (or answers) before connecting,
# or is pointed at a socket that does not exist (exit 1).
set -uo pipefail
top_srcdir=${top_srcdir:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir/build}/src/vpcfwd}
CTL=${CTL:-$(dirname "$VPCFWD")/vpcfwctl}
conf=$top_srcdir/conf/three-tier
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# expect STATUS STDERR-PATTERN -- command...: the status, stderr matching,
# and a usage error's stdout empty
expect() {
	local want=$1 pat=$2 rc
	shift 3
	"$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" != "$want" ]; then
		echo "FAIL (exit $rc, wanted $want): $*"; sed 's/^/  /' "$tmp/err"; fails=$((fails + 1))
	elif [ -n "$pat" ] && ! grep -qE -e "$pat" "$tmp/err"; then
		echo "FAIL (stderr lacks /$pat/): $*"; sed 's/^/  /' "$tmp/err"; fails=$((fails + 1))
	elif [ "$want" = 2 ] && [ -s "$tmp/out" ]; then
		echo "FAIL (a usage error printed on stdout): $*"; fails=$((fails + 1))
	else
		echo "ok   exit $rc: $*"
	fi
}
nosock=$tmp/none.sock

expect 2 'explain needs' -- "$CTL" -s "$nosock" explain tcp 203.0.113.7
expect 2 "on or off, not 'maybe'" -- "$CTL" -s "$nosock" audit maybe
expect 2 'unknown verb' -- "$CTL" -s "$nosock" frobnicate
expect 2 'usage' -- "$CTL"
expect 2 'usage' -- "$CTL" --bogus status
expect 2 'takes no arguments' -- "$CTL" -s "$nosock" status extra
expect 2 "port 'x'" -- "$CTL" -s "$nosock" flows -p x
expect 2 'usage: vpcfwctl flows' -- "$CTL" -s "$nosock" flows -z
expect 2 "limit '-1'" -- "$CTL" -s "$nosock" shadow report -n -1
expect 2 'usage: vpcfwctl shadow' -- "$CTL" -s "$nosock" shadow load
expect 2 'usage: vpcfwctl check-config' -- "$CTL" check-config -x
expect 2 "unknown verb 'nope'" -- "$CTL" help nope
expect 0 '' -- "$CTL" help
expect 0 '' -- "$CTL" help explain
grep -q 'usage: vpcfwctl explain' "$tmp/out" && echo "ok   help explain prints its synopsis" ||
	{ echo "FAIL: help explain: $(cat "$tmp/out")"; fails=$((fails + 1)); }
expect 1 'cannot connect' -- "$CTL" -s "$nosock" status
# check-config: the verdict on stdout, the messages and a refusal on stderr
expect 0 '' -- "$CTL" check-config -c "$conf"
grep -qx 'configuration valid' "$tmp/out" && echo "ok   check-config: valid on stdout" ||
	{ echo "FAIL: check-config stdout: $(cat "$tmp/out")"; fails=$((fails + 1)); }
echo '{"SecurityGroups": 3}' >"$tmp/bad.json"
expect 1 'error: .*bad.json' -- "$CTL" check-config -c "$tmp/bad.json"
[ ! -s "$tmp/out" ] && echo "ok   check-config: a refused file prints nothing on stdout" ||
	{ echo "FAIL: check-config printed on stdout: $(cat "$tmp/out")"; fails=$((fails + 1)); }

# vpcfwd: options checked in every mode
expect 2 "-q 'abc'" -- "$VPCFWD" --check-config -q abc -c "$conf"
expect 2 "-q 'abc'" -- "$VPCFWD" --replay /dev/null -q abc -c "$conf"
expect 2 "-q '0-99999'" -- "$VPCFWD" --print-config -q 0-99999 -c "$conf"
expect 2 "no such user" -- "$VPCFWD" --check-config -u no-such-user-vpcfw -c "$conf"
expect 2 'unexpected argument' -- "$VPCFWD" --check-config -c "$conf" extra
expect 2 'needs --replay' -- "$VPCFWD" --check-config --verdicts - -c "$conf"
expect 2 'no configuration' -- "$VPCFWD" --check-config
expect 0 '' -- "$VPCFWD" --check-config -q 0-3 -c "$conf"
expect 1 'refused' -- "$VPCFWD" --check-config -c "$tmp/bad.json"

# vpcfwctl is a client: the control socket's server and the packet path's
# live parts (NFQUEUE, the server's verbs) are not in it
if command -v nm >/dev/null; then
	for sym in ctl_open ctl_serve ctl_handle nfqueue_open; do
		if nm "$CTL" | grep -qE " [TtWw] $sym\$"; then
			echo "FAIL: vpcfwctl links $sym"; fails=$((fails + 1))
		else
			echo "ok   vpcfwctl does not link $sym"
		fi
	done
fi

echo "$fails failure(s)"
exit $((fails ? 1 : 0))
