/* The compiled policy: reference resolution, cross-object checks, lookups. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/pipeline.h"

static struct ip_addr A(const char *s)
{
	struct ip_addr a;
	ck_assert(addr_parse(s, &a, NULL));
	return a;
}

#define VPC "{\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.0.0/16\"}"
#define SUBNET(id, cidr) "{\"SubnetId\":\"" id "\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"" cidr "\"}"

START_TEST(test_group_members)
{
	/* members: every private address (primary, secondary, IPv6) of every
	 * interface carrying the group, never public ones (SPEC §4 Decision) */
	struct policy *p = tu_policy(
		"{\"Vpcs\":[" VPC "],\"Subnets\":[{\"SubnetId\":\"subnet-a\",\"VpcId\":\"vpc-1\","
		"\"CidrBlock\":\"10.0.1.0/24\",\"Ipv6CidrBlockAssociationSet\":[{\"Ipv6CidrBlock\":"
		"\"2001:db8:1::/64\"}]}],"
		"\"SecurityGroups\":[{\"GroupId\":\"sg-a\"},{\"GroupId\":\"sg-b\",\"IpPermissions\":["
		"{\"IpProtocol\":\"tcp\",\"FromPort\":1,\"ToPort\":2,\"UserIdGroupPairs\":[{\"GroupId\":\"sg-a\"}]}]}],"
		"\"NetworkInterfaces\":["
		"{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-a\",\"PrivateIpAddress\":\"10.0.1.10\","
		" \"PrivateIpAddresses\":[{\"PrivateIpAddress\":\"10.0.1.10\",\"Primary\":true,"
		"  \"Association\":{\"PublicIp\":\"203.0.113.10\"}},{\"PrivateIpAddress\":\"10.0.1.11\",\"Primary\":false}],"
		" \"Ipv6Addresses\":[{\"Ipv6Address\":\"2001:db8:1::10\"}],"
		" \"Association\":{\"PublicIp\":\"203.0.113.10\"},"
		" \"Groups\":[{\"GroupId\":\"sg-a\"},{\"GroupId\":\"sg-b\"}]},"
		"{\"NetworkInterfaceId\":\"eni-2\",\"SubnetId\":\"subnet-a\",\"PrivateIpAddress\":\"10.0.1.20\","
		" \"Groups\":[{\"GroupId\":\"sg-a\"}]},"
		"{\"NetworkInterfaceId\":\"eni-3\",\"SubnetId\":\"subnet-a\",\"PrivateIpAddress\":\"10.0.1.30\","
		" \"Groups\":[{\"GroupId\":\"sg-b\"}]}]}");
	const struct sg *a = NULL;
	for (int i = 0; i < p->n_sgs; i++)
		if (strcmp(p->sgs[i].id, "sg-a") == 0)
			a = &p->sgs[i];
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->members.n, 4);
	ck_assert(addr_set_contains(&a->members, &(struct ip_addr){ 0, 0 }) == false);
	struct ip_addr x = A("10.0.1.10");
	ck_assert(addr_set_contains(&a->members, &x));
	x = A("10.0.1.11");
	ck_assert(addr_set_contains(&a->members, &x));
	x = A("2001:db8:1::10");
	ck_assert(addr_set_contains(&a->members, &x));
	x = A("10.0.1.20");
	ck_assert(addr_set_contains(&a->members, &x));
	x = A("203.0.113.10");
	ck_assert(!addr_set_contains(&a->members, &x));
	x = A("10.0.1.30");
	ck_assert(!addr_set_contains(&a->members, &x));

	/* lookups */
	x = A("10.0.1.11");
	ck_assert_str_eq(policy_iface_by_addr(p, &x)->id, "eni-1");
	x = A("2001:db8:1::10");
	ck_assert_str_eq(policy_iface_by_addr(p, &x)->id, "eni-1");
	x = A("10.0.1.99");
	ck_assert_ptr_null(policy_iface_by_addr(p, &x));
	ck_assert_str_eq(policy_subnet_by_addr(p, &x)->id, "subnet-a");
	x = A("2001:db8:1::ffff");
	ck_assert_str_eq(policy_subnet_by_addr(p, &x)->id, "subnet-a");
	x = A("10.0.2.1");
	ck_assert_ptr_null(policy_subnet_by_addr(p, &x));
	ck_assert_str_eq(policy_iface_by_id(p, "eni-3")->id, "eni-3");
	ck_assert_ptr_null(policy_iface_by_id(p, "eni-9"));
	policy_free(p);
}
END_TEST

