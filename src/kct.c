/* Kernel conntrack operations over ctnetlink (kct.h). */
#include "vpcfw/kct.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#define RECV_SIZE (64u << 10)
#define SEND_SIZE (32u << 10)
#define UPDATE_MAX 256u         /* bytes one update message takes at most */
#define PASSES 3

static void set_err(char *err, size_t len, const char *what, int e)
{
	if (err && len)
		snprintf(err, len, "%s: %s", what, strerror(e));
}

static struct mnl_socket *open_socket(char *err, size_t errlen)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);

	if (!nl) {
		set_err(err, errlen, "ctnetlink socket", errno);
		return NULL;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		set_err(err, errlen, "ctnetlink bind", errno);
		mnl_socket_close(nl);
		return NULL;
	}
	return nl;
}

/* A request for the entries with (mark & mask) == mask, in every family
 * (the kernel filters the dump). */
static struct nlmsghdr *dump_request(void *buf, uint32_t mask, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = AF_UNSPEC;
	g->version = NFNETLINK_V0;
	g->res_id = 0;
	mnl_attr_put_u32(nlh, CTA_MARK, htonl(mask));
	mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(mask));
	return nlh;
}

bool kct_probe(char *err, size_t errlen)
{
	uint8_t buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_socket *nl = open_socket(err, errlen);
	uint32_t seq = (uint32_t)time(NULL);

	if (!nl)
		return false;
	/* a dump of the entries with every mark bit set: in practice none,
	 * and the answer proves the interface is there */
	struct nlmsghdr *nlh = dump_request(buf, 0xffffffffu, seq);
	bool ok = mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) >= 0;
	if (!ok)
		set_err(err, errlen, "ctnetlink request", errno);
	while (ok) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0) {
			set_err(err, errlen, "ctnetlink answer", errno);
			ok = false;
			break;
		}
		int r = mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), NULL, NULL);
		if (r < 0) {
			set_err(err, errlen, "ctnetlink answer", errno);
			ok = false;
		}
		if (r <= MNL_CB_STOP)
			break;
	}
	mnl_socket_close(nl);
	return ok;
}

/* One pass: dump the marked entries, and update each (in batches on a
 * second socket, each update acknowledged). */
struct pass {
	struct mnl_socket *dump, *upd;
	uint32_t mask;
	uint32_t dump_seq, upd_seq;
	struct nf_conntrack *got, *put;
	uint8_t *sbuf;
	size_t slen;
	unsigned pending;               /* updates in sbuf */
	uint64_t seen;                  /* entries the dump listed */
	bool count_only;
	struct kct_clear_result *r;
	int error;                      /* errno of a socket failure */
};

/* Sends the batched updates and reads their acknowledgements. */
static int flush(struct pass *ps)
{
	uint8_t buf[MNL_SOCKET_BUFFER_SIZE];
	unsigned want = ps->pending;

	if (!want)
		return 0;
	ps->pending = 0;
	if (mnl_socket_sendto(ps->upd, ps->sbuf, ps->slen) < 0) {
		ps->error = errno;
		ps->slen = 0;
		return -1;
	}
	ps->slen = 0;
	while (want) {
		ssize_t n = mnl_socket_recvfrom(ps->upd, buf, sizeof(buf));
		if (n < 0) {
			ps->error = errno;
			return -1;
		}
		int rest = (int)n;
		for (const struct nlmsghdr *nlh = (const void *)buf; mnl_nlmsg_ok(nlh, rest);
		     nlh = mnl_nlmsg_next(nlh, &rest)) {
			if (nlh->nlmsg_type != NLMSG_ERROR || !want)
				continue;
			want--;
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
			if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*e))
				ps->r->errors++;
			else if (e->error == 0)
				ps->r->cleared++;
			else if (e->error == -ENOENT)
				ps->r->vanished++;
			else
				ps->r->errors++;
		}
	}
	return 0;
}

/* One dumped entry: an update that clears the bits, keyed by its original
 * tuple (and zone), nothing else of it changed. */
