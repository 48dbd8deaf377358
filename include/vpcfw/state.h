/* The flow table across a restart (issue #13): a state file.
 *
 * On a clean stop (SIGTERM) and every Vpcfw.StateSyncInterval seconds,
 * every worker's flows are written to Vpcfw.StateFile; at start, before any
 * packet is taken, the file is read back and its flows restored to the
 * worker serving the same NFQUEUE queue.
 *
 * Format, version 2 (every integer little-endian):
 *
 *   header, 48 bytes:
 *     0  magic "VPCFWST\0"
 *     8  u32 version (2; version 1 is read too)
 *    12  u32 header size (48)
 *    16  u64 written: CLOCK_REALTIME, ns
 *    24  u32 interfaces in the table
 *    28  u32 zero
 *    32  u64 flows
 *    40  u32 CRC-32 (IEEE) of the body
 *    44  u32 CRC-32 of bytes 0-43
 *   body:
 *     the interface table: per interface u16 length (1-255) + its id
 *       (printable ASCII, no NUL): flows name an interface by its id, not
 *       by a number of this process, so a changed configuration maps them
 *       to the interface of the same id, or drops them if it is gone
 *     the flows, STATE_FLOW_BYTES each:
 *       0 u32 interface (index in the table)   4 u16 NFQUEUE queue
 *       6 u8 protocol   7 u8 TCP state   8 u8 flags (CT_SAVED_*)
 *       9 3 zero bytes  12 u16 source port  14 u16 destination port
 *      16 source address (u64 high, u64 low: 128 bits, IPv4 mapped)
 *      32 destination address   48 u64 deadline: CLOCK_REALTIME, ns
 *      56 CT_SAVED_TCP_BYTES bytes: TCP window tracking
 *     version 2: flow logs in flight, every worker's open capture windows
 *     (flowlog.h, flowlog_foreach_saved):
 *       u32 windows, then per window STATE_FLWIN_BYTES:
 *         0 u16 NFQUEUE queue   2 u8 class (0: 60 s, 1: 600 s)
 *         3 u8 lost slots (0-32)   4 u32 entries
 *         8 u64 start: Unix seconds, a multiple of the class's interval
 *        16 u64 packets lost at interfaces not in the lost slots
 *        then per lost slot u32 interface (index in the table) + u32 packets,
 *        then its entries, STATE_FLENT_BYTES each and a rule's text:
 *         0 u32 interface   4 u8 protocol   5 u8 family (4, 6)
 *         6 u8 bits (FLS_*)   7 u8 TCP flags (as the record has them)
 *         8 u16 source port  10 u16 destination port  12 u8 stage
 *        13 u8 reason  14 u8 rule length (0-95)  15 zero
 *        16 source address  32 destination address  48 u64 packets
 *        56 u64 bytes  64 u32 first  68 u32 last (Unix seconds)
 *        72 the rule (decision log), printable ASCII, no NUL
 *   and nothing after (version 1: nothing after the flows).
 *
 * A file that breaks any of this is refused whole: no flow of it is
 * restored.  So is one written more than STATE_MAX_SKEW_S seconds ahead of
 * the clock, or holding a flow whose deadline lies beyond the longest
 * timeout after the time it was written, or a flow-log window or entry
 * that starts or ends after it (two windows of one queue and class, ports
 * or TCP flags where the protocol has none, more bytes than packets can
 * carry, an unknown stage or reason: refused too). */
#ifndef VPCFW_STATE_H
#define VPCFW_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/counter.h"
#include "vpcfw/flowlog.h"

#define STATE_MAGIC "VPCFWST"   /* and its NUL: 8 bytes */
enum {
	STATE_VERSION = 2,
	STATE_VERSION_NO_FLOWLOG = 1,   /* still read: no flow-log windows */
	STATE_HEADER_BYTES = 48,
	STATE_FLOW_BYTES = 56 + CT_SAVED_TCP_BYTES,
	STATE_FLWIN_BYTES = 24,
	STATE_FLLOST_BYTES = 8,
	STATE_FLENT_BYTES = 72,         /* and the rule's length */
	STATE_FL_MAX_BYTES_PER_PACKET = 65575,  /* an IPv6 datagram, no jumbogram */
	STATE_MAX_SKEW_S = 60,          /* clocks may step back this much */
	STATE_MAX_LIFETIME_S = 432000,  /* the longest timeout (TCP established, AWS's maximum) */
	STATE_MAX_IFACES = 1 << 20,
	STATE_IFACE_ID_MAX = 255,
};

/* A flow in a state file: s.deadline_ns on CLOCK_REALTIME; s.iface unused. */
struct state_flow {
	uint32_t iface_ref;             /* index in the interface table */
	uint16_t queue;                 /* NFQUEUE queue of the worker holding it */
	struct ct_saved s;
};

/* Whether a saved flow's protocol, TCP state and flags go together (the
 * state file's and the sync messages' test of a flow). */
bool state_flow_valid(const struct ct_saved *s);

/* A worker's open flow-log capture window in a state file: its lost[].iface
 * and its entries' iface are indexes in the interface table. */
struct state_flwin {
	uint16_t queue;                 /* NFQUEUE queue of the worker holding it */
	struct flowlog_saved_window w;
	size_t first, n;                /* its entries: flents[first .. first + n) */
};