/* Interfaces carrying the same groups in the same order share one compiled
 * set per direction (issue #9: a configuration of any size compiles each
 * distinct list once); another order is another list (it decides which rule
 * is reported).  Each interface keeps counter slots of its own, so a packet
 * counts for the rule of the interface it crossed and no other. */
START_TEST(test_shared_sets)
{
#define ENI(n, groups) "{\"NetworkInterfaceId\":\"eni-" n "\",\"SubnetId\":\"subnet-a\"," \
	"\"PrivateIpAddress\":\"10.0.1.1" n "\",\"Groups\":[" groups "]}"
#define G(id) "{\"GroupId\":\"" id "\"}"
	struct policy *p = tu_policy(
		"{\"Vpcs\":[" VPC "],\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
		"\"SecurityGroups\":["
		"{\"GroupId\":\"sg-a\",\"IpPermissions\":[{\"IpProtocol\":\"tcp\",\"FromPort\":80,"
		" \"ToPort\":80,\"IpRanges\":[{\"CidrIp\":\"198.51.100.0/24\"}]}],"
		" \"IpPermissionsEgress\":[{\"IpProtocol\":\"-1\",\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}]},"
		"{\"GroupId\":\"sg-b\",\"IpPermissions\":[{\"IpProtocol\":\"tcp\",\"FromPort\":80,"
		" \"ToPort\":80,\"IpRanges\":[{\"CidrIp\":\"198.51.0.0/16\"}]}]}],"
		"\"NetworkInterfaces\":["
		ENI("1", G("sg-a") "," G("sg-b")) "," ENI("2", G("sg-a") "," G("sg-b")) ","
		ENI("3", G("sg-b") "," G("sg-a")) "," ENI("4", G("sg-a") "," G("sg-gone") "," G("sg-b")) ","
		ENI("5", G("sg-gone")) "," ENI("6", "") "]}");
#undef ENI
#undef G
	ck_assert_ptr_nonnull(p);
	const struct iface *f[7] = { NULL };
	for (int i = 1; i <= 6; i++) {
		char id[16];
		snprintf(id, sizeof(id), "eni-%d", i);
		f[i] = policy_iface_by_id(p, id);
		ck_assert_ptr_nonnull(f[i]);
	}
	ck_assert_ptr_null(policy_iface_by_id(p, "eni-7"));
	ck_assert_ptr_null(policy_iface_by_device(p, "eth0")); /* no binding */
	ck_assert_ptr_eq(f[1]->in, f[2]->in);
	ck_assert_ptr_eq(f[1]->out, f[2]->out);
	ck_assert_ptr_eq(f[1]->in, f[4]->in); /* the unknown group drops out */
	ck_assert_ptr_ne(f[1]->in, f[3]->in);
	ck_assert_ptr_eq(f[5]->in, f[6]->in); /* no group left: the empty set */
	ck_assert_int_eq(f[5]->in->n, 0);
	ck_assert_int_eq(f[1]->in->n, 2);
	ck_assert_str_eq(f[1]->in->rules[0].group->id, "sg-a");
	ck_assert_str_eq(f[3]->in->rules[0].group->id, "sg-b");

	/* counter slots: every interface's own, disjoint, below the
	 * interface counters */
	uint32_t next = f[1]->sg_hit_in;
	for (int i = 1; i <= 6; i++) {
		ck_assert_uint_eq(f[i]->sg_hit_in, next);
		ck_assert_uint_eq(f[i]->sg_hit_out, f[i]->sg_hit_in + (uint32_t)f[i]->in->n);
		next = f[i]->sg_hit_out + (uint32_t)f[i]->out->n;
	}
	ck_assert_uint_le(next, p->iface_hit_base);

	/* a packet to eni-2 counts in eni-2's slot of the shared rule */
	struct pipeline pl;
	pipeline_init(&pl, ct_create(64));
	counter_t *hits = calloc(p->n_hits, sizeof(*hits));
	ck_assert_ptr_nonnull(hits);
	pl.hits = hits;
	pl.n_hits = p->n_hits;
	struct packet pk = tu_pkt("198.51.100.7", "10.0.1.12", 6, 40000, 80, TCP_SYN);
	struct verdict v;
	pipeline_eval(&pl, p, &pk, NULL, tu_sec(0), &v);
	ck_assert(v.accept && v.stage == STAGE_SG_INGRESS);
	ck_assert_ptr_eq(v.sg_rule, &f[2]->in->rules[0]);
	ck_assert_uint_eq(counter_get(&hits[f[2]->sg_hit_in + v.sg_rule->hit]), 1);
	ck_assert_uint_eq(counter_get(&hits[f[1]->sg_hit_in + v.sg_rule->hit]), 0);
	ck_assert_uint_eq(counter_get(&hits[f[4]->sg_hit_in + v.sg_rule->hit]), 0);
	free(hits);
	ct_destroy(pl.ct);
	policy_free(p);
	policy_intern_reset();
}
END_TEST

