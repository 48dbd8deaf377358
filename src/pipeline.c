/* The packet's way through the stages of SPEC §2, in that order. */
#include "vpcfw/pipeline.h"

#include <stdio.h>
#include <string.h>

static const char *const stage_names[STAGE_COUNT] = {
	[STAGE_NONE] = "none",
	[STAGE_NOT_IP] = "not-ip",
	[STAGE_PARSE] = "parse",
	[STAGE_EXEMPT] = "exempt",
	[STAGE_SRCDST] = "source-dest-check",
	[STAGE_SG_EGRESS] = "sg-egress",
	[STAGE_NACL_OUT] = "nacl-outbound",
	[STAGE_NACL_IN] = "nacl-inbound",
	[STAGE_SG_INGRESS] = "sg-ingress",
	[STAGE_CONNTRACK] = "conntrack",
};

static const char *const reason_names[REASON_COUNT] = {
	[REASON_RULES_ALLOW] = "RULES_ALLOW",
	[REASON_TRACKED_FLOW] = "TRACKED_FLOW",
	[REASON_EXEMPT_ADDRESS] = "EXEMPT_ADDRESS",
	[REASON_NOT_IP] = "NOT_IP",
	[REASON_NOT_MODELLED] = "NOT_MODELLED",
	[REASON_SUBNET_ACL_RESTRICTION] = "SUBNET_ACL_RESTRICTION",
	[REASON_ENI_SG_RULES_MISMATCH] = "ENI_SG_RULES_MISMATCH",
	[REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION] = "ENI_SOURCE_DEST_CHECK_RESTRICTION",
	[REASON_MALFORMED_PACKET] = "MALFORMED_PACKET",
	[REASON_CONNTRACK_ALLOWANCE_EXCEEDED] = "CONNTRACK_ALLOWANCE_EXCEEDED",
	[REASON_INVALID_SOURCE_ADDRESS] = "INVALID_SOURCE_ADDRESS",
	[REASON_CONNTRACK_INVALID] = "CONNTRACK_INVALID",
	[REASON_CONNTRACK_SOURCE_RATE_EXCEEDED] = "CONNTRACK_SOURCE_RATE_EXCEEDED",
	[REASON_CONNTRACK_SOURCE_SHARE_EXCEEDED] = "CONNTRACK_SOURCE_SHARE_EXCEEDED",
};

const char *stage_name(enum stage s)
{
	return (unsigned)s < STAGE_COUNT ? stage_names[s] : "?";
}

const char *reason_name(enum reason r)
{
	return (unsigned)r < REASON_COUNT ? reason_names[r] : "?";
}

void pipeline_init(struct pipeline *pl, struct conntrack *ct)
{
	memset(pl, 0, sizeof(*pl));
	pl->ct = ct;
}

void pipeline_get_stats(const struct pipeline *pl, struct pipeline_stats *out)
{
	for (int st = 0; st < STAGE_COUNT; st++)
		for (int r = 0; r < REASON_COUNT; r++)
			out->packets[st][r] = counter_get(&pl->counters.packets[st][r]);
	out->accepted = counter_get(&pl->counters.accepted);
	out->rejected = counter_get(&pl->counters.rejected);
}

/* The stages as eval_located runs them; explain lists them in this order. */
const enum stage pipeline_stage_order[PIPELINE_STAGES] = {
	STAGE_SRCDST, STAGE_EXEMPT, STAGE_SG_EGRESS, STAGE_NACL_OUT, STAGE_NACL_IN,
	STAGE_SG_INGRESS, STAGE_CONNTRACK,
};

static void trace_add(struct pipeline_trace *t, const struct trace_step *s)
{
	if (t->n < TRACE_STEPS)
		t->steps[t->n++] = *s;
}

/* One step of the trace; a test (never taken) branch on the packet path. */
#define TRACE(pl, ...)                                                                \
	do {                                                                          \
		if (__builtin_expect((pl)->trace != NULL, 0))                         \
			trace_add((pl)->trace, &(struct trace_step){ __VA_ARGS__ });   \
	} while (0)

static inline void hit(struct pipeline *pl, uint32_t slot)
{
	if (pl->hits && slot < pl->n_hits)
		counter_inc(&pl->hits[slot]);
}

static void nacl_hit(struct pipeline *pl, const struct nacl *n, enum nacl_dir dir,
		     const struct packet *p, const struct nacl_rule *r)
{
	if (pl->hits)
		hit(pl, r ? r->hit : n->lists[dir][p->family == FAMILY_V6].star_hit);
}

