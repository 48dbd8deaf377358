/* Shadow policies: a candidate evaluated beside the running policy on the
 * same packets, in the worker's lane (lane.h) after the running policy
 * decided the batch, with its own flow table per worker (seeded from the
 * worker's table on its first batch), so its connection tracking is
 * modelled without touching the real one.  Packets the two decide
 * differently are counted per (running rule, candidate rule, change) in a
 * bounded table per worker; a full table counts the rest as lost.
 * Devices bind as in the running configuration: an interface is the
 * candidate's interface of the same id.  Each worker's part has one writer,
 * the worker; shadow_report reads it while it runs.
 *
 * The control socket (ctl.c) loads, reports and clears a shadow; the daemon
 * publishes it to the workers like a policy (an atomic pointer and a grace
 * period). */
#ifndef VPCFW_SHADOW_H
#define VPCFW_SHADOW_H

#include <stdint.h>

#include <jansson.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

enum { SHADOW_DIFFS = 256, SHADOW_FLOWS_MAX = 262144 };

struct shadow;

/* Takes ownership of pol (even on failure).  flows: the flow-table size of
 * each worker.  NULL on ENOMEM. */
struct shadow *shadow_create(struct policy *pol, const char *path, int n_workers,
			     uint32_t flows);
void shadow_free(struct shadow *s);
/* the name it was loaded under */
const char *shadow_path(const struct shadow *s);
/* Worker `worker`: the candidate's verdicts for the n packets the running
 * policy (generation gen) decided as `running`; metas are the running
 * policy's (may be NULL).  running_ct seeds the candidate's table on the
 * first call.  Allocates nothing. */
void shadow_eval(struct shadow *s, int worker, struct conntrack *running_ct,
		 const struct packet *pkts, const struct pkt_meta *metas, int n,
		 const struct verdict *running, uint64_t gen, uint64_t now_ns);
/* The "shadow-report" answer: the differences summed over the workers, most
 * frequent first, at most limit of them.  NULL on ENOMEM. */
json_t *shadow_report(const struct shadow *s, json_int_t limit);

#endif
