/* Network ACLs (SPEC §3; VPC user guide "vpc-network-acls"). */
#include "vpcfw/nacl.h"

#include <stdlib.h>

static int by_number(const void *a, const void *b)
{
	const struct nacl_rule *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

void nacl_compile(struct arena *a, const struct m_nacl *m, struct nacl *out)
{
	out->id = m->id;
	out->m = m;
	out->vpc_id = m->vpc_id;
	out->is_default = m->is_default;
	for (int dir = 0; dir < 2; dir++) {
		for (int fam = 0; fam < 2; fam++) {
			struct nacl_list *l = &out->lists[dir][fam];
			l->rules = arena_calloc(a, (size_t)m->n_entries + 1, sizeof(*l->rules));
			l->n = 0;
			for (int i = 0; i < m->n_entries; i++) {
				const struct m_nacl_entry *e = &m->entries[i];
				if ((e->egress ? NACL_OUTBOUND : NACL_INBOUND) != dir)
					continue;
				if ((e->cidr.family == FAMILY_V6) != fam)
					continue;
				/* The '*' rules are the implicit deny, built into nacl_eval. */
				if (e->number > 32766)
					continue;
				struct nacl_rule *r = &l->rules[l->n++];
				r->number = e->number;
				r->allow = e->allow;
				r->proto = (int16_t)e->proto;
				r->match_ports = e->has_ports &&
						 (e->proto == PROTO_TCP || e->proto == PROTO_UDP);
				r->port_from = e->port_from;
				r->port_to = e->port_to;
				r->icmp_type = -1;
				r->icmp_code = -1;
				/* ICMPv6 (58) with an IPv4 CIDR matches every type (SPEC §3). */
				if (e->has_icmp && (e->proto == PROTO_ICMP ||
						    (e->proto == PROTO_ICMPV6 && fam == 1))) {
					r->icmp_type = (int16_t)e->icmp_type;
					r->icmp_code = (int16_t)e->icmp_code;
				}
				r->cidr = e->cidr;
				r->net = e->cidr.net;
				r->mask = addr_mask(e->cidr.len);
				r->m = e;
			}
			qsort(l->rules, (size_t)l->n, sizeof(*l->rules), by_number);
		}
	}
}

static bool rule_matches(const struct nacl_rule *r, const struct packet *p,
			 const struct ip_addr *peer)
{
	if ((peer->hi & r->mask.hi) != r->net.hi || (peer->lo & r->mask.lo) != r->net.lo)
		return false;
	if (r->proto != RULE_PROTO_ALL && r->proto != p->proto)
		return false;
	/* A non-first fragment carries no ports or ICMP type.  As routers do
	 * (RFC 1858 and Cisco's ACL fragment rules): an allow rule whose other
	 * fields match admits it (the datagram cannot be reassembled without
	 * its first fragment, which was judged on its ports), and a deny rule
	 * that names ports cannot be said to match it. */
	if (!(p->flags & PKT_F_L4) && (r->match_ports || r->icmp_type >= 0))
		return r->allow;
	if (r->match_ports)
		return p->dport >= r->port_from && p->dport <= r->port_to;
	if (r->icmp_type >= 0) {
		if (p->icmp_type != r->icmp_type)
			return false;
		if (r->icmp_code >= 0 && p->icmp_code != r->icmp_code)
			return false;
	}
	return true;
}

bool nacl_eval(const struct nacl *n, enum nacl_dir dir, const struct packet *p,
	       const struct nacl_rule **rule)
{
	const struct nacl_list *l = &n->lists[dir][p->family == FAMILY_V6];
	const struct ip_addr *peer = dir == NACL_INBOUND ? &p->src : &p->dst;

	for (int i = 0; i < l->n; i++) {
		if (rule_matches(&l->rules[i], p, peer)) {
			*rule = &l->rules[i];
			return l->rules[i].allow;
		}
	}
	*rule = NULL;
	return false;
}
