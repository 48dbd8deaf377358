/* The HA pair's sync engine (issue #13 item 2): flow-table changes to and
 * from the peer gateway, in the messages of sync.h.
 *
 *   worker (packet path)              sync thread                 peer
 *   conntrack journal ──► out ring ──► batches, HMAC, UDP ───────► ...
 *   drains between batches ◄── in ring ◄── authenticated, window ◄── ...
 *
 * - Each worker's table tells its changes (ct_set_journal) into the
 *   worker's own bounded single-producer ring: never blocking, never
 *   allocating; when the ring is full the change is counted as lost.
 * - The sync thread drains the rings every few milliseconds, names each
 *   flow's interface by its id, puts the flows' remaining lifetimes in
 *   messages of at most MessageBytes and sends them to the peer.
 * - What the peer sends is authenticated, checked against the replay
 *   window, mapped to this configuration's interfaces and handed to the
 *   worker of the flow's queue through that worker's second ring; the
 *   worker applies it to its own table (tables have one writer) between two
 *   batches (ct_sync_apply / ct_sync_forget).
 * - At start the engine asks the peer for its whole table (bulk sync: the
 *   peer's workers copy their tables between batches, as for a state-file
 *   snapshot) and is "ready" once the last part came, or once the peer did
 *   not answer for BULK_WAIT_S seconds (alone: nothing to learn).
 * - Every second a hello tells the peer this side's state. */
#ifndef VPCFW_HA_H
#define VPCFW_HA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/counter.h"
#include "vpcfw/sync.h"

struct m_sync;
struct policy;

enum {
	HA_FLUSH_MS = 5,                /* changes wait at most this long for company */
	HA_HELLO_MS = 1000,
	HA_PEER_DEAD_MS = 3500,         /* no message for this long: the peer is down */
	HA_BULK_RETRY_MS = 1000,        /* a bulk request unanswered: asked again */
	HA_BULK_WAIT_S = 5,             /* ... and after this long, ready without */
	HA_DELETE_SLACK_MS = 2000,      /* ct_sync_forget's slack */
};

/* A single-producer single-consumer ring of fixed-size elements. */
struct ha_ring {
	uint8_t *slots;
	size_t size, esize;             /* size: a power of two */
	_Atomic size_t head, tail;      /* head: the producer's, tail: the consumer's */
};
int ha_ring_init(struct ha_ring *r, size_t entries, size_t esize);
void ha_ring_free(struct ha_ring *r);
bool ha_ring_push(struct ha_ring *r, const void *e);
bool ha_ring_pop(struct ha_ring *r, void *e);

/* A change of a worker's table: s.iface the conntrack id, s.deadline_ns on
 * the monotonic clock. */
struct ha_change {
	struct ct_saved s;
	uint64_t at_ns;                 /* when it happened (monotonic) */
	uint8_t op;                     /* SYNC_OP_* */
};

/* A change from the peer for a worker: s.iface the conntrack id,
 * s.deadline_ns the remaining lifetime. */
struct ha_apply {
	struct ct_saved s;
	uint8_t op;
};

/* One worker's side. */
struct ha_worker {
	uint16_t queue;                 /* its NFQUEUE queue number */
	struct ha_ring out, in;
	/* the worker's counters */
	counter_t lost;                 /* changes not queued: the ring was full */
	counter_t applied, apply_failed;/* the peer's changes applied / not (table full, invalid) */
	/* a bulk copy: 1 asked (sync thread), 2 done (worker), 0 idle */
	_Atomic int bulk_req;
	struct ct_saved *bulk;          /* deadline_ns: remaining lifetime */
	size_t n_bulk, cap_bulk;
	bool bulk_oom;
};

int ha_worker_init(struct ha_worker *hw, uint16_t queue, size_t entries);
void ha_worker_free(struct ha_worker *hw);
/* The conntrack journal (ct_set_journal's fn; arg: the ha_worker). */
void ha_journal(void *arg, const struct ct_saved *s, enum ct_change what);
/* Between two batches, on the worker: applies what the peer sent (at most
 * max changes) and serves a bulk copy asked for.  Returns the changes
 * applied. */
size_t ha_worker_serve(struct ha_worker *hw, struct conntrack *ct, uint64_t now_ns, size_t max);

/* The policy in force, pinned while the sync thread maps interface ids
 * (the daemon's reload waits for leave). */
struct ha_hooks {
	const struct policy *(*enter)(void *arg, uint64_t *generation);
	void (*leave)(void *arg);
	void *arg;
};

enum ha_bulk_state {
	HA_BULK_WAITING = 0,            /* asked the peer, no answer yet */
	HA_BULK_RECEIVING,
	HA_BULK_DONE,                   /* the peer's whole table came */
	HA_BULK_ALONE,                  /* no answer within HA_BULK_WAIT_S: ready without */
};

/* What status and metrics show (one writer: the sync thread). */
struct ha_counters {
	counter_t node_id, peer_node;
	counter_t ready;                /* 1: bulk sync done or given up (alone) */
	counter_t bulk_state;           /* enum ha_bulk_state */
	counter_t bulk_received, bulk_total, bulk_ms; /* the last bulk sync from the peer */
	counter_t bulk_served, bulk_served_flows;     /* bulk syncs given to the peer */
	counter_t peer_epoch, peer_ready;
	counter_t peer_heard_ns;        /* monotonic; 0: never */
	counter_t lag_us;               /* the last update's queueing at the sender */
	counter_t msgs_sent, bytes_sent, records_sent, send_errors;
	counter_t msgs_received, bytes_received, records_received;
	counter_t dropped[SYNC_DROP_NREASONS];  /* messages, by reason */
	counter_t records_unknown_iface, records_no_queue, records_overflow;
	counter_t coalesced;            /* changes that replaced the same flow's in a message */
};

/* The sum of the counters, for a reader. */
struct ha_status {
	bool enabled, ready, peer_up, peer_ready;
	uint32_t node_id, peer_node;
	enum ha_bulk_state bulk_state;
	uint64_t bulk_received, bulk_total, bulk_ms, bulk_served, bulk_served_flows;
	int64_t peer_heard_ms;          /* -1: never */
	uint64_t lag_us;
	uint64_t msgs_sent, bytes_sent, records_sent, send_errors;
	uint64_t msgs_received, bytes_received, records_received;
	uint64_t dropped[SYNC_DROP_NREASONS];
	uint64_t records_unknown_iface, records_no_queue, records_overflow;
	uint64_t changes_lost, applied, apply_failed;   /* the workers' */
	uint64_t coalesced;
};

struct ha;

/* Reads the key and opens the socket (with the privileges of the start):
 * NULL with a message in err.  ha_run starts the sync thread (0, or an
 * errno value).  cfg is copied; its strings are not kept. */
struct ha *ha_open(const struct m_sync *cfg, struct ha_worker *workers, int n_workers,
		   const struct ha_hooks *hooks, char *err, size_t errlen);
int ha_run(struct ha *h);
void ha_stop(struct ha *h);
void ha_read(const struct ha *h, struct ha_status *out);
const char *ha_bulk_state_name(enum ha_bulk_state s);

#endif
