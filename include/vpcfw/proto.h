/* IP protocol numbers (IANA "Assigned Internet Protocol Numbers") that the
 * engine treats apart: a packet's upper-layer protocol (packet.h), a flow's
 * (conntrack.h), a rule's when it names one (model.h). */
#ifndef VPCFW_PROTO_H
#define VPCFW_PROTO_H

enum { PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_ICMPV6 = 58 };

#endif
