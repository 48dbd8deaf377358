/* The EC2 API's JSON -> struct model.  Every value is checked where it is
 * read, and a bad one is reported with file, JSON path and the value itself;
 * loading goes on so that one run reports every mistake.  Cross-object
 * references are left to policy.c; config_check() looks at what only makes
 * sense once every file is in (duplicates, NACL numbering). */
#include "vpcfw/conf.h"
#include "vpcfw/idmap.h"
#include "vpcfw/proto.h"
#include "vpcfw/sync.h"
#include "vpcfw/xmalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Far above any real export; keeps int counts and sizes from overflowing. */
enum { MAX_OBJECTS = 1 << 24, MAX_FILE = 256 << 20 };

/* ------------------------------------------------------------ load context */

struct ctx {
	struct model *m;
	struct arena *a;
	struct diag *d;
	const char *file;
	char path[320];
	size_t plen;
	struct idmap sg_ids, eni_ids;
	bool sg_ids_ready, eni_ids_ready;
	/* Reading describe-instances: data we only borrow (NetworkInterfaces is
	 * the authority), so a bad value there drops the interface with a
	 * warning instead of refusing the configuration (the AWS CLI's own
	 * documentation example has PrivateIpAddress "10-0-0-157"). */
	bool borrowed, borrowed_bad;
};

/* Appends n bytes of s to the path, cut (as snprintf would) at its end:
 * called for every value of a large document, so without printf. */
static void path_append(struct ctx *c, const char *s, size_t n)
{
	size_t room = sizeof(c->path) - 1 - c->plen;
	if (n > room)
		n = room;
	memcpy(c->path + c->plen, s, n);
	c->plen += n;
	c->path[c->plen] = '\0';
}

static size_t push_key(struct ctx *c, const char *key)
{
	size_t old = c->plen;
	if (c->plen)
		path_append(c, ".", 1);
	path_append(c, key, strlen(key));
	return old;
}

static size_t push_index(struct ctx *c, size_t i)
{
	size_t old = c->plen;
	char buf[24], *e = buf + sizeof(buf), *d = e;
	*--d = ']';
	do
		*--d = (char)('0' + i % 10);
	while ((i /= 10) != 0);
	*--d = '[';
	path_append(c, d, (size_t)(e - d));
	return old;
}

