/* Offloaded flows' accounting and idle timeouts (offacct.h, issue #16). */
#include "vpcfw/offacct.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "vpcfw/log.h"

#define DEFAULT_FLOWS 65536u
#define DEFAULT_INTERVAL_MS 1000u
#define DEFAULT_RING 8192u
#define UP_RESERVE 128u         /* ring room kept for forget/delete requests */

enum msg_type {
	M_SAMPLE = 1,   /* down: an entry's counters */
	M_ROUND,        /* down: the end of a dump */
	M_BASE,         /* down: the answer to M_GET */
	M_GET,          /* up: read the baseline of a flow */
	M_REG,          /* up: a flow marked (the dumps should find it) */
	M_FORGET,       /* up: a flow no longer accounted */
	M_DELETE,       /* up: delete the kernel entry, then forget */
};

struct msg {
	uint8_t type;
	bool ok;                        /* M_BASE: the entry was found */
	bool noentry;                   /* M_BASE: none, either way round */
	bool marked;                    /* M_SAMPLE: the entry has the offload mark */
	bool full;                      /* M_ROUND: of a whole dump, marked or not */
	bool check;                     /* M_GET, M_BASE: not a baseline: is a lost
					   flow's entry still there (its id), marked? */
	uint32_t handle;                /* the worker's flow */
	uint32_t id;                    /* the kernel entry */
	uint32_t qlo, qhi;              /* M_BASE: the queue's last packet id just
					   before and just after the reading */
	uint64_t seq;                   /* M_ROUND: registrations taken before the dump */
	uint64_t packets[2], bytes[2];
	struct offacct_tuple t;         /* M_GET: the packet's; M_BASE, M_DELETE: original */
};

/* One producer, one consumer. */
struct ring {
	struct msg *m;
	uint32_t mask;
	_Atomic uint32_t head;          /* producer */
	_Atomic uint32_t tail;          /* consumer */
};

static bool ring_init(struct ring *r, uint32_t n)
{
	r->m = calloc(n, sizeof(*r->m));
	r->mask = n - 1;
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	return r->m != NULL;
}

static uint32_t ring_free(const struct ring *r)
{
	uint32_t h = atomic_load_explicit(&((struct ring *)r)->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&((struct ring *)r)->tail, memory_order_acquire);
	return r->mask + 1 - (h - t);
}

static bool ring_push(struct ring *r, const struct msg *m)
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);

	if (h - t > r->mask)
		return false;
	r->m[h & r->mask] = *m;
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return true;
}

static bool ring_pop(struct ring *r, struct msg *m)
{
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);

	if (t == h)
		return false;
	*m = r->m[t & r->mask];
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return true;
}

/* ------------------------------------------------------------ id tables */

/* Linear probing on a u32 key with backward-shift deletion; slot value 0:
 * empty, else 1 + the value. */
struct idtab {
	uint32_t *key;
	uint64_t *val;
	uint32_t mask, n;
};

static uint32_t idhash(uint32_t id)
{
	uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ULL;
	return (uint32_t)(h >> 32);
}

static bool idtab_init(struct idtab *t, uint32_t cap)
{
	uint32_t n = 16;
	while (n < cap * 2)
		n <<= 1;
	t->key = calloc(n, sizeof(*t->key));
	t->val = calloc(n, sizeof(*t->val));
	t->mask = n - 1;
	t->n = 0;
	return t->key && t->val;
}

static void idtab_free(struct idtab *t)
{
	free(t->key);
	free(t->val);
	memset(t, 0, sizeof(*t));
}

/* The slot of id, or of the empty slot where it would go. */
static uint32_t idtab_slot(const struct idtab *t, uint32_t id)
{
	uint32_t i = idhash(id) & t->mask;
	while (t->val[i] && t->key[i] != id)
		i = (i + 1) & t->mask;
	return i;
}

static bool idtab_get(const struct idtab *t, uint32_t id, uint64_t *v)
{
	uint32_t i = idtab_slot(t, id);
	if (!t->val[i])
		return false;
	*v = t->val[i] - 1;
	return true;
}

/* The caller keeps n below half the slots. */
static void idtab_put(struct idtab *t, uint32_t id, uint64_t v)
{
	uint32_t i = idtab_slot(t, id);
	if (!t->val[i])
		t->n++;
	t->key[i] = id;
	t->val[i] = v + 1;
}

static void idtab_del(struct idtab *t, uint32_t id)
{
	uint32_t i = idtab_slot(t, id);
	if (!t->val[i])
		return;
	t->n--;
	t->val[i] = 0;
	/* backward shift: entries after the hole that would be found through it */
	for (uint32_t j = (i + 1) & t->mask; t->val[j]; j = (j + 1) & t->mask) {
		uint32_t home = idhash(t->key[j]) & t->mask;
		/* j's entry stays if its home lies cyclically in (i, j] */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		t->key[i] = t->key[j];
		t->val[i] = t->val[j];
		t->val[j] = 0;
		i = j;
	}
}

/* ------------------------------------------------------------ the worker's flows */

enum {
	ST_FREE = 0,
	ST_PENDING,             /* the baseline asked for */
	ST_FAILED,              /* no baseline (no kernel entry?): ask again later */
	ST_READY,               /* baseline known: mark on the next offloadable packet */
	ST_MARKED,              /* marked: the dumps account for it */
	ST_UNMARKED,            /* a full dump found its entry without the mark */
	ST_LOST,                /* marked, but not in the last dump: its entry's
				   mark cleared, or the entry gone or replaced
				   (a new connection of the same tuple); a
				   reading of its tuple tells which */
	ST_DONE,                /* back on the queue for good: forget it */
	ST_NOENTRY,             /* the kernel has no entry (no conntrack there: no
				   offload rules): marking changes nothing, and
				   the flow is looked up again later */
};

#define AMBIGUOUS_RETRY_NS 2000000u     /* a baseline read again after 2 ms */
#define RECENT 16               /* packets noted while the baseline is read:
				   the last ones (a ring) */
#define HANDLE_BITS 20
#define HANDLE_MASK ((1u << HANDLE_BITS) - 1)

