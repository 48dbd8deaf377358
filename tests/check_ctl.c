/* The control socket's verbs with a stand-in daemon: counters summed over
 * workers are exact, access by peer class, metrics in the text format. */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/ctl.h"
#include "vpcfw/explain.h"
#include "vpcfw/load.h"

enum { WORKERS = 2 };

static struct policy *pol;
static struct conntrack *cts[WORKERS];
static struct pipeline pls[WORKERS];
static counter_t *hits[WORKERS];
static int reloads;

static const struct policy *f_policy(void *ctx, uint64_t *gen)
{
	(void)ctx;
	*gen = 7;
	return pol;
}

static void f_worker(void *ctx, int i, struct ctl_worker_stats *out)
{
	(void)ctx;
	memset(out, 0, sizeof(*out));
	out->queue = (uint16_t)i;
	pipeline_get_stats(&pls[i], &out->pl);
	ct_get_stats(cts[i], &out->ct);
	/* distinct per queue and cause: the metrics must not mix them up */
	out->enobufs = 10u + (uint64_t)i;
	out->truncated = 20u + (uint64_t)i;
	out->netlink_errors = 30u + (uint64_t)i;
	out->recv_errors = 40u + (uint64_t)i;
	out->send_errors = 50u + (uint64_t)i;
}

static const counter_t *f_hits(void *ctx, int i)
{
	(void)ctx;
	return hits[i];
}

static bool f_reload(void *ctx, const char *who, char *msg, size_t len)
{
	(void)ctx; (void)who; (void)msg; (void)len;
	reloads++;
	return true;
}

static bool f_audit(void *ctx)
{
	(void)ctx;
	return false;
}

static struct shadow *installed;
static int shadow_swaps;

static struct shadow *f_set_shadow(void *ctx, struct shadow *s)
{
	(void)ctx;
	struct shadow *old = installed;
	installed = s;
	shadow_swaps++;
	return old;
}

static const struct ctl_daemon fake = {
	.n_workers = WORKERS, .policy = f_policy, .worker = f_worker, .hits = f_hits,
	.reload = f_reload, .audit = f_audit, .set_shadow = f_set_shadow,
};

static void setup(void)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	json_t *msgs;

	snprintf(path, sizeof(path), "%s/conf/three-tier", top ? top : "..");
	const char *paths[] = { path };
	pol = policy_load_report(paths, 1, false, &msgs);
	json_decref(msgs);
	ck_assert_ptr_nonnull(pol);
	for (int i = 0; i < WORKERS; i++) {
		cts[i] = ct_create(1024);
		pipeline_init(&pls[i], cts[i]);
		hits[i] = calloc(pol->n_hits, sizeof(counter_t));
		pls[i].hits = hits[i];
		pls[i].n_hits = pol->n_hits;
	}
}

static void teardown(void)
{
	for (int i = 0; i < WORKERS; i++) {
		ct_destroy(cts[i]);
		free(hits[i]);
	}
	policy_free(pol);
	policy_intern_reset();
}

static json_int_t find(json_t *arr, const char *k1, const char *v1, const char *k2, const char *v2,
		       json_int_t rule, const char *field)
{
	size_t i;
	json_t *x;
	json_int_t sum = -1;
	json_array_foreach(arr, i, x) {
		if (strcmp(json_string_value(json_object_get(x, k1)), v1))
			continue;
		if (k2 && strcmp(json_string_value(json_object_get(x, k2)), v2))
			continue;
		if (rule >= 0 && json_integer_value(json_object_get(x, "index")) != rule)
			continue;
		sum = (sum < 0 ? 0 : sum) + json_integer_value(json_object_get(x, field));
	}
	return sum;
}

/* 7 SSH connections from the corporate network and 4 from the internet to
 * web, spread over two workers: web's IpPermissions[2] counts 7 (the SYNs;
 * the replies are tracked), web counts 7 + 7 accepted in, 4 refused in. */
/* Issue #9 item 9: the first put into an empty buffer gave vsnprintf
 * NULL + 0 (UBSan: "applying zero offset to null pointer"), and an empty
 * first text made it realloc to 0 bytes, which frees the buffer. */
