/* The sync wire format: flow-table changes between the two gateways of an
 * HA pair (issue #13 item 2).
 *
 * Each gateway sends its flow-table changes (a flow created, a flow whose
 * state, deadline or TCP windows changed, a flow gone) to its peer in UDP
 * datagrams over a dedicated link; a gateway that starts asks its peer for
 * the whole table (bulk sync).  A flow is named as in the state file
 * (state.h): by its interface's id (eni-...), never by a number of one
 * process, and its deadline travels as its remaining lifetime, never as a
 * time of the sender's clock.
 *
 * Format, version 1 (every integer little-endian):
 *
 *   header, SYNC_HEADER_BYTES (56):
 *     0  magic "VPCFWSY\0"
 *     8  u16 version (1)
 *    10  u8 type: SYNC_T_*
 *    11  u8 flags: SYNC_F_*
 *    12  u32 sender: the sender's Vpcfw.Sync.NodeId (never 0)
 *    16  u64 epoch: the sender's start, CLOCK_REALTIME ns (grows with every
 *        start of the sender; never 0)
 *    24  u64 sequence number: 1, 2, 3 ... per sender epoch, every message
 *    32  u64 sent: CLOCK_REALTIME ns when sent (a freshness bound only)
 *    40  u16 records
 *    42  u16 interfaces in the table
 *    44  u32 bulk id: SYNC_T_BULK_REQ the request's number, SYNC_T_BULK the
 *        request it answers; 0 otherwise
 *    48  u32 bulk total: SYNC_T_BULK the flows the whole transfer holds
 *        (progress); 0 otherwise
 *    52  u32 lag: microseconds between the oldest change in the message and
 *        its sending (saturating); 0 for other types
 *   records, SYNC_RECORD_BYTES (88) each:
 *     0 u8 op: SYNC_OP_UPSERT (the flow as it is now: created or changed)
 *              or SYNC_OP_DELETE (the flow is gone: expired, closed)
 *     1 u8 protocol   2 u8 TCP state   3 u8 flags (CT_SAVED_*)
 *     4 u16 interface (index in the message's interface table)
 *     6 u16 NFQUEUE queue of the worker holding it (both gateways steer a
 *       flow to the same queue number: README "High availability")
 *     8 u16 source port   10 u16 destination port
 *    12 u32 remaining lifetime, ms (UPSERT: 1 .. SYNC_MAX_LIFETIME_MS;
 *       DELETE: 0)
 *    16 source address (u64 high, u64 low: 128 bits, IPv4 mapped)
 *    32 destination address
 *    48 CT_SAVED_TCP_BYTES bytes: TCP window tracking (DELETE: zeros)
 *   the interface table: per interface u8 length (1-255) + its id
 *     (printable ASCII), each id once, every one referenced by a record
 *   SYNC_MAC_BYTES (32): HMAC-SHA256 (RFC 2104, FIPS 180-4) of every byte
 *     before it, keyed with Vpcfw.Sync.KeyFile's contents
 *   and nothing after.
 *
 * Types: SYNC_T_UPDATE (changes), SYNC_T_BULK_REQ (no records: "send me
 * your table"), SYNC_T_BULK (a part of a whole table, flag SYNC_F_LAST on
 * the last part), SYNC_T_HELLO (no records: a heartbeat carrying the
 * sender's state).  SYNC_F_READY: the sender holds a complete table (it
 * finished its bulk sync, or its peer had none to give).
 *
 * A message is authenticated before anything of it but its length is
 * believed; one whose MAC does not match is dropped whole.  An
 * authenticated message that breaks any rule above is dropped whole too:
 * no record of it is applied.  Replays: per sender the receiver keeps the
 * newest epoch and a window of the last SYNC_WINDOW sequence numbers of it
 * (RFC 4303 3.4.3's sliding window): a message of an older epoch, one
 * older than the window, or one seen already is dropped and counted;
 * messages reordered within the window are accepted.  A receiver that has
 * just started knows no window yet: a message replayed to it is refused
 * only by its age (Vpcfw.Sync.MaxClockSkew against the sent time), so one
 * captured less than that long ago is taken once (the flows it holds were
 * the peer's then).
 *
 * vpcfwd sends the TCP window bytes as zeros: a flow's windows move with
 * every segment, and a copy told at its last change of state would hold
 * windows far behind a long transfer's; zeros make the receiver learn them
 * from the next segments, as for a flow picked up mid-stream. */
