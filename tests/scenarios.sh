#!/usr/bin/env bash
# Runs the filtering scenarios of tests/scenarios/ through `vpcfwd --replay`
# (tests/tools/scenario-check; its --help describes the format).
set -euo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir/build}/src/vpcfwd}

# The scenarios need scapy to build their packets (Debian: python3-scapy).
/usr/bin/python3 -c 'import scapy' 2>/dev/null || { echo "SKIP: no python3-scapy"; exit 77; }

# Scenarios with flow-log expectations also check the records vpcfwd writes
# under --flow-log-dir.

exec /usr/bin/python3 "$top_srcdir/tests/tools/scenario-check" "$VPCFWD" "$top_srcdir/tests/scenarios"
