/* The live daemon: one worker thread per NFQUEUE queue, each with its own
 * conntrack shard, counters and buffers; the main thread handles signals,
 * reloads and logging.
 *
 * The policy in force is a `generation` (policy + the ifindex -> interface
 * table of its InterfaceBindings), published through one atomic pointer.  A
 * worker takes it at the start of a batch and announces the epoch it read;
 * a reload swaps the pointer, bumps the epoch and frees the old generation
 * once every worker is idle or has started a later batch. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter.h>

#include <cap-ng.h>

#include "vpcfw/conf.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/ctl.h"
#include "vpcfw/daemon.h"
#include "vpcfw/diag.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/ha.h"
#include "vpcfw/kct.h"
#include "vpcfw/lane.h"
#include "vpcfw/load.h"
#include "vpcfw/log.h"
#include "vpcfw/mirror.h"
#include "vpcfw/nfq.h"
#include "vpcfw/notify.h"
#include "vpcfw/offacct.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"
#include "vpcfw/startcheck.h"
#include "vpcfw/state.h"

#define EXPIRE_EVERY_NS 10000000u /* conntrack expiry slice every 10 ms... */
#define EXPIRE_SWEEP_SLICES 512   /* ...so that a whole table is swept in ~5 s */
#define REFUSAL_RING 256        /* per worker */
#define REFUSAL_TEXT 240
#define REFUSALS_PER_SECOND 50

_Static_assert(NFQUEUE_BATCH_MAX <= LANE_BATCH_MAX, "a receive batch fits a lane's");

struct binding {
	uint32_t ifindex;
	const struct iface *iface;
};

struct generation {
	struct policy *pol;
	struct binding *bindings;       /* sorted by ifindex */
	int n_bindings;
	uint64_t number;
	counter_t *hits;                /* n_workers rows of pol->n_hits counters */
	/* the offload (issue #16): offload_mark is the conntrack-mark bit when
	 * Vpcfw.Offload is on (0: off); offload says whether workers may set
	 * it under this generation (off once a reload, audit or shadow mode
	 * starts taking the flows back); mirrored[iface index]: a mirroring
	 * session's source, whose packets stay on the queue */
	uint32_t offload_mark;
	uint32_t offload_after;         /* Vpcfw.OffloadAfterPackets */
	atomic_bool offload;
	bool *mirrored;
};

struct refusal {
	char text[REFUSAL_TEXT];
};

struct worker {
	pthread_t thread;
	bool running;
	int index;
	struct nfqueue *q;
	struct conntrack *ct;
	struct lane lane;               /* pipeline, hooks, audit's would-refuse count */
	_Atomic uint64_t in_epoch;      /* 0: between batches, holds no generation */
	uint64_t next_expire_ns;
	unsigned expire_budget;
	/* refused packets, formatted by the worker, logged by the main thread */
	struct refusal ring[REFUSAL_RING];
	_Atomic uint32_t ring_head, ring_tail;
	_Atomic uint64_t refusals_lost;
	/* flow listings served between batches */
	_Atomic int flow_req;           /* 1: list flows into flow_fn, then 2 */
	int (*flow_fn)(int worker, const struct ct_flow_info *f, void *arg);
	void *flow_arg;
	/* one per turn of the worker's loop (at least every receive timeout,
	 * busy or idle): the watchdog's evidence of progress */
	counter_t heartbeat;
	uint64_t wd_seen;               /* the main thread's: heartbeat at the last check */
	bool wd_stuck;                  /* the main thread's: reported stuck */
	_Atomic int state_req;          /* 1: copy the flows into state_part, then 2 */
	struct state_part state_part;
	struct ha_worker *hw;           /* the HA sync's side of this worker; NULL: off */
	/* the offloaded flows' accounting (offacct.h); NULL: no offload */
	struct offacct_worker *oa;
	/* the offload: marks set, packets of marked flows that still came
	 * (no accept rule?), offloadable packets without a kernel entry */
	counter_t offload_marked, offload_missed, offload_no_ct;
	uint64_t offload_epoch;         /* of the last take-back this table forgot */
};

static _Atomic(struct generation *) current;
static _Atomic uint64_t epoch = 1;
static atomic_bool stopping;
static atomic_bool worker_failed;
static atomic_bool audit_mode;          /* accept all, count what would be refused */
static _Atomic(struct shadow *) shadow; /* a candidate policy beside the running one */

static struct worker *workers;
static int n_workers;
/* offloaded flows' flow logs and idle timeouts from the kernel's counters */
static struct offacct *offacct;

/* Offload take-backs (main thread): each bumps offload_epoch before the
 * kernel's marks are cleared, and every worker forgets its flows' offload
 * before its next batch.  A take-back that failed is retried every second
 * with takeback_mark until it succeeds. */
static _Atomic uint64_t offload_epoch;
static uint32_t takeback_mark;
static uint64_t takeback_retry_ns;
static struct ctl_offload_stats offload_cnt;

#ifdef VPCFW_TEST_HOOKS
/* The test build only (tests/lab/watchdog.sh): SIGUSR2 toggles a stall of
 * every worker inside its next batch, packets in hand. */
static atomic_bool test_stall;
#endif
static struct flowlog *flowlog;
static struct mirror *mirror;
/* the HA pair's sync (ha.h): its thread reads the policy as a worker does */
static struct ha *ha;
static struct ha_worker *ha_workers;
static _Atomic uint64_t ha_in_epoch;

/* ------------------------------------------------------------ logging */

static void log_diag(const struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		logit(d->msgs[i].error ? LOG_ERR : LOG_WARNING, "%s: %s",
		       d->msgs[i].error ? "error" : "warning", d->msgs[i].text);
}

/* ------------------------------------------------------------ generations */

static int cmp_binding(const void *a, const void *b)
{
	uint32_t x = ((const struct binding *)a)->ifindex;
	uint32_t y = ((const struct binding *)b)->ifindex;

	return x < y ? -1 : x > y;
}

static void generation_free(struct generation *g)
{
	if (!g)
		return;
	policy_free(g->pol);
	free(g->bindings);
	free(g->hits);
	free(g->mirrored);
	free(g);
}

/* Resolves InterfaceBindings to the devices of this network namespace.  A
 * missing device is not an error: it may come later (a reload picks it up).
 * Quiet at start, where start_check() has reported the same. */
static int bind_devices(struct generation *g, bool quiet)
{
	const struct m_vpcfw *c = &g->pol->model->vpcfw;

	g->bindings = calloc((size_t)c->n_bindings + 1, sizeof(*g->bindings));
	if (!g->bindings)
		return -1;
	for (int i = 0; i < c->n_bindings; i++) {
		const struct m_binding *b = &c->bindings[i];
		const struct iface *ifc = policy_iface_by_device(g->pol, b->device);
		unsigned idx;

		if (!ifc)
			ifc = policy_iface_by_id(g->pol, b->eni_id);
		if (!ifc) {
			if (!quiet)
				logit(LOG_WARNING, "binding of %s to %s: no such interface "
				       "in the configuration", b->eni_id, b->device);
			continue;
		}
		idx = if_nametoindex(b->device);
		if (idx == 0) {
			if (!quiet)
				logit(LOG_WARNING, "binding of %s: no device %s here; "
				       "unbound until a reload", b->eni_id, b->device);
			continue;
		}
		g->bindings[g->n_bindings].ifindex = idx;
		g->bindings[g->n_bindings].iface = ifc;
		g->n_bindings++;
	}
	qsort(g->bindings, (size_t)g->n_bindings, sizeof(*g->bindings), cmp_binding);
	return 0;
}

