/* VPC Flow Logs in AWS's own record format (SPEC §7).
 *
 * Workers aggregate into their own tables (flowlog_observe: no allocation,
 * no lock, no system call); a writer thread drains closed capture windows
 * through a bounded ring per worker and writes the files.  A full ring loses
 * records into SKIPDATA and counts them; it never stalls a packet. */
#ifndef VPCFW_FLOWLOG_H
#define VPCFW_FLOWLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcfw/diag.h"
#include "vpcfw/model.h"
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

struct flowlog;
struct flowlog_worker;

/* Validates the model's FlowLogs (LogFormat fields, ...) and reports errors
 * with file and JSON path.  Called while the configuration loads. */
void flowlog_check_config(const struct model *m, struct diag *d);

struct flowlog_options {
	const char *dir;                /* --flow-log-dir / Vpcfw.FlowLogDirectory */
	int n_workers;
	bool threaded;                  /* live: a writer thread; replay: synchronous */
	/* 0: the defaults (AWS's 5 minutes / 75 MB; 16384 flows per worker
	 * and window).  Tests make them small. */
	uint32_t rotate_seconds;
	uint64_t rotate_bytes;
	uint32_t table_size;
};

/* True when flowlog_create would log anything (a flow-log directory or a
 * decision log is configured): tells "off" from "failed" when it returns
 * NULL. */
bool flowlog_enabled(const struct policy *pol, const struct flowlog_options *opt);

/* NULL if flow logging is off (no directory, no decision log) or cannot
 * start (the reason is printed to stderr; flowlog_enabled() tells which).
 * Every function below takes a NULL flowlog / worker as "off". */
struct flowlog *flowlog_create(const struct policy *pol, const struct flowlog_options *opt);
/* Called after a reload: which interfaces are logged, formats, ... */
void flowlog_set_policy(struct flowlog *fl, const struct policy *pol);
struct flowlog_worker *flowlog_worker(struct flowlog *fl, int index);

/* The packet path: one call per decided packet.  wall_ns is the wall-clock
 * time (the packet's timestamp in replay). */
void flowlog_observe(struct flowlog_worker *w, const struct packet *p, const struct verdict *v,
		     uint64_t wall_ns);
/* The same for `packets` packets of `bytes` bytes in all, alike in what the
 * records key on (addresses, ports, protocol, flags, verdict): the packets
 * of an offloaded flow, counted by the kernel (offacct.h). */
void flowlog_observe_n(struct flowlog_worker *w, const struct packet *p, const struct verdict *v,
		       uint64_t packets, uint64_t bytes, uint64_t wall_ns);
/* Closes windows whose time has come (call between batches). */
void flowlog_tick(struct flowlog_worker *w, uint64_t wall_ns);

/* A snapshot: the counters behind it are counter_t (counter.h) written by
 * the writer thread alone, so any thread may read them while it runs.
 * Cumulative for the flow log's life (the daemon's). */
struct flowlog_stats {
	uint64_t records_written;
	uint64_t records_lost;          /* packets that found no room in an
					   aggregation table: reported as SKIPDATA */
	uint64_t files_written;
	uint64_t skipdata_records;      /* SKIPDATA lines written */
	uint64_t nodata_records;        /* NODATA lines written */
	uint64_t decisions_written;     /* decision-log lines */
	uint64_t write_errors;          /* files that could not be opened or written */
};
void flowlog_get_stats(const struct flowlog *fl, struct flowlog_stats *out);

/* Emits every open window, stops the writer and closes the files: nothing
 * buffered is lost, and flowlog_get_stats counts everything written (the
 * daemon's counters at exit).  The workers must have stopped. */
void flowlog_finish(struct flowlog *fl);
/* Reopens the decision log and the CloudWatch-style streams by name (for
 * logrotate: SIGHUP); done by the writer, soon after. */
void flowlog_reopen(struct flowlog *fl);

/* flowlog_finish if not done, then frees. */
void flowlog_destroy(struct flowlog *fl);

/* ---- open capture windows across a restart (the state file, state.h)
 *
 * A worker's open window of each aggregation interval, and its entries, as
 * plain values: what the state file keeps of flow logs "in flight", so that
 * the record of a window covers the packets before and after a restart. */
#define FLOWLOG_RULE_LEN 96     /* a refusing rule's text, NUL included */
#define FLOWLOG_LOST_SLOTS 32   /* interfaces a window can say it lost packets of */
enum {
	FLS_EGRESS = 1,         /* flow-direction egress (else ingress) */
	FLS_ACCEPT = 2,         /* action ACCEPT (else REJECT) */
	FLS_DECISION = 4,       /* goes to the decision log */
	FLS_SAME_VPC = 8,       /* egress to the interface's own VPC (traffic-path 1) */
	FLS_BITS = 15,
};

