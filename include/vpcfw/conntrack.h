/* Connection tracking: the flow table of one worker (a shard; no locks).
 *
 * A flow is tracked *at an interface*: a packet admitted by interface X's
 * security group starts a flow at X, and later packets of it, in either
 * direction, skip X's security group (SPEC §4).  The key is therefore
 * (interface ct_id, unordered 5-tuple).  All memory is allocated by
 * ct_create(); nothing is allocated per packet.  The table never grows: when
 * full, a new flow is refused and counted (conntrack_allowance_exceeded),
 * except that embryonic TCP flows (SYN-sent/-received) are evicted, oldest
 * first, to make room. */
#ifndef VPCFW_CONNTRACK_H
#define VPCFW_CONNTRACK_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcfw/addr.h"

struct conntrack;
struct ct_entry;

/* A packet's tuple as seen on the wire.  For ICMP queries and their replies
 * sport = dport = the identifier; for protocols without ports both are 0. */
struct ct_tuple {
	struct ip_addr src, dst;
	uint16_t sport, dport;
	uint8_t proto;
};

/* Idle timeouts of the interface that tracks the flow, in seconds
 * (ConnectionTrackingConfiguration; AWS defaults 432000 / 30 / 180). */
struct ct_timeouts {
	uint32_t tcp_established;
	uint32_t udp;
	uint32_t udp_stream;
};

/* Linux nf_conntrack defaults for what AWS does not document (SPEC §4). */
enum {
	CT_TIMEOUT_TCP_SYN_SENT = 120,
	CT_TIMEOUT_TCP_SYN_RECV = 60,
	CT_TIMEOUT_TCP_FIN_WAIT = 120,
	CT_TIMEOUT_TCP_CLOSE_WAIT = 60,
	CT_TIMEOUT_TCP_LAST_ACK = 30,
	CT_TIMEOUT_TCP_TIME_WAIT = 120,
	CT_TIMEOUT_TCP_CLOSE = 10,
	CT_TIMEOUT_ICMP = 30,
	CT_TIMEOUT_OTHER = 600,
	CT_DEFAULT_TCP_ESTABLISHED = 432000,
	CT_DEFAULT_UDP = 30,
	CT_DEFAULT_UDP_STREAM = 180,
};

enum ct_tcp_state {
	CT_TCP_NONE = 0,          /* not TCP */
	CT_TCP_SYN_SENT,
	CT_TCP_SYN_RECV,
	CT_TCP_ESTABLISHED,
	CT_TCP_FIN_WAIT,
	CT_TCP_CLOSE_WAIT,
	CT_TCP_LAST_ACK,
	CT_TCP_TIME_WAIT,
	CT_TCP_CLOSE,
};

struct ct_stats {
	uint64_t used;                  /* flows in the table now */
	uint64_t max;                   /* the table's hard limit */
	uint64_t inserted;
	uint64_t expired;
	uint64_t allowance_exceeded;    /* new flows refused: table full */
	uint64_t evicted_embryonic;     /* SYN-sent/-received flows evicted for room */
	uint64_t tcp_invalid;           /* TCP segments outside the flow's windows: dropped */
	uint64_t tcp_rst_ignored;       /* RSTs in the window but not at the expected
	                                   sequence number: passed on, flow kept */
	uint64_t source_rate_exceeded;  /* new flows refused: the source's rate
	                                   (Vpcfw.PerSourceNewFlowsPerSecond) */
	uint64_t source_share_exceeded; /* new flows refused: the source's share of
	                                   the table (Vpcfw.PerSourceConntrackPercent) */
};

/* What TCP window tracking needs of a segment (SPEC §4; Linux nf_conntrack's
 * tcp_in_window). */
struct ct_tcp_seg {
	uint32_t seq, ack;
	uint32_t len;                   /* payload bytes */
	uint16_t win;                   /* the window field, unscaled */
	uint8_t flags;                  /* TCP_* */
	uint8_t wscale;                 /* a SYN's window-scale option (0-14),
	                                   TCP_WSCALE_NONE, or CT_WSCALE_UNKNOWN */
	bool be_liberal;                /* Vpcfw.TcpBeLiberal */
};

