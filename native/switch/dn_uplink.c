#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_arp.h>
#include <rte_bus_vdev.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_flow.h>
#include <rte_ip.h>
#include <rte_kvargs.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "dn_error.h"
#include "dn_pktpool.h"
#include "dn_uplink.h"
#include "dn_xdp.h"

#define DN_ARP_SLOTS 1024	/* open addressing, power of two */
#define DN_HOLD 64
#define DN_BURST 32
#define DN_UPLINK_MBUFS 2047
/* net_af_xdp fills its fill ring with 2048 buffers at set-up, and what it
 * sends from another pool is copied into one of its own: a larger pool. */
#define DN_XDP_MBUFS 8191
/* The kernel puts an AF_XDP frame this far past the headroom the PMD
 * declares (XDP_PACKET_HEADROOM), so each buffer needs that much more. */
#define DN_XDP_HEADROOM 256

#ifndef AF_XDP
#define AF_XDP 44
#endif

/* A neighbour, IPv4 or IPv6 (by its IPv4 twin): a host may answer for one
 * family and not the other. */
struct dn_arp_entry {
	uint32_t ip;		/* 0: empty */
	uint8_t v6;
	struct rte_ether_addr mac;
};

struct dn_held {
	uint32_t ip;
	uint8_t v6;
	struct rte_mbuf *m;
};

struct dn_uplink {
	char name[64];
	uint16_t port_id;
	int vdev;
	struct rte_mempool *pool;	/* the switch's: for what we make */
	struct rte_mempool *rx_pool;	/* ours: sized for the device's frames */
	struct rte_ether_addr mac;
	char iface[IF_NAMESIZE];	/* the kernel interface, if the port has one */
	int promisc_was;		/* its IFF_PROMISC before we started: -1 unknown */
	uint32_t my_ip;
	uint32_t subnet;
	uint32_t netmask;
	struct dn_prefix6 p6;
	uint8_t my_ip6[16];
	dn_uplink_is_local_fn is_local;
	void *ctx;
	struct dn_arp_entry arp[DN_ARP_SLOTS];
	struct dn_held held[DN_HOLD];
	unsigned int n_held;
	struct rte_mbuf *tx[DN_BURST];
	uint16_t n_tx;
	int wake_fd;		/* our packet socket, or -1 */
	int xsk_fds[DN_UPLINK_MAX_WAKE];	/* the port's AF_XDP sockets */
	int n_xsk;
	struct dn_uplink_counters c;
};

/* ---- ARP table ---- */

static unsigned int
dn_arp_hash(uint32_t ip, uint8_t v6)
{
	return ((ip ^ v6) * 2654435761u) & (DN_ARP_SLOTS - 1);
}

static struct dn_arp_entry *
dn_arp_find(struct dn_uplink *u, uint32_t ip, uint8_t v6)
{
	unsigned int i, h = dn_arp_hash(ip, v6);

	for (i = 0; i < DN_ARP_SLOTS; i++) {
		struct dn_arp_entry *e = &u->arp[(h + i) & (DN_ARP_SLOTS - 1)];

		if (e->ip == ip && e->v6 == v6)
			return e;
		if (e->ip == 0)
			return NULL;
	}
	return NULL;
}

static void
dn_flush_held(struct dn_uplink *u, uint32_t ip, uint8_t v6);

static void
dn_arp_learn(struct dn_uplink *u, uint32_t ip, uint8_t v6,
	const struct rte_ether_addr *mac)
{
	unsigned int i, h = dn_arp_hash(ip, v6);

	if (ip == 0 || (ip & u->netmask) != u->subnet || u->is_local(u->ctx, ip))
		return;
	for (i = 0; i < DN_ARP_SLOTS; i++) {
		struct dn_arp_entry *e = &u->arp[(h + i) & (DN_ARP_SLOTS - 1)];

		if ((e->ip == ip && e->v6 == v6) || e->ip == 0) {
			int fresh = e->ip == 0;

			e->ip = ip;
			e->v6 = v6;
			e->mac = *mac;
			if (fresh)
				dn_flush_held(u, ip, v6);
			return;
		}
	}
	/* Table full: the address is asked for again next time. */
}

/* ---- sending ---- */

static void
dn_queue(struct dn_uplink *u, struct rte_mbuf *m)
{
	if (u->n_tx == DN_BURST)
		dn_uplink_flush(u);
	if (u->n_tx == DN_BURST) {
		u->c.drop_other++;
		rte_pktmbuf_free(m);
		return;
	}
	u->tx[u->n_tx++] = m;
}

void
dn_uplink_flush(struct dn_uplink *u)
{
	uint16_t sent;

	if (u->n_tx == 0)
		return;
	sent = rte_eth_tx_burst(u->port_id, 0, u->tx, u->n_tx);
	u->c.tx_frames += sent;
	if (sent < u->n_tx) {
		u->c.drop_other += u->n_tx - sent;
		rte_pktmbuf_free_bulk(&u->tx[sent], u->n_tx - sent);
	}
	u->n_tx = 0;
}

