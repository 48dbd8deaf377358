#!/bin/bash
# vpcfw-sync against a real moto_server on 127.0.0.1 (issue #14 items 2, 3):
# a VPC with three subnets, security groups (one admitting another by group
# reference), a network ACL and interfaces are created with the AWS CLI;
# vpcfw-sync writes the configuration and vpcfwd enforces it on real
# connections in the network-namespace lab (tests/lab/lib.sh).  A rule
# revoked through the API is enforced after the next sync while a tracked
# connection it admitted goes on; an unreachable API and a result vpcfwd
# refuses both keep the running policy and are reported (exit status, log,
# state file, metrics); the flow logs vpcfwd wrote are delivered to moto's S3
# under AWS's key layout and decompress.
#
# Needs root (the lab), moto_server and aws on PATH (the CI image has both);
# exits 77 with the reason otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/..}
VPCFWD=${VPCFWD:-${top_builddir:-$top_srcdir}/src/vpcfwd}
CTL=${VPCFWCTL:-$(dirname "$VPCFWD")/vpcfwctl}
SYNC=$top_srcdir/src/vpcfw-sync
. "$here/lab/lib.sh"

command -v moto_server >/dev/null ||
	{ echo "vpcfw-sync: moto_server not on PATH (pip install 'moto[server]'), skipped"; exit 77; }
command -v aws >/dev/null || { echo "vpcfw-sync: the AWS CLI (aws) not on PATH, skipped"; exit 77; }
lab_can_run || exit 77
[ -x "$VPCFWD" ] && [ -x "$CTL" ] || { echo "vpcfw-sync: no vpcfwd/vpcfwctl, skipped"; exit 77; }
export PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}

