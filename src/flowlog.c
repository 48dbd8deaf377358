/* VPC flow logs (SPEC §7): configuration, and the per-worker aggregation of
 * decided packets into capture windows.  flowlog_writer.c turns closed
 * windows into AWS's files. */
#include "flowlog_int.h"
#include "vpcfw/log.h"
#include "vpcfw/safefile.h"
#include "vpcfw/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const uint32_t fl_class_interval[FL_CLASSES] = { 60, 600 };

#define DEFAULT_ROTATE_SECONDS 300                  /* flow-logs-s3-path */
#define DEFAULT_ROTATE_BYTES (75ULL * 1000 * 1000)  /* "75 MB" */
#define DEFAULT_TABLE_SIZE 16384

/* ------------------------------------------------------------ configuration */

static int class_of(uint32_t interval)
{
	return interval == 60 ? 0 : 1;
}

static enum fl_dest dest_of(const char *type)
{
	if (!type || strcmp(type, "s3") == 0)
		return FL_DEST_S3;
	if (strcmp(type, "cloud-watch-logs") == 0)
		return FL_DEST_CWL;
	return FL_DEST_NONE;
}

static bool model_has_resource(const struct model *m, const char *id)
{
	for (int i = 0; i < m->n_vpcs; i++)
		if (strcmp(m->vpcs[i].id, id) == 0)
			return true;
	for (int i = 0; i < m->n_subnets; i++)
		if (strcmp(m->subnets[i].id, id) == 0)
			return true;
	for (int i = 0; i < m->n_enis; i++)
		if (strcmp(m->enis[i].id, id) == 0)
			return true;
	return false;
}

void flowlog_check_config(const struct model *m, struct diag *d)
{
	char err[160], path[256];

	for (int i = 0; i < m->n_flowlogs; i++) {
		const struct m_flowlog *f = &m->flowlogs[i];
		struct fl_format fmt;

		if (!fl_format_parse(f->log_format, &fmt, err, sizeof(err))) {
			snprintf(path, sizeof(path), "%s.LogFormat", f->where.path ? f->where.path : "");
			diag_error(d, f->where.file, path, "%s", err);
		}
		if (dest_of(f->destination_type) == FL_DEST_NONE) {
			snprintf(path, sizeof(path), "%s.LogDestinationType",
				 f->where.path ? f->where.path : "");
			diag_warn(d, f->where.file, path,
				  "'%s': vpcfw writes only s3 and cloud-watch-logs flow logs; "
				  "this one is not written", f->destination_type);
		}
		if (dest_of(f->destination_type) == FL_DEST_S3) {
			struct fl_s3_layout lay;
			snprintf(path, sizeof(path), "%s.LogDestination", f->where.path ? f->where.path : "");
			if (!fl_s3_folder(f->destination, &lay, err, sizeof(err)))
				diag_error(d, f->where.file, path, "%s", err);
		}
		if (f->parquet) {
			snprintf(path, sizeof(path), "%s.DestinationOptions.FileFormat",
				 f->where.path ? f->where.path : "");
			diag_warn(d, f->where.file, path,
				  "'parquet': no Parquet writer is packaged in Debian for vpcfw to use; "
				  "this flow log is not written (use plain-text)");
		}
		if (f->resource_id && !model_has_resource(m, f->resource_id))
			diag_warn(d, f->where.file, f->where.path,
				  "ResourceId '%s' is no VPC, subnet or interface of the configuration: "
				  "the flow log records nothing", f->resource_id);
		if (i == FL_MAX_LOGS)
			diag_warn(d, f->where.file, f->where.path,
				  "more than %d flow logs: this one and those after it are not written",
				  FL_MAX_LOGS);
	}
}

static const char *flow_dir(const struct policy *pol, const struct flowlog_options *opt)
{
	if (opt && opt->dir && *opt->dir)
		return opt->dir;
	if (pol && pol->model && pol->model->vpcfw.flow_log_dir && *pol->model->vpcfw.flow_log_dir)
		return pol->model->vpcfw.flow_log_dir;
	return NULL;
}

static const char *decision_path(const struct policy *pol)
{
	if (pol && pol->model && pol->model->vpcfw.decision_log && *pol->model->vpcfw.decision_log)
		return pol->model->vpcfw.decision_log;
	return NULL;
}

bool flowlog_enabled(const struct policy *pol, const struct flowlog_options *opt)
{
	return flow_dir(pol, opt) || decision_path(pol);
}

/* A log group name as one safe path component. */
static char *group_name(const struct m_flowlog *f)
{
	const char *g = f->log_group_name;
	char *r;

	if (!g && f->destination) {
		/* arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*] */
		const char *p = strstr(f->destination, ":log-group:");
		g = p ? p + strlen(":log-group:") : f->destination;
	}
	if (!g || !*g)
		g = f->id;
	r = xstrdup(g);
	size_t n = strlen(r);
	if (n > 2 && strcmp(r + n - 2, ":*") == 0)
		r[n - 2] = '\0';
	for (char *p = r; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '-' && *p != '_' && *p != '.' && *p != '#')
			*p = '_';
	if (r[0] == '.')
		r[0] = '_';
	return r;
}

static bool iface_in(const struct iface *f, const char *resource)
{
	if (!resource)
		return true;
	if (strcmp(f->id, resource) == 0)
		return true;
	if (f->subnet && strcmp(f->subnet->id, resource) == 0)
		return true;
	return f->subnet && f->subnet->vpc && strcmp(f->subnet->vpc->id, resource) == 0;
}

