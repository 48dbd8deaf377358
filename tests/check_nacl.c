/* Network ACL evaluation (SPEC §3; VPC user guide "vpc-network-acls"). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/nacl.h"

/* A NACL from compact entry descriptions. */
struct e {
	uint32_t num;
	bool egress, allow;
	int proto;
	const char *cidr;
	int pfrom, pto;         /* -1: no PortRange */
	int itype, icode;       /* -2: no IcmpTypeCode */
};

static struct nacl compile(struct arena *a, const struct e *es, int n)
{
	struct m_nacl *m = arena_calloc(a, 1, sizeof(*m));
	m->id = "acl-test";
	m->entries = arena_calloc(a, (size_t)n, sizeof(*m->entries));
	m->n_entries = n;
	for (int i = 0; i < n; i++) {
		struct m_nacl_entry *x = &m->entries[i];
		x->number = es[i].num;
		x->egress = es[i].egress;
		x->allow = es[i].allow;
		x->proto = es[i].proto;
		ck_assert(cidr_parse(es[i].cidr, &x->cidr, NULL));
		if (es[i].pfrom >= 0) {
			x->has_ports = true;
			x->port_from = (uint16_t)es[i].pfrom;
			x->port_to = (uint16_t)es[i].pto;
		}
		if (es[i].itype > -2) {
			x->has_icmp = true;
			x->icmp_type = es[i].itype;
			x->icmp_code = es[i].icode;
		}
	}
	struct nacl out;
	memset(&out, 0, sizeof(out));
	nacl_compile(a, m, &out);
	return out;
}

/* Entries deliberately out of order (scenario 02 of the shared set). */
static const struct e web[] = {
	{ 110, false, true, 6, "0.0.0.0/0", 1024, 65535, -2, 0 },
	{ 100, false, true, 6, "0.0.0.0/0", 22, 22, -2, 0 },
	{ 90, false, false, 6, "203.0.113.0/24", 22, 22, -2, 0 },
	{ 120, false, true, 1, "0.0.0.0/0", -1, 0, 8, -1 },      /* echo request, any code */
	{ 130, false, true, 58, "::/0", -1, 0, 128, 0 },
	{ 140, false, true, 58, "10.9.0.0/16", -1, 0, 128, 0 },  /* v4 cidr: every type */
	{ 150, false, true, 47, "0.0.0.0/0", 1, 2, -2, 0 },      /* GRE: ports ignored */
	{ 200, false, true, -1, "::/0", -1, 0, -2, 0 },
	{ 32767, false, false, -1, "0.0.0.0/0", -1, 0, -2, 0 },
	{ 100, true, true, -1, "0.0.0.0/0", -1, 0, -2, 0 },
	{ 90, true, false, 17, "198.51.100.0/24", 53, 53, -2, 0 },
};

struct pcase {
	const char *name;
	enum nacl_dir dir;
	const char *src, *dst;
	int proto, sport, dport, itype, icode;
	bool allow;
	int rule;
};

static const struct pcase pcases[] = {
	{ "deny 90 before allow 100", NACL_INBOUND, "203.0.113.5", "10.0.1.10", 6, 40000, 22, 0, 0, false, 90 },
	{ "allow 100", NACL_INBOUND, "198.51.100.20", "10.0.1.10", 6, 40000, 22, 0, 0, true, 100 },
	{ "port range inclusive low", NACL_INBOUND, "198.51.100.20", "10.0.1.10", 6, 1, 1024, 0, 0, true, 110 },
	{ "port range inclusive high", NACL_INBOUND, "198.51.100.20", "10.0.1.10", 6, 1, 65535, 0, 0, true, 110 },
	{ "no rule: implicit deny", NACL_INBOUND, "198.51.100.20", "10.0.1.10", 6, 1, 23, 0, 0, false, -1 },
	{ "tcp rule does not match udp", NACL_INBOUND, "198.51.100.20", "10.0.1.10", 17, 1, 2000, 0, 0, false, -1 },
	{ "inbound matches the destination port, not the source", NACL_INBOUND, "198.51.100.20", "10.0.1.10", 6, 22, 23, 0, 0, false, -1 },
	{ "icmp type 8 any code", NACL_INBOUND, "192.0.2.1", "10.0.1.10", 1, 0, 0, 8, 3, true, 120 },
	{ "icmp other type", NACL_INBOUND, "192.0.2.1", "10.0.1.10", 1, 0, 0, 0, 0, false, -1 },
	{ "icmpv6 128/0", NACL_INBOUND, "2001:db8::1", "2001:db8:1::10", 58, 0, 0, 128, 0, true, 130 },
	{ "icmpv6 129 falls to 200 (all, ::/0)", NACL_INBOUND, "2001:db8::1", "2001:db8:1::10", 58, 0, 0, 129, 0, true, 200 },
	{ "ipv4 rules never match ipv6", NACL_INBOUND, "2001:db8::1", "2001:db8:1::10", 6, 1, 22, 0, 0, true, 200 },
	{ "ipv6 rules never match ipv4: ends at *", NACL_INBOUND, "192.0.2.1", "10.0.1.10", 132, 1, 22, 0, 0, false, -1 },
	/* SPEC §3: 58 (ICMPv6) with an IPv4 CIDR matches every type (here: an
	 * IPv4 packet carrying protocol 58, of any type) */
	{ "icmpv6 rule with an ipv4 cidr: every type", NACL_INBOUND, "10.9.1.1", "10.0.1.10", 58, 0, 0, 3, 0, true, 140 },
	{ "protocol 47 ignores ports", NACL_INBOUND, "192.0.2.1", "10.0.1.10", 47, 0, 0, 0, 0, true, 150 },
	{ "outbound matches the destination address", NACL_OUTBOUND, "10.0.1.10", "198.51.100.9", 17, 1000, 53, 0, 0, false, 90 },
	{ "outbound other destination", NACL_OUTBOUND, "10.0.1.10", "198.51.101.9", 17, 1000, 53, 0, 0, true, 100 },
	{ "outbound ipv6: no v6 rule -> *", NACL_OUTBOUND, "2001:db8:1::10", "2001:db8::1", 6, 1, 80, 0, 0, false, -1 },
};

