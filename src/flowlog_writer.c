/* The flow-log writer: takes the tables of closed capture windows from the
 * workers, formats AWS's records and writes them (S3 layout, gzip; or
 * CloudWatch-like JSON lines), adds NODATA and SKIPDATA, and the decision
 * log.  Runs on its own thread live, inline in replay. */
#include "flowlog_int.h"

#include <errno.h>
#include <inttypes.h>
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

/* mkdir -p of the directories in path (up to its last '/'). */
static bool make_dirs(const char *path)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
			return false;
		*p = '/';
	}
	return true;
}

static void write_error(struct flowlog *fl, const char *what, const char *path)
{
	fl->stats.write_errors++;
	fprintf(stderr, "vpcfwd: flow logs: %s %s: %s\n", what, path, strerror(errno ? errno : EIO));
}

/* ------------------------------------------------------------ S3 files */

/* Files are written under a hidden name and renamed when complete, so
 * that a reader of the directory never sees half a gzip stream. */
static void s3_close(struct flowlog *fl, struct fl_log *l)
{
	if (!l->gz)
		return;
	int r = gzclose(l->gz);
	l->gz = NULL;
	if (r != Z_OK) {
		write_error(fl, "writing", l->part_path);
		unlink(l->part_path);
	} else if (rename(l->part_path, l->final_path) != 0) {
		write_error(fl, "renaming", l->part_path);
	} else {
		fl->stats.files_written++;
	}
	free(l->part_path);
	free(l->final_path);
	l->part_path = l->final_path = NULL;
}

static bool s3_open(struct flowlog *fl, struct fl_log *l, uint64_t now)
{
	char key[1024], header[LINE_MAX_LEN];
	size_t dlen = strlen(fl->dir);

	fl_s3_key(l->account, l->region, l->id, now, l->seq++, key, sizeof(key));
	l->final_path = malloc(dlen + strlen(key) + 2);
	l->part_path = malloc(dlen + strlen(key) + 8);
	if (!l->final_path || !l->part_path)
		goto fail;
	sprintf(l->final_path, "%s/%s", fl->dir, key);
	char *slash = strrchr(key, '/');
	*slash = '\0';
	sprintf(l->part_path, "%s/%s/.%s.part", fl->dir, key, slash + 1);
	if (!make_dirs(l->final_path)) {
		write_error(fl, "creating the directories of", l->final_path);
		goto fail;
	}
	l->gz = gzopen(l->part_path, "wb");
	if (!l->gz) {
		write_error(fl, "creating", l->part_path);
		goto fail;
	}
	size_t n = fl_format_header(&l->fmt, header, sizeof(header) - 1);
	header[n] = '\n';
	if (gzwrite(l->gz, header, (unsigned)n + 1) <= 0)
		write_error(fl, "writing", l->part_path);
	l->file_start = now;
	l->file_bytes = n + 1;
	return true;
fail:
	free(l->final_path);
	free(l->part_path);
	l->final_path = l->part_path = NULL;
	return false;
}

static void s3_rotate(struct flowlog *fl, struct fl_log *l, uint64_t now)
{
	if (l->gz && (now >= l->file_start + fl->rotate_seconds || l->file_bytes >= fl->rotate_bytes))
		s3_close(fl, l);
}

static void s3_write(struct flowlog *fl, struct fl_log *l, const char *line, size_t n)
{
	s3_rotate(fl, l, fl->now);
	if (!l->gz && !s3_open(fl, l, fl->now))
		return;
	if (gzwrite(l->gz, line, (unsigned)n) <= 0)
		write_error(fl, "writing", l->part_path);
	l->file_bytes += n;
}

/* ------------------------------------------------------------ CloudWatch */

