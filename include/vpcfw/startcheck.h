/* What the daemon checks before it starts, in one place: `vpcfwd
 * --check-config` runs the same function, so that a configuration it passes
 * does not then fail at the daemon's start (issue: "Queues": "0-65535"
 * passed the check and stopped the daemon). */
#ifndef VPCFW_STARTCHECK_H
#define VPCFW_STARTCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcfw/daemon.h"
#include "vpcfw/diag.h"
#include "vpcfw/policy.h"

#define START_MAX_QUEUES 64

/* Checks the start of a daemon with these options and this policy: the
 * queues (-q or Vpcfw.Queues), the control sockets' paths, the
 * InterfaceBindings against this host's devices, the directories of every
 * output file, and -u USER.  Messages go to d (errors, and warnings that
 * d->strict turns into refusals).  The queues to serve, sorted, are written
 * to queues (START_MAX_QUEUES entries); returns how many, or -1 if the
 * start would be refused (diag_failed). */
int start_check(const struct daemon_options *opt, const struct policy *pol, uint16_t *queues,
		struct diag *d);

/* Whether the kernel's net.netfilter.nf_conntrack_tcp_be_liberal (its
 * value into value) is on here while c's TcpBeLiberal is off: the kernel
 * would pass an offloaded flow's out-of-window segments that vpcfwd
 * refuses (issue #16).  Written Offload: a warning; the default: off. */
bool start_check_be_liberal_conflict(const struct m_vpcfw *c, char *value, size_t size);

/* Where the checks read the kernel's settings (net/netfilter/...): /proc/sys
 * unless a test says otherwise (NULL: /proc/sys again). */
void start_check_set_sysctl_dir(const char *dir);

#endif
