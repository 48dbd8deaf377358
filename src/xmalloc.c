/* Allocation that does not come back empty (xmalloc.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/log.h"
#include "vpcfw/xmalloc.h"

void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (!p)
		fatalx("out of memory (%zu bytes)", size);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		fatalx("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *xreallocarray(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		fatalx("allocation overflow (%zu x %zu bytes)", n, size);
	size_t bytes = n * size;
	void *r = realloc(p, bytes ? bytes : 1);
	if (!r)
		fatalx("out of memory (%zu x %zu bytes)", n, size);
	return r;
}

char *xstrdup(const char *s)
{
	if (!s)
		return NULL;
	char *r = strdup(s);
	if (!r)
		fatalx("out of memory");
	return r;
}
