/* The control protocol as client and server share it (ctl.h describes the
 * server): a stream Unix socket, one JSON object per line each way,
 * {"verb": ..., ...} -> {"ok": true, ...} or {"ok": false, "error": ...}.
 * vpcfwctl links this (ctlproto.c) and not the server. */
#ifndef VPCFW_CTLPROTO_H
#define VPCFW_CTLPROTO_H

#include <stddef.h>

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

#endif
