/* vpcfwctl: see and steer a running vpcfwd through its control socket.
 * One function per verb, a dispatch table; JSON replies printed as tables
 * (or as they are, with --json). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "vpcfw/ctlproto.h"
#include "vpcfw/offline.h"

#define DEFAULT_SOCKET "/run/vpcfw/vpcfwd.sock"

static const char *sock_path = DEFAULT_SOCKET;
static bool as_json;

/* One line of synopsis and one of meaning per verb: `help`, usage errors
 * and the summary all print from here. */
static const struct verb_help {
	const char *name, *synopsis, *what;
} helps[] = {
	{ "status", "status", "version, uptime, generation, queues, conntrack" },
	{ "stats", "stats", "counters per NACL rule, SG rule, interface, reason, queue, and losses" },
	{ "flows", "flows [-i IFACE] [-a ADDR] [-p PORT] [-n LIMIT]", "tracked flows" },
	{ "explain", "explain [-c PATH]... [--in IFACE] [--out IFACE] [--sport N] PROTO SRC DST "
	  "[PORT|TYPE[/CODE]]", "every stage for a new flow's first packet" },
	{ "reload", "reload", "reload the configuration (admin)" },
	{ "check-config", "check-config [-c PATH]...",
	  "compile the daemon's files (or these, here, without a daemon) without using them" },
	{ "audit", "audit [on|off]", "accept everything, count what would be refused (admin)" },
	{ "metrics", "metrics", "Prometheus text format" },
	{ "shadow", "shadow load PATH | shadow report [-n LIMIT] | shadow clear",
	  "evaluate a candidate configuration (read here, sent to the daemon) beside the "
	  "running one; load and clear: admin" },
	{ "diff", "diff -c CURRENT... -c2 CANDIDATE... --traffic FILE|DIR... [-n LIMIT] [--threads 1|2]",
	  "flows of flow logs or captures whose verdict the candidate changes, by rule "
	  "(exit 0: none, 1: some, 2: error)" },
	{ "help", "help [VERB]", "this text, or one verb's" },
};

static const struct verb_help *help_of(const char *verb)
{
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
		if (!strcmp(helps[i].name, verb))
			return &helps[i];
	return NULL;
}

static void usage(FILE *out)
{
	fputs("usage: vpcfwctl [-s SOCKET] [--json] VERB [ARGS]\n", out);
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
		fprintf(out, "  %s\n      %s\n", helps[i].synopsis, helps[i].what);
}

static void vdie(int status, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0), noreturn));
static void vdie(int status, const char *fmt, va_list ap)
{
	fputs("vpcfwctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	exit(status);
}

/* A failure (the daemon, a file, the system): exit status 1. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdie(1, fmt, ap);
}

/* A usage error: exit status 2, as vpcfwctl(8) says. */
static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdie(2, fmt, ap);
}

/* The usage of verb as a usage error. */
static void verb_usage(const char *verb) __attribute__((noreturn));
static void verb_usage(const char *verb)
{
	const struct verb_help *h = help_of(verb);
	usage_error("usage: vpcfwctl %s", h ? h->synopsis : verb);
}

/* Writes s and a newline to fd; 0, or the errno of the failure.  A refused
 * peer is answered and closed at once: a closed pipe is not a failure, the
 * answer is read next. */
static int send_request(int fd, const char *s, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, s + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
			return 0;
		if (w < 0)
			return errno;
		off += (size_t)w;
	}
	if (write(fd, "\n", 1) < 0 && errno != EPIPE && errno != ECONNRESET)
		return errno;
	return 0;
}

/* Sends one request, returns the reply (exits on transport errors).  The
 * request is freed before any exit, so that leak checkers stay quiet. */