struct oa_flow {
	uint8_t state;
	uint8_t tdir;                   /* the template's kernel direction: 0 original */
	uint8_t stage, reason;          /* of the offloadable verdict */
	uint8_t n_recent;               /* noted while pending (saturating) */
	uint8_t r_next;                 /* recent[]: where the next one goes */
	uint8_t family, proto, icmp_type, pflags;
	uint16_t nonce;
	uint32_t kid;                   /* the kernel entry */
	uint32_t base_lo, base_hi;      /* the queue's last packet id before and
					   after the baseline was read */
	uint32_t upos;                  /* in used[] */
	uint64_t hash;                  /* ct_hash of the tuple */
	/* the template: the first offloadable packet */
	struct ip_addr src, dst;
	uint16_t sport, dport, icmp_id;
	struct offacct_track track[2];
	/* the records' interfaces, of generation gen */
	const struct iface *a, *b;
	const struct subnet *ssub, *dsub;
	uint64_t gen;
	/* by kernel direction: what the flow logs have of the kernel's count,
	 * and what they counted from the queue since (to be subtracted) */
	uint64_t acct_pk[2], acct_by[2];
	uint64_t q_pk[2], q_by[2];
	uint64_t retry_ns;
	uint64_t reg_seq, sampled_round;
	uint64_t checked_round;         /* ST_LOST: the round its check was asked in */
	struct {
		uint32_t id, bytes;
		bool same;              /* in the template's direction */
	} recent[RECENT];
};

struct offacct_worker {
	struct offacct *a;
	int index;
	struct oa_flow *flows;          /* [cap] */
	uint32_t *free_list;            /* [cap] */
	uint32_t *used;                 /* [n]: the flows in use */
	uint32_t n_free;
	uint32_t cap;
	uint32_t *slots;                /* by tuple: 1 + index; 0: empty */
	uint32_t smask;
	uint32_t n;
	struct ring down, up;
	uint32_t pending_reg[64];       /* this batch's marks (handles) */
	uint32_t n_pending;
	uint64_t reg_seq;               /* marks announced */
	uint64_t round;
	bool kick;                      /* a request the thread should take now */
	struct {
		counter_t flows, registered, refused_full, baselines, baseline_failures, samples,
			packets, bytes, requeued, kernel_deleted, unmarked, delete_errors, noentry,
			replaced;
	} cnt;
};

struct offacct {
	struct offacct_options o;
	struct offacct_worker *w;
	/* the thread's */
	struct idtab owner;             /* kernel id -> worker << 32 | handle */
	uint64_t *reg_taken;            /* per worker: marks taken */
	pthread_t thread;
	bool started;
	atomic_bool stop;
	atomic_bool full_next;
	int wake;                       /* eventfd: the workers' urgent requests
					   (a baseline, a deletion) and stop */
	struct nfct_handle *h;          /* dumps */
	struct nfct_handle *hq;         /* gets, deletes */
	bool sample_blocked;            /* a ring stayed full: the round is cut short */
	bool wait;                      /* wait on full rings (not in offacct_finish) */
	const struct offacct_apply *finish; /* offacct_finish: serve full rings here */
	struct msg got;                 /* a get's answer */
	bool got_one;
	counter_t dumps, dump_errors;
};

static uint32_t handle_of(const struct offacct_worker *w, const struct oa_flow *f)
{
	return (uint32_t)f->nonce << HANDLE_BITS | (uint32_t)(f - w->flows);
}

static struct oa_flow *by_handle(struct offacct_worker *w, uint32_t h)
{
	uint32_t i = h & HANDLE_MASK;
	if (i >= w->cap)
		return NULL;
	struct oa_flow *f = &w->flows[i];
	return f->state != ST_FREE && f->nonce == (uint16_t)(h >> HANDLE_BITS) ? f : NULL;
}

static bool same_flow(const struct oa_flow *f, const struct ct_tuple *t)
{
	if (f->proto != t->proto)
		return false;
	return (addr_eq(&f->src, &t->src) && addr_eq(&f->dst, &t->dst) && f->sport == t->sport &&
		f->dport == t->dport) ||
	       (addr_eq(&f->src, &t->dst) && addr_eq(&f->dst, &t->src) && f->sport == t->dport &&
		f->dport == t->sport);
}

/* the flow's tuple as the records and the table see it: ports of TCP and
 * UDP, the identifier of an ICMP query in both, else none */
static void tuple_of(const struct packet *p, struct ct_tuple *t)
{
	t->src = p->src;
	t->dst = p->dst;
	t->proto = p->proto;
	bool icmp = p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6;
	t->sport = icmp ? p->icmp_id : p->sport;
	t->dport = icmp ? p->icmp_id : p->dport;
}

static uint32_t find_slot(const struct offacct_worker *w, const struct ct_tuple *t, uint64_t h)
{
	uint32_t i = (uint32_t)h & w->smask;
	while (w->slots[i] && !same_flow(&w->flows[w->slots[i] - 1], t))
		i = (i + 1) & w->smask;
	return i;
}


static void unlink_slot(struct offacct_worker *w, struct oa_flow *f)
{
	struct ct_tuple t = { .src = f->src, .dst = f->dst, .sport = f->sport, .dport = f->dport,
			      .proto = f->proto };
	uint32_t i = find_slot(w, &t, f->hash);
	if (!w->slots[i])
		return;
	w->slots[i] = 0;
	for (uint32_t j = (i + 1) & w->smask; w->slots[j]; j = (j + 1) & w->smask) {
		uint32_t home = (uint32_t)w->flows[w->slots[j] - 1].hash & w->smask;
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		w->slots[i] = w->slots[j];
		w->slots[j] = 0;
		i = j;
	}
}

static void drop(struct offacct_worker *w, struct oa_flow *f)
{
	unlink_slot(w, f);
	f->state = ST_FREE;
	f->nonce++;
	w->free_list[w->n_free++] = (uint32_t)(f - w->flows);
	w->n--;
	w->used[f->upos] = w->used[w->n];
	w->flows[w->used[f->upos]].upos = f->upos;
	counter_set(&w->cnt.flows, w->n);
}