/* wscale of a SYN whose options could not be read: the largest scale is
 * assumed (generous windows, still bounded). */
enum { CT_WSCALE_UNKNOWN = 0xfe };

/* How a segment of a tracked TCP flow fits its windows. */
enum ct_tcp_verdict {
	CT_TCP_OK = 0,          /* in the windows: the flow advances */
	CT_TCP_IGNORE,          /* passed on, the flow unchanged: a RST in the
	                           window but not at the expected sequence number
	                           (RFC 5961 3.2: the host answers it with a
	                           challenge ACK), a SYN on an established flow */
	CT_TCP_INVALID,         /* outside the windows: dropped, the flow unchanged */
};

/* Allocates a table for at most max flows (max >= 1). NULL on ENOMEM. */
struct conntrack *ct_create(uint32_t max);
void ct_destroy(struct conntrack *ct);

/* Direction-independent hash of the tuple: the same for a packet and its
 * reply.  Computed once per packet and passed to the calls below.  Keyed by
 * a random secret chosen at program start, so bucket placement (and the
 * order ct_foreach lists flows in) differs from run to run. */
uint64_t ct_hash(const struct ct_tuple *t);

/* Finds the live flow of this tuple tracked at interface `iface`, or NULL.
 * An entry found expired (now_ns past its deadline) is freed and NULL is
 * returned.  Does not change the entry. */
struct ct_entry *ct_lookup(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			   uint64_t hash, uint64_t now_ns);

/* Optional, for batches: a lookup of (iface, hash) follows soon.  A lookup
 * waits on two cache misses, the bucket and then the entry; a batch can
 * overlap them.  First call with entry = false for every packet (loads the
 * bucket), then with entry = true for every packet (loads the bucket's first
 * flow), then look up. */
void ct_prefetch(const struct conntrack *ct, uint32_t iface, uint64_t hash, bool entry);

/* Records an accepted packet of a tracked flow: advances the TCP state
 * machine (or the UDP stream flag) and pushes the deadline out by the
 * timeout of the new state.  TCP by its flags alone, the windows untouched:
 * for segments whose sequence numbers are unknown (fragments, tests); the
 * packet path uses ct_update_seg. */
void ct_update(struct conntrack *ct, struct ct_entry *e, const struct ct_tuple *t,
	       uint8_t tcp_flags, const struct ct_timeouts *to, uint64_t now_ns);

/* Window tracking, as Linux nf_conntrack's tcp_in_window (SPEC §4).  Each
 * direction keeps the highest sequence number sent (end), the highest the
 * other side's acknowledgements and windows allow (maxend), the largest
 * window it advertised (maxwin), the highest acknowledgement it sent, and
 * its window scale (from the SYNs: RFC 7323, both must offer it).  A
 * segment is in the windows when its sequence number is at most maxend, its
 * end is within the receiver's largest window below the highest sent, and
 * its acknowledgement neither acknowledges unsent data nor lags more than
 * max(window, 66000) behind.  A flow first seen mid-stream learns its
 * windows from the first segment of each direction and, never having seen
 * the scale options, assumes the largest scale (14).
 *
 * ct_tcp_check says how the segment fits, changing nothing (a tracked flow
 * may still be refused by a later stage); ct_update_seg applies it (the
 * same verdict, recomputed), and ct_insert_seg starts a flow with it.  With
 * be_liberal (Linux's nf_conntrack_tcp_be_liberal) only RSTs are refused
 * for being out of window; other segments pass without moving the windows.
 * A RST in the window ends an established flow only at the expected
 * sequence number (the receiver's highest acknowledgement, or the sender's
 * next sequence number); other RSTs are CT_TCP_IGNORE.  Fragmented segments
 * (seg NULL) are not window-checked, and a RST among them ends nothing. */
