/* Flow logs (SPEC §7): the record format against AWS's documented examples,
 * tcp-flags, the S3 layout, and aggregation through the real pipeline:
 * windows, directions, actions, traffic types, NODATA, SKIPDATA, the
 * CloudWatch-like and decision outputs, rotation, the writer thread. */
#include <check.h>
#include <ftw.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "checkmain.h"
#include "testutil.h"
#include "vpcfw/conntrack.h"
#include "vpcfw/ctl.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/state.h"

/* ------------------------------------------------------------ formats */

START_TEST(default_format)
{
	struct fl_format f;
	char err[128], buf[512];

	ck_assert(fl_format_parse(NULL, &f, err, sizeof(err)));
	ck_assert_int_eq(f.n, 14);
	ck_assert_int_eq(f.version, 2);
	fl_format_header(&f, buf, sizeof(buf));
	ck_assert_str_eq(buf, "version account-id interface-id srcaddr dstaddr srcport dstport "
			      "protocol packets bytes start end action log-status");
}
END_TEST

static const struct {
	const char *format;
	int version, n;
} versions[] = {
	{ "${srcaddr} ${dstaddr}", 2, 2 },
	{ "${version} ${vpc-id} ${srcaddr}", 3, 3 },
	{ "  ${az-id}\t${version}  ", 4, 2 },
	{ "${flow-direction} ${traffic-path}", 5, 2 },
	{ "${ecs-task-id}", 7, 1 },
	{ "${version} ${reject-reason} ${region}", 8, 3 },
};

