/* Connection tracking (SPEC §4; VPC user guide "security-group-connection-tracking"). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/packet.h"

#define NS 1000000000ULL
/* A pcap-like epoch: the replay clock starts at a capture's wall time. */
#define T0 (1700000000ULL * NS)

static uint64_t at(double s)
{
	return T0 + (uint64_t)(s * 1e9);
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

static struct ct_tuple rev(const struct ct_tuple *t)
{
	struct ct_tuple r = *t;
	r.src = t->dst;
	r.dst = t->src;
	r.sport = t->dport;
	r.dport = t->sport;
	return r;
}

static const struct ct_timeouts defaults = {
	CT_DEFAULT_TCP_ESTABLISHED, CT_DEFAULT_UDP, CT_DEFAULT_UDP_STREAM
};

static struct ct_entry *find(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			     uint64_t now)
{
	return ct_lookup(ct, iface, t, ct_hash(t), now);
}

static struct ct_entry *insert(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			       uint8_t flags, const struct ct_timeouts *to, uint64_t now)
{
	return ct_insert(ct, iface, t, ct_hash(t), flags, to, now);
}

static struct ct_flow_info info_of(const struct ct_entry *e)
{
	struct ct_flow_info fi;
	ck_assert_ptr_nonnull(e);
	ct_entry_info(e, &fi);
	return fi;
}

static uint64_t used(const struct conntrack *ct)
{
	struct ct_stats st;
	ct_get_stats(ct, &st);
	return st.used;
}

/* Alive one nanosecond before the deadline, gone at it (and freed). */
static void assert_expires_at(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			      uint64_t deadline)
{
	struct ct_tuple r = rev(t);
	uint64_t n = used(ct);
	ck_assert_ptr_nonnull(find(ct, iface, t, deadline - 1));
	ck_assert_ptr_nonnull(find(ct, iface, &r, deadline - 1));
	ck_assert_ptr_null(find(ct, iface, &r, deadline));
	ck_assert_uint_eq(used(ct), n - 1);
	ck_assert_ptr_null(find(ct, iface, t, deadline));
}

START_TEST(test_lookup_both_directions)
{
	struct conntrack *ct = ct_create(16);
	struct ct_tuple t = tup("10.0.1.10", "198.51.100.7", PROTO_TCP, 40000, 443);
	struct ct_tuple r = rev(&t);
	struct ct_entry *e = insert(ct, 7, &t, TCP_SYN, &defaults, at(0));
	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_eq(find(ct, 7, &t, at(1)), e);
	ck_assert_ptr_eq(find(ct, 7, &r, at(1)), e);

	struct ct_flow_info fi = info_of(e);
	ck_assert_uint_eq(fi.iface, 7);
	ck_assert(addr_eq(&fi.orig.src, &t.src));
	ck_assert(addr_eq(&fi.orig.dst, &t.dst));
	ck_assert_uint_eq(fi.orig.sport, 40000);
	ck_assert_uint_eq(fi.orig.dport, 443);
	ck_assert_uint_eq(fi.orig.proto, PROTO_TCP);
	ck_assert(!fi.seen_reply);

	/* Half-swapped tuples are other flows. */
	struct ct_tuple x = t;
	x.sport = 443;
	x.dport = 40000;
	ck_assert_ptr_null(find(ct, 7, &x, at(1)));
	x = t;
	x.src = t.dst;
	x.dst = t.src;
	ck_assert_ptr_null(find(ct, 7, &x, at(1)));
	x = t;
	x.proto = PROTO_UDP;
	ck_assert_ptr_null(find(ct, 7, &x, at(1)));
	ct_destroy(ct);
}
END_TEST

START_TEST(test_iface_is_part_of_the_key)
{
	struct conntrack *ct = ct_create(16);
	struct ct_tuple t = tup("10.0.1.10", "10.0.2.20", PROTO_UDP, 5000, 53);
	struct ct_tuple r = rev(&t);
	struct ct_entry *a = insert(ct, 1, &t, 0, &defaults, at(0));
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_null(find(ct, 2, &t, at(1)));
	ck_assert_ptr_null(find(ct, 2, &r, at(1)));
	/* The same packet tracked at the destination interface too: two flows. */
	struct ct_entry *b = insert(ct, 2, &t, 0, &defaults, at(0));
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	ck_assert_uint_eq(used(ct), 2);
	ck_assert_ptr_eq(find(ct, 1, &r, at(1)), a);
	ck_assert_ptr_eq(find(ct, 2, &r, at(1)), b);
	ct_remove(ct, a);
	ck_assert_ptr_null(find(ct, 1, &t, at(1)));
	ck_assert_ptr_eq(find(ct, 2, &t, at(1)), b);
	ct_destroy(ct);
}
END_TEST

START_TEST(test_same_host_both_ends)
{
	/* src == dst: only the ports tell the directions apart. */
	struct conntrack *ct = ct_create(16);
	struct ct_tuple t = tup("2001:db8::1", "2001:db8::1", PROTO_UDP, 1000, 2000);
	struct ct_tuple r = rev(&t);
	struct ct_entry *e = insert(ct, 3, &t, 0, &defaults, at(0));
	ct_update(ct, e, &t, 0, &defaults, at(1));
	ck_assert(!info_of(e).seen_reply);
	ck_assert_ptr_eq(find(ct, 3, &r, at(1)), e);
	ct_update(ct, e, &r, 0, &defaults, at(2));
	ck_assert(info_of(e).seen_reply);
	ct_destroy(ct);
}
END_TEST

static const struct {
	const char *src, *dst;
	int proto, sport, dport;
} hash_cases[] = {
	{ "10.0.1.10", "198.51.100.7", PROTO_TCP, 40000, 443 },
	{ "198.51.100.7", "10.0.1.10", PROTO_TCP, 443, 40000 },
	{ "10.0.0.1", "10.0.0.1", PROTO_UDP, 53, 5353 },
	{ "10.0.0.1", "10.0.0.1", PROTO_UDP, 7, 7 },
	{ "2001:db8::1", "2001:db8:ffff::2", PROTO_ICMPV6, 77, 77 },
	{ "0.0.0.0", "255.255.255.255", 47, 0, 0 },
	{ "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROTO_TCP, 0, 65535 },
};

START_TEST(test_hash_symmetric)
{
	struct ct_tuple t = tup(hash_cases[_i].src, hash_cases[_i].dst, hash_cases[_i].proto,
				hash_cases[_i].sport, hash_cases[_i].dport);
	struct ct_tuple r = rev(&t);
	ck_assert_uint_eq(ct_hash(&t), ct_hash(&r));
	/* ... and it depends on each field. */
	struct ct_tuple x = t;
	x.proto ^= 1;
	ck_assert_uint_ne(ct_hash(&t), ct_hash(&x));
	x = t;
	x.sport ^= 1;
	ck_assert_uint_ne(ct_hash(&t), ct_hash(&x));
	x = t;
	x.dport ^= 0x100;
	ck_assert_uint_ne(ct_hash(&t), ct_hash(&x));
	x = t;
	x.src.lo ^= 1;
	ck_assert_uint_ne(ct_hash(&t), ct_hash(&x));
	x = t;
	x.dst.hi ^= 1ULL << 63;
	ck_assert_uint_ne(ct_hash(&t), ct_hash(&x));
}
END_TEST

/* ---------------------------------------------------------------- TCP */

enum { O = 0, R = 1 }; /* who sends: the originator or the replier */
#define EST 0          /* expected timeout: the interface's tcp_established */

struct step {
	int dir;
	uint8_t flags;
	enum ct_tcp_state state;
	uint32_t timeout;
};

static const struct tcp_case {
	const char *name;
	bool swapped;   /* the originator is now the first packet's destination */
	struct step steps[12];
} tcp_cases[] = {
	{ "three-way handshake", false, {
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ R, TCP_SYN | TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ O, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ R, TCP_ACK | TCP_PSH, CT_TCP_ESTABLISHED, EST } } },
	{ "SYN retransmitted stays SYN_SENT", false, {
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT } } },
	{ "originator's ACK before SYN+ACK does not establish", false, {
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ O, TCP_ACK, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT } } },
	{ "SYN+ACK from the originator does not advance", false, {
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ O, TCP_SYN | TCP_ACK, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT } } },
	{ "replier's ACK in SYN_RECV does not establish", false, {
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ R, TCP_SYN | TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV } } },
	{ "active close by the originator", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ R, TCP_ACK, CT_TCP_CLOSE_WAIT, CT_TIMEOUT_TCP_CLOSE_WAIT },
		{ R, TCP_FIN | TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK },
		{ O, TCP_ACK, CT_TCP_TIME_WAIT, CT_TIMEOUT_TCP_TIME_WAIT },
		{ O, TCP_ACK, CT_TCP_TIME_WAIT, CT_TIMEOUT_TCP_TIME_WAIT } } },
	{ "active close by the replier, FINs back to back", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ R, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK },
		{ R, TCP_ACK, CT_TCP_TIME_WAIT, CT_TIMEOUT_TCP_TIME_WAIT } } },
	{ "FIN retransmitted by the same side stays FIN_WAIT", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ O, TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT } } },
	{ "LAST_ACK waits for the first closer's ACK", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ R, TCP_FIN | TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK },
		{ R, TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK },
		{ O, TCP_ACK, CT_TCP_TIME_WAIT, CT_TIMEOUT_TCP_TIME_WAIT } } },
	{ "RST in SYN_SENT", false, {
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ R, TCP_RST | TCP_ACK, CT_TCP_CLOSE, CT_TIMEOUT_TCP_CLOSE },
		{ R, TCP_ACK, CT_TCP_CLOSE, CT_TIMEOUT_TCP_CLOSE } } },
	{ "RST in ESTABLISHED", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_RST, CT_TCP_CLOSE, CT_TIMEOUT_TCP_CLOSE } } },
	{ "RST in FIN_WAIT", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_FIN, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ R, TCP_RST, CT_TCP_CLOSE, CT_TIMEOUT_TCP_CLOSE } } },
	{ "SYN in ESTABLISHED changes nothing", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_SYN, CT_TCP_ESTABLISHED, EST } } },
	/* nf_conntrack's loose pickup is unassured until the other side
	 * answers: embryonic (SYN-received timeout, evictable), and more
	 * packets from the same side do not establish it */
	{ "mid-stream pickup: ACK, confirmed by the other side", false, {
		{ O, TCP_ACK | TCP_PSH, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST } } },
	{ "mid-stream pickup: SYN+ACK", false, {
		{ O, TCP_SYN | TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST } } },
	{ "mid-stream pickup: FIN", false, {
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ R, TCP_FIN | TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK } } },
	{ "mid-stream pickup: RST", false, {
		{ O, TCP_RST, CT_TCP_CLOSE, CT_TIMEOUT_TCP_CLOSE } } },
	{ "SYN after TIME_WAIT reuses the port", false, {
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ R, TCP_SYN | TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ O, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ R, TCP_FIN | TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK },
		{ O, TCP_ACK, CT_TCP_TIME_WAIT, CT_TIMEOUT_TCP_TIME_WAIT },
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ R, TCP_SYN | TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV } } },
	{ "port reuse forgets who closed first", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ R, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK },
		{ R, TCP_ACK, CT_TCP_TIME_WAIT, CT_TIMEOUT_TCP_TIME_WAIT },
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ R, TCP_SYN | TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ O, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ R, TCP_ACK, CT_TCP_CLOSE_WAIT, CT_TIMEOUT_TCP_CLOSE_WAIT } } },
	{ "SYN after CLOSE reuses the port", false, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ R, TCP_RST, CT_TCP_CLOSE, CT_TIMEOUT_TCP_CLOSE },
		{ O, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT } } },
	{ "SYN from the replier after TIME_WAIT makes it the originator", true, {
		{ O, TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST },
		{ O, TCP_FIN | TCP_ACK, CT_TCP_FIN_WAIT, CT_TIMEOUT_TCP_FIN_WAIT },
		{ R, TCP_FIN | TCP_ACK, CT_TCP_LAST_ACK, CT_TIMEOUT_TCP_LAST_ACK },
		{ O, TCP_ACK, CT_TCP_TIME_WAIT, CT_TIMEOUT_TCP_TIME_WAIT },
		{ R, TCP_SYN, CT_TCP_SYN_SENT, CT_TIMEOUT_TCP_SYN_SENT },
		{ O, TCP_SYN | TCP_ACK, CT_TCP_SYN_RECV, CT_TIMEOUT_TCP_SYN_RECV },
		{ R, TCP_ACK, CT_TCP_ESTABLISHED, EST } } },
};

