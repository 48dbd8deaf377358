/* vpcfwctl explain: the stages of SPEC §2 for one packet, each with what it
 * matched.  The verdict comes from pipeline_eval itself; see explain.h. */
#include "vpcfw/explain.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/nacl.h"
#include "vpcfw/sg.h"

static const char *const outcome_names[] = {
	[EXO_SKIPPED] = "skipped",
	[EXO_PASS] = "pass",
	[EXO_REFUSE] = "refuse",
	[EXO_NOT_REACHED] = "not reached",
};

const char *explain_outcome_name(enum explain_outcome o)
{
	return (unsigned)o <= EXO_NOT_REACHED ? outcome_names[o] : "?";
}

bool explain_packet(const char *proto, const char *src, unsigned sport, const char *dst,
		    unsigned dport, struct packet *p, char *err, size_t errlen)
{
	int fs, fd;
	char *end;

	memset(p, 0, sizeof(*p));
	if (!strcasecmp(proto, "tcp"))
		p->proto = PROTO_TCP;
	else if (!strcasecmp(proto, "udp"))
		p->proto = PROTO_UDP;
	else if (!strcasecmp(proto, "icmp"))
		p->proto = PROTO_ICMP;
	else if (!strcasecmp(proto, "icmpv6"))
		p->proto = PROTO_ICMPV6;
	else {
		unsigned long n = strtoul(proto, &end, 10);
		if (!*proto || *end || n > 255) {
			snprintf(err, errlen, "'%s' is not a protocol (tcp, udp, icmp, icmpv6 or 0-255)",
				 proto);
			return false;
		}
		p->proto = (uint8_t)n;
	}
	if (!addr_parse(src, &p->src, &fs)) {
		snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 address", src);
		return false;
	}
	if (!addr_parse(dst, &p->dst, &fd)) {
		snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 address", dst);
		return false;
	}
	if (fs != fd) {
		snprintf(err, errlen, "'%s' and '%s' are of different families", src, dst);
		return false;
	}
	p->family = (uint8_t)fs;
	p->ip_len = 60;
	p->flags = PKT_F_L4;
	if (p->proto == PROTO_TCP || p->proto == PROTO_UDP) {
		if (sport > 65535 || dport > 65535) {
			snprintf(err, errlen, "a port is 0-65535");
			return false;
		}
		p->sport = (uint16_t)sport;
		p->dport = (uint16_t)dport;
		if (p->proto == PROTO_TCP)
			p->tcp_flags = TCP_SYN;
	} else if (p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6) {
		/* sport/dport carry type and code; the default is an echo request */
		if (sport > 255 || dport > 255) {
			snprintf(err, errlen, "ICMP type and code are 0-255");
			return false;
		}
		p->icmp_type = (uint8_t)sport;
		p->icmp_code = (uint8_t)dport;
		p->icmp_id = 1;
	}
	return true;
}

const struct iface *explain_iface(const struct policy *pol, const char *name)
{
	const struct iface *f = policy_iface_by_id(pol, name);

	return f ? f : policy_iface_by_device(pol, name);
}

static void range_text(int proto, int from, int to, char *buf, size_t len)
{
	if (proto == PROTO_TCP || proto == PROTO_UDP) {
		if (from < 0 || (from == 0 && to == 65535))
			snprintf(buf, len, " all ports");
		else if (from == to)
			snprintf(buf, len, " port %d", from);
		else
			snprintf(buf, len, " ports %d-%d", from, to);
	} else if (proto == PROTO_ICMP || proto == PROTO_ICMPV6) {
		if (from < 0)
			snprintf(buf, len, " all types");
		else if (to < 0)
			snprintf(buf, len, " type %d", from);
		else
			snprintf(buf, len, " type %d code %d", from, to);
	} else {
		buf[0] = '\0';
	}
}

static void proto_text(int proto, char *buf, size_t len)
{
	switch (proto) {
	case PROTO_ALL: snprintf(buf, len, "all traffic"); break;
	case PROTO_TCP: snprintf(buf, len, "tcp"); break;
	case PROTO_UDP: snprintf(buf, len, "udp"); break;
	case PROTO_ICMP: snprintf(buf, len, "icmp"); break;
	case PROTO_ICMPV6: snprintf(buf, len, "icmpv6"); break;
	default: snprintf(buf, len, "protocol %d", proto); break;
	}
}

