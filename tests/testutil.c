#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/conf.h"
#include "vpcfw/load.h"
#include "vpcfw/flowlog.h"

struct policy *tu_policy_try(const char *json, char **out_text)
{
	struct diag d;

	diag_init(&d);
	struct policy *p = policy_load_buffer("test.json", json, strlen(json), &d);
	if (out_text) {
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		diag_print(&d, f);
		fclose(f);
		*out_text = buf;
	}
	diag_free(&d);
	return p;
}

struct policy *tu_policy(const char *json)
{
	char *text = NULL;
	struct policy *p = tu_policy_try(json, &text);
	if (!p)
		fprintf(stderr, "configuration did not load:\n%s", text ? text : "");
	free(text);
	ck_assert_ptr_nonnull(p);
	return p;
}

struct packet tu_pkt(const char *src, const char *dst, int proto, int sport, int dport,
		     uint8_t tcp_flags)
{
	struct packet p;
	int fam;

	memset(&p, 0, sizeof(p));
	ck_assert(addr_parse(src, &p.src, &fam));
	p.family = (uint8_t)fam;
	ck_assert(addr_parse(dst, &p.dst, &fam));
	p.proto = (uint8_t)proto;
	p.sport = (uint16_t)sport;
	p.dport = (uint16_t)dport;
	p.tcp_flags = tcp_flags;
	p.ip_len = 60;
	p.flags = PKT_F_L4;
	return p;
}

struct packet tu_icmp(const char *src, const char *dst, int type, int code, int id)
{
	struct packet p = tu_pkt(src, dst, 1, 0, 0, 0);
	if (p.family == FAMILY_V6)
		p.proto = 58;
	p.icmp_type = (uint8_t)type;
	p.icmp_code = (uint8_t)code;
	p.icmp_id = (uint16_t)id;
	return p;
}
