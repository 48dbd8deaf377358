#include "vpcfw/startcheck.h"
#include "vpcfw/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vpcfw/nfq.h"

static int check_queues(const struct daemon_options *opt, const struct m_vpcfw *c,
			uint16_t *out, struct diag *d)
{
	if (opt->queues) {
		int n = nfqueue_parse_queues(opt->queues, out, START_MAX_QUEUES);
		if (n < 0)
			diag_error(d, NULL, NULL, "-q: invalid queue list '%s' (e.g. 0, 0-3, 0,2; "
				   "at most %d)", opt->queues, START_MAX_QUEUES);
		return n;
	}
	if (c->n_queues > START_MAX_QUEUES) {
		diag_error(d, NULL, "Vpcfw.Queues", "at most %d queues (%d given)", START_MAX_QUEUES,
			   c->n_queues);
		return -1;
	}
	if (c->n_queues == 0) {
		out[0] = 0;
		return 1;
	}
	for (int i = 0; i < c->n_queues; i++)
		out[i] = c->queues[i];
	return c->n_queues;
}

/* A Unix socket's path must fit sun_path with its terminating NUL. */
static void check_socket_path(const char *key, const char *path, struct diag *d)
{
	struct sockaddr_un sa;
	size_t len;

	if (!path || !*path)
		return;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		diag_error(d, NULL, key, "the path is %zu bytes long; a socket path holds at most %zu",
			   len, sizeof(sa.sun_path) - 1);
}

/* The devices the daemon binds: a missing one is a warning there (a reload
 * may find it), so here too.  A binding to an interface not in the
 * configuration is policy_build()'s warning. */
static void check_bindings(const struct policy *pol, struct diag *d)
{
	const struct m_vpcfw *c = &pol->model->vpcfw;

	for (int i = 0; i < c->n_bindings; i++) {
		const struct m_binding *b = &c->bindings[i];
		if ((policy_iface_by_device(pol, b->device) || policy_iface_by_id(pol, b->eni_id)) &&
		    if_nametoindex(b->device) == 0)
			diag_warn(d, b->where.file, b->where.path, "binding of %s: no device %s here; "
				  "unbound until a reload", b->eni_id, b->device);
	}
}

/* A configuration without any network interface enforces nothing: every
 * packet would be judged against no security group and no subnet (an empty
 * or mistyped /etc/vpcfw).  Refused unless --allow-empty says it is meant. */
static void check_empty(const struct daemon_options *opt, const struct policy *pol,
			struct diag *d)
{
	if (pol->n_ifaces > 0 || opt->allow_empty)
		return;
	diag_error(d, NULL, NULL, "no network interface in the configuration: nothing to "
		   "enforce; give --allow-empty if that is meant");
}

/* Can a file be created at path (parents too when make_parents)?  Checks
 * the nearest existing directory, with the effective ids. */
static bool creatable(const char *path, bool make_parents, char *why, size_t n)
{
	char dir[PATH_MAX];
	struct stat st;

	if (strlen(path) >= sizeof(dir)) {
		snprintf(why, n, "the path is too long");
		return false;
	}
	strcpy(dir, path);
	for (;;) {
		char *slash = strrchr(dir, '/');
		if (!slash)
			strcpy(dir, ".");
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		if (stat(dir, &st) == 0)
			break;
		if (errno != ENOENT || !make_parents || strcmp(dir, ".") == 0 ||
		    strcmp(dir, "/") == 0) {
			snprintf(why, n, "%s: %s", dir, strerror(errno));
			return false;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, n, "%s is not a directory", dir);
		return false;
	}
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
		snprintf(why, n, "%s: %s", dir, strerror(errno));
		return false;
	}
	return true;
}

static void check_output(const char *file, const char *key, const char *path, bool is_dir,
			 bool error, struct diag *d)
{
	char why[PATH_MAX + 64];

	if (!path || !*path)
		return;
	if (is_dir) {
		struct stat st;
		if (stat(path, &st) == 0) {
			if (!S_ISDIR(st.st_mode)) {
				diag_error(d, file, key, "%s is not a directory", path);
			} else if (faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) != 0) {
				if (error)
					diag_error(d, file, key, "cannot write into %s: %s", path,
						   strerror(errno));
			}
			return;
		}
	}
	if (creatable(path, is_dir, why, sizeof(why)))
		return;
	if (error)
		diag_error(d, file, key, "cannot create %s: %s", path, why);
	else
		diag_warn(d, file, key, "cannot create %s: %s", path, why);
}

/* Output files are opened after -u drops root: what root may write says
 * nothing of what USER may, so the check is left to the start itself. */
static void check_outputs(const struct daemon_options *opt, const struct policy *pol,
			  struct diag *d)
{
	if (opt->user && geteuid() == 0)
		return;
	const struct model *m = pol->model;
	const struct m_vpcfw *c = &m->vpcfw;

