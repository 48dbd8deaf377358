/* Configuration paths -> a checked, compiled policy: the one sequence that
 * vpcfwd's modes, the daemon's reload, vpcfwctl check-config/shadow and the
 * tests share, so that no caller can skip a check the others make. */
#ifndef VPCFW_LOAD_H
#define VPCFW_LOAD_H

#include <stddef.h>

#include <jansson.h>

#include "vpcfw/diag.h"
#include "vpcfw/policy.h"

/* Loads every path (a file, or a directory of *.json) into one model, checks
 * it as a whole (config, flow logs, mirroring), and compiles it.  Messages go
 * to d (d->strict: warnings refuse too).  NULL when refused. */
struct policy *policy_load(const char *const *paths, int n, struct diag *d);

/* The same for one JSON document in memory (tests, fuzzing). */
struct policy *policy_load_buffer(const char *name, const char *text, size_t len,
				  struct diag *d);

/* The same for n documents in memory, merged in order as the files of a
 * directory are (vpcfwctl shadow load sends them: the daemon opens no path
 * for a client). */
struct policy *policy_load_texts(const char *const *names, const char *const *texts,
				 const size_t *lens, int n, struct diag *d);

/* policy_load with the messages as JSON, [{"level": "error"|"warning",
 * "text": ...}] in *msgs (a new array): the control socket's check-config
 * and vpcfwctl's offline modes.  NULL when refused. */
struct policy *policy_load_report(const char *const *paths, int n, bool strict, json_t **msgs);

#endif