static const struct iface *bound_iface(const struct generation *g, uint32_t ifindex)
{
	int lo = 0, hi = g->n_bindings - 1;

	if (ifindex == 0)
		return NULL;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (g->bindings[mid].ifindex == ifindex)
			return g->bindings[mid].iface;
		if (g->bindings[mid].ifindex < ifindex)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* The offload's part of a generation: its bit, whether it may be set, the
 * interfaces whose packets a mirroring session copies.  With the HA sync
 * the offload stays off: the peer learns a flow's life from the journal
 * this side keeps as packets come, and an offloaded flow's packets do not
 * come. */
static int offload_setup(struct generation *g)
{
	const struct model *m = g->pol->model;

	atomic_init(&g->offload, false);
	if (!m->vpcfw.offload)
		return 0;
	if (m->vpcfw.sync.enabled) {
		/* a warning when asked for; the default just gives way */
		logit(m->vpcfw.offload_explicit ? LOG_WARNING : LOG_INFO,
		      "Offload is off while Sync is on: the HA peer learns flows from their packets");
		return 0;
	}
	/* The default gives way where the kernel would pass what vpcfwd
	 * refuses (an offloaded flow's out-of-window segments); written, it
	 * is the operator's choice, warned about at start (startcheck.c).
	 * Read at every reload. */
	char liberal[32];
	if (!m->vpcfw.offload_explicit &&
	    start_check_be_liberal_conflict(&m->vpcfw, liberal, sizeof(liberal))) {
		logit(LOG_NOTICE, "Offload (the default) is off: the kernel's "
		      "net.netfilter.nf_conntrack_tcp_be_liberal is %s here while Vpcfw.TcpBeLiberal "
		      "is off, and the kernel would pass offloaded flows' segments outside their "
		      "window; set it to 0, or write \"Offload\": true", liberal);
		return 0;
	}
	g->mirrored = calloc((size_t)g->pol->n_ifaces + 1, sizeof(*g->mirrored));
	if (!g->mirrored)
		return -1;
	for (int i = 0; i < m->n_mirror_sessions; i++) {
		const struct iface *f = policy_iface_by_id(g->pol, m->mirror_sessions[i].eni_id);
		if (f && f->index >= 0 && f->index < g->pol->n_ifaces)
			g->mirrored[f->index] = true;
	}
	g->offload_mark = m->vpcfw.offload_mark;
	g->offload_after = m->vpcfw.offload_after;
	atomic_init(&g->offload, true);
	return 0;
}

/* Loads and compiles the configuration beside whatever is running.  NULL
 * (every message logged) if it is refused. */
static struct generation *generation_load(const struct daemon_options *opt, bool at_start)
{
	struct generation *g = calloc(1, sizeof(*g));
	struct diag d;

	if (!g) {
		logit(LOG_ERR, "out of memory loading the configuration");
		return NULL;
	}
	diag_init(&d);
	d.strict = opt->strict;
	g->pol = policy_load(opt->config_paths, opt->n_config_paths, &d);
	log_diag(&d);
	if (!g->pol) {
		logit(LOG_ERR, "configuration refused: %zu error(s), %zu warning(s)%s",
		       d.errors, d.warnings, opt->strict && d.warnings ? " (--strict)" : "");
		diag_free(&d);
		free(g);
		return NULL;
	}
	diag_free(&d);
	if (bind_devices(g, at_start) < 0) {
		logit(LOG_ERR, "out of memory binding devices");
		generation_free(g);
		return NULL;
	}
	g->number = 1;          /* a reload numbers it when it is installed */
	if (offload_setup(g) < 0) {
		logit(LOG_ERR, "out of memory");
		generation_free(g);
		return NULL;
	}
	return g;
}

/* ------------------------------------------------------------ workers */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t monotonic_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static const char *proto_name(uint8_t proto, char *buf)
{
	switch (proto) {
	case 1: return "icmp";
	case 6: return "tcp";
	case 17: return "udp";
	case 58: return "icmpv6";
	default:
		snprintf(buf, 8, "%u", proto);
		return buf;
	}
}

/* The packet path's only extra work for a refusal: a line into a bounded
 * ring, no system call.  A full ring counts the loss. */
static void note_refusal(struct worker *w, const struct packet *p, const struct verdict *v,
			 const struct nfqueue_packet *np)
{
	uint32_t head = atomic_load_explicit(&w->ring_head, memory_order_relaxed);
	uint32_t tail = atomic_load_explicit(&w->ring_tail, memory_order_acquire);
	char src[ADDR_STRLEN], dst[ADDR_STRLEN], rule[128], pbuf[8], in[IF_NAMESIZE + 1],
		out[IF_NAMESIZE + 1];

	if (head - tail >= REFUSAL_RING) {
		atomic_fetch_add_explicit(&w->refusals_lost, 1, memory_order_relaxed);
		return;
	}
	struct refusal *r = &w->ring[head % REFUSAL_RING];
	verdict_rule_format(v, rule, sizeof(rule));
	snprintf(in, sizeof(in), "%u", np->indev);
	snprintf(out, sizeof(out), "%u", np->outdev);
	if (!p) {
		snprintf(r->text, sizeof(r->text), "REJECT %s packet (ifindex in %s out %s): %s",
			 v->reason == REASON_NOT_IP ? "non-IP" : "malformed", in, out,
			 reason_name(v->reason));
	} else if (p->proto == 6 || p->proto == 17) {
		snprintf(r->text, sizeof(r->text), "REJECT %s %s:%u -> %s:%u: %s %s (%s)",
			 proto_name(p->proto, pbuf), addr_format(&p->src, p->family, src), p->sport,
			 addr_format(&p->dst, p->family, dst), p->dport, reason_name(v->reason),
			 stage_name(v->stage), rule);
	} else if (p->proto == 1 || p->proto == 58) {
		snprintf(r->text, sizeof(r->text), "REJECT %s %s -> %s type %u id %u: %s %s (%s)",
			 proto_name(p->proto, pbuf), addr_format(&p->src, p->family, src),
			 addr_format(&p->dst, p->family, dst), p->icmp_type, p->icmp_id,
			 reason_name(v->reason), stage_name(v->stage), rule);
	} else {
		snprintf(r->text, sizeof(r->text), "REJECT %s %s -> %s: %s %s (%s)",
			 proto_name(p->proto, pbuf), addr_format(&p->src, p->family, src),
			 addr_format(&p->dst, p->family, dst), reason_name(v->reason),
			 stage_name(v->stage), rule);
	}
	atomic_store_explicit(&w->ring_head, head + 1, memory_order_release);
}

/* The lane's refusal capture: a line into the worker's refusal ring. */
static void lane_refused(void *arg, int i, const struct packet *p, const struct verdict *v)
{
	struct worker *w = arg;
	note_refusal(w, p, v, nfqueue_packet(w->q, i));
}

static bool mirrored(const struct generation *g, const struct iface *f)
{
	return f && f->index >= 0 && f->index < g->pol->n_ifaces && g->mirrored[f->index];
}

/* The offload of one decided packet.  An ACCEPT that may leave its flow to
 * the kernel (verdict.offloadable, pipeline.h; no mirroring session of
 * either interface) sets the offload bit in the packet's mark; the kernel
 * rule after the queue (mangle POSTROUTING: CONNMARK --or-mark) copies it
 * into the flow's conntrack mark while the verdict is being applied, and
 * the accept rule ahead of the NFQUEUE rule passes the flow's further
 * packets.  A packet of a flow marked at least OFFLOAD_MISSED_MS ago still
 * came: a rule is missing, or the kernel has no entry for the flow (its
 * table full: the mark has nowhere to go and the flow stays on the queue,
 * never accepted blindly) or a new one (the old expired, or a new
 * connection of the tuple): counted, and offered again at most every
 * OFFLOAD_REMARK_MS (offacct_note marks it only with a baseline of the
 * entry it has now).  Where the queue brings the
 * kernel's entry (NFQA_CT) it says which: no entry, or one already marked. */
#define OFFLOAD_MISSED_MS 100u
#define OFFLOAD_REMARK_MS 1000u
/* The offloaded flows' accounting sees every decided packet of a tracked
 * flow; offloadable: it is asked whether the flow may be marked now (its
 * baseline read: offacct.h). */
static bool offacct_packet(struct worker *w, const struct generation *g, const struct lane_out *o,
			   const struct nfqueue_packet *np, bool offloadable, uint64_t now_ns)
{
	const struct verdict *v = o->v;

	if (!o->p || !v || (!v->flows[0] && !v->flows[1]))
		return false;
	struct offacct_track t[2] = { { 0 }, { 0 } };
	const struct iface *ends[2] = { v->src_iface, v->dst_iface };
	for (int k = 0; offloadable && k < 2; k++) {
		if (!v->flows[k] || !ends[k])
			continue;
		t[k].iface = ends[k]->ct_id;
		t[k].to = (struct ct_timeouts){ ends[k]->tcp_established_timeout, ends[k]->udp_timeout,
						ends[k]->udp_stream_timeout };
	}
	return offacct_note(w->oa, o->p, v, np->id, offloadable, t, g->number, now_ns);
}

/* Whether a flow has shown Vpcfw.OffloadAfterPackets offloadable packets
 * on the queue before this one: until then it is not offered (the baseline's
 * ctnetlink read is not worth it for a short flow).  The count lives beside
 * each of its entries in the flow table (ct_offload_count: no allocation);
 * both ends' entries see every packet, so the larger count is the flow's. */
static bool offload_due(struct worker *w, const struct verdict *v, uint32_t after)
{
	uint32_t n = 0;

	for (int k = 0; k < 2; k++) {
		if (!v->flows[k])
			continue;
		uint32_t c = ct_offload_count(w->ct, v->flows[k]);
		if (c > n)
			n = c;
	}
	return n > after;
}

/* Returns true when offacct_packet has seen the packet. */
static bool offload_packet(struct worker *w, const struct generation *g, int i,
			   const struct lane_out *o, uint32_t now_ms, uint64_t now_ns)
{
	const struct nfqueue_packet *np = nfqueue_packet(w->q, i);
	const struct verdict *v = o->v;
	uint32_t at;

	if (!o->accept || !v->offloadable || mirrored(g, v->src_iface) || mirrored(g, v->dst_iface))
		return false;
	struct ct_entry *e = v->flows[0] ? v->flows[0] : v->flows[1];
	if (np->ct.present && (np->ct.mark & g->offload_mark)) {
		counter_inc(&w->offload_missed); /* marked, yet here: no accept rule */
		return false;
	}
	if (e && ct_offloaded(w->ct, e, NULL, &at)) {
		if (now_ms - at >= OFFLOAD_MISSED_MS)
			counter_inc(&w->offload_missed);
		if (now_ms - at < OFFLOAD_REMARK_MS)
			return false;
	}
	if (nfqueue_has_conntrack(w->q) && !np->ct.present) {
		counter_inc(&w->offload_no_ct);
		return false;
	}
	/* the kernel's counters carry the flow's flow logs and its activity
	 * (offacct.h): marked once its baseline is read */
	if (!w->oa || !offload_due(w, v, g->offload_after))
		return false;
	if (!offacct_packet(w, g, o, np, true, now_ns))
		return true;
	nfqueue_set_mark(w->q, i, np->mark | g->offload_mark);
	for (int k = 0; k < 2; k++)
		if (v->flows[k])
			ct_set_offloaded(w->ct, v->flows[k], np->ct.id, now_ms);
	counter_inc(&w->offload_marked);
	return true;
}

/* Between batches: what the accounting thread read of the kernel goes into
 * the flow logs and the flow table, under the generation in force. */
static void offacct_serve_worker(struct worker *w)
{
	if (!w->oa)
		return;
	atomic_store(&w->in_epoch, atomic_load(&epoch));
	const struct generation *g = atomic_load(&current);
	struct offacct_apply x = {
		.flw = w->lane.flw, .pol = g->pol, .generation = g->number, .ct = w->ct,
		.now_ns = monotonic_ns(), .wall_ns = clock_ns(CLOCK_REALTIME),
	};
	offacct_serve(w->oa, &x);
	atomic_store(&w->in_epoch, 0);
}

/* One batch: take the generation, decide and run the hooks in the worker's
 * lane (lane.h), send the verdicts, let go.  Returns -1 if the kernel could
 * not be given the verdicts. */
static int run_batch(struct worker *w, int n)
{
	struct lane_packet in[NFQUEUE_BATCH_MAX];
	struct lane_out out[NFQUEUE_BATCH_MAX];

	atomic_store(&w->in_epoch, atomic_load(&epoch));
#ifdef VPCFW_TEST_HOOKS
	while (atomic_load(&test_stall) && !atomic_load(&stopping)) {
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
#endif
	const struct generation *g = atomic_load(&current);
	struct lane_batch b = {
		.pol = g->pol, .generation = g->number, .devices = true,
		.shadow = atomic_load(&shadow),
		.audit = atomic_load(&audit_mode), /* ordered after in_epoch: offload_pause */
		.now_ns = monotonic_ns(), .wall_ns = clock_ns(CLOCK_REALTIME),
	};
	w->lane.pl.hits = g->hits ? g->hits + (size_t)w->index * g->pol->n_hits : NULL;
	w->lane.pl.n_hits = g->pol->n_hits;

	for (int i = 0; i < n; i++) {
		const struct nfqueue_packet *np = nfqueue_packet(w->q, i);
		in[i] = (struct lane_packet){
			.data = np->payload, .caplen = np->caplen, .wirelen = np->wirelen,
			.link = PACKET_OK, .ts_ns = b.wall_ns,
			.meta = { .in_iface = bound_iface(g, np->indev),
				  .out_iface = bound_iface(g, np->outdev),
				  .in_known = np->indev != 0 },
		};
	}
	/* the offload: nothing set while the flows are being taken back, in
	 * audit mode (every packet is counted) or with a shadow policy (every
	 * packet is compared); the table first forgets what a take-back
	 * cleared */
	uint64_t oe = atomic_load(&offload_epoch);
	if (oe != w->offload_epoch) {
		ct_clear_offloaded_all(w->ct);
		w->offload_epoch = oe;
	}
	bool offload = g->offload_mark && atomic_load(&g->offload) && !b.audit && !b.shadow;
	if (w->oa) {    /* baselines read meanwhile: their flows may be marked now */
		struct offacct_apply x = {
			.flw = w->lane.flw, .pol = g->pol, .generation = g->number, .ct = w->ct,
			.now_ns = b.now_ns, .wall_ns = b.wall_ns,
		};
		offacct_serve(w->oa, &x);
	}
	lane_run(&w->lane, &b, in, n, out);
	for (int i = 0; i < n; i++) {
		nfqueue_set_verdict(w->q, i, out[i].accept ? NF_ACCEPT : NF_DROP);
		bool seen = offload && offload_packet(w, g, i, &out[i],
						      (uint32_t)(b.now_ns / 1000000u), b.now_ns);
		if (!seen && w->oa)
			(void)offacct_packet(w, g, &out[i], nfqueue_packet(w->q, i), false, b.now_ns);
	}
	int r = nfqueue_send_verdicts(w->q);
	offacct_flush(w->oa);   /* the marks are the kernel's now: the thread may look */
	atomic_store(&w->in_epoch, 0);
	if (r < 0) {
		/* A later batch verdict would cover these packets with its own
		 * verdict; better to stop: unbinding makes the kernel drop
		 * them (or pass them, with --queue-bypass). */
		logit(LOG_ERR, "queue %u: cannot send verdicts: %s; stopping",
		       nfqueue_queue_num(w->q), strerror(errno));
		atomic_store(&worker_failed, true);
	}
	return r;
}

/* Expiry in bounded slices, on a clock rather than per batch: at high
 * packet rates batches are small, and a slice per batch would cost more
 * than the packets. */
static void expire(struct worker *w)
{
	uint64_t now = monotonic_ns();

	if (now < w->next_expire_ns)
		return;
	ct_expire(w->ct, now, w->expire_budget);
	flowlog_tick(w->lane.flw, clock_ns(CLOCK_REALTIME));
	w->next_expire_ns = now + EXPIRE_EVERY_NS;
}

/* the flow table is the worker's own; it lists it between batches. */
static int flow_walk_one(const struct ct_flow_info *f, void *arg)
{
	struct worker *w = arg;
	return w->flow_fn(w->index, f, w->flow_arg);
}

static void serve_flow_listing(struct worker *w)
{
	if (atomic_load(&w->flow_req) != 1)
		return;
	ct_foreach(w->ct, monotonic_ns(), flow_walk_one, w);
	atomic_store(&w->flow_req, 2);
}

static void serve_state_snapshot(struct worker *w);

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load(&stopping)) {
		counter_inc(&w->heartbeat);
		/* with the HA sync, the peer's changes wait at most 10 ms */
		int n = nfqueue_recv_batch(w->q, w->hw ? 10 : 100);
		if (n < 0) {
			logit(LOG_ERR, "queue %u: receive failed: %s", nfqueue_queue_num(w->q),
			       strerror(errno));
			atomic_store(&worker_failed, true);
			return NULL;
		}
		if (n > 0 && run_batch(w, n) < 0)
			return NULL;
		expire(w);
		offacct_serve_worker(w);
		serve_flow_listing(w);
		serve_state_snapshot(w);
		if (w->hw)
			ha_worker_serve(w->hw, w->ct, monotonic_ns(), w->hw->in.size);
	}
	/* Stopping: decide what is already waiting for us; whatever the kernel
	 * queues after this is dropped when the queue is unbound. */
	for (int i = 0; i < 1000; i++) {
		int n = nfqueue_recv_batch(w->q, 0);
		if (n <= 0 || run_batch(w, n) < 0)
			break;
	}
	return NULL;
}

