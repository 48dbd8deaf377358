/* The sync wire format (include/vpcfw/sync.h): building, authenticating,
 * parsing, the replay window and the key file. */
#include "vpcfw/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/memops.h>

#include "vpcfw/le.h"
#include "vpcfw/state.h"

const char *sync_drop_name(enum sync_drop r)
{
	switch (r) {
	case SYNC_OK: return "ok";
	case SYNC_DROP_SHORT: return "length";
	case SYNC_DROP_AUTH: return "auth";
	case SYNC_DROP_MAGIC: return "magic";
	case SYNC_DROP_VERSION: return "version";
	case SYNC_DROP_MALFORMED: return "malformed";
	case SYNC_DROP_SELF: return "self";
	case SYNC_DROP_REPLAY: return "replay";
	case SYNC_DROP_OLD_EPOCH: return "old_epoch";
	case SYNC_DROP_STALE: return "stale";
	case SYNC_DROP_NREASONS: break;
	}
	return "?";
}

/* ------------------------------------------------------------ the key */

void sync_key_init(struct sync_key *k, const uint8_t *key, size_t len)
{
	hmac_sha256_set_key(&k->ctx, len, key);
}

static void mac(const struct sync_key *k, const uint8_t *buf, size_t len, uint8_t *out)
{
	struct hmac_sha256_ctx c = k->ctx;      /* the prepared key, not rekeyed per message */

	hmac_sha256_update(&c, len, buf);
	hmac_sha256_digest(&c, SYNC_MAC_BYTES, out);
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

int sync_key_read(const char *path, uint8_t *key, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return refuse(err, errlen, "cannot open: %s", errno == ELOOP ?
			      "it is a symbolic link" : strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return refuse(err, errlen, "not a regular file");
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		close(fd);
		return refuse(err, errlen, "owned by uid %u: must be root's or vpcfwd's own",
			      (unsigned)st.st_uid);
	}
	if (st.st_mode & 077) {
		close(fd);
		return refuse(err, errlen, "mode %04o: the group and others may not read or write a "
			      "key (chmod 0600)", (unsigned)(st.st_mode & 07777));
	}
	uint8_t b[SYNC_KEY_MAX + 2];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, b + got, sizeof(b) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return refuse(err, errlen, "cannot read: %s", strerror(e));
		}
		if (n == 0 || (got += (size_t)n) == sizeof(b))
			break;
	}
	close(fd);
	size_t n = got;
	if (n && b[n - 1] == '\n')
		n--;
	if (n && b[n - 1] == '\r')
		n--;
	if (got == sizeof(b) || n > SYNC_KEY_MAX) {
		memset(b, 0, sizeof(b));
		return refuse(err, errlen, "longer than %d bytes", SYNC_KEY_MAX);
	}
	if (n < SYNC_KEY_MIN) {
		memset(b, 0, sizeof(b));
		return refuse(err, errlen, "%zu bytes of key: at least %d needed "
			      "(e.g. head -c 32 /dev/urandom | base64 >FILE)", n, SYNC_KEY_MIN);
	}
	memcpy(key, b, n);
	*len = n;
	memset(b, 0, sizeof(b));
	return 0;
}

/* ------------------------------------------------------------ building */

void sync_begin(struct sync_builder *b, uint8_t *buf, size_t max_bytes)
{
	b->buf = buf;
	b->max_bytes = max_bytes < SYNC_MIN_BYTES ? SYNC_MIN_BYTES :
		       max_bytes > SYNC_MAX_BYTES ? SYNC_MAX_BYTES : max_bytes;
	b->n_records = 0;
	b->n_ids = 0;
	b->ids_bytes = 0;
	b->lag_us = 0;
}

/* The table index of id (n_ids if it is not in it yet). */
static size_t id_index(const struct sync_builder *b, const char *id, size_t len)
{
	for (size_t i = 0; i < b->n_ids; i++)
		if (b->id_len[i] == len && memcmp(b->idbuf + b->id_off[i], id, len) == 0)
			return i;
	return b->n_ids;
}

