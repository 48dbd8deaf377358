/* Streaming decompression: zlib's gzread, ISA-L's inflate when it can
 * (gzstream.h says when, and why the bytes and errors stay zlib's). */
#include "config.h"

#include "vpcfw/gzstream.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

enum {
	GZS_ZBUF = 1 << 17,             /* zlib's input buffer (gzbuffer) */
	GZS_IN = 1 << 17,               /* ISA-L's input buffer */
	GZS_HDR = 10,                   /* a gzip member's fixed header */
};

struct gzs {
	int fd;
	gzFile gz;                      /* zlib's reading, once it reads */
	int lost;                       /* errno: zlib could not take over */
#ifdef HAVE_ISAL
	bool isal;                      /* ISA-L's reading */
	bool first;                     /* no member begun yet */
	bool member_start;              /* at a member's header */
	bool in_eof;
	uint64_t delivered;             /* bytes returned so far */
	size_t in_pos, in_len;
	struct inflate_state st;
	uint8_t in[GZS_IN];
#endif
};

const char *gzs_engine(void)
{
#ifdef HAVE_ISAL
	return "ISA-L";
#else
	return "zlib";
#endif
}

static bool zlib_open(struct gzs *z)
{
	z->gz = gzdopen(z->fd, "rb");
	if (!z->gz)
		return false;
	z->fd = -1; /* gzclose closes it */
	gzbuffer(z->gz, GZS_ZBUF);
	return true;
}

struct gzs *gzs_open(int fd, bool zlib_only)
{
	struct gzs *z = malloc(sizeof(*z));

	if (!z) {
		close(fd);
		return NULL;
	}
	z->fd = fd;
	z->gz = NULL;
	z->lost = 0;
#ifdef HAVE_ISAL
	struct stat st;
	z->isal = !zlib_only && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (z->isal) {
		z->first = z->member_start = true;
		z->in_eof = false;
		z->delivered = 0;
		z->in_pos = z->in_len = 0;
		isal_inflate_init(&z->st);
		return z;
	}
#else
	(void)zlib_only;
#endif
	if (!zlib_open(z)) {
		close(fd);
		free(z);
		return NULL;
	}
	return z;
}

#ifdef HAVE_ISAL
/* zlib takes over: the file from its start, the bytes returned skipped.
 * False when zlib cannot be set up (the read fails: gzs_error says). */
static bool fall_back(struct gzs *z, void *buf, unsigned len)
{
	z->isal = false;
	errno = 0;
	if (lseek(z->fd, 0, SEEK_SET) != 0 || !zlib_open(z)) {
		z->lost = errno ? errno : ENOMEM;
		return false;
	}
	uint64_t skip = z->delivered;
	while (skip) {
		/* the caller's buffer holds what is skipped: nothing of it is
		 * returned before it is overwritten */
		unsigned n = skip < len ? (unsigned)skip : len;
		int got = gzread(z->gz, buf, n);
		if (got <= 0)
			break; /* zlib ends earlier than ISA-L: its end stands */
		skip -= (unsigned)got;
	}
	return true;
}

/* Refills the input buffer, keeping what is unread.  False at the file's
 * end (nothing read) or on a read error. */
static bool refill(struct gzs *z)
{
	if (z->in_pos) {
		memmove(z->in, z->in + z->in_pos, z->in_len - z->in_pos);
		z->in_len -= z->in_pos;
		z->in_pos = 0;
	}
	while (z->in_len < sizeof(z->in)) {
		ssize_t n = read(z->fd, z->in + z->in_len, sizeof(z->in) - z->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		if (n == 0) {
			z->in_eof = true;
			return false;
		}
		z->in_len += (size_t)n;
		return true;
	}
	return true;
}

/* A member's header ISA-L reads as zlib would: the magic, deflate, no
 * reserved flag, no header CRC (zlib checks it) */
static bool clean_header(const uint8_t *h)
{
	return h[0] == 0x1f && h[1] == 0x8b && h[2] == 8 && (h[3] & 0xe2) == 0;
}

/* ISA-L's reading; -2: zlib takes over */
static int isal_read(struct gzs *z, void *buf, unsigned len)
{
	for (;;) {
		if (z->member_start) {
			while (z->in_len - z->in_pos < GZS_HDR && !z->in_eof)
				if (!refill(z) && !z->in_eof)
					return -2; /* a read error: zlib's to report */
			size_t avail = z->in_len - z->in_pos;
			if (avail == 0 && !z->first)
				return 0; /* the last member ended with the file */
			if (avail < GZS_HDR || !clean_header(z->in + z->in_pos))
				return -2;
			isal_inflate_reset(&z->st);
			z->st.crc_flag = ISAL_GZIP;
			z->member_start = z->first = false;
		}
		if (z->in_pos == z->in_len && !z->in_eof && !refill(z) && !z->in_eof)
			return -2;
		z->st.next_in = z->in + z->in_pos;
		z->st.avail_in = (uint32_t)(z->in_len - z->in_pos);
		z->st.next_out = buf;
		z->st.avail_out = len;
		int ret = isal_inflate(&z->st);
		size_t used = (size_t)(z->st.next_in - (z->in + z->in_pos));
		z->in_pos += used;
		unsigned got = len - z->st.avail_out;
		if (ret < 0)
			return -2; /* this call's bytes are not returned */
		if (z->st.block_state == ISAL_BLOCK_FINISH)
			z->member_start = true;
		if (got) {
			z->delivered += got;
			return (int)got;
		}
		if (z->member_start)
			continue;
		if (z->in_pos == z->in_len && z->in_eof)
			return -2; /* truncated: zlib says so */
		if (!used && z->in_pos < z->in_len)
			return -2; /* no progress: not expected of ISA-L */
	}
}
#endif

int gzs_read(struct gzs *z, void *buf, unsigned len)
{
	if (len > INT32_MAX)
		len = INT32_MAX;
#ifdef HAVE_ISAL
	if (z->isal) {
		if (len == 0)
			return 0;
		int got = isal_read(z, buf, len);
		if (got != -2)
			return got;
		if (!fall_back(z, buf, len))
			return -1;
	}
#endif
	return gzread(z->gz, buf, len);
}

const char *gzs_error(struct gzs *z, int *zerr)
{
	if (z->gz)
		return gzerror(z->gz, zerr);
	/* ISA-L's reading has no error (each falls back to zlib), unless
	 * zlib could not take over */
	if (z->lost) {
		*zerr = Z_ERRNO;
		return strerror(z->lost);
	}
	*zerr = Z_OK;
	return "";
}

void gzs_close(struct gzs *z)
{
	if (!z)
		return;
	if (z->gz)
		gzclose(z->gz);
	if (z->fd >= 0)
		close(z->fd);
	free(z);
}
