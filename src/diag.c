#include "vpcfw/diag.h"
#include "vpcfw/xmalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void diag_init(struct diag *d)
{
	memset(d, 0, sizeof(*d));
}

void diag_free(struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->msgs[i].text);
	free(d->msgs);
	memset(d, 0, sizeof(*d));
}

static void add(struct diag *d, bool error, const char *file, const char *path,
		const char *fmt, va_list ap)
{
	char body[1024];
	vsnprintf(body, sizeof(body), fmt, ap);

	size_t len = strlen(body) + (file ? strlen(file) : 0) + (path ? strlen(path) : 0) + 8;
	char *text = xmalloc(len);
	if (file && path && *path)
		snprintf(text, len, "%s: %s: %s", file, path, body);
	else if (file)
		snprintf(text, len, "%s: %s", file, body);
	else if (path && *path)
		snprintf(text, len, "%s: %s", path, body);
	else
		snprintf(text, len, "%s", body);

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		d->msgs = xreallocarray(d->msgs, cap, sizeof(*d->msgs));
		d->cap = cap;
	}
	d->msgs[d->n].error = error;
	d->msgs[d->n].text = text;
	d->n++;
	if (error)
		d->errors++;
	else
		d->warnings++;
	if (d->echo)
		fprintf(d->echo, "%s: %s\n", error ? "error" : "warning", text);
}

void diag_error(struct diag *d, const char *file, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add(d, true, file, path, fmt, ap);
	va_end(ap);
}

void diag_warn(struct diag *d, const char *file, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add(d, false, file, path, fmt, ap);
	va_end(ap);
}

bool diag_failed(const struct diag *d)
{
	return d->errors > 0 || (d->strict && d->warnings > 0);
}

void diag_print(const struct diag *d, FILE *out)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(out, "%s: %s\n", d->msgs[i].error ? "error" : "warning", d->msgs[i].text);
}
