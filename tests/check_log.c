/* The log (log.c): the stderr line's shape, log_warn's errno, log_debug
 * only when verbose, and an engine module's error reaching the log rather
 * than a bare stderr. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkmain.h"
#include "vpcfw/log.h"

static FILE *cap;
static int saved = -1;

/* stderr into a temporary file until captured() */
static void capture(void)
{
	fflush(stderr);
	cap = tmpfile();
	ck_assert_ptr_nonnull(cap);
	saved = dup(2);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(fileno(cap), 2), 2);
}

static char *captured(void)
{
	static char buf[4096];

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(cap);
	size_t n = fread(buf, 1, sizeof(buf) - 1, cap);
	buf[n] = '\0';
	fclose(cap);
	return buf;
}

START_TEST(test_lines)
{
	log_init("vpcfwd", LOG_TO_STDERR);
	capture();
	log_warnx("flow log %s: %s", "fl-1", "refused");
	errno = ENOENT;
	log_warn("decision log %s", "/x/y");
	ck_assert_int_eq(errno, ENOENT);      /* kept for the caller */
	log_info("a %d b", 7);
	logit(LOG_WARNING, "warning: %s", "w");
	ck_assert_str_eq(captured(), "vpcfwd: flow log fl-1: refused\n"
			 "vpcfwd: decision log /x/y: No such file or directory\n"
			 "vpcfwd: a 7 b\n"
			 "vpcfwd: warning: w\n");
}
END_TEST

START_TEST(test_debug_verbose)
{
	log_init("t", LOG_TO_STDERR);
	log_setverbose(0);
	capture();
	log_debug("hidden");
	log_setverbose(1);
	log_debug("shown %d", 1);
	log_setverbose(0);
	ck_assert_int_eq(log_getverbose(), 0);
	ck_assert_str_eq(captured(), "t: shown 1\n");
}
END_TEST

START_TEST(test_long_line)
{
	char big[3000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_init("t", LOG_TO_STDERR);
	capture();
	log_warnx("%s", big);
	char *out = captured();
	/* cut, but one whole line */
	ck_assert_int_gt(strlen(out), 1000);
	ck_assert_int_lt(strlen(out), sizeof(big));
	ck_assert_int_eq(strncmp(out, "t: xxx", 6), 0);
	ck_assert_ptr_eq(strchr(out, '\n'), out + strlen(out) - 1);
}
END_TEST

START_TEST(test_fatalx_aborts)
{
	log_init("t", LOG_TO_STDERR);
	fatalx("the impossible: %d", 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_test(tc, test_lines);
	tcase_add_test(tc, test_debug_verbose);
	tcase_add_test(tc, test_long_line);
	suite_add_tcase(s, tc);
	/* fatalx ends the process: only where Check forks */
	if (!getenv("CK_FORK") || strcmp(getenv("CK_FORK"), "no") != 0) {
		TCase *tf = tcase_create("fatal");
		tcase_add_test_raise_signal(tf, test_fatalx_aborts, 6 /* SIGABRT */);
		suite_add_tcase(s, tf);
	}
	return run_suite(s);
}