START_TEST(test_eval)
{
	const struct pcase *c = &pcases[_i];
	struct arena a;
	arena_init(&a);
	struct nacl n = compile(&a, web, sizeof(web) / sizeof(web[0]));
	struct packet p = c->proto == 1 || c->proto == 58
				  ? tu_icmp(c->src, c->dst, c->itype, c->icode, 1)
				  : tu_pkt(c->src, c->dst, c->proto, c->sport, c->dport, TCP_SYN);
	if (c->proto != 1 && c->proto != 58 && c->proto != 6 && c->proto != 17)
		p.flags = 0;
	p.proto = (uint8_t)c->proto;
	const struct nacl_rule *r = (const struct nacl_rule *)1;
	bool allow = nacl_eval(&n, c->dir, &p, &r);
	ck_assert_msg(allow == c->allow, "%s: allow=%d", c->name, allow);
	if (c->rule < 0)
		ck_assert_msg(r == NULL, "%s: expected the * rule, got %u", c->name, r ? r->number : 0);
	else
		ck_assert_msg(r && (int)r->number == c->rule, "%s: rule %d expected, got %d", c->name,
			      c->rule, r ? (int)r->number : -1);
	arena_free(&a);
}
END_TEST

START_TEST(test_star_rules_are_implicit)
{
	/* 32767/32768 are the API's listing of '*': dropped at compile time */
	struct arena a;
	arena_init(&a);
	struct nacl n = compile(&a, web, sizeof(web) / sizeof(web[0]));
	for (int i = 0; i < n.lists[NACL_INBOUND][0].n; i++)
		ck_assert_uint_lt(n.lists[NACL_INBOUND][0].rules[i].number, 32767);
	/* sorted */
	for (int i = 1; i < n.lists[NACL_INBOUND][0].n; i++)
		ck_assert_uint_lt(n.lists[NACL_INBOUND][0].rules[i - 1].number,
				  n.lists[NACL_INBOUND][0].rules[i].number);
	arena_free(&a);
}
END_TEST

START_TEST(test_empty_nacl_denies_everything)
{
	struct arena a;
	arena_init(&a);
	struct nacl n = compile(&a, NULL, 0);
	struct packet p = tu_pkt("192.0.2.1", "10.0.1.10", 6, 1, 80, TCP_SYN);
	const struct nacl_rule *r;
	ck_assert(!nacl_eval(&n, NACL_INBOUND, &p, &r));
	ck_assert(!nacl_eval(&n, NACL_OUTBOUND, &p, &r));
	arena_free(&a);
}
END_TEST

/* A non-first fragment has no ports: a deny rule naming ports cannot match
 * it, an allow rule whose address and protocol match admits it (RFC 1858). */
START_TEST(test_fragment_without_ports)
{
	static const struct e es[] = {
		{ 90, false, false, 6, "0.0.0.0/0", 22, 22, -2, 0 },
		{ 100, false, true, 6, "192.0.2.0/24", 80, 80, -2, 0 },
		{ 110, false, false, 6, "0.0.0.0/0", -1, 0, -2, 0 },
	};
	struct arena a;
	arena_init(&a);
	struct nacl n = compile(&a, es, 3);
	struct packet p = tu_pkt("192.0.2.1", "10.0.1.10", 6, 0, 0, 0);
	p.flags = PKT_F_FRAGMENT;
	const struct nacl_rule *r;
	ck_assert(nacl_eval(&n, NACL_INBOUND, &p, &r));
	ck_assert_uint_eq(r->number, 100);
	/* from elsewhere: rule 100's address does not match; 110 (no ports) denies */
	p = tu_pkt("198.51.100.1", "10.0.1.10", 6, 0, 0, 0);
	p.flags = PKT_F_FRAGMENT;
	ck_assert(!nacl_eval(&n, NACL_INBOUND, &p, &r));
	ck_assert_uint_eq(r->number, 110);
	arena_free(&a);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nacl");
	TCase *tc = tcase_create("eval");
	tcase_add_loop_test(tc, test_eval, 0, sizeof(pcases) / sizeof(pcases[0]));
	tcase_add_test(tc, test_star_rules_are_implicit);
	tcase_add_test(tc, test_empty_nacl_denies_everything);
	tcase_add_test(tc, test_fragment_without_ports);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
