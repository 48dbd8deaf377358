/* The daemon's start checks (src/startcheck.c), which `vpcfwd
 * --check-config` runs too: queues, socket paths, bindings, output paths,
 * -u.  JSON here is written with ' for ". */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/startcheck.h"

static struct diag d;
static uint16_t queues[START_MAX_QUEUES];
static char tmpdir[] = "/tmp/check_startcheck.XXXXXX";

static void setup(void)
{
	diag_init(&d);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[64 + sizeof(tmpdir)];
	diag_free(&d);
	start_check_set_sysctl_dir(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
	strcpy(tmpdir + strlen(tmpdir) - 6, "XXXXXX");
	policy_intern_reset();
}

/* ' -> " */
static struct policy *load(const char *vpcfw)
{
	char text[4096];
	snprintf(text, sizeof(text), "{'Vpcfw': %s}", vpcfw);
	for (char *p = text; *p; p++)
		if (*p == '\'')
			*p = '"';
	return tu_policy(text);
}

/* These configurations have no interface: --allow-empty, unless a test
 * is about that (check_empty). */
static int check_opt(const char *vpcfw, const struct daemon_options *opt, bool allow_empty)
{
	struct daemon_options o = { 0 };
	if (opt)
		o = *opt;
	o.allow_empty = allow_empty;
	struct policy *p = load(vpcfw);
	int n = start_check(&o, p, queues, &d);
	policy_free(p);
	return n;
}

static int check(const char *vpcfw, const struct daemon_options *opt)
{
	return check_opt(vpcfw, opt, true);
}

static bool has(bool error, const char *text)
{
	for (size_t i = 0; i < d.n; i++)
		if (d.msgs[i].error == error && strstr(d.msgs[i].text, text))
			return true;
	fprintf(stderr, "expected %s containing \"%s\"; got:\n", error ? "error" : "warning", text);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "  %s\n", d.msgs[i].text);
	return false;
}

/* issue #12: a configuration without any network interface enforces
 * nothing: refused at start (and by --check-config) unless --allow-empty. */
START_TEST(test_empty_refused)
{
	ck_assert_int_eq(check_opt("{}", NULL, false), -1);
	ck_assert(has(true, "no network interface in the configuration: nothing to enforce; "
		      "give --allow-empty"));
	diag_free(&d);
	diag_init(&d);
	ck_assert_int_eq(check_opt("{}", NULL, true), 1);
	ck_assert_uint_eq(d.errors, 0);
	ck_assert_uint_eq(d.warnings, 0);
}
END_TEST

START_TEST(test_default_queue)
{
	ck_assert_int_eq(check("{}", NULL), 1);
	ck_assert_uint_eq(queues[0], 0);
	ck_assert_uint_eq(d.n, 0);
}
END_TEST

START_TEST(test_config_queues)
{
	ck_assert_int_eq(check("{'Queues': '3,1-2'}", NULL), 3);
	ck_assert_uint_eq(queues[0], 1);
	ck_assert_uint_eq(queues[2], 3);
	ck_assert_int_eq(check("{'Queues': '0-63'}", NULL), 64);
	ck_assert_uint_eq(d.errors, 0);
}
END_TEST

START_TEST(test_too_many_queues)
{
	ck_assert_int_eq(check("{'Queues': '0-65535'}", NULL), -1);
	ck_assert(has(true, "Vpcfw.Queues: at most 64 queues (65536 given)"));
	ck_assert_int_eq(check("{'Queues': '0-64'}", NULL), -1);
}
END_TEST

START_TEST(test_queue_option)
{
	struct daemon_options opt = { .queues = "5-6" };
	ck_assert_int_eq(check("{'Queues': '0-65535'}", &opt), 2); /* -q wins */
	ck_assert_uint_eq(queues[1], 6);
	opt.queues = "0-64";
	ck_assert_int_eq(check("{}", &opt), -1);
	ck_assert(has(true, "-q: invalid queue list '0-64'"));
}
END_TEST

START_TEST(test_socket_paths)
{
	char json[512], path[400];

	/* sun_path: 108 bytes with the NUL */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	snprintf(json, sizeof(json), "{'ControlSocket': '%s'}", path);
	ck_assert_int_eq(check(json, NULL), 1);
	path[107] = 'a';
	path[300] = '\0';
	snprintf(json, sizeof(json), "{'ControlSocket': '%s'}", path);
	ck_assert_int_eq(check(json, NULL), -1);
	ck_assert(has(true, "Vpcfw.ControlSocket: the path is 300 bytes long; a socket path holds at most 107"));
	diag_free(&d);
	diag_init(&d);
	snprintf(json, sizeof(json), "{'ReadOnlySocket': '%s'}", path);
	ck_assert_int_eq(check(json, NULL), -1);
	ck_assert(has(true, "Vpcfw.ReadOnlySocket: the path is 300 bytes long"));
}
END_TEST

