/* The HA sync wire format (issue #13 item 2, include/vpcfw/sync.h): a
 * message round-trips, a wrong MAC or key is refused, every truncation is
 * refused, an authenticated message that breaks the format is refused
 * whole, replays and old epochs are refused while reordering within the
 * window is accepted, and the key file is read only when it is private. */
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
#include "vpcfw/sync.h"

#define NS 1000000000ULL
#define KEY "0123456789abcdef0123456789abcdef"

static struct sync_key key;

static void setup(void)
{
	sync_key_init(&key, (const uint8_t *)KEY, strlen(KEY));
}

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

/* Four changes: an established TCP flow (window bytes set) and an ICMP
 * query at eni-a, a UDP stream at eni-b, the end of an IPv6 flow at eni-a. */
static struct sync_record recs[4];

static void make_records(void)
{
	memset(recs, 0, sizeof(recs));
	recs[0] = (struct sync_record){ .op = SYNC_OP_UPSERT, .queue = 2, .iface_id = "eni-a" };
	recs[0].s.orig = tup("10.0.1.5", "10.0.2.9", PROTO_TCP, 40000, 443);
	recs[0].s.tcp_state = CT_TCP_ESTABLISHED;
	recs[0].s.flags = CT_SAVED_SEEN_REPLY;
	recs[0].s.deadline_ns = 431999ULL * NS;
	for (int i = 0; i < CT_SAVED_TCP_BYTES; i++)
		recs[0].s.tcp[i] = (uint8_t)(i * 7 + 1);
	recs[1] = (struct sync_record){ .op = SYNC_OP_UPSERT, .queue = 0, .iface_id = "eni-b" };
	recs[1].s.orig = tup("10.0.1.5", "10.0.2.9", PROTO_UDP, 5353, 53);
	recs[1].s.flags = CT_SAVED_SEEN_REPLY | CT_SAVED_UDP_STREAM;
	recs[1].s.deadline_ns = 180ULL * NS;
	recs[2] = (struct sync_record){ .op = SYNC_OP_UPSERT, .queue = 2, .iface_id = "eni-a" };
	recs[2].s.orig = tup("10.0.1.5", "10.0.2.9", PROTO_ICMP, 77, 77);
	recs[2].s.deadline_ns = 30ULL * NS;
	recs[3] = (struct sync_record){ .op = SYNC_OP_DELETE, .queue = 65535, .iface_id = "eni-a" };
	recs[3].s.orig = tup("2001:db8::1", "2001:db8::2", PROTO_TCP, 50000, 22);
	recs[3].s.tcp_state = CT_TCP_TIME_WAIT;
}

static uint8_t buf[SYNC_MAX_BYTES];
static struct sync_record out_recs[SYNC_MAX_RECORDS];
static struct sync_msg msg;

static size_t build(void)
{
	struct sync_builder b;
	make_records();
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	for (int i = 0; i < 4; i++)
		ck_assert(sync_add(&b, &recs[i]));
	size_t len = sync_finish(&b, &key, SYNC_T_UPDATE, SYNC_F_READY, 7, 1800000000ULL * NS, 42,
				 1800000005ULL * NS, 0, 0, 1234);
	/* (and the compiler knows it: room for a byte more, a MAC to move) */
	if (len < SYNC_HEADER_BYTES + SYNC_MAC_BYTES || len >= SYNC_DEFAULT_BYTES)
		ck_abort_msg("built %zu bytes", len);
	return len;
}

static enum sync_drop decode(size_t len)
{
	memset(&msg, 0xa5, sizeof(msg));
	msg.records = out_recs;
	msg.max_records = SYNC_MAX_RECORDS;
	return sync_decode(&key, buf, len, &msg);
}

/* the MAC of a buffer changed by hand: an authenticated malformed message */
static void remac(size_t len)
{
	struct hmac_sha256_ctx c;
	hmac_sha256_set_key(&c, strlen(KEY), (const uint8_t *)KEY);
	hmac_sha256_update(&c, len - SYNC_MAC_BYTES, buf);
	hmac_sha256_digest(&c, SYNC_MAC_BYTES, buf + len - SYNC_MAC_BYTES);
}

