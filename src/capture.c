/* Capture files read record by record (capture.h). */
#include "vpcfw/capture.h"

#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcfw/model.h"

/* Link types by their file-format (LINKTYPE_*) numbers; libpcap hands some
 * of them over translated (LINKTYPE_RAW 101 -> DLT_RAW, which is 12 or 14). */
enum {
	LINK_NULL = 0,
	LINK_EN10MB = 1,
	LINK_RAW_12 = 12,
	LINK_RAW_14 = 14,
	LINK_RAW = 101,
	LINK_LOOP = 108,
	LINK_LINUX_SLL = 113,
	LINK_IPV4 = 228,
	LINK_IPV6 = 229,
	LINK_LINUX_SLL2 = 276,
};

enum {
	ETH_IPV4 = 0x0800,
	ETH_IPV6 = 0x86dd,
	ETH_VLAN = 0x8100,
	ETH_QINQ = 0x88a8,
	ETH_QINQ_OLD = 0x9100,
};

#define MAX_VLAN_TAGS 2

/* Where the IP header of a record starts, and which family the link layer
 * announced (0: let the version nibble tell). */
struct link_result {
	enum packet_status st;  /* PACKET_OK: ip_off/family valid */
	size_t ip_off;
	int family;
};

static inline uint16_t rd16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static void by_ethertype(const uint8_t *b, size_t cap, size_t off, uint16_t type,
			 struct link_result *r)
{
	for (int tags = 0; type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD; tags++) {
		if (tags == MAX_VLAN_TAGS) {
			r->st = PACKET_NOT_IP;
			return;
		}
		if (off + 4 > cap) {
			r->st = PACKET_MALFORMED;
			return;
		}
		type = rd16(b + off + 2);
		off += 4;
	}
	r->ip_off = off;
	if (type == ETH_IPV4) {
		r->st = PACKET_OK;
		r->family = FAMILY_V4;
	} else if (type == ETH_IPV6) {
		r->st = PACKET_OK;
		r->family = FAMILY_V6;
	} else {
		r->st = PACKET_NOT_IP;
	}
}

/* BSD loopback: the sender's address family, in the capturing host's byte
 * order (DLT_NULL) or in network order (DLT_LOOP).  AF_INET is 2
 * everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (the BSDs, macOS). */
static void by_loopback_family(const uint8_t *b, size_t cap, struct link_result *r)
{
	if (cap < 4) {
		r->st = PACKET_MALFORMED;
		return;
	}
	uint32_t af = b[0] == 0 && b[1] == 0 ? b[3] | (uint32_t)b[2] << 8
					     : b[0] | (uint32_t)b[1] << 8;
	r->ip_off = 4;
	r->st = PACKET_OK;
	if (af == 2)
		r->family = FAMILY_V4;
	else if (af == 10 || af == 24 || af == 28 || af == 30)
		r->family = FAMILY_V6;
	else
		r->st = PACKET_NOT_IP;
}

static bool link_supported(int link)
{
	switch (link) {
	case LINK_NULL: case LINK_EN10MB: case LINK_RAW_12: case LINK_RAW_14: case LINK_RAW:
	case LINK_LOOP: case LINK_LINUX_SLL: case LINK_IPV4: case LINK_IPV6: case LINK_LINUX_SLL2:
		return true;
	default:
		return false;
	}
}

static void link_decode(int link, const uint8_t *b, size_t cap, struct link_result *r)
{
	memset(r, 0, sizeof(*r));
	switch (link) {
	case LINK_EN10MB:
		if (cap < 14)
			r->st = PACKET_MALFORMED;
		else
			by_ethertype(b, cap, 14, rd16(b + 12), r);
		break;
	case LINK_LINUX_SLL:
		if (cap < 16)
			r->st = PACKET_MALFORMED;
		else
			by_ethertype(b, cap, 16, rd16(b + 14), r);
		break;
	case LINK_LINUX_SLL2:
		if (cap < 20)
			r->st = PACKET_MALFORMED;
		else
			by_ethertype(b, cap, 20, rd16(b), r);
		break;
	case LINK_NULL:
	case LINK_LOOP:
		by_loopback_family(b, cap, r);
		break;
	case LINK_IPV4:
		r->family = FAMILY_V4;
		break;
	case LINK_IPV6:
		r->family = FAMILY_V6;
		break;
	default: /* raw IP: the version nibble decides */
		break;
	}
}

static uint64_t record_time_ns(const struct pcap_pkthdr *h)
{
	if (h->ts.tv_sec < 0)
		return 0;
	/* with PCAP_TSTAMP_PRECISION_NANO tv_usec holds nanoseconds */
	return (uint64_t)h->ts.tv_sec * 1000000000ULL + (uint64_t)h->ts.tv_usec;
}

struct capture {
	pcap_t *pc;
	int link;
};

struct capture *capture_open(const char *path, char *err, size_t errlen)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	struct capture *c = malloc(sizeof(*c));

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->pc = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	if (!c->pc) {
		snprintf(err, errlen, "%s", errbuf);
		free(c);
		return NULL;
	}
	c->link = pcap_datalink(c->pc);
	return c;
}

void capture_close(struct capture *c)
{
	if (!c)
		return;
	pcap_close(c->pc);
	free(c);
}

int capture_link(const struct capture *c)
{
	return c->link;
}

const char *capture_link_name(const struct capture *c)
{
	return pcap_datalink_val_to_name(c->link);
}

bool capture_link_supported(const struct capture *c)
{
	return link_supported(c->link);
}

int capture_next(struct capture *c, struct lane_packet *in)
{
	struct pcap_pkthdr *h;
	const u_char *data;
	struct link_result lr;
	int r = pcap_next_ex(c->pc, &h, &data);

	if (r == PCAP_ERROR_BREAK)
		return 0;
	if (r != 1)
		return -1;
	link_decode(c->link, data, h->caplen, &lr);
	*in = (struct lane_packet){
		.data = data, .caplen = h->caplen, .wirelen = h->len, .ip_off = lr.ip_off,
		.link = lr.st, .family = (uint8_t)lr.family, .ts_ns = record_time_ns(h),
	};
	return 1;
}

const char *capture_error(struct capture *c)
{
	return pcap_geterr(c->pc);
}

bool capture_is_capture(const char *path)
{
	static const uint32_t magics[] = { 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1,
					   0x0a0d0d0a };
	uint8_t b[4];
	FILE *f = fopen(path, "rb");
	bool yes = false;

	if (!f)
		return false;
	if (fread(b, 1, 4, f) == 4) {
		uint32_t m = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
		for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++)
			yes = yes || m == magics[i];
	}
	fclose(f);
	return yes;
}