START_TEST(test_default_nacl)
{
	/* an unassociated subnet takes its VPC's default NACL; a VPC without
	 * NACLs in the data has none (everything allowed) */
	struct policy *p = tu_policy(
		"{\"Vpcs\":[" VPC ",{\"VpcId\":\"vpc-2\",\"CidrBlock\":\"10.9.0.0/16\"}],"
		"\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "," SUBNET("subnet-b", "10.0.2.0/24")
		",{\"SubnetId\":\"subnet-c\",\"VpcId\":\"vpc-2\",\"CidrBlock\":\"10.9.1.0/24\"}],"
		"\"NetworkAcls\":[{\"NetworkAclId\":\"acl-d\",\"VpcId\":\"vpc-1\",\"IsDefault\":true,\"Entries\":[]},"
		"{\"NetworkAclId\":\"acl-x\",\"VpcId\":\"vpc-1\",\"IsDefault\":false,\"Entries\":[],"
		" \"Associations\":[{\"SubnetId\":\"subnet-b\"}]}]}");
	ck_assert_str_eq(p->subnets[0].nacl->id, "acl-d");
	ck_assert_str_eq(p->subnets[1].nacl->id, "acl-x");
	ck_assert_ptr_null(p->subnets[2].nacl);
	ck_assert(p->subnets[0].vpc && p->subnets[0].vpc->has_dns);
	policy_free(p);
}
END_TEST

static void expect_text(const char *json, bool loads, const char *needle)
{
	char *text = NULL;
	struct policy *p = tu_policy_try(json, &text);
	ck_assert_msg((p != NULL) == loads, "load=%d: %s", p != NULL, text);
	ck_assert_msg(strstr(text, needle), "'%s' not in:\n%s", needle, text);
	free(text);
	policy_free(p);
}

START_TEST(test_references_warned)
{
	const char *cfg =
		"{\"Vpcs\":[" VPC "],\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
		"\"SecurityGroups\":[{\"GroupId\":\"sg-a\",\"IpPermissions\":["
		"{\"IpProtocol\":\"tcp\",\"FromPort\":1,\"ToPort\":2,"
		" \"UserIdGroupPairs\":[{\"GroupId\":\"sg-peer\"}],\"PrefixListIds\":[{\"PrefixListId\":\"pl-9\"}]}]}],"
		"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-a\","
		" \"PrivateIpAddress\":\"10.0.1.10\",\"Groups\":[{\"GroupId\":\"sg-a\"},{\"GroupId\":\"sg-gone\"}]},"
		"{\"NetworkInterfaceId\":\"eni-2\",\"SubnetId\":\"subnet-zz\",\"PrivateIpAddress\":\"10.7.1.10\"}]}";
	expect_text(cfg, true, "test.json: SecurityGroups[0].IpPermissions[0].UserIdGroupPairs[0]: "
			       "security group sg-peer is not in the configuration; the reference matches nothing");
	expect_text(cfg, true, "prefix list pl-9 is not in the configuration; the reference matches nothing");
	expect_text(cfg, true, "security group sg-gone is not in the configuration; it admits nothing on eni-1");
	expect_text(cfg, true, "interface eni-2: subnet subnet-zz is not in the configuration; the "
			       "interface is not enforced");
	struct policy *p = tu_policy(cfg);
	/* the unenforced interface is not in the address table */
	struct ip_addr x = A("10.7.1.10");
	ck_assert_ptr_null(policy_iface_by_addr(p, &x));
	ck_assert_int_eq(policy_iface_by_id(p, "eni-1")->n_groups, 1);
	policy_free(p);
}
END_TEST

