/* The HA pair's sync engine (include/vpcfw/ha.h). */
#include "vpcfw/ha.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vpcfw/log.h"
#include "vpcfw/model.h"
#include "vpcfw/policy.h"
#include "vpcfw/safefile.h"

#define MS 1000000ULL

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ rings */

int ha_ring_init(struct ha_ring *r, size_t entries, size_t esize)
{
	size_t n = 1;
	while (n < entries)
		n <<= 1;
	memset(r, 0, sizeof(*r));
	r->slots = calloc(n, esize);
	if (!r->slots)
		return -1;
	r->size = n;
	r->esize = esize;
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	return 0;
}

void ha_ring_free(struct ha_ring *r)
{
	free(r->slots);
	r->slots = NULL;
}

bool ha_ring_push(struct ha_ring *r, const void *e)
{
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (h - t == r->size)
		return false;
	memcpy(r->slots + (h & (r->size - 1)) * r->esize, e, r->esize);
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return true;
}

bool ha_ring_pop(struct ha_ring *r, void *e)
{
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	if (t == h)
		return false;
	memcpy(e, r->slots + (t & (r->size - 1)) * r->esize, r->esize);
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return true;
}

/* ------------------------------------------------------------ the worker's side */

int ha_worker_init(struct ha_worker *hw, uint16_t queue, size_t entries)
{
	memset(hw, 0, sizeof(*hw));
	hw->queue = queue;
	if (ha_ring_init(&hw->out, entries, sizeof(struct ha_change)) < 0 ||
	    ha_ring_init(&hw->in, entries, sizeof(struct ha_apply)) < 0) {
		ha_worker_free(hw);
		return -1;
	}
	atomic_init(&hw->bulk_req, 0);
	return 0;
}

void ha_worker_free(struct ha_worker *hw)
{
	ha_ring_free(&hw->out);
	ha_ring_free(&hw->in);
	free(hw->bulk);
	hw->bulk = NULL;
	hw->n_bulk = hw->cap_bulk = 0;
}

void ha_journal(void *arg, const struct ct_saved *s, enum ct_change what)
{
	struct ha_worker *hw = arg;
	struct ha_change c;

	c.s = *s;
	c.op = what == CT_CHANGE_GONE ? SYNC_OP_DELETE : SYNC_OP_UPSERT;
	c.at_ns = clock_ns(CLOCK_MONOTONIC);
	if (!ha_ring_push(&hw->out, &c))
		counter_inc(&hw->lost);
}

struct bulk_walk {
	struct ha_worker *hw;
	uint64_t now;
};

static int bulk_add(const struct ct_saved *s, void *arg)
{
	struct bulk_walk *b = arg;
	struct ha_worker *hw = b->hw;

	if (s->deadline_ns <= b->now)
		return 0;
	if (hw->n_bulk == hw->cap_bulk) {
		size_t cap = hw->cap_bulk ? hw->cap_bulk * 2 : 4096;
		struct ct_saved *p = realloc(hw->bulk, cap * sizeof(*p));
		if (!p) {
			hw->bulk_oom = true;
			return 1;
		}
		hw->bulk = p;
		hw->cap_bulk = cap;
	}
	struct ct_saved *d = &hw->bulk[hw->n_bulk++];
	*d = *s;
	d->deadline_ns = s->deadline_ns - b->now;
	return 0;
}

size_t ha_worker_serve(struct ha_worker *hw, struct conntrack *ct, uint64_t now_ns, size_t max)
{
	struct ha_apply a;
	size_t n = 0;

	while (n < max && ha_ring_pop(&hw->in, &a)) {
		n++;
		if (a.op == SYNC_OP_DELETE) {
			if (ct_sync_forget(ct, a.s.iface, &a.s.orig, now_ns, HA_DELETE_SLACK_MS * MS))
				counter_inc(&hw->applied);
			continue;
		}
		a.s.deadline_ns = now_ns + a.s.deadline_ns;
		if (ct_sync_apply(ct, &a.s, now_ns) >= 0)
			counter_inc(&hw->applied);
		else
			counter_inc(&hw->apply_failed);
	}
	if (atomic_load_explicit(&hw->bulk_req, memory_order_acquire) == 1) {
		struct bulk_walk b = { hw, now_ns };
		hw->n_bulk = 0;
		hw->bulk_oom = false;
		ct_foreach_saved(ct, now_ns, bulk_add, &b);
		atomic_store_explicit(&hw->bulk_req, 2, memory_order_release);
	}
	return n;
}

