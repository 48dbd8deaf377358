/* Traffic mirroring (SPEC §8) and the refused-packet capture: configuration
 * checks, the plan the packet path reads, session selection, the per-worker
 * rings and the sender that empties them. */
#include "vpcfw/mirror.h"
#include "vpcfw/counter.h"
#include "vpcfw/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>

#define DEFAULT_SLOTS 1024
#define SLOT_DATA_MAX 9216u     /* IP bytes kept per copy: a jumbo frame (AWS MTU 9001) */
#define MAX_OUTPUTS 64
#define PREFIX_MAX 200
#define NO_OUT 0xffff
#define ETH_HLEN 14
#define IP_MAX 65535u
#define SEND_BUF (8 + 8 + ETH_HLEN + IP_MAX + 64)

/* ------------------------------------------------------------ configuration */

static const struct m_mirror_filter *find_filter(const struct model *m, const char *id)
{
	for (int i = 0; id && i < m->n_mirror_filters; i++)
		if (strcmp(m->mirror_filters[i].id, id) == 0)
			return &m->mirror_filters[i];
	return NULL;
}

static const struct m_mirror_target *find_target(const struct model *m, const char *id)
{
	for (int i = 0; id && i < m->n_mirror_targets; i++)
		if (strcmp(m->mirror_targets[i].id, id) == 0)
			return &m->mirror_targets[i];
	return NULL;
}

static const struct m_eni *find_eni(const struct model *m, const char *id)
{
	for (int i = 0; id && i < m->n_enis; i++)
		if (strcmp(m->enis[i].id, id) == 0)
			return &m->enis[i];
	return NULL;
}

static const struct m_mirror_pcap *find_pcap(const struct model *m, const char *target)
{
	for (int i = 0; i < m->vpcfw.n_pcap_targets; i++)
		if (strcmp(m->vpcfw.pcap_targets[i].target_id, target) == 0)
			return &m->vpcfw.pcap_targets[i];
	return NULL;
}

static const struct m_mirror_addr *find_addr(const struct model *m, const char *target)
{
	for (int i = 0; i < m->vpcfw.n_mirror_addrs; i++)
		if (strcmp(m->vpcfw.mirror_addrs[i].target_id, target) == 0)
			return &m->vpcfw.mirror_addrs[i];
	return NULL;
}

static void at(char *buf, size_t len, const struct where *w, const char *key)
{
	snprintf(buf, len, "%s%s%s", w->path ? w->path : "", key ? "." : "", key ? key : "");
}

static void check_rules(const struct m_mirror_filter *f, bool egress, struct diag *d)
{
	const struct m_mirror_rule *r = egress ? f->out : f->in;
	int n = egress ? f->n_out : f->n_in;
	char path[400];

	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			if (r[i].number && r[i].number == r[j].number) {
				at(path, sizeof(path), &r[i].where, "RuleNumber");
				diag_error(d, r[i].where.file, path,
					   "%u is used twice in the %s rules of %s (first at %s)",
					   r[i].number, egress ? "egress" : "ingress", f->id,
					   r[j].where.path);
				break;
			}
}

static void check_vpcfw_keys(const struct model *m, struct diag *d)
{
	const struct m_vpcfw *w = &m->vpcfw;
	char path[400];

	for (int i = 0; i < w->n_pcap_targets; i++) {
		const struct m_mirror_pcap *t = &w->pcap_targets[i];
		if (!find_target(m, t->target_id)) {
			at(path, sizeof(path), &t->where, "TrafficMirrorTargetId");
			diag_error(d, t->where.file, path, "%s is no TrafficMirrorTargets entry",
				   t->target_id);
		}
		for (int j = 0; j < i; j++) {
			const struct m_mirror_pcap *o = &w->pcap_targets[j];
			if (strcmp(o->target_id, t->target_id) == 0) {
				at(path, sizeof(path), &t->where, "TrafficMirrorTargetId");
				diag_error(d, t->where.file, path, "%s has two pcap files (first at %s: %s)",
					   t->target_id, o->where.file, o->where.path);
			} else if (strcmp(o->path, t->path) == 0) {
				at(path, sizeof(path), &t->where, "Path");
				diag_error(d, t->where.file, path, "%s is the file of two targets (first at %s: %s)",
					   t->path, o->where.file, o->where.path);
			}
		}
		if (w->drop_capture.path && strcmp(w->drop_capture.path, t->path) == 0) {
			at(path, sizeof(path), &t->where, "Path");
			diag_error(d, t->where.file, path, "%s is the DropCapture file too", t->path);
		}
	}
	for (int i = 0; i < w->n_mirror_addrs; i++) {
		const struct m_mirror_addr *a = &w->mirror_addrs[i];
		at(path, sizeof(path), &a->where, "TrafficMirrorTargetId");
		if (!find_target(m, a->target_id))
			diag_error(d, a->where.file, path, "%s is no TrafficMirrorTargets entry",
				   a->target_id);
		else if (find_pcap(m, a->target_id))
			diag_warn(d, a->where.file, path,
				  "%s is written to a pcap file (PcapTargets): the address is not used",
				  a->target_id);
		for (int j = 0; j < i; j++)
			if (strcmp(w->mirror_addrs[j].target_id, a->target_id) == 0) {
				diag_error(d, a->where.file, path, "%s has two addresses (first at %s: %s)",
					   a->target_id, w->mirror_addrs[j].where.file,
					   w->mirror_addrs[j].where.path);
				break;
			}
	}
}