/* A decoded file. */
struct state_image {
	uint32_t version;
	uint64_t written_ns;            /* CLOCK_REALTIME */
	char **ifaces;
	uint32_t n_ifaces;
	struct state_flow *flows;
	size_t n_flows;
	struct state_flwin *flwins;     /* version 2 */
	size_t n_flwins;
	struct flowlog_saved_entry *flents;
	size_t n_flents;
};

/* One worker's flows, collected by that worker between two batches
 * (state_part_add is the ct_foreach_saved callback), written by another
 * thread after it has handed them over. */
struct state_part {
	uint16_t queue;
	const uint32_t *ref_of;         /* conntrack iface id -> interface table index */
	uint32_t n_ref_of;              /* ... for ids below this; UINT32_MAX: not listed */
	uint64_t mono_ns, wall_ns;      /* the clocks when collected */
	struct state_flow *flows;
	size_t n, cap;
	bool oom;
	uint64_t unlisted;              /* flows of interfaces not in the table */
	/* the worker's open flow-log windows (flowlog_foreach_saved) */
	struct state_flwin *flwins;
	size_t n_flwins, cap_flwins;
	struct flowlog_saved_entry *flents;
	size_t n_flents, cap_flents;
	uint64_t fl_unlisted;           /* entries of interfaces not in the table */
};

int state_part_add(const struct ct_saved *s, void *part);
/* The flowlog_foreach_saved callback: a window (e NULL), then its entries. */
int state_part_add_flowlog(void *part, const struct flowlog_saved_window *win,
			   const struct flowlog_saved_entry *e);
void state_part_reset(struct state_part *p);    /* empties it, keeps the memory */
void state_part_free(struct state_part *p);

/* The bytes of a state file: the interface table and every part's flows.
 * NULL on ENOMEM (or more than STATE_MAX_IFACES interfaces). */
uint8_t *state_encode(uint64_t written_ns, const char *const *ifaces, uint32_t n_ifaces,
		      const struct state_part *parts, size_t n_parts, size_t *len);

/* Decodes buf; 0, or -1 with what is wrong in err (nothing allocated). */
int state_decode(const uint8_t *buf, size_t len, uint64_t now_wall_ns, struct state_image *out,
		 char *err, size_t errlen);
void state_image_free(struct state_image *img);

/* What a restore did, per flow of the file. */
struct state_restore_stats {
	uint64_t restored;
	uint64_t expired;               /* its deadline passed during the downtime */
	uint64_t unknown_iface;         /* its interface is not in the configuration now */
	uint64_t no_queue;              /* no worker serves its queue now */
	uint64_t duplicate;             /* already tracked */
	uint64_t table_full;
};

/* Restores the image's flows: iface_of maps an interface id to the
 * conntrack id of the configuration in force (false: no such interface),
 * table_of a queue to the table of the worker serving it (NULL: none). */
void state_restore(const struct state_image *img, uint64_t now_wall_ns, uint64_t now_mono_ns,
		   bool (*iface_of)(void *arg, const char *id, uint32_t *ct_id),
		   struct conntrack *(*table_of)(void *arg, uint16_t queue), void *arg,
		   struct state_restore_stats *st);

/* What a restore did with the flow-log windows of a file. */
struct state_fl_restore_stats {
	struct flowlog_restore_stats fl;        /* flowlog_restore's */
	uint64_t unknown_iface;         /* entries of interfaces not in the configuration now */
	uint64_t no_queue;              /* entries of queues no worker serves now */
	uint64_t off;                   /* entries found with flow logs off */
};

/* Restores the image's flow-log windows (flowlog_restore) into the worker
 * serving the same queue: worker_of maps a queue to it (NULL: none, or
 * flow logs off when flow_logs_on is false), iface_of as for state_restore. */
void state_restore_flowlog(const struct state_image *img, uint64_t now_wall_ns, bool flow_logs_on,
			   bool (*iface_of)(void *arg, const char *id, uint32_t *ct_id),
			   struct flowlog_worker *(*worker_of)(void *arg, uint16_t queue), void *arg,
			   struct state_fl_restore_stats *st);

/* Reads a whole file (at most STATE_MAX_FILE_BYTES); 0, 1 if there is none
 * (ENOENT), -1 with a message in err. */
#define STATE_MAX_FILE_BYTES ((size_t)8 << 30)
int state_read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen);

/* Writes buf to path: PATH.tmp created (O_EXCL|O_NOFOLLOW, mode 0600)
 * beside it, fsync'ed, renamed over path, the directory fsync'ed.  0, or -1
 * with a message in err.  A PATH.tmp left by a crash is removed first. */
int state_write_file(const char *path, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* CRC-32 (IEEE 802.3): zlib's crc32_z. */
uint32_t state_crc32(uint32_t crc, const uint8_t *p, size_t n);

/* What status and metrics show (written by the main thread). */
struct state_counters {
	counter_t enabled;              /* 1: StateFile set */
	counter_t written_ns;           /* CLOCK_REALTIME of the newest file (written or restored); 0 none */
	counter_t writes, write_errors;
	counter_t last_flows;           /* flows in the last file written */
	counter_t refused;              /* 1: the file found at start was refused */
	counter_t restored, dropped_expired, dropped_unknown_iface, dropped_other;
	counter_t last_fl_entries;      /* flow-log entries in the last file written */
	counter_t fl_restored;          /* flow-log entries restored at start */
	counter_t fl_dropped;           /* ... dropped (interface or queue gone, not logged) */
};

#endif
