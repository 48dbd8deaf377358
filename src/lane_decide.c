/* The worker lane's decision (lane.h, steps 1 and 2): parse, then decide
 * the parsed packets together.  lane_run (lane.c) adds the shadow and the
 * hooks; offline evaluation without hooks calls lane_decide alone. */
#include "vpcfw/lane.h"

#include <string.h>

void lane_init(struct lane *l, struct conntrack *ct, int worker)
{
	memset(l, 0, sizeof(*l));
	pipeline_init(&l->pl, ct);
	l->worker = worker;
}

/* Step 1, inlined into lane_decide's loop (the packet path) */
static inline enum packet_status parse(const struct lane_packet *in, struct packet *p)
{
	if (in->parsed) {
		*p = *in->parsed;
		return PACKET_OK;
	}
	enum packet_status st = in->data ? in->link : PACKET_MALFORMED;

	if (st != PACKET_OK)
		return st;
	if (in->ip_off > in->caplen)
		return PACKET_MALFORMED;
	size_t wire = in->wirelen > in->caplen ? in->wirelen : in->caplen;
	st = packet_parse_ip(in->data + in->ip_off, in->caplen - in->ip_off, wire - in->ip_off, p);
	if (st == PACKET_NOT_IP || (st == PACKET_OK && in->family && p->family != in->family))
		st = in->family ? PACKET_MALFORMED : PACKET_NOT_IP;
	return st;
}

enum packet_status lane_parse(const struct lane_packet *in, struct packet *p)
{
	return parse(in, p);
}

/* A batch (the general case; out of line, so that the one-packet case
 * below pays for none of its registers) */
__attribute__((noinline)) static void decide_batch(struct lane *l, const struct lane_batch *b,
						   const struct lane_packet *in, int n,
						   struct lane_out *out)
{
	int parsed = 0;

	if (n > LANE_BATCH_MAX)
		n = LANE_BATCH_MAX;
	/* 1: parse */
	for (int i = 0; i < n; i++) {
		enum packet_status st = parse(&in[i], &l->pkts[parsed]);
		if (st != PACKET_OK) {
			l->slot[i] = -1;
			pipeline_verdict_unparsed(&l->pl, st, &l->unparsed[i]);
			continue;
		}
		l->metas[parsed] = in[i].meta;
		l->slot[i] = parsed++;
	}
	/* 2: decide the parsed packets together; one alone has no lookups to
	 * overlap */
	const struct pkt_meta *metas = b->devices ? l->metas : NULL;
	l->decided = l->pkts;
	l->decided_metas = metas;
	l->n_parsed = parsed;
	if (parsed == 1)
		pipeline_eval(&l->pl, b->pol, l->pkts, metas, b->now_ns, l->vs);
	else
		pipeline_eval_batch(&l->pl, b->pol, l->pkts, metas, parsed, b->now_ns, l->vs);
	for (int i = 0; i < n; i++) {
		int k = l->slot[i];
		const struct verdict *v = k >= 0 ? &l->vs[k] : &l->unparsed[i];
		out[i] = (struct lane_out){ .p = k >= 0 ? &l->pkts[k] : NULL, .v = v,
					    .accept = v->accept || b->audit };
	}
}

void lane_decide(struct lane *l, const struct lane_batch *b, const struct lane_packet *in, int n,
		 struct lane_out *out)
{
	if (n != 1 || !in->parsed) {
		decide_batch(l, b, in, n, out);
		return;
	}
	/* offline, record by record: the packet as it is, nothing to assemble
	 * or overlap */
	const struct packet *p = in->parsed;
	const struct pkt_meta *meta = b->devices ? &in->meta : NULL;
	l->slot[0] = 0;
	l->decided = p;
	l->decided_metas = meta;
	l->n_parsed = 1;
	if (in->located)
		pipeline_eval_located(&l->pl, b->pol, p, meta, b->now_ns, in->located, l->vs);
	else
		pipeline_eval(&l->pl, b->pol, p, meta, b->now_ns, l->vs);
	out->p = p;
	out->v = l->vs;
	out->accept = l->vs->accept || b->audit;
}
