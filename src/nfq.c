/* NFQUEUE over libmnl.  Setup first (each choice with its reason), then a
 * loop of: receive a batch, let the caller decide, send the verdicts. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <endian.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include "vpcfw/nfq.h"
#include "vpcfw/counter.h"

/* Room for the netlink, nfgenmsg and attribute headers around the copied
 * payload (packet header, marks, devices, hardware address, L2 header...). */
#define MSG_OVERHEAD 2048u
/* A recvmmsg datagram holds one kernel message in practice; allow for more. */
/* the daemon decides a batch in arrays of NFQUEUE_BATCH_MAX: more packets in
 * one receive (several per datagram) are dropped at once, counted */
#define PKTS_MAX NFQUEUE_BATCH_MAX
#define VERDICT_MSG_SIZE 64u
#define CONFIG_MSG_SIZE 512u

struct nfqueue {
	struct mnl_socket *nl;
	int fd;
	uint32_t portid;
	uint16_t queue;
	size_t slot_size;
	uint8_t *slots;                 /* NFQUEUE_BATCH_MAX receive buffers */
	struct mmsghdr msgs[NFQUEUE_BATCH_MAX];
	struct iovec iov[NFQUEUE_BATCH_MAX];
	struct nfqueue_packet pkts[PKTS_MAX];
	uint32_t verdicts[PKTS_MAX];
	uint32_t marks[PKTS_MAX];       /* the packet mark an ACCEPT sets ... */
	bool set_mark[PKTS_MAX];        /* ... when this is true */
	int n_pkts;
	uint32_t cfg_flags;             /* NFQA_CFG_F_* asked for at open */
	bool ct_unsupported;            /* the kernel refused NFQA_CFG_F_CONNTRACK */
	_Alignas(8) uint8_t vbuf[PKTS_MAX * VERDICT_MSG_SIZE]; /* netlink messages: aligned */
	size_t vlen;                    /* bytes of vbuf the last send built */
	/* Written by the worker, read by the control thread. */
	struct {
		counter_t packets, accepted, dropped, batches, verdict_msgs, mark_verdicts,
			enobufs, truncated, netlink_errors, recv_errors, send_errors;
	} cnt;
};

static void set_err(char *err, size_t len, const char *what, int e)
{
	if (err && len)
		snprintf(err, len, "%s: %s", what, strerror(e));
}

static void take_packet(struct nfqueue *q, const struct nlmsghdr *nlh, size_t avail);

/* A packet queued while we are still configuring: it joins the batch with
 * the default verdict, DROP, sent once configuration is done. */
static int config_packet(const struct nlmsghdr *nlh, void *data)
{
	struct nfqueue *q = data;

	if (NFNL_SUBSYS_ID(nlh->nlmsg_type) == NFNL_SUBSYS_QUEUE &&
	    NFNL_MSG_TYPE(nlh->nlmsg_type) == NFQNL_MSG_PACKET)
		take_packet(q, nlh, nlh->nlmsg_len);
	return MNL_CB_OK;
}

/* Sends one configuration message and waits for the kernel's answer, so
 * that a refusal (another process holds the queue: EBUSY) is seen here. */
static int config_send(struct nfqueue *q, struct nlmsghdr *nlh)
{
	uint8_t *buf = q->slots;
	size_t size = q->slot_size * NFQUEUE_BATCH_MAX;
	uint32_t seq = (uint32_t)time(NULL) + q->queue;

	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(q->nl, buf, size);
		if (n < 0)
			return -1;
		int r = mnl_cb_run(buf, (size_t)n, seq, q->portid, config_packet, q);
		if (r <= MNL_CB_STOP)
			return r < 0 ? -1 : 0;
	}
}

