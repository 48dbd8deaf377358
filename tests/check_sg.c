/* Security-group matching (SPEC §4; VPC user guide "security-group-rules",
 * "security-group-connection-tracking"). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/sg.h"

/* Rule description: proto, from, to, peer ("cidr", "pl:ID" or "sg:ID"). */
struct r {
	int proto, from, to;
	const char *peer;
};

static struct arena A;
static struct cidr pl_cidrs[2];
static struct ip_addr members[2];
static struct addr_set member_set = { .addrs = members, .n = 2 };

static const struct cidr *fake_pl(void *ctx, const char *id, int *n)
{
	(void)ctx;
	if (strcmp(id, "pl-1") == 0) {
		*n = 2;
		return pl_cidrs;
	}
	*n = 0;
	return NULL;
}

static const struct addr_set *fake_group(void *ctx, const char *id)
{
	(void)ctx;
	return strcmp(id, "sg-members") == 0 ? &member_set : NULL;
}

static void fill_rules(struct m_sg_rule *out, const struct r *rs, int n)
{
	for (int i = 0; i < n; i++) {
		out[i].proto = rs[i].proto;
		out[i].from = rs[i].from;
		out[i].to = rs[i].to;
		out[i].index = i;
		out[i].n_peers = 1;
		out[i].peers = arena_calloc(&A, 1, sizeof(struct m_peer));
		const char *pe = rs[i].peer;
		if (strncmp(pe, "pl:", 3) == 0) {
			out[i].peers[0].kind = PEER_PREFIX_LIST;
			out[i].peers[0].ref = pe + 3;
		} else if (strncmp(pe, "sg:", 3) == 0) {
			out[i].peers[0].kind = PEER_GROUP;
			out[i].peers[0].ref = pe + 3;
		} else {
			out[i].peers[0].kind = PEER_CIDR;
			ck_assert(cidr_parse(pe, &out[i].peers[0].cidr, NULL));
		}
	}
}

/* Two groups on one interface: their rules form one set. */
static void build(const struct r *in1, int n1, const struct r *in2, int n2, const struct r *out,
		  int nout, struct sg_set *sin, struct sg_set *sout)
{
	static struct m_sg ms[2];
	static struct sg gs[2];
	memset(ms, 0, sizeof(ms));
	memset(gs, 0, sizeof(gs));
	ms[0].id = gs[0].id = "sg-one";
	ms[1].id = gs[1].id = "sg-two";
	ms[0].in = arena_calloc(&A, (size_t)n1 + 1, sizeof(struct m_sg_rule));
	ms[0].n_in = n1;
	fill_rules(ms[0].in, in1, n1);
	ms[1].in = arena_calloc(&A, (size_t)n2 + 1, sizeof(struct m_sg_rule));
	ms[1].n_in = n2;
	fill_rules(ms[1].in, in2, n2);
	ms[0].out = arena_calloc(&A, (size_t)nout + 1, sizeof(struct m_sg_rule));
	ms[0].n_out = nout;
	fill_rules(ms[0].out, out, nout);
	gs[0].m = &ms[0];
	gs[1].m = &ms[1];
	const struct sg *g[2] = { &gs[0], &gs[1] };
	const struct m_sg *m[2] = { &ms[0], &ms[1] };
	struct sg_resolver res = { fake_pl, fake_group, NULL };
	sg_set_build(&A, g, m, 2, false, &res, sin);
	sg_set_build(&A, g, m, 2, true, &res, sout);
}

static void setup(void)
{
	arena_init(&A);
	ck_assert(cidr_parse("192.0.2.0/24", &pl_cidrs[0], NULL));
	ck_assert(cidr_parse("2001:db8:99::/48", &pl_cidrs[1], NULL));
	ck_assert(addr_parse("10.0.2.10", &members[0], NULL));
	ck_assert(addr_parse("10.0.2.11", &members[1], NULL));
}

static void teardown(void)
{
	arena_free(&A);
}