static void check_target(const struct model *m, const struct m_mirror_target *t, struct diag *d)
{
	char path[400];

	if (find_pcap(m, t->id) || find_addr(m, t->id))
		return;
	if (t->eni_id) {
		const struct m_eni *e = find_eni(m, t->eni_id);
		at(path, sizeof(path), &t->where, "NetworkInterfaceId");
		if (!e)
			diag_error(d, t->where.file, path,
				   "%s is no interface of the configuration: give the target's address "
				   "in Vpcfw.MirrorTargetAddresses", t->eni_id);
		else if (e->n_addrs == 0)
			diag_error(d, t->where.file, path,
				   "%s has no private address: give the target's address in "
				   "Vpcfw.MirrorTargetAddresses", t->eni_id);
	} else if (t->lb) {
		diag_warn(d, t->where.file, t->where.path,
			  "%s is a load balancer target (%s): nothing is sent to it unless "
			  "Vpcfw.MirrorTargetAddresses gives an address or Vpcfw.PcapTargets a file",
			  t->id, t->lb);
	} else {
		diag_error(d, t->where.file, t->where.path,
			   "%s has no NetworkInterfaceId, NetworkLoadBalancerArn or "
			   "GatewayLoadBalancerEndpointId, and no Vpcfw.MirrorTargetAddresses or "
			   "Vpcfw.PcapTargets entry", t->id);
	}
}

void mirror_check_config(const struct model *m, struct diag *d)
{
	char path[400];

	for (int i = 0; i < m->n_mirror_filters; i++) {
		const struct m_mirror_filter *f = &m->mirror_filters[i];
		check_rules(f, false, d);
		check_rules(f, true, d);
		if (f->amazon_dns) {
			at(path, sizeof(path), &f->where, "NetworkServices");
			diag_warn(d, f->where.file, path,
				  "amazon-dns: traffic with the VPC's DNS server is exempt (SPEC §5) "
				  "and never mirrored");
		}
	}
	for (int i = 0; i < m->n_mirror_targets; i++)
		check_target(m, &m->mirror_targets[i], d);
	for (int i = 0; i < m->n_mirror_sessions; i++) {
		const struct m_mirror_session *s = &m->mirror_sessions[i];
		const struct m_mirror_target *t = find_target(m, s->target_id);
		if (!find_filter(m, s->filter_id)) {
			at(path, sizeof(path), &s->where, "TrafficMirrorFilterId");
			diag_error(d, s->where.file, path, "%s is no TrafficMirrorFilters entry",
				   s->filter_id);
		}
		if (!t) {
			at(path, sizeof(path), &s->where, "TrafficMirrorTargetId");
			diag_error(d, s->where.file, path, "%s is no TrafficMirrorTargets entry",
				   s->target_id);
		} else if (t->eni_id && strcmp(t->eni_id, s->eni_id) == 0) {
			at(path, sizeof(path), &s->where, "TrafficMirrorTargetId");
			diag_error(d, s->where.file, path,
				   "%s is the source interface itself (AWS refuses a session whose "
				   "source is its target)", s->target_id);
		}
		if (!find_eni(m, s->eni_id)) {
			at(path, sizeof(path), &s->where, "NetworkInterfaceId");
			diag_warn(d, s->where.file, path,
				  "%s is no interface of the configuration: the session mirrors nothing",
				  s->eni_id);
		}
		for (int j = 0; j < i; j++) {
			const struct m_mirror_session *o = &m->mirror_sessions[j];
			if (o->number == s->number && strcmp(o->eni_id, s->eni_id) == 0) {
				at(path, sizeof(path), &s->where, "SessionNumber");
				diag_error(d, s->where.file, path,
					   "%u is used twice for %s (first at %s: %s)", s->number,
					   s->eni_id, o->where.file, o->where.path);
				break;
			}
			if (s->id && o->id && strcmp(o->id, s->id) == 0) {
				at(path, sizeof(path), &s->where, "TrafficMirrorSessionId");
				diag_error(d, s->where.file, path, "%s is defined twice (first at %s: %s)",
					   s->id, o->where.file, o->where.path);
				break;
			}
		}
	}
	check_vpcfw_keys(m, d);
}

/* ------------------------------------------------------------ selection */

static bool in_range(uint16_t v, uint16_t lo, uint16_t hi)
{
	return v >= lo && v <= hi;
}

static bool rule_matches(const struct mirror_rule *r, const struct packet *p)
{
	if (r->src.family != p->family || (r->proto != RULE_PROTO_ALL && r->proto != p->proto))
		return false;
	if (!cidr_contains(&r->src, &p->src) || !cidr_contains(&r->dst, &p->dst))
		return false;
	/* port ranges apply to TCP and UDP (API TrafficMirrorPortRange); a
	 * fragment without its ports matches no rule that names ports */
	if ((r->has_sports || r->has_dports) && (p->proto == PROTO_TCP || p->proto == PROTO_UDP)) {
		if (!(p->flags & PKT_F_L4))
			return false;
		if (r->has_sports && !in_range(p->sport, r->sport_from, r->sport_to))
			return false;
		if (r->has_dports && !in_range(p->dport, r->dport_from, r->dport_to))
			return false;
	}
	return true;
}

