/* Engine benchmark: verdicts per second per core through the whole pipeline
 * (exempt check, subnet and interface lookups, NACLs, security groups,
 * connection tracking), for packets of established flows and for new flows,
 * with 1,000 security-group rules over 5 groups and 40 NACL entries per
 * direction; and bytes per tracked flow.  Prints figures; not a test.
 *
 *   make bench            (builds bench/bench_engine with -O2, runs it)
 *   bench/bench_engine [FLOWS ...]     default: 100000 1000000
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vpcfw/conf.h"
#include "vpcfw/lane.h"
#include "vpcfw/pipeline.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server subnet 10.0.1.0/24 (one interface, 5 groups of 200 rules, a
 * NACL of 40 entries per direction whose matching entry is the last); the
 * clients are on the internet (203.0.0.0/8), so each packet meets one NACL
 * and one security group, and flows are tracked at the server. */
static char *make_config(void)
{
	size_t cap = 1 << 20, len = 0;
	char *b = malloc(cap);
#define P(...) (len += (size_t)snprintf(b + len, cap - len, __VA_ARGS__))
	P("{\"Vpcs\":[{\"VpcId\":\"vpc-b\",\"CidrBlock\":\"10.0.0.0/16\"}],");
	P("\"Subnets\":[{\"SubnetId\":\"subnet-srv\",\"VpcId\":\"vpc-b\",\"CidrBlock\":\"10.0.1.0/24\"}],");
	P("\"NetworkAcls\":[{\"NetworkAclId\":\"acl-b\",\"VpcId\":\"vpc-b\",\"IsDefault\":true,\"Entries\":[");
	for (int dir = 0; dir < 2; dir++)
		for (int i = 0; i < 40; i++) {
			if (i < 39)
				P("%s{\"RuleNumber\":%d,\"Egress\":%s,\"RuleAction\":\"deny\",\"Protocol\":\"6\","
				  "\"CidrBlock\":\"198.18.%d.0/24\",\"PortRange\":{\"From\":%d,\"To\":%d}}",
				  dir || i ? "," : "", 10 + i * 10, dir ? "true" : "false", i, 1 + i, 100 + i);
			else
				P(",{\"RuleNumber\":%d,\"Egress\":%s,\"RuleAction\":\"allow\",\"Protocol\":\"-1\","
				  "\"CidrBlock\":\"0.0.0.0/0\"}", 10 + i * 10, dir ? "true" : "false");
		}
	P("]}],\"SecurityGroups\":[");
	for (int g = 0; g < 5; g++) {
		P("%s{\"GroupId\":\"sg-b%d\",\"IpPermissions\":[", g ? "," : "", g);
		for (int r = 0; r < 200; r++) {
			int port = 1000 + g * 200 + r;
			if (g == 4 && r == 199)
				port = 443; /* the rule the bench traffic meets */
			P("%s{\"IpProtocol\":\"%s\",\"FromPort\":%d,\"ToPort\":%d,\"IpRanges\":["
			  "{\"CidrIp\":\"%s\"}]}",
			  r ? "," : "", r % 3 ? "tcp" : "udp", port, port + (r % 7 == 0 ? 20 : 0),
			  port == 443 ? "203.0.0.0/8" : (r % 2 ? "198.19.0.0/16" : "192.0.2.0/24"));
		}
		/* egress not all-open, so flows are tracked */
		P("],\"IpPermissionsEgress\":[{\"IpProtocol\":\"tcp\",\"FromPort\":1024,\"ToPort\":65535,"
		  "\"IpRanges\":[{\"CidrIp\":\"0.0.0.0/0\"}]}]}");
	}
	P("],\"NetworkInterfaces\":[{\"NetworkInterfaceId\":\"eni-srv\",\"SubnetId\":\"subnet-srv\","
	  "\"PrivateIpAddress\":\"10.0.1.10\",\"Groups\":[");
	for (int g = 0; g < 5; g++)
		P("%s{\"GroupId\":\"sg-b%d\"}", g ? "," : "", g);
	P("]}]}");
#undef P
	return b;
}

static struct policy *load(void)
{
	struct model *m = calloc(1, sizeof(*m));
	struct diag d;
	char *cfg = make_config();
	diag_init(&d);
	model_init(m);
	config_load_buffer(m, "bench.json", cfg, strlen(cfg), &d);
	config_check(m, &d);
	struct policy *p = d.errors ? NULL : policy_build(m, &d);
	if (!p) {
		diag_print(&d, stderr);
		exit(1);
	}
	diag_free(&d);
	free(cfg);
	return p;
}