#ifndef VPCFW_SYNC_H
#define VPCFW_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nettle/hmac.h>

#include "vpcfw/conntrack.h"

#define SYNC_MAGIC "VPCFWSY"    /* and its NUL: 8 bytes */
enum {
	SYNC_VERSION = 1,
	SYNC_HEADER_BYTES = 56,
	SYNC_RECORD_BYTES = 48 + CT_SAVED_TCP_BYTES,
	SYNC_MAC_BYTES = 32,
	SYNC_MAX_BYTES = 65507,         /* the largest UDP payload (IPv4) */
	SYNC_DEFAULT_BYTES = 1400,      /* fits a 1500-byte MTU over IPv4 and IPv6 */
	SYNC_MIN_BYTES = SYNC_HEADER_BYTES + SYNC_RECORD_BYTES + 2 + 255 + SYNC_MAC_BYTES,
	SYNC_MAX_RECORDS = (SYNC_MAX_BYTES - SYNC_HEADER_BYTES - SYNC_MAC_BYTES) /
			   (SYNC_RECORD_BYTES + 2),
	SYNC_IFACE_ID_MAX = 255,
	SYNC_WINDOW = 1024,             /* sequence numbers remembered per sender */
	SYNC_KEY_MIN = 16,              /* bytes of key at least */
	SYNC_KEY_MAX = 4096,
};
#define SYNC_MAX_LIFETIME_MS (432000u * 1000u)  /* the longest timeout (state.h) */

enum sync_type {
	SYNC_T_UPDATE = 1,
	SYNC_T_BULK_REQ = 2,
	SYNC_T_BULK = 3,
	SYNC_T_HELLO = 4,
};

enum {
	SYNC_F_READY = 1 << 0,
	SYNC_F_LAST = 1 << 1,
	SYNC_F_ALL = 0x03,
};

enum sync_op {
	SYNC_OP_UPSERT = 1,
	SYNC_OP_DELETE = 2,
};

/* A flow change.  s.deadline_ns holds the remaining lifetime in ns (not a
 * time); s.iface is unused: the interface is iface_id. */
struct sync_record {
	uint8_t op;                     /* SYNC_OP_* */
	uint16_t queue;
	const char *iface_id;           /* sender: any string; receiver: points
	                                   into sync_msg.ids (NUL-terminated) */
	struct ct_saved s;
};

/* A decoded message: records and ids are the caller's memory (no
 * allocation). */
struct sync_msg {
	uint8_t type, flags;
	uint32_t sender;
	uint64_t epoch, seq, sent_ns;
	uint32_t bulk_id, bulk_total, lag_us;
	struct sync_record *records;    /* in: room for max_records */
	size_t max_records;
	size_t n_records;
	char ids[SYNC_MAX_BYTES];       /* the interface ids, each NUL-terminated */
	uint16_t n_ifaces;
};

/* Why a message was dropped (counted by reason). */
enum sync_drop {
	SYNC_OK = 0,
	SYNC_DROP_SHORT,                /* shorter than a header and a MAC, or longer than allowed */
	SYNC_DROP_AUTH,                 /* the MAC does not match */
	SYNC_DROP_MAGIC,
	SYNC_DROP_VERSION,
	SYNC_DROP_MALFORMED,            /* authenticated but breaks the format */
	SYNC_DROP_SELF,                 /* our own NodeId: a loop or a misconfiguration */
	SYNC_DROP_REPLAY,               /* seen already, or older than the window */
	SYNC_DROP_OLD_EPOCH,            /* an epoch older than the newest seen of that sender */
	SYNC_DROP_STALE,                /* sent too long ago (or too far ahead) by its clock */
	SYNC_DROP_NREASONS
};
const char *sync_drop_name(enum sync_drop r);   /* "auth", "replay", ... */

