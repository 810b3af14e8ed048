/*
 * The project's hooks into lwIP's core (LWIP_HOOK_FILENAME in lwipopts.h).
 */
#ifndef DN_HOOKS_H
#define DN_HOOKS_H

#include "lwip/arch.h"
#include "lwip/err.h"

struct ip6_addr;
struct netif;
struct pbuf;
struct tcp_hdr;
struct tcp_pcb;

/* LWIP_HOOK_TCP_INPACKET_PCB, called by tcp_input() for every segment
 * that found a control block (listener, connection or TIME-WAIT) before
 * lwIP looks at its options or state. Anything else than ERR_OK drops
 * the segment.
 *
 * - A segment whose options are malformed is dropped: lwIP 2.1.3's
 *   tcp_parseopt() reads an option's length byte even when the kind is
 *   the options' last byte, one past the header.
 * - A SYN to a listener gets a reset (ECONNREFUSED at the client, as from
 *   the kernel) when no control block is left or the stack's connection
 *   table has no place for it, instead of being dropped to time out there
 *   or accepted only to be reset.
 *
 * Both families come through here: the reset goes to lwIP's current
 * source and destination, which are of the segment's family. */
err_t dn_tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr, u16_t optlen,
	u16_t opt1len, const u8_t *opt2, struct pbuf *p);

/* LWIP_HOOK_ND6_GET_GW, from dn_stack.c: the next hop for an IPv6
 * destination off the on-link prefix, the gateway derived from the
 * stack's configuration (NULL when it has none). lwIP's own choice would
 * be a router learned from advertisements, which DockNet never sends. */
const struct ip6_addr *dn_nd6_gateway(struct netif *netif,
	const struct ip6_addr *dest);

/* From dn_stack.c: 0 when the stack's connection table cannot take one
 * more accepted connection (places already promised to handshakes under
 * way counted), else 1. */
int dn_stack_accept_room(void);

#endif /* DN_HOOKS_H */
