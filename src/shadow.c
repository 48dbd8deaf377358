/* Shadow policies (shadow.h): a candidate decided beside the running
 * policy on a worker's packets, on the worker's thread. */
#include "vpcfw/shadow.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vpcfw/addr.h"

struct shadow_key {
	uint64_t gen;                   /* the running policy's generation */
	const void *run[4], *cand[4];   /* nacl, nacl_rule, sg_rule, stage_iface */
	uint8_t run_stage, run_reason, cand_stage, cand_reason;
	bool refused;                   /* the candidate refuses what runs admits */
};

struct shadow_diff {
	struct shadow_key key;
	_Atomic uint64_t packets;
	char run_rule[128], cand_rule[128];
	/* the first packet seen */
	struct ip_addr src, dst;
	uint16_t sport, dport;
	uint8_t family, proto, icmp_type, icmp_code;
};

struct shadow_worker {
	struct conntrack *ct;
	struct pipeline pl;
	bool seeded;
	uint64_t next_expire_ns;
	unsigned expire_budget;
	uint16_t index[2 * SHADOW_DIFFS];   /* open addressing; slot + 1, 0 empty */
	struct shadow_diff diffs[SHADOW_DIFFS];
	_Atomic uint32_t n;
	_Atomic uint64_t compared, differing, lost, seeded_flows, unseeded_flows;
};

struct shadow {
	struct policy *pol;
	char *path;
	uint64_t loaded_ns;             /* CLOCK_MONOTONIC */
	const struct iface **by_ct_id;  /* the candidate's interface of a ct_id */
	uint32_t n_ct_ids;
	int n_workers;
	struct shadow_worker *w;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void shadow_free(struct shadow *s)
{
	if (!s)
		return;
	for (int i = 0; s->w && i < s->n_workers; i++)
		if (s->w[i].ct)
			ct_destroy(s->w[i].ct);
	free(s->w);
	free(s->by_ct_id);
	free(s->path);
	policy_free(s->pol);
	free(s);
}

struct shadow *shadow_create(struct policy *pol, const char *path, int n_workers,
				     uint32_t flows)
{
	struct shadow *s = calloc(1, sizeof(*s));

	if (!s) {
		policy_free(pol);
		return NULL;
	}
	s->pol = pol;
	s->n_workers = n_workers;
	s->loaded_ns = mono_ns();
	s->path = strdup(path ? path : "");
	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].ct_id >= s->n_ct_ids)
			s->n_ct_ids = pol->ifaces[i].ct_id + 1;
	s->by_ct_id = calloc((size_t)s->n_ct_ids + 1, sizeof(*s->by_ct_id));
	s->w = calloc((size_t)n_workers + 1, sizeof(*s->w));
	if (!s->path || !s->by_ct_id || !s->w) {
		shadow_free(s);
		return NULL;
	}
	for (int i = 0; i < pol->n_ifaces; i++)
		s->by_ct_id[pol->ifaces[i].ct_id] = &pol->ifaces[i];
	for (int i = 0; i < n_workers; i++) {
		struct shadow_worker *w = &s->w[i];
		w->ct = ct_create(flows ? flows : 1);
		if (!w->ct) {
			shadow_free(s);
			return NULL;
		}
		pipeline_init(&w->pl, w->ct);
		w->expire_budget = flows / 512 > 64 ? flows / 512 : 64;
	}
	return s;
}

static const struct iface *cand_iface(const struct shadow *s, const struct iface *running)
{
	return running && running->ct_id < s->n_ct_ids ? s->by_ct_id[running->ct_id] : NULL;
}

