/* One NFQUEUE queue over libmnl: setup, batched receive, batched verdicts.
 * Knows nothing of policy: the caller decides each packet of a batch.
 *
 * A worker's loop:
 *     n = nfqueue_recv_batch(q, 100);          (waits at most 100 ms)
 *     for (i = 0; i < n; i++)
 *             nfqueue_set_verdict(q, i, decide(nfqueue_packet(q, i)));
 *     nfqueue_send_verdicts(q);
 * Every packet received gets a verdict: one not decided by the caller is
 * dropped by nfqueue_send_verdicts(). */
#ifndef VPCFW_NFQ_H
#define VPCFW_NFQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The headers the engine reads: IPv4/IPv6 with extension headers, the L4
 * header, and for ICMP errors the quoted IP + L4 header. */
#define NFQUEUE_COPY_RANGE_HEADERS 256u
#define NFQUEUE_BATCH_MAX 64

struct nfqueue_options {
	uint16_t queue;
	uint32_t copy_range;    /* bytes of each packet copied to us; 0: headers */
	uint32_t queue_maxlen;  /* packets the kernel holds for us; 0: 4096 */
	int rcvbuf;             /* socket receive buffer, bytes; 0: 8 MiB */
	bool fail_open;         /* a full queue accepts instead of dropping */
	bool conntrack;         /* NFQA_CFG_F_CONNTRACK: each packet carries its
				   kernel conntrack entry (nfqueue_packet.ct),
				   where the kernel can (CONFIG_NETFILTER_NETLINK_
				   GLUE_CT; without it the queue opens without) */
};

/* The kernel conntrack entry of a queued packet (NFQA_CT, with
 * nfqueue_options.conntrack): what the offload needs (its id and mark) and
 * its accounting (CTA_COUNTERS_*, present when net.netfilter.nf_conntrack_acct
 * is 1).  Values as the kernel had them when it queued the packet. */
struct nfqueue_ct {
	bool present;           /* the packet has a conntrack entry (none: untracked,
				   invalid, kernel table full, or no conntrack) */
	bool has_counters;
	uint32_t id;            /* CTA_ID */
	uint32_t status;        /* CTA_STATUS: IPS_* */
	uint32_t mark;          /* CTA_MARK (0 when absent) */
	uint32_t info;          /* NFQA_CT_INFO: IP_CT_*; 0 (IP_CT_ESTABLISHED) when absent */
	uint64_t orig_packets, orig_bytes;      /* CTA_COUNTERS_ORIG */
	uint64_t reply_packets, reply_bytes;    /* CTA_COUNTERS_REPLY */
};

struct nfqueue_packet {
	uint32_t id;
	uint16_t hw_proto;      /* ETH_P_IP / ETH_P_IPV6, host order */
	uint8_t hook;
	bool truncated;         /* our receive buffer cut the message: decide DROP */
	const uint8_t *payload; /* the packet from its IP header; NULL if absent */
	size_t caplen;          /* bytes at payload */
	size_t wirelen;         /* the packet's real length (NFQA_CAP_LEN) */
	uint32_t indev, outdev; /* ifindex, 0 if none */
	uint32_t skb_info;      /* NFQA_SKB_* */
	uint32_t mark;          /* NFQA_MARK: the packet's mark (skb->mark), 0 if none */
	struct nfqueue_ct ct;   /* NFQA_CT; ct.present false without it */
};

/* What this socket saw.  The kernel's own per-queue counters are read with
 * nfqueue_kernel_stats(). */
struct nfqueue_stats {
	uint64_t packets;
	uint64_t accepted, dropped;
	uint64_t batches;
	uint64_t verdict_msgs;          /* verdict messages sent (runs of one verdict) */
	uint64_t mark_verdicts;         /* ACCEPTs that set the packet's mark (their own message) */
	uint64_t enobufs;               /* receive overruns: the kernel lost messages to us */
	uint64_t truncated;             /* messages larger than our buffer (dropped) */
	uint64_t netlink_errors;        /* error replies from the kernel (e.g. a verdict refused) */
	uint64_t recv_errors, send_errors;
};

