/* Helpers shared by the engine's unit tests. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stdint.h>

#include "vpcfw/packet.h"
#include "vpcfw/conf.h"
#include "vpcfw/policy.h"

/* Loads a JSON configuration text, checks and compiles it; fails the test
 * (printing the diagnostics) if it does not load. */
struct policy *tu_policy(const char *json);
/* Like tu_policy but returns NULL instead of failing; diagnostics go to
 * *out_text (malloc'd, caller frees) when out_text is not NULL. */
struct policy *tu_policy_try(const char *json, char **out_text);

/* A parsed-looking packet without going through packet.c. */
struct packet tu_pkt(const char *src, const char *dst, int proto, int sport, int dport,
		     uint8_t tcp_flags);
struct packet tu_icmp(const char *src, const char *dst, int type, int code, int id);

/* Seconds -> the nanosecond clock the engine uses, from a fixed epoch. */
static inline uint64_t tu_sec(double s)
{
	return (uint64_t)((1700000000.0 + s) * 1e9);
}

#endif