static void add_relaxed(_Atomic uint64_t *x, uint64_t n)
{
	atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

struct seed {
	const struct shadow *s;
	struct shadow_worker *w;
	uint64_t now;
};

/* The candidate starts with the flows the running policy tracks: without
 * them every reply of a connection opened before the load would look new.
 * TCP flows enter as established (or SYN-sent). */
static int seed_one(const struct ct_flow_info *f, void *arg)
{
	struct seed *sd = arg;
	const struct iface *ci = f->iface < sd->s->n_ct_ids ? sd->s->by_ct_id[f->iface] : NULL;

	if (!ci)
		return 0;       /* not an interface of the candidate: nothing to track */
	struct ct_timeouts to = {
		.tcp_established = ci->tcp_established_timeout, .udp = ci->udp_timeout,
		.udp_stream = ci->udp_stream_timeout,
	};
	uint8_t flags = f->tcp_state == CT_TCP_SYN_SENT ? TCP_SYN : TCP_ACK;
	if (ct_insert(sd->w->ct, f->iface, &f->orig, ct_hash(&f->orig), flags, &to, sd->now))
		add_relaxed(&sd->w->seeded_flows, 1);
	else
		add_relaxed(&sd->w->unseeded_flows, 1);
	return 0;
}

static uint32_t key_hash(const struct shadow_key *k)
{
	uint64_t h = k->gen * 0x9e3779b97f4a7c15u;

	for (int i = 0; i < 4; i++) {
		h = (h ^ (uintptr_t)k->run[i]) * 0x100000001b3u;
		h = (h ^ (uintptr_t)k->cand[i]) * 0x100000001b3u;
	}
	h ^= (uint64_t)k->run_stage << 24 | (uint64_t)k->run_reason << 16 |
	     (uint64_t)k->cand_stage << 8 | k->cand_reason | (uint64_t)k->refused << 32;
	h *= 0x9e3779b97f4a7c15u;
	return (uint32_t)(h >> 32);
}

static void side_key(const struct verdict *v, const void *p[4], uint8_t *stage, uint8_t *reason)
{
	p[0] = v->nacl;
	p[1] = v->nacl_rule;
	p[2] = v->sg_rule;
	p[3] = v->stage_iface;
	*stage = (uint8_t)v->stage;
	*reason = (uint8_t)v->reason;
}

static void note_diff(struct shadow_worker *w, const struct packet *p, const struct verdict *run,
		      const struct verdict *cand, uint64_t gen)
{
	struct shadow_key k;

	memset(&k, 0, sizeof(k));
	k.gen = gen;
	k.refused = run->accept;
	side_key(run, k.run, &k.run_stage, &k.run_reason);
	side_key(cand, k.cand, &k.cand_stage, &k.cand_reason);
	uint32_t mask = 2 * SHADOW_DIFFS - 1, i = key_hash(&k) & mask;
	uint32_t n = atomic_load_explicit(&w->n, memory_order_relaxed);
	for (;; i = (i + 1) & mask) {
		if (w->index[i] == 0)
			break;
		struct shadow_diff *d = &w->diffs[w->index[i] - 1];
		if (!memcmp(&d->key, &k, sizeof(k))) {
			add_relaxed(&d->packets, 1);
			return;
		}
	}
	if (n == SHADOW_DIFFS) {
		add_relaxed(&w->lost, 1);
		return;
	}
	/* a new difference: formatted once, published whole */
	struct shadow_diff *d = &w->diffs[n];
	memcpy(&d->key, &k, sizeof(k)); /* padding included: keys compare with memcmp */
	atomic_store_explicit(&d->packets, 1, memory_order_relaxed);
	verdict_rule_format(run, d->run_rule, sizeof(d->run_rule));
	verdict_rule_format(cand, d->cand_rule, sizeof(d->cand_rule));
	d->src = p->src;
	d->dst = p->dst;
	d->sport = p->sport;
	d->dport = p->dport;
	d->family = p->family;
	d->proto = p->proto;
	d->icmp_type = p->icmp_type;
	d->icmp_code = p->icmp_code;
	w->index[i] = (uint16_t)(n + 1);
	atomic_store_explicit(&w->n, n + 1, memory_order_release);
}

void shadow_eval(struct shadow *s, int worker, struct conntrack *running_ct,
		     const struct packet *pkts, const struct pkt_meta *metas, int n,
		     const struct verdict *running, uint64_t gen, uint64_t now_ns)
{
	struct shadow_worker *w = &s->w[worker];
	struct pkt_meta cm[PIPELINE_BATCH];
	struct verdict cv[PIPELINE_BATCH];

	if (!w->seeded) {
		struct seed sd = { s, w, now_ns };
		if (running_ct)
			ct_foreach(running_ct, now_ns, seed_one, &sd);
		w->seeded = true;
	}
	if (now_ns >= w->next_expire_ns) {
		ct_expire(w->ct, now_ns, w->expire_budget);
		w->next_expire_ns = now_ns + 10000000u;
	}
	while (n > 0) {
		int k = n < PIPELINE_BATCH ? n : PIPELINE_BATCH;
		for (int i = 0; metas && i < k; i++)
			cm[i] = (struct pkt_meta){ cand_iface(s, metas[i].in_iface),
						   cand_iface(s, metas[i].out_iface), metas[i].in_known };
		pipeline_eval_batch(&w->pl, s->pol, pkts, metas ? cm : NULL, k, now_ns, cv);
		uint64_t differing = 0;
		for (int i = 0; i < k; i++) {
			if (cv[i].accept == running[i].accept)
				continue;
			differing++;
			note_diff(w, &pkts[i], &running[i], &cv[i], gen);
		}
		add_relaxed(&w->compared, (uint64_t)k);
		if (differing)
			add_relaxed(&w->differing, differing);
		pkts += k;
		running += k;
		if (metas)
			metas += k;
		n -= k;
	}
}

static json_t *side_json(bool accept, uint8_t stage, uint8_t reason, const char *rule)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "verdict", accept ? "ACCEPT" : "REJECT",
			 "stage", stage_name((enum stage)stage), "reason",
			 reason_name((enum reason)reason), "rule", rule);
}

