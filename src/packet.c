/* IPv4/IPv6 header parsing.  Every read is checked against two limits: what
 * was captured (cap) and what the IP header says the datagram holds (len);
 * the smaller one bounds each step. */
#include "vpcfw/packet.h"

#include <string.h>


#define V6_MAX_EXT_HEADERS 16

static inline uint16_t rd16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t rd32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

int icmp_query_reply_type(int family, uint8_t type)
{
	if (family == FAMILY_V4) {
		switch (type) {
		case 8: return 0;       /* echo */
		case 13: return 14;     /* timestamp */
		case 15: return 16;     /* information */
		case 17: return 18;     /* address mask */
		default: return -1;
		}
	}
	switch (type) {
	case 128: return 129;           /* echo */
	case 139: return 140;           /* node information (RFC 4620) */
	default: return -1;
	}
}

int icmp_is_query_reply(int family, uint8_t type)
{
	if (family == FAMILY_V4)
		return type == 0 || type == 14 || type == 16 || type == 18;
	return type == 129 || type == 140;
}

static bool icmp_is_error(int family, uint8_t type)
{
	if (family == FAMILY_V4)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

static bool icmp_has_id(int family, uint8_t type)
{
	return icmp_query_reply_type(family, type) >= 0 || icmp_is_query_reply(family, type);
}

static bool v6_ext_header(uint8_t nh)
{
	switch (nh) {
	case 0:         /* hop-by-hop options */
	case 43:        /* routing */
	case 44:        /* fragment */
	case 51:        /* authentication header */
	case 60:        /* destination options */
	case 135:       /* mobility */
	case 139:       /* HIP */
	case 140:       /* shim6 */
		return true;
	default:
		return false;
	}
}

/* Walks the IPv6 extension headers from offset 40.  `lim` bounds what may be
 * read (the captured part of the datagram).  On success *nh is the upper-layer
 * protocol at *off; *frag is set for a fragment header with a non-zero offset
 * (nothing after it can be parsed) and *more for one with the M flag. */
static bool v6_walk(const uint8_t *b, size_t lim, uint8_t *nh, size_t *off, bool *frag,
		    bool *more, uint32_t *id)
{
	uint8_t next = b[6];
	size_t o = 40;

	for (int n = 0; v6_ext_header(next); n++) {
		size_t hlen;
		if (n == V6_MAX_EXT_HEADERS || o + 8 > lim)
			return false;
		if (next == 44) {
			uint16_t fo = rd16(b + o + 2);
			*more = fo & 1;
			*id = rd32(b + o + 4);
			next = b[o];
			o += 8;
			if (fo >> 3) {
				*frag = true;
				break;
			}
			continue;
		}
		hlen = next == 51 ? ((size_t)b[o + 1] + 2) * 4 : ((size_t)b[o + 1] + 1) * 8;
		next = b[o];
		o += hlen;
	}
	if (o > lim)
		return false;
	*nh = next;
	*off = o;
	return true;
}

/* The ports (or ICMP identifier) of a quoted packet's first 8 L4 bytes. */
static void inner_ports(const uint8_t *l4, int family, struct packet_inner *in)
{
	switch (in->proto) {
	case PROTO_TCP:
	case PROTO_UDP:
		in->sport = rd16(l4);
		in->dport = rd16(l4 + 2);
		break;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		if (in->proto == (family == FAMILY_V4 ? PROTO_ICMP : PROTO_ICMPV6) &&
		    icmp_has_id(family, l4[0]))
			in->sport = in->dport = rd16(l4 + 4);
		break;
	default:
		break;
	}
}

/* The packet an ICMP error quotes: its IP header and the first 8 bytes of
 * its L4 header.  A quote too short for that is not an error, just nothing
 * to relate the ICMP message to. */
static bool parse_inner(const uint8_t *b, size_t n, int family, struct packet_inner *in)
{
	size_t off;

	if (family == FAMILY_V4) {
		if (n < 20 || b[0] >> 4 != 4)
			return false;
		off = (size_t)(b[0] & 0x0f) * 4;
		if (off < 20 || off + 8 > n || (rd16(b + 6) & 0x1fff) != 0)
			return false;
		in->src = addr_from_v4(rd32(b + 12));
		in->dst = addr_from_v4(rd32(b + 16));
		in->proto = b[9];
	} else {
		bool frag = false, more = false;
		uint32_t qid;
		uint8_t nh;
		if (n < 40 || b[0] >> 4 != 6)
			return false;
		if (!v6_walk(b, n, &nh, &off, &frag, &more, &qid) || frag || off + 8 > n)
			return false;
		in->src = addr_from_v6(b + 8);
		in->dst = addr_from_v6(b + 24);
		in->proto = nh;
	}
	inner_ports(b + off, family, in);
	return true;
}

/* The window-scale option of a SYN (RFC 7323 2.2), read from the options
 * that lie in the capture; options cut by it are flagged (the flow's window
 * scale is then unknown). */
static void tcp_syn_options(const uint8_t *l4, size_t lim, size_t doff, struct packet *p)
{
	size_t end = doff;
	if (end > lim) {
		end = lim;
		p->flags |= PKT_F_TCP_OPTS_CUT;
	}
	for (size_t i = 20; i < end;) {
		uint8_t kind = l4[i];
		if (kind == 0)          /* end of options */
			return;
		if (kind == 1) {        /* no-operation */
			i++;
			continue;
		}
		if (i + 1 >= end) {
			if (end < doff)
				p->flags |= PKT_F_TCP_OPTS_CUT;
			return;
		}
		uint8_t olen = l4[i + 1];
		if (olen < 2)
			return;         /* malformed: stop, as Linux's tcp_options does */
		if (i + olen > end) {
			if (end < doff)
				p->flags |= PKT_F_TCP_OPTS_CUT;
			return;
		}
		if (kind == 3 && olen == 3)
			p->tcp_wscale = l4[i + 2] > TCP_WSCALE_MAX ? TCP_WSCALE_MAX : l4[i + 2];
		i += olen;
	}
}

/* The L4 header at l4: `cap` bytes readable, `len` bytes in the datagram.
 * `first_frag`: the datagram is the first of several fragments, so lengths
 * that describe the whole reassembled payload cannot be checked here. */
static enum packet_status parse_l4(const uint8_t *l4, size_t cap, size_t len, bool first_frag,
				   struct packet *p)
{
	size_t lim = min_size(cap, len);
	uint8_t icmp = p->family == FAMILY_V4 ? PROTO_ICMP : PROTO_ICMPV6;

	switch (p->proto) {
	case PROTO_TCP: {
		if (lim < 20)
			return PACKET_MALFORMED;
		size_t doff = (size_t)(l4[12] >> 4) * 4;
		if (doff < 20 || (!first_frag && doff > len))
			return PACKET_MALFORMED;
		p->sport = rd16(l4);
		p->dport = rd16(l4 + 2);
		p->tcp_flags = l4[13];
		p->tcp_seq = rd32(l4 + 4);
		p->tcp_ack = rd32(l4 + 8);
		p->tcp_win = rd16(l4 + 14);
		p->tcp_len = len > doff ? (uint32_t)(len - doff) : 0;
		p->tcp_wscale = TCP_WSCALE_NONE;
		/* (a fragmented segment is not window-checked: conntrack.h) */
		if ((p->tcp_flags & TCP_SYN) && !first_frag)
			tcp_syn_options(l4, lim, doff, p);
		break;
	}
	case PROTO_UDP: {
		if (lim < 8)
			return PACKET_MALFORMED;
		size_t ulen = rd16(l4 + 4);
		/* Shorter than the IP payload is allowed (the rest is padding,
		 * which Linux trims); longer is not.  Zero would be an IPv6
		 * jumbogram (RFC 2675), which we do not accept. */
		if (ulen < 8 || (!first_frag && ulen > len))
			return PACKET_MALFORMED;
		p->sport = rd16(l4);
		p->dport = rd16(l4 + 2);
		break;
	}
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		if (p->proto != icmp)
			return PACKET_OK; /* ICMP in IPv6 or ICMPv6 in IPv4: just a number */
		if (lim < 8)
			return PACKET_MALFORMED;
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		/* For an RFC 4620 node information query this is the Qtype,
		 * which its reply repeats: good enough to pair them. */
		if (icmp_has_id(p->family, p->icmp_type))
			p->icmp_id = rd16(l4 + 4);
		else if (icmp_is_error(p->family, p->icmp_type) &&
			 parse_inner(l4 + 8, lim - 8, p->family, &p->inner))
			p->flags |= PKT_F_ICMP_ERR;
		break;
	default:
		return PACKET_OK;
	}
	p->flags |= PKT_F_L4;
	return PACKET_OK;
}

static enum packet_status parse_v4(const uint8_t *b, size_t cap, size_t wirelen, struct packet *p)
{
	if (cap < 20)
		return PACKET_MALFORMED;
	size_t hl = (size_t)(b[0] & 0x0f) * 4;
	size_t tot = rd16(b + 2);
	if (hl < 20 || hl > cap || tot < hl || tot > wirelen)
		return PACKET_MALFORMED;

	uint16_t frag = rd16(b + 6);
	uint16_t fo = frag & 0x1fff;
	p->frag_id = rd16(b + 4);
	p->family = FAMILY_V4;
	p->ip_len = (uint32_t)tot;
	p->proto = b[9];
	p->src = addr_from_v4(rd32(b + 12));
	p->dst = addr_from_v4(rd32(b + 16));
	if (fo) {
		/* RFC 1858: a TCP fragment at offset 8 bytes can only serve to
		 * overwrite the flags of the first one. */
		if (fo == 1 && p->proto == PROTO_TCP)
			return PACKET_MALFORMED;
		p->flags |= PKT_F_FRAGMENT;
		return PACKET_OK;
	}
	if (frag & 0x2000)
		p->flags |= PKT_F_FRAG_HEAD;
	return parse_l4(b + hl, min_size(cap, tot) - hl, tot - hl, frag & 0x2000, p);
}

static enum packet_status parse_v6(const uint8_t *b, size_t cap, size_t wirelen, struct packet *p)
{
	if (cap < 40)
		return PACKET_MALFORMED;
	size_t tot = 40 + (size_t)rd16(b + 4);
	/* A payload length of 0 is either empty (next header 59) or a
	 * jumbogram; the walk below refuses the latter, as its hop-by-hop
	 * header does not fit in 0 bytes. */
	if (tot > wirelen)
		return PACKET_MALFORMED;

	size_t lim = min_size(cap, tot), off;
	bool frag = false, more = false;
	uint8_t nh;
	p->family = FAMILY_V6;
	p->ip_len = (uint32_t)tot;
	p->src = addr_from_v6(b + 8);
	p->dst = addr_from_v6(b + 24);
	/* IPv4-mapped addresses (::ffff:0:0/96) never appear on the wire
	 * (RFC 4291 2.5.5.2), and here they are how IPv4 addresses are kept:
	 * taken as they are, an IPv6 packet would pass for IPv4 traffic. */
	if (addr_family(&p->src) == FAMILY_V4 || addr_family(&p->dst) == FAMILY_V4)
		return PACKET_MALFORMED;
	/* Headers must lie in the datagram as well as in the capture: a walk
	 * that ends inside the capture but beyond the payload length is
	 * malformed too. */
	if (!v6_walk(b, lim, &nh, &off, &frag, &more, &p->frag_id))
		return PACKET_MALFORMED;
	p->proto = nh;
	if (frag) {
		p->flags |= PKT_F_FRAGMENT;
		return PACKET_OK;
	}
	if (more)
		p->flags |= PKT_F_FRAG_HEAD;
	if (nh == 59)
		return PACKET_OK;
	return parse_l4(b + off, lim - off, tot - off, more, p);
}

enum packet_status packet_parse_ip(const uint8_t *buf, size_t caplen, size_t wirelen,
				   struct packet *p)
{
	memset(p, 0, sizeof(*p));
	if (caplen > wirelen)
		caplen = wirelen;
	if (caplen == 0)
		return PACKET_MALFORMED;
	switch (buf[0] >> 4) {
	case 4:
		return parse_v4(buf, caplen, wirelen, p);
	case 6:
		return parse_v6(buf, caplen, wirelen, p);
	default:
		return PACKET_NOT_IP;
	}
}
