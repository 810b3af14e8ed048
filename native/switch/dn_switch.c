/*
 * Master switch (see dn_switch.h).
 *
 * The switch thread owns every port's data path. Other threads (the Python
 * control plane) create and destroy ports, and hand them over or take them
 * back through a one-slot mailbox the thread checks each iteration; the
 * thread therefore never sees a port half set up or already closed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>
#include <rte_cycles.h>

#include "dn_addr6.h"
#include "dn_clock.h"
#include "dn_doorbell.h"
#include "dn_eal.h"
#include "dn_error.h"
#include "dn_fault.h"
#include "dn_flow.h"
#include "dn_limit.h"
#include "dn_linkmem.h"
#include "dn_pktpool.h"
#include "dn_policy.h"
#include "dn_ringmbuf.h"
#include "dn_spin.h"
#include "dn_switch.h"
#include "dn_uplink.h"

#define DN_BURST 32
#define DN_NO_SLOT 0xffff
#define DN_MAILBOX_ADD 1
#define DN_MAILBOX_REMOVE 2
#define DN_MAILBOX_QUIT 3
#define DN_MAILBOX_CALL 4
/* Token buckets are refilled once a millisecond. */
#define DN_TICK_US 1000
/* An uplink with no wake-up descriptor is looked at this often when idle. */
#define DN_UPLINK_NAP_MS 5
/* After this many spins in a row that ran out the thread sleeps as soon as
 * it is idle (dn_spin.h). The slave pollers use the same number
 * (aiodocknet/poller.py). */
#define DN_SPIN_MISSES 3
/* Runnable tasks beyond the cores before a spinning switch thread sleeps
 * instead. This thread and both ends of a stream spinning on two cores,
 * plus a passer-by, is still a fair fight: a slack of 1 made a lone native
 * stream lose up to half its rate to any fourth task. More is a host where
 * a spin delays the services the frames come from (the mesh at 16 users:
 * half the master's CPU per request). */
#define DN_CROWD_SLACK 2

struct dn_txq {
	struct rte_mbuf *m[DN_BURST];
	uint16_t n;
};

/* One process's share of a port: the rings it shares with the switch. */
struct dn_slot_link {
	struct dn_linkmem mem;	/* mapped while in_use */
	struct dn_doorbell *bell;
	struct dn_fr from_slave;
	struct dn_fr to_slave;
	int slave_wake_fd;
	uint8_t in_use;		/* owned by the control side */
	struct dn_txq txq;
	/* Ports its process listens on (a bit each), NULL until it listens
	 * on one; installed and read by the switch thread. */
	uint64_t *listen;
};

#define DN_LISTEN_WORDS (65536 / 64)

/* What a port has once a second process joins it (dn_switch_join): the
 * other links and which connection is whose. Allocated at the first join,
 * kept until the port goes. */
struct dn_steer {
	struct dn_slot_link link[DN_MAX_LINKS - 1];	/* links 1 .. */
	uint32_t live;		/* bit k: link k is polled (switch thread) */
	uint32_t first;		/* which link a pass reads first */
	uint64_t dropped;	/* SYNs with no room in the table */
	struct dn_flows flows;
};

struct dn_slot {
	int in_use;		/* owned by the control side */
	int active;		/* owned by the switch thread */
	uint32_t ip;
	/* Link 0: the one the port was made with; with no other, the whole
	 * data path touches only this. */
	struct dn_slot_link l0;
	struct dn_steer *steer;	/* NULL until a second link joins */
	unsigned int n_links;	/* links in use (control side) */
	uint8_t dirty;
	/* The slot's fault injection is on (sw->faults[slot]). In the byte
	 * before tenant that alignment leaves free, next to what every frame
	 * to this link touches anyway: with no faults the slot is as it was,
	 * and the cost is one branch. */
	uint8_t faulty;
	uint16_t tenant;
	struct dn_bucket egress;
	struct dn_bucket ingress;
	struct dn_port_counters c;
};

struct dn_switch {
	struct dn_switch_config cfg;
	struct rte_mempool *pool;
	struct dn_slot *slots;
	uint16_t *host_slot;	/* host part of the address -> slot */
	uint32_t hosts;
	uint16_t *active_list;	/* slots the thread polls */
	unsigned int n_active;
	uint16_t *dirty_list;
	unsigned int n_dirty;
	struct rte_ether_addr gw_mac;
	struct dn_prefix6 p6;	/* len 0: IPv6 frames are malformed */

	pthread_t thread;
	int thread_started;
	int epfd;
	int ctl_fd;		/* wakes the thread for mailbox commands */

	pthread_mutex_t lock;	/* serialises control-side callers */
	pthread_mutex_t mb_lock;
	pthread_cond_t mb_done;
	_Atomic int mb_pending;
	int mb_op;
	int mb_slot;
	void (*mb_fn)(struct dn_switch *sw, void *arg);
	void *mb_arg;

	struct dn_policy *policy;
	struct dn_uplink *uplink;
	int uplink_rang;	/* its wake socket woke the last sleep */
	int uplink_wakes;	/* descriptors of it the sleep waits on */
	uint64_t tick_cycles;
	uint64_t last_tick;
	unsigned int queued;	/* frames waiting in token buckets */
	unsigned int n_limited;	/* active endpoints with a limit */

	/* The switch thread's own: when to stop spinning. */
	struct dn_spin spin;
	/* Seconds, for the flow tables' ages: set on busy passes and after
	 * sleeps, never read per frame. */
	uint32_t now_s;

	struct dn_switch_counters counters;

	/* Fault injection, kept apart so that nothing above moves. */
	unsigned int held;	/* frames held back by fault injection */
	struct dn_fault *faults;	/* per slot, towards the endpoint */
	/* The uplink's faults, by direction (DN_EGRESS: towards the wire). */
	struct dn_fault up_fault[2];
	uint8_t up_faulty[2];
};

void
dn_switch_mac_of(uint32_t ip, uint8_t *mac)
{
	mac[0] = 0x02;
	mac[1] = 0x00;
	mac[2] = (uint8_t)(ip >> 24);
	mac[3] = (uint8_t)(ip >> 16);
	mac[4] = (uint8_t)(ip >> 8);
	mac[5] = (uint8_t)ip;
}

static inline int
dn_in_subnet(const struct dn_switch *sw, uint32_t ip)
{
	return (ip & sw->cfg.netmask) == sw->cfg.subnet;
}

static inline int
dn_in_range(const struct dn_switch *sw, uint32_t ip)
{
	return (ip & sw->cfg.range_mask) == sw->cfg.range;
}

/* A slot number from a caller: in range and holding an endpoint. */
static inline int
dn_slot_in_use(const struct dn_switch *sw, int slot)
{
	return slot >= 0 && (unsigned int)slot < sw->cfg.max_endpoints &&
		sw->slots[slot].in_use;
}

static inline uint16_t
dn_slot_of(const struct dn_switch *sw, uint32_t ip)
{
	if (!dn_in_subnet(sw, ip))
		return DN_NO_SLOT;
	return sw->host_slot[ip & ~sw->cfg.netmask];
}

/* ---- frame handling (switch thread) ---- */

static inline struct dn_slot_link *
dn_link_of(struct dn_slot *s, unsigned int k)
{
	return k == 0 ? &s->l0 : &s->steer->link[k - 1];
}

static inline int
dn_lowest_link(uint32_t live)
{
	return live != 0 ? __builtin_ctz(live) : -1;
}

int
dn_switch_link_ports(int link, uint16_t *lo, uint16_t *hi)
{
	if (link < 0 || link >= DN_MAX_LINKS)
		return dn_error(-EINVAL, "link %d out of range (0..%d)", link,
			DN_MAX_LINKS - 1);
	if (link == 0) {
		*lo = DN_LINK0_PORT_LO;
		*hi = 65535;
	} else {
		*lo = (uint16_t)(DN_LINK_PORT_BASE + (link - 1) *
			DN_LINK_PORTS);
		*hi = (uint16_t)(*lo + DN_LINK_PORTS - 1);
	}
	return 0;
}

/* The link whose ephemeral range holds port, or -1. */
static inline int
dn_link_of_port(uint16_t port)
{
	if (port >= DN_LINK0_PORT_LO)
		return 0;
	if (port >= DN_LINK_PORT_BASE && port < DN_LINK_PORT_BASE +
	    (DN_MAX_LINKS - 1) * DN_LINK_PORTS)
		return 1 + (port - DN_LINK_PORT_BASE) / DN_LINK_PORTS;
	return -1;
}

static inline int
dn_listens(const struct dn_slot_link *l, uint16_t port)
{
	return l->listen != NULL && (l->listen[port / 64] >> (port % 64) & 1);
}

/* A new connection to port: one of the links listening on it, chosen by
 * the connection's hash so that they share them evenly; -1 if none. */
static int
dn_pick_listener(struct dn_slot *s, uint16_t port, uint32_t spread)
{
	uint8_t cand[DN_MAX_LINKS];
	unsigned int n = 0;
	uint32_t live = s->steer->live;

	while (live != 0) {
		unsigned int k = (unsigned int)__builtin_ctz(live);

		live &= live - 1;
		if (dn_listens(dn_link_of(s, k), port))
			cand[n++] = (uint8_t)k;
	}
	return n == 0 ? -1 : cand[spread % n];
}

/* What steering, the flow table and the policy read of a frame, whatever
 * its family. */
struct dn_pkt {
	uint8_t proto;
	uint8_t v6;
	uint32_t src;		/* IPv4, or the IPv6 address's twin; host order */
	uint32_t dst;
	const uint8_t *l4;
	uint32_t l4_len;	/* bytes of it in the frame */
};

/* A frame the switch forwards (checked on its way in, dn_handle_frame, or
 * from the uplink) read for steering; -1 for anything not IPv4 or IPv6
 * and for the neighbour discovery the switch itself answers with. */
static int
dn_parse(const struct dn_switch *sw, const struct rte_mbuf *m,
	struct dn_pkt *p)
{
	uint32_t len = rte_pktmbuf_data_len(m);
	const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m,
		const struct rte_ether_hdr *);
	const uint32_t eh = sizeof(*eth);

	if (len >= eh + sizeof(struct rte_ipv4_hdr) &&
	    eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
		const struct rte_ipv4_hdr *ip = (const void *)(eth + 1);
		uint32_t hlen = (uint32_t)(ip->version_ihl & 0xf) * 4;

		p->proto = ip->next_proto_id;
		p->v6 = 0;
		p->src = rte_be_to_cpu_32(ip->src_addr);
		p->dst = rte_be_to_cpu_32(ip->dst_addr);
		p->l4 = (const uint8_t *)ip + hlen;
		p->l4_len = len >= eh + hlen ? len - eh - hlen : 0;
		return 0;
	}
	if (len >= eh + DN_IP6_HLEN &&
	    eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		const struct rte_ipv6_hdr *ip = (const void *)(eth + 1);
		uint32_t plen = rte_be_to_cpu_16(ip->payload_len);

		p->proto = ip->proto;
		p->v6 = 1;
		p->src = p->dst = 0;
		dn_twin_of(&sw->p6, ip->src_addr, &p->src);
		dn_twin_of(&sw->p6, ip->dst_addr, &p->dst);
		p->l4 = (const uint8_t *)(ip + 1);
		p->l4_len = plen < len - eh - DN_IP6_HLEN ? plen :
			len - eh - DN_IP6_HLEN;
		if (p->proto == IPPROTO_ICMPV6 && p->l4_len >= 1 &&
		    p->l4[0] >= DN_ICMP6_RS && p->l4[0] <= DN_ICMP6_REDIRECT)
			return -1;
		return 0;
	}
	return -1;
}

/* Which link of a port with several a frame for it goes to, or -1 to drop
 * it (see dn_switch.h). Frames the switch made for the port's own sender
 * (ARP replies) carry the asker's link in m->port. */
