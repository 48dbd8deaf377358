/* The flow-log writer: takes the tables of closed capture windows from the
 * workers, formats AWS's records and writes them (S3 layout, gzip; or
 * CloudWatch-like JSON lines), adds NODATA and SKIPDATA, and the decision
 * log.  Runs on its own thread live, inline in replay. */
#include "flowlog_int.h"
#include "vpcfw/log.h"
#include "vpcfw/safefile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 4096

void fl_table_clear(struct fl_table *t)
{
	for (uint32_t i = 0; i < t->n; i++)
		t->slots[t->used[i]].ct_id = 0;
	t->n = 0;
	t->n_lost = 0;
	t->lost_other = 0;
	t->lost_total = 0;
}

static void write_error(struct flowlog *fl, const char *what, const char *path)
{
	int e = errno ? errno : EIO;
	counter_inc(&fl->stats.write_errors);
	uint64_t n = counter_get(&fl->stats.write_errors);
	if (n > 8 && (n & (n - 1)))
		return; /* the first ones, then every power of two: the count is in stats */
	log_warnx("flow logs: %s %s: %s%s", what, path, strerror(e),
		e == ELOOP || e == EPERM ? " (a symbolic link or other non-file is there: refused)"
					 : "");
}

/* A line being built (decision log, CloudWatch events). */
struct line {
	char s[LINE_MAX_LEN * 2];
	size_t n;
};

static void add(struct line *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct line *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->n += (size_t)n < sizeof(b->s) - b->n ? (size_t)n : sizeof(b->s) - b->n - 1;
}

static void add_json_str(struct line *b, const char *s)
{
	add(b, "\"");
	for (; s && *s && b->n + 8 < sizeof(b->s); s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			add(b, "\\%c", c);
		else if (c < 0x20)
			add(b, "\\u%04x", c);
		else
			b->s[b->n++] = (char)c;
	}
	add(b, "\"");
}

/* ------------------------------------------------------------ S3 files */

/* A file is written under a hidden exclusive name and renamed, without
 * replacing anything, when complete: a reader of the directory never sees
 * half a gzip stream, and no run or host ever overwrites another's file
 * (the name's hash is random, as AWS's is). */
static void s3_close(struct flowlog *fl, struct fl_log *l)
{
	if (!l->gz)
		return;
	int r = gzclose(l->gz);
	l->gz = NULL;
	if (r != Z_OK) {
		write_error(fl, "writing", l->part_name);
		unlinkat(l->part_dir, l->part_name, 0);
	} else {
		char key[1024];
		int tries = 0;
		for (;; tries++) {
			uint32_t hash;
			safe_random(&hash, sizeof(hash));
			fl_s3_key(&l->lay, l->account, l->region, l->id, l->file_period, hash, key,
				  sizeof(key));
			const char *name = strrchr(key, '/') + 1;
			if (safe_rename(l->part_dir, l->part_name, name, false) == 0) {
				counter_inc(&fl->stats.files_written);
				break;
			}
			if (errno != EEXIST || tries == 8) {
				write_error(fl, "naming", key);
				break;
			}
		}
	}
	close(l->part_dir);
	l->part_dir = -1;
}

static bool s3_open(struct flowlog *fl, struct fl_log *l, uint64_t period)
{
	char key[1024], header[LINE_MAX_LEN];

	fl_s3_key(&l->lay, l->account, l->region, l->id, period, 0, key, sizeof(key));
	*strrchr(key, '/') = '\0';
	l->part_dir = safe_mkdirs_at(fl->dirfd, key);
	if (l->part_dir < 0) {
		write_error(fl, "creating the directory", key);
		return false;
	}
	int fd = safe_create_temp(l->part_dir, l->id, SAFE_FILE_MODE, l->part_name,
				  sizeof(l->part_name));
	l->gz = fd >= 0 ? gzdopen(fd, "wb") : NULL;
	if (!l->gz) {
		write_error(fl, "creating a file in", key);
		if (fd >= 0) {
			close(fd);
			unlinkat(l->part_dir, l->part_name, 0);
		}
		close(l->part_dir);
		l->part_dir = -1;
		return false;
	}
	size_t n = fl_format_header(&l->fmt, header, sizeof(header) - 1);
	header[n] = '\n';
	if (gzwrite(l->gz, header, (unsigned)n + 1) <= 0)
		write_error(fl, "writing", l->part_name);
	l->file_period = period;
	l->file_bytes = n + 1;
	return true;
}

