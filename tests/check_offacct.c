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

static struct offacct_counters cnt(uint32_t id, uint64_t op, uint64_t rp)
{
	return (struct offacct_counters){ .id = id, .packets = { op, rp },
					  .bytes = { op * 100, rp * 100 } };
}

static struct offacct_apply ctx(uint64_t now)
{
	return (struct offacct_apply){ .ct = ct, .now_ns = now, .wall_ns = now, .generation = 1 };
}

static struct offacct_stats stats(void)
{
	struct offacct_stats s;
	offacct_get_stats(a, 0, &s);
	return s;
}

static void serve(uint64_t now)
{
	struct offacct_apply x = ctx(now);
	offacct_serve(w, &x);
}

/* a packet of the flow (reply: the other way) with NFQUEUE id `id` */
static bool note(bool reply, uint32_t id, bool offloadable)
{
	struct packet q = pkt;
	if (reply) {
		q.src = pkt.dst;
		q.dst = pkt.src;
		q.sport = pkt.dport;
		q.dport = pkt.sport;
	}
	return offacct_note(w, &q, &acc, id, offloadable, track, 1, 0);
}

static const struct offacct_tuple orig_fwd = {
	.sport = 1000, .dport = 53, .family = FAMILY_V4, .proto = PROTO_UDP,
};

/* offers the flow (packet id `id`); the thread reads (op, rp) with the
 * queue at `seq` (before and after the reading); the next offloadable
 * packet is marked */
static uint32_t reg(uint32_t kid, uint64_t op, uint64_t rp, uint32_t id, uint32_t seq,
		    bool reply_is_orig)
{
	uint32_t h, got;
	struct offacct_tuple t, o = orig_fwd;

	o.src = reply_is_orig ? pkt.dst : pkt.src;
	o.dst = reply_is_orig ? pkt.src : pkt.dst;
	if (reply_is_orig) {
		o.sport = 53;
		o.dport = 1000;
	}
	ck_assert(!note(false, id, true));      /* not before its baseline */
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
	ck_assert(addr_eq(&t.src, &pkt.src));
	ck_assert(!note(false, id + 1, true));  /* still not */
	struct offacct_counters c = cnt(kid, op, rp);
	ck_assert(offacct_test_baseline(a, 0, h, &c, &o, seq, seq));
	serve(0);
	ck_assert(note(false, id + 2, true));   /* now */
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 0); /* not before the verdicts */
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'R');
	ck_assert_uint_eq(got, kid);
	return h;
}

static void sample(uint32_t id, uint64_t op, uint64_t rp, uint64_t now)
{
	struct offacct_counters c = cnt(id, op, rp);
	ck_assert(offacct_test_sample(a, 0, &c, true));
	serve(now);
}

static void round_end(uint64_t now)
{
	offacct_test_round(a, false);
	serve(now);
}

/* the kernel's count at the baseline is the flow logs' already; packets
 * queued after it are counted by the flow logs and subtracted */
START_TEST(growth_after_baseline)
{
	/* the baseline read with the queue at id 101: the offered packet (100)
	 * is in it, the next one (101) too, the marked one (102) not */
	reg(11, 3, 2, 100, 101, false);
	sample(11, 10, 7, 1 * S);
	ck_assert_uint_eq(stats().packets, 7 - 1 + 5);
	ck_assert_uint_eq(stats().bytes, 1100);
	/* the same reading again adds nothing; growth adds only itself */
	sample(11, 10, 7, 2 * S);
	ck_assert_uint_eq(stats().packets, 11);
	sample(11, 12, 7, 3 * S);
	ck_assert_uint_eq(stats().packets, 13);
	ck_assert_uint_eq(stats().registered, 1);
	ck_assert_uint_eq(stats().flows, 1);
}
END_TEST

/* queued while the baseline was read: after the reading, the flow logs
 * have them and the kernel's growth owes them */
START_TEST(queued_during_baseline)
{
	reg(12, 3, 2, 100, 100, false);         /* 101 and 102 came after */
	ck_assert(!note(true, 103, false));     /* a reply in flight */
	ck_assert(!note(true, 99, false));      /* an older one: in the baseline */
	sample(12, 10, 5, 1 * S);
	ck_assert_uint_eq(stats().packets, (7 - 2) + (3 - 1));
	ck_assert_uint_eq(stats().requeued, 2);
}
END_TEST