static void pop(struct ctx *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

static struct where here(struct ctx *c)
{
	struct where w = { c->file, arena_strdup(c->a, c->path) };
	return w;
}

/* A user's string made safe to print: control bytes become '?', long text
 * is cut. */
static void printable(char *dst, size_t n, const char *s)
{
	size_t i = 0;
	for (; *s && i + 4 < n; s++)
		dst[i++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
	if (*s) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
}

/* The offending value as it appears in the message. */
static const char *vtext(const json_t *v, char *buf, size_t n)
{
	char tmp[80];

	switch (json_typeof(v)) {
	case JSON_STRING:
		printable(tmp, sizeof(tmp), json_string_value(v));
		snprintf(buf, n, "\"%s\"", tmp);
		break;
	case JSON_INTEGER:
		snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		snprintf(buf, n, "%g", json_real_value(v));
		break;
	case JSON_TRUE: snprintf(buf, n, "true"); break;
	case JSON_FALSE: snprintf(buf, n, "false"); break;
	case JSON_NULL: snprintf(buf, n, "null"); break;
	case JSON_OBJECT: snprintf(buf, n, "%s", json_object_size(v) ? "{...}" : "{}"); break;
	case JSON_ARRAY: snprintf(buf, n, "%s", json_array_size(v) ? "[...]" : "[]"); break;
	}
	return buf;
}

static void err(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err(struct ctx *c, const char *fmt, ...)
{
	char body[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	if (c->borrowed) {
		c->borrowed_bad = true;
		diag_warn(c->d, c->file, c->path, "%s; the interface is not taken from "
			  "describe-instances", body);
		return;
	}
	diag_error(c->d, c->file, c->path, "%s", body);
}

static void warn(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct ctx *c, const char *fmt, ...)
{
	char body[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	diag_warn(c->d, c->file, c->path, "%s", body);
}

/* "PATH: VALUE is not a port" */
static void bad(struct ctx *c, const json_t *v, const char *what)
{
	char vt[96];
	err(c, "%s %s", vtext(v, vt, sizeof(vt)), what);
}

/* ------------------------------------------------------------ typed fields */

enum got { ABSENT, GOOD, BAD };

/* JSON null counts as absent: some tools print every optional member. */
static json_t *field(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_null(v) ? NULL : v;
}

static void missing(struct ctx *c, const char *key)
{
	err(c, "%s is missing", key);
}

static enum got get_text(struct ctx *c, const json_t *o, const char *key, const char **out)
{
	json_t *v = field(o, key);
	if (!v)
		return ABSENT;
	if (!json_is_string(v)) {
		size_t p = push_key(c, key);
		bad(c, v, "is not a string");
		pop(c, p);
		return BAD;
	}
	*out = json_string_value(v);
	return GOOD;
}

/* An optional string kept in the model. */
static enum got get_str(struct ctx *c, const json_t *o, const char *key, const char **out)
{
	const char *s;
	enum got g = get_text(c, o, key, &s);
	if (g == GOOD)
		*out = arena_strdup(c->a, s);
	return g;
}

/* An id: a non-empty string; required when `need`. */
static enum got get_id(struct ctx *c, const json_t *o, const char *key, const char **out, bool need)
{
	const char *s;
	enum got g = get_text(c, o, key, &s);
	if (g == ABSENT && need)
		missing(c, key);
	if (g != GOOD)
		return need ? BAD : g;
	if (!*s) {
		size_t p = push_key(c, key);
		err(c, "\"\" is not an id");
		pop(c, p);
		return BAD;
	}
	*out = arena_strdup(c->a, s);
	return GOOD;
}

static enum got get_bool(struct ctx *c, const json_t *o, const char *key, bool *out)
{
	json_t *v = field(o, key);
	if (!v)
		return ABSENT;
	if (!json_is_boolean(v)) {
		size_t p = push_key(c, key);
		bad(c, v, "is not true or false");
		pop(c, p);
		return BAD;
	}
	*out = json_is_true(v);
	return GOOD;
}

/* An integer in [lo, hi]; `what` names the kind ("a port") for the
 * out-of-range message, else the range is given. */
static enum got get_int(struct ctx *c, const json_t *o, const char *key, long long lo,
			long long hi, const char *what, long long *out)
{
	json_t *v = field(o, key);
	long long x;

	if (!v)
		return ABSENT;
	size_t p = push_key(c, key);
	enum got g = BAD;
	if (json_is_integer(v))
		x = json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) >= -1e15 && json_real_value(v) <= 1e15 &&
		 json_real_value(v) == (double)(long long)json_real_value(v))
		x = (long long)json_real_value(v);
	else {
		bad(c, v, json_is_real(v) ? "is not a whole number" : "is not a number");
		goto out;
	}
	if (x < lo || x > hi) {
		char what_buf[96];
		if (!what) {
			snprintf(what_buf, sizeof(what_buf), "is out of range (%lld to %lld)", lo, hi);
			what = what_buf;
		}
		bad(c, v, what);
		goto out;
	}
	*out = x;
	g = GOOD;
out:
	pop(c, p);
	return g;
}

static const char *family_name(int family)
{
	return family == FAMILY_V4 ? "IPv4" : "IPv6";
}

/* A CIDR block of the given family (0: either).  Host bits are cleared
 * without a word: AWS itself stores canonical blocks. */
static enum got get_cidr(struct ctx *c, const json_t *o, const char *key, int family,
			 struct cidr *out)
{
	json_t *v = field(o, key);
	char what[64];

	if (!v)
		return ABSENT;
	size_t p = push_key(c, key);
	enum got g = BAD;
	if (!json_is_string(v)) {
		bad(c, v, "is not a string");
	} else if (!cidr_parse(json_string_value(v), out, NULL) ||
		   (family && out->family != family)) {
		snprintf(what, sizeof(what), "is not %s CIDR block",
			 family ? (family == FAMILY_V4 ? "an IPv4" : "an IPv6") : "a");
		bad(c, v, what);
	} else {
		g = GOOD;
	}
	pop(c, p);
	return g;
}

static enum got get_addr(struct ctx *c, const json_t *o, const char *key, int family,
			 struct ip_addr *out)
{
	json_t *v = field(o, key);
	int fam;
	char what[64];

	if (!v)
		return ABSENT;
	size_t p = push_key(c, key);
	enum got g = BAD;
	if (!json_is_string(v)) {
		bad(c, v, "is not a string");
	} else if (!addr_parse(json_string_value(v), out, &fam) || fam != family) {
		snprintf(what, sizeof(what), "is not an %s address", family_name(family));
		bad(c, v, what);
	} else {
		g = GOOD;
	}
	pop(c, p);
	return g;
}

/* An optional member of one JSON type; NULL when absent or of another type
 * (reported). */
static json_t *get_typed(struct ctx *c, const json_t *o, const char *key, json_type type,
			 const char *what)
{
	json_t *v = field(o, key);
	if (v && json_typeof(v) != type) {
		size_t p = push_key(c, key);
		bad(c, v, what);
		pop(c, p);
		return NULL;
	}
	return v;
}

static json_t *get_list(struct ctx *c, const json_t *o, const char *key)
{
	return get_typed(c, o, key, JSON_ARRAY, "is not a list");
}

static json_t *get_object(struct ctx *c, const json_t *o, const char *key)
{
	return get_typed(c, o, key, JSON_OBJECT, "is not an object");
}

/* Element i of a list that must hold objects; the path must already end
 * with [i]. */
static json_t *item(struct ctx *c, const json_t *list, size_t i)
{
	json_t *e = json_array_get(list, i);
	if (!json_is_object(e)) {
		bad(c, e, "is not an object");
		return NULL;
	}
	return e;
}

/* Room for `add` more elements after `n` old ones, in the arena. */
static void *grow(struct ctx *c, void *old, int n, size_t add, size_t size)
{
	if (add > (size_t)(MAX_OBJECTS - n)) {
		err(c, "more than %d objects", MAX_OBJECTS);
		add = 0;
	}
	void *p = arena_calloc(c->a, (size_t)n + add, size);
	if (n)
		memcpy(p, old, (size_t)n * size);
	return p;
}

/* ------------------------------------------------------------ protocols */

/* IpProtocol / Protocol: "tcp", "udp", "icmp", "icmpv6", "all", "-1" or an
 * IANA number 0..255, as a string or (leniently) a JSON number. */
static bool proto_value(const json_t *v, int *out)
{
	static const struct { const char *name; int proto; } names[] = {
		{ "tcp", PROTO_TCP }, { "udp", PROTO_UDP }, { "icmp", PROTO_ICMP },
		{ "icmpv6", PROTO_ICMPV6 }, { "all", RULE_PROTO_ALL },
	};
	long long n;

	if (json_is_integer(v)) {
		n = json_integer_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcasecmp(s, names[i].name) == 0) {
				*out = names[i].proto;
				return true;
			}
		if (!(*s >= '0' && *s <= '9') && strcmp(s, "-1") != 0)
			return false;
		errno = 0;
		n = strtoll(s, &end, 10);
		if (errno || *end || end - s > 4)
			return false;
	} else {
		return false;
	}
	if (n != -1 && (n < 0 || n > 255))
		return false;
	*out = (int)n;
	return true;
}

/* A protocol; missing is an error when `need` (then BAD, else ABSENT).
 * `what` is the message for a value that is none, NULL for the usual one. */
static enum got get_proto(struct ctx *c, const json_t *o, const char *key, bool need,
			  const char *what, int *out)
{
	json_t *v = field(o, key);
	if (!v) {
		if (!need)
			return ABSENT;
		missing(c, key);
		return BAD;
	}
	if (!proto_value(v, out)) {
		size_t p = push_key(c, key);
		bad(c, v, what ? what : "is not a protocol (tcp, udp, icmp, icmpv6, -1 or 0-255)");
		pop(c, p);
		return BAD;
	}
	return GOOD;
}

/* FromPort/ToPort of a security-group rule (or SecurityGroupRules entry).
 * Returns false when the rule can match nothing. */
static bool sg_ports(struct ctx *c, const json_t *o, int proto, int *from, int *to)
{
	long long f = -1, t = -1;

	*from = *to = -1;
	if (proto == PROTO_TCP || proto == PROTO_UDP) {
		if ((get_int(c, o, "FromPort", -1, 65535, "is not a port", &f) == BAD) |
		    (get_int(c, o, "ToPort", -1, 65535, "is not a port", &t) == BAD))
			return true;
		if (f < 0 && t < 0)
			return true;
		/* Batfish (SecurityGroupsTest) reads a -1 end of a TCP/UDP range
		 * as the end of the port space; AWS itself never prints that. */
		if (f < 0) {
			warn(c, "FromPort -1 with ToPort %lld: read as ports 0-%lld", t, t);
			f = 0;
		} else if (t < 0) {
			warn(c, "ToPort -1 with FromPort %lld: read as ports %lld-65535", f, f);
			t = 65535;
		}
		if (f > t) {
			err(c, "FromPort %lld is greater than ToPort %lld", f, t);
			return true;
		}
	} else if (proto == PROTO_ICMP || proto == PROTO_ICMPV6) {
		if ((get_int(c, o, "FromPort", -1, 255, "is not an ICMP type (-1 to 255)", &f) == BAD) |
		    (get_int(c, o, "ToPort", -1, 255, "is not an ICMP code (-1 to 255)", &t) == BAD))
			return true;
		if (f < 0 && t >= 0) {
			warn(c, "ICMP code %lld with type -1 (all types): the rule matches nothing", t);
			return false;
		}
	} else {
		/* Ignored for other protocols, but still numbers. */
		get_int(c, o, "FromPort", LLONG_MIN, LLONG_MAX, NULL, &f);
		get_int(c, o, "ToPort", LLONG_MIN, LLONG_MAX, NULL, &t);
		return true;
	}
	*from = (int)f;
	*to = (int)t;
	return true;
}

/* ------------------------------------------------------------ VPCs, subnets */

static bool cidr_same(const struct cidr *a, const struct cidr *b)
{
	return a->len == b->len && a->family == b->family && addr_eq(&a->net, &b->net);
}

static void add_cidr(struct cidr *list, int *n, const struct cidr *x)
{
	for (int i = 0; i < *n; i++)
		if (cidr_same(&list[i], x))
			return;
	list[(*n)++] = *x;
}

/* An association that no longer gives the block (API VpcCidrBlockState). */
static bool assoc_gone(const json_t *assoc, const char *state_key)
{
	const json_t *st = json_object_get(assoc, state_key);
	const char *s = json_string_value(json_object_get(st, "State"));
	return s && (strcmp(s, "disassociated") == 0 || strcmp(s, "failed") == 0);
}

/* Adds the blocks of an association set (CidrBlockAssociationSet and
 * friends) to list. */
static void assoc_cidrs(struct ctx *c, const json_t *o, const char *set_key, const char *key,
			const char *state_key, int family, struct cidr *list, int *n)
{
	json_t *set = get_list(c, o, set_key);
	size_t pk = push_key(c, set_key);
	for (size_t i = 0; i < json_array_size(set); i++) {
		size_t pi = push_index(c, i);
		json_t *e = item(c, set, i);
		struct cidr x;
		if (e && get_cidr(c, e, key, family, &x) == GOOD && !assoc_gone(e, state_key))
			add_cidr(list, n, &x);
		pop(c, pi);
	}
	pop(c, pk);
}

/* Fields of the EC2 API that change what reaches an interface but that
 * vpcfw does not model (it sees no internet gateway): a warning, so that a
 * real export is never enforced differently from AWS without a word (and
 * --strict refuses it).  See vpcfw.conf(5), "Fields of the EC2 API". */
static void unmodelled_bool(struct ctx *c, const json_t *o, const char *key, const char *what)
{
	const json_t *v = field(o, key);
	if (!json_is_true(v))
		return;
	size_t p = push_key(c, key);
	warn(c, "true: %s; vpcfw does not model internet-gateway traffic, so it is not enforced", what);
	pop(c, p);
}

/* VPC Block Public Access (BlockPublicAccessStates.InternetGatewayBlockMode
 * of describe-vpcs and describe-subnets): anything but "off" blocks traffic
 * through the internet gateway, which vpcfw does not see as such. */
static void block_public_access(struct ctx *c, const json_t *o)
{
	const json_t *b = field(o, "BlockPublicAccessStates");
	const char *mode;

	if (!b)
		return;
	size_t p = push_key(c, "BlockPublicAccessStates");
	if (!json_is_object(b)) {
		bad(c, b, "is not an object");
	} else if ((mode = json_string_value(json_object_get(b, "InternetGatewayBlockMode"))) &&
		   strcmp(mode, "off") != 0) {
		size_t q = push_key(c, "InternetGatewayBlockMode");
		warn(c, "\"%.40s\": VPC Block Public Access blocks internet-gateway traffic, which vpcfw "
		     "does not model: not enforced", mode);
		pop(c, q);
	}
	pop(c, p);
}

static bool load_vpc(struct ctx *c, const json_t *o, void *obj, bool flag)
{
	struct m_vpc *v = obj;
	(void)flag;
	bool ok = get_id(c, o, "VpcId", &v->id, true) == GOOD;
	size_t room = 1 + json_array_size(json_object_get(o, "CidrBlockAssociationSet")) +
		      json_array_size(json_object_get(o, "Ipv6CidrBlockAssociationSet"));
	struct cidr x;

	get_str(c, o, "OwnerId", &v->owner_id);
	v->cidrs = arena_calloc(c->a, room, sizeof(*v->cidrs));
	if (get_cidr(c, o, "CidrBlock", FAMILY_V4, &x) == GOOD) {
		add_cidr(v->cidrs, &v->n_cidrs, &x);
		v->has_primary4 = true;
	}
	assoc_cidrs(c, o, "CidrBlockAssociationSet", "CidrBlock", "CidrBlockState", FAMILY_V4,
		    v->cidrs, &v->n_cidrs);
	assoc_cidrs(c, o, "Ipv6CidrBlockAssociationSet", "Ipv6CidrBlock", "Ipv6CidrBlockState",
		    FAMILY_V6, v->cidrs, &v->n_cidrs);
	block_public_access(c, o);
	return ok;
}

static bool load_subnet(struct ctx *c, const json_t *o, void *obj, bool flag)
{
	struct m_subnet *s = obj;
	(void)flag;
	bool ok = get_id(c, o, "SubnetId", &s->id, true) == GOOD;

	get_id(c, o, "VpcId", &s->vpc_id, false);
	get_str(c, o, "AvailabilityZone", &s->az);
	get_str(c, o, "AvailabilityZoneId", &s->az_id);
	get_str(c, o, "OwnerId", &s->owner_id);
	s->has4 = get_cidr(c, o, "CidrBlock", FAMILY_V4, &s->cidr4) == GOOD;
	s->cidr6 = arena_calloc(c->a, json_array_size(json_object_get(o, "Ipv6CidrBlockAssociationSet")),
				sizeof(*s->cidr6));
	assoc_cidrs(c, o, "Ipv6CidrBlockAssociationSet", "Ipv6CidrBlock", "Ipv6CidrBlockState",
		    FAMILY_V6, s->cidr6, &s->n_cidr6);
	block_public_access(c, o);
	return ok;
}

/* ------------------------------------------------------------ numbered filter rules */

/* A network ACL entry (NetworkAclEntry) and a traffic-mirror filter rule
 * (TrafficMirrorFilterRule) have one shape: a rule number, an action, a
 * direction, a protocol, port ranges, CIDR blocks and, for an ACL entry, an
 * ICMP type and code.  load_rule reads either; a rule_shape gives one kind's
 * keys, values and limits, and its steps in the order they are read, which
 * is the order of their messages. */
enum rule_step {
	RS_END,
	RS_NUMBER,              /* RuleNumber, required */
	RS_ACTION,              /* RuleAction, required: allow/deny, accept/reject */
	RS_EGRESS,              /* Egress, required: the direction */
	RS_TRAFFIC_DIRECTION,   /* TrafficDirection, optional: the list's direction */
	RS_PROTOCOL,            /* Protocol */
	RS_CIDR_EITHER,         /* CidrBlock or Ipv6CidrBlock, exactly one */
	RS_CIDR_PAIR,           /* SourceCidrBlock and DestinationCidrBlock, one family */
	RS_PORTS,               /* the port ranges, each optional */
	RS_ICMP,                /* IcmpTypeCode, optional */
};

struct rule_shape {
	enum rule_step steps[8];        /* up to RS_END */
	long long number_max;           /* 32766, or 32768: the API's '*' rules
	                                   (32767 IPv4, 32768 IPv6) */
	const char *allow, *deny;       /* RuleAction's two values */
	const char *action_bad;         /* the message for another value */
	bool proto_needed;
	const char *proto_bad;          /* the message for a bad Protocol; NULL: get_proto's */
	const char *ports[2];           /* the port ranges' keys; NULL: none */
	const char *port_from, *port_to; /* a range's members */
};

/* What load_rule read; the caller copies it into the model's object. */
struct rule {
	struct where where;
	uint32_t number;                /* 0 when RuleNumber is bad */
	bool allow;                     /* RuleAction's first value */
	bool egress;                    /* RS_EGRESS sets it; RS_TRAFFIC_DIRECTION checks it */
	int proto;                      /* RULE_PROTO_ALL when absent or bad */
	bool has_ports[2];
	uint16_t port_from[2], port_to[2];
	bool has_icmp;
	int icmp_type, icmp_code;       /* -1 = all */
	struct cidr cidr[2];            /* the block, or source and destination */
};

static const struct rule_shape nacl_entry_shape = {
	.steps = { RS_EGRESS, RS_ACTION, RS_PROTOCOL, RS_CIDR_EITHER, RS_NUMBER, RS_PORTS, RS_ICMP },
	.number_max = 32768,
	.allow = "allow", .deny = "deny", .action_bad = "is not allow or deny",
	.proto_needed = true,
	.ports = { "PortRange" }, .port_from = "From", .port_to = "To",
};

static const struct rule_shape mirror_rule_shape = {
	.steps = { RS_NUMBER, RS_ACTION, RS_TRAFFIC_DIRECTION, RS_PROTOCOL, RS_PORTS, RS_CIDR_PAIR },
	.number_max = 32766,
	.allow = "accept", .deny = "reject", .action_bad = "is not accept or reject",
	.proto_bad = "is not a protocol (0-255)",
	.ports = { "SourcePortRange", "DestinationPortRange" },
	.port_from = "FromPort", .port_to = "ToPort",
};

/* A port range {FROM, TO} under key: false when absent. */
static bool port_range(struct ctx *c, const json_t *o, const char *key, const char *from_key,
		       const char *to_key, uint16_t *from, uint16_t *to)
{
	json_t *pr = get_object(c, o, key);
	long long f = 0, t = 65535;

	if (!pr)
		return false;
	size_t p = push_key(c, key);
	if (get_int(c, pr, from_key, 0, 65535, "is not a port", &f) == ABSENT)
		missing(c, from_key);
	if (get_int(c, pr, to_key, 0, 65535, "is not a port", &t) == ABSENT)
		missing(c, to_key);
	if (f > t) {
		err(c, "%s %lld is greater than %s %lld", from_key, f, to_key, t);
		t = f;
	}
	pop(c, p);
	*from = (uint16_t)f;
	*to = (uint16_t)t;
	return true;
}

static void rule_number(struct ctx *c, const json_t *o, const struct rule_shape *s, int family,
			struct rule *r)
{
	long long num;

	switch (get_int(c, o, "RuleNumber", 1, s->number_max, "is not a rule number (1-32766)",
			&num)) {
	case ABSENT: missing(c, "RuleNumber"); break;
	case BAD: break;
	case GOOD:
		if ((num == 32767 && family == FAMILY_V6) || (num == 32768 && family == FAMILY_V4)) {
			size_t p = push_key(c, "RuleNumber");
			err(c, "%lld is not a rule number of an %s entry", num, family_name(family));
			pop(c, p);
		}
		r->number = (uint32_t)num;
		break;
	}
}

static void rule_action(struct ctx *c, const json_t *o, const struct rule_shape *s,
			struct rule *r)
{
	const char *action;

	switch (get_text(c, o, "RuleAction", &action)) {
	case ABSENT: missing(c, "RuleAction"); break;
	case BAD: break;
	case GOOD:
		if (strcasecmp(action, s->allow) == 0) {
			r->allow = true;
		} else if (strcasecmp(action, s->deny) != 0) {
			size_t p = push_key(c, "RuleAction");
			bad(c, field(o, "RuleAction"), s->action_bad);
			pop(c, p);
		}
		break;
	}
}

/* CidrBlock or Ipv6CidrBlock: the block's family, 0 if there is none. */
static int rule_cidr_either(struct ctx *c, const json_t *o, struct rule *r)
{
	bool has4 = field(o, "CidrBlock") != NULL, has6 = field(o, "Ipv6CidrBlock") != NULL;

	if (has4 && has6)
		err(c, "both CidrBlock and Ipv6CidrBlock are given");
	else if (!has4 && !has6)
		err(c, "neither CidrBlock nor Ipv6CidrBlock is given");
	else if (get_cidr(c, o, has4 ? "CidrBlock" : "Ipv6CidrBlock", has4 ? FAMILY_V4 : FAMILY_V6,
			  &r->cidr[0]) == GOOD)
		return r->cidr[0].family;
	return 0;
}

static void rule_cidr_pair(struct ctx *c, const json_t *o, struct rule *r)
{
	enum got gs = get_cidr(c, o, "SourceCidrBlock", 0, &r->cidr[0]);
	enum got gd = get_cidr(c, o, "DestinationCidrBlock", 0, &r->cidr[1]);

	if (gs == ABSENT)
		missing(c, "SourceCidrBlock");
	if (gd == ABSENT)
		missing(c, "DestinationCidrBlock");
	if (gs == GOOD && gd == GOOD && r->cidr[0].family != r->cidr[1].family)
		err(c, "SourceCidrBlock and DestinationCidrBlock are of different families");
}

static void rule_icmp(struct ctx *c, const json_t *o, struct rule *r)
{
	json_t *ic = get_object(c, o, "IcmpTypeCode");
	long long x;

	if (!ic)
		return;
	size_t p = push_key(c, "IcmpTypeCode");
	if (get_int(c, ic, "Type", -1, 255, "is not an ICMP type (-1 to 255)", &x) == GOOD)
		r->icmp_type = (int)x;
	if (get_int(c, ic, "Code", -1, 255, "is not an ICMP code (-1 to 255)", &x) == GOOD)
		r->icmp_code = (int)x;
	pop(c, p);
	r->has_icmp = true;
}

/* Reads one rule of the kind s describes into r; r->egress is the list's
 * direction when the rule has no Egress of its own. */
static void load_rule(struct ctx *c, const json_t *o, const struct rule_shape *s, struct rule *r)
{
	const char *dir;
	int family = 0;

	r->where = here(c);
	r->proto = RULE_PROTO_ALL;
	r->icmp_type = r->icmp_code = -1;
	for (const enum rule_step *st = s->steps; *st != RS_END; st++)
		switch (*st) {
		case RS_END:
			break;
		case RS_NUMBER:
			rule_number(c, o, s, family, r);
			break;
		case RS_ACTION:
			rule_action(c, o, s, r);
			break;
		case RS_EGRESS:
			if (get_bool(c, o, "Egress", &r->egress) == ABSENT)
				missing(c, "Egress");
			break;
		case RS_TRAFFIC_DIRECTION:
			if (get_text(c, o, "TrafficDirection", &dir) == GOOD &&
			    strcasecmp(dir, r->egress ? "egress" : "ingress") != 0) {
				size_t p = push_key(c, "TrafficDirection");
				bad(c, field(o, "TrafficDirection"),
				    r->egress ? "is not egress, in EgressFilterRules"
					      : "is not ingress, in IngressFilterRules");
				pop(c, p);
			}
			break;
		case RS_PROTOCOL:
			get_proto(c, o, "Protocol", s->proto_needed, s->proto_bad, &r->proto);
			break;
		case RS_CIDR_EITHER:
			family = rule_cidr_either(c, o, r);
			break;
		case RS_CIDR_PAIR:
			rule_cidr_pair(c, o, r);
			break;
		case RS_PORTS:
			for (int i = 0; i < 2 && s->ports[i]; i++)
				r->has_ports[i] = port_range(c, o, s->ports[i], s->port_from, s->port_to,
							     &r->port_from[i], &r->port_to[i]);
			break;
		case RS_ICMP:
			rule_icmp(c, o, r);
			break;
		}
}

/* ------------------------------------------------------------ network ACLs */

static void load_nacl_entry(struct ctx *c, const json_t *o, struct m_nacl_entry *e)
{
	struct rule r = { 0 };

	load_rule(c, o, &nacl_entry_shape, &r);
	e->where = r.where;
	e->number = r.number;
	e->egress = r.egress;
	e->allow = r.allow;
	e->proto = r.proto;
	e->has_ports = r.has_ports[0];
	e->port_from = r.port_from[0];
	e->port_to = r.port_to[0];
	e->has_icmp = r.has_icmp;
	e->icmp_type = r.icmp_type;
	e->icmp_code = r.icmp_code;
	e->cidr = r.cidr[0];
}

/* A list of objects each naming an id (Associations[].SubnetId,
 * Groups[].GroupId): the ids, each with where it stands. */
static int load_id_list(struct ctx *c, const json_t *o, const char *list_key, const char *id_key,
			const char ***ids, struct where **wheres)
{
	json_t *list = get_list(c, o, list_key);
	size_t pk = push_key(c, list_key);
	int n = 0;

	*ids = arena_calloc(c->a, json_array_size(list), sizeof(**ids));
	*wheres = arena_calloc(c->a, json_array_size(list), sizeof(**wheres));
	for (size_t i = 0; i < json_array_size(list); i++) {
		size_t pi = push_index(c, i);
		json_t *x = item(c, list, i);
		const char *id;
		if (x && get_id(c, x, id_key, &id, true) == GOOD) {
			(*ids)[n] = id;
			(*wheres)[n++] = here(c);
		}
		pop(c, pi);
	}
	pop(c, pk);
	return n;
}

static bool load_nacl(struct ctx *c, const json_t *o, void *obj, bool flag)
{
	struct m_nacl *n = obj;
	(void)flag;
	bool ok = get_id(c, o, "NetworkAclId", &n->id, true) == GOOD;

	get_id(c, o, "VpcId", &n->vpc_id, false);
	get_bool(c, o, "IsDefault", &n->is_default);

	json_t *list = get_list(c, o, "Entries");
	size_t pk = push_key(c, "Entries");
	n->entries = arena_calloc(c->a, json_array_size(list), sizeof(*n->entries));
	for (size_t i = 0; i < json_array_size(list); i++) {
		size_t pi = push_index(c, i);
		json_t *e = item(c, list, i);
		if (e)
			load_nacl_entry(c, e, &n->entries[n->n_entries++]);
		pop(c, pi);
	}
	pop(c, pk);

	n->n_subnets = load_id_list(c, o, "Associations", "SubnetId", &n->subnets, &n->subnet_where);
	return ok;
}

/* ------------------------------------------------------------ security groups */

static void add_peer(struct ctx *c, struct m_sg_rule *r, enum peer_kind kind,
		     const struct cidr *cidr, const char *ref)
{
	struct m_peer *p = &r->peers[r->n_peers++];
	p->kind = kind;
	if (cidr)
		p->cidr = *cidr;
	p->ref = ref;
	p->where = here(c);
}

/* Peers of one IpPermission from one of its four lists. */
static void perm_peers(struct ctx *c, const json_t *perm, const char *list_key, const char *key,
		       enum peer_kind kind, int family, struct m_sg_rule *r)
{
	json_t *list = get_list(c, perm, list_key);
	size_t pk = push_key(c, list_key);
	for (size_t i = 0; i < json_array_size(list); i++) {
		size_t pi = push_index(c, i);
		json_t *e = item(c, list, i);
		struct cidr x;
		const char *id, *name;
		if (e && kind == PEER_CIDR) {
			if (get_cidr(c, e, key, family, &x) == GOOD)
				add_peer(c, r, kind, &x, NULL);
			else if (!field(e, key))
				missing(c, key);
		} else if (e && kind == PEER_GROUP && !field(e, key) &&
			   get_text(c, e, "GroupName", &name) == GOOD) {
			char nm[80];
			printable(nm, sizeof(nm), name);
			warn(c, "group %s is named without a GroupId (EC2-Classic): it matches nothing", nm);
		} else if (e && get_id(c, e, key, &id, true) == GOOD) {
			add_peer(c, r, kind, NULL, id);
		}
		pop(c, pi);
	}
	pop(c, pk);
}

static void load_sg_rule(struct ctx *c, const json_t *o, struct m_sg_rule *r, int index)
{
	size_t room = json_array_size(json_object_get(o, "IpRanges")) +
		      json_array_size(json_object_get(o, "Ipv6Ranges")) +
		      json_array_size(json_object_get(o, "PrefixListIds")) +
		      json_array_size(json_object_get(o, "UserIdGroupPairs"));

	r->index = index;
	r->where = here(c);
	r->proto = RULE_PROTO_ALL;
	bool alive = get_proto(c, o, "IpProtocol", true, NULL, &r->proto) == GOOD &&
		     sg_ports(c, o, r->proto, &r->from, &r->to);
	r->peers = arena_calloc(c->a, room, sizeof(*r->peers));
	perm_peers(c, o, "IpRanges", "CidrIp", PEER_CIDR, FAMILY_V4, r);
	perm_peers(c, o, "Ipv6Ranges", "CidrIpv6", PEER_CIDR, FAMILY_V6, r);
	perm_peers(c, o, "PrefixListIds", "PrefixListId", PEER_PREFIX_LIST, 0, r);
	perm_peers(c, o, "UserIdGroupPairs", "GroupId", PEER_GROUP, 0, r);
	if (!alive)
		r->n_peers = 0;
}

static struct m_sg_rule *load_sg_rules(struct ctx *c, const json_t *o, const char *key, int *n)
{
	json_t *list = get_list(c, o, key);
	size_t pk = push_key(c, key);
	struct m_sg_rule *rules = arena_calloc(c->a, json_array_size(list), sizeof(*rules));
	*n = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		size_t pi = push_index(c, i);
		json_t *e = item(c, list, i);
		if (e)
			load_sg_rule(c, e, &rules[(*n)++], (int)i);
		pop(c, pi);
	}
	pop(c, pk);
	return rules;
}

static bool load_sg(struct ctx *c, const json_t *o, struct m_sg *g)
{
	bool ok = get_id(c, o, "GroupId", &g->id, true) == GOOD;

	get_str(c, o, "GroupName", &g->name);
	get_id(c, o, "VpcId", &g->vpc_id, false);
	g->in = load_sg_rules(c, o, "IpPermissions", &g->n_in);
	g->out = load_sg_rules(c, o, "IpPermissionsEgress", &g->n_out);
	return ok;
}

/* ------------------------------------------------------------ interfaces */

static void add_addr(struct m_eni *e, const struct ip_addr *a, int family, bool primary)
{
	for (int i = 0; i < e->n_addrs; i++)
		if (addr_eq(&e->addrs[i].addr, a)) {
			if (primary && !e->addrs[0].primary) {
				struct m_eni_addr t = e->addrs[i];
				memmove(&e->addrs[1], &e->addrs[0], (size_t)i * sizeof(*e->addrs));
				e->addrs[0] = t;
				e->addrs[0].primary = true;
			}
			return;
		}
	bool first = primary && !(e->n_addrs > 0 && e->addrs[0].primary);
	struct m_eni_addr *x = &e->addrs[e->n_addrs++];
	x->addr = *a;
	x->family = family;
	x->primary = first;
	if (first && e->n_addrs > 1) {
		struct m_eni_addr t = *x;
		memmove(&e->addrs[1], &e->addrs[0], (size_t)(e->n_addrs - 1) * sizeof(*e->addrs));
		e->addrs[0] = t;
	}
}

static void ct_config(struct ctx *c, const json_t *o, struct m_ct_timeouts *t)
{
	json_t *ct = get_object(c, o, "ConnectionTrackingConfiguration");
	long long x;

	if (!ct)
		return;
	size_t p = push_key(c, "ConnectionTrackingConfiguration");
	if (get_int(c, ct, "TcpEstablishedTimeout", 60, 432000, NULL, &x) == GOOD)
		t->tcp_established = (uint32_t)x;
	if (get_int(c, ct, "UdpStreamTimeout", 60, 180, NULL, &x) == GOOD)
		t->udp_stream = (uint32_t)x;
	if (get_int(c, ct, "UdpTimeout", 30, 60, NULL, &x) == GOOD)
		t->udp = (uint32_t)x;
	pop(c, p);
}

/* InterfaceType: the values of the EC2 API's NetworkInterfaceType
 * (botocore's ec2 service model) and "nat_gateway", which is what
 * describe-network-interfaces prints for a NAT gateway (the model spells it
 * natGateway; the interface-type filter of DescribeNetworkInterfaces uses
 * nat_gateway).  The type does not change how the interface is filtered:
 * whether it lists security groups does (policy.c). */
static const char *const eni_types[] = {
	"interface", "natGateway", "nat_gateway", "efa", "efa-only", "trunk", "load_balancer",
	"network_load_balancer", "vpc_endpoint", "branch", "transit_gateway", "lambda",
	"quicksight", "global_accelerator_managed", "api_gateway_managed", "gateway_load_balancer",
	"gateway_load_balancer_endpoint", "iot_rules_managed", "aws_codestar_connections_managed",
};

static void eni_type(struct ctx *c, const json_t *o, struct m_eni *e)
{
	if (get_str(c, o, "InterfaceType", &e->type) != GOOD)
		return;
	for (size_t i = 0; i < sizeof(eni_types) / sizeof(eni_types[0]); i++)
		if (strcmp(e->type, eni_types[i]) == 0)
			return;
	char vt[96];
	size_t p = push_key(c, "InterfaceType");
	warn(c, "%s is not an interface type the EC2 API documents; the interface is filtered by "
	     "its groups as any other", vtext(field(o, "InterfaceType"), vt, sizeof(vt)));
	pop(c, p);
}

/* A NetworkInterfaces[] entry, or (inst != NULL) an instance's
 * NetworkInterfaces[] entry from describe-instances, whose instance may
 * carry the subnet and VPC. */
static bool load_eni(struct ctx *c, const json_t *o, struct m_eni *e, const json_t *inst,
		     const char *inst_path)
{
	bool ok = get_id(c, o, "NetworkInterfaceId", &e->id, true) == GOOD;
	struct ip_addr a;

	e->where = here(c);
	e->source_dest_check = true;
	get_id(c, o, "SubnetId", &e->subnet_id, false);
	get_id(c, o, "VpcId", &e->vpc_id, false);
	get_str(c, o, "OwnerId", &e->owner_id);
	get_bool(c, o, "SourceDestCheck", &e->source_dest_check);
	eni_type(c, o, e);
	unmodelled_bool(c, o, "DenyAllIgwTraffic",
			"inbound IPv6 traffic from the internet is dropped (AWS)");
	json_t *at = get_object(c, o, "Attachment");
	if (at) {
		size_t p = push_key(c, "Attachment");
		get_id(c, at, "InstanceId", &e->instance_id, false);
		pop(c, p);
	}
	if (inst) {
		size_t keep = c->plen;
		char saved[sizeof(c->path)];
		memcpy(saved, c->path, sizeof(saved));
		snprintf(c->path, sizeof(c->path), "%s", inst_path);
		c->plen = strlen(c->path);
		if (!e->subnet_id)
			get_id(c, inst, "SubnetId", &e->subnet_id, false);
		if (!e->vpc_id)
			get_id(c, inst, "VpcId", &e->vpc_id, false);
		if (!e->instance_id)
			get_id(c, inst, "InstanceId", &e->instance_id, false);
		memcpy(c->path, saved, sizeof(saved));
		c->plen = keep;
	}
	ct_config(c, o, &e->timeouts);

	json_t *priv = get_list(c, o, "PrivateIpAddresses");
	json_t *v6 = get_list(c, o, "Ipv6Addresses");
	e->addrs = arena_calloc(c->a, 1 + json_array_size(priv) + json_array_size(v6),
				sizeof(*e->addrs));
	if (get_addr(c, o, "PrivateIpAddress", FAMILY_V4, &a) == GOOD)
		add_addr(e, &a, FAMILY_V4, true);
	size_t pk = push_key(c, "PrivateIpAddresses");
	for (size_t i = 0; i < json_array_size(priv); i++) {
		size_t pi = push_index(c, i);
		json_t *x = item(c, priv, i);
		bool primary = false;
		if (x) {
			get_bool(c, x, "Primary", &primary);
			if (get_addr(c, x, "PrivateIpAddress", FAMILY_V4, &a) == GOOD)
				add_addr(e, &a, FAMILY_V4, primary);
		}
		pop(c, pi);
	}
	pop(c, pk);
	pk = push_key(c, "Ipv6Addresses");
	for (size_t i = 0; i < json_array_size(v6); i++) {
		size_t pi = push_index(c, i);
		json_t *x = item(c, v6, i);
		if (x && get_addr(c, x, "Ipv6Address", FAMILY_V6, &a) == GOOD)
			add_addr(e, &a, FAMILY_V6, false);
		pop(c, pi);
	}
	pop(c, pk);

	/* Delegated prefixes (EKS/ECS pod addresses): every address inside
	 * belongs to the interface (policy.c). */
	json_t *p4 = get_list(c, o, "Ipv4Prefixes");
	json_t *p6 = get_list(c, o, "Ipv6Prefixes");
	size_t np = json_array_size(p4) + json_array_size(p6);
	e->prefixes = arena_calloc(c->a, np + 1, sizeof(*e->prefixes));
	e->prefix_where = arena_calloc(c->a, np + 1, sizeof(*e->prefix_where));
	for (int f = 0; f < 2; f++) {
		const char *list = f ? "Ipv6Prefixes" : "Ipv4Prefixes";
		const char *key = f ? "Ipv6Prefix" : "Ipv4Prefix";
		json_t *l = f ? p6 : p4;
		pk = push_key(c, list);
		for (size_t i = 0; i < json_array_size(l); i++) {
			size_t pi = push_index(c, i);
			json_t *x = item(c, l, i);
			struct cidr pf;
			if (x && get_cidr(c, x, key, f ? FAMILY_V6 : FAMILY_V4, &pf) == GOOD) {
				size_t pp = push_key(c, key);
				e->prefix_where[e->n_prefixes] = here(c);
				e->prefixes[e->n_prefixes++] = pf;
				pop(c, pp);
			} else if (x && !field(x, key)) {
				missing(c, key);
			}
			pop(c, pi);
		}
		pop(c, pk);
	}

	e->n_groups = load_id_list(c, o, "Groups", "GroupId", &e->groups, &e->group_where);
	return ok;
}

/* ------------------------------------------------------------ prefix lists, flow logs */

/* ManagedPrefixLists[] ({PrefixListId, Entries: [{Cidr}]}) and the
 * AWS-managed PrefixLists[] of describe-prefix-lists ({PrefixListId,
 * Cidrs: [...]}). */
static bool load_pl(struct ctx *c, const json_t *o, void *obj, bool managed)
{
	struct m_prefix_list *pl = obj;
	bool ok = get_id(c, o, "PrefixListId", &pl->id, true) == GOOD;
	const char *key = managed ? "Entries" : "Cidrs";
	json_t *list = get_list(c, o, key);
	size_t pk = push_key(c, key);

	pl->cidrs = arena_calloc(c->a, json_array_size(list), sizeof(*pl->cidrs));
	for (size_t i = 0; i < json_array_size(list); i++) {
		size_t pi = push_index(c, i);
		json_t *x = json_array_get(list, i);
		struct cidr cidr;
		if (managed) {
			x = item(c, list, i);
			if (x && get_cidr(c, x, "Cidr", 0, &cidr) == GOOD)
				add_cidr(pl->cidrs, &pl->n_cidrs, &cidr);
			else if (x && !field(x, "Cidr"))
				missing(c, "Cidr");
		} else if (!json_is_string(x)) {
			bad(c, x, "is not a string");
		} else if (!cidr_parse(json_string_value(x), &cidr, NULL)) {
			bad(c, x, "is not a CIDR block");
		} else {
			add_cidr(pl->cidrs, &pl->n_cidrs, &cidr);
		}
		pop(c, pi);
	}
	pop(c, pk);
	return ok;
}

static bool load_flowlog(struct ctx *c, const json_t *o, void *obj, bool flag)
{
	struct m_flowlog *f = obj;
	(void)flag;
	bool ok = get_id(c, o, "FlowLogId", &f->id, true) == GOOD;
	const char *tt;
	long long x;

	get_id(c, o, "ResourceId", &f->resource_id, true);
	switch (get_text(c, o, "TrafficType", &tt)) {
	case ABSENT: missing(c, "TrafficType"); break;
	case BAD: break;
	case GOOD:
		if (strcmp(tt, "ACCEPT") == 0 || strcmp(tt, "REJECT") == 0 || strcmp(tt, "ALL") == 0) {
			f->traffic_type = arena_strdup(c->a, tt);
		} else {
			size_t p = push_key(c, "TrafficType");
			bad(c, field(o, "TrafficType"), "is not ACCEPT, REJECT or ALL");
			pop(c, p);
		}
		break;
	}
	get_str(c, o, "LogFormat", &f->log_format);
	f->max_aggregation_interval = 600;
	if (get_int(c, o, "MaxAggregationInterval", 60, 600, "is not 60 or 600", &x) == GOOD) {
		if (x == 60 || x == 600) {
			f->max_aggregation_interval = (uint32_t)x;
		} else {
			size_t p = push_key(c, "MaxAggregationInterval");
			bad(c, field(o, "MaxAggregationInterval"), "is not 60 or 600");
			pop(c, p);
		}
	}
	f->destination_type = "s3";
	get_str(c, o, "LogDestinationType", &f->destination_type);
	get_str(c, o, "LogDestination", &f->destination);
	get_str(c, o, "LogGroupName", &f->log_group_name);
	json_t *dopt = get_object(c, o, "DestinationOptions");
	if (dopt) {
		size_t p = push_key(c, "DestinationOptions");
		const char *ff;
		if (get_text(c, dopt, "FileFormat", &ff) == GOOD) {
			if (strcmp(ff, "parquet") == 0) {
				f->parquet = true;
			} else if (strcmp(ff, "plain-text") != 0) {
				size_t q = push_key(c, "FileFormat");
				bad(c, field(dopt, "FileFormat"), "is not plain-text or parquet");
				pop(c, q);
			}
		}
		get_bool(c, dopt, "HiveCompatiblePartitions", &f->hive);
		get_bool(c, dopt, "PerHourPartition", &f->per_hour);
		pop(c, p);
	}
	return ok;
}

/* ------------------------------------------------------------ top-level lists */

/* Loads each object of a top-level list, appending those that load (have an
 * id) to the model's array *arr of *n elements of `size` bytes. */
typedef bool load_fn(struct ctx *c, const json_t *o, void *obj, bool flag);

static void *load_list(struct ctx *c, const json_t *list, void *old, int *n, size_t size,
		       size_t where_off, load_fn *load, bool flag)
{
	size_t cnt = json_array_size(list);
	char *base = grow(c, old, *n, cnt, size);

	for (size_t i = 0; i < cnt && *n < MAX_OBJECTS; i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, list, i);
		char *obj = base + (size_t)*n * size;
		if (o) {
			*(struct where *)(void *)(obj + where_off) = here(c);
			if (load(c, o, obj, flag))
				(*n)++;
			else
				memset(obj, 0, size);
		}
		pop(c, pi);
	}
	return base;
}