/* ------------------------------------------------------------ the sync thread */

struct ha {
	struct m_sync cfg;
	struct ha_worker *workers;
	int n_workers;
	struct ha_hooks hooks;
	struct sync_key key;
	int fd;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	uint64_t epoch, seq;
	struct ha_counters cnt;
	/* sending */
	uint8_t *out;                   /* the update being built (h->b) */
	uint8_t *other;                 /* hellos, bulk requests and parts: never over out */
	struct sync_builder b;
	uint64_t oldest_ns;             /* of the changes in b; 0: none */
	uint64_t next_hello_ns;
	/* the flows of the records in b, by index: a flow's later change in
	 * the same message replaces its earlier one */
	struct {
		uint32_t iface;
		struct ct_tuple t;
	} in_b[SYNC_MAX_RECORDS];
	/* interface ids by conntrack id, of generation map_gen */
	const char **id_of;
	uint32_t n_id_of;
	uint64_t map_gen;
	/* receiving */
	uint8_t *in;                    /* SYNC_MAX_BYTES */
	struct sync_msg *msg;
	struct sync_window window;
	/* the bulk sync from the peer */
	uint32_t bulk_id;
	uint64_t bulk_start_ns, bulk_asked_ns;
	bool bulk_got_any_peer;
	/* the bulk sync given to the peer */
	uint32_t serve_id;              /* 0: none in progress */
	int serve_phase;                /* 1: copies asked, 2: streaming */
	int serve_worker;
	size_t serve_at, serve_total;
};

const char *ha_bulk_state_name(enum ha_bulk_state s)
{
	switch (s) {
	case HA_BULK_WAITING: return "waiting";
	case HA_BULK_RECEIVING: return "receiving";
	case HA_BULK_DONE: return "done";
	case HA_BULK_ALONE: return "alone";
	}
	return "?";
}

static void send_msg(struct ha *h, const uint8_t *msg, size_t len, size_t records)
{
	ssize_t r;
	do
		r = sendto(h->fd, msg, len, 0, (const struct sockaddr *)&h->peer, h->peer_len);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
		/* the socket's buffer: wait for room once (not the packet path) */
		struct pollfd p = { .fd = h->fd, .events = POLLOUT };
		poll(&p, 1, 20);
		r = sendto(h->fd, msg, len, 0, (const struct sockaddr *)&h->peer, h->peer_len);
	}
	if (r < 0) {
		counter_inc(&h->cnt.send_errors);
		return;
	}
	counter_inc(&h->cnt.msgs_sent);
	counter_add(&h->cnt.bytes_sent, len);
	counter_add(&h->cnt.records_sent, records);
}

static uint8_t my_flags(const struct ha *h)
{
	return counter_get(&h->cnt.ready) ? SYNC_F_READY : 0;
}

/* Sends what b holds (an update), if anything. */
static void flush(struct ha *h, uint64_t now)
{
	if (!h->b.n_records)
		return;
	uint64_t lag = h->oldest_ns && now > h->oldest_ns ? (now - h->oldest_ns) / 1000 : 0;
	size_t len = sync_finish(&h->b, &h->key, SYNC_T_UPDATE, my_flags(h), h->cfg.node_id, h->epoch,
				 ++h->seq, clock_ns(CLOCK_REALTIME), 0, 0,
				 lag > UINT32_MAX ? UINT32_MAX : (uint32_t)lag);
	send_msg(h, h->out, len, h->b.n_records);
	sync_begin(&h->b, h->out, h->cfg.message_bytes);
	h->oldest_ns = 0;
}

static void send_empty(struct ha *h, uint8_t type, uint8_t flags, uint32_t bulk_id)
{
	struct sync_builder b;
	sync_begin(&b, h->other, h->cfg.message_bytes);
	size_t len = sync_finish(&b, &h->key, type, flags, h->cfg.node_id, h->epoch, ++h->seq,
				 clock_ns(CLOCK_REALTIME), bulk_id, 0, 0);
	send_msg(h, h->other, len, 0);
}

