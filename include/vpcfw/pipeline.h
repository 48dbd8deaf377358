/* The order of SPEC §2 and the verdict with its reason:
 *   source/destination check -> exemption -> SG egress of A -> NACL outbound
 *   of X -> NACL inbound of Y -> SG ingress of B
 * with connection tracking consulted first and updated last. */
#ifndef VPCFW_PIPELINE_H
#define VPCFW_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/counter.h"
#include "vpcfw/exempt.h"
#include "vpcfw/packet.h"
#include "vpcfw/policy.h"

enum stage {
	STAGE_NONE = 0,     /* no stage was present: nothing to enforce */
	STAGE_NOT_IP,
	STAGE_PARSE,
	STAGE_EXEMPT,
	STAGE_SRCDST,
	STAGE_SG_EGRESS,
	STAGE_NACL_OUT,
	STAGE_NACL_IN,
	STAGE_SG_INGRESS,
	STAGE_CONNTRACK,
	STAGE_COUNT
};

/* Reasons; the refusals use AWS Reachability Analyzer's names. */
enum reason {
	REASON_RULES_ALLOW = 0,                 /* every present stage admitted it */
	REASON_TRACKED_FLOW,                    /* admitted as part of a tracked flow */
	REASON_EXEMPT_ADDRESS,                  /* SPEC §5 */
	REASON_NOT_IP,
	REASON_NOT_MODELLED,                    /* neither end is in a modelled subnet */
	REASON_SUBNET_ACL_RESTRICTION,
	REASON_ENI_SG_RULES_MISMATCH,
	REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION,
	REASON_MALFORMED_PACKET,
	REASON_CONNTRACK_ALLOWANCE_EXCEEDED,
	REASON_INVALID_SOURCE_ADDRESS,          /* SPEC §5: a source never legitimate here */
	REASON_CONNTRACK_INVALID,               /* SPEC §4: a TCP segment outside its
	                                           flow's window, or (TcpLoose off) of
	                                           no tracked connection */
	/* beyond AWS, off by default (Vpcfw.PerSource*): flood fairness */
	REASON_CONNTRACK_SOURCE_RATE_EXCEEDED,  /* the source starts new flows too fast */
	REASON_CONNTRACK_SOURCE_SHARE_EXCEEDED, /* the source holds its share of the table */
	REASON_COUNT
};

const char *stage_name(enum stage s);   /* "sg-ingress", ... */
const char *reason_name(enum reason r); /* "SUBNET_ACL_RESTRICTION", ... */

struct verdict {
	bool accept;
	enum stage stage;       /* refusing stage; for ACCEPT the last deciding stage */
	enum reason reason;
	/* what decided, when a rule did */
	const struct nacl *nacl;
	const struct nacl_rule *nacl_rule;     /* NULL with nacl: the '*' rule */
	const struct sg_rule *sg_rule;
	const struct iface *stage_iface;       /* interface of an SG / src-dst stage */
	/* where the packet was: flow logs and mirroring need these */
	const struct iface *src_iface, *dst_iface;
	const struct subnet *src_subnet, *dst_subnet;
	bool exempt;
	/* detail of a src/dst-check refusal ("spoofed source", "not addressed
	 * to interface"), of an exemption or of a refused exempt source */
	const char *detail;
	/* The offload (issue #16): true when this accepted packet's flow may
	 * be left to the kernel, because under this policy every further
	 * packet of it, both ways, is accepted: a tracked flow established
	 * both ways at every end with a security group, or tracked at one end
	 * and left untracked by the rules at the other (a reply already passed
	 * those rules and the network ACLs, which match the same 5-tuple each
	 * time); not a fragment, not a RST the windows ignored.  flows: the
	 * entries that admit it (at A, at B; NULL where none), valid until the
	 * worker's next batch. */
	bool offloadable;
	struct ct_entry *flows[2];
};

/* Which modelled interfaces the packet came in on / goes out to, when the
 * daemon knows the Linux devices (SPEC §6); NULL when unknown.  in_known:
 * the input device is known, so a NULL in_iface is a device bound to no
 * interface (a source owned by a bound interface arriving there is spoofed,
 * as rp_filter's strict mode has it). */
struct pkt_meta {
	const struct iface *in_iface;
	const struct iface *out_iface;
	bool in_known;
};

/* A snapshot of a worker's decision counters (pipeline_get_stats). */
struct pipeline_stats {
	uint64_t packets[STAGE_COUNT][REASON_COUNT];
	uint64_t accepted, rejected;
};

/* The live counters: written by the worker, read by the control thread. */
struct pipeline_counters {
	counter_t packets[STAGE_COUNT][REASON_COUNT];
	counter_t accepted, rejected;
};

/* What each stage did for one packet, in the order the pipeline ran them
 * (explain formats it; NULL on the packet path).  A stage that refused is
 * the last step; the stages after it are not in the trace. */
enum trace_outcome { TRACE_SKIPPED, TRACE_PASS, TRACE_REFUSE, TRACE_NOT_REACHED };

