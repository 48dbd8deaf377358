#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "vpcfw/addr.h"

static const struct {
	const char *in;
	bool ok;
	const char *canon;  /* formatted back */
	bool host_bits;
} cidr_cases[] = {
	{ "10.0.1.0/24", true, "10.0.1.0/24", false },
	{ "10.0.1.7/24", true, "10.0.1.0/24", true },   /* SPEC §3: canonicalised */
	{ "0.0.0.0/0", true, "0.0.0.0/0", false },
	{ "192.0.2.1/32", true, "192.0.2.1/32", false },
	{ "10.0.1.0/33", false, NULL, false },
	{ "10.0.1.0/-1", false, NULL, false },
	{ "10.0.1.0", false, NULL, false },
	{ "10.0.1/24", false, NULL, false },
	{ "10.0.1.0/24x", false, NULL, false },
	{ "10.0.1.0/", false, NULL, false },
	{ "256.0.0.0/8", false, NULL, false },
	{ "::/0", true, "::/0", false },
	{ "2001:db8:1234:1::/64", true, "2001:db8:1234:1::/64", false },
	{ "2001:db8:1234:1::5/64", true, "2001:db8:1234:1::/64", true },
	{ "2001:db8::/129", false, NULL, false },
	{ "2001:db8:::/64", false, NULL, false },
	{ "", false, NULL, false },
};

START_TEST(test_cidr_parse)
{
	struct cidr c;
	bool hb = false;
	char buf[CIDR_STRLEN];
	bool ok = cidr_parse(cidr_cases[_i].in, &c, &hb);
	ck_assert_msg(ok == cidr_cases[_i].ok, "%s", cidr_cases[_i].in);
	if (ok) {
		ck_assert_str_eq(cidr_format(&c, buf), cidr_cases[_i].canon);
		ck_assert_int_eq(hb, cidr_cases[_i].host_bits);
	}
}
END_TEST

static const struct {
	const char *cidr, *addr;
	bool in;
} contain_cases[] = {
	{ "10.0.1.0/24", "10.0.1.0", true },
	{ "10.0.1.0/24", "10.0.1.255", true },
	{ "10.0.1.0/24", "10.0.2.0", false },
	{ "10.0.1.0/24", "10.0.0.255", false },
	{ "0.0.0.0/0", "203.0.113.7", true },
	{ "0.0.0.0/0", "2001:db8::1", false },   /* IPv4 never matches IPv6 */
	{ "::/0", "2001:db8::1", true },
	{ "2001:db8:1234:1::/64", "2001:db8:1234:1:ffff:ffff:ffff:ffff", true },
	{ "2001:db8:1234:1::/64", "2001:db8:1234:2::", false },
	{ "192.0.2.1/32", "192.0.2.1", true },
	{ "192.0.2.1/32", "192.0.2.2", false },
	{ "2001:db8::/127", "2001:db8::1", true },
	{ "2001:db8::/127", "2001:db8::2", false },
};

START_TEST(test_cidr_contains)
{
	struct cidr c;
	struct ip_addr a;
	ck_assert(cidr_parse(contain_cases[_i].cidr, &c, NULL));
	ck_assert(addr_parse(contain_cases[_i].addr, &a, NULL));
	ck_assert_msg(cidr_contains(&c, &a) == contain_cases[_i].in, "%s in %s",
		      contain_cases[_i].addr, contain_cases[_i].cidr);
}
END_TEST

START_TEST(test_addr_roundtrip)
{
	static const char *const in[] = { "10.0.1.10", "0.0.0.0", "255.255.255.255", "::1",
					  "2001:db8:1234:1::10", "fe80::1", "fd00:ec2::254" };
	char buf[ADDR_STRLEN];
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct ip_addr a;
		int fam;
		ck_assert(addr_parse(in[i], &a, &fam));
		ck_assert_int_eq(addr_family(&a), fam);
		ck_assert_str_eq(addr_format(&a, fam, buf), in[i]);
	}
	struct ip_addr a;
	ck_assert(!addr_parse("10.0.1", &a, NULL));
	ck_assert(!addr_parse("1.2.3.4.5", &a, NULL));
	ck_assert(!addr_parse("gggg::1", &a, NULL));
	ck_assert(!addr_parse(NULL, &a, NULL));
}
END_TEST

START_TEST(test_last_and_add)
{
	struct cidr c;
	char buf[ADDR_STRLEN];
	ck_assert(cidr_parse("10.0.1.0/24", &c, NULL));
	struct ip_addr l = cidr_last(&c);
	ck_assert_str_eq(addr_format(&l, FAMILY_V4, buf), "10.0.1.255");
	struct ip_addr n = addr_add(&c.net, 3);
	ck_assert_str_eq(addr_format(&n, FAMILY_V4, buf), "10.0.1.3");
	ck_assert(cidr_parse("2001:db8::/64", &c, NULL));
	l = cidr_last(&c);
	ck_assert_str_eq(addr_format(&l, FAMILY_V6, buf), "2001:db8::ffff:ffff:ffff:ffff");
	/* carry into the high word */
	struct ip_addr x = { 1, ~0ULL };
	x = addr_add(&x, 1);
	ck_assert(x.hi == 2 && x.lo == 0);
}
END_TEST

/* a group's members: sorted hosts and sorted disjoint delegated blocks */
START_TEST(test_addr_set)
{
	struct ip_addr hosts[3], a;
	struct cidr blocks[2];
	ck_assert(addr_parse("10.0.1.5", &hosts[0], NULL));
	ck_assert(addr_parse("10.0.1.9", &hosts[1], NULL));
	ck_assert(addr_parse("10.0.2.1", &hosts[2], NULL));
	ck_assert(cidr_parse("10.0.8.0/28", &blocks[0], NULL));
	ck_assert(cidr_parse("10.0.9.0/28", &blocks[1], NULL));
	struct addr_set s = { hosts, 3, blocks, 2 };
	static const struct { const char *a; bool in; } cases[] = {
		{ "10.0.1.5", true }, { "10.0.1.9", true }, { "10.0.2.1", true },
		{ "10.0.1.6", false }, { "10.0.0.1", false }, { "10.0.3.1", false },
		{ "10.0.8.0", true }, { "10.0.8.15", true }, { "10.0.8.16", false },
		{ "10.0.9.7", true }, { "10.0.9.16", false }, { "10.0.7.255", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert(addr_parse(cases[i].a, &a, NULL));
		ck_assert_msg(addr_set_contains(&s, &a) == cases[i].in, "%s", cases[i].a);
	}
	struct addr_set empty = { 0 };
	ck_assert(!addr_set_contains(&empty, &a));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("addr");
	TCase *tc = tcase_create("core");
	tcase_add_loop_test(tc, test_cidr_parse, 0, sizeof(cidr_cases) / sizeof(cidr_cases[0]));
	tcase_add_loop_test(tc, test_cidr_contains, 0,
			    sizeof(contain_cases) / sizeof(contain_cases[0]));
	tcase_add_test(tc, test_addr_roundtrip);
	tcase_add_test(tc, test_last_and_add);
	tcase_add_test(tc, test_addr_set);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
