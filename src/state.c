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

void state_part_reset(struct state_part *p)
{
	p->n = 0;
	p->oom = false;
	p->unlisted = 0;
}

void state_part_free(struct state_part *p)
{
	free(p->flows);
	p->flows = NULL;
	p->n = p->cap = 0;
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

uint8_t *state_encode(uint64_t written_ns, const char *const *ifaces, uint32_t n_ifaces,
		      const struct state_part *parts, size_t n_parts, size_t *len)
{
	size_t body = 0, n_flows = 0;

	if (n_ifaces > STATE_MAX_IFACES)
		return NULL;
	for (uint32_t i = 0; i < n_ifaces; i++) {
		size_t l = strlen(ifaces[i]);
		body += 2 + (l > STATE_IFACE_ID_MAX ? STATE_IFACE_ID_MAX : l);
	}
	for (size_t k = 0; k < n_parts; k++)
		n_flows += parts[k].n;
	if (n_flows > (SIZE_MAX - body - STATE_HEADER_BYTES) / STATE_FLOW_BYTES)
		return NULL;
	body += n_flows * STATE_FLOW_BYTES;
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
	if (version != STATE_VERSION)
		return refuse(err, errlen, "version %" PRIu32 ", this vpcfwd reads version %d",
			      version, STATE_VERSION);
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
	if ((body_len - off) / STATE_FLOW_BYTES != n_flows ||
	    (body_len - off) % STATE_FLOW_BYTES != 0) {
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
