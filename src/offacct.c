/* Offloaded flows' accounting and idle timeouts (offacct.h, issue #16). */
#include "vpcfw/offacct.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
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
	M_REG,          /* up: a flow registered (accounting starts) */
	M_FORGET,       /* up: a flow no longer accounted */
	M_DELETE,       /* up: delete the kernel entry, then forget */
};

struct msg {
	uint8_t type;
	uint32_t id;
	uint64_t seq;                   /* M_ROUND: registrations taken before the dump */
	bool marked;                    /* M_SAMPLE: the entry has the offload mark */
	uint64_t packets[2], bytes[2];
	struct offacct_tuple t;         /* M_DELETE */
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
	uint32_t *key, *val;
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

static bool idtab_get(const struct idtab *t, uint32_t id, uint32_t *v)
{
	uint32_t i = idtab_slot(t, id);
	if (!t->val[i])
		return false;
	*v = t->val[i] - 1;
	return true;
}

/* The caller keeps n below half the slots. */
static void idtab_put(struct idtab *t, uint32_t id, uint32_t v)
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
	ST_MARKED = 0,          /* the kernel bypasses it: dumps account for it */
	ST_UNMARKED,            /* the last dump did not find it marked */
	ST_DONE,                /* back on the queue for good: due_* to apply, then forget */
};

struct oa_flow {
	uint32_t id;
	uint8_t state;
	uint8_t tdir;                   /* the template's kernel direction: 0 original */
	uint8_t stage, reason;          /* of the marking verdict */
	/* the template: the marking packet */
	struct ip_addr src, dst;
	uint16_t sport, dport;          /* the packet's (flow logs: TCP/UDP only) */
	uint16_t icmp_id;
	uint8_t family, proto, icmp_type, pflags;
	/* where vpcfwd tracks it */
	struct offacct_track track[2];
	/* the records' interfaces, of generation gen */
	const struct iface *a, *b;
	const struct subnet *ssub, *dsub;
	uint64_t gen;
	/* by kernel direction: what the flow logs have of the kernel's count,
	 * and what they counted from the queue since (to be subtracted) */
	uint64_t base_sum;              /* packets, both directions, at the mark */
	uint64_t acct_pk[2], acct_by[2];
	uint64_t q_pk[2], q_by[2];
	uint64_t due_pk[2], due_by[2];  /* caught up, not yet in the flow logs */
	uint64_t reg_seq;               /* its registration's number */
	uint64_t sampled_round;
};

struct offacct_worker {
	struct offacct *a;
	int index;
	struct oa_flow *flows;          /* dense: [0, n) */
	uint32_t n, cap;
	struct idtab by_id;             /* id -> index in flows */
	struct ring down, up;
	uint32_t pending_reg[64];       /* this batch's registrations (ids) */
	uint32_t n_pending;
	uint64_t reg_seq;               /* registrations pushed */
	uint64_t round;
	struct {
		counter_t flows, registered, refused_full, samples, packets, bytes, requeued,
			kernel_deleted, unmarked, delete_errors;
	} cnt;
};

struct offacct {
	struct offacct_options o;
	struct offacct_worker *w;
	/* the thread's */
	struct idtab owner;             /* id -> worker */
	uint64_t *reg_taken;            /* per worker: registrations taken */
	pthread_t thread;
	bool started;
	atomic_bool stop;
	atomic_bool full_next;
	struct nfct_handle *h;          /* dumps */
	struct nfct_handle *hdel;       /* deletes */
	bool sample_blocked;            /* a ring stayed full: the round is cut short */
	bool wait;                      /* wait on full rings (not in offacct_finish) */
	const struct offacct_apply *finish; /* offacct_finish: serve full rings here */
	counter_t dumps, dump_errors;
};

struct offacct *offacct_create(const struct offacct_options *o)
{
	struct offacct *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->o = *o;
	if (!a->o.flows_per_worker)
		a->o.flows_per_worker = DEFAULT_FLOWS;
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
		w->flows = calloc(w->cap, sizeof(*w->flows));
		if (!w->flows || !idtab_init(&w->by_id, w->cap) || !ring_init(&w->down, a->o.ring) ||
		    !ring_init(&w->up, a->o.ring)) {
			offacct_destroy(a);
			return NULL;
		}
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
		idtab_free(&a->w[i].by_id);
		free(a->w[i].down.m);
		free(a->w[i].up.m);
	}
	free(a->w);
	free(a->reg_taken);
	idtab_free(&a->owner);
	free(a);
}

