/* The compiled policy (see policy.h): reference resolution, cross-object
 * checks, lookups and --print-config. */
#include "vpcfw/policy.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/idmap.h"
#include "vpcfw/xmalloc.h"

/* The delegated prefix holding a (p->prefixes is sorted and disjoint). */
static const struct prefix_slot *prefix_of(const struct policy *p, const struct ip_addr *a)
{
	int lo = 0, hi = p->n_prefixes - 1, at = -1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		if (addr_cmp(&p->prefixes[mid].cidr.net, a) <= 0) {
			at = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return at >= 0 && cidr_contains(&p->prefixes[at].cidr, a) ? &p->prefixes[at] : NULL;
}

/* ------------------------------------------------------------ interning */

/* The ids in order of interning, and an open-addressing table of their
 * numbers (0 = empty) so that interning n interfaces is linear. */
static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static char **intern_ids;
static uint32_t intern_n, intern_cap;
static uint32_t *intern_tab;
static uint32_t intern_mask;

static void intern_place(uint32_t num)
{
	uint32_t i = (uint32_t)idmap_hash(intern_ids[num - 1]) & intern_mask;
	while (intern_tab[i])
		i = (i + 1) & intern_mask;
	intern_tab[i] = num;
}

uint32_t policy_intern_iface(const char *id)
{
	uint32_t r;

	pthread_mutex_lock(&intern_lock);
	if (intern_tab) {
		uint32_t i = (uint32_t)idmap_hash(id) & intern_mask;
		while ((r = intern_tab[i]) != 0) {
			if (strcmp(intern_ids[r - 1], id) == 0)
				goto out;
			i = (i + 1) & intern_mask;
		}
	}
	if (intern_n == intern_cap) {
		uint32_t cap = intern_cap ? intern_cap * 2 : 64;
		char **n = xreallocarray(intern_ids, cap, sizeof(*n));
		uint32_t *tab = xcalloc((size_t)cap * 2, sizeof(*tab));
		intern_ids = n;
		intern_cap = cap;
		free(intern_tab);
		intern_tab = tab; /* at most half full */
		intern_mask = cap * 2 - 1;
		for (uint32_t k = 1; k <= intern_n; k++)
			intern_place(k);
	}
	intern_ids[intern_n] = xstrdup(id);
	r = ++intern_n;
	intern_place(r);
out:
	pthread_mutex_unlock(&intern_lock);
	return r; /* 0 is never an interface */
}

void policy_intern_reset(void)
{
	pthread_mutex_lock(&intern_lock);
	for (uint32_t i = 0; i < intern_n; i++)
		free(intern_ids[i]);
	free(intern_ids);
	free(intern_tab);
	intern_ids = NULL;
	intern_tab = NULL;
	intern_n = intern_cap = intern_mask = 0;
	pthread_mutex_unlock(&intern_lock);
}

/* ------------------------------------------------------------ building */

struct builder {
	struct policy *p;
	struct model *m;
	struct arena *a;
	struct diag *d;
	struct idmap vpcs, subnets, nacls, sgs, enis, pls;
};

static const struct cidr *resolve_prefix_list(void *ctx, const char *id, int *n)
{
	struct builder *b = ctx;
	int i = idmap_get(&b->pls, id);
	if (i < 0) {
		*n = 0;
		return NULL;
	}
	*n = b->m->pls[i].n_cidrs;
	return b->m->pls[i].cidrs;
}

static const struct addr_set *resolve_group(void *ctx, const char *id)
{
	struct builder *b = ctx;
	int i = idmap_get(&b->sgs, id);
	return i < 0 ? NULL : &b->p->sgs[i].members;
}

static int cmp_addr(const void *x, const void *y)
{
	return addr_cmp(x, y);
}

/* By network, a larger block before the blocks it holds. */
static int cmp_cidr(const void *x, const void *y)
{
	const struct cidr *a = x, *b = y;
	int c = addr_cmp(&a->net, &b->net);
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Sorts blocks and drops those inside another (CIDR blocks nest or are
 * disjoint), so that a binary search finds the one holding an address. */
static int disjoint_blocks(struct cidr *c, int n)
{
	int k = 0;
	qsort(c, (size_t)n, sizeof(*c), cmp_cidr);
	for (int j = 0; j < n; j++)
		if (k == 0 || !cidr_contains(&c[k - 1], &c[j].net))
			c[k++] = c[j];
	return k;
}

static void build_vpcs(struct builder *b)
{
	struct policy *p = b->p;
	p->n_vpcs = b->m->n_vpcs;
	p->vpcs = arena_calloc(b->a, (size_t)p->n_vpcs + 1, sizeof(*p->vpcs));
	p->vpc_dns = arena_calloc(b->a, (size_t)p->n_vpcs + 1, sizeof(*p->vpc_dns));
	for (int i = 0; i < p->n_vpcs; i++) {
		const struct m_vpc *mv = &b->m->vpcs[i];
		struct vpc *v = &p->vpcs[i];
		v->id = mv->id;
		v->m = mv;
		idmap_put(&b->vpcs, mv->id, i);
		if (mv->has_primary4 && mv->n_cidrs > 0) {
			/* "the base of the VPC network range plus two" (vpc-dns) */
			v->dns = addr_add(&mv->cidrs[0].net, 2);
			v->has_dns = true;
			p->vpc_dns[p->n_vpc_dns++] = v->dns;
		}
	}
	qsort(p->vpc_dns, (size_t)p->n_vpc_dns, sizeof(*p->vpc_dns), cmp_addr);
}

static void warn_missing(struct builder *b, const struct where *w, const char *field,
			 const char *what, const char *id, const char *consequence)
{
	char path[512];
	snprintf(path, sizeof(path), "%s%s%s", w->path ? w->path : "", w->path && *w->path ? "." : "",
		 field);
	diag_warn(b->d, w->file, path, "%s %s is not in the configuration; %s", what, id, consequence);
}

static void build_subnets(struct builder *b)
{
	struct policy *p = b->p;
	p->n_subnets = b->m->n_subnets;
	p->subnets = arena_calloc(b->a, (size_t)p->n_subnets + 1, sizeof(*p->subnets));
	for (int i = 0; i < p->n_subnets; i++) {
		const struct m_subnet *ms = &b->m->subnets[i];
		struct subnet *s = &p->subnets[i];
		s->id = ms->id;
		s->m = ms;
		s->index = i;
		idmap_put(&b->subnets, ms->id, i);
		int v = idmap_get(&b->vpcs, ms->vpc_id);
		if (v >= 0)
			s->vpc = &p->vpcs[v];
		else if (ms->vpc_id && b->m->n_vpcs > 0)
			warn_missing(b, &ms->where, "VpcId", "VPC", ms->vpc_id,
				     "its reserved VPC DNS address is not known");
	}
}

static void build_nacls(struct builder *b)
{
	struct policy *p = b->p;
	p->n_nacls = b->m->n_nacls;
	p->nacls = arena_calloc(b->a, (size_t)p->n_nacls + 1, sizeof(*p->nacls));
	for (int i = 0; i < p->n_nacls; i++) {
		const struct m_nacl *mn = &b->m->nacls[i];
		nacl_compile(b->a, mn, &p->nacls[i]);
		p->nacls[i].index = i;
		idmap_put(&b->nacls, mn->id, i);
		for (int k = 0; k < mn->n_subnets; k++) {
			int s = idmap_get(&b->subnets, mn->subnets[k]);
			if (s < 0) {
				diag_warn(b->d, mn->subnet_where[k].file, mn->subnet_where[k].path,
					  "subnet %s is not in the configuration; the association is ignored",
					  mn->subnets[k]);
				continue;
			}
			/* two NACLs claiming one subnet is config_check's error */
			if (!p->subnets[s].nacl)
				p->subnets[s].nacl = &p->nacls[i];
		}
	}
	/* Unassociated subnets take their VPC's default NACL (vpc-network-acls):
	 * the first default NACL of each VPC, and whether it has any, by map. */
	struct idmap any_nacl = { 0 }, default_nacl = { 0 };
	for (int i = 0; i < p->n_nacls; i++) {
		if (!p->nacls[i].vpc_id)
			continue;
		idmap_put(&any_nacl, p->nacls[i].vpc_id, i);
		if (p->nacls[i].is_default)
			idmap_put(&default_nacl, p->nacls[i].vpc_id, i);
	}
	for (int s = 0; s < p->n_subnets; s++) {
		struct subnet *sn = &p->subnets[s];
		if (sn->nacl)
			continue;
		const char *vpc_id = sn->m->vpc_id;
		bool vpc_has_nacl = idmap_get(&any_nacl, vpc_id) >= 0;
		int dflt = idmap_get(&default_nacl, vpc_id);
		if (dflt >= 0)
			sn->nacl = &p->nacls[dflt];
		if (!sn->nacl && vpc_has_nacl)
			diag_warn(b->d, sn->m->where.file, sn->m->where.path,
				  "subnet %s has no associated network ACL and its VPC's default "
				  "network ACL is not in the configuration; its traffic is allowed "
				  "as by a default network ACL",
				  sn->id);
		}
	idmap_free(&any_nacl);
	idmap_free(&default_nacl);
}

static void build_groups(struct builder *b)
{
	struct policy *p = b->p;
	struct model *m = b->m;

	p->n_sgs = m->n_sgs;
	p->sgs = arena_calloc(b->a, (size_t)p->n_sgs + 1, sizeof(*p->sgs));
	for (int i = 0; i < p->n_sgs; i++) {
		p->sgs[i].id = m->sgs[i].id;
		p->sgs[i].m = &m->sgs[i];
		p->sgs[i].index = i;
		idmap_put(&b->sgs, m->sgs[i].id, i);
	}
	for (int i = 0; i < m->n_pls; i++)
		idmap_put(&b->pls, m->pls[i].id, i);

	/* Members: every private address of every interface carrying the
	 * group (SPEC §4 Decision), whether or not the interface is enforced. */
	int *count = xcalloc((size_t)p->n_sgs + 1, sizeof(*count));
	for (int e = 0; e < m->n_enis; e++)
		for (int g = 0; g < m->enis[e].n_groups; g++) {
			int i = idmap_get(&b->sgs, m->enis[e].groups[g]);
			if (i >= 0)
				count[i] += m->enis[e].n_addrs + m->enis[e].n_prefixes;
		}
	for (int i = 0; i < p->n_sgs; i++) {
		p->sgs[i].members.addrs = arena_calloc(b->a, (size_t)count[i] + 1, sizeof(struct ip_addr));
		p->sgs[i].members.blocks = arena_calloc(b->a, (size_t)count[i] + 1, sizeof(struct cidr));
	}
	for (int e = 0; e < m->n_enis; e++)
		for (int g = 0; g < m->enis[e].n_groups; g++) {
			int i = idmap_get(&b->sgs, m->enis[e].groups[g]);
			if (i < 0)
				continue;
			struct addr_set *s = &p->sgs[i].members;
			for (int k = 0; k < m->enis[e].n_addrs; k++)
				s->addrs[s->n++] = m->enis[e].addrs[k].addr;
			/* a delegated prefix's addresses are private addresses of
			 * the member (issue #10) */
			for (int k = 0; k < m->enis[e].n_prefixes; k++)
				s->blocks[s->n_blocks++] = m->enis[e].prefixes[k];
		}
	free(count);
	for (int i = 0; i < p->n_sgs; i++) {
		struct addr_set *s = &p->sgs[i].members;
		s->n_blocks = disjoint_blocks(s->blocks, s->n_blocks);
		qsort(s->addrs, (size_t)s->n, sizeof(*s->addrs), cmp_addr);
		int k = 0;
		for (int j = 0; j < s->n; j++)
			if (k == 0 || !addr_eq(&s->addrs[k - 1], &s->addrs[j]))
				s->addrs[k++] = s->addrs[j];
		s->n = k;
	}

	/* Every reference a rule makes, resolved or warned about once. */
	for (int i = 0; i < m->n_sgs; i++) {
		for (int dir = 0; dir < 2; dir++) {
			const struct m_sg_rule *rules = dir ? m->sgs[i].out : m->sgs[i].in;
			int nr = dir ? m->sgs[i].n_out : m->sgs[i].n_in;
			for (int r = 0; r < nr; r++)
				for (int k = 0; k < rules[r].n_peers; k++) {
					const struct m_peer *pe = &rules[r].peers[k];
					if (pe->kind == PEER_GROUP && idmap_get(&b->sgs, pe->ref) < 0)
						diag_warn(b->d, pe->where.file, pe->where.path,
							  "security group %s is not in the configuration; "
							  "the reference matches nothing", pe->ref);
					if (pe->kind == PEER_PREFIX_LIST && idmap_get(&b->pls, pe->ref) < 0)
						diag_warn(b->d, pe->where.file, pe->where.path,
							  "prefix list %s is not in the configuration; "
							  "the reference matches nothing", pe->ref);
				}
		}
	}
}

static bool addr_in_subnet(const struct m_subnet *s, const struct m_eni_addr *a)
{
	if (a->family == FAMILY_V4)
		return s->has4 && cidr_contains(&s->cidr4, &a->addr);
	for (int i = 0; i < s->n_cidr6; i++)
		if (cidr_contains(&s->cidr6[i], &a->addr))
			return true;
	return false;
}

static void host_insert(struct builder *b, const struct ip_addr *a, const struct iface *ifc,
			const struct where *w)
{
	struct policy *p = b->p;
	uint32_t i = (uint32_t)addr_hash(a) & p->host_mask;
	while (p->hosts[i].iface) {
		if (addr_eq(&p->hosts[i].addr, a)) {
			char buf[ADDR_STRLEN];
			diag_warn(b->d, w->file, w->path,
				  "address %s is also on interface %s; packets to it are "
				  "attributed to %s",
				  addr_format(a, addr_family(a), buf), p->hosts[i].iface->id,
				  p->hosts[i].iface->id);
			return;
		}
		i = (i + 1) & p->host_mask;
	}
	p->hosts[i].addr = *a;
	p->hosts[i].iface = ifc;
}

/* Types whose interfaces belong to an instance (or a task or pod): AWS
 * gives them at least one security group (RunInstances and
 * CreateNetworkInterface use the VPC's default group when none is named).
 * Without InterfaceType the API's default, "interface", holds. */
static bool type_always_has_groups(const char *type)
{
	static const char *const t[] = { "interface", "efa", "efa-only", "trunk", "branch" };
	if (!type)
		return true;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(type, t[i]) == 0)
			return true;
	return false;
}

static int cmp_prefix(const void *x, const void *y)
{
	const struct prefix_slot *a = x, *b = y;
	int c = cmp_cidr(&a->cidr, &b->cidr);
	return c ? c : (a->iface->index > b->iface->index) - (a->iface->index < b->iface->index);
}

static bool cidr_same(const struct cidr *a, const struct cidr *b)
{
	return a->len == b->len && a->family == b->family && addr_eq(&a->net, &b->net);
}

static const struct where *prefix_where(const struct prefix_slot *s)
{
	const struct m_eni *me = s->iface->m;
	for (int k = 0; k < me->n_prefixes; k++)
		if (cidr_same(&me->prefixes[k], &s->cidr))
			return &me->prefix_where[k];
	return &me->where;
}

/* The delegated prefixes of the enforced interfaces, sorted and disjoint:
 * AWS hands a block to one interface only, and none of its addresses to
 * another interface, so an overlap is an error. */
static void build_prefixes(struct builder *b)
{
	struct policy *p = b->p;
	int n = 0;
	for (int e = 0; e < p->n_ifaces; e++)
		if (p->ifaces[e].subnet)
			n += p->ifaces[e].m->n_prefixes;
	p->prefixes = arena_calloc(b->a, (size_t)n + 1, sizeof(*p->prefixes));
	for (int e = 0; e < p->n_ifaces; e++) {
		const struct iface *f = &p->ifaces[e];
		for (int k = 0; f->subnet && k < f->m->n_prefixes; k++)
			p->prefixes[p->n_prefixes++] = (struct prefix_slot){ f->m->prefixes[k], f };
	}
	qsort(p->prefixes, (size_t)p->n_prefixes, sizeof(*p->prefixes), cmp_prefix);
	int k = 0;
	for (int j = 0; j < p->n_prefixes; j++) {
		const struct prefix_slot *prev = k ? &p->prefixes[k - 1] : NULL;
		if (prev && cidr_contains(&prev->cidr, &p->prefixes[j].cidr.net)) {
			char x[CIDR_STRLEN], y[CIDR_STRLEN];
			const struct where *w = prefix_where(&p->prefixes[j]);
			diag_error(b->d, w->file, w->path,
				   "prefix %s of interface %s overlaps prefix %s of interface %s",
				   cidr_format(&p->prefixes[j].cidr, x), p->prefixes[j].iface->id,
				   cidr_format(&prev->cidr, y), prev->iface->id);
			continue;
		}
		p->prefixes[k++] = p->prefixes[j];
	}
	p->n_prefixes = k;
	if (!k)
		return;
	/* an address of an interface inside a prefix of another */
	for (uint32_t i = 0; i <= p->host_mask; i++) {
		const struct host_slot *h = &p->hosts[i];
		const struct prefix_slot *s = h->iface ? prefix_of(p, &h->addr) : NULL;
		if (!s || s->iface == h->iface)
			continue;
		char x[ADDR_STRLEN], y[CIDR_STRLEN];
		diag_error(b->d, h->iface->m->where.file, h->iface->m->where.path,
			   "address %s of interface %s is inside prefix %s delegated to interface %s",
			   addr_format(&h->addr, addr_family(&h->addr), x), h->iface->id,
			   cidr_format(&s->cidr, y), s->iface->id);
	}
}

/* Interfaces carrying the same groups in the same order share one compiled
 * set per direction (the order decides which of two admitting rules is
 * reported): each distinct list is compiled once, so n interfaces over k
 * lists cost k compilations and n lookups.  An open-addressing map from the
 * list to the first interface that carried it. */
struct set_map {
	const struct iface **slots;
	uint32_t mask;
};

static uint64_t groups_hash(const struct sg *const *g, int n)
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < n; i++)
		h = (h ^ (uint64_t)(g[i]->index + 1)) * 1099511628211ULL;
	return h ^ (uint64_t)n;
}