struct flowlog_saved_entry {
	struct ip_addr src, dst;        /* the packet's */
	uint64_t packets, bytes;
	uint32_t iface;                 /* the interface's conntrack id (state file:
					   an index in its interface table) */
	uint32_t first_s, last_s;       /* Unix seconds */
	uint16_t sport, dport;          /* TCP and UDP only, else 0 */
	uint8_t proto, family;          /* family: FAMILY_V4 or FAMILY_V6 */
	uint8_t tcp_flags;              /* OR of fl_tcp_flags(); TCP only */
	uint8_t bits;                   /* FLS_* */
	uint8_t stage, reason;          /* the decision's (enum stage, enum reason) */
	char rule[FLOWLOG_RULE_LEN];    /* decision log: the refusing rule; "" */
};

struct flowlog_saved_window {
	uint8_t cls;                    /* 0: the 60 s interval, 1: the 600 s one */
	uint64_t start;                 /* Unix seconds, a multiple of the interval */
	/* packets that found no room (SKIPDATA): by interface, and the rest */
	uint32_t n_lost;
	struct {
		uint32_t iface, n;
	} lost[FLOWLOG_LOST_SLOTS];
	uint64_t lost_other;
};

/* The length of a capture window of class cls (60 or 600 s; 0 for no class). */
uint32_t flowlog_interval(unsigned cls);

/* Calls fn(arg, win, NULL) for each open capture window of worker w that
 * has started, then fn(arg, win, e) for each of its entries.  Windows
 * already handed to the writer are not listed: their records are being
 * written.  Between batches on the worker's own thread, or once the workers
 * have stopped (the writer may run).  Returns fn's first nonzero value. */
int flowlog_foreach_saved(struct flowlog_worker *w,
			  int (*fn)(void *arg, const struct flowlog_saved_window *win,
				    const struct flowlog_saved_entry *e),
			  void *arg);

/* What flowlog_restore did. */
struct flowlog_restore_stats {
	uint64_t windows_open;          /* put back as the worker's open window */
	uint64_t windows_ended;         /* ended meanwhile: handed to the writer */
	uint64_t entries;               /* entries put back (either way) */
	uint64_t not_logged;            /* entries no flow log records now */
	uint64_t duplicate;             /* a window or entry already there */
	uint64_t table_full;            /* no room: counted as lost (SKIPDATA) */
};

/* At the start, before worker w takes a packet (the writer may run): puts a
 * saved window back, entries with conntrack ids of the configuration in
 * force.  A window still open at now_s (Unix seconds) becomes the worker's
 * open window, and the packets that follow add to its entries; one that
 * ended meanwhile is handed to the writer, and written as records with
 * its own start and end.  Which flow logs record an entry follows the
 * configuration in force. */
void flowlog_restore(struct flowlog_worker *w, const struct flowlog_saved_window *win,
		     const struct flowlog_saved_entry *e, size_t n, uint64_t now_s,
		     struct flowlog_restore_stats *st);

/* At a clean stop, the workers stopped, once a state file holding their
 * open windows is written: removes from those windows the entries (and lost
 * counts) of interfaces saved(arg, conntrack id) says were saved, and
 * flowlog_finish then neither writes them nor NODATA for those windows: the
 * next start writes them, once. */
void flowlog_forget_saved(struct flowlog *fl, bool (*saved)(void *arg, uint32_t iface), void *arg);

/* Closed windows written so far (any thread): the state file is written
 * again soon after it moves, so that a crash does not find in it a window
 * whose records are already out. */
uint64_t flowlog_windows_written(const struct flowlog *fl);

/* ---- the record format (flowlog_format.c); exposed for the unit tests */

