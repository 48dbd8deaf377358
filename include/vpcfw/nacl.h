/* Network ACLs: numbered, stateless, first match wins (SPEC §3). */
#ifndef VPCFW_NACL_H
#define VPCFW_NACL_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcfw/addr.h"
#include "vpcfw/arena.h"
#include "vpcfw/model.h"
#include "vpcfw/packet.h"

enum nacl_dir { NACL_INBOUND = 0, NACL_OUTBOUND = 1 };

struct nacl_rule {
	struct ip_addr net, mask;       /* the CIDR, with its mask precomputed */
	uint32_t number;
	bool allow;
	int16_t proto;                  /* RULE_PROTO_ALL or 0..255 */
	bool match_ports;               /* tcp/udp with a PortRange */
	uint16_t port_from, port_to;
	int16_t icmp_type, icmp_code;   /* -1 = all; meaningful for icmp/icmpv6 */
	struct cidr cidr;
	const struct m_nacl_entry *m;
	uint32_t hit;                   /* counter slot (policy.c; pipeline.h) */
};

/* Rules of one direction and family, in number order. */
struct nacl_list {
	struct nacl_rule *rules;
	int n;
	uint32_t star_hit;              /* counter slot of the implicit '*' rule */
};

struct nacl {
	const char *id;
	const struct m_nacl *m;
	const char *vpc_id;
	bool is_default;
	struct nacl_list lists[2][2];   /* [enum nacl_dir][0 = IPv4, 1 = IPv6] */
	int index;
};

/* Compiles a model NACL (entries sorted, '*' rules 32767/32768 dropped: the
 * implicit deny is built in). */
void nacl_compile(struct arena *a, const struct m_nacl *m, struct nacl *out);

/* Evaluates the packet against one direction: inbound matches the source
 * address, outbound the destination; ports are destination ports.  Returns
 * true to allow.  *rule is the deciding rule, NULL for the implicit '*'. */
bool nacl_eval(const struct nacl *n, enum nacl_dir dir, const struct packet *p,
	       const struct nacl_rule **rule);

#endif