static json_t *call(json_t *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		json_decref(req);
		die("socket path too long: %s", sock_path);
	}
	char *s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!s)
		die("out of memory");
	size_t len = strlen(s);
	if (len >= CTL_MAX_CONFIG) {
		free(s);
		die("the request is larger than the daemon takes (%d MB)", CTL_MAX_CONFIG >> 20);
	}
	strcpy(sa.sun_path, sock_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;
		free(s);
		die("cannot connect to %s: %s (is vpcfwd running? -s SOCKET)", sock_path,
		    strerror(err));
	}
	int err = send_request(fd, s, len);
	free(s);
	if (err)
		die("cannot send to %s: %s", sock_path, strerror(err));
	shutdown(fd, SHUT_WR);

	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n + 65536 > cap) {
			cap = (cap + 65536) * 2;
			buf = realloc(buf, cap);
			if (!buf)
				die("out of memory");
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == ECONNRESET && n == 0)
			die("vpcfwd closed the connection without an answer");
		if (r < 0 && errno == ECONNRESET)
			break;
		if (r < 0)
			die("cannot read from %s: %s", sock_path, strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
		if (memchr(buf + n - (size_t)r, '\n', (size_t)r))
			break;
	}
	close(fd);
	json_error_t e;
	json_t *reply = json_loadb(buf ? buf : "", n, JSON_DISABLE_EOF_CHECK, &e);
	free(buf);
	if (!reply && n == 0)
		die("vpcfwd closed the connection without an answer");
	if (!reply)
		die("bad reply from vpcfwd: %s", e.text);
	return reply;
}

/* Prints --json or checks "ok"; returns the reply for text output, or
 * NULL when done. */
static json_t *answer(json_t *reply)
{
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *e = json_string_value(json_object_get(reply, "error"));
		if (as_json) {
			json_dumpf(reply, stdout, JSON_INDENT(2));
			putchar('\n');
		}
		fprintf(stderr, "vpcfwctl: %s\n", e ? e : "request failed");
		json_decref(reply);
		exit(1);
	}
	if (as_json) {
		json_dumpf(reply, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(reply);
		return NULL;
	}
	return reply;
}

