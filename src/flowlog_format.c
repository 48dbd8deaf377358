/* The text of VPC flow-log records exactly as AWS writes them (VPC user
 * guide: flow-log-records, flow-logs-records-examples, flow-logs-s3-path). */
#include "vpcfw/flowlog.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const struct {
	const char *name;
	int version;
} fields[FLF_COUNT] = {
	[FLF_VERSION] = { "version", 2 },
	[FLF_ACCOUNT_ID] = { "account-id", 2 },
	[FLF_INTERFACE_ID] = { "interface-id", 2 },
	[FLF_SRCADDR] = { "srcaddr", 2 },
	[FLF_DSTADDR] = { "dstaddr", 2 },
	[FLF_SRCPORT] = { "srcport", 2 },
	[FLF_DSTPORT] = { "dstport", 2 },
	[FLF_PROTOCOL] = { "protocol", 2 },
	[FLF_PACKETS] = { "packets", 2 },
	[FLF_BYTES] = { "bytes", 2 },
	[FLF_START] = { "start", 2 },
	[FLF_END] = { "end", 2 },
	[FLF_ACTION] = { "action", 2 },
	[FLF_LOG_STATUS] = { "log-status", 2 },
	[FLF_VPC_ID] = { "vpc-id", 3 },
	[FLF_SUBNET_ID] = { "subnet-id", 3 },
	[FLF_INSTANCE_ID] = { "instance-id", 3 },
	[FLF_TCP_FLAGS] = { "tcp-flags", 3 },
	[FLF_TYPE] = { "type", 3 },
	[FLF_PKT_SRCADDR] = { "pkt-srcaddr", 3 },
	[FLF_PKT_DSTADDR] = { "pkt-dstaddr", 3 },
	[FLF_REGION] = { "region", 4 },
	[FLF_AZ_ID] = { "az-id", 4 },
	[FLF_SUBLOCATION_TYPE] = { "sublocation-type", 4 },
	[FLF_SUBLOCATION_ID] = { "sublocation-id", 4 },
	[FLF_PKT_SRC_AWS_SERVICE] = { "pkt-src-aws-service", 5 },
	[FLF_PKT_DST_AWS_SERVICE] = { "pkt-dst-aws-service", 5 },
	[FLF_FLOW_DIRECTION] = { "flow-direction", 5 },
	[FLF_TRAFFIC_PATH] = { "traffic-path", 5 },
	[FLF_ECS_CLUSTER_ARN] = { "ecs-cluster-arn", 7 },
	[FLF_ECS_CLUSTER_NAME] = { "ecs-cluster-name", 7 },
	[FLF_ECS_CONTAINER_INSTANCE_ARN] = { "ecs-container-instance-arn", 7 },
	[FLF_ECS_CONTAINER_INSTANCE_ID] = { "ecs-container-instance-id", 7 },
	[FLF_ECS_CONTAINER_ID] = { "ecs-container-id", 7 },
	[FLF_ECS_SECOND_CONTAINER_ID] = { "ecs-second-container-id", 7 },
	[FLF_ECS_SERVICE_NAME] = { "ecs-service-name", 7 },
	[FLF_ECS_TASK_DEFINITION_ARN] = { "ecs-task-definition-arn", 7 },
	[FLF_ECS_TASK_ARN] = { "ecs-task-arn", 7 },
	[FLF_ECS_TASK_ID] = { "ecs-task-id", 7 },
	[FLF_REJECT_REASON] = { "reject-reason", 8 },
};

const char *fl_field_name(enum fl_field f)
{
	return (unsigned)f < FLF_COUNT ? fields[f].name : "?";
}

int fl_field_version(enum fl_field f)
{
	return (unsigned)f < FLF_COUNT ? fields[f].version : 0;
}

static int field_by_name(const char *s, size_t len)
{
	for (int i = 0; i < FLF_COUNT; i++)
		if (strlen(fields[i].name) == len && memcmp(fields[i].name, s, len) == 0)
			return i;
	return -1;
}

bool fl_format_parse(const char *text, struct fl_format *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!text || !*text) {
		/* "The default format includes all version 2 fields, in the
		 * same order that they appear in the table." */
		for (int i = FLF_VERSION; i <= FLF_LOG_STATUS; i++)
			out->fields[out->n++] = (uint8_t)i;
		out->version = 2;
		return true;
	}
	const char *s = text;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		const char *tok = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		size_t len = (size_t)(s - tok);
		int shown = len > 60 ? 60 : (int)len;
		if (len < 4 || tok[0] != '$' || tok[1] != '{' || tok[len - 1] != '}') {
			snprintf(err, errlen, "'%.*s' is not a ${field} token", shown, tok);
			return false;
		}
		int f = field_by_name(tok + 2, len - 3);
		if (f < 0) {
			snprintf(err, errlen, "unknown field '%.*s'", shown, tok);
			return false;
		}
		if (out->n == FL_MAX_FIELDS) {
			snprintf(err, errlen, "more than %d fields", FL_MAX_FIELDS);
			return false;
		}
		out->fields[out->n++] = (uint8_t)f;
		if (fields[f].version > out->version)
			out->version = fields[f].version;
	}
	if (out->n == 0) {
		snprintf(err, errlen, "no field: at least one ${field} is needed");
		return false;
	}
	return true;
}

