/* The control socket: framing, access, and the verbs of vpcfwctl. */
#include "vpcfw/ctl.h"
#include "vpcfw/safefile.h"
#include "vpcfw/load.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "vpcfw/config.h"
#include "vpcfw/explain.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/mirror.h"

struct client {
	int fd;
	struct ctl_peer peer;
	char *in;
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	bool closing;           /* close once the output is written */
};

struct ctl {
	const struct ctl_daemon *d;
	int lfd[2];             /* full, read-only */
	char *path[2];
	char *made_dir[2];      /* the directory of path[i] if ctl_open made it */
	gid_t admin_gid, reader_gid;
	bool have_admin, have_reader;
	struct client clients[CTL_MAX_CLIENTS];
	uint64_t refused;
	void (*log)(int prio, const char *msg);
	struct ctl_shadow *shadow;      /* installed in the daemon, owned here */
};

__attribute__((format(printf, 3, 4)))
static void ctl_log_msg(const struct ctl *c, int prio, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!c->log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	c->log(prio, buf);
}

/* ------------------------------------------------------------ sockets */

static int listen_on(const char *path, char **made_dir, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path '%s' is too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == 0)
			*made_dir = strdup(dir);
		else if (errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* A socket file left by a daemon that died; a live one answers. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		snprintf(err, errlen, "%s: another vpcfwd answers there", path);
		close(fd);
		return -1;
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	unlink(path);
	/* access is decided per request from the peer's credentials */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
	    listen(fd, 16) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static bool group_gid(const char *name, gid_t *gid)
{
	struct group *g;

	if (!name || !*name)
		return false;
	g = getgrnam(name);
	if (!g)
		return false;
	*gid = g->gr_gid;
	return true;
}

void ctl_set_groups(struct ctl *c, const char *admin_group, const char *reader_group)
{
	c->have_admin = group_gid(admin_group, &c->admin_gid);
	c->have_reader = group_gid(reader_group, &c->reader_gid);
	if (admin_group && !c->have_admin)
		ctl_log_msg(c, LOG_WARNING, "Access.AdminGroup: no group %s", admin_group);
	if (reader_group && !c->have_reader)
		ctl_log_msg(c, LOG_WARNING, "Access.ReaderGroup: no group %s", reader_group);
}

struct ctl *ctl_open(const struct ctl_daemon *d, const char *path, const char *ro_path,
		     const char *admin_group, const char *reader_group,
		     void (*log)(int prio, const char *msg), char *err, size_t errlen)
{
	struct ctl *c = calloc(1, sizeof(*c));

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->d = d;
	c->log = log;
	c->lfd[0] = c->lfd[1] = -1;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		c->clients[i].fd = -1;
	ctl_set_groups(c, admin_group, reader_group);
	const char *paths[2] = { path, ro_path };
	for (int i = 0; i < 2; i++) {
		if (!paths[i])
			continue;
		c->lfd[i] = listen_on(paths[i], &c->made_dir[i], err, errlen);
		c->path[i] = c->lfd[i] >= 0 ? strdup(paths[i]) : NULL;
		if (c->lfd[i] < 0 || !c->path[i]) {
			ctl_close(c);
			return NULL;
		}
	}
	return c;
}

static void drop_client(struct client *k)
{
	close(k->fd);
	free(k->in);
	free(k->out);
	memset(k, 0, sizeof(*k));
	k->fd = -1;
}

void ctl_close(struct ctl *c)
{
	if (!c)
		return;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			drop_client(&c->clients[i]);
	if (c->shadow && c->d->set_shadow)
		c->d->set_shadow(c->d->ctx, NULL);
	ctl_shadow_free(c->shadow);
	for (int i = 0; i < 2; i++) {
		if (c->lfd[i] >= 0)
			close(c->lfd[i]);
		if (c->path[i])
			unlink(c->path[i]);
		free(c->path[i]);
		free(c->made_dir[i]);
	}
	free(c);
}

void ctl_chown(struct ctl *c, uid_t uid, gid_t gid)
{
	for (int i = 0; c && i < 2; i++) {
		if (c->made_dir[i] && chown(c->made_dir[i], uid, gid) < 0)
			ctl_log_msg(c, LOG_WARNING, "control: chown %s: %s", c->made_dir[i],
				    strerror(errno));
		if (c->path[i] && chown(c->path[i], uid, gid) < 0)
			ctl_log_msg(c, LOG_WARNING, "control: chown %s: %s", c->path[i],
				    strerror(errno));
	}
}

uint64_t ctl_refused(const struct ctl *c)
{
	return c ? c->refused : 0;
}

static void identify(struct ctl *c, struct client *k, bool ro)
{
	struct ucred cr = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t len = sizeof(cr);
	struct ctl_peer *p = &k->peer;

	p->read_only_socket = ro;
	if (getsockopt(k->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		cr.uid = (uid_t)-1;
	p->pid = cr.pid;
	p->uid = cr.uid;
	p->gid = cr.gid;
	p->admin = !ro && cr.uid == 0;
	p->reader = ro || p->admin;
	if (!ro && cr.uid != (uid_t)-1) {
		/* the peer process's groups at connect time, not the group file's */
		gid_t groups[256];
		socklen_t gl = sizeof(groups);
		int n = 0;
		if (getsockopt(k->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0)
			n = (int)(gl / sizeof(gid_t));
		for (int i = -1; i < n; i++) {
			gid_t g = i < 0 ? cr.gid : groups[i];
			if (c->have_admin && g == c->admin_gid)
				p->admin = p->reader = true;
			if (c->have_reader && g == c->reader_gid)
				p->reader = true;
		}
	}
	struct passwd *pw = cr.uid != (uid_t)-1 ? getpwuid(cr.uid) : NULL;
	snprintf(p->name, sizeof(p->name), "uid %ld (%s) pid %ld", (long)cr.uid,
		 pw ? pw->pw_name : "?", (long)cr.pid);
}

static void accept_clients(struct ctl *c, int which)
{
	for (;;) {
		int fd = accept4(c->lfd[which], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct client *k = NULL;
		for (int i = 0; i < CTL_MAX_CLIENTS && !k; i++)
			if (c->clients[i].fd < 0)
				k = &c->clients[i];
		if (!k) {
			c->refused++;
			ctl_log_msg(c, LOG_WARNING, "control: too many clients, one refused");
			close(fd);
			continue;
		}
		k->fd = fd;
		identify(c, k, which == 1);
		if (!k->peer.reader) {
			c->refused++;
			ctl_log_msg(c, LOG_NOTICE, "control: %s refused: not root nor in the admin or reader "
			     "group", k->peer.name);
			static const char msg[] = "{\"ok\": false, \"error\": \"permission denied: "
				"not root, nor in Access.AdminGroup or Access.ReaderGroup\"}\n";
			k->out = strdup(msg);
			k->out_len = k->out ? strlen(msg) : 0;
			k->closing = true;
		}
	}
}

static void queue_reply(struct client *k, json_t *reply)
{
	char *s = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (!s) {
		k->closing = true;
		return;
	}
	size_t n = strlen(s);
	char *o = realloc(k->out, k->out_len + n + 1);
	if (!o) {
		free(s);
		k->closing = true;
		return;
	}
	memcpy(o + k->out_len, s, n);
	o[k->out_len + n] = '\n';
	k->out = o;
	k->out_len += n + 1;
	free(s);
}

static json_t *fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", buf);
}

static void read_client(struct ctl *c, struct client *k)
{
	char buf[4096];

	for (;;) {
		ssize_t n = read(k->fd, buf, sizeof(buf));
		if (n == 0) {
			/* the peer may have only shut down its writing side: answer
			 * what came, then close */
			k->closing = true;
			break;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			k->closing = true;
			k->out_len = k->out_off; /* nobody reads it */
			return;
		}
		if (n < 0)
			break;
		if (k->in_len + (size_t)n > CTL_MAX_REQUEST) {
			queue_reply(k, fail("request longer than %d bytes", CTL_MAX_REQUEST));
			k->closing = true;
			return;
		}
		char *in = realloc(k->in, k->in_len + (size_t)n + 1);
		if (!in) {
			k->closing = true;
			return;
		}
		memcpy(in + k->in_len, buf, (size_t)n);
		k->in = in;
		k->in_len += (size_t)n;
	}
	/* one request per line */
	char *nl;
	while (k->in && (nl = memchr(k->in, '\n', k->in_len)) != NULL) {
		size_t len = (size_t)(nl - k->in);
		json_error_t e;
		json_t *req = json_loadb(k->in, len, 0, &e);
		json_t *reply = req ? ctl_handle(c, &k->peer, req) : fail("bad JSON: %s", e.text);
		json_decref(req);
		queue_reply(k, reply);
		memmove(k->in, nl + 1, k->in_len - len - 1);
		k->in_len -= len + 1;
	}
}

static void write_client(struct client *k)
{
	while (k->out_off < k->out_len) {
		ssize_t n = write(k->fd, k->out + k->out_off, k->out_len - k->out_off);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			k->closing = true;
			k->out_off = k->out_len;
			return;
		}
		k->out_off += (size_t)n;
	}
	free(k->out);
	k->out = NULL;
	k->out_len = k->out_off = 0;
}

void ctl_serve(struct ctl *c, int timeout_ms)
{
	struct pollfd pfd[2 + CTL_MAX_CLIENTS];
	int who[2 + CTL_MAX_CLIENTS];
	nfds_t n = 0;

	for (int i = 0; i < 2; i++)
		if (c->lfd[i] >= 0) {
			pfd[n] = (struct pollfd){ .fd = c->lfd[i], .events = POLLIN };
			who[n++] = -1 - i;
		}
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		struct client *k = &c->clients[i];
		if (k->fd < 0)
			continue;
		/* a client that does not read its answers is not read from */
		short ev = k->out_len > k->out_off ? POLLOUT : (k->closing ? 0 : POLLIN);
		pfd[n] = (struct pollfd){ .fd = k->fd, .events = ev };
		who[n++] = i;
	}
	if (poll(pfd, n, timeout_ms) <= 0)
		return;
	for (nfds_t i = 0; i < n; i++) {
		if (!pfd[i].revents)
			continue;
		if (who[i] < 0) {
			accept_clients(c, -1 - who[i]);
			continue;
		}
		struct client *k = &c->clients[who[i]];
		if (pfd[i].revents & POLLIN)
			read_client(c, k);
		if (pfd[i].revents & (POLLERR | POLLHUP) && !(pfd[i].revents & POLLIN))
			k->closing = true, k->out_off = k->out_len;
	}
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		struct client *k = &c->clients[i];
		if (k->fd < 0)
			continue;
		if (k->out_len > k->out_off)
			write_client(k);
		if (k->closing && k->out_len <= k->out_off)
			drop_client(k);
	}
}

/* ------------------------------------------------------------ loading */

struct policy *ctl_load_policy(const char *const *paths, int n, bool strict, json_t **msgs)
{
	struct diag d;

	*msgs = json_array();
	diag_init(&d);
	d.strict = strict;
	/* what the daemon loads, so that a valid answer means a reload takes it */
	struct policy *pol = policy_load(paths, n, &d);
	for (size_t i = 0; i < d.n; i++)
		json_array_append_new(*msgs, json_pack("{s:s, s:s}", "level",
						       d.msgs[i].error ? "error" : "warning",
						       "text", d.msgs[i].text));
	diag_free(&d);
	return pol;
}

/* ------------------------------------------------------------ explain */

static const char *str_of(const json_t *req, const char *key)
{
	return json_string_value(json_object_get(req, key));
}

static json_t *iface_json(const struct iface *f)
{
	return f ? json_string(f->id) : json_null();
}

json_t *ctl_explain(const struct policy *pol, const json_t *req)
{
	const char *proto = str_of(req, "proto"), *src = str_of(req, "src"), *dst = str_of(req, "dst");
	const char *in = str_of(req, "in"), *out = str_of(req, "out");
	json_int_t sport = json_integer_value(json_object_get(req, "sport"));
	json_int_t dport = json_integer_value(json_object_get(req, "dport"));
	const struct iface *fi = NULL, *fo = NULL;
	struct packet p;
	struct explain ex;
	char err[200];

	if (!proto || !src || !dst)
		return fail("explain needs proto, src and dst");
	if (sport < 0 || dport < 0 || sport > 65535 || dport > 65535)
		return fail("a port is 0-65535");
	if (!explain_packet(proto, src, (unsigned)sport, dst, (unsigned)dport, &p, err, sizeof(err)))
		return fail("%s", err);
	if (in && !(fi = explain_iface(pol, in)))
		return fail("no interface or bound device '%s'", in);
	if (out && !(fo = explain_iface(pol, out)))
		return fail("no interface or bound device '%s'", out);
	if (explain_run(pol, &p, fi, fo, &ex) < 0)
		return fail("out of memory");

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

/* ------------------------------------------------------------ counters */

static uint64_t sum_hits(const struct ctl_daemon *d, uint32_t slot)
{
	uint64_t s = 0;

	for (int i = 0; i < d->n_workers; i++) {
		const uint64_t *h = d->hits(d->ctx, i);
		if (h)
			s += h[slot];
	}
	return s;
}

/* Calls fn for each counted item; IpPermissions that became several
 * compiled rules (several peers, prefix lists) are summed into one. */
struct counter_sink {
	void (*nacl)(void *arg, const struct nacl *n, const char *dir, const char *rule,
		     uint64_t packets);
	void (*sg)(void *arg, const struct iface *f, const struct sg_rule *r, uint64_t packets);
	void (*iface)(void *arg, const struct iface *f, const uint64_t v[IFACE_HITS]);
	void *arg;
};

static void walk_counters(const struct ctl_daemon *d, const struct policy *pol,
			  const struct counter_sink *s)
{
	static const char *const dirs[2] = { "inbound", "outbound" };
	char num[16];

	for (int i = 0; i < pol->n_nacls; i++) {
		const struct nacl *n = &pol->nacls[i];
		for (int dir = 0; dir < 2; dir++) {
			uint64_t star = 0;
			for (int f = 0; f < 2; f++) {
				const struct nacl_list *l = &n->lists[dir][f];
				for (int k = 0; k < l->n; k++) {
					snprintf(num, sizeof(num), "%u", l->rules[k].number);
					s->nacl(s->arg, n, dirs[dir], num, sum_hits(d, l->rules[k].hit));
				}
				star += sum_hits(d, l->star_hit);
			}
			s->nacl(s->arg, n, dirs[dir], "*", star);
		}
	}
	for (int i = 0; i < pol->n_ifaces; i++) {
		const struct iface *f = &pol->ifaces[i];
		const struct sg_set *sets[2] = { &f->in, &f->out };
		for (int k = 0; k < 2; k++) {
			const struct sg_set *set = sets[k];
			for (int r = 0; r < set->n; r++) {
				bool first = true;
				for (int q = 0; q < r && first; q++)
					if (set->rules[q].m == set->rules[r].m)
						first = false;
				if (!first)
					continue;
				uint64_t sum = 0;
				for (int q = r; q < set->n; q++)
					if (set->rules[q].m == set->rules[r].m)
						sum += sum_hits(d, set->rules[q].hit);
				s->sg(s->arg, f, &set->rules[r], sum);
			}
		}
		uint64_t v[IFACE_HITS];
		for (int k = 0; k < IFACE_HITS; k++)
			v[k] = sum_hits(d, f->hit + (uint32_t)k);
		s->iface(s->arg, f, v);
	}
}

struct stats_json {
	json_t *nacl, *sg, *ifaces;
};

static void js_nacl(void *arg, const struct nacl *n, const char *dir, const char *rule,
		    uint64_t packets)
{
	struct stats_json *j = arg;
	json_array_append_new(j->nacl, json_pack("{s:s, s:s, s:s, s:I}", "acl", n->id,
						 "direction", dir, "rule", rule,
						 "packets", (json_int_t)packets));
}

static void js_sg(void *arg, const struct iface *f, const struct sg_rule *r, uint64_t packets)
{
	struct stats_json *j = arg;
	json_array_append_new(j->sg, json_pack("{s:s, s:s, s:s, s:i, s:I}", "eni", f->id,
					       "sg", r->group->id,
					       "direction", r->egress ? "egress" : "ingress",
					       "rule", r->m->index, "packets", (json_int_t)packets));
}

static void js_iface(void *arg, const struct iface *f, const uint64_t v[IFACE_HITS])
{
	struct stats_json *j = arg;
	json_array_append_new(j->ifaces, json_pack("{s:s, s:I, s:I, s:I, s:I}", "eni", f->id,
		"in_accepted", (json_int_t)v[IFACE_HIT_IN_ACCEPT],
		"in_rejected", (json_int_t)v[IFACE_HIT_IN_REJECT],
		"out_accepted", (json_int_t)v[IFACE_HIT_OUT_ACCEPT],
		"out_rejected", (json_int_t)v[IFACE_HIT_OUT_REJECT]));
}

json_t *ctl_stats(const struct ctl_daemon *d)
{
	uint64_t gen;
	const struct policy *pol = d->policy(d->ctx, &gen);
	struct stats_json j = { json_array(), json_array(), json_array() };
	struct counter_sink s = { js_nacl, js_sg, js_iface, &j };
	uint64_t reasons[STAGE_COUNT][REASON_COUNT] = { { 0 } };
	json_t *queues = json_array(), *rs = json_array();

	walk_counters(d, pol, &s);
	for (int i = 0; i < d->n_workers; i++) {
		struct ctl_worker_stats w;
		d->worker(d->ctx, i, &w);
		for (int st = 0; st < STAGE_COUNT; st++)
			for (int r = 0; r < REASON_COUNT; r++)
				reasons[st][r] += w.pl.packets[st][r];
		json_array_append_new(queues, json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I}",
			"queue", w.queue, "packets", (json_int_t)w.packets,
			"accepted", (json_int_t)w.pl.accepted, "rejected", (json_int_t)w.pl.rejected,
			"batches", (json_int_t)w.batches, "enobufs", (json_int_t)w.enobufs,
			"audit_would_refuse", (json_int_t)w.audit_would_refuse));
	}
	for (int st = 0; st < STAGE_COUNT; st++)
		for (int r = 0; r < REASON_COUNT; r++)
			if (reasons[st][r])
				json_array_append_new(rs, json_pack("{s:s, s:s, s:I}",
					"stage", stage_name((enum stage)st),
					"reason", reason_name((enum reason)r),
					"packets", (json_int_t)reasons[st][r]));
	return json_pack("{s:b, s:I, s:o, s:o, s:o, s:o, s:o}", "ok", 1,
			 "generation", (json_int_t)gen, "nacl_rules", j.nacl, "sg_rules", j.sg,
			 "interfaces", j.ifaces, "reasons", rs, "queues", queues);
}