START_TEST(test_text_put_from_empty)
{
	struct ctl_text t = { 0 };

	ctl_text_put(&t, "%s", "");
	ck_assert(!t.oom);
	ck_assert_ptr_nonnull(t.s);
	ck_assert_uint_eq(t.len, 0);
	ck_assert_str_eq(t.s, "");
	ctl_text_put(&t, "a%d", 1);
	ck_assert_str_eq(t.s, "a1");
	free(t.s);

	struct ctl_text u = { 0 };
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 50; i++)
		ctl_text_put(&u, "%s\n", big);
	ck_assert(!u.oom);
	ck_assert_uint_eq(u.len, 50 * sizeof(big));
	ck_assert_uint_eq(strlen(u.s), u.len);
	ck_assert_uint_gt(u.cap, u.len);
	free(u.s);
}
END_TEST

START_TEST(test_counters_exact)
{
	struct verdict v;
	for (int k = 0; k < 7; k++) {
		struct pipeline *pl = &pls[k % WORKERS];
		struct packet syn = tu_pkt("198.51.100.20", "10.0.1.10", 6, 50000 + k, 22, TCP_SYN);
		struct packet sa = tu_pkt("10.0.1.10", "198.51.100.20", 6, 22, 50000 + k,
					  TCP_SYN | TCP_ACK);
		pipeline_eval(pl, pol, &syn, NULL, tu_sec(k), &v);
		ck_assert(v.accept);
		pipeline_eval(pl, pol, &sa, NULL, tu_sec(k), &v);
		ck_assert(v.accept);
		ck_assert_int_eq(v.reason, REASON_TRACKED_FLOW);
		struct packet ack = tu_pkt("198.51.100.20", "10.0.1.10", 6, 50000 + k, 22, TCP_ACK);
		pipeline_eval(pl, pol, &ack, NULL, tu_sec(k), &v);
		ck_assert(v.accept);
	}
	for (int k = 0; k < 4; k++) {
		struct packet syn = tu_pkt("203.0.113.7", "10.0.1.10", 6, 40000 + k, 22, TCP_SYN);
		pipeline_eval(&pls[k % WORKERS], pol, &syn, NULL, tu_sec(10), &v);
		ck_assert(!v.accept);
	}
	json_t *s = ctl_stats(&fake);
	json_t *sg = json_object_get(s, "sg_rules"), *ifs = json_object_get(s, "interfaces");
	ck_assert_int_eq(find(sg, "eni", "eni-0000000000web01", "direction", "ingress", 2, "packets"), 7);
	ck_assert_int_eq(find(sg, "eni", "eni-0000000000web01", "direction", "ingress", 0, "packets"), 0);
	ck_assert_int_eq(find(ifs, "eni", "eni-0000000000web01", NULL, NULL, -1, "in_accepted"), 14);
	ck_assert_int_eq(find(ifs, "eni", "eni-0000000000web01", NULL, NULL, -1, "in_rejected"), 4);
	ck_assert_int_eq(find(ifs, "eni", "eni-0000000000web01", NULL, NULL, -1, "out_accepted"), 7);
	ck_assert_int_eq(find(json_object_get(s, "reasons"), "stage", "sg-ingress", "reason",
			      "ENI_SG_RULES_MISMATCH", -1, "packets"), 4);
	json_decref(s);
}
END_TEST

START_TEST(test_access)
{
	char dir[] = "/tmp/ctltestXXXXXX", path[64], err[256];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	struct ctl *c = ctl_open(&fake, path, NULL, NULL, NULL, NULL, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	json_t *status = json_pack("{s:s}", "verb", "status"), *reload = json_pack("{s:s}", "verb", "reload");
	struct ctl_peer none = { .uid = 1000 }, reader = { .uid = 1001, .reader = true },
		admin = { .uid = 1002, .reader = true, .admin = true };
	json_t *r;

	r = ctl_handle(c, &none, status);
	ck_assert(json_is_false(json_object_get(r, "ok")));
	json_decref(r);
	r = ctl_handle(c, &reader, status);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "generation")), 7);
	json_decref(r);
	r = ctl_handle(c, &reader, reload);
	ck_assert(json_is_false(json_object_get(r, "ok")));
	ck_assert_int_eq(reloads, 0);
	json_decref(r);
	r = ctl_handle(c, &admin, reload);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_int_eq(reloads, 1);
	json_decref(r);
	ck_assert_int_eq(ctl_refused(c), 2);
	json_decref(status);
	json_decref(reload);
	ctl_close(c);
	ck_assert_int_eq(access(path, F_OK), -1);
	rmdir(dir);
}
END_TEST

