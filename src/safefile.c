/* Files created without following symbolic links (see safefile.h). */
#include "vpcfw/safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OPEN_FLAGS (O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)

static bool bad_component(const char *s, size_t n)
{
	return n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

int safe_parent_open(const char *path, const char **name)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	const char *base = slash ? slash + 1 : path;
	int fd;

	if (!path || bad_component(base, strlen(base))) {
		errno = EINVAL;
		return -1;
	}
	if (!slash) {
		fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else if (slash == path) {
		fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		size_t n = (size_t)(slash - path);
		char *dir = malloc(n + 1);
		if (!dir)
			return -1;
		memcpy(dir, path, n);
		dir[n] = '\0';
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		free(dir);
	}
	if (fd >= 0)
		*name = base;
	return fd;
}

int safe_mkdirs_at(int dirfd, const char *rel)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	char comp[256];

	for (const char *p = rel; fd >= 0 && *p;) {
		size_t n = strcspn(p, "/");
		if (bad_component(p, n) || n >= sizeof(comp)) {
			close(fd);
			errno = EINVAL;
			return -1;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (mkdirat(fd, comp, SAFE_DIR_MODE) != 0 && errno != EEXIST) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		struct stat st;
		if (next < 0 && e == ENOTDIR && fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode))
			e = ELOOP;
		close(fd);
		errno = e;
		fd = next;
		p += n;
		while (*p == '/')
			p++;
	}
	return fd;
}

/* Only a regular file with one link is ours to write: a hard link to
 * another file would write that file. */
static int checked(int fd)
{
	struct stat st;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

int safe_open_append(int dirfd, const char *name, mode_t mode, bool *created)
{
	int fd = openat(dirfd, name, OPEN_FLAGS | O_APPEND | O_CREAT | O_EXCL, mode);

	if (created)
		*created = fd >= 0;
	if (fd < 0 && errno == EEXIST) {
		/* O_NONBLOCK: a FIFO planted here must not hang the open */
		fd = openat(dirfd, name, OPEN_FLAGS | O_APPEND | O_NONBLOCK);
		if (fd >= 0 && fcntl(fd, F_SETFL, O_APPEND) != 0) {
			close(fd);
			return -1;
		}
	}
	return checked(fd);
}

int safe_open_trunc(int dirfd, const char *name, mode_t mode)
{
	/* truncated only once known to be a plain file of its own */
	int fd = checked(openat(dirfd, name, OPEN_FLAGS | O_CREAT | O_NONBLOCK, mode));
	if (fd >= 0 && (fcntl(fd, F_SETFL, 0) != 0 || ftruncate(fd, 0) != 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int safe_create(int dirfd, const char *name, mode_t mode)
{
	return checked(openat(dirfd, name, OPEN_FLAGS | O_CREAT | O_EXCL | O_TRUNC, mode));
}

void safe_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom(p + got, len - got, GRND_NONBLOCK);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < len) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
			     ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)buf;
		for (; got < len; got++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[got] = (uint8_t)x;
		}
	}
}

int safe_create_temp(int dirfd, const char *prefix, mode_t mode, char *out, size_t outlen)
{
	for (int tries = 0; tries < 16; tries++) {
		uint32_t r;
		safe_random(&r, sizeof(r));
		int n = snprintf(out, outlen, ".%s.%08x.tmp", prefix, r);
		if (n < 0 || (size_t)n >= outlen) {
			errno = ENAMETOOLONG;
			return -1;
		}
		int fd = safe_create(dirfd, out, mode);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

int safe_rename(int dirfd, const char *from, const char *to, bool replace)
{
	if (replace)
		return renameat(dirfd, from, dirfd, to);
	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* a file system without RENAME_NOREPLACE: link() never replaces */
	if (linkat(dirfd, from, dirfd, to, 0) != 0)
		return -1;
	unlinkat(dirfd, from, 0);
	return 0;
}

bool safe_is_foreign(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno != ENOENT;
	return !S_ISREG(st.st_mode) || st.st_nlink != 1;
}

bool safe_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}
