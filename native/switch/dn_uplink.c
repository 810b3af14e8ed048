#include <errno.h>
#include <net/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

#define DN_ARP_SLOTS 1024	/* open addressing, power of two */
#define DN_HOLD 64
#define DN_BURST 32
#define DN_UPLINK_MBUFS 2047

struct dn_arp_entry {
	uint32_t ip;		/* 0: empty */
	struct rte_ether_addr mac;
};

struct dn_held {
	uint32_t ip;
	struct rte_mbuf *m;
};

struct dn_uplink {
	char name[64];
	uint16_t port_id;
	int vdev;
	struct rte_mempool *pool;	/* the switch's: for what we make */
	struct rte_mempool *rx_pool;	/* ours: sized for the device's frames */
	struct rte_ether_addr mac;
	uint32_t my_ip;
	uint32_t subnet;
	uint32_t netmask;
	dn_uplink_is_local_fn is_local;
	void *ctx;
	struct dn_arp_entry arp[DN_ARP_SLOTS];
	struct dn_held held[DN_HOLD];
	unsigned int n_held;
	struct rte_mbuf *tx[DN_BURST];
	uint16_t n_tx;
	int wake_fd;
	struct dn_uplink_counters c;
};

/* ---- ARP table ---- */

static unsigned int
dn_arp_hash(uint32_t ip)
{
	return (ip * 2654435761u) & (DN_ARP_SLOTS - 1);
}

static struct dn_arp_entry *
dn_arp_find(struct dn_uplink *u, uint32_t ip)
{
	unsigned int i, h = dn_arp_hash(ip);

	for (i = 0; i < DN_ARP_SLOTS; i++) {
		struct dn_arp_entry *e = &u->arp[(h + i) & (DN_ARP_SLOTS - 1)];

		if (e->ip == ip)
			return e;
		if (e->ip == 0)
			return NULL;
	}
	return NULL;
}

static void
dn_flush_held(struct dn_uplink *u, uint32_t ip);

