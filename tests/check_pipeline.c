/* The verdict pipeline of SPEC §2 over a small VPC: stage order, reasons,
 * exempt addresses, connection tracking, reload semantics. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/pipeline.h"

/* web 10.0.1.0/24 (NACL: in 80 + ephemeral, out all), app 10.0.2.0/24 and
 * db 10.0.3.0/24 (default NACL: allow all); groups as in the three-tier
 * example; 10.0.2.50 is in the app subnet but on no interface. */
static const char *const LAB =
	"{\"Vpcs\":[{\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.0.0/16\"}],"
	"\"Subnets\":["
	" {\"SubnetId\":\"subnet-web\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.1.0/24\","
	"  \"Ipv6CidrBlockAssociationSet\":[{\"Ipv6CidrBlock\":\"2001:db8:1:1::/64\"}]},"
	" {\"SubnetId\":\"subnet-app\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.2.0/24\"},"
	" {\"SubnetId\":\"subnet-db\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.3.0/24\"}],"
	"\"NetworkAcls\":["
	" {\"NetworkAclId\":\"acl-web\",\"VpcId\":\"vpc-1\",\"IsDefault\":false,"
	"  \"Associations\":[{\"SubnetId\":\"subnet-web\"}],\"Entries\":["
	"  {\"RuleNumber\":100,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"6\","
	"   \"CidrBlock\":\"0.0.0.0/0\",\"PortRange\":{\"From\":80,\"To\":80}},"
	"  {\"RuleNumber\":110,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"6\","
	"   \"CidrBlock\":\"10.0.0.0/16\",\"PortRange\":{\"From\":1024,\"To\":65535}},"
	"  {\"RuleNumber\":120,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"17\","
	"   \"CidrBlock\":\"0.0.0.0/0\",\"PortRange\":{\"From\":1024,\"To\":65535}},"
	"  {\"RuleNumber\":130,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"1\","
	"   \"CidrBlock\":\"0.0.0.0/0\",\"IcmpTypeCode\":{\"Type\":-1,\"Code\":-1}},"
	"  {\"RuleNumber\":140,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"-1\","
	"   \"Ipv6CidrBlock\":\"::/0\"},"
	"  {\"RuleNumber\":100,\"Egress\":true,\"RuleAction\":\"allow\",\"Protocol\":\"-1\","
	"   \"CidrBlock\":\"0.0.0.0/0\"},"
	"  {\"RuleNumber\":101,\"Egress\":true,\"RuleAction\":\"allow\",\"Protocol\":\"-1\","
	"   \"Ipv6CidrBlock\":\"::/0\"}]},"
	" {\"NetworkAclId\":\"acl-default\",\"VpcId\":\"vpc-1\",\"IsDefault\":true,\"Entries\":["
	"  {\"RuleNumber\":100,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"-1\","
	"   \"CidrBlock\":\"0.0.0.0/0\"},"
	"  {\"RuleNumber\":100,\"Egress\":true,\"RuleAction\":\"allow\",\"Protocol\":\"-1\","
	"   \"CidrBlock\":\"0.0.0.0/0\"}]}],"
	"\"SecurityGroups\":["
	" {\"GroupId\":\"sg-web\",\"IpPermissions\":["
	"  {\"IpProtocol\":\"tcp\",\"FromPort\":80,\"ToPort\":80,\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}],"
	"   \"Ipv6Ranges\":[{\"CidrIpv6\":\"::/0\"}]},"
	"  {\"IpProtocol\":\"tcp\",\"FromPort\":22,\"ToPort\":22,\"IpRanges\":[{\"CidrIp\":\"198.51.100.0/24\"}]}],"
	"  \"IpPermissionsEgress\":[{\"IpProtocol\":\"-1\",\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}],"
	"   \"Ipv6Ranges\":[{\"CidrIpv6\":\"::/0\"}]}]},"
	" {\"GroupId\":\"sg-app\",\"IpPermissions\":["
	"  {\"IpProtocol\":\"tcp\",\"FromPort\":8000,\"ToPort\":8000,\"UserIdGroupPairs\":[{\"GroupId\":\"sg-web\"}]}],"
	"  \"IpPermissionsEgress\":[{\"IpProtocol\":\"-1\",\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}]},"
	" {\"GroupId\":\"sg-db\",\"IpPermissions\":["
	"  {\"IpProtocol\":\"tcp\",\"FromPort\":3306,\"ToPort\":3306,\"UserIdGroupPairs\":[{\"GroupId\":\"sg-app\"}]}],"
	"  \"IpPermissionsEgress\":[{\"IpProtocol\":\"udp\",\"FromPort\":53,\"ToPort\":53,"
	"   \"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]},"
	"   {\"IpProtocol\":\"icmp\",\"FromPort\":8,\"ToPort\":-1,\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]},"
	"   {\"IpProtocol\":\"tcp\",\"FromPort\":0,\"ToPort\":65535,\"IpRanges\":[{\"CidrIp\":\"10.0.0.0/16\"}]}]}],"
	"\"NetworkInterfaces\":["
	" {\"NetworkInterfaceId\":\"eni-web\",\"SubnetId\":\"subnet-web\",\"PrivateIpAddress\":\"10.0.1.10\","
	"  \"PrivateIpAddresses\":[{\"PrivateIpAddress\":\"10.0.1.10\",\"Primary\":true}],"
	"  \"Ipv6Addresses\":[{\"Ipv6Address\":\"2001:db8:1:1::10\"}],"
	"  \"Groups\":[{\"GroupId\":\"sg-web\"}]},"
	" {\"NetworkInterfaceId\":\"eni-app\",\"SubnetId\":\"subnet-app\",\"PrivateIpAddress\":\"10.0.2.10\","
	"  \"Groups\":[{\"GroupId\":\"sg-app\"}]},"
	" {\"NetworkInterfaceId\":\"eni-db\",\"SubnetId\":\"subnet-db\",\"PrivateIpAddress\":\"10.0.3.10\","
	"  \"Groups\":[{\"GroupId\":\"sg-db\"}],"
	"  \"ConnectionTrackingConfiguration\":{\"UdpTimeout\":60}}]"
	"%s}";

static struct policy *lab(const char *extra)
{
	char buf[16384];
	snprintf(buf, sizeof(buf), LAB, extra ? extra : "");
	return tu_policy(buf);
}

static struct policy *pol;
static struct pipeline pl;

static void setup(void)
{
	pol = lab(NULL);
	pipeline_init(&pl, ct_create(1024));
	ck_assert_ptr_nonnull(pl.ct);
}

static void teardown(void)
{
	ct_destroy(pl.ct);
	policy_free(pol);
	policy_intern_reset();
}

static struct verdict eval_at(struct packet p, double t)
{
	struct verdict v;
	pipeline_eval(&pl, pol, &p, NULL, tu_sec(t), &v);
	return v;
}

static struct verdict eval(struct packet p)
{
	return eval_at(p, 0);
}

static void expect(struct verdict v, bool accept, enum stage st, enum reason r, const char *rule)
{
	char buf[256];
	verdict_rule_format(&v, buf, sizeof(buf));
	ck_assert_msg(v.accept == accept && v.stage == st && v.reason == r,
		      "got %s %s %s (%s), expected %s %s %s", v.accept ? "ACCEPT" : "REJECT",
		      stage_name(v.stage), reason_name(v.reason), buf, accept ? "ACCEPT" : "REJECT",
		      stage_name(st), reason_name(r));
	if (rule)
		ck_assert_str_eq(buf, rule);
}

#define TCP(s, d, sp, dp, fl) tu_pkt(s, d, 6, sp, dp, fl)
#define UDP(s, d, sp, dp) tu_pkt(s, d, 17, sp, dp, 0)

