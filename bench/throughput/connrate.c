/* New-flow rate: many short TCP connections (bench/throughput/run.sh).
 *   connrate server PORT              accept, answer one byte, close first
 *   connrate client ADDR PORT SECONDS THREADS [BIND]
 *       each thread: connect, send a byte, read the answer and the close,
 *       close; prints the connections completed per second (all threads).
 * The server closes first, so its side keeps TIME_WAIT and the client's
 * ports come free at once.  A connection that fails or takes more than a
 * second counts as failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_ulong done, failed;
static atomic_bool stop;
static const char *addr, *bind_addr;
static int port;

static int server(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 4096) < 0) {
		perror("connrate server");
		return 1;
	}
	for (;;) {
		int c = accept(s, NULL, NULL);
		char b;
		if (c < 0)
			continue;
		if (read(c, &b, 1) == 1)
			(void)!write(c, &b, 1);
		close(c);
	}
}

static void *client_thread(void *arg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in ba = { .sin_family = AF_INET };
	struct timeval tv = { 1, 0 };
	(void)arg;

	inet_pton(AF_INET, addr, &sa.sin_addr);
	if (bind_addr)
		inet_pton(AF_INET, bind_addr, &ba.sin_addr);
	while (!atomic_load(&stop)) {
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		char b = 'x';
		bool ok = false;
		if (s < 0) {
			atomic_fetch_add(&failed, 1);
			continue;
		}
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((!bind_addr || bind(s, (struct sockaddr *)&ba, sizeof(ba)) == 0) &&
		    connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 && write(s, &b, 1) == 1 &&
		    read(s, &b, 1) == 1 && read(s, &b, 1) == 0)
			ok = true;
		close(s);
		atomic_fetch_add(ok ? &done : &failed, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "server") == 0) {
		port = atoi(argv[2]);
		return server();
	}
	if (argc < 6 || strcmp(argv[1], "client") != 0) {
		fprintf(stderr, "usage: connrate server PORT | client ADDR PORT SECONDS THREADS [BIND]\n");
		return 2;
	}
	addr = argv[2];
	port = atoi(argv[3]);
	int secs = atoi(argv[4]), n = atoi(argv[5]);
	bind_addr = argc > 6 ? argv[6] : NULL;
	if (n < 1 || n > 256 || secs < 1)
		return 2;
	pthread_t t[256];
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, client_thread, NULL);
	struct timespec ts = { secs, 0 };
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	printf("%.0f %lu\n", (double)atomic_load(&done) / secs, atomic_load(&failed));
	return 0;
}
