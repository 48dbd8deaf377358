#!/bin/bash
# vpcfwctl against a running vpcfwd in the lab: every verb, access control
# with real users and groups (made here and removed on exit), exact counters
# for a known number of packets, audit mode, the metrics in the Prometheus
# text format (promtool when installed, else a strict parser).  Root only;
# exits 77 (skipped) otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
. "$here/lib.sh"
lab_can_run || exit 77
[ -x "$VPCFWD" ] && [ -x "$CTL" ] || { echo "lab: no vpcfwd/vpcfwctl, skipped"; exit 77; }
command -v useradd >/dev/null && command -v groupadd >/dev/null && command -v setpriv >/dev/null ||
	{ echo "lab: no useradd/groupadd/setpriv, skipped"; exit 77; }
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}

ID=$$
ADMG=vfadm$ID RDG=vfrd$ID
ADMU=vfa$ID RDU=vfr$ID NOU=vfn$ID
T=$(mktemp -d)
cleanup() {
	lab_cleanup
	for u in $ADMU $RDU $NOU; do userdel "$u" 2>/dev/null; done
	for g in $ADMG $RDG; do groupdel "$g" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
chmod 755 "$T"

fails=0
as() { # as USER vpcfwctl ARGS...
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$CTL" "$@"
}
ctl() { "$CTL" -s "$T/ctl.sock" "$@"; }
jq_py() { # jq_py EXPR < json: a Python expression over j
	"$PY" -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

groupadd "$ADMG" && groupadd "$RDG" &&
	useradd -M -N -g "$ADMG" -s /usr/sbin/nologin "$ADMU" &&
	useradd -M -N -g users -G "$RDG" -s /usr/sbin/nologin "$RDU" &&
	useradd -M -N -g users -s /usr/sbin/nologin "$NOU" ||
	{ echo "lab: cannot create the test users"; exit 99; }

lab_three_tier || { echo "lab: cannot build the topology"; exit 99; }
lab_servers "$T" || { echo "lab: servers did not start"; exit 99; }
lab_config "$top_srcdir/conf/three-tier" "$T/conf"
cat >"$T/conf/95-ctl.json" <<JSON
{"Vpcfw": {"ControlSocket": "$T/ctl.sock", "ReadOnlySocket": "$T/ro.sock",
           "Access": {"AdminGroup": "$ADMG", "ReaderGroup": "$RDG"},
           "MetricsFile": "$T/vpcfw.prom", "MetricsInterval": 1}}
JSON
LOG=$T/vpcfwd.log
lab_queue_rules --queue-num 0
lab_start_vpcfwd "$LOG" -c "$T/conf" || { echo "lab: vpcfwd did not start"; exit 99; }

# ---------------------------------------------------------------- status
out=$(ctl status)
check "status answers (root)" 0 $?
echo "$out" | grep -q "policy generation *1" && pass "status shows generation 1" ||
	fail "status: $out"
check "status --json: generation" 1 "$(ctl status --json | jq_py 'j["generation"]')"

# ---------------------------------------------------------------- exact counters
# five echo requests from the internet to web: the web group admits no ICMP
in_ns inet ping -q -c 5 -i 0.2 -W 1 10.0.1.10 >/dev/null 2>&1
stats=$(ctl --json stats)
check "5 pings: web counts 5 refused inbound" 5 "$(echo "$stats" |
	jq_py '[i["in_rejected"] for i in j["interfaces"] if i["eni"]=="eni-0000000000web01"][0]')"
check "5 pings: 5 refusals at sg-ingress ENI_SG_RULES_MISMATCH" 5 "$(echo "$stats" |
	jq_py 'sum(r["packets"] for r in j["reasons"] if r["stage"]=="sg-ingress" and r["reason"]=="ENI_SG_RULES_MISMATCH")')"