static const struct sg **grow_groups(const struct sg ***buf, int *cap, int n)
{
	if (n + 1 > *cap) {
		int c = n + 1 > 16 ? n + 1 : 16;
		*buf = xreallocarray(*buf, (size_t)c, sizeof(**buf));
		*cap = c;
	}
	return *buf;
}

static void share_sets(struct builder *b, struct set_map *map, struct iface *f,
		       const struct sg *const *groups, int n, const struct sg_resolver *res)
{
	if (!map->slots) {
		uint32_t size = 16;
		while (size < (uint32_t)b->p->n_ifaces * 2 + 1)
			size <<= 1;
		map->slots = xcalloc(size, sizeof(*map->slots));
		map->mask = size - 1;
	}
	uint32_t i = (uint32_t)groups_hash(groups, n) & map->mask;
	for (const struct iface *o; (o = map->slots[i]) != NULL; i = (i + 1) & map->mask) {
		if (o->n_groups == n &&
		    (n == 0 || memcmp(o->groups, groups, (size_t)n * sizeof(*groups)) == 0)) {
			f->groups = o->groups;
			f->n_groups = n;
			f->in = o->in;
			f->out = o->out;
			return;
		}
	}
	map->slots[i] = f;
	f->groups = arena_calloc(b->a, (size_t)n + 1, sizeof(*f->groups));
	memcpy(f->groups, groups, (size_t)n * sizeof(*groups));
	f->n_groups = n;
	const struct m_sg **models = arena_calloc(b->a, (size_t)n + 1, sizeof(*models));
	for (int g = 0; g < n; g++)
		models[g] = groups[g]->m;
	struct sg_set *set = arena_calloc(b->a, 2, sizeof(*set));
	sg_set_build(b->a, f->groups, models, n, false, res, &set[0]);
	sg_set_build(b->a, f->groups, models, n, true, res, &set[1]);
	f->in = &set[0];
	f->out = &set[1];
}