static const struct r in_one[] = {
	{ 6, 80, 80, "0.0.0.0/0" },
	{ 6, 8000, 8010, "sg:sg-members" },
	{ 6, 22, 22, "198.51.100.0/24" },
	{ 17, -1, -1, "pl:pl-1" },               /* all udp ports from a prefix list */
	{ 1, 8, -1, "0.0.0.0/0" },               /* echo request, any code */
	{ 58, 128, 0, "::/0" },
	{ 6, 443, 443, "sg:sg-missing" },        /* unresolved: matches nothing */
};
static const struct r in_two[] = {
	{ 6, 22, 22, "203.0.113.9/32" },
	{ 47, 5, 9, "10.0.0.0/8" },              /* GRE: ports ignored */
	{ 6, 0, 65535, "2001:db8:5::/48" },
};
static const struct r out_all[] = {
	{ -1, 0, 0, "0.0.0.0/0" },
};

struct mcase {
	const char *name;
	const char *src, *dst;
	int proto, dport, itype, icode;
	bool admit;
	const char *group;
	int index;
};

static const struct mcase mcases[] = {
	{ "port 80 from anywhere", "203.0.113.7", "10.0.1.10", 6, 80, 0, 0, true, "sg-one", 0 },
	{ "port 81 refused", "203.0.113.7", "10.0.1.10", 6, 81, 0, 0, false, NULL, 0 },
	{ "group member in range", "10.0.2.11", "10.0.1.10", 6, 8005, 0, 0, true, "sg-one", 1 },
	{ "non-member refused", "10.0.2.12", "10.0.1.10", 6, 8005, 0, 0, false, NULL, 0 },
	{ "ssh corporate (first group)", "198.51.100.4", "10.0.1.10", 6, 22, 0, 0, true, "sg-one", 2 },
	{ "ssh from the second group's host: union", "203.0.113.9", "10.0.1.10", 6, 22, 0, 0, true, "sg-two", 0 },
	{ "ssh elsewhere refused", "203.0.113.10", "10.0.1.10", 6, 22, 0, 0, false, NULL, 0 },
	{ "udp any port from prefix list v4", "192.0.2.77", "10.0.1.10", 17, 5353, 0, 0, true, "sg-one", 3 },
	{ "udp from prefix list v6", "2001:db8:99::1", "2001:db8:1::10", 17, 1, 0, 0, true, "sg-one", 3 },
	{ "udp outside prefix list", "192.0.3.1", "10.0.1.10", 17, 53, 0, 0, false, NULL, 0 },
	{ "icmp echo any code", "203.0.113.7", "10.0.1.10", 1, 0, 8, 5, true, "sg-one", 4 },
	{ "icmp echo reply not admitted by type 8 rule", "203.0.113.7", "10.0.1.10", 1, 0, 0, 0, false, NULL, 0 },
	{ "icmpv6 echo code 0", "2001:db8::7", "2001:db8:1::10", 58, 0, 128, 0, true, "sg-one", 5 },
	{ "icmpv6 echo code 1 refused", "2001:db8::7", "2001:db8:1::10", 58, 0, 128, 1, false, NULL, 0 },
	{ "unresolved group matches nothing", "10.0.2.10", "10.0.1.10", 6, 443, 0, 0, false, NULL, 0 },
	{ "protocol 47 ports ignored", "10.1.1.1", "10.0.1.10", 47, 0, 0, 0, true, "sg-two", 1 },
	{ "ipv4 cidr does not admit ipv6", "2001:db8::7", "2001:db8:1::10", 6, 80, 0, 0, false, NULL, 0 },
	{ "ipv6 all tcp ports", "2001:db8:5::1", "2001:db8:1::10", 6, 65535, 0, 0, true, "sg-two", 2 },
};

START_TEST(test_match)
{
	const struct mcase *c = &mcases[_i];
	struct sg_set in, out;
	build(in_one, 7, in_two, 3, out_all, 1, &in, &out);
	struct packet p = c->proto == 1 || c->proto == 58
				  ? tu_icmp(c->src, c->dst, c->itype, c->icode, 7)
				  : tu_pkt(c->src, c->dst, c->proto, 40000, c->dport, TCP_SYN);
	const struct sg_rule *r = NULL;
	bool ok = sg_match(&in, &p, false, &r);
	ck_assert_msg(ok == c->admit, "%s", c->name);
	if (ok) {
		ck_assert_str_eq(r->group->id, c->group);
		ck_assert_int_eq(r->m->index, c->index);
	}
}
END_TEST

