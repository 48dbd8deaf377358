/* A bump allocator: a configuration and the policy compiled from it are
 * built from many small objects that all die together, so they are carved
 * from one arena and freed in one call.  Never used on the packet path. */
#ifndef VPCFW_ARENA_H
#define VPCFW_ARENA_H

#include <stddef.h>

struct arena_block;

struct arena {
	struct arena_block *head;
	size_t used; /* bytes handed out, for statistics */
};

void arena_init(struct arena *a);
/* Zeroed memory aligned for any type; aborts on out-of-memory (configuration
 * loading is not the place to limp on without memory). */
void *arena_alloc(struct arena *a, size_t size);
void *arena_calloc(struct arena *a, size_t n, size_t size);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void arena_free(struct arena *a);

#endif
