/* libFuzzer target: the flow-log record reader (issue #15) on arbitrary
 * bytes: the first line as a header (a custom format), every line as a
 * record in that format and in the default one, and as a CloudWatch Logs
 * JSON line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/flowlog_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fl_format def, custom;
	struct flr_record r;
	struct packet p;
	char err[512], msg[1024];
	size_t n;

	fl_format_parse(NULL, &def, err, sizeof(err));
	custom = def;
	/* exact-size copies, so that a read past a line is caught; +1 for
	 * the NUL the parser writes at a line's end */
	char *line = malloc(size + 1);
	if (!line)
		return 0;
	size_t off = 0;
	bool first = true;
	while (off <= size) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
		memcpy(line, data + off, len);
		if (first)
			flr_parse_header(line, len, &custom, err, sizeof(err));
		first = false;
		if (flr_cloudwatch_message(line, len, msg, sizeof(msg), &n) &&
		    flr_parse_line(&def, msg, n, &r, err, sizeof(err)))
			flr_to_packet(&r, &p);
		memcpy(line, data + off, len);
		if (flr_parse_line(&custom, line, len, &r, err, sizeof(err)))
			flr_to_packet(&r, &p);
		memcpy(line, data + off, len);
		if (flr_parse_line(&def, line, len, &r, err, sizeof(err)))
			flr_to_packet(&r, &p);
		if (!nl)
			break;
		off += len + 1;
	}
	free(line);
	return 0;
}
