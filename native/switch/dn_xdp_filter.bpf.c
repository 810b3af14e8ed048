/*
 * The af_xdp uplink's XDP program: DockNet's frames to its AF_XDP socket,
 * every other frame on to the kernel (dn_xdp.h says why and how it is
 * configured). Built with clang -target bpf by scripts/bootstrap.sh and
 * loaded by net_af_xdp (its xdp_prog= argument), which puts its socket in
 * xsks_map.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "dn_xdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dn_xdp_cfg);
} dn_xdp_cfg SEC(".maps");

#define ETH_HLEN_ 14
#define ARP_TPA (ETH_HLEN_ + 24)
#define IP4_DST (ETH_HLEN_ + 16)
#define IP6_NXT (ETH_HLEN_ + 6)
#define IP6_DST (ETH_HLEN_ + 24)
#define ICMP6 (ETH_HLEN_ + 40)
#define NS_TARGET (ICMP6 + 8)
#define IPPROTO_ICMPV6_ 58
#define ND_NEIGHBOR_SOLICIT 135

static __always_inline int
dn_in_prefix6(const struct dn_xdp_cfg *c, const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	int i;

	for (i = 0; i < 4; i++)
		if ((w[i] & c->mask6[i]) != c->prefix6[i])
			return 0;
	return 1;
}

static __always_inline int
dn_is_docknet(const struct dn_xdp_cfg *c, const __u8 *p, const __u8 *end)
{
	__u16 type;

	if (p + ETH_HLEN_ > end)
		return 0;
	type = bpf_ntohs(*(const __u16 *)(p + 12));
	if (type == ETH_P_IP) {
		if (p + IP4_DST + 4 > end)
			return 0;
		return (*(const __u32 *)(p + IP4_DST) & c->netmask) == c->subnet;
	}
	if (type == ETH_P_ARP) {
		__u32 tpa;

		if (p + ARP_TPA + 4 > end)
			return 0;
		/* ARP's target address is not 4-byte aligned in the frame. */
		__builtin_memcpy(&tpa, p + ARP_TPA, 4);
		return (tpa & c->netmask) == c->subnet;
	}
	if (type != ETH_P_IPV6 || !c->v6 || p + IP6_DST + 16 > end)
		return 0;
	if (p[IP6_DST] != 0xff)
		return dn_in_prefix6(c, p + IP6_DST);
	/* Multicast: the kernel needs its own neighbour discovery; DockNet
	 * takes only the solicitations for its addresses. */
	if (p[IP6_NXT] != IPPROTO_ICMPV6_ || p + NS_TARGET + 16 > end ||
	    p[ICMP6] != ND_NEIGHBOR_SOLICIT)
		return 0;
	return dn_in_prefix6(c, p + NS_TARGET);
}

SEC("xdp")
int
dn_xdp_filter(struct xdp_md *ctx)
{
	const __u8 *p = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	__u32 key = 0;
	const struct dn_xdp_cfg *c = bpf_map_lookup_elem(&dn_xdp_cfg, &key);

	if (c == NULL || !c->on || !dn_is_docknet(c, p, end))
		return XDP_PASS;
	/* With no socket in the map yet the frame goes to the kernel. */
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