static void
dn_arp_send(struct dn_uplink *u, uint16_t op, uint32_t tip,
	const struct rte_ether_addr *tha, uint32_t sip)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(u->pool);
	struct rte_ether_hdr *eth;
	struct rte_arp_hdr *arp;

	if (m == NULL)
		return;
	eth = (struct rte_ether_hdr *)rte_pktmbuf_append(m,
		sizeof(*eth) + sizeof(*arp));
	arp = (struct rte_arp_hdr *)(eth + 1);
	if (op == RTE_ARP_OP_REQUEST)
		memset(&eth->dst_addr, 0xff, RTE_ETHER_ADDR_LEN);
	else
		eth->dst_addr = *tha;
	eth->src_addr = u->mac;
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = RTE_ETHER_ADDR_LEN;
	arp->arp_plen = 4;
	arp->arp_opcode = rte_cpu_to_be_16(op);
	arp->arp_data.arp_sha = u->mac;
	arp->arp_data.arp_sip = rte_cpu_to_be_32(sip);
	if (op == RTE_ARP_OP_REQUEST)
		memset(&arp->arp_data.arp_tha, 0, RTE_ETHER_ADDR_LEN);
	else
		arp->arp_data.arp_tha = *tha;
	arp->arp_data.arp_tip = rte_cpu_to_be_32(tip);
	if (op == RTE_ARP_OP_REQUEST)
		u->c.arp_requests_sent++;
	else
		u->c.arp_replies_sent++;
	dn_queue(u, m);
}

/* Neighbour discovery on the wire: an NS for the address whose twin is
 * twin from our own (to its solicited-node group), or an NA for a local
 * target to the asker. */
static void
dn_nd_send(struct dn_uplink *u, uint8_t type, const uint8_t *target,
	const uint8_t *to, const struct rte_ether_addr *to_mac)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(u->pool);
	struct rte_ether_hdr *eth;
	uint8_t dst[16], dst_mac[6];

	if (m == NULL)
		return;
	eth = (struct rte_ether_hdr *)rte_pktmbuf_append(m, DN_ND_FRAME_LEN);
	if (eth == NULL) {
		rte_pktmbuf_free(m);
		return;
	}
	if (type == DN_ICMP6_NS) {
		static const uint8_t sol[13] = { 0xff, 0x02, 0, 0, 0, 0, 0, 0,
			0, 0, 0, 1, 0xff };

		memcpy(dst, sol, 13);
		memcpy(dst + 13, target + 13, 3);
		dst_mac[0] = 0x33;
		dst_mac[1] = 0x33;
		memcpy(dst_mac + 2, dst + 12, 4);
		dn_nd_write(eth, dst_mac, u->mac.addr_bytes, u->my_ip6, dst,
			DN_ICMP6_NS, 0, target, u->mac.addr_bytes);
		u->c.nd_solicits_sent++;
	} else {
		dn_nd_write(eth, to_mac->addr_bytes, u->mac.addr_bytes, target,
			to, DN_ICMP6_NA, DN_NA_SOLICITED | DN_NA_OVERRIDE,
			target, u->mac.addr_bytes);
		u->c.nd_adverts_sent++;
	}
	dn_queue(u, m);
}

/* internal links carry TCP and UDP without checksums; a host on the wire
 * needs them. IPv6 has no header checksum, and its UDP checksum is not
 * optional; ICMPv6's is recomputed too (what the switch passes on is the
 * endpoint's, and a wrong one is dropped by the receiver). */
static void
dn_fill_checksums6(struct rte_mbuf *m)
{
	struct rte_ipv6_hdr *ip = rte_pktmbuf_mtod_offset(m,
		struct rte_ipv6_hdr *, sizeof(struct rte_ether_hdr));
	void *l4 = ip + 1;

	/* The switch checked the payload length against the frame. */
	if (ip->proto == IPPROTO_TCP) {
		struct rte_tcp_hdr *t = l4;

		t->cksum = 0;
		t->cksum = rte_ipv6_udptcp_cksum(ip, t);
	} else if (ip->proto == IPPROTO_UDP) {
		struct rte_udp_hdr *uh = l4;

		uh->dgram_cksum = 0;
		uh->dgram_cksum = rte_ipv6_udptcp_cksum(ip, uh);
	} else if (ip->proto == IPPROTO_ICMPV6) {
		struct dn_nd_msg *ic = l4;	/* the checksum's place */

		ic->cksum = 0;
		ic->cksum = rte_ipv6_udptcp_cksum(ip, ic);
	}
}

