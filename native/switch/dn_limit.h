/*
 * Token buckets: DockNet's rate limiter, in the switch and for the fast
 * channels the switch does not see.
 *
 * The token arithmetic (struct dn_tokens) is the one copy: the switch
 * refills it from its millisecond tick, never by a clock read per frame,
 * and takes a frame's worth at a time; a process enforcing its limits on
 * fast channels (aiodocknet/native/bucket.py) refills it from the clock
 * and takes what a byte stream may send now. Either way the burst is the
 * same, so an endpoint measures the same limit on either path.
 *
 * The switch's bucket adds a bounded queue of frames waiting for tokens;
 * when that is full a frame is dropped and counted.
 */
#ifndef DN_LIMIT_H
#define DN_LIMIT_H

#include <stdint.h>

#define DN_LIMIT_QUEUE 256
/* A byte stream has no packets: one counts per segment lwIP would send. */
#define DN_LIMIT_SEGMENT 8960

struct rte_mbuf;

struct dn_tokens {
	uint64_t rate_bytes;	/* per second, 0: no byte limit */
	uint64_t rate_pkts;	/* per second, 0: no packet limit */
	int64_t burst_bytes;
	int64_t burst_pkts;
	int64_t bytes;		/* tokens */
	int64_t pkts;
	uint64_t carry_bytes;	/* sub-token remainders of the refills */
	uint64_t carry_pkts;
	uint64_t stamp_ns;	/* the clock at the last clock refill */
};

/* bits_per_s and pkts_per_s of 0 mean unlimited in that dimension; a burst
 * of 0 picks 10 ms worth of the rate (at least two jumbo frames, two
 * packets). A new limit starts with a full bucket. */
void dn_tokens_configure(struct dn_tokens *t, uint64_t bits_per_s,
	uint64_t pkts_per_s, uint64_t burst_bytes, uint64_t burst_pkts);

static inline int
dn_tokens_limited(const struct dn_tokens *t)
{
	return t->rate_bytes != 0 || t->rate_pkts != 0;
}

/* Adds elapsed_us worth of tokens, capped at the burst. */
void dn_tokens_refill(struct dn_tokens *t, uint64_t elapsed_us);

/* Takes the tokens for a frame of len bytes if they are there. */
static inline int
dn_tokens_take(struct dn_tokens *t, uint32_t len)
{
	if ((t->rate_bytes && t->bytes < (int64_t)len) ||
	    (t->rate_pkts && t->pkts < 1))
		return 0;
	t->bytes -= len;
	t->pkts -= 1;
	return 1;
}

/* A byte stream: refills from the clock, then how many of want bytes may
 * go now (a segment's worth per packet token). */
uint32_t dn_tokens_allowance(struct dn_tokens *t, uint32_t want);
/* n bytes went: their bytes and one packet per started segment. */
void dn_tokens_spend(struct dn_tokens *t, uint32_t n);
/* A frame of len bytes, from the clock: 1 if its tokens are there (they
 * are not taken). */
int dn_tokens_admit(struct dn_tokens *t, uint32_t len);
/* A frame of len bytes went: its bytes and one packet, into debt if need
 * be (the next frames wait until the refills have paid it off). */
void dn_tokens_charge(struct dn_tokens *t, uint32_t len);
/* Seconds until a segment's worth may go again (at least half a
 * millisecond: a timer that fires sooner only finds too little). */
double dn_tokens_delay(const struct dn_tokens *t);

struct dn_bucket {
	struct dn_tokens tokens;
	struct rte_mbuf *q[DN_LIMIT_QUEUE];
	uint16_t head;
	uint16_t len;
	uint64_t delayed;	/* frames that waited for tokens */
	uint64_t dropped;	/* frames the full queue refused */
};

/* dn_tokens_configure; frames still queued stay queued. */
void dn_bucket_configure(struct dn_bucket *b, uint64_t bits_per_s,
	uint64_t pkts_per_s, uint64_t burst_bytes, uint64_t burst_pkts);

static inline int
dn_bucket_limited(const struct dn_bucket *b)
{
	return dn_tokens_limited(&b->tokens);
}

/* Takes the tokens for a frame of len bytes if they are there and nothing
 * is queued ahead of it. */
static inline int
dn_bucket_take(struct dn_bucket *b, uint32_t len)
{
	return b->len == 0 && dn_tokens_take(&b->tokens, len);
}

/* Queues a frame that must wait; returns -1 (caller frees) when full. */
int dn_bucket_enqueue(struct dn_bucket *b, struct rte_mbuf *m);

/* The next queued frame the tokens now allow, or NULL. */
struct rte_mbuf *dn_bucket_dequeue(struct dn_bucket *b);

/* The tick: adds elapsed_us worth of tokens, capped at the burst. */
static inline void
dn_bucket_refill(struct dn_bucket *b, uint64_t elapsed_us)
{
	dn_tokens_refill(&b->tokens, elapsed_us);
}

/* Frees whatever is queued (endpoint going away). */
void dn_bucket_flush(struct dn_bucket *b);

#endif /* DN_LIMIT_H */