START_TEST(custom_format_version)
{
	struct fl_format f;
	char err[128];

	ck_assert_msg(fl_format_parse(versions[_i].format, &f, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(f.version, versions[_i].version);
	ck_assert_int_eq(f.n, versions[_i].n);
}
END_TEST

static const struct {
	const char *format, *message;
} bad_formats[] = {
	{ "${version} ${bogus-field}", "unknown field '${bogus-field}'" },
	{ "${version} srcaddr", "'srcaddr' is not a ${field} token" },
	{ "${version}${srcaddr}", "unknown field '${version}${srcaddr}'" },
	{ "   ", "no field" },
	{ "${}", "not a ${field} token" },
};

START_TEST(bad_format_named)
{
	struct fl_format f;
	char err[128];

	ck_assert(!fl_format_parse(bad_formats[_i].format, &f, err, sizeof(err)));
	ck_assert_msg(strstr(err, bad_formats[_i].message), "'%s' lacks '%s'", err,
		      bad_formats[_i].message);
}
END_TEST

static struct fl_record rec(const char *acct, const char *eni, const char *src, const char *dst,
			    int sport, int dport, int proto, uint64_t packets, uint64_t bytes,
			    uint64_t start, uint64_t end, bool accept)
{
	struct fl_record r;
	int fam;

	memset(&r, 0, sizeof(r));
	r.account_id = acct;
	r.interface_id = eni;
	ck_assert(addr_parse(src, &r.srcaddr, &fam));
	ck_assert(addr_parse(dst, &r.dstaddr, &fam));
	r.pkt_srcaddr = r.srcaddr;
	r.pkt_dstaddr = r.dstaddr;
	r.family = (uint8_t)fam;
	r.sport = (uint16_t)sport;
	r.dport = (uint16_t)dport;
	r.proto = (uint8_t)proto;
	r.packets = packets;
	r.bytes = bytes;
	r.start = start;
	r.end = end;
	r.accept = accept;
	r.status = FL_OK;
	return r;
}

/* Lines of tests/data/flowlogs/awsdocs_default_v2.log (flow-logs-records-examples). */
START_TEST(records_as_aws_documents_them)
{
	struct fl_format f;
	char err[64], buf[512];
	struct fl_record r;

	ck_assert(fl_format_parse(NULL, &f, err, sizeof(err)));
	r = rec("123456789010", "eni-1235b8ca123456789", "172.31.16.139", "172.31.16.21", 20641, 22,
		6, 20, 4249, 1418530010, 1418530070, true);
	fl_format_record(&f, &r, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 "
			      "20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK");

	r = rec("123456789010", "eni-1235b8ca123456789", "172.31.16.139", "203.0.113.12", 7, 9, 1,
		4, 336, 1432917094, 1432917142, false);
	fl_format_record(&f, &r, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2 123456789010 eni-1235b8ca123456789 172.31.16.139 203.0.113.12 "
			      "0 0 1 4 336 1432917094 1432917142 REJECT OK");

	r = rec("123456789010", "eni-1235b8ca123456789", "2001:db8:1234:a100:8d6e:3477:df66:f105",
		"2001:db8:1234:a102:3304:8879:34cf:4071", 34892, 22, 6, 54, 8855, 1477913708,
		1477913820, true);
	fl_format_record(&f, &r, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2 123456789010 eni-1235b8ca123456789 "
			      "2001:db8:1234:a100:8d6e:3477:df66:f105 "
			      "2001:db8:1234:a102:3304:8879:34cf:4071 34892 22 6 54 8855 "
			      "1477913708 1477913820 ACCEPT OK");

	memset(&r, 0, sizeof(r));
	r.account_id = "123456789010";
	r.interface_id = "eni-1235b8ca123456789";
	r.start = 1431280876;
	r.end = 1431280934;
	r.status = FL_NODATA;
	fl_format_record(&f, &r, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 "
			      "1431280934 - NODATA");
	r.interface_id = "eni-11111111aaaaaaaaa";
	r.status = FL_SKIPDATA;
	fl_format_record(&f, &r, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 "
			      "1431280934 - SKIPDATA");
}
END_TEST

/* awsdocs_tcpflags_custom_v3.log, first line, and awsdocs_natgw_custom.log:
 * the interface side differs from the packet's addresses. */
START_TEST(custom_records_as_aws_documents_them)
{
	struct fl_format f;
	char err[128], buf[512];
	struct fl_record r;

	ck_assert(fl_format_parse("${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} "
				  "${account-id} ${type} ${srcaddr} ${dstaddr} ${srcport} ${dstport} "
				  "${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} "
				  "${start} ${end} ${action} ${tcp-flags} ${log-status}",
				  &f, err, sizeof(err)));
	r = rec("123456789010", "eni-1235b8ca123456789", "52.213.180.42", "10.0.0.62", 43416, 5001, 6,
		8, 568, 1566848875, 1566848933, true);
	r.vpc_id = "vpc-abcdefab012345678";
	r.subnet_id = "subnet-aaaaaaaa012345678";
	r.instance_id = "i-01234567890123456";
	r.tcp_flags = fl_tcp_flags(TCP_SYN) | fl_tcp_flags(TCP_ACK);
	fl_format_record(&f, &r, buf, sizeof(buf));
	ck_assert_str_eq(buf, "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 "
			      "eni-1235b8ca123456789 123456789010 IPv4 52.213.180.42 10.0.0.62 43416 "
			      "5001 52.213.180.42 10.0.0.62 6 568 8 1566848875 1566848933 ACCEPT 2 OK");

	ck_assert(fl_format_parse("${instance-id} ${interface-id} ${srcaddr} ${dstaddr} "
				  "${pkt-srcaddr} ${pkt-dstaddr}", &f, err, sizeof(err)));
	r = rec(NULL, "eni-1235b8ca123456789", "10.0.0.220", "10.0.1.5", 0, 0, 6, 1, 1, 1, 1, true);
	ck_assert(addr_parse("203.0.113.5", &r.pkt_srcaddr, &(int){ 0 }));
	fl_format_record(&f, &r, buf, sizeof(buf));
	ck_assert_str_eq(buf, "- eni-1235b8ca123456789 10.0.0.220 10.0.1.5 203.0.113.5 10.0.1.5");
}
END_TEST

/* "FIN 1, SYN 2, RST 4, SYN-ACK 18, OR-ed over the window; ACK or PSH alone
 * give 0" (SPEC §7; flow-log-records, tcp-flags sequence examples). */
static const struct {
	uint8_t packets[4];
	int n;
	unsigned want;
} flag_cases[] = {
	{ { TCP_SYN }, 1, 2 },
	{ { TCP_SYN | TCP_ACK }, 1, 18 },
	{ { TCP_ACK }, 1, 0 },
	{ { TCP_PSH | TCP_ACK }, 1, 0 },
	{ { TCP_FIN | TCP_ACK }, 1, 1 },
	{ { TCP_RST }, 1, 4 },
	{ { TCP_SYN, TCP_ACK, TCP_PSH | TCP_ACK, TCP_FIN | TCP_ACK }, 4, 3 },
	{ { TCP_SYN | TCP_ACK, TCP_ACK, TCP_FIN | TCP_ACK }, 3, 19 },
	{ { TCP_SYN, TCP_ACK }, 2, 2 },
};

START_TEST(tcp_flags_or)
{
	uint8_t f = 0;
	for (int i = 0; i < flag_cases[_i].n; i++)
		f |= fl_tcp_flags(flag_cases[_i].packets[i]);
	ck_assert_uint_eq(f, flag_cases[_i].want);
}
END_TEST

static const struct {
	const char *az, *region;
} azs[] = {
	{ "us-east-1a", "us-east-1" },
	{ "ap-southeast-2c", "ap-southeast-2" },
	{ "us-gov-west-1a", "us-gov-west-1" },
	{ "us-west-2-lax-1a", "us-west-2" },
	{ "eu-central-1-wl1-ber-wlz-1", "eu-central-1" },
	{ "use1-az1", NULL },
	{ "", NULL },
	{ "1a", NULL },
};

START_TEST(region_from_zone)
{
	char buf[32];
	bool ok = fl_region_of_az(azs[_i].az, buf, sizeof(buf));
	if (!azs[_i].region) {
		ck_assert(!ok);
		return;
	}
	ck_assert(ok);
	ck_assert_str_eq(buf, azs[_i].region);
}
END_TEST

/* flow-logs-s3-path: aws_account_id_vpcflowlogs_region_flow_log_id_YYYYMMDDTHHmmZ_hash.log.gz,
 * and the folder structures of the default, Hive-compatible and hourly
 * layouts. */
START_TEST(s3_key_layout)
{
	char a[512], b[512];
	regex_t re;
	struct fl_s3_layout lay = { "", false, false };

	fl_s3_key(&lay, "123456789012", "us-east-1", "fl-1234abcd", 1529511600, 0xfe123456, a,
		  sizeof(a));
	ck_assert_str_eq(a, "AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/"
			    "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_fe123456.log.gz");
	fl_s3_key(&lay, "123456789012", "us-east-1", "fl-1234abcd", 1529511600, 1, b, sizeof(b));
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(regcomp(&re, "_[0-9a-f]{8}\\.log\\.gz$", REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&re, b, 0, NULL, 0) == 0, "%s", b);
	regfree(&re);

	ck_assert(fl_s3_folder("arn:aws:s3:::my-bucket/my-logs/vpc1/", &lay, a, sizeof(a)));
	ck_assert_str_eq(lay.folder, "my-logs/vpc1");
	lay.per_hour = true;
	fl_s3_key(&lay, "123456789012", "us-east-1", "fl-1234abcd", 1529511600, 0xfe123456, a,
		  sizeof(a));
	ck_assert_str_eq(a, "my-logs/vpc1/AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/16/"
			    "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_fe123456.log.gz");
	lay.hive = true;
	fl_s3_key(&lay, "123456789012", "us-east-1", "fl-1234abcd", 1529511600, 0xfe123456, a,
		  sizeof(a));
	ck_assert_str_eq(a, "my-logs/vpc1/AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/"
			    "aws-region=us-east-1/year=2018/month=06/day=20/hour=16/"
			    "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_fe123456.log.gz");
	lay.per_hour = false;
	ck_assert(fl_s3_folder("arn:aws:s3:::my-bucket", &lay, a, sizeof(a)));
	fl_s3_key(&lay, "123456789012", "us-east-1", "fl-1234abcd", 1529511600, 0xfe123456, a,
		  sizeof(a));
	ck_assert_str_eq(a, "AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/"
			    "aws-region=us-east-1/year=2018/month=06/day=20/"
			    "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_fe123456.log.gz");
}
END_TEST

START_TEST(s3_folder_refused)
{
	struct fl_s3_layout lay;
	char err[200];
	ck_assert(!fl_s3_folder("arn:aws:s3:::b/../etc/", &lay, err, sizeof(err)));
	ck_assert(!fl_s3_folder("arn:aws:s3:::b/a//c/", &lay, err, sizeof(err)));
	ck_assert(!fl_s3_folder("arn:aws:s3:::b/AWSLogs/", &lay, err, sizeof(err)));
	ck_assert(fl_s3_folder("arn:aws:s3:::b/", &lay, err, sizeof(err)));
	ck_assert_str_eq(lay.folder, "");
}
END_TEST

/* ------------------------------------------------------------ aggregation */

/* subnet-a (acl-a: everything in; out only TCP, so ICMP replies are refused)
 * with eni-a 10.0.1.10; subnet-b (default NACL) with eni-b 10.0.2.20. */
#define LAB_HEAD \
	"{\"Vpcs\":[{\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.0.0/16\",\"OwnerId\":\"123456789010\"}]," \
	"\"Subnets\":[" \
	" {\"SubnetId\":\"subnet-a\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.1.0/24\"," \
	"  \"AvailabilityZone\":\"us-east-1a\",\"AvailabilityZoneId\":\"use1-az1\"}," \
	" {\"SubnetId\":\"subnet-b\",\"VpcId\":\"vpc-1\",\"CidrBlock\":\"10.0.2.0/24\"," \
	"  \"AvailabilityZone\":\"us-east-1b\",\"AvailabilityZoneId\":\"use1-az2\"}]," \
	"\"NetworkAcls\":[" \
	" {\"NetworkAclId\":\"acl-a\",\"VpcId\":\"vpc-1\",\"IsDefault\":false," \
	"  \"Associations\":[{\"SubnetId\":\"subnet-a\"}],\"Entries\":[" \
	"  {\"RuleNumber\":100,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"-1\"," \
	"   \"CidrBlock\":\"0.0.0.0/0\"}," \
	"  {\"RuleNumber\":100,\"Egress\":true,\"RuleAction\":\"allow\",\"Protocol\":\"6\"," \
	"   \"CidrBlock\":\"0.0.0.0/0\",\"PortRange\":{\"From\":0,\"To\":65535}}]}," \
	" {\"NetworkAclId\":\"acl-default\",\"VpcId\":\"vpc-1\",\"IsDefault\":true,\"Entries\":[" \
	"  {\"RuleNumber\":100,\"Egress\":false,\"RuleAction\":\"allow\",\"Protocol\":\"-1\"," \
	"   \"CidrBlock\":\"0.0.0.0/0\"}," \
	"  {\"RuleNumber\":100,\"Egress\":true,\"RuleAction\":\"allow\",\"Protocol\":\"-1\"," \
	"   \"CidrBlock\":\"0.0.0.0/0\"}]}]," \
	"\"SecurityGroups\":[" \
	" {\"GroupId\":\"sg-a\",\"IpPermissions\":[" \
	"  {\"IpProtocol\":\"tcp\",\"FromPort\":22,\"ToPort\":22,\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}," \
	"  {\"IpProtocol\":\"icmp\",\"FromPort\":-1,\"ToPort\":-1,\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}]," \
	"  \"IpPermissionsEgress\":[{\"IpProtocol\":\"-1\",\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}]}," \
	" {\"GroupId\":\"sg-b\",\"IpPermissions\":[" \
	"  {\"IpProtocol\":\"tcp\",\"FromPort\":80,\"ToPort\":80,\"IpRanges\":[{\"CidrIp\":\"10.0.0.0/16\"}]}]," \
	"  \"IpPermissionsEgress\":[{\"IpProtocol\":\"-1\",\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}]}]," \
	"\"NetworkInterfaces\":[" \
	" {\"NetworkInterfaceId\":\"eni-a\",\"SubnetId\":\"subnet-a\",\"VpcId\":\"vpc-1\"," \
	"  \"OwnerId\":\"123456789010\",\"PrivateIpAddress\":\"10.0.1.10\"," \
	"  \"PrivateIpAddresses\":[{\"PrivateIpAddress\":\"10.0.1.10\",\"Primary\":true}," \
	"   {\"PrivateIpAddress\":\"10.0.1.11\",\"Primary\":false}]," \
	"  \"Groups\":[{\"GroupId\":\"sg-a\"}],\"Attachment\":{\"InstanceId\":\"i-a\"}}," \
	" {\"NetworkInterfaceId\":\"eni-b\",\"SubnetId\":\"subnet-b\",\"VpcId\":\"vpc-1\"," \
	"  \"OwnerId\":\"123456789010\",\"PrivateIpAddress\":\"10.0.2.20\"," \
	"  \"PrivateIpAddresses\":[{\"PrivateIpAddress\":\"10.0.2.20\",\"Primary\":true}]," \
	"  \"Groups\":[{\"GroupId\":\"sg-b\"}]}]"

/* Seconds from a time aligned to both aggregation intervals. */
static uint64_t at(double s)
{
	return (uint64_t)((1699999800.0 + s) * 1e9);
}

struct lab {
	char dir[64];
	struct policy *pol;
	struct conntrack *ct;
	struct pipeline pl;
	struct flowlog *fl;
	struct flowlog_worker *w;
};

static void lab_open_opt(struct lab *l, const char *extra, struct flowlog_options *o)
{
	char *json;

	strcpy(l->dir, "/tmp/check_flowlog.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(l->dir));
	ck_assert_int_gt(asprintf(&json, "%s%s}", LAB_HEAD, extra ? extra : ""), 0);
	l->pol = tu_policy(json);
	free(json);
	l->ct = ct_create(1024);
	ck_assert_ptr_nonnull(l->ct);
	pipeline_init(&l->pl, l->ct);
	o->dir = l->dir;
	if (!o->n_workers)
		o->n_workers = 1;
	l->fl = flowlog_create(l->pol, o);
	ck_assert_ptr_nonnull(l->fl);
	l->w = flowlog_worker(l->fl, 0);
	ck_assert_ptr_nonnull(l->w);
}

static void lab_open(struct lab *l, const char *extra)
{
	struct flowlog_options o = { .n_workers = 1 };
	lab_open_opt(l, extra, &o);
}

static struct verdict send(struct lab *l, struct packet p, double t)
{
	struct verdict v;
	pipeline_eval(&l->pl, l->pol, &p, NULL, at(t), &v);
	flowlog_observe(l->w, &p, &v, at(t));
	return v;
}

/* Everything written under the directory, one string per line. */
static char **g_lines;
static int g_n;

static void add_line(const char *s)
{
	g_lines = realloc(g_lines, (size_t)(g_n + 1) * sizeof(*g_lines));
	ck_assert_ptr_nonnull(g_lines);
	g_lines[g_n] = strdup(s);
	char *nl = strchr(g_lines[g_n], '\n');
	if (nl)
		*nl = '\0';
	g_n++;
}

static int g_files, g_gz_files;

static int walk(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char buf[4096];
	size_t n = strlen(path);

	(void)st;
	(void)ftw;
	if (type != FTW_F)
		return 0;
	g_files++;
	if (n > 3 && strcmp(path + n - 3, ".gz") == 0) {
		gzFile gz = gzopen(path, "rb");
		int err;
		ck_assert_ptr_nonnull(gz);
		g_gz_files++;
		while (gzgets(gz, buf, sizeof(buf)))
			add_line(buf);
		ck_assert(gzeof(gz));
		gzerror(gz, &err);
		ck_assert_int_eq(err, Z_OK);
		ck_assert_int_eq(gzclose(gz), Z_OK);
	} else {
		FILE *f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		while (fgets(buf, sizeof(buf), f))
			add_line(buf);
		fclose(f);
	}
	return 0;
}

static void free_lines(void)
{
	for (int i = 0; i < g_n; i++)
		free(g_lines[i]);
	free(g_lines);
	g_lines = NULL;
	g_n = g_files = g_gz_files = 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* Ends logging, reads what it wrote and cleans up. */
static void lab_close(struct lab *l)
{
	flowlog_destroy(l->fl);
	l->fl = NULL;
	free_lines();
	ck_assert_int_eq(nftw(l->dir, walk, 16, FTW_PHYS), 0);
	nftw(l->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	ct_destroy(l->ct);
	policy_free(l->pol);
}

static int count(const char *needle)
{
	int n = 0;
	for (int i = 0; i < g_n; i++)
		n += strstr(g_lines[i], needle) != NULL;
	return n;
}

static void dump(void)
{
	for (int i = 0; i < g_n; i++)
		fprintf(stderr, "  | %s\n", g_lines[i]);
}

#define ck_count(needle, n)                                                         \
	do {                                                                        \
		int c_ = count(needle);                                             \
		if (c_ != (n))                                                      \
			dump();                                                     \
		ck_assert_msg(c_ == (n), "'%s': %d lines, want %d", needle, c_, (n)); \
	} while (0)

/* AWS's ping example: the inbound request is accepted, the reply refused by
 * the NACL: two records on one interface, ACCEPT then REJECT. */
START_TEST(request_accepted_reply_refused)
{
	struct lab l;
	lab_open(&l, NULL);
	ck_assert(send(&l, tu_icmp("203.0.113.12", "10.0.1.10", 8, 0, 7), 1).accept);
	ck_assert(!send(&l, tu_icmp("10.0.1.10", "203.0.113.12", 0, 0, 7), 2).accept);
	ck_assert(send(&l, tu_icmp("203.0.113.12", "10.0.1.10", 8, 0, 7), 3).accept);
	lab_close(&l);
	ck_count("version account-id interface-id", 1);
	ck_count("2 123456789010 eni-a 203.0.113.12 10.0.1.10 0 0 1 2 120 1699999801 1699999803 "
		 "ACCEPT OK", 1);
	ck_count("2 123456789010 eni-a 10.0.1.10 203.0.113.12 0 0 1 1 60 1699999802 1699999802 "
		 "REJECT OK", 1);
	ck_count(" OK", 2);
	/* eni-b saw nothing in the window */
	ck_count("2 123456789010 eni-b - - - - - - - 1699999800 1700000400 - NODATA", 1);
	ck_assert_int_eq(g_gz_files, 1);
	free_lines();
}
END_TEST

/* Both interfaces of a VPC-internal flow log it; a packet refused at the
 * destination's SG is seen at both, one refused at the source only there. */
START_TEST(source_and_destination_sides)
{
	struct lab l;
	lab_open(&l, NULL);
	ck_assert(send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_SYN), 1).accept);
	ck_assert(!send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40001, 81, TCP_SYN), 2).accept);
	ck_assert(!send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 17, 40002, 53, 0), 3).accept);
	lab_close(&l);
	ck_count("eni-a 10.0.1.10 10.0.2.20 40000 80 6 1 60", 1);
	ck_count("eni-b 10.0.1.10 10.0.2.20 40000 80 6 1 60", 1);
	ck_count("eni-a 10.0.1.10 10.0.2.20 40001 81 6 1 60 1699999802 1699999802 REJECT", 1);
	ck_count("eni-b 10.0.1.10 10.0.2.20 40001 81 6 1 60 1699999802 1699999802 REJECT", 1);
	/* UDP out of subnet-a is refused by acl-a outbound: never reaches eni-b */
	ck_count("eni-a 10.0.1.10 10.0.2.20 40002 53 17", 1);
	ck_count("eni-b 10.0.1.10 10.0.2.20 40002 53 17", 0);
	free_lines();
}
END_TEST