/* Each step one second after the previous; after the last step the flow
 * must expire exactly at now + the state's timeout. */
START_TEST(test_tcp)
{
	const struct tcp_case *c = &tcp_cases[_i];
	const struct ct_timeouts to = { 3600, 30, 180 };
	struct conntrack *ct = ct_create(8);
	struct ct_tuple t[2];
	t[O] = tup("10.0.1.10", "198.51.100.7", PROTO_TCP, 40000, 443);
	t[R] = rev(&t[O]);
	struct ct_entry *e = NULL;
	uint64_t now = 0, deadline = 0;
	for (int k = 0; k < 12 && c->steps[k].flags; k++) {
		const struct step *s = &c->steps[k];
		now = at(k);
		if (k == 0) {
			e = insert(ct, 1, &t[s->dir], s->flags, &to, now);
		} else {
			ck_assert_ptr_eq(find(ct, 1, &t[s->dir], now), e);
			ct_update(ct, e, &t[s->dir], s->flags, &to, now);
		}
		struct ct_flow_info fi = info_of(e);
		ck_assert_msg(fi.tcp_state == s->state, "%s: step %d: state %d, expected %d",
			      c->name, k, fi.tcp_state, s->state);
		if (fi.tcp_state == CT_TCP_SYN_SENT)
			ck_assert_msg(!fi.seen_reply, "%s: step %d: SYN_SENT after a reply", c->name, k);
		deadline = now + (uint64_t)(s->timeout == EST ? to.tcp_established : s->timeout) * NS;
		ck_assert_msg(fi.expires_ns == deadline, "%s: step %d: timeout %.0f s",
			      c->name, k, (double)(fi.expires_ns - now) / 1e9);
	}
	struct ct_flow_info fi = info_of(e);
	const struct ct_tuple *orig = &t[c->swapped ? R : O];
	ck_assert(addr_eq(&fi.orig.src, &orig->src));
	ck_assert_uint_eq(fi.orig.sport, orig->sport);
	assert_expires_at(ct, 1, &t[O], deadline);
	ct_destroy(ct);
}
END_TEST

START_TEST(test_lookup_does_not_refresh)
{
	struct conntrack *ct = ct_create(4);
	struct ct_tuple t = tup("10.0.1.10", "198.51.100.7", PROTO_TCP, 40000, 443);
	insert(ct, 1, &t, TCP_SYN, &defaults, at(0));
	for (int s = 1; s < 120; s += 7)
		ck_assert_ptr_nonnull(find(ct, 1, &t, at(s)));
	ck_assert_ptr_null(find(ct, 1, &t, at(CT_TIMEOUT_TCP_SYN_SENT)));
	ct_destroy(ct);
}
END_TEST

/* ---------------------------------------------------------------- UDP, ICMP, other */

static const struct udp_case {
	const char *name;
	struct ct_timeouts to;
	const char *dirs;       /* packets, originator 'o' or replier 'r'; each 1 s apart */
	bool stream;
	uint32_t timeout;
} udp_cases[] = {
	{ "one packet", { 3600, 30, 180 }, "o", false, 30 },
	{ "one packet, udp timeout 60", { 3600, 60, 180 }, "o", false, 60 },
	{ "one direction only", { 3600, 45, 180 }, "ooooo", false, 45 },
	{ "request and response", { 3600, 30, 180 }, "or", false, 30 },
	{ "several responses", { 3600, 30, 180 }, "orrr", false, 30 },
	{ "second request after a response: stream", { 3600, 30, 180 }, "oro", true, 180 },
	{ "stream, udp_stream 60", { 3600, 30, 60 }, "oror", true, 60 },
	{ "stream, udp_stream 120", { 3600, 50, 120 }, "orrroo", true, 120 },
};

START_TEST(test_udp)
{
	const struct udp_case *c = &udp_cases[_i];
	struct conntrack *ct = ct_create(8);
	struct ct_tuple t = tup("10.0.1.10", "10.0.9.53", PROTO_UDP, 33333, 53);
	struct ct_tuple r = rev(&t);
	struct ct_entry *e = insert(ct, 4, &t, 0, &c->to, at(0));
	ck_assert(!info_of(e).udp_stream);
	size_t n = strlen(c->dirs);
	for (size_t k = 1; k < n; k++)
		ct_update(ct, e, c->dirs[k] == 'o' ? &t : &r, 0, &c->to, at((double)k));
	struct ct_flow_info fi = info_of(e);
	ck_assert_msg(fi.udp_stream == c->stream, "%s", c->name);
	ck_assert_msg(fi.seen_reply == (strchr(c->dirs, 'r') != NULL), "%s", c->name);
	ck_assert_int_eq(fi.tcp_state, CT_TCP_NONE);
	uint64_t deadline = at((double)(n - 1)) + (uint64_t)c->timeout * NS;
	ck_assert_msg(fi.expires_ns == deadline, "%s: %.0f s", c->name,
		      (double)(fi.expires_ns - at((double)(n - 1))) / 1e9);
	assert_expires_at(ct, 4, &t, deadline);
	ct_destroy(ct);
}
END_TEST

static const struct {
	const char *src, *dst;
	int proto, id;
	uint32_t timeout;
} fixed_cases[] = {
	{ "10.0.1.10", "8.8.8.8", PROTO_ICMP, 1234, CT_TIMEOUT_ICMP },
	{ "2001:db8::10", "2001:db8:1::1", PROTO_ICMPV6, 99, CT_TIMEOUT_ICMP },
	{ "10.0.1.10", "10.0.2.10", 47, 0, CT_TIMEOUT_OTHER },        /* GRE */
	{ "10.0.1.10", "10.0.2.10", 50, 0, CT_TIMEOUT_OTHER },        /* ESP */
	{ "2001:db8::10", "2001:db8:1::1", 132, 0, CT_TIMEOUT_OTHER }, /* SCTP: no ports here */
};

/* ICMP 30 s, other protocols 600 s (SPEC §4), whatever the interface says
 * and after a reply too. */
START_TEST(test_fixed_timeouts)
{
	const struct ct_timeouts to = { 60, 60, 60 };
	struct conntrack *ct = ct_create(8);
	struct ct_tuple t = tup(fixed_cases[_i].src, fixed_cases[_i].dst, fixed_cases[_i].proto,
				fixed_cases[_i].id, fixed_cases[_i].id);
	struct ct_tuple r = rev(&t);
	uint64_t to_ns = (uint64_t)fixed_cases[_i].timeout * NS;
	struct ct_entry *e = insert(ct, 9, &t, 0, &to, at(0));
	ck_assert_uint_eq(info_of(e).expires_ns, at(0) + to_ns);
	ck_assert_ptr_eq(find(ct, 9, &r, at(5)), e);
	ct_update(ct, e, &r, 0, &to, at(5));
	ct_update(ct, e, &t, 0, &to, at(6));
	ck_assert(!info_of(e).udp_stream);
	ck_assert(info_of(e).seen_reply);
	ck_assert_uint_eq(info_of(e).expires_ns, at(6) + to_ns);
	assert_expires_at(ct, 9, &t, at(6) + to_ns);
	ct_destroy(ct);
}
END_TEST

/* ---------------------------------------------------------------- table limits */

static struct ct_tuple nth(int i, int proto)
{
	struct ct_tuple t;
	memset(&t, 0, sizeof(t));
	t.src = addr_from_v4(0xCB000000u + (uint32_t)i);     /* 203.0.0.0/8 */
	t.dst = addr_from_v4(0x0A000105u);                   /* 10.0.1.5 */
	t.sport = (uint16_t)(1024 + i % 60000);
	t.dport = 443;
	t.proto = (uint8_t)proto;
	return t;
}

/* A mid-stream pickup answered by the other side: established. */
static struct ct_entry *insert_confirmed(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
					 uint64_t now)
{
	struct ct_entry *e = insert(ct, iface, t, TCP_ACK, &defaults, now);
	if (e) {
		struct ct_tuple r = rev(t);
		ct_update(ct, e, &r, TCP_ACK, &defaults, now);
	}
	return e;
}

/* A lone ACK must not hold a slot for days: until answered it is embryonic
 * and is evicted first when the table is full. */
START_TEST(test_unanswered_pickup_is_evictable)
{
	struct conntrack *ct = ct_create(2);
	struct ct_tuple t[3];
	for (int i = 0; i < 3; i++)
		t[i] = nth(i, PROTO_TCP);
	ck_assert_ptr_nonnull(insert(ct, 1, &t[0], TCP_ACK, &defaults, at(0)));
	ck_assert_ptr_nonnull(insert(ct, 1, &t[1], TCP_ACK, &defaults, at(1)));
	ck_assert_int_eq(info_of(find(ct, 1, &t[0], at(1))).tcp_state, CT_TCP_SYN_RECV);
	/* a real client's SYN finds room: the oldest pickup is evicted... */
	ck_assert_ptr_nonnull(insert(ct, 1, &t[2], TCP_SYN, &defaults, at(2)));
	ck_assert_ptr_null(find(ct, 1, &t[0], at(2)));
	/* ...and the unanswered pickups idle out after SYN-received's 60 s */
	ck_assert_ptr_null(find(ct, 1, &t[1], at(1) + (uint64_t)CT_TIMEOUT_TCP_SYN_RECV * NS));
	ct_destroy(ct);
}
END_TEST