/* ------------------------------------------------------------ Prometheus text */

struct text {
	char *s;
	size_t len, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3)))
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if ((size_t)n < t->cap - t->len)
			break;
		size_t cap = (t->cap + (size_t)n) * 2;
		char *s = realloc(t->s, cap);
		if (!s) {
			t->oom = true;
			return;
		}
		t->s = s;
		t->cap = cap;
	}
	t->len += (size_t)n;
}

/* Label values: backslash, quote and newline escaped (text format 0.0.4). */
static const char *esc(const char *in, char *buf, size_t len)
{
	size_t o = 0;

	for (; *in && o + 3 < len; in++) {
		if (*in == '\\' || *in == '"') {
			buf[o++] = '\\';
			buf[o++] = *in;
		} else if (*in == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *in;
		}
	}
	buf[o] = '\0';
	return buf;
}

static void head(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void pm_nacl(void *arg, const struct nacl *n, const char *dir, const char *rule,
		    uint64_t packets)
{
	char a[128];
	put(arg, "vpcfw_nacl_rule_packets_total{acl=\"%s\",direction=\"%s\",rule=\"%s\"} %" PRIu64
	    "\n", esc(n->id, a, sizeof(a)), dir, rule, packets);
}

static void pm_sg(void *arg, const struct iface *f, const struct sg_rule *r, uint64_t packets)
{
	char a[128], b[128];
	put(arg, "vpcfw_sg_rule_packets_total{eni=\"%s\",sg=\"%s\",direction=\"%s\",rule=\"%d\"} %"
	    PRIu64 "\n", esc(f->id, a, sizeof(a)), esc(r->group->id, b, sizeof(b)),
	    r->egress ? "egress" : "ingress", r->m->index, packets);
}

static void pm_iface(void *arg, const struct iface *f, const uint64_t v[IFACE_HITS])
{
	static const char *const names[IFACE_HITS][2] = {
		[IFACE_HIT_OUT_ACCEPT] = { "out", "accept" }, [IFACE_HIT_OUT_REJECT] = { "out", "reject" },
		[IFACE_HIT_IN_ACCEPT] = { "in", "accept" }, [IFACE_HIT_IN_REJECT] = { "in", "reject" },
	};
	char a[128];
	for (int k = 0; k < IFACE_HITS; k++)
		put(arg, "vpcfw_interface_packets_total{eni=\"%s\",direction=\"%s\",verdict=\"%s\"} %"
		    PRIu64 "\n", esc(f->id, a, sizeof(a)), names[k][0], names[k][1], v[k]);
}

static void noop_nacl(void *arg, const struct nacl *n, const char *dir, const char *rule,
		      uint64_t packets)
{
	(void)arg; (void)n; (void)dir; (void)rule; (void)packets;
}

static void noop_sg(void *arg, const struct iface *f, const struct sg_rule *r, uint64_t packets)
{
	(void)arg; (void)f; (void)r; (void)packets;
}

static void noop_iface(void *arg, const struct iface *f, const uint64_t v[IFACE_HITS])
{
	(void)arg; (void)f; (void)v;
}

char *ctl_metrics(const struct ctl_daemon *d, uint64_t refused)
{
	struct text t = { 0 };
	uint64_t gen;
	const struct policy *pol = d->policy(d->ctx, &gen);
	struct ctl_worker_stats *w = calloc((size_t)d->n_workers + 1, sizeof(*w));
	uint64_t reasons[STAGE_COUNT][REASON_COUNT] = { { 0 } };
	uint64_t used = 0, max = 0, exceeded = 0;

	if (!w)
		return NULL;
	for (int i = 0; i < d->n_workers; i++) {
		d->worker(d->ctx, i, &w[i]);
		used += w[i].ct.used;
		max += w[i].ct.max;
		exceeded += w[i].ct.allowance_exceeded;
		for (int st = 0; st < STAGE_COUNT; st++)
			for (int r = 0; r < REASON_COUNT; r++)
				reasons[st][r] += w[i].pl.packets[st][r];
	}
	head(&t, "vpcfw_build_info", "gauge", "vpcfw version");
	put(&t, "vpcfw_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	head(&t, "vpcfw_start_time_seconds", "gauge", "start of the daemon, seconds since the epoch");
	put(&t, "vpcfw_start_time_seconds %" PRIu64 "\n", d->started_s);
	head(&t, "vpcfw_policy_generation", "gauge", "number of the configuration in force");
	put(&t, "vpcfw_policy_generation %" PRIu64 "\n", gen);
	head(&t, "vpcfw_conntrack_used", "gauge", "flows tracked now");
	put(&t, "vpcfw_conntrack_used %" PRIu64 "\n", used);
	head(&t, "vpcfw_conntrack_allowance_available", "gauge", "room for new flows");
	put(&t, "vpcfw_conntrack_allowance_available %" PRIu64 "\n", max > used ? max - used : 0);
	head(&t, "vpcfw_conntrack_allowance_exceeded_total", "counter",
	     "new flows refused because the table was full");
	put(&t, "vpcfw_conntrack_allowance_exceeded_total %" PRIu64 "\n", exceeded);
	head(&t, "vpcfw_queue_packets_total", "counter", "packets decided, by queue and verdict");
	for (int i = 0; i < d->n_workers; i++) {
		put(&t, "vpcfw_queue_packets_total{queue=\"%u\",verdict=\"accept\"} %" PRIu64 "\n",
		    w[i].queue, w[i].pl.accepted);
		put(&t, "vpcfw_queue_packets_total{queue=\"%u\",verdict=\"reject\"} %" PRIu64 "\n",
		    w[i].queue, w[i].pl.rejected);
	}
	head(&t, "vpcfw_kernel_queue_dropped_total", "counter",
	     "packets the kernel dropped before vpcfwd saw them, by cause");
	for (int i = 0; i < d->n_workers; i++) {
		if (!w[i].have_kernel)
			continue;
		put(&t, "vpcfw_kernel_queue_dropped_total{queue=\"%u\",cause=\"queue_full\"} %" PRIu64
		    "\n", w[i].queue, w[i].kernel_queue_dropped);
		put(&t, "vpcfw_kernel_queue_dropped_total{queue=\"%u\",cause=\"socket_full\"} %" PRIu64
		    "\n", w[i].queue, w[i].kernel_user_dropped);
	}
	head(&t, "vpcfw_audit_would_refuse_total", "counter",
	     "packets accepted in audit mode that the policy refuses");
	for (int i = 0; i < d->n_workers; i++)
		put(&t, "vpcfw_audit_would_refuse_total{queue=\"%u\"} %" PRIu64 "\n", w[i].queue,
		    w[i].audit_would_refuse);
	head(&t, "vpcfw_decisions_total", "counter", "verdicts by deciding stage and reason code");
	for (int st = 0; st < STAGE_COUNT; st++)
		for (int r = 0; r < REASON_COUNT; r++)
			if (reasons[st][r])
				put(&t, "vpcfw_decisions_total{stage=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				    stage_name((enum stage)st), reason_name((enum reason)r), reasons[st][r]);
	head(&t, "vpcfw_control_refused_total", "counter",
	     "control-socket clients refused (credentials, too many)");
	put(&t, "vpcfw_control_refused_total %" PRIu64 "\n", refused);

	/* one family at a time: the format wants a family's samples together */
	struct counter_sink only[3] = {
		{ pm_nacl, noop_sg, noop_iface, &t },
		{ noop_nacl, pm_sg, noop_iface, &t },
		{ noop_nacl, noop_sg, pm_iface, &t },
	};
	head(&t, "vpcfw_nacl_rule_packets_total", "counter",
	     "packets matched by a network ACL rule (rule * : the implicit deny)");
	walk_counters(d, pol, &only[0]);
	head(&t, "vpcfw_sg_rule_packets_total", "counter",
	     "packets admitted by a security-group rule (IpPermissions index) at an interface");
	walk_counters(d, pol, &only[1]);
	head(&t, "vpcfw_interface_packets_total", "counter",
	     "packets from (out) and to (in) an interface, by verdict");
	walk_counters(d, pol, &only[2]);
	free(w);
	if (t.oom) {
		free(t.s);
		return NULL;
	}
	return t.s;
}

/* Written to a fresh temporary (O_EXCL, random name) in PATH's directory
 * and renamed over PATH: never through a symbolic link planted at either
 * name, and the chmod touches only the file just created. */
int ctl_write_metrics(const struct ctl_daemon *d, uint64_t refused, const char *path)
{
	char tmp[300];
	const char *name;
	char *s = ctl_metrics(d, refused);
	int rc = -1, dirfd;

	if (!s)
		return -1;
	dirfd = safe_parent_open(path, &name);
	if (dirfd >= 0 && safe_is_foreign(dirfd, name))
		errno = ELOOP; /* a link or a directory at PATH is not ours to replace */
	else if (dirfd >= 0) {
		int fd = safe_create_temp(dirfd, name, SAFE_PUBLIC_MODE, tmp, sizeof(tmp));
		/* for node_exporter's user, whatever the daemon's umask (the unit's is 077) */
		if (fd >= 0 && fchmod(fd, SAFE_PUBLIC_MODE) == 0 && safe_write_all(fd, s, strlen(s)) &&
		    close(fd) == 0) {
			fd = -1;
			if (safe_rename(dirfd, tmp, name, true) == 0)
				rc = 0;
		}
		if (fd >= 0)
			close(fd);
		if (rc != 0) {
			int e = errno;
			unlinkat(dirfd, tmp, 0);
			errno = e;
		}
	}
	int e = errno;
	if (dirfd >= 0)
		close(dirfd);
	free(s);
	errno = e;
	return rc;
}

/* ------------------------------------------------------------ shadow policies */

struct shadow_key {
	uint64_t gen;                   /* the running policy's generation */
	const void *run[4], *cand[4];   /* nacl, nacl_rule, sg_rule, stage_iface */
	uint8_t run_stage, run_reason, cand_stage, cand_reason;
	bool refused;                   /* the candidate refuses what runs admits */
};

struct shadow_diff {
	struct shadow_key key;
	_Atomic uint64_t packets;
	char run_rule[128], cand_rule[128];
	/* the first packet seen */
	struct ip_addr src, dst;
	uint16_t sport, dport;
	uint8_t family, proto, icmp_type, icmp_code;
};

struct shadow_worker {
	struct conntrack *ct;
	struct pipeline pl;
	bool seeded;
	uint64_t next_expire_ns;
	unsigned expire_budget;
	uint16_t index[2 * CTL_SHADOW_DIFFS];   /* open addressing; slot + 1, 0 empty */
	struct shadow_diff diffs[CTL_SHADOW_DIFFS];
	_Atomic uint32_t n;
	_Atomic uint64_t compared, differing, lost, seeded_flows, unseeded_flows;
};

struct ctl_shadow {
	struct policy *pol;
	char *path;
	uint64_t loaded_ns;             /* CLOCK_MONOTONIC */
	const struct iface **by_ct_id;  /* the candidate's interface of a ct_id */
	uint32_t n_ct_ids;
	int n_workers;
	struct shadow_worker *w;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ctl_shadow_free(struct ctl_shadow *s)
{
	if (!s)
		return;
	for (int i = 0; s->w && i < s->n_workers; i++)
		if (s->w[i].ct)
			ct_destroy(s->w[i].ct);
	free(s->w);
	free(s->by_ct_id);
	free(s->path);
	policy_free(s->pol);
	free(s);
}

struct ctl_shadow *ctl_shadow_create(struct policy *pol, const char *path, int n_workers,
				     uint32_t flows)
{
	struct ctl_shadow *s = calloc(1, sizeof(*s));

	if (!s) {
		policy_free(pol);
		return NULL;
	}
	s->pol = pol;
	s->n_workers = n_workers;
	s->loaded_ns = mono_ns();
	s->path = strdup(path ? path : "");
	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].ct_id >= s->n_ct_ids)
			s->n_ct_ids = pol->ifaces[i].ct_id + 1;
	s->by_ct_id = calloc((size_t)s->n_ct_ids + 1, sizeof(*s->by_ct_id));
	s->w = calloc((size_t)n_workers + 1, sizeof(*s->w));
	if (!s->path || !s->by_ct_id || !s->w) {
		ctl_shadow_free(s);
		return NULL;
	}
	for (int i = 0; i < pol->n_ifaces; i++)
		s->by_ct_id[pol->ifaces[i].ct_id] = &pol->ifaces[i];
	for (int i = 0; i < n_workers; i++) {
		struct shadow_worker *w = &s->w[i];
		w->ct = ct_create(flows ? flows : 1);
		if (!w->ct) {
			ctl_shadow_free(s);
			return NULL;
		}
		pipeline_init(&w->pl, w->ct);
		w->expire_budget = flows / 512 > 64 ? flows / 512 : 64;
	}
	return s;
}

static const struct iface *cand_iface(const struct ctl_shadow *s, const struct iface *running)
{
	return running && running->ct_id < s->n_ct_ids ? s->by_ct_id[running->ct_id] : NULL;
}

static void add_relaxed(_Atomic uint64_t *x, uint64_t n)
{
	atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

struct seed {
	const struct ctl_shadow *s;
	struct shadow_worker *w;
	uint64_t now;
};

/* The candidate starts with the flows the running policy tracks: without
 * them every reply of a connection opened before the load would look new.
 * TCP flows enter as established (or SYN-sent). */
static int seed_one(const struct ct_flow_info *f, void *arg)
{
	struct seed *sd = arg;
	const struct iface *ci = f->iface < sd->s->n_ct_ids ? sd->s->by_ct_id[f->iface] : NULL;

	if (!ci)
		return 0;       /* not an interface of the candidate: nothing to track */
	struct ct_timeouts to = {
		.tcp_established = ci->tcp_established_timeout, .udp = ci->udp_timeout,
		.udp_stream = ci->udp_stream_timeout,
	};
	uint8_t flags = f->tcp_state == CT_TCP_SYN_SENT ? TCP_SYN : TCP_ACK;
	if (ct_insert(sd->w->ct, f->iface, &f->orig, ct_hash(&f->orig), flags, &to, sd->now))
		add_relaxed(&sd->w->seeded_flows, 1);
	else
		add_relaxed(&sd->w->unseeded_flows, 1);
	return 0;
}

static uint32_t key_hash(const struct shadow_key *k)
{
	uint64_t h = k->gen * 0x9e3779b97f4a7c15u;

	for (int i = 0; i < 4; i++) {
		h = (h ^ (uintptr_t)k->run[i]) * 0x100000001b3u;
		h = (h ^ (uintptr_t)k->cand[i]) * 0x100000001b3u;
	}
	h ^= (uint64_t)k->run_stage << 24 | (uint64_t)k->run_reason << 16 |
	     (uint64_t)k->cand_stage << 8 | k->cand_reason | (uint64_t)k->refused << 32;
	h *= 0x9e3779b97f4a7c15u;
	return (uint32_t)(h >> 32);
}

static void side_key(const struct verdict *v, const void *p[4], uint8_t *stage, uint8_t *reason)
{
	p[0] = v->nacl;
	p[1] = v->nacl_rule;
	p[2] = v->sg_rule;
	p[3] = v->stage_iface;
	*stage = (uint8_t)v->stage;
	*reason = (uint8_t)v->reason;
}

static void note_diff(struct shadow_worker *w, const struct packet *p, const struct verdict *run,
		      const struct verdict *cand, uint64_t gen)
{
	struct shadow_key k;

	memset(&k, 0, sizeof(k));
	k.gen = gen;
	k.refused = run->accept;
	side_key(run, k.run, &k.run_stage, &k.run_reason);
	side_key(cand, k.cand, &k.cand_stage, &k.cand_reason);
	uint32_t mask = 2 * CTL_SHADOW_DIFFS - 1, i = key_hash(&k) & mask;
	uint32_t n = atomic_load_explicit(&w->n, memory_order_relaxed);
	for (;; i = (i + 1) & mask) {
		if (w->index[i] == 0)
			break;
		struct shadow_diff *d = &w->diffs[w->index[i] - 1];
		if (!memcmp(&d->key, &k, sizeof(k))) {
			add_relaxed(&d->packets, 1);
			return;
		}
	}
	if (n == CTL_SHADOW_DIFFS) {
		add_relaxed(&w->lost, 1);
		return;
	}
	/* a new difference: formatted once, published whole */
	struct shadow_diff *d = &w->diffs[n];
	memcpy(&d->key, &k, sizeof(k)); /* padding included: keys compare with memcmp */
	atomic_store_explicit(&d->packets, 1, memory_order_relaxed);
	verdict_rule_format(run, d->run_rule, sizeof(d->run_rule));
	verdict_rule_format(cand, d->cand_rule, sizeof(d->cand_rule));
	d->src = p->src;
	d->dst = p->dst;
	d->sport = p->sport;
	d->dport = p->dport;
	d->family = p->family;
	d->proto = p->proto;
	d->icmp_type = p->icmp_type;
	d->icmp_code = p->icmp_code;
	w->index[i] = (uint16_t)(n + 1);
	atomic_store_explicit(&w->n, n + 1, memory_order_release);
}

void ctl_shadow_eval(struct ctl_shadow *s, int worker, struct conntrack *running_ct,
		     const struct packet *pkts, const struct pkt_meta *metas, int n,
		     const struct verdict *running, uint64_t gen, uint64_t now_ns)
{
	struct shadow_worker *w = &s->w[worker];
	struct pkt_meta cm[PIPELINE_BATCH];
	struct verdict cv[PIPELINE_BATCH];

	if (!w->seeded) {
		struct seed sd = { s, w, now_ns };
		if (running_ct)
			ct_foreach(running_ct, now_ns, seed_one, &sd);
		w->seeded = true;
	}
	if (now_ns >= w->next_expire_ns) {
		ct_expire(w->ct, now_ns, w->expire_budget);
		w->next_expire_ns = now_ns + 10000000u;
	}
	while (n > 0) {
		int k = n < PIPELINE_BATCH ? n : PIPELINE_BATCH;
		for (int i = 0; metas && i < k; i++)
			cm[i] = (struct pkt_meta){ cand_iface(s, metas[i].in_iface),
						   cand_iface(s, metas[i].out_iface) };
		pipeline_eval_batch(&w->pl, s->pol, pkts, metas ? cm : NULL, k, now_ns, cv);
		uint64_t differing = 0;
		for (int i = 0; i < k; i++) {
			if (cv[i].accept == running[i].accept)
				continue;
			differing++;
			note_diff(w, &pkts[i], &running[i], &cv[i], gen);
		}
		add_relaxed(&w->compared, (uint64_t)k);
		if (differing)
			add_relaxed(&w->differing, differing);
		pkts += k;
		running += k;
		if (metas)
			metas += k;
		n -= k;
	}
}

static json_t *side_json(bool accept, uint8_t stage, uint8_t reason, const char *rule)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "verdict", accept ? "ACCEPT" : "REJECT",
			 "stage", stage_name((enum stage)stage), "reason",
			 reason_name((enum reason)reason), "rule", rule);
}

static int by_packets(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "packets"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "packets"));
	return x < y ? 1 : x > y ? -1 : 0;
}

