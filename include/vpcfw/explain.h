/* Why a packet is admitted or refused: the stages of SPEC §2 in the order
 * the pipeline runs them, with what each matched.  Verdict and stages are
 * the pipeline's own: pipeline_eval on a scratch flow table (the first
 * packet of a new flow) with its trace on; explain only formats the trace. */
#ifndef VPCFW_EXPLAIN_H
#define VPCFW_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

enum explain_outcome {
	EXO_SKIPPED,    /* the stage does not apply to this packet */
	EXO_PASS,
	EXO_REFUSE,
	EXO_NOT_REACHED /* an earlier stage refused it */
};

struct explain_step {
	enum stage stage;
	enum explain_outcome outcome;
	char what[200];         /* what matched, or why it does not apply */
};

enum { EXPLAIN_STEPS = PIPELINE_STAGES };

struct explain {
	struct verdict v;       /* the pipeline's verdict */
	char rule[160];         /* verdict_rule_format */
	struct explain_step steps[EXPLAIN_STEPS];
	int n_steps;
	bool consistent;        /* the refusing step is the verdict's stage (always, by construction) */
	const struct iface *src_iface, *dst_iface;
	const struct subnet *src_subnet, *dst_subnet;
};

/* A packet from text: proto ("tcp", "udp", "icmp", "icmpv6" or a number),
 * addresses, ports (type/code for ICMP).  TCP gets SYN: a new flow.  False
 * with a message in err for bad input. */
bool explain_packet(const char *proto, const char *src, unsigned sport, const char *dst,
		    unsigned dport, struct packet *p, char *err, size_t errlen);

/* An interface given by id ("eni-...") or by bound device name. */
const struct iface *explain_iface(const struct policy *pol, const char *name);

/* Explains p; in/out are the interfaces the packet came in on and leaves
 * by (NULL: located by address, as without InterfaceBindings).  Returns -1
 * if no flow table could be allocated. */
int explain_run(const struct policy *pol, const struct packet *p, const struct iface *in,
		const struct iface *out, struct explain *ex);

const char *explain_outcome_name(enum explain_outcome o); /* "pass", "refuse", ... */

/* The answer to an "explain" request ({"proto", "src", "dst", "sport",
 * "dport", "in", "out"}) under pol, as the control socket gives it:
 * {"ok": true, "verdict", "stage", "reason", "rule", "steps", ...} or
 * {"ok": false, "error"}.  The daemon's verb and vpcfwctl explain -c (no
 * daemon) both answer with it.  A new reference; NULL on ENOMEM. */
json_t *explain_json(const struct policy *pol, const json_t *req);

#endif
