/* Exempt addresses (SPEC §5): which addresses are AWS's own, and which
 * requests to them are waiting for a reply.
 *
 * A packet *to* an exempt address is exempt, and so is its reply; a packet
 * *from* one is exempt otherwise only when it stays on the link.  AWS's
 * network never delivers such a source from anywhere else, so a gateway must
 * not trust one: some can never be a legitimate source at all (a subnet's
 * network or broadcast address, a link-local source leaving the link, a
 * reserved address of the VPC opening a conversation), the rest (AWS's IPv6
 * service range) are judged by the rules.
 *
 * The requests are remembered in a small fixed table per worker, apart from
 * connection tracking so that they take none of the interfaces' allowance
 * (SPEC §4).  When a set of it is full the oldest request is forgotten; its
 * reply is then judged as an unsolicited packet. */
#ifndef VPCFW_EXEMPT_H
#define VPCFW_EXEMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcfw/addr.h"
#include "vpcfw/conntrack.h"

struct policy;
struct subnet;

enum exempt_kind {
	EXEMPT_NONE = 0,        /* an ordinary address */
	EXEMPT_LINK_LOCAL,      /* 169.254.0.0/16, fe80::/10 (IMDS, Time Sync, ...) */
	EXEMPT_SERVICE,         /* fd00:ec2::/32, AWS's IPv6 service range */
	EXEMPT_RESERVED,        /* subnet +1 router, +2 DNS, +3; the VPC's DNS */
	EXEMPT_SUBNET_EDGE,     /* subnet network and broadcast (IPv6: :: and last) */
};

/* What kind of exempt address `a` is.  `s` is a's subnet if the caller
 * looked it up (may be NULL). */
enum exempt_kind exempt_kind(const struct policy *pol, const struct ip_addr *a,
			     const struct subnet *s);

/* A destination that keeps the packet on the link: link-local, multicast,
 * the limited broadcast 255.255.255.255. */
bool exempt_on_link(const struct ip_addr *a);

/* Requests to exempt addresses awaiting replies: 4-way sets, no allocation. */
enum { EXEMPT_FLOW_SETS = 256, EXEMPT_FLOW_WAYS = 4 };

struct exempt_flow {
	struct ct_tuple req;    /* as the request was sent */
	uint64_t seen_ns, expires_ns; /* expires_ns 0: free */
};

struct exempt_flows {
	struct exempt_flow set[EXEMPT_FLOW_SETS][EXEMPT_FLOW_WAYS];
};

/* Notes (or refreshes) a request; hash is ct_hash(req).  A request is
 * remembered for the idle timeout connection tracking would give its
 * protocol (TCP established, UDP stream, ICMP, other), from its last packet. */
void exempt_flow_note(struct exempt_flows *f, const struct ct_tuple *req, uint64_t hash,
		      uint64_t now_ns);

/* Is `req` (hash ct_hash(req), the same for its reply) a live request? */
bool exempt_flow_known(const struct exempt_flows *f, const struct ct_tuple *req, uint64_t hash,
		       uint64_t now_ns);

#endif