json_t *ctl_shadow_report(const struct ctl_shadow *s, json_int_t limit)
{
	uint64_t compared = 0, differing = 0, lost = 0, seeded = 0, unseeded = 0;
	uint64_t cand_accepted = 0, cand_rejected = 0;
	/* the same rules met in several workers (or generations) are summed */
	json_t *merged = json_object();

	for (int i = 0; i < s->n_workers; i++) {
		const struct shadow_worker *w = &s->w[i];
		uint32_t n = atomic_load_explicit(&w->n, memory_order_acquire);
		compared += atomic_load_explicit(&w->compared, memory_order_relaxed);
		differing += atomic_load_explicit(&w->differing, memory_order_relaxed);
		lost += atomic_load_explicit(&w->lost, memory_order_relaxed);
		seeded += atomic_load_explicit(&w->seeded_flows, memory_order_relaxed);
		unseeded += atomic_load_explicit(&w->unseeded_flows, memory_order_relaxed);
		cand_accepted += w->pl.stats.accepted;
		cand_rejected += w->pl.stats.rejected;
		for (uint32_t k = 0; k < n; k++) {
			const struct shadow_diff *d = &w->diffs[k];
			const struct shadow_key *key = &d->key;
			uint64_t packets = atomic_load_explicit(&d->packets, memory_order_relaxed);
			char id[400];
			snprintf(id, sizeof(id), "%d|%u/%u|%s|%u/%u|%s", key->refused, key->run_stage,
				 key->run_reason, d->run_rule, key->cand_stage, key->cand_reason,
				 d->cand_rule);
			json_t *e = json_object_get(merged, id);
			if (e) {
				json_int_t p = json_integer_value(json_object_get(e, "packets"));
				json_object_set_new(e, "packets", json_integer(p + (json_int_t)packets));
				continue;
			}
			char src[ADDR_STRLEN], dst[ADDR_STRLEN];
			bool icmp = d->proto == 1 || d->proto == 58;
			json_t *sample = json_pack("{s:i, s:s, s:s}", "proto", d->proto,
				"src", addr_format(&d->src, d->family, src),
				"dst", addr_format(&d->dst, d->family, dst));
			if (icmp) {
				json_object_set_new(sample, "icmp_type", json_integer(d->icmp_type));
				json_object_set_new(sample, "icmp_code", json_integer(d->icmp_code));
			} else {
				json_object_set_new(sample, "sport", json_integer(d->sport));
				json_object_set_new(sample, "dport", json_integer(d->dport));
			}
			json_object_set_new(merged, id, json_pack("{s:s, s:I, s:o, s:o, s:o}",
				"change", key->refused ? "refused" : "admitted",
				"packets", (json_int_t)packets,
				"running", side_json(key->refused, key->run_stage, key->run_reason,
						     d->run_rule),
				"candidate", side_json(!key->refused, key->cand_stage, key->cand_reason,
						       d->cand_rule),
				"sample", sample));
		}
	}
	size_t n = json_object_size(merged), k = 0;
	json_t **all = calloc(n + 1, sizeof(*all));
	json_t *diffs = json_array();
	const char *id;
	json_t *e;
	if (!all) {
		json_decref(merged);
		json_decref(diffs);
		return fail("out of memory");
	}
	json_object_foreach(merged, id, e)
		all[k++] = e;
	qsort(all, n, sizeof(*all), by_packets);
	for (k = 0; k < n && (json_int_t)k < limit; k++)
		json_array_append(diffs, all[k]);
	free(all);
	json_decref(merged);
	return json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
		"ok", 1, "path", s->path,
		"loaded_seconds_ago", (json_int_t)((mono_ns() - s->loaded_ns) / 1000000000u),
		"compared", (json_int_t)compared, "differing", (json_int_t)differing,
		"lost", (json_int_t)lost, "candidate_accepted", (json_int_t)cand_accepted,
		"candidate_rejected", (json_int_t)cand_rejected,
		"seeded_flows", (json_int_t)seeded, "unseeded_flows", (json_int_t)unseeded,
		"distinct", (json_int_t)n, "differences", diffs);
}

