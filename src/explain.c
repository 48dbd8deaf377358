/* vpcfwctl explain: the stages of SPEC §2 for one packet, each with what it
 * matched.  Verdict and stages both come from pipeline_eval, which records
 * a trace when asked; this file only formats it (see explain.h). */
#include "vpcfw/explain.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/ctlproto.h"
#include "vpcfw/nacl.h"
#include "vpcfw/sg.h"

/* snprintf for display text: a long id is cut, never an error. */
__attribute__((format(printf, 3, 4)))
static void textf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

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
			textf(err, errlen, "'%s' is not a protocol (tcp, udp, icmp, icmpv6 or 0-255)",
				 proto);
			return false;
		}
		p->proto = (uint8_t)n;
	}
	if (!addr_parse(src, &p->src, &fs)) {
		textf(err, errlen, "'%s' is not an IPv4 or IPv6 address", src);
		return false;
	}
	if (!addr_parse(dst, &p->dst, &fd)) {
		textf(err, errlen, "'%s' is not an IPv4 or IPv6 address", dst);
		return false;
	}
	if (fs != fd) {
		textf(err, errlen, "'%s' and '%s' are of different families", src, dst);
		return false;
	}
	p->family = (uint8_t)fs;
	p->ip_len = 60;
	p->flags = PKT_F_L4;
	if (p->proto == PROTO_TCP || p->proto == PROTO_UDP) {
		if (sport > 65535 || dport > 65535) {
			textf(err, errlen, "a port is 0-65535");
			return false;
		}
		p->sport = (uint16_t)sport;
		p->dport = (uint16_t)dport;
		if (p->proto == PROTO_TCP)
			p->tcp_flags = TCP_SYN;
	} else if (p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6) {
		/* sport/dport carry type and code; the default is an echo request */
		if (sport > 255 || dport > 255) {
			textf(err, errlen, "ICMP type and code are 0-255");
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
			textf(buf, len, " all ports");
		else if (from == to)
			textf(buf, len, " port %d", from);
		else
			textf(buf, len, " ports %d-%d", from, to);
	} else if (proto == PROTO_ICMP || proto == PROTO_ICMPV6) {
		if (from < 0)
			textf(buf, len, " all types");
		else if (to < 0)
			textf(buf, len, " type %d", from);
		else
			textf(buf, len, " type %d code %d", from, to);
	} else {
		buf[0] = '\0';
	}
}

static void proto_text(int proto, char *buf, size_t len)
{
	switch (proto) {
	case RULE_PROTO_ALL: textf(buf, len, "all traffic"); break;
	case PROTO_TCP: textf(buf, len, "tcp"); break;
	case PROTO_UDP: textf(buf, len, "udp"); break;
	case PROTO_ICMP: textf(buf, len, "icmp"); break;
	case PROTO_ICMPV6: textf(buf, len, "icmpv6"); break;
	default: textf(buf, len, "protocol %d", proto); break;
	}
}

static void nacl_text(const struct nacl *n, enum nacl_dir dir, const struct nacl_rule *r,
		      char *buf, size_t len)
{
	const char *d = dir == NACL_OUTBOUND ? "outbound" : "inbound";
	char c[CIDR_STRLEN], pr[24], rg[40];

	if (!r) {
		textf(buf, len, "%s %s rule * (no numbered rule matches: deny)", n->id, d);
		return;
	}
	proto_text(r->proto, pr, sizeof(pr));
	if (r->match_ports)
		range_text(r->proto, r->port_from, r->port_to, rg, sizeof(rg));
	else if (r->icmp_type >= 0)
		range_text(r->proto, r->icmp_type, r->icmp_code, rg, sizeof(rg));
	else
		rg[0] = '\0';
	textf(buf, len, "%s %s rule %u: %s %s%s %s %s", n->id, d, r->number,
		 r->allow ? "allow" : "deny", pr, rg, dir == NACL_OUTBOUND ? "to" : "from",
		 cidr_format(&r->cidr, c));
}

static void sg_text(const struct sg_rule *r, char *buf, size_t len)
{
	char c[CIDR_STRLEN], pr[24], rg[40], peer[80];

	proto_text(r->m->proto, pr, sizeof(pr));
	range_text(r->m->proto, r->m->from, r->m->to, rg, sizeof(rg));
	if (!r->src_peer)
		textf(peer, sizeof(peer), "?");
	else if (r->src_peer->kind == PEER_CIDR)
		textf(peer, sizeof(peer), "%s", cidr_format(&r->src_peer->cidr, c));
	else
		textf(peer, sizeof(peer), "%s %s",
			 r->src_peer->kind == PEER_GROUP ? "group" : "prefix list", r->src_peer->ref);
	textf(buf, len, "%s %s[%d]: %s%s %s %s", r->group->id,
		 r->egress ? "IpPermissionsEgress" : "IpPermissions", r->m->index, pr, rg,
		 r->egress ? "to" : "from", peer);
}