/* One record per 5-tuple, direction and window; a secondary address shows
 * as the interface's primary in srcaddr/dstaddr, as is in pkt-*. */
START_TEST(windows_and_addresses)
{
	struct lab l;
	lab_open(&l, ",\"FlowLogs\":[{\"FlowLogId\":\"fl-1\",\"ResourceId\":\"eni-a\","
		     "\"TrafficType\":\"ALL\",\"MaxAggregationInterval\":60,"
		     "\"LogFormat\":\"${interface-id} ${srcaddr} ${dstaddr} ${pkt-srcaddr} "
		     "${pkt-dstaddr} ${packets} ${start} ${end} ${flow-direction} ${traffic-path} "
		     "${tcp-flags} ${version} ${region} ${az-id} ${vpc-id} ${subnet-id} "
		     "${instance-id} ${type} ${reject-reason}\"}]");
	send(&l, tu_pkt("198.51.100.1", "10.0.1.11", 6, 50000, 22, TCP_SYN), 1);
	send(&l, tu_pkt("10.0.1.11", "198.51.100.1", 6, 22, 50000, TCP_SYN | TCP_ACK), 1.5);
	send(&l, tu_pkt("198.51.100.1", "10.0.1.11", 6, 50000, 22, TCP_ACK), 30);
	send(&l, tu_pkt("198.51.100.1", "10.0.1.11", 6, 50000, 22, TCP_FIN | TCP_ACK), 61);
	send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_SYN), 62);
	lab_close(&l);
	ck_count("eni-a 198.51.100.1 10.0.1.10 198.51.100.1 10.0.1.11 2 1699999801 1699999830 "
		 "ingress - 2 8 us-east-1 use1-az1 vpc-1 subnet-a i-a IPv4 -", 1);
	ck_count("eni-a 10.0.1.10 198.51.100.1 10.0.1.11 198.51.100.1 1 1699999801 1699999801 "
		 "egress - 18 8", 1);
	ck_count("eni-a 198.51.100.1 10.0.1.10 198.51.100.1 10.0.1.11 1 1699999861 1699999861 "
		 "ingress - 1 8", 1);
	/* egress to the VPC's own address: traffic-path 1 */
	ck_count("eni-a 10.0.1.10 10.0.2.20 10.0.1.10 10.0.2.20 1 1699999862 1699999862 egress 1 2 8",
		 1);
	ck_count("eni-b", 0); /* the flow log covers eni-a only */
	ck_count("${", 0);
	ck_count("interface-id srcaddr dstaddr pkt-srcaddr", 1);
	free_lines();
}
END_TEST

