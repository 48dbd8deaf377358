/* Capture files (pcap, pcapng) read record by record into the lane's
 * packets (lane.h): libpcap's framing and the link layers vpcfw decodes
 * (Ethernet with up to two VLAN tags, Linux SLL and SLL2, BSD loopback, raw
 * IPv4/IPv6).  Offline replay (replay.c) and vpcfwctl diff (diff.c) read
 * captures through it; it decides nothing. */
#ifndef VPCFW_CAPTURE_H
#define VPCFW_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "vpcfw/lane.h"

struct capture;

/* Opens a capture file with nanosecond timestamps; NULL with libpcap's
 * reason in err. */
struct capture *capture_open(const char *path, char *err, size_t errlen);
void capture_close(struct capture *c);

/* The file's link type (LINKTYPE_* number as libpcap gives it), its name
 * (NULL: none known), and whether vpcfw decodes it. */
int capture_link(const struct capture *c);
const char *capture_link_name(const struct capture *c);
bool capture_link_supported(const struct capture *c);

/* The next record: 1 and *in (its bytes valid until the next call; ts_ns
 * the record's own time, which may run backwards; link and ip_off from its
 * link header), 0 at the end of the file, -1 when the file is damaged
 * (capture_error says how; the records before were given). */
int capture_next(struct capture *c, struct lane_packet *in);
const char *capture_error(struct capture *c);

/* Whether the file starts as a pcap or pcapng file does. */
bool capture_is_capture(const char *path);

#endif