bool offacct_room(const struct offacct_worker *w)
{
	return w && w->n + w->n_pending < w->cap &&
	       w->n_pending < sizeof(w->pending_reg) / sizeof(w->pending_reg[0]) &&
	       ring_free(&w->up) > w->n_pending + UP_RESERVE;
}

static struct oa_flow *find(struct offacct_worker *w, uint32_t id)
{
	uint32_t i;
	return idtab_get(&w->by_id, id, &i) ? &w->flows[i] : NULL;
}

static void drop(struct offacct_worker *w, struct oa_flow *f)
{
	uint32_t i = (uint32_t)(f - w->flows);
	idtab_del(&w->by_id, f->id);
	if (i != w->n - 1) {
		w->flows[i] = w->flows[w->n - 1];
		idtab_put(&w->by_id, w->flows[i].id, i);
	}
	w->n--;
	counter_set(&w->cnt.flows, w->n);
}

static void set_template(struct oa_flow *f, const struct packet *p, const struct verdict *v)
{
	f->src = p->src;
	f->dst = p->dst;
	f->sport = p->sport;
	f->dport = p->dport;
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
}

static int pkt_dir(const struct offacct_counters *c)
{
	return c->reply ? 1 : 0;
}

/* Growth g of a counter beyond what is accounted, less what the queue
 * counted meanwhile (kept for later when it exceeds the growth). */
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

/* What the kernel counted of direction k before packet c (of direction d,
 * ip_len bytes), if k == d; else all of it. */
static void before(const struct offacct_counters *c, int k, int d, uint32_t ip_len, uint64_t *pk,
		   uint64_t *by)
{
	*pk = c->packets[k];
	*by = c->bytes[k];
	if (k == d) {
		*pk -= *pk ? 1 : 0;
		*by -= *by >= ip_len ? ip_len : *by;
	}
}

void offacct_note(struct offacct_worker *w, const struct offacct_counters *c,
		  const struct packet *p, const struct verdict *v, bool marked,
		  const struct offacct_track track[2])
{
	if (!w || !c || !p || !v)
		return;
	struct oa_flow *f = find(w, c->id);
	uint64_t sum = c->packets[0] + c->packets[1];
	int d = pkt_dir(c);

	if (f && f->state != ST_DONE && sum > f->base_sum) {
		/* counted by the kernel after the mark, and by the flow logs
		 * here */
		counter_inc(&w->cnt.requeued);
		if (f->state == ST_UNMARKED) {
			/* the mark is gone (a reload cleared it): what the kernel
			 * counted before this packet went round us; from now on
			 * the queue sees every packet */
			for (int k = 0; k < 2; k++) {
				uint64_t pk, by;
				before(c, k, d, p->ip_len, &pk, &by);
				f->due_pk[k] += take(pk, &f->acct_pk[k], &f->q_pk[k]);
				f->due_by[k] += take(by, &f->acct_by[k], &f->q_by[k]);
			}
			f->state = ST_DONE;
		} else {
			/* the kernel's next growth has it: subtracted there */
			f->q_pk[d]++;
			f->q_by[d] += p->ip_len;
		}
	}
	if (!marked || (f && f->state == ST_MARKED))
		return; /* a registered flow marked again: nothing new */
	if (w->n_pending >= sizeof(w->pending_reg) / sizeof(w->pending_reg[0]) ||
	    (!f && w->n >= w->cap)) {
		counter_inc(&w->cnt.refused_full);
		return;
	}
	if (!f) {
		f = &w->flows[w->n];
		memset(f, 0, sizeof(*f));
		f->id = c->id;
		idtab_put(&w->by_id, c->id, w->n);
		w->n++;
		counter_set(&w->cnt.flows, w->n);
		counter_inc(&w->cnt.registered);
	}
	/* the baseline: every packet the kernel counted up to this one came
	 * through the queue (or is caught up in due_*) */
	w->pending_reg[w->n_pending++] = c->id;
	f->reg_seq = w->reg_seq + w->n_pending;
	f->state = ST_MARKED;
	for (int k = 0; k < 2; k++) {
		f->acct_pk[k] = c->packets[k];
		f->acct_by[k] = c->bytes[k];
		f->q_pk[k] = f->q_by[k] = 0;
	}
	f->base_sum = sum;
	f->tdir = (uint8_t)d;
	f->sampled_round = 0;
	set_template(f, p, v);
	f->gen = 0;
	f->track[0] = track[0];
	f->track[1] = track[1];
}

