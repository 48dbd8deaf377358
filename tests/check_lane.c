/* The worker lane (lane.c): a batch decided as the pipeline decides each
 * packet, unparsed packets and link-layer refusals in place, the refusal
 * capture hook called for refusals only, in the batch's order, and audit
 * mode accepting what the policy refuses, counting it, while the verdict
 * the hooks saw stays the policy's; the hooks in lane.h's order with the
 * real mirror and flow-log modules; lane_decide (offline: flow-log replay,
 * diff) deciding as lane_run does, a packet given parsed as its bytes. */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/capture.h"
#include "vpcfw/flowlog_read.h"
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

/* ---------------------------------------------------------------- hook order
 * The lane's calls into the mirror and the flow log go through these
 * wrappers (the test is linked with -Wl,--wrap=mirror_observe,
 * --wrap=flowlog_observe), which note each call and then call the real
 * module: the order is seen from outside, the work is the modules' own. */
enum hook { H_REFUSED, H_MIRROR, H_FLOWLOG };
struct event {
	enum hook hook;
	int dport;              /* which packet */
	bool accept;            /* the verdict the hook was given */
	uint64_t would_refuse;  /* the lane's counter when it ran */
};
static struct event events[32];
static int n_events;
static struct lane *hooked;     /* the lane under test, for its counter */

static void note(enum hook h, const struct packet *p, const struct verdict *v)
{
	ck_assert_int_lt(n_events, 32);
	events[n_events++] = (struct event){ h, p ? p->dport : -1, v->accept,
					     counter_get(&hooked->would_refuse) };
}

void __real_mirror_observe(struct mirror_worker *w, const struct packet *p,
			   const struct verdict *v, const uint8_t *ip, size_t caplen,
			   size_t wirelen, uint64_t wall_ns);
void __wrap_mirror_observe(struct mirror_worker *w, const struct packet *p,
			   const struct verdict *v, const uint8_t *ip, size_t caplen,
			   size_t wirelen, uint64_t wall_ns);
void __wrap_mirror_observe(struct mirror_worker *w, const struct packet *p,
			   const struct verdict *v, const uint8_t *ip, size_t caplen,
			   size_t wirelen, uint64_t wall_ns)
{
	note(H_MIRROR, p, v);
	__real_mirror_observe(w, p, v, ip, caplen, wirelen, wall_ns);
}

void __real_flowlog_observe(struct flowlog_worker *w, const struct packet *p,
			    const struct verdict *v, uint64_t wall_ns);
void __wrap_flowlog_observe(struct flowlog_worker *w, const struct packet *p,
			    const struct verdict *v, uint64_t wall_ns);
void __wrap_flowlog_observe(struct flowlog_worker *w, const struct packet *p,
			    const struct verdict *v, uint64_t wall_ns)
{
	note(H_FLOWLOG, p, v);
	__real_flowlog_observe(w, p, v, wall_ns);
}

static void refused_note(void *arg, int i, const struct packet *p, const struct verdict *v)
{
	(void)arg;
	(void)i;
	note(H_REFUSED, p, v);
}

/* the flow-log records read back with the project's reader */
static int fl_ports[8], fl_accepts, fl_records;

