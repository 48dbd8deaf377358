/* An append-only file of whole lines (the decision log, CloudWatch-style
 * streams): every write(2) carries whole lines only, on an O_APPEND
 * descriptor, so no reader, rotator or second writer ever sees half a line.
 * Opened with safefile (no symbolic links followed); reopened by name on
 * request, for logrotate.  Not thread-safe: one owner thread. */
#ifndef VPCFW_LOGFILE_H
#define VPCFW_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>

#define LOGFILE_BUF (64 * 1024)         /* lines are pushed out when it fills */

struct logfile;

/* Opens (creating, mode SAFE_FILE_MODE less the umask) dirfd/name, which
 * must be a plain name.  dirfd is duplicated: the caller keeps its own.
 * NULL with errno on failure. */
struct logfile *logfile_open(int dirfd, const char *name);
/* Opens PATH (its directory resolved once, here). */
struct logfile *logfile_open_path(const char *path);

/* Appends one line (without its newline; one is added).  A line longer than
 * the buffer is written alone.  False on a write error (errno says why). */
bool logfile_line(struct logfile *lf, const char *line, size_t len);
bool logfile_flush(struct logfile *lf);
/* Flushes, closes and opens the name again: after logrotate renamed the
 * file, writing goes on in a new one. */
bool logfile_reopen(struct logfile *lf);
/* Flushes and closes; false if anything was lost. */
bool logfile_close(struct logfile *lf);

#endif
