/* Diagnostics of configuration loading: every error and warning names the
 * file, the JSON path and the offending value, and all of them are collected
 * before the load gives up, so a user fixes a file in one pass. */
#ifndef VPCFW_DIAG_H
#define VPCFW_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct diag_msg {
	bool error;
	char *text; /* "FILE: PATH: message" */
};

struct diag {
	struct diag_msg *msgs;
	size_t n, cap;
	size_t errors, warnings;
	bool strict;      /* warnings count as errors */
	FILE *echo;       /* if set, each message is also printed here as it comes */
};

void diag_init(struct diag *d);
void diag_free(struct diag *d);

/* file may be NULL (a message about the whole configuration); path may be
 * NULL or "" (a message about the whole file). */
void diag_error(struct diag *d, const char *file, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void diag_warn(struct diag *d, const char *file, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* True when loading must be refused: errors, or warnings under --strict. */
bool diag_failed(const struct diag *d);

/* Prints every message as "error: ..." / "warning: ...", one per line. */
void diag_print(const struct diag *d, FILE *out);

#endif