/* ------------------------------------------------------------ verbs */

static json_t *v_status(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	const struct ctl_daemon *d = c->d;
	uint64_t gen, used = 0, max = 0, exceeded = 0, kdrop = 0, udrop = 0;
	const struct policy *pol = d->policy(d->ctx, &gen);
	json_t *queues = json_array();
	(void)peer;
	(void)req;

	for (int i = 0; i < d->n_workers; i++) {
		struct ctl_worker_stats w;
		d->worker(d->ctx, i, &w);
		used += w.ct.used;
		max += w.ct.max;
		exceeded += w.ct.allowance_exceeded;
		kdrop += w.kernel_queue_dropped;
		udrop += w.kernel_user_dropped;
		json_array_append_new(queues, json_pack("{s:i, s:I, s:I, s:I, s:I, s:I}",
			"queue", w.queue, "packets", (json_int_t)w.packets,
			"flows", (json_int_t)w.ct.used,
			"kernel_waiting", (json_int_t)w.kernel_waiting,
			"kernel_queue_dropped", (json_int_t)w.kernel_queue_dropped,
			"kernel_socket_dropped", (json_int_t)w.kernel_user_dropped));
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return json_pack("{s:b, s:s, s:I, s:I, s:i, s:i, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o}",
		"ok", 1, "version", PACKAGE_VERSION,
		"uptime", (json_int_t)((uint64_t)ts.tv_sec - d->started_s),
		"generation", (json_int_t)gen,
		"interfaces", pol->n_ifaces, "nacls", pol->n_nacls, "queues", queues,
		"conntrack_used", (json_int_t)used, "conntrack_max", (json_int_t)max,
		"conntrack_allowance_available", (json_int_t)(max > used ? max - used : 0),
		"conntrack_allowance_exceeded", (json_int_t)exceeded,
		"kernel_queue_dropped", (json_int_t)kdrop, "kernel_socket_dropped", (json_int_t)udrop,
		"audit", d->audit ? d->audit(d->ctx) : 0,
		"shadow", c->shadow ? json_string(c->shadow->path) : json_null());
}

static json_t *v_stats(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	(void)peer;
	(void)req;
	return ctl_stats(c->d);
}

static json_t *v_metrics(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	(void)peer;
	(void)req;
	char *s = ctl_metrics(c->d, c->refused);
	if (!s)
		return fail("out of memory");
	json_t *r = json_pack("{s:b, s:s}", "ok", 1, "text", s);
	free(s);
	return r;
}

static const char *const tcp_states[] = {
	"-", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
	"TIME_WAIT", "CLOSE",
};

struct flow_query {
	const struct policy *pol;
	bool has_iface, has_addr, has_port;
	uint32_t iface;
	struct ip_addr addr;
	uint16_t port;
	json_int_t limit;
	json_t *out;
	uint64_t matched;
	uint64_t now_ns;
};

static const char *iface_name(const struct policy *pol, uint32_t ct_id)
{
	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].ct_id == ct_id)
			return pol->ifaces[i].id;
	return "?";
}

