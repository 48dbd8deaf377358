/* vpcfwd: Amazon VPC filtering semantics on Linux traffic.
 * Modes: --check-config, --print-config, --replay (offline), else the live
 * daemon on NFQUEUE. */
#include <getopt.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "vpcfw/conf.h"
#include "vpcfw/daemon.h"
#include "vpcfw/diag.h"
#include "vpcfw/load.h"
#include "vpcfw/log.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/flowlog_read.h"
#include "vpcfw/mirror.h"
#include "vpcfw/nfq.h"
#include "vpcfw/policy.h"
#include "vpcfw/replay.h"
#include "vpcfw/startcheck.h"

enum {
	OPT_CHECK = 256,
	OPT_PRINT,
	OPT_STRICT,
	OPT_REPLAY,
	OPT_VERDICTS,
	OPT_FLOW_LOG_DIR,
	OPT_REPLAY_FLOW_LOGS,
	OPT_ALLOW_EMPTY,
	OPT_THREADS,
};

static void usage(FILE *out)
{
	fputs("usage: vpcfwd -c PATH [-c PATH ...] [options]\n"
	      "  -c, --config PATH       AWS describe-* JSON file, or a directory of *.json (merged)\n"
	      "      --check-config      validate the configuration and exit 0 (valid) or 1\n"
	      "      --print-config      print what vpcfw understood and exit\n"
	      "      --strict            treat warnings as errors\n"
	      "      --allow-empty       start on a configuration without any network interface\n"
	      "      --replay FILE       decide the packets of a pcap/pcapng file offline\n"
	      "      --replay-flow-logs FILE|DIR...\n"
	      "                          decide the flows of AWS VPC flow-log records offline\n"
	      "      --verdicts OUT      with --replay*: one JSON object per packet/record to OUT ('-': stdout)\n"
	      "      --threads 1|2       with --replay-flow-logs: 2 reads in a second thread (default\n"
	      "                          with 2 CPUs or more), 1 in one thread\n"
	      "      --flow-log-dir DIR  write VPC flow logs under DIR\n"
	      "  -q, --queues LIST       NFQUEUE numbers to serve, e.g. 0 or 0-3 or 0,2\n"
	      "  -f, --foreground        stay in the foreground and log to stderr\n"
	      "  -u, --user USER         run as USER (keeping CAP_NET_ADMIN) once the queues are open\n"
	      "  -V, --version           print the version\n"
	      "  -h, --help              this text\n",
	      out);
}

/* Loads and compiles the configuration; prints every message to stderr. */
static struct policy *load_policy(const char **paths, int n, bool strict)
{
	struct diag d;

	diag_init(&d);
	d.strict = strict;
	struct policy *p = policy_load(paths, n, &d);
	diag_print(&d, stderr);
	if (!p)
		log_warnx("configuration refused: %zu error(s), %zu warning(s)%s",
			d.errors, d.warnings, strict && d.warnings ? " (--strict)" : "");
	diag_free(&d);
	return p;
}

/* The daemon's own start checks (queues, sockets, bindings, output paths,
 * -u), so that what passes here also starts. */