struct offacct *offacct_create(const struct offacct_options *o)
{
	struct offacct *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->o = *o;
	a->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->wake < 0) {
		free(a);
		return NULL;
	}
	if (!a->o.flows_per_worker)
		a->o.flows_per_worker = DEFAULT_FLOWS;
	if (a->o.flows_per_worker > HANDLE_MASK)
		a->o.flows_per_worker = HANDLE_MASK;
	if (!a->o.interval_ms)
		a->o.interval_ms = DEFAULT_INTERVAL_MS;
	if (!a->o.ring || (a->o.ring & (a->o.ring - 1)) || a->o.ring < 2 * UP_RESERVE)
		a->o.ring = DEFAULT_RING;
	a->w = calloc((size_t)o->n_workers, sizeof(*a->w));
	a->reg_taken = calloc((size_t)o->n_workers + 1, sizeof(*a->reg_taken));
	if (!a->w || !a->reg_taken || !idtab_init(&a->owner, 1024)) {
		offacct_destroy(a);
		return NULL;
	}
	for (int i = 0; i < o->n_workers; i++) {
		struct offacct_worker *w = &a->w[i];
		w->a = a;
		w->index = i;
		w->cap = a->o.flows_per_worker;
		uint32_t ns = 16;
		while (ns < w->cap * 2)
			ns <<= 1;
		w->smask = ns - 1;
		w->flows = calloc(w->cap, sizeof(*w->flows));
		w->free_list = calloc(w->cap, sizeof(*w->free_list));
		w->slots = calloc(ns, sizeof(*w->slots));
		w->used = calloc(w->cap, sizeof(*w->used));
		if (!w->flows || !w->free_list || !w->slots || !w->used || !ring_init(&w->down, a->o.ring) ||
		    !ring_init(&w->up, a->o.ring)) {
			offacct_destroy(a);
			return NULL;
		}
		for (uint32_t k = 0; k < w->cap; k++)
			w->free_list[k] = w->cap - 1 - k;
		w->n_free = w->cap;
	}
	return a;
}

struct offacct_worker *offacct_worker(struct offacct *a, int index)
{
	if (!a || index < 0 || index >= a->o.n_workers)
		return NULL;
	return &a->w[index];
}

void offacct_destroy(struct offacct *a)
{
	if (!a)
		return;
	offacct_stop(a);
	for (int i = 0; a->w && i < a->o.n_workers; i++) {
		free(a->w[i].flows);
		free(a->w[i].free_list);
		free(a->w[i].used);
		free(a->w[i].slots);
		free(a->w[i].down.m);
		free(a->w[i].up.m);
	}
	free(a->w);
	free(a->reg_taken);
	idtab_free(&a->owner);
	close(a->wake);
	free(a);
}

/* Wakes the thread for an urgent request, or when the requests fill a
 * quarter of the ring; otherwise they wait for its next round.  One
 * eventfd write per batch at most (offacct_flush, offacct_serve). */
static void kick(struct offacct_worker *w)
{
	uint32_t used = atomic_load_explicit(&w->up.head, memory_order_relaxed) -
			atomic_load_explicit(&w->up.tail, memory_order_relaxed);
	if (!w->kick && used <= w->up.mask / 4)
		return;
	w->kick = false;
	(void)eventfd_write(w->a->wake, 1);
}

/* Growth of a counter beyond what is accounted, less what the queue counted
 * meanwhile (kept for later when it exceeds the growth). */
static uint64_t take(uint64_t now, uint64_t *acct, uint64_t *q)
{
	if (now <= *acct)
		return 0;
	uint64_t g = now - *acct;
	*acct = now;
	if (g <= *q) {
		*q -= g;
		return 0;
	}
	g -= *q;
	*q = 0;
	return g;
}

static bool is_same(const struct oa_flow *f, const struct packet *p)
{
	bool icmp = p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6;
	return addr_eq(&p->src, &f->src) && (icmp || p->sport == f->sport);
}

static void set_template(struct oa_flow *f, const struct packet *p, const struct verdict *v,
			 const struct offacct_track track[2])
{
	f->src = p->src;
	f->dst = p->dst;
	bool icmp = p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6;
	f->sport = icmp ? p->icmp_id : p->sport;
	f->dport = icmp ? p->icmp_id : p->dport;
	f->icmp_id = p->icmp_id;
	f->icmp_type = p->icmp_type;
	f->family = p->family;
	f->proto = p->proto;
	f->pflags = p->flags & PKT_F_L4;
	f->stage = (uint8_t)v->stage;
	f->reason = (uint8_t)v->reason;
	f->a = v->src_iface;
	f->b = v->dst_iface;
	f->ssub = v->src_subnet;
	f->dsub = v->dst_subnet;
	f->track[0] = track[0];
	f->track[1] = track[1];
}

/* Asks the thread to read the kernel entry of p's tuple (t): f's baseline,
 * or (check) whether a lost flow's entry is still there. */
static void ask(struct offacct_worker *w, const struct oa_flow *f, const struct packet *p,
		const struct ct_tuple *t, bool check)
{
	struct msg m = { .type = M_GET, .check = check, .handle = handle_of(w, f) };
	m.t.src = p->src;
	m.t.dst = p->dst;
	m.t.sport = t->sport;
	m.t.dport = t->dport;
	m.t.family = p->family;
	m.t.proto = p->proto;
	w->kick |= ring_push(&w->up, &m);
}

