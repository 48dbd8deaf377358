/* Connection-tracking benchmark: lookups per second on established flows,
 * inserts per second for new flows, churn through a full table, and bytes
 * per flow, at 100k and 1M flows.  Prints figures; not a test.
 *
 *   cd bench && cc -std=c11 -O2 -DNDEBUG -D_GNU_SOURCE -I../include \
 *       -o bench_conntrack bench_conntrack.c ../src/conntrack.c ../src/addr.c
 *   ./bench_conntrack [FLOWS ...]      default: 100000 1000000
 *
 * Flows are inserted in one shuffled order.  "random" looks them up in
 * another (every lookup misses the cache once the table outgrows it: the
 * worst case); "insertion order" walks the entry pool sequentially (the best
 * case).  Every figure includes ct_hash.  Each figure counts the operations
 * that did the work its label names (hits, inserts, evictions, refusals
 * from ct_insert's NULL) and prints that count; the run fails (exit 1) when
 * a count is not what the figure needs. */
#include <limits.h>
#include <stdbool.h>
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

static int failures;

/* One figure: `want` operations were timed; `done` of them did what the
 * label says (a hit, an insert, a refusal...).  Both are printed, and a
 * figure whose work was not done as labelled is flagged and fails the run:
 * a rate of operations that did something else measures nothing. */
static void report(const char *what, uint64_t want, uint64_t done, double secs)
{
	printf("  %-48s %8.2f M/s  %7.1f ns/op  %10llu ops%s\n", what,
	       (double)want / secs / 1e6, secs * 1e9 / (double)want, (unsigned long long)done,
	       done == want ? "" : "  <-- NOT AS LABELLED");
	if (done != want) {
		fprintf(stderr, "bench_conntrack: %s: %llu of %llu operations did the work\n", what,
			(unsigned long long)done, (unsigned long long)want);
		failures++;
	}
}

/* Flow i through a whole handshake (SYN, SYN/ACK, ACK): established and
 * answered, which no new flow may evict.  True if it got there. */
