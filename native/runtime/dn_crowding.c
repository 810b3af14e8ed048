/* The runnable-task count of /proc/loadavg, for spinning threads. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dn_crowding.h"

void
dn_crowding_open(struct dn_crowding *c, uint64_t interval_ns)
{
	cpu_set_t set;

	memset(c, 0, sizeof(*c));
	c->interval_ns = interval_ns;
	c->cpus = 1;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		c->cpus = (unsigned int)CPU_COUNT(&set);
	/* Kept open: a pread is a fraction of an open/read/close. */
	c->fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
}

void
dn_crowding_close(struct dn_crowding *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* "0.52 0.58 0.59 3/187 12345": the fourth field's numerator. */
static unsigned int
dn_crowding_read(int fd)
{
	char buf[128];
	ssize_t n;
	char *p;
	int field;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = buf;
	for (field = 0; field < 3; field++) {
		p = strchr(p, ' ');
		if (p == NULL)
			return 0;
		p++;
	}
	return (unsigned int)strtoul(p, NULL, 10);
}

int
dn_crowding_crowded(struct dn_crowding *c, uint64_t now, unsigned int slack)
{
	if (c->fd < 0)
		return 0;
	if (!c->looked || now - c->checked_ns >= c->interval_ns) {
		c->looked = 1;
		c->checked_ns = now;
		c->runnable = dn_crowding_read(c->fd);
	}
	return c->runnable > c->cpus + slack;
}
