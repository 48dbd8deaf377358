/* Connection-tracking benchmark: lookups per second on established flows,
 * inserts per second for new flows, churn through a full table, and bytes
 * per flow, at 100k and 1M flows.  Prints figures; not a test.
 *
 *   cd bench && cc -std=c11 -O2 -DNDEBUG -D_GNU_SOURCE -I../include \
 *       -o bench_conntrack bench_conntrack.c ../src/conntrack.c
 *   ./bench_conntrack [FLOWS ...]      default: 100000 1000000
 *
 * Flows are inserted in one shuffled order.  "random" looks them up in
 * another (every lookup misses the cache once the table outgrows it: the
 * worst case); "insertion order" walks the entry pool sequentially (the best
 * case).  Every figure includes ct_hash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vpcfw/conntrack.h"

#define NS 1000000000ULL
#define T0 (1700000000ULL * NS)

static const struct ct_timeouts to = {
	CT_DEFAULT_TCP_ESTABLISHED, CT_DEFAULT_UDP, CT_DEFAULT_UDP_STREAM
};

/* CPU time, not wall time: figures per core, less disturbed by whatever
 * else the machine runs (caches are still shared). */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct ip_addr v4(uint32_t a)
{
	struct ip_addr r = { 0, 0xffff00000000ULL | a };
	return r;
}

/* Flow i: a client in 203.0.0.0/8 (64 ports each) to the server 10.0.1.5:443. */
static struct ct_tuple flow(uint32_t i)
{
	struct ct_tuple t;
	memset(&t, 0, sizeof(t));
	t.src = v4(0xCB000000u + (i >> 6));
	t.dst = v4(0x0A000105u);
	t.sport = (uint16_t)(32768 + (i & 63));
	t.dport = 443;
	t.proto = 6;
	return t;
}

/* The reply of flow i: what the server sends back. */
static struct ct_tuple reply(uint32_t i)
{
	struct ct_tuple f = flow(i), r = f;
	r.src = f.dst;
	r.dst = f.src;
	r.sport = f.dport;
	r.dport = f.sport;
	return r;
}

static uint64_t rng = 88172645463325252ULL;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static uint32_t *shuffled(uint32_t n)
{
	uint32_t *p = malloc((size_t)n * sizeof(*p));
	if (!p)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		p[i] = i;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = rnd(i + 1), x = p[i];
		p[i] = p[j];
		p[j] = x;
	}
	return p;
}

static void report(const char *what, uint64_t ops, double secs)
{
	printf("  %-44s %8.2f M/s  %7.1f ns/op\n", what, (double)ops / secs / 1e6,
	       secs * 1e9 / (double)ops);
}