# a flood of refusals: at most 50 log lines a second, every other refusal
# counted where monitoring looks (vpcfw_refusal_log_lines_lost_total)
lost() { ctl metrics | awk '/^vpcfw_refusal_log_lines_lost_total/ {s += $2} END {print s + 0}'; }
rejected() { ctl --json stats | jq_py 'sum(q["rejected"] for q in j["queues"])'; }
lines() { grep -c 'REJECT icmp 203.0.113.7 -> 10.0.1.10 ' "$LOG"; }
lost0=$(lost) rej0=$(rejected) lines0=$(lines) t0=$(date +%s)
in_ns inet ping -q -c 300 -i 0.002 -W 1 10.0.1.10 >/dev/null 2>&1
sleep 0.5       # the main thread drains the workers' rings every 100 ms
t1=$(date +%s)
lost1=$(lost) rej1=$(rejected) lines1=$(lines)
windows=$((t1 - t0 + 1))        # one-second windows the flood could span
check "refusal flood: 300 echo requests refused" 300 $((rej1 - rej0))
check "refusal flood: each refusal logged or counted as a lost log line" $((rej1 - rej0)) \
	$((lines1 - lines0 + lost1 - lost0))
check "refusal flood: at most 50 lines a second, the rest counted" yes \
	"$([ $((lines1 - lines0)) -le $((50 * windows)) ] && [ $((lost1 - lost0)) -gt 0 ] && echo yes ||
	   echo "no: $((lines1 - lines0)) lines in $windows s, $((lost1 - lost0)) lost")"
# 3 SSH connections from the corporate network to web: tracked flows, so
# each counts once on web's rule IpPermissions[2] (its SYN; the rest of the
# flow is tracked).  Port 80 would not do: 80 from 0.0.0.0/0 with open
# egress is untracked and every packet meets the rule.
for p in 41001 41002 41003; do
	in_ns corp "$PY" "$here/probe.py" tcp 10.0.1.10 22 --sport $p >/dev/null
done
stats=$(ctl --json stats)
check "3 connections: web's SSH rule counts 3" 3 "$(echo "$stats" |
	jq_py 'sum(r["packets"] for r in j["sg_rules"] if r["eni"]=="eni-0000000000web01" and r["direction"]=="ingress" and r["index"]==2)')"
# the stable label of that rule (a hash of its content: no SecurityGroupRuleId in this data)
ssh_rule=$(echo "$stats" | jq_py '[r["rule"] for r in j["sg_rules"] if r["eni"]=="eni-0000000000web01" and r["direction"]=="ingress" and r["index"]==2][0]')
check "SG rule labelled by content, not position" yes "$(echo "$ssh_rule" | grep -qx 'rule-[0-9a-f]\{12\}' && echo yes)"
ctl stats >/dev/null && pass "stats as a table" || fail "stats as a table"

# ---------------------------------------------------------------- flows
check "flows: the three SSH connections to web are tracked" 3 "$(ctl flows --json -a 198.51.100.20 -p 22 |
	jq_py 'j["matched"]')"
check "flows: none for another address" 0 "$(ctl flows --json -a 192.0.2.99 | jq_py 'j["matched"]')"
ctl flows -i eni-0000000000web01 | grep -q "198.51.100.20.41001" && pass "flows as a table" ||
	fail "flows as a table"

# ---------------------------------------------------------------- explain
for t in "tcp 203.0.113.7 10.0.1.10 80:ACCEPT" "tcp 203.0.113.7 10.0.1.10 22:REJECT" \
	 "tcp 10.0.1.10 10.0.3.10 3306:REJECT" "tcp 10.0.2.10 10.0.3.10 3306:ACCEPT" \
	 "icmp 203.0.113.7 10.0.1.10:REJECT"; do
	live=$(ctl explain --json ${t%:*} | jq_py 'j["verdict"]')
	off=$("$CTL" explain --json -c "$T/conf" ${t%:*} | jq_py 'j["verdict"]')
	check "explain ${t%:*} (running policy)" "${t#*:}" "$live"
	check "explain ${t%:*} (-c offline)" "${t#*:}" "$off"
done
ctl explain tcp 203.0.113.7 10.0.1.10 22 | grep -q "sg-ingress *refuse" &&
	pass "explain names the refusing stage" || fail "explain names the refusing stage"