bool sync_fits(const struct sync_builder *b, const char *iface_id)
{
	size_t l = strlen(iface_id);

	if (l == 0 || l > SYNC_IFACE_ID_MAX || b->n_records >= SYNC_MAX_RECORDS)
		return false;
	size_t ids = b->ids_bytes;
	if (id_index(b, iface_id, l) == b->n_ids) {
		if (b->n_ids == sizeof(b->id_len) / sizeof(b->id_len[0]))
			return false;
		ids += 1 + l;
	}
	return SYNC_HEADER_BYTES + (b->n_records + 1) * SYNC_RECORD_BYTES + ids + SYNC_MAC_BYTES <=
	       b->max_bytes;
}

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* A record's flow: what an UPSERT or a DELETE may carry. */
static bool valid_record(uint8_t op, const struct ct_saved *s)
{
	if (!state_flow_valid(s))
		return false;
	if (op == SYNC_OP_UPSERT)
		return s->deadline_ns >= 1000000u &&
		       s->deadline_ns / 1000000u <= SYNC_MAX_LIFETIME_MS;
	return op == SYNC_OP_DELETE;
}

static void put_record(uint8_t *p, size_t idx, const struct sync_record *r);

bool sync_add(struct sync_builder *b, const struct sync_record *r)
{
	if (!r->iface_id || !sync_fits(b, r->iface_id))
		return false;
	size_t l = strlen(r->iface_id);
	if (!printable(r->iface_id, l) || !valid_record(r->op, &r->s))
		return false;
	size_t idx = id_index(b, r->iface_id, l);
	if (idx == b->n_ids) {
		size_t at = b->ids_bytes - b->n_ids;    /* the ids' bytes so far */
		memcpy(b->idbuf + at, r->iface_id, l);
		b->id_off[idx] = (uint16_t)at;
		b->id_len[idx] = (uint8_t)l;
		b->n_ids++;
		b->ids_bytes += 1 + l;
	}
	put_record(b->buf + SYNC_HEADER_BYTES + b->n_records * SYNC_RECORD_BYTES, idx, r);
	b->n_records++;
	return true;
}

bool sync_put(struct sync_builder *b, size_t i, const struct sync_record *r)
{
	if (i >= b->n_records || !r->iface_id || !valid_record(r->op, &r->s))
		return false;
	size_t l = strlen(r->iface_id);
	size_t idx = id_index(b, r->iface_id, l);
	if (l == 0 || l > SYNC_IFACE_ID_MAX || idx == b->n_ids)
		return false;   /* a record in place names an interface of the table */
	put_record(b->buf + SYNC_HEADER_BYTES + i * SYNC_RECORD_BYTES, idx, r);
	return true;
}

static void put_record(uint8_t *p, size_t idx, const struct sync_record *r)
{
	const struct ct_saved *s = &r->s;
	memset(p, 0, SYNC_RECORD_BYTES);
	p[0] = r->op;
	p[1] = s->orig.proto;
	p[2] = s->tcp_state;
	p[3] = s->flags;
	le_put16(p + 4, (uint16_t)idx);
	le_put16(p + 6, r->queue);
	le_put16(p + 8, s->orig.sport);
	le_put16(p + 10, s->orig.dport);
	if (r->op == SYNC_OP_UPSERT)
		le_put32(p + 12, (uint32_t)(s->deadline_ns / 1000000u));
	le_put64(p + 16, s->orig.src.hi);
	le_put64(p + 24, s->orig.src.lo);
	le_put64(p + 32, s->orig.dst.hi);
	le_put64(p + 40, s->orig.dst.lo);
	if (r->op == SYNC_OP_UPSERT)
		memcpy(p + 48, s->tcp, CT_SAVED_TCP_BYTES);
}

size_t sync_finish(struct sync_builder *b, const struct sync_key *k, uint8_t type, uint8_t flags,
		   uint32_t sender, uint64_t epoch, uint64_t seq, uint64_t sent_ns,
		   uint32_t bulk_id, uint32_t bulk_total, uint32_t lag_us)
{
	uint8_t *h = b->buf;

	memset(h, 0, SYNC_HEADER_BYTES);
	memcpy(h, SYNC_MAGIC, 8);
	le_put16(h + 8, SYNC_VERSION);
	h[10] = type;
	h[11] = flags;
	le_put32(h + 12, sender);
	le_put64(h + 16, epoch);
	le_put64(h + 24, seq);
	le_put64(h + 32, sent_ns);
	le_put16(h + 40, (uint16_t)b->n_records);
	le_put16(h + 42, (uint16_t)b->n_ids);
	le_put32(h + 44, bulk_id);
	le_put32(h + 48, bulk_total);
	le_put32(h + 52, lag_us);
	uint8_t *p = h + SYNC_HEADER_BYTES + b->n_records * SYNC_RECORD_BYTES;
	for (size_t i = 0; i < b->n_ids; i++) {
		*p++ = b->id_len[i];
		memcpy(p, b->idbuf + b->id_off[i], b->id_len[i]);
		p += b->id_len[i];
	}
	size_t len = (size_t)(p - h);
	mac(k, h, len, p);
	return len + SYNC_MAC_BYTES;
}

