/* packet.c on hand-built packets: what each header yields, and every way a
 * header can fail to hold together. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "checkmain.h"
#include "vpcfw/packet.h"

#define B16(x) (uint8_t)((x) >> 8), (uint8_t)((x) & 0xff)
#define A4_1 10, 0, 1, 10
#define A4_2 10, 0, 2, 20
#define A6_1 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
#define A6_2 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2

/* IPv4 header: version/IHL byte, total length, flags+offset field, protocol */
#define V4X(vihl, tot, frag, proto) vihl, 0, B16(tot), 0, 1, B16(frag), 64, proto, 0, 0, A4_1, A4_2
#define V4H(tot, frag, proto) V4X(0x45, tot, frag, proto)
/* the same the other way round: the quoted packet of an ICMP error */
#define V4R(tot, frag, proto) 0x45, 0, B16(tot), 0, 1, B16(frag), 64, proto, 0, 0, A4_2, A4_1
#define V6H(plen, nh) 0x60, 0, 0, 0, B16(plen), nh, 64, A6_1, A6_2
#define V6R(plen, nh) 0x60, 0, 0, 0, B16(plen), nh, 64, A6_2, A6_1
#define EXT8(nh) nh, 0, 0, 0, 0, 0, 0, 0
#define FRAG6(nh, off, m) nh, 0, B16(((off) << 3) | (m)), 0, 0, 0, 1
/* authentication header, payload length 4: (4 + 2) * 4 = 24 bytes */
#define AH24(nh) nh, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
#define TCPH(sp, dp, doff, fl) B16(sp), B16(dp), 0, 0, 0, 1, 0, 0, 0, 0, (doff) << 4, fl, \
	0xff, 0xff, 0, 0, 0, 0
#define UDPH(sp, dp, len) B16(sp), B16(dp), B16(len), 0, 0
#define ICMPH(type, code, w1, w2) type, code, 0, 0, B16(w1), B16(w2)
#define ZERO8 0, 0, 0, 0, 0, 0, 0, 0

#define PKT(...) .buf = (const uint8_t[]){ __VA_ARGS__ }, \
	.len = sizeof((const uint8_t[]){ __VA_ARGS__ })

enum { L4 = PKT_F_L4, FRAG = PKT_F_FRAGMENT, ERR = PKT_F_ICMP_ERR, HEAD = PKT_F_FRAG_HEAD };

struct pcase {
	const char *name;
	const uint8_t *buf;
	size_t len;
	size_t cap, wire;       /* 0: len */
	enum packet_status st;
	/* checked with PACKET_OK */
	int family;
	uint8_t proto;
	uint32_t ip_len;
	uint16_t sport, dport;
	uint8_t tcp_flags, flags, icmp_type, icmp_code;
	uint16_t icmp_id;
	/* checked with PKT_F_ICMP_ERR: the quoted packet goes the other way */
	uint8_t iproto;
	uint16_t isport, idport;
};