START_TEST(test_full_table_evicts_embryonic_oldest_first)
{
	struct conntrack *ct = ct_create(4);
	struct ct_stats st;
	struct ct_tuple t[8];
	for (int i = 0; i < 8; i++)
		t[i] = nth(i, PROTO_TCP);

	ck_assert_uint_eq(ct_available(ct), 4);
	/* 0, 1, 2 embryonic (in that order), 3 established. */
	for (int i = 0; i < 3; i++)
		ck_assert_ptr_nonnull(insert(ct, 1, &t[i], TCP_SYN, &defaults, at(i)));
	ck_assert_ptr_nonnull(insert_confirmed(ct, 1, &t[3], at(3)));
	ck_assert_uint_eq(ct_available(ct), 0);
	/* 0 advances to SYN_RECV: still embryonic, still the oldest. */
	struct ct_tuple r0 = rev(&t[0]);
	ct_update(ct, find(ct, 1, &r0, at(4)), &r0, TCP_SYN | TCP_ACK, &defaults, at(4));
	ck_assert_int_eq(info_of(find(ct, 1, &t[0], at(4))).tcp_state, CT_TCP_SYN_RECV);

	ck_assert_ptr_nonnull(insert_confirmed(ct, 1, &t[4], at(5)));
	ck_assert_ptr_null(find(ct, 1, &t[0], at(5)));
	ck_assert_ptr_nonnull(find(ct, 1, &t[1], at(5)));

	/* 1 becomes established; 2 is now the only embryonic flow. */
	struct ct_tuple r1 = rev(&t[1]);
	ct_update(ct, find(ct, 1, &t[1], at(6)), &r1, TCP_SYN | TCP_ACK, &defaults, at(6));
	ct_update(ct, find(ct, 1, &t[1], at(6)), &t[1], TCP_ACK, &defaults, at(6));
	ck_assert_ptr_nonnull(insert(ct, 1, &t[5], TCP_SYN, &defaults, at(7)));
	ck_assert_ptr_null(find(ct, 1, &t[2], at(7)));
	ck_assert_ptr_nonnull(find(ct, 1, &t[1], at(7)));

	/* 5 is embryonic and goes next; then nothing can be evicted. */
	ck_assert_ptr_nonnull(insert_confirmed(ct, 1, &t[6], at(8)));
	ck_assert_ptr_null(find(ct, 1, &t[5], at(8)));
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.evicted_embryonic, 3);
	ck_assert_uint_eq(st.allowance_exceeded, 0);

	ck_assert_ptr_null(insert(ct, 1, &t[7], TCP_SYN, &defaults, at(9)));
	ck_assert_ptr_null(insert(ct, 1, &t[7], TCP_ACK, &defaults, at(9)));
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.allowance_exceeded, 2);
	ck_assert_uint_eq(st.evicted_embryonic, 3);
	ck_assert_uint_eq(st.used, 4);
	ck_assert_uint_eq(st.max, 4);
	ck_assert_uint_eq(st.inserted, 7);
	ck_assert_uint_eq(ct_available(ct), 0);
	static const int kept[] = { 1, 3, 4, 6 };
	for (int k = 0; k < 4; k++)
		ck_assert_ptr_nonnull(find(ct, 1, &t[kept[k]], at(9)));

	/* Removing one makes room again. */
	ct_remove(ct, find(ct, 1, &t[3], at(10)));
	ck_assert_uint_eq(ct_available(ct), 1);
	ck_assert_ptr_nonnull(insert(ct, 1, &t[7], TCP_ACK, &defaults, at(10)));
	ct_destroy(ct);
}
END_TEST

/* A full table reclaims expired flows before it refuses: here within one
 * call, as the table has no more buckets than one reclaim sweeps (16). */
START_TEST(test_full_table_reuses_expired)
{
	struct conntrack *ct = ct_create(16);
	struct ct_stats st;
	for (int i = 0; i < 15; i++) {
		struct ct_tuple t = nth(i, PROTO_UDP);
		ck_assert_ptr_nonnull(insert(ct, 1, &t, 0, &defaults, at(0)));
	}
	/* An embryonic flow, alive: it must not be evicted while expired flows
	 * can make room. */
	struct ct_tuple syn = nth(99, PROTO_TCP);
	ck_assert_ptr_nonnull(insert(ct, 1, &syn, TCP_SYN, &defaults, at(0)));
	ck_assert_uint_eq(ct_available(ct), 0);
	/* 15 UDP flows expired at 30 s and never looked at: room is found anyway. */
	for (int i = 16; i < 31; i++) {
		struct ct_tuple t = nth(i, PROTO_UDP);
		ck_assert_ptr_nonnull(insert(ct, 1, &t, 0, &defaults, at(30)));
	}
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.allowance_exceeded, 0);
	ck_assert_uint_eq(st.evicted_embryonic, 0);
	ck_assert_uint_eq(st.expired, 15);
	ck_assert_uint_eq(st.used, 16);
	ck_assert_ptr_nonnull(find(ct, 1, &syn, at(30)));
	/* Now only the embryonic flow can go. */
	struct ct_tuple t = nth(200, PROTO_UDP);
	ck_assert_ptr_nonnull(insert(ct, 1, &t, 0, &defaults, at(30)));
	ck_assert_ptr_null(find(ct, 1, &syn, at(30)));
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.evicted_embryonic, 1);
	ct_destroy(ct);
}
END_TEST

START_TEST(test_insert_existing_flow_is_no_duplicate)
{
	struct conntrack *ct = ct_create(4);
	struct ct_tuple t = nth(1, PROTO_UDP);
	struct ct_tuple r = rev(&t);
	struct ct_entry *e = insert(ct, 1, &t, 0, &defaults, at(0));
	ck_assert_ptr_eq(insert(ct, 1, &r, 0, &defaults, at(1)), e);
	ck_assert_uint_eq(used(ct), 1);
	ck_assert(info_of(e).seen_reply);
	ct_destroy(ct);
}
END_TEST

START_TEST(test_available_and_remove)
{
	struct conntrack *ct = ct_create(10);
	struct ct_entry *e[10];
	for (int i = 0; i < 10; i++) {
		struct ct_tuple t = nth(i, PROTO_TCP);
		e[i] = insert(ct, 2, &t, TCP_ACK, &defaults, at(0));
		ck_assert_uint_eq(ct_available(ct), 9 - (uint64_t)i);
	}
	for (int i = 0; i < 10; i += 2)
		ct_remove(ct, e[i]);
	ck_assert_uint_eq(ct_available(ct), 5);
	ct_remove(ct, e[0]); /* already gone: nothing happens */
	ck_assert_uint_eq(ct_available(ct), 5);
	for (int i = 0; i < 10; i++) {
		struct ct_tuple t = nth(i, PROTO_TCP);
		if (i % 2)
			ck_assert_ptr_eq(find(ct, 2, &t, at(1)), e[i]);
		else
			ck_assert_ptr_null(find(ct, 2, &t, at(1)));
	}
	struct ct_stats st;
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.expired, 0);
	ct_destroy(ct);
}
END_TEST

START_TEST(test_expire_in_slices)
{
	/* 1000 flows over 1024 buckets; even ones idle out at 30 s, odd ones
	 * were refreshed and live to 40 s. */
	struct conntrack *ct = ct_create(1000);
	for (int i = 0; i < 1000; i++) {
		struct ct_tuple t = nth(i, PROTO_UDP);
		struct ct_entry *e = insert(ct, 1, &t, 0, &defaults, at(0));
		if (i % 2)
			ct_update(ct, e, &t, 0, &defaults, at(10));
	}
	ck_assert_uint_eq(ct_expire(ct, at(29), 2048), 0);

	unsigned total = 0, calls = 0, n;
	uint64_t before = used(ct);
	n = ct_expire(ct, at(30), 100);
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_lt(n, 500);
	ck_assert_uint_eq(used(ct), before - n);
	total += n;
	calls++;
	while (calls < 11) {
		total += ct_expire(ct, at(30), 100);
		calls++;
	}
	/* 11 slices of 100 cover all 1024 buckets. */
	ck_assert_uint_eq(total, 500);
	ck_assert_uint_eq(used(ct), 500);
	ck_assert_uint_eq(ct_expire(ct, at(30), 1024), 0);
	for (int i = 1; i < 1000; i += 2) {
		struct ct_tuple t = nth(i, PROTO_UDP);
		ck_assert_ptr_nonnull(find(ct, 1, &t, at(30)));
	}
	/* The cursor wraps: small slices keep going round. */
	total = 0;
	for (int k = 0; k < 1024 / 7 + 1; k++)
		total += ct_expire(ct, at(40), 7);
	ck_assert_uint_eq(total, 500);
	ck_assert_uint_eq(used(ct), 0);
	struct ct_stats st;
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.expired, 1000);
	ck_assert_uint_eq(ct_available(ct), 1000);
	ct_destroy(ct);
}
END_TEST

struct seen {
	int n;
	int stop_after;
	uint32_t ports[16];
};

static int collect(const struct ct_flow_info *fi, void *arg)
{
	struct seen *s = arg;
	ck_assert_int_lt(s->n, 16);
	s->ports[s->n++] = fi->orig.sport;
	return s->n == s->stop_after;
}

START_TEST(test_foreach_live_only)
{
	struct conntrack *ct = ct_create(16);
	/* UDP flows 0..9; 0..3 are refreshed and outlive the others. */
	for (int i = 0; i < 10; i++) {
		struct ct_tuple t = nth(i, PROTO_UDP);
		struct ct_entry *e = insert(ct, 1, &t, 0, &defaults, at(0));
		if (i < 4)
			ct_update(ct, e, &t, 0, &defaults, at(20));
	}
	struct seen s = { 0, -1, { 0 } };
	ct_foreach(ct, at(29), collect, &s);
	ck_assert_int_eq(s.n, 10);

	memset(&s, 0, sizeof(s));
	s.stop_after = -1;
	ct_foreach(ct, at(30), collect, &s);
	ck_assert_int_eq(s.n, 4);
	uint32_t mask = 0;
	for (int k = 0; k < s.n; k++)
		mask |= 1u << (s.ports[k] - 1024);
	ck_assert_uint_eq(mask, 0xf);

	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	ct_foreach(ct, at(30), collect, &s);
	ck_assert_int_eq(s.n, 2);
	ct_destroy(ct);
}
END_TEST

