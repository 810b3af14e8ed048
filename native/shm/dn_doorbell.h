/*
 * Doorbells: how two pollers on one host sleep without losing a wake-up.
 *
 * Shared-memory rings have no interrupts, so each link's memory (a memfd the
 * master creates and hands to the slave at attach) starts with a doorbell
 * page. A side that has found no work for a while announces "asleep" in its
 * flag, checks its rings once more, and only then blocks on its eventfd. A side that has
 * just put frames on the other's ring reads the flag and, only if it is set,
 * clears it and writes the other's eventfd. The fences make this Dekker's
 * pattern: either the sleeper sees the frames on its re-check, or the waker
 * sees the flag. While traffic flows nobody sleeps and no syscall is made.
 */
#ifndef DN_DOORBELL_H
#define DN_DOORBELL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#define DN_DOORBELL_SIZE 4096
#define DN_DOORBELL_MAGIC 0x646e6462u /* "dndb" */

struct dn_doorbell {
	uint32_t magic;
	uint32_t version;
	/* Each flag on its own cache line: the two sides write them. */
	_Alignas(64) _Atomic uint32_t slave_asleep;
	_Alignas(64) _Atomic uint32_t master_asleep;
	/* Wake-ups each side delivered, for stats and tests. */
	_Alignas(64) _Atomic uint64_t slave_wakeups;
	_Atomic uint64_t master_wakeups;
};

_Static_assert(sizeof(struct dn_doorbell) <= DN_DOORBELL_SIZE,
	"doorbell must fit its page");

/* Sleeper: announce, then the caller re-checks its rings before blocking. */
static inline void
dn_doorbell_announce(_Atomic uint32_t *asleep)
{
	atomic_store_explicit(asleep, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

/* Sleeper: work turned up (or it woke); it is no longer asleep. */
static inline void
dn_doorbell_cancel(_Atomic uint32_t *asleep)
{
	atomic_store_explicit(asleep, 0, memory_order_relaxed);
}

/* Waker, after its frames are on the ring: ring only a sleeping peer. */
static inline int
dn_doorbell_ring(_Atomic uint32_t *asleep, _Atomic uint64_t *count, int efd)
{
	static const uint64_t one = 1;

	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(asleep, memory_order_relaxed) == 0)
		return 0;
	if (atomic_exchange_explicit(asleep, 0, memory_order_relaxed) == 0)
		return 0;
	atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
	/* EAGAIN means the counter is saturated: the peer is woken anyway. */
	if (write(efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 1;
}

/* Sleeper, after waking: reset the eventfd so the next sleep blocks. */
static inline void
dn_doorbell_drain(int efd)
{
	uint64_t v;

	if (read(efd, &v, sizeof(v)) < 0)
		(void)0; /* EAGAIN: nothing was pending, which is fine */
}

#endif /* DN_DOORBELL_H */