bool mirror_filter_accepts(const struct mirror_rule *rules, int n, const struct packet *p)
{
	for (int i = 0; i < n; i++)
		if (rule_matches(&rules[i], p))
			return rules[i].accept;
	return false;
}

/* ------------------------------------------------------------ the plan */

struct plan_session {
	uint32_t number, vni, packet_length;
	uint16_t out;                   /* NO_OUT: the target has no address */
	uint8_t mac[6];                 /* the source interface's (made up) MAC */
	int rules[2], n_rules[2];       /* into plan.rules, by MIRROR_INGRESS/EGRESS */
};

struct plan_src {
	int first, n;                   /* sessions of one interface, by number */
};

struct plan {
	struct plan_src *by_ct;         /* indexed by the interface's ct_id */
	uint32_t n_ct;
	struct plan_session *sessions;
	int n_sessions;
	struct mirror_rule *rules;
	bool drop;
	uint16_t drop_out;
	uint32_t drop_snap;
	struct plan *retired_next;
};

static void plan_free(struct plan *pl)
{
	if (!pl)
		return;
	free(pl->by_ct);
	free(pl->sessions);
	free(pl->rules);
	free(pl);
}

/* ------------------------------------------------------------ outputs, rings */

enum out_kind { OUT_VXLAN, OUT_PCAP, OUT_NFLOG };

struct output {
	enum out_kind kind;
	struct sockaddr_storage sa;     /* OUT_VXLAN */
	socklen_t salen;
	int family;
	struct ip_addr addr;
	char *path;                     /* OUT_PCAP, OUT_NFLOG */
	struct mirror_pcap *file;       /* the sender's, once published */
	bool dirty;
};

struct slot {
	uint64_t ts;
	uint32_t len;                   /* bytes in data */
	uint32_t wirelen;               /* the IP packet's length */
	uint32_t vni;
	uint32_t limit;                 /* PacketLength; 0: none */
	uint16_t out;
	uint16_t sport;
	uint8_t family;
	uint8_t dst_mac[6], src_mac[6];
	char prefix[PREFIX_MAX];        /* drop capture */
	uint8_t data[];
};

struct mirror_worker {
	struct mirror *mr;
	uint8_t *slots;
	uint32_t mask;
	_Atomic uint32_t head, tail;
	/* the worker's (one writer), read by mirror_get_stats */
	counter_t mirrored, captured, ring_full, capture_ring_full, skipped;
};

struct mirror {
	struct mirror_options opt;
	FILE *notes;
	_Atomic(struct plan *) plan;
	struct plan *retired;
	struct mirror_worker *workers;
	int n_workers;
	size_t stride;
	uint32_t slot_data;

	struct output outs[MAX_OUTPUTS];
	_Atomic int n_outs;
	int sock4, sock6;               /* VXLAN sockets, -1: none */
	bool raw4, raw6;                /* raw: we write the UDP header */

	pthread_t thread;
	bool running;
	atomic_bool stop;
	atomic_bool reopen;             /* mirror_reopen asked; the sender does it */
	pthread_mutex_t lock;           /* reload / stats against destroy */
	uint8_t buf[SEND_BUF];          /* the sender's */

	/* the sender's (one writer; mirror_destroy's after it stopped) */
	counter_t vxlan_sent, vxlan_errors, pcap_records, drop_records, write_errors,
		capture_write_errors, files_rotated;
};

static const uint8_t router_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

/* Interfaces have no MAC in the configuration we read: a stable, locally
 * administered one made from the id. */
static void eni_mac(const char *id, uint8_t mac[6])
{
	uint64_t h = 1469598103934665603ULL;
	while (*id)
		h = (h ^ (unsigned char)*id++) * 1099511628211ULL;
	mac[0] = 0x02;
	for (int i = 1; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * i));
}

static void note(struct mirror *mr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct mirror *mr, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (mr->notes)
		fprintf(mr->notes, "vpcfwd: mirror: %s\n", buf);
	else
		logit(LOG_NOTICE, "mirror: %s", buf);
}

static int open_vxlan_socket(struct mirror *mr, int family, bool *raw)
{
	int af = family == FAMILY_V6 ? AF_INET6 : AF_INET;
	int fd = socket(af, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);

	if (fd >= 0) {
		/* a raw UDP socket receives every UDP datagram of the host: keep none */
		struct sock_filter drop_all = BPF_STMT(BPF_RET | BPF_K, 0);
		struct sock_fprog prog = { .len = 1, .filter = &drop_all };
		int one = 1, off = 6;
		if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0 ||
		    (af == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_CHECKSUM, &off, sizeof(off)) < 0)) {
			close(fd);
			fd = -1;
		}
		(void)one;
	}
	if (fd >= 0) {
		*raw = true;
		return fd;
	}
	/* without CAP_NET_RAW: one UDP socket, so one outer source port */
	fd = socket(af, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		note(mr, "no raw socket (%s): VXLAN is sent from one UDP port, receivers cannot "
		     "spread flows by it", strerror(errno));
	*raw = false;
	return fd;
}

/* The output for a target or the drop capture, shared by every plan that
 * names it; NO_OUT if there is no room or it cannot open. */
