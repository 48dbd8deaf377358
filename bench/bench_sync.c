/* HA sync figures (issue #13): what a new flow costs on the sync link, and
 * how long a bulk sync of a large table takes.
 *
 *   1. The changes the conntrack journal tells for typical flows (a TCP
 *      connection from SYN to TIME-WAIT and its expiry; a DNS-like UDP
 *      exchange and its expiry), and their bytes on the wire: packed into
 *      MessageBytes datagrams as a busy gateway sends them, and one
 *      datagram per change as an idle one does.
 *   2. A bulk sync: node A holds N flows (default 1M); node B starts and
 *      asks for them; two sync engines in this process over loopback UDP
 *      (127.0.0.1 and 127.0.0.2), one worker thread each applying what
 *      comes.  Timed from B's start until it is ready; B's table is counted.
 *
 * usage: bench_sync [FLOWS]   (built by make bench-sync; no sanitizers) */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/diag.h"
#include "vpcfw/ha.h"
#include "vpcfw/load.h"
#include "vpcfw/model.h"
#include "vpcfw/packet.h"
#include "vpcfw/policy.h"
#include "vpcfw/sync.h"

#define NS 1000000000ULL

static uint64_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static const struct ct_timeouts to = { CT_DEFAULT_TCP_ESTABLISHED, CT_DEFAULT_UDP,
				       CT_DEFAULT_UDP_STREAM };

static struct ct_tuple tuple(uint32_t i, uint8_t proto, uint16_t dport)
{
	struct ct_tuple t;
	memset(&t, 0, sizeof(t));
	t.src.lo = 0xffff00000000ULL | (0x0a000000u + (i >> 16));
	t.dst.lo = 0xffff00000000ULL | 0x0a000214u;
	t.sport = (uint16_t)(1024 + (i & 0xffff) % 60000);
	t.dport = dport;
	t.proto = proto;
	return t;
}

static struct ct_tuple rev(const struct ct_tuple *t)
{
	struct ct_tuple r = *t;
	r.src = t->dst;
	r.dst = t->src;
	r.sport = t->dport;
	r.dport = t->sport;
	return r;
}

/* ------------------------------------------------------------ 1. per flow */

static void step(struct conntrack *ct, const struct ct_tuple *t, uint8_t fl, uint64_t now)
{
	uint64_t h = ct_hash(t);
	struct ct_entry *e = ct_lookup(ct, 1, t, h, now);
	if (e)
		ct_update(ct, e, t, fl, &to, now);
	else
		ct_insert(ct, 1, t, h, fl, &to, now);
}

static size_t drain_packed(struct ha_worker *hw, size_t max_bytes, size_t *msgs, size_t *single)
{
	static uint8_t buf[SYNC_MAX_BYTES];
	struct sync_builder b;
	struct sync_key k;
	struct ha_change c;
	size_t bytes = 0;

	sync_key_init(&k, (const uint8_t *)"bench key, sixteen bytes", 24);
	sync_begin(&b, buf, max_bytes);
	*msgs = *single = 0;
	while (ha_ring_pop(&hw->out, &c)) {
		struct sync_record r = { .op = c.op, .queue = 0, .iface_id = "eni-0123456789abcdef0",
					 .s = c.s };
		r.s.deadline_ns = c.op == SYNC_OP_UPSERT ? 60 * NS : 0;
		if (c.op == SYNC_OP_DELETE)
			memset(r.s.tcp, 0, sizeof(r.s.tcp));
		/* alone in a message: header, one record, one id, the MAC */
		*single += SYNC_HEADER_BYTES + SYNC_RECORD_BYTES + 1 + strlen(r.iface_id) + SYNC_MAC_BYTES;
		if (!sync_fits(&b, r.iface_id)) {
			bytes += sync_finish(&b, &k, SYNC_T_UPDATE, 0, 1, 1, 1, 1, 0, 0, 0);
			(*msgs)++;
			sync_begin(&b, buf, max_bytes);
		}
		if (!sync_add(&b, &r)) {
			fprintf(stderr, "bench: a change could not be encoded\n");
			exit(1);
		}
	}
	if (b.n_records) {
		bytes += sync_finish(&b, &k, SYNC_T_UPDATE, 0, 1, 1, 1, 1, 0, 0, 0);
		(*msgs)++;
	}
	return bytes;
}