/* A hint only: lookups find the same flows, empty buckets are fine. */
START_TEST(test_prefetch_changes_nothing)
{
	struct conntrack *ct = ct_create(64);
	for (int i = 0; i < 32; i++) {
		struct ct_tuple t = nth(i, PROTO_TCP);
		insert(ct, 1, &t, TCP_ACK, &defaults, at(0));
	}
	for (int i = 0; i < 64; i++) {
		struct ct_tuple t = nth(i, PROTO_TCP);
		ct_prefetch(ct, 1, ct_hash(&t), false);
		ct_prefetch(ct, 1, ct_hash(&t), true);
		ct_prefetch(ct, 2, ct_hash(&t), true);
		ck_assert_int_eq(find(ct, 1, &t, at(1)) != NULL, i < 32);
	}
	ck_assert_uint_eq(used(ct), 32);
	ct_destroy(ct);
}
END_TEST

/* The offload's notes beside the entries (issue #16): UDP offloadable once
 * a reply came; the kernel id kept; a freed slot starts clean; clear_all. */
START_TEST(test_offload_notes)
{
	struct conntrack *ct = ct_create(16);
	struct ct_tuple t = tup("10.0.0.1", "10.0.0.2", 17, 1000, 53), r = rev(&t);
	struct ct_entry *e = insert(ct, 1, &t, 0, &defaults, at(0));
	uint32_t id = 1, ms = 1;

	ck_assert(!ct_offloadable(e));
	ck_assert(!ct_offloaded(ct, e, &id, &ms));
	ck_assert_uint_eq(id, 0);
	ck_assert_uint_eq(ms, 0);
	ct_update(ct, e, &r, 0, &defaults, at(1));
	ck_assert(ct_offloadable(e));
	ct_set_offloaded(ct, e, 0, 0); /* an unknown id, at the clock's 0 */
	ck_assert(ct_offloaded(ct, e, &id, &ms));
	ck_assert_uint_eq(id, 0);
	ck_assert_uint_le(ms, 1);
	ct_set_offloaded(ct, e, 0xfeedbeef, 0xfffffff0u);
	ck_assert(ct_offloaded(ct, e, &id, &ms));
	ck_assert_uint_eq(id, 0xfeedbeef);
	ck_assert_uint_eq(ms, 0xfffffff0u);
	ct_clear_offloaded(ct, e);
	ck_assert(!ct_offloaded(ct, e, NULL, NULL));
	ct_set_offloaded(ct, e, 7, 5);
	ck_assert_uint_eq(ct_clear_offloaded_all(ct), 1);
	ck_assert(!ct_offloaded(ct, e, NULL, NULL));
	/* freed and reused: not offloaded */
	ct_set_offloaded(ct, e, 7, 5);
	ct_remove(ct, e);
	e = insert(ct, 1, &t, 0, &defaults, at(2));
	ck_assert(!ct_offloaded(ct, e, NULL, NULL));
	/* the offloadable packets counted until offloaded (OffloadAfterPackets);
	 * the count is no kernel id and no time */
	ck_assert_uint_eq(ct_offload_count(ct, e), 1);
	ck_assert_uint_eq(ct_offload_count(ct, e), 2);
	ck_assert(!ct_offloaded(ct, e, &id, &ms));
	ck_assert_uint_eq(id, 0);
	ck_assert_uint_eq(ms, 0);
	ck_assert_uint_eq(ct_clear_offloaded_all(ct), 0);
	ck_assert_uint_eq(ct_offload_count(ct, e), 3);
	ct_clear_offloaded(ct, e);      /* not offloaded: the count stays */
	ck_assert_uint_eq(ct_offload_count(ct, e), 4);
	ct_set_offloaded(ct, e, 9, 3);
	ck_assert_uint_eq(ct_offload_count(ct, e), UINT32_MAX); /* offloaded: due */
	ck_assert(ct_offloaded(ct, e, &id, &ms));
	ck_assert_uint_eq(id, 9);
	ck_assert_uint_eq(ms, 3);
	/* taken back: it had qualified, and stays so */
	ck_assert_uint_eq(ct_clear_offloaded_all(ct), 1);
	ck_assert(!ct_offloaded(ct, e, NULL, NULL));
	ck_assert_uint_eq(ct_offload_count(ct, e), UINT32_MAX);
	ct_set_offloaded(ct, e, 9, 3);
	ct_clear_offloaded(ct, e);
	ck_assert(!ct_offloaded(ct, e, NULL, NULL));
	ck_assert_uint_eq(ct_offload_count(ct, e), UINT32_MAX);
	/* freed and reused: counted from nothing */
	ct_remove(ct, e);
	e = insert(ct, 1, &t, 0, &defaults, at(3));
	ck_assert_uint_eq(ct_offload_count(ct, e), 1);
	/* TCP: only established */
	struct ct_tuple k = tup("10.0.0.1", "10.0.0.2", 6, 1000, 80), kr = rev(&k);
	struct ct_entry *c = insert(ct, 1, &k, TCP_SYN, &defaults, at(0));
	ck_assert(!ct_offloadable(c));
	ct_update(ct, c, &kr, TCP_SYN | TCP_ACK, &defaults, at(0));
	ck_assert(!ct_offloadable(c));
	ct_update(ct, c, &k, TCP_ACK, &defaults, at(0));
	ck_assert(ct_offloadable(c));
	ct_update(ct, c, &k, TCP_FIN | TCP_ACK, &defaults, at(0));
	ck_assert(!ct_offloadable(c));
	ct_destroy(ct);
}
END_TEST

static const uint32_t sizes[] = { 1, 2, 3, 1000, 1024, 1025, 65537 };

START_TEST(test_bytes_per_flow)
{
	struct conntrack *ct = ct_create(sizes[_i]);
	ck_assert_ptr_nonnull(ct);
	/* plus, in a tiny table, its share of the 256 source buckets (16
	 * bytes each) that flood fairness needs at least */
	ck_assert_uint_le(ct_bytes_per_flow(ct), 128 + (256 * 16 + sizes[_i] - 1) / sizes[_i]);
	if (sizes[_i] >= 1000)
		ck_assert_uint_le(ct_bytes_per_flow(ct), 128);
	ck_assert_uint_ge(ct_bytes_per_flow(ct), 64);
	ck_assert_uint_eq(ct_available(ct), sizes[_i]);
	ct_destroy(ct);
}
END_TEST

START_TEST(test_create_zero)
{
	ck_assert_ptr_null(ct_create(0));
	ct_destroy(NULL);
}
END_TEST

/* ---------------------------------------------------------------- randomized */

/* A reference model: an array of flows, searched linearly. */
struct mflow {
	bool present;
	uint32_t iface;
	struct ct_tuple orig;
	uint64_t deadline;
	bool seen_reply, stream, closed;
};

/* More room than the universe has flows: the table never fills here. */
enum { UNIVERSE = 300, IFACES = 3, MODEL_MAX = UNIVERSE * IFACES };

static uint64_t rng_state = 0x1234567;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* The tuples drawn from: few addresses and ports so that the two
 * orientations of a flow both come up. */
static struct ct_tuple draw(void)
{
	static const int protos[] = { PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47 };
	struct ct_tuple t;
	memset(&t, 0, sizeof(t));
	int k = (int)(rnd() % UNIVERSE);
	t.proto = (uint8_t)protos[k % 4];
	t.src = addr_from_v4(0x0A000000u + (uint32_t)(k / 4 % 5));
	t.dst = addr_from_v4(0x0A000000u + (uint32_t)(k / 20 % 5));
	if (t.proto == PROTO_TCP || t.proto == PROTO_UDP) {
		t.sport = (uint16_t)(1000 + k / 100);
		t.dport = 80;
	} else if (t.proto == PROTO_ICMP) {
		t.sport = t.dport = (uint16_t)(k / 100);
	}
	return rnd() % 2 ? rev(&t) : t;
}

static bool tuple_eq(const struct ct_tuple *a, const struct ct_tuple *b)
{
	return addr_eq(&a->src, &b->src) && addr_eq(&a->dst, &b->dst) && a->sport == b->sport &&
	       a->dport == b->dport && a->proto == b->proto;
}

static struct mflow *mfind(struct mflow *m, int n, uint32_t iface, const struct ct_tuple *t)
{
	struct ct_tuple r = rev(t);
	for (int i = 0; i < n; i++) {
		if (!m[i].present || m[i].iface != iface || m[i].orig.proto != t->proto)
			continue;
		if (tuple_eq(&m[i].orig, t) || tuple_eq(&m[i].orig, &r))
			return &m[i];
	}
	return NULL;
}

static uint32_t mtimeout(const struct mflow *f, const struct ct_timeouts *to)
{
	switch (f->orig.proto) {
	case PROTO_TCP: return f->closed ? CT_TIMEOUT_TCP_CLOSE : to->tcp_established;
	case PROTO_UDP: return f->stream ? to->udp_stream : to->udp;
	case PROTO_ICMP: return CT_TIMEOUT_ICMP;
	default: return CT_TIMEOUT_OTHER;
	}
}

static int count_flows(const struct ct_flow_info *fi, void *arg)
{
	(void)fi;
	(*(int *)arg)++;
	return 0;
}

/* Table sizes: never full; and small enough that it is full most of the
 * time, with no more buckets than a reclaim sweeps, so that an insertion
 * must fail exactly when the model has max live flows. */
static const struct {
	uint32_t max;
	int ops;
} random_cases[] = {
	{ UNIVERSE * IFACES, 200000 },
	{ 16, 100000 },
	{ 5, 50000 },
};

/* TCP packets here are ACKs and RSTs only: mid-stream pickup (confirmed at
 * once by an answer), established or closed, which keeps the model small
 * and the table free of embryonic flows. */