static void
dn_fill_checksums(struct rte_mbuf *m)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m,
		struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
	uint16_t hlen = (uint16_t)((ip->version_ihl & 0xf) * 4);
	void *l4 = (char *)ip + hlen;

	if (m->nb_segs != 1)
		return;	/* frames are single-segment on our links */
	if (rte_pktmbuf_mtod(m, struct rte_ether_hdr *)->ether_type ==
	    rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		dn_fill_checksums6(m);
		return;
	}
	if (ip->next_proto_id == IPPROTO_TCP) {
		struct rte_tcp_hdr *t = l4;

		t->cksum = 0;
		t->cksum = rte_ipv4_udptcp_cksum(ip, t);
	} else if (ip->next_proto_id == IPPROTO_UDP) {
		struct rte_udp_hdr *uh = l4;

		uh->dgram_cksum = 0;
		uh->dgram_cksum = rte_ipv4_udptcp_cksum(ip, uh);
	}
}

static void
dn_emit(struct dn_uplink *u, struct rte_mbuf *m, const struct rte_ether_addr *to)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);

	eth->dst_addr = *to;
	eth->src_addr = u->mac;
	dn_fill_checksums(m);
	dn_queue(u, m);
}

static void
dn_flush_held(struct dn_uplink *u, uint32_t ip, uint8_t v6)
{
	struct dn_arp_entry *e = dn_arp_find(u, ip, v6);
	unsigned int i = 0;

	while (e != NULL && i < u->n_held) {
		if (u->held[i].ip == ip && u->held[i].v6 == v6) {
			dn_emit(u, u->held[i].m, &e->mac);
			u->held[i] = u->held[--u->n_held];
		} else {
			i++;
		}
	}
}

static void
dn_send_to(struct dn_uplink *u, struct rte_mbuf *m, uint32_t dst_ip,
	uint8_t v6)
{
	struct dn_arp_entry *e = dn_arp_find(u, dst_ip, v6);
	unsigned int i;
	int asked = 0;

	if (e != NULL) {
		dn_emit(u, m, &e->mac);
		return;
	}
	for (i = 0; i < u->n_held; i++)
		if (u->held[i].ip == dst_ip && u->held[i].v6 == v6)
			asked = 1;
	if (u->n_held == DN_HOLD) {
		u->c.unresolved_dropped++;
		rte_pktmbuf_free(m);
	} else {
		u->held[u->n_held++] = (struct dn_held){ dst_ip, v6, m };
	}
	if (asked)
		return;
	if (v6) {
		uint8_t target[16];

		dn_addr6_of(&u->p6, dst_ip, target);
		dn_nd_send(u, DN_ICMP6_NS, target, NULL, NULL);
	} else {
		dn_arp_send(u, RTE_ARP_OP_REQUEST, dst_ip, NULL, u->my_ip);
	}
}

void
dn_uplink_send(struct dn_uplink *u, struct rte_mbuf *m, uint32_t dst_ip)
{
	dn_send_to(u, m, dst_ip, 0);
}

void
dn_uplink_send6(struct dn_uplink *u, struct rte_mbuf *m, uint32_t dst_twin)
{
	dn_send_to(u, m, dst_twin, 1);
}

/* ---- receiving ---- */

static void
dn_arp_input(struct dn_uplink *u, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(eth + 1);
	uint32_t sip, tip;

	if (rte_pktmbuf_data_len(m) < sizeof(*eth) + sizeof(*arp)) {
		u->c.drop_other++;
		return;
	}
	sip = rte_be_to_cpu_32(arp->arp_data.arp_sip);
	tip = rte_be_to_cpu_32(arp->arp_data.arp_tip);
	dn_arp_learn(u, sip, 0, &arp->arp_data.arp_sha);
	if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) &&
	    (tip == u->my_ip || u->is_local(u->ctx, tip)))
		dn_arp_send(u, RTE_ARP_OP_REPLY, sip, &arp->arp_data.arp_sha,
			tip);
}

/* Whether the address whose twin is ip is ours to answer for. */
static int
dn_answers_for(struct dn_uplink *u, uint32_t ip)
{
	return ip == u->my_ip || u->is_local(u->ctx, ip);
}

/* Neighbour discovery from the wire: solicitations for this host's
 * addresses are answered, advertisements (and the solicitations' source
 * link-layer options) learnt. The RFC 4861 7.1 checks a host makes. */
static void
dn_nd_input(struct dn_uplink *u, struct rte_mbuf *m, struct rte_ipv6_hdr *ip,
	uint32_t plen)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	const struct dn_nd_msg *nd = (const struct dn_nd_msg *)(ip + 1);
	const uint8_t *opts = (const uint8_t *)(nd + 1);
	const uint8_t *ll;
	struct rte_ether_addr mac;
	uint32_t tip, sip;

	/* Any host on the segment may write these: the checksum too (over
	 * the payload length, which dn_ip6_input held to the frame). */
	if (plen < sizeof(*nd) || nd->code != 0 ||
	    ip->hop_limits != DN_ND_HOPLIM ||
	    __rte_ipv6_udptcp_cksum(ip, nd) != 0xffff ||
	    !dn_twin_of(&u->p6, nd->target, &tip)) {
		u->c.drop_other++;
		return;
	}
	if (nd->type == DN_ICMP6_NS) {
		/* Duplicate address detection (from ::) for one of ours
		 * would be a conflict an answer cannot settle; not ours:
		 * another host's business. */
		if (dn_addr6_is_unspecified(ip->src_addr) ||
		    !dn_answers_for(u, tip))
			return;
		ll = dn_nd_find_ll(opts, plen - sizeof(*nd), DN_ND_OPT_SLLA);
		memcpy(&mac, ll != NULL ? ll : eth->src_addr.addr_bytes, 6);
		if (dn_twin_of(&u->p6, ip->src_addr, &sip))
			dn_arp_learn(u, sip, 1, &mac);
		dn_nd_send(u, DN_ICMP6_NA, nd->target, ip->src_addr, &mac);
	} else {
		ll = dn_nd_find_ll(opts, plen - sizeof(*nd), DN_ND_OPT_TLLA);
		memcpy(&mac, ll != NULL ? ll : eth->src_addr.addr_bytes, 6);
		dn_arp_learn(u, tip, 1, &mac);
	}
}

