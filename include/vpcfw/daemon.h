/* The live daemon: NFQUEUE workers, reload, signals, service life. */
#ifndef VPCFW_DAEMON_H
#define VPCFW_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

struct daemon_options {
	const char **config_paths;      /* -c, in order; merged */
	int n_config_paths;
	bool strict;                    /* --strict */
	const char *queues;             /* -q "0-3" / "0,2"; NULL: Vpcfw.Queues */
	bool foreground;                /* -f: stay in front, log to stderr */
	const char *flow_log_dir;       /* --flow-log-dir; NULL: Vpcfw.FlowLogDirectory */
	const char *user;               /* -u: run as this user once the queues are open */
	bool allow_empty;               /* --allow-empty: start (and reload) on a configuration
					   without any network interface */
};

/* Runs until SIGTERM/SIGINT; returns the process exit status. */
int daemon_run(const struct daemon_options *opt);

#endif
