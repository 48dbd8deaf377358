/* Exempt addresses and the requests to them (SPEC §5); see exempt.h. */
#include "vpcfw/exempt.h"

#include "vpcfw/packet.h"
#include "vpcfw/policy.h"

static bool is_v4(const struct ip_addr *a)
{
	return a->hi == 0 && (a->lo >> 32) == 0xffff;
}

static bool is_link_local(const struct ip_addr *a)
{
	/* 169.254.0.0/16, fe80::/10 */
	return (is_v4(a) && (a->lo >> 16) == 0xffffa9feULL) || (a->hi >> 54) == (0xfe80ULL >> 6);
}

enum exempt_kind exempt_kind(const struct policy *pol, const struct ip_addr *a,
			     const struct subnet *s)
{
	if (is_link_local(a))
		return EXEMPT_LINK_LOCAL;
	if ((a->hi >> 32) == 0xfd000ec2ULL)
		return EXEMPT_SERVICE;
	if (s) {
		/* network, router (+1), DNS (+2), reserved (+3) and last address
		 * (subnet-sizing: "IP addresses reserved in each subnet") */
		const struct m_subnet *ms = s->m;
		const struct cidr *c = NULL;
		if (is_v4(a)) {
			c = ms->has4 ? &ms->cidr4 : NULL;
		} else {
			for (int i = 0; i < ms->n_cidr6; i++)
				if (cidr_contains(&ms->cidr6[i], a)) {
					c = &ms->cidr6[i];
					break;
				}
		}
		if (c && cidr_contains(c, a)) {
			struct ip_addr last = cidr_last(c);
			if (addr_eq(a, &c->net) || addr_eq(a, &last))
				return EXEMPT_SUBNET_EDGE;
			if (a->hi == c->net.hi && a->lo - c->net.lo <= 3)
				return EXEMPT_RESERVED;
		}
	}
	const struct addr_set dns = { .addrs = pol->vpc_dns, .n = pol->n_vpc_dns };
	return addr_set_contains(&dns, a) ? EXEMPT_RESERVED : EXEMPT_NONE;
}

bool exempt_on_link(const struct ip_addr *a)
{
	if (is_link_local(a))
		return true;
	if (is_v4(a))
		return ((a->lo >> 28) & 0xf) == 0xe || (uint32_t)a->lo == 0xffffffffu;
	return (a->hi >> 56) == 0xff; /* ff00::/8 */
}

static uint64_t timeout_ns(uint8_t proto)
{
	uint64_t s;

	switch (proto) {
	case PROTO_TCP: s = CT_DEFAULT_TCP_ESTABLISHED; break;
	case PROTO_UDP: s = CT_DEFAULT_UDP_STREAM; break;
	case PROTO_ICMP:
	case PROTO_ICMPV6: s = CT_TIMEOUT_ICMP; break;
	default: s = CT_TIMEOUT_OTHER; break;
	}
	return s * 1000000000ull;
}

static bool same(const struct ct_tuple *x, const struct ct_tuple *y)
{
	return x->proto == y->proto && x->sport == y->sport && x->dport == y->dport &&
	       addr_eq(&x->src, &y->src) && addr_eq(&x->dst, &y->dst);
}

void exempt_flow_note(struct exempt_flows *f, const struct ct_tuple *req, uint64_t hash,
		      uint64_t now_ns)
{
	struct exempt_flow *set = f->set[hash % EXEMPT_FLOW_SETS], *w = &set[0];

	for (int i = 0; i < EXEMPT_FLOW_WAYS; i++) {
		struct exempt_flow *e = &set[i];
		if (e->expires_ns > now_ns && same(&e->req, req)) {
			w = e;
			break;
		}
		/* else the free or expired slot, else the least recently seen */
		bool free = e->expires_ns <= now_ns, wfree = w->expires_ns <= now_ns;
		if ((free && !wfree) || (free == wfree && e->seen_ns < w->seen_ns))
			w = e;
	}
	w->req = *req;
	w->seen_ns = now_ns;
	w->expires_ns = now_ns + timeout_ns(req->proto);
}

bool exempt_flow_known(const struct exempt_flows *f, const struct ct_tuple *req, uint64_t hash,
		       uint64_t now_ns)
{
	const struct exempt_flow *set = f->set[hash % EXEMPT_FLOW_SETS];

	for (int i = 0; i < EXEMPT_FLOW_WAYS; i++)
		if (set[i].expires_ns > now_ns && same(&set[i].req, req))
			return true;
	return false;
}
