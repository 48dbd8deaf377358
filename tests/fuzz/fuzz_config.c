/* libFuzzer target: arbitrary bytes as one configuration file, through
 * loading, the whole-model checks and (when they pass) policy compilation.
 * Nothing may crash, read out of bounds or leak, whatever the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vpcfw/config.h"
#include "vpcfw/diag.h"
#include "vpcfw/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model *m = calloc(1, sizeof(*m));
	struct diag d;

	if (!m)
		return 0;
	diag_init(&d);
	model_init(m);
	config_load_buffer(m, "fuzz.json", (const char *)data, size, &d);
	/* config_check must cope with a model that had errors too. */
	config_check(m, &d);
	if (d.errors == 0) {
		struct policy *p = policy_build(m, &d); /* owns m from here */
		if (p)
			policy_free(p);
		policy_intern_reset();
	} else {
		model_free(m);
		free(m);
	}
	diag_free(&d);
	return 0;
}
