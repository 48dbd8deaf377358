/* The state file (issue #13 item 1): the flow table across a restart.  A
 * tracked flow survives until its idle timeout (VPC user guide,
 * "security-group-connection-tracking"), a restart of vpcfwd included: round
 * trip, expiry during the downtime, interfaces gone, and every damaged file
 * refused whole. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkmain.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/packet.h"
#include "vpcfw/state.h"

#define NS 1000000000ULL
#define MONO0 (5000ULL * NS)                    /* the old process's monotonic clock */
#define WALL0 (1800000000ULL * NS)              /* the wall clock when written */
#define MONO1 (7ULL * NS)                       /* the new process's monotonic clock */

static const struct ct_timeouts defaults = {
	CT_DEFAULT_TCP_ESTABLISHED, CT_DEFAULT_UDP, CT_DEFAULT_UDP_STREAM
};

static struct ct_tuple tup(const char *src, const char *dst, int proto, int sport, int dport)
{
	struct ct_tuple t;
	int fam;
	memset(&t, 0, sizeof(t));
	ck_assert(addr_parse(src, &t.src, &fam));
	ck_assert(addr_parse(dst, &t.dst, &fam));
	t.proto = (uint8_t)proto;
	t.sport = (uint16_t)sport;
	t.dport = (uint16_t)dport;
	return t;
}

static struct ct_tuple rev(const struct ct_tuple *t)
{
	struct ct_tuple r = *t;
	r.src = t->dst;
	r.dst = t->src;
	r.sport = t->dport;
	r.dport = t->sport;
	return r;
}

static void step(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t, uint8_t fl,
		 uint64_t now)
{
	uint64_t h = ct_hash(t);
	struct ct_entry *e = ct_lookup(ct, iface, t, h, now);
	if (e)
		ct_update(ct, e, t, fl, &defaults, now);
	else
		ck_assert_ptr_nonnull(ct_insert(ct, iface, t, h, fl, &defaults, now));
}

/* The old process: interfaces "eni-a" (conntrack id 1) and "eni-b" (2);
 * an established TCP flow at eni-a, a UDP stream at eni-b, an ICMP query
 * at eni-a, an IPv6 TCP flow half closed at eni-b. */
static struct ct_tuple t_tcp, t_udp, t_icmp, t_v6;
static const char *old_ids[] = { "eni-a", "eni-b" };
static const uint32_t old_ref_of[] = { UINT32_MAX, 0, 1 };

static struct conntrack *old_table(void)
{
	struct conntrack *ct = ct_create(64);
	ck_assert_ptr_nonnull(ct);
	t_tcp = tup("10.0.1.5", "10.0.2.9", PROTO_TCP, 40000, 443);
	t_udp = tup("10.0.1.5", "10.0.2.9", PROTO_UDP, 5353, 53);
	t_icmp = tup("10.0.1.5", "10.0.2.9", PROTO_ICMP, 77, 77);
	t_v6 = tup("2001:db8::1", "2001:db8::2", PROTO_TCP, 50000, 22);
	struct ct_tuple r;
	step(ct, 1, &t_tcp, TCP_SYN, MONO0);
	r = rev(&t_tcp);
	step(ct, 1, &r, TCP_SYN | TCP_ACK, MONO0);
	step(ct, 1, &t_tcp, TCP_ACK, MONO0);
	step(ct, 2, &t_udp, 0, MONO0);
	r = rev(&t_udp);
	step(ct, 2, &r, 0, MONO0);
	step(ct, 2, &t_udp, 0, MONO0);
	step(ct, 1, &t_icmp, 0, MONO0);
	step(ct, 2, &t_v6, TCP_SYN, MONO0);
	r = rev(&t_v6);
	step(ct, 2, &r, TCP_SYN | TCP_ACK, MONO0);
	step(ct, 2, &t_v6, TCP_ACK, MONO0);
	step(ct, 2, &r, TCP_FIN | TCP_ACK, MONO0);
	return ct;
}

/* The file the old process writes at MONO0 / WALL0. */
static uint8_t *old_file(size_t *len)
{
	struct conntrack *ct = old_table();
	struct state_part p = {
		.queue = 3, .ref_of = old_ref_of, .n_ref_of = 3, .mono_ns = MONO0, .wall_ns = WALL0,
	};
	ct_foreach_saved(ct, MONO0, state_part_add, &p);
	ck_assert(!p.oom);
	ck_assert_uint_eq(p.n, 4);
	uint8_t *buf = state_encode(WALL0, old_ids, 2, &p, 1, len);
	ck_assert_ptr_nonnull(buf);
	state_part_free(&p);
	ct_destroy(ct);
	return buf;
}