static int flow_one(int worker, const struct ct_flow_info *f, void *arg)
{
	struct flow_query *q = arg;
	char s[ADDR_STRLEN], d[ADDR_STRLEN];
	int fam = addr_family(&f->orig.src);

	if (q->has_iface && f->iface != q->iface)
		return 0;
	if (q->has_addr && !addr_eq(&f->orig.src, &q->addr) && !addr_eq(&f->orig.dst, &q->addr))
		return 0;
	if (q->has_port && f->orig.sport != q->port && f->orig.dport != q->port)
		return 0;
	q->matched++;
	if ((json_int_t)json_array_size(q->out) >= q->limit)
		return 0;
	json_array_append_new(q->out, json_pack("{s:i, s:s, s:i, s:s, s:i, s:s, s:i, s:s, s:b, s:b, s:I}",
		"queue_worker", worker, "eni", iface_name(q->pol, f->iface), "proto", f->orig.proto,
		"src", addr_format(&f->orig.src, fam, s), "sport", f->orig.sport,
		"dst", addr_format(&f->orig.dst, fam, d), "dport", f->orig.dport,
		"tcp_state", (unsigned)f->tcp_state < 9 ? tcp_states[f->tcp_state] : "?",
		"seen_reply", f->seen_reply, "udp_stream", f->udp_stream,
		"expires_in", (json_int_t)(f->expires_ns > q->now_ns ?
					   (f->expires_ns - q->now_ns) / 1000000000u : 0)));
	return 0;
}

