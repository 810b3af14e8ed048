/*
 * The master's uplink: one DPDK port (net_af_packet, net_af_xdp, net_tap,
 * net_memif or a NIC) to the network the other hosts are on.
 *
 * All hosts' endpoints share one IPv4 subnet (and one IPv6 prefix) on that
 * segment, each master handing out its own range. The uplink answers ARP
 * and IPv6 neighbour solicitations for this host's endpoints with its own
 * MAC, learns the MACs of other hosts' addresses from ARP, from neighbour
 * advertisements and from the frames it receives, holds a few frames while
 * it asks, and fills in the TCP/UDP (and ICMPv6) checksums that the
 * internal links leave empty. IPv6 neighbours are kept by their IPv4 twin
 * (dn_addr6.h): an IPv6 source of the prefix with none is dropped, since
 * no reply could reach it. DPDK-only header.
 */
#ifndef DN_UPLINK_H
#define DN_UPLINK_H

#include <stdint.h>

#include <rte_mbuf.h>

#include "dn_addr6.h"
#include "dn_switch.h"	/* struct dn_uplink_counters */

struct dn_uplink;

/* Whether an address is one of this host's endpoints (for proxy ARP). */
typedef int (*dn_uplink_is_local_fn)(void *ctx, uint32_t ip);

/* frame_room: bytes a received frame may take in one mbuf (the device's
 * frame size, e.g. net_af_packet's framesz). With an iface= argument, the
 * interface's promiscuous flag is put back as it was when the uplink
 * closes (promisc_was: 0 or 1 as the caller knows it was, -1 as it is
 * now). net_af_xdp takes frames of at most a page: a larger MTU is
 * refused (-EMSGSIZE) before the port is set up. Before net_af_xdp opens
 * on an interface, a DockNet XDP program a stopped master left there is
 * removed (dn_xdp.h); when it loads DockNet's (xdp_prog=...dn_xdp_filter.o)
 * the program is configured once the port has started. */
int dn_uplink_open(const char *devargs, struct rte_mempool *pool,
	uint16_t mtu, uint16_t frame_room, uint32_t my_ip, uint32_t subnet,
	uint32_t netmask, const struct dn_prefix6 *p6, int promisc_was,
	dn_uplink_is_local_fn is_local, void *ctx, struct dn_uplink **out);
void dn_uplink_close(struct dn_uplink *u);

/* A frame for dst_ip on another host: rewritten, checksummed, queued (or
 * held until ARP answers, or dropped and counted). */
void dn_uplink_send(struct dn_uplink *u, struct rte_mbuf *m, uint32_t dst_ip);
/* The same for an IPv6 frame to the address whose IPv4 twin is dst_twin
 * (held until neighbour discovery answers). */
void dn_uplink_send6(struct dn_uplink *u, struct rte_mbuf *m,
	uint32_t dst_twin);
/* Sends what is queued. */
void dn_uplink_flush(struct dn_uplink *u);

/* Receives a burst; ARP and neighbour discovery are handled here. Returns
 * the IPv4 and IPv6 frames for this host's endpoints (an IPv6 one with its
 * payload length checked against the frame), Ethernet header still to be
 * rewritten by the caller. */
uint16_t dn_uplink_rx(struct dn_uplink *u, struct rte_mbuf **pkts, uint16_t n);

/* Descriptors that become readable when frames arrive, for the switch's
 * sleep: a packet socket of our own on the port's interface (ports with an
 * iface= argument, such as net_af_packet), or net_af_xdp's own AF_XDP
 * sockets (it has no Rx interrupts). Writes at most max; returns how many
 * (0: the switch has to look now and then). */
#define DN_UPLINK_MAX_WAKE 4
int dn_uplink_wake_fds(const struct dn_uplink *u, int *fds, int max);
/* After a sleep woke on fd: 1 if fd is the uplink's (a packet socket is
 * drained, and *again set: the port's own socket may get the frame a
 * moment later, so the next sleep should be short), 0 if not. */
int dn_uplink_woken(struct dn_uplink *u, int fd, int *again);

void dn_uplink_counters(const struct dn_uplink *u, struct dn_uplink_counters *c);

#endif /* DN_UPLINK_H */
