#include "vpcfw/arena.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/log.h"
#include "vpcfw/xmalloc.h"

struct arena_block {
	struct arena_block *next;
	size_t size, used;
	max_align_t data[];
};

/* Blocks grow from 64 KiB to 4 MiB as the arena does: a small policy stays
 * small, a large one takes its memory in few blocks that malloc maps
 * straight from the kernel.  Blocks come zeroed from calloc (for a fresh
 * mapping that costs nothing) and bytes are never handed out twice, so an
 * allocation needs no memset of its own. */
enum { ARENA_BLOCK = 64 * 1024, ARENA_BLOCK_MAX = 4 * 1024 * 1024 };

void arena_init(struct arena *a)
{
	a->head = NULL;
	a->used = 0;
}

void *arena_alloc(struct arena *a, size_t size)
{
	const size_t align = _Alignof(max_align_t);
	size_t need = (size + align - 1) & ~(align - 1);
	struct arena_block *b = a->head;

	if (need < size)
		fatalx("allocation overflow (%zu bytes)", size);
	if (need == 0)
		need = align;
	if (!b || b->size - b->used < need) {
		/* a large allocation gets a block of its own behind the
		 * current one, which keeps its room for the small ones */
		bool own = b && need >= ARENA_BLOCK;
		size_t cap = own ? need : b ? b->size * 2 : ARENA_BLOCK;
		if (!own && cap > ARENA_BLOCK_MAX)
			cap = ARENA_BLOCK_MAX;
		if (cap < need)
			cap = need;
		if (cap > SIZE_MAX - sizeof(struct arena_block))
			fatalx("allocation overflow");
		struct arena_block *nb = xcalloc(1, sizeof(*nb) + cap);
		nb->size = cap;
		nb->used = 0;
		if (own) {
			nb->next = b->next;
			b->next = nb;
		} else {
			nb->next = b;
			a->head = nb;
		}
		b = nb;
	}
	void *p = (char *)b->data + b->used;
	b->used += need;
	a->used += need;
	return p;
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		fatalx("allocation overflow (%zu x %zu bytes)", n, size);
	return arena_alloc(a, n * size);
}

char *arena_strdup(struct arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = arena_alloc(a, n);
	memcpy(p, s, n);
	return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	char *p = arena_alloc(a, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void arena_free(struct arena *a)
{
	struct arena_block *b = a->head;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
	a->used = 0;
}
