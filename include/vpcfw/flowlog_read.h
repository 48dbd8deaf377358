/* Reading AWS VPC flow-log records back (issue #15): plain or gzip files,
 * the S3 key layout (directories walked), CloudWatch JSON lines, the
 * default format and custom formats by their header line.  Streams with a
 * fixed buffer per reader and allocates nothing per record. */
#ifndef VPCFW_FLOWLOG_READ_H
#define VPCFW_FLOWLOG_READ_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vpcfw/addr.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/lane.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

/* One record; strings point into the reader's line buffer (valid until
 * the next record).  Absent fields ("-" or not in the format) are NULL /
 * -1 / unset in `present`. */
struct flr_record {
	uint64_t present;               /* 1 << enum fl_field of each logged field */
	const char *interface_id;
	struct ip_addr srcaddr, dstaddr, pkt_srcaddr, pkt_dstaddr;
	int family;
	int proto;                      /* -1: absent */
	int sport, dport;               /* -1: absent */
	uint64_t packets, bytes, start, end;
	int action;                     /* 1 ACCEPT, 0 REJECT, -1 absent */
	enum fl_status status;
	int tcp_flags;                  /* -1: absent */
	int direction;                  /* 1 egress, 0 ingress, -1 absent */
	int traffic_path;               /* 0: absent */
};

/* Parses one record line (no newline) in format f.  The line is modified
 * (fields NUL-terminated).  False with a message in err on a malformed
 * line; header lines are not records (see flr_parse_header). */
bool flr_parse_line(const struct fl_format *f, char *line, size_t len, struct flr_record *r,
		    char *err, size_t errlen);

/* A header line ("version account-id ..."): true when the first token is a
 * field name.  Then the format is set from it; unknown names are kept as
 * columns to skip and reported in err (the header still applies). */
bool flr_parse_header(const char *line, size_t len, struct fl_format *f, char *err,
		      size_t errlen);

/* The message of a CloudWatch Logs JSON line ({"timestamp": .., "message":
 * "..."}) into out (NUL-terminated); false if there is none. */
bool flr_cloudwatch_message(const char *line, size_t len, char *out, size_t outlen,
			    size_t *outlen_used);

/* The record's flow as its first packet: addresses (pkt-* when logged),
 * protocol and ports, a SYN unless tcp-flags say the flow was established.
 * False when the record cannot make a packet (no addresses). */
bool flr_to_packet(const struct flr_record *r, struct packet *p);

/* Decides the record's flow as its first packet (flr_to_packet into *p)
 * through the lane (lane_decide), on its connection tracking: a record
 * whose reverse flow an earlier record admitted is that flow's reply
 * (stateful security groups), as AWS decides it.  *clock: the latest start
 * time seen (ns), kept by the caller.  The verdict is the lane's, valid
 * until its next decision; a record without addresses is malformed. */
const struct verdict *flr_decide(struct lane *l, const struct policy *pol,
				 const struct flr_record *r, uint64_t *clock, struct packet *p);

/* Where a record came from. */
struct flr_pos {
	const char *file;
	uint64_t line;
	uint64_t index;                 /* records seen so far, this one included */
};

struct flr_stats {
	uint64_t files, lines, records;
	uint64_t nodata, skipdata, headers;
	uint64_t malformed;             /* lines reported and skipped */
	uint64_t file_errors;           /* unreadable, truncated or corrupt files */
};

/* Calls fn for every OK record of every file under paths (directories are
 * walked in name order; *.gz and plain files alike).  Problems go to err as
 * "FILE:LINE: why" and are counted; reading continues.  fn returns non-zero
 * to stop.  Returns true when nothing was malformed or unreadable. */
typedef int (*flr_record_fn)(const struct flr_record *r, const struct flr_pos *pos, void *arg);
bool flr_read_paths(const char *const *paths, int n, FILE *err, flr_record_fn fn, void *arg,
		    struct flr_stats *st);

/* The same with threads, and ahead (NULL: none), called in fn's thread with
 * the record FLR_AHEAD records before fn is (within a chunk), as a hint:
 * prefetching what deciding it will touch.  Threads: 1 reads and calls fn in the calling thread; 2
 * decompresses and parses in a second thread, a few chunks of records ahead
 * (bounded memory), while fn is called in the calling thread, with the same
 * calls, counts and messages in the same order; 0: flr_threads_default(). */
typedef void (*flr_ahead_fn)(const struct flr_record *r, void *arg);
bool flr_read_paths_threads(const char *const *paths, int n, int threads, FILE *err,
			    flr_record_fn fn, flr_ahead_fn ahead, void *arg, struct flr_stats *st);

enum { FLR_AHEAD = 8 };

/* Records announced ahead (flr_ahead_fn) made into their packets and
 * located under a policy when announced, their flow-table buckets loaded
 * then and their first entries FLR_AHEAD / 2 records later, so deciding
 * them finds memory loaded.  One per lane and policy, zeroed to start. */
enum { FLR_AHEAD_SLOTS = 16 };
struct flr_ahead_slot {
	const struct flr_record *r;     /* NULL: free */
	uintptr_t item;
	bool parsed;
	struct packet p;
	struct pipeline_located loc;
};
struct flr_lookahead {
	struct flr_ahead_slot slot[FLR_AHEAD_SLOTS];
};
void flr_lookahead_note(struct flr_lookahead *la, struct lane *l, const struct policy *pol,
			const struct flr_record *r);
/* flr_decide for r, from what flr_lookahead_note worked out when it was
 * noted, or without it (into *own) when it was not; *p: the packet. */
const struct verdict *flr_lookahead_decide(struct flr_lookahead *la, struct lane *l,
					   const struct policy *pol, const struct flr_record *r,
					   uint64_t *clock, const struct packet **p, struct packet *own);

/* 2 on a machine with more than one CPU online, else 1. */
int flr_threads_default(void);

/* vpcfwd --replay-flow-logs */
struct flr_replay_options {
	const char *const *paths;
	int n_paths;
	const char *verdicts_path;      /* NULL: none; "-": stdout */
	FILE *summary;                  /* counts and the fidelity table (stderr) */
	int threads;                    /* flr_read_paths_threads; 0: the default */
};

/* 0: every record read and decided; 1: malformed input or unreadable files
 * (reported) or an output error. */
int flr_replay_run(const struct policy *pol, const struct flr_replay_options *opt);

#endif