static int __attribute__((noinline))
dn_steer(struct dn_switch *sw, struct dn_slot *s, struct rte_mbuf *m)
{
	struct dn_steer *st = s->steer;
	struct dn_pkt p;
	uint16_t lport, rport;
	uint32_t rip;
	int k;

	if (dn_parse(sw, m, &p) < 0) {
		if (m->port < DN_MAX_LINKS && (st->live >> m->port & 1))
			return m->port;
		return dn_lowest_link(st->live);
	}
	if (p.proto == IPPROTO_TCP && p.l4_len >= sizeof(struct rte_tcp_hdr)) {
		const struct rte_tcp_hdr *tcp = (const void *)p.l4;
		uint8_t flags = tcp->tcp_flags;
		int syn_only = (flags & RTE_TCP_SYN_FLAG) &&
			!(flags & RTE_TCP_ACK_FLAG);
		struct dn_flow *f;

		rip = p.src;
		rport = rte_be_to_cpu_16(tcp->src_port);
		lport = rte_be_to_cpu_16(tcp->dst_port);
		f = dn_flow_find(&st->flows, rip, rport, lport, p.v6);
		/* A SYN on a closing connection's ports is a new connection
		 * (the peer reuses them after its TIME-WAIT). */
		if (f != NULL && (st->live >> f->link & 1) &&
		    !(syn_only && f->state == DN_FLOW_CLOSING)) {
			k = f->link;
			if (flags & RTE_TCP_RST_FLAG) {
				dn_flow_remove(&st->flows, f);
			} else if (flags & RTE_TCP_FIN_FLAG) {
				if (f->state != DN_FLOW_CLOSING) {
					f->state = DN_FLOW_CLOSING;
					f->seen = sw->now_s;
				}
			} else if (f->state != DN_FLOW_CLOSING) {
				if (!syn_only)
					f->state = DN_FLOW_OPEN;
				f->seen = sw->now_s;
			}
			if (flags & RTE_TCP_ACK_FLAG)
				f->ack = rte_be_to_cpu_32(tcp->recv_ack);
			return k;
		}
		if (syn_only) {
			k = dn_pick_listener(s, lport, dn_flow_spread(rip,
				rport, lport, p.v6));
			if (k >= 0) {
				if (dn_flow_insert(&st->flows, rip, rport,
				    lport, p.v6, (uint8_t)k, DN_FLOW_SYN,
				    sw->now_s,
				    st->live) == NULL) {
					/* As a full SYN queue: the client
					 * tries again. */
					st->dropped++;
					return -1;
				}
				return k;
			}
		}
	} else if (p.proto == IPPROTO_UDP &&
		   p.l4_len >= sizeof(struct rte_udp_hdr)) {
		const struct rte_udp_hdr *udp = (const void *)p.l4;

		lport = rte_be_to_cpu_16(udp->dst_port);
	} else {
		return dn_lowest_link(st->live);
	}
	/* Replies to a connection a process opened: its own ports. */
	k = dn_link_of_port(lport);
	if (k >= 0 && (st->live >> k & 1))
		return k;
	/* Nobody's: the lowest link's stack answers as a host would (a
	 * reset for TCP). */
	return dn_lowest_link(st->live);
}

/* What a link of a port with several sends tells the table: connections
 * it opens (outside its own range, which steers by itself), and the end
 * of its connections. A link changes only its own entries. */
static void __attribute__((noinline))
dn_flow_egress(struct dn_switch *sw, struct dn_slot *s, unsigned int link,
	const struct dn_pkt *p)
{
	struct dn_steer *st = s->steer;
	const struct rte_tcp_hdr *tcp;
	struct dn_flow *f;
	uint32_t rip;
	uint16_t rport, lport;
	uint8_t flags;

	if (p->proto != IPPROTO_TCP || p->l4_len < sizeof(*tcp))
		return;
	tcp = (const struct rte_tcp_hdr *)p->l4;
	flags = tcp->tcp_flags;
	rip = p->dst;
	rport = rte_be_to_cpu_16(tcp->dst_port);
	lport = rte_be_to_cpu_16(tcp->src_port);
	f = dn_flow_find(&st->flows, rip, rport, lport, p->v6);
	if (f != NULL && f->link != link && (st->live >> f->link & 1))
		return;	/* another process's connection */
	if (flags & RTE_TCP_RST_FLAG) {
		if (f != NULL)
			dn_flow_remove(&st->flows, f);
	} else if (flags & RTE_TCP_FIN_FLAG) {
		if (f != NULL && f->state != DN_FLOW_CLOSING) {
			f->state = DN_FLOW_CLOSING;
			f->seen = sw->now_s;
		}
	} else if ((flags & RTE_TCP_SYN_FLAG) && !(flags & RTE_TCP_ACK_FLAG) &&
		   dn_link_of_port(lport) != (int)link) {
		/* Held as briefly as an incoming SYN's until the peer
		 * answers, so that SYNs to nowhere fill nothing for long. */
		dn_flow_insert(&st->flows, rip, rport, lport, p->v6,
			(uint8_t)link, DN_FLOW_SYN, sw->now_s, st->live);
	}
}

static void
dn_txq_put(struct dn_switch *sw, uint16_t slot, struct rte_mbuf *m)
{
	struct dn_slot *s = &sw->slots[slot];
	struct dn_slot_link *l = &s->l0;

	if (unlikely(s->steer != NULL)) {
		int k = dn_steer(sw, s, m);

		if (k < 0) {
			rte_pktmbuf_free(m);
			return;
		}
		l = dn_link_of(s, (unsigned int)k);
	}
	if (l->txq.n == DN_BURST) {
		s->c.drop_ring_full++;
		rte_pktmbuf_free(m);
		return;
	}
	l->txq.m[l->txq.n++] = m;
	if (!s->dirty) {
		s->dirty = 1;
		sw->dirty_list[sw->n_dirty++] = slot;
	}
}

static void
dn_link_flush(struct dn_slot *s, struct dn_slot_link *l)
{
	uint16_t k;

	for (k = 0; k < l->txq.n; k++) {
		if (dn_fr_put_mbuf(&l->to_slave, l->txq.m[k]) == 0) {
			s->c.tx_frames++;
			s->c.tx_bytes += l->txq.m[k]->pkt_len;
		} else {
			/* The slave's ring is full: it is not keeping up.
			 * Holding frames would stall everyone else; TCP
			 * recovers what is dropped here. */
			s->c.drop_ring_full++;
		}
	}
	rte_pktmbuf_free_bulk(l->txq.m, l->txq.n);
	l->txq.n = 0;
	if (dn_fr_publish(&l->to_slave) &&
	    dn_doorbell_ring(&l->bell->slave_asleep,
	    &l->bell->slave_wakeups, l->slave_wake_fd) > 0)
		s->c.wakeups++;
}

static void
dn_flush(struct dn_switch *sw)
{
	unsigned int i;

	for (i = 0; i < sw->n_dirty; i++) {
		struct dn_slot *s = &sw->slots[sw->dirty_list[i]];

		s->dirty = 0;
		if (likely(s->steer == NULL)) {
			dn_link_flush(s, &s->l0);
		} else {
			uint32_t live = s->steer->live;

			while (live != 0) {
				unsigned int k = (unsigned int)
					__builtin_ctz(live);
				struct dn_slot_link *l = dn_link_of(s, k);

				live &= live - 1;
				if (l->txq.n > 0)
					dn_link_flush(s, l);
			}
		}
	}
	sw->n_dirty = 0;
}

/* A fault's frames to their link. Out of line: the path with no faults
 * stays as it was. */
static void __attribute__((noinline, cold))
dn_fault_tx(struct dn_switch *sw, uint16_t slot, struct rte_mbuf *m)
{
	struct dn_slot *s = &sw->slots[slot];
	struct rte_mbuf *out[DN_FAULT_MAX_OUT];
	struct dn_fault *f = &sw->faults[slot];
	int was_held = f->held != NULL;
	unsigned int n, k;

	n = dn_fault_apply(f, m, sw->pool, out);
	sw->held += (unsigned int)(f->held != NULL) - was_held;
	s->faulty = (uint8_t)dn_fault_on(f);
	for (k = 0; k < n; k++)
		dn_txq_put(sw, slot, out[k]);
}

/* Onto an endpoint's link (past its limiter). */
static inline void
dn_enqueue_tx(struct dn_switch *sw, uint16_t slot, struct rte_mbuf *m)
{
	if (unlikely(sw->slots[slot].faulty)) {
		dn_fault_tx(sw, slot, m);
		return;
	}
	dn_txq_put(sw, slot, m);
}

/* Towards an endpoint, through its ingress limit when it has one. */
static void
dn_enqueue(struct dn_switch *sw, uint16_t slot, struct rte_mbuf *m)
{
	struct dn_slot *s = &sw->slots[slot];

	if (dn_bucket_limited(&s->ingress) &&
	    !dn_bucket_take(&s->ingress, m->pkt_len)) {
		if (dn_bucket_enqueue(&s->ingress, m) < 0) {
			s->c.ingress_dropped++;
			rte_pktmbuf_free(m);
		} else {
			s->c.ingress_delayed++;
			sw->queued++;
		}
		return;
	}
	dn_enqueue_tx(sw, slot, m);
}

/* Proxy ARP: the switch knows every address's MAC, so a request never
 * needs flooding. The request is turned into the reply in place. */
static void
dn_handle_arp(struct dn_switch *sw, uint16_t from, struct rte_mbuf *m)
{
	struct dn_slot *s = &sw->slots[from];
	struct rte_ether_hdr *eth;
	struct rte_arp_hdr *arp;
	uint32_t tip;
	uint8_t mac[6];

	if (rte_pktmbuf_data_len(m) < sizeof(*eth) + sizeof(*arp)) {
		s->c.drop_malformed++;
		rte_pktmbuf_free(m);
		return;
	}
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	arp = (struct rte_arp_hdr *)(eth + 1);
	tip = rte_be_to_cpu_32(arp->arp_data.arp_tip);
	if (arp->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) ||
	    !dn_in_subnet(sw, tip) ||
	    rte_be_to_cpu_32(arp->arp_data.arp_sip) != s->ip) {
		/* Replies and gratuitous ARP need no answer. */
		rte_pktmbuf_free(m);
		return;
	}
	dn_switch_mac_of(tip, mac);
	arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
	arp->arp_data.arp_tha = arp->arp_data.arp_sha;
	arp->arp_data.arp_tip = arp->arp_data.arp_sip;
	memcpy(&arp->arp_data.arp_sha, mac, 6);
	arp->arp_data.arp_sip = rte_cpu_to_be_32(tip);
	eth->dst_addr = eth->src_addr;
	memcpy(&eth->src_addr, mac, 6);
	s->c.arp_replies++;
	dn_enqueue(sw, from, m);
}

/* Turns segment tcp (seg_len bytes of data) into the reset that a host
 * with no such connection would send (RFC 793 "reset generation"), ports
 * swapped, header 20 bytes; -1 for a reset, which gets none. */
static int
dn_tcp_to_reset(struct rte_tcp_hdr *tcp, uint32_t seg_len)
{
	uint8_t flags = tcp->tcp_flags;
	rte_be16_t p;

	if (flags & RTE_TCP_RST_FLAG)
		return -1;
	if (flags & RTE_TCP_SYN_FLAG)
		seg_len++;
	if (flags & RTE_TCP_FIN_FLAG)
		seg_len++;
	if (flags & RTE_TCP_ACK_FLAG) {
		tcp->sent_seq = tcp->recv_ack;
		tcp->recv_ack = 0;
		tcp->tcp_flags = RTE_TCP_RST_FLAG;
	} else {
		tcp->recv_ack = rte_cpu_to_be_32(
			rte_be_to_cpu_32(tcp->sent_seq) + seg_len);
		tcp->sent_seq = 0;
		tcp->tcp_flags = RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG;
	}
	p = tcp->src_port;
	tcp->src_port = tcp->dst_port;
	tcp->dst_port = p;
	tcp->data_off = (sizeof(*tcp) / 4) << 4;
	tcp->rx_win = 0;
	tcp->tcp_urp = 0;
	return 0;
}

/* A TCP segment for an address with no endpoint gets a reset. */
static void
dn_send_reset(struct dn_switch *sw, uint16_t from, struct rte_mbuf *m,
	struct rte_ipv4_hdr *ip, struct rte_tcp_hdr *tcp, uint16_t ip_len)
{
	struct dn_slot *s = &sw->slots[from];
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint16_t hlen = (uint16_t)((ip->version_ihl & 0xf) * 4);
	uint16_t thlen = (uint16_t)((tcp->data_off >> 4) * 4);
	struct rte_ether_addr tmp;
	rte_be32_t a;

