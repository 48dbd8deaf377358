/* Offloaded flows' accounting and idle timeouts (issue #16).
 *
 * An offloaded flow's packets after its mark never reach vpcfwd: the kernel
 * accepts them.  Two things still need them: the flow logs (packets, bytes
 * per capture window) and vpcfwd's own flow table (the flow's last
 * activity, so that it idles out at AWS's timeout and not before).  Both
 * come from the kernel's conntrack accounting (net.netfilter.nf_conntrack_acct):
 *
 *   - a flow is offered for offload (it is offloadable) and this module
 *     starts accounting for it: its thread reads the kernel entry's counters
 *     (a ctnetlink get) — the baseline — between two readings of the
 *     NFQUEUE packet id the queue had reached: a packet queued by the first
 *     is in the baseline, one queued after the second is not, and a flow
 *     with a packet queued in between has its baseline read again (the
 *     kernel counts before it queues, so nothing else tells); every packet
 *     the kernel counted up to the baseline came through the queue and is
 *     in the flow logs already.  The flow is
 *     marked only once the baseline is known (the next offloadable packet:
 *     offacct_note says when);
 *   - the thread dumps, every interval, the kernel entries that have the
 *     offload mark (a dump the kernel filters on the mark) and hands each
 *     one's counters to the worker accounting for it, through a bounded
 *     single-producer ring (no lock on the packet path);
 *   - the worker, between batches, turns the growth since what it has
 *     accounted into flow-log packets and bytes (flowlog_observe_n), in
 *     each kernel direction as the records of that direction's packets
 *     would have been, and counts the flow active in its own table
 *     (ct_update: the deadline moves on by the flow's AWS timeout);
 *   - a packet of the flow that still comes through the queue after the
 *     baseline (one in flight when the mark was set, any packet once the
 *     mark is cleared) is counted by the flow logs as usual and, the kernel
 *     having counted it too, subtracted from the next growth;
 *   - once vpcfwd's table no longer has the flow (it idled out at its AWS
 *     timeout), the worker asks the thread to delete the kernel entry: the
 *     next packet is decided again as a new flow.
 *
 * A flow whose mark disappears (a reload takes every flow back: kct.h) is
 * caught up by a dump of every entry, marked or not, that
 * offacct_full_round asks for, and then left to the queue.
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
	/* The last packet id worker i's queue has given (nfqueue_kernel_stats);
	 * NULL or false: unknown (then every packet before the baseline's
	 * reply is taken as counted in it). */
	bool (*queue_seq)(void *arg, int worker, uint32_t *id);
	void *queue_seq_arg;
};

/* What the kernel said of one entry. */
struct offacct_counters {
	uint32_t id;                    /* CTA_ID */
	uint64_t packets[2], bytes[2];  /* [0] original, [1] reply direction */
};

/* A kernel entry's original-direction tuple. */
struct offacct_tuple {
	struct ip_addr src, dst;
	uint16_t sport, dport;          /* ICMP echo: the identifier in both */
	uint8_t family, proto;
};

/* Snapshot of a worker's accounting (counter_t, written by the worker). */
struct offacct_stats {
	uint64_t flows;                 /* accounted for now */
	uint64_t registered;            /* flows marked with a baseline */
	uint64_t refused_full;          /* offloadable, not offloaded: no room */
	uint64_t baselines, baseline_failures;
	uint64_t samples;               /* kernel readings applied */
	uint64_t packets, bytes;        /* taken from the kernel into the flow logs */
	uint64_t requeued;              /* packets after a baseline seen on the queue */
	uint64_t kernel_deleted;        /* idled out here: kernel entry deleted */
	uint64_t unmarked;              /* marks gone without us (reload, kernel) */
	uint64_t dumps, dump_errors;    /* the thread's (worker 0's snapshot only) */
	uint64_t delete_errors;
	uint64_t noentry;               /* offloadable packets of flows with no kernel
					   entry (none at their baseline's reading):
					   not marked, kept on the queue */
	uint64_t replaced;              /* marked flows whose kernel entry a whole
					   dump did not find (gone, or a new
					   connection of the tuple): let go, a new
					   baseline before any mark */
};

/* NULL on ENOMEM.  Starts no thread. */
struct offacct *offacct_create(const struct offacct_options *o);
struct offacct_worker *offacct_worker(struct offacct *a, int index);
/* The thread (needs CAP_NET_ADMIN); 0 or an errno. */
int offacct_start(struct offacct *a);
/* Asks for the next round to dump every kernel entry, marked or not: after
 * the marks were cleared, what was bypassed since the last round is caught
 * up from the entries themselves.  Any thread. */
void offacct_full_round(struct offacct *a);
/* Stops the thread. */
void offacct_stop(struct offacct *a);
/* After the workers stopped: a last full round, applied by the caller's
 * thread, so that flowlog_finish writes everything the kernel counted;
 * x: one per worker. */
struct offacct_apply;
void offacct_finish(struct offacct *a, const struct offacct_apply *x);
void offacct_destroy(struct offacct *a);

/* ---- the worker's side */

/* Where vpcfwd tracks a flow: the interface (ct_id; 0: not there) and its
 * timeouts. */
struct offacct_track {
	uint32_t iface;
	struct ct_timeouts to;
};

/* One decided packet of a tracked flow (p, v; pkt_id: its NFQUEUE id).  A
 * packet of a flow accounted for is noted (after the baseline: the kernel
 * counted it too).  offloadable: the verdict would leave the flow to the
 * kernel; returns true if it may be marked now (its baseline is known),
 * false while the baseline is being read (the first offloadable packet
 * asks for it), without room, or when the kernel has no entry for the flow
 * (stats: noentry; asked again a second later).  track: where vpcfwd tracks the flow;
 * generation: of the policy v is of. */
bool offacct_note(struct offacct_worker *w, const struct packet *p, const struct verdict *v,
		  uint32_t pkt_id, bool offloadable, const struct offacct_track track[2],
		  uint64_t generation, uint64_t now_ns);
/* After the batch's verdicts went to the kernel: the batch's marks are
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

/* The next request a worker sent the thread: 'G'et a baseline (handle, t:
 * the packet's tuple), 'C'heck a lost flow's entry (the same), 'R'egistered
 * (marked), 'F'orget, 'D'elete (t: the
 * original tuple); 0 when none. */
int offacct_test_request(struct offacct *a, int worker, uint32_t *handle, uint32_t *id,
			 struct offacct_tuple *t);
/* Answers a 'G': c NULL: no such kernel entry; orig: the entry's original
 * tuple; lo, hi: the queue's last packet id just before and just after it
 * was read. */
bool offacct_test_baseline(struct offacct *a, int worker, uint32_t handle,
			   const struct offacct_counters *c, const struct offacct_tuple *orig,
			   uint32_t lo, uint32_t hi);
/* Answers a 'C' (a lost flow's check): c NULL: no entry of its tuple. */
bool offacct_test_check(struct offacct *a, int worker, uint32_t handle,
			const struct offacct_counters *c, bool marked);
/* A reading of entry c->id as a dump gives it; then the end of a round
 * (full: of a dump of every entry, marked or not). */
bool offacct_test_sample(struct offacct *a, int worker, const struct offacct_counters *c,
			 bool marked);
void offacct_test_round(struct offacct *a, bool full);

#endif