/* ------------------------------------------------------------ main thread */

/* The watchdog (sd_notify WATCHDOG=1, the unit's WatchdogSec=): a ping only
 * while every worker makes progress.  A worker whose loop has not turned
 * since the last check is stuck if it holds packets (inside a batch) or the
 * kernel has packets waiting for its queue; one with nothing to do is idle,
 * not stuck (and its receive timeout turns its loop anyway).  A stuck
 * worker stops the pings, and systemd restarts the daemon after
 * WatchdogSec; the main thread hanging stops them too. */
static bool workers_progressing(void)
{
	bool ok = true;

	for (int i = 0; i < n_workers; i++) {
		struct worker *w = &workers[i];
		uint64_t beat = counter_get(&w->heartbeat);
		bool moved = beat != w->wd_seen;
		w->wd_seen = beat;
		bool stuck = false;
		if (!moved) {
			struct nfqueue_kernel_stats ks;
			uint16_t qn = nfqueue_queue_num(w->q);
			stuck = atomic_load(&w->in_epoch) != 0 ||
				(nfqueue_kernel_stats(qn, &ks) && ks.queue_total > 0);
		}
		if (stuck && !w->wd_stuck)
			logit(LOG_ERR, "queue %u: the worker makes no progress with packets pending; "
			       "watchdog pings stopped", nfqueue_queue_num(w->q));
		else if (!stuck && w->wd_stuck)
			logit(LOG_NOTICE, "queue %u: the worker makes progress again; watchdog pings "
			       "resumed", nfqueue_queue_num(w->q));
		w->wd_stuck = stuck;
		ok = ok && !stuck;
	}
	return ok;
}

static void watchdog(uint64_t usec, uint64_t *next_ns)
{
	uint64_t now = clock_ns(CLOCK_MONOTONIC);

	if (!usec || now < *next_ns)
		return;
	*next_ns = now + usec * 1000u / 2;      /* twice per period, as sd_watchdog_enabled(3) says */
	if (workers_progressing())
		notify_watchdog();
}

/* refused packets not logged, for the metrics (this thread's alone) */
static uint64_t refusals_rate_limited, refusals_ring_full;

static void drain_refusals(void)
{
	static time_t window;
	static unsigned logged;
	static uint64_t suppressed;
	time_t now = time(NULL);

	if (now != window) {
		if (suppressed)
			logit(LOG_INFO, "%" PRIu64 " more refusal(s) not logged (rate limit)",
			       suppressed);
		window = now;
		logged = 0;
		suppressed = 0;
	}
	for (int i = 0; i < n_workers; i++) {
		struct worker *w = &workers[i];
		uint32_t tail = atomic_load_explicit(&w->ring_tail, memory_order_relaxed);
		uint32_t head = atomic_load_explicit(&w->ring_head, memory_order_acquire);
		for (; tail != head; tail++) {
			if (logged < REFUSALS_PER_SECOND) {
				logit(LOG_INFO, "queue %u: %s", nfqueue_queue_num(w->q),
				       w->ring[tail % REFUSAL_RING].text);
				logged++;
			} else {
				suppressed++;
				refusals_rate_limited++;
			}
		}
		atomic_store_explicit(&w->ring_tail, tail, memory_order_release);
		uint64_t lost = atomic_exchange(&w->refusals_lost, 0);
		suppressed += lost;
		refusals_ring_full += lost;
	}
}

static void log_stats(const char *when)
{
	struct pipeline_stats sum = { 0 };
	struct nfqueue_stats ns = { 0 };
	uint64_t flows = 0, ct_exceeded = 0;

	for (int i = 0; i < n_workers; i++) {
		const struct worker *w = &workers[i];
		struct nfqueue_stats s;
		struct ct_stats cs;

		struct pipeline_stats ps;

		pipeline_get_stats(&w->lane.pl, &ps);
		sum.accepted += ps.accepted;
		sum.rejected += ps.rejected;
		for (int st = 0; st < STAGE_COUNT; st++)
			for (int r = 0; r < REASON_COUNT; r++)
				sum.packets[st][r] += ps.packets[st][r];
		nfqueue_get_stats(w->q, &s);
		ns.packets += s.packets;
		ns.batches += s.batches;
		ns.verdict_msgs += s.verdict_msgs;
		ns.enobufs += s.enobufs;
		ns.truncated += s.truncated;
		ns.netlink_errors += s.netlink_errors;
		ns.recv_errors += s.recv_errors;
		ns.send_errors += s.send_errors;
		ct_get_stats(w->ct, &cs);
		flows += cs.used;
		ct_exceeded += cs.allowance_exceeded;
	}
	logit(LOG_INFO, "%s: %" PRIu64 " packets in %" PRIu64 " batches (%" PRIu64
	       " verdict messages): %" PRIu64 " accepted, %" PRIu64 " rejected; %" PRIu64
	       " flows tracked, conntrack_allowance_exceeded %" PRIu64 "; enobufs %" PRIu64
	       ", truncated %" PRIu64 ", netlink errors %" PRIu64 ", send errors %" PRIu64,
	       when, ns.packets, ns.batches, ns.verdict_msgs, sum.accepted, sum.rejected, flows,
	       ct_exceeded, ns.enobufs, ns.truncated, ns.netlink_errors, ns.send_errors);
	for (int st = 0; st < STAGE_COUNT; st++)
		for (int r = 0; r < REASON_COUNT; r++)
			if (sum.packets[st][r])
				logit(LOG_INFO, "%s: %s %s: %" PRIu64, when, stage_name((enum stage)st),
				       reason_name((enum reason)r), sum.packets[st][r]);
	if (offacct) {
		struct offacct_stats os, t = { 0 };
		for (int i = 0; i < n_workers; i++) {
			offacct_get_stats(offacct, i, &os);
			t.flows += os.flows;
			t.registered += os.registered;
			t.refused_full += os.refused_full;
			t.baselines += os.baselines;
			t.baseline_failures += os.baseline_failures;
			t.packets += os.packets;
			t.bytes += os.bytes;
			t.requeued += os.requeued;
			t.kernel_deleted += os.kernel_deleted;
			t.unmarked += os.unmarked;
			t.replaced += os.replaced;
			t.delete_errors += os.delete_errors;
			t.noentry += os.noentry;
			if (i == 0) {
				t.dumps = os.dumps;
				t.dump_errors = os.dump_errors;
			}
		}
		logit(LOG_INFO, "%s: offload accounting: %" PRIu64 " flows now, %" PRIu64 " marked; %"
		       PRIu64 " baselines (%" PRIu64 " not found or read again), %" PRIu64 " refused (no room), %"
		       PRIu64 " packets kept on the queue (no kernel entry); %"
		       PRIu64 " packets from the kernel (%" PRIu64 " bytes), %" PRIu64 " came through "
		       "the queue after their baseline; %" PRIu64 " idled out (kernel entry deleted, %"
		       PRIu64 " errors), %" PRIu64 " unmarked (%" PRIu64 " kernel entries gone or "
		       "replaced); %" PRIu64 " dumps (%" PRIu64 " failed)",
		       when, t.flows, t.registered, t.baselines, t.baseline_failures, t.refused_full,
		       t.noentry, t.packets, t.bytes, t.requeued, t.kernel_deleted, t.delete_errors, t.unmarked,
		       t.replaced, t.dumps, t.dump_errors);
	}
	if (flowlog) {
		struct flowlog_stats fs;
		flowlog_get_stats(flowlog, &fs);
		/* SKIPDATA says records were lost; this says how many */
		logit(LOG_INFO, "%s: flow logs: %" PRIu64 " records, %" PRIu64 " NODATA and %"
		       PRIu64 " SKIPDATA in %" PRIu64 " files; %" PRIu64 " packets lost (SKIPDATA), %"
		       PRIu64 " write errors", when, fs.records_written, fs.nodata_records,
		       fs.skipdata_records, fs.files_written, fs.records_lost, fs.write_errors);
	}
	if (mirror) {
		struct mirror_stats ms;
		mirror_get_stats(mirror, &ms);
		logit(LOG_INFO, "%s: mirror: %" PRIu64 " copies, %" PRIu64 " dropped (ring full), %"
		       PRIu64 " VXLAN sent, %" PRIu64 " send errors, %" PRIu64 " without target, %"
		       PRIu64 " pcap records, %" PRIu64 " write errors; drop capture: %" PRIu64
		       " refused captured, %" PRIu64 " dropped (ring full), %" PRIu64 " written, %"
		       PRIu64 " write errors; %" PRIu64 " rotations", when, ms.mirrored, ms.ring_full,
		       ms.vxlan_sent, ms.vxlan_errors, ms.vxlan_skipped, ms.pcap_records,
		       ms.write_errors, ms.captured, ms.capture_ring_full, ms.drop_records,
		       ms.capture_write_errors, ms.files_rotated);
	}
	for (int i = 0; i < n_workers; i++) {
		struct nfqueue_kernel_stats ks;
		uint16_t qn = nfqueue_queue_num(workers[i].q);
		if (nfqueue_kernel_stats(qn, &ks))
			logit(LOG_INFO, "%s: kernel queue %u: %u waiting, %" PRIu64
			       " dropped (queue full), %" PRIu64 " dropped (socket full)",
			       when, qn, ks.queue_total, ks.queue_dropped, ks.user_dropped);
	}
}

