/* Offloaded flows' accounting and idle timeouts (issue #16).
 *
 * An offloaded flow's packets after the one whose verdict set the offload
 * mark (nfqueue_set_ctmark) never reach vpcfwd: the kernel accepts them.
 * Two things still need them: the flow logs (packets, bytes per capture
 * window) and vpcfwd's own flow table (the flow's last activity, so that it
 * idles out at AWS's timeout and not before).  Both come from the kernel's
 * conntrack accounting (net.netfilter.nf_conntrack_acct=1):
 *
 *   - the marking packet carries its kernel entry's counters (NFQA_CT): the
 *     baseline; every kernel-counted packet up to it was queued and is in
 *     the flow logs already;
 *   - a thread of this module dumps, every interval, the kernel entries
 *     that have the offload mark (a dump the kernel filters on the mark)
 *     and hands each one's counters to the worker that marked it, through
 *     a bounded single-producer ring (no lock on the packet path);
 *   - the worker, between batches, turns the growth since what it has
 *     accounted into flow-log packets and bytes (flowlog_observe_n), in
 *     each kernel direction as the records of the packets of that
 *     direction would have been, and counts the flow active in its own
 *     table (ct_update: the deadline moves on by the flow's AWS timeout);
 *   - a packet of a registered flow that still comes through the queue
 *     (one queued before the mark took effect, a segment the accept rule
 *     leaves to the queue, any packet once the mark is cleared) is counted
 *     by the flow logs as usual and, the kernel having counted it too,
 *     subtracted from the next growth;
 *   - once vpcfwd's table no longer has the flow (it idled out at its AWS
 *     timeout), the worker asks this module's thread to delete the kernel
 *     entry: the next packet is decided again as a new flow.
 *
 * A flow whose mark disappears without our doing (a reload clears every
 * mark: kct.h) is caught up from the counters the next queued packet of it
 * carries, or by a full dump that offacct_full_round asks for.
 *
 * The worker's side (offacct_note, offacct_flush, offacct_serve) allocates
 * nothing, takes no lock and makes no system call. */
#ifndef VPCFW_OFFACCT_H
#define VPCFW_OFFACCT_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcfw/addr.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/counter.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

struct offacct;
struct offacct_worker;

struct offacct_options {
	int n_workers;
	uint32_t mark;                  /* the offload bit(s): the dump's filter */
	uint32_t flows_per_worker;      /* flows a worker can account for; 0: 65536 */
	uint32_t interval_ms;           /* between dumps; 0: 1000 */
	uint32_t ring;                  /* messages per ring, a power of two; 0: 8192 */
};

/* What the kernel said of one entry (NFQA_CT of a queued packet, or a dump). */
struct offacct_counters {
	uint32_t id;                    /* CTA_ID */
	bool reply;                     /* the packet is in the entry's reply
					   direction (NFQA_CT_INFO); dumps: unused */
	uint64_t packets[2], bytes[2];  /* [0] original, [1] reply direction */
};

/* A kernel entry to delete (its original-direction tuple). */
struct offacct_tuple {
	struct ip_addr src, dst;
	uint16_t sport, dport;          /* ICMP echo: the identifier in both */
	uint8_t family, proto;
};

/* Snapshot of a worker's accounting (counter_t, written by the worker). */
struct offacct_stats {
	uint64_t flows;                 /* registered now */
	uint64_t registered;            /* flows whose accounting started */
	uint64_t refused_full;          /* flows not offloaded: no room to account */
	uint64_t samples;               /* kernel readings applied */
	uint64_t packets, bytes;        /* taken from the kernel into the flow logs */
	uint64_t requeued;              /* packets of registered flows seen on the queue */
	uint64_t kernel_deleted;        /* idled out here: kernel entry deleted */
	uint64_t unmarked;              /* marks gone without us (reload, kernel) */
	uint64_t dumps, dump_errors;    /* the thread's (worker 0's snapshot only) */
	uint64_t delete_errors;
};

/* NULL on ENOMEM.  Starts no thread. */
struct offacct *offacct_create(const struct offacct_options *o);
struct offacct_worker *offacct_worker(struct offacct *a, int index);
/* The dump thread; 0 or an errno. */
int offacct_start(struct offacct *a);
/* Asks for the next round to dump every kernel entry, marked or not (after
 * the marks were cleared: what was bypassed since the last round is caught
 * up from the entries themselves).  Any thread. */
void offacct_full_round(struct offacct *a);
/* Stops the thread.  Then, the workers having stopped too, a last full
 * round is dumped and applied by the caller's thread (offacct_finish), so
 * that flowlog_finish writes everything the kernel counted. */
void offacct_stop(struct offacct *a);
/* After offacct_stop, the workers joined: the last round (every kernel entry
 * we account for, marked or not), applied here; x: one per worker. */
struct offacct_apply;
void offacct_finish(struct offacct *a, const struct offacct_apply *x);
void offacct_destroy(struct offacct *a);

/* ---- the worker's side */

/* Room to start accounting for one more flow in this batch: false means do
 * not offload it (it stays on the queue, exactly logged). */
bool offacct_room(const struct offacct_worker *w);

/* One decided packet whose kernel entry is known (c; NULL: none or no
 * counters).  marked: its verdict sets the offload mark; the flow is then
 * registered, with this packet's counters as the baseline (p and v: the
 * packet and its verdict, the records' template; tracked_a/tracked_b: the
 * interfaces where vpcfwd tracks it, their timeouts).  Otherwise, a
 * registered flow's packet is noted as counted by the flow logs here. */
struct offacct_track {
	uint32_t iface;                 /* ct_id; 0: none */
	struct ct_timeouts to;
};
void offacct_note(struct offacct_worker *w, const struct offacct_counters *c,
		  const struct packet *p, const struct verdict *v, bool marked,
		  const struct offacct_track track[2]);
/* After the batch's verdicts went to the kernel: the batch's new flows are
 * announced to the thread (before, a dump might not find them marked). */
void offacct_flush(struct offacct_worker *w);

/* What offacct_serve needs of the worker. */
struct offacct_apply {
	struct flowlog_worker *flw;     /* NULL: flow logs off */
	const struct policy *pol;       /* in force (the records' interfaces) */
	uint64_t generation;            /* of pol */
	struct conntrack *ct;           /* the worker's table */
	uint64_t now_ns;                /* CLOCK_MONOTONIC (ct's clock) */
	uint64_t wall_ns;               /* Unix time (flow logs) */
};
/* Between batches: applies what the thread read of the kernel. */
void offacct_serve(struct offacct_worker *w, const struct offacct_apply *x);

void offacct_get_stats(const struct offacct *a, int worker, struct offacct_stats *out);

/* ---- tests: the thread's side by hand */

/* Hands worker `worker` one reading as a dump would (false: its ring is
 * full), then (offacct_test_round) the end of a round. */
bool offacct_test_sample(struct offacct *a, int worker, const struct offacct_counters *c);
void offacct_test_round(struct offacct *a);
/* The next request the workers sent the thread: 'R'egister, 'F'orget,
 * 'D'elete (t set), or 0 when none. */
int offacct_test_request(struct offacct *a, int worker, uint32_t *id, struct offacct_tuple *t);

#endif