static void per_flow(void)
{
	enum { N = 20000 };
	struct conntrack *ct = ct_create(4 * N);
	struct ha_worker hw;
	if (!ct || ha_worker_init(&hw, 0, 16 * N) < 0 || ct_set_journal(ct, ha_journal, &hw) < 0) {
		fprintf(stderr, "bench: out of memory\n");
		exit(1);
	}
	uint64_t now = 10 * NS;
	/* TCP: SYN, SYN-ACK, ACK, 20 data segments each way, FIN, FIN, ACK; expiry */
	for (uint32_t i = 0; i < N; i++) {
		struct ct_tuple a = tuple(i, PROTO_TCP, 443), b = rev(&a);
		step(ct, &a, TCP_SYN, now);
		step(ct, &b, TCP_SYN | TCP_ACK, now);
		step(ct, &a, TCP_ACK, now);
		for (int k = 0; k < 20; k++) {
			step(ct, &a, TCP_ACK | TCP_PSH, now);
			step(ct, &b, TCP_ACK | TCP_PSH, now);
		}
		step(ct, &a, TCP_FIN | TCP_ACK, now);
		step(ct, &b, TCP_FIN | TCP_ACK, now);
		step(ct, &a, TCP_ACK, now);
	}
	ct_expire(ct, now + 1000 * NS, 1u << 30);
	struct ct_stats st;
	ct_get_stats(ct, &st);
	size_t records = (size_t)(atomic_load(&hw.out.head) - atomic_load(&hw.out.tail)), msgs, single;
	size_t bytes = drain_packed(&hw, SYNC_DEFAULT_BYTES, &msgs, &single);
	if (st.used != 0 || counter_get(&hw.lost)) {
		fprintf(stderr, "bench: flows left or changes lost\n");
		exit(1);
	}
	printf("TCP connection (handshake, 40 data segments, close, expiry): %.2f sync records/flow;\n"
	       "  packed (MessageBytes %d): %.1f bytes and %.3f messages per flow;\n"
	       "  one message per change (an idle gateway): %.0f bytes per flow\n",
	       (double)records / N, SYNC_DEFAULT_BYTES, (double)bytes / N, (double)msgs / N,
	       (double)single / N);
	/* UDP: a query and its answer; expiry */
	for (uint32_t i = 0; i < N; i++) {
		struct ct_tuple a = tuple(i, PROTO_UDP, 53), b = rev(&a);
		step(ct, &a, 0, now);
		step(ct, &b, 0, now);
	}
	ct_expire(ct, now + 1000 * NS, 1u << 30);
	records = (size_t)(atomic_load(&hw.out.head) - atomic_load(&hw.out.tail));
	bytes = drain_packed(&hw, SYNC_DEFAULT_BYTES, &msgs, &single);
	printf("UDP query and answer, expiry: %.2f sync records/flow; packed %.1f bytes, "
	       "%.3f messages per flow; one message per change %.0f bytes per flow\n",
	       (double)records / N, (double)bytes / N, (double)msgs / N, (double)single / N);
	ct_set_journal(ct, NULL, NULL);
	ha_worker_free(&hw);
	ct_destroy(ct);
}

/* ------------------------------------------------------------ 2. bulk sync */

static struct policy *pol;

static const struct policy *enter(void *arg, uint64_t *gen)
{
	(void)arg;
	*gen = 1;
	return pol;
}

static void leave(void *arg)
{
	(void)arg;
}

struct side {
	struct conntrack *ct;
	struct ha_worker hw;
	struct ha *h;
	pthread_t worker;
};

static atomic_bool stop;