/* The key: an HMAC-SHA256 key (Nettle) prepared once, copied per message. */
struct sync_key {
	struct hmac_sha256_ctx ctx;
};
void sync_key_init(struct sync_key *k, const uint8_t *key, size_t len);

/* Reads the key file: a regular file (never through a symbolic link),
 * owned by root or by the process's user, not readable or writable by
 * group or others (mode 0600 or 0400), SYNC_KEY_MIN to SYNC_KEY_MAX bytes
 * (a final newline is not part of the key).  0, or -1 with what is wrong in
 * err. */
int sync_key_read(const char *path, uint8_t *key, size_t *len, char *err, size_t errlen);

/* Building a message into a buffer of max_bytes (SYNC_MIN_BYTES ..
 * SYNC_MAX_BYTES); no allocation. */
struct sync_builder {
	uint8_t *buf;
	size_t max_bytes;
	size_t n_records;
	uint16_t id_off[256];           /* the interface table so far: ids in idbuf */
	uint8_t id_len[256];
	size_t n_ids, ids_bytes;        /* ids_bytes: as encoded (a length byte each) */
	char idbuf[256 * SYNC_IFACE_ID_MAX];
	uint32_t lag_us;
};
void sync_begin(struct sync_builder *b, uint8_t *buf, size_t max_bytes);
/* Adds a record; false (nothing added) when it does not fit: finish the
 * message and begin another.  iface ids longer than SYNC_IFACE_ID_MAX are
 * refused (false) as are records that are not valid flows; the caller
 * checks sync_fits first to tell the two apart.  (The ids are copied.) */
bool sync_add(struct sync_builder *b, const struct sync_record *r);
bool sync_fits(const struct sync_builder *b, const char *iface_id);
/* Replaces record i (< n_records) with r, of an interface already in the
 * message (the same flow's newer state: a sender's coalescing).  False if
 * not. */
bool sync_put(struct sync_builder *b, size_t i, const struct sync_record *r);
/* The header and the MAC: the message's length. */
size_t sync_finish(struct sync_builder *b, const struct sync_key *k, uint8_t type, uint8_t flags,
		   uint32_t sender, uint64_t epoch, uint64_t seq, uint64_t sent_ns,
		   uint32_t bulk_id, uint32_t bulk_total, uint32_t lag_us);

/* Whether buf's MAC is that of key: SYNC_OK, SYNC_DROP_SHORT or
 * SYNC_DROP_AUTH (compared in constant time). */
enum sync_drop sync_verify(const struct sync_key *k, const uint8_t *buf, size_t len);
/* Parses an authenticated message (the MAC is not checked: sync_decode
 * does both); on an error out->n_records is 0. */
enum sync_drop sync_parse(const uint8_t *buf, size_t len, struct sync_msg *out);
enum sync_drop sync_decode(const struct sync_key *k, const uint8_t *buf, size_t len,
			   struct sync_msg *out);

/* The replay window of one sender. */
struct sync_window {
	uint64_t epoch;                 /* 0: nothing seen yet */
	uint64_t top;                   /* the highest sequence number accepted */
	uint64_t bits[SYNC_WINDOW / 64];/* bit (top - seq): seq seen */
};
/* Accepts (and records) (epoch, seq), or says why not.  A newer epoch
 * starts a new window (the sender restarted). */
enum sync_drop sync_window_check(struct sync_window *w, uint64_t epoch, uint64_t seq);

/* A message's sent time against the receiver's clock: SYNC_DROP_STALE
 * when more than max_skew_ns apart either way (max_skew_ns 0: not
 * checked). */
enum sync_drop sync_fresh(uint64_t sent_ns, uint64_t now_ns, uint64_t max_skew_ns);

#endif