START_TEST(test_random_against_model)
{
	const struct ct_timeouts to = { 90, 40, 70 };
	const uint32_t max = random_cases[_i].max;
	struct conntrack *ct = ct_create(max);
	static struct mflow m[UNIVERSE * IFACES * 2];
	int nm = 0;
	uint64_t refused = 0;
	memset(m, 0, sizeof(m));
	uint64_t now = at(0);
	rng_state = 0x1234567 + (uint64_t)_i;

	for (int op = 0; op < random_cases[_i].ops; op++) {
		now += rnd() % (NS / 2);
		struct ct_tuple t = draw();
		uint32_t iface = (uint32_t)(rnd() % IFACES) + 100;
		uint8_t flags = rnd() % 16 ? TCP_ACK : TCP_RST;
		struct mflow *f = mfind(m, nm, iface, &t);
		bool live = f && now < f->deadline;
		struct ct_entry *e = ct_lookup(ct, iface, &t, ct_hash(&t), now);
		ck_assert_msg(live == (e != NULL), "op %d: model %d table %d", op, live, e != NULL);
		if (f && !live)
			f->present = false;
		if (e) {
			struct ct_flow_info fi = info_of(e);
			ck_assert_uint_eq(fi.expires_ns, f->deadline);
			ck_assert(tuple_eq(&fi.orig, &f->orig));
			ck_assert_int_eq(fi.udp_stream, f->stream);
			ck_assert_int_eq(fi.seen_reply, f->seen_reply);
			if (t.proto == PROTO_TCP)
				ck_assert_int_eq(fi.tcp_state, f->closed ? CT_TCP_CLOSE
									 : CT_TCP_ESTABLISHED);
		}
		switch (rnd() % 4) {
		case 0: /* the packet is dropped: nothing changes */
			break;
		case 1:
		case 2: /* accepted */
			if (e) {
				bool reply = !tuple_eq(&f->orig, &t);
				if (reply)
					f->seen_reply = true;
				else if (f->seen_reply && t.proto == PROTO_UDP)
					f->stream = true;
				if (t.proto == PROTO_TCP && (flags & TCP_RST))
					f->closed = true;
				ct_update(ct, e, &t, flags, &to, now);
			} else {
				uint32_t n_live = 0;
				for (int i = 0; i < nm; i++) {
					if (m[i].present && now >= m[i].deadline)
						m[i].present = false;
					n_live += m[i].present;
				}
				e = ct_insert(ct, iface, &t, ct_hash(&t), flags, &to, now);
				if (n_live == max) {
					ck_assert_msg(e == NULL, "op %d: inserted into a full table", op);
					refused++;
					break;
				}
				ck_assert_msg(e != NULL, "op %d: refused with %u of %u", op, n_live, max);
				int i = 0;
				while (m[i].present)
					i++;
				ck_assert_int_lt(i, (int)(sizeof(m) / sizeof(m[0])));
				if (i == nm)
					nm++;
				f = &m[i];
				memset(f, 0, sizeof(*f));
				f->present = true;
				f->iface = iface;
				f->orig = t;
				f->closed = t.proto == PROTO_TCP && (flags & TCP_RST);
				if (t.proto == PROTO_TCP && !f->closed) {
					/* a pickup is confirmed by the other side's
					 * answer (it is embryonic until then) */
					struct ct_tuple r = rev(&t);
					ct_update(ct, e, &r, TCP_ACK, &to, now);
					f->seen_reply = true;
				}
			}
			f->deadline = now + (uint64_t)mtimeout(f, &to) * NS;
			break;
		case 3: /* a slice of expiry */
			ct_expire(ct, now, (unsigned)(rnd() % 64));
			break;
		}
		if (op % 5000 == 0) {
			/* A full sweep leaves exactly the model's live flows. */
			ct_expire(ct, now, 2 * max);
			int n = 0, listed = 0;
			for (int i = 0; i < nm; i++) {
				if (m[i].present && now >= m[i].deadline)
					m[i].present = false;
				n += m[i].present;
			}
			ct_foreach(ct, now, count_flows, &listed);
			ck_assert_int_eq(used(ct), n);
			ck_assert_int_eq(listed, n);
			ck_assert_uint_eq(ct_available(ct), max - (uint32_t)n);
		}
	}
	struct ct_stats st;
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.allowance_exceeded, refused);
	ck_assert_uint_eq(st.evicted_embryonic, 0);
	if (max < 100)
		ck_assert_uint_gt(refused, 1000);
	ck_assert_uint_gt(st.expired, max < 100 ? 10 : 1000);
	ct_destroy(ct);
}
END_TEST

/* ---------------------------------------------------------- TCP windows
 * SPEC §4: TCP state follows Linux nf_conntrack's window checks
 * (tcp_in_window); RFC 5961 (blind resets), RFC 7323 (window scaling). */

struct conv {
	struct conntrack *ct;
	struct ct_tuple t[2];           /* [0] client -> server, [1] server -> client */
	uint32_t next[2];               /* next sequence number each side sends */
	uint16_t win[2];                /* the window field each side sends */
	bool liberal;
	double clock;
};

/* What the pipeline does with a segment of a tracked flow: check, then (not
 * refused) apply; the two must agree. */
static enum ct_tcp_verdict send_seg(struct conv *c, int dir, uint8_t flags, uint32_t seq,
				    uint32_t ack, uint32_t len, uint16_t win)
{
	struct ct_tcp_seg sg = {
		.seq = seq, .ack = ack, .len = len, .win = win, .flags = flags,
		.wscale = TCP_WSCALE_NONE, .be_liberal = c->liberal,
	};
	c->clock += 0.001;
	struct ct_entry *e = find(c->ct, 1, &c->t[dir], at(c->clock));
	ck_assert_ptr_nonnull(e);
	enum ct_tcp_verdict v = ct_tcp_check(c->ct, e, &c->t[dir], &sg);
	if (v != CT_TCP_INVALID)
		ck_assert_int_eq(ct_update_seg(c->ct, e, &c->t[dir], &sg, &defaults, at(c->clock)), v);
	return v;
}

/* Data (or a bare ACK with len 0) from dir at its next sequence number,
 * acknowledging all the other side sent. */
static enum ct_tcp_verdict data(struct conv *c, int dir, uint32_t len)
{
	enum ct_tcp_verdict v = send_seg(c, dir, TCP_ACK | (len ? TCP_PSH : 0), c->next[dir],
					 c->next[!dir], len, c->win[dir]);
	if (v == CT_TCP_OK)
		c->next[dir] += len;
	return v;
}

static enum ct_tcp_state state_of(struct conv *c)
{
	return info_of(find(c->ct, 1, &c->t[0], at(c->clock))).tcp_state;
}

/* A three-way handshake with these initial sequence numbers and window
 * scale options (TCP_WSCALE_NONE: none offered). */
static void handshake(struct conv *c, uint32_t cisn, uint32_t sisn, uint8_t cws, uint8_t sws)
{
	memset(c, 0, sizeof(*c));
	c->ct = ct_create(64);
	ck_assert_ptr_nonnull(c->ct);
	c->t[0] = tup("10.0.1.10", "10.0.2.20", PROTO_TCP, 40000, 443);
	c->t[1] = rev(&c->t[0]);
	c->win[0] = c->win[1] = 65535;
	struct ct_tcp_seg syn = { .seq = cisn, .win = 65535, .flags = TCP_SYN, .wscale = cws };
	ck_assert_ptr_nonnull(ct_insert_seg(c->ct, 1, &c->t[0], ct_hash(&c->t[0]), &syn, &defaults,
					    at(0)));
	struct ct_tcp_seg synack = { .seq = sisn, .ack = cisn + 1, .win = 65535,
				     .flags = TCP_SYN | TCP_ACK, .wscale = sws };
	struct ct_entry *e = find(c->ct, 1, &c->t[1], at(0));
	ck_assert_int_eq(ct_tcp_check(c->ct, e, &c->t[1], &synack), CT_TCP_OK);
	ck_assert_int_eq(ct_update_seg(c->ct, e, &c->t[1], &synack, &defaults, at(0)), CT_TCP_OK);
	c->next[0] = cisn + 1;
	c->next[1] = sisn + 1;
	ck_assert_int_eq(data(c, 0, 0), CT_TCP_OK);
	ck_assert_int_eq(state_of(c), CT_TCP_ESTABLISHED);
}

static void established(struct conv *c)
{
	handshake(c, 1000000, 50000000, TCP_WSCALE_NONE, TCP_WSCALE_NONE);
	ck_assert_int_eq(data(c, 0, 500), CT_TCP_OK);
	ck_assert_int_eq(data(c, 1, 1400), CT_TCP_OK);
	ck_assert_int_eq(data(c, 0, 0), CT_TCP_OK);
}

/* Issue #9 item 2: a spoofed RST with seq 12345 ended a tracked flow. */
START_TEST(test_blind_rst_ignored)
{
	struct conv c;
	established(&c);
	for (int dir = 0; dir < 2; dir++) {
		ck_assert_int_eq(send_seg(&c, dir, TCP_RST, 12345, 0, 0, 0), CT_TCP_INVALID);
		ck_assert_int_eq(send_seg(&c, dir, TCP_RST | TCP_ACK, 12345, c.next[!dir], 0, 0),
				 CT_TCP_INVALID);
		ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	}
	/* the flow goes on both ways */
	ck_assert_int_eq(data(&c, 1, 1000), CT_TCP_OK);
	ck_assert_int_eq(data(&c, 0, 10), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	/* the pipeline counts what it refuses */
	ct_count_tcp(c.ct, CT_TCP_INVALID);
	struct ct_stats st;
	ct_get_stats(c.ct, &st);
	ck_assert_uint_eq(st.tcp_invalid, 1);
	ct_destroy(c.ct);
}
END_TEST

/* RFC 5961 3.2: the expected sequence number resets the flow. */
START_TEST(test_exact_rst_closes)
{
	for (int dir = 0; dir < 2; dir++) {
		struct conv c;
		established(&c);
		ck_assert_int_eq(send_seg(&c, dir, TCP_RST, c.next[dir], 0, 0, 0), CT_TCP_OK);
		ck_assert_int_eq(state_of(&c), CT_TCP_CLOSE);
		ct_destroy(c.ct);
	}
	/* right after unacknowledged data ("P 1:20 ack 42, R 20"): the sender's
	 * next sequence number, though the receiver has not acknowledged it */
	struct conv c;
	established(&c);
	ck_assert_int_eq(data(&c, 1, 19), CT_TCP_OK);
	ck_assert_int_eq(send_seg(&c, 1, TCP_RST | TCP_ACK, c.next[1], c.next[0], 0, 0), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_CLOSE);
	ct_destroy(c.ct);
}
END_TEST

/* In the window but not exact: passed on (the host sends a challenge ACK),
 * the flow stays. */
START_TEST(test_rst_in_window_not_exact_keeps_flow)
{
	struct conv c;
	established(&c);
	ck_assert_int_eq(send_seg(&c, 0, TCP_RST, c.next[0] + 1000, 0, 0, 0), CT_TCP_IGNORE);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	/* below what the receiver acknowledged: refused */
	ck_assert_int_eq(send_seg(&c, 0, TCP_RST, c.next[0] - 100, 0, 0, 0), CT_TCP_INVALID);
	/* the challenge ACK, and the peer's RST at the acknowledged number */
	ck_assert_int_eq(data(&c, 1, 0), CT_TCP_OK);
	ck_assert_int_eq(send_seg(&c, 0, TCP_RST, c.next[0], 0, 0, 0), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_CLOSE);
	ct_destroy(c.ct);
}
END_TEST

START_TEST(test_out_of_window_data_refused)
{
	struct conv c;
	established(&c);
	/* beyond what the receiver's window allows */
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 10000000, c.next[1], 100,
				  65535), CT_TCP_INVALID);
	/* far below (more than a window of old data) */
	ck_assert_int_eq(send_seg(&c, 1, TCP_ACK | TCP_PSH, c.next[1] - 10000000, c.next[0], 100,
				  65535), CT_TCP_INVALID);
	/* acknowledging data never sent */
	ck_assert_int_eq(send_seg(&c, 1, TCP_ACK, c.next[1], c.next[0] + 5000, 0, 65535),
			 CT_TCP_INVALID);
	/* a FIN out of the window ends nothing */
	ck_assert_int_eq(send_seg(&c, 0, TCP_FIN | TCP_ACK, c.next[0] + 10000000, c.next[1], 0,
				  65535), CT_TCP_INVALID);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	/* nothing moved: the windows still hold the real stream */
	ck_assert_int_eq(data(&c, 0, 1000), CT_TCP_OK);
	ck_assert_int_eq(data(&c, 1, 1000), CT_TCP_OK);
	/* at the edge of the window: the last byte allowed, then one more */
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 65535 - 1, c.next[1], 1,
				  65535), CT_TCP_OK);
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 65535 + 1, c.next[1], 1,
				  65535), CT_TCP_INVALID);
	ct_destroy(c.ct);
}
END_TEST