#define ENI "'NetworkInterfaces': [{'NetworkInterfaceId': 'eni-1', 'SubnetId': 'subnet-1', " \
	"'PrivateIpAddress': '10.0.1.5', 'Groups': []}], 'Subnets': [{'SubnetId': 'subnet-1', " \
	"'VpcId': 'vpc-1', 'CidrBlock': '10.0.1.0/24'}], 'Vpcs': [{'VpcId': 'vpc-1', " \
	"'CidrBlock': '10.0.0.0/16'}]"

static struct policy *bound(const char *device)
{
	char text[1024];
	snprintf(text, sizeof(text), "{" ENI ", 'Vpcfw': {'InterfaceBindings': ["
		 "{'NetworkInterfaceId': 'eni-1', 'Device': '%s'}]}}", device);
	for (char *c = text; *c; c++)
		if (*c == '\'')
			*c = '"';
	return tu_policy(text);
}

START_TEST(test_bindings)
{
	static const struct daemon_options none = { 0 };
	struct policy *p = bound("lo");
	ck_assert_int_eq(start_check(&none, p, queues, &d), 1);
	ck_assert_uint_eq(d.n, 0);
	policy_free(p);

	p = bound("vpcfw-no-such0");
	ck_assert_int_eq(start_check(&none, p, queues, &d), 1);
	ck_assert_uint_eq(d.warnings, 1);
	ck_assert(has(false, "test.json: Vpcfw.InterfaceBindings[0]: binding of eni-1: no device "
		      "vpcfw-no-such0 here"));
	/* --strict: the daemon refuses to start on it, and so does the check */
	diag_free(&d);
	diag_init(&d);
	d.strict = true;
	ck_assert_int_eq(start_check(&none, p, queues, &d), -1);
	policy_free(p);
}
END_TEST

START_TEST(test_output_paths)
{
	char json[1024];

	/* a flow-log directory is made with its parents; a file's directory is not */
	snprintf(json, sizeof(json), "{'FlowLogDirectory': '%s/a/b', 'DecisionLog': '%s/d.log'}",
		 tmpdir, tmpdir);
	ck_assert_int_eq(check(json, NULL), 1);
	ck_assert_uint_eq(d.n, 0);
	snprintf(json, sizeof(json), "{'DecisionLog': '%s/none/d.log'}", tmpdir);
	ck_assert_int_eq(check(json, NULL), -1);
	ck_assert(has(true, "Vpcfw.DecisionLog: cannot create"));

	/* a directory that is a file */
	char file[sizeof(tmpdir) + 8];
	snprintf(file, sizeof(file), "%s/f", tmpdir);
	FILE *f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	struct daemon_options opt = { .flow_log_dir = file };
	ck_assert_int_eq(check("{}", &opt), -1);
	ck_assert(has(true, "--flow-log-dir: "));
	snprintf(json, sizeof(json), "{'DropCapture': {'Path': '%s/x/drops.pcap'}}", file);
	ck_assert_int_eq(check(json, NULL), -1);
	ck_assert(has(true, "is not a directory"));

	/* the metrics are retried: a warning */
	diag_free(&d);
	diag_init(&d);
	snprintf(json, sizeof(json), "{'MetricsFile': '%s/none/m.prom'}", tmpdir);
	ck_assert_int_eq(check(json, NULL), 1);
	ck_assert(has(false, "Vpcfw.MetricsFile: cannot create"));
}
END_TEST

/* Vpcfw.Offload: a warning where it can have no effect (with the HA sync);
 * none otherwise (this host has connection tracking, or says why not). */
START_TEST(test_offload)
{
	bool ct = access("/proc/sys/net/netfilter/nf_conntrack_max", F_OK) == 0;
	FILE *bl = fopen("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal", "r");
	int liberal = 0;
	if (bl) {
		if (fscanf(bl, "%d", &liberal) != 1)
			liberal = 0;
		fclose(bl);
	}
	ck_assert_int_eq(check("{'Offload': true}", NULL), 1);
	ck_assert_uint_eq(d.warnings, (ct ? 0 : 1) + (liberal != 0 ? 1 : 0));
	diag_free(&d);
	diag_init(&d);
	char json[512];
	snprintf(json, sizeof(json), "{'Offload': true, 'Sync': {'NodeId': 1, 'Peer': '192.0.2.2', "
		 "'KeyFile': '%s/none.key'}}", tmpdir);
	ck_assert_int_eq(check(json, NULL), -1); /* the key file is missing: an error */
	ck_assert(has(false, "Vpcfw.Offload: no effect while Vpcfw.Sync is on"));
	/* on by default, not written: Sync simply takes precedence */
	diag_free(&d);
	diag_init(&d);
	snprintf(json, sizeof(json), "{'Sync': {'NodeId': 1, 'Peer': '192.0.2.2', "
		 "'KeyFile': '%s/none.key'}}", tmpdir);
	ck_assert_int_eq(check(json, NULL), -1);
	ck_assert(!has(false, "Vpcfw.Offload"));
}
END_TEST