static void *worker_main(void *arg)
{
	struct side *s = arg;
	while (!atomic_load(&stop)) {
		if (!ha_worker_serve(&s->hw, s->ct, mono(), s->hw.in.size)) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

static void start(struct side *s, uint32_t node, const char *me, const char *peer,
		  const char *keyfile)
{
	struct m_sync c = {
		.enabled = true, .node_id = node, .port = 17710, .key_file = keyfile,
		.message_bytes = SYNC_DEFAULT_BYTES, .max_clock_skew = 60, .ring_entries = 65536,
	};
	char err[256];
	addr_parse(me, &c.listen, &c.listen_family);
	addr_parse(peer, &c.peer, &c.peer_family);
	static const struct ha_hooks hooks = { enter, leave, NULL };
	s->h = ha_open(&c, &s->hw, 1, &hooks, err, sizeof(err));
	if (!s->h || ha_run(s->h) != 0) {
		fprintf(stderr, "bench: %s\n", s->h ? "cannot start" : err);
		exit(1);
	}
	pthread_create(&s->worker, NULL, worker_main, s);
}

static void bulk(uint32_t flows)
{
	char keyfile[] = "/tmp/bench_sync.XXXXXX";
	int fd = mkstemp(keyfile);
	if (fd < 0 || write(fd, "bench key: thirty-two bytes long", 32) != 32) {
		fprintf(stderr, "bench: cannot write a key file\n");
		exit(1);
	}
	fchmod(fd, 0600);
	close(fd);
	struct diag d;
	diag_init(&d);
	const char *cfg = "{\"NetworkInterfaces\": [{\"NetworkInterfaceId\": \"eni-0123456789abcdef0\","
			  " \"PrivateIpAddress\": \"10.0.2.20\", \"Groups\": []}]}";
	pol = policy_load_buffer("bench.json", cfg, strlen(cfg), &d);
	if (!pol || pol->n_ifaces != 1) {
		fprintf(stderr, "bench: no policy\n");
		exit(1);
	}
	uint32_t ct_id = pol->ifaces[0].ct_id;
	struct side a = { 0 }, b = { 0 };
	a.ct = ct_create(flows + flows / 8 + 16);
	b.ct = ct_create(flows + flows / 8 + 16);
	if (!a.ct || !b.ct || ha_worker_init(&a.hw, 0, 65536) < 0 ||
	    ha_worker_init(&b.hw, 0, 65536) < 0 || ct_set_journal(b.ct, ha_journal, &b.hw) < 0) {
		fprintf(stderr, "bench: out of memory\n");
		exit(1);
	}
	uint64_t now = mono();
	for (uint32_t i = 0; i < flows; i++) {
		struct ct_tuple t = tuple(i, PROTO_UDP, (uint16_t)(1 + i / 60000));
		if (!ct_insert(a.ct, ct_id, &t, ct_hash(&t), 0, &to, now)) {
			fprintf(stderr, "bench: table full at %u\n", i);
			exit(1);
		}
	}
	ct_set_journal(a.ct, ha_journal, &a.hw);
	start(&a, 1, "127.0.0.1", "127.0.0.2", keyfile);
	usleep(200000);
	uint64_t t0 = mono();
	start(&b, 2, "127.0.0.2", "127.0.0.1", keyfile);
	struct ha_status st;
	do {
		usleep(1000);
		ha_read(b.h, &st);
	} while (st.bulk_state != HA_BULK_DONE && mono() - t0 < 120 * NS);
	uint64_t t1 = mono();
	/* the last parts may still be in B's worker's ring */
	struct ct_stats cs;
	for (int i = 0; i < 2000; i++) {
		ct_get_stats(b.ct, &cs);
		ha_read(b.h, &st);
		if (cs.used >= flows || (st.applied + st.apply_failed >= st.bulk_received &&
					 atomic_load(&b.hw.in.head) == atomic_load(&b.hw.in.tail)))
			break;
		usleep(1000);
	}
	uint64_t t2 = mono();
	ct_get_stats(b.ct, &cs);
	struct ha_status sa;
	ha_read(a.h, &sa);
	printf("bulk sync of %u flows over loopback UDP (MessageBytes %d): B ready in %.2f s "
	       "(last part received), %.2f s until applied; B holds %" PRIu64 " flows "
	       "(%" PRIu64 " received, %" PRIu64 " overflowed, %" PRIu64 " failed); A sent %" PRIu64
	       " messages, %.1f MB\n", flows, SYNC_DEFAULT_BYTES, (double)(t1 - t0) / NS,
	       (double)(t2 - t0) / NS, cs.used, st.bulk_received, st.records_overflow,
	       st.apply_failed, sa.msgs_sent, (double)sa.bytes_sent / 1e6);
	int bad = st.bulk_state != HA_BULK_DONE || cs.used != flows;
	atomic_store(&stop, true);
	pthread_join(a.worker, NULL);
	pthread_join(b.worker, NULL);
	ha_stop(a.h);
	ha_stop(b.h);
	ct_set_journal(a.ct, NULL, NULL);
	ct_set_journal(b.ct, NULL, NULL);
	ha_worker_free(&a.hw);
	ha_worker_free(&b.hw);
	ct_destroy(a.ct);
	ct_destroy(b.ct);
	policy_free(pol);
	diag_free(&d);
	unlink(keyfile);
	if (bad) {
		printf("bench: the bulk sync did not bring every flow (a figure of less than it says)\n");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	uint32_t flows = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1000000;
	per_flow();
	bulk(flows);
	return 0;
}