/* An IPv6 frame from the wire: 1 if it is for one of this host's
 * endpoints (passed on), 0 if it was handled or dropped here. */
static int
dn_ip6_input(struct dn_uplink *u, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
	uint32_t len = rte_pktmbuf_data_len(m), plen, sip, dip;
	const uint8_t *l4 = (const uint8_t *)(ip + 1);

	if (u->p6.len == 0 || len < sizeof(*eth) + DN_IP6_HLEN) {
		u->c.drop_other++;
		return 0;
	}
	plen = rte_be_to_cpu_16(ip->payload_len);
	if ((rte_be_to_cpu_32(ip->vtc_flow) >> 28) != 6 ||
	    plen > len - sizeof(*eth) - DN_IP6_HLEN) {
		u->c.drop_other++;
		return 0;
	}
	if (ip->proto == IPPROTO_ICMPV6 && plen >= 1 &&
	    (l4[0] == DN_ICMP6_NS || l4[0] == DN_ICMP6_NA)) {
		dn_nd_input(u, m, ip, plen);
		return 0;
	}
	if (!dn_twin_of(&u->p6, ip->dst_addr, &dip) ||
	    !u->is_local(u->ctx, dip))
		return 0;	/* not for this host (the segment is shared) */
	if (!dn_twin_of(&u->p6, ip->src_addr, &sip)) {
		/* A source with no twin: no reply could find it. */
		u->c.drop_other++;
		return 0;
	}
	dn_arp_learn(u, sip, 1, &eth->src_addr);
	return 1;
}

uint16_t
dn_uplink_rx(struct dn_uplink *u, struct rte_mbuf **pkts, uint16_t n)
{
	struct rte_mbuf *rx[DN_BURST];
	uint16_t got, i, out = 0;

	if (n > DN_BURST)
		n = DN_BURST;
	got = rte_eth_rx_burst(u->port_id, 0, rx, n);
	u->c.rx_frames += got;
	for (i = 0; i < got; i++) {
		struct rte_mbuf *m = rx[i];
		struct rte_ether_hdr *eth;
		struct rte_ipv4_hdr *ip;

		if (rte_pktmbuf_data_len(m) < sizeof(*eth) + sizeof(*ip)) {
			if (rte_pktmbuf_data_len(m) >= sizeof(*eth) &&
			    rte_pktmbuf_mtod(m, struct rte_ether_hdr *)
			    ->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP))
				dn_arp_input(u, m);
			else
				u->c.drop_other++;
			rte_pktmbuf_free(m);
			continue;
		}
		eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
		if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
			dn_arp_input(u, m);
			rte_pktmbuf_free(m);
			continue;
		}
		if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
			if (dn_ip6_input(u, m))
				pkts[out++] = m;
			else
				rte_pktmbuf_free(m);
			continue;
		}
		ip = (struct rte_ipv4_hdr *)(eth + 1);
		if (eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
		    !u->is_local(u->ctx, rte_be_to_cpu_32(ip->dst_addr))) {
			/* Not for this host (the segment is shared). */
			rte_pktmbuf_free(m);
			continue;
		}
		dn_arp_learn(u, rte_be_to_cpu_32(ip->src_addr), 0,
			&eth->src_addr);
		pkts[out++] = m;
	}
	dn_uplink_flush(u);
	return out;
}

/* ---- set-up ---- */

static void
dn_probe_flow(struct dn_uplink *u)
{
	struct rte_flow_attr attr = { .ingress = 1 };
	struct rte_flow_item_ipv4 spec = { .hdr.dst_addr =
		rte_cpu_to_be_32(u->subnet | 2) };
	struct rte_flow_item_ipv4 mask = { .hdr.dst_addr = UINT32_MAX };
	struct rte_flow_item pattern[] = {
		{ .type = RTE_FLOW_ITEM_TYPE_ETH },
		{ .type = RTE_FLOW_ITEM_TYPE_IPV4, .spec = &spec, .mask = &mask },
		{ .type = RTE_FLOW_ITEM_TYPE_END },
	};
	struct rte_flow_action_queue queue = { .index = 0 };
	struct rte_flow_action actions[] = {
		{ .type = RTE_FLOW_ACTION_TYPE_QUEUE, .conf = &queue },
		{ .type = RTE_FLOW_ACTION_TYPE_END },
	};
	struct rte_flow_error err;

	/* Per-endpoint queues need a flow director; ask the port whether it
	 * could steer by destination address at all. */
	u->c.hw_classification = rte_flow_validate(u->port_id, &attr, pattern,
		actions, &err) == 0;
}

