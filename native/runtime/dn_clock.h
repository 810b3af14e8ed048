/*
 * The clock every native component reads: CLOCK_MONOTONIC, the one
 * Python's time.monotonic() reads, so a timestamp taken in C compares with
 * one taken in Python.
 */
#ifndef DN_CLOCK_H
#define DN_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
dn_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Seconds, computed from the nanoseconds as time.monotonic() does. */
static inline double
dn_clock_s(void)
{
	return (double)dn_clock_ns() / 1e9;
}

#endif /* DN_CLOCK_H */
