/* The state file: the flow table across a restart (include/vpcfw/state.h). */
#include "vpcfw/state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "vpcfw/le.h"
#include "vpcfw/proto.h"
#include "vpcfw/safefile.h"

#define NS_PER_S 1000000000ULL

/* ------------------------------------------------------------ CRC-32 */

uint32_t state_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
	return (uint32_t)crc32_z(crc, p, n);   /* zlib's: IEEE 802.3 */
}

/* ------------------------------------------------------------ collecting */

int state_part_add(const struct ct_saved *s, void *arg)
{
	struct state_part *p = arg;

	if (s->iface >= p->n_ref_of || p->ref_of[s->iface] == UINT32_MAX) {
		p->unlisted++;  /* an interface removed by a reload: gone at restart too */
		return 0;
	}
	if (s->deadline_ns <= p->mono_ns)
		return 0;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 1024;
		struct state_flow *f = realloc(p->flows, cap * sizeof(*f));
		if (!f) {
			p->oom = true;
			return 1;
		}
		p->flows = f;
		p->cap = cap;
	}
	struct state_flow *f = &p->flows[p->n++];
	f->iface_ref = p->ref_of[s->iface];
	f->queue = p->queue;
	f->s = *s;
	f->s.iface = 0;
	/* the remaining lifetime, as a wall-clock deadline */
	uint64_t left = s->deadline_ns - p->mono_ns;
	f->s.deadline_ns = p->wall_ns > UINT64_MAX - left ? UINT64_MAX : p->wall_ns + left;
	return 0;
}

static bool grow(void **a, size_t *cap, size_t n, size_t size, size_t first)
{
	if (n < *cap)
		return true;
	size_t c = *cap ? *cap * 2 : first;
	void *b = c > SIZE_MAX / size ? NULL : realloc(*a, c * size);
	if (!b)
		return false;
	*a = b;
	*cap = c;
	return true;
}

static uint32_t ref_of(const struct state_part *p, uint32_t iface)
{
	return iface < p->n_ref_of ? p->ref_of[iface] : UINT32_MAX;
}

int state_part_add_flowlog(void *arg, const struct flowlog_saved_window *win,
			   const struct flowlog_saved_entry *e)
{
	struct state_part *p = arg;

	if (!e) {
		if (!grow((void **)&p->flwins, &p->cap_flwins, p->n_flwins, sizeof(*p->flwins), 8)) {
			p->oom = true;
			return 1;
		}
		struct state_flwin *w = &p->flwins[p->n_flwins++];
		memset(w, 0, sizeof(*w));
		w->queue = p->queue;
		w->w = *win;
		w->w.n_lost = 0;
		w->first = p->n_flents;
		/* interfaces of the table only (one removed by a reload is gone
		 * at restart too) */
		for (uint32_t k = 0; k < win->n_lost && k < FLOWLOG_LOST_SLOTS; k++) {
			uint32_t r = ref_of(p, win->lost[k].iface);
			if (r == UINT32_MAX || !win->lost[k].n)
				continue;
			w->w.lost[w->w.n_lost].iface = r;
			w->w.lost[w->w.n_lost++].n = win->lost[k].n;
		}
		return 0;
	}
	if (!p->n_flwins)
		return 0;
	uint32_t r = ref_of(p, e->iface);
	if (r == UINT32_MAX) {
		p->fl_unlisted++;
		return 0;
	}
	if (!grow((void **)&p->flents, &p->cap_flents, p->n_flents, sizeof(*p->flents), 1024)) {
		p->oom = true;
		return 1;
	}
	struct flowlog_saved_entry *x = &p->flents[p->n_flents++];
	*x = *e;
	x->iface = r;
	x->rule[FLOWLOG_RULE_LEN - 1] = '\0';
	p->flwins[p->n_flwins - 1].n++;
	return 0;
}

void state_part_reset(struct state_part *p)
{
	p->n = 0;
	p->oom = false;
	p->unlisted = 0;
	p->n_flwins = 0;
	p->n_flents = 0;
	p->fl_unlisted = 0;
}