/* ------------------------------------------------------------ reading */

enum sync_drop sync_verify(const struct sync_key *k, const uint8_t *buf, size_t len)
{
	uint8_t want[SYNC_MAC_BYTES];

	if (len < SYNC_HEADER_BYTES + SYNC_MAC_BYTES || len > SYNC_MAX_BYTES)
		return SYNC_DROP_SHORT;
	mac(k, buf, len - SYNC_MAC_BYTES, want);
	return memeql_sec(want, buf + len - SYNC_MAC_BYTES, SYNC_MAC_BYTES) ? SYNC_OK
									      : SYNC_DROP_AUTH;
}

static enum sync_drop parse(const uint8_t *buf, size_t len, struct sync_msg *out)
{
	if (len < SYNC_HEADER_BYTES + SYNC_MAC_BYTES || len > SYNC_MAX_BYTES)
		return SYNC_DROP_SHORT;
	if (memcmp(buf, SYNC_MAGIC, 8) != 0)
		return SYNC_DROP_MAGIC;
	if (le_get16(buf + 8) != SYNC_VERSION)
		return SYNC_DROP_VERSION;
	out->type = buf[10];
	out->flags = buf[11];
	out->sender = le_get32(buf + 12);
	out->epoch = le_get64(buf + 16);
	out->seq = le_get64(buf + 24);
	out->sent_ns = le_get64(buf + 32);
	size_t n_rec = le_get16(buf + 40);
	out->n_ifaces = le_get16(buf + 42);
	out->bulk_id = le_get32(buf + 44);
	out->bulk_total = le_get32(buf + 48);
	out->lag_us = le_get32(buf + 52);
	if (out->type < SYNC_T_UPDATE || out->type > SYNC_T_HELLO || (out->flags & ~SYNC_F_ALL) ||
	    !out->sender || !out->epoch || !out->seq)
		return SYNC_DROP_MALFORMED;
	bool records = out->type == SYNC_T_UPDATE || out->type == SYNC_T_BULK;
	if (!records && (n_rec || out->n_ifaces))
		return SYNC_DROP_MALFORMED;
	if (out->type != SYNC_T_BULK && (out->flags & SYNC_F_LAST))
		return SYNC_DROP_MALFORMED;
	if ((out->type == SYNC_T_BULK || out->type == SYNC_T_BULK_REQ) != (out->bulk_id != 0))
		return SYNC_DROP_MALFORMED;
	if (out->type != SYNC_T_BULK && out->bulk_total)
		return SYNC_DROP_MALFORMED;
	if (out->type != SYNC_T_UPDATE && out->lag_us)
		return SYNC_DROP_MALFORMED;
	if (n_rec > out->max_records ||
	    (len - SYNC_HEADER_BYTES - SYNC_MAC_BYTES) / SYNC_RECORD_BYTES < n_rec)
		return SYNC_DROP_MALFORMED;
	/* the interface table: after the records, up to the MAC */
	size_t off = SYNC_HEADER_BYTES + n_rec * SYNC_RECORD_BYTES;
	size_t end = len - SYNC_MAC_BYTES, w = 0;
	const char *id_at[256];
	if (out->n_ifaces > 256 || (n_rec && !out->n_ifaces) || (!n_rec && out->n_ifaces))
		return SYNC_DROP_MALFORMED;
	for (uint16_t i = 0; i < out->n_ifaces; i++) {
		if (off >= end)
			return SYNC_DROP_MALFORMED;
		size_t l = buf[off++];
		if (l == 0 || end - off < l || !printable((const char *)buf + off, l))
			return SYNC_DROP_MALFORMED;
		for (uint16_t k = 0; k < i; k++)        /* each id once */
			if (strlen(id_at[k]) == l && memcmp(id_at[k], buf + off, l) == 0)
				return SYNC_DROP_MALFORMED;
		id_at[i] = out->ids + w;
		memcpy(out->ids + w, buf + off, l);
		out->ids[w + l] = '\0';
		w += l + 1;
		off += l;
	}
	if (off != end)
		return SYNC_DROP_MALFORMED;
	bool used[256] = { false };
	for (size_t i = 0; i < n_rec; i++) {
		const uint8_t *p = buf + SYNC_HEADER_BYTES + i * SYNC_RECORD_BYTES;
		struct sync_record *r = &out->records[i];
		memset(r, 0, sizeof(*r));
		r->op = p[0];
		r->s.orig.proto = p[1];
		r->s.tcp_state = p[2];
		r->s.flags = p[3];
		uint16_t idx = le_get16(p + 4);
		r->queue = le_get16(p + 6);
		r->s.orig.sport = le_get16(p + 8);
		r->s.orig.dport = le_get16(p + 10);
		uint32_t ms = le_get32(p + 12);
		r->s.deadline_ns = (uint64_t)ms * 1000000u;
		r->s.orig.src.hi = le_get64(p + 16);
		r->s.orig.src.lo = le_get64(p + 24);
		r->s.orig.dst.hi = le_get64(p + 32);
		r->s.orig.dst.lo = le_get64(p + 40);
		memcpy(r->s.tcp, p + 48, CT_SAVED_TCP_BYTES);
		if (idx >= out->n_ifaces || !valid_record(r->op, &r->s))
			return SYNC_DROP_MALFORMED;
		if (r->op == SYNC_OP_DELETE) {
			if (ms)
				return SYNC_DROP_MALFORMED;
			for (size_t k = 0; k < CT_SAVED_TCP_BYTES; k++)
				if (r->s.tcp[k])
					return SYNC_DROP_MALFORMED;
		}
		r->iface_id = id_at[idx];
		used[idx] = true;
	}
	for (uint16_t i = 0; i < out->n_ifaces; i++)
		if (!used[i])
			return SYNC_DROP_MALFORMED;
	out->n_records = n_rec;
	return SYNC_OK;
}