/* The checks `vpcfwd --check-config` makes too; the queues to serve, or -1. */
static int check_start(const struct daemon_options *opt, const struct policy *pol, uint16_t *out)
{
	struct diag d;

	diag_init(&d);
	d.strict = opt->strict;
	int n = start_check(opt, pol, out, &d);
	log_diag(&d);
	if (n < 0)
		logit(LOG_ERR, "start refused: %zu error(s), %zu warning(s)%s", d.errors,
		       d.warnings, opt->strict && d.warnings ? " (--strict)" : "");
	diag_free(&d);
	return n;
}

/* Waits until no worker can still hold what was published before: each is
 * idle between batches or has begun a batch after the epoch moved on.  Then
 * the replaced generation (or shadow) may be freed. */
static void grace_period(void)
{
	uint64_t e = atomic_fetch_add(&epoch, 1) + 1;
	for (;;) {      /* the sync thread, as a worker */
		uint64_t he = atomic_load(&ha_in_epoch);
		if (he == 0 || he >= e)
			break;
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < n_workers; i++) {
		for (;;) {
			uint64_t we = atomic_load(&workers[i].in_epoch);
			if (we == 0 || we >= e)
				break;
			struct timespec ts = { 0, 200000 };
			nanosleep(&ts, NULL);
		}
	}
}

/* The offload's take-back (main thread): clears `mark` on every kernel
 * conntrack entry, so that the next packet of every offloaded flow comes
 * to the queue again and is decided by what is in force then.  The caller
 * has made sure no worker sets the mark any more (and waited out the
 * batches that might).  A failure is logged and retried every second
 * (daemon_serve) until it succeeds. */
static void offload_take_back(uint32_t mark, const char *why)
{
	struct kct_clear_result r;
	char err[256];

	if (!mark)
		return;
	/* every worker forgets its flows' offload (and learns their TCP
	 * windows again) before its next batch: before the kernel sends any
	 * of their packets back */
	atomic_fetch_add(&offload_epoch, 1);
	uint64_t t0 = monotonic_ns();
	int rc = kct_clear_mark(mark, &r, err, sizeof(err));
	uint64_t us = (monotonic_ns() - t0) / 1000;
	counter_inc(&offload_cnt.takebacks);
	counter_add(&offload_cnt.cleared, r.cleared);
	if (rc < 0) {
		counter_inc(&offload_cnt.errors);
		if (!takeback_mark)
			logit(LOG_ERR, "offload: cannot take the offloaded flows back from the kernel "
			       "(%s): %s; %" PRIu64 " taken back; retrying every second", why, err,
			       r.cleared);
		takeback_mark = mark;
		takeback_retry_ns = monotonic_ns() + 1000000000u;
		counter_set(&offload_cnt.pending, 1);
		return;
	}
	if (takeback_mark)
		logit(LOG_INFO, "offload: the failed take-back succeeded");
	takeback_mark = 0;
	counter_set(&offload_cnt.pending, 0);
	/* what went round the queue since the last reading is read from the
	 * entries, marked or not any more */
	offacct_full_round(offacct);
	logit(LOG_INFO, "offload: %" PRIu64 " flow(s) taken back from the kernel (%s) in %" PRIu64
	       ".%03" PRIu64 " ms", r.cleared, why, us / 1000, us % 1000);
}

/* Waits out the batches that may still set g's mark and takes every
 * offloaded flow back.  The caller has stopped the workers setting it: a
 * reload by `retire` (g's offload is off for good), audit and shadow mode
 * by their own switch, which the workers read with the generation. */
static void offload_pause(struct generation *g, bool retire, const char *why)
{
	if (!g->offload_mark)
		return;
	if (retire)
		atomic_store(&g->offload, false);
	grace_period();
	offload_take_back(g->offload_mark, why);
}

/* Reload: compile beside the running policy, swap, wait out the workers
 * that may still hold the old one, free it.  Conntrack is untouched. */
static bool generation_counters(struct generation *g)
{
	g->hits = calloc((size_t)n_workers * g->pol->n_hits + 1, sizeof(*g->hits));
	return g->hits != NULL;
}

/* The first half of a reload, on any thread: the new generation, or NULL
 * (the messages logged). */
static struct generation *reload_compile(const struct daemon_options *opt, const char *who)
{
	notify_reloading();
	logit(LOG_INFO, "reloading the configuration (%s)", who);
	struct generation *g = generation_load(opt, false);
	if (g && g->pol->n_ifaces == 0 && !opt->allow_empty) {
		/* as at start (startcheck.c): an emptied directory enforces nothing */
		logit(LOG_ERR, "error: no network interface in the configuration: nothing to "
		       "enforce; vpcfwd was not started with --allow-empty");
		generation_free(g);
		g = NULL;
	}
	if (g && !generation_counters(g)) {
		generation_free(g);
		g = NULL;
	}
	return g;
}

/* The second half, on the main thread: swap g in (NULL: report the
 * refusal). */
static bool reload_install(struct generation *g)
{
	char status[128];

	if (!g) {
		logit(LOG_ERR, "reload refused: the running configuration stays in force");
		notify_ready("running; the last reload was refused, see the log");
		return false;
	}
	static uint64_t number = 1;      /* the first generation is 1 */
	g->number = ++number;
	struct generation *old = atomic_load(&current);
	const struct m_vpcfw *oc = &old->pol->model->vpcfw, *nc = &g->pol->model->vpcfw;
	if (oc->fail_open != nc->fail_open) {
		for (int i = 0; i < n_workers; i++)
			nfqueue_set_fail_open(workers[i].q, nc->fail_open);
		logit(LOG_INFO, "FailOpen is now %s", nc->fail_open ? "true" : "false");
	}
	if (oc->n_queues != nc->n_queues ||
	    (oc->n_queues && memcmp(oc->queues, nc->queues, sizeof(*oc->queues) * (size_t)oc->n_queues)))
		logit(LOG_WARNING, "Vpcfw.Queues changed: takes effect on restart");
	if (old->pol->conntrack_max != g->pol->conntrack_max)
		logit(LOG_WARNING, "ConntrackMax changed: takes effect on restart");
	const struct m_sync *os = &oc->sync, *ns = &nc->sync;
	if (os->enabled != ns->enabled || os->node_id != ns->node_id || os->port != ns->port ||
	    !addr_eq(&os->peer, &ns->peer) || !addr_eq(&os->listen, &ns->listen) ||
	    os->message_bytes != ns->message_bytes || os->max_clock_skew != ns->max_clock_skew ||
	    os->ring_entries != ns->ring_entries ||
	    (os->key_file && ns->key_file && strcmp(os->key_file, ns->key_file)))
		logit(LOG_WARNING, "Vpcfw.Sync changed: takes effect on restart");

	/* before the swap: no flow stays offloaded under the old policy (the
	 * new one decides its next packet; a tracked flow is offloaded again,
	 * a flow its NACLs or rules now refuse is cut), and the queues bring
	 * the kernel's entries along if the new one offloads */
	offload_pause(old, true, "reload");
	if ((old->offload_mark != 0) != (g->offload_mark != 0)) {
		char err[256];
		if (g->offload_mark && !kct_probe(err, sizeof(err))) {
			logit(LOG_ERR, "offload: kernel conntrack unavailable (%s): flows stay on the "
			       "queue", err);
			atomic_store(&g->offload, false);
		}
		for (int i = 0; i < n_workers; i++)
			nfqueue_set_conntrack(workers[i].q, g->offload_mark != 0);
		logit(LOG_INFO, "Offload is now %s", g->offload_mark ? "on" : "off");
	}
	counter_set(&offload_cnt.enabled, g->offload_mark != 0 && atomic_load(&g->offload));
	/* before the swap: new sessions apply from the first packet */
	mirror_set_policy(mirror, g->pol);
	if (mirror_copy_range(g->pol) > mirror_copy_range(old->pol))
		logit(LOG_WARNING, "mirroring needs a larger NFQUEUE copy range: takes effect on "
		       "restart (copies are cut at the current range meanwhile)");
	atomic_store(&current, g);
	flowlog_set_policy(flowlog, g->pol);
	grace_period();
	mirror_reclaim(mirror); /* no worker can still read the replaced plan */
	generation_free(old);
	logit(LOG_INFO, "configuration %" PRIu64 " in force (%d interfaces, %d bound devices)",
	       g->number, g->pol->n_ifaces, g->n_bindings);
	snprintf(status, sizeof(status), "running configuration %" PRIu64 " on %d queue(s)",
		 g->number, n_workers);
	notify_ready(status);
	return true;
}

/* Both halves on this thread: without a control socket there is no
 * compiling thread (and nothing else to serve meanwhile but signals). */
static bool reload(const struct daemon_options *opt, const char *who)
{
	return reload_install(reload_compile(opt, who));
}

/* ------------------------------------------------------------ state file
 *
 * The flow table across restarts (issue #13, state.h).  A snapshot: each
 * worker copies its flows between two batches (as for `vpcfwctl flows`);
 * this thread encodes and writes them, so the packet path never waits on
 * the disk.  At the stop the workers are gone and this thread reads the
 * tables itself.  The flow logs' open capture windows go the same way
 * (each worker copies its own aggregation tables, flowlog_foreach_saved);
 * at a clean stop those saved are not also written as records
 * (flowlog_forget_saved): the next start goes on with them. */