static void make_packet(struct packet *p, uint32_t i, bool syn)
{
	memset(p, 0, sizeof(*p));
	p->family = FAMILY_V4;
	p->proto = 6;
	p->src = addr_from_v4(0xcb000000u | (i >> 12));   /* 203.x.y.z */
	p->dst = addr_from_v4(0x0a00010au);               /* 10.0.1.10 */
	p->sport = (uint16_t)(1024 + (i & 0xfff));
	p->dport = 443;
	p->tcp_flags = syn ? TCP_SYN : TCP_ACK;
	p->flags = PKT_F_L4;
	p->ip_len = 64;
}

/* make_packet's packet as it arrives: 40 bytes of IPv4 and TCP */
static void make_raw(uint8_t b[40], uint32_t i)
{
	uint32_t src = 0xcb000000u | (i >> 12);
	uint16_t sport = (uint16_t)(1024 + (i & 0xfff));

	memset(b, 0, 40);
	b[0] = 0x45;
	b[3] = 40;
	b[8] = 64;
	b[9] = 6;
	for (int k = 0; k < 4; k++)
		b[12 + k] = (uint8_t)(src >> (24 - 8 * k));
	b[16] = 10, b[17] = 0, b[18] = 1, b[19] = 10;
	b[20] = (uint8_t)(sport >> 8), b[21] = (uint8_t)sport;
	b[22] = 443 >> 8, b[23] = 443 & 0xff;
	b[32] = 0x50;
	b[33] = TCP_ACK;
}