/* The new configuration: eni-b is now conntrack id 7, eni-a 9 (or gone). */
struct newconf {
	bool have_a;
	struct conntrack *ct;
};

static bool iface_of(void *arg, const char *id, uint32_t *ct_id)
{
	const struct newconf *c = arg;
	if (strcmp(id, "eni-b") == 0) {
		*ct_id = 7;
		return true;
	}
	if (strcmp(id, "eni-a") == 0 && c->have_a) {
		*ct_id = 9;
		return true;
	}
	return false;
}

static struct conntrack *table_of(void *arg, uint16_t queue)
{
	const struct newconf *c = arg;
	return queue == 3 ? c->ct : NULL;
}

static struct ct_entry *find(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			     uint64_t now)
{
	return ct_lookup(ct, iface, t, ct_hash(t), now);
}

static struct ct_flow_info info(struct ct_entry *e)
{
	struct ct_flow_info i;
	ck_assert_ptr_nonnull(e);
	ct_entry_info(e, &i);
	return i;
}

/* The format says CRC-32 as zlib's (IEEE 802.3): the standard check value
 * and incremental use agree with it. */
START_TEST(crc32_is_ieee)
{
	const uint8_t *nine = (const uint8_t *)"123456789";
	ck_assert_uint_eq(state_crc32(0, nine, 9), 0xCBF43926u);
	ck_assert_uint_eq(state_crc32(state_crc32(0, nine, 4), nine + 4, 5), 0xCBF43926u);
	ck_assert_uint_eq(state_crc32(0, nine, 0), 0);
}
END_TEST

START_TEST(round_trip)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256] = "";
	/* restarted 10 s later */
	uint64_t wall = WALL0 + 10 * NS;
	ck_assert_msg(state_decode(buf, len, wall, &img, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(img.n_flows, 4);
	ck_assert_uint_eq(img.n_ifaces, 2);
	ck_assert_uint_eq(img.written_ns, WALL0);

	struct newconf c = { true, ct_create(64) };
	struct state_restore_stats st;
	state_restore(&img, wall, MONO1, iface_of, table_of, &c, &st);
	ck_assert_uint_eq(st.restored, 4);
	ck_assert_uint_eq(st.expired + st.unknown_iface + st.no_queue + st.duplicate + st.table_full, 0);

	/* the flows are found by the new configuration's ids, both ways */
	struct ct_tuple r = rev(&t_tcp);
	struct ct_flow_info i = info(find(c.ct, 9, &r, MONO1));
	ck_assert_int_eq(i.tcp_state, CT_TCP_ESTABLISHED);
	ck_assert(i.seen_reply);
	ck_assert(addr_eq(&i.orig.src, &t_tcp.src) && i.orig.sport == 40000);
	/* the remaining lifetime kept: 5 days less the 10 s of downtime */
	ck_assert_uint_eq(i.expires_ns, MONO1 + (uint64_t)CT_DEFAULT_TCP_ESTABLISHED * NS - 10 * NS);
	ck_assert_ptr_null(find(c.ct, 1, &t_tcp, MONO1));   /* not under the old id */

	i = info(find(c.ct, 7, &t_udp, MONO1));
	ck_assert(i.udp_stream);
	ck_assert_uint_eq(i.expires_ns, MONO1 + (uint64_t)CT_DEFAULT_UDP_STREAM * NS - 10 * NS);
	i = info(find(c.ct, 9, &t_icmp, MONO1));
	ck_assert_uint_eq(i.expires_ns, MONO1 + (uint64_t)CT_TIMEOUT_ICMP * NS - 10 * NS);
	/* half closed from the reply side: the originator's FIN now is the
	 * second one (the FIN side survived the restart) */
	i = info(find(c.ct, 7, &t_v6, MONO1));
	ck_assert_int_eq(i.tcp_state, CT_TCP_FIN_WAIT);
	struct ct_entry *e = find(c.ct, 7, &t_v6, MONO1);
	ct_update(c.ct, e, &t_v6, TCP_FIN | TCP_ACK, &defaults, MONO1);
	ck_assert_int_eq(info(e).tcp_state, CT_TCP_LAST_ACK);

	/* restoring again adds nothing */
	state_restore(&img, wall, MONO1, iface_of, table_of, &c, &st);
	ck_assert_uint_eq(st.restored, 0);
	ck_assert_uint_eq(st.duplicate, 4);
	struct ct_stats cs;
	ct_get_stats(c.ct, &cs);
	ck_assert_uint_eq(cs.used, 4);

	state_image_free(&img);
	ct_destroy(c.ct);
	free(buf);
}
END_TEST

START_TEST(expired_during_downtime)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256];
	/* down 40 s: the ICMP query (30 s) idled out; the UDP stream (180 s)
	 * and the TCP flows did not */
	uint64_t wall = WALL0 + 40 * NS;
	ck_assert(state_decode(buf, len, wall, &img, err, sizeof(err)) == 0);
	struct newconf c = { true, ct_create(64) };
	struct state_restore_stats st;
	state_restore(&img, wall, MONO1, iface_of, table_of, &c, &st);
	ck_assert_uint_eq(st.expired, 1);
	ck_assert_uint_eq(st.restored, 3);
	ck_assert_ptr_null(find(c.ct, 9, &t_icmp, MONO1));
	ck_assert_ptr_nonnull(find(c.ct, 7, &t_udp, MONO1));
	/* and 200 s: the UDP stream too; the half-closed flow (FIN-wait, 120 s) too */
	ct_destroy(c.ct);
	c.ct = ct_create(64);
	wall = WALL0 + 200 * NS;
	state_restore(&img, wall, MONO1, iface_of, table_of, &c, &st);
	ck_assert_uint_eq(st.expired, 3);
	ck_assert_uint_eq(st.restored, 1);
	ck_assert_ptr_nonnull(find(c.ct, 9, &t_tcp, MONO1));
	state_image_free(&img);
	ct_destroy(c.ct);
	free(buf);
}
END_TEST

