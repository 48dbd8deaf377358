/* Append-only line files (see logfile.h). */
#include "vpcfw/logfile.h"
#include "vpcfw/safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct logfile {
	int dirfd, fd;
	char *name;
	size_t n;
	bool failed;            /* a write failed since the last flush */
	char buf[LOGFILE_BUF];
};

struct logfile *logfile_open(int dirfd, const char *name)
{
	struct logfile *lf = calloc(1, sizeof(*lf));

	if (!lf)
		return NULL;
	lf->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	lf->name = strdup(name);
	lf->fd = lf->dirfd >= 0 && lf->name
		 ? safe_open_append(lf->dirfd, name, SAFE_FILE_MODE, NULL) : -1;
	if (lf->fd < 0) {
		int e = errno;
		if (lf->dirfd >= 0)
			close(lf->dirfd);
		free(lf->name);
		free(lf);
		errno = e;
		return NULL;
	}
	return lf;
}

struct logfile *logfile_open_path(const char *path)
{
	const char *name;
	int dirfd = safe_parent_open(path, &name);

	if (dirfd < 0)
		return NULL;
	struct logfile *lf = logfile_open(dirfd, name);
	int e = errno;
	close(dirfd);
	errno = e;
	return lf;
}

static bool push(struct logfile *lf, const char *p, size_t n)
{
	if (lf->fd < 0) {
		errno = EBADF;
		lf->failed = true;
		return false;
	}
	if (!safe_write_all(lf->fd, p, n)) {
		lf->failed = true;
		return false;
	}
	return true;
}

bool logfile_flush(struct logfile *lf)
{
	bool ok = lf->n ? push(lf, lf->buf, lf->n) : true;
	lf->n = 0;
	ok = ok && !lf->failed;
	lf->failed = false;
	return ok;
}

bool logfile_line(struct logfile *lf, const char *line, size_t len)
{
	if (lf->n + len + 1 > sizeof(lf->buf) && !logfile_flush(lf))
		lf->failed = true;
	if (len + 1 > sizeof(lf->buf)) {
		/* alone: two writes would let another writer in between */
		char *one = malloc(len + 1);
		if (!one) {
			lf->failed = true;
			return false;
		}
		memcpy(one, line, len);
		one[len] = '\n';
		bool ok = push(lf, one, len + 1);
		free(one);
		return ok;
	}
	memcpy(lf->buf + lf->n, line, len);
	lf->buf[lf->n + len] = '\n';
	lf->n += len + 1;
	return true;
}

bool logfile_reopen(struct logfile *lf)
{
	bool ok = logfile_flush(lf);
	if (lf->fd >= 0 && close(lf->fd) != 0)
		ok = false;
	lf->fd = safe_open_append(lf->dirfd, lf->name, SAFE_FILE_MODE, NULL);
	return ok && lf->fd >= 0;
}

bool logfile_close(struct logfile *lf)
{
	if (!lf)
		return true;
	bool ok = logfile_flush(lf);
	if (lf->fd >= 0 && close(lf->fd) != 0)
		ok = false;
	close(lf->dirfd);
	free(lf->name);
	free(lf);
	return ok;
}
