/* explain: its verdict is the pipeline's, and its stages agree with it, on
 * the shipped three-tier example: every packet that opens a flow in
 * conf/three-tier-traffic.json (the replay's expected verdicts). */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "vpcfw/ctl.h"
#include "vpcfw/explain.h"

static struct policy *pol;

static void load(void)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	json_t *msgs;

	snprintf(path, sizeof(path), "%s/conf/three-tier", top ? top : "..");
	const char *paths[] = { path };
	pol = ctl_load_policy(paths, 1, false, &msgs);
	json_decref(msgs);
	ck_assert_ptr_nonnull(pol);
}

static void unload(void)
{
	policy_free(pol);
	policy_intern_reset();
}

START_TEST(test_traffic_openers_agree_with_replay)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	json_error_t e;
	size_t i;
	json_t *x;
	int n = 0;

	snprintf(path, sizeof(path), "%s/conf/three-tier-traffic.json", top ? top : "..");
	json_t *traffic = json_load_file(path, 0, &e);
	ck_assert_msg(traffic != NULL, "%s: %s", path, e.text);
	json_array_foreach(traffic, i, x) {
		const char *proto = json_string_value(json_object_get(x, "proto"));
		const char *flags = json_string_value(json_object_get(x, "flags"));
		bool icmp = proto && !strcmp(proto, "icmp");
		if (!(flags && !strcmp(flags, "S")) &&
		    !(icmp && json_integer_value(json_object_get(x, "type")) == 8))
			continue;
		struct packet p;
		struct explain ex;
		char err[200];
		ck_assert(explain_packet(proto, json_string_value(json_object_get(x, "src")),
			  (unsigned)json_integer_value(json_object_get(x, icmp ? "type" : "sport")),
			  json_string_value(json_object_get(x, "dst")),
			  (unsigned)json_integer_value(json_object_get(x, icmp ? "code" : "dport")),
			  &p, err, sizeof(err)));
		ck_assert_int_eq(explain_run(pol, &p, NULL, NULL, &ex), 0);
		ck_assert_msg(!strcmp(ex.v.accept ? "ACCEPT" : "REJECT",
				      json_string_value(json_object_get(x, "expect"))),
			      "packet %zu (%s)", i, json_string_value(json_object_get(x, "note")));
		ck_assert_msg(ex.consistent, "packet %zu: stages disagree with the verdict", i);
		n++;
	}
	ck_assert_int_ge(n, 12);
	json_decref(traffic);
}
END_TEST

START_TEST(test_stages_in_spec_order)
{
	static const enum stage order[] = { STAGE_EXEMPT, STAGE_SRCDST, STAGE_SG_EGRESS,
		STAGE_NACL_OUT, STAGE_NACL_IN, STAGE_SG_INGRESS };
	struct packet p;
	struct explain ex;
	char err[200];

	ck_assert(explain_packet("tcp", "203.0.113.7", 40000, "10.0.1.10", 22, &p, err, sizeof(err)));
	ck_assert_int_eq(explain_run(pol, &p, NULL, NULL, &ex), 0);
	ck_assert_int_eq(ex.n_steps, 6);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(ex.steps[i].stage, order[i]);
	ck_assert(!ex.v.accept);
	ck_assert_int_eq(ex.v.stage, STAGE_SG_INGRESS);
	ck_assert_int_eq(ex.steps[5].outcome, EXO_REFUSE);
	ck_assert_int_eq(ex.steps[3].outcome, EXO_SKIPPED); /* the internet has no NACL */
	ck_assert_int_eq(ex.steps[4].outcome, EXO_PASS);
	ck_assert_ptr_nonnull(strstr(ex.steps[4].what, "inbound rule"));
}
END_TEST

START_TEST(test_bad_input)
{
	struct packet p;
	char err[200];
	static const char *const bad[][3] = {
		{ "tcpx", "10.0.0.1", "10.0.0.2" }, { "tcp", "10.0.0.300", "10.0.0.2" },
		{ "tcp", "10.0.0.1", "2001:db8::1" }, { "256", "10.0.0.1", "10.0.0.2" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert(!explain_packet(bad[i][0], bad[i][1], 1, bad[i][2], 2, &p, err, sizeof(err)));
		ck_assert(err[0] != '\0');
	}
	ck_assert(!explain_packet("udp", "10.0.0.1", 70000, "10.0.0.2", 53, &p, err, sizeof(err)));
	ck_assert_ptr_null(explain_iface(pol, "eni-nope"));
	ck_assert_ptr_nonnull(explain_iface(pol, "eni-0000000000web01"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("explain");
	TCase *tc = tcase_create("explain");
	tcase_add_checked_fixture(tc, load, unload);
	tcase_add_test(tc, test_traffic_openers_agree_with_replay);
	tcase_add_test(tc, test_stages_in_spec_order);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
