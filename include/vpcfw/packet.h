/* Parsed headers of one IP packet.  Parsing copies the few fields the engine
 * needs and nothing else; it is bounds-checked against both the captured
 * length and the IP header's own length fields. */
#ifndef VPCFW_PACKET_H
#define VPCFW_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "vpcfw/addr.h"
#include "vpcfw/proto.h"

enum packet_status {
	PACKET_OK = 0,
	PACKET_NOT_IP,        /* neither IPv4 nor IPv6 (version nibble) */
	PACKET_MALFORMED,     /* an IP packet whose headers do not hold together */
};

enum {
	PKT_F_L4        = 1 << 0, /* sport/dport/tcp_flags/icmp_* are valid */
	PKT_F_FRAGMENT  = 1 << 1, /* a non-first fragment: no L4 header in it */
	PKT_F_ICMP_ERR  = 1 << 2, /* an ICMP/ICMPv6 error; `inner` holds the quoted tuple */
	PKT_F_FRAG_HEAD = 1 << 3, /* the first fragment of a fragmented datagram */
	PKT_F_TCP_OPTS_CUT = 1 << 4, /* a TCP SYN whose options lie beyond the capture */
};

/* tcp_wscale of a SYN without the window-scale option (RFC 7323 2.2) */
enum { TCP_WSCALE_NONE = 0xff, TCP_WSCALE_MAX = 14 };

/* TCP flag bits as on the wire (and as flow logs OR them). */
enum { TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10 };

struct packet_inner {
	struct ip_addr src, dst;
	uint16_t sport, dport;  /* ports of TCP/UDP, echo id in both for ICMP queries */
	uint8_t proto;
};

struct packet {
	struct ip_addr src, dst;
	uint32_t ip_len;      /* length of the IP datagram on the wire, in bytes */
	uint16_t sport, dport;/* TCP/UDP ports, host order; 0 for other protocols */
	uint16_t icmp_id;     /* ICMP/ICMPv6 echo (and timestamp/info) identifier */
	uint8_t family;       /* FAMILY_V4 or FAMILY_V6 */
	uint8_t proto;        /* upper-layer protocol, after IPv6 extension headers */
	uint8_t tcp_flags;    /* the TCP flags byte (FIN..CWR) */
	uint8_t icmp_type, icmp_code;
	uint8_t flags;        /* PKT_F_* */
	uint32_t frag_id;     /* IPv4 identification / IPv6 fragment id, with
	                         PKT_F_FRAGMENT or PKT_F_FRAG_HEAD */
	struct packet_inner inner; /* valid with PKT_F_ICMP_ERR */
	/* TCP, with PKT_F_L4: what window tracking needs (SPEC §4) */
	uint32_t tcp_seq, tcp_ack;
	uint32_t tcp_len;     /* payload bytes (of this fragment, for PKT_F_FRAG_HEAD) */
	uint16_t tcp_win;     /* the window field, unscaled */
	uint8_t tcp_wscale;   /* a SYN's window-scale option, at most TCP_WSCALE_MAX
	                         (RFC 7323 2.3), or TCP_WSCALE_NONE */
};

/* Parses an IP packet starting at its IP header.  `caplen` bytes are
 * readable at buf; `wirelen` is the packet's length on the wire (equal to
 * caplen unless a capture or NFQUEUE copy range cut it).  Headers needed for
 * the verdict must lie within caplen.  On PACKET_OK every field is set. */
enum packet_status packet_parse_ip(const uint8_t *buf, size_t caplen, size_t wirelen,
				   struct packet *p);

/* For ICMP/ICMPv6 query types that expect a reply (echo, timestamp,
 * information, address mask requests) the reply's type; else -1. */
int icmp_query_reply_type(int family, uint8_t type);
/* True (1) for ICMP/ICMPv6 types that are replies to such queries. */
int icmp_is_query_reply(int family, uint8_t type);

#endif