/* AWS publishes a file per 5 minutes (flow-logs-s3-path: "records with end
 * times between 16:20:00 and 16:24:59" in ..._20180620T1620Z_...); ours
 * close at the end of their period (FlowLogRotateSeconds) once the records
 * of its windows are in, or at FlowLogRotateBytes. */
static uint64_t period_of(const struct flowlog *fl, uint64_t t)
{
	return t - t % fl->rotate_seconds;
}

static void s3_rotate(struct flowlog *fl, struct fl_log *l, uint64_t now)
{
	if (l->gz && (now >= l->file_period + fl->rotate_seconds + fl_class_interval[l->cls] ||
		      l->file_bytes >= fl->rotate_bytes))
		s3_close(fl, l);
}

static void s3_write(struct flowlog *fl, struct fl_log *l, uint64_t t, const char *line, size_t n)
{
	uint64_t period = period_of(fl, t);
	if (l->gz && (period != l->file_period || l->file_bytes >= fl->rotate_bytes))
		s3_close(fl, l);
	if (!l->gz && !s3_open(fl, l, period))
		return;
	if (gzwrite(l->gz, line, (unsigned)n) <= 0)
		write_error(fl, "writing", l->part_name);
	l->file_bytes += n;
}

/* ------------------------------------------------------------ CloudWatch */

static struct logfile *cwl_stream(struct flowlog *fl, struct fl_log *l, uint32_t ct_id)
{
	struct fl_group *g = &fl->groups[l->group];
	if (g->streams[ct_id])
		return g->streams[ct_id];
	const struct fl_meta *m = &fl->meta[ct_id];
	char dir[512], name[300];
	/* one stream per interface, named by it (API CreateFlowLogs) */
	snprintf(dir, sizeof(dir), "CloudWatchLogs/%s", g->name);
	snprintf(name, sizeof(name), "%s.jsonl", m->iface_id ? m->iface_id : "unknown");
	int dfd = safe_mkdirs_at(fl->dirfd, dir);
	if (dfd < 0) {
		write_error(fl, "creating the directory", dir);
		return NULL;
	}
	struct logfile *f = logfile_open(dfd, name);
	if (!f)
		write_error(fl, "opening a stream of", dir);
	close(dfd);
	if (f)
		counter_inc(&fl->stats.files_written);
	g->streams[ct_id] = f;
	return f;
}

static void cwl_write(struct flowlog *fl, struct fl_log *l, uint32_t ct_id, uint64_t ts,
		      const char *text)
{
	struct logfile *f = cwl_stream(fl, l, ct_id);
	struct line b = { .n = 0 };
	if (!f)
		return;
	add(&b, "{\"timestamp\": %" PRIu64 "000, \"message\": ", ts);
	add_json_str(&b, text);
	add(&b, "}");
	if (!logfile_line(f, b.s, b.n))
		write_error(fl, "writing a stream of", fl->groups[l->group].name);
}

/* ------------------------------------------------------------ records */

/* Marks the capture windows [from, to] of one interface as having a
 * record (no NODATA for them). */
static void mark_seen(struct flowlog *fl, struct fl_log *l, uint32_t ct_id, uint64_t from,
		      uint64_t to)
{
	uint32_t iv = fl_class_interval[l->cls];
	uint64_t base = fl->done_upto[l->cls];

	if (ct_id >= fl->meta_cap)
		return;
	if (to > l->seen_last[ct_id])
		l->seen_last[ct_id] = to;
	for (uint64_t w = from - from % iv; w <= to; w += iv)
		if (w >= base && (w - base) / iv < 64)
			l->win_seen[ct_id] |= 1ULL << ((w - base) / iv);
}

