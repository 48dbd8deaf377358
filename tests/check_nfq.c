/* The parts of the live daemon that need neither root nor a kernel queue:
 * the queue list of -q / Vpcfw.Queues, and systemd notifications. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <endian.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nfnetlink_queue.h>

#include "checkmain.h"
#include "vpcfw/nfq.h"
#include "vpcfw/notify.h"

static const struct {
	const char *in;
	int n;                  /* -1: refused */
	uint16_t want[8];
} queue_cases[] = {
	{ "0", 1, { 0 } },
	{ "3", 1, { 3 } },
	{ "0-3", 4, { 0, 1, 2, 3 } },
	{ "0,2", 2, { 0, 2 } },
	{ "5-6,0", 3, { 0, 5, 6 } },            /* sorted */
	{ "1,1,0-1", 2, { 0, 1 } },             /* duplicates once */
	{ "65535", 1, { 65535 } },
	{ "65536", -1, { 0 } },
	{ "3-1", -1, { 0 } },
	{ "", -1, { 0 } },
	{ "0,", -1, { 0 } },
	{ ",0", -1, { 0 } },
	{ "0-", -1, { 0 } },
	{ "-1", -1, { 0 } },
	{ "a", -1, { 0 } },
	{ "0 1", -1, { 0 } },
	{ "0-9", -1, { 0 } },                   /* more than the 8 asked for */
};

START_TEST(test_parse_queues)
{
	uint16_t out[8];
	int n = nfqueue_parse_queues(queue_cases[_i].in, out, 8);

	ck_assert_msg(n == queue_cases[_i].n, "'%s': %d queues, want %d", queue_cases[_i].in, n,
		      queue_cases[_i].n);
	for (int i = 0; i < n; i++)
		ck_assert_uint_eq(out[i], queue_cases[_i].want[i]);
}
END_TEST

START_TEST(test_parse_queues_null)
{
	uint16_t out[1];
	ck_assert_int_eq(nfqueue_parse_queues(NULL, out, 1), -1);
}
END_TEST

/* ---- NFQA_CT and the verdict messages (offload, issue #16) */

/* A packet message as the kernel sends it with NFQA_CFG_F_CONNTRACK:
 * packet header, the conntrack entry (id, status, mark, counters both
 * ways), its ctinfo and 20 bytes of payload.  ct false: no NFQA_CT. */
static size_t packet_msg(uint8_t *buf, uint32_t id, bool ct, uint32_t mark, bool counters)
{
	static const uint8_t payload[20] = { 0x45 };
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = AF_INET;
	g->res_id = htons(0);
	struct nfqnl_msg_packet_hdr ph = { .packet_id = htonl(id), .hw_protocol = htons(0x0800),
					   .hook = 2 };
	mnl_attr_put(nlh, NFQA_PACKET_HDR, sizeof(ph), &ph);
	if (mark)       /* the packet's own mark, as the kernel sends it when set */
		mnl_attr_put_u32(nlh, NFQA_MARK, htonl(mark ^ 0x5));
	if (ct) {
		struct nlattr *n = mnl_attr_nest_start(nlh, NFQA_CT);
		struct nlattr *t = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG);
		mnl_attr_nest_end(nlh, t);
		mnl_attr_put_u32(nlh, CTA_ID, htonl(0xdeadbeef));
		mnl_attr_put_u32(nlh, CTA_STATUS, htonl(0x0e)); /* SEEN_REPLY|ASSURED|CONFIRMED */
		mnl_attr_put_u32(nlh, CTA_MARK, htonl(mark));
		if (counters) {
			struct nlattr *c = mnl_attr_nest_start(nlh, CTA_COUNTERS_ORIG);
			mnl_attr_put_u64(nlh, CTA_COUNTERS_PACKETS, htobe64(7));
			mnl_attr_put_u64(nlh, CTA_COUNTERS_BYTES, htobe64(5000000000ULL));
			mnl_attr_nest_end(nlh, c);
			c = mnl_attr_nest_start(nlh, CTA_COUNTERS_REPLY);
			mnl_attr_put_u64(nlh, CTA_COUNTERS_PACKETS, htobe64(3));
			mnl_attr_put_u64(nlh, CTA_COUNTERS_BYTES, htobe64(180));
			mnl_attr_nest_end(nlh, c);
		}
		mnl_attr_nest_end(nlh, n);
		mnl_attr_put_u32(nlh, NFQA_CT_INFO, htonl(3)); /* IP_CT_ESTABLISHED_REPLY */
	}
	mnl_attr_put(nlh, NFQA_PAYLOAD, sizeof(payload), payload);
	return nlh->nlmsg_len;
}

