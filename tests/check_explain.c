/* explain: its verdict is the pipeline's, and its stages agree with it, on
 * the shipped three-tier example: every packet that opens a flow in
 * conf/three-tier-traffic.json (the replay's expected verdicts). */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "vpcfw/load.h"
#include "vpcfw/explain.h"

static struct policy *pol;

static void load(void)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	json_t *msgs;

	snprintf(path, sizeof(path), "%s/conf/three-tier", top ? top : "..");
	const char *paths[] = { path };
	pol = policy_load_report(paths, 1, false, &msgs);
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
	/* SPEC §2 as implemented: the source/destination check first */
	static const enum stage order[] = { STAGE_SRCDST, STAGE_EXEMPT, STAGE_SG_EGRESS,
		STAGE_NACL_OUT, STAGE_NACL_IN, STAGE_SG_INGRESS, STAGE_CONNTRACK };
	struct packet p;
	struct explain ex;
	char err[200];

	ck_assert(explain_packet("tcp", "203.0.113.7", 40000, "10.0.1.10", 22, &p, err, sizeof(err)));
	ck_assert_int_eq(explain_run(pol, &p, NULL, NULL, &ex), 0);
	ck_assert_int_eq(ex.n_steps, 7);
	for (int i = 0; i < 7; i++)
		ck_assert_int_eq(ex.steps[i].stage, order[i]);
	ck_assert(!ex.v.accept);
	ck_assert_int_eq(ex.v.stage, STAGE_SG_INGRESS);
	ck_assert_int_eq(ex.steps[5].outcome, EXO_REFUSE);
	ck_assert_int_eq(ex.steps[6].outcome, EXO_NOT_REACHED);
	ck_assert_int_eq(ex.steps[3].outcome, EXO_SKIPPED); /* the internet has no NACL */
	ck_assert_int_eq(ex.steps[4].outcome, EXO_PASS);
	ck_assert_ptr_nonnull(strstr(ex.steps[4].what, "inbound rule"));
}
END_TEST

/* Packets that open flows: the example's traffic plus the cases where explain
 * once drifted from the pipeline (issue #11): forged exempt sources arriving
 * on a bound device, IPv6 link-local and multicast, reserved addresses. */
static int openers(struct packet *out, int max)
{
	const char *top = getenv("top_srcdir");
	static const char *const extra[][5] = {
		{ "tcp", "169.254.169.254", "10.0.2.20", "40000", "8080" },
		{ "tcp", "169.254.169.254", "10.0.3.10", "40000", "3306" },
		{ "tcp", "10.0.0.2", "10.0.3.10", "40000", "3306" },
		{ "tcp", "10.0.3.255", "10.0.3.10", "40000", "3306" },
		{ "tcp", "fd00:ec2::254", "2001:db8:1234:3::10", "40000", "3306" },
		{ "udp", "2001:db8:1234:1::99", "ff02::1", "40000", "547" },
		{ "udp", "fe80::1", "ff02::1", "546", "547" },
		{ "tcp", "10.0.1.10", "169.254.169.254", "40000", "80" },
		{ "udp", "10.0.1.10", "10.0.0.2", "40000", "53" },
		{ "tcp", "10.0.1.10", "10.0.2.20", "40000", "8080" },
		{ "tcp", "10.0.2.20", "10.0.3.10", "40000", "3306" },
		{ "tcp", "203.0.113.7", "10.0.1.10", "40000", "22" },
		{ "icmp", "203.0.113.7", "10.0.1.10", "8", "0" },
	};
	char path[4096], err[200];
	json_error_t e;
	size_t i;
	json_t *x;
	int n = 0;

	for (i = 0; i < sizeof(extra) / sizeof(extra[0]) && n < max; i++)
		ck_assert_msg(explain_packet(extra[i][0], extra[i][1], (unsigned)atoi(extra[i][3]),
					     extra[i][2], (unsigned)atoi(extra[i][4]), &out[n++], err,
					     sizeof(err)), "%s", err);
	snprintf(path, sizeof(path), "%s/conf/three-tier-traffic.json", top ? top : "..");
	json_t *traffic = json_load_file(path, 0, &e);
	ck_assert_msg(traffic != NULL, "%s: %s", path, e.text);
	json_array_foreach(traffic, i, x) {
		const char *proto = json_string_value(json_object_get(x, "proto"));
		bool icmp = proto && !strcmp(proto, "icmp");
		if (n == max)
			break;
		if (!explain_packet(proto, json_string_value(json_object_get(x, "src")),
				    (unsigned)json_integer_value(json_object_get(x, icmp ? "type" : "sport")),
				    json_string_value(json_object_get(x, "dst")),
				    (unsigned)json_integer_value(json_object_get(x, icmp ? "code" : "dport")),
				    &out[n], err, sizeof(err)))
			continue;
		n++;
	}
	json_decref(traffic);
	return n;
}

/* explain's verdict is the pipeline's for every binding of the packet's
 * devices (none, and every interface on either side), and its refusing step
 * is the verdict's stage. */