/* Every field of flow-log-records, in the documentation's table order. */
enum fl_field {
	FLF_VERSION, FLF_ACCOUNT_ID, FLF_INTERFACE_ID, FLF_SRCADDR, FLF_DSTADDR,
	FLF_SRCPORT, FLF_DSTPORT, FLF_PROTOCOL, FLF_PACKETS, FLF_BYTES, FLF_START,
	FLF_END, FLF_ACTION, FLF_LOG_STATUS,                              /* v2 */
	FLF_VPC_ID, FLF_SUBNET_ID, FLF_INSTANCE_ID, FLF_TCP_FLAGS, FLF_TYPE,
	FLF_PKT_SRCADDR, FLF_PKT_DSTADDR,                                 /* v3 */
	FLF_REGION, FLF_AZ_ID, FLF_SUBLOCATION_TYPE, FLF_SUBLOCATION_ID,  /* v4 */
	FLF_PKT_SRC_AWS_SERVICE, FLF_PKT_DST_AWS_SERVICE, FLF_FLOW_DIRECTION,
	FLF_TRAFFIC_PATH,                                                 /* v5 */
	FLF_ECS_CLUSTER_ARN, FLF_ECS_CLUSTER_NAME, FLF_ECS_CONTAINER_INSTANCE_ARN,
	FLF_ECS_CONTAINER_INSTANCE_ID, FLF_ECS_CONTAINER_ID, FLF_ECS_SECOND_CONTAINER_ID,
	FLF_ECS_SERVICE_NAME, FLF_ECS_TASK_DEFINITION_ARN, FLF_ECS_TASK_ARN,
	FLF_ECS_TASK_ID,                                                  /* v7 */
	FLF_REJECT_REASON,                                                /* v8 */
	FLF_COUNT
};

#define FL_MAX_FIELDS 64

struct fl_format {
	uint8_t fields[FL_MAX_FIELDS];
	int n;
	int version;                    /* the highest version among the fields */
};

const char *fl_field_name(enum fl_field f);
int fl_field_version(enum fl_field f);

/* NULL or "": the default (the 14 version-2 fields).  Otherwise ${field}
 * tokens separated by spaces.  On error returns false with a message in err
 * naming the offending token. */
bool fl_format_parse(const char *text, struct fl_format *out, char *err, size_t errlen);

/* The S3 header line: the field names, space-separated (no newline). */
size_t fl_format_header(const struct fl_format *f, char *buf, size_t len);

/* One packet's TCP flags as flow logs OR them. */
uint8_t fl_tcp_flags(uint8_t wire);

enum fl_status { FL_OK, FL_NODATA, FL_SKIPDATA };

/* Everything one record needs; NULL strings print "-". */
struct fl_record {
	const char *account_id, *interface_id, *vpc_id, *subnet_id, *instance_id;
	const char *region, *az_id;
	struct ip_addr srcaddr, dstaddr;        /* interface side (SPEC §7) */
	struct ip_addr pkt_srcaddr, pkt_dstaddr;
	uint8_t family;
	uint8_t proto;
	uint16_t sport, dport;
	uint8_t tcp_flags;                      /* OR of fl_tcp_flags() */
	bool accept;
	bool egress;
	int traffic_path;                       /* 0: "-" */
	uint64_t packets, bytes;
	uint64_t start, end;                    /* Unix seconds */
	enum fl_status status;
};

/* One line without the newline; returns its length (truncated at len). */
size_t fl_format_record(const struct fl_format *f, const struct fl_record *r, char *buf,
			size_t len);

/* "us-east-1" from "us-east-1a", "us-west-2" from "us-west-2-lax-1a";
 * false if az does not look like an availability zone. */
bool fl_region_of_az(const char *az, char *out, size_t len);

/* Where an S3 flow log's objects go (flow-logs-s3-path): the folder of
 * LogDestination arn:aws:s3:::BUCKET/FOLDER/ and DestinationOptions. */
struct fl_s3_layout {
	char folder[256];               /* "" or "a/b" (no slash at either end) */
	bool hive;                      /* HiveCompatiblePartitions */
	bool per_hour;                  /* PerHourPartition */
};

/* The folder of an S3 LogDestination ARN into lay->folder; false (with a
 * message in err) for a folder that cannot be a directory path here ("..",
 * ".", empty components) or that AWS refuses (AWSLogs). */
bool fl_s3_folder(const char *arn, struct fl_s3_layout *lay, char *err, size_t errlen);

/* AWS's S3 object key below DIR (flow-logs-s3-path) of a file whose records
 * end in the 5 minutes from `t` (Unix seconds, the name's time):
 *   [FOLDER/]AWSLogs/<account>/vpcflowlogs/<region>/<yyyy>/<mm>/<dd>[/<hh>]/
 *   [FOLDER/]AWSLogs/aws-account-id=<account>/aws-service=vpcflowlogs/
 *     aws-region=<region>/year=<yyyy>/month=<mm>/day=<dd>[/hour=<hh>]/ (Hive)
 * then <account>_vpcflowlogs_<region>_<id>_<yyyymmddThhmmZ>_<hash>.log.gz,
 * `hash` printed as 8 hex digits (random: names never repeat across runs
 * or hosts). */
size_t fl_s3_key(const struct fl_s3_layout *lay, const char *account, const char *region,
		 const char *flow_log_id, uint64_t t, uint32_t hash, char *buf, size_t len);

#endif
