/* libFuzzer target: packet_parse_ip on arbitrary bytes, whole and as a
 * capture cut short of the wire length (the NFQUEUE copy-range case). */
#include <stddef.h>
#include <stdint.h>

#include "vpcfw/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct packet p;

	packet_parse_ip(data, size, size, &p);
	packet_parse_ip(data, size / 2, size + 100, &p);
	if (size > 0)
		packet_parse_ip(data, size - 1, size + 100, &p);
	return 0;
}