/* the entry's original direction is the reply's: directions follow it */
START_TEST(reply_is_original)
{
	reg(13, 2, 3, 100, 102, true);
	note(false, 103, false);                /* kernel reply direction */
	sample(13, 4, 9, 1 * S);
	ck_assert_uint_eq(stats().packets, 2 + 5);
	ck_assert_uint_eq(stats().bytes, 200 + 500);
	/* an idle flow vpcfwd does not track: deleted by its original tuple */
	round_end(2 * S);
	uint32_t h, id;
	struct offacct_tuple t;
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'D');
	ck_assert_uint_eq(id, 13);
	ck_assert(addr_eq(&t.src, &pkt.dst));
	ck_assert_uint_eq(t.sport, 53);
	ck_assert_uint_eq(t.dport, 1000);
	ck_assert_uint_eq(stats().flows, 0);
}
END_TEST

/* a reading taken after the kernel counted a queued packet but before the
 * worker saw it: the packet is owed by the next growth */
START_TEST(requeued_after_reading)
{
	reg(14, 3, 2, 100, 102, false);
	sample(14, 5, 2, 1 * S);
	ck_assert_uint_eq(stats().packets, 2);
	ck_assert(!note(false, 103, false));    /* already in that reading */
	sample(14, 8, 2, 2 * S);
	ck_assert_uint_eq(stats().packets, 2 + 3 - 1);
}
END_TEST

/* the mark cleared behind our back (a reload): a full dump catches up what
 * went round the queue; the flow is the queue's until offloaded again */
START_TEST(unmarked_caught_up)
{
	ct_insert(ct, 7, &tup, ct_hash(&tup), 0, &to, 0);
	reg(15, 3, 2, 100, 102, false);
	sample(15, 6, 4, 1 * S);
	round_end(1 * S);
	ck_assert_uint_eq(stats().packets, 5);
	round_end(2 * S);                       /* not in this dump: unmarked */
	ck_assert_uint_eq(stats().unmarked, 1);
	ck_assert(!note(false, 110, false));    /* on the queue now */
	struct offacct_counters c = cnt(15, 9, 5);
	uint32_t h, id;
	struct offacct_tuple t;
	/* the full dump finds it unmarked */
	ck_assert(offacct_test_sample(a, 0, &c, false));
	serve(3 * S);
	round_end(3 * S);
	ck_assert_uint_eq(stats().packets, 5 + (3 - 1) + 1);
	/* still accounted: offloadable again, it is marked at once, and what
	 * came through the queue meanwhile is owed by the next growth */
	ck_assert_uint_eq(stats().flows, 1);
	ck_assert(!note(false, 111, false));
	ck_assert(note(false, 112, true));
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'R');
	sample(15, 14, 5, 4 * S);
	ck_assert_uint_eq(stats().packets, 8 + (14 - 9) - 2);
}
END_TEST

/* Marked, yet a packet came through the queue: the accept rule missing or
 * the kernel entry replaced (a new connection of the same tuple).  Not
 * marked again blindly: a new entry would take the mark without a
 * baseline, bypassing the flow logs and the AWS timeout. */
START_TEST(marked_not_remarked)
{
	ct_insert(ct, 7, &tup, ct_hash(&tup), 0, &to, 0);
	reg(16, 3, 2, 100, 102, false);
	ck_assert(!note(false, 110, true));
	offacct_flush(w);
	uint32_t h, id;
	struct offacct_tuple t;
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 0);
	ck_assert_uint_eq(stats().registered, 1);
}
END_TEST

/* Not in a dump of the marked entries: lost.  Its next packet asks for a
 * reading of its tuple (once a round); no entry there, or another one (a
 * new connection of the tuple): let go, and its next offloadable packet
 * asks for a baseline of the new entry, marked only then and accounted
 * from that baseline. */
static uint32_t lose(uint32_t kid)
{
	uint32_t h, id;
	struct offacct_tuple t;

	ct_insert(ct, 7, &tup, ct_hash(&tup), 0, &to, 0);
	reg(kid, 3, 2, 100, 102, false);
	sample(kid, 6, 4, 1 * S);
	round_end(1 * S);
	ck_assert_uint_eq(stats().packets, 5);
	round_end(2 * S);                       /* not in this dump */
	ck_assert_uint_eq(stats().unmarked, 1);
	ck_assert(!note(false, 110, true));     /* not marked: its entry read first */
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'C');
	ck_assert(!note(false, 111, true));     /* asked once a round */
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 0);
	return h;
}