static const char *iface_type(const struct iface *f)
{
	return f->m->type ? f->m->type : "interface";
}

/* One trace step as text. */
static void step_text(const struct trace_step *t, const struct explain *ex, char *out, size_t len)
{
	char buf[160];
	const struct subnet *s = t->subnet;

	switch (t->stage) {
	case STAGE_SRCDST:
		if (t->outcome == TRACE_REFUSE)
			textf(out, len, "%s: %s", t->iface ? t->iface->id : "?",
				 t->detail ? t->detail : "");
		else if (t->why == TW_NO_DEVICE)
			textf(out, len, "no bound device given");
		else
			textf(out, len, "the bound interfaces own the addresses or do not check");
		return;
	case STAGE_EXEMPT:
		if (t->why == TW_NOT_EXEMPT)
			textf(out, len, "no exemption applies");
		else
			textf(out, len, "%s (SPEC §5)", t->detail ? t->detail : "");
		return;
	case STAGE_SG_EGRESS:
	case STAGE_SG_INGRESS: {
		bool eg = t->stage == STAGE_SG_EGRESS;
		if (t->why == TW_NO_IFACE)
			textf(out, len, "the %s is no modelled interface",
				 eg ? "source" : "destination");
		else if (t->why == TW_NO_GROUPS)
			textf(out, len, "%s has no security group (type %s): network ACLs only",
				 t->iface->id, iface_type(t->iface));
		else if (t->why == TW_TRACKED)
			textf(out, len, "%s: a tracked flow admits it", t->iface->id);
		else if (t->outcome == TRACE_PASS && t->sg_rule) {
			sg_text(t->sg_rule, buf, sizeof(buf));
			textf(out, len, "%s: %s", t->iface->id, buf);
		} else
			textf(out, len, "%s: no %s rule of its groups admits it",
				 t->iface ? t->iface->id : "?", eg ? "egress" : "ingress");
		return;
	}
	case STAGE_NACL_OUT:
	case STAGE_NACL_IN: {
		enum nacl_dir dir = t->stage == STAGE_NACL_OUT ? NACL_OUTBOUND : NACL_INBOUND;
		if (t->why == TW_SAME_SUBNET)
			textf(out, len, "both ends are in %s: no subnet boundary",
				 s ? s->id : "no modelled subnet");
		else if (t->why == TW_NO_SUBNET)
			textf(out, len, "that end is in no modelled subnet");
		else if (t->why == TW_NO_NACL)
			textf(out, len, "%s has no network ACL", s->id);
		else if (t->nacl) {
			nacl_text(t->nacl, dir, t->nacl_rule, buf, sizeof(buf));
			textf(out, len, "%s (%s)", buf, s ? s->id : "?");
		} else
			textf(out, len, "%s", t->detail ? t->detail : "");
		return;
	}
	case STAGE_CONNTRACK:
		if (t->outcome == TRACE_REFUSE)
			textf(out, len, "%s", ex->rule);
		else if (t->why == TW_TRACKED)
			textf(out, len, "a tracked flow of %s", t->iface ? t->iface->id : "?");
		else if (t->why == TW_NEW_FLOW)
			textf(out, len, "admitted: the flow is tracked from now on");
		else if (t->why == TW_UNTRACKED_RULE)
			textf(out, len, "admitted by rules that leave the flow untracked");
		else if (t->why == TW_NOT_TRACKED)
			textf(out, len, "nothing tracks this packet");
		else
			textf(out, len, "%s", t->detail ? t->detail : "tracked flow");
		return;
	default:
		textf(out, len, "%s", t->detail ? t->detail : "");
		return;
	}
}

static enum explain_outcome outcome_of(enum trace_outcome o)
{
	switch (o) {
	case TRACE_PASS: return EXO_PASS;
	case TRACE_REFUSE: return EXO_REFUSE;
	case TRACE_NOT_REACHED: return EXO_NOT_REACHED;
	default: return EXO_SKIPPED;
	}
}

/* The pipeline's trace in the pipeline's stage order: a stage the packet
 * never reached is "not reached" after a refusal and "skipped" after an
 * acceptance that ends evaluation (an exemption, a fragment). */