/* The account of the S3 path: Vpcfw.AccountId, else the owner of the logged
 * resource, else of anything in the configuration. */
static char *path_account(const struct model *m, const char *resource)
{
	if (m->vpcfw.account_id && *m->vpcfw.account_id)
		return xstrdup(m->vpcfw.account_id);
	for (int i = 0; resource && i < m->n_enis; i++)
		if (strcmp(m->enis[i].id, resource) == 0 && m->enis[i].owner_id)
			return xstrdup(m->enis[i].owner_id);
	for (int i = 0; resource && i < m->n_subnets; i++)
		if (strcmp(m->subnets[i].id, resource) == 0 && m->subnets[i].owner_id)
			return xstrdup(m->subnets[i].owner_id);
	for (int i = 0; i < m->n_vpcs; i++)
		if ((!resource || strcmp(m->vpcs[i].id, resource) == 0) && m->vpcs[i].owner_id)
			return xstrdup(m->vpcs[i].owner_id);
	for (int i = 0; i < m->n_enis; i++)
		if (m->enis[i].owner_id)
			return xstrdup(m->enis[i].owner_id);
	return xstrdup("unknown");
}

static char *iface_region(const struct model *m, const struct iface *f)
{
	char buf[64];
	if (m->vpcfw.region && *m->vpcfw.region)
		return xstrdup(m->vpcfw.region);
	if (f && f->subnet && f->subnet->m && fl_region_of_az(f->subnet->m->az, buf, sizeof(buf)))
		return xstrdup(buf);
	return NULL;
}

/* The region of the S3 path: Vpcfw.Region, else the zone of a logged
 * interface's subnet, else of any subnet. */
static char *path_region(const struct policy *pol, const char *resource)
{
	const struct model *m = pol->model;
	char buf[64];

	for (int i = 0; i < pol->n_ifaces; i++)
		if (iface_in(&pol->ifaces[i], resource)) {
			char *r = iface_region(m, &pol->ifaces[i]);
			if (r)
				return r;
		}
	if (m->vpcfw.region && *m->vpcfw.region)
		return xstrdup(m->vpcfw.region);
	for (int i = 0; i < m->n_subnets; i++)
		if (fl_region_of_az(m->subnets[i].az, buf, sizeof(buf)))
			return xstrdup(buf);
	return xstrdup("unknown");
}

static bool grow_meta(struct flowlog *fl, uint32_t need)
{
	if (need < fl->meta_cap)
		return true;
	uint32_t cap = fl->meta_cap ? fl->meta_cap : 64;
	while (cap <= need)
		cap *= 2;
	struct fl_meta *m = realloc(fl->meta, cap * sizeof(*m));
	if (!m)
		return false;
	memset(m + fl->meta_cap, 0, (cap - fl->meta_cap) * sizeof(*m));
	fl->meta = m;
	size_t more = cap - fl->meta_cap;
	for (int i = 0; i < fl->n_logs; i++) {
		struct fl_log *l = &fl->logs[i];
		uint8_t *c = realloc(l->covered, cap);
		if (c)
			l->covered = c;
		uint64_t *s = realloc(l->win_seen, cap * sizeof(*s));
		if (s)
			l->win_seen = s;
		uint64_t *sl = realloc(l->seen_last, cap * sizeof(*sl));
		if (sl)
			l->seen_last = sl;
		if (!c || !s || !sl)
			return false;
		memset(l->covered + fl->meta_cap, 0, more);
		memset(l->win_seen + fl->meta_cap, 0, more * sizeof(*s));
		memset(l->seen_last + fl->meta_cap, 0, more * sizeof(*sl));
	}
	for (int g = 0; g < fl->n_groups; g++) {
		struct logfile **st = realloc(fl->groups[g].streams, cap * sizeof(*st));
		if (!st)
			return false;
		fl->groups[g].streams = st;
		memset(st + fl->meta_cap, 0, more * sizeof(*st));
	}
	fl->meta_cap = cap;
	return true;
}

static void meta_free(struct fl_meta *m)
{
	free(m->iface_id);
	free(m->vpc_id);
	free(m->subnet_id);
	free(m->instance_id);
	free(m->account_id);
	free(m->region);
	free(m->az_id);
	memset(m, 0, sizeof(*m));
}

/* What the writer needs to know of the interfaces: ids by ct_id, and which
 * flow log covers which.  Entries of interfaces gone from the policy stay,
 * so that records still in flight are written whole. */
static void load_interfaces(struct flowlog *fl, const struct policy *pol)
{
	const struct model *m = pol->model;
	uint32_t top = 0;

	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].ct_id > top)
			top = pol->ifaces[i].ct_id;
	pthread_mutex_lock(&fl->mu);
	if (!grow_meta(fl, top)) {
		pthread_mutex_unlock(&fl->mu);
		log_warnx("flow logs: out of memory for the interface table");
		return;
	}
	for (int i = 0; i < fl->n_logs; i++)
		memset(fl->logs[i].covered, 0, fl->meta_cap);
	for (int i = 0; i < pol->n_ifaces; i++) {
		const struct iface *f = &pol->ifaces[i];
		struct fl_meta *x = &fl->meta[f->ct_id];

		if (!f->subnet)
			continue; /* not enforced, never logged */
		meta_free(x);
		x->present = true;
		x->iface_id = xstrdup(f->id);
		x->subnet_id = xstrdup(f->subnet->id);
		x->vpc_id = xstrdup(f->subnet->vpc ? f->subnet->vpc->id
				    : f->m && f->m->vpc_id ? f->m->vpc_id : NULL);
		x->instance_id = xstrdup(f->m ? f->m->instance_id : NULL);
		/* "the AWS account ID of the owner of the source network
		 * interface" (flow-log-records) */
		x->account_id = xstrdup(f->m && f->m->owner_id ? f->m->owner_id
				        : m->vpcfw.account_id ? m->vpcfw.account_id : "unknown");
		x->region = iface_region(m, f);
		x->az_id = xstrdup(f->subnet->m ? f->subnet->m->az_id : NULL);
		x->primary = f->primary;
		x->family = (uint8_t)f->primary_family;
		for (int j = 0; j < fl->n_logs; j++)
			if (iface_in(f, fl->logs[j].resource_id))
				fl->logs[j].covered[f->ct_id] = 1;
	}
	pthread_mutex_unlock(&fl->mu);
}