void state_part_free(struct state_part *p)
{
	free(p->flows);
	p->flows = NULL;
	p->n = p->cap = 0;
	free(p->flwins);
	p->flwins = NULL;
	p->n_flwins = p->cap_flwins = 0;
	free(p->flents);
	p->flents = NULL;
	p->n_flents = p->cap_flents = 0;
}

/* ------------------------------------------------------------ encoding */

static void put_flow(uint8_t *r, const struct state_flow *f)
{
	const struct ct_saved *s = &f->s;

	memset(r, 0, STATE_FLOW_BYTES);
	le_put32(r, f->iface_ref);
	le_put16(r + 4, f->queue);
	r[6] = s->orig.proto;
	r[7] = s->tcp_state;
	r[8] = s->flags;
	le_put16(r + 12, s->orig.sport);
	le_put16(r + 14, s->orig.dport);
	le_put64(r + 16, s->orig.src.hi);
	le_put64(r + 24, s->orig.src.lo);
	le_put64(r + 32, s->orig.dst.hi);
	le_put64(r + 40, s->orig.dst.lo);
	le_put64(r + 48, s->deadline_ns);
	memcpy(r + 56, s->tcp, CT_SAVED_TCP_BYTES);
}

static size_t rule_len(const struct flowlog_saved_entry *e)
{
	return strnlen(e->rule, FLOWLOG_RULE_LEN - 1);
}

static uint8_t *put_flwin(uint8_t *r, const struct state_flwin *w,
			  const struct flowlog_saved_entry *ents)
{
	le_put16(r, w->queue);
	r[2] = w->w.cls;
	r[3] = (uint8_t)w->w.n_lost;
	le_put32(r + 4, (uint32_t)w->n);
	le_put64(r + 8, w->w.start);
	le_put64(r + 16, w->w.lost_other);
	r += STATE_FLWIN_BYTES;
	for (uint32_t k = 0; k < w->w.n_lost; k++, r += STATE_FLLOST_BYTES) {
		le_put32(r, w->w.lost[k].iface);
		le_put32(r + 4, w->w.lost[k].n);
	}
	for (size_t i = 0; i < w->n; i++) {
		const struct flowlog_saved_entry *e = &ents[w->first + i];
		size_t rl = rule_len(e);
		memset(r, 0, STATE_FLENT_BYTES);
		le_put32(r, e->iface);
		r[4] = e->proto;
		r[5] = e->family;
		r[6] = e->bits;
		r[7] = e->tcp_flags;
		le_put16(r + 8, e->sport);
		le_put16(r + 10, e->dport);
		r[12] = e->stage;
		r[13] = e->reason;
		r[14] = (uint8_t)rl;
		le_put64(r + 16, e->src.hi);
		le_put64(r + 24, e->src.lo);
		le_put64(r + 32, e->dst.hi);
		le_put64(r + 40, e->dst.lo);
		le_put64(r + 48, e->packets);
		le_put64(r + 56, e->bytes);
		le_put32(r + 64, e->first_s);
		le_put32(r + 68, e->last_s);
		memcpy(r + STATE_FLENT_BYTES, e->rule, rl);
		r += STATE_FLENT_BYTES + rl;
	}
	return r;
}

static size_t flwin_bytes(const struct state_flwin *w, const struct flowlog_saved_entry *ents)
{
	size_t b = STATE_FLWIN_BYTES + (size_t)w->w.n_lost * STATE_FLLOST_BYTES;
	for (size_t i = 0; i < w->n; i++)
		b += STATE_FLENT_BYTES + rule_len(&ents[w->first + i]);
	return b;
}