START_TEST(test_three_tier)
{
	/* internet -> web:80, admitted by the world rule; egress all-open makes
	 * the flow untracked, and the reply is admitted by the egress rule */
	expect(eval(TCP("203.0.113.7", "10.0.1.10", 40001, 80, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, "sg-web IpPermissions[0]");
	expect(eval(TCP("10.0.1.10", "203.0.113.7", 80, 40001, TCP_SYN | TCP_ACK)), true,
	       STAGE_NACL_OUT, REASON_RULES_ALLOW, "acl-web outbound rule 100");
	/* web -> app:8000 through the group reference; the reply is tracked */
	expect(eval(TCP("10.0.1.10", "10.0.2.10", 40003, 8000, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, "sg-app IpPermissions[0]");
	expect(eval(TCP("10.0.2.10", "10.0.1.10", 8000, 40003, TCP_SYN | TCP_ACK)), true,
	       STAGE_CONNTRACK, REASON_TRACKED_FLOW, "tracked flow");
	/* internet -> app: no rule */
	expect(eval(TCP("203.0.113.7", "10.0.2.10", 40002, 8000, TCP_SYN)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, "no security-group rule of eni-app admits it (ingress)");
	/* web -> db: the web group is not the app group */
	expect(eval(TCP("10.0.1.10", "10.0.3.10", 40004, 3306, TCP_SYN)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
	/* unsolicited reply: no tracked flow at app for this port */
	expect(eval(TCP("10.0.3.10", "10.0.2.10", 3306, 40099, TCP_SYN | TCP_ACK)), false,
	       STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);
	/* db's egress admits nothing to the internet on tcp: SG egress refuses first */
	expect(eval(TCP("10.0.3.10", "203.0.113.7", 40000, 443, TCP_SYN)), false, STAGE_SG_EGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, "no security-group rule of eni-db admits it (egress)");
}
END_TEST

START_TEST(test_nacl_is_stateless)
{
	/* corporate SSH to web: SG admits (tracked); the reply to port 50000 at a
	 * non-VPC address has no outbound problem, but inbound to web from the
	 * internet on 22 is not in the web NACL (only 80 and 10.0/16 ephemeral) */
	expect(eval(TCP("198.51.100.20", "10.0.1.10", 50000, 22, TCP_SYN)), false, STAGE_NACL_IN,
	       REASON_SUBNET_ACL_RESTRICTION, "acl-web inbound rule *");
	/* app -> web:80: crossing subnets, inbound 80 allowed; the reply goes to
	 * an ephemeral port, allowed for 10.0.0.0/16 by rule 110 */
	expect(eval(TCP("10.0.2.10", "10.0.1.10", 41000, 80, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, NULL);
	/* reply from web back to app: tracked at web? untracked (world rule +
	 * all-open egress), admitted by web egress; app ingress: tracked at app */
	expect(eval(TCP("10.0.1.10", "10.0.2.10", 80, 41000, TCP_SYN | TCP_ACK)), true,
	       STAGE_CONNTRACK, REASON_TRACKED_FLOW, NULL);
	/* internet -> web UDP to a low port: NACL inbound refuses although no SG
	 * was consulted yet (NACL before SG ingress) */
	expect(eval(UDP("203.0.113.7", "10.0.1.10", 5000, 53)), false, STAGE_NACL_IN,
	       REASON_SUBNET_ACL_RESTRICTION, NULL);
}
END_TEST

START_TEST(test_within_subnet_skips_nacl)
{
	/* 10.0.1.20 is in the web subnet, on no interface: no SG, and no NACL
	 * between two addresses of one subnet */
	expect(eval(TCP("10.0.1.20", "10.0.1.10", 40000, 22, TCP_SYN)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
	expect(eval(TCP("10.0.1.20", "10.0.1.10", 40000, 80, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, NULL);
	/* an address on no interface still has its subnet's NACL */
	expect(eval(TCP("203.0.113.7", "10.0.1.20", 40000, 22, TCP_SYN)), false, STAGE_NACL_IN,
	       REASON_SUBNET_ACL_RESTRICTION, NULL);
	expect(eval(TCP("203.0.113.7", "10.0.1.20", 40000, 80, TCP_SYN)), true, STAGE_NACL_IN,
	       REASON_RULES_ALLOW, "acl-web inbound rule 100");
	/* nothing modelled on either side */
	expect(eval(TCP("203.0.113.7", "198.51.100.1", 1, 2, TCP_SYN)), true, STAGE_NONE,
	       REASON_NOT_MODELLED, NULL);
}
END_TEST

static const struct {
	const char *src, *dst;
} exempt_cases[] = {
	{ "10.0.3.10", "169.254.169.254" },      /* IMDS */
	{ "169.254.1.1", "169.254.169.254" },    /* link-local, both ends */
	{ "fe80::1", "ff02::1" },                /* stays on the link */
	{ "169.254.1.1", "224.0.0.251" },
	{ "10.0.3.10", "169.254.169.123" },      /* Time Sync */
	{ "10.0.3.10", "169.254.170.2" },        /* ECS metadata */
	{ "10.0.3.10", "10.0.3.0" },             /* network address */
	{ "10.0.3.10", "10.0.3.1" },             /* router */
	{ "10.0.3.10", "10.0.3.2" },             /* DNS */
	{ "10.0.3.10", "10.0.3.3" },             /* reserved */
	{ "10.0.3.10", "10.0.3.255" },           /* broadcast */
	{ "10.0.3.10", "10.0.0.2" },             /* VPC DNS: VPC base + 2 */
	{ "2001:db8:1:1::10", "fe80::1" },
	{ "2001:db8:1:1::10", "fd00:ec2::254" },
	{ "2001:db8:1:1::10", "2001:db8:1:1::" },
	{ "2001:db8:1:1::10", "2001:db8:1:1::1" },
	{ "2001:db8:1:1::10", "2001:db8:1:1::3" },
	{ "2001:db8:1:1::10", "2001:db8:1:1:ffff:ffff:ffff:ffff" },
};

START_TEST(test_exempt)
{
	/* db's egress admits no tcp to these; exemption must come first */
	struct verdict v = eval(TCP(exempt_cases[_i].src, exempt_cases[_i].dst, 40000, 9999, TCP_SYN));
	expect(v, true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS, NULL);
	ck_assert(v.exempt);
}
END_TEST

/* SPEC §5 (infrastructure-security): the exemption is for packets *to*
 * AWS's addresses and their replies; a packet *from* one that answers no
 * request is forged.  db admits tcp 3306 from app only. */
static const struct {
	const char *src, *dst;
	enum reason r;
} forged_cases[] = {
	{ "169.254.169.254", "10.0.3.10", REASON_INVALID_SOURCE_ADDRESS },  /* IMDS */
	{ "169.254.169.123", "10.0.3.10", REASON_INVALID_SOURCE_ADDRESS },  /* Time Sync */
	{ "10.0.0.2", "10.0.3.10", REASON_INVALID_SOURCE_ADDRESS },         /* VPC DNS */
	{ "10.0.3.2", "10.0.3.10", REASON_INVALID_SOURCE_ADDRESS },         /* subnet DNS */
	{ "10.0.3.1", "10.0.3.10", REASON_INVALID_SOURCE_ADDRESS },         /* router */
	{ "10.0.3.0", "10.0.3.10", REASON_INVALID_SOURCE_ADDRESS },         /* network */
	{ "10.0.3.255", "10.0.3.10", REASON_INVALID_SOURCE_ADDRESS },       /* broadcast */
	{ "10.0.1.255", "169.254.169.254", REASON_INVALID_SOURCE_ADDRESS }, /* even to IMDS */
	{ "fe80::1", "2001:db8:1:1::10", REASON_INVALID_SOURCE_ADDRESS },   /* off the link */
	{ "2001:db8:1:1::", "2001:db8:1:1::10", REASON_INVALID_SOURCE_ADDRESS },
	{ "2001:db8:1:1:ffff:ffff:ffff:ffff", "2001:db8:1:1::10", REASON_INVALID_SOURCE_ADDRESS },
	{ "2001:db8:1:1::2", "2001:db8:1:1::10", REASON_INVALID_SOURCE_ADDRESS },
	{ "fd00:ec2::254", "2001:db8:1:1::10", REASON_ENI_SG_RULES_MISMATCH }, /* judged by rules */
};

START_TEST(test_forged_exempt_source)
{
	struct verdict v = eval(TCP(forged_cases[_i].src, forged_cases[_i].dst, 80,
				    strchr(forged_cases[_i].dst, ':') ? 22 : 3306, TCP_SYN));
	ck_assert_msg(!v.accept && v.reason == forged_cases[_i].r, "%s: got %s %s",
		      forged_cases[_i].src, v.accept ? "ACCEPT" : "REJECT", reason_name(v.reason));
	ck_assert(!v.exempt);
	/* refused where flow logs see it: at the destination */
	struct packet p = tu_pkt(forged_cases[_i].src, forged_cases[_i].dst, 6, 1, 1, 0);
	ck_assert_ptr_eq(v.dst_iface, policy_iface_by_addr(pol, &p.dst));
	ck_assert_uint_ge(counter_get(&pl.counters.packets[v.stage][v.reason]), 1);
}
END_TEST

/* Real requests to AWS's addresses and their replies stay exempt: IMDS
 * over TCP, DNS over UDP (the VPC's and the subnet's), echo to the router,
 * IMDS over IPv6; a reply's later fragments and an ICMP error quoting the
 * request too.  A reply to another port, or after the request idled out,
 * is refused. */
START_TEST(test_exempt_replies)
{
	static const struct {
		const char *inst, *svc;
		uint8_t proto;
		uint16_t port;
	} c[] = {
		{ "10.0.3.10", "169.254.169.254", 6, 80 },
		{ "10.0.3.10", "10.0.0.2", 17, 53 },
		{ "10.0.3.10", "10.0.3.2", 17, 53 },
		{ "10.0.3.10", "169.254.169.123", 17, 123 },
		{ "2001:db8:1:1::10", "fd00:ec2::254", 6, 80 },
		{ "2001:db8:1:1::10", "2001:db8:1:1::2", 17, 53 },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint8_t req_fl = c[i].proto == 6 ? TCP_SYN : 0, rep_fl = c[i].proto == 6 ? TCP_SYN | TCP_ACK : 0;
		expect(eval_at(tu_pkt(c[i].inst, c[i].svc, c[i].proto, 41000, c[i].port, req_fl), 1),
		       true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS, "to an exempt address");
		expect(eval_at(tu_pkt(c[i].svc, c[i].inst, c[i].proto, c[i].port, 41000, rep_fl), 1.01),
		       true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS, "reply from an exempt address");
		struct verdict v = eval_at(tu_pkt(c[i].svc, c[i].inst, c[i].proto, c[i].port, 41001, rep_fl), 1.02);
		ck_assert_msg(!v.accept && !v.exempt, "case %zu: a reply to another port", i);
	}
	/* ICMP echo to the subnet router, and its reply */
	expect(eval_at(tu_icmp("10.0.3.10", "10.0.3.1", 8, 0, 7), 2), true, STAGE_EXEMPT,
	       REASON_EXEMPT_ADDRESS, NULL);
	expect(eval_at(tu_icmp("10.0.3.1", "10.0.3.10", 0, 0, 7), 2.1), true, STAGE_EXEMPT,
	       REASON_EXEMPT_ADDRESS, "reply from an exempt address");
	ck_assert(!eval_at(tu_icmp("10.0.3.1", "10.0.3.10", 0, 0, 8), 2.1).accept);
	/* the DNS reply, fragmented: head and a later fragment */
	expect(eval_at(tu_pkt("10.0.3.10", "10.0.0.2", 17, 42000, 53, 0), 3), true, STAGE_EXEMPT,
	       REASON_EXEMPT_ADDRESS, NULL);
	struct packet head = tu_pkt("10.0.0.2", "10.0.3.10", 17, 53, 42000, 0);
	head.flags |= PKT_F_FRAG_HEAD;
	head.frag_id = 77;
	ck_assert(eval_at(head, 3.1).exempt);
	struct packet tail = tu_pkt("10.0.0.2", "10.0.3.10", 17, 0, 0, 0);
	tail.flags = (tail.flags & ~PKT_F_L4) | PKT_F_FRAGMENT;
	tail.frag_id = 77;
	ck_assert(eval_at(tail, 3.1).exempt);
	tail.frag_id = 78;
	ck_assert(!eval_at(tail, 3.1).accept);
	/* UDP requests are remembered as long as a UDP stream: 180 s idle */
	ck_assert(!eval_at(tu_pkt("10.0.0.2", "10.0.3.10", 17, 53, 42000, 0), 3 + 181).accept);
}
END_TEST

/* Where InterfaceBindings are given, a source owned by a bound interface
 * arriving from any other device is spoofed (rp_filter strict mode), even
 * from a device bound to nothing or to an interface that checks no
 * sources; from its own device it is judged by the rules. */
START_TEST(test_bound_source_from_elsewhere)
{
	struct policy *bp = lab(",\"Vpcfw\":{\"InterfaceBindings\":["
				"{\"NetworkInterfaceId\":\"eni-web\",\"Device\":\"vweb\"},"
				"{\"NetworkInterfaceId\":\"eni-app\",\"Device\":\"vapp\"}]}");
	ck_assert_ptr_nonnull(bp);
	const struct iface *web = policy_iface_by_id(bp, "eni-web");
	const struct iface *app = policy_iface_by_id(bp, "eni-app");
	struct packet p = TCP("10.0.1.10", "10.0.2.10", 40000, 8000, TCP_SYN);
	struct verdict v;
	struct pkt_meta unbound = { .in_known = true };
	pipeline_eval(&pl, bp, &p, &unbound, tu_sec(0), &v);
	expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION,
	       "eni-web: spoofed source (not from its device)");
	struct pkt_meta other = { .in_iface = app, .in_known = true };
	/* as if app's SourceDestCheck were false (NAT): it lets anything in */
	((struct iface *)app)->source_dest_check = false;
	pipeline_eval(&pl, bp, &p, &other, tu_sec(0), &v);
	expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION,
	       "eni-web: spoofed source (not from its device)");
	struct pkt_meta own = { .in_iface = web, .in_known = true };
	pipeline_eval(&pl, bp, &p, &own, tu_sec(0), &v);
	ck_assert(v.accept);
	/* an unbound interface's address: no device to come from */
	p = TCP("10.0.3.10", "10.0.2.10", 40000, 8000, TCP_SYN);
	pipeline_eval(&pl, bp, &p, &unbound, tu_sec(0), &v);
	ck_assert(v.stage != STAGE_SRCDST);
	/* forged exempt sources on a bound device and an unbound one */
	static const char *const srcs[] = { "169.254.169.254", "10.0.0.2", "10.0.2.255" };
	for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
		p = TCP(srcs[i], "10.0.2.10", 80, 8000, TCP_SYN);
		pipeline_eval(&pl, bp, &p, &unbound, tu_sec(0), &v);
		expect(v, false, STAGE_EXEMPT, REASON_INVALID_SOURCE_ADDRESS, NULL);
		pipeline_eval(&pl, bp, &p, &other, tu_sec(0), &v); /* app checks nothing now */
		expect(v, false, STAGE_EXEMPT, REASON_INVALID_SOURCE_ADDRESS, NULL);
	}
	/* the real metadata request from web's device, and the reply to it
	 * arriving from an unbound device (the gateway's uplink) */
	struct pkt_meta to_web = { .out_iface = web, .in_known = true };
	p = TCP("10.0.1.10", "169.254.169.254", 40000, 80, TCP_SYN);
	pipeline_eval(&pl, bp, &p, &own, tu_sec(1), &v);
	expect(v, true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS, NULL);
	p = TCP("169.254.169.254", "10.0.1.10", 80, 40000, TCP_SYN | TCP_ACK);
	pipeline_eval(&pl, bp, &p, &to_web, tu_sec(1), &v);
	expect(v, true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS, "reply from an exempt address");
	policy_free(bp);
}
END_TEST

START_TEST(test_not_exempt)
{
	/* .4 of a subnet and VPC base + 3 are ordinary addresses */
	expect(eval(TCP("10.0.3.10", "10.0.1.4", 40000, 22, TCP_SYN)), false, STAGE_NACL_IN,
	       REASON_SUBNET_ACL_RESTRICTION, "acl-web inbound rule *");
	expect(eval(TCP("10.0.3.10", "10.0.0.3", 40000, 443, TCP_SYN)), true, STAGE_NACL_OUT,
	       REASON_RULES_ALLOW, "acl-default outbound rule 100");
}
END_TEST

START_TEST(test_udp_timeouts)
{
	/* db sends DNS to the internet: tracked (egress rule is udp 53 only,
	 * not all ports); db's UdpTimeout is 60 s */
	expect(eval_at(UDP("10.0.3.10", "203.0.113.53", 5353, 53), 0), true, STAGE_NACL_OUT,
	       REASON_RULES_ALLOW, NULL);
	expect(eval_at(UDP("203.0.113.53", "10.0.3.10", 53, 5353), 59.9), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	/* the reply refreshed the flow: still alive at 59.9 + 59.9 */
	expect(eval_at(UDP("203.0.113.53", "10.0.3.10", 53, 5353), 119.8), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	/* idle past 60 s: refused */
	expect(eval_at(UDP("203.0.113.53", "10.0.3.10", 53, 5353), 180.0), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

START_TEST(test_icmp_echo_tracking)
{
	/* db pings out (egress rule icmp type 8): the reply with the same id is
	 * admitted; another id is not; an unsolicited reply is not */
	expect(eval(tu_icmp("10.0.3.10", "203.0.113.7", 8, 0, 77)), true, STAGE_NACL_OUT,
	       REASON_RULES_ALLOW, NULL);
	expect(eval(tu_icmp("203.0.113.7", "10.0.3.10", 0, 0, 77)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	expect(eval(tu_icmp("203.0.113.7", "10.0.3.10", 0, 0, 78)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
	/* a request from the pinged host with the same id is a new flow, not
	 * part of the tracked one (db admits no ICMP inbound) */
	expect(eval(tu_icmp("203.0.113.7", "10.0.3.10", 8, 0, 77)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
	/* ICMP idles out after 30 s */
	expect(eval_at(tu_icmp("203.0.113.7", "10.0.3.10", 0, 0, 77), 31), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

/* SPEC §4 Decision: ICMP errors about a tracked flow are admitted only with
 * Vpcfw.AdmitRelatedIcmp. */
START_TEST(test_related_icmp)
{
	struct packet err = tu_icmp("203.0.113.53", "10.0.3.10", 3, 4, 0);
	err.flags |= PKT_F_ICMP_ERR;
	ck_assert(addr_parse("10.0.3.10", &err.inner.src, NULL));
	ck_assert(addr_parse("203.0.113.53", &err.inner.dst, NULL));
	err.inner.sport = 5353;
	err.inner.dport = 53;
	err.inner.proto = 17;
	expect(eval(UDP("10.0.3.10", "203.0.113.53", 5353, 53)), true, STAGE_NACL_OUT,
	       REASON_RULES_ALLOW, NULL);
	expect(eval(err), false, STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);

	ct_destroy(pl.ct);
	policy_free(pol);
	pol = lab(",\"Vpcfw\":{\"AdmitRelatedIcmp\":true}");
	pipeline_init(&pl, ct_create(1024));
	expect(eval(UDP("10.0.3.10", "203.0.113.53", 5353, 53)), true, STAGE_NACL_OUT,
	       REASON_RULES_ALLOW, NULL);
	expect(eval(err), true, STAGE_CONNTRACK, REASON_TRACKED_FLOW, NULL);
}
END_TEST

/* A tracked flow survives a rule change; an untracked one is judged by the
 * new rules at once (security-group-connection-tracking). */
START_TEST(test_reload_semantics)
{
	/* tracked: web -> app 8000 (group reference) */
	expect(eval(TCP("10.0.1.10", "10.0.2.10", 40003, 8000, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, NULL);
	/* untracked: internet -> web 80 */
	expect(eval(TCP("203.0.113.7", "10.0.1.10", 40001, 80, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, NULL);

	/* the new policy removes both ingress rules */
	char *cfg = malloc(16384);
	snprintf(cfg, 16384, LAB, "");
	char *p8000 = strstr(cfg, "\"FromPort\":8000,\"ToPort\":8000");
	char *p80 = strstr(cfg, "\"FromPort\":80,\"ToPort\":80");
	ck_assert(p8000 && p80);
	static const char r8001[] = "\"FromPort\":8001,\"ToPort\":8001";
	static const char r81[] = "\"FromPort\":81,\"ToPort\":81";
	memcpy(p8000, r8001, sizeof(r8001) - 1);
	memcpy(p80, r81, sizeof(r81) - 1);
	struct policy *next = tu_policy(cfg);
	free(cfg);
	policy_free(pol);
	pol = next;

	expect(eval(TCP("10.0.1.10", "10.0.2.10", 40003, 8000, TCP_ACK)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	expect(eval(TCP("203.0.113.7", "10.0.1.10", 40001, 80, TCP_ACK)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

START_TEST(test_conntrack_full)
{
	ct_destroy(pl.ct);
	pipeline_init(&pl, ct_create(2));
	/* an established flow (picked up mid-stream, then answered: not
	 * embryonic, never evicted) fills the table, at web and at app */
	expect(eval(TCP("10.0.1.10", "10.0.2.10", 40001, 8000, TCP_ACK)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, NULL);
	expect(eval(TCP("10.0.2.10", "10.0.1.10", 8000, 40001, TCP_ACK)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	/* needs two entries (at web and at app) but none are left */
	expect(eval(TCP("10.0.1.10", "10.0.2.10", 40002, 8000, TCP_ACK)), false, STAGE_CONNTRACK,
	       REASON_CONNTRACK_ALLOWANCE_EXCEEDED, NULL);
	struct ct_stats st;
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.used, 2);
	ck_assert_uint_ge(st.allowance_exceeded, 1);
	/* untracked traffic needs no room, its replies neither */
	expect(eval(TCP("203.0.113.7", "10.0.1.10", 40001, 80, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, NULL);
	expect(eval(TCP("10.0.1.10", "203.0.113.7", 80, 40001, TCP_SYN | TCP_ACK)), true,
	       STAGE_NACL_OUT, REASON_RULES_ALLOW, NULL);
}
END_TEST

START_TEST(test_source_dest_check)
{
	const struct iface *web = policy_iface_by_id(pol, "eni-web");
	const struct iface *app = policy_iface_by_id(pol, "eni-app");
	ck_assert_ptr_nonnull(web);
	struct pkt_meta meta = { .in_iface = web };
	struct packet p = TCP("10.0.1.99", "10.0.2.10", 40000, 8000, TCP_SYN);
	struct verdict v;
	pipeline_eval(&pl, pol, &p, &meta, tu_sec(0), &v);
	expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION,
	       "eni-web: spoofed source");
	meta = (struct pkt_meta){ .out_iface = app };
	p = TCP("10.0.1.10", "10.0.2.99", 40000, 8000, TCP_SYN);
	pipeline_eval(&pl, pol, &p, &meta, tu_sec(0), &v);
	expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION,
	       "eni-app: not addressed to interface");
	/* correct addresses pass the check */
	meta = (struct pkt_meta){ .in_iface = web, .out_iface = app };
	p = TCP("10.0.1.10", "10.0.2.10", 40000, 8000, TCP_SYN);
	pipeline_eval(&pl, pol, &p, &meta, tu_sec(0), &v);
	ck_assert(v.accept);
}
END_TEST

START_TEST(test_ipv6)
{
	expect(eval(TCP("2001:db8:ffff::7", "2001:db8:1:1::10", 40000, 80, TCP_SYN)), true,
	       STAGE_SG_INGRESS, REASON_RULES_ALLOW, "sg-web IpPermissions[0]");
	expect(eval(TCP("2001:db8:ffff::7", "2001:db8:1:1::10", 40000, 22, TCP_SYN)), false,
	       STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

START_TEST(test_stats_count_every_packet)
{
	eval(TCP("203.0.113.7", "10.0.1.10", 40001, 80, TCP_SYN));
	eval(TCP("203.0.113.7", "10.0.2.10", 40002, 8000, TCP_SYN));
	eval(TCP("203.0.113.7", "10.0.2.10", 40003, 8000, TCP_SYN));
	struct verdict v;
	pipeline_verdict_unparsed(&pl, PACKET_MALFORMED, &v);
	ck_assert(!v.accept);
	ck_assert_uint_eq(counter_get(&pl.counters.accepted), 1);
	ck_assert_uint_eq(counter_get(&pl.counters.rejected), 3);
	ck_assert_uint_eq(counter_get(&pl.counters.packets[STAGE_SG_INGRESS][REASON_ENI_SG_RULES_MISMATCH]), 2);
	ck_assert_uint_eq(counter_get(&pl.counters.packets[STAGE_PARSE][REASON_MALFORMED_PACKET]), 1);
}
END_TEST

/* A batch decides exactly as packets one at a time, in order: a flow the
 * first packet of a batch starts admits the reply later in the same batch. */
START_TEST(test_batch_equals_single)
{
	struct packet ps[40];
	int n = 0;
	for (int i = 0; i < 10; i++) {
		ps[n++] = TCP("10.0.1.10", "10.0.2.10", 40000 + i, 8000, TCP_SYN);
		ps[n++] = TCP("10.0.2.10", "10.0.1.10", 8000, 40000 + i, TCP_SYN | TCP_ACK);
		ps[n++] = TCP("203.0.113.7", "10.0.2.10", 40000 + i, 8000, TCP_SYN);
		ps[n++] = tu_icmp("10.0.3.10", "169.254.169.254", 8, 0, i);
	}
	struct verdict single[40], batch[40];
	for (int i = 0; i < n; i++)
		pipeline_eval(&pl, pol, &ps[i], NULL, tu_sec(0), &single[i]);
	struct pipeline pl2;
	pipeline_init(&pl2, ct_create(1024));
	pipeline_eval_batch(&pl2, pol, ps, NULL, n, tu_sec(0), batch);
	for (int i = 0; i < n; i++) {
		ck_assert_msg(single[i].accept == batch[i].accept && single[i].stage == batch[i].stage &&
				      single[i].reason == batch[i].reason && single[i].sg_rule == batch[i].sg_rule,
			      "packet %d differs", i);
	}
	ck_assert(batch[1].accept && batch[1].reason == REASON_TRACKED_FLOW);
	ck_assert(!batch[2].accept);
	ck_assert_uint_eq(counter_get(&pl2.counters.accepted), counter_get(&pl.counters.accepted));
	ct_destroy(pl2.ct);
}
END_TEST

/* The source/destination check comes before the exemption: an instance
 * cannot send from an exempt address (AWS drops it at the source). */
START_TEST(test_spoofed_exempt_source)
{
	const struct iface *web = policy_iface_by_id(pol, "eni-web");
	struct pkt_meta meta = { .in_iface = web };
	static const char *const srcs[] = { "169.254.1.1", "10.0.2.1", "10.0.1.255", "10.0.0.2" };
	for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
		struct packet p = TCP(srcs[i], "10.0.2.10", 40000, 22, TCP_SYN);
		struct verdict v;
		pipeline_eval(&pl, pol, &p, &meta, tu_sec(0), &v);
		expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION,
		       "eni-web: spoofed source");
	}
	/* its own traffic to an exempt address is still exempt */
	struct packet p = TCP("10.0.1.10", "169.254.169.254", 40000, 80, TCP_SYN);
	struct verdict v;
	pipeline_eval(&pl, pol, &p, &meta, tu_sec(0), &v);
	expect(v, true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS, NULL);
	/* IPv6 link-local sources are every interface's own (neighbour discovery) */
	p = tu_icmp("fe80::1", "fe80::2", 135, 0, 0);
	pipeline_eval(&pl, pol, &p, &meta, tu_sec(0), &v);
	ck_assert(v.accept);
}
END_TEST

/* Echo requests track their replies by identifier and direction: pings
 * both ways with one identifier are two flows, each admitting its replies
 * (SPEC §4).  Both groups admit echo requests from the other subnet and
 * send anything; no rule admits an echo reply. */
START_TEST(test_icmp_same_id_both_ways)
{
	static const char cfg[] =
		"{\"Subnets\":[{\"SubnetId\":\"s-a\",\"CidrBlock\":\"10.1.1.0/24\"},"
		"{\"SubnetId\":\"s-b\",\"CidrBlock\":\"10.1.2.0/24\"}],"
		"\"SecurityGroups\":[{\"GroupId\":\"sg-p\",\"IpPermissions\":[{\"IpProtocol\":\"icmp\","
		"\"FromPort\":8,\"ToPort\":-1,\"IpRanges\":[{\"CidrIp\":\"10.1.0.0/16\"}]}],"
		"\"IpPermissionsEgress\":[{\"IpProtocol\":\"icmp\",\"FromPort\":8,\"ToPort\":-1,"
		"\"IpRanges\":[{\"CidrIp\":\"10.1.0.0/16\"}]}]}],"
		"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-a\",\"SubnetId\":\"s-a\","
		"\"PrivateIpAddress\":\"10.1.1.10\",\"Groups\":[{\"GroupId\":\"sg-p\"}]},"
		"{\"NetworkInterfaceId\":\"eni-b\",\"SubnetId\":\"s-b\",\"PrivateIpAddress\":\"10.1.2.10\","
		"\"Groups\":[{\"GroupId\":\"sg-p\"}]}]}";
	policy_free(pol);
	pol = tu_policy(cfg);
	/* a pings b, b answers */
	ck_assert(eval(tu_icmp("10.1.1.10", "10.1.2.10", 8, 0, 7)).accept);
	expect(eval(tu_icmp("10.1.2.10", "10.1.1.10", 0, 0, 7)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	/* b pings a with the same identifier: its own flow, and a's answer is
	 * admitted by it */
	ck_assert(eval(tu_icmp("10.1.2.10", "10.1.1.10", 8, 0, 7)).accept);
	expect(eval(tu_icmp("10.1.1.10", "10.1.2.10", 0, 0, 7)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	/* an echo reply with another identifier is judged by the rules */
	expect(eval(tu_icmp("10.1.1.10", "10.1.2.10", 0, 0, 8)), false, STAGE_SG_EGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

/* A SYN on a connection in TIME_WAIT opens a new connection, judged by the
 * rules (nf_conntrack forgets the old flow). */
static struct packet seg(const char *src, const char *dst, int sp, int dp, uint8_t fl,
			 uint32_t seq, uint32_t ack, uint32_t len)
{
	struct packet p = TCP(src, dst, sp, dp, fl);
	p.tcp_seq = seq;
	p.tcp_ack = ack;
	p.tcp_len = len;
	p.tcp_win = 65535;
	p.tcp_wscale = TCP_WSCALE_NONE;
	return p;
}

/* Issue #9 item 2, SPEC §4: a blind RST (seq 12345) is dropped as
 * CONNTRACK_INVALID, counted, and the flow goes on; the exact RST closes.
 * web -> 10.0.2.50:443: web's ingress admits neither the replies nor the
 * RST without the tracked flow. */
START_TEST(test_blind_rst_dropped_flow_continues)
{
	const char *w = "10.0.1.10", *o = "10.0.2.50";
	expect(eval(seg(w, o, 40000, 443, TCP_SYN, 1000000, 0, 0)), true, STAGE_NACL_IN,
	       REASON_RULES_ALLOW, NULL);
	expect(eval(seg(o, w, 443, 40000, TCP_SYN | TCP_ACK, 7000000, 1000001, 0)), true,
	       STAGE_CONNTRACK, REASON_TRACKED_FLOW, NULL);
	expect(eval(seg(w, o, 40000, 443, TCP_ACK, 1000001, 7000001, 0)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	struct verdict v = eval(seg(o, w, 443, 40000, TCP_RST, 12345, 0, 0));
	expect(v, false, STAGE_CONNTRACK, REASON_CONNTRACK_INVALID, NULL);
	ck_assert_str_eq(reason_name(v.reason), "CONNTRACK_INVALID");
	ck_assert_uint_eq(counter_get(&pl.counters.packets[STAGE_CONNTRACK][REASON_CONNTRACK_INVALID]), 1);
	struct ct_stats st;
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.tcp_invalid, 1);
	/* the server's data still comes through, and so does the client's */
	expect(eval(seg(o, w, 443, 40000, TCP_ACK | TCP_PSH, 7000001, 1000001, 1000)), true,
	       STAGE_CONNTRACK, REASON_TRACKED_FLOW, NULL);
	expect(eval(seg(w, o, 40000, 443, TCP_ACK, 1000001, 7001001, 0)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	/* in the window, not exact: passed on, flow kept, counted */
	expect(eval(seg(o, w, 443, 40000, TCP_RST, 7001001 + 500, 0, 0)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.tcp_rst_ignored, 1);
	expect(eval(seg(o, w, 443, 40000, TCP_ACK, 7001001, 1000001, 0)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	/* the exact RST ends the flow: after CLOSE's 10 s the replies are new */
	expect(eval(seg(o, w, 443, 40000, TCP_RST, 7001001, 0, 0)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	expect(eval_at(seg(o, w, 443, 40000, TCP_ACK, 7001001, 1000001, 0), 11), false,
	       STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

/* The offload (issue #16): a packet's flow may be left to the kernel once
 * every further packet of it, both ways, would be accepted by this policy. */
static struct verdict offl(struct packet p, bool want)
{
	struct verdict v = eval(p);
	ck_assert(v.accept);
	ck_assert_msg(v.offloadable == want, "offloadable %d, want %d", v.offloadable, want);
	return v;
}

START_TEST(test_offloadable)
{
	const char *w = "10.0.1.10", *a = "10.0.2.10";
	/* web -> app:8000, tracked at both ends: not before the handshake's
	 * last ACK, then every segment, with both entries */
	offl(seg(w, a, 40000, 8000, TCP_SYN, 1000000, 0, 0), false);
	offl(seg(a, w, 8000, 40000, TCP_SYN | TCP_ACK, 7000000, 1000001, 0), false);
	struct verdict v = offl(seg(w, a, 40000, 8000, TCP_ACK, 1000001, 7000001, 0), true);
	ck_assert_ptr_nonnull(v.flows[0]);
	ck_assert_ptr_nonnull(v.flows[1]);
	ck_assert_ptr_ne(v.flows[0], v.flows[1]);
	offl(seg(a, w, 8000, 40000, TCP_ACK | TCP_PSH, 7000001, 1000001, 100), true);
	/* a RST the windows ignore stays on the queue */
	offl(seg(a, w, 8000, 40000, TCP_RST, 7000101 + 500, 0, 0), false);
	/* closing: no longer established */
	offl(seg(w, a, 40000, 8000, TCP_FIN | TCP_ACK, 1000001, 7000101, 0), false);

	/* app -> web:80: tracked at app, untracked by web's rules (all ports
	 * out to the world, 80 in from it): settled at both ends once app's
	 * entry is established */
	offl(seg(a, w, 41000, 80, TCP_SYN, 5000, 0, 0), false);
	v = offl(seg(w, a, 80, 41000, TCP_SYN | TCP_ACK, 9000, 5001, 0), false);
	ck_assert_ptr_null(v.flows[0]);
	v = offl(seg(a, w, 41000, 80, TCP_ACK, 5001, 9001, 0), true);
	ck_assert_ptr_nonnull(v.flows[0]);
	ck_assert_ptr_null(v.flows[1]);

	/* internet -> web:80: untracked, no entry anywhere: nothing proves
	 * the replies pass, so never */
	offl(TCP("203.0.113.7", w, 40001, 80, TCP_SYN), false);
	offl(TCP(w, "203.0.113.7", 80, 40001, TCP_SYN | TCP_ACK), false);
	offl(TCP("203.0.113.7", w, 40001, 80, TCP_ACK), false);

	/* UDP: once a reply was admitted, both ways */
	offl(UDP("10.0.3.10", "203.0.113.53", 5353, 53), false);
	offl(UDP("203.0.113.53", "10.0.3.10", 53, 5353), true);
	offl(UDP("10.0.3.10", "203.0.113.53", 5353, 53), true);
	/* ICMP echo: the reply */
	offl(tu_icmp("10.0.3.10", "203.0.113.7", 8, 0, 77), false);
	offl(tu_icmp("203.0.113.7", "10.0.3.10", 0, 0, 77), true);
	/* a fragment of an established UDP flow: judged with its datagram */
	struct packet f = UDP("10.0.3.10", "203.0.113.53", 5353, 53);
	f.flags |= PKT_F_FRAG_HEAD;
	offl(f, false);
}
END_TEST

/* A flow back from the kernel (a take-back): its segments moved on unseen;
 * its windows are learnt again instead of refusing the next segment, and a
 * SYN on it is a new connection the rules judge. */
START_TEST(test_offload_take_back)
{
	const char *w = "10.0.1.10", *a = "10.0.2.10";
	offl(seg(w, a, 40000, 8000, TCP_SYN, 1000000, 0, 0), false);
	offl(seg(a, w, 8000, 40000, TCP_SYN | TCP_ACK, 7000000, 1000001, 0), false);
	struct verdict v = offl(seg(w, a, 40000, 8000, TCP_ACK, 1000001, 7000001, 0), true);
	ct_set_offloaded(pl.ct, v.flows[0], 0, 1);
	ct_set_offloaded(pl.ct, v.flows[1], 0, 1);
	/* 5 MB went by in the kernel: vpcfwd's windows refuse the ACK of it */
	struct packet late = seg(w, a, 40000, 8000, TCP_ACK, 1000001, 12000001, 0);
	expect(eval(late), false, STAGE_CONNTRACK, REASON_CONNTRACK_INVALID, NULL);
	/* taken back: picked up again */
	ck_assert_uint_eq(ct_clear_offloaded_all(pl.ct), 2);
	expect(eval(late), true, STAGE_CONNTRACK, REASON_TRACKED_FLOW, NULL);
	offl(seg(a, w, 8000, 40000, TCP_ACK | TCP_PSH, 12000001, 1000001, 100), true);
	/* offloaded again, and a SYN of the same ports comes: a new connection
	 * judged by the rules (web's ingress does not admit app:8000 -> web) */
	v = offl(seg(w, a, 40000, 8000, TCP_ACK, 1000001, 12000101, 0), true);
	ct_set_offloaded(pl.ct, v.flows[0], 0, 1);
	ct_set_offloaded(pl.ct, v.flows[1], 0, 1);
	expect(eval(seg(a, w, 8000, 40000, TCP_SYN, 99, 0, 0)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

/* TcpLoose (nf_conntrack_tcp_loose): on by default, a flow first seen
 * mid-stream is tracked; off, only a SYN starts one. */
START_TEST(test_tcp_loose)
{
	expect(eval(seg("10.0.1.10", "10.0.2.50", 40002, 443, TCP_ACK, 5, 9, 0)), true,
	       STAGE_NACL_IN, REASON_RULES_ALLOW, NULL);
	expect(eval(seg("10.0.2.50", "10.0.1.10", 443, 40002, TCP_ACK, 9, 5, 10)), true,
	       STAGE_CONNTRACK, REASON_TRACKED_FLOW, NULL);
	policy_free(pol);
	policy_intern_reset();
	pol = lab(",\"Vpcfw\":{\"TcpLoose\":false}");
	ck_assert(!pol->tcp_loose);
	expect(eval(seg("10.0.1.10", "10.0.2.50", 40003, 443, TCP_ACK, 5, 9, 0)), false,
	       STAGE_CONNTRACK, REASON_CONNTRACK_INVALID, NULL);
	expect(eval(seg("10.0.1.10", "10.0.2.50", 40003, 443, TCP_SYN, 5, 0, 0)), true,
	       STAGE_NACL_IN, REASON_RULES_ALLOW, NULL);
	struct ct_stats st;
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.tcp_invalid, 1);
}
END_TEST

/* TcpBeLiberal (nf_conntrack_tcp_be_liberal): out-of-window segments pass,
 * out-of-window RSTs still do not. */
START_TEST(test_tcp_be_liberal)
{
	policy_free(pol);
	policy_intern_reset();
	pol = lab(",\"Vpcfw\":{\"TcpBeLiberal\":true}");
	const char *w = "10.0.1.10", *o = "10.0.2.50";
	eval(seg(w, o, 40000, 443, TCP_SYN, 1000000, 0, 0));
	eval(seg(o, w, 443, 40000, TCP_SYN | TCP_ACK, 7000000, 1000001, 0));
	expect(eval(seg(o, w, 443, 40000, TCP_ACK, 90000000, 1000001, 10)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
	expect(eval(seg(o, w, 443, 40000, TCP_RST, 12345, 0, 0)), false, STAGE_CONNTRACK,
	       REASON_CONNTRACK_INVALID, NULL);
}
END_TEST

START_TEST(test_syn_after_time_wait)
{
	/* db -> internet tcp: db's egress admits tcp only to 10.0.0.0/16; app
	 * -> db 3306 is the tracked flow we close */
	expect(eval(TCP("10.0.2.10", "10.0.3.10", 40000, 3306, TCP_SYN)), true, STAGE_SG_INGRESS,
	       REASON_RULES_ALLOW, NULL);
	eval(TCP("10.0.3.10", "10.0.2.10", 3306, 40000, TCP_SYN | TCP_ACK));
	eval(TCP("10.0.2.10", "10.0.3.10", 40000, 3306, TCP_ACK));
	eval(TCP("10.0.2.10", "10.0.3.10", 40000, 3306, TCP_FIN | TCP_ACK));
	eval(TCP("10.0.3.10", "10.0.2.10", 3306, 40000, TCP_FIN | TCP_ACK));
	eval(TCP("10.0.2.10", "10.0.3.10", 40000, 3306, TCP_ACK));
	/* now db opens a connection back on the same ports: app's ingress
	 * admits only 8000 from the web group */
	expect(eval(TCP("10.0.3.10", "10.0.2.10", 3306, 40000, TCP_SYN)), false, STAGE_SG_INGRESS,
	       REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

/* A non-first fragment has no ports: it never starts a tracked flow. */
START_TEST(test_fragment_starts_no_flow)
{
	struct packet p = TCP("10.0.1.10", "10.0.2.10", 0, 0, 0);
	p.flags = PKT_F_FRAGMENT;
	expect(eval(p), true, STAGE_SG_INGRESS, REASON_RULES_ALLOW, NULL);
	struct ct_stats st;
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.used, 0);
}
END_TEST

/* Later fragments of a datagram whose first fragment was admitted get its
 * verdict; others are judged by the rules (they carry no ports). */
START_TEST(test_fragments_follow_the_first)
{
	/* db's DNS query, tracked; the answer comes back in fragments */
	expect(eval(UDP("10.0.3.10", "203.0.113.53", 5353, 53)), true, STAGE_NACL_OUT,
	       REASON_RULES_ALLOW, NULL);
	struct packet head = UDP("203.0.113.53", "10.0.3.10", 53, 5353);
	head.flags |= PKT_F_FRAG_HEAD;
	head.frag_id = 77;
	expect(eval(head), true, STAGE_CONNTRACK, REASON_TRACKED_FLOW, "tracked flow");
	struct packet rest = UDP("203.0.113.53", "10.0.3.10", 0, 0);
	rest.flags = PKT_F_FRAGMENT;
	rest.frag_id = 77;
	expect(eval(rest), true, STAGE_CONNTRACK, REASON_TRACKED_FLOW,
	       "fragment of an admitted datagram");
	/* another datagram's fragment: db admits no UDP from the internet */
	rest.frag_id = 78;
	expect(eval(rest), false, STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);
	/* and the admission lasts 30 s */
	rest.frag_id = 77;
	expect(eval_at(rest, 31), false, STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);
}
END_TEST

/* Issue #10: an interface without security groups (a NAT gateway's) is
 * filtered by its subnet's network ACLs only, statelessly. */
START_TEST(test_no_groups_nacl_only)
{
	struct policy *np = tu_policy(
		"{\"Vpcs\":[{\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.0.0/16\"}],"
		"\"Subnets\":[{\"SubnetId\":\"subnet-pub\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.9.0/24\"}],"
		"\"NetworkAcls\":[{\"NetworkAclId\":\"acl-1\",\"VpcId\":\"vpc-1\",\"IsDefault\":true,"
		" \"Associations\":[{\"SubnetId\":\"subnet-pub\"}],\"Entries\":["
		" {\"RuleNumber\":100,\"Egress\":false,\"RuleAction\":\"deny\",\"Protocol\":\"6\","
		"  \"CidrBlock\":\"0.0.0.0/0\",\"PortRange\":{\"From\":22,\"To\":22}},"
		" {\"RuleNumber\":200,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"-1\",\"CidrBlock\":\"0.0.0.0/0\"},"
		" {\"RuleNumber\":100,\"Egress\":true,\"RuleAction\":\"allow\",\"Protocol\":\"-1\",\"CidrBlock\":\"0.0.0.0/0\"}]}],"
		"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-nat\",\"SubnetId\":\"subnet-pub\","
		" \"InterfaceType\":\"nat_gateway\",\"Groups\":[],\"SourceDestCheck\":false,"
		" \"PrivateIpAddress\":\"10.0.9.10\"}]}");
	struct packet p = TCP("203.0.113.7", "10.0.9.10", 40000, 80, TCP_SYN);
	struct verdict v;
	pipeline_eval(&pl, np, &p, NULL, tu_sec(0), &v);
	expect(v, true, STAGE_NACL_IN, REASON_RULES_ALLOW, NULL);
	ck_assert_str_eq(v.dst_iface->id, "eni-nat");
	p = TCP("203.0.113.7", "10.0.9.10", 40001, 22, TCP_SYN);
	pipeline_eval(&pl, np, &p, NULL, tu_sec(0), &v);
	expect(v, false, STAGE_NACL_IN, REASON_SUBNET_ACL_RESTRICTION, "acl-1 inbound rule 100");
	/* nothing is tracked: no security group, so no state */
	p = TCP("10.0.9.10", "203.0.113.7", 80, 40000, TCP_SYN | TCP_ACK);
	pipeline_eval(&pl, np, &p, NULL, tu_sec(0), &v);
	expect(v, true, STAGE_NACL_OUT, REASON_RULES_ALLOW, NULL);
	struct ct_stats st;
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.inserted, 0);
	policy_free(np);
}
END_TEST

/* Issue #10: a delegated prefix's addresses are the interface's for every
 * stage: its groups, group references, the source/destination check. */
START_TEST(test_delegated_prefix_stages)
{
	struct policy *np = tu_policy(
		"{\"Vpcs\":[{\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.0.0/16\"}],"
		"\"Subnets\":[{\"SubnetId\":\"subnet-n\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.1.0/24\","
		" \"Ipv6CidrBlockAssociationSet\":[{\"Ipv6CidrBlock\":\"2001:db8:1::/64\"}]}],"
		"\"SecurityGroups\":[{\"GroupId\":\"sg-node\",\"IpPermissions\":[{\"IpProtocol\":\"tcp\","
		" \"FromPort\":443,\"ToPort\":443,\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]},"
		" {\"IpProtocol\":\"tcp\",\"FromPort\":9000,\"ToPort\":9000,\"UserIdGroupPairs\":[{\"GroupId\":\"sg-node\"}]}],"
		" \"IpPermissionsEgress\":[{\"IpProtocol\":\"-1\",\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}],"
		"  \"Ipv6Ranges\":[{\"CidrIpv6\":\"::/0\"}]}]}],"
		"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-node\",\"SubnetId\":\"subnet-n\","
		" \"PrivateIpAddress\":\"10.0.1.10\",\"Groups\":[{\"GroupId\":\"sg-node\"}],"
		" \"Ipv4Prefixes\":[{\"Ipv4Prefix\":\"10.0.1.16/28\"}],"
		" \"Ipv6Prefixes\":[{\"Ipv6Prefix\":\"2001:db8:1:0:1::/80\"}]},"
		" {\"NetworkInterfaceId\":\"eni-other\",\"SubnetId\":\"subnet-n\",\"PrivateIpAddress\":\"10.0.1.11\","
		" \"Groups\":[{\"GroupId\":\"sg-node\"}]}]}");
	const struct iface *node = policy_iface_by_id(np, "eni-node");
	struct verdict v;
	/* the node's group applies to a pod address */
	struct packet p = TCP("203.0.113.7", "10.0.1.20", 40000, 22, TCP_SYN);
	pipeline_eval(&pl, np, &p, NULL, tu_sec(0), &v);
	expect(v, false, STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);
	ck_assert_ptr_eq(v.dst_iface, node);
	p = TCP("203.0.113.7", "10.0.1.20", 40000, 443, TCP_SYN);
	pipeline_eval(&pl, np, &p, NULL, tu_sec(0), &v);
	expect(v, true, STAGE_SG_INGRESS, REASON_RULES_ALLOW, "sg-node IpPermissions[0]");
	/* a pod to the other member: the self-reference matches the pod */
	p = TCP("10.0.1.20", "10.0.1.11", 40001, 9000, TCP_SYN);
	pipeline_eval(&pl, np, &p, NULL, tu_sec(0), &v);
	expect(v, true, STAGE_SG_INGRESS, REASON_RULES_ALLOW, "sg-node IpPermissions[1]");
	ck_assert_ptr_eq(v.src_iface, node);
	/* ... not an address just past the prefix */
	p = TCP("10.0.1.32", "10.0.1.11", 40002, 9000, TCP_SYN);
	pipeline_eval(&pl, np, &p, NULL, tu_sec(0), &v);
	expect(v, false, STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH, NULL);

	/* source/destination check: a pod address is the node's own, an
	 * address outside the prefix is spoofed */
	struct pkt_meta meta = { .in_iface = node };
	p = TCP("10.0.1.31", "203.0.113.7", 40003, 443, TCP_SYN);
	pipeline_eval(&pl, np, &p, &meta, tu_sec(0), &v);
	ck_assert(v.accept);
	p = TCP("10.0.1.32", "203.0.113.7", 40004, 443, TCP_SYN);
	pipeline_eval(&pl, np, &p, &meta, tu_sec(0), &v);
	expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION, "eni-node: spoofed source");
	p = TCP("2001:db8:1:0:1::9", "2001:db8:99::1", 40005, 443, TCP_SYN);
	pipeline_eval(&pl, np, &p, &meta, tu_sec(0), &v);
	ck_assert(v.accept);
	p = TCP("2001:db8:1:0:2::9", "2001:db8:99::1", 40006, 443, TCP_SYN);
	pipeline_eval(&pl, np, &p, &meta, tu_sec(0), &v);
	expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION, "eni-node: spoofed source");
	meta = (struct pkt_meta){ .out_iface = node };
	p = TCP("203.0.113.7", "10.0.1.17", 40007, 443, TCP_SYN);
	pipeline_eval(&pl, np, &p, &meta, tu_sec(0), &v);
	ck_assert(v.accept);
	p = TCP("203.0.113.7", "10.0.1.12", 40008, 443, TCP_SYN);
	pipeline_eval(&pl, np, &p, &meta, tu_sec(0), &v);
	expect(v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION,
	       "eni-node: not addressed to interface");
	policy_free(np);
}
END_TEST

/* Flood fairness (beyond AWS, off by default): db floods new UDP flows with
 * rotating source ports; app's new connection to db must still get room.
 * loop 0: off (AWS's behaviour): the flood fills the table and app is
 * refused; loop 1: PerSourceConntrackPercent 50 holds db to half. */
START_TEST(test_source_share_flood)
{
	policy_free(pol);
	pol = lab(_i ? ",\"Vpcfw\":{\"PerSourceConntrackPercent\":50}" : NULL);
	ct_destroy(pl.ct);
	pipeline_init(&pl, ct_create(20));
	int accepted = 0;
	for (int i = 0; i < 40; i++) {
		struct verdict v = eval(UDP("10.0.3.10", "203.0.113.53", (uint16_t)(20000 + i), 53));
		if (v.accept) {
			accepted++;
			continue;
		}
		expect(v, false, STAGE_CONNTRACK,
		       _i ? REASON_CONNTRACK_SOURCE_SHARE_EXCEEDED : REASON_CONNTRACK_ALLOWANCE_EXCEEDED,
		       _i ? "eni-db: the source's flows hold PerSourceConntrackPercent of the table"
			  : "eni-db: connection tracking table full");
	}
	ck_assert_int_eq(accepted, _i ? 10 : 20);
	/* app -> db: a new tracked flow at app and at db (two entries) */
	struct verdict v = eval(TCP("10.0.2.10", "10.0.3.10", 40001, 3306, TCP_SYN));
	if (_i)
		expect(v, true, STAGE_SG_INGRESS, REASON_RULES_ALLOW, NULL);
	else
		expect(v, false, STAGE_CONNTRACK, REASON_CONNTRACK_ALLOWANCE_EXCEEDED, NULL);
	struct ct_stats st;
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.source_share_exceeded, _i ? 30 : 0);
	ck_assert_uint_eq(st.source_rate_exceeded, 0);
	ck_assert_uint_eq(counter_get(&pl.counters.packets[STAGE_CONNTRACK]
							  [REASON_CONNTRACK_SOURCE_SHARE_EXCEEDED]),
			  _i ? 30 : 0);
	ck_assert_uint_eq(counter_get(&pl.counters.packets[STAGE_CONNTRACK]
							  [REASON_CONNTRACK_ALLOWANCE_EXCEEDED]),
			  _i ? 0 : 21);
	/* the flood's own flows still work: replies are tracked */
	expect(eval(UDP("203.0.113.53", "10.0.3.10", 53, 20000)), true, STAGE_CONNTRACK,
	       REASON_TRACKED_FLOW, NULL);
}
END_TEST

/* PerSourceNewFlowsPerSecond: db may start 2 flows at once (the burst is
 * one second's worth), then one each half second; app is not held back. */
START_TEST(test_source_rate_flood)
{
	policy_free(pol);
	pol = lab(",\"Vpcfw\":{\"PerSourceNewFlowsPerSecond\":2}");
	for (int i = 0; i < 2; i++)
		expect(eval_at(UDP("10.0.3.10", "203.0.113.53", (uint16_t)(20000 + i), 53), 0), true,
		       STAGE_NACL_OUT, REASON_RULES_ALLOW, NULL);
	expect(eval_at(UDP("10.0.3.10", "203.0.113.53", 20002, 53), 0.1), false, STAGE_CONNTRACK,
	       REASON_CONNTRACK_SOURCE_RATE_EXCEEDED,
	       "eni-db: the source starts new flows faster than PerSourceNewFlowsPerSecond");
	expect(eval_at(TCP("10.0.2.10", "10.0.3.10", 40001, 3306, TCP_SYN), 0.1), true,
	       STAGE_SG_INGRESS, REASON_RULES_ALLOW, NULL);
	expect(eval_at(UDP("10.0.3.10", "203.0.113.53", 20002, 53), 0.5), true, STAGE_NACL_OUT,
	       REASON_RULES_ALLOW, NULL);
	/* packets of a tracked flow are never rate limited */
	for (int i = 0; i < 10; i++)
		expect(eval_at(UDP("10.0.3.10", "203.0.113.53", 20000, 53), 0.5), true,
		       STAGE_CONNTRACK, REASON_TRACKED_FLOW, NULL);
	struct ct_stats st;
	ct_get_stats(pl.ct, &st);
	ck_assert_uint_eq(st.source_rate_exceeded, 1);
	ck_assert_uint_eq(counter_get(&pl.counters.packets[STAGE_CONNTRACK]
							  [REASON_CONNTRACK_SOURCE_RATE_EXCEEDED]), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pipeline");
	TCase *tc = tcase_create("eval");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_three_tier);
	tcase_add_test(tc, test_nacl_is_stateless);
	tcase_add_test(tc, test_within_subnet_skips_nacl);
	tcase_add_loop_test(tc, test_exempt, 0, sizeof(exempt_cases) / sizeof(exempt_cases[0]));
	tcase_add_test(tc, test_not_exempt);
	tcase_add_loop_test(tc, test_forged_exempt_source, 0, sizeof(forged_cases) / sizeof(forged_cases[0]));
	tcase_add_test(tc, test_exempt_replies);
	tcase_add_test(tc, test_bound_source_from_elsewhere);
	tcase_add_test(tc, test_udp_timeouts);
	tcase_add_test(tc, test_icmp_echo_tracking);
	tcase_add_test(tc, test_related_icmp);
	tcase_add_test(tc, test_reload_semantics);
	tcase_add_test(tc, test_conntrack_full);
	tcase_add_loop_test(tc, test_source_share_flood, 0, 2);
	tcase_add_test(tc, test_source_rate_flood);
	tcase_add_test(tc, test_source_dest_check);
	tcase_add_test(tc, test_ipv6);
	tcase_add_test(tc, test_stats_count_every_packet);
	tcase_add_test(tc, test_batch_equals_single);
	tcase_add_test(tc, test_spoofed_exempt_source);
	tcase_add_test(tc, test_icmp_same_id_both_ways);
	tcase_add_test(tc, test_syn_after_time_wait);
	tcase_add_test(tc, test_offloadable);
	tcase_add_test(tc, test_offload_take_back);
	tcase_add_test(tc, test_blind_rst_dropped_flow_continues);
	tcase_add_test(tc, test_tcp_loose);
	tcase_add_test(tc, test_tcp_be_liberal);
	tcase_add_test(tc, test_fragment_starts_no_flow);
	tcase_add_test(tc, test_fragments_follow_the_first);
	tcase_add_test(tc, test_no_groups_nacl_only);
	tcase_add_test(tc, test_delegated_prefix_stages);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