START_TEST(traffic_type_reject)
{
	struct lab l;
	lab_open(&l, ",\"FlowLogs\":[{\"FlowLogId\":\"fl-r\",\"ResourceId\":\"vpc-1\","
		     "\"TrafficType\":\"REJECT\"}]");
	send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_SYN), 1);
	send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40001, 81, TCP_SYN), 2);
	lab_close(&l);
	ck_count("ACCEPT", 0);
	ck_count("40001 81 6 1 60 1699999802 1699999802 REJECT OK", 2);
	ck_count("_vpcflowlogs_us-east-1_fl-r_", 0); /* names are not in the content */
	free_lines();
}
END_TEST

/* SPEC §5: exempt traffic is never logged. */
START_TEST(exempt_not_logged)
{
	struct lab l;
	lab_open(&l, NULL);
	send(&l, tu_pkt("10.0.1.10", "169.254.169.254", 6, 40000, 80, TCP_SYN), 1);
	send(&l, tu_pkt("10.0.1.10", "10.0.1.2", 17, 40000, 53, 0), 1);
	lab_close(&l);
	ck_count("169.254.169.254", 0);
	ck_count("10.0.1.2 ", 0);
	ck_count(" OK", 0);
	ck_count("NODATA", 2);
	free_lines();
}
END_TEST

