/* The control protocol as client and server share it (ctl.h describes the
 * server): a stream Unix socket, one JSON object per line each way,
 * {"verb": ..., ...} -> {"ok": true, ...} or {"ok": false, "error": ...}.
 * vpcfwctl links this (ctlproto.c) and not the server. */
#ifndef VPCFW_CTLPROTO_H
#define VPCFW_CTLPROTO_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* Requests are at most CTL_MAX_REQUEST bytes, CTL_MAX_CONFIG for the
 * admins, whose shadow-load carries configuration files (CTL_MAX_CONFIG_TEXT
 * bytes of them); a flow listing is CTL_FLOWS_DEFAULT long, at most
 * CTL_FLOWS_MAX. */
enum { CTL_MAX_REQUEST = 65536, CTL_MAX_CONFIG = 16 << 20, CTL_MAX_CONFIG_TEXT = 8 << 20,
       CTL_FLOWS_DEFAULT = 1000, CTL_FLOWS_MAX = 100000 };

/* One request line -> its JSON object, or NULL with a message in err (the
 * protocol's parsing, kept apart for fuzzing). */
json_t *ctl_parse_request(const char *line, size_t len, char *err, size_t errlen);

/* vpcfwctl's side of shadow-load: the file, or the *.json files of the
 * directory (as the daemon reads a directory), read with the caller's own
 * rights: [{"name": path, "text": content}, ...].  Only regular files, at
 * most CTL_MAX_CONFIG_TEXT bytes in all.  NULL with a message in err. */
json_t *ctl_read_config_files(const char *path, char *err, size_t errlen);

/* The protocol's refusal, {"ok": false, "error": MESSAGE}, as the server's
 * verbs and the engine's answers (explain_json) give it; NULL on ENOMEM.
 * Here in the header so that an answer can be built without linking the
 * protocol's I/O. */
static inline json_t *ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline json_t *ctl_error(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", buf);
}

/* A request's string member, or NULL (absent or not a string). */
static inline const char *ctl_str(const json_t *req, const char *key)
{
	return json_string_value(json_object_get(req, key));
}

#endif
