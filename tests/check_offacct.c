/* Offloaded flows' accounting (offacct.h): the kernel's growth after the
 * marking packet's baseline becomes flow-log packets and bytes exactly once,
 * whatever also comes through the queue; activity keeps vpcfwd's entry
 * alive; an idle flow is let go at its AWS timeout with its kernel entry
 * deleted.  The dump thread's side is played by hand (offacct_test_*). */
#include <check.h>
#include <string.h>

#include "checkmain.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/offacct.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"

#define S 1000000000ull

static struct offacct *a;
static struct offacct_worker *w;
static struct conntrack *ct;
static struct packet pkt;               /* 10.0.0.1:1000 -> 10.0.1.1:53 udp */
static struct verdict acc;
static struct ct_tuple tup;
static const struct ct_timeouts to = { 432000, 30, 60 };
static struct offacct_track track[2];

static void setup(void)
{
	struct offacct_options o = { .n_workers = 1, .mark = 0x40000000, .flows_per_worker = 16,
				     .ring = 256 };
	a = offacct_create(&o);
	ck_assert_ptr_nonnull(a);
	w = offacct_worker(a, 0);
	ct = ct_create(64);
	memset(&pkt, 0, sizeof(pkt));
	pkt.src = addr_from_v4(0x0a000001);
	pkt.dst = addr_from_v4(0x0a000101);
	pkt.family = FAMILY_V4;
	pkt.proto = PROTO_UDP;
	pkt.sport = 1000;
	pkt.dport = 53;
	pkt.flags = PKT_F_L4;
	pkt.ip_len = 100;
	memset(&acc, 0, sizeof(acc));
	acc.accept = true;
	tup = (struct ct_tuple){ .src = pkt.src, .dst = pkt.dst, .sport = 1000, .dport = 53,
				 .proto = PROTO_UDP };
	memset(track, 0, sizeof(track));
	track[0].iface = 7;
	track[0].to = to;
}

static void teardown(void)
{
	offacct_destroy(a);
	ct_destroy(ct);
}

static struct offacct_counters cnt(uint32_t id, bool reply, uint64_t op, uint64_t rp)
{
	return (struct offacct_counters){ .id = id, .reply = reply, .packets = { op, rp },
					  .bytes = { op * 100, rp * 100 } };
}

static struct offacct_apply ctx(uint64_t now)
{
	return (struct offacct_apply){ .ct = ct, .now_ns = now, .wall_ns = now };
}

static struct offacct_stats stats(void)
{
	struct offacct_stats s;
	offacct_get_stats(a, 0, &s);
	return s;
}

/* registers flow `id` with the packet's counters (op, rp) as its baseline */
static void reg(uint32_t id, uint64_t op, uint64_t rp)
{
	struct offacct_counters c = cnt(id, false, op, rp);
	uint32_t got;
	struct offacct_tuple t;

	ck_assert(offacct_room(w));
	offacct_note(w, &c, &pkt, &acc, true, track);
	ck_assert_int_eq(offacct_test_request(a, 0, &got, &t), 0); /* not before the verdicts */
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &got, &t), 'R');
	ck_assert_uint_eq(got, id);
}

static void sample(uint32_t id, uint64_t op, uint64_t rp, uint64_t now)
{
	struct offacct_counters c = cnt(id, false, op, rp);
	struct offacct_apply x = ctx(now);
	ck_assert(offacct_test_sample(a, 0, &c));
	offacct_serve(w, &x);
}

static void round_end(uint64_t now)
{
	struct offacct_apply x = ctx(now);
	offacct_test_round(a);
	offacct_serve(w, &x);
}

START_TEST(growth_after_baseline)
{
	reg(11, 3, 2);
	sample(11, 10, 7, 1 * S);
	ck_assert_uint_eq(stats().packets, 7 + 5);
	ck_assert_uint_eq(stats().bytes, 1200);
	/* the same reading again adds nothing; growth adds only itself */
	sample(11, 10, 7, 2 * S);
	ck_assert_uint_eq(stats().packets, 12);
	sample(11, 12, 7, 3 * S);
	ck_assert_uint_eq(stats().packets, 14);
	ck_assert_uint_eq(stats().registered, 1);
	ck_assert_uint_eq(stats().flows, 1);
}
END_TEST

/* packets queued after the mark (in flight, or left to the queue) are in
 * the flow logs already: the kernel's growth is net of them */
START_TEST(requeued_counted_once)
{
	reg(12, 3, 2);
	struct offacct_counters c = cnt(12, false, 4, 2);       /* the next one, queued */
	offacct_note(w, &c, &pkt, &acc, false, track);
	c = cnt(12, true, 4, 3);                               /* its reply, queued */
	offacct_note(w, &c, &pkt, &acc, false, track);
	/* an older one still in the queue: before the baseline, nothing */
	c = cnt(12, false, 2, 2);
	offacct_note(w, &c, &pkt, &acc, false, track);
	ck_assert_uint_eq(stats().requeued, 2);
	sample(12, 10, 3, 1 * S);
	ck_assert_uint_eq(stats().packets, 6);                 /* 7 - 1 in orig, 1 - 1 in reply */
	ck_assert_uint_eq(stats().bytes, 600);
}
END_TEST

/* a reading taken after the kernel counted a queued packet but before the
 * worker saw it: the packet is owed by the next growth */