/* The interface ids by conntrack id, for the policy in force.  Called
 * between enter and leave. */
static void map_ids(struct ha *h, const struct policy *pol, uint64_t gen)
{
	if (h->id_of && gen == h->map_gen)
		return;
	uint32_t max = 0;
	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].ct_id > max)
			max = pol->ifaces[i].ct_id;
	const char **m = calloc((size_t)max + 1, sizeof(*m));
	if (!m)
		return;         /* the old map (if any) stays: ids are stable */
	for (int i = 0; i < pol->n_ifaces; i++)
		m[pol->ifaces[i].ct_id] = pol->ifaces[i].id;
	free(h->id_of);
	h->id_of = m;
	h->n_id_of = max + 1;
	h->map_gen = gen;
}

/* One change into the message being built (sent when full). */
static void add_change(struct ha *h, const struct ct_saved *s, uint8_t op, uint16_t queue,
		       uint64_t now, uint64_t at)
{
	if (s->iface >= h->n_id_of || !h->id_of[s->iface])
		return;         /* an interface removed by a reload */
	struct sync_record r = { .op = op, .queue = queue, .iface_id = h->id_of[s->iface], .s = *s };
	if (op == SYNC_OP_UPSERT) {
		if (s->deadline_ns <= now + MS)
			return;
		r.s.deadline_ns = s->deadline_ns - now;
	} else {
		r.s.deadline_ns = 0;
		memset(r.s.tcp, 0, sizeof(r.s.tcp));
	}
	for (size_t i = 0; i < h->b.n_records; i++) {
		const struct ct_tuple *t = &h->in_b[i].t;
		if (h->in_b[i].iface == s->iface && t->sport == s->orig.sport &&
		    t->dport == s->orig.dport && t->proto == s->orig.proto &&
		    addr_eq(&t->src, &s->orig.src) && addr_eq(&t->dst, &s->orig.dst) &&
		    sync_put(&h->b, i, &r)) {
			counter_inc(&h->cnt.coalesced);
			return;
		}
	}
	if (!sync_fits(&h->b, r.iface_id))
		flush(h, now);
	size_t i = h->b.n_records;
	if (sync_add(&h->b, &r)) {
		h->in_b[i].iface = s->iface;
		h->in_b[i].t = s->orig;
		if (!h->oldest_ns || at < h->oldest_ns)
			h->oldest_ns = at;
	}
}

/* Drains the workers' rings into updates. */
static void send_changes(struct ha *h, uint64_t now)
{
	uint64_t gen;
	struct ha_change c;
	/* the map points at the policy's strings: it is held while they are
	 * read (the builder copies them) */
	const struct policy *pol = h->hooks.enter(h->hooks.arg, &gen);
	map_ids(h, pol, gen);
	for (int i = 0; i < h->n_workers; i++) {
		struct ha_worker *hw = &h->workers[i];
		for (int k = 0; k < 4096 && ha_ring_pop(&hw->out, &c); k++)
			add_change(h, &c.s, c.op, hw->queue, now, c.at_ns);
	}
	h->hooks.leave(h->hooks.arg);
	if (h->b.n_records && (now - h->oldest_ns >= HA_FLUSH_MS * MS ||
			       !sync_fits(&h->b, "eni-0123456789abcdef0")))
		flush(h, now);
}

static struct ha_worker *worker_of(struct ha *h, uint16_t queue)
{
	for (int i = 0; i < h->n_workers; i++)
		if (h->workers[i].queue == queue)
			return &h->workers[i];
	return NULL;
}

/* The records of an update or bulk part, to the workers. */
static void apply_records(struct ha *h, const struct sync_msg *m)
{
	uint64_t gen;
	const struct policy *pol = h->hooks.enter(h->hooks.arg, &gen);
	bool waited_out = false;

	for (size_t i = 0; i < m->n_records; i++) {
		const struct sync_record *r = &m->records[i];
		const struct iface *ifc = policy_iface_by_id(pol, r->iface_id);
		if (!ifc) {
			counter_inc(&h->cnt.records_unknown_iface);
			continue;
		}
		struct ha_worker *hw = worker_of(h, r->queue);
		if (!hw) {
			counter_inc(&h->cnt.records_no_queue);
			continue;
		}
		struct ha_apply a = { .s = r->s, .op = r->op };
		a.s.iface = ifc->ct_id;
		/* a bulk sync outruns the workers: give them a moment (the
		 * sync thread's own time, never a worker's) */
		bool ok = ha_ring_push(&hw->in, &a);
		for (int t = 0; !ok && !waited_out && t < 200; t++) {
			struct timespec ts = { 0, 250000 };
			nanosleep(&ts, NULL);
			ok = ha_ring_push(&hw->in, &a);
		}
		if (!ok) {
			counter_inc(&h->cnt.records_overflow);
			waited_out = true;
		}
	}
	h->hooks.leave(h->hooks.arg);
}