static struct state_counters state_cnt;
static struct {
	bool pending;                   /* the workers were asked to copy their flows */
	bool failing;                   /* the last write failed (logged once) */
	uint64_t generation, next_ns;
	const char **ids;               /* of the generation asked for */
	uint32_t n_ids, *ref_of, n_ref_of;
	uint64_t fl_written;            /* flowlog_windows_written when asked */
	bool file_has_fl;               /* the file holds open flow-log windows */
} snap;

/* the file found at start, kept until the flow logs start */
static struct state_image state_img;
static bool state_img_loaded;

static void serve_state_snapshot(struct worker *w)
{
	if (atomic_load(&w->state_req) != 1)
		return;
	w->state_part.mono_ns = monotonic_ns();
	w->state_part.wall_ns = clock_ns(CLOCK_REALTIME);
	ct_foreach_saved(w->ct, w->state_part.mono_ns, state_part_add, &w->state_part);
	flowlog_foreach_saved(w->lane.flw, state_part_add_flowlog, &w->state_part);
	atomic_store(&w->state_req, 2);
}

/* The interface table of the policy in force: ids by index, and conntrack
 * id -> index.  False on ENOMEM. */
static bool snap_prepare(const struct generation *g)
{
	const struct policy *pol = g->pol;
	uint32_t max = 0;

	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].ct_id > max)
			max = pol->ifaces[i].ct_id;
	free(snap.ids);
	free(snap.ref_of);
	snap.ids = calloc((size_t)pol->n_ifaces + 1, sizeof(*snap.ids));
	snap.ref_of = malloc(((size_t)max + 1) * sizeof(*snap.ref_of));
	if (!snap.ids || !snap.ref_of)
		return false;
	memset(snap.ref_of, 0xff, ((size_t)max + 1) * sizeof(*snap.ref_of));
	for (int i = 0; i < pol->n_ifaces; i++) {
		snap.ids[i] = pol->ifaces[i].id;
		snap.ref_of[pol->ifaces[i].ct_id] = (uint32_t)i;
	}
	snap.n_ids = (uint32_t)pol->n_ifaces;
	snap.n_ref_of = max + 1;
	snap.generation = g->number;
	for (int i = 0; i < n_workers; i++) {
		struct state_part *p = &workers[i].state_part;
		state_part_reset(p);
		p->queue = nfqueue_queue_num(workers[i].q);
		p->ref_of = snap.ref_of;
		p->n_ref_of = snap.n_ref_of;
	}
	return true;
}

/* Encodes the workers' parts and writes the file. */
static void snap_write(const char *path)
{
	struct state_part *parts = calloc((size_t)n_workers, sizeof(*parts));
	uint64_t wall = clock_ns(CLOCK_REALTIME), flows = 0, fl_entries = 0, fl_windows = 0;
	char err[256] = "out of memory";
	size_t len = 0;
	uint8_t *buf = NULL;
	bool oom = false;

	for (int i = 0; parts && i < n_workers; i++) {
		parts[i] = workers[i].state_part;
		oom |= parts[i].oom;
		flows += parts[i].n;
		fl_entries += parts[i].n_flents;
		fl_windows += parts[i].n_flwins;
	}
	if (parts && !oom)
		buf = state_encode(wall, snap.ids, snap.n_ids, parts, (size_t)n_workers, &len);
	free(parts);
	if (buf && state_write_file(path, buf, len, err, sizeof(err)) == 0) {
		counter_inc(&state_cnt.writes);
		counter_set(&state_cnt.written_ns, wall);
		counter_set(&state_cnt.last_flows, flows);
		counter_set(&state_cnt.last_fl_entries, fl_entries);
		snap.file_has_fl = fl_windows > 0;
		if (snap.failing)
			logit(LOG_INFO, "StateFile %s: written again (%" PRIu64 " flows)", path, flows);
		snap.failing = false;
	} else {
		counter_inc(&state_cnt.write_errors);
		if (!snap.failing)
			logit(LOG_ERR, "StateFile %s: cannot save the flow table: %s", path, err);
		snap.failing = true;
	}
	free(buf);
	for (int i = 0; i < n_workers; i++)
		state_part_reset(&workers[i].state_part);
}

/* Every StateSyncInterval seconds, from the main loop: ask, then (a later
 * call, once every worker has answered) write.  And, while the file holds
 * open flow-log windows, as soon as the flow-log writer has written a closed
 * one (whatever the interval, 0 included): a file that still held that
 * window open would, after a crash, have it written a second time. */
static void state_tick(void)
{
	const struct generation *g = atomic_load(&current);
	const struct m_vpcfw *vc = &g->pol->model->vpcfw;
	uint64_t now = monotonic_ns();

	counter_set(&state_cnt.enabled, vc->state_file && *vc->state_file);
	if (!snap.pending) {
		uint64_t flw = flowlog_windows_written(flowlog);
		bool due = vc->state_sync_interval && now >= snap.next_ns;
		bool fl_moved = flw != snap.fl_written && snap.file_has_fl;
		if (!vc->state_file || !*vc->state_file || (!due && !fl_moved))
			return;
		snap.fl_written = flw;
		if (!snap_prepare(g)) {
			counter_inc(&state_cnt.write_errors);
			return;
		}
		for (int i = 0; i < n_workers; i++)
			atomic_store(&workers[i].state_req, 1);
		snap.pending = true;
		/* the interval from copy to copy, not from the end of a write */
		snap.next_ns = now + (uint64_t)vc->state_sync_interval * 1000000000u;
		return;
	}
	for (int i = 0; i < n_workers; i++)
		if (atomic_load(&workers[i].state_req) != 2)
			return;
	/* a reload meanwhile freed the ids asked for: ask again */
	if (snap.generation == g->number && vc->state_file && *vc->state_file)
		snap_write(vc->state_file);
	for (int i = 0; i < n_workers; i++)
		atomic_store(&workers[i].state_req, 0);
	snap.pending = false;
}

/* Whether the file written names the interface of this conntrack id. */
static bool iface_listed(void *arg, uint32_t ct_id)
{
	(void)arg;
	return ct_id < snap.n_ref_of && snap.ref_of[ct_id] != UINT32_MAX;
}

/* At the stop, the workers joined: the whole table, read here. */
static void state_save_final(void)
{
	const struct generation *g = atomic_load(&current);
	const char *path = g ? g->pol->model->vpcfw.state_file : NULL;

	if (!path || !*path || !workers)
		return;
	if (!snap_prepare(g)) {
		logit(LOG_ERR, "StateFile %s: out of memory; the flow table is not saved", path);
		return;
	}
	for (int i = 0; i < n_workers; i++) {
		struct state_part *p = &workers[i].state_part;
		p->mono_ns = monotonic_ns();
		p->wall_ns = clock_ns(CLOCK_REALTIME);
		if (workers[i].ct)
			ct_foreach_saved(workers[i].ct, p->mono_ns, state_part_add, p);
		flowlog_foreach_saved(workers[i].lane.flw, state_part_add_flowlog, p);
	}
	snap.failing = false;
	snap_write(path);
	if (snap.failing)
		return;         /* the open windows are written as records instead */
	/* saved: the next start writes them, once */
	flowlog_forget_saved(flowlog, iface_listed, NULL);
	logit(LOG_INFO, "StateFile %s: %" PRIu64 " flows saved, and %" PRIu64 " flow-log entries "
	       "of open capture windows (written as records by the next start)", path,
	       counter_get(&state_cnt.last_flows), counter_get(&state_cnt.last_fl_entries));
}

static void state_free(void)
{
	for (int i = 0; workers && i < n_workers; i++)
		state_part_free(&workers[i].state_part);
	free(snap.ids);
	free(snap.ref_of);
	memset(&snap, 0, sizeof(snap));
	state_image_free(&state_img);
	state_img_loaded = false;
}

static bool restore_iface(void *arg, const char *id, uint32_t *ct_id)
{
	const struct iface *ifc = policy_iface_by_id(arg, id);
	if (ifc)
		*ct_id = ifc->ct_id;
	return ifc != NULL;
}

static struct conntrack *restore_table(void *arg, uint16_t queue)
{
	(void)arg;
	for (int i = 0; i < n_workers; i++)
		if (nfqueue_queue_num(workers[i].q) == queue)
			return workers[i].ct;
	return NULL;
}

/* At start, before any worker takes a packet.  A file that cannot be used
 * is named with what is wrong, and the daemon starts with an empty table. */
static void state_load(const struct policy *pol)
{
	const char *path = pol->model->vpcfw.state_file;
	uint8_t *buf;
	size_t len;
	char err[256];
	struct state_image img;

	counter_set(&state_cnt.enabled, path && *path);
	if (!path || !*path)
		return;
	int r = state_read_file(path, &buf, &len, err, sizeof(err));
	if (r == 1) {
		logit(LOG_INFO, "StateFile %s: none yet; starting with an empty flow table", path);
		return;
	}
	uint64_t wall = clock_ns(CLOCK_REALTIME);
	if (r == 0 && state_decode(buf, len, wall, &img, err, sizeof(err)) == 0) {
		struct state_restore_stats st;
		state_restore(&img, wall, monotonic_ns(), restore_iface, restore_table, (void *)pol, &st);
		counter_set(&state_cnt.written_ns, img.written_ns);
		counter_set(&state_cnt.restored, st.restored);
		counter_set(&state_cnt.dropped_expired, st.expired);
		counter_set(&state_cnt.dropped_unknown_iface, st.unknown_iface);
		counter_set(&state_cnt.dropped_other, st.no_queue + st.duplicate + st.table_full);
		logit(LOG_INFO, "StateFile %s: written %" PRIu64 " s ago; %" PRIu64 " flows restored, "
		       "dropped: %" PRIu64 " idled out meanwhile, %" PRIu64 " of interfaces no longer "
		       "configured, %" PRIu64 " of queues not served, %" PRIu64 " duplicates, %" PRIu64
		       " beyond ConntrackMax", path,
		       (uint64_t)(wall > img.written_ns ? (wall - img.written_ns) / 1000000000u : 0),
		       st.restored, st.expired, st.unknown_iface, st.no_queue, st.duplicate,
		       st.table_full);
		/* the flow-log windows once the flow logs have started */
		state_img = img;
		state_img_loaded = true;
	} else {
		counter_set(&state_cnt.refused, 1);
		logit(LOG_ERR, "StateFile %s refused: %s; starting with an empty flow table", path, err);
	}
	free(buf);
}

static struct flowlog_worker *restore_flowlog_worker(void *arg, uint16_t queue)
{
	(void)arg;
	for (int i = 0; i < n_workers; i++)
		if (nfqueue_queue_num(workers[i].q) == queue)
			return workers[i].lane.flw;
	return NULL;
}

/* Once the flow logs have started, before the workers: the open capture
 * windows of the file found at start. */