static bool table_init(struct fl_table *t, uint32_t size, bool rules)
{
	uint32_t cap = 16;
	while (cap < size)
		cap *= 2;
	memset(t, 0, sizeof(*t));
	t->slots = aligned_alloc(64, cap * sizeof(*t->slots));
	if (t->slots)
		memset(t->slots, 0, cap * sizeof(*t->slots));
	t->max = cap / 4 * 3;
	t->used = calloc(t->max, sizeof(*t->used));
	t->mask = cap - 1;
	if (rules)
		t->rules = calloc(cap, sizeof(*t->rules));
	return t->slots && t->used && (!rules || t->rules);
}

static void table_free(struct fl_table *t)
{
	free(t->slots);
	free(t->used);
	free(t->rules);
}

static void fl_free(struct flowlog *fl)
{
	if (!fl)
		return;
	for (int i = 0; i < fl->n_logs; i++) {
		struct fl_log *l = &fl->logs[i];
		free(l->id);
		free(l->resource_id);
		free(l->account);
		free(l->region);
		free(l->covered);
		free(l->win_seen);
		free(l->seen_last);
	}
	free(fl->logs);
	for (int g = 0; g < fl->n_groups; g++) {
		free(fl->groups[g].name);
		free(fl->groups[g].streams);
	}
	free(fl->groups);
	free(fl->taken);
	if (fl->dirfd >= 0)
		close(fl->dirfd);
	for (int w = 0; fl->workers && w < fl->n_workers; w++)
		for (int c = 0; c < FL_CLASSES; c++) {
			table_free(&fl->workers[w].cls[c].tab[0]);
			table_free(&fl->workers[w].cls[c].tab[1]);
		}
	free(fl->workers);
	for (uint32_t i = 0; i < fl->meta_cap; i++)
		meta_free(&fl->meta[i]);
	free(fl->meta);
	free(fl->dir);
	free(fl->decisions_path);
	logfile_close(fl->decisions);
	pthread_mutex_destroy(&fl->mu);
	free(fl);
}

/* The log group's index in fl->groups: every flow log delivering to a
 * group shares its streams (one writer per destination). */
static int group_of(struct flowlog *fl, const struct m_flowlog *f)
{
	char *name = f ? group_name(f) : xstrdup("vpcfw");
	for (int g = 0; g < fl->n_groups; g++)
		if (strcmp(fl->groups[g].name, name) == 0) {
			free(name);
			return g;
		}
	struct fl_group *gs = realloc(fl->groups, (size_t)(fl->n_groups + 1) * sizeof(*gs));
	if (!gs) {
		free(name);
		return -1;
	}
	fl->groups = gs;
	gs[fl->n_groups].name = name;
	gs[fl->n_groups].streams = NULL;
	return fl->n_groups++;
}

static bool add_log(struct flowlog *fl, const struct policy *pol, const struct m_flowlog *f)
{
	struct fl_log *l = &fl->logs[fl->n_logs];
	char err[160];

	memset(l, 0, sizeof(*l));
	if (!fl_format_parse(f ? f->log_format : NULL, &l->fmt, err, sizeof(err))) {
		log_warnx("flow log %s: LogFormat: %s", f->id, err);
		return false;
	}
	l->id = xstrdup(f ? f->id : "fl-vpcfw");
	l->resource_id = xstrdup(f ? f->resource_id : NULL);
	const char *tt = f && f->traffic_type ? f->traffic_type : "ALL";
	l->log_accept = strcmp(tt, "REJECT") != 0;
	l->log_reject = strcmp(tt, "ACCEPT") != 0;
	l->cls = class_of(f && f->max_aggregation_interval ? f->max_aggregation_interval : 600);
	l->dest = dest_of(f ? f->destination_type : NULL);
	l->account = path_account(pol->model, l->resource_id);
	l->region = path_region(pol, l->resource_id);
	l->part_dir = -1;
	if (l->dest == FL_DEST_S3 && f && !fl_s3_folder(f->destination, &l->lay, err, sizeof(err))) {
		log_warnx("flow log %s: LogDestination: %s", l->id, err);
		return false;
	}
	l->lay.hive = f && f->hive;
	l->lay.per_hour = f && f->per_hour;
	if (l->dest == FL_DEST_CWL && (l->group = group_of(fl, f)) < 0)
		return false;
	if (f && f->parquet) {
		logit(LOG_WARNING, "warning: flow log %s: FileFormat parquet: no Parquet writer "
			"is packaged in Debian for vpcfw to use; this flow log is not written", l->id);
		l->dest = FL_DEST_NONE;
	} else if (l->dest == FL_DEST_NONE) {
		logit(LOG_WARNING, "warning: flow log %s: LogDestinationType '%s' is not "
			"written (only s3 and cloud-watch-logs)", l->id, f->destination_type);
	} else {
		if (strcmp(l->region, "unknown") == 0)
			logit(LOG_WARNING, "warning: flow log %s: no region (set Vpcfw.Region "
				"or the subnets' AvailabilityZone); files go under 'unknown'", l->id);
		fl->cls_used[l->cls] = true;
	}
	fl->n_logs++;
	return true;
}

