#include "vpcfw/addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ip_addr addr_from_v4(uint32_t v)
{
	struct ip_addr a = { 0, 0x0000ffff00000000ULL | v };
	return a;
}

struct ip_addr addr_from_v6(const uint8_t b[16])
{
	struct ip_addr a = { 0, 0 };
	for (int i = 0; i < 8; i++) {
		a.hi = a.hi << 8 | b[i];
		a.lo = a.lo << 8 | b[i + 8];
	}
	return a;
}

void addr_to_v6(const struct ip_addr *a, uint8_t b[16])
{
	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)(a->hi >> (56 - 8 * i));
		b[i + 8] = (uint8_t)(a->lo >> (56 - 8 * i));
	}
}

uint32_t addr_to_v4(const struct ip_addr *a)
{
	return (uint32_t)a->lo;
}

int addr_family(const struct ip_addr *a)
{
	return a->hi == 0 && (a->lo >> 32) == 0xffff ? FAMILY_V4 : FAMILY_V6;
}

bool addr_parse(const char *s, struct ip_addr *out, int *family)
{
	struct in_addr v4;
	struct in6_addr v6;

	if (!s)
		return false;
	if (strchr(s, ':')) {
		if (inet_pton(AF_INET6, s, &v6) != 1)
			return false;
		*out = addr_from_v6(v6.s6_addr);
		if (family)
			*family = FAMILY_V6;
		return true;
	}
	/* inet_pton(AF_INET) accepts only dotted quads, no shorthand. */
	if (inet_pton(AF_INET, s, &v4) != 1)
		return false;
	*out = addr_from_v4(ntohl(v4.s_addr));
	if (family)
		*family = FAMILY_V4;
	return true;
}

bool cidr_parse(const char *s, struct cidr *out, bool *had_host_bits)
{
	char buf[CIDR_STRLEN + 8];
	const char *slash;
	int family;
	char *end;

	if (!s || !(slash = strchr(s, '/')) || (size_t)(slash - s) >= sizeof(buf))
		return false;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';
	if (!addr_parse(buf, &out->net, &family))
		return false;
	if (slash[1] < '0' || slash[1] > '9')
		return false;
	long len = strtol(slash + 1, &end, 10);
	if (*end != '\0' || end - (slash + 1) > 3)
		return false;
	if (len < 0 || len > (family == FAMILY_V4 ? 32 : 128))
		return false;
	out->family = (uint8_t)family;
	out->len = (uint8_t)(family == FAMILY_V4 ? len + 96 : len);
	struct ip_addr m = addr_mask(out->len);
	bool host = (out->net.hi & ~m.hi) || (out->net.lo & ~m.lo);
	out->net.hi &= m.hi;
	out->net.lo &= m.lo;
	if (had_host_bits)
		*had_host_bits = host;
	return true;
}

char *addr_format(const struct ip_addr *a, int family, char *buf)
{
	if (family == FAMILY_V4) {
		struct in_addr v4 = { htonl(addr_to_v4(a)) };
		inet_ntop(AF_INET, &v4, buf, ADDR_STRLEN);
	} else {
		struct in6_addr v6;
		addr_to_v6(a, v6.s6_addr);
		inet_ntop(AF_INET6, &v6, buf, ADDR_STRLEN);
	}
	return buf;
}

char *cidr_format(const struct cidr *c, char *buf)
{
	char a[ADDR_STRLEN];
	snprintf(buf, CIDR_STRLEN, "%s/%d", addr_format(&c->net, c->family, a), cidr_user_len(c));
	return buf;
}

struct ip_addr cidr_last(const struct cidr *c)
{
	struct ip_addr m = addr_mask(c->len);
	struct ip_addr l = { c->net.hi | ~m.hi, c->net.lo | ~m.lo };
	return l;
}

struct ip_addr addr_add(const struct ip_addr *a, uint64_t n)
{
	struct ip_addr r = { a->hi, a->lo + n };
	if (r.lo < a->lo)
		r.hi++;
	return r;
}

/* The last block whose network is <= a, if it holds a (blocks are disjoint). */
static bool in_blocks(const struct addr_set *s, const struct ip_addr *a)
{
	int lo = 0, hi = s->n_blocks - 1, at = -1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		if (addr_cmp(&s->blocks[mid].net, a) <= 0) {
			at = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return at >= 0 && cidr_contains(&s->blocks[at], a);
}

bool addr_set_contains(const struct addr_set *s, const struct ip_addr *a)
{
	if (s->n_blocks && in_blocks(s, a))
		return true;
	int lo = 0, hi = s->n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int c = addr_cmp(&s->addrs[mid], a);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}