/* The value of key in "name,key=value,..." (empty if absent or too long). */
static void
dn_devarg(const char *devargs, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key), i;
	const char *p = strchr(devargs, ',');

	out[0] = '\0';
	while (p != NULL) {
		p++;
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			p += klen + 1;
			for (i = 0; p[i] != '\0' && p[i] != ','; i++)
				if (i + 1 >= size) {
					out[0] = '\0';
					return;
				}
			memcpy(out, p, i);
			out[i] = '\0';
			return;
		}
		p = strchr(p, ',');
	}
}

static int
dn_is_af_xdp(const char *name)
{
	return strncmp(name, "net_af_xdp", strlen("net_af_xdp")) == 0;
}

/* One interface ioctl (SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFMTU) on iface,
 * with the rest of *ifr as the caller left it: 0, or -1. */
static int
dn_if_ioctl(const char *iface, unsigned long request, struct ifreq *ifr)
{
	int fd, ret;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", iface);
	ret = ioctl(fd, request, ifr);
	close(fd);
	return ret == 0 ? 0 : -1;
}

/* The interface's flags (SIOCGIFFLAGS), or -1. */
static int
dn_if_flags(const char *iface)
{
	struct ifreq ifr = { 0 };

	return dn_if_ioctl(iface, SIOCGIFFLAGS, &ifr) == 0 ?
		ifr.ifr_flags & 0xffff : -1;
}

/* Puts the interface's promiscuous flag back as it was before the port
 * started: the PMDs set it and leave it set when they close. */
static void
dn_restore_promisc(struct dn_uplink *u)
{
	struct ifreq ifr = { 0 };

	if (u->iface[0] == '\0' || u->promisc_was != 0)
		return;
	if (dn_if_ioctl(u->iface, SIOCGIFFLAGS, &ifr) == 0 &&
	    (ifr.ifr_flags & IFF_PROMISC)) {
		ifr.ifr_flags &= ~IFF_PROMISC;
		(void)dn_if_ioctl(u->iface, SIOCSIFFLAGS, &ifr);
	}
}

/*
 * Sockets of one family in this process, by inode. Neither net_af_xdp nor
 * net_af_packet exports its sockets; the uplink finds them as the sockets
 * of the family that appeared in the descriptor table while the port was
 * set up. SO_DOMAIN names a socket's family whatever its kind, and the
 * inode tells a new socket from an old descriptor number reused. Set-up
 * runs on the control thread before the switch thread starts, and nothing
 * else in the master makes AF_XDP or packet sockets, so what appeared is
 * the port's.
 */
struct dn_sock_scan {
	int n;
	int fd[DN_UPLINK_MAX_WAKE * 2];
	ino_t ino[DN_UPLINK_MAX_WAKE * 2];
};

static void
dn_scan_sockets(int family, struct dn_sock_scan *out)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	out->n = 0;
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		int fd, domain;
		socklen_t len = sizeof(domain);
		char *end;

		fd = (int)strtol(e->d_name, &end, 10);
		if (*end != '\0' || e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
		    domain != family)
			continue;
		if (out->n < (int)RTE_DIM(out->fd)) {
			out->fd[out->n] = fd;
			out->ino[out->n] = st.st_ino;
			out->n++;
		}
	}
	closedir(d);
}

/* Whether after's i-th socket was already in before. */
static int
dn_scan_had(const struct dn_sock_scan *before,
	const struct dn_sock_scan *after, int i)
{
	int j;

	for (j = 0; j < before->n; j++)
		if (before->ino[j] == after->ino[i])
			return 1;
	return 0;
}

/* The sockets in after that were not in before, for the switch's sleep. */
static int
dn_take_xsk(struct dn_uplink *u, const struct dn_sock_scan *before,
	const struct dn_sock_scan *after)
{
	int i;

	for (i = 0; i < after->n; i++) {
		if (dn_scan_had(before, after, i))
			continue;
		if (u->n_xsk == DN_UPLINK_MAX_WAKE)
			return dn_error(-E2BIG, "uplink %s: more than %d AF_XDP "
				"sockets (one queue is used)", u->name,
				DN_UPLINK_MAX_WAKE);
		u->xsk_fds[u->n_xsk++] = after->fd[i];
	}
	if (u->n_xsk == 0)
		return dn_error(-ENOENT, "uplink %s: no AF_XDP socket appeared "
			"while the port started: the switch could not sleep",
			u->name);
	return 0;
}