static json_int_t num(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static const char *str(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static void no_args(int argc, char **argv)
{
	if (argc > 1)
		usage_error("%s takes no arguments ('%s')", argv[0], argv[1]);
}

static int c_status(int argc, char **argv)
{
	no_args(argc, argv);
	json_t *r = answer(call(json_pack("{s:s}", "verb", "status")));
	if (!r)
		return 0;
	json_int_t up = num(r, "uptime");
	printf("version                         %s\n", str(r, "version"));
	printf("uptime                          %lldd %02lld:%02lld:%02lld\n", up / 86400,
	       up / 3600 % 24, up / 60 % 60, up % 60);
	printf("policy generation               %lld\n", num(r, "generation"));
	printf("interfaces                      %lld\n", num(r, "interfaces"));
	printf("audit mode                      %s\n",
	       json_is_true(json_object_get(r, "audit")) ? "on" : "off");
	printf("shadow policy                   %s\n", str(r, "shadow"));
	printf("conntrack used                  %lld of %lld\n", num(r, "conntrack_used"),
	       num(r, "conntrack_max"));
	printf("conntrack_allowance_available   %lld\n", num(r, "conntrack_allowance_available"));
	printf("conntrack_allowance_exceeded    %lld\n", num(r, "conntrack_allowance_exceeded"));
	printf("kernel queue drops              %lld (queue full), %lld (socket full)\n",
	       num(r, "kernel_queue_dropped"), num(r, "kernel_socket_dropped"));
	json_t *sf = json_object_get(r, "state_file");
	if (json_is_object(sf)) {
		if (num(sf, "age_seconds") < 0)
			printf("state file                      not written yet\n");
		else
			printf("state file                      written %llds ago, %lld flows\n",
			       num(sf, "age_seconds"), num(sf, "flows_written"));
		printf("state restored at start         %lld flows%s; dropped %lld expired, %lld "
		       "interface gone, %lld other\n", num(sf, "restored"),
		       json_is_true(json_object_get(sf, "refused")) ? " (file refused)" : "",
		       num(sf, "dropped_expired"), num(sf, "dropped_interface_gone"),
		       num(sf, "dropped_other"));
		printf("flow logs in the state file     %lld entries of open windows written; "
		       "%lld restored, %lld dropped at start\n", num(sf, "flowlog_entries_written"),
		       num(sf, "flowlog_entries_restored"), num(sf, "flowlog_entries_dropped"));
	}
	json_t *of = json_object_get(r, "offload");
	if (json_is_object(of)) {
		printf("offload                         %lld marks set, %lld packets missed, %lld "
		       "without a kernel entry; %lld take-backs (%lld entries, %lld failed)\n",
		       num(of, "marked"), num(of, "missed"), num(of, "no_conntrack"),
		       num(of, "takebacks"), num(of, "taken_back"), num(of, "takeback_errors"));
		if (*str(of, "hint"))
			printf("offload hint                    %s\n", str(of, "hint"));
	}
	json_t *sy = json_object_get(r, "sync");
	if (json_is_object(sy)) {
		json_t *pe = json_object_get(sy, "peer"), *bk = json_object_get(sy, "bulk");
		json_t *se = json_object_get(sy, "sent"), *re = json_object_get(sy, "received");
		json_t *fl = json_object_get(sy, "flows"), *dr = json_object_get(re, "dropped");
		printf("sync                            node %lld, %s (bulk sync %s: %lld of %lld flows "
		       "in %lld ms)\n", num(sy, "node"), json_string_value(json_object_get(sy, "state")),
		       json_string_value(json_object_get(bk, "state")), num(bk, "received"),
		       num(bk, "total"), num(bk, "ms"));
		if (num(pe, "last_heard_ms") < 0)
			printf("sync peer                       never heard\n");
		else
			printf("sync peer                       node %lld, %s%s, heard %lld ms ago, lag %lld us\n",
			       num(pe, "node"), json_is_true(json_object_get(pe, "up")) ? "up" : "DOWN",
			       json_is_true(json_object_get(pe, "ready")) ? " and ready" : "",
			       num(pe, "last_heard_ms"), num(sy, "lag_us"));
		long long dropped = 0;
		const char *k;
		json_t *v;
		json_object_foreach(dr, k, v)
			dropped += json_integer_value(v);
		printf("sync messages                   sent %lld (%lld records), received %lld (%lld "
		       "records), dropped %lld", num(se, "messages"), num(se, "records"),
		       num(re, "messages"), num(re, "records"), dropped);
		json_object_foreach(dr, k, v)
			if (json_integer_value(v))
				printf(" %s %lld", k, (long long)json_integer_value(v));
		printf("\nsync flows                      applied %lld, failed %lld, changes lost %lld, "
		       "served %lld bulk syncs\n", num(fl, "applied"), num(fl, "apply_failed") +
		       num(fl, "unknown_interface") + num(fl, "no_queue") + num(fl, "overflow"),
		       num(fl, "changes_lost"), num(bk, "served"));
	}
	printf("\n%-6s %12s %10s %10s %12s %12s\n", "queue", "packets", "flows", "waiting",
	       "drop-full", "drop-socket");
	size_t i;
	json_t *q;
	json_array_foreach(json_object_get(r, "queues"), i, q)
		printf("%-6lld %12lld %10lld %10lld %12lld %12lld\n", num(q, "queue"),
		       num(q, "packets"), num(q, "flows"), num(q, "kernel_waiting"),
		       num(q, "kernel_queue_dropped"), num(q, "kernel_socket_dropped"));
	json_decref(r);
	return 0;
}

static int c_stats(int argc, char **argv)
{
	size_t i;
	json_t *x;

	no_args(argc, argv);
	json_t *r = answer(call(json_pack("{s:s}", "verb", "stats")));
	if (!r)
		return 0;
	printf("generation %lld\n\n%-24s %-9s %-6s %12s\n", num(r, "generation"), "network ACL",
	       "direction", "rule", "packets");
	json_array_foreach(json_object_get(r, "nacl_rules"), i, x)
		printf("%-24s %-9s %-6s %12lld\n", str(x, "acl"), str(x, "direction"), str(x, "rule"),
		       num(x, "packets"));
	printf("\n%-24s %-24s %-8s %-24s %-5s %12s\n", "interface", "security group", "dir",
	       "rule", "index", "packets");
	json_array_foreach(json_object_get(r, "sg_rules"), i, x)
		printf("%-24s %-24s %-8s %-24s %-5lld %12lld\n", str(x, "eni"), str(x, "sg"),
		       str(x, "direction"), str(x, "rule"), num(x, "index"), num(x, "packets"));
	printf("\n%-24s %12s %12s %12s %12s\n", "interface", "in-accept", "in-reject", "out-accept",
	       "out-reject");
	json_array_foreach(json_object_get(r, "interfaces"), i, x)
		printf("%-24s %12lld %12lld %12lld %12lld\n", str(x, "eni"), num(x, "in_accepted"),
		       num(x, "in_rejected"), num(x, "out_accepted"), num(x, "out_rejected"));
	printf("\n%-18s %-36s %12s\n", "stage", "reason", "packets");
	json_array_foreach(json_object_get(r, "reasons"), i, x)
		printf("%-18s %-36s %12lld\n", str(x, "stage"), str(x, "reason"), num(x, "packets"));
	printf("\n%-6s %12s %12s %12s %10s %8s %10s\n", "queue", "packets", "accepted", "rejected",
	       "batches", "enobufs", "audit");
	json_array_foreach(json_object_get(r, "queues"), i, x)
		printf("%-6lld %12lld %12lld %12lld %10lld %8lld %10lld\n", num(x, "queue"),
		       num(x, "packets"), num(x, "accepted"), num(x, "rejected"), num(x, "batches"),
		       num(x, "enobufs"), num(x, "audit_would_refuse"));
	printf("\n%-6s %10s %10s %10s %10s\n", "queue", "truncated", "netlink", "receive", "send");
	json_array_foreach(json_object_get(r, "queues"), i, x)
		printf("%-6lld %10lld %10lld %10lld %10lld\n", num(x, "queue"), num(x, "truncated"),
		       num(x, "netlink_errors"), num(x, "receive_errors"), num(x, "send_errors"));
	/* every loss, by name; then what the outputs carried */
	const char *key;
	const char *const sect[4][2] = { { "losses", "lost" }, { "control", "control socket" },
					 { "outputs", "outputs" }, { "conntrack", "conntrack" } };
	for (int k = 0; k < 4; k++) {
		json_t *o = json_object_get(r, sect[k][0]);
		if (!json_is_object(o))
			continue;
		printf("\n%-36s %12s\n", sect[k][1], "count");
		json_object_foreach(o, key, x)
			printf("%-36s %12lld\n", key, (long long)json_integer_value(x));
	}
	json_decref(r);
	return 0;
}

static long number(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max)
		usage_error("%s '%s' is not a number %ld-%ld", what, s, min, max);
	return v;
}

static int c_flows(int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "verb", "flows");
	int ch;

	while ((ch = getopt(argc, argv, "+i:a:p:n:")) != -1) {
		switch (ch) {
		case 'i': json_object_set_new(req, "interface", json_string(optarg)); break;
		case 'a': json_object_set_new(req, "address", json_string(optarg)); break;
		case 'p': json_object_set_new(req, "port", json_integer(number(optarg, 0, 65535, "port"))); break;
		case 'n': json_object_set_new(req, "limit", json_integer(number(optarg, 0, CTL_FLOWS_MAX, "limit"))); break;
		default: verb_usage("flows");
		}
	}
	if (optind < argc)
		usage_error("flows: unexpected '%s'", argv[optind]);
	json_t *r = answer(call(req));
	if (!r)
		return 0;
	size_t i;
	json_t *x;
	printf("%-22s %-5s %-40s %-40s %-12s %-5s %8s\n", "interface", "proto", "source",
	       "destination", "tcp state", "reply", "expires");
	json_array_foreach(json_object_get(r, "flows"), i, x) {
		char s[64], d[64];
		snprintf(s, sizeof(s), "%s.%lld", str(x, "src"), num(x, "sport"));
		snprintf(d, sizeof(d), "%s.%lld", str(x, "dst"), num(x, "dport"));
		printf("%-22s %-5lld %-40s %-40s %-12s %-5s %7llds\n", str(x, "eni"), num(x, "proto"),
		       s, d, str(x, "tcp_state"),
		       json_is_true(json_object_get(x, "seen_reply")) ? "yes" : "no",
		       num(x, "expires_in"));
	}
	printf("%lld flow(s) matched, %zu shown\n", num(r, "matched"),
	       json_array_size(json_object_get(r, "flows")));
	json_decref(r);
	return 0;
}