/* Appends to a bounded buffer; the position keeps counting past the end so
 * that the caller sees truncation, like snprintf. */
struct out {
	char *buf;
	size_t len, pos;
};

static void put(struct out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->pos < o->len) {
		size_t room = o->len - o->pos - 1;
		memcpy(o->buf + o->pos, s, n < room ? n : room);
		o->buf[o->pos + (n < room ? n : room)] = '\0';
	}
	o->pos += n;
}

static void put_u64(struct out *o, uint64_t v)
{
	char tmp[24];
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	put(o, tmp);
}

static void put_str(struct out *o, const char *s)
{
	put(o, s && *s ? s : "-");
}

static void put_addr(struct out *o, const struct ip_addr *a, int family)
{
	char tmp[ADDR_STRLEN];
	put(o, addr_format(a, family, tmp));
}

uint8_t fl_tcp_flags(uint8_t wire)
{
	/* FIN 1, SYN 2, RST 4, and SYN-ACK 18 for a packet carrying both: an
	 * ACK or PSH alone gives 0 (flow-log-records, tcp-flags). */
	uint8_t f = wire & (TCP_FIN | TCP_SYN | TCP_RST);
	if ((wire & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK))
		f |= TCP_ACK;
	return f;
}

size_t fl_format_header(const struct fl_format *f, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	if (len)
		buf[0] = '\0';
	for (int i = 0; i < f->n; i++) {
		if (i)
			put(&o, " ");
		put(&o, fl_field_name(f->fields[i]));
	}
	return o.pos;
}

static bool has_ports(uint8_t proto)
{
	return proto == PROTO_TCP || proto == PROTO_UDP;
}

static void put_field(struct out *o, const struct fl_format *f, enum fl_field field,
		      const struct fl_record *r)
{
	bool flow = r->status == FL_OK;

	switch (field) {
	case FLF_VERSION: put_u64(o, (uint64_t)f->version); return;
	case FLF_ACCOUNT_ID: put_str(o, r->account_id); return;
	case FLF_INTERFACE_ID: put_str(o, r->interface_id); return;
	case FLF_VPC_ID: put_str(o, r->vpc_id); return;
	case FLF_SUBNET_ID: put_str(o, r->subnet_id); return;
	case FLF_INSTANCE_ID: put_str(o, r->instance_id); return;
	case FLF_REGION: put_str(o, r->region); return;
	case FLF_AZ_ID: put_str(o, r->az_id); return;
	case FLF_START: put_u64(o, r->start); return;
	case FLF_END: put_u64(o, r->end); return;
	case FLF_LOG_STATUS:
		put(o, r->status == FL_OK ? "OK" : r->status == FL_NODATA ? "NODATA" : "SKIPDATA");
		return;
	default:
		break;
	}
	if (!flow) {
		put(o, "-");
		return;
	}
	switch (field) {
	case FLF_SRCADDR: put_addr(o, &r->srcaddr, r->family); return;
	case FLF_DSTADDR: put_addr(o, &r->dstaddr, r->family); return;
	case FLF_PKT_SRCADDR: put_addr(o, &r->pkt_srcaddr, r->family); return;
	case FLF_PKT_DSTADDR: put_addr(o, &r->pkt_dstaddr, r->family); return;
	/* "ICMP records show srcport/dstport 0" (flow-logs-records-examples) */
	case FLF_SRCPORT: put_u64(o, has_ports(r->proto) ? r->sport : 0); return;
	case FLF_DSTPORT: put_u64(o, has_ports(r->proto) ? r->dport : 0); return;
	case FLF_PROTOCOL: put_u64(o, r->proto); return;
	case FLF_PACKETS: put_u64(o, r->packets); return;
	case FLF_BYTES: put_u64(o, r->bytes); return;
	case FLF_ACTION: put(o, r->accept ? "ACCEPT" : "REJECT"); return;
	case FLF_TCP_FLAGS:
		/* already reduced by fl_tcp_flags() */
		put_u64(o, r->proto == PROTO_TCP ? r->tcp_flags : 0);
		return;
	case FLF_TYPE: put(o, r->family == FAMILY_V6 ? "IPv6" : "IPv4"); return;
	case FLF_FLOW_DIRECTION: put(o, r->egress ? "egress" : "ingress"); return;
	case FLF_TRAFFIC_PATH:
		if (r->egress && r->traffic_path > 0)
			put_u64(o, (uint64_t)r->traffic_path);
		else
			put(o, "-");
		return;
	default:
		/* sublocations, AWS service names, ECS, reject-reason (only
		 * "BPA", Block Public Access, which vpcfw does not model) */
		put(o, "-");
		return;
	}
}

