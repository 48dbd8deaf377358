/* Offline replay: each record of a pcap/pcapng file goes through the same
 * pipeline as live traffic, with its own timestamp as the clock. */
#include "vpcfw/replay.h"

#include <errno.h>
#include <inttypes.h>
#include <pcap/pcap.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/flowlog.h" /* flow logs */
#include "vpcfw/lane.h"
#include "vpcfw/mirror.h"  /* mirroring, drop capture */
#include "vpcfw/packet.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/log.h"
#include "vpcfw/safefile.h"
#include "vpcfw/xmalloc.h"

/* Link types by their file-format (LINKTYPE_*) numbers; libpcap hands some
 * of them over translated (LINKTYPE_RAW 101 -> DLT_RAW, which is 12 or 14). */
enum {
	LINK_NULL = 0,
	LINK_EN10MB = 1,
	LINK_RAW_12 = 12,
	LINK_RAW_14 = 14,
	LINK_RAW = 101,
	LINK_LOOP = 108,
	LINK_LINUX_SLL = 113,
	LINK_IPV4 = 228,
	LINK_IPV6 = 229,
	LINK_LINUX_SLL2 = 276,
};

enum {
	ETH_IPV4 = 0x0800,
	ETH_IPV6 = 0x86dd,
	ETH_VLAN = 0x8100,
	ETH_QINQ = 0x88a8,
	ETH_QINQ_OLD = 0x9100,
};

#define MAX_VLAN_TAGS 2

/* Where the IP header of a record starts, and which family the link layer
 * announced (0: let the version nibble tell). */
struct link_result {
	enum packet_status st;  /* PACKET_OK: ip_off/family valid */
	size_t ip_off;
	int family;
};

static inline uint16_t rd16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static void by_ethertype(const uint8_t *b, size_t cap, size_t off, uint16_t type,
			 struct link_result *r)
{
	for (int tags = 0; type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD; tags++) {
		if (tags == MAX_VLAN_TAGS) {
			r->st = PACKET_NOT_IP;
			return;
		}
		if (off + 4 > cap) {
			r->st = PACKET_MALFORMED;
			return;
		}
		type = rd16(b + off + 2);
		off += 4;
	}
	r->ip_off = off;
	if (type == ETH_IPV4) {
		r->st = PACKET_OK;
		r->family = FAMILY_V4;
	} else if (type == ETH_IPV6) {
		r->st = PACKET_OK;
		r->family = FAMILY_V6;
	} else {
		r->st = PACKET_NOT_IP;
	}
}

/* BSD loopback: the sender's address family, in the capturing host's byte
 * order (DLT_NULL) or in network order (DLT_LOOP).  AF_INET is 2
 * everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (the BSDs, macOS). */
static void by_loopback_family(const uint8_t *b, size_t cap, struct link_result *r)
{
	if (cap < 4) {
		r->st = PACKET_MALFORMED;
		return;
	}
	uint32_t af = b[0] == 0 && b[1] == 0 ? b[3] | (uint32_t)b[2] << 8
					     : b[0] | (uint32_t)b[1] << 8;
	r->ip_off = 4;
	r->st = PACKET_OK;
	if (af == 2)
		r->family = FAMILY_V4;
	else if (af == 10 || af == 24 || af == 28 || af == 30)
		r->family = FAMILY_V6;
	else
		r->st = PACKET_NOT_IP;
}

static bool link_supported(int link)
{
	switch (link) {
	case LINK_NULL: case LINK_EN10MB: case LINK_RAW_12: case LINK_RAW_14: case LINK_RAW:
	case LINK_LOOP: case LINK_LINUX_SLL: case LINK_IPV4: case LINK_IPV6: case LINK_LINUX_SLL2:
		return true;
	default:
		return false;
	}
}

static void link_decode(int link, const uint8_t *b, size_t cap, struct link_result *r)
{
	memset(r, 0, sizeof(*r));
	switch (link) {
	case LINK_EN10MB:
		if (cap < 14)
			r->st = PACKET_MALFORMED;
		else
			by_ethertype(b, cap, 14, rd16(b + 12), r);
		break;
	case LINK_LINUX_SLL:
		if (cap < 16)
			r->st = PACKET_MALFORMED;
		else
			by_ethertype(b, cap, 16, rd16(b + 14), r);
		break;
	case LINK_LINUX_SLL2:
		if (cap < 20)
			r->st = PACKET_MALFORMED;
		else
			by_ethertype(b, cap, 20, rd16(b), r);
		break;
	case LINK_NULL:
	case LINK_LOOP:
		by_loopback_family(b, cap, r);
		break;
	case LINK_IPV4:
		r->family = FAMILY_V4;
		break;
	case LINK_IPV6:
		r->family = FAMILY_V6;
		break;
	default: /* raw IP: the version nibble decides */
		break;
	}
}

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