/* issue #9: MetricsFile never writes or chmods through a link planted at
 * PATH or at its temporary; it is written 0644 beside them otherwise. */
START_TEST(test_metrics_file_safe)
{
	char dir[] = "/tmp/check_ctl.XXXXXX", path[128], victim[128], tmp[140];
	struct stat st;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vpcfw.prom", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *v = fopen(victim, "w");
	ck_assert_ptr_nonnull(v);
	fputs("secret\n", v);
	fclose(v);
	chmod(victim, 0600);
	ck_assert_int_eq(symlink(victim, path), 0);
	ck_assert_int_eq(symlink(victim, tmp), 0); /* the old fixed temporary name */
	ck_assert_int_eq(ctl_write_metrics(&fake, 0, path), -1);
	ck_assert_int_eq(stat(victim, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(st.st_size, 7);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	unlink(path);
	ck_assert_int_eq(ctl_write_metrics(&fake, 0, path), 0);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0644);
	ck_assert_int_eq(stat(victim, &st), 0);
	ck_assert_int_eq(st.st_size, 7);
	unlink(path);
	unlink(tmp);
	unlink(victim);
	ck_assert_int_eq(rmdir(dir), 0); /* no temporary left behind */
}
END_TEST

START_TEST(test_fairness_counters)
{
	/* refusals in two workers' tables: summed in stats and metrics */
	struct ct_fairness rate = { .rate = 1, .v6_prefix = 128 };
	struct ct_fairness share = { .share_pct = 1, .v6_prefix = 128 };     /* 10 of 1024 */
	struct ip_addr a;
	int fam;
	ck_assert(addr_parse("203.0.113.7", &a, &fam));
	ck_assert_int_eq(ct_source_admit(cts[0], &rate, &a, 1, tu_sec(1)), CT_SOURCE_OK);
	ck_assert_int_eq(ct_source_admit(cts[0], &rate, &a, 1, tu_sec(1)), CT_SOURCE_RATE);
	ck_assert_int_eq(ct_source_admit(cts[1], &rate, &a, 1, tu_sec(1)), CT_SOURCE_OK);
	ck_assert_int_eq(ct_source_admit(cts[1], &rate, &a, 1, tu_sec(1)), CT_SOURCE_RATE);
	ck_assert_int_eq(ct_source_admit(cts[1], &rate, &a, 1, tu_sec(1)), CT_SOURCE_RATE);
	for (int i = 0; i < 10; i++) {
		struct ct_tuple t = { .src = a, .dst = a, .sport = (uint16_t)(1000 + i), .dport = 53,
				      .proto = 17 };
		t.dst.lo ^= 1;
		ck_assert_ptr_nonnull(ct_insert(cts[1], 1, &t, ct_hash(&t), 0, NULL, tu_sec(1)));
	}
	ck_assert_int_eq(ct_source_admit(cts[1], &share, &a, 1, tu_sec(1)), CT_SOURCE_SHARE);

	json_t *s = ctl_stats(&fake);
	json_t *ct = json_object_get(s, "conntrack");
	ck_assert_int_eq(json_integer_value(json_object_get(ct, "source_rate_exceeded")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(ct, "source_share_exceeded")), 1);
	ck_assert_ptr_nonnull(json_object_get(ct, "evicted_embryonic"));
	json_decref(s);
	char *m = ctl_metrics(&fake, NULL);
	ck_assert_ptr_nonnull(m);
	static const char *const want[] = {
		"# HELP vpcfw_conntrack_source_rate_exceeded_total ",
		"# TYPE vpcfw_conntrack_source_rate_exceeded_total counter\n",
		"\nvpcfw_conntrack_source_rate_exceeded_total 3\n",
		"# HELP vpcfw_conntrack_source_share_exceeded_total ",
		"# TYPE vpcfw_conntrack_source_share_exceeded_total counter\n",
		"\nvpcfw_conntrack_source_share_exceeded_total 1\n",
		"# TYPE vpcfw_conntrack_evicted_embryonic_total counter\n",
		"\nvpcfw_conntrack_evicted_embryonic_total 0\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(m, want[i]) != NULL, "no %s in the metrics", want[i]);
	free(m);
}
END_TEST

START_TEST(test_metrics_text)
{
	char dir[] = "/tmp/ctlmetricsXXXXXX", path[64], err[256];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	struct ctl *c = ctl_open(&fake, path, NULL, NULL, NULL, NULL, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	struct ctl_peer none = { .uid = 1000 }, reader = { .uid = 1001, .reader = true };
	json_t *reload = json_pack("{s:s}", "verb", "reload");
	for (int i = 0; i < 3; i++) {
		const struct ctl_peer *p = i < 2 ? &none : &reader;
		json_decref(ctl_handle(c, p, reload));
	}
	json_decref(reload);
	char *m = ctl_metrics(&fake, c);
	ctl_close(c);
	rmdir(dir);
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_nonnull(strstr(m, "# TYPE vpcfw_sg_rule_packets_total counter\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_control_refused_total 3\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_control_requests_refused_total{reason=\"permission\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_control_clients_refused_total{reason=\"too_many_clients\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_policy_generation 7\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_queue_errors_total{queue=\"1\",cause=\"enobufs\"} 11\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_queue_errors_total{queue=\"0\",cause=\"truncated\"} 20\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_queue_errors_total{queue=\"1\",cause=\"netlink\"} 31\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_queue_errors_total{queue=\"0\",cause=\"receive\"} 40\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_queue_errors_total{queue=\"1\",cause=\"send\"} 51\n"));
	/* without mirroring or flow logs the loss families are there, at 0 */
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_flowlog_write_errors_total 0\n"));
	ck_assert_ptr_nonnull(strstr(m, "# TYPE vpcfw_mirror_copies_lost_total counter\n"));
	/* promtool, the reference parser and linter, when installed
	 * (tests/setup-debian installs it: Debian's prometheus package) */
	if (system("command -v promtool >/dev/null 2>&1") == 0) {
		FILE *p = popen("promtool check metrics >&2", "w");
		ck_assert_ptr_nonnull(p);
		fputs(m, p);
		ck_assert_int_eq(pclose(p), 0);
	} else {
		fprintf(stderr, "check_ctl: NOTE promtool not installed: metrics checked here only\n");
	}
	/* every line is a comment or "name{...} value" */
	for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		char *sp = strrchr(line, ' ');
		ck_assert_ptr_nonnull(sp);
		char *end;
		strtod(sp + 1, &end);
		ck_assert_msg(*end == '\0', "%s", line);
		ck_assert_msg(!strchr(line, '{') || sp[-1] == '}', "%s", line);
	}
	free(m);
}
END_TEST

static int log_lines;

static void count_log(int prio, const char *msg)
{
	(void)prio;
	(void)msg;
	log_lines++;
}

/* A refusal flood: CTL_LOG_BURST lines in the window, the rest suppressed
 * and counted where monitoring looks (metrics, stats). */
START_TEST(test_log_suppressed_in_metrics)
{
	char dir[] = "/tmp/ctlmetricsXXXXXX", path[64], err[256];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	log_lines = 0;
	struct ctl *c = ctl_open(&fake, path, NULL, NULL, NULL, count_log, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	struct ctl_peer none = { .uid = 1000 }, reader = { .uid = 1001, .reader = true };
	json_t *reload = json_pack("{s:s}", "verb", "reload");
	for (int i = 0; i < CTL_LOG_BURST + 3; i++)
		json_decref(ctl_handle(c, &none, reload));
	json_decref(reload);
	ck_assert_int_eq(log_lines, CTL_LOG_BURST);
	char *m = ctl_metrics(&fake, c);
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_control_log_suppressed_total 3\n"));
	ck_assert_ptr_nonnull(strstr(m, "vpcfw_control_refused_total 8\n"));
	free(m);
	json_t *req = json_pack("{s:s}", "verb", "stats");
	json_t *r = ctl_handle(c, &reader, req);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "losses"),
							    "control_log_suppressed")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "control"),
							    "log_suppressed")), 3);
	json_decref(r);
	json_decref(req);
	ctl_close(c);
	rmdir(dir);
}
END_TEST

