/* vpcfwctl diff: recorded traffic decided under two configurations; see
 * diff.h.  Each side has its own lane (lane_decide: the decision of the
 * daemon's workers, without hooks) and flow table, so a flow that a side
 * admitted earlier admits its replies on that side only, as AWS would
 * after the change. */
#include "vpcfw/diff.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/addr.h"
#include "vpcfw/capture.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/flowlog_read.h"
#include "vpcfw/lane.h"
#include "vpcfw/pipeline.h"

/* A set of 64-bit keys (flows, sources), open addressing; grows by
 * doubling, so its cost per record is amortised constant. */
struct keyset {
	uint64_t *slot;                 /* 0: free (keys are made non-zero) */
	size_t cap, n;
};

static bool keyset_add(struct keyset *s, uint64_t k)
{
	k |= 1;
	if (2 * (s->n + 1) > s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		uint64_t *slot = calloc(cap, sizeof(*slot));
		if (!slot)
			return false;
		for (size_t i = 0; i < s->cap; i++)
			if (s->slot[i])
				for (size_t j = s->slot[i] & (cap - 1);; j = (j + 1) & (cap - 1))
					if (!slot[j]) {
						slot[j] = s->slot[i];
						break;
					}
		free(s->slot);
		s->slot = slot;
		s->cap = cap;
	}
	for (size_t j = k & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
		if (s->slot[j] == k)
			return true;
		if (!s->slot[j]) {
			s->slot[j] = k;
			s->n++;
			return true;
		}
	}
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb3f9e63ddc53ULL;
	return x ^ (x >> 33);
}

struct side {
	bool accept;
	enum stage stage;
	enum reason reason;
	char rule[160];
};

/* The flows whose verdict changes the same way for the same rules. */
struct group {
	bool refused;                   /* admitted now, refused by the candidate */
	struct side cur, cand;
	uint64_t flows, packets, bytes;
	struct keyset flow_keys, sources;
	char example[200];
};

struct diff {
	struct lane *cur, *cand;
	const struct policy *pol_cur, *pol_cand;
	uint64_t clock_cur, clock_cand; /* flow logs: each side's clock */
	struct group *groups;
	size_t n_groups, cap_groups;
	uint64_t decided, changed, records_skipped;
	struct keyset all_flows;
	bool oom;
	struct flr_lookahead ahead_cur, ahead_cand; /* flow logs: records ahead */
};

static void side_of(const struct verdict *v, struct side *s)
{
	s->accept = v->accept;
	s->stage = v->stage;
	s->reason = v->reason;
	verdict_rule_format(v, s->rule, sizeof(s->rule));
}

static bool same_side(const struct side *a, const struct side *b)
{
	return a->stage == b->stage && a->reason == b->reason && strcmp(a->rule, b->rule) == 0;
}

static uint64_t flow_key(const struct packet *p, const char *iface)
{
	struct ct_tuple t = { .src = p->src, .dst = p->dst, .sport = p->sport, .dport = p->dport,
			      .proto = p->proto };
	uint64_t h = ct_hash(&t);
	for (; iface && *iface; iface++)
		h = mix(h ^ (unsigned char)*iface);
	return h;
}

static void example(const struct packet *p, char *buf, size_t len)
{
	char s[ADDR_STRLEN], d[ADDR_STRLEN];
	const char *proto = p->proto == PROTO_TCP ? "tcp" : p->proto == PROTO_UDP ? "udp"
			  : p->proto == PROTO_ICMP ? "icmp" : p->proto == PROTO_ICMPV6 ? "icmpv6" : NULL;
	addr_format(&p->src, p->family, s);
	addr_format(&p->dst, p->family, d);
	if (p->proto == PROTO_TCP || p->proto == PROTO_UDP)
		snprintf(buf, len, "%s %s%s%s:%u -> %s%s%s:%u", proto, p->family == FAMILY_V6 ? "[" : "",
			 s, p->family == FAMILY_V6 ? "]" : "", p->sport, p->family == FAMILY_V6 ? "[" : "",
			 d, p->family == FAMILY_V6 ? "]" : "", p->dport);
	else if (proto)
		snprintf(buf, len, "%s %s -> %s type %u code %u", proto, s, d, p->icmp_type,
			 p->icmp_code);
	else
		snprintf(buf, len, "protocol %u %s -> %s", p->proto, s, d);
}