static void run(const struct policy *pol, uint32_t flows)
{
	struct pipeline pl;
	struct verdict v;
	struct packet p;
	uint64_t t = 1000000000ULL;
	struct conntrack *ct = ct_create(flows + flows / 8);

	if (!ct) {
		fprintf(stderr, "ct_create(%u) failed\n", flows);
		exit(1);
	}
	pipeline_init(&pl, ct);
	/* the daemon's per-rule counters are on, as in production */
	counter_t *hits = calloc(pol->n_hits ? pol->n_hits : 1, sizeof(*hits));
	pl.hits = hits;
	pl.n_hits = pol->n_hits;

	/* new flows: every packet starts one */
	double t0 = now_s();
	for (uint32_t i = 0; i < flows; i++) {
		make_packet(&p, i, true);
		pipeline_eval(&pl, pol, &p, NULL, t, &v);
		if (!v.accept) {
			fprintf(stderr, "bench packet %u refused: %s\n", i, reason_name(v.reason));
			exit(1);
		}
	}
	double new_rate = flows / (now_s() - t0);

	/* established flows: packets of the tracked flows in a scattered order
	 * (the worst case for the flow table's caches), one at a time and in
	 * receive batches as the daemon decides them */
	uint64_t n = 10000000;
	uint32_t step = 2654435761u % flows | 1;
	uint32_t idx = 0;
	t0 = now_s();
	uint64_t tracked = 0, tracked_batched = 0, batched = 0;
	for (uint64_t k = 0; k < n; k++) {
		idx = (idx + step) % flows;
		make_packet(&p, idx, false);
		pipeline_eval(&pl, pol, &p, NULL, t, &v);
		tracked += v.accept && v.reason == REASON_TRACKED_FLOW;
	}
	double est_rate = n / (now_s() - t0);

	struct packet batch[PIPELINE_BATCH];
	struct verdict vs[PIPELINE_BATCH];
	t0 = now_s();
	for (uint64_t k = 0; k < n; k += PIPELINE_BATCH) {
		for (int i = 0; i < PIPELINE_BATCH; i++) {
			idx = (idx + step) % flows;
			make_packet(&batch[i], idx, false);
		}
		pipeline_eval_batch(&pl, pol, batch, NULL, PIPELINE_BATCH, t, vs);
		for (int i = 0; i < PIPELINE_BATCH; i++)
			tracked_batched += vs[i].accept && vs[i].reason == REASON_TRACKED_FLOW;
		batched += PIPELINE_BATCH;
	}
	double batch_rate = n / (now_s() - t0);

	/* from the bytes, as a worker takes a receive batch of 64: parsed and
	 * decided inline (the daemon's loop before the lane), then through the
	 * lane (lane.h; no hook configured: the lane's own cost) */
	enum { RX = 64 };
	static uint8_t raw[RX][40];
	struct packet rx[RX];
	struct verdict rv[RX];
	uint64_t tracked_inline = 0, tracked_lane = 0, rx_n = 0;
	t0 = now_s();
	for (uint64_t k = 0; k < n; k += RX) {
		for (int i = 0; i < RX; i++) {
			idx = (idx + step) % flows;
			make_raw(raw[i], idx);
		}
		int np = 0;
		for (int i = 0; i < RX; i++)
			if (packet_parse_ip(raw[i], 40, 40, &rx[np]) == PACKET_OK)
				np++;
		pipeline_eval_batch(&pl, pol, rx, NULL, np, t, rv);
		for (int i = 0; i < np; i++)
			tracked_inline += rv[i].accept && rv[i].reason == REASON_TRACKED_FLOW;
		rx_n += RX;
	}
	double inline_rate = n / (now_s() - t0);
	struct lane *ln = malloc(sizeof(*ln));
	lane_init(ln, ct, 0);
	ln->pl.hits = hits;
	ln->pl.n_hits = pol->n_hits;
	struct lane_packet in[RX];
	struct lane_out out[RX];
	struct lane_batch lb = { .pol = pol, .now_ns = t, .wall_ns = t };
	t0 = now_s();
	for (uint64_t k = 0; k < n; k += RX) {
		for (int i = 0; i < RX; i++) {
			idx = (idx + step) % flows;
			make_raw(raw[i], idx);
			in[i] = (struct lane_packet){ .data = raw[i], .caplen = 40, .wirelen = 40,
						      .link = PACKET_OK, .ts_ns = t };
		}
		lane_run(ln, &lb, in, RX, out);
		for (int i = 0; i < RX; i++)
			tracked_lane += out[i].accept && out[i].v->reason == REASON_TRACKED_FLOW;
	}
	double lane_rate = n / (now_s() - t0);
	uint64_t rejected_lane = counter_get(&ln->pl.counters.rejected);
	free(ln);
	struct ct_stats st;
	ct_get_stats(ct, &st);
	/* the figures count what they say: every new-flow packet started a
	 * flow, every established packet was accepted as its tracked flow's */
	uint64_t rejected = counter_get(&pl.counters.rejected);
	if (rejected || rejected_lane || st.used != flows || st.inserted != flows || tracked != n ||
	    tracked_batched != batched || tracked_inline != rx_n || tracked_lane != rx_n) {
		fprintf(stderr, "unexpected: %llu rejected, %llu flows tracked (%llu inserted), "
			"%llu of %llu and %llu of %llu (batched) established packets accepted as "
			"tracked; %llu and %llu of %llu from the bytes (inline, lane)\n",
			(unsigned long long)rejected, (unsigned long long)st.used,
			(unsigned long long)st.inserted, (unsigned long long)tracked,
			(unsigned long long)n, (unsigned long long)tracked_batched,
			(unsigned long long)batched, (unsigned long long)tracked_inline,
			(unsigned long long)tracked_lane, (unsigned long long)rx_n);
		exit(1);
	}
	printf("%10u  %14.2f  %14.2f  %14.2f  %14.2f  %14.2f  %12zu  %llu new, %llu + %llu + %llu + "
	       "%llu tracked\n",
	       flows, est_rate / 1e6, batch_rate / 1e6, inline_rate / 1e6, lane_rate / 1e6,
	       new_rate / 1e6, ct_bytes_per_flow(ct), (unsigned long long)st.inserted,
	       (unsigned long long)tracked, (unsigned long long)tracked_batched,
	       (unsigned long long)tracked_inline, (unsigned long long)tracked_lane);
	ct_destroy(ct);
	free(hits);
}

int main(int argc, char **argv)
{
	struct policy *pol = load();
	printf("vpcfw engine benchmark: 1000 SG rules over 5 groups, 40 NACL entries per direction,\n"
	       "one core, packets already parsed (no I/O), per-rule counters on\n\n");
	printf("%10s  %14s  %14s  %14s  %14s  %14s  %12s  %s\n", "flows", "est. Mverd/s",
	       "est. batched", "bytes, inline", "bytes, lane", "new Mflows/s", "bytes/flow",
	       "verdicts checked");
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			run(pol, (uint32_t)strtoul(argv[i], NULL, 10));
	} else {
		run(pol, 100000);
		run(pol, 1000000);
	}
	policy_free(pol);
	policy_intern_reset();
	return 0;
}