static int configure(struct nfqueue *q, const struct nfqueue_options *opt, char *err, size_t errlen)
{
	uint8_t buf[CONFIG_MSG_SIZE] = { 0 }; /* libmnl < 1.0.5 leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;
	uint32_t range = opt->copy_range ? opt->copy_range : NFQUEUE_COPY_RANGE_HEADERS;
	uint32_t maxlen = opt->queue_maxlen ? opt->queue_maxlen : 4096;
	uint32_t flags;

	nlh = nfq_nlmsg_put((char *)buf, NFQNL_MSG_CONFIG, q->queue);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	if (config_send(q, nlh) < 0) {
		char what[96];
		/* the kernel says EPERM both for a queue another socket holds
		 * and for a caller without CAP_NET_ADMIN */
		snprintf(what, sizeof(what), "cannot bind queue %u%s", q->queue,
			 errno == EPERM || errno == EBUSY ?
			 " (another process serves it, or no CAP_NET_ADMIN)" : "");
		set_err(err, errlen, what, errno);
		return -1;
	}

	/* Only the headers: the engine decides on them, and copying a 64 KiB
	 * GSO super-packet to decide on its first 100 bytes is the largest
	 * cost NFQUEUE can have. */
	nlh = nfq_nlmsg_put((char *)buf, NFQNL_MSG_CONFIG, q->queue);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)range);
	/* The kernel queues at most this many packets for us; beyond it the
	 * packet is dropped, or accepted under fail-open, and counted
	 * (queue_dropped in /proc/net/netfilter/nfnetlink_queue). */
	nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
	if (config_send(q, nlh) < 0) {
		set_err(err, errlen, "cannot set the copy range and queue length", errno);
		return -1;
	}

	/* GSO: hand us super-packets whole instead of segmenting them in
	 * software just for us.  FAIL_OPEN: what a full queue does.
	 * CONNTRACK: the packet's kernel conntrack entry comes with it (the
	 * offload reads its id and mark, and marks it in the verdict). */
	q->cfg_flags = NFQA_CFG_F_GSO | (opt->conntrack ? NFQA_CFG_F_CONNTRACK : 0);
	for (;;) {
		flags = q->cfg_flags | (opt->fail_open ? NFQA_CFG_F_FAIL_OPEN : 0);
		nlh = nfq_nlmsg_put((char *)buf, NFQNL_MSG_CONFIG, q->queue);
		mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
		mnl_attr_put_u32(nlh, NFQA_CFG_MASK,
				 htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_CONNTRACK));
		if (config_send(q, nlh) == 0)
			return 0;
		/* a kernel without CONFIG_NETFILTER_NETLINK_GLUE_CT cannot
		 * send the entry: the packets come without it */
		if (errno != EOPNOTSUPP || !(q->cfg_flags & NFQA_CFG_F_CONNTRACK))
			break;
		q->cfg_flags &= ~(uint32_t)NFQA_CFG_F_CONNTRACK;
		q->ct_unsupported = true;
	}
	set_err(err, errlen, "cannot set the queue flags (GSO, fail-open)", errno);
	return -1;
}

struct nfqueue *nfqueue_open(const struct nfqueue_options *opt, char *err, size_t errlen)
{
	struct nfqueue *q = calloc(1, sizeof(*q));
	uint32_t range = opt->copy_range ? opt->copy_range : NFQUEUE_COPY_RANGE_HEADERS;
	int rcvbuf = opt->rcvbuf > 0 ? opt->rcvbuf : 8 << 20;

	if (!q) {
		set_err(err, errlen, "nfq", ENOMEM);
		return NULL;
	}
	q->queue = opt->queue;
	q->fd = -1;
	/* netlink messages start 4-byte aligned in each slot: round the slot */
	q->slot_size = (range + MSG_OVERHEAD + 15) & ~(size_t)15;
	q->slots = malloc(q->slot_size * NFQUEUE_BATCH_MAX);
	if (!q->slots) {
		set_err(err, errlen, "nfq", ENOMEM);
		goto fail;
	}
	q->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!q->nl) {
		set_err(err, errlen, "netlink socket", errno);
		goto fail;
	}
	if (mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		set_err(err, errlen, "netlink bind", errno);
		goto fail;
	}
	q->fd = mnl_socket_get_fd(q->nl);
	q->portid = mnl_socket_get_portid(q->nl);

	/* A burst must wait in our socket rather than be dropped by netlink
	 * (user_dropped).  FORCE passes rmem_max; it needs CAP_NET_ADMIN,
	 * which binding a queue needs anyway. */
	if (setsockopt(q->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		(void)setsockopt(q->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	if (configure(q, opt, err, errlen) < 0)
		goto fail;
	(void)nfqueue_send_verdicts(q);

	for (int i = 0; i < NFQUEUE_BATCH_MAX; i++) {
		q->iov[i].iov_base = q->slots + (size_t)i * q->slot_size;
		q->iov[i].iov_len = q->slot_size;
		q->msgs[i].msg_hdr.msg_iov = &q->iov[i];
		q->msgs[i].msg_hdr.msg_iovlen = 1;
	}
	return q;
fail:
	if (q->nl)
		mnl_socket_close(q->nl);
	free(q->slots);
	free(q);
	return NULL;
}

void nfqueue_close(struct nfqueue *q)
{
	uint8_t buf[CONFIG_MSG_SIZE] = { 0 }; /* libmnl < 1.0.5 leaves attribute padding as it finds it */
	struct nlmsghdr *nlh;

	if (!q)
		return;
	if (!q->nl) { /* detached */
		free(q);
		return;
	}
	nlh = nfq_nlmsg_put((char *)buf, NFQNL_MSG_CONFIG, q->queue);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_UNBIND);
	(void)mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len);
	mnl_socket_close(q->nl);
	free(q->slots);
	free(q);
}

