/* vpcfwctl's offline verbs (offline.h): the configuration loaded here,
 * then the engine's answer, and the configuration freed. */
#include "vpcfw/offline.h"

#include <string.h>

#include "vpcfw/diff.h"
#include "vpcfw/explain.h"
#include "vpcfw/load.h"
#include "vpcfw/policy.h"

json_t *offline_explain(const char *const *paths, int n, const json_t *req, json_t **msgs)
{
	struct policy *pol = policy_load_report(paths, n, false, msgs);

	if (!pol)
		return NULL;
	json_t *r = explain_json(pol, req);
	policy_free(pol);
	policy_intern_reset();
	return r;
}

json_t *offline_check_config(const char *const *paths, int n)
{
	json_t *msgs;
	struct policy *pol = policy_load_report(paths, n, false, &msgs);
	json_t *r = json_pack("{s:b, s:b, s:o}", "ok", 1, "valid", pol != NULL, "messages", msgs);

	policy_free(pol);
	policy_intern_reset();
	return r;
}

static const char *str(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

/* A configuration for diff, or NULL with its messages on err; warnings
 * only when it is refused. */
static struct policy *diff_policy(const char *const *paths, int n, const char *which, FILE *err)
{
	json_t *msgs, *m;
	size_t i;
	struct policy *pol = policy_load_report(paths, n, false, &msgs);

	json_array_foreach(msgs, i, m)
		if (!pol || strcmp(str(m, "level"), "warning") != 0)
			fprintf(err, "%s: %s\n", str(m, "level"), str(m, "text"));
	json_decref(msgs);
	if (!pol)
		fprintf(err, "vpcfwctl: diff: the %s configuration is refused\n", which);
	return pol;
}

int offline_diff(const struct offline_diff *o)
{
	struct policy *a = diff_policy(o->current, o->n_current, "current", o->err);
	if (!a)
		return 2;
	struct policy *b = diff_policy(o->candidate, o->n_candidate, "candidate", o->err);
	if (!b) {
		policy_free(a);
		policy_intern_reset();
		return 2;
	}
	struct diff_options d = { .traffic = o->traffic, .n_traffic = o->n_traffic, .json = o->json,
				  .limit = o->limit, .out = o->out, .err = o->err, .threads = o->threads };
	int rc = diff_run(a, b, &d);
	policy_free(a);
	policy_free(b);
	policy_intern_reset();
	return rc;
}
