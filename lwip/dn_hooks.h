/*
 * The project's hooks into lwIP's core (LWIP_HOOK_FILENAME in lwipopts.h).
 */
#ifndef DN_HOOKS_H
#define DN_HOOKS_H

#include "lwip/err.h"

struct pbuf;
struct tcp_hdr;
struct tcp_pcb;

/* LWIP_HOOK_TCP_INPACKET_PCB: a SYN to a listener when no control block
 * is left gets a reset (ECONNREFUSED at the client, as from the kernel)
 * instead of being dropped to time out there. Anything else: ERR_OK. */
err_t dn_tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr,
	struct pbuf *p);

#endif /* DN_HOOKS_H */
