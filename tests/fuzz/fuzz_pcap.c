/* libFuzzer target: a capture file as vpcfwd --replay reads it (issue #9,
 * "fuzzing where input enters"): the bytes become a file (memfd) that
 * replay_run opens by its /proc path, so libpcap reads the pcap/pcapng
 * framing and capture.c's link decoding (Ethernet with VLAN tags, Linux
 * SLL/SLL2, BSD loopback, raw IP) hands each record to the packet parser
 * and the pipeline of a small compiled policy, writing verdicts to
 * /dev/null. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vpcfw/diag.h"
#include "vpcfw/load.h"
#include "vpcfw/policy.h"
#include "vpcfw/replay.h"

#include "small_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct policy *pol;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];

	if (!pol) {
		struct diag d;
		diag_init(&d);
		pol = policy_load_buffer("fuzz-pcap.json", CONFIG, sizeof(CONFIG) - 1, &d);
		diag_free(&d);
		if (!pol)
			abort();
		/* a table of the size the file could fill, not the default's
		 * 262144 flows allocated for every input */
		pol->conntrack_max = 256;
	}
	int fd = memfd_create("fuzz-pcap", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	for (size_t off = 0; off < size;) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct replay_options o = { .pcap_path = path, .verdicts_path = "/dev/null" };
	/* an unreadable file is an answer too (exit status 1 from vpcfwd) */
	(void)replay_run(pol, &o);
	close(fd);
	return 0;
}
