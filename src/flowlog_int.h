/* Shared between flowlog.c (configuration, per-worker aggregation) and
 * flowlog_writer.c (closed windows -> files).  Nothing else includes it. */
#ifndef VPCFW_FLOWLOG_INT_H
#define VPCFW_FLOWLOG_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <zlib.h>

#include "vpcfw/counter.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/logfile.h"

#define FL_MAX_LOGS 64          /* flow logs written; more are warned about */
#define FL_CLASSES 2            /* the two aggregation intervals: 60 s, 600 s */
#define FL_LOST_SLOTS 32        /* interfaces a table can say it lost records of */
#define FL_RULE_LEN 96
#define NS_PER_SEC UINT64_C(1000000000)
#define FL_NODATA_MAX_WINDOWS 1440 /* NODATA written for one gap, per interface */

enum fl_dest { FL_DEST_S3, FL_DEST_CWL, FL_DEST_NONE };

/* One flow logs' aggregation entry: a 5-tuple, per interface, direction and
 * action, in one capture window.  Holds no pointer into a policy.  What a
 * packet of a known flow touches fits the first cache line. */
struct fl_entry {
	struct ip_addr src, dst;        /* the packet's */
	uint64_t packets, bytes;
	uint32_t ct_id;                 /* interned interface id; 0: free slot */
	uint32_t last_s;                /* Unix seconds */
	uint16_t sport, dport;
	uint8_t proto;
	uint8_t bits;                   /* FLE_* */
	uint8_t tcp_flags;
	uint8_t family;
	/* second line: written when the entry is made, read by the writer */
	uint64_t logs;                  /* bit per flow log that records it */
	uint32_t first_s;
	uint8_t stage, reason;
	bool decision;                  /* goes to the decision log */
	bool same_vpc;                  /* egress to the interface's own VPC */
} __attribute__((aligned(64)));

enum { FLE_EGRESS = 1, FLE_ACCEPT = 2 };

struct fl_table {
	struct fl_entry *slots;
	uint32_t mask;                  /* capacity - 1 */
	uint32_t n, max;                /* used; refuse beyond max (load 3/4) */
	uint32_t *used;                 /* indexes of the used slots */
	char (*rules)[FL_RULE_LEN];     /* by slot: the refusing rule (decision log only) */
	uint64_t start, end;            /* seconds: the window(s) it covers */
	struct {
		uint32_t ct_id;
		uint32_t n;
	} lost[FL_LOST_SLOTS];
	uint32_t n_lost;
	uint64_t lost_other;            /* lost with no slot left to say where */
	uint64_t lost_total;
};

/* A worker's aggregation for one interval class: the open table, and the
 * other one, handed to the writer when a window closes.  The writer gives
 * it back by clearing `handed`: until then the worker keeps aggregating into
 * the open table (its window grows) and never waits. */
struct fl_wclass {
	struct fl_table tab[2];
	int cur;
	uint64_t win_end;               /* 0: not started */
	_Atomic(struct fl_table *) handed;
	_Atomic uint64_t closed_upto;   /* every window before it is handed */
	_Atomic uint64_t first_start;   /* of its first window; 0: not started */
	bool saved;                     /* stopping: its open window is in the state file */
};

struct flowlog_worker {
	struct flowlog *fl;
	struct fl_wclass cls[FL_CLASSES];
};

/* What the writer knows of an interface (by ct_id), from the latest policy. */
struct fl_meta {
	char *iface_id, *vpc_id, *subnet_id, *instance_id, *account_id, *region, *az_id;
	struct ip_addr primary;
	uint8_t family;
	bool present;
};

struct fl_log {
	char *id;
	char *resource_id;              /* NULL: every interface */
	bool log_accept, log_reject;
	int cls;
	enum fl_dest dest;
	struct fl_format fmt;
	char *account, *region;         /* of the S3 path */
	struct fl_s3_layout lay;        /* folder, Hive, per hour */
	int group;                      /* cloud-watch-logs: index in flowlog.groups */
	/* writer state */
	uint8_t *covered;               /* by ct_id */
	uint64_t *win_seen;             /* by ct_id: windows with a record, bit k =
					   done_upto + k intervals (for NODATA) */
	uint64_t *seen_last;            /* by ct_id: the last record's end */
	gzFile gz;
	int part_dir;                   /* the open file's directory */
	char part_name[300], *final_dir;
	uint64_t file_period, file_bytes;
};

/* A CloudWatch log group: one stream (file) per interface, shared by every
 * flow log delivering to the group, so lines never interleave. */
struct fl_group {
	char *name;
	struct logfile **streams;       /* by ct_id */
};

struct flowlog {
	char *dir;
	bool threaded;
	int n_workers;
	uint32_t rotate_seconds;
	uint64_t rotate_bytes;
	uint32_t table_size;

	struct fl_log *logs;
	int n_logs;
	bool cls_used[FL_CLASSES];
	int decision_cls;
	struct logfile *decisions;
	char *decisions_path;
	int dirfd;                      /* the flow-log directory, opened once; -1: none */
	struct fl_group *groups;
	int n_groups;
	atomic_bool reopen;             /* flowlog_reopen asked; the writer does it */
	struct fl_table **taken;        /* the writer's, by worker */

	struct flowlog_worker *workers;

	/* writer side: under mu */
	pthread_mutex_t mu;
	struct fl_meta *meta;           /* by ct_id */
	uint32_t meta_cap;
	uint64_t done_upto[FL_CLASSES];
	uint64_t now;                   /* the writer's clock, seconds */
	/* written by the writer (the caller of flowlog_finish once it has
	 * stopped), read by flowlog_get_stats from any thread */
	struct {
		counter_t records_written, records_lost, files_written, skipdata_records,
			nodata_records, decisions_written, write_errors;
		counter_t tables_taken; /* closed windows' tables written */
	} stats;

	pthread_t thread;
	bool thread_started;
	bool finished;                  /* flowlog_finish done */
	atomic_bool stop;
};

extern const uint32_t fl_class_interval[FL_CLASSES];

/* flowlog_writer.c */
void fl_writer_collect(struct flowlog *fl, uint64_t now);
void fl_writer_close_all(struct flowlog *fl);
void *fl_writer_main(void *arg);
void fl_table_clear(struct fl_table *t);

#endif