uint8_t *state_encode(uint64_t written_ns, const char *const *ifaces, uint32_t n_ifaces,
		      const struct state_part *parts, size_t n_parts, size_t *len)
{
	size_t body = 0, n_flows = 0, fl_bytes = 4, n_flwins = 0;

	if (n_ifaces > STATE_MAX_IFACES)
		return NULL;
	for (uint32_t i = 0; i < n_ifaces; i++) {
		size_t l = strlen(ifaces[i]);
		body += 2 + (l > STATE_IFACE_ID_MAX ? STATE_IFACE_ID_MAX : l);
	}
	for (size_t k = 0; k < n_parts; k++)
		n_flows += parts[k].n;
	for (size_t k = 0; k < n_parts; k++) {
		n_flwins += parts[k].n_flwins;
		for (size_t i = 0; i < parts[k].n_flwins; i++)
			fl_bytes += flwin_bytes(&parts[k].flwins[i], parts[k].flents);
	}
	if (n_flwins > UINT32_MAX)
		return NULL;
	if (n_flows > (SIZE_MAX / 2 - body - STATE_HEADER_BYTES) / STATE_FLOW_BYTES ||
	    fl_bytes > SIZE_MAX / 2)
		return NULL;
	body += n_flows * STATE_FLOW_BYTES + fl_bytes;
	uint8_t *buf = malloc(STATE_HEADER_BYTES + body);
	if (!buf)
		return NULL;
	uint8_t *p = buf + STATE_HEADER_BYTES;
	for (uint32_t i = 0; i < n_ifaces; i++) {
		size_t l = strlen(ifaces[i]);
		if (l > STATE_IFACE_ID_MAX)
			l = STATE_IFACE_ID_MAX;
		le_put16(p, (uint16_t)l);
		memcpy(p + 2, ifaces[i], l);
		p += 2 + l;
	}
	for (size_t k = 0; k < n_parts; k++)
		for (size_t i = 0; i < parts[k].n; i++, p += STATE_FLOW_BYTES)
			put_flow(p, &parts[k].flows[i]);
	le_put32(p, (uint32_t)n_flwins);
	p += 4;
	for (size_t k = 0; k < n_parts; k++)
		for (size_t i = 0; i < parts[k].n_flwins; i++)
			p = put_flwin(p, &parts[k].flwins[i], parts[k].flents);
	memset(buf, 0, STATE_HEADER_BYTES);
	memcpy(buf, STATE_MAGIC, 8);
	le_put32(buf + 8, STATE_VERSION);
	le_put32(buf + 12, STATE_HEADER_BYTES);
	le_put64(buf + 16, written_ns);
	le_put32(buf + 24, n_ifaces);
	le_put64(buf + 32, n_flows);
	le_put32(buf + 40, state_crc32(0, buf + STATE_HEADER_BYTES, body));
	le_put32(buf + 44, state_crc32(0, buf, 44));
	*len = STATE_HEADER_BYTES + body;
	return buf;
}

/* ------------------------------------------------------------ decoding */

void state_image_free(struct state_image *img)
{
	if (!img)
		return;
	for (uint32_t i = 0; img->ifaces && i < img->n_ifaces; i++)
		free(img->ifaces[i]);
	free(img->ifaces);
	free(img->flows);
	free(img->flwins);
	free(img->flents);
	memset(img, 0, sizeof(*img));
}