static void build_ifaces(struct builder *b)
{
	struct policy *p = b->p;
	struct model *m = b->m;
	struct sg_resolver res = { resolve_prefix_list, resolve_group, b };
	int total_addrs = 0;
	struct set_map sets = { 0 };
	const struct sg **gbuf = NULL;
	int gcap = 0;

	p->n_ifaces = m->n_enis;
	p->ifaces = arena_calloc(b->a, (size_t)p->n_ifaces + 1, sizeof(*p->ifaces));
	for (int e = 0; e < m->n_enis; e++)
		total_addrs += m->enis[e].n_addrs;
	uint32_t size = 16;
	while (size < (uint32_t)total_addrs * 2 + 1)
		size <<= 1;
	p->hosts = arena_calloc(b->a, size, sizeof(*p->hosts));
	p->host_mask = size - 1;

	for (int e = 0; e < m->n_enis; e++) {
		const struct m_eni *me = &m->enis[e];
		struct iface *f = &p->ifaces[e];
		f->id = me->id;
		f->m = me;
		f->index = e;
		f->ct_id = policy_intern_iface(me->id);
		f->source_dest_check = me->source_dest_check;
		f->ifindex_hint = -1;
		f->tcp_established_timeout = me->timeouts.tcp_established ? me->timeouts.tcp_established
									  : CT_DEFAULT_TCP_ESTABLISHED;
		f->udp_timeout = me->timeouts.udp ? me->timeouts.udp : CT_DEFAULT_UDP;
		f->udp_stream_timeout = me->timeouts.udp_stream ? me->timeouts.udp_stream
								: CT_DEFAULT_UDP_STREAM;
		idmap_put(&b->enis, me->id, e);
		if (me->n_addrs > 0) {
			f->primary = me->addrs[0].addr;
			f->primary_family = me->addrs[0].family;
		}

		int s = idmap_get(&b->subnets, me->subnet_id);
		if (s < 0) {
			diag_warn(b->d, me->where.file, me->where.path,
				  "interface %s: subnet %s is not in the configuration; the "
				  "interface is not enforced",
				  me->id, me->subnet_id ? me->subnet_id : "(none)");
		} else {
			f->subnet = &p->subnets[s];
			for (int k = 0; k < me->n_addrs; k++) {
				if (addr_in_subnet(f->subnet->m, &me->addrs[k]))
					continue;
				char buf[ADDR_STRLEN];
				diag_error(b->d, me->where.file, me->where.path,
					   "address %s of interface %s is outside its subnet %s",
					   addr_format(&me->addrs[k].addr, me->addrs[k].family, buf),
					   me->id, f->subnet->id);
			}
			for (int k = 0; k < me->n_prefixes; k++) {
				const struct cidr *c = &me->prefixes[k];
				struct m_eni_addr first = { c->net, c->family, false };
				struct m_eni_addr last = { cidr_last(c), c->family, false };
				if (addr_in_subnet(f->subnet->m, &first) &&
				    addr_in_subnet(f->subnet->m, &last))
					continue;
				char buf[CIDR_STRLEN];
				diag_error(b->d, me->prefix_where[k].file, me->prefix_where[k].path,
					   "prefix %s of interface %s is outside its subnet %s",
					   cidr_format(c, buf), me->id, f->subnet->id);
			}
		}

		/* Interfaces AWS gives no security group (NAT gateways, transit
		 * gateway attachments, Gateway Load Balancers and their endpoints,
		 * Network Load Balancers created without groups) are filtered by
		 * their subnet's network ACLs only (vpc-security-groups). */
		f->sg_applies = me->n_groups > 0;
		if (!f->sg_applies && type_always_has_groups(me->type)) {
			char path[512];
			snprintf(path, sizeof(path), "%s.Groups", me->where.path ? me->where.path : "");
			diag_warn(b->d, me->where.file, path,
				  "interface %s (type %s) has no security group, which AWS does not "
				  "allow for this type; only network ACLs filter its traffic",
				  me->id, me->type ? me->type : "interface");
		}

		const struct sg **groups = grow_groups(&gbuf, &gcap, me->n_groups);
		int ng = 0;
		for (int g = 0; g < me->n_groups; g++) {
			int i = idmap_get(&b->sgs, me->groups[g]);
			if (i < 0) {
				diag_warn(b->d, me->group_where[g].file, me->group_where[g].path,
					  "security group %s is not in the configuration; it "
					  "admits nothing on %s",
					  me->groups[g], me->id);
				continue;
			}
			groups[ng++] = &p->sgs[i];
		}
		share_sets(b, &sets, f, groups, ng, &res);
		if (f->subnet)
			for (int k = 0; k < me->n_addrs; k++)
				host_insert(b, &me->addrs[k].addr, f, &me->where);
	}

	free(gbuf);
	free(sets.slots);
	build_prefixes(b);

	for (int i = 0; i < m->vpcfw.n_bindings; i++) {
		const struct m_binding *bd = &m->vpcfw.bindings[i];
		int e = idmap_get(&b->enis, bd->eni_id);
		if (e < 0) {
			diag_warn(b->d, bd->where.file, bd->where.path,
				  "interface %s is not in the configuration; the binding to %s "
				  "is ignored",
				  bd->eni_id, bd->device);
			continue;
		}
		p->ifaces[e].device = bd->device;
	}
}

