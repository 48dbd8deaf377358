#!/bin/sh
# Replays every pcap of tests/data/pcaps (real captures from the tcpdump,
# Zeek and tcpreplay test suites) through vpcfwd --replay: no crash, no
# sanitizer report, exit 0, one well-formed verdict line per record; then a
# few facts about known packets, every supported link type (the same packet
# rewrapped), pcapng, and the error paths (unsupported link type, truncated
# file, unwritable verdicts file).
set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
PY=/usr/bin/python3
data=$top_srcdir/tests/data/pcaps
config=$data/config.json

if [ ! -x "$PY" ]; then
	echo "SKIP: $PY (Debian's python3) is needed to read pcap files"
	exit 77
fi
if [ ! -x "$VPCFWD" ]; then
	echo "FAIL: $VPCFWD not built"
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# The helper: counts records, checks verdict files, asserts fields, and
# writes pcap/pcapng files of other link types.
cat >"$tmp/pcaptool.py" <<'EOF'
import json, struct, sys

def records(path):
    """(linktype, [(ts_sec, ts_frac, caplen, wirelen, data)]) of a pcap or pcapng file."""
    b = open(path, 'rb').read()
    magic = b[:4]
    out = []
    if magic in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1', b'\xa1\xb2\xc3\xd4', b'\xa1\xb2\x3c\x4d'):
        e = '<' if magic[0] in (0xd4, 0x4d) else '>'
        link = struct.unpack(e + 'I', b[20:24])[0] & 0xffff
        off = 24
        while off + 16 <= len(b):
            s, f, cl, wl = struct.unpack(e + 'IIII', b[off:off + 16])
            out.append((s, f, cl, wl, b[off + 16:off + 16 + cl]))
            off += 16 + cl
        return link, out
    if magic == b'\x0a\x0d\x0d\x0a':
        e = '<' if b[8:12] == b'\x4d\x3c\x2b\x1a' else '>'
        off, link = 0, None
        while off + 12 <= len(b):
            t, ln = struct.unpack(e + 'II', b[off:off + 8])
            if t == 1 and link is None:
                link = struct.unpack(e + 'H', b[off + 8:off + 10])[0]
            elif t == 6:
                _, hi, lo, cl, wl = struct.unpack(e + 'IIIII', b[off + 8:off + 28])
                out.append((hi, lo, cl, wl, b[off + 28:off + 28 + cl]))
            elif t == 3:
                out.append((0, 0, ln - 16, ln - 16, b[off + 12:off + ln - 4]))
            off += ln
        return link, out
    sys.exit('%s: not a pcap file' % path)

def check(pcap, verdicts):
    """One JSON object per record, numbered in order, with the fields."""
    n = len(records(pcap)[1])
    lines = open(verdicts).read().splitlines()
    if len(lines) != n:
        sys.exit('%d verdict lines for %d records' % (len(lines), n))
    for i, line in enumerate(lines, 1):
        v = json.loads(line)
        if v.get('packet') != i:
            sys.exit('line %d: packet %r' % (i, v.get('packet')))
        for k in ('verdict', 'stage', 'reason', 'rule', 'src', 'dst', 'proto', 'sport', 'dport'):
            if k not in v:
                sys.exit('line %d: no %s' % (i, k))
        if v['verdict'] not in ('ACCEPT', 'REJECT'):
            sys.exit('line %d: verdict %r' % (i, v['verdict']))
    print(n)

def matches(v, pair):
    """field=value, the value as JSON (null, true, 17) or as a bare string."""
    k, want = pair.split('=', 1)
    got = v.get(k, 'absent')
    return json.dumps(got) == want or got == want

def expect(verdicts, n, *pairs):
    """Record n (1-based; 'all' for every line) has field=value for each pair."""
    lines = [json.loads(l) for l in open(verdicts)]
    todo = lines if n == 'all' else [lines[int(n) - 1]]
    for v in todo:
        for p in pairs:
            if not matches(v, p):
                sys.exit('packet %s: %s, expected %s' % (v['packet'], json.dumps(v), p))

def count(verdicts, *pairs):
    """How many records have all of field=value."""
    print(sum(all(matches(json.loads(l), p) for p in pairs) for l in open(verdicts)))