START_TEST(test_address_outside_subnet)
{
	expect_text("{\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
		    "\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-a\","
		    "\"PrivateIpAddress\":\"10.0.2.10\"}]}",
		    false, "error: test.json: NetworkInterfaces[0]: address 10.0.2.10 of interface eni-1 "
			   "is outside its subnet subnet-a");
}
END_TEST

START_TEST(test_overlap_and_duplicate_address)
{
	const char *cfg =
		"{\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") ","
		"{\"SubnetId\":\"subnet-b\",\"VpcId\":\"vpc-2\",\"CidrBlock\":\"10.0.1.0/25\"}],"
		"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-a\","
		"\"PrivateIpAddress\":\"10.0.1.10\"},{\"NetworkInterfaceId\":\"eni-2\",\"SubnetId\":\"subnet-b\","
		"\"PrivateIpAddress\":\"10.0.1.10\"}]}";
	expect_text(cfg, true, "subnet subnet-b overlaps subnet subnet-a");
	expect_text(cfg, true, "address 10.0.1.10 is also on interface eni-1");
}
END_TEST

START_TEST(test_strict_refuses_warnings)
{
	struct model *m = calloc(1, sizeof(*m));
	struct diag d;
	static const char cfg[] = "{\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
				  "\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":"
				  "\"subnet-a\",\"PrivateIpAddress\":\"10.0.1.10\",\"Groups\":[{\"GroupId\":\"sg-x\"}]}]}";
	diag_init(&d);
	d.strict = true;
	model_init(m);
	config_load_buffer(m, "s.json", cfg, sizeof(cfg) - 1, &d);
	config_check(m, &d);
	ck_assert_ptr_null(policy_build(m, &d));
	ck_assert_uint_eq(d.errors, 0);
	ck_assert_uint_ge(d.warnings, 1);
	diag_free(&d);
}
END_TEST

START_TEST(test_intern_stable)
{
	uint32_t a = policy_intern_iface("eni-a");
	uint32_t b = policy_intern_iface("eni-b");
	ck_assert_uint_ne(a, 0);
	ck_assert_uint_ne(a, b);
	ck_assert_uint_eq(policy_intern_iface("eni-a"), a);
}
END_TEST