/* A candidate: conf/three-tier with the web group's IpPermissions at the
 * given indexes removed, written into dir. */
static void write_candidate(const char *dir, const int *drop, int n_drop)
{
	const char *top = getenv("top_srcdir");
	char src[4096], dst[4096];
	snprintf(src, sizeof(src), "%s/conf/three-tier", top ? top : "..");
	DIR *d = opendir(src);
	ck_assert_ptr_nonnull(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strstr(e->d_name, ".json"))
			continue;
		char in[8192];
		snprintf(in, sizeof(in), "%s/%s", src, e->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", dir, e->d_name);
		json_error_t je;
		json_t *j = json_load_file(in, 0, &je);
		ck_assert_msg(j != NULL, "%s: %s", in, je.text);
		size_t i;
		json_t *g;
		json_array_foreach(json_object_get(j, "SecurityGroups"), i, g) {
			if (strcmp(json_string_value(json_object_get(g, "GroupName")), "web"))
				continue;
			json_t *perms = json_object_get(g, "IpPermissions");
			for (int k = n_drop - 1; k >= 0; k--)  /* highest first */
				ck_assert_int_eq(json_array_remove(perms, (size_t)drop[k]), 0);
		}
		ck_assert_int_eq(json_dump_file(j, dst, 0), 0);
		json_decref(j);
	}
	closedir(d);
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[4096];
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static const struct m_sg *group_named(const struct policy *p, const char *name)
{
	for (int i = 0; i < p->model->n_sgs; i++)
		if (p->model->sgs[i].name && strcmp(p->model->sgs[i].name, name) == 0)
			return &p->model->sgs[i];
	ck_abort_msg("no group %s", name);
	return NULL;
}

/* issue #12: a security-group rule's counters keep their name when another
 * rule is removed before it (the list position shifts, the label does
 * not), and the metrics carry the label, not the position. */
START_TEST(test_sg_labels_stable)
{
	char dir[] = "/tmp/ctllabelXXXXXX";
	const struct m_sg *web = group_named(pol, "web");
	ck_assert_int_ge(web->n_in, 3);
	const char *ssh = web->in[2].label;     /* tcp 22 from the corporate network */
	ck_assert_ptr_nonnull(ssh);
	ck_assert_msg(strncmp(ssh, "rule-", 5) == 0 && strlen(ssh) == 17, "%s", ssh);
	for (int i = 0; i < web->n_in; i++)
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(web->in[i].label, web->in[j].label);

	ck_assert_ptr_nonnull(mkdtemp(dir));
	const int drop[] = { 0 };
	write_candidate(dir, drop, 1);
	const char *paths[] = { dir };
	json_t *msgs;
	struct policy *cand = policy_load_report(paths, 1, false, &msgs);
	json_decref(msgs);
	ck_assert_ptr_nonnull(cand);
	const struct m_sg *web2 = group_named(cand, "web");
	ck_assert_int_eq(web2->n_in, web->n_in - 1);
	ck_assert_int_eq(web2->in[1].index, 1);
	ck_assert_str_eq(web2->in[1].label, ssh);       /* moved from 2 to 1, same name */
	ck_assert_str_eq(web2->in[0].label, web->in[1].label);
	policy_free(cand);
	remove_dir(dir);

	char *m = ctl_metrics(&fake, NULL);
	char want[256];
	snprintf(want, sizeof(want), "vpcfw_sg_rule_packets_total{eni=\"eni-0000000000web01\","
		 "sg=\"sg-0000000000000web\",direction=\"ingress\",rule=\"%s\"} ", ssh);
	ck_assert_msg(strstr(m, want) != NULL, "no %s in\n%s", want, m);
	free(m);
}
END_TEST

/* describe-security-group-rules data names its rules: the label is the
 * SecurityGroupRuleId.  Without ids, the same content twice in a group
 * gets -2; peers in another order are the same rule. */
START_TEST(test_sg_labels_ids)
{
	const char *json =
		"{\"Vpcs\":[{\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.0.0/16\"}],"
		"\"Subnets\":[{\"SubnetId\":\"subnet-a\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.1.0/24\"}],"
		"\"SecurityGroupRules\":["
		" {\"SecurityGroupRuleId\":\"sgr-0123456789abcdef0\",\"GroupId\":\"sg-r\",\"IsEgress\":false,"
		"  \"IpProtocol\":\"tcp\",\"FromPort\":22,\"ToPort\":22,\"CidrIpv4\":\"10.0.0.0/8\"},"
		" {\"SecurityGroupRuleId\":\"sgr-0123456789abcdef1\",\"GroupId\":\"sg-r\",\"IsEgress\":true,"
		"  \"IpProtocol\":\"-1\",\"CidrIpv4\":\"0.0.0.0/0\"}],"
		"\"SecurityGroups\":[{\"GroupId\":\"sg-p\",\"IpPermissions\":["
		"  {\"IpProtocol\":\"tcp\",\"FromPort\":80,\"ToPort\":80,"
		"   \"IpRanges\":[{\"CidrIp\":\"10.0.0.0/8\"},{\"CidrIp\":\"192.0.2.0/24\"}]},"
		"  {\"IpProtocol\":\"tcp\",\"FromPort\":80,\"ToPort\":80,"
		"   \"IpRanges\":[{\"CidrIp\":\"192.0.2.0/24\"},{\"CidrIp\":\"10.0.0.0/8\"}]},"
		"  {\"IpProtocol\":\"tcp\",\"FromPort\":81,\"ToPort\":81,"
		"   \"IpRanges\":[{\"CidrIp\":\"10.0.0.0/8\"}]}]}]}";
	struct policy *p = tu_policy(json);
	const struct m_sg *r = NULL, *q = NULL;
	for (int i = 0; i < p->model->n_sgs; i++) {
		if (strcmp(p->model->sgs[i].id, "sg-r") == 0)
			r = &p->model->sgs[i];
		if (strcmp(p->model->sgs[i].id, "sg-p") == 0)
			q = &p->model->sgs[i];
	}
	ck_assert(r && q);
	ck_assert_int_eq(r->n_in, 1);
	ck_assert_int_eq(r->n_out, 1);
	ck_assert_str_eq(r->in[0].label, "sgr-0123456789abcdef0");
	ck_assert_str_eq(r->out[0].label, "sgr-0123456789abcdef1");
	ck_assert_int_eq(q->n_in, 3);
	char want[64];
	snprintf(want, sizeof(want), "%s-2", q->in[0].label);
	ck_assert_str_eq(q->in[1].label, want);
	ck_assert_str_ne(q->in[2].label, q->in[0].label);
	policy_free(p);
}
END_TEST

/* vpcfwctl's shadow-load request: the files' content, read here */
static json_t *shadow_load(const char *dir)
{
	char err[512];
	json_t *files = ctl_read_config_files(dir, err, sizeof(err));
	ck_assert_msg(files != NULL, "%s", err);
	return json_pack("{s:s, s:s, s:o}", "verb", "shadow-load", "path", dir, "files", files);
}

static json_t *ask(struct ctl *c, const struct ctl_peer *peer, json_t *req)
{
	json_t *r = ctl_handle(c, peer, req);
	json_decref(req);
	return r;
}

/* One worker's batch: the running verdicts, then the candidate's beside them. */
static void decide(int worker, const struct packet *p, int n, uint64_t gen, double t)
{
	struct verdict v[8];
	ck_assert_int_le(n, 8);
	pipeline_eval_batch(&pls[worker], pol, p, NULL, n, tu_sec(t), v);
	if (installed)
		shadow_eval(installed, worker, cts[worker], p, NULL, n, v, gen, tu_sec(t));
}

/* The candidate removes web's HTTP and SSH rules: new HTTP and SSH flows to
 * web would be refused, by the rule each one meets today; an SSH connection
 * tracked before the load goes on (AWS: removing a rule does not interrupt
 * tracked connections; "Security group connection tracking"). */
START_TEST(test_shadow)
{
	char dir[] = "/tmp/ctlshadowXXXXXX", sock[64], err[256];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	const int drop[] = { 0, 2 };
	write_candidate(dir, drop, 2);
	snprintf(sock, sizeof(sock), "%s/s.sock", dir);
	struct ctl *c = ctl_open(&fake, sock, NULL, NULL, NULL, NULL, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	struct ctl_peer reader = { .uid = 1001, .reader = true },
		admin = { .uid = 1002, .reader = true, .admin = true };
	json_t *r;

	/* an SSH connection from the corporate network, tracked before the load */
	struct packet pre[2] = {
		tu_pkt("198.51.100.20", "10.0.1.10", 6, 50000, 22, TCP_SYN),
		tu_pkt("10.0.1.10", "198.51.100.20", 6, 22, 50000, TCP_SYN | TCP_ACK),
	};
	decide(0, pre, 2, 7, 0);

	r = ask(c, &reader, shadow_load(dir));
	ck_assert(json_is_false(json_object_get(r, "ok")));
	ck_assert_int_eq(shadow_swaps, 0);
	json_decref(r);
	/* a path alone is not opened by the daemon */
	r = ask(c, &admin, json_pack("{s:s, s:s}", "verb", "shadow-load", "path", "/etc/shadow"));
	ck_assert(json_is_false(json_object_get(r, "ok")));
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r, "error")), "opens no path"));
	ck_assert_ptr_null(installed);
	json_decref(r);
	/* a refused candidate comes back with its messages, naming the file */
	r = ask(c, &admin, json_pack("{s:s, s:[{s:s, s:s}]}", "verb", "shadow-load", "files",
				     "name", "cand.json", "text", "{\"SecurityGroups\": 3}"));
	ck_assert(json_is_false(json_object_get(r, "ok")));
	ck_assert_int_gt(json_array_size(json_object_get(r, "messages")), 0);
	char *dump = json_dumps(r, 0);
	bool named = strstr(dump, "cand.json") != NULL;
	free(dump);
	ck_assert(named);
	ck_assert_ptr_null(installed);
	json_decref(r);
	r = ask(c, &reader, json_pack("{s:s}", "verb", "shadow-report"));
	ck_assert(json_is_false(json_object_get(r, "ok")));
	json_decref(r);
	r = ask(c, &admin, shadow_load(dir));
	ck_assert_msg(json_is_true(json_object_get(r, "ok")), "%s",
		      json_string_value(json_object_get(r, "error")));
	ck_assert_ptr_nonnull(installed);
	json_decref(r);

	struct ct_stats before[WORKERS], after;
	for (int i = 0; i < WORKERS; i++)
		ct_get_stats(cts[i], &before[i]);
	/* 5 HTTP SYNs from the internet over both workers, a new SSH
	 * connection, the tracked one's next packet, HTTPS (unchanged) */
	for (int k = 0; k < 5; k++) {
		struct packet p = tu_pkt("203.0.113.7", "10.0.1.10", 6, 40000 + k, 80, TCP_SYN);
		decide(k % WORKERS, &p, 1, 7, 1);
	}
	struct packet mix[3] = {
		tu_pkt("198.51.100.21", "10.0.1.10", 6, 50001, 22, TCP_SYN),
		tu_pkt("198.51.100.20", "10.0.1.10", 6, 50000, 22, TCP_ACK),
		tu_pkt("203.0.113.7", "10.0.1.10", 6, 40100, 443, TCP_SYN),
	};
	decide(0, mix, 3, 7, 2);
	/* the candidate's flows stay its own: the real table gained only the new
	 * SSH flow (HTTP and HTTPS from anywhere with open egress are untracked) */
	ct_get_stats(cts[0], &after);
	ck_assert_uint_eq(after.inserted, before[0].inserted + 1);
	ct_get_stats(cts[1], &after);
	ck_assert_uint_eq(after.inserted, before[1].inserted);

	r = ask(c, &reader, json_pack("{s:s}", "verb", "shadow-report"));
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "compared")), 8);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "differing")), 6);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "lost")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "seeded_flows")), 1);
	json_t *diffs = json_object_get(r, "differences");
	ck_assert_int_eq(json_array_size(diffs), 2);
	json_t *d0 = json_array_get(diffs, 0), *d1 = json_array_get(diffs, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(d0, "packets")), 5);
	ck_assert_str_eq(json_string_value(json_object_get(d0, "change")), "refused");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(d0, "running"), "rule")),
			 "sg-0000000000000web IpPermissions[0]");
	json_t *cand = json_object_get(d0, "candidate");
	ck_assert_str_eq(json_string_value(json_object_get(cand, "verdict")), "REJECT");
	ck_assert_str_eq(json_string_value(json_object_get(cand, "stage")), "sg-ingress");
	ck_assert_str_eq(json_string_value(json_object_get(cand, "reason")), "ENI_SG_RULES_MISMATCH");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(d0, "sample"), "dport")), 80);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(d0, "sample"), "src")),
			 "203.0.113.7");
	ck_assert_int_eq(json_integer_value(json_object_get(d1, "packets")), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(d1, "running"), "rule")),
			 "sg-0000000000000web IpPermissions[2]");
	json_decref(r);

	/* a full table counts the rest as lost: each generation is a new key */
	for (int k = 0; k < SHADOW_DIFFS + 10; k++) {
		struct packet p = tu_pkt("203.0.113.8", "10.0.1.10", 6, 30000 + k, 80, TCP_SYN);
		decide(1, &p, 1, 100 + (uint64_t)k, 3);
	}
	r = ask(c, &reader, json_pack("{s:s, s:i}", "verb", "shadow-report", "limit", 1));
	/* worker 1 held 2 keys already (the HTTP refusal, generation 7) */
	ck_assert_int_eq(json_integer_value(json_object_get(r, "lost")), 11);
	ck_assert_int_eq(json_array_size(json_object_get(r, "differences")), 1);
	/* merged by rule across generations and workers: 5 + 255 */
	ck_assert_int_eq(json_integer_value(json_object_get(
		json_array_get(json_object_get(r, "differences"), 0), "packets")), 5 + SHADOW_DIFFS - 1);
	json_decref(r);

	r = ask(c, &reader, json_pack("{s:s}", "verb", "shadow-clear"));
	ck_assert(json_is_false(json_object_get(r, "ok")));
	ck_assert_ptr_nonnull(installed);
	json_decref(r);
	r = ask(c, &admin, json_pack("{s:s}", "verb", "shadow-clear"));
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_ptr_null(installed);
	json_decref(r);
	r = ask(c, &reader, json_pack("{s:s}", "verb", "shadow-report"));
	ck_assert(json_is_false(json_object_get(r, "ok")));
	json_decref(r);

	/* a shadow still loaded at close is taken back and freed */
	r = ask(c, &admin, shadow_load(dir));
	ck_assert(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	ctl_close(c);
	ck_assert_ptr_null(installed);
	remove_dir(dir);
}
END_TEST

