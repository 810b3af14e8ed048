/*
 * The master's data plane: one link per endpoint (two frame rings in memory
 * the master shares with the endpoint's process, dn_linkmem.h) and a switch
 * thread that forwards frames between them by destination IPv4 or IPv6
 * address.
 *
 * The switch answers ARP for the whole subnet and IPv6 neighbour
 * solicitations for the whole prefix itself (endpoint MACs are derived
 * from their IPv4 addresses), drops frames whose source is not the
 * sending endpoint's own address, and answers TCP segments for addresses
 * with no endpoint with a reset, so a peer of a process that died learns it
 * at once. Classification is in software; the table is indexed by the host
 * part of the address, which an IPv6 address of the prefix carries in its
 * low 32 bits. IPv6 frames carry TCP, UDP or ICMPv6 right after the fixed
 * header: extension headers are dropped as malformed (the stacks send
 * none). Endpoints are added and removed while it runs.
 */
#ifndef DN_SWITCH_H
#define DN_SWITCH_H

#include <stdint.h>

struct dn_switch;

struct dn_switch_config {
	uint32_t subnet;	/* host byte order */
	uint32_t netmask;
	uint32_t gateway;
	uint16_t mtu;
	unsigned int n_mbufs;
	unsigned int max_endpoints;
	unsigned int spin_us;	/* busy-poll this long before sleeping */
	int wake_fd;		/* eventfd the slaves ring */
	/* This host's share of the subnet (0/0: all of it). Addresses in it
	 * with no endpoint get resets; the rest of the subnet is on other
	 * hosts, behind the uplink. */
	uint32_t range;
	uint32_t range_mask;
	/* IPv6 (IPV6.md "Addressing"): an endpoint's IPv6 address is its IPv4
	 * host part in the low 32 bits of this prefix. All zero with length
	 * 0: no IPv6. Length 64..96, bits past the length zero. */
	uint8_t prefix6[16];	/* network order */
	uint8_t prefix6_len;
	const char *uplink;	/* DPDK device and arguments, or NULL */
	uint16_t uplink_frame;	/* bytes of one received uplink frame */
	/* The interface's promiscuous flag to put back when the uplink
	 * closes: 0 or 1 as a record of the master before says (it was killed
	 * before it could), -1 as it is when the uplink opens. */
	int uplink_promisc_was;
};

struct dn_endpoint_config {
	int shm_fd;		/* an empty memfd: becomes the link's memory */
	uint32_t ip;
	uint16_t tenant;	/* 0 .. 255; 0 is the default tenant */
	int slave_wake_fd;	/* eventfd that wakes the slave */
};

struct dn_port_counters {
	uint64_t rx_frames;
	uint64_t rx_bytes;
	uint64_t tx_frames;
	uint64_t tx_bytes;
	uint64_t drop_ring_full;	/* the endpoint did not keep up */
	uint64_t drop_no_route;		/* destination has no endpoint */
	uint64_t drop_spoofed;		/* source address not its own */
	uint64_t drop_malformed;
	uint64_t drop_policy;		/* tenant isolation */
	uint64_t egress_delayed;	/* frames that waited for tokens */
	uint64_t ingress_delayed;
	uint64_t ingress_dropped;	/* the ingress queue was full */
	uint64_t resets_sent;		/* on behalf of absent endpoints */
	uint64_t arp_replies;
	uint64_t nd_replies;		/* neighbour advertisements (IPv6) */
	uint64_t wakeups;		/* doorbells rung to the slave */
	/* Injected on the way to the endpoint (dn_switch_set_faults). */
	uint64_t fault_dropped;
	uint64_t fault_duplicated;
	uint64_t fault_reordered;
	uint64_t fault_corrupted;
	uint64_t steer_dropped;	/* SYNs with no room in the flow table */
	unsigned int links;		/* processes attached (dn_switch_join) */
	int link_up;			/* a slave has its link mapped */
};