	if (dn_tcp_to_reset(tcp, ip_len - hlen - thlen) < 0) {
		rte_pktmbuf_free(m);
		return;
	}
	a = ip->src_addr;
	ip->src_addr = ip->dst_addr;
	ip->dst_addr = a;
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16(sizeof(*ip) + sizeof(*tcp));
	ip->time_to_live = 64;
	ip->fragment_offset = 0;
	ip->hdr_checksum = 0;
	/* Move the TCP header up behind a 20-byte IP header (options go). */
	if (hlen != sizeof(*ip))
		memmove((char *)ip + sizeof(*ip), tcp, sizeof(*tcp));
	tcp = (struct rte_tcp_hdr *)((char *)ip + sizeof(*ip));
	rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_pkt_len(m) -
		(sizeof(*eth) + sizeof(*ip) + sizeof(*tcp))));
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	tcp->cksum = 0;
	tcp->cksum = rte_ipv4_udptcp_cksum(ip, tcp);
	tmp = eth->src_addr;
	eth->src_addr = eth->dst_addr;
	eth->dst_addr = tmp;
	s->c.resets_sent++;
	dn_enqueue(sw, from, m);
}

/* The same for IPv6 (the header is the fixed one: dn_handle_ip6 let no
 * extension header through). */
static void
dn_send_reset6(struct dn_switch *sw, uint16_t from, struct rte_mbuf *m,
	struct rte_ipv6_hdr *ip, struct rte_tcp_hdr *tcp)
{
	struct dn_slot *s = &sw->slots[from];
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint32_t plen = rte_be_to_cpu_16(ip->payload_len);
	uint32_t thlen = (uint32_t)(tcp->data_off >> 4) * 4;
	struct rte_ether_addr tmp;
	uint8_t a[16];

	if (dn_tcp_to_reset(tcp, plen - thlen) < 0) {
		rte_pktmbuf_free(m);
		return;
	}
	memcpy(a, ip->src_addr, 16);
	memcpy(ip->src_addr, ip->dst_addr, 16);
	memcpy(ip->dst_addr, a, 16);
	ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
	ip->payload_len = rte_cpu_to_be_16(sizeof(*tcp));
	ip->hop_limits = 64;
	rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_pkt_len(m) -
		(sizeof(*eth) + DN_IP6_HLEN + sizeof(*tcp))));
	tcp->cksum = 0;
	tcp->cksum = rte_ipv6_udptcp_cksum(ip, tcp);
	tmp = eth->src_addr;
	eth->src_addr = eth->dst_addr;
	eth->dst_addr = tmp;
	s->c.resets_sent++;
	dn_enqueue(sw, from, m);
}

/* Proxy neighbour discovery, as dn_handle_arp: every address of the prefix
 * has the MAC of its IPv4 twin, so a solicitation (to the target's
 * solicited-node group, or to the target itself when a stack checks that
 * its neighbour is still there) is answered at once, in place, with the
 * advertisement the target would send. The asker's own address was checked
 * (dn_handle_ip6); RFC 4861 7.1.1's checks of the message decide the rest. */
static void
dn_handle_ns(struct dn_switch *sw, uint16_t from, struct rte_mbuf *m,
	struct rte_ipv6_hdr *ip, uint32_t plen)
{
	struct dn_slot *s = &sw->slots[from];
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	const struct dn_nd_msg *ns = (const struct dn_nd_msg *)(ip + 1);
	uint8_t target[16], asker[16], asker_mac[6], mac[6];
	uint32_t len = rte_pktmbuf_data_len(m), tip;

	if (plen < sizeof(*ns) || ns->code != 0 ||
	    ip->hop_limits != DN_ND_HOPLIM ||
	    !dn_twin_of(&sw->p6, ns->target, &tip) ||
	    (!dn_addr6_is_solicited(ip->dst_addr, ns->target) &&
	    memcmp(ip->dst_addr, ns->target, 16) != 0)) {
		rte_pktmbuf_free(m);
		return;
	}
	memcpy(target, ns->target, 16);
	memcpy(asker, ip->src_addr, 16);
	memcpy(asker_mac, eth->src_addr.addr_bytes, 6);
	if (len < DN_ND_FRAME_LEN) {
		if (rte_pktmbuf_append(m, (uint16_t)(DN_ND_FRAME_LEN - len)) ==
		    NULL) {
			rte_pktmbuf_free(m);
			return;
		}
	} else {
		rte_pktmbuf_trim(m, (uint16_t)(len - DN_ND_FRAME_LEN));
	}
	dn_switch_mac_of(tip, mac);
	dn_nd_write(eth, asker_mac, mac, target, asker, DN_ICMP6_NA,
		DN_NA_SOLICITED | DN_NA_OVERRIDE, target, mac);
	s->c.nd_replies++;
	dn_enqueue(sw, from, m);
}

static int
dn_policy_check(struct dn_switch *sw, uint16_t from, uint16_t to,
	const struct dn_pkt *p)
{
	uint16_t sport = 0, dport = 0;
	int syn_only = 0;

	if ((p->proto == IPPROTO_TCP &&
	     p->l4_len >= sizeof(struct rte_tcp_hdr)) ||
	    (p->proto == IPPROTO_UDP &&
	     p->l4_len >= sizeof(struct rte_udp_hdr))) {
		/* Both headers start with the two ports. */
		const struct rte_udp_hdr *l4 = (const void *)p->l4;

		sport = rte_be_to_cpu_16(l4->src_port);
		dport = rte_be_to_cpu_16(l4->dst_port);
		if (p->proto == IPPROTO_TCP) {
			uint8_t f = ((const struct rte_tcp_hdr *)l4)->tcp_flags;

			syn_only = (f & RTE_TCP_SYN_FLAG) &&
				!(f & RTE_TCP_ACK_FLAG);
		}
	} else if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		return 0;	/* truncated: no ports to judge by */
	}
	/* ICMPv6 is judged as ICMP: by tenant, not by port. */
	return dn_policy_allows(sw->policy, from, to,
		p->proto == IPPROTO_ICMPV6 ? IPPROTO_ICMP : p->proto,
		sport, dport, syn_only);
}

/* A frame from another host to this host's endpoint it is addressed to
 * (the uplink checked it is IPv4 or IPv6 and long enough). */
static void
dn_uplink_deliver(struct dn_switch *sw, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	uint32_t dst = 0;
	uint16_t slot;

	if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		struct rte_ipv6_hdr *ip6 = (struct rte_ipv6_hdr *)(eth + 1);

		if (!dn_twin_of(&sw->p6, ip6->dst_addr, &dst)) {
			rte_pktmbuf_free(m);
			return;
		}
	} else {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);

		dst = rte_be_to_cpu_32(ip->dst_addr);
	}
	slot = dn_slot_of(sw, dst);

	if (slot == DN_NO_SLOT) {
		rte_pktmbuf_free(m);
		return;
	}
	/* On the endpoint's side the frame comes from the gateway. */
	dn_switch_mac_of(dst, eth->dst_addr.addr_bytes);
	eth->src_addr = sw->gw_mac;
	dn_enqueue(sw, slot, m);
}

/* Towards the wire (not yet rewritten: the destination is in the IP
 * header, which dn_handle_frame checked) or from it. */
static void
dn_uplink_out(struct dn_switch *sw, int dir, struct rte_mbuf *m)
{
	if (dir == DN_EGRESS) {
		struct dn_pkt p;

		dn_parse(sw, m, &p);
		if (p.v6)
			dn_uplink_send6(sw->uplink, m, p.dst);
		else
			dn_uplink_send(sw->uplink, m, p.dst);
	} else {
		dn_uplink_deliver(sw, m);
	}
}

static void __attribute__((noinline, cold))
dn_fault_uplink(struct dn_switch *sw, int dir, struct rte_mbuf *m)
{
	struct dn_fault *f = &sw->up_fault[dir];
	struct rte_mbuf *out[DN_FAULT_MAX_OUT];
	int was_held = f->held != NULL;
	unsigned int n, k;

	n = dn_fault_apply(f, m, sw->pool, out);
	sw->held += (unsigned int)(f->held != NULL) - was_held;
	sw->up_faulty[dir] = (uint8_t)dn_fault_on(f);
	for (k = 0; k < n; k++)
		dn_uplink_out(sw, dir, out[k]);
}

/* A checked frame from the endpoint in slot from, by destination: to this
 * host's endpoint, to another host's through the uplink, or a reset (TCP)
 * or a drop for an address of this host's range with nobody there. */
static void
dn_forward(struct dn_switch *sw, uint16_t from, struct rte_mbuf *m,
	const struct dn_pkt *p, void *ip, uint16_t ip_len)
{
	struct dn_slot *s = &sw->slots[from];
	uint16_t to = dn_slot_of(sw, p->dst);

	/* Not for a link that has left (its frames may still wait in the
	 * limiter): a later link of the same index must start clean. */
	if (unlikely(s->steer != NULL) && m->port < DN_MAX_LINKS &&
	    (s->steer->live >> m->port & 1))
		dn_flow_egress(sw, s, m->port, p);
	if (to != DN_NO_SLOT) {
		if (sw->slots[to].tenant != s->tenant &&
		    !dn_policy_check(sw, s->tenant, sw->slots[to].tenant, p)) {
			s->c.drop_policy++;
			rte_pktmbuf_free(m);
			return;
		}
		dn_enqueue(sw, to, m);
		return;
	}
	if (sw->uplink != NULL && dn_in_subnet(sw, p->dst) &&
	    !dn_in_range(sw, p->dst)) {
		/* Another host's endpoint. */
		if (unlikely(sw->up_faulty[DN_EGRESS]))
			dn_fault_uplink(sw, DN_EGRESS, m);
		else if (p->v6)
			dn_uplink_send6(sw->uplink, m, p->dst);
		else
			dn_uplink_send(sw->uplink, m, p->dst);
		return;
	}
	s->c.drop_no_route++;
	if (p->proto == IPPROTO_TCP && p->l4_len >= sizeof(struct rte_tcp_hdr) &&
	    dn_in_subnet(sw, p->dst)) {
		struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)(uintptr_t)p->l4;

		if (p->v6)
			dn_send_reset6(sw, from, m, ip, tcp);
		else
			dn_send_reset(sw, from, m, ip, tcp, ip_len);
		return;
	}
	rte_pktmbuf_free(m);
}

/* An IPv6 frame from an endpoint. What the endpoint wrote is read as
 * hostile: the payload length must fit the frame, the next header must be
 * TCP, UDP or ICMPv6 with its header whole (extension headers are dropped:
 * the stacks send none, and walking a chain of them is where parsers go
 * wrong), the source the endpoint's own address. */
static void
dn_handle_ip6(struct dn_switch *sw, uint16_t from, struct rte_mbuf *m)
{
	struct dn_slot *s = &sw->slots[from];
	const uint32_t eh = sizeof(struct rte_ether_hdr);
	uint32_t len = rte_pktmbuf_data_len(m), plen;
	struct rte_ipv6_hdr *ip;
	struct dn_pkt p;

	if (sw->p6.len == 0 || len < eh + DN_IP6_HLEN)
		goto malformed;
	ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv6_hdr *, eh);
	plen = rte_be_to_cpu_16(ip->payload_len);
	if ((rte_be_to_cpu_32(ip->vtc_flow) >> 28) != 6 ||
	    plen > len - eh - DN_IP6_HLEN)
		goto malformed;
	p.proto = ip->proto;
	p.v6 = 1;
	p.l4 = (const uint8_t *)(ip + 1);
	p.l4_len = plen;
	switch (p.proto) {
	case IPPROTO_TCP: {
		const struct rte_tcp_hdr *tcp = (const void *)p.l4;
		uint32_t thlen;

		if (plen < sizeof(*tcp))
			goto malformed;
		thlen = (uint32_t)(tcp->data_off >> 4) * 4;
		if (thlen < sizeof(*tcp) || thlen > plen)
			goto malformed;
		break;
	}
	case IPPROTO_UDP:
		if (plen < sizeof(struct rte_udp_hdr))
			goto malformed;
		break;
	case IPPROTO_ICMPV6:
		if (plen < 4)
			goto malformed;
		break;
	default:
		goto malformed;
	}
	if (!dn_twin_of(&sw->p6, ip->src_addr, &p.src) || p.src != s->ip) {
		s->c.drop_spoofed++;
		rte_pktmbuf_free(m);
		return;
	}
	if (p.proto == IPPROTO_ICMPV6 && p.l4[0] >= DN_ICMP6_RS &&
	    p.l4[0] <= DN_ICMP6_REDIRECT) {
		/* The switch is every endpoint's neighbour and no router:
		 * solicitations are answered, the rest of neighbour
		 * discovery needs nothing. */
		if (p.l4[0] == DN_ICMP6_NS)
			dn_handle_ns(sw, from, m, ip, plen);
		else
			rte_pktmbuf_free(m);
		return;
	}
	if (!dn_twin_of(&sw->p6, ip->dst_addr, &p.dst)) {
		/* Multicast, or an address no endpoint can have. */
		s->c.drop_no_route++;
		rte_pktmbuf_free(m);
		return;
	}
	dn_forward(sw, from, m, &p, ip, 0);
	return;

