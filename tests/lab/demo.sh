#!/bin/bash
# The three-tier example on real traffic: builds a lab of network namespaces
# (a gateway and web, app, db, internet and corporate hosts), runs vpcfwd on
# the gateway, tries each connection, prints what happened and removes the
# lab.  Needs root.  usage: tests/lab/demo.sh [path/to/vpcfwd]
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${1:-${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}}
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$VPCFWD" ] || { echo "demo: no vpcfwd at $VPCFWD (build it first)"; exit 77; }
T=$(mktemp -d)
trap 'lab_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM HUP

echo "building the lab (namespaces ${LAB}*)..."
lab_three_tier && lab_servers "$T" || exit 1
lab_config "$top_srcdir/conf/three-tier" "$T/conf"
lab_queue_rules --queue-num 0
lab_start_vpcfwd "$T/vpcfwd.log" -c "$T/conf" || exit 1
echo "vpcfwd is filtering the gateway's forwarded traffic; trying each path:"
echo
lab_paths | lab_matrix "$T/vpcfwd.log"
bad=$?
echo
lab_stop_vpcfwd
if [ $bad = 0 ]; then
	echo "every path behaved as in AWS"
else
	echo "$bad path(s) differ from AWS; vpcfwd's log:"
	cat "$T/vpcfwd.log"
fi
exit $((bad != 0))
