/* The control socket of vpcfwd and what vpcfwctl shares with it.
 *
 * Protocol: a stream Unix socket; one JSON object per line each way
 * (requests at most CTL_MAX_REQUEST bytes, CTL_MAX_CONFIG for the admins,
 * whose shadow-load carries configuration files), {"verb": "status", ...} ->
 * {"ok": true, ...} or {"ok": false, "error": "..."}.  Access by the peer's
 * credentials (SO_PEERCRED, SO_PEERGROUPS): root and members of
 * Access.AdminGroup may change things, members of Access.ReaderGroup may
 * read; everyone else is refused and counted.  The read-only socket answers
 * only reads, to root and the groups (to anyone with ReadOnlySocketPublic).
 *
 * Fairness: at most CTL_MAX_CLIENTS connections, CTL_MAX_PER_UID per user
 * (root excepted), the last CTL_RESERVED_ADMIN of them for root and the
 * admin group; a client that sends no complete request (or does not read
 * its answer) for CTL_IDLE_SECONDS is dropped.  A refused client is told why
 * ("too many clients", "permission denied") before the close; refusals are
 * counted and logged at most CTL_LOG_BURST times per CTL_LOG_WINDOW seconds,
 * then summarised ("N more suppressed").
 *
 * The server runs on the daemon's main thread (ctl_serve between signal
 * checks): reloads and the policy in force belong to that thread, so a
 * request never sees a policy being freed.  Compiling a configuration
 * (reload, check-config, shadow-load) runs on a thread of its own and the
 * result is installed by the main thread, so that signals, other clients and
 * the metrics are served meanwhile.  The daemon supplies what only it can
 * see through struct ctl_daemon. */
#ifndef VPCFW_CTL_H
#define VPCFW_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/ctlproto.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/mirror.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"
#include "vpcfw/shadow.h"
#include "vpcfw/state.h"

enum { CTL_MAX_CLIENTS = 64, CTL_MAX_PER_UID = 8, CTL_RESERVED_ADMIN = 8,
       CTL_IDLE_SECONDS = 10, CTL_JOBS_MAX = 8, CTL_LOG_BURST = 5, CTL_LOG_WINDOW = 10 };

/* What the control socket refused or dropped, since the daemon started. */
struct ctl_counters {
	uint64_t clients;               /* connected now */
	uint64_t refused_permission;    /* clients refused: not root nor in a group */
	uint64_t refused_too_many;      /* clients refused: no slot for them */
	uint64_t dropped_idle;          /* clients dropped: idle CTL_IDLE_SECONDS */
	uint64_t dropped_too_long;      /* clients dropped: request too long */
	uint64_t requests_refused;      /* requests refused: a verb the peer may not use */
	uint64_t requests_busy;         /* requests refused: CTL_JOBS_MAX compilations queued */
	uint64_t log_suppressed;        /* refusal log lines not written (rate limit) */
};

/* What the daemon lost or failed to deliver outside the packet verdicts:
 * mirror and drop-capture copies, flow-log records and files, refusal log
 * lines.  Cumulative for the daemon's life. */
struct ctl_losses {
	struct mirror_stats mirror;     /* zeros when nothing is mirrored */
	struct flowlog_stats flowlog;   /* zeros when flow logs are off */
	uint64_t refusal_lines_suppressed;      /* refused packets not logged: rate limit */
	uint64_t refusal_lines_lost;    /* not logged: a worker's refusal ring was full */
};


/* One worker (queue), as the daemon sees it now. */
struct ctl_worker_stats {
	uint16_t queue;
	struct pipeline_stats pl;
	struct ct_stats ct;
	uint64_t packets, batches, enobufs, truncated, netlink_errors, recv_errors, send_errors;
	bool have_kernel;               /* the kernel lists the queue */
	uint64_t kernel_waiting, kernel_queue_dropped, kernel_user_dropped;
	uint64_t audit_would_refuse;
	/* the offload (Vpcfw.Offload): flows marked for the kernel, packets of
	 * marked flows that still reached the queue (no accept rule?),
	 * offloadable packets without a kernel conntrack entry */
	uint64_t offload_marked, offload_missed, offload_no_conntrack;
};

/* The offload's take-backs (the daemon's main thread writes them). */
struct ctl_offload_stats {
	counter_t enabled;              /* 1: Vpcfw.Offload on (and usable) */
	counter_t takebacks;            /* kernel marks cleared: reloads, modes, start, stop */
	counter_t cleared;              /* kernel entries whose mark was cleared */
	counter_t errors;               /* take-backs that failed (retried) */
	counter_t pending;              /* 1: a failed take-back waits for its retry */
};