enum ct_tcp_verdict ct_tcp_check(const struct conntrack *ct, const struct ct_entry *e,
				 const struct ct_tuple *t, const struct ct_tcp_seg *seg);
enum ct_tcp_verdict ct_update_seg(struct conntrack *ct, struct ct_entry *e,
				  const struct ct_tuple *t, const struct ct_tcp_seg *seg,
				  const struct ct_timeouts *to, uint64_t now_ns);
struct ct_entry *ct_insert_seg(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			       uint64_t hash, const struct ct_tcp_seg *seg,
			       const struct ct_timeouts *to, uint64_t now_ns);
/* Counts a TCP verdict in the stats (once per packet: the caller knows). */
void ct_count_tcp(struct conntrack *ct, enum ct_tcp_verdict v);

/* Starts a flow at `iface` for this accepted packet (the packet's source is
 * the originator).  Returns NULL if the table is full and no embryonic flow
 * could be evicted; that refusal is counted in allowance_exceeded.  A full
 * table first reclaims expired flows from a bounded sweep.  If the flow is
 * already tracked, it is updated as by ct_update and returned.  A TCP flow
 * started so (flags only: seeding a new configuration's table) learns its
 * windows from its next segments, as a flow picked up mid-stream does. */
struct ct_entry *ct_insert(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t,
			   uint64_t hash, uint8_t tcp_flags, const struct ct_timeouts *to,
			   uint64_t now_ns);

/* Flood fairness (beyond AWS, off by default; Vpcfw.PerSource*): a cap on
 * the new tracked flows one source starts per second, and on the share of
 * the table its flows hold.
 *
 * A source is the packet's source address; an IPv6 source is cut to
 * v6_prefix bits first (128: the address itself), so that a host owning a
 * prefix can be counted as one.  Sources are counted in a fixed array of
 * buckets allocated by ct_create() (a power of two, max/4 clamped to
 * 256..262144: 16 bytes each), each source in two buckets chosen by a keyed hash: a
 * count-min sketch.  A bucket counts every source that falls in it, so a
 * source's count is never below its own: the approximation can only refuse
 * more (an innocent source whose two buckets are both shared with heavy
 * ones), never admit more than the limits.  Per bucket: the flows it holds
 * and, for the rate, a GCRA (virtual scheduling) deadline.
 *
 * Every flow in the table is charged to its originator's buckets whether
 * fairness is on or not (so that turning it on by a reload counts the flows
 * already there); a flow keeps the charge it was given until it is freed.
 * The limits are per worker: the share is of this worker's table, and a
 * source whose flows spread over W queues may start up to W times the rate
 * in all. */
struct ct_fairness {
	uint32_t rate;                  /* new flows per second per source; 0: no cap */
	uint32_t burst;                 /* flows at once above the rate; 0: = rate */
	uint32_t share_pct;             /* % of the table one source may hold; 0: no cap */
	uint8_t v6_prefix;              /* bits of an IPv6 source that name it (1-128) */
};

enum ct_source_verdict {
	CT_SOURCE_OK = 0,
	CT_SOURCE_RATE,                 /* over its rate: refuse (counted) */
	CT_SOURCE_SHARE,                /* at its share of the table: refuse (counted) */
};

/* May `src` start a new tracked flow that takes `slots` entries (one per
 * interface that tracks it)?  Refusals are counted (source_rate_exceeded,
 * source_share_exceeded); an admission takes one flow from the source's
 * rate.  A source holding no flow may always start one (its share is at
 * least one flow, however small the table).  At its share, expired flows
 * are first reclaimed from a bounded sweep (they count until freed; the
 * workers' sweep frees them within seconds).  With f NULL or both limits 0:
 * CT_SOURCE_OK, nothing counted. */
enum ct_source_verdict ct_source_admit(struct conntrack *ct, const struct ct_fairness *f,
				       const struct ip_addr *src, unsigned slots,
				       uint64_t now_ns);
