/* sd_notify(3) in a few lines: a datagram to the unix socket named by
 * $NOTIFY_SOCKET (a path, or '@' for the abstract namespace). */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vpcfw/notify.h"

bool notify_enabled(void)
{
	const char *path = getenv("NOTIFY_SOCKET");

	return path && (path[0] == '/' || path[0] == '@');
}

int notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t plen;
	int fd, r;

	if (!path || (path[0] != '/' && path[0] != '@'))
		return 0;
	plen = strlen(path);
	if (plen >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, plen);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	r = (int)sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			(socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen));
	int e = errno;
	close(fd);
	errno = e;
	return r < 0 ? -1 : 0;
}

static int send_with_status(const char *what, const char *status)
{
	char buf[512];

	if (status)
		snprintf(buf, sizeof(buf), "%s\nSTATUS=%s", what, status);
	else
		snprintf(buf, sizeof(buf), "%s", what);
	return notify_send(buf);
}

int notify_ready(const char *status)
{
	return send_with_status("READY=1", status);
}

int notify_reloading(void)
{
	struct timespec ts;
	char buf[128];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading",
		 (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
	return notify_send(buf);
}

int notify_stopping(void)
{
	return send_with_status("STOPPING=1", "stopping");
}

int notify_status(const char *status)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "STATUS=%s", status);
	return notify_send(buf);
}

uint64_t notify_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	char *end;

	if (!usec || !*usec || !notify_enabled())
		return 0;
	if (pid && *pid) {
		errno = 0;
		unsigned long long p = strtoull(pid, &end, 10);
		if (errno || *end || p != (unsigned long long)getpid())
			return 0;       /* meant for another process */
	}
	errno = 0;
	unsigned long long v = strtoull(usec, &end, 10);
	if (errno || *end || v == 0)
		return 0;
	return (uint64_t)v;
}

int notify_watchdog(void)
{
	return notify_send("WATCHDOG=1");
}
