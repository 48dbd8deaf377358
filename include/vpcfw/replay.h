/* Offline evaluation of a pcap/pcapng file through the same pipeline, with
 * each packet's timestamp as the clock (SPEC; issue "replay"). */
#ifndef VPCFW_REPLAY_H
#define VPCFW_REPLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vpcfw/policy.h"

struct replay_options {
	const char *pcap_path;
	const char *verdicts_path;      /* NULL: none; "-": stdout */
	FILE *summary;                  /* counts by verdict and reason (stderr) */
	const char *flow_log_dir;       /* --flow-log-dir, NULL: Vpcfw.FlowLogDirectory */
};

/* Returns 0 on success; on an unreadable file prints why to stderr and
 * returns 1. */
int replay_run(const struct policy *pol, const struct replay_options *opt);

#endif