/* vpcfwctl reads the candidate: regular files only, never waiting on a FIFO */
START_TEST(test_read_config_files)
{
	char dir[] = "/tmp/ctlfilesXXXXXX", p[128], err[512];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/fifo.json", dir);
	ck_assert_int_eq(mkfifo(p, 0600), 0);
	json_t *f = ctl_read_config_files(p, err, sizeof(err));
	ck_assert_ptr_null(f);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	/* in a directory too: a FIFO named *.json is skipped, as the daemon does */
	f = ctl_read_config_files(dir, err, sizeof(err));
	ck_assert_ptr_null(f);
	ck_assert_ptr_nonnull(strstr(err, "no *.json file"));
	unlink(p);
	snprintf(p, sizeof(p), "%s/b.json", dir);
	FILE *o = fopen(p, "w");
	fputs("{\"Vpcs\": []}", o);
	fclose(o);
	snprintf(p, sizeof(p), "%s/a.json", dir);
	o = fopen(p, "w");
	fputs("{}", o);
	fclose(o);
	f = ctl_read_config_files(dir, err, sizeof(err));
	ck_assert_msg(f != NULL, "%s", err);
	ck_assert_int_eq(json_array_size(f), 2);
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(json_array_get(f, 0), "name")),
				     "/a.json"));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(f, 1), "text")),
			 "{\"Vpcs\": []}");
	json_decref(f);
	remove_dir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("ctl");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_text_put_from_empty);
	tcase_add_test(tc, test_counters_exact);
	tcase_add_test(tc, test_access);
	tcase_add_test(tc, test_metrics_text);
	tcase_add_test(tc, test_fairness_counters);
	tcase_add_test(tc, test_log_suppressed_in_metrics);
	tcase_add_test(tc, test_sg_labels_stable);
	tcase_add_test(tc, test_sg_labels_ids);
	tcase_add_test(tc, test_metrics_file_safe);
	tcase_add_test(tc, test_shadow);
	tcase_add_test(tc, test_read_config_files);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
