/*
 * IPv6 on DockNet for the switch and the uplink (IPV6.md "Addressing").
 *
 * An endpoint's IPv6 address is its IPv4 host part in the low 32 bits of
 * the prefix, so everything the switch keeps by IPv4 address (the slot
 * table, ranges, flow keys, the uplink's neighbour table) serves IPv6 as
 * well through the address's IPv4 "twin". An address of the prefix with
 * anything between the prefix and the low 32 bits, or with host bits
 * outside the subnet's, has no twin: it is nobody's, and the switch neither
 * forwards to it nor accepts frames from it.
 *
 * Neighbour discovery (RFC 4861) is built and read here for both: the
 * switch answers its endpoints' solicitations, the uplink asks and answers
 * on the wire. DPDK-only header.
 */
#ifndef DN_ADDR6_H
#define DN_ADDR6_H

#include <stdint.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#define DN_IP6_HLEN 40
#define DN_ICMP6_ECHO_REQUEST 128
#define DN_ICMP6_RS 133
#define DN_ICMP6_RA 134
#define DN_ICMP6_NS 135
#define DN_ICMP6_NA 136
#define DN_ICMP6_REDIRECT 137
#define DN_ND_HOPLIM 255	/* RFC 4861: anything else was forwarded */
#define DN_ND_OPT_SLLA 1
#define DN_ND_OPT_TLLA 2
#define DN_NA_ROUTER 0x80
#define DN_NA_SOLICITED 0x40
#define DN_NA_OVERRIDE 0x20

struct dn_prefix6 {
	uint8_t addr[16];	/* network order; bits past len zero */
	uint8_t len;		/* 0: no IPv6 */
	uint32_t subnet;	/* the IPv4 twin's subnet, host order */
	uint32_t netmask;
};

/* The prefix's 32-bit word i (0..3) and its mask, host order, the word
 * masked: what the uplink's socket filter and its XDP program compare a
 * destination's words with. */
static inline uint32_t
dn_prefix6_mask(const struct dn_prefix6 *p, int i)
{
	int bits = p->len - 32 * i;

	return bits >= 32 ? 0xffffffffu : bits <= 0 ? 0 :
		~(0xffffffffu >> bits);
}

static inline uint32_t
dn_prefix6_word(const struct dn_prefix6 *p, int i)
{
	uint32_t w;

	memcpy(&w, p->addr + 4 * i, 4);
	return rte_be_to_cpu_32(w) & dn_prefix6_mask(p, i);
}

/* NS and NA share one shape: type, code, checksum, 4 bytes (NA flags in
 * the first), the target. */
struct dn_nd_msg {
	uint8_t type;
	uint8_t code;
	rte_be16_t cksum;
	uint8_t flags;
	uint8_t reserved[3];
	uint8_t target[16];
} __rte_packed;

struct dn_nd_opt_ll {
	uint8_t type;
	uint8_t len;		/* in units of 8 bytes */
	uint8_t mac[6];
} __rte_packed;

#define DN_ND_FRAME_LEN (sizeof(struct rte_ether_hdr) + DN_IP6_HLEN + \
	sizeof(struct dn_nd_msg) + sizeof(struct dn_nd_opt_ll))

/* 0 for a usable prefix (length 0 with all zero, or 64..96 with the low
 * 32 bits and every bit past the length zero), -1 otherwise. */
static inline int
dn_prefix6_check(const uint8_t *addr, uint8_t len)
{
	unsigned int i;

	for (i = 0; i < 16; i++) {
		unsigned int bit = i * 8;
		uint8_t host = bit >= len ? 0xff : bit + 8 <= len ? 0 :
			(uint8_t)(0xff >> (len - bit));

		if (addr[i] & host)
			return -1;
	}
	return len == 0 || (len >= 64 && len <= 96) ? 0 : -1;
}

static inline uint32_t
dn_be32_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		(uint32_t)p[2] << 8 | p[3];
}

