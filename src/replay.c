/* Offline replay: each record of a pcap/pcapng file goes through the same
 * pipeline as live traffic, with its own timestamp as the clock. */
#include "vpcfw/replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpcfw/capture.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/flowlog.h" /* flow logs */
#include "vpcfw/lane.h"
#include "vpcfw/mirror.h"  /* mirroring, drop capture */
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/log.h"
#include "vpcfw/safefile.h"
#include "vpcfw/xmalloc.h"

/* ---------------------------------------------------------------- output */

static void json_str(FILE *f, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	putc('"', f);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\') {
			putc('\\', f);
			putc(*c, f);
		} else if (*c < 0x20 || *c == 0x7f) {
			fputs("\\u00", f);
			putc(hex[*c >> 4], f);
			putc(hex[*c & 15], f);
		} else {
			putc(*c, f);
		}
	}
	putc('"', f);
}

static void json_field_str(FILE *f, const char *name, const char *val)
{
	fprintf(f, ", \"%s\": ", name);
	if (val)
		json_str(f, val);
	else
		fputs("null", f);
}

static void write_verdict(FILE *f, uint64_t n, const struct packet *p, bool parsed,
			  const struct verdict *v)
{
	char rule[512], src[ADDR_STRLEN], dst[ADDR_STRLEN];

	fprintf(f, "{\"packet\": %" PRIu64 ", \"verdict\": \"%s\", \"stage\": \"%s\", "
		"\"reason\": \"%s\"", n, v->accept ? "ACCEPT" : "REJECT", stage_name(v->stage),
		reason_name(v->reason));
	verdict_rule_format(v, rule, sizeof(rule));
	json_field_str(f, "rule", rule[0] ? rule : NULL);
	if (!parsed) {
		fputs(", \"src\": null, \"dst\": null, \"proto\": null, \"sport\": null, "
		      "\"dport\": null}\n", f);
		return;
	}
	addr_format(&p->src, p->family, src);
	addr_format(&p->dst, p->family, dst);
	fprintf(f, ", \"src\": \"%s\", \"dst\": \"%s\", \"proto\": %u, \"sport\": %u, \"dport\": %u",
		src, dst, p->proto, p->sport, p->dport);
	if ((p->flags & PKT_F_L4) && (p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6))
		fprintf(f, ", \"icmp_type\": %u, \"icmp_code\": %u", p->icmp_type, p->icmp_code);
	if (p->flags & PKT_F_FRAGMENT)
		fputs(", \"fragment\": true", f);
	if (v->src_iface)
		json_field_str(f, "src_interface", v->src_iface->id);
	if (v->dst_iface)
		json_field_str(f, "dst_interface", v->dst_iface->id);
	if (v->detail)
		json_field_str(f, "detail", v->detail);
	fputs("}\n", f);
}

struct tally {
	uint64_t records;
	uint64_t by_reason[2][REASON_COUNT]; /* [accept][reason] */
};

static void write_summary(FILE *out, const char *path, const struct tally *t,
			  const struct pipeline *pl)
{
	struct ct_stats cs;

	if (!out)
		return;
	fprintf(out, "replay: %" PRIu64 " packets: %" PRIu64 " ACCEPT, %" PRIu64 " REJECT (%s)\n",
		t->records, counter_get(&pl->counters.accepted), counter_get(&pl->counters.rejected), path);
	for (int a = 1; a >= 0; a--)
		for (int r = 0; r < REASON_COUNT; r++)
			if (t->by_reason[a][r])
				fprintf(out, "  %-7s %-40s %10" PRIu64 "\n", a ? "ACCEPT" : "REJECT",
					reason_name((enum reason)r), t->by_reason[a][r]);
	ct_get_stats(pl->ct, &cs);
	fprintf(out, "  conntrack: %" PRIu64 " flows tracked, %" PRIu64 " open at the end",
		cs.inserted, cs.used);
	if (cs.allowance_exceeded)
		fprintf(out, ", allowance_exceeded %" PRIu64, cs.allowance_exceeded);
	if (cs.evicted_embryonic)
		fprintf(out, ", %" PRIu64 " embryonic evicted", cs.evicted_embryonic);
	if (cs.source_rate_exceeded)
		fprintf(out, ", source_rate_exceeded %" PRIu64, cs.source_rate_exceeded);
	if (cs.source_share_exceeded)
		fprintf(out, ", source_share_exceeded %" PRIu64, cs.source_share_exceeded);
	fputc('\n', out);
}

/* ---------------------------------------------------------------- replay */

static FILE *open_verdicts(const char *path)
{
	if (!path)
		return NULL;
	if (strcmp(path, "-") == 0)
		return stdout;
	const char *name;
	struct stat st;
	int dirfd = safe_parent_open(path, &name);
	if (dirfd < 0)
		return NULL;
	/* a device or a pipe named on the command line is written as it is;
	 * a file only when it is no link (safefile.h) */
	bool special = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		       (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode));
	int fd = special ? openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
			 : safe_open_trunc(dirfd, name, SAFE_FILE_MODE);
	int e = errno;
	close(dirfd);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f && fd >= 0)
		close(fd);
	errno = e;
	return f;
}

/* Flushes and closes the verdicts file; false (with a message) if any write
 * failed: a full disk must not pass for a complete replay. */