START_TEST(round_trip)
{
	size_t len = build();
	/* 4 records, 2 interface ids ("eni-a" once), the header and the MAC */
	ck_assert_uint_eq(len, SYNC_HEADER_BYTES + 4 * SYNC_RECORD_BYTES + 2 * 6 + SYNC_MAC_BYTES);
	ck_assert_int_eq(decode(len), SYNC_OK);
	ck_assert_uint_eq(msg.type, SYNC_T_UPDATE);
	ck_assert_uint_eq(msg.flags, SYNC_F_READY);
	ck_assert_uint_eq(msg.sender, 7);
	ck_assert_uint_eq(msg.epoch, 1800000000ULL * NS);
	ck_assert_uint_eq(msg.seq, 42);
	ck_assert_uint_eq(msg.sent_ns, 1800000005ULL * NS);
	ck_assert_uint_eq(msg.lag_us, 1234);
	ck_assert_uint_eq(msg.n_ifaces, 2);
	ck_assert_uint_eq(msg.n_records, 4);
	for (int i = 0; i < 4; i++) {
		const struct sync_record *a = &recs[i], *b = &out_recs[i];
		ck_assert_uint_eq(b->op, a->op);
		ck_assert_uint_eq(b->queue, a->queue);
		ck_assert_str_eq(b->iface_id, a->iface_id);
		ck_assert(addr_eq(&b->s.orig.src, &a->s.orig.src));
		ck_assert(addr_eq(&b->s.orig.dst, &a->s.orig.dst));
		ck_assert_uint_eq(b->s.orig.sport, a->s.orig.sport);
		ck_assert_uint_eq(b->s.orig.dport, a->s.orig.dport);
		ck_assert_uint_eq(b->s.orig.proto, a->s.orig.proto);
		ck_assert_uint_eq(b->s.tcp_state, a->s.tcp_state);
		ck_assert_uint_eq(b->s.flags, a->s.flags);
		/* lifetimes travel in ms */
		ck_assert_uint_eq(b->s.deadline_ns, a->op == SYNC_OP_DELETE ? 0 : a->s.deadline_ns);
		ck_assert_mem_eq(b->s.tcp, a->op == SYNC_OP_DELETE ? (uint8_t[CT_SAVED_TCP_BYTES]){ 0 }
				 : a->s.tcp, CT_SAVED_TCP_BYTES);
	}
}
END_TEST

START_TEST(other_types)
{
	struct sync_builder b;
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	size_t len = sync_finish(&b, &key, SYNC_T_BULK_REQ, 0, 3, 5, 1, 9, 77, 0, 0);
	ck_assert_uint_eq(len, SYNC_HEADER_BYTES + SYNC_MAC_BYTES);
	ck_assert_int_eq(decode(len), SYNC_OK);
	ck_assert_uint_eq(msg.type, SYNC_T_BULK_REQ);
	ck_assert_uint_eq(msg.bulk_id, 77);
	ck_assert_uint_eq(msg.n_records, 0);

	make_records();
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	ck_assert(sync_add(&b, &recs[1]));
	len = sync_finish(&b, &key, SYNC_T_BULK, SYNC_F_LAST | SYNC_F_READY, 3, 5, 2, 9, 77,
			  1000000, 0);
	ck_assert_int_eq(decode(len), SYNC_OK);
	ck_assert_uint_eq(msg.bulk_total, 1000000);
	ck_assert_uint_eq(msg.flags, SYNC_F_LAST | SYNC_F_READY);
	ck_assert_uint_eq(msg.n_records, 1);

	/* a bulk part without the request's id, a hello with a bulk total, a
	 * LAST flag on an update: malformed even though authenticated */
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	len = sync_finish(&b, &key, SYNC_T_BULK, 0, 3, 5, 3, 9, 0, 0, 0);
	ck_assert_int_eq(decode(len), SYNC_DROP_MALFORMED);
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	len = sync_finish(&b, &key, SYNC_T_HELLO, 0, 3, 5, 3, 9, 0, 5, 0);
	ck_assert_int_eq(decode(len), SYNC_DROP_MALFORMED);
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	len = sync_finish(&b, &key, SYNC_T_UPDATE, SYNC_F_LAST, 3, 5, 3, 9, 0, 0, 0);
	ck_assert_int_eq(decode(len), SYNC_DROP_MALFORMED);
	/* sender 0, epoch 0, sequence 0 */
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	len = sync_finish(&b, &key, SYNC_T_HELLO, 0, 0, 5, 3, 9, 0, 0, 0);
	ck_assert_int_eq(decode(len), SYNC_DROP_MALFORMED);
	len = sync_finish(&b, &key, SYNC_T_HELLO, 0, 3, 0, 3, 9, 0, 0, 0);
	ck_assert_int_eq(decode(len), SYNC_DROP_MALFORMED);
	len = sync_finish(&b, &key, SYNC_T_HELLO, 0, 3, 5, 0, 9, 0, 0, 0);
	ck_assert_int_eq(decode(len), SYNC_DROP_MALFORMED);
}
END_TEST

