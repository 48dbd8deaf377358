/* The compiled policy: immutable once built, shared read-only by every
 * worker, replaced whole on reload.  Built from a model (which it takes
 * ownership of), it resolves references (groups, prefix lists, subnets) and
 * prepares the lookups of the packet path:
 *   address -> interface (hash), address -> subnet (sorted ranges),
 *   exempt addresses (SPEC §5), each subnet's NACL, each interface's SG sets. */
#ifndef VPCFW_POLICY_H
#define VPCFW_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vpcfw/addr.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/diag.h"
#include "vpcfw/model.h"
#include "vpcfw/nacl.h"
#include "vpcfw/sg.h"

struct vpc {
	const char *id;
	const struct m_vpc *m;
	struct ip_addr dns;             /* primary IPv4 CIDR base + 2 */
	bool has_dns;
};

struct subnet {
	const char *id;
	const struct m_subnet *m;
	const struct vpc *vpc;          /* may be NULL */
	const struct nacl *nacl;        /* NULL: the VPC has no NACL at all: allow */
	int index;
};

struct iface {
	const char *id;
	const struct m_eni *m;
	const struct subnet *subnet;    /* NULL: unknown subnet, not enforced */
	uint32_t ct_id;                 /* stable across reloads (conntrack key) */
	struct ip_addr primary;         /* primary private address (flow logs) */
	int primary_family;
	const struct sg **groups;
	int n_groups;
	const struct sg_set *in, *out;  /* compiled union of the groups' rules,
	                                   shared by the interfaces that carry
	                                   the same groups in the same order */
	uint32_t sg_hit_in, sg_hit_out; /* counter slot of rule 0 of in / out
	                                   (each rule's slot adds its hit) */
	bool sg_applies;                /* the interface lists security groups;
	                                   without any (NAT gateways, transit
	                                   gateway attachments, ...) only the
	                                   network ACLs filter its traffic */
	bool source_dest_check;
	int ifindex_hint;               /* bound Linux device, -1 if none */
	const char *device;             /* InterfaceBindings device, or NULL */
	uint32_t tcp_established_timeout, udp_timeout, udp_stream_timeout; /* seconds */
	int index;
	uint32_t hit;                   /* first of its IFACE_HITS counter slots */
};

struct sg {
	const char *id;
	const struct m_sg *m;
	struct addr_set members;        /* private addresses of every interface
	                                   carrying the group (SPEC §4 Decision) */
	int index;
};

/* Per-interface counter slots: packets from it (out) and to it (in). */
enum { IFACE_HIT_OUT_ACCEPT, IFACE_HIT_OUT_REJECT, IFACE_HIT_IN_ACCEPT, IFACE_HIT_IN_REJECT,
       IFACE_HITS };

struct host_slot {
	struct ip_addr addr;
	const struct iface *iface;      /* NULL: empty slot */
};

/* A prefix delegated to an interface (Ipv4Prefixes / Ipv6Prefixes). */
struct prefix_slot {
	struct cidr cidr;
	const struct iface *iface;
};

struct subnet_range {
	struct ip_addr first, last;
	const struct subnet *subnet;
	bool v6;
};

/* Interfaces by a string of theirs (id, bound device): open addressing,
 * the first interface in configuration order for a string. */
struct iface_map {
	const struct iface **slots;
	uint32_t mask;
};

struct policy {
	struct model *model;            /* owned */
	uint64_t generation;

	struct vpc *vpcs;               int n_vpcs;
	struct subnet *subnets;         int n_subnets;
	struct nacl *nacls;             int n_nacls;
	struct sg *sgs;                 int n_sgs;
	struct iface *ifaces;           int n_ifaces;

	struct iface_map by_id, by_device;
	struct host_slot *hosts;        /* open addressing, power-of-two size */
	uint32_t host_mask;
	struct prefix_slot *prefixes;   /* sorted by network, disjoint */
	int n_prefixes;
	struct subnet_range *ranges;    /* sorted by first, non-overlapping */
	int n_ranges;
	struct ip_addr *vpc_dns;        /* sorted */
	int n_vpc_dns;

	/* Counter slots of the packet path (pipeline.h, "Counters"): rules,
	 * then IFACE_HITS per interface from iface_hit_base. */
	uint32_t n_hits;
	uint32_t iface_hit_base;

	/* Vpcfw section, with defaults applied */
	uint32_t conntrack_max;
	bool admit_related_icmp;
	bool tcp_be_liberal;
	bool tcp_loose;
	struct ct_fairness fairness;    /* PerSource*: flood fairness, beyond AWS */
};

/* Builds a policy from m (ownership passes to the policy even on failure).
 * Returns NULL when d has errors (or warnings under strict). */
struct policy *policy_build(struct model *m, struct diag *d);
void policy_free(struct policy *p);

/* The interface an address belongs to: one of its private addresses, or
 * inside one of its delegated prefixes.  Hash, then binary search. */
const struct iface *policy_iface_by_addr(const struct policy *p, const struct ip_addr *a);
/* Does f own a (an address of f or inside one of f's prefixes)?  The
 * source/destination check. */
bool policy_iface_owns(const struct policy *p, const struct iface *f, const struct ip_addr *a);
const struct subnet *policy_subnet_by_addr(const struct policy *p, const struct ip_addr *a);
/* By id or InterfaceBindings device: a hash lookup (callers loop over
 * bindings, mirror sessions and saved flows). */
const struct iface *policy_iface_by_id(const struct policy *p, const char *id);
const struct iface *policy_iface_by_device(const struct policy *p, const char *device);
/* SPEC §5: link-local, AWS service range, subnet reserved, VPC DNS.  `s` is
 * the address's subnet if the caller already looked it up (may be NULL). */
bool policy_is_exempt(const struct policy *p, const struct ip_addr *a, const struct subnet *s);

/* --print-config: what vpcfw understood, for a person to check. */
void policy_print(const struct policy *p, FILE *out);

/* Interned interface ids: the same id gets the same number for the life of
 * the process, so connection tracking survives reloads. */
uint32_t policy_intern_iface(const char *id);
void policy_intern_reset(void); /* tests and exit only */

#endif
