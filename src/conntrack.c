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
#include "vpcfw/model.h"
#include "vpcfw/packet.h"

#define NIL UINT32_MAX
#define NS_PER_S 1000000000ULL
/* Buckets swept for expired flows before a full table refuses or evicts.
 * Each refusal moves the sweep on, so an expired flow is found within
 * buckets / RECLAIM_BUDGET refusals even without ct_expire calls. */
#define RECLAIM_BUDGET 16
#define SWEEP_AHEAD 8

enum {
	F_USED = 1 << 0,
	F_SEEN_REPLY = 1 << 1,
	F_UDP_STREAM = 1 << 2,
	F_FIN_REPLY = 1 << 3,   /* the first FIN came from the reply side */
	F_EMBRYONIC = 1 << 4,   /* linked on the embryonic FIFO */
	F_PICKUP = 1 << 5,      /* started mid-stream: unconfirmed until the other side answers */
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
};

_Static_assert(sizeof(struct ct_entry) == 64, "a flow is one cache line");

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

struct conntrack {
	struct ct_frag frags[CT_FRAGS];
	struct ct_entry *pool;
	uint32_t *buckets;
	uint64_t mask;
	uint32_t max;
	uint32_t free_head;
	uint32_t emb_head, emb_tail;
	uint64_t cursor;                /* next bucket ct_expire visits */
	/* Written by the owning worker, read by the control thread. */
	struct {
		counter_t used, inserted, expired, allowance_exceeded, evicted_embryonic;
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
	ct->buckets = table_alloc((size_t)nb * sizeof(uint32_t));
	if (!ct->pool || !ct->buckets) {
		ct_destroy(ct);
		return NULL;
	}
	/* Touch everything now: no page faults on the packet path. */
	memset(ct->buckets, 0xff, (size_t)nb * sizeof(uint32_t));
	memset(ct->pool, 0, (size_t)max * sizeof(struct ct_entry));
	for (uint32_t i = 0; i < max; i++)
		ct->pool[i].next = i + 1 < max ? i + 1 : NIL;
	ct->free_head = 0;
	ct->mask = nb - 1;
	ct->max = max;
	ct->emb_head = ct->emb_tail = NIL;
	return ct;
}

void ct_destroy(struct conntrack *ct)
{
	if (!ct)
		return;
	free(ct->pool);
	free(ct->buckets);
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

/* Unlinks the entry *link points at from its chain and frees it. */
static void release(struct conntrack *ct, uint32_t *link)
{
	uint32_t i = *link;
	struct ct_entry *e = &ct->pool[i];
	*link = e->next;
	emb_unlink(ct, e);
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

static void refresh(struct ct_entry *e, const struct ct_timeouts *to, uint64_t now_ns)
{
	uint64_t d = (uint64_t)timeout_of(e, to) * NS_PER_S;
	e->deadline = now_ns > UINT64_MAX - d ? UINT64_MAX : now_ns + d;
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

void ct_update(struct conntrack *ct, struct ct_entry *e, const struct ct_tuple *t,
	       uint8_t tcp_flags, const struct ct_timeouts *to, uint64_t now_ns)
{
	bool reply = !is_orig(e, t) && is_reply(e, t);
	if (reply)
		e->flags |= F_SEEN_REPLY;
	else if (e->flags & F_SEEN_REPLY)
		e->flags |= F_UDP_STREAM; /* only read for UDP */
	if (e->proto == PROTO_TCP)
		tcp_step(ct, e, reply, tcp_flags);
	refresh(e, to, now_ns);
}

/* Room for one more flow in a full table: expired flows first, then the
 * oldest embryonic one. */
static bool make_room(struct conntrack *ct, uint64_t now_ns)
{
	if (ct->emb_head != NIL && ct->pool[ct->emb_head].deadline <= now_ns) {
		ct_remove(ct, &ct->pool[ct->emb_head]);
		counter_inc(&ct->cnt.expired);
		return true;
	}
	for (unsigned n = 0; n < RECLAIM_BUDGET; n++)
		if (ct_expire(ct, now_ns, 1) > 0)
			return true;
	if (ct->emb_head != NIL) {
		ct_remove(ct, &ct->pool[ct->emb_head]);
		counter_inc(&ct->cnt.evicted_embryonic);
		return true;
	}
	return false;
}

struct ct_entry *ct_insert(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			   uint64_t hash, uint8_t tcp_flags, const struct ct_timeouts *to,
			   uint64_t now_ns)
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
			ct_update(ct, e, t, tcp_flags, to, now_ns);
			return e;
		}
		link = &e->next;
	}
	if (ct->free_head == NIL && !make_room(ct, now_ns)) {
		counter_inc(&ct->cnt.allowance_exceeded);
		return NULL;
	}
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
	e->next = ct->buckets[b];
	ct->buckets[b] = i;
	counter_inc(&ct->cnt.used);
	counter_inc(&ct->cnt.inserted);

	if (t->proto == PROTO_TCP) {
		bool syn = (tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN;
		/* Mid-stream pickup (nf_conntrack's "loose" mode, unassured): an
		 * embryonic flow, with SYN-received's timeout and evictable when
		 * the table is full, until the other side answers.  A lone ACK
		 * must not hold a slot for the established timeout (days). */
		if (!syn)
			e->flags |= F_PICKUP;
		set_state(ct, e, syn ? CT_TCP_SYN_SENT : CT_TCP_SYN_RECV);
		if (!syn) /* a FIN or RST still counts */
			tcp_step(ct, e, false, tcp_flags);
	}
	refresh(e, to, now_ns);
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
		/* Chains are scattered over the pool: start loading ahead. */
		uint32_t ahead = ct->buckets[(ct->cursor + SWEEP_AHEAD) & ct->mask];
		if (ahead != NIL)
			__builtin_prefetch(&ct->pool[ahead]);
		uint32_t *link = &ct->buckets[ct->cursor];
		ct->cursor = (ct->cursor + 1) & ct->mask;
		while (*link != NIL) {
			if (now_ns >= ct->pool[*link].deadline) {
				release(ct, link);
				freed++;
			} else {
				link = &ct->pool[*link].next;
			}
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

void ct_foreach_saved(struct conntrack *ct, uint64_t now_ns,
		      int (*fn)(const struct ct_saved *s, void *arg), void *arg)
{
	for (uint64_t b = 0; b <= ct->mask; b++) {
		for (uint32_t i = ct->buckets[b]; i != NIL; i = ct->pool[i].next) {
			const struct ct_entry *e = &ct->pool[i];
			if (now_ns >= e->deadline)
				continue;
			struct ct_saved s;
			memset(&s, 0, sizeof(s));
			s.iface = e->iface;
			s.orig = (struct ct_tuple){ .src = e->src, .dst = e->dst, .sport = e->sport,
						    .dport = e->dport, .proto = e->proto };
			s.tcp_state = e->state;
			for (size_t k = 0; k < sizeof(saved_flags) / sizeof(saved_flags[0]); k++)
				if (e->flags & saved_flags[k].entry)
					s.flags |= saved_flags[k].saved;
			s.deadline_ns = e->deadline;
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
	uint64_t b = bucket_of(ct, s->iface, hash);
	uint32_t i = ct->free_head;
	struct ct_entry *e = &ct->pool[i];
	ct->free_head = e->next;
	e->src = t->src;
	e->dst = t->dst;
	e->sport = t->sport;
	e->dport = t->dport;
	e->proto = t->proto;
	e->iface = s->iface;
	e->flags = F_USED;
	for (size_t k = 0; k < sizeof(saved_flags) / sizeof(saved_flags[0]); k++)
		if (s->flags & saved_flags[k].saved)
			e->flags |= saved_flags[k].entry;
	e->state = CT_TCP_NONE;
	e->next = ct->buckets[b];
	ct->buckets[b] = i;
	counter_inc(&ct->cnt.used);
	counter_inc(&ct->cnt.inserted);
	set_state(ct, e, s->tcp_state);
	e->deadline = s->deadline_ns;
	return 0;
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
	size_t total = (size_t)ct->max * sizeof(struct ct_entry) +
		       (size_t)(ct->mask + 1) * sizeof(uint32_t);
	return (total + ct->max - 1) / ct->max;
}
