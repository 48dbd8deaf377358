/* Creating the files vpcfwd writes without following symbolic links.
 *
 * A user who can write an output directory must not be able to make vpcfwd
 * write, truncate or chmod another file by planting a symbolic link (or a
 * hard link) at an output path.  So every output is opened relative to a
 * directory descriptor opened once, with O_NOFOLLOW; temporaries are
 * created with O_EXCL under a random name; only a regular file with a
 * single link is ever written; and a file vpcfwd did not create is never
 * chmod'ed.  Directories vpcfwd creates are its own (root's, or the -u
 * user's), mode SAFE_DIR_MODE less the umask.
 *
 * Every function returns -1 (or false) with errno set on failure: ELOOP for
 * a symbolic link, EEXIST for a name already taken, EPERM for anything but a
 * regular file with one link. */
#ifndef VPCFW_SAFEFILE_H
#define VPCFW_SAFEFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SAFE_FILE_MODE 0640     /* flow logs, decision log, captures (less the umask) */
#define SAFE_DIR_MODE 0750      /* directories vpcfwd creates (less the umask) */
#define SAFE_PUBLIC_MODE 0644   /* MetricsFile: read by another user (node_exporter) */

/* Opens the directory that holds `path` (O_DIRECTORY; its own components
 * are the administrator's choice and may be links) and points *name at the
 * last component of path.  A path ending in '/' or naming "." or ".." is
 * refused (EINVAL). */
int safe_parent_open(const char *path, const char **name);

/* Opens dir/rel, a relative path of directories, creating the missing ones
 * (mode SAFE_DIR_MODE), one component at a time and never through a
 * symbolic link.  "", "." and ".." components are refused (EINVAL). */
int safe_mkdirs_at(int dirfd, const char *rel);

/* Opens `name` in dirfd for appending, creating it with `mode` if absent.
 * *created (may be NULL) says whether it did. */
int safe_open_append(int dirfd, const char *name, mode_t mode, bool *created);

/* Opens `name` in dirfd for writing from its start, creating it with
 * `mode` or truncating it (a plain file only). */
int safe_open_trunc(int dirfd, const char *name, mode_t mode);

/* Creates a new file `name` in dirfd (O_EXCL) for writing. */
int safe_create(int dirfd, const char *name, mode_t mode);

/* Creates a new hidden file ".PREFIX.XXXXXXXX.tmp" (random suffix) in dirfd
 * for writing; its name goes to out (at least strlen(prefix) + 24 bytes). */
int safe_create_temp(int dirfd, const char *prefix, mode_t mode, char *out, size_t outlen);

/* Renames from -> to within dirfd.  With replace, whatever `to` is (a
 * symbolic link included) is replaced, never followed; without it, an
 * existing `to` makes it fail with EEXIST. */
int safe_rename(int dirfd, const char *from, const char *to, bool replace);

/* Whether dirfd/name is something other than a regular file (a symbolic
 * link, a directory, ...): outputs refuse to replace such a thing. */
bool safe_is_foreign(int dirfd, const char *name);

/* Writes all of buf (retrying short writes and EINTR). */
bool safe_write_all(int fd, const void *buf, size_t len);

/* Fills buf with random bytes (getrandom; a time/pid mix if it fails). */
void safe_random(void *buf, size_t len);

#endif
