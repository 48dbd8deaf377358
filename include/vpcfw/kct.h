/* Kernel conntrack operations over ctnetlink (libnetfilter_conntrack on a
 * libmnl socket): what the offload needs of the kernel's flow table.
 *
 * The offload (Vpcfw.Offload, issue #16) marks a decided, established
 * flow's kernel conntrack entry (its verdict sets the bit in the packet's
 * mark, nfqueue_set_mark, and a kernel rule copies it into the entry),
 * and a kernel rule ahead of the NFQUEUE rule accepts the flow's further
 * packets.  Taking the flows back (a reload, audit or shadow mode, a stop)
 * clears that bit on every kernel entry that has it: kct_clear_mark.
 *
 * Control path only (the main or control thread): these calls block on the
 * kernel and may take a while with many entries; never on the packet path.
 * Each call opens and closes its own sockets, so any thread may call them.
 * They need CAP_NET_ADMIN in the network namespace (the daemon keeps it). */
#ifndef VPCFW_KCT_H
#define VPCFW_KCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kct_clear_result {
	uint64_t cleared;       /* entries whose bit was cleared */
	uint64_t vanished;      /* entries gone before their update (ENOENT) */
	uint64_t errors;        /* updates the kernel refused otherwise */
	uint64_t remaining;     /* entries still marked after the last pass */
	unsigned passes;
};

/* Opens a ctnetlink socket and asks for nothing: true if the kernel's
 * conntrack netlink interface answers (it loads nf_conntrack_netlink, which
 * a verdict's mark needs too).  False with a message in err. */
bool kct_probe(char *err, size_t errlen);

/* Clears the bits `mask` on every kernel conntrack entry (every family)
 * that has all of them: a dump filtered by the kernel on (mark & mask) ==
 * mask, and for each entry an update with CTA_MARK 0 / CTA_MARK_MASK mask
 * (other bits kept).  Repeats, up to 3 passes, while entries remain marked.
 * 0 when none remains; -1 on failure (err says why; r counts what was
 * done). */
int kct_clear_mark(uint32_t mask, struct kct_clear_result *r, char *err, size_t errlen);

/* Counts the kernel entries with every bit of mask set; -1 on failure. */
long long kct_count_marked(uint32_t mask, char *err, size_t errlen);

#endif