static void nacl_text(const struct nacl *n, enum nacl_dir dir, const struct nacl_rule *r,
		      char *buf, size_t len)
{
	const char *d = dir == NACL_OUTBOUND ? "outbound" : "inbound";
	char c[CIDR_STRLEN], pr[24], rg[40];

	if (!r) {
		snprintf(buf, len, "%s %s rule * (no numbered rule matches: deny)", n->id, d);
		return;
	}
	proto_text(r->proto, pr, sizeof(pr));
	if (r->match_ports)
		range_text(r->proto, r->port_from, r->port_to, rg, sizeof(rg));
	else if (r->icmp_type >= 0)
		range_text(r->proto, r->icmp_type, r->icmp_code, rg, sizeof(rg));
	else
		rg[0] = '\0';
	snprintf(buf, len, "%s %s rule %u: %s %s%s %s %s", n->id, d, r->number,
		 r->allow ? "allow" : "deny", pr, rg, dir == NACL_OUTBOUND ? "to" : "from",
		 cidr_format(&r->cidr, c));
}

static void sg_text(const struct sg_rule *r, char *buf, size_t len)
{
	char c[CIDR_STRLEN], pr[24], rg[40], peer[80];

	proto_text(r->m->proto, pr, sizeof(pr));
	range_text(r->m->proto, r->m->from, r->m->to, rg, sizeof(rg));
	if (!r->src_peer)
		snprintf(peer, sizeof(peer), "?");
	else if (r->src_peer->kind == PEER_CIDR)
		snprintf(peer, sizeof(peer), "%s", cidr_format(&r->src_peer->cidr, c));
	else
		snprintf(peer, sizeof(peer), "%s %s",
			 r->src_peer->kind == PEER_GROUP ? "group" : "prefix list", r->src_peer->ref);
	snprintf(buf, len, "%s %s[%d]: %s%s %s %s", r->group->id,
		 r->egress ? "IpPermissionsEgress" : "IpPermissions", r->m->index, pr, rg,
		 r->egress ? "to" : "from", peer);
}

__attribute__((format(printf, 4, 5)))
static void step(struct explain *ex, enum stage st, enum explain_outcome o, const char *fmt, ...)
{
	struct explain_step *s = &ex->steps[ex->n_steps++];
	va_list ap;

	s->stage = st;
	s->outcome = o;
	va_start(ap, fmt);
	vsnprintf(s->what, sizeof(s->what), fmt, ap);
	va_end(ap);
}