/* Flows charged to src's buckets now (the smaller of its two; tests). */
uint32_t ct_source_flows(const struct conntrack *ct, const struct ct_fairness *f,
			 const struct ip_addr *src);

/* Forgets a flow (used to roll back a half-made insertion). */
void ct_remove(struct conntrack *ct, struct ct_entry *e);

/* Frees expired flows, visiting at most `budget` hash buckets from where
 * the previous call stopped: expiry in bounded slices.  Returns the number
 * of flows freed. */
unsigned ct_expire(struct conntrack *ct, uint64_t now_ns, unsigned budget);

void ct_get_stats(const struct conntrack *ct, struct ct_stats *out);
/* Free room: max - used (AWS's conntrack_allowance_available). */
uint64_t ct_available(const struct conntrack *ct);

/* Read access for listing flows (vpcfwctl flows) and tests. */
struct ct_flow_info {
	uint32_t iface;
	struct ct_tuple orig;           /* as the originator sent it */
	enum ct_tcp_state tcp_state;
	bool seen_reply;
	bool udp_stream;
	uint64_t expires_ns;
};
void ct_entry_info(const struct ct_entry *e, struct ct_flow_info *out);

/* The offload (issue #16): the kernel passes an offloaded flow's further
 * packets itself.  A flow may be offloaded once established both ways: TCP
 * in CT_TCP_ESTABLISHED (the handshake's reply seen and acknowledged),
 * other protocols once a reply was admitted (SPEC §4).  The table notes,
 * beside the entry (8 bytes a flow), which flows were offloaded, when (the
 * caller's clock in ms, wrapping) and their kernel conntrack id where the
 * kernel told it (0: unknown); a freed flow, a restored or synced one is
 * not offloaded.  Until it is, the same 8 bytes count the flow's
 * offloadable packets (Vpcfw.OffloadAfterPackets: short flows are never
 * offered); a flow taken back (ct_clear_offloaded, _all) keeps a saturated
 * count. */
bool ct_offloadable(const struct ct_entry *e);
void ct_set_offloaded(struct conntrack *ct, struct ct_entry *e, uint32_t kct_id, uint32_t at_ms);
void ct_clear_offloaded(struct conntrack *ct, struct ct_entry *e);
/* Counts one offloadable packet of e; returns the count so far, this one
 * included (saturating at UINT32_MAX; UINT32_MAX too if e is offloaded). */
uint32_t ct_offload_count(struct conntrack *ct, struct ct_entry *e);
/* True if offloaded; *kct_id and *at_ms (each may be NULL) as set (0 if
 * not offloaded). */
bool ct_offloaded(const struct conntrack *ct, const struct ct_entry *e, uint32_t *kct_id,
		  uint32_t *at_ms);
/* Every flow taken back (the kernel's marks were cleared): the number that
 * were offloaded.  An offloaded TCP flow's windows moved in the kernel
 * unseen: they are learnt again from its next segments, as for a flow
 * picked up mid-stream.  The owning worker's call, like every other. */
uint64_t ct_clear_offloaded_all(struct conntrack *ct);
/* Calls fn for every live flow; stops early if fn returns non-zero. */
void ct_foreach(struct conntrack *ct, uint64_t now_ns,
		int (*fn)(const struct ct_flow_info *info, void *arg), void *arg);

/* A flow as saved across a restart (state.c): everything its entry holds
 * but the table's links.  deadline_ns is on the same clock as now_ns.  The
 * TCP bytes are the flow's window tracking as conntrack.c lays it out
 * (opaque to the state file; all zeros: nothing known, the windows are
 * learnt from the next segments as for a flow picked up mid-stream). */
enum {
	CT_SAVED_SEEN_REPLY = 1 << 0,
	CT_SAVED_UDP_STREAM = 1 << 1,
	CT_SAVED_FIN_REPLY = 1 << 2,    /* the first FIN came from the reply side */
	CT_SAVED_PICKUP = 1 << 3,       /* started mid-stream, unconfirmed */
	CT_SAVED_FLAGS = 0x0f,          /* every flag a saved flow may carry */
	CT_SAVED_TCP_BYTES = 40,
};