START_TEST(requeued_after_reading)
{
	reg(13, 3, 2);
	sample(13, 5, 2, 1 * S);
	ck_assert_uint_eq(stats().packets, 2);
	struct offacct_counters c = cnt(13, false, 5, 2);       /* already in that reading */
	offacct_note(w, &c, &pkt, &acc, false, track);
	sample(13, 8, 2, 2 * S);
	ck_assert_uint_eq(stats().packets, 2 + 3 - 1);
}
END_TEST

/* the mark cleared behind our back (a reload): the dump no longer finds the
 * flow; the next queued packet's counters catch up what went round us */
START_TEST(unmarked_caught_up)
{
	reg(14, 3, 2);
	ct_insert(ct, 7, &tup, ct_hash(&tup), 0, &to, 0);
	sample(14, 6, 4, 1 * S);
	ck_assert_uint_eq(stats().packets, 5);
	round_end(1 * S);
	sample(14, 8, 4, 2 * S);
	ck_assert_uint_eq(stats().packets, 7);
	round_end(2 * S);                       /* not in this dump: unmarked */
	ck_assert_uint_eq(stats().unmarked, 0);
	round_end(3 * S);
	ck_assert_uint_eq(stats().unmarked, 1);
	/* 3 more went round us in orig, 1 in reply, then this one queued */
	struct offacct_counters c = cnt(14, false, 12, 5);
	offacct_note(w, &c, &pkt, &acc, false, track);
	/* later queued packets are the queue's own */
	c = cnt(14, true, 12, 6);
	offacct_note(w, &c, &pkt, &acc, false, track);
	round_end(4 * S);
	ck_assert_uint_eq(stats().packets, 7 + 3 + 1);
	ck_assert_uint_eq(stats().flows, 0);
	uint32_t id;
	struct offacct_tuple t;
	ck_assert_int_eq(offacct_test_request(a, 0, &id, &t), 'F');
	ck_assert_uint_eq(id, 14);
}
END_TEST

/* vpcfwd's entry lives on while the kernel counts packets; idle, it expires
 * at its AWS timeout (UDP 30 s here) and the kernel entry is deleted */
START_TEST(idle_expiry)
{
	ct_insert(ct, 7, &tup, ct_hash(&tup), 0, &to, 0);
	reg(15, 1, 1);
	/* one direction only: not a stream (that would be 60 s) */
	for (uint64_t t = 10; t <= 100; t += 10) {
		sample(15, 1 + t, 1, t * S);
		round_end(t * S);
	}
	ck_assert_ptr_nonnull(ct_lookup(ct, 7, &tup, ct_hash(&tup), 125 * S));
	ck_assert_uint_eq(stats().flows, 1);
	/* idle from 100 s: still there at 129 s, gone at 131 s */
	sample(15, 101, 1, 120 * S);
	round_end(129 * S);
	ck_assert_uint_eq(stats().flows, 1);
	sample(15, 101, 1, 131 * S);
	round_end(131 * S);
	ck_assert_uint_eq(stats().flows, 0);
	ck_assert_uint_eq(stats().kernel_deleted, 1);
	uint32_t id;
	struct offacct_tuple t;
	ck_assert_int_eq(offacct_test_request(a, 0, &id, &t), 'D');
	ck_assert_uint_eq(id, 15);
	ck_assert(addr_eq(&t.src, &pkt.src));
	ck_assert(addr_eq(&t.dst, &pkt.dst));
	ck_assert_uint_eq(t.sport, 1000);
	ck_assert_uint_eq(t.dport, 53);
	ck_assert_uint_eq(t.proto, PROTO_UDP);
}
END_TEST

/* marked from its reply side: the kernel's original direction is the other
 * one, and the deletion names it */
START_TEST(reply_side_template)
{
	struct offacct_counters c = cnt(16, true, 2, 1);
	offacct_note(w, &c, &pkt, &acc, true, track);
	offacct_flush(w);
	uint32_t id;
	struct offacct_tuple t;
	ck_assert_int_eq(offacct_test_request(a, 0, &id, &t), 'R');
	round_end(100 * S); /* vpcfwd tracks nothing of it */
	ck_assert_int_eq(offacct_test_request(a, 0, &id, &t), 'D');
	ck_assert(addr_eq(&t.src, &pkt.dst));
	ck_assert_uint_eq(t.sport, 53);
	ck_assert_uint_eq(t.dport, 1000);
}
END_TEST

START_TEST(full_refuses)
{
	for (uint32_t i = 1; i <= 16; i++) {
		struct offacct_counters c = cnt(100 + i, false, 1, 1);
		offacct_note(w, &c, &pkt, &acc, true, track);
		offacct_flush(w);
	}
	ck_assert(!offacct_room(w));
	struct offacct_counters c = cnt(200, false, 1, 1);
	offacct_note(w, &c, &pkt, &acc, true, track);
	ck_assert_uint_eq(stats().refused_full, 1);
	ck_assert_uint_eq(stats().flows, 16);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("offacct");
	TCase *tc = tcase_create("offacct");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, growth_after_baseline);
	tcase_add_test(tc, requeued_counted_once);
	tcase_add_test(tc, requeued_after_reading);
	tcase_add_test(tc, unmarked_caught_up);
	tcase_add_test(tc, idle_expiry);
	tcase_add_test(tc, reply_side_template);
	tcase_add_test(tc, full_refuses);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