bool offacct_note(struct offacct_worker *w, const struct packet *p, const struct verdict *v,
		  uint32_t pkt_id, bool offloadable, const struct offacct_track track[2],
		  uint64_t generation, uint64_t now_ns)
{
	if (!w || !p || !v)
		return false;
	struct ct_tuple t;
	tuple_of(p, &t);
	uint64_t h = ct_hash(&t);
	uint32_t slot = find_slot(w, &t, h);
	struct oa_flow *f = w->slots[slot] ? &w->flows[w->slots[slot] - 1] : NULL;

	if (f) {
		bool same = is_same(f, p);
		switch (f->state) {
		case ST_PENDING:
			/* counted in the baseline or not: its answer says.
			 * The last RECENT kept: the reading comes after the
			 * request, so only the latest packets can be after it
			 * (a busy flow overwrites the older ones) */
			f->recent[f->r_next].id = pkt_id;
			f->recent[f->r_next].bytes = p->ip_len;
			f->recent[f->r_next].same = same;
			f->r_next = (uint8_t)((f->r_next + 1) % RECENT);
			if (f->n_recent < 255)
				f->n_recent++;
			break;
		case ST_READY:
			/* queued while the baseline was read: in it or not,
			 * nobody can tell, so it is read again (this packet
			 * may ask at once).  A marked flow never sees one: the
			 * packet that marks it came after every such packet. */
			if ((int32_t)(pkt_id - f->base_lo) > 0 && (int32_t)(pkt_id - f->base_hi) <= 0) {
				counter_inc(&w->cnt.baseline_failures);
				f->state = ST_FAILED;
				f->retry_ns = now_ns;
				break;
			}
			/* fall through */
		case ST_MARKED:
		case ST_UNMARKED:
		case ST_LOST:
			/* after the baseline (ids rise, modulo 2^32): the kernel
			 * counted it and so do the flow logs here */
			if ((int32_t)(pkt_id - f->base_hi) > 0) {
				int d = same ? f->tdir : 1 - f->tdir;
				f->q_pk[d]++;
				f->q_by[d] += p->ip_len;
				counter_inc(&w->cnt.requeued);
			}
			break;
		default:
			break;
		}
	}
	if (!offloadable)
		return false;
	if (f && (f->state == ST_READY || f->state == ST_UNMARKED)) {
		if (w->n_pending >= sizeof(w->pending_reg) / sizeof(w->pending_reg[0]) ||
		    ring_free(&w->up) <= w->n_pending + UP_RESERVE / 2)
			return false;
		w->pending_reg[w->n_pending++] = handle_of(w, f);
		f->reg_seq = w->reg_seq + w->n_pending;
		f->state = ST_MARKED;
		f->sampled_round = 0;
		counter_inc(&w->cnt.registered);
		return true;
	}
	/* Marked, yet here: the accept rule missing (the dumps keep finding
	 * it marked), or its kernel entry replaced by a new connection of the
	 * same tuple, which must not take the mark without a baseline of its
	 * own.  The dumps tell: on the queue meanwhile. */
	if (f && f->state == ST_MARKED)
		return false;
	if (f && f->state == ST_LOST) {
		/* a reading of its tuple says whether its entry is there (the
		 * same id: caught up, and marked again at once if unmarked) or
		 * gone or replaced (let go: a new baseline); once a round */
		if (f->checked_round != w->round + 1 && ring_free(&w->up) > UP_RESERVE) {
			f->checked_round = w->round + 1;
			ask(w, f, p, &t, true);
		}
		return false;
	}
	if (f && f->state == ST_NOENTRY && now_ns < f->retry_ns) {
		/* no kernel entry (the kernel's table full, the flow untracked
		 * there: NOTRACK, or no conntrack rule at all in the namespace):
		 * not marked, the flow stays on the queue.  A mark would be
		 * useless at best; at worst an entry made meanwhile would take
		 * it without a baseline (bypassing the accounting). */
		counter_inc(&w->cnt.noentry);
		return false;
	}
	if (f && !((f->state == ST_FAILED || f->state == ST_NOENTRY) && now_ns >= f->retry_ns) &&
	    f->state != ST_DONE)
		return false;   /* the baseline is on its way */
	/* ask for the baseline: the flow stays on the queue until it is known */
	if (ring_free(&w->up) <= UP_RESERVE || (!f && !w->n_free)) {
		counter_inc(&w->cnt.refused_full);
		return false;
	}
	if (!f) {
		f = &w->flows[w->free_list[--w->n_free]];
		uint16_t nonce = f->nonce;
		memset(f, 0, sizeof(*f));
		f->nonce = nonce;
		f->hash = h;
		set_template(f, p, v, track);
		w->slots[find_slot(w, &t, h)] = (uint32_t)(f - w->flows) + 1;
		f->upos = w->n;
		w->used[w->n] = (uint32_t)(f - w->flows);
		w->n++;
		counter_set(&w->cnt.flows, w->n);
	} else {
		set_template(f, p, v, track);
	}
	f->gen = generation;
	f->state = ST_PENDING;
	f->n_recent = 0;
	f->r_next = 0;
	f->retry_ns = now_ns + 10000000000u;    /* no answer by then: ask again */
	ask(w, f, p, &t, false);
	return false;
}

void offacct_flush(struct offacct_worker *w)
{
	if (!w)
		return;
	for (uint32_t i = 0; i < w->n_pending; i++) {
		struct msg m = { .type = M_REG, .handle = w->pending_reg[i] };
		struct oa_flow *f = by_handle(w, m.handle);
		m.id = f ? f->kid : 0;
		if (ring_push(&w->up, &m))
			w->reg_seq++;
	}
	w->n_pending = 0;
	kick(w);
}

/* ------------------------------------------------------------ applying */

static void make_tuple(const struct oa_flow *f, int kdir, struct ct_tuple *t)
{
	bool same = kdir == f->tdir;
	uint16_t sport = f->sport, dport = f->dport;

	if (f->proto == PROTO_ICMP || f->proto == PROTO_ICMPV6) {
		/* as pipeline.c keys them: a request's identifier as its
		 * source port, a reply's as its destination port */
		bool request = icmp_query_reply_type(f->family, f->icmp_type) >= 0;
		sport = request ? f->icmp_id : 0;
		dport = request ? 0 : f->icmp_id;
	}
	t->proto = f->proto;
	t->src = same ? f->src : f->dst;
	t->dst = same ? f->dst : f->src;
	t->sport = same ? sport : dport;
	t->dport = same ? dport : sport;
}

/* The interfaces the flow's records name, in the policy in force: the
 * offloadable verdict's while that policy is, else found again by address. */
static void place(struct oa_flow *f, const struct offacct_apply *x)
{
	if (f->gen == x->generation)
		return;
	f->gen = x->generation;
	if (!x->pol) {
		f->a = f->b = NULL;
		f->ssub = f->dsub = NULL;
		return;
	}
	f->a = policy_iface_by_addr(x->pol, &f->src);
	f->b = policy_iface_by_addr(x->pol, &f->dst);
	if (f->a && !f->a->subnet)
		f->a = NULL;
	if (f->b && !f->b->subnet)
		f->b = NULL;
	f->ssub = f->a ? f->a->subnet : policy_subnet_by_addr(x->pol, &f->src);
	f->dsub = f->b ? f->b->subnet : policy_subnet_by_addr(x->pol, &f->dst);
}

/* The flow logs take pk packets / by bytes of kernel direction kdir. */
static void account(struct offacct_worker *w, struct oa_flow *f, int kdir, uint64_t pk,
		    uint64_t by, const struct offacct_apply *x)
{
	if (!pk && !by)
		return;
	counter_add(&w->cnt.packets, pk);
	counter_add(&w->cnt.bytes, by);
	if (!x->flw)
		return;
	bool same = kdir == f->tdir;
	struct packet p;
	struct verdict v;
	bool l4 = f->proto == PROTO_TCP || f->proto == PROTO_UDP;

	memset(&p, 0, sizeof(p));
	memset(&v, 0, sizeof(v));
	p.family = f->family;
	p.proto = f->proto;
	p.flags = f->pflags;
	p.src = same ? f->src : f->dst;
	p.dst = same ? f->dst : f->src;
	p.sport = l4 ? (same ? f->sport : f->dport) : 0;
	p.dport = l4 ? (same ? f->dport : f->sport) : 0;
	v.accept = true;
	v.stage = (enum stage)f->stage;
	v.reason = (enum reason)f->reason;
	v.src_iface = same ? f->a : f->b;
	v.dst_iface = same ? f->b : f->a;
	v.src_subnet = same ? f->ssub : f->dsub;
	v.dst_subnet = same ? f->dsub : f->ssub;
	flowlog_observe_n(x->flw, &p, &v, pk, by, x->wall_ns);
}