static void print_explain(json_t *r)
{
	size_t i;
	json_t *x;

	printf("%s  %s (%s)%s%s\n", str(r, "verdict"), str(r, "reason"), str(r, "stage"),
	       *str(r, "rule") ? ": " : "", str(r, "rule"));
	printf("from %s in %s to %s in %s\n\n", str(r, "src_interface"), str(r, "src_subnet"),
	       str(r, "dst_interface"), str(r, "dst_subnet"));
	json_array_foreach(json_object_get(r, "steps"), i, x)
		printf("%zu. %-18s %-12s %s\n", i + 1, str(x, "stage"), str(x, "outcome"),
		       str(x, "what"));
}

static int c_explain(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "in", required_argument, NULL, 'I' },
		{ "out", required_argument, NULL, 'O' },
		{ "sport", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	const char *paths[64];
	int n_paths = 0, ch;
	json_t *req = json_pack("{s:s, s:i}", "verb", "explain", "sport", 40000);

	while ((ch = getopt_long(argc, argv, "+c:", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (n_paths == 64)
				usage_error("at most 64 -c");
			paths[n_paths++] = optarg;
			break;
		case 'I': json_object_set_new(req, "in", json_string(optarg)); break;
		case 'O': json_object_set_new(req, "out", json_string(optarg)); break;
		case 'S': json_object_set_new(req, "sport", json_integer(number(optarg, 0, 65535, "port"))); break;
		default: verb_usage("explain");
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 3 || argc > 4)
		usage_error("explain needs PROTO SRC DST [PORT|TYPE[/CODE]], e.g. explain tcp "
			    "203.0.113.7 10.0.1.10 443");
	json_object_set_new(req, "proto", json_string(argv[0]));
	json_object_set_new(req, "src", json_string(argv[1]));
	json_object_set_new(req, "dst", json_string(argv[2]));
	bool icmp = !strcmp(argv[0], "icmp") || !strcmp(argv[0], "icmpv6");
	if (icmp) {
		/* default: echo request */
		long type = strchr(argv[1], ':') ? 128 : 8, code = 0;
		if (argc == 4) {
			char *slash = strchr(argv[3], '/');
			if (slash) {
				*slash = '\0';
				code = number(slash + 1, 0, 255, "ICMP code");
			}
			type = number(argv[3], 0, 255, "ICMP type");
		}
		json_object_set_new(req, "sport", json_integer(type));
		json_object_set_new(req, "dport", json_integer(code));
	} else {
		json_object_set_new(req, "dport", json_integer(argc == 4 ? number(argv[3], 0, 65535, "port") : 0));
	}

	json_t *r;
	if (n_paths) {
		json_t *msgs;
		r = offline_explain(paths, n_paths, req, &msgs);
		if (!r) {
			size_t i;
			json_t *m;
			json_array_foreach(msgs, i, m)
				fprintf(stderr, "%s: %s\n", str(m, "level"), str(m, "text"));
			json_decref(msgs);
			json_decref(req);
			die("the configuration is refused");
		}
		json_decref(msgs);
		json_decref(req);
	} else {
		r = call(req);
	}
	r = answer(r);
	if (r) {
		print_explain(r);
		json_decref(r);
	}
	return 0;
}

static int c_reload(int argc, char **argv)
{
	no_args(argc, argv);
	json_t *r = answer(call(json_pack("{s:s}", "verb", "reload")));
	if (r) {
		printf("configuration %lld in force\n", num(r, "generation"));
		json_decref(r);
	}
	return 0;
}

static int c_check(int argc, char **argv)
{
	const char *paths[64];
	int n_paths = 0, ch;

	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		if (ch != 'c' || n_paths == 64)
			verb_usage("check-config");
		paths[n_paths++] = optarg;
	}
	if (optind < argc)
		usage_error("check-config: unexpected '%s'", argv[optind]);
	json_t *r;
	if (n_paths) {
		r = offline_check_config(paths, n_paths);
	} else {
		r = call(json_pack("{s:s}", "verb", "check-config"));
	}
	bool valid = json_is_true(json_object_get(r, "valid"));
	r = answer(r);
	if (r) {
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(r, "messages"), i, m)
			fprintf(stderr, "%s: %s\n", str(m, "level"), str(m, "text"));
		if (valid)
			puts("configuration valid");
		else
			fputs("vpcfwctl: configuration refused\n", stderr);
		json_decref(r);
	}
	return valid ? 0 : 1;
}