static uint16_t output_get(struct mirror *mr, enum out_kind kind, const char *path,
			   const struct ip_addr *addr, int family, uint32_t snaplen, uint64_t rotate)
{
	int n = atomic_load(&mr->n_outs);
	char err[300];

	for (int i = 0; i < n; i++) {
		struct output *o = &mr->outs[i];
		if (o->kind != kind)
			continue;
		if (kind == OUT_VXLAN ? o->family == family && addr_eq(&o->addr, addr)
				      : strcmp(o->path, path) == 0)
			return (uint16_t)i;
	}
	if (n == MAX_OUTPUTS) {
		note(mr, "more than %d targets: the others are not written", MAX_OUTPUTS);
		return NO_OUT;
	}
	struct output *o = &mr->outs[n];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	if (kind == OUT_VXLAN) {
		int *fd = family == FAMILY_V6 ? &mr->sock6 : &mr->sock4;
		bool *raw = family == FAMILY_V6 ? &mr->raw6 : &mr->raw4;
		if (*fd < 0)
			*fd = open_vxlan_socket(mr, family, raw);
		if (*fd < 0) {
			note(mr, "cannot open a socket for VXLAN: %s", strerror(errno));
			return NO_OUT;
		}
		o->family = family;
		o->addr = *addr;
		if (family == FAMILY_V6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o->sa;
			s6->sin6_family = AF_INET6;
			addr_to_v6(addr, s6->sin6_addr.s6_addr);
			/* a raw socket takes the port from our UDP header; 0 here */
			s6->sin6_port = *raw ? 0 : htons(VXLAN_PORT);
			o->salen = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&o->sa;
			s4->sin_family = AF_INET;
			s4->sin_addr.s_addr = htonl(addr_to_v4(addr));
			s4->sin_port = *raw ? 0 : htons(VXLAN_PORT);
			o->salen = sizeof(*s4);
		}
	} else {
		o->path = strdup(path);
		o->file = o->path ? mirror_pcap_open(path, kind == OUT_NFLOG ? LINKTYPE_NFLOG
									   : LINKTYPE_ETHERNET,
						     snaplen, rotate, err, sizeof(err))
				  : NULL;
		if (!o->file) {
			note(mr, "%s", o->path ? err : "out of memory");
			free(o->path);
			return NO_OUT;
		}
	}
	atomic_store(&mr->n_outs, n + 1);
	return (uint16_t)n;
}

static uint16_t target_output(struct mirror *mr, const struct policy *pol, const char *target_id,
			      bool *failed)
{
	const struct model *m = pol->model;
	const struct m_mirror_target *t = find_target(m, target_id);
	const struct m_mirror_pcap *pc = t ? find_pcap(m, t->id) : NULL;
	const struct m_mirror_addr *a = t ? find_addr(m, t->id) : NULL;
	uint16_t o;

	*failed = false;
	if (!t)
		return NO_OUT;
	if (pc) {
		o = output_get(mr, OUT_PCAP, pc->path, NULL, 0, ETH_HLEN + IP_MAX, pc->rotate_bytes);
		*failed = o == NO_OUT;
		return o;
	}
	if (!mr->opt.send_vxlan)
		return NO_OUT;
	if (a) {
		o = output_get(mr, OUT_VXLAN, NULL, &a->addr, a->family, 0, 0);
	} else {
		const struct iface *f = t->eni_id ? policy_iface_by_id(pol, t->eni_id) : NULL;
		if (!f || !f->primary_family)
			return NO_OUT;
		o = output_get(mr, OUT_VXLAN, NULL, &f->primary, f->primary_family, 0, 0);
	}
	*failed = o == NO_OUT;
	return o;
}

struct pending {
	uint32_t ct_id;
	const struct m_mirror_session *s;
	const struct m_mirror_filter *f;
};

static int cmp_pending(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;
	if (x->ct_id != y->ct_id)
		return x->ct_id < y->ct_id ? -1 : 1;
	return x->s->number < y->s->number ? -1 : x->s->number > y->s->number;
}