static int run(uint32_t n)
{
	struct conntrack *ct = ct_create(n);
	uint32_t *perm = shuffled(n), *look = shuffled(n);
	if (!ct || !perm || !look) {
		fprintf(stderr, "out of memory for %u flows\n", n);
		ct_destroy(ct);
		free(perm);
		free(look);
		return 1;
	}
	printf("%u flows, %zu bytes per flow (%.1f MiB)\n", n, ct_bytes_per_flow(ct),
	       (double)ct_bytes_per_flow(ct) * n / (1 << 20));
	uint64_t now = T0, miss = 0;
	double t;

	/* New flows: a SYN each, into an empty table. */
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		if (!ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now))
			miss++;
	}
	report("insert (new flow, SYN)", n, now_s() - t);

	/* Complete the handshakes: the flows become established. */
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple r = reply(i), f = flow(i);
		struct ct_entry *e = ct_lookup(ct, 1, &r, ct_hash(&r), now);
		if (!e) {
			miss++;
			continue;
		}
		ct_update(ct, e, &r, 0x12, &to, now);
		ct_update(ct, e, &f, 0x10, &to, now);
	}

	const int rounds = 5;
	for (uint32_t i = 0; i < n; i++) { /* warm up: the handshakes left dirty lines */
		struct ct_tuple f = flow(look[i]);
		miss += !ct_lookup(ct, 1, &f, ct_hash(&f), now);
	}
	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = (i & 1) ? reply(look[i]) : flow(look[i]);
			miss += !ct_lookup(ct, 1, &f, ct_hash(&f), now);
		}
	report("lookup, established, random", (uint64_t)rounds * n, now_s() - t);

	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = (i & 1) ? reply(perm[i]) : flow(perm[i]);
			miss += !ct_lookup(ct, 1, &f, ct_hash(&f), now);
		}
	report("lookup, established, insertion order", (uint64_t)rounds * n, now_s() - t);

	/* As a batching caller would: hash a batch, prefetch buckets, then
	 * entries, then look up. */
	enum { BATCH = 16 };
	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i + BATCH <= n; i += BATCH) {
			struct ct_tuple f[BATCH];
			uint64_t h[BATCH];
			for (int j = 0; j < BATCH; j++) {
				uint32_t x = look[i + (uint32_t)j];
				f[j] = (j & 1) ? reply(x) : flow(x);
				h[j] = ct_hash(&f[j]);
				ct_prefetch(ct, 1, h[j], false);
			}
			for (int j = 0; j < BATCH; j++)
				ct_prefetch(ct, 1, h[j], true);
			for (int j = 0; j < BATCH; j++)
				miss += !ct_lookup(ct, 1, &f[j], h[j], now);
		}
	report("lookup, established, random, batches of 16", (uint64_t)rounds * (n - n % BATCH),
	       now_s() - t);

	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = (i & 1) ? reply(look[i]) : flow(look[i]);
			struct ct_entry *e = ct_lookup(ct, 1, &f, ct_hash(&f), now);
			if (e)
				ct_update(ct, e, &f, 0x10, &to, now);
			else
				miss++;
		}
	report("lookup + update, established, random", (uint64_t)rounds * n, now_s() - t);

	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = flow(look[i]);
			f.dport = 8443; /* no such flow */
			miss += ct_lookup(ct, 1, &f, ct_hash(&f), now) != NULL;
		}
	report("lookup, no such flow (a new flow's first look)", (uint64_t)rounds * n, now_s() - t);

	/* Churn: the table is full of flows idle past their timeout; each new
	 * flow reclaims room (expired flows in its bucket or a bounded sweep). */
	ct_destroy(ct);
	ct = ct_create(n);
	if (!ct)
		return 1;
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(i);
		f.proto = 17;
		ct_insert(ct, 1, &f, ct_hash(&f), 0, &to, now);
	}
	now += 31 * NS;
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		if (!ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now))
			miss++;
	}
	report("insert into a full table of expired flows", n, now_s() - t);

	/* Full table of established flows: new SYNs evict each other, then
	 * are refused. */
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		f.dport = 80;
		ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now);
	}
	report("insert into a full table, evicting SYN_SENT", n, now_s() - t);

	ct_destroy(ct);
	ct = ct_create(n);
	if (!ct)
		return 1;
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(i);
		ct_insert(ct, 1, &f, ct_hash(&f), 0x10, &to, now);
	}
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		f.dport = 80;
		ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now);
	}
	report("insert refused: full of established flows", n, now_s() - t);

	/* Expiry sweep of the whole table. */
	now += 10 * 86400 * NS;
	t = now_s();
	unsigned freed = 0;
	for (uint64_t b = 0; b < 2ULL * n; b += 1024)
		freed += ct_expire(ct, now, 1024);
	report("expire (flows freed by ct_expire slices)", freed ? freed : 1, now_s() - t);

	struct ct_stats st;
	ct_get_stats(ct, &st);
	if (miss || freed != n || st.used != 0)
		printf("  ! unexpected: %llu misses, %u freed, %llu left\n",
		       (unsigned long long)miss, freed, (unsigned long long)st.used);
	ct_destroy(ct);
	free(perm);
	free(look);
	return 0;
}

int main(int argc, char **argv)
{
	static const uint32_t def[] = { 100000, 1000000 };
	int rc = 0;
	if (argc > 1) {
		for (int i = 1; i < argc; i++) {
			long v = strtol(argv[i], NULL, 10);
			if (v < 1 || v > 100000000) {
				fprintf(stderr, "bad flow count: %s\n", argv[i]);
				return 2;
			}
			rc |= run((uint32_t)v);
		}
	} else {
		for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
			rc |= run(def[i]);
	}
	return rc;
}