/* a fake sysctl tree: DIR/net/netfilter/NAME holding value (NULL: none) */
static void put_sysctl(const char *name, const char *value)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/net", tmpdir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/net/netfilter", tmpdir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/net/netfilter/%s", tmpdir, name);
	if (!value) {
		unlink(path);
		return;
	}
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(value, f);
	fclose(f);
}

static int warnings_of(const char *vpcfw)
{
	diag_free(&d);
	diag_init(&d);
	ck_assert_int_eq(check(vpcfw, NULL), 1);
	return (int)d.warnings;
}

/* Vpcfw.Offload with the kernel's nf_conntrack_tcp_be_liberal on and
 * Vpcfw.TcpBeLiberal off: the kernel would pass out-of-window segments of
 * offloaded flows that vpcfwd refuses, a warning naming the sysctl, its
 * value and the fix; none with 0, without the file, with TcpBeLiberal on or
 * without Offload. */
START_TEST(test_offload_be_liberal)
{
	start_check_set_sysctl_dir(tmpdir);
	put_sysctl("nf_conntrack_max", "262144\n");
	put_sysctl("nf_conntrack_tcp_be_liberal", "0\n");
	ck_assert_int_eq(warnings_of("{'Offload': true}"), 0);
	put_sysctl("nf_conntrack_tcp_be_liberal", "1\n");
	ck_assert_int_eq(warnings_of("{'Offload': true}"), 1);
	ck_assert(has(false, "Vpcfw.Offload: the kernel's net.netfilter.nf_conntrack_tcp_be_liberal "
		      "is 1 here while Vpcfw.TcpBeLiberal is off"));
	ck_assert(has(false, "sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=0"));
	ck_assert_int_eq(warnings_of("{'Offload': true, 'TcpBeLiberal': true}"), 0);
	ck_assert_int_eq(warnings_of("{'Offload': false}"), 0);
	ck_assert_int_eq(warnings_of("{}"), 0);         /* on by default, not written */
	put_sysctl("nf_conntrack_tcp_be_liberal", "2");        /* any non-zero value, as read */
	ck_assert_int_eq(warnings_of("{'Offload': true}"), 1);
	ck_assert(has(false, "nf_conntrack_tcp_be_liberal is 2 here"));
	put_sysctl("nf_conntrack_tcp_be_liberal", NULL);       /* no such setting: no warning */
	ck_assert_int_eq(warnings_of("{'Offload': true}"), 0);
	/* no connection tracking at all: that warning only */
	put_sysctl("nf_conntrack_max", NULL);
	ck_assert_int_eq(warnings_of("{'Offload': true}"), 1);
	ck_assert(has(false, "no connection tracking here"));
	ck_assert_int_eq(warnings_of("{}"), 0);         /* the default: a plain NFQUEUE reader */
}
END_TEST

/* What turns the default Offload off in the daemon (offload_setup): the
 * same conflict, whatever the configuration says of Offload. */
START_TEST(test_be_liberal_conflict)
{
	struct m_vpcfw c;
	char v[32];

	memset(&c, 0, sizeof(c));
	start_check_set_sysctl_dir(tmpdir);
	put_sysctl("nf_conntrack_tcp_be_liberal", "1\n");
	ck_assert(start_check_be_liberal_conflict(&c, v, sizeof(v)));
	ck_assert_str_eq(v, "1");
	c.tcp_be_liberal = true;
	ck_assert(!start_check_be_liberal_conflict(&c, v, sizeof(v)));
	c.tcp_be_liberal = false;
	put_sysctl("nf_conntrack_tcp_be_liberal", "0\n");
	ck_assert(!start_check_be_liberal_conflict(&c, v, sizeof(v)));
	put_sysctl("nf_conntrack_tcp_be_liberal", NULL);
	ck_assert(!start_check_be_liberal_conflict(&c, v, sizeof(v)));
}
END_TEST

START_TEST(test_user)
{
	struct daemon_options opt = { .user = "vpcfw-no-such-user" };
	ck_assert_int_eq(check("{}", &opt), -1);
	ck_assert(has(true, "-u vpcfw-no-such-user: no such user"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("startcheck");
	TCase *tc = tcase_create("start");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_empty_refused);
	tcase_add_test(tc, test_default_queue);
	tcase_add_test(tc, test_config_queues);
	tcase_add_test(tc, test_too_many_queues);
	tcase_add_test(tc, test_queue_option);
	tcase_add_test(tc, test_socket_paths);
	tcase_add_test(tc, test_bindings);
	tcase_add_test(tc, test_output_paths);
	tcase_add_test(tc, test_offload);
	tcase_add_test(tc, test_offload_be_liberal);
	tcase_add_test(tc, test_be_liberal_conflict);
	tcase_add_test(tc, test_user);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