/* Each stage as the pipeline runs it for a packet no flow tracks. */
static void walk(const struct policy *pol, const struct packet *p, const struct iface *in,
		 const struct iface *out, struct explain *ex)
{
	const struct subnet *ssub = policy_subnet_by_addr(pol, &p->src);
	const struct subnet *dsub = policy_subnet_by_addr(pol, &p->dst);
	bool refused = false;
	char buf[200];

	/* the exemption needs the requests noted: the pipeline's word on it */
	if (ex->v.stage == STAGE_EXEMPT) {
		ex->src_iface = ex->v.src_iface;
		ex->dst_iface = ex->v.dst_iface;
		ex->src_subnet = ex->v.src_subnet;
		ex->dst_subnet = ex->v.dst_subnet;
		step(ex, STAGE_EXEMPT, ex->v.accept ? EXO_PASS : EXO_REFUSE, "%s (SPEC §5)",
		     ex->v.detail ? ex->v.detail : "");
		return;
	}
	step(ex, STAGE_EXEMPT, EXO_SKIPPED, "no exemption applies");

	const struct iface *a = in ? in : policy_iface_by_addr(pol, &p->src);
	const struct iface *b = out ? out : policy_iface_by_addr(pol, &p->dst);
	if (a && !a->subnet)
		a = NULL;
	if (b && !b->subnet)
		b = NULL;
	const struct subnet *x = a ? a->subnet : ssub, *y = b ? b->subnet : dsub;
	ex->src_iface = a;
	ex->dst_iface = b;
	ex->src_subnet = x;
	ex->dst_subnet = y;

	if (ex->v.stage == STAGE_SRCDST) {
		step(ex, STAGE_SRCDST, EXO_REFUSE, "%s", ex->rule);
		refused = true;
	} else if (in || out) {
		step(ex, STAGE_SRCDST, EXO_PASS, "the bound interfaces own the addresses or do not "
		     "check");
	} else {
		step(ex, STAGE_SRCDST, EXO_SKIPPED, "no bound device given");
	}

	const struct sg_rule *r;
	if (!a) {
		step(ex, STAGE_SG_EGRESS, EXO_SKIPPED, "the source is no modelled interface");
	} else if (!a->sg_applies) {
		step(ex, STAGE_SG_EGRESS, EXO_SKIPPED, "%s has no security group (type %s): "
		     "network ACLs only", a->id, a->m->type ? a->m->type : "interface");
	} else if (refused) {
		step(ex, STAGE_SG_EGRESS, EXO_NOT_REACHED, "%s", a->id);
	} else if (sg_match(&a->out, p, true, &r)) {
		sg_text(r, buf, sizeof(buf));
		step(ex, STAGE_SG_EGRESS, EXO_PASS, "%s: %s", a->id, buf);
	} else {
		step(ex, STAGE_SG_EGRESS, EXO_REFUSE, "%s: no egress rule of its groups admits "
		     "it", a->id);
		refused = true;
	}

	const struct subnet *sides[2] = { x, y };
	const enum stage stages[2] = { STAGE_NACL_OUT, STAGE_NACL_IN };
	const enum nacl_dir dirs[2] = { NACL_OUTBOUND, NACL_INBOUND };
	for (int i = 0; i < 2; i++) {
		const struct subnet *s = sides[i];
		const struct nacl_rule *nr;
		if (x == y) {
			step(ex, stages[i], EXO_SKIPPED, "both ends are in %s: no subnet boundary",
			     x ? x->id : "no modelled subnet");
		} else if (!s) {
			step(ex, stages[i], EXO_SKIPPED, "that end is in no modelled subnet");
		} else if (!s->nacl) {
			step(ex, stages[i], EXO_SKIPPED, "%s has no network ACL", s->id);
		} else if (refused) {
			step(ex, stages[i], EXO_NOT_REACHED, "%s of %s", s->nacl->id, s->id);
		} else {
			bool ok = nacl_eval(s->nacl, dirs[i], p, &nr);
			nacl_text(s->nacl, dirs[i], nr, buf, sizeof(buf));
			step(ex, stages[i], ok ? EXO_PASS : EXO_REFUSE, "%s (%s)", buf, s->id);
			refused = !ok;
		}
	}

	if (!b) {
		step(ex, STAGE_SG_INGRESS, EXO_SKIPPED, "the destination is no modelled "
		     "interface");
	} else if (!b->sg_applies) {
		step(ex, STAGE_SG_INGRESS, EXO_SKIPPED, "%s has no security group (type %s): "
		     "network ACLs only", b->id, b->m->type ? b->m->type : "interface");
	} else if (refused) {
		step(ex, STAGE_SG_INGRESS, EXO_NOT_REACHED, "%s", b->id);
	} else if (sg_match(&b->in, p, false, &r)) {
		sg_text(r, buf, sizeof(buf));
		step(ex, STAGE_SG_INGRESS, EXO_PASS, "%s: %s", b->id, buf);
	} else {
		step(ex, STAGE_SG_INGRESS, EXO_REFUSE, "%s: no ingress rule of its groups admits "
		     "it", b->id);
	}
}

int explain_run(const struct policy *pol, const struct packet *p, const struct iface *in,
		const struct iface *out, struct explain *ex)
{
	struct conntrack *ct = ct_create(16);
	struct pipeline pl;
	struct pkt_meta meta = { .in_iface = in, .out_iface = out };

	memset(ex, 0, sizeof(*ex));
	if (!ct)
		return -1;
	pipeline_init(&pl, ct);
	meta.in_known = in != NULL;
	pipeline_eval(&pl, pol, p, in || out ? &meta : NULL, 1, &ex->v);
	ct_destroy(ct);
	verdict_rule_format(&ex->v, ex->rule, sizeof(ex->rule));
	walk(pol, p, in, out, ex);

	enum stage refusing = STAGE_NONE;
	for (int i = 0; i < ex->n_steps; i++)
		if (ex->steps[i].outcome == EXO_REFUSE) {
			refusing = ex->steps[i].stage;
			break;
		}
	ex->consistent = ex->v.accept ? refusing == STAGE_NONE : refusing == ex->v.stage;
	return 0;
}