static int c_audit(int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "verb", "audit");

	if (argc > 2)
		verb_usage("audit");
	if (argc == 2) {
		if (strcmp(argv[1], "on") && strcmp(argv[1], "off"))
			usage_error("audit takes on or off, not '%s'", argv[1]);
		json_object_set_new(req, "on", json_boolean(!strcmp(argv[1], "on")));
	}
	json_t *r = answer(call(req));
	if (r) {
		printf("audit mode %s\n", json_is_true(json_object_get(r, "audit")) ? "on" : "off");
		json_decref(r);
	}
	return 0;
}

static int c_metrics(int argc, char **argv)
{
	no_args(argc, argv);
	json_t *r = answer(call(json_pack("{s:s}", "verb", "metrics")));
	if (r) {
		fputs(str(r, "text"), stdout);
		json_decref(r);
	}
	return 0;
}

static void print_side(const char *name, const json_t *x)
{
	printf("      %-10s %s %s %s%s%s\n", name, str(x, "verdict"), str(x, "stage"),
	       str(x, "reason"), *str(x, "rule") && strcmp(str(x, "rule"), "-") ? ": " : "",
	       str(x, "rule"));
}

static int c_shadow_report(int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "verb", "shadow-report");
	int ch;

	while ((ch = getopt(argc, argv, "+n:")) != -1) {
		if (ch != 'n')
			verb_usage("shadow");
		json_object_set_new(req, "limit",
				    json_integer(number(optarg, 0, CTL_FLOWS_MAX, "limit")));
	}
	if (optind < argc)
		usage_error("shadow report: unexpected '%s'", argv[optind]);
	json_t *r = answer(call(req));
	if (!r)
		return 0;
	printf("candidate %s, loaded %llds ago\n", str(r, "path"), num(r, "loaded_seconds_ago"));
	printf("%lld packets compared: the candidate accepts %lld, rejects %lld; %lld decided "
	       "differently (%lld of them not itemised: table full)\n", num(r, "compared"),
	       num(r, "candidate_accepted"), num(r, "candidate_rejected"), num(r, "differing"),
	       num(r, "lost"));
	printf("%lld flows copied from the running table at the load (%lld did not fit)\n",
	       num(r, "seeded_flows"), num(r, "unseeded_flows"));
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(r, "differences"), i, d) {
		const json_t *sm = json_object_get(d, "sample");
		printf("\n%10lld %s by the candidate, e.g. proto %lld %s", num(d, "packets"),
		       str(d, "change"), num(sm, "proto"), str(sm, "src"));
		if (json_object_get(sm, "sport"))
			printf(".%lld -> %s.%lld\n", num(sm, "sport"), str(sm, "dst"), num(sm, "dport"));
		else
			printf(" -> %s type %lld code %lld\n", str(sm, "dst"), num(sm, "icmp_type"),
			       num(sm, "icmp_code"));
		print_side("running:", json_object_get(d, "running"));
		print_side("candidate:", json_object_get(d, "candidate"));
	}
	json_decref(r);
	return 0;
}