START_TEST(test_every_binding_agrees_with_pipeline)
{
	static struct packet pkts[128];
	int n = openers(pkts, 128), cases = 0;

	ck_assert_int_ge(n, 20);
	for (int i = 0; i < n; i++)
		for (int fi = -1; fi < pol->n_ifaces; fi++)
			for (int fo = -1; fo < pol->n_ifaces; fo++) {
				const struct iface *in = fi < 0 ? NULL : &pol->ifaces[fi];
				const struct iface *out = fo < 0 ? NULL : &pol->ifaces[fo];
				struct pkt_meta meta = { .in_iface = in, .out_iface = out,
							 .in_known = in != NULL };
				struct conntrack *ct = ct_create(16);
				struct pipeline pl;
				struct verdict v;
				struct explain ex;

				ck_assert_ptr_nonnull(ct);
				pipeline_init(&pl, ct);
				pipeline_eval(&pl, pol, &pkts[i], in || out ? &meta : NULL, 1, &v);
				ct_destroy(ct);
				ck_assert_int_eq(explain_run(pol, &pkts[i], in, out, &ex), 0);
				ck_assert_msg(ex.v.accept == v.accept && ex.v.stage == v.stage &&
					      ex.v.reason == v.reason,
					      "packet %d in %s out %s: explain %s/%s, pipeline %s/%s", i,
					      in ? in->id : "-", out ? out->id : "-",
					      stage_name(ex.v.stage), reason_name(ex.v.reason),
					      stage_name(v.stage), reason_name(v.reason));
				ck_assert_msg(ex.consistent, "packet %d in %s out %s: steps disagree",
					      i, in ? in->id : "-", out ? out->id : "-");
				ck_assert_int_eq(ex.n_steps, PIPELINE_STAGES);
				cases++;
			}
	ck_assert_int_ge(cases, n);
}
END_TEST

/* Every stage of enum stage that the pipeline can decide at is in its
 * order, and every stage up to the deciding one leaves a step in the trace
 * (unless the packet ended early, exempt or as a fragment): a stage added
 * to the pipeline without a trace entry fails here. */
START_TEST(test_every_stage_traced)
{
	static struct packet pkts[128];
	int n = openers(pkts, 128);
	bool seen[STAGE_COUNT] = { false };

	for (int st = STAGE_EXEMPT; st < STAGE_COUNT; st++) {
		bool in_order = false;
		for (int k = 0; k < PIPELINE_STAGES; k++)
			in_order = in_order || pipeline_stage_order[k] == (enum stage)st;
		ck_assert_msg(in_order, "stage %s is not in pipeline_stage_order", stage_name(st));
	}
	for (int i = 0; i < n; i++)
		for (int fi = -1; fi < pol->n_ifaces; fi++) {
			const struct iface *in = fi < 0 ? NULL : &pol->ifaces[fi];
			struct pkt_meta meta = { .in_iface = in, .in_known = in != NULL };
			struct conntrack *ct = ct_create(16);
			struct pipeline pl;
			struct pipeline_trace tr = { .n = 0 };
			struct verdict v;

			pipeline_init(&pl, ct);
			pl.trace = &tr;
			pipeline_eval(&pl, pol, &pkts[i], in ? &meta : NULL, 1, &v);
			ct_destroy(ct);
			ck_assert_int_gt(tr.n, 0);
			/* in order, no stage twice */
			int k = 0;
			for (int j = 0; j < tr.n; j++) {
				while (k < PIPELINE_STAGES && pipeline_stage_order[k] != tr.steps[j].stage)
					k++;

				ck_assert_msg(k < PIPELINE_STAGES, "packet %d: step %d (%s) out of order",
					      i, j, stage_name(tr.steps[j].stage));
				k++;
				seen[tr.steps[j].stage] = true;
			}
			/* a refusal ends the trace; an acceptance's deciding stage passed */
			const struct trace_step *last = &tr.steps[tr.n - 1];
			if (!v.accept) {
				ck_assert_int_eq(last->stage, v.stage);
				ck_assert_int_eq(last->outcome, TRACE_REFUSE);
			} else if (v.stage != STAGE_NONE) {
				bool passed = false;
				for (int j = 0; j < tr.n; j++)
					passed = passed || (tr.steps[j].stage == v.stage &&
							    tr.steps[j].outcome == TRACE_PASS);
				ck_assert_msg(passed, "packet %d: deciding stage %s not passed", i,
					      stage_name(v.stage));
			}
			for (int j = 0; j + 1 < tr.n; j++)
				ck_assert_int_ne(tr.steps[j].outcome, TRACE_REFUSE);
			if (v.stage == STAGE_EXEMPT || (v.accept && v.stage == STAGE_CONNTRACK &&
							v.reason == REASON_TRACKED_FLOW))
				continue;
			/* every stage before the deciding one recorded itself */
			for (int s = 0; s < PIPELINE_STAGES; s++) {
				if (v.stage != STAGE_NONE && pipeline_stage_order[s] == v.stage)
					break;
				bool found = false;
				for (int j = 0; j < tr.n; j++)
					found = found || tr.steps[j].stage == pipeline_stage_order[s];
				ck_assert_msg(found, "packet %d in %s: no trace step for %s (verdict %s)",
					      i, in ? in->id : "-", stage_name(pipeline_stage_order[s]),
					      stage_name(v.stage));
			}
		}
	for (int k = 0; k < PIPELINE_STAGES; k++)
		ck_assert_msg(seen[pipeline_stage_order[k]], "no packet of the corpus reached %s",
			      stage_name(pipeline_stage_order[k]));
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
	tcase_add_test(tc, test_every_binding_agrees_with_pipeline);
	tcase_add_test(tc, test_every_stage_traced);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
