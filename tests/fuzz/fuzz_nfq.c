/* libFuzzer target: NFQUEUE netlink messages as the kernel sends them
 * (src/nfq.c; issue #9, "fuzzing where input enters").  The first byte's
 * low bit says whether the receive was cut (MSG_TRUNC), the rest is one
 * datagram, taken by nfqueue_parse_datagram() exactly as
 * nfqueue_recv_batch() takes each datagram from the socket: several
 * messages, error replies, attributes of any length, a batch overflowing
 * NFQUEUE_BATCH_MAX.  Every packet taken then goes to the packet parser as
 * the daemon hands it over (payload, caplen, wirelen), and the batch's
 * verdicts are built as the daemon sends them: ACCEPT with the offload's
 * mark bit (NFQA_MARK) for packets whose conntrack entry came with them,
 * runs of batch verdicts for the rest (a detached queue builds
 * and sends nothing). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>

#include "vpcfw/nfq.h"
#include "vpcfw/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nfqueue *q;
	struct packet p;

	if (!q && !(q = nfqueue_detached()))
		abort();
	if (size == 0)
		return 0;
	bool trunc = data[0] & 1;
	size_t n = size - 1;
	/* an exact-size copy, aligned as a receive buffer is */
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, n);
	int k = nfqueue_parse_datagram(q, buf, n, trunc);
	if (k < 0 || k > NFQUEUE_BATCH_MAX)
		abort();
	for (int i = 0; i < k; i++) {
		const struct nfqueue_packet *np = nfqueue_packet(q, i);
		if (np->payload && (np->payload < buf || np->payload + np->caplen > buf + n))
			abort(); /* the payload must lie inside what was received */
		if (np->payload && !np->truncated)
			packet_parse_ip(np->payload, np->caplen, np->wirelen, &p);
		nfqueue_set_verdict(q, i, np->id & 1 ? NF_ACCEPT : NF_DROP);
		if (np->ct.present)
			nfqueue_set_mark(q, i, np->mark | 0x40000000u);
	}
	if (nfqueue_send_verdicts(q) != 0)
		abort();
	free(buf);
	return 0;
}