/* Sends one DROP straight away for a packet the batch has no room for. */
static void drop_now(struct nfqueue *q, uint32_t id)
{
	uint8_t buf[VERDICT_MSG_SIZE * 2] = { 0 };
	struct nlmsghdr *nlh = nfq_nlmsg_put((char *)buf, NFQNL_MSG_VERDICT, q->queue);

	nfq_nlmsg_verdict_put(nlh, (int)id, NF_DROP);
	/* a detached queue (fuzzing) has nobody to tell */
	if (q->nl && mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		counter_inc(&q->cnt.send_errors);
	counter_inc(&q->cnt.dropped);
	counter_inc(&q->cnt.verdict_msgs);
}

static bool get_be32(const struct nlattr *a, uint32_t *out)
{
	uint32_t u;

	if (mnl_attr_get_payload_len(a) < 4)
		return false;
	memcpy(&u, mnl_attr_get_payload(a), 4);
	*out = ntohl(u);
	return true;
}

static bool get_be64(const struct nlattr *a, uint64_t *out)
{
	uint64_t u;

	if (mnl_attr_get_payload_len(a) < 8)
		return false;
	memcpy(&u, mnl_attr_get_payload(a), 8);
	*out = be64toh(u);
	return true;
}

/* CTA_COUNTERS_ORIG / _REPLY: packets and bytes (64-bit, or the old 32-bit). */
static void parse_counters(const struct nlattr *a, uint64_t *packets, uint64_t *bytes)
{
	const struct nlattr *c;

	/* mnl_attr_for_each_nested: bounded by the nest's own length, which
	 * the message's walk checked against the datagram */
	mnl_attr_for_each_nested(c, a) {
		uint32_t u;
		switch (mnl_attr_get_type(c)) {
		case CTA_COUNTERS_PACKETS: (void)get_be64(c, packets); break;
		case CTA_COUNTERS_BYTES: (void)get_be64(c, bytes); break;
		case CTA_COUNTERS32_PACKETS: if (get_be32(c, &u)) *packets = u; break;
		case CTA_COUNTERS32_BYTES: if (get_be32(c, &u)) *bytes = u; break;
		default: break;
		}
	}
}

/* NFQA_CT: the entry as ctnetlink's glue builds it (nested CTA_*). */
static void parse_ct(const struct nlattr *a, struct nfqueue_ct *ct)
{
	const struct nlattr *c;

	ct->present = true;
	mnl_attr_for_each_nested(c, a) {
		switch (mnl_attr_get_type(c)) {
		case CTA_ID: (void)get_be32(c, &ct->id); break;
		case CTA_STATUS: (void)get_be32(c, &ct->status); break;
		case CTA_MARK: (void)get_be32(c, &ct->mark); break;
		case CTA_COUNTERS_ORIG:
			ct->has_counters = true;
			parse_counters(c, &ct->orig_packets, &ct->orig_bytes);
			break;
		case CTA_COUNTERS_REPLY:
			ct->has_counters = true;
			parse_counters(c, &ct->reply_packets, &ct->reply_bytes);
			break;
		default:
			break;
		}
	}
}

/* One kernel packet message; `avail` bytes of it are in memory (fewer than
 * nlmsg_len when our buffer truncated it). */
static void take_packet(struct nfqueue *q, const struct nlmsghdr *nlh, size_t avail)
{
	struct nfqueue_packet p = { 0 };
	size_t len = nlh->nlmsg_len < avail ? nlh->nlmsg_len : avail;
	size_t hdr = NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct nfgenmsg));
	bool have_id = false;

	if (len < hdr)
		return;
	p.truncated = len < nlh->nlmsg_len;
	const struct nlattr *a = (const struct nlattr *)((const uint8_t *)nlh + hdr);
	int rest = (int)(len - hdr);
	for (; mnl_attr_ok(a, rest); rest -= (int)MNL_ALIGN(a->nla_len),
	     a = (const struct nlattr *)((const uint8_t *)a + MNL_ALIGN(a->nla_len))) {
		const void *v = mnl_attr_get_payload(a);
		size_t vlen = mnl_attr_get_payload_len(a);
		uint32_t u;

		switch (mnl_attr_get_type(a)) {
		case NFQA_PACKET_HDR:
			if (vlen >= sizeof(struct nfqnl_msg_packet_hdr)) {
				const struct nfqnl_msg_packet_hdr *ph = v;
				p.id = ntohl(ph->packet_id);
				p.hw_proto = ntohs(ph->hw_protocol);
				p.hook = ph->hook;
				have_id = true;
			}
			break;
		case NFQA_PAYLOAD:
			p.payload = v;
			p.caplen = vlen;
			break;
		case NFQA_CAP_LEN:
			if (vlen >= 4) {
				memcpy(&u, v, 4);
				p.wirelen = ntohl(u);
			}
			break;
		case NFQA_IFINDEX_INDEV:
			if (vlen >= 4) {
				memcpy(&u, v, 4);
				p.indev = ntohl(u);
			}
			break;
		case NFQA_IFINDEX_OUTDEV:
			if (vlen >= 4) {
				memcpy(&u, v, 4);
				p.outdev = ntohl(u);
			}
			break;
		case NFQA_SKB_INFO:
			if (vlen >= 4) {
				memcpy(&u, v, 4);
				p.skb_info = ntohl(u);
			}
			break;
		case NFQA_MARK:
			(void)get_be32(a, &p.mark);
			break;
		case NFQA_CT:
			parse_ct(a, &p.ct);
			break;
		case NFQA_CT_INFO:
			(void)get_be32(a, &p.ct.info);
			break;
		default:
			break;
		}
	}
	if (!have_id)
		return; /* nothing we could give a verdict to */
	/* NFQA_CAP_LEN is sent only when the copy range cut the packet. */
	if (p.wirelen < p.caplen)
		p.wirelen = p.caplen;
	if (p.truncated) {
		counter_inc(&q->cnt.truncated);
		p.payload = NULL;
		p.caplen = 0;
		memset(&p.ct, 0, sizeof(p.ct));
	}
	counter_inc(&q->cnt.packets);
	if (q->n_pkts == PKTS_MAX) {
		drop_now(q, p.id);
		return;
	}
	q->verdicts[q->n_pkts] = NF_DROP;
	q->set_mark[q->n_pkts] = false;
	q->pkts[q->n_pkts++] = p;
}

