/*
 * Token buckets for the switch: DockNet's timer-based rate limiter.
 *
 * Buckets are refilled by the switch thread's millisecond tick, never by a
 * clock read per frame. A frame that finds too few tokens waits in the
 * bucket's bounded queue; when that is full it is dropped and counted.
 * DPDK-only header (the queue holds mbufs).
 */
#ifndef DN_LIMIT_H
#define DN_LIMIT_H

#include <stdint.h>

#include <rte_mbuf.h>

#define DN_LIMIT_QUEUE 256

struct dn_bucket {
	uint64_t rate_bytes;	/* per second, 0: no byte limit */
	uint64_t rate_pkts;	/* per second, 0: no packet limit */
	int64_t burst_bytes;
	int64_t burst_pkts;
	int64_t tokens_bytes;
	int64_t tokens_pkts;
	uint64_t carry_bytes;	/* sub-token remainders of the refills */
	uint64_t carry_pkts;
	struct rte_mbuf *q[DN_LIMIT_QUEUE];
	uint16_t head;
	uint16_t len;
	uint64_t delayed;	/* frames that waited for tokens */
	uint64_t dropped;	/* frames the full queue refused */
};

/* bits_per_s and pkts_per_s of 0 mean unlimited in that dimension; a burst
 * of 0 picks 10 ms worth of the rate (at least two jumbo frames). Frames
 * still queued stay queued. */
void dn_bucket_configure(struct dn_bucket *b, uint64_t bits_per_s,
	uint64_t pkts_per_s, uint64_t burst_bytes, uint64_t burst_pkts);

static inline int
dn_bucket_limited(const struct dn_bucket *b)
{
	return b->rate_bytes != 0 || b->rate_pkts != 0;
}

/* Takes the tokens for a frame of len bytes if they are there and nothing
 * is queued ahead of it. */
static inline int
dn_bucket_take(struct dn_bucket *b, uint32_t len)
{
	if (b->len != 0)
		return 0;
	if ((b->rate_bytes && b->tokens_bytes < (int64_t)len) ||
	    (b->rate_pkts && b->tokens_pkts < 1))
		return 0;
	b->tokens_bytes -= len;
	b->tokens_pkts -= 1;
	return 1;
}

/* Queues a frame that must wait; returns -1 (caller frees) when full. */
int dn_bucket_enqueue(struct dn_bucket *b, struct rte_mbuf *m);

/* The next queued frame the tokens now allow, or NULL. */
struct rte_mbuf *dn_bucket_dequeue(struct dn_bucket *b);

/* The tick: adds elapsed_us worth of tokens, capped at the burst. */
void dn_bucket_refill(struct dn_bucket *b, uint64_t elapsed_us);

/* Frees whatever is queued (endpoint going away). */
void dn_bucket_flush(struct dn_bucket *b);

#endif /* DN_LIMIT_H */