/* One flow (a flow-log record or a captured packet) decided both ways. */
static void compare(struct diff *df, const struct packet *p, uint64_t fk, const struct verdict *a,
		    const struct verdict *b, uint64_t packets, uint64_t bytes)
{
	df->decided++;
	if (!keyset_add(&df->all_flows, fk))
		df->oom = true;
	if (a->accept == b->accept)
		return;
	df->changed++;

	struct side cur, cand;
	side_of(a, &cur);
	side_of(b, &cand);
	struct group *g = NULL;
	for (size_t i = 0; i < df->n_groups; i++)
		if (same_side(&df->groups[i].cur, &cur) && same_side(&df->groups[i].cand, &cand)) {
			g = &df->groups[i];
			break;
		}
	if (!g) {
		if (df->n_groups == df->cap_groups) {
			size_t cap = df->cap_groups ? 2 * df->cap_groups : 16;
			struct group *n = realloc(df->groups, cap * sizeof(*n));
			if (!n) {
				df->oom = true;
				return;
			}
			df->groups = n;
			df->cap_groups = cap;
		}
		g = &df->groups[df->n_groups++];
		memset(g, 0, sizeof(*g));
		g->refused = a->accept;
		g->cur = cur;
		g->cand = cand;
		example(p, g->example, sizeof(g->example));
	}
	size_t before = g->flow_keys.n;
	if (!keyset_add(&g->flow_keys, fk) || !keyset_add(&g->sources, mix(p->src.hi) ^ p->src.lo))
		df->oom = true;
	g->flows += g->flow_keys.n != before;
	g->packets += packets;
	g->bytes += bytes;
}

static int on_record(const struct flr_record *r, const struct flr_pos *pos, void *arg)
{
	struct diff *df = arg;
	struct packet own1, own2;
	const struct packet *p1, *p2;

	(void)pos;
	/* a verdict is the lane's until its next decision: each side has its own */
	const struct verdict *a = flr_lookahead_decide(&df->ahead_cur, df->cur, df->pol_cur, r,
						       &df->clock_cur, &p1, &own1);
	const struct verdict *b = flr_lookahead_decide(&df->ahead_cand, df->cand, df->pol_cand, r,
						       &df->clock_cand, &p2, &own2);
	(void)p2;
	if (a->stage == STAGE_PARSE) {
		df->records_skipped++;
		return 0;
	}
	compare(df, p1, flow_key(p1, r->interface_id), a, b, r->packets, r->bytes);
	return 0;
}

/* A record FLR_AHEAD before on_record's: both sides' flow-table lines loaded */
static void on_ahead(const struct flr_record *r, void *arg)
{
	struct diff *df = arg;
	flr_lookahead_note(&df->ahead_cur, df->cur, df->pol_cur, r);
	flr_lookahead_note(&df->ahead_cand, df->cand, df->pol_cand, r);
}

/* Every IP packet of a capture decided both ways, with its time as the
 * clock (never running backwards); packets that are not IP or do not parse
 * are skipped and counted.  False with a message in err when the file
 * cannot be read (a truncated file: the packets before the damage count). */