static int cmp_range(const void *x, const void *y)
{
	const struct subnet_range *a = x, *b = y;
	int c = addr_cmp(&a->first, &b->first);
	return c ? c : (a->subnet->index > b->subnet->index) - (a->subnet->index < b->subnet->index);
}

static void build_ranges(struct builder *b)
{
	struct policy *p = b->p;
	int n = 0;
	for (int s = 0; s < p->n_subnets; s++)
		n += (p->subnets[s].m->has4 ? 1 : 0) + p->subnets[s].m->n_cidr6;
	p->ranges = arena_calloc(b->a, (size_t)n + 1, sizeof(*p->ranges));
	for (int s = 0; s < p->n_subnets; s++) {
		const struct m_subnet *ms = p->subnets[s].m;
		for (int k = -1; k < ms->n_cidr6; k++) {
			const struct cidr *c = k < 0 ? (ms->has4 ? &ms->cidr4 : NULL) : &ms->cidr6[k];
			if (!c)
				continue;
			struct subnet_range *r = &p->ranges[p->n_ranges++];
			r->first = c->net;
			r->last = cidr_last(c);
			r->subnet = &p->subnets[s];
			r->v6 = c->family == FAMILY_V6;
		}
	}
	qsort(p->ranges, (size_t)p->n_ranges, sizeof(*p->ranges), cmp_range);
	/* Subnets of different VPCs may overlap in a multi-VPC export; an address
	 * can only be looked up in one of them. */
	int k = 0;
	for (int i = 0; i < p->n_ranges; i++) {
		if (k > 0 && addr_cmp(&p->ranges[i].first, &p->ranges[k - 1].last) <= 0) {
			const struct m_subnet *ms = p->ranges[i].subnet->m;
			diag_warn(b->d, ms->where.file, ms->where.path,
				  "subnet %s overlaps subnet %s; addresses in the overlap are "
				  "attributed to %s",
				  ms->id, p->ranges[k - 1].subnet->id, p->ranges[k - 1].subnet->id);
			continue;
		}
		p->ranges[k++] = p->ranges[i];
	}
	p->n_ranges = k;
}

