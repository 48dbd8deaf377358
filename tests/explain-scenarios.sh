#!/bin/sh
# vpcfwctl explain (offline, -c) agrees with the replay's verdicts on every
# packet of the scenarios that opens a flow (tests/tools/explain-vs-scenarios).
set -eu
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
exec /usr/bin/python3 "$top_srcdir/tests/tools/explain-vs-scenarios" \
	"$top_builddir/src/vpcfwctl" "$top_srcdir/tests/scenarios"