START_TEST(unknown_interface_dropped)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256];
	ck_assert(state_decode(buf, len, WALL0 + NS, &img, err, sizeof(err)) == 0);
	/* eni-a is no longer configured: its two flows go, eni-b's stay */
	struct newconf c = { false, ct_create(64) };
	struct state_restore_stats st;
	state_restore(&img, WALL0 + NS, MONO1, iface_of, table_of, &c, &st);
	ck_assert_uint_eq(st.unknown_iface, 2);
	ck_assert_uint_eq(st.restored, 2);
	ck_assert_ptr_nonnull(find(c.ct, 7, &t_udp, MONO1));
	ck_assert_ptr_nonnull(find(c.ct, 7, &t_v6, MONO1));
	ck_assert_ptr_null(find(c.ct, 9, &t_tcp, MONO1));
	state_image_free(&img);
	ct_destroy(c.ct);
	free(buf);
}
END_TEST

static bool gone_queue_iface(void *arg, const char *id, uint32_t *ct_id)
{
	(void)arg;
	(void)id;
	*ct_id = 1;
	return true;
}

static struct conntrack *no_table(void *arg, uint16_t queue)
{
	(void)arg;
	(void)queue;
	return NULL;
}

START_TEST(queue_gone_or_table_full)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256];
	ck_assert(state_decode(buf, len, WALL0 + NS, &img, err, sizeof(err)) == 0);
	struct state_restore_stats st;
	state_restore(&img, WALL0 + NS, MONO1, gone_queue_iface, no_table, NULL, &st);
	ck_assert_uint_eq(st.no_queue, 4);
	ck_assert_uint_eq(st.restored, 0);
	/* a smaller ConntrackMax: two fit (a restored flow evicts none) */
	struct newconf c = { true, ct_create(2) };
	state_restore(&img, WALL0 + NS, MONO1, iface_of, table_of, &c, &st);
	ck_assert_uint_eq(st.restored, 2);
	ck_assert_uint_eq(st.table_full, 2);
	state_image_free(&img);
	ct_destroy(c.ct);
	free(buf);
}
END_TEST

START_TEST(truncated_refused_at_every_length)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256];
	for (size_t n = 0; n < len; n++) {
		/* an exact-size copy: a read past the end is caught by ASan */
		uint8_t *cut = malloc(n ? n : 1);
		memcpy(cut, buf, n);
		err[0] = 0;
		ck_assert_msg(state_decode(cut, n, WALL0, &img, err, sizeof(err)) == -1,
			      "accepted at %zu of %zu bytes", n, len);
		ck_assert_msg(err[0], "no message at %zu bytes", n);
		ck_assert_ptr_null(img.flows);
		free(cut);
	}
	ck_assert(state_decode(buf, len, WALL0, &img, err, sizeof(err)) == 0);
	state_image_free(&img);
	free(buf);
}
END_TEST

START_TEST(bit_flips_refused)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256];
	for (size_t i = 0; i < len * 8; i++) {
		buf[i / 8] ^= (uint8_t)(1u << i % 8);
		ck_assert_msg(state_decode(buf, len, WALL0, &img, err, sizeof(err)) == -1,
			      "bit %zu flipped: accepted", i);
		buf[i / 8] ^= (uint8_t)(1u << i % 8);
	}
	free(buf);
}
END_TEST