/*
 * What a packet socket on the uplink's interface lets through: frames for
 * this host's subnet and prefix, the ARP and neighbour discovery that find
 * them, and nothing the kernel itself sends. The interface may carry the
 * host's own traffic too (its kernel addresses): a packet socket is handed
 * a copy of every frame on it, and each copy would wake the switch, only
 * to be dropped there. A frame the filter refuses is never copied.
 */
#define DN_FILTER_LEN 25

static void
dn_filter_build(const struct dn_uplink *u, struct sock_filter *f)
{
	/* Offsets past the 14-byte Ethernet header: the IPv4 destination,
	 * ARP's target address, the IPv6 destination. */
	enum { IP4_DST = 30, ARP_TPA = 38, IP6_DST = 38 };
	/* Where each block starts; a jump counts from the next instruction. */
	enum { IPV4 = 6, ARP = 9, IPV6 = 12, ACCEPT = 23, REJECT = 24 };
	uint32_t w[3] = { 0, 0, 0 }, m[3] = { 0, 0, 0 };
	int i, v6 = u->p6.len != 0;

	for (i = 0; i < 3 && v6; i++) {
		w[i] = dn_prefix6_word(&u->p6, i);
		m[i] = dn_prefix6_mask(&u->p6, i);
	}
#define J(at, to) ((uint8_t)((to) - (at) - 1))
	f[0] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		(uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE));
	f[1] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		PACKET_OUTGOING, J(1, REJECT), 0);
	f[2] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12);
	f[3] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		ETH_P_IP, J(3, IPV4), 0);
	f[4] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		ETH_P_ARP, J(4, ARP), 0);
	f[5] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		ETH_P_IPV6, v6 ? J(5, IPV6) : J(5, REJECT), J(5, REJECT));
	f[6] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, IP4_DST);
	f[7] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K,
		u->netmask);
	f[8] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		u->subnet, J(8, ACCEPT), J(8, REJECT));
	f[9] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARP_TPA);
	f[10] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K,
		u->netmask);
	f[11] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		u->subnet, J(11, ACCEPT), J(11, REJECT));
	/* Multicast is neighbour discovery's (solicited-node addresses). */
	f[12] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_B | BPF_ABS, IP6_DST);
	f[13] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
		0xff, J(13, ACCEPT), 0);
	for (i = 0; i < 3; i++) {
		int at = 14 + 3 * i;

		f[at] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			(uint32_t)(IP6_DST + 4 * i));
		f[at + 1] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND |
			BPF_K, m[i]);
		f[at + 2] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ |
			BPF_K, w[i], i == 2 ? J(at + 2, ACCEPT) : 0,
			J(at + 2, REJECT));
	}
	/* A frame's whole length (a snap length longer than any frame). */
	f[ACCEPT] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0x40000);
	f[REJECT] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
#undef J
}

static int
dn_filter_attach(struct dn_uplink *u, int fd)
{
	struct sock_filter f[DN_FILTER_LEN];
	struct sock_fprog prog = { .len = DN_FILTER_LEN, .filter = f };

	dn_filter_build(u, f);
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog,
	    sizeof(prog)) < 0)
		return dn_error(-errno, "uplink %s: cannot filter its packet "
			"socket: %s", u->name, strerror(errno));
	return 0;
}

/* The port's own packet sockets (net_af_packet's), new since before. */
static int
dn_filter_port(struct dn_uplink *u, const struct dn_sock_scan *before)
{
	struct dn_sock_scan after;
	int i, ret;

	dn_scan_sockets(AF_PACKET, &after);
	for (i = 0; i < after.n; i++) {
		if (dn_scan_had(before, &after, i))
			continue;
		ret = dn_filter_attach(u, after.fd[i]);
		if (ret < 0)
			return ret;
		u->c.filtered_sockets++;
	}
	return 0;
}

/* Sets u->wake_fd: our packet socket on the interface, or -1 when there
 * is none to be had (the switch then looks every few ms). An error only
 * when the socket could not be filtered. */
static int
dn_wake_socket(struct dn_uplink *u)
{
	struct sockaddr_ll sll;
	int fd, ret, small = 4096;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
		htons(ETH_P_ALL));
	if (fd < 0)
		return 0;
	/* Only "something arrived" matters: a tiny buffer, so the kernel
	 * drops the copies instead of queueing them. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	/* Filtered before it is bound, so no copy of the host's traffic
	 * gets in first. */
	ret = dn_filter_attach(u, fd);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex(u->iface);
	if (sll.sll_ifindex == 0 ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		close(fd);
		return 0;
	}
	u->wake_fd = fd;
	u->c.filtered_sockets++;
	return 0;
}

/* net_af_xdp's frames live in the mbufs of the pool given to it (its
 * UMEM), one whole pool object each, and the kernel takes chunks of at most
 * a page: checked before the pool is made (a jumbo pool would also take
 * most of the EAL's memory for nothing). */
static uint32_t
dn_xdp_obj_size(uint16_t frame_room)
{
	uint32_t elt = sizeof(struct rte_mbuf) + RTE_PKTMBUF_HEADROOM +
		frame_room + DN_XDP_HEADROOM;

	return rte_mempool_calc_obj_size(elt, 0, NULL);
}