static void state_load_flowlog(const struct policy *pol)
{
	if (!state_img_loaded)
		return;
	const char *path = pol->model->vpcfw.state_file;
	if (state_img.n_flwins) {
		struct state_fl_restore_stats st;
		state_restore_flowlog(&state_img, clock_ns(CLOCK_REALTIME), flowlog != NULL,
				      restore_iface, restore_flowlog_worker, (void *)pol, &st);
		uint64_t dropped = st.unknown_iface + st.no_queue + st.off + st.fl.not_logged +
				   st.fl.duplicate + st.fl.table_full;
		counter_set(&state_cnt.fl_restored, st.fl.entries);
		/* until a snapshot replaces it, the file holds these windows */
		snap.file_has_fl = true;
		counter_set(&state_cnt.fl_dropped, dropped);
		logit(LOG_INFO, "StateFile %s: flow logs: %" PRIu64 " entries of open capture windows "
		       "restored (%" PRIu64 " windows go on, %" PRIu64 " ended meanwhile: written now); "
		       "dropped: %" PRIu64 " of interfaces no longer configured, %" PRIu64 " of queues "
		       "not served, %" PRIu64 " no flow log records now, %" PRIu64 " duplicates; %" PRIu64
		       " beyond the aggregation table (SKIPDATA)", path, st.fl.entries,
		       st.fl.windows_open, st.fl.windows_ended, st.unknown_iface, st.no_queue,
		       st.off + st.fl.not_logged, st.fl.duplicate, st.fl.table_full);
	}
	state_image_free(&state_img);
	state_img_loaded = false;
}

/* ------------------------------------------------------------ HA sync */

static const struct policy *ha_enter(void *arg, uint64_t *gen)
{
	(void)arg;
	atomic_store(&ha_in_epoch, atomic_load(&epoch));
	const struct generation *g = atomic_load(&current);
	*gen = g->number;
	return g->pol;
}

static void ha_leave(void *arg)
{
	(void)arg;
	atomic_store(&ha_in_epoch, 0);
}

/* Before the privileges are dropped (the key is root's): the workers'
 * rings, the journal, the key and the socket.  False: cannot start. */
static bool ha_setup(const struct policy *pol, const uint16_t *queues)
{
	const struct m_sync *sc = &pol->model->vpcfw.sync;
	char err[256];

	if (!sc->enabled)
		return true;
	ha_workers = calloc((size_t)n_workers, sizeof(*ha_workers));
	if (!ha_workers) {
		logit(LOG_ERR, "out of memory");
		return false;
	}
	for (int i = 0; i < n_workers; i++) {
		if (ha_worker_init(&ha_workers[i], queues[i], sc->ring_entries) < 0 ||
		    ct_set_journal(workers[i].ct, ha_journal, &ha_workers[i]) < 0) {
			logit(LOG_ERR, "out of memory for the sync rings (Vpcfw.Sync.RingEntries %u)",
			       sc->ring_entries);
			return false;
		}
		workers[i].hw = &ha_workers[i];
	}
	static const struct ha_hooks hooks = { ha_enter, ha_leave, NULL };
	ha = ha_open(sc, ha_workers, n_workers, &hooks, err, sizeof(err));
	if (!ha) {
		logit(LOG_ERR, "sync: %s", err);
		return false;
	}
	char peer[64];
	logit(LOG_INFO, "sync: node %u, peer %s port %u, messages of at most %u bytes", sc->node_id,
	       addr_format(&sc->peer, sc->peer_family, peer), sc->port, sc->message_bytes);
	return true;
}

static void ha_teardown(void)
{
	ha_stop(ha);
	ha = NULL;
	for (int i = 0; ha_workers && i < n_workers; i++) {
		if (workers && workers[i].ct)
			ct_set_journal(workers[i].ct, NULL, NULL);
		ha_worker_free(&ha_workers[i]);
	}
	free(ha_workers);
	ha_workers = NULL;
}

/* ------------------------------------------------------------ ctl backend */

static const struct daemon_options *ctl_opt;

static const struct policy *ctl_policy(void *ctx, uint64_t *gen)
{
	const struct generation *g = atomic_load(&current);
	(void)ctx;
	*gen = g->number;
	return g->pol;
}

/* Counters are read while the workers write them: relaxed atomics
 * (counter.h), one writer each, so a read is a recent value. */
static void ctl_worker(void *ctx, int i, struct ctl_worker_stats *out)
{
	const struct worker *w = &workers[i];
	struct nfqueue_stats ns;
	struct nfqueue_kernel_stats ks;
	(void)ctx;

	memset(out, 0, sizeof(*out));
	out->queue = nfqueue_queue_num(w->q);
	pipeline_get_stats(&w->lane.pl, &out->pl);
	ct_get_stats(w->ct, &out->ct);
	nfqueue_get_stats(w->q, &ns);
	out->packets = ns.packets;
	out->batches = ns.batches;
	out->enobufs = ns.enobufs;
	out->truncated = ns.truncated;
	out->netlink_errors = ns.netlink_errors;
	out->recv_errors = ns.recv_errors;
	out->send_errors = ns.send_errors;
	out->audit_would_refuse = counter_get(&w->lane.would_refuse);
	out->offload_marked = counter_get(&w->offload_marked);
	out->offload_missed = counter_get(&w->offload_missed);
	out->offload_no_conntrack = counter_get(&w->offload_no_ct);
	if (offacct) {
		/* without NFQA_CT: the flows whose baseline found no kernel entry */
		struct offacct_stats os;
		offacct_get_stats(offacct, i, &os);
		out->offload_no_conntrack += os.noentry;
	}
	if (nfqueue_kernel_stats(out->queue, &ks)) {
		out->have_kernel = true;
		out->kernel_waiting = ks.queue_total;
		out->kernel_queue_dropped = ks.queue_dropped;
		out->kernel_user_dropped = ks.user_dropped;
	}
}

static void ctl_losses(void *ctx, struct ctl_losses *out)
{
	(void)ctx;
	mirror_get_stats(mirror, &out->mirror);
	flowlog_get_stats(flowlog, &out->flowlog);
	out->refusal_lines_suppressed = refusals_rate_limited;
	out->refusal_lines_lost = refusals_ring_full;
}

static const counter_t *ctl_hits(void *ctx, int i)
{
	const struct generation *g = atomic_load(&current);
	(void)ctx;
	return g->hits ? g->hits + (size_t)i * g->pol->n_hits : NULL;
}

/* Every worker lists its own table between two batches (at most a receive
 * timeout away); the caller waits for all of them. */
static int ctl_flows(void *ctx, int (*fn)(int worker, const struct ct_flow_info *f, void *arg),
		     void *arg)
{
	(void)ctx;
	for (int i = 0; i < n_workers; i++) {
		workers[i].flow_fn = fn;
		workers[i].flow_arg = arg;
		atomic_store(&workers[i].flow_req, 1);
		/* one at a time: fn is not thread-safe */
		while (atomic_load(&workers[i].flow_req) != 2) {
			if (atomic_load(&worker_failed) || atomic_load(&stopping))
				return -1;
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
		atomic_store(&workers[i].flow_req, 0);
	}
	return 0;
}

static bool ctl_reload(void *ctx, const char *who, char *msg, size_t len)
{
	(void)ctx;
	bool ok = reload(ctl_opt, who);
	if (!ok)
		snprintf(msg, len, "see the daemon's log for the configuration's errors");
	return ok;
}

/* on the control socket's compiling thread */
static void *ctl_compile(void *ctx, const char *who)
{
	(void)ctx;
	return reload_compile(ctl_opt, who);
}

static bool ctl_install(void *ctx, void *compiled, const char *who, char *msg, size_t len)
{
	(void)ctx;
	(void)who;
	bool ok = reload_install(compiled);
	if (!ok && msg)
		snprintf(msg, len, "see the daemon's log for the configuration's errors");
	return ok;
}

static void ctl_discard(void *ctx, void *compiled)
{
	(void)ctx;
	generation_free(compiled);
}

static void ctl_set_audit(void *ctx, bool on)
{
	(void)ctx;
	atomic_store(&audit_mode, on);
	/* audit mode counts every packet: the kernel passes none itself */
	if (on)
		offload_pause(atomic_load(&current), false, "audit mode");
}

static bool ctl_audit(void *ctx)
{
	(void)ctx;
	return atomic_load(&audit_mode);
}

/* Like a reload's swap: the replaced shadow is returned once every worker
 * is idle or has started a later batch. */
static struct shadow *ctl_set_shadow(void *ctx, struct shadow *s)
{
	(void)ctx;
	struct shadow *old = atomic_exchange(&shadow, s);
	grace_period();
	/* a shadow policy compares every packet: the kernel passes none itself */
	if (s)
		offload_pause(atomic_load(&current), false, "shadow policy");
	return old;
}

static void ctl_log(int prio, const char *msg)
{
	logit(prio, "%s", msg);
}

/* Least privilege, with libcap-ng.  Root is needed only to open what is open
 * by now; verdicts and queue settings are nfnetlink messages, which need
 * CAP_NET_ADMIN, and mirroring sends VXLAN from a raw socket (a per-flow
 * outer source port) with CAP_NET_RAW, kept only when the configuration
 * mirrors.  Nothing else stays: the inheritable and ambient sets are
 * emptied, and so is the bounding set where it can be (CAP_SETPCAP).
 *
 * -u USER (started as root): become USER (its group and supplementary
 * groups), bounding set cleared.  Without -u but not root (systemd's
 * User= with AmbientCapabilities=): keep what of the two is held, drop the
 * rest, the ambient set included, so that nothing is passed to a child.
 * Root without -u keeps root: that is what the operator asked for. */
static int keep_capabilities(bool net_raw, bool have_raw)
{
	capng_clear(CAPNG_SELECT_ALL);
	if (capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_NET_ADMIN) < 0 ||
	    (net_raw && have_raw &&
	     capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_NET_RAW) < 0))
		return -1;
	return 0;
}

/* The capabilities really held afterwards, checked from the kernel's view:
 * exactly NET_ADMIN (+ NET_RAW), nothing inheritable or ambient. */
static bool capabilities_are(bool net_raw, bool bounding_clear)
{
	capng_clear(CAPNG_SELECT_ALL);
	if (capng_get_caps_process() < 0)
		return false;
	for (unsigned int cap = 0; cap <= CAP_LAST_CAP; cap++) {
		bool want = cap == CAP_NET_ADMIN || (net_raw && cap == CAP_NET_RAW);
		if (capng_have_capability(CAPNG_EFFECTIVE, cap) != want ||
		    capng_have_capability(CAPNG_PERMITTED, cap) != want ||
		    capng_have_capability(CAPNG_INHERITABLE, cap) ||
		    capng_have_capability(CAPNG_AMBIENT, cap) ||
		    (bounding_clear && capng_have_capability(CAPNG_BOUNDING_SET, cap)))
			return false;
	}
	return true;
}