#define LIST_OF(type) sizeof(type), offsetof(type, where)

static void vpcs(struct ctx *c, json_t *l)
{
	c->m->vpcs = load_list(c, l, c->m->vpcs, &c->m->n_vpcs, LIST_OF(struct m_vpc), load_vpc,
			       false);
}

static void subnets(struct ctx *c, json_t *l)
{
	c->m->subnets = load_list(c, l, c->m->subnets, &c->m->n_subnets, LIST_OF(struct m_subnet),
				  load_subnet, false);
}

static void nacls(struct ctx *c, json_t *l)
{
	c->m->nacls = load_list(c, l, c->m->nacls, &c->m->n_nacls, LIST_OF(struct m_nacl),
				load_nacl, false);
}

static void managed_pls(struct ctx *c, json_t *l)
{
	c->m->pls = load_list(c, l, c->m->pls, &c->m->n_pls, LIST_OF(struct m_prefix_list),
			      load_pl, true);
}

static void flowlogs(struct ctx *c, json_t *l)
{
	c->m->flowlogs = load_list(c, l, c->m->flowlogs, &c->m->n_flowlogs,
				   LIST_OF(struct m_flowlog), load_flowlog, false);
}

/* ------------------------------------------------------------ traffic mirroring */

static void load_mirror_rule(struct ctx *c, const json_t *o, struct m_mirror_rule *m, bool egress)
{
	struct rule r = { .egress = egress };

	load_rule(c, o, &mirror_rule_shape, &r);
	m->where = r.where;
	m->number = r.number;
	m->accept = r.allow;
	m->proto = r.proto;
	m->has_sports = r.has_ports[0];
	m->sport_from = r.port_from[0];
	m->sport_to = r.port_to[0];
	m->has_dports = r.has_ports[1];
	m->dport_from = r.port_from[1];
	m->dport_to = r.port_to[1];
	m->src = r.cidr[0];
	m->dst = r.cidr[1];
}