/* The interface's MTU (SIOCGIFMTU), or 0. */
static uint32_t
dn_if_mtu(const char *iface)
{
	struct ifreq ifr = { 0 };

	return dn_if_ioctl(iface, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0 ?
		(uint32_t)ifr.ifr_mtu : 0;
}

/* Whether net_af_xdp can carry the links' MTU, and what the interface may
 * hand it: a frame larger than a buffer would be lost on arrival (and some
 * drivers, veth among them, refuse an XDP program on such an MTU with a
 * bare "Invalid argument" from the PMD). */
static int
dn_xdp_fits(const char *iface, uint16_t mtu, uint16_t frame_room)
{
	uint32_t page = (uint32_t)getpagesize(), room = 1024, most = 0;
	uint32_t wire = dn_if_mtu(iface);

	/* The largest MTU that fits, in dn_frame_room's steps. */
	while (dn_xdp_obj_size((uint16_t)room) <= page) {
		most = room - RTE_ETHER_HDR_LEN - RTE_VLAN_HLEN;
		room += 1024;
	}
	if (dn_xdp_obj_size(frame_room) > page)
		return dn_error(-EMSGSIZE, "net_af_xdp on %s cannot carry MTU "
			"%u: a frame takes %u bytes of buffer, an AF_XDP buffer "
			"is at most a page (%u bytes; MTU %u or less fits). A "
			"jumbo MTU needs net_af_packet", iface, mtu,
			dn_xdp_obj_size(frame_room), page, most);
	if (wire > most)
		return dn_error(-EMSGSIZE, "net_af_xdp on %s: the interface's "
			"MTU %u is above the %u an AF_XDP buffer (a page) holds, "
			"so its largest frames would be lost. A jumbo MTU needs "
			"net_af_packet", iface, wire, most);
	return 0;
}

int
dn_uplink_open(const char *devargs, struct rte_mempool *pool, uint16_t mtu,
	uint16_t frame_room, uint32_t my_ip, uint32_t subnet, uint32_t netmask,
	const struct dn_prefix6 *p6, int promisc_was,
	dn_uplink_is_local_fn is_local, void *ctx, struct dn_uplink **out)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	struct dn_uplink *u;
	const char *comma = strchr(devargs, ',');
	size_t nlen = comma ? (size_t)(comma - devargs) : strlen(devargs);
	struct dn_sock_scan xsk_before = { .n = 0 }, xsk_after = { .n = 0 };
	struct dn_sock_scan pkt_before = { .n = 0 };
	const char *step = "probe";
	char prog[256] = "";
	const char *base;
	int xdp, ours = 0, ret;

	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return dn_error(-ENOMEM, "out of memory for the uplink");
	if (nlen >= sizeof(u->name)) {
		free(u);
		return dn_error(-EINVAL, "uplink device name too long");
	}
	memcpy(u->name, devargs, nlen);
	u->pool = pool;
	u->my_ip = my_ip;
	u->subnet = subnet;
	u->netmask = netmask;
	u->p6 = *p6;
	dn_addr6_of(p6, my_ip, u->my_ip6);
	u->is_local = is_local;
	u->ctx = ctx;
	u->wake_fd = -1;
	u->promisc_was = -1;
	xdp = dn_is_af_xdp(u->name);
	dn_devarg(devargs, "iface", u->iface, sizeof(u->iface));
	if (u->iface[0] != '\0' && promisc_was >= 0) {
		u->promisc_was = promisc_was != 0;
	} else if (u->iface[0] != '\0') {
		int flags = dn_if_flags(u->iface);

		if (flags >= 0)
			u->promisc_was = (flags & IFF_PROMISC) != 0;
	}
	if (xdp && u->iface[0] != '\0') {
		dn_devarg(devargs, "xdp_prog", prog, sizeof(prog));
		base = strrchr(prog, '/');
		ours = strcmp(base ? base + 1 : prog, DN_XDP_OBJECT) == 0;
		/* The port attaches its program only where none is. */
		ret = dn_xdp_claim(u->iface, ours);
		if (ret < 0) {
			free(u);
			return ret;
		}
		u->c.stale_xdp_removed = ret;
	}
	if (rte_eth_dev_get_port_by_name(u->name, &u->port_id) != 0) {
		/* Not a probed device (PCI): a virtual one to create.
		 * net_af_packet makes and binds its sockets here. */
		dn_scan_sockets(AF_PACKET, &pkt_before);
		ret = rte_vdev_init(u->name, comma ? comma + 1 : "");
		if (ret < 0) {
			free(u);
			return dn_error(ret, "cannot create uplink %s: %s",
				devargs, rte_strerror(-ret));
		}
		u->vdev = 1;
		ret = rte_eth_dev_get_port_by_name(u->name, &u->port_id);
		if (ret < 0)
			goto fail;
		ret = dn_filter_port(u, &pkt_before);
		if (ret < 0)
			goto fail_quiet;
	}
	step = "device info";
	ret = rte_eth_dev_info_get(u->port_id, &info);
	if (ret < 0)
		goto fail;
	memset(&conf, 0, sizeof(conf));
	{
		uint32_t limit = info.max_rx_pktlen - RTE_ETHER_HDR_LEN -
			RTE_ETHER_CRC_LEN;

		conf.rxmode.mtu = mtu < limit ? mtu : limit;
	}
	step = "configure";
	ret = rte_eth_dev_configure(u->port_id, 1, 1, &conf);
	if (ret < 0)
		goto fail;
	if (xdp) {
		ret = dn_xdp_fits(u->iface, mtu, frame_room);
		if (ret < 0)
			goto fail_quiet;
	}
	/* Some devices (net_af_packet) hand over whole ring frames, which
	 * must fit one mbuf: received frames get a pool of their own (for
	 * net_af_xdp, its UMEM). */
	ret = dn_pktpool_create("dn_uplink_pool",
		xdp ? DN_XDP_MBUFS : DN_UPLINK_MBUFS, 0,
		xdp ? frame_room + DN_XDP_HEADROOM : frame_room, &u->rx_pool);
	if (ret < 0)
		goto fail_quiet;
	if (xdp)
		dn_scan_sockets(AF_XDP, &xsk_before);
	/* net_af_xdp makes its socket and UMEM here, and attaches its XDP
	 * program to the interface. */
	step = "receive queue";
	ret = rte_eth_rx_queue_setup(u->port_id, 0, 1024,
		rte_eth_dev_socket_id(u->port_id), NULL, u->rx_pool);
	if (ret < 0)
		goto fail;
	step = "transmit queue";
	ret = rte_eth_tx_queue_setup(u->port_id, 0, 1024,
		rte_eth_dev_socket_id(u->port_id), NULL);
	if (ret < 0)
		goto fail;
	step = "start";
	ret = rte_eth_dev_start(u->port_id);
	if (ret < 0)
		goto fail;
	if (ours) {
		ret = dn_xdp_configure(u->iface, subnet, netmask, p6);
		if (ret < 0)
			goto fail_quiet;
		u->c.xdp_filter = 1;
	}
	if (xdp) {
		dn_scan_sockets(AF_XDP, &xsk_after);
		ret = dn_take_xsk(u, &xsk_before, &xsk_after);
		if (ret < 0)
			goto fail_quiet;
	}
	/* Frames for this host's endpoints carry our MAC, but neighbours
	 * may still send to the others' (gratuitous learning). */
	rte_eth_promiscuous_enable(u->port_id);
	rte_eth_macaddr_get(u->port_id, &u->mac);
	dn_probe_flow(u);
	if (!xdp && u->iface[0] != '\0') {
		ret = dn_wake_socket(u);
		if (ret < 0)
			goto fail_quiet;
	}
	*out = u;
	return 0;

fail:
	dn_uplink_close(u);
	return dn_error(ret, "cannot set up uplink %s (%s): %s%s", devargs,
		step, rte_strerror(-ret), xdp ? " (DPDK's log says why, "
		"DOCKNET_DPDK_LOG_LEVEL=info)" : "");
fail_quiet:
	dn_uplink_close(u);
	return ret;
}