/* Activity: vpcfwd's entries of the flow live on by their AWS timeouts.
 * False when vpcfwd tracks the flow nowhere any more. */
static bool touch(struct oa_flow *f, const struct offacct_apply *x, const bool grew[2])
{
	bool alive = false;

	if (!x->ct)
		return true;
	for (int i = 0; i < 2; i++) {
		if (!f->track[i].iface)
			continue;
		struct ct_tuple t;
		make_tuple(f, f->tdir, &t);
		struct ct_entry *e = ct_lookup(x->ct, f->track[i].iface, &t, ct_hash(&t), x->now_ns);
		if (!e)
			continue;
		alive = true;
		for (int k = 0; k < 2; k++) {
			if (!grew[k])
				continue;
			struct ct_tuple tk;
			make_tuple(f, k, &tk);
			ct_update(x->ct, e, &tk, TCP_ACK, &f->track[i].to, x->now_ns);
		}
	}
	return alive;
}

static void apply_base(struct offacct_worker *w, const struct msg *m, const struct offacct_apply *x)
{
	struct oa_flow *f = by_handle(w, m->handle);

	if (!f || f->state != ST_PENDING)
		return;
	if (!m->ok) {
		/* no entry (yet): again later */
		counter_inc(&w->cnt.baseline_failures);
		f->state = m->noentry ? ST_NOENTRY : ST_FAILED;
		f->retry_ns = x->now_ns + 1000000000u;
		return;
	}
	int kept = f->n_recent < RECENT ? f->n_recent : RECENT;
	/* more came meanwhile than recent[] keeps: the ones overwritten
	 * were before the oldest kept, and so before the reading if that
	 * one is; otherwise nobody can tell: soon again */
	if (f->n_recent > RECENT && (int32_t)(f->recent[f->r_next].id - m->qlo) > 0) {
		counter_inc(&w->cnt.baseline_failures);
		f->state = ST_FAILED;
		f->retry_ns = x->now_ns + AMBIGUOUS_RETRY_NS;
		return;
	}
	for (int i = 0; i < kept; i++) {
		if ((int32_t)(f->recent[i].id - m->qlo) > 0 && (int32_t)(f->recent[i].id - m->qhi) <= 0) {
			/* queued while the baseline was read: soon again */
			counter_inc(&w->cnt.baseline_failures);
			f->state = ST_FAILED;
			f->retry_ns = x->now_ns + AMBIGUOUS_RETRY_NS;
			return;
		}
	}
	counter_inc(&w->cnt.baselines);
	f->kid = m->id;
	bool icmp = f->proto == PROTO_ICMP || f->proto == PROTO_ICMPV6;
	f->tdir = addr_eq(&m->t.src, &f->src) && (icmp || m->t.sport == f->sport) ? 0 : 1;
	f->base_lo = m->qlo;
	f->base_hi = m->qhi;
	for (int k = 0; k < 2; k++) {
		f->acct_pk[k] = m->packets[k];
		f->acct_by[k] = m->bytes[k];
		f->q_pk[k] = f->q_by[k] = 0;
	}
	/* what came through the queue after the reading, the flow logs have */
	for (int i = 0; i < kept; i++) {
		if ((int32_t)(f->recent[i].id - m->qhi) <= 0)
			continue;
		int d = f->recent[i].same ? f->tdir : 1 - f->tdir;
		f->q_pk[d]++;
		f->q_by[d] += f->recent[i].bytes;
	}
	f->state = ST_READY;
}

static void apply_sample(struct offacct_worker *w, const struct msg *m,
			 const struct offacct_apply *x)
{
	struct oa_flow *f = by_handle(w, m->handle);
	bool grew[2] = { false, false };

	if (!f || f->kid != m->id ||
	    (f->state != ST_MARKED && f->state != ST_UNMARKED && f->state != ST_LOST))
		return;
	counter_inc(&w->cnt.samples);
	f->sampled_round = w->round + 1;
	place(f, x);
	for (int k = 0; k < 2; k++) {
		uint64_t before_pk = f->acct_pk[k];
		uint64_t pk = take(m->packets[k], &f->acct_pk[k], &f->q_pk[k]);
		uint64_t by = take(m->bytes[k], &f->acct_by[k], &f->q_by[k]);
		grew[k] = m->packets[k] > before_pk;
		account(w, f, k, pk, by, x);
	}
	if (grew[0] || grew[1])
		(void)touch(f, x, grew);
	/* a full dump lists unmarked entries too: caught up, and on the queue
	 * until offloaded again (at once: the accounting goes on) */
	f->state = m->marked ? ST_MARKED : ST_UNMARKED;
}

static bool request(struct offacct_worker *w, struct oa_flow *f, bool del);

/* The answer to a lost flow's check: its entry still there (the same id),
 * caught up like a dump's reading and marked again at once if unmarked
 * (a take-back); gone, or replaced by a new connection of the tuple: let
 * go, its accounting ends with the last reading that had it, and its next
 * packet asks for a baseline of the new entry. */
static void apply_check(struct offacct_worker *w, const struct msg *m,
			const struct offacct_apply *x)
{
	struct oa_flow *f = by_handle(w, m->handle);

	if (!f || f->state != ST_LOST)
		return;
	if (m->ok && m->id == f->kid) {
		struct msg s = *m;
		s.type = M_SAMPLE;
		apply_sample(w, &s, x);
		return;
	}
	if (!m->ok && !m->noentry)
		return;         /* not read (no handle, an error): asked again */
	counter_inc(&w->cnt.replaced);
	if (request(w, f, false))
		drop(w, f);
}

static bool request(struct offacct_worker *w, struct oa_flow *f, bool del)
{
	struct msg m = { .type = del ? M_DELETE : M_FORGET, .id = f->kid, .handle = handle_of(w, f) };

	if (del) {
		struct ct_tuple t;
		make_tuple(f, 0, &t);
		m.t.src = t.src;
		m.t.dst = t.dst;
		m.t.family = f->family;
		m.t.proto = f->proto;
		m.t.sport = t.sport;
		m.t.dport = t.dport;
		if (f->proto == PROTO_ICMP || f->proto == PROTO_ICMPV6)
			m.t.sport = m.t.dport = f->icmp_id;
	}
	bool ok = ring_push(&w->up, &m);
	/* an idled-out flow's kernel entry goes at once: its next packet
	 * must meet the queue, not the accept rule */
	w->kick |= ok && del;
	return ok;
}

/* The end of a dump: flows it did not find lost their mark; flows back on
 * the queue are let go; flows vpcfwd no longer tracks (idled out at their
 * AWS timeout) are let go and their kernel entries deleted, so that the
 * next packet is decided again as a new flow. */
