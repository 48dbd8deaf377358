/* Security groups: allow-only rules, the union of every group on an
 * interface, compiled per distinct list of groups and direction (SPEC §4):
 * interfaces carrying the same groups share one immutable compiled set. */
#ifndef VPCFW_SG_H
#define VPCFW_SG_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcfw/addr.h"
#include "vpcfw/arena.h"
#include "vpcfw/model.h"
#include "vpcfw/packet.h"

struct sg;
struct iface;

enum sg_peer { SGP_CIDR, SGP_SET, SGP_NONE /* unresolved reference: matches nothing */ };

/* One compiled rule: a (protocol, ports, peer) triple.  An IpPermission
 * with several peers becomes several rules that share `m`. */
struct sg_rule {
	int16_t proto;                  /* RULE_PROTO_ALL or 0..255 */
	int32_t from, to;               /* ports, or icmp type/code; -1 = all */
	enum sg_peer peer;
	uint8_t family;                 /* FAMILY_V4 / FAMILY_V6 for SGP_CIDR; 0 = both */
	struct cidr cidr;               /* SGP_CIDR */
	const struct addr_set *set;     /* SGP_SET */
	bool world;                     /* peer is 0.0.0.0/0 or ::/0 */
	const struct sg *group;         /* the group the rule belongs to */
	const struct m_sg_rule *m;
	const struct m_peer *src_peer;  /* the peer this rule came from */
	bool egress;
	uint32_t hit;                   /* the rule's position in its set: the
	                                   counter slot is the interface's base
	                                   for the set plus this (policy.h) */
};

/* Rules by protocol class (tcp, udp, icmp, icmpv6, other).  For tcp and
 * udp the port space is cut into elementary intervals, each with the rules
 * whose range covers it, so a new flow is checked against the few rules of
 * its destination port rather than every rule of the interface. */
enum { SGC_TCP, SGC_UDP, SGC_ICMP, SGC_ICMPV6, SGC_OTHER, SGC_COUNT };

struct sg_index {
	const struct sg_rule **any;     /* rules that do not depend on the port */
	int n_any;
	uint32_t *bounds;               /* interval i is [bounds[i], bounds[i+1]) */
	int n_bounds;
	uint32_t *off;                  /* n_bounds + 1 offsets into cand */
	const struct sg_rule **cand;
};

/* The compiled union for one list of groups and direction; read-only once
 * built, shared by every interface with that list. */
struct sg_set {
	struct sg_rule *rules;          /* world rules first (see sg_match) */
	int n;
	struct sg_index idx[SGC_COUNT];
	/* [family 0/1][0 = tcp, 1 = udp]: a rule admits every port of that
	 * protocol (or all traffic) to/from the whole address space.  Used by
	 * the untracked-flow test of the *opposite* direction. */
	bool all_ports_world[2][2];
};

/* Resolves a peer of a model rule to cidrs/sets; supplied by policy.c. */
struct sg_resolver {
	/* prefix list id -> its cidrs (NULL and *n = 0 if unknown) */
	const struct cidr *(*prefix_list)(void *ctx, const char *id, int *n);
	/* group id -> member set (NULL if unknown) */
	const struct addr_set *(*group_members)(void *ctx, const char *id);
	void *ctx;
};

/* Builds the union of `n` groups' rules for one direction. */
void sg_set_build(struct arena *a, const struct sg *const *groups, const struct m_sg *const *models,
		  int n, bool egress, const struct sg_resolver *r, struct sg_set *out);

/* True if some rule admits the packet.  Ingress matches the source address,
 * egress the destination.  *rule gets an admitting rule, a world rule when
 * one admits it (that is what decides whether the flow is tracked). */
bool sg_match(const struct sg_set *s, const struct packet *p, bool egress,
	      const struct sg_rule **rule);

/* SPEC §4 "Untracked flows": a TCP or UDP flow is not tracked when a world
 * rule admits it and the other direction admits all ports to the world.
 * The packet may be either way of such a flow: the request admitted by
 * `same` (the set that admitted it, `admitting`), or a reply whose request
 * `opposite` would admit by a world rule while `same` is all-open. */
bool sg_flow_untracked(const struct sg_set *same, const struct sg_set *opposite,
		       const struct sg_rule *admitting, const struct packet *p, bool egress);

#endif
