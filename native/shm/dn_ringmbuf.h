/*
 * Frames between a link's rings (dn_framering.h) and DPDK mbufs, for both
 * ends of a link: the master's switch and a slave's link. DPDK-only header.
 */
#ifndef DN_RINGMBUF_H
#define DN_RINGMBUF_H

#include <errno.h>
#include <stdint.h>

#include <rte_mbuf.h>
#include <rte_memcpy.h>

#include "dn_framering.h"

/* Copies a frame (possibly a chain, as the uplink delivers them) onto r;
 * -ENOBUFS when the ring is full. Visible to the peer after
 * dn_fr_publish(). */
static inline int
dn_fr_put_mbuf(struct dn_fr *r, const struct rte_mbuf *m)
{
	uint8_t *dst = dn_fr_reserve(r, m->pkt_len);
	uint32_t off = 0;

	if (dst == NULL)
		return -ENOBUFS;
	for (; m != NULL; m = m->next) {
		rte_memcpy(dst + off, rte_pktmbuf_mtod(m, void *), m->data_len);
		off += m->data_len;
	}
	dn_fr_commit(r, off);
	return 0;
}

/* Copies up to max frames off r into mbufs from pool, each holding up to
 * room bytes. Frames longer than that are dropped (*too_long counts them).
 * A frame stays on the ring while the pool is empty: the producer then
 * sees a full ring, which is back-pressure, not loss. If the producer wrote
 * nonsense, everything it published is dropped and *bad is counted. */
static inline uint16_t
dn_fr_get_mbufs(struct dn_fr *r, struct rte_mempool *pool, uint32_t room,
	struct rte_mbuf **rx, uint16_t max, uint64_t *too_long, uint64_t *bad)
{
	const uint8_t *frame;
	uint32_t len;
	uint16_t n = 0;
	int got, moved = 0;

	while (n < max && (got = dn_fr_peek(r, &frame, &len)) != 0) {
		struct rte_mbuf *m;

		if (got < 0) {
			(*bad)++;
			dn_fr_skip_all(r);
			return n;
		}
		if (len > room) {
			(*too_long)++;
			dn_fr_next(r, len);
			moved = 1;
			continue;
		}
		m = rte_pktmbuf_alloc(pool);
		if (m == NULL)
			break;
		rte_memcpy(rte_pktmbuf_mtod(m, void *), frame, len);
		m->data_len = (uint16_t)len;
		m->pkt_len = len;
		rx[n++] = m;
		dn_fr_next(r, len);
		moved = 1;
	}
	if (moved)
		dn_fr_release(r);
	return n;
}

#endif /* DN_RINGMBUF_H */
