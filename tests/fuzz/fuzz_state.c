/* libFuzzer target: the state-file reader (issue #13) on arbitrary bytes.
 * A file that decodes is restored into a small table (every interface
 * known, every queue served) and encoded again: the same bytes must come
 * back, and no more flows may be restored than the file holds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool any_iface(void *arg, const char *id, uint32_t *ct_id)
{
	(void)arg;
	*ct_id = (uint32_t)strlen(id);
	return true;
}

static struct conntrack *any_table(void *arg, uint16_t queue)
{
	(void)queue;
	return arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state_image img;
	char err[256];
	/* "now" is the file's own time (when it has one), a little later */
	uint64_t now = 0;
	for (int i = 7; size >= 24 && i >= 0; i--)
		now = now << 8 | data[16 + i];
	now += 1000000000ULL;
	if (state_decode(data, size, now, &img, err, sizeof(err)) != 0)
		return 0;
	struct state_part p = { .flows = img.flows, .n = img.n_flows };
	size_t len;
	uint8_t *again = state_encode(img.written_ns, (const char *const *)img.ifaces, img.n_ifaces,
				      &p, 1, &len);
	if (again && (len != size || memcmp(again, data, size) != 0))
		abort();
	free(again);
	struct conntrack *ct = ct_create(64);
	if (ct) {
		struct state_restore_stats st;
		state_restore(&img, now, 1000000000ULL, any_iface, any_table, ct, &st);
		struct ct_stats cs;
		ct_get_stats(ct, &cs);
		if (st.restored > img.n_flows || cs.used != st.restored)
			abort();
		ct_destroy(ct);
	}
	state_image_free(&img);
	return 0;
}