def wrap(src, dst, kind):
    """Writes the records of src (raw IP) into dst with another link layer."""
    _, recs = records(src)
    mac = b'\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02'
    def frame(ip):
        v6 = ip[0] >> 4 == 6
        et = struct.pack('>H', 0x86dd if v6 else 0x0800)
        if kind == 'ether-qinq':
            return 1, mac + b'\x88\xa8\x00\x0a' + b'\x81\x00\x00\x14' + et + ip
        if kind == 'ether-3tags':
            return 1, mac + b'\x88\xa8\x00\x0a' + b'\x81\x00\x00\x14' + b'\x81\x00\x00\x1e' + et + ip
        if kind == 'ether-arp':
            return 1, mac + b'\x08\x06' + ip
        if kind == 'ether-short':
            return 1, mac[:10]
        if kind == 'ether-v4-says-v6':
            return 1, mac + b'\x86\xdd' + ip
        if kind == 'sll':
            return 113, b'\x00\x00\x00\x01\x00\x06' + mac[:6] + b'\x00\x00' + et + ip
        if kind == 'sll2':
            return 276, et + b'\x00\x00' + b'\x00\x00\x00\x02' + b'\x00\x01\x00\x06' + mac[:6] + b'\x00\x00' + ip
        if kind == 'null':
            return 0, struct.pack('<I', 30 if v6 else 2) + ip
        if kind == 'loop':
            return 108, struct.pack('>I', 24 if v6 else 2) + ip
        if kind == 'ipv4':
            return 228, ip
        if kind == 'ipv6':
            return 229, ip
        if kind == 'raw':
            return 101, ip
        if kind == 'ieee802_11':
            return 105, ip
        sys.exit('unknown kind ' + kind)
    link = frame(recs[0][4])[0]
    with open(dst, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, link))
        for s, us, cl, wl, d in recs:
            fr = frame(d)[1]
            f.write(struct.pack('<IIII', s, us, len(fr), wl - cl + len(fr)) + fr)

def pcapng(src, dst):
    """The records of a classic pcap file as pcapng (microsecond timestamps)."""
    link, recs = records(src)
    def block(t, body):
        body += b'\0' * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack('<II', t, n) + body + struct.pack('<I', n)
    out = block(0x0a0d0d0a, struct.pack('<IHHq', 0x1a2b3c4d, 1, 0, -1))
    out += block(1, struct.pack('<HHI', link, 0, 65535))
    for s, us, cl, wl, d in recs:
        ts = s * 1000000 + us
        out += block(6, struct.pack('<IIIII', 0, ts >> 32, ts & 0xffffffff, cl, wl) + d)
    open(dst, 'wb').write(out)

def truncate(src, dst):
    b = open(src, 'rb').read()
    open(dst, 'wb').write(b[:-3])

globals()[sys.argv[1]](*sys.argv[2:])
EOF
tool() { "$PY" "$tmp/pcaptool.py" "$@"; }

# replay FILE: runs vpcfwd; leaves $tmp/out (verdicts), $tmp/err, $rc
replay() {
	"$VPCFWD" -c "$config" --replay "$1" --verdicts "$tmp/out" >"$tmp/stdout" 2>"$tmp/err"
	rc=$?
	if grep -q -e 'runtime error' -e 'AddressSanitizer' -e 'LeakSanitizer' "$tmp/err"; then
		bad "$1: sanitizer report"
		cat "$tmp/err"
		rc=99
	fi
}