/* `window`: the start of the capture window the record belongs to (its S3
 * file's period). */
static void emit(struct flowlog *fl, struct fl_log *l, uint32_t ct_id, uint64_t window,
		 const struct fl_record *r)
{
	char line[LINE_MAX_LEN];
	size_t n = fl_format_record(&l->fmt, r, line, sizeof(line) - 1);
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	if (l->dest == FL_DEST_S3) {
		line[n] = '\n';
		s3_write(fl, l, window, line, n + 1);
	} else if (l->dest == FL_DEST_CWL) {
		cwl_write(fl, l, ct_id, r->start, line);
	}
	mark_seen(fl, l, ct_id, r->start, r->status == FL_OK ? r->end : r->start);
	if (r->status == FL_OK)
		counter_inc(&fl->stats.records_written);
	else if (r->status == FL_NODATA)
		counter_inc(&fl->stats.nodata_records);
	else
		counter_inc(&fl->stats.skipdata_records);
}

static void record_of_meta(const struct fl_meta *m, struct fl_record *r)
{
	memset(r, 0, sizeof(*r));
	if (!m || !m->present)
		return;
	r->account_id = m->account_id;
	r->interface_id = m->iface_id;
	r->vpc_id = m->vpc_id;
	r->subnet_id = m->subnet_id;
	r->instance_id = m->instance_id;
	r->region = m->region;
	r->az_id = m->az_id;
}

static const struct fl_meta *meta_of(const struct flowlog *fl, uint32_t ct_id)
{
	return ct_id < fl->meta_cap && fl->meta[ct_id].present ? &fl->meta[ct_id] : NULL;
}

static void decision(struct flowlog *fl, const struct fl_table *t, const struct fl_entry *e,
		     const struct fl_meta *m, const char *rule)
{
	char src[ADDR_STRLEN], dst[ADDR_STRLEN];
	struct line b = { .n = 0 };

	add(&b, "{\"start\": %" PRIu64 ", \"end\": %" PRIu64 ", \"interface-id\": ",
	    (uint64_t)e->first_s, (uint64_t)e->last_s);
	add_json_str(&b, m ? m->iface_id : "-");
	add(&b, ", \"flow-direction\": \"%s\", \"srcaddr\": \"%s\", \"dstaddr\": \"%s\", "
	    "\"srcport\": %u, \"dstport\": %u, \"protocol\": %u, \"packets\": %" PRIu64
	    ", \"bytes\": %" PRIu64 ", \"action\": \"REJECT\", \"stage\": \"%s\", "
	    "\"reason\": \"%s\", \"rule\": ",
	    e->bits & FLE_EGRESS ? "egress" : "ingress", addr_format(&e->src, e->family, src),
	    addr_format(&e->dst, e->family, dst), e->sport, e->dport, e->proto, e->packets,
	    e->bytes, stage_name((enum stage)e->stage), reason_name((enum reason)e->reason));
	add_json_str(&b, rule);
	add(&b, ", \"window-start\": %" PRIu64 ", \"window-end\": %" PRIu64 "}", t->start, t->end);
	if (logfile_line(fl->decisions, b.s, b.n))
		counter_inc(&fl->stats.decisions_written);
	else
		write_error(fl, "writing", fl->decisions_path);
}

static void write_entry(struct flowlog *fl, const struct fl_table *t, uint32_t slot)
{
	const struct fl_entry *e = &t->slots[slot];
	bool egress = e->bits & FLE_EGRESS;
	const struct fl_meta *m = meta_of(fl, e->ct_id);
	struct fl_record r;

	if (e->decision && fl->decisions)
		decision(fl, t, e, m, t->rules ? t->rules[slot] : "");
	if (!e->logs)
		return;
	record_of_meta(m, &r);
	r.family = e->family;
	r.pkt_srcaddr = e->src;
	r.pkt_dstaddr = e->dst;
	r.srcaddr = e->src;
	r.dstaddr = e->dst;
	/* SPEC §7: the interface's side shows its primary private address */
	if (m && m->family == e->family) {
		if (egress)
			r.srcaddr = m->primary;
		else
			r.dstaddr = m->primary;
	}
	r.proto = e->proto;
	r.sport = e->sport;
	r.dport = e->dport;
	r.tcp_flags = e->tcp_flags;
	r.accept = e->bits & FLE_ACCEPT;
	r.egress = egress;
	/* traffic-path 1: "through another resource in the same VPC"; the
	 * gateways behind other values are not modelled: "-" */
	r.traffic_path = e->same_vpc ? 1 : 0;
	r.packets = e->packets;
	r.bytes = e->bytes;
	r.start = e->first_s;
	r.end = e->last_s;
	r.status = FL_OK;
	for (int i = 0; i < fl->n_logs; i++)
		if (e->logs & (1ULL << i))
			emit(fl, &fl->logs[i], e->ct_id, t->start, &r);
}

