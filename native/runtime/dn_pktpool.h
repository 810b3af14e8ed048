/*
 * Packet-buffer pools and the frame size every internal link carries.
 * DPDK-only header.
 */
#ifndef DN_PKTPOOL_H
#define DN_PKTPOOL_H

#include <stdint.h>

#include <rte_mempool.h>

/* Bytes of the largest frame on an internal link of this MTU (Ethernet
 * header and one VLAN tag included), rounded up to 1 KiB: a whole frame
 * always fits one mbuf, so nothing on the data path handles chains. */
uint16_t dn_frame_room(uint16_t mtu);

/* A mempool of packet buffers with priv_size bytes of private area and
 * data_room bytes of data (past the headroom) each. */
int dn_pktpool_create(const char *name, unsigned int n, uint16_t priv_size,
	uint16_t data_room, struct rte_mempool **pool);

#endif /* DN_PKTPOOL_H */