/* Counter slots: every compiled rule, each '*' rule, then the interfaces. */
static void number_hits(struct policy *p)
{
	uint32_t n = 0;

	for (int i = 0; i < p->n_nacls; i++)
		for (int d = 0; d < 2; d++)
			for (int f = 0; f < 2; f++) {
				struct nacl_list *l = &p->nacls[i].lists[d][f];
				for (int k = 0; k < l->n; k++)
					l->rules[k].hit = n++;
				l->star_hit = n++;
			}
	/* each interface's share of its (possibly shared) sets: rule k of
	 * f->in counts in slot f->sg_hit_in + k */
	for (int i = 0; i < p->n_ifaces; i++) {
		struct iface *f = &p->ifaces[i];
		f->sg_hit_in = n;
		n += (uint32_t)f->in->n;
		f->sg_hit_out = n;
		n += (uint32_t)f->out->n;
	}
	p->iface_hit_base = n;
	for (int i = 0; i < p->n_ifaces; i++)
		p->ifaces[i].hit = n + (uint32_t)i * IFACE_HITS;
	p->n_hits = n + (uint32_t)p->n_ifaces * IFACE_HITS;
}

/* ------------------------------------------------------------ rule labels */

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
	const uint8_t *b = data;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

static uint64_t rule_content_hash(const struct m_sg_rule *r)
{
	int32_t head[3] = { r->proto, r->from, r->to };
	uint64_t h = fnv(FNV_BASIS, head, sizeof(head)), peers = 0;

	/* a sum: the peers' order in the document does not matter */
	for (int i = 0; i < r->n_peers; i++) {
		const struct m_peer *p = &r->peers[i];
		uint8_t kind = (uint8_t)p->kind;
		uint64_t x = fnv(FNV_BASIS, &kind, 1);
		if (p->kind == PEER_CIDR) {
			uint64_t a[2] = { p->cidr.net.hi, p->cidr.net.lo };
			x = fnv(x, a, sizeof(a));
			x = fnv(x, &p->cidr.len, 1);
		} else if (p->ref) {
			x = fnv(x, p->ref, strlen(p->ref));
		}
		peers += x;
	}
	return fnv(h, &peers, sizeof(peers));
}