struct flowlog *flowlog_create(const struct policy *pol, const struct flowlog_options *opt)
{
	const char *dir = flow_dir(pol, opt);
	const char *dpath = decision_path(pol);

	if (!pol || !opt || opt->n_workers < 1 || (!dir && !dpath))
		return NULL;
	const struct model *m = pol->model;
	struct flowlog *fl = calloc(1, sizeof(*fl));
	if (!fl)
		return NULL;
	pthread_mutex_init(&fl->mu, NULL);
	fl->threaded = opt->threaded;
	fl->n_workers = opt->n_workers;
	fl->rotate_seconds = opt->rotate_seconds ? opt->rotate_seconds
			   : m->vpcfw.flow_log_rotate_seconds ? m->vpcfw.flow_log_rotate_seconds
			   : DEFAULT_ROTATE_SECONDS;
	fl->rotate_bytes = opt->rotate_bytes ? opt->rotate_bytes
			 : m->vpcfw.flow_log_rotate_bytes ? m->vpcfw.flow_log_rotate_bytes
			 : DEFAULT_ROTATE_BYTES;
	fl->table_size = opt->table_size ? opt->table_size : DEFAULT_TABLE_SIZE;
	fl->dir = xstrdup(dir);
	fl->dirfd = -1;
	atomic_init(&fl->reopen, false);
	if (dir) {
		/* opened once: every file below is created relative to it */
		if (mkdir(dir, SAFE_DIR_MODE) != 0 && errno != EEXIST) {
			log_warn("flow-log directory %s", dir);
			goto fail;
		}
		fl->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fl->dirfd < 0) {
			log_warn("flow-log directory %s", dir);
			goto fail;
		}
	}

	int n = dir ? (m->n_flowlogs ? m->n_flowlogs : 1) : 0;
	if (n > FL_MAX_LOGS)
		n = FL_MAX_LOGS;
	fl->logs = calloc((size_t)(n ? n : 1), sizeof(*fl->logs));
	if (!fl->logs)
		goto fail;
	for (int i = 0; i < n; i++)
		/* a directory but no FlowLogs: every interface, ALL, default format */
		if (!add_log(fl, pol, m->n_flowlogs ? &m->flowlogs[i] : NULL))
			goto fail;
	fl->decision_cls = 0;
	for (int i = 0; i < fl->n_logs; i++)
		if (fl->logs[i].dest != FL_DEST_NONE) {
			fl->decision_cls = fl->logs[i].cls;
			break;
		}
	if (dpath) {
		fl->decisions_path = xstrdup(dpath);
		fl->decisions = logfile_open_path(dpath);
		if (!fl->decisions) {
			log_warnx("decision log %s: %s%s", dpath, strerror(errno),
				errno == ELOOP || errno == EPERM
				? " (a symbolic link or other non-file is there: refused)" : "");
			goto fail;
		}
		fl->cls_used[fl->decision_cls] = true;
	}

	fl->workers = calloc((size_t)fl->n_workers, sizeof(*fl->workers));
	fl->taken = calloc((size_t)fl->n_workers, sizeof(*fl->taken));
	if (!fl->workers || !fl->taken)
		goto fail;
	for (int w = 0; w < fl->n_workers; w++) {
		fl->workers[w].fl = fl;
		for (int c = 0; c < FL_CLASSES; c++) {
			struct fl_wclass *wc = &fl->workers[w].cls[c];
			atomic_init(&wc->handed, NULL);
			atomic_init(&wc->closed_upto, 0);
			atomic_init(&wc->first_start, 0);
			if (!fl->cls_used[c])
				continue;
			bool rules = fl->decisions && c == fl->decision_cls;
			if (!table_init(&wc->tab[0], fl->table_size, rules) ||
			    !table_init(&wc->tab[1], fl->table_size, rules)) {
				log_warnx("flow logs: out of memory for the aggregation tables");
				goto fail;
			}
		}
	}
	load_interfaces(fl, pol);
	atomic_init(&fl->stop, false);
	if (fl->threaded) {
		int e = pthread_create(&fl->thread, NULL, fl_writer_main, fl);
		if (e) {
			log_warnx("flow logs: cannot start the writer: %s", strerror(e));
			goto fail;
		}
		fl->thread_started = true;
	}
	return fl;
fail:
	fl_free(fl);
	return NULL;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void flowlog_set_policy(struct flowlog *fl, const struct policy *pol)
{
	if (!fl || !pol)
		return;
	const struct model *m = pol->model;
	bool same = fl->dir ? (m->n_flowlogs ? m->n_flowlogs : 1) == fl->n_logs : true;
	for (int i = 0; same && fl->dir && i < m->n_flowlogs && i < fl->n_logs; i++) {
		const struct m_flowlog *f = &m->flowlogs[i];
		const struct fl_log *l = &fl->logs[i];
		struct fl_format fmt;
		char err[8];
		const char *tt = f->traffic_type ? f->traffic_type : "ALL";
		same = same_str(f->id, l->id) && same_str(f->resource_id, l->resource_id) &&
		       fl_format_parse(f->log_format, &fmt, err, sizeof(err)) &&
		       memcmp(&fmt, &l->fmt, sizeof(fmt)) == 0 &&
		       l->log_accept == (strcmp(tt, "REJECT") != 0) &&
		       l->log_reject == (strcmp(tt, "ACCEPT") != 0) &&
		       l->cls == class_of(f->max_aggregation_interval ? f->max_aggregation_interval
								 : 600) &&
		       l->dest == dest_of(f->destination_type);
	}
	if (!same)
		logit(LOG_WARNING, "warning: FlowLogs changed: the running flow logs go on as they "
		      "were; restart vpcfwd to apply the change");
	load_interfaces(fl, pol);
}