static int on_flow_record(const struct flr_record *r, const struct flr_pos *pos, void *arg)
{
	(void)pos;
	(void)arg;
	ck_assert_int_lt(fl_records, 8);
	fl_ports[fl_records++] = r->dport;
	fl_accepts += r->action == 1;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Audit mode, a flow log on eni-1 and a drop capture: an accepted SYN (port
 * 80), then two refused ones (22, 23) in one batch. */
START_TEST(test_hook_order)
{
	char dir[] = "/tmp/check_lane.XXXXXX", drops[64], fldir[64], *json;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(drops, sizeof(drops), "%s/drops.pcap", dir);
	snprintf(fldir, sizeof(fldir), "%s/fl", dir);
	ck_assert_int_eq(mkdir(fldir, 0700), 0);
	ck_assert_int_gt(asprintf(&json, "%.*s,\"FlowLogs\":[{\"FlowLogId\":\"fl-1\","
				  "\"ResourceId\":\"eni-1\",\"TrafficType\":\"ALL\"}],"
				  "\"Vpcfw\":{\"Region\":\"us-east-1\",\"DropCapture\":{\"Path\":\"%s\"}}}",
				  (int)strlen(CONF) - 1, CONF, drops), 0);
	struct policy *hp = tu_policy(json);
	free(json);
	struct flowlog_options fo = { .dir = fldir, .n_workers = 1, .threaded = false };
	struct flowlog *fl = flowlog_create(hp, &fo);
	ck_assert_ptr_nonnull(fl);
	struct mirror_options mo = { .n_workers = 1, .threaded = false };
	struct mirror *mr = mirror_create(hp, &mo);
	ck_assert_ptr_nonnull(mr);
	hooked = ln;
	ln->refused = refused_note;
	ln->flw = flowlog_worker(fl, 0);
	ln->mw = mirror_worker(mr, 0);

	uint8_t b[3][40];
	struct lane_packet in[3];
	struct lane_out out[3];
	const int ports[3] = { 80, 22, 23 };
	for (int i = 0; i < 3; i++) {
		syn(b[i], (uint16_t)ports[i]);
		in[i] = ip(b[i], 40);
		in[i].ts_ns = tu_sec(1);
	}
	struct lane_batch bt = { .pol = hp, .audit = true, .now_ns = tu_sec(1),
				 .wall_ns = tu_sec(1) };
	lane_run(ln, &bt, in, 3, out);

	/* per packet: refusal capture (refused only), mirror, flow log, then
	 * the counter, before the next packet's hooks; the capture and the
	 * mirror see the policy's verdict, the flow log what was done */
	static const struct event want[] = {
		{ H_MIRROR, 80, true, 0 },  { H_FLOWLOG, 80, true, 0 },
		{ H_REFUSED, 22, false, 0 }, { H_MIRROR, 22, false, 0 }, { H_FLOWLOG, 22, true, 0 },
		{ H_REFUSED, 23, false, 1 }, { H_MIRROR, 23, false, 1 }, { H_FLOWLOG, 23, true, 1 },
	};
	ck_assert_int_eq(n_events, 8);
	for (int i = 0; i < 8; i++) {
		ck_assert_msg(events[i].hook == want[i].hook && events[i].dport == want[i].dport &&
			      events[i].accept == want[i].accept &&
			      events[i].would_refuse == want[i].would_refuse,
			      "event %d: hook %d port %d accept %d counter %llu", i, events[i].hook,
			      events[i].dport, events[i].accept,
			      (unsigned long long)events[i].would_refuse);
	}
	ck_assert_uint_eq(counter_get(&ln->would_refuse), 2);
	for (int i = 0; i < 3; i++)
		ck_assert(out[i].accept);

	/* the modules did their work: the drop capture holds the two refused
	 * packets, the flow log three accepted records (audit: what was done) */
	struct mirror_stats ms;
	mirror_get_stats(mr, &ms);
	ck_assert_uint_eq(ms.captured, 2);
	ck_assert(mirror_destroy(mr));
	char err[256];
	struct capture *c = capture_open(drops, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	int records = 0;
	struct lane_packet rec;
	while (capture_next(c, &rec) == 1)
		records++;
	capture_close(c);
	ck_assert_int_eq(records, 2);

	flowlog_finish(fl);
	flowlog_destroy(fl);
	const char *paths[] = { fldir };
	struct flr_stats st;
	ck_assert(flr_read_paths(paths, 1, stderr, on_flow_record, NULL, &st));
	ck_assert_int_eq(fl_records, 3);
	ck_assert_int_eq(fl_accepts, 3);
	bool seen[3] = { false };
	for (int i = 0; i < fl_records; i++)
		for (int k = 0; k < 3; k++)
			seen[k] = seen[k] || fl_ports[i] == ports[k];
	ck_assert(seen[0] && seen[1] && seen[2]);

	ln->flw = NULL;
	ln->mw = NULL;
	policy_free(hp);
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}
END_TEST

/* lane_decide: the decision of lane_run without the hooks; a packet given
 * parsed is decided as its bytes are, alone or in a batch. */
START_TEST(test_decide_parsed)
{
	uint8_t a[40], b[40];
	struct packet pa, pb;
	struct lane_packet raw[2], parsed[2];
	struct lane_out o1[2], o2[2];
	struct seen s = { 0 };
	struct lane *l2 = malloc(sizeof(*l2));

	ck_assert_ptr_nonnull(l2);
	syn(a, 80);
	syn(b, 22);
	raw[0] = ip(a, 40);
	raw[1] = ip(b, 40);
	ck_assert_int_eq(lane_parse(&raw[0], &pa), PACKET_OK);
	ck_assert_int_eq(lane_parse(&raw[1], &pb), PACKET_OK);
	parsed[0] = (struct lane_packet){ .parsed = &pa };
	parsed[1] = (struct lane_packet){ .parsed = &pb };
	ln->refused = refused;
	ln->refused_arg = &s;
	struct lane_batch bt = { .pol = pol, .now_ns = tu_sec(1), .wall_ns = tu_sec(1) };
	lane_run(ln, &bt, raw, 2, o1);
	lane_init(l2, ct2, 0);
	lane_decide(l2, &bt, parsed, 2, o2);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(o1[i].v->accept, o2[i].v->accept);
		ck_assert_int_eq(o1[i].v->reason, o2[i].v->reason);
		ck_assert_int_eq(o1[i].v->stage, o2[i].v->stage);
		ck_assert(o1[i].p && o2[i].p);
	}
	ck_assert(o2[0].v->accept && !o2[1].v->accept);
	/* one alone: the caller's packet as it is */
	struct lane_packet one = { .parsed = &pa };
	lane_decide(l2, &bt, &one, 1, o2);
	ck_assert_ptr_eq(o2[0].p, &pa);
	ck_assert_int_eq(o2[0].v->reason, REASON_TRACKED_FLOW); /* the flow admitted above */
	/* none: malformed, as a packet without bytes */
	struct lane_packet none = { .data = NULL };
	lane_decide(l2, &bt, &none, 1, o2);
	ck_assert_ptr_null(o2[0].p);
	ck_assert_int_eq(o2[0].v->reason, REASON_MALFORMED_PACKET);
	/* lane_decide ran no hook: the capture saw lane_run's refusal only */
	ck_assert_int_eq(s.n, 1);
	struct pipeline_stats st;
	pipeline_get_stats(&l2->pl, &st);
	ck_assert_uint_eq(st.accepted, 2);
	ck_assert_uint_eq(st.rejected, 2);
	free(l2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lane");
	TCase *tc = tcase_create("lane");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_batch_as_pipeline);
	tcase_add_test(tc, test_audit);
	tcase_add_test(tc, test_hook_order);
	tcase_add_test(tc, test_decide_parsed);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