static void ask_bulk(struct ha *h, uint64_t now)
{
	do
		safe_random(&h->bulk_id, sizeof(h->bulk_id));
	while (!h->bulk_id);
	send_empty(h, SYNC_T_BULK_REQ, my_flags(h), h->bulk_id);
	h->bulk_asked_ns = now;
}

static void set_ready(struct ha *h, enum ha_bulk_state st, uint64_t now)
{
	counter_set(&h->cnt.bulk_state, st);
	counter_set(&h->cnt.bulk_ms, (now - h->bulk_start_ns) / MS);
	if (!counter_get(&h->cnt.ready)) {
		counter_set(&h->cnt.ready, 1);
		if (st == HA_BULK_DONE)
			log_info("sync: bulk sync from node %" PRIu64 " done: %" PRIu64 " of %" PRIu64
				 " flows in %" PRIu64 " ms; ready", counter_get(&h->cnt.peer_node),
				 counter_get(&h->cnt.bulk_received), counter_get(&h->cnt.bulk_total),
				 counter_get(&h->cnt.bulk_ms));
		else
			log_info("sync: no answer from the peer in %d s: ready with the flows of "
				 "this node alone", HA_BULK_WAIT_S);
		/* tell the peer at once */
		h->next_hello_ns = 0;
	}
}

static void receive(struct ha *h, uint64_t now)
{
	for (int k = 0; k < 256; k++) {
		ssize_t n = recv(h->fd, h->in, SYNC_MAX_BYTES, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0)
			return;
		counter_inc(&h->cnt.msgs_received);
		counter_add(&h->cnt.bytes_received, (uint64_t)n);
		struct sync_msg *m = h->msg;
		enum sync_drop why = (size_t)n > SYNC_MAX_BYTES ? SYNC_DROP_SHORT
				     : sync_decode(&h->key, h->in, (size_t)n, m);
		if (why == SYNC_OK && m->sender == h->cfg.node_id)
			why = SYNC_DROP_SELF;
		if (why == SYNC_OK)
			why = sync_fresh(m->sent_ns, clock_ns(CLOCK_REALTIME),
					 (uint64_t)h->cfg.max_clock_skew * 1000000000u);
		if (why == SYNC_OK)
			why = sync_window_check(&h->window, m->epoch, m->seq);
		if (why != SYNC_OK) {
			counter_inc(&h->cnt.dropped[why]);
			continue;
		}
		if (counter_get(&h->cnt.peer_epoch) != m->epoch) {
			if (counter_get(&h->cnt.peer_epoch))
				log_info("sync: node %" PRIu32 " restarted", m->sender);
			else
				log_info("sync: node %" PRIu32 " heard", m->sender);
			counter_set(&h->cnt.peer_epoch, m->epoch);
			/* ready alone, and now a peer: learn its flows too */
			if (counter_get(&h->cnt.bulk_state) == HA_BULK_ALONE) {
				h->bulk_start_ns = now;
				counter_set(&h->cnt.bulk_received, 0);
				counter_set(&h->cnt.bulk_state, HA_BULK_WAITING);
				ask_bulk(h, now);
			}
		}
		/* heard again after a silence (the link, or the peer, was down):
		 * the changes sent meanwhile are lost; its whole table again */
		uint64_t heard = counter_get(&h->cnt.peer_heard_ns);
		if (heard && now - heard > HA_PEER_DEAD_MS * MS &&
		    counter_get(&h->cnt.bulk_state) != HA_BULK_WAITING &&
		    counter_get(&h->cnt.bulk_state) != HA_BULK_RECEIVING) {
			log_info("sync: node %" PRIu32 " heard again after %" PRIu64 " ms: asking for "
				 "its table", m->sender, (uint64_t)((now - heard) / MS));
			h->bulk_start_ns = now;
			counter_set(&h->cnt.bulk_received, 0);
			counter_set(&h->cnt.bulk_state, HA_BULK_WAITING);
			ask_bulk(h, now);
		}
		counter_set(&h->cnt.peer_node, m->sender);
		counter_set(&h->cnt.peer_heard_ns, now);
		counter_set(&h->cnt.peer_ready, (m->flags & SYNC_F_READY) != 0);
		counter_add(&h->cnt.records_received, m->n_records);
		switch (m->type) {
		case SYNC_T_UPDATE:
			counter_set(&h->cnt.lag_us, m->lag_us);
			apply_records(h, m);
			break;
		case SYNC_T_BULK:
			if (m->bulk_id != h->bulk_id ||
			    counter_get(&h->cnt.bulk_state) == HA_BULK_DONE)
				break;  /* an answer to an older request */
			counter_set(&h->cnt.bulk_state, HA_BULK_RECEIVING);
			counter_set(&h->cnt.bulk_total, m->bulk_total);
			apply_records(h, m);
			counter_add(&h->cnt.bulk_received, m->n_records);
			if (m->flags & SYNC_F_LAST)
				set_ready(h, HA_BULK_DONE, now);
			break;
		case SYNC_T_BULK_REQ:
			if (m->bulk_id == h->serve_id)
				break;  /* being served */
			h->serve_id = m->bulk_id;
			if (h->serve_phase == 2) {
				/* asked again (the parts sent so far carry the old
				 * request's id): the same copies from the start */
				h->serve_worker = 0;
				h->serve_at = 0;
			} else if (h->serve_phase == 0) {
				h->serve_phase = 1;
				for (int i = 0; i < h->n_workers; i++)
					atomic_store_explicit(&h->workers[i].bulk_req, 1,
							      memory_order_release);
			}       /* phase 1: the copies under way answer the new id */
			break;
		case SYNC_T_HELLO:
			break;
		}
	}
}

