/* What would this change break (issue #15): every flow of recorded traffic
 * (AWS flow logs or pcap/pcapng captures) decided under the configuration
 * in force and under a candidate, and the flows whose verdict changes,
 * grouped by the rules (or the absence of a rule) on each side. */
#ifndef VPCFW_DIFF_H
#define VPCFW_DIFF_H

#include <stdbool.h>
#include <stdio.h>

#include "vpcfw/policy.h"

struct diff_options {
	const char *const *traffic;     /* flow-log files/directories and captures */
	int n_traffic;
	bool json;                      /* one JSON object on out */
	int limit;                      /* groups listed (0: all) */
	FILE *out;                      /* the report */
	FILE *err;                      /* problems with the input, FILE:LINE: why */
	int threads;                    /* flow logs: flr_read_paths_threads (0: the default) */
};

/* 0: no flow changes verdict; 1: some do; 2: the traffic could not be
 * read (nothing decided, or input errors: then the report is still
 * printed, but the exit status says it is incomplete). */
int diff_run(const struct policy *current, const struct policy *candidate,
	     const struct diff_options *o);

#endif