struct flowlog_worker *flowlog_worker(struct flowlog *fl, int index)
{
	if (!fl || index < 0 || index >= fl->n_workers)
		return NULL;
	return &fl->workers[index];
}

/* ------------------------------------------------------------ aggregation */

static uint64_t align(uint64_t t, uint32_t interval)
{
	return t - t % interval;
}

/* Closes the open window of one class when its time has come: hands the
 * table to the writer, or, while the writer still holds the other one, keeps
 * aggregating (the window grows; nothing is lost until the table fills). */
static void close_window(struct flowlog_worker *w, int c, uint64_t now, bool final)
{
	struct flowlog *fl = w->fl;
	struct fl_wclass *wc = &w->cls[c];
	uint32_t iv = fl_class_interval[c];
	struct fl_table *t = &wc->tab[wc->cur];
	uint64_t next = final ? wc->win_end : align(now, iv);

	if (t->n || t->lost_total) {
		if (atomic_load_explicit(&wc->handed, memory_order_acquire))
			return;
		t->end = next;
		atomic_store_explicit(&wc->handed, t, memory_order_release);
		wc->cur ^= 1;
		t = &wc->tab[wc->cur];
	}
	t->start = next;
	wc->win_end = next + iv;
	atomic_store_explicit(&wc->closed_upto, next, memory_order_release);
	if (!fl->threaded)
		fl_writer_collect(fl, next);
}

static void advance(struct flowlog_worker *w, uint64_t now)
{
	for (int c = 0; c < FL_CLASSES; c++) {
		struct fl_wclass *wc = &w->cls[c];
		if (!w->fl->cls_used[c])
			continue;
		if (!wc->win_end) {
			uint64_t s = align(now, fl_class_interval[c]);
			wc->tab[wc->cur].start = s;
			wc->win_end = s + fl_class_interval[c];
			/* first_start first: the writer reads closed_upto, then it */
			atomic_store_explicit(&wc->first_start, s, memory_order_release);
			atomic_store_explicit(&wc->closed_upto, s, memory_order_release);
		} else if (now >= wc->win_end) {
			close_window(w, c, now, false);
		}
	}
}

void flowlog_tick(struct flowlog_worker *w, uint64_t wall_ns)
{
	if (w)
		advance(w, wall_ns / NS_PER_SEC);
}

static uint32_t entry_hash(uint32_t ct_id, const struct ip_addr *src, const struct ip_addr *dst,
			   uint8_t proto, uint16_t sport, uint16_t dport, uint8_t bits)
{
	uint64_t h = addr_hash(src) * 31 + addr_hash(dst);
	h ^= ((uint64_t)ct_id << 32) | ((uint64_t)sport << 16) | dport;
	h ^= (uint64_t)proto << 40 | (uint64_t)bits << 48;
	h *= 0x9E3779B97F4A7C15ULL;
	return (uint32_t)(h >> 32);
}

static void count_lost(struct fl_table *t, uint32_t ct_id)
{
	t->lost_total++;
	for (uint32_t i = 0; i < t->n_lost; i++)
		if (t->lost[i].ct_id == ct_id) {
			t->lost[i].n++;
			return;
		}
	if (t->n_lost < FL_LOST_SLOTS) {
		t->lost[t->n_lost].ct_id = ct_id;
		t->lost[t->n_lost++].n = 1;
		return;
	}
	t->lost_other++;
}

/* Which flow logs of class c record this packet at interface f. */
static uint64_t logs_for(const struct flowlog *fl, int c, const struct iface *f, bool accept)
{
	uint64_t mask = 0;
	for (int i = 0; i < fl->n_logs; i++) {
		const struct fl_log *l = &fl->logs[i];
		if (l->cls == c && l->dest != FL_DEST_NONE &&
		    (accept ? l->log_accept : l->log_reject) && iface_in(f, l->resource_id))
			mask |= 1ULL << i;
	}
	return mask;
}

