/* The bytes mirroring writes: VXLAN payloads, NFLOG records, and libpcap
 * files rotated by size. */
#include "vpcfw/mirror.h"
#include "vpcfw/safefile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	ETH_HLEN = 14,
	VXLAN_HLEN = 8,
	VXLAN_FLAG_I = 0x08,            /* RFC 7348: the VNI is valid */
	NFULA_PAYLOAD = 9,
	NFULA_PREFIX = 10,
	LINUX_AF_INET = 2,
	LINUX_AF_INET6 = 10,
};

static void put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

size_t mirror_vxlan_encap(uint8_t *out, size_t outlen, uint32_t vni, const uint8_t dst_mac[6],
			  const uint8_t src_mac[6], int family, const uint8_t *ip, size_t iplen,
			  size_t limit)
{
	uint8_t hdr[VXLAN_HLEN + ETH_HLEN] = { VXLAN_FLAG_I };
	size_t frame = ETH_HLEN + iplen, n;

	hdr[4] = (uint8_t)(vni >> 16);
	hdr[5] = (uint8_t)(vni >> 8);
	hdr[6] = (uint8_t)vni;
	memcpy(hdr + VXLAN_HLEN, dst_mac, 6);
	memcpy(hdr + VXLAN_HLEN + 6, src_mac, 6);
	put16(hdr + VXLAN_HLEN + 12, family == FAMILY_V6 ? 0x86dd : 0x0800);
	/* PacketLength counts the bytes after the VXLAN header */
	if (limit && frame > limit)
		frame = limit;
	n = VXLAN_HLEN + frame;
	if (n > outlen)
		n = outlen;
	size_t h = n < sizeof(hdr) ? n : sizeof(hdr);
	memcpy(out, hdr, h);
	if (n > h)
		memcpy(out + h, ip, n - h);
	return n;
}

uint16_t mirror_flow_port(const struct packet *p)
{
	struct ip_addr a = p->src, b = p->dst;
	uint16_t pa = p->sport, pb = p->dport;
	int c = addr_cmp(&a, &b);

	/* both directions of a flow hash alike: one receiver sees the flow */
	if (c > 0 || (c == 0 && pa > pb)) {
		a = p->dst;
		b = p->src;
		pa = p->dport;
		pb = p->sport;
	}
	uint64_t h = addr_hash(&a) ^ (addr_hash(&b) * 0x9E3779B97F4A7C15ULL);
	h ^= ((uint64_t)pa << 24 | (uint64_t)pb << 8 | p->proto) * 0xff51afd7ed558ccdULL;
	h ^= h >> 29;
	return (uint16_t)(49152 + h % 16384);
}

/* A TLV of the NFLOG pseudo-header: length and type in host byte order
 * (pcap/nflog.h), the value padded to 4 bytes. */
static size_t put_tlv(uint8_t *out, size_t outlen, size_t off, uint16_t type, const void *val,
		      size_t len)
{
	uint16_t tl[2];
	size_t room, pad;

	if (off + 4 > outlen)
		return off;
	room = outlen - off - 4;
	if (len > room)
		len = room;
	if (len > 0xffff - 4)
		len = 0xffff - 4;
	tl[0] = (uint16_t)(4 + len);
	tl[1] = type;
	memcpy(out + off, tl, 4);
	memcpy(out + off + 4, val, len);
	off += 4 + len;
	pad = (4 - len % 4) % 4;
	if (pad > outlen - off)
		pad = outlen - off;
	memset(out + off, 0, pad);
	return off + pad;
}

size_t mirror_nflog_record(uint8_t *out, size_t outlen, int family, const char *prefix,
			   const uint8_t *ip, size_t iplen)
{
	size_t off = 4;

	if (outlen < 4)
		return 0;
	out[0] = family == FAMILY_V4 ? LINUX_AF_INET : family == FAMILY_V6 ? LINUX_AF_INET6 : 0;
	out[1] = 0;             /* version */
	out[2] = out[3] = 0;    /* resource id (the NFLOG group): none */
	off = put_tlv(out, outlen, off, NFULA_PREFIX, prefix, strlen(prefix) + 1);
	off = put_tlv(out, outlen, off, NFULA_PAYLOAD, ip, iplen);
	return off;
}

/* ------------------------------------------------------------ pcap files */

struct mirror_pcap {
	int dirfd;              /* PATH's directory, opened once */
	char *name;             /* PATH's last component */
	char *path;             /* for messages */
	FILE *f;
	uint32_t linktype, snaplen;
	uint64_t rotate, bytes, rotations;
	bool failed;            /* a write failed since the last flush */
};

struct pcap_file_hdr {
	uint32_t magic;
	uint16_t major, minor;
	int32_t thiszone;
	uint32_t sigfigs, snaplen, linktype;
};

struct pcap_rec_hdr {
	uint32_t sec, nsec, caplen, len;
};

#define PCAP_MAGIC_NSEC 0xa1b23c4d

/* NAME.(KEEP-1) -> NAME.KEEP, ..., NAME -> NAME.1, in the directory: a
 * rename moves a planted link itself, never what it points to. */
