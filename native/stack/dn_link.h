/*
 * A slave's link to its master: the two frame rings of the link's shared
 * memory (dn_linkmem.h, made by the master), an mbuf pool for received
 * frames, and the doorbell.
 *
 * This header carries no DPDK or lwIP types so that the lwIP side (which
 * must not see DPDK's headers: glibc's ip6 structures clash with lwIP's) can
 * use it. Received frames are copied out of the ring into mbufs and handed
 * over as segments; the lwIP side wraps them in pbufs without copying again
 * and gives each segment back with dn_link_free_seg().
 */
#ifndef DN_LINK_H
#define DN_LINK_H

#include "dn_export.h"

#include <stdint.h>

struct dn_link;

struct dn_link_config {
	int shm_fd;		/* the link's memory, from the master */
	uint16_t mtu;
	unsigned int n_mbufs;
	uint16_t priv_size;	/* per-mbuf private area (the pbuf_custom) */
	int wake_fd;		/* eventfd this side sleeps on */
	int peer_wake_fd;	/* eventfd that wakes the master */
	/* Unique in the process (the pool is named after it); NULL for the
	 * stack's one link. */
	const char *name;
	/* 1: mbufs of 2 KiB, for links that carry only small frames (load
	 * generators); 0: room for a whole jumbo frame in each. */
	int small;
};

struct dn_rxseg {
	void *seg;	/* the mbuf segment, for dn_link_free_seg() */
	void *priv;	/* its private area */
	void *data;
	uint16_t len;
};

struct dn_iov {
	const void *base;
	uint32_t len;
};

struct dn_link_stats {
	uint64_t rx_frames;
	uint64_t tx_frames;
	uint64_t tx_dropped;	/* ring full or master gone: TCP retransmits */
	uint64_t rx_dropped;	/* too large for our mbufs, or a bad ring */
	uint64_t wakeups_sent;
	uint64_t sleeps;
	unsigned int pool_free;
	/* Peer links: the frames above are the master's ring's only. */
	unsigned int peers;
	uint64_t peer_rx_frames;
	uint64_t peer_tx_frames;
	/* Frames a peer put on its ring that were not its to send (another
	 * address, not IPv4, not for us), or a bad ring. */
	uint64_t peer_rx_dropped;
	/* Frames for a peer that went through the master: its ring was full
	 * or it had not mapped the link yet. */
	uint64_t peer_tx_detoured;
	/* Peer links whose ring made no sense: no longer read. */
	uint64_t peers_broken;
	/* Frames for a peer that went through the master because the
	 * endpoint's egress limit had no tokens for them. */
	uint64_t peer_tx_limited;
};

/*
 * Peer links. Between two endpoints of one tenant that the switch would
 * only forward between (no ingress limits, no faults, one process each),
 * the master may hand both slaves a link of their own: the same memory as a
 * master-slave link (dn_linkmem.h), one slave in the master's place. IPv4
 * and IPv6 frames to the peer's hardware address then go straight onto its
 * ring, and the master is off the path: no wake-up of the switch between
 * them. ARP and multicast (neighbour discovery) still go through it.
 *
 * The peer is trusted with nothing: a received frame is kept only if it is
 * IPv4 or IPv6 from the peer's own hardware and IP address to ours
 * (checked in our copy of it), so a peer cannot speak for anyone else, and
 * a bad ring costs only the peer's own frames. A frame for a peer whose
 * ring is full, or that has not mapped the link yet, goes through the
 * master as before.
 */
#define DN_PEERS_MAX 16

struct dn_tokens;

struct dn_peer_config {
	int shm_fd;		/* the link's memory, from the master */
	int peer_wake_fd;	/* the peer's eventfd (dup'ed; the caller keeps its own) */
	int role;		/* 0: in the slave's place, 1: in the master's */
	uint64_t id;		/* the master's name for the link */
	uint8_t mac[6];		/* the peer's */
	uint32_t ip;		/* the peer's, host byte order */
	uint8_t own_mac[6];
	uint32_t own_ip;
	/* IPv6 addresses, network order; ip6_ok 0: IPv4 frames only. */
	int ip6_ok;
	uint8_t ip6[16];
	uint8_t own_ip6[16];
};

/* -EEXIST for an id already held, -ENOSPC beyond DN_PEERS_MAX, the map
 * checks' errors for memory that is not a sealed link of our version. */
int dn_link_peer_add(struct dn_link *link, const struct dn_peer_config *cfg);
/* -ENOENT if no such link. Frames still on its rings are lost. */
int dn_link_peer_remove(struct dn_link *link, uint64_t id);

/* The endpoint's egress limit, which the sender keeps on its peer links
 * (the master keeps links up under an egress limit, and takes them down
 * under an ingress one, which only the switch can hold to). A frame for a
 * peer takes its tokens here; one that finds too few goes through the
 * master, whose bucket holds it back. While peers are up, every frame for
 * the master is charged here too, so the two paths together keep to the
 * limit. NULL: no limit. The tokens are the caller's (a loop shares them
 * with its fast channels) and must outlive the setting. */
void dn_link_set_peer_egress(struct dn_link *link, struct dn_tokens *t);

int dn_link_open(const struct dn_link_config *cfg, struct dn_link **out);
void dn_link_close(struct dn_link *link);
/* The master came back: the link moves to the new master's memory and
 * eventfds, keeping its mbuf pool (frames the stack still holds stay
 * valid). On failure the link stays on the old memory, still down. Peer
 * links were closed when the link went down. */
int dn_link_remap(struct dn_link *link, int shm_fd, uint16_t mtu,
	int wake_fd, int peer_wake_fd);

/* Next received frame, whole in one segment (the pool's mbufs hold a
 * frame of the link's MTU; a larger one was dropped and counted): 1 with
 * *seg filled, 0 when nothing is waiting. */
DN_EXPORT int dn_link_rx(struct dn_link *link, struct dn_rxseg *seg);
DN_EXPORT void dn_link_free_seg(void *seg);

/* Copies a frame given as iov pieces onto the ring (the master sees it at
 * the next flush). -ENOBUFS when the ring is full, -ENOTCONN once the
 * master is gone. */
DN_EXPORT int dn_link_tx(struct dn_link *link, const struct dn_iov *iov,
	unsigned int n);
/* Publishes what was written and rings the master if it sleeps. */
DN_EXPORT void dn_link_tx_flush(struct dn_link *link);

/* The master is gone (its control connection closed): frames to it are
 * dropped from now on, so nothing waits for a ring nobody will read. The
 * peer links it set up go with it. */
void dn_link_set_down(struct dn_link *link);
int dn_link_is_down(const struct dn_link *link);

/* True when a received frame is waiting (a cheap look: no copy, no
 * mbuf). */
int dn_link_rx_pending(struct dn_link *link);

/* Going to sleep: announce it, re-check the ring. Returns 1 when frames
 * are already waiting (do not sleep), 0 when the caller may block on
 * dn_link_wake_fd(). */
int dn_link_arm(struct dn_link *link);
/* Woken, or gave up sleeping: clear the flag and drain the eventfd. */
void dn_link_disarm(struct dn_link *link);
int dn_link_wake_fd(const struct dn_link *link);

/* True when received frames should be copied out of mbufs rather than held:
 * the pool is running low and held mbufs would stall the link. */
int dn_link_pool_low(const struct dn_link *link);

void dn_link_stats(const struct dn_link *link, struct dn_link_stats *st);

#endif /* DN_LINK_H */
