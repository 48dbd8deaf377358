/* Reading VPC flow-log records back and deciding each record's flow as its
 * first packet (issue #15).  Record syntax as AWS documents it: VPC user
 * guide, "Flow log records" (flow-log-records) and "Flow log record
 * examples" (flow-logs-records-examples); S3 objects per flow-logs-s3-path. */
#include "vpcfw/flowlog_read.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/gzstream.h"
#include "vpcfw/proto.h"
#include "vpcfw/log.h"
#include "vpcfw/safefile.h"

#define FLR_FIELD_SKIP 0xff     /* a header column vpcfw does not know */

static int field_by_name(const char *s, size_t len)
{
	for (int f = 0; f < FLF_COUNT; f++) {
		const char *n = fl_field_name((enum fl_field)f);
		if (strlen(n) == len && memcmp(n, s, len) == 0)
			return f;
	}
	return -1;
}

/* ---------------------------------------------------------------- fields */

/* Dotted quad without inet_pton's locale and copying; IPv6 through
 * addr_parse. */
static bool parse_addr(const char *s, struct ip_addr *a, int *family)
{
	uint32_t v = 0;
	int parts = 0;
	const char *p = s;

	while (parts < 4) {
		unsigned n = 0, digits = 0;
		while (*p >= '0' && *p <= '9' && digits < 4) {
			n = n * 10 + (unsigned)(*p++ - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || n > 255)
			break;
		v = v << 8 | n;
		parts++;
		if (parts < 4) {
			if (*p != '.')
				break;
			p++;
		}
	}
	if (parts == 4 && *p == '\0') {
		*a = addr_from_v4(v);
		*family = FAMILY_V4;
		return true;
	}
	return strchr(s, ':') && addr_parse(s, a, family);
}

/* Separators of a record's fields; the table makes a field's scan one load
 * and one test per byte. */
static const uint8_t sep_tab[256] = { [' '] = 1, ['\t'] = 1, ['\r'] = 1 };
#define SEP(c) (sep_tab[(unsigned char)(c)])

/* The digits at *pp as one number, in one pass with the field's scan: true
 * with *pp at the token's end when the token is a number (as parse_u64
 * takes it: digits up to the token's end or an embedded NUL).  False
 * leaves *pp anywhere inside the token. */
static inline bool scan_u64(char **pp, uint64_t *out)
{
	char *p = *pp;
	uint64_t v = 0;
	unsigned d;

	/* 19 digits cannot overflow: the checks only for a longer number, in
	 * a second pass (the first may have wrapped) */
	while ((d = (unsigned)(unsigned char)*p - '0') < 10) {
		v = v * 10 + d;
		p++;
	}
	if (p - *pp > 19) {
		v = 0;
		for (const char *q = *pp; q < p; q++)
			if (__builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(v, (unsigned)(*q - '0'), &v))
				return false;
	}
	if (p == *pp)
		return false;
	if (!SEP(*p)) {
		if (*p != '\0')
			return false;
		while (!SEP(*p)) /* parse_u64 stops at a NUL: the rest is ignored */
			p++;
	}
	*pp = p;
	*out = v;
	return true;
}

/* A dotted quad up to the field's end, in the field's scan: true with *pp
 * at the field's end for exactly the fields parse_addr takes as IPv4 and
 * that have no NUL in them (the rest go to parse_addr). */
static inline bool scan_v4(char **pp, struct ip_addr *a)
{
	char *p = *pp;
	uint32_t v = 0;

	for (int part = 0; part < 4; part++) {
		unsigned n = 0, d, digits = 0;
		while ((d = (unsigned)(unsigned char)*p - '0') < 10 && digits < 3) {
			n = n * 10 + d;
			p++;
			digits++;
		}
		if (!digits || n > 255)
			return false;
		v = v << 8 | n;
		if (part < 3) {
			if (*p != '.')
				return false;
			p++;
		}
	}
	if (!SEP(*p))
		return false;
	*pp = p;
	*a = addr_from_v4(v);
	return true;
}

/* strcmp(tok, lit) == 0 for a token of tl bytes, NUL-terminated (it may
 * hold a NUL of its own: strcmp stops there), without the call */
#define TOKEN_IS(tok, tl, lit) \
	((tl) >= sizeof(lit) - 1 && memcmp((tok), (lit), sizeof(lit) - 1) == 0 && \
	 (tok)[sizeof(lit) - 1] == '\0')

static bool parse_line(const struct fl_format *f, char *line, char *end, struct flr_record *r,
		       char *err, size_t errlen)
{
	char *s = line;
	int i = 0;
	int sfam = 0, dfam = 0, psfam = 0, pdfam = 0;

	r->present = 0;
	r->interface_id = NULL;
	r->family = 0;
	r->proto = r->sport = r->dport = -1;
	r->packets = r->bytes = r->start = r->end = 0;
	r->action = -1;
	r->status = FL_OK;
	r->tcp_flags = -1;
	r->direction = -1;
	r->traffic_path = 0;

	*end = ' '; /* a field's scan stops here at the latest */
	for (;;) {
		while (s < end && SEP(*s))
			s++;
		if (s == end)
			break;
		char *tok = s;
		if (i == f->n) {
			int n = i;
			for (char *q = s; q < end;) {
				while (q < end && SEP(*q))
					q++;
				if (q == end)
					break;
				n++;
				while (q < end && !SEP(*q))
					q++;
			}
			snprintf(err, errlen, "%d fields, the format has %d", n, f->n);
			return false;
		}
		int field = f->fields[i++];
		uint64_t v = 0, max = UINT64_MAX;
		bool ok = true;
		switch (field) {
		case FLF_SRCPORT: case FLF_DSTPORT: max = 65535; goto number;
		case FLF_PROTOCOL: case FLF_TCP_FLAGS: case FLF_TRAFFIC_PATH: max = 255; goto number;
		case FLF_PACKETS: case FLF_BYTES: case FLF_START: case FLF_END:
		number:
			if (*tok != '-' && scan_u64(&s, &v)) {
				if (v > max) {
					ok = false; /* s is at the field's end */
					break;
				}
				*s = '\0';
				if (s < end)
					s++;
				switch (field) {
				case FLF_SRCPORT: r->sport = (int)v; break;
				case FLF_DSTPORT: r->dport = (int)v; break;
				case FLF_PROTOCOL: r->proto = (int)v; break;
				case FLF_TCP_FLAGS: r->tcp_flags = (int)v; break;
				case FLF_TRAFFIC_PATH: r->traffic_path = (int)v; break;
				case FLF_PACKETS: r->packets = v; break;
				case FLF_BYTES: r->bytes = v; break;
				case FLF_START: r->start = v; break;
				default: r->end = v; break;
				}
				r->present |= 1ULL << field;
				continue;
			}
			ok = false; /* "-", or not a number */
			break;
		case FLF_SRCADDR: case FLF_DSTADDR: case FLF_PKT_SRCADDR: case FLF_PKT_DSTADDR: {
			struct ip_addr a;
			if (!scan_v4(&s, &a))
				break; /* "-", IPv6 or not valid: parse_addr says */
			*s = '\0';
			if (s < end)
				s++;
			switch (field) {
			case FLF_SRCADDR: r->srcaddr = a; sfam = FAMILY_V4; break;
			case FLF_DSTADDR: r->dstaddr = a; dfam = FAMILY_V4; break;
			case FLF_PKT_SRCADDR: r->pkt_srcaddr = a; psfam = FAMILY_V4; break;
			default: r->pkt_dstaddr = a; pdfam = FAMILY_V4; break;
			}
			r->present |= 1ULL << field;
			continue;
		}
		default:
			break;
		}
		while (!SEP(*s))
			s++;
		size_t tl = (size_t)(s - tok);
		*s = '\0';
		if (s < end)
			s++;
		if (field == FLR_FIELD_SKIP || (tok[0] == '-' && tok[1] == '\0'))
			continue;
		if (!ok) {
			snprintf(err, errlen, "%s '%.60s' is not valid",
				 fl_field_name((enum fl_field)field), tok);
			return false;
		}
		switch (field) {
		case FLF_INTERFACE_ID: r->interface_id = tok; break;
		case FLF_SRCADDR: ok = parse_addr(tok, &r->srcaddr, &sfam); break;
		case FLF_DSTADDR: ok = parse_addr(tok, &r->dstaddr, &dfam); break;
		case FLF_PKT_SRCADDR: ok = parse_addr(tok, &r->pkt_srcaddr, &psfam); break;
		case FLF_PKT_DSTADDR: ok = parse_addr(tok, &r->pkt_dstaddr, &pdfam); break;
		case FLF_ACTION: /* as strcmp: up to a NUL in the token */
			if (TOKEN_IS(tok, tl, "ACCEPT"))
				r->action = 1;
			else if (TOKEN_IS(tok, tl, "REJECT"))
				r->action = 0;
			else
				ok = false;
			break;
		case FLF_LOG_STATUS:
			if (TOKEN_IS(tok, tl, "OK"))
				r->status = FL_OK;
			else if (TOKEN_IS(tok, tl, "NODATA"))
				r->status = FL_NODATA;
			else if (TOKEN_IS(tok, tl, "SKIPDATA"))
				r->status = FL_SKIPDATA;
			else
				ok = false;
			break;
		case FLF_FLOW_DIRECTION:
			if (strcmp(tok, "egress") == 0)
				r->direction = 1;
			else if (strcmp(tok, "ingress") == 0)
				r->direction = 0;
			else
				ok = false;
			break;
		default: /* logged, not needed for a verdict */
			break;
		}
		if (!ok) {
			snprintf(err, errlen, "%s '%.60s' is not valid",
				 fl_field_name((enum fl_field)field), tok);
			return false;
		}
		r->present |= 1ULL << field;
	}
	if (i != f->n) {
		snprintf(err, errlen, "%d fields, the format has %d", i, f->n);
		return false;
	}
	if (sfam && dfam && sfam != dfam) {
		snprintf(err, errlen, "srcaddr and dstaddr of different families");
		return false;
	}
	if (psfam && pdfam && psfam != pdfam) {
		snprintf(err, errlen, "pkt-srcaddr and pkt-dstaddr of different families");
		return false;
	}
	r->family = psfam && pdfam ? psfam : sfam && dfam ? sfam : 0;
	return true;
}

/* One pass over the line: each field is scanned once, numbers converted in
 * the same pass, nothing copied. */
bool flr_parse_line(const struct fl_format *f, char *line, size_t len, struct flr_record *r,
		    char *err, size_t errlen)
{
	char *end = line + len;
	bool ok = parse_line(f, line, end, r, err, errlen);
	*end = '\0'; /* the caller leaves room for it */
	return ok;
}

bool flr_parse_header(const char *line, size_t len, struct fl_format *f, char *err,
		      size_t errlen)
{
	const char *s = line, *end = line + len;
	bool first = true;
	size_t used = 0;

	if (err && errlen)
		err[0] = '\0';
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	{
		const char *t = s;
		while (t < end && *t != ' ' && *t != '\t' && *t != '\r')
			t++;
		if (field_by_name(s, (size_t)(t - s)) < 0)
			return false;
	}
	memset(f, 0, sizeof(*f));
	for (;;) {
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
			s++;
		if (s == end)
			break;
		const char *tok = s;
		while (s < end && *s != ' ' && *s != '\t' && *s != '\r')
			s++;
		size_t tl = (size_t)(s - tok);
		int fld = field_by_name(tok, tl);
		if (f->n == FL_MAX_FIELDS) {
			if (err && used < errlen)
				snprintf(err + used, errlen - used, "%smore than %d fields",
					 used ? "; " : "", FL_MAX_FIELDS);
			break;
		}
		if (fld < 0) {
			if (err && used < errlen) {
				int w = snprintf(err + used, errlen - used,
						 "%sunknown field '%.*s' (its column is skipped)",
						 used ? "; " : "", tl > 60 ? 60 : (int)tl, tok);
				if (w > 0)
					used += (size_t)w;
			}
			f->fields[f->n++] = FLR_FIELD_SKIP;
		} else {
			f->fields[f->n++] = (uint8_t)fld;
			if (fl_field_version((enum fl_field)fld) > f->version)
				f->version = fl_field_version((enum fl_field)fld);
		}
		first = false;
	}
	(void)first;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool flr_cloudwatch_message(const char *line, size_t len, char *out, size_t outlen,
			    size_t *used)
{
	static const char key[] = "\"message\"";
	const char *end = line + len, *s = line;

	if (outlen == 0)
		return false;
	/* the first "message" key of the object (flow-log text has no quotes) */
	for (;;) {
		s = memmem(s, (size_t)(end - s), key, sizeof(key) - 1);
		if (!s)
			return false;
		s += sizeof(key) - 1;
		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		if (s < end && *s == ':')
			break;
	}
	s++;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s == end || *s != '"')
		return false;
	s++;
	size_t n = 0;
	while (s < end && *s != '"') {
		char c = *s++;
		if (c == '\\') {
			if (s == end)
				return false;
			c = *s++;
			switch (c) {
			case '"': case '\\': case '/': break;
			case 't': case 'n': case 'r': case 'b': case 'f': c = ' '; break;
			case 'u': {
				if (end - s < 4)
					return false;
				int v = 0;
				for (int k = 0; k < 4; k++) {
					int h = hexval(s[k]);
					if (h < 0)
						return false;
					v = v << 4 | h;
				}
				s += 4;
				if (v == 0 || v > 0x7f)
					return false; /* flow-log text is ASCII */
				c = (char)v;
				break;
			}
			default:
				return false;
			}
		}
		if (n + 1 >= outlen)
			return false;
		out[n++] = c;
	}
	if (s == end)
		return false;
	out[n] = '\0';
	*used = n;
	return true;
}

/* ---------------------------------------------------------------- decide */

bool flr_to_packet(const struct flr_record *r, struct packet *p)
{
	memset(p, 0, sizeof(*p));
	if (!r->family)
		return false;
	bool pkt = (r->present & (1ULL << FLF_PKT_SRCADDR)) &&
		   (r->present & (1ULL << FLF_PKT_DSTADDR));
	p->src = pkt ? r->pkt_srcaddr : r->srcaddr;
	p->dst = pkt ? r->pkt_dstaddr : r->dstaddr;
	p->family = (uint8_t)r->family;
	p->proto = (uint8_t)(r->proto < 0 ? 0 : r->proto);
	p->ip_len = r->packets ? (uint32_t)(r->bytes / r->packets > UINT32_MAX
					    ? UINT32_MAX : r->bytes / r->packets) : 0;
	if (p->proto == PROTO_TCP || p->proto == PROTO_UDP) {
		p->flags = PKT_F_L4;
		p->sport = (uint16_t)(r->sport < 0 ? 0 : r->sport);
		p->dport = (uint16_t)(r->dport < 0 ? 0 : r->dport);
	} else if (p->proto == (r->family == FAMILY_V4 ? PROTO_ICMP : PROTO_ICMPV6)) {
		/* flow logs keep no ICMP type: an echo request stands for it */
		p->flags = PKT_F_L4;
		p->icmp_type = r->family == FAMILY_V4 ? 8 : 128;
	}
	if (p->proto == PROTO_TCP) {
		/* tcp-flags ORs the flags of the window (flow-log-records,
		 * "TCP flag sequence"): SYN without ACK opened the flow in the
		 * record's direction; SYN-ACK (18) means the other end opened
		 * it, so its first packet is the reverse SYN; no SYN at all is
		 * the middle of a flow (decided as an ACK); unlogged: a SYN */
		int fl = r->tcp_flags;
		if (fl >= 0 && (fl & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) {
			struct ip_addr a = p->src;
			uint16_t port = p->sport;
			p->src = p->dst;
			p->dst = a;
			p->sport = p->dport;
			p->dport = port;
			p->tcp_flags = TCP_SYN;
		} else if (fl < 0 || (fl & TCP_SYN)) {
			p->tcp_flags = TCP_SYN;
		} else {
			p->tcp_flags = TCP_ACK;
		}
	}
	return true;
}

/* flr_decide with the record's packet made and located already (loc not
 * NULL: by flr_to_packet and pipeline_locate under pol, no meta) */
static const struct verdict *decide(struct lane *l, const struct policy *pol,
				    const struct flr_record *r, uint64_t *clock, struct packet *p,
				    bool parsed, const struct pipeline_located *loc)
{
	/* the records' start times are the clock; it never runs backwards
	 * (conntrack deadlines) */
	uint64_t t = r->start > UINT64_MAX / 2000000000ULL ? UINT64_MAX / 2
							   : r->start * 1000000000ULL;
	if (t > *clock)
		*clock = t;
	ct_expire(l->pl.ct, *clock, 2);
	/* no packet (no addresses): malformed, as a packet without bytes */
	struct lane_packet in = { .parsed = parsed ? p : NULL, .located = parsed ? loc : NULL };
	struct lane_batch b = { .pol = pol, .now_ns = *clock, .wall_ns = *clock };
	struct lane_out o;
	lane_decide(l, &b, &in, 1, &o);
	return o.v;
}

const struct verdict *flr_decide(struct lane *l, const struct policy *pol,
				 const struct flr_record *r, uint64_t *clock, struct packet *p)
{
	bool parsed = flr_to_packet(r, p);
	return decide(l, pol, r, clock, p, parsed, NULL);
}

/* ---------------------------------------------------------------- reading */

/* The reader works in chunks: up to FLR_BUF bytes of one file's text as
 * decompressed, the records parsed from its lines (pointing into the text)
 * and what the other lines meant (counts, messages), in the file's order.
 * The reading side (decompression, line splitting, parsing) fills a chunk;
 * the deciding side takes it whole: counts, reports and calls the callback
 * item by item.  In one thread the reading side hands each chunk straight
 * to the deciding side; in two, the reading side runs in its own thread
 * with a bounded queue of chunks between them.  The calls, counts and
 * messages are the same, in the same order, either way; the memory is
 * FLR_CHUNKS chunks whatever the input. */
enum {
	FLR_BUF = 1 << 18,
	FLR_MAX_LINE = 1 << 16,
	FLR_ITEMS = FLR_BUF / 64,       /* a chunk of shorter lines is passed on early */
	FLR_NOTES = 1 << 14,            /* messages of a chunk */
	FLR_NOTE_MAX = 1024,            /* one message, at most */
	FLR_CHUNKS = 4,
};

enum item_kind {
	IT_RECORD,                      /* a record to decide */
	IT_NODATA, IT_SKIPDATA,
	IT_HEADER,                      /* a format's header line (note: unknown fields) */
	IT_MALFORMED,                   /* a line reported and skipped */
	IT_FILE,                        /* a file opened */
	IT_FILE_ERROR,                  /* a file or directory that could not be read (whole) */
};

#define NOTE_NONE UINT32_MAX

struct item {
	uint8_t kind;                   /* enum item_kind */
	uint32_t note;                  /* its message's offset in notes, or NOTE_NONE */
	uint64_t line;
	struct flr_record r;            /* IT_RECORD */
};

struct chunk {
	struct chunk *next;             /* in the queue or the free list */
	char *file;                     /* the file (or directory) its items are of */
	size_t file_cap;
	size_t n_items, notes_used;
	struct item *items;             /* FLR_ITEMS */
	char *notes;                    /* FLR_NOTES */
	char *text;                     /* FLR_BUF + 1 */
};

struct reader {
	FILE *err;
	flr_record_fn fn;
	flr_ahead_fn ahead;
	void *arg;
	/* the deciding side's */
	struct flr_stats *st;
	bool ok;
	uint64_t index;
	atomic_bool stop;               /* set by the deciding side */
	/* the reading side's */
	struct chunk *ch;               /* being filled */
	uint64_t passes;                /* chunks passed on so far */
	bool oom;
	/* two threads: chunks handed over under mu */
	bool threaded;
	pthread_mutex_t mu;
	pthread_cond_t cv_full, cv_free;
	struct chunk *full_head, *full_tail, *free_list;
	bool done;
	const char *const *paths;
	int n_paths;
	struct chunk *all[FLR_CHUNKS];
	int n_chunks;
};

static bool stopped(struct reader *rd)
{
	return atomic_load_explicit(&rd->stop, memory_order_relaxed);
}

/* ---- the deciding side */

static void report(struct reader *rd, const char *file, uint64_t line, const char *why)
{
	rd->ok = false;
	if (!rd->err)
		return;
	if (line)
		fprintf(rd->err, "vpcfwd: %s:%" PRIu64 ": %s: line skipped\n", file, line, why);
	else
		fprintf(rd->err, "vpcfwd: %s: %s\n", file, why);
}

static void consume(struct reader *rd, const struct chunk *ch)
{
	struct flr_stats *st = rd->st;

	for (size_t i = 0; i < ch->n_items && !stopped(rd); i++) {
		const struct item *it = &ch->items[i];
		const char *note = it->note == NOTE_NONE ? NULL : ch->notes + it->note;
		if (rd->ahead && i + FLR_AHEAD < ch->n_items &&
		    ch->items[i + FLR_AHEAD].kind == IT_RECORD)
			rd->ahead(&ch->items[i + FLR_AHEAD].r, rd->arg);
		switch (it->kind) {
		case IT_RECORD: {
			st->lines++;
			st->records++;
			struct flr_pos pos = { .file = ch->file, .line = it->line, .index = ++rd->index };
			if (rd->fn && rd->fn(&it->r, &pos, rd->arg))
				atomic_store_explicit(&rd->stop, true, memory_order_relaxed);
			break;
		}
		case IT_NODATA:
			st->lines++;
			st->nodata++;
			break;
		case IT_SKIPDATA:
			st->lines++;
			st->skipdata++;
			break;
		case IT_HEADER:
			st->lines++;
			st->headers++;
			if (note) {
				st->malformed++;
				report(rd, ch->file, it->line, note);
			}
			break;
		case IT_MALFORMED:
			st->lines++;
			st->malformed++;
			report(rd, ch->file, it->line, note);
			break;
		case IT_FILE:
			st->files++;
			break;
		case IT_FILE_ERROR:
			st->file_errors++;
			report(rd, ch->file, 0, note);
			break;
		}
	}
}

/* ---- handing chunks over */

static void chunk_reset(struct chunk *ch)
{
	ch->n_items = 0;
	ch->notes_used = 0;
}

static bool chunk_set_file(struct reader *rd, struct chunk *ch, const char *file)
{
	size_t len = strlen(file) + 1;
	if (len > ch->file_cap) {
		char *f = realloc(ch->file, len);
		if (!f) {
			rd->oom = true;
			return false;
		}
		ch->file = f;
		ch->file_cap = len;
	}
	memcpy(ch->file, file, len);
	return true;
}

/* Passes the chunk being filled on to the deciding side; the next one
 * starts with rest (the text not yet split into lines).  False when
 * reading must end (the deciding side stopped, or no memory). */
static bool pass_on(struct reader *rd, const char *rest, size_t nrest)
{
	struct chunk *ch = rd->ch, *nx;

	rd->passes++;
	if (!rd->threaded) {
		consume(rd, ch);
		if (nrest)
			memmove(ch->text, rest, nrest);
		chunk_reset(ch);
		return !stopped(rd);
	}
	pthread_mutex_lock(&rd->mu);
	while (!rd->free_list)
		pthread_cond_wait(&rd->cv_free, &rd->mu);
	nx = rd->free_list;
	rd->free_list = nx->next;
	pthread_mutex_unlock(&rd->mu);

	chunk_reset(nx);
	if (nrest)
		memcpy(nx->text, rest, nrest);
	bool ok = chunk_set_file(rd, nx, ch->file);

	pthread_mutex_lock(&rd->mu);
	ch->next = NULL;
	if (rd->full_tail)
		rd->full_tail->next = ch;
	else
		rd->full_head = ch;
	rd->full_tail = ch;
	pthread_cond_signal(&rd->cv_full);
	pthread_mutex_unlock(&rd->mu);
	rd->ch = nx;
	return ok && !stopped(rd);
}

/* Room in the chunk being filled for one more item and its message:
 * otherwise it is passed on first, with rest. */
static bool room(struct reader *rd, const char *rest, size_t nrest)
{
	if (rd->ch->n_items < FLR_ITEMS && rd->ch->notes_used + FLR_NOTE_MAX <= FLR_NOTES)
		return true;
	return pass_on(rd, rest, nrest);
}

/* An item in the chunk being filled (room() made sure of the room). */
static struct item *add(struct reader *rd, enum item_kind kind, uint64_t line, const char *note)
{
	struct chunk *ch = rd->ch;
	struct item *it = &ch->items[ch->n_items++];

	it->kind = (uint8_t)kind;
	it->line = line;
	it->note = NOTE_NONE;
	if (note) {
		size_t len = strnlen(note, FLR_NOTE_MAX - 1);
		memcpy(ch->notes + ch->notes_used, note, len);
		ch->notes[ch->notes_used + len] = '\0';
		it->note = (uint32_t)ch->notes_used;
		ch->notes_used += len + 1;
	}
	return it;
}

/* A file-level item about path (nothing of the file's text pending). */
static bool add_file_item(struct reader *rd, const char *path, enum item_kind kind,
			  const char *note)
{
	struct chunk *ch = rd->ch;
	if (ch->n_items && strcmp(ch->file, path) != 0 && !pass_on(rd, NULL, 0))
		return false;
	if (!room(rd, NULL, 0) || !chunk_set_file(rd, rd->ch, path))
		return false;
	add(rd, kind, 0, note);
	return true;
}

/* ---- the reading side */

static void one_line(struct reader *rd, uint64_t lineno, char *line, size_t len,
		     struct fl_format *fmt)
{
	char err[512];

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	while (len && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	if (len == 0)
		return;
	if (*line == '{') { /* CloudWatch Logs: one event per line */
		size_t n;
		/* in place: the message is shorter than its JSON line */
		if (!flr_cloudwatch_message(line, len, line, len + 1, &n)) {
			add(rd, IT_MALFORMED, lineno, "a JSON line without a \"message\" string");
			return;
		}
		len = n;
	}
	if (line[0] < '0' || line[0] > '9') {
		/* a header line sets the format of the lines after it */
		struct fl_format nf;
		if (flr_parse_header(line, len, &nf, err, sizeof(err))) {
			*fmt = nf;
			add(rd, IT_HEADER, lineno, err[0] ? err : NULL);
			return;
		}
	}
	struct item *it = &rd->ch->items[rd->ch->n_items];
	if (!flr_parse_line(fmt, line, len, &it->r, err, sizeof(err))) {
		add(rd, IT_MALFORMED, lineno, err);
		return;
	}
	if (it->r.status == FL_NODATA) {
		add(rd, IT_NODATA, lineno, NULL);
		return;
	}
	if (it->r.status == FL_SKIPDATA) {
		add(rd, IT_SKIPDATA, lineno, NULL);
		return;
	}
	if (!it->r.family) {
		add(rd, IT_MALFORMED, lineno, "no srcaddr and dstaddr to decide");
		return;
	}
	add(rd, IT_RECORD, lineno, NULL); /* the record parsed in place */
}

static void read_file(struct reader *rd, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		add_file_item(rd, path, IT_FILE_ERROR, strerror(errno));
		return;
	}
	struct gzs *gz = gzs_open(fd, false);
	if (!gz) {
		add_file_item(rd, path, IT_FILE_ERROR, "cannot read");
		return;
	}
	if (!add_file_item(rd, path, IT_FILE, NULL)) {
		gzs_close(gz);
		return;
	}

	struct fl_format fmt;
	char dummy[8];
	fl_format_parse(NULL, &fmt, dummy, sizeof(dummy));
	bool skipping = false;
	uint64_t lineno = 0;
	size_t have = 0;
	for (;;) {
		char *buf = rd->ch->text;
		int got = gzs_read(gz, buf + have, (unsigned)(FLR_BUF - have));
		if (got < 0) {
			int zerr;
			const char *m = gzs_error(gz, &zerr);
			char why[256];
			snprintf(why, sizeof(why), "after line %" PRIu64 ": %s: the rest of the file "
				 "is skipped", lineno, m && *m ? m : "corrupt gzip data");
			if (room(rd, NULL, 0))
				add(rd, IT_FILE_ERROR, 0, why);
			break;
		}
		size_t total = have + (size_t)got;
		size_t off = 0;
		bool stop = false;
		for (;;) {
			char *nl = memchr(buf + off, '\n', total - off);
			if (!nl)
				break;
			uint64_t passes = rd->passes;
			if (!room(rd, buf + off, total - off)) {
				stop = true;
				break;
			}
			if (rd->passes != passes) { /* passed on: the rest moved */
				buf = rd->ch->text;
				total -= off;
				off = 0;
				nl = memchr(buf, '\n', total);
			}
			size_t len = (size_t)(nl - (buf + off));
			lineno++;
			if (skipping) {
				skipping = false;
			} else if (len > FLR_MAX_LINE - 1) {
				add(rd, IT_MALFORMED, lineno, "line too long");
			} else {
				one_line(rd, lineno, buf + off, len, &fmt);
			}
			off += len + 1;
		}
		if (stop)
			break;
		if (got == 0) { /* end of file: a last line without newline */
			int zerr;
			const char *m = gzs_error(gz, &zerr);
			uint64_t passes = rd->passes;
			if (!room(rd, buf + off, total - off))
				break;
			if (rd->passes != passes) {
				buf = rd->ch->text;
				total -= off;
				off = 0;
			}
			if (zerr != Z_OK && zerr != Z_STREAM_END) {
				char why[256];
				snprintf(why, sizeof(why), "after line %" PRIu64 ": %s: the rest of "
					 "the file is skipped", lineno, m && *m ? m : "corrupt data");
				add(rd, IT_FILE_ERROR, 0, why);
				break;
			}
			if (total > off && !skipping) {
				lineno++;
				if (total - off > FLR_MAX_LINE - 1)
					add(rd, IT_MALFORMED, lineno, "line too long");
				else
					one_line(rd, lineno, buf + off, total - off, &fmt);
			}
			break;
		}
		have = total - off;
		if (have >= FLR_MAX_LINE) {
			/* no newline in a whole line's room: drop up to the next */
			if (!skipping) {
				if (!room(rd, NULL, 0))
					break;
				add(rd, IT_MALFORMED, lineno + 1, "line too long");
			}
			skipping = true;
			have = 0;
		}
		if (rd->ch->n_items) {
			/* the records point into this text: the next read goes to
			 * the next chunk, with the line begun here */
			if (!pass_on(rd, buf + off, have))
				break;
		} else if (off) {
			memmove(buf, buf + off, have);
		}
	}
	gzs_close(gz);
}

static int no_dot(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static void read_path(struct reader *rd, const char *path, int depth)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		add_file_item(rd, path, IT_FILE_ERROR, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (S_ISREG(st.st_mode) || depth == 0)
			read_file(rd, path);
		return;
	}
	if (depth > 32) {
		add_file_item(rd, path, IT_FILE_ERROR, "directories nested too deep");
		return;
	}
	struct dirent **names;
	int n = scandir(path, &names, no_dot, alphasort);
	if (n < 0) {
		add_file_item(rd, path, IT_FILE_ERROR, strerror(errno));
		return;
	}
	for (int i = 0; i < n; i++) {
		if (!stopped(rd) && !rd->oom) {
			char sub[PATH_MAX];
			int w = snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
			if (w < 0 || (size_t)w >= sizeof(sub))
				add_file_item(rd, path, IT_FILE_ERROR, "a name too long below it");
			else
				read_path(rd, sub, depth + 1);
		}
		free(names[i]);
	}
	free(names);
}

/* The reading side, whole: every path, then the last chunk passed on. */
static void read_all(struct reader *rd)
{
	for (int i = 0; i < rd->n_paths && !stopped(rd) && !rd->oom; i++)
		read_path(rd, rd->paths[i], 0);
	if (rd->ch->n_items && !stopped(rd))
		pass_on(rd, NULL, 0);
}

static void *reading_thread(void *arg)
{
	struct reader *rd = arg;

	read_all(rd);
	pthread_mutex_lock(&rd->mu);
	rd->done = true;
	pthread_cond_signal(&rd->cv_full);
	pthread_mutex_unlock(&rd->mu);
	return NULL;
}

static void chunk_free(struct chunk *ch)
{
	if (!ch)
		return;
	free(ch->file);
	free(ch->items);
	free(ch->notes);
	free(ch->text);
	free(ch);
}

static struct chunk *chunk_new(void)
{
	struct chunk *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->items = malloc(FLR_ITEMS * sizeof(*ch->items));
	ch->notes = malloc(FLR_NOTES);
	ch->text = malloc(FLR_BUF + 1);
	ch->file = malloc(1);
	ch->file_cap = 1;
	if (!ch->items || !ch->notes || !ch->text || !ch->file) {
		chunk_free(ch);
		return NULL;
	}
	ch->file[0] = '\0';
	return ch;
}

int flr_threads_default(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n >= 2 ? 2 : 1;
}

bool flr_read_paths_threads(const char *const *paths, int n, int threads, FILE *err,
			    flr_record_fn fn, flr_ahead_fn ahead, void *arg, struct flr_stats *st)
{
	struct reader *rd = calloc(1, sizeof(*rd));

	memset(st, 0, sizeof(*st));
	if (!rd) {
		if (err)
			fputs("vpcfwd: out of memory\n", err);
		return false;
	}
	rd->err = err;
	rd->fn = fn;
	rd->ahead = ahead;
	rd->arg = arg;
	rd->st = st;
	rd->ok = true;
	rd->paths = paths;
	rd->n_paths = n;
	atomic_init(&rd->stop, false);
	if (threads <= 0)
		threads = flr_threads_default();
	rd->n_chunks = threads > 1 ? FLR_CHUNKS : 1;
	for (int i = 0; i < rd->n_chunks; i++) {
		if (!(rd->all[i] = chunk_new())) {
			for (int k = 0; k < i; k++)
				chunk_free(rd->all[k]);
			free(rd);
			if (err)
				fputs("vpcfwd: out of memory\n", err);
			return false;
		}
	}
	rd->ch = rd->all[0];

	pthread_t reading;
	bool started = false;
	if (rd->n_chunks > 1) {
		for (int i = rd->n_chunks - 1; i >= 1; i--) {
			rd->all[i]->next = rd->free_list;
			rd->free_list = rd->all[i];
		}
		rd->threaded = true;
		pthread_mutex_init(&rd->mu, NULL);
		pthread_cond_init(&rd->cv_full, NULL);
		pthread_cond_init(&rd->cv_free, NULL);
		started = pthread_create(&reading, NULL, reading_thread, rd) == 0;
		if (!started) {
			rd->threaded = false; /* read in this thread */
			pthread_mutex_destroy(&rd->mu);
			pthread_cond_destroy(&rd->cv_full);
			pthread_cond_destroy(&rd->cv_free);
		}
	}
	if (!started) {
		read_all(rd);
	} else {
		/* the deciding side: every chunk in the order read; after a stop
		 * the chunks are still taken (and ignored) until the reading side
		 * has seen it */
		for (;;) {
			pthread_mutex_lock(&rd->mu);
			while (!rd->full_head && !rd->done)
				pthread_cond_wait(&rd->cv_full, &rd->mu);
			struct chunk *ch = rd->full_head;
			if (ch) {
				rd->full_head = ch->next;
				if (!rd->full_head)
					rd->full_tail = NULL;
			}
			pthread_mutex_unlock(&rd->mu);
			if (!ch)
				break;
			consume(rd, ch);
			pthread_mutex_lock(&rd->mu);
			ch->next = rd->free_list;
			rd->free_list = ch;
			pthread_cond_signal(&rd->cv_free);
			pthread_mutex_unlock(&rd->mu);
		}
		pthread_join(reading, NULL);
		pthread_mutex_destroy(&rd->mu);
		pthread_cond_destroy(&rd->cv_full);
		pthread_cond_destroy(&rd->cv_free);
	}
	bool ok = rd->ok;
	if (rd->oom) {
		if (err)
			fputs("vpcfwd: out of memory\n", err);
		ok = false;
	}
	for (int i = 0; i < rd->n_chunks; i++)
		chunk_free(rd->all[i]);
	free(rd);
	return ok;
}

bool flr_read_paths(const char *const *paths, int n, FILE *err, flr_record_fn fn, void *arg,
		    struct flr_stats *st)
{
	return flr_read_paths_threads(paths, n, 1, err, fn, NULL, arg, st);
}

/* ---------------------------------------------------------------- replay */

/* The verdict lines are built in a buffer and written with one fwrite
 * when it is full (no printf per field); a piece longer than the buffer
 * goes straight to the stream. */
struct outbuf {
	FILE *f;
	size_t n;
	char b[4096];
};

static void ob_flush(struct outbuf *o)
{
	if (o->n)
		fwrite(o->b, 1, o->n, o->f);
	o->n = 0;
}

static inline void ob_put(struct outbuf *o, const char *s, size_t len)
{
	if (len > sizeof(o->b) - o->n) {
		ob_flush(o);
		if (len > sizeof(o->b)) {
			fwrite(s, 1, len, o->f);
			return;
		}
	}
	memcpy(o->b + o->n, s, len);
	o->n += len;
}

#define OB_LIT(o, lit) ob_put((o), (lit), sizeof(lit) - 1)

static inline void ob_cstr(struct outbuf *o, const char *s)
{
	ob_put(o, s, strlen(s));
}

static void ob_u64(struct outbuf *o, uint64_t v)
{
	char d[20];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	ob_put(o, d + i, sizeof(d) - i);
}

/* An address as addr_format writes it; IPv4 without inet_ntop's printf */
static void ob_addr(struct outbuf *o, const struct ip_addr *a, int family)
{
	if (family != FAMILY_V4) {
		char buf[ADDR_STRLEN];
		ob_cstr(o, addr_format(a, family, buf));
		return;
	}
	uint32_t v = addr_to_v4(a);
	for (int k = 3; k >= 0; k--) {
		ob_u64(o, v >> (8 * k) & 0xff);
		if (k)
			OB_LIT(o, ".");
	}
}

static void json_str(struct outbuf *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *c = (const unsigned char *)s, *run = c;

	OB_LIT(o, "\"");
	for (;; c++) {
		if (*c && *c != '"' && *c != '\\' && *c >= 0x20 && *c != 0x7f)
			continue;
		ob_put(o, (const char *)run, (size_t)(c - run));
		if (!*c)
			break;
		if (*c == '"' || *c == '\\') {
			char e[2] = { '\\', (char)*c };
			ob_put(o, e, 2);
		} else {
			char e[6] = { '\\', 'u', '0', '0', hex[*c >> 4], hex[*c & 15] };
			ob_put(o, e, 6);
		}
		run = c + 1;
	}
	OB_LIT(o, "\"");
}

/* , "name": "value" (escaped) or , "name": null */
static void json_field(struct outbuf *o, const char *name, const char *val)
{
	OB_LIT(o, ", \"");
	ob_cstr(o, name);
	OB_LIT(o, "\": ");
	if (val)
		json_str(o, val);
	else
		OB_LIT(o, "null");
}

/* The verdict line's pieces that repeat from record to record, escaped
 * once: the file's name (the same for a whole file), and the deciding
 * rule's text, a function of the verdict's stage, reason, rules, interface
 * and detail (constants of the policy and string literals, the same for
 * the whole run), in a small direct-mapped cache. */
enum { MEMO_TEXT = 768, RULE_MEMO = 64 };
struct text_memo {
	char raw[256];                  /* the file's name ("" with n 0: none) */
	size_t n;                       /* bytes of text; 0: not cached */
	char text[MEMO_TEXT];           /* , "file": "..." */
};
struct rule_key {
	const void *nacl, *nacl_rule, *sg_rule, *stage_iface;
	const char *detail;
	int stage, reason;
};
struct rule_memo {
	struct rule_key k;
	size_t n;                       /* 0: free */
	char text[MEMO_TEXT];           /* , "rule": "..." or , "rule": null */
};

/* Disagreements between AWS's logged action and vpcfw's verdict, by
 * interface, protocol and port: a fixed table (no allocation per record). */
enum { FID_SLOTS = 4096 };
struct fid_row {
	char iface[32];
	int proto, port;
	int aws;                        /* 1 ACCEPT, 0 REJECT */
	uint64_t n;
};

static inline uintptr_t item_of(const struct flr_record *r)
{
	return (uintptr_t)r / sizeof(struct item);
}

/* The slot of a record: records of one chunk are items of one array, so the
 * FLR_AHEAD + 1 records in flight have different slots. */
_Static_assert((int)FLR_AHEAD_SLOTS > (int)FLR_AHEAD &&
	       (FLR_AHEAD_SLOTS & (FLR_AHEAD_SLOTS - 1)) == 0, "a slot for every record in flight");

void flr_lookahead_note(struct flr_lookahead *la, struct lane *l, const struct policy *pol,
			const struct flr_record *r)
{
	uintptr_t it = item_of(r);
	struct flr_ahead_slot *ah = &la->slot[it % FLR_AHEAD_SLOTS];

	ah->r = r;
	ah->item = it;
	ah->parsed = flr_to_packet(r, &ah->p);
	if (ah->parsed) {
		pipeline_locate(pol, &ah->p, NULL, &ah->loc);
		pipeline_prefetch_located(&l->pl, &ah->loc, false);
	}
	/* the record FLR_AHEAD / 2 before: its buckets are loaded by now */
	const struct flr_ahead_slot *mid = &la->slot[(it - FLR_AHEAD / 2) % FLR_AHEAD_SLOTS];
	if (mid->r && mid->item == it - FLR_AHEAD / 2 && mid->parsed)
		pipeline_prefetch_located(&l->pl, &mid->loc, true);
}

const struct verdict *flr_lookahead_decide(struct flr_lookahead *la, struct lane *l,
					   const struct policy *pol, const struct flr_record *r,
					   uint64_t *clock, const struct packet **p, struct packet *own)
{
	struct flr_ahead_slot *ah = &la->slot[item_of(r) % FLR_AHEAD_SLOTS];

	if (ah->r == r) {
		ah->r = NULL;
		*p = &ah->p;
		return decide(l, pol, r, clock, &ah->p, ah->parsed, &ah->loc);
	}
	*p = own;
	return flr_decide(l, pol, r, clock, own);
}

struct replay_state {
	const struct policy *pol;
	struct lane ln;
	uint64_t clock;
	FILE *out;
	uint64_t by_reason[2][REASON_COUNT];
	uint64_t agree, disagree, no_action, not_modelled, fid_other;
	struct fid_row *fid;
	size_t fid_used;
	struct outbuf ob;               /* for out */
	struct text_memo file_memo;
	struct rule_memo rule_memo[RULE_MEMO];
	struct flr_lookahead ahead;     /* the records ahead */
};

static void fid_count(struct replay_state *s, const struct flr_record *r)
{
	const char *id = r->interface_id ? r->interface_id : "-";
	int port = r->dport;
	uint64_t h = 1469598103934665603ULL;

	for (const char *c = id; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ULL;
	h = (h ^ (uint64_t)(r->proto + 1)) * 1099511628211ULL;
	h = (h ^ (uint64_t)(port + 1)) * 1099511628211ULL;
	h = (h ^ (uint64_t)r->action) * 1099511628211ULL;
	for (size_t k = 0; k < FID_SLOTS; k++) {
		struct fid_row *row = &s->fid[(h + k) % FID_SLOTS];
		if (row->n == 0) {
			if (s->fid_used * 4 >= FID_SLOTS * 3)
				break;
			snprintf(row->iface, sizeof(row->iface), "%s", id);
			row->proto = r->proto;
			row->port = port;
			row->aws = r->action;
			row->n = 1;
			s->fid_used++;
			return;
		}
		if (row->proto == r->proto && row->port == port && row->aws == r->action &&
		    strncmp(row->iface, id, sizeof(row->iface) - 1) == 0) {
			row->n++;
			return;
		}
	}
	s->fid_other++;
}

/* What json_field(name, val) writes, into buf (false: not in cap bytes).
 * The value is short enough (a file name under 256 bytes, a rule's text
 * under 512) for its escaped text to stay in the line buffer, which is
 * never flushed to its (absent) stream here. */
static bool field_text(const char *name, const char *val, char *buf, size_t cap, size_t *n)
{
	struct outbuf o;

	o.f = NULL;
	o.n = 0;
	json_field(&o, name, val);
	if (o.n > cap)
		return false;
	memcpy(buf, o.b, o.n);
	*n = o.n;
	return true;
}

static void put_file(struct outbuf *o, struct text_memo *m, const char *file)
{
	if (m->n && strcmp(m->raw, file) == 0) {
		ob_put(o, m->text, m->n);
		return;
	}
	m->n = 0;
	size_t len = strlen(file);
	if (len < sizeof(m->raw) && field_text("file", file, m->text, sizeof(m->text), &m->n)) {
		memcpy(m->raw, file, len + 1);
		ob_put(o, m->text, m->n);
		return;
	}
	m->n = 0;
	json_field(o, "file", file);
}

static void put_rule(struct outbuf *o, struct rule_memo *memo, const struct verdict *v)
{
	struct rule_key k;
	memset(&k, 0, sizeof(k)); /* padding too: keys compared whole */
	k.nacl = v->nacl;
	k.nacl_rule = v->nacl_rule;
	k.sg_rule = v->sg_rule;
	k.stage_iface = v->stage_iface;
	k.detail = v->detail;
	k.stage = (int)v->stage;
	k.reason = (int)v->reason;
	uint64_t h = (uint64_t)(uintptr_t)k.nacl_rule * 0x9E3779B97F4A7C15ULL ^
		     (uint64_t)(uintptr_t)k.sg_rule * 0xC2B2AE3D27D4EB4FULL ^
		     (uint64_t)(uintptr_t)k.stage_iface * 0x165667B19E3779F9ULL ^
		     (uint64_t)(uintptr_t)k.detail ^ (uint64_t)(k.stage * 131 + k.reason);
	h ^= h >> 31; /* pointers' low bits are zeros: the slot from high bits */
	h *= 0x9E3779B97F4A7C15ULL;
	struct rule_memo *m = &memo[(h >> 40) % RULE_MEMO];
	if (m->n && memcmp(&m->k, &k, sizeof(k)) == 0) {
		ob_put(o, m->text, m->n);
		return;
	}
	char rule[512];
	verdict_rule_format(v, rule, sizeof(rule));
	m->n = 0;
	if (field_text("rule", rule[0] ? rule : NULL, m->text, sizeof(m->text), &m->n)) {
		m->k = k;
		ob_put(o, m->text, m->n);
		return;
	}
	m->n = 0;
	json_field(o, "rule", rule[0] ? rule : NULL);
}

static void write_record(struct replay_state *s, const struct flr_record *r,
			 const struct flr_pos *pos, const struct packet *p, const struct verdict *v,
			 bool judged)
{
	struct outbuf *o = &s->ob;

	OB_LIT(o, "{\"record\": ");
	ob_u64(o, pos->index);
	put_file(o, &s->file_memo, pos->file);
	OB_LIT(o, ", \"line\": ");
	ob_u64(o, pos->line);
	OB_LIT(o, ", \"verdict\": \"");
	ob_cstr(o, v->accept ? "ACCEPT" : "REJECT");
	OB_LIT(o, "\", \"stage\": \"");
	ob_cstr(o, stage_name(v->stage));
	OB_LIT(o, "\", \"reason\": \"");
	ob_cstr(o, reason_name(v->reason));
	OB_LIT(o, "\"");
	put_rule(o, s->rule_memo, v);
	OB_LIT(o, ", \"src\": \"");
	ob_addr(o, &p->src, p->family);
	OB_LIT(o, "\", \"dst\": \"");
	ob_addr(o, &p->dst, p->family);
	OB_LIT(o, "\", \"proto\": ");
	ob_u64(o, p->proto);
	OB_LIT(o, ", \"sport\": ");
	ob_u64(o, p->sport);
	OB_LIT(o, ", \"dport\": ");
	ob_u64(o, p->dport);
	if (v->src_iface)
		json_field(o, "src_interface", v->src_iface->id);
	if (v->dst_iface)
		json_field(o, "dst_interface", v->dst_iface->id);
	if (v->detail)
		json_field(o, "detail", v->detail);
	json_field(o, "interface_id", r->interface_id);
	/* json_field's text for the constants */
	if (r->direction < 0)
		OB_LIT(o, ", \"flow_direction\": null");
	else if (r->direction)
		OB_LIT(o, ", \"flow_direction\": \"egress\"");
	else
		OB_LIT(o, ", \"flow_direction\": \"ingress\"");
	OB_LIT(o, ", \"packets\": ");
	ob_u64(o, r->packets);
	OB_LIT(o, ", \"bytes\": ");
	ob_u64(o, r->bytes);
	OB_LIT(o, ", \"start\": ");
	ob_u64(o, r->start);
	OB_LIT(o, ", \"end\": ");
	ob_u64(o, r->end);
	if (r->action < 0)
		OB_LIT(o, ", \"action\": null");
	else if (r->action)
		OB_LIT(o, ", \"action\": \"ACCEPT\"");
	else
		OB_LIT(o, ", \"action\": \"REJECT\"");
	if (!judged)
		OB_LIT(o, ", \"agrees\": null}\n");
	else if ((r->action == 1) == v->accept)
		OB_LIT(o, ", \"agrees\": true}\n");
	else
		OB_LIT(o, ", \"agrees\": false}\n");
}

static void replay_ahead(const struct flr_record *r, void *arg)
{
	struct replay_state *s = arg;
	flr_lookahead_note(&s->ahead, &s->ln, s->pol, r);
}

static int replay_one(const struct flr_record *r, const struct flr_pos *pos, void *arg)
{
	struct replay_state *s = arg;
	struct packet own;
	const struct packet *p;
	struct verdict v = *flr_lookahead_decide(&s->ahead, &s->ln, s->pol, r, &s->clock, &p, &own);

	s->by_reason[v.accept][v.reason < REASON_COUNT ? v.reason : 0]++;
	bool judged = r->action >= 0 && v.reason != REASON_NOT_MODELLED;
	if (r->action < 0) {
		s->no_action++;
	} else if (v.reason == REASON_NOT_MODELLED) {
		s->not_modelled++; /* neither end is in the configuration */
	} else if ((r->action == 1) == v.accept) {
		s->agree++;
	} else {
		s->disagree++;
		fid_count(s, r);
	}
	if (s->out)
		write_record(s, r, pos, p, &v, judged);
	return 0;
}

static int fid_cmp(const void *a, const void *b)
{
	const struct fid_row *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	int c = strcmp(x->iface, y->iface);
	if (c)
		return c;
	return x->port - y->port;
}

static void write_summary(FILE *out, const struct replay_state *s, const struct flr_stats *st)
{
	if (!out)
		return;
	fprintf(out, "replay-flow-logs: %" PRIu64 " files, %" PRIu64 " records: %" PRIu64
		" ACCEPT, %" PRIu64 " REJECT; %" PRIu64 " NODATA, %" PRIu64 " SKIPDATA skipped; %"
		PRIu64 " malformed lines, %" PRIu64 " file errors\n", st->files, st->records,
		counter_get(&s->ln.pl.counters.accepted), counter_get(&s->ln.pl.counters.rejected), st->nodata, st->skipdata,
		st->malformed, st->file_errors);
	for (int a = 1; a >= 0; a--)
		for (int r = 0; r < REASON_COUNT; r++)
			if (s->by_reason[a][r])
				fprintf(out, "  %-7s %-40s %10" PRIu64 "\n", a ? "ACCEPT" : "REJECT",
					reason_name((enum reason)r), s->by_reason[a][r]);
	uint64_t logged = s->agree + s->disagree;
	fprintf(out, "fidelity: %" PRIu64 " of %" PRIu64 " records with a logged action agree",
		s->agree, logged);
	if (logged)
		fprintf(out, " (%.2f%%)", 100.0 * (double)s->agree / (double)logged);
	fprintf(out, "; %" PRIu64 " without an action, %" PRIu64 " not modelled (neither end "
		"in the configuration)\n", s->no_action, s->not_modelled);
	if (!s->disagree)
		return;
	fputs("  disagreements by interface and port (a flow-log record aggregates a flow's\n"
	      "  packets, so a record of both directions is decided as its first packet only):\n",
	      out);
	fprintf(out, "  %-24s %-6s %-6s %-10s %10s\n", "interface", "proto", "port", "aws",
		"records");
	for (size_t i = 0; i < FID_SLOTS; i++) {
		const struct fid_row *row = &s->fid[i];
		if (!row->n)
			continue;
		char proto[8], port[8];
		snprintf(proto, sizeof(proto), "%d", row->proto);
		snprintf(port, sizeof(port), "%d", row->port);
		fprintf(out, "  %-24s %-6s %-6s %-10s %10" PRIu64 "\n", row->iface,
			row->proto < 0 ? "-" : proto, row->port < 0 ? "-" : port,
			row->aws ? "ACCEPT" : "REJECT", row->n);
	}
	if (s->fid_other)
		fprintf(out, "  %-24s %-6s %-6s %-10s %10" PRIu64 "\n", "(others)", "", "", "",
			s->fid_other);
}

static FILE *open_out(const char *path)
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
	bool special = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		       (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode));
	int fd = special ? openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
			 : safe_open_trunc(dirfd, name, SAFE_FILE_MODE);
	int e = errno;
	close(dirfd);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f && fd >= 0)
		close(fd);
	if (f)
		setvbuf(f, NULL, _IOFBF, 1 << 18);
	errno = e;
	return f;
}