T=$(mktemp -d)
chmod 755 "$T"
MOTO_PID=
cleanup() {
	lab_cleanup
	[ -z "$MOTO_PID" ] || { kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; }
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
fails=0

# ---------------------------------------------------------------- moto
# A free port: bound by the kernel, released, then given to moto.
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
MOTO_PID=$!
EP=http://127.0.0.1:$port
# nothing of this machine's AWS configuration: moto's fake credentials only
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$T/aws-config AWS_SHARED_CREDENTIALS_FILE=$T/aws-credentials
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
a() { aws --endpoint-url "$EP" --output text "$@"; }
i=0
until a ec2 describe-vpcs >/dev/null 2>&1; do
	i=$((i + 1))
	kill -0 "$MOTO_PID" 2>/dev/null && [ $i -lt 100 ] ||
		{ cat "$T/moto.log"; echo "FAIL: moto_server did not answer on $EP"; exit 1; }
	sleep 0.2
done
pass "moto_server answers on $EP"

# ---------------------------------------------------------------- the VPC, with the AWS CLI
# The lab's three tiers (tests/lab/lib.sh): web 10.0.1.10, app 10.0.2.10,
# db 10.0.3.10; the internet 203.0.113.7.
VPC=$(a ec2 create-vpc --cidr-block 10.0.0.0/16 --query Vpc.VpcId)
subnet() { a ec2 create-subnet --vpc-id "$VPC" --cidr-block "$1" --availability-zone us-east-1a --query Subnet.SubnetId; }
S_WEB=$(subnet 10.0.1.0/24) S_APP=$(subnet 10.0.2.0/24) S_DB=$(subnet 10.0.3.0/24)
group() { a ec2 create-security-group --vpc-id "$VPC" --group-name "$1" --description "$1" --query GroupId; }
G_WEB=$(group web) G_APP=$(group app) G_DB=$(group db)
a ec2 authorize-security-group-ingress --group-id "$G_WEB" --protocol tcp --port 80 --cidr 0.0.0.0/0 >/dev/null &&
	a ec2 authorize-security-group-ingress --group-id "$G_WEB" --protocol tcp --port 8080 --cidr 203.0.113.0/24 >/dev/null &&
	a ec2 authorize-security-group-ingress --group-id "$G_APP" \
		--ip-permissions "IpProtocol=tcp,FromPort=8000,ToPort=8000,UserIdGroupPairs=[{GroupId=$G_WEB}]" >/dev/null &&
	a ec2 authorize-security-group-ingress --group-id "$G_DB" \
		--ip-permissions "IpProtocol=tcp,FromPort=3306,ToPort=3306,UserIdGroupPairs=[{GroupId=$G_APP}]" >/dev/null &&
	a ec2 authorize-security-group-ingress --group-id "$G_DB" --protocol tcp --port 22 --cidr 10.0.0.0/16 >/dev/null ||
	{ echo "FAIL: security groups"; exit 1; }
# a managed prefix list (the corporate network, 198.51.100.0/24) admitted to web's 22
PL=$(a ec2 create-managed-prefix-list --prefix-list-name corp --max-entries 5 --address-family IPv4 \
	--entries Cidr=198.51.100.0/24,Description=corp --query PrefixList.PrefixListId)
a ec2 authorize-security-group-ingress --group-id "$G_WEB" \
	--ip-permissions "IpProtocol=tcp,FromPort=22,ToPort=22,PrefixListIds=[{PrefixListId=$PL}]" >/dev/null ||
	{ echo "FAIL: prefix list rule"; exit 1; }
# the db subnet's network ACL: in, only 3306 from the VPC; out, everything
ACL=$(a ec2 create-network-acl --vpc-id "$VPC" --query NetworkAcl.NetworkAclId)
a ec2 create-network-acl-entry --network-acl-id "$ACL" --ingress --rule-number 100 --protocol tcp \
	--port-range From=3306,To=3306 --cidr-block 10.0.0.0/16 --rule-action allow &&
	a ec2 create-network-acl-entry --network-acl-id "$ACL" --egress --rule-number 100 --protocol -1 \
		--cidr-block 0.0.0.0/0 --rule-action allow || { echo "FAIL: network ACL entries"; exit 1; }
ASSOC=$(a ec2 describe-network-acls --filters "Name=vpc-id,Values=$VPC" \
	--query "NetworkAcls[].Associations[?SubnetId=='$S_DB'].NetworkAclAssociationId | []")
a ec2 replace-network-acl-association --association-id "$ASSOC" --network-acl-id "$ACL" >/dev/null ||
	{ echo "FAIL: network ACL association"; exit 1; }
eni() { a ec2 create-network-interface --subnet-id "$1" --groups "$2" --private-ip-address "$3" \
	--query NetworkInterface.NetworkInterfaceId; }
E_WEB=$(eni "$S_WEB" "$G_WEB" $WEB4) E_APP=$(eni "$S_APP" "$G_APP" $APP4) E_DB=$(eni "$S_DB" "$G_DB" $DB4)
a s3api create-bucket --bucket vpcfw-flowlogs >/dev/null || { echo "FAIL: bucket"; exit 1; }
# moto takes no folder in an S3 LogDestination ("bucket/folder does not
# exist"); AWS does: the bucket's top here
FL=$(a ec2 create-flow-logs --resource-type VPC --resource-ids "$VPC" --traffic-type ALL \
	--log-destination-type s3 --log-destination arn:aws:s3:::vpcfw-flowlogs \
	--max-aggregation-interval 60 --query 'FlowLogIds[0]')
case "$VPC $S_DB $G_APP $ACL $E_WEB $E_APP $E_DB $FL $PL" in
*None*|*"  "*) echo "FAIL: resources not created: $VPC $S_DB $G_APP $ACL $E_WEB $E_APP $E_DB $FL $PL"; exit 1 ;;
esac
# another VPC, which --vpc-id leaves out
OTHER=$(a ec2 create-vpc --cidr-block 10.9.0.0/16 --query Vpc.VpcId)
pass "created with the AWS CLI: $VPC, 3 subnets, 3 groups, $ACL, 3 interfaces, $FL, $PL"

# ---------------------------------------------------------------- the user's settings
CONF=$T/conf
mkdir "$CONF"
cat >"$CONF/90-vpcfw.json" <<JSON
{"Vpcfw": {"Queues": [0], "ControlSocket": "$T/ctl.sock", "FlowLogDirectory": "$T/fl",
           "InterfaceBindings": [
               {"NetworkInterfaceId": "$E_WEB", "Device": "vweb"},
               {"NetworkInterfaceId": "$E_APP", "Device": "vapp"},
               {"NetworkInterfaceId": "$E_DB", "Device": "vdb"}]}}