START_TEST(builder_fills_up)
{
	struct sync_builder b;
	struct sync_record r;
	char id[16];
	make_records();
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	size_t n = 0;
	for (;;) {
		r = recs[0];
		snprintf(id, sizeof(id), "eni-%zu", n % 3);
		r.iface_id = id;
		r.s.orig.sport = (uint16_t)(1000 + n);
		if (!sync_fits(&b, id)) {
			ck_assert(!sync_add(&b, &r));
			break;
		}
		ck_assert(sync_add(&b, &r));
		n++;
	}
	size_t len = sync_finish(&b, &key, SYNC_T_UPDATE, 0, 1, 1, 1, 1, 0, 0, 0);
	ck_assert_uint_le(len, SYNC_DEFAULT_BYTES);
	ck_assert_uint_gt(len + SYNC_RECORD_BYTES, SYNC_DEFAULT_BYTES);
	ck_assert_uint_eq(n, (SYNC_DEFAULT_BYTES - SYNC_HEADER_BYTES - SYNC_MAC_BYTES - 3 * 6) /
			     SYNC_RECORD_BYTES);
	ck_assert_int_eq(decode(len), SYNC_OK);
	ck_assert_uint_eq(msg.n_records, n);
	ck_assert_uint_eq(msg.n_ifaces, 3);
	/* sync_add refuses what is not a flow, and ids that cannot travel */
	sync_begin(&b, buf, SYNC_DEFAULT_BYTES);
	r = recs[0];
	r.s.tcp_state = CT_TCP_NONE;
	ck_assert(!sync_add(&b, &r));
	r = recs[0];
	r.s.deadline_ns = 0;
	ck_assert(!sync_add(&b, &r));
	r = recs[0];
	r.iface_id = "eni a";
	ck_assert(!sync_add(&b, &r));
	r.iface_id = "";
	ck_assert(!sync_add(&b, &r));
	ck_assert_uint_eq(b.n_records, 0);
	/* sync_put: a flow's newer state in place of its older one */
	ck_assert(sync_add(&b, &recs[0]));
	ck_assert(sync_add(&b, &recs[1]));
	r = recs[0];
	r.s.tcp_state = CT_TCP_FIN_WAIT;
	ck_assert(sync_put(&b, 0, &r));
	ck_assert(!sync_put(&b, 2, &r));                /* no record 2 */
	r.iface_id = "eni-new";
	ck_assert(!sync_put(&b, 0, &r));                /* not in the table */
	r = recs[3];                                    /* a delete in place of it */
	ck_assert(sync_put(&b, 0, &r));
	size_t l2 = sync_finish(&b, &key, SYNC_T_UPDATE, 0, 1, 1, 1, 1, 0, 0, 0);
	ck_assert_int_eq(decode(l2), SYNC_OK);
	ck_assert_uint_eq(msg.n_records, 2);
	ck_assert_uint_eq(out_recs[0].op, SYNC_OP_DELETE);
	ck_assert_uint_eq(out_recs[0].s.tcp_state, CT_TCP_TIME_WAIT);
	ck_assert_str_eq(out_recs[0].iface_id, "eni-a");
	ck_assert_uint_eq(out_recs[1].s.orig.proto, PROTO_UDP);
}
END_TEST