# ---- every pcap: exit 0, one verdict per record
total=0
for f in "$data"/*/*.pcap; do
	name=${f#"$data"/}
	replay "$f"
	if [ "$rc" -ne 0 ]; then
		bad "$name: exit $rc"
		cat "$tmp/err"
		continue
	fi
	# real traffic is never malformed, except the files made to be
	case $name in
	tcpdump/ipv4_invalid_*|tcpdump/ipv6_frag6_negative_len.pcap|tcpdump/ip6_frag_asan.pcap) ;;
	*)	if grep -q MALFORMED_PACKET "$tmp/out"; then
			bad "$name: MALFORMED_PACKET: $(grep -m1 MALFORMED_PACKET "$tmp/out")"
		fi ;;
	esac
	if n=$(tool check "$f" "$tmp/out" 2>"$tmp/why"); then
		ok
		total=$((total + n))
		cp "$tmp/out" "$tmp/$(echo "$name" | tr / _).jsonl"
	else
		bad "$name: $(cat "$tmp/why")"
	fi
done
echo "replayed $total records"

# ---- known facts: expect PCAP RECORD field=value ...
expect() {
	v="$tmp/$(echo "$1" | tr / _).jsonl"
	shift
	if [ ! -f "$v" ]; then
		bad "no verdicts for $1"
	elif tool expect "$v" "$@" 2>"$tmp/why"; then
		ok
	else
		bad "$(basename "$v"): $(cat "$tmp/why")"
	fi
}
# count PCAP N field=value ...: exactly N records match
count_is() {
	v="$tmp/$(echo "$1" | tr / _).jsonl"
	want=$2
	shift 2
	got=$(tool count "$v" "$@")
	if [ "$got" = "$want" ]; then ok; else bad "$(basename "$v"): $got records with $*, expected $want"; fi
}

# tcpdump: IPv4 total length 85 > 84 on the wire; header length 16 < 20
expect tcpdump/ipv4_invalid_total_length.pcap 1 verdict=REJECT stage=parse reason=MALFORMED_PACKET src=null
expect tcpdump/ipv4_invalid_hdr_length.pcap 1 verdict=REJECT reason=MALFORMED_PACKET
# IPv6 fragment header with payload length 0
expect tcpdump/ipv6_frag6_negative_len.pcap 1 reason=MALFORMED_PACKET
# IPv6 payload length 27136 in a 60-byte capture of a short packet
expect tcpdump/ip6_frag_asan.pcap 1 reason=MALFORMED_PACKET
expect tcpdump/ipv6_no_next_header.pcap all proto=59
# Linux cooked capture, nanosecond timestamps
expect tcpdump/tcp-handshake-nano.pcap 1 proto=6 src=131.155.215.69 dst=137.116.81.94 sport=46656 dport=80
expect tcpdump/tcp-handshake-nano.pcap 2 sport=80 dport=46656
expect tcpdump/LINKTYPE_RAW_ipv4.pcap 1 proto=17
expect tcpdump/LINKTYPE_RAW_ipv6.pcap 1 proto=17
expect tcpdump/dns_udp.pcap 1 proto=17 dport=53
expect tcpdump/ipv6-routing-header.pcap all verdict=ACCEPT
# a SYN to the modelled interface, port 80 allowed; its second fragment
expect zeek/ipv4_fragmented-syn.pcap 1 verdict=ACCEPT dst=10.0.0.5 dport=80 sport=12345 dst_interface=eni-0000000000pcaps01
expect zeek/ipv4_fragmented-syn.pcap 2 dst=10.0.0.5 sport=0 dport=0 fragment=true
# 802.1Q: the ARP record is not IP, the ICMP behind the tag is
count_is zeek/icmp_dot1q.pcap 6 stage=not-ip proto=null
count_is zeek/icmp_dot1q.pcap 9 proto=1
expect zeek/icmp_icmp-ping.pcap 1 proto=1 icmp_type=8 icmp_code=0
expect zeek/icmp_icmp6-ping.pcap 1 proto=58 icmp_type=128
expect zeek/icmp_icmp6-toobig.pcap 1 proto=58 icmp_type=2
# tcpreplay's mix: ARP, MPLS, 802.3 and loopback frames are not IP
count_is tcpreplay/test.pcap 19 stage=not-ip verdict=ACCEPT reason=NOT_IP src=null proto=null
count_is tcpreplay/test.pcap 0 reason=MALFORMED_PACKET
# a second VPC whose interface 172.16.11.12 may only open HTTPS: its one
# HTTPS connection is tracked, HTTP is refused both ways
count_is tcpreplay/test.pcap 1 src=172.16.11.12 dport=443 stage=sg-egress reason=RULES_ALLOW
count_is tcpreplay/test.pcap 8 reason=TRACKED_FLOW rule="tracked flow"
count_is tcpreplay/test.pcap 45 src=172.16.11.12 dport=80 stage=sg-egress reason=ENI_SG_RULES_MISMATCH
count_is tcpreplay/test.pcap 52 dst=172.16.11.12 sport=80 stage=sg-ingress verdict=REJECT
replay "$data/tcpreplay/test.pcap"
if grep -q '^replay: 179 packets: 82 ACCEPT, 97 REJECT' "$tmp/err" &&
   grep -q 'REJECT  ENI_SG_RULES_MISMATCH  *97$' "$tmp/err" &&
   grep -q 'conntrack: 1 flows tracked' "$tmp/err"; then ok; else bad "test.pcap summary: $(cat "$tmp/err")"; fi

# ---- ids from the configuration are escaped in the JSON
sed 's/"eni-0000000000pcaps01"/"eni-\\\"odd\\u0001\\\\"/' "$config" >"$tmp/odd.json"
"$VPCFWD" -c "$tmp/odd.json" --replay "$data/zeek/ipv4_fragmented-syn.pcap" --verdicts "$tmp/out" 2>"$tmp/err"
if tool expect "$tmp/out" 1 'dst_interface="eni-\"odd\u0001\\"' 2>"$tmp/why"; then ok; else bad "escaping: $(cat "$tmp/why" "$tmp/err")"; fi

# ---- every link type: the same IPv4 and IPv6 packets rewrapped
for kind in ether-qinq sll sll2 null loop raw ipv4; do
	tool wrap "$data/tcpdump/LINKTYPE_RAW_ipv4.pcap" "$tmp/$kind.pcap" "$kind"
	replay "$tmp/$kind.pcap"
	if [ "$rc" -eq 0 ] && cp "$tmp/out" "$tmp/$kind.jsonl" &&
	   tool expect "$tmp/out" 1 proto=17 verdict=ACCEPT 2>"$tmp/why"; then ok; else bad "link $kind (v4): $(cat "$tmp/why" "$tmp/err")"; fi
done
for kind in ether-qinq sll sll2 null loop raw ipv6; do
	tool wrap "$data/tcpdump/LINKTYPE_RAW_ipv6.pcap" "$tmp/$kind.pcap" "$kind"
	replay "$tmp/$kind.pcap"
	if [ "$rc" -eq 0 ] && tool expect "$tmp/out" 1 proto=17 verdict=ACCEPT 2>"$tmp/why"; then ok; else bad "link $kind (v6): $(cat "$tmp/why" "$tmp/err")"; fi
done
# the same tuple whatever the link layer
for kind in ether-qinq sll sll2 null loop ipv4; do
	if cmp -s "$tmp/raw.jsonl" "$tmp/$kind.jsonl"; then ok; else bad "link $kind: verdict differs from raw IP"; fi
done
# three VLAN tags, ARP, a cut Ethernet header, an IPv4 packet under the IPv6 ethertype
for k in "ether-3tags stage=not-ip" "ether-arp stage=not-ip" "ether-short reason=MALFORMED_PACKET" \
	 "ether-v4-says-v6 reason=MALFORMED_PACKET" "ipv6 reason=MALFORMED_PACKET"; do
	set -- $k
	tool wrap "$data/tcpdump/LINKTYPE_RAW_ipv4.pcap" "$tmp/$1.pcap" "$1"
	replay "$tmp/$1.pcap"
	if [ "$rc" -eq 0 ] && tool expect "$tmp/out" 1 "$2" 2>"$tmp/why"; then ok; else bad "link $1: $(cat "$tmp/why" "$tmp/err")"; fi
done

# ---- pcapng gives what pcap gives
tool pcapng "$data/tcpdump/dns_tcp.pcap" "$tmp/dns_tcp.pcapng"
replay "$tmp/dns_tcp.pcapng"
if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/tcpdump_dns_tcp.pcap.jsonl"; then ok; else bad "pcapng: verdicts differ from the pcap's"; fi

# ---- errors
tool wrap "$data/tcpdump/LINKTYPE_RAW_ipv4.pcap" "$tmp/wifi.pcap" ieee802_11
replay "$tmp/wifi.pcap"
if [ "$rc" -eq 1 ] && grep -q 'unsupported link type IEEE802_11' "$tmp/err"; then ok; else bad "unsupported link type: exit $rc: $(cat "$tmp/err")"; fi

tool truncate "$data/tcpdump/dns_tcp.pcap" "$tmp/cut.pcap"
replay "$tmp/cut.pcap"
if [ "$rc" -eq 1 ] && grep -q 'cut.pcap: record 11: .*incomplete' "$tmp/err" &&
   grep -q '^replay: 10 packets' "$tmp/err" && [ "$(wc -l <"$tmp/out")" -eq 10 ]; then ok
else bad "truncated pcap: exit $rc: $(cat "$tmp/err")"; fi

replay "$tmp/does-not-exist.pcap"
if [ "$rc" -eq 1 ] && grep -q 'does-not-exist.pcap' "$tmp/err"; then ok; else bad "missing pcap: exit $rc"; fi

if [ -w /dev/full ]; then
	"$VPCFWD" -c "$config" --replay "$data/tcpreplay/test.pcap" --verdicts /dev/full 2>"$tmp/err"
	rc=$?
	if [ "$rc" -eq 1 ] && grep -q '/dev/full: writing verdicts failed' "$tmp/err"; then ok; else bad "full disk: exit $rc: $(cat "$tmp/err")"; fi
fi

# verdicts on stdout, summary on stderr
"$VPCFWD" -c "$config" --replay "$data/tcpdump/dns_udp.pcap" --verdicts - >"$tmp/stdout" 2>"$tmp/err"
if [ "$(wc -l <"$tmp/stdout")" -eq 2 ] && grep -q '^replay: 2 packets: 2 ACCEPT, 0 REJECT' "$tmp/err"; then ok
else bad "--verdicts -: $(cat "$tmp/stdout" "$tmp/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