static void status_record(struct flowlog *fl, struct fl_log *l, uint32_t ct_id, uint64_t start,
			  uint64_t end, enum fl_status st)
{
	struct fl_record r;
	record_of_meta(meta_of(fl, ct_id), &r);
	r.start = start;
	r.end = end;
	r.status = st;
	emit(fl, l, ct_id, start, &r);
}

/* SKIPDATA for the interfaces a table could not record everything of. */
static void write_lost(struct flowlog *fl, int c, const struct fl_table *t)
{
	counter_add(&fl->stats.records_lost, t->lost_total);
	for (int i = 0; i < fl->n_logs; i++) {
		struct fl_log *l = &fl->logs[i];
		if (l->cls != c || l->dest == FL_DEST_NONE)
			continue;
		for (uint32_t k = 0; k < t->n_lost; k++) {
			uint32_t ct = t->lost[k].ct_id;
			if (ct < fl->meta_cap && l->covered[ct])
				status_record(fl, l, ct, t->start, t->end, FL_SKIPDATA);
		}
		if (!t->lost_other)
			continue;
		/* more interfaces lost records than the table can name: say
		 * so for every logged interface rather than for none */
		for (uint32_t ct = 1; ct < fl->meta_cap; ct++) {
			bool named = false;
			for (uint32_t k = 0; k < t->n_lost; k++)
				named |= t->lost[k].ct_id == ct;
			if (l->covered[ct] && !named)
				status_record(fl, l, ct, t->start, t->end, FL_SKIPDATA);
		}
	}
}

static void take_table(struct flowlog *fl, int c, struct fl_table *t)
{
	if (t->end > fl->now)
		fl->now = t->end;
	for (uint32_t i = 0; i < t->n; i++)
		write_entry(fl, t, t->used[i]);
	if (t->lost_total)
		write_lost(fl, c, t);
	fl_table_clear(t);
	counter_inc(&fl->stats.tables_taken);
}

/* NODATA for every logged interface and capture window of [from, to)
 * without a record (flow-logs: "no network traffic to or from the network
 * interface during the aggregation interval"): one record per window. */
static void write_nodata(struct flowlog *fl, int c, uint64_t from, uint64_t to)
{
	uint32_t iv = fl_class_interval[c];
	uint64_t windows = (to - from) / iv;

	if (windows > FL_NODATA_MAX_WINDOWS) {
		log_warnx("flow logs: no traffic for %" PRIu64 " capture windows: "
			"NODATA written for the first %d", windows, FL_NODATA_MAX_WINDOWS);
		windows = FL_NODATA_MAX_WINDOWS;
	}
	for (int i = 0; i < fl->n_logs; i++) {
		struct fl_log *l = &fl->logs[i];
		if (l->cls != c || l->dest == FL_DEST_NONE)
			continue;
		for (uint32_t ct = 1; ct < fl->meta_cap; ct++) {
			if (!l->covered[ct] || !fl->meta[ct].present)
				continue;
			uint64_t seen = l->win_seen[ct], last = l->seen_last[ct];
			for (uint64_t k = 0; k < windows; k++) {
				uint64_t w = from + k * iv;
				bool had = k < 64 ? (seen >> k) & 1 : last >= w && last < w + iv;
				if (!had)
					status_record(fl, l, ct, w, w + iv, FL_NODATA);
			}
		}
		memset(l->win_seen, 0, fl->meta_cap * sizeof(*l->win_seen));
	}
}