JSON
settings=$(md5sum <"$CONF/90-vpcfw.json")
sync() { # sync [ARGS]: vpcfw-sync of this VPC; output in $T/sync.out
	"$PY" "$SYNC" -c "$CONF" --vpc-id "$VPC" --endpoint-url "$EP" --vpcfwd "$VPCFWD" --vpcfwctl "$CTL" \
		-s "$T/ctl.sock" --state-file "$T/state.json" --metrics-file "$T/sync.prom" "$@" >"$T/sync.out" 2>&1
}
state() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))" "$T/state.json" "$1"; }
metric() { awk -v m="$1" '$1 == m {print $2}' "$T/sync.prom"; }
ctl() { "$CTL" -s "$T/ctl.sock" "$@"; }
generation() { ctl --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
explain() { "$CTL" explain -c "$CONF" "$@" | head -1 | awk '{print $1, $2}'; }

# ---------------------------------------------------------------- first sync (no daemon yet)
# through a wrapper that logs how vpcfw-sync calls the CLI
cat >"$T/aws-logged" <<EOF
#!/bin/sh
printf 'AWS_PAGER=[%s] %s\n' "\${AWS_PAGER-unset}" "\$*" >>"$T/aws-calls"
exec aws "\$@"
EOF
chmod +x "$T/aws-logged"
sync --aws "$T/aws-logged"
check "first sync exits 0" 0 $?
grep -q "new configuration .*3 subnets, 2 network ACLs, 4 security groups, 3 interfaces, 1 prefix lists, 1 flow logs" "$T/sync.out" &&
	pass "first sync: a new configuration (the VPC's 3 subnets, 2 ACLs, 3 groups + default, 3 interfaces, the referenced prefix list, 1 flow log)" ||
	{ cat "$T/sync.out"; fail "first sync's summary"; }
calls=$(grep -c . "$T/aws-calls")
check "the CLI calls: 6 describe-*, the prefix list and its entries" 8 "$calls"
for op in describe-vpcs describe-subnets describe-network-acls describe-security-groups \
	describe-network-interfaces describe-managed-prefix-lists get-managed-prefix-list-entries describe-flow-logs; do
	grep -q " ec2 $op" "$T/aws-calls" || fail "no call of $op"
done
check "the 5 VPC-scoped calls filtered by vpc-id" 5 "$(grep -c -- "--filters Name=vpc-id,Values=$VPC\$" "$T/aws-calls")"
! grep -q -- "--no-paginate\|--max-items\|--page-size\|--starting-token" "$T/aws-calls" &&
	pass "pagination left to the CLI (no --no-paginate, --max-items, --page-size, --starting-token)" ||
	fail "a call limits pagination: $(grep -- '--no-paginate\|--max-items\|--page-size\|--starting-token' "$T/aws-calls")"
[ "$(grep -c -- '--output json' "$T/aws-calls")" = "$calls" ] && [ "$(grep -c '^AWS_PAGER=\[\]' "$T/aws-calls")" = "$calls" ] &&
	pass "every call: --output json, AWS_PAGER empty" || { cat "$T/aws-calls"; fail "--output json / AWS_PAGER"; }
grep -q "not running" "$T/sync.out" && pass "no daemon yet: said so" || fail "no daemon: not reported"
[ "$(md5sum <"$CONF/90-vpcfw.json")" = "$settings" ] && [ -f "$CONF/90-vpcfw.json" ] && [ ! -L "$CONF/90-vpcfw.json" ] &&
	pass "the user's settings file is untouched" || fail "the settings file changed"
grep -q "$OTHER" "$CONF"/*.json && fail "--vpc-id: the other VPC was synced" || pass "--vpc-id: the other VPC is left out"
"$VPCFWD" -c "$CONF" --check-config >/dev/null 2>&1
check "vpcfwd --check-config accepts the synced directory" 0 $?
check "explain -c: internet -> web:80 (0.0.0.0/0)" "ACCEPT RULES_ALLOW" "$(explain tcp 203.0.113.7 $WEB4 80)"
check "explain -c: web -> app:8000 (group reference)" "ACCEPT RULES_ALLOW" "$(explain tcp $WEB4 $APP4 8000)"
check "explain -c: internet -> app:8000" "REJECT ENI_SG_RULES_MISMATCH" "$(explain tcp 203.0.113.7 $APP4 8000)"
check "explain -c: web -> db:22 (the ACL)" "REJECT SUBNET_ACL_RESTRICTION" "$(explain tcp $WEB4 $DB4 22)"
check "explain -c: corp -> web:22 (the prefix list)" "ACCEPT RULES_ALLOW" "$(explain tcp $CORP4 $WEB4 22)"
check "state: last sync ok" 1 "$(state sync_ok)"
check "metrics: vpcfw_sync_success 1" 1 "$(metric vpcfw_sync_success)"

# ---------------------------------------------------------------- live: the lab
lab_three_tier || { echo "FAIL: cannot build the lab"; exit 1; }
lab_servers "$T" || { echo "FAIL: lab servers did not start"; exit 1; }
lab_queue_rules --queue-num 0
LOG=$T/vpcfwd.log
lab_start_vpcfwd "$LOG" -c "$CONF" || { echo "FAIL: vpcfwd did not start"; exit 1; }
check "vpcfwd runs the synced configuration (generation 1)" 1 "$(generation)"
lab_matrix "$LOG" <<PATHS
inet web $WEB4 tcp 80 ACCEPT
inet web $WEB4 tcp 22 REJECT ENI_SG_RULES_MISMATCH
corp web $WEB4 tcp 22 ACCEPT
web app $APP4 tcp 8000 ACCEPT
inet app $APP4 tcp 8000 REJECT ENI_SG_RULES_MISMATCH
app db $DB4 tcp 3306 ACCEPT
web db $DB4 tcp 3306 REJECT ENI_SG_RULES_MISMATCH
web db $DB4 tcp 22 REJECT SUBNET_ACL_RESTRICTION
PATHS
check "the created rules are enforced on real connections" 0 $?

# a tracked connection admitted by web's 8080 rule (source 203.0.113.0/24,
# not 0.0.0.0/0: tracked), the client only ACKs what the server sends
lab_bg web "$PY" "$LAB_DIR/stream.py" serve $WEB4 8080 "$T/ready-stream"
lab_wait_file "$T/ready-stream" 10 || fail "stream server"
lab_bg inet "$PY" "$LAB_DIR/stream.py" client $WEB4 8080 "$T/stream" 120
lines() { awk '{print ($1 == "closed") ? -1 : $1}' "$T/stream" 2>/dev/null || echo 0; }
i=0
while [ "$(lines)" -lt 5 ] 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ "$(lines)" -ge 5 ] 2>/dev/null && pass "tracked stream internet -> web:8080 flows" || fail "stream: $(cat "$T/stream" 2>&1)"

# ---------------------------------------------------------------- a revocation through the API
a ec2 revoke-security-group-ingress --group-id "$G_WEB" --protocol tcp --port 8080 --cidr 203.0.113.0/24 >/dev/null
before=$(lines)
sync
check "sync after the revocation exits 0" 0 $?
grep -q "new configuration" "$T/sync.out" && grep -q "vpcfwd reloaded" "$T/sync.out" &&
	pass "sync: new configuration, vpcfwd reloaded" || { cat "$T/sync.out"; fail "sync after revocation"; }
check "vpcfwd runs generation 2" 2 "$(generation)"
LAB_SPORT=21000 lab_matrix "$LOG" <<PATHS
inet web $WEB4 tcp 8080 REJECT ENI_SG_RULES_MISMATCH
inet web $WEB4 tcp 80 ACCEPT
PATHS
check "the revoked rule refuses new connections" 0 $?
sleep 3
after=$(lines)
[ "$after" -ge $((before + 20)) ] 2>/dev/null &&
	pass "the tracked connection survives the revocation ($before -> $after lines)" ||
	fail "tracked connection after the revocation: $before -> $after lines"
n_gen=$(find "$CONF/.vpcfw-sync" -maxdepth 1 -name 'gen-*' | wc -l)
check "generations kept: current and the one before" 2 "$n_gen"

# ---------------------------------------------------------------- nothing changed: no reload
sync
check "sync without change exits 0" 0 $?
grep -q "no change" "$T/sync.out" && ! grep -q reloaded "$T/sync.out" &&
	pass "nothing changed: no new configuration, no reload" || { cat "$T/sync.out"; fail "no-change sync"; }
check "vpcfwd still at generation 2" 2 "$(generation)"

# ---------------------------------------------------------------- the API fails
good=$(state sync_last_success)
cur=$(readlink "$CONF/.vpcfw-sync/current")
sleep 1
AWS_MAX_ATTEMPTS=1 "$PY" "$SYNC" -c "$CONF" --vpc-id "$VPC" --endpoint-url "http://127.0.0.1:1" \
	--vpcfwd "$VPCFWD" --vpcfwctl "$CTL" -s "$T/ctl.sock" --state-file "$T/state.json" \
	--metrics-file "$T/sync.prom" >"$T/sync.out" 2>&1
rc=$?
[ $rc -ne 0 ] && pass "unreachable API: exit $rc" || fail "unreachable API: exit 0"
grep -q "sync failed: aws ec2 describe-vpcs failed" "$T/sync.out" && pass "unreachable API: logged" ||
	{ cat "$T/sync.out"; fail "unreachable API: no log line"; }
check "unreachable API: state sync_ok 0" 0 "$(state sync_ok)"
check "unreachable API: last success unchanged" "$good" "$(state sync_last_success)"
check "unreachable API: metrics vpcfw_sync_success 0" 0 "$(metric vpcfw_sync_success)"
check "unreachable API: metrics keep the last good sync's time" "$good" "$(metric vpcfw_sync_last_success_timestamp_seconds)"
check "unreachable API: the configuration stays" "$cur" "$(readlink "$CONF/.vpcfw-sync/current")"
check "unreachable API: vpcfwd stays at generation 2" 2 "$(generation)"

# ---------------------------------------------------------------- a result vpcfwd refuses
# moto accepts a port AWS would refuse (70000): a result vpcfwd's check refuses
a ec2 authorize-security-group-ingress --group-id "$G_APP" --protocol tcp --port 70000 --cidr 10.9.0.0/16 >/dev/null
sync
rc=$?
[ $rc -ne 0 ] && pass "refused result: exit $rc" || fail "refused result: exit 0"
grep -q "check-config refused the new configuration" "$T/sync.out" && grep -q "70000" "$T/sync.out" &&
	pass "refused result: logged with vpcfwd's reason" || { cat "$T/sync.out"; fail "refused result: log"; }
check "refused result: state sync_ok 0" 0 "$(state sync_ok)"
check "refused result: the configuration stays" "$cur" "$(readlink "$CONF/.vpcfw-sync/current")"
check "refused result: vpcfwd stays at generation 2" 2 "$(generation)"
n_gen=$(find "$CONF/.vpcfw-sync" -maxdepth 1 -name 'gen-*' | wc -l)
check "refused result: its staging directory is removed" 2 "$n_gen"
LAB_SPORT=22000 lab_matrix "$LOG" <<PATHS
web app $APP4 tcp 8000 ACCEPT
inet web $WEB4 tcp 8080 REJECT ENI_SG_RULES_MISMATCH
PATHS
check "refused result: the running policy is still enforced" 0 $?
a ec2 revoke-security-group-ingress --group-id "$G_APP" --protocol tcp --port 70000 --cidr 10.9.0.0/16 >/dev/null
sync
check "sync after the API recovered exits 0" 0 $?
check "state: last sync ok again" 1 "$(state sync_ok)"

# ---------------------------------------------------------------- a reload that fails is retried
# A new rule (web: 443 from anywhere) swapped in, but the reload command
# fails: the run fails, vpcfwd keeps generation 2; the next run finds no
# change in the API but the reload still pending, and reloads.
a ec2 authorize-security-group-ingress --group-id "$G_WEB" --protocol tcp --port 443 --cidr 0.0.0.0/0 >/dev/null
sync --reload-command false
rc=$?
[ $rc -ne 0 ] && grep -q "'false' failed" "$T/sync.out" && pass "a failed reload command: exit $rc, logged" ||
	{ cat "$T/sync.out"; fail "a failed reload command: exit $rc"; }
check "failed reload: vpcfwd stays at generation 2" 2 "$(generation)"
check "failed reload: state says a reload is pending" True "$(state reload_pending)"
sync
check "the next sync exits 0" 0 $?
grep -q "no change" "$T/sync.out" && grep -q "vpcfwd reloaded" "$T/sync.out" &&
	pass "the next sync: no change in the API, the pending reload done" || { cat "$T/sync.out"; fail "pending reload"; }
check "vpcfwd runs generation 3" 3 "$(generation)"
LAB_SPORT=23000 lab_matrix "$LOG" <<PATHS
inet web $WEB4 tcp 443 ACCEPT
PATHS
check "the new rule is enforced" 0 $?

# ---------------------------------------------------------------- --interval
# a loop (delivery only, of an empty directory: no API call) runs again
# every second and stops cleanly on SIGTERM
"$PY" "$SYNC" -c "$CONF" --no-sync --ship-flow-logs --flow-log-dir "$T/none" --state-file "$T/loop.json" \
	--interval 1 >"$T/loop.out" 2>&1 &
loop=$!
loopstate() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('ship_last_success', 0))" "$T/loop.json" 2>/dev/null || echo 0; }
i=0
while [ "$(loopstate)" = 0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
first=$(loopstate)
sleep 2.5
second=$(loopstate)
[ "$first" != 0 ] && [ "$second" -gt "$first" ] 2>/dev/null && pass "--interval 1: runs again ($first, then $second)" ||
	{ cat "$T/loop.out"; fail "--interval 1: last run at $first, then $second"; }
kill -TERM $loop
wait $loop
check "--interval: SIGTERM ends the loop with status 0" 0 $?

# ---------------------------------------------------------------- flow logs to S3
lab_stop_vpcfwd     # SIGTERM: every open window is written, files closed
check "vpcfwd stopped cleanly" 0 "$VPCFWD_STATUS"
mapfile -t local_files < <(cd "$T/fl" && find . -type f -name '*.log.gz' | sed 's|^\./||' | sort)
[ ${#local_files[@]} -gt 0 ] && pass "vpcfwd wrote ${#local_files[@]} flow-log file(s)" || fail "no flow-log file in $T/fl"
ship() { "$PY" "$SYNC" -c "$CONF" --no-sync --ship-flow-logs --state-file "$T/state.json" \
	--metrics-file "$T/sync.prom" "$@" >"$T/ship.out" 2>&1; }
AWS_MAX_ATTEMPTS=1 ship --endpoint-url "http://127.0.0.1:1"
rc=$?
[ $rc -ne 0 ] && pass "delivery to an unreachable S3: exit $rc" || fail "delivery to an unreachable S3: exit 0"
left=$(cd "$T/fl" && find . -type f -name '*.log.gz' | wc -l)
check "delivery failed: every file kept for the next run" ${#local_files[@]} "$left"
check "delivery failed: metrics count the pending files" ${#local_files[@]} "$(metric vpcfw_flowlog_ship_pending_files)"
ship --endpoint-url "$EP"
check "delivery to moto's S3 exits 0" 0 $?
left=$(cd "$T/fl" && find . -type f -name '*.log.gz' | wc -l)
check "delivered files are removed locally" 0 "$left"
mapfile -t keys < <(a s3api list-objects-v2 --bucket vpcfw-flowlogs --query 'Contents[].Key' | tr '\t' '\n' | sort)
check "the bucket holds the same keys as the local layout" "${local_files[*]}" "${keys[*]}"
re="^AWSLogs/123456789012/vpcflowlogs/us-east-1/[0-9]{4}/[0-9]{2}/[0-9]{2}/123456789012_vpcflowlogs_us-east-1_${FL}_[0-9]{8}T[0-9]{4}Z_[0-9a-f]{8}\.log\.gz$"
bad=0
for k in "${keys[@]}"; do [[ $k =~ $re ]] || { echo "  key: $k"; bad=1; }; done
check "every key is AWS's layout (AWSLogs/ACCOUNT/vpcflowlogs/REGION/Y/M/D/..._FLOWLOGID_..Z_HASH.log.gz)" 0 $bad
: >"$T/records"
for k in "${keys[@]}"; do
	aws --endpoint-url "$EP" s3 cp "s3://vpcfw-flowlogs/$k" - | gunzip >>"$T/records" ||
		fail "s3://vpcfw-flowlogs/$k does not decompress"
done
grep -qx "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status" "$T/records" &&
	pass "the objects decompress and carry the default format's header" || fail "no header in $(head -3 "$T/records")"
grep -Eq "^2 123456789012 $E_WEB 203\.0\.113\.7 10\.0\.1\.10 [0-9]+ 80 6 [0-9]+ [0-9]+ [0-9]+ [0-9]+ ACCEPT OK$" "$T/records" &&
	pass "a record of internet -> web:80, ACCEPT" || fail "no ACCEPT record of web:80"
grep -Eq "^2 123456789012 $E_WEB 203\.0\.113\.7 10\.0\.1\.10 [0-9]+ 8080 6 [0-9]+ [0-9]+ [0-9]+ [0-9]+ REJECT OK$" "$T/records" &&
	pass "a record of the refused internet -> web:8080, REJECT" || fail "no REJECT record of web:8080"
check "metrics: files delivered" ${#local_files[@]} "$(metric vpcfw_flowlog_ship_files_total)"
check "metrics: nothing pending" 0 "$(metric vpcfw_flowlog_ship_pending_files)"

echo "vpcfw-sync: $fails failure(s)"
[ $fails -eq 0 ]