static const struct pcase cases[] = {
	/* ---- IPv4 */
	{ "v4 tcp syn", PKT(V4H(40, 0, 6), TCPH(40001, 80, 5, 0x02)),
	  .family = 4, .proto = 6, .ip_len = 40, .sport = 40001, .dport = 80, .tcp_flags = 0x02,
	  .flags = L4 },
	{ "v4 tcp, ethernet padding after the datagram",
	  PKT(V4H(40, 0, 6), TCPH(40001, 80, 5, 0x12), ZERO8, ZERO8, 0, 0, 0, 0),
	  .family = 4, .proto = 6, .ip_len = 40, .sport = 40001, .dport = 80, .tcp_flags = 0x12,
	  .flags = L4 },
	{ "v4 tcp, all eight flags", PKT(V4H(40, 0, 6), TCPH(1, 2, 5, 0xff)),
	  .family = 4, .proto = 6, .ip_len = 40, .sport = 1, .dport = 2, .tcp_flags = 0xff,
	  .flags = L4 },
	{ "v4 with options (IHL 6)", PKT(V4X(0x46, 44, 0, 6), 1, 1, 1, 0, TCPH(1234, 443, 5, 0x10)),
	  .family = 4, .proto = 6, .ip_len = 44, .sport = 1234, .dport = 443, .tcp_flags = 0x10,
	  .flags = L4 },
	{ "v4 tcp with options (data offset 6)", PKT(V4H(44, 0, 6), TCPH(5, 6, 6, 0x02), 2, 4, 5, 0xb4),
	  .family = 4, .proto = 6, .ip_len = 44, .sport = 5, .dport = 6, .tcp_flags = 0x02,
	  .flags = L4 },
	{ "v4 udp", PKT(V4H(28, 0, 17), UDPH(5353, 53, 8)),
	  .family = 4, .proto = 17, .ip_len = 28, .sport = 5353, .dport = 53, .flags = L4 },
	{ "v4 udp length below the payload (trailing bytes)",
	  PKT(V4H(32, 0, 17), UDPH(1, 2, 8), 0, 0, 0, 0),
	  .family = 4, .proto = 17, .ip_len = 32, .sport = 1, .dport = 2, .flags = L4 },
	{ "v4 icmp echo request", PKT(V4H(28, 0, 1), ICMPH(8, 0, 0x1234, 1)),
	  .family = 4, .proto = 1, .ip_len = 28, .icmp_type = 8, .icmp_id = 0x1234, .flags = L4 },
	{ "v4 icmp echo reply", PKT(V4H(28, 0, 1), ICMPH(0, 0, 0x1234, 1)),
	  .family = 4, .proto = 1, .ip_len = 28, .icmp_type = 0, .icmp_id = 0x1234, .flags = L4 },
	{ "v4 icmp timestamp request", PKT(V4H(40, 0, 1), ICMPH(13, 0, 7, 1), ZERO8, 0, 0, 0, 0),
	  .family = 4, .proto = 1, .ip_len = 40, .icmp_type = 13, .icmp_id = 7, .flags = L4 },
	{ "v4 icmp port unreachable quoting udp",
	  PKT(V4H(56, 0, 1), ICMPH(3, 3, 0, 0), V4R(28, 0, 17), UDPH(5353, 53, 8)),
	  .family = 4, .proto = 1, .ip_len = 56, .icmp_type = 3, .icmp_code = 3, .flags = L4 | ERR,
	  .iproto = 17, .isport = 5353, .idport = 53 },
	{ "v4 icmp time exceeded quoting the first 8 bytes of tcp",
	  PKT(V4H(56, 0, 1), ICMPH(11, 0, 0, 0), V4R(60, 0, 6), B16(40001), B16(80), 0, 0, 0, 1),
	  .family = 4, .proto = 1, .ip_len = 56, .icmp_type = 11, .flags = L4 | ERR,
	  .iproto = 6, .isport = 40001, .idport = 80 },
	{ "v4 icmp fragmentation needed quoting an echo request: id as both ports",
	  PKT(V4H(56, 0, 1), ICMPH(3, 4, 0, 1400), V4R(84, 0, 1), ICMPH(8, 0, 0x4242, 1)),
	  .family = 4, .proto = 1, .ip_len = 56, .icmp_type = 3, .icmp_code = 4, .flags = L4 | ERR,
	  .iproto = 1, .isport = 0x4242, .idport = 0x4242 },
	{ "v4 icmp error with a short quote: no inner, not malformed",
	  PKT(V4H(48, 0, 1), ICMPH(3, 1, 0, 0), V4R(28, 0, 17)),
	  .family = 4, .proto = 1, .ip_len = 48, .icmp_type = 3, .icmp_code = 1, .flags = L4 },
	{ "v4 icmp error whose quote the capture cut: no inner",
	  PKT(V4H(56, 0, 1), ICMPH(3, 3, 0, 0), V4R(28, 0, 17), UDPH(5353, 53, 8)), .cap = 50,
	  .family = 4, .proto = 1, .ip_len = 56, .icmp_type = 3, .icmp_code = 3, .flags = L4 },
	{ "v4 icmp error quoting a non-first fragment: no inner",
	  PKT(V4H(56, 0, 1), ICMPH(3, 3, 0, 0), V4R(28, 100, 17), UDPH(5353, 53, 8)),
	  .family = 4, .proto = 1, .ip_len = 56, .icmp_type = 3, .icmp_code = 3, .flags = L4 },
	{ "v4 first fragment (MF): L4 parsed, udp length of the whole datagram",
	  PKT(V4H(28, 0x2000, 17), UDPH(1, 53, 1000)),
	  .family = 4, .proto = 17, .ip_len = 28, .sport = 1, .dport = 53, .flags = L4 | HEAD },
	{ "v4 first fragment holding only the fixed tcp header (data offset 10)",
	  PKT(V4H(44, 0x2000, 6), TCPH(12345, 80, 10, 0x02), 2, 4, 5, 0xb4),
	  .family = 4, .proto = 6, .ip_len = 44, .sport = 12345, .dport = 80, .tcp_flags = 0x02,
	  .flags = L4 | HEAD },
	{ "v4 non-first fragment, capture cut after the IP header",
	  PKT(V4H(1500, 185, 17)), .wire = 1500,
	  .family = 4, .proto = 17, .ip_len = 1500, .flags = FRAG },
	{ "v4 middle fragment (MF and offset)", PKT(V4H(28, 0x2000 | 3, 17), ZERO8),
	  .family = 4, .proto = 17, .ip_len = 28, .flags = FRAG },
	{ "v4 gre: no L4", PKT(V4H(24, 0, 47), 0, 0, 0x08, 0),
	  .family = 4, .proto = 47, .ip_len = 24 },
	{ "v4 carrying icmpv6: just a protocol number", PKT(V4H(28, 0, 58), ICMPH(128, 0, 1, 1)),
	  .family = 4, .proto = 58, .ip_len = 28 },
	{ "v4 capture cut below wirelen, headers inside", PKT(V4H(1500, 0, 6), TCPH(1, 80, 5, 0x10)),
	  .wire = 1500,
	  .family = 4, .proto = 6, .ip_len = 1500, .sport = 1, .dport = 80, .tcp_flags = 0x10,
	  .flags = L4 },

	{ "v4 truncated header (19 bytes)", PKT(V4H(40, 0, 6), TCPH(1, 80, 5, 2)), .cap = 19,
	  .wire = 40, .st = PACKET_MALFORMED },
	{ "v4 IHL 4", PKT(V4X(0x44, 40, 0, 6), TCPH(1, 80, 5, 2)), .st = PACKET_MALFORMED },
	{ "v4 IHL 15 beyond the capture", PKT(V4X(0x4f, 40, 0, 6), TCPH(1, 80, 5, 2)),
	  .st = PACKET_MALFORMED },
	{ "v4 total length below IHL*4", PKT(V4H(16, 0, 6), TCPH(1, 80, 5, 2)),
	  .st = PACKET_MALFORMED },
	{ "v4 total length above wirelen", PKT(V4H(41, 0, 6), TCPH(1, 80, 5, 2)),
	  .st = PACKET_MALFORMED },
	{ "v4 tcp data offset 4", PKT(V4H(40, 0, 6), TCPH(1, 80, 4, 2)), .st = PACKET_MALFORMED },
	{ "v4 tcp data offset beyond the datagram", PKT(V4H(40, 0, 6), TCPH(1, 80, 6, 2)),
	  .st = PACKET_MALFORMED },
	{ "v4 truncated tcp", PKT(V4H(30, 0, 6), 0, 1, 0, 80, 0, 0, 0, 1, 0, 0),
	  .st = PACKET_MALFORMED },
	{ "v4 tcp header captured but beyond the total length",
	  PKT(V4H(30, 0, 6), TCPH(1, 80, 5, 2)), .st = PACKET_MALFORMED },
	{ "v4 udp length 7", PKT(V4H(28, 0, 17), UDPH(1, 2, 7)), .st = PACKET_MALFORMED },
	{ "v4 udp length above the datagram", PKT(V4H(28, 0, 17), UDPH(1, 2, 9)),
	  .st = PACKET_MALFORMED },
	{ "v4 icmp of 4 bytes", PKT(V4H(24, 0, 1), 8, 0, 0, 0), .st = PACKET_MALFORMED },
	{ "v4 tcp fragment at offset 8 bytes (RFC 1858 overlap)", PKT(V4H(28, 1, 6), ZERO8),
	  .st = PACKET_MALFORMED },
	{ "v4 first fragment without the fixed tcp header", PKT(V4H(36, 0x2000, 6), ZERO8, ZERO8),
	  .st = PACKET_MALFORMED },
	{ "v4 capture cut inside the tcp header", PKT(V4H(1500, 0, 6), TCPH(1, 80, 5, 0x10)),
	  .cap = 30, .wire = 1500, .st = PACKET_MALFORMED },
	{ "version 5", PKT(0x55, 0, 0, 40, ZERO8, ZERO8, 0, 0, 0, 0), .st = PACKET_NOT_IP },
	{ "version 0", PKT(0x05, 0, 0, 40, ZERO8, ZERO8, 0, 0, 0, 0), .st = PACKET_NOT_IP },

	/* ---- IPv6 */
	/* RFC 4291 2.5.5.2: IPv4-mapped addresses are not for the wire; kept,
	 * an IPv6 packet would pass for IPv4 (exempt 169.254/16, IPv4 groups) */
	{ "v6 with an IPv4-mapped source",
	  PKT(0x60, 0, 0, 0, B16(20), 6, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 169, 254, 1, 1,
	      A6_2, TCPH(1, 22, 5, 0x02)),
	  .st = PACKET_MALFORMED },
	{ "v6 with an IPv4-mapped destination",
	  PKT(0x60, 0, 0, 0, B16(20), 6, 64, A6_1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 2, 2,
	      TCPH(1, 22, 5, 0x02)),
	  .st = PACKET_MALFORMED },
	{ "v6 tcp", PKT(V6H(20, 6), TCPH(40001, 443, 5, 0x02)),
	  .family = 6, .proto = 6, .ip_len = 60, .sport = 40001, .dport = 443, .tcp_flags = 0x02,
	  .flags = L4 },
	{ "v6 hop-by-hop, routing, atomic fragment, destination options, udp",
	  PKT(V6H(40, 0), EXT8(43), EXT8(44), FRAG6(60, 0, 0), EXT8(17), UDPH(5353, 53, 8)),
	  .family = 6, .proto = 17, .ip_len = 80, .sport = 5353, .dport = 53, .flags = L4 },
	{ "v6 routing header of 24 bytes",
	  PKT(V6H(44, 43), 6, 2, 0, 0, ZERO8, ZERO8, 0, 0, 0, 0, TCPH(9, 22, 5, 0x10)),
	  .family = 6, .proto = 6, .ip_len = 84, .sport = 9, .dport = 22, .tcp_flags = 0x10,
	  .flags = L4 },
	{ "v6 authentication header (length in 4-byte units + 2)",
	  PKT(V6H(44, 51), AH24(6), TCPH(1, 22, 5, 0x10)),
	  .family = 6, .proto = 6, .ip_len = 84, .sport = 1, .dport = 22, .tcp_flags = 0x10,
	  .flags = L4 },
	{ "v6 mobility, HIP and shim6 headers are walked",
	  PKT(V6H(32, 135), EXT8(139), EXT8(140), EXT8(17), UDPH(7, 8, 8)),
	  .family = 6, .proto = 17, .ip_len = 72, .sport = 7, .dport = 8, .flags = L4 },
	{ "v6 first fragment: L4 parsed", PKT(V6H(16, 44), FRAG6(17, 0, 1), UDPH(1, 53, 1200)),
	  .family = 6, .proto = 17, .ip_len = 56, .sport = 1, .dport = 53, .flags = L4 | HEAD },
	{ "v6 non-first fragment", PKT(V6H(16, 44), FRAG6(17, 100, 0), ZERO8),
	  .family = 6, .proto = 17, .ip_len = 56, .flags = FRAG },
	{ "v6 non-first fragment after hop-by-hop", PKT(V6H(24, 0), EXT8(44), FRAG6(6, 1, 1), ZERO8),
	  .family = 6, .proto = 6, .ip_len = 64, .flags = FRAG },
	{ "v6 no next header, empty payload", PKT(V6H(0, 59)),
	  .family = 6, .proto = 59, .ip_len = 40 },
	{ "v6 no next header after destination options", PKT(V6H(8, 60), EXT8(59)),
	  .family = 6, .proto = 59, .ip_len = 48 },
	{ "v6 esp: no L4", PKT(V6H(8, 50), ZERO8), .family = 6, .proto = 50, .ip_len = 48 },
	{ "v6 16 extension headers",
	  PKT(V6H(136, 60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60),
	      EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60),
	      EXT8(17), UDPH(1, 2, 8)),
	  .family = 6, .proto = 17, .ip_len = 176, .sport = 1, .dport = 2, .flags = L4 },
	{ "v6 icmpv6 echo request", PKT(V6H(8, 58), ICMPH(128, 0, 0x77, 1)),
	  .family = 6, .proto = 58, .ip_len = 48, .icmp_type = 128, .icmp_id = 0x77, .flags = L4 },
	{ "v6 icmpv6 echo reply", PKT(V6H(8, 58), ICMPH(129, 0, 0x77, 1)),
	  .family = 6, .proto = 58, .ip_len = 48, .icmp_type = 129, .icmp_id = 0x77, .flags = L4 },
	{ "v6 icmpv6 neighbour solicitation: no id", PKT(V6H(24, 58), 135, 0, 0, 0, 0, 0, 0, 0, A6_2),
	  .family = 6, .proto = 58, .ip_len = 64, .icmp_type = 135, .flags = L4 },
	{ "v6 icmpv6 destination unreachable quoting udp",
	  PKT(V6H(56, 58), ICMPH(1, 4, 0, 0), V6R(8, 17), UDPH(53, 5353, 8)),
	  .family = 6, .proto = 58, .ip_len = 96, .icmp_type = 1, .icmp_code = 4, .flags = L4 | ERR,
	  .iproto = 17, .isport = 53, .idport = 5353 },
	{ "v6 icmpv6 destination unreachable quoting dest-opts + udp",
	  PKT(V6H(64, 58), ICMPH(1, 4, 0, 0), V6R(16, 60), EXT8(17), UDPH(53, 5353, 8)),
	  .family = 6, .proto = 58, .ip_len = 104, .icmp_type = 1, .icmp_code = 4, .flags = L4 | ERR,
	  .iproto = 17, .isport = 53, .idport = 5353 },
	{ "v6 icmpv6 packet too big quoting tcp",
	  PKT(V6H(56, 58), ICMPH(2, 0, 0, 1280), V6R(1400, 6), B16(443), B16(40001), 0, 0, 0, 1),
	  .family = 6, .proto = 58, .ip_len = 96, .icmp_type = 2, .flags = L4 | ERR,
	  .iproto = 6, .isport = 443, .idport = 40001 },
	{ "v6 icmpv6 error quoting an echo request",
	  PKT(V6H(56, 58), ICMPH(3, 0, 0, 0), V6R(8, 58), ICMPH(128, 0, 0x99, 3)),
	  .family = 6, .proto = 58, .ip_len = 96, .icmp_type = 3, .flags = L4 | ERR,
	  .iproto = 58, .isport = 0x99, .idport = 0x99 },
	{ "v6 icmpv6 error with only the quoted IPv6 header",
	  PKT(V6H(48, 58), ICMPH(1, 0, 0, 0), V6R(8, 17)),
	  .family = 6, .proto = 58, .ip_len = 88, .icmp_type = 1, .flags = L4 },
	{ "v6 icmpv6 error whose quoted header chain is incomplete",
	  PKT(V6H(56, 58), ICMPH(4, 1, 0, 0), V6R(16, 60), EXT8(17)),
	  .family = 6, .proto = 58, .ip_len = 96, .icmp_type = 4, .icmp_code = 1, .flags = L4 },
	{ "v6 carrying icmp (v4): just a protocol number", PKT(V6H(8, 1), ICMPH(8, 0, 1, 1)),
	  .family = 6, .proto = 1, .ip_len = 48 },
	{ "v6 capture cut below wirelen, headers inside", PKT(V6H(1440, 6), TCPH(1, 80, 5, 0x10)),
	  .wire = 1480,
	  .family = 6, .proto = 6, .ip_len = 1480, .sport = 1, .dport = 80, .tcp_flags = 0x10,
	  .flags = L4 },

	{ "v6 truncated header (39 bytes)", PKT(V6H(20, 6), TCPH(1, 80, 5, 2)), .cap = 39,
	  .wire = 60, .st = PACKET_MALFORMED },
	{ "v6 payload length above wirelen", PKT(V6H(21, 6), TCPH(1, 80, 5, 2)),
	  .st = PACKET_MALFORMED },
	{ "v6 17 extension headers",
	  PKT(V6H(144, 60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60),
	      EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60), EXT8(60),
	      EXT8(60), EXT8(17), UDPH(1, 2, 8)),
	  .st = PACKET_MALFORMED },
	{ "v6 extension header beyond the payload length",
	  PKT(V6H(8, 60), 17, 1, 0, 0, 0, 0, 0, 0, UDPH(1, 2, 8)), .st = PACKET_MALFORMED },
	{ "v6 fragment header with payload length 0", PKT(V6H(0, 44), FRAG6(17, 0, 0)),
	  .st = PACKET_MALFORMED },
	{ "v6 payload length 0 with a jumbo payload option",
	  PKT(V6H(0, 0), 17, 0, 0xc2, 4, 0, 0, 0x01, 0, UDPH(1, 2, 0)), .st = PACKET_MALFORMED },
	{ "v6 tcp data offset 4", PKT(V6H(20, 6), TCPH(1, 80, 4, 2)), .st = PACKET_MALFORMED },
	{ "v6 udp length above the payload", PKT(V6H(8, 17), UDPH(1, 2, 16)),
	  .st = PACKET_MALFORMED },
	{ "v6 icmpv6 of 4 bytes", PKT(V6H(4, 58), 128, 0, 0, 0), .st = PACKET_MALFORMED },
	{ "v6 capture cut after hop-by-hop", PKT(V6H(1448, 0), EXT8(6), TCPH(1, 80, 5, 2)),
	  .cap = 50, .wire = 1488, .st = PACKET_MALFORMED },
};