START_TEST(bad_mac_or_key_refused)
{
	size_t len = build();
	/* every bit of the message, the MAC included */
	for (size_t i = 0; i < len; i++) {
		for (int k = 0; k < 8; k++) {
			buf[i] ^= (uint8_t)(1 << k);
			ck_assert_int_eq(decode(len), SYNC_DROP_AUTH);
			ck_assert_uint_eq(msg.n_records, 0);
			buf[i] ^= (uint8_t)(1 << k);
		}
	}
	ck_assert_int_eq(decode(len), SYNC_OK);
	struct sync_key other;
	sync_key_init(&other, (const uint8_t *)"0123456789abcdef0123456789abcdeF", 32);
	msg.records = out_recs;
	msg.max_records = SYNC_MAX_RECORDS;
	ck_assert_int_eq(sync_decode(&other, buf, len, &msg), SYNC_DROP_AUTH);
	ck_assert_uint_eq(msg.n_records, 0);
}
END_TEST

START_TEST(truncated_refused_at_every_length)
{
	size_t len = build();
	for (size_t l = 0; l < len; l++) {
		enum sync_drop r = decode(l);
		ck_assert_msg(r == SYNC_DROP_SHORT || r == SYNC_DROP_AUTH, "length %zu: %s", l,
			      sync_drop_name(r));
		ck_assert_uint_eq(msg.n_records, 0);
	}
	/* a byte more (with the MAC recomputed: an authenticated sender's bug) */
	if (len < SYNC_HEADER_BYTES + SYNC_MAC_BYTES || len >= SYNC_DEFAULT_BYTES)
		ck_abort_msg("built %zu bytes", len);
	memmove(buf + len + 1 - SYNC_MAC_BYTES, buf + len - SYNC_MAC_BYTES, SYNC_MAC_BYTES);
	buf[len - SYNC_MAC_BYTES] = 'x';
	remac(len + 1);
	ck_assert_int_eq(decode(len + 1), SYNC_DROP_MALFORMED);
	/* truncated and re-authenticated: every length that drops part of a
	 * record or of the interface table is malformed, never half applied */
	for (size_t l = SYNC_HEADER_BYTES + SYNC_MAC_BYTES; l < len; l++) {
		len = build();
		memmove(buf + l - SYNC_MAC_BYTES, buf + len - SYNC_MAC_BYTES, SYNC_MAC_BYTES);
		remac(l);
		ck_assert_int_eq(decode(l), SYNC_DROP_MALFORMED);
		ck_assert_uint_eq(msg.n_records, 0);
	}
}
END_TEST