static FILE *cwl_stream(struct flowlog *fl, struct fl_log *l, uint32_t ct_id)
{
	if (l->streams[ct_id])
		return l->streams[ct_id];
	const struct fl_meta *m = &fl->meta[ct_id];
	char path[4096];
	/* one stream per interface, named by it (API CreateFlowLogs) */
	int n = snprintf(path, sizeof(path), "%s/CloudWatchLogs/%s/%s.jsonl", fl->dir, l->group,
			 m->iface_id ? m->iface_id : "unknown");
	if (n < 0 || (size_t)n >= sizeof(path) || !make_dirs(path)) {
		write_error(fl, "creating the directories of", path);
		return NULL;
	}
	FILE *f = fopen(path, "a");
	if (!f) {
		write_error(fl, "opening", path);
		return NULL;
	}
	fl->stats.files_written++;
	l->streams[ct_id] = f;
	return f;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void cwl_write(struct flowlog *fl, struct fl_log *l, uint32_t ct_id, uint64_t ts,
		      const char *line)
{
	FILE *f = cwl_stream(fl, l, ct_id);
	if (!f)
		return;
	fprintf(f, "{\"timestamp\": %" PRIu64 "000, \"message\": ", ts);
	json_str(f, line);
	fputs("}\n", f);
}

/* ------------------------------------------------------------ records */

static void emit(struct flowlog *fl, struct fl_log *l, uint32_t ct_id, const struct fl_record *r)
{
	char line[LINE_MAX_LEN];
	size_t n = fl_format_record(&l->fmt, r, line, sizeof(line) - 1);
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	if (l->dest == FL_DEST_S3) {
		line[n] = '\n';
		s3_write(fl, l, line, n + 1);
	} else if (l->dest == FL_DEST_CWL) {
		cwl_write(fl, l, ct_id, r->start, line);
	}
	if (r->status == FL_OK)
		fl->stats.records_written++;
	else if (r->status == FL_NODATA)
		fl->stats.nodata_records++;
	else
		fl->stats.skipdata_records++;
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
	FILE *f = fl->decisions;

	fprintf(f, "{\"start\": %" PRIu64 ", \"end\": %" PRIu64 ", \"interface-id\": ",
		(uint64_t)e->first_s, (uint64_t)e->last_s);
	json_str(f, m ? m->iface_id : "-");
	fprintf(f, ", \"flow-direction\": \"%s\", \"srcaddr\": \"%s\", \"dstaddr\": \"%s\", "
		"\"srcport\": %u, \"dstport\": %u, \"protocol\": %u, \"packets\": %" PRIu64
		", \"bytes\": %" PRIu64 ", \"action\": \"REJECT\", \"stage\": \"%s\", "
		"\"reason\": \"%s\", \"rule\": ",
		e->bits & FLE_EGRESS ? "egress" : "ingress", addr_format(&e->src, e->family, src),
		addr_format(&e->dst, e->family, dst), e->sport, e->dport, e->proto, e->packets,
		e->bytes, stage_name((enum stage)e->stage), reason_name((enum reason)e->reason));
	json_str(f, rule);
	fprintf(f, ", \"window-start\": %" PRIu64 ", \"window-end\": %" PRIu64 "}\n", t->start,
		t->end);
	fl->stats.decisions_written++;
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
	for (int i = 0; i < fl->n_logs; i++) {
		if (!(e->logs & (1ULL << i)))
			continue;
		emit(fl, &fl->logs[i], e->ct_id, &r);
		if (e->ct_id < fl->meta_cap)
			fl->logs[i].seen[e->ct_id] = 1;
	}
}

static void status_record(struct flowlog *fl, struct fl_log *l, uint32_t ct_id, uint64_t start,
			  uint64_t end, enum fl_status st)
{
	struct fl_record r;
	record_of_meta(meta_of(fl, ct_id), &r);
	r.start = start;
	r.end = end;
	r.status = st;
	emit(fl, l, ct_id, &r);
	l->seen[ct_id] = 1;
}

/* SKIPDATA for the interfaces a table could not record everything of. */
static void write_lost(struct flowlog *fl, int c, const struct fl_table *t)
{
	fl->stats.records_lost += t->lost_total;
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
}

/* NODATA for every logged interface that had no record in [from, to). */
static void write_nodata(struct flowlog *fl, int c, uint64_t from, uint64_t to)
{
	for (int i = 0; i < fl->n_logs; i++) {
		struct fl_log *l = &fl->logs[i];
		if (l->cls != c || l->dest == FL_DEST_NONE)
			continue;
		for (uint32_t ct = 1; ct < fl->meta_cap; ct++)
			if (l->covered[ct] && !l->seen[ct] && fl->meta[ct].present)
				status_record(fl, l, ct, from, to, FL_NODATA);
		memset(l->seen, 0, fl->meta_cap);
	}
}

static void flush_outputs(struct flowlog *fl)
{
	for (int i = 0; i < fl->n_logs; i++) {
		struct fl_log *l = &fl->logs[i];
		for (uint32_t ct = 0; l->streams && ct < fl->meta_cap; ct++)
			if (l->streams[ct])
				fflush(l->streams[ct]);
		s3_rotate(fl, l, fl->now);
	}
	if (fl->decisions)
		fflush(fl->decisions);
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
			struct fl_table *t = atomic_load_explicit(&wc->handed, memory_order_acquire);
			if (t) {
				take_table(fl, c, t);
				atomic_store_explicit(&wc->handed, NULL, memory_order_release);
			}
			if (!u)
				continue;
			any = true;
			if (u < upto)
				upto = u;
			u = atomic_load_explicit(&wc->first_start, memory_order_acquire);
			if (u < first)
				first = u;
		}
		if (!any)
			continue;
		if (!fl->done_upto[c])
			fl->done_upto[c] = first; /* NODATA from the first window on */
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
	for (int i = 0; i < fl->n_logs; i++) {
		struct fl_log *l = &fl->logs[i];
		s3_close(fl, l);
		for (uint32_t ct = 0; l->streams && ct < fl->meta_cap; ct++)
			if (l->streams[ct]) {
				if (fclose(l->streams[ct]) != 0)
					write_error(fl, "closing a stream of", l->group);
				l->streams[ct] = NULL;
			}
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