static void replaced_then_new(uint32_t old, uint32_t h)
{
	uint32_t id;
	struct offacct_tuple t;

	ck_assert_uint_eq(stats().replaced, 1);
	ck_assert_uint_eq(stats().flows, 0);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'F');
	ck_assert_uint_eq(id, old);
	/* the new entry: its own baseline, then the mark */
	reg(old + 1, 2, 1, 120, 121, false);
	sample(old + 1, 5, 1, 4 * S);
	ck_assert_uint_eq(stats().packets, 5 + (5 - 2) - 1);
	ck_assert_uint_eq(stats().registered, 2);
}

START_TEST(lost_entry_gone)
{
	uint32_t h = lose(17);
	ck_assert(offacct_test_check(a, 0, h, NULL, false));
	serve(3 * S);
	replaced_then_new(17, h);
}
END_TEST

START_TEST(lost_entry_replaced)
{
	uint32_t h = lose(20);
	struct offacct_counters c = cnt(99, 4, 4);      /* another connection's */
	ck_assert(offacct_test_check(a, 0, h, &c, false));
	serve(3 * S);
	ck_assert_uint_eq(stats().packets, 5);          /* nothing of it taken */
	replaced_then_new(20, h);
}
END_TEST

/* Lost, and its entry is there without the mark (cleared behind our back):
 * caught up, marked again at once */
START_TEST(lost_entry_unmarked)
{
	uint32_t h = lose(22), id;
	struct offacct_tuple t;
	struct offacct_counters c = cnt(22, 9, 5);
	ck_assert(offacct_test_check(a, 0, h, &c, false));
	serve(3 * S);
	/* 110 and 111 came through the queue: owed by the growth */
	ck_assert_uint_eq(stats().packets, 5 + (9 - 6) + (5 - 4) - 2);
	ck_assert_uint_eq(stats().replaced, 0);
	ck_assert(note(false, 112, true));
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'R');
	ck_assert_uint_eq(id, 22);
}
END_TEST

/* Lost, and not in a whole dump either (a take-back's): let go */
START_TEST(lost_not_in_full_dump)
{
	uint32_t h = lose(24);
	offacct_test_round(a, true);
	serve(3 * S);
	replaced_then_new(24, h);
}
END_TEST

/* Not in a dump of the marked entries, but in a dump of every entry
 * without the mark (a take-back): the same entry, caught up and marked
 * again at once. */
START_TEST(lost_found_unmarked)
{
	ct_insert(ct, 7, &tup, ct_hash(&tup), 0, &to, 0);
	reg(19, 3, 2, 100, 102, false);
	round_end(1 * S);                       /* not in this dump */
	ck_assert(!note(false, 110, true));
	struct offacct_counters c = cnt(19, 7, 2);
	ck_assert(offacct_test_sample(a, 0, &c, false));
	offacct_test_round(a, true);
	serve(2 * S);
	ck_assert_uint_eq(stats().replaced, 0);
	ck_assert_uint_eq(stats().packets, (7 - 3) - 1);  /* 110 came through the queue */
	ck_assert(note(false, 111, true));
	offacct_flush(w);
	uint32_t h, id;
	struct offacct_tuple t;
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'C');   /* asked for 110 */
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'R');
	ck_assert_uint_eq(id, 19);
}
END_TEST

/* vpcfwd's entry lives on while the kernel counts packets; idle, it expires
 * at its AWS timeout (UDP 30 s here) and the kernel entry is deleted */
