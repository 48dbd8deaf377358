#!/bin/sh
# `vpcfwd --check-config` agrees with the daemon's start: for each case the
# check and `vpcfwd -f` (the start, which stops before opening any queue)
# both refuse, with the same error and warning lines; a good configuration passes the check.
# As root the daemon runs in a network namespace of its own (unshare -n), so
# that a regression could not serve a queue of this host.  (A bad -q or -u
# is a usage error in every mode, before any of this: tests/cli.sh.)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$top_srcdir}
VPCFWD=${VPCFWD:-$top_builddir/src/vpcfwd}

if [ ! -x "$VPCFWD" ]; then
	echo "SKIP: $VPCFWD not built"; exit 77
fi
isolate=
if [ "$(id -u)" = 0 ]; then
	if ! unshare -n true 2>/dev/null; then
		echo "SKIP: root, but unshare -n fails: the daemon would run in this host's namespace"
		exit 77
	fi
	isolate="unshare -n"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
conf="$top_srcdir/conf/three-tier"

# case NAME VPCFW-JSON [vpcfwd options...]
case_() {
	name=$1 vpcfw=$2
	shift 2
	mkdir -p "$tmp/$name"
	cp "${src:-$conf}"/*.json "$tmp/$name/"
	printf '{"Vpcfw": %s}\n' "$vpcfw" >"$tmp/$name/90-vpcfw.json"
	rc=0
	"$VPCFWD" --check-config -c "$tmp/$name" "$@" >/dev/null 2>"$tmp/check.err" || rc=$?
	drc=0
	$isolate timeout 20 "$VPCFWD" -f -c "$tmp/$name" "$@" >/dev/null 2>"$tmp/daemon.err" || drc=$?
	grep -E '^(error|warning): ' "$tmp/check.err" >"$tmp/check.lines" || true
	sed -n -E 's/^vpcfwd: (error|warning): /\1: /p' "$tmp/daemon.err" >"$tmp/daemon.lines"
	if [ "$rc" != 1 ] || [ "$drc" != 1 ]; then
		echo "FAIL $name: --check-config exit $rc, daemon exit $drc (both must be 1)"
		cat "$tmp/check.err" "$tmp/daemon.err"
		fail=1
	elif [ ! -s "$tmp/check.lines" ] || ! diff -u "$tmp/check.lines" "$tmp/daemon.lines"; then
		echo "FAIL $name: the check and the daemon's start give different errors"
		fail=1
	else
		echo "ok   $name: both refuse: $(head -1 "$tmp/check.lines")"
	fi
}

long=/run/$(printf '%0300d' 0 | tr 0 s).sock
case_ too-many-queues '{"Queues": "0-65535"}'
case_ control-socket-too-long "{\"ControlSocket\": \"$long\"}"
case_ read-only-socket-too-long "{\"ReadOnlySocket\": \"$long\"}"
case_ decision-log-nowhere "{\"DecisionLog\": \"$tmp/no/such/dir/d.log\"}"
case_ flow-log-dir-a-file '{}' --flow-log-dir "$conf/10-vpcs.json"
case_ strict-binding-without-device \
	'{"InterfaceBindings": [{"NetworkInterfaceId": "eni-0000000000app01", "Device": "vpcfw-none0"}]}' \
	--strict

# issue #12: no network interface, nothing to enforce: refused by both,
# unless --allow-empty (the check passes then)
mkdir -p "$tmp/vpc-only"
cp "$conf/10-vpcs.json" "$tmp/vpc-only/"
src=$tmp/vpc-only case_ no-interface '{}'
if "$VPCFWD" --check-config --allow-empty -c "$tmp/vpc-only" >/dev/null 2>"$tmp/empty.err"; then
	echo "ok   no-interface --allow-empty: passes"
else
	echo "FAIL no-interface --allow-empty: refused:"; cat "$tmp/empty.err"; fail=1
fi

# the control: what the daemon would start with passes the check
if "$VPCFWD" --check-config -c "$conf" -q 0-3 >/dev/null 2>"$tmp/good.err"; then
	echo "ok   good: the example passes"
else
	echo "FAIL good: the example is refused:"; cat "$tmp/good.err"; fail=1
fi
exit $fail
