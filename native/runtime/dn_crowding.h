/* Whether the host's CPUs are contended: a spinning thread's question.
 *
 * Spinning for the next frame pays while a core would otherwise idle; on a
 * host where tasks wait for a CPU it takes the core from the very process
 * the frame has to come from. The runnable count of /proc/loadavg against
 * the cores this thread may use says which. (The kernel's pressure stall
 * counters were tried: on this kind of VM they move in bursts tens of
 * milliseconds apart, too coarse for a look every few milliseconds.)
 */
#ifndef DN_CROWDING_H
#define DN_CROWDING_H

#include <stdint.h>

struct dn_crowding {
	int fd;			/* /proc/loadavg, kept open; -1: never crowded */
	unsigned int cpus;
	unsigned int runnable;	/* at the last look */
	int looked;		/* runnable holds a look */
	uint64_t interval_ns;
	uint64_t checked_ns;	/* when, in the caller's clock */
};

/* Never fails: with no /proc the host never counts as crowded. Every
 * poller asks through dn_spin.h; aiodocknet's crowding.py wraps it for
 * tests. */
void dn_crowding_open(struct dn_crowding *c, uint64_t interval_ns);
void dn_crowding_close(struct dn_crowding *c);

/* More than cpus + slack tasks runnable (the caller among them), looked up
 * at most every interval_ns (now: CLOCK_MONOTONIC ns). */
int dn_crowding_crowded(struct dn_crowding *c, uint64_t now, unsigned int slack);

#endif
