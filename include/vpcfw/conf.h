/* The configuration loader, config.c (named conf.h so that it is never
 * taken for autoconf's config.h).
 * JSON (the EC2 API's describe-* output plus our `Vpcfw` section) -> model.
 * Every malformed value is an error naming file, JSON path and value; all
 * errors are collected.  Unknown fields are ignored; an unknown top-level key
 * is warned about once. */
#ifndef VPCFW_CONF_H
#define VPCFW_CONF_H

#include <stddef.h>

#include "vpcfw/diag.h"
#include "vpcfw/model.h"

void model_init(struct model *m);
void model_free(struct model *m);

/* Adds the objects of one JSON document to m.  `name` is the file name used
 * in messages.  Returns the number of errors it added. */
size_t config_load_buffer(struct model *m, const char *name, const char *text, size_t len,
			  struct diag *d);

/* Adds a file, or every *.json directly inside a directory in name order. */
size_t config_load_path(struct model *m, const char *path, struct diag *d);

/* Checks the model as a whole once every file is in: duplicate ids, NACL
 * rule numbers, ...  Cross-object *references* are policy.c's business. */
void config_check(const struct model *m, struct diag *d);

#endif