START_TEST(authenticated_but_malformed_refused_whole)
{
	size_t len = build();
	uint8_t *rec0 = buf + SYNC_HEADER_BYTES, *rec3 = rec0 + 3 * SYNC_RECORD_BYTES;
	struct { uint8_t *at; uint8_t v; enum sync_drop want; } cases[] = {
		{ buf, 'X', SYNC_DROP_MAGIC },
		{ buf + 8, 2, SYNC_DROP_VERSION },
		{ buf + 10, 9, SYNC_DROP_MALFORMED },           /* type */
		{ buf + 11, 0x80, SYNC_DROP_MALFORMED },        /* flags */
		{ buf + 40, 5, SYNC_DROP_MALFORMED },           /* records */
		{ buf + 42, 3, SYNC_DROP_MALFORMED },           /* interfaces */
		{ rec0, 3, SYNC_DROP_MALFORMED },               /* op */
		{ rec0 + 2, 0, SYNC_DROP_MALFORMED },           /* TCP without a state */
		{ rec0 + 2, 9, SYNC_DROP_MALFORMED },           /* no such state */
		{ rec0 + 3, 0x10, SYNC_DROP_MALFORMED },        /* unknown flag */
		{ rec0 + 4, 2, SYNC_DROP_MALFORMED },           /* no such interface */
		{ rec0 + 15, 0xff, SYNC_DROP_MALFORMED },       /* beyond the longest timeout */
		{ rec3 + 12, 1, SYNC_DROP_MALFORMED },          /* a lifetime on a delete */
		{ rec3 + 60, 1, SYNC_DROP_MALFORMED },          /* window bytes on a delete */
		{ buf + len - SYNC_MAC_BYTES - 1, ' ', SYNC_DROP_MALFORMED }, /* id not printable */
		{ buf + len - SYNC_MAC_BYTES - 6, 0, SYNC_DROP_MALFORMED },   /* id of 0 bytes */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = build();
		*cases[i].at = cases[i].v;
		remac(len);
		enum sync_drop r = decode(len);
		ck_assert_msg(r == cases[i].want, "case %zu: %s", i, sync_drop_name(r));
		ck_assert_uint_eq(msg.n_records, 0);
	}
	/* a lifetime of 0 on an upsert */
	len = build();
	memset(rec0 + 12, 0, 4);
	remac(len);
	ck_assert_int_eq(decode(len), SYNC_DROP_MALFORMED);
	/* more records than the receiver has room for */
	len = build();
	msg.records = out_recs;
	msg.max_records = 3;
	ck_assert_int_eq(sync_decode(&key, buf, len, &msg), SYNC_DROP_MALFORMED);
}
END_TEST

START_TEST(replay_window)
{
	struct sync_window w;
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(sync_window_check(&w, 100, 1), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 1), SYNC_DROP_REPLAY);
	/* out of order within the window: accepted once each */
	ck_assert_int_eq(sync_window_check(&w, 100, 5), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 3), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 2), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 4), SYNC_OK);
	for (uint64_t s = 1; s <= 5; s++)
		ck_assert_int_eq(sync_window_check(&w, 100, s), SYNC_DROP_REPLAY);
	/* far ahead: what fell out of the window is refused, what is in it is
	 * remembered across word boundaries */
	ck_assert_int_eq(sync_window_check(&w, 100, 5 + SYNC_WINDOW - 1), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 5), SYNC_DROP_REPLAY);
	ck_assert_int_eq(sync_window_check(&w, 100, 6), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 70), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 5 + SYNC_WINDOW + 63), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 70), SYNC_DROP_REPLAY);
	/* the window is now 69 .. 5 + SYNC_WINDOW + 63 */
	ck_assert_int_eq(sync_window_check(&w, 100, 68), SYNC_DROP_REPLAY);     /* out of it */
	ck_assert_int_eq(sync_window_check(&w, 100, 69), SYNC_OK);              /* in it, unseen */
	ck_assert_int_eq(sync_window_check(&w, 100, 71), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 5 + SYNC_WINDOW - 1), SYNC_DROP_REPLAY);
	ck_assert_int_eq(sync_window_check(&w, 100, 5 + SYNC_WINDOW), SYNC_OK);
	/* a restarted sender: a new epoch starts again at 1; the old is dead */
	ck_assert_int_eq(sync_window_check(&w, 200, 1), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 100, 100000), SYNC_DROP_OLD_EPOCH);
	ck_assert_int_eq(sync_window_check(&w, 200, 1), SYNC_DROP_REPLAY);
	ck_assert_int_eq(sync_window_check(&w, 200, 2), SYNC_OK);
	/* a jump of more than the window clears it */
	ck_assert_int_eq(sync_window_check(&w, 200, 2 + 10 * SYNC_WINDOW), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 200, 2 + 10 * SYNC_WINDOW - 1), SYNC_OK);
	ck_assert_int_eq(sync_window_check(&w, 200, 2), SYNC_DROP_REPLAY);
	ck_assert_int_eq(sync_window_check(&w, 200, 0), SYNC_DROP_MALFORMED);
}
END_TEST