static bool check_start(const struct daemon_options *opt, const struct policy *p)
{
	uint16_t queues[START_MAX_QUEUES];
	struct diag d;

	diag_init(&d);
	d.strict = opt->strict;
	int n = start_check(opt, p, queues, &d);
	diag_print(&d, stderr);
	if (n < 0)
		log_warnx("start refused: %zu error(s), %zu warning(s)%s", d.errors,
			d.warnings, opt->strict && d.warnings ? " (--strict)" : "");
	diag_free(&d);
	return n >= 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "print-config", no_argument, NULL, OPT_PRINT },
		{ "strict", no_argument, NULL, OPT_STRICT },
		{ "allow-empty", no_argument, NULL, OPT_ALLOW_EMPTY },
		{ "replay", required_argument, NULL, OPT_REPLAY },
		{ "verdicts", required_argument, NULL, OPT_VERDICTS },
		{ "replay-flow-logs", required_argument, NULL, OPT_REPLAY_FLOW_LOGS },
		{ "flow-log-dir", required_argument, NULL, OPT_FLOW_LOG_DIR },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "queues", required_argument, NULL, 'q' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "user", required_argument, NULL, 'u' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char **configs = calloc((size_t)argc + 1, sizeof(*configs));
	int n_configs = 0;
	bool check = false, print = false, strict = false, foreground = false, allow_empty = false;
	const char *replay = NULL, *verdicts = NULL, *queues = NULL, *flow_log_dir = NULL;
	const char *user = NULL, *flow_logs = NULL, *threads = NULL;
	int c, rc;

	log_init("vpcfwd", LOG_TO_STDERR);
	if (!configs) {
		log_warn("arguments");
		return 1;
	}
	while ((c = getopt_long(argc, argv, "c:q:fu:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': configs[n_configs++] = optarg; break;
		case OPT_CHECK: check = true; break;
		case OPT_PRINT: print = true; break;
		case OPT_STRICT: strict = true; break;
		case OPT_ALLOW_EMPTY: allow_empty = true; break;
		case OPT_REPLAY: replay = optarg; break;
		case OPT_VERDICTS: verdicts = optarg; break;
		case OPT_REPLAY_FLOW_LOGS: flow_logs = optarg; break;
		case OPT_FLOW_LOG_DIR: flow_log_dir = optarg; break;
		case OPT_THREADS: threads = optarg; break;
		case 'q': queues = optarg; break;
		case 'f': foreground = true; break;
		case 'u': user = optarg; break;
		case 'V': printf("vpcfwd %s\n", PACKAGE_VERSION); free(configs); return 0;
		case 'h': usage(stdout); free(configs); return 0;
		default: usage(stderr); free(configs); return 2;
		}
	}
	if (optind < argc && !flow_logs) {
		log_warnx("unexpected argument '%s'", argv[optind]);
		usage(stderr);
		free(configs);
		return 2;
	}
	if (n_configs == 0) {
		log_warnx("no configuration given (-c PATH)");
		usage(stderr);
		free(configs);
		return 2;
	}
	if (replay && flow_logs) {
		log_warnx("--replay and --replay-flow-logs exclude each other");
		free(configs);
		return 2;
	}
	if (verdicts && !replay && !flow_logs) {
		log_warnx("--verdicts needs --replay or --replay-flow-logs");
		free(configs);
		return 2;
	}
	if (threads && !flow_logs) {
		log_warnx("--threads needs --replay-flow-logs");
		free(configs);
		return 2;
	}
	if (threads && strcmp(threads, "1") != 0 && strcmp(threads, "2") != 0) {
		log_warnx("--threads '%s': 1 or 2", threads);
		free(configs);
		return 2;
	}
	/* every option is checked whatever the mode: a unit's ExecStartPre
	 * with a typo must fail like its ExecStart would */
	uint16_t qlist[64];
	if (queues && nfqueue_parse_queues(queues, qlist, 64) < 0) {
		log_warnx("-q '%s': not a queue list (e.g. 0, 0-3, 0,2; at most 64)",
			queues);
		free(configs);
		return 2;
	}
	if (user && !getpwnam(user)) {
		log_warnx("-u '%s': no such user", user);
		free(configs);
		return 2;
	}

	if (!check && !print && !replay && !flow_logs) {
		struct daemon_options opt = {
			.config_paths = configs, .n_config_paths = n_configs, .strict = strict,
			.queues = queues, .foreground = foreground, .flow_log_dir = flow_log_dir,
			.user = user, .allow_empty = allow_empty,
		};
		rc = daemon_run(&opt);
		free(configs);
		return rc;
	}

	struct policy *p = load_policy(configs, n_configs, strict);
	if (p && check) {
		struct daemon_options opt = {
			.config_paths = configs, .n_config_paths = n_configs, .strict = strict,
			.queues = queues, .flow_log_dir = flow_log_dir, .user = user,
			.allow_empty = allow_empty,
		};
		if (!check_start(&opt, p)) {
			policy_free(p);
			p = NULL;
		}
	}
	if (!p) {
		free(configs);
		policy_intern_reset();
		return 1;
	}
	rc = 0;
	if (print)
		policy_print(p, stdout);
	if (replay) {
		struct replay_options ro = {
			.pcap_path = replay, .verdicts_path = verdicts, .summary = stderr,
			.flow_log_dir = flow_log_dir,
		};
		rc = replay_run(p, &ro);
	}
	if (flow_logs) {
		/* --replay-flow-logs FILE [FILE|DIR...]: the option's argument
		 * and the operands after it */
		const char **paths = configs + n_configs;
		int n = 0;
		paths[n++] = flow_logs;
		for (int i = optind; i < argc && n_configs + n < argc; i++)
			paths[n++] = argv[i];
		struct flr_replay_options fo = {
			.paths = paths, .n_paths = n, .verdicts_path = verdicts, .summary = stderr,
			.threads = threads ? atoi(threads) : 0,
		};
		rc = flr_replay_run(p, &fo);
	}
	free(configs);
	policy_free(p);
	policy_intern_reset();
	return rc;
}
