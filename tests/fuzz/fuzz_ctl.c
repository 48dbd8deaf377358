/* libFuzzer target: the control protocol (issue #9, "fuzzing where input
 * enters").  The input is what a client writes to the control socket: its
 * first byte picks the peer class (none, reader, admin, admin on the
 * read-only socket), the rest is cut into requests as the server cuts them
 * (one per '\n'-terminated line, at most CTL_MAX_CONFIG bytes; bytes after
 * the last newline are no request), each parsed by ctl_parse_request and
 * answered by ctl_handle, the server's own dispatch: every verb's argument
 * parsing (status, stats, flows, explain, check-config, metrics, reload,
 * audit, shadow-load with configurations compiled by the real loader,
 * shadow-report, shadow-clear).  The daemon behind it is a stand-in
 * holding a small compiled policy and a flow table with a few flows. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vpcfw/conntrack.h"
#include "vpcfw/ctl.h"
#include "vpcfw/diag.h"
#include "vpcfw/load.h"
#include "vpcfw/pipeline.h"
#include "vpcfw/policy.h"

#include "small_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static struct policy *pol;
static struct conntrack *ct;
static struct pipeline pl;
static struct ctl *ctl;
static struct shadow *shadow;
static bool audit_on;

static const struct policy *f_policy(void *ctx, uint64_t *gen)
{
	(void)ctx;
	*gen = 1;
	return pol;
}

static void f_worker(void *ctx, int i, struct ctl_worker_stats *out)
{
	(void)ctx;
	memset(out, 0, sizeof(*out));
	out->queue = (uint16_t)i;
	pipeline_get_stats(&pl, &out->pl);
	ct_get_stats(ct, &out->ct);
}

static const counter_t *f_hits(void *ctx, int i)
{
	(void)ctx;
	(void)i;
	return pl.hits;
}

struct walk {
	int (*fn)(int worker, const struct ct_flow_info *f, void *arg);
	void *arg;
};

static int walk_one(const struct ct_flow_info *f, void *arg)
{
	struct walk *w = arg;
	return w->fn(0, f, w->arg);
}

static int f_flows(void *ctx, int (*fn)(int worker, const struct ct_flow_info *f, void *arg),
		   void *arg)
{
	struct walk w = { fn, arg };
	(void)ctx;
	ct_foreach(ct, 0, walk_one, &w);
	return 0;
}

static bool f_reload(void *ctx, const char *who, char *msg, size_t len)
{
	(void)ctx;
	(void)who;
	(void)msg;
	(void)len;
	return true;
}

static void f_set_audit(void *ctx, bool on)
{
	(void)ctx;
	audit_on = on;
}

static bool f_audit(void *ctx)
{
	(void)ctx;
	return audit_on;
}

static struct shadow *f_set_shadow(void *ctx, struct shadow *s)
{
	(void)ctx;
	struct shadow *old = shadow;
	shadow = s;
	return old;
}

static const struct ctl_daemon fake = {
	.n_workers = 1, .policy = f_policy, .worker = f_worker, .hits = f_hits,
	.flows = f_flows, .reload = f_reload, .set_audit = f_set_audit, .audit = f_audit,
	.set_shadow = f_set_shadow,
};

static void init(void)
{
	struct diag d;
	char err[256];

	diag_init(&d);
	pol = policy_load_buffer("fuzz-ctl.json", CONFIG, sizeof(CONFIG) - 1, &d);
	diag_free(&d);
	if (!pol)
		abort();
	ct = ct_create(64);
	pipeline_init(&pl, ct);
	pl.hits = calloc(pol->n_hits ? pol->n_hits : 1, sizeof(counter_t));
	pl.n_hits = pol->n_hits;
	/* a few tracked flows for "flows": web's HTTP and SSH from outside */
	for (int i = 0; i < 4; i++) {
		struct packet p;
		struct verdict v;
		int fam;
		memset(&p, 0, sizeof(p));
		addr_parse("203.0.113.7", &p.src, &fam);
		addr_parse("10.0.1.10", &p.dst, &fam);
		p.family = (uint8_t)fam;
		p.proto = 6;
		p.sport = (uint16_t)(40000 + i);
		p.dport = i % 2 ? 22 : 80;
		p.tcp_flags = TCP_SYN;
		p.ip_len = 60;
		p.flags = PKT_F_L4;
		pipeline_eval(&pl, pol, &p, NULL, 1000000000ull * (uint64_t)(i + 1), &v);
	}
	ctl = ctl_open(&fake, NULL, NULL, NULL, NULL, NULL, err, sizeof(err));
	if (!ctl)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ctl_peer peers[4] = {
		{ .uid = 1000, .name = "uid 1000" },
		{ .uid = 1001, .reader = true, .name = "uid 1001 (reader)" },
		{ .uid = 0, .reader = true, .admin = true, .name = "uid 0" },
		{ .uid = 0, .reader = true, .read_only_socket = true, .name = "uid 0 (ro)" },
	};

	if (!ctl)
		init();
	if (size == 0)
		return 0;
	const struct ctl_peer *peer = &peers[data[0] & 3];
	const char *in = (const char *)data + 1;
	size_t left = size - 1;
	size_t limit = peer->admin ? CTL_MAX_CONFIG : CTL_MAX_REQUEST;
	const char *nl;

	while ((nl = memchr(in, '\n', left)) != NULL) {
		size_t len = (size_t)(nl - in);
		char err[200];
		if (len > limit)
			break; /* the server drops the client */
		/* an exact-size copy, so that a read past the line is caught */
		char *line = malloc(len ? len : 1);
		if (!line)
			break;
		memcpy(line, in, len);
		json_t *req = ctl_parse_request(line, len, err, sizeof(err));
		if (req) {
			json_t *reply = ctl_handle(ctl, peer, req);
			char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
			free(text);
			json_decref(reply);
			json_decref(req);
		}
		free(line);
		left -= len + 1;
		in = nl + 1;
	}
	/* nothing carries over from one input to the next */
	if (shadow) {
		json_t *clear = json_pack("{s:s}", "verb", "shadow-clear");
		json_decref(ctl_handle(ctl, &peers[2], clear));
		json_decref(clear);
	}
	audit_on = false;
	return 0;
}