struct dn_switch_counters {
	uint64_t loops;		/* switch loop iterations */
	uint64_t busy_loops;	/* iterations that moved a frame */
	uint64_t sleeps;
	uint64_t busy_ns;	/* time spent in iterations with work */
	uint64_t spin_ns;	/* time spent spinning with nothing to do */
	uint64_t run_ns;	/* time the thread has run */
	unsigned int endpoints;
	unsigned int pool_free;
};

int dn_switch_create(const struct dn_switch_config *cfg,
	struct dn_switch **out);
void dn_switch_destroy(struct dn_switch *sw);

/* Sets up the endpoint's link memory in shm_fd (which the caller then hands
 * to the endpoint's process) and starts forwarding to it. Returns the slot
 * (>= 0) used by the calls below. */
int dn_switch_add(struct dn_switch *sw, const struct dn_endpoint_config *ep);
int dn_switch_remove(struct dn_switch *sw, int slot);
/* Lays out a peer link's memory (dn_link.h) in shm_fd, an empty memfd made
 * with MFD_ALLOW_SEALING, for frames of the switch's MTU. The master hands
 * it to the two slaves; the switch keeps no mapping of it. */
int dn_switch_peer_memory(struct dn_switch *sw, int shm_fd);

/* The master's read-only view of a peer link, for its counters: bytes of
 * ring records (frames with their 8-byte headers and padding) each slave
 * has put on the link. The slaves write these positions: a read never
 * goes below the last one, so a peer cannot make a counter run backwards
 * (only its own link's run ahead). */
struct dn_peer_watch;
int dn_peer_watch_open(int shm_fd, struct dn_peer_watch **out);
/* [0]: from the slave in the slave's place, [1]: from the other. */
void dn_peer_watch_read(struct dn_peer_watch *w, uint64_t *bytes);
void dn_peer_watch_close(struct dn_peer_watch *w);

/*
 * Several processes per endpoint. Each process of an endpoint has a link of
 * its own in the endpoint's slot; the address, tenant, limits, faults and
 * counters stay the slot's. With several links the switch sends each frame
 * for the endpoint to one of them: a segment of a known connection to the
 * process that has it; a new connection (SYN) to one of the processes
 * listening on its port, spread by a hash of its addresses (as
 * SO_REUSEPORT spreads them), remembered in a per-slot table (dn_flow.h; a
 * SYN with no room in it is dropped, as by a full SYN queue); a reply to a
 * connection a process opened by the local port, each link having its own
 * range of ephemeral ports (dn_switch_link_ports); anything else to the
 * lowest link, whose stack answers an unknown segment with a reset.
 */
#define DN_MAX_LINKS 16
#define DN_LINK0_PORT_LO 49152	/* link 0: 49152 .. 65535 (lwIP's) */
#define DN_LINK_PORT_BASE 32768	/* link k >= 1: 1024 ports each from here */
#define DN_LINK_PORTS 1024

/* Adds a link for another process of the endpoint in slot, set up in
 * shm_fd (an empty memfd) as dn_switch_add does. Returns the link's index
 * (0 .. DN_MAX_LINKS - 1; 0 only when the first link left), -ENOENT for no
 * endpoint in slot, -ENOSPC when all links are in use. */
int dn_switch_join(struct dn_switch *sw, int slot, int shm_fd,
	int slave_wake_fd);
/* Takes a link away: what it sent is delivered, what waits for it dropped,
 * its connections and listeners forgotten. -EBUSY for the endpoint's last
 * link (dn_switch_remove removes the endpoint), -ENOENT for no such link. */
int dn_switch_leave(struct dn_switch *sw, int slot, int link);
/* The link's process listens on port (on = 1), or stopped (on = 0). */
int dn_switch_listen(struct dn_switch *sw, int slot, int link, int port,
	int on);
/* The ephemeral ports a link's stack picks from, so that the replies to
 * the connections it opens come back to it. -EINVAL out of range. */
int dn_switch_link_ports(int link, uint16_t *lo, uint16_t *hi);
int dn_switch_port_counters(struct dn_switch *sw, int slot,
	struct dn_port_counters *out);
void dn_switch_counters(struct dn_switch *sw, struct dn_switch_counters *out);
#define DN_EGRESS 0
#define DN_INGRESS 1