void
dn_uplink_close(struct dn_uplink *u)
{
	unsigned int i;

	for (i = 0; i < u->n_held; i++)
		rte_pktmbuf_free(u->held[i].m);
	rte_pktmbuf_free_bulk(u->tx, u->n_tx);
	rte_eth_dev_stop(u->port_id);
	rte_eth_dev_close(u->port_id);
	if (u->vdev)
		rte_vdev_uninit(u->name);
	/* The PMD closed its AF_XDP sockets (u->xsk_fds) with the port. */
	dn_restore_promisc(u);
	if (u->wake_fd >= 0)
		close(u->wake_fd);
	if (u->rx_pool != NULL)
		rte_mempool_free(u->rx_pool);
	free(u);
}

int
dn_uplink_wake_fds(const struct dn_uplink *u, int *fds, int max)
{
	int n = 0, i;

	if (u->wake_fd >= 0 && n < max)
		fds[n++] = u->wake_fd;
	for (i = 0; i < u->n_xsk && n < max; i++)
		fds[n++] = u->xsk_fds[i];
	return n;
}

int
dn_uplink_woken(struct dn_uplink *u, int fd, int *again)
{
	char buf[64];
	int i;

	if (fd == u->wake_fd && fd >= 0) {
		while (recv(u->wake_fd, buf, sizeof(buf), MSG_TRUNC) > 0)
			;
		*again = 1;
		return 1;
	}
	/* An AF_XDP socket is readable while its Rx ring holds frames: the
	 * next burst takes them, nothing to drain. */
	for (i = 0; i < u->n_xsk; i++)
		if (fd == u->xsk_fds[i])
			return 1;
	return 0;
}

void
dn_uplink_counters(const struct dn_uplink *u, struct dn_uplink_counters *c)
{
	*c = u->c;
}