/* /proc/net/netfilter/nfnetlink_queue, one line per bound queue. */
struct nfqueue_kernel_stats {
	uint32_t queue_total;           /* packets waiting in the kernel now */
	uint64_t queue_dropped;         /* queue full: dropped (or accepted, fail-open) */
	uint64_t user_dropped;          /* netlink could not deliver to us (socket buffer full) */
	uint64_t id_sequence;           /* last packet id */
};

struct nfqueue;

/* Binds the queue and configures it.  NULL on failure with a message in
 * err (for example another process holds the queue). */
struct nfqueue *nfqueue_open(const struct nfqueue_options *opt, char *err, size_t errlen);
/* Unbinds; the kernel drops whatever is still queued (it flushes with DROP). */
void nfqueue_close(struct nfqueue *q);

/* Waits up to timeout_ms for the first packet, then takes whatever else is
 * already waiting, up to NFQUEUE_BATCH_MAX.  Returns the number of packets (0 on
 * timeout or if only non-packet messages came), -1 on a fatal socket error. */
int nfqueue_recv_batch(struct nfqueue *q, int timeout_ms);
const struct nfqueue_packet *nfqueue_packet(const struct nfqueue *q, int i);
/* verdict: NF_ACCEPT or NF_DROP. */
void nfqueue_set_verdict(struct nfqueue *q, int i, uint32_t verdict);
/* Packet i's ACCEPT sets the packet's mark (skb->mark) to `mark` (the
 * offload: a kernel rule after the queue copies a bit of it to the flow's
 * conntrack mark; keep the packet's own bits, nfqueue_packet.mark).  The
 * verdict becomes a NFQNL_MSG_VERDICT of its own with NFQA_MARK.  Ignored
 * unless the verdict is NF_ACCEPT. */
void nfqueue_set_mark(struct nfqueue *q, int i, uint32_t mark);
/* Sends the batch's verdicts: one NFQNL_MSG_VERDICT_BATCH per run of equal
 * verdicts without a mark, one NFQNL_MSG_VERDICT per packet with one, in
 * the order of the packets' ids and in one datagram (the kernel takes the
 * messages in order, so a batch verdict never covers a packet whose own
 * message came before it, and one that comes after finds it gone).
 * Returns 0, or -1 if the kernel could not be told (counted). */
int nfqueue_send_verdicts(struct nfqueue *q);
/* The verdict messages the last nfqueue_send_verdicts built (tests: a
 * detached queue builds them and sends nothing); *len their bytes. */
const uint8_t *nfqueue_last_verdicts(const struct nfqueue *q, size_t *len);

/* Changes what a full queue does; safe while a worker uses q (the kernel's
 * acknowledgement is a message the worker skips). */
void nfqueue_set_fail_open(struct nfqueue *q, bool fail_open);
/* The same for nfqueue_options.conntrack (a reload that turns the offload
 * on or off). */
void nfqueue_set_conntrack(struct nfqueue *q, bool conntrack);
/* Do the packets come with their conntrack entry (NFQA_CT)? */
bool nfqueue_has_conntrack(const struct nfqueue *q);

uint16_t nfqueue_queue_num(const struct nfqueue *q);
void nfqueue_get_stats(const struct nfqueue *q, struct nfqueue_stats *out);
/* Reads the kernel's counters of queue `queue` in the current network
 * namespace.  Returns false if the queue is not listed. */
bool nfqueue_kernel_stats(uint16_t queue, struct nfqueue_kernel_stats *out);

/* For fuzzing and tests: a queue bound to no socket (nfqueue_close frees
 * it), into which nfqueue_parse_datagram() takes one received datagram of n
 * bytes (trunc: the receive cut it, MSG_TRUNC) exactly as
 * nfqueue_recv_batch() takes each datagram from the socket; returns the
 * number of packets, read with nfqueue_packet().  Sends nothing. */
struct nfqueue *nfqueue_detached(void);
int nfqueue_parse_datagram(struct nfqueue *q, const uint8_t *buf, size_t n, bool trunc);

/* Parses "0", "0-3", "0,2,5-6" into a sorted list without duplicates.
 * Returns the number of queues, or -1 (invalid, or more than max). */
int nfqueue_parse_queues(const char *s, uint16_t *out, int max);

#endif