static const uint8_t v4_src[4] = { A4_1 }, v4_dst[4] = { A4_2 };
static const uint8_t v6_src[16] = { A6_1 }, v6_dst[16] = { A6_2 };

static struct ip_addr addr_of(int family, const uint8_t *b)
{
	if (family == FAMILY_V4)
		return addr_from_v4((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | b[2] << 8 | b[3]);
	return addr_from_v6(b);
}

/* The bytes in a heap block of exactly caplen bytes: a read past it is an
 * AddressSanitizer / valgrind error. */
static enum packet_status parse_exact(const uint8_t *src, size_t cap, size_t wire,
				      struct packet *p)
{
	uint8_t *b = malloc(cap ? cap : 1);
	ck_assert_ptr_nonnull(b);
	memcpy(b, src, cap);
	enum packet_status st = packet_parse_ip(b, cap, wire, p);
	free(b);
	return st;
}

/* What window tracking reads (SPEC §4): sequence and acknowledgement
 * numbers, the window, the payload length and a SYN's window-scale option
 * (RFC 7323 2.2, at most 14: 2.3) among the others (MSS, SACK-permitted,
 * timestamps, NOP), which are skipped. */
#define TCPO(fl, ws) B16(40001), B16(443), 1, 2, 3, 4, 5, 6, 7, 8, 10 << 4, fl, 0x12, 0x34, 0, 0, \
	0, 0, 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, ws

START_TEST(test_tcp_window_fields)
{
	static const uint8_t syn[] = { V4H(60, 0, 6), TCPO(0x02, 7) };
	struct packet p;
	ck_assert_int_eq(parse_exact(syn, sizeof(syn), sizeof(syn), &p), PACKET_OK);
	ck_assert_uint_eq(p.tcp_seq, 0x01020304);
	ck_assert_uint_eq(p.tcp_ack, 0x05060708);
	ck_assert_uint_eq(p.tcp_win, 0x1234);
	ck_assert_uint_eq(p.tcp_len, 0);
	ck_assert_uint_eq(p.tcp_wscale, 7);
	ck_assert_uint_eq(p.flags, PKT_F_L4);

	static const uint8_t big[] = { V4H(60, 0, 6), TCPO(0x12, 20) };
	ck_assert_int_eq(parse_exact(big, sizeof(big), sizeof(big), &p), PACKET_OK);
	ck_assert_uint_eq(p.tcp_wscale, TCP_WSCALE_MAX);

	/* not a SYN: the option means nothing (RFC 7323 2.2) */
	static const uint8_t ack[] = { V4H(60, 0, 6), TCPO(0x10, 7) };
	ck_assert_int_eq(parse_exact(ack, sizeof(ack), sizeof(ack), &p), PACKET_OK);
	ck_assert_uint_eq(p.tcp_wscale, TCP_WSCALE_NONE);

	/* payload: 100 bytes on the wire, whatever the capture holds */
	uint8_t data[60 + 100] = { V4H(160, 0, 6), TCPO(0x18, 7) };
	ck_assert_int_eq(parse_exact(data, 60, sizeof(data), &p), PACKET_OK);
	ck_assert_uint_eq(p.tcp_len, 100);

	/* the capture ends inside the options: the scale is unknown */
	ck_assert_int_eq(parse_exact(syn, 20 + 20 + 5, sizeof(syn), &p), PACKET_OK);
	ck_assert_uint_eq(p.flags, PKT_F_L4 | PKT_F_TCP_OPTS_CUT);
	ck_assert_uint_eq(p.tcp_wscale, TCP_WSCALE_NONE);
	/* ... but not when the option was read before the cut */
	ck_assert_int_eq(parse_exact(syn, sizeof(syn), sizeof(syn), &p), PACKET_OK);
	ck_assert_uint_eq(p.flags & PKT_F_TCP_OPTS_CUT, 0);
}
END_TEST

START_TEST(test_parse)
{
	const struct pcase *c = &cases[_i];
	size_t cap = c->cap ? c->cap : c->len, wire = c->wire ? c->wire : c->len;
	struct packet p;

	ck_assert_msg(cap <= c->len, "%s: bad case", c->name);
	enum packet_status st = parse_exact(c->buf, cap, wire, &p);
	ck_assert_msg(st == c->st, "%s: status %d, expected %d", c->name, st, c->st);
	if (st != PACKET_OK)
		return;
	ck_assert_msg(p.family == c->family, "%s: family %d", c->name, p.family);
	ck_assert_msg(p.proto == c->proto, "%s: proto %u", c->name, p.proto);
	ck_assert_msg(p.ip_len == c->ip_len, "%s: ip_len %u", c->name, p.ip_len);
	ck_assert_msg(p.flags == c->flags, "%s: flags %#x, expected %#x", c->name, p.flags, c->flags);
	ck_assert_msg(p.sport == c->sport && p.dport == c->dport, "%s: ports %u %u", c->name,
		      p.sport, p.dport);
	ck_assert_msg(p.tcp_flags == c->tcp_flags, "%s: tcp flags %#x", c->name, p.tcp_flags);
	ck_assert_msg(p.icmp_type == c->icmp_type && p.icmp_code == c->icmp_code,
		      "%s: icmp %u/%u", c->name, p.icmp_type, p.icmp_code);
	ck_assert_msg(p.icmp_id == c->icmp_id, "%s: icmp id %#x", c->name, p.icmp_id);

	struct ip_addr s = addr_of(p.family, p.family == 4 ? v4_src : v6_src);
	struct ip_addr d = addr_of(p.family, p.family == 4 ? v4_dst : v6_dst);
	ck_assert_msg(addr_eq(&p.src, &s) && addr_eq(&p.dst, &d), "%s: addresses", c->name);
	if (p.flags & PKT_F_ICMP_ERR) {
		ck_assert_msg(p.inner.proto == c->iproto, "%s: inner proto %u", c->name,
			      p.inner.proto);
		ck_assert_msg(p.inner.sport == c->isport && p.inner.dport == c->idport,
			      "%s: inner ports %u %u", c->name, p.inner.sport, p.inner.dport);
		ck_assert_msg(addr_eq(&p.inner.src, &d) && addr_eq(&p.inner.dst, &s),
			      "%s: inner addresses", c->name);
	}
}
END_TEST

/* Every shorter capture of every case: never a read past the capture (the
 * sanitizers and valgrind watch), and never OK with headers it did not see. */
START_TEST(test_truncations)
{
	const struct pcase *c = &cases[_i];
	size_t wire = c->wire ? c->wire : c->len;
	size_t full = c->cap ? c->cap : c->len;
	struct packet p;

	for (size_t cap = 0; cap < full; cap++) {
		enum packet_status st = parse_exact(c->buf, cap, wire, &p);
		if (st == PACKET_OK && (p.flags & PKT_F_L4) && c->st == PACKET_OK)
			ck_assert_msg(p.sport == c->sport && p.dport == c->dport &&
				      p.icmp_type == c->icmp_type,
				      "%s cut at %zu: L4 fields differ", c->name, cap);
		if (st == PACKET_OK && c->st == PACKET_OK && (c->flags & PKT_F_L4))
			ck_assert_msg(p.flags & PKT_F_L4, "%s cut at %zu: OK without L4", c->name,
				      cap);
	}
}
END_TEST

START_TEST(test_odd_lengths)
{
	/* A caller passing wirelen < caplen: the datagram cannot be longer
	 * than what the wire carried.  Nothing at all captured: malformed
	 * (the link layer said IP). */
	static const uint8_t b[] = { V4H(40, 0, 6), TCPH(1, 80, 5, 2) };
	struct packet p;
	ck_assert_int_eq(packet_parse_ip(b, sizeof(b), 39, &p), PACKET_MALFORMED);
	ck_assert_int_eq(packet_parse_ip(b, sizeof(b), 40, &p), PACKET_OK);
	ck_assert_int_eq(parse_exact(b, 0, 40, &p), PACKET_MALFORMED);
}
END_TEST

static const struct {
	int family;
	uint8_t type;
	int reply;      /* icmp_query_reply_type */
	int is_reply;   /* icmp_is_query_reply */
} icmp_cases[] = {
	{ 4, 8, 0, 0 }, { 4, 0, -1, 1 },
	{ 4, 13, 14, 0 }, { 4, 14, -1, 1 },
	{ 4, 15, 16, 0 }, { 4, 16, -1, 1 },
	{ 4, 17, 18, 0 }, { 4, 18, -1, 1 },
	{ 4, 3, -1, 0 }, { 4, 11, -1, 0 }, { 4, 128, -1, 0 }, { 4, 129, -1, 0 },
	{ 6, 128, 129, 0 }, { 6, 129, -1, 1 },
	{ 6, 139, 140, 0 }, { 6, 140, -1, 1 },
	{ 6, 8, -1, 0 }, { 6, 0, -1, 0 }, { 6, 1, -1, 0 }, { 6, 135, -1, 0 }, { 6, 136, -1, 0 },
};

START_TEST(test_icmp_query_types)
{
	ck_assert_int_eq(icmp_query_reply_type(icmp_cases[_i].family, icmp_cases[_i].type),
			 icmp_cases[_i].reply);
	ck_assert_int_eq(icmp_is_query_reply(icmp_cases[_i].family, icmp_cases[_i].type),
			 icmp_cases[_i].is_reply);
}
END_TEST

static Suite *packet_suite(void)
{
	Suite *s = suite_create("packet");
	TCase *tc = tcase_create("parse");
	int n = (int)(sizeof(cases) / sizeof(cases[0]));

	tcase_add_loop_test(tc, test_parse, 0, n);
	tcase_add_loop_test(tc, test_truncations, 0, n);
	tcase_add_test(tc, test_odd_lengths);
	tcase_add_test(tc, test_tcp_window_fields);
	tcase_add_loop_test(tc, test_icmp_query_types, 0,
			    (int)(sizeof(icmp_cases) / sizeof(icmp_cases[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(packet_suite());
}