/* every order of 1..8 delivered twice: each number accepted exactly once */
START_TEST(window_accepts_each_once)
{
	for (unsigned trial = 0; trial < 200; trial++) {
		struct sync_window w;
		memset(&w, 0, sizeof(w));
		uint64_t order[16];
		for (int i = 0; i < 16; i++)
			order[i] = (uint64_t)(i % 8) * 97 + 1;
		unsigned r = trial * 2654435761u + 1;
		for (int i = 15; i > 0; i--) {
			r = r * 1103515245u + 12345u;
			int j = (int)(r % (unsigned)(i + 1));
			uint64_t t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		unsigned ok = 0;
		for (int i = 0; i < 16; i++)
			ok += sync_window_check(&w, 9, order[i]) == SYNC_OK;
		ck_assert_uint_eq(ok, 8);
	}
}
END_TEST

START_TEST(freshness)
{
	ck_assert_int_eq(sync_fresh(100 * NS, 130 * NS, 60 * NS), SYNC_OK);
	ck_assert_int_eq(sync_fresh(100 * NS, 161 * NS, 60 * NS), SYNC_DROP_STALE);
	ck_assert_int_eq(sync_fresh(200 * NS, 100 * NS, 60 * NS), SYNC_DROP_STALE);
	ck_assert_int_eq(sync_fresh(1, 1000 * NS, 0), SYNC_OK);
	ck_assert_str_eq(sync_drop_name(SYNC_DROP_AUTH), "auth");
	ck_assert_str_eq(sync_drop_name(SYNC_DROP_REPLAY), "replay");
}
END_TEST

/* ------------------------------------------------------------ the table's side */

static const struct ct_timeouts defaults = {
	CT_DEFAULT_TCP_ESTABLISHED, CT_DEFAULT_UDP, CT_DEFAULT_UDP_STREAM
};

struct told {
	struct ct_saved s[64];
	enum ct_change what[64];
	int n;
};

static void tell(void *arg, const struct ct_saved *s, enum ct_change what)
{
	struct told *t = arg;
	ck_assert_int_lt(t->n, 64);
	t->s[t->n] = *s;
	t->what[t->n++] = what;
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

/* A TCP handshake tells three changes (SYN-sent, SYN-received with a reply
 * seen, established); a packet that changes nothing tells nothing; the
 * expiry tells the flow gone. */
START_TEST(journal_tells_changes)
{
	struct conntrack *ct = ct_create(16);
	struct told t = { .n = 0 };
	ck_assert_int_eq(ct_set_journal(ct, tell, &t), 0);
	struct ct_tuple a = tup("10.0.1.5", "10.0.2.9", PROTO_TCP, 40000, 443), b = rev(&a);
	uint64_t now = 10 * NS;
	struct ct_entry *e = ct_insert(ct, 1, &a, ct_hash(&a), TCP_SYN, &defaults, now);
	ck_assert_ptr_nonnull(e);
	ct_update(ct, e, &b, TCP_SYN | TCP_ACK, &defaults, now);
	ct_update(ct, e, &a, TCP_ACK, &defaults, now);
	ct_update(ct, e, &b, TCP_ACK, &defaults, now + NS);
	ck_assert_int_eq(t.n, 3);
	ck_assert_int_eq(t.what[0], CT_CHANGE_UPSERT);
	ck_assert_uint_eq(t.s[0].tcp_state, CT_TCP_SYN_SENT);
	ck_assert_uint_eq(t.s[1].tcp_state, CT_TCP_SYN_RECV);
	ck_assert_uint_eq(t.s[1].flags & CT_SAVED_SEEN_REPLY, CT_SAVED_SEEN_REPLY);
	ck_assert_uint_eq(t.s[2].tcp_state, CT_TCP_ESTABLISHED);
	ck_assert_uint_eq(t.s[2].iface, 1);
	ck_assert(addr_eq(&t.s[2].orig.src, &a.src));
	ck_assert_uint_eq(t.s[2].deadline_ns, now + (uint64_t)CT_DEFAULT_TCP_ESTABLISHED * NS);
	/* UDP: told at the start, when answered, when a stream, then again
	 * only once a quarter of its timeout has passed */
	struct ct_tuple u = tup("10.0.1.5", "10.0.2.9", PROTO_UDP, 5353, 53), ur = rev(&u);
	t.n = 0;
	e = ct_insert(ct, 1, &u, ct_hash(&u), 0, &defaults, now);
	ct_update(ct, e, &ur, 0, &defaults, now);
	ct_update(ct, e, &u, 0, &defaults, now);
	ck_assert_int_eq(t.n, 3);
	ck_assert_uint_eq(t.s[2].flags, CT_SAVED_SEEN_REPLY | CT_SAVED_UDP_STREAM);
	for (uint64_t s = 1; s < CT_DEFAULT_UDP_STREAM / 4; s++)
		ct_update(ct, e, &u, 0, &defaults, now + s * NS);
	ck_assert_int_eq(t.n, 3);
	ct_update(ct, e, &u, 0, &defaults, now + (CT_DEFAULT_UDP_STREAM / 4 + 1) * NS);
	ck_assert_int_eq(t.n, 4);
	ck_assert_uint_eq(t.s[3].deadline_ns,
			  now + (CT_DEFAULT_UDP_STREAM / 4 + 1 + CT_DEFAULT_UDP_STREAM) * NS);
	/* expiry */
	t.n = 0;
	ck_assert_uint_eq(ct_expire(ct, now + 1000 * NS, 1u << 20), 1);
	ck_assert_int_eq(t.n, 1);
	ck_assert_int_eq(t.what[0], CT_CHANGE_GONE);
	ck_assert_uint_eq(t.s[0].orig.proto, PROTO_UDP);
	ct_destroy(ct);
}
END_TEST

/* What the peer tells is put in (a new flow: tracked, replies admitted by
 * it) or merged, and never told back. */
START_TEST(apply_and_forget)
{
	struct conntrack *ct = ct_create(16);
	struct told t = { .n = 0 };
	ck_assert_int_eq(ct_set_journal(ct, tell, &t), 0);
	uint64_t now = 10 * NS;
	struct ct_saved s;
	memset(&s, 0, sizeof(s));
	s.iface = 4;
	s.orig = tup("10.0.1.5", "10.0.2.9", PROTO_TCP, 40000, 443);
	s.tcp_state = CT_TCP_SYN_SENT;
	s.deadline_ns = now + 120 * NS;
	ck_assert_int_eq(ct_sync_apply(ct, &s, now), 0);
	struct ct_tuple r = rev(&s.orig);
	struct ct_entry *e = ct_lookup(ct, 4, &r, ct_hash(&r), now);
	ck_assert_ptr_nonnull(e);
	s.tcp_state = CT_TCP_ESTABLISHED;
	s.flags = CT_SAVED_SEEN_REPLY;
	s.deadline_ns = now + 1000 * NS;
	ck_assert_int_eq(ct_sync_apply(ct, &s, now), 1);
	struct ct_flow_info fi;
	ct_entry_info(e, &fi);
	ck_assert_int_eq(fi.tcp_state, CT_TCP_ESTABLISHED);
	ck_assert(fi.seen_reply);
	ck_assert_uint_eq(fi.expires_ns, now + 1000 * NS);
	/* an earlier deadline in the same state does not shorten it */
	s.deadline_ns = now + 500 * NS;
	ck_assert_int_eq(ct_sync_apply(ct, &s, now), 1);
	ct_entry_info(e, &fi);
	ck_assert_uint_eq(fi.expires_ns, now + 1000 * NS);
	ck_assert_int_eq(t.n, 0);       /* nothing told back */
	/* the reply, through this gateway: its own packets are told */
	ct_update(ct, e, &r, TCP_FIN | TCP_ACK, &defaults, now);
	ck_assert_int_eq(t.n, 1);
	ck_assert_uint_eq(t.s[0].tcp_state, CT_TCP_FIN_WAIT);
	/* a delete: kept while this gateway's own deadline is far ahead */
	ck_assert(!ct_sync_forget(ct, 4, &s.orig, now, 2 * NS));
	ck_assert(ct_sync_forget(ct, 4, &s.orig, now + (CT_TIMEOUT_TCP_FIN_WAIT - 1) * NS, 2 * NS));
	ck_assert_ptr_null(ct_lookup(ct, 4, &r, ct_hash(&r), now + (CT_TIMEOUT_TCP_FIN_WAIT - 1) * NS));
	ck_assert_int_eq(t.n, 1);       /* a peer's delete is not told back */
	/* invalid: a TCP state on UDP, a past deadline */
	s.orig.proto = PROTO_UDP;
	ck_assert_int_eq(ct_sync_apply(ct, &s, now), -1);
	s.orig.proto = PROTO_TCP;
	s.deadline_ns = now;
	ck_assert_int_eq(ct_sync_apply(ct, &s, now), -1);
	ct_destroy(ct);
}
END_TEST

static char dir[] = "/tmp/check_sync.XXXXXX";

static void write_file(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

START_TEST(key_file)
{
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[64], link[64], err[256];
	uint8_t k[SYNC_KEY_MAX];
	size_t len = 0;
	snprintf(path, sizeof(path), "%s/key", dir);
	snprintf(link, sizeof(link), "%s/link", dir);

	write_file(path, KEY "\n", 0600);
	ck_assert_int_eq(sync_key_read(path, k, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, 32);
	ck_assert_mem_eq(k, KEY, 32);
	write_file(path, KEY, 0400);
	ck_assert_int_eq(sync_key_read(path, k, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, 32);

	write_file(path, KEY "\n", 0640);
	ck_assert_int_eq(sync_key_read(path, k, &len, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "mode 0640") != NULL, "%s", err);
	write_file(path, KEY "\n", 0604);
	ck_assert_int_eq(sync_key_read(path, k, &len, err, sizeof(err)), -1);

	write_file(path, "short\n", 0600);
	ck_assert_int_eq(sync_key_read(path, k, &len, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "at least 16") != NULL, "%s", err);

	char *big = malloc(SYNC_KEY_MAX + 2);
	memset(big, 'k', SYNC_KEY_MAX + 1);
	big[SYNC_KEY_MAX + 1] = '\0';
	write_file(path, big, 0600);
	free(big);
	ck_assert_int_eq(sync_key_read(path, k, &len, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "longer than") != NULL, "%s", err);

	write_file(path, KEY, 0600);
	ck_assert_int_eq(symlink(path, link), 0);
	ck_assert_int_eq(sync_key_read(link, k, &len, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "symbolic link") != NULL, "%s", err);
	ck_assert_int_eq(sync_key_read(dir, k, &len, err, sizeof(err)), -1);
	snprintf(link, sizeof(link), "%s/none", dir);
	ck_assert_int_eq(sync_key_read(link, k, &len, err, sizeof(err)), -1);

	unlink(path);
	snprintf(link, sizeof(link), "%s/link", dir);
	unlink(link);
	rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sync");
	TCase *t = tcase_create("wire");
	tcase_add_checked_fixture(t, setup, NULL);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, round_trip);
	tcase_add_test(t, other_types);
	tcase_add_test(t, builder_fills_up);
	tcase_add_test(t, bad_mac_or_key_refused);
	tcase_add_test(t, truncated_refused_at_every_length);
	tcase_add_test(t, authenticated_but_malformed_refused_whole);
	tcase_add_test(t, replay_window);
	tcase_add_test(t, window_accepts_each_once);
	tcase_add_test(t, freshness);
	tcase_add_test(t, key_file);
	tcase_add_test(t, journal_tells_changes);
	tcase_add_test(t, apply_and_forget);
	suite_add_tcase(s, t);
	return run_suite(s);
}