# ---------------------------------------------------------------- access
as "$RDU" -s "$T/ctl.sock" status >/dev/null
check "reader group: status" 0 $?
as "$RDU" -s "$T/ctl.sock" reload 2>"$T/err"
check "reader group: reload refused" 1 $?
grep -q "permission denied" "$T/err" && pass "reader: the refusal says why" || fail "reader: $(cat "$T/err")"
as "$NOU" -s "$T/ctl.sock" status 2>"$T/err" >/dev/null
check "no group: status refused" 1 $?
as "$NOU" -s "$T/ro.sock" status 2>"$T/err" >/dev/null
check "no group: the read-only socket refuses too (not public)" 1 $?
grep -q "permission denied" "$T/err" && pass "outsider: the refusal says why" ||
	fail "outsider: $(cat "$T/err")"
as "$RDU" -s "$T/ro.sock" status >/dev/null
check "reader group: status on the read-only socket" 0 $?
as "$RDU" -s "$T/ro.sock" reload 2>/dev/null
check "read-only socket: reload refused" 1 $?
as "$ADMU" -s "$T/ctl.sock" reload >/dev/null
check "admin group: reload" 0 $?
check "admin reload: generation 2" 2 "$(ctl status --json | jq_py 'j["generation"]')"
# the reset rule (vpcfwd(8) COUNTERS): rule counters restart with the new
# configuration, queue and decision counters last the process's life
after=$(ctl --json stats)
check "reload: the SSH rule's counter restarts" 0 "$(echo "$after" |
	jq_py 'sum(r["packets"] for r in j["sg_rules"] if r["rule"]=="'"$ssh_rule"'")')"
check "reload: queue counters carry on" yes "$(echo "$stats" "$after" | "$PY" -c '
import json,sys
d=json.JSONDecoder(); t=sys.stdin.read().strip(); a,i=d.raw_decode(t); b,_=d.raw_decode(t[i:].strip())
pa=sum(q["packets"] for q in a["queues"]); pb=sum(q["packets"] for q in b["queues"])
print("yes" if pa > 0 and pb >= pa else "no %d %d" % (pa, pb))')"
grep -q "control: uid $(id -u "$ADMU") ($ADMU) pid [0-9]*: reload" "$LOG" &&
	pass "the change is logged with who made it" || fail "no log line naming $ADMU"
check "refusals counted" 4 "$(ctl metrics | awk '/^vpcfw_control_refused_total/ {print $2}')"
check "refusals at connect counted by cause" 2 \
	"$(ctl metrics | awk '/^vpcfw_control_clients_refused_total.reason="permission"/ {print $2}')"

# ---------------------------------------------------------------- check-config, audit
ctl check-config >/dev/null
check "check-config: the running files are valid" 0 $?
mkdir "$T/bad" && echo '{"NetworkAcls": 3}' >"$T/bad/x.json"
"$CTL" check-config -c "$T/bad" >/dev/null 2>&1
check "check-config -c: a bad file is refused" 1 $?
ctl audit on >/dev/null
in_ns inet ping -q -c 4 -i 0.2 -W 1 10.0.1.10 >/dev/null 2>&1
check "audit on: pings pass" 0 $?
check "audit: 4 would have been refused" 4 "$(ctl stats --json | jq_py 'sum(q["audit_would_refuse"] for q in j["queues"])')"
ctl audit off >/dev/null
in_ns inet ping -q -c 1 -W 1 10.0.1.10 >/dev/null 2>&1
check "audit off: pings refused again" 1 $?