static void end_round(struct offacct_worker *w, const struct msg *m, const struct offacct_apply *x)
{
	w->round++;
	/* backwards: drop() moves the last one into the place it frees */
	for (uint32_t i = w->n; i-- > 0;) {
		struct oa_flow *f = &w->flows[w->used[i]];
		if (f->state == ST_DONE) {
			if (request(w, f, false))
				drop(w, f);
			continue;
		}
		if (f->state == ST_MARKED && f->reg_seq <= m->seq && f->sampled_round != w->round) {
			f->state = ST_LOST;
			counter_inc(&w->cnt.unmarked);
		}
		/* what a full dump found unmarked holds for that round only:
		 * the entry could be replaced since */
		if (f->state == ST_UNMARKED && f->sampled_round != w->round)
			f->state = ST_LOST;
		if (f->state == ST_LOST && m->full && f->sampled_round != w->round) {
			/* not even in a whole dump: its kernel entry is gone
			 * (accounted up to the last dump that had it); let go,
			 * its next packet asks for a new baseline */
			counter_inc(&w->cnt.replaced);
			if (request(w, f, false))
				drop(w, f);
			continue;
		}
		if (f->state == ST_PENDING && x->now_ns >= f->retry_ns) {
			f->state = ST_FAILED;   /* the answer was lost: ask again */
			f->retry_ns = x->now_ns;
		}
		bool none[2] = { false, false };
		if (f->state == ST_PENDING || touch(f, x, none))
			continue;
		/* vpcfwd let the flow go: so does the kernel (a flow never
		 * marked has nothing to delete) */
		bool del = f->state == ST_MARKED || f->state == ST_UNMARKED || f->state == ST_LOST;
		if (request(w, f, del)) {
			if (del)
				counter_inc(&w->cnt.kernel_deleted);
			drop(w, f);
		}
	}
}

void offacct_serve(struct offacct_worker *w, const struct offacct_apply *x)
{
	struct msg m;

	if (!w)
		return;
	/* a bounded turn: the packets wait meanwhile */
	for (int i = 0; i < 4096 && ring_pop(&w->down, &m); i++) {
		if (m.type == M_SAMPLE)
			apply_sample(w, &m, x);
		else if (m.type == M_BASE && m.check)
			apply_check(w, &m, x);
		else if (m.type == M_BASE)
			apply_base(w, &m, x);
		else if (m.type == M_ROUND)
			end_round(w, &m, x);
	}
	kick(w);
}

/* ------------------------------------------------------------ the thread */

static void owner_put(struct offacct *a, uint32_t id, int worker, uint32_t handle)
{
	if (a->owner.n * 2 + 2 > a->owner.mask) {
		/* grow: off the packet path */
		struct idtab bigger;
		if (!idtab_init(&bigger, (a->owner.mask + 1) * 2)) {
			idtab_free(&bigger);
			return;
		}
		for (uint32_t s = 0; s <= a->owner.mask; s++)
			if (a->owner.val[s])
				idtab_put(&bigger, a->owner.key[s], a->owner.val[s] - 1);
		idtab_free(&a->owner);
		a->owner = bigger;
	}
	idtab_put(&a->owner, id, (uint64_t)worker << 32 | handle);
}

static int on_get(enum nf_conntrack_msg_type type, struct nf_conntrack *ct, void *arg)
{
	struct offacct *a = arg;
	struct msg *m = &a->got;
	(void)type;

	m->id = nfct_get_attr_u32(ct, ATTR_ID);
	m->marked = (nfct_get_attr_u32(ct, ATTR_MARK) & a->o.mark) == a->o.mark;
	m->packets[0] = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS);
	m->packets[1] = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS);
	m->bytes[0] = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES);
	m->bytes[1] = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES);
	bool v4 = nfct_get_attr_u8(ct, ATTR_L3PROTO) == AF_INET;
	memset(&m->t, 0, sizeof(m->t));
	if (v4) {
		m->t.src = addr_from_v4(ntohl(nfct_get_attr_u32(ct, ATTR_IPV4_SRC)));
		m->t.dst = addr_from_v4(ntohl(nfct_get_attr_u32(ct, ATTR_IPV4_DST)));
	} else {
		m->t.src = addr_from_v6(nfct_get_attr(ct, ATTR_IPV6_SRC));
		m->t.dst = addr_from_v6(nfct_get_attr(ct, ATTR_IPV6_DST));
	}
	m->t.proto = nfct_get_attr_u8(ct, ATTR_L4PROTO);
	m->t.sport = ntohs(nfct_get_attr_u16(ct, ATTR_PORT_SRC));
	m->t.dport = ntohs(nfct_get_attr_u16(ct, ATTR_PORT_DST));
	/* without accounting (the entry was made before it was on) there is
	 * no baseline to take */
	a->got_one = nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS) > 0;
	/* not NFCT_CB_STOP: that leaves the kernel's acknowledgement in the
	 * socket, and the next get reads this answer again */
	return NFCT_CB_CONTINUE;
}

/* A tuple into ct as its original direction (swap: the other way round). */
static void set_tuple(struct nf_conntrack *ct, const struct offacct_tuple *t, bool swap,
		      bool orig_icmp_request)
{
	const struct ip_addr *s = swap ? &t->dst : &t->src, *d = swap ? &t->src : &t->dst;
	bool v4 = t->family == FAMILY_V4;

	nfct_set_attr_u8(ct, ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
	if (v4) {
		nfct_set_attr_u32(ct, ATTR_IPV4_SRC, htonl(addr_to_v4(s)));
		nfct_set_attr_u32(ct, ATTR_IPV4_DST, htonl(addr_to_v4(d)));
	} else {
		uint8_t b[16], c[16];
		addr_to_v6(s, b);
		addr_to_v6(d, c);
		nfct_set_attr(ct, ATTR_IPV6_SRC, b);
		nfct_set_attr(ct, ATTR_IPV6_DST, c);
	}
	nfct_set_attr_u8(ct, ATTR_L4PROTO, t->proto);
	if (t->proto == PROTO_ICMP || t->proto == PROTO_ICMPV6) {
		(void)orig_icmp_request;
		nfct_set_attr_u8(ct, ATTR_ICMP_TYPE, t->proto == PROTO_ICMP ? 8 : 128);
		nfct_set_attr_u8(ct, ATTR_ICMP_CODE, 0);
		nfct_set_attr_u16(ct, ATTR_ICMP_ID, htons(t->sport));
	} else if (t->proto == PROTO_TCP || t->proto == PROTO_UDP) {
		nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(swap ? t->dport : t->sport));
		nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(swap ? t->sport : t->dport));
	}
}

