/* Connection tracking (SPEC §4): a fixed-size chained hash table per worker.
 *
 * Entries live in a pool allocated once; buckets and chains hold uint32
 * indices into it, so an entry is one cache line (64 bytes) and a flow costs
 * at most 64 + 8 bytes with the bucket array.  Embryonic TCP flows are also
 * on a FIFO list, oldest first, so a full table can evict them in O(1). */
#include "vpcfw/conntrack.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include "vpcfw/counter.h"
#include "vpcfw/packet.h"

#define NIL UINT32_MAX
#define NS_PER_S 1000000000ULL
/* Buckets swept for expired flows before a full table refuses or evicts.
 * Each refusal moves the sweep on, so an expired flow is found within
 * buckets / RECLAIM_BUDGET refusals even without ct_expire calls.  A table
 * of at most RECLAIM_WHOLE buckets is swept whole (reclaim_budget): cheap,
 * and whether an expired flow is found no longer depends on where the
 * cursor is, nor so on the hash key chosen at random per process. */
#define RECLAIM_BUDGET 16
#define RECLAIM_WHOLE 64
#define SWEEP_AHEAD 8

enum {
	F_USED = 1 << 0,
	F_SEEN_REPLY = 1 << 1,
	F_UDP_STREAM = 1 << 2,
	F_FIN_REPLY = 1 << 3,   /* the first FIN came from the reply side */
	F_EMBRYONIC = 1 << 4,   /* linked on the embryonic FIFO */
	F_PICKUP = 1 << 5,      /* started mid-stream: unconfirmed until the other side answers */
	F_MAXACK0 = 1 << 6,     /* TCP: the originator has sent an ACK (win[].d[0].maxack) */
	F_MAXACK1 = 1 << 7,     /* TCP: the other side has */
};

struct ct_entry {
	struct ip_addr src, dst;        /* the originator's tuple */
	uint64_t deadline;              /* ns; expired when now >= deadline */
	uint32_t iface;
	uint32_t next;                  /* bucket chain, or the free list */
	uint32_t eprev, enext;          /* embryonic FIFO */
	uint16_t sport, dport;
	uint8_t proto;
	uint8_t state;                  /* enum ct_tcp_state */
	uint8_t flags;
	uint8_t wscale;                 /* TCP window scales: originator's in the low
	                                   nibble, the other side's in the high one */
};

_Static_assert(sizeof(struct ct_entry) == 64, "a flow is one cache line");

/* TCP window tracking of one flow (SPEC §4), beside the entry with the same
 * index: touched only by TCP segments, so the entry stays one cache line.
 * d[0] is the originator's direction, d[1] the other (nf_conntrack's
 * ip_ct_tcp_state seen[2]). */
struct ct_tcpdir {
	uint32_t end;                   /* highest seq + len sent */
	uint32_t maxend;                /* highest ack + window the other side allowed */
	uint32_t maxwin;                /* largest window advertised (scaled); 0: not seen yet */
	uint32_t maxack;                /* highest ack sent (with F_MAXACKn) */
};

struct ct_tcpwin {
	struct ct_tcpdir d[2];
};

_Static_assert(sizeof(struct ct_tcpwin) == 32, "two windows in half a cache line");

/* Datagrams whose first fragment was admitted: their later fragments carry
 * no ports and are given the first one's verdict.  Direct-mapped, fixed
 * size: a collision forgets the older datagram (its remaining fragments are
 * then judged by the rules alone). */
struct ct_frag {
	struct ip_addr src, dst;
	uint64_t deadline;
	uint32_t id;
	uint8_t proto;
};

enum { CT_FRAGS = 1024, CT_FRAG_TIMEOUT = 30 /* Linux ipfrag_time */ };

/* Flood fairness (conntrack.h, struct ct_fairness): the source buckets of a
 * count-min sketch, each counting the flows charged to it and keeping a
 * GCRA deadline for the rate (the time its next flow would be on schedule;
 * a new flow is admitted while it is at most burst intervals ahead of now). */
struct ct_srcbucket {
	uint64_t tat;                   /* ns: theoretical arrival time */
	uint32_t flows;                 /* entries charged to this bucket */
	uint32_t pad;
};

enum { SRC_BUCKETS_MIN = 256, SRC_BUCKETS_MAX = 262144 };

/* What the journal last told of a flow (HA sync): its peer's copy. */
struct ct_jrec {
	uint64_t deadline;              /* the deadline told; 0: nothing told */
	uint8_t state, flags;           /* flags as CT_SAVED_* */
};

struct conntrack {
	struct ct_frag frags[CT_FRAGS];
	struct ct_entry *pool;
	struct ct_tcpwin *win;          /* [max], beside pool */
	uint32_t *charge;               /* [max]: the source hash a flow is charged
	                                   to (0: none), beside pool */
	uint64_t *offl;                 /* [max]: offloaded to the kernel (issue #16):
	                                   kernel id << 32 | when (ms, never 0);
	                                   not offloaded: the flow's offloadable
	                                   packets << 32 (ct_offload_count) */
	struct ct_srcbucket *src;       /* [src_mask + 1] */
	uint32_t src_mask;
	uint8_t v6_prefix;              /* of the last ct_source_admit: new flows
	                                   are charged with it */
	uint32_t *buckets;
	uint64_t mask;
	uint32_t max;
	uint32_t free_head;
	uint32_t emb_head, emb_tail;
	uint64_t cursor;                /* next bucket ct_expire visits */
	/* No flow's deadline is before floor_ns: while now is before it a
	 * sweep cannot free anything and skips reading the table (a full
	 * table of live flows would otherwise cost RECLAIM_BUDGET cache
	 * misses per new flow for nothing).  cycle_min is the least deadline
	 * seen or set since the cursor last passed bucket 0: floor_ns when
	 * it passes again.  Every deadline is written through set_deadline. */
	uint64_t floor_ns, cycle_min;
	/* the change journal (ct_set_journal); jfn NULL: none */
	ct_journal_fn jfn;
	void *jarg;
	struct ct_jrec *jr;             /* [max], beside pool */
	/* Written by the owning worker, read by the control thread. */
	struct {
		counter_t used, inserted, expired, allowance_exceeded, evicted_embryonic;
		counter_t tcp_invalid, tcp_rst_ignored;
		counter_t source_rate_exceeded, source_share_exceeded;
	} cnt;
};

/* Keys of ct_hash: chosen once per process, before main, so an attacker
 * cannot aim many flows at one bucket.  ct_hash takes no table, hence a
 * process-wide key; it must not change once a hash has been computed. */
static uint64_t key[5];

__attribute__((constructor)) static void key_init(void)
{
	if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uintptr_t)&ts;
		for (int i = 0; i < 5; i++) {
			x += 0x9E3779B97F4A7C15ULL;
			uint64_t z = x;
			z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9ULL;
			z = (z ^ z >> 27) * 0x94D049BB133111EBULL;
			key[i] = z ^ z >> 31;
		}
	}
}