# ---------------------------------------------------------------- metrics
# A strict reader of the text format 0.0.4: HELP/TYPE before a family's
# samples, a family's samples together, names and labels well formed, values
# numbers, no series twice.
cat >"$T/promtext.py" <<'PY'
import re, sys
name = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
sample = re.compile(r'^(%s)(\{(?:%s(?:,%s)*)?\})? (\S+)$' % (name, label, label))
typed, done, seen, cur = {}, set(), set(), None
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip('\n')
    def bad(why):
        sys.exit('%s:%d: %s: %r' % (sys.argv[1], n, why, line))
    m = re.match(r'^# (HELP|TYPE) (%s) (.+)$' % name, line)
    if m:
        if m.group(2) in done: bad('family split')
        if m.group(1) == 'TYPE':
            if m.group(3) not in ('counter', 'gauge', 'histogram', 'summary', 'untyped'): bad('type')
            if m.group(2) in typed: bad('TYPE twice')
            typed[m.group(2)] = m.group(3)
        if cur and cur != m.group(2): done.add(cur)
        cur = m.group(2)
        continue
    m = sample.match(line)
    if not m: bad('not a sample')
    if m.group(1) not in typed: bad('sample before its TYPE')
    if m.group(1) != cur: bad('sample outside its family')
    float(m.group(3))
    if line.rsplit(' ', 1)[0] in seen: bad('series twice')
    seen.add(line.rsplit(' ', 1)[0])
if not seen: sys.exit('no samples')
PY
ctl metrics >"$T/metrics.txt"
lab_wait_file "$T/vpcfw.prom" 3
if command -v promtool >/dev/null; then
	promtool check metrics <"$T/metrics.txt" && pass "promtool: vpcfwctl metrics" ||
		fail "promtool: vpcfwctl metrics"
fi
for f in "$T/metrics.txt" "$T/vpcfw.prom"; do
	"$PY" "$T/promtext.py" "$f" && pass "text format: $(basename "$f")" ||
		fail "text format: $(basename "$f")"
done
grep -q '^vpcfw_sg_rule_packets_total{eni="eni-0000000000web01",sg="sg-0000000000000web",direction="ingress",rule="'"$ssh_rule"'"} 0$' \
	"$T/metrics.txt" && pass "metrics: per-rule series with AWS ids (reset by the reload)" ||
	fail "metrics: no web ingress $ssh_rule series"
[ "$(stat -c %a "$T/vpcfw.prom")" = 644 ] && pass "MetricsFile mode 644" || fail "MetricsFile mode"