/* The kernel entry of tuple t (as its packets have it: either direction of
 * the entry) into a->got.  False if none. */
static bool get_entry(struct offacct *a, const struct offacct_tuple *t, bool *noentry)
{
	*noentry = true;
	for (int swap = 0; swap < 2; swap++) {
		struct nf_conntrack *ct = nfct_new();
		if (!ct)
			return false;
		set_tuple(ct, t, swap, true);
		a->got_one = false;
		int r = nfct_query(a->hq, NFCT_Q_GET, ct);
		nfct_destroy(ct);
		if (r == 0 && a->got_one)
			return true;
		if (r == 0)
			*noentry = false;       /* there, without counters */
	}
	return false;
}

static bool give(struct offacct *a, struct offacct_worker *w, const struct msg *m, bool wait);

static void take_requests(struct offacct *a)
{
	for (int i = 0; i < a->o.n_workers; i++) {
		struct offacct_worker *w = &a->w[i];
		struct msg m;
		while (ring_pop(&w->up, &m)) {
			uint64_t owner;
			switch (m.type) {
			case M_GET: {
				struct msg b = { .type = M_BASE, .handle = m.handle, .check = m.check };
				bool noentry = false;
				/* The queue's position just before and just after the
				 * reading.  The kernel counts a packet (conntrack, at
				 * PREROUTING) before it queues it (FORWARD), in one
				 * softirq: a packet queued by the first position was
				 * counted in the baseline; one queued after the second
				 * was not; one queued in between may be either (the
				 * thread may even have been preempted in between): the
				 * worker asks again if the flow has one. */
				uint32_t qlo = 0;
				bool seq_known = a->o.queue_seq &&
						 a->o.queue_seq(a->o.queue_seq_arg, i, &qlo);
				if (a->hq && get_entry(a, &m.t, &noentry)) {
					b = a->got;
					b.type = M_BASE;
					b.handle = m.handle;
					b.check = m.check;
					b.ok = true;
					b.qlo = qlo;
					if (!seq_known || !a->o.queue_seq(a->o.queue_seq_arg, i, &b.qhi))
						b.qlo = b.qhi = 0;
				} else {
					b.noentry = noentry;
				}
				(void)give(a, w, &b, a->wait);
				break;
			}
			case M_REG:
				a->reg_taken[i]++;
				if (m.id)
					owner_put(a, m.id, i, m.handle);
				break;
			case M_DELETE:
				if (a->hq) {
					struct nf_conntrack *ct = nfct_new();
					if (ct) {
						set_tuple(ct, &m.t, false, true);
						nfct_set_attr_u32(ct, ATTR_ID, m.id);
						if (nfct_query(a->hq, NFCT_Q_DESTROY, ct) < 0 &&
						    errno != ENOENT)
							counter_inc(&w->cnt.delete_errors);
						nfct_destroy(ct);
					}
				}
				/* fall through */
			case M_FORGET:
				if (m.id && idtab_get(&a->owner, m.id, &owner) &&
				    owner == ((uint64_t)i << 32 | m.handle))
					idtab_del(&a->owner, m.id);
				break;
			default:
				break;
			}
		}
	}
}

/* Hands a message to a worker, waiting while its ring is full (the worker
 * drains it between batches); false when stopping or still full after a
 * second. */
static bool give(struct offacct *a, struct offacct_worker *w, const struct msg *m, bool wait)
{
	for (int i = 0; i < 1000; i++) {
		if (ring_push(&w->down, m))
			return true;
		if (a->finish) {
			offacct_serve(w, &a->finish[w->index]);
			continue;
		}
		if (!wait || atomic_load(&a->stop))
			return false;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return false;
}

static int on_entry(enum nf_conntrack_msg_type type, struct nf_conntrack *ct, void *arg)
{
	struct offacct *a = arg;
	uint64_t owner;
	(void)type;

	uint32_t id = nfct_get_attr_u32(ct, ATTR_ID);
	if (!idtab_get(&a->owner, id, &owner) || (owner >> 32) >= (uint64_t)a->o.n_workers)
		return NFCT_CB_CONTINUE;
	if (!nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS))
		return NFCT_CB_CONTINUE;        /* accounting off: nothing to say */
	struct msg m = {
		.type = M_SAMPLE, .id = id, .handle = (uint32_t)owner,
		.marked = (nfct_get_attr_u32(ct, ATTR_MARK) & a->o.mark) == a->o.mark,
		.packets = { nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS),
			     nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS) },
		.bytes = { nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES),
			   nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES) },
	};
	if (!give(a, &a->w[owner >> 32], &m, a->wait))
		a->sample_blocked = true;
	return NFCT_CB_CONTINUE;
}

/* One round: requests, a dump, the end of the round to every worker. */
static void round_once(struct offacct *a, bool full, bool wait)
{
	a->wait = wait;
	take_requests(a);
	uint64_t seq[256];
	int nw = a->o.n_workers < 256 ? a->o.n_workers : 256;
	for (int i = 0; i < nw; i++)
		seq[i] = a->reg_taken[i];
	a->sample_blocked = false;
	bool ok = false;
	if (a->h && a->owner.n) {
		struct nfct_filter_dump *fd = nfct_filter_dump_create();
		if (fd) {
			struct nfct_filter_dump_mark mk = { .val = a->o.mark, .mask = a->o.mark };
			if (!full)
				nfct_filter_dump_set_attr(fd, NFCT_FILTER_DUMP_MARK, &mk);
			ok = nfct_query(a->h, NFCT_Q_DUMP_FILTER, fd) == 0;
			nfct_filter_dump_destroy(fd);
		}
		counter_inc(&a->dumps);
		if (!ok)
			counter_inc(&a->dump_errors);
	} else {
		ok = a->h != NULL;
	}
	/* a failed or cut dump says nothing of what it did not list */
	for (int i = 0; i < nw; i++) {
		struct msg m = { .type = M_ROUND, .seq = ok && !a->sample_blocked ? seq[i] : 0,
				 .full = full && ok && !a->sample_blocked };
		(void)give(a, &a->w[i], &m, wait);
	}
}