START_TEST(test_egress_matches_destination)
{
	static const struct r out_web[] = { { 6, 443, 443, "192.0.2.0/24" } };
	struct sg_set in, out;
	build(NULL, 0, NULL, 0, out_web, 1, &in, &out);
	const struct sg_rule *r;
	struct packet p = tu_pkt("10.0.1.10", "192.0.2.5", 6, 40000, 443, TCP_SYN);
	ck_assert(sg_match(&out, &p, true, &r));
	p = tu_pkt("192.0.2.5", "10.0.1.10", 6, 443, 40000, TCP_SYN | TCP_ACK);
	ck_assert(!sg_match(&out, &p, true, &r));
	/* a group with no rules admits nothing */
	ck_assert(!sg_match(&in, &p, false, &r));
}
END_TEST

/* "security-group-connection-tracking": untracked when the admitting rule
 * is 0.0.0.0/0 and the other direction admits all ports to 0.0.0.0/0. */
START_TEST(test_untracked)
{
	struct sg_set in, out;
	build(in_one, 7, in_two, 3, out_all, 1, &in, &out);
	const struct sg_rule *r;
	struct packet p = tu_pkt("203.0.113.7", "10.0.1.10", 6, 40000, 80, TCP_SYN);
	ck_assert(sg_match(&in, &p, false, &r));
	ck_assert(r->world);
	ck_assert(sg_flow_untracked(&in, &out, r, &p, false));
	/* the admitting rule is not a world rule: tracked */
	p = tu_pkt("198.51.100.4", "10.0.1.10", 6, 40000, 22, TCP_SYN);
	ck_assert(sg_match(&in, &p, false, &r));
	ck_assert(!sg_flow_untracked(&in, &out, r, &p, false));
	/* ICMP is always tracked */
	p = tu_icmp("203.0.113.7", "10.0.1.10", 8, 0, 1);
	ck_assert(sg_match(&in, &p, false, &r));
	ck_assert(!sg_flow_untracked(&in, &out, r, &p, false));
	/* an egress allowing only some ports keeps the flow tracked */
	static const struct r out_443[] = { { 6, 443, 443, "0.0.0.0/0" } };
	build(in_one, 7, in_two, 3, out_443, 1, &in, &out);
	p = tu_pkt("203.0.113.7", "10.0.1.10", 6, 40000, 80, TCP_SYN);
	ck_assert(sg_match(&in, &p, false, &r));
	ck_assert(!sg_flow_untracked(&in, &out, r, &p, false));
	/* the reply of an untracked flow (web answers port 80) is untracked too:
	 * the reversed packet is admitted by a world ingress rule and the egress
	 * is all-open; a reply from port 22 (not world) is not */
	build(in_one, 7, in_two, 3, out_all, 1, &in, &out);
	p = tu_pkt("10.0.1.10", "203.0.113.7", 6, 80, 40000, TCP_SYN | TCP_ACK);
	ck_assert(sg_match(&out, &p, true, &r));
	ck_assert(sg_flow_untracked(&out, &in, r, &p, true));
	p = tu_pkt("10.0.1.10", "198.51.100.4", 6, 22, 40000, TCP_SYN | TCP_ACK);
	ck_assert(sg_match(&out, &p, true, &r));
	ck_assert(!sg_flow_untracked(&out, &in, r, &p, true));
	/* IPv4 all-open egress does not make an IPv6 flow untracked */
	static const struct r in_v6[] = { { 6, 80, 80, "::/0" } };
	build(in_v6, 1, NULL, 0, out_all, 1, &in, &out);
	p = tu_pkt("2001:db8::7", "2001:db8:1::10", 6, 40000, 80, TCP_SYN);
	ck_assert(sg_match(&in, &p, false, &r));
	ck_assert(!sg_flow_untracked(&in, &out, r, &p, false));
}
END_TEST