static uint64_t record_time_ns(const struct pcap_pkthdr *h)
{
	if (h->ts.tv_sec < 0)
		return 0;
	/* with PCAP_TSTAMP_PRECISION_NANO tv_usec holds nanoseconds */
	return (uint64_t)h->ts.tv_sec * 1000000000ULL + (uint64_t)h->ts.tv_usec;
}

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
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	pcap_t *pc;
	int link, rc = 0;

	pc = pcap_open_offline_with_tstamp_precision(opt->pcap_path, PCAP_TSTAMP_PRECISION_NANO,
						     errbuf);
	if (!pc) {
		log_warnx("%s: %s", opt->pcap_path, errbuf);
		return 1;
	}
	link = pcap_datalink(pc);
	if (!link_supported(link)) {
		const char *name = pcap_datalink_val_to_name(link);
		log_warnx("%s: unsupported link type %s (%d)", opt->pcap_path,
			name ? name : "unknown", link);
		pcap_close(pc);
		return 1;
	}

	struct conntrack *ct = ct_create(pol->conntrack_max ? pol->conntrack_max : 1);
	if (!ct) {
		log_warnx("cannot allocate the connection tracking table (%u flows)",
			pol->conntrack_max);
		pcap_close(pc);
		return 1;
	}
	FILE *out = open_verdicts(opt->verdicts_path);
	if (opt->verdicts_path && !out) {
		log_warn("%s", opt->verdicts_path);
		ct_destroy(ct);
		pcap_close(pc);
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
		pcap_close(pc);
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
		pcap_close(pc);
		return 1;
	}
	ln->mw = mirror_worker(mr, 0);

	for (;;) {
		struct pcap_pkthdr *h;
		const u_char *data;
		int r = pcap_next_ex(pc, &h, &data);

		if (r == PCAP_ERROR_BREAK)
			break;
		if (r != 1) {
			log_warnx("%s: record %" PRIu64 ": %s: replay incomplete",
				opt->pcap_path, t.records + 1, pcap_geterr(pc));
			rc = 1;
			break;
		}
		t.records++;
		/* The pipeline's clock must not run backwards (conntrack
		 * deadlines): a record older than the one before keeps the
		 * latest time. */
		uint64_t ts = record_time_ns(h);
		if (ts > now)
			now = ts;
		/* a couple of buckets per packet sweeps the whole table every
		 * few million packets without scattering reads on every one */
		ct_expire(ct, now, 2);
		struct link_result lr;
		link_decode(link, data, h->caplen, &lr);
		struct lane_packet in = {
			.data = data, .caplen = h->caplen, .wirelen = h->len, .ip_off = lr.ip_off,
			.link = lr.st, .family = (uint8_t)lr.family, .ts_ns = ts,
		};
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
	pcap_close(pc);
	return rc;
}

bool replay_is_capture(const char *path)
{
	static const uint32_t magics[] = { 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1,
					   0x0a0d0d0a };
	uint8_t b[4];
	FILE *f = fopen(path, "rb");
	bool yes = false;

	if (!f)
		return false;
	if (fread(b, 1, 4, f) == 4) {
		uint32_t m = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
		for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++)
			yes = yes || m == magics[i];
	}
	fclose(f);
	return yes;
}

bool replay_foreach(const char *path, replay_packet_fn fn, void *arg, uint64_t *skipped,
		    char *err, size_t errlen)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	pcap_t *pc = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO,
							     errbuf);
	uint64_t now = 0, n = 0;
	bool ok = true;

	if (!pc) {
		snprintf(err, errlen, "%s: %s", path, errbuf);
		return false;
	}
	int link = pcap_datalink(pc);
	if (!link_supported(link)) {
		snprintf(err, errlen, "%s: unsupported link type %d", path, link);
		pcap_close(pc);
		return false;
	}
	for (;;) {
		struct pcap_pkthdr *h;
		const u_char *data;
		struct link_result lr;
		struct packet p;
		int r = pcap_next_ex(pc, &h, &data);

		if (r == PCAP_ERROR_BREAK)
			break;
		if (r != 1) {
			snprintf(err, errlen, "%s: record %" PRIu64 ": %s", path, n + 1, pcap_geterr(pc));
			ok = false;
			break;
		}
		n++;
		uint64_t ts = record_time_ns(h);
		if (ts > now)
			now = ts;
		size_t cap = h->caplen, wire = h->len < cap ? cap : h->len;
		link_decode(link, data, cap, &lr);
		if (lr.st != PACKET_OK ||
		    packet_parse_ip(data + lr.ip_off, cap - lr.ip_off, wire - lr.ip_off, &p) != PACKET_OK ||
		    (lr.family && p.family != lr.family)) {
			if (skipped)
				(*skipped)++;
			continue;
		}
		if (fn(&p, now, wire - lr.ip_off, arg))
			break;
	}
	pcap_close(pc);
	return ok;
}