/* rewrites the checksums after a change: what a forger (or a bug) makes */
static void reseal(uint8_t *buf, size_t len)
{
	uint32_t c = state_crc32(0, buf + STATE_HEADER_BYTES, len - STATE_HEADER_BYTES);
	for (int i = 0; i < 4; i++)
		buf[40 + i] = (uint8_t)(c >> 8 * i);
	c = state_crc32(0, buf, 44);
	for (int i = 0; i < 4; i++)
		buf[44 + i] = (uint8_t)(c >> 8 * i);
}

START_TEST(wrong_version_and_future_refused)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256];

	buf[8] = 3;
	reseal(buf, len);
	ck_assert(state_decode(buf, len, WALL0, &img, err, sizeof(err)) == -1);
	ck_assert_msg(strstr(err, "version 3"), "%s", err);
	buf[8] = 2;
	reseal(buf, len);
	/* the clock is 2 minutes behind the writer: from the future */
	ck_assert(state_decode(buf, len, WALL0 - 120 * NS, &img, err, sizeof(err)) == -1);
	ck_assert_msg(strstr(err, "future"), "%s", err);
	/* 30 s behind: a small skew is tolerated */
	ck_assert(state_decode(buf, len, WALL0 - 30 * NS, &img, err, sizeof(err)) == 0);
	state_image_free(&img);

	/* a flow whose deadline is beyond the longest timeout */
	size_t rec = len - 4 - 4 * STATE_FLOW_BYTES;    /* the flows, then no flow-log window */
	uint64_t far = WALL0 + (STATE_MAX_LIFETIME_S + 3600ULL) * NS;
	for (int i = 0; i < 8; i++)
		buf[rec + 48 + i] = (uint8_t)(far >> 8 * i);
	reseal(buf, len);
	ck_assert(state_decode(buf, len, WALL0, &img, err, sizeof(err)) == -1);
	ck_assert_msg(strstr(err, "beyond"), "%s", err);
	/* a TCP state on a UDP flow */
	free(buf);
	buf = old_file(&len);
	for (size_t k = 0; k < 4; k++) {
		uint8_t *r = buf + len - 4 - (k + 1) * STATE_FLOW_BYTES;
		if (r[6] == PROTO_UDP)
			r[7] = CT_TCP_ESTABLISHED;
	}
	reseal(buf, len);
	ck_assert(state_decode(buf, len, WALL0, &img, err, sizeof(err)) == -1);
	ck_assert_msg(strstr(err, "impossible"), "%s", err);
	free(buf);
}
END_TEST

START_TEST(empty_table)
{
	size_t len;
	struct state_part p = { .ref_of = old_ref_of, .n_ref_of = 3 };
	uint8_t *buf = state_encode(WALL0, NULL, 0, &p, 1, &len);
	struct state_image img;
	char err[256];
	ck_assert_uint_eq(len, STATE_HEADER_BYTES + 4);  /* and no flow-log window */
	ck_assert(state_decode(buf, len, WALL0, &img, err, sizeof(err)) == 0);
	ck_assert_uint_eq(img.n_flows, 0);
	state_image_free(&img);
	free(buf);
}
END_TEST

