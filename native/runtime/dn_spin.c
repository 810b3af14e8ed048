/* The spin-or-sleep policy of every DockNet poller (dn_spin.h). */
#include <sched.h>
#include <string.h>

#include "dn_clock.h"
#include "dn_spin.h"

void
dn_spin_open(struct dn_spin *s, uint64_t spin_ns, unsigned int miss_limit,
	int watch_crowding)
{
	memset(s, 0, sizeof(*s));
	s->spin_ns = spin_ns;
	s->miss_limit = miss_limit;
	if (watch_crowding) {
		dn_crowding_open(&s->crowding, DN_SPIN_CROWD_CHECK_NS);
	} else {
		s->crowding.fd = -1;
		s->crowding.cpus = 1;
	}
}

void
dn_spin_close(struct dn_spin *s)
{
	dn_crowding_close(&s->crowding);
}

static int
dn_spin_verdict(struct dn_spin *s, uint64_t now, uint64_t idle_since,
	unsigned int slack, int habit)
{
	/* idle_since may be later than now: a write that came after the
	 * caller read the clock. */
	if (now >= idle_since && now - idle_since >= s->spin_ns)
		return DN_SPIN_SPUN_OUT;
	if (habit && s->misses >= s->miss_limit)
		return DN_SPIN_HABIT;
	if (dn_crowding_crowded(&s->crowding, now, slack))
		return DN_SPIN_CROWDED;
	return DN_SPIN_ON;
}

int
dn_spin_decide(struct dn_spin *s, uint64_t now, uint64_t idle_since,
	unsigned int slack)
{
	return dn_spin_verdict(s, now, idle_since, slack, 1);
}

int
dn_spin_idle(struct dn_spin *s, unsigned int slack, int held)
{
	int v;

	if (s->passes++ == 0) {
		/* The first idle pass only asks whether to spin at all. */
		s->idle_since = s->now = dn_clock_ns();
		/* No spin asked for: sleep now, not after the yields of the
		 * passes before the next look at the clock. */
		if (!held && s->spin_ns == 0)
			v = DN_SPIN_SPUN_OUT;
		else if (held || s->misses < s->miss_limit)
			return DN_SPIN_ON;
		else
			v = DN_SPIN_HABIT;
	} else if ((s->passes & 15) != 0) {
		sched_yield();
		return DN_SPIN_ON;
	} else {
		s->now = dn_clock_ns();
		v = dn_spin_verdict(s, s->now, s->idle_since, slack, !held);
		if (v == DN_SPIN_ON) {
			sched_yield();
			return v;
		}
	}
	s->passes = 0;
	return v;
}

void
dn_spin_asleep(struct dn_spin *s, uint64_t now, int verdict)
{
	s->slept_at = now;
	if (verdict == DN_SPIN_SPUN_OUT && s->misses < s->miss_limit)
		s->misses++;
}

void
dn_spin_woke(struct dn_spin *s, uint64_t now)
{
	if (now - s->slept_at < s->spin_ns)
		s->misses = 0;
}