/* A full aggregation table loses records into SKIPDATA and counts them. */
START_TEST(full_table_skipdata)
{
	struct lab l;
	struct flowlog_options o = { .n_workers = 1, .table_size = 16 }; /* 12 flows */
	struct flowlog_stats st;
	lab_open_opt(&l, NULL, &o);
	for (int i = 0; i < 20; i++)
		send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000 + i, 22, TCP_SYN), 1 + i * 0.1);
	flowlog_get_stats(l.fl, &st);
	ck_assert_uint_eq(st.records_written, 0); /* nothing before the window closes */
	send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 60000, 22, TCP_SYN), 700);
	flowlog_get_stats(l.fl, &st);
	ck_assert_uint_eq(st.records_written, 12);
	ck_assert_uint_eq(st.records_lost, 8);
	ck_assert_uint_eq(st.skipdata_records, 1);
	lab_close(&l);
	ck_count("eni-a - - - - - - - 1699999800 1700000400 - SKIPDATA", 1);
	ck_count("ACCEPT OK", 13);
	/* eni-b: NODATA in both windows */
	ck_count("eni-b - - - - - - - ", 2);
	free_lines();
}
END_TEST

/* The metrics as the daemon renders them, from this flow log's counters. */
static const struct flowlog *metrics_fl;
static const struct policy *metrics_pol;

static const struct policy *m_policy(void *ctx, uint64_t *gen)
{
	(void)ctx;
	*gen = 1;
	return metrics_pol;
}

static void m_losses(void *ctx, struct ctl_losses *out)
{
	(void)ctx;
	flowlog_get_stats(metrics_fl, &out->flowlog);
}

#define ck_metric(m, line) ck_assert_msg(strstr(m, line "\n") != NULL, "no '%s' in\n%s", line, m)

/* SKIPDATA losses and files that cannot be written, read back from the
 * Prometheus text: 20 flows into a table of 12 lose 8 packets; a file
 * where the S3 layout wants its AWSLogs directory fails every record. */
START_TEST(losses_in_metrics)
{
	struct lab l;
	struct flowlog_options o = { .n_workers = 1, .table_size = 16 }; /* 12 flows */
	struct flowlog_stats st;
	char block[128];
	lab_open_opt(&l, NULL, &o);
	snprintf(block, sizeof(block), "%s/AWSLogs", l.dir);
	FILE *f = fopen(block, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	for (int i = 0; i < 20; i++)
		send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000 + i, 22, TCP_SYN), 1 + i * 0.1);
	send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 60000, 22, TCP_SYN), 700);
	flowlog_get_stats(l.fl, &st);
	ck_assert_uint_eq(st.records_lost, 8);
	ck_assert_uint_eq(st.skipdata_records, 1);
	ck_assert_uint_eq(st.files_written, 0);
	/* each record of the window tries to open the file and fails: 12
	 * flows, eni-a's SKIPDATA, eni-b's NODATA */
	ck_assert_uint_eq(st.write_errors, 14);
	struct ctl_daemon d = { .n_workers = 0, .policy = m_policy, .losses = m_losses };
	metrics_fl = l.fl;
	metrics_pol = l.pol;
	char *m = ctl_metrics(&d, NULL);
	ck_assert_ptr_nonnull(m);
	ck_metric(m, "vpcfw_flowlog_skipdata_packets_total 8");
	ck_metric(m, "vpcfw_flowlog_skipdata_records_total 1");
	ck_metric(m, "vpcfw_flowlog_write_errors_total 14");
	free(m);
	lab_close(&l);
	free_lines();
}
END_TEST