# ---------------------------------------------------------------- shadow policies
# A candidate without the web group's port-80 rule, beside the running one:
# HTTP from the internet still passes, and the report shows it refused by
# the candidate, with the rule that admits it today.
mkdir "$T/cand" && cp "$T/conf"/*.json "$T/cand/" && rm "$T/cand/95-ctl.json"
"$PY" - "$T/cand/40-security-groups.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for g in j["SecurityGroups"]:
    if g["GroupName"] == "web":
        g["IpPermissions"] = [p for p in g["IpPermissions"] if p.get("FromPort") != 80]
json.dump(j, open(sys.argv[1], "w"))
PY
as "$RDU" -s "$T/ctl.sock" shadow load "$T/cand" 2>/dev/null
check "reader group: shadow load refused" 1 $?
ctl shadow load "$T/cand" >/dev/null
check "shadow load" 0 $?
check "status names the shadow" "$T/cand" "$(ctl status --json | jq_py 'j["shadow"]')"
for p in 42001 42002 42003; do
	in_ns inet "$PY" "$here/probe.py" tcp 10.0.1.10 80 --sport $p >/dev/null
	check "shadow: HTTP to web still passes (sport $p)" 0 $?
done
in_ns corp "$PY" "$here/probe.py" tcp 10.0.1.10 22 --sport 42100 >/dev/null
ctl shadow report --json >"$T/shadow.json"
check "shadow report: HTTP refused by the candidate, by web's IpPermissions[0]" "refused sg-0000000000000web IpPermissions[0] sg-ingress ENI_SG_RULES_MISMATCH 10.0.1.10 80" \
	"$(jq_py '" ".join(str(x) for x in [j["differences"][0]["change"], j["differences"][0]["running"]["rule"], j["differences"][0]["candidate"]["stage"], j["differences"][0]["candidate"]["reason"], j["differences"][0]["sample"]["dst"], j["differences"][0]["sample"]["dport"]])' <"$T/shadow.json")"
# at least each connection's SYN (the rest, which the candidate would never
# see, it decides from its own tracking of the server's answer)
check "shadow report: a refusal per HTTP connection, all itemised" True \
	"$(jq_py 'j["differences"][0]["packets"] >= 3 and j["lost"] == 0 and j["differing"] == sum(d["packets"] for d in j["differences"])' <"$T/shadow.json")"
check "shadow report: SSH is decided alike" 0 \
	"$(jq_py 'len([d for d in j["differences"] if d["sample"].get("dport") == 22])' <"$T/shadow.json")"
ctl shadow report | grep -q "refused by the candidate, e.g. proto 6 203.0.113.7.4200[123] -> 10.0.1.10.80" &&
	pass "shadow report as text" || fail "shadow report as text: $(ctl shadow report)"
"$CTL" -s "$T/ctl.sock" shadow load "$T/bad" >/dev/null 2>&1
check "shadow load: a bad candidate is refused" 1 $?
check "shadow load: the loaded candidate stays" "$T/cand" "$(ctl status --json | jq_py 'j["shadow"]')"
ctl shadow clear >/dev/null
check "shadow clear" 0 $?
ctl shadow report >/dev/null 2>&1
check "shadow report after clear: none loaded" 1 $?
in_ns inet "$PY" "$here/probe.py" tcp 10.0.1.10 80 --sport 42004 >/dev/null
check "after clear: HTTP still passes" 0 $?

# ---------------------------------------------------------------- the client carries the file
# vpcfwctl reads the candidate with its user's rights; the daemon opens no
# path for a client, so a file the admin cannot read stays unread and a FIFO
# holds nobody.
echo '{"Vpcfw": {"Region": "secret-region-text"}}' >"$T/secret.json" && chmod 600 "$T/secret.json"
as "$ADMU" -s "$T/ctl.sock" shadow load "$T/secret.json" >"$T/out" 2>"$T/err"
check "shadow load: a file the admin cannot read is refused" 1 $?
grep -q "Permission denied" "$T/err" && ! grep -q "secret-region" "$T/err" "$T/out" &&
	pass "shadow load: refused by vpcfwctl, nothing of the file shown" || fail "unreadable: $(cat "$T/err")"
as "$ADMU" -s "$T/ctl.sock" shadow load /etc/shadow 2>"$T/err" >/dev/null
grep -q "Permission denied" "$T/err" && ! grep -q "root" "$T/err" &&
	pass "shadow load /etc/shadow: nothing echoed" || fail "/etc/shadow: $(cat "$T/err")"
mkfifo "$T/fifo.json"
timeout 5 "$CTL" -s "$T/ctl.sock" shadow load "$T/fifo.json" 2>"$T/err" >/dev/null
check "shadow load: a FIFO is refused at once" 1 $?
grep -q "not a regular file" "$T/err" && pass "shadow load: the FIFO refusal says why" ||
	fail "FIFO: $(cat "$T/err")"
echo '{"SecurityGroups": []}' | "$PY" -c 'import json,socket,sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"verb": "shadow-load", "path": sys.argv[2]}).encode() + b"\n")
print(s.recv(4096).decode())' "$T/ctl.sock" "$T/fifo.json" >"$T/out"
grep -q "opens no path" "$T/out" && pass "shadow-load with a path alone: the daemon opens nothing" ||
	fail "path-only shadow-load: $(cat "$T/out")"
# the daemon's own reload: a FIFO among its *.json is not read (nor waited on)
mkfifo "$T/conf/99-fifo.json"
timeout 10 "$CTL" -s "$T/ctl.sock" reload >/dev/null
check "reload with a FIFO in the configuration directory: done, not blocked" 0 $?
rm -f "$T/conf/99-fifo.json"

# ---------------------------------------------------------------- fairness
# 500 idle connections from a reader and 500 from an outsider on the
# read-only socket: the reader keeps CTL_MAX_PER_UID (8), the rest are told
# "too many clients"; the outsider gets nothing; root and the admin are still
# answered, reloads included; the log stays short.
lines_before=$(wc -l <"$LOG")
mkdir -m 1777 "$T/hold"
setpriv --reuid="$RDU" --regid="$(id -g "$RDU")" --init-groups \
	"$PY" "$here/hold.py" "$T/ro.sock" 500 14 "$T/hold/reader.json" &
hold1=$!
setpriv --reuid="$NOU" --regid="$(id -g "$NOU")" --init-groups \
	"$PY" "$here/hold.py" "$T/ro.sock" 500 14 "$T/hold/outsider.json" &
hold2=$!
for i in $(seq 125); do [ -s "$T/hold/reader.json" ] && [ -s "$T/hold/outsider.json" ] && break; sleep 0.2; done
check "flood: the reader keeps 8 connections" 8 "$(jq_py 'j["kept"]' <"$T/hold/reader.json")"
# the rest are refused with an answer, or (once the backlog is full) at connect
# (a slow daemon, under TSan say, lets its backlog fill: more refused at connect)
check "flood: the reader's other 492 refused, some with an answer" True \
	"$(jq_py 'j["refused"] + j["connect_errors"] == 492 and j["refused"] >= 1' <"$T/hold/reader.json")"
jq_py 'j["first_refusal"]' <"$T/hold/reader.json" | grep -q "too many clients" &&
	pass "flood: a refused client is told 'too many clients'" ||
	fail "flood: first refusal $(cat "$T/hold/reader.json")"
check "flood: the outsider keeps none" 0 "$(jq_py 'j["kept"]' <"$T/hold/outsider.json")"
jq_py 'j["first_refusal"]' <"$T/hold/outsider.json" | grep -q "permission denied" &&
	pass "flood: the outsider is told 'permission denied'" || fail "outsider: $(cat "$T/hold/outsider.json")"
as "$RDU" -s "$T/ro.sock" status 2>"$T/err" >/dev/null
check "flood: the reader's 9th client is refused" 1 $?
grep -q "too many clients" "$T/err" && pass "flood: vpcfwctl prints 'too many clients'" ||
	fail "flood: vpcfwctl said $(cat "$T/err")"
for v in status stats reload; do
	timeout 10 "$CTL" -s "$T/ctl.sock" $v >/dev/null
	check "flood: root's $v answers" 0 $?
	timeout 10 "$CTL" -s "$T/ro.sock" ${v/reload/status} >/dev/null
	check "flood: root's ${v/reload/status} on the read-only socket answers" 0 $?
	as "$ADMU" -s "$T/ctl.sock" $v >/dev/null
	check "flood: the admin's $v answers" 0 $?
done
check "flood: clients refused for want of room counted" True "$("$PY" -c 'import sys; print(int(sys.argv[1]) >= int(sys.argv[2]) + 1)' \
	"$(ctl metrics | awk '/^vpcfw_control_clients_refused_total.reason="too_many_clients"/ {print $2}')" \
	"$(jq_py 'j["refused"]' <"$T/hold/reader.json")")"
wait $hold1 $hold2
check "flood: the daemon dropped the reader's idle connections" 8 \
	"$(jq_py 'j["dropped_by_daemon"]' <"$T/hold/reader.json.end")"
check "flood: idle drops counted" 8 \
	"$(ctl metrics | awk '/^vpcfw_control_clients_dropped_total.reason="idle"/ {print $2}')"
flood_lines=$(tail -n +$((lines_before + 1)) "$LOG" | grep -c "control: .*\(refused\|dropped\|suppressed\)")
[ "$flood_lines" -le 20 ] && pass "flood: $flood_lines log lines for ~1000 refusals" ||
	fail "flood: $flood_lines log lines"
grep -q "more refusal(s) suppressed" "$LOG" && pass "flood: the suppressed refusals are summarised" ||
	fail "flood: no summary of suppressed refusals"

ctl nonsense 2>/dev/null
check "unknown verb: exit 2" 2 $?

lab_stop_vpcfwd
check "vpcfwd exits 0" 0 "$VPCFWD_STATUS"
[ ! -e "$T/ctl.sock" ] && pass "the socket is removed at exit" || fail "socket left behind"
[ $fails = 0 ] && echo "lab ctl: all passed"
exit $((fails ? 1 : 0))