static int dumped(const struct nlmsghdr *nlh, void *data)
{
	struct pass *ps = data;
	const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);

	ps->seen++;
	if (ps->count_only)
		return MNL_CB_OK;
	/* fresh objects for each entry: nothing of the previous one stays set */
	nfct_destroy(ps->got);
	nfct_destroy(ps->put);
	ps->got = nfct_new();
	ps->put = nfct_new();
	if (!ps->got || !ps->put) {
		ps->error = ENOMEM;
		return MNL_CB_ERROR;
	}
	if (nfct_nlmsg_parse(nlh, ps->got) < 0) {
		ps->r->errors++;
		return MNL_CB_OK;
	}
	if (!nfct_attr_is_set(ps->got, ATTR_MARK) ||
	    (nfct_get_attr_u32(ps->got, ATTR_MARK) & ps->mask) != ps->mask)
		return MNL_CB_OK; /* an older kernel that does not filter dumps */
	if (ps->slen + UPDATE_MAX > SEND_SIZE && flush(ps) < 0)
		return MNL_CB_ERROR;

	struct nlmsghdr *u = mnl_nlmsg_put_header(ps->sbuf + ps->slen);
	u->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	u->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK; /* no CREATE: update only */
	u->nlmsg_seq = ++ps->upd_seq;
	struct nfgenmsg *ug = mnl_nlmsg_put_extra_header(u, sizeof(*ug));
	ug->nfgen_family = g->nfgen_family;
	ug->version = NFNETLINK_V0;
	ug->res_id = 0;
	nfct_copy(ps->put, ps->got, NFCT_CP_ORIG);
	if (nfct_attr_is_set(ps->got, ATTR_ZONE))
		nfct_set_attr_u16(ps->put, ATTR_ZONE, nfct_get_attr_u16(ps->got, ATTR_ZONE));
	nfct_set_attr_u32(ps->put, ATTR_MARK, 0);
	if (nfct_nlmsg_build(u, ps->put) < 0) {
		ps->r->errors++;
		return MNL_CB_OK;
	}
	/* CTA_MARK 0 under CTA_MARK_MASK: only the offload's bits change */
	mnl_attr_put_u32(u, CTA_MARK_MASK, htonl(ps->mask));
	ps->slen += MNL_ALIGN(u->nlmsg_len);
	ps->pending++;
	return MNL_CB_OK;
}

static int run_pass(struct pass *ps)
{
	uint8_t *buf = malloc(RECV_SIZE);
	int rc = 0;

	if (!buf) {
		ps->error = ENOMEM;
		return -1;
	}
	ps->seen = 0;
	ps->dump_seq++;
	struct nlmsghdr *nlh = dump_request(buf, ps->mask, ps->dump_seq);
	if (mnl_socket_sendto(ps->dump, nlh, nlh->nlmsg_len) < 0) {
		ps->error = errno;
		free(buf);
		return -1;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(ps->dump, buf, RECV_SIZE);
		if (n < 0) {
			ps->error = errno;
			rc = -1;
			break;
		}
		int r = mnl_cb_run(buf, (size_t)n, ps->dump_seq, mnl_socket_get_portid(ps->dump),
				   dumped, ps);
		if (r == MNL_CB_ERROR) {
			if (!ps->error)
				ps->error = errno ? errno : EIO;
			rc = -1;
			break;
		}
		if (flush(ps) < 0) {
			rc = -1;
			break;
		}
		if (r == MNL_CB_STOP)
			break;
	}
	free(buf);
	return rc;
}

static int with_pass(uint32_t mask, bool count_only, struct kct_clear_result *r, char *err,
		     size_t errlen)
{
	struct pass ps = { .mask = mask, .count_only = count_only, .r = r,
			   .dump_seq = (uint32_t)time(NULL) };
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (!mask) {
		set_err(err, errlen, "conntrack mark", EINVAL);
		return -1;
	}
	ps.dump = open_socket(err, errlen);
	ps.upd = ps.dump ? open_socket(err, errlen) : NULL;
	ps.got = nfct_new();
	ps.put = nfct_new();
	ps.sbuf = malloc(SEND_SIZE);
	if (!ps.dump || !ps.upd || !ps.got || !ps.put || !ps.sbuf) {
		if (ps.dump && ps.upd)
			set_err(err, errlen, "ctnetlink", ENOMEM);
		goto out;
	}
	/* what a pass updated is no longer listed by the next: a pass that
	 * found entries looks again, and the last one only counts */
	for (unsigned i = 1; i <= PASSES + 1; i++) {
		ps.count_only = count_only || i > PASSES;
		if (run_pass(&ps) < 0) {
			set_err(err, errlen, "ctnetlink dump or update", ps.error ? ps.error : EIO);
			goto out;
		}
		r->passes = i;
		r->remaining = ps.seen;
		if (ps.count_only || ps.seen == 0)
			break;
	}
	if (!count_only && r->passes <= PASSES)
		r->remaining = 0;
	rc = 0;
out:
	if (ps.dump)
		mnl_socket_close(ps.dump);
	if (ps.upd)
		mnl_socket_close(ps.upd);
	if (ps.got)
		nfct_destroy(ps.got);
	if (ps.put)
		nfct_destroy(ps.put);
	free(ps.sbuf);
	return rc;
}

int kct_clear_mark(uint32_t mask, struct kct_clear_result *r, char *err, size_t errlen)
{
	if (with_pass(mask, false, r, err, errlen) < 0)
		return -1;
	if (r->remaining) {
		if (err && errlen)
			snprintf(err, errlen, "%llu conntrack entries still marked after %u passes",
				 (unsigned long long)r->remaining, r->passes);
		return -1;
	}
	return 0;
}

long long kct_count_marked(uint32_t mask, char *err, size_t errlen)
{
	struct kct_clear_result r;

	if (with_pass(mask, true, &r, err, errlen) < 0)
		return -1;
	return (long long)r.remaining;
}