static int drop_privileges(const char *user, bool net_raw, struct ctl *ctl)
{
	if (!user) {
		if (geteuid() == 0)
			return 0;
		/* systemd's User= and AmbientCapabilities= (or the like) */
		capng_clear(CAPNG_SELECT_ALL);
		if (capng_get_caps_process() < 0) {
			logit(LOG_ERR, "cannot read the capabilities: %s", strerror(errno));
			return -1;
		}
		bool have_raw = capng_have_capability(CAPNG_PERMITTED, CAP_NET_RAW);
		if (!capng_have_capability(CAPNG_PERMITTED, CAP_NET_ADMIN)) {
			logit(LOG_ERR, "no CAP_NET_ADMIN (uid %ld)", (long)geteuid());
			return -1;
		}
		if (keep_capabilities(net_raw, have_raw) < 0 ||
		    capng_apply(CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT) < 0 ||
		    !capabilities_are(net_raw && have_raw, false)) {
			logit(LOG_ERR, "cannot drop the capabilities not needed: %s", strerror(errno));
			return -1;
		}
		if (net_raw && !have_raw)
			logit(LOG_WARNING, "mirroring without CAP_NET_RAW: VXLAN from one UDP port");
		logit(LOG_INFO, "running as uid %ld with CAP_NET_ADMIN%s only, no ambient capabilities",
		       (long)geteuid(), net_raw && have_raw ? " and CAP_NET_RAW" : "");
		return 0;
	}

	struct passwd *pw = getpwnam(user);
	if (!pw) {
		logit(LOG_ERR, "-u %s: no such user", user);
		return -1;
	}
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	ctl_chown(ctl, uid, gid);
	if (keep_capabilities(net_raw, true) < 0) {
		logit(LOG_ERR, "-u %s: cannot prepare the capabilities", user);
		return -1;
	}
	int rc = capng_change_id((int)uid, (int)gid, CAPNG_INIT_SUPP_GRP | CAPNG_CLEAR_BOUNDING |
					      CAPNG_CLEAR_AMBIENT);
	if (rc < 0) {
		/* libcap-ng: -4 setresgid, -5 groups, -6 setresuid, others capabilities */
		logit(LOG_ERR, "-u %s: cannot switch user keeping only CAP_NET_ADMIN (libcap-ng %d): %s",
		       user, rc, strerror(errno));
		return -1;
	}
	if (!capabilities_are(net_raw, true)) {
		logit(LOG_ERR, "-u %s: capabilities other than those needed are still held; stopping",
		       user);
		return -1;
	}
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		logit(LOG_ERR, "-u %s: root could be regained; stopping", user);
		return -1;
	}
	logit(LOG_INFO, "running as %s (uid %ld, gid %ld) with CAP_NET_ADMIN%s only, bounding set "
	       "empty", user, (long)uid, (long)gid, net_raw ? " and CAP_NET_RAW" : "");
	return 0;
}

/* Without -f and outside systemd: into the background, the OpenBSD way,
 * once everything that can fail at start has been done. */
static int detach(void)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	log_init("vpcfwd", LOG_TO_SYSLOG);      /* stderr goes to /dev/null now */
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return chdir("/");
}

/* Paths are made absolute so that a reload after detaching (chdir /) reads
 * the same files. */
static const char **absolute_paths(const struct daemon_options *opt)
{
	const char **p = calloc((size_t)opt->n_config_paths + 1, sizeof(*p));

	if (!p)
		return NULL;
	for (int i = 0; i < opt->n_config_paths; i++) {
		char *r = realpath(opt->config_paths[i], NULL);
		p[i] = r ? r : strdup(opt->config_paths[i]);
		if (!p[i]) {
			for (int j = 0; j < i; j++)
				free((char *)p[j]);
			free(p);
			return NULL;
		}
	}
	return p;
}

/* The last packet id the kernel gave worker i's queue: where the
 * accounting's baselines stand among the queued packets. */
static bool queue_seq(void *arg, int i, uint32_t *id)
{
	struct nfqueue_kernel_stats ks;
	(void)arg;
	if (!nfqueue_kernel_stats(nfqueue_queue_num(workers[i].q), &ks))
		return false;
	*id = (uint32_t)ks.id_sequence;
	return true;
}

/* The offloaded flows' accounting (offacct.h): its rings and its thread.
 * The kernel counts a flow's packets only with net.netfilter.nf_conntrack_acct
 * (per network namespace), turned on here if it is off: an offloaded flow
 * without counters would be invisible to its flow logs and look idle to its
 * AWS timeout (such a flow is not offloaded: it has no baseline). */
static int offacct_setup(const struct generation *g)
{
	static const char acct[] = "/proc/sys/net/netfilter/nf_conntrack_acct";
	FILE *f = fopen(acct, "r+");
	int on = 0;
	/* a warning when Offload is written; with the default (the packaged
	 * unit cannot write kernel settings: ProtectKernelTunables) it would
	 * reach every host that never installs the rules */
	int level = g->pol->model->vpcfw.offload_explicit ? LOG_WARNING : LOG_INFO;

	if (f && fscanf(f, "%d", &on) == 1 && !on) {
		rewind(f);
		if (fputs("1\n", f) >= 0 && fflush(f) == 0)
			logit(LOG_INFO, "offload: net.netfilter.nf_conntrack_acct turned on (the kernel "
			       "counts offloaded flows' packets: flow logs, idle timeouts)");
		else
			logit(level, "offload: cannot turn net.netfilter.nf_conntrack_acct on: "
			       "%s; flows stay on the queue", strerror(errno));
	} else if (!f) {
		logit(level, "offload: %s: %s; flows stay on the queue unless it is 1", acct,
		       strerror(errno));
	}
	if (f)
		fclose(f);
	uint32_t shard = g->pol->conntrack_max / (uint32_t)n_workers;
	struct offacct_options o = {
		.n_workers = n_workers, .mark = g->offload_mark,
		.flows_per_worker = shard < 65536 ? (shard ? shard : 1) : 65536,
		.queue_seq = queue_seq,
	};
	offacct = offacct_create(&o);
	if (!offacct) {
		logit(LOG_ERR, "out of memory for the offload's accounting");
		return -1;
	}
	int e = offacct_start(offacct);
	if (e) {
		logit(LOG_ERR, "offload: cannot start the accounting thread: %s", strerror(e));
		return -1;
	}
	for (int i = 0; i < n_workers; i++)
		workers[i].oa = offacct_worker(offacct, i);
	return 0;
}

/* At the stop, the workers gone: the kernel's last counts, applied here. */
static void offacct_stop_all(void)
{
	if (!offacct)
		return;
	const struct generation *g = atomic_load(&current);
	struct offacct_apply *x = calloc((size_t)n_workers, sizeof(*x));
	if (!x) {
		offacct_stop(offacct);
		return;
	}
	for (int i = 0; i < n_workers; i++)
		x[i] = (struct offacct_apply){
			.flw = workers[i].lane.flw, .pol = g ? g->pol : NULL,
			.generation = g ? g->number : 0, .ct = workers[i].ct,
			.now_ns = monotonic_ns(), .wall_ns = clock_ns(CLOCK_REALTIME),
		};
	offacct_finish(offacct, x);
	free(x);
}

/* What daemon_start sets up, daemon_serve runs and daemon_stop takes down
 * (the workers, queues, flow logs and mirror are this file's statics). */
struct run {
	struct daemon_options opt;      /* config paths made absolute (owned) */
	sigset_t sigs;                  /* taken by the main thread alone */
	uint16_t queues[START_MAX_QUEUES];
	struct ctl *ctl;                /* NULL: no control socket */
	struct ctl_daemon ctld;
	struct generation *g;           /* loaded, not yet published */
};

/* Everything that can fail at start, in the order that keeps privileges
 * no longer than needed: configuration, queues, state file, detach,
 * control socket, -u, flow logs and mirror, the workers.  0, or -1 (logged;
 * daemon_stop undoes whatever was done). */