enum sync_drop sync_parse(const uint8_t *buf, size_t len, struct sync_msg *out)
{
	enum sync_drop r = parse(buf, len, out);

	if (r != SYNC_OK)
		out->n_records = 0;
	return r;
}

enum sync_drop sync_decode(const struct sync_key *k, const uint8_t *buf, size_t len,
			   struct sync_msg *out)
{
	enum sync_drop r = sync_verify(k, buf, len);

	if (r != SYNC_OK) {
		out->n_records = 0;
		return r;
	}
	return sync_parse(buf, len, out);
}

/* ------------------------------------------------------------ replays */

static bool bit(const struct sync_window *w, uint64_t d)
{
	return w->bits[d / 64] >> (d % 64) & 1;
}

static void set_bit(struct sync_window *w, uint64_t d)
{
	w->bits[d / 64] |= (uint64_t)1 << (d % 64);
}

/* Moves the window up by n: bit d becomes bit d + n. */
static void shift(struct sync_window *w, uint64_t n)
{
	enum { WORDS = SYNC_WINDOW / 64 };

	if (n >= SYNC_WINDOW) {
		memset(w->bits, 0, sizeof(w->bits));
		return;
	}
	size_t words = (size_t)(n / 64);
	unsigned bits = (unsigned)(n % 64);
	for (size_t i = WORDS; i-- > 0;) {
		uint64_t v = 0;
		if (i >= words) {
			v = w->bits[i - words] << bits;
			if (bits && i >= words + 1)
				v |= w->bits[i - words - 1] >> (64 - bits);
		}
		w->bits[i] = v;
	}
}

enum sync_drop sync_window_check(struct sync_window *w, uint64_t epoch, uint64_t seq)
{
	if (epoch == 0 || seq == 0)
		return SYNC_DROP_MALFORMED;
	if (epoch < w->epoch)
		return SYNC_DROP_OLD_EPOCH;
	if (epoch > w->epoch) {
		w->epoch = epoch;
		w->top = seq;
		memset(w->bits, 0, sizeof(w->bits));
		set_bit(w, 0);
		return SYNC_OK;
	}
	if (seq > w->top) {
		shift(w, seq - w->top);
		w->top = seq;
		set_bit(w, 0);
		return SYNC_OK;
	}
	uint64_t d = w->top - seq;
	if (d >= SYNC_WINDOW || bit(w, d))
		return SYNC_DROP_REPLAY;
	set_bit(w, d);
	return SYNC_OK;
}

enum sync_drop sync_fresh(uint64_t sent_ns, uint64_t now_ns, uint64_t max_skew_ns)
{
	if (!max_skew_ns)
		return SYNC_OK;
	uint64_t d = sent_ns > now_ns ? sent_ns - now_ns : now_ns - sent_ns;
	return d > max_skew_ns ? SYNC_DROP_STALE : SYNC_OK;
}