static int cmp_rule(const void *a, const void *b)
{
	const struct mirror_rule *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

static void copy_rules(struct mirror_rule *dst, const struct m_mirror_rule *src, int n)
{
	for (int i = 0; i < n; i++) {
		const struct m_mirror_rule *r = &src[i];
		dst[i] = (struct mirror_rule){
			.number = r->number, .accept = r->accept, .proto = r->proto,
			.has_sports = r->has_sports, .has_dports = r->has_dports,
			.sport_from = r->sport_from, .sport_to = r->sport_to,
			.dport_from = r->dport_from, .dport_to = r->dport_to,
			.src = r->src, .dst = r->dst,
		};
	}
	qsort(dst, (size_t)n, sizeof(*dst), cmp_rule);
}

static const char *out_text(const struct mirror *mr, uint16_t o, char *buf, size_t len)
{
	char a[ADDR_STRLEN];

	if (o == NO_OUT)
		snprintf(buf, len, "%s", mr->opt.send_vxlan ? "nowhere (no address)"
							     : "nowhere (VXLAN is not sent)");
	else if (mr->outs[o].kind == OUT_VXLAN)
		snprintf(buf, len, "VXLAN to %s port %d", addr_format(&mr->outs[o].addr,
			 mr->outs[o].family, a), VXLAN_PORT);
	else
		snprintf(buf, len, "pcap file %s", mr->outs[o].path);
	return buf;
}

/* NULL only when out of memory; a target that cannot be written is noted
 * and *failed set. */
static struct plan *plan_build(struct mirror *mr, const struct policy *pol, bool *failed)
{
	const struct model *m = pol->model;
	struct plan *pl = calloc(1, sizeof(*pl));
	struct pending *pe = calloc((size_t)m->n_mirror_sessions + 1, sizeof(*pe));
	size_t n_rules = 0;
	int n = 0;
	uint32_t max_ct = 0;
	char text[300];

	*failed = false;
	if (!pl || !pe)
		goto oom;
	for (int i = 0; i < m->n_mirror_sessions; i++) {
		const struct m_mirror_session *s = &m->mirror_sessions[i];
		const struct iface *f = policy_iface_by_id(pol, s->eni_id);
		const struct m_mirror_filter *fl = find_filter(m, s->filter_id);
		if (!f || !fl)
			continue;
		pe[n++] = (struct pending){ f->ct_id, s, fl };
		n_rules += (size_t)fl->n_in + (size_t)fl->n_out;
		if (f->ct_id > max_ct)
			max_ct = f->ct_id;
	}
	qsort(pe, (size_t)n, sizeof(*pe), cmp_pending);
	pl->n_ct = n ? max_ct + 1 : 0;
	pl->by_ct = calloc(pl->n_ct + 1, sizeof(*pl->by_ct));
	pl->sessions = calloc((size_t)n + 1, sizeof(*pl->sessions));
	pl->rules = calloc(n_rules + 1, sizeof(*pl->rules));
	if (!pl->by_ct || !pl->sessions || !pl->rules)
		goto oom;
	size_t r = 0;
	for (int i = 0; i < n; i++) {
		struct plan_session *ps = &pl->sessions[i];
		const struct m_mirror_session *s = pe[i].s;
		const struct m_mirror_filter *fl = pe[i].f;
		bool bad;
		ps->number = s->number;
		ps->vni = s->vni;
		ps->packet_length = s->packet_length;
		ps->out = target_output(mr, pol, s->target_id, &bad);
		*failed |= bad;
		eni_mac(s->eni_id, ps->mac);
		ps->rules[MIRROR_INGRESS] = (int)r;
		ps->n_rules[MIRROR_INGRESS] = fl->n_in;
		copy_rules(&pl->rules[r], fl->in, fl->n_in);
		r += (size_t)fl->n_in;
		ps->rules[MIRROR_EGRESS] = (int)r;
		ps->n_rules[MIRROR_EGRESS] = fl->n_out;
		copy_rules(&pl->rules[r], fl->out, fl->n_out);
		r += (size_t)fl->n_out;
		struct plan_src *src = &pl->by_ct[pe[i].ct_id];
		if (src->n == 0)
			src->first = i;
		src->n++;
		note(mr, "session %s (%s, number %u, VNI %u%s) -> %s", s->id ? s->id : "-", s->eni_id,
		     s->number, s->vni, s->packet_length ? ", truncated" : "",
		     out_text(mr, ps->out, text, sizeof(text)));
	}
	pl->n_sessions = n;
	const struct m_mirror_dropcap *dc = &m->vpcfw.drop_capture;
	if (dc->path) {
		pl->drop_snap = dc->snap_length ? dc->snap_length : MIRROR_DEFAULT_SNAPLEN;
		/* the snap length counts IP bytes; the record adds the NFLOG header */
		pl->drop_out = output_get(mr, OUT_NFLOG, dc->path, NULL, 0,
					  pl->drop_snap + 4 + 4 + PREFIX_MAX + 4 + 4, dc->rotate_bytes);
		pl->drop = pl->drop_out != NO_OUT;
		*failed |= !pl->drop;
	}
	free(pe);
	return pl;
oom:
	log_warnx("mirror: out of memory");
	free(pe);
	plan_free(pl);
	return NULL;
}

/* ------------------------------------------------------------ packet path */

static struct slot *slot_at(struct mirror_worker *w, uint32_t i)
{
	return (struct slot *)(void *)(w->slots + (size_t)(i & w->mask) * w->mr->stride);
}

/* A full ring loses the copy, counted by what it was for. */
static struct slot *slot_claim(struct mirror_worker *w, counter_t *full)
{
	uint32_t head = atomic_load_explicit(&w->head, memory_order_relaxed);
	uint32_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);

	if (head - tail > w->mask) {
		counter_inc(full);
		return NULL;
	}
	return slot_at(w, head);
}

static void slot_publish(struct mirror_worker *w)
{
	uint32_t head = atomic_load_explicit(&w->head, memory_order_relaxed);
	atomic_store_explicit(&w->head, head + 1, memory_order_release);
}

static uint32_t copy_len(const struct mirror_worker *w, size_t caplen, uint32_t want)
{
	size_t n = caplen < want ? caplen : want;
	return n < w->mr->slot_data ? (uint32_t)n : w->mr->slot_data;
}

