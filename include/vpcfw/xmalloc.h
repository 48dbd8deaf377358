/* Allocation for what cannot go on without memory (configuration loading,
 * diagnostics, setup): fatalx("out of memory") instead of NULL.  Never on
 * the packet path, which allocates nothing; code that can refuse one request
 * and go on (the control socket, a reload) calls calloc itself. */
#ifndef VPCFW_XMALLOC_H
#define VPCFW_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);           /* n or size 0: still one byte */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);                   /* NULL: NULL */

#endif