struct label_key {
	uint64_t h;
	int idx;
};

static int cmp_label_key(const void *a, const void *b)
{
	const struct label_key *x = a, *y = b;

	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Labels of one IpPermissions list; O(n log n) for the largest groups. */
static void label_rules(struct arena *a, struct m_sg_rule *rules, int n)
{
	struct label_key *k;

	if (n <= 0)
		return;
	k = xcalloc((size_t)n, sizeof(*k));
	for (int i = 0; i < n; i++) {
		k[i].h = rules[i].rule_id ? fnv(FNV_BASIS, rules[i].rule_id, strlen(rules[i].rule_id))
					  : rule_content_hash(&rules[i]);
		k[i].idx = i;
	}
	qsort(k, (size_t)n, sizeof(*k), cmp_label_key);
	for (int i = 0, rep = 1; i < n; i++) {
		rep = i > 0 && k[i].h == k[i - 1].h ? rep + 1 : 1;
		struct m_sg_rule *r = &rules[k[i].idx];
		char label[80];
		int len;
		if (r->rule_id) {
			len = snprintf(label, sizeof(label), "%.60s", r->rule_id);
		} else {
			/* "rule-%012" PRIx64 of h >> 16, without printf: one
			 * per rule of the largest groups */
			static const char hex[] = "0123456789abcdef";
			uint64_t v = k[i].h >> 16;
			memcpy(label, "rule-", 5);
			for (int d = 0; d < 12; d++)
				label[5 + d] = hex[(v >> (4 * (11 - d))) & 15];
			label[17] = '\0';
			len = 17;
		}
		if (rep > 1)
			snprintf(label + len, sizeof(label) - (size_t)len, "-%d", rep);
		r->label = arena_strdup(a, label);
	}
	free(k);
}

static void label_sg_rules(struct model *m)
{
	for (int i = 0; i < m->n_sgs; i++) {
		label_rules(&m->arena, m->sgs[i].in, m->sgs[i].n_in);
		label_rules(&m->arena, m->sgs[i].out, m->sgs[i].n_out);
	}
}

static void build_iface_maps(struct builder *b);

struct policy *policy_build(struct model *m, struct diag *d)
{
	static uint64_t generation;
	struct policy *p = xcalloc(1, sizeof(*p));
	struct builder b = { .p = p, .m = m, .a = &m->arena, .d = d };

	p->model = m;
	p->generation = __atomic_add_fetch(&generation, 1, __ATOMIC_RELAXED);
	p->conntrack_max = m->vpcfw.conntrack_max ? m->vpcfw.conntrack_max : 262144;
	p->admit_related_icmp = m->vpcfw.admit_related_icmp;
	p->tcp_be_liberal = m->vpcfw.tcp_be_liberal;
	p->tcp_loose = m->vpcfw.tcp_loose;
	p->fairness = (struct ct_fairness){
		.rate = m->vpcfw.per_source_rate,
		.burst = m->vpcfw.per_source_burst,
		.share_pct = m->vpcfw.per_source_share,
		.v6_prefix = (uint8_t)(m->vpcfw.per_source_v6_prefix >= 1 &&
				       m->vpcfw.per_source_v6_prefix <= 128
				       ? m->vpcfw.per_source_v6_prefix : 128),
	};

	size_t errors_before = d->errors;
	build_vpcs(&b);
	build_subnets(&b);
	build_nacls(&b);
	label_sg_rules(m);
	build_groups(&b);
	build_ifaces(&b);
	build_iface_maps(&b);
	build_ranges(&b);
	struct idmap *maps[] = { &b.vpcs, &b.subnets, &b.nacls, &b.sgs, &b.enis, &b.pls };
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		idmap_free(maps[i]);
	if (d->errors > errors_before || diag_failed(d)) {
		policy_free(p);
		return NULL;
	}
	number_hits(p);
	return p;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	if (p->model) {
		arena_free(&p->model->arena);
		free(p->model);
	}
	free(p);
}

/* ------------------------------------------------------------ lookups */

const struct iface *policy_iface_by_addr(const struct policy *p, const struct ip_addr *a)
{
	uint32_t i = (uint32_t)addr_hash(a) & p->host_mask;
	while (p->hosts[i].iface) {
		if (addr_eq(&p->hosts[i].addr, a))
			return p->hosts[i].iface;
		i = (i + 1) & p->host_mask;
	}
	const struct prefix_slot *s = p->n_prefixes ? prefix_of(p, a) : NULL;
	return s ? s->iface : NULL;
}

bool policy_iface_owns(const struct policy *p, const struct iface *f, const struct ip_addr *a)
{
	for (int i = 0; i < f->m->n_addrs; i++)
		if (addr_eq(&f->m->addrs[i].addr, a))
			return true;
	if (!f->m->n_prefixes)
		return false;
	if (!f->subnet) { /* not enforced: its prefixes are not indexed */
		for (int i = 0; i < f->m->n_prefixes; i++)
			if (cidr_contains(&f->m->prefixes[i], a))
				return true;
		return false;
	}
	const struct prefix_slot *s = prefix_of(p, a);
	return s && s->iface == f;
}

const struct subnet *policy_subnet_by_addr(const struct policy *p, const struct ip_addr *a)
{
	int lo = 0, hi = p->n_ranges - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const struct subnet_range *r = &p->ranges[mid];
		if (addr_cmp(a, &r->first) < 0)
			hi = mid - 1;
		else if (addr_cmp(a, &r->last) > 0)
			lo = mid + 1;
		else
			return r->subnet;
	}
	return NULL;
}