struct ct_saved {
	uint32_t iface;
	struct ct_tuple orig;           /* as the originator sent it */
	uint8_t tcp_state;              /* enum ct_tcp_state; CT_TCP_NONE unless TCP */
	uint8_t flags;                  /* CT_SAVED_* */
	uint64_t deadline_ns;
	uint8_t tcp[CT_SAVED_TCP_BYTES];
};

/* Calls fn for every live flow with all it holds; stops early if fn returns
 * non-zero. */
void ct_foreach_saved(struct conntrack *ct, uint64_t now_ns,
		      int (*fn)(const struct ct_saved *s, void *arg), void *arg);

/* Puts a saved flow back (a restart): its state, flags and deadline as
 * saved.  0 on success; -1 if it is not a valid flow (a TCP state for
 * another protocol, unknown flags, deadline not after now_ns), -2 if it is
 * already tracked, -3 if the table is full (counted in allowance_exceeded). */
int ct_restore(struct conntrack *ct, const struct ct_saved *s, uint64_t now_ns);

/* The change journal (HA sync, include/vpcfw/sync.h): fn is called by the
 * owning worker, inside the call that changed the table, with the flow as
 * ct_foreach_saved gives it (deadline_ns on the table's clock):
 * CT_CHANGE_UPSERT when a flow is created, when its TCP state or flags
 * change, and when its deadline has moved so far that the copy last told
 * would keep less than three quarters of its lifetime (a flow kept alive by
 * its packets is told again every quarter of its timeout); CT_CHANGE_GONE
 * when it is freed (expired, evicted, removed).  Flows put in by
 * ct_restore, ct_sync_apply and ct_sync_forget are not told.  fn must not
 * call back into the table.  ct_set_journal allocates what it needs (16
 * bytes a slot) once: -1 on ENOMEM; fn NULL turns the journal off. */
enum ct_change { CT_CHANGE_UPSERT, CT_CHANGE_GONE };
typedef void (*ct_journal_fn)(void *arg, const struct ct_saved *s, enum ct_change what);
int ct_set_journal(struct conntrack *ct, ct_journal_fn fn, void *arg);

/* A flow the HA peer told of (s->deadline_ns on this table's clock): put in
 * as by ct_restore when it is not tracked here; when it is, it takes the
 * peer's TCP state and flags (keeping replies and UDP streams it has seen
 * itself) and the peer's deadline unless, in an unchanged state, its own is
 * later.  1: updated, 0: created, -1: not a valid flow, -3: table full. */
int ct_sync_apply(struct conntrack *ct, const struct ct_saved *s, uint64_t now_ns);
/* A flow the peer let go (expired or closed there): forgotten here unless
 * its own deadline lies more than slack_ns ahead (packets through this
 * gateway keep it alive).  True if forgotten. */
bool ct_sync_forget(struct conntrack *ct, uint32_t iface, const struct ct_tuple *t, uint64_t now_ns,
		    uint64_t slack_ns);

/* Fragments (no ports): the first fragment of an admitted datagram is noted
 * (source, destination, protocol, IP identification), and its later
 * fragments are admitted with it for 30 s (Linux's ipfrag_time).  A fixed
 * table of 1024 datagrams per worker; a collision forgets the older one. */
void ct_frag_admit(struct conntrack *ct, const struct ip_addr *src, const struct ip_addr *dst,
		   uint8_t proto, uint32_t id, uint64_t now_ns);
bool ct_frag_admitted(struct conntrack *ct, const struct ip_addr *src, const struct ip_addr *dst,
		      uint8_t proto, uint32_t id, uint64_t now_ns);

/* Bytes of memory per flow slot, table and pool included. */
size_t ct_bytes_per_flow(const struct conntrack *ct);

#endif
