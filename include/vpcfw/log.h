/* The program's one log, in OpenBSD bgpd's shape (its log.h): log_warn adds
 * strerror(errno), log_warnx does not, fatal and fatalx are for the
 * impossible (out of memory) and end the process.
 *
 * Before log_init, and with LOG_TO_STDERR, a line goes to stderr as
 * "IDENT: message" (IDENT: the program's name until log_init names it); a
 * daemon without -f logs to syslog, which under systemd is the journal.  The
 * engine's modules (flow logs, mirroring, replay) log here rather than to
 * stderr, which a detached daemon points at /dev/null.
 *
 * A line is one write, from any thread; but it may wait on the terminal or
 * the syslog socket, so the packet path never logs: a worker puts what it
 * has to say in a bounded ring that the main thread logs, rate-limited
 * (daemon.c: refusals). */
#ifndef VPCFW_LOG_H
#define VPCFW_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdnoreturn.h>
#include <syslog.h>

enum { LOG_TO_STDERR = 1, LOG_TO_SYSLOG = 2 };

/* where lines go from now on (LOG_TO_* bits); ident must stay valid */
void log_init(const char *ident, int to);
/* log_debug's lines are written only from verbose 1 on */
void log_setverbose(int v);
int log_getverbose(void);

void logit(int pri, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vlog(int pri, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* logged at LOG_CRIT, then abort(): a core for what cannot happen */
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
