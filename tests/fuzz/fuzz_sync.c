/* libFuzzer target: the HA sync message parser (issue #13 item 2) on
 * arbitrary bytes.  The parser is what an authenticated peer's bytes reach,
 * so it is fuzzed without the MAC in the way (sync_parse); the whole of
 * sync_decode is run too, with the key the seed corpus is made with
 * (tests/fuzz/mksync.py).  A message that parses is built again from what
 * was decoded and must decode to the same thing; its (epoch, sequence) goes
 * through a replay window, which must refuse it the second time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY "vpcfw fuzz_sync key, not a secret"

static struct sync_record recs[SYNC_MAX_RECORDS], recs2[SYNC_MAX_RECORDS];
static struct sync_msg m, m2;
static uint8_t again[SYNC_MAX_BYTES];

static bool same(const struct sync_record *a, const struct sync_record *b)
{
	return a->op == b->op && a->queue == b->queue && strcmp(a->iface_id, b->iface_id) == 0 &&
	       memcmp(&a->s.orig.src, &b->s.orig.src, sizeof(a->s.orig.src)) == 0 &&
	       memcmp(&a->s.orig.dst, &b->s.orig.dst, sizeof(a->s.orig.dst)) == 0 &&
	       a->s.orig.sport == b->s.orig.sport && a->s.orig.dport == b->s.orig.dport &&
	       a->s.orig.proto == b->s.orig.proto && a->s.tcp_state == b->s.tcp_state &&
	       a->s.flags == b->s.flags && a->s.deadline_ns == b->s.deadline_ns &&
	       memcmp(a->s.tcp, b->s.tcp, CT_SAVED_TCP_BYTES) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sync_key key;
	static bool keyed;
	if (!keyed) {
		sync_key_init(&key, (const uint8_t *)FUZZ_KEY, strlen(FUZZ_KEY));
		keyed = true;
	}
	m.records = recs;
	m.max_records = SYNC_MAX_RECORDS;
	(void)sync_decode(&key, data, size, &m);
	if (sync_parse(data, size, &m) != SYNC_OK)
		return 0;
	if (m.n_records > SYNC_MAX_RECORDS || m.n_ifaces > 256)
		abort();

	struct sync_builder b;
	sync_begin(&b, again, SYNC_MAX_BYTES);
	for (size_t i = 0; i < m.n_records; i++)
		if (!sync_add(&b, &m.records[i]))
			abort();        /* what was accepted can be sent */
	size_t len = sync_finish(&b, &key, m.type, m.flags, m.sender, m.epoch, m.seq, m.sent_ns,
				 m.bulk_id, m.bulk_total, m.lag_us);
	if (len != size)
		abort();        /* the same records and ids: the same length */
	m2.records = recs2;
	m2.max_records = SYNC_MAX_RECORDS;
	if (sync_decode(&key, again, len, &m2) != SYNC_OK || m2.n_records != m.n_records ||
	    m2.type != m.type || m2.flags != m.flags || m2.sender != m.sender ||
	    m2.epoch != m.epoch || m2.seq != m.seq || m2.n_ifaces != m.n_ifaces)
		abort();
	for (size_t i = 0; i < m.n_records; i++)
		if (!same(&m.records[i], &m2.records[i]))
			abort();

	struct sync_window w;
	memset(&w, 0, sizeof(w));
	if (sync_window_check(&w, m.epoch, m.seq) != SYNC_OK ||
	    sync_window_check(&w, m.epoch, m.seq) != SYNC_DROP_REPLAY)
		abort();
	return 0;
}