int flr_replay_run(const struct policy *pol, const struct flr_replay_options *opt)
{
	struct replay_state *s = calloc(1, sizeof(*s));
	int rc = 0;

	if (!s || !(s->fid = calloc(FID_SLOTS, sizeof(*s->fid)))) {
		free(s);
		log_warnx("out of memory");
		return 1;
	}
	struct conntrack *ct = ct_create(pol->conntrack_max ? pol->conntrack_max : 1);
	if (!ct) {
		log_warnx("cannot allocate the connection tracking table");
		free(s->fid);
		free(s);
		return 1;
	}
	s->pol = pol;
	lane_init(&s->ln, ct, 0);
	s->out = open_out(opt->verdicts_path);
	s->ob.f = s->out;
	if (opt->verdicts_path && !s->out) {
		log_warn("%s", opt->verdicts_path);
		ct_destroy(ct);
		free(s->fid);
		free(s);
		return 1;
	}

	struct flr_stats st;
	if (!flr_read_paths_threads(opt->paths, opt->n_paths, opt->threads, stderr, replay_one,
				    replay_ahead, s, &st))
		rc = 1;
	if (s->out) {
		ob_flush(&s->ob);
		bool ok = !ferror(s->out);
		ok = (s->out == stdout ? fflush(s->out) : fclose(s->out)) == 0 && ok;
		if (!ok) {
			log_warnx("%s: writing verdicts failed",
				strcmp(opt->verdicts_path, "-") == 0 ? "stdout" : opt->verdicts_path);
			rc = 1;
		}
	}
	qsort(s->fid, FID_SLOTS, sizeof(*s->fid), fid_cmp);
	write_summary(opt->summary, s, &st);
	if (rc && opt->summary)
		fputs("replay-flow-logs: input had errors (reported above): exit status 1\n",
		      opt->summary);
	ct_destroy(ct);
	free(s->fid);
	free(s);
	return rc;
}
