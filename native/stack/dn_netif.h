/*
 * lwIP netif over a DockNet link (dn_link.h).
 *
 * Two calls, as lwIP's own port drivers have: init when the stack opens,
 * poll from the stack's poll loop. A received frame becomes a pbuf_custom
 * around its mbuf (no copy); a sent frame's pbuf chain is copied once,
 * straight onto the link's ring, and the ring is published in bursts
 * (dn_link_tx_flush).
 */
#ifndef DN_NETIF_H
#define DN_NETIF_H

#include "lwip/err.h"
#include "lwip/netif.h"

struct dn_link;

/* Size of the per-mbuf private area the link's pool must reserve. */
#define DN_NETIF_PRIV_SIZE 64

/* Arguments for netif_add(): the link the netif runs on. */
err_t dn_netif_init(struct netif *netif);

/* Feeds up to budget received frames to lwIP; returns how many. */
int dn_netif_poll(struct netif *netif, int budget);

#endif /* DN_NETIF_H */