void offacct_flush(struct offacct_worker *w)
{
	if (!w)
		return;
	for (uint32_t i = 0; i < w->n_pending; i++) {
		struct msg m = { .type = M_REG, .id = w->pending_reg[i] };
		/* offacct_room kept the room */
		if (ring_push(&w->up, &m))
			w->reg_seq++;
	}
	w->n_pending = 0;
}

/* ------------------------------------------------------------ applying */

static void make_tuple(const struct oa_flow *f, int kdir, struct ct_tuple *t)
{
	bool same = kdir == f->tdir;
	uint16_t sport = f->sport, dport = f->dport;

	if (f->proto == PROTO_ICMP || f->proto == PROTO_ICMPV6) {
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
 * marking verdict's while that policy is, else found again by address. */
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

	memset(&p, 0, sizeof(p));
	memset(&v, 0, sizeof(v));
	p.family = f->family;
	p.proto = f->proto;
	p.flags = f->pflags;
	p.src = same ? f->src : f->dst;
	p.dst = same ? f->dst : f->src;
	p.sport = same ? f->sport : f->dport;
	p.dport = same ? f->dport : f->sport;
	v.accept = true;
	v.stage = (enum stage)f->stage;
	v.reason = (enum reason)f->reason;
	v.src_iface = same ? f->a : f->b;
	v.dst_iface = same ? f->b : f->a;
	v.src_subnet = same ? f->ssub : f->dsub;
	v.dst_subnet = same ? f->dsub : f->ssub;
	flowlog_observe_n(x->flw, &p, &v, pk, by, x->wall_ns);
}

/* Activity: vpcfwd's entries of the flow live on by their AWS timeouts. */
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
		uint64_t h = ct_hash(&t);
		struct ct_entry *e = ct_lookup(x->ct, f->track[i].iface, &t, h, x->now_ns);
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

static void apply_sample(struct offacct_worker *w, const struct msg *m,
			 const struct offacct_apply *x)
{
	struct oa_flow *f = find(w, m->id);
	bool grew[2] = { false, false };

	if (!f || f->state == ST_DONE)
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
	/* a full dump lists unmarked entries too: caught up, and from now on
	 * on the queue */
	f->state = m->marked ? ST_MARKED : ST_DONE;
}

static bool request(struct offacct_worker *w, struct oa_flow *f, bool del)
{
	struct msg m = { .type = del ? M_DELETE : M_FORGET, .id = f->id };

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
	return ring_push(&w->up, &m);
}

/* The end of a dump: flows it did not find lost their mark; flows back on
 * the queue are let go; flows vpcfwd no longer tracks (idled out at their
 * AWS timeout) are let go and their kernel entries deleted, so that the
 * next packet is decided again as a new flow. */
static void end_round(struct offacct_worker *w, const struct msg *m, const struct offacct_apply *x)
{
	w->round++;
	for (uint32_t i = 0; i < w->n;) {
		struct oa_flow *f = &w->flows[i];
		if (f->state == ST_DONE) {
			place(f, x);
			for (int k = 0; k < 2; k++) {
				account(w, f, k, f->due_pk[k], f->due_by[k], x);
				f->due_pk[k] = f->due_by[k] = 0;
			}
			if (request(w, f, false)) {
				drop(w, f);
				continue;
			}
			i++;
			continue;
		}
		if (f->state == ST_MARKED && f->reg_seq <= m->seq && f->sampled_round != w->round) {
			f->state = ST_UNMARKED;
			counter_inc(&w->cnt.unmarked);
		}
		bool none[2] = { false, false };
		if (!touch(f, x, none) && request(w, f, true)) {
			counter_inc(&w->cnt.kernel_deleted);
			drop(w, f);
			continue;
		}
		i++;
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
		else if (m.type == M_ROUND)
			end_round(w, &m, x);
	}
}

/* ------------------------------------------------------------ the thread */

static void take_requests(struct offacct *a)
{
	for (int i = 0; i < a->o.n_workers; i++) {
		struct offacct_worker *w = &a->w[i];
		struct msg m;
		while (ring_pop(&w->up, &m)) {
			uint32_t owner;
			switch (m.type) {
			case M_REG:
				a->reg_taken[i]++;
				if (a->owner.n * 2 + 2 > a->owner.mask) {
					/* grow: off the packet path */
					struct idtab bigger;
					if (!idtab_init(&bigger, (a->owner.mask + 1) * 2))
						break;
					for (uint32_t s = 0; s <= a->owner.mask; s++)
						if (a->owner.val[s])
							idtab_put(&bigger, a->owner.key[s],
								  a->owner.val[s] - 1);
					idtab_free(&a->owner);
					a->owner = bigger;
				}
				idtab_put(&a->owner, m.id, (uint32_t)i);
				break;
			case M_DELETE:
				if (a->hdel) {
					struct nf_conntrack *ct = nfct_new();
					if (ct) {
						const struct offacct_tuple *t = &m.t;
						bool v4 = t->family == FAMILY_V4;
						nfct_set_attr_u8(ct, ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
						if (v4) {
							uint32_t s = htonl(addr_to_v4(&t->src)),
								 d = htonl(addr_to_v4(&t->dst));
							nfct_set_attr_u32(ct, ATTR_IPV4_SRC, s);
							nfct_set_attr_u32(ct, ATTR_IPV4_DST, d);
						} else {
							uint8_t s[16], d[16];
							addr_to_v6(&t->src, s);
							addr_to_v6(&t->dst, d);
							nfct_set_attr(ct, ATTR_IPV6_SRC, s);
							nfct_set_attr(ct, ATTR_IPV6_DST, d);
						}
						nfct_set_attr_u8(ct, ATTR_L4PROTO, t->proto);
						if (t->proto == PROTO_ICMP || t->proto == PROTO_ICMPV6) {
							nfct_set_attr_u8(ct, ATTR_ICMP_TYPE,
									 t->proto == PROTO_ICMP ? 8 : 128);
							nfct_set_attr_u8(ct, ATTR_ICMP_CODE, 0);
							nfct_set_attr_u16(ct, ATTR_ICMP_ID, htons(t->sport));
						} else if (t->proto == PROTO_TCP || t->proto == PROTO_UDP) {
							nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(t->sport));
							nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(t->dport));
						}
						nfct_set_attr_u32(ct, ATTR_ID, m.id);
						if (nfct_query(a->hdel, NFCT_Q_DESTROY, ct) < 0 &&
						    errno != ENOENT)
							counter_inc(&w->cnt.delete_errors);
						nfct_destroy(ct);
					}
				}
				/* fall through */
			case M_FORGET:
				if (idtab_get(&a->owner, m.id, &owner) && owner == (uint32_t)i)
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
	uint32_t owner;
	(void)type;

	uint32_t id = nfct_get_attr_u32(ct, ATTR_ID);
	if (!idtab_get(&a->owner, id, &owner) || owner >= (uint32_t)a->o.n_workers)
		return NFCT_CB_CONTINUE;
	struct msg m = {
		.type = M_SAMPLE, .id = id,
		.marked = (nfct_get_attr_u32(ct, ATTR_MARK) & a->o.mark) == a->o.mark,
		.packets = { nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS),
			     nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS) },
		.bytes = { nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES),
			   nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES) },
	};
	if (!nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS))
		return NFCT_CB_CONTINUE;        /* accounting off: nothing to say */
	if (!give(a, &a->w[owner], &m, a->wait))
		a->sample_blocked = true;
	return NFCT_CB_CONTINUE;
}