malformed:
	s->c.drop_malformed++;
	rte_pktmbuf_free(m);
}

static void
dn_handle_frame(struct dn_switch *sw, uint16_t from, struct rte_mbuf *m)
{
	struct dn_slot *s = &sw->slots[from];
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;
	uint32_t len = rte_pktmbuf_data_len(m);
	uint16_t ip_len, hlen;
	struct dn_pkt p;

	s->c.rx_frames++;
	s->c.rx_bytes += m->pkt_len;
	if (len < sizeof(*eth))
		goto malformed;
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
		dn_handle_arp(sw, from, m);
		return;
	}
	if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		dn_handle_ip6(sw, from, m);
		return;
	}
	if (eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    len < sizeof(*eth) + sizeof(*ip))
		goto malformed;
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	hlen = (uint16_t)((ip->version_ihl & 0xf) * 4);
	ip_len = rte_be_to_cpu_16(ip->total_length);
	if ((ip->version_ihl >> 4) != 4 || hlen < sizeof(*ip) ||
	    ip_len < hlen || ip_len > m->pkt_len - sizeof(*eth))
		goto malformed;
	if (rte_be_to_cpu_32(ip->src_addr) != s->ip) {
		s->c.drop_spoofed++;
		rte_pktmbuf_free(m);
		return;
	}
	p.proto = ip->next_proto_id;
	p.v6 = 0;
	p.src = s->ip;
	p.dst = rte_be_to_cpu_32(ip->dst_addr);
	p.l4 = (const uint8_t *)ip + hlen;
	p.l4_len = len - sizeof(*eth) - hlen;
	dn_forward(sw, from, m, &p, ip, ip_len);
	return;

malformed:
	s->c.drop_malformed++;
	rte_pktmbuf_free(m);
}

/* Frames from other hosts for this host's endpoints. */
static unsigned int
dn_poll_uplink(struct dn_switch *sw)
{
	struct rte_mbuf *rx[DN_BURST];
	uint16_t n, k;

	n = dn_uplink_rx(sw->uplink, rx, DN_BURST);
	for (k = 0; k < n; k++) {
		if (unlikely(sw->up_faulty[DN_INGRESS]))
			dn_fault_uplink(sw, DN_INGRESS, rx[k]);
		else
			dn_uplink_deliver(sw, rx[k]);
	}
	return n;
}

/* A slave's frames, as mbufs. What a slave writes into its own ring that
 * makes no sense costs its own frames only. */
/* Each frame keeps the link it came from in m->port (replies the switch
 * makes go back to it; the egress limiter's queue keeps it too). */
static uint16_t
dn_ring_rx(struct dn_switch *sw, struct dn_slot *s, struct dn_slot_link *l,
	uint16_t link, struct rte_mbuf **rx, uint16_t max)
{
	uint16_t n, k;

	n = dn_fr_get_mbufs(&l->from_slave, sw->pool, l->from_slave.max_frame,
		rx, max, &s->c.drop_malformed, &s->c.drop_malformed);
	for (k = 0; k < n; k++)
		rx[k]->port = link;
	return n;
}

/* What the direct path reads of a frame: Ethernet, an IPv4 header with
 * no options or an IPv6 header, and a TCP header's first 20 bytes (UDP's
 * 8 and more). */
#define DN_DIRECT_HDR4 (sizeof(struct rte_ether_hdr) + \
	sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_tcp_hdr))
#define DN_DIRECT_HDR6 (sizeof(struct rte_ether_hdr) + DN_IP6_HLEN + \
	sizeof(struct rte_tcp_hdr))

/* The checks of dn_handle_frame() on a private copy of an IPv4 frame's
 * headers, for the direct path: 0 if they pass (p filled in), -1 if the
 * frame needs the full path (which drops and counts what is wrong). */
static int
dn_direct_ip4(const struct dn_slot *s, const uint8_t *hdr, uint32_t len,
	struct dn_pkt *p)
{
	const struct rte_ipv4_hdr *ip = (const void *)
		(hdr + sizeof(struct rte_ether_hdr));
	uint16_t ip_len = rte_be_to_cpu_16(ip->total_length);

	if (len < DN_DIRECT_HDR4 || ip->version_ihl != 0x45 ||
	    (ip->next_proto_id != IPPROTO_TCP &&
	     ip->next_proto_id != IPPROTO_UDP) ||
	    ip_len < sizeof(*ip) ||
	    ip_len > len - sizeof(struct rte_ether_hdr) ||
	    rte_be_to_cpu_32(ip->src_addr) != s->ip)
		return -1;
	p->proto = ip->next_proto_id;
	p->v6 = 0;
	p->src = s->ip;
	p->dst = rte_be_to_cpu_32(ip->dst_addr);
	p->l4 = (const uint8_t *)(ip + 1);
	p->l4_len = len - (uint32_t)(sizeof(struct rte_ether_hdr) +
		sizeof(*ip));
	return 0;
}

/* The same for IPv6, with dn_handle_ip6()'s checks: TCP or UDP right
 * after the header, whole, from the sender's own address to an address
 * with a twin. */
static int
dn_direct_ip6(const struct dn_switch *sw, const struct dn_slot *s,
	const uint8_t *hdr, uint32_t len, struct dn_pkt *p)
{
	const struct rte_ipv6_hdr *ip = (const void *)
		(hdr + sizeof(struct rte_ether_hdr));
	const uint32_t eh = sizeof(struct rte_ether_hdr);
	uint32_t plen = rte_be_to_cpu_16(ip->payload_len);

	if (sw->p6.len == 0 || len < DN_DIRECT_HDR6 ||
	    (rte_be_to_cpu_32(ip->vtc_flow) >> 28) != 6 ||
	    plen > len - eh - DN_IP6_HLEN)
		return -1;
	p->l4 = (const uint8_t *)(ip + 1);
	if (ip->proto == IPPROTO_TCP) {
		const struct rte_tcp_hdr *tcp = (const void *)p->l4;
		uint32_t thlen = (uint32_t)(tcp->data_off >> 4) * 4;

		if (plen < sizeof(*tcp) || thlen < sizeof(*tcp) || thlen > plen)
			return -1;
	} else if (ip->proto != IPPROTO_UDP ||
		   plen < sizeof(struct rte_udp_hdr)) {
		return -1;
	}
	if (!dn_twin_of(&sw->p6, ip->src_addr, &p->src) || p->src != s->ip ||
	    !dn_twin_of(&sw->p6, ip->dst_addr, &p->dst))
		return -1;
	p->proto = ip->proto;
	p->v6 = 1;
	p->l4_len = plen;
	return 0;
}

/* A frame of slot from's ring copied straight onto the ring of the
 * endpoint it is for, with no mbuf between: 1 if it went (or was dropped
 * for a full ring, as the mbuf path drops it), 0 if it needs the full
 * path (dn_handle_frame). Only the common case goes: TCP or UDP over IPv4
 * with no options or over IPv6 with no extension headers, from the
 * sender's own address to a port of this host with one link, no ingress
 * limit, no faults and nothing waiting for it (which keeps the order of
 * its frames). The headers are judged from a private copy, which then
 * overwrites those of the copied frame: the sender can rewrite its ring
 * at any moment, and what arrives is what was judged. */
static int
dn_direct(struct dn_switch *sw, struct dn_slot *s, const uint8_t *frame,
	uint32_t len)
{
	uint8_t hdr[DN_DIRECT_HDR6];
	const struct rte_ether_hdr *eth = (const void *)hdr;
	uint32_t n = len < sizeof(hdr) ? (uint32_t)DN_DIRECT_HDR4 :
		(uint32_t)sizeof(hdr);
	struct dn_slot *d;
	struct dn_pkt p;
	uint16_t to;
	uint8_t *out;

	if (len < DN_DIRECT_HDR4)
		return 0;
	memcpy(hdr, frame, n);
	if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
		if (dn_direct_ip4(s, hdr, len, &p) < 0)
			return 0;
	} else if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)) {
		if (n < DN_DIRECT_HDR6 || dn_direct_ip6(sw, s, hdr, len, &p) < 0)
			return 0;
	} else {
		return 0;
	}
	to = dn_slot_of(sw, p.dst);
	if (to == DN_NO_SLOT)
		return 0;
	d = &sw->slots[to];
	if (d->steer != NULL || d->faulty || dn_bucket_limited(&d->ingress) ||
	    d->l0.txq.n != 0 || len > d->l0.to_slave.max_frame ||
	    (d->tenant != s->tenant &&
	     !dn_policy_check(sw, s->tenant, d->tenant, &p)))
		return 0;
	s->c.rx_frames++;
	s->c.rx_bytes += len;
	out = dn_fr_reserve(&d->l0.to_slave, len);
	if (out == NULL) {
		d->c.drop_ring_full++;
		return 1;
	}
	rte_memcpy(out, frame, len);
	memcpy(out, hdr, n);
	dn_fr_commit(&d->l0.to_slave, len);
	d->c.tx_frames++;
	d->c.tx_bytes += len;
	/* Published, and its slave woken, with the pass's other frames. */
	if (!d->dirty) {
		d->dirty = 1;
		sw->dirty_list[sw->n_dirty++] = to;
	}
	return 1;
}

/* An unlimited endpoint with one link: each frame straight to its
 * destination's ring where dn_direct() can, through an mbuf and
 * dn_handle_frame() where not, in the ring's order. */
static unsigned int
dn_poll_direct(struct dn_switch *sw, uint16_t slot, struct dn_slot *s,
	struct dn_slot_link *l)
{
	struct dn_fr *r = &l->from_slave;
	const uint8_t *frame;
	struct rte_mbuf *m;
	unsigned int n = 0;
	uint32_t len;
	int got;

	while (n < DN_BURST && (got = dn_fr_peek(r, &frame, &len)) != 0) {
		if (got < 0) {
			s->c.drop_malformed++;
			dn_fr_skip_all(r);
			return n;
		}
		if (dn_direct(sw, s, frame, len)) {
			dn_fr_next(r, len);
			n++;
			continue;
		}
		/* With the pool empty the frame stays on the ring: the slave
		 * sees a full ring, which is back-pressure, not loss. */
		m = rte_pktmbuf_alloc(sw->pool);
		if (m == NULL)
			break;
		rte_memcpy(rte_pktmbuf_mtod(m, void *), frame, len);
		m->data_len = (uint16_t)len;
		m->pkt_len = len;
		m->port = 0;
		dn_fr_next(r, len);
		n++;
		dn_handle_frame(sw, slot, m);
	}
	if (n > 0)
		dn_fr_release(r);
	return n;
}

static unsigned int
dn_poll_link(struct dn_switch *sw, uint16_t slot, struct dn_slot *s,
	struct dn_slot_link *l, uint16_t link, struct rte_mbuf **rx)
{
	uint16_t n, k;