static const char *iface_key(const struct iface *f, bool device)
{
	return device ? f->device : f->id;
}

static const struct iface *iface_map_get(const struct iface_map *m, const char *key, bool device)
{
	if (!m->slots || !key)
		return NULL;
	for (uint32_t i = (uint32_t)idmap_hash(key) & m->mask; m->slots[i]; i = (i + 1) & m->mask)
		if (strcmp(iface_key(m->slots[i], device), key) == 0)
			return m->slots[i];
	return NULL;
}

/* Both maps, once the bindings have given the devices; the first interface
 * in order keeps a string given twice, as the linear search it replaces. */
static void build_iface_maps(struct builder *b)
{
	struct policy *p = b->p;
	struct iface_map *maps[2] = { &p->by_id, &p->by_device };
	uint32_t size = 16;

	while (size < (uint32_t)p->n_ifaces * 2 + 1)
		size <<= 1;
	for (int d = 0; d < 2; d++) {
		struct iface_map *m = maps[d];
		m->slots = arena_calloc(b->a, size, sizeof(*m->slots));
		m->mask = size - 1;
		for (int e = 0; e < p->n_ifaces; e++) {
			const struct iface *f = &p->ifaces[e];
			const char *key = iface_key(f, d);
			if (!key || iface_map_get(m, key, d))
				continue;
			uint32_t i = (uint32_t)idmap_hash(key) & m->mask;
			while (m->slots[i])
				i = (i + 1) & m->mask;
			m->slots[i] = f;
		}
	}
}

const struct iface *policy_iface_by_id(const struct policy *p, const char *id)
{
	return iface_map_get(&p->by_id, id, false);
}

const struct iface *policy_iface_by_device(const struct policy *p, const char *device)
{
	return iface_map_get(&p->by_device, device, true);
}

bool policy_is_exempt(const struct policy *p, const struct ip_addr *a, const struct subnet *s)
{
	/* 169.254.0.0/16 (IPv4 link-local: IMDS, Time Sync, DNS, ...) */
	if (a->hi == 0 && (a->lo >> 16) == 0xffffa9feULL)
		return true;
	/* fe80::/10 */
	if ((a->hi >> 54) == (0xfe80ULL >> 6))
		return true;
	/* fd00:ec2::/32, AWS's IPv6 service range */
	if ((a->hi >> 32) == 0xfd000ec2ULL)
		return true;
	if (s) {
		/* network, router (+1), DNS (+2), reserved (+3) and last address
		 * (subnet-sizing: "IP addresses reserved in each subnet") */
		const struct m_subnet *ms = s->m;
		const struct cidr *c = NULL;
		if (addr_family(a) == FAMILY_V4) {
			c = ms->has4 ? &ms->cidr4 : NULL;
		} else {
			for (int i = 0; i < ms->n_cidr6; i++)
				if (cidr_contains(&ms->cidr6[i], a)) {
					c = &ms->cidr6[i];
					break;
				}
		}
		if (c && cidr_contains(c, a)) {
			if (a->hi == c->net.hi && a->lo - c->net.lo <= 3)
				return true;
			struct ip_addr last = cidr_last(c);
			if (addr_eq(a, &last))
				return true;
		}
	}
	const struct addr_set dns = { .addrs = p->vpc_dns, .n = p->n_vpc_dns };
	return addr_set_contains(&dns, a);
}

/* ------------------------------------------------------------ printing */

static const char *proto_text(int proto, char *buf)
{
	switch (proto) {
	case RULE_PROTO_ALL: return "all";
	case PROTO_TCP: return "tcp";
	case PROTO_UDP: return "udp";
	case PROTO_ICMP: return "icmp";
	case PROTO_ICMPV6: return "icmpv6";
	default: snprintf(buf, 8, "%d", proto); return buf;
	}
}

static void print_nacl_list(const struct nacl_list *l4, const struct nacl_list *l6, FILE *out)
{
	const struct nacl_list *ls[2] = { l4, l6 };
	int i[2] = { 0, 0 };
	char pb[8], cb[CIDR_STRLEN];

	/* merge the two families in rule-number order */
	for (;;) {
		int w = -1;
		for (int f = 0; f < 2; f++)
			if (i[f] < ls[f]->n &&
			    (w < 0 || ls[f]->rules[i[f]].number < ls[w]->rules[i[w]].number))
				w = f;
		if (w < 0)
			break;
		const struct nacl_rule *r = &ls[w]->rules[i[w]++];
		fprintf(out, "      %-5u %-5s %-6s %s", r->number, r->allow ? "allow" : "deny",
			proto_text(r->proto, pb), cidr_format(&r->cidr, cb));
		if (r->match_ports)
			fprintf(out, " ports %u-%u", r->port_from, r->port_to);
		if (r->icmp_type >= 0)
			fprintf(out, " type %d code %d", r->icmp_type, r->icmp_code);
		fputc('\n', out);
	}
	fprintf(out, "      %-5s %-5s %-6s %s\n", "*", "deny", "all", "0.0.0.0/0, ::/0");
}

static void print_addr_set(const struct addr_set *s, FILE *out)
{
	char buf[CIDR_STRLEN];
	fputc('{', out);
	for (int i = 0; i < s->n; i++)
		fprintf(out, "%s%s", i ? ", " : "", addr_format(&s->addrs[i], addr_family(&s->addrs[i]), buf));
	for (int i = 0; i < s->n_blocks; i++)
		fprintf(out, "%s%s", i || s->n ? ", " : "", cidr_format(&s->blocks[i], buf));
	fputc('}', out);
}