/* mnl_nlmsg_ok compares the length as a signed int: a message claiming
 * 2^31 bytes or more passes it, and mnl_nlmsg_next then jumps far outside
 * the buffer (found by tests/fuzz/fuzz_nfq).  The same test, unsigned. */
static bool msg_ok(const struct nlmsghdr *nlh, int len)
{
	return len >= (int)sizeof(*nlh) && nlh->nlmsg_len >= sizeof(*nlh) &&
	       nlh->nlmsg_len <= (uint32_t)len;
}

static void take_datagram(struct nfqueue *q, const uint8_t *buf, size_t n, bool trunc)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
	int rest = (int)n;

	if (trunc && n >= sizeof(*nlh) && nlh->nlmsg_len > n) {
		/* our slot was too small for this one message */
		if (NFNL_SUBSYS_ID(nlh->nlmsg_type) == NFNL_SUBSYS_QUEUE &&
		    NFNL_MSG_TYPE(nlh->nlmsg_type) == NFQNL_MSG_PACKET)
			take_packet(q, nlh, n);
		return;
	}
	for (; msg_ok(nlh, rest); nlh = mnl_nlmsg_next(nlh, &rest)) {
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
			if (nlh->nlmsg_len >= NLMSG_HDRLEN + sizeof(*e) && e->error != 0)
				counter_inc(&q->cnt.netlink_errors);
			continue;
		}
		if (NFNL_SUBSYS_ID(nlh->nlmsg_type) == NFNL_SUBSYS_QUEUE &&
		    NFNL_MSG_TYPE(nlh->nlmsg_type) == NFQNL_MSG_PACKET)
			take_packet(q, nlh, (size_t)rest);
	}
}