START_TEST(idle_expiry)
{
	ct_insert(ct, 7, &tup, ct_hash(&tup), 0, &to, 0);
	reg(16, 1, 1, 100, 102, false);
	/* one direction only: not a stream (that would be 60 s) */
	for (uint64_t t = 10; t <= 100; t += 10) {
		sample(16, 1 + t, 1, t * S);
		round_end(t * S);
	}
	ck_assert_ptr_nonnull(ct_lookup(ct, 7, &tup, ct_hash(&tup), 125 * S));
	ck_assert_uint_eq(stats().flows, 1);
	/* idle from 100 s: still there at 129 s, gone at 131 s */
	sample(16, 101, 1, 120 * S);
	round_end(129 * S);
	ck_assert_uint_eq(stats().flows, 1);
	sample(16, 101, 1, 131 * S);
	round_end(131 * S);
	ck_assert_uint_eq(stats().flows, 0);
	ck_assert_uint_eq(stats().kernel_deleted, 1);
	uint32_t h, id;
	struct offacct_tuple t;
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'D');
	ck_assert_uint_eq(id, 16);
	ck_assert(addr_eq(&t.src, &pkt.src));
	ck_assert(addr_eq(&t.dst, &pkt.dst));
	ck_assert_uint_eq(t.sport, 1000);
	ck_assert_uint_eq(t.dport, 53);
	ck_assert_uint_eq(t.proto, PROTO_UDP);
}
END_TEST

/* A packet of the flow queued while its baseline was being read (its id
 * between the queue's positions before and after the reading) may or may
 * not be in the kernel's count: the baseline is refused and read again,
 * never guessed (a guess counts the packet twice or not at all: the bug
 * tests/lab/offload-acct.sh once caught as one packet too many). */
START_TEST(ambiguous_while_pending)
{
	uint32_t h, got;
	struct offacct_tuple t, o = orig_fwd;
	o.src = pkt.src;
	o.dst = pkt.dst;
	ck_assert(!note(false, 100, true));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
	ck_assert(!note(false, 101, true));     /* queued during the reading */
	struct offacct_counters c = cnt(21, 3, 2);
	ck_assert(offacct_test_baseline(a, 0, h, &c, &o, 100, 101));
	serve(0);
	ck_assert_uint_eq(stats().baselines, 0);
	ck_assert_uint_eq(stats().baseline_failures, 1);
	ck_assert(!note(false, 102, true));     /* not marked; not asked yet */
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 0);
	/* soon after, the next offloadable packet asks again */
	ck_assert(!offacct_note(w, &pkt, &acc, 103, true, track, 1, 3000000));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
	c = cnt(21, 4, 2);
	ck_assert(offacct_test_baseline(a, 0, h, &c, &o, 103, 103));
	serve(0);
	ck_assert_uint_eq(stats().baselines, 1);
	ck_assert(note(false, 104, true));
}
END_TEST

/* the same packet seen only after the answer: the flow is not marked, the
 * baseline is asked for again at once; a later packet marks it */
START_TEST(ambiguous_after_answer)
{
	uint32_t h, got;
	struct offacct_tuple t, o = orig_fwd;
	o.src = pkt.src;
	o.dst = pkt.dst;
	ck_assert(!note(false, 100, true));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
	struct offacct_counters c = cnt(22, 3, 2);
	ck_assert(offacct_test_baseline(a, 0, h, &c, &o, 100, 105));
	serve(0);
	ck_assert_uint_eq(stats().baselines, 1);
	ck_assert(!note(false, 103, true));     /* between: not marked, asks */
	ck_assert_uint_eq(stats().baseline_failures, 1);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
	ck_assert_uint_eq(stats().registered, 0);
	c = cnt(22, 4, 2);
	ck_assert(offacct_test_baseline(a, 0, h, &c, &o, 106, 106));
	serve(0);
	ck_assert(note(false, 107, true));
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'R');
	/* the kernel's growth after 4 packets is the flow logs' own */
	sample(22, 9, 2, 1 * S);
	ck_assert_uint_eq(stats().packets, 9 - 4 - 1);  /* 107 came on the queue */
}
END_TEST

/* A busy flow: more packets come while its baseline is read than
 * recent[] keeps.  The last ones are kept: if the oldest kept came before
 * the reading, so did every one overwritten, and the baseline holds (a
 * bulk transfer is offloaded mid-stream); if not, nobody can tell, and it
 * is read again soon (not a second later). */