static int c_shadow(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "report")) {
		optind = 1;
		return c_shadow_report(argc - 1, argv + 1);
	}
	if (argc == 2 && !strcmp(argv[1], "clear")) {
		json_t *r = answer(call(json_pack("{s:s}", "verb", "shadow-clear")));
		if (r) {
			puts("shadow policy cleared");
			json_decref(r);
		}
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "load"))
		verb_usage("shadow");
	/* read here, with this user's rights: the daemon opens no path for us */
	char err[512];
	json_t *files = ctl_read_config_files(argv[2], err, sizeof(err));
	if (!files)
		die("%s", err);
	char *path = realpath(argv[2], NULL);
	json_t *r = call(json_pack("{s:s, s:s, s:o}", "verb", "shadow-load", "path",
				   path ? path : argv[2], "files", files));
	free(path);
	size_t i;
	json_t *m;
	if (!as_json)
		json_array_foreach(json_object_get(r, "messages"), i, m)
			fprintf(stderr, "%s: %s\n", str(m, "level"), str(m, "text"));
	r = answer(r);
	if (r) {
		printf("shadow policy %s loaded (%lld interfaces); see vpcfwctl shadow report\n",
		       str(r, "path"), num(r, "interfaces"));
		json_decref(r);
	}
	return 0;
}