int nfqueue_recv_batch(struct nfqueue *q, int timeout_ms)
{
	int n;

	q->n_pkts = 0;
	for (int tries = 0;; tries++) {
		for (int i = 0; i < NFQUEUE_BATCH_MAX; i++) {
			q->msgs[i].msg_hdr.msg_flags = 0;
			q->msgs[i].msg_len = 0;
		}
		n = recvmmsg(q->fd, q->msgs, NFQUEUE_BATCH_MAX, MSG_DONTWAIT, NULL);
		if (n > 0)
			break;
		if (n < 0 && errno == ENOBUFS) {
			/* Our socket overran: the kernel dropped packets it could
			 * not deliver (or accepted them, fail-open) and counts
			 * them as user_dropped.  Note it and carry on. */
			counter_inc(&q->cnt.enobufs);
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			counter_inc(&q->cnt.recv_errors);
			return -1;
		}
		if (tries > 0 || timeout_ms == 0)
			return 0;
		struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
		int r = poll(&pfd, 1, timeout_ms);
		if (r <= 0)
			return r < 0 && errno != EINTR ? -1 : 0;
	}
	for (int i = 0; i < n; i++)
		take_datagram(q, q->iov[i].iov_base, q->msgs[i].msg_len,
			      (q->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0);
	if (q->n_pkts)
		counter_inc(&q->cnt.batches);
	return q->n_pkts;
}

struct nfqueue *nfqueue_detached(void)
{
	struct nfqueue *q = calloc(1, sizeof(*q));
	if (q)
		q->fd = -1;
	return q;
}

int nfqueue_parse_datagram(struct nfqueue *q, const uint8_t *buf, size_t n, bool trunc)
{
	q->n_pkts = 0;
	take_datagram(q, buf, n, trunc);
	return q->n_pkts;
}

const struct nfqueue_packet *nfqueue_packet(const struct nfqueue *q, int i)
{
	return &q->pkts[i];
}

void nfqueue_set_verdict(struct nfqueue *q, int i, uint32_t verdict)
{
	q->verdicts[i] = verdict == NF_ACCEPT ? NF_ACCEPT : NF_DROP;
}

void nfqueue_set_mark(struct nfqueue *q, int i, uint32_t mark)
{
	q->marks[i] = mark;
	q->set_mark[i] = true;
}

/* Does packet i's verdict set its mark?  ACCEPTs only. */
static bool marked(const struct nfqueue *q, int i)
{
	return q->verdicts[i] == NF_ACCEPT && q->set_mark[i];
}

/* A batch verdict applies to every packet of the queue with an id up to
 * the one given.  Ids rise in the order we receive, and the kernel queues a
 * packet only once its message is in our socket, so the pending packets up
 * to a run's last id are exactly that run.  A packet whose verdict sets
 * its mark has a message of its own (a batch verdict's mark would apply to
 * every packet of the run), between the runs before and after it: the
 * kernel takes the messages of one datagram in order. */
int nfqueue_send_verdicts(struct nfqueue *q)
{
	size_t off = 0;
	int i = 0;

	_Static_assert(VERDICT_MSG_SIZE >= NLMSG_HDRLEN + 4 + 12 + 8,
		       "a verdict with NFQA_MARK fits its slot");
	while (i < q->n_pkts) {
		int j = i;
		uint32_t v = q->verdicts[i];
		struct nlmsghdr *nlh;
		if (marked(q, i)) {
			nlh = nfq_nlmsg_put((char *)q->vbuf + off, NFQNL_MSG_VERDICT, q->queue);
			nfq_nlmsg_verdict_put(nlh, (int)q->pkts[i].id, (int)v);
			nfq_nlmsg_verdict_put_mark(nlh, q->marks[i]);
			counter_inc(&q->cnt.mark_verdicts);
		} else {
			while (j + 1 < q->n_pkts && q->verdicts[j + 1] == v && !marked(q, j + 1))
				j++;
			nlh = nfq_nlmsg_put((char *)q->vbuf + off, NFQNL_MSG_VERDICT_BATCH, q->queue);
			nfq_nlmsg_verdict_put(nlh, (int)q->pkts[j].id, (int)v);
		}
		off += MNL_ALIGN(nlh->nlmsg_len);
		if (v == NF_ACCEPT)
			counter_add(&q->cnt.accepted, (uint64_t)(j - i + 1));
		else
			counter_add(&q->cnt.dropped, (uint64_t)(j - i + 1));
		counter_inc(&q->cnt.verdict_msgs);
		i = j + 1;
	}
	q->n_pkts = 0;
	q->vlen = off;
	if (!off || !q->nl) /* a detached queue (tests) has nobody to tell */
		return 0;
	for (int tries = 0; tries < 100; tries++) {
		if (mnl_socket_sendto(q->nl, q->vbuf, off) >= 0)
			return 0;
		if (errno != ENOBUFS && errno != ENOMEM && errno != EINTR && errno != EAGAIN)
			break;
		/* the kernel is short of memory for a moment: the packets
		 * still need their verdicts, so try again */
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	counter_inc(&q->cnt.send_errors);
	return -1;
}

const uint8_t *nfqueue_last_verdicts(const struct nfqueue *q, size_t *len)
{
	*len = q->vlen;
	return q->vbuf;
}

void nfqueue_set_fail_open(struct nfqueue *q, bool fail_open)
{
	uint8_t buf[256] = { 0 };
	struct nlmsghdr *nlh = nfq_nlmsg_put((char *)buf, NFQNL_MSG_CONFIG, q->queue);
	uint32_t flags = q->cfg_flags | (fail_open ? NFQA_CFG_F_FAIL_OPEN : 0);

	/* only FAIL_OPEN changes: the mask leaves the other flags as they are */
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		counter_inc(&q->cnt.send_errors);
}

void nfqueue_set_conntrack(struct nfqueue *q, bool conntrack)
{
	uint8_t buf[256] = { 0 };
	struct nlmsghdr *nlh = nfq_nlmsg_put((char *)buf, NFQNL_MSG_CONFIG, q->queue);

	if (q->ct_unsupported)
		return;
	q->cfg_flags = (q->cfg_flags & ~(uint32_t)NFQA_CFG_F_CONNTRACK) |
		       (conntrack ? NFQA_CFG_F_CONNTRACK : 0);
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(q->cfg_flags));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_CONNTRACK));
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		counter_inc(&q->cnt.send_errors);
}

