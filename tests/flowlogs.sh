#!/bin/sh
# Flow logs read by a reader written against AWS's documented layout
# (tests/tools/flowlog-reader):
#  1. the reader accepts AWS's own samples (tests/data/flowlogs) and flags the
#     deliberately bogus line;
#  2. the traffic behind AWS's documented examples, replayed through vpcfwd,
#     gives the same records, field for field, in AWS's S3 layout, and every
#     .gz passes gzip -t;
#  3. cloud-watch-logs output and the decision log are readable.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$top_srcdir}
VPCFWD=${VPCFWD:-$top_builddir/src/vpcfwd}
PY=/usr/bin/python3
reader="$top_srcdir/tests/tools/flowlog-reader"
data="$top_srcdir/tests/data/flowlogs"

if [ ! -x "$VPCFWD" ]; then
	echo "FAIL: $VPCFWD not built"; exit 1
fi
if ! $PY -c 'import scapy' 2>/dev/null; then
	echo "SKIP: $PY has no scapy (Debian: python3-scapy)"; exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# ---- 1. AWS's samples, with the formats their README gives
TCPF="version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status"
TPF="version srcaddr dstaddr srcport dstport protocol start end type packets bytes account-id vpc-id subnet-id instance-id interface-id region az-id sublocation-type sublocation-id action tcp-flags pkt-srcaddr pkt-dstaddr pkt-src-aws-service pkt-dst-aws-service traffic-path flow-direction log-status"
sample() { # FILE EXPECTED-BAD [FORMAT]
	if $PY "$reader" --quiet --expect-bad "$2" ${3:+--format "$3"} "$data/$1"; then
		ok "reader accepts sample $1"
	else
		bad "reader on sample $1"
	fi
}
sample awsdocs_default_v2.log 0
sample awsdocs_tcpflags_custom_v3.log 0 "$TCPF"
sample awsdocs_natgw_custom.log 0 "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr"
sample awsdocs_tgw_custom_v3.log 0 "version interface-id account-id vpc-id subnet-id instance-id srcaddr dstaddr srcport dstport protocol tcp-flags type pkt-srcaddr pkt-dstaddr action log-status"
sample awsdocs_trafficpath_custom_v5.log 0 "$TPF"
sample flowlogs-reader_v2.log 0
sample flowlogs-reader_v3.log 0
sample flowlogs-reader_v4.log 0
sample flowlogs-reader_v5.log 1   # its last line is "bogus line"
# and the reader is not a rubber stamp
printf '2 123456789010 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000100 1700000000 ACCEPT OK\n' >"$tmp/x.log"
if $PY "$reader" --quiet "$tmp/x.log" 2>/dev/null; then bad "reader took start after end"; else ok "reader refuses start after end"; fi
printf '3 123456789010 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1 2 ACCEPT OK\n' >"$tmp/x.log"
if $PY "$reader" --quiet "$tmp/x.log" 2>/dev/null; then bad "reader took a wrong version"; else ok "reader refuses a version above the fields'"; fi

# ---- 2. AWS's documented traffic, replayed
$PY - "$data/replay-cases.json" "$tmp" <<'EOF'
import json, os, sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IP, IPv6, TCP, ICMP, Raw, Ether, wrpcap

cases = json.load(open(sys.argv[1]))
out = sys.argv[2]

def packets(f):
    n, total = f["packets"], f["bytes"]
    q, r = divmod(total, n)
    sizes = [q + 1] * r + [q] * (n - r)
    span = f["last"] - f["first"]
    v6 = ":" in f["src"]
    res = []
    for i, size in enumerate(sizes):
        t = f["first"] + (span * i / (n - 1) if n > 1 else 0)
        l3 = IPv6(src=f["src"], dst=f["dst"]) if v6 else IP(src=f["src"], dst=f["dst"])
        if f["proto"] == "tcp":
            fl = f["flags"]
            flags = fl[0] if i == 0 else fl[2] if i == n - 1 else fl[1]
            l4 = TCP(sport=f["sport"], dport=f["dport"], flags=flags)
        else:
            l4 = ICMP(type=f["flags"][0], id=7, seq=i)
        p = l3 / l4
        pay = size - len(p)
        assert pay >= 0, (f, size, len(p))
        p = Ether() / (p / Raw(b"x" * pay) if pay else p)
        p.time = t
        res.append(p)
    return res

