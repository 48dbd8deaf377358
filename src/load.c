#include "vpcfw/load.h"

#include <jansson.h>
#include <stdlib.h>

#include "vpcfw/conf.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/mirror.h"

/* Checks the loaded model and compiles it; takes ownership of m. */
static struct policy *finish(struct model *m, struct diag *d)
{
	if (d->errors == 0) {
		config_check(m, d);
		flowlog_check_config(m, d);
		mirror_check_config(m, d);
	}
	if (d->errors) {
		model_free(m);
		free(m);
		return NULL;
	}
	struct policy *p = policy_build(m, d);
	if (p && diag_failed(d)) {
		policy_free(p);
		p = NULL;
	}
	return p;
}

static struct model *new_model(void)
{
	struct model *m = calloc(1, sizeof(*m));
	if (m)
		model_init(m);
	return m;
}

struct policy *policy_load(const char *const *paths, int n, struct diag *d)
{
	struct model *m = new_model();
	if (!m) {
		diag_error(d, NULL, NULL, "out of memory loading the configuration");
		return NULL;
	}
	for (int i = 0; i < n; i++)
		config_load_path(m, paths[i], d);
	return finish(m, d);
}

struct policy *policy_load_buffer(const char *name, const char *text, size_t len,
				  struct diag *d)
{
	struct model *m = new_model();
	if (!m) {
		diag_error(d, NULL, NULL, "out of memory loading the configuration");
		return NULL;
	}
	config_load_buffer(m, name, text, len, d);
	return finish(m, d);
}

struct policy *policy_load_texts(const char *const *names, const char *const *texts,
				 const size_t *lens, int n, struct diag *d)
{
	struct model *m = new_model();
	if (!m) {
		diag_error(d, NULL, NULL, "out of memory loading the configuration");
		return NULL;
	}
	for (int i = 0; i < n; i++)
		config_load_buffer(m, names[i], texts[i], lens[i], d);
	return finish(m, d);
}

struct policy *policy_load_report(const char *const *paths, int n, bool strict, json_t **msgs)
{
	struct diag d;

	*msgs = json_array();
	diag_init(&d);
	d.strict = strict;
	/* what the daemon loads, so that a valid answer means a reload takes it */
	struct policy *pol = policy_load(paths, n, &d);
	for (size_t i = 0; i < d.n; i++)
		json_array_append_new(*msgs, json_pack("{s:s, s:s}", "level",
						       d.msgs[i].error ? "error" : "warning",
						       "text", d.msgs[i].text));
	diag_free(&d);
	return pol;
}