START_TEST(file_written_atomically_never_through_links)
{
	char dir[] = "/tmp/check_state.XXXXXX", path[128], tmp[160], victim[160];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/flows.state", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	int fd = open(victim, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "keep", 4), 4);
	close(fd);
	/* a link planted at PATH.tmp (or left by a crash) is removed, not followed */
	ck_assert_int_eq(symlink(victim, tmp), 0);
	size_t len, got_len;
	uint8_t *buf = old_file(&len), *got;
	char err[256] = "";
	ck_assert_msg(state_write_file(path, buf, len, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(state_read_file(path, &got, &got_len, err, sizeof(err)), 0);
	ck_assert_uint_eq(got_len, len);
	ck_assert(memcmp(got, buf, len) == 0);
	free(got);
	struct stat st;
	ck_assert_int_eq(stat(victim, &st), 0);
	ck_assert_int_eq(st.st_size, 4);
	ck_assert_int_eq(lstat(tmp, &st), -1);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	/* no file: 1; a link at PATH: refused to read (O_NOFOLLOW) */
	unlink(path);
	ck_assert_int_eq(state_read_file(path, &got, &got_len, err, sizeof(err)), 1);
	ck_assert_int_eq(symlink(victim, path), 0);
	ck_assert_int_eq(state_read_file(path, &got, &got_len, err, sizeof(err)), -1);
	unlink(path);
	unlink(victim);
	rmdir(dir);
	free(buf);
}
END_TEST

START_TEST(restore_refuses_invalid_flows)
{
	struct conntrack *ct = ct_create(8);
	struct ct_saved s;
	memset(&s, 0, sizeof(s));
	s.iface = 1;
	s.orig = tup("10.0.0.1", "10.0.0.2", PROTO_UDP, 1, 2);
	s.deadline_ns = MONO1 + NS;
	s.tcp_state = CT_TCP_ESTABLISHED;
	ck_assert_int_eq(ct_restore(ct, &s, MONO1), -1);
	s.tcp_state = CT_TCP_NONE;
	s.flags = 0x80;
	ck_assert_int_eq(ct_restore(ct, &s, MONO1), -1);
	s.flags = 0;
	s.deadline_ns = MONO1;
	ck_assert_int_eq(ct_restore(ct, &s, MONO1), -1);
	s.deadline_ns = MONO1 + NS;
	ck_assert_int_eq(ct_restore(ct, &s, MONO1), 0);
	ck_assert_int_eq(ct_restore(ct, &s, MONO1), -2);
	/* and it expires as saved */
	ck_assert_ptr_nonnull(find(ct, 1, &s.orig, MONO1 + NS - 1));
	ck_assert_ptr_null(find(ct, 1, &s.orig, MONO1 + NS));
	ct_destroy(ct);
}
END_TEST

/* ------------------------------------------------------------ flow logs in flight */

#define WALL0_S (WALL0 / NS)
#define WIN60 (WALL0_S - 60)            /* a 60 s window open when written */
#define WIN600 (WALL0_S - 600)          /* a 600 s one */

static struct flowlog_saved_entry fl_entry(const char *src, const char *dst, int proto, int sport,
					   int dport, uint32_t iface, uint8_t bits)
{
	struct flowlog_saved_entry e;
	int fam;
	memset(&e, 0, sizeof(e));
	ck_assert(addr_parse(src, &e.src, &fam));
	ck_assert(addr_parse(dst, &e.dst, &fam));
	e.family = (uint8_t)fam;
	e.proto = (uint8_t)proto;
	e.sport = (uint16_t)sport;
	e.dport = (uint16_t)dport;
	e.iface = iface;
	e.bits = bits;
	e.packets = 10;
	e.bytes = 5200;
	e.first_s = (uint32_t)WIN60 + 10;
	e.last_s = (uint32_t)WIN60 + 50;
	e.stage = STAGE_NONE;
	e.reason = REASON_RULES_ALLOW;
	return e;
}

/* A worker (queue 3) with an open 60 s window: an accepted TCP flow out
 * of eni-a (conntrack id 1), a UDP flow refused into eni-b (id 2, with its
 * rule for the decision log), ICMPv6 into eni-b, one entry of an interface
 * a reload removed (id 5: not in the table), packets lost at eni-b and
 * elsewhere; and an empty 600 s window.  No tracked flow. */
static uint8_t *fl_file(size_t *len)
{
	struct state_part p = {
		.queue = 3, .ref_of = old_ref_of, .n_ref_of = 3, .mono_ns = MONO0, .wall_ns = WALL0,
	};
	struct flowlog_saved_window w;
	memset(&w, 0, sizeof(w));
	w.cls = 0;
	w.start = WIN60;
	w.n_lost = 2;
	w.lost[0].iface = 2;
	w.lost[0].n = 5;
	w.lost[1].iface = 5;
	w.lost[1].n = 3;
	w.lost_other = 7;
	ck_assert_int_eq(state_part_add_flowlog(&p, &w, NULL), 0);
	struct flowlog_saved_entry e = fl_entry("10.0.1.5", "10.0.2.9", PROTO_TCP, 40000, 443, 1,
						FLS_EGRESS | FLS_ACCEPT | FLS_SAME_VPC);
	e.tcp_flags = TCP_SYN | TCP_FIN | TCP_ACK;
	ck_assert_int_eq(state_part_add_flowlog(&p, &w, &e), 0);
	e = fl_entry("10.0.1.5", "10.0.2.9", PROTO_UDP, 5353, 53, 2, FLS_DECISION);
	e.packets = 2;
	e.bytes = 2 * 65575;
	e.stage = STAGE_SG_INGRESS;
	e.reason = REASON_ENI_SG_RULES_MISMATCH;
	strcpy(e.rule, "sg-b ingress: no rule admits udp/53");
	ck_assert_int_eq(state_part_add_flowlog(&p, &w, &e), 0);
	e = fl_entry("2001:db8::1", "2001:db8::2", PROTO_ICMPV6, 0, 0, 2, FLS_ACCEPT);
	ck_assert_int_eq(state_part_add_flowlog(&p, &w, &e), 0);
	e = fl_entry("10.9.9.9", "10.0.2.9", PROTO_TCP, 1, 2, 5, FLS_ACCEPT);
	ck_assert_int_eq(state_part_add_flowlog(&p, &w, &e), 0);
	w.cls = 1;
	w.start = WIN600;
	w.n_lost = 0;
	w.lost_other = 0;
	ck_assert_int_eq(state_part_add_flowlog(&p, &w, NULL), 0);
	ck_assert(!p.oom);
	ck_assert_uint_eq(p.n_flwins, 2);
	ck_assert_uint_eq(p.n_flents, 3);
	ck_assert_uint_eq(p.fl_unlisted, 1);
	uint8_t *buf = state_encode(WALL0, old_ids, 2, &p, 1, len);
	ck_assert_ptr_nonnull(buf);
	state_part_free(&p);
	return buf;
}

/* where fl_file's parts are */
#define FL_IFACES (STATE_HEADER_BYTES + 2 * (2 + 5))
#define FL_WIN0 (FL_IFACES + 4)
#define FL_ENT0 (FL_WIN0 + STATE_FLWIN_BYTES + STATE_FLLOST_BYTES)
#define FL_ENT1 (FL_ENT0 + STATE_FLENT_BYTES)
#define FL_ENT2 (FL_ENT1 + STATE_FLENT_BYTES + 35)
#define FL_WIN1 (FL_ENT2 + STATE_FLENT_BYTES)

START_TEST(flowlog_round_trip)
{
	size_t len;
	uint8_t *buf = fl_file(&len);
	struct state_image img;
	char err[256] = "";

	ck_assert_uint_eq(len, FL_WIN1 + STATE_FLWIN_BYTES);
	ck_assert_msg(state_decode(buf, len, WALL0 + NS, &img, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(img.version, STATE_VERSION);
	ck_assert_uint_eq(img.n_flows, 0);
	ck_assert_uint_eq(img.n_flwins, 2);
	ck_assert_uint_eq(img.n_flents, 3);
	const struct state_flwin *w = &img.flwins[0];
	ck_assert_uint_eq(w->queue, 3);
	ck_assert_uint_eq(w->w.cls, 0);
	ck_assert_uint_eq(w->w.start, WIN60);
	ck_assert_uint_eq(w->first, 0);
	ck_assert_uint_eq(w->n, 3);
	/* lost: eni-b's by its index in the table; the removed interface's not kept */
	ck_assert_uint_eq(w->w.n_lost, 1);
	ck_assert_uint_eq(w->w.lost[0].iface, 1);
	ck_assert_uint_eq(w->w.lost[0].n, 5);
	ck_assert_uint_eq(w->w.lost_other, 7);
	const struct flowlog_saved_entry *e = &img.flents[0];
	struct ct_tuple t = tup("10.0.1.5", "10.0.2.9", PROTO_TCP, 40000, 443);
	ck_assert(addr_eq(&e->src, &t.src) && addr_eq(&e->dst, &t.dst));
	ck_assert_uint_eq(e->iface, 0);
	ck_assert_uint_eq(e->proto, PROTO_TCP);
	ck_assert_uint_eq(e->family, FAMILY_V4);
	ck_assert_uint_eq(e->sport, 40000);
	ck_assert_uint_eq(e->dport, 443);
	ck_assert_uint_eq(e->bits, FLS_EGRESS | FLS_ACCEPT | FLS_SAME_VPC);
	ck_assert_uint_eq(e->tcp_flags, TCP_SYN | TCP_FIN | TCP_ACK);
	ck_assert_uint_eq(e->packets, 10);
	ck_assert_uint_eq(e->bytes, 5200);
	ck_assert_uint_eq(e->first_s, WIN60 + 10);
	ck_assert_uint_eq(e->last_s, WIN60 + 50);
	ck_assert_str_eq(e->rule, "");
	e = &img.flents[1];
	ck_assert_uint_eq(e->iface, 1);
	ck_assert_uint_eq(e->bits, FLS_DECISION);
	ck_assert_uint_eq(e->stage, STAGE_SG_INGRESS);
	ck_assert_uint_eq(e->reason, REASON_ENI_SG_RULES_MISMATCH);
	ck_assert_uint_eq(e->bytes, 2 * 65575);
	ck_assert_str_eq(e->rule, "sg-b ingress: no rule admits udp/53");
	e = &img.flents[2];
	ck_assert_uint_eq(e->family, FAMILY_V6);
	ck_assert_uint_eq(e->proto, PROTO_ICMPV6);
	w = &img.flwins[1];
	ck_assert_uint_eq(w->w.cls, 1);
	ck_assert_uint_eq(w->w.start, WIN600);
	ck_assert_uint_eq(w->n, 0);

	/* encoded again from the image: the same bytes */
	struct state_part p = {
		.flwins = img.flwins, .n_flwins = img.n_flwins,
		.flents = img.flents, .n_flents = img.n_flents,
	};
	size_t len2;
	uint8_t *again = state_encode(WALL0, (const char *const *)img.ifaces, img.n_ifaces, &p, 1,
				      &len2);
	ck_assert_uint_eq(len2, len);
	ck_assert(memcmp(again, buf, len) == 0);
	free(again);
	state_image_free(&img);
	free(buf);
}
END_TEST

START_TEST(flowlog_truncated_or_flipped_refused)
{
	size_t len;
	uint8_t *buf = fl_file(&len);
	struct state_image img;
	char err[256];
	for (size_t n = 0; n < len; n++) {
		uint8_t *cut = malloc(n ? n : 1);
		memcpy(cut, buf, n);
		err[0] = 0;
		ck_assert_msg(state_decode(cut, n, WALL0, &img, err, sizeof(err)) == -1,
			      "accepted at %zu of %zu bytes", n, len);
		ck_assert_msg(err[0], "no message at %zu bytes", n);
		ck_assert_ptr_null(img.flents);
		/* cut in the flow-log section, checksums made right: still refused */
		if (n >= FL_WIN0) {
			reseal(cut, n);
			ck_assert_msg(state_decode(cut, n, WALL0, &img, err, sizeof(err)) == -1,
				      "resealed, accepted at %zu of %zu bytes", n, len);
			ck_assert_ptr_null(img.flents);
		}
		free(cut);
	}
	for (size_t i = 0; i < len * 8; i++) {
		buf[i / 8] ^= (uint8_t)(1u << i % 8);
		ck_assert_msg(state_decode(buf, len, WALL0, &img, err, sizeof(err)) == -1,
			      "bit %zu flipped: accepted", i);
		buf[i / 8] ^= (uint8_t)(1u << i % 8);
	}
	free(buf);
}
END_TEST

/* A version-1 file (no flow-log section) is read; one with anything after
 * its flows is not, nor a version-2 file without its section. */
START_TEST(version1_file_read)
{
	size_t len;
	uint8_t *buf = old_file(&len);
	struct state_image img;
	char err[256] = "";

	len -= 4;       /* the version-2 "no window" */
	buf[8] = 1;
	reseal(buf, len);
	ck_assert_msg(state_decode(buf, len, WALL0 + NS, &img, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(img.version, 1);
	ck_assert_uint_eq(img.n_flows, 4);
	ck_assert_uint_eq(img.n_flwins, 0);
	struct newconf c = { true, ct_create(64) };
	struct state_restore_stats st;
	state_restore(&img, WALL0 + NS, MONO1, iface_of, table_of, &c, &st);
	ck_assert_uint_eq(st.restored, 4);
	state_image_free(&img);
	ct_destroy(c.ct);
	/* version 2 without its flow-log section */
	buf[8] = 2;
	reseal(buf, len);
	ck_assert(state_decode(buf, len, WALL0 + NS, &img, err, sizeof(err)) == -1);
	ck_assert_msg(strstr(err, "flow-log"), "%s", err);
	/* version 1 with one */
	uint8_t *more = malloc(len + 4);
	memcpy(more, buf, len);
	memset(more + len, 0, 4);
	more[8] = 1;
	reseal(more, len + 4);
	ck_assert(state_decode(more, len + 4, WALL0 + NS, &img, err, sizeof(err)) == -1);
	free(more);
	free(buf);
}
END_TEST

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

/* Each change, the checksums made right, is refused with what is wrong. */
START_TEST(flowlog_invalid_values_refused)
{
	static const struct {
		size_t off;
		int width;              /* 1, 4, 8 bytes */
		uint64_t value;
		const char *says;
	} bad[] = {
		{ FL_WIN0 + 2, 1, 2, "class 2" },
		{ FL_WIN0 + 8, 8, WIN60 + 1, "starts at" },
		{ FL_WIN0 + 8, 8, WALL0_S + 600, "starts at" },         /* after the writing */
		{ FL_WIN0 + 3, 1, 33, "lost slots" },
		{ FL_WIN0 + 4, 4, 1000, "cannot fit" },
		{ FL_WIN0 + STATE_FLWIN_BYTES, 4, 2, "lost slot" },     /* no such interface */
		{ FL_WIN0 + STATE_FLWIN_BYTES + 4, 4, 0, "lost slot" }, /* no packet */
		{ FL_ENT0, 4, 2, "names no interface" },
		{ FL_ENT0 + 5, 1, 5, "family" },
		{ FL_ENT2 + 5, 1, FAMILY_V4, "family" },                /* an IPv6 address */
		{ FL_ENT0 + 6, 1, 16, "unknown bits" },
		{ FL_ENT0 + 12, 1, STAGE_COUNT, "stage or reason" },
		{ FL_ENT0 + 13, 1, REASON_COUNT, "stage or reason" },
		{ FL_ENT0 + 4, 1, PROTO_ICMP, "ports" },                /* ICMP with ports */
		{ FL_ENT2 + 7, 1, TCP_SYN, "TCP flags" },               /* on ICMPv6 */
		{ FL_ENT0 + 7, 1, TCP_PSH, "TCP flags" },               /* not a flow-log flag */
		{ FL_ENT0 + 14, 1, 1, "rule" },                         /* not for the decision log */
		{ FL_ENT1 + 14, 1, 96, "rule" },                        /* too long */
		{ FL_ENT1 + 15, 1, 1, "reserved" },
		{ FL_ENT1 + STATE_FLENT_BYTES, 1, 7, "printable" },
		{ FL_ENT0 + 48, 8, 0, "no packet" },
		{ FL_ENT1 + 56, 8, 2 * 65575 + 1, "more bytes" },
		{ FL_ENT0 + 64, 4, WIN60 + 51, "first or last" },       /* after the last */
		{ FL_ENT0 + 68, 4, WALL0_S + 3600, "first or last" },   /* from the future */
		{ FL_ENT0 + 64, 4, WIN60 - 3600, "first or last" },     /* long before the window */
		{ FL_WIN1 + 2, 1, 0, "two flow-log windows" },          /* a second 60 s window */
	};
	size_t len;
	uint8_t *buf = fl_file(&len);
	struct state_image img;
	char err[256];
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		uint8_t *b = malloc(len);
		memcpy(b, buf, len);
		if (bad[k].width == 1)
			b[bad[k].off] = (uint8_t)bad[k].value;
		else if (bad[k].width == 4)
			put32(b + bad[k].off, (uint32_t)bad[k].value);
		else
			put64(b + bad[k].off, bad[k].value);
		reseal(b, len);
		err[0] = 0;
		ck_assert_msg(state_decode(b, len, WALL0, &img, err, sizeof(err)) == -1,
			      "change %zu accepted", k);
		ck_assert_msg(strstr(err, bad[k].says), "change %zu: '%s', want '%s'", k, err,
			      bad[k].says);
		ck_assert_ptr_null(img.flents);
		ck_assert_ptr_null(img.flwins);
		free(b);
	}
	free(buf);
}
END_TEST

static struct flowlog_worker *no_worker(void *arg, uint16_t queue)
{
	(void)arg;
	(void)queue;
	return NULL;
}

/* With flow logs off now, or the worker's queue gone: every entry counted
 * as dropped, none restored.  (Restoring into a worker's aggregation:
 * check_flowlog.) */
START_TEST(flowlog_restore_dropped)
{
	size_t len;
	uint8_t *buf = fl_file(&len);
	struct state_image img;
	char err[256];
	ck_assert(state_decode(buf, len, WALL0 + NS, &img, err, sizeof(err)) == 0);
	struct state_fl_restore_stats st;
	struct newconf c = { true, NULL };
	state_restore_flowlog(&img, WALL0 + NS, false, iface_of, no_worker, &c, &st);
	ck_assert_uint_eq(st.off, 3);
	ck_assert_uint_eq(st.fl.entries + st.no_queue + st.unknown_iface, 0);
	state_restore_flowlog(&img, WALL0 + NS, true, iface_of, no_worker, &c, &st);
	ck_assert_uint_eq(st.no_queue, 3);
	ck_assert_uint_eq(st.fl.entries + st.off + st.unknown_iface, 0);
	state_image_free(&img);
	free(buf);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("state");
	TCase *t = tcase_create("state");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, crc32_is_ieee);
	tcase_add_test(t, round_trip);
	tcase_add_test(t, expired_during_downtime);
	tcase_add_test(t, unknown_interface_dropped);
	tcase_add_test(t, queue_gone_or_table_full);
	tcase_add_test(t, truncated_refused_at_every_length);
	tcase_add_test(t, bit_flips_refused);
	tcase_add_test(t, wrong_version_and_future_refused);
	tcase_add_test(t, empty_table);
	tcase_add_test(t, file_written_atomically_never_through_links);
	tcase_add_test(t, restore_refuses_invalid_flows);
	tcase_add_test(t, flowlog_round_trip);
	tcase_add_test(t, flowlog_truncated_or_flipped_refused);
	tcase_add_test(t, version1_file_read);
	tcase_add_test(t, flowlog_invalid_values_refused);
	tcase_add_test(t, flowlog_restore_dropped);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