static void
dn_arp_learn(struct dn_uplink *u, uint32_t ip, const struct rte_ether_addr *mac)
{
	unsigned int i, h = dn_arp_hash(ip);

	if (ip == 0 || (ip & u->netmask) != u->subnet || u->is_local(u->ctx, ip))
		return;
	for (i = 0; i < DN_ARP_SLOTS; i++) {
		struct dn_arp_entry *e = &u->arp[(h + i) & (DN_ARP_SLOTS - 1)];

		if (e->ip == ip || e->ip == 0) {
			int fresh = e->ip == 0;

			e->ip = ip;
			e->mac = *mac;
			if (fresh)
				dn_flush_held(u, ip);
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

/* internal links carry TCP and UDP without checksums; a host on the wire
 * needs them. */
static void
dn_fill_checksums(struct rte_mbuf *m)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m,
		struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
	uint16_t hlen = (uint16_t)((ip->version_ihl & 0xf) * 4);
	void *l4 = (char *)ip + hlen;

	if (m->nb_segs != 1)
		return;	/* frames are single-segment on our links */
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
dn_flush_held(struct dn_uplink *u, uint32_t ip)
{
	struct dn_arp_entry *e = dn_arp_find(u, ip);
	unsigned int i = 0;

	while (e != NULL && i < u->n_held) {
		if (u->held[i].ip == ip) {
			dn_emit(u, u->held[i].m, &e->mac);
			u->held[i] = u->held[--u->n_held];
		} else {
			i++;
		}
	}
}

void
dn_uplink_send(struct dn_uplink *u, struct rte_mbuf *m, uint32_t dst_ip)
{
	struct dn_arp_entry *e = dn_arp_find(u, dst_ip);
	unsigned int i;
	int asked = 0;

	if (e != NULL) {
		dn_emit(u, m, &e->mac);
		return;
	}
	for (i = 0; i < u->n_held; i++)
		if (u->held[i].ip == dst_ip)
			asked = 1;
	if (u->n_held == DN_HOLD) {
		u->c.unresolved_dropped++;
		rte_pktmbuf_free(m);
	} else {
		u->held[u->n_held++] = (struct dn_held){ dst_ip, m };
	}
	if (!asked)
		dn_arp_send(u, RTE_ARP_OP_REQUEST, dst_ip, NULL, u->my_ip);
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
	dn_arp_learn(u, sip, &arp->arp_data.arp_sha);
	if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) &&
	    (tip == u->my_ip || u->is_local(u->ctx, tip)))
		dn_arp_send(u, RTE_ARP_OP_REPLY, sip, &arp->arp_data.arp_sha,
			tip);
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
		ip = (struct rte_ipv4_hdr *)(eth + 1);
		if (eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
		    !u->is_local(u->ctx, rte_be_to_cpu_32(ip->dst_addr))) {
			/* Not for this host (the segment is shared). */
			rte_pktmbuf_free(m);
			continue;
		}
		dn_arp_learn(u, rte_be_to_cpu_32(ip->src_addr), &eth->src_addr);
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

static int
dn_wake_socket(const char *devargs)
{
	char iface[IF_NAMESIZE] = "";
	const char *p = strstr(devargs, "iface=");
	struct sockaddr_ll sll;
	int fd, small = 4096;
	size_t i;

	if (p == NULL)
		return -1;	/* not an af_packet-like port: no wake socket */
	p += strlen("iface=");
	for (i = 0; i < sizeof(iface) - 1 && p[i] && p[i] != ','; i++)
		iface[i] = p[i];
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
		htons(ETH_P_ALL));
	if (fd < 0)
		return -1;
	/* Only "something arrived" matters: a tiny buffer, so the kernel
	 * drops the copies instead of queueing them. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex(iface);
	if (sll.sll_ifindex == 0 ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
dn_uplink_open(const char *devargs, struct rte_mempool *pool, uint16_t mtu,
	uint16_t frame_room, uint32_t my_ip, uint32_t subnet, uint32_t netmask,
	dn_uplink_is_local_fn is_local, void *ctx, struct dn_uplink **out)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	struct dn_uplink *u;
	const char *comma = strchr(devargs, ',');
	size_t nlen = comma ? (size_t)(comma - devargs) : strlen(devargs);
	int ret;

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
	u->is_local = is_local;
	u->ctx = ctx;
	u->wake_fd = -1;
	if (rte_eth_dev_get_port_by_name(u->name, &u->port_id) != 0) {
		/* Not a probed device (PCI): a virtual one to create. */
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
	}
	ret = rte_eth_dev_info_get(u->port_id, &info);
	if (ret < 0)
		goto fail;
	memset(&conf, 0, sizeof(conf));
	{
		uint32_t limit = info.max_rx_pktlen - RTE_ETHER_HDR_LEN -
			RTE_ETHER_CRC_LEN;

		conf.rxmode.mtu = mtu < limit ? mtu : limit;
	}
	ret = rte_eth_dev_configure(u->port_id, 1, 1, &conf);
	if (ret < 0)
		goto fail;
	/* Some devices (net_af_packet) hand over whole ring frames, which
	 * must fit one mbuf: received frames get a pool of their own. */
	ret = dn_pktpool_create("dn_uplink_pool", DN_UPLINK_MBUFS, 0,
		frame_room, &u->rx_pool);
	if (ret < 0)
		goto fail_quiet;
	ret = rte_eth_rx_queue_setup(u->port_id, 0, 1024,
		rte_eth_dev_socket_id(u->port_id), NULL, u->rx_pool);
	if (ret < 0)
		goto fail;
	ret = rte_eth_tx_queue_setup(u->port_id, 0, 1024,
		rte_eth_dev_socket_id(u->port_id), NULL);
	if (ret < 0)
		goto fail;
	ret = rte_eth_dev_start(u->port_id);
	if (ret < 0)
		goto fail;
	/* Frames for this host's endpoints carry our MAC, but neighbours
	 * may still send to the others' (gratuitous learning). */
	rte_eth_promiscuous_enable(u->port_id);
	rte_eth_macaddr_get(u->port_id, &u->mac);
	dn_probe_flow(u);
	u->wake_fd = dn_wake_socket(devargs);
	*out = u;
	return 0;

fail:
	dn_uplink_close(u);
	return dn_error(ret, "cannot set up uplink %s: %s", devargs,
		rte_strerror(-ret));
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
	if (u->wake_fd >= 0)
		close(u->wake_fd);
	if (u->rx_pool != NULL)
		rte_mempool_free(u->rx_pool);
	free(u);
}

int
dn_uplink_wake_fd(const struct dn_uplink *u)
{
	return u->wake_fd;
}

void
dn_uplink_drain_wake(struct dn_uplink *u)
{
	char buf[64];

	while (recv(u->wake_fd, buf, sizeof(buf), MSG_TRUNC) > 0)
		;
}

void
dn_uplink_counters(const struct dn_uplink *u, struct dn_uplink_counters *c)
{
	*c = u->c;
}
