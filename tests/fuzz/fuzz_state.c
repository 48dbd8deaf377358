/* libFuzzer target: the state-file reader (issue #13) on arbitrary bytes.
 * A file that decodes is restored into a small table (every interface
 * known, every queue served) and encoded again: the same bytes must come
 * back (version 2; a version-1 file comes back as version 2), and no more
 * flows may be restored than the file holds.  Its flow-log windows are
 * restored into the flow logs of a small policy (a 60 s and a 600 s flow
 * log, a tiny aggregation table: entries beyond it are lost, as SKIPDATA),
 * every interface of the file taken for the policy's one interface, and
 * written out: no more entries restored than the file holds.  Each input
 * runs twice: as it is, and with its checksums made right. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpcfw/diag.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/load.h"
#include "vpcfw/policy.h"
#include "vpcfw/state.h"

#include "small_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct policy *pol;
static char dir[64];

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

/* every interface of the file is the policy's (an odd-length id: gone) */
static bool the_iface(void *arg, const char *id, uint32_t *ct_id)
{
	(void)arg;
	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].subnet) {
			*ct_id = pol->ifaces[i].ct_id;
			return strlen(id) % 2 == 0;
		}
	return false;
}

static struct flowlog_worker *the_worker(void *arg, uint16_t queue)
{
	return queue < 4 ? flowlog_worker(arg, 0) : NULL;
}

static void rm_dir(void)
{
	rmdir(dir);
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type != FTW_DP || strcmp(path, dir) != 0)
		remove(path);
	return 0;
}

static void restore_flowlog(const struct state_image *img, uint64_t now)
{
	if (!pol) {
		/* the small configuration with two flow logs, one per interval */
		static const char logs[] =
			",\"FlowLogs\":[{\"FlowLogId\":\"fl-60\",\"ResourceId\":\"vpc-0a1b2c3d4e5f60001\",\"TrafficType\":\"ALL\","
			"\"MaxAggregationInterval\":60},{\"FlowLogId\":\"fl-600\",\"ResourceId\":\"vpc-0a1b2c3d4e5f60001\","
			"\"TrafficType\":\"REJECT\",\"MaxAggregationInterval\":600}]}";
		size_t n = sizeof(CONFIG) - 2;  /* without the closing brace */
		char *json = malloc(n + sizeof(logs));
		struct diag d;
		if (!json)
			abort();
		memcpy(json, CONFIG, n);
		memcpy(json + n, logs, sizeof(logs));
		diag_init(&d);
		pol = policy_load_buffer("fuzz-state.json", json, strlen(json), &d);
		diag_free(&d);
		free(json);
		strcpy(dir, "/tmp/fuzz_state.XXXXXX");
		if (!pol || !mkdtemp(dir))
			abort();
		atexit(rm_dir);
	}
	struct flowlog_options o = { .dir = dir, .n_workers = 1, .table_size = 16 };
	struct flowlog *fl = flowlog_create(pol, &o);
	if (!fl)
		abort();
	struct state_fl_restore_stats st;
	state_restore_flowlog(img, now, true, the_iface, the_worker, fl, &st);
	if (st.fl.entries > img->n_flents ||
	    st.fl.entries + st.fl.not_logged + st.fl.duplicate + st.fl.table_full + st.unknown_iface +
	    st.no_queue != img->n_flents)
		abort();
	flowlog_destroy(fl);    /* the records of what was restored */
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void run(const uint8_t *data, size_t size)
{
	struct state_image img;
	char err[256];
	/* "now" is the file's own time (when it has one), a little later */
	uint64_t now = 0;
	for (int i = 7; size >= 24 && i >= 0; i--)
		now = now << 8 | data[16 + i];
	now += 1000000000ULL;
	if (state_decode(data, size, now, &img, err, sizeof(err)) != 0) {
		if (getenv("FUZZ_STATE_VERBOSE"))       /* what a seed is refused for */
			fprintf(stderr, "refused: %s\n", err);
		return;
	}
	if (getenv("FUZZ_STATE_VERBOSE"))
		fprintf(stderr, "decoded: %zu flows, %zu flow-log windows, %zu entries\n",
			img.n_flows, img.n_flwins, img.n_flents);
	struct state_part p = {
		.flows = img.flows, .n = img.n_flows,
		.flwins = img.flwins, .n_flwins = img.n_flwins,
		.flents = img.flents, .n_flents = img.n_flents,
	};
	size_t len;
	uint8_t *again = state_encode(img.written_ns, (const char *const *)img.ifaces, img.n_ifaces,
				      &p, 1, &len);
	if (again && img.version == STATE_VERSION && (len != size || memcmp(again, data, size) != 0))
		abort();
	if (again && img.version != STATE_VERSION) {
		/* version 1: what it held comes back as version 2 */
		struct state_image img2;
		if (state_decode(again, len, now, &img2, err, sizeof(err)) != 0 ||
		    img2.n_flows != img.n_flows || img2.n_flwins != 0) {
			fprintf(stderr, "version 1 encoded again: %s\n", err);
			abort();
		}
		state_image_free(&img2);
	}
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
	restore_flowlog(&img, now);
	state_image_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size);
	/* and again with the checksums made right: the mutations reach the
	 * validation of every field rather than stopping at the CRC */
	if (size < STATE_HEADER_BYTES)
		return 0;
	uint8_t *b = malloc(size);
	if (!b)
		return 0;
	memcpy(b, data, size);
	uint32_t c = state_crc32(0, b + STATE_HEADER_BYTES, size - STATE_HEADER_BYTES);
	for (int i = 0; i < 4; i++)
		b[40 + i] = (uint8_t)(c >> 8 * i);
	c = state_crc32(0, b, 44);
	for (int i = 0; i < 4; i++)
		b[44 + i] = (uint8_t)(c >> 8 * i);
	if (memcmp(b, data, size) != 0)
		run(b, size);
	free(b);
	return 0;
}
