/* Offline evaluation of a pcap/pcapng file through the same pipeline, with
 * each packet's timestamp as the clock (SPEC; issue "replay"). */
#ifndef VPCFW_REPLAY_H
#define VPCFW_REPLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vpcfw/packet.h"

#include "vpcfw/policy.h"

struct replay_options {
	const char *pcap_path;
	const char *verdicts_path;      /* NULL: none; "-": stdout */
	FILE *summary;                  /* counts by verdict and reason (stderr) */
	const char *flow_log_dir;       /* --flow-log-dir, NULL: Vpcfw.FlowLogDirectory */
};

/* Returns 0 on success; on an unreadable file prints why to stderr and
 * returns 1. */
int replay_run(const struct policy *pol, const struct replay_options *opt);

/* Calls fn for every IP packet of a pcap/pcapng file, in order, with its
 * time (ns, never running backwards) and length on the wire; packets that
 * are not IP or do not parse are skipped and counted in *skipped.  fn
 * returns non-zero to stop.  False with a message in err when the file
 * cannot be read (a truncated file: the packets before the damage were
 * given). */
typedef int (*replay_packet_fn)(const struct packet *p, uint64_t now_ns, uint64_t wirelen,
				void *arg);
bool replay_foreach(const char *path, replay_packet_fn fn, void *arg, uint64_t *skipped,
		    char *err, size_t errlen);

/* Whether the file starts as a pcap or pcapng file does. */
bool replay_is_capture(const char *path);

#endif