START_TEST(cloud_watch_logs_json)
{
	struct lab l;
	lab_open(&l, ",\"FlowLogs\":[{\"FlowLogId\":\"fl-c\",\"ResourceId\":\"subnet-a\","
		     "\"TrafficType\":\"ALL\",\"LogDestinationType\":\"cloud-watch-logs\","
		     "\"LogGroupName\":\"/vpc/flows\"}]");
	send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000, 22, TCP_SYN), 1);
	lab_close(&l);
	ck_count("{\"timestamp\": 1699999801000, \"message\": \"2 123456789010 eni-a 198.51.100.1 "
		 "10.0.1.10 50000 22 6 1 60 1699999801 1699999801 ACCEPT OK\"}", 1);
	ck_assert_int_eq(g_files, 1);
	ck_assert_int_eq(g_gz_files, 0);
	ck_count("version account-id", 0); /* no header in CloudWatch Logs */
	free_lines();
}
END_TEST

START_TEST(other_destination_not_written)
{
	struct lab l;
	lab_open(&l, ",\"FlowLogs\":[{\"FlowLogId\":\"fl-k\",\"ResourceId\":\"vpc-1\","
		     "\"TrafficType\":\"ALL\",\"LogDestinationType\":\"kinesis-data-firehose\"}]");
	send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000, 22, TCP_SYN), 1);
	lab_close(&l);
	ck_assert_int_eq(g_files, 0);
	free_lines();
}
END_TEST

START_TEST(decision_log)
{
	struct lab l;
	char extra[256], path[128];
	snprintf(path, sizeof(path), "/tmp/check_flowlog_dec.%d", (int)getpid());
	snprintf(extra, sizeof(extra), ",\"Vpcfw\":{\"DecisionLog\":\"%s\"}", path);
	lab_open(&l, extra);
	send(&l, tu_icmp("203.0.113.12", "10.0.1.10", 8, 0, 7), 1);
	send(&l, tu_icmp("10.0.1.10", "203.0.113.12", 0, 0, 7), 2);
	send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40001, 81, TCP_SYN), 3);
	lab_close(&l);
	free_lines();
	FILE *f = fopen(path, "r");
	char buf[1024];
	ck_assert_ptr_nonnull(f);
	while (fgets(buf, sizeof(buf), f))
		add_line(buf);
	fclose(f);
	unlink(path);
	ck_assert_int_eq(g_n, 2); /* one per refused flow, not per side */
	ck_count("\"interface-id\": \"eni-a\", \"flow-direction\": \"egress\", \"srcaddr\": "
		 "\"10.0.1.10\", \"dstaddr\": \"203.0.113.12\"", 1);
	ck_count("\"stage\": \"nacl-outbound\", \"reason\": \"SUBNET_ACL_RESTRICTION\", \"rule\": "
		 "\"acl-a outbound rule *\"", 1);
	ck_count("\"dstport\": 81, \"protocol\": 6, \"packets\": 1, \"bytes\": 60, \"action\": "
		 "\"REJECT\", \"stage\": \"sg-ingress\", \"reason\": \"ENI_SG_RULES_MISMATCH\"", 1);
	free_lines();
}
END_TEST

/* Files rotate on the packets' clock in replay; each is a whole gzip file
 * with its header line. */
START_TEST(rotation)
{
	struct lab l;
	struct flowlog_options o = { .n_workers = 1, .rotate_seconds = 60 };
	struct flowlog_stats st;
	lab_open_opt(&l, ",\"FlowLogs\":[{\"FlowLogId\":\"fl-1\",\"ResourceId\":\"eni-a\","
			 "\"TrafficType\":\"ALL\",\"MaxAggregationInterval\":60}]", &o);
	for (int i = 0; i < 5; i++)
		send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000, 22, TCP_ACK), 1 + 60 * i);
	flowlog_get_stats(l.fl, &st);
	ck_assert_uint_eq(st.files_written, 3);
	lab_close(&l);
	ck_assert_int_eq(g_gz_files, 5);
	ck_count("version account-id", 5);
	ck_count("ACCEPT OK", 5);
	free_lines();
}
END_TEST

/* Live: a writer thread, several workers; nothing is lost at the end. */
START_TEST(threaded_writer)
{
	struct lab l;
	struct flowlog_options o = { .n_workers = 3, .threaded = true };
	lab_open_opt(&l, NULL, &o);
	for (int w = 0; w < 3; w++) {
		struct flowlog_worker *fw = flowlog_worker(l.fl, w);
		struct packet p = tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000 + w, 22, TCP_SYN);
		struct verdict v;
		pipeline_eval(&l.pl, l.pol, &p, NULL, at(1), &v);
		flowlog_observe(fw, &p, &v, at(1 + w));
		flowlog_tick(fw, at(2 + w));
	}
	ck_assert_ptr_null(flowlog_worker(l.fl, 3));
	lab_close(&l);
	ck_count("eni-a 198.51.100.1 10.0.1.10 5000", 3);
	ck_count("eni-b - - - - - - - ", 1);
	free_lines();
}
END_TEST

/* An unknown LogFormat field refuses the configuration, naming it. */
START_TEST(config_names_unknown_field)
{
	char *json, *text = NULL;
	ck_assert_int_gt(asprintf(&json, "%s%s}", LAB_HEAD,
				  ",\"FlowLogs\":[{\"FlowLogId\":\"fl-1\",\"ResourceId\":\"vpc-1\","
				  "\"TrafficType\":\"ALL\",\"LogFormat\":\"${version} ${nope}\"}]"),
			 0);
	struct policy *p = tu_policy_try(json, &text);
	free(json);
	ck_assert_ptr_null(p);
	ck_assert_msg(strstr(text, "FlowLogs[0].LogFormat: unknown field '${nope}'"), "%s", text);
	free(text);
}
END_TEST