static struct m_mirror_rule *load_mirror_rules(struct ctx *c, const json_t *o, const char *key,
					       bool egress, int *n)
{
	json_t *list = get_list(c, o, key);
	size_t pk = push_key(c, key);
	struct m_mirror_rule *r = arena_calloc(c->a, json_array_size(list), sizeof(*r));

	*n = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		size_t pi = push_index(c, i);
		json_t *e = item(c, list, i);
		if (e)
			load_mirror_rule(c, e, &r[(*n)++], egress);
		pop(c, pi);
	}
	pop(c, pk);
	return r;
}

static bool load_mirror_filter(struct ctx *c, const json_t *o, void *obj, bool flag)
{
	struct m_mirror_filter *f = obj;
	(void)flag;
	bool ok = get_id(c, o, "TrafficMirrorFilterId", &f->id, true) == GOOD;

	f->in = load_mirror_rules(c, o, "IngressFilterRules", false, &f->n_in);
	f->out = load_mirror_rules(c, o, "EgressFilterRules", true, &f->n_out);
	json_t *ns = get_list(c, o, "NetworkServices");
	size_t pk = push_key(c, "NetworkServices");
	for (size_t i = 0; i < json_array_size(ns); i++) {
		json_t *x = json_array_get(ns, i);
		size_t pi = push_index(c, i);
		if (json_is_string(x) && strcmp(json_string_value(x), "amazon-dns") == 0)
			f->amazon_dns = true;
		else
			bad(c, x, "is not a network service (amazon-dns)");
		pop(c, pi);
	}
	pop(c, pk);
	return ok;
}

static bool load_mirror_target(struct ctx *c, const json_t *o, void *obj, bool flag)
{
	struct m_mirror_target *t = obj;
	(void)flag;
	bool ok = get_id(c, o, "TrafficMirrorTargetId", &t->id, true) == GOOD;

	get_id(c, o, "NetworkInterfaceId", &t->eni_id, false);
	if (get_id(c, o, "NetworkLoadBalancerArn", &t->lb, false) != GOOD)
		get_id(c, o, "GatewayLoadBalancerEndpointId", &t->lb, false);
	return ok;
}

static bool load_mirror_session(struct ctx *c, const json_t *o, void *obj, bool flag)
{
	struct m_mirror_session *s = obj;
	(void)flag;
	long long x;

	get_id(c, o, "TrafficMirrorSessionId", &s->id, false);
	bool ok = get_id(c, o, "NetworkInterfaceId", &s->eni_id, true) == GOOD;
	ok = (get_id(c, o, "TrafficMirrorTargetId", &s->target_id, true) == GOOD) & ok;
	ok = (get_id(c, o, "TrafficMirrorFilterId", &s->filter_id, true) == GOOD) & ok;
	switch (get_int(c, o, "SessionNumber", 1, 32766, "is not a session number (1-32766)", &x)) {
	case ABSENT: missing(c, "SessionNumber"); ok = false; break;
	case BAD: ok = false; break;
	case GOOD: s->number = (uint32_t)x; break;
	}
	/* AWS picks one when it is not given, and describe prints it. */
	switch (get_int(c, o, "VirtualNetworkId", 0, 16777215, "is not a VXLAN id (0-16777215)",
			&x)) {
	case ABSENT: missing(c, "VirtualNetworkId"); ok = false; break;
	case BAD: ok = false; break;
	case GOOD: s->vni = (uint32_t)x; break;
	}
	if (get_int(c, o, "PacketLength", 1, 65535, NULL, &x) == GOOD)
		s->packet_length = (uint32_t)x;
	return ok;
}