START_TEST(busy_while_pending)
{
	uint32_t h, got;
	struct offacct_tuple t, o = orig_fwd;
	o.src = pkt.src;
	o.dst = pkt.dst;
	ck_assert(!note(false, 100, true));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
	for (uint32_t id = 101; id <= 140; id++)
		ck_assert(!note(false, id, true));
	/* 100..130 in the kernel's count; 131..140 came after */
	struct offacct_counters c = cnt(31, 31, 0);
	ck_assert(offacct_test_baseline(a, 0, h, &c, &o, 130, 130));
	serve(0);
	ck_assert_uint_eq(stats().baselines, 1);
	ck_assert_uint_eq(stats().baseline_failures, 0);
	ck_assert(note(false, 141, true));      /* marked */
	offacct_flush(w);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'R');
	/* 131..141 (11) came on the queue, 5 more in the kernel alone */
	sample(31, 31 + 11 + 5, 0, 1 * S);
	ck_assert_uint_eq(stats().packets, 5);
	ck_assert_uint_eq(stats().bytes, 500);
}
END_TEST

START_TEST(busy_while_pending_unknown)
{
	uint32_t h, got;
	struct offacct_tuple t, o = orig_fwd;
	o.src = pkt.src;
	o.dst = pkt.dst;
	ck_assert(!note(false, 100, true));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
	for (uint32_t id = 101; id <= 140; id++)
		ck_assert(!note(false, id, true));
	/* read with the queue at 110: 111..124 overwritten, before or after? */
	struct offacct_counters c = cnt(32, 11, 0);
	ck_assert(offacct_test_baseline(a, 0, h, &c, &o, 110, 110));
	serve(0);
	ck_assert_uint_eq(stats().baselines, 0);
	ck_assert_uint_eq(stats().baseline_failures, 1);
	ck_assert(!note(false, 141, true));     /* not marked */
	/* asked again 2 ms later, not a second */
	ck_assert(!offacct_note(w, &pkt, &acc, 142, true, track, 1, 3000000));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &got, &t), 'G');
}
END_TEST

/* no kernel entry (the kernel's table full, the flow untracked there): not
 * marked, not offloaded, counted (vpcfw_offload_no_conntrack_total); asked
 * again a second later */
START_TEST(no_baseline)
{
	uint32_t h, id;
	struct offacct_tuple t;
	ck_assert(!note(false, 1, true));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'G');
	ck_assert(offacct_test_baseline(a, 0, h, NULL, NULL, 0, 0));
	serve(0);
	ck_assert_uint_eq(stats().baseline_failures, 1);
	ck_assert_uint_eq(stats().noentry, 0);
	ck_assert(!note(false, 2, true));       /* not marked: the flow stays on the queue */
	ck_assert(!note(false, 3, true));
	ck_assert_uint_eq(stats().noentry, 2);
	ck_assert_uint_eq(stats().registered, 0);
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 0);
	ck_assert(!offacct_note(w, &pkt, &acc, 4, true, track, 1, 2 * S));
	ck_assert_int_eq(offacct_test_request(a, 0, &h, &id, &t), 'G');
}
END_TEST

START_TEST(full_refuses)
{
	for (uint32_t i = 1; i <= 16; i++) {
		struct packet q = pkt;
		q.sport = (uint16_t)(2000 + i);
		ck_assert(!offacct_note(w, &q, &acc, i, true, track, 1, 0));
	}
	ck_assert_uint_eq(stats().flows, 16);
	struct packet q = pkt;
	q.sport = 3000;
	ck_assert(!offacct_note(w, &q, &acc, 99, true, track, 1, 0));
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
	tcase_add_test(tc, queued_during_baseline);
	tcase_add_test(tc, reply_is_original);
	tcase_add_test(tc, requeued_after_reading);
	tcase_add_test(tc, unmarked_caught_up);
	tcase_add_test(tc, marked_not_remarked);
	tcase_add_test(tc, lost_entry_gone);
	tcase_add_test(tc, lost_entry_replaced);
	tcase_add_test(tc, lost_entry_unmarked);
	tcase_add_test(tc, lost_not_in_full_dump);
	tcase_add_test(tc, lost_found_unmarked);
	tcase_add_test(tc, idle_expiry);
	tcase_add_test(tc, no_baseline);
	tcase_add_test(tc, ambiguous_while_pending);
	tcase_add_test(tc, ambiguous_after_answer);
	tcase_add_test(tc, busy_while_pending);
	tcase_add_test(tc, busy_while_pending_unknown);
	tcase_add_test(tc, full_refuses);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