/* One round: requests, a dump, the end of the round to every worker. */
static void round_once(struct offacct *a, bool full, bool wait)
{
	take_requests(a);
	uint64_t seq[256];
	int nw = a->o.n_workers < 256 ? a->o.n_workers : 256;
	for (int i = 0; i < nw; i++)
		seq[i] = a->reg_taken[i];
	a->sample_blocked = false;
	a->wait = wait;
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
		struct msg m = { .type = M_ROUND, .seq = ok && !a->sample_blocked ? seq[i] : 0 };
		(void)give(a, &a->w[i], &m, wait);
	}
}

static void *thread_main(void *arg)
{
	struct offacct *a = arg;
	uint64_t period = (uint64_t)a->o.interval_ms * 1000000u;

	while (!atomic_load(&a->stop)) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		round_once(a, atomic_exchange(&a->full_next, false), true);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		uint64_t spent = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u +
				 (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
		/* sleep the rest of the period in slices, to stop quickly */
		for (uint64_t left = spent < period ? period - spent : 0;
		     left && !atomic_load(&a->stop) && !atomic_load(&a->full_next);) {
			uint64_t s = left < 50000000u ? left : 50000000u;
			struct timespec ts = { 0, (long)s };
			nanosleep(&ts, NULL);
			left -= s;
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
	if (!a->hdel)
		a->hdel = nfct_open(CONNTRACK, 0);
	return a->h && a->hdel;
}

static void close_handles(struct offacct *a)
{
	if (a->h)
		nfct_close(a->h);
	if (a->hdel)
		nfct_close(a->hdel);
	a->h = a->hdel = NULL;
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
	int e = pthread_create(&a->thread, NULL, thread_main, a);
	if (e)
		return e;
	a->started = true;
	return 0;
}

void offacct_full_round(struct offacct *a)
{
	if (a)
		atomic_store(&a->full_next, true);
}

void offacct_stop(struct offacct *a)
{
	if (!a || !a->started)
		return;
	atomic_store(&a->stop, true);
	pthread_join(a->thread, NULL);
	a->started = false;
}

void offacct_finish(struct offacct *a, const struct offacct_apply *x)
{
	if (!a)
		return;
	offacct_stop(a);
	if (!open_handles(a))
		return;
	/* the workers are gone: this thread applies, draining a full ring as
	 * the dump goes */
	a->finish = x;
	for (int i = 0; i < a->o.n_workers; i++)
		offacct_serve(&a->w[i], &x[i]);
	round_once(a, true, false);
	for (int i = 0; i < a->o.n_workers; i++)
		offacct_serve(&a->w[i], &x[i]);
	a->finish = NULL;
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
	out->samples = counter_get(&w->cnt.samples);
	out->packets = counter_get(&w->cnt.packets);
	out->bytes = counter_get(&w->cnt.bytes);
	out->requeued = counter_get(&w->cnt.requeued);
	out->kernel_deleted = counter_get(&w->cnt.kernel_deleted);
	out->unmarked = counter_get(&w->cnt.unmarked);
	out->delete_errors = counter_get(&w->cnt.delete_errors);
	if (worker == 0) {
		out->dumps = counter_get(&a->dumps);
		out->dump_errors = counter_get(&a->dump_errors);
	}
}

/* ------------------------------------------------------------ tests */

bool offacct_test_sample(struct offacct *a, int worker, const struct offacct_counters *c)
{
	struct msg m = { .type = M_SAMPLE, .id = c->id, .marked = true };
	for (int k = 0; k < 2; k++) {
		m.packets[k] = c->packets[k];
		m.bytes[k] = c->bytes[k];
	}
	return ring_push(&a->w[worker].down, &m);
}

void offacct_test_round(struct offacct *a)
{
	for (int i = 0; i < a->o.n_workers; i++) {
		struct msg m = { .type = M_ROUND, .seq = a->reg_taken[i] };
		(void)ring_push(&a->w[i].down, &m);
	}
}

int offacct_test_request(struct offacct *a, int worker, uint32_t *id, struct offacct_tuple *t)
{
	struct msg m;
	if (!ring_pop(&a->w[worker].up, &m))
		return 0;
	*id = m.id;
	switch (m.type) {
	case M_REG:
		a->reg_taken[worker]++;
		return 'R';
	case M_FORGET:
		return 'F';
	case M_DELETE:
		*t = m.t;
		return 'D';
	default:
		return '?';
	}
}