static void mirror_filters(struct ctx *c, json_t *l)
{
	c->m->mirror_filters = load_list(c, l, c->m->mirror_filters, &c->m->n_mirror_filters,
					 LIST_OF(struct m_mirror_filter), load_mirror_filter, false);
}

static void mirror_targets(struct ctx *c, json_t *l)
{
	c->m->mirror_targets = load_list(c, l, c->m->mirror_targets, &c->m->n_mirror_targets,
					 LIST_OF(struct m_mirror_target), load_mirror_target, false);
}

static void mirror_sessions(struct ctx *c, json_t *l)
{
	c->m->mirror_sessions = load_list(c, l, c->m->mirror_sessions, &c->m->n_mirror_sessions,
					  LIST_OF(struct m_mirror_session), load_mirror_session,
					  false);
}

/* describe-managed-prefix-lists prints PrefixLists too, without Cidrs (the
 * entries come from get-managed-prefix-list-entries): that is metadata
 * only, skipped. */
static void aws_pls(struct ctx *c, json_t *l)
{
	struct model *m = c->m;
	m->pls = grow(c, m->pls, m->n_pls, json_array_size(l), sizeof(*m->pls));
	for (size_t i = 0; i < json_array_size(l) && m->n_pls < MAX_OBJECTS; i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, l, i);
		if (o && json_object_get(o, "Cidrs")) {
			struct m_prefix_list *pl = &m->pls[m->n_pls];
			pl->where = here(c);
			if (load_pl(c, o, pl, false))
				m->n_pls++;
			else
				memset(pl, 0, sizeof(*pl));
		}
		pop(c, pi);
	}
}

static bool from_rules(const struct m_sg *g)
{
	return strncmp(g->where.path, "SecurityGroupRules", 18) == 0;
}

static bool from_instances(const struct m_eni *e)
{
	return strncmp(e->where.path, "Reservations", 12) == 0;
}

static void need_sg_ids(struct ctx *c)
{
	if (c->sg_ids_ready)
		return;
	for (int i = 0; i < c->m->n_sgs; i++)
		idmap_put(&c->sg_ids, c->m->sgs[i].id, i);
	c->sg_ids_ready = true;
}

static void need_eni_ids(struct ctx *c)
{
	if (c->eni_ids_ready)
		return;
	for (int i = 0; i < c->m->n_enis; i++)
		idmap_put(&c->eni_ids, c->m->enis[i].id, i);
	c->eni_ids_ready = true;
}

/* A SecurityGroups[] entry replaces a group made up from
 * SecurityGroupRules (the same rules, said twice). */
static void sgs(struct ctx *c, json_t *l)
{
	struct model *m = c->m;
	size_t cnt = json_array_size(l);
	struct m_sg *arr = grow(c, m->sgs, m->n_sgs, cnt, sizeof(*arr));

	need_sg_ids(c);
	m->sgs = arr;
	for (size_t i = 0; i < cnt && m->n_sgs < MAX_OBJECTS; i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, l, i);
		struct m_sg g = { .where = here(c) };
		if (o && load_sg(c, o, &g)) {
			int old = idmap_get(&c->sg_ids, g.id);
			if (old >= 0 && from_rules(&arr[old])) {
				arr[old] = g;
			} else {
				idmap_put(&c->sg_ids, g.id, m->n_sgs);
				arr[m->n_sgs++] = g;
			}
		}
		pop(c, pi);
	}
}

/* describe-security-group-rules: one rule per entry.  Rules of a group
 * that SecurityGroups[] has are ignored; the others make up their group. */
static void sg_rules(struct ctx *c, json_t *l)
{
	struct model *m = c->m;
	size_t cnt = json_array_size(l);
	struct sgr {
		struct m_sg_rule rule;
		int group;
		bool egress;
	} *rules = xcalloc(cnt, sizeof(*rules));
	size_t nr = 0;

	need_sg_ids(c);
	m->sgs = grow(c, m->sgs, m->n_sgs, cnt, sizeof(*m->sgs));
	for (size_t i = 0; i < cnt && m->n_sgs < MAX_OBJECTS; i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, l, i);
		const char *gid;
		struct m_sg_rule *r = &rules[nr].rule;
		bool egress = false;
		if (!o || get_id(c, o, "GroupId", &gid, true) != GOOD) {
			pop(c, pi);
			continue;
		}
		memset(&rules[nr], 0, sizeof(rules[nr])); /* may hold an ignored rule */
		if (get_bool(c, o, "IsEgress", &egress) == ABSENT)
			missing(c, "IsEgress");
		get_id(c, o, "SecurityGroupRuleId", &r->rule_id, false);
		r->where = here(c);
		r->proto = RULE_PROTO_ALL;
		bool alive = get_proto(c, o, "IpProtocol", true, NULL, &r->proto) == GOOD &&
			     sg_ports(c, o, r->proto, &r->from, &r->to);
		r->peers = arena_calloc(c->a, 1, sizeof(*r->peers));
		struct cidr x;
		const char *id;
		json_t *ref = get_object(c, o, "ReferencedGroupInfo");
		if (get_cidr(c, o, "CidrIpv4", FAMILY_V4, &x) == GOOD ||
		    get_cidr(c, o, "CidrIpv6", FAMILY_V6, &x) == GOOD) {
			add_peer(c, r, PEER_CIDR, &x, NULL);
		} else if (get_id(c, o, "PrefixListId", &id, false) == GOOD) {
			add_peer(c, r, PEER_PREFIX_LIST, NULL, id);
		} else if (ref) {
			size_t p = push_key(c, "ReferencedGroupInfo");
			bool ok = get_id(c, ref, "GroupId", &id, true) == GOOD;
			pop(c, p);
			if (ok)
				add_peer(c, r, PEER_GROUP, NULL, id);
		}
		if (!alive)
			r->n_peers = 0;

		int g = idmap_get(&c->sg_ids, gid);
		if (g < 0) {
			g = m->n_sgs++;
			m->sgs[g].id = gid;
			m->sgs[g].where = here(c);
			idmap_put(&c->sg_ids, gid, g);
		}
		if (from_rules(&m->sgs[g])) {
			rules[nr].group = g;
			rules[nr].egress = egress;
			nr++;
		}
		pop(c, pi);
	}

	/* Append each group's new rules in document order. */
	int *n_in = xcalloc((size_t)m->n_sgs, sizeof(int)), *n_out = xcalloc((size_t)m->n_sgs, sizeof(int));
	for (size_t i = 0; i < nr; i++)
		(rules[i].egress ? n_out : n_in)[rules[i].group]++;
	for (int g = 0; g < m->n_sgs; g++) {
		struct m_sg *s = &m->sgs[g];
		if (n_in[g])
			s->in = grow(c, s->in, s->n_in, (size_t)n_in[g], sizeof(*s->in));
		if (n_out[g])
			s->out = grow(c, s->out, s->n_out, (size_t)n_out[g], sizeof(*s->out));
	}
	for (size_t i = 0; i < nr; i++) {
		struct m_sg *s = &m->sgs[rules[i].group];
		struct m_sg_rule *r = &rules[i].rule;
		if (rules[i].egress) {
			r->index = s->n_out;
			s->out[s->n_out++] = *r;
		} else {
			r->index = s->n_in;
			s->in[s->n_in++] = *r;
		}
	}
	free(n_in);
	free(n_out);
	free(rules);
}

/* A NetworkInterfaces[] entry replaces one taken from describe-instances. */
static void enis(struct ctx *c, json_t *l)
{
	struct model *m = c->m;
	size_t cnt = json_array_size(l);

	need_eni_ids(c);
	m->enis = grow(c, m->enis, m->n_enis, cnt, sizeof(*m->enis));
	for (size_t i = 0; i < cnt && m->n_enis < MAX_OBJECTS; i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, l, i);
		struct m_eni e = { 0 };
		if (o && load_eni(c, o, &e, NULL, NULL)) {
			int old = idmap_get(&c->eni_ids, e.id);
			if (old >= 0 && from_instances(&m->enis[old])) {
				m->enis[old] = e;
			} else {
				idmap_put(&c->eni_ids, e.id, m->n_enis);
				m->enis[m->n_enis++] = e;
			}
		}
		pop(c, pi);
	}
}

/* describe-instances: Reservations[].Instances[].NetworkInterfaces[]; an
 * interface is taken only when no NetworkInterfaces[] entry has it. */
static void reservations(struct ctx *c, json_t *l)
{
	struct model *m = c->m;
	size_t total = 0;

	for (size_t r = 0; r < json_array_size(l); r++) {
		json_t *insts = json_object_get(json_array_get(l, r), "Instances");
		for (size_t i = 0; i < json_array_size(insts); i++)
			total += json_array_size(json_object_get(json_array_get(insts, i),
								 "NetworkInterfaces"));
	}
	need_eni_ids(c);
	m->enis = grow(c, m->enis, m->n_enis, total, sizeof(*m->enis));
	size_t room = (size_t)m->n_enis + total;

	for (size_t r = 0; r < json_array_size(l); r++) {
		size_t pr = push_index(c, r);
		json_t *res = item(c, l, r);
		json_t *insts = res ? get_list(c, res, "Instances") : NULL;
		size_t pk = push_key(c, "Instances");
		for (size_t i = 0; i < json_array_size(insts); i++) {
			size_t pi = push_index(c, i);
			json_t *inst = item(c, insts, i);
			json_t *nis = inst ? get_list(c, inst, "NetworkInterfaces") : NULL;
			char inst_path[sizeof(c->path)];
			snprintf(inst_path, sizeof(inst_path), "%s", c->path);
			size_t pn = push_key(c, "NetworkInterfaces");
			for (size_t k = 0; k < json_array_size(nis) && (size_t)m->n_enis < room; k++) {
				size_t pe = push_index(c, k);
				json_t *o = item(c, nis, k);
				struct m_eni e = { 0 };
				c->borrowed = true;
				c->borrowed_bad = false;
				bool ok = o && load_eni(c, o, &e, inst, inst_path);
				c->borrowed = false;
				if (ok && !c->borrowed_bad && idmap_get(&c->eni_ids, e.id) < 0) {
					idmap_put(&c->eni_ids, e.id, m->n_enis);
					m->enis[m->n_enis++] = e;
				}
				pop(c, pe);
			}
			pop(c, pn);
			pop(c, pi);
		}
		pop(c, pk);
		pop(c, pr);
	}
}

/* ------------------------------------------------------------ the Vpcfw section */

enum vtype { V_QUEUES, V_BINDINGS, V_COUNT, V_BOOL, V_STRING,
	     V_PCAP_TARGETS, V_MIRROR_ADDRS, V_DROP_CAPTURE,
	     V_ACCESS, V_SYNC };

/* Every key of the Vpcfw section, once: type, bounds, default, meaning.
 * model_init() applies the defaults; man/vpcfw.conf.5 mirrors this table. */
