/* One worker lane (lane.h): decide a batch (lane_decide.c), then the shadow
 * and the hooks in one order. */
#include "vpcfw/lane.h"

void lane_run(struct lane *l, const struct lane_batch *b, const struct lane_packet *in, int n,
	      struct lane_out *out)
{
	if (n > LANE_BATCH_MAX)
		n = LANE_BATCH_MAX;
	/* 1, 2: parse; decide the parsed packets together */
	lane_decide(l, b, in, n, out);
	/* 3: the shadow sees what the policy decided; one pointer test without */
	if (b->shadow)
		shadow_eval(b->shadow, l->worker, l->pl.ct, l->decided, l->decided_metas,
			    l->n_parsed, l->vs, b->generation, b->now_ns);
	/* 4-7: nothing to do without a hook (audit counts in step 7) */
	if (!l->refused && !l->mw && !l->flw && !b->audit)
		return;

	for (int i = 0; i < n; i++) {
		const struct packet *p = out[i].p;
		const struct verdict *v = out[i].v;

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
		/* 6: flow log, with the verdict enforced */
		if (p && l->flw) {
			if (out[i].accept == v->accept) {
				flowlog_observe(l->flw, p, v, b->wall_ns);
			} else {
				struct verdict done = *v;
				done.accept = true;
				flowlog_observe(l->flw, p, &done, b->wall_ns);
			}
		}
		/* 7: counters */
		if (out[i].accept != v->accept)
			counter_inc(&l->would_refuse);
	}
}