START_TEST(test_world_rule_preferred)
{
	/* both a narrow and a world rule admit: the world rule is reported, so
	 * the untracked test sees it (rule order in the JSON does not matter) */
	static const struct r in[] = { { 6, 80, 80, "203.0.113.0/24" }, { 6, 0, 65535, "0.0.0.0/0" } };
	struct sg_set sin, sout;
	build(in, 2, NULL, 0, out_all, 1, &sin, &sout);
	const struct sg_rule *r;
	struct packet p = tu_pkt("203.0.113.7", "10.0.1.10", 6, 40000, 80, TCP_SYN);
	ck_assert(sg_match(&sin, &p, false, &r));
	ck_assert(r->world);
}
END_TEST

START_TEST(test_many_rules_index)
{
	/* 1000 single-port rules: the port index must find each one */
	enum { N = 1000 };
	struct r *rs = calloc(N, sizeof(*rs));
	char (*cidrs)[32] = calloc(N, 32);
	for (int i = 0; i < N; i++) {
		rs[i].proto = i % 2 ? 17 : 6;
		rs[i].from = rs[i].to = 1000 + i;
		snprintf(cidrs[i], 32, "10.%d.%d.0/24", i / 256, i % 256);
		rs[i].peer = cidrs[i];
	}
	struct sg_set in, out;
	build(rs, N, NULL, 0, out_all, 1, &in, &out);
	for (int i = 0; i < N; i++) {
		char src[32];
		snprintf(src, sizeof(src), "10.%d.%d.9", i / 256, i % 256);
		struct packet p = tu_pkt(src, "10.200.0.1", rs[i].proto, 1, 1000 + i, TCP_SYN);
		const struct sg_rule *r;
		ck_assert_msg(sg_match(&in, &p, false, &r), "rule %d", i);
		ck_assert_int_eq(r->m->index, i);
		p.dport = (uint16_t)(1000 + i + 1);
		if (i + 2 < N) /* the next port belongs to the other protocol */
			ck_assert(!sg_match(&in, &p, false, &r));
	}
	free(rs);
	free(cidrs);
}
END_TEST

/* The port index against a naive scan of every rule, on random rule sets
 * (overlapping ranges, world and narrow peers, every protocol class): the
 * same verdict, and the same rule reported -- a world rule when one admits,
 * else the first admitting rule in set order, port-independent rules before
 * port-ranged ones (what sg_match has always reported). */
static bool naive_l4(const struct sg_rule *r, const struct packet *p)
{
	if (r->proto == RULE_PROTO_ALL)
		return true;
	if (r->proto != p->proto)
		return false;
	if (r->proto == PROTO_TCP || r->proto == PROTO_UDP)
		return p->dport >= r->from && p->dport <= r->to;
	if (r->proto == PROTO_ICMP)
		return r->from < 0 || (p->icmp_type == r->from && (r->to < 0 || p->icmp_code == r->to));
	return true;
}

static const struct sg_rule *naive_match(const struct sg_set *s, const struct packet *p)
{
	const struct sg_rule *best = NULL;
	int best_key = 4;
	for (int i = 0; i < s->n; i++) {
		const struct sg_rule *r = &s->rules[i];
		if (!naive_l4(r, p) || !cidr_contains(&r->cidr, &p->src) || r->family != p->family)
			continue;
		bool ranged = (r->proto == PROTO_TCP || r->proto == PROTO_UDP) &&
			      !(r->from <= 0 && r->to >= 65535);
		int key = (r->world ? 0 : 2) + ranged;
		if (key < best_key) {
			best = r;
			best_key = key;
		}
	}
	return best;
}

