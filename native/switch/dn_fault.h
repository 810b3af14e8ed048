/*
 * Fault injection on a link of the switch, for tests: drop, duplicate,
 * reorder and corrupt frames with given probabilities (after VPP's nsim;
 * this project's kernels have no netem).
 *
 * One dn_fault per direction of a link. Probabilities are integers in parts
 * per million, so a configuration means the same thing everywhere and a
 * seed replays the same decisions. The PRNG is the fault's own (xorshift64*,
 * seeded through splitmix64): no global state, and two links never share a
 * sequence. A reordered frame is held until the next frame on the same link
 * has gone, or until the switch's millisecond tick releases it: one frame at
 * most, so nothing is held longer than a tick. Corruption flips one byte
 * past the Ethernet header in the frame's first segment; the receiver's
 * checksums are what catch it (internal links carry none unless the
 * endpoint turns them on: DOCKNET_LINK_CHECKSUMS=1).
 *
 * The switch thread alone calls these, except dn_fault_validate.
 * DPDK-only header (frames are mbufs).
 */
#ifndef DN_FAULT_H
#define DN_FAULT_H

#include <stdint.h>

#include <rte_mbuf.h>

#define DN_FAULT_PPM_MAX 1000000u
/* At most this many frames come out of one dn_fault_apply(): the frame,
 * its duplicate and a frame held back before them. */
#define DN_FAULT_MAX_OUT 3

struct dn_fault_config {
	uint32_t drop_ppm;
	uint32_t dup_ppm;
	uint32_t reorder_ppm;
	uint32_t corrupt_ppm;
	uint32_t drop_next;	/* one-shot: the next N frames are dropped */
	uint64_t seed;
};

struct dn_fault_counters {
	uint64_t dropped;
	uint64_t duplicated;
	uint64_t reordered;
	uint64_t corrupted;
};

struct dn_fault {
	int on;			/* any fault configured, or a frame held */
	/* Thresholds against the PRNG's top 32 bits: ppm scaled to 2^32
	 * (a ppm of a million is 2^32, which every draw is below). */
	uint64_t drop_t;
	uint64_t dup_t;
	uint64_t reorder_t;
	uint64_t corrupt_t;
	uint32_t drop_next;
	uint64_t rng;
	struct rte_mbuf *held;	/* the frame that waits for the next one */
	struct dn_fault_counters c;
};

/* -EINVAL (with the reason) for a probability above a million. */
int dn_fault_validate(const struct dn_fault_config *cfg);

/* Replaces the configuration and reseeds; all zeros turn faults off. A
 * frame still held stays held (the caller releases it with
 * dn_fault_release()). Counters are kept. */
void dn_fault_configure(struct dn_fault *f, const struct dn_fault_config *cfg);

static inline int
dn_fault_on(const struct dn_fault *f)
{
	return f->on;
}

/* Applies the faults to m, which the caller owns until now. Fills out[]
 * with the frames to send, in order (0 to DN_FAULT_MAX_OUT of them: none
 * when m was dropped or held); duplicates are copies from pool. */
unsigned int dn_fault_apply(struct dn_fault *f, struct rte_mbuf *m,
	struct rte_mempool *pool, struct rte_mbuf **out);

/* The held frame, if any, now the caller's (the tick, a reconfiguration,
 * the link going away). */
struct rte_mbuf *dn_fault_release(struct dn_fault *f);

#endif /* DN_FAULT_H */
