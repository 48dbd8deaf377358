/* Safe file creation (safefile.c) and whole-line append files (logfile.c):
 * a symbolic link or hard link planted at an output name is refused and its
 * target keeps its content and mode; temporaries are exclusive; renames
 * without replace never clobber; lines stay whole under two writers. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkmain.h"
#include "vpcfw/logfile.h"
#include "vpcfw/safefile.h"

static char dir[64];
static int dfd = -1;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static void setup(void)
{
	strcpy(dir, "/tmp/check_safefile.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);
}

static void teardown(void)
{
	close(dfd);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A "victim": a file with known content and mode 0600, and a symlink
 * named `link` to it in the test directory. */
static void plant(const char *link)
{
	int fd = openat(dfd, "victim", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "secret\n", 7), 7);
	fchmod(fd, 0600);
	close(fd);
	ck_assert_int_eq(symlinkat("victim", dfd, link), 0);
}

static void victim_untouched(void)
{
	struct stat st;
	char buf[32] = "";
	int fd = openat(dfd, "victim", O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), 7);
	close(fd);
	ck_assert_str_eq(buf, "secret\n");
	ck_assert_int_eq(st.st_mode & 07777, 0600);
}

START_TEST(append_refuses_symlink)
{
	plant("out.log");
	errno = 0;
	ck_assert_int_eq(safe_open_append(dfd, "out.log", 0644, NULL), -1);
	ck_assert_int_eq(errno, ELOOP);
	victim_untouched();
}
END_TEST

START_TEST(append_refuses_hardlink)
{
	plant("unused");
	ck_assert_int_eq(linkat(dfd, "victim", dfd, "out.log", 0), 0);
	ck_assert_int_eq(safe_open_append(dfd, "out.log", 0644, NULL), -1);
	ck_assert_int_eq(errno, EPERM);
	victim_untouched();
}
END_TEST

START_TEST(append_refuses_fifo_without_hanging)
{
	ck_assert_int_eq(mkfifoat(dfd, "out.log", 0600), 0);
	ck_assert_int_eq(safe_open_append(dfd, "out.log", 0644, NULL), -1);
}
END_TEST

START_TEST(append_creates_then_appends)
{
	bool created = false;
	int fd = safe_open_append(dfd, "out.log", 0640, &created);
	ck_assert_int_ge(fd, 0);
	ck_assert(created);
	ck_assert(safe_write_all(fd, "a\n", 2));
	close(fd);
	fd = safe_open_append(dfd, "out.log", 0600, &created);
	ck_assert_int_ge(fd, 0);
	ck_assert(!created);
	ck_assert(safe_write_all(fd, "b\n", 2));
	close(fd);
	struct stat st;
	ck_assert_int_eq(fstatat(dfd, "out.log", &st, 0), 0);
	ck_assert_int_eq(st.st_size, 4);
	/* created with its mode less the umask; the second open left it alone */
	mode_t u = umask(0);
	umask(u);
	ck_assert_int_eq(st.st_mode & 0777, 0640 & ~u);
}
END_TEST

START_TEST(trunc_refuses_symlink)
{
	plant("verdicts.jsonl");
	ck_assert_int_eq(safe_open_trunc(dfd, "verdicts.jsonl", 0644), -1);
	victim_untouched();
}
END_TEST

