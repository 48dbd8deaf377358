/* One worker lane (lane.h): decide a batch, then the hooks in one order. */
#include "vpcfw/lane.h"

#include <string.h>

void lane_init(struct lane *l, struct conntrack *ct, int worker)
{
	memset(l, 0, sizeof(*l));
	pipeline_init(&l->pl, ct);
	l->worker = worker;
}

/* Step 1: the packet from its IP header; an IP packet of another version
 * than its link header said is malformed. */
static enum packet_status parse(const struct lane_packet *in, struct packet *p)
{
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

void lane_run(struct lane *l, const struct lane_batch *b, const struct lane_packet *in, int n,
	      struct lane_out *out)
{
	int parsed = 0;

	if (n > LANE_BATCH_MAX)
		n = LANE_BATCH_MAX;
	/* 1, 2: parse; decide the parsed packets together */
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
	const struct pkt_meta *metas = b->devices ? l->metas : NULL;
	pipeline_eval_batch(&l->pl, b->pol, l->pkts, metas, parsed, b->now_ns, l->vs);
	/* 3: the shadow sees what the policy decided; one pointer test without */
	if (b->shadow)
		shadow_eval(b->shadow, l->worker, l->pl.ct, l->pkts, metas, parsed, l->vs,
			    b->generation, b->now_ns);

	for (int i = 0; i < n; i++) {
		int k = l->slot[i];
		const struct packet *p = k >= 0 ? &l->pkts[k] : NULL;
		const struct verdict *v = k >= 0 ? &l->vs[k] : &l->unparsed[i];

		/* 4: refusal capture */
		if (!v->accept && l->refused)
			l->refused(l->refused_arg, i, p, v);
		/* 5: mirror, with the bytes from the IP header (all of them
		 * when the link layer found none) */
		if (l->mw) {
			const struct lane_packet *x = &in[i];
			size_t off = x->link == PACKET_OK && x->ip_off <= x->caplen ? x->ip_off : 0;
			size_t wire = x->wirelen > x->caplen ? x->wirelen : x->caplen;
			mirror_observe(l->mw, p, v, x->data ? x->data + off : NULL, x->caplen - off,
				       wire - off, x->ts_ns);
		}
		bool accept = v->accept || b->audit;
		/* 6: flow log, with the verdict enforced */
		if (p && l->flw) {
			if (accept == v->accept) {
				flowlog_observe(l->flw, p, v, b->wall_ns);
			} else {
				struct verdict done = *v;
				done.accept = true;
				flowlog_observe(l->flw, p, &done, b->wall_ns);
			}
		}
		/* 7: counters */
		if (accept != v->accept)
			counter_inc(&l->would_refuse);
		out[i] = (struct lane_out){ .p = p, .v = v, .accept = accept };
	}
}