static int daemon_start(struct run *r, const struct daemon_options *user_opt)
{
	struct daemon_options *o = &r->opt;
	int n_queues;

	*o = *user_opt;
	/* -f: stderr; under systemd: syslog, which is the journal; else syslog,
	 * and stderr too until detach() */
	log_init("vpcfwd", o->foreground ? LOG_TO_STDERR
			   : notify_enabled() ? LOG_TO_SYSLOG : LOG_TO_SYSLOG | LOG_TO_STDERR);
	o->config_paths = absolute_paths(user_opt);
	if (!o->config_paths) {
		o->n_config_paths = 0;
		logit(LOG_ERR, "out of memory");
		return -1;
	}

	/* Signals are taken by the main thread only, with sigtimedwait. */
	sigemptyset(&r->sigs);
	sigaddset(&r->sigs, SIGHUP);
	sigaddset(&r->sigs, SIGTERM);
	sigaddset(&r->sigs, SIGINT);
	sigaddset(&r->sigs, SIGUSR1);
#ifdef VPCFW_TEST_HOOKS
	sigaddset(&r->sigs, SIGUSR2);
#endif
	pthread_sigmask(SIG_BLOCK, &r->sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct generation *g = r->g = generation_load(o, true);
	if (!g)
		return -1;
	n_queues = check_start(o, g->pol, r->queues);
	if (n_queues <= 0)
		return -1;
	if (g->pol->n_ifaces == 0)
		logit(LOG_WARNING, "no network interface in the configuration: enforcing nothing "
		       "(--allow-empty)");
	workers = calloc((size_t)n_queues, sizeof(*workers));
	if (!workers) {
		logit(LOG_ERR, "out of memory");
		return -1;
	}
	n_workers = n_queues;
	uint32_t shard = g->pol->conntrack_max / (uint32_t)n_queues;
	for (int i = 0; i < n_queues; i++) {
		struct worker *w = &workers[i];
		/* headers only, unless mirroring or the drop capture needs more */
		uint32_t need = mirror_copy_range(g->pol);
		struct nfqueue_options no = {
			.queue = r->queues[i],
			.copy_range = need > NFQUEUE_COPY_RANGE_HEADERS ? need : 0,
			.fail_open = g->pol->model->vpcfw.fail_open,
			.conntrack = g->offload_mark != 0,
		};
		char err[256];

		w->index = i;
		w->expire_budget = shard / EXPIRE_SWEEP_SLICES > 64 ? shard / EXPIRE_SWEEP_SLICES : 64;
		w->ct = ct_create(shard ? shard : 1);
		if (!w->ct) {
			logit(LOG_ERR, "out of memory for %u conntrack entries", shard);
			return -1;
		}
		lane_init(&w->lane, w->ct, i);
		w->lane.refused = lane_refused;
		w->lane.refused_arg = w;
		w->q = nfqueue_open(&no, err, sizeof(err));
		if (!w->q) {
			logit(LOG_ERR, "queue %u: %s", r->queues[i], err);
			return -1;
		}
	}
	if (!generation_counters(g)) {
		logit(LOG_ERR, "out of memory for counters");
		return -1;
	}
	/* the offload: ctnetlink must answer (it also loads the module that
	 * applies a verdict's mark), and whatever a previous run left marked
	 * is taken back before the first packet is decided */
	if (g->offload_mark) {
		char err[256];
		if (!kct_probe(err, sizeof(err))) {
			/* an error when asked for; with the default, vpcfwd is a
			 * plain NFQUEUE reader on a kernel without conntrack */
			logit(g->pol->model->vpcfw.offload_explicit ? LOG_ERR : LOG_INFO,
			      "offload: kernel conntrack unavailable (%s): flows stay on the queue", err);
			atomic_store(&g->offload, false);
		} else {
			offload_take_back(g->offload_mark, "start");
		}
		counter_set(&offload_cnt.enabled, atomic_load(&g->offload));
	}
	atomic_store(&current, g);
	r->g = NULL;
	if (!ha_setup(atomic_load(&current)->pol, r->queues))
		return -1;
	state_load(atomic_load(&current)->pol);

	if (!o->foreground && !notify_enabled() && detach() < 0) {
		log_warn("cannot detach");
		return -1;
	}
	/* after detaching: the flow-log writer is a thread, and fork keeps none */
	const struct generation *cur = atomic_load(&current);
	/* the control socket, served by this thread between signals; opened
	 * before -u drops root, so that it may live where only root creates files */
	{
		const struct m_vpcfw *vc = &cur->pol->model->vpcfw;
		char err[256];
		ctl_opt = o;
		r->ctld = (struct ctl_daemon){
			.n_workers = n_workers, .config_paths = o->config_paths,
			.n_config_paths = o->n_config_paths, .strict = o->strict,
			.started_s = clock_ns(CLOCK_REALTIME) / 1000000000u,
			.policy = ctl_policy, .worker = ctl_worker, .hits = ctl_hits,
			.flows = ctl_flows, .reload = ctl_reload, .compile = ctl_compile,
			.install = ctl_install, .discard = ctl_discard, .set_audit = ctl_set_audit,
			.audit = ctl_audit, .set_shadow = ctl_set_shadow, .losses = ctl_losses,
			.state = &state_cnt, .ha = ha, .offload = &offload_cnt,
		};
		if (vc->control_socket && *vc->control_socket) {
			r->ctl = ctl_open(&r->ctld, vc->control_socket, vc->read_only_socket,
					  vc->admin_group, vc->reader_group, ctl_log, err, sizeof(err));
			if (!r->ctl)
				logit(LOG_ERR, "control socket: %s; running without it", err);
			ctl_set_read_only_public(r->ctl, vc->read_only_socket_public);
		}
	}

	/* -u (or not root), before any thread exists (capabilities are per thread) */
	if (drop_privileges(o->user, mirror_enabled(cur->pol), r->ctl) < 0)
		return -1;
	struct flowlog_options flo = {
		.dir = o->flow_log_dir, .n_workers = n_workers, .threaded = true,
	};
	flowlog = flowlog_create(cur->pol, &flo);
	if (!flowlog && flowlog_enabled(cur->pol, &flo)) {
		logit(LOG_ERR, "flow logs cannot start (see above)");
		return -1;
	}
	for (int i = 0; i < n_workers; i++)
		workers[i].lane.flw = flowlog_worker(flowlog, i);
	if (cur->offload_mark && atomic_load(&cur->offload) && offacct_setup(cur) < 0)
		return -1;
	state_load_flowlog(cur->pol);
	struct mirror_options mo = { .n_workers = n_workers, .threaded = true, .send_vxlan = true };
	mirror = mirror_create(cur->pol, &mo);
	if (!mirror && mirror_enabled(cur->pol)) {
		logit(LOG_ERR, "mirroring cannot start (see above)");
		return -1;
	}
	for (int i = 0; i < n_workers; i++)
		workers[i].lane.mw = mirror_worker(mirror, i);
	if (ha) {
		int e = ha_run(ha);
		if (e) {
			logit(LOG_ERR, "cannot start the sync thread: %s", strerror(e));
			return -1;
		}
	}
	for (int i = 0; i < n_workers; i++) {
		int e = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		if (e) {
			logit(LOG_ERR, "cannot start a worker: %s", strerror(e));
			atomic_store(&stopping, true);
			return -1;
		}
		workers[i].running = true;
	}

	{
		char status[128];
		snprintf(status, sizeof(status), "running configuration %" PRIu64 " on %d queue(s)",
			 cur->number, n_workers);
		char list[START_MAX_QUEUES * 7] = "";
		for (int i = 0; i < n_workers; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%u",
				 i ? "," : "", r->queues[i]);
		logit(LOG_INFO, "serving queue(s) %s with %d worker(s); %d interfaces, "
		       "%d bound devices, fail-%s", list, n_workers, cur->pol->n_ifaces,
		       cur->n_bindings, cur->pol->model->vpcfw.fail_open ? "open" : "closed");
		notify_ready(status);
	}
	return 0;
}

/* The main thread's loop: signals, the control socket, refusal lines, the
 * watchdog, the state file and the metrics, until SIGTERM/SIGINT or a
 * worker's failure.  0 for a clean stop, 1 after a failure. */
static int daemon_serve(struct run *r)
{
	uint64_t next_metrics = 0;
	struct ctl *ctl = r->ctl;

	uint64_t wd_usec = notify_watchdog_usec(), wd_next = 0;
	if (wd_usec)
		logit(LOG_INFO, "watchdog: pinging systemd every %" PRIu64 " ms while every worker "
		       "makes progress", wd_usec / 2000);
	while (!atomic_load(&worker_failed)) {
		struct timespec ts = { 0, 100 * 1000000 };
		if (ctl) {      /* the control socket takes the wait */
			ctl_serve(ctl, 100);
			ts.tv_nsec = 0;
		}
		int sig = sigtimedwait(&r->sigs, NULL, &ts);
		drain_refusals();
		watchdog(wd_usec, &wd_next);
#ifdef VPCFW_TEST_HOOKS
		if (sig == SIGUSR2) {
			bool on = !atomic_load(&test_stall);
			atomic_store(&test_stall, on);
			logit(LOG_WARNING, "test hook: workers %s", on ? "stalled" : "released");
		}
#endif
		state_tick();
		if (takeback_mark && monotonic_ns() >= takeback_retry_ns)
			offload_take_back(takeback_mark, "retry");
		const struct m_vpcfw *vc = &atomic_load(&current)->pol->model->vpcfw;
		if (vc->metrics_file && monotonic_ns() >= next_metrics) {
			if (ctl_write_metrics(&r->ctld, ctl, vc->metrics_file) < 0)
				logit(LOG_WARNING, "MetricsFile %s: cannot write: %s", vc->metrics_file,
				       strerror(errno));
			next_metrics = monotonic_ns() + (uint64_t)vc->metrics_interval * 1000000000u;
		}
		if (sig == SIGHUP) {
			/* compiled on the control socket's thread and installed by
			 * ctl_serve; here only without a control socket */
			bool ok = !ctl_reload_async(ctl, "SIGHUP") && reload(&r->opt, "SIGHUP");
			/* and, valid configuration or not, start the decision log,
			 * CloudWatch-style streams and pcap outputs again by name:
			 * logrotate's postrotate (contrib/logrotate/vpcfw) */
			flowlog_reopen(flowlog);
			mirror_reopen(mirror);
			if (ok && ctl) {
				const struct m_vpcfw *nc = &atomic_load(&current)->pol->model->vpcfw;
				ctl_set_groups(ctl, nc->admin_group, nc->reader_group);
				ctl_set_read_only_public(ctl, nc->read_only_socket_public);
			}
		} else if (sig == SIGUSR1)
			log_stats("statistics");
		else if (sig == SIGTERM || sig == SIGINT) {
			logit(LOG_INFO, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		}
	}
	return atomic_load(&worker_failed) ? 1 : 0;
}

/* The offload at the stop, the workers gone: with a state file and a clean
 * stop the offloaded flows stay with the kernel through a restart (the next
 * start takes them back before its first packet, and they are offloaded
 * again as their packets come); otherwise they are taken back now, and
 * their next packets meet the unbound queue as every other packet does
 * (dropped, or passed with --queue-bypass). */
static void offload_stop(int rc)
{
	const struct generation *g = atomic_load(&current);

	if (!g || !g->offload_mark)
		return;
	const char *sf = g->pol->model->vpcfw.state_file;
	if (rc == 0 && sf && *sf && !takeback_mark) {
		logit(LOG_INFO, "offload: offloaded flows stay with the kernel until the next start "
		       "(StateFile)");
		return;
	}
	offload_take_back(takeback_mark ? takeback_mark : g->offload_mark, "stop");
}

/* Takes down whatever daemon_start set up; rc: 0 after a clean stop (then
 * the flow table is saved), else 1. */
static void daemon_stop(struct run *r, int rc)
{
	notify_stopping();
	atomic_store(&stopping, true);
	for (int i = 0; i < n_workers; i++)
		if (workers[i].running)
			pthread_join(workers[i].thread, NULL);
	drain_refusals();
	/* the workers' last changes to the peer */
	ha_teardown();
	if (rc == 0)    /* a clean stop: a worker's failure may have left a table half made */
		state_save_final();
	offload_stop(rc);
	/* the kernel's last counts of the offloaded flows, before the last
	 * windows are written */
	offacct_stop_all();
	/* the last windows written before the counters at exit */
	flowlog_finish(flowlog);
	if (workers && workers[0].q && workers[n_workers - 1].q)
		log_stats("at exit");
	ctl_close(r->ctl); /* opened before the flow logs and mirroring start */
	r->ctl = NULL;
	/* emits the open capture windows: nothing observed is lost */
	flowlog_destroy(flowlog);
	flowlog = NULL;
	/* drains the rings, stops the sender, closes the files */
	if (mirror && !mirror_destroy(mirror))
		logit(LOG_ERR, "mirroring: some pcap records could not be written");
	mirror = NULL;
	ha_teardown();
	state_free();
	for (int i = 0; workers && i < n_workers; i++) {
		nfqueue_close(workers[i].q);
		if (workers[i].ct)
			ct_destroy(workers[i].ct);
	}
	offacct_destroy(offacct);
	offacct = NULL;
	free(workers);
	workers = NULL;
	n_workers = 0;
	generation_free(atomic_exchange(&current, NULL));
	generation_free(r->g);
	r->g = NULL;
	for (int i = 0; r->opt.config_paths && i < r->opt.n_config_paths; i++)
		free((char *)r->opt.config_paths[i]);
	free(r->opt.config_paths);
	policy_intern_reset();
	log_init("vpcfwd", LOG_TO_STDERR);
}

int daemon_run(const struct daemon_options *opt)
{
	struct run r = { 0 };
	int rc = 1;

	if (daemon_start(&r, opt) == 0)
		rc = daemon_serve(&r);
	daemon_stop(&r, rc);
	return rc;
}
