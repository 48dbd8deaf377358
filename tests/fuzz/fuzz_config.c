/* libFuzzer target: arbitrary bytes as one configuration file, through the
 * loader the daemon, its reload, vpcfwctl and the tests use
 * (policy_load_buffer): JSON loading, the whole-model checks (config, flow
 * logs with their LogFormat parser, mirroring) and, when they pass, policy
 * compilation.  Nothing may crash, read out of bounds or leak, whatever the
 * input. */
#include <stddef.h>
#include <stdint.h>

#include "vpcfw/diag.h"
#include "vpcfw/load.h"
#include "vpcfw/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag d;

	diag_init(&d);
	struct policy *p = policy_load_buffer("fuzz.json", (const char *)data, size, &d);
	if (p)
		policy_free(p);
	policy_intern_reset();
	diag_free(&d);
	return 0;
}