for k, c in enumerate(cases):
    d = os.path.join(out, "case%d" % k)
    os.mkdir(d)
    json.dump(c["config"], open(os.path.join(d, "config.json"), "w"))
    pk = []
    for f in c["flows"]:
        pk += packets(f)
    pk.sort(key=lambda p: float(p.time))   # stable: a flow listed first goes first
    wrpcap(os.path.join(d, "in.pcap"), pk)
    with open(os.path.join(d, "args"), "w") as a:
        a.write("%s\n%s\n%s\n%s\n%s\n" % (c["name"], c["sample"], c["lines"], c.get("format", ""),
                                          c.get("unmodelled", "")))
EOF

for d in "$tmp"/case*; do
	{ read -r name; read -r smp; read -r lines; read -r fmt; read -r loose; } <"$d/args"
	if ! "$VPCFWD" -c "$d/config.json" --replay "$d/in.pcap" --flow-log-dir "$d/out" \
	     >"$d/log" 2>&1; then
		bad "$name: vpcfwd failed"; cat "$d/log"; continue
	fi
	gz=$(find "$d/out" -name '*.log.gz' | wc -l)
	if [ "$gz" -lt 1 ]; then bad "$name: no .log.gz written"; continue; fi
	if find "$d/out" -name '*.gz' -exec gzip -t {} \; 2>"$d/gz.err" && [ ! -s "$d/gz.err" ]; then
		ok "$name: gzip -t"
	else
		bad "$name: gzip -t"; cat "$d/gz.err"
	fi
	if find "$d/out" -name '.*' | grep -q .; then bad "$name: partial files left"; fi
	if $PY "$reader" --quiet --expect "$data/$smp" --expect-lines "$lines" \
	     ${fmt:+--expect-format "$fmt"} ${loose:+--unmodelled "$loose"} "$d/out"; then
		ok "$name: same records as $smp lines $lines"
	else
		bad "$name: records differ from $smp lines $lines"
	fi
done

# ---- 3. cloud-watch-logs and the decision log on the ping case
c0="$tmp/case2"
$PY - "$c0/config.json" "$tmp/cwl.json" "$tmp/decisions.jsonl" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["FlowLogs"][0]["LogDestinationType"] = "cloud-watch-logs"
c["FlowLogs"][0]["LogGroupName"] = "vpc-flow-logs"
c["Vpcfw"]["DecisionLog"] = sys.argv[3]
json.dump(c, open(sys.argv[2], "w"))
EOF
if "$VPCFWD" -c "$tmp/cwl.json" --replay "$c0/in.pcap" --flow-log-dir "$tmp/cwl" >"$tmp/cwl.log" 2>&1 &&
   [ -f "$tmp/cwl/CloudWatchLogs/vpc-flow-logs/eni-1235b8ca123456789.jsonl" ] &&
   $PY "$reader" --quiet --expect "$data/awsdocs_default_v2.log" --expect-lines 5-6 "$tmp/cwl"; then
	ok "cloud-watch-logs: one JSON-lines stream per interface, same records"
else
	bad "cloud-watch-logs output"; cat "$tmp/cwl.log"
fi
if $PY - "$tmp/decisions.jsonl" <<'EOF'
import json, sys
d = [json.loads(l) for l in open(sys.argv[1])]
assert len(d) == 1, d
x = d[0]
assert x["action"] == "REJECT" and x["packets"] == 4 and x["bytes"] == 336, x
assert x["stage"] == "nacl-outbound" and x["reason"] == "SUBNET_ACL_RESTRICTION", x
assert x["rule"] == "acl-1 outbound rule *", x
EOF
then ok "decision log says why the reply was refused"; else bad "decision log"; fi

# ---- an unknown field is a configuration error naming it
$PY - "$c0/config.json" "$tmp/badfmt.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["FlowLogs"][0]["LogFormat"] = "${version} ${srcaddr} ${no-such-field}"
json.dump(c, open(sys.argv[2], "w"))
EOF
if "$VPCFWD" -c "$tmp/badfmt.json" --check-config >"$tmp/badfmt.out" 2>&1; then
	bad "LogFormat with an unknown field accepted"
elif grep -q "FlowLogs\[0\].LogFormat: unknown field '\${no-such-field}'" "$tmp/badfmt.out"; then
	ok "an unknown LogFormat field is an error naming it"
else
	bad "unknown field message"; cat "$tmp/badfmt.out"
fi

exit $fail