static const struct vkey {
	const char *key;
	enum vtype type;
	size_t off;
	long long min, max, num;        /* V_COUNT bounds; default of V_COUNT/V_BOOL */
	const char *str;                /* default of V_STRING / V_QUEUES */
	const char *about;
} vpcfw_keys[] = {
#define OFF(f) offsetof(struct m_vpcfw, f)
	{ "Queues", V_QUEUES, OFF(queues), 0, 65535, 0, "0",
	  "NFQUEUE numbers to serve: [0, 1], \"0-3\" or \"0,2\"" },
	{ "InterfaceBindings", V_BINDINGS, OFF(bindings), 0, 0, 0, NULL,
	  "[{NetworkInterfaceId, Device}]: the Linux device that carries an interface" },
	{ "ConntrackMax", V_COUNT, OFF(conntrack_max), 1, 67108864, 262144, NULL,
	  "tracked flows at most; a new flow beyond it is dropped" },
	{ "AdmitRelatedIcmp", V_BOOL, OFF(admit_related_icmp), 0, 1, 0, NULL,
	  "admit ICMP errors about a tracked flow" },
	{ "TcpBeLiberal", V_BOOL, OFF(tcp_be_liberal), 0, 1, 0, NULL,
	  "pass TCP segments outside a tracked flow's window (RSTs excepted), as Linux's nf_conntrack_tcp_be_liberal" },
	{ "TcpLoose", V_BOOL, OFF(tcp_loose), 0, 1, 1, NULL,
	  "track TCP flows first seen mid-stream, as Linux's nf_conntrack_tcp_loose" },
	{ "PerSourceNewFlowsPerSecond", V_COUNT, OFF(per_source_rate), 0, 10000000, 0, NULL,
	  "beyond AWS: new tracked flows one source may start per second (per queue); 0: no cap" },
	{ "PerSourceNewFlowBurst", V_COUNT, OFF(per_source_burst), 0, 10000000, 0, NULL,
	  "beyond AWS: new flows one source may start at once above that rate; 0: one second's worth" },
	{ "PerSourceConntrackPercent", V_COUNT, OFF(per_source_share), 0, 100, 0, NULL,
	  "beyond AWS: the share of the flow table (%) one source's flows may hold; 0: no cap" },
	{ "PerSourceIpv6PrefixLength", V_COUNT, OFF(per_source_v6_prefix), 1, 128, 128, NULL,
	  "bits of an IPv6 source address that name one source for the PerSource limits" },
	{ "FailOpen", V_BOOL, OFF(fail_open), 0, 1, 0, NULL,
	  "accept packets the daemon cannot take (full queue) instead of dropping them" },
	{ "FlowLogDirectory", V_STRING, OFF(flow_log_dir), 0, 0, 0, NULL,
	  "directory for flow-log files; none: flow logs are not written" },
	{ "FlowLogRotateSeconds", V_COUNT, OFF(flow_log_rotate_seconds), 1, 86400, 300, NULL,
	  "a flow-log file is closed when it is this old (AWS: 5 minutes)" },
	{ "FlowLogRotateBytes", V_COUNT, OFF(flow_log_rotate_bytes), 1024, 4000000000LL, 75000000,
	  NULL, "... or holds this many bytes of records (AWS: 75 MB)" },
	{ "ControlSocket", V_STRING, OFF(control_socket), 0, 0, 0, "/run/vpcfw/vpcfwd.sock",
	  "the control socket of vpcfwctl" },
	{ "Region", V_STRING, OFF(region), 0, 0, 0, NULL,
	  "region in flow-log file names and records" },
	{ "AccountId", V_STRING, OFF(account_id), 0, 0, 0, NULL,
	  "account-id in flow-log file names and records" },
	{ "DecisionLog", V_STRING, OFF(decision_log), 0, 0, 0, NULL,
	  "file that receives one JSON line per decision" },
	{ "Access", V_ACCESS, OFF(admin_group), 0, 0, 0, NULL,
	  "{AdminGroup, ReaderGroup}: groups that may change / only read through the control socket" },
	{ "ReadOnlySocket", V_STRING, OFF(read_only_socket), 0, 0, 0, NULL,
	  "a second control socket that answers only read-only requests (root and the groups)" },
	{ "ReadOnlySocketPublic", V_BOOL, OFF(read_only_socket_public), 0, 1, 0, NULL,
	  "the read-only socket answers every local user, not only root and the groups" },
	{ "MetricsFile", V_STRING, OFF(metrics_file), 0, 0, 0, NULL,
	  "Prometheus text file rewritten every MetricsInterval seconds (node_exporter textfile)" },
	{ "MetricsInterval", V_COUNT, OFF(metrics_interval), 1, 86400, 15, NULL,
	  "seconds between two writes of MetricsFile" },
	{ "StateFile", V_STRING, OFF(state_file), 0, 0, 0, NULL,
	  "file that keeps the flow table across restarts; none: flows are forgotten" },
	{ "StateSyncInterval", V_COUNT, OFF(state_sync_interval), 0, 86400, 5, NULL,
	  "seconds between two snapshots of the flow table to StateFile; 0: only at a clean stop" },
	{ "Offload", V_BOOL, OFF(offload), 0, 1, 1, NULL,
	  "let the kernel pass the further packets of decided, established flows (conntrack mark + a rule of yours)" },
	{ "OffloadMark", V_COUNT, OFF(offload_mark), 1, 4294967295LL, 0x40000000, NULL,
	  "the one conntrack-mark bit that offloads a flow (the accept rule's mask)" },
	{ "OffloadAfterPackets", V_COUNT, OFF(offload_after), 0, 1000000000, 8, NULL,
	  "packets an established flow has on the queue before it is offloaded (short flows stay; 0: at once)" },
	{ "PcapTargets", V_PCAP_TARGETS, OFF(pcap_targets), 0, 0, 0, NULL,
	  "[{TrafficMirrorTargetId, Path, RotateBytes}]: a mirror target written to a pcap file" },
	{ "MirrorTargetAddresses", V_MIRROR_ADDRS, OFF(mirror_addrs), 0, 0, 0, NULL,
	  "[{TrafficMirrorTargetId, Address}]: the address a target's VXLAN goes to" },
	{ "DropCapture", V_DROP_CAPTURE, OFF(drop_capture), 0, 0, 0, NULL,
	  "{Path, SnapLength, RotateBytes}: refused packets to a pcap file (NFLOG link type)" },
	{ "Sync", V_SYNC, OFF(sync), 0, 0, 0, NULL,
	  "{NodeId, Peer, Port, Listen, KeyFile, MessageBytes, MaxClockSkew, RingEntries}: the HA pair's flow-table sync" },
#undef OFF
};

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static size_t unique_u16(uint16_t *v, size_t n)
{
	size_t m = 0;
	qsort(v, n, sizeof(*v), cmp_u16);
	for (size_t i = 0; i < n; i++)
		if (m == 0 || v[m - 1] != v[i])
			v[m++] = v[i];
	return m;
}

/* "0-3,8" -> {0,1,2,3,8}; false on bad syntax or numbers. */
static bool queue_text(const char *s, uint16_t *out, size_t *n)
{
	*n = 0;
	if (!*s)
		return false;
	for (;;) {
		char *end;
		if (*s < '0' || *s > '9')
			return false;
		errno = 0;
		unsigned long a = strtoul(s, &end, 10), b;
		if (errno || a > 65535)
			return false;
		s = end;
		b = a;
		if (*s == '-') {
			s++;
			if (*s < '0' || *s > '9')
				return false;
			b = strtoul(s, &end, 10);
			if (errno || b > 65535 || b < a)
				return false;
			s = end;
		}
		for (unsigned long q = a; q <= b && *n < 65536; q++)
			out[(*n)++] = (uint16_t)q;
		if (*s == '\0')
			break;
		if (*s++ != ',')
			return false;
	}
	*n = unique_u16(out, *n);
	return true;
}

static void vpcfw_queues(struct ctx *c, const json_t *v, struct m_vpcfw *w)
{
	uint16_t *q = xcalloc(65536 + json_array_size(v), sizeof(*q));
	size_t n = 0;
	bool ok = true;

	if (json_is_string(v)) {
		ok = queue_text(json_string_value(v), q, &n);
		if (!ok)
			bad(c, v, "is not a queue list (e.g. \"0-3\" or \"0,2\")");
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			json_t *x = json_array_get(v, i);
			size_t pi = push_index(c, i);
			if (!json_is_integer(x) || json_integer_value(x) < 0 ||
			    json_integer_value(x) > 65535) {
				bad(c, x, "is not a queue number (0-65535)");
				ok = false;
			} else {
				q[n++] = (uint16_t)json_integer_value(x);
			}
			pop(c, pi);
		}
		n = unique_u16(q, n);
		if (ok && n == 0) {
			err(c, "no queue given");
			ok = false;
		}
	} else {
		bad(c, v, "is not a list of queue numbers or a text like \"0-3\"");
		ok = false;
	}
	if (ok) {
		w->queues = arena_calloc(c->a, n, sizeof(*w->queues));
		memcpy(w->queues, q, n * sizeof(*q));
		w->n_queues = (int)n;
	}
	free(q);
}

/* Bindings add up across files; a second one of an interface or a device
 * is config_check()'s business. */
static void vpcfw_bindings(struct ctx *c, const json_t *v, struct m_vpcfw *w)
{
	if (!json_is_array(v)) {
		bad(c, v, "is not a list");
		return;
	}
	struct m_binding *b = grow(c, w->bindings, w->n_bindings, json_array_size(v), sizeof(*b));
	for (size_t i = 0; i < json_array_size(v); i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, v, i);
		struct m_binding x = { .where = here(c) };
		if (o) {
			bool ok = get_id(c, o, "NetworkInterfaceId", &x.eni_id, true) == GOOD;
			switch (get_str(c, o, "Device", &x.device)) {
			case ABSENT: missing(c, "Device"); ok = false; break;
			case BAD: ok = false; break;
			case GOOD:
				/* IFNAMSIZ is 16 with the terminating NUL. */
				if (!*x.device || strlen(x.device) > 15 || strchr(x.device, '/')) {
					size_t p = push_key(c, "Device");
					bad(c, field(o, "Device"), "is not a Linux device name");
					pop(c, p);
					ok = false;
				}
				break;
			}
			if (ok)
				b[w->n_bindings++] = x;
		}
		pop(c, pi);
	}
	w->bindings = b;
}

/* RotateBytes of a pcap file */
static void rotate_bytes(struct ctx *c, const json_t *o, uint64_t *out)
{
	long long x;
	if (get_int(c, o, "RotateBytes", 65536, 1LL << 40, NULL, &x) == GOOD)
		*out = (uint64_t)x;
}

/* a required non-empty string */
static bool need_text(struct ctx *c, const json_t *o, const char *key, const char **out)
{
	switch (get_str(c, o, key, out)) {
	case ABSENT: missing(c, key); return false;
	case BAD: return false;
	case GOOD: break;
	}
	if (!**out) {
		size_t p = push_key(c, key);
		err(c, "\"\" is empty");
		pop(c, p);
		return false;
	}
	return true;
}

/* PcapTargets and MirrorTargetAddresses add up across files;
 * a target named twice is mirror_check_config()'s business. */
static void vpcfw_pcap_targets(struct ctx *c, const json_t *v, struct m_vpcfw *w)
{
	if (!json_is_array(v)) {
		bad(c, v, "is not a list");
		return;
	}
	struct m_mirror_pcap *t = grow(c, w->pcap_targets, w->n_pcap_targets, json_array_size(v),
				       sizeof(*t));
	for (size_t i = 0; i < json_array_size(v); i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, v, i);
		struct m_mirror_pcap x = { .where = here(c) };
		if (o) {
			bool ok = get_id(c, o, "TrafficMirrorTargetId", &x.target_id, true) == GOOD;
			ok = need_text(c, o, "Path", &x.path) && ok;
			rotate_bytes(c, o, &x.rotate_bytes);
			if (ok)
				t[w->n_pcap_targets++] = x;
		}
		pop(c, pi);
	}
	w->pcap_targets = t;
}

static void vpcfw_mirror_addrs(struct ctx *c, const json_t *v, struct m_vpcfw *w)
{
	if (!json_is_array(v)) {
		bad(c, v, "is not a list");
		return;
	}
	struct m_mirror_addr *t = grow(c, w->mirror_addrs, w->n_mirror_addrs, json_array_size(v),
				       sizeof(*t));
	for (size_t i = 0; i < json_array_size(v); i++) {
		size_t pi = push_index(c, i);
		json_t *o = item(c, v, i);
		struct m_mirror_addr x = { .where = here(c) };
		const char *a;
		if (o) {
			bool ok = get_id(c, o, "TrafficMirrorTargetId", &x.target_id, true) == GOOD;
			switch (get_text(c, o, "Address", &a)) {
			case ABSENT: missing(c, "Address"); ok = false; break;
			case BAD: ok = false; break;
			case GOOD:
				if (!addr_parse(a, &x.addr, &x.family)) {
					size_t p = push_key(c, "Address");
					bad(c, field(o, "Address"), "is not an IPv4 or IPv6 address");
					pop(c, p);
					ok = false;
				}
				break;
			}
			if (ok)
				t[w->n_mirror_addrs++] = x;
		}
		pop(c, pi);
	}
	w->mirror_addrs = t;
}

static void vpcfw_drop_capture(struct ctx *c, const json_t *v, struct m_vpcfw *w)
{
	struct m_mirror_dropcap x = { .where = here(c) };
	long long n;

	if (!json_is_object(v)) {
		bad(c, v, "is not an object");
		return;
	}
	bool ok = need_text(c, v, "Path", &x.path);
	if (get_int(c, v, "SnapLength", 1, 65535, NULL, &n) == GOOD)
		x.snap_length = (uint32_t)n;
	rotate_bytes(c, v, &x.rotate_bytes);
	if (ok)
		w->drop_capture = x;
}

/* Access {AdminGroup, ReaderGroup}, Linux group names */
static void vpcfw_access(struct ctx *c, const json_t *v, struct m_vpcfw *w)
{
	static const char *const keys[] = { "AdminGroup", "ReaderGroup" };
	const char **dst[] = { &w->admin_group, &w->reader_group };
	const char *key;
	json_t *x;

	if (!json_is_object(v)) {
		bad(c, v, "is not an object");
		return;
	}
	json_object_foreach((json_t *)v, key, x) {
		if (strcmp(key, keys[0]) && strcmp(key, keys[1])) {
			char kt[80];
			printable(kt, sizeof(kt), key);
			size_t p = push_key(c, kt);
			warn(c, "unknown key, ignored");
			pop(c, p);
		}
	}
	for (int i = 0; i < 2; i++)
		if (get_str(c, v, keys[i], dst[i]) == GOOD && !**dst[i]) {
			size_t p = push_key(c, keys[i]);
			err(c, "\"\" is empty");
			pop(c, p);
		}
}