struct ctl_daemon {
	void *ctx;
	int n_workers;
	const char *const *config_paths;
	int n_config_paths;
	bool strict;
	uint64_t started_s;             /* CLOCK_REALTIME at start */
	/* the policy in force and its generation number */
	const struct policy *(*policy)(void *ctx, uint64_t *generation);
	void (*worker)(void *ctx, int i, struct ctl_worker_stats *out);
	/* worker i's counters of the policy in force (pol->n_hits), or NULL */
	const counter_t *(*hits)(void *ctx, int i);
	/* every tracked flow, read by the workers themselves; -1 on timeout */
	int (*flows)(void *ctx, int (*fn)(int worker, const struct ct_flow_info *f, void *arg),
		     void *arg);
	/* reload; false (message in msg) if the configuration was refused.
	 * Used when compile/install are not given (tests). */
	bool (*reload)(void *ctx, const char *who, char *msg, size_t len);
	/* reload in two steps: compile the configured files (any thread; NULL
	 * if refused, the messages logged), then install the result on the
	 * main thread (NULL: report the refusal); false as for reload */
	void *(*compile)(void *ctx, const char *who);
	bool (*install)(void *ctx, void *compiled, const char *who, char *msg, size_t len);
	void (*discard)(void *ctx, void *compiled);     /* compiled, never installed */
	void (*set_audit)(void *ctx, bool on);
	bool (*audit)(void *ctx);
	/* installs shadow s (NULL: none) for the workers and returns the one it
	 * replaces once no worker can still use it (the caller frees it);
	 * NULL: shadow policies are not available */
	struct shadow *(*set_shadow)(void *ctx, struct shadow *s);
	/* mirror, flow-log and refusal-log losses; NULL: none to report */
	void (*losses)(void *ctx, struct ctl_losses *out);
	/* the state file (StateFile); NULL: none */
	const struct state_counters *state;
	/* the HA pair's sync (Vpcfw.Sync, ha.h); NULL: off */
	const struct ha *ha;
	/* the offload (Vpcfw.Offload); NULL: none */
	const struct ctl_offload_stats *offload;
};

struct ha;

struct ctl_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool admin, reader;
	bool read_only_socket;
	char name[64];                  /* "uid 1000 (alice) pid 42" for the log */
};

struct ctl;

/* Opens the sockets (path; ro_path may be NULL), mode 0666 with access
 * decided per request; creates the directory of each (0755).  NULL with a
 * message in err. */
struct ctl *ctl_open(const struct ctl_daemon *d, const char *path, const char *ro_path,
		     const char *admin_group, const char *reader_group,
		     void (*log)(int prio, const char *msg), char *err, size_t errlen);
/* Serves clients for at most timeout_ms (poll): reads, answers, writes. */
void ctl_serve(struct ctl *c, int timeout_ms);
/* Updates the groups (after a reload). */
void ctl_set_groups(struct ctl *c, const char *admin_group, const char *reader_group);
/* ReadOnlySocketPublic: the read-only socket answers every local user. */
void ctl_set_read_only_public(struct ctl *c, bool on);
/* Every refusal (clients and requests); c may be NULL. */
uint64_t ctl_refused(const struct ctl *c);
void ctl_get_counters(const struct ctl *c, struct ctl_counters *out);
/* A reload (SIGHUP) through the compiling thread, installed by a later
 * ctl_serve; false if one cannot be queued now. */
bool ctl_reload_async(struct ctl *c, const char *who);
/* Gives the sockets (not their directory, which stays root's: a user who
 * owned it could put a socket of their own in the daemon's place) to
 * uid:gid (vpcfwd -u).  c may be NULL. */
void ctl_chown(struct ctl *c, uid_t uid, gid_t gid);
void ctl_close(struct ctl *c);

/* One request, as the server answers it (tests call it directly).  Returns
 * a new reference. */
json_t *ctl_handle(struct ctl *c, const struct ctl_peer *peer, const json_t *req);

/* Statistics and the Prometheus text of a daemon's counters. */
json_t *ctl_stats(const struct ctl_daemon *d);
/* c (may be NULL): the control socket's own counters */
char *ctl_metrics(const struct ctl_daemon *d, const struct ctl *c);   /* malloc'd */

/* The growing text ctl_metrics builds: start from { 0 }; each put appends
 * printf-style.  Once anything was put, s is a NUL-terminated malloc'd
 * string of len bytes; if memory ran out, oom is set, later puts do nothing
 * and s (possibly NULL) is still the caller's to free. */
struct ctl_text {
	char *s;
	size_t len, cap;
	bool oom;
};
__attribute__((format(printf, 2, 3)))
void ctl_text_put(struct ctl_text *t, const char *fmt, ...);
/* Writes the metrics to path (temporary file, then rename); 0 or -1. */
int ctl_write_metrics(const struct ctl_daemon *d, const struct ctl *c, const char *path);

#endif