__attribute__((format(printf, 3, 4)))
static int refuse(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

bool state_flow_valid(const struct ct_saved *s)
{
	bool tcp = s->orig.proto == PROTO_TCP;

	if (s->flags & ~CT_SAVED_FLAGS)
		return false;
	if (tcp)
		return s->tcp_state != CT_TCP_NONE && s->tcp_state <= CT_TCP_CLOSE;
	if (s->tcp_state != CT_TCP_NONE || (s->flags & (CT_SAVED_FIN_REPLY | CT_SAVED_PICKUP)))
		return false;
	if (s->orig.proto != PROTO_UDP && (s->flags & CT_SAVED_UDP_STREAM))
		return false;
	return true;
}

static int cmp_flwin(const void *a, const void *b)
{
	const struct state_flwin *x = a, *y = b;
	uint32_t kx = (uint32_t)x->queue << 8 | x->w.cls, ky = (uint32_t)y->queue << 8 | y->w.cls;
	return kx < ky ? -1 : kx > ky;
}

/* Whether an address is what family says (IPv4: mapped, ::ffff:0:0/96). */
static bool fl_addr_ok(uint8_t family, const struct ip_addr *a)
{
	if (family == FAMILY_V4)
		return addr_family(a) == FAMILY_V4;
	return family == FAMILY_V6;
}

/* The version-2 flow-log section, from body + off to the end. */
static int decode_flowlog(const uint8_t *body, size_t body_len, size_t off, uint64_t written_ns,
			  struct state_image *out, char *err, size_t errlen)
{
	const uint64_t written_s = written_ns / NS_PER_S, skew_s = STATE_MAX_SKEW_S;
	size_t left = body_len - off;

	if (left < 4)
		return refuse(err, errlen, "truncated: no flow-log section");
	uint32_t n_win = le_get32(body + off);
	off += 4;
	left -= 4;
	if (n_win > left / STATE_FLWIN_BYTES)
		return refuse(err, errlen, "corrupt: %" PRIu32 " flow-log windows cannot fit in %zu bytes",
			      n_win, left);
	/* entries: at most what the bytes left can hold */
	size_t max_ents = (left - (size_t)n_win * STATE_FLWIN_BYTES) / STATE_FLENT_BYTES;
	out->flwins = calloc((size_t)n_win + 1, sizeof(*out->flwins));
	if (!out->flwins)
		return refuse(err, errlen, "out of memory for %" PRIu32 " flow-log windows", n_win);
	size_t cap = 0, n_ents = 0;
	for (uint32_t k = 0; k < n_win; k++) {
		if (body_len - off < STATE_FLWIN_BYTES)
			return refuse(err, errlen, "truncated in flow-log window %" PRIu32, k);
		const uint8_t *r = body + off;
		struct state_flwin *w = &out->flwins[k];
		w->queue = le_get16(r);
		w->w.cls = r[2];
		w->w.n_lost = r[3];
		uint32_t n = le_get32(r + 4);
		w->w.start = le_get64(r + 8);
		w->w.lost_other = le_get64(r + 16);
		w->first = n_ents;
		off += STATE_FLWIN_BYTES;
		uint32_t iv = flowlog_interval(w->w.cls);
		if (!iv)
			return refuse(err, errlen, "corrupt: flow-log window %" PRIu32 " has class %u "
				      "(0: 60 s, 1: 600 s)", k, w->w.cls);
		if (w->w.start % iv || w->w.start > written_s + skew_s)
			return refuse(err, errlen, "corrupt: flow-log window %" PRIu32 " starts at %" PRIu64
				      " (not a multiple of %" PRIu32 " s, or after the file was written)",
				      k, w->w.start, iv);
		if (w->w.n_lost > FLOWLOG_LOST_SLOTS)
			return refuse(err, errlen, "corrupt: flow-log window %" PRIu32 " has %" PRIu32
				      " lost slots (at most %d)", k, w->w.n_lost, FLOWLOG_LOST_SLOTS);
		if (n > max_ents - n_ents)
			return refuse(err, errlen, "corrupt: flow-log window %" PRIu32 "'s %" PRIu32
				      " entries cannot fit", k, n);
		if (body_len - off < (size_t)w->w.n_lost * STATE_FLLOST_BYTES)
			return refuse(err, errlen, "truncated in flow-log window %" PRIu32 "'s lost slots", k);
		for (uint32_t j = 0; j < w->w.n_lost; j++, off += STATE_FLLOST_BYTES) {
			w->w.lost[j].iface = le_get32(body + off);
			w->w.lost[j].n = le_get32(body + off + 4);
			bool dup = false;
			for (uint32_t i = 0; i < j; i++)
				dup |= w->w.lost[i].iface == w->w.lost[j].iface;
			if (w->w.lost[j].iface >= out->n_ifaces || !w->w.lost[j].n || dup)
				return refuse(err, errlen, "corrupt: flow-log window %" PRIu32 "'s lost slot %"
					      PRIu32 " (an interface outside the table, twice, or no "
					      "packet)", k, j);
		}
		if (n_ents + n > cap) {
			size_t c = cap ? cap : 64;
			while (c < n_ents + n)
				c *= 2;
			struct flowlog_saved_entry *e = realloc(out->flents, c * sizeof(*e));
			if (!e)
				return refuse(err, errlen, "out of memory for flow-log entries");
			out->flents = e;
			cap = c;
		}
		for (uint32_t i = 0; i < n; i++) {
			if (body_len - off < STATE_FLENT_BYTES)
				return refuse(err, errlen, "truncated in flow-log window %" PRIu32
					      "'s entry %" PRIu32, k, i);
			r = body + off;
			struct flowlog_saved_entry *e = &out->flents[n_ents + i];
			memset(e, 0, sizeof(*e));
			e->iface = le_get32(r);
			e->proto = r[4];
			e->family = r[5];
			e->bits = r[6];
			e->tcp_flags = r[7];
			e->sport = le_get16(r + 8);
			e->dport = le_get16(r + 10);
			e->stage = r[12];
			e->reason = r[13];
			uint8_t rl = r[14];
			e->src.hi = le_get64(r + 16);
			e->src.lo = le_get64(r + 24);
			e->dst.hi = le_get64(r + 32);
			e->dst.lo = le_get64(r + 40);
			e->packets = le_get64(r + 48);
			e->bytes = le_get64(r + 56);
			e->first_s = le_get32(r + 64);
			e->last_s = le_get32(r + 68);
			off += STATE_FLENT_BYTES;
			bool l4 = e->proto == PROTO_TCP || e->proto == PROTO_UDP;
			const char *why = NULL;
			if (e->iface >= out->n_ifaces)
				why = "names no interface of the table";
			else if (r[15] || rl >= FLOWLOG_RULE_LEN || (rl && !(e->bits & FLS_DECISION)))
				why = "has a bad rule length or reserved byte";
			else if ((e->family != FAMILY_V4 && e->family != FAMILY_V6) ||
				 !fl_addr_ok(e->family, &e->src) || !fl_addr_ok(e->family, &e->dst))
				why = "has an impossible address family";
			else if (e->bits & ~FLS_BITS || e->stage >= STAGE_COUNT || e->reason >= REASON_COUNT)
				why = "has unknown bits, stage or reason";
			else if ((!l4 && (e->sport || e->dport)) ||
				 (e->proto != PROTO_TCP && e->tcp_flags) ||
				 (e->tcp_flags & ~(TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK)))
				why = "has ports or TCP flags its protocol cannot have";
			else if (!e->packets || e->bytes / STATE_FL_MAX_BYTES_PER_PACKET > e->packets ||
				 (e->bytes / STATE_FL_MAX_BYTES_PER_PACKET == e->packets &&
				  e->bytes % STATE_FL_MAX_BYTES_PER_PACKET))
				why = "has no packet, or more bytes than its packets can carry";
			else if (e->first_s > e->last_s || e->last_s > written_s + skew_s ||
				 (uint64_t)e->first_s + skew_s < w->w.start)
				why = "has a first or last time outside its window (or from the future)";
			else if (body_len - off < rl)
				return refuse(err, errlen, "truncated in flow-log window %" PRIu32
					      "'s entry %" PRIu32 "'s rule", k, i);
			for (uint8_t j = 0; !why && j < rl; j++)
				if (body[off + j] < 0x20 || body[off + j] > 0x7e)
					why = "has a rule that is not printable";
			if (why)
				return refuse(err, errlen, "corrupt: flow-log window %" PRIu32 "'s entry %"
					      PRIu32 " %s", k, i, why);
			memcpy(e->rule, body + off, rl);
			off += rl;
		}
		w->n = n;
		n_ents += n;
		out->n_flwins = k + 1;
	}
	out->n_flents = n_ents;
	if (off != body_len)
		return refuse(err, errlen, "corrupt: %zu bytes after the flow-log windows",
			      body_len - off);
	/* one window per queue and class: a worker has one open at a time */
	struct state_flwin *sorted = malloc(((size_t)n_win + 1) * sizeof(*sorted));
	if (!sorted)
		return refuse(err, errlen, "out of memory");
	memcpy(sorted, out->flwins, (size_t)n_win * sizeof(*sorted));
	qsort(sorted, n_win, sizeof(*sorted), cmp_flwin);
	for (uint32_t k = 1; k < n_win; k++)
		if (cmp_flwin(&sorted[k - 1], &sorted[k]) == 0) {
			uint16_t q = sorted[k].queue;
			unsigned c = sorted[k].w.cls;
			free(sorted);
			return refuse(err, errlen, "corrupt: two flow-log windows of queue %u, class %u",
				      q, c);
		}
	free(sorted);
	return 0;
}

int state_decode(const uint8_t *buf, size_t len, uint64_t now_wall_ns, struct state_image *out,
		 char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (len < STATE_HEADER_BYTES)
		return refuse(err, errlen, "truncated: %zu bytes, shorter than the %d-byte header",
			      len, STATE_HEADER_BYTES);
	if (memcmp(buf, STATE_MAGIC, 8) != 0)
		return refuse(err, errlen, "not a vpcfwd state file (bad magic)");
	uint32_t version = le_get32(buf + 8);
	if (version != STATE_VERSION && version != STATE_VERSION_NO_FLOWLOG)
		return refuse(err, errlen, "version %" PRIu32 ", this vpcfwd reads versions %d and %d",
			      version, STATE_VERSION_NO_FLOWLOG, STATE_VERSION);
	if (le_get32(buf + 44) != state_crc32(0, buf, 44))
		return refuse(err, errlen, "corrupt header (checksum mismatch)");
	if (le_get32(buf + 12) != STATE_HEADER_BYTES || le_get32(buf + 28) != 0)
		return refuse(err, errlen, "corrupt header (size or reserved field)");
	uint64_t written = le_get64(buf + 16);
	uint32_t n_ifaces = le_get32(buf + 24);
	uint64_t n_flows = le_get64(buf + 32);
	const uint8_t *body = buf + STATE_HEADER_BYTES;
	size_t body_len = len - STATE_HEADER_BYTES;
	if (le_get32(buf + 40) != state_crc32(0, body, body_len))
		return refuse(err, errlen, "corrupt or truncated: the body's checksum does not match "
			      "(%zu bytes)", len);
	const uint64_t skew = (uint64_t)STATE_MAX_SKEW_S * NS_PER_S;
	if (written > now_wall_ns && written - now_wall_ns > skew)
		return refuse(err, errlen, "from the future: written %" PRIu64 " s ahead of the "
			      "clock (at most %d s allowed)", (uint64_t)((written - now_wall_ns) / NS_PER_S),
			      STATE_MAX_SKEW_S);
	if (n_ifaces > STATE_MAX_IFACES || n_ifaces > body_len / 3)
		return refuse(err, errlen, "corrupt: %" PRIu32 " interfaces cannot fit", n_ifaces);
	out->ifaces = calloc((size_t)n_ifaces + 1, sizeof(*out->ifaces));
	if (!out->ifaces)
		return refuse(err, errlen, "out of memory");
	out->n_ifaces = n_ifaces;
	size_t off = 0;
	for (uint32_t i = 0; i < n_ifaces; i++) {
		if (body_len - off < 2)
			goto truncated;
		uint16_t l = le_get16(body + off);
		off += 2;
		if (l == 0 || l > STATE_IFACE_ID_MAX) {
			state_image_free(out);
			return refuse(err, errlen, "corrupt: interface %" PRIu32 "'s id is %u bytes",
				      i, l);
		}
		if (body_len - off < l)
			goto truncated;
		for (uint16_t k = 0; k < l; k++) {
			if (body[off + k] < 0x21 || body[off + k] > 0x7e) {
				state_image_free(out);
				return refuse(err, errlen, "corrupt: interface %" PRIu32 "'s id is not "
					      "printable", i);
			}
		}
		out->ifaces[i] = strndup((const char *)body + off, l);
		if (!out->ifaces[i]) {
			state_image_free(out);
			return refuse(err, errlen, "out of memory");
		}
		off += l;
	}
	bool fl = version >= STATE_VERSION;
	if ((body_len - off) / STATE_FLOW_BYTES < n_flows ||
	    (!fl && ((body_len - off) / STATE_FLOW_BYTES != n_flows ||
		     (body_len - off) % STATE_FLOW_BYTES != 0))) {
		state_image_free(out);
		return refuse(err, errlen, "corrupt or truncated: %zu bytes for %" PRIu64 " flows of %d",
			      body_len - off, n_flows, STATE_FLOW_BYTES);
	}
	out->flows = calloc((size_t)n_flows + 1, sizeof(*out->flows));
	if (!out->flows) {
		state_image_free(out);
		return refuse(err, errlen, "out of memory for %" PRIu64 " flows", n_flows);
	}
	/* no flow lives longer than the longest timeout past the writing */
	const uint64_t limit = (uint64_t)STATE_MAX_LIFETIME_S * NS_PER_S + skew;
	for (uint64_t i = 0; i < n_flows; i++, off += STATE_FLOW_BYTES) {
		const uint8_t *r = body + off;
		struct state_flow *f = &out->flows[i];
		f->iface_ref = le_get32(r);
		f->queue = le_get16(r + 4);
		f->s.orig.proto = r[6];
		f->s.tcp_state = r[7];
		f->s.flags = r[8];
		f->s.orig.sport = le_get16(r + 12);
		f->s.orig.dport = le_get16(r + 14);
		f->s.orig.src.hi = le_get64(r + 16);
		f->s.orig.src.lo = le_get64(r + 24);
		f->s.orig.dst.hi = le_get64(r + 32);
		f->s.orig.dst.lo = le_get64(r + 40);
		f->s.deadline_ns = le_get64(r + 48);
		memcpy(f->s.tcp, r + 56, CT_SAVED_TCP_BYTES);
		const char *why = NULL;
		if (f->iface_ref >= n_ifaces)
			why = "names no interface of the table";
		else if (r[9] || r[10] || r[11] || !state_flow_valid(&f->s))
			why = "has an impossible protocol, state or flags";
		else if (f->s.deadline_ns <= written)
			why = "had expired when the file was written";
		else if (f->s.deadline_ns - written > limit)
			why = "has a deadline beyond the longest timeout (from the future)";
		if (why) {
			state_image_free(out);
			return refuse(err, errlen, "corrupt: flow %" PRIu64 " %s", i, why);
		}
	}
	out->n_flows = (size_t)n_flows;
	out->written_ns = written;
	out->version = version;
	if (fl && decode_flowlog(body, body_len, off, written, out, err, errlen) < 0) {
		state_image_free(out);
		return -1;
	}
	return 0;
truncated:
	state_image_free(out);
	return refuse(err, errlen, "truncated in the interface table");
}

/* ------------------------------------------------------------ restoring */

void state_restore(const struct state_image *img, uint64_t now_wall_ns, uint64_t now_mono_ns,
		   bool (*iface_of)(void *arg, const char *id, uint32_t *ct_id),
		   struct conntrack *(*table_of)(void *arg, uint16_t queue), void *arg,
		   struct state_restore_stats *st)
{
	uint32_t *ct_ids = calloc((size_t)img->n_ifaces + 1, sizeof(*ct_ids));
	bool *known = calloc((size_t)img->n_ifaces + 1, sizeof(*known));

	memset(st, 0, sizeof(*st));
	if (!ct_ids || !known) {
		free(ct_ids);
		free(known);
		st->table_full = img->n_flows;
		return;
	}
	for (uint32_t i = 0; i < img->n_ifaces; i++)
		known[i] = iface_of(arg, img->ifaces[i], &ct_ids[i]);
	for (size_t i = 0; i < img->n_flows; i++) {
		const struct state_flow *f = &img->flows[i];
		if (f->s.deadline_ns <= now_wall_ns) {
			st->expired++;
			continue;
		}
		if (f->iface_ref >= img->n_ifaces || !known[f->iface_ref]) {
			st->unknown_iface++;
			continue;
		}
		struct conntrack *ct = table_of(arg, f->queue);
		if (!ct) {
			st->no_queue++;
			continue;
		}
		struct ct_saved s = f->s;
		uint64_t left = s.deadline_ns - now_wall_ns;
		s.iface = ct_ids[f->iface_ref];
		s.deadline_ns = now_mono_ns > UINT64_MAX - left ? UINT64_MAX : now_mono_ns + left;
		switch (ct_restore(ct, &s, now_mono_ns)) {
		case 0: st->restored++; break;
		case -2: st->duplicate++; break;
		default: st->table_full++; break;
		}
	}
	free(ct_ids);
	free(known);
}

void state_restore_flowlog(const struct state_image *img, uint64_t now_wall_ns, bool flow_logs_on,
			   bool (*iface_of)(void *arg, const char *id, uint32_t *ct_id),
			   struct flowlog_worker *(*worker_of)(void *arg, uint16_t queue), void *arg,
			   struct state_fl_restore_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!img->n_flwins)
		return;
	if (!flow_logs_on) {
		st->off = img->n_flents;
		return;
	}
	uint32_t *ct_ids = calloc((size_t)img->n_ifaces + 1, sizeof(*ct_ids));
	bool *known = calloc((size_t)img->n_ifaces + 1, sizeof(*known));
	size_t most = 0;
	for (size_t k = 0; k < img->n_flwins; k++)
		if (img->flwins[k].n > most)
			most = img->flwins[k].n;
	struct flowlog_saved_entry *tmp = malloc((most + 1) * sizeof(*tmp));
	if (!ct_ids || !known || !tmp) {
		st->fl.table_full = img->n_flents;
		goto out;
	}
	for (uint32_t i = 0; i < img->n_ifaces; i++)
		known[i] = iface_of(arg, img->ifaces[i], &ct_ids[i]);
	for (size_t k = 0; k < img->n_flwins; k++) {
		const struct state_flwin *w = &img->flwins[k];
		struct flowlog_worker *fw = worker_of(arg, w->queue);
		if (!fw) {
			st->no_queue += w->n;
			continue;
		}
		struct flowlog_saved_window win = w->w;
		win.n_lost = 0;
		for (uint32_t j = 0; j < w->w.n_lost && j < FLOWLOG_LOST_SLOTS; j++) {
			uint32_t r = w->w.lost[j].iface;
			if (r < img->n_ifaces && known[r]) {
				win.lost[win.n_lost].iface = ct_ids[r];
				win.lost[win.n_lost++].n = w->w.lost[j].n;
			}
		}
		size_t n = 0;
		for (size_t i = 0; i < w->n; i++) {
			const struct flowlog_saved_entry *e = &img->flents[w->first + i];
			if (e->iface >= img->n_ifaces || !known[e->iface]) {
				st->unknown_iface++;
				continue;
			}
			tmp[n] = *e;
			tmp[n++].iface = ct_ids[e->iface];
		}
		flowlog_restore(fw, &win, tmp, n, now_wall_ns / NS_PER_S, &st->fl);
	}
out:
	free(tmp);
	free(ct_ids);
	free(known);
}