/* RFC 7323: with window scale 7 on both SYNs, a window field of 1024 means
 * 128 KiB; a sender may have that much in flight, far beyond 65535. */
START_TEST(test_window_scaling_honoured)
{
	struct conv c;
	handshake(&c, 7000, 900000, 7, 7);
	c.win[1] = 1024;        /* x 128 = 131072 */
	ck_assert_int_eq(data(&c, 1, 0), CT_TCP_OK);
	for (int i = 0; i < 90; i++)    /* 126000 bytes unacknowledged */
		ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + (uint32_t)i * 1400,
					  c.next[1], 1400, c.win[0]), CT_TCP_OK);
	/* past 131072: out */
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 140000, c.next[1], 1400,
				  c.win[0]), CT_TCP_INVALID);
	ct_destroy(c.ct);

	/* one side without the option: no scaling either way (RFC 7323 1.3) */
	handshake(&c, 7000, 900000, 7, TCP_WSCALE_NONE);
	c.win[1] = 1024;
	ck_assert_int_eq(data(&c, 1, 0), CT_TCP_OK);
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 70000, c.next[1], 1400,
				  c.win[0]), CT_TCP_INVALID);
	ct_destroy(c.ct);
}
END_TEST

START_TEST(test_retransmissions_and_keepalives)
{
	struct conv c;
	established(&c);
	uint32_t old = c.next[0];
	ck_assert_int_eq(data(&c, 0, 1000), CT_TCP_OK);
	ck_assert_int_eq(data(&c, 1, 0), CT_TCP_OK);
	/* the same segment again (its ACK was lost) */
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, old, c.next[1], 1000, 65535), CT_TCP_OK);
	/* a keepalive: one below the next sequence number, no data or one byte */
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK, c.next[0] - 1, c.next[1], 0, 65535), CT_TCP_OK);
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK, c.next[0] - 1, c.next[1], 1, 65535), CT_TCP_OK);
	ck_assert_int_eq(data(&c, 1, 0), CT_TCP_OK);        /* its answer */
	/* duplicate ACKs (what carries SACK blocks: not read, not needed) */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(send_seg(&c, 1, TCP_ACK, c.next[1], old, 0, 65535), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	ct_destroy(c.ct);
}
END_TEST

/* Sequence numbers wrap at 2^32 (RFC 793 3.3). */
START_TEST(test_seq_wraparound)
{
	struct conv c;
	handshake(&c, 0xffffff00u, 0xfffff000u, TCP_WSCALE_NONE, TCP_WSCALE_NONE);
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(data(&c, 0, 1000), CT_TCP_OK);
		ck_assert_int_eq(data(&c, 1, 1000), CT_TCP_OK);
	}
	ck_assert_uint_lt(c.next[0], 20000);   /* wrapped */
	ck_assert_uint_lt(c.next[1], 20000);
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 0x80000000u, c.next[1], 10,
				  65535), CT_TCP_INVALID);
	ck_assert_int_eq(send_seg(&c, 1, TCP_RST, c.next[1] - 0x40000000u, 0, 0, 0), CT_TCP_INVALID);
	ck_assert_int_eq(send_seg(&c, 1, TCP_RST, c.next[1], 0, 0, 0), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_CLOSE);
	ct_destroy(c.ct);
}
END_TEST

/* Linux's nf_conntrack_tcp_loose: a flow first seen mid-stream learns its
 * windows from the first segment of each side (scale unknown: 14 assumed). */
START_TEST(test_pickup_learns_windows)
{
	struct conv c;
	memset(&c, 0, sizeof(c));
	c.ct = ct_create(16);
	c.t[0] = tup("10.0.1.10", "10.0.2.20", PROTO_TCP, 40000, 443);
	c.t[1] = rev(&c.t[0]);
	c.win[0] = c.win[1] = 500;
	c.next[0] = 100000000;
	c.next[1] = 3000000000u;
	struct ct_tcp_seg first = { .seq = c.next[0], .ack = c.next[1], .len = 100, .win = 500,
				    .flags = TCP_ACK | TCP_PSH, .wscale = TCP_WSCALE_NONE };
	ck_assert_ptr_nonnull(ct_insert_seg(c.ct, 1, &c.t[0], ct_hash(&c.t[0]), &first, &defaults,
					    at(0)));
	c.next[0] += 100;
	ck_assert_int_eq(data(&c, 1, 1400), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	/* 500 << 14: data well beyond the unscaled 500 bytes */
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 1000000, c.next[1], 1400,
				  500), CT_TCP_OK);
	ck_assert_int_eq(send_seg(&c, 1, TCP_RST, 12345, 0, 0, 0), CT_TCP_INVALID);
	ck_assert_int_eq(send_seg(&c, 0, TCP_RST, 12345, 0, 0, 0), CT_TCP_INVALID);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	ck_assert_int_eq(send_seg(&c, 1, TCP_RST, c.next[1], 0, 0, 0), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_CLOSE);
	ct_destroy(c.ct);
}
END_TEST

/* Linux's nf_conntrack_tcp_be_liberal: only out-of-window RSTs refused. */
START_TEST(test_be_liberal)
{
	struct conv c;
	established(&c);
	c.liberal = true;
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 10000000, c.next[1], 100,
				  65535), CT_TCP_OK);
	ck_assert_int_eq(send_seg(&c, 0, TCP_RST, 12345, 0, 0, 0), CT_TCP_INVALID);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	/* the windows did not follow the stray segment */
	c.liberal = false;
	ck_assert_int_eq(send_seg(&c, 0, TCP_ACK | TCP_PSH, c.next[0] + 10000000, c.next[1], 100,
				  65535), CT_TCP_INVALID);
	ck_assert_int_eq(data(&c, 0, 10), CT_TCP_OK);
	ct_destroy(c.ct);
}
END_TEST

/* A refused connection: the RST answering the SYN ends the flow. */
START_TEST(test_rst_answering_syn)
{
	struct ct_tuple t = tup("10.0.1.10", "10.0.2.20", PROTO_TCP, 40001, 22), r = rev(&t);
	struct conntrack *ct = ct_create(16);
	struct ct_tcp_seg syn = { .seq = 777, .win = 64240, .flags = TCP_SYN, .wscale = 7 };
	struct ct_entry *e = ct_insert_seg(ct, 1, &t, ct_hash(&t), &syn, &defaults, at(0));
	ck_assert_ptr_nonnull(e);
	/* a blind RST guessing the wrong acknowledgement: refused */
	struct ct_tcp_seg bad = { .seq = 0, .ack = 777 + 200000, .flags = TCP_RST | TCP_ACK };
	ck_assert_int_eq(ct_tcp_check(ct, e, &r, &bad), CT_TCP_INVALID);
	struct ct_tcp_seg rst = { .seq = 0, .ack = 778, .flags = TCP_RST | TCP_ACK };
	ck_assert_int_eq(ct_tcp_check(ct, e, &r, &rst), CT_TCP_OK);
	ck_assert_int_eq(ct_update_seg(ct, e, &r, &rst, &defaults, at(1)), CT_TCP_OK);
	ck_assert_int_eq(info_of(e).tcp_state, CT_TCP_CLOSE);
	/* the port reused: a new connection, windows afresh */
	struct ct_tcp_seg syn2 = { .seq = 3000000000u, .win = 64240, .flags = TCP_SYN,
				   .wscale = TCP_WSCALE_NONE };
	ck_assert_int_eq(ct_tcp_check(ct, e, &t, &syn2), CT_TCP_OK);
	ck_assert_int_eq(ct_update_seg(ct, e, &t, &syn2, &defaults, at(2)), CT_TCP_OK);
	ck_assert_int_eq(info_of(e).tcp_state, CT_TCP_SYN_SENT);
	struct ct_tcp_seg synack = { .seq = 5, .ack = 3000000001u, .win = 100,
				     .flags = TCP_SYN | TCP_ACK, .wscale = TCP_WSCALE_NONE };
	ck_assert_int_eq(ct_tcp_check(ct, e, &r, &synack), CT_TCP_OK);
	ct_destroy(ct);
}
END_TEST

/* A SYN on an established flow (a client that lost its connection) passes
 * unchanged: the server's challenge ACK and the client's RST follow. */
START_TEST(test_syn_on_established_ignored)
{
	struct conv c;
	established(&c);
	ck_assert_int_eq(send_seg(&c, 0, TCP_SYN, 42, 0, 0, 65535), CT_TCP_IGNORE);
	ck_assert_int_eq(state_of(&c), CT_TCP_ESTABLISHED);
	ck_assert_int_eq(data(&c, 1, 0), CT_TCP_OK);        /* challenge ACK */
	ck_assert_int_eq(send_seg(&c, 0, TCP_RST, c.next[0], 0, 0, 0), CT_TCP_OK);
	ck_assert_int_eq(state_of(&c), CT_TCP_CLOSE);
	ct_destroy(c.ct);
}
END_TEST

/* ------------------------------------------------------------ flood fairness
 * (beyond AWS, off by default: Vpcfw.PerSource*) */

static struct ct_tuple udp_from(const char *src, int sport)
{
	return tup(src, "10.0.1.5", PROTO_UDP, sport, 53);
}

/* Admit, then insert, as the pipeline does. */
static enum ct_source_verdict start(struct conntrack *ct, const struct ct_fairness *f,
				    const struct ct_tuple *t, uint64_t now)
{
	enum ct_source_verdict v = ct_source_admit(ct, f, &t->src, 1, now);
	if (v == CT_SOURCE_OK)
		ck_assert_ptr_nonnull(insert(ct, 1, t, 0, &defaults, now));
	return v;
}