static void mirror_at(struct mirror_worker *w, const struct plan *pl, uint32_t ct_id, int dir,
		      const struct packet *p, const uint8_t *ip, size_t caplen, size_t wirelen,
		      uint64_t ts)
{
	if (ct_id >= pl->n_ct)
		return;
	const struct plan_src *src = &pl->by_ct[ct_id];
	for (int i = src->first; i < src->first + src->n; i++) {
		const struct plan_session *s = &pl->sessions[i];
		if (!mirror_filter_accepts(&pl->rules[s->rules[dir]], s->n_rules[dir], p))
			continue;
		if (s->out == NO_OUT) {
			counter_inc(&w->skipped);
			return;
		}
		struct slot *sl = slot_claim(w, &w->ring_full);
		if (!sl)
			return;
		/* PacketLength counts the inner frame: Ethernet header and IP */
		size_t n = caplen;
		if (s->packet_length) {
			size_t keep = s->packet_length > ETH_HLEN ? s->packet_length - ETH_HLEN : 0;
			n = n < keep ? n : keep;
		}
		sl->ts = ts;
		sl->len = n < w->mr->slot_data ? (uint32_t)n : w->mr->slot_data;
		sl->wirelen = (uint32_t)wirelen;
		sl->vni = s->vni;
		sl->limit = s->packet_length;
		sl->out = s->out;
		sl->sport = mirror_flow_port(p);
		sl->family = p->family;
		memcpy(sl->src_mac, dir == MIRROR_EGRESS ? s->mac : router_mac, 6);
		memcpy(sl->dst_mac, dir == MIRROR_EGRESS ? router_mac : s->mac, 6);
		memcpy(sl->data, ip, sl->len);
		slot_publish(w);
		counter_inc(&w->mirrored);
		return;
	}
}

static void capture_drop(struct mirror_worker *w, const struct plan *pl, const struct packet *p,
			 const struct verdict *v, const uint8_t *ip, size_t caplen, size_t wirelen,
			 uint64_t ts)
{
	char rule[160];
	struct slot *sl = slot_claim(w, &w->capture_ring_full);

	if (!sl)
		return;
	verdict_rule_format(v, rule, sizeof(rule));
	snprintf(sl->prefix, sizeof(sl->prefix), "REJECT %s %s%s%s", stage_name(v->stage),
		 reason_name(v->reason), rule[0] ? " " : "", rule);
	sl->ts = ts;
	sl->len = copy_len(w, caplen, pl->drop_snap);
	sl->wirelen = (uint32_t)wirelen;
	sl->out = pl->drop_out;
	if (p)
		sl->family = p->family;
	else
		sl->family = caplen && ip[0] >> 4 == 4 ? FAMILY_V4
			     : caplen && ip[0] >> 4 == 6 ? FAMILY_V6 : 0;
	memcpy(sl->data, ip, sl->len);
	slot_publish(w);
	counter_inc(&w->captured);
}

static void drain(struct mirror *mr, struct mirror_worker *w);

void mirror_observe(struct mirror_worker *w, const struct packet *p, const struct verdict *v,
		    const uint8_t *ip, size_t caplen, size_t wirelen, uint64_t wall_ns)
{
	if (!w)
		return;
	const struct plan *pl = atomic_load_explicit(&w->mr->plan, memory_order_acquire);
	if (!ip)
		caplen = 0;
	if (!v->accept && pl->drop)
		capture_drop(w, pl, p, v, ip, caplen, wirelen, wall_ns);
	if (p && !v->exempt && pl->n_sessions) {
		/* egress of A once A's own stages (SG egress, NACL outbound of
		 * its subnet) let it go; ingress of B only if B receives it */
		if (v->src_iface && (v->accept || v->stage == STAGE_NACL_IN ||
				     v->stage == STAGE_SG_INGRESS))
			mirror_at(w, pl, v->src_iface->ct_id, MIRROR_EGRESS, p, ip, caplen, wirelen,
				  wall_ns);
		if (v->dst_iface && v->accept)
			mirror_at(w, pl, v->dst_iface->ct_id, MIRROR_INGRESS, p, ip, caplen, wirelen,
				  wall_ns);
	}
	if (!w->mr->opt.threaded && !w->mr->opt.hold)
		drain(w->mr, w);
}

/* ------------------------------------------------------------ sender */

static void put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static void send_vxlan(struct mirror *mr, struct output *o, const struct slot *sl)
{
	bool raw = o->family == FAMILY_V6 ? mr->raw6 : mr->raw4;
	int fd = o->family == FAMILY_V6 ? mr->sock6 : mr->sock4;
	size_t udp = raw ? 8 : 0;
	size_t n = mirror_vxlan_encap(mr->buf + udp, sizeof(mr->buf) - udp, sl->vni, sl->dst_mac,
				      sl->src_mac, sl->family, sl->data, sl->len, sl->limit);

	if (raw) {
		put16(mr->buf, sl->sport);
		put16(mr->buf + 2, VXLAN_PORT);
		put16(mr->buf + 4, (uint16_t)(n + 8));
		put16(mr->buf + 6, 0); /* IPv4: none (RFC 7348); IPv6: IPV6_CHECKSUM fills it */
	}
	if (sendto(fd, mr->buf, n + udp, MSG_DONTWAIT, (const struct sockaddr *)&o->sa, o->salen) < 0)
		counter_inc(&mr->vxlan_errors);
	else
		counter_inc(&mr->vxlan_sent);
}

/* the drop capture's failures apart from the pcap targets' */
static counter_t *write_errors_of(struct mirror *mr, const struct output *o)
{
	return o->kind == OUT_NFLOG ? &mr->capture_write_errors : &mr->write_errors;
}

static void write_record(struct mirror *mr, struct output *o, const uint8_t *data, size_t len,
			 size_t wirelen, uint64_t ts, counter_t *count)
{
	uint64_t rot = mirror_pcap_rotations(o->file);

	if (mirror_pcap_write(o->file, ts, data, len, wirelen))
		counter_inc(count);
	else
		counter_inc(write_errors_of(mr, o));
	if (mirror_pcap_rotations(o->file) != rot)
		counter_inc(&mr->files_rotated);
	o->dirty = true;
}