START_TEST(create_is_exclusive)
{
	plant("new.pcap");
	ck_assert_int_eq(safe_create(dfd, "new.pcap", 0644), -1);
	ck_assert_int_eq(errno, EEXIST);
	victim_untouched();
	int fd = safe_create(dfd, "fresh.pcap", 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(safe_create(dfd, "fresh.pcap", 0644), -1);
}
END_TEST

START_TEST(temp_names_differ)
{
	char a[64], b[64];
	int fa = safe_create_temp(dfd, "m", 0600, a, sizeof(a));
	int fb = safe_create_temp(dfd, "m", 0600, b, sizeof(b));
	ck_assert_int_ge(fa, 0);
	ck_assert_int_ge(fb, 0);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(a[0], '.');
	close(fa);
	close(fb);
}
END_TEST

START_TEST(rename_noreplace_keeps_existing)
{
	plant("final");
	int fd = safe_create(dfd, "part", 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(safe_rename(dfd, "part", "final", false), -1);
	ck_assert_int_eq(errno, EEXIST);
	victim_untouched();
	ck_assert_int_eq(safe_rename(dfd, "part", "other", false), 0);
	ck_assert_int_eq(faccessat(dfd, "part", F_OK, 0), -1);
	/* with replace, the link itself is replaced, never followed */
	ck_assert_int_eq(safe_rename(dfd, "other", "final", true), 0);
	victim_untouched();
	ck_assert(!safe_is_foreign(dfd, "final"));
}
END_TEST

START_TEST(foreign_names)
{
	plant("l");
	ck_assert(safe_is_foreign(dfd, "l"));
	ck_assert(!safe_is_foreign(dfd, "victim"));
	ck_assert(!safe_is_foreign(dfd, "absent"));
	ck_assert_int_eq(mkdirat(dfd, "d", 0700), 0);
	ck_assert(safe_is_foreign(dfd, "d"));
}
END_TEST

START_TEST(mkdirs_never_through_a_link)
{
	ck_assert_int_eq(mkdirat(dfd, "elsewhere", 0700), 0);
	ck_assert_int_eq(symlinkat("elsewhere", dfd, "AWSLogs"), 0);
	ck_assert_int_eq(safe_mkdirs_at(dfd, "AWSLogs/123/vpcflowlogs"), -1);
	ck_assert(errno == ELOOP || errno == ENOTDIR);
	struct stat st;
	ck_assert_int_ne(fstatat(dfd, "elsewhere/123", &st, 0), 0);
	int fd = safe_mkdirs_at(dfd, "a/b/c");
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(fstatat(dfd, "a/b/c", &st, AT_SYMLINK_NOFOLLOW), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0002, 0);
	ck_assert_int_eq(safe_mkdirs_at(dfd, "a/../b"), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(parent_of_paths)
{
	const char *name = NULL;
	char path[128];
	snprintf(path, sizeof(path), "%s/x.log", dir);
	int fd = safe_parent_open(path, &name);
	ck_assert_int_ge(fd, 0);
	ck_assert_str_eq(name, "x.log");
	close(fd);
	fd = safe_parent_open("relative.log", &name);
	ck_assert_int_ge(fd, 0);
	ck_assert_str_eq(name, "relative.log");
	close(fd);
	snprintf(path, sizeof(path), "%s/", dir);
	ck_assert_int_eq(safe_parent_open(path, &name), -1);
	ck_assert_int_eq(safe_parent_open("/tmp/..", &name), -1);
}
END_TEST

START_TEST(logfile_refuses_symlink)
{
	plant("decisions.jsonl");
	char path[128];
	snprintf(path, sizeof(path), "%s/decisions.jsonl", dir);
	ck_assert_ptr_null(logfile_open_path(path));
	victim_untouched();
}
END_TEST

/* Two writers on one file, lines of every length up to past the buffer:
 * every line read back is one of those written, whole. */
START_TEST(logfile_two_writers_whole_lines)
{
	struct logfile *a = logfile_open(dfd, "group.jsonl");
	struct logfile *b = logfile_open(dfd, "group.jsonl");
	static char line[LOGFILE_BUF + 100];
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	for (int i = 0; i < 3000; i++) {
		size_t n = 1 + (size_t)(i * 37) % 300;
		if (i == 1500)
			n = sizeof(line) - 1; /* longer than the buffer */
		memset(line, i % 2 ? 'a' : 'b', n);
		ck_assert(logfile_line(i % 2 ? a : b, line, n));
	}
	ck_assert(logfile_close(a));
	ck_assert(logfile_close(b));
	FILE *f = fdopen(openat(dfd, "group.jsonl", O_RDONLY), "r");
	ck_assert_ptr_nonnull(f);
	static char got[LOGFILE_BUF + 200];
	int lines = 0;
	while (fgets(got, sizeof(got), f)) {
		size_t n = strlen(got);
		ck_assert_int_eq(got[n - 1], '\n');
		char one[2] = { got[0], '\0' };
		ck_assert_uint_eq(strspn(got, one), n - 1);
		lines++;
	}
	fclose(f);
	ck_assert_int_eq(lines, 3000);
}
END_TEST

START_TEST(logfile_reopen_after_rename)
{
	struct logfile *lf = logfile_open(dfd, "d.log");
	ck_assert_ptr_nonnull(lf);
	ck_assert(logfile_line(lf, "one", 3));
	ck_assert(logfile_flush(lf));
	ck_assert_int_eq(renameat(dfd, "d.log", dfd, "d.log.1"), 0);
	ck_assert(logfile_reopen(lf));
	ck_assert(logfile_line(lf, "two", 3));
	ck_assert(logfile_close(lf));
	struct stat st;
	ck_assert_int_eq(fstatat(dfd, "d.log", &st, 0), 0);
	ck_assert_int_eq(st.st_size, 4);
	ck_assert_int_eq(fstatat(dfd, "d.log.1", &st, 0), 0);
	ck_assert_int_eq(st.st_size, 4);
	/* a link planted while rotated is refused at the reopen */
	lf = logfile_open(dfd, "e.log");
	ck_assert_ptr_nonnull(lf);
	plant("e.log.new");
	ck_assert_int_eq(renameat(dfd, "e.log.new", dfd, "e.log"), 0);
	ck_assert(!logfile_reopen(lf));
	ck_assert(!logfile_line(lf, "x", 1) || !logfile_flush(lf));
	logfile_close(lf);
	victim_untouched();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("safefile");
	TCase *t = tcase_create("safefile");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, append_refuses_symlink);
	tcase_add_test(t, append_refuses_hardlink);
	tcase_add_test(t, append_refuses_fifo_without_hanging);
	tcase_add_test(t, append_creates_then_appends);
	tcase_add_test(t, trunc_refuses_symlink);
	tcase_add_test(t, create_is_exclusive);
	tcase_add_test(t, temp_names_differ);
	tcase_add_test(t, rename_noreplace_keeps_existing);
	tcase_add_test(t, foreign_names);
	tcase_add_test(t, mkdirs_never_through_a_link);
	tcase_add_test(t, parent_of_paths);
	suite_add_tcase(s, t);
	t = tcase_create("logfile");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, logfile_refuses_symlink);
	tcase_add_test(t, logfile_two_writers_whole_lines);
	tcase_add_test(t, logfile_reopen_after_rename);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