enum trace_why {                /* why a stage was skipped, or how it passed */
	TW_NONE = 0,
	TW_NO_DEVICE,           /* no bound device: nothing to check */
	TW_DEVICES_OK,          /* the bound interfaces own the addresses or do not check */
	TW_NOT_EXEMPT,          /* no exempt address involved */
	TW_NO_IFACE,            /* that end is no modelled interface */
	TW_NO_GROUPS,           /* the interface has no security group: NACLs only */
	TW_TRACKED,             /* a tracked flow admits it: the rules are not consulted */
	TW_SAME_SUBNET,         /* no subnet boundary crossed */
	TW_NO_SUBNET,           /* that end is in no modelled subnet */
	TW_NO_NACL,             /* the subnet has no network ACL */
	TW_NOT_TRACKED,         /* nothing tracks this packet (no stateful end, exempt, fragment) */
	TW_NEW_FLOW,            /* the flow is tracked from now on */
	TW_UNTRACKED_RULE,      /* admitted by rules that leave the flow untracked */
};

struct trace_step {
	enum stage stage;
	enum trace_outcome outcome;
	enum trace_why why;
	const struct iface *iface;              /* SG, src/dst check, conntrack stages */
	const struct subnet *subnet;            /* NACL stages */
	const struct nacl *nacl;
	const struct nacl_rule *nacl_rule;      /* NULL with nacl: the '*' rule */
	const struct sg_rule *sg_rule;
	const char *detail;
};

enum { TRACE_STEPS = 12 };

struct pipeline_trace {
	struct trace_step steps[TRACE_STEPS];
	int n;
	/* where the packet was located: the ends and their subnets */
	const struct iface *a, *b;
	const struct subnet *x, *y;
};

/* The stages in the order the pipeline runs them (SPEC §2 as implemented). */
enum { PIPELINE_STAGES = 7 };
extern const enum stage pipeline_stage_order[PIPELINE_STAGES];

/* Per-worker state of the packet path.
 *
 * Counters: when `hits` is set (pol->n_hits slots of the policy being
 * evaluated, owned by the caller, one array per worker), every rule that
 * matches at a stage counts one, the '*' rule of a NACL counts its denials,
 * and each interface counts the packets from and to it by verdict
 * (IFACE_HIT_*).  One writer per array (relaxed atomics, counter.h);
 * readers sum the workers' arrays. */
struct pipeline {
	struct conntrack *ct;
	struct pipeline_counters counters;
	counter_t *hits;
	uint32_t n_hits;
	struct exempt_flows exempt;     /* requests to exempt addresses (SPEC §5) */
	struct pipeline_trace *trace;   /* NULL but for explain: record each stage */
};

void pipeline_init(struct pipeline *pl, struct conntrack *ct);

/* Reads the worker's decision counters (from any thread). */
void pipeline_get_stats(const struct pipeline *pl, struct pipeline_stats *out);

/* Decides one parsed packet.  `meta` may be NULL (replay).  now_ns is the
 * packet's time (replay) or CLOCK_MONOTONIC (live).  Allocates nothing. */
void pipeline_eval(struct pipeline *pl, const struct policy *pol, const struct packet *p,
		   const struct pkt_meta *meta, uint64_t now_ns, struct verdict *v);

/* The same for n packets of one batch, in order (metas may be NULL).  It
 * overlaps the flow-table lookups of the batch, which at a million flows are
 * main-memory bound: the way to decide a receive batch. */
enum { PIPELINE_BATCH = 32 };
void pipeline_eval_batch(struct pipeline *pl, const struct policy *pol, const struct packet *pkts,
			 const struct pkt_meta *metas, int n, uint64_t now, struct verdict *out);

/* Where a packet is: its subnets, interfaces and exemptions, its flow's
 * tuple and hash -- the part of a verdict that reads no flow state, so a
 * caller deciding packets one by one (flow-log replay) can work it out a few
 * packets ahead and load the flow table's buckets (pipeline_prefetch_located,
 * entries false) and, a few packets later, their first entries (true), then
 * decide with it: pipeline_eval_located is pipeline_eval with the packet
 * located already (by pipeline_locate, under the same policy and meta). */
struct pipeline_located {
	const struct subnet *ssub, *dsub;
	const struct iface *a, *b;
	enum exempt_kind skind, dkind;
	bool has_tuple, trackable;
	struct ct_tuple t;
	uint64_t hash;
};
void pipeline_locate(const struct policy *pol, const struct packet *p, const struct pkt_meta *meta,
		     struct pipeline_located *l);
void pipeline_prefetch_located(const struct pipeline *pl, const struct pipeline_located *l,
			       bool entries);
void pipeline_eval_located(struct pipeline *pl, const struct policy *pol, const struct packet *p,
			   const struct pkt_meta *meta, uint64_t now_ns,
			   const struct pipeline_located *l, struct verdict *v);

/* Records a verdict for a packet that never reached the stages (not IP,
 * malformed) so that it is counted like the rest. */
void pipeline_verdict_unparsed(struct pipeline *pl, enum packet_status st, struct verdict *v);

/* The deciding rule as text: "acl-1 inbound rule 100", "acl-1 outbound rule *",
 * "sg-1 IpPermissions[2]", "eni-1 ingress: no rule admits it", "tracked flow",
 * or "" when no rule applies.  Returns buf. */
char *verdict_rule_format(const struct verdict *v, char *buf, size_t len);

#endif