/* 1 and the IPv4 twin (host order) in *twin if a is a DockNet address of
 * the prefix's form, else 0. Bits of a between the prefix and the low 32
 * must be zero, and the prefix's own are, so the first 12 bytes are the
 * prefix's. */
static inline int
dn_twin_of(const struct dn_prefix6 *p, const uint8_t *a, uint32_t *twin)
{
	uint32_t h;

	if (p->len == 0 || memcmp(a, p->addr, 12) != 0)
		return 0;
	h = dn_be32_at(a + 12);
	if (h & p->netmask)
		return 0;
	*twin = p->subnet | h;
	return 1;
}

/* The IPv6 address of the IPv4 address ip (host order). */
static inline void
dn_addr6_of(const struct dn_prefix6 *p, uint32_t ip, uint8_t *out)
{
	uint32_t h = ip & ~p->netmask;

	memcpy(out, p->addr, 12);
	out[12] = (uint8_t)(h >> 24);
	out[13] = (uint8_t)(h >> 16);
	out[14] = (uint8_t)(h >> 8);
	out[15] = (uint8_t)h;
}

static inline int
dn_addr6_is_multicast(const uint8_t *a)
{
	return a[0] == 0xff;
}

/* Whether a is target's solicited-node group (ff02::1:ffXX:XXXX). */
static inline int
dn_addr6_is_solicited(const uint8_t *a, const uint8_t *target)
{
	static const uint8_t pre[13] = { 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 1, 0xff };

	return memcmp(a, pre, 13) == 0 && memcmp(a + 13, target + 13, 3) == 0;
}

static inline int
dn_addr6_is_unspecified(const uint8_t *a)
{
	static const uint8_t zero[16];

	return memcmp(a, zero, 16) == 0;
}

/* A link-layer address option of type want among the options of an ND
 * message (opts, n bytes), or NULL. An option of length 0 makes the
 * message invalid (RFC 4861 4.6): NULL as well. */
static inline const uint8_t *
dn_nd_find_ll(const uint8_t *opts, uint32_t n, uint8_t want)
{
	while (n >= 2) {
		uint32_t olen = (uint32_t)opts[1] * 8;

		if (olen == 0 || olen > n)
			return NULL;
		if (opts[0] == want && olen >= sizeof(struct dn_nd_opt_ll))
			return opts + 2;
		opts += olen;
		n -= olen;
	}
	return NULL;
}

/* Writes a whole NS or NA frame (DN_ND_FRAME_LEN bytes at eth) with one
 * link-layer option (SLLA for an NS, TLLA for an NA) holding ll, and its
 * checksum. */
static inline void
dn_nd_write(struct rte_ether_hdr *eth, const uint8_t *eth_dst,
	const uint8_t *eth_src, const uint8_t *src, const uint8_t *dst,
	uint8_t type, uint8_t flags, const uint8_t *target, const uint8_t *ll)
{
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
	struct dn_nd_msg *nd = (struct dn_nd_msg *)(ip + 1);
	struct dn_nd_opt_ll *opt = (struct dn_nd_opt_ll *)(nd + 1);

	memcpy(eth->dst_addr.addr_bytes, eth_dst, 6);
	memcpy(eth->src_addr.addr_bytes, eth_src, 6);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
	ip->payload_len = rte_cpu_to_be_16(sizeof(*nd) + sizeof(*opt));
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = DN_ND_HOPLIM;
	memcpy(ip->src_addr, src, 16);
	memcpy(ip->dst_addr, dst, 16);
	memset(nd, 0, sizeof(*nd));
	nd->type = type;
	nd->flags = flags;
	memcpy(nd->target, target, 16);
	opt->type = type == DN_ICMP6_NS ? DN_ND_OPT_SLLA : DN_ND_OPT_TLLA;
	opt->len = 1;
	memcpy(opt->mac, ll, 6);
	/* rte_ipv6_udptcp_cksum takes the pseudo-header's next header from
	 * proto: right for ICMPv6 too (and only UDP maps 0 to 0xffff). */
	nd->cksum = rte_ipv6_udptcp_cksum(ip, nd);
}

#endif /* DN_ADDR6_H */