	if (opt->flow_log_dir && *opt->flow_log_dir)
		check_output(NULL, "--flow-log-dir", opt->flow_log_dir, true, true, d);
	else
		check_output(NULL, "Vpcfw.FlowLogDirectory", c->flow_log_dir, true, true, d);
	check_output(NULL, "Vpcfw.DecisionLog", c->decision_log, false, true, d);
	/* a pcap target is opened when a session sends to it */
	for (int i = 0; i < c->n_pcap_targets; i++) {
		const struct m_mirror_pcap *t = &c->pcap_targets[i];
		bool used = false;
		for (int s = 0; s < m->n_mirror_sessions && !used; s++)
			used = m->mirror_sessions[s].target_id &&
			       strcmp(m->mirror_sessions[s].target_id, t->target_id) == 0;
		if (used)
			check_output(t->where.file, t->where.path, t->path, false, true, d);
	}
	check_output(c->drop_capture.where.file, c->drop_capture.where.path, c->drop_capture.path,
		     false, true, d);
	/* a failed write of the metrics is logged and retried, not fatal */
	check_output(NULL, "Vpcfw.MetricsFile", c->metrics_file, false, false, d);
	/* likewise a state snapshot; at the stop the flows would be lost */
	check_output(NULL, "Vpcfw.StateFile", c->state_file, false, false, d);
}

/* Vpcfw.Sync's key: read at start with root's rights, before -u */
static void check_sync_key(const struct m_sync *y, struct diag *d)
{
	uint8_t key[SYNC_KEY_MAX];
	size_t len;
	char err[256];

	if (!y->enabled)
		return;
	if (sync_key_read(y->key_file, key, &len, err, sizeof(err)) < 0)
		diag_error(d, y->where.file, "Vpcfw.Sync.KeyFile", "%s: %s", y->key_file, err);
	memset(key, 0, sizeof(key));
}

static const char *sysctl_dir = "/proc/sys";

void start_check_set_sysctl_dir(const char *dir)
{
	sysctl_dir = dir ? dir : "/proc/sys";
}

/* The first line of sysctl_dir/name, blanks trimmed, into buf; false when
 * it cannot be read (no such file: the kernel has no such setting here). */
static bool read_sysctl(const char *name, char *buf, size_t size)
{
	char path[PATH_MAX];
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", sysctl_dir, name) >= sizeof(path))
		return false;
	f = fopen(path, "r");
	if (!f)
		return false;
	bool ok = fgets(buf, (int)size, f) != NULL;
	fclose(f);
	if (!ok)
		return false;
	size_t n = strcspn(buf, "\n");
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	return n > 0;
}

/* Vpcfw.Offload: what would leave it without effect (issue #16).  The
 * kernel's rules are the operator's: the daemon cannot see them, and says
 * so at run time (vpcfw_offload_missed_total, the status's hint).  And what
 * would make the kernel pass what vpcfwd refuses: with
 * nf_conntrack_tcp_be_liberal on (in the network namespace vpcfwd runs in,
 * where its flows are offloaded), the kernel keeps out-of-window segments
 * of an offloaded flow ESTABLISHED and the accept rule passes them, where
 * vpcfwd, TcpBeLiberal off, refuses them (the TCP window checks). */
static void check_offload(const struct m_vpcfw *c, struct diag *d)
{
	/* Offload is on by default: these are said when it is written in the
	 * configuration, where they tell its author something; with the
	 * default, to everyone who never installs the rules, they are noise
	 * (and --strict would refuse their configuration). */
	char v[32];

	if (!c->offload)
		return;
	if (c->sync.enabled && c->offload_explicit)
		diag_warn(d, NULL, "Vpcfw.Offload", "no effect while Vpcfw.Sync is on (the HA peer "
			  "learns flows from their packets): every packet stays on the queue");
	/* asked for, not just the default: a kernel without conntrack is
	 * where vpcfwd runs as a plain NFQUEUE reader */
	if (c->offload_explicit && !read_sysctl("net/netfilter/nf_conntrack_max", v, sizeof(v)))
		diag_warn(d, NULL, "Vpcfw.Offload", "this kernel has no connection tracking here: "
			  "nothing to mark, every packet stays on the queue");
	if (c->offload_explicit && start_check_be_liberal_conflict(c, v, sizeof(v)))
		diag_warn(d, NULL, "Vpcfw.Offload", "the kernel's net.netfilter.nf_conntrack_tcp_be_liberal "
			  "is %s here while Vpcfw.TcpBeLiberal is off: the kernel passes the TCP segments "
			  "of offloaded flows that are outside their window, which vpcfwd refuses; set "
			  "it to 0 in this network namespace (sysctl -w "
			  "net.netfilter.nf_conntrack_tcp_be_liberal=0), or turn Vpcfw.TcpBeLiberal on", v);
}

bool start_check_be_liberal_conflict(const struct m_vpcfw *c, char *value, size_t size)
{
	return !c->tcp_be_liberal &&
	       read_sysctl("net/netfilter/nf_conntrack_tcp_be_liberal", value, size) &&
	       strcmp(value, "0") != 0;
}

static void check_user(const char *user, struct diag *d)
{
	if (!user)
		return;
	if (!getpwnam(user))
		diag_error(d, NULL, NULL, "-u %s: no such user", user);
	else if (geteuid() != 0)
		diag_error(d, NULL, NULL, "-u %s: switching users needs root", user);
}

int start_check(const struct daemon_options *opt, const struct policy *pol, uint16_t *queues,
		struct diag *d)
{
	const struct m_vpcfw *c = &pol->model->vpcfw;
	int n = check_queues(opt, c, queues, d);

	check_socket_path("Vpcfw.ControlSocket", c->control_socket, d);
	check_socket_path("Vpcfw.ReadOnlySocket", c->read_only_socket, d);
	check_bindings(pol, d);
	check_empty(opt, pol, d);
	check_outputs(opt, pol, d);
	check_sync_key(&c->sync, d);
	check_offload(c, d);
	check_user(opt->user, d);
	return diag_failed(d) ? -1 : n;
}