static void send_slot(struct mirror *mr, const struct slot *sl)
{
	if (sl->out >= atomic_load_explicit(&mr->n_outs, memory_order_acquire))
		return;
	struct output *o = &mr->outs[sl->out];
	size_t n;

	switch (o->kind) {
	case OUT_VXLAN:
		send_vxlan(mr, o, sl);
		break;
	case OUT_PCAP:
		/* the same inner frame as VXLAN carries, without the VXLAN header */
		n = mirror_vxlan_encap(mr->buf, sizeof(mr->buf), sl->vni, sl->dst_mac, sl->src_mac,
				       sl->family, sl->data, sl->len, sl->limit);
		write_record(mr, o, mr->buf + 8, n - 8, ETH_HLEN + (size_t)sl->wirelen, sl->ts,
			     &mr->pcap_records);
		break;
	case OUT_NFLOG:
		n = mirror_nflog_record(mr->buf, sizeof(mr->buf), sl->family, sl->prefix, sl->data,
					sl->len);
		/* the record's length is what is stored: a longer one (the
		 * packet's real length) makes tshark stop at the NFLOG TLVs */
		write_record(mr, o, mr->buf, n, n, sl->ts, &mr->drop_records);
		break;
	}
}

static int drain_ring(struct mirror *mr, struct mirror_worker *w)
{
	uint32_t tail = atomic_load_explicit(&w->tail, memory_order_relaxed);
	uint32_t head = atomic_load_explicit(&w->head, memory_order_acquire);
	int n = 0;

	for (; tail != head; tail++, n++) {
		send_slot(mr, slot_at(w, tail));
		atomic_store_explicit(&w->tail, tail + 1, memory_order_release);
	}
	return n;
}

static void drain(struct mirror *mr, struct mirror_worker *w)
{
	drain_ring(mr, w);
}

static void flush_files(struct mirror *mr)
{
	int n = atomic_load_explicit(&mr->n_outs, memory_order_acquire);

	for (int i = 0; i < n; i++) {
		struct output *o = &mr->outs[i];
		if (o->file && o->dirty) {
			if (!mirror_pcap_flush(o->file))
				counter_inc(write_errors_of(mr, o));
			o->dirty = false;
		}
	}
}

/* For logrotate: every pcap output starts its file again. */
static void reopen_files(struct mirror *mr)
{
	int n = atomic_load_explicit(&mr->n_outs, memory_order_acquire);

	for (int i = 0; i < n; i++) {
		struct output *o = &mr->outs[i];
		if (o->file && !mirror_pcap_reopen(o->file)) {
			counter_inc(write_errors_of(mr, o));
			note(mr, "%s: cannot reopen: %s", o->path, strerror(errno));
		}
		o->dirty = false;
	}
}

void mirror_drain(struct mirror *mr)
{
	if (!mr || mr->running)
		return;
	pthread_mutex_lock(&mr->lock);
	for (int i = 0; i < mr->n_workers; i++)
		drain_ring(mr, &mr->workers[i]);
	flush_files(mr);
	pthread_mutex_unlock(&mr->lock);
}

void mirror_reopen(struct mirror *mr)
{
	if (!mr)
		return;
	if (mr->running) {
		atomic_store(&mr->reopen, true);
		return;
	}
	pthread_mutex_lock(&mr->lock);
	reopen_files(mr);
	pthread_mutex_unlock(&mr->lock);
}

