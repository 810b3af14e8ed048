/* Fault injection on a switch link (see dn_fault.h). */
#include <errno.h>

#include <rte_ether.h>

#include "dn_error.h"
#include "dn_fault.h"

/* splitmix64: spreads any seed, 0 included, over the state space, so
 * neighbouring seeds give unrelated sequences. */
static uint64_t
dn_fault_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* xorshift64*: a multiply and three shifts per draw, good enough to
 * decide which frames to hurt. */
static inline uint32_t
dn_fault_draw(struct dn_fault *f)
{
	uint64_t x = f->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	f->rng = x;
	return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

static inline int
dn_fault_roll(struct dn_fault *f, uint64_t threshold)
{
	/* No draw for a fault that is off: the sequence a seed gives for one
	 * fault does not depend on the others being configured. */
	return threshold != 0 && dn_fault_draw(f) < threshold;
}

static uint64_t
dn_fault_threshold(uint32_t ppm)
{
	return ((uint64_t)ppm << 32) / DN_FAULT_PPM_MAX;
}

static void
dn_fault_update_on(struct dn_fault *f)
{
	f->on = f->drop_t || f->dup_t || f->reorder_t || f->corrupt_t ||
		f->drop_next || f->held != NULL;
}

int
dn_fault_validate(const struct dn_fault_config *cfg)
{
	static const char *const names[] = { "drop_ppm", "dup_ppm",
		"reorder_ppm", "corrupt_ppm" };
	const uint32_t v[] = { cfg->drop_ppm, cfg->dup_ppm, cfg->reorder_ppm,
		cfg->corrupt_ppm };
	unsigned int i;

	for (i = 0; i < 4; i++)
		if (v[i] > DN_FAULT_PPM_MAX)
			return dn_error(-EINVAL, "%s is %u: a probability is "
				"0 to %u parts per million", names[i], v[i],
				DN_FAULT_PPM_MAX);
	return 0;
}

void
dn_fault_configure(struct dn_fault *f, const struct dn_fault_config *cfg)
{
	f->drop_t = dn_fault_threshold(cfg->drop_ppm);
	f->dup_t = dn_fault_threshold(cfg->dup_ppm);
	f->reorder_t = dn_fault_threshold(cfg->reorder_ppm);
	f->corrupt_t = dn_fault_threshold(cfg->corrupt_ppm);
	f->drop_next = cfg->drop_next;
	f->rng = dn_fault_mix(cfg->seed);
	if (f->rng == 0)	/* xorshift's one fixed point */
		f->rng = 1;
	dn_fault_update_on(f);
}

/* One byte past the Ethernet header, changed to a different value. */
static void
dn_fault_corrupt(struct dn_fault *f, struct rte_mbuf *m)
{
	uint16_t len = rte_pktmbuf_data_len(m);
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	uint32_t r;

	if (len <= RTE_ETHER_HDR_LEN)
		return;
	r = dn_fault_draw(f);
	p[RTE_ETHER_HDR_LEN + r % (len - RTE_ETHER_HDR_LEN)] ^=
		(uint8_t)((r >> 24) | 1);
	f->c.corrupted++;
}

unsigned int
dn_fault_apply(struct dn_fault *f, struct rte_mbuf *m,
	struct rte_mempool *pool, struct rte_mbuf **out)
{
	struct rte_mbuf *dup = NULL;
	unsigned int n = 0;

	if (f->drop_next > 0) {
		f->drop_next--;
		f->c.dropped++;
		rte_pktmbuf_free(m);
		dn_fault_update_on(f);
		return 0;
	}
	if (dn_fault_roll(f, f->drop_t)) {
		f->c.dropped++;
		rte_pktmbuf_free(m);
		return 0;
	}
	if (dn_fault_roll(f, f->corrupt_t))
		dn_fault_corrupt(f, m);
	if (dn_fault_roll(f, f->dup_t)) {
		/* A copy, not a reference: the two frames go out through
		 * separate copies onto the ring and are freed separately. No
		 * mbuf left means no duplicate, not a lost frame. */
		dup = rte_pktmbuf_copy(m, pool, 0, UINT32_MAX);
		if (dup != NULL)
			f->c.duplicated++;
	}
	if (f->held != NULL) {
		/* The frame held back goes after this one: the reorder. */
		out[n++] = m;
		if (dup != NULL)
			out[n++] = dup;
		out[n++] = f->held;
		f->held = NULL;
		dn_fault_update_on(f);
		return n;
	}
	if (dn_fault_roll(f, f->reorder_t)) {
		f->held = m;
		f->on = 1;
		f->c.reordered++;
		if (dup != NULL)
			out[n++] = dup;
		return n;
	}
	out[n++] = m;
	if (dup != NULL)
		out[n++] = dup;
	return n;
}

struct rte_mbuf *
dn_fault_release(struct dn_fault *f)
{
	struct rte_mbuf *m = f->held;

	f->held = NULL;
	dn_fault_update_on(f);
	return m;
}
