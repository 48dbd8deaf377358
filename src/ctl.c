/* The control socket: framing, access, and the verbs of vpcfwctl. */
#include "vpcfw/ctl.h"
#include "vpcfw/safefile.h"
#include "vpcfw/load.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
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
#include "vpcfw/conf.h"
#include "vpcfw/diag.h"
#include "vpcfw/explain.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/ha.h"
#include "vpcfw/mirror.h"
#include "vpcfw/xmalloc.h"

struct client {
	int fd;
	struct ctl_peer peer;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off;
	uint64_t deadline_ns;   /* dropped if still idle then */
	uint32_t serial;        /* tells a job's client from a later one in the slot */
	bool busy;              /* a job of its own is compiling: not read meanwhile */
	bool closing;           /* close once the output is written */
};

/* Work taken off the main thread: compiling a configuration. */
enum job_kind { JOB_CHECK, JOB_SHADOW, JOB_RELOAD };

struct job {
	enum job_kind kind;
	struct ctl_peer peer;
	int client;             /* -1: nobody waits (SIGHUP) */
	uint32_t serial;
	json_t *files;          /* JOB_SHADOW: [{name, text}] */
	char *label;            /* JOB_SHADOW: what the client named */
	struct policy *pol;     /* JOB_CHECK, JOB_SHADOW: the result */
	json_t *msgs;
	void *compiled;         /* JOB_RELOAD: the daemon's result */
	struct job *next;
};

struct ratelog {
	uint64_t window_ns;
	unsigned logged;
	uint64_t suppressed;
};

struct ctl {
	const struct ctl_daemon *d;
	int lfd[2];             /* full, read-only */
	char *path[2];
	gid_t admin_gid, reader_gid;
	bool have_admin, have_reader;
	bool ro_public;
	struct client clients[CTL_MAX_CLIENTS];
	uint32_t serial;
	struct ctl_counters n;
	struct ratelog rl;
	void (*log)(int prio, const char *msg);
	struct shadow *shadow;      /* installed in the daemon, owned here */
	/* the compiling thread: jobs in, results out, a pipe to wake ctl_serve */
	pthread_t thread;
	bool thread_started, thread_stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *todo, *done;
	int n_jobs;                     /* queued or running */
	int wake[2];
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

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Refusals are logged CTL_LOG_BURST times per window, the rest summed: a
 * flood of clients must not become a flood of log lines. */
static void ratelog_flush(struct ctl *c, uint64_t now)
{
	if (now - c->rl.window_ns < (uint64_t)CTL_LOG_WINDOW * 1000000000u)
		return;
	if (c->rl.suppressed)
		ctl_log_msg(c, LOG_NOTICE, "control: %" PRIu64 " more refusal(s) suppressed in the "
			    "last %d s", c->rl.suppressed, CTL_LOG_WINDOW);
	c->rl = (struct ratelog){ .window_ns = now };
}

__attribute__((format(printf, 2, 3)))
static void log_refusal(struct ctl *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	ratelog_flush(c, now_ns());
	if (c->rl.logged >= CTL_LOG_BURST) {
		c->rl.suppressed++;
		c->n.log_suppressed++;
		return;
	}
	c->rl.logged++;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (c->log)
		c->log(LOG_NOTICE, buf);
}

/* ------------------------------------------------------------ sockets */

static int listen_on(const char *path, char *err, size_t errlen)
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
	/* made by root, and left root's whatever -u says */
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
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
	/* access is decided per client from the peer's credentials; the
	 * backlog is deep so that a flood is refused with an answer rather
	 * than left waiting in connect */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
	    listen(fd, 256) < 0) {
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

void ctl_set_read_only_public(struct ctl *c, bool on)
{
	if (c)
		c->ro_public = on;
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
	c->rl.window_ns = now_ns();
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		c->clients[i].fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		c->wake[0] = c->wake[1] = -1;
		ctl_close(c);
		return NULL;
	}
	ctl_set_groups(c, admin_group, reader_group);
	const char *paths[2] = { path, ro_path };
	for (int i = 0; i < 2; i++) {
		if (!paths[i])
			continue;
		c->lfd[i] = listen_on(paths[i], err, errlen);
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
	uint32_t serial = k->serial;
	memset(k, 0, sizeof(*k));
	k->fd = -1;
	k->serial = serial;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	json_decref(j->files);
	json_decref(j->msgs);
	policy_free(j->pol);
	free(j->label);
	free(j);
}

void ctl_close(struct ctl *c)
{
	if (!c)
		return;
	if (c->thread_started) {
		pthread_mutex_lock(&c->lock);
		c->thread_stop = true;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
	}
	for (struct job *j = c->todo, *next; j; j = next) {
		next = j->next;
		job_free(j);
	}
	for (struct job *j = c->done, *next; j; j = next) {
		next = j->next;
		/* a reload compiled but never installed */
		if (j->compiled && c->d->discard)
			c->d->discard(c->d->ctx, j->compiled);
		job_free(j);
	}
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			drop_client(&c->clients[i]);
	if (c->shadow && c->d->set_shadow)
		c->d->set_shadow(c->d->ctx, NULL);
	shadow_free(c->shadow);
	for (int i = 0; i < 2; i++) {
		if (c->lfd[i] >= 0)
			close(c->lfd[i]);
		if (c->path[i])
			unlink(c->path[i]);
		free(c->path[i]);
	}
	for (int i = 0; i < 2; i++)
		if (c->wake[i] >= 0)
			close(c->wake[i]);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

void ctl_chown(struct ctl *c, uid_t uid, gid_t gid)
{
	for (int i = 0; c && i < 2; i++)
		if (c->path[i] && chown(c->path[i], uid, gid) < 0)
			ctl_log_msg(c, LOG_WARNING, "control: chown %s: %s", c->path[i],
				    strerror(errno));
}

uint64_t ctl_refused(const struct ctl *c)
{
	return c ? c->n.refused_permission + c->n.refused_too_many + c->n.requests_refused +
		   c->n.requests_busy : 0;
}

void ctl_get_counters(const struct ctl *c, struct ctl_counters *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	*out = c->n;
	out->clients = 0;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		out->clients += c->clients[i].fd >= 0;
}

/* The peer's credentials: root, the admin group (full socket only), the
 * reader group; on the read-only socket, everyone if it is public. */
static void identify(struct ctl *c, int fd, bool ro, struct ctl_peer *p)
{
	struct ucred cr = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t len = sizeof(cr);

	memset(p, 0, sizeof(*p));
	p->read_only_socket = ro;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		cr.uid = (uid_t)-1;
	p->pid = cr.pid;
	p->uid = cr.uid;
	p->gid = cr.gid;
	p->admin = !ro && cr.uid == 0;
	p->reader = cr.uid == 0 || (ro && c->ro_public);
	if (cr.uid != (uid_t)-1) {
		/* the peer process's groups at connect time, not the group file's */
		gid_t groups[256];
		socklen_t gl = sizeof(groups);
		int n = 0;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0)
			n = (int)(gl / sizeof(gid_t));
		for (int i = -1; i < n; i++) {
			gid_t g = i < 0 ? cr.gid : groups[i];
			if (c->have_admin && g == c->admin_gid) {
				p->reader = true;
				p->admin = !ro;
			}
			if (c->have_reader && g == c->reader_gid)
				p->reader = true;
		}
	}
	struct passwd *pw = cr.uid != (uid_t)-1 ? getpwuid(cr.uid) : NULL;
	snprintf(p->name, sizeof(p->name), "uid %ld (%s) pid %ld", (long)cr.uid,
		 pw ? pw->pw_name : "?", (long)cr.pid);
}

/* Why a new client gets no slot, or NULL: room for it. */
static const char *no_room(const struct ctl *c, const struct ctl_peer *p, int *slot)
{
	int used = 0, mine = 0;

	*slot = -1;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		const struct client *k = &c->clients[i];
		if (k->fd < 0) {
			if (*slot < 0)
				*slot = i;
			continue;
		}
		used++;
		mine += k->peer.uid == p->uid;
	}
	bool privileged = p->uid == 0 || p->admin;
	if (*slot < 0)
		return "every connection is taken";
	if (p->uid != 0 && mine >= CTL_MAX_PER_UID)
		return "this user holds the most connections allowed";
	if (!privileged && used >= CTL_MAX_CLIENTS - CTL_RESERVED_ADMIN)
		return "the connections left are kept for root and Access.AdminGroup";
	return NULL;
}

/* A refused client is told why, at once and without waiting for it: the
 * answer fits in the socket's buffer, and a client that cannot take it
 * loses nothing but the explanation. */
static void refuse_client(int fd, const char *error)
{
	char buf[320];
	int n = snprintf(buf, sizeof(buf), "{\"ok\": false, \"error\": \"%s\"}\n", error);

	if (n > 0 && send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* nothing to do: the close says the rest */
	}
	close(fd);
}