static bool close_verdicts(FILE *f, const char *path)
{
	bool ok;

	if (!f)
		return true;
	ok = !ferror(f);
	if (f == stdout)
		ok = fflush(f) == 0 && ok;
	else
		ok = fclose(f) == 0 && ok;
	if (!ok)
		log_warnx("%s: writing verdicts failed: %s",
			strcmp(path, "-") == 0 ? "stdout" : path, strerror(errno ? errno : EIO));
	return ok;
}

int replay_run(const struct policy *pol, const struct replay_options *opt)
{
	char errbuf[512] = "";
	struct capture *pc;
	int rc = 0;

	pc = capture_open(opt->pcap_path, errbuf, sizeof(errbuf));
	if (!pc) {
		log_warnx("%s: %s", opt->pcap_path, errbuf);
		return 1;
	}
	if (!capture_link_supported(pc)) {
		const char *name = capture_link_name(pc);
		log_warnx("%s: unsupported link type %s (%d)", opt->pcap_path,
			name ? name : "unknown", capture_link(pc));
		capture_close(pc);
		return 1;
	}

	struct conntrack *ct = ct_create(pol->conntrack_max ? pol->conntrack_max : 1);
	if (!ct) {
		log_warnx("cannot allocate the connection tracking table (%u flows)",
			pol->conntrack_max);
		capture_close(pc);
		return 1;
	}
	FILE *out = open_verdicts(opt->verdicts_path);
	if (opt->verdicts_path && !out) {
		log_warn("%s", opt->verdicts_path);
		ct_destroy(ct);
		capture_close(pc);
		return 1;
	}

	/* the daemon's lane, one record at a time (a record's bytes last until
	 * the next is read) */
	struct lane *ln = xmalloc(sizeof(*ln));
	struct tally t;
	uint64_t now = 0;
	memset(&t, 0, sizeof(t));
	lane_init(ln, ct, 0);

	/* flow logs: synchronous, on the packets' clock */
	struct flowlog_options flo = { .dir = opt->flow_log_dir, .n_workers = 1, .threaded = false };
	struct flowlog *fl = flowlog_create(pol, &flo);
	if (!fl && flowlog_enabled(pol, &flo)) {
		log_warnx("flow logs cannot start: replay refused");
		free(ln);
		close_verdicts(out, opt->verdicts_path);
		ct_destroy(ct);
		capture_close(pc);
		return 1;
	}
	ln->flw = flowlog_worker(fl, 0);

	/* mirroring and the drop capture: synchronous; VXLAN
	 * targets are sent to, as live */
	struct mirror_options mo = { .n_workers = 1, .threaded = false, .send_vxlan = true };
	struct mirror *mr = mirror_create(pol, &mo);
	if (!mr && mirror_enabled(pol)) {
		log_warnx("mirroring cannot start: replay refused");
		flowlog_destroy(fl);
		free(ln);
		close_verdicts(out, opt->verdicts_path);
		ct_destroy(ct);
		capture_close(pc);
		return 1;
	}
	ln->mw = mirror_worker(mr, 0);

	for (;;) {
		struct lane_packet in;
		int r = capture_next(pc, &in);

		if (r == 0)
			break;
		if (r < 0) {
			log_warnx("%s: record %" PRIu64 ": %s: replay incomplete",
				opt->pcap_path, t.records + 1, capture_error(pc));
			rc = 1;
			break;
		}
		t.records++;
		/* The pipeline's clock must not run backwards (conntrack
		 * deadlines): a record older than the one before keeps the
		 * latest time. */
		if (in.ts_ns > now)
			now = in.ts_ns;
		/* a couple of buckets per packet sweeps the whole table every
		 * few million packets without scattering reads on every one */
		ct_expire(ct, now, 2);
		struct lane_batch b = { .pol = pol, .now_ns = now, .wall_ns = now };
		struct lane_out o;
		lane_run(ln, &b, &in, 1, &o);
		t.by_reason[o.v->accept][o.v->reason < REASON_COUNT ? o.v->reason : 0]++;
		if (out)
			write_verdict(out, t.records, o.p, o.p != NULL, o.v);
	}

	if (!close_verdicts(out, opt->verdicts_path))
		rc = 1;
	flowlog_finish(fl); /* flow logs: emits the open windows */
	struct flowlog_stats fs;
	flowlog_get_stats(fl, &fs);
	if (fs.write_errors) {
		/* a replay whose flow logs are incomplete must not pass for one */
		log_warnx("flow logs: %" PRIu64 " write errors: the flow logs of this "
			"replay are incomplete", fs.write_errors);
		rc = 1;
	}
	flowlog_destroy(fl);
	struct mirror_stats ms;
	mirror_get_stats(mr, &ms);
	if (!mirror_destroy(mr))
		rc = 1;
	write_summary(opt->summary, opt->pcap_path, &t, &ln->pl);
	if (mr && opt->summary)
		fprintf(opt->summary, "  mirror: %" PRIu64 " copies (%" PRIu64 " VXLAN sent, %" PRIu64
			" send errors, %" PRIu64 " pcap records), %" PRIu64 " refused packets captured\n",
			ms.mirrored, ms.vxlan_sent, ms.vxlan_errors, ms.pcap_records, ms.captured);
	free(ln);
	ct_destroy(ct);
	capture_close(pc);
	return rc;
}