/* The bulk sync given to the peer: the workers' copies, a burst of parts
 * per turn (the rest of the loop goes on meanwhile). */
static void serve_bulk(struct ha *h, uint64_t now)
{
	if (!h->serve_id)
		return;
	if (h->serve_phase == 1) {
		for (int i = 0; i < h->n_workers; i++)
			if (atomic_load_explicit(&h->workers[i].bulk_req, memory_order_acquire) != 2)
				return;
		h->serve_phase = 2;
		h->serve_worker = 0;
		h->serve_at = 0;
		h->serve_total = 0;
		for (int i = 0; i < h->n_workers; i++)
			h->serve_total += h->workers[i].n_bulk;
		counter_inc(&h->cnt.bulk_served);
		counter_set(&h->cnt.bulk_served_flows, h->serve_total);
	}
	uint64_t gen;
	const struct policy *pol = h->hooks.enter(h->hooks.arg, &gen);
	map_ids(h, pol, gen);
	struct sync_builder b;
	uint32_t total = h->serve_total > UINT32_MAX ? UINT32_MAX : (uint32_t)h->serve_total;
	for (int burst = 0; burst < 64; burst++) {
		sync_begin(&b, h->other, h->cfg.message_bytes);
		bool last = false;
		for (;;) {
			if (h->serve_worker == h->n_workers) {
				last = true;
				break;
			}
			struct ha_worker *hw = &h->workers[h->serve_worker];
			if (h->serve_at == hw->n_bulk) {
				h->serve_worker++;
				h->serve_at = 0;
				continue;
			}
			const struct ct_saved *s = &hw->bulk[h->serve_at];
			if (s->iface >= h->n_id_of || !h->id_of[s->iface]) {
				h->serve_at++;
				continue;
			}
			struct sync_record r = { .op = SYNC_OP_UPSERT, .queue = hw->queue,
						 .iface_id = h->id_of[s->iface], .s = *s };
			if (!sync_fits(&b, r.iface_id))
				break;
			(void)sync_add(&b, &r);
			h->serve_at++;
		}
		size_t len = sync_finish(&b, &h->key, SYNC_T_BULK,
					 (uint8_t)(my_flags(h) | (last ? SYNC_F_LAST : 0)),
					 h->cfg.node_id, h->epoch, ++h->seq, clock_ns(CLOCK_REALTIME),
					 h->serve_id, total, 0);
		send_msg(h, h->other, len, b.n_records);
		if (last) {
			log_info("sync: bulk sync to node %" PRIu64 ": %zu flows",
				 counter_get(&h->cnt.peer_node), h->serve_total);
			h->serve_id = 0;
			h->serve_phase = 0;
			for (int i = 0; i < h->n_workers; i++)
				atomic_store_explicit(&h->workers[i].bulk_req, 0, memory_order_release);
			break;
		}
	}
	h->hooks.leave(h->hooks.arg);
	(void)now;
}