static void finish(struct pipeline *pl, struct verdict *v, bool accept, enum stage st,
		   enum reason r)
{
	if (pl->hits) {
		if (v->src_iface)
			hit(pl, v->src_iface->hit + (accept ? IFACE_HIT_OUT_ACCEPT : IFACE_HIT_OUT_REJECT));
		if (v->dst_iface)
			hit(pl, v->dst_iface->hit + (accept ? IFACE_HIT_IN_ACCEPT : IFACE_HIT_IN_REJECT));
	}
	v->accept = accept;
	v->stage = st;
	v->reason = r;
	/* The deciding stage is always in the trace, even one that did not
	 * record itself. */
	if (pl->trace && st != STAGE_NONE) {
		bool traced = false;
		for (int i = 0; i < pl->trace->n; i++)
			traced = traced || pl->trace->steps[i].stage == st;
		if (!traced)
			TRACE(pl, .stage = st, .outcome = accept ? TRACE_PASS : TRACE_REFUSE,
			      .iface = v->stage_iface, .nacl = v->nacl, .nacl_rule = v->nacl_rule,
			      .sg_rule = v->sg_rule, .detail = v->detail);
	}
	counter_inc(&pl->counters.packets[st][r]);
	counter_inc(accept ? &pl->counters.accepted : &pl->counters.rejected);
}

void pipeline_verdict_unparsed(struct pipeline *pl, enum packet_status st, struct verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (st == PACKET_NOT_IP)
		finish(pl, v, true, STAGE_NOT_IP, REASON_NOT_IP);
	else
		finish(pl, v, false, STAGE_PARSE, REASON_MALFORMED_PACKET);
}

static void timeouts_of(const struct iface *f, struct ct_timeouts *to)
{
	to->tcp_established = f->tcp_established_timeout;
	to->udp = f->udp_timeout;
	to->udp_stream = f->udp_stream_timeout;
}

/* The tuple connection tracking keys on; false if this packet can neither
 * start nor continue a tracked flow (ICMP other than queries and replies). */
static bool ct_tuple_of(const struct packet *p, struct ct_tuple *t)
{
	t->src = p->src;
	t->dst = p->dst;
	t->proto = p->proto;
	t->sport = p->sport;
	t->dport = p->dport;
	if (p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6) {
		if (p->proto != (p->family == FAMILY_V4 ? PROTO_ICMP : PROTO_ICMPV6) ||
		    !(p->flags & PKT_F_L4))
			return false;
		if (icmp_query_reply_type(p->family, p->icmp_type) < 0 &&
		    !icmp_is_query_reply(p->family, p->icmp_type))
			return false;
		/* Requests and replies in opposite orientations, so that the
		 * flow is directed: X's request tracks Y's reply, while a
		 * request from Y with the same identifier is another flow. */
		bool request = icmp_query_reply_type(p->family, p->icmp_type) >= 0;
		t->sport = request ? p->icmp_id : 0;
		t->dport = request ? 0 : p->icmp_id;
	}
	return true;
}

/* A non-first fragment carries no ports: it neither starts a flow nor can be
 * told apart from other flows of its addresses. */
static bool is_later_fragment(const struct packet *p)
{
	return (p->flags & PKT_F_FRAGMENT) != 0;
}

/* May this accepted packet start a flow?  Only what opens a conversation:
 * anything but ICMP replies (their request would have been tracked). */
static bool may_start_flow(const struct packet *p)
{
	if (p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6)
		return icmp_query_reply_type(p->family, p->icmp_type) >= 0;
	return true;
}

/* A tracked ICMP query flow admits requests from its originator and replies
 * to it, nothing else: an echo request the other way is a new flow. */
static struct ct_entry *icmp_direction_ok(struct ct_entry *e, const struct packet *p)
{
	if (!e || (p->proto != PROTO_ICMP && p->proto != PROTO_ICMPV6))
		return e;
	struct ct_flow_info info;
	ct_entry_info(e, &info);
	bool from_originator = addr_eq(&info.orig.src, &p->src);
	bool request = icmp_query_reply_type(p->family, p->icmp_type) >= 0;
	return from_originator == request ? e : NULL;
}

/* A SYN on a closed connection (TIME_WAIT, CLOSE) opens a new one, which
 * the rules must judge, as nf_conntrack does: the old flow is forgotten.
 * So does a SYN on a flow offloaded to the kernel: its close went by
 * unseen, and the kernel queues the SYN of a new connection (an
 * established entry's SYN would have passed there). */
