/* A map from an id string ("sg-...", "eni-...") to an index: open
 * addressing, malloc'd, growing as it fills.  The configuration loader and
 * the policy builder both use it while they run; the keys are not copied
 * and must outlive the map (they live in the configuration's arena). */
#ifndef VPCFW_IDMAP_H
#define VPCFW_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap {                  /* all zero: empty */
	const char **keys;
	int *vals;
	size_t mask, n;
};

/* FNV-1a of a NUL-terminated string (also the policy's interface tables'). */
uint64_t idmap_hash(const char *s);

/* The value stored for key; -1 if none (or key is NULL). */
int idmap_get(const struct idmap *m, const char *key);
/* Stores val for key and returns -1; a key already present keeps its first
 * value, which is returned. */
int idmap_put(struct idmap *m, const char *key, int val);
void idmap_free(struct idmap *m);

#endif