static void *sync_main(void *arg)
{
	struct ha *h = arg;
	uint64_t now = clock_ns(CLOCK_MONOTONIC);

	h->bulk_start_ns = now;
	ask_bulk(h, now);
	while (!atomic_load(&h->stop)) {
		struct pollfd p = { .fd = h->fd, .events = POLLIN };
		poll(&p, 1, h->serve_id ? 0 : 2);
		now = clock_ns(CLOCK_MONOTONIC);
		if (p.revents & POLLIN)
			receive(h, now);
		send_changes(h, now);
		serve_bulk(h, now);
		if (counter_get(&h->cnt.bulk_state) == HA_BULK_WAITING) {
			if (now - h->bulk_start_ns >= (uint64_t)HA_BULK_WAIT_S * 1000 * MS)
				set_ready(h, HA_BULK_ALONE, now);
			else if (now - h->bulk_asked_ns >= HA_BULK_RETRY_MS * MS)
				ask_bulk(h, now);
		}
		if (now >= h->next_hello_ns) {
			send_empty(h, SYNC_T_HELLO, my_flags(h), 0);
			h->next_hello_ns = now + HA_HELLO_MS * MS;
		}
	}
	/* the workers' last changes */
	now = clock_ns(CLOCK_MONOTONIC);
	send_changes(h, now);
	flush(h, now);
	return NULL;
}

static int addr_sock(const struct ip_addr *a, int family, uint16_t port, struct sockaddr_storage *ss,
		     socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == FAMILY_V4) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		s->sin_addr.s_addr = htonl((uint32_t)a->lo);
		*len = sizeof(*s);
		return AF_INET;
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	for (int i = 0; i < 8; i++) {
		s->sin6_addr.s6_addr[i] = (uint8_t)(a->hi >> (56 - 8 * i));
		s->sin6_addr.s6_addr[8 + i] = (uint8_t)(a->lo >> (56 - 8 * i));
	}
	*len = sizeof(*s);
	return AF_INET6;
}

