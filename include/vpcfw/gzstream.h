/* Streaming decompression of a flow-log file, plain or gzip (issue #15
 * item 4): zlib's gzread, gzerror and gzclose, with ISA-L's inflate
 * (igzip, libisal) doing the work when configure found it.  Constant
 * memory whatever the file's size.
 *
 * The bytes read and the errors are zlib's: ISA-L decodes only regular
 * files made of gzip members whose header has no flag beyond FTEXT, FNAME,
 * FEXTRA and FCOMMENT (what gzip(1), Python and AWS write).  Anything else
 * -- a plain file, a pipe, another header, trailing bytes after a member,
 * a truncated or corrupt member, a read error -- goes to zlib: the file is
 * read again from its start by gzread, the bytes already returned skipped,
 * and zlib's reading (bytes, end, message) carries on from there.  Where
 * both decoders accept a stream they return the same bytes; where ISA-L
 * gives up, zlib says what is wrong, as it always did. */
#ifndef VPCFW_GZSTREAM_H
#define VPCFW_GZSTREAM_H

#include <stdbool.h>

struct gzs;

/* Takes fd (closed by gzs_close, or here on failure).  zlib_only: never
 * ISA-L (the fuzz target's reference).  NULL: no memory or zlib refused. */
struct gzs *gzs_open(int fd, bool zlib_only);

/* As gzread: > 0 bytes read, 0 at the end (gzs_error tells whether it was
 * clean), < 0 an error (gzs_error says which). */
int gzs_read(struct gzs *z, void *buf, unsigned len);

/* As gzerror: the message ("" if none) and zlib's code in *zerr. */
const char *gzs_error(struct gzs *z, int *zerr);

void gzs_close(struct gzs *z);

/* "ISA-L" or "zlib": the decoder of gzip members when they are clean. */
const char *gzs_engine(void);

#endif
