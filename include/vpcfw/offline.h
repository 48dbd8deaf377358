/* vpcfwctl's offline verbs (-c: a configuration read here, no daemon), one
 * call each.  They are the client's only way into the engine: vpcfwctl.c
 * includes no other engine header, and vpcfwctl links libvpcfw_offline.a
 * (this and diff.c) before the engine's archive, from which the linker takes
 * what these calls reach: loading, the pipeline through the lane's decision
 * (lane_decide), explain, the flow-log and capture readers; not the lane's
 * hooks (mirror, flow-log writing, shadow), replay, the state file or HA. */
#ifndef VPCFW_OFFLINE_H
#define VPCFW_OFFLINE_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

/* explain -c PATHS: the daemon's explain answer to req (explain.h), or NULL
 * when the configuration is refused; *msgs: the loader's messages (a new
 * array, [{"level", "text"}]). */
json_t *offline_explain(const char *const *paths, int n, const json_t *req, json_t **msgs);

/* check-config -c PATHS: {"ok": true, "valid": BOOL, "messages": [...]}, as
 * the daemon's check-config answers. */
json_t *offline_check_config(const char *const *paths, int n);

/* diff -c CURRENT -c2 CANDIDATE --traffic FILES (diff.h). */
struct offline_diff {
	const char *const *current, *const *candidate;
	int n_current, n_candidate;
	const char *const *traffic;     /* flow-log files/directories and captures */
	int n_traffic;
	bool json;                      /* one JSON object on out */
	int limit;                      /* groups listed (0: all) */
	FILE *out;                      /* the report */
	FILE *err;                      /* the loader's messages, problems with the input */
	int threads;                    /* flow logs: diff_options.threads */
};
/* The exit status: 0 no flow changes verdict, 1 some do, 2 a configuration
 * is refused or the traffic could not be read whole. */
int offline_diff(const struct offline_diff *o);

#endif
