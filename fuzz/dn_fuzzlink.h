/*
 * A link for the fuzz harnesses (fuzz/fuzz_stack.c): the dn_link.h API
 * with no DPDK and no master. Received frames are the ones the harness
 * pushes, each in a heap buffer of its exact length so that the sanitizer
 * sees any read past a frame's end; sent frames are discarded, except the
 * last, which the harness reads to answer the stack as a peer would.
 *
 * The thing under test is the stack and the netif above this link, so it
 * hands frames over the way native/dn_link.c does (one segment a frame, frames
 * longer than the link's room dropped) and nothing more.
 */
#ifndef DN_FUZZLINK_H
#define DN_FUZZLINK_H

#include <stdint.h>

#include "dn_link.h"

/* The link dn_link_open() made last (the stack keeps its link private). */
struct dn_link *dn_fuzzlink_current(void);

/* Queues one frame for the next dn_link_rx(); copies it. Returns 0, or
 * -ENOBUFS when a frame is already waiting. */
int dn_fuzzlink_push(struct dn_link *link, const void *frame, uint32_t len);

/* Whether the stack should see its pool as running low (the netif then
 * copies frames out of the segments instead of holding them). */
void dn_fuzzlink_set_pool_low(struct dn_link *link, int low);

/* The last frame the stack sent, or NULL (and *len 0) if none yet. */
const uint8_t *dn_fuzzlink_last_tx(const struct dn_link *link,
	uint32_t *len);

/* Segments handed out and not yet given back. */
long dn_fuzzlink_segs_out(const struct dn_link *link);

#endif /* DN_FUZZLINK_H */
