/* Traffic mirroring (SPEC §8) and the refused-packet capture.
 *
 * Workers select a session and copy the packet into a bounded ring of their
 * own (mirror_observe: no allocation, no lock, no system call); one sender
 * thread drains the rings: VXLAN (RFC 7348) to a target's address, or a
 * libpcap file for a Vpcfw.PcapTargets target, and refused packets to the
 * Vpcfw.DropCapture file (NFLOG link type, the verdict in the prefix).  A
 * full ring drops the copy and counts it; it never delays a verdict.
 *
 * Nothing here keeps a pointer into a policy beyond one mirror_observe
 * call: what the packet path needs is copied into a plan at create /
 * mirror_set_policy. */
#ifndef VPCFW_MIRROR_H
#define VPCFW_MIRROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vpcfw/diag.h"
#include "vpcfw/model.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

#define VXLAN_PORT 4789
#define MIRROR_DEFAULT_SNAPLEN 256              /* DropCapture.SnapLength */
#define MIRROR_DEFAULT_ROTATE (100ULL << 20)    /* RotateBytes */
#define MIRROR_KEEP_FILES 10                    /* PATH.1 .. PATH.10 after rotation */

struct mirror;
struct mirror_worker;

/* Cross-checks sessions, filters, targets and the Vpcfw mirror keys (ids that
 * name nothing, duplicate numbers, targets without an address) with file
 * and JSON path.  Called while the configuration loads. */
void mirror_check_config(const struct model *m, struct diag *d);

struct mirror_options {
	int n_workers;
	bool threaded;          /* live: a sender thread; replay: synchronous */
	bool send_vxlan;        /* false: VXLAN targets are skipped */
	uint32_t ring_slots;    /* per worker; 0: 1024 */
	bool hold;              /* not threaded: mirror_observe leaves the copies in the
				   rings until mirror_drain (tests fill the rings) */
	FILE *notes;            /* where notes go (targets, skips); NULL: the log */
};

/* True when the policy mirrors or captures anything. */
bool mirror_enabled(const struct policy *pol);

/* Bytes of each packet the daemon must copy from the kernel (NFQUEUE copy
 * range) for the active sessions and the drop capture; 0 when nothing is
 * mirrored or captured (then the headers are enough). */
uint32_t mirror_copy_range(const struct policy *pol);

/* NULL when mirroring is off (mirror_enabled() false) or cannot start (the
 * reason is printed).  Every function below takes NULL as "off". */
struct mirror *mirror_create(const struct policy *pol, const struct mirror_options *opt);
/* After a reload, before the new policy is published to the workers.  The
 * plan it replaces is kept until mirror_reclaim(). */
void mirror_set_policy(struct mirror *mr, const struct policy *pol);
/* Frees replaced plans: call once no worker can still be inside a batch
 * that began before the last mirror_set_policy (the daemon's grace period,
 * where it frees the old policy). */
void mirror_reclaim(struct mirror *mr);
/* The pcap outputs (targets, drop capture) start their files again, for
 * logrotate (SIGHUP); done by the sender thread, soon after. */
void mirror_reopen(struct mirror *mr);
struct mirror_worker *mirror_worker(struct mirror *mr, int index);
/* Not threaded: sends or writes every copy waiting in the rings and flushes
 * the files (without a sender thread, the caller's thread does it). */
void mirror_drain(struct mirror *mr);

/* The packet path: one call per decided packet.  `ip` holds `caplen` bytes
 * of the packet from its IP header; `wirelen` is its real length.  p is NULL
 * for a packet that did not parse (then only the drop capture takes it).
 * wall_ns is the packet's time (Unix epoch, nanoseconds). */
void mirror_observe(struct mirror_worker *w, const struct packet *p, const struct verdict *v,
		    const uint8_t *ip, size_t caplen, size_t wirelen, uint64_t wall_ns);

/* A snapshot: the counters behind it are counter_t (counter.h), each with
 * one writer (a worker, or the sender thread), so any thread may read them
 * while packets flow.  Cumulative for the mirror's life (the daemon's). */