/* ------------------------------------------------------------ files */

int state_read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		return refuse(err, errlen, "cannot open: %s", strerror(errno));
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return refuse(err, errlen, "not a regular file");
	}
	if ((uint64_t)st.st_size > STATE_MAX_FILE_BYTES) {
		close(fd);
		return refuse(err, errlen, "too large (%lld bytes)", (long long)st.st_size);
	}
	size_t size = (size_t)st.st_size, got = 0;
	uint8_t *b = malloc(size ? size : 1);
	if (!b) {
		close(fd);
		return refuse(err, errlen, "out of memory for %zu bytes", size);
	}
	while (got < size) {
		ssize_t n = read(fd, b + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : 0;
			free(b);
			close(fd);
			return refuse(err, errlen, "cannot read: %s", e ? strerror(e) : "file shrank");
		}
		got += (size_t)n;
	}
	close(fd);
	*buf = b;
	*len = size;
	return 0;
}

int state_write_file(const char *path, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	const char *name;
	char tmp[NAME_MAX + 8];
	int dir = safe_parent_open(path, &name);

	if (dir < 0)
		return refuse(err, errlen, "cannot open its directory: %s", strerror(errno));
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= sizeof(tmp)) {
		close(dir);
		return refuse(err, errlen, "name too long");
	}
	/* left by a crash while writing: never written through, only removed */
	if (unlinkat(dir, tmp, 0) < 0 && errno != ENOENT) {
		int e = errno;
		close(dir);
		return refuse(err, errlen, "cannot remove %s.tmp: %s", path, strerror(e));
	}
	int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		close(dir);
		return refuse(err, errlen, "cannot create %s.tmp: %s", path, strerror(e));
	}
	bool ok = safe_write_all(fd, buf, len) && fsync(fd) == 0;
	int e = errno;
	if (close(fd) < 0 && ok) {
		ok = false;
		e = errno;
	}
	if (!ok || safe_rename(dir, tmp, name, true) < 0) {
		if (ok)
			e = errno;
		unlinkat(dir, tmp, 0);
		close(dir);
		return refuse(err, errlen, "cannot write: %s", strerror(e));
	}
	fsync(dir);     /* the rename itself, durable */
	close(dir);
	return 0;
}