START_TEST(off_without_directory)
{
	char *json;
	ck_assert_int_gt(asprintf(&json, "%s}", LAB_HEAD), 0);
	struct policy *p = tu_policy(json);
	free(json);
	struct flowlog_options o = { .n_workers = 1 };
	ck_assert(!flowlog_enabled(p, &o));
	ck_assert_ptr_null(flowlog_create(p, &o));
	flowlog_observe(NULL, NULL, NULL, 0); /* a NULL worker is a no-op */
	policy_free(p);
}
END_TEST

/* ------------------------------------------------------------ across a restart */

/* Worker 0's open windows as vpcfwd saves them at time t: through the
 * state file's encoder and decoder. */
static void save_windows(struct lab *l, double t, struct state_image *img)
{
	const struct policy *pol = l->pol;
	uint32_t max = 0;
	for (int i = 0; i < pol->n_ifaces; i++)
		if (pol->ifaces[i].ct_id > max)
			max = pol->ifaces[i].ct_id;
	const char **ids = calloc((size_t)pol->n_ifaces + 1, sizeof(*ids));
	uint32_t *ref = malloc(((size_t)max + 1) * sizeof(*ref));
	ck_assert(ids && ref);
	memset(ref, 0xff, ((size_t)max + 1) * sizeof(*ref));
	for (int i = 0; i < pol->n_ifaces; i++) {
		ids[i] = pol->ifaces[i].id;
		ref[pol->ifaces[i].ct_id] = (uint32_t)i;
	}
	struct state_part p = { .queue = 0, .ref_of = ref, .n_ref_of = max + 1 };
	ck_assert_int_eq(flowlog_foreach_saved(l->w, state_part_add_flowlog, &p), 0);
	size_t len;
	uint8_t *buf = state_encode(at(t), ids, (uint32_t)pol->n_ifaces, &p, 1, &len);
	char err[256] = "";
	ck_assert_ptr_nonnull(buf);
	ck_assert_msg(state_decode(buf, len, at(t), img, err, sizeof(err)) == 0, "%s", err);
	free(buf);
	state_part_free(&p);
	free(ids);
	free(ref);
}

static bool all_saved(void *arg, uint32_t ct_id)
{
	(void)arg;
	(void)ct_id;
	return true;
}

static bool by_id(void *arg, const char *id, uint32_t *ct_id)
{
	const struct lab *l = arg;
	const struct iface *f = policy_iface_by_id(l->pol, id);
	if (f)
		*ct_id = f->ct_id;
	return f != NULL;
}

static struct flowlog_worker *queue0(void *arg, uint16_t queue)
{
	const struct lab *l = arg;
	return queue == 0 ? l->w : NULL;
}

static void restore_windows(struct lab *l, const struct state_image *img, double t,
			    struct state_fl_restore_stats *st)
{
	state_restore_flowlog(img, at(t), true, by_id, queue0, l, st);
}

static void read_decisions(const char *path)
{
	free_lines();
	FILE *f = fopen(path, "r");
	char buf[1024];
	ck_assert_ptr_nonnull(f);
	while (fgets(buf, sizeof(buf), f))
		add_line(buf);
	fclose(f);
	unlink(path);
}

/* A clean stop saves the open window rather than writing it; the next
 * start puts it back and the packets after the restart add to the same
 * records: one record per flow, direction and window, with every packet,
 * and one decision-log line with its rule. */
START_TEST(window_goes_on_after_restart)
{
	struct lab l;
	struct state_image img;
	struct state_fl_restore_stats st;
	char extra[256], path[128];
	snprintf(path, sizeof(path), "/tmp/check_flowlog_restart.%d", (int)getpid());
	snprintf(extra, sizeof(extra), ",\"Vpcfw\":{\"DecisionLog\":\"%s\"}", path);

	lab_open(&l, extra);
	ck_assert(send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_SYN), 1).accept);
	ck_assert(send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_ACK), 2).accept);
	ck_assert(!send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40001, 81, TCP_SYN), 3).accept);
	save_windows(&l, 10, &img);
	ck_assert_uint_eq(img.n_flwins, 1);     /* the default flow log: 600 s */
	ck_assert_uint_eq(img.n_flents, 4);     /* two flows, each at both interfaces */
	flowlog_forget_saved(l.fl, all_saved, NULL);
	lab_close(&l);
	ck_assert_int_eq(g_n, 0);               /* no record, no NODATA: saved instead */
	read_decisions(path);
	ck_assert_int_eq(g_n, 0);
	free_lines();

	lab_open(&l, extra);                    /* the next start */
	restore_windows(&l, &img, 20, &st);
	ck_assert_uint_eq(st.fl.entries, 4);
	ck_assert_uint_eq(st.fl.windows_open, 1);
	ck_assert_uint_eq(st.fl.windows_ended + st.unknown_iface + st.no_queue + st.fl.not_logged +
			  st.fl.duplicate + st.fl.table_full, 0);
	state_image_free(&img);
	ck_assert(send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_ACK), 30).accept);
	ck_assert(!send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40001, 81, TCP_SYN), 40).accept);
	lab_close(&l);
	ck_count("2 123456789010 eni-a 10.0.1.10 10.0.2.20 40000 80 6 3 180 1699999801 1699999830 "
		 "ACCEPT OK", 1);
	ck_count("2 123456789010 eni-b 10.0.1.10 10.0.2.20 40000 80 6 3 180 1699999801 1699999830 "
		 "ACCEPT OK", 1);
	ck_count("eni-a 10.0.1.10 10.0.2.20 40001 81 6 2 120 1699999803 1699999840 REJECT OK", 1);
	ck_count("eni-b 10.0.1.10 10.0.2.20 40001 81 6 2 120 1699999803 1699999840 REJECT OK", 1);
	ck_count(" OK", 4);
	ck_count("NODATA", 0);
	read_decisions(path);
	ck_assert_int_eq(g_n, 1);
	ck_count("\"start\": 1699999803, \"end\": 1699999840, \"interface-id\": \"eni-a\"", 1);
	ck_count("\"dstport\": 81, \"protocol\": 6, \"packets\": 2, \"bytes\": 120, \"action\": "
		 "\"REJECT\", \"stage\": \"sg-ingress\", \"reason\": \"ENI_SG_RULES_MISMATCH\", "
		 "\"rule\": \"no security-group rule of eni-b admits it (ingress)\"", 1);
	free_lines();
}
END_TEST

