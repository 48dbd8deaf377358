/* Security groups (SPEC §4; VPC user guide "security-group-rules",
 * "security-group-connection-tracking"). */
#include "vpcfw/sg.h"

#include <stdlib.h>
#include <string.h>

#include "vpcfw/xmalloc.h"

static int proto_class(int proto)
{
	switch (proto) {
	case PROTO_TCP: return SGC_TCP;
	case PROTO_UDP: return SGC_UDP;
	case PROTO_ICMP: return SGC_ICMP;
	case PROTO_ICMPV6: return SGC_ICMPV6;
	default: return SGC_OTHER;
	}
}

static bool is_port_proto(int proto)
{
	return proto == PROTO_TCP || proto == PROTO_UDP;
}

static bool all_ports(const struct sg_rule *r)
{
	return r->proto == RULE_PROTO_ALL || !is_port_proto(r->proto) ||
	       (r->from <= 0 && r->to >= 65535);
}

static void add_rule(struct sg_rule *rules, int *n, const struct sg *g, const struct m_sg_rule *mr,
		     const struct m_peer *pe, bool egress, enum sg_peer peer, const struct cidr *c,
		     const struct addr_set *set)
{
	struct sg_rule *r = &rules[(*n)++];
	r->src_peer = pe;
	r->proto = (int16_t)mr->proto;
	r->from = mr->from;
	r->to = mr->to;
	if (is_port_proto(mr->proto) && (mr->from < 0 || mr->to < 0)) {
		r->from = 0;
		r->to = 65535;
	}
	r->peer = peer;
	if (c) {
		r->cidr = *c;
		r->family = c->family;
		r->world = cidr_is_world(c);
	}
	r->set = set;
	r->group = g;
	r->m = mr;
	r->egress = egress;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Above this many candidate slots in one index, fall back to the plain
 * port-independent list: memory stays bounded whatever the rules. */
enum { SG_INDEX_MAX_SLOTS = 1 << 20 };

/* A ranged rule of class cls: in the port index rather than the plain list. */
static bool ranged_in(const struct sg_rule *r, int cls)
{
	return r->proto != RULE_PROTO_ALL && proto_class(r->proto) == cls && cls <= SGC_UDP &&
	       !all_ports(r);
}

/* The interval starting at port (every rule's from is a boundary). */
static int bound_index(const uint32_t *b, int n, uint32_t port)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (b[mid] <= port)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* One past the last interval a range ending at `to` covers. */
static int bound_end(const uint32_t *b, int n, uint32_t to)
{
	return to >= 65535 ? n : bound_index(b, n, to + 1);
}

static void build_index(struct arena *a, struct sg_set *s, int cls)
{
	struct sg_index *ix = &s->idx[cls];
	int n_any = 0, n_ranged = 0;

	for (int i = 0; i < s->n; i++) {
		const struct sg_rule *r = &s->rules[i];
		if (r->proto != RULE_PROTO_ALL && proto_class(r->proto) != cls)
			continue;
		if (cls <= SGC_UDP && !all_ports(r))
			n_ranged++;
		else
			n_any++;
	}
	ix->any = arena_calloc(a, (size_t)(n_any + n_ranged) + 1, sizeof(*ix->any));
	if (n_ranged) {
		uint32_t *pts = arena_calloc(a, (size_t)n_ranged * 2 + 1, sizeof(*pts));
		int np = 0;
		pts[np++] = 0;
		for (int i = 0; i < s->n; i++) {
			const struct sg_rule *r = &s->rules[i];
			if (r->proto == RULE_PROTO_ALL || proto_class(r->proto) != cls || all_ports(r))
				continue;
			pts[np++] = (uint32_t)r->from;
			pts[np++] = (uint32_t)r->to + 1;
		}
		qsort(pts, (size_t)np, sizeof(*pts), cmp_u32);
		int nb = 0;
		for (int i = 0; i < np; i++)
			if (pts[i] <= 65535 && (nb == 0 || pts[i] != pts[nb - 1]))
				pts[nb++] = pts[i];
		ix->bounds = pts;
		ix->n_bounds = nb;
		ix->off = arena_calloc(a, (size_t)nb + 1, sizeof(*ix->off));
		/* A sweep over the boundaries: each ranged rule covers the
		 * intervals [first, last] of its range, found by binary search;
		 * counts by a difference array, then a fill in rule order (the
		 * order scan relies on).  O(n log n + slots). */
		size_t *cnt = xcalloc((size_t)nb + 1, sizeof(*cnt));
		for (int i = 0; i < s->n; i++) {
			const struct sg_rule *r = &s->rules[i];
			if (ranged_in(r, cls) && r->from <= r->to) {
				cnt[bound_index(pts, nb, (uint32_t)r->from)]++;
				cnt[bound_end(pts, nb, (uint32_t)r->to)]--;
			}
		}
		size_t total = 0, run = 0;
		for (int b = 0; b < nb; b++) {
			run += cnt[b]; /* wraps back on the decrements: unsigned is exact */
			ix->off[b] = (uint32_t)(total > SG_INDEX_MAX_SLOTS ? 0 : total);
			total += run;
		}
		if (total > SG_INDEX_MAX_SLOTS) {
			ix->n_bounds = 0; /* too many: every rule goes to the plain list */
			n_ranged = 0;
		} else {
			ix->off[nb] = (uint32_t)total;
			ix->cand = arena_calloc(a, total + 1, sizeof(*ix->cand));
			for (int b = 0; b < nb; b++)
				cnt[b] = ix->off[b];
			for (int i = 0; i < s->n; i++) {
				const struct sg_rule *r = &s->rules[i];
				if (!ranged_in(r, cls))
					continue;
				int e = bound_end(pts, nb, (uint32_t)r->to);
				for (int b = bound_index(pts, nb, (uint32_t)r->from); b < e; b++)
					ix->cand[cnt[b]++] = r;
			}
		}
		free(cnt);
	}
	for (int i = 0; i < s->n; i++) {
		const struct sg_rule *r = &s->rules[i];
		if (r->proto != RULE_PROTO_ALL && proto_class(r->proto) != cls)
			continue;
		if (cls <= SGC_UDP && !all_ports(r) && n_ranged)
			continue;
		ix->any[ix->n_any++] = r;
	}
}

void sg_set_build(struct arena *a, const struct sg *const *groups, const struct m_sg *const *models,
		  int n, bool egress, const struct sg_resolver *res, struct sg_set *out)
{
	int cap = 0;

	memset(out, 0, sizeof(*out));
	for (int g = 0; g < n; g++) {
		const struct m_sg *m = models[g];
		int nr = egress ? m->n_out : m->n_in;
		const struct m_sg_rule *rules = egress ? m->out : m->in;
		for (int i = 0; i < nr; i++)
			for (int k = 0; k < rules[i].n_peers; k++) {
				const struct m_peer *pe = &rules[i].peers[k];
				int npl = 0;
				if (pe->kind == PEER_PREFIX_LIST && res->prefix_list(res->ctx, pe->ref, &npl))
					cap += npl > 0 ? npl : 1;
				else
					cap++;
			}
	}
	out->rules = arena_calloc(a, (size_t)cap + 1, sizeof(*out->rules));
	for (int g = 0; g < n; g++) {
		const struct m_sg *m = models[g];
		int nr = egress ? m->n_out : m->n_in;
		const struct m_sg_rule *rules = egress ? m->out : m->in;
		for (int i = 0; i < nr; i++) {
			const struct m_sg_rule *mr = &rules[i];
			for (int k = 0; k < mr->n_peers; k++) {
				const struct m_peer *pe = &mr->peers[k];
				if (pe->kind == PEER_CIDR) {
					add_rule(out->rules, &out->n, groups[g], mr, pe, egress, SGP_CIDR,
						 &pe->cidr, NULL);
				} else if (pe->kind == PEER_PREFIX_LIST) {
					int npl = 0;
					const struct cidr *c = res->prefix_list(res->ctx, pe->ref, &npl);
					if (!c || npl == 0)
						add_rule(out->rules, &out->n, groups[g], mr, pe, egress,
							 SGP_NONE, NULL, NULL);
					for (int j = 0; c && j < npl; j++)
						add_rule(out->rules, &out->n, groups[g], mr, pe, egress,
							 SGP_CIDR, &c[j], NULL);
				} else {
					const struct addr_set *set = res->group_members(res->ctx, pe->ref);
					add_rule(out->rules, &out->n, groups[g], mr, pe, egress,
						 set ? SGP_SET : SGP_NONE, NULL, set);
				}
			}
		}
	}
	/* Rules whose peer is the world come first (when such a rule admits
	 * a packet, sg_match reports it, and that decides tracking), the given
	 * order kept within each part: a stable partition, linear. */
	if (out->n > 1) {
		struct sg_rule *tmp = xcalloc((size_t)out->n, sizeof(*tmp));
		int k = 0;
		for (int pass = 1; pass >= 0; pass--)
			for (int i = 0; i < out->n; i++)
				if ((int)out->rules[i].world == pass)
					tmp[k++] = out->rules[i];
		memcpy(out->rules, tmp, (size_t)out->n * sizeof(*tmp));
		free(tmp);
	}
	for (int i = 0; i < out->n; i++)
		out->rules[i].hit = (uint32_t)i;
	for (int i = 0; i < out->n; i++) {
		const struct sg_rule *r = &out->rules[i];
		if (!r->world || !(r->proto == RULE_PROTO_ALL || is_port_proto(r->proto)) || !all_ports(r))
			continue;
		int fam = r->family == FAMILY_V6;
		if (r->proto == RULE_PROTO_ALL || r->proto == PROTO_TCP)
			out->all_ports_world[fam][0] = true;
		if (r->proto == RULE_PROTO_ALL || r->proto == PROTO_UDP)
			out->all_ports_world[fam][1] = true;
	}
	for (int cls = 0; cls < SGC_COUNT; cls++)
		build_index(a, out, cls);
}

static inline bool peer_matches(const struct sg_rule *r, const struct packet *p,
				const struct ip_addr *peer)
{
	switch (r->peer) {
	case SGP_CIDR:
		return r->family == p->family && cidr_contains(&r->cidr, peer);
	case SGP_SET:
		return addr_set_contains(r->set, peer);
	default:
		return false;
	}
}

static inline bool l4_matches(const struct sg_rule *r, const struct packet *p)
{
	if (r->proto == RULE_PROTO_ALL)
		return true;
	if (r->proto != p->proto)
		return false;
	switch (r->proto) {
	case PROTO_TCP:
	case PROTO_UDP:
		/* a non-first fragment has no ports: see nacl.c */
		if (!(p->flags & PKT_F_L4))
			return true;
		return p->dport >= r->from && p->dport <= r->to;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		if (r->from < 0)
			return true;
		if (!(p->flags & PKT_F_L4))
			return true;
		if (p->icmp_type != r->from)
			return false;
		return r->to < 0 || p->icmp_code == r->to;
	default:
		return true;
	}
}

/* Finds the first admitting rule, preferring world rules (they sort first
 * within each list; across the two lists a world rule of either wins). */
static const struct sg_rule *scan(const struct sg_rule *const *list, int n, const struct packet *p,
				  const struct ip_addr *peer)
{
	for (int i = 0; i < n; i++)
		if (l4_matches(list[i], p) && peer_matches(list[i], p, peer))
			return list[i];
	return NULL;
}

bool sg_match(const struct sg_set *s, const struct packet *p, bool egress,
	      const struct sg_rule **rule)
{
	const struct ip_addr *peer = egress ? &p->dst : &p->src;
	const struct sg_index *ix = &s->idx[proto_class(p->proto)];
	const struct sg_rule *hit = scan(ix->any, ix->n_any, p, peer);

	if (!(p->flags & PKT_F_L4) && ix->n_bounds) {
		/* no port: any ranged rule of the protocol may admit it */
		if (!hit || !hit->world) {
			const struct sg_rule *h2 = scan(ix->cand, (int)ix->off[ix->n_bounds], p, peer);
			if (h2 && (!hit || h2->world))
				hit = h2;
		}
	} else if ((!hit || !hit->world) && ix->n_bounds) {
		/* last interval whose start <= dport */
		int lo = 0, hi = ix->n_bounds - 1;
		while (lo < hi) {
			int mid = (lo + hi + 1) / 2;
			if (ix->bounds[mid] <= p->dport)
				lo = mid;
			else
				hi = mid - 1;
		}
		const struct sg_rule *h2 = scan(ix->cand + ix->off[lo],
						(int)(ix->off[lo + 1] - ix->off[lo]), p, peer);
		if (h2 && (!hit || h2->world))
			hit = h2;
	}
	*rule = hit;
	return hit != NULL;
}

bool sg_flow_untracked(const struct sg_set *same, const struct sg_set *opposite,
		       const struct sg_rule *admitting, const struct packet *p, bool egress)
{
	if (p->proto != PROTO_TCP && p->proto != PROTO_UDP)
		return false;
	int fam = p->family == FAMILY_V6, udp = p->proto == PROTO_UDP;
	if (admitting && admitting->world && opposite->all_ports_world[fam][udp])
		return true;
	if (!same->all_ports_world[fam][udp])
		return false;
	/* the reply of an untracked flow started the other way */
	struct packet rev = *p;
	rev.src = p->dst;
	rev.dst = p->src;
	rev.sport = p->dport;
	rev.dport = p->sport;
	const struct sg_rule *r;
	return sg_match(opposite, &rev, !egress, &r) && r->world;
}