static void shift_old(struct mirror_pcap *f)
{
	size_t n = strlen(f->name) + 16;
	char *from = malloc(n), *to = malloc(n);

	if (!from || !to) {
		free(from);
		free(to);
		return;
	}
	for (int i = MIRROR_KEEP_FILES - 1; i >= 1; i--) {
		snprintf(from, n, "%s.%d", f->name, i);
		snprintf(to, n, "%s.%d", f->name, i + 1);
		renameat(f->dirfd, from, f->dirfd, to);
	}
	snprintf(to, n, "%s.1", f->name);
	renameat(f->dirfd, f->name, f->dirfd, to);
	free(from);
	free(to);
}

/* A new PATH that holds a valid header from the moment it exists: the
 * header goes into an exclusive temporary, renamed to PATH only if nothing
 * (a planted link included) took the name meanwhile. */
static bool start_file(struct mirror_pcap *f)
{
	struct pcap_file_hdr h = {
		.magic = PCAP_MAGIC_NSEC, .major = 2, .minor = 4,
		.snaplen = f->snaplen, .linktype = f->linktype,
	};
	char tmp[300];
	struct stat st;

	if (fstatat(f->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
			errno = ELOOP; /* not ours: refused, left alone */
			return false;
		}
		if (st.st_size > 0)
			shift_old(f); /* an earlier capture is kept, not overwritten */
	}
	int fd = safe_create_temp(f->dirfd, f->name, SAFE_FILE_MODE, tmp, sizeof(tmp));
	if (fd < 0)
		return false;
	if (!safe_write_all(fd, &h, sizeof(h)) || safe_rename(f->dirfd, tmp, f->name, false) != 0 ||
	    !(f->f = fdopen(fd, "w"))) {
		int e = errno;
		close(fd);
		unlinkat(f->dirfd, tmp, 0);
		errno = e;
		return false;
	}
	f->bytes = sizeof(h);
	return true;
}

static void pcap_free(struct mirror_pcap *f)
{
	if (f->dirfd >= 0)
		close(f->dirfd);
	free(f->path);
	free(f->name);
	free(f);
}

struct mirror_pcap *mirror_pcap_open(const char *path, uint32_t linktype, uint32_t snaplen,
				     uint64_t rotate_bytes, char *err, size_t errlen)
{
	struct mirror_pcap *f = calloc(1, sizeof(*f));
	const char *name = NULL;

	if (!f) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	f->dirfd = safe_parent_open(path, &name);
	if (f->dirfd < 0 || !(f->path = strdup(path)) || !(f->name = strdup(name))) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		pcap_free(f);
		return NULL;
	}
	f->linktype = linktype;
	f->snaplen = snaplen;
	f->rotate = rotate_bytes ? rotate_bytes : MIRROR_DEFAULT_ROTATE;
	if (!start_file(f)) {
		snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
			 errno == ELOOP ? " (a symbolic link or other non-file is there: refused)"
					: "");
		pcap_free(f);
		return NULL;
	}
	return f;
}

bool mirror_pcap_reopen(struct mirror_pcap *f)
{
	bool ok = mirror_pcap_flush(f);

	if (f->f && fclose(f->f) != 0)
		ok = false;
	f->f = NULL;
	if (!start_file(f))
		return false; /* tried again at the next record */
	return ok;
}

bool mirror_pcap_write(struct mirror_pcap *f, uint64_t ts_ns, const uint8_t *data,
		       size_t caplen, size_t wirelen)
{
	struct pcap_rec_hdr r;

	if (caplen > f->snaplen)
		caplen = f->snaplen;
	if (wirelen < caplen)
		wirelen = caplen;
	if (f->f && f->bytes + sizeof(r) + caplen > f->rotate &&
	    f->bytes > sizeof(struct pcap_file_hdr)) {
		if (fclose(f->f) != 0)
			f->failed = true;
		f->f = NULL;
		f->rotations++;
		start_file(f);
	}
	if (!f->f) {
		/* the file could not be reopened: try again at the next record */
		if (!start_file(f)) {
			f->failed = true;
			return false;
		}
	}
	r.sec = (uint32_t)(ts_ns / 1000000000ULL);
	r.nsec = (uint32_t)(ts_ns % 1000000000ULL);
	r.caplen = (uint32_t)caplen;
	r.len = (uint32_t)(wirelen > UINT32_MAX ? UINT32_MAX : wirelen);
	if (fwrite(&r, sizeof(r), 1, f->f) != 1 || (caplen && fwrite(data, caplen, 1, f->f) != 1)) {
		f->failed = true;
		return false;
	}
	f->bytes += sizeof(r) + caplen;
	return true;
}

bool mirror_pcap_flush(struct mirror_pcap *f)
{
	bool ok = !f->failed;

	if (f->f && (fflush(f->f) != 0 || ferror(f->f))) {
		ok = false;
		clearerr(f->f);
	}
	f->failed = false;
	return ok;
}

uint64_t mirror_pcap_rotations(const struct mirror_pcap *f)
{
	return f->rotations;
}

bool mirror_pcap_close(struct mirror_pcap *f)
{
	bool ok;

	if (!f)
		return true;
	ok = mirror_pcap_flush(f);
	if (f->f && fclose(f->f) != 0)
		ok = false;
	pcap_free(f);
	return ok;
}