static void accept_clients(struct ctl *c, int which)
{
	for (;;) {
		int fd = accept4(c->lfd[which], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct ctl_peer peer;
		identify(c, fd, which == 1, &peer);
		if (!peer.reader) {
			c->n.refused_permission++;
			log_refusal(c, "control: %s refused: not root nor in the %s", peer.name,
				    which == 1 ? "reader or admin group (read-only socket)" :
				    "admin or reader group");
			refuse_client(fd, "permission denied: not root, nor in Access.AdminGroup "
				      "or Access.ReaderGroup");
			continue;
		}
		int slot;
		const char *why = no_room(c, &peer, &slot);
		if (why) {
			char msg[160];
			c->n.refused_too_many++;
			log_refusal(c, "control: %s refused: too many clients (%s)", peer.name, why);
			snprintf(msg, sizeof(msg), "too many clients: %s", why);
			refuse_client(fd, msg);
			continue;
		}
		struct client *k = &c->clients[slot];
		k->fd = fd;
		k->peer = peer;
		k->serial = ++c->serial;
		k->deadline_ns = now_ns() + (uint64_t)CTL_IDLE_SECONDS * 1000000000u;
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

static json_t *handle(struct ctl *c, const struct ctl_peer *peer, const json_t *req,
		      struct job **job);
static void submit(struct ctl *c, struct job *j);

static void process_lines(struct ctl *c, struct client *k);

static void read_client(struct ctl *c, struct client *k)
{
	/* the admins' shadow-load carries whole configurations */
	size_t limit = k->peer.admin ? CTL_MAX_CONFIG : CTL_MAX_REQUEST;

	for (;;) {
		if (k->in_cap - k->in_len < 65536) {
			size_t cap = k->in_cap ? k->in_cap * 2 : 65536 + 1;
			char *in = realloc(k->in, cap);
			if (!in) {
				k->closing = true;
				return;
			}
			k->in = in;
			k->in_cap = cap;
		}
		ssize_t n = read(k->fd, k->in + k->in_len, k->in_cap - k->in_len - 1);
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
		k->in_len += (size_t)n;
		if (k->in_len > limit && !memchr(k->in, '\n', k->in_len)) {
			c->n.dropped_too_long++;
			log_refusal(c, "control: %s dropped: request longer than %zu bytes",
				    k->peer.name, limit);
			queue_reply(k, ctl_error("request longer than %zu bytes", limit));
			k->closing = true;
			k->in_len = 0;
			return;
		}
	}
	process_lines(c, k);
}

/* One request per line; none is taken past one that compiles, until its
 * answer is queued. */
static void process_lines(struct ctl *c, struct client *k)
{
	char *nl;
	while (!k->busy && k->in && (nl = memchr(k->in, '\n', k->in_len)) != NULL) {
		size_t len = (size_t)(nl - k->in);
		char err[200];
		struct job *j = NULL;
		json_t *req = ctl_parse_request(k->in, len, err, sizeof(err));
		json_t *reply = req ? handle(c, &k->peer, req, &j) : ctl_error("%s", err);
		json_decref(req);
		memmove(k->in, nl + 1, k->in_len - len - 1);
		k->in_len -= len + 1;
		if (j) {
			j->client = (int)(k - c->clients);
			j->serial = k->serial;
			k->busy = true;
			submit(c, j);
		} else {
			queue_reply(k, reply);
		}
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
	/* answered: a new idle period */
	k->deadline_ns = now_ns() + (uint64_t)CTL_IDLE_SECONDS * 1000000000u;
}

/* ------------------------------------------------------------ the compiling thread */

static void run_job(const struct ctl_daemon *d, struct job *j)
{
	switch (j->kind) {
	case JOB_CHECK:
		j->pol = policy_load_report(d->config_paths, d->n_config_paths, d->strict, &j->msgs);
		break;
	case JOB_SHADOW: {
		size_t n = json_array_size(j->files);
		const char **names = calloc(n + 1, sizeof(*names)), **texts = calloc(n + 1, sizeof(*texts));
		size_t *lens = calloc(n + 1, sizeof(*lens));
		struct diag dg;
		diag_init(&dg);
		dg.strict = d->strict;
		if (names && texts && lens) {
			for (size_t i = 0; i < n; i++) {
				const json_t *f = json_array_get(j->files, i);
				names[i] = json_string_value(json_object_get(f, "name"));
				texts[i] = json_string_value(json_object_get(f, "text"));
				lens[i] = json_string_length(json_object_get(f, "text"));
			}
			j->pol = policy_load_texts(names, texts, lens, (int)n, &dg);
		} else {
			diag_error(&dg, NULL, NULL, "out of memory");
		}
		j->msgs = json_array();
		for (size_t i = 0; i < dg.n; i++)
			json_array_append_new(j->msgs, json_pack("{s:s, s:s}", "level",
				dg.msgs[i].error ? "error" : "warning", "text", dg.msgs[i].text));
		diag_free(&dg);
		free(names);
		free(texts);
		free(lens);
		break;
	}
	case JOB_RELOAD:
		if (d->compile)
			j->compiled = d->compile(d->ctx, j->peer.name);
		break;
	}
}

static void *job_thread(void *arg)
{
	struct ctl *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->todo && !c->thread_stop)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->thread_stop)
			break;
		struct job *j = c->todo;
		c->todo = j->next;
		pthread_mutex_unlock(&c->lock);
		run_job(c->d, j);
		pthread_mutex_lock(&c->lock);
		/* results in order of completion, appended */
		struct job **tail = &c->done;
		while (*tail)
			tail = &(*tail)->next;
		j->next = NULL;
		*tail = j;
		if (write(c->wake[1], "", 1) < 0) {
			/* the pipe is full: ctl_serve is due to look anyway */
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void submit(struct ctl *c, struct job *j)
{
	pthread_mutex_lock(&c->lock);
	if (!c->thread_started) {
		/* started at the first job: after -u has dropped privileges */
		c->thread_started = pthread_create(&c->thread, NULL, job_thread, c) == 0;
	}
	if (!c->thread_started) {
		pthread_mutex_unlock(&c->lock);
		run_job(c->d, j);       /* no thread to be had: the old way */
		pthread_mutex_lock(&c->lock);
		j->next = c->done;
		c->done = j;
		pthread_mutex_unlock(&c->lock);
		if (write(c->wake[1], "", 1) < 0) {
			/* see job_thread */
		}
		c->n_jobs++;
		return;
	}
	struct job **tail = &c->todo;
	while (*tail)
		tail = &(*tail)->next;
	j->next = NULL;
	*tail = j;
	c->n_jobs++;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static json_t *finish_job(struct ctl *c, struct job *j);

/* The results of finished jobs: installed here, on the main thread, and
 * answered to their clients if these are still there. */
static void collect_jobs(struct ctl *c)
{
	char buf[64];

	while (read(c->wake[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&c->lock);
	struct job *list = c->done;
	c->done = NULL;
	pthread_mutex_unlock(&c->lock);
	while (list) {
		struct job *j = list;
		list = j->next;
		c->n_jobs--;
		json_t *reply = finish_job(c, j);
		struct client *k = j->client >= 0 ? &c->clients[j->client] : NULL;
		if (k && k->fd >= 0 && k->serial == j->serial) {
			k->busy = false;
			queue_reply(k, reply);
			process_lines(c, k);
		} else {
			json_decref(reply);
		}
		job_free(j);
	}
}

bool ctl_reload_async(struct ctl *c, const char *who)
{
	if (!c || !c->d->compile || c->n_jobs >= CTL_JOBS_MAX)
		return false;
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	j->kind = JOB_RELOAD;
	j->client = -1;
	snprintf(j->peer.name, sizeof(j->peer.name), "%s", who);
	submit(c, j);
	return true;
}

void ctl_serve(struct ctl *c, int timeout_ms)
{
	struct pollfd pfd[3 + CTL_MAX_CLIENTS];
	int who[3 + CTL_MAX_CLIENTS];
	nfds_t n = 0;
	uint64_t now = now_ns();

	ratelog_flush(c, now);
	pfd[n] = (struct pollfd){ .fd = c->wake[0], .events = POLLIN };
	who[n++] = -3;
	for (int i = 0; i < 2; i++)
		if (c->lfd[i] >= 0) {
			pfd[n] = (struct pollfd){ .fd = c->lfd[i], .events = POLLIN };
			who[n++] = -1 - i;
		}
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		struct client *k = &c->clients[i];
		if (k->fd < 0)
			continue;
		/* idle too long, or not reading its answer: the slot goes to others */
		if (!k->busy && now > k->deadline_ns) {
			c->n.dropped_idle++;
			log_refusal(c, "control: %s dropped: idle for %d s", k->peer.name,
				    CTL_IDLE_SECONDS);
			drop_client(k);
			continue;
		}
		/* a client that does not read its answers is not read from */
		short ev = k->out_len > k->out_off ? POLLOUT : (k->closing || k->busy ? 0 : POLLIN);
		pfd[n] = (struct pollfd){ .fd = k->fd, .events = ev };
		who[n++] = i;
	}
	if (poll(pfd, n, timeout_ms) <= 0)
		return;
	for (nfds_t i = 0; i < n; i++) {
		if (!pfd[i].revents)
			continue;
		if (who[i] == -3) {
			collect_jobs(c);
			continue;
		}
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
		/* a client gone while its job compiles: the job finishes without it */
		if (k->closing && !k->busy && k->out_len <= k->out_off)
			drop_client(k);
	}
}

/* ------------------------------------------------------------ loading */

/* ------------------------------------------------------------ counters */

static uint64_t sum_hits(const struct ctl_daemon *d, uint32_t slot)
{
	uint64_t s = 0;

	for (int i = 0; i < d->n_workers; i++) {
		const counter_t *h = d->hits(d->ctx, i);
		if (h)
			s += counter_get(&h[slot]);
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

struct perm_sum {
	const struct m_sg_rule *m;
	int first;                      /* position of its first compiled rule */
	uint64_t packets;
};

static int cmp_perm_m(const void *x, const void *y)
{
	const struct perm_sum *a = x, *b = y;
	if (a->m != b->m)
		return (uintptr_t)a->m < (uintptr_t)b->m ? -1 : 1;
	return (a->first > b->first) - (a->first < b->first);
}

static int cmp_perm_first(const void *x, const void *y)
{
	const struct perm_sum *a = x, *b = y;
	return (a->first > b->first) - (a->first < b->first);
}

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
	struct perm_sum *ps = NULL;
	size_t ps_cap = 0;
	for (int i = 0; i < pol->n_ifaces; i++) {
		const struct iface *f = &pol->ifaces[i];
		const struct sg_set *sets[2] = { f->in, f->out };
		const uint32_t base[2] = { f->sg_hit_in, f->sg_hit_out };
		for (int k = 0; k < 2; k++) {
			const struct sg_set *set = sets[k];
			if ((size_t)set->n > ps_cap) {
				ps_cap = (size_t)set->n;
				free(ps);
				ps = xcalloc(ps_cap, sizeof(*ps));
			}
			/* the rules of one IpPermission in a run (by m, then
			 * position), summed, then reported in the order of each
			 * one's first rule: O(n log n) in the set's rules */
			for (int r = 0; r < set->n; r++)
				ps[r] = (struct perm_sum){ set->rules[r].m, r,
							   sum_hits(d, base[k] + set->rules[r].hit) };
			qsort(ps, (size_t)set->n, sizeof(*ps), cmp_perm_m);
			int runs = 0;
			for (int r = 0; r < set->n; r++) {
				if (runs && ps[runs - 1].m == ps[r].m)
					ps[runs - 1].packets += ps[r].packets;
				else
					ps[runs++] = ps[r];
			}
			qsort(ps, (size_t)runs, sizeof(*ps), cmp_perm_first);
			for (int r = 0; r < runs; r++)
				s->sg(s->arg, f, &set->rules[ps[r].first], ps[r].packets);
		}
		uint64_t v[IFACE_HITS];
		for (int k = 0; k < IFACE_HITS; k++)
			v[k] = sum_hits(d, f->hit + (uint32_t)k);
		s->iface(s->arg, f, v);
	}
	free(ps);
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
	/* rule: the stable label (SecurityGroupRuleId or a content hash);
	 * index: today's position in IpPermissions[Egress], for people */
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "eni", f->id,
			      "sg", r->group->id, "direction", r->egress ? "egress" : "ingress",
			      "rule", r->m->label ? r->m->label : "?", "index", r->m->index,
			      "packets", (json_int_t)packets);
	if (r->m->rule_id)
		json_object_set_new(o, "rule_id", json_string(r->m->rule_id));
	json_array_append_new(j->sg, o);
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

/* Everything lost, in one table that stats, --json and the metrics share.
 * Rows of a family are adjacent (the text format wants them together). */
struct loss_row {
	const char *key;                /* stats / JSON name */
	const char *family;             /* Prometheus metric */
	const char *labels;             /* "" or `k="v",...` */
	uint64_t v;
};

struct loss_family {
	const char *name, *help;
};

static const struct loss_family loss_families[] = {
	{ "vpcfw_mirror_copies_lost_total",
	  "mirror and drop-capture copies lost, by output and cause" },
	{ "vpcfw_mirror_write_errors_total",
	  "pcap writes (records, flushes, reopens) that failed, by output" },
	{ "vpcfw_flowlog_write_errors_total",
	  "flow-log and decision-log files that could not be opened or written" },
	{ "vpcfw_flowlog_skipdata_packets_total",
	  "packets left out of flow-log records (reported as SKIPDATA): no room to aggregate" },
	{ "vpcfw_flowlog_skipdata_records_total", "SKIPDATA records written" },
	{ "vpcfw_refusal_log_lines_lost_total",
	  "refused packets not logged, by cause (rate limit, full ring)" },
	{ "vpcfw_control_log_suppressed_total",
	  "control-socket refusal log lines suppressed (rate limit)" },
};

enum { LOSS_ROWS = 16 };

static int collect_losses(const struct ctl_daemon *d, const struct ctl *c,
			  struct loss_row out[LOSS_ROWS])
{
	struct ctl_losses l;
	struct ctl_counters cn;
	int n = 0;

	memset(&l, 0, sizeof(l));
	if (d->losses)
		d->losses(d->ctx, &l);
	ctl_get_counters(c, &cn);
#define ROW(k, f, lab, val) out[n++] = (struct loss_row){ k, f, lab, val }
	ROW("mirror_ring_full", "vpcfw_mirror_copies_lost_total",
	    "output=\"session\",cause=\"ring_full\"", l.mirror.ring_full);
	ROW("mirror_vxlan_send_errors", "vpcfw_mirror_copies_lost_total",
	    "output=\"session\",cause=\"vxlan_send_error\"", l.mirror.vxlan_errors);
	ROW("drop_capture_ring_full", "vpcfw_mirror_copies_lost_total",
	    "output=\"drop_capture\",cause=\"ring_full\"", l.mirror.capture_ring_full);
	ROW("mirror_pcap_write_errors", "vpcfw_mirror_write_errors_total",
	    "output=\"pcap_target\"", l.mirror.write_errors);
	ROW("drop_capture_write_errors", "vpcfw_mirror_write_errors_total",
	    "output=\"drop_capture\"", l.mirror.capture_write_errors);
	ROW("flowlog_write_errors", "vpcfw_flowlog_write_errors_total", "",
	    l.flowlog.write_errors);
	ROW("flowlog_skipdata_packets", "vpcfw_flowlog_skipdata_packets_total", "",
	    l.flowlog.records_lost);
	ROW("flowlog_skipdata_records", "vpcfw_flowlog_skipdata_records_total", "",
	    l.flowlog.skipdata_records);
	ROW("refusal_log_rate_limited", "vpcfw_refusal_log_lines_lost_total",
	    "cause=\"rate_limit\"", l.refusal_lines_suppressed);
	ROW("refusal_log_ring_full", "vpcfw_refusal_log_lines_lost_total",
	    "cause=\"ring_full\"", l.refusal_lines_lost);
	ROW("control_log_suppressed", "vpcfw_control_log_suppressed_total", "",
	    cn.log_suppressed);
#undef ROW
	return n;
}

static json_t *losses_json(const struct ctl_daemon *d, const struct ctl *c)
{
	struct loss_row rows[LOSS_ROWS];
	int n = collect_losses(d, c, rows);
	json_t *o = json_object();

	for (int i = 0; i < n; i++)
		json_object_set_new(o, rows[i].key, json_integer((json_int_t)rows[i].v));
	return o;
}

/* What worked, beside the losses: how much the outputs carried. */
static json_t *outputs_json(const struct ctl_daemon *d)
{
	struct ctl_losses l;

	memset(&l, 0, sizeof(l));
	if (d->losses)
		d->losses(d->ctx, &l);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		"mirror_copies", (json_int_t)l.mirror.mirrored,
		"mirror_vxlan_sent", (json_int_t)l.mirror.vxlan_sent,
		"mirror_vxlan_skipped", (json_int_t)l.mirror.vxlan_skipped,
		"mirror_pcap_records", (json_int_t)l.mirror.pcap_records,
		"drop_capture_copies", (json_int_t)l.mirror.captured,
		"drop_capture_records", (json_int_t)l.mirror.drop_records,
		"pcap_files_rotated", (json_int_t)l.mirror.files_rotated,
		"flowlog_records", (json_int_t)l.flowlog.records_written,
		"flowlog_nodata_records", (json_int_t)l.flowlog.nodata_records,
		"flowlog_files", (json_int_t)l.flowlog.files_written,
		"decision_log_lines", (json_int_t)l.flowlog.decisions_written);
}

json_t *ctl_stats(const struct ctl_daemon *d)
{
	uint64_t gen;
	const struct policy *pol = d->policy(d->ctx, &gen);
	struct stats_json j = { json_array(), json_array(), json_array() };
	struct counter_sink s = { js_nacl, js_sg, js_iface, &j };
	uint64_t reasons[STAGE_COUNT][REASON_COUNT] = { { 0 } };
	json_t *queues = json_array(), *rs = json_array();
	struct ct_stats ct = { 0 };

	walk_counters(d, pol, &s);
	for (int i = 0; i < d->n_workers; i++) {
		struct ctl_worker_stats w;
		d->worker(d->ctx, i, &w);
		ct.allowance_exceeded += w.ct.allowance_exceeded;
		ct.evicted_embryonic += w.ct.evicted_embryonic;
		ct.tcp_invalid += w.ct.tcp_invalid;
		ct.tcp_rst_ignored += w.ct.tcp_rst_ignored;
		ct.source_rate_exceeded += w.ct.source_rate_exceeded;
		ct.source_share_exceeded += w.ct.source_share_exceeded;
		for (int st = 0; st < STAGE_COUNT; st++)
			for (int r = 0; r < REASON_COUNT; r++)
				reasons[st][r] += w.pl.packets[st][r];
		json_array_append_new(queues, json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
							"s:I, s:I, s:I}",
			"queue", w.queue, "packets", (json_int_t)w.packets,
			"accepted", (json_int_t)w.pl.accepted, "rejected", (json_int_t)w.pl.rejected,
			"batches", (json_int_t)w.batches, "enobufs", (json_int_t)w.enobufs,
			"truncated", (json_int_t)w.truncated,
			"netlink_errors", (json_int_t)w.netlink_errors,
			"receive_errors", (json_int_t)w.recv_errors,
			"send_errors", (json_int_t)w.send_errors,
			"audit_would_refuse", (json_int_t)w.audit_would_refuse));
	}
	for (int st = 0; st < STAGE_COUNT; st++)
		for (int r = 0; r < REASON_COUNT; r++)
			if (reasons[st][r])
				json_array_append_new(rs, json_pack("{s:s, s:s, s:I}",
					"stage", stage_name((enum stage)st),
					"reason", reason_name((enum reason)r),
					"packets", (json_int_t)reasons[st][r]));
	json_t *cj = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
		"allowance_exceeded", (json_int_t)ct.allowance_exceeded,
		"evicted_embryonic", (json_int_t)ct.evicted_embryonic,
		"tcp_invalid", (json_int_t)ct.tcp_invalid,
		"tcp_rst_ignored", (json_int_t)ct.tcp_rst_ignored,
		"source_rate_exceeded", (json_int_t)ct.source_rate_exceeded,
		"source_share_exceeded", (json_int_t)ct.source_share_exceeded);
	return json_pack("{s:b, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "ok", 1,
			 "generation", (json_int_t)gen, "nacl_rules", j.nacl, "sg_rules", j.sg,
			 "interfaces", j.ifaces, "reasons", rs, "queues", queues,
			 "losses", losses_json(d, NULL), "outputs", outputs_json(d), "conntrack", cj);
}

/* ------------------------------------------------------------ Prometheus text */

/* The first call may find the buffer empty (s NULL, cap 0): vsnprintf is then
 * given NULL and 0, never NULL + 0 (undefined behaviour), and the buffer
 * grows to hold at least the text and its terminating NUL, so an empty text
 * cannot make it realloc to zero bytes (which frees the buffer). */
void ctl_text_put(struct ctl_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->oom)
		return;
	for (;;) {
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if (t->s && (size_t)n < room)
			break;
		size_t need = t->len + (size_t)n + 1;
		size_t cap = t->cap * 2 > need ? t->cap * 2 : need;
		if (cap < 256)
			cap = 256;
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

static void head(struct ctl_text *t, const char *name, const char *type, const char *help);

/* The state file (issue #13): its age, what the start restored and dropped. */
static int64_t state_age(const struct state_counters *sc)
{
	struct timespec ts;
	uint64_t w = sc ? counter_get(&sc->written_ns) : 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	if (!w)
		return -1;
	return now > w ? (int64_t)((now - w) / 1000000000u) : 0;
}

/* The offload (Vpcfw.Offload, issue #16). */
static void offload_metrics(struct ctl_text *t, const struct ctl_daemon *d,
			    const struct ctl_worker_stats *w)
{
	const struct ctl_offload_stats *o = d->offload;

	if (!o || !counter_get(&o->enabled))
		return;
	head(t, "vpcfw_offload_marked_total", "counter",
	     "ACCEPT verdicts that marked their flow for the kernel to pass (again after a take-back)");
	for (int i = 0; i < d->n_workers; i++)
		ctl_text_put(t, "vpcfw_offload_marked_total{queue=\"%u\"} %" PRIu64 "\n", w[i].queue,
			     w[i].offload_marked);
	head(t, "vpcfw_offload_missed_total", "counter",
	     "packets of marked flows that still reached the queue: a kernel rule is missing");
	for (int i = 0; i < d->n_workers; i++)
		ctl_text_put(t, "vpcfw_offload_missed_total{queue=\"%u\"} %" PRIu64 "\n", w[i].queue,
			     w[i].offload_missed);
	head(t, "vpcfw_offload_no_conntrack_total", "counter",
	     "offloadable packets without a kernel conntrack entry (no offload rules, NOTRACK, table full): "
	     "kept on the queue");
	for (int i = 0; i < d->n_workers; i++)
		ctl_text_put(t, "vpcfw_offload_no_conntrack_total{queue=\"%u\"} %" PRIu64 "\n",
			     w[i].queue, w[i].offload_no_conntrack);
	head(t, "vpcfw_offload_takebacks_total", "counter",
	     "times every offloaded flow was taken back from the kernel, by result");
	ctl_text_put(t, "vpcfw_offload_takebacks_total{result=\"ok\"} %" PRIu64 "\n",
		     counter_get(&o->takebacks) - counter_get(&o->errors));
	ctl_text_put(t, "vpcfw_offload_takebacks_total{result=\"error\"} %" PRIu64 "\n",
		     counter_get(&o->errors));
	head(t, "vpcfw_offload_taken_back_total", "counter",
	     "kernel conntrack entries whose offload mark a take-back cleared");
	ctl_text_put(t, "vpcfw_offload_taken_back_total %" PRIu64 "\n", counter_get(&o->cleared));
}

static void state_metrics(struct ctl_text *t, const struct state_counters *sc)
{
	if (!sc || !counter_get(&sc->enabled))
		return;
	head(t, "vpcfw_state_file_age_seconds", "gauge",
	     "seconds since the state file was last written (-1: never)");
	ctl_text_put(t, "vpcfw_state_file_age_seconds %" PRId64 "\n", state_age(sc));
	head(t, "vpcfw_state_writes_total", "counter", "state-file snapshots written, by result");
	ctl_text_put(t, "vpcfw_state_writes_total{result=\"ok\"} %" PRIu64 "\n",
		     counter_get(&sc->writes));
	ctl_text_put(t, "vpcfw_state_writes_total{result=\"error\"} %" PRIu64 "\n",
		     counter_get(&sc->write_errors));
	head(t, "vpcfw_state_flows_restored", "gauge", "flows restored from the state file at start");
	ctl_text_put(t, "vpcfw_state_flows_restored %" PRIu64 "\n", counter_get(&sc->restored));
	head(t, "vpcfw_state_flows_dropped", "gauge",
	     "flows of the state file not restored at start, by cause");
	ctl_text_put(t, "vpcfw_state_flows_dropped{reason=\"expired\"} %" PRIu64 "\n",
		     counter_get(&sc->dropped_expired));
	ctl_text_put(t, "vpcfw_state_flows_dropped{reason=\"interface_gone\"} %" PRIu64 "\n",
		     counter_get(&sc->dropped_unknown_iface));
	ctl_text_put(t, "vpcfw_state_flows_dropped{reason=\"other\"} %" PRIu64 "\n",
		     counter_get(&sc->dropped_other));
	head(t, "vpcfw_state_flowlog_entries", "gauge",
	     "flow-log entries of open capture windows: in the last file written, restored and "
	     "dropped at start");
	ctl_text_put(t, "vpcfw_state_flowlog_entries{what=\"written\"} %" PRIu64 "\n",
		     counter_get(&sc->last_fl_entries));
	ctl_text_put(t, "vpcfw_state_flowlog_entries{what=\"restored\"} %" PRIu64 "\n",
		     counter_get(&sc->fl_restored));
	ctl_text_put(t, "vpcfw_state_flowlog_entries{what=\"dropped\"} %" PRIu64 "\n",
		     counter_get(&sc->fl_dropped));
	head(t, "vpcfw_state_file_refused", "gauge", "1: the state file found at start was refused");
	ctl_text_put(t, "vpcfw_state_file_refused %" PRIu64 "\n", counter_get(&sc->refused));
}

/* The HA pair's sync (ha.h): this node, its peer, the bulk sync, traffic. */
static json_t *sync_json(const struct ha *h)
{
	struct ha_status st;

	if (!h)
		return json_null();
	ha_read(h, &st);
	json_t *dropped = json_object();
	for (int i = 1; i < SYNC_DROP_NREASONS; i++)
		json_object_set_new(dropped, sync_drop_name(i), json_integer((json_int_t)st.dropped[i]));
	return json_pack("{s:I, s:b, s:s, s:{s:I, s:b, s:b, s:I}, s:{s:s, s:I, s:I, s:I, s:I, s:I},"
			 " s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:o},"
			 " s:{s:I, s:I, s:I, s:I, s:I, s:I}}",
		"node", (json_int_t)st.node_id, "ready", st.ready,
		"state", st.ready ? "ready" : "bulk-syncing",
		"peer", "node", (json_int_t)st.peer_node, "up", st.peer_up, "ready", st.peer_ready,
		"last_heard_ms", (json_int_t)st.peer_heard_ms,
		"bulk", "state", ha_bulk_state_name(st.bulk_state),
		"received", (json_int_t)st.bulk_received, "total", (json_int_t)st.bulk_total,
		"ms", (json_int_t)st.bulk_ms, "served", (json_int_t)st.bulk_served,
		"served_flows", (json_int_t)st.bulk_served_flows,
		"lag_us", (json_int_t)st.lag_us,
		"sent", "messages", (json_int_t)st.msgs_sent, "bytes", (json_int_t)st.bytes_sent,
		"records", (json_int_t)st.records_sent, "errors", (json_int_t)st.send_errors,
		"coalesced", (json_int_t)st.coalesced,
		"received", "messages", (json_int_t)st.msgs_received,
		"bytes", (json_int_t)st.bytes_received, "records", (json_int_t)st.records_received,
		"dropped", dropped,
		"flows", "changes_lost", (json_int_t)st.changes_lost, "applied", (json_int_t)st.applied,
		"apply_failed", (json_int_t)st.apply_failed,
		"unknown_interface", (json_int_t)st.records_unknown_iface,
		"no_queue", (json_int_t)st.records_no_queue,
		"overflow", (json_int_t)st.records_overflow);
}

static void sync_metrics(struct ctl_text *t, const struct ha *h)
{
	struct ha_status st;

	if (!h)
		return;
	ha_read(h, &st);
	head(t, "vpcfw_sync_ready", "gauge",
	     "1: this node's flow table is complete (bulk sync from the peer done, or no peer answered)");
	ctl_text_put(t, "vpcfw_sync_ready %d\n", st.ready);
	head(t, "vpcfw_sync_peer_up", "gauge", "1: the peer was heard within 3.5 s");
	ctl_text_put(t, "vpcfw_sync_peer_up %d\n", st.peer_up);
	head(t, "vpcfw_sync_peer_ready", "gauge", "1: the peer says its flow table is complete");
	ctl_text_put(t, "vpcfw_sync_peer_ready %d\n", st.peer_ready);
	head(t, "vpcfw_sync_peer_last_heard_seconds", "gauge",
	     "seconds since the peer's last message (-1: never)");
	ctl_text_put(t, "vpcfw_sync_peer_last_heard_seconds %.3f\n",
		     st.peer_heard_ms < 0 ? -1.0 : (double)st.peer_heard_ms / 1000);
	head(t, "vpcfw_sync_lag_seconds", "gauge",
	     "how long the peer's last update waited at the peer before it was sent");
	ctl_text_put(t, "vpcfw_sync_lag_seconds %.6f\n", (double)st.lag_us / 1e6);
	head(t, "vpcfw_sync_bulk_flows", "gauge", "the last bulk sync from the peer: flows received and announced");
	ctl_text_put(t, "vpcfw_sync_bulk_flows{kind=\"received\"} %" PRIu64 "\n", st.bulk_received);
	ctl_text_put(t, "vpcfw_sync_bulk_flows{kind=\"total\"} %" PRIu64 "\n", st.bulk_total);
	head(t, "vpcfw_sync_bulk_served_total", "counter", "bulk syncs given to the peer");
	ctl_text_put(t, "vpcfw_sync_bulk_served_total %" PRIu64 "\n", st.bulk_served);
	head(t, "vpcfw_sync_messages_total", "counter", "sync messages, by direction");
	ctl_text_put(t, "vpcfw_sync_messages_total{direction=\"sent\"} %" PRIu64 "\n", st.msgs_sent);
	ctl_text_put(t, "vpcfw_sync_messages_total{direction=\"received\"} %" PRIu64 "\n",
		     st.msgs_received);
	head(t, "vpcfw_sync_bytes_total", "counter", "sync message bytes (UDP payload), by direction");
	ctl_text_put(t, "vpcfw_sync_bytes_total{direction=\"sent\"} %" PRIu64 "\n", st.bytes_sent);
	ctl_text_put(t, "vpcfw_sync_bytes_total{direction=\"received\"} %" PRIu64 "\n",
		     st.bytes_received);
	head(t, "vpcfw_sync_records_total", "counter", "flow records in sync messages, by direction");
	ctl_text_put(t, "vpcfw_sync_records_total{direction=\"sent\"} %" PRIu64 "\n", st.records_sent);
	ctl_text_put(t, "vpcfw_sync_records_total{direction=\"received\"} %" PRIu64 "\n",
		     st.records_received);
	head(t, "vpcfw_sync_changes_coalesced_total", "counter",
	     "flow changes not sent on their own: a later change of the same flow replaced them in the message being built");
	ctl_text_put(t, "vpcfw_sync_changes_coalesced_total %" PRIu64 "\n", st.coalesced);
	head(t, "vpcfw_sync_send_errors_total", "counter", "sync messages the socket refused");
	ctl_text_put(t, "vpcfw_sync_send_errors_total %" PRIu64 "\n", st.send_errors);
	head(t, "vpcfw_sync_dropped_total", "counter", "received sync messages dropped, by reason");
	for (int i = 1; i < SYNC_DROP_NREASONS; i++)
		ctl_text_put(t, "vpcfw_sync_dropped_total{reason=\"%s\"} %" PRIu64 "\n",
			     sync_drop_name(i), st.dropped[i]);
	head(t, "vpcfw_sync_flow_changes_lost_total", "counter",
	     "this node's flow changes not sent: a worker's sync ring was full");
	ctl_text_put(t, "vpcfw_sync_flow_changes_lost_total %" PRIu64 "\n", st.changes_lost);
	head(t, "vpcfw_sync_records_applied_total", "counter", "the peer's flow records, by result");
	ctl_text_put(t, "vpcfw_sync_records_applied_total{result=\"applied\"} %" PRIu64 "\n", st.applied);
	ctl_text_put(t, "vpcfw_sync_records_applied_total{result=\"failed\"} %" PRIu64 "\n",
		     st.apply_failed);
	ctl_text_put(t, "vpcfw_sync_records_applied_total{result=\"unknown_interface\"} %" PRIu64 "\n",
		     st.records_unknown_iface);
	ctl_text_put(t, "vpcfw_sync_records_applied_total{result=\"no_queue\"} %" PRIu64 "\n",
		     st.records_no_queue);
	ctl_text_put(t, "vpcfw_sync_records_applied_total{result=\"overflow\"} %" PRIu64 "\n",
		     st.records_overflow);
}

static json_t *state_json(const struct state_counters *sc)
{
	if (!sc || !counter_get(&sc->enabled))
		return json_null();
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
		"age_seconds", (json_int_t)state_age(sc),
		"flows_written", (json_int_t)counter_get(&sc->last_flows),
		"flowlog_entries_written", (json_int_t)counter_get(&sc->last_fl_entries),
		"flowlog_entries_restored", (json_int_t)counter_get(&sc->fl_restored),
		"flowlog_entries_dropped", (json_int_t)counter_get(&sc->fl_dropped),
		"writes", (json_int_t)counter_get(&sc->writes),
		"write_errors", (json_int_t)counter_get(&sc->write_errors),
		"restored", (json_int_t)counter_get(&sc->restored),
		"dropped_expired", (json_int_t)counter_get(&sc->dropped_expired),
		"dropped_interface_gone", (json_int_t)counter_get(&sc->dropped_unknown_iface),
		"dropped_other", (json_int_t)counter_get(&sc->dropped_other),
		"refused", counter_get(&sc->refused) != 0);
}

static void head(struct ctl_text *t, const char *name, const char *type, const char *help)
{
	ctl_text_put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void pm_nacl(void *arg, const struct nacl *n, const char *dir, const char *rule,
		    uint64_t packets)
{
	char a[128];
	ctl_text_put(arg, "vpcfw_nacl_rule_packets_total{acl=\"%s\",direction=\"%s\",rule=\"%s\"} %" PRIu64
	    "\n", esc(n->id, a, sizeof(a)), dir, rule, packets);
}

static void pm_sg(void *arg, const struct iface *f, const struct sg_rule *r, uint64_t packets)
{
	char a[128], b[128], c[160];
	/* rule: the stable label, never the list position (which shifts
	 * when other rules are edited) */
	ctl_text_put(arg, "vpcfw_sg_rule_packets_total{eni=\"%s\",sg=\"%s\",direction=\"%s\",rule=\"%s\"} %"
	    PRIu64 "\n", esc(f->id, a, sizeof(a)), esc(r->group->id, b, sizeof(b)),
	    r->egress ? "egress" : "ingress", esc(r->m->label ? r->m->label : "?", c, sizeof(c)),
	    packets);
}

static void pm_iface(void *arg, const struct iface *f, const uint64_t v[IFACE_HITS])
{
	static const char *const names[IFACE_HITS][2] = {
		[IFACE_HIT_OUT_ACCEPT] = { "out", "accept" }, [IFACE_HIT_OUT_REJECT] = { "out", "reject" },
		[IFACE_HIT_IN_ACCEPT] = { "in", "accept" }, [IFACE_HIT_IN_REJECT] = { "in", "reject" },
	};
	char a[128];
	for (int k = 0; k < IFACE_HITS; k++)
		ctl_text_put(arg, "vpcfw_interface_packets_total{eni=\"%s\",direction=\"%s\",verdict=\"%s\"} %"
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

char *ctl_metrics(const struct ctl_daemon *d, const struct ctl *c)
{
	struct ctl_text t = { 0 };
	uint64_t gen;
	const struct policy *pol = d->policy(d->ctx, &gen);
	struct ctl_worker_stats *w = calloc((size_t)d->n_workers + 1, sizeof(*w));
	uint64_t reasons[STAGE_COUNT][REASON_COUNT] = { { 0 } };
	uint64_t used = 0, max = 0, exceeded = 0, evicted = 0, tcp_invalid = 0, rst_ignored = 0;
	uint64_t src_rate = 0, src_share = 0;

	if (!w)
		return NULL;
	for (int i = 0; i < d->n_workers; i++) {
		d->worker(d->ctx, i, &w[i]);
		used += w[i].ct.used;
		max += w[i].ct.max;
		exceeded += w[i].ct.allowance_exceeded;
		evicted += w[i].ct.evicted_embryonic;
		tcp_invalid += w[i].ct.tcp_invalid;
		rst_ignored += w[i].ct.tcp_rst_ignored;
		src_rate += w[i].ct.source_rate_exceeded;
		src_share += w[i].ct.source_share_exceeded;
		for (int st = 0; st < STAGE_COUNT; st++)
			for (int r = 0; r < REASON_COUNT; r++)
				reasons[st][r] += w[i].pl.packets[st][r];
	}
	head(&t, "vpcfw_build_info", "gauge", "vpcfw version");
	ctl_text_put(&t, "vpcfw_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	head(&t, "vpcfw_start_time_seconds", "gauge", "start of the daemon, seconds since the epoch");
	ctl_text_put(&t, "vpcfw_start_time_seconds %" PRIu64 "\n", d->started_s);
	head(&t, "vpcfw_policy_generation", "gauge", "number of the configuration in force");
	ctl_text_put(&t, "vpcfw_policy_generation %" PRIu64 "\n", gen);
	head(&t, "vpcfw_conntrack_used", "gauge", "flows tracked now");
	ctl_text_put(&t, "vpcfw_conntrack_used %" PRIu64 "\n", used);
	head(&t, "vpcfw_conntrack_allowance_available", "gauge", "room for new flows");
	ctl_text_put(&t, "vpcfw_conntrack_allowance_available %" PRIu64 "\n", max > used ? max - used : 0);
	head(&t, "vpcfw_conntrack_allowance_exceeded_total", "counter",
	     "new flows refused because the table was full");
	ctl_text_put(&t, "vpcfw_conntrack_allowance_exceeded_total %" PRIu64 "\n", exceeded);
	head(&t, "vpcfw_conntrack_evicted_embryonic_total", "counter",
	     "SYN-sent/-received flows evicted to make room in a full table");
	ctl_text_put(&t, "vpcfw_conntrack_evicted_embryonic_total %" PRIu64 "\n", evicted);
	head(&t, "vpcfw_conntrack_tcp_invalid_total", "counter",
	     "TCP segments dropped outside their flow's window (or, TcpLoose off, of no flow)");
	ctl_text_put(&t, "vpcfw_conntrack_tcp_invalid_total %" PRIu64 "\n", tcp_invalid);
	head(&t, "vpcfw_conntrack_tcp_rst_ignored_total", "counter",
	     "RSTs in the window but not at the expected sequence number: passed, flow kept");
	ctl_text_put(&t, "vpcfw_conntrack_tcp_rst_ignored_total %" PRIu64 "\n", rst_ignored);
	head(&t, "vpcfw_conntrack_source_rate_exceeded_total", "counter",
	     "new flows refused: their source exceeded PerSourceNewFlowsPerSecond (beyond AWS)");
	ctl_text_put(&t, "vpcfw_conntrack_source_rate_exceeded_total %" PRIu64 "\n", src_rate);
	head(&t, "vpcfw_conntrack_source_share_exceeded_total", "counter",
	     "new flows refused: their source held PerSourceConntrackPercent of the table (beyond AWS)");
	ctl_text_put(&t, "vpcfw_conntrack_source_share_exceeded_total %" PRIu64 "\n", src_share);
	head(&t, "vpcfw_queue_packets_total", "counter", "packets decided, by queue and verdict");
	for (int i = 0; i < d->n_workers; i++) {
		ctl_text_put(&t, "vpcfw_queue_packets_total{queue=\"%u\",verdict=\"accept\"} %" PRIu64 "\n",
		    w[i].queue, w[i].pl.accepted);
		ctl_text_put(&t, "vpcfw_queue_packets_total{queue=\"%u\",verdict=\"reject\"} %" PRIu64 "\n",
		    w[i].queue, w[i].pl.rejected);
	}
	head(&t, "vpcfw_kernel_queue_dropped_total", "counter",
	     "packets the kernel dropped before vpcfwd saw them, by cause");
	for (int i = 0; i < d->n_workers; i++) {
		if (!w[i].have_kernel)
			continue;
		ctl_text_put(&t, "vpcfw_kernel_queue_dropped_total{queue=\"%u\",cause=\"queue_full\"} %" PRIu64
		    "\n", w[i].queue, w[i].kernel_queue_dropped);
		ctl_text_put(&t, "vpcfw_kernel_queue_dropped_total{queue=\"%u\",cause=\"socket_full\"} %" PRIu64
		    "\n", w[i].queue, w[i].kernel_user_dropped);
	}
	head(&t, "vpcfw_queue_errors_total", "counter",
	     "NFQUEUE netlink errors of vpcfwd's side, by queue and cause (enobufs: the kernel "
	     "could not deliver, packets lost to the socket)");
	for (int i = 0; i < d->n_workers; i++) {
		const struct { const char *cause; uint64_t v; } qe[] = {
			{ "enobufs", w[i].enobufs }, { "truncated", w[i].truncated },
			{ "netlink", w[i].netlink_errors }, { "receive", w[i].recv_errors },
			{ "send", w[i].send_errors },
		};
		for (size_t k = 0; k < sizeof(qe) / sizeof(qe[0]); k++)
			ctl_text_put(&t, "vpcfw_queue_errors_total{queue=\"%u\",cause=\"%s\"} %" PRIu64 "\n",
			    w[i].queue, qe[k].cause, qe[k].v);
	}
	head(&t, "vpcfw_audit_would_refuse_total", "counter",
	     "packets accepted in audit mode that the policy refuses");
	for (int i = 0; i < d->n_workers; i++)
		ctl_text_put(&t, "vpcfw_audit_would_refuse_total{queue=\"%u\"} %" PRIu64 "\n", w[i].queue,
		    w[i].audit_would_refuse);
	head(&t, "vpcfw_decisions_total", "counter", "verdicts by deciding stage and reason code");
	for (int st = 0; st < STAGE_COUNT; st++)
		for (int r = 0; r < REASON_COUNT; r++)
			if (reasons[st][r])
				ctl_text_put(&t, "vpcfw_decisions_total{stage=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				    stage_name((enum stage)st), reason_name((enum reason)r), reasons[st][r]);
	offload_metrics(&t, d, w);
	state_metrics(&t, d->state);
	sync_metrics(&t, d->ha);
	struct ctl_counters cn;
	ctl_get_counters(c, &cn);
	head(&t, "vpcfw_control_refused_total", "counter",
	     "control-socket clients and requests refused, every cause");
	ctl_text_put(&t, "vpcfw_control_refused_total %" PRIu64 "\n", ctl_refused(c));
	head(&t, "vpcfw_control_clients", "gauge", "control-socket clients connected");
	ctl_text_put(&t, "vpcfw_control_clients %" PRIu64 "\n", cn.clients);
	head(&t, "vpcfw_control_clients_refused_total", "counter",
	     "control-socket clients refused at connect, by cause");
	ctl_text_put(&t, "vpcfw_control_clients_refused_total{reason=\"permission\"} %" PRIu64 "\n",
	    cn.refused_permission);
	ctl_text_put(&t, "vpcfw_control_clients_refused_total{reason=\"too_many_clients\"} %" PRIu64 "\n",
	    cn.refused_too_many);
	head(&t, "vpcfw_control_clients_dropped_total", "counter",
	     "control-socket clients dropped, by cause");
	ctl_text_put(&t, "vpcfw_control_clients_dropped_total{reason=\"idle\"} %" PRIu64 "\n",
	    cn.dropped_idle);
	ctl_text_put(&t, "vpcfw_control_clients_dropped_total{reason=\"request_too_long\"} %" PRIu64 "\n",
	    cn.dropped_too_long);
	head(&t, "vpcfw_control_requests_refused_total", "counter",
	     "control-socket requests refused, by cause");
	ctl_text_put(&t, "vpcfw_control_requests_refused_total{reason=\"permission\"} %" PRIu64 "\n",
	    cn.requests_refused);
	ctl_text_put(&t, "vpcfw_control_requests_refused_total{reason=\"busy\"} %" PRIu64 "\n",
	    cn.requests_busy);

	/* losses: every family always present, zero when its output is off */
	struct loss_row rows[LOSS_ROWS];
	int nrows = collect_losses(d, c, rows);
	for (size_t f = 0; f < sizeof(loss_families) / sizeof(loss_families[0]); f++) {
		head(&t, loss_families[f].name, "counter", loss_families[f].help);
		for (int i = 0; i < nrows; i++) {
			if (strcmp(rows[i].family, loss_families[f].name))
				continue;
			if (rows[i].labels[0])
				ctl_text_put(&t, "%s{%s} %" PRIu64 "\n", rows[i].family, rows[i].labels, rows[i].v);
			else
				ctl_text_put(&t, "%s %" PRIu64 "\n", rows[i].family, rows[i].v);
		}
	}
	struct ctl_losses l;
	memset(&l, 0, sizeof(l));
	if (d->losses)
		d->losses(d->ctx, &l);
	head(&t, "vpcfw_mirror_copies_total", "counter",
	     "copies queued for a mirror session or the drop capture");
	ctl_text_put(&t, "vpcfw_mirror_copies_total{output=\"session\"} %" PRIu64 "\n", l.mirror.mirrored);
	ctl_text_put(&t, "vpcfw_mirror_copies_total{output=\"drop_capture\"} %" PRIu64 "\n",
	    l.mirror.captured);
	head(&t, "vpcfw_mirror_vxlan_sent_total", "counter", "VXLAN datagrams sent");
	ctl_text_put(&t, "vpcfw_mirror_vxlan_sent_total %" PRIu64 "\n", l.mirror.vxlan_sent);
	head(&t, "vpcfw_mirror_records_total", "counter", "pcap records written, by output");
	ctl_text_put(&t, "vpcfw_mirror_records_total{output=\"pcap_target\"} %" PRIu64 "\n",
	    l.mirror.pcap_records);
	ctl_text_put(&t, "vpcfw_mirror_records_total{output=\"drop_capture\"} %" PRIu64 "\n",
	    l.mirror.drop_records);
	head(&t, "vpcfw_flowlog_records_total", "counter", "flow-log records written (OK, NODATA)");
	ctl_text_put(&t, "vpcfw_flowlog_records_total{log_status=\"OK\"} %" PRIu64 "\n",
	    l.flowlog.records_written);
	ctl_text_put(&t, "vpcfw_flowlog_records_total{log_status=\"NODATA\"} %" PRIu64 "\n",
	    l.flowlog.nodata_records);
	head(&t, "vpcfw_flowlog_files_total", "counter", "flow-log files completed");
	ctl_text_put(&t, "vpcfw_flowlog_files_total %" PRIu64 "\n", l.flowlog.files_written);

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
	     "packets admitted by a security-group rule at an interface (rule: SecurityGroupRuleId, "
	     "else rule- and a hash of the rule's content)");
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
int ctl_write_metrics(const struct ctl_daemon *d, const struct ctl *c, const char *path)
{
	char tmp[300];
	const char *name;
	char *s = ctl_metrics(d, c);
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

/* ------------------------------------------------------------ verbs */

static json_t *control_json(const struct ctl *c)
{
	struct ctl_counters n;

	ctl_get_counters(c, &n);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		"clients", (json_int_t)n.clients,
		"log_suppressed", (json_int_t)n.log_suppressed,
		"refused_permission", (json_int_t)n.refused_permission,
		"refused_too_many_clients", (json_int_t)n.refused_too_many,
		"dropped_idle", (json_int_t)n.dropped_idle,
		"dropped_request_too_long", (json_int_t)n.dropped_too_long,
		"requests_refused", (json_int_t)n.requests_refused,
		"requests_busy", (json_int_t)n.requests_busy);
}

/* The offload in `status`: null when off; `hint` names what looks wrong. */
static json_t *offload_json(const struct ctl_daemon *d, uint64_t marked, uint64_t missed,
			    uint64_t no_ct)
{
	const struct ctl_offload_stats *o = d->offload;

	if (!o || !counter_get(&o->enabled))
		return json_null();
	const char *hint = counter_get(&o->pending)
		? "the last take-back failed (see the log): marked flows still bypass the policy"
		: missed ? "packets of offloaded flows still reach the queue: are the offload's accept "
			   "rule (ahead of the NFQUEUE rule) and mark rule (after it) installed? "
			   "(contrib/offload)"
		: no_ct ? "offloadable flows without a kernel conntrack entry stay on the queue: are the "
			  "offload's accept rule (ahead of the NFQUEUE rule) and mark rule installed "
			  "(contrib/offload; they make the kernel track flows)? else the kernel does not "
			  "track them (raw-table NOTRACK) or its table is full (nf_conntrack_max)"
		: "";
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:s}",
		"marked", (json_int_t)marked, "missed", (json_int_t)missed,
		"no_conntrack", (json_int_t)no_ct,
		"takebacks", (json_int_t)counter_get(&o->takebacks),
		"taken_back", (json_int_t)counter_get(&o->cleared),
		"takeback_errors", (json_int_t)counter_get(&o->errors),
		"takeback_pending", counter_get(&o->pending) != 0, "hint", hint);
}

static json_t *v_status(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	const struct ctl_daemon *d = c->d;
	uint64_t gen, used = 0, max = 0, exceeded = 0, kdrop = 0, udrop = 0;
	uint64_t offl_marked = 0, offl_missed = 0, offl_no_ct = 0;
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
		offl_marked += w.offload_marked;
		offl_missed += w.offload_missed;
		offl_no_ct += w.offload_no_conntrack;
		json_array_append_new(queues, json_pack("{s:i, s:I, s:I, s:I, s:I, s:I}",
			"queue", w.queue, "packets", (json_int_t)w.packets,
			"flows", (json_int_t)w.ct.used,
			"kernel_waiting", (json_int_t)w.kernel_waiting,
			"kernel_queue_dropped", (json_int_t)w.kernel_queue_dropped,
			"kernel_socket_dropped", (json_int_t)w.kernel_user_dropped));
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return json_pack("{s:b, s:s, s:I, s:I, s:i, s:i, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, "
			 "s:o, s:o, s:o, s:o}",
		"ok", 1, "version", PACKAGE_VERSION,
		"uptime", (json_int_t)((uint64_t)ts.tv_sec - d->started_s),
		"generation", (json_int_t)gen,
		"interfaces", pol->n_ifaces, "nacls", pol->n_nacls, "queues", queues,
		"conntrack_used", (json_int_t)used, "conntrack_max", (json_int_t)max,
		"conntrack_allowance_available", (json_int_t)(max > used ? max - used : 0),
		"conntrack_allowance_exceeded", (json_int_t)exceeded,
		"kernel_queue_dropped", (json_int_t)kdrop, "kernel_socket_dropped", (json_int_t)udrop,
		"audit", d->audit ? d->audit(d->ctx) : 0,
		"shadow", c->shadow ? json_string(shadow_path(c->shadow)) : json_null(),
		"control", control_json(c), "state_file", state_json(d->state),
		"sync", sync_json(d->ha),
		"offload", offload_json(d, offl_marked, offl_missed, offl_no_ct));
}

static json_t *v_stats(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	(void)peer;
	(void)req;
	json_t *r = ctl_stats(c->d);
	if (r) {
		json_object_set_new(r, "control", control_json(c));
		json_object_set_new(r, "losses", losses_json(c->d, c));
	}
	return r;
}

static json_t *v_metrics(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	(void)peer;
	(void)req;
	char *s = ctl_metrics(c->d, c);
	if (!s)
		return ctl_error("out of memory");
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
	if ((s = ctl_str(req, "interface")) != NULL) {
		const struct iface *f = explain_iface(q.pol, s);
		if (!f)
			return ctl_error("no interface or bound device '%s'", s);
		q.has_iface = true;
		q.iface = f->ct_id;
	}
	if ((s = ctl_str(req, "address")) != NULL) {
		if (!addr_parse(s, &q.addr, &fam))
			return ctl_error("'%s' is not an IPv4 or IPv6 address", s);
		q.has_addr = true;
	}
	json_t *p = json_object_get(req, "port");
	if (p) {
		if (!json_is_integer(p) || json_integer_value(p) < 0 || json_integer_value(p) > 65535)
			return ctl_error("port is 0-65535");
		q.has_port = true;
		q.port = (uint16_t)json_integer_value(p);
	}
	json_t *l = json_object_get(req, "limit");
	if (l) {
		if (!json_is_integer(l) || json_integer_value(l) < 0 ||
		    json_integer_value(l) > CTL_FLOWS_MAX)
			return ctl_error("limit is 0-%d", CTL_FLOWS_MAX);
		q.limit = json_integer_value(l);
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	q.now_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	q.out = json_array();
	if (d->flows(d->ctx, flow_one, &q) < 0) {
		json_decref(q.out);
		return ctl_error("the workers did not answer in time");
	}
	return json_pack("{s:b, s:I, s:o}", "ok", 1, "matched", (json_int_t)q.matched, "flows", q.out);
}

static json_t *v_explain(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	uint64_t gen;
	(void)peer;
	return explain_json(c->d->policy(c->d->ctx, &gen), req);
}

/* check-config, reload and shadow-load compile a configuration: prepared
 * here, compiled on the compiling thread (run_job), finished on the main
 * thread (finish_job). */
static struct job *new_job(enum job_kind kind, const struct ctl_peer *peer)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j) {
		j->kind = kind;
		j->peer = *peer;
		j->client = -1;
	}
	return j;
}

static json_t *p_check(struct ctl *c, const struct ctl_peer *peer, const json_t *req,
		       struct job **j)
{
	(void)c;
	if (json_object_get(req, "files") || json_object_get(req, "path"))
		return ctl_error("check-config checks the daemon's own files; to check others, "
			    "vpcfwctl check-config -c PATH compiles them without the daemon");
	*j = new_job(JOB_CHECK, peer);
	return *j ? NULL : ctl_error("out of memory");
}

static json_t *p_reload(struct ctl *c, const struct ctl_peer *peer, const json_t *req,
			struct job **j)
{
	(void)c;
	(void)req;
	*j = new_job(JOB_RELOAD, peer);
	return *j ? NULL : ctl_error("out of memory");
}

/* The candidate's files come in the request, read by vpcfwctl with its
 * user's rights: the daemon opens no path on a client's behalf. */
static json_t *p_shadow_load(struct ctl *c, const struct ctl_peer *peer, const json_t *req,
			     struct job **j)
{
	const char *label = ctl_str(req, "path");
	const json_t *files = json_object_get(req, "files");
	size_t i;
	const json_t *f;

	if (!c->d->set_shadow)
		return ctl_error("shadow policies are not available");
	if (!json_is_array(files) || json_array_size(files) == 0)
		return ctl_error("shadow-load carries the configuration: \"files\": [{\"name\", "
			    "\"text\"}, ...] (the daemon opens no path for a client)");
	json_array_foreach(files, i, f)
		if (!json_is_string(json_object_get(f, "name")) ||
		    !json_is_string(json_object_get(f, "text")))
			return ctl_error("shadow-load: files[%zu] needs a \"name\" and a \"text\"", i);
	*j = new_job(JOB_SHADOW, peer);
	if (!*j)
		return ctl_error("out of memory");
	(*j)->files = json_incref((json_t *)files);
	(*j)->label = strdup(label ? label : "(sent)");
	return NULL;
}

static json_t *finish_shadow(struct ctl *c, struct job *j)
{
	if (!j->pol) {
		json_t *r = ctl_error("candidate %s refused; the shadow in place (if any) stays", j->label);
		json_object_set(r, "messages", j->msgs);
		return r;
	}
	struct policy *pol = j->pol;
	j->pol = NULL;
	uint32_t flows = pol->conntrack_max / (uint32_t)(c->d->n_workers > 0 ? c->d->n_workers : 1);
	if (flows > SHADOW_FLOWS_MAX)
		flows = SHADOW_FLOWS_MAX;
	int n_ifaces = pol->n_ifaces;
	struct shadow *s = shadow_create(pol, j->label, c->d->n_workers, flows);
	if (!s)
		return ctl_error("out of memory for the shadow policy");
	shadow_free(c->d->set_shadow(c->d->ctx, s));
	c->shadow = s;
	ctl_log_msg(c, LOG_NOTICE, "control: %s loaded shadow policy %s", j->peer.name, j->label);
	return json_pack("{s:b, s:s, s:i, s:I, s:O}", "ok", 1, "path", j->label,
			 "interfaces", n_ifaces, "flows_per_queue", (json_int_t)flows,
			 "messages", j->msgs);
}

static json_t *finish_reload(struct ctl *c, struct job *j)
{
	char msg[256] = "";
	uint64_t gen;
	bool ok;

	if (c->d->install) {
		ok = c->d->install(c->d->ctx, j->compiled, j->peer.name, msg, sizeof(msg));
		j->compiled = NULL;
	} else {
		ok = c->d->reload(c->d->ctx, j->peer.name, msg, sizeof(msg));
	}
	const struct policy *pol = c->d->policy(c->d->ctx, &gen);
	if (!ok)
		return ctl_error("reload refused, the running configuration stays: %s", msg);
	ctl_set_groups(c, pol->model->vpcfw.admin_group, pol->model->vpcfw.reader_group);
	ctl_set_read_only_public(c, pol->model->vpcfw.read_only_socket_public);
	return json_pack("{s:b, s:I}", "ok", 1, "generation", (json_int_t)gen);
}

static json_t *finish_job(struct ctl *c, struct job *j)
{
	switch (j->kind) {
	case JOB_CHECK: {
		json_t *r = json_pack("{s:b, s:b, s:O}", "ok", 1, "valid", j->pol != NULL,
				      "messages", j->msgs);
		return r;
	}
	case JOB_SHADOW:
		return finish_shadow(c, j);
	case JOB_RELOAD:
		return finish_reload(c, j);
	}
	return ctl_error("unknown job");
}

static json_t *v_audit(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	json_t *on = json_object_get(req, "on");

	if (!c->d->set_audit)
		return ctl_error("audit is not available");
	if (on) {
		if (!json_is_boolean(on))
			return ctl_error("audit takes on or off");
		c->d->set_audit(c->d->ctx, json_is_true(on));
		ctl_log_msg(c, LOG_NOTICE, "control: %s turned audit mode %s", peer->name,
		     json_is_true(on) ? "on: every packet is accepted" : "off");
	}
	return json_pack("{s:b, s:b}", "ok", 1, "audit", c->d->audit(c->d->ctx));
}

static json_t *v_shadow_report(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	json_t *l = json_object_get(req, "limit");
	(void)peer;

	if (!c->shadow)
		return ctl_error("no shadow policy is loaded");
	if (l && (!json_is_integer(l) || json_integer_value(l) < 0 ||
		  json_integer_value(l) > CTL_FLOWS_MAX))
		return ctl_error("limit is 0-%d", CTL_FLOWS_MAX);
	json_t *r = shadow_report(c->shadow, l ? json_integer_value(l) : CTL_FLOWS_MAX);
	return r ? r : ctl_error("out of memory");
}

static json_t *v_shadow_clear(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	(void)req;
	if (!c->shadow)
		return ctl_error("no shadow policy is loaded");
	shadow_free(c->d->set_shadow(c->d->ctx, NULL));
	c->shadow = NULL;
	ctl_log_msg(c, LOG_NOTICE, "control: %s cleared the shadow policy", peer->name);
	return json_pack("{s:b}", "ok", 1);
}

static const struct verb {
	const char *name;
	bool change;
	json_t *(*fn)(struct ctl *c, const struct ctl_peer *peer, const json_t *req);
	/* instead of fn: work for the compiling thread */
	json_t *(*prepare)(struct ctl *c, const struct ctl_peer *peer, const json_t *req,
			   struct job **j);
} verbs[] = {
	{ "status", false, v_status, NULL },
	{ "stats", false, v_stats, NULL },
	{ "flows", false, v_flows, NULL },
	{ "explain", false, v_explain, NULL },
	{ "check-config", false, NULL, p_check },
	{ "metrics", false, v_metrics, NULL },
	{ "reload", true, NULL, p_reload },
	{ "audit", true, v_audit, NULL },
	{ "shadow-load", true, NULL, p_shadow_load },
	{ "shadow-report", false, v_shadow_report, NULL },
	{ "shadow-clear", true, v_shadow_clear, NULL },
};

/* The answer to req, or NULL and *job: work to queue for the compiling
 * thread. */
static json_t *handle(struct ctl *c, const struct ctl_peer *peer, const json_t *req,
		      struct job **job)
{
	const char *verb = ctl_str(req, "verb");

	*job = NULL;
	if (!json_is_object(req) || !verb)
		return ctl_error("a request is an object with a \"verb\"");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(verbs[i].name, verb))
			continue;
		/* audit without "on" only reads */
		bool change = verbs[i].change &&
			      !(verbs[i].fn == v_audit && !json_object_get(req, "on"));
		if (!peer->reader || (change && !peer->admin)) {
			c->n.requests_refused++;
			log_refusal(c, "control: %s refused: %s needs %s", peer->name, verb,
				    peer->read_only_socket ? "the full control socket" :
				    "root or Access.AdminGroup");
			return ctl_error("permission denied: %s needs %s", verb,
				    peer->read_only_socket ? "the full control socket (this one is "
				    "read-only)" : "root or membership of Access.AdminGroup");
		}
		if (verbs[i].prepare && c->n_jobs >= CTL_JOBS_MAX) {
			c->n.requests_busy++;
			log_refusal(c, "control: %s refused: %s: %d configurations being compiled",
				    peer->name, verb, c->n_jobs);
			return ctl_error("busy: %d configurations are being compiled; try again",
				    c->n_jobs);
		}
		if (change)
			ctl_log_msg(c, LOG_NOTICE, "control: %s: %s", peer->name, verb);
		if (verbs[i].prepare)
			return verbs[i].prepare(c, peer, req, job);
		return verbs[i].fn(c, peer, req);
	}
	char v[64];
	snprintf(v, sizeof(v), "%s", verb);
	return ctl_error("unknown verb '%s'", v);
}

json_t *ctl_handle(struct ctl *c, const struct ctl_peer *peer, const json_t *req)
{
	struct job *j = NULL;
	json_t *r = handle(c, peer, req, &j);

	if (j) {
		run_job(c->d, j);
		r = finish_job(c, j);
		job_free(j);
	}
	return r;
}