START_TEST(test_print_config)
{
	struct policy *p = tu_policy(
		"{\"Vpcs\":[" VPC "],\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
		"\"ManagedPrefixLists\":[{\"PrefixListId\":\"pl-1\",\"Entries\":[{\"Cidr\":\"192.0.2.0/24\"}]}],"
		"\"NetworkAcls\":[{\"NetworkAclId\":\"acl-d\",\"VpcId\":\"vpc-1\",\"IsDefault\":true,\"Entries\":["
		" {\"RuleNumber\":200,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"6\","
		"  \"CidrBlock\":\"0.0.0.0/0\",\"PortRange\":{\"From\":80,\"To\":80}},"
		" {\"RuleNumber\":100,\"Egress\":false,\"RuleAction\":\"deny\",\"Protocol\":\"-1\","
		"  \"CidrBlock\":\"198.51.100.0/24\"}]}],"
		"\"SecurityGroups\":[{\"GroupId\":\"sg-a\",\"IpPermissions\":["
		"{\"IpProtocol\":\"tcp\",\"FromPort\":443,\"ToPort\":443,\"PrefixListIds\":[{\"PrefixListId\":\"pl-1\"}]},"
		"{\"IpProtocol\":\"tcp\",\"FromPort\":22,\"ToPort\":22,\"UserIdGroupPairs\":[{\"GroupId\":\"sg-a\"}]}]}],"
		"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-a\","
		" \"PrivateIpAddress\":\"10.0.1.10\",\"Groups\":[{\"GroupId\":\"sg-a\"}]}]}");
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	policy_print(p, f);
	fclose(f);
	/* NACL sorted by number, the '*' rule last, group members resolved */
	char *r100 = strstr(buf, "100   deny  all    198.51.100.0/24");
	char *r200 = strstr(buf, "200   allow tcp    0.0.0.0/0 ports 80-80");
	char *star = strstr(buf, "*     deny  all    0.0.0.0/0, ::/0");
	ck_assert_msg(r100 && r200 && star && r100 < r200 && r200 < star, "%s", buf);
	ck_assert_msg(strstr(buf, "sg-a IpPermissions[0]  tcp 443 from prefix list pl-1 192.0.2.0/24"), "%s", buf);
	ck_assert_msg(strstr(buf, "sg-a IpPermissions[1]  tcp 22 from group sg-a {10.0.1.10}"), "%s", buf);
	ck_assert_msg(strstr(buf, "vpc vpc-1 10.0.0.0/16; DNS 10.0.0.2"), "%s", buf);
	free(buf);
	policy_free(p);
}
END_TEST

START_TEST(test_interface_types)
{
	/* Issue #10: AWS gives a NAT gateway's interface no group: filtered by
	 * network ACLs only, no warning.  An instance's interface always has one:
	 * without any it is warned about (an error under --strict). */
	static const char nat[] =
		"{\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
		"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-nat\",\"SubnetId\":\"subnet-a\","
		"\"InterfaceType\":\"nat_gateway\",\"Groups\":[],\"SourceDestCheck\":false,"
		"\"PrivateIpAddress\":\"10.0.1.10\"}]}";
	char *text = NULL;
	struct policy *p = tu_policy_try(nat, &text);
	ck_assert_ptr_nonnull(p);
	ck_assert_msg(!strstr(text, "warning"), "%s", text);
	free(text);
	ck_assert(!policy_iface_by_id(p, "eni-nat")->sg_applies);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	policy_print(p, f);
	fclose(f);
	ck_assert_msg(strstr(buf, "  type: nat_gateway; security groups: none (network ACLs only)\n"),
		      "%s", buf);
	free(buf);
	policy_free(p);

	expect_text("{\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
		    "\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-a\","
		    "\"InterfaceType\":\"interface\",\"Groups\":[],\"PrivateIpAddress\":\"10.0.1.10\"}]}",
		    true, "warning: test.json: NetworkInterfaces[0].Groups: interface eni-1 (type "
			  "interface) has no security group");
	expect_text("{\"Subnets\":[" SUBNET("subnet-a", "10.0.1.0/24") "],"
		    "\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-a\","
		    "\"InterfaceType\":\"warp_drive\",\"Groups\":[{\"GroupId\":\"sg-1\"}],"
		    "\"PrivateIpAddress\":\"10.0.1.10\"}],\"SecurityGroups\":[{\"GroupId\":\"sg-1\"}]}",
		    true, "warning: test.json: NetworkInterfaces[0].InterfaceType: \"warp_drive\" is not "
			  "an interface type the EC2 API documents");
}
END_TEST

#define PFX_SUBNET "{\"SubnetId\":\"subnet-a\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.1.0/24\"," \
	"\"Ipv6CidrBlockAssociationSet\":[{\"Ipv6CidrBlock\":\"2001:db8:1::/64\"}]}"
#define PFX_ENI(id, ip, p4, p6) "{\"NetworkInterfaceId\":\"" id "\",\"SubnetId\":\"subnet-a\"," \
	"\"PrivateIpAddress\":\"" ip "\",\"Groups\":[{\"GroupId\":\"sg-a\"}]," \
	"\"Ipv4Prefixes\":[" p4 "],\"Ipv6Prefixes\":[" p6 "]}"

