/* The ceiling: an NFQUEUE reader that accepts everything, with vpcfwd's own
 * queue code and tuning (copy range, GSO, batches, buffer sizes).
 * usage: accept-all QUEUES */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <linux/netfilter.h>

#include "vpcfw/nfq.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void *run(void *arg)
{
	struct nfqueue *q = arg;

	while (!stop) {
		int n = nfqueue_recv_batch(q, 100);
		if (n < 0)
			break;
		for (int i = 0; i < n; i++)
			nfqueue_set_verdict(q, i, NF_ACCEPT);
		nfqueue_send_verdicts(q);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	uint16_t queues[64];
	struct nfqueue *qs[64];
	pthread_t th[64];
	int n;

	if (argc != 2 || (n = nfqueue_parse_queues(argv[1], queues, 64)) <= 0) {
		fputs("usage: accept-all QUEUES\n", stderr);
		return 2;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (int i = 0; i < n; i++) {
		struct nfqueue_options o = { .queue = queues[i] };
		char err[256];
		qs[i] = nfqueue_open(&o, err, sizeof(err));
		if (!qs[i]) {
			fprintf(stderr, "accept-all: %s\n", err);
			return 1;
		}
	}
	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, run, qs[i]);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < n; i++) {
		struct nfqueue_stats s;
		struct nfqueue_kernel_stats k = { 0 };
		nfqueue_get_stats(qs[i], &s);
		nfqueue_kernel_stats(queues[i], &k);
		fprintf(stderr, "accept-all: queue %u: %llu packets in %llu batches, %llu enobufs; "
			"kernel: %llu dropped (queue full), %llu dropped (socket full)\n",
			queues[i], (unsigned long long)s.packets, (unsigned long long)s.batches,
			(unsigned long long)s.enobufs, (unsigned long long)k.queue_dropped,
			(unsigned long long)k.user_dropped);
		nfqueue_close(qs[i]);
	}
	return 0;
}
