#!/bin/bash
# The README's walkthrough (issue #14 item 4), as a script a test runs:
# moto_server stands for the EC2 API; a VPC with two subnets, two security
# groups (one admitting the other by reference), a network ACL, two
# interfaces and a flow log to S3 are made with the AWS CLI; vpcfw-sync writes
# the configuration, vpcfw-lab makes it a live lab; a connection succeeds, a
# rule is revoked with the AWS CLI, new connections fail while the tracked
# one goes on, and the flow logs are read back from S3.
#
#   sudo tests/walkthrough.sh          # from a build: the tools of this tree
#
# Each step checks what it shows and the script exits 1 at the first
# surprise.  Root (network namespaces), moto_server and aws on PATH; exits
# 77 (skipped) with the reason otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/..}
bin=${top_builddir:-$top_srcdir}/src
export VPCFWD=${VPCFWD:-$bin/vpcfwd} VPCFWCTL=${VPCFWCTL:-$bin/vpcfwctl}
vpcfw_sync() { python3 "$top_srcdir/src/vpcfw-sync" "$@"; }
vpcfw_lab() { python3 "$bin/vpcfw-lab" --name "wt$$" "$@"; }

[ "$(id -u)" = 0 ] || { echo "walkthrough: needs root (network namespaces), skipped"; exit 77; }
command -v moto_server >/dev/null || { echo "walkthrough: moto_server not on PATH, skipped"; exit 77; }
command -v aws >/dev/null || { echo "walkthrough: aws not on PATH, skipped"; exit 77; }
[ -f "$bin/vpcfw-lab" ] || { echo "walkthrough: no vpcfw-lab in $bin, skipped"; exit 77; }