/* Issue #10: the addresses of a delegated prefix belong to its interface. */
START_TEST(test_delegated_prefixes)
{
	struct policy *p = tu_policy(
		"{\"Vpcs\":[" VPC "],\"Subnets\":[" PFX_SUBNET "],"
		"\"SecurityGroups\":[{\"GroupId\":\"sg-a\"},{\"GroupId\":\"sg-b\"}],"
		"\"NetworkInterfaces\":["
		PFX_ENI("eni-1", "10.0.1.10", "{\"Ipv4Prefix\":\"10.0.1.16/28\"}",
			"{\"Ipv6Prefix\":\"2001:db8:1:0:1::/80\"}") ","
		PFX_ENI("eni-2", "10.0.1.11", "{\"Ipv4Prefix\":\"10.0.1.32/28\"}", "") ","
		"{\"NetworkInterfaceId\":\"eni-3\",\"SubnetId\":\"subnet-a\",\"PrivateIpAddress\":\"10.0.1.12\","
		" \"Groups\":[{\"GroupId\":\"sg-b\"}]}]}");
	const struct iface *e1 = policy_iface_by_id(p, "eni-1"), *e2 = policy_iface_by_id(p, "eni-2");
	struct ip_addr x = A("10.0.1.16");
	ck_assert_ptr_eq(policy_iface_by_addr(p, &x), e1);
	x = A("10.0.1.31");
	ck_assert_ptr_eq(policy_iface_by_addr(p, &x), e1);
	ck_assert(policy_iface_owns(p, e1, &x));
	ck_assert(!policy_iface_owns(p, e2, &x));
	x = A("10.0.1.32");
	ck_assert_ptr_eq(policy_iface_by_addr(p, &x), e2);
	x = A("10.0.1.48");
	ck_assert_ptr_null(policy_iface_by_addr(p, &x));
	x = A("10.0.1.15");
	ck_assert_ptr_null(policy_iface_by_addr(p, &x));
	x = A("2001:db8:1:0:1:ffff:ffff:ffff");
	ck_assert_ptr_eq(policy_iface_by_addr(p, &x), e1);
	x = A("2001:db8:1:0:2::");
	ck_assert_ptr_null(policy_iface_by_addr(p, &x));
	x = A("10.0.1.10");
	ck_assert_ptr_eq(policy_iface_by_addr(p, &x), e1);

	/* the group's members hold the prefixes of its interfaces */
	const struct sg *a = e1->groups[0];
	x = A("10.0.1.20");
	ck_assert(addr_set_contains(&a->members, &x));
	x = A("10.0.1.40");
	ck_assert(addr_set_contains(&a->members, &x));
	x = A("2001:db8:1:0:1::7");
	ck_assert(addr_set_contains(&a->members, &x));
	x = A("10.0.1.12");
	ck_assert(!addr_set_contains(&a->members, &x));
	x = A("10.0.1.48");
	ck_assert(!addr_set_contains(&a->members, &x));

	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	policy_print(p, f);
	fclose(f);
	ck_assert_msg(strstr(buf, "  delegated prefixes: 10.0.1.16/28 2001:db8:1:0:1::/80\n"), "%s", buf);
	ck_assert_msg(strstr(buf, "security group sg-a members {10.0.1.10, 10.0.1.11, 10.0.1.16/28, "
				  "10.0.1.32/28, 2001:db8:1:0:1::/80}"), "%s", buf);
	free(buf);
	policy_free(p);
}
END_TEST

