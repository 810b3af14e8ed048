/*
 * memif ports: creating, starting and removing a net_memif vdev at run time.
 *
 * Both sides use it: the master makes one server port per endpoint, a slave
 * makes one client port to its master. DPDK-only header.
 */
#ifndef DN_MEMIF_H
#define DN_MEMIF_H

#include <stdint.h>

#include <rte_mempool.h>

struct dn_memif_config {
	const char *name;	/* vdev name, unique in the process */
	const char *socket;	/* control socket path (file, not abstract) */
	const char *secret;	/* shared secret, may be NULL */
	int server;		/* 1: server role (master), 0: client */
	uint16_t mtu;
	uint8_t log2_ring;	/* descriptors per ring, log2 */
	uint16_t buffer_size;	/* bytes per memif buffer */
	const uint8_t *mac;	/* 6 bytes, may be NULL */
	int zero_copy;		/* client only: share our mbufs as memif buffers */
};

/* Creates, configures (1 Rx + 1 Tx queue on pool) and starts the port. */
int dn_memif_create(const struct dn_memif_config *cfg,
	struct rte_mempool *pool, uint16_t *port_id);

/* Polls the link state until it is up or timeout_ms passes (-ETIMEDOUT). */
int dn_memif_wait_link(uint16_t port_id, unsigned int timeout_ms);

/* memif buffer size for an MTU: every frame fits one buffer. (Frames
 * chained over several memif buffers were corrupted in copy mode in
 * DPDK 22.11 in our tests: TCP over them degenerated into an ACK storm.) */
uint16_t dn_memif_buffer_size(uint16_t mtu);

/* Stops, closes and removes the vdev. */
void dn_memif_destroy(uint16_t port_id, const char *name);

/* A mempool of packet buffers with priv_size bytes of private area and
 * data_room bytes of data (past the headroom) each. */
int dn_pktpool_create(const char *name, unsigned int n, uint16_t priv_size,
	uint16_t data_room, struct rte_mempool **pool);

#endif /* DN_MEMIF_H */
