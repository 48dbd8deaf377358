/* The program's log (log.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/log.h"

static const char *log_ident;   /* NULL: the program's name */
static _Atomic int log_to = LOG_TO_STDERR;
static _Atomic int verbose;

void log_init(const char *ident, int to)
{
	if (atomic_load(&log_to) & LOG_TO_SYSLOG)
		closelog();
	log_ident = ident;
	if (to & LOG_TO_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	atomic_store(&log_to, to);
}

void log_setverbose(int v)
{
	atomic_store(&verbose, v);
}

int log_getverbose(void)
{
	return atomic_load(&verbose);
}

void vlog(int pri, const char *fmt, va_list ap)
{
	int to = atomic_load(&log_to);
	va_list copy;

	va_copy(copy, ap);
	if (to & LOG_TO_STDERR) {
		/* one fputs per line, so that threads' lines do not mix */
		char line[1200];
		int n = snprintf(line, sizeof(line), "%s: ",
				 log_ident ? log_ident : program_invocation_short_name);
		if (n < 0 || (size_t)n >= sizeof(line))
			n = 0;
		vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
		strcat(line, "\n");
		fputs(line, stderr);
	}
	if (to & LOG_TO_SYSLOG)
		vsyslog(pri, fmt, copy);
	va_end(copy);
}

void logit(int pri, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(pri, fmt, ap);
	va_end(ap);
}

/* fmt, then ": " and the error's text */
static void vlog_errno(int pri, int e, const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	logit(pri, "%s: %s", buf, strerror(e));
}

void log_warn(const char *fmt, ...)
{
	int e = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_ERR, e, fmt, ap);
	va_end(ap);
	errno = e;
}

void log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	if (atomic_load(&verbose) < 1)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

noreturn void fatal(const char *fmt, ...)
{
	int e = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_CRIT, e, fmt, ap);
	va_end(ap);
	abort();
}

noreturn void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap);
	va_end(ap);
	abort();
}