/* Sync {NodeId, Peer, Port, Listen, KeyFile, ...}: the HA pair (sync.h) */
static void vpcfw_sync(struct ctx *c, const json_t *v, struct m_vpcfw *w)
{
	static const char *const keys[] = { "NodeId", "Peer", "Port", "Listen", "KeyFile",
					    "MessageBytes", "MaxClockSkew", "RingEntries" };
	struct m_sync x = {
		.port = 7710, .message_bytes = SYNC_DEFAULT_BYTES, .max_clock_skew = 60,
		.ring_entries = 65536, .where = here(c),
	};
	const char *key, *a;
	json_t *y;
	long long n;

	if (!json_is_object(v)) {
		bad(c, v, "is not an object");
		return;
	}
	json_object_foreach((json_t *)v, key, y) {
		size_t i = 0;
		while (i < sizeof(keys) / sizeof(keys[0]) && strcmp(key, keys[i]))
			i++;
		if (i == sizeof(keys) / sizeof(keys[0])) {
			char kt[80];
			printable(kt, sizeof(kt), key);
			size_t p = push_key(c, kt);
			warn(c, "unknown key, ignored");
			pop(c, p);
		}
	}
	bool ok = true;
	switch (get_int(c, v, "NodeId", 1, UINT32_MAX, NULL, &n)) {
	case ABSENT: missing(c, "NodeId"); ok = false; break;
	case BAD: ok = false; break;
	case GOOD: x.node_id = (uint32_t)n; break;
	}
	const char *addr_keys[] = { "Peer", "Listen" };
	struct ip_addr *addrs[] = { &x.peer, &x.listen };
	int *fams[] = { &x.peer_family, &x.listen_family };
	for (int i = 0; i < 2; i++) {
		switch (get_text(c, v, addr_keys[i], &a)) {
		case ABSENT:
			if (i == 0) {
				missing(c, "Peer");
				ok = false;
			}
			break;
		case BAD: ok = false; break;
		case GOOD:
			if (!addr_parse(a, addrs[i], fams[i])) {
				size_t p = push_key(c, addr_keys[i]);
				bad(c, field(v, addr_keys[i]), "is not an IPv4 or IPv6 address");
				pop(c, p);
				ok = false;
			}
			break;
		}
	}
	if (ok && x.listen_family && x.listen_family != x.peer_family) {
		size_t p = push_key(c, "Listen");
		bad(c, field(v, "Listen"), "is not of the Peer's address family");
		pop(c, p);
		ok = false;
	}
	if (!need_text(c, v, "KeyFile", &x.key_file))
		ok = false;
	else
		x.key_file = arena_strdup(c->a, x.key_file);
	if (get_int(c, v, "Port", 1, 65535, "is not a port (1-65535)", &n) == GOOD)
		x.port = (uint32_t)n;
	else if (field(v, "Port"))
		ok = false;
	struct { const char *key; long long lo, hi; uint32_t *dst; } nums[] = {
		{ "MessageBytes", SYNC_MIN_BYTES, SYNC_MAX_BYTES, &x.message_bytes },
		{ "MaxClockSkew", 0, 86400, &x.max_clock_skew },
		{ "RingEntries", 1024, 1 << 24, &x.ring_entries },
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		switch (get_int(c, v, nums[i].key, nums[i].lo, nums[i].hi, NULL, &n)) {
		case ABSENT: break;
		case BAD: ok = false; break;
		case GOOD: *nums[i].dst = (uint32_t)n; break;
		}
	}
	if (ok) {
		x.enabled = true;
		w->sync = x;
	}
}

static void vpcfw_section(struct ctx *c, json_t *o)
{
	struct m_vpcfw *w = &c->m->vpcfw;
	const char *key, *s;
	json_t *v;
	long long x;

	if (!json_is_object(o)) {
		bad(c, o, "is not an object");
		return;
	}
	json_object_foreach(o, key, v) {
		const struct vkey *k = NULL;
		for (size_t i = 0; i < sizeof(vpcfw_keys) / sizeof(vpcfw_keys[0]); i++)
			if (strcmp(vpcfw_keys[i].key, key) == 0)
				k = &vpcfw_keys[i];
		char *dst = k ? (char *)w + k->off : NULL;
		size_t p;
		if (!k || k->type == V_QUEUES || k->type == V_BINDINGS || k->type >= V_PCAP_TARGETS) {
			char kt[80];
			printable(kt, sizeof(kt), key);
			p = push_key(c, kt);
			if (!k)
				warn(c, "unknown key, ignored");
			else if (k->type == V_QUEUES)
				vpcfw_queues(c, v, w);
			else if (k->type == V_BINDINGS)
				vpcfw_bindings(c, v, w);
			else if (k->type == V_PCAP_TARGETS)
				vpcfw_pcap_targets(c, v, w);
			else if (k->type == V_MIRROR_ADDRS)
				vpcfw_mirror_addrs(c, v, w);
			else if (k->type == V_ACCESS)
				vpcfw_access(c, v, w);
			else if (k->type == V_SYNC)
				vpcfw_sync(c, v, w);
			else
				vpcfw_drop_capture(c, v, w);
			pop(c, p);
			continue;
		}
		switch (k->type) {
		case V_COUNT:
			if (get_int(c, o, key, k->min, k->max, NULL, &x) == GOOD)
				*(uint32_t *)(void *)dst = (uint32_t)x;
			break;
		case V_BOOL:
			get_bool(c, o, key, (bool *)(void *)dst);
			break;
		case V_STRING:
			if (get_text(c, o, key, &s) != GOOD)
				break;
			if (*s) {
				*(const char **)(void *)dst = arena_strdup(c->a, s);
			} else {
				p = push_key(c, key);
				err(c, "\"\" is empty");
				pop(c, p);
			}
			break;
		default:
			break;
		}
	}
	if (json_object_get(o, "Offload"))
		w->offload_explicit = true;
	if (w->offload_mark & (w->offload_mark - 1)) {
		size_t p = push_key(c, "OffloadMark");
		err(c, "%u (0x%x) is not a single bit", w->offload_mark, w->offload_mark);
		pop(c, p);
	}
	if (json_object_get(o, "PerSourceNewFlowBurst") && w->per_source_burst &&
	    !w->per_source_rate) {
		size_t p = push_key(c, "PerSourceNewFlowBurst");
		warn(c, "%u has no effect without PerSourceNewFlowsPerSecond", w->per_source_burst);
		pop(c, p);
	}
}

/* ------------------------------------------------------------ documents */

static const struct top {
	const char *key;
	void (*load)(struct ctx *c, json_t *list);
} tops[] = {
	/* Order matters only for replacement: SecurityGroups before
	 * SecurityGroupRules, NetworkInterfaces before Reservations. */
	{ "Vpcs", vpcs },
	{ "Subnets", subnets },
	{ "NetworkAcls", nacls },
	{ "SecurityGroups", sgs },
	{ "SecurityGroupRules", sg_rules },
	{ "NetworkInterfaces", enis },
	{ "Reservations", reservations },
	{ "ManagedPrefixLists", managed_pls },
	{ "PrefixLists", aws_pls },
	{ "FlowLogs", flowlogs },
	{ "Vpcfw", NULL },
	{ "TrafficMirrorFilters", mirror_filters },     /* SPEC §8 */
	{ "TrafficMirrorSessions", mirror_sessions },
	{ "TrafficMirrorTargets", mirror_targets },
};

/* One warning per unknown key per load: the diagnostics of this load are
 * the memory of what was said already. */
static void unknown_key(struct ctx *c, const char *key)
{
	char kt[80], tail[128];
	printable(kt, sizeof(kt), key);
	int n = snprintf(tail, sizeof(tail), ": %s: unknown top-level key, ignored", kt);
	size_t tl = n > 0 && (size_t)n < sizeof(tail) ? (size_t)n : strlen(tail);
	for (size_t i = 0; i < c->d->n; i++) {
		const char *t = c->d->msgs[i].text;
		size_t len = strlen(t);
		if (!c->d->msgs[i].error && len >= tl && strcmp(t + len - tl, tail) == 0)
			return;
	}
	diag_warn(c->d, c->file, kt, "unknown top-level key, ignored");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void load_document(struct ctx *c, json_t *root)
{
	const size_t n_tops = sizeof(tops) / sizeof(tops[0]);

	for (size_t t = 0; t < n_tops; t++) {
		json_t *v = json_object_get(root, tops[t].key);
		if (!v || json_is_null(v))
			continue;
		size_t p = push_key(c, tops[t].key);
		if (strcmp(tops[t].key, "Vpcfw") == 0)
			vpcfw_section(c, v);
		else if (tops[t].load && !json_is_array(v))
			bad(c, v, "is not a list");
		else if (tops[t].load)
			tops[t].load(c, v);
		pop(c, p);
	}

	/* Unknown keys in name order, so that output does not depend on the
	 * JSON library's hash order. */
	const char **unknown = xcalloc(json_object_size(root), sizeof(*unknown));
	size_t nu = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		size_t t = 0;
		while (t < n_tops && strcmp(tops[t].key, key) != 0)
			t++;
		if (t == n_tops)
			unknown[nu++] = key;
	}
	qsort(unknown, nu, sizeof(*unknown), cmp_str);
	for (size_t i = 0; i < nu; i++)
		unknown_key(c, unknown[i]);
	free(unknown);
}

/* jansson reports a duplicate key with its offset only (just past the key):
 * the prefix up to there is valid JSON, so a scan of it rebuilds the path of
 * the duplicated member into c->path. */
static void duplicate_key_path(struct ctx *c, const char *text, size_t end, char *key,
			       size_t keyn)
{
	struct frame {
		size_t base, index;
		bool object, want_key;
	} *st = xcalloc(JSON_PARSER_MAX_DEPTH + 1, sizeof(*st));
	int depth = 0;

	pop(c, 0);
	for (size_t i = 0; i < end; i++) {
		struct frame *f = depth ? &st[depth - 1] : NULL;
		switch (text[i]) {
		case '{':
		case '[':
			if (depth == JSON_PARSER_MAX_DEPTH + 1)
				break;
			st[depth] = (struct frame){ .base = c->plen, .object = text[i] == '{',
						    .want_key = text[i] == '{' };
			if (text[i] == '[')
				push_index(c, 0);
			depth++;
			break;
		case '}':
		case ']':
			if (depth) {
				pop(c, f->base);
				depth--;
			}
			break;
		case ',':
			if (f && f->object) {
				f->want_key = true;
			} else if (f) {
				pop(c, f->base);
				push_index(c, ++f->index);
			}
			break;
		case '"': {
			size_t start = ++i;
			while (i < end && text[i] != '"')
				i += text[i] == '\\' ? 2 : 1;
			if (f && f->object && f->want_key) {
				size_t n = i - start < keyn - 1 ? i - start : keyn - 1;
				memcpy(key, text + start, n);
				key[n] = '\0';
				pop(c, f->base);
				push_key(c, key);
				f->want_key = false;
			}
			break;
		}
		default:
			break;
		}
	}
	free(st);
}

/* A key given twice would silently let the last one win (a trailing
 * "SecurityGroups": [] erasing every group): refused, naming the key. */
static void duplicate_key(struct ctx *c, const char *text, size_t len, const json_error_t *je)
{
	char raw[128] = "", key[128];
	size_t end = (size_t)je->position <= len ? (size_t)je->position : len;

	duplicate_key_path(c, text, end, raw, sizeof(raw));
	printable(key, sizeof(key), raw);
	diag_error(c->d, c->file, c->path, "duplicate key \"%s\" (line %d column %d): each key "
		   "may appear once in an object", key, je->line, je->column);
	pop(c, 0);
}

/* ------------------------------------------------------------ parse arena */

/* jansson builds a document from millions of small mallocs, and freeing
 * them one by one (with glibc's consolidation) cost as much as parsing.  A
 * document being parsed is carved instead from one mapping reserved for
 * the calling thread (pages are only touched as used) and unmapped whole
 * once the document is converted: its free()s are no-ops, told apart by
 * address.  Everything else jansson allocates, in any thread, goes to
 * malloc; so does a document that outgrows its mapping.  The functions are
 * installed once, before any thread starts (config loading runs first). */
static _Thread_local struct {
	char *base, *cur, *end;
} parse_arena;

static void *arena_json_malloc(size_t n)
{
	const size_t align = _Alignof(max_align_t);
	size_t need = (n + align - 1) & ~(align - 1);
	if (parse_arena.base && need >= n && (size_t)(parse_arena.end - parse_arena.cur) >= need) {
		void *p = parse_arena.cur;
		parse_arena.cur += need;
		return p;
	}
	return malloc(n);
}

static void arena_json_free(void *p)
{
	if (parse_arena.base && (char *)p >= parse_arena.base && (char *)p < parse_arena.end)
		return;
	free(p);
}

static void install_json_alloc(void)
{
	json_set_alloc_funcs(arena_json_malloc, arena_json_free);
}

/* A document of len bytes needs about 10 bytes of jansson objects per
 * byte of text (measured on describe-security-groups exports); a shortfall
 * only sends the rest to malloc. */
static void parse_arena_begin(size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, install_json_alloc);
	size_t size = len < ((size_t)1 << 40) / 16 ? len * 16 + ((size_t)1 << 20) : 0;
	void *base = size ? mmap(NULL, size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
			  : MAP_FAILED;
	if (base == MAP_FAILED)
		return; /* everything to malloc */
#ifdef MADV_HUGEPAGE
	/* a large document touches every page: fewer, larger faults */
	if (size >= ((size_t)8 << 20))
		(void)madvise(base, size, MADV_HUGEPAGE);
#endif
	parse_arena.base = parse_arena.cur = base;
	parse_arena.end = parse_arena.base + size;
}

/* After the document's last json_decref. */
static void parse_arena_end(void)
{
	if (!parse_arena.base)
		return;
	munmap(parse_arena.base, (size_t)(parse_arena.end - parse_arena.base));
	parse_arena.base = parse_arena.cur = parse_arena.end = NULL;
}

size_t config_load_buffer(struct model *m, const char *name, const char *text, size_t len,
			  struct diag *d)
{
	size_t errors0 = d->errors;
	struct ctx c = { .m = m, .a = &m->arena, .d = d };
	json_error_t je;