START_TEST(test_fairness_off_admits_all)
{
	struct conntrack *ct = ct_create(8);
	struct ct_fairness off = { .v6_prefix = 128 };
	struct ct_stats st;
	for (int i = 0; i < 8; i++) {
		struct ct_tuple t = udp_from("203.0.113.7", 1000 + i);
		ck_assert_int_eq(start(ct, &off, &t, at(0)), CT_SOURCE_OK);
		ck_assert_int_eq(ct_source_admit(ct, NULL, &t.src, 1, at(0)), CT_SOURCE_OK);
	}
	/* the table's own limit still holds: AWS's behaviour */
	struct ct_tuple t = udp_from("198.51.100.1", 1);
	ck_assert_int_eq(ct_source_admit(ct, &off, &t.src, 1, at(0)), CT_SOURCE_OK);
	ck_assert_ptr_null(insert(ct, 1, &t, 0, &defaults, at(0)));
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.allowance_exceeded, 1);
	ck_assert_uint_eq(st.source_rate_exceeded, 0);
	ck_assert_uint_eq(st.source_share_exceeded, 0);
	ct_destroy(ct);
}
END_TEST

/* One source holds at most its share; others still get room; a flow freed
 * (removed or expired) gives its room back. */
START_TEST(test_source_share)
{
	struct conntrack *ct = ct_create(100);
	struct ct_fairness f = { .share_pct = 10, .v6_prefix = 128 };
	struct ct_stats st;
	struct ct_tuple a[12];
	for (int i = 0; i < 10; i++) {
		a[i] = udp_from("203.0.113.7", 1000 + i);
		ck_assert_int_eq(start(ct, &f, &a[i], at(0)), CT_SOURCE_OK);
	}
	ck_assert_uint_eq(ct_source_flows(ct, &f, &a[0].src), 10);
	a[10] = udp_from("203.0.113.7", 2000);
	ck_assert_int_eq(start(ct, &f, &a[10], at(0)), CT_SOURCE_SHARE);
	ck_assert_int_eq(start(ct, &f, &a[10], at(1)), CT_SOURCE_SHARE);
	/* two slots (a flow tracked at two interfaces) need two of the share */
	ct_remove(ct, find(ct, 1, &a[9], at(1)));
	ck_assert_int_eq(ct_source_admit(ct, &f, &a[0].src, 2, at(1)), CT_SOURCE_SHARE);
	ck_assert_int_eq(start(ct, &f, &a[10], at(1)), CT_SOURCE_OK);
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.source_share_exceeded, 3);
	ck_assert_uint_eq(st.source_rate_exceeded, 0);
	/* another host is not held back */
	for (int i = 0; i < 10; i++) {
		struct ct_tuple b = udp_from("198.51.100.9", 3000 + i);
		ck_assert_int_eq(start(ct, &f, &b, at(1)), CT_SOURCE_OK);
	}
	/* the replies of a source's flows are not new flows: nothing counted */
	struct ct_tuple r = rev(&a[0]);
	ck_assert_ptr_nonnull(find(ct, 1, &r, at(1)));
	/* expiry (30 s UDP) frees the share */
	ck_assert_uint_ge(ct_expire(ct, at(40), 1u << 20), 20);
	ck_assert_uint_eq(ct_source_flows(ct, &f, &a[0].src), 0);
	ck_assert_int_eq(start(ct, &f, &a[11 - 1], at(40)), CT_SOURCE_OK);
	ct_destroy(ct);
}
END_TEST

/* However small the share, a source holding nothing starts one flow, even
 * one tracked at two interfaces: never a limit that refuses everyone. */
START_TEST(test_source_share_floor)
{
	struct conntrack *ct = ct_create(10);
	struct ct_fairness f = { .share_pct = 1, .v6_prefix = 128 };  /* 0.1 flow */
	struct ct_tuple t = udp_from("203.0.113.7", 1000);
	ck_assert_int_eq(ct_source_admit(ct, &f, &t.src, 2, at(0)), CT_SOURCE_OK);
	ck_assert_ptr_nonnull(insert(ct, 1, &t, 0, &defaults, at(0)));
	ck_assert_ptr_nonnull(insert(ct, 2, &t, 0, &defaults, at(0)));
	ck_assert_int_eq(ct_source_admit(ct, &f, &t.src, 1, at(0)), CT_SOURCE_SHARE);
	struct ct_tuple u = udp_from("198.51.100.9", 1000);
	ck_assert_int_eq(start(ct, &f, &u, at(0)), CT_SOURCE_OK);
	ct_destroy(ct);
}
END_TEST

/* Flows already in the table count when the limit is turned on (a reload). */
START_TEST(test_source_share_counts_flows_from_before)
{
	struct conntrack *ct = ct_create(100);
	struct ct_fairness off = { .v6_prefix = 128 }, on = { .share_pct = 5, .v6_prefix = 128 };
	for (int i = 0; i < 20; i++) {
		struct ct_tuple t = udp_from("203.0.113.7", 1000 + i);
		ck_assert_int_eq(start(ct, &off, &t, at(0)), CT_SOURCE_OK);
	}
	struct ct_tuple t = udp_from("203.0.113.7", 5000);
	ck_assert_int_eq(start(ct, &on, &t, at(1)), CT_SOURCE_SHARE);
	ct_destroy(ct);
}
END_TEST

/* GCRA: burst flows at once, then one per 1/rate seconds. */
START_TEST(test_source_rate)
{
	struct conntrack *ct = ct_create(1000);
	struct ct_fairness f = { .rate = 5, .v6_prefix = 128 };      /* burst: 5 */
	struct ct_stats st;
	int port = 1000;
	for (int i = 0; i < 5; i++) {
		struct ct_tuple t = udp_from("203.0.113.7", port++);
		ck_assert_int_eq(start(ct, &f, &t, at(0)), CT_SOURCE_OK);
	}
	struct ct_tuple t = udp_from("203.0.113.7", port++);
	ck_assert_int_eq(start(ct, &f, &t, at(0)), CT_SOURCE_RATE);
	ck_assert_int_eq(start(ct, &f, &t, at(0.1)), CT_SOURCE_RATE);
	ck_assert_int_eq(start(ct, &f, &t, at(0.2)), CT_SOURCE_OK);     /* one interval */
	t = udp_from("203.0.113.7", port++);
	ck_assert_int_eq(start(ct, &f, &t, at(0.2)), CT_SOURCE_RATE);
	/* another source has its own rate */
	struct ct_tuple b = udp_from("198.51.100.9", 1);
	ck_assert_int_eq(start(ct, &f, &b, at(0.2)), CT_SOURCE_OK);
	/* a quiet second refills the burst, no more */
	int ok = 0;
	for (int i = 0; i < 20; i++) {
		t = udp_from("203.0.113.7", port++);
		ok += start(ct, &f, &t, at(5)) == CT_SOURCE_OK;
	}
	ck_assert_int_eq(ok, 5);
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.source_rate_exceeded, 3 + 15);
	ck_assert_uint_eq(st.source_share_exceeded, 0);
	/* an explicit burst */
	struct ct_fairness g = { .rate = 1, .burst = 3, .v6_prefix = 128 };
	struct ip_addr c;
	int fam;
	ck_assert(addr_parse("192.0.2.44", &c, &fam));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ct_source_admit(ct, &g, &c, 1, at(10)), CT_SOURCE_OK);
	ck_assert_int_eq(ct_source_admit(ct, &g, &c, 1, at(10)), CT_SOURCE_RATE);
	ck_assert_int_eq(ct_source_admit(ct, &g, &c, 1, at(11)), CT_SOURCE_OK);
	ck_assert_int_eq(ct_source_admit(ct, &g, &c, 1, at(11)), CT_SOURCE_RATE);
	ct_destroy(ct);
}
END_TEST

/* IPv6: PerSourceIpv6PrefixLength names a source by its prefix. */
START_TEST(test_source_ipv6_prefix)
{
	struct conntrack *ct = ct_create(100);
	struct ct_fairness f128 = { .share_pct = 5, .v6_prefix = 128 };
	struct ct_fairness f64 = { .share_pct = 5, .v6_prefix = 64 };
	char a[64];
	/* five flows from five addresses of one /64 */
	for (int i = 0; i < 5; i++) {
		snprintf(a, sizeof(a), "2001:db8:aa:1::%x", i + 1);
		struct ct_tuple t = tup(a, "2001:db8:1:1::10", PROTO_UDP, 1000, 53);
		ck_assert_int_eq(start(ct, &f64, &t, at(0)), CT_SOURCE_OK);
	}
	struct ct_tuple t = tup("2001:db8:aa:1::99", "2001:db8:1:1::10", PROTO_UDP, 1000, 53);
	ck_assert_int_eq(start(ct, &f64, &t, at(0)), CT_SOURCE_SHARE);
	/* another /64 is another source */
	t = tup("2001:db8:aa:2::1", "2001:db8:1:1::10", PROTO_UDP, 1000, 53);
	ck_assert_int_eq(start(ct, &f64, &t, at(0)), CT_SOURCE_OK);
	/* per address (128, the default) each address is a source of its own */
	t = tup("2001:db8:bb:1::99", "2001:db8:1:1::10", PROTO_UDP, 1000, 53);
	ck_assert_int_eq(start(ct, &f128, &t, at(0)), CT_SOURCE_OK);
	ck_assert_uint_eq(ct_source_flows(ct, &f128, &t.src), 1);
	/* IPv4 sources are whole addresses whatever the IPv6 prefix */
	for (int i = 0; i < 5; i++) {
		snprintf(a, sizeof(a), "203.0.113.%d", i + 1);
		t = tup(a, "10.0.1.5", PROTO_UDP, 1000, 53);
		ck_assert_int_eq(start(ct, &f64, &t, at(0)), CT_SOURCE_OK);
		ck_assert_uint_eq(ct_source_flows(ct, &f64, &t.src), 1);
	}
	ct_destroy(ct);
}
END_TEST

/* Never an amplifier: with many more sources than buckets (collisions
 * everywhere), no source ever holds more than its share nor starts more
 * than burst + rate * elapsed flows; refusals only ever come on top. */
