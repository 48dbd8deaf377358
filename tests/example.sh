#!/usr/bin/env bash
# The shipped example is a test too: conf/three-tier/ must load without a
# warning, conf/three-tier.pcap must be what tests/tools/mkpcap.py makes of
# conf/three-tier-traffic.json, and replaying it must give every packet the
# verdict its "expect" names.
set -euo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir/build}/src/vpcfwd}
conf=$top_srcdir/conf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== $VPCFWD -c conf/three-tier --check-config --strict"
"$VPCFWD" -c "$conf/three-tier" --check-config --strict

# the freshness check needs scapy (mkpcap.py): without it the whole test is
# skipped (77), loudly, rather than passing with a part unchecked
if ! /usr/bin/python3 -c 'import scapy' 2>/dev/null; then
	echo "SKIP: /usr/bin/python3 has no scapy (python3-scapy): cannot check that" \
		"conf/three-tier.pcap is up to date"
	exit 77
fi
echo "== conf/three-tier.pcap is up to date with conf/three-tier-traffic.json"
/usr/bin/python3 "$top_srcdir/tests/tools/mkpcap.py" "$conf/three-tier-traffic.json" "$tmp/regenerated.pcap"
if ! cmp -s "$tmp/regenerated.pcap" "$conf/three-tier.pcap"; then
	echo "FAIL: conf/three-tier.pcap differs from what tests/tools/mkpcap.py makes of" \
		"conf/three-tier-traffic.json: regenerate and commit it" >&2
	exit 1
fi

echo "== $VPCFWD -c conf/three-tier --replay conf/three-tier.pcap"
"$VPCFWD" -c "$conf/three-tier" --replay "$conf/three-tier.pcap" --verdicts "$tmp/verdicts.jsonl"
/usr/bin/python3 "$top_srcdir/tests/tools/verdict-table" "$tmp/verdicts.jsonl" "$conf/three-tier-traffic.json"