T=$(mktemp -d)
MOTO=
cleanup() {
	vpcfw_lab down >/dev/null 2>&1
	[ -z "$MOTO" ] || kill "$MOTO" 2>/dev/null
	jobs -p | xargs -r kill 2>/dev/null
	wait 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
cd "$T" || exit 1
step() { printf '\n==== %s\n' "$*"; }
die() { echo "walkthrough: FAILED: $*"; exit 1; }
set -o pipefail

step "1. An EC2 API on this machine: moto_server (or LocalStack)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >moto.log 2>&1 &
MOTO=$!
EP=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$T/none AWS_SHARED_CREDENTIALS_FILE=$T/none AWS_PAGER=
ec2() { aws --endpoint-url "$EP" --output text ec2 "$@"; }
for _ in $(seq 50); do ec2 describe-vpcs >/dev/null 2>&1 && break; sleep 0.2; done
ec2 describe-vpcs >/dev/null || die "moto_server does not answer"

step "2. A VPC with the AWS CLI: subnets, groups with a group reference, a network ACL, interfaces, a flow log"
VPC=$(ec2 create-vpc --cidr-block 10.0.0.0/16 --query Vpc.VpcId)
WEB_NET=$(ec2 create-subnet --vpc-id "$VPC" --cidr-block 10.0.1.0/24 --availability-zone us-east-1a --query Subnet.SubnetId)
APP_NET=$(ec2 create-subnet --vpc-id "$VPC" --cidr-block 10.0.2.0/24 --availability-zone us-east-1a --query Subnet.SubnetId)
WEB_SG=$(ec2 create-security-group --vpc-id "$VPC" --group-name web --description web --query GroupId)
APP_SG=$(ec2 create-security-group --vpc-id "$VPC" --group-name app --description app --query GroupId)
# web: 80 from anywhere, 8080 from 203.0.113.0/24 (the lab's outside); app: 8000 from the web group
ec2 authorize-security-group-ingress --group-id "$WEB_SG" --protocol tcp --port 80 --cidr 0.0.0.0/0 >/dev/null
ec2 authorize-security-group-ingress --group-id "$WEB_SG" --protocol tcp --port 8080 --cidr 203.0.113.0/24 >/dev/null
ec2 authorize-security-group-ingress --group-id "$APP_SG" \
	--ip-permissions "IpProtocol=tcp,FromPort=8000,ToPort=8000,UserIdGroupPairs=[{GroupId=$WEB_SG}]" >/dev/null
# app's subnet: a network ACL that lets in only 8000 from the VPC (and replies from anywhere)
ACL=$(ec2 create-network-acl --vpc-id "$VPC" --query NetworkAcl.NetworkAclId)
ec2 create-network-acl-entry --network-acl-id "$ACL" --ingress --rule-number 100 --protocol tcp \
	--port-range From=8000,To=8000 --cidr-block 10.0.0.0/16 --rule-action allow
ec2 create-network-acl-entry --network-acl-id "$ACL" --ingress --rule-number 200 --protocol tcp \
	--port-range From=1024,To=65535 --cidr-block 0.0.0.0/0 --rule-action allow
ec2 create-network-acl-entry --network-acl-id "$ACL" --egress --rule-number 100 --protocol -1 \
	--cidr-block 0.0.0.0/0 --rule-action allow
ASSOC=$(ec2 describe-network-acls --filters "Name=vpc-id,Values=$VPC" \
	--query "NetworkAcls[].Associations[?SubnetId=='$APP_NET'].NetworkAclAssociationId | []")
ec2 replace-network-acl-association --association-id "$ASSOC" --network-acl-id "$ACL" >/dev/null
WEB=$(ec2 create-network-interface --subnet-id "$WEB_NET" --groups "$WEB_SG" --private-ip-address 10.0.1.10 \
	--query NetworkInterface.NetworkInterfaceId)
APP=$(ec2 create-network-interface --subnet-id "$APP_NET" --groups "$APP_SG" --private-ip-address 10.0.2.10 \
	--query NetworkInterface.NetworkInterfaceId)
ec2 create-tags --resources "$WEB" --tags Key=Name,Value=web
ec2 create-tags --resources "$APP" --tags Key=Name,Value=app
aws --endpoint-url "$EP" s3api create-bucket --bucket my-flow-logs >/dev/null
FL=$(ec2 create-flow-logs --resource-type VPC --resource-ids "$VPC" --traffic-type ALL \
	--log-destination-type s3 --log-destination arn:aws:s3:::my-flow-logs --query 'FlowLogIds[0]')
echo "$VPC: web $WEB ($WEB_SG), app $APP ($APP_SG), $ACL on app's subnet, flow log $FL"

step "3. vpcfw-sync writes the configuration; vpcfw-lab makes it live"
mkdir vpc.d
vpcfw_sync -c vpc.d --endpoint-url "$EP" --vpc-id "$VPC" --state-file '' --no-reload ||
	die "vpcfw-sync"
ls vpc.d
vpcfw_lab up -c vpc.d --flow-log-dir "$T/flow-logs" || die "vpcfw-lab up"

step "4. Connections: the internet to web:80, web to app:8000 (group reference), the internet to app:8000 and :22"
vpcfw_lab probe outside web tcp 80 || die "outside -> web:80 should get through"
vpcfw_lab probe web app tcp 8000 || die "web -> app:8000 should get through"
vpcfw_lab probe outside app tcp 8000 && die "outside -> app:8000 should be refused (app's group)"
vpcfw_lab probe outside app tcp 22 && die "outside -> app:22 should be refused (app's network ACL)"

step "5. A long connection from the internet to web:8080 (tracked: 203.0.113.0/24 is not 0.0.0.0/0)"
vpcfw_lab exec web -- python3 -c '
import socket, time
s = socket.create_server(("10.0.1.10", 8080))
c, _ = s.accept()
for i in range(1000000):
    c.sendall(b"%d\n" % i)
    time.sleep(0.1)' &
SERVER=$!
sleep 1
vpcfw_lab exec outside -- python3 -u -c '
import socket
for line in socket.create_connection(("10.0.1.10", 8080)).makefile():
    print(line, end="")' >stream.txt &
CLIENT=$!
# Ten lines a second; a loaded machine may start the two ends late, so wait
# (up to 10 s) rather than sleep a fixed time.
lines_over() {	# lines_over N: true once stream.txt has more than N lines (10 s at most)
	local i
	for i in $(seq 100); do
		[ "$(wc -l <stream.txt)" -gt "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
lines_over 5 || die "the long connection does not flow"
echo "lines so far: $(wc -l <stream.txt)"

step "6. Revoke web's 8080 rule with the AWS CLI; vpcfw-sync, which has vpcfw-lab reload"
ec2 revoke-security-group-ingress --group-id "$WEB_SG" --protocol tcp --port 8080 --cidr 203.0.113.0/24 >/dev/null
vpcfw_sync -c vpc.d --endpoint-url "$EP" --vpc-id "$VPC" --state-file '' \
	--reload-command "python3 $bin/vpcfw-lab --name wt$$ reload" || die "vpcfw-sync + vpcfw-lab reload"
n1=$(wc -l <stream.txt)
vpcfw_lab probe outside web tcp 8080 && die "a new connection to web:8080 should be refused"
lines_over $((n1 + 10)) || die "the tracked connection stopped ($n1 -> $(wc -l <stream.txt) lines)"
echo "the tracked connection goes on: $n1 -> $(wc -l <stream.txt) lines"

step "7. Flow logs: stop the lab (open windows are written), deliver to S3, read them back"
kill $SERVER $CLIENT 2>/dev/null; wait $SERVER $CLIENT 2>/dev/null     # the long connection's ends
vpcfw_lab down || die "vpcfw-lab down"
vpcfw_sync -c vpc.d --endpoint-url "$EP" --no-sync --ship-flow-logs --flow-log-dir "$T/flow-logs" \
	--state-file '' || die "flow-log delivery"
aws --endpoint-url "$EP" s3 ls --recursive s3://my-flow-logs/ | tee objects.txt
[ -s objects.txt ] || die "no object in the bucket"
for key in $(awk '{print $4}' objects.txt); do
	aws --endpoint-url "$EP" s3 cp "s3://my-flow-logs/$key" - | zcat
done | tee records.txt | head -20
grep -Eq " $WEB [0-9.]+ 10\.0\.1\.10 [0-9]+ 8080 6 .* REJECT OK$" records.txt ||
	die "no REJECT record of the refused connection to web:8080"
grep -Eq " $WEB [0-9.]+ 10\.0\.1\.10 [0-9]+ 80 6 .* ACCEPT OK$" records.txt ||
	die "no ACCEPT record of web:80"
echo
echo "walkthrough: every step did what it says"