	if (!dn_bucket_limited(&s->egress)) {
		if (likely(s->steer == NULL))
			return dn_poll_direct(sw, slot, s, l);
		n = dn_ring_rx(sw, s, l, link, rx, DN_BURST);
		for (k = 0; k < n; k++)
			dn_handle_frame(sw, slot, rx[k]);
		return n;
	}
	/* A limited endpoint: read only what its queue can hold, so the ring
	 * is the rest of the queue and the slave feels the back-pressure. */
	if (s->egress.len > DN_LIMIT_QUEUE - DN_BURST)
		return 0;
	n = dn_ring_rx(sw, s, l, link, rx, DN_BURST);
	for (k = 0; k < n; k++) {
		if (dn_bucket_take(&s->egress, rx[k]->pkt_len)) {
			dn_handle_frame(sw, slot, rx[k]);
		} else {
			dn_bucket_enqueue(&s->egress, rx[k]);
			s->c.egress_delayed++;
			sw->queued++;
		}
	}
	return n;
}

static unsigned int
dn_poll_ports(struct dn_switch *sw)
{
	struct rte_mbuf *rx[DN_BURST];
	unsigned int i, moved = 0;

	for (i = 0; i < sw->n_active; i++) {
		uint16_t slot = sw->active_list[i];
		struct dn_slot *s = &sw->slots[slot];
		uint32_t live, r;

		if (likely(s->steer == NULL)) {
			moved += dn_poll_link(sw, slot, s, &s->l0, 0, rx);
			continue;
		}
		/* From a different link each pass: under an egress limit
		 * the first to be read would otherwise take the tokens. */
		r = s->steer->first++ % DN_MAX_LINKS;
		live = s->steer->live;
		live = ((live >> r) | (live << (DN_MAX_LINKS - r))) &
			((1u << DN_MAX_LINKS) - 1);
		while (live != 0) {
			unsigned int k = ((unsigned int)__builtin_ctz(live) + r) %
				DN_MAX_LINKS;

			live &= live - 1;
			moved += dn_poll_link(sw, slot, s, dn_link_of(s, k),
				(uint16_t)k, rx);
		}
	}
	if (sw->uplink != NULL)
		moved += dn_poll_uplink(sw);
	if (sw->n_dirty > 0)
		dn_flush(sw);
	if (sw->uplink != NULL)
		dn_uplink_flush(sw->uplink);
	return moved;
}

/* ---- the limiter's tick (switch thread) ---- */

static void dn_count_limited(struct dn_switch *sw);

/* Frames held back for reordering that no later frame on their link let
 * go: the tick bounds how long a frame waits. */
static unsigned int __attribute__((noinline, cold))
dn_release_held(struct dn_switch *sw)
{
	unsigned int i, moved = 0;
	struct rte_mbuf *m;
	int dir;

	for (i = 0; i < sw->n_active && sw->held > 0; i++) {
		uint16_t slot = sw->active_list[i];
		struct dn_slot *s = &sw->slots[slot];

		if (sw->faults[slot].held == NULL)
			continue;
		m = dn_fault_release(&sw->faults[slot]);
		s->faulty = (uint8_t)dn_fault_on(&sw->faults[slot]);
		sw->held--;
		dn_txq_put(sw, slot, m);
		moved++;
	}
	for (dir = DN_EGRESS; dir <= DN_INGRESS && sw->held > 0; dir++) {
		if (sw->up_fault[dir].held == NULL)
			continue;
		m = dn_fault_release(&sw->up_fault[dir]);
		sw->up_faulty[dir] = (uint8_t)dn_fault_on(&sw->up_fault[dir]);
		sw->held--;
		dn_uplink_out(sw, dir, m);
		moved++;
	}
	if (sw->uplink != NULL)
		dn_uplink_flush(sw->uplink);
	return moved;
}

static unsigned int
dn_tick(struct dn_switch *sw)
{
	uint64_t now;

	/* No limits and nothing held anywhere: no clock read either. */
	if (sw->n_limited == 0 && sw->held == 0)
		return 0;
	now = rte_get_tsc_cycles();
	uint64_t elapsed_us;
	unsigned int i, moved = 0;

	if (now - sw->last_tick < sw->tick_cycles)
		return 0;
	elapsed_us = (now - sw->last_tick) * 1000000 / rte_get_tsc_hz();
	sw->last_tick = now;
	if (sw->held > 0)
		moved += dn_release_held(sw);
	for (i = 0; i < sw->n_active && sw->n_limited > 0; i++) {
		uint16_t slot = sw->active_list[i];
		struct dn_slot *s = &sw->slots[slot];
		struct rte_mbuf *m;

		if (!dn_bucket_limited(&s->egress) &&
		    !dn_bucket_limited(&s->ingress))
			continue;
		dn_bucket_refill(&s->egress, elapsed_us);
		dn_bucket_refill(&s->ingress, elapsed_us);
		while ((m = dn_bucket_dequeue(&s->ingress)) != NULL) {
			sw->queued--;
			dn_enqueue_tx(sw, slot, m);
			moved++;
		}
		while ((m = dn_bucket_dequeue(&s->egress)) != NULL) {
			sw->queued--;
			dn_handle_frame(sw, slot, m);
			moved++;
		}
	}
	if (sw->n_dirty > 0)
		dn_flush(sw);
	return moved;
}

/* ---- mailbox (switch thread side) ---- */

/* What a departing endpoint sent before it went is delivered, as the
 * kernel would: a sender may exit right after its last datagram, and its
 * doorbell and its removal reach this thread together. At most a ring's
 * worth, so a slave still writing cannot hold the thread. A limited
 * endpoint's backlog is dropped with its queue (it would leave at once,
 * past its rate). */
static void
dn_drain_departing(struct dn_switch *sw, uint16_t slot, unsigned int link)
{
	struct dn_slot *s = &sw->slots[slot];
	struct dn_slot_link *l = dn_link_of(s, link);
	struct rte_mbuf *rx[DN_BURST];
	unsigned int left = DN_LINK_RING_SIZE / RTE_ETHER_MIN_LEN;
	uint16_t n, k;

	if (dn_bucket_limited(&s->egress))
		return;
	while (left > 0 &&
	    (n = dn_ring_rx(sw, s, l, (uint16_t)link, rx, DN_BURST)) > 0) {
		for (k = 0; k < n; k++)
			dn_handle_frame(sw, slot, rx[k]);
		left = left > n ? left - n : 0;
	}
	if (sw->n_dirty > 0)
		dn_flush(sw);
}

/* dn_reset_flow's reset for an IPv6 connection, in m. */
static void
dn_reset_flow6(struct dn_switch *sw, uint16_t slot, unsigned int link,
	const struct dn_flow *f, struct rte_mbuf *m)
{
	struct dn_slot *s = &sw->slots[slot];
	struct rte_ether_hdr *eth;
	struct rte_ipv6_hdr *ip;
	struct rte_tcp_hdr *tcp;
	uint16_t len = sizeof(*eth) + DN_IP6_HLEN + sizeof(*tcp);

	if (m == NULL || (eth = (struct rte_ether_hdr *)rte_pktmbuf_append(m,
	    len)) == NULL) {
		rte_pktmbuf_free(m);
		return;
	}
	memset(eth, 0, len);
	ip = (struct rte_ipv6_hdr *)(eth + 1);
	tcp = (struct rte_tcp_hdr *)(ip + 1);
	dn_switch_mac_of(f->rip, eth->dst_addr.addr_bytes);
	dn_switch_mac_of(s->ip, eth->src_addr.addr_bytes);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
	ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
	ip->payload_len = rte_cpu_to_be_16(sizeof(*tcp));
	ip->proto = IPPROTO_TCP;
	ip->hop_limits = 64;
	dn_addr6_of(&sw->p6, s->ip, ip->src_addr);
	dn_addr6_of(&sw->p6, f->rip, ip->dst_addr);
	tcp->src_port = rte_cpu_to_be_16(f->lport);
	tcp->dst_port = rte_cpu_to_be_16(f->rport);
	tcp->sent_seq = rte_cpu_to_be_32(f->ack);
	tcp->data_off = (sizeof(*tcp) / 4) << 4;
	tcp->tcp_flags = RTE_TCP_RST_FLAG;
	tcp->cksum = rte_ipv6_udptcp_cksum(ip, tcp);
	m->port = (uint16_t)link;
	s->c.resets_sent++;
	dn_handle_frame(sw, slot, m);
}

/* The reset the process of link would have sent for connection f had its
 * stack not gone with it; from the endpoint, as if it sent it. */
static void
dn_reset_flow(struct dn_switch *sw, uint16_t slot, unsigned int link,
	const struct dn_flow *f)
{
	struct dn_slot *s = &sw->slots[slot];
	struct rte_mbuf *m = rte_pktmbuf_alloc(sw->pool);
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;
	struct rte_tcp_hdr *tcp;
	uint16_t len = sizeof(*eth) + sizeof(*ip) + sizeof(*tcp);

	if (f->v6) {
		dn_reset_flow6(sw, slot, link, f, m);
		return;
	}
	if (m == NULL || (eth = (struct rte_ether_hdr *)rte_pktmbuf_append(m,
	    len)) == NULL) {
		rte_pktmbuf_free(m);
		return;
	}
	memset(eth, 0, len);
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	tcp = (struct rte_tcp_hdr *)(ip + 1);
	dn_switch_mac_of(f->rip, eth->dst_addr.addr_bytes);
	dn_switch_mac_of(s->ip, eth->src_addr.addr_bytes);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16(sizeof(*ip) + sizeof(*tcp));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_TCP;
	ip->src_addr = rte_cpu_to_be_32(s->ip);
	ip->dst_addr = rte_cpu_to_be_32(f->rip);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	tcp->src_port = rte_cpu_to_be_16(f->lport);
	tcp->dst_port = rte_cpu_to_be_16(f->rport);
	/* At the peer's last acknowledgment: in its window (RFC 793); if it
	 * has moved on, the peer's challenge ACK (RFC 5961) finds no
	 * connection here and gets the exact reset from the lowest link. */
	tcp->sent_seq = rte_cpu_to_be_32(f->ack);
	tcp->data_off = (sizeof(*tcp) / 4) << 4;
	tcp->tcp_flags = RTE_TCP_RST_FLAG;
	tcp->cksum = rte_ipv4_udptcp_cksum(ip, tcp);
	m->port = (uint16_t)link;
	s->c.resets_sent++;
	dn_handle_frame(sw, slot, m);
}

/* A link stops being polled: what it sent is delivered, what waits for
 * it is dropped, its connections are reset and forgotten. */
static void
dn_link_stop(struct dn_switch *sw, uint16_t slot, unsigned int link)
{
	struct dn_slot *s = &sw->slots[slot];
	struct dn_slot_link *l = dn_link_of(s, link);
	unsigned int i, n = 0;

	dn_drain_departing(sw, slot, link);
	rte_pktmbuf_free_bulk(l->txq.m, l->txq.n);
	l->txq.n = 0;
	if (s->steer == NULL)
		return;
	for (i = 0; i < DN_FLOW_ENTRIES; i++) {
		const struct dn_flow *f = &s->steer->flows.e[i];

		if (f->link != link || (f->state != DN_FLOW_OPEN &&
		    f->state != DN_FLOW_CLOSING) || f->ack == 0)
			continue;
		dn_reset_flow(sw, slot, link, f);
		/* Each peer's queue holds a burst. */
		if (++n % (DN_BURST / 2) == 0) {
			dn_flush(sw);
			if (sw->uplink != NULL)
				dn_uplink_flush(sw->uplink);
		}
	}
	if (sw->n_dirty > 0)
		dn_flush(sw);
	if (sw->uplink != NULL)
		dn_uplink_flush(sw->uplink);
	s->steer->live &= ~(1u << link);
	dn_flow_forget_link(&s->steer->flows, (uint8_t)link);
}

