/* libFuzzer target: the flow-log reader's decompression (gzstream.c,
 * issue #15 item 4) on arbitrary bytes as a file, against zlib's gzread
 * alone on the same file, with the same read sizes: zlib's bytes are a
 * prefix of gzstream's (equal when zlib reads to a clean end: ISA-L may
 * only have returned more of a member whose check then failed, bytes zlib
 * withheld), and both end the same way with the same message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "vpcfw/gzstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { OUT_MAX = 1 << 22 };

struct result {
	uint8_t *out;
	size_t n;
	int last;                       /* the last read's return */
	int zerr;
	char msg[256];
};

static const unsigned lens[] = { 262144, 1, 4093, 65536, 7, 200000 };

static void run(const uint8_t *data, size_t size, bool zlib_only, struct result *r)
{
	int fd = memfd_create("fuzz_gzstream", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	for (size_t off = 0; off < size;) {
		ssize_t w = write(fd, data + off, size - off);
		if (w <= 0)
			abort();
		off += (size_t)w;
	}
	if (lseek(fd, 0, SEEK_SET) != 0)
		abort();
	struct gzs *z = gzs_open(fd, zlib_only);
	if (!z)
		abort();
	r->out = malloc(OUT_MAX);
	if (!r->out)
		abort();
	r->n = 0;
	r->last = 0;
	for (unsigned k = 0; r->n < OUT_MAX; k++) {
		unsigned len = lens[k % (sizeof(lens) / sizeof(lens[0]))];
		if (len > OUT_MAX - r->n)
			len = (unsigned)(OUT_MAX - r->n);
		r->last = gzs_read(z, r->out + r->n, len);
		if (r->last <= 0)
			break;
		r->n += (size_t)r->last;
	}
	const char *m = gzs_error(z, &r->zerr);
	/* zlib's messages begin with the file's name, "<fd:N>: " here */
	const char *colon = m ? strstr(m, ">: ") : NULL;
	snprintf(r->msg, sizeof(r->msg), "%s", colon ? colon + 3 : m ? m : "");
	gzs_close(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result ref, got;

	run(data, size, true, &ref);
	run(data, size, false, &got);
	bool prefix = ref.n <= got.n && memcmp(ref.out, got.out, ref.n) == 0;
	bool clean = ref.last >= 0 && ref.zerr == Z_OK;
	if (!prefix || (clean && got.n != ref.n) || (ref.last < 0) != (got.last < 0) ||
	    ref.zerr != got.zerr || strcmp(ref.msg, got.msg) != 0) {
		fprintf(stderr, "gzstream (%s) differs from zlib: %zu/%zu bytes, end %d/%d, "
			"error %d/%d '%s'/'%s'\n", gzs_engine(), ref.n, got.n, ref.last, got.last,
			ref.zerr, got.zerr, ref.msg, got.msg);
		abort();
	}
	free(ref.out);
	free(got.out);
	return 0;
}
