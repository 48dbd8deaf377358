/* One worker lane: how a batch of packets is decided and what follows, the
 * same for the daemon's workers (daemon.c), offline replay (replay.c) and a
 * shadow policy (shadow.h), which runs inside the lane; flow-log replay
 * (flowlog_read.c) and vpcfwctl diff (diff.c), which have no hooks, decide
 * through the lane's first two steps alone (lane_decide).
 *
 *   1. parse each packet from its IP header (the link layer's refusal, if
 *      any, is given with it), or take it parsed already;
 *   2. decide the parsed ones together (pipeline_eval_batch); a packet that
 *      did not parse gets pipeline_verdict_unparsed;
 *   3. the shadow policy, if one is loaded, decides the same parsed packets
 *      and notes where it differs;
 *   then, packet by packet in the batch's order, the hooks:
 *   4. refusal capture: the caller's note of a refused packet (vpcfwd: a
 *      line in the worker's refusal ring, logged by the main thread);
 *   5. mirror: the mirroring sessions and the drop capture, with the
 *      policy's verdict;
 *   6. flow log: the verdict enforced (in audit mode a refusal is accepted,
 *      and the flow log records what was done);
 *   7. counters: audit mode's would-refuse count.  (The pipeline counts
 *      verdicts by stage and reason, and the rules' hits, in step 2.)
 *
 * The lane is the packet path: it allocates nothing, takes no lock, makes
 * no system call and never logs; its batch buffers are its own, one lane
 * per worker thread.
 *
 * Steps 1 and 2 (lane_decide.c) are apart from the rest (lane.c), so that
 * what decides offline links none of the hooks' modules (mirror, flow-log
 * writing, shadow). */
#ifndef VPCFW_LANE_H
#define VPCFW_LANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcfw/counter.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/mirror.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"
#include "vpcfw/shadow.h"

enum { LANE_BATCH_MAX = 64 };

/* A packet as it arrived. */
struct lane_packet {
	const struct packet *parsed;    /* not NULL: parsed already (a flow-log
					   record's first packet, a capture record
					   decided by two lanes): step 1 takes it as
					   it is; data is for the mirror only */
	const struct pipeline_located *located; /* with parsed, alone in its batch: located
					   already (pipeline_locate, flow-log replay's
					   records ahead); NULL: located here */
	const uint8_t *data;            /* caplen bytes; NULL (and no parsed): malformed */
	size_t caplen, wirelen;
	size_t ip_off;                  /* where the IP header starts in data */
	enum packet_status link;        /* PACKET_OK, or why the link layer has no IP */
	uint8_t family;                 /* the IP version the link layer announced; 0: none */
	struct pkt_meta meta;           /* the devices (used with lane_batch.devices) */
	uint64_t ts_ns;                 /* Unix time, ns, for mirror copies (replay:
					   the record's, which may run backwards) */
};

/* What the batch is decided under. */
struct lane_batch {
	const struct policy *pol;
	uint64_t generation;            /* of pol (the shadow's report keeps it) */
	struct shadow *shadow;          /* NULL: none */
	bool devices;                   /* meta is known (live); replay: false */
	bool audit;                     /* accept every packet, count the refusals */
	uint64_t now_ns;                /* the pipeline's clock: CLOCK_MONOTONIC, or
					   the record's time in replay */
	uint64_t wall_ns;               /* Unix time, ns, never backwards: flow logs */
};

/* One packet's outcome. */
struct lane_out {
	const struct packet *p;         /* NULL: it did not parse; valid until the next run
					   (the caller's, when given parsed alone) */
	const struct verdict *v;        /* the policy's verdict, as long */
	bool accept;                    /* what to do with it (audit mode: true) */
};

struct lane {
	struct pipeline pl;
	int worker;                     /* this lane's part of a shadow */
	struct mirror_worker *mw;       /* NULL: nothing mirrored or captured */
	struct flowlog_worker *flw;     /* NULL: flow logs off */
	/* refusal capture; NULL: none.  i: the packet's index in the batch;
	 * p: NULL when it did not parse */
	void (*refused)(void *arg, int i, const struct packet *p, const struct verdict *v);
	void *refused_arg;
	counter_t would_refuse;         /* audit mode: refused by the policy, accepted */
	/* the batch being decided */
	struct packet pkts[LANE_BATCH_MAX];
	struct pkt_meta metas[LANE_BATCH_MAX];
	struct verdict vs[LANE_BATCH_MAX];
	struct verdict unparsed[LANE_BATCH_MAX];
	int slot[LANE_BATCH_MAX];       /* packet i's place in pkts; -1: did not parse */
	/* what step 2 decided (the shadow decides it too): n_parsed packets
	 * (pkts, or the one given parsed) and their metas (NULL: none), whose
	 * verdicts are vs */
	const struct packet *decided;
	const struct pkt_meta *decided_metas;
	int n_parsed;
};

/* ct: the worker's flow table; worker: its index (0 for replay). */
void lane_init(struct lane *l, struct conntrack *ct, int worker);

/* Decides n packets (at most LANE_BATCH_MAX) and runs the shadow and the
 * hooks; out[i] is in[i]'s outcome. */
void lane_run(struct lane *l, const struct lane_batch *b, const struct lane_packet *in, int n,
	      struct lane_out *out);

/* Steps 1 and 2 alone: the same decision, no shadow, no hook (the caller
 * has none: flow-log replay, diff).  out[i] as lane_run's. */
void lane_decide(struct lane *l, const struct lane_batch *b, const struct lane_packet *in, int n,
		 struct lane_out *out);

/* Step 1 for one packet: PACKET_OK and *p, or why it did not parse (the
 * link layer's refusal; an IP version other than the link layer said is
 * malformed). */
enum packet_status lane_parse(const struct lane_packet *in, struct packet *p);

#endif
