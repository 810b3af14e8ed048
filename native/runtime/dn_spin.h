/*
 * When a poller that found nothing to do spins and when it sleeps: the one
 * policy of the master's switch thread, the services' pollers
 * (aiodocknet/poller.py, through _lib) and the native benchmark loops.
 *
 * Spinning for the next bit of work pays while the answer is on its way
 * and a core would otherwise idle. A poller spins for spin_ns after its
 * last work, then sleeps on its doorbell. It sleeps at once instead
 *  - after miss_limit spins in a row ran out (the peers answer in longer
 *    than spin_ns: services that think for milliseconds, whose spins only
 *    take a core from the processes the answer has to come from), until a
 *    wake within spin_ns of going to sleep (a spin would have caught it)
 *    brings spinning back;
 *  - while the host is crowded (dn_crowding.h): more tasks runnable than
 *    the cores plus the caller's slack, where a spin delays the very
 *    process the work has to come from.
 *
 * Two ways in: dn_spin_decide() for a poller that keeps its own idea of
 * when it was last busy (the Python poller: a fast-channel write in C
 * counts too), dn_spin_idle() for a C loop that polls in passes.
 */
#ifndef DN_SPIN_H
#define DN_SPIN_H

#include <stdint.h>

#include "dn_crowding.h"
#include "dn_export.h"

/* How often a spinning poller looks at the host's load. */
#define DN_SPIN_CROWD_CHECK_NS 2000000ull

enum dn_spin_verdict {
	DN_SPIN_ON = 0,		/* keep spinning */
	DN_SPIN_SPUN_OUT = 1,	/* spin_ns without work: sleep (a miss) */
	DN_SPIN_HABIT = 2,	/* the last spins all ran out: sleep at once */
	DN_SPIN_CROWDED = 3	/* the host is crowded: sleep */
};

struct dn_spin {
	uint64_t spin_ns;
	unsigned int miss_limit;
	unsigned int misses;	/* spins in a row that ran out, capped */
	uint64_t slept_at;	/* the clock when the last sleep began */
	struct dn_crowding crowding;
	/* For dn_spin_idle(): */
	unsigned int passes;	/* idle passes in a row */
	uint64_t idle_since;	/* the clock at the first of them */
	uint64_t now;		/* the clock at the last look */
};

/* Never fails. watch_crowding 0: the host never counts as crowded;
 * miss_limit UINT_MAX: never sleeps at once for misses. */
DN_EXPORT void dn_spin_open(struct dn_spin *s, uint64_t spin_ns,
	unsigned int miss_limit, int watch_crowding);
DN_EXPORT void dn_spin_close(struct dn_spin *s);

/* Nothing to do at now (CLOCK_MONOTONIC ns), idle since idle_since: keep
 * spinning (DN_SPIN_ON) or why to sleep. */
int dn_spin_decide(struct dn_spin *s, uint64_t now, uint64_t idle_since,
	unsigned int slack);

/* An idle pass of a C loop: DN_SPIN_ON after yielding the core (the
 * process the work comes from may need it; the clock is read every 16
 * passes), or why to sleep, which ends the idle stretch. held: frames
 * wait for a timer that wakes the loop soon anyway (a rate limiter's);
 * those wakes say nothing about how fast peers answer, so the misses do
 * not cut the spin short. */
DN_EXPORT int dn_spin_idle(struct dn_spin *s, unsigned int slack, int held);

/* The loop found work: the idle stretch is over. */
static inline void
dn_spin_work(struct dn_spin *s)
{
	s->passes = 0;
}

/* Going to sleep at now for the verdict's reason; a spin that ran out
 * counts as a miss. */
DN_EXPORT void dn_spin_asleep(struct dn_spin *s, uint64_t now, int verdict);
/* Woken at now: soon after going to sleep, spinning pays again. */
DN_EXPORT void dn_spin_woke(struct dn_spin *s, uint64_t now);

#endif /* DN_SPIN_H */