START_TEST(test_index_equals_naive_scan)
{
	enum { SETS = 40, MAXR = 300, PKTS = 800 };
	static const char *const nets[] = { "0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24",
					    "192.0.2.0/24", "10.1.2.3/32" };
	static const char *const srcs[] = { "10.1.2.3", "10.1.9.9", "10.9.9.9", "192.0.2.7",
					    "203.0.113.1" };
	static const int protos[] = { 6, 6, 6, 17, 17, 1, -1 };
	unsigned seed = 12345;
	struct r *rs = calloc(MAXR, sizeof(*rs));
	for (int set = 0; set < SETS; set++) {
		int n = 1 + rand_r(&seed) % MAXR;
		for (int i = 0; i < n; i++) {
			int proto = protos[rand_r(&seed) % 7];
			int from = rand_r(&seed) % 2000, to = from;
			if (rand_r(&seed) % 2)
				to = from + rand_r(&seed) % (rand_r(&seed) % 8 ? 50 : 3000);
			if (rand_r(&seed) % 40 == 0) {
				from = 0;
				to = 65535;
			}
			if (to > 65535)
				to = 65535;
			if (proto == 1) {
				from = rand_r(&seed) % 4 - 1;
				to = from < 0 ? -1 : rand_r(&seed) % 3 - 1;
			}
			rs[i] = (struct r){ proto, from, to,
					    nets[rand_r(&seed) % (set % 2 ? 6 : 5) + (set % 2 ? 0 : 1)] };
		}
		struct sg_set in, out;
		int n1 = rand_r(&seed) % (n + 1);
		build(rs, n1, rs + n1, n - n1, out_all, 1, &in, &out);
		for (int k = 0; k < PKTS; k++) {
			int proto = protos[rand_r(&seed) % 6];
			const char *src = srcs[rand_r(&seed) % 5];
			struct packet p;
			if (proto == 1)
				p = tu_icmp(src, "10.0.1.10", rand_r(&seed) % 4, rand_r(&seed) % 3, 1);
			else
				p = tu_pkt(src, "10.0.1.10", proto, 1234, rand_r(&seed) % 3200, TCP_SYN);
			const struct sg_rule *r = NULL, *want = naive_match(&in, &p);
			bool got = sg_match(&in, &p, false, &r);
			ck_assert_msg(got == (want != NULL), "set %d packet %d: verdict", set, k);
			ck_assert_msg(r == want, "set %d packet %d (proto %d port %d): rule %d, not %d",
				      set, k, proto, p.dport, r ? (int)(r - in.rules) : -1,
				      want ? (int)(want - in.rules) : -1);
		}
	}
	free(rs);
}
END_TEST

/* a non-first fragment (no ports) is admitted by a rule of its protocol
 * whose peer matches, whatever the rule's ports (see nacl.c) */
START_TEST(test_fragment)
{
	struct sg_set in, out;
	build(in_one, 7, in_two, 3, out_all, 1, &in, &out);
	const struct sg_rule *r;
	struct packet p = tu_pkt("198.51.100.4", "10.0.1.10", 6, 0, 0, 0);
	p.flags = PKT_F_FRAGMENT;
	ck_assert(sg_match(&in, &p, false, &r));
	ck_assert_int_eq(r->m->index, 2);
	p = tu_pkt("198.18.0.1", "10.0.1.10", 6, 0, 0, 0);
	p.flags = PKT_F_FRAGMENT;
	ck_assert(sg_match(&in, &p, false, &r)); /* port 80 from 0.0.0.0/0 */
	p.proto = 17;
	ck_assert(!sg_match(&in, &p, false, &r));
}
END_TEST

START_TEST(test_addr_set)
{
	struct ip_addr a;
	ck_assert(addr_parse("10.0.2.10", &a, NULL));
	ck_assert(addr_set_contains(&member_set, &a));
	ck_assert(addr_parse("10.0.2.12", &a, NULL));
	ck_assert(!addr_set_contains(&member_set, &a));
	struct addr_set empty = { .addrs = NULL, .n = 0 };
	ck_assert(!addr_set_contains(&empty, &a));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sg");
	TCase *tc = tcase_create("match");
	/* the equivalence test compiles thousands of rule sets: ample time
	 * on a loaded machine (ASan, parallel make check) */
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_match, 0, sizeof(mcases) / sizeof(mcases[0]));
	tcase_add_test(tc, test_egress_matches_destination);
	tcase_add_test(tc, test_untracked);
	tcase_add_test(tc, test_world_rule_preferred);
	tcase_add_test(tc, test_many_rules_index);
	tcase_add_test(tc, test_index_equals_naive_scan);
	tcase_add_test(tc, test_addr_set);
	tcase_add_test(tc, test_fragment);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