START_TEST(test_source_limits_hold_under_collisions)
{
	enum { SOURCES = 2000, STEPS = 60000 };
	struct conntrack *ct = ct_create(4000);      /* 1024 source buckets */
	struct ct_fairness f = { .rate = 50, .burst = 20, .share_pct = 1, .v6_prefix = 128 };
	static uint32_t held[SOURCES], started[SOURCES];
	static struct ct_tuple live[4000 * 2];
	uint64_t cap = 4000 / 100;
	uint32_t x = 12345, n_live = 0;
	uint64_t refused = 0;
	memset(held, 0, sizeof(held));
	memset(started, 0, sizeof(started));
	for (int k = 0; k < STEPS; k++) {
		x = x * 1103515245u + 12345u;
		/* half the attempts from ten heavy sources */
		uint32_t s = (x >> 7) & 1 ? (x >> 8) % 10 : (x >> 8) % SOURCES;
		double now = k * 0.0003;        /* 18 s in all */
		struct ct_tuple t = udp_from("0.0.0.0", (int)(k & 0xffff));
		t.src = addr_from_v4(0x0A000000u + s);
		t.sport = (uint16_t)k;
		t.dport = (uint16_t)(k >> 16);
		if ((x >> 4) % 3 == 0 && n_live) {
			/* free a random live flow */
			uint32_t j = (x >> 10) % n_live;
			struct ct_entry *e = find(ct, 1, &live[j], at(now));
			ck_assert_ptr_nonnull(e);
			ct_remove(ct, e);
			held[addr_to_v4(&live[j].src) - 0x0A000000u]--;
			live[j] = live[--n_live];
			continue;
		}
		enum ct_source_verdict v = ct_source_admit(ct, &f, &t.src, 1, at(now));
		if (v != CT_SOURCE_OK) {
			refused++;
			continue;
		}
		started[s]++;
		ck_assert_uint_le(started[s], 20 + (uint64_t)(50 * now) + 1);
		if (insert(ct, 1, &t, 0, &defaults, at(now))) {
			held[s]++;
			live[n_live++] = t;
			ck_assert_uint_le(held[s], cap);
		}
		ck_assert_uint_ge(ct_source_flows(ct, &f, &t.src), held[s]);
	}
	struct ct_stats st;
	ct_get_stats(ct, &st);
	ck_assert_uint_eq(st.source_rate_exceeded + st.source_share_exceeded, refused);
	ck_assert_uint_gt(st.source_rate_exceeded, 0);
	ck_assert_uint_gt(st.source_share_exceeded, 0);
	/* the light sources (about 10 attempts each) are hardly ever refused */
	uint64_t light = 0;
	for (int i = 10; i < SOURCES; i++)
		light += started[i];
	ck_assert_uint_gt(light, (uint64_t)(SOURCES - 10) * 7);
	ct_destroy(ct);
}
END_TEST

/* A restored flow is charged to its source like an inserted one. */
START_TEST(test_restored_flows_are_charged)
{
	struct conntrack *ct = ct_create(100);
	struct ct_fairness f = { .share_pct = 2, .v6_prefix = 128 };
	for (int i = 0; i < 2; i++) {
		struct ct_saved sv;
		memset(&sv, 0, sizeof(sv));
		sv.iface = 1;
		sv.orig = udp_from("203.0.113.7", 1000 + i);
		sv.deadline_ns = at(30);
		ck_assert_int_eq(ct_restore(ct, &sv, at(0)), 0);
	}
	struct ct_tuple t = udp_from("203.0.113.7", 5000);
	ck_assert_uint_eq(ct_source_flows(ct, &f, &t.src), 2);
	ck_assert_int_eq(start(ct, &f, &t, at(1)), CT_SOURCE_SHARE);
	ct_destroy(ct);
}
END_TEST

/* ct_expire reads no bucket while no flow can have expired (now before the
 * least deadline of its last full round, a full table of live flows then
 * costs nothing per new flow: issue #15's flow-log replay); a deadline set
 * since, earlier than that floor, must still be found in time.  Each case
 * fails if the floor ignored it. */
START_TEST(test_sweep_floor_follows_new_deadlines)
{
	struct conntrack *ct = ct_create(64);
	struct ct_tuple a = tup("10.0.0.1", "10.0.0.2", PROTO_TCP, 1000, 80);
	struct ct_tuple r = rev(&a);
	struct ct_entry *e = insert(ct, 1, &a, TCP_SYN, &defaults, at(0));
	ct_update(ct, e, &r, TCP_SYN | TCP_ACK, &defaults, at(0));
	ct_update(ct, e, &a, TCP_ACK, &defaults, at(0));
	ck_assert_uint_eq(info_of(e).tcp_state, CT_TCP_ESTABLISHED);
	/* two full rounds (a call sweeps one at most): the floor is the
	 * established flow's deadline */
	ck_assert_uint_eq(ct_expire(ct, at(1), 1024), 0);
	ck_assert_uint_eq(ct_expire(ct, at(1), 1024), 0);

	/* a new flow with a shorter deadline */
	struct ct_tuple u = tup("10.0.0.1", "10.0.0.3", PROTO_UDP, 2000, 53);
	ck_assert_ptr_nonnull(insert(ct, 1, &u, 0, &defaults, at(2)));
	ck_assert_uint_eq(ct_expire(ct, at(2 + CT_DEFAULT_UDP), 1024), 1);

	/* a restored flow */
	struct ct_saved sv;
	memset(&sv, 0, sizeof(sv));
	sv.iface = 1;
	sv.orig = tup("10.0.0.1", "10.0.0.4", PROTO_UDP, 3000, 123);
	sv.deadline_ns = at(100);
	ck_assert_uint_eq(ct_expire(ct, at(50), 1024), 0);
	ck_assert_int_eq(ct_restore(ct, &sv, at(50)), 0);
	ck_assert_uint_eq(ct_expire(ct, at(100), 1024), 1);

	/* a live flow's deadline brought forward: the RST closes it */
	ck_assert_uint_eq(ct_expire(ct, at(200), 1024), 0);
	ct_update(ct, e, &a, TCP_RST, &defaults, at(200));
	ck_assert_uint_eq(info_of(e).tcp_state, CT_TCP_CLOSE);
	ck_assert_uint_eq(ct_expire(ct, at(200 + CT_TIMEOUT_TCP_CLOSE), 1024), 1);
	ck_assert_uint_eq(used(ct), 0);
	ct_destroy(ct);
}
END_TEST

/* A small table is swept whole when a source at its share (or a full
 * table) looks for expired flows: the source's expired flows are found
 * wherever the sweep's cursor is and wherever the per-process hash key put
 * them (scenario 38 failed about once in 40 runs when 16 of 32 buckets were
 * swept).  Every starting position of the cursor is tried. */
START_TEST(test_small_table_reclaims_whole)
{
	for (unsigned start_at = 0; start_at < 32; start_at++) {
		struct conntrack *ct = ct_create(20);   /* 32 buckets */
		struct ct_fairness f = { .share_pct = 25, .v6_prefix = 128 };   /* 5 flows */
		struct ct_tuple t[5];
		ck_assert_uint_eq(ct_expire(ct, at(0), start_at), 0);  /* moves the cursor */
		for (int i = 0; i < 5; i++) {
			t[i] = udp_from("198.51.100.66", 20000 + i);
			ck_assert_int_eq(start(ct, &f, &t[i], at(0)), CT_SOURCE_OK);
		}
		struct ct_tuple more = udp_from("198.51.100.66", 20005);
		for (int i = 0; i < 24; i++)    /* refused: each sweep finds nothing */
			ck_assert_int_eq(start(ct, &f, &more, at(0.001 * i)), CT_SOURCE_SHARE);
		/* one flow goes on; the four others idle out (UDP 30 s) */
		ct_update(ct, find(ct, 1, &t[0], at(1.5)), &t[0], 0, &defaults, at(1.5));
		for (int i = 0; i < 4; i++) {
			struct ct_tuple n = udp_from("198.51.100.66", 30000 + i);
			ck_assert_msg(start(ct, &f, &n, at(31 + 0.001 * i)) == CT_SOURCE_OK,
				      "cursor at %u: new flow %d refused", start_at, i);
		}
		struct ct_tuple n = udp_from("198.51.100.66", 30004);
		ck_assert_int_eq(start(ct, &f, &n, at(31.01)), CT_SOURCE_SHARE);
		ct_destroy(ct);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("conntrack");
	TCase *tc = tcase_create("key");
	tcase_add_test(tc, test_lookup_both_directions);
	tcase_add_test(tc, test_iface_is_part_of_the_key);
	tcase_add_test(tc, test_same_host_both_ends);
	tcase_add_loop_test(tc, test_hash_symmetric, 0, sizeof(hash_cases) / sizeof(hash_cases[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("timeouts");
	tcase_add_loop_test(tc, test_tcp, 0, sizeof(tcp_cases) / sizeof(tcp_cases[0]));
	tcase_add_test(tc, test_lookup_does_not_refresh);
	tcase_add_loop_test(tc, test_udp, 0, sizeof(udp_cases) / sizeof(udp_cases[0]));
	tcase_add_loop_test(tc, test_fixed_timeouts, 0, sizeof(fixed_cases) / sizeof(fixed_cases[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("table");
	tcase_add_test(tc, test_full_table_evicts_embryonic_oldest_first);
	tcase_add_test(tc, test_unanswered_pickup_is_evictable);
	tcase_add_test(tc, test_full_table_reuses_expired);
	tcase_add_test(tc, test_insert_existing_flow_is_no_duplicate);
	tcase_add_test(tc, test_available_and_remove);
	tcase_add_test(tc, test_expire_in_slices);
	tcase_add_test(tc, test_sweep_floor_follows_new_deadlines);
	tcase_add_test(tc, test_foreach_live_only);
	tcase_add_test(tc, test_prefetch_changes_nothing);
	tcase_add_test(tc, test_offload_notes);
	tcase_add_loop_test(tc, test_bytes_per_flow, 0, sizeof(sizes) / sizeof(sizes[0]));
	tcase_add_test(tc, test_create_zero);
	suite_add_tcase(s, tc);

	tc = tcase_create("tcp-window");
	tcase_add_test(tc, test_blind_rst_ignored);
	tcase_add_test(tc, test_exact_rst_closes);
	tcase_add_test(tc, test_rst_in_window_not_exact_keeps_flow);
	tcase_add_test(tc, test_out_of_window_data_refused);
	tcase_add_test(tc, test_window_scaling_honoured);
	tcase_add_test(tc, test_retransmissions_and_keepalives);
	tcase_add_test(tc, test_seq_wraparound);
	tcase_add_test(tc, test_pickup_learns_windows);
	tcase_add_test(tc, test_be_liberal);
	tcase_add_test(tc, test_rst_answering_syn);
	tcase_add_test(tc, test_syn_on_established_ignored);
	suite_add_tcase(s, tc);

	tc = tcase_create("fairness");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_fairness_off_admits_all);
	tcase_add_test(tc, test_source_share);
	tcase_add_test(tc, test_small_table_reclaims_whole);
	tcase_add_test(tc, test_source_share_counts_flows_from_before);
	tcase_add_test(tc, test_source_share_floor);
	tcase_add_test(tc, test_source_rate);
	tcase_add_test(tc, test_source_ipv6_prefix);
	tcase_add_test(tc, test_source_limits_hold_under_collisions);
	tcase_add_test(tc, test_restored_flows_are_charged);
	suite_add_tcase(s, tc);

	tc = tcase_create("random");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_random_against_model, 0,
			    sizeof(random_cases) / sizeof(random_cases[0]));
	suite_add_tcase(s, tc);

	return run_suite(s);
}