static void add(struct flowlog_worker *w, const struct iface *f, const struct packet *p,
		const struct verdict *v, bool egress, uint64_t now_ns, bool decision,
		uint64_t packets, uint64_t bytes)
{
	struct flowlog *fl = w->fl;
	bool l4 = (p->flags & PKT_F_L4) && (p->proto == PROTO_TCP || p->proto == PROTO_UDP);
	uint16_t sport = l4 ? p->sport : 0, dport = l4 ? p->dport : 0;
	uint8_t bits = (uint8_t)((egress ? FLE_EGRESS : 0) | (v->accept ? FLE_ACCEPT : 0));
	uint32_t h = entry_hash(f->ct_id, &p->src, &p->dst, p->proto, sport, dport, bits);
	uint8_t flags = p->proto == PROTO_TCP && (p->flags & PKT_F_L4) ? fl_tcp_flags(p->tcp_flags)
									 : 0;
	uint32_t now = (uint32_t)(now_ns / NS_PER_SEC);

	for (int c = 0; c < FL_CLASSES; c++) {
		if (!fl->cls_used[c])
			continue;
		struct fl_table *t = &w->cls[c].tab[w->cls[c].cur];
		uint32_t i = h & t->mask;
		struct fl_entry *e;

		for (;; i = (i + 1) & t->mask) {
			e = &t->slots[i];
			if (!e->ct_id)
				break;
			if (e->ct_id == f->ct_id && e->bits == bits && e->proto == p->proto &&
			    e->sport == sport && e->dport == dport && addr_eq(&e->src, &p->src) &&
			    addr_eq(&e->dst, &p->dst))
				break;
		}
		if (!e->ct_id) {
			uint64_t logs = logs_for(fl, c, f, v->accept);
			bool dec = decision && c == fl->decision_cls;
			if (!logs && !dec)
				continue;
			if (t->n >= t->max) {
				count_lost(t, f->ct_id);
				continue;
			}
			memset(e, 0, sizeof(*e));
			e->ct_id = f->ct_id;
			e->src = p->src;
			e->dst = p->dst;
			e->sport = sport;
			e->dport = dport;
			e->proto = p->proto;
			e->family = p->family;
			e->bits = bits;
			e->logs = logs;
			e->decision = dec;
			e->first_s = now;
			e->same_vpc = egress && f->subnet && f->subnet->vpc && v->dst_subnet &&
				      v->dst_subnet->vpc == f->subnet->vpc;
			e->stage = (uint8_t)v->stage;
			e->reason = (uint8_t)v->reason;
			if (dec && t->rules)
				verdict_rule_format(v, t->rules[i], sizeof(t->rules[i]));
			t->used[t->n++] = i;
		}
		e->packets += packets;
		e->bytes += bytes;
		e->tcp_flags |= flags;
		if (now > e->last_s)
			e->last_s = now;
	}
}

void flowlog_observe(struct flowlog_worker *w, const struct packet *p, const struct verdict *v,
		     uint64_t wall_ns)
{
	if (p)
		flowlog_observe_n(w, p, v, 1, p->ip_len, wall_ns);
}

void flowlog_observe_n(struct flowlog_worker *w, const struct packet *p, const struct verdict *v,
		       uint64_t packets, uint64_t bytes, uint64_t wall_ns)
{
	if (!w || !p || !v)
		return;
	advance(w, wall_ns / NS_PER_SEC); /* every packet moves the clock */
	if (v->exempt)
		return; /* SPEC §5: exempt traffic is never logged */
	const struct iface *a = v->src_iface, *b = v->dst_iface;
	if (!a && !b)
		return;
	/* SPEC §7: at the source interface always (egress); at the
	 * destination (ingress) when the packet got to its side. */
	bool at_b = b && (v->accept || v->stage == STAGE_NACL_IN || v->stage == STAGE_SG_INGRESS ||
			  v->stage == STAGE_EXEMPT /* a forged source, refused */ ||
			  (v->stage == STAGE_CONNTRACK && v->stage_iface == b));
	bool decision = w->fl->decisions && !v->accept;
	if (a && a->subnet)
		add(w, a, p, v, true, wall_ns, decision, packets, bytes);
	if (at_b && b->subnet)
		add(w, b, p, v, false, wall_ns, decision && !(a && a->subnet), packets, bytes);
}

void flowlog_get_stats(const struct flowlog *fl, struct flowlog_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!fl)
		return;
	out->records_written = counter_get(&fl->stats.records_written);
	out->records_lost = counter_get(&fl->stats.records_lost);
	out->files_written = counter_get(&fl->stats.files_written);
	out->skipdata_records = counter_get(&fl->stats.skipdata_records);
	out->nodata_records = counter_get(&fl->stats.nodata_records);
	out->decisions_written = counter_get(&fl->stats.decisions_written);
	out->write_errors = counter_get(&fl->stats.write_errors);
}

void flowlog_finish(struct flowlog *fl)
{
	if (!fl || fl->finished)
		return;
	fl->finished = true;
	/* The workers have stopped: close every open window (the writer
	 * thread, if any, takes the last tables), then stop the writer. */
	for (int w = 0; w < fl->n_workers; w++)
		for (int c = 0; c < FL_CLASSES; c++) {
			struct fl_wclass *wc = &fl->workers[w].cls[c];
			if (!fl->cls_used[c] || !wc->win_end)
				continue;
			while (atomic_load_explicit(&wc->handed, memory_order_acquire)) {
				if (!fl->threaded) {
					fl_writer_collect(fl, wc->win_end);
					continue;
				}
				struct timespec ts = { 0, 1000000 };
				nanosleep(&ts, NULL);
			}
			if (wc->saved) {
				/* in the state file: what is left (interfaces it
				 * could not name) is written, and closed_upto stays,
				 * so no NODATA for a window the next start goes on */
				struct fl_table *t = &wc->tab[wc->cur];
				if (t->n || t->lost_total) {
					t->end = wc->win_end;
					atomic_store_explicit(&wc->handed, t, memory_order_release);
					wc->cur ^= 1;
					if (!fl->threaded)
						fl_writer_collect(fl, wc->win_end);
				}
				continue;
			}
			close_window(&fl->workers[w], c, wc->win_end, true);
		}
	if (fl->thread_started) {
		atomic_store(&fl->stop, true);
		pthread_join(fl->thread, NULL);
	} else {
		uint64_t end = 0;
		for (int c = 0; c < FL_CLASSES; c++)
			if (fl->done_upto[c] > end)
				end = fl->done_upto[c];
		fl_writer_collect(fl, end);
	}
	fl_writer_close_all(fl);
	if (fl->decisions && !logfile_close(fl->decisions)) {
		pthread_mutex_lock(&fl->mu);
		counter_inc(&fl->stats.write_errors);
		pthread_mutex_unlock(&fl->mu);
	}
	fl->decisions = NULL;
}

