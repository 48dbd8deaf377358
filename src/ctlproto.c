/* The control protocol's shared part (ctlproto.h): request framing, and
 * the configuration files a client sends. */
#include "vpcfw/ctlproto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

json_t *ctl_parse_request(const char *line, size_t len, char *err, size_t errlen)
{
	json_error_t e;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &e);

	if (!req) {
		snprintf(err, errlen, "bad JSON: %s", e.text);
		return NULL;
	}
	if (!json_is_object(req) || !json_is_string(json_object_get(req, "verb"))) {
		json_decref(req);
		snprintf(err, errlen, "a request is an object with a \"verb\"");
		return NULL;
	}
	return req;
}

/* One regular file, read without waiting on it (a FIFO or a device is
 * refused, not read); *budget: bytes still allowed. */
static bool read_one(json_t *files, const char *path, size_t *budget, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return false;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return false;
	}
	if ((uint64_t)st.st_size > *budget) {
		snprintf(err, errlen, "%s: the configuration is larger than %d MB", path,
			 CTL_MAX_CONFIG_TEXT >> 20);
		close(fd);
		return false;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t len = 0;
	ssize_t n = 0;
	while (buf && len <= (size_t)st.st_size &&
	       (n = read(fd, buf + len, (size_t)st.st_size + 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (!buf || n < 0 || len > (size_t)st.st_size) {
		snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" :
			 n < 0 ? strerror(errno) : "changed while read");
		free(buf);
		return false;
	}
	json_t *text = json_stringn_nocheck(buf, len);
	free(buf);
	if (!text || !json_is_string(text)) {
		json_decref(text);
		snprintf(err, errlen, "%s: out of memory", path);
		return false;
	}
	json_array_append_new(files, json_pack("{s:s, s:o}", "name", path, "text", text));
	*budget -= len;
	return true;
}

static int file_order(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);   /* the order config.c reads them in */
}

static int json_file_name(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
}

json_t *ctl_read_config_files(const char *path, char *err, size_t errlen)
{
	struct stat st;
	size_t budget = CTL_MAX_CONFIG_TEXT;
	json_t *files = json_array();
	bool ok = true;

	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		json_decref(files);
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		ok = read_one(files, path, &budget, err, errlen);
	} else {
		struct dirent **names;
		int n = scandir(path, &names, json_file_name, file_order);
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			ok = false;
		}
		for (int i = 0; i < n; i++) {
			char file[4096];
			snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
			/* as the daemon reads a directory: its regular *.json files */
			if (ok && stat(file, &st) == 0 && S_ISREG(st.st_mode))
				ok = read_one(files, file, &budget, err, errlen);
			free(names[i]);
		}
		if (n >= 0)
			free(names);
		if (ok && json_array_size(files) == 0) {
			snprintf(err, errlen, "%s: no *.json file in this directory", path);
			ok = false;
		}
	}
	if (!ok) {
		json_decref(files);
		return NULL;
	}
	return files;
}