static bool establish(struct conntrack *ct, uint32_t i, uint16_t dport, uint64_t now)
{
	struct ct_tuple f = flow(i), r;
	f.dport = dport;
	r = f;
	r.src = f.dst;
	r.dst = f.src;
	r.sport = f.dport;
	r.dport = f.sport;
	struct ct_entry *e = ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now);
	if (!e)
		return false;
	ct_update(ct, e, &r, 0x12, &to, now);
	ct_update(ct, e, &f, 0x10, &to, now);
	struct ct_flow_info fi;
	ct_entry_info(e, &fi);
	return fi.tcp_state == CT_TCP_ESTABLISHED && fi.seen_reply;
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
	printf("%u flows, %zu bytes per flow (%.1f MiB); ops: operations that did the labelled work\n",
	       n, ct_bytes_per_flow(ct), (double)ct_bytes_per_flow(ct) * n / (1 << 20));
	uint64_t now = T0, done;
	struct ct_stats st0, st1;
	double t;
	const int rounds = 5;

	/* New flows: a SYN each, into an empty table. */
	done = 0;
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		done += ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now) != NULL;
	}
	report("insert (new flow, SYN)", n, done, now_s() - t);

	/* Complete the handshakes: the flows become established. */
	done = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple r = reply(i), f = flow(i);
		struct ct_entry *e = ct_lookup(ct, 1, &r, ct_hash(&r), now);
		if (!e)
			continue;
		ct_update(ct, e, &r, 0x12, &to, now);
		ct_update(ct, e, &f, 0x10, &to, now);
		done++;
	}
	if (done != n) {
		fprintf(stderr, "bench_conntrack: %llu of %u handshakes found their flow\n",
			(unsigned long long)done, n);
		failures++;
	}

	for (uint32_t i = 0; i < n; i++) { /* warm up: the handshakes left dirty lines */
		struct ct_tuple f = flow(look[i]);
		(void)ct_lookup(ct, 1, &f, ct_hash(&f), now);
	}
	done = 0;
	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = (i & 1) ? reply(look[i]) : flow(look[i]);
			done += ct_lookup(ct, 1, &f, ct_hash(&f), now) != NULL;
		}
	report("lookup, established, random (hits)", (uint64_t)rounds * n, done, now_s() - t);

	done = 0;
	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = (i & 1) ? reply(perm[i]) : flow(perm[i]);
			done += ct_lookup(ct, 1, &f, ct_hash(&f), now) != NULL;
		}
	report("lookup, established, insertion order (hits)", (uint64_t)rounds * n, done,
	       now_s() - t);

	/* As a batching caller would: hash a batch, prefetch buckets, then
	 * entries, then look up. */
	enum { BATCH = 16 };
	done = 0;
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
				done += ct_lookup(ct, 1, &f[j], h[j], now) != NULL;
		}
	report("lookup, established, random, batches of 16", (uint64_t)rounds * (n - n % BATCH),
	       done, now_s() - t);

	done = 0;
	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = (i & 1) ? reply(look[i]) : flow(look[i]);
			struct ct_entry *e = ct_lookup(ct, 1, &f, ct_hash(&f), now);
			if (e) {
				ct_update(ct, e, &f, 0x10, &to, now);
				done++;
			}
		}
	report("lookup + update, established, random", (uint64_t)rounds * n, done, now_s() - t);

	done = 0;
	t = now_s();
	for (int k = 0; k < rounds; k++)
		for (uint32_t i = 0; i < n; i++) {
			struct ct_tuple f = flow(look[i]);
			f.dport = 8443; /* no such flow */
			done += ct_lookup(ct, 1, &f, ct_hash(&f), now) == NULL;
		}
	report("lookup, no such flow (misses)", (uint64_t)rounds * n, done, now_s() - t);

	/* Churn: the table is full of UDP flows idle past their timeout; each
	 * new flow reclaims room (expired flows in its bucket or a bounded
	 * sweep). */
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
	done = 0;
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		done += ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now) != NULL;
	}
	report("insert into a full table of expired flows", n, done, now_s() - t);

	/* The table is now nearly full of SYN_SENT flows: an insert above
	 * frees every expired flow its bucket holds and its sweep may free
	 * more than one, so some slots are free and some expired UDP flows
	 * are left.  Sweep those and fill the free slots with more SYNs: the
	 * table is then full of SYN_SENT flows only, and each new SYN gets in
	 * by evicting one, as the table's own stats show. */
	ct_expire(ct, now, UINT_MAX);
	for (uint32_t i = 0; i < n && ct_available(ct) > 0; i++) {
		struct ct_tuple f = flow(i);
		f.dport = 8080;
		ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now);
	}
	ct_get_stats(ct, &st0);
	if (st0.used != n) {
		fprintf(stderr, "bench_conntrack: %llu of %u flows in the table before evicting\n",
			(unsigned long long)st0.used, n);
		failures++;
	}
	done = 0;
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		f.dport = 80;
		done += ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now) != NULL;
	}
	double secs = now_s() - t;
	ct_get_stats(ct, &st1);
	uint64_t evicted = st1.evicted_embryonic - st0.evicted_embryonic;
	uint64_t reclaimed = st1.expired - st0.expired;
	report("insert into a full table, evicting SYN_SENT", n, done, secs);
	printf("  %-48s %llu evicted, %llu expired reclaimed\n", "", (unsigned long long)evicted,
	       (unsigned long long)reclaimed);
	if (evicted + reclaimed != n || evicted < n / 2) {
		fprintf(stderr, "bench_conntrack: evicting: %llu evicted + %llu reclaimed for %u "
			"inserts\n", (unsigned long long)evicted, (unsigned long long)reclaimed, n);
		failures++;
	}

	/* A table full of established, answered flows (whole handshakes):
	 * nothing may be evicted, every new SYN is refused; counted from
	 * ct_insert's return value (NULL) and checked against the table's
	 * allowance_exceeded and evicted_embryonic. */
	ct_destroy(ct);
	ct = ct_create(n);
	if (!ct)
		return 1;
	done = 0;
	for (uint32_t i = 0; i < n; i++)
		done += establish(ct, i, 443, now);
	if (done != n) {
		fprintf(stderr, "bench_conntrack: %llu of %u flows established for the full-table "
			"figure\n", (unsigned long long)done, n);
		failures++;
	}
	ct_get_stats(ct, &st0);
	done = 0;
	t = now_s();
	for (uint32_t i = 0; i < n; i++) {
		struct ct_tuple f = flow(perm[i]);
		f.dport = 80;
		done += ct_insert(ct, 1, &f, ct_hash(&f), 0x02, &to, now) == NULL;
	}
	secs = now_s() - t;
	ct_get_stats(ct, &st1);
	if (st1.evicted_embryonic != st0.evicted_embryonic ||
	    st1.allowance_exceeded - st0.allowance_exceeded != done || st1.used != n) {
		fprintf(stderr, "bench_conntrack: full of established flows: %llu evicted, %llu "
			"refusals counted by the table, %llu refused, %llu used\n",
			(unsigned long long)(st1.evicted_embryonic - st0.evicted_embryonic),
			(unsigned long long)(st1.allowance_exceeded - st0.allowance_exceeded),
			(unsigned long long)done, (unsigned long long)st1.used);
		failures++;
	}
	report("insert refused: full of established flows", n, done, secs);

	/* Expiry sweep of the whole table. */
	now += 10 * 86400 * NS;
	t = now_s();
	uint64_t freed = 0;
	for (uint64_t b = 0; b < 2ULL * n; b += 1024)
		freed += ct_expire(ct, now, 1024);
	secs = now_s() - t;
	ct_get_stats(ct, &st1);
	report("expire (flows freed by ct_expire slices)", n, st1.used == 0 ? freed : 0, secs);

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
	if (failures)
		fprintf(stderr, "bench_conntrack: %d figure(s) not measuring what they say\n",
			failures);
	return rc || failures ? 1 : 0;
}