START_TEST(test_ct_parsed)
{
	uint8_t buf[1024];
	struct nfqueue *q = nfqueue_detached();
	size_t n = packet_msg(buf, 42, true, 0x40000001, true);

	ck_assert_int_eq(nfqueue_parse_datagram(q, buf, n, false), 1);
	const struct nfqueue_packet *p = nfqueue_packet(q, 0);
	ck_assert_uint_eq(p->id, 42);
	ck_assert_uint_eq(p->caplen, 20);
	ck_assert(p->ct.present);
	ck_assert_uint_eq(p->ct.id, 0xdeadbeef);
	ck_assert_uint_eq(p->ct.status, 0x0e);
	ck_assert_uint_eq(p->ct.mark, 0x40000001);
	ck_assert_uint_eq(p->mark, 0x40000004);
	ck_assert_uint_eq(p->ct.info, 3);
	ck_assert(p->ct.has_counters);
	ck_assert_uint_eq(p->ct.orig_packets, 7);
	ck_assert_uint_eq(p->ct.orig_bytes, 5000000000ULL);
	ck_assert_uint_eq(p->ct.reply_packets, 3);
	ck_assert_uint_eq(p->ct.reply_bytes, 180);
	nfqueue_close(q);
}
END_TEST

/* Without nf_conntrack_acct no counters; without NFQA_CT nothing at all. */
START_TEST(test_ct_absent)
{
	uint8_t buf[2048];
	struct nfqueue *q = nfqueue_detached();
	size_t n = packet_msg(buf, 1, true, 0, false);
	n += packet_msg(buf + n, 2, false, 0, false);

	ck_assert_int_eq(nfqueue_parse_datagram(q, buf, n, false), 2);
	const struct nfqueue_packet *p = nfqueue_packet(q, 0);
	ck_assert(p->ct.present);
	ck_assert(!p->ct.has_counters);
	ck_assert_uint_eq(p->ct.mark, 0);
	ck_assert_uint_eq(p->ct.orig_packets, 0);
	ck_assert_uint_eq(p->mark, 0);
	p = nfqueue_packet(q, 1);
	ck_assert_uint_eq(p->id, 2);
	ck_assert(!p->ct.present);
	ck_assert_uint_eq(p->ct.id, 0);
	nfqueue_close(q);
}
END_TEST

/* A nested attribute claiming more than its parent holds is cut at the
 * parent's end (fuzzing covers the rest). */
START_TEST(test_ct_bounded)
{
	uint8_t buf[1024];
	struct nfqueue *q = nfqueue_detached();
	size_t n = packet_msg(buf, 9, true, 5, true);
	/* find NFQA_CT and make its first child claim 0xff00 bytes */
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	struct nlattr *a;
	bool found = false;
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) == NFQA_CT) {
			struct nlattr *c = mnl_attr_get_payload(a);
			c->nla_len = 0xff00;
			found = true;
		}
	}
	ck_assert(found);
	ck_assert_int_eq(nfqueue_parse_datagram(q, buf, n, false), 1);
	const struct nfqueue_packet *p = nfqueue_packet(q, 0);
	ck_assert(p->ct.present);
	ck_assert_uint_eq(p->ct.id, 0); /* nothing read past the bad child */
	ck_assert_uint_eq(p->ct.mark, 0);
	nfqueue_close(q);
}
END_TEST

struct vmsg {
	uint16_t type;          /* NFQNL_MSG_VERDICT or _BATCH */
	uint32_t id, verdict;
	bool has_mark;          /* NFQA_MARK */
	uint32_t mark;
};

static int read_verdicts(const uint8_t *buf, size_t len, struct vmsg *out, int max)
{
	int n = 0, rest = (int)len;

	for (const struct nlmsghdr *nlh = (const void *)buf; mnl_nlmsg_ok(nlh, rest);
	     nlh = mnl_nlmsg_next(nlh, &rest)) {
		ck_assert_int_lt(n, max);
		struct vmsg *m = &out[n++];
		memset(m, 0, sizeof(*m));
		ck_assert_uint_eq(NFNL_SUBSYS_ID(nlh->nlmsg_type), NFNL_SUBSYS_QUEUE);
		m->type = NFNL_MSG_TYPE(nlh->nlmsg_type);
		const struct nlattr *a;
		mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
			if (mnl_attr_get_type(a) == NFQA_VERDICT_HDR) {
				const struct nfqnl_msg_verdict_hdr *vh = mnl_attr_get_payload(a);
				m->id = ntohl(vh->id);
				m->verdict = ntohl(vh->verdict);
			} else if (mnl_attr_get_type(a) == NFQA_MARK) {
				m->has_mark = true;
				m->mark = ntohl(mnl_attr_get_u32(a));
			} else {
				ck_abort_msg("unexpected attribute %u", mnl_attr_get_type(a));
			}
		}
	}
	ck_assert_int_eq(rest, 0);
	return n;
}

