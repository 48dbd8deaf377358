/* The worker lane (lane.c): a batch decided as the pipeline decides each
 * packet, unparsed packets and link-layer refusals in place, the refusal
 * capture hook called for refusals only, in the batch's order, and audit
 * mode accepting what the policy refuses, counting it, while the verdict
 * the hooks saw stays the policy's. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/lane.h"

/* one subnet, one interface 10.0.1.10 admitting TCP 80 from anywhere */
static const char *const CONF =
	"{\"Vpcs\":[{\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.0.0/16\"}],"
	"\"Subnets\":[{\"SubnetId\":\"subnet-1\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.1.0/24\"}],"
	"\"SecurityGroups\":[{\"GroupId\":\"sg-1\",\"IpPermissions\":["
	"  {\"IpProtocol\":\"tcp\",\"FromPort\":80,\"ToPort\":80,\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}],"
	"  \"IpPermissionsEgress\":[]}],"
	"\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-1\",\"SubnetId\":\"subnet-1\","
	"  \"PrivateIpAddress\":\"10.0.1.10\",\"Groups\":[{\"GroupId\":\"sg-1\"}]}]}";

static struct policy *pol;
static struct conntrack *ct, *ct2;
static struct lane *ln;

/* an IPv4 TCP SYN from 203.0.113.7:40000 to 10.0.1.10:dport */
static void syn(uint8_t b[40], uint16_t dport)
{
	static const uint8_t h[40] = {
		0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 203, 0, 113, 7, 10, 0, 1, 10,
		0x9c, 0x40, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
	};
	memcpy(b, h, 40);
	b[22] = (uint8_t)(dport >> 8);
	b[23] = (uint8_t)dport;
}

struct seen {
	int n, idx[8];
	bool parsed[8];
};

static void refused(void *arg, int i, const struct packet *p, const struct verdict *v)
{
	struct seen *s = arg;
	ck_assert(!v->accept);
	s->parsed[s->n] = p != NULL;
	s->idx[s->n++] = i;
}

static void setup(void)
{
	pol = tu_policy(CONF);
	ct = ct_create(1024);
	ct2 = ct_create(1024);
	ln = malloc(sizeof(*ln));
	ck_assert_ptr_nonnull(ln);
	lane_init(ln, ct, 0);
}

static void teardown(void)
{
	free(ln);
	ct_destroy(ct);
	ct_destroy(ct2);
	policy_free(pol);
	policy_intern_reset();
}

static struct lane_packet ip(const uint8_t *b, size_t len)
{
	return (struct lane_packet){ .data = b, .caplen = len, .wirelen = len, .link = PACKET_OK };
}

START_TEST(test_batch_as_pipeline)
{
	uint8_t a[40], b[40], c[40], junk[3] = { 0x45, 0, 0 };
	struct seen s = { 0 };
	struct lane_packet in[5];
	struct lane_out out[5];

	syn(a, 80);
	syn(b, 22);
	syn(c, 80);
	c[16] = 10, c[17] = 0, c[18] = 1, c[19] = 10; /* to itself: 10.0.1.10 -> 10.0.1.10 */
	in[0] = ip(a, 40);
	in[1] = ip(b, 40);
	in[2] = ip(junk, 3);                            /* truncated */
	in[3] = ip(a, 40);
	in[3].link = PACKET_NOT_IP;                     /* the link layer says: not IP */
	in[4] = ip(a, 40);
	in[4].family = FAMILY_V6;                       /* said IPv6, is IPv4 */
	ln->refused = refused;
	ln->refused_arg = &s;
	struct lane_batch bt = { .pol = pol, .now_ns = tu_sec(1), .wall_ns = tu_sec(1) };
	lane_run(ln, &bt, in, 5, out);

	ck_assert(out[0].accept && out[0].p && out[0].v->accept);
	ck_assert(!out[1].accept && out[1].p);
	ck_assert_int_eq(out[1].v->reason, REASON_ENI_SG_RULES_MISMATCH);
	ck_assert_ptr_null(out[2].p);
	ck_assert_int_eq(out[2].v->reason, REASON_MALFORMED_PACKET);
	ck_assert_ptr_null(out[3].p);
	ck_assert_int_eq(out[3].v->reason, REASON_NOT_IP);
	ck_assert(out[3].accept);                       /* not IP: not ours to refuse */
	ck_assert_ptr_null(out[4].p);
	ck_assert_int_eq(out[4].v->reason, REASON_MALFORMED_PACKET);
	/* the refusal capture: every refusal, in the batch's order */
	ck_assert_int_eq(s.n, 3);
	ck_assert_int_eq(s.idx[0], 1);
	ck_assert(s.parsed[0]);
	ck_assert_int_eq(s.idx[1], 2);
	ck_assert_int_eq(s.idx[2], 4);
	ck_assert(!s.parsed[1] && !s.parsed[2]);

	/* the same packets one by one through the pipeline: the same verdicts */
	struct pipeline pl;
	pipeline_init(&pl, ct2);
	for (int i = 0; i < 2; i++) {
		struct packet p;
		struct verdict v;
		ck_assert_int_eq(packet_parse_ip(in[i].data, 40, 40, &p), PACKET_OK);
		pipeline_eval(&pl, pol, &p, NULL, tu_sec(1), &v);
		ck_assert_int_eq(v.accept, out[i].v->accept);
		ck_assert_int_eq(v.reason, out[i].v->reason);
		ck_assert_int_eq(v.stage, out[i].v->stage);
	}
	struct pipeline_stats st;
	pipeline_get_stats(&ln->pl, &st);
	ck_assert_uint_eq(st.accepted, 2);
	ck_assert_uint_eq(st.rejected, 3);
	ck_assert_uint_eq(counter_get(&ln->would_refuse), 0);
}
END_TEST

START_TEST(test_audit)
{
	uint8_t a[40];
	struct seen s = { 0 };
	struct lane_packet in[1];
	struct lane_out out[1];

	syn(a, 22);
	in[0] = ip(a, 40);
	ln->refused = refused;
	ln->refused_arg = &s;
	struct lane_batch bt = { .pol = pol, .audit = true, .now_ns = tu_sec(1),
				 .wall_ns = tu_sec(1) };
	lane_run(ln, &bt, in, 1, out);
	/* enforced: accepted; the hooks before the flow log saw the refusal */
	ck_assert(out[0].accept);
	ck_assert(!out[0].v->accept);
	ck_assert_int_eq(s.n, 1);
	ck_assert_uint_eq(counter_get(&ln->would_refuse), 1);
	syn(a, 80);
	lane_run(ln, &bt, in, 1, out);
	ck_assert(out[0].accept && out[0].v->accept);
	ck_assert_uint_eq(counter_get(&ln->would_refuse), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lane");
	TCase *tc = tcase_create("lane");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_batch_as_pipeline);
	tcase_add_test(tc, test_audit);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