/* ------------------------------------------------------------ across a restart */

_Static_assert(FLOWLOG_RULE_LEN == FL_RULE_LEN, "the saved rule is the table's");
_Static_assert(FLOWLOG_LOST_SLOTS == FL_LOST_SLOTS, "the saved lost slots are the table's");
_Static_assert(FL_CLASSES == 2, "the state file knows two intervals");

uint32_t flowlog_interval(unsigned cls)
{
	return cls < FL_CLASSES ? fl_class_interval[cls] : 0;
}

static void entry_save(const struct fl_table *t, uint32_t slot, struct flowlog_saved_entry *s)
{
	const struct fl_entry *e = &t->slots[slot];

	memset(s, 0, sizeof(*s));
	s->src = e->src;
	s->dst = e->dst;
	s->packets = e->packets;
	s->bytes = e->bytes;
	s->iface = e->ct_id;
	s->first_s = e->first_s;
	s->last_s = e->last_s;
	s->sport = e->sport;
	s->dport = e->dport;
	s->proto = e->proto;
	s->family = e->family;
	s->tcp_flags = e->tcp_flags;
	s->bits = (uint8_t)((e->bits & FLE_EGRESS ? FLS_EGRESS : 0) |
			    (e->bits & FLE_ACCEPT ? FLS_ACCEPT : 0) |
			    (e->decision ? FLS_DECISION : 0) | (e->same_vpc ? FLS_SAME_VPC : 0));
	s->stage = e->stage;
	s->reason = e->reason;
	if (e->decision && t->rules) {
		memcpy(s->rule, t->rules[slot], FL_RULE_LEN);
		s->rule[FL_RULE_LEN - 1] = '\0';
	}
}

int flowlog_foreach_saved(struct flowlog_worker *w,
			  int (*fn)(void *arg, const struct flowlog_saved_window *win,
				    const struct flowlog_saved_entry *e),
			  void *arg)
{
	if (!w)
		return 0;
	for (int c = 0; c < FL_CLASSES; c++) {
		const struct fl_wclass *wc = &w->cls[c];
		if (!w->fl->cls_used[c] || !wc->win_end)
			continue;
		/* the open table: the writer holds only the other one */
		const struct fl_table *t = &wc->tab[wc->cur];
		struct flowlog_saved_window win;
		memset(&win, 0, sizeof(win));
		win.cls = (uint8_t)c;
		win.start = t->start;
		win.n_lost = t->n_lost;
		for (uint32_t k = 0; k < t->n_lost; k++) {
			win.lost[k].iface = t->lost[k].ct_id;
			win.lost[k].n = t->lost[k].n;
		}
		win.lost_other = t->lost_other;
		int r = fn(arg, &win, NULL);
		if (r)
			return r;
		for (uint32_t i = 0; i < t->n; i++) {
			struct flowlog_saved_entry s;
			entry_save(t, t->used[i], &s);
			if ((r = fn(arg, &win, &s)))
				return r;
		}
	}
	return 0;
}

static void count_lost_n(struct fl_table *t, uint32_t ct_id, uint64_t n)
{
	t->lost_total += n;
	for (uint32_t i = 0; i < t->n_lost; i++)
		if (t->lost[i].ct_id == ct_id) {
			t->lost[i].n = n > UINT32_MAX - t->lost[i].n ? UINT32_MAX : t->lost[i].n + (uint32_t)n;
			return;
		}
	if (t->n_lost < FL_LOST_SLOTS && n <= UINT32_MAX) {
		t->lost[t->n_lost].ct_id = ct_id;
		t->lost[t->n_lost++].n = (uint32_t)n;
		return;
	}
	t->lost_other += n;
}

/* Which flow logs of class c record an entry of interface ct_id now;
 * under fl->mu (covered: the writer's, by load_interfaces). */
static uint64_t logs_for_saved(const struct flowlog *fl, int c, uint32_t ct_id, bool accept)
{
	uint64_t mask = 0;
	if (ct_id == 0 || ct_id >= fl->meta_cap || !fl->meta[ct_id].present)
		return 0;
	for (int i = 0; i < fl->n_logs; i++) {
		const struct fl_log *l = &fl->logs[i];
		if (l->cls == c && l->dest != FL_DEST_NONE &&
		    (accept ? l->log_accept : l->log_reject) && l->covered[ct_id])
			mask |= 1ULL << i;
	}
	return mask;
}

