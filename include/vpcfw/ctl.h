/* The control socket of vpcfwd and what vpcfwctl shares with it.
 *
 * Protocol: a stream Unix socket; one JSON object per line each way
 * (requests at most CTL_MAX_REQUEST bytes), {"verb": "status", ...} ->
 * {"ok": true, ...} or {"ok": false, "error": "..."}.  Access by the peer's
 * credentials (SO_PEERCRED, SO_PEERGROUPS): root and members of
 * Access.AdminGroup may change things, members of Access.ReaderGroup may
 * read; everyone else is refused and counted.  The read-only socket answers
 * only reads, to anyone.
 *
 * The server runs on the daemon's main thread (ctl_serve between signal
 * checks): reloads and the policy in force belong to that thread, so a
 * request never sees a policy being freed.  The daemon supplies what only
 * it can see through struct ctl_daemon. */
#ifndef VPCFW_CTL_H
#define VPCFW_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

enum { CTL_MAX_REQUEST = 65536, CTL_MAX_CLIENTS = 64, CTL_FLOWS_DEFAULT = 1000,
       CTL_FLOWS_MAX = 100000 };

struct ctl_shadow;

/* One worker (queue), as the daemon sees it now. */
struct ctl_worker_stats {
	uint16_t queue;
	struct pipeline_stats pl;
	struct ct_stats ct;
	uint64_t packets, batches, enobufs, truncated, netlink_errors, send_errors;
	bool have_kernel;               /* the kernel lists the queue */
	uint64_t kernel_waiting, kernel_queue_dropped, kernel_user_dropped;
	uint64_t audit_would_refuse;
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
	const uint64_t *(*hits)(void *ctx, int i);
	/* every tracked flow, read by the workers themselves; -1 on timeout */
	int (*flows)(void *ctx, int (*fn)(int worker, const struct ct_flow_info *f, void *arg),
		     void *arg);
	/* reload; false (message in msg) if the configuration was refused */
	bool (*reload)(void *ctx, const char *who, char *msg, size_t len);
	void (*set_audit)(void *ctx, bool on);
	bool (*audit)(void *ctx);
	/* installs shadow s (NULL: none) for the workers and returns the one it
	 * replaces once no worker can still use it (the caller frees it);
	 * NULL: shadow policies are not available */
	struct ctl_shadow *(*set_shadow)(void *ctx, struct ctl_shadow *s);
};

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
uint64_t ctl_refused(const struct ctl *c);
/* Gives the sockets, and the directories ctl_open made for them, to uid:gid
 * (vpcfwd -u), so that the daemon can remove them at exit.  c may be NULL. */
void ctl_chown(struct ctl *c, uid_t uid, gid_t gid);
void ctl_close(struct ctl *c);

/* One request, as the server answers it (tests call it directly).  Returns
 * a new reference. */
json_t *ctl_handle(struct ctl *c, const struct ctl_peer *peer, const json_t *req);

/* Shared with vpcfwctl's offline mode. */
/* Loads and compiles the files; the messages go into *msgs (a new array).
 * Returns the policy (caller frees) or NULL if refused. */
struct policy *ctl_load_policy(const char *const *paths, int n, bool strict, json_t **msgs);
/* The "explain" request's answer for policy pol. */
json_t *ctl_explain(const struct policy *pol, const json_t *req);
/* Statistics and the Prometheus text of a daemon's counters. */
json_t *ctl_stats(const struct ctl_daemon *d);
char *ctl_metrics(const struct ctl_daemon *d, uint64_t refused);   /* malloc'd */
/* Writes the metrics to path (temporary file, then rename); 0 or -1. */
int ctl_write_metrics(const struct ctl_daemon *d, uint64_t refused, const char *path);

/* Shadow policies: a candidate evaluated beside the running policy on the
 * same packets, with its own flow table per worker (seeded from the
 * worker's table on its first batch), so its connection tracking is
 * modelled without touching the real one.  Packets the two decide
 * differently are counted per (running rule, candidate rule, change) in a
 * bounded table per worker; a full table counts the rest as lost.
 * Devices bind as in the running configuration: an interface is the
 * candidate's interface of the same id.  Each worker's part has one
 * writer, the worker; ctl_shadow_report reads it while it runs. */
enum { CTL_SHADOW_DIFFS = 256, CTL_SHADOW_FLOWS_MAX = 262144 };
/* Takes ownership of pol (even on failure).  flows: the flow-table size of
 * each worker.  NULL on ENOMEM. */
struct ctl_shadow *ctl_shadow_create(struct policy *pol, const char *path, int n_workers,
				     uint32_t flows);
void ctl_shadow_free(struct ctl_shadow *s);
/* Worker `worker`: the candidate's verdicts for the n packets the running
 * policy (generation gen) decided as `running`; metas are the running
 * policy's (may be NULL).  running_ct seeds the candidate's table on the
 * first call.  Allocates nothing. */
void ctl_shadow_eval(struct ctl_shadow *s, int worker, struct conntrack *running_ct,
		     const struct packet *pkts, const struct pkt_meta *metas, int n,
		     const struct verdict *running, uint64_t gen, uint64_t now_ns);
/* The "shadow-report" answer: the differences summed over the workers, most
 * frequent first, at most limit of them. */
json_t *ctl_shadow_report(const struct ctl_shadow *s, json_int_t limit);

#endif