static void reopen_outputs(struct flowlog *fl)
{
	for (int g = 0; g < fl->n_groups; g++)
		for (uint32_t ct = 0; ct < fl->meta_cap; ct++)
			if (fl->groups[g].streams[ct] && !logfile_reopen(fl->groups[g].streams[ct]))
				write_error(fl, "reopening a stream of", fl->groups[g].name);
	if (fl->decisions && !logfile_reopen(fl->decisions))
		write_error(fl, "reopening", fl->decisions_path);
}

static void flush_outputs(struct flowlog *fl)
{
	for (int g = 0; g < fl->n_groups; g++)
		for (uint32_t ct = 0; ct < fl->meta_cap; ct++)
			if (fl->groups[g].streams[ct] && !logfile_flush(fl->groups[g].streams[ct]))
				write_error(fl, "writing a stream of", fl->groups[g].name);
	for (int i = 0; i < fl->n_logs; i++)
		s3_rotate(fl, &fl->logs[i], fl->now);
	if (fl->decisions && !logfile_flush(fl->decisions))
		write_error(fl, "writing", fl->decisions_path);
	if (atomic_exchange(&fl->reopen, false))
		reopen_outputs(fl);
}

void fl_writer_collect(struct flowlog *fl, uint64_t now)
{
	pthread_mutex_lock(&fl->mu);
	if (now > fl->now)
		fl->now = now;
	for (int c = 0; c < FL_CLASSES; c++) {
		if (!fl->cls_used[c])
			continue;
		uint64_t upto = UINT64_MAX, first = UINT64_MAX;
		bool any = false;
		for (int w = 0; w < fl->n_workers; w++) {
			struct fl_wclass *wc = &fl->workers[w].cls[c];
			/* closed_upto first: a table handed before it is
			 * visible below */
			uint64_t u = atomic_load_explicit(&wc->closed_upto, memory_order_acquire);
			fl->taken[w] = atomic_load_explicit(&wc->handed, memory_order_acquire);
			if (!u)
				continue;
			any = true;
			if (u < upto)
				upto = u;
			u = atomic_load_explicit(&wc->first_start, memory_order_acquire);
			if (u < first)
				first = u;
		}
		if (any && !fl->done_upto[c])
			fl->done_upto[c] = first; /* NODATA from the first window on */
		for (int w = 0; w < fl->n_workers; w++)
			if (fl->taken[w]) {
				take_table(fl, c, fl->taken[w]);
				atomic_store_explicit(&fl->workers[w].cls[c].handed, NULL,
						      memory_order_release);
			}
		if (!any)
			continue;
		if (upto > fl->done_upto[c]) {
			write_nodata(fl, c, fl->done_upto[c], upto);
			fl->done_upto[c] = upto;
		}
	}
	flush_outputs(fl);
	pthread_mutex_unlock(&fl->mu);
}

void fl_writer_close_all(struct flowlog *fl)
{
	pthread_mutex_lock(&fl->mu);
	for (int i = 0; i < fl->n_logs; i++)
		s3_close(fl, &fl->logs[i]);
	for (int g = 0; g < fl->n_groups; g++)
		for (uint32_t ct = 0; ct < fl->meta_cap; ct++)
			if (fl->groups[g].streams[ct]) {
				if (!logfile_close(fl->groups[g].streams[ct]))
					write_error(fl, "closing a stream of", fl->groups[g].name);
				fl->groups[g].streams[ct] = NULL;
			}
	pthread_mutex_unlock(&fl->mu);
}

void *fl_writer_main(void *arg)
{
	struct flowlog *fl = arg;
	struct timespec pause = { 0, 100 * 1000 * 1000 };

	while (!atomic_load(&fl->stop)) {
		fl_writer_collect(fl, (uint64_t)time(NULL));
		nanosleep(&pause, NULL);
	}
	fl_writer_collect(fl, (uint64_t)time(NULL));
	return NULL;
}
