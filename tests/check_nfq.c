/* The parts of the live daemon that need neither root nor a kernel queue:
 * the queue list of -q / Vpcfw.Queues, and systemd notifications. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "checkmain.h"
#include "vpcfw/nfq.h"
#include "vpcfw/notify.h"

static const struct {
	const char *in;
	int n;                  /* -1: refused */
	uint16_t want[8];
} queue_cases[] = {
	{ "0", 1, { 0 } },
	{ "3", 1, { 3 } },
	{ "0-3", 4, { 0, 1, 2, 3 } },
	{ "0,2", 2, { 0, 2 } },
	{ "5-6,0", 3, { 0, 5, 6 } },            /* sorted */
	{ "1,1,0-1", 2, { 0, 1 } },             /* duplicates once */
	{ "65535", 1, { 65535 } },
	{ "65536", -1, { 0 } },
	{ "3-1", -1, { 0 } },
	{ "", -1, { 0 } },
	{ "0,", -1, { 0 } },
	{ ",0", -1, { 0 } },
	{ "0-", -1, { 0 } },
	{ "-1", -1, { 0 } },
	{ "a", -1, { 0 } },
	{ "0 1", -1, { 0 } },
	{ "0-9", -1, { 0 } },                   /* more than the 8 asked for */
};

START_TEST(test_parse_queues)
{
	uint16_t out[8];
	int n = nfqueue_parse_queues(queue_cases[_i].in, out, 8);

	ck_assert_msg(n == queue_cases[_i].n, "'%s': %d queues, want %d", queue_cases[_i].in, n,
		      queue_cases[_i].n);
	for (int i = 0; i < n; i++)
		ck_assert_uint_eq(out[i], queue_cases[_i].want[i]);
}
END_TEST

START_TEST(test_parse_queues_null)
{
	uint16_t out[1];
	ck_assert_int_eq(nfqueue_parse_queues(NULL, out, 1), -1);
}
END_TEST

/* A listening datagram socket standing in for systemd's. */
static int listen_at(const char *name, bool abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	socklen_t len;

	ck_assert_int_ge(fd, 0);
	if (abstract) {
		sa.sun_path[0] = '\0';
		strncpy(sa.sun_path + 1, name, sizeof(sa.sun_path) - 2);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
	} else {
		strncpy(sa.sun_path, name, sizeof(sa.sun_path) - 1);
		len = sizeof(sa);
	}
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	return fd;
}

static void recv_str(int fd, char *buf, size_t len)
{
	struct timeval tv = { 2, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = recv(fd, buf, len - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
}

START_TEST(test_notify_path)
{
	char dir[] = "/tmp/vpcfw-notify-XXXXXX", path[128], buf[256];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = listen_at(path, false);
	setenv("NOTIFY_SOCKET", path, 1);
	ck_assert(notify_enabled());

	ck_assert_int_eq(notify_ready("running"), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "READY=1\nSTATUS=running");

	ck_assert_int_eq(notify_reloading(), 0);
	recv_str(fd, buf, sizeof(buf));
	unsigned long long usec = 0;
	ck_assert_msg(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec) == 1, "%s", buf);
	ck_assert_uint_gt(usec, 0);

	ck_assert_int_eq(notify_stopping(), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "STOPPING=1\nSTATUS=stopping");

	ck_assert_int_eq(notify_status("busy"), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "STATUS=busy");

	close(fd);
	unlink(path);
	rmdir(dir);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_notify_abstract)
{
	char name[64], env[80], buf[64];

	snprintf(name, sizeof(name), "vpcfw-notify-test-%ld", (long)getpid());
	int fd = listen_at(name, true);
	snprintf(env, sizeof(env), "@%s", name);
	setenv("NOTIFY_SOCKET", env, 1);
	ck_assert_int_eq(notify_ready(NULL), 0);
	recv_str(fd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "READY=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_notify_unset)
{
	unsetenv("NOTIFY_SOCKET");
	ck_assert(!notify_enabled());
	ck_assert_int_eq(notify_ready("x"), 0);         /* nothing to do: not an error */
	setenv("NOTIFY_SOCKET", "relative/path", 1);    /* neither a path nor '@' */
	ck_assert(!notify_enabled());
	ck_assert_int_eq(notify_stopping(), 0);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_notify_no_listener)
{
	setenv("NOTIFY_SOCKET", "/nonexistent/vpcfw/notify", 1);
	ck_assert_int_eq(notify_ready(NULL), -1);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nfq");
	TCase *tc = tcase_create("queues");
	tcase_add_loop_test(tc, test_parse_queues, 0, (int)(sizeof(queue_cases) / sizeof(queue_cases[0])));
	tcase_add_test(tc, test_parse_queues_null);
	suite_add_tcase(s, tc);
	tc = tcase_create("notify");
	tcase_add_test(tc, test_notify_path);
	tcase_add_test(tc, test_notify_abstract);
	tcase_add_test(tc, test_notify_unset);
	tcase_add_test(tc, test_notify_no_listener);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