bool nfqueue_has_conntrack(const struct nfqueue *q)
{
	return (q->cfg_flags & NFQA_CFG_F_CONNTRACK) != 0;
}

uint16_t nfqueue_queue_num(const struct nfqueue *q)
{
	return q->queue;
}

void nfqueue_get_stats(const struct nfqueue *q, struct nfqueue_stats *out)
{
	out->packets = counter_get(&q->cnt.packets);
	out->accepted = counter_get(&q->cnt.accepted);
	out->dropped = counter_get(&q->cnt.dropped);
	out->batches = counter_get(&q->cnt.batches);
	out->verdict_msgs = counter_get(&q->cnt.verdict_msgs);
	out->mark_verdicts = counter_get(&q->cnt.mark_verdicts);
	out->enobufs = counter_get(&q->cnt.enobufs);
	out->truncated = counter_get(&q->cnt.truncated);
	out->netlink_errors = counter_get(&q->cnt.netlink_errors);
	out->recv_errors = counter_get(&q->cnt.recv_errors);
	out->send_errors = counter_get(&q->cnt.send_errors);
}

bool nfqueue_kernel_stats(uint16_t queue, struct nfqueue_kernel_stats *out)
{
	FILE *f = fopen("/proc/net/netfilter/nfnetlink_queue", "re");
	char line[256];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned num, portid, total, mode, range;
		unsigned long long qd, ud, seq;
		if (sscanf(line, "%u %u %u %u %u %llu %llu %llu", &num, &portid, &total, &mode,
			   &range, &qd, &ud, &seq) == 8 && num == queue) {
			out->queue_total = total;
			out->queue_dropped = qd;
			out->user_dropped = ud;
			out->id_sequence = seq;
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static bool parse_num(const char **s, unsigned long *out)
{
	char *end;

	if (**s < '0' || **s > '9')
		return false;
	errno = 0;
	*out = strtoul(*s, &end, 10);
	if (errno || *out > 65535)
		return false;
	*s = end;
	return true;
}

int nfqueue_parse_queues(const char *s, uint16_t *out, int max)
{
	int n = 0;

	if (!s || !*s)
		return -1;
	for (;;) {
		unsigned long a, b;
		if (!parse_num(&s, &a))
			return -1;
		b = a;
		if (*s == '-') {
			s++;
			if (!parse_num(&s, &b) || b < a)
				return -1;
		}
		for (unsigned long v = a; v <= b; v++) {
			if (n == max)
				return -1;
			out[n++] = (uint16_t)v;
		}
		if (*s == '\0')
			break;
		if (*s++ != ',')
			return -1;
	}
	qsort(out, (size_t)n, sizeof(*out), cmp_u16);
	int m = 0;
	for (int i = 0; i < n; i++)
		if (m == 0 || out[m - 1] != out[i])
			out[m++] = out[i];
	return m;
}