START_TEST(test_prefix_errors)
{
	/* outside the subnet: an error naming file, JSON path and value */
	expect_text("{\"Subnets\":[" PFX_SUBNET "],\"SecurityGroups\":[{\"GroupId\":\"sg-a\"}],"
		    "\"NetworkInterfaces\":[" PFX_ENI("eni-1", "10.0.1.10", "{\"Ipv4Prefix\":\"10.0.2.16/28\"}", "") "]}",
		    false, "error: test.json: NetworkInterfaces[0].Ipv4Prefixes[0].Ipv4Prefix: prefix "
			   "10.0.2.16/28 of interface eni-1 is outside its subnet subnet-a");
	expect_text("{\"Subnets\":[" PFX_SUBNET "],\"SecurityGroups\":[{\"GroupId\":\"sg-a\"}],"
		    "\"NetworkInterfaces\":[" PFX_ENI("eni-1", "10.0.1.10", "", "{\"Ipv6Prefix\":\"2001:db8:2::/80\"}") "]}",
		    false, "error: test.json: NetworkInterfaces[0].Ipv6Prefixes[0].Ipv6Prefix: prefix "
			   "2001:db8:2::/80 of interface eni-1 is outside its subnet subnet-a");
	/* a /24 prefix of a /24 subnet is inside; one reaching past it is not */
	expect_text("{\"Subnets\":[" PFX_SUBNET "],\"SecurityGroups\":[{\"GroupId\":\"sg-a\"}],"
		    "\"NetworkInterfaces\":[" PFX_ENI("eni-1", "10.0.1.10", "{\"Ipv4Prefix\":\"10.0.0.0/23\"}", "") "]}",
		    false, "prefix 10.0.0.0/23 of interface eni-1 is outside its subnet subnet-a");
	/* overlapping prefixes, nested or equal */
	expect_text("{\"Subnets\":[" PFX_SUBNET "],\"SecurityGroups\":[{\"GroupId\":\"sg-a\"}],"
		    "\"NetworkInterfaces\":[" PFX_ENI("eni-1", "10.0.1.10", "{\"Ipv4Prefix\":\"10.0.1.16/28\"}", "") ","
		    PFX_ENI("eni-2", "10.0.1.11", "{\"Ipv4Prefix\":\"10.0.1.16/29\"}", "") "]}",
		    false, "error: test.json: NetworkInterfaces[1].Ipv4Prefixes[0].Ipv4Prefix: prefix "
			   "10.0.1.16/29 of interface eni-2 overlaps prefix 10.0.1.16/28 of interface eni-1");
	expect_text("{\"Subnets\":[" PFX_SUBNET "],\"SecurityGroups\":[{\"GroupId\":\"sg-a\"}],"
		    "\"NetworkInterfaces\":[" PFX_ENI("eni-1", "10.0.1.10", "", "{\"Ipv6Prefix\":\"2001:db8:1:0:1::/80\"}") ","
		    PFX_ENI("eni-2", "10.0.1.11", "", "{\"Ipv6Prefix\":\"2001:db8:1:0:1::/80\"}") "]}",
		    false, "prefix 2001:db8:1:0:1::/80 of interface eni-2 overlaps prefix "
			   "2001:db8:1:0:1::/80 of interface eni-1");
	/* another interface's address inside a prefix */
	expect_text("{\"Subnets\":[" PFX_SUBNET "],\"SecurityGroups\":[{\"GroupId\":\"sg-a\"}],"
		    "\"NetworkInterfaces\":[" PFX_ENI("eni-1", "10.0.1.10", "{\"Ipv4Prefix\":\"10.0.1.16/28\"}", "") ","
		    PFX_ENI("eni-2", "10.0.1.20", "", "") "]}",
		    false, "error: test.json: NetworkInterfaces[1]: address 10.0.1.20 of interface eni-2 is "
			   "inside prefix 10.0.1.16/28 delegated to interface eni-1");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("build");
	tcase_add_test(tc, test_group_members);
	tcase_add_test(tc, test_shared_sets);
	tcase_add_test(tc, test_default_nacl);
	tcase_add_test(tc, test_references_warned);
	tcase_add_test(tc, test_address_outside_subnet);
	tcase_add_test(tc, test_overlap_and_duplicate_address);
	tcase_add_test(tc, test_strict_refuses_warnings);
	tcase_add_test(tc, test_intern_stable);
	tcase_add_test(tc, test_print_config);
	tcase_add_test(tc, test_interface_types);
	tcase_add_test(tc, test_delegated_prefixes);
	tcase_add_test(tc, test_prefix_errors);
	suite_add_tcase(s, tc);
	int rc = run_suite(s);
	policy_intern_reset();
	return rc;
}