static void restore_entry(struct flowlog *fl, int c, struct fl_table *t,
			  const struct flowlog_saved_entry *x, struct flowlog_restore_stats *st)
{
	bool accept = x->bits & FLS_ACCEPT;
	uint64_t logs = logs_for_saved(fl, c, x->iface, accept);
	bool dec = (x->bits & FLS_DECISION) && fl->decisions && c == fl->decision_cls &&
		   x->iface && x->iface < fl->meta_cap && fl->meta[x->iface].present;
	uint8_t bits = (uint8_t)((x->bits & FLS_EGRESS ? FLE_EGRESS : 0) | (accept ? FLE_ACCEPT : 0));

	if (!logs && !dec) {
		st->not_logged++;
		return;
	}
	uint32_t i = entry_hash(x->iface, &x->src, &x->dst, x->proto, x->sport, x->dport, bits) &
		     t->mask;
	struct fl_entry *e;
	for (;; i = (i + 1) & t->mask) {
		e = &t->slots[i];
		if (!e->ct_id)
			break;
		if (e->ct_id == x->iface && e->bits == bits && e->proto == x->proto &&
		    e->sport == x->sport && e->dport == x->dport && addr_eq(&e->src, &x->src) &&
		    addr_eq(&e->dst, &x->dst)) {
			st->duplicate++;
			return;
		}
	}
	if (t->n >= t->max) {
		st->table_full++;
		count_lost_n(t, x->iface, x->packets);
		return;
	}
	memset(e, 0, sizeof(*e));
	e->ct_id = x->iface;
	e->src = x->src;
	e->dst = x->dst;
	e->sport = x->sport;
	e->dport = x->dport;
	e->proto = x->proto;
	e->family = x->family;
	e->bits = bits;
	e->logs = logs;
	e->decision = dec;
	e->first_s = x->first_s;
	e->last_s = x->last_s;
	e->same_vpc = x->bits & FLS_SAME_VPC;
	e->stage = x->stage;
	e->reason = x->reason;
	e->packets = x->packets;
	e->bytes = x->bytes;
	e->tcp_flags = x->tcp_flags;
	if (dec && t->rules) {
		memcpy(t->rules[i], x->rule, FL_RULE_LEN);
		t->rules[i][FL_RULE_LEN - 1] = '\0';
	}
	t->used[t->n++] = i;
	st->entries++;
}

void flowlog_restore(struct flowlog_worker *w, const struct flowlog_saved_window *win,
		     const struct flowlog_saved_entry *e, size_t n, uint64_t now_s,
		     struct flowlog_restore_stats *st)
{
	if (!w || !win)
		return;
	struct flowlog *fl = w->fl;
	int c = win->cls;
	if (c >= FL_CLASSES || !fl->cls_used[c] || win->start % fl_class_interval[c]) {
		st->not_logged += n;    /* no flow log of that interval now */
		return;
	}
	struct fl_wclass *wc = &w->cls[c];
	uint32_t iv = fl_class_interval[c];
	if (wc->win_end) {
		st->duplicate += n;     /* the worker's window of that class is set */
		return;
	}
	struct fl_table *t = &wc->tab[wc->cur];
	pthread_mutex_lock(&fl->mu);    /* meta and covered */
	for (size_t i = 0; i < n; i++)
		restore_entry(fl, c, t, &e[i], st);
	for (uint32_t k = 0; k < win->n_lost && k < FL_LOST_SLOTS; k++)
		if (win->lost[k].n && (logs_for_saved(fl, c, win->lost[k].iface, true) ||
				       logs_for_saved(fl, c, win->lost[k].iface, false)))
			count_lost_n(t, win->lost[k].iface, win->lost[k].n);
	if (win->lost_other) {
		t->lost_other += win->lost_other;
		t->lost_total += win->lost_other;
	}
	pthread_mutex_unlock(&fl->mu);
	t->start = win->start;
	uint64_t s = win->start;
	if (now_s >= win->start + iv) {
		/* ended meanwhile: its records, with its own start and end */
		if (t->n || t->lost_total) {
			t->end = win->start + iv;
			atomic_store_explicit(&wc->handed, t, memory_order_release);
			wc->cur ^= 1;
		}
		s = align(now_s, iv);
		wc->tab[wc->cur].start = s;
		st->windows_ended++;
	} else {
		st->windows_open++;
	}
	wc->win_end = s + iv;
	atomic_store_explicit(&wc->first_start, s, memory_order_release);
	atomic_store_explicit(&wc->closed_upto, s, memory_order_release);
	if (!fl->threaded && atomic_load_explicit(&wc->handed, memory_order_acquire))
		fl_writer_collect(fl, s);
}

void flowlog_forget_saved(struct flowlog *fl, bool (*saved)(void *arg, uint32_t iface), void *arg)
{
	if (!fl)
		return;
	for (int w = 0; w < fl->n_workers; w++)
		for (int c = 0; c < FL_CLASSES; c++) {
			struct fl_wclass *wc = &fl->workers[w].cls[c];
			if (!fl->cls_used[c] || !wc->win_end)
				continue;
			struct fl_table *t = &wc->tab[wc->cur];
			uint32_t kept = 0;
			/* the workers have stopped: no lookup follows, so a
			 * slot freed here breaks no probe sequence that matters */
			for (uint32_t i = 0; i < t->n; i++) {
				struct fl_entry *e = &t->slots[t->used[i]];
				if (saved(arg, e->ct_id))
					e->ct_id = 0;
				else
					t->used[kept++] = t->used[i];
			}
			t->n = kept;
			uint32_t nl = 0;
			t->lost_total = 0;
			for (uint32_t k = 0; k < t->n_lost; k++)
				if (!saved(arg, t->lost[k].ct_id)) {
					t->lost[nl] = t->lost[k];
					t->lost_total += t->lost[nl++].n;
				}
			t->n_lost = nl;
			t->lost_other = 0;
			wc->saved = true;
		}
}

uint64_t flowlog_windows_written(const struct flowlog *fl)
{
	return fl ? counter_get(&fl->stats.tables_taken) : 0;
}

void flowlog_reopen(struct flowlog *fl)
{
	if (!fl)
		return;
	atomic_store(&fl->reopen, true);
	if (!fl->thread_started && !fl->finished)
		fl_writer_collect(fl, fl->now);
}

void flowlog_destroy(struct flowlog *fl)
{
	if (!fl)
		return;
	flowlog_finish(fl);
	fl_free(fl);
}