size_t fl_format_record(const struct fl_format *f, const struct fl_record *r, char *buf,
			size_t len)
{
	struct out o = { buf, len, 0 };
	if (len)
		buf[0] = '\0';
	for (int i = 0; i < f->n; i++) {
		if (i)
			put(&o, " ");
		put_field(&o, f, f->fields[i], r);
	}
	return o.pos;
}

bool fl_region_of_az(const char *az, char *out, size_t len)
{
	/* The region is the zone name up to the first number: the letter
	 * after it is the zone, and anything after a dash is a Local Zone or
	 * Wavelength zone of that region. */
	if (!az || !islower((unsigned char)az[0]))
		return false;
	const char *p = az;
	while (*p && !isdigit((unsigned char)*p)) {
		if (!islower((unsigned char)*p) && *p != '-')
			return false;
		p++;
	}
	if (!*p || p == az || p[-1] != '-')
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	size_t n = (size_t)(p - az);
	if (n + 1 > len)
		return false;
	memcpy(out, az, n);
	out[n] = '\0';
	return true;
}

bool fl_s3_folder(const char *arn, struct fl_s3_layout *lay, char *err, size_t errlen)
{
	const char *p;

	lay->folder[0] = '\0';
	if (!arn || strncmp(arn, "arn:", 4) != 0 || !(p = strstr(arn, ":::")))
		return true; /* no S3 ARN: the bucket's top */
	p = strchr(p + 3, '/');
	if (!p)
		return true;
	p++;
	size_t n = strlen(p);
	while (n && p[n - 1] == '/')
		n--;
	if (n >= sizeof(lay->folder)) {
		snprintf(err, errlen, "the folder of '%s' is too long", arn);
		return false;
	}
	memcpy(lay->folder, p, n);
	lay->folder[n] = '\0';
	for (const char *c = lay->folder; n && *c;) {
		size_t k = strcspn(c, "/");
		if (k == 0 || (k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.')) {
			snprintf(err, errlen, "the folder of '%s' has an empty, '.' or '..' part",
				 arn);
			return false;
		}
		/* flow-logs-s3: "You can't use AWSLogs as a subfolder name" */
		if (k == 7 && strncmp(c, "AWSLogs", 7) == 0) {
			snprintf(err, errlen, "'%s': AWS refuses AWSLogs as a subfolder name", arn);
			return false;
		}
		c += k;
		if (*c)
			c++;
	}
	return true;
}

size_t fl_s3_key(const struct fl_s3_layout *lay, const char *account, const char *region,
		 const char *flow_log_id, uint64_t t, uint32_t hash, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char stamp[32], hour[16] = "";
	const char *folder = lay && lay->folder[0] ? lay->folder : "";
	int n;

	gmtime_r(&tt, &tm);
	snprintf(stamp, sizeof(stamp), "%04d%02d%02dT%02d%02dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
	if (lay && lay->per_hour)
		snprintf(hour, sizeof(hour), lay->hive ? "hour=%02d/" : "%02d/", tm.tm_hour);
	if (lay && lay->hive)
		n = snprintf(buf, len,
			     "%s%sAWSLogs/aws-account-id=%s/aws-service=vpcflowlogs/aws-region=%s/"
			     "year=%04d/month=%02d/day=%02d/%s",
			     folder, *folder ? "/" : "", account, region, tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, hour);
	else
		n = snprintf(buf, len, "%s%sAWSLogs/%s/vpcflowlogs/%s/%04d/%02d/%02d/%s", folder,
			     *folder ? "/" : "", account, region, tm.tm_year + 1900, tm.tm_mon + 1,
			     tm.tm_mday, hour);
	if (n < 0 || (size_t)n >= len)
		return 0;
	int m = snprintf(buf + n, len - (size_t)n, "%s_vpcflowlogs_%s_%s_%s_%08" PRIx32 ".log.gz",
			 account, region, flow_log_id, stamp, hash);
	return m < 0 || (size_t)(n + m) >= len ? 0 : (size_t)(n + m);
}