static json_t *v_flows(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	const struct ctl_daemon *d = c->d;
	struct flow_query q = { .limit = CTL_FLOWS_DEFAULT };
	const char *s;
	int fam;
	uint64_t gen;
	(void)peer;

	q.pol = d->policy(d->ctx, &gen);
	if ((s = str_of(req, "interface")) != NULL) {
		const struct iface *f = explain_iface(q.pol, s);
		if (!f)
			return fail("no interface or bound device '%s'", s);
		q.has_iface = true;
		q.iface = f->ct_id;
	}
	if ((s = str_of(req, "address")) != NULL) {
		if (!addr_parse(s, &q.addr, &fam))
			return fail("'%s' is not an IPv4 or IPv6 address", s);
		q.has_addr = true;
	}
	json_t *p = json_object_get(req, "port");
	if (p) {
		if (!json_is_integer(p) || json_integer_value(p) < 0 || json_integer_value(p) > 65535)
			return fail("port is 0-65535");
		q.has_port = true;
		q.port = (uint16_t)json_integer_value(p);
	}
	json_t *l = json_object_get(req, "limit");
	if (l) {
		if (!json_is_integer(l) || json_integer_value(l) < 0 ||
		    json_integer_value(l) > CTL_FLOWS_MAX)
			return fail("limit is 0-%d", CTL_FLOWS_MAX);
		q.limit = json_integer_value(l);
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	q.now_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	q.out = json_array();
	if (d->flows(d->ctx, flow_one, &q) < 0) {
		json_decref(q.out);
		return fail("the workers did not answer in time");
	}
	return json_pack("{s:b, s:I, s:o}", "ok", 1, "matched", (json_int_t)q.matched, "flows", q.out);
}

static json_t *v_explain(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	uint64_t gen;
	(void)peer;
	return ctl_explain(c->d->policy(c->d->ctx, &gen), req);
}

static json_t *v_check(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	json_t *msgs;
	(void)peer;
	(void)req;
	struct policy *pol = ctl_load_policy(c->d->config_paths, c->d->n_config_paths, c->d->strict,
					     &msgs);
	json_t *r = json_pack("{s:b, s:b, s:o}", "ok", 1, "valid", pol != NULL, "messages", msgs);
	policy_free(pol);
	return r;
}

static json_t *v_reload(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	char msg[256] = "";
	uint64_t gen;
	(void)req;

	bool ok = c->d->reload(c->d->ctx, peer->name, msg, sizeof(msg));
	const struct policy *pol = c->d->policy(c->d->ctx, &gen);
	if (ok)
		ctl_set_groups(c, pol->model->vpcfw.admin_group, pol->model->vpcfw.reader_group);
	if (!ok)
		return fail("reload refused, the running configuration stays: %s", msg);
	return json_pack("{s:b, s:I}", "ok", 1, "generation", (json_int_t)gen);
}

static json_t *v_audit(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	json_t *on = json_object_get(req, "on");

	if (!c->d->set_audit)
		return fail("audit is not available");
	if (on) {
		if (!json_is_boolean(on))
			return fail("audit takes on or off");
		c->d->set_audit(c->d->ctx, json_is_true(on));
		ctl_log_msg(c, LOG_NOTICE, "control: %s turned audit mode %s", peer->name,
		     json_is_true(on) ? "on: every packet is accepted" : "off");
	}
	return json_pack("{s:b, s:b}", "ok", 1, "audit", c->d->audit(c->d->ctx));
}

static json_t *v_shadow_load(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	const char *path = str_of(req, "path");
	json_t *msgs;

	if (!c->d->set_shadow)
		return fail("shadow policies are not available");
	if (!path || path[0] != '/')
		return fail("shadow-load needs an absolute \"path\"");
	const char *paths[1] = { path };
	struct policy *pol = ctl_load_policy(paths, 1, c->d->strict, &msgs);
	if (!pol) {
		json_t *r = fail("candidate %s refused; the shadow in place (if any) stays", path);
		json_object_set_new(r, "messages", msgs);
		return r;
	}
	uint32_t flows = pol->conntrack_max / (uint32_t)(c->d->n_workers > 0 ? c->d->n_workers : 1);
	if (flows > CTL_SHADOW_FLOWS_MAX)
		flows = CTL_SHADOW_FLOWS_MAX;
	int n_ifaces = pol->n_ifaces;
	struct ctl_shadow *s = ctl_shadow_create(pol, path, c->d->n_workers, flows);
	if (!s) {
		json_decref(msgs);
		return fail("out of memory for the shadow policy");
	}
	ctl_shadow_free(c->d->set_shadow(c->d->ctx, s));
	c->shadow = s;
	ctl_log_msg(c, LOG_NOTICE, "control: %s loaded shadow policy %s", peer->name, path);
	return json_pack("{s:b, s:s, s:i, s:I, s:o}", "ok", 1, "path", path, "interfaces", n_ifaces,
			 "flows_per_queue", (json_int_t)flows, "messages", msgs);
}

static json_t *v_shadow_report(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	json_t *l = json_object_get(req, "limit");
	(void)peer;

	if (!c->shadow)
		return fail("no shadow policy is loaded");
	if (l && (!json_is_integer(l) || json_integer_value(l) < 0 ||
		  json_integer_value(l) > CTL_FLOWS_MAX))
		return fail("limit is 0-%d", CTL_FLOWS_MAX);
	return ctl_shadow_report(c->shadow, l ? json_integer_value(l) : CTL_FLOWS_MAX);
}

static json_t *v_shadow_clear(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	(void)req;
	if (!c->shadow)
		return fail("no shadow policy is loaded");
	ctl_shadow_free(c->d->set_shadow(c->d->ctx, NULL));
	c->shadow = NULL;
	ctl_log_msg(c, LOG_NOTICE, "control: %s cleared the shadow policy", peer->name);
	return json_pack("{s:b}", "ok", 1);
}

static const struct verb {
	const char *name;
	bool change;
	json_t *(*fn)(struct ctl *c, const struct ctl_peer *peer, const json_t *req);
} verbs[] = {
	{ "status", false, v_status },
	{ "stats", false, v_stats },
	{ "flows", false, v_flows },
	{ "explain", false, v_explain },
	{ "check-config", false, v_check },
	{ "metrics", false, v_metrics },
	{ "reload", true, v_reload },
	{ "audit", true, v_audit },
	{ "shadow-load", true, v_shadow_load },
	{ "shadow-report", false, v_shadow_report },
	{ "shadow-clear", true, v_shadow_clear },
};

json_t *ctl_handle(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	const char *verb = str_of(req, "verb");

	if (!json_is_object(req) || !verb)
		return fail("a request is an object with a \"verb\"");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(verbs[i].name, verb))
			continue;
		/* audit without "on" only reads */
		bool change = verbs[i].change &&
			      !(verbs[i].fn == v_audit && !json_object_get(req, "on"));
		if (!peer->reader || (change && !peer->admin)) {
			c->refused++;
			ctl_log_msg(c, LOG_NOTICE, "control: %s refused: %s needs %s", peer->name, verb,
			     peer->read_only_socket ? "the full control socket" :
			     "root or Access.AdminGroup");
			return fail("permission denied: %s needs %s", verb,
				    peer->read_only_socket ? "the full control socket (this one is "
				    "read-only)" : "root or membership of Access.AdminGroup");
		}
		if (change)
			ctl_log_msg(c, LOG_NOTICE, "control: %s: %s", peer->name, verb);
		return verbs[i].fn(c, peer, req);
	}
	char v[64];
	snprintf(v, sizeof(v), "%s", verb);
	return fail("unknown verb '%s'", v);
}
