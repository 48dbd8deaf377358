/* libFuzzer target: the flow-log LogFormat parser and what is built on it
 * (src/flowlog_format.c; issue #9, "fuzzing where input enters"): the bytes
 * as a FlowLogs[].LogFormat; a format that parses must write its header and
 * a record (into a roomy and a cramped buffer), and its header must read
 * back (flr_parse_header, the reader of --replay-flow-logs) as the same
 * fields; the same bytes as a LogDestination ARN (S3 folder) and as an
 * availability zone. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/addr.h"
#include "vpcfw/flowlog.h"
#include "vpcfw/flowlog_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size, NUL-terminated copy */
	char *text = malloc(size + 1);
	struct fl_format f, back;
	struct fl_s3_layout lay;
	char err[512], line[4096], tiny[16], region[32];
	int fam;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (fl_format_parse(text, &f, err, sizeof(err))) {
		if (f.n < 0 || f.n > FL_MAX_FIELDS)
			abort();
		struct fl_record r = {
			.account_id = "123456789012", .interface_id = "eni-1", .vpc_id = "vpc-1",
			.subnet_id = "subnet-1", .instance_id = "i-1", .region = "us-east-1",
			.az_id = "use1-az1", .family = FAMILY_V4, .proto = 6, .sport = 40000,
			.dport = 443, .tcp_flags = 2, .accept = true, .traffic_path = 1,
			.packets = 3, .bytes = 180, .start = 1700000000, .end = 1700000060,
		};
		addr_parse("10.0.1.10", &r.srcaddr, &fam);
		addr_parse("203.0.113.7", &r.dstaddr, &fam);
		r.pkt_srcaddr = r.srcaddr;
		r.pkt_dstaddr = r.dstaddr;
		size_t n = fl_format_header(&f, line, sizeof(line));
		if (n < sizeof(line) - 1 && f.n > 0) {
			/* what we write, our reader reads back */
			if (!flr_parse_header(line, n, &back, err, sizeof(err)) || back.n != f.n ||
			    memcmp(back.fields, f.fields, (size_t)f.n))
				abort();
		}
		fl_format_header(&f, tiny, sizeof(tiny));
		fl_format_record(&f, &r, line, sizeof(line));
		fl_format_record(&f, &r, tiny, sizeof(tiny));
		r.status = FL_NODATA;
		fl_format_record(&f, &r, line, sizeof(line));
	}
	memset(&lay, 0, sizeof(lay));
	fl_s3_folder(text, &lay, err, sizeof(err));
	fl_region_of_az(text, region, sizeof(region));
	free(text);
	return 0;
}