/* Runs of equal verdicts share a batch message; a marked ACCEPT has its
 * own NFQNL_MSG_VERDICT with NFQA_MARK, in id order; a mark on a DROP is
 * not sent. */
START_TEST(test_verdict_messages)
{
	uint8_t buf[8192];
	size_t n = 0, len;
	struct nfqueue *q = nfqueue_detached();
	struct vmsg m[16];

	for (uint32_t id = 11; id <= 18; id++)
		n += packet_msg(buf + n, id, true, 0, false);
	ck_assert_int_eq(nfqueue_parse_datagram(q, buf, n, false), 8);
	const uint32_t v[8] = { NF_ACCEPT, NF_ACCEPT, NF_ACCEPT, NF_ACCEPT, NF_DROP, NF_DROP,
				NF_ACCEPT, NF_ACCEPT };
	for (int i = 0; i < 8; i++)
		nfqueue_set_verdict(q, i, v[i]);
	nfqueue_set_mark(q, 2, 0x40000000);     /* id 13, in a run of ACCEPTs */
	nfqueue_set_mark(q, 3, 0x40000003);     /* id 14, right after it */
	nfqueue_set_mark(q, 5, 0x40000000);     /* id 16, a DROP: no mark */
	nfqueue_set_mark(q, 7, 0);              /* id 18, the last: mark 0 is a mark */
	ck_assert_int_eq(nfqueue_send_verdicts(q), 0);
	const uint8_t *out = nfqueue_last_verdicts(q, &len);
	int k = read_verdicts(out, len, m, 16);
	const struct vmsg want[] = {
		{ NFQNL_MSG_VERDICT_BATCH, 12, NF_ACCEPT, false, 0 },
		{ NFQNL_MSG_VERDICT, 13, NF_ACCEPT, true, 0x40000000 },
		{ NFQNL_MSG_VERDICT, 14, NF_ACCEPT, true, 0x40000003 },
		{ NFQNL_MSG_VERDICT_BATCH, 16, NF_DROP, false, 0 },
		{ NFQNL_MSG_VERDICT_BATCH, 17, NF_ACCEPT, false, 0 },
		{ NFQNL_MSG_VERDICT, 18, NF_ACCEPT, true, 0 },
	};
	ck_assert_int_eq(k, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < k; i++) {
		ck_assert_msg(m[i].type == want[i].type && m[i].id == want[i].id &&
			      m[i].verdict == want[i].verdict && m[i].has_mark == want[i].has_mark &&
			      m[i].mark == want[i].mark,
			      "message %d: type %u id %u verdict %u mark %d %#x", i, m[i].type,
			      m[i].id, m[i].verdict, m[i].has_mark, m[i].mark);
	}
	struct nfqueue_stats st;
	nfqueue_get_stats(q, &st);
	ck_assert_uint_eq(st.accepted, 6);
	ck_assert_uint_eq(st.dropped, 2);
	ck_assert_uint_eq(st.mark_verdicts, 3);
	ck_assert_uint_eq(st.verdict_msgs, 6);

	/* the next batch starts without marks */
	n = packet_msg(buf, 19, true, 0, false);
	ck_assert_int_eq(nfqueue_parse_datagram(q, buf, n, false), 1);
	nfqueue_set_verdict(q, 0, NF_ACCEPT);
	ck_assert_int_eq(nfqueue_send_verdicts(q), 0);
	out = nfqueue_last_verdicts(q, &len);
	ck_assert_int_eq(read_verdicts(out, len, m, 16), 1);
	ck_assert_uint_eq(m[0].type, NFQNL_MSG_VERDICT_BATCH);
	ck_assert(!m[0].has_mark);
	nfqueue_close(q);
}
END_TEST