static void print_rule_set(const struct sg_set *s, const char *dir, FILE *out)
{
	char pb[8], cb[CIDR_STRLEN];
	fprintf(out, "    %s:%s\n", dir, s->n ? "" : " nothing (no rule)");
	for (int i = 0; i < s->n; i++) {
		const struct sg_rule *r = &s->rules[i];
		fprintf(out, "      %s %s[%d]  %s", r->group->id,
			r->egress ? "IpPermissionsEgress" : "IpPermissions", r->m->index,
			proto_text(r->proto, pb));
		if (r->proto == PROTO_TCP || r->proto == PROTO_UDP) {
			if (r->from == r->to)
				fprintf(out, " %d", r->from);
			else
				fprintf(out, " %d-%d", r->from, r->to);
		} else if (r->proto == PROTO_ICMP || r->proto == PROTO_ICMPV6) {
			fprintf(out, " type %d code %d", r->from, r->to);
		}
		fprintf(out, " %s ", r->egress ? "to" : "from");
		if (r->src_peer && r->src_peer->kind == PEER_PREFIX_LIST)
			fprintf(out, "prefix list %s ", r->src_peer->ref);
		switch (r->peer) {
		case SGP_CIDR:
			fputs(cidr_format(&r->cidr, cb), out);
			break;
		case SGP_SET:
			fprintf(out, "group %s ", r->src_peer->ref);
			print_addr_set(r->set, out);
			break;
		default:
			fprintf(out, "%s%s: nothing (not in the configuration)",
				r->src_peer && r->src_peer->kind == PEER_GROUP ? "group " : "",
				r->src_peer && r->src_peer->ref ? r->src_peer->ref : "?");
		}
		fputc('\n', out);
	}
}

void policy_print(const struct policy *p, FILE *out)
{
	char cb[CIDR_STRLEN], ab[ADDR_STRLEN];

	for (int i = 0; i < p->n_vpcs; i++) {
		const struct vpc *v = &p->vpcs[i];
		fprintf(out, "vpc %s", v->id);
		for (int k = 0; k < v->m->n_cidrs; k++)
			fprintf(out, "%s%s", k ? ", " : " ", cidr_format(&v->m->cidrs[k], cb));
		if (v->has_dns)
			fprintf(out, "; DNS %s", addr_format(&v->dns, FAMILY_V4, ab));
		fputc('\n', out);
	}
	for (int i = 0; i < p->n_subnets; i++) {
		const struct subnet *s = &p->subnets[i];
		fprintf(out, "subnet %s", s->id);
		if (s->m->vpc_id)
			fprintf(out, " in %s", s->m->vpc_id);
		if (s->m->has4)
			fprintf(out, " %s", cidr_format(&s->m->cidr4, cb));
		for (int k = 0; k < s->m->n_cidr6; k++)
			fprintf(out, " %s", cidr_format(&s->m->cidr6[k], cb));
		fputc('\n', out);
		if (!s->nacl) {
			fputs("  network ACL: none in the configuration (all traffic allowed)\n", out);
			continue;
		}
		fprintf(out, "  network ACL %s%s\n", s->nacl->id, s->nacl->is_default ? " (default)" : "");
		fputs("    inbound (source):\n", out);
		print_nacl_list(&s->nacl->lists[NACL_INBOUND][0], &s->nacl->lists[NACL_INBOUND][1], out);
		fputs("    outbound (destination):\n", out);
		print_nacl_list(&s->nacl->lists[NACL_OUTBOUND][0], &s->nacl->lists[NACL_OUTBOUND][1], out);
	}
	for (int i = 0; i < p->n_ifaces; i++) {
		const struct iface *f = &p->ifaces[i];
		fprintf(out, "interface %s", f->id);
		if (f->subnet)
			fprintf(out, " in %s", f->subnet->id);
		else
			fputs(" NOT ENFORCED (subnet unknown)", out);
		fputc('\n', out);
		fputs("  addresses:", out);
		for (int k = 0; k < f->m->n_addrs; k++)
			fprintf(out, " %s%s", addr_format(&f->m->addrs[k].addr, f->m->addrs[k].family, ab),
				f->m->addrs[k].primary ? " (primary)" : "");
		fputc('\n', out);
		if (f->m->n_prefixes) {
			fputs("  delegated prefixes:", out);
			for (int k = 0; k < f->m->n_prefixes; k++)
				fprintf(out, " %s", cidr_format(&f->m->prefixes[k], cb));
			fputc('\n', out);
		}
		fprintf(out, "  type: %s; security groups: %s\n", f->m->type ? f->m->type : "(not given)",
			f->sg_applies ? "apply" : "none (network ACLs only)");
		fprintf(out, "  source/destination check: %s%s%s\n", f->source_dest_check ? "on" : "off",
			f->device ? "; device " : "", f->device ? f->device : "");
		fprintf(out, "  idle timeouts: tcp-established %us, udp %us, udp-stream %us\n",
			f->tcp_established_timeout, f->udp_timeout, f->udp_stream_timeout);
		fputs("  groups:", out);
		for (int g = 0; g < f->n_groups; g++)
			fprintf(out, " %s", f->groups[g]->id);
		fputs(f->n_groups ? "\n" : " none\n", out);
		if (f->sg_applies) {
			print_rule_set(f->in, "ingress", out);
			print_rule_set(f->out, "egress", out);
		}
	}
	for (int i = 0; i < p->n_sgs; i++) {
		const struct sg *g = &p->sgs[i];
		fprintf(out, "security group %s", g->id);
		if (g->m->name)
			fprintf(out, " (%s)", g->m->name);
		fputs(" members ", out);
		print_addr_set(&g->members, out);
		fputc('\n', out);
	}
	for (int i = 0; i < p->model->n_pls; i++) {
		const struct m_prefix_list *pl = &p->model->pls[i];
		fprintf(out, "prefix list %s:", pl->id);
		for (int k = 0; k < pl->n_cidrs; k++)
			fprintf(out, " %s", cidr_format(&pl->cidrs[k], cb));
		fputc('\n', out);
	}
}