static struct ct_entry *tcp_reopened(struct pipeline *pl, struct ct_entry *e, const struct packet *p)
{
	if (!e || p->proto != PROTO_TCP || (p->tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN)
		return e;
	struct ct_flow_info info;
	ct_entry_info(e, &info);
	if (info.tcp_state != CT_TCP_TIME_WAIT && info.tcp_state != CT_TCP_CLOSE &&
	    !ct_offloaded(pl->ct, e, NULL, NULL))
		return e;
	ct_remove(pl->ct, e);
	return NULL;
}

/* What window tracking needs of a TCP segment; NULL for other packets and
 * for the first fragment of a fragmented segment, whose length is unknown
 * (conntrack.h: not window-checked, and a RST among them ends nothing). */
static const struct ct_tcp_seg *tcp_seg_of(const struct policy *pol, const struct packet *p,
					   struct ct_tcp_seg *seg)
{
	if (p->proto != PROTO_TCP || !(p->flags & PKT_F_L4) || (p->flags & PKT_F_FRAG_HEAD))
		return NULL;
	seg->seq = p->tcp_seq;
	seg->ack = p->tcp_ack;
	seg->len = p->tcp_len;
	seg->win = p->tcp_win;
	seg->flags = p->tcp_flags;
	seg->wscale = p->flags & PKT_F_TCP_OPTS_CUT ? CT_WSCALE_UNKNOWN : p->tcp_wscale;
	seg->be_liberal = pol->tcp_be_liberal;
	return seg;
}

/* The flags a flow sees of a packet whose segment is not window-checked: a
 * RST in a fragment cannot be checked, so it ends nothing. */
static uint8_t unchecked_flags(const struct packet *p)
{
	return p->proto == PROTO_TCP ? (uint8_t)(p->tcp_flags & ~TCP_RST) : p->tcp_flags;
}

/* AdmitRelatedIcmp: an ICMP error quoting a packet of a flow tracked at f. */
static bool related_icmp(struct pipeline *pl, const struct policy *pol, const struct iface *f,
			 const struct packet *p, uint64_t now)
{
	if (!f || !pol->admit_related_icmp || !(p->flags & PKT_F_ICMP_ERR))
		return false;
	struct ct_tuple t = {
		.src = p->inner.src, .dst = p->inner.dst, .sport = p->inner.sport,
		.dport = p->inner.dport, .proto = p->inner.proto,
	};
	/* a quoted ICMP query is a request: keyed as ct_tuple_of keys them */
	if (t.proto == PROTO_ICMP || t.proto == PROTO_ICMPV6)
		t.dport = 0;
	return ct_lookup(pl->ct, f->ct_id, &t, ct_hash(&t), now) != NULL;
}

/* Where a packet is (struct pipeline_located, pipeline.h): the part of a
 * verdict that needs no flow state, so a batch can do it first and prefetch
 * the flow table while it does. */
#define located pipeline_located

static inline bool stateful(const struct iface *f)
{
	return f && f->sg_applies;
}

static void locate(const struct policy *pol, const struct packet *p, const struct pkt_meta *meta,
		   struct located *l)
{
	l->ssub = policy_subnet_by_addr(pol, &p->src);
	l->dsub = policy_subnet_by_addr(pol, &p->dst);
	l->skind = exempt_kind(pol, &p->src, l->ssub);
	l->dkind = exempt_kind(pol, &p->dst, l->dsub);
	/* A bound device names the interface even when the address is not its
	 * own (source/destination check off: NAT, appliances). */
	l->a = meta && meta->in_iface ? meta->in_iface : policy_iface_by_addr(pol, &p->src);
	l->b = meta && meta->out_iface ? meta->out_iface : policy_iface_by_addr(pol, &p->dst);
	if (l->a && !l->a->subnet)
		l->a = NULL; /* not enforced: its subnet is unknown */
	if (l->b && !l->b->subnet)
		l->b = NULL;
	l->has_tuple = !is_later_fragment(p) && ct_tuple_of(p, &l->t);
	/* only security groups track flows: an interface without any (a NAT
	 * gateway's) is filtered by the stateless network ACLs alone; a packet
	 * to an exempt address never reaches the flow table */
	l->trackable = l->has_tuple && (stateful(l->a) || stateful(l->b)) &&
		       l->dkind == EXEMPT_NONE;
	l->hash = l->has_tuple && (l->trackable || l->skind || l->dkind) ? ct_hash(&l->t) : 0;
}

/* fe80::/10 and the link-scope multicast ff02::/16 (neighbour discovery) */
static bool is_link_local6(const struct ip_addr *a)
{
	return (a->hi >> 54) == (0xfe80ULL >> 6) || (a->hi >> 48) == 0xff02ULL;
}

/* Is this packet from an exempt address the answer to a request noted at
 * the exemption: its reply, a later fragment of one, or an ICMP error
 * quoting the request? */
static bool exempt_reply(struct pipeline *pl, const struct packet *p, const struct located *l,
			 uint64_t now)
{
	if (p->flags & PKT_F_ICMP_ERR) {
		struct ct_tuple q = {
			.src = p->inner.src, .dst = p->inner.dst, .sport = p->inner.sport,
			.dport = p->inner.dport, .proto = p->inner.proto,
		};
		if (q.proto == PROTO_ICMP || q.proto == PROTO_ICMPV6)
			q.dport = 0; /* a quoted query, keyed as ct_tuple_of keys it */
		return exempt_flow_known(&pl->exempt, &q, ct_hash(&q), now);
	}
	if (is_later_fragment(p))
		return ct_frag_admitted(pl->ct, &p->src, &p->dst, p->proto, p->frag_id, now);
	if (!l->has_tuple)
		return false;
	const struct ct_tuple req = {
		.src = l->t.dst, .dst = l->t.src, .sport = l->t.dport, .dport = l->t.sport,
		.proto = l->t.proto,
	};
	return exempt_flow_known(&pl->exempt, &req, l->hash, now);
}

/* Where the packet is, for flow logs and mirroring; exempt traffic has no
 * place there (SPEC §5: neither filtered nor logged). */
static void place(struct verdict *v, const struct located *l)
{
	v->src_iface = l->a;
	v->dst_iface = l->b;
	v->src_subnet = l->a ? l->a->subnet : l->ssub;
	v->dst_subnet = l->b ? l->b->subnet : l->dsub;
}

/* One end of an accepted packet, for the offload: its security group
 * (if any) admits every further packet of the flow both ways.  e: the
 * flow's entry there (NULL: none); r: the rule that admitted the packet
 * when the group was consulted. */
static bool end_settled(const struct iface *f, const struct ct_entry *e, const struct sg_rule *r,
			const struct packet *p, bool egress)
{
	if (!stateful(f))
		return true;
	if (e)
		return ct_offloadable(e);
	/* untracked by the rules: they decide each packet alike, both ways */
	return r && (egress ? sg_flow_untracked(f->out, f->in, r, p, true)
			    : sg_flow_untracked(f->in, f->out, r, p, false));
}

/* verdict.offloadable (pipeline.h), for a packet admitted by tracking. */
static void offload_check(struct verdict *v, const struct packet *p, const struct iface *a,
			  const struct iface *b, struct ct_entry *ea, struct ct_entry *eb,
			  const struct sg_rule *ra, const struct sg_rule *rb)
{
	v->flows[0] = ea;
	v->flows[1] = eb != ea ? eb : NULL;
	if (p->flags & (PKT_F_FRAGMENT | PKT_F_FRAG_HEAD | PKT_F_ICMP_ERR) || v->detail)
		return; /* a fragment, a related ICMP error, an ignored RST */
	if (!(ea && ct_offloadable(ea)) && !(eb && ct_offloadable(eb)))
		return; /* no end has seen the flow established both ways */
	v->offloadable = end_settled(a, ea, ra, p, true) && end_settled(b, eb, rb, p, false);
}

static void eval_located(struct pipeline *pl, const struct policy *pol, const struct packet *p,
			 const struct pkt_meta *meta, uint64_t now, struct verdict *v,
			 const struct located *l)
{
	memset(v, 0, sizeof(*v));
	if (pl->trace) {
		pl->trace->a = l->a;
		pl->trace->b = l->b;
		pl->trace->x = l->a ? l->a->subnet : l->ssub;
		pl->trace->y = l->b ? l->b->subnet : l->dsub;
	}

	/* 1. source/destination check (SPEC §6), where the daemon knows the
	 * device.  It comes before the exemption: an instance cannot send from
	 * an exempt address either (AWS drops that at the source).  IPv6
	 * link-local addresses are every interface's own. */
	if (meta && meta->in_iface && meta->in_iface->source_dest_check &&
	    !policy_iface_owns(pol, meta->in_iface, &p->src) && !is_link_local6(&p->src)) {
		v->stage_iface = meta->in_iface;
		v->detail = "spoofed source";
		finish(pl, v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION);
		return;
	}
	if (meta && meta->out_iface && meta->out_iface->source_dest_check &&
	    !policy_iface_owns(pol, meta->out_iface, &p->dst) && !is_link_local6(&p->dst)) {
		v->stage_iface = meta->out_iface;
		v->detail = "not addressed to interface";
		finish(pl, v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION);
		return;
	}
	/* A source owned by a bound interface comes from that interface's
	 * device and no other (rp_filter strict mode), whatever the device it
	 * arrived from: a bound device that does not check sources, or one
	 * bound to nothing. */
	if (meta && meta->in_known) {
		const struct iface *owner = policy_iface_by_addr(pol, &p->src);
		if (owner && owner->device && owner != meta->in_iface) {
			v->stage_iface = owner;
			v->detail = "spoofed source (not from its device)";
			finish(pl, v, false, STAGE_SRCDST, REASON_ENI_SOURCE_DEST_CHECK_RESTRICTION);
			return;
		}
	}
	TRACE(pl, .stage = STAGE_SRCDST, .outcome = meta ? TRACE_PASS : TRACE_SKIPPED,
	      .why = meta ? TW_DEVICES_OK : TW_NO_DEVICE);

	/* 2. exempt addresses (SPEC §5): nothing else is evaluated or logged */
	if (l->skind == EXEMPT_SUBNET_EDGE) {
		/* a network or broadcast address never sends */
		place(v, l);
		v->detail = "source is a subnet's network or broadcast address";
		finish(pl, v, false, STAGE_EXEMPT, REASON_INVALID_SOURCE_ADDRESS);
		return;
	}
	if (l->dkind != EXEMPT_NONE) {
		/* a request to AWS's address: its replies are exempt too */
		if (l->has_tuple)
			exempt_flow_note(&pl->exempt, &l->t, l->hash, now);
		if (p->flags & PKT_F_FRAG_HEAD)
			ct_frag_admit(pl->ct, &p->src, &p->dst, p->proto, p->frag_id, now);
		v->exempt = true;
		v->detail = "to an exempt address";
		finish(pl, v, true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS);
		return;
	}
	if (l->skind != EXEMPT_NONE) {
		bool reply = exempt_reply(pl, p, l, now);
		if (reply || exempt_on_link(&p->dst)) {
			if (reply && (p->flags & PKT_F_FRAG_HEAD))
				ct_frag_admit(pl->ct, &p->src, &p->dst, p->proto, p->frag_id, now);
			v->exempt = true;
			v->detail = reply ? "reply from an exempt address" : "stays on the link";
			finish(pl, v, true, STAGE_EXEMPT, REASON_EXEMPT_ADDRESS);
			return;
		}
		/* AWS's network delivers none of these unasked */
		if (l->skind == EXEMPT_LINK_LOCAL) {
			place(v, l);
			v->detail = "link-local source off the link";
			finish(pl, v, false, STAGE_EXEMPT, REASON_INVALID_SOURCE_ADDRESS);
			return;
		}
		if (l->skind == EXEMPT_RESERVED) {
			place(v, l);
			v->detail = "reserved address of the VPC, answering no request";
			finish(pl, v, false, STAGE_EXEMPT, REASON_INVALID_SOURCE_ADDRESS);
			return;
		}
		/* AWS's IPv6 service range: judged by the rules */
	}
	TRACE(pl, .stage = STAGE_EXEMPT, .outcome = TRACE_SKIPPED, .why = TW_NOT_EXEMPT);

	place(v, l);
	const struct iface *a = l->a, *b = l->b;
	const struct subnet *x = v->src_subnet, *y = v->dst_subnet;

	/* a later fragment of a datagram whose first fragment was admitted:
	 * the datagram was judged on the first one, which has the ports */
	if ((p->flags & PKT_F_FRAGMENT) &&
	    ct_frag_admitted(pl->ct, &p->src, &p->dst, p->proto, p->frag_id, now)) {
		v->detail = "fragment of an admitted datagram";
		finish(pl, v, true, STAGE_CONNTRACK, REASON_TRACKED_FLOW);
		return;
	}

	const struct ct_tuple t = l->t;
	const bool trackable = l->trackable;
	const uint64_t hash = l->hash;
	struct ct_entry *ea = NULL, *eb = NULL;
	bool tracked_a = false, tracked_b = false;
	if (trackable) {
		if (stateful(a))
			ea = ct_lookup(pl->ct, a->ct_id, &t, hash, now);
		if (stateful(b) && b != a)
			eb = ct_lookup(pl->ct, b->ct_id, &t, hash, now);
		else if (stateful(b))
			eb = ea;
	}
	bool same_entry = eb == ea;
	ea = icmp_direction_ok(tcp_reopened(pl, ea, p), p);
	eb = same_entry ? ea : icmp_direction_ok(tcp_reopened(pl, eb, p), p);
	tracked_a = ea || (stateful(a) && related_icmp(pl, pol, a, p, now));
	tracked_b = eb || (stateful(b) && related_icmp(pl, pol, b, p, now));

	/* A segment of a tracked TCP flow outside its windows is dropped and
	 * changes nothing (SPEC §4, nf_conntrack's tcp_in_window; RFC 5961). */
	struct ct_tcp_seg segbuf;
	const struct ct_tcp_seg *seg = tcp_seg_of(pol, p, &segbuf);
	if (seg && (ea || eb)) {
		enum ct_tcp_verdict r = CT_TCP_OK, rb = CT_TCP_OK;
		if (ea)
			r = ct_tcp_check(pl->ct, ea, &t, seg);
		if (eb && eb != ea && r != CT_TCP_INVALID)
			rb = ct_tcp_check(pl->ct, eb, &t, seg);
		if (r == CT_TCP_INVALID || rb == CT_TCP_INVALID) {
			ct_count_tcp(pl->ct, CT_TCP_INVALID);
			v->stage_iface = r == CT_TCP_INVALID ? a : b;
			v->detail = "TCP segment outside the flow's window";
			finish(pl, v, false, STAGE_CONNTRACK, REASON_CONNTRACK_INVALID);
			return;
		}
		if ((r == CT_TCP_IGNORE || rb == CT_TCP_IGNORE) && (p->tcp_flags & TCP_RST)) {
			ct_count_tcp(pl->ct, CT_TCP_IGNORE);
			v->detail = "RST in the window, not at the expected sequence number: flow kept";
		}
	}

	const struct sg_rule *ra = NULL, *rb = NULL;
	enum stage last = STAGE_NONE;

	/* 3. security group egress of A */
	if (!stateful(a))
		TRACE(pl, .stage = STAGE_SG_EGRESS, .outcome = TRACE_SKIPPED,
		      .why = a ? TW_NO_GROUPS : TW_NO_IFACE, .iface = a);
	else if (tracked_a)
		TRACE(pl, .stage = STAGE_SG_EGRESS, .outcome = TRACE_SKIPPED, .why = TW_TRACKED,
		      .iface = a);
	if (stateful(a) && !tracked_a) {
		if (!sg_match(a->out, p, true, &ra)) {
			v->stage_iface = a;
			finish(pl, v, false, STAGE_SG_EGRESS, REASON_ENI_SG_RULES_MISMATCH);
			return;
		}
		hit(pl, a->sg_hit_out + ra->hit);
		v->sg_rule = ra;
		v->stage_iface = a;
		last = STAGE_SG_EGRESS;
		TRACE(pl, .stage = STAGE_SG_EGRESS, .outcome = TRACE_PASS, .iface = a, .sg_rule = ra);
	}

	/* 4. network ACLs, only when the packet crosses a subnet boundary */
	if (x == y) {
		TRACE(pl, .stage = STAGE_NACL_OUT, .outcome = TRACE_SKIPPED, .why = TW_SAME_SUBNET,
		      .subnet = x);
		TRACE(pl, .stage = STAGE_NACL_IN, .outcome = TRACE_SKIPPED, .why = TW_SAME_SUBNET,
		      .subnet = y);
	} else if (!x || !x->nacl) {
		TRACE(pl, .stage = STAGE_NACL_OUT, .outcome = TRACE_SKIPPED,
		      .why = x ? TW_NO_NACL : TW_NO_SUBNET, .subnet = x);
	}
	if (x != y) {
		const struct nacl_rule *nr;
		if (x && x->nacl) {
			v->nacl = x->nacl;
			bool ok = nacl_eval(x->nacl, NACL_OUTBOUND, p, &nr);
			nacl_hit(pl, x->nacl, NACL_OUTBOUND, p, nr);
			TRACE(pl, .stage = STAGE_NACL_OUT, .outcome = ok ? TRACE_PASS : TRACE_REFUSE,
			      .subnet = x, .nacl = x->nacl, .nacl_rule = nr);
			if (!ok) {
				v->nacl_rule = nr;
				v->sg_rule = NULL;
				finish(pl, v, false, STAGE_NACL_OUT, REASON_SUBNET_ACL_RESTRICTION);
				return;
			}
			v->nacl_rule = nr;
			last = STAGE_NACL_OUT;
		}
		if (!y || !y->nacl)
			TRACE(pl, .stage = STAGE_NACL_IN, .outcome = TRACE_SKIPPED,
			      .why = y ? TW_NO_NACL : TW_NO_SUBNET, .subnet = y);
		if (y && y->nacl) {
			v->nacl = y->nacl;
			bool ok = nacl_eval(y->nacl, NACL_INBOUND, p, &nr);
			nacl_hit(pl, y->nacl, NACL_INBOUND, p, nr);
			TRACE(pl, .stage = STAGE_NACL_IN, .outcome = ok ? TRACE_PASS : TRACE_REFUSE,
			      .subnet = y, .nacl = y->nacl, .nacl_rule = nr);
			if (!ok) {
				v->nacl_rule = nr;
				v->sg_rule = NULL;
				finish(pl, v, false, STAGE_NACL_IN, REASON_SUBNET_ACL_RESTRICTION);
				return;
			}
			v->nacl_rule = nr;
			last = STAGE_NACL_IN;
		}
	}

	/* 5. security group ingress of B */
	if (!stateful(b))
		TRACE(pl, .stage = STAGE_SG_INGRESS, .outcome = TRACE_SKIPPED,
		      .why = b ? TW_NO_GROUPS : TW_NO_IFACE, .iface = b);
	else if (tracked_b)
		TRACE(pl, .stage = STAGE_SG_INGRESS, .outcome = TRACE_SKIPPED, .why = TW_TRACKED,
		      .iface = b);
	if (stateful(b) && !tracked_b) {
		if (!sg_match(b->in, p, false, &rb)) {
			v->stage_iface = b;
			v->sg_rule = NULL;
			v->nacl = NULL;
			v->nacl_rule = NULL;
			finish(pl, v, false, STAGE_SG_INGRESS, REASON_ENI_SG_RULES_MISMATCH);
			return;
		}
		hit(pl, b->sg_hit_in + rb->hit);
		v->sg_rule = rb;
		v->stage_iface = b;
		last = STAGE_SG_INGRESS;
		TRACE(pl, .stage = STAGE_SG_INGRESS, .outcome = TRACE_PASS, .iface = b, .sg_rule = rb);
	}
	if (last == STAGE_SG_INGRESS || last == STAGE_SG_EGRESS) {
		v->nacl = NULL;
		v->nacl_rule = NULL;
	}

	/* Accepted: connection tracking is updated last. */
	if (trackable) {
		struct ct_timeouts to;
		if (ea) {
			timeouts_of(a, &to);
			if (seg)
				(void)ct_update_seg(pl->ct, ea, &t, seg, &to, now);
			else
				ct_update(pl->ct, ea, &t, unchecked_flags(p), &to, now);
		}
		if (eb && eb != ea) {
			timeouts_of(b, &to);
			if (seg)
				(void)ct_update_seg(pl->ct, eb, &t, seg, &to, now);
			else
				ct_update(pl->ct, eb, &t, unchecked_flags(p), &to, now);
		}
		/* TcpLoose off (nf_conntrack_tcp_loose = 0): only a SYN starts a
		 * TCP flow; another segment of no tracked flow is invalid */
		bool starts_a = stateful(a) && !tracked_a && may_start_flow(p) &&
				!sg_flow_untracked(a->out, a->in, ra, p, true);
		bool starts_b = stateful(b) && b != a && !tracked_b && may_start_flow(p) &&
				!sg_flow_untracked(b->in, b->out, rb, p, false);
		if ((starts_a || starts_b) && !pol->tcp_loose && p->proto == PROTO_TCP &&
		    (p->tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN) {
			ct_count_tcp(pl->ct, CT_TCP_INVALID);
			v->stage_iface = starts_a ? a : b;
			v->detail = "TCP segment of no tracked connection (TcpLoose is off)";
			finish(pl, v, false, STAGE_CONNTRACK, REASON_CONNTRACK_INVALID);
			return;
		}
		/* flood fairness (beyond AWS; off unless Vpcfw.PerSource* are
		 * set): only ever refuses a flow the rules admitted */
		if (starts_a || starts_b) {
			enum ct_source_verdict sv = ct_source_admit(
				pl->ct, &pol->fairness, &p->src, (unsigned)starts_a + (unsigned)starts_b,
				now);
			if (sv != CT_SOURCE_OK) {
				v->stage_iface = starts_a ? a : b;
				v->detail = sv == CT_SOURCE_RATE
					? "the source starts new flows faster than PerSourceNewFlowsPerSecond"
					: "the source's flows hold PerSourceConntrackPercent of the table";
				finish(pl, v, false, STAGE_CONNTRACK,
				       sv == CT_SOURCE_RATE ? REASON_CONNTRACK_SOURCE_RATE_EXCEEDED
							    : REASON_CONNTRACK_SOURCE_SHARE_EXCEEDED);
				return;
			}
		}
		struct ct_entry *na = NULL;
		if (starts_a) {
			timeouts_of(a, &to);
			na = seg ? ct_insert_seg(pl->ct, a->ct_id, &t, hash, seg, &to, now)
				 : ct_insert(pl->ct, a->ct_id, &t, hash, unchecked_flags(p), &to, now);
			if (!na) {
				v->stage_iface = a;
				finish(pl, v, false, STAGE_CONNTRACK, REASON_CONNTRACK_ALLOWANCE_EXCEEDED);
				return;
			}
		}
		if (starts_b) {
			timeouts_of(b, &to);
			if (!(seg ? ct_insert_seg(pl->ct, b->ct_id, &t, hash, seg, &to, now)
				  : ct_insert(pl->ct, b->ct_id, &t, hash, unchecked_flags(p), &to, now))) {
				if (na)
					ct_remove(pl->ct, na);
				v->stage_iface = b;
				finish(pl, v, false, STAGE_CONNTRACK, REASON_CONNTRACK_ALLOWANCE_EXCEEDED);
				return;
			}
		}
	}

	if (pl->trace && !((a && tracked_a) || (b && tracked_b))) {
		bool untracked = trackable && !may_start_flow(p);
		if (!trackable || untracked)
			TRACE(pl, .stage = STAGE_CONNTRACK, .outcome = TRACE_SKIPPED,
			      .why = TW_NOT_TRACKED);
		else if (!(stateful(a) && !sg_flow_untracked(a->out, a->in, ra, p, true)) &&
			 !(stateful(b) && !sg_flow_untracked(b->in, b->out, rb, p, false)))
			TRACE(pl, .stage = STAGE_CONNTRACK, .outcome = TRACE_SKIPPED,
			      .why = TW_UNTRACKED_RULE);
		else
			TRACE(pl, .stage = STAGE_CONNTRACK, .outcome = TRACE_PASS, .why = TW_NEW_FLOW);
	}
	if (p->flags & PKT_F_FRAG_HEAD)
		ct_frag_admit(pl->ct, &p->src, &p->dst, p->proto, p->frag_id, now);
	if (!a && !b && !x && !y) {
		finish(pl, v, true, STAGE_NONE, REASON_NOT_MODELLED);
		return;
	}
	if ((a && tracked_a) || (b && tracked_b)) {
		TRACE(pl, .stage = STAGE_CONNTRACK, .outcome = TRACE_PASS, .why = TW_TRACKED,
		      .iface = tracked_a ? a : b);
		offload_check(v, p, a, b, ea, eb, ra, rb);
		finish(pl, v, true, STAGE_CONNTRACK, REASON_TRACKED_FLOW);
		return;
	}
	finish(pl, v, true, last, REASON_RULES_ALLOW);
}

void pipeline_locate(const struct policy *pol, const struct packet *p, const struct pkt_meta *meta,
		     struct pipeline_located *l)
{
	locate(pol, p, meta, l);
}

void pipeline_prefetch_located(const struct pipeline *pl, const struct pipeline_located *l,
			       bool entries)
{
	if (!l->trackable)
		return;
	if (stateful(l->a))
		ct_prefetch(pl->ct, l->a->ct_id, l->hash, entries);
	if (stateful(l->b) && l->b != l->a)
		ct_prefetch(pl->ct, l->b->ct_id, l->hash, entries);
}

void pipeline_eval_located(struct pipeline *pl, const struct policy *pol, const struct packet *p,
			   const struct pkt_meta *meta, uint64_t now,
			   const struct pipeline_located *l, struct verdict *v)
{
	eval_located(pl, pol, p, meta, now, v, l);
}

void pipeline_eval(struct pipeline *pl, const struct policy *pol, const struct packet *p,
		   const struct pkt_meta *meta, uint64_t now, struct verdict *v)
{
	struct located l;
	locate(pol, p, meta, &l);
	eval_located(pl, pol, p, meta, now, v, &l);
}

void pipeline_eval_batch(struct pipeline *pl, const struct policy *pol, const struct packet *pkts,
			 const struct pkt_meta *metas, int n, uint64_t now, struct verdict *out)
{
	struct located l[PIPELINE_BATCH];

	while (n > 0) {
		int k = n < PIPELINE_BATCH ? n : PIPELINE_BATCH;
		/* Flow-table lookups wait on memory; overlap them: locate every
		 * packet and load its buckets, then their first entries, then
		 * decide. */
		for (int i = 0; i < k; i++) {
			locate(pol, &pkts[i], metas ? &metas[i] : NULL, &l[i]);
			if (l[i].trackable) {
				if (stateful(l[i].a))
					ct_prefetch(pl->ct, l[i].a->ct_id, l[i].hash, false);
				if (stateful(l[i].b))
					ct_prefetch(pl->ct, l[i].b->ct_id, l[i].hash, false);
			}
		}
		for (int i = 0; i < k; i++) {
			if (l[i].trackable) {
				if (stateful(l[i].a))
					ct_prefetch(pl->ct, l[i].a->ct_id, l[i].hash, true);
				if (stateful(l[i].b))
					ct_prefetch(pl->ct, l[i].b->ct_id, l[i].hash, true);
			}
		}
		for (int i = 0; i < k; i++)
			eval_located(pl, pol, &pkts[i], metas ? &metas[i] : NULL, now, &out[i], &l[i]);
		pkts += k;
		out += k;
		if (metas)
			metas += k;
		n -= k;
	}
}

char *verdict_rule_format(const struct verdict *v, char *buf, size_t len)
{
	buf[0] = '\0';
	switch (v->stage) {
	case STAGE_NACL_OUT:
	case STAGE_NACL_IN:
		if (!v->nacl)
			break;
		if (v->nacl_rule)
			snprintf(buf, len, "%s %s rule %u", v->nacl->id,
				 v->stage == STAGE_NACL_OUT ? "outbound" : "inbound", v->nacl_rule->number);
		else
			snprintf(buf, len, "%s %s rule *", v->nacl->id,
				 v->stage == STAGE_NACL_OUT ? "outbound" : "inbound");
		break;
	case STAGE_SG_EGRESS:
	case STAGE_SG_INGRESS:
		if (v->sg_rule)
			snprintf(buf, len, "%s %s[%d]", v->sg_rule->group->id,
				 v->sg_rule->egress ? "IpPermissionsEgress" : "IpPermissions",
				 v->sg_rule->m->index);
		else if (v->stage_iface)
			snprintf(buf, len, "no security-group rule of %s admits it (%s)",
				 v->stage_iface->id, v->stage == STAGE_SG_EGRESS ? "egress" : "ingress");
		break;
	case STAGE_EXEMPT:
		snprintf(buf, len, "%s", v->detail ? v->detail : "");
		break;
	case STAGE_SRCDST:
		if (v->stage_iface)
			snprintf(buf, len, "%s: %s", v->stage_iface->id, v->detail ? v->detail : "");
		break;
	case STAGE_CONNTRACK:
		if (v->reason == REASON_TRACKED_FLOW)
			snprintf(buf, len, "%s", v->detail ? v->detail : "tracked flow");
		else if (v->reason == REASON_CONNTRACK_ALLOWANCE_EXCEEDED && v->stage_iface)
			snprintf(buf, len, "%s: connection tracking table full", v->stage_iface->id);
		else if (v->stage_iface)
			snprintf(buf, len, "%s: %s", v->stage_iface->id, v->detail ? v->detail : "");
		else if (v->detail)
			snprintf(buf, len, "%s", v->detail);
		break;
	default:
		break;
	}
	return buf;
}