static void *sender_main(void *arg)
{
	struct mirror *mr = arg;
	const struct timespec idle = { 0, 1000000 };

	for (;;) {
		bool stop = atomic_load(&mr->stop);
		int n = 0;
		for (int i = 0; i < mr->n_workers; i++)
			n += drain_ring(mr, &mr->workers[i]);
		if (atomic_exchange(&mr->reopen, false))
			reopen_files(mr);
		if (n == 0) {
			flush_files(mr);
			if (stop)
				break;
			nanosleep(&idle, NULL);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------ life */

bool mirror_enabled(const struct policy *pol)
{
	return pol && pol->model && (pol->model->n_mirror_sessions > 0 ||
				     pol->model->vpcfw.drop_capture.path);
}

uint32_t mirror_copy_range(const struct policy *pol)
{
	uint32_t need = 0;

	if (!mirror_enabled(pol))
		return 0;
	const struct model *m = pol->model;
	for (int i = 0; i < m->n_mirror_sessions; i++) {
		const struct m_mirror_session *s = &m->mirror_sessions[i];
		if (!policy_iface_by_id(pol, s->eni_id) || !find_filter(m, s->filter_id) ||
		    !find_target(m, s->target_id))
			continue;
		uint32_t n = !s->packet_length ? IP_MAX
			     : s->packet_length > ETH_HLEN ? s->packet_length - ETH_HLEN : 0;
		if (n > need)
			need = n;
	}
	if (m->vpcfw.drop_capture.path) {
		uint32_t n = m->vpcfw.drop_capture.snap_length ? m->vpcfw.drop_capture.snap_length
							       : MIRROR_DEFAULT_SNAPLEN;
		if (n > need)
			need = n;
	}
	return need;
}

struct mirror *mirror_create(const struct policy *pol, const struct mirror_options *opt)
{
	if (!mirror_enabled(pol))
		return NULL;
	struct mirror *mr = calloc(1, sizeof(*mr));
	bool failed;

	if (!mr) {
		log_warnx("mirror: out of memory");
		return NULL;
	}
	mr->opt = *opt;
	mr->notes = opt->notes;
	mr->sock4 = mr->sock6 = -1;
	pthread_mutex_init(&mr->lock, NULL);
	mr->n_workers = opt->n_workers > 0 ? opt->n_workers : 1;
	uint32_t slots = opt->ring_slots ? opt->ring_slots : DEFAULT_SLOTS, size = 1;
	while (size < slots && size < (1u << 20))
		size <<= 1;
	/* slots as large as this configuration needs; a reload that needs
	 * more cuts copies to this size */
	uint32_t need = mirror_copy_range(pol);
	mr->slot_data = need && need < SLOT_DATA_MAX ? need : SLOT_DATA_MAX;
	mr->stride = (sizeof(struct slot) + mr->slot_data + 7) & ~(size_t)7;
	mr->workers = calloc((size_t)mr->n_workers, sizeof(*mr->workers));
	if (!mr->workers)
		goto fail;
	for (int i = 0; i < mr->n_workers; i++) {
		struct mirror_worker *w = &mr->workers[i];
		w->mr = mr;
		w->mask = size - 1;
		w->slots = calloc(size, mr->stride);
		if (!w->slots)
			goto fail;
	}
	struct plan *pl = plan_build(mr, pol, &failed);
	if (!pl)
		goto fail;
	atomic_store(&mr->plan, pl);
	if (failed) {
		log_warnx("mirror: a target or the drop capture cannot be written");
		goto fail;
	}
	if (opt->threaded) {
		int e = pthread_create(&mr->thread, NULL, sender_main, mr);
		if (e) {
			log_warnx("mirror: cannot start the sender: %s", strerror(e));
			goto fail;
		}
		mr->running = true;
	}
	return mr;
fail:
	mirror_destroy(mr);
	return NULL;
}

void mirror_set_policy(struct mirror *mr, const struct policy *pol)
{
	bool failed;

	if (!mr)
		return;
	pthread_mutex_lock(&mr->lock);
	struct plan *pl = plan_build(mr, pol, &failed);
	if (pl) {
		if (mirror_copy_range(pol) > mr->slot_data)
			note(mr, "copies are cut at %u bytes until a restart", mr->slot_data);
		struct plan *old = atomic_exchange(&mr->plan, pl);
		old->retired_next = mr->retired;
		mr->retired = old;
	}
	pthread_mutex_unlock(&mr->lock);
}

void mirror_reclaim(struct mirror *mr)
{
	if (!mr)
		return;
	pthread_mutex_lock(&mr->lock);
	while (mr->retired) {
		struct plan *next = mr->retired->retired_next;
		plan_free(mr->retired);
		mr->retired = next;
	}
	pthread_mutex_unlock(&mr->lock);
}

struct mirror_worker *mirror_worker(struct mirror *mr, int index)
{
	if (!mr || index < 0 || index >= mr->n_workers)
		return NULL;
	return &mr->workers[index];
}

void mirror_get_stats(const struct mirror *mr, struct mirror_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!mr)
		return;
	for (int i = 0; i < mr->n_workers; i++) {
		const struct mirror_worker *w = &mr->workers[i];
		out->mirrored += counter_get(&w->mirrored);
		out->captured += counter_get(&w->captured);
		out->ring_full += counter_get(&w->ring_full);
		out->capture_ring_full += counter_get(&w->capture_ring_full);
		out->vxlan_skipped += counter_get(&w->skipped);
	}
	out->vxlan_sent = counter_get(&mr->vxlan_sent);
	out->vxlan_errors = counter_get(&mr->vxlan_errors);
	out->pcap_records = counter_get(&mr->pcap_records);
	out->drop_records = counter_get(&mr->drop_records);
	out->write_errors = counter_get(&mr->write_errors);
	out->capture_write_errors = counter_get(&mr->capture_write_errors);
	out->files_rotated = counter_get(&mr->files_rotated);
}

bool mirror_destroy(struct mirror *mr)
{
	bool ok;

	if (!mr)
		return true;
	if (mr->running) {
		atomic_store(&mr->stop, true);
		pthread_join(mr->thread, NULL);
		mr->running = false;
	}
	for (int i = 0; mr->workers && i < mr->n_workers; i++)
		if (mr->workers[i].slots)
			drain_ring(mr, &mr->workers[i]);
	for (int i = 0; i < atomic_load(&mr->n_outs); i++) {
		struct output *o = &mr->outs[i];
		if (o->file && !mirror_pcap_close(o->file)) {
			counter_inc(write_errors_of(mr, o));
			log_warnx("mirror: %s: writing failed", o->path);
		}
		free(o->path);
	}
	if (mr->sock4 >= 0)
		close(mr->sock4);
	if (mr->sock6 >= 0)
		close(mr->sock6);
	for (int i = 0; mr->workers && i < mr->n_workers; i++)
		free(mr->workers[i].slots);
	free(mr->workers);
	mirror_reclaim(mr);
	plan_free(atomic_load(&mr->plan));
	pthread_mutex_destroy(&mr->lock);
	ok = counter_get(&mr->write_errors) + counter_get(&mr->capture_write_errors) == 0;
	free(mr);
	return ok;
}