	c.file = arena_strdup(&m->arena, name ? name : "-");
	parse_arena_begin(len);
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	/* only the parse fills the mapping: whatever is allocated from here
	 * on, with the tree still in use, is malloc's */
	parse_arena.cur = parse_arena.end;
	if (!root)
		parse_arena_end(); /* jansson freed what it had built */
	if (!root && json_error_code(&je) == json_error_duplicate_key) {
		duplicate_key(&c, text, len, &je);
		return d->errors - errors0;
	}
	if (!root) {
		char msg[sizeof(je.text)];
		printable(msg, sizeof(msg), je.text);
		diag_error(d, c.file, NULL, "line %d column %d: invalid JSON: %s", je.line,
			   je.column, msg);
		return d->errors - errors0;
	}
	if (!json_is_object(root)) {
		char vt[96];
		diag_error(d, c.file, NULL, "the top level is %s, not an object",
			   vtext(root, vt, sizeof(vt)));
	} else {
		load_document(&c, root);
	}
	json_decref(root);
	parse_arena_end();
	idmap_free(&c.sg_ids);
	idmap_free(&c.eni_ids);
	return d->errors - errors0;
}

static void load_file(struct model *m, const char *path, struct diag *d)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	struct stat st;
	/* O_NONBLOCK: a FIFO or a device put in place of a file must not hold
	 * the daemon's main loop; only regular files are read */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		diag_error(d, path, NULL, "cannot open: %s", strerror(errno));
		return;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		diag_error(d, path, NULL, "not a regular file");
		close(fd);
		return;
	}
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		diag_error(d, path, NULL, "cannot open: %s", strerror(errno));
		close(fd);
		return;
	}
	/* the file's size (plus one, to see the end) in one read: a doubling
	 * buffer held up to twice a large file's size at the peak */
	size_t want = st.st_size > 0 && st.st_size < MAX_FILE ? (size_t)st.st_size + 1 : 65536;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : want;
			char *nb = cap <= MAX_FILE ? realloc(buf, cap) : NULL;
			if (!nb) {
				diag_error(d, path, NULL, "larger than %d MB", MAX_FILE >> 20);
				free(buf);
				fclose(f);
				return;
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		diag_error(d, path, NULL, "cannot read: %s", strerror(errno));
	} else {
		config_load_buffer(m, path, buf, len, d);
	}
	free(buf);
	fclose(f);
}

static int json_name(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

size_t config_load_path(struct model *m, const char *path, struct diag *d)
{
	size_t errors0 = d->errors;
	struct stat st;
	struct dirent **names;

	if (stat(path, &st) != 0) {
		diag_error(d, path, NULL, "cannot open: %s", strerror(errno));
		return d->errors - errors0;
	}
	if (!S_ISDIR(st.st_mode)) {
		load_file(m, path, d);
		return d->errors - errors0;
	}
	int n = scandir(path, &names, json_name, by_name);
	if (n < 0) {
		diag_error(d, path, NULL, "cannot read the directory: %s", strerror(errno));
		return d->errors - errors0;
	}
	size_t plen = strlen(path);
	bool slash = plen > 0 && path[plen - 1] == '/';
	int loaded = 0;
	for (int i = 0; i < n; i++) {
		char *file = arena_printf(&m->arena, "%s%s%s", path, slash ? "" : "/",
					  names[i]->d_name);
		if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
			load_file(m, file, d);
			loaded++;
		}
		free(names[i]);
	}
	free(names);
	if (loaded == 0)
		diag_warn(d, path, NULL, "no *.json file in this directory");
	return d->errors - errors0;
}

/* ------------------------------------------------------------ model */

void model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	arena_init(&m->arena);
	for (size_t i = 0; i < sizeof(vpcfw_keys) / sizeof(vpcfw_keys[0]); i++) {
		const struct vkey *k = &vpcfw_keys[i];
		char *dst = (char *)&m->vpcfw + k->off;
		switch (k->type) {
		case V_QUEUES: {
			uint16_t *q = xcalloc(65536, sizeof(*q));
			size_t n = 0;
			if (queue_text(k->str, q, &n)) {
				m->vpcfw.queues = arena_calloc(&m->arena, n, sizeof(*q));
				memcpy(m->vpcfw.queues, q, n * sizeof(*q));
				m->vpcfw.n_queues = (int)n;
			}
			free(q);
			break;
		}
		case V_BINDINGS: break;
		case V_PCAP_TARGETS: case V_MIRROR_ADDRS: case V_DROP_CAPTURE: break;
		case V_ACCESS: case V_SYNC: break;
		case V_COUNT: *(uint32_t *)(void *)dst = (uint32_t)k->num; break;
		case V_BOOL: *(bool *)(void *)dst = k->num != 0; break;
		case V_STRING: *(const char **)(void *)dst = k->str; break;
		}
	}
}

void model_free(struct model *m)
{
	arena_free(&m->arena);
	memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------ whole-model checks */

struct kind {
	const char *key;
	const void *base;
	int n;
	size_t size, id_off, where_off;
};

/* Is security group `id` used: carried by an interface or named by a rule?
 * A group nobody uses decides no packet. */
static bool sg_used(const struct model *m, const char *id)
{
	for (int e = 0; e < m->n_enis; e++)
		for (int g = 0; g < m->enis[e].n_groups; g++)
			if (strcmp(m->enis[e].groups[g], id) == 0)
				return true;
	for (int i = 0; i < m->n_sgs; i++)
		for (int dir = 0; dir < 2; dir++) {
			const struct m_sg_rule *r = dir ? m->sgs[i].out : m->sgs[i].in;
			int n = dir ? m->sgs[i].n_out : m->sgs[i].n_in;
			for (int k = 0; k < n; k++)
				for (int p = 0; p < r[k].n_peers; p++)
					if (r[k].peers[p].kind == PEER_GROUP &&
					    strcmp(r[k].peers[p].ref, id) == 0)
						return true;
		}
	return false;
}

static void check_ids(const struct model *m, struct diag *d, const struct kind *k)
{
	struct idmap seen = { 0 };
	char path[400];

	for (int i = 0; i < k->n; i++) {
		const char *obj = (const char *)k->base + (size_t)i * k->size;
		const char *id = *(const char *const *)(const void *)(obj + k->id_off);
		const struct where *w = (const void *)(obj + k->where_off);
		int first = idmap_get(&seen, id);
		if (first < 0) {
			idmap_put(&seen, id, i);
			continue;
		}
		const struct where *fw = (const void *)((const char *)k->base +
							(size_t)first * k->size + k->where_off);
		snprintf(path, sizeof(path), "%s.%s", w->path, k->key);
		/* Two definitions of one id are ambiguous, an error (SPEC §1) --
		 * unless it is a security group that nothing uses, which decides
		 * no packet either way (collections of examples, such as Batfish's
		 * tests, reuse ids). */
		if (k->base == (const void *)m->sgs && !sg_used(m, id))
			diag_warn(d, w->file, path,
				  "%s is defined twice (first at %s: %s); no interface or rule "
				  "uses it, so the first is kept", id, fw->file, fw->path);
		else
			diag_error(d, w->file, path, "%s is defined twice (first at %s: %s)", id,
				   fw->file, fw->path);
	}
	idmap_free(&seen);
}

struct numbered {
	int index;
	const struct m_nacl_entry *e;
};

static int cmp_numbered(const void *a, const void *b)
{
	const struct numbered *x = a, *y = b;
	if (x->e->egress != y->e->egress)
		return x->e->egress ? 1 : -1;
	if (x->e->cidr.family != y->e->cidr.family)
		return x->e->cidr.family < y->e->cidr.family ? -1 : 1;
	if (x->e->number != y->e->number)
		return x->e->number < y->e->number ? -1 : 1;
	return x->index - y->index;
}

static void check_nacl(struct diag *d, const struct m_nacl *n)
{
	struct numbered *v = xcalloc((size_t)n->n_entries, sizeof(*v));
	char path[400];
	int count[2][2] = { { 0, 0 }, { 0, 0 } };

	for (int i = 0; i < n->n_entries; i++) {
		v[i].index = i;
		v[i].e = &n->entries[i];
		if (v[i].e->number <= 32766)
			count[v[i].e->egress][v[i].e->cidr.family == FAMILY_V6]++;
	}
	qsort(v, (size_t)n->n_entries, sizeof(*v), cmp_numbered);
	for (int i = 1; i < n->n_entries; i++) {
		const struct m_nacl_entry *a = v[i - 1].e, *b = v[i].e;
		if (a->egress != b->egress || a->cidr.family != b->cidr.family || a->number != b->number)
			continue;
		snprintf(path, sizeof(path), "%s.RuleNumber", b->where.path);
		diag_error(d, b->where.file, path,
			   "%u is used twice in the %s %s rules of %s (first at %s)", b->number,
			   b->egress ? "outbound" : "inbound", family_name(b->cidr.family), n->id,
			   a->where.path);
	}
	for (int eg = 0; eg < 2; eg++)
		for (int f = 0; f < 2; f++)
			if (count[eg][f] > 40)
				diag_warn(d, n->where.file, n->where.path,
					  "%s has %d %s %s rules; AWS allows at most 40", n->id,
					  count[eg][f], eg ? "outbound" : "inbound",
					  family_name(f ? FAMILY_V6 : FAMILY_V4));
	free(v);
}

static void check_nacls(const struct model *m, struct diag *d)
{
	struct idmap subnets = { 0 }, defaults = { 0 };
	struct assoc {
		int nacl, k;
	} *as;
	size_t total = 0, na = 0;
	char path[400];

	for (int i = 0; i < m->n_nacls; i++)
		total += (size_t)m->nacls[i].n_subnets;
	as = xcalloc(total, sizeof(*as));
	for (int i = 0; i < m->n_nacls; i++) {
		const struct m_nacl *n = &m->nacls[i];
		check_nacl(d, n);
		for (int k = 0; k < n->n_subnets; k++) {
			int j = idmap_get(&subnets, n->subnets[k]);
			if (j < 0) {
				as[na].nacl = i;
				as[na].k = k;
				idmap_put(&subnets, n->subnets[k], (int)na++);
			} else if (strcmp(m->nacls[as[j].nacl].id, n->id) != 0) {
				/* (the same id twice is reported as a duplicate) */
				const struct m_nacl *o = &m->nacls[as[j].nacl];
				const struct where *w = &n->subnet_where[k];
				const struct where *ow = &o->subnet_where[as[j].k];
				snprintf(path, sizeof(path), "%s.SubnetId", w->path);
				diag_error(d, w->file, path,
					   "%s is associated with two network ACLs, %s and %s (at %s: %s)",
					   n->subnets[k], n->id, o->id, ow->file, ow->path);
			}
		}
		if (!n->is_default || !n->vpc_id)
			continue;
		int j = idmap_get(&defaults, n->vpc_id);
		if (j < 0) {
			idmap_put(&defaults, n->vpc_id, i);
			continue;
		}
		const struct m_nacl *o = &m->nacls[j];
		if (strcmp(o->id, n->id) == 0)
			continue;
		snprintf(path, sizeof(path), "%s.IsDefault", n->where.path);
		diag_error(d, n->where.file, path,
			   "%s has two default network ACLs, %s and %s (at %s: %s)", n->vpc_id,
			   n->id, o->id, o->where.file, o->where.path);
	}
	free(as);
	idmap_free(&subnets);
	idmap_free(&defaults);
}

static void check_bindings(const struct m_vpcfw *w, struct diag *d)
{
	struct idmap enis = { 0 }, devs = { 0 };
	char path[400];

	for (int i = 0; i < w->n_bindings; i++) {
		const struct m_binding *b = &w->bindings[i];
		int j = idmap_get(&enis, b->eni_id);
		if (j >= 0) {
			snprintf(path, sizeof(path), "%s.NetworkInterfaceId", b->where.path);
			diag_error(d, b->where.file, path, "%s is bound twice (first at %s: %s)",
				   b->eni_id, w->bindings[j].where.file, w->bindings[j].where.path);
		} else {
			idmap_put(&enis, b->eni_id, i);
		}
		j = idmap_get(&devs, b->device);
		if (j >= 0) {
			snprintf(path, sizeof(path), "%s.Device", b->where.path);
			diag_error(d, b->where.file, path,
				   "%s already carries %s (at %s: %s)", b->device,
				   w->bindings[j].eni_id, w->bindings[j].where.file,
				   w->bindings[j].where.path);
		} else {
			idmap_put(&devs, b->device, i);
		}
	}
	idmap_free(&enis);
	idmap_free(&devs);
}

#define KIND(key, arr, n, type) \
	{ key, arr, n, sizeof(type), offsetof(type, id), offsetof(type, where) }

void config_check(const struct model *m, struct diag *d)
{
	const struct kind kinds[] = {
		KIND("VpcId", m->vpcs, m->n_vpcs, struct m_vpc),
		KIND("SubnetId", m->subnets, m->n_subnets, struct m_subnet),
		KIND("NetworkAclId", m->nacls, m->n_nacls, struct m_nacl),
		KIND("GroupId", m->sgs, m->n_sgs, struct m_sg),
		KIND("NetworkInterfaceId", m->enis, m->n_enis, struct m_eni),
		KIND("PrefixListId", m->pls, m->n_pls, struct m_prefix_list),
		KIND("FlowLogId", m->flowlogs, m->n_flowlogs, struct m_flowlog),
		KIND("TrafficMirrorFilterId", m->mirror_filters, m->n_mirror_filters,
		     struct m_mirror_filter),
		KIND("TrafficMirrorTargetId", m->mirror_targets, m->n_mirror_targets,
		     struct m_mirror_target),
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		check_ids(m, d, &kinds[i]);
	check_nacls(m, d);
	check_bindings(&m->vpcfw, d);
}