static void format_trace(const struct pipeline_trace *tr, struct explain *ex)
{
	int k = 0;
	bool after = false;

	for (int i = 0; i < PIPELINE_STAGES; i++) {
		enum stage st = pipeline_stage_order[i];
		struct explain_step *s = &ex->steps[ex->n_steps++];
		s->stage = st;
		if (k < tr->n && tr->steps[k].stage == st) {
			const struct trace_step *t = &tr->steps[k++];
			s->outcome = outcome_of(t->outcome);
			step_text(t, ex, s->what, sizeof(s->what));
			after = after || st == ex->v.stage;
			continue;
		}
		if (!ex->v.accept && (after || st == ex->v.stage)) {
			s->outcome = EXO_NOT_REACHED;
			textf(s->what, sizeof(s->what), "an earlier stage refused it");
		} else {
			s->outcome = EXO_SKIPPED;
			textf(s->what, sizeof(s->what), "not evaluated: %s",
				 ex->v.stage == STAGE_EXEMPT ? "exempt traffic (SPEC §5)" : ex->rule);
		}
	}
}

int explain_run(const struct policy *pol, const struct packet *p, const struct iface *in,
		const struct iface *out, struct explain *ex)
{
	struct conntrack *ct = ct_create(16);
	struct pipeline pl;
	struct pipeline_trace tr;
	struct pkt_meta meta = { .in_iface = in, .out_iface = out };

	memset(ex, 0, sizeof(*ex));
	memset(&tr, 0, sizeof(tr));
	if (!ct)
		return -1;
	pipeline_init(&pl, ct);
	pl.trace = &tr;
	meta.in_known = in != NULL;
	pipeline_eval(&pl, pol, p, in || out ? &meta : NULL, 1, &ex->v);
	ct_destroy(ct);
	verdict_rule_format(&ex->v, ex->rule, sizeof(ex->rule));
	ex->src_iface = ex->v.stage == STAGE_EXEMPT ? ex->v.src_iface : tr.a;
	ex->dst_iface = ex->v.stage == STAGE_EXEMPT ? ex->v.dst_iface : tr.b;
	ex->src_subnet = ex->v.stage == STAGE_EXEMPT ? ex->v.src_subnet : tr.x;
	ex->dst_subnet = ex->v.stage == STAGE_EXEMPT ? ex->v.dst_subnet : tr.y;
	format_trace(&tr, ex);
	/* By construction the refusing step is the verdict's stage; checked
	 * all the same, since a stage that records nothing would break it. */
	enum stage refusing = STAGE_NONE;
	for (int i = 0; i < ex->n_steps; i++)
		if (ex->steps[i].outcome == EXO_REFUSE) {
			refusing = ex->steps[i].stage;
			break;
		}
	ex->consistent = ex->v.accept ? refusing == STAGE_NONE : refusing == ex->v.stage;
	return 0;
}

/* ------------------------------------------------------------ the control protocol's answer */

static json_t *iface_json(const struct iface *f)
{
	return f ? json_string(f->id) : json_null();
}

json_t *explain_json(const struct policy *pol, const json_t *req)
{
	const char *proto = ctl_str(req, "proto");
	const char *src = ctl_str(req, "src"), *dst = ctl_str(req, "dst");
	const char *in = ctl_str(req, "in"), *out = ctl_str(req, "out");
	json_int_t sport = json_integer_value(json_object_get(req, "sport"));
	json_int_t dport = json_integer_value(json_object_get(req, "dport"));
	const struct iface *fi = NULL, *fo = NULL;
	struct packet p;
	struct explain ex;
	char err[200];

	if (!proto || !src || !dst)
		return ctl_error("explain needs proto, src and dst");
	if (sport < 0 || dport < 0 || sport > 65535 || dport > 65535)
		return ctl_error("a port is 0-65535");
	if (!explain_packet(proto, src, (unsigned)sport, dst, (unsigned)dport, &p, err, sizeof(err)))
		return ctl_error("%s", err);
	if (in && !(fi = explain_iface(pol, in)))
		return ctl_error("no interface or bound device '%s'", in);
	if (out && !(fo = explain_iface(pol, out)))
		return ctl_error("no interface or bound device '%s'", out);
	if (explain_run(pol, &p, fi, fo, &ex) < 0)
		return ctl_error("out of memory");

	json_t *steps = json_array();
	for (int i = 0; i < ex.n_steps; i++)
		json_array_append_new(steps, json_pack("{s:s, s:s, s:s}",
			"stage", stage_name(ex.steps[i].stage),
			"outcome", explain_outcome_name(ex.steps[i].outcome),
			"what", ex.steps[i].what));
	return json_pack("{s:b, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:b, s:I}",
		"ok", 1,
		"verdict", ex.v.accept ? "ACCEPT" : "REJECT",
		"stage", stage_name(ex.v.stage),
		"reason", reason_name(ex.v.reason),
		"rule", ex.rule,
		"src_interface", iface_json(ex.src_iface),
		"dst_interface", iface_json(ex.dst_iface),
		"src_subnet", ex.src_subnet ? json_string(ex.src_subnet->id) : json_null(),
		"dst_subnet", ex.dst_subnet ? json_string(ex.dst_subnet->id) : json_null(),
		"steps", steps,
		"consistent", ex.consistent,
		"generation", (json_int_t)pol->generation);
}
