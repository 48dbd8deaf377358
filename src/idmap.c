/* The id map (include/vpcfw/idmap.h). */
#include "vpcfw/idmap.h"

#include <stdlib.h>
#include <string.h>

#include "vpcfw/xmalloc.h"

uint64_t idmap_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

void idmap_free(struct idmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

int idmap_get(const struct idmap *m, const char *key)
{
	if (!m->keys || !key)
		return -1;
	for (size_t i = idmap_hash(key) & m->mask; m->keys[i]; i = (i + 1) & m->mask)
		if (strcmp(m->keys[i], key) == 0)
			return m->vals[i];
	return -1;
}

int idmap_put(struct idmap *m, const char *key, int val)
{
	if (!m->keys || (m->n + 1) * 2 > m->mask + 1) {
		/* at most half full: probes stay short */
		struct idmap big = { 0 };
		size_t size = m->keys ? (m->mask + 1) * 2 : 64;
		big.keys = xcalloc(size, sizeof(*big.keys));
		big.vals = xcalloc(size, sizeof(*big.vals));
		big.mask = size - 1;
		for (size_t i = 0; m->keys && i <= m->mask; i++)
			if (m->keys[i])
				idmap_put(&big, m->keys[i], m->vals[i]);
		idmap_free(m);
		*m = big;
	}
	size_t i = idmap_hash(key) & m->mask;
	for (; m->keys[i]; i = (i + 1) & m->mask)
		if (strcmp(m->keys[i], key) == 0)
			return m->vals[i];
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return -1;
}