static void *thread_main(void *arg)
{
	struct offacct *a = arg;
	uint64_t period = (uint64_t)a->o.interval_ms * 1000000u, next = 0;

	while (!atomic_load(&a->stop)) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		uint64_t t = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
		bool full = atomic_exchange(&a->full_next, false);
		if (full || t >= next) {
			round_once(a, full, true);
			next = t + period;
		} else {
			/* asleep until the next round or a worker's urgent
			 * request (a baseline, a deletion: kick) */
			uint64_t ms = (next - t + 999999u) / 1000000u;
			struct pollfd pfd = { .fd = a->wake, .events = POLLIN };
			if (poll(&pfd, 1, ms > 60000 ? 60000 : (int)ms) > 0) {
				eventfd_t v;
				(void)eventfd_read(a->wake, &v);
			}
			a->wait = true;
			take_requests(a);
		}
	}
	return NULL;
}

static bool open_handles(struct offacct *a)
{
	if (!a->h) {
		a->h = nfct_open(CONNTRACK, 0);
		if (a->h) {
			nfct_callback_register(a->h, NFCT_T_ALL, on_entry, a);
			nfnl_rcvbufsiz(nfct_nfnlh(a->h), 8u << 20);
		}
	}
	if (!a->hq) {
		a->hq = nfct_open(CONNTRACK, 0);
		if (a->hq)
			nfct_callback_register(a->hq, NFCT_T_ALL, on_get, a);
	}
	return a->h && a->hq;
}

static void close_handles(struct offacct *a)
{
	if (a->h)
		nfct_close(a->h);
	if (a->hq)
		nfct_close(a->hq);
	a->h = a->hq = NULL;
}

int offacct_start(struct offacct *a)
{
	if (!a || a->started)
		return 0;
	if (!open_handles(a)) {
		int e = errno ? errno : EIO;
		close_handles(a);
		return e;
	}
	atomic_store(&a->stop, false);
	int e = pthread_create(&a->thread, NULL, thread_main, a);
	if (e)
		return e;
	a->started = true;
	return 0;
}

void offacct_full_round(struct offacct *a)
{
	if (a) {
		atomic_store(&a->full_next, true);
		(void)eventfd_write(a->wake, 1);
	}
}

void offacct_stop(struct offacct *a)
{
	if (!a || !a->started)
		return;
	atomic_store(&a->stop, true);
	(void)eventfd_write(a->wake, 1);
	pthread_join(a->thread, NULL);
	a->started = false;
}

void offacct_finish(struct offacct *a, const struct offacct_apply *x)
{
	if (!a)
		return;
	offacct_stop(a);
	if (open_handles(a)) {
		/* the workers are gone: this thread applies, draining a full
		 * ring as the dump goes */
		a->finish = x;
		for (int i = 0; i < a->o.n_workers; i++)
			offacct_serve(&a->w[i], &x[i]);
		round_once(a, true, false);
		for (int i = 0; i < a->o.n_workers; i++)
			offacct_serve(&a->w[i], &x[i]);
		a->finish = NULL;
	}
	close_handles(a);
}

void offacct_get_stats(const struct offacct *a, int worker, struct offacct_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!a || worker < 0 || worker >= a->o.n_workers)
		return;
	const struct offacct_worker *w = &a->w[worker];
	out->flows = counter_get(&w->cnt.flows);
	out->registered = counter_get(&w->cnt.registered);
	out->refused_full = counter_get(&w->cnt.refused_full);
	out->baselines = counter_get(&w->cnt.baselines);
	out->baseline_failures = counter_get(&w->cnt.baseline_failures);
	out->samples = counter_get(&w->cnt.samples);
	out->packets = counter_get(&w->cnt.packets);
	out->bytes = counter_get(&w->cnt.bytes);
	out->requeued = counter_get(&w->cnt.requeued);
	out->kernel_deleted = counter_get(&w->cnt.kernel_deleted);
	out->unmarked = counter_get(&w->cnt.unmarked);
	out->delete_errors = counter_get(&w->cnt.delete_errors);
	out->noentry = counter_get(&w->cnt.noentry);
	out->replaced = counter_get(&w->cnt.replaced);
	if (worker == 0) {
		out->dumps = counter_get(&a->dumps);
		out->dump_errors = counter_get(&a->dump_errors);
	}
}

/* ------------------------------------------------------------ tests */

int offacct_test_request(struct offacct *a, int worker, uint32_t *handle, uint32_t *id,
			 struct offacct_tuple *t)
{
	struct msg m;
	if (!ring_pop(&a->w[worker].up, &m))
		return 0;
	*handle = m.handle;
	*id = m.id;
	*t = m.t;
	switch (m.type) {
	case M_GET:
		return m.check ? 'C' : 'G';
	case M_REG:
		a->reg_taken[worker]++;
		if (m.id)
			owner_put(a, m.id, worker, m.handle);
		return 'R';
	case M_FORGET:
		return 'F';
	case M_DELETE:
		return 'D';
	default:
		return '?';
	}
}

bool offacct_test_baseline(struct offacct *a, int worker, uint32_t handle,
			   const struct offacct_counters *c, const struct offacct_tuple *orig,
			   uint32_t lo, uint32_t hi)
{
	struct msg m = { .type = M_BASE, .handle = handle, .ok = c != NULL, .noentry = c == NULL,
			 .qlo = lo, .qhi = hi };
	if (c) {
		m.id = c->id;
		for (int k = 0; k < 2; k++) {
			m.packets[k] = c->packets[k];
			m.bytes[k] = c->bytes[k];
		}
		m.t = *orig;
	}
	return ring_push(&a->w[worker].down, &m);
}

bool offacct_test_sample(struct offacct *a, int worker, const struct offacct_counters *c,
			 bool marked)
{
	uint64_t owner;
	struct msg m = { .type = M_SAMPLE, .id = c->id, .marked = marked };
	if (idtab_get(&a->owner, c->id, &owner))
		m.handle = (uint32_t)owner;
	for (int k = 0; k < 2; k++) {
		m.packets[k] = c->packets[k];
		m.bytes[k] = c->bytes[k];
	}
	return ring_push(&a->w[worker].down, &m);
}

bool offacct_test_check(struct offacct *a, int worker, uint32_t handle,
			const struct offacct_counters *c, bool marked)
{
	struct msg m = { .type = M_BASE, .check = true, .handle = handle, .ok = c != NULL,
			 .noentry = c == NULL, .marked = marked };
	if (c) {
		m.id = c->id;
		for (int k = 0; k < 2; k++) {
			m.packets[k] = c->packets[k];
			m.bytes[k] = c->bytes[k];
		}
	}
	return ring_push(&a->w[worker].down, &m);
}

void offacct_test_round(struct offacct *a, bool full)
{
	for (int i = 0; i < a->o.n_workers; i++) {
		struct msg m = { .type = M_ROUND, .seq = a->reg_taken[i], .full = full };
		(void)ring_push(&a->w[i].down, &m);
	}
}