static int c_help(int argc, char **argv)
{
	if (argc == 1) {
		usage(stdout);
		return 0;
	}
	if (argc > 2)
		verb_usage("help");
	const struct verb_help *h = help_of(argv[1]);
	if (!h)
		usage_error("help: unknown verb '%s'", argv[1]);
	printf("usage: vpcfwctl %s\n  %s\nSee vpcfwctl(8).\n", h->synopsis, h->what);
	return 0;
}

/* -c2 is one option (not -c with "2"), so the arguments are read here. */
static int c_diff(int argc, char **argv)
{
	const char *cur[64], *cand[64];
	const char **traffic = calloc((size_t)argc, sizeof(*traffic));
	int n_cur = 0, n_cand = 0, n_traffic = 0, limit = 20, threads = 0;
	bool in_traffic = false;

	if (!traffic)
		die("out of memory");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_arg = i + 1 < argc;
		if (!strcmp(a, "-c") || !strcmp(a, "--current")) {
			if (!has_arg || n_cur == 64)
				verb_usage("diff");
			cur[n_cur++] = argv[++i];
			in_traffic = false;
		} else if (!strcmp(a, "-c2") || !strcmp(a, "--candidate")) {
			if (!has_arg || n_cand == 64)
				verb_usage("diff");
			cand[n_cand++] = argv[++i];
			in_traffic = false;
		} else if (!strcmp(a, "-n")) {
			if (!has_arg)
				verb_usage("diff");
			limit = (int)number(argv[++i], 0, 1000000, "limit");
			in_traffic = false;
		} else if (!strcmp(a, "--threads")) {
			if (!has_arg)
				verb_usage("diff");
			threads = (int)number(argv[++i], 1, 2, "threads");
			in_traffic = false;
		} else if (!strcmp(a, "--traffic")) {
			in_traffic = true;
		} else if (in_traffic && (a[0] != '-' || !a[1])) {
			traffic[n_traffic++] = a;
		} else {
			usage_error("diff: unexpected '%s'", a);
		}
	}
	if (!n_cur || !n_cand || !n_traffic) {
		free(traffic);
		usage_error("diff needs -c CURRENT, -c2 CANDIDATE and --traffic FILES, e.g. diff -c "
			    "/etc/vpcfw -c2 next.json --traffic flowlogs/");
	}
	struct offline_diff o = { .current = cur, .n_current = n_cur, .candidate = cand,
				  .n_candidate = n_cand, .traffic = traffic, .n_traffic = n_traffic,
				  .json = as_json, .limit = limit, .out = stdout, .err = stderr,
				  .threads = threads };
	int rc = offline_diff(&o);
	free(traffic);
	if (fflush(stdout) != 0)
		rc = 2;
	return rc;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} cmds[] = {
	{ "status", c_status },
	{ "stats", c_stats },
	{ "flows", c_flows },
	{ "explain", c_explain },
	{ "reload", c_reload },
	{ "check-config", c_check },
	{ "audit", c_audit },
	{ "metrics", c_metrics },
	{ "shadow", c_shadow },
	{ "diff", c_diff },
	{ "help", c_help },
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt_long(argc, argv, "+s:jhV", lo, NULL)) != -1) {
		switch (ch) {
		case 's': sock_path = optarg; break;
		case 'j': as_json = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("vpcfwctl %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	/* --json may also follow the verb */
	for (int i = optind + 1; i < argc; i++)
		if (!strcmp(argv[i], "--json")) {
			as_json = true;
			memmove(&argv[i], &argv[i + 1], sizeof(*argv) * (size_t)(argc - i));
			argc--;
			i--;
		}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i].name, argv[optind])) {
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;
			optind = 1;
			return cmds[i].fn(sub_argc, sub_argv);
		}
	fprintf(stderr, "vpcfwctl: unknown verb '%s'\n", argv[optind]);
	usage(stderr);
	return 2;
}