static inline uint64_t mum(uint64_t a, uint64_t b)
{
	unsigned __int128 r = (unsigned __int128)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

uint64_t ct_hash(const struct ct_tuple *t)
{
	const struct ip_addr *a = &t->src, *b = &t->dst;
	uint16_t pa = t->sport, pb = t->dport;
	int c = addr_cmp(a, b);
	if (c > 0 || (c == 0 && pa > pb)) {
		a = &t->dst;
		b = &t->src;
		pa = t->dport;
		pb = t->sport;
	}
	uint64_t ports = (uint64_t)pa << 32 | (uint64_t)pb << 16 | t->proto;
	uint64_t h = mum(a->hi ^ key[0], a->lo ^ key[1]);
	h ^= mum(b->hi ^ key[2], b->lo ^ key[3]);
	return mum(h ^ ports, key[4] ^ 0xe7037ed1a0b428dbULL);
}

static inline uint64_t bucket_of(const struct conntrack *ct, uint32_t iface, uint64_t hash)
{
	return mix64(hash ^ iface * 0x9E3779B97F4A7C15ULL) & ct->mask;
}

/* Large tables in transparent huge pages where the system allows: a lookup
 * touches two random cache lines, and without huge pages each of them is
 * also a TLB miss. */
static void *table_alloc(size_t size)
{
	const size_t huge = 2u << 20;
	void *p = NULL;
	if (size < huge)
		return posix_memalign(&p, 64, size) == 0 ? p : NULL;
	size = (size + huge - 1) & ~(huge - 1);
	if (posix_memalign(&p, huge, size) != 0)
		return NULL;
	madvise(p, size, MADV_HUGEPAGE); /* advice only: failure is fine */
	return p;
}

struct conntrack *ct_create(uint32_t max)
{
	if (max == 0 || max == NIL)
		return NULL;
	struct conntrack *ct = calloc(1, sizeof(*ct));
	if (!ct)
		return NULL;
	uint64_t nb = 1;
	while (nb < max)
		nb <<= 1;
	ct->pool = table_alloc((size_t)max * sizeof(struct ct_entry));
	ct->win = table_alloc((size_t)max * sizeof(struct ct_tcpwin));
	ct->buckets = table_alloc((size_t)nb * sizeof(uint32_t));
	ct->charge = table_alloc((size_t)max * sizeof(uint32_t));
	ct->offl = table_alloc((size_t)max * sizeof(uint64_t));
	uint32_t ns = SRC_BUCKETS_MIN;
	while (ns < max / 4 && ns < SRC_BUCKETS_MAX)
		ns <<= 1;
	ct->src = table_alloc((size_t)ns * sizeof(struct ct_srcbucket));
	if (!ct->pool || !ct->win || !ct->buckets || !ct->charge || !ct->offl || !ct->src) {
		ct_destroy(ct);
		return NULL;
	}
	/* Touch everything now: no page faults on the packet path. */
	memset(ct->buckets, 0xff, (size_t)nb * sizeof(uint32_t));
	memset(ct->pool, 0, (size_t)max * sizeof(struct ct_entry));
	memset(ct->win, 0, (size_t)max * sizeof(struct ct_tcpwin));
	memset(ct->charge, 0, (size_t)max * sizeof(uint32_t));
	memset(ct->offl, 0, (size_t)max * sizeof(uint64_t));
	memset(ct->src, 0, (size_t)ns * sizeof(struct ct_srcbucket));
	ct->src_mask = ns - 1;
	ct->v6_prefix = 128;
	for (uint32_t i = 0; i < max; i++)
		ct->pool[i].next = i + 1 < max ? i + 1 : NIL;
	ct->free_head = 0;
	ct->mask = nb - 1;
	ct->max = max;
	ct->emb_head = ct->emb_tail = NIL;
	ct->cycle_min = UINT64_MAX; /* floor_ns 0: nothing known yet */
	return ct;
}

void ct_destroy(struct conntrack *ct)
{
	if (!ct)
		return;
	free(ct->pool);
	free(ct->win);
	free(ct->jr);
	free(ct->buckets);
	free(ct->charge);
	free(ct->offl);
	free(ct->src);
	free(ct);
}

static inline uint32_t idx(const struct conntrack *ct, const struct ct_entry *e)
{
	return (uint32_t)(e - ct->pool);
}

static inline bool is_orig(const struct ct_entry *e, const struct ct_tuple *t)
{
	return addr_eq(&e->src, &t->src) && addr_eq(&e->dst, &t->dst) &&
	       e->sport == t->sport && e->dport == t->dport;
}

static inline bool is_reply(const struct ct_entry *e, const struct ct_tuple *t)
{
	return addr_eq(&e->src, &t->dst) && addr_eq(&e->dst, &t->src) &&
	       e->sport == t->dport && e->dport == t->sport;
}

static inline bool matches(const struct ct_entry *e, uint32_t iface, const struct ct_tuple *t)
{
	return e->iface == iface && e->proto == t->proto && (is_orig(e, t) || is_reply(e, t));
}

static void emb_link(struct conntrack *ct, struct ct_entry *e)
{
	uint32_t i = idx(ct, e);
	e->enext = NIL;
	e->eprev = ct->emb_tail;
	if (ct->emb_tail != NIL)
		ct->pool[ct->emb_tail].enext = i;
	else
		ct->emb_head = i;
	ct->emb_tail = i;
	e->flags |= F_EMBRYONIC;
}

static void emb_unlink(struct conntrack *ct, struct ct_entry *e)
{
	if (!(e->flags & F_EMBRYONIC))
		return;
	if (e->eprev != NIL)
		ct->pool[e->eprev].enext = e->enext;
	else
		ct->emb_head = e->enext;
	if (e->enext != NIL)
		ct->pool[e->enext].eprev = e->eprev;
	else
		ct->emb_tail = e->eprev;
	e->flags &= (uint8_t)~F_EMBRYONIC;
}

static inline bool embryonic(uint8_t state)
{
	return state == CT_TCP_SYN_SENT || state == CT_TCP_SYN_RECV;
}

static void set_state(struct conntrack *ct, struct ct_entry *e, uint8_t state)
{
	e->state = state;
	if (embryonic(state) && !(e->flags & F_EMBRYONIC))
		emb_link(ct, e);
	else if (!embryonic(state))
		emb_unlink(ct, e);
}

/* ------------------------------------------------------- flood fairness */

/* The keyed hash naming a source (never 0: 0 marks an uncharged flow). */
static uint32_t source_hash(const struct ip_addr *src, uint8_t v6_prefix)
{
	struct ip_addr a = *src;
	if (addr_family(&a) == FAMILY_V6 && v6_prefix < 128) {
		struct ip_addr m = addr_mask(v6_prefix);
		a.hi &= m.hi;
		a.lo &= m.lo;
	}
	uint64_t h = mum(a.hi ^ key[3], a.lo ^ key[2] ^ 0x2d358dccaa6c78a5ULL);
	uint32_t x = (uint32_t)(h ^ h >> 32);
	return x ? x : 1;
}

/* The two buckets of a source hash: the second from the bits the first did
 * not use, moved off the first when they coincide. */
static inline void source_buckets(const struct conntrack *ct, uint32_t h, uint32_t b[2])
{
	b[0] = h & ct->src_mask;
	b[1] = (uint32_t)(mix64(h) >> 32) & ct->src_mask;
	if (b[1] == b[0])
		b[1] = b[0] ^ 1;
}

static void charge(struct conntrack *ct, uint32_t i, uint32_t h)
{
	uint32_t b[2];
	source_buckets(ct, h, b);
	ct->src[b[0]].flows++;
	ct->src[b[1]].flows++;
	ct->charge[i] = h;
}

static void uncharge(struct conntrack *ct, uint32_t i)
{
	uint32_t h = ct->charge[i];
	if (!h)
		return;
	uint32_t b[2];
	source_buckets(ct, h, b);
	ct->src[b[0]].flows--;
	ct->src[b[1]].flows--;
	ct->charge[i] = 0;
}

static inline unsigned reclaim_budget(const struct conntrack *ct)
{
	return ct->mask < RECLAIM_WHOLE ? (unsigned)ct->mask + 1 : RECLAIM_BUDGET;
}

static inline bool fairness_on(const struct ct_fairness *f)
{
	return f && (f->rate || f->share_pct);
}

static inline uint8_t v6_prefix_of(const struct ct_fairness *f)
{
	return f && f->v6_prefix >= 1 && f->v6_prefix <= 128 ? f->v6_prefix : 128;
}

uint32_t ct_source_flows(const struct conntrack *ct, const struct ct_fairness *f,
			 const struct ip_addr *src)
{
	uint32_t b[2];
	source_buckets(ct, source_hash(src, v6_prefix_of(f)), b);
	uint32_t x = ct->src[b[0]].flows, y = ct->src[b[1]].flows;
	return x < y ? x : y;
}

enum ct_source_verdict ct_source_admit(struct conntrack *ct, const struct ct_fairness *f,
				       const struct ip_addr *src, unsigned slots,
				       uint64_t now_ns)
{
	ct->v6_prefix = v6_prefix_of(f);
	if (!fairness_on(f))
		return CT_SOURCE_OK;
	uint32_t b[2];
	source_buckets(ct, source_hash(src, ct->v6_prefix), b);
	struct ct_srcbucket *x = &ct->src[b[0]], *y = &ct->src[b[1]];

	if (f->share_pct) {
		uint64_t cap = (uint64_t)ct->max * (f->share_pct > 100 ? 100 : f->share_pct) / 100;
		if (cap == 0)
			cap = 1;
		uint32_t held = x->flows < y->flows ? x->flows : y->flows;
		/* expired flows count until freed (the workers' sweep frees
		 * them within seconds): at the cap, first reclaim from a
		 * bounded sweep, as a full table does */
		for (unsigned n = 0, nb = reclaim_budget(ct);
		     n < nb && held && held + (uint64_t)slots > cap; n++)
			if (ct_expire(ct, now_ns, 1) > 0)
				held = x->flows < y->flows ? x->flows : y->flows;
		/* a source that holds nothing may start one flow, even one
		 * tracked at two interfaces in a table whose share is 1 */
		if (held && held + (uint64_t)slots > cap) {
			counter_inc(&ct->cnt.source_share_exceeded);
			return CT_SOURCE_SHARE;
		}
	}
	if (f->rate) {
		/* GCRA: each flow is due one interval after the previous; up to
		 * burst flows may come early.  A bucket's deadline runs ahead
		 * for every source in it, so the later of the two is never
		 * behind the source's own: admit while the earlier one has
		 * room, then move both on. */
		uint64_t interval = NS_PER_S / f->rate;
		if (interval == 0)
			interval = 1;
		uint64_t burst = f->burst ? f->burst : f->rate;
		uint64_t limit = now_ns + burst * interval;
		uint64_t tx = x->tat > now_ns ? x->tat : now_ns;
		uint64_t ty = y->tat > now_ns ? y->tat : now_ns;
		uint64_t t = tx < ty ? tx : ty;
		if (t + interval > limit) {
			counter_inc(&ct->cnt.source_rate_exceeded);
			return CT_SOURCE_RATE;
		}
		x->tat = tx + interval;
		y->tat = ty + interval;
	}
	return CT_SOURCE_OK;
}

static void save(const struct ct_entry *e, struct ct_saved *s);

/* The journal: a flow's creation or change is told when its state or flags
 * differ from what was last told, or when the copy told would have less
 * than three quarters of the flow's lifetime left (a flow kept alive by its
 * packets is told again every quarter of its timeout: the peer's copy never
 * idles out while the flow lives). */
static void journal(struct conntrack *ct, const struct ct_entry *e, uint64_t now_ns)
{
	if (!ct->jfn)
		return;
	struct ct_jrec *j = &ct->jr[idx(ct, e)];
	struct ct_saved sv;
	save(e, &sv);
	if (j->deadline && j->state == sv.tcp_state && j->flags == sv.flags) {
		uint64_t life = e->deadline > now_ns ? e->deadline - now_ns : 0;
		uint64_t told = j->deadline > now_ns ? j->deadline - now_ns : 0;
		if (told >= life - life / 4)
			return;
	}
	j->deadline = e->deadline;
	j->state = sv.tcp_state;
	j->flags = sv.flags;
	ct->jfn(ct->jarg, &sv, CT_CHANGE_UPSERT);
}

/* What the peer told is what its copy holds: nothing to tell back. */
static void journal_quiet(struct conntrack *ct, const struct ct_entry *e)
{
	if (!ct->jfn)
		return;
	struct ct_jrec *j = &ct->jr[idx(ct, e)];
	struct ct_saved sv;
	save(e, &sv);
	j->deadline = e->deadline ? e->deadline : 1;
	j->state = sv.tcp_state;
	j->flags = sv.flags;
}

/* Unlinks the entry *link points at from its chain and frees it. */
static void release(struct conntrack *ct, uint32_t *link)
{
	uint32_t i = *link;
	struct ct_entry *e = &ct->pool[i];
	if (ct->jfn) {
		struct ct_saved sv;
		save(e, &sv);
		ct->jr[i].deadline = 0;
		ct->jfn(ct->jarg, &sv, CT_CHANGE_GONE);
	}
	*link = e->next;
	emb_unlink(ct, e);
	uncharge(ct, i);
	ct->offl[i] = 0;
	e->flags = 0;
	e->next = ct->free_head;
	ct->free_head = i;
	counter_sub(&ct->cnt.used, 1);
}

struct ct_entry *ct_lookup(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			   uint64_t hash, uint64_t now_ns)
{
	uint32_t *link = &ct->buckets[bucket_of(ct, iface, hash)];
	while (*link != NIL) {
		struct ct_entry *e = &ct->pool[*link];
		if (matches(e, iface, t)) {
			if (now_ns < e->deadline)
				return e;
			release(ct, link);
			counter_inc(&ct->cnt.expired);
			return NULL;
		}
		link = &e->next;
	}
	return NULL;
}

void ct_prefetch(const struct conntrack *ct, uint32_t iface, uint64_t hash, bool entry)
{
	const uint32_t *bucket = &ct->buckets[bucket_of(ct, iface, hash)];
	if (!entry)
		__builtin_prefetch(bucket);
	else if (*bucket != NIL)
		__builtin_prefetch(&ct->pool[*bucket]);
}

static uint32_t timeout_of(const struct ct_entry *e, const struct ct_timeouts *to)
{
	switch (e->proto) {
	case PROTO_TCP:
		switch (e->state) {
		case CT_TCP_SYN_SENT: return CT_TIMEOUT_TCP_SYN_SENT;
		case CT_TCP_SYN_RECV: return CT_TIMEOUT_TCP_SYN_RECV;
		case CT_TCP_FIN_WAIT: return CT_TIMEOUT_TCP_FIN_WAIT;
		case CT_TCP_CLOSE_WAIT: return CT_TIMEOUT_TCP_CLOSE_WAIT;
		case CT_TCP_LAST_ACK: return CT_TIMEOUT_TCP_LAST_ACK;
		case CT_TCP_TIME_WAIT: return CT_TIMEOUT_TCP_TIME_WAIT;
		case CT_TCP_CLOSE: return CT_TIMEOUT_TCP_CLOSE;
		default: return to ? to->tcp_established : CT_DEFAULT_TCP_ESTABLISHED;
		}
	case PROTO_UDP:
		if (e->flags & F_UDP_STREAM)
			return to ? to->udp_stream : CT_DEFAULT_UDP_STREAM;
		return to ? to->udp : CT_DEFAULT_UDP;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		return CT_TIMEOUT_ICMP;
	default:
		return CT_TIMEOUT_OTHER;
	}
}

static inline void set_deadline(struct conntrack *ct, struct ct_entry *e, uint64_t d)
{
	e->deadline = d;
	if (d < ct->floor_ns)
		ct->floor_ns = d;
	if (d < ct->cycle_min)
		ct->cycle_min = d;
}

static void refresh(struct conntrack *ct, struct ct_entry *e, const struct ct_timeouts *to,
		    uint64_t now_ns)
{
	uint64_t d = (uint64_t)timeout_of(e, to) * NS_PER_S;
	set_deadline(ct, e, now_ns > UINT64_MAX - d ? UINT64_MAX : now_ns + d);
}

/* A simplified nf_conntrack TCP state machine.  `reply` says which side sent
 * the packet; F_FIN_REPLY remembers which side closed first so that only the
 * other side's FIN counts as the second one. */
static void tcp_step(struct conntrack *ct, struct ct_entry *e, bool reply, uint8_t fl)
{
	bool fin_side_reply = e->flags & F_FIN_REPLY;
	uint8_t s = e->state;

	if (fl & TCP_RST) {
		set_state(ct, e, CT_TCP_CLOSE);
		return;
	}
	if (fl & TCP_SYN) {
		if (!(fl & TCP_ACK)) {
			if (s == CT_TCP_TIME_WAIT || s == CT_TCP_CLOSE) {
				/* Port reuse: a new connection; its SYN sender is the originator. */
				if (reply) {
					struct ip_addr a = e->src;
					uint16_t p = e->sport;
					e->src = e->dst;
					e->sport = e->dport;
					e->dst = a;
					e->dport = p;
				}
				e->flags &= (uint8_t)~(F_SEEN_REPLY | F_UDP_STREAM | F_FIN_REPLY);
				set_state(ct, e, CT_TCP_SYN_SENT);
			}
		} else if (s == CT_TCP_SYN_SENT && reply) {
			set_state(ct, e, CT_TCP_SYN_RECV);
		}
		return;
	}
	if (fl & TCP_FIN) {
		switch (s) {
		case CT_TCP_SYN_RECV:
		case CT_TCP_ESTABLISHED:
			if (reply)
				e->flags |= F_FIN_REPLY;
			else
				e->flags &= (uint8_t)~F_FIN_REPLY;
			set_state(ct, e, CT_TCP_FIN_WAIT);
			break;
		case CT_TCP_FIN_WAIT:
		case CT_TCP_CLOSE_WAIT:
			if (reply != fin_side_reply)
				set_state(ct, e, CT_TCP_LAST_ACK);
			break;
		default:
			break;
		}
		return;
	}
	if (fl & TCP_ACK) {
		switch (s) {
		case CT_TCP_SYN_RECV:
			/* a flow picked up mid-stream is confirmed by the other
			 * side only: one sender cannot make itself established */
			if (e->flags & F_PICKUP ? reply : !reply) {
				e->flags &= (uint8_t)~F_PICKUP;
				set_state(ct, e, CT_TCP_ESTABLISHED);
			}
			break;
		case CT_TCP_FIN_WAIT:
			if (reply != fin_side_reply)
				set_state(ct, e, CT_TCP_CLOSE_WAIT);
			break;
		case CT_TCP_LAST_ACK:
			if (reply == fin_side_reply)
				set_state(ct, e, CT_TCP_TIME_WAIT);
			break;
		default:
			break;
		}
	}
}

/* ---------------------------------------------------------- TCP windows
 *
 * After Linux nf_conntrack's tcp_in_window (net/netfilter/
 * nf_conntrack_proto_tcp.c), without SACK blocks (a cumulative ACK bounds
 * what a sender may send: SACK only ever widened Linux's check) and without
 * NAT offsets.  Sequence arithmetic is modulo 2^32 (RFC 793 3.3). */

enum { WS_NONE = 15 /* nibble: the SYN carried no window-scale option */,
       MAXACKWIN_MIN = 66000 /* Linux's MAXACKWINCONST */ };

static inline bool seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static inline bool seq_after(uint32_t a, uint32_t b)
{
	return seq_before(b, a);
}

static inline unsigned ws_get(uint8_t ws, int dir)
{
	return dir ? ws >> 4 : ws & 15u;
}

static inline uint8_t ws_put(uint8_t ws, int dir, unsigned v)
{
	return (uint8_t)(dir ? (ws & 0x0fu) | v << 4 : (ws & 0xf0u) | v);
}

/* the shift applied to the window of a segment other than a SYN */
static inline unsigned ws_shift(uint8_t ws, int dir)
{
	unsigned v = ws_get(ws, dir);
	return v > TCP_WSCALE_MAX ? 0 : v;
}

static inline unsigned ws_of_seg(const struct ct_tcp_seg *s)
{
	if (s->wscale == TCP_WSCALE_NONE)
		return WS_NONE;
	return s->wscale > TCP_WSCALE_MAX ? TCP_WSCALE_MAX : s->wscale;
}

static inline uint32_t seg_end(const struct ct_tcp_seg *s)
{
	return s->seq + s->len + !!(s->flags & TCP_SYN) + !!(s->flags & TCP_FIN);
}

/* One flow's window state, copied out so that a check changes nothing. */
struct tcpview {
	struct ct_tcpwin w;
	uint8_t ws;
	uint8_t flags;          /* F_MAXACK0/1 */
};

static inline uint8_t maxack_bit(int dir)
{
	return dir ? F_MAXACK1 : F_MAXACK0;
}

static void init_sender(struct tcpview *v, int dir, const struct ct_tcp_seg *s, uint32_t end)
{
	struct ct_tcpdir *snd = &v->w.d[dir];
	snd->end = snd->maxend = end;
	snd->maxwin = s->win ? s->win : 1;
	snd->maxack = 0;
	v->flags &= (uint8_t)~maxack_bit(dir);
	v->ws = ws_put(v->ws, dir, ws_of_seg(s));
}

static bool established(uint8_t state)
{
	return state == CT_TCP_ESTABLISHED;
}

/* How segment s from direction dir fits the windows of v (a flow in TCP
 * state `state`); with apply, v is advanced when it fits. */
static enum ct_tcp_verdict tcp_window(struct tcpview *v, uint8_t state, int dir,
				      const struct ct_tcp_seg *s)
{
	struct ct_tcpdir *snd = &v->w.d[dir], *rcv = &v->w.d[!dir];
	const uint8_t fl = s->flags;
	uint32_t seq = s->seq, ack = s->ack, end = seg_end(s), win = s->win;

	/* A SYN on a flow past its handshake: passed on unchanged, as Linux
	 * ignores it (the host answers it with a challenge ACK, RFC 5961 4). */
	if ((fl & (TCP_SYN | TCP_ACK)) == TCP_SYN && state != CT_TCP_SYN_SENT &&
	    state != CT_TCP_SYN_RECV && state != CT_TCP_NONE)
		return CT_TCP_IGNORE;

	if (snd->maxwin == 0) {
		if (fl & TCP_SYN) {
			/* the SYN-ACK (or a simultaneous open's SYN) */
			init_sender(v, dir, s, end);
			/* RFC 7323 1.3: scaling only when both sides offer it */
			if (ws_get(v->ws, dir) == WS_NONE || ws_get(v->ws, !dir) == WS_NONE)
				v->ws = 0;
			if (!(fl & TCP_ACK))
				return CT_TCP_OK;
		} else {
			/* mid-stream: what this segment shows */
			uint32_t swin = win << ws_shift(v->ws, dir);
			snd->end = end;
			snd->maxwin = swin ? swin : 1;
			snd->maxend = end + snd->maxwin;
			if (rcv->maxwin == 0)
				rcv->end = rcv->maxend = ack;
			else if (ack == rcv->end + 1)
				rcv->end++;     /* likely the answer to a keepalive */
		}
	} else if ((fl & TCP_SYN) && seq_after(end, snd->end) &&
		   (state == CT_TCP_SYN_SENT || state == CT_TCP_SYN_RECV)) {
		/* RFC 793: a reinitialised TCP uses higher sequence numbers */
		init_sender(v, dir, s, end);
		if (dir == 1 && !(fl & TCP_ACK))
			return CT_TCP_OK;
	}

	if (!(fl & TCP_ACK))
		ack = rcv->end;         /* no ACK: as if it acknowledged all */
	else if ((fl & TCP_RST) && ack == 0)
		ack = rcv->end;         /* stacks that send RST+ACK with ack 0 */
	if ((fl & TCP_RST) && seq == 0 && state == CT_TCP_SYN_SENT)
		seq = end = snd->end;   /* a RST answering the SYN */

	uint32_t maxackwin = snd->maxwin > MAXACKWIN_MIN ? snd->maxwin : MAXACKWIN_MIN;
	bool in_window = seq_before(seq, snd->maxend + 1) &&
			 (!rcv->maxwin || seq_after(end, snd->end - rcv->maxwin - 1)) &&
			 seq_before(ack, rcv->end + 1) &&
			 seq_after(ack, rcv->end - maxackwin - 1);

	if (fl & TCP_RST) {
		/* RFC 5961 3: out of window, even when liberal (Linux: "only out
		 * of window RST segments are INVALID") */
		if (!in_window)
			return CT_TCP_INVALID;
		bool rmaxack = v->flags & maxack_bit(!dir);
		if (rmaxack && seq_before(seq, rcv->maxack) &&
		    !(seq == 0 && !established(state)))
			return CT_TCP_INVALID;  /* below what the receiver acknowledged */
		/* RFC 5961 3.2: only the expected sequence number resets an
		 * established connection; another in the window makes the host
		 * send a challenge ACK, which the flow must survive */
		if (established(state) && rmaxack && seq != rcv->maxack && seq != snd->end)
			return CT_TCP_IGNORE;
		return CT_TCP_OK;
	}
	if (!in_window)
		return s->be_liberal ? CT_TCP_OK : CT_TCP_INVALID;

	/* in the windows: advance them */
	if (!(fl & TCP_SYN))
		win <<= ws_shift(v->ws, dir);
	if (snd->maxwin < win)
		snd->maxwin = win;
	if (seq_after(end, snd->end))
		snd->end = end;
	if (fl & TCP_ACK) {
		if (!(v->flags & maxack_bit(dir))) {
			snd->maxack = ack;
			v->flags |= maxack_bit(dir);
		} else if (seq_after(ack, snd->maxack)) {
			snd->maxack = ack;
		}
	}
	if (rcv->maxwin != 0 && seq_after(end, snd->maxend))
		rcv->maxwin += end - snd->maxend;
	if (seq_after(ack + win, rcv->maxend - 1)) {
		rcv->maxend = ack + win;
		if (win == 0)
			rcv->maxend++;
	}
	return CT_TCP_OK;
}

static inline void view_load(const struct conntrack *ct, const struct ct_entry *e,
			     struct tcpview *v)
{
	v->w = ct->win[idx(ct, e)];
	v->ws = e->wscale;
	v->flags = e->flags & (F_MAXACK0 | F_MAXACK1);
}

static inline void view_store(struct conntrack *ct, struct ct_entry *e, const struct tcpview *v)
{
	ct->win[idx(ct, e)] = v->w;
	e->wscale = v->ws;
	e->flags = (uint8_t)((e->flags & ~(F_MAXACK0 | F_MAXACK1)) | v->flags);
}

static inline int dir_of(const struct ct_entry *e, const struct ct_tuple *t)
{
	return !is_orig(e, t) && is_reply(e, t);
}

enum ct_tcp_verdict ct_tcp_check(const struct conntrack *ct, const struct ct_entry *e,
				 const struct ct_tuple *t, const struct ct_tcp_seg *seg)
{
	if (e->proto != PROTO_TCP || !seg)
		return CT_TCP_OK;
	if ((seg->flags & (TCP_SYN | TCP_ACK)) == TCP_SYN &&
	    (e->state == CT_TCP_TIME_WAIT || e->state == CT_TCP_CLOSE))
		return CT_TCP_OK;       /* a new connection on the same ports */
	struct tcpview v;
	view_load(ct, e, &v);
	return tcp_window(&v, e->state, dir_of(e, t), seg);
}

void ct_count_tcp(struct conntrack *ct, enum ct_tcp_verdict v)
{
	if (v == CT_TCP_INVALID)
		counter_inc(&ct->cnt.tcp_invalid);
	else if (v == CT_TCP_IGNORE)
		counter_inc(&ct->cnt.tcp_rst_ignored);
}

/* A flow's windows from its first segment (from the originator). */
static void tcp_start(struct conntrack *ct, struct ct_entry *e, const struct ct_tcp_seg *seg)
{
	struct tcpview v = { .ws = 0 };
	bool syn = seg && (seg->flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN;
	/* mid-stream or unknown: the scale options were never seen */
	v.ws = syn ? ws_put(WS_NONE << 4, 0, ws_of_seg(seg))
		   : ws_put(ws_put(0, 0, TCP_WSCALE_MAX), 1, TCP_WSCALE_MAX);
	if (syn) {
		init_sender(&v, 0, seg, seg_end(seg));
		v.ws = ws_put(v.ws, 1, WS_NONE);
	}
	if (seg && !syn)
		(void)tcp_window(&v, CT_TCP_NONE, 0, seg);
	view_store(ct, e, &v);
}

static void note_direction(struct ct_entry *e, bool reply)
{
	if (reply)
		e->flags |= F_SEEN_REPLY;
	else if (e->flags & F_SEEN_REPLY && e->proto == PROTO_UDP)
		e->flags |= F_UDP_STREAM;
}

enum ct_tcp_verdict ct_update_seg(struct conntrack *ct, struct ct_entry *e,
				  const struct ct_tuple *t, const struct ct_tcp_seg *seg,
				  const struct ct_timeouts *to, uint64_t now_ns)
{
	if (e->proto != PROTO_TCP || !seg) {
		ct_update(ct, e, t, seg ? seg->flags : 0, to, now_ns);
		return CT_TCP_OK;
	}
	bool reply = dir_of(e, t);
	if ((seg->flags & (TCP_SYN | TCP_ACK)) == TCP_SYN &&
	    (e->state == CT_TCP_TIME_WAIT || e->state == CT_TCP_CLOSE)) {
		/* a new connection on the same ports: its SYN's sender becomes
		 * the originator (tcp_step), its windows start afresh */
		note_direction(e, reply);
		tcp_step(ct, e, reply, seg->flags);
		tcp_start(ct, e, seg);
		refresh(ct, e, to, now_ns);
		journal(ct, e, now_ns);
		return CT_TCP_OK;
	}
	struct tcpview v;
	view_load(ct, e, &v);
	enum ct_tcp_verdict r = tcp_window(&v, e->state, reply, seg);
	if (r != CT_TCP_OK)
		return r;
	view_store(ct, e, &v);
	note_direction(e, reply);
	tcp_step(ct, e, reply, seg->flags);
	refresh(ct, e, to, now_ns);
	journal(ct, e, now_ns);
	return CT_TCP_OK;
}

void ct_update(struct conntrack *ct, struct ct_entry *e, const struct ct_tuple *t,
	       uint8_t tcp_flags, const struct ct_timeouts *to, uint64_t now_ns)
{
	bool reply = !is_orig(e, t) && is_reply(e, t);
	note_direction(e, reply);
	if (e->proto == PROTO_TCP)
		tcp_step(ct, e, reply, tcp_flags);
	refresh(ct, e, to, now_ns);
	journal(ct, e, now_ns);
}

/* A full table stays full: the next new flow removes the embryonic FIFO's
 * new head (in the cache since it was unlinked beside the one removed).
 * Start loading what its removal touches, scattered over the table. */
static void prefetch_next_eviction(const struct conntrack *ct)
{
	uint32_t h = ct->emb_head;
	if (h == NIL)
		return;
	const struct ct_entry *e = &ct->pool[h];
	struct ct_tuple t = {
		.src = e->src, .dst = e->dst, .sport = e->sport, .dport = e->dport,
		.proto = e->proto,
	};
	__builtin_prefetch(&ct->buckets[bucket_of(ct, e->iface, ct_hash(&t))]);
	__builtin_prefetch(&ct->charge[h]);
	__builtin_prefetch(&ct->offl[h]);
	if (e->enext != NIL)
		__builtin_prefetch(&ct->pool[e->enext]);
}

/* Room for one more flow in a full table: expired flows first, then the
 * oldest embryonic one. */
static bool make_room(struct conntrack *ct, uint64_t now_ns)
{
	if (ct->emb_head != NIL && ct->pool[ct->emb_head].deadline <= now_ns) {
		ct_remove(ct, &ct->pool[ct->emb_head]);
		counter_inc(&ct->cnt.expired);
		prefetch_next_eviction(ct);
		return true;
	}
	for (unsigned n = 0, nb = reclaim_budget(ct); n < nb; n++)
		if (ct_expire(ct, now_ns, 1) > 0)
			return true;
	if (ct->emb_head != NIL) {
		ct_remove(ct, &ct->pool[ct->emb_head]);
		counter_inc(&ct->cnt.evicted_embryonic);
		prefetch_next_eviction(ct);
		return true;
	}
	return false;
}

static struct ct_entry *insert(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			       uint64_t hash, uint8_t tcp_flags, const struct ct_tcp_seg *seg,
			       const struct ct_timeouts *to, uint64_t now_ns);

/* Takes the free slot at the head of the list for a new flow of t at iface
 * and links it into bucket b: no state yet (ct_insert and ct_restore set
 * it).  The caller made sure a slot is free. */
static struct ct_entry *link_new(struct conntrack *ct, uint64_t b, uint32_t iface,
				 const struct ct_tuple *t)
{
	uint32_t i = ct->free_head;
	struct ct_entry *e = &ct->pool[i];

	ct->free_head = e->next;
	e->src = t->src;
	e->dst = t->dst;
	e->sport = t->sport;
	e->dport = t->dport;
	e->proto = t->proto;
	e->iface = iface;
	e->flags = F_USED;
	e->state = CT_TCP_NONE;
	e->wscale = 0;
	e->next = ct->buckets[b];
	ct->buckets[b] = i;
	charge(ct, i, source_hash(&t->src, ct->v6_prefix));
	counter_inc(&ct->cnt.used);
	counter_inc(&ct->cnt.inserted);
	return e;
}

struct ct_entry *ct_insert(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			   uint64_t hash, uint8_t tcp_flags, const struct ct_timeouts *to,
			   uint64_t now_ns)
{
	return insert(ct, iface, t, hash, tcp_flags, NULL, to, now_ns);
}

struct ct_entry *ct_insert_seg(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			       uint64_t hash, const struct ct_tcp_seg *seg,
			       const struct ct_timeouts *to, uint64_t now_ns)
{
	return insert(ct, iface, t, hash, seg ? seg->flags : 0, seg, to, now_ns);
}

static struct ct_entry *insert(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			       uint64_t hash, uint8_t tcp_flags, const struct ct_tcp_seg *seg,
			       const struct ct_timeouts *to, uint64_t now_ns)
{
	uint64_t b = bucket_of(ct, iface, hash);
	uint32_t *link = &ct->buckets[b];
	while (*link != NIL) {
		struct ct_entry *e = &ct->pool[*link];
		if (now_ns >= e->deadline) {
			release(ct, link);
			counter_inc(&ct->cnt.expired);
			continue;
		}
		if (matches(e, iface, t)) {
			/* Already tracked (callers look up first): no duplicate. */
			if (seg)
				(void)ct_update_seg(ct, e, t, seg, to, now_ns);
			else
				ct_update(ct, e, t, tcp_flags, to, now_ns);
			return e;
		}
		link = &e->next;
	}
	if (ct->free_head == NIL && !make_room(ct, now_ns)) {
		counter_inc(&ct->cnt.allowance_exceeded);
		return NULL;
	}
	struct ct_entry *e = link_new(ct, b, iface, t);

	if (t->proto == PROTO_TCP) {
		bool syn = (tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN;
		/* Mid-stream pickup (nf_conntrack's "loose" mode, unassured): an
		 * embryonic flow, with SYN-received's timeout and evictable when
		 * the table is full, until the other side answers.  A lone ACK
		 * must not hold a slot for the established timeout (days). */
		if (!syn)
			e->flags |= F_PICKUP;
		tcp_start(ct, e, seg);
		set_state(ct, e, syn ? CT_TCP_SYN_SENT : CT_TCP_SYN_RECV);
		if (!syn) /* a FIN or RST still counts */
			tcp_step(ct, e, false, tcp_flags);
	}
	refresh(ct, e, to, now_ns);
	journal(ct, e, now_ns);
	return e;
}

void ct_remove(struct conntrack *ct, struct ct_entry *e)
{
	if (!e || !(e->flags & F_USED))
		return;
	struct ct_tuple t = {
		.src = e->src, .dst = e->dst, .sport = e->sport, .dport = e->dport,
		.proto = e->proto,
	};
	uint32_t i = idx(ct, e);
	uint32_t *link = &ct->buckets[bucket_of(ct, e->iface, ct_hash(&t))];
	while (*link != NIL) {
		if (*link == i) {
			release(ct, link);
			return;
		}
		link = &ct->pool[*link].next;
	}
}

unsigned ct_expire(struct conntrack *ct, uint64_t now_ns, unsigned budget)
{
	unsigned freed = 0;
	for (unsigned n = 0; n < budget && n <= ct->mask; n++) {
		uint64_t b = ct->cursor;
		ct->cursor = (b + 1) & ct->mask;
		if (now_ns < ct->floor_ns) {
			/* nothing can have expired: the cursor moves on as if the
			 * bucket had been swept, so what later sweeps find (and
			 * so the verdicts of a full table) stays the same */
			if (ct->floor_ns < ct->cycle_min)
				ct->cycle_min = ct->floor_ns;
		} else {
			/* Chains are scattered over the pool: start loading ahead. */
			uint32_t ahead = ct->buckets[(b + SWEEP_AHEAD) & ct->mask];
			if (ahead != NIL)
				__builtin_prefetch(&ct->pool[ahead]);
			uint32_t *link = &ct->buckets[b];
			while (*link != NIL) {
				uint64_t d = ct->pool[*link].deadline;
				if (now_ns >= d) {
					release(ct, link);
					freed++;
				} else {
					if (d < ct->cycle_min)
						ct->cycle_min = d;
					link = &ct->pool[*link].next;
				}
			}
		}
		if (ct->cursor == 0) {
			ct->floor_ns = ct->cycle_min;
			ct->cycle_min = UINT64_MAX;
		}
	}
	counter_add(&ct->cnt.expired, freed);
	return freed;
}

void ct_get_stats(const struct conntrack *ct, struct ct_stats *out)
{
	out->used = counter_get(&ct->cnt.used);
	out->max = ct->max;
	out->inserted = counter_get(&ct->cnt.inserted);
	out->expired = counter_get(&ct->cnt.expired);
	out->allowance_exceeded = counter_get(&ct->cnt.allowance_exceeded);
	out->evicted_embryonic = counter_get(&ct->cnt.evicted_embryonic);
	out->tcp_invalid = counter_get(&ct->cnt.tcp_invalid);
	out->tcp_rst_ignored = counter_get(&ct->cnt.tcp_rst_ignored);
	out->source_rate_exceeded = counter_get(&ct->cnt.source_rate_exceeded);
	out->source_share_exceeded = counter_get(&ct->cnt.source_share_exceeded);
}

uint64_t ct_available(const struct conntrack *ct)
{
	return ct->max - counter_get(&ct->cnt.used);
}

void ct_entry_info(const struct ct_entry *e, struct ct_flow_info *out)
{
	memset(out, 0, sizeof(*out));
	out->iface = e->iface;
	out->orig.src = e->src;
	out->orig.dst = e->dst;
	out->orig.sport = e->sport;
	out->orig.dport = e->dport;
	out->orig.proto = e->proto;
	out->tcp_state = (enum ct_tcp_state)e->state;
	out->seen_reply = e->flags & F_SEEN_REPLY;
	out->udp_stream = e->proto == PROTO_UDP && (e->flags & F_UDP_STREAM);
	out->expires_ns = e->deadline;
}

bool ct_offloadable(const struct ct_entry *e)
{
	if (e->proto == PROTO_TCP)
		return e->state == CT_TCP_ESTABLISHED;
	return (e->flags & F_SEEN_REPLY) != 0;
}

void ct_set_offloaded(struct conntrack *ct, struct ct_entry *e, uint32_t kct_id, uint32_t at_ms)
{
	ct->offl[idx(ct, e)] = (uint64_t)kct_id << 32 | (at_ms ? at_ms : 1);
}

/* A flow taken back had qualified: its count stays saturated, and it is
 * offered again at once. */
#define OFFL_QUALIFIED ((uint64_t)UINT32_MAX << 32)

void ct_clear_offloaded(struct conntrack *ct, struct ct_entry *e)
{
	uint64_t *o = &ct->offl[idx(ct, e)];
	if ((uint32_t)*o)
		*o = OFFL_QUALIFIED;
}

bool ct_offloaded(const struct conntrack *ct, const struct ct_entry *e, uint32_t *kct_id,
		  uint32_t *at_ms)
{
	uint64_t o = ct->offl[idx(ct, e)];
	if ((uint32_t)o == 0)
		o = 0;  /* not offloaded: the high half is a count */
	if (kct_id)
		*kct_id = (uint32_t)(o >> 32);
	if (at_ms)
		*at_ms = (uint32_t)o;
	return o != 0;
}

uint32_t ct_offload_count(struct conntrack *ct, struct ct_entry *e)
{
	uint64_t *o = &ct->offl[idx(ct, e)];
	if ((uint32_t)*o)
		return UINT32_MAX;      /* offloaded (being marked again) */
	uint32_t n = (uint32_t)(*o >> 32);
	if (n != UINT32_MAX)
		n++;
	*o = (uint64_t)n << 32;
	return n;
}

uint64_t ct_clear_offloaded_all(struct conntrack *ct)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < ct->max; i++) {
		if (!(uint32_t)ct->offl[i])
			continue;
		n++;
		ct->offl[i] = OFFL_QUALIFIED;
		/* The kernel passed its segments unseen: the windows moved
		 * there, and are picked up again from the next segments, as a
		 * flow first seen mid-stream (Linux does the same for a flow
		 * back from its flowtable: flow_offload_fixup_tcp). */
		struct ct_entry *e = &ct->pool[i];
		if ((e->flags & F_USED) && e->proto == PROTO_TCP) {
			memset(&ct->win[i], 0, sizeof(ct->win[i]));
			e->flags &= (uint8_t)~(F_MAXACK0 | F_MAXACK1);
		}
	}
	return n;
}

void ct_foreach(struct conntrack *ct, uint64_t now_ns,
		int (*fn)(const struct ct_flow_info *info, void *arg), void *arg)
{
	for (uint64_t b = 0; b <= ct->mask; b++) {
		for (uint32_t i = ct->buckets[b]; i != NIL; i = ct->pool[i].next) {
			const struct ct_entry *e = &ct->pool[i];
			if (now_ns >= e->deadline)
				continue;
			struct ct_flow_info info;
			ct_entry_info(e, &info);
			if (fn(&info, arg))
				return;
		}
	}
}

static const struct {
	uint8_t entry, saved;
} saved_flags[] = {
	{ F_SEEN_REPLY, CT_SAVED_SEEN_REPLY },
	{ F_UDP_STREAM, CT_SAVED_UDP_STREAM },
	{ F_FIN_REPLY, CT_SAVED_FIN_REPLY },
	{ F_PICKUP, CT_SAVED_PICKUP },
};

static void save(const struct ct_entry *e, struct ct_saved *s)
{
	memset(s, 0, sizeof(*s));
	s->iface = e->iface;
	s->orig = (struct ct_tuple){ .src = e->src, .dst = e->dst, .sport = e->sport,
				     .dport = e->dport, .proto = e->proto };
	s->tcp_state = e->state;
	for (size_t k = 0; k < sizeof(saved_flags) / sizeof(saved_flags[0]); k++)
		if (e->flags & saved_flags[k].entry)
			s->flags |= saved_flags[k].saved;
	s->deadline_ns = e->deadline;
}

void ct_foreach_saved(struct conntrack *ct, uint64_t now_ns,
		      int (*fn)(const struct ct_saved *s, void *arg), void *arg)
{
	for (uint64_t b = 0; b <= ct->mask; b++) {
		for (uint32_t i = ct->buckets[b]; i != NIL; i = ct->pool[i].next) {
			const struct ct_entry *e = &ct->pool[i];
			if (now_ns >= e->deadline)
				continue;
			struct ct_saved s;
			save(e, &s);
			if (fn(&s, arg))
				return;
		}
	}
}

int ct_restore(struct conntrack *ct, const struct ct_saved *s, uint64_t now_ns)
{
	const struct ct_tuple *t = &s->orig;
	bool tcp = t->proto == PROTO_TCP;

	if (s->deadline_ns <= now_ns || (s->flags & ~CT_SAVED_FLAGS) ||
	    (tcp ? s->tcp_state == CT_TCP_NONE || s->tcp_state > CT_TCP_CLOSE
		 : s->tcp_state != CT_TCP_NONE) ||
	    (!tcp && (s->flags & (CT_SAVED_FIN_REPLY | CT_SAVED_PICKUP))))
		return -1;
	uint64_t hash = ct_hash(t);
	if (ct_lookup(ct, s->iface, t, hash, now_ns))
		return -2;
	/* a restored flow evicts none: not even an embryonic one */
	if (ct->free_head == NIL) {
		counter_inc(&ct->cnt.allowance_exceeded);
		return -3;
	}
	struct ct_entry *e = link_new(ct, bucket_of(ct, s->iface, hash), s->iface, t);
	for (size_t k = 0; k < sizeof(saved_flags) / sizeof(saved_flags[0]); k++)
		if (s->flags & saved_flags[k].saved)
			e->flags |= saved_flags[k].entry;
	set_state(ct, e, s->tcp_state);
	set_deadline(ct, e, s->deadline_ns);
	journal_quiet(ct, e);
	return 0;
}

int ct_set_journal(struct conntrack *ct, ct_journal_fn fn, void *arg)
{
	if (fn && !ct->jr) {
		ct->jr = table_alloc((size_t)ct->max * sizeof(*ct->jr));
		if (!ct->jr)
			return -1;
		memset(ct->jr, 0, (size_t)ct->max * sizeof(*ct->jr));
	}
	ct->jfn = fn;
	ct->jarg = arg;
	return 0;
}

int ct_sync_apply(struct conntrack *ct, const struct ct_saved *s, uint64_t now_ns)
{
	const struct ct_tuple *t = &s->orig;
	struct ct_entry *e = ct_lookup(ct, s->iface, t, ct_hash(t), now_ns);

	if (!e)
		return ct_restore(ct, s, now_ns);
	if (s->deadline_ns <= now_ns || (s->flags & ~CT_SAVED_FLAGS) || s->orig.proto != e->proto ||
	    (e->proto == PROTO_TCP ? s->tcp_state == CT_TCP_NONE || s->tcp_state > CT_TCP_CLOSE
				   : s->tcp_state != CT_TCP_NONE))
		return -1;
	/* The peer's word on the flow: its state and flags; the deadline it
	 * gives unless the flow's own, in the same state, is later. */
	bool same_state = e->state == s->tcp_state;
	uint8_t keep = e->flags & (uint8_t)~(F_SEEN_REPLY | F_UDP_STREAM | F_FIN_REPLY | F_PICKUP);
	uint8_t fl = keep;
	for (size_t k = 0; k < sizeof(saved_flags) / sizeof(saved_flags[0]); k++)
		if (s->flags & saved_flags[k].saved)
			fl |= saved_flags[k].entry;
	/* what a flow has seen it keeps seeing: replies, a UDP stream */
	fl |= e->flags & (F_SEEN_REPLY | F_UDP_STREAM);
	e->flags = fl;
	if (e->proto == PROTO_TCP)
		set_state(ct, e, s->tcp_state);
	if (!same_state || s->deadline_ns > e->deadline)
		set_deadline(ct, e, s->deadline_ns);
	journal_quiet(ct, e);
	return 1;
}

/* ct_remove without telling the journal */
static void ct_jfn_off_remove(struct conntrack *ct, struct ct_entry *e)
{
	ct_journal_fn fn = ct->jfn;
	ct->jfn = NULL;
	ct_remove(ct, e);
	ct->jfn = fn;
	if (fn)
		ct->jr[idx(ct, e)].deadline = 0;
}

bool ct_sync_forget(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t, uint64_t now_ns,
		    uint64_t slack_ns)
{
	struct ct_entry *e = ct_lookup(ct, iface, t, ct_hash(t), now_ns);
	if (!e || e->deadline - now_ns > slack_ns)
		return false;
	/* gone on the peer: not told back */
	ct_jfn_off_remove(ct, e);
	return true;
}

static struct ct_frag *frag_slot(struct conntrack *ct, const struct ip_addr *src,
				 const struct ip_addr *dst, uint8_t proto, uint32_t id)
{
	uint64_t h = mum(src->lo ^ key[0], dst->lo ^ key[1]) ^ mum(src->hi ^ dst->hi, key[2]);
	h = mix64(h ^ ((uint64_t)id << 8 | proto));
	return &ct->frags[h % CT_FRAGS];
}

void ct_frag_admit(struct conntrack *ct, const struct ip_addr *src, const struct ip_addr *dst,
		   uint8_t proto, uint32_t id, uint64_t now_ns)
{
	struct ct_frag *f = frag_slot(ct, src, dst, proto, id);
	f->src = *src;
	f->dst = *dst;
	f->proto = proto;
	f->id = id;
	f->deadline = now_ns + (uint64_t)CT_FRAG_TIMEOUT * NS_PER_S;
}

bool ct_frag_admitted(struct conntrack *ct, const struct ip_addr *src, const struct ip_addr *dst,
		      uint8_t proto, uint32_t id, uint64_t now_ns)
{
	const struct ct_frag *f = frag_slot(ct, src, dst, proto, id);
	return f->deadline > now_ns && f->id == id && f->proto == proto && addr_eq(&f->src, src) &&
	       addr_eq(&f->dst, dst);
}

size_t ct_bytes_per_flow(const struct conntrack *ct)
{
	size_t total = (size_t)ct->max * (sizeof(struct ct_entry) + sizeof(struct ct_tcpwin) +
					  sizeof(uint32_t) + sizeof(uint64_t)) +
		       (size_t)(ct->mask + 1) * sizeof(uint32_t) +
		       (size_t)(ct->src_mask + 1) * sizeof(struct ct_srcbucket);
	return (total + ct->max - 1) / ct->max;
}