/* Every packet of a full batch marked: one message each, all fitting. */
START_TEST(test_verdict_all_marked)
{
	static uint8_t buf[NFQUEUE_BATCH_MAX * 256];
	size_t n = 0, len;
	struct nfqueue *q = nfqueue_detached();
	struct vmsg m[NFQUEUE_BATCH_MAX];

	for (uint32_t id = 1; id <= NFQUEUE_BATCH_MAX; id++)
		n += packet_msg(buf + n, id, true, 0, false);
	ck_assert_int_eq(nfqueue_parse_datagram(q, buf, n, false), NFQUEUE_BATCH_MAX);
	for (int i = 0; i < NFQUEUE_BATCH_MAX; i++) {
		nfqueue_set_verdict(q, i, NF_ACCEPT);
		nfqueue_set_mark(q, i, 0x80000000u);
	}
	ck_assert_int_eq(nfqueue_send_verdicts(q), 0);
	const uint8_t *out = nfqueue_last_verdicts(q, &len);
	ck_assert_int_eq(read_verdicts(out, len, m, NFQUEUE_BATCH_MAX), NFQUEUE_BATCH_MAX);
	for (int i = 0; i < NFQUEUE_BATCH_MAX; i++) {
		ck_assert_uint_eq(m[i].type, NFQNL_MSG_VERDICT);
		ck_assert_uint_eq(m[i].id, (uint32_t)i + 1);
		ck_assert(m[i].has_mark);
		ck_assert_uint_eq(m[i].mark, 0x80000000u);
	}
	nfqueue_close(q);
}
END_TEST

/* A listening datagram socket standing in for systemd's. */
static int listen_at(const char *name, bool abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	socklen_t len;

	ck_assert_int_ge(fd, 0);
	if (abstract) {
		sa.sun_path[0] = '\0';
		strncpy(sa.sun_path + 1, name, sizeof(sa.sun_path) - 2);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
	} else {
		strncpy(sa.sun_path, name, sizeof(sa.sun_path) - 1);
		len = sizeof(sa);
	}
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	return fd;
}

static void recv_str(int fd, char *buf, size_t len)
{
	struct timeval tv = { 2, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = recv(fd, buf, len - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
}

START_TEST(test_notify_path)
{
	char dir[] = "/tmp/vpcfw-notify-XXXXXX", path[128], buf[256];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = listen_at(path, false);
	setenv("NOTIFY_SOCKET", path, 1);
	ck_assert(notify_enabled());

	ck_assert_int_eq(notify_ready("running"), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "READY=1\nSTATUS=running");

	ck_assert_int_eq(notify_reloading(), 0);
	recv_str(fd, buf, sizeof(buf));
	unsigned long long usec = 0;
	ck_assert_msg(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec) == 1, "%s", buf);
	ck_assert_uint_gt(usec, 0);

	ck_assert_int_eq(notify_stopping(), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "STOPPING=1\nSTATUS=stopping");

	ck_assert_int_eq(notify_status("busy"), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "STATUS=busy");

	close(fd);
	unlink(path);
	rmdir(dir);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_notify_abstract)
{
	char name[64], env[80], buf[64];

	snprintf(name, sizeof(name), "vpcfw-notify-test-%ld", (long)getpid());
	int fd = listen_at(name, true);
	snprintf(env, sizeof(env), "@%s", name);
	setenv("NOTIFY_SOCKET", env, 1);
	ck_assert_int_eq(notify_ready(NULL), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "READY=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_notify_unset)
{
	unsetenv("NOTIFY_SOCKET");
	ck_assert(!notify_enabled());
	ck_assert_int_eq(notify_ready("x"), 0);         /* nothing to do: not an error */
	setenv("NOTIFY_SOCKET", "relative/path", 1);    /* neither a path nor '@' */
	ck_assert(!notify_enabled());
	ck_assert_int_eq(notify_stopping(), 0);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_notify_no_listener)
{
	setenv("NOTIFY_SOCKET", "/nonexistent/vpcfw/notify", 1);
	ck_assert_int_eq(notify_ready(NULL), -1);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nfq");
	TCase *tc = tcase_create("queues");
	tcase_add_loop_test(tc, test_parse_queues, 0, (int)(sizeof(queue_cases) / sizeof(queue_cases[0])));
	tcase_add_test(tc, test_parse_queues_null);
	tcase_add_test(tc, test_ct_parsed);
	tcase_add_test(tc, test_ct_absent);
	tcase_add_test(tc, test_ct_bounded);
	tcase_add_test(tc, test_verdict_messages);
	tcase_add_test(tc, test_verdict_all_marked);
	suite_add_tcase(s, tc);
	tc = tcase_create("notify");
	tcase_add_test(tc, test_notify_path);
	tcase_add_test(tc, test_notify_abstract);
	tcase_add_test(tc, test_notify_unset);
	tcase_add_test(tc, test_notify_no_listener);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