struct mirror_stats {
	uint64_t mirrored;              /* copies queued for a session */
	uint64_t captured;              /* refused packets queued for the drop capture */
	uint64_t ring_full;             /* session copies lost: a worker's ring was full */
	uint64_t capture_ring_full;     /* drop-capture copies lost: a worker's ring was full */
	uint64_t vxlan_sent;            /* VXLAN datagrams sent */
	uint64_t vxlan_errors;          /* send failures (each a copy lost) */
	uint64_t vxlan_skipped;         /* not sent (send_vxlan false, no address) */
	uint64_t pcap_records;          /* records written to pcap targets */
	uint64_t drop_records;          /* records written to the drop capture */
	uint64_t write_errors;          /* pcap target writes (opens, flushes) that failed */
	uint64_t capture_write_errors;  /* the same for the drop capture */
	uint64_t files_rotated;
};
void mirror_get_stats(const struct mirror *mr, struct mirror_stats *out);

/* Drains every ring, closes the files and stops the sender.  False if any
 * file write failed during the mirror's life (a full disk must not pass for
 * a complete capture). */
bool mirror_destroy(struct mirror *mr);

/* ---- pieces exposed for the unit tests (mirror_*.c) */

/* A compiled filter rule and session (copied out of the model). */
struct mirror_rule {
	uint32_t number;
	bool accept;
	int proto;
	bool has_sports, has_dports;
	uint16_t sport_from, sport_to, dport_from, dport_to;
	struct cidr src, dst;
};

enum { MIRROR_INGRESS = 0, MIRROR_EGRESS = 1 };

/* First matching rule in ascending number decides; no rule: not mirrored. */
bool mirror_filter_accepts(const struct mirror_rule *rules, int n, const struct packet *p);

/* The VXLAN payload (RFC 7348): 8-byte VXLAN header with the VNI, then an
 * inner Ethernet frame (dst MAC, src MAC, EtherType of `family`) around
 * the first `iplen` bytes of the IP packet, the whole cut to `limit` bytes
 * (0: no limit).  Returns the bytes written to out (at most outlen). */
size_t mirror_vxlan_encap(uint8_t *out, size_t outlen, uint32_t vni, const uint8_t dst_mac[6],
			  const uint8_t src_mac[6], int family, const uint8_t *ip, size_t iplen,
			  size_t limit);
/* The outer UDP source port: a hash of the flow, the same in both directions,
 * in 49152-65535 (RFC 7348 section 5). */
uint16_t mirror_flow_port(const struct packet *p);

/* One NFLOG record (LINKTYPE_NFLOG 239): header, NFULA_PREFIX with the NUL,
 * NFULA_PAYLOAD with the packet's first iplen bytes.  Returns its length (at
 * most outlen).  A packet cut at the snap length is cut as the kernel's
 * NFLOG copy range cuts it: the record is whole (its pcap length is what is
 * stored) and only the payload TLV is short; tshark decodes that. */
size_t mirror_nflog_record(uint8_t *out, size_t outlen, int family, const char *prefix,
			   const uint8_t *ip, size_t iplen);

/* A libpcap file (nanosecond timestamps, this host's byte order) rotated by
 * size: past rotate_bytes PATH becomes PATH.1 (PATH.1 becomes PATH.2, ...,
 * up to MIRROR_KEEP_FILES) and a new PATH starts.  The file is written as
 * it comes (stdio buffered); mirror_pcap_flush pushes it out. */
struct mirror_pcap;
struct mirror_pcap *mirror_pcap_open(const char *path, uint32_t linktype, uint32_t snaplen,
				     uint64_t rotate_bytes, char *err, size_t errlen);
/* False on a write error (the record is lost; errno says why). */
bool mirror_pcap_write(struct mirror_pcap *f, uint64_t ts_ns, const uint8_t *data,
		       size_t caplen, size_t wirelen);
bool mirror_pcap_flush(struct mirror_pcap *f);
/* Closes the file and starts PATH again (for logrotate, which renamed it;
 * PATH still there is kept as PATH.1).  False if the new file could not be
 * made (it is tried again at the next record). */
bool mirror_pcap_reopen(struct mirror_pcap *f);
uint64_t mirror_pcap_rotations(const struct mirror_pcap *f);
/* False if anything written since the last flush was lost. */
bool mirror_pcap_close(struct mirror_pcap *f);

#define LINKTYPE_ETHERNET 1
#define LINKTYPE_NFLOG 239

#endif