/* Down past the end of the window: its records are written at the start,
 * with their own times, apart from the packets after the restart. */
START_TEST(window_ended_meanwhile)
{
	struct lab l;
	struct state_image img;
	struct state_fl_restore_stats st;
	const char *fl60 = ",\"FlowLogs\":[{\"FlowLogId\":\"fl-1\",\"ResourceId\":\"eni-a\","
			   "\"TrafficType\":\"ALL\",\"MaxAggregationInterval\":60}]";

	lab_open(&l, fl60);
	send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000, 22, TCP_SYN), 1);
	send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000, 22, TCP_ACK), 2);
	save_windows(&l, 5, &img);
	flowlog_forget_saved(l.fl, all_saved, NULL);
	lab_close(&l);
	ck_assert_int_eq(g_n, 0);
	free_lines();

	lab_open(&l, fl60);
	restore_windows(&l, &img, 130, &st);
	ck_assert_uint_eq(st.fl.entries, 1);
	ck_assert_uint_eq(st.fl.windows_ended, 1);
	ck_assert_uint_eq(st.fl.windows_open, 0);
	state_image_free(&img);
	send(&l, tu_pkt("198.51.100.1", "10.0.1.10", 6, 50000, 22, TCP_ACK), 131);
	lab_close(&l);
	ck_count("eni-a 198.51.100.1 10.0.1.10 50000 22 6 2 120 1699999801 1699999802 ACCEPT OK", 1);
	ck_count("eni-a 198.51.100.1 10.0.1.10 50000 22 6 1 60 1699999931 1699999931 ACCEPT OK", 1);
	ck_count(" OK", 2);
	ck_count("NODATA", 0);  /* no claim about the windows it was down */
	ck_assert_int_eq(g_gz_files, 1);
	free_lines();
}
END_TEST

/* Which flow logs record a restored entry follows the configuration in
 * force: eni-a's entries, no longer logged, are dropped and counted; an
 * interface gone from the configuration likewise. */
START_TEST(restore_follows_configuration)
{
	struct lab l;
	struct state_image img;
	struct state_fl_restore_stats st;

	lab_open(&l, NULL);
	send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_SYN), 1);
	save_windows(&l, 5, &img);
	flowlog_forget_saved(l.fl, all_saved, NULL);
	lab_close(&l);
	free_lines();
	lab_open(&l, ",\"FlowLogs\":[{\"FlowLogId\":\"fl-b\",\"ResourceId\":\"eni-b\","
		     "\"TrafficType\":\"ALL\"}]");
	free(img.ifaces[0]);                    /* eni-a renamed: gone */
	img.ifaces[0] = strdup("eni-gone");
	restore_windows(&l, &img, 6, &st);
	ck_assert_uint_eq(st.fl.entries, 1);
	ck_assert_uint_eq(st.unknown_iface + st.fl.not_logged, 1);
	state_image_free(&img);
	lab_close(&l);
	ck_count("eni-b 10.0.1.10 10.0.2.20 40000 80 6 1 60", 1);
	ck_count(" OK", 1);
	free_lines();
}
END_TEST

/* Without a state file (or when it cannot be written) nothing is
 * forgotten: the stop writes the open windows, as before. */
START_TEST(stop_without_saving_writes)
{
	struct lab l;
	lab_open(&l, NULL);
	send(&l, tu_pkt("10.0.1.10", "10.0.2.20", 6, 40000, 80, TCP_SYN), 1);
	lab_close(&l);
	ck_count(" OK", 2);
	free_lines();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("flowlog");
	TCase *t = tcase_create("format");
	tcase_add_test(t, default_format);
	tcase_add_loop_test(t, custom_format_version, 0, sizeof(versions) / sizeof(versions[0]));
	tcase_add_loop_test(t, bad_format_named, 0, sizeof(bad_formats) / sizeof(bad_formats[0]));
	tcase_add_test(t, records_as_aws_documents_them);
	tcase_add_test(t, custom_records_as_aws_documents_them);
	tcase_add_loop_test(t, tcp_flags_or, 0, sizeof(flag_cases) / sizeof(flag_cases[0]));
	tcase_add_loop_test(t, region_from_zone, 0, sizeof(azs) / sizeof(azs[0]));
	tcase_add_test(t, s3_key_layout);
	tcase_add_test(t, s3_folder_refused);
	suite_add_tcase(s, t);

	t = tcase_create("aggregation");
	tcase_set_timeout(t, 30);
	tcase_add_test(t, request_accepted_reply_refused);
	tcase_add_test(t, source_and_destination_sides);
	tcase_add_test(t, windows_and_addresses);
	tcase_add_test(t, traffic_type_reject);
	tcase_add_test(t, exempt_not_logged);
	tcase_add_test(t, full_table_skipdata);
	tcase_add_test(t, losses_in_metrics);
	tcase_add_test(t, cloud_watch_logs_json);
	tcase_add_test(t, other_destination_not_written);
	tcase_add_test(t, decision_log);
	tcase_add_test(t, rotation);
	tcase_add_test(t, threaded_writer);
	tcase_add_test(t, config_names_unknown_field);
	tcase_add_test(t, off_without_directory);
	suite_add_tcase(s, t);

	t = tcase_create("restart");
	tcase_set_timeout(t, 30);
	tcase_add_test(t, window_goes_on_after_restart);
	tcase_add_test(t, window_ended_meanwhile);
	tcase_add_test(t, restore_follows_configuration);
	tcase_add_test(t, stop_without_saving_writes);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	int rc = run_suite(suite());
	policy_intern_reset();
	return rc;
}
