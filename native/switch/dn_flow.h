/*
 * Which process of an endpoint a TCP connection belongs to, when several
 * processes share the endpoint's address (dn_switch_join): each process has
 * its own link and its own lwIP, and a segment delivered to the wrong one
 * would be answered with a reset.
 *
 * One table per endpoint that has had more than one link, keyed by the
 * remote address and port, the local port and the family (the local
 * address is the endpoint's; an IPv6 remote is kept as its IPv4 twin,
 * dn_addr6.h, so the family tells the two connections apart). Open addressing with a bounded probe; entries are never
 * moved, and expired ones are reused in place, so a lookup stops at the
 * first empty entry. The switch thread alone reads and writes it.
 *
 * An entry made by a SYN is held only briefly until the handshake
 * completes, so a flood of SYNs from varying ports cannot fill the table
 * for long; an established one lives until its reset, a while after its
 * FIN (the peer's TIME-WAIT), or until it has been idle a long time.
 * When a process goes, its connections' peers get a reset from the switch
 * at once (their next segment would find nobody): the table keeps the
 * peer's last acknowledgment for that.
 */
#ifndef DN_FLOW_H
#define DN_FLOW_H

#include <stdint.h>

#define DN_FLOW_ENTRIES 32768	/* a power of two */
#define DN_FLOW_PROBES 32
/* Seconds after which an entry may be reused, by state. */
#define DN_FLOW_SYN_S 30
#define DN_FLOW_CLOSING_S 120
#define DN_FLOW_IDLE_S 7200

enum dn_flow_state {
	DN_FLOW_EMPTY = 0,	/* ends a probe */
	DN_FLOW_SYN,		/* a SYN was steered; no ACK seen yet */
	DN_FLOW_OPEN,
	DN_FLOW_CLOSING,	/* a FIN was seen */
	DN_FLOW_DEAD,		/* removed; the probe goes on past it */
};

struct dn_flow {
	uint32_t rip;		/* host byte order */
	uint16_t rport;
	uint16_t lport;
	uint32_t seen;		/* seconds (the caller's clock) */
	/* The peer's last acknowledgment: the sequence number a reset on
	 * the process's behalf starts at (0: none seen yet). */
	uint32_t ack;
	uint8_t link;
	uint8_t state;
	uint8_t v6;		/* 1: an IPv6 connection (rip is the twin) */
	uint8_t pad;
};

struct dn_flows {
	struct dn_flow e[DN_FLOW_ENTRIES];
};

/* The live entry for the key, or NULL. */
struct dn_flow *dn_flow_find(struct dn_flows *t, uint32_t rip,
	uint16_t rport, uint16_t lport, uint8_t v6);

/* Records the key as belonging to link (state DN_FLOW_SYN or
 * DN_FLOW_OPEN), replacing an entry of the key or reusing an expired one.
 * live_links: bit k set for each link that exists (entries of others are
 * expired). NULL when the probe found no room. */
struct dn_flow *dn_flow_insert(struct dn_flows *t, uint32_t rip,
	uint16_t rport, uint16_t lport, uint8_t v6, uint8_t link,
	uint8_t state, uint32_t now, uint32_t live_links);

void dn_flow_remove(struct dn_flows *t, struct dn_flow *f);

/* Forgets every entry of link (it left). */
void dn_flow_forget_link(struct dn_flows *t, uint8_t link);

/* A hash of the key independent of the table's, for choosing among
 * listeners. */
uint32_t dn_flow_spread(uint32_t rip, uint16_t rport, uint16_t lport,
	uint8_t v6);

#endif /* DN_FLOW_H */