struct ha *ha_open(const struct m_sync *cfg, struct ha_worker *workers, int n_workers,
		   const struct ha_hooks *hooks, char *err, size_t errlen)
{
	uint8_t key[SYNC_KEY_MAX];
	size_t key_len;
	char why[256];

	if (sync_key_read(cfg->key_file, key, &key_len, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "Vpcfw.Sync.KeyFile %s: %s", cfg->key_file, why);
		return NULL;
	}
	struct ha *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->fd = -1;
	h->cfg = *cfg;
	h->workers = workers;
	h->n_workers = n_workers;
	h->hooks = *hooks;
	sync_key_init(&h->key, key, key_len);
	memset(key, 0, sizeof(key));
	h->out = malloc(SYNC_MAX_BYTES);
	h->other = malloc(SYNC_MAX_BYTES);
	h->in = malloc(SYNC_MAX_BYTES);
	h->msg = calloc(1, sizeof(*h->msg));
	struct sync_record *recs = calloc(SYNC_MAX_RECORDS, sizeof(*recs));
	if (!h->out || !h->other || !h->in || !h->msg || !recs) {
		free(recs);
		snprintf(err, errlen, "out of memory");
		ha_stop(h);
		return NULL;
	}
	h->msg->records = recs;
	h->msg->max_records = SYNC_MAX_RECORDS;
	int af = addr_sock(&cfg->peer, cfg->peer_family, (uint16_t)cfg->port, &h->peer, &h->peer_len);
	struct sockaddr_storage local;
	socklen_t local_len;
	if (cfg->listen_family) {
		addr_sock(&cfg->listen, cfg->listen_family, (uint16_t)cfg->port, &local, &local_len);
	} else {
		struct ip_addr any = { 0, 0 };
		addr_sock(&any, cfg->peer_family, (uint16_t)cfg->port, &local, &local_len);
		if (af == AF_INET)
			((struct sockaddr_in *)&local)->sin_addr.s_addr = htonl(INADDR_ANY);
	}
	h->fd = socket(af, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1, buf = 8 << 20;
	if (h->fd >= 0) {
		setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* bulk syncs come in bursts: room for a few thousand parts */
		if (setsockopt(h->fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) < 0)
			setsockopt(h->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
		if (setsockopt(h->fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0)
			setsockopt(h->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	}
	if (h->fd < 0 || bind(h->fd, (struct sockaddr *)&local, local_len) < 0) {
		snprintf(err, errlen, "Vpcfw.Sync: cannot open UDP port %u: %s", cfg->port,
			 strerror(errno));
		ha_stop(h);
		return NULL;
	}
	h->epoch = clock_ns(CLOCK_REALTIME);
	if (!h->epoch)
		h->epoch = 1;
	sync_begin(&h->b, h->out, cfg->message_bytes);
	counter_set(&h->cnt.node_id, cfg->node_id);
	counter_set(&h->cnt.bulk_state, HA_BULK_WAITING);
	atomic_init(&h->stop, false);
	return h;
}

int ha_run(struct ha *h)
{
	int e = pthread_create(&h->thread, NULL, sync_main, h);
	if (e)
		return e;
	h->started = true;
	return 0;
}

void ha_stop(struct ha *h)
{
	if (!h)
		return;
	if (h->started) {
		atomic_store(&h->stop, true);
		pthread_join(h->thread, NULL);
	}
	if (h->fd >= 0)
		close(h->fd);
	if (h->msg)
		free(h->msg->records);
	free(h->msg);
	free(h->in);
	free(h->out);
	free(h->other);
	free(h->id_of);
	free(h);
}

void ha_read(const struct ha *h, struct ha_status *o)
{
	memset(o, 0, sizeof(*o));
	if (!h)
		return;
	const struct ha_counters *c = &h->cnt;
	uint64_t now = clock_ns(CLOCK_MONOTONIC), heard = counter_get(&c->peer_heard_ns);
	o->enabled = true;
	o->ready = counter_get(&c->ready);
	o->node_id = (uint32_t)counter_get(&c->node_id);
	o->peer_node = (uint32_t)counter_get(&c->peer_node);
	o->peer_heard_ms = heard ? (int64_t)((now - heard) / MS) : -1;
	o->peer_up = heard && now - heard < HA_PEER_DEAD_MS * MS;
	o->peer_ready = o->peer_up && counter_get(&c->peer_ready);
	o->bulk_state = (enum ha_bulk_state)counter_get(&c->bulk_state);
	o->bulk_received = counter_get(&c->bulk_received);
	o->bulk_total = counter_get(&c->bulk_total);
	o->bulk_ms = counter_get(&c->bulk_ms);
	o->bulk_served = counter_get(&c->bulk_served);
	o->bulk_served_flows = counter_get(&c->bulk_served_flows);
	o->lag_us = counter_get(&c->lag_us);
	o->msgs_sent = counter_get(&c->msgs_sent);
	o->bytes_sent = counter_get(&c->bytes_sent);
	o->records_sent = counter_get(&c->records_sent);
	o->send_errors = counter_get(&c->send_errors);
	o->msgs_received = counter_get(&c->msgs_received);
	o->bytes_received = counter_get(&c->bytes_received);
	o->records_received = counter_get(&c->records_received);
	for (int i = 0; i < SYNC_DROP_NREASONS; i++)
		o->dropped[i] = counter_get(&c->dropped[i]);
	o->records_unknown_iface = counter_get(&c->records_unknown_iface);
	o->records_no_queue = counter_get(&c->records_no_queue);
	o->records_overflow = counter_get(&c->records_overflow);
	o->coalesced = counter_get(&c->coalesced);
	for (int i = 0; i < h->n_workers; i++) {
		o->changes_lost += counter_get(&h->workers[i].lost);
		o->applied += counter_get(&h->workers[i].applied);
		o->apply_failed += counter_get(&h->workers[i].apply_failed);
	}
}