static int by_packets(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "packets"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "packets"));
	return x < y ? 1 : x > y ? -1 : 0;
}

json_t *shadow_report(const struct shadow *s, json_int_t limit)
{
	uint64_t compared = 0, differing = 0, lost = 0, seeded = 0, unseeded = 0;
	uint64_t cand_accepted = 0, cand_rejected = 0;
	/* the same rules met in several workers (or generations) are summed */
	json_t *merged = json_object();

	for (int i = 0; i < s->n_workers; i++) {
		const struct shadow_worker *w = &s->w[i];
		uint32_t n = atomic_load_explicit(&w->n, memory_order_acquire);
		compared += atomic_load_explicit(&w->compared, memory_order_relaxed);
		differing += atomic_load_explicit(&w->differing, memory_order_relaxed);
		lost += atomic_load_explicit(&w->lost, memory_order_relaxed);
		seeded += atomic_load_explicit(&w->seeded_flows, memory_order_relaxed);
		unseeded += atomic_load_explicit(&w->unseeded_flows, memory_order_relaxed);
		cand_accepted += counter_get(&w->pl.counters.accepted);
		cand_rejected += counter_get(&w->pl.counters.rejected);
		for (uint32_t k = 0; k < n; k++) {
			const struct shadow_diff *d = &w->diffs[k];
			const struct shadow_key *key = &d->key;
			uint64_t packets = atomic_load_explicit(&d->packets, memory_order_relaxed);
			char id[400];
			snprintf(id, sizeof(id), "%d|%u/%u|%s|%u/%u|%s", key->refused, key->run_stage,
				 key->run_reason, d->run_rule, key->cand_stage, key->cand_reason,
				 d->cand_rule);
			json_t *e = json_object_get(merged, id);
			if (e) {
				json_int_t p = json_integer_value(json_object_get(e, "packets"));
				json_object_set_new(e, "packets", json_integer(p + (json_int_t)packets));
				continue;
			}
			char src[ADDR_STRLEN], dst[ADDR_STRLEN];
			bool icmp = d->proto == 1 || d->proto == 58;
			json_t *sample = json_pack("{s:i, s:s, s:s}", "proto", d->proto,
				"src", addr_format(&d->src, d->family, src),
				"dst", addr_format(&d->dst, d->family, dst));
			if (icmp) {
				json_object_set_new(sample, "icmp_type", json_integer(d->icmp_type));
				json_object_set_new(sample, "icmp_code", json_integer(d->icmp_code));
			} else {
				json_object_set_new(sample, "sport", json_integer(d->sport));
				json_object_set_new(sample, "dport", json_integer(d->dport));
			}
			json_object_set_new(merged, id, json_pack("{s:s, s:I, s:o, s:o, s:o}",
				"change", key->refused ? "refused" : "admitted",
				"packets", (json_int_t)packets,
				"running", side_json(key->refused, key->run_stage, key->run_reason,
						     d->run_rule),
				"candidate", side_json(!key->refused, key->cand_stage, key->cand_reason,
						       d->cand_rule),
				"sample", sample));
		}
	}
	size_t n = json_object_size(merged), k = 0;
	json_t **all = calloc(n + 1, sizeof(*all));
	json_t *diffs = json_array();
	const char *id;
	json_t *e;
	if (!all) {
		json_decref(merged);
		json_decref(diffs);
		return NULL;
	}
	json_object_foreach(merged, id, e)
		all[k++] = e;
	qsort(all, n, sizeof(*all), by_packets);
	for (k = 0; k < n && (json_int_t)k < limit; k++)
		json_array_append(diffs, all[k]);
	free(all);
	json_decref(merged);
	return json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
		"ok", 1, "path", s->path,
		"loaded_seconds_ago", (json_int_t)((mono_ns() - s->loaded_ns) / 1000000000u),
		"compared", (json_int_t)compared, "differing", (json_int_t)differing,
		"lost", (json_int_t)lost, "candidate_accepted", (json_int_t)cand_accepted,
		"candidate_rejected", (json_int_t)cand_rejected,
		"seeded_flows", (json_int_t)seeded, "unseeded_flows", (json_int_t)unseeded,
		"distinct", (json_int_t)n, "differences", diffs);
}

const char *shadow_path(const struct shadow *s)
{
	return s->path;
}