static bool read_capture(struct diff *df, const char *path, char *err, size_t errlen)
{
	char why[512];
	struct capture *c = capture_open(path, why, sizeof(why));
	uint64_t now = 0, n = 0;

	if (!c) {
		snprintf(err, errlen, "%s: %s", path, why);
		return false;
	}
	if (!capture_link_supported(c)) {
		snprintf(err, errlen, "%s: unsupported link type %d", path, capture_link(c));
		capture_close(c);
		return false;
	}
	for (;;) {
		struct lane_packet in;
		struct packet p;
		struct lane_out a, b;
		int r = capture_next(c, &in);

		if (r == 0)
			break;
		if (r < 0) {
			snprintf(err, errlen, "%s: record %" PRIu64 ": %s", path, n + 1,
				 capture_error(c));
			capture_close(c);
			return false;
		}
		n++;
		if (in.ts_ns > now)
			now = in.ts_ns;
		/* parsed once, decided by each side's lane */
		if (lane_parse(&in, &p) != PACKET_OK) {
			df->records_skipped++;
			continue;
		}
		size_t wire = in.wirelen > in.caplen ? in.wirelen : in.caplen;
		struct lane_packet one = { .parsed = &p };
		ct_expire(df->cur->pl.ct, now, 2);
		ct_expire(df->cand->pl.ct, now, 2);
		lane_decide(df->cur, &(struct lane_batch){ .pol = df->pol_cur, .now_ns = now,
							   .wall_ns = now }, &one, 1, &a);
		lane_decide(df->cand, &(struct lane_batch){ .pol = df->pol_cand, .now_ns = now,
							    .wall_ns = now }, &one, 1, &b);
		compare(df, &p, flow_key(&p, NULL), a.v, b.v, 1, wire - in.ip_off);
	}
	capture_close(c);
	return true;
}

static int by_significance(const void *x, const void *y)
{
	const struct group *a = x, *b = y;
	if (a->flows != b->flows)
		return a->flows < b->flows ? 1 : -1;
	if (a->packets != b->packets)
		return a->packets < b->packets ? 1 : -1;
	return a->bytes < b->bytes ? 1 : a->bytes > b->bytes ? -1 : 0;
}

static json_t *side_json(const struct side *s)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "verdict", s->accept ? "ACCEPT" : "REJECT",
			 "stage", stage_name(s->stage), "reason", reason_name(s->reason), "rule",
			 s->rule);
}

static void totals(const struct diff *df, bool refused, uint64_t *flows, uint64_t *packets,
		   uint64_t *bytes)
{
	*flows = *packets = *bytes = 0;
	for (size_t i = 0; i < df->n_groups; i++)
		if (df->groups[i].refused == refused) {
			*flows += df->groups[i].flows;
			*packets += df->groups[i].packets;
			*bytes += df->groups[i].bytes;
		}
}

static void report_json(const struct diff *df, const struct diff_options *o, bool complete)
{
	uint64_t rf, rp, rb, af, ap, ab;
	json_t *changes = json_array();

	totals(df, true, &rf, &rp, &rb);
	totals(df, false, &af, &ap, &ab);
	for (size_t i = 0; i < df->n_groups && (!o->limit || i < (size_t)o->limit); i++) {
		const struct group *g = &df->groups[i];
		json_array_append_new(changes, json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:s}",
			"change", g->refused ? "refused" : "admitted", "flows", (json_int_t)g->flows,
			"packets", (json_int_t)g->packets, "bytes", (json_int_t)g->bytes,
			"sources", (json_int_t)g->sources.n, "current", side_json(&g->cur),
			"candidate", side_json(&g->cand), "example", g->example));
	}
	json_t *r = json_pack("{s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}, s:o, s:b}",
		"decided", (json_int_t)df->decided, "flows", (json_int_t)df->all_flows.n,
		"changed", (json_int_t)df->changed,
		"newly_refused", "flows", (json_int_t)rf, "packets", (json_int_t)rp, "bytes", (json_int_t)rb,
		"newly_admitted", "flows", (json_int_t)af, "packets", (json_int_t)ap, "bytes", (json_int_t)ab,
		"changes", changes, "complete", complete);
	json_dumpf(r, o->out, JSON_INDENT(1));
	fputc('\n', o->out);
	json_decref(r);
}

