/* Addresses and CIDR blocks of both families.
 *
 * Every address is a 128-bit host-order integer: IPv6 as is, IPv4 as the
 * IPv4-mapped IPv6 address ::ffff:a.b.c.d.  One representation lets a single
 * prefix test, range compare and hash serve both families; the family is kept
 * beside it wherever a rule must not cross families. */
#ifndef VPCFW_ADDR_H
#define VPCFW_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { FAMILY_V4 = 4, FAMILY_V6 = 6 };

struct ip_addr {
	uint64_t hi, lo;
};

/* A prefix.  `len` counts bits in the 128-bit space (an IPv4 /24 is 120);
 * `family` says which kind of text it came from. */
struct cidr {
	struct ip_addr net;
	uint8_t len;
	uint8_t family;
};

#define ADDR_STRLEN 46 /* INET6_ADDRSTRLEN */
#define CIDR_STRLEN 50

/* Parse a textual address; family set to FAMILY_V4 or FAMILY_V6. */
bool addr_parse(const char *s, struct ip_addr *out, int *family);

/* Parse "a.b.c.d/n" or "x::/n".  A prefix length is required.  Host bits set
 * below the prefix are cleared (10.0.1.7/24 -> 10.0.1.0/24) and reported
 * through *had_host_bits when that is not NULL. */
bool cidr_parse(const char *s, struct cidr *out, bool *had_host_bits);

/* Format into buf (ADDR_STRLEN / CIDR_STRLEN bytes); returns buf. */
char *addr_format(const struct ip_addr *a, int family, char *buf);
char *cidr_format(const struct cidr *c, char *buf);

struct ip_addr addr_from_v4(uint32_t host_order);
struct ip_addr addr_from_v6(const uint8_t bytes[16]);
void addr_to_v6(const struct ip_addr *a, uint8_t bytes[16]);
uint32_t addr_to_v4(const struct ip_addr *a);
/* FAMILY_V4 for ::ffff:0:0/96, else FAMILY_V6. */
int addr_family(const struct ip_addr *a);

/* Prefix length as the user wrote it (an IPv4 /24 gives 24). */
static inline int cidr_user_len(const struct cidr *c)
{
	return c->family == FAMILY_V4 ? c->len - 96 : c->len;
}

static inline struct ip_addr addr_mask(uint8_t len)
{
	struct ip_addr m;
	m.hi = len == 0 ? 0 : len >= 64 ? ~0ULL : ~0ULL << (64 - len);
	m.lo = len <= 64 ? 0 : len >= 128 ? ~0ULL : ~0ULL << (128 - len);
	return m;
}

static inline bool addr_eq(const struct ip_addr *a, const struct ip_addr *b)
{
	return a->hi == b->hi && a->lo == b->lo;
}

static inline int addr_cmp(const struct ip_addr *a, const struct ip_addr *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

static inline bool cidr_contains(const struct cidr *c, const struct ip_addr *a)
{
	struct ip_addr m = addr_mask(c->len);
	return (a->hi & m.hi) == c->net.hi && (a->lo & m.lo) == c->net.lo;
}

/* The last address of the prefix (broadcast for IPv4). */
struct ip_addr cidr_last(const struct cidr *c);

/* a + n, wrapping within 128 bits. */
struct ip_addr addr_add(const struct ip_addr *a, uint64_t n);

/* The whole address space of a family: 0.0.0.0/0 or ::/0. */
static inline bool cidr_is_world(const struct cidr *c)
{
	return c->family == FAMILY_V4 ? c->len == 96 : c->len == 0;
}

static inline uint64_t addr_hash(const struct ip_addr *a)
{
	uint64_t h = a->hi * 0x9E3779B97F4A7C15ULL ^ a->lo;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* A sorted set of host addresses (the members of a group), and sorted
 * disjoint blocks (the prefixes delegated to members). */
struct addr_set {
	struct ip_addr *addrs;
	int n;
	struct cidr *blocks;
	int n_blocks;
};
bool addr_set_contains(const struct addr_set *s, const struct ip_addr *a);

#endif