static int
dn_mailbox(struct dn_switch *sw)
{
	int quit = 0;

	if (!atomic_load_explicit(&sw->mb_pending, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&sw->mb_lock);
	if (sw->mb_op == DN_MAILBOX_ADD) {
		struct dn_slot *s = &sw->slots[sw->mb_slot];

		s->active = 1;
		sw->active_list[sw->n_active++] = (uint16_t)sw->mb_slot;
		sw->host_slot[s->ip & ~sw->cfg.netmask] =
			(uint16_t)sw->mb_slot;
	} else if (sw->mb_op == DN_MAILBOX_REMOVE) {
		struct dn_slot *s = &sw->slots[sw->mb_slot];
		unsigned int i;

		if (s->steer == NULL) {
			dn_link_stop(sw, (uint16_t)sw->mb_slot, 0);
		} else {
			while (s->steer->live != 0)
				dn_link_stop(sw, (uint16_t)sw->mb_slot,
					(unsigned int)__builtin_ctz(
					s->steer->live));
		}
		s->active = 0;
		sw->host_slot[s->ip & ~sw->cfg.netmask] = DN_NO_SLOT;
		for (i = 0; i < sw->n_active; i++) {
			if (sw->active_list[i] == sw->mb_slot) {
				sw->active_list[i] =
					sw->active_list[--sw->n_active];
				break;
			}
		}
		if (sw->faults[sw->mb_slot].held != NULL) {
			rte_pktmbuf_free(dn_fault_release(
				&sw->faults[sw->mb_slot]));
			sw->held--;
		}
		s->faulty = 0;
		sw->queued -= s->egress.len + s->ingress.len;
		dn_bucket_flush(&s->egress);
		dn_bucket_flush(&s->ingress);
		dn_count_limited(sw);
	} else if (sw->mb_op == DN_MAILBOX_CALL) {
		sw->mb_fn(sw, sw->mb_arg);
	} else if (sw->mb_op == DN_MAILBOX_QUIT) {
		quit = 1;
	}
	sw->mb_op = 0;
	atomic_store_explicit(&sw->mb_pending, 0, memory_order_release);
	pthread_cond_broadcast(&sw->mb_done);
	pthread_mutex_unlock(&sw->mb_lock);
	return quit;
}

/* ---- sleeping ---- */

static void
dn_announce_all(struct dn_switch *sw, int asleep)
{
	unsigned int i;

	for (i = 0; i < sw->n_active; i++) {
		struct dn_slot *s = &sw->slots[sw->active_list[i]];
		uint32_t live = s->steer != NULL ? s->steer->live : 1;

		while (live != 0) {
			unsigned int k = (unsigned int)__builtin_ctz(live);
			struct dn_doorbell *b = dn_link_of(s, k)->bell;

			live &= live - 1;
			if (asleep)
				atomic_store_explicit(&b->master_asleep, 1,
					memory_order_relaxed);
			else
				dn_doorbell_cancel(&b->master_asleep);
		}
	}
	atomic_thread_fence(memory_order_seq_cst);
}

/* Returns 0 if work turned up before the thread slept, 1 after a sleep. */
static int
dn_sleep(struct dn_switch *sw)
{
	struct epoll_event ev[2 + DN_UPLINK_MAX_WAKE];
	int n, i, again = 0;

	dn_announce_all(sw, 1);
	/* Re-check after announcing: a frame queued just before the slave
	 * saw the flag would otherwise wait for the next frame. */
	if (dn_poll_ports(sw) > 0 ||
	    atomic_load_explicit(&sw->mb_pending, memory_order_acquire)) {
		dn_announce_all(sw, 0);
		return 0;
	}
	sw->counters.sleeps++;
	/* Frames waiting for tokens need the tick even when all is quiet.
	 * After the uplink's wake socket rang, the next sleep is short too:
	 * the kernel hands a frame to the newest packet socket (the wake
	 * socket) before the port's own, so the thread can wake, drain and
	 * poll before the frame is in the port's ring, and an infinite sleep
	 * then would hold it until the next frame came. AF_XDP sockets need
	 * none of that: one is readable while its own ring holds frames. */
	n = epoll_wait(sw->epfd, ev, (int)RTE_DIM(ev),
		sw->queued + sw->held > 0 || sw->uplink_rang ? 1 :
		(sw->uplink != NULL && sw->uplink_wakes == 0) ?
		DN_UPLINK_NAP_MS : -1);
	dn_announce_all(sw, 0);
	sw->uplink_rang = 0;
	for (i = 0; i < n; i++) {
		if (sw->uplink != NULL &&
		    dn_uplink_woken(sw->uplink, ev[i].data.fd, &again))
			sw->uplink_rang |= again;
		else
			dn_doorbell_drain(ev[i].data.fd);
	}
	return 1;
}

/* Sleeps (verdict: dn_spin_idle's reason) and learns from how long it slept
 * whether spinning pays. */
static void
dn_nap(struct dn_switch *sw, int verdict)
{
	uint64_t now;

	/* The spin that ended here (none when the thread slept at once). */
	sw->counters.spin_ns += sw->spin.now - sw->spin.idle_since;
	if (!dn_sleep(sw))
		return;
	dn_spin_asleep(&sw->spin, sw->spin.now, verdict);
	now = dn_clock_ns();
	sw->now_s = (uint32_t)(now / 1000000000u);
	dn_spin_woke(&sw->spin, now);
}

static void *
dn_switch_main(void *arg)
{
	struct dn_switch *sw = arg;
	uint64_t start = dn_clock_ns(), last_busy = 0, now;
	int verdict;

	dn_eal_register_thread();
	dn_spin_open(&sw->spin, (uint64_t)sw->cfg.spin_us * 1000,
		DN_SPIN_MISSES, 1);
	for (;;) {
		if (dn_mailbox(sw))
			break;
		if (dn_tick(sw) + dn_poll_ports(sw) > 0) {
			/* Back-to-back busy passes count as busy time; one
			 * clock read per busy pass, none while idle. */
			now = dn_clock_ns();
			sw->now_s = (uint32_t)(now / 1000000000u);
			if (sw->spin.passes == 0 && last_busy != 0)
				sw->counters.busy_ns += now - last_busy;
			else if (sw->spin.passes > 0)
				/* A spin that caught work. */
				sw->counters.spin_ns += now -
					sw->spin.idle_since;
			last_busy = now;
			sw->counters.busy_loops++;
			sw->counters.loops++;
			dn_spin_work(&sw->spin);
			continue;
		}
		sw->counters.loops++;
		/* Frames held by a limiter wake the thread every tick. */
		verdict = dn_spin_idle(&sw->spin, DN_CROWD_SLACK,
			sw->queued + sw->held > 0);
		if (verdict == DN_SPIN_ON)
			continue;
		dn_nap(sw, verdict);
		last_busy = 0;
	}
	dn_spin_close(&sw->spin);
	sw->counters.run_ns = dn_clock_ns() - start;
	return NULL;
}

/* ---- control side ---- */

static int
dn_mailbox_call(struct dn_switch *sw, int op, int slot,
	void (*fn)(struct dn_switch *, void *), void *arg)
{
	static const uint64_t one = 1;

	pthread_mutex_lock(&sw->mb_lock);
	sw->mb_op = op;
	sw->mb_slot = slot;
	sw->mb_fn = fn;
	sw->mb_arg = arg;
	atomic_store_explicit(&sw->mb_pending, 1, memory_order_release);
	if (write(sw->ctl_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		pthread_mutex_unlock(&sw->mb_lock);
		return dn_error(-errno, "cannot wake the switch thread: %s",
			strerror(errno));
	}
	while (atomic_load_explicit(&sw->mb_pending, memory_order_acquire))
		pthread_cond_wait(&sw->mb_done, &sw->mb_lock);
	pthread_mutex_unlock(&sw->mb_lock);
	return 0;
}

static int
dn_is_local(void *ctx, uint32_t ip)
{
	struct dn_switch *sw = ctx;

	return ip == sw->cfg.gateway || dn_slot_of(sw, ip) != DN_NO_SLOT;
}

static int
dn_mailbox_send(struct dn_switch *sw, int op, int slot)
{
	return dn_mailbox_call(sw, op, slot, NULL, NULL);
}

/* What create made, whatever it got to; the thread has stopped (or never
 * started). */
static void
dn_switch_free(struct dn_switch *sw)
{
	if (sw->uplink != NULL)
		dn_uplink_close(sw->uplink);
	if (sw->pool != NULL)
		rte_mempool_free(sw->pool);
	if (sw->ctl_fd >= 0)
		close(sw->ctl_fd);
	if (sw->epfd >= 0)
		close(sw->epfd);
	free(sw->slots);
	free(sw->host_slot);
	free(sw->active_list);
	free(sw->dirty_list);
	free(sw->policy);
	free(sw->faults);
	free(sw);
}

int
dn_switch_create(const struct dn_switch_config *cfg, struct dn_switch **out)
{
	struct epoll_event ev;
	struct dn_switch *sw;
	uint8_t mac[6];
	uint32_t i;
	int ret;

	if (cfg->max_endpoints == 0 || cfg->max_endpoints >= DN_NO_SLOT ||
	    (cfg->subnet & ~cfg->netmask) != 0 || cfg->netmask == 0 ||
	    ~cfg->netmask >= (1u << 24))
		return dn_error(-EINVAL, "bad switch configuration (subnet, "
			"netmask /8 or longer, max endpoints < 65535)");
	if (dn_prefix6_check(cfg->prefix6, cfg->prefix6_len) < 0)
		return dn_error(-EINVAL, "bad IPv6 prefix (length %u): the "
			"length must be 64..96 (or 0 with all zero: no IPv6) "
			"and every bit past it zero, the low 32 bits included",
			cfg->prefix6_len);
	ret = dn_eal_register_thread();
	if (ret < 0)
		return ret;
	sw = calloc(1, sizeof(*sw));
	if (sw == NULL)
		return dn_error(-ENOMEM, "out of memory for the switch");
	sw->cfg = *cfg;
	if (sw->cfg.range_mask == 0) {
		sw->cfg.range = cfg->subnet;
		sw->cfg.range_mask = cfg->netmask;
	}
	sw->cfg.uplink = NULL;	/* the caller's string is not kept */
	memcpy(sw->p6.addr, cfg->prefix6, 16);
	sw->p6.len = cfg->prefix6_len;
	sw->p6.subnet = cfg->subnet;
	sw->p6.netmask = cfg->netmask;
	sw->epfd = -1;
	sw->ctl_fd = -1;
	sw->hosts = ~cfg->netmask + 1;
	sw->slots = calloc(cfg->max_endpoints, sizeof(sw->slots[0]));
	sw->host_slot = malloc(sw->hosts * sizeof(sw->host_slot[0]));
	sw->active_list = calloc(cfg->max_endpoints, sizeof(uint16_t));
	sw->dirty_list = calloc(cfg->max_endpoints, sizeof(uint16_t));
	sw->policy = calloc(1, sizeof(*sw->policy));
	sw->faults = calloc(cfg->max_endpoints, sizeof(sw->faults[0]));
	if (sw->slots == NULL || sw->host_slot == NULL ||
	    sw->active_list == NULL || sw->dirty_list == NULL ||
	    sw->policy == NULL || sw->faults == NULL) {
		ret = dn_error(-ENOMEM, "out of memory for %u endpoints",
			cfg->max_endpoints);
		goto fail;
	}
	for (i = 0; i < sw->hosts; i++)
		sw->host_slot[i] = DN_NO_SLOT;
	sw->tick_cycles = rte_get_tsc_hz() / (1000000 / DN_TICK_US);
	sw->last_tick = rte_get_tsc_cycles();
	dn_switch_mac_of(cfg->gateway, mac);
	memcpy(&sw->gw_mac, mac, 6);
	pthread_mutex_init(&sw->lock, NULL);
	pthread_mutex_init(&sw->mb_lock, NULL);
	pthread_cond_init(&sw->mb_done, NULL);

	ret = dn_pktpool_create("dn_switch_pool", cfg->n_mbufs, 0,
		dn_frame_room(cfg->mtu), &sw->pool);
	if (ret < 0)
		goto fail;
	sw->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	sw->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sw->ctl_fd < 0 || sw->epfd < 0) {
		ret = dn_error(-errno, "cannot create the switch's wake-up "
			"descriptors: %s", strerror(errno));
		goto fail;
	}
	ev.events = EPOLLIN;
	ev.data.fd = sw->ctl_fd;
	if (epoll_ctl(sw->epfd, EPOLL_CTL_ADD, sw->ctl_fd, &ev) < 0)
		goto fail_epoll;
	ev.data.fd = cfg->wake_fd;
	if (epoll_ctl(sw->epfd, EPOLL_CTL_ADD, cfg->wake_fd, &ev) < 0)
		goto fail_epoll;
	if (cfg->uplink != NULL && cfg->uplink[0] != '\0') {
		ret = dn_uplink_open(cfg->uplink, sw->pool, cfg->mtu,
			cfg->uplink_frame ? cfg->uplink_frame :
			dn_frame_room(cfg->mtu), cfg->gateway, cfg->subnet,
			cfg->netmask, &sw->p6, cfg->uplink_promisc_was,
			dn_is_local, sw, &sw->uplink);
		if (ret < 0)
			goto fail;
		{
			int fds[DN_UPLINK_MAX_WAKE];

			sw->uplink_wakes = dn_uplink_wake_fds(sw->uplink, fds,
				DN_UPLINK_MAX_WAKE);
			for (i = 0; i < (uint32_t)sw->uplink_wakes; i++) {
				ev.data.fd = fds[i];
				if (epoll_ctl(sw->epfd, EPOLL_CTL_ADD,
				    ev.data.fd, &ev) < 0)
					goto fail_epoll;
			}
		}
	}
	ret = pthread_create(&sw->thread, NULL, dn_switch_main, sw);
	if (ret != 0) {
		ret = dn_error(-ret, "cannot start the switch thread: %s",
			strerror(ret));
		goto fail;
	}
	pthread_setname_np(sw->thread, "dn-switch");
	sw->thread_started = 1;
	*out = sw;
	return 0;

fail_epoll:
	ret = dn_error(-errno, "epoll_ctl failed: %s", strerror(errno));
fail:
	dn_switch_free(sw);
	return ret;
}

/* Sizes, seals, maps and initialises link memory (a fresh memfd). */
static int
dn_linkmem_make(int fd, uint32_t max_frame, struct dn_linkmem *mem)
{
	size_t size = dn_linkmem_size(DN_LINK_RING_SIZE);
	void *base;

	if (ftruncate(fd, (off_t)size) < 0)
		return dn_error(-errno, "cannot size the link memory (%zu "
			"bytes): %s", size, strerror(errno));
	if (fcntl(fd, F_ADD_SEALS, DN_LINKMEM_SEALS) < 0)
		return dn_error(-errno, "cannot seal the link memory (a memfd "
			"made without MFD_ALLOW_SEALING?): %s", strerror(errno));
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return dn_error(-errno, "cannot map the link memory: %s",
			strerror(errno));
	dn_linkmem_layout(mem, base, DN_LINK_RING_SIZE);
	mem->rings->ring_size = DN_LINK_RING_SIZE;
	mem->rings->max_frame = max_frame;
	mem->bell->version = DN_LINKMEM_VERSION;
	atomic_thread_fence(memory_order_release);
	mem->bell->magic = DN_DOORBELL_MAGIC;
	return 0;
}

/* An endpoint's link memory, mapped for the switch thread. */
static int
dn_link_map(struct dn_switch *sw, struct dn_slot_link *s, int fd)
{
	uint32_t max_frame = dn_frame_room(sw->cfg.mtu);
	int ret;

	ret = dn_linkmem_make(fd, max_frame, &s->mem);
	if (ret < 0)
		return ret;
	s->bell = s->mem.bell;
	dn_fr_attach(&s->from_slave, &s->mem.rings->to_master,
		s->mem.to_master, DN_LINK_RING_SIZE, max_frame, 0);
	dn_fr_attach(&s->to_slave, &s->mem.rings->to_slave,
		s->mem.to_slave, DN_LINK_RING_SIZE, max_frame, 1);
	return 0;
}

int
dn_switch_peer_memory(struct dn_switch *sw, int fd)
{
	struct dn_linkmem mem;
	int ret;

	ret = dn_linkmem_make(fd, dn_frame_room(sw->cfg.mtu), &mem);
	if (ret < 0)
		return ret;
	/* The two slaves map it; the switch never looks at it again. */
	munmap(mem.bell, mem.size);
	return 0;
}

struct dn_peer_watch {
	const struct dn_linkmem_rings *rings;
	void *base;
	size_t size;
	uint64_t seen[2];
};

int
dn_peer_watch_open(int fd, struct dn_peer_watch **out)
{
	struct dn_peer_watch *w;
	struct dn_linkmem mem;
	void *base;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return dn_error(-ENOMEM, "out of memory for a peer link's watch");
	/* The master sized and sealed it: nobody can shrink it under us. */
	w->size = dn_linkmem_size(DN_LINK_RING_SIZE);
	base = mmap(NULL, w->size, PROT_READ, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		free(w);
		return dn_error(-errno, "cannot map a peer link to watch it: %s",
			strerror(errno));
	}
	dn_linkmem_layout(&mem, base, DN_LINK_RING_SIZE);
	w->base = base;
	w->rings = mem.rings;
	*out = w;
	return 0;
}

void
dn_peer_watch_read(struct dn_peer_watch *w, uint64_t *bytes)
{
	uint64_t now[2];
	int i;

	now[0] = atomic_load_explicit(&w->rings->to_master.head,
		memory_order_relaxed);
	now[1] = atomic_load_explicit(&w->rings->to_slave.head,
		memory_order_relaxed);
	for (i = 0; i < 2; i++) {
		if (now[i] > w->seen[i])
			w->seen[i] = now[i];
		bytes[i] = w->seen[i];
	}
}

void
dn_peer_watch_close(struct dn_peer_watch *w)
{
	munmap(w->base, w->size);
	free(w);
}

int
dn_switch_add(struct dn_switch *sw, const struct dn_endpoint_config *ep)
{
	struct dn_slot *s = NULL;
	unsigned int i;
	int slot = -1, ret;

	if (ep->tenant >= DN_MAX_TENANTS)
		return dn_error(-EINVAL, "tenant id %u out of range (0..%d)",
			ep->tenant, DN_MAX_TENANTS - 1);
	if (!dn_in_subnet(sw, ep->ip) || ep->ip == sw->cfg.gateway ||
	    ep->ip == sw->cfg.subnet || (ep->ip | sw->cfg.netmask) == ~0u)
		return dn_error(-EINVAL, "address %u.%u.%u.%u is not a host "
			"address of the switch's subnet", ep->ip >> 24,
			(ep->ip >> 16) & 255, (ep->ip >> 8) & 255, ep->ip & 255);
	pthread_mutex_lock(&sw->lock);
	for (i = 0; i < sw->cfg.max_endpoints; i++) {
		if (!sw->slots[i].in_use) {
			slot = (int)i;
			break;
		}
	}
	if (slot < 0) {
		ret = dn_error(-ENOSPC, "all %u endpoint slots are in use",
			sw->cfg.max_endpoints);
		goto out;
	}
	s = &sw->slots[slot];
	memset(s, 0, sizeof(*s));
	/* A new endpoint starts with a clean link (the thread leaves an
	 * inactive slot's faults alone). */
	memset(&sw->faults[slot], 0, sizeof(sw->faults[0]));
	ret = dn_link_map(sw, &s->l0, ep->shm_fd);
	if (ret < 0)
		goto out;
	s->l0.slave_wake_fd = ep->slave_wake_fd;
	s->l0.in_use = 1;
	s->n_links = 1;
	s->ip = ep->ip;
	s->tenant = ep->tenant;
	s->in_use = 1;
	ret = dn_mailbox_send(sw, DN_MAILBOX_ADD, slot);
	if (ret < 0) {
		munmap(s->l0.mem.bell, s->l0.mem.size);
		s->in_use = 0;
		goto out;
	}
	ret = slot;
out:
	pthread_mutex_unlock(&sw->lock);
	return ret;
}

int
dn_switch_remove(struct dn_switch *sw, int slot)
{
	struct dn_slot *s;
	int ret;

	pthread_mutex_lock(&sw->lock);
	if (!dn_slot_in_use(sw, slot)) {
		pthread_mutex_unlock(&sw->lock);
		return dn_error(-ENOENT, "no endpoint in slot %d", slot);
	}
	s = &sw->slots[slot];
	/* The switch thread lets go of the slot first; only then is the
	 * memory unmapped (the slave may still have it mapped: that is its
	 * own business). */
	ret = dn_mailbox_send(sw, DN_MAILBOX_REMOVE, slot);
	if (ret == 0) {
		unsigned int k;

		for (k = 0; k < DN_MAX_LINKS; k++) {
			struct dn_slot_link *l;

			if (k > 0 && s->steer == NULL)
				break;
			l = dn_link_of(s, k);
			if (l->in_use)
				munmap(l->mem.bell, l->mem.size);
			free(l->listen);
			l->listen = NULL;
			l->in_use = 0;
		}
		free(s->steer);
		s->steer = NULL;
		s->n_links = 0;
		s->in_use = 0;
	}
	pthread_mutex_unlock(&sw->lock);
	return ret;
}

struct dn_link_req {
	int slot;
	unsigned int link;
	struct dn_steer *steer;	/* join: the port's first extra link */
	uint64_t *listen;	/* listen: a bitmap for the link's first */
	uint16_t port;
	int on;
};

static void
dn_apply_join(struct dn_switch *sw, void *arg)
{
	struct dn_link_req *r = arg;
	struct dn_slot *s = &sw->slots[r->slot];

	if (s->steer == NULL) {
		s->steer = r->steer;
		s->steer->live = 1;	/* link 0, until now the only one */
	}
	s->steer->live |= 1u << r->link;
}

static void
dn_apply_leave(struct dn_switch *sw, void *arg)
{
	struct dn_link_req *r = arg;
	struct dn_slot *s = &sw->slots[r->slot];

	dn_link_stop(sw, (uint16_t)r->slot, r->link);
	/* Handed back to the control side, which frees it. */
	r->listen = dn_link_of(s, r->link)->listen;
	dn_link_of(s, r->link)->listen = NULL;
}

static void
dn_apply_listen(struct dn_switch *sw, void *arg)
{
	struct dn_link_req *r = arg;
	struct dn_slot_link *l = dn_link_of(&sw->slots[r->slot], r->link);

	if (l->listen == NULL) {
		l->listen = r->listen;
		r->listen = NULL;	/* taken */
	}
	if (r->on)
		l->listen[r->port / 64] |= 1ull << (r->port % 64);
	else
		l->listen[r->port / 64] &= ~(1ull << (r->port % 64));
}

/* A slot and link in use, under sw->lock; -ENOENT otherwise. */
static int
dn_link_check(struct dn_switch *sw, int slot, int link)
{
	struct dn_slot *s;

	if (!dn_slot_in_use(sw, slot))
		return dn_error(-ENOENT, "no endpoint in slot %d", slot);
	if (link < 0 || link >= DN_MAX_LINKS)
		return dn_error(-EINVAL, "link %d out of range (0..%d)", link,
			DN_MAX_LINKS - 1);
	s = &sw->slots[slot];
	if ((link > 0 && s->steer == NULL) || !dn_link_of(s,
	    (unsigned int)link)->in_use)
		return dn_error(-ENOENT, "endpoint in slot %d has no link %d",
			slot, link);
	return 0;
}

int
dn_switch_join(struct dn_switch *sw, int slot, int shm_fd, int slave_wake_fd)
{
	struct dn_link_req r = { slot, 0, NULL, NULL, 0, 0 };
	struct dn_steer *fresh = NULL;
	struct dn_slot_link *l;
	struct dn_slot *s;
	unsigned int k;
	int ret;

	pthread_mutex_lock(&sw->lock);
	if (!dn_slot_in_use(sw, slot)) {
		ret = dn_error(-ENOENT, "no endpoint in slot %d", slot);
		goto out;
	}
	s = &sw->slots[slot];
	if (s->steer == NULL) {
		fresh = calloc(1, sizeof(*fresh));
		if (fresh == NULL) {
			ret = dn_error(-ENOMEM, "out of memory for a second "
				"link");
			goto out;
		}
	}
	for (k = 0; k < DN_MAX_LINKS; k++) {
		if (k == 0 ? !s->l0.in_use :
		    !(fresh != NULL ? &fresh->link[k - 1] :
		    &s->steer->link[k - 1])->in_use)
			break;
	}
	if (k == DN_MAX_LINKS) {
		ret = dn_error(-ENOSPC, "endpoint in slot %d has all %d links "
			"in use", slot, DN_MAX_LINKS);
		goto out;
	}
	l = k == 0 ? &s->l0 : fresh != NULL ? &fresh->link[k - 1] :
		&s->steer->link[k - 1];
	memset(l, 0, sizeof(*l));
	ret = dn_link_map(sw, l, shm_fd);
	if (ret < 0)
		goto out;
	l->slave_wake_fd = slave_wake_fd;
	l->in_use = 1;
	r.link = k;
	r.steer = fresh;
	ret = dn_mailbox_call(sw, DN_MAILBOX_CALL, slot, dn_apply_join, &r);
	if (ret < 0) {
		munmap(l->mem.bell, l->mem.size);
		l->in_use = 0;
		goto out;
	}
	fresh = NULL;	/* the port's now */
	s->n_links++;
	ret = (int)k;
out:
	pthread_mutex_unlock(&sw->lock);
	free(fresh);
	return ret;
}

int
dn_switch_leave(struct dn_switch *sw, int slot, int link)
{
	struct dn_link_req r = { slot, (unsigned int)link, NULL, NULL, 0, 0 };
	struct dn_slot_link *l;
	int ret;

	pthread_mutex_lock(&sw->lock);
	ret = dn_link_check(sw, slot, link);
	if (ret < 0)
		goto out;
	if (sw->slots[slot].n_links == 1) {
		ret = dn_error(-EBUSY, "link %d is the last of the endpoint in "
			"slot %d: remove the endpoint", link, slot);
		goto out;
	}
	ret = dn_mailbox_call(sw, DN_MAILBOX_CALL, slot, dn_apply_leave, &r);
	if (ret < 0)
		goto out;
	l = dn_link_of(&sw->slots[slot], (unsigned int)link);
	munmap(l->mem.bell, l->mem.size);
	l->in_use = 0;
	sw->slots[slot].n_links--;
	free(r.listen);
out:
	pthread_mutex_unlock(&sw->lock);
	return ret;
}

int
dn_switch_listen(struct dn_switch *sw, int slot, int link, int port, int on)
{
	struct dn_link_req r = { slot, (unsigned int)link, NULL, NULL, 0,
		on != 0 };
	int ret;

	if (port < 1 || port > 65535)
		return dn_error(-EINVAL, "port %d out of range (1..65535)",
			port);
	r.port = (uint16_t)port;
	pthread_mutex_lock(&sw->lock);
	ret = dn_link_check(sw, slot, link);
	if (ret < 0)
		goto out;
	if (dn_link_of(&sw->slots[slot], (unsigned int)link)->listen == NULL) {
		if (!on)
			goto out;	/* nothing to take back */
		r.listen = calloc(DN_LISTEN_WORDS, sizeof(uint64_t));
		if (r.listen == NULL) {
			ret = dn_error(-ENOMEM, "out of memory for listeners");
			goto out;
		}
	}
	ret = dn_mailbox_call(sw, DN_MAILBOX_CALL, slot, dn_apply_listen, &r);
out:
	pthread_mutex_unlock(&sw->lock);
	free(r.listen);	/* unless the thread took it */
	return ret;
}

int
dn_switch_port_counters(struct dn_switch *sw, int slot,
	struct dn_port_counters *out)
{
	struct dn_slot *s;
	unsigned int k;

	/* The links and their memory stay while the lock is held. */
	pthread_mutex_lock(&sw->lock);
	if (!dn_slot_in_use(sw, slot)) {
		pthread_mutex_unlock(&sw->lock);
		return dn_error(-ENOENT, "no endpoint in slot %d", slot);
	}
	/* Counters are written by the switch thread alone; a torn read of a
	 * 64-bit counter cannot happen on the platforms DPDK supports. */
	s = &sw->slots[slot];
	*out = s->c;
	out->fault_dropped = sw->faults[slot].c.dropped;
	out->fault_duplicated = sw->faults[slot].c.duplicated;
	out->fault_reordered = sw->faults[slot].c.reordered;
	out->fault_corrupted = sw->faults[slot].c.corrupted;
	out->links = sw->slots[slot].n_links;
	out->link_up = 0;
	for (k = 0; k < DN_MAX_LINKS; k++) {
		struct dn_slot_link *l;

		if (k > 0 && s->steer == NULL)
			break;
		l = dn_link_of(s, k);
		if (l->in_use && atomic_load_explicit(
		    &l->mem.rings->slave_attached, memory_order_acquire) != 0)
			out->link_up = 1;
	}
	if (s->steer != NULL)
		out->steer_dropped = s->steer->dropped;
	pthread_mutex_unlock(&sw->lock);
	return 0;
}

void
dn_switch_counters(struct dn_switch *sw, struct dn_switch_counters *out)
{
	*out = sw->counters;
	out->endpoints = sw->n_active;
	out->pool_free = rte_mempool_avail_count(sw->pool);
}

void
dn_switch_destroy(struct dn_switch *sw)
{
	unsigned int i;

	for (i = 0; i < sw->cfg.max_endpoints; i++)
		if (sw->slots[i].in_use)
			dn_switch_remove(sw, (int)i);
	if (sw->thread_started) {
		dn_mailbox_send(sw, DN_MAILBOX_QUIT, 0);
		pthread_join(sw->thread, NULL);
	}
	dn_switch_free(sw);
}

struct dn_limit_req {
	int slot;
	int direction;
	uint64_t bits, pkts, burst_bytes, burst_pkts;
};

static void
dn_count_limited(struct dn_switch *sw)
{
	unsigned int i, n = 0;

	for (i = 0; i < sw->n_active; i++) {
		struct dn_slot *s = &sw->slots[sw->active_list[i]];

		n += dn_bucket_limited(&s->egress) || dn_bucket_limited(&s->ingress);
	}
	if (n > 0 && sw->n_limited == 0)
		sw->last_tick = rte_get_tsc_cycles();
	sw->n_limited = n;
}

static void
dn_apply_limit(struct dn_switch *sw, void *arg)
{
	struct dn_limit_req *r = arg;
	struct dn_slot *s = &sw->slots[r->slot];

	dn_bucket_configure(r->direction == DN_EGRESS ? &s->egress :
		&s->ingress, r->bits, r->pkts, r->burst_bytes, r->burst_pkts);
	dn_count_limited(sw);
}

/* Runs fn(sw, arg) on the switch thread for an endpoint slot in use, or
 * -ENOENT. */
static int
dn_slot_call(struct dn_switch *sw, int slot,
	void (*fn)(struct dn_switch *, void *), void *arg)
{
	int ret;

	pthread_mutex_lock(&sw->lock);
	if (!dn_slot_in_use(sw, slot))
		ret = dn_error(-ENOENT, "no endpoint in slot %d", slot);
	else
		ret = dn_mailbox_call(sw, DN_MAILBOX_CALL, slot, fn, arg);
	pthread_mutex_unlock(&sw->lock);
	return ret;
}

int
dn_switch_set_limit(struct dn_switch *sw, int slot, int direction,
	uint64_t bits_per_s, uint64_t pkts_per_s, uint64_t burst_bytes,
	uint64_t burst_pkts)
{
	struct dn_limit_req r = { slot, direction, bits_per_s, pkts_per_s,
		burst_bytes, burst_pkts };

	if (direction != DN_EGRESS && direction != DN_INGRESS)
		return dn_error(-EINVAL, "direction must be egress or ingress");
	return dn_slot_call(sw, slot, dn_apply_limit, &r);
}

struct dn_policy_req {
	int from, to, port, allow, ret;
};

static void
dn_apply_policy(struct dn_switch *sw, void *arg)
{
	struct dn_policy_req *r = arg;

	r->ret = dn_policy_set(sw->policy, (uint16_t)r->from, (uint16_t)r->to,
		(uint16_t)r->port, r->allow);
}

int
dn_switch_set_policy(struct dn_switch *sw, int from, int to, int port,
	int allow)
{
	struct dn_policy_req r = { from, to, port, allow, 0 };
	int ret;

	if (from < 0 || to < 0 || from >= DN_MAX_TENANTS ||
	    to >= DN_MAX_TENANTS || port < 0 || port > 65535)
		return dn_error(-EINVAL, "tenants are 0..%d and ports "
			"0..65535", DN_MAX_TENANTS - 1);
	pthread_mutex_lock(&sw->lock);
	ret = dn_mailbox_call(sw, DN_MAILBOX_CALL, 0, dn_apply_policy, &r);
	pthread_mutex_unlock(&sw->lock);
	if (ret == 0 && r.ret < 0)
		ret = dn_error(r.ret, "the policy table is full (%d port "
			"rules)", DN_MAX_PORT_RULES);
	return ret;
}

int
dn_switch_uplink(struct dn_switch *sw, struct dn_uplink_info *out)
{
	if (sw->uplink == NULL)
		return dn_error(-ENODEV, "this master has no uplink");
	dn_uplink_counters(sw->uplink, &out->port);
	out->tx_fault_dropped = sw->up_fault[DN_EGRESS].c.dropped;
	out->tx_fault_duplicated = sw->up_fault[DN_EGRESS].c.duplicated;
	out->tx_fault_reordered = sw->up_fault[DN_EGRESS].c.reordered;
	out->rx_fault_dropped = sw->up_fault[DN_INGRESS].c.dropped;
	out->rx_fault_duplicated = sw->up_fault[DN_INGRESS].c.duplicated;
	out->rx_fault_reordered = sw->up_fault[DN_INGRESS].c.reordered;
	out->rx_fault_corrupted = sw->up_fault[DN_INGRESS].c.corrupted;
	{
		int fds[DN_UPLINK_MAX_WAKE];

		out->wake_fds = dn_uplink_wake_fds(sw->uplink, fds,
			DN_UPLINK_MAX_WAKE);
		out->wake_fd = out->wake_fds > 0 ? fds[0] : -1;
	}
	return 0;
}

struct dn_fault_req {
	int slot;		/* -1: the uplink */
	int direction;
	struct dn_fault_config cfg;
};

static void
dn_apply_faults(struct dn_switch *sw, void *arg)
{
	struct dn_fault_req *r = arg;

	if (r->slot >= 0) {
		struct dn_slot *s = &sw->slots[r->slot];

		dn_fault_configure(&sw->faults[r->slot], &r->cfg);
		s->faulty = (uint8_t)dn_fault_on(&sw->faults[r->slot]);
	} else {
		dn_fault_configure(&sw->up_fault[r->direction], &r->cfg);
		sw->up_faulty[r->direction] =
			(uint8_t)dn_fault_on(&sw->up_fault[r->direction]);
	}
	/* A frame held when faults go off still leaves by the tick, which
	 * must then start from now rather than from a stale last tick. */
	if (sw->n_limited == 0)
		sw->last_tick = rte_get_tsc_cycles();
}

int
dn_switch_set_faults(struct dn_switch *sw, int slot, uint32_t drop_ppm,
	uint32_t dup_ppm, uint32_t reorder_ppm, uint32_t corrupt_ppm,
	uint32_t drop_next, uint64_t seed)
{
	struct dn_fault_req r = { slot, 0, { drop_ppm, dup_ppm, reorder_ppm,
		corrupt_ppm, drop_next, seed } };
	int ret;

	ret = dn_fault_validate(&r.cfg);
	if (ret < 0)
		return ret;
	return dn_slot_call(sw, slot, dn_apply_faults, &r);
}

int
dn_switch_set_uplink_faults(struct dn_switch *sw, int direction,
	uint32_t drop_ppm, uint32_t dup_ppm, uint32_t reorder_ppm,
	uint32_t corrupt_ppm, uint32_t drop_next, uint64_t seed)
{
	struct dn_fault_req r = { -1, direction, { drop_ppm, dup_ppm,
		reorder_ppm, corrupt_ppm, drop_next, seed } };
	int ret;

	if (direction != DN_EGRESS && direction != DN_INGRESS)
		return dn_error(-EINVAL, "direction must be egress or ingress");
	if (sw->uplink == NULL)
		return dn_error(-ENODEV, "this master has no uplink");
	if (direction == DN_EGRESS && corrupt_ppm != 0)
		return dn_error(-EINVAL, "no corruption towards the uplink: "
			"it checksums what leaves after the switch, so a "
			"flipped byte would leave with a valid checksum");
	ret = dn_fault_validate(&r.cfg);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&sw->lock);
	ret = dn_mailbox_call(sw, DN_MAILBOX_CALL, 0, dn_apply_faults, &r);
	pthread_mutex_unlock(&sw->lock);
	return ret;
}