static void report_text(const struct diff *df, const struct diff_options *o)
{
	uint64_t rf, rp, rb, af, ap, ab;

	totals(df, true, &rf, &rp, &rb);
	totals(df, false, &af, &ap, &ab);
	fprintf(o->out, "%" PRIu64 " flows (%" PRIu64 " records or packets) decided under both "
		"configurations: %" PRIu64 " newly refused, %" PRIu64 " newly admitted\n",
		(uint64_t)df->all_flows.n, df->decided, rf, af);
	for (size_t i = 0; i < df->n_groups && (!o->limit || i < (size_t)o->limit); i++) {
		const struct group *g = &df->groups[i];
		fprintf(o->out, "\nnewly %s: %" PRIu64 " flows, %" PRIu64 " packets, %" PRIu64
			" bytes, %zu sources\n", g->refused ? "refused" : "admitted", g->flows,
			g->packets, g->bytes, g->sources.n);
		fprintf(o->out, "  now:       %s %s (%s)%s%s\n", g->cur.accept ? "ACCEPT" : "REJECT",
			reason_name(g->cur.reason), stage_name(g->cur.stage), *g->cur.rule ? ": " : "",
			g->cur.rule);
		fprintf(o->out, "  candidate: %s %s (%s)%s%s\n", g->cand.accept ? "ACCEPT" : "REJECT",
			reason_name(g->cand.reason), stage_name(g->cand.stage),
			*g->cand.rule ? ": " : "", g->cand.rule);
		fprintf(o->out, "  e.g. %s\n", g->example);
	}
	if (o->limit && df->n_groups > (size_t)o->limit)
		fprintf(o->out, "\n... %zu more groups (-n 0 lists all)\n", df->n_groups - (size_t)o->limit);
}

int diff_run(const struct policy *current, const struct policy *candidate,
	     const struct diff_options *o)
{
	struct diff df;
	bool complete = true;
	int rc;

	memset(&df, 0, sizeof(df));
	df.pol_cur = current;
	df.pol_cand = candidate;
	struct conntrack *ca = ct_create(current->conntrack_max ? current->conntrack_max : 1);
	struct conntrack *cb = ct_create(candidate->conntrack_max ? candidate->conntrack_max : 1);
	df.cur = malloc(sizeof(*df.cur));
	df.cand = malloc(sizeof(*df.cand));
	if (!ca || !cb || !df.cur || !df.cand) {
		fprintf(o->err, "vpcfwctl: diff: cannot allocate the flow tables\n");
		free(df.cur);
		free(df.cand);
		ct_destroy(ca);
		ct_destroy(cb);
		return 2;
	}
	lane_init(df.cur, ca, 0);
	lane_init(df.cand, cb, 0);

	/* captures by their magic number, the rest as flow logs (files or
	 * directories), in the order given */
	const char **logs = calloc((size_t)o->n_traffic + 1, sizeof(*logs));
	int n_logs = 0;
	for (int i = 0; i < o->n_traffic && logs; i++) {
		if (!capture_is_capture(o->traffic[i])) {
			logs[n_logs++] = o->traffic[i];
			continue;
		}
		char err[1024];
		if (!read_capture(&df, o->traffic[i], err, sizeof(err))) {
			fprintf(o->err, "vpcfwctl: %s\n", err);
			complete = false;
		}
	}
	if (!logs) {
		df.oom = true;
	} else if (n_logs) {
		struct flr_stats st;
		memset(&st, 0, sizeof(st));
		if (!flr_read_paths_threads(logs, n_logs, o->threads, o->err, on_record, on_ahead, &df, &st))
			complete = false;
		if (!st.files)
			complete = false;
	}
	free(logs);
	if (df.oom) {
		fprintf(o->err, "vpcfwctl: diff: out of memory\n");
		complete = false;
	}

	if (df.n_groups)
		qsort(df.groups, df.n_groups, sizeof(*df.groups), by_significance);
	if (o->json)
		report_json(&df, o, complete);
	else
		report_text(&df, o);
	if (!complete)
		fprintf(o->err, "vpcfwctl: diff: the traffic was not read whole (see above): the report "
			"is incomplete\n");
	rc = !complete || !df.decided ? 2 : df.changed ? 1 : 0;
	if (!df.decided)
		fprintf(o->err, "vpcfwctl: diff: no flow was decided: nothing to compare\n");

	for (size_t i = 0; i < df.n_groups; i++) {
		free(df.groups[i].flow_keys.slot);
		free(df.groups[i].sources.slot);
	}
	free(df.groups);
	free(df.all_flows.slot);
	free(df.cur);
	free(df.cand);
	ct_destroy(ca);
	ct_destroy(cb);
	return rc;
}