/* Rate limit of an endpoint in one direction (bits/s, packets/s; 0 is
 * unlimited; bursts of 0 pick 10 ms worth). Applies to live traffic. */
int dn_switch_set_limit(struct dn_switch *sw, int slot, int direction,
	uint64_t bits_per_s, uint64_t pkts_per_s, uint64_t burst_bytes,
	uint64_t burst_pkts);

/* Lets tenant `from` reach tenant `to` (on port, or any port if 0), or
 * takes that back (allow = 0). Applies to the next frame. */
int dn_switch_set_policy(struct dn_switch *sw, int from, int to, int port,
	int allow);

/* The uplink port's own counters (dn_uplink.c keeps them). */
struct dn_uplink_counters {
	uint64_t rx_frames;
	uint64_t tx_frames;
	uint64_t arp_requests_sent;
	uint64_t arp_replies_sent;
	uint64_t nd_solicits_sent;	/* IPv6 neighbour discovery */
	uint64_t nd_adverts_sent;
	uint64_t unresolved_dropped;
	uint64_t drop_other;
	int hw_classification;	/* 1: rte_flow steering available */
	/* Packet sockets on the interface that only take frames for this
	 * host's subnet and prefix (net_af_packet's and the wake socket). */
	int filtered_sockets;
	/* net_af_xdp with DockNet's XDP program (dn_xdp.h): 1 while it hands
	 * the kernel every frame not DockNet's; stale_xdp_removed: 1 if one a
	 * master killed with -9 left was removed first. */
	int xdp_filter;
	int stale_xdp_removed;
};

struct dn_uplink_info {
	struct dn_uplink_counters port;
	/* Injected faults (dn_switch_set_uplink_faults): tx towards the wire,
	 * rx from it. */
	uint64_t tx_fault_dropped;
	uint64_t tx_fault_duplicated;
	uint64_t tx_fault_reordered;
	uint64_t rx_fault_dropped;
	uint64_t rx_fault_duplicated;
	uint64_t rx_fault_reordered;
	uint64_t rx_fault_corrupted;
	int wake_fd;		/* the first the switch sleeps on; -1: none */
	/* How many it sleeps on: the port's AF_XDP sockets (net_af_xdp) or
	 * one packet socket; 0: the switch wakes every few ms to look. */
	int wake_fds;
};

/* Fault injection for tests (dn_fault.h), off unless set: frames on their
 * way to the endpoint in slot are dropped, duplicated, held back behind the
 * next one, or get one byte flipped, each with its probability in parts per
 * million (0 .. 1000000), decided by a PRNG seeded with seed; drop_next
 * drops the next that many frames outright (a lost FIN, a lost SYN). All
 * zeros turn it off. Lasts until the endpoint goes. -EINVAL for a
 * probability out of range, -ENOENT for no endpoint in the slot. */
int dn_switch_set_faults(struct dn_switch *sw, int slot, uint32_t drop_ppm,
	uint32_t dup_ppm, uint32_t reorder_ppm, uint32_t corrupt_ppm,
	uint32_t drop_next, uint64_t seed);

/* The same for the uplink, in one direction: DN_EGRESS towards the wire,
 * DN_INGRESS from it. Corruption only on DN_INGRESS: the uplink computes
 * the TCP/UDP checksums of what leaves after the switch is done with it,
 * so a flipped byte would leave with a valid checksum (-EINVAL). -ENODEV
 * when the switch has no uplink. */
int dn_switch_set_uplink_faults(struct dn_switch *sw, int direction,
	uint32_t drop_ppm, uint32_t dup_ppm, uint32_t reorder_ppm,
	uint32_t corrupt_ppm, uint32_t drop_next, uint64_t seed);

/* -ENODEV when the switch has no uplink. */
int dn_switch_uplink(struct dn_switch *sw, struct dn_uplink_info *out);

/* The MAC the switch gives an address (locally administered, 02:00:ip). */
void dn_switch_mac_of(uint32_t ip, uint8_t *mac);

#endif /* DN_SWITCH_H */
